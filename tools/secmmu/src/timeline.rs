// SPDX-License-Identifier: GPL-2.0

//! Renders one helper migration from the event log as a timeline in the
//! style of the diagram in "mm: thp: fix mmu_notifier in
//! migrate_misplaced_transhuge_page()": one column for the migrating CPU,
//! one for a CPU that faulted (where there is one), one for the device, one
//! event per line, in order.

use crate::events::{covers, Event, Kind, Migration};
use std::fmt::Write;

const COL: usize = 38;

/// Repeated device accesses shown before they are summarised.
const SHOW_STALE: usize = 3;

fn row(out: &mut String, col: usize, text: &str) {
    for (i, line) in text.lines().enumerate() {
        let indent = if i == 0 { 0 } else { 7 };
        let _ = writeln!(out, "{:w$}{:indent$}{line}", "", "", w = col * COL);
    }
}

fn short(va: u64) -> String {
    format!("{va:#x}")
}

/// The timeline of migration `m` of `events`.
pub fn render(events: &[Event], m: &Migration) -> String {
    let start = m.start;
    let end = m.start + m.len;
    let last = m.end.unwrap_or(events.len().saturating_sub(1));
    // From the device's last fill of the range before the migration...
    let first = events[..m.unmap]
        .iter()
        .rposition(|e| e.kind == Kind::Fill && e.a >= start && e.a < end)
        .unwrap_or(m.unmap);
    // ...to its first fill after it.
    let after = events[last + 1..]
        .iter()
        .position(|e| e.kind == Kind::Fill && e.a >= start && e.a < end)
        .map(|p| last + 1 + p)
        .unwrap_or(last);

    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<w$}{:<w$}device (secondary MMU)",
        "migrating CPU (secmmu helper)",
        "CPU that faulted",
        w = COL
    );
    let _ = writeln!(
        out,
        "{:<w$}{:<w$}{}",
        "-".repeat(30),
        "-".repeat(16),
        "-".repeat(30),
        w = COL
    );
    let mut copy_seen = false;
    let mut stale_shown = 0usize;
    let mut stale_hidden = 0usize;
    let mut lost = 0usize;
    let flush_stale = |out: &mut String, hidden: &mut usize, lost: usize| {
        if *hidden > 0 {
            row(
                out,
                2,
                &format!(
                    "... {} more device writes through the\nstale entry{}",
                    *hidden,
                    if lost > 0 {
                        " (after the copy: lost)"
                    } else {
                        ""
                    }
                ),
            );
            *hidden = 0;
        }
    };
    for (i, e) in events
        .iter()
        .enumerate()
        .take(after.max(first) + 1)
        .skip(first)
    {
        let relevant = match e.kind {
            Kind::Fill | Kind::StaleAccess | Kind::FreedPageAccess => e.a >= start && e.a < end,
            Kind::Invalidate => e.a < end && e.b > start,
            // The helper's own steps: only this migration's.
            _ => i >= m.unmap && i <= last,
        };
        if !relevant {
            continue;
        }
        if e.kind != Kind::StaleAccess {
            flush_stale(&mut out, &mut stale_hidden, lost);
        }
        let cpu = format!("[cpu{}] ", e.cpu);
        match e.kind {
            Kind::Fill => row(
                &mut out,
                2,
                &format!(
                    "{cpu}TLB fill {}\n-> pfn {:#x} (node {})",
                    short(e.a),
                    e.b,
                    e.node
                ),
            ),
            Kind::Invalidate => {
                let what = if covers(e, start, end) {
                    "the THP"
                } else {
                    "part of it"
                };
                row(
                    &mut out,
                    2,
                    &format!(
                        "{cpu}->arch_invalidate_secondary_tlbs\n{}..{} ({what})",
                        short(e.a),
                        short(e.b)
                    ),
                )
            }
            Kind::StaleAccess => {
                if copy_seen {
                    lost += 1;
                }
                if stale_shown < SHOW_STALE {
                    stale_shown += 1;
                    let tag = if copy_seen { "  LOST" } else { "" };
                    row(
                        &mut out,
                        2,
                        &format!(
                            "{cpu}writes {} through the\nstale entry (old pfn {:#x}){tag}",
                            short(e.a),
                            e.b
                        ),
                    );
                } else {
                    stale_hidden += 1;
                }
            }
            Kind::Unmap => row(
                &mut out,
                0,
                &format!(
                    "{cpu}migrate_vma_setup():\nunmap {}, CPU TLB flush",
                    short(e.a)
                ),
            ),
            Kind::LateInvalidation => row(
                &mut out,
                0,
                &format!(
                    "{cpu}hardening: ctx {} still held\n{} translation(s): forced out",
                    e.ctx, e.a
                ),
            ),
            Kind::CopyBegin => {
                copy_seen = true;
                row(
                    &mut out,
                    0,
                    &format!("{cpu}copy begins\npfn {:#x} -> {:#x}", e.a, e.b),
                )
            }
            Kind::CopyEnd => row(&mut out, 0, &format!("{cpu}copy ends")),
            Kind::Remap => row(
                &mut out,
                0,
                &format!("{cpu}migrate_vma_pages():\nnew PMD on node {}", e.node),
            ),
            Kind::MigrateDone => row(
                &mut out,
                0,
                &format!("{cpu}migration done (node {})", e.node),
            ),
            Kind::MigrateAbort => row(
                &mut out,
                0,
                &format!("{cpu}migration aborted ({})", e.a as i64),
            ),
            Kind::FreedPageAccess => row(
                &mut out,
                2,
                &format!(
                    "{cpu}access {} refused: pfn {:#x}\nwas freed or reused",
                    short(e.a),
                    e.b
                ),
            ),
        }
    }
    flush_stale(&mut out, &mut stale_hidden, lost);
    let _ = writeln!(
        out,
        "\n{} device write(s) through a stale translation after the copy began.",
        lost
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{migrations, parse};

    const HARDENED: &str = "\
10 1000 1 3 fill 0x7f0000200000 0x1200 0
11 2000 0 3 invalidate 0x7f0000200000 0x7f0000400000 -1
12 2100 0 0 unmap 0x7f0000200000 0x7f0000400000 0
13 2150 0 0 late_invalidation 0x1 0x0 -1
14 2200 0 0 copy_begin 0x1200 0x45600 1
15 2300 0 0 copy_end 0x1200 0x45600 1
16 2400 0 0 remap 0x7f0000200000 0x7f0000400000 1
17 2500 0 0 migrate_done 0x1 0x45600 1
18 2600 1 3 fill 0x7f0000200000 0x45600 1
";

    const UNHARDENED: &str = "\
10 1000 1 3 fill 0x7f0000200000 0x1200 0
11 2000 0 3 invalidate 0x7f0000200000 0x7f0000400000 -1
12 2100 0 0 unmap 0x7f0000200000 0x7f0000400000 0
13 2110 1 3 stale_access 0x7f0000201000 0x1201 -1
14 2200 0 0 copy_begin 0x1200 0x45600 1
15 2210 1 3 stale_access 0x7f0000202000 0x1202 -1
16 2220 1 3 stale_access 0x7f0000203000 0x1203 -1
17 2230 1 3 stale_access 0x7f0000204000 0x1204 -1
18 2240 1 3 stale_access 0x7f0000205000 0x1205 -1
19 2300 0 0 copy_end 0x1200 0x45600 1
20 2400 0 0 remap 0x7f0000200000 0x7f0000400000 1
21 2500 0 0 migrate_done 0x1 0x45600 1
22 2600 1 3 fill 0x7f0000200000 0x45600 1
";

    #[test]
    fn hardened_timeline_in_order() {
        let ev = parse(HARDENED).unwrap();
        let t = render(&ev, &migrations(&ev)[0]);
        let pos = |s: &str| t.find(s).unwrap_or_else(|| panic!("'{s}' missing in\n{t}"));
        assert!(pos("TLB fill") < pos("->arch_invalidate"));
        assert!(pos("->arch_invalidate") < pos("migrate_vma_setup"));
        assert!(pos("forced out") < pos("copy begins"));
        assert!(pos("copy ends") < pos("new PMD on node 1"));
        assert!(t.contains("-> pfn 0x45600 (node 1)"));
        assert!(t.contains("0 device write(s) through a stale translation"));
        // The device column is the third.
        let fill = t.lines().find(|l| l.contains("TLB fill")).unwrap();
        assert!(fill.starts_with(&" ".repeat(2 * COL)));
    }

    #[test]
    fn unhardened_timeline_shows_the_lost_writes() {
        let ev = parse(UNHARDENED).unwrap();
        let t = render(&ev, &migrations(&ev)[0]);
        assert_eq!(t.matches("LOST").count(), 2, "{t}");
        assert!(t.contains("... 2 more device writes"), "{t}");
        assert!(
            t.contains("4 device write(s) through a stale translation"),
            "{t}"
        );
        let copy = t.find("copy begins").unwrap();
        let lost = t.find("LOST").unwrap();
        assert!(copy < lost);
    }

    #[test]
    fn only_this_migrations_steps() {
        let next = "\
30 3000 0 0 unmap 0x7f0000400000 0x7f0000600000 0
31 3100 0 0 copy_begin 0x2200 0x55600 1
";
        let ev = parse(&format!(
            "{HARDENED}{next}32 3200 1 3 fill 0x7f0000200000 0x45600 1\n"
        ))
        .unwrap();
        let t = render(&ev, &migrations(&ev)[0]);
        assert_eq!(t.matches("copy begins").count(), 1, "{t}");
        assert_eq!(t.matches("migrate_vma_setup").count(), 1, "{t}");
    }

    #[test]
    fn recorded_unhardened_log() {
        let ev = parse(include_str!("../testdata/unhardened-inject.log")).unwrap();
        let t = render(&ev, &migrations(&ev)[0]);
        assert!(
            t.contains("88 device write(s) through a stale translation"),
            "{t}"
        );
        assert_eq!(t.matches("LOST").count(), SHOW_STALE, "{t}");
        assert!(t.contains("... 85 more device writes"), "{t}");
        assert!(t.find("copy begins").unwrap() < t.find("LOST").unwrap());
        assert!(t.contains("-> pfn 0x5a00 (node 0)"), "{t}");
    }

    #[test]
    fn unfinished_migration_renders() {
        let ev = parse(&UNHARDENED.lines().take(6).collect::<Vec<_>>().join("\n")).unwrap();
        let t = render(&ev, &migrations(&ev)[0]);
        assert!(t.contains("copy begins"));
    }
}
