// SPDX-License-Identifier: GPL-2.0

//! Device counters, global (`/sys/kernel/debug/secmmu/stats`) and per
//! context (`/sys/kernel/debug/secmmu/ctx/<id>/stats`), printed one
//! `name value` per line like `/proc/vmstat`. The order is that of
//! `enum secmmu_stat` in `include/uapi/secmmu.h`, which `SECMMU_IOCTL_GET_STATS`
//! returns; `Documentation/reference.rst` says what each counts.

use crate::mm_bindings as b;
use core::fmt;
use kernel::sync::atomic::{Atomic, Relaxed};

/// Number of counters.
pub(crate) const NR_STATS: usize = b::secmmu_stat_SECMMU_NR_STATS as usize;

/// Counter names, in `enum secmmu_stat` order (the array length checks the
/// count against the header).
const NAMES: [&str; NR_STATS] = [
    "binds",
    "unbinds",
    "invalidations",
    "invalidated_entries",
    "full_flushes",
    "tlb_hits",
    "tlb_misses",
    "tlb_fills",
    "tlb_evictions",
    "fill_retries",
    "device_writes",
    "device_reads",
    "device_faults",
    "stream_writes",
    "lost_writes",
    "huge_fills",
    "stale_accesses",
    "thp_migrations",
    "thp_migration_failures",
    "late_invalidations_caught",
    "thp_verify_failures",
    "freed_page_accesses",
];

/// A counter's index in `enum secmmu_stat`.
#[derive(Clone, Copy)]
pub(crate) struct Stat(usize);

macro_rules! stat_consts {
    ($($c:ident => $v:ident),* $(,)?) => {
        impl Stat {
            $(
                #[doc = concat!("`", stringify!($v), "`")]
                pub(crate) const $c: Stat = Stat(b::$v as usize);
            )*
        }
    };
}

stat_consts! {
    BINDS => secmmu_stat_SECMMU_STAT_BINDS,
    UNBINDS => secmmu_stat_SECMMU_STAT_UNBINDS,
    INVALIDATIONS => secmmu_stat_SECMMU_STAT_INVALIDATIONS,
    INVALIDATED_ENTRIES => secmmu_stat_SECMMU_STAT_INVALIDATED_ENTRIES,
    FULL_FLUSHES => secmmu_stat_SECMMU_STAT_FULL_FLUSHES,
    TLB_HITS => secmmu_stat_SECMMU_STAT_TLB_HITS,
    TLB_MISSES => secmmu_stat_SECMMU_STAT_TLB_MISSES,
    TLB_FILLS => secmmu_stat_SECMMU_STAT_TLB_FILLS,
    TLB_EVICTIONS => secmmu_stat_SECMMU_STAT_TLB_EVICTIONS,
    FILL_RETRIES => secmmu_stat_SECMMU_STAT_FILL_RETRIES,
    DEVICE_WRITES => secmmu_stat_SECMMU_STAT_DEVICE_WRITES,
    DEVICE_READS => secmmu_stat_SECMMU_STAT_DEVICE_READS,
    DEVICE_FAULTS => secmmu_stat_SECMMU_STAT_DEVICE_FAULTS,
    STREAM_WRITES => secmmu_stat_SECMMU_STAT_STREAM_WRITES,
    LOST_WRITES => secmmu_stat_SECMMU_STAT_LOST_WRITES,
    HUGE_FILLS => secmmu_stat_SECMMU_STAT_HUGE_FILLS,
    STALE_ACCESSES => secmmu_stat_SECMMU_STAT_STALE_ACCESSES,
    THP_MIGRATIONS => secmmu_stat_SECMMU_STAT_THP_MIGRATIONS,
    THP_MIGRATION_FAILURES => secmmu_stat_SECMMU_STAT_THP_MIGRATION_FAILURES,
    LATE_INVALIDATIONS_CAUGHT => secmmu_stat_SECMMU_STAT_LATE_INVALIDATIONS_CAUGHT,
    THP_VERIFY_FAILURES => secmmu_stat_SECMMU_STAT_THP_VERIFY_FAILURES,
    FREED_PAGE_ACCESSES => secmmu_stat_SECMMU_STAT_FREED_PAGE_ACCESSES,
}

/// A set of counters.
pub(crate) struct Stats {
    counters: [Atomic<u64>; NR_STATS],
}

/// The module-wide counters, summed over every context that ever existed.
pub(crate) static GLOBAL: Stats = Stats::new();

impl Stats {
    /// All counters at zero.
    pub(crate) const fn new() -> Self {
        Self {
            counters: [const { Atomic::new(0) }; NR_STATS],
        }
    }

    /// Adds `n` to counter `s` here and in [`GLOBAL`].
    pub(crate) fn add(&self, s: Stat, n: u64) {
        if let Some(c) = self.counters.get(s.0) {
            c.fetch_add(n, Relaxed);
        }
        if let Some(c) = GLOBAL.counters.get(s.0) {
            c.fetch_add(n, Relaxed);
        }
    }

    /// Adds one to counter `s` in [`GLOBAL`] only (helper counters).
    pub(crate) fn inc_global(s: Stat) {
        if let Some(c) = GLOBAL.counters.get(s.0) {
            c.fetch_add(1, Relaxed);
        }
    }

    /// Adds one to counter `s` here and in [`GLOBAL`].
    pub(crate) fn inc(&self, s: Stat) {
        self.add(s, 1);
    }

    /// A snapshot of every counter, in `enum secmmu_stat` order.
    pub(crate) fn snapshot(&self) -> [u64; NR_STATS] {
        let mut out = [0; NR_STATS];
        for (o, c) in out.iter_mut().zip(self.counters.iter()) {
            *o = c.load(Relaxed);
        }
        out
    }

    /// Prints the counters as `name value` lines.
    pub(crate) fn show(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (name, v) in NAMES.iter().zip(self.snapshot()) {
            writeln!(f, "{name} {v}")?;
        }
        Ok(())
    }
}
