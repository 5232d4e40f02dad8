// SPDX-License-Identifier: GPL-2.0

//! The few system calls secmmu's userspace needs, declared directly against
//! libc (the crate has no dependencies so it builds offline).

#![allow(missing_docs)]

use std::ffi::c_void;
use std::io;

pub const PROT_READ: i32 = 1;
pub const PROT_WRITE: i32 = 2;
pub const PROT_EXEC: i32 = 4;
pub const MAP_FIXED: i32 = 0x10;
pub const MADV_DONTNEED: i32 = 4;
pub const MADV_DONTFORK: i32 = 10;
pub const MAP_PRIVATE: i32 = 2;
pub const MAP_ANONYMOUS: i32 = 0x20;
pub const MAP_POPULATE: i32 = 0x8000;
pub const MAP_NORESERVE: i32 = 0x4000;
pub const MAP_FIXED_NOREPLACE: i32 = 0x10_0000;
pub const MADV_HUGEPAGE: i32 = 14;
pub const SYS_MOVE_PAGES: i64 = 279;
pub const MPOL_MF_MOVE: i32 = 1 << 1;
/// `waitid(2)`: `P_PID`, `WEXITED`, `WNOWAIT`.
pub const P_PID: i32 = 1;
pub const WEXITED: i32 = 4;
pub const WNOWAIT: i32 = 0x0100_0000;

extern "C" {
    pub fn mmap(
        addr: *mut c_void,
        len: usize,
        prot: i32,
        flags: i32,
        fd: i32,
        off: i64,
    ) -> *mut c_void;
    pub fn munmap(addr: *mut c_void, len: usize) -> i32;
    pub fn madvise(addr: *mut c_void, len: usize, advice: i32) -> i32;
    pub fn mprotect(addr: *mut c_void, len: usize, prot: i32) -> i32;
    pub fn fork() -> i32;
    pub fn _exit(status: i32) -> !;
    pub fn waitpid(pid: i32, status: *mut i32, options: i32) -> i32;
    pub fn getpid() -> i32;
    pub fn pipe(fds: *mut i32) -> i32;
    pub fn read(fd: i32, buf: *mut c_void, n: usize) -> isize;
    pub fn write(fd: i32, buf: *const c_void, n: usize) -> isize;
    pub fn close(fd: i32) -> i32;
    /// `info` points at a `siginfo_t` (128 bytes).
    pub fn waitid(idtype: i32, id: u32, info: *mut c_void, options: i32) -> i32;
    pub fn ioctl(fd: i32, req: u64, ...) -> i32;
    pub fn syscall(nr: i64, ...) -> i64;
}

/// An anonymous private mapping, unmapped on drop.
pub struct Mapping {
    pub ptr: *mut u8,
    pub len: usize,
}

impl Mapping {
    pub fn new(len: usize, flags: i32) -> io::Result<Self> {
        // SAFETY: anonymous mapping, no hint, no file.
        let p = unsafe {
            mmap(
                std::ptr::null_mut(),
                len,
                PROT_READ | PROT_WRITE,
                MAP_PRIVATE | MAP_ANONYMOUS | flags,
                -1,
                0,
            )
        };
        if p as isize == -1 {
            return Err(io::Error::last_os_error());
        }
        Ok(Self { ptr: p.cast(), len })
    }
}

impl Mapping {
    /// Reserves `len` bytes of address space: `PROT_NONE`, no memory
    /// committed; parts are mapped over it with `MAP_FIXED`.
    pub fn reserve(len: usize) -> io::Result<Self> {
        // SAFETY: anonymous mapping, no hint, no file.
        let p = unsafe {
            mmap(
                std::ptr::null_mut(),
                len,
                0,
                MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                -1,
                0,
            )
        };
        if p as isize == -1 {
            return Err(io::Error::last_os_error());
        }
        Ok(Self { ptr: p.cast(), len })
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what `new` mapped.
        unsafe { munmap(self.ptr.cast(), self.len) };
    }
}

/// `ioctl(fd, req, arg)` with the errno on failure, for a request whose
/// argument is a `T` (its size encoded in `req`).
pub fn ioctl_ptr<T>(fd: i32, req: u64, arg: &mut T) -> io::Result<()> {
    // SAFETY: `arg` is a live, exclusively borrowed `T`, the argument the
    // request reads and writes.
    ioctl_ret(unsafe { ioctl(fd, req, std::ptr::from_mut(arg)) })
}

/// `ioctl(fd, req, addr)` with an address that is not a Rust object: 0 for
/// requests without an argument, or a bad pointer the kernel must refuse.
///
/// # Safety
///
/// `addr` must not point at user memory the kernel may write through `req`
/// (a null or kernel-space address: the kernel's copy to user space fails
/// with `EFAULT` without touching this process).
pub unsafe fn ioctl_addr(fd: i32, req: u64, addr: usize) -> io::Result<()> {
    // SAFETY: by the caller's contract, nothing in this process is written.
    ioctl_ret(unsafe { ioctl(fd, req, addr as *mut u8) })
}

fn ioctl_ret(r: i32) -> io::Result<()> {
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// move_pages(2) on the calling process: `nodes` None queries.
pub fn move_pages(pages: &[*mut u8], nodes: Option<&[i32]>, status: &mut [i32]) -> io::Result<i64> {
    let nodes_ptr = nodes.map_or(std::ptr::null(), |n| n.as_ptr());
    let flags = if nodes.is_some() { MPOL_MF_MOVE } else { 0 };
    // SAFETY: the arrays hold `pages.len()` elements each.
    let r = unsafe {
        syscall(
            SYS_MOVE_PAGES,
            0i32,
            pages.len(),
            pages.as_ptr(),
            nodes_ptr,
            status.as_mut_ptr(),
            flags,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(r)
}

extern "C" {
    fn sched_setaffinity(pid: i32, size: usize, mask: *const u64) -> i32;
}

/// Runs the calling thread on `cpu` only.
pub fn pin_to_cpu(cpu: usize) -> io::Result<()> {
    if cpu >= 64 {
        return Err(io::Error::from_raw_os_error(22));
    }
    let mask: u64 = 1 << cpu;
    // SAFETY: `mask` is a valid 8-byte cpu set.
    if unsafe { sched_setaffinity(0, std::mem::size_of::<u64>(), &mask) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Runs the calling thread on CPUs 0..64 again.
pub fn unpin() {
    let mask: u64 = !0;
    // SAFETY: `mask` is a valid 8-byte cpu set.
    unsafe { sched_setaffinity(0, std::mem::size_of::<u64>(), &mask) };
}

/// Node of the page at `p`, or the negative errno move_pages(2) reports.
pub fn node_of(p: *mut u8) -> io::Result<i32> {
    let mut status = [-1i32];
    move_pages(&[p], None, &mut status)?;
    Ok(status[0])
}
