// SPDX-License-Identifier: GPL-2.0

//! The fake SVA device engine: a context bound to a process mm, its
//! software TLB, the device page walk that fills it, and device accesses
//! through it.
//!
//! # How the device stays correct
//!
//! The TLB caches PFNs without holding page references. Three rules make
//! that safe, exactly as for an ATS/SVA device:
//!
//! 1. Every device access goes through a TLB entry and happens **while the
//!    TLB lock is held**. The secondary-TLB callback takes the same lock to
//!    drop entries, so when it returns no access through a dropped entry is
//!    still in flight.
//! 2. A fill samples the invalidation sequence number before the walk and
//!    inserts only if it is unchanged, under the lock (else it retries, and
//!    `fill_retries` counts it). An invalidation that raced with the walk
//!    therefore cannot leave a stale entry behind.
//! 3. The kernel flushes the CPU TLB, and with it this TLB, before it frees
//!    or moves a page that was mapped; that is the contract under test.

use crate::{
    events::Kind,
    histogram, mm_bindings as b,
    mmu_notifier::{Registration, SecondaryTlb},
    shared::{now_ns, Shared},
    stats::{Stat, Stats},
    tlb::{self, Tlb, Translation, PAGE_SIZE},
};
use kernel::{
    mm::Mm,
    new_spinlock,
    prelude::*,
    sync::{
        aref::ARef,
        atomic::{Atomic, Relaxed},
        Arc, SpinLock,
    },
};

/// Give up on one access after this many fills that lost a race with an
/// invalidation (an mm under constant invalidation, e.g. by a tight
/// `mprotect` loop): the access fails with `-EAGAIN`.
const MAX_FILL_RETRIES: u32 = 10_000;

/// The device's view of one bound mm: the notifier implementor.
///
/// # Invariants
///
/// `seq` changes (under the `tlb` lock) on every invalidation and flush.
#[pin_data]
pub(crate) struct DeviceMmu {
    #[pin]
    tlb: SpinLock<Tlb>,
    seq: Atomic<u64>,
    released: Atomic<bool>,
    stats: Arc<Stats>,
    shared: Arc<Shared>,
    /// Context id, for the event log.
    ctx: u32,
    /// The bound mm (as an address, for comparisons only).
    mm: usize,
}

impl DeviceMmu {
    fn new(
        capacity: usize,
        stats: Arc<Stats>,
        shared: Arc<Shared>,
        ctx: u32,
        mm: usize,
    ) -> impl PinInit<Self, Error> {
        try_pin_init!(Self {
            tlb <- new_spinlock!(Tlb::new(capacity), "secmmu_tlb"),
            seq: Atomic::new(0),
            released: Atomic::new(false),
            stats,
            shared,
            ctx,
            mm,
        })
    }

    /// Drops translations overlapping `[start, end)` (all of them if `end`
    /// is past the user address space); returns how many.
    fn invalidate(&self, start: usize, end: usize) -> usize {
        let mut tlb = self.tlb.lock();
        self.seq.fetch_add(1, Relaxed);
        let n = if end.wrapping_sub(start) >= (1usize << 47) {
            self.stats.inc(Stat::FULL_FLUSHES);
            tlb.flush()
        } else {
            tlb.invalidate(start, end)
        };
        drop(tlb);
        self.stats.inc(Stat::INVALIDATIONS);
        self.stats.add(Stat::INVALIDATED_ENTRIES, n as u64);
        n
    }
}

impl SecondaryTlb for DeviceMmu {
    fn invalidate_secondary_tlbs(&self, start: usize, end: usize) {
        let t0 = now_ns();
        self.invalidate_callback(start, end);
        histogram::INVALIDATE.record(now_ns().saturating_sub(t0));
    }

    fn release(&self) {
        self.released.store(true, Relaxed);
        self.invalidate(0, usize::MAX);
    }
}

impl DeviceMmu {
    /// The secondary-TLB callback's work, timed by the caller.
    fn invalidate_callback(&self, start: usize, end: usize) {
        self.shared
            .events
            .record(self.ctx, Kind::Invalidate, start as u64, end as u64, -1);
        if let Some(deadline) = self.shared.late_deadline(self.mm, start, end) {
            // Injection: acknowledge, but keep using the translations
            // until `deadline`, like a secondary TLB invalidated too late.
            // Only inside the range the helper migrates, which holds the
            // source page until it has drained this TLB.
            let mut tlb = self.tlb.lock();
            self.seq.fetch_add(1, Relaxed);
            tlb.mark_stale(start, end, deadline);
            drop(tlb);
            self.stats.inc(Stat::INVALIDATIONS);
            return;
        }
        self.invalidate(start, end);
    }
}

/// A device context bound to an mm.
///
/// Shared (`Arc`) by the owning file and by engine work in flight, so the
/// notifier stays registered until the last device access is done.
#[pin_data]
pub(crate) struct Binding {
    #[pin]
    reg: Registration<DeviceMmu>,
    mm: ARef<Mm>,
}

/// Whether a device access reads or writes memory.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dir {
    /// Device reads process memory.
    Read,
    /// Device writes process memory.
    Write,
}

impl Binding {
    /// Binds a new device context to the caller's mm.
    pub(crate) fn new(
        capacity: usize,
        stats: Arc<Stats>,
        shared: Arc<Shared>,
        ctx: u32,
    ) -> Result<Arc<Self>> {
        let current = kernel::current!();
        let mm = current.mm().ok_or(EINVAL)?;
        let grabbed: ARef<Mm> = ARef::from(&**mm);
        let raw = mm.as_raw() as usize;
        Arc::pin_init(
            try_pin_init!(Self {
                reg <- Registration::register(
                    mm,
                    DeviceMmu::new(capacity, stats, shared, ctx, raw),
                ),
                mm: grabbed,
            }),
            GFP_KERNEL,
        )
    }

    /// The bound mm, as an address (for comparisons).
    pub(crate) fn mm_raw(&self) -> usize {
        self.mm.as_raw() as usize
    }

    /// Context id.
    pub(crate) fn ctx(&self) -> u32 {
        self.dev().ctx
    }

    /// Drops every translation overlapping `[start, end)` now, stale or not,
    /// and waits for device accesses through them (they run under the TLB
    /// lock this takes). Returns how many entries were dropped.
    pub(crate) fn force_invalidate(&self, start: usize, end: usize) -> usize {
        self.dev().invalidate(start, end)
    }

    /// The latest injected deadline of stale entries overlapping the range
    /// (0: none).
    pub(crate) fn stale_deadline(&self, start: usize, end: usize) -> u64 {
        self.dev().tlb.lock().stale_deadline(start, end)
    }

    fn dev(&self) -> &DeviceMmu {
        self.reg.data()
    }

    /// The counters of this context.
    pub(crate) fn stats(&self) -> &Stats {
        &self.dev().stats
    }

    /// True if the calling task runs in the bound mm.
    pub(crate) fn is_current_mm(&self) -> bool {
        let current = kernel::current!();
        current
            .mm()
            .is_some_and(|mm| mm.as_raw() == self.mm.as_raw())
    }

    /// Entries cached now and the capacity.
    pub(crate) fn tlb_usage(&self) -> (usize, usize) {
        let tlb = self.dev().tlb.lock();
        (tlb.len(), tlb.capacity())
    }

    /// Drops every cached translation (`SECMMU_IOCTL_TLB_FLUSH`).
    pub(crate) fn flush(&self) {
        self.dev().invalidate(0, usize::MAX);
    }

    /// The device page walk: faults `va` in and caches its translation.
    fn fill(&self, va: usize, dir: Dir) -> Result {
        let dev = self.dev();
        let seq = dev.seq.load(Relaxed);
        let node = tlb::reserve()?;
        let mm = self.mm.mmget_not_zero().ok_or(ESRCH)?;
        let (mut pfn, mut huge, mut nid) = (0usize, false, 0i32);
        let ret = {
            let _guard = mm.mmap_read_lock();
            // SAFETY: `mm` has a user reference (`mmget_not_zero`) and its
            // mmap lock is held for reading, as `secmmu_walk` requires; the
            // out-pointers are valid locals.
            unsafe {
                b::secmmu_walk(
                    mm.as_raw(),
                    va,
                    dir == Dir::Write,
                    (&raw mut pfn).cast(),
                    &raw mut huge,
                    &raw mut nid,
                )
            }
        };
        drop(mm);
        if ret < 0 {
            self.stats().inc(Stat::DEVICE_FAULTS);
            return Err(Error::from_errno(ret));
        }
        let size = if huge { tlb::HUGE_SIZE } else { PAGE_SIZE };
        let t = Translation {
            va: va & !(size - 1),
            pfn,
            size,
            writable: dir == Dir::Write,
            stale_until: 0,
        };
        let mut tlb = dev.tlb.lock();
        if dev.seq.load(Relaxed) != seq || dev.released.load(Relaxed) {
            drop(tlb);
            self.stats().inc(Stat::FILL_RETRIES);
            return Err(EAGAIN);
        }
        let ins = tlb.insert(t, node);
        drop(tlb);
        self.stats().inc(Stat::TLB_FILLS);
        dev.shared
            .events
            .record(dev.ctx, Kind::Fill, t.va as u64, pfn as u64, nid);
        if huge {
            self.stats().inc(Stat::HUGE_FILLS);
        }
        if ins.evicted {
            self.stats().inc(Stat::TLB_EVICTIONS);
        }
        Ok(())
    }

    /// Runs `f` on the translation covering `va`, under the TLB lock,
    /// filling the TLB first on a miss. `f` gets the translation and must
    /// not sleep.
    fn with_translation<R>(
        &self,
        va: usize,
        dir: Dir,
        f: impl FnOnce(&Translation) -> R,
    ) -> Result<R> {
        let dev = self.dev();
        let mut f = Some(f);
        let mut retries = 0;
        loop {
            if dev.released.load(Relaxed) {
                return Err(ESRCH);
            }
            {
                let now = now_ns();
                let mut tlb = dev.tlb.lock();
                if let Some(t) = tlb.lookup(va, now) {
                    if t.writable || dir == Dir::Read {
                        self.stats().inc(Stat::TLB_HITS);
                        if t.stale_until != 0 {
                            self.stats().inc(Stat::STALE_ACCESSES);
                            dev.shared.events.record(
                                dev.ctx,
                                Kind::StaleAccess,
                                va as u64,
                                t.pfn_of(va) as u64,
                                -1,
                            );
                        }
                        if let Some(f) = f.take() {
                            return Ok(f(&t));
                        }
                        return Err(EINVAL);
                    }
                }
            }
            self.stats().inc(Stat::TLB_MISSES);
            match self.fill(va, dir) {
                Ok(()) => {}
                Err(e) if e == EAGAIN => {
                    retries += 1;
                    if retries >= MAX_FILL_RETRIES {
                        self.stats().inc(Stat::DEVICE_FAULTS);
                        return Err(EAGAIN);
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Device access to `[va, va + buf.len())`, split per translation and
    /// per page: copies `buf` into process memory (`Dir::Write`) or process
    /// memory into `buf` (`Dir::Read`).
    pub(crate) fn access(&self, va: usize, buf: &mut [u8], dir: Dir) -> Result {
        let mut done = 0;
        while done < buf.len() {
            let cur = va.checked_add(done).ok_or(EFAULT)?;
            let chunk = (PAGE_SIZE - cur % PAGE_SIZE).min(buf.len() - done);
            let part = buf.get_mut(done..done + chunk).ok_or(EINVAL)?;
            self.with_translation(cur, dir, |t| {
                let pfn = t.pfn_of(cur);
                // By the notifier contract (module doc) the kernel must take
                // the TLB lock we hold to drop this entry before it frees or
                // moves the page, so the page is still the one mapped.
                // SAFETY: `pfn` is such a page; unmapped below, no sleeping.
                let page = unsafe { b::secmmu_map_pfn(pfn) }.cast::<u8>();
                let off = cur % PAGE_SIZE;
                // Userspace may access the same memory concurrently, as it
                // may while a real device DMAs into it; bytes are plain data.
                // SAFETY: `page` maps a whole page, `off + chunk <= PAGE_SIZE`
                // and `part` is a distinct kernel buffer.
                unsafe {
                    match dir {
                        Dir::Write => {
                            core::ptr::copy_nonoverlapping(part.as_ptr(), page.add(off), chunk)
                        }
                        Dir::Read => {
                            core::ptr::copy_nonoverlapping(page.add(off), part.as_mut_ptr(), chunk)
                        }
                    }
                }
                // SAFETY: `page` came from `secmmu_map_pfn` just above.
                unsafe { b::secmmu_unmap(page.cast()) };
            })?;
            done += chunk;
        }
        let s = if dir == Dir::Write {
            Stat::DEVICE_WRITES
        } else {
            Stat::DEVICE_READS
        };
        self.stats().inc(s);
        Ok(())
    }

    /// Device fill: writes `value` to every 64-bit word of
    /// `[va, va + len)` (both multiples of 8), per translation and page,
    /// without a bounce buffer.
    pub(crate) fn fill_u64(&self, va: usize, len: usize, value: u64) -> Result {
        if va % 8 != 0 || len % 8 != 0 {
            return Err(EINVAL);
        }
        let mut done = 0;
        while done < len {
            let cur = va.checked_add(done).ok_or(EFAULT)?;
            let chunk = (PAGE_SIZE - cur % PAGE_SIZE).min(len - done);
            self.with_translation(cur, Dir::Write, |t| {
                let pfn = t.pfn_of(cur);
                // SAFETY: as in `access`: the entry is live under the TLB
                // lock, so `pfn` is the page mapped at `cur`.
                let page = unsafe { b::secmmu_map_pfn(pfn) }.cast::<u8>();
                // Userspace may access the same memory concurrently, as in
                // `access`; the words are plain data.
                // SAFETY: `cur % PAGE_SIZE + chunk <= PAGE_SIZE` and both
                // are multiples of 8, so every word lies in the mapped page
                // and is aligned.
                unsafe {
                    let words = page.add(cur % PAGE_SIZE).cast::<u64>();
                    for i in 0..chunk / 8 {
                        words.add(i).write(value);
                    }
                }
                // SAFETY: `page` came from `secmmu_map_pfn` just above.
                unsafe { b::secmmu_unmap(page.cast()) };
            })?;
            done += chunk;
        }
        self.stats().inc(Stat::DEVICE_WRITES);
        Ok(())
    }

    /// Writes one aligned 64-bit `value` at `va` (a stream write). Returns
    /// the NUMA node of the page written.
    pub(crate) fn write_u64(&self, va: usize, value: u64) -> Result<i32> {
        if va % 8 != 0 {
            return Err(EINVAL);
        }
        self.with_translation(va, Dir::Write, |t| {
            let pfn = t.pfn_of(va);
            // SAFETY: as in `access`: the entry is live under the TLB lock.
            let page = unsafe { b::secmmu_map_pfn(pfn) }.cast::<u8>();
            // SAFETY: `va % PAGE_SIZE + 8 <= PAGE_SIZE` as `va` is 8-byte
            // aligned, and the address is 8-byte aligned; a volatile store
            // makes it one device write, as a device's would be.
            unsafe { core::ptr::write_volatile(page.add(va % PAGE_SIZE).cast::<u64>(), value) };
            // SAFETY: `page` came from `secmmu_map_pfn` just above.
            unsafe { b::secmmu_unmap(page.cast()) };
            // SAFETY: `pfn` is a valid, mapped PFN (see above).
            unsafe { b::secmmu_pfn_to_nid(pfn) }
        })
    }
}
