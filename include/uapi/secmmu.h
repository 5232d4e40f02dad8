/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * secmmu userspace ABI: the /dev/secmmu fake SVA device.
 *
 * This header is the single source of truth for the interface. The module's
 * Rust side is generated from it by bindgen (scripts/gen-bindings.sh), so
 * structure layouts cannot drift; ioctl numbers are built on both sides
 * from the SECMMU_IOC_NR_* values below with the same _IOC directions.
 *
 * Each open file is one device context. A context is bound to the mm of the
 * task that issues SECMMU_IOCTL_BIND and from then on reads and writes that
 * process's memory from the device engine (a kernel work item), through
 * its own software TLB, exactly as an SVA/ATS device would.
 */
#ifndef _UAPI_SECMMU_H
#define _UAPI_SECMMU_H

#include <linux/ioctl.h>
#include <linux/types.h>

/* Version of this ABI; /sys/kernel/debug/secmmu/version reports it too. */
#define SECMMU_ABI_VERSION 4

#define SECMMU_IOC_MAGIC 0xB7

/* Largest single device read or write, and the largest stream. */
#define SECMMU_MAX_ACCESS (64UL << 20)
#define SECMMU_MAX_STREAM_SLOTS 65536
#define SECMMU_DEFAULT_TLB_ENTRIES 512
#define SECMMU_MAX_TLB_ENTRIES 65536

/* SECMMU_IOCTL_BIND: bind the context to the caller's mm. */
struct secmmu_bind {
	__u32 tlb_entries;	/* TLB capacity; 0 = SECMMU_DEFAULT_TLB_ENTRIES */
	__u32 flags;		/* must be 0 */
};

/*
 * SECMMU_IOCTL_WRITE / SECMMU_IOCTL_READ: a device access of @len bytes at
 * @addr in the bound mm. A write copies @len bytes from @user_buf, or, when
 * @user_buf is 0, fills the range with the 64-bit @value (@addr and @len
 * then multiples of 8). A read copies into @user_buf. The access is split
 * per translation and runs on the device engine; the ioctl waits for it.
 */
struct secmmu_access {
	__u64 addr;
	__u64 len;
	__u64 value;
	__u64 user_buf;
	__u32 flags;		/* must be 0 */
	__u32 pad;		/* must be 0 */
};

/*
 * SECMMU_IOCTL_STREAM_START: the engine writes increasing 64-bit sequence
 * numbers (starting at 1) round-robin into @slots slots, slot i at
 * @addr + i * @stride, until STREAM_STOP, remembering the last value it
 * wrote to each slot. @addr and @stride must be multiples of 8, @stride
 * at least 8. With SECMMU_STREAM_ONCE the engine writes each slot once and
 * stops by itself, so that STREAM_VERIFY checks every write it made. A
 * stream that has stopped (STOP, VERIFY, a device fault or ONCE) is
 * replaced by the next STREAM_START; one still running makes it -EBUSY.
 */
#define SECMMU_STREAM_ONCE	(1U << 0)

struct secmmu_stream {
	__u64 addr;
	__u64 stride;
	__u32 slots;		/* 1..SECMMU_MAX_STREAM_SLOTS */
	__u32 flags;		/* 0 or SECMMU_STREAM_ONCE */
};

/*
 * SECMMU_IOCTL_STREAM_VERIFY (stream stopped, caller in the bound mm):
 * compare every slot, as the CPU sees it now, with the last value the
 * device wrote there.
 */
struct secmmu_verify {
	__u64 slots;		/* out: slots checked */
	__u64 lost_writes;	/* out: slots not holding the last value written */
	__u64 writes;		/* out: writes the stream made */
	__u64 first_lost_slot;	/* out: index of the first lost slot, or ~0 */
};

/* Counters, in the order of the debugfs stats files. */
enum secmmu_stat {
	SECMMU_STAT_BINDS,
	SECMMU_STAT_UNBINDS,
	SECMMU_STAT_INVALIDATIONS,
	SECMMU_STAT_INVALIDATED_ENTRIES,
	SECMMU_STAT_FULL_FLUSHES,
	SECMMU_STAT_TLB_HITS,
	SECMMU_STAT_TLB_MISSES,
	SECMMU_STAT_TLB_FILLS,
	SECMMU_STAT_TLB_EVICTIONS,
	SECMMU_STAT_FILL_RETRIES,
	SECMMU_STAT_DEVICE_WRITES,
	SECMMU_STAT_DEVICE_READS,
	SECMMU_STAT_DEVICE_FAULTS,
	SECMMU_STAT_STREAM_WRITES,
	SECMMU_STAT_LOST_WRITES,
	SECMMU_STAT_HUGE_FILLS,
	SECMMU_STAT_STALE_ACCESSES,
	/* The THP migration helper (global; per context: late_invalidations_caught). */
	SECMMU_STAT_THP_MIGRATIONS,
	SECMMU_STAT_THP_MIGRATION_FAILURES,
	SECMMU_STAT_LATE_INVALIDATIONS_CAUGHT,
	SECMMU_STAT_THP_VERIFY_FAILURES,
	/*
	 * Device accesses refused because the translation's page had been
	 * freed (reference count 0) or reused (another folio, a slab page)
	 * since the fill: the kernel freed a page a secondary TLB still
	 * mapped. Any non-zero value is a kernel bug (or skip_invalidate).
	 */
	SECMMU_STAT_FREED_PAGE_ACCESSES,
	SECMMU_NR_STATS,
};

/* SECMMU_IOCTL_GET_STATS: this context's counters. */
struct secmmu_stats {
	__u64 counters[SECMMU_NR_STATS];
	__u32 tlb_entries;	/* entries cached now */
	__u32 tlb_capacity;
	__u32 ctx_id;		/* the ctx/<id> debugfs directory */
	__u32 pad;
};

#define SECMMU_IOC_NR_BIND		0x01
#define SECMMU_IOC_NR_UNBIND		0x02
#define SECMMU_IOC_NR_WRITE		0x03
#define SECMMU_IOC_NR_READ		0x04
#define SECMMU_IOC_NR_STREAM_START	0x05
#define SECMMU_IOC_NR_STREAM_STOP	0x06
#define SECMMU_IOC_NR_STREAM_VERIFY	0x07
#define SECMMU_IOC_NR_TLB_FLUSH		0x08
#define SECMMU_IOC_NR_GET_STATS		0x09

#define SECMMU_IOCTL_BIND	 _IOW(SECMMU_IOC_MAGIC, SECMMU_IOC_NR_BIND, struct secmmu_bind)
#define SECMMU_IOCTL_UNBIND	 _IO(SECMMU_IOC_MAGIC, SECMMU_IOC_NR_UNBIND)
#define SECMMU_IOCTL_WRITE	 _IOW(SECMMU_IOC_MAGIC, SECMMU_IOC_NR_WRITE, struct secmmu_access)
#define SECMMU_IOCTL_READ	 _IOW(SECMMU_IOC_MAGIC, SECMMU_IOC_NR_READ, struct secmmu_access)
#define SECMMU_IOCTL_STREAM_START _IOW(SECMMU_IOC_MAGIC, SECMMU_IOC_NR_STREAM_START, struct secmmu_stream)
#define SECMMU_IOCTL_STREAM_STOP _IO(SECMMU_IOC_MAGIC, SECMMU_IOC_NR_STREAM_STOP)
#define SECMMU_IOCTL_STREAM_VERIFY _IOR(SECMMU_IOC_MAGIC, SECMMU_IOC_NR_STREAM_VERIFY, struct secmmu_verify)
#define SECMMU_IOCTL_TLB_FLUSH	 _IO(SECMMU_IOC_MAGIC, SECMMU_IOC_NR_TLB_FLUSH)
#define SECMMU_IOCTL_GET_STATS	 _IOR(SECMMU_IOC_MAGIC, SECMMU_IOC_NR_GET_STATS, struct secmmu_stats)

#endif /* _UAPI_SECMMU_H */
