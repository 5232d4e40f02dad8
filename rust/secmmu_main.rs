// SPDX-License-Identifier: GPL-2.0

//! secmmu: a test device for secondary MMUs that share the CPU page tables.
//!
//! - [`mmu_notifier`]: a safe abstraction over `struct mmu_notifier` with
//!   only the secondary-TLB callback.
//! - [`engine`], [`tlb`], [`job`], [`stream`]: the fake SVA device that
//!   shares the process page tables and caches translations without page
//!   references.
//! - [`device`]: `/dev/secmmu`, one device context per open file.
//! - `/sys/kernel/debug/secmmu/`: `version`, `stats`, `ctx/<id>/stats`,
//!   `migrate_thp` ([`migrate`]), `inject`, `events` ([`events`]),
//!   `invalidate_hist` ([`histogram`]) and `bench_fill` ([`bench`]); the
//!   control files are created in [`control`].
//!
//! `Documentation/reference.rst` in the project describes the interface.

use kernel::{
    debugfs::{Dir, File},
    miscdevice::{MiscDeviceOptions, MiscDeviceRegistration},
    prelude::*,
    sync::Arc,
};

mod bench;
mod completion;
mod control;
mod device;
mod engine;
mod events;
mod histogram;
mod job;
mod migrate;
mod mm_bindings;
mod mmu_notifier;
mod queue;
mod shared;
mod stats;
mod stream;
mod tlb;

/// The module's version, as shown by `/sys/kernel/debug/secmmu/version`.
const VERSION: &str = "0.2.0";

module! {
    type: SecMmuModule,
    name: "secmmu",
    authors: ["The secmmu developers"],
    description: "Test device for secondary MMUs sharing the CPU page tables",
    license: "GPL",
}

/// Module state. Fields drop in order: the device node goes first (no new
/// contexts; open files hold a module reference, so none is left), the
/// debugfs files next, and the engine's queue last (drained, then
/// `mmu_notifier_synchronize()`: see `queue.rs`).
#[pin_data]
pub(crate) struct SecMmuModule {
    #[pin]
    misc: MiscDeviceRegistration<device::Context>,
    #[pin]
    _version: File<()>,
    #[pin]
    _stats: File<()>,
    _controls: Pin<KBox<control::Files>>,
    shared: Arc<shared::Shared>,
    ctx_dir: Dir,
    _debugfs: Dir,
    _queue: queue::EngineQueue,
}

/// Formats the `version` file: the module version and the ABI facts a user
/// checks first when a test misbehaves.
fn show_version(_: &(), f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
    // SAFETY: `secmmu_hpage_pmd_order` only returns a compile-time constant.
    let order = unsafe { mm_bindings::secmmu_hpage_pmd_order() };
    writeln!(f, "secmmu {VERSION}")?;
    writeln!(f, "abi {}", mm_bindings::SECMMU_ABI_VERSION)?;
    writeln!(f, "thp_order {order}")?;
    writeln!(
        f,
        "migrate_vma_select {:#x}",
        mm_bindings::migrate_vma_direction_MIGRATE_VMA_SELECT_SYSTEM
            | mm_bindings::migrate_vma_direction_MIGRATE_VMA_SELECT_COMPOUND
    )
}

fn show_global_stats(_: &(), f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
    stats::GLOBAL.show(f)
}

impl SecMmuModule {
    /// The module state that owns `misc`.
    pub(crate) fn from_misc(misc: &MiscDeviceRegistration<device::Context>) -> &Self {
        let ptr: *const MiscDeviceRegistration<device::Context> = misc;
        // SAFETY: the only `MiscDeviceRegistration<device::Context>` is the
        // `misc` field of the module state, which outlives every file
        // opened through it (the files hold a module reference).
        unsafe { &*kernel::container_of!(ptr.cast_mut(), Self, misc) }
    }

    /// The state shared by every context.
    pub(crate) fn shared(&self) -> &Arc<shared::Shared> {
        &self.shared
    }

    /// `/sys/kernel/debug/secmmu/ctx/`.
    pub(crate) fn ctx_dir(&self) -> &Dir {
        &self.ctx_dir
    }
}

impl kernel::InPlaceModule for SecMmuModule {
    fn init(_module: &'static ThisModule) -> impl PinInit<Self, Error> {
        let debugfs = Dir::new(c"secmmu");
        let ctx_dir = debugfs.subdir(c"ctx");
        let shared = shared::Shared::new();
        let controls = match &shared {
            Ok(s) => control::Files::new(&debugfs, s),
            Err(e) => Err(*e),
        };
        try_pin_init!(Self {
            _queue: queue::EngineQueue::new()?,
            shared: shared?,
            _controls: controls?,
            _version <- debugfs.read_callback_file(c"version", (), &show_version),
            _stats <- debugfs.read_callback_file(c"stats", (), &show_global_stats),
            ctx_dir,
            _debugfs: debugfs,
            misc <- MiscDeviceRegistration::register(MiscDeviceOptions { name: c"secmmu" }),
        })
    }
}
