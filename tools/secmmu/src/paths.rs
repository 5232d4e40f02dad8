// SPDX-License-Identifier: GPL-2.0

//! `secmmu paths`: the path x oracle matrix.
//!
//! `selftests/c/paths_test` runs one case per kernel path that changes a
//! mapping the device holds a translation of; each oracle that judged the
//! case prints a cell line
//!
//! ```text
//! # cell path=P oracle=O ops=N accesses=N violations=N
//! # cell path=P oracle=- not_run=REASON
//! ```
//!
//! This module gathers those lines into the matrix: per path and oracle,
//! the kernel operations run, the device accesses judged and the
//! violations found; a path the kernel cannot run here is listed as not
//! run, with its reason.

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// The oracles, in the matrix's column order.
pub const ORACLES: &[&str] = &[
    "lost_write",
    "stale_read",
    "write_after_revoke",
    "isolation",
    "freed_page",
];

/// One oracle's tally for one path (summed if a path reports it twice).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cell {
    pub ops: u64,
    pub accesses: u64,
    pub violations: u64,
}

/// One row of the matrix.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Row {
    pub path: String,
    /// Cells by oracle name.
    pub cells: BTreeMap<String, Cell>,
    /// Why the path was not run, if it was not.
    pub not_run: Option<String>,
}

/// The matrix, rows in the order the paths first reported.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Matrix {
    pub rows: Vec<Row>,
}

/// `key=value` of a cell line's field.
fn field<'a>(words: &[&'a str], key: &str) -> Option<&'a str> {
    words
        .iter()
        .find_map(|w| w.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
}

impl Matrix {
    fn row(&mut self, path: &str) -> &mut Row {
        let i = match self.rows.iter().position(|r| r.path == path) {
            Some(i) => i,
            None => {
                self.rows.push(Row {
                    path: path.to_string(),
                    ..Default::default()
                });
                self.rows.len() - 1
            }
        };
        &mut self.rows[i]
    }

    /// Adds one `# cell ...` line; `Err` says what is wrong with it.
    pub fn add_line(&mut self, line: &str) -> Result<(), String> {
        let rest = line
            .trim_start()
            .strip_prefix("# cell ")
            .ok_or_else(|| format!("not a cell line: {line:?}"))?;
        let words: Vec<&str> = rest.split_whitespace().collect();
        let path = field(&words, "path").ok_or_else(|| format!("no path: {line:?}"))?;
        let oracle = field(&words, "oracle").ok_or_else(|| format!("no oracle: {line:?}"))?;
        if let Some(i) = rest.find("not_run=") {
            self.row(path).not_run = Some(rest[i + "not_run=".len()..].trim().to_string());
            return Ok(());
        }
        if !ORACLES.contains(&oracle) {
            return Err(format!("unknown oracle {oracle:?}: {line:?}"));
        }
        let num = |k: &str| -> Result<u64, String> {
            field(&words, k)
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| format!("no number {k}= in {line:?}"))
        };
        let (ops, accesses, violations) = (num("ops")?, num("accesses")?, num("violations")?);
        let c = self.row(path).cells.entry(oracle.to_string()).or_default();
        c.ops += ops;
        c.accesses += accesses;
        c.violations += violations;
        Ok(())
    }

    /// Gathers every cell line of a paths_test output.
    pub fn parse(text: &str) -> Result<Matrix, String> {
        let mut m = Matrix::default();
        for line in text
            .lines()
            .filter(|l| l.trim_start().starts_with("# cell "))
        {
            m.add_line(line)?;
        }
        Ok(m)
    }

    /// Violations over the whole matrix.
    pub fn violations(&self) -> u64 {
        self.rows
            .iter()
            .flat_map(|r| r.cells.values())
            .map(|c| c.violations)
            .sum()
    }

    /// The matrix as a table: one row per path, one column per oracle,
    /// each cell `ops/accesses/violations` (`-` where the oracle does not
    /// apply), then the paths not run with their reasons.
    pub fn render(&self) -> String {
        let w = self
            .rows
            .iter()
            .map(|r| r.path.len())
            .max()
            .unwrap_or(4)
            .max(4);
        let mut out = String::new();
        let _ = write!(out, "{:<w$}", "path");
        for o in ORACLES {
            let _ = write!(out, "  {o:>20}");
        }
        out.push('\n');
        for r in self.rows.iter().filter(|r| r.not_run.is_none()) {
            let _ = write!(out, "{:<w$}", r.path);
            for o in ORACLES {
                let s = match r.cells.get(*o) {
                    Some(c) => format!("{}/{}/{}", c.ops, c.accesses, c.violations),
                    None => "-".into(),
                };
                let _ = write!(out, "  {s:>20}");
            }
            out.push('\n');
        }
        out.push_str("(each cell: kernel operations / device accesses judged / violations)\n");
        for r in self.rows.iter().filter(|r| r.not_run.is_some()) {
            let why = r.not_run.as_deref().unwrap_or_default();
            let _ = writeln!(out, "not run: {}: {why}", r.path);
        }
        let _ = writeln!(
            out,
            "{} paths run, {} not run, {} violations",
            self.rows.iter().filter(|r| r.not_run.is_none()).count(),
            self.rows.iter().filter(|r| r.not_run.is_some()).count(),
            self.violations()
        );
        out
    }
}

/// What a kselftest_harness run says of itself: the cases it planned, the
/// results it printed (`ok`/`not ok` lines) and how many failed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub planned: usize,
    pub results: usize,
    pub failed: usize,
}

/// Reads the KTAP plan and result lines of one harness run.
pub fn plan(text: &str) -> Plan {
    let mut p = Plan::default();
    for l in text.lines() {
        if let Some(n) = l.strip_prefix("1..") {
            p.planned = n.trim().parse().unwrap_or(0);
        } else if l.starts_with("not ok ") {
            p.results += 1;
            p.failed += 1;
        } else if l.starts_with("ok ") {
            p.results += 1;
        }
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "TAP version 13\n1..3\n\
# cell path=move_pages_thp oracle=lost_write ops=12 accesses=786432 violations=0\n\
# cell path=move_pages_thp oracle=stale_read ops=12 accesses=512 violations=0\n\
# cell path=move_pages_thp oracle=freed_page ops=12 accesses=787000 violations=0\n\
ok 1 paths.move_pages_thp\n\
# cell path=mprotect_4k oracle=write_after_revoke ops=2 accesses=64 violations=3\n\
not ok 2 paths.mprotect_4k\n\
# cell path=offline_block oracle=- not_run=no node-1 block can be offlined (EBUSY)\n\
ok 3 paths.offline_block # SKIP no node-1 block\n";

    #[test]
    fn gathers_cells_and_not_run_rows() {
        let m = Matrix::parse(LOG).unwrap();
        assert_eq!(m.rows.len(), 3);
        assert_eq!(m.rows[0].cells["lost_write"].accesses, 786432);
        assert_eq!(m.violations(), 3);
        assert_eq!(
            m.rows[2].not_run.as_deref(),
            Some("no node-1 block can be offlined (EBUSY)")
        );
        let t = m.render();
        assert!(t.contains("12/786432/0"), "{t}");
        assert!(t.contains("2/64/3"), "{t}");
        assert!(t.contains("not run: offline_block: no node-1"), "{t}");
        assert!(t.contains("2 paths run, 1 not run, 3 violations"), "{t}");
    }

    #[test]
    fn sums_repeated_cells() {
        let mut m = Matrix::default();
        let l = "# cell path=p oracle=stale_read ops=1 accesses=2 violations=1";
        m.add_line(l).unwrap();
        m.add_line(l).unwrap();
        assert_eq!(
            m.rows[0].cells["stale_read"],
            Cell {
                ops: 2,
                accesses: 4,
                violations: 2
            }
        );
    }

    #[test]
    fn refuses_malformed_cells() {
        for bad in [
            "# cell oracle=stale_read ops=1 accesses=2 violations=0",
            "# cell path=p oracle=guess ops=1 accesses=2 violations=0",
            "# cell path=p oracle=stale_read ops=x accesses=2 violations=0",
            "# cell path=p oracle=stale_read ops=1 violations=0",
        ] {
            assert!(Matrix::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn reads_the_plan() {
        assert_eq!(
            plan(LOG),
            Plan {
                planned: 3,
                results: 3,
                failed: 1
            }
        );
    }
}
