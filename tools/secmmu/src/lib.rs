// SPDX-License-Identifier: GPL-2.0

//! Userspace side of the secmmu test device: the ABI of
//! `include/uapi/secmmu.h`, readers for `/sys/kernel/debug/secmmu/`, the
//! event-log parser and timeline renderer, the seed scenario, the bounded
//! stress run, the fuzzer, the benchmarks and the path matrix.

pub mod abi;
pub mod bench;
pub mod debugfs;
pub mod events;
pub mod fuzz;
pub mod paths;
pub mod rng;
pub mod scenario;
pub mod stress;
pub mod sys;
pub mod timeline;
