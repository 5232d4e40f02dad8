// SPDX-License-Identifier: GPL-2.0

//! The seed scenario: a device that shares the page tables keeps writing to
//! THP-backed memory while the kernel migrates it between NUMA nodes, by
//! three drivers: the kernel's own NUMA balancing, `move_pages(2)`, and the
//! secmmu helper (hardened and unhardened, with and without
//! `late_invalidate` injection). Each run counts lost writes and checks the
//! ordering the event log records.

use crate::abi::{self, Bind, Stats, Stream, Verify};
use crate::debugfs;
use crate::events::{self, Event, Kind};
use crate::stress::{streamer, Passes};
use crate::sys::{self, ioctl_ptr, Mapping};
use std::fs::{self, File, OpenOptions};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::thread;
use std::time::{Duration, Instant};

const PAGE: usize = 4096;
const HPAGE: usize = 2 << 20;

/// Scenario settings.
#[derive(Clone, Copy)]
pub struct Options {
    /// THPs per run.
    pub thps: usize,
    /// Helper migrations per THP in each helper mode.
    pub rounds: usize,
    /// Longest wait for NUMA balancing to move the THPs.
    pub numa_timeout: Duration,
    /// `late_invalidate` delay for the injection runs, in microseconds.
    pub late_us: u64,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            thps: 2,
            rounds: 5,
            numa_timeout: Duration::from_secs(20),
            late_us: 20_000,
        }
    }
}

/// One run of the report.
#[derive(Default, Clone)]
pub struct Row {
    pub driver: &'static str,
    pub mode: &'static str,
    pub migrations: u64,
    pub device_writes: u64,
    pub invalidations: u64,
    pub late_caught: u64,
    pub lost: u64,
    pub stale: u64,
    /// Node of each THP at the end.
    pub nodes: Vec<i32>,
    /// `None` if every expectation held, else why not.
    pub failure: Option<String>,
    /// Set when the run could not happen here.
    pub skipped: Option<String>,
    /// Raw event log of the run (for timelines).
    pub events: String,
    /// What the kernel reported about the run, for the report.
    pub note: String,
}

impl Row {
    pub fn verdict(&self) -> &'static str {
        match (&self.skipped, &self.failure) {
            (Some(_), _) => "SKIP",
            (None, None) if self.lost > 0 => "ok (writes lost, as expected)",
            (None, None) => "ok",
            (None, Some(_)) => "FAIL",
        }
    }
}

/// THP-backed memory: `n` 2 MiB-aligned huge pages.
pub(crate) struct Region {
    _map: Mapping,
    pub(crate) base: *mut u8,
    pub(crate) n: usize,
}

impl Region {
    pub(crate) fn new(n: usize) -> Result<Self, String> {
        let map = Mapping::new((n + 1) * HPAGE, 0).map_err(|e| format!("mmap: {e}"))?;
        let base = ((map.ptr as usize + HPAGE - 1) & !(HPAGE - 1)) as *mut u8;
        // SAFETY: the aligned range lies inside the mapping.
        if unsafe { sys::madvise(base.cast(), n * HPAGE, sys::MADV_HUGEPAGE) } != 0 {
            return Err("madvise(MADV_HUGEPAGE) failed".into());
        }
        let r = Self { _map: map, base, n };
        r.touch(true);
        Ok(r)
    }

    pub(crate) fn thp(&self, i: usize) -> *mut u8 {
        self.base.wrapping_add(i * HPAGE)
    }

    /// Touches every 4 KiB page, away from the stream's slots (offset 0).
    fn touch(&self, write: bool) {
        for off in (0..self.n * HPAGE).step_by(PAGE) {
            let p = self.base.wrapping_add(off + PAGE / 2);
            // SAFETY: inside the mapping, which is readable and writable.
            unsafe {
                if write {
                    p.write_volatile(1);
                } else {
                    p.read_volatile();
                }
            }
        }
    }

    pub(crate) fn nodes(&self) -> Result<Vec<i32>, String> {
        (0..self.n)
            .map(|i| sys::node_of(self.thp(i)).map_err(|e| format!("move_pages query: {e}")))
            .collect()
    }

    fn is_thp(&self) -> bool {
        let kib = fs::read_to_string("/proc/self/smaps")
            .map(|s| crate_smaps_huge_kib(&s))
            .unwrap_or(0);
        kib >= (self.n * HPAGE / 1024) as u64
    }
}

fn crate_smaps_huge_kib(smaps: &str) -> u64 {
    smaps
        .lines()
        .filter_map(|l| l.strip_prefix("AnonHugePages:"))
        .filter_map(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .sum()
}

/// A bound device context.
pub(crate) struct Device {
    pub(crate) file: File,
}

impl Device {
    pub(crate) fn bind() -> Result<Self, String> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/secmmu")
            .map_err(|e| format!("/dev/secmmu: {e} (is secmmu.ko loaded?)"))?;
        let mut b = Bind::default();
        ioctl_ptr(file.as_raw_fd(), abi::BIND, &mut b).map_err(|e| format!("bind: {e}"))?;
        Ok(Self { file })
    }

    pub(crate) fn stop_and_verify(&self) -> Result<Verify, String> {
        let fd = self.file.as_raw_fd();
        let mut v = Verify::default();
        // SAFETY: STREAM_STOP takes no argument; 0 is never written.
        let stop = unsafe { sys::ioctl_addr(fd, abi::STREAM_STOP, 0) };
        ioctl_ptr(fd, abi::STREAM_VERIFY, &mut v).map_err(|e| format!("verify: {e}"))?;
        stop.map_err(|e| format!("the stream stopped on a device fault: {e}"))?;
        Ok(v)
    }

    pub(crate) fn stats(&self) -> Result<Stats, String> {
        let mut s = Stats::default();
        ioctl_ptr(self.file.as_raw_fd(), abi::GET_STATS, &mut s)
            .map_err(|e| format!("stats: {e}"))?;
        Ok(s)
    }
}

pub(crate) fn vmstat() -> Vec<(String, u64)> {
    fs::read_to_string("/proc/vmstat")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.to_string(), v.trim().parse().ok()?))
        })
        .collect()
}

pub(crate) fn vm_delta(before: &[(String, u64)], after: &[(String, u64)], key: &str) -> u64 {
    let get = |s: &[(String, u64)]| s.iter().find(|(k, _)| k == key).map_or(0, |(_, v)| *v);
    get(after).saturating_sub(get(before))
}

/// Checks, per THP, that whenever the device's fills for it move to
/// another node an invalidation covering the THP came in between, and that
/// its last fill is on the node the THP ended on (unless an invalidation
/// followed it).
fn check_fill_order(ev: &[Event], ctx: u32, r: &Region, final_nodes: &[i32]) -> Result<(), String> {
    let starts: Vec<u64> = (0..r.n).map(|i| r.thp(i) as u64).collect();
    check_fill_order_at(ev, ctx, &starts, final_nodes)
}

/// [`check_fill_order`] for the THPs starting at `starts`.
fn check_fill_order_at(
    ev: &[Event],
    ctx: u32,
    starts: &[u64],
    final_nodes: &[i32],
) -> Result<(), String> {
    for (i, &start) in starts.iter().enumerate() {
        let end = start + HPAGE as u64;
        let mut last_node: Option<i32> = None;
        let mut invalidated = false;
        let mut moves = 0;
        for e in ev.iter().filter(|e| e.ctx == ctx) {
            match e.kind {
                Kind::Invalidate if events::covers(e, start, end) => invalidated = true,
                Kind::Fill if e.a >= start && e.a < end => {
                    if let Some(n) = last_node {
                        if n != e.node {
                            if !invalidated {
                                return Err(format!(
                                    "THP {i}: device filled a page on node {} (seq {}) with no \
                                     invalidation of the THP since its fill on node {n}",
                                    e.node, e.seq
                                ));
                            }
                            moves += 1;
                        }
                    }
                    last_node = Some(e.node);
                    invalidated = false;
                }
                _ => {}
            }
        }
        // Unless the THP was invalidated after the device's last fill (and
        // the device had no reason to fill it again), that fill must be on
        // the node the THP ended on.
        if let (Some(n), Some(&f), false) = (last_node, final_nodes.get(i), invalidated) {
            if n != f {
                return Err(format!(
                    "THP {i}: the device's last fill is on node {n}, the THP on node {f}"
                ));
            }
        }
        let _ = moves;
    }
    Ok(())
}

/// Helper runs: every invalidation covering a migrated THP precedes
/// `copy_begin` unless the run is unhardened, and no stale access follows
/// `copy_begin` in hardened runs.
fn check_helper_order(ev: &[Event], hardened: bool) -> Result<usize, String> {
    let migs = events::migrations(ev);
    for m in &migs {
        let end_idx = m.end.unwrap_or(ev.len());
        let copy = ev[m.unmap..end_idx]
            .iter()
            .position(|e| e.kind == Kind::CopyBegin)
            .map(|p| m.unmap + p);
        let Some(copy) = copy else { continue };
        let start = m.start;
        let stop = m.start + m.len;
        let inval = ev[..m.unmap + 1]
            .iter()
            .rev()
            .take_while(|e| !(e.kind == Kind::MigrateDone || e.kind == Kind::MigrateAbort))
            .any(|e| e.kind == Kind::Invalidate && events::covers(e, start, stop));
        if !inval {
            return Err(format!(
                "migration at seq {}: no invalidation of the THP before it was unmapped",
                ev[m.unmap].seq
            ));
        }
        // The device's next fill of the THP after the migration, if it came
        // before anything invalidated the THP again, is on the new node.
        if let Some(done) = m
            .end
            .map(|i| &ev[i])
            .filter(|e| e.kind == Kind::MigrateDone)
        {
            let next_fill = ev[end_idx..]
                .iter()
                .take_while(|e| !(e.kind == Kind::Invalidate && events::covers(e, start, stop)))
                .find(|e| e.kind == Kind::Fill && e.a >= start && e.a < stop);
            if let Some(f) = next_fill {
                if f.node != done.node {
                    return Err(format!(
                        "the device's first fill after the migration at seq {} is on node {}, \
                         not {}",
                        done.seq, f.node, done.node
                    ));
                }
            }
        }
        if hardened {
            if let Some(s) = ev[copy..end_idx]
                .iter()
                .find(|e| e.kind == Kind::StaleAccess)
            {
                return Err(format!(
                    "hardened migration: stale device access at seq {} after copy_begin",
                    s.seq
                ));
            }
        }
    }
    Ok(migs.len())
}

/// What the single passes of a run verified.
#[derive(Clone, Copy, Default)]
struct Verified {
    writes: u64,
    lost: u64,
}

/// Waits (1 ms polls, at most 20 s) until the context's `stream_writes`
/// reaches `min`; returns its last value.
fn wait_stream_writes(dev: &Device, min: u64) -> Result<u64, String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let v = dev.stats()?.counters[abi::STAT_STREAM_WRITES];
        if v >= min || Instant::now() > deadline {
            return Ok(v);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Runs `f` while single-pass streams (each verified, so a lost write
/// cannot be hidden by a later one) write over `region` through `dev`,
/// from the moment the device has written; returns `f`'s result and what
/// the passes verified.
fn with_single_passes<T>(
    dev: &Device,
    region: &Region,
    f: impl FnOnce() -> Result<T, String>,
) -> Result<(T, Verified), String> {
    let stop = AtomicBool::new(false);
    let p = Passes::default();
    let (base, n) = (region.base as usize, region.n);
    let r = thread::scope(|s| {
        s.spawn(|| streamer(dev, base, n, &stop, &p, 1));
        let r = match wait_stream_writes(dev, 1) {
            Ok(0) => Err("the device did not write".to_string()),
            Ok(_) => f(),
            Err(e) => Err(e),
        };
        stop.store(true, Relaxed);
        r
    });
    let err = p.error.lock().map(|m| m.clone()).unwrap_or_default();
    if !err.is_empty() {
        return Err(format!("single-pass stream: {err}"));
    }
    let v = Verified {
        writes: p.writes.load(Relaxed),
        lost: p.lost.load(Relaxed),
    };
    Ok((r?, v))
}

/// Ends a run: fills the row from what the passes verified, the context's
/// counters and the event log (returned parsed).
fn finish(
    dev: &Device,
    region: &Region,
    row: &mut Row,
    v: Verified,
) -> Result<(Stats, Vec<Event>), String> {
    let st = dev.stats()?;
    let text = debugfs::read("events")?;
    let ev = events::parse(&text).map_err(|e| e.to_string())?;
    row.events = text;
    row.device_writes = v.writes;
    row.lost = v.lost;
    row.invalidations = st.counters[abi::STAT_INVALIDATIONS];
    row.late_caught = st.counters[abi::STAT_LATE_INVALIDATIONS_CAUGHT];
    row.stale = st.counters[abi::STAT_STALE_ACCESSES];
    row.nodes = region.nodes()?;
    Ok((st, ev))
}

/// The kernel's own NUMA balancing moves the THPs after the touching task
/// moves from node 0's CPU to node 1's.
fn run_numa_balancing(o: &Options) -> Row {
    let mut row = Row {
        driver: "numa_balancing",
        mode: "kernel",
        ..Default::default()
    };
    const KNOBS: &str = "/sys/kernel/debug/sched/numa_balancing";
    let Ok(old) = fs::read_to_string("/proc/sys/kernel/numa_balancing") else {
        row.skipped = Some("the kernel has no NUMA balancing".into());
        return row;
    };
    const ENGINE_CPUS: &str = "/sys/devices/virtual/workqueue/secmmu_engine/cpumask";
    let mut saved: Vec<(String, String)> = [
        "scan_delay_ms",
        "scan_period_min_ms",
        "scan_period_max_ms",
        "scan_size_mb",
    ]
    .iter()
    .filter_map(|k| {
        Some((
            format!("{KNOBS}/{k}"),
            fs::read_to_string(format!("{KNOBS}/{k}")).ok()?,
        ))
    })
    .collect();
    if let Ok(v) = fs::read_to_string(ENGINE_CPUS) {
        saved.push((ENGINE_CPUS.into(), v));
    }
    let r = (|| -> Result<(), String> {
        fs::write("/proc/sys/kernel/numa_balancing", "1")
            .map_err(|e| format!("numa_balancing: {e}"))?;
        for (k, v) in [
            ("scan_delay_ms", "0"),
            ("scan_period_min_ms", "100"),
            ("scan_period_max_ms", "400"),
            ("scan_size_mb", "256"),
        ] {
            fs::write(format!("{KNOBS}/{k}"), v).map_err(|e| format!("{KNOBS}/{k}: {e}"))?;
        }
        // The device sits on node 1, where the task moves: its page faults
        // are NUMA hinting faults too, and from node 0 they would pull the
        // THPs back.
        fs::write(ENGINE_CPUS, "2").map_err(|e| format!("{ENGINE_CPUS}: {e}"))?;
        sys::pin_to_cpu(0).map_err(|e| format!("pin to CPU 0: {e}"))?;
        let region = Region::new(o.thps)?;
        let start_nodes = region.nodes()?;
        if start_nodes.iter().any(|&n| n != 0) {
            return Err(format!(
                "first touch on CPU 0 left the THPs on nodes {start_nodes:?}"
            ));
        }
        if !region.is_thp() {
            return Err("the region is not backed by THPs".into());
        }
        let dev = Device::bind()?;
        debugfs::write_msg("events", "clear")?;
        let before = vmstat();
        // Pinned first: the thread of the single passes, whose checks read
        // the memory as the CPU, then runs on node 1's CPU too (from node
        // 0 its reads would be NUMA hinting faults pulling the THPs back).
        sys::pin_to_cpu(1).map_err(|e| format!("pin to CPU 1: {e}"))?;
        let (nodes, v) = with_single_passes(&dev, &region, || {
            let deadline = Instant::now() + o.numa_timeout;
            let mut nodes = region.nodes()?;
            while Instant::now() < deadline && nodes.iter().any(|&n| n != 1) {
                for _ in 0..4 {
                    region.touch(false);
                }
                nodes = region.nodes()?;
            }
            Ok(nodes)
        })?;
        let (st, ev) = finish(&dev, &region, &mut row, v)?;
        let after = vmstat();
        row.migrations = vm_delta(&before, &after, "thp_migration_success");
        let hint = vm_delta(&before, &after, "numa_hint_faults");
        let pages = vm_delta(&before, &after, "numa_pages_migrated");
        row.note = format!(
            "/proc/vmstat: numa_hint_faults +{hint}, numa_pages_migrated +{pages}, \
             thp_migration_success +{}; nodes before {start_nodes:?}",
            row.migrations
        );
        if nodes.iter().any(|&n| n != 1) {
            return Err(format!(
                "THPs still on nodes {nodes:?} after {:?} (numa_hint_faults +{hint}, numa_pages_migrated +{pages})",
                o.numa_timeout
            ));
        }
        if row.migrations == 0 {
            return Err(format!(
                "/proc/vmstat shows no THP migration (numa_pages_migrated +{pages})"
            ));
        }
        if v.lost != 0 {
            return Err(format!("{} lost writes", v.lost));
        }
        check_fill_order(&ev, st.ctx_id, &region, &nodes)
    })();
    sys::unpin();
    for (k, v) in saved {
        let _ = fs::write(k, v.trim());
    }
    let _ = fs::write("/proc/sys/kernel/numa_balancing", old.trim());
    row.failure = r.err();
    row
}

/// `move_pages(2)` ping-pong of whole THPs.
fn run_move_pages(o: &Options) -> Row {
    let mut row = Row {
        driver: "move_pages",
        mode: "syscall",
        ..Default::default()
    };
    let r = (|| -> Result<(), String> {
        let region = Region::new(o.thps)?;
        let dev = Device::bind()?;
        debugfs::write_msg("events", "clear")?;
        let (moved, v) = with_single_passes(&dev, &region, || {
            let mut moved = 0;
            for _ in 0..o.rounds {
                for i in 0..region.n {
                    let p = region.thp(i);
                    let to = i32::from(sys::node_of(p).map_err(|e| e.to_string())? == 0);
                    let mut st = [-1];
                    sys::move_pages(&[p], Some(&[to]), &mut st)
                        .map_err(|e| format!("move_pages: {e}"))?;
                    let now = sys::node_of(p).map_err(|e| e.to_string())?;
                    if now != to {
                        return Err(format!("THP {i} on node {now} after moving it to {to}"));
                    }
                    moved += 1;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            Ok(moved)
        })?;
        row.migrations = moved;
        let (st, ev) = finish(&dev, &region, &mut row, v)?;
        if v.lost != 0 {
            return Err(format!("{} lost writes", v.lost));
        }
        check_fill_order(&ev, st.ctx_id, &region, &row.nodes)
    })();
    row.failure = r.err();
    row
}

/// The helper in one mode.
fn run_helper(o: &Options, unhardened: bool, inject: bool) -> Row {
    let mode = match (unhardened, inject) {
        (false, false) => "hardened",
        (true, false) => "unhardened",
        (false, true) => "hardened+inject",
        (true, true) => "unhardened+inject",
    };
    let mut row = Row {
        driver: "helper",
        mode,
        ..Default::default()
    };
    let r = (|| -> Result<(), String> {
        let region = Region::new(o.thps)?;
        let dev = Device::bind()?;
        // Unhardened with injection, the pass after the copy must end while
        // the stale translation lives: at least 200 ms.
        let late = match (unhardened, inject) {
            (true, true) => o.late_us.max(200_000),
            (_, true) => o.late_us,
            _ => 0,
        };
        debugfs::write_msg("inject", &format!("late_invalidate={late}"))?;
        debugfs::write_msg("events", "clear")?;
        let v = if unhardened && inject {
            let (moved, v) = passes_after_copies(&dev, &region)?;
            row.migrations = moved;
            v
        } else {
            let (moved, v) = with_single_passes(&dev, &region, || {
                let mut moved = 0;
                for _ in 0..o.rounds {
                    for i in 0..region.n {
                        migrate_thp(region.thp(i), unhardened)?;
                        moved += 1;
                    }
                }
                Ok(moved)
            })?;
            row.migrations = moved;
            v
        };
        let (st, ev) = finish(&dev, &region, &mut row, v)?;
        if !region.is_thp() {
            return Err("the memory is no longer THP-backed".into());
        }
        let migs = check_helper_order(&ev, !unhardened)?;
        if migs == 0 {
            return Err("no helper migration in the event log".into());
        }
        match (unhardened, inject) {
            (true, true) => {
                if v.lost == 0 {
                    return Err(
                        "the late invalidation lost no write: the detector did not fire".into(),
                    );
                }
                if row.stale == 0 {
                    return Err("no stale device access was seen".into());
                }
            }
            (false, true) => {
                if v.lost != 0 {
                    return Err(format!("{} lost writes", v.lost));
                }
                if row.late_caught == 0 {
                    return Err("the hardened helper caught no late invalidation".into());
                }
            }
            _ => {
                if v.lost != 0 {
                    return Err(format!("{} lost writes", v.lost));
                }
            }
        }
        if !(unhardened && inject) {
            check_fill_order(&ev, st.ctx_id, &region, &row.nodes)?;
        }
        Ok(())
    })();
    let _ = debugfs::write_msg("inject", "late_invalidate=0");
    row.failure = r.err();
    row
}

/// Moves the THP at `p` to the other node with the helper. A device page
/// walk holds a page reference for a moment, which setup reads as a pin
/// (the documented `-EBUSY`): retried, 100 times at most.
fn migrate_thp(p: *mut u8, unhardened: bool) -> Result<(), String> {
    let to = i32::from(sys::node_of(p).map_err(|e| e.to_string())? == 0);
    let line = format!(
        "{} {:#x} {to}{}",
        std::process::id(),
        p as usize,
        if unhardened { " unhardened" } else { "" }
    );
    let mut busy = 0;
    loop {
        match debugfs::write("migrate_thp", &line) {
            Err(e) if e.raw_os_error() == Some(16) && busy < 100 => busy += 1,
            r => return r.map_err(|e| format!("migrate_thp '{line}': {e}")),
        }
    }
}

/// How many `copy_end` events the log holds.
fn copies_seen() -> Result<usize, String> {
    Ok(debugfs::read("events")?.matches(" copy_end ").count())
}

/// The unhardened helper with injection, once per THP: the device caches
/// its translation of the THP, the helper runs on a thread of its own, and
/// once it has copied (a new `copy_end`) a single pass over the THP writes
/// through the stale translation and is verified. Every write after the
/// copy is lost, and no later pass can hide it.
fn passes_after_copies(dev: &Device, region: &Region) -> Result<(u64, Verified), String> {
    let fd = dev.file.as_raw_fd();
    let mut v = Verified::default();
    for i in 0..region.n {
        let p = region.thp(i);
        let mut a = crate::abi::Access {
            addr: p as u64,
            len: 8,
            ..Default::default()
        };
        ioctl_ptr(fd, abi::WRITE, &mut a).map_err(|e| format!("device write: {e}"))?;
        let copies = copies_seen()?;
        let addr = p as usize;
        let r = thread::scope(|s| {
            let helper = s.spawn(move || migrate_thp(addr as *mut u8, true));
            let deadline = Instant::now() + Duration::from_secs(20);
            while copies_seen()? <= copies && Instant::now() < deadline {}
            let w0 = dev.stats()?.counters[abi::STAT_STREAM_WRITES];
            let mut st = Stream {
                addr: addr as u64,
                stride: PAGE as u64,
                slots: (HPAGE / PAGE) as u32,
                flags: abi::STREAM_ONCE,
            };
            ioctl_ptr(fd, abi::STREAM_START, &mut st).map_err(|e| format!("stream start: {e}"))?;
            wait_stream_writes(dev, w0 + u64::from(st.slots))?;
            let pass = dev.stop_and_verify()?;
            helper
                .join()
                .map_err(|_| "the helper thread panicked".to_string())??;
            Ok::<Verify, String>(pass)
        })?;
        v.writes += r.writes;
        v.lost += r.lost_writes;
    }
    Ok((region.n as u64, v))
}

/// Runs every driver and mode.
pub fn run(o: &Options) -> Vec<Row> {
    vec![
        run_numa_balancing(o),
        run_move_pages(o),
        run_helper(o, false, false),
        run_helper(o, true, false),
        run_helper(o, false, true),
        run_helper(o, true, true),
    ]
}

/// The report table.
pub fn table(rows: &[Row]) -> String {
    let mut s = format!(
        "{:<15} {:<18} {:>10} {:>13} {:>13} {:>12} {:>10}  {}\n",
        "driver",
        "mode",
        "migrations",
        "device writes",
        "invalidations",
        "late caught",
        "lost",
        "verdict"
    );
    for r in rows {
        s += &format!(
            "{:<15} {:<18} {:>10} {:>13} {:>13} {:>12} {:>10}  {}\n",
            r.driver,
            r.mode,
            r.migrations,
            r.device_writes,
            r.invalidations,
            r.late_caught,
            r.lost,
            r.verdict()
        );
    }
    s
}

/// The expected outcome of a row, in words, for the report.
pub fn expectation(r: &Row) -> &'static str {
    match r.mode {
        "unhardened+inject" => "expect lost writes > 0: the detector fires",
        "hardened+inject" => "expect 0 lost and late invalidations caught",
        _ => "expect 0 lost writes",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HARDENED: &str = include_str!("../testdata/hardened-inject.log");
    const UNHARDENED: &str = include_str!("../testdata/unhardened-inject.log");

    /// The ordering detectors pass on a good log and fire on a bad one.
    #[test]
    fn helper_order_detector_fires() {
        let good = events::parse(HARDENED).unwrap();
        assert_eq!(check_helper_order(&good, true), Ok(1));
        let bad = events::parse(UNHARDENED).unwrap();
        assert_eq!(check_helper_order(&bad, false), Ok(1));
        let e = check_helper_order(&bad, true).unwrap_err();
        assert!(e.contains("stale device access"), "{e}");
        // Without the invalidation before the unmap, it fires too.
        let no_inval: Vec<Event> = good
            .iter()
            .filter(|e| e.kind != Kind::Invalidate)
            .cloned()
            .collect();
        let e = check_helper_order(&no_inval, true).unwrap_err();
        assert!(e.contains("no invalidation"), "{e}");
    }

    #[test]
    fn fill_order_detector_fires() {
        let log = "\
1 1 0 5 fill 0x200000 0x1000 0
2 2 0 5 invalidate 0x200000 0x400000 -1
3 3 0 5 fill 0x200000 0x2000 1
";
        let ev = events::parse(log).unwrap();
        assert_eq!(check_fill_order_at(&ev, 5, &[0x200000], &[1]), Ok(()));
        // A fill on the new node with no invalidation in between.
        let skipped: Vec<Event> = ev
            .iter()
            .filter(|e| e.kind != Kind::Invalidate)
            .cloned()
            .collect();
        let e = check_fill_order_at(&skipped, 5, &[0x200000], &[1]).unwrap_err();
        assert!(e.contains("no invalidation"), "{e}");
        // The last fill on a node the THP is not on.
        let e = check_fill_order_at(&ev, 5, &[0x200000], &[0]).unwrap_err();
        assert!(e.contains("last fill"), "{e}");
    }
}
