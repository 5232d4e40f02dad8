// SPDX-License-Identifier: GPL-2.0

//! secmmu: a test device for secondary MMUs that share the CPU page tables.
//!
//! The module registers a debugfs directory, `/sys/kernel/debug/secmmu/`,
//! whose files report the module and let tests drive it. See
//! `Documentation/secmmu.rst` in the project for the whole interface.

use kernel::{
    bindings,
    debugfs::{Dir, File},
    prelude::*,
};

mod mm_bindings;

/// The module's version, as shown by `/sys/kernel/debug/secmmu/version`.
const VERSION: &str = "0.1.0";

module! {
    type: SecMmuModule,
    name: "secmmu",
    authors: ["The secmmu developers"],
    description: "Test device for secondary MMUs sharing the CPU page tables",
    license: "GPL",
}

/// Module state: the debugfs directory and the files in it.
#[pin_data(PinnedDrop)]
struct SecMmuModule {
    #[pin]
    _version: File<()>,
    _debugfs: Dir,
}

/// Formats the `version` file: the module version and the ABI facts a user
/// checks first when a test misbehaves.
fn show_version(_: &(), f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
    // SAFETY: `secmmu_hpage_pmd_order` only returns a compile-time constant.
    let order = unsafe { mm_bindings::secmmu_hpage_pmd_order() };
    writeln!(f, "secmmu {VERSION}")?;
    writeln!(f, "thp_order {order}")?;
    writeln!(
        f,
        "migrate_vma_select {:#x}",
        mm_bindings::migrate_vma_direction_MIGRATE_VMA_SELECT_SYSTEM
            | mm_bindings::migrate_vma_direction_MIGRATE_VMA_SELECT_COMPOUND
    )
}

impl kernel::InPlaceModule for SecMmuModule {
    fn init(_module: &'static ThisModule) -> impl PinInit<Self, Error> {
        let debugfs = Dir::new(c"secmmu");
        try_pin_init!(Self {
            _version <- debugfs.read_callback_file(c"version", (), &show_version),
            _debugfs: debugfs,
        })
    }
}

#[pinned_drop]
impl PinnedDrop for SecMmuModule {
    fn drop(self: Pin<&mut Self>) {
        // SAFETY: `mmu_notifier_synchronize` has no preconditions; it waits
        // for pending notifier frees (SRCU callbacks) so none runs this
        // module's code after it is unloaded. Module exit may sleep.
        unsafe { bindings::mmu_notifier_synchronize() };
    }
}
