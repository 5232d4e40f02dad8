// SPDX-License-Identifier: GPL-2.0

//! The hardened THP NUMA migration helper behind
//! `/sys/kernel/debug/secmmu/migrate_thp`.
//!
//! It moves the PMD-mapped THP holding an address of a process to another
//! NUMA node with `migrate_vma_setup()` / `migrate_vma_pages()` /
//! `migrate_vma_finalize()` (`MIGRATE_VMA_SELECT_SYSTEM |
//! MIGRATE_VMA_SELECT_COMPOUND` over the PMD-aligned range), doing the copy
//! itself. That is the seed fix's lesson turned into a tool: between setup
//! (which unmaps the range and flushes the CPU and secondary TLBs) and the
//! copy, the helper makes sure no secmmu context bound to the mm still
//! holds a translation for the range, forcing out any it finds
//! (`late_invalidations_caught`); taking each context's TLB lock to do so
//! also waits out device accesses in flight. After the copy it compares
//! destination and source before `migrate_vma_pages()` and aborts on a
//! difference (`thp_verify_failures`).
//!
//! The `unhardened` mode skips both and only drains the device after the
//! copy, before finalize: the ordering of the kernel before the fix, where
//! the secondary TLB was invalidated only after the copy.
//!
//! # What the helper trusts
//!
//! Nothing the user or the kernel hands it unchecked: the address must lie
//! below the mm's `TASK_SIZE`; the THP is looked up, and referenced, under
//! its PMD lock (the huge zero page is refused); and the helper copies only
//! if setup's source entry is `MIGRATE_PFN_VALID | MIGRATE_PFN_MIGRATE |
//! MIGRATE_PFN_COMPOUND` *and* is the folio found at lookup. A hole (the
//! THP went away in between) or another page is refused with nothing
//! mapped. The lookup reference is dropped just before setup, because
//! `migrate_vma_setup()` counts references and treats an extra one as a
//! pin (the THP would never move); from setup to finalize the folio is
//! held by the migration itself: isolated from the LRU, locked and
//! referenced.
//!
//! Every exit path goes through [`MigrateVma`], which drains the contexts
//! and calls `migrate_vma_pages()` and `migrate_vma_finalize()` exactly
//! once, and the destination folio is a [`DstFolio`], freed unless
//! migration took it.

use crate::{
    engine::Binding,
    events::{EventLog, Kind},
    mm_bindings as b,
    shared::{now_ns, Shared},
    stats::{Stat, Stats},
    tlb::{Pfn, HUGE_SIZE, PAGE_SIZE},
};
use core::{fmt, ops::Range, ptr::NonNull};
use kernel::{
    mm::{virt::VmaRef, MmWithUser},
    prelude::*,
    sync::{aref::ARef, Arc},
    time::{delay::fsleep, Delta},
    uaccess::UserSliceReader,
};

/// Pages in a PMD-mapped THP.
const NR_PAGES: usize = HUGE_SIZE / PAGE_SIZE;

/// The longest line `migrate_thp` accepts.
const MAX_LINE: usize = 128;

/// A parsed `PID ADDR NODE [unhardened]` request.
#[derive(Clone, Copy, Default)]
pub(crate) struct Request {
    pid: i32,
    addr: usize,
    node: i32,
    unhardened: bool,
}

/// The outcome of the last helper call, shown by reading `migrate_thp`.
#[derive(Clone, Copy, Default)]
pub(crate) struct LastResult {
    req: Request,
    valid: bool,
    from: i32,
    result: i32,
    copy_ns: u64,
    verify_ns: u64,
    total_ns: u64,
    verified: bool,
    caught: u64,
    /// Contexts bound to the mm that the helper checked and drained.
    checked: usize,
}

impl LastResult {
    /// One `key=value` line.
    pub(crate) fn show(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.valid {
            return writeln!(f, "none");
        }
        writeln!(
            f,
            "pid={} addr={:#x} from={} to={} mode={} result={} copy_ns={} verify_ns={} total_ns={} verified={} late_invalidations_caught={} contexts_checked={}",
            self.req.pid,
            self.req.addr,
            self.from,
            self.req.node,
            if self.req.unhardened { "unhardened" } else { "hardened" },
            self.result,
            self.copy_ns,
            self.verify_ns,
            self.total_ns,
            u8::from(self.verified),
            self.caught,
            self.checked,
        )
    }
}

pub(crate) fn parse_u64(s: &str) -> Result<u64> {
    let (digits, radix) = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => (hex, 16),
        None => (s, 10),
    };
    if digits.is_empty() {
        return Err(EINVAL);
    }
    u64::from_str_radix(digits, radix).map_err(|_| EINVAL)
}

/// Reads and parses one request line from a debugfs write.
pub(crate) fn read_request(reader: &mut UserSliceReader) -> Result<Request> {
    let len = reader.len();
    if len == 0 || len > MAX_LINE {
        return Err(EINVAL);
    }
    let mut buf = [0u8; MAX_LINE];
    let line = buf.get_mut(..len).ok_or(EINVAL)?;
    reader.read_slice(line)?;
    let text = core::str::from_utf8(line).map_err(|_| EINVAL)?;
    let mut fields = text.split_ascii_whitespace();
    let pid = fields
        .next()
        .ok_or(EINVAL)?
        .parse::<i32>()
        .map_err(|_| EINVAL)?;
    let addr = usize::try_from(parse_u64(fields.next().ok_or(EINVAL)?)?).map_err(|_| EINVAL)?;
    let node = fields
        .next()
        .ok_or(EINVAL)?
        .parse::<i32>()
        .map_err(|_| EINVAL)?;
    let unhardened = match fields.next() {
        None => false,
        Some("unhardened") => true,
        Some(_) => return Err(EINVAL),
    };
    if fields.next().is_some() || pid <= 0 {
        return Err(EINVAL);
    }
    Ok(Request {
        pid,
        addr,
        node,
        unhardened,
    })
}

/// A migrate PFN entry of `struct migrate_vma`'s `src`/`dst` arrays.
#[derive(Clone, Copy)]
struct Mpfn(usize);

impl Mpfn {
    /// `MIGRATE_PFN_VALID | MIGRATE_PFN_MIGRATE | MIGRATE_PFN_COMPOUND`:
    /// a whole THP, isolated and unmapped, to be copied.
    const WHOLE_THP: usize =
        (b::MIGRATE_PFN_VALID | b::MIGRATE_PFN_MIGRATE | b::MIGRATE_PFN_COMPOUND) as usize;

    fn has(self, flags: usize) -> bool {
        self.0 & flags == flags
    }

    /// The page, if the entry has one (`MIGRATE_PFN_VALID`); a hole has
    /// none.
    fn page(self) -> Option<Pfn> {
        self.has(b::MIGRATE_PFN_VALID as usize)
            .then_some(Pfn(self.0 >> b::MIGRATE_PFN_SHIFT))
    }
}

/// The mm of process `pid`, with an `mm_users` reference.
fn mm_by_pid(pid: i32) -> Result<ARef<MmWithUser>> {
    // SAFETY: no preconditions; returns an mm with an `mm_users` reference
    // (which the `ARef` takes over) or null.
    let mm = NonNull::new(unsafe { b::secmmu_get_mm_by_pid(pid) }).ok_or(ESRCH)?;
    // SAFETY: `mm` is a live mm with one `mm_users` reference, ours to
    // give: `ARef<MmWithUser>` drops it with `mmput()`.
    Ok(unsafe { ARef::from_raw(mm.cast()) })
}

/// A reference on the THP mapped at a PMD-aligned address, dropped with
/// `folio_put()`.
///
/// # Invariants
///
/// `head` is the head PFN of a PMD-order folio this holds a reference on.
struct FolioRef {
    head: Pfn,
}

impl FolioRef {
    /// The THP a huge PMD maps at `start` (inside `vma`) of `vma`'s mm.
    /// `-ENOENT`: none; `-EFAULT`: the huge zero page.
    fn lookup(vma: &VmaRef, start: usize) -> Result<Self> {
        let mm = vma.mm();
        let mut pfn = 0usize;
        // The `VmaRef` borrow shows the mmap (or VMA) lock is held, so the
        // page tables the walk reads stay allocated; `mm` has a user.
        // SAFETY: as just said; `pfn` is a valid out-pointer.
        let r = unsafe { b::secmmu_thp_folio_get(mm.as_raw(), start, (&raw mut pfn).cast()) };
        if r < 0 {
            return Err(Error::from_errno(r));
        }
        // INVARIANT: `secmmu_thp_folio_get` took a reference on this THP.
        Ok(Self { head: Pfn(pfn) })
    }

    /// The folio's PFNs.
    fn pfns(&self) -> Range<Pfn> {
        self.head..Pfn(self.head.0 + NR_PAGES)
    }

    /// The folio's NUMA node.
    fn nid(&self) -> i32 {
        // SAFETY: the folio is referenced (type invariant).
        unsafe { b::secmmu_pfn_to_nid(self.head.0) }
    }
}

impl Drop for FolioRef {
    fn drop(&mut self) {
        // SAFETY: drops the reference the type invariant says we hold.
        unsafe { b::secmmu_folio_put(self.head.0) };
    }
}

/// The destination THP: ours, locked, until migration takes it.
///
/// # Invariants
///
/// `mpfn` is a migrate PFN entry from `secmmu_alloc_thp_dst()` that was
/// not handed to migration.
struct DstFolio {
    mpfn: usize,
}

impl DstFolio {
    /// A free PMD-order folio on `node` only; `-ENOMEM` if there is none.
    fn alloc(node: i32) -> Result<Self> {
        // SAFETY: `node` is a valid node (checked by the caller).
        let mpfn = unsafe { b::secmmu_alloc_thp_dst(node) };
        if mpfn == 0 {
            return Err(ENOMEM);
        }
        // INVARIANT: just allocated, not handed over.
        Ok(Self { mpfn })
    }

    fn pfn(&self) -> Pfn {
        Pfn(self.mpfn >> b::MIGRATE_PFN_SHIFT)
    }

    /// Hands the folio to migration: finalize frees it if the move fails.
    fn into_mpfn(self) -> usize {
        let mpfn = self.mpfn;
        core::mem::forget(self);
        mpfn
    }
}

impl Drop for DstFolio {
    fn drop(&mut self) {
        // SAFETY: ours, not handed to migration (type invariant).
        unsafe { b::secmmu_free_thp_dst(self.mpfn) };
    }
}

/// The contexts bound to the mm, snapshotted before setup.
///
/// Must outlive the mmap lock: the last reference on a context may be
/// this one, and dropping it waits for SRCU. Dropping it disarms every
/// context, so no kept or stale translation survives it.
struct Bound {
    list: KVec<Arc<Binding>>,
    range: Range<usize>,
}

impl Bound {
    /// Every context bound to `mm`; `-ENOMEM` rather than a partial list.
    fn snapshot(shared: &Shared, mm: &MmWithUser, range: Range<usize>) -> Result<Self> {
        Ok(Self {
            list: shared.bound_to(mm)?,
            range,
        })
    }

    /// Arms the `late_invalidate` injection of every context for `pfns`.
    fn arm(&self, pfns: &Range<Pfn>) {
        for bnd in self.list.iter() {
            bnd.arm(self.range.clone(), pfns.clone());
        }
    }

    /// The source is isolated and held: kept translations come back stale.
    fn reinstate(&self, deadline: u64) {
        for bnd in self.list.iter() {
            bnd.reinstate(deadline);
        }
    }

    /// Drains every context; counts and logs those that still held a
    /// translation of the range (`late_invalidations_caught`) if `ev`.
    fn drain(&self, ev: Option<&EventLog>) -> u64 {
        let mut caught = 0;
        for bnd in self.list.iter() {
            let n = bnd.drain(self.range.start, self.range.end);
            if let (Some(ev), true) = (ev, n > 0) {
                caught += 1;
                bnd.stats().inc(Stat::LATE_INVALIDATIONS_CAUGHT);
                ev.record(bnd.ctx(), Kind::LateInvalidation, n as u64, 0, -1);
            }
        }
        caught
    }
}

impl Drop for Bound {
    fn drop(&mut self) {
        // A migration that got as far as setup drained in `MigrateVma`;
        // one that stopped before has only to disarm.
        for bnd in self.list.iter() {
            bnd.disarm();
        }
    }
}

/// A migration set up by `migrate_vma_setup()`, to be finished by
/// `migrate_vma_pages()` and `migrate_vma_finalize()` exactly once: by
/// [`MigrateVma::finish`], or on drop with nothing handed over (the source
/// is restored). The contexts are drained first, so no translation of the
/// source survives the folio's release.
///
/// # Invariants
///
/// `args` came back from a successful `migrate_vma_setup()` over one THP,
/// with `src`/`dst` pointing at `src`/`dst`'s `NR_PAGES` entries, and is
/// not finished yet.
struct MigrateVma<'a> {
    args: b::migrate_vma,
    src: KVec<usize>,
    dst: KVec<usize>,
    bound: &'a Bound,
}

impl<'a> MigrateVma<'a> {
    /// Collects and unmaps the THP at `range` of `vma` (whose mm's mmap
    /// lock the `vma` borrow shows is held).
    fn setup(vma: &'a VmaRef, range: &Range<usize>, bound: &'a Bound) -> Result<Self> {
        let mut src = KVec::<usize>::new();
        let mut dst = KVec::<usize>::new();
        src.resize(NR_PAGES, 0, GFP_KERNEL)?;
        dst.resize(NR_PAGES, 0, GFP_KERNEL)?;
        let mut args = b::migrate_vma {
            vma: vma.as_ptr(),
            dst: dst.as_mut_ptr(),
            src: src.as_mut_ptr(),
            cpages: 0,
            npages: 0,
            start: range.start,
            end: range.end,
            pgmap_owner: core::ptr::null_mut(),
            flags: (b::migrate_vma_direction_MIGRATE_VMA_SELECT_SYSTEM
                | b::migrate_vma_direction_MIGRATE_VMA_SELECT_COMPOUND) as usize,
            fault_page: core::ptr::null_mut(),
        };
        // `args`: one THP-sized, PMD-aligned range inside `vma` (checked by
        // the caller), `src`/`dst` arrays of `NR_PAGES` entries that outlive
        // it. The mmap lock is held for reading, as setup requires.
        // SAFETY: as just said.
        let r = unsafe { b::migrate_vma_setup(&raw mut args) };
        if r < 0 {
            return Err(Error::from_errno(r));
        }
        // INVARIANT: set up successfully, not finished.
        Ok(Self {
            args,
            src,
            dst,
            bound,
        })
    }

    /// The source entry of the THP's first page.
    fn src(&self) -> Mpfn {
        Mpfn(self.src.first().copied().unwrap_or(0))
    }

    /// Drains the contexts, hands `dst` over (if any), and finishes.
    /// Returns whether the THP moved.
    fn finish(mut self, dst: Option<DstFolio>) -> bool {
        let moved = self.complete(dst);
        core::mem::forget(self);
        moved
    }

    fn complete(&mut self, dst: Option<DstFolio>) -> bool {
        self.bound.drain(None);
        if let (Some(d), Some(slot)) = (dst, self.dst.first_mut()) {
            *slot = d.into_mpfn();
        }
        // SAFETY: set up and not finished (type invariant); `dst` holds 0
        // or our locked destination folio for the first entry.
        unsafe { b::migrate_vma_pages(&raw mut self.args) };
        let moved = self.src().has(b::MIGRATE_PFN_MIGRATE as usize);
        // SAFETY: as above. Finalize releases the source (or, if the move
        // failed, the destination) and removes the migration entries.
        unsafe { b::migrate_vma_finalize(&raw mut self.args) };
        let src = core::mem::take(&mut self.src);
        let dst = core::mem::take(&mut self.dst);
        drop((src, dst));
        moved
    }
}

impl Drop for MigrateVma<'_> {
    fn drop(&mut self) {
        self.complete(None);
    }
}

/// What the migration observed, for the result line.
struct Done {
    from: i32,
    copy_ns: u64,
    verify_ns: u64,
    verified: bool,
    caught: u64,
    checked: usize,
}

/// Runs one migration; records its result in `last`.
pub(crate) fn migrate_thp(shared: &Shared, req: Request, last: &mut LastResult) -> Result {
    *last = LastResult {
        req,
        valid: true,
        from: -1,
        ..Default::default()
    };
    let t0 = now_ns();
    let r = run(shared, req);
    last.total_ns = now_ns().saturating_sub(t0);
    match &r {
        Ok(done) => {
            last.from = done.from;
            last.copy_ns = done.copy_ns;
            last.verify_ns = done.verify_ns;
            last.verified = done.verified;
            last.caught = done.caught;
            last.checked = done.checked;
            Stats::inc_global(Stat::THP_MIGRATIONS);
        }
        Err(f) => {
            last.from = f.from;
            last.result = f.err.to_errno();
            last.copy_ns = f.copy_ns;
            last.verify_ns = f.verify_ns;
            Stats::inc_global(Stat::THP_MIGRATION_FAILURES);
            pr_info!(
                "migrate_thp: pid {} addr {:#x} node {}: {} ({})\n",
                req.pid,
                req.addr,
                req.node,
                f.why,
                f.err.to_errno()
            );
        }
    }
    r.map(|_| ()).map_err(|f| f.err)
}

/// Why a migration failed, and what it had measured by then.
struct Failure {
    err: Error,
    /// The THP's node, -1 if it was not found.
    from: i32,
    why: &'static str,
    /// Time of the copy in ns; 0 unless it was made.
    copy_ns: u64,
    /// Time of the comparison in ns; 0 unless it was made.
    verify_ns: u64,
}

impl Failure {
    fn new(err: Error, from: i32, why: &'static str) -> Self {
        Self {
            err,
            from,
            why,
            copy_ns: 0,
            verify_ns: 0,
        }
    }
}

/// The PMD-aligned 2 MiB block around `addr`, if it lies below `mm`'s
/// `TASK_SIZE`.
fn thp_block(mm: &MmWithUser, addr: usize) -> Option<Range<usize>> {
    let task_size = crate::engine::task_size(mm);
    let start = addr & !(HUGE_SIZE - 1);
    let end = start.checked_add(HUGE_SIZE)?;
    (addr < task_size && end <= task_size).then_some(start..end)
}

/// Whether `vma` is anonymous and private.
fn is_anon_private(vma: &VmaRef) -> bool {
    // SAFETY: the `VmaRef` borrow shows the mmap lock is held, under which
    // `vm_ops` is stable (`vma_is_anonymous()` reads the same field).
    let anon = unsafe { (*vma.as_ptr()).vm_ops.is_null() };
    anon && vma.flags() & kernel::mm::virt::flags::SHARED == 0
}

fn run(shared: &Shared, req: Request) -> core::result::Result<Done, Failure> {
    let fail = |err: Error, why: &'static str| Failure::new(err, -1, why);
    // SAFETY: no preconditions.
    if !unsafe { b::secmmu_node_valid(req.node) } {
        return Err(fail(EINVAL, "node offline, without memory or out of range"));
    }
    let mm = mm_by_pid(req.pid).map_err(|e| fail(e, "no such process, or it has no mm"))?;
    let range = thp_block(&mm, req.addr).ok_or_else(|| fail(EFAULT, "address past TASK_SIZE"))?;
    // Declared before the lock guard, so dropped after it.
    let bound = Bound::snapshot(shared, &mm, range.clone())
        .map_err(|e| fail(e, "out of memory listing the bound contexts"))?;
    let guard = mm.mmap_read_lock();
    let vma = guard
        .vma_lookup(req.addr)
        .ok_or_else(|| fail(EFAULT, "address not in any VMA"))?;
    if !is_anon_private(vma) {
        return Err(fail(EINVAL, "address not in an anonymous private VMA"));
    }
    if range.start < vma.start() || range.end > vma.end() {
        return Err(fail(ENOENT, "no PMD-mapped THP there"));
    }
    let folio = FolioRef::lookup(vma, range.start).map_err(|e| match e {
        e if e == EFAULT => fail(e, "the huge zero page maps it"),
        e => fail(e, "no PMD-mapped THP there"),
    })?;
    let from = folio.nid();
    let fail = |err: Error, why: &'static str| Failure::new(err, from, why);
    if from == req.node {
        return Err(fail(EALREADY, "THP already on that node"));
    }
    let dst = DstFolio::alloc(req.node).map_err(|e| fail(e, "no huge page free on the node"))?;
    let moved = move_thp(shared, &req, vma, folio, dst, &bound)?;
    // Confirm: still a THP, now on the node.
    let new = FolioRef::lookup(vma, range.start).map_or((-1, 0), |f| (f.nid(), f.head.0));
    drop(guard);
    let ev = &shared.events;
    if new.0 != req.node {
        ev.record(0, Kind::MigrateAbort, EAGAIN.to_errno() as u64, 0, new.0);
        return Err(Failure {
            copy_ns: moved.copy.copy_ns,
            verify_ns: moved.copy.verify_ns,
            ..fail(EAGAIN, "moved, but not as a THP on the node")
        });
    }
    ev.record(
        0,
        Kind::MigrateDone,
        req.node as u64,
        new.1 as u64,
        req.node,
    );
    Ok(Done {
        from,
        copy_ns: moved.copy.copy_ns,
        verify_ns: moved.copy.verify_ns,
        verified: !req.unhardened,
        caught: moved.caught,
        checked: bound.list.len(),
    })
}

/// What [`move_thp`] measured.
struct Moved {
    copy: Copied,
    caught: u64,
}

/// Checks setup's source entry: the whole THP found at lookup, isolated.
fn check_source(src: Mpfn, head: Pfn) -> core::result::Result<(), (Error, &'static str)> {
    if !src.has(Mpfn::WHOLE_THP) {
        // Collect marks a hole MIGRATE without a page; a THP it skipped, or
        // that unmap restored (pinned, not isolated), comes back as 0.
        return Err(match src.page() {
            None if src.has(b::MIGRATE_PFN_MIGRATE as usize) => {
                (EAGAIN, "the THP went away before setup (a hole)")
            }
            _ => (EBUSY, "the kernel would not isolate the THP"),
        });
    }
    if src.page() != Some(head) {
        return Err((EAGAIN, "setup collected another page than the lookup"));
    }
    Ok(())
}

/// Steps 7 to 13 of design.rst: isolates the THP `folio` (whose reference
/// this drops before setup), hardens, copies into `dst`, checks and hands
/// over. Every path drains `bound` before finalize ([`MigrateVma`]).
fn move_thp(
    shared: &Shared,
    req: &Request,
    vma: &VmaRef,
    folio: FolioRef,
    dst: DstFolio,
    bound: &Bound,
) -> core::result::Result<Moved, Failure> {
    let from = folio.nid();
    let fail = |err: Error, why: &'static str| Failure::new(err, from, why);
    let range = &bound.range;
    let inject_us = shared.late_invalidate_us();
    if inject_us > 0 {
        bound.arm(&folio.pfns());
    }
    // Setup counts references: ours would read as a pin (module doc).
    let head = folio.head;
    drop(folio);
    let mig =
        MigrateVma::setup(vma, range, bound).map_err(|e| fail(e, "migrate_vma_setup failed"))?;
    check_source(mig.src(), head).map_err(|(err, why)| fail(err, why))?;
    let ev = &shared.events;
    ev.record(0, Kind::Unmap, range.start as u64, range.end as u64, from);
    if inject_us > 0 {
        // The source is now isolated, locked and referenced by migration.
        // Unhardened, the stale translations last until the drain that
        // follows the copy by the injected delay (the pre-fix ordering).
        let deadline = match req.unhardened {
            true => u64::MAX,
            false => now_ns().saturating_add(inject_us.saturating_mul(1000)),
        };
        bound.reinstate(deadline);
    }
    let caught = if req.unhardened {
        0
    } else {
        bound.drain(Some(ev))
    };
    let copy = copy_and_check(shared, req, head, &dst, inject_us);
    let with_times = |f: Failure| Failure {
        copy_ns: copy.copy_ns,
        verify_ns: copy.verify_ns,
        ..f
    };
    if copy.differs {
        Stats::inc_global(Stat::THP_VERIFY_FAILURES);
        drop(mig);
        ev.record(0, Kind::MigrateAbort, EIO.to_errno() as u64, 0, from);
        return Err(with_times(fail(
            EIO,
            "destination differs from source after the copy",
        )));
    }
    let moved = mig.finish(Some(dst));
    ev.record(
        0,
        Kind::Remap,
        range.start as u64,
        range.end as u64,
        req.node,
    );
    if !moved {
        ev.record(0, Kind::MigrateAbort, EAGAIN.to_errno() as u64, 0, from);
        return Err(with_times(fail(
            EAGAIN,
            "migrate_vma_pages did not move the THP",
        )));
    }
    Ok(Moved { copy, caught })
}

/// The copy's timings, and whether the check found a difference.
struct Copied {
    copy_ns: u64,
    verify_ns: u64,
    differs: bool,
}

/// Copies the isolated source THP at `src` to `dst`; then, hardened,
/// compares them, or, unhardened (the pre-fix ordering: the secondary TLB
/// hears of it only after the copy), lets injected stale translations live
/// on for `inject_us` before the caller drains the device.
fn copy_and_check(
    shared: &Shared,
    req: &Request,
    src: Pfn,
    dst: &DstFolio,
    inject_us: u64,
) -> Copied {
    let ev = &shared.events;
    let dst_pfn = dst.pfn();
    ev.record(0, Kind::CopyBegin, src.0 as u64, dst_pfn.0 as u64, req.node);
    let t0 = now_ns();
    // SAFETY: both are PMD-order folios held for the copy: the source
    // isolated and locked by setup, the destination ours and locked.
    unsafe { b::secmmu_copy_thp(dst_pfn.0, src.0) };
    let copy_ns = now_ns().saturating_sub(t0);
    if shared.corrupt_copy() {
        // SAFETY: the destination is ours and locked (hardened, it is then
        // compared with the source and, differing, freed; unhardened, the
        // corrupted copy is installed, as documented).
        unsafe { b::secmmu_corrupt_thp(dst_pfn.0) };
    }
    ev.record(0, Kind::CopyEnd, src.0 as u64, dst_pfn.0 as u64, req.node);
    if req.unhardened {
        if inject_us > 0 {
            // At most `MAX_LATE_INVALIDATE_US`: fits.
            fsleep(Delta::from_micros(
                i64::try_from(inject_us).unwrap_or(i64::MAX),
            ));
        }
        return Copied {
            copy_ns,
            verify_ns: 0,
            differs: false,
        };
    }
    let t1 = now_ns();
    // SAFETY: as for the copy.
    let diff = unsafe { b::secmmu_cmp_thp(dst_pfn.0, src.0) };
    Copied {
        copy_ns,
        verify_ns: now_ns().saturating_sub(t1),
        differs: diff >= 0,
    }
}
