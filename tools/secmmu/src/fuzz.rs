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

use crate::abi::{self, Access, Bind, Stats, Stream, Verify};
use crate::debugfs;
use crate::rng::Rng;
use crate::sys::{self, ioctl_ptr, Mapping};
use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
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
}

/// A device context as the model sees it.
struct Ctx {
    file: File,
    bound: bool,
    stream: bool,
}

/// The process memory the steps aim at: three areas inside one arena,
/// each surrounded by `PROT_NONE` guards wider than any stream the fuzzer
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
    /// Userspace buffer for device reads and writes.
    buf: Vec<u8>,
}

const HOLE: usize = 16 * PAGE;
const HPAGE: usize = 2 << 20;
/// Guard size: more than the longest stream span with a small stride
/// (64 slots x 4 KiB).
const GUARD: usize = 1 << 20;

impl Memory {
    fn new() -> Result<Self, String> {
        let size = 4 * GUARD + 2 * HOLE + 2 * HPAGE;
        let arena = Mapping::reserve(size).map_err(|e| format!("mmap: {e}"))?;
        let start = arena.ptr as usize;
        let plain = start + GUARD;
        let thp = (plain + HOLE + GUARD + HPAGE - 1) & !(HPAGE - 1);
        let hole = thp + HPAGE + GUARD;
        let rw = sys::PROT_READ | sys::PROT_WRITE;
        let fixed = sys::MAP_PRIVATE | sys::MAP_ANONYMOUS | sys::MAP_FIXED;
        for (at, len) in [(plain, HOLE), (thp, HPAGE), (hole, HOLE)] {
            // SAFETY: each area lies inside the arena, which nothing else
            // in this process uses.
            let q = unsafe { sys::mmap(at as *mut _, len, rw, fixed, -1, 0) };
            if q as isize == -1 {
                return Err(format!("mmap: {}", std::io::Error::last_os_error()));
            }
        }
        // SAFETY: the THP area was just mapped.
        unsafe { sys::madvise(thp as *mut _, HPAGE, sys::MADV_HUGEPAGE) };
        for (at, len) in [(plain, HOLE), (thp, HPAGE), (hole, HOLE)] {
            for off in (0..len).step_by(PAGE) {
                // SAFETY: mapped read-write just above.
                unsafe { ((at + off) as *mut u8).write_volatile(1) };
            }
        }
        Ok(Self {
            _arena: arena,
            plain,
            thp,
            hole,
            hole_mapped: true,
            hole_writable: true,
            buf: vec![0; HOLE],
        })
    }
}

/// Where an address points, for the model.
#[derive(Clone, Copy, PartialEq)]
enum Target {
    /// Mapped read-write for the whole access.
    Mapped,
    /// Some part may be unmapped, read-only or not user memory.
    Maybe,
    /// Not user memory at all.
    Bad,
    /// Past the end of the address space.
    Wraps,
}

struct Fuzzer {
    rng: Rng,
    ctxs: Vec<Option<Ctx>>,
    mem: Memory,
    log: Vec<String>,
    errnos: Vec<(i32, u64)>,
    break_model: bool,
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
    /// An address for a device access of `len` bytes, and what it is.
    fn address(&mut self, len: usize) -> (u64, Target) {
        let m = &self.mem;
        let fits = |base: usize, size: usize, off: usize| off + len <= size && base != 0;
        match self.rng.below(8) {
            0 | 1 => {
                let off = self.rng.index(HOLE);
                let t = if fits(m.plain, HOLE, off) {
                    Target::Mapped
                } else {
                    Target::Maybe
                };
                ((m.plain + off) as u64, t)
            }
            2 | 3 => {
                let size = 2 << 20;
                let off = self.rng.index(size);
                let t = if fits(m.thp, size, off) {
                    Target::Mapped
                } else {
                    Target::Maybe
                };
                ((m.thp + off) as u64, t)
            }
            4 => {
                let off = self.rng.index(HOLE);
                let t = if m.hole_mapped && m.hole_writable && fits(m.hole, HOLE, off) {
                    Target::Mapped
                } else {
                    Target::Maybe
                };
                ((m.hole + off) as u64, t)
            }
            5 => (0xffff_8880_0000_0000 + self.rng.below(1 << 20), Target::Bad),
            6 => {
                let a = u64::MAX - self.rng.below(64);
                if a.checked_add(len as u64).is_none() {
                    (a, Target::Wraps)
                } else {
                    (a, Target::Bad)
                }
            }
            _ => (self.rng.next_u64() & 0x7fff_ffff_fff8, Target::Maybe),
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
            6..=15 => return self.debugfs_step(),
            16..=20 => return self.memory_step(),
            _ => {}
        }
        if self.ctxs.get(slot).is_none_or(|c| c.is_none()) {
            return self.open_close(slot);
        }
        match kind {
            21..=30 => self.bind(slot),
            31..=35 => self.simple(slot, abi::UNBIND, "UNBIND"),
            36..=60 => self.access(slot),
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
        match OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/secmmu")
        {
            Ok(file) => {
                *c = Some(Ctx {
                    file,
                    bound: false,
                    stream: false,
                });
                (format!("open ctx{slot}"), None)
            }
            Err(e) => (
                format!("open ctx{slot}"),
                Some(format!("open /dev/secmmu: {e}")),
            ),
        }
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
        let (bound, stream) = self
            .model(slot)
            .map_or((false, false), |c| (c.bound, c.stream));
        let allowed: &[i32] = match req {
            abi::UNBIND if bound => &[0],
            abi::UNBIND => &[ENOTCONN],
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
        let (addr, target) = self.address(len.min(1 << 30) as usize);
        let user_buf = match self.rng.below(5) {
            0 => 0,
            1 => 0xffff_8880_0000_1000,
            2 => 8,
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
        let bound = self.model(slot).is_some_and(|c| c.bound);
        let buf_ok = user_buf == self.mem.buf.as_ptr() as u64 && len <= HOLE as u64;
        let allowed: Vec<i32> = if flags != 0 || pad != 0 || len == 0 || len > 64 << 20 {
            vec![EINVAL]
        } else if target == Target::Wraps {
            vec![EFAULT]
        } else if !bound {
            vec![ENOTCONN]
        } else if write && user_buf == 0 && (addr % 8 != 0 || len % 8 != 0) {
            vec![EINVAL]
        } else if !write && user_buf == 0 {
            vec![EFAULT]
        } else if (user_buf != 0 && !buf_ok) || target == Target::Bad {
            // A bad user buffer or target: a fault (or no memory for the
            // bounce buffer).
            vec![EFAULT, ENOMEM]
        } else if target == Target::Maybe {
            vec![0, EFAULT, ENOMEM]
        } else {
            vec![0, ENOMEM]
        };
        let what = format!(
            "ctx{slot} {} addr={addr:#x} len={len} buf={user_buf:#x} flags={flags} pad={pad}",
            if write { "WRITE" } else { "READ" }
        );
        self.check(what, got, &allowed)
    }

    fn stream_start(&mut self, slot: usize) -> (String, Option<String>) {
        let (addr, _) = self.address(8);
        let addr = if self.rng.chance(7, 8) {
            addr & !7
        } else {
            addr
        };
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
        let invalid = flags & !abi::STREAM_ONCE != 0
            || slots == 0
            || slots > 65536
            || stride < 8
            || stride % 8 != 0
            || addr % 8 != 0;
        let wraps = stride
            .checked_mul(u64::from(slots.max(1)) - 1)
            .and_then(|span| span.checked_add(addr))
            .and_then(|last| last.checked_add(8))
            .is_none();
        let fresh = if invalid {
            EINVAL
        } else if wraps {
            EFAULT
        } else {
            0
        };
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
        let (file, text, allowed): (&str, String, Vec<i32>) = match self.rng.below(3) {
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
            _ => {
                let (t, parsable) = self.migrate_line();
                let allowed = if parsable {
                    // The helper's documented results (EIO: corrupt_copy).
                    vec![
                        0, EINVAL, ESRCH, EFAULT, ENOENT, EALREADY, EBUSY, EAGAIN, ENOMEM, EIO,
                    ]
                } else {
                    vec![EINVAL]
                };
                ("migrate_thp", t, allowed)
            }
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

    /// A `migrate_thp` line: usually well formed with any values, sometimes
    /// malformed. Returns it and whether it parses.
    fn migrate_line(&mut self) -> (String, bool) {
        // SAFETY: getpid has no preconditions.
        let me = unsafe { sys::getpid() };
        let pid = match self.rng.below(4) {
            0 => "0".to_string(),
            1 => "4000000".to_string(),
            _ => me.to_string(),
        };
        let addr = match self.rng.below(4) {
            0 => format!("{:#x}", self.mem.plain),
            1 => format!("{:#x}", self.mem.hole),
            _ => format!("{:#x}", self.mem.thp + self.rng.index(2 << 20)),
        };
        let node = match self.rng.below(5) {
            0 => "2".to_string(),
            1 => "-1".to_string(),
            _ => self.rng.below(2).to_string(),
        };
        let mode = if self.rng.chance(1, 4) {
            " unhardened"
        } else {
            ""
        };
        if self.rng.chance(1, 5) {
            // Never a number: '@' starts no address.
            let j = self.junk();
            return (format!("{pid} @{j} {node}"), false);
        }
        (format!("{pid} {addr} {node}{mode}\n"), true)
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
/// check's self-test; the fuzzer never writes it.)
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
    let mut f = Fuzzer {
        rng: Rng::new(o.seed),
        ctxs: (0..4).map(|_| None).collect(),
        mem: Memory::new()?,
        log: Vec::new(),
        errnos: Vec::new(),
        break_model: o.break_model,
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
}
