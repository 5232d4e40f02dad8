// SPDX-License-Identifier: GPL-2.0

//! Reading and writing `/sys/kernel/debug/secmmu/`, with errors that say
//! what to do when the module is not there.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// The module's debugfs directory (overridable for tests with
/// `SECMMU_DEBUGFS`).
pub fn dir() -> PathBuf {
    std::env::var_os("SECMMU_DEBUGFS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/sys/kernel/debug/secmmu"))
}

fn explain(path: &Path, e: io::Error) -> String {
    if e.kind() == io::ErrorKind::NotFound && !dir().exists() {
        format!(
            "{}: not found: is secmmu.ko loaded (insmod secmmu.ko) and debugfs mounted \
             (mount -t debugfs none /sys/kernel/debug)?",
            dir().display()
        )
    } else if e.kind() == io::ErrorKind::PermissionDenied {
        format!(
            "{}: permission denied: secmmu's debugfs files are root-only",
            path.display()
        )
    } else {
        format!("{}: {e}", path.display())
    }
}

/// Reads a debugfs file of the module.
pub fn read(name: &str) -> Result<String, String> {
    let p = dir().join(name);
    fs::read_to_string(&p).map_err(|e| explain(&p, e))
}

/// Writes a debugfs file of the module in one `write(2)`; the error carries
/// the errno the module returned.
pub fn write(name: &str, text: &str) -> Result<(), io::Error> {
    let p = dir().join(name);
    let mut f = fs::OpenOptions::new().write(true).open(&p)?;
    f.write_all(text.as_bytes())
}

/// Writes, with a readable error.
pub fn write_msg(name: &str, text: &str) -> Result<(), String> {
    write(name, text).map_err(|e| explain(&dir().join(name), e))
}

/// Parses `name value` lines (the stats files) into pairs.
pub fn parse_stats(text: &str) -> Result<Vec<(String, u64)>, String> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            let mut it = l.split_whitespace();
            match (it.next(), it.next().map(str::parse::<u64>), it.next()) {
                (Some(k), Some(Ok(v)), None) => Ok((k.to_string(), v)),
                _ => Err(format!(
                    "stats line {}: expected 'name value', got '{l}'",
                    i + 1
                )),
            }
        })
        .collect()
}

/// One counter from the global stats file.
pub fn global_stat(name: &str) -> Result<u64, String> {
    parse_stats(&read("stats")?)?
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
        .ok_or_else(|| format!("stats has no counter '{name}'"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_parse() {
        let s = parse_stats("binds 1\nlost_writes 0\n\n").unwrap();
        assert_eq!(s, vec![("binds".into(), 1), ("lost_writes".into(), 0)]);
        assert!(parse_stats("binds\n").is_err());
        assert!(parse_stats("binds x\n").is_err());
        assert!(parse_stats("binds 1 2\n").is_err());
    }

    #[test]
    fn absent_module_is_explained() {
        std::env::set_var("SECMMU_DEBUGFS", "/nonexistent/secmmu");
        let e = read("stats").unwrap_err();
        assert!(e.contains("is secmmu.ko loaded"), "{e}");
        std::env::remove_var("SECMMU_DEBUGFS");
    }
}
