// SPDX-License-Identifier: GPL-2.0

//! A seeded, reproducible random-sequence fuzzer over `/dev/secmmu` and the
//! debugfs control files.
//!
//! Each step is drawn from the generator alone (never from a result), so a
//! seed names one sequence. A model of every open context (bound, has a
//! stream) and of the process's memory gives each step the errno set the
//! documentation allows; a result outside it stops the run, which prints
//! the seed, the failing step and the steps before it. At the end, with
//! every context closed, the module's reference count must be 0; the VM
//! runner's dmesg scan checks the rest.
//!
//! Besides the fuzzer's own areas, every step that takes an address
//! sometimes gets one at the top of the user range or past it
//! (`TASK_SIZE`, non-canonical, `u64::MAX`, wrapping), `migrate_thp`
//! also aims at a huge-zero-page region, a `MADV_DONTNEED`'d THP, a THP a
//! thread keeps zapping with `MADV_DONTNEED`, and at forked children:
//! alive (their own THP or one shared with this process), exiting,
//! exited but not reaped, and reaped.

use crate::abi::{self, Access, Bind, Stats, Stream, Verify};
use crate::debugfs;
use crate::rng::Rng;
use crate::sys::{self, ioctl_ptr, Mapping};
use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const PAGE: usize = 4096;
const ENOENT: i32 = 2;
const ESRCH: i32 = 3;
const EIO: i32 = 5;
const EAGAIN: i32 = 11;
const ENOMEM: i32 = 12;
const EFAULT: i32 = 14;
const EBUSY: i32 = 16;
const EINVAL: i32 = 22;
const ENOTTY: i32 = 25;
const EPERM: i32 = 1;
const ENOTCONN: i32 = 107;
const EALREADY: i32 = 114;

/// Largest `late_invalidate` the fuzzer sets, in microseconds (keeps the
/// helper quick; the module's own limit is tested by the hostile tests).
const FUZZ_LATE_US: u64 = 2000;

/// x86-64's `TASK_SIZE` with 4-level paging: the end of the user range.
const TASK_SIZE_4L: u64 = 0x7fff_ffff_f000;
/// The same with 5-level paging.
const TASK_SIZE_5L: u64 = 0x00ff_ffff_ffff_f000;
/// The top of the user range the fuzzer aims at below `TASK_SIZE`: nothing
/// is mapped there in practice (the stack, randomised, lies lower). If
/// something is, the fuzzer moves those addresses out of the user range
/// (`| 1 << 63`) rather than write into it.
const TOP_WINDOW: u64 = 4 << 20;
/// `SECMMU_MAX_ACCESS`.
const MAX_ACCESS: u64 = 64 << 20;

/// Fuzzer settings.
#[derive(Clone, Copy)]
pub struct Options {
    /// Seed of the sequence.
    pub seed: u64,
    /// Steps at most.
    pub ops: u64,
    /// Time bound.
    pub seconds: u64,
    /// Self-test of the detector: the model wrongly expects a second BIND
    /// on a bound context to succeed, so the run must fail and print its
    /// sequence.
    pub break_model: bool,
}

/// How a run ended.
pub struct Outcome {
    /// Steps run.
    pub steps: u64,
    /// `None` if every result was allowed, else the report to print.
    pub failure: Option<String>,
    /// Results per errno, for the summary.
    pub errnos: Vec<(i32, u64)>,
    /// What the run found about its environment and did besides the steps
    /// (`TASK_SIZE`, the huge zero page, the racing thread's zaps).
    pub notes: Vec<String>,
}

/// A device context as the model sees it.
struct Ctx {
    file: File,
    /// The context's id (`ctx/<id>`, `bench_fill`'s `CTX`).
    id: u32,
    bound: bool,
    stream: bool,
    /// The stream starts in the area the racing thread zaps: it may also
    /// stop on `EAGAIN` (fills discarded by the zaps) or `ENOMEM`.
    racy: bool,
}

/// The process memory the steps aim at: areas inside one arena, each
/// surrounded by `PROT_NONE` guards wider than any stream the fuzzer
/// starts with a small stride, so that a device access or stream that runs
/// past an area faults instead of landing in the fuzzer's own memory. (A
/// step aimed at a random address or with a random stride could, very
/// rarely, hit that memory all the same.)
struct Memory {
    /// The arena (guards and areas), unmapped on drop.
    _arena: Mapping,
    /// 64 KiB, always mapped read-write.
    plain: usize,
    /// One THP (2 MiB aligned), always mapped.
    thp: usize,
    /// 64 KiB that steps unmap (leaving a `PROT_NONE` reservation), remap
    /// and write-protect.
    hole: usize,
    hole_mapped: bool,
    hole_writable: bool,
    /// 2 MiB, `MADV_HUGEPAGE`, a THP that the racing thread zaps with
    /// `MADV_DONTNEED` and faults in again, over and over.
    race: usize,
    /// 2 MiB, `MADV_HUGEPAGE`, only ever read: the huge zero page (if the
    /// kernel uses it). Only `READ` and `migrate_thp` aim here.
    zero: usize,
    /// 2 MiB, `MADV_HUGEPAGE`, a THP once, then `MADV_DONTNEED`'d and
    /// never touched again: only `migrate_thp` aims here.
    zapped: usize,
    /// 2 MiB, a THP this process wrote once and that forked children share
    /// (copy-on-write); only `migrate_thp` aims here.
    shared: usize,
    /// 2 MiB of the `PROT_NONE` reservation, where a forked child maps its
    /// own THP.
    kid: usize,
    /// `TASK_SIZE` of this process.
    ts: u64,
    /// Nothing is mapped in the `TOP_WINDOW` below `TASK_SIZE`.
    top_free: bool,
    /// A read of a `MADV_HUGEPAGE` region maps the huge zero page
    /// (transparent_hugepage `enabled` is `always` or `madvise` and
    /// `use_zero_page` is 1).
    huge_zero: bool,
    /// The nodes with memory (`/sys/devices/system/node/has_memory`).
    nodes: Vec<i32>,
    /// Userspace buffer for device reads and writes.
    buf: Vec<u8>,
}

const HOLE: usize = 16 * PAGE;
const HPAGE: usize = 2 << 20;
/// Guard size: more than the longest stream span with a small stride
/// (64 slots x 4 KiB).
const GUARD: usize = 1 << 20;

/// `TASK_SIZE` of this process: a mapping above 47 bits is possible only
/// with 5-level paging.
fn probe_task_size() -> u64 {
    let hint = 1usize << 52;
    let flags = sys::MAP_PRIVATE | sys::MAP_ANONYMOUS | sys::MAP_FIXED_NOREPLACE;
    // SAFETY: an anonymous PROT_NONE mapping where nothing is mapped (the
    // kernel refuses to replace anything).
    let q = unsafe { sys::mmap(hint as *mut _, PAGE, 0, flags, -1, 0) };
    if q as isize == -1 {
        return TASK_SIZE_4L;
    }
    // SAFETY: unmaps the page just mapped.
    unsafe { sys::munmap(q, PAGE) };
    if q as usize >= 1 << 47 {
        TASK_SIZE_5L
    } else {
        TASK_SIZE_4L
    }
}

/// Whether `/proc/self/maps` has nothing in `[ts - TOP_WINDOW, ts)`.
fn top_is_free(ts: u64) -> bool {
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
        return false;
    };
    !maps.lines().any(|l| {
        let range = l.split_whitespace().next().unwrap_or("");
        let mut it = range.split('-').map(|v| u64::from_str_radix(v, 16));
        match (it.next(), it.next()) {
            (Some(Ok(a)), Some(Ok(b))) => a < ts && b > ts - TOP_WINDOW,
            _ => true,
        }
    })
}

/// Parses a sysfs node list (`0-1`, `0,2-3`).
fn parse_nodes(text: &str) -> Vec<i32> {
    let mut v = Vec::new();
    for part in text.trim().split(',').filter(|p| !p.is_empty()) {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        if let (Ok(a), Ok(b)) = (a.parse::<i32>(), b.parse::<i32>()) {
            v.extend(a..=b);
        }
    }
    v
}

fn huge_zero_in_use() -> bool {
    let thp = "/sys/kernel/mm/transparent_hugepage";
    let enabled = std::fs::read_to_string(format!("{thp}/enabled")).unwrap_or_default();
    let zero = std::fs::read_to_string(format!("{thp}/use_zero_page")).unwrap_or_default();
    (enabled.contains("[always]") || enabled.contains("[madvise]")) && zero.trim() == "1"
}

impl Memory {
    fn new() -> Result<Self, String> {
        let size = 8 * GUARD + 2 * HOLE + 14 * HPAGE;
        let arena = Mapping::reserve(size).map_err(|e| format!("mmap: {e}"))?;
        let start = arena.ptr as usize;
        let huge = |at: usize| (at + HPAGE - 1) & !(HPAGE - 1);
        let plain = start + GUARD;
        let thp = huge(plain + HOLE + GUARD);
        let hole = thp + HPAGE + GUARD;
        let race = huge(hole + HOLE + GUARD);
        let zero = huge(race + HPAGE + GUARD);
        let zapped = huge(zero + HPAGE + GUARD);
        let shared = huge(zapped + HPAGE + GUARD);
        let kid = huge(shared + HPAGE + GUARD);
        assert!(kid + HPAGE + GUARD <= start + size);
        let rw = sys::PROT_READ | sys::PROT_WRITE;
        let fixed = sys::MAP_PRIVATE | sys::MAP_ANONYMOUS | sys::MAP_FIXED;
        let areas = [
            (plain, HOLE),
            (thp, HPAGE),
            (hole, HOLE),
            (race, HPAGE),
            (zero, HPAGE),
            (zapped, HPAGE),
            (shared, HPAGE),
        ];
        for (at, len) in areas {
            // SAFETY: each area lies inside the arena, which nothing else
            // in this process uses.
            let q = unsafe { sys::mmap(at as *mut _, len, rw, fixed, -1, 0) };
            if q as isize == -1 {
                return Err(format!("mmap: {}", std::io::Error::last_os_error()));
            }
        }
        for at in [thp, race, zero, zapped, shared] {
            // SAFETY: the area was just mapped.
            unsafe { sys::madvise(at as *mut _, HPAGE, sys::MADV_HUGEPAGE) };
        }
        // Forked children get no copy of the areas the model tracks (a
        // copy-on-write THP would be split by the next write).
        for (at, len) in [(plain, HOLE), (thp, HPAGE), (race, HPAGE)] {
            // SAFETY: the area was just mapped.
            unsafe { sys::madvise(at as *mut _, len, sys::MADV_DONTFORK) };
        }
        for (at, len) in [
            (plain, HOLE),
            (thp, HPAGE),
            (hole, HOLE),
            (zapped, HPAGE),
            (shared, HPAGE),
        ] {
            for off in (0..len).step_by(PAGE) {
                // SAFETY: mapped read-write just above.
                unsafe { ((at + off) as *mut u8).write_volatile(1) };
            }
        }
        // SAFETY: mapped read-write above; a read maps the huge zero page.
        let z = unsafe { (zero as *const u8).read_volatile() };
        if z != 0 {
            return Err("the zero region does not read 0".into());
        }
        // SAFETY: the area was mapped above; its pages go, the VMA stays.
        unsafe { sys::madvise(zapped as *mut _, HPAGE, sys::MADV_DONTNEED) };
        let ts = probe_task_size();
        let nodes = std::fs::read_to_string("/sys/devices/system/node/has_memory")
            .map(|t| parse_nodes(&t))
            .unwrap_or_else(|_| vec![0]);
        Ok(Self {
            _arena: arena,
            plain,
            thp,
            hole,
            hole_mapped: true,
            hole_writable: true,
            race,
            zero,
            zapped,
            shared,
            kid,
            ts,
            top_free: top_is_free(ts),
            huge_zero: huge_zero_in_use(),
            nodes,
            buf: vec![0; HOLE],
        })
    }

    /// `a`, or, if something is mapped in the top window and `a` is in it,
    /// the same address moved out of the user range.
    fn safe_top(&self, a: u64) -> u64 {
        if !self.top_free && a < self.ts && a >= self.ts - TOP_WINDOW {
            a | (1 << 63)
        } else {
            a
        }
    }

    /// The zero region still reads 0 at its start, middle and end.
    fn zero_intact(&self) -> bool {
        [0, HPAGE / 2, HPAGE - 8].iter().all(|&off| {
            // SAFETY: the zero region stays mapped read-write.
            unsafe { ((self.zero + off) as *const u64).read_volatile() == 0 }
        })
    }
}

/// Where an address points, for the model.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Target {
    /// Mapped read-write for the whole access.
    Mapped,
    /// Some part may be unmapped, read-only or not user memory.
    Maybe,
    /// Below `TASK_SIZE`, but no VMA there (the top window).
    Bad,
    /// `addr + len` passes `TASK_SIZE` (without wrapping): `-EFAULT`.
    Past,
    /// Past the end of the address space.
    Wraps,
    /// The area the racing thread zaps: mapped, but fills may be discarded.
    Racy,
    /// The huge-zero-page region (reads only): mapped, reads 0.
    Zero,
}

/// What an address of `len` bytes at the top of the range is: `None` if
/// it is not there.
fn classify(addr: u64, len: u64, ts: u64, top_free: bool) -> Option<Target> {
    match addr.checked_add(len) {
        None => Some(Target::Wraps),
        Some(end) if end > ts => Some(Target::Past),
        Some(_) if top_free && addr >= ts - TOP_WINDOW => Some(Target::Bad),
        Some(_) => None,
    }
}

/// An address at the top of the range or past it, for an access of `len`
/// bytes: `u64::MAX`, the last 2 MiB block, `1 << 63` and `1 << 47`
/// (non-canonical with 4-level paging), `TASK_SIZE`, `TASK_SIZE - 8`,
/// `TASK_SIZE - 2 MiB`, `TASK_SIZE - r` and `u64::MAX - r` with `r < len`
/// (the end passes `TASK_SIZE`, or wraps), a random non-canonical one.
fn top_address(rng: &mut Rng, len: u64, ts: u64) -> u64 {
    match rng.below(10) {
        0 => u64::MAX,
        1 => 0xffff_ffff_ffe0_0000,
        2 => 1 << 63,
        3 => 0x0000_8000_0000_0000,
        4 => ts,
        5 => ts - 8,
        6 => ts - HPAGE as u64,
        7 => ts - rng.below(len.clamp(1, 1 << 16)),
        8 => u64::MAX - rng.below(len.clamp(1, 1 << 16)),
        _ => {
            (1 << 63)
                | (rng.next_u64() & 0x7fff_0000_0000_0000)
                | (rng.next_u64() & 0xffff_ffff_fff8)
        }
    }
}

/// A `user_buf` at the top of the range or past it.
fn top_user_buf(rng: &mut Rng, ts: u64) -> u64 {
    match rng.below(4) {
        0 => u64::MAX - 7,
        1 => 0xffff_ffff_ffff_f000,
        2 => 1 << 63,
        _ => ts - 8,
    }
}

/// A device `WRITE` or `READ` as the model judges it.
#[derive(Clone, Copy)]
struct AccessCase {
    write: bool,
    addr: u64,
    len: u64,
    target: Target,
    bound: bool,
    user_buf: u64,
    /// `user_buf` is the fuzzer's buffer and holds `len` bytes.
    buf_ok: bool,
    flags: u32,
    pad: u32,
}

/// The errnos the `WRITE`/`READ` table of reference.rst allows, in its
/// order: a range past `TASK_SIZE` is `EFAULT` once the context is bound,
/// before any other check of the request.
fn access_allowed(c: &AccessCase) -> Vec<i32> {
    if c.flags != 0 || c.pad != 0 || c.len == 0 || c.len > MAX_ACCESS {
        return vec![EINVAL];
    }
    if c.target == Target::Wraps {
        return vec![EFAULT];
    }
    let fill = c.write && c.user_buf == 0;
    if !c.bound {
        vec![ENOTCONN]
    } else if c.target == Target::Past {
        vec![EFAULT]
    } else if fill && (c.addr % 8 != 0 || c.len % 8 != 0) {
        vec![EINVAL]
    } else if !c.write && c.user_buf == 0 {
        vec![EFAULT]
    } else if (c.user_buf != 0 && !c.buf_ok) || c.target == Target::Bad {
        // A bad user buffer or target: a fault (or no memory for the
        // bounce buffer).
        vec![EFAULT, ENOMEM]
    } else {
        match c.target {
            Target::Maybe => vec![0, EFAULT, ENOMEM],
            // Fills discarded by the racing zaps, 10000 in a row.
            Target::Racy => vec![0, ENOMEM, EAGAIN],
            _ => vec![0, ENOMEM],
        }
    }
}

/// The result of a `STREAM_START` that replaces no running stream.
fn stream_fresh(addr: u64, stride: u64, slots: u32, flags: u32, ts: u64) -> i32 {
    let invalid = flags & !abi::STREAM_ONCE != 0
        || slots == 0
        || slots > 65536
        || stride < 8
        || stride % 8 != 0
        || addr % 8 != 0;
    let end = stride
        .checked_mul(u64::from(slots.max(1)) - 1)
        .and_then(|span| span.checked_add(addr))
        .and_then(|last| last.checked_add(8));
    if invalid {
        EINVAL
    } else if end.is_none_or(|e| e > ts) {
        // Wraps, or the last slot's end passes TASK_SIZE.
        EFAULT
    } else {
        0
    }
}

/// A `bench_fill` line as the model judges it.
#[derive(Clone, Copy)]
struct BenchCase {
    malformed: bool,
    addr: u64,
    len: u64,
    target: Target,
    /// `CTX` names a bound context of this process.
    bound: bool,
}

/// The errnos the `bench_fill` table of reference.rst allows, in its order.
fn bench_allowed(c: &BenchCase) -> Vec<i32> {
    if c.malformed || c.len == 0 || c.len > MAX_ACCESS || c.len % 8 != 0 || c.addr % 8 != 0 {
        return vec![EINVAL];
    }
    if c.target == Target::Wraps {
        return vec![EFAULT];
    }
    // The context is looked up before the range is checked against
    // TASK_SIZE.
    match (c.target, c.bound) {
        (_, false) => vec![ENOENT],
        (Target::Past, true) => vec![EFAULT],
        (Target::Bad, true) => vec![EFAULT, ENOMEM],
        (Target::Maybe, true) => vec![0, EFAULT, ENOMEM],
        (Target::Racy, true) => vec![0, ENOMEM, EAGAIN],
        (_, true) => vec![0, ENOMEM],
    }
}

/// Whose pid a `migrate_thp` line names.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Who {
    /// PID 0: a parse error.
    Zero,
    /// A pid no process has.
    Missing,
    /// This process.
    Me,
    /// A forked child that stays alive during the request, aimed at its
    /// own THP (`kid`).
    Child,
    /// A live forked child, aimed at the THP it shares with this process
    /// (`shared`, copy-on-write).
    ChildShared,
    /// A child that touched its THP and is exiting during the request.
    Exiting,
    /// A child that exited and is not reaped yet (a zombie: no mm).
    Zombie,
    /// A child that exited and was reaped.
    Reaped,
}

/// Where a `migrate_thp` line points.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Aim {
    Plain,
    Hole,
    Thp,
    Shared,
    /// The huge-zero-page region.
    Zero,
    /// A THP `MADV_DONTNEED`'d, never touched again.
    Zapped,
    /// The THP the racing thread zaps.
    Race,
    /// `kid`: this process's `PROT_NONE` reservation, the child's THP.
    Kid,
    /// At or past `TASK_SIZE`, or with a 2 MiB block passing it, or in the
    /// empty top window.
    Top,
    /// A number that overflows u64 parsing.
    Overflow,
}

/// The THP helper's results on a THP: moved, gone (`ENOENT`), already
/// there, no huge page, not isolated, not moved as a THP or raced
/// (`EAGAIN`), the injected corrupt copy (`EIO`).
const THP_RESULTS: &[i32] = &[0, ENOENT, EALREADY, ENOMEM, EBUSY, EAGAIN, EIO];

/// The errnos reference.rst's `migrate_thp` table allows for a well-formed
/// line. Never `EINVAL` with a positive pid, a valid node and a parsable
/// address.
fn migrate_allowed(who: Who, aim: Aim, node_ok: bool, huge_zero: bool) -> Vec<i32> {
    if aim == Aim::Overflow || who == Who::Zero || !node_ok {
        return vec![EINVAL];
    }
    match who {
        Who::Missing | Who::Zombie | Who::Reaped => return vec![ESRCH],
        // Racing the exit: the mm may be gone (ESRCH), or its VMAs, or the
        // THP; or the request completes.
        Who::Exiting => {
            return vec![
                0, ESRCH, EFAULT, ENOENT, EALREADY, ENOMEM, EBUSY, EAGAIN, EIO,
            ]
        }
        _ => {}
    }
    match aim {
        Aim::Top => vec![EFAULT],
        Aim::Plain | Aim::Hole | Aim::Zapped => vec![ENOENT],
        // Kid in this process: PROT_NONE, no THP; in a live child its THP.
        Aim::Kid if who == Who::Me => vec![ENOENT],
        // "The huge zero page: nothing of the process's own to move."
        Aim::Zero if huge_zero => vec![EFAULT],
        Aim::Zero => vec![ENOENT],
        // Zapped between lookup and setup: EAGAIN; a device read after a
        // zap maps the huge zero page: EFAULT.
        Aim::Race => {
            let mut v = THP_RESULTS.to_vec();
            v.push(EFAULT);
            v
        }
        _ => THP_RESULTS.to_vec(),
    }
}

/// A forked child for a `migrate_thp` request.
struct Child {
    pid: i32,
    /// Closing it lets a live child exit.
    go: i32,
}

/// Forks a child that maps a THP at `kid` (unless `shared_only`), tells
/// the parent it is ready, and then exits at once (`exit_now`) or when
/// `go` is closed.
fn spawn_child(kid: usize, shared_only: bool, exit_now: bool) -> Result<Child, String> {
    let mut ready = [-1i32; 2];
    let mut go = [-1i32; 2];
    // SAFETY: `pipe` fills two descriptors.
    if unsafe { sys::pipe(ready.as_mut_ptr()) } != 0 || unsafe { sys::pipe(go.as_mut_ptr()) } != 0 {
        return Err(format!("pipe: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: the child makes system calls only (no allocation, no locks)
    // and ends with `_exit`.
    let pid = unsafe { sys::fork() };
    if pid == 0 {
        // SAFETY: the child's own copy of the reservation; system calls
        // and a write into the mapping just made.
        unsafe {
            if !shared_only {
                let rw = sys::PROT_READ | sys::PROT_WRITE;
                let fixed = sys::MAP_PRIVATE | sys::MAP_ANONYMOUS | sys::MAP_FIXED;
                let q = sys::mmap(kid as *mut _, HPAGE, rw, fixed, -1, 0);
                if q as isize == -1 {
                    sys::_exit(1);
                }
                sys::madvise(kid as *mut _, HPAGE, sys::MADV_HUGEPAGE);
                (kid as *mut u8).write_volatile(1);
            }
            let b = 1u8;
            sys::write(ready[1], (&raw const b).cast(), 1);
            if !exit_now {
                let mut c = 0u8;
                sys::close(go[1]);
                sys::read(go[0], (&raw mut c).cast(), 1);
            }
            sys::_exit(0);
        }
    }
    // SAFETY: closing the ends the parent does not use.
    unsafe {
        sys::close(ready[1]);
        sys::close(go[0]);
    }
    if pid < 0 {
        // SAFETY: closing our ends.
        unsafe {
            sys::close(ready[0]);
            sys::close(go[1]);
        }
        return Err(format!("fork: {}", std::io::Error::last_os_error()));
    }
    let mut c = 0u8;
    // SAFETY: reads one byte into a local.
    let n = unsafe { sys::read(ready[0], (&raw mut c).cast(), 1) };
    // SAFETY: our end.
    unsafe { sys::close(ready[0]) };
    let child = Child { pid, go: go[1] };
    if n != 1 {
        reap(&child);
        return Err("the forked child died before it was ready".into());
    }
    Ok(child)
}

/// Lets a child exit (if it waits) and reaps it.
fn reap(c: &Child) {
    let mut status = 0;
    // SAFETY: our end of the pipe; then waits for our own child.
    unsafe {
        sys::close(c.go);
        sys::waitpid(c.pid, &mut status, 0);
    }
}

/// The racing `MADV_DONTNEED`: faults the race THP in with a write, then
/// zaps it, with random pauses, until stopped; returns the zaps.
fn racer(race: usize, seed: u64, stop: &AtomicBool) -> u64 {
    // Its own generator: the steps' sequence does not depend on it.
    let mut rng = Rng::new(seed ^ 0x7261_6365);
    let mut zaps = 0;
    while !stop.load(Ordering::Relaxed) {
        // SAFETY: the race area stays mapped read-write for the run; only
        // this thread and the device write it.
        unsafe { (race as *mut u8).add(rng.index(HPAGE)).write_volatile(1) };
        std::thread::sleep(Duration::from_micros(rng.below(1500)));
        // SAFETY: zaps exactly the race area.
        unsafe { sys::madvise(race as *mut _, HPAGE, sys::MADV_DONTNEED) };
        zaps += 1;
        std::thread::sleep(Duration::from_micros(rng.below(1500)));
    }
    zaps
}

struct Fuzzer {
    rng: Rng,
    ctxs: Vec<Option<Ctx>>,
    mem: Memory,
    log: Vec<String>,
    errnos: Vec<(i32, u64)>,
    break_model: bool,
    /// Children forked, for the notes.
    children: u64,
}

fn errno_of(r: std::io::Result<()>) -> i32 {
    match r {
        Ok(()) => 0,
        Err(e) => e.raw_os_error().unwrap_or(-1),
    }
}

fn name(e: i32) -> String {
    let n = match e {
        0 => "ok",
        EPERM => "EPERM",
        ENOENT => "ENOENT",
        ESRCH => "ESRCH",
        EIO => "EIO",
        EAGAIN => "EAGAIN",
        ENOMEM => "ENOMEM",
        EFAULT => "EFAULT",
        EBUSY => "EBUSY",
        EINVAL => "EINVAL",
        ENOTTY => "ENOTTY",
        ENOTCONN => "ENOTCONN",
        EALREADY => "EALREADY",
        _ => return format!("errno {e}"),
    };
    n.to_string()
}

impl Fuzzer {
    fn new(seed: u64, break_model: bool) -> Result<Self, String> {
        Ok(Self {
            rng: Rng::new(seed),
            ctxs: (0..4).map(|_| None).collect(),
            mem: Memory::new()?,
            log: Vec::new(),
            errnos: Vec::new(),
            break_model,
            children: 0,
        })
    }

    /// An address for a device access of `len` bytes, and what it is.
    /// Writers (`writer`) never get the zero region (they would replace
    /// the huge zero page); they get the race area instead.
    fn address(&mut self, len: usize, writer: bool) -> (u64, Target) {
        let m = &self.mem;
        let fits = |base: usize, size: usize, off: usize| off + len <= size && base != 0;
        let within = |base: usize, size: usize, off: usize, t: Target| {
            if fits(base, size, off) {
                t
            } else {
                Target::Maybe
            }
        };
        match self.rng.below(16) {
            0..=2 => {
                let off = self.rng.index(HOLE);
                (
                    (m.plain + off) as u64,
                    within(m.plain, HOLE, off, Target::Mapped),
                )
            }
            3..=5 => {
                let off = self.rng.index(HPAGE);
                (
                    (m.thp + off) as u64,
                    within(m.thp, HPAGE, off, Target::Mapped),
                )
            }
            6 => {
                let off = self.rng.index(HOLE);
                let t = if m.hole_mapped && m.hole_writable && fits(m.hole, HOLE, off) {
                    Target::Mapped
                } else {
                    Target::Maybe
                };
                ((m.hole + off) as u64, t)
            }
            7 => {
                let off = self.rng.index(HPAGE);
                (
                    (m.race + off) as u64,
                    within(m.race, HPAGE, off, Target::Racy),
                )
            }
            8 => {
                let off = self.rng.index(HPAGE);
                if writer {
                    (
                        (m.race + off) as u64,
                        within(m.race, HPAGE, off, Target::Racy),
                    )
                } else {
                    (
                        (m.zero + off) as u64,
                        within(m.zero, HPAGE, off, Target::Zero),
                    )
                }
            }
            9 => (
                0xffff_8880_0000_0000 + self.rng.below(1 << 20),
                Target::Past,
            ),
            10 => {
                let a = u64::MAX - self.rng.below(64);
                (
                    a,
                    classify(a, len as u64, m.ts, true).unwrap_or(Target::Past),
                )
            }
            11..=13 => {
                let a = m.safe_top(top_address(&mut self.rng, len as u64, m.ts));
                let t = classify(a, len as u64, m.ts, m.top_free).unwrap_or(Target::Maybe);
                (a, t)
            }
            _ => (self.rng.next_u64() & 0x7fff_ffff_fff8, Target::Maybe),
        }
    }

    /// `address`'s target after the address was moved down to `a` (8-byte
    /// alignment): only a top-of-range classification can change.
    fn reclassify(&self, a: u64, len: u64, t: Target) -> Target {
        match t {
            Target::Bad | Target::Past | Target::Wraps => {
                classify(a, len, self.mem.ts, self.mem.top_free).unwrap_or(Target::Maybe)
            }
            _ => t,
        }
    }

    fn ctx_slot(&mut self) -> usize {
        self.rng.index(self.ctxs.len())
    }

    /// Runs one step; returns its description and the result if it was not
    /// allowed.
    fn step(&mut self) -> (String, Option<String>) {
        let slot = self.ctx_slot();
        let kind = self.rng.below(100);
        // Steps that need no open context.
        match kind {
            0..=5 => return self.open_close(slot),
            6..=19 => return self.debugfs_step(),
            20..=24 => return self.memory_step(),
            _ => {}
        }
        if self.ctxs.get(slot).is_none_or(|c| c.is_none()) {
            return self.open_close(slot);
        }
        match kind {
            25..=34 => self.bind(slot),
            35..=39 => self.simple(slot, abi::UNBIND, "UNBIND"),
            40..=60 => self.access(slot),
            61..=68 => self.stream_start(slot),
            69..=74 => self.simple(slot, abi::STREAM_STOP, "STREAM_STOP"),
            75..=80 => self.verify(slot),
            81..=85 => self.simple(slot, abi::TLB_FLUSH, "TLB_FLUSH"),
            86..=92 => self.stats(slot),
            _ => self.raw_ioctl(slot),
        }
    }

    fn check(&mut self, what: String, got: i32, allowed: &[i32]) -> (String, Option<String>) {
        match self.errnos.iter_mut().find(|(e, _)| *e == got) {
            Some((_, n)) => *n += 1,
            None => self.errnos.push((got, 1)),
        }
        let line = format!("{what} -> {}", name(got));
        if allowed.contains(&got) {
            (line, None)
        } else {
            let want: Vec<String> = allowed.iter().map(|&e| name(e)).collect();
            (
                line,
                Some(format!("got {}, allowed {}", name(got), want.join("|"))),
            )
        }
    }

    fn open_close(&mut self, slot: usize) -> (String, Option<String>) {
        let Some(c) = self.ctxs.get_mut(slot) else {
            return ("nothing".into(), None);
        };
        if c.take().is_some() {
            return (format!("close ctx{slot}"), None);
        }
        let file = match OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/secmmu")
        {
            Ok(file) => file,
            Err(e) => {
                return (
                    format!("open ctx{slot}"),
                    Some(format!("open /dev/secmmu: {e}")),
                )
            }
        };
        let mut s = Stats::default();
        if let Err(e) = ioctl_ptr(file.as_raw_fd(), abi::GET_STATS, &mut s) {
            return (
                format!("open ctx{slot}"),
                Some(format!("GET_STATS after open: {e}")),
            );
        }
        *c = Some(Ctx {
            file,
            id: s.ctx_id,
            bound: false,
            stream: false,
            racy: false,
        });
        (format!("open ctx{slot}"), None)
    }

    fn fd(&self, slot: usize) -> i32 {
        self.ctxs
            .get(slot)
            .and_then(|c| c.as_ref())
            .map_or(-1, |c| c.file.as_raw_fd())
    }

    fn model(&mut self, slot: usize) -> Option<&mut Ctx> {
        self.ctxs.get_mut(slot).and_then(|c| c.as_mut())
    }

    fn bind(&mut self, slot: usize) -> (String, Option<String>) {
        let mut b = Bind {
            tlb_entries: match self.rng.below(6) {
                0 => 0,
                1 => 1,
                2 => 65536,
                3 => 65537,
                4 => self.rng.next_u64() as u32,
                _ => 1 + self.rng.below(1024) as u32,
            },
            flags: if self.rng.chance(1, 8) {
                1 << self.rng.below(32)
            } else {
                0
            },
        };
        let got = errno_of(ioctl_ptr(self.fd(slot), abi::BIND, &mut b));
        let bound = self.model(slot).is_some_and(|c| c.bound);
        let want = if b.flags != 0 || b.tlb_entries > 65536 {
            EINVAL
        } else if bound && !self.break_model {
            EBUSY
        } else {
            0
        };
        if got == 0 {
            if let Some(c) = self.model(slot) {
                c.bound = true;
            }
        }
        self.check(
            format!(
                "ctx{slot} BIND entries={} flags={:#x}",
                b.tlb_entries, b.flags
            ),
            got,
            &[want],
        )
    }

    /// UNBIND, STREAM_STOP and TLB_FLUSH.
    fn simple(&mut self, slot: usize, req: u64, what: &str) -> (String, Option<String>) {
        // SAFETY: these requests take no argument; 0 is never written.
        let got = errno_of(unsafe { sys::ioctl_addr(self.fd(slot), req, 0) });
        let (bound, stream, racy) = self
            .model(slot)
            .map_or((false, false, false), |c| (c.bound, c.stream, c.racy));
        let allowed: &[i32] = match req {
            abi::UNBIND if bound => &[0],
            abi::UNBIND => &[ENOTCONN],
            // A stream over the zapped THP may stop on discarded fills or
            // a failed page fault.
            abi::STREAM_STOP if stream && racy => &[0, EFAULT, EAGAIN, ENOMEM],
            // A stream stops on its own at a device fault and reports it.
            abi::STREAM_STOP if stream => &[0, EFAULT],
            abi::STREAM_STOP => &[ENOENT],
            _ if bound => &[0],
            _ => &[ENOTCONN],
        };
        if req == abi::UNBIND && got == 0 {
            if let Some(c) = self.model(slot) {
                c.bound = false;
                c.stream = false;
                c.racy = false;
            }
        }
        let allowed = allowed.to_vec();
        self.check(format!("ctx{slot} {what}"), got, &allowed)
    }

    fn access(&mut self, slot: usize) -> (String, Option<String>) {
        let write = self.rng.chance(1, 2);
        let len: u64 = match self.rng.below(8) {
            0 => 0,
            1 => (64 << 20) + 1,
            2 => self.rng.next_u64(),
            3 => 8 * (1 + self.rng.below(16)),
            4 => 1 + self.rng.below(7),
            _ => 1 + self.rng.below(HOLE as u64),
        };
        let (addr, target) = self.address(len.min(1 << 30) as usize, write);
        let user_buf = match self.rng.below(8) {
            0 => 0,
            1 => 0xffff_8880_0000_1000,
            2 => 8,
            3 => self.mem.safe_top(top_user_buf(&mut self.rng, self.mem.ts)),
            _ => self.mem.buf.as_mut_ptr() as u64,
        };
        let flags = if self.rng.chance(1, 16) { 1 } else { 0 };
        let pad = if self.rng.chance(1, 16) { 1 } else { 0 };
        let mut a = Access {
            addr,
            len,
            value: self.rng.next_u64(),
            user_buf,
            flags,
            pad,
        };
        let req = if write { abi::WRITE } else { abi::READ };
        let got = errno_of(ioctl_ptr(self.fd(slot), req, &mut a));
        let buf_ok = user_buf == self.mem.buf.as_ptr() as u64 && len <= HOLE as u64;
        let case = AccessCase {
            write,
            addr,
            len,
            target,
            bound: self.model(slot).is_some_and(|c| c.bound),
            user_buf,
            buf_ok,
            flags,
            pad,
        };
        let allowed = access_allowed(&case);
        let what = format!(
            "ctx{slot} {} addr={addr:#x} len={len} buf={user_buf:#x} flags={flags} pad={pad}",
            if write { "WRITE" } else { "READ" }
        );
        let r = self.check(what, got, &allowed);
        if r.1.is_none() && target == Target::Zero && got == 0 && buf_ok {
            let n = len as usize;
            if self.mem.buf[..n].iter().any(|&b| b != 0) {
                return (
                    r.0,
                    Some("a device READ of the huge-zero-page region gave non-zero bytes".into()),
                );
            }
        }
        r
    }

    fn stream_start(&mut self, slot: usize) -> (String, Option<String>) {
        let (addr, target) = self.address(8, true);
        let addr = if self.rng.chance(7, 8) {
            addr & !7
        } else {
            addr
        };
        let target = self.reclassify(addr, 8, target);
        let stride = match self.rng.below(5) {
            0 => 0,
            1 => 12,
            2 => self.rng.next_u64(),
            _ => 8 << self.rng.below(10),
        };
        let slots = match self.rng.below(5) {
            0 => 0,
            1 => 65537,
            2 => self.rng.next_u64() as u32,
            _ => 1 + self.rng.below(64) as u32,
        };
        let flags = match self.rng.below(16) {
            0 => 1 << (1 + self.rng.below(31)),
            1..=4 => abi::STREAM_ONCE,
            _ => 0,
        };
        let mut s = Stream {
            addr,
            stride,
            slots,
            flags,
        };
        let got = errno_of(ioctl_ptr(self.fd(slot), abi::STREAM_START, &mut s));
        let (bound, stream) = self
            .model(slot)
            .map_or((false, false), |c| (c.bound, c.stream));
        let fresh = stream_fresh(addr, stride, slots, flags, self.mem.ts);
        // A stream the model knows of may have stopped on its own (a fault
        // or the end of a ONCE pass), and is then replaced.
        let allowed = match (bound, stream) {
            (false, _) => vec![ENOTCONN],
            (true, true) => vec![EBUSY, fresh],
            (true, false) => vec![fresh],
        };
        if got == 0 {
            if let Some(c) = self.model(slot) {
                c.stream = true;
                c.racy = target == Target::Racy;
            }
        }
        let what = format!(
            "ctx{slot} STREAM_START addr={addr:#x} stride={stride} slots={slots} flags={flags}"
        );
        self.check(what, got, &allowed)
    }

    fn verify(&mut self, slot: usize) -> (String, Option<String>) {
        let mut v = Verify::default();
        let got = errno_of(ioctl_ptr(self.fd(slot), abi::STREAM_VERIFY, &mut v));
        let (bound, stream) = self
            .model(slot)
            .map_or((false, false), |c| (c.bound, c.stream));
        let allowed: &[i32] = match (bound, stream) {
            (false, _) => &[ENOTCONN],
            (true, false) => &[ENOENT],
            // A slot the device wrote may be unmapped now.
            (true, true) => &[0, EFAULT],
        };
        let allowed = allowed.to_vec();
        self.check(format!("ctx{slot} STREAM_VERIFY"), got, &allowed)
    }

    fn stats(&mut self, slot: usize) -> (String, Option<String>) {
        let fd = self.fd(slot);
        let (got, bad) = if self.rng.chance(1, 4) {
            // SAFETY: a kernel-space address: GET_STATS fails with EFAULT.
            let r = unsafe { sys::ioctl_addr(fd, abi::GET_STATS, 0xffff_8880_0000_2000) };
            (errno_of(r), true)
        } else {
            let mut s = Stats::default();
            (errno_of(ioctl_ptr(fd, abi::GET_STATS, &mut s)), false)
        };
        self.check(
            format!("ctx{slot} GET_STATS bad_ptr={bad}"),
            got,
            &[if bad { EFAULT } else { 0 }],
        )
    }

    fn raw_ioctl(&mut self, slot: usize) -> (String, Option<String>) {
        let valid = [
            abi::BIND,
            abi::UNBIND,
            abi::WRITE,
            abi::READ,
            abi::STREAM_START,
            abi::STREAM_STOP,
            abi::STREAM_VERIFY,
            abi::TLB_FLUSH,
            abi::GET_STATS,
        ];
        let kind = self.rng.below(3);
        let mut cmd = match kind {
            // Our magic and numbers with a wrong direction or size.
            0 => abi::ioc(
                self.rng.below(4),
                1 + self.rng.below(12),
                self.rng.index(256),
            ),
            1 => self.rng.next_u64() & 0xffff_ffff,
            _ => abi::ioc(self.rng.below(4), self.rng.below(256), 0) ^ (1 << 8),
        };
        if valid.contains(&cmd) {
            cmd ^= 1 << 16;
        }
        let mut junk = [0u8; 256];
        let got = errno_of(ioctl_ptr(self.fd(slot), cmd, &mut junk));
        // A fully random number may be one the VFS answers itself (FIONBIO,
        // FIOCLEX, ...): any result is fine as long as nothing breaks.
        // Numbers of secmmu's type, or one type off, reach the device and
        // are refused.
        let allowed = if kind == 1 { vec![got] } else { vec![ENOTTY] };
        self.check(format!("ctx{slot} ioctl {cmd:#x}"), got, &allowed)
    }

    fn debugfs_step(&mut self) -> (String, Option<String>) {
        let (file, text, allowed): (&str, String, Vec<i32>) = match self.rng.below(4) {
            0 => {
                let (t, ok) = match self.rng.below(6) {
                    0 => (
                        format!("late_invalidate={}", self.rng.below(FUZZ_LATE_US)),
                        true,
                    ),
                    1 => ("late_invalidate=0".into(), true),
                    2 => (format!("corrupt_copy={}", self.rng.below(2)), true),
                    3 => ("corrupt_copy=0".into(), true),
                    _ => {
                        let j = self.junk();
                        let ok = inject_ok(&j);
                        (j, ok)
                    }
                };
                ("inject", t, if ok { vec![0] } else { vec![EINVAL] })
            }
            1 => {
                if self.rng.chance(1, 3) {
                    ("events", "clear\n".into(), vec![0])
                } else {
                    let j = self.junk();
                    let ok = j.strip_suffix('\n').unwrap_or(&j) == "clear";
                    ("events", j, if ok { vec![0] } else { vec![EINVAL] })
                }
            }
            2 => return self.migrate_step(),
            _ => return self.bench_step(),
        };
        let got = errno_of(debugfs::write(file, &text));
        self.check(format!("write {file} {text:?}"), got, &allowed)
    }

    /// Text that is not a valid line for any control file (but may be
    /// `clear`).
    fn junk(&mut self) -> String {
        const PIECES: &[&str] = &[
            "",
            "=",
            "late_invalidate",
            "corrupt_copy",
            "=-1",
            "=2",
            "=18446744073709551616",
            "clear",
            "\n",
            "\0",
            " ",
            "0x",
            "unhardened",
            "\u{e9}",
            "999999999999",
        ];
        let mut s = String::new();
        for _ in 0..1 + self.rng.below(4) {
            s.push_str(PIECES[self.rng.index(PIECES.len())]);
        }
        if s.is_empty() {
            s.push('#');
        }
        s
    }

    /// Where a `migrate_thp` line points, and the address text.
    fn migrate_aim(&mut self) -> (Aim, String) {
        let m = &self.mem;
        let off = self.rng.index(HPAGE);
        let (aim, a) = match self.rng.below(16) {
            0 | 1 => (Aim::Plain, m.plain),
            2 => (Aim::Hole, m.hole),
            3..=6 | 15 => (Aim::Thp, m.thp + off),
            7 => (Aim::Zero, m.zero + off),
            8 => (Aim::Zapped, m.zapped + off),
            9 => (Aim::Race, m.race + off),
            10 => (Aim::Shared, m.shared + off),
            11 => (Aim::Kid, m.kid + off),
            12 | 13 => {
                let a = m.safe_top(top_address(&mut self.rng, 1, m.ts));
                return (Aim::Top, format!("{a:#x}"));
            }
            _ => {
                let t = if self.rng.chance(1, 2) {
                    "18446744073709551616"
                } else {
                    "0x10000000000000000"
                };
                return (Aim::Overflow, t.into());
            }
        };
        (aim, format!("{a:#x}"))
    }

    /// A `migrate_thp` request: usually well formed, for this process, PID
    /// 0, a missing one or a forked child in some state of its life;
    /// sometimes malformed.
    fn migrate_step(&mut self) -> (String, Option<String>) {
        // SAFETY: getpid has no preconditions.
        let me = unsafe { sys::getpid() };
        let who = match self.rng.below(16) {
            0 => Who::Zero,
            1 => Who::Missing,
            2 => Who::Child,
            3 => Who::ChildShared,
            4 => Who::Exiting,
            5 => Who::Zombie,
            6 => Who::Reaped,
            _ => Who::Me,
        };
        let (mut aim, mut addr) = self.migrate_aim();
        let node = match self.rng.below(5) {
            0 => 2,
            1 => -1,
            _ => self.rng.below(2) as i32,
        };
        let mode = if self.rng.chance(1, 4) {
            " unhardened"
        } else {
            ""
        };
        if self.rng.chance(1, 5) {
            // Never a number: '@' starts no address.
            let j = self.junk();
            let text = format!("{me} @{j} {node}");
            let got = errno_of(debugfs::write("migrate_thp", &text));
            return self.check(format!("write migrate_thp {text:?}"), got, &[EINVAL]);
        }
        // A child's request aims at the child's THP.
        if matches!(
            who,
            Who::Child | Who::Exiting | Who::Zombie | Who::Reaped | Who::ChildShared
        ) {
            let off = self.rng.index(HPAGE);
            (aim, addr) = if who == Who::ChildShared {
                (Aim::Shared, format!("{:#x}", self.mem.shared + off))
            } else {
                (Aim::Kid, format!("{:#x}", self.mem.kid + off))
            };
        }
        let child = match who {
            Who::Child | Who::ChildShared | Who::Exiting | Who::Zombie | Who::Reaped => {
                let exit_now = matches!(who, Who::Exiting | Who::Zombie | Who::Reaped);
                match spawn_child(self.mem.kid, who == Who::ChildShared, exit_now) {
                    Ok(c) => Some(c),
                    Err(e) => return (format!("fork a child ({who:?})"), Some(e)),
                }
            }
            _ => None,
        };
        if let Some(c) = &child {
            self.children += 1;
            match who {
                Who::Zombie => {
                    let mut info = [0u64; 16];
                    // SAFETY: waits for our own child, leaving it a zombie;
                    // `info` is a siginfo_t-sized buffer.
                    unsafe {
                        sys::waitid(
                            sys::P_PID,
                            c.pid as u32,
                            info.as_mut_ptr().cast(),
                            sys::WEXITED | sys::WNOWAIT,
                        )
                    };
                }
                Who::Reaped => reap(c),
                _ => {}
            }
        }
        let pid = match (who, &child) {
            (Who::Zero, _) => 0,
            (Who::Missing, _) => 4_000_000,
            (_, Some(c)) => c.pid,
            _ => me,
        };
        let text = format!("{pid} {addr} {node}{mode}\n");
        let got = errno_of(debugfs::write("migrate_thp", &text));
        if let Some(c) = &child {
            if who != Who::Reaped {
                reap(c);
            }
        }
        let node_ok = self.mem.nodes.contains(&node);
        let allowed = migrate_allowed(who, aim, node_ok, self.mem.huge_zero);
        let tag = match who {
            Who::Child => " (live child, its THP)",
            Who::ChildShared => " (live child, the THP it shares)",
            Who::Exiting => " (child exiting)",
            Who::Zombie => " (child exited, not reaped)",
            Who::Reaped => " (child exited and reaped)",
            Who::Me | Who::Zero | Who::Missing => "",
        };
        let r = self.check(format!("write migrate_thp {text:?}{tag}"), got, &allowed);
        if r.1.is_none() && aim == Aim::Zero && !self.mem.zero_intact() {
            return (
                r.0,
                Some("the huge-zero-page region no longer reads 0".into()),
            );
        }
        r
    }

    /// A `bench_fill` request through a context of this process (bound or
    /// not) or an unknown id.
    fn bench_step(&mut self) -> (String, Option<String>) {
        let slot = self.ctx_slot();
        let unknown = 1_000_000 + self.rng.below(1000) as u32;
        let (id, bound) = self
            .ctxs
            .get(slot)
            .and_then(|c| c.as_ref())
            .map_or((unknown, false), |c| (c.id, c.bound));
        let len: u64 = match self.rng.below(6) {
            0 => 0,
            1 => MAX_ACCESS + 8,
            2 => 1 + self.rng.below(7),
            3 => 8 * (1 + self.rng.below(16)),
            _ => 8 * (1 + self.rng.below(HOLE as u64 / 8)),
        };
        let (addr, target) = self.address(len as usize, true);
        let addr = if self.rng.chance(7, 8) {
            addr & !7
        } else {
            addr
        };
        let target = self.reclassify(addr, len, target);
        let (text, malformed) = match self.rng.below(16) {
            0 => (format!("{id} {addr:#x}"), true),
            // Fields are separated by any whitespace.
            1 => (format!("{id}  {addr:#x} {len}"), false),
            2 => (format!("{id}\t{addr:#x} {len}"), false),
            3 => (format!("{id} {addr:#x} 18446744073709551616"), true),
            4 => (format!("{id} {addr:#x} {len} "), false),
            5 => (format!("{id} {addr:#x} {len}\n"), false),
            _ => (format!("{id} {addr:#x} {len}"), false),
        };
        let got = errno_of(debugfs::write("bench_fill", &text));
        let allowed = bench_allowed(&BenchCase {
            malformed,
            addr,
            len,
            target,
            bound,
        });
        self.check(format!("write bench_fill {text:?}"), got, &allowed)
    }

    fn memory_step(&mut self) -> (String, Option<String>) {
        let h = self.mem.hole as *mut std::ffi::c_void;
        let rw = sys::PROT_READ | sys::PROT_WRITE;
        let fixed = sys::MAP_PRIVATE | sys::MAP_ANONYMOUS | sys::MAP_FIXED;
        let (what, ok) = match self.rng.below(3) {
            0 => {
                // Unmapped, but reserved: a PROT_NONE mapping replaces the
                // hole in one call (its pages are torn down as by munmap),
                // so no allocation of this process can land in the range
                // and be hit by a later step.
                self.mem.hole_mapped = false;
                // SAFETY: replaces exactly the hole, which only this
                // fuzzer uses.
                let q = unsafe { sys::mmap(h, HOLE, 0, fixed, -1, 0) };
                ("unmap hole", q as isize != -1)
            }
            1 => {
                // SAFETY: as above.
                let q = unsafe { sys::mmap(h, HOLE, rw, fixed | sys::MAP_POPULATE, -1, 0) };
                self.mem.hole_mapped = q as isize != -1;
                self.mem.hole_writable = true;
                ("mmap hole", q as isize != -1)
            }
            _ => {
                let ro = self.mem.hole_writable;
                self.mem.hole_writable = !ro;
                let prot = match (self.mem.hole_mapped, ro) {
                    (false, _) => 0,
                    (true, true) => sys::PROT_READ,
                    (true, false) => rw,
                };
                // SAFETY: changes the protection of exactly the hole.
                let r = unsafe { sys::mprotect(h, HOLE, prot) };
                let what = if ro {
                    "mprotect hole read-only"
                } else {
                    "mprotect hole read-write"
                };
                (what, r == 0)
            }
        };
        let bad = (!ok).then(|| "the memory operation itself failed".to_string());
        (what.to_string(), bad)
    }
}

/// Whether `text` is a line the `inject` file accepts: `late_invalidate=N`
/// (N <= 1000000) or `corrupt_copy=0|1`, with at most one trailing newline,
/// 64 bytes at most. (`leak_object=1` leaks by design, for the kmemleak
/// check's self-test, and `skip_invalidate=1` makes every device ignore the
/// kernel, for the oracles' self-tests: the fuzzer never writes either.)
fn inject_ok(text: &str) -> bool {
    if text.is_empty() || text.len() > 64 {
        return false;
    }
    let line = text.strip_suffix('\n').unwrap_or(text);
    match line.split_once('=') {
        Some(("late_invalidate", v)) => v.parse::<u64>().is_ok_and(|us| us <= 1_000_000),
        Some(("corrupt_copy", v)) => v == "0" || v == "1",
        _ => false,
    }
}

/// Runs the fuzzer.
pub fn run(o: &Options) -> Result<Outcome, String> {
    let mut f = Fuzzer::new(o.seed, o.break_model)?;
    let m = &f.mem;
    let mut notes = vec![format!(
        "TASK_SIZE {:#x}, top {} MiB {}, huge zero page {}, nodes with memory {:?}",
        m.ts,
        TOP_WINDOW >> 20,
        if m.top_free {
            "free"
        } else {
            "NOT free (addresses there moved to | 1 << 63)"
        },
        if m.huge_zero { "in use" } else { "not in use" },
        m.nodes
    )];
    let stop = Arc::new(AtomicBool::new(false));
    let racing: JoinHandle<u64> = {
        let (race, seed, stop) = (m.race, o.seed, stop.clone());
        std::thread::spawn(move || racer(race, seed, &stop))
    };
    let deadline = Instant::now() + Duration::from_secs(o.seconds);
    let mut steps = 0;
    let mut failure = None;
    while steps < o.ops && Instant::now() < deadline {
        let (line, bad) = f.step();
        f.log.push(line);
        steps += 1;
        if let Some(why) = bad {
            let mut s = String::new();
            let _ = writeln!(s, "fuzz: seed {} failed at step {steps}: {why}", o.seed);
            let _ = writeln!(
                s,
                "fuzz: replay with: secmmu fuzz --seed {} --ops {steps} --seconds {}",
                o.seed, o.seconds
            );
            let _ = writeln!(s, "fuzz: the sequence:");
            for (i, l) in f.log.iter().enumerate() {
                let _ = writeln!(s, "  {:>6} {l}", i + 1);
            }
            failure = Some(s);
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let zaps = racing.join().unwrap_or(0);
    notes.push(format!(
        "racing MADV_DONTNEED: {zaps} zaps; {} children forked",
        f.children
    ));
    f.ctxs.clear();
    let _ = debugfs::write("inject", "late_invalidate=0");
    let _ = debugfs::write("inject", "corrupt_copy=0");
    // Every context is closed: nothing may still hold the module.
    let refs = std::fs::read_to_string("/sys/module/secmmu/refcnt")
        .map(|r| r.trim().to_string())
        .unwrap_or_default();
    if failure.is_none() && refs != "0" {
        failure = Some(format!(
            "fuzz: seed {}: module reference count {refs:?} after closing every context\n",
            o.seed
        ));
    }
    let mut errnos = f.errnos;
    errnos.sort();
    Ok(Outcome {
        steps,
        failure,
        errnos,
        notes,
    })
}

/// Formats the per-errno summary.
pub fn summary(o: &Outcome) -> String {
    o.errnos
        .iter()
        .map(|(e, n)| format!("{} {n}", name(*e)))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const TS: u64 = TASK_SIZE_4L;

    #[test]
    fn inject_grammar() {
        for ok in [
            "late_invalidate=0",
            "late_invalidate=1000000\n",
            "corrupt_copy=1",
            "corrupt_copy=0\n",
        ] {
            assert!(inject_ok(ok), "{ok:?}");
        }
        for bad in [
            "",
            "late_invalidate=1000001",
            "late_invalidate=-1",
            "late_invalidate=",
            "corrupt_copy=2",
            "corrupt_copy=0\n\n",
            "clear",
            "=",
        ] {
            assert!(!inject_ok(bad), "{bad:?}");
        }
    }

    #[test]
    fn top_addresses_are_classified() {
        let mut rng = Rng::new(1);
        let mut seen = [false; 3];
        for _ in 0..10_000 {
            let len = 1 + rng.below(HOLE as u64);
            let a = top_address(&mut rng, len, TS);
            let t = classify(a, len, TS, true).expect("a top address is classified");
            seen[match t {
                Target::Wraps => 0,
                Target::Past => 1,
                Target::Bad => 2,
                other => panic!("{a:#x}+{len}: {other:?}"),
            }] = true;
            // Below TASK_SIZE only in the (empty) top window.
            assert!(a >= TS - TOP_WINDOW, "{a:#x}");
        }
        assert_eq!(seen, [true; 3]);
        assert_eq!(classify(TS - 8, 8, TS, true), Some(Target::Bad));
        assert_eq!(classify(TS - 8, 9, TS, true), Some(Target::Past));
        assert_eq!(classify(TS, 1, TS, true), Some(Target::Past));
        assert_eq!(classify(1 << 63, 8, TS, true), Some(Target::Past));
        assert_eq!(classify(u64::MAX, 1, TS, true), Some(Target::Wraps));
        assert_eq!(classify(u64::MAX, 1, TS, false), Some(Target::Wraps));
        assert_eq!(classify(TS - 8, 8, TS, false), None);
        assert_eq!(classify(0x1000, 8, TS, true), None);
    }

    #[test]
    fn top_addresses_follow_the_seed() {
        let draw = |seed| {
            let mut rng = Rng::new(seed);
            (0..64)
                .map(|i| (top_address(&mut rng, i * 8, TS), top_user_buf(&mut rng, TS)))
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(5), draw(5));
        assert_ne!(draw(5), draw(6));
    }

    fn case(target: Target, bound: bool, write: bool, user_buf: u64) -> AccessCase {
        AccessCase {
            write,
            addr: 0x1000,
            len: 64,
            target,
            bound,
            user_buf,
            buf_ok: user_buf == 0x5000,
            flags: 0,
            pad: 0,
        }
    }

    #[test]
    fn access_past_task_size_never_succeeds() {
        for bound in [false, true] {
            for write in [false, true] {
                for buf in [0, 8, 0x5000, u64::MAX - 7] {
                    for t in [Target::Past, Target::Wraps, Target::Bad] {
                        let v = access_allowed(&case(t, bound, write, buf));
                        assert!(!v.contains(&0), "{t:?} {bound} {write} {buf:#x}: {v:?}");
                        if t == Target::Past {
                            let want = if bound { EFAULT } else { ENOTCONN };
                            assert_eq!(v, vec![want], "{bound} {write} {buf:#x}");
                        }
                    }
                }
            }
        }
        assert_eq!(
            access_allowed(&case(Target::Wraps, false, true, 0)),
            vec![EFAULT]
        );
        assert_eq!(
            access_allowed(&case(Target::Past, false, true, 0)),
            vec![ENOTCONN]
        );
        assert_eq!(
            access_allowed(&case(Target::Past, true, true, 0x5000)),
            vec![EFAULT]
        );
        // Invalid arguments win over everything.
        let mut c = case(Target::Past, true, true, 0);
        c.len = 0;
        assert_eq!(access_allowed(&c), vec![EINVAL]);
    }

    #[test]
    fn access_racy_and_zero() {
        assert_eq!(
            access_allowed(&case(Target::Racy, true, true, 0)),
            vec![0, ENOMEM, EAGAIN]
        );
        assert_eq!(
            access_allowed(&case(Target::Zero, true, false, 0x5000)),
            vec![0, ENOMEM]
        );
        assert_eq!(
            access_allowed(&case(Target::Mapped, false, true, 0)),
            vec![ENOTCONN]
        );
    }

    #[test]
    fn stream_end_past_task_size() {
        assert_eq!(stream_fresh(TS - 8, 8, 1, 0, TS), 0);
        assert_eq!(stream_fresh(TS - 8, 8, 2, 0, TS), EFAULT);
        assert_eq!(stream_fresh(TS - 4096, 4096, 2, 0, TS), EFAULT);
        assert_eq!(stream_fresh(1 << 63, 8, 1, 0, TS), EFAULT);
        assert_eq!(stream_fresh(u64::MAX - 7, 8, 1, 0, TS), EFAULT);
        assert_eq!(stream_fresh(0x1000, 8, 1, 0, TS), 0);
        assert_eq!(stream_fresh(TS - 8, 12, 1, 0, TS), EINVAL);
        assert_eq!(stream_fresh(TS + 4, 8, 1, 0, TS), EINVAL);
    }

    #[test]
    fn bench_fill_model() {
        let c = |target, bound, addr: u64, len| BenchCase {
            malformed: false,
            addr,
            len,
            target,
            bound,
        };
        assert_eq!(bench_allowed(&c(Target::Past, true, TS, 8)), vec![EFAULT]);
        assert_eq!(bench_allowed(&c(Target::Past, false, TS, 8)), vec![ENOENT]);
        assert_eq!(
            bench_allowed(&c(Target::Wraps, true, u64::MAX - 7, 16)),
            vec![EFAULT]
        );
        assert_eq!(
            bench_allowed(&c(Target::Mapped, false, 0x1000, 8)),
            vec![ENOENT]
        );
        assert_eq!(
            bench_allowed(&c(Target::Mapped, true, 0x1000, 8)),
            vec![0, ENOMEM]
        );
        assert_eq!(
            bench_allowed(&c(Target::Mapped, true, 0x1004, 8)),
            vec![EINVAL]
        );
        assert_eq!(
            bench_allowed(&c(Target::Mapped, true, 0x1000, 0)),
            vec![EINVAL]
        );
        assert_eq!(
            bench_allowed(&c(Target::Racy, true, 0x1000, 8)),
            vec![0, ENOMEM, EAGAIN]
        );
        let mut m = c(Target::Mapped, true, 0x1000, 8);
        m.malformed = true;
        assert_eq!(bench_allowed(&m), vec![EINVAL]);
    }

    #[test]
    fn migrate_model() {
        use Aim::*;
        let whos = [
            Who::Me,
            Who::Missing,
            Who::Child,
            Who::ChildShared,
            Who::Exiting,
            Who::Zombie,
            Who::Reaped,
        ];
        let aims = [Plain, Hole, Thp, Shared, Zero, Zapped, Race, Kid, Top];
        // A well-formed line with a positive pid and a valid node: never
        // EINVAL.
        for who in whos {
            for aim in aims {
                for hz in [false, true] {
                    let v = migrate_allowed(who, aim, true, hz);
                    assert!(!v.contains(&EINVAL), "{who:?} {aim:?}: {v:?}");
                    assert!(!v.is_empty());
                }
            }
        }
        assert_eq!(migrate_allowed(Who::Me, Top, true, true), vec![EFAULT]);
        assert_eq!(migrate_allowed(Who::Me, Zero, true, true), vec![EFAULT]);
        assert_eq!(migrate_allowed(Who::Me, Zero, true, false), vec![ENOENT]);
        assert_eq!(migrate_allowed(Who::Me, Zapped, true, true), vec![ENOENT]);
        assert_eq!(migrate_allowed(Who::Me, Kid, true, true), vec![ENOENT]);
        assert_eq!(migrate_allowed(Who::Child, Kid, true, true), THP_RESULTS);
        assert_eq!(migrate_allowed(Who::Zombie, Kid, true, true), vec![ESRCH]);
        assert_eq!(migrate_allowed(Who::Reaped, Kid, true, true), vec![ESRCH]);
        assert!(migrate_allowed(Who::Exiting, Kid, true, true).contains(&ESRCH));
        assert!(migrate_allowed(Who::Me, Race, true, true).contains(&EAGAIN));
        assert!(!migrate_allowed(Who::Me, Thp, true, true).contains(&EFAULT));
        assert_eq!(migrate_allowed(Who::Me, Thp, false, true), vec![EINVAL]);
        assert_eq!(migrate_allowed(Who::Zero, Thp, true, true), vec![EINVAL]);
        assert_eq!(migrate_allowed(Who::Me, Overflow, true, true), vec![EINVAL]);
        // The node is checked before the process.
        assert_eq!(
            migrate_allowed(Who::Missing, Thp, false, true),
            vec![EINVAL]
        );
    }

    /// Draws addresses as (area, offset) pairs (absolute outside the
    /// arena): the areas are 2 MiB aligned, so where they lie in the arena
    /// depends on where the arena was mapped.
    fn draws(seed: u64) -> Vec<(u64, bool, Target)> {
        let mut f = Fuzzer::new(seed, false).expect("the arena maps");
        let base = f.mem._arena.ptr as u64;
        let size = f.mem._arena.len as u64;
        let m = &f.mem;
        let areas = [
            (m.plain, HOLE),
            (m.thp, HPAGE),
            (m.hole, HOLE),
            (m.race, HPAGE),
            (m.zero, HPAGE),
            (m.zapped, HPAGE),
            (m.shared, HPAGE),
            (m.kid, HPAGE),
        ]
        .map(|(a, n)| (a as u64, n as u64));
        let rel = move |a: u64| {
            for (i, &(start, n)) in areas.iter().enumerate() {
                if (start..start + n).contains(&a) {
                    return (((i as u64) << 32) | (a - start), true);
                }
            }
            if (base..base + size).contains(&a) {
                (u64::MAX, true)
            } else {
                (a, false)
            }
        };
        let mut v = Vec::new();
        for i in 0..2000 {
            let writer = i % 2 == 0;
            let len = 1 + f.rng.below(HOLE as u64);
            let (a, t) = f.address(len as usize, writer);
            let (a, inside) = rel(a);
            // Writers never aim at zero, zapped, shared or kid (areas 4 to 7).
            if writer && inside && a != u64::MAX {
                assert!(!(4..8).contains(&(a >> 32)), "writer at {a:#x}");
            }
            v.push((a, inside, t));
            let (aim, text) = f.migrate_aim();
            let n = u64::from_str_radix(text.trim_start_matches("0x"), 16).unwrap_or(0);
            let (n, inside) = rel(n);
            v.push((n, inside, if aim == Aim::Top { Target::Past } else { t }));
        }
        v
    }

    #[test]
    fn generators_follow_the_seed() {
        let a = draws(11);
        assert_eq!(a, draws(11));
        assert_ne!(a, draws(12));
        // Every kind of target turns up.
        for t in [
            Target::Mapped,
            Target::Maybe,
            Target::Bad,
            Target::Past,
            Target::Wraps,
            Target::Racy,
            Target::Zero,
        ] {
            assert!(a.iter().any(|d| d.2 == t), "{t:?}");
        }
    }

    #[test]
    fn node_lists() {
        assert_eq!(parse_nodes("0-1\n"), vec![0, 1]);
        assert_eq!(parse_nodes("0,2-3"), vec![0, 2, 3]);
        assert_eq!(parse_nodes("0"), vec![0]);
        assert_eq!(parse_nodes(""), Vec::<i32>::new());
    }
}
