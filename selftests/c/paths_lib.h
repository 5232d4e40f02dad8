/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The oracles of the path matrix: what a device sharing the CPU page
 * tables would see when the kernel changes a mapping under it. Each oracle
 * counts the device accesses it judged and the violations it found, and
 * reports one matrix cell:
 *
 *   # cell path=P oracle=O ops=N accesses=N violations=N
 *
 * `secmmu paths` collects the cells into the path x oracle matrix. A case
 * that cannot run here prints `# cell path=P oracle=- not_run=REASON` and
 * SKIPs with the reason.
 *
 * The oracles (Documentation/reference.rst, "Oracles"):
 *
 * lost_write          a single-pass stream writes every slot once through
 *                     the device while the kernel works; each write is
 *                     checked once the pass ends (no later write can hide
 *                     a lost one).
 * stale_read          after the operation the CPU writes a fresh token into
 *                     every page; a device read must return it.
 * write_after_revoke  once mprotect/munmap have returned, a device write must
 *                     fault; once MADV_DONTNEED (or a truncation) has
 *                     returned, a device write must land where the CPU
 *                     reads.
 * isolation           a device write in one process never shows in
 *                     another's memory (fork + COW, KSM, a move).
 * freed_page          the module refuses and counts a device access through
 *                     a translation whose page was freed or reused
 *                     (freed_page_accesses); it must stay 0.
 */
#ifndef SECMMU_PATHS_LIB_H
#define SECMMU_PATHS_LIB_H

#include "secmmu_lib.h"

/* Prints one matrix cell (see the top of this file). */
static inline void cell(const char *path, const char *oracle, uint64_t ops,
			uint64_t accesses, uint64_t violations)
{
	printf("# cell path=%s oracle=%s ops=%llu accesses=%llu violations=%llu\n",
	       path, oracle, (unsigned long long)ops, (unsigned long long)accesses,
	       (unsigned long long)violations);
	fflush(stdout);
}

/* Prints the not-run cell of @path (the caller SKIPs with @why too). */
static inline void cell_not_run(const char *path, const char *why)
{
	printf("# cell path=%s oracle=- not_run=%s\n", path, why);
	fflush(stdout);
}

/* One oracle's tally over a case. */
struct tally {
	uint64_t ops;		/* kernel operations run */
	uint64_t accesses;	/* device accesses judged */
	uint64_t violations;	/* what the oracle found wrong */
};

/* The context's device accesses so far (reads, writes, stream writes). */
static inline uint64_t dev_accesses(int fd)
{
	return dev_stat(fd, SECMMU_STAT_DEVICE_READS) +
	       dev_stat(fd, SECMMU_STAT_DEVICE_WRITES) +
	       dev_stat(fd, SECMMU_STAT_STREAM_WRITES);
}

/*
 * The freed_page oracle's cell for the context @fd: every device access the
 * case made, and the module's count of accesses through a freed or reused
 * page. Returns the violations.
 */
static inline uint64_t freed_page_cell(const char *path, int fd, uint64_t ops)
{
	uint64_t v = dev_stat(fd, SECMMU_STAT_FREED_PAGE_ACCESSES);

	cell(path, "freed_page", ops, dev_accesses(fd), v);
	return v;
}

/* A token no page holds by chance: @round and @page folded into a tag. */
static inline uint64_t token(uint64_t round, uint64_t page)
{
	return 0x5ec0000000000000ULL ^ (round << 32) ^ page;
}

/*
 * The device takes a translation of every page of [@p, @p + @len) for
 * writing (4 KiB: one write per page; a THP: one write covers it). 0 or
 * -errno.
 */
static inline int dev_prime(int fd, char *p, size_t len)
{
	size_t off;
	int r;

	for (off = 0; off < len; off += PAGE) {
		r = dev_write(fd, p + off, 8, NULL, *(uint64_t *)(p + off));
		if (r)
			return r;
	}
	return 0;
}

/*
 * stale_read: the CPU writes a fresh token into every page of
 * [@p, @p + @len); the device reads each back. A read that does not return
 * the token (or fails) is a violation. Adds to @t.
 */
static inline void stale_read_check(int fd, char *p, size_t len, uint64_t round,
				    struct tally *t)
{
	size_t off;
	uint64_t got;

	for (off = 0; off < len; off += PAGE) {
		uint64_t want = token(round, off / PAGE);

		*(volatile uint64_t *)(p + off) = want;
		got = 0;
		t->accesses++;
		if (dev_read(fd, p + off, 8, &got) || got != want)
			t->violations++;
	}
}

/*
 * write_after_revoke, for memory the process may no longer write
 * (mprotect(PROT_READ/PROT_NONE), munmap): a device write to each page must
 * fail with EFAULT; one that succeeds is a violation. Adds to @t.
 */
static inline void revoked_write_check(int fd, char *p, size_t len, struct tally *t)
{
	size_t off;
	int r;

	for (off = 0; off < len; off += PAGE) {
		t->accesses++;
		r = dev_write(fd, p + off, 8, NULL, token(99, off / PAGE));
		if (r != -EFAULT)
			t->violations++;
	}
}

/*
 * write_after_revoke, for memory whose pages were dropped but which stays
 * mapped (MADV_DONTNEED, MADV_REMOVE, a truncation of a mapped file): a
 * device write to each page must land where the CPU reads it now. Adds to
 * @t. @p must be readable and writable.
 */
static inline void dropped_write_check(int fd, char *p, size_t len, uint64_t round,
				       struct tally *t)
{
	size_t off;

	for (off = 0; off < len; off += PAGE) {
		uint64_t want = token(round, off / PAGE);

		t->accesses++;
		if (dev_write(fd, p + off, 8, NULL, want) ||
		    *(volatile uint64_t *)(p + off) != want)
			t->violations++;
	}
}

/* Waits until the context's stream has written @want words or stopped on a
 * device fault (faults above @faults0); returns the writes made. */
static inline uint64_t wait_stream(int fd, uint64_t w0, uint64_t want, uint64_t faults0)
{
	uint64_t w = dev_stat(fd, SECMMU_STAT_STREAM_WRITES);
	int i;

	for (i = 0; i < 2000 && w - w0 < want &&
	     dev_stat(fd, SECMMU_STAT_DEVICE_FAULTS) == faults0; i++) {
		usleep(10000);
		w = dev_stat(fd, SECMMU_STAT_STREAM_WRITES);
	}
	return w - w0;
}

/* What one raced pass saw. */
struct race {
	uint64_t writes;	/* writes the pass made */
	uint64_t lost;		/* of which the CPU does not see */
	bool overlapped;	/* the pass was still writing when op returned */
	int op_ret;		/* what op returned */
};

/*
 * lost_write: a single-pass stream of @slots words (stride 8) from @p
 * starts; once the device writes through its translation, @op(@arg) runs;
 * when the pass has ended, every slot is compared with what the device
 * wrote there. @p must still be mapped, readable, in this process, when op
 * returns. 0, or -errno if the stream could not start or be verified.
 */
static inline int race_stream(int fd, char *p, uint32_t slots,
			      int (*op)(void *), void *arg, struct race *r)
{
	struct secmmu_stream s = {
		.addr = (uintptr_t)p, .stride = 8, .slots = slots,
		.flags = SECMMU_STREAM_ONCE,
	};
	struct secmmu_verify ver;
	uint64_t w0 = dev_stat(fd, SECMMU_STAT_STREAM_WRITES);
	uint64_t f0 = dev_stat(fd, SECMMU_STAT_DEVICE_FAULTS);

	memset(r, 0, sizeof(*r));
	if (ioctl(fd, SECMMU_IOCTL_STREAM_START, &s))
		return -errno;
	/* The device writes through its translation of @p. */
	wait_dev_stat(fd, SECMMU_STAT_STREAM_WRITES, w0 + 1);
	r->op_ret = op(arg);
	r->overlapped = dev_stat(fd, SECMMU_STAT_STREAM_WRITES) - w0 < slots;
	wait_stream(fd, w0, slots, f0);
	if (ioctl(fd, SECMMU_IOCTL_STREAM_VERIFY, &ver))
		return -errno;
	r->writes = ver.writes;
	r->lost = ver.lost_writes;
	return 0;
}

/*
 * Runs race_stream() up to @max passes, until @min_overlap of them were
 * still writing when the operation returned, adding to @t (ops, writes,
 * lost writes). Returns the overlapping passes, or -errno.
 */
static inline int race_passes(int fd, char *p, uint32_t slots, int (*op)(void *),
			      void *arg, int min_overlap, int max, struct tally *t)
{
	struct race r;
	int i, overlap = 0, ret;

	for (i = 0; i < max && overlap < min_overlap; i++) {
		ret = race_stream(fd, p, slots, op, arg, &r);
		if (ret)
			return ret;
		t->ops++;
		t->accesses += r.writes;
		t->violations += r.lost;
		overlap += r.overlapped;
	}
	return overlap;
}

/* Sets a sysfs/procfs knob; 0 or -errno. */
static inline int set_knob(const char *path, const char *val)
{
	return write_text_file(path, val, strlen(val));
}

/* The skip_invalidate injection (the device ignores the kernel's
 * invalidations): only the oracle self-tests use it. */
static inline int inject_skip_invalidate(bool on)
{
	return set_knob(DBG "inject", on ? "skip_invalidate=1" : "skip_invalidate=0");
}

#endif
