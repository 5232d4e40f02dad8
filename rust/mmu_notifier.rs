// SPDX-License-Identifier: GPL-2.0

//! A safe abstraction over `struct mmu_notifier` for secondary MMUs that
//! share the CPU page tables.
//!
//! C header: [`include/linux/mmu_notifier.h`](srctree/include/linux/mmu_notifier.h)
//!
//! A device of this class (IOMMU SVA, ATS, a GPU walking the process page
//! tables) has no page tables of its own to keep in sync: it walks the CPU's
//! and caches the results in a TLB. All it needs from the kernel is to be
//! told when the CPU TLB is flushed so it can drop the same translations,
//! which is what `->arch_invalidate_secondary_tlbs` does (it is called from
//! the architecture's TLB-flush code, e.g. x86 `flush_tlb_mm_range()`, since
//! Linux 6.6; before that the hook was `->invalidate_range`).
//!
//! The ops table built here therefore sets **only**
//! `arch_invalidate_secondary_tlbs` and `release`, never
//! `invalidate_range_start`/`invalidate_range_end`. That is the point: a
//! notifier with range_start/end would hear of every change *before* the
//! page tables change and would hide exactly the bug class this project
//! tests for (a page copied before the secondary TLB was invalidated, as in
//! "mm: thp: fix mmu_notifier in migrate_misplaced_transhuge_page()"). The
//! kernel itself refuses a notifier that sets both kinds
//! (`__mmu_notifier_register()` warns and returns `-EINVAL`).
//!
//! # Registration and lifetime
//!
//! [`Registration`] uses `mmu_notifier_register()` /
//! `mmu_notifier_unregister()`, not `mmu_notifier_get_locked()` /
//! `mmu_notifier_put()`:
//!
//! - Each device context owns its own subscription, with its own TLB, so
//!   there is nothing to share per mm (the sharing `get`/`put` provides).
//! - `mmu_notifier_unregister()` calls `release` if the mm has not already
//!   done so and then waits for every callback in flight (SRCU). When
//!   [`Registration`] is dropped, no callback can run any more and the
//!   implementor can be freed at once, in the same call. With `put` the free
//!   is deferred to an SRCU callback that runs module code later.
//! - `mmu_notifier_register()` takes a reference on the `mm_struct`
//!   (`mmgrab`) and `mmu_notifier_unregister()` drops it, so the mm outlives
//!   the registration even after the process has exited.
//!
//! Module exit still calls `mmu_notifier_synchronize()` (after draining
//! the engine's queue, `queue.rs`; see the crate
//! root), which costs nothing and keeps the module correct should a `put`
//! user appear.

use core::marker::PhantomData;
use kernel::{bindings, error::to_result, ffi, mm::MmWithUser, prelude::*, types::Opaque};

/// A secondary TLB that the kernel must invalidate along with the CPU TLB.
///
/// # Context
///
/// Both callbacks may run in atomic context, with page-table spinlocks held
/// and preemption possibly disabled: they must not sleep, must not allocate
/// with sleeping flags, and must not take `mmap_lock`.
pub(crate) trait SecondaryTlb: Send + Sync {
    /// The CPU TLB for `[start, end)` of the mm has been (or is being)
    /// flushed: drop every cached translation overlapping it. When this
    /// returns, no device access through such a translation may be in
    /// flight.
    fn invalidate_secondary_tlbs(&self, start: usize, end: usize);

    /// The mm is being torn down (`exit_mmap()`) or the registration is
    /// being dropped: stop every access to the mm.
    ///
    /// May be called more than once, and twice at the same time:
    /// `exit_mmap()` (`mn_hlist_release()`) calls it for every subscription
    /// still on the mm, and a concurrent `mmu_notifier_unregister()` calls
    /// it too unless `exit_mmap()` already unhooked the subscription. It
    /// must be idempotent and safe to run concurrently with itself.
    fn release(&self);
}

/// An `mmu_notifier` registered on an mm, delivering its callbacks to `T`.
///
/// # Invariants
///
/// - `notifier` is registered on `notifier.mm` with the ops table
///   [`OpsTable::<T>::OPS`] from the end of initialisation until
///   [`PinnedDrop::drop`], which unregisters it exactly once.
/// - While registered, `notifier.mm` holds an `mmgrab` reference taken by
///   `mmu_notifier_register()`.
/// - `data` is initialised before `notifier` is registered and dropped only
///   after it is unregistered, so every callback sees a live `T`.
#[repr(C)]
#[pin_data(PinnedDrop)]
pub(crate) struct Registration<T: SecondaryTlb> {
    #[pin]
    data: T,
    #[pin]
    notifier: Opaque<bindings::mmu_notifier>,
}

// SAFETY: `Registration` only hands out `&T` (`T: Sync`), and the C side
// allows `mmu_notifier_unregister()` from any task.
unsafe impl<T: SecondaryTlb> Send for Registration<T> {}
// SAFETY: All `&self` methods only read `T` through `&T` (`T: Sync`).
unsafe impl<T: SecondaryTlb> Sync for Registration<T> {}

impl<T: SecondaryTlb> Registration<T> {
    /// Initialises `data` and registers a notifier for it on `mm`.
    ///
    /// Takes `mm`'s `mmap_lock` for writing: may sleep.
    pub(crate) fn register<'a>(
        mm: &'a MmWithUser,
        data: impl PinInit<T, Error> + 'a,
    ) -> impl PinInit<Self, Error> + 'a
    where
        T: 'a,
    {
        try_pin_init!(Self {
            data <- data,
            notifier <- Opaque::try_ffi_init(move |slot: *mut bindings::mmu_notifier| {
                // SAFETY: `slot` is valid for writes; a zeroed
                // `mmu_notifier` with `ops` set is what the C API expects.
                unsafe {
                    slot.write(pin_init::zeroed());
                    (*slot).ops = OpsTable::<T>::build();
                }
                // `slot` is pinned (it lives in `Self`, being pin-initialised)
                // and `drop` unregisters it before its memory goes away.
                // INVARIANT: on success the notifier is registered and the
                // mm grabbed; `data` was initialised above.
                // SAFETY: as said; `mm` has a user (`MmWithUser`), as
                // `__mmu_notifier_register` requires.
                to_result(unsafe { bindings::mmu_notifier_register(slot, mm.as_raw()) })
            }),
        })
    }

    /// The implementor of the callbacks.
    pub(crate) fn data(&self) -> &T {
        &self.data
    }

    /// Recovers the registration from the C notifier pointer.
    ///
    /// # Safety
    ///
    /// `ptr` must be the `notifier` field of a live `Registration<T>`.
    unsafe fn from_raw<'a>(ptr: *mut bindings::mmu_notifier) -> &'a Self {
        let ptr = ptr.cast::<Opaque<bindings::mmu_notifier>>();
        // SAFETY: by the caller's contract `ptr` points at the `notifier`
        // field of a `Registration<T>`, so stepping back to the container
        // stays in the same allocation.
        let this = unsafe { kernel::container_of!(ptr, Self, notifier) };
        // SAFETY: the registration is live for the duration of a callback:
        // `drop` unregisters (waiting for callbacks in flight) first.
        unsafe { &*this }
    }
}

#[pinned_drop]
impl<T: SecondaryTlb> PinnedDrop for Registration<T> {
    fn drop(self: Pin<&mut Self>) {
        let notifier = self.notifier.get();
        // Unregistering calls `release` if the mm has not, waits for every
        // callback in flight and drops the `mmgrab` reference.
        // SAFETY: registered on `(*notifier).mm` (type invariant), not yet
        // unregistered, and this runs once, in process context (may sleep).
        unsafe { bindings::mmu_notifier_unregister(notifier, (*notifier).mm) };
    }
}

/// The C ops table for `T`, with trampolines into [`SecondaryTlb`].
struct OpsTable<T: SecondaryTlb>(PhantomData<T>);

impl<T: SecondaryTlb> OpsTable<T> {
    /// Only the secondary-TLB callback and `release`: see the module doc.
    const OPS: bindings::mmu_notifier_ops = bindings::mmu_notifier_ops {
        release: Some(Self::release),
        arch_invalidate_secondary_tlbs: Some(Self::invalidate_secondary_tlbs),
        ..pin_init::zeroed()
    };

    const fn build() -> &'static bindings::mmu_notifier_ops {
        &Self::OPS
    }

    /// # Safety
    ///
    /// Called by the mm core with a notifier registered through
    /// [`Registration::<T>::register`].
    unsafe extern "C" fn invalidate_secondary_tlbs(
        subscription: *mut bindings::mmu_notifier,
        _mm: *mut bindings::mm_struct,
        start: ffi::c_ulong,
        end: ffi::c_ulong,
    ) {
        // SAFETY: `subscription` belongs to a live `Registration<T>` (the
        // callback runs under SRCU, which `drop` waits for).
        let this = unsafe { Registration::<T>::from_raw(subscription) };
        this.data.invalidate_secondary_tlbs(start, end);
    }

    /// # Safety
    ///
    /// As for [`Self::invalidate_secondary_tlbs`].
    unsafe extern "C" fn release(
        subscription: *mut bindings::mmu_notifier,
        _mm: *mut bindings::mm_struct,
    ) {
        // SAFETY: as in `invalidate_secondary_tlbs`.
        let this = unsafe { Registration::<T>::from_raw(subscription) };
        this.data.release();
    }
}
