// SPDX-License-Identifier: GPL-2.0

//! State shared by every device context, the notifier callbacks and the
//! debugfs files: the event log, the registry of bound contexts (so the
//! migration helper can find every secondary TLB of an mm) and the fault
//! injection settings.
//!
//! # The registry and the helper's snapshot
//!
//! A context is published here at the end of its bind, after its notifier
//! is registered, and before its file can submit any device access. The
//! helper snapshots the contexts of an mm before `migrate_vma_setup()` and
//! arms only those for the `late_invalidate` injection: a context
//! published later is never armed, so the callback honours each of its
//! invalidations at once and it can hold no stale translation the helper
//! would not drain. The snapshot's references are dropped only after the
//! helper has released the mmap lock (the last one unregisters a notifier,
//! which waits for SRCU).

use crate::{bench::LastBench, engine::Binding, events::EventLog, migrate::LastResult};
use kernel::{
    bindings,
    mm::Mm,
    new_mutex,
    prelude::*,
    sync::{
        atomic::{Atomic, Relaxed},
        Arc, Mutex,
    },
};

/// Longest `late_invalidate` delay accepted, in microseconds.
pub(crate) const MAX_LATE_INVALIDATE_US: u64 = 1_000_000;

/// See the module documentation.
#[pin_data]
pub(crate) struct Shared {
    #[pin]
    pub(crate) events: EventLog,
    #[pin]
    bound: Mutex<KVec<Arc<Binding>>>,
    late_invalidate_us: Atomic<u64>,
    corrupt_copy: Atomic<bool>,
    /// The `skip_invalidate` injection: every context ignores the kernel's
    /// invalidations (the oracles' self-tests).
    skip_invalidate: Atomic<bool>,
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
                skip_invalidate: Atomic::new(false),
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

    /// Every context bound to `mm`; `-ENOMEM` if the list cannot be
    /// allocated (never a partial list).
    pub(crate) fn bound_to(&self, mm: &Mm) -> Result<KVec<Arc<Binding>>> {
        let bound = self.bound.lock();
        let mut out = KVec::new();
        for b in bound.iter().filter(|b| b.is_bound_to(mm)) {
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

    /// Whether devices ignore the kernel's invalidations
    /// (`skip_invalidate` injection).
    pub(crate) fn skip_invalidate(&self) -> bool {
        self.skip_invalidate.load(Relaxed)
    }

    /// Sets the `skip_invalidate` injection.
    pub(crate) fn set_skip_invalidate(&self, on: bool) {
        self.skip_invalidate.store(on, Relaxed);
    }
}
