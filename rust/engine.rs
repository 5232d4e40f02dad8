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
//! 2. A fill reads the TLB's invalidation sequence number *under the TLB
//!    lock* before its page walk, and inserts only if, under the lock
//!    again, it is unchanged (else it retries, and `fill_retries` counts
//!    it). The kernel changes the page table before it calls the callback,
//!    and the callback changes the number under the lock: if the fill's
//!    first critical section comes after the callback's, the lock's
//!    release/acquire ordering makes the page-table change visible to the
//!    walk; if it comes before, the second one sees the new number. So an
//!    invalidation that raced with the walk cannot leave a stale entry
//!    behind, on any architecture (no reliance on x86's store order).
//! 3. The kernel flushes the CPU TLB, and with it this TLB, before it frees
//!    or moves a page that was mapped; that is the contract under test.
//!
//! Device work can be cancelled: every loop over pages checks a cancel
//! flag ([`Cancel`]) so that a killed submitter, a stopped stream or a
//! closing file never waits for more than one page's work.

use crate::{
    events::Kind,
    histogram, mm_bindings as b,
    mmu_notifier::{Registration, SecondaryTlb},
    shared::{now_ns, Shared},
    stats::{Stat, Stats},
    tlb::{self, PageId, Pfn, Tlb, Translation, PAGE_SIZE},
};
use core::ops::Range;
use kernel::{
    mm::{Mm, MmWithUser},
    new_spinlock,
    prelude::*,
    sync::{
        aref::ARef,
        atomic::{Atomic, Relaxed},
        Arc, SpinLock,
    },
    time::{delay::fsleep, Delta},
    types::NotThreadSafe,
};

/// Give up on one access after this many fills that lost a race with an
/// invalidation (an mm under constant invalidation, e.g. by a tight
/// `mprotect` loop): the access fails with `-EAGAIN`.
const MAX_FILL_RETRIES: u32 = 10_000;

/// A `kmap_local_page()` mapping of one page, unmapped when dropped.
///
/// # Invariants
///
/// `addr` is the mapping `secmmu_map_pfn()` returned, not yet unmapped.
/// The guard cannot leave the task (it is not `Send`), and guards are
/// dropped in the reverse order of their creation, as local mappings must
/// be unmapped.
struct KmapLocal {
    addr: *mut u8,
    _nts: NotThreadSafe,
}

impl KmapLocal {
    /// Maps `pfn`.
    ///
    /// # Safety
    ///
    /// `pfn` must be a page that stays allocated while the guard lives, and
    /// the caller must not sleep meanwhile.
    unsafe fn new(pfn: Pfn) -> Self {
        // SAFETY: `pfn` is a live page (the caller's contract).
        let addr = unsafe { b::secmmu_map_pfn(pfn.0) }.cast::<u8>();
        // INVARIANT: just mapped.
        Self {
            addr,
            _nts: NotThreadSafe,
        }
    }

    /// The page's first byte.
    fn as_ptr(&self) -> *mut u8 {
        self.addr
    }
}

impl Drop for KmapLocal {
    fn drop(&mut self) {
        // SAFETY: mapped by `new` and not unmapped yet (type invariant).
        unsafe { b::secmmu_unmap(self.addr.cast()) };
    }
}

/// A reference on the folio of a page a translation maps, taken only if
/// the page still belongs to the folio it did at fill time
/// (`secmmu_page_get()`); dropped with the guard, on that same folio.
///
/// # Invariants
///
/// `folio` is a folio this guard holds a reference on.
struct FolioHold {
    folio: *mut kernel::bindings::folio,
}

impl FolioHold {
    /// References `pfn`'s folio if it is still the one `id` names; `None`
    /// if it was freed or reused since.
    fn get(pfn: Pfn, id: PageId) -> Option<Self> {
        // `pfn` came from a walk of a present page, so its struct page
        // exists: the memory map goes only with memory hot-remove, which
        // offlines, and so unmaps with a flush, every page first.
        // SAFETY: as just said; the helper touches only the struct page,
        // references only a live folio and reads the three words of `id`.
        let folio = unsafe { b::secmmu_page_get(pfn.0, id.0.as_ptr()) };
        // An error pointer or NULL: no reference was taken.
        if folio.is_null() || (folio as usize) >= MAX_ERRNO_PTR {
            return None;
        }
        // INVARIANT: a folio pointer comes back referenced.
        Some(Self { folio })
    }
}

/// Error pointers (`ERR_PTR(-errno)`) are the top 4095 addresses.
const MAX_ERRNO_PTR: usize = usize::MAX - 4094;

impl Drop for FolioHold {
    fn drop(&mut self) {
        // SAFETY: the reference on `folio` is ours (type invariant) and is
        // given back exactly once.
        unsafe { b::secmmu_page_put(self.folio) };
    }
}

/// The top of `mm`'s user address space: `TASK_SIZE` of its tasks.
pub(crate) fn task_size(mm: &Mm) -> usize {
    // SAFETY: `mm` is a live `mm_struct` (the reference shows it is at
    // least grabbed); `task_size` is set at exec and never changes after.
    unsafe { b::secmmu_task_size(mm.as_raw()) }
}

/// A range this long or longer is a full flush (the user address space is
/// at most 2^47 bytes with 4-level paging; `arch_tlbbatch_add_pending()`
/// passes 0..~0).
const FULL_RANGE: usize = 1 << 47;

/// A flag that asks device work in flight to stop at the next page.
pub(crate) type Cancel = Atomic<bool>;

/// Whether `cancel` is set.
fn cancelled(cancel: &Cancel) -> bool {
    cancel.load(Relaxed)
}

/// The device's view of one bound mm: the notifier implementor.
#[pin_data]
pub(crate) struct DeviceMmu {
    #[pin]
    tlb: SpinLock<Tlb>,
    released: Atomic<bool>,
    stats: Arc<Stats>,
    shared: Arc<Shared>,
    /// Context id, for the event log.
    ctx: u32,
}

impl DeviceMmu {
    fn new(
        capacity: usize,
        stats: Arc<Stats>,
        shared: Arc<Shared>,
        ctx: u32,
    ) -> impl PinInit<Self, Error> {
        try_pin_init!(Self {
            tlb <- new_spinlock!(Tlb::new(capacity), "secmmu_tlb"),
            released: Atomic::new(false),
            stats,
            shared,
            ctx,
        })
    }

    /// Drops translations overlapping `[start, end)` (all of them if `end`
    /// is past the user address space); returns how many. Frees nothing:
    /// this runs in the callback, under page-table locks.
    fn invalidate(&self, start: usize, end: usize) -> usize {
        if self.shared.skip_invalidate() {
            // The `skip_invalidate` injection: a device that ignores the
            // kernel, for the oracles' self-tests. Counted, nothing dropped.
            self.stats.inc(Stat::INVALIDATIONS);
            return 0;
        }
        let mut tlb = self.tlb.lock();
        // Logged under the TLB lock, as fills are: the log's order of fills
        // and invalidations is the order they took effect in.
        self.shared
            .events
            .record(self.ctx, Kind::Invalidate, start as u64, end as u64, -1);
        let n = if end.wrapping_sub(start) >= FULL_RANGE {
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

    /// Drains `[start, end)` ([`Tlb::drain`]), counted as one invalidation;
    /// returns how many entries went.
    fn drain(&self, start: usize, end: usize) -> usize {
        let n = self.tlb.lock().drain(start, end);
        if end.wrapping_sub(start) >= FULL_RANGE {
            self.stats.inc(Stat::FULL_FLUSHES);
        }
        self.stats.inc(Stat::INVALIDATIONS);
        self.stats.add(Stat::INVALIDATED_ENTRIES, n as u64);
        n
    }

    /// Frees the nodes the callback retired. Process context only.
    fn reap(&self) {
        let (free, node) = self.tlb.lock().take_free();
        drop(node);
        drop(free);
    }
}

impl SecondaryTlb for DeviceMmu {
    fn invalidate_secondary_tlbs(&self, start: usize, end: usize) {
        let t0 = now_ns();
        self.invalidate(start, end);
        histogram::INVALIDATE.record(now_ns().saturating_sub(t0));
    }

    /// Idempotent: `exit_mmap()` and unregistration may both call it, at
    /// the same time.
    fn release(&self) {
        self.released.store(true, Relaxed);
        self.drain(0, usize::MAX);
    }
}

/// A device context bound to an mm.
///
/// Shared (`Arc`) by the owning file and by engine work in flight, so the
/// notifier stays registered until the last device access is done. The
/// last reference unregisters the notifier, which waits for SRCU: it must
/// never be dropped under `mmap_lock` or in atomic context.
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

/// What a device page walk found.
struct Walked {
    pfn: Pfn,
    huge: bool,
    nid: i32,
    id: PageId,
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
        Arc::pin_init(
            try_pin_init!(Self {
                reg <- Registration::register(mm, DeviceMmu::new(capacity, stats, shared, ctx)),
                mm: grabbed,
            }),
            GFP_KERNEL,
        )
    }

    /// Whether this context is bound to `mm`.
    pub(crate) fn is_bound_to(&self, mm: &Mm) -> bool {
        core::ptr::eq(self.mm.as_raw(), mm.as_raw())
    }

    /// Context id.
    pub(crate) fn ctx(&self) -> u32 {
        self.dev().ctx
    }

    /// Checks that `[addr, addr + len)` lies below the bound mm's
    /// `TASK_SIZE`: `-EFAULT` otherwise (or if it wraps).
    pub(crate) fn check_range(&self, addr: usize, len: usize) -> Result {
        let end = addr.checked_add(len).ok_or(EFAULT)?;
        if end > task_size(&self.mm) {
            return Err(EFAULT);
        }
        Ok(())
    }

    /// Drops every translation overlapping `[start, end)` now, stale or
    /// not, and every one kept aside by an armed injection, disarming it;
    /// waits for device accesses through them (they run under the TLB lock
    /// this takes). Returns how many went (kept-aside ones included).
    pub(crate) fn drain(&self, start: usize, end: usize) -> usize {
        let dev = self.dev();
        let n = dev.drain(start, end);
        dev.reap();
        n
    }

    /// Arms the `late_invalidate` injection: translations of `va` into
    /// `pfns` that the kernel invalidates from now on are kept aside for
    /// [`Binding::reinstate`].
    pub(crate) fn arm(&self, va: Range<usize>, pfns: Range<Pfn>) {
        self.dev().tlb.lock().arm(va, pfns);
    }

    /// Puts the translations kept aside back, stale until `deadline`:
    /// only once the caller holds their folio isolated and referenced.
    /// Returns how many came back.
    pub(crate) fn reinstate(&self, deadline: u64) -> usize {
        let (n, dropped) = self.dev().tlb.lock().reinstate(deadline);
        self.stats().add(Stat::INVALIDATED_ENTRIES, dropped as u64);
        n
    }

    /// Disarms the injection (see [`Tlb::disarm`]) without counting an
    /// invalidation: for a helper that ends before it drained.
    pub(crate) fn disarm(&self) {
        let n = self.dev().tlb.lock().disarm();
        self.stats().add(Stat::INVALIDATED_ENTRIES, n as u64);
        self.dev().reap();
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
        current.mm().is_some_and(|mm| self.is_bound_to(mm))
    }

    /// Entries cached now and the capacity.
    pub(crate) fn tlb_usage(&self) -> (usize, usize) {
        let tlb = self.dev().tlb.lock();
        (tlb.len(), tlb.capacity())
    }

    /// Drops every cached translation (`SECMMU_IOCTL_TLB_FLUSH`), and
    /// those an armed injection kept aside: the device's own flush is
    /// never undone by a reinstatement.
    pub(crate) fn flush(&self) {
        self.dev().drain(0, usize::MAX);
        self.dev().reap();
    }

    /// The device's page walk for `va`, with the mmap lock held for reading
    /// and an `mm_users` reference that is dropped with `mmput_async()`: if
    /// the process exits meanwhile, `exit_mmap()` never runs in the engine.
    fn walk(&self, va: usize, dir: Dir) -> Result<Walked> {
        let mm = MmWithUser::into_mmput_async(self.mm.mmget_not_zero().ok_or(ESRCH)?);
        let (mut pfn, mut huge, mut nid, mut id) = (0usize, false, 0i32, [0usize; 3]);
        let guard = mm.mmap_read_lock();
        // SAFETY: `mm` has a user reference and its mmap lock is held for
        // reading (`guard`), as `secmmu_walk` requires; the out-pointers
        // are valid locals.
        let ret = unsafe {
            b::secmmu_walk(
                mm.as_raw(),
                va,
                dir == Dir::Write,
                (&raw mut pfn).cast(),
                &raw mut huge,
                &raw mut nid,
                id.as_mut_ptr(),
            )
        };
        drop(guard);
        drop(mm);
        if ret < 0 {
            return Err(Error::from_errno(ret));
        }
        Ok(Walked {
            pfn: Pfn(pfn),
            huge,
            nid,
            id: PageId(id),
        })
    }

    /// The device page walk: faults `va` in and caches its translation.
    fn fill(&self, va: usize, dir: Dir) -> Result {
        let dev = self.dev();
        // The number is read under the lock: rule 2 of the module doc.
        let (seq, free, pooled) = {
            let mut tlb = dev.tlb.lock();
            let (free, pooled) = tlb.take_free();
            (tlb.seq(), free, pooled)
        };
        // Nodes the callback retired are freed here, in process context.
        drop(free);
        let node = match pooled {
            Some(node) => node,
            None => tlb::reserve()?,
        };
        let w = self.walk(va, dir).inspect_err(|_| {
            self.stats().inc(Stat::DEVICE_FAULTS);
        })?;
        let size = if w.huge { tlb::HUGE_SIZE } else { PAGE_SIZE };
        let t = Translation {
            va: va & !(size - 1),
            pfn: w.pfn,
            size,
            writable: dir == Dir::Write,
            stale_until: 0,
            id: w.id,
        };
        let mut tlb = dev.tlb.lock();
        // INVARIANT (rule 2): an unchanged number under the lock means no
        // invalidation ran since the walk's first critical section.
        if tlb.seq() != seq || dev.released.load(Relaxed) {
            drop(tlb);
            self.stats().inc(Stat::FILL_RETRIES);
            return Err(EAGAIN);
        }
        let ins = tlb.insert(t, node);
        // Under the TLB lock (lock order: TLB, then the event ring), so
        // that an invalidation that drops this entry is logged after it.
        dev.shared
            .events
            .record(dev.ctx, Kind::Fill, t.va as u64, w.pfn.0 as u64, w.nid);
        drop(tlb);
        self.stats().inc(Stat::TLB_FILLS);
        if w.huge {
            self.stats().inc(Stat::HUGE_FILLS);
        }
        if ins.evicted {
            self.stats().inc(Stat::TLB_EVICTIONS);
        }
        Ok(())
    }

    /// Looks `va` up under the TLB lock and runs `f` on a usable hit.
    /// `Ok(None)` on a miss; `Err(EAGAIN)` if the access is to wait for
    /// an armed injection to reinstate its translations.
    fn try_hit<R>(
        &self,
        va: usize,
        dir: Dir,
        f: &mut Option<impl FnOnce(&Translation) -> R>,
    ) -> Result<Option<R>> {
        let dev = self.dev();
        let now = now_ns();
        let mut tlb = dev.tlb.lock();
        let (hit, expired) = tlb.lookup(va, now);
        if expired > 0 {
            // A late invalidation finally taking effect.
            self.stats().add(Stat::INVALIDATED_ENTRIES, expired as u64);
        }
        match hit {
            Some(t) if t.writable || dir == Dir::Read => {
                self.stats().inc(Stat::TLB_HITS);
                if t.stale_until != 0 {
                    self.stats().inc(Stat::STALE_ACCESSES);
                    let pfn = t.pfn_of(va).0 as u64;
                    dev.shared
                        .events
                        .record(dev.ctx, Kind::StaleAccess, va as u64, pfn, -1);
                }
                Ok(f.take().map(|f| f(&t)))
            }
            _ if tlb.awaits_reinstate(va) => Err(EAGAIN),
            _ => Ok(None),
        }
    }

    /// Runs `f` on the translation covering `va`, under the TLB lock,
    /// filling the TLB first on a miss. `f` gets the translation and must
    /// not sleep. Stops with `-EINTR` once `cancel` is set.
    fn with_translation<R>(
        &self,
        va: usize,
        dir: Dir,
        cancel: &Cancel,
        f: impl FnOnce(&Translation) -> R,
    ) -> Result<R> {
        let dev = self.dev();
        let mut f = Some(f);
        let mut retries = 0;
        loop {
            if dev.released.load(Relaxed) {
                return Err(ESRCH);
            }
            if cancelled(cancel) {
                return Err(EINTR);
            }
            match self.try_hit(va, dir, &mut f) {
                Ok(Some(r)) => return Ok(r),
                Ok(None) => {}
                Err(_) => {
                    // The helper is collecting translations for the
                    // injection: wait for it (bounded by its setup).
                    fsleep(Delta::from_micros(20));
                    continue;
                }
            }
            if f.is_none() {
                return Err(EINVAL);
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

    /// Runs `f` on a kernel mapping of the page backing `va` in `t`, which
    /// the caller looked up under the TLB lock it still holds.
    ///
    /// The freed-page oracle: the page must still belong to the folio it
    /// belonged to at fill time, and is referenced while `f` runs. If the
    /// kernel freed or reused it while this TLB still mapped it (a kernel
    /// that invalidated too late, or not at all), the access is refused
    /// with `-EIO`, counted in `freed_page_accesses` and logged as a
    /// `freed_page_access` event: the device never touches a page it does
    /// not hold.
    fn with_page<R>(&self, t: &Translation, va: usize, f: impl FnOnce(*mut u8) -> R) -> Result<R> {
        let pfn = t.pfn_of(va);
        let Some(_folio) = FolioHold::get(pfn, t.id) else {
            let dev = self.dev();
            self.stats().inc(Stat::FREED_PAGE_ACCESSES);
            dev.shared
                .events
                .record(dev.ctx, Kind::FreedPageAccess, va as u64, pfn.0 as u64, -1);
            return Err(EIO);
        };
        // SAFETY: `_folio` holds a reference on the page's folio until the
        // mapping is gone (locals drop in reverse order); the caller holds
        // the TLB spinlock: no sleep.
        let page = unsafe { KmapLocal::new(pfn) };
        Ok(f(page.as_ptr()))
    }

    /// Device access to `[va, va + buf.len())`, split per translation and
    /// per page: copies `buf` into process memory (`Dir::Write`) or process
    /// memory into `buf` (`Dir::Read`).
    pub(crate) fn access(&self, va: usize, buf: &mut [u8], dir: Dir, cancel: &Cancel) -> Result {
        self.check_range(va, buf.len())?;
        let mut done = 0;
        while done < buf.len() {
            let cur = va.checked_add(done).ok_or(EFAULT)?;
            let chunk = (PAGE_SIZE - cur % PAGE_SIZE).min(buf.len() - done);
            let part = buf.get_mut(done..done + chunk).ok_or(EINVAL)?;
            self.with_translation(cur, dir, cancel, |t| {
                self.with_page(t, cur, |page| {
                    let off = cur % PAGE_SIZE;
                    // Userspace may access the same memory concurrently, as
                    // it may while a real device DMAs into it; bytes are
                    // plain data.
                    // SAFETY: `page` maps a whole page, `off + chunk <=
                    // PAGE_SIZE` and `part` is a distinct kernel buffer.
                    unsafe {
                        match dir {
                            Dir::Write => {
                                core::ptr::copy_nonoverlapping(part.as_ptr(), page.add(off), chunk)
                            }
                            Dir::Read => core::ptr::copy_nonoverlapping(
                                page.add(off),
                                part.as_mut_ptr(),
                                chunk,
                            ),
                        }
                    }
                })
            })??;
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
    pub(crate) fn fill_u64(&self, va: usize, len: usize, value: u64, cancel: &Cancel) -> Result {
        if va % 8 != 0 || len % 8 != 0 {
            return Err(EINVAL);
        }
        self.check_range(va, len)?;
        let mut done = 0;
        while done < len {
            let cur = va.checked_add(done).ok_or(EFAULT)?;
            let chunk = (PAGE_SIZE - cur % PAGE_SIZE).min(len - done);
            self.with_translation(cur, Dir::Write, cancel, |t| {
                self.with_page(t, cur, |page| {
                    // Userspace may access the same memory concurrently, as
                    // in `access`; the words are plain data.
                    // SAFETY: `cur % PAGE_SIZE + chunk <= PAGE_SIZE` and
                    // both are multiples of 8, so every word lies in the
                    // mapped page and is aligned.
                    unsafe {
                        let words = page.add(cur % PAGE_SIZE).cast::<u64>();
                        for i in 0..chunk / 8 {
                            words.add(i).write(value);
                        }
                    }
                })
            })??;
            done += chunk;
        }
        self.stats().inc(Stat::DEVICE_WRITES);
        Ok(())
    }

    /// Writes one aligned 64-bit `value` at `va` (a stream write). Returns
    /// the NUMA node of the page written.
    pub(crate) fn write_u64(&self, va: usize, value: u64, cancel: &Cancel) -> Result<i32> {
        if va % 8 != 0 {
            return Err(EINVAL);
        }
        self.with_translation(va, Dir::Write, cancel, |t| {
            let pfn = t.pfn_of(va);
            self.with_page(t, va, |page| {
                // One volatile store: one device write, as a device's is.
                // SAFETY: `va` is 8-byte aligned, so the word is aligned
                // and `va % PAGE_SIZE + 8 <= PAGE_SIZE`: in the page.
                unsafe { core::ptr::write_volatile(page.add(va % PAGE_SIZE).cast::<u64>(), value) };
                // SAFETY: `pfn` is a valid PFN: its folio is referenced.
                unsafe { b::secmmu_pfn_to_nid(pfn.0) }
            })
        })?
    }
}
