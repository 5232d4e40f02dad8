// SPDX-License-Identifier: GPL-2.0

//! State shared by every device context, the notifier callbacks and the
//! debugfs files: the event log, the registry of bound contexts (so the
//! migration helper can find every secondary TLB of an mm), the fault
//! injection settings, and the range the helper is migrating.

use crate::{bench::LastBench, engine::Binding, events::EventLog, migrate::LastResult};
use kernel::{
    bindings, new_mutex, new_spinlock,
    prelude::*,
    sync::{
        atomic::{Atomic, Relaxed},
        Arc, Mutex, SpinLock,
    },
};

/// Longest `late_invalidate` delay accepted, in microseconds.
pub(crate) const MAX_LATE_INVALIDATE_US: u64 = 1_000_000;

/// The range the helper is migrating, while it does.
#[derive(Clone, Copy)]
struct MigratingRange {
    mm: usize,
    start: usize,
    end: usize,
}

/// See the module documentation.
#[pin_data]
pub(crate) struct Shared {
    #[pin]
    pub(crate) events: EventLog,
    #[pin]
    bound: Mutex<KVec<Arc<Binding>>>,
    late_invalidate_us: Atomic<u64>,
    corrupt_copy: Atomic<bool>,
    #[pin]
    migrating: SpinLock<Option<MigratingRange>>,
    /// Serialises helper runs and keeps the last result.
    #[pin]
    pub(crate) helper: Mutex<LastResult>,
    /// The last `bench_fill` result.
    #[pin]
    pub(crate) bench: Mutex<LastBench>,
}

/// `ktime_get()` in nanoseconds.
pub(crate) fn now_ns() -> u64 {
    // SAFETY: `ktime_get` has no preconditions and may run in any context.
    let t = unsafe { bindings::ktime_get() };
    u64::try_from(t).unwrap_or(0)
}

impl Shared {
    /// Allocates the shared state.
    pub(crate) fn new() -> Result<Arc<Self>> {
        let events = EventLog::new()?;
        Arc::pin_init(
            try_pin_init!(Self {
                events <- events,
                bound <- new_mutex!(KVec::new()),
                late_invalidate_us: Atomic::new(0),
                corrupt_copy: Atomic::new(false),
                migrating <- new_spinlock!(None),
                helper <- new_mutex!(LastResult::default()),
                bench <- new_mutex!(LastBench::default()),
            }),
            GFP_KERNEL,
        )
    }

    /// Adds a bound context to the registry.
    pub(crate) fn register(&self, b: Arc<Binding>) -> Result {
        self.bound.lock().push(b, GFP_KERNEL)?;
        Ok(())
    }

    /// Removes a bound context from the registry.
    pub(crate) fn unregister(&self, b: &Arc<Binding>) {
        let mut bound = self.bound.lock();
        if let Some(i) = bound.iter().position(|x| Arc::ptr_eq(x, b)) {
            drop(bound.remove(i));
        }
    }

    /// Every context bound to `mm`.
    pub(crate) fn bound_to(&self, mm: usize) -> Result<KVec<Arc<Binding>>> {
        let bound = self.bound.lock();
        let mut out = KVec::new();
        for b in bound.iter().filter(|b| b.mm_raw() == mm) {
            out.push(b.clone(), GFP_KERNEL)?;
        }
        Ok(out)
    }

    /// The bound context with id `ctx`, if any.
    pub(crate) fn by_ctx(&self, ctx: u32) -> Option<Arc<Binding>> {
        self.bound.lock().iter().find(|b| b.ctx() == ctx).cloned()
    }

    /// The `late_invalidate` delay in microseconds (0: off).
    pub(crate) fn late_invalidate_us(&self) -> u64 {
        self.late_invalidate_us.load(Relaxed)
    }

    /// Sets the `late_invalidate` delay.
    pub(crate) fn set_late_invalidate_us(&self, us: u64) -> Result {
        if us > MAX_LATE_INVALIDATE_US {
            return Err(EINVAL);
        }
        self.late_invalidate_us.store(us, Relaxed);
        Ok(())
    }

    /// Whether the helper corrupts its copy on purpose (`corrupt_copy`
    /// injection, to show the copy verification fires).
    pub(crate) fn corrupt_copy(&self) -> bool {
        self.corrupt_copy.load(Relaxed)
    }

    /// Sets the `corrupt_copy` injection.
    pub(crate) fn set_corrupt_copy(&self, on: bool) {
        self.corrupt_copy.store(on, Relaxed);
    }

    /// Marks `[start, end)` of `mm` as being migrated by the helper (or
    /// clears it with `None`).
    pub(crate) fn set_migrating(&self, r: Option<(usize, usize, usize)>) {
        *self.migrating.lock() = r.map(|(mm, start, end)| MigratingRange { mm, start, end });
    }

    /// Under `late_invalidate` injection, the time until which an
    /// invalidation of `[start, end)` in `mm` is to be ignored by the
    /// device: only inside the range the helper is migrating.
    pub(crate) fn late_deadline(&self, mm: usize, start: usize, end: usize) -> Option<u64> {
        let us = self.late_invalidate_us();
        if us == 0 {
            return None;
        }
        let r = (*self.migrating.lock())?;
        // The invalidation must fall inside the migrating range.
        if r.mm != mm || start < r.start || end > r.end {
            return None;
        }
        Some(now_ns().saturating_add(us.saturating_mul(1000)))
    }
}
