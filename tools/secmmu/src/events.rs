// SPDX-License-Identifier: GPL-2.0

//! The event log of `/sys/kernel/debug/secmmu/events`: one event per line,
//! `seq ns cpu ctx kind a b node`, `a` and `b` in hex.

use std::fmt;

/// One event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub seq: u64,
    pub ns: u64,
    pub cpu: u32,
    /// Device context id; 0 is the migration helper.
    pub ctx: u32,
    pub kind: Kind,
    pub a: u64,
    pub b: u64,
    pub node: i32,
}

/// Event kinds, as the module names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Unmap,
    Invalidate,
    StaleAccess,
    CopyBegin,
    CopyEnd,
    LateInvalidation,
    Remap,
    MigrateDone,
    MigrateAbort,
    Fill,
    FreedPageAccess,
}

impl Kind {
    fn parse(s: &str) -> Option<Kind> {
        Some(match s {
            "unmap" => Kind::Unmap,
            "invalidate" => Kind::Invalidate,
            "stale_access" => Kind::StaleAccess,
            "copy_begin" => Kind::CopyBegin,
            "copy_end" => Kind::CopyEnd,
            "late_invalidation" => Kind::LateInvalidation,
            "remap" => Kind::Remap,
            "migrate_done" => Kind::MigrateDone,
            "migrate_abort" => Kind::MigrateAbort,
            "fill" => Kind::Fill,
            "freed_page_access" => Kind::FreedPageAccess,
            _ => return None,
        })
    }
}

/// A line that is not an event.
#[derive(Debug, PartialEq, Eq)]
pub struct ParseError {
    pub line: usize,
    pub reason: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "events line {}: {}", self.line, self.reason)
    }
}

fn hex(s: &str) -> Option<u64> {
    u64::from_str_radix(s.strip_prefix("0x")?, 16).ok()
}

/// Parses one line (`line` is its 1-based number, for errors).
pub fn parse_line(text: &str, line: usize) -> Result<Event, ParseError> {
    let err = |reason: String| ParseError { line, reason };
    let f: Vec<&str> = text.split_whitespace().collect();
    if f.len() != 8 {
        return Err(err(format!("expected 8 fields, got {}: '{text}'", f.len())));
    }
    let num = |i: usize, what: &str| -> Result<u64, ParseError> {
        f[i].parse::<u64>()
            .map_err(|_| err(format!("bad {what} '{}'", f[i])))
    };
    Ok(Event {
        seq: num(0, "sequence number")?,
        ns: num(1, "timestamp")?,
        cpu: u32::try_from(num(2, "cpu")?).map_err(|_| err("cpu out of range".into()))?,
        ctx: u32::try_from(num(3, "context")?).map_err(|_| err("context out of range".into()))?,
        kind: Kind::parse(f[4]).ok_or_else(|| err(format!("unknown event kind '{}'", f[4])))?,
        a: hex(f[5]).ok_or_else(|| err(format!("bad hex field '{}'", f[5])))?,
        b: hex(f[6]).ok_or_else(|| err(format!("bad hex field '{}'", f[6])))?,
        node: f[7]
            .parse()
            .map_err(|_| err(format!("bad node '{}'", f[7])))?,
    })
}

/// Parses a whole log; blank lines are skipped, anything else malformed is
/// an error.
pub fn parse(text: &str) -> Result<Vec<Event>, ParseError> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| parse_line(l, i + 1))
        .collect()
}

/// True if `[a, b)` of the event covers all of `[start, end)`.
pub fn covers(e: &Event, start: u64, end: u64) -> bool {
    e.a <= start && e.b >= end
}

/// One helper migration found in the log: indexes into the event slice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Migration {
    /// The `unmap` event.
    pub unmap: usize,
    /// `migrate_done` or `migrate_abort`, if logged.
    pub end: Option<usize>,
    /// THP range.
    pub start: u64,
    pub len: u64,
}

/// The helper migrations in `events`, in order.
pub fn migrations(events: &[Event]) -> Vec<Migration> {
    let mut out = Vec::new();
    for (i, e) in events.iter().enumerate() {
        if e.kind != Kind::Unmap {
            continue;
        }
        let end = events[i + 1..]
            .iter()
            .position(|x| matches!(x.kind, Kind::MigrateDone | Kind::MigrateAbort | Kind::Unmap))
            .map(|p| i + 1 + p)
            .filter(|&j| events[j].kind != Kind::Unmap);
        out.push(Migration {
            unmap: i,
            end,
            start: e.a,
            len: e.b.saturating_sub(e.a),
        });
    }
    out
}

/// Device accesses through a stale translation of the migrated range
/// after the helper began copying it, up to the migration's end.
pub fn stale_after_copy(events: &[Event], m: &Migration) -> usize {
    let end = m.end.unwrap_or(events.len());
    let Some(copy) = events[m.unmap..end]
        .iter()
        .position(|e| e.kind == Kind::CopyBegin)
    else {
        return 0;
    };
    events[m.unmap + copy..end]
        .iter()
        .filter(|e| e.kind == Kind::StaleAccess && e.a >= m.start && e.a < m.start + m.len)
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Recorded in the test VM: one hardened migration with
    /// `late_invalidate` injected (`migrate_test -t event_ordering`).
    const HARDENED: &str = include_str!("../testdata/hardened-inject.log");
    /// Recorded in the test VM: one unhardened migration with injection
    /// while a stream runs (`migrate_test -t injection_unhardened_loses_writes`).
    const UNHARDENED: &str = include_str!("../testdata/unhardened-inject.log");

    #[test]
    fn parses_recorded_logs() {
        let ev = parse(HARDENED).unwrap();
        assert_eq!(ev.len(), 9);
        assert_eq!(ev[0].kind, Kind::Invalidate);
        assert_eq!(ev[0].a, 0x7f86_0a20_0000);
        assert_eq!(ev[7].kind, Kind::Fill);
        assert_eq!(ev[7].node, 1);
        let m = migrations(&ev);
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].unmap, 1);
        assert_eq!(m[0].end, Some(6));
        assert_eq!(m[0].len, 2 << 20);
        assert_eq!(stale_after_copy(&ev, &m[0]), 0);

        let ev = parse(UNHARDENED).unwrap();
        let m = migrations(&ev);
        assert_eq!(m.len(), 1);
        assert_eq!(stale_after_copy(&ev, &m[0]), 88);
        assert!(ev.windows(2).all(|w| w[0].seq < w[1].seq));
    }

    #[test]
    fn malformed_lines_are_errors() {
        for (bad, why) in [
            ("1 2 3 4 fill 0x1 0x2", "expected 8 fields"),
            ("1 2 3 4 fill 0x1 0x2 0 9", "expected 8 fields"),
            ("x 2 3 4 fill 0x1 0x2 0", "bad sequence number"),
            ("-1 2 3 4 fill 0x1 0x2 0", "bad sequence number"),
            ("1 2 3 4 teleport 0x1 0x2 0", "unknown event kind"),
            ("1 2 3 4 fill 12 0x2 0", "bad hex field"),
            ("1 2 3 4 fill 0xzz 0x2 0", "bad hex field"),
            ("1 2 3 4 fill 0x1 0x2 node", "bad node"),
            ("1 2 99999999999 4 fill 0x1 0x2 0", "cpu out of range"),
            ("1 2 3 4 fill\u{0} 0x1 0x2 0", "unknown event kind"),
        ] {
            let e = parse(&format!("{HARDENED}{bad}\n")).unwrap_err();
            assert_eq!(e.line, 10, "{bad}");
            assert!(e.reason.contains(why), "{bad}: {}", e.reason);
        }
    }

    #[test]
    fn blank_lines_and_empty_log() {
        assert_eq!(parse("").unwrap(), vec![]);
        assert_eq!(parse("\n\n").unwrap().len(), 0);
    }

    #[test]
    fn unfinished_migration() {
        let ev = parse(&HARDENED.lines().take(4).collect::<Vec<_>>().join("\n")).unwrap();
        let m = migrations(&ev);
        assert_eq!(m[0].end, None);
    }
}
