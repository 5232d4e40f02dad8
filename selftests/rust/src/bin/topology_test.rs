// SPDX-License-Identifier: GPL-2.0

//! The test VM's topology is what the secmmu scenarios need: two NUMA nodes
//! with one CPU each, transparent huge pages that really back a 2 MiB
//! mapping, and NUMA balancing that can be switched on. Prints KTAP.

use secmmu_selftests::{
    anon_huge_kib, check, parse_list, read, run_ktap, selected_choice, Case, Outcome,
};
use std::fs;

const NODE: &str = "/sys/devices/system/node";
const THP: &str = "/sys/kernel/mm/transparent_hugepage/enabled";
const BALANCING: &str = "/proc/sys/kernel/numa_balancing";
const HPAGE: usize = 2 << 20;

fn two_nodes() -> Outcome {
    check((|| {
        let nodes = parse_list(&read(format!("{NODE}/online"))?)?;
        if nodes != [0, 1] {
            return Err(format!("online nodes are {nodes:?}, want [0, 1]"));
        }
        Ok(())
    })())
}

fn one_cpu_per_node() -> Outcome {
    check((|| {
        for node in 0..2u32 {
            let cpus = parse_list(&read(format!("{NODE}/node{node}/cpulist"))?)?;
            if cpus != [node] {
                return Err(format!("node{node} has CPUs {cpus:?}, want [{node}]"));
            }
        }
        Ok(())
    })())
}

fn nodes_have_memory() -> Outcome {
    check((|| {
        let nodes = parse_list(&read(format!("{NODE}/has_normal_memory"))?)?;
        if nodes != [0, 1] {
            return Err(format!("nodes with memory are {nodes:?}, want [0, 1]"));
        }
        Ok(())
    })())
}

fn thp_madvise_mode() -> Outcome {
    check((|| {
        let s = read(THP)?;
        match selected_choice(&s) {
            Some("madvise") | Some("always") => Ok(()),
            other => Err(format!("THP mode is {other:?} ('{}')", s.trim())),
        }
    })())
}

/// Maps 4 MiB, takes its 2 MiB-aligned half, asks for THP and touches it:
/// smaps must then show at least one huge page.
fn thp_backs_madvised_range() -> Outcome {
    check((|| {
        let len = 2 * HPAGE;
        // SAFETY: an anonymous private mapping with no address hint.
        let base = unsafe { libc_mmap(len) };
        if base.is_null() {
            return Err("mmap failed".into());
        }
        let aligned = ((base as usize + HPAGE - 1) & !(HPAGE - 1)) as *mut u8;
        // SAFETY: [aligned, aligned + HPAGE) lies inside the mapping.
        let rc = unsafe { madvise(aligned.cast(), HPAGE, MADV_HUGEPAGE) };
        if rc != 0 {
            return Err("madvise(MADV_HUGEPAGE) failed".into());
        }
        for off in (0..HPAGE).step_by(4096) {
            // SAFETY: in bounds of the mapping, which is readable and writable.
            unsafe { aligned.add(off).write_volatile(1) };
        }
        let kib = anon_huge_kib(&read("/proc/self/smaps")?);
        // SAFETY: unmapping exactly what was mapped above.
        unsafe { munmap(base.cast(), len) };
        if kib < 2048 {
            return Err(format!(
                "AnonHugePages is {kib} kB after touching a madvised 2 MiB range"
            ));
        }
        Ok(())
    })())
}

fn numa_balancing_can_be_enabled() -> Outcome {
    check((|| {
        let old = read(BALANCING)?;
        fs::write(BALANCING, "1").map_err(|e| format!("{BALANCING}: {e}"))?;
        let now = read(BALANCING)?;
        fs::write(BALANCING, old.trim()).map_err(|e| format!("{BALANCING}: {e}"))?;
        if now.trim() != "1" {
            return Err(format!(
                "numa_balancing reads '{}' after writing 1",
                now.trim()
            ));
        }
        Ok(())
    })())
}

const PROT_READ: i32 = 1;
const PROT_WRITE: i32 = 2;
const MAP_PRIVATE: i32 = 2;
const MAP_ANONYMOUS: i32 = 0x20;
const MADV_HUGEPAGE: i32 = 14;

extern "C" {
    fn mmap(addr: *mut u8, len: usize, prot: i32, flags: i32, fd: i32, off: i64) -> *mut u8;
    fn munmap(addr: *mut u8, len: usize) -> i32;
    fn madvise(addr: *mut u8, len: usize, advice: i32) -> i32;
}

/// `mmap` of anonymous memory; null on failure.
unsafe fn libc_mmap(len: usize) -> *mut u8 {
    // SAFETY: the caller's contract; no hint, no file.
    let p = unsafe {
        mmap(
            core::ptr::null_mut(),
            len,
            PROT_READ | PROT_WRITE,
            MAP_PRIVATE | MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p as isize == -1 {
        core::ptr::null_mut()
    } else {
        p
    }
}

fn main() {
    let cases = [
        Case {
            name: "two_numa_nodes",
            run: two_nodes,
        },
        Case {
            name: "one_cpu_per_node",
            run: one_cpu_per_node,
        },
        Case {
            name: "nodes_have_memory",
            run: nodes_have_memory,
        },
        Case {
            name: "thp_madvise_mode",
            run: thp_madvise_mode,
        },
        Case {
            name: "thp_backs_madvised_range",
            run: thp_backs_madvised_range,
        },
        Case {
            name: "numa_balancing_can_be_enabled",
            run: numa_balancing_can_be_enabled,
        },
    ];
    std::process::exit(run_ktap(&cases));
}
