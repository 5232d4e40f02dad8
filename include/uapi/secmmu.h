/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * secmmu userspace ABI. This header is the single source of truth for the
 * device's interface; the module's Rust side is checked against it.
 */
#ifndef _UAPI_SECMMU_H
#define _UAPI_SECMMU_H

/* Version of this ABI; /sys/kernel/debug/secmmu/version reports it too. */
#define SECMMU_ABI_VERSION 0

#endif /* _UAPI_SECMMU_H */
