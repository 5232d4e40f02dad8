// SPDX-License-Identifier: GPL-2.0

//! Bindings for `linux/migrate.h` and secmmu's C helpers.
//!
//! Generated at build time by `scripts/gen-bindings.sh` with the kernel's own
//! bindgen flags. Only items that [`kernel::bindings`] lacks are generated
//! here; every type they mention (`mm_struct`, `vm_area_struct`, ...) is the
//! kernel crate's own, so values pass between the two without casts. The
//! `mmu_notifier` types and functions are already in [`kernel::bindings`]
//! and are re-exported from there.

#![allow(
    dead_code,
    improper_ctypes,
    missing_docs,
    non_camel_case_types,
    non_snake_case,
    non_upper_case_globals,
    unreachable_pub,
    unsafe_op_in_unsafe_fn,
    clippy::all,
    clippy::undocumented_unsafe_blocks
)]

use kernel::ffi;
use pin_init::MaybeZeroable;

include!("mm_bindings_generated.rs");
