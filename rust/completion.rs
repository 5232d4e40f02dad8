// SPDX-License-Identifier: GPL-2.0

//! A completion whose waits are killable, for the device's waits on its
//! engine: a submitter that gets a fatal signal stops waiting, asks the
//! work to stop (its cancel flag) and returns `-EINTR`, instead of sitting
//! in D state until the work is done.
//!
//! C header: [`include/linux/completion.h`](srctree/include/linux/completion.h)

use kernel::{
    bindings,
    prelude::*,
    sync::atomic::{Atomic, Relaxed},
    types::Opaque,
};

/// A `struct completion`, completed once with [`Done::complete_all`].
#[pin_data]
pub(crate) struct Done {
    #[pin]
    inner: Opaque<bindings::completion>,
}

// SAFETY: a completion may be completed and waited for from any task.
unsafe impl Send for Done {}
// SAFETY: the C functions called on it synchronise internally.
unsafe impl Sync for Done {}

impl Done {
    /// A new, not yet completed completion.
    pub(crate) fn new() -> impl PinInit<Self> {
        pin_init!(Self {
            inner <- Opaque::ffi_init(|slot: *mut bindings::completion| {
                // SAFETY: `slot` is valid for writes and not yet initialised.
                unsafe { bindings::init_completion(slot) };
            }),
        })
    }

    /// Completes it for every current and future waiter.
    pub(crate) fn complete_all(&self) {
        // SAFETY: `inner` was initialised by `new` and is pinned.
        unsafe { bindings::complete_all(self.inner.get()) };
    }

    /// Waits until completed, or until the task gets a fatal signal:
    /// `-EINTR` then. May sleep.
    pub(crate) fn wait_killable(&self) -> Result {
        // SAFETY: `inner` was initialised by `new` and is pinned.
        let r = unsafe { bindings::wait_for_completion_killable(self.inner.get()) };
        if r == 0 {
            Ok(())
        } else {
            Err(EINTR)
        }
    }

    /// Waits killably for work that checks `cancel` per page: a killed
    /// caller sets it and returns `-EINTR`, and the work, which owns what
    /// it touches, ends on its own.
    pub(crate) fn wait_or_cancel(&self, cancel: &Atomic<bool>) -> Result {
        self.wait_killable()
            .inspect_err(|_| cancel.store(true, Relaxed))
    }
}
