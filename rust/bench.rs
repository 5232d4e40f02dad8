// SPDX-License-Identifier: GPL-2.0

//! `/sys/kernel/debug/secmmu/bench_fill`: the device's hit path against an
//! in-kernel `memset` of the same bytes, timed side by side on the engine.
//!
//! Writing `CTX ADDR LEN` (context id as in `ctx/<id>`, a process address
//! and a length, both multiples of 8, `LEN` at most `SECMMU_MAX_ACCESS`)
//! runs one engine work item that fills `LEN` bytes at `ADDR` through
//! context `CTX`'s TLB and `memset`s a kernel buffer of `LEN` bytes, in an
//! order that alternates from one write to the next, timing each with
//! `ktime_get()`. The write must come from a task of the context's mm.
//! Reading prints the last result: `device_ns`, `memset_ns`, `bytes`.

use crate::{
    completion::Done,
    engine::{Binding, Cancel},
    queue,
    shared::{now_ns, Shared},
};
use core::fmt;
use kernel::{
    new_mutex,
    prelude::*,
    sync::{
        atomic::{Atomic, Relaxed},
        Arc, Mutex,
    },
    uaccess::UserSliceReader,
    workqueue::{new_work, Work, WorkItem},
};

/// The last result.
#[derive(Default, Clone, Copy)]
pub(crate) struct LastBench {
    device_ns: u64,
    memset_ns: u64,
    bytes: usize,
}

impl LastBench {
    /// Prints the result as `name value` lines.
    pub(crate) fn show(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "device_ns {}", self.device_ns)?;
        writeln!(f, "memset_ns {}", self.memset_ns)?;
        writeln!(f, "bytes {}", self.bytes)
    }
}

/// Runs alternate the order of the two measurements.
static ROUND: Atomic<u64> = Atomic::new(0);

/// The byte pattern of both fills.
const PATTERN: u8 = 0x5a;

/// One side-by-side measurement on the engine.
#[pin_data]
struct BenchJob {
    binding: Arc<Binding>,
    addr: usize,
    #[pin]
    kbuf: Mutex<KVVec<u8>>,
    result: Atomic<i32>,
    device_ns: Atomic<u64>,
    memset_ns: Atomic<u64>,
    device_first: bool,
    cancel: Cancel,
    #[pin]
    done: Done,
    #[pin]
    work: Work<BenchJob>,
}

kernel::impl_has_work! {
    impl HasWork<Self> for BenchJob { self.work }
}

impl BenchJob {
    fn device(&self, len: usize) -> Result<u64> {
        let t0 = now_ns();
        self.binding.fill_u64(
            self.addr,
            len,
            u64::from_ne_bytes([PATTERN; 8]),
            &self.cancel,
        )?;
        Ok(now_ns().saturating_sub(t0))
    }

    fn memset(&self, kbuf: &mut KVVec<u8>) -> u64 {
        let t0 = now_ns();
        // SAFETY: `kbuf` owns `kbuf.len()` initialised bytes.
        unsafe { core::ptr::write_bytes(kbuf.as_mut_ptr(), PATTERN, kbuf.len()) };
        now_ns().saturating_sub(t0)
    }
}

impl WorkItem for BenchJob {
    type Pointer = Arc<BenchJob>;

    fn run(this: Arc<BenchJob>) {
        let mut kbuf = this.kbuf.lock();
        let len = kbuf.len();
        let r = if this.device_first {
            this.device(len).map(|d| (d, this.memset(&mut kbuf)))
        } else {
            let m = this.memset(&mut kbuf);
            this.device(len).map(|d| (d, m))
        };
        drop(kbuf);
        match r {
            Ok((d, m)) => {
                this.device_ns.store(d, Relaxed);
                this.memset_ns.store(m, Relaxed);
            }
            Err(e) => this.result.store(e.to_errno(), Relaxed),
        }
        this.done.complete_all();
    }
}

/// Longest `bench_fill` line.
const MAX_LINE: usize = 80;

fn parse(reader: &mut UserSliceReader) -> Result<(u32, usize, usize)> {
    let mut buf = [0u8; MAX_LINE];
    let len = reader.len();
    if len == 0 || len > MAX_LINE {
        return Err(EINVAL);
    }
    let line = buf.get_mut(..len).ok_or(EINVAL)?;
    reader.read_slice(line)?;
    let text = core::str::from_utf8(line).map_err(|_| EINVAL)?;
    // Fields separated by any whitespace, as `migrate_thp` takes them.
    let mut it = text.split_whitespace();
    let ctx = it
        .next()
        .ok_or(EINVAL)?
        .parse::<u32>()
        .map_err(|_| EINVAL)?;
    let addr = crate::migrate::parse_u64(it.next().ok_or(EINVAL)?)?;
    let len = crate::migrate::parse_u64(it.next().ok_or(EINVAL)?)?;
    if it.next().is_some() {
        return Err(EINVAL);
    }
    let addr = usize::try_from(addr).map_err(|_| EINVAL)?;
    let len = usize::try_from(len).map_err(|_| EINVAL)?;
    Ok((ctx, addr, len))
}

/// Writing `bench_fill`: `CTX ADDR LEN`.
pub(crate) fn write(s: &Arc<Shared>, reader: &mut UserSliceReader) -> Result {
    let (ctx, addr, len) = parse(reader).inspect_err(|_| {
        pr_info!("bench_fill: expected 'CTX ADDR LEN'\n");
    })?;
    let max = crate::mm_bindings::SECMMU_MAX_ACCESS as usize;
    if len == 0 || len > max || len % 8 != 0 || addr % 8 != 0 {
        return Err(EINVAL);
    }
    addr.checked_add(len).ok_or(EFAULT)?;
    let binding = s.by_ctx(ctx).ok_or(ENOENT)?;
    if !binding.is_current_mm() {
        return Err(EPERM);
    }
    binding.check_range(addr, len)?;
    let mut kbuf = KVVec::<u8>::with_capacity(len, GFP_KERNEL)?;
    kbuf.resize(len, 0, GFP_KERNEL)?;
    let job = Arc::pin_init(
        pin_init!(BenchJob {
            binding,
            addr,
            kbuf <- new_mutex!(kbuf),
            result: Atomic::new(0),
            device_ns: Atomic::new(0),
            memset_ns: Atomic::new(0),
            device_first: ROUND.fetch_add(1, Relaxed) % 2 == 0,
            cancel: Atomic::new(false),
            done <- Done::new(),
            work <- new_work!("secmmu::BenchJob"),
        }),
        GFP_KERNEL,
    )?;
    if queue::engine().enqueue(job.clone()).is_err() {
        return Err(EBUSY);
    }
    job.done.wait_or_cancel(&job.cancel)?;
    match job.result.load(Relaxed) {
        0 => {
            *s.bench.lock() = LastBench {
                device_ns: job.device_ns.load(Relaxed),
                memset_ns: job.memset_ns.load(Relaxed),
                bytes: len,
            };
            Ok(())
        }
        e => Err(Error::from_errno(e)),
    }
}
