// SPDX-License-Identifier: GPL-2.0

//! `secmmu bench`: side-by-side benchmarks in one boot, reported as ratios.
//!
//! 1. THP migration: the hardened helper, the helper in `unhardened` mode
//!    and `move_pages(2)` each move the same THPs from one node to the
//!    other, in interleaved rounds whose order rotates, with a bound device
//!    holding a translation for every THP before each batch. Throughput is
//!    the median over rounds.
//! 2. What a bound device costs the CPU: an `mprotect` flip loop and an
//!    `mmap`/`munmap` loop on a small range, unbound and bound with 0, 512
//!    and 4096 translations cached elsewhere, interleaved per round. The
//!    module's callback-duration histogram (`invalidate_hist`) is read per
//!    configuration: its median shows the invalidation of a small range
//!    costs the same whatever the TLB holds elsewhere.
//! 3. The device hit path: `bench_fill` fills a warm THP through the TLB
//!    and `memset`s a kernel buffer of the same size in one engine work
//!    item; the ratio is memset time over device time.

use crate::abi::{self, Access, Bind, Stats};
use crate::debugfs;
use crate::scenario::Region;
use crate::sys::{self, ioctl_ptr, Mapping};
use std::fmt::Write as _;
use std::fs::{self, File, OpenOptions};
use std::os::fd::AsRawFd;
use std::time::Instant;

const PAGE: usize = 4096;
const HPAGE: usize = 2 << 20;
const MADV_NOHUGEPAGE: i32 = 15;

/// Bench settings.
#[derive(Clone, Copy)]
pub struct Options {
    /// THPs per migration batch (at least 64 for the report).
    pub thps: usize,
    /// Rounds of each measurement.
    pub rounds: usize,
    /// Iterations of the CPU loops per round.
    pub loops: usize,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            thps: 64,
            rounds: 7,
            loops: 2000,
        }
    }
}

/// One measured quantity: its raw rounds and the median.
pub struct Series {
    /// Name, as in the JSON file.
    pub name: String,
    /// Unit of the rounds.
    pub unit: &'static str,
    /// Every round.
    pub rounds: Vec<f64>,
}

impl Series {
    fn new(name: &str, unit: &'static str) -> Self {
        Self {
            name: name.into(),
            unit,
            rounds: Vec::new(),
        }
    }

    /// Median of the rounds (0 if none).
    pub fn median(&self) -> f64 {
        median(&self.rounds)
    }
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    match s.len() {
        0 => 0.0,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

/// One line of the report: a ratio against a target.
pub struct Ratio {
    /// What is compared.
    pub name: String,
    /// The ratio of medians.
    pub value: f64,
    /// The target, as text (e.g. ">= 0.9").
    pub target: String,
    /// Whether the target is met.
    pub met: bool,
}

/// The whole result.
pub struct Report {
    /// Every series measured.
    pub series: Vec<Series>,
    /// The ratios with their targets.
    pub ratios: Vec<Ratio>,
    /// Extra lines for the table (histogram medians).
    pub notes: Vec<String>,
}

fn open_dev() -> Result<File, String> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/secmmu")
        .map_err(|e| format!("/dev/secmmu: {e} (is secmmu.ko loaded?)"))
}

fn bind(f: &File, entries: u32) -> Result<(), String> {
    let mut b = Bind {
        tlb_entries: entries,
        flags: 0,
    };
    ioctl_ptr(f.as_raw_fd(), abi::BIND, &mut b).map_err(|e| format!("bind: {e}"))
}

fn dev_fill(f: &File, addr: usize, len: usize, value: u64) -> Result<(), String> {
    let mut a = Access {
        addr: addr as u64,
        len: len as u64,
        value,
        ..Default::default()
    };
    ioctl_ptr(f.as_raw_fd(), abi::WRITE, &mut a).map_err(|e| format!("device write: {e}"))
}

fn ctx_stats(f: &File) -> Result<Stats, String> {
    let mut s = Stats::default();
    ioctl_ptr(f.as_raw_fd(), abi::GET_STATS, &mut s).map_err(|e| format!("stats: {e}"))?;
    Ok(s)
}

/// The helper's own timings of its last migration (`migrate_thp`).
#[derive(Default, Clone, Copy)]
struct HelperTimes {
    copy_ns: f64,
    verify_ns: f64,
    total_ns: f64,
}

fn helper_times() -> Result<HelperTimes, String> {
    let t = debugfs::read("migrate_thp")?;
    let get = |k: &str| -> f64 {
        t.split_whitespace()
            .find_map(|kv| kv.strip_prefix(k)?.strip_prefix('=')?.parse().ok())
            .unwrap_or(0.0)
    };
    Ok(HelperTimes {
        copy_ns: get("copy_ns"),
        verify_ns: get("verify_ns"),
        total_ns: get("total_ns"),
    })
}

/// Moves every THP of `r` to `node` with one method; returns THPs/s and,
/// for the helper, the sums of its own timings.
fn move_batch(r: &Region, node: i32, method: &str) -> Result<(f64, HelperTimes), String> {
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { sys::getpid() };
    let mut secs = 0.0;
    let mut sum = HelperTimes::default();
    match method {
        "move_pages" => {
            let pages: Vec<*mut u8> = (0..r.n).map(|i| r.thp(i)).collect();
            let nodes = vec![node; r.n];
            let mut status = vec![0i32; r.n];
            let t0 = Instant::now();
            sys::move_pages(&pages, Some(&nodes), &mut status)
                .map_err(|e| format!("move_pages: {e}"))?;
            secs = t0.elapsed().as_secs_f64();
            if let Some(s) = status.iter().find(|&&s| s != node) {
                return Err(format!("move_pages left a THP with status {s}"));
            }
        }
        _ => {
            let mode = if method == "helper_unhardened" {
                " unhardened"
            } else {
                ""
            };
            for i in 0..r.n {
                let line = format!("{pid} {:#x} {node}{mode}", r.thp(i) as usize);
                let t0 = Instant::now();
                debugfs::write("migrate_thp", &line)
                    .map_err(|e| format!("migrate_thp {line}: {e}"))?;
                secs += t0.elapsed().as_secs_f64();
                let h = helper_times()?;
                sum.copy_ns += h.copy_ns;
                sum.verify_ns += h.verify_ns;
                sum.total_ns += h.total_ns;
            }
        }
    }
    Ok((r.n as f64 / secs.max(1e-9), sum))
}

fn bench_migration(o: &Options, rep: &mut Report) -> Result<(), String> {
    let methods = ["helper_hardened", "helper_unhardened", "move_pages"];
    let r = Region::new(o.thps)?;
    let dev = open_dev()?;
    bind(&dev, 4096)?;
    let mut series: Vec<Series> = methods
        .iter()
        .map(|m| Series::new(&format!("thp_migration_{m}"), "THPs/s"))
        .collect();
    // First touch spread them over both nodes: gather them on node 0.
    move_batch(&r, 0, "move_pages")?;
    let mut own: Vec<Series> = ["copy", "verify", "total"]
        .iter()
        .flat_map(|k| {
            ["hardened", "unhardened"]
                .map(|m| Series::new(&format!("helper_{m}_{k}_per_thp"), "ns (the helper's own)"))
        })
        .collect();
    let mut node = 0;
    for round in 0..o.rounds {
        for k in 0..methods.len() {
            let m = (round + k) % methods.len();
            // The device holds a translation for every THP.
            for i in 0..r.n {
                dev_fill(&dev, r.thp(i) as usize + 64, 8, round as u64)?;
            }
            node ^= 1;
            let (rate, t) = move_batch(&r, node, methods[m])?;
            series[m].rounds.push(rate);
            if m < 2 {
                let n = r.n as f64;
                own[m].rounds.push(t.copy_ns / n);
                own[2 + m].rounds.push(t.verify_ns / n);
                own[4 + m].rounds.push(t.total_ns / n);
            }
        }
    }
    let ratio = |a: &Series, b: &Series| a.median() / b.median().max(1e-9);
    let h = ratio(&series[0], &series[2]);
    rep.ratios.push(Ratio {
        name: "hardened helper / move_pages(2), THP migration throughput".into(),
        value: h,
        target: ">= 0.90".into(),
        met: h >= 0.9,
    });
    let u = ratio(&series[1], &series[2]);
    rep.ratios.push(Ratio {
        name: "unhardened helper / move_pages(2), THP migration throughput".into(),
        value: u,
        target: "(no target)".into(),
        met: true,
    });
    let c = ratio(&series[0], &series[1]);
    rep.ratios.push(Ratio {
        name: "hardened / unhardened helper (the hardening's own cost)".into(),
        value: c,
        target: "(no target)".into(),
        met: true,
    });
    rep.series.extend(series);
    rep.series.extend(own);
    Ok(())
}

/// Median callback duration (ns) from two `invalidate_hist` readings.
fn hist_median(before: &[(u64, u64)], after: &[(u64, u64)]) -> (u64, u64) {
    let d: Vec<(u64, u64)> = after
        .iter()
        .map(|&(lo, n)| {
            let b = before.iter().find(|(l, _)| *l == lo).map_or(0, |(_, m)| *m);
            (lo, n.saturating_sub(b))
        })
        .collect();
    let total: u64 = d.iter().map(|(_, n)| n).sum();
    let mut seen = 0;
    for &(lo, n) in &d {
        seen += n;
        if total > 0 && seen * 2 >= total {
            return (lo, total);
        }
    }
    (0, total)
}

fn read_hist() -> Result<Vec<(u64, u64)>, String> {
    let t = debugfs::read("invalidate_hist")?;
    Ok(t.lines()
        .filter_map(|l| {
            let (a, b) = l.split_once(' ')?;
            Some((a.parse().ok()?, b.parse().ok()?))
        })
        .collect())
}

/// The CPU loops: `mprotect` flips and `mmap`/`munmap` of 16 pages.
fn cpu_loop(kind: &str, target: usize, loops: usize) -> Result<f64, String> {
    let len = 16 * PAGE;
    let t0 = Instant::now();
    for _ in 0..loops {
        // SAFETY: `target` is a 16-page mapping owned by the caller; the
        // mmap/munmap loop maps and unmaps its own memory.
        unsafe {
            if kind == "mprotect" {
                let p = target as *mut std::ffi::c_void;
                if sys::mprotect(p, len, sys::PROT_READ) != 0
                    || sys::mprotect(p, len, sys::PROT_READ | sys::PROT_WRITE) != 0
                {
                    return Err("mprotect failed".into());
                }
            } else {
                let m = Mapping::new(len, 0).map_err(|e| format!("mmap: {e}"))?;
                m.ptr.write_volatile(1);
                drop(m);
            }
        }
    }
    Ok(t0.elapsed().as_secs_f64() * 1e9 / loops as f64)
}

fn bench_cpu(o: &Options, rep: &mut Report) -> Result<(), String> {
    // Configurations: unbound, then bound with 0, 512 and 4096 entries.
    let configs: [(&str, Option<usize>); 4] = [
        ("unbound", None),
        ("bound_0", Some(0)),
        ("bound_512", Some(512)),
        ("bound_4096", Some(4096)),
    ];
    let small = Mapping::new(16 * PAGE, sys::MAP_POPULATE).map_err(|e| format!("mmap: {e}"))?;
    // 4096 small pages the device caches translations for.
    let cached = Mapping::new(4096 * PAGE, 0).map_err(|e| format!("mmap: {e}"))?;
    // SAFETY: the mapping is ours.
    unsafe { sys::madvise(cached.ptr.cast(), cached.len, MADV_NOHUGEPAGE) };
    for off in (0..cached.len).step_by(PAGE) {
        // SAFETY: inside the mapping.
        unsafe { cached.ptr.add(off).write_volatile(1) };
    }
    let mut series = Vec::new();
    let mut hist = vec![(0u64, 0u64); configs.len()];
    for kind in ["mprotect", "mmap_munmap"] {
        let mut s: Vec<Series> = configs
            .iter()
            .map(|(c, _)| Series::new(&format!("{kind}_{c}"), "ns/iteration"))
            .collect();
        for round in 0..o.rounds {
            for k in 0..configs.len() {
                let i = (round + k) % configs.len();
                let dev = match configs[i].1 {
                    None => None,
                    Some(n) => {
                        let d = open_dev()?;
                        bind(&d, 4096)?;
                        if n > 0 {
                            dev_fill(&d, cached.ptr as usize, n * PAGE, 1)?;
                        }
                        let st = ctx_stats(&d)?;
                        if st.tlb_entries as usize != n {
                            return Err(format!("{} entries cached, wanted {n}", st.tlb_entries));
                        }
                        Some(d)
                    }
                };
                let h0 = read_hist()?;
                s[i].rounds
                    .push(cpu_loop(kind, small.ptr as usize, o.loops)?);
                let h1 = read_hist()?;
                if kind == "mprotect" {
                    let (med, n) = hist_median(&h0, &h1);
                    // Keep the round's median of the larger sample.
                    if n >= hist[i].1 {
                        hist[i] = (med, n);
                    }
                }
                drop(dev);
            }
        }
        let base = s[0].median().max(1e-9);
        for (i, (c, _)) in configs.iter().enumerate().skip(1) {
            let v = s[i].median() / base;
            let target_512 = *c == "bound_512";
            rep.ratios.push(Ratio {
                name: format!("{kind} loop, {c} / unbound (CPU time)"),
                value: v,
                target: if target_512 { "<= 1.05" } else { "(no target)" }.into(),
                met: !target_512 || v <= 1.05,
            });
        }
        series.extend(s);
    }
    for (i, (c, _)) in configs.iter().enumerate().skip(1) {
        rep.notes.push(format!(
            "invalidate_hist during the mprotect loop, {c}: median bucket {} ns ({} callbacks)",
            hist[i].0, hist[i].1
        ));
    }
    let flat = hist[3].0 <= hist[1].0.max(1) * 2;
    rep.ratios.push(Ratio {
        name: "callback median, 4096 / 0 entries cached elsewhere (log2 buckets)".into(),
        value: hist[3].0 as f64 / hist[1].0.max(1) as f64,
        target: "<= 2 (one bucket)".into(),
        met: flat,
    });
    rep.series.extend(series);
    Ok(())
}

fn bench_hit_path(o: &Options, rep: &mut Report) -> Result<(), String> {
    let r = Region::new(1)?;
    let dev = open_dev()?;
    bind(&dev, 0)?;
    let ctx = ctx_stats(&dev)?.ctx_id;
    // Warm the translation.
    dev_fill(&dev, r.base as usize, HPAGE, 0)?;
    let mut dev_s = Series::new("hit_path_device_fill_2MiB", "ns");
    let mut mem_s = Series::new("hit_path_kernel_memset_2MiB", "ns");
    for _ in 0..o.rounds * 3 {
        debugfs::write(
            "bench_fill",
            &format!("{ctx} {:#x} {HPAGE}", r.base as usize),
        )
        .map_err(|e| format!("bench_fill: {e}"))?;
        let t = debugfs::parse_stats(&debugfs::read("bench_fill")?)?;
        let get = |k: &str| t.iter().find(|(n, _)| n == k).map_or(0, |(_, v)| *v);
        dev_s.rounds.push(get("device_ns") as f64);
        mem_s.rounds.push(get("memset_ns") as f64);
    }
    let v = mem_s.median() / dev_s.median().max(1e-9);
    rep.ratios.push(Ratio {
        name: "device fill through cached translations / in-kernel memset (throughput)".into(),
        value: v,
        target: ">= 0.50".into(),
        met: v >= 0.5,
    });
    rep.series.push(dev_s);
    rep.series.push(mem_s);
    Ok(())
}

/// Runs every benchmark.
pub fn run(o: &Options) -> Result<Report, String> {
    let mut rep = Report {
        series: Vec::new(),
        ratios: Vec::new(),
        notes: Vec::new(),
    };
    // One CPU: TLB shootdowns then need no cross-CPU interrupt, which
    // under TCG waits for the other vCPU's thread and swamps the numbers.
    sys::pin_to_cpu(0).map_err(|e| format!("pin to CPU 0: {e}"))?;
    // NUMA balancing would move the THPs behind the benchmark's back.
    const BALANCING: &str = "/proc/sys/kernel/numa_balancing";
    let old = fs::read_to_string(BALANCING).ok();
    if old.is_some() {
        fs::write(BALANCING, "0").map_err(|e| format!("{BALANCING}: {e}"))?;
    }
    let r = bench_migration(o, &mut rep)
        .and_then(|()| bench_cpu(o, &mut rep))
        .and_then(|()| bench_hit_path(o, &mut rep));
    if let Some(v) = old {
        let _ = fs::write(BALANCING, v.trim());
    }
    sys::unpin();
    r.map(|()| rep)
}

/// The report as a table.
pub fn table(o: &Options, rep: &Report) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "secmmu bench: {} THPs per migration batch, {} rounds, {} loop iterations; medians",
        o.thps, o.rounds, o.loops
    );
    let _ = writeln!(
        s,
        "\n{:<78} {:>8}  {:<18} verdict",
        "ratio", "value", "target"
    );
    for r in &rep.ratios {
        let verdict = if r.target.starts_with('(') {
            "-"
        } else if r.met {
            "met"
        } else {
            "MISSED"
        };
        let _ = writeln!(
            s,
            "{:<78} {:>8.3}  {:<18} {verdict}",
            r.name, r.value, r.target
        );
    }
    let _ = writeln!(s, "\n{:<40} {:>14}  unit", "series", "median");
    for x in &rep.series {
        let _ = writeln!(s, "{:<40} {:>14.1}  {}", x.name, x.median(), x.unit);
    }
    for n in &rep.notes {
        let _ = writeln!(s, "{n}");
    }
    s
}

fn json_str(v: &str) -> String {
    let mut o = String::from("\"");
    for c in v.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(o, "\\u{:04x}", c as u32);
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

/// The report as JSON, with every raw round and the machine facts.
pub fn json(o: &Options, rep: &Report, accel: &str) -> String {
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let vcpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mut s = String::from("{\n");
    let _ = writeln!(s, "  \"kernel\": {},", json_str(kernel.trim()));
    let _ = writeln!(s, "  \"vcpus\": {vcpus},");
    let _ = writeln!(s, "  \"accel\": {},", json_str(accel));
    let _ = writeln!(
        s,
        "  \"options\": {{\"thps\": {}, \"rounds\": {}, \"loops\": {}}},",
        o.thps, o.rounds, o.loops
    );
    s.push_str("  \"ratios\": [\n");
    for (i, r) in rep.ratios.iter().enumerate() {
        let _ = write!(
            s,
            "    {{\"name\": {}, \"value\": {:.4}, \"target\": {}, \"met\": {}}}",
            json_str(&r.name),
            r.value,
            json_str(&r.target),
            r.met
        );
        s.push_str(if i + 1 < rep.ratios.len() {
            ",\n"
        } else {
            "\n"
        });
    }
    s.push_str("  ],\n  \"series\": [\n");
    for (i, x) in rep.series.iter().enumerate() {
        let rounds: Vec<String> = x.rounds.iter().map(|v| format!("{v:.1}")).collect();
        let _ = write!(
            s,
            "    {{\"name\": {}, \"unit\": {}, \"median\": {:.1}, \"rounds\": [{}]}}",
            json_str(&x.name),
            json_str(x.unit),
            x.median(),
            rounds.join(", ")
        );
        s.push_str(if i + 1 < rep.series.len() {
            ",\n"
        } else {
            "\n"
        });
    }
    s.push_str("  ],\n  \"notes\": [");
    let notes: Vec<String> = rep.notes.iter().map(|n| json_str(n)).collect();
    s.push_str(&notes.join(", "));
    s.push_str("]\n}\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(&[]), 0.0);
        let before = [(0, 0), (256, 10), (512, 0)];
        let after = [(0, 0), (256, 12), (512, 5)];
        assert_eq!(hist_median(&before, &after), (512, 7));
    }

    #[test]
    fn json_escapes() {
        assert_eq!(json_str("a\"b\\c\n"), "\"a\\\"b\\\\c\\u000a\"");
    }
}
