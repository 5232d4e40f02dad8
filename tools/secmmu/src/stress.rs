// SPDX-License-Identifier: GPL-2.0

//! Bounded stress: for a fixed time, several device contexts run single-pass
//! streams back to back, each verified, on THP
//! memory while everything that moves or changes that memory runs at once:
//! helper migrations, `move_pages(2)`, the kernel's NUMA balancing,
//! `mprotect` flips, and, on a separate churn region that another context
//! writes through the device, `MADV_DONTNEED`, `munmap` (done as a
//! `PROT_NONE` replacement) and `mmap`, read-only windows and `fork`. At the end every stream is verified and the counter
//! invariants ([`INVARIANTS`]) are checked.
//!
//! The stream regions are `MADV_DONTFORK`: a fork would write-protect them
//! and the device's next write would break COW at 4 KiB, splitting the THPs
//! the run exists to migrate. The churn region is inherited by each child.

use crate::abi::{self, Access, Stats};
use crate::debugfs;
use crate::rng::Rng;
use crate::scenario::{vm_delta, vmstat, Device, Region};
use crate::sys::{self, ioctl_ptr, Mapping};
use std::fs;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

const PAGE: usize = 4096;
const HPAGE: usize = 2 << 20;

/// The counter invariants the run checks, as printed in its report.
pub const INVARIANTS: &[&str] = &[
    "no stream lost a write: every single-pass stream is verified \
     (sum of STREAM_VERIFY lost_writes == 0; global lost_writes unchanged)",
    "every stream write went through one TLB hit and was verified \
     (stream context: tlb_hits == stream_writes == sum of writes verified)",
    "every fill is still cached, evicted or invalidated \
     (stream context: tlb_fills == tlb_entries + tlb_evictions + invalidated_entries)",
    "every miss was filled, retried or faulted \
     (tlb_fills + fill_retries <= tlb_misses <= tlb_fills + fill_retries + device_faults)",
    "the TLB never exceeds its capacity (tlb_entries <= tlb_capacity)",
    "no stale access, no access through a freed page and no helper verification failure \
     without injection (stale_accesses, thp_verify_failures, late_invalidations_caught, \
     freed_page_accesses unchanged)",
    "the helper's own count matches its results \
     (thp_migrations and thp_migration_failures deltas == results seen)",
    "every binding ended (binds == unbinds, module reference count back to 0)",
];

/// Stress settings.
#[derive(Clone, Copy)]
pub struct Options {
    /// How long the concurrent phase runs.
    pub seconds: u64,
    /// Streaming contexts, each on its own THP region.
    pub contexts: usize,
    /// THPs per streaming context.
    pub thps: usize,
    /// Seed of the random choices (which THP, which operation).
    pub seed: u64,
    /// THP migrations the run must reach in total.
    pub min_migrations: u64,
    /// Self-test of the detectors: the helper runs `unhardened` with
    /// `late_invalidate` injected, the pre-fix ordering, so writes must be
    /// lost and the checks must fail. The run stops at the first stale
    /// access, or after `seconds`.
    pub inject: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            seconds: 120,
            contexts: 3,
            thps: 2,
            seed: 1,
            min_migrations: 1000,
            inject: false,
        }
    }
}

/// What one driver thread did.
#[derive(Default)]
struct Counts {
    ops: AtomicU64,
    ok: AtomicU64,
    expected_err: AtomicU64,
    unexpected: AtomicU64,
    last_unexpected: std::sync::Mutex<String>,
}

impl Counts {
    fn note(&self, r: Result<(), i32>, allowed: &[i32], what: &str) {
        self.ops.fetch_add(1, Relaxed);
        match r {
            Ok(()) => {
                self.ok.fetch_add(1, Relaxed);
            }
            Err(e) if allowed.contains(&e) => {
                self.expected_err.fetch_add(1, Relaxed);
            }
            Err(e) => {
                self.unexpected.fetch_add(1, Relaxed);
                if let Ok(mut l) = self.last_unexpected.lock() {
                    *l = format!("{what}: errno {e}");
                }
            }
        }
    }
}

/// Result of a stress run.
pub struct Report {
    /// `name: value` lines describing the run.
    pub lines: Vec<String>,
    /// Checks, each with `None` if it held.
    pub checks: Vec<(String, Option<String>)>,
}

/// Saved sysctl/debugfs values, written back on drop.
struct Saved(Vec<(String, String)>);

impl Saved {
    fn set(&mut self, path: &str, value: &str) -> Result<(), String> {
        let old = fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
        fs::write(path, value).map_err(|e| format!("{path}: {e}"))?;
        self.0.push((path.to_string(), old));
        Ok(())
    }
}

impl Drop for Saved {
    fn drop(&mut self) {
        for (p, v) in self.0.iter().rev() {
            let _ = fs::write(p, v.trim());
        }
    }
}

fn errno(e: &std::io::Error) -> i32 {
    e.raw_os_error().unwrap_or(-1)
}

const EAGAIN: i32 = 11;
const ENOMEM: i32 = 12;
const EBUSY: i32 = 16;
const EFAULT: i32 = 14;
const ENOENT: i32 = 2;
const EALREADY: i32 = 114;

/// Addresses of the THPs the streams write to.
#[derive(Clone)]
struct Thps(Arc<Vec<usize>>);

impl Thps {
    fn pick(&self, rng: &mut Rng) -> usize {
        self.0.get(rng.index(self.0.len())).copied().unwrap_or(0)
    }
}

fn other_node(addr: usize) -> Option<i32> {
    match sys::node_of(addr as *mut u8) {
        Ok(0) => Some(1),
        Ok(1) => Some(0),
        _ => None,
    }
}

fn helper_thread(thps: Thps, stop: Arc<AtomicBool>, c: Arc<Counts>, seed: u64, mode: &str) {
    let mut rng = Rng::new(seed);
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { sys::getpid() };
    while !stop.load(Relaxed) {
        let a = thps.pick(&mut rng);
        let Some(node) = other_node(a) else { continue };
        let r = debugfs::write("migrate_thp", &format!("{pid} {a:#x} {node}{mode}"))
            .map_err(|e| errno(&e));
        // Another driver may have moved or isolated the THP meanwhile
        // (ENOENT: its PMD is a migration entry right now).
        c.note(
            r,
            &[EALREADY, EBUSY, EAGAIN, ENOMEM, ENOENT],
            "helper migrate_thp",
        );
    }
}

fn move_pages_thread(thps: Thps, stop: Arc<AtomicBool>, c: Arc<Counts>, seed: u64) {
    let mut rng = Rng::new(seed);
    while !stop.load(Relaxed) {
        let a = thps.pick(&mut rng);
        let Some(node) = other_node(a) else { continue };
        let mut status = [0i32];
        let r = sys::move_pages(&[a as *mut u8], Some(&[node]), &mut status)
            .map_err(|e| errno(&e))
            .and_then(|_| {
                if status[0] < 0 {
                    Err(-status[0])
                } else {
                    Ok(())
                }
            });
        c.note(r, &[EBUSY, EAGAIN, ENOMEM, ENOENT, EFAULT], "move_pages");
    }
}

fn mprotect_thread(thps: Thps, stop: Arc<AtomicBool>, c: Arc<Counts>, seed: u64) {
    let mut rng = Rng::new(seed);
    while !stop.load(Relaxed) {
        let a = thps.pick(&mut rng) as *mut std::ffi::c_void;
        // Stays writable: the flip changes the PMD and flushes the TLBs
        // without ever faulting the device.
        let rwx = sys::PROT_READ | sys::PROT_WRITE | sys::PROT_EXEC;
        // SAFETY: a whole THP of a stream region, which stays mapped.
        let r = unsafe {
            sys::mprotect(a, HPAGE, rwx) | sys::mprotect(a, HPAGE, sys::PROT_READ | sys::PROT_WRITE)
        };
        c.note(if r == 0 { Ok(()) } else { Err(-1) }, &[], "mprotect");
        thread::sleep(Duration::from_millis(2));
    }
}

/// The churn region: 4 THPs' worth, changed under the device's feet.
struct Churn {
    base: usize,
    len: usize,
}

fn churn_device_thread(ch: Arc<Churn>, stop: Arc<AtomicBool>, c: Arc<Counts>, seed: u64) {
    let mut rng = Rng::new(seed);
    let dev = match Device::bind() {
        Ok(d) => d,
        Err(e) => {
            c.note(Err(-1), &[], &e);
            return;
        }
    };
    while !stop.load(Relaxed) {
        let off = rng.below((ch.len / 8) as u64) as usize * 8;
        let len = (8 * (1 + rng.below(64)) as usize).min(ch.len - off);
        let mut a = Access {
            addr: (ch.base + off) as u64,
            len: len as u64,
            value: rng.next_u64(),
            ..Default::default()
        };
        let r = ioctl_ptr(dev.file.as_raw_fd(), abi::WRITE, &mut a).map_err(|e| errno(&e));
        // EFAULT while the page is unmapped or read-only.
        c.note(r, &[EFAULT], "device write to the churn region");
    }
}

fn churn_mm_thread(ch: Arc<Churn>, stop: Arc<AtomicBool>, c: Arc<Counts>, seed: u64) {
    let mut rng = Rng::new(seed);
    while !stop.load(Relaxed) {
        let thp = ch.base + rng.index(ch.len / HPAGE) * HPAGE;
        let (addr, len) = if rng.chance(1, 2) {
            (thp, HPAGE)
        } else {
            (thp + rng.index(HPAGE / PAGE - 4) * PAGE, 4 * PAGE)
        };
        let p = addr as *mut std::ffi::c_void;
        // SAFETY: every call stays inside the churn region, which only this
        // thread maps and unmaps; the device tolerates any state of it.
        let r = unsafe {
            match rng.below(4) {
                0 => sys::madvise(p, len, sys::MADV_DONTNEED),
                1 => {
                    let rw = sys::PROT_READ | sys::PROT_WRITE;
                    let q = sys::mmap(
                        p,
                        len,
                        rw,
                        sys::MAP_PRIVATE | sys::MAP_ANONYMOUS | sys::MAP_FIXED,
                        -1,
                        0,
                    );
                    if q as isize == -1 {
                        -1
                    } else {
                        sys::madvise(p, len, sys::MADV_HUGEPAGE)
                    }
                }
                2 => {
                    // munmap's teardown, without ever leaving the range
                    // free for another thread's allocation: a PROT_NONE
                    // mapping replaces it in one call, then a fresh one.
                    let f = sys::MAP_PRIVATE | sys::MAP_ANONYMOUS | sys::MAP_FIXED;
                    let r = sys::mmap(p, len, 0, f, -1, 0);
                    thread::sleep(Duration::from_micros(500));
                    let q = sys::mmap(p, len, sys::PROT_READ | sys::PROT_WRITE, f, -1, 0);
                    if r as isize == -1 || q as isize == -1 {
                        -1
                    } else {
                        sys::madvise(p, len, sys::MADV_HUGEPAGE)
                    }
                }
                _ => {
                    let r = sys::mprotect(p, len, sys::PROT_READ);
                    thread::sleep(Duration::from_micros(500));
                    r | sys::mprotect(p, len, sys::PROT_READ | sys::PROT_WRITE)
                }
            }
        };
        c.note(
            if r == 0 { Ok(()) } else { Err(-1) },
            &[],
            "churn mm operation",
        );
        if r != 0 {
            continue;
        }
        // Touch what is mapped, so there are pages to tear down again.
        for off in (0..len).step_by(PAGE) {
            // SAFETY: mapped read-write by the operation above.
            unsafe { ((addr + off + 64) as *mut u8).write_volatile(1) };
        }
    }
}

/// Forks and reaps children: each fork copies the churn region's page
/// tables (write-protecting them, which invalidates the device's entries).
fn fork_thread(stop: Arc<AtomicBool>, c: Arc<Counts>) {
    while !stop.load(Relaxed) {
        // SAFETY: the child calls nothing but `_exit`.
        let pid = unsafe { sys::fork() };
        if pid == 0 {
            // SAFETY: exiting the child without running anything else.
            unsafe { sys::_exit(0) };
        }
        let r = if pid < 0 {
            Err(-1)
        } else {
            let mut status = -1;
            // SAFETY: `status` is a valid out-pointer.
            let w = unsafe { sys::waitpid(pid, &mut status, 0) };
            if w == pid && status == 0 {
                Ok(())
            } else {
                Err(-1)
            }
        };
        c.note(r, &[], "fork");
        thread::sleep(Duration::from_millis(10));
    }
}

/// Touches the stream regions from alternating CPUs so NUMA balancing has
/// a reason to move them (the device's own writes are hinting faults too).
fn numa_toucher(thps: Thps, stop: Arc<AtomicBool>, c: Arc<Counts>) {
    let mut cpu = 0;
    while !stop.load(Relaxed) {
        c.note(
            sys::pin_to_cpu(cpu).map_err(|e| errno(&e)),
            &[],
            "pin to CPU",
        );
        let until = Instant::now() + Duration::from_millis(700);
        while Instant::now() < until && !stop.load(Relaxed) {
            for &a in thps.0.iter() {
                for off in (PAGE / 2..HPAGE).step_by(16 * PAGE) {
                    // SAFETY: inside a stream region, read-only access.
                    unsafe { ((a + off) as *const u8).read_volatile() };
                }
            }
            // Leave the CPUs to the drivers and the device.
            thread::sleep(Duration::from_millis(20));
        }
        cpu ^= 1;
    }
    sys::unpin();
}

/// What one context's streamer verified.
#[derive(Default)]
pub(crate) struct Passes {
    pub(crate) count: AtomicU64,
    pub(crate) writes: AtomicU64,
    pub(crate) lost: AtomicU64,
    pub(crate) error: std::sync::Mutex<String>,
}

/// Runs single-pass streams (`SECMMU_STREAM_ONCE`) back to back over a
/// stream region, verifying each: every write the device makes is checked,
/// not only the last one per slot, so a write lost mid-run cannot be
/// hidden by a later write to the same slot.
pub(crate) fn streamer(
    d: &Device,
    base: usize,
    n: usize,
    stop: &AtomicBool,
    p: &Passes,
    seed: u64,
) {
    let mut rng = Rng::new(seed);
    let fd = d.file.as_raw_fd();
    while !stop.load(Relaxed) {
        let mut s = abi::Stream {
            addr: base as u64,
            stride: PAGE as u64,
            slots: (n * HPAGE / PAGE) as u32,
            flags: abi::STREAM_ONCE,
        };
        if let Err(e) = ioctl_ptr(fd, abi::STREAM_START, &mut s) {
            if let Ok(mut m) = p.error.lock() {
                *m = format!("stream start: {e}");
            }
            return;
        }
        // Usually the pass ends by itself; sometimes verification cuts it
        // short, which checks the slots written so far.
        thread::sleep(Duration::from_millis(rng.below(12)));
        match d.stop_and_verify() {
            Ok(v) => {
                p.count.fetch_add(1, Relaxed);
                p.writes.fetch_add(v.writes, Relaxed);
                p.lost.fetch_add(v.lost_writes, Relaxed);
            }
            Err(e) => {
                if let Ok(mut m) = p.error.lock() {
                    *m = e;
                }
                return;
            }
        }
    }
}

fn global_stats() -> Result<Vec<(String, u64)>, String> {
    debugfs::parse_stats(&debugfs::read("stats")?)
}

fn delta(before: &[(String, u64)], after: &[(String, u64)], key: &str) -> u64 {
    vm_delta(before, after, key)
}

fn module_refs() -> Option<u64> {
    fs::read_to_string("/sys/module/secmmu/refcnt")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Checks the per-context invariants of a stopped stream context.
fn check_stream_ctx(i: usize, st: &Stats, verified_writes: u64) -> Vec<String> {
    let c = &st.counters;
    let mut bad = Vec::new();
    let (hits, writes) = (c[abi::STAT_TLB_HITS], c[abi::STAT_STREAM_WRITES]);
    if hits != writes || writes != verified_writes {
        bad.push(format!(
            "context {i}: tlb_hits {hits}, stream_writes {writes}, writes verified {verified_writes}"
        ));
    }
    let (fills, ent, ev, inv) = (
        c[abi::STAT_TLB_FILLS],
        st.tlb_entries as u64,
        c[abi::STAT_TLB_EVICTIONS],
        c[abi::STAT_INVALIDATED_ENTRIES],
    );
    if fills != ent + ev + inv {
        bad.push(format!(
            "context {i}: tlb_fills {fills} != tlb_entries {ent} + tlb_evictions {ev} + invalidated_entries {inv}"
        ));
    }
    let (miss, retr, faults) = (
        c[abi::STAT_TLB_MISSES],
        c[abi::STAT_FILL_RETRIES],
        c[abi::STAT_DEVICE_FAULTS],
    );
    if miss < fills + retr || miss > fills + retr + faults {
        bad.push(format!(
            "context {i}: tlb_misses {miss} outside [fills {fills} + retries {retr}, + device_faults {faults}]"
        ));
    }
    if st.tlb_entries > st.tlb_capacity {
        bad.push(format!(
            "context {i}: {} entries > capacity {}",
            st.tlb_entries, st.tlb_capacity
        ));
    }
    bad
}

/// Runs the stress and returns its report.
pub fn run(o: &Options) -> Result<Report, String> {
    let mut saved = Saved(Vec::new());
    const KNOBS: &str = "/sys/kernel/debug/sched/numa_balancing";
    saved.set("/proc/sys/kernel/numa_balancing", "1")?;
    for (k, v) in [
        ("scan_delay_ms", "0"),
        ("scan_period_min_ms", "100"),
        ("scan_period_max_ms", "400"),
        ("scan_size_mb", "256"),
    ] {
        saved.set(&format!("{KNOBS}/{k}"), v)?;
    }
    let late = if o.inject {
        "late_invalidate=20000"
    } else {
        "late_invalidate=0"
    };
    debugfs::write_msg("inject", late)?;
    debugfs::write_msg("inject", "corrupt_copy=0")?;

    let g0 = global_stats()?;
    let vm0 = vmstat();
    let mut regions = Vec::new();
    let mut devs = Vec::new();
    let mut streams = Vec::new();
    for _ in 0..o.contexts {
        let r = Region::new(o.thps)?;
        // SAFETY: the region's THP-aligned range lies inside its mapping.
        if unsafe { sys::madvise(r.base.cast(), r.n * HPAGE, sys::MADV_DONTFORK) } != 0 {
            return Err("madvise(MADV_DONTFORK) failed".into());
        }
        let d = Device::bind()?;
        streams.push((r.base as usize, r.n));
        regions.push(r);
        devs.push(Arc::new(d));
    }
    let thps = Thps(Arc::new(
        regions
            .iter()
            .flat_map(|r| (0..r.n).map(|i| r.thp(i) as usize))
            .collect(),
    ));
    let churn_map = Mapping::new(5 * HPAGE, 0).map_err(|e| format!("mmap: {e}"))?;
    let churn = Arc::new(Churn {
        base: (churn_map.ptr as usize + HPAGE - 1) & !(HPAGE - 1),
        len: 4 * HPAGE,
    });

    let stop = Arc::new(AtomicBool::new(false));
    let names = [
        "helper",
        "move_pages",
        "mprotect",
        "churn device",
        "churn mm",
        "fork",
        "numa",
    ];
    let counts: Vec<Arc<Counts>> = names.iter().map(|_| Arc::new(Counts::default())).collect();
    let mut seeds = Rng::new(o.seed);
    let mut handles = Vec::new();
    {
        let (t, s, c, seed) = (
            thps.clone(),
            stop.clone(),
            counts[0].clone(),
            seeds.next_u64(),
        );
        let mode = if o.inject { " unhardened" } else { "" };
        handles.push(thread::spawn(move || helper_thread(t, s, c, seed, mode)));
        let (t, s, c, seed) = (
            thps.clone(),
            stop.clone(),
            counts[1].clone(),
            seeds.next_u64(),
        );
        handles.push(thread::spawn(move || move_pages_thread(t, s, c, seed)));
        let (t, s, c, seed) = (
            thps.clone(),
            stop.clone(),
            counts[2].clone(),
            seeds.next_u64(),
        );
        handles.push(thread::spawn(move || mprotect_thread(t, s, c, seed)));
        let (ch, s, c, seed) = (
            churn.clone(),
            stop.clone(),
            counts[3].clone(),
            seeds.next_u64(),
        );
        handles.push(thread::spawn(move || churn_device_thread(ch, s, c, seed)));
        let (ch, s, c, seed) = (
            churn.clone(),
            stop.clone(),
            counts[4].clone(),
            seeds.next_u64(),
        );
        handles.push(thread::spawn(move || churn_mm_thread(ch, s, c, seed)));
        let (s, c) = (stop.clone(), counts[5].clone());
        handles.push(thread::spawn(move || fork_thread(s, c)));
        let (t, s, c) = (thps.clone(), stop.clone(), counts[6].clone());
        handles.push(thread::spawn(move || numa_toucher(t, s, c)));
    }
    let passes: Vec<Arc<Passes>> = devs.iter().map(|_| Arc::new(Passes::default())).collect();
    for ((d, &(base, n)), p) in devs.iter().zip(&streams).zip(&passes) {
        let (d, p, s, seed) = (d.clone(), p.clone(), stop.clone(), seeds.next_u64());
        handles.push(thread::spawn(move || streamer(&d, base, n, &s, &p, seed)));
    }
    let t0 = Instant::now();
    let end = t0 + Duration::from_secs(o.seconds);
    // Under injection the run has done its job once the device has written
    // through a dropped translation: stop there rather than at the time
    // limit, so a slow (debug) kernel gets as long as it needs, up to
    // `--seconds`.
    while Instant::now() < end {
        thread::sleep(Duration::from_millis(250));
        if o.inject && global_stats().is_ok_and(|g| delta(&g0, &g, "stale_accesses") != 0) {
            break;
        }
    }
    stop.store(true, Relaxed);
    for h in handles {
        let _ = h.join();
    }
    let elapsed = t0.elapsed().as_secs_f64();

    let mut checks: Vec<(String, Option<String>)> = Vec::new();
    let mut lost = 0;
    let mut ctx_bad = Vec::new();
    let mut stream_writes = 0;
    for (i, (d, p)) in devs.iter().zip(&passes).enumerate() {
        let st = d.stats()?;
        let (w, l) = (p.writes.load(Relaxed), p.lost.load(Relaxed));
        lost += l;
        stream_writes += w;
        ctx_bad.extend(check_stream_ctx(i, &st, w));
        if let Ok(e) = p.error.lock() {
            if !e.is_empty() {
                ctx_bad.push(format!("context {i}: {e}"));
            }
        }
    }
    let nodes: Vec<i32> = regions
        .iter()
        .flat_map(|r| r.nodes().unwrap_or_default())
        .collect();
    drop(devs);
    drop(churn_map);
    let g1 = global_stats()?;
    let vm1 = vmstat();
    drop(saved);
    if o.inject {
        let _ = debugfs::write("inject", "late_invalidate=0");
    }

    let helper_ok = counts[0].ok.load(Relaxed);
    let helper_err = counts[0].expected_err.load(Relaxed) + counts[0].unexpected.load(Relaxed);
    let helper_moves = delta(&g0, &g1, "thp_migrations");
    let kernel_moves = vm_delta(&vm0, &vm1, "thp_migration_success");
    let total = helper_moves + kernel_moves;

    let mut lines = vec![
        format!("seed: {}", o.seed),
        format!("seconds: {elapsed:.1}"),
        format!("contexts: {} streaming x {} THPs, 1 churn", o.contexts, o.thps),
        format!("thp migrations: {total} (helper {helper_moves}, move_pages(2) + NUMA balancing {kernel_moves})"),
        format!(
            "numa balancing: numa_hint_faults +{}, numa_pages_migrated +{}",
            vm_delta(&vm0, &vm1, "numa_hint_faults"),
            vm_delta(&vm0, &vm1, "numa_pages_migrated")
        ),
        format!(
            "stream writes: {stream_writes} in {} single passes, each verified; lost: {lost}",
            passes.iter().map(|p| p.count.load(Relaxed)).sum::<u64>()
        ),
        format!(
            "device: invalidations +{}, tlb_fills +{}, tlb_hits +{}, device_faults +{}",
            delta(&g0, &g1, "invalidations"),
            delta(&g0, &g1, "tlb_fills"),
            delta(&g0, &g1, "tlb_hits"),
            delta(&g0, &g1, "device_faults")
        ),
        format!("THPs ended on nodes {nodes:?}"),
    ];
    for (n, c) in names.iter().zip(&counts) {
        lines.push(format!(
            "{n}: {} operations, {} ok, {} expected errors, {} unexpected",
            c.ops.load(Relaxed),
            c.ok.load(Relaxed),
            c.expected_err.load(Relaxed),
            c.unexpected.load(Relaxed)
        ));
    }

    let mut check = |name: &str, bad: Option<String>| checks.push((name.to_string(), bad));
    check(
        "thp_migrations",
        (total < o.min_migrations)
            .then(|| format!("{total} THP migrations, fewer than {}", o.min_migrations)),
    );
    let glost = delta(&g0, &g1, "lost_writes");
    check(
        "no_lost_writes",
        (lost != 0 || glost != 0).then(|| format!("{lost} lost writes (global counter +{glost})")),
    );
    check(
        "context_counters",
        (!ctx_bad.is_empty()).then(|| ctx_bad.join("; ")),
    );
    let quiet: Vec<String> = [
        "stale_accesses",
        "thp_verify_failures",
        "late_invalidations_caught",
        "freed_page_accesses",
    ]
    .iter()
    .filter(|k| delta(&g0, &g1, k) != 0)
    .map(|k| format!("{k} +{}", delta(&g0, &g1, k)))
    .collect();
    check(
        "no_injection_effects",
        (!quiet.is_empty()).then(|| quiet.join(", ")),
    );
    let hf = delta(&g0, &g1, "thp_migration_failures");
    check(
        "helper_counts",
        (helper_moves != helper_ok || hf != helper_err).then(|| {
            format!("helper: {helper_ok} ok / {helper_err} failed seen, counters +{helper_moves} / +{hf}")
        }),
    );
    let (b, u) = (delta(&g0, &g1, "binds"), delta(&g0, &g1, "unbinds"));
    let refs = module_refs();
    check(
        "bindings_ended",
        (b != u || refs != Some(0))
            .then(|| format!("binds +{b}, unbinds +{u}, module refcnt {refs:?}")),
    );
    let unexpected: Vec<String> = names
        .iter()
        .zip(&counts)
        .filter(|(_, c)| c.unexpected.load(Relaxed) != 0)
        .map(|(n, c)| {
            format!(
                "{n}: {} unexpected, last {}",
                c.unexpected.load(Relaxed),
                c.last_unexpected
                    .lock()
                    .map(|s| s.clone())
                    .unwrap_or_default()
            )
        })
        .collect();
    check(
        "expected_errors_only",
        (!unexpected.is_empty()).then(|| unexpected.join("; ")),
    );
    Ok(Report { lines, checks })
}
