// SPDX-License-Identifier: GPL-2.0

//! Shared pieces of secmmu's Rust selftests: a minimal KTAP emitter and the
//! parsers for the sysfs/procfs formats the tests read. The parsers are
//! unit-tested on the host (`cargo test`); the tests themselves run in the VM.

use std::fmt::Display;
use std::fs;
use std::io;
use std::path::Path;

/// One test case: a name and a function that returns `Ok(())`, `Err(reason)`
/// or `Skip(reason)`.
pub struct Case {
    /// KTAP name of the case.
    pub name: &'static str,
    /// The test body.
    pub run: fn() -> Outcome,
}

/// The result of one case.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The case passed.
    Pass,
    /// The case failed, with the reason.
    Fail(String),
    /// The case could not run here, with the reason.
    Skip(String),
}

/// Turns a `Result` into an [`Outcome`].
pub fn check<E: Display>(r: Result<(), E>) -> Outcome {
    match r {
        Ok(()) => Outcome::Pass,
        Err(e) => Outcome::Fail(e.to_string()),
    }
}

/// Runs `cases` and prints KTAP to stdout; returns the process exit status
/// (0 when no case failed).
pub fn run_ktap(cases: &[Case]) -> i32 {
    println!("TAP version 13");
    println!("1..{}", cases.len());
    let mut failed = 0;
    for (i, case) in cases.iter().enumerate() {
        let n = i + 1;
        match (case.run)() {
            Outcome::Pass => println!("ok {n} {}", case.name),
            Outcome::Skip(why) => println!("ok {n} {} # SKIP {why}", case.name),
            Outcome::Fail(why) => {
                failed += 1;
                for line in why.lines() {
                    println!("# {}: {line}", case.name);
                }
                println!("not ok {n} {}", case.name);
            }
        }
    }
    println!("# Totals: pass:{} fail:{failed}", cases.len() - failed);
    i32::from(failed != 0)
}

/// Parses a kernel CPU/node list such as `0-1,4,6-7` (as in
/// `/sys/devices/system/node/online`) into its members.
pub fn parse_list(s: &str) -> Result<Vec<u32>, String> {
    let s = s.trim();
    let mut out = Vec::new();
    if s.is_empty() {
        return Ok(out);
    }
    for part in s.split(',') {
        let num = |t: &str| {
            t.parse::<u32>()
                .map_err(|_| format!("bad number '{t}' in list '{s}'"))
        };
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (num(a)?, num(b)?);
                if a > b {
                    return Err(format!("descending range '{part}' in list '{s}'"));
                }
                out.extend(a..=b);
            }
            None => out.push(num(part)?),
        }
    }
    Ok(out)
}

/// Returns the selected value of a sysfs "choice" file such as
/// `always [madvise] never`.
pub fn selected_choice(s: &str) -> Option<&str> {
    s.split_whitespace()
        .find(|w| w.starts_with('[') && w.ends_with(']') && w.len() > 2)
        .map(|w| &w[1..w.len() - 1])
}

/// Sums the `AnonHugePages:` lines (in KiB) of a `/proc/PID/smaps` text.
pub fn anon_huge_kib(smaps: &str) -> u64 {
    smaps
        .lines()
        .filter_map(|l| l.strip_prefix("AnonHugePages:"))
        .filter_map(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .sum()
}

/// Reads a whole small text file, with the path in the error.
pub fn read(path: impl AsRef<Path>) -> Result<String, String> {
    let p = path.as_ref();
    fs::read_to_string(p).map_err(|e: io::Error| format!("{}: {e}", p.display()))
}

pub use secmmu::{abi, sys};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_single_and_ranges() {
        assert_eq!(parse_list("0-1\n").unwrap(), vec![0, 1]);
        assert_eq!(parse_list("0,2-4,7").unwrap(), vec![0, 2, 3, 4, 7]);
        assert_eq!(parse_list("").unwrap(), Vec::<u32>::new());
    }

    #[test]
    fn list_rejects_garbage() {
        assert!(parse_list("a-b").is_err());
        assert!(parse_list("3-1").is_err());
        assert!(parse_list("1,,2").is_err());
    }

    #[test]
    fn choice() {
        assert_eq!(selected_choice("always [madvise] never\n"), Some("madvise"));
        assert_eq!(selected_choice("[always] madvise never"), Some("always"));
        assert_eq!(selected_choice("always madvise never"), None);
        assert_eq!(selected_choice("[]"), None);
    }

    #[test]
    fn smaps_sum() {
        let s = "Size: 4096 kB\nAnonHugePages:      2048 kB\nRss: 1 kB\nAnonHugePages: 0 kB\n";
        assert_eq!(anon_huge_kib(s), 2048);
        assert_eq!(anon_huge_kib("AnonHugePages: junk kB"), 0);
    }

    #[test]
    fn check_maps_errors() {
        assert_eq!(check::<String>(Ok(())), Outcome::Pass);
        assert_eq!(check(Err("x")), Outcome::Fail("x".into()));
    }
}
