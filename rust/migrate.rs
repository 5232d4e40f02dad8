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

use crate::{
    events::Kind,
    mm_bindings as b,
    shared::{now_ns, Shared},
    stats::{Stat, Stats},
    tlb::{HUGE_SIZE, PAGE_SIZE},
};
use core::fmt;
use kernel::{
    bindings,
    mm::MmWithUser,
    prelude::*,
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
}

impl LastResult {
    /// One `key=value` line.
    pub(crate) fn show(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.valid {
            return writeln!(f, "none");
        }
        writeln!(
            f,
            "pid={} addr={:#x} from={} to={} mode={} result={} copy_ns={} verify_ns={} total_ns={} verified={} late_invalidations_caught={}",
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

/// An mm with an `mm_users` reference, dropped with `mmput()`.
///
/// # Invariants
///
/// `0` is a valid mm on which this holds one `mm_users` reference.
struct MmUser(*mut bindings::mm_struct);

impl MmUser {
    fn by_pid(pid: i32) -> Result<Self> {
        // SAFETY: no preconditions; returns a referenced mm or null.
        let mm = unsafe { b::secmmu_get_mm_by_pid(pid) };
        if mm.is_null() {
            return Err(ESRCH);
        }
        // INVARIANT: non-null, referenced by `secmmu_get_mm_by_pid`.
        Ok(Self(mm))
    }

    fn get(&self) -> &MmWithUser {
        // SAFETY: the mm has a user reference while `self` lives (type
        // invariant) and the result borrows `self`.
        unsafe { MmWithUser::from_raw(self.0) }
    }
}

impl Drop for MmUser {
    fn drop(&mut self) {
        // SAFETY: drops the reference the type invariant says we hold.
        unsafe { bindings::mmput(self.0) };
    }
}

/// What the migration observed, for the result line.
struct Done {
    from: i32,
    copy_ns: u64,
    verify_ns: u64,
    verified: bool,
    caught: u64,
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

fn run(shared: &Shared, req: Request) -> core::result::Result<Done, Failure> {
    let fail = |err: Error, why: &'static str| Failure {
        err,
        from: -1,
        why,
        copy_ns: 0,
        verify_ns: 0,
    };
    // SAFETY: no preconditions.
    if !unsafe { b::secmmu_node_valid(req.node) } {
        return Err(fail(EINVAL, "node offline, without memory or out of range"));
    }
    let mm = MmUser::by_pid(req.pid).map_err(|e| fail(e, "no such process, or it has no mm"))?;
    let start = req.addr & !(HUGE_SIZE - 1);
    let end = start + HUGE_SIZE;
    let guard = mm.get().mmap_read_lock();
    let mut vma: *mut bindings::vm_area_struct = core::ptr::null_mut();
    let mut pfn = 0usize;
    // SAFETY: `mm` has a user and its mmap lock is held for reading; the
    // out-pointers are valid locals.
    let r = unsafe { b::secmmu_thp_lookup(mm.0, req.addr, &raw mut vma, &raw mut pfn) };
    if r < 0 {
        let why = match r {
            r if r == -(bindings::EFAULT as i32) => "address not in any VMA",
            r if r == -(bindings::EINVAL as i32) => "address not in an anonymous private VMA",
            _ => "no PMD-mapped THP there",
        };
        return Err(fail(Error::from_errno(r), why));
    }
    // SAFETY: `pfn` heads a THP mapped right now (lookup under the lock).
    let from = unsafe { b::secmmu_pfn_to_nid(pfn) };
    let fail = |err: Error, why: &'static str| Failure {
        err,
        from,
        why,
        copy_ns: 0,
        verify_ns: 0,
    };
    if from == req.node {
        return Err(fail(EALREADY, "THP already on that node"));
    }
    // SAFETY: `node` is valid (checked above).
    let dst_mpfn = unsafe { b::secmmu_alloc_thp_dst(req.node) };
    if dst_mpfn == 0 {
        return Err(fail(ENOMEM, "no huge page free on the node"));
    }
    let mut src = KVec::<usize>::new();
    let mut dst = KVec::<usize>::new();
    let alloc = src
        .resize(NR_PAGES, 0, GFP_KERNEL)
        .and_then(|()| dst.resize(NR_PAGES, 0, GFP_KERNEL));
    if alloc.is_err() {
        // SAFETY: `dst_mpfn` came from `secmmu_alloc_thp_dst` and was not
        // handed to migration.
        unsafe { b::secmmu_free_thp_dst(dst_mpfn) };
        return Err(fail(ENOMEM, "out of memory"));
    }
    let mut args = b::migrate_vma {
        vma,
        dst: dst.as_mut_ptr(),
        src: src.as_mut_ptr(),
        cpages: 0,
        npages: 0,
        start,
        end,
        pgmap_owner: core::ptr::null_mut(),
        flags: (b::migrate_vma_direction_MIGRATE_VMA_SELECT_SYSTEM
            | b::migrate_vma_direction_MIGRATE_VMA_SELECT_COMPOUND) as usize,
        fault_page: core::ptr::null_mut(),
    };
    let bound = shared.bound_to(mm.0 as usize).unwrap_or_default();
    shared.set_migrating(Some((mm.0 as usize, start, end)));
    // SAFETY: `args` describes `[start, end)` inside `vma` (checked by the
    // lookup), with `src`/`dst` arrays of `NR_PAGES` entries; the mmap lock
    // is held for reading, as `migrate_vma_setup` requires.
    let r = unsafe { b::migrate_vma_setup(&raw mut args) };
    if r < 0 {
        shared.set_migrating(None);
        // SAFETY: not handed to migration.
        unsafe { b::secmmu_free_thp_dst(dst_mpfn) };
        return Err(fail(Error::from_errno(r), "migrate_vma_setup failed"));
    }
    let s0 = src.first().copied().unwrap_or(0);
    let want = (b::MIGRATE_PFN_MIGRATE | b::MIGRATE_PFN_COMPOUND) as usize;
    if args.cpages == 0 || s0 & want != want {
        // Nothing (or not the whole THP) could be isolated: hand nothing
        // over, restore the mapping. Translations the injection kept stale
        // go too, whatever page they point at.
        for bnd in bound.iter() {
            bnd.force_invalidate(start, end);
        }
        // SAFETY: `args` came back from a successful setup; all `dst` are 0.
        unsafe {
            b::migrate_vma_pages(&raw mut args);
            b::migrate_vma_finalize(&raw mut args);
        }
        shared.set_migrating(None);
        // SAFETY: not handed to migration.
        unsafe { b::secmmu_free_thp_dst(dst_mpfn) };
        return Err(fail(EBUSY, "the kernel would not isolate the THP"));
    }
    let ev = &shared.events;
    ev.record(0, Kind::Unmap, start as u64, end as u64, from);

    // Hardening: no secondary TLB may still map the source, and no device
    // access through one may be in flight, before the copy.
    let mut caught = 0u64;
    if !req.unhardened {
        for bnd in bound.iter() {
            let n = bnd.force_invalidate(start, end);
            if n > 0 {
                caught += 1;
                bnd.stats().inc(Stat::LATE_INVALIDATIONS_CAUGHT);
                ev.record(bnd.ctx(), Kind::LateInvalidation, n as u64, 0, -1);
            }
        }
    }

    // SAFETY: `s0` is a migrate PFN entry returned by setup.
    let src_pfn = unsafe { b::secmmu_mpfn_to_pfn(s0) };
    // SAFETY: `dst_mpfn` is a migrate PFN entry of our destination folio.
    let dst_pfn = unsafe { b::secmmu_mpfn_to_pfn(dst_mpfn) };
    ev.record(0, Kind::CopyBegin, src_pfn as u64, dst_pfn as u64, req.node);
    let t0 = now_ns();
    // SAFETY: both are PMD-order folios we hold: the source isolated and
    // locked by setup, the destination ours and locked.
    unsafe { b::secmmu_copy_thp(dst_pfn, src_pfn) };
    let copy_ns = now_ns().saturating_sub(t0);
    if shared.corrupt_copy() {
        // SAFETY: the destination is ours and locked; it is about to be
        // compared with the source and, differing, freed.
        unsafe { b::secmmu_corrupt_thp(dst_pfn) };
    }
    ev.record(0, Kind::CopyEnd, src_pfn as u64, dst_pfn as u64, req.node);

    let mut verified = false;
    let mut verify_ns = 0;
    if req.unhardened {
        // The pre-fix ordering: the secondary TLB hears of it only now,
        // after the copy. Let injected late invalidations run their course,
        // then drain the device before the source can be freed.
        for bnd in bound.iter() {
            let deadline = bnd.stale_deadline(start, end);
            let now = now_ns();
            if deadline > now {
                let us = ((deadline - now) / 1000).saturating_add(1);
                fsleep(Delta::from_micros(i64::try_from(us).unwrap_or(i64::MAX)));
            }
            bnd.force_invalidate(start, end);
        }
    } else {
        let t1 = now_ns();
        // SAFETY: as for the copy.
        let diff = unsafe { b::secmmu_cmp_thp(dst_pfn, src_pfn) };
        verify_ns = now_ns().saturating_sub(t1);
        if diff >= 0 {
            Stats::inc_global(Stat::THP_VERIFY_FAILURES);
            // SAFETY: as above; `dst` is still all 0: nothing handed over.
            unsafe {
                b::migrate_vma_pages(&raw mut args);
                b::migrate_vma_finalize(&raw mut args);
            }
            shared.set_migrating(None);
            // SAFETY: not handed to migration.
            unsafe { b::secmmu_free_thp_dst(dst_mpfn) };
            ev.record(0, Kind::MigrateAbort, EIO.to_errno() as u64, 0, from);
            return Err(Failure {
                copy_ns,
                verify_ns,
                ..fail(EIO, "destination differs from source after the copy")
            });
        }
        verified = true;
    }

    if let Some(d) = dst.first_mut() {
        *d = dst_mpfn;
    }
    // SAFETY: `args` from a successful setup; `dst[0]` is our locked folio.
    unsafe { b::migrate_vma_pages(&raw mut args) };
    let moved = src
        .first()
        .is_some_and(|s| s & (b::MIGRATE_PFN_MIGRATE as usize) != 0);
    ev.record(0, Kind::Remap, start as u64, end as u64, req.node);
    shared.set_migrating(None);
    // SAFETY: as above. Finalize releases the source (or, if the move
    // failed, the destination) and removes the migration entries.
    unsafe { b::migrate_vma_finalize(&raw mut args) };
    if !moved {
        ev.record(0, Kind::MigrateAbort, EAGAIN.to_errno() as u64, 0, from);
        return Err(Failure {
            copy_ns,
            verify_ns,
            ..fail(EAGAIN, "migrate_vma_pages did not move the THP")
        });
    }

    // Confirm: still a THP, now on the node.
    let mut pfn2 = 0usize;
    // SAFETY: as for the first lookup; the lock is still held.
    let r = unsafe { b::secmmu_thp_lookup(mm.0, req.addr, &raw mut vma, &raw mut pfn2) };
    let nid = if r == 0 {
        // SAFETY: the lookup found a THP mapped at `pfn2` right now.
        unsafe { b::secmmu_pfn_to_nid(pfn2) }
    } else {
        -1
    };
    drop(guard);
    if nid != req.node {
        ev.record(0, Kind::MigrateAbort, EAGAIN.to_errno() as u64, 0, nid);
        return Err(Failure {
            copy_ns,
            verify_ns,
            ..fail(EAGAIN, "moved, but not as a THP on the node")
        });
    }
    ev.record(0, Kind::MigrateDone, req.node as u64, pfn2 as u64, req.node);
    Ok(Done {
        from,
        copy_ns,
        verify_ns,
        verified,
        caught,
    })
}
