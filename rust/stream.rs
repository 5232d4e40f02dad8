// SPDX-License-Identifier: GPL-2.0

//! Streams: the device engine writing increasing 64-bit sequence numbers,
//! round-robin, into a ring of slots in process memory, remembering the
//! last value it wrote to each slot. A slot that, seen by the CPU after the
//! stream stopped, does not hold that value lost a write: the device wrote
//! it through a translation to a page the process no longer maps.

use crate::{completion::Done, engine::Binding, mm_bindings as b, queue, stats::Stat};
use core::mem::size_of;
use kernel::{
    new_mutex,
    prelude::*,
    sync::{
        atomic::{Atomic, Relaxed},
        Arc, Mutex,
    },
    uaccess::{UserPtr, UserSlice},
    workqueue::{new_work, Work, WorkItem},
};

/// Writes per work-item run; the item then requeues itself so other work
/// and the CPU get their turn.
const BATCH: usize = 256;

/// The ring and what the device last wrote to it.
struct Ring {
    /// Last value written to each slot (0: never written).
    last: KVVec<u64>,
    /// Next slot to write.
    pos: usize,
    /// Next sequence number.
    seq: u64,
}

/// A running (or stopped) stream.
///
/// # Invariants
///
/// `ring.last.len() == slots`, and `addr + i * stride` does not overflow
/// for `i < slots`.
#[pin_data]
pub(crate) struct Stream {
    binding: Arc<Binding>,
    addr: usize,
    stride: usize,
    slots: usize,
    #[pin]
    ring: Mutex<Ring>,
    /// `SECMMU_STREAM_ONCE`: one pass over the slots, then stop.
    once: bool,
    stop: Atomic<bool>,
    error: Atomic<i32>,
    writes: Atomic<u64>,
    #[pin]
    done: Done,
    #[pin]
    work: Work<Stream>,
}

kernel::impl_has_work! {
    impl HasWork<Self> for Stream { self.work }
}

impl WorkItem for Stream {
    type Pointer = Arc<Stream>;

    fn run(this: Arc<Stream>) {
        let failed = {
            let mut ring = this.ring.lock();
            let mut failed = None;
            for _ in 0..BATCH {
                if this.stop.load(Relaxed) {
                    break;
                }
                let pos = ring.pos;
                let seq = ring.seq;
                // Cannot wrap: checked in `start` (type invariant).
                let va = this.addr.wrapping_add(pos.wrapping_mul(this.stride));
                // `stop` is also the write's cancel flag: a stop request
                // ends a write that keeps retrying at once.
                if let Err(e) = this.binding.write_u64(va, seq, &this.stop) {
                    if e == EINTR {
                        break;
                    }
                    failed = Some(e);
                    break;
                }
                if let Some(slot) = ring.last.get_mut(pos) {
                    *slot = seq;
                }
                ring.seq = ring.seq.wrapping_add(1);
                ring.pos = match pos.checked_add(1) {
                    Some(next) if next < this.slots => next,
                    _ => {
                        if this.once {
                            // One pass done: every slot written once.
                            this.stop.store(true, Relaxed);
                        }
                        0
                    }
                };
                this.writes.fetch_add(1, Relaxed);
                this.binding.stats().inc(Stat::STREAM_WRITES);
            }
            failed
        };
        if let Some(e) = failed {
            this.error.store(e.to_errno(), Relaxed);
            this.stop.store(true, Relaxed);
        }
        if this.stop.load(Relaxed) {
            this.done.complete_all();
            return;
        }
        if let Err(this) = queue::engine().enqueue(this) {
            this.stop.store(true, Relaxed);
            this.done.complete_all();
        }
    }
}

impl Stream {
    /// Validates `req` and starts the stream on the engine.
    pub(crate) fn start(binding: Arc<Binding>, req: &b::secmmu_stream) -> Result<Arc<Self>> {
        let slots = req.slots as usize;
        let addr = usize::try_from(req.addr).map_err(|_| EFAULT)?;
        let stride = usize::try_from(req.stride).map_err(|_| EINVAL)?;
        if req.flags & !b::SECMMU_STREAM_ONCE != 0
            || slots == 0
            || slots > b::SECMMU_MAX_STREAM_SLOTS as usize
            || stride < size_of::<u64>()
            || stride % size_of::<u64>() != 0
            || addr % size_of::<u64>() != 0
        {
            return Err(EINVAL);
        }
        // The last slot's end must not wrap, and must lie below TASK_SIZE.
        let span = stride
            .checked_mul(slots - 1)
            .and_then(|span| span.checked_add(size_of::<u64>()))
            .ok_or(EFAULT)?;
        binding.check_range(addr, span)?;
        let mut last = KVVec::with_capacity(slots, GFP_KERNEL)?;
        last.resize(slots, 0u64, GFP_KERNEL)?;
        // INVARIANT: `last` has `slots` entries; the range was checked.
        let stream = Arc::pin_init(
            pin_init!(Stream {
                binding,
                addr,
                stride,
                slots,
                ring <- new_mutex!(Ring { last, pos: 0, seq: 1 }),
                once: req.flags & b::SECMMU_STREAM_ONCE != 0,
                stop: Atomic::new(false),
                error: Atomic::new(0),
                writes: Atomic::new(0),
                done <- Done::new(),
                work <- new_work!("secmmu::Stream"),
            }),
            GFP_KERNEL,
        )?;
        if queue::engine().enqueue(stream.clone()).is_err() {
            return Err(EBUSY);
        }
        Ok(stream)
    }

    /// Whether the engine may still write (no stop asked, no fault, pass
    /// not done).
    pub(crate) fn is_running(&self) -> bool {
        !self.stop.load(Relaxed)
    }

    /// Stops the stream and waits until the engine has finished with it
    /// (at most one write: the engine checks the flag per write and per
    /// fill retry). Idempotent. `-EINTR` if the caller was killed meanwhile.
    pub(crate) fn stop(&self) -> Result {
        self.stop.store(true, Relaxed);
        self.done.wait_killable()
    }

    /// Stops the stream and compares every slot, as the calling task (in
    /// the bound mm) sees it, with the last value the device wrote there.
    pub(crate) fn verify(&self) -> Result<b::secmmu_verify> {
        self.stop()?;
        let ring = self.ring.lock();
        let mut lost = 0u64;
        let mut first = u64::MAX;
        for (i, &want) in ring.last.iter().enumerate() {
            if want == 0 {
                continue;
            }
            // Cannot wrap: checked in `start` (type invariant).
            let va = self.addr.wrapping_add(i.wrapping_mul(self.stride));
            let got: u64 = UserSlice::new(UserPtr::from_addr(va), size_of::<u64>())
                .reader()
                .read()?;
            if got != want {
                lost += 1;
                if first == u64::MAX {
                    first = i as u64;
                }
            }
        }
        drop(ring);
        self.binding.stats().add(Stat::LOST_WRITES, lost);
        Ok(b::secmmu_verify {
            slots: self.slots as u64,
            lost_writes: lost,
            writes: self.writes.load(Relaxed),
            first_lost_slot: first,
        })
    }

    /// The error that stopped the stream on its own, if any.
    pub(crate) fn error(&self) -> Result {
        match self.error.load(Relaxed) {
            0 => Ok(()),
            e => Err(Error::from_errno(e)),
        }
    }
}
