// SPDX-License-Identifier: GPL-2.0

//! secmmu device selftests in Rust: a write/read round trip through the
//! ABI, and a device stream over 4 KiB pages racing move_pages(2)
//! ping-pong of every page between the two nodes. Prints KTAP.

use secmmu_selftests::abi::{self as secmmu, Access, Bind, Stats, Stream, Verify};
use secmmu_selftests::sys::{self, ioctl_ptr, Mapping};
use secmmu_selftests::{check, run_ktap, Case, Outcome};
use std::fs::OpenOptions;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

const PAGE: usize = 4096;

fn open_bound() -> Result<std::fs::File, String> {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/secmmu")
        .map_err(|e| format!("/dev/secmmu: {e}"))?;
    let mut b = Bind::default();
    ioctl_ptr(f.as_raw_fd(), secmmu::BIND, &mut b).map_err(|e| format!("bind: {e}"))?;
    Ok(f)
}

fn stats(fd: i32) -> Result<Stats, String> {
    let mut s = Stats::default();
    ioctl_ptr(fd, secmmu::GET_STATS, &mut s).map_err(|e| format!("stats: {e}"))?;
    Ok(s)
}

fn round_trip() -> Outcome {
    check((|| {
        let f = open_bound()?;
        let m = Mapping::new(2 * PAGE, sys::MAP_POPULATE).map_err(|e| e.to_string())?;
        let src: Vec<u8> = (0..PAGE).map(|i| (i * 7) as u8).collect();
        let mut a = Access {
            addr: m.ptr as u64 + 100,
            len: PAGE as u64,
            user_buf: src.as_ptr() as u64,
            ..Default::default()
        };
        ioctl_ptr(f.as_raw_fd(), secmmu::WRITE, &mut a).map_err(|e| format!("write: {e}"))?;
        // SAFETY: inside the mapping.
        let cpu = unsafe { std::slice::from_raw_parts(m.ptr.add(100), PAGE) };
        if cpu != &src[..] {
            return Err("the CPU does not see the device write".into());
        }
        let mut back = vec![0u8; PAGE];
        a.user_buf = back.as_mut_ptr() as u64;
        ioctl_ptr(f.as_raw_fd(), secmmu::READ, &mut a).map_err(|e| format!("read: {e}"))?;
        if back != src {
            return Err("the device read differs".into());
        }
        let s = stats(f.as_raw_fd())?;
        if s.counters[secmmu::STAT_TLB_FILLS] != 2 {
            return Err(format!(
                "tlb_fills {}, want 2",
                s.counters[secmmu::STAT_TLB_FILLS]
            ));
        }
        Ok(())
    })())
}

fn nodes_of(pages: &[*mut u8]) -> Result<Vec<i32>, String> {
    let mut status = vec![-1; pages.len()];
    sys::move_pages(pages, None, &mut status).map_err(|e| format!("move_pages query: {e}"))?;
    Ok(status)
}

/// Waits (10 ms polls, at most 20 s) until the context's `STREAM_WRITES`
/// reaches `min`; returns its last value.
fn wait_stream_writes(fd: i32, min: u64) -> Result<u64, String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let v = stats(fd)?.counters[secmmu::STAT_STREAM_WRITES];
        if v >= min || Instant::now() > deadline {
            return Ok(v);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Lost writes, checked per write: for each round of `move_pages(2)` of 64
/// pages between the nodes, a single-pass stream over 32768 words of them
/// starts first, writes through its translations while the pages move,
/// ends, and every slot is checked. No later pass can overwrite a loss.
fn stream_races_move_pages_4k() -> Outcome {
    check((|| {
        const N: usize = 64;
        let f = open_bound()?;
        let fd = f.as_raw_fd();
        let m = Mapping::new(N * PAGE, sys::MAP_POPULATE).map_err(|e| e.to_string())?;
        let pages: Vec<*mut u8> = (0..N).map(|i| m.ptr.wrapping_add(i * PAGE)).collect();
        let mut s = Stream {
            addr: m.ptr as u64,
            stride: 8,
            slots: (N * PAGE / 8) as u32,
            flags: secmmu::STREAM_ONCE,
        };
        let slots = u64::from(s.slots);
        let deadline = Instant::now() + Duration::from_millis(1500);
        let (mut rounds, mut overlapped, mut writes) = (0u64, 0u64, 0u64);
        while rounds < 2 || Instant::now() < deadline {
            let w0 = stats(fd)?.counters[secmmu::STAT_STREAM_WRITES];
            let now = nodes_of(&pages)?;
            let to: Vec<i32> = now.iter().map(|&n| i32::from(n == 0)).collect();
            ioctl_ptr(fd, secmmu::STREAM_START, &mut s)
                .map_err(|e| format!("stream start: {e}"))?;
            if wait_stream_writes(fd, w0 + 1)? <= w0 {
                return Err(format!("round {rounds}: the stream did not write"));
            }
            let mut status = vec![-1; N];
            sys::move_pages(&pages, Some(&to), &mut status)
                .map_err(|e| format!("move_pages: {e}"))?;
            let during = stats(fd)?.counters[secmmu::STAT_STREAM_WRITES] - w0;
            overlapped += u64::from(during < slots);
            if wait_stream_writes(fd, w0 + slots)? < w0 + slots {
                return Err(format!("round {rounds}: the pass did not end"));
            }
            let mut v = Verify::default();
            ioctl_ptr(fd, secmmu::STREAM_VERIFY, &mut v).map_err(|e| format!("verify: {e}"))?;
            if v.lost_writes != 0 || v.writes != slots {
                return Err(format!("round {rounds}: {v:?}"));
            }
            let after = nodes_of(&pages)?;
            if after != to {
                return Err(format!("round {rounds}: pages on {after:?}, want {to:?}"));
            }
            writes += v.writes;
            rounds += 1;
        }
        let st = stats(fd)?;
        println!(
            "# {rounds} move rounds of {N} pages, {writes} single-pass writes, {overlapped} \
             passes still writing when the move returned, {} invalidations",
            st.counters[secmmu::STAT_INVALIDATIONS]
        );
        if overlapped == 0 {
            return Err("no pass was still writing when a move returned: no race".into());
        }
        if st.counters[secmmu::STAT_INVALIDATIONS] < rounds {
            return Err("fewer invalidations than migration rounds".into());
        }
        Ok(())
    })())
}

fn main() {
    let cases = [
        Case {
            name: "round_trip",
            run: round_trip,
        },
        Case {
            name: "stream_races_move_pages_4k",
            run: stream_races_move_pages_4k,
        },
    ];
    std::process::exit(run_ktap(&cases));
}
