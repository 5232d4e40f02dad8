// SPDX-License-Identifier: GPL-2.0

//! One device read or write, run on the device engine's workqueue while
//! the ioctl that submitted it waits, like a DMA command and its
//! completion. The wait is killable: a submitter killed meanwhile sets the
//! job's cancel flag, which the engine checks per page, and returns
//! `-EINTR`; the job, which owns its buffer, ends on its own.

use crate::{
    completion::Done,
    engine::{Binding, Cancel, Dir},
    queue,
};
use kernel::{
    new_mutex,
    prelude::*,
    sync::{
        atomic::{Atomic, Relaxed},
        Arc, Mutex,
    },
    workqueue::{new_work, Work, WorkItem},
};

/// What a job does.
#[derive(Clone, Copy)]
enum Op {
    /// Copies between process memory and the job's buffer.
    Copy(Dir),
    /// Writes `value` to every 64-bit word of `len` bytes.
    Fill { len: usize, value: u64 },
}

/// A device access in flight.
#[pin_data]
struct Job {
    binding: Arc<Binding>,
    addr: usize,
    op: Op,
    #[pin]
    buf: Mutex<KVVec<u8>>,
    result: Atomic<i32>,
    cancel: Cancel,
    #[pin]
    done: Done,
    #[pin]
    work: Work<Job>,
}

kernel::impl_has_work! {
    impl HasWork<Self> for Job { self.work }
}

impl WorkItem for Job {
    type Pointer = Arc<Job>;

    fn run(this: Arc<Job>) {
        let r = match this.op {
            Op::Copy(dir) => {
                let mut buf = this.buf.lock();
                this.binding.access(this.addr, &mut buf, dir, &this.cancel)
            }
            Op::Fill { len, value } => this.binding.fill_u64(this.addr, len, value, &this.cancel),
        };
        this.result
            .store(r.err().map_or(0, |e| e.to_errno()), Relaxed);
        this.done.complete_all();
    }
}

/// Runs a device access of `buf.len()` bytes at `addr` on the engine and
/// waits for it. Returns the buffer (filled, for a read).
pub(crate) fn run(
    binding: Arc<Binding>,
    addr: usize,
    buf: KVVec<u8>,
    dir: Dir,
) -> Result<KVVec<u8>> {
    submit(binding, addr, buf, Op::Copy(dir))
}

/// Runs a device fill of `len` bytes at `addr` with the 64-bit `value` on
/// the engine and waits for it.
pub(crate) fn run_fill(binding: Arc<Binding>, addr: usize, len: usize, value: u64) -> Result {
    submit(binding, addr, KVVec::new(), Op::Fill { len, value }).map(|_| ())
}

fn submit(binding: Arc<Binding>, addr: usize, buf: KVVec<u8>, op: Op) -> Result<KVVec<u8>> {
    let job = Arc::pin_init(
        pin_init!(Job {
            binding,
            addr,
            op,
            buf <- new_mutex!(buf),
            result: Atomic::new(0),
            cancel: Atomic::new(false),
            done <- Done::new(),
            work <- new_work!("secmmu::Job"),
        }),
        GFP_KERNEL,
    )?;
    if queue::engine().enqueue(job.clone()).is_err() {
        return Err(EBUSY);
    }
    job.done.wait_or_cancel(&job.cancel)?;
    match job.result.load(Relaxed) {
        0 => {
            let mut buf = job.buf.lock();
            Ok(core::mem::take(&mut *buf))
        }
        e => Err(Error::from_errno(e)),
    }
}
