// SPDX-License-Identifier: GPL-2.0

//! The `include/uapi/secmmu.h` ABI for userspace Rust: the structures
//! mirrored with `#[repr(C)]` (sizes asserted at compile time against the
//! values the C selftests assert for the header) and the ioctl numbers
//! built the way `<linux/ioctl.h>` builds them.

#![allow(missing_docs)]

use std::mem::size_of;

pub const MAGIC: u64 = 0xB7;
pub const NR_STATS: usize = 22;
/// `SECMMU_STREAM_ONCE`: one pass over the slots, then the stream stops.
pub const STREAM_ONCE: u32 = 1;
pub const STAT_INVALIDATIONS: usize = 2;
pub const STAT_INVALIDATED_ENTRIES: usize = 3;
pub const STAT_TLB_HITS: usize = 5;
pub const STAT_TLB_MISSES: usize = 6;
pub const STAT_TLB_FILLS: usize = 7;
pub const STAT_TLB_EVICTIONS: usize = 8;
pub const STAT_FILL_RETRIES: usize = 9;
pub const STAT_DEVICE_WRITES: usize = 10;
pub const STAT_DEVICE_FAULTS: usize = 12;
pub const STAT_STREAM_WRITES: usize = 13;
pub const STAT_LOST_WRITES: usize = 14;
pub const STAT_STALE_ACCESSES: usize = 16;
pub const STAT_LATE_INVALIDATIONS_CAUGHT: usize = 19;

#[repr(C)]
#[derive(Default)]
pub struct Bind {
    pub tlb_entries: u32,
    pub flags: u32,
}

#[repr(C)]
#[derive(Default)]
pub struct Access {
    pub addr: u64,
    pub len: u64,
    pub value: u64,
    pub user_buf: u64,
    pub flags: u32,
    pub pad: u32,
}

#[repr(C)]
#[derive(Default)]
pub struct Stream {
    pub addr: u64,
    pub stride: u64,
    pub slots: u32,
    pub flags: u32,
}

#[repr(C)]
#[derive(Default, Debug)]
pub struct Verify {
    pub slots: u64,
    pub lost_writes: u64,
    pub writes: u64,
    pub first_lost_slot: u64,
}

#[repr(C)]
#[derive(Default)]
pub struct Stats {
    pub counters: [u64; NR_STATS],
    pub tlb_entries: u32,
    pub tlb_capacity: u32,
    pub ctx_id: u32,
    pub pad: u32,
}

const _: () = assert!(size_of::<Bind>() == 8);
const _: () = assert!(size_of::<Access>() == 40);
const _: () = assert!(size_of::<Stream>() == 24);
const _: () = assert!(size_of::<Verify>() == 32);
const _: () = assert!(size_of::<Stats>() == 8 * NR_STATS + 16);

const IOC_WRITE: u64 = 1;
const IOC_READ: u64 = 2;

/// `_IOC(dir, type, nr, size)` for x86.
pub const fn ioc(dir: u64, nr: u64, size: usize) -> u64 {
    (dir << 30) | ((size as u64) << 16) | (MAGIC << 8) | nr
}

pub const BIND: u64 = ioc(IOC_WRITE, 0x01, size_of::<Bind>());
pub const UNBIND: u64 = ioc(0, 0x02, 0);
pub const WRITE: u64 = ioc(IOC_WRITE, 0x03, size_of::<Access>());
pub const READ: u64 = ioc(IOC_WRITE, 0x04, size_of::<Access>());
pub const STREAM_START: u64 = ioc(IOC_WRITE, 0x05, size_of::<Stream>());
pub const STREAM_STOP: u64 = ioc(0, 0x06, 0);
pub const STREAM_VERIFY: u64 = ioc(IOC_READ, 0x07, size_of::<Verify>());
pub const TLB_FLUSH: u64 = ioc(0, 0x08, 0);
pub const GET_STATS: u64 = ioc(IOC_READ, 0x09, size_of::<Stats>());

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ioctl_numbers_match_the_c_macros() {
        // Values of the header's macros as computed by the C preprocessor
        // for x86_64 (_IOW(0xB7, 1, struct secmmu_bind) and so on).
        assert_eq!(BIND, 0x4008_b701);
        assert_eq!(UNBIND, 0x0000_b702);
        assert_eq!(WRITE, 0x4028_b703);
        assert_eq!(READ, 0x4028_b704);
        assert_eq!(STREAM_START, 0x4018_b705);
        assert_eq!(STREAM_VERIFY, 0x8020_b707);
        assert_eq!(GET_STATS, 0x80c0_b709);
    }
}
