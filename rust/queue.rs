// SPDX-License-Identifier: GPL-2.0

//! The device engine's workqueue: its own (unbound) queue, so module exit
//! can drain every device access before the code goes away.

use crate::mm_bindings as b;
use kernel::{bindings, prelude::*, sync::SetOnce, workqueue::Queue};

/// A workqueue allocated by [`EngineQueue::new`] and destroyed on drop.
///
/// # Invariants
///
/// `0` is a valid workqueue pointer from `alloc_workqueue()`.
pub(crate) struct EngineQueue(*mut bindings::workqueue_struct);

// SAFETY: a workqueue may be used and destroyed from any task.
unsafe impl Send for EngineQueue {}
// SAFETY: workqueue operations are thread-safe.
unsafe impl Sync for EngineQueue {}

/// The engine's queue, once the module has started.
static ENGINE: SetOnce<usize> = SetOnce::new();

impl EngineQueue {
    /// Allocates the engine's workqueue and publishes it to [`engine`].
    pub(crate) fn new() -> Result<Self> {
        // SAFETY: no preconditions; may sleep (module init).
        let wq = unsafe { b::secmmu_alloc_wq() };
        if wq.is_null() {
            return Err(ENOMEM);
        }
        ENGINE.populate(wq as usize);
        // INVARIANT: `wq` is a valid workqueue.
        Ok(Self(wq.cast()))
    }
}

impl Drop for EngineQueue {
    fn drop(&mut self) {
        // SAFETY: valid workqueue (type invariant), destroyed once; this
        // drains work still queued or running. Module exit: may sleep.
        unsafe { bindings::destroy_workqueue(self.0) };
        // The drained work may have dropped the last reference on a
        // context (a killed job or stream outlives its file), so only now
        // is every notifier of the module unregistered.
        // SAFETY: no preconditions; it waits for pending notifier frees
        // (SRCU callbacks) so none runs this module's code after unload.
        unsafe { bindings::mmu_notifier_synchronize() };
    }
}

/// The engine's queue.
///
/// Only called from contexts that exist while the module is live (open
/// files hold a module reference), after [`EngineQueue::new`].
pub(crate) fn engine() -> &'static Queue {
    let wq = ENGINE.as_ref().copied().unwrap_or(0);
    // SAFETY: the queue was published by `EngineQueue::new` at module init
    // and is destroyed only at module exit, when no context is left. It is
    // never null once a file can be opened (init publishes it first).
    unsafe { Queue::from_raw(wq as *const bindings::workqueue_struct) }
}
