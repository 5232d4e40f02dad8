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
//! the locked part never allocates, and removal never frees: the callback
//! runs under page-table locks, so removed nodes go to a free list that the
//! device's own (process-context) paths reuse or free ([`Tlb::take_free`]).
//!
//! # Injected late invalidation
//!
//! For the `late_invalidate` injection the migration helper *arms* the TLB
//! with the range it migrates and the PFNs of the source folio. While armed
//! and collecting, the callback still removes every entry it is asked to,
//! but keeps the removed entries that map only that folio aside
//! ([`Tlb::invalidate`]). Once the helper holds the folio isolated and
//! referenced, it puts them back as *stale* entries ([`Tlb::reinstate`]):
//! the device then keeps using translations the kernel asked it to drop,
//! as a late secondary TLB would, but only into a page that cannot be
//! freed. [`Tlb::drain`] removes them all before the helper lets go of the
//! folio. Every other invalidation is honoured at once.

use core::ops::Range;
use kernel::{
    prelude::*,
    rbtree::{RBTree, RBTreeNode, RBTreeNodeReservation},
};

/// Size of a base page.
pub(crate) const PAGE_SIZE: usize = 4096;
/// Size of a PMD-mapped transparent huge page.
pub(crate) const HUGE_SIZE: usize = 2 << 20;

/// The TLB capacity, in entries, of a context bound with `tlb_entries` 0.
pub(crate) const DEFAULT_CAPACITY: usize = 512;
/// The largest capacity a context may ask for.
pub(crate) const MAX_CAPACITY: usize = 65536;

/// A page frame number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Pfn(pub(crate) usize);

/// Who a translation's page belonged to when the device filled it: its
/// folio, the kind of its mapping and its index (`secmmu_walk()`), for the
/// freed-page oracle (`secmmu_page_get()`). An identity, never
/// dereferenced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PageId(pub(crate) [usize; 3]);

/// One cached translation.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Translation {
    /// Virtual address of the first byte the entry maps (aligned to `size`).
    pub(crate) va: usize,
    /// PFN of the first page the entry maps.
    pub(crate) pfn: Pfn,
    /// `PAGE_SIZE` or `HUGE_SIZE`.
    pub(crate) size: usize,
    /// Filled for a write: device writes may use it.
    pub(crate) writable: bool,
    /// 0 for a live entry. Otherwise the notifier already asked to drop it
    /// and only `late_invalidate` injection keeps it, until this time
    /// (`ktime_get()` ns).
    pub(crate) stale_until: u64,
    /// The folio the page belonged to at fill time.
    pub(crate) id: PageId,
}

impl Translation {
    /// The PFN backing `va`, which must lie inside the entry.
    pub(crate) fn pfn_of(&self, va: usize) -> Pfn {
        Pfn(self.pfn.0 + (va - self.va) / PAGE_SIZE)
    }

    fn overlaps(&self, start: usize, end: usize) -> bool {
        self.va < end && start < self.va + self.size
    }

    /// The PFNs the entry maps.
    fn pfns(&self) -> Range<Pfn> {
        Pfn(self.pfn.0)..Pfn(self.pfn.0 + self.size / PAGE_SIZE)
    }
}

/// A node allocated ahead of [`Tlb::insert`], outside the TLB lock.
pub(crate) type NodeReservation = RBTreeNodeReservation<usize, Translation>;

/// Nodes removed from the TLB and not yet freed.
pub(crate) type FreeNodes = RBTree<usize, Translation>;

/// Allocates a node for a later [`Tlb::insert`]. May sleep.
pub(crate) fn reserve() -> Result<NodeReservation> {
    RBTreeNodeReservation::new(GFP_KERNEL)
}

/// The tree key of an entry: its VA, with bit 0 set for huge entries so a
/// 4 KiB and a 2 MiB entry at the same address never collide.
fn key(va: usize, size: usize) -> usize {
    va | usize::from(size == HUGE_SIZE)
}

/// What the helper armed the TLB with (`late_invalidate` injection).
struct Armed {
    /// The virtual range being migrated.
    va: Range<usize>,
    /// The source folio's PFNs.
    pfns: Range<Pfn>,
    /// Entries the callback removed that map only the folio, until
    /// [`Tlb::reinstate`] or [`Tlb::drain`].
    kept: FreeNodes,
    /// [`Tlb::reinstate`] ran: the callback keeps nothing aside any more.
    reinstated: bool,
}

/// The software TLB.
///
/// # Invariants
///
/// - `len` is the number of entries in `map`, and `len <= capacity`.
/// - Every entry `e` is stored under `key(e.va, e.size)`, `e.size` is
///   `PAGE_SIZE` or `HUGE_SIZE`, and `e.va` is aligned to `e.size`.
/// - `seq` changes on every removal of entries the kernel asked for
///   ([`Tlb::invalidate`], [`Tlb::flush`]); it is only read and written
///   under the lock that guards the `Tlb`.
/// - An entry with `stale_until != 0` maps only PFNs of the folio the TLB
///   is armed with, and exists only while it is armed.
pub(crate) struct Tlb {
    map: RBTree<usize, Translation>,
    len: usize,
    capacity: usize,
    /// Clock hand for replacement: the next eviction takes the first entry
    /// at or after this key.
    hand: usize,
    seq: u64,
    /// Removed nodes, freed or reused outside the callback, each under a
    /// key of its own (`park`).
    free: FreeNodes,
    /// The last key `park` gave.
    park_id: usize,
    armed: Option<Armed>,
}

/// What an insertion did.
pub(crate) struct Inserted {
    /// An entry was evicted to make room.
    pub(crate) evicted: bool,
}

/// Puts `node` on `list` under the unique key `id` (its translation is
/// kept: `reinstate` needs it). No allocation and no free: the node's box
/// is reused as it is, and no key can collide (so `insert` returns none).
fn park(
    list: &mut FreeNodes,
    id: &mut usize,
    t: Translation,
    node: RBTreeNode<usize, Translation>,
) {
    *id = id.wrapping_add(1);
    // A fresh counter value (2^63 removals to wrap) with the top bit set,
    // which no translation's key has (user addresses are below 2^63): no
    // node of any list, nor of a tree `flush` moved to the free list as it
    // was, has this key.
    drop(list.insert(node.into_reservation().into_node(*id | PARK_KEY, t)));
}

/// The bit that sets [`park`]'s keys apart from translations' keys.
const PARK_KEY: usize = 1 << (usize::BITS - 1);

impl Tlb {
    /// An empty TLB holding at most `capacity` entries (`1..=MAX_CAPACITY`).
    pub(crate) fn new(capacity: usize) -> Self {
        // INVARIANT: empty map, len 0, not armed.
        Self {
            map: RBTree::new(),
            len: 0,
            capacity: capacity.clamp(1, MAX_CAPACITY),
            hand: 0,
            seq: 0,
            free: RBTree::new(),
            park_id: 0,
            armed: None,
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

    /// The invalidation sequence number: a fill that saw it before its page
    /// walk inserts only if it is unchanged (see `engine.rs`).
    pub(crate) fn seq(&self) -> u64 {
        self.seq
    }

    /// The removed nodes, to be freed by the caller once it has dropped the
    /// lock (in process context), and one of them kept for reuse as the
    /// caller's next insertion.
    pub(crate) fn take_free(&mut self) -> (FreeNodes, Option<NodeReservation>) {
        let mut free = core::mem::replace(&mut self.free, RBTree::new());
        let node = free
            .cursor_front_mut()
            .map(|c| c.remove_current().1.into_reservation());
        (free, node)
    }

    /// Looks up the translation covering `va`, huge entries first. A stale
    /// entry whose injected delay is over (`now` past `stale_until`) is
    /// dropped on the way: the second value counts those (0 or 1).
    pub(crate) fn lookup(&mut self, va: usize, now: u64) -> (Option<Translation>, usize) {
        let mut expired = 0;
        for k in [
            key(va & !(HUGE_SIZE - 1), HUGE_SIZE),
            key(va & !(PAGE_SIZE - 1), PAGE_SIZE),
        ] {
            let Some(t) = self.map.get(&k).copied() else {
                continue;
            };
            if t.stale_until != 0 && now >= t.stale_until {
                if let Some(node) = self.map.remove_node(&k) {
                    park(&mut self.free, &mut self.park_id, t, node);
                    // INVARIANT: one entry left the map.
                    self.len -= 1;
                    expired += 1;
                }
                continue;
            }
            return (Some(t), expired);
        }
        (None, expired)
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
        let (k, t) = (*cursor.current().0, *cursor.current().1);
        let (_, node) = cursor.remove_current();
        park(&mut self.free, &mut self.park_id, t, node);
        self.hand = k.wrapping_add(1);
        // INVARIANT: one entry left the map.
        self.len -= 1;
        true
    }

    /// Removes every entry overlapping `[start, end)` and hands each to
    /// `sink`; returns how many `sink` counted (returned `true` for). Visits the overlapping entries and at most
    /// the non-overlapping 4 KiB entries in the 2 MiB block holding `start`.
    fn remove_range(
        &mut self,
        start: usize,
        end: usize,
        mut sink: impl FnMut(&mut Self, Translation, RBTreeNode<usize, Translation>) -> bool,
    ) -> usize {
        let mut next = start & !(HUGE_SIZE - 1);
        let mut removed = 0;
        let mut counted = 0;
        while next < end {
            let Some(cursor) = self.map.cursor_lower_bound_mut(&next) else {
                break;
            };
            let (&k, t) = cursor.current();
            if t.va >= end {
                break;
            }
            if t.overlaps(start, end) {
                let t = *t;
                let (_, node) = cursor.remove_current();
                counted += usize::from(sink(self, t, node));
                removed += 1;
            }
            next = k + 1;
        }
        // INVARIANT: exactly `removed` entries left the map.
        self.len -= removed;
        counted
    }

    /// The kernel asks to drop every entry overlapping `[start, end)`:
    /// removes them and returns how many are gone. Never frees memory (it
    /// runs in the callback). If the TLB is armed and has not been
    /// reinstated yet, a removed live entry lying inside the armed range and
    /// mapping only the armed folio is kept aside for [`Tlb::reinstate`]
    /// instead, and not counted: it is counted when it finally goes.
    pub(crate) fn invalidate(&mut self, start: usize, end: usize) -> usize {
        self.seq = self.seq.wrapping_add(1);
        self.remove_range(start, end, |tlb, t, node| tlb.retire(t, node))
    }

    /// Puts a node the kernel asked to drop on the free list (`true`), or
    /// aside if the armed injection wants it (`false`).
    fn retire(&mut self, t: Translation, node: RBTreeNode<usize, Translation>) -> bool {
        if let Some(armed) = self.armed.as_mut().filter(|a| !a.reinstated) {
            let inside = armed.va.start <= t.va
                && t.va + t.size <= armed.va.end
                && armed.pfns.start <= t.pfns().start
                && t.pfns().end <= armed.pfns.end;
            if inside && t.stale_until == 0 {
                park(&mut armed.kept, &mut self.park_id, t, node);
                return false;
            }
        }
        park(&mut self.free, &mut self.park_id, t, node);
        true
    }

    /// Drops every entry (the kernel's full flush, or the device's own);
    /// returns how many there were. Never frees memory.
    pub(crate) fn flush(&mut self) -> usize {
        if self.armed.is_none() && self.free.is_empty() {
            self.seq = self.seq.wrapping_add(1);
            let n = self.len;
            // INVARIANT: the map is replaced by an empty one.
            self.free = core::mem::replace(&mut self.map, RBTree::new());
            self.len = 0;
            return n;
        }
        self.invalidate(0, usize::MAX)
    }

    /// Arms the `late_invalidate` injection for `va`, the range the helper
    /// migrates, whose source folio has the PFNs `pfns`.
    pub(crate) fn arm(&mut self, va: Range<usize>, pfns: Range<Pfn>) {
        self.armed = Some(Armed {
            va,
            pfns,
            kept: RBTree::new(),
            reinstated: false,
        });
    }

    /// The helper holds the armed folio isolated and referenced: puts the
    /// entries kept aside back as stale until `deadline`. Returns how many
    /// came back, and how many went instead (an entry filled since covers
    /// part of theirs, or the TLB is full).
    pub(crate) fn reinstate(&mut self, deadline: u64) -> (usize, usize) {
        let Some(armed) = self.armed.as_mut() else {
            return (0, 0);
        };
        armed.reinstated = true;
        let mut kept = core::mem::replace(&mut armed.kept, RBTree::new());
        let mut n = 0;
        let mut dropped = 0;
        while let Some(cursor) = kept.cursor_front_mut() {
            let mut t = *cursor.current().1;
            let (_, node) = cursor.remove_current();
            if self.overlaps_any(t.va, t.va + t.size) || self.len == self.capacity {
                // A fresher entry covers part of it, or no room: it goes.
                park(&mut self.free, &mut self.park_id, t, node);
                dropped += 1;
                continue;
            }
            t.stale_until = deadline.max(1);
            let k = key(t.va, t.size);
            self.map.insert(node.into_reservation().into_node(k, t));
            // INVARIANT: a new key (nothing overlaps it), room for it
            // (checked above), and it maps only the armed folio (checked by
            // `retire`).
            self.len += 1;
            n += 1;
        }
        (n, dropped)
    }

    /// Whether any entry overlaps `[start, end)`.
    fn overlaps_any(&self, start: usize, end: usize) -> bool {
        let mut next = start & !(HUGE_SIZE - 1);
        while next < end {
            let Some(cursor) = self.map.cursor_lower_bound(&next) else {
                return false;
            };
            let (&k, t) = cursor.current();
            if t.va >= end {
                return false;
            }
            if t.overlaps(start, end) {
                return true;
            }
            next = k + 1;
        }
        false
    }

    /// Whether a device access to `va` is to wait for [`Tlb::reinstate`]
    /// rather than walk: the injection is collecting for `va`'s range.
    pub(crate) fn awaits_reinstate(&self, va: usize) -> bool {
        self.armed
            .as_ref()
            .is_some_and(|a| !a.reinstated && a.va.contains(&va))
    }

    /// Disarms: the entries kept aside go, and, once reinstated, every
    /// entry of the armed range (where the stale ones are). Returns how
    /// many went.
    pub(crate) fn disarm(&mut self) -> usize {
        let Some(armed) = self.armed.take() else {
            return 0;
        };
        let mut n = 0;
        let mut kept = armed.kept;
        while let Some(cursor) = kept.cursor_front_mut() {
            let t = *cursor.current().1;
            let (_, node) = cursor.remove_current();
            park(&mut self.free, &mut self.park_id, t, node);
            n += 1;
        }
        if armed.reinstated {
            n += self.invalidate(armed.va.start, armed.va.end);
        }
        // INVARIANT: no longer armed, and no stale entry is left: they all
        // lie in the armed range.
        n
    }

    /// Disarms, and removes every entry overlapping `[start, end)`, stale or
    /// live, and every entry kept aside. Returns how many went.
    pub(crate) fn drain(&mut self, start: usize, end: usize) -> usize {
        let n = self.disarm();
        n + self.invalidate(start, end)
    }
}
