// SPDX-License-Identifier: GPL-2.0

//! The ordering event log: `/sys/kernel/debug/secmmu/events`.
//!
//! A bounded ring of events, each with a global sequence number, a
//! timestamp, the CPU and the device context (0 for the migration helper),
//! so tests can assert orderings such as "every invalidation covering the
//! range came before `copy_begin`". Recording never allocates or sleeps: it
//! runs in the secondary-TLB callback too. Writing `clear` empties it.

use core::fmt;
use kernel::{bindings, new_spinlock, prelude::*, sync::SpinLock};

/// Events kept; older ones are overwritten.
pub(crate) const CAPACITY: usize = 65536;

/// What happened.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `migrate_vma_setup()` returned: the range is unmapped and flushed.
    /// `a..b` is the range.
    Unmap,
    /// The secondary-TLB callback for `[a, b)`.
    Invalidate,
    /// A device access through an entry the notifier had already asked to
    /// drop (only possible under `late_invalidate` injection); `a` is the
    /// VA, `b` the PFN.
    StaleAccess,
    /// The helper starts copying; `a` source PFN, `b` destination PFN.
    CopyBegin,
    /// The helper finished copying.
    CopyEnd,
    /// The helper forced out translations still held (`a` entries).
    LateInvalidation,
    /// `migrate_vma_pages()` installed the new page for `a..b`.
    Remap,
    /// Migration finished; `a` the new node.
    MigrateDone,
    /// Migration aborted; `a` the negative errno.
    MigrateAbort,
    /// A device TLB fill: `a` VA, `b` PFN, `node` its node.
    Fill,
    /// A device access refused because the translation's page was freed or
    /// reused since the fill (the freed-page oracle); `a` VA, `b` PFN.
    FreedPageAccess,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Unmap => "unmap",
            Kind::Invalidate => "invalidate",
            Kind::StaleAccess => "stale_access",
            Kind::CopyBegin => "copy_begin",
            Kind::CopyEnd => "copy_end",
            Kind::LateInvalidation => "late_invalidation",
            Kind::Remap => "remap",
            Kind::MigrateDone => "migrate_done",
            Kind::MigrateAbort => "migrate_abort",
            Kind::Fill => "fill",
            Kind::FreedPageAccess => "freed_page_access",
        }
    }
}

/// One event.
#[derive(Clone, Copy)]
struct Event {
    seq: u64,
    ns: u64,
    cpu: u32,
    ctx: u32,
    kind: Kind,
    a: u64,
    b: u64,
    node: i32,
}

/// The ring.
///
/// # Invariants
///
/// `buf.len() == CAPACITY` once initialised; `next` is the sequence number
/// the next event gets; events `max(0, next - CAPACITY)..next` are held,
/// event `s` at index `s % CAPACITY`.
struct Ring {
    buf: KVVec<Event>,
    next: u64,
    /// First sequence number still meant to be shown (after `clear`).
    first: u64,
}

/// The event log.
#[pin_data]
pub(crate) struct EventLog {
    #[pin]
    ring: SpinLock<Ring>,
}

const EMPTY: Event = Event {
    seq: 0,
    ns: 0,
    cpu: 0,
    ctx: 0,
    kind: Kind::Fill,
    a: 0,
    b: 0,
    node: -1,
};

impl EventLog {
    /// An empty log of [`CAPACITY`] events (allocated now).
    pub(crate) fn new() -> Result<impl PinInit<Self, Error>> {
        let mut buf = KVVec::with_capacity(CAPACITY, GFP_KERNEL)?;
        buf.resize(CAPACITY, EMPTY, GFP_KERNEL)?;
        // INVARIANT: `CAPACITY` slots, nothing recorded yet.
        Ok(try_pin_init!(Self {
            ring <- new_spinlock!(Ring { buf, next: 1, first: 1 }, "secmmu_events"),
        }))
    }

    /// Records an event. Never sleeps or allocates.
    pub(crate) fn record(&self, ctx: u32, kind: Kind, a: u64, b: u64, node: i32) {
        // SAFETY: `ktime_get` has no preconditions and may run in any
        // context.
        let ns = unsafe { bindings::ktime_get() } as u64;
        // SAFETY: `secmmu_cpu` only reads the current CPU number.
        let cpu = unsafe { crate::mm_bindings::secmmu_cpu() };
        let mut ring = self.ring.lock();
        let seq = ring.next;
        let idx = (seq % CAPACITY as u64) as usize;
        if let Some(slot) = ring.buf.get_mut(idx) {
            *slot = Event {
                seq,
                ns,
                cpu,
                ctx,
                kind,
                a,
                b,
                node,
            };
        }
        ring.next = seq.wrapping_add(1);
    }

    /// Forgets every event recorded so far.
    pub(crate) fn clear(&self) {
        let mut ring = self.ring.lock();
        ring.first = ring.next;
    }

    /// Prints the held events, oldest first, one per line:
    /// `seq ns cpu ctx kind a b node` (a and b in hex).
    pub(crate) fn show(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Copy out under the lock in chunks, print without it.
        let mut from = {
            let ring = self.ring.lock();
            ring.first.max(ring.next.saturating_sub(CAPACITY as u64))
        };
        let mut chunk = [EMPTY; 16];
        loop {
            let n = {
                let ring = self.ring.lock();
                from = from
                    .max(ring.next.saturating_sub(CAPACITY as u64))
                    .max(ring.first);
                let mut n = 0;
                while n < chunk.len() && from < ring.next {
                    let idx = (from % CAPACITY as u64) as usize;
                    if let (Some(c), Some(e)) = (chunk.get_mut(n), ring.buf.get(idx)) {
                        *c = *e;
                    }
                    n += 1;
                    from += 1;
                }
                n
            };
            if n == 0 {
                return Ok(());
            }
            for e in chunk.iter().take(n) {
                writeln!(
                    f,
                    "{} {} {} {} {} {:#x} {:#x} {}",
                    e.seq,
                    e.ns,
                    e.cpu,
                    e.ctx,
                    e.kind.name(),
                    e.a,
                    e.b,
                    e.node
                )?;
            }
        }
    }
}
