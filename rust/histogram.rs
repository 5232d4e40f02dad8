// SPDX-License-Identifier: GPL-2.0

//! How long the secondary-TLB callback takes:
//! `/sys/kernel/debug/secmmu/invalidate_hist`.
//!
//! A log2 histogram of callback durations in nanoseconds, over every
//! context: bucket `i` counts callbacks that took `[2^i, 2^(i+1))` ns
//! (bucket 0 also counts 0 ns). Reading prints `count sum_ns` and one
//! `<lower bound ns> <count>` line per bucket; writing `clear` empties it.
//! `make bench` uses it to show that invalidating a small range costs the
//! same whatever the TLB holds elsewhere.

use core::fmt;
use kernel::sync::atomic::{Atomic, Relaxed};

/// Buckets: up to 2^31 ns (about 2 s) and above, in the last.
pub(crate) const BUCKETS: usize = 32;

/// A log2 histogram of durations.
pub(crate) struct Histogram {
    buckets: [Atomic<u64>; BUCKETS],
    count: Atomic<u64>,
    sum_ns: Atomic<u64>,
}

/// Durations of the secondary-TLB callback.
pub(crate) static INVALIDATE: Histogram = Histogram::new();

impl Histogram {
    /// An empty histogram.
    pub(crate) const fn new() -> Self {
        Self {
            buckets: [const { Atomic::new(0) }; BUCKETS],
            count: Atomic::new(0),
            sum_ns: Atomic::new(0),
        }
    }

    /// The bucket of a duration: its log2, capped at the last bucket.
    pub(crate) fn bucket(ns: u64) -> usize {
        let log2 = 63 - (ns | 1).leading_zeros() as usize;
        log2.min(BUCKETS - 1)
    }

    /// Records one duration. Never sleeps or allocates.
    pub(crate) fn record(&self, ns: u64) {
        if let Some(b) = self.buckets.get(Self::bucket(ns)) {
            b.fetch_add(1, Relaxed);
        }
        self.count.fetch_add(1, Relaxed);
        self.sum_ns.fetch_add(ns, Relaxed);
    }

    /// Empties the histogram (records racing with it may survive).
    pub(crate) fn clear(&self) {
        for b in &self.buckets {
            b.store(0, Relaxed);
        }
        self.count.store(0, Relaxed);
        self.sum_ns.store(0, Relaxed);
    }

    /// Prints `count N`, `sum_ns N` and one `<lower bound ns> <count>` line
    /// per bucket.
    pub(crate) fn show(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "count {}", self.count.load(Relaxed))?;
        writeln!(f, "sum_ns {}", self.sum_ns.load(Relaxed))?;
        for (i, b) in self.buckets.iter().enumerate() {
            let lower: u64 = if i == 0 { 0 } else { 1 << i };
            writeln!(f, "{lower} {}", b.load(Relaxed))?;
        }
        Ok(())
    }
}
