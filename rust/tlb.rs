// SPDX-License-Identifier: GPL-2.0

//! The device's software TLB: cached VA→PFN translations at 4 KiB and
//! 2 MiB granularity, with a bounded capacity and clock replacement.
//!
//! Entries hold **no page reference**: like an ATS/SVA device, the TLB only
//! remembers a PFN, and correctness rests on the kernel invalidating it (the
//! `mmu_notifier` secondary-TLB callback) before it frees or moves the page.
//!
//! The TLB is a red-black tree keyed by virtual address, so a range
//! invalidation visits only the entries overlapping the range (plus at most
//! the 4 KiB entries of the first 2 MiB block), not the whole capacity.
//! Insertion needs a node allocated beforehand ([`NodeReservation`]) so that
//! the locked part never allocates.

use kernel::{
    prelude::*,
    rbtree::{RBTree, RBTreeNodeReservation},
};

/// Size of a base page.
pub(crate) const PAGE_SIZE: usize = 4096;
/// Size of a PMD-mapped transparent huge page.
pub(crate) const HUGE_SIZE: usize = 2 << 20;

/// The TLB capacity, in entries, of a context bound with `tlb_entries` 0.
pub(crate) const DEFAULT_CAPACITY: usize = 512;
/// The largest capacity a context may ask for.
pub(crate) const MAX_CAPACITY: usize = 65536;

/// One cached translation.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Translation {
    /// Virtual address of the first byte the entry maps (aligned to `size`).
    pub(crate) va: usize,
    /// PFN of the first page the entry maps.
    pub(crate) pfn: usize,
    /// `PAGE_SIZE` or `HUGE_SIZE`.
    pub(crate) size: usize,
    /// Filled for a write: device writes may use it.
    pub(crate) writable: bool,
    /// 0 for a live entry. Otherwise the notifier already asked to drop it
    /// and only `late_invalidate` injection keeps it, until this time
    /// (`ktime_get()` ns).
    pub(crate) stale_until: u64,
}

impl Translation {
    /// The PFN backing `va`, which must lie inside the entry.
    pub(crate) fn pfn_of(&self, va: usize) -> usize {
        self.pfn + (va - self.va) / PAGE_SIZE
    }

    fn overlaps(&self, start: usize, end: usize) -> bool {
        self.va < end && start < self.va + self.size
    }
}

/// A node allocated ahead of [`Tlb::insert`], outside the TLB lock.
pub(crate) type NodeReservation = RBTreeNodeReservation<usize, Translation>;

/// Allocates a node for a later [`Tlb::insert`]. May sleep.
pub(crate) fn reserve() -> Result<NodeReservation> {
    RBTreeNodeReservation::new(GFP_KERNEL)
}

/// The tree key of an entry: its VA, with bit 0 set for huge entries so a
/// 4 KiB and a 2 MiB entry at the same address never collide.
fn key(va: usize, size: usize) -> usize {
    va | usize::from(size == HUGE_SIZE)
}

/// The software TLB.
///
/// # Invariants
///
/// - `len` is the number of entries in `map`, and `len <= capacity`.
/// - Every entry `e` is stored under `key(e.va, e.size)`, `e.size` is
///   `PAGE_SIZE` or `HUGE_SIZE`, and `e.va` is aligned to `e.size`.
pub(crate) struct Tlb {
    map: RBTree<usize, Translation>,
    len: usize,
    capacity: usize,
    /// Clock hand for replacement: the next eviction takes the first entry
    /// at or after this key.
    hand: usize,
}

/// What an insertion did.
pub(crate) struct Inserted {
    /// An entry was evicted to make room.
    pub(crate) evicted: bool,
}

impl Tlb {
    /// An empty TLB holding at most `capacity` entries (`1..=MAX_CAPACITY`).
    pub(crate) fn new(capacity: usize) -> Self {
        // INVARIANT: empty map, len 0.
        Self {
            map: RBTree::new(),
            len: 0,
            capacity: capacity.clamp(1, MAX_CAPACITY),
            hand: 0,
        }
    }

    /// Number of cached entries.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Capacity in entries.
    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    /// Looks up the translation covering `va`, huge entries first. A stale
    /// entry whose injected delay is over (`now` past `stale_until`) is
    /// dropped on the way.
    pub(crate) fn lookup(&mut self, va: usize, now: u64) -> Option<Translation> {
        for k in [
            key(va & !(HUGE_SIZE - 1), HUGE_SIZE),
            key(va & !(PAGE_SIZE - 1), PAGE_SIZE),
        ] {
            let Some(t) = self.map.get(&k).copied() else {
                continue;
            };
            if t.stale_until != 0 && now >= t.stale_until {
                if self.map.remove(&k).is_some() {
                    // INVARIANT: one entry left the map.
                    self.len -= 1;
                }
                continue;
            }
            return Some(t);
        }
        None
    }

    /// Marks the live entries overlapping `[start, end)` stale until
    /// `deadline` instead of dropping them (`late_invalidate` injection);
    /// returns how many.
    pub(crate) fn mark_stale(&mut self, start: usize, end: usize, deadline: u64) -> usize {
        let mut next = start & !(HUGE_SIZE - 1);
        let mut marked = 0;
        while next < end {
            let Some(mut cursor) = self.map.cursor_lower_bound_mut(&next) else {
                break;
            };
            let (k, t) = cursor.current_mut();
            let k = *k;
            if t.va >= end {
                break;
            }
            if t.overlaps(start, end) && t.stale_until == 0 {
                t.stale_until = deadline;
                marked += 1;
            }
            next = k + 1;
        }
        marked
    }

    /// The latest `stale_until` of the entries overlapping `[start, end)`,
    /// 0 if none is stale.
    pub(crate) fn stale_deadline(&self, start: usize, end: usize) -> u64 {
        let mut latest = 0;
        let mut next = start & !(HUGE_SIZE - 1);
        while next < end {
            let Some(cursor) = self.map.cursor_lower_bound(&next) else {
                break;
            };
            let (&k, t) = cursor.current();
            if t.va >= end {
                break;
            }
            if t.overlaps(start, end) {
                latest = latest.max(t.stale_until);
            }
            next = k + 1;
        }
        latest
    }

    /// Caches `t`, replacing an entry for the same address and size, and
    /// evicting one entry if the TLB is full. Never allocates.
    pub(crate) fn insert(&mut self, t: Translation, node: NodeReservation) -> Inserted {
        let k = key(t.va, t.size);
        if let Some(old) = self.map.get_mut(&k) {
            *old = t;
            return Inserted { evicted: false };
        }
        let evicted = self.len == self.capacity && self.evict_one();
        self.map.insert(node.into_node(k, t));
        // INVARIANT: a new key was added; `evict_one` made room if full.
        self.len += 1;
        Inserted { evicted }
    }

    /// Removes the entry under the clock hand and advances the hand.
    fn evict_one(&mut self) -> bool {
        let start = self.hand;
        let cursor = match self.map.cursor_lower_bound_mut(&start) {
            Some(c) => Some(c),
            None => self.map.cursor_front_mut(),
        };
        let Some(cursor) = cursor else {
            return false;
        };
        let k = *cursor.current().0;
        let (_, node) = cursor.remove_current();
        drop(node);
        self.hand = k.wrapping_add(1);
        // INVARIANT: one entry left the map.
        self.len -= 1;
        true
    }

    /// Drops every entry overlapping `[start, end)`; returns how many.
    ///
    /// Visits the overlapping entries and at most the non-overlapping
    /// 4 KiB entries in the 2 MiB block holding `start`.
    pub(crate) fn invalidate(&mut self, start: usize, end: usize) -> usize {
        let mut next = start & !(HUGE_SIZE - 1);
        let mut removed = 0;
        while next < end {
            let Some(cursor) = self.map.cursor_lower_bound_mut(&next) else {
                break;
            };
            let (&k, t) = cursor.current();
            if t.va >= end {
                break;
            }
            if t.overlaps(start, end) {
                let (_, node) = cursor.remove_current();
                drop(node);
                removed += 1;
            }
            next = k + 1;
        }
        // INVARIANT: exactly `removed` entries left the map.
        self.len -= removed;
        removed
    }

    /// Drops every entry; returns how many there were.
    pub(crate) fn flush(&mut self) -> usize {
        let n = self.len;
        // INVARIANT: the map is replaced by an empty one.
        self.map = RBTree::new();
        self.len = 0;
        n
    }
}
