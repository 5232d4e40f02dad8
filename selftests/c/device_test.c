// SPDX-License-Identifier: GPL-2.0
/*
 * secmmu device selftests: binding, device reads and writes through the
 * software TLB on 4 KiB and THP memory, the invalidations the kernel sends
 * for each way a mapping can change, streams racing move_pages(2), bad
 * input, and teardown. Runs in the test VM as root with secmmu.ko loaded.
 */
#define _GNU_SOURCE
#include <stddef.h>
#include <sys/wait.h>

#include "kselftest_harness.h"
#include "secmmu_lib.h"

/* The ABI header and the module agree on layouts (the module's structs are
 * generated from the same header; this pins the header itself). */
_Static_assert(sizeof(struct secmmu_bind) == 8, "secmmu_bind");
_Static_assert(sizeof(struct secmmu_access) == 40, "secmmu_access");
_Static_assert(offsetof(struct secmmu_access, user_buf) == 24, "user_buf");
_Static_assert(sizeof(struct secmmu_stream) == 24, "secmmu_stream");
_Static_assert(sizeof(struct secmmu_verify) == 32, "secmmu_verify");
_Static_assert(sizeof(struct secmmu_stats) == 8 * SECMMU_NR_STATS + 16, "secmmu_stats");
/* The Rust side builds the same numbers (tools/secmmu/src/abi.rs, also used
 * by the Rust selftests). */
_Static_assert(SECMMU_IOCTL_BIND == 0x4008b701, "BIND");
_Static_assert(SECMMU_IOCTL_UNBIND == 0xb702, "UNBIND");
_Static_assert(SECMMU_IOCTL_WRITE == 0x4028b703, "WRITE");
_Static_assert(SECMMU_IOCTL_READ == 0x4028b704, "READ");
_Static_assert(SECMMU_IOCTL_STREAM_START == 0x4018b705, "STREAM_START");
_Static_assert(SECMMU_IOCTL_STREAM_VERIFY == 0x8020b707, "STREAM_VERIFY");
_Static_assert(SECMMU_IOCTL_GET_STATS == 0x80c0b709, "GET_STATS");

FIXTURE(dev) {
	int balancing;
	int fd;
	char *mem;	/* 4 KiB pages */
	char *thp;	/* one THP */
};

FIXTURE_SETUP(dev)
{
	self->balancing = numa_balancing_set(0);
	self->fd = secmmu_open_bound(0);
	ASSERT_LE(0, self->fd) TH_LOG("open+bind: %s", strerror(-self->fd));
	self->mem = mmap(NULL, 16 * PAGE, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, self->mem);
	memset(self->mem, 0x11, 16 * PAGE);
	self->thp = thp_alloc(1);
	ASSERT_NE(NULL, self->thp);
}

FIXTURE_TEARDOWN(dev)
{
	close(self->fd);
	if (self->balancing >= 0)
		numa_balancing_set(self->balancing);
}

TEST(bind_unbind_rebind)
{
	int fd = open(SECMMU_DEV, O_RDWR);
	struct secmmu_bind b = { 0 };

	ASSERT_LE(0, fd);
	ASSERT_EQ(-1, ioctl(fd, SECMMU_IOCTL_UNBIND));
	ASSERT_EQ(ENOTCONN, errno);
	ASSERT_EQ(0, ioctl(fd, SECMMU_IOCTL_BIND, &b));
	ASSERT_EQ(-1, ioctl(fd, SECMMU_IOCTL_BIND, &b));
	ASSERT_EQ(EBUSY, errno);
	ASSERT_EQ(1, dev_stat(fd, SECMMU_STAT_BINDS));
	ASSERT_EQ(0, ioctl(fd, SECMMU_IOCTL_UNBIND));
	ASSERT_EQ(1, dev_stat(fd, SECMMU_STAT_UNBINDS));
	ASSERT_EQ(0, ioctl(fd, SECMMU_IOCTL_BIND, &b));
	ASSERT_EQ(2, dev_stat(fd, SECMMU_STAT_BINDS));
	close(fd);
}

TEST(ctx_debugfs_stats)
{
	struct secmmu_stats st;
	char path[128], buf[4096];
	int fd = secmmu_open_bound(0), dfd;
	ssize_t n;

	ASSERT_LE(0, fd);
	ASSERT_EQ(0, ioctl(fd, SECMMU_IOCTL_GET_STATS, &st));
	snprintf(path, sizeof(path), "/sys/kernel/debug/secmmu/ctx/%u/stats", st.ctx_id);
	dfd = open(path, O_RDONLY);
	ASSERT_LE(0, dfd) TH_LOG("%s", path);
	n = read(dfd, buf, sizeof(buf) - 1);
	ASSERT_LT(0, n);
	buf[n] = 0;
	close(dfd);
	ASSERT_NE(NULL, strstr(buf, "binds 1\n")) TH_LOG("%s", buf);
	ASSERT_NE(NULL, strstr(buf, "lost_writes 0\n"));
	ASSERT_EQ(512, st.tlb_capacity);
	ASSERT_EQ(0, ioctl(fd, SECMMU_IOCTL_UNBIND));
	ASSERT_NE(0, access(path, F_OK)) TH_LOG("ctx dir outlived unbind");
	close(fd);
}

TEST_F(dev, write_seen_by_cpu_4k)
{
	char buf[3 * PAGE];
	uint64_t misses, hits;

	memset(buf, 0xa5, sizeof(buf));
	/* Unaligned, spanning three pages. */
	ASSERT_EQ(0, dev_write(self->fd, self->mem + 100, sizeof(buf), buf, 0));
	ASSERT_EQ(0, memcmp(self->mem + 100, buf, sizeof(buf)));
	ASSERT_EQ((char)0x11, self->mem[99]);
	ASSERT_EQ((char)0x11, self->mem[100 + sizeof(buf)]);
	misses = dev_stat(self->fd, SECMMU_STAT_TLB_MISSES);
	ASSERT_EQ(4, misses);	/* 4 pages touched, each filled once */
	ASSERT_EQ(4, dev_stat(self->fd, SECMMU_STAT_TLB_FILLS));
	hits = dev_stat(self->fd, SECMMU_STAT_TLB_HITS);
	ASSERT_EQ(0, dev_write(self->fd, self->mem + 100, sizeof(buf), buf, 0));
	ASSERT_EQ(misses, dev_stat(self->fd, SECMMU_STAT_TLB_MISSES));
	ASSERT_EQ(hits + 4, dev_stat(self->fd, SECMMU_STAT_TLB_HITS));
	ASSERT_EQ(2, dev_stat(self->fd, SECMMU_STAT_DEVICE_WRITES));
}

TEST_F(dev, cpu_write_seen_by_device_4k)
{
	char buf[PAGE];

	memset(self->mem + PAGE, 0x5a, PAGE);
	ASSERT_EQ(0, dev_read(self->fd, self->mem + PAGE, PAGE, buf));
	ASSERT_EQ(0x5a5a5a5a, *(int *)buf);
	self->mem[PAGE] = 0x77;
	ASSERT_EQ(0, dev_read(self->fd, self->mem + PAGE, 8, buf));
	ASSERT_EQ(0x77, buf[0]);
	ASSERT_EQ(1, dev_stat(self->fd, SECMMU_STAT_TLB_FILLS));
	ASSERT_EQ(2, dev_stat(self->fd, SECMMU_STAT_DEVICE_READS));
}

TEST_F(dev, thp_uses_one_huge_entry)
{
	uint64_t v;
	size_t off;

	if (anon_huge_kb() < 2048)
		SKIP(return, "no THP backing the region");
	ASSERT_EQ(0, dev_write(self->fd, self->thp, 8, NULL, 0x1234));
	ASSERT_EQ(1, dev_stat(self->fd, SECMMU_STAT_HUGE_FILLS));
	for (off = 0; off < HPAGE; off += 64 * PAGE) {
		ASSERT_EQ(0, dev_write(self->fd, self->thp + off, 8, NULL, off));
		ASSERT_EQ(off, *(uint64_t *)(self->thp + off));
	}
	ASSERT_EQ(1, dev_stat(self->fd, SECMMU_STAT_TLB_FILLS));
	*(uint64_t *)(self->thp + HPAGE - 8) = 0xfeed;
	ASSERT_EQ(0, dev_read(self->fd, self->thp + HPAGE - 8, 8, &v));
	ASSERT_EQ(0xfeed, v);
	ASSERT_EQ(1, dev_stat(self->fd, SECMMU_STAT_TLB_FILLS));
}

TEST_F(dev, value_fill_and_flush)
{
	uint64_t inv, full;
	struct secmmu_stats st;

	ASSERT_EQ(0, dev_write(self->fd, self->mem, 2 * PAGE, NULL, 0x0102030405060708ULL));
	ASSERT_EQ(0x0102030405060708ULL, *(uint64_t *)(self->mem + 2 * PAGE - 8));
	inv = dev_stat(self->fd, SECMMU_STAT_INVALIDATIONS);
	full = dev_stat(self->fd, SECMMU_STAT_FULL_FLUSHES);
	ASSERT_EQ(0, ioctl(self->fd, SECMMU_IOCTL_TLB_FLUSH));
	/* The flush is one full invalidation. (The kernel may invalidate a
	 * range of this mm meanwhile, e.g. compaction moving a page: so at
	 * least one invalidation, exactly one full flush.) */
	ASSERT_LE(inv + 1, dev_stat(self->fd, SECMMU_STAT_INVALIDATIONS));
	ASSERT_EQ(full + 1, dev_stat(self->fd, SECMMU_STAT_FULL_FLUSHES));
	ASSERT_EQ(0, ioctl(self->fd, SECMMU_IOCTL_GET_STATS, &st));
	ASSERT_EQ(0, st.tlb_entries);
	ASSERT_EQ(0, dev_write(self->fd, self->mem, 8, NULL, 3));
	ASSERT_EQ(3, dev_stat(self->fd, SECMMU_STAT_TLB_FILLS));
}

/* bench_fill: the fill lands through the context's TLB; the file refuses a
 * task of another mm, an unbound context and a range with no memory. */
TEST_F(dev, bench_fill)
{
	struct secmmu_stats st;
	char line[128], res[256];
	int n, status;
	pid_t pid;

	ASSERT_EQ(0, ioctl(self->fd, SECMMU_IOCTL_GET_STATS, &st));
	n = snprintf(line, sizeof(line), "%u %p %lu", st.ctx_id, self->thp, HPAGE);
	ASSERT_EQ(0, write_text_file(DBG "bench_fill", line, n));
	ASSERT_EQ(0x5a5a5a5a5a5a5a5aULL, *(uint64_t *)(self->thp + HPAGE - 8));
	ASSERT_LT(0, read_file(DBG "bench_fill", res, sizeof(res)));
	ASSERT_NE(NULL, strstr(res, "bytes 2097152")) TH_LOG("%s", res);
	ASSERT_NE(NULL, strstr(res, "device_ns ")) TH_LOG("%s", res);
	pid = fork();
	ASSERT_LE(0, pid);
	if (pid == 0) {
		/* The fork has its own mm: not the context's. */
		_exit(write_text_file(DBG "bench_fill", line, n) == -EPERM ? 0 : 1);
	}
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	ASSERT_EQ(0, WEXITSTATUS(status));
	n = snprintf(line, sizeof(line), "%u 0x1000 4096", st.ctx_id);
	ASSERT_EQ(-EFAULT, write_text_file(DBG "bench_fill", line, n));
	ASSERT_EQ(0, ioctl(self->fd, SECMMU_IOCTL_UNBIND));
	n = snprintf(line, sizeof(line), "%u %p 8", st.ctx_id, self->thp);
	ASSERT_EQ(-ENOENT, write_text_file(DBG "bench_fill", line, n));
}

TEST_F(dev, tlb_capacity_evicts)
{
	int fd = secmmu_open_bound(4);
	char *m = mmap(NULL, 8 * PAGE, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	struct secmmu_stats st;
	int i;

	ASSERT_LE(0, fd);
	ASSERT_NE(MAP_FAILED, m);
	for (i = 0; i < 8; i++)
		ASSERT_EQ(0, dev_write(fd, m + i * PAGE, 8, NULL, i));
	ASSERT_EQ(0, ioctl(fd, SECMMU_IOCTL_GET_STATS, &st));
	ASSERT_EQ(4, st.tlb_entries);
	ASSERT_EQ(4, st.tlb_capacity);
	ASSERT_EQ(4, st.counters[SECMMU_STAT_TLB_EVICTIONS]);
	for (i = 0; i < 8; i++)
		ASSERT_EQ(i, *(uint64_t *)(m + i * PAGE));
	close(fd);
}

/* An operation on the mapping must invalidate the device's entry for it. */
#define EXPECT_INVALIDATED(fd, before)                                          \
	ASSERT_LT(before, dev_stat(fd, SECMMU_STAT_INVALIDATED_ENTRIES))

TEST_F(dev, mprotect_invalidates)
{
	uint64_t before;
	char c;

	ASSERT_EQ(0, dev_write(self->fd, self->mem, 8, NULL, 1));
	before = dev_stat(self->fd, SECMMU_STAT_INVALIDATED_ENTRIES);
	ASSERT_EQ(0, mprotect(self->mem, PAGE, PROT_READ));
	EXPECT_INVALIDATED(self->fd, before);
	/* The device now faults on a write and may still read. */
	ASSERT_EQ(-EFAULT, dev_write(self->fd, self->mem, 8, NULL, 2));
	ASSERT_EQ(0, dev_read(self->fd, self->mem, 1, &c));
	ASSERT_EQ(1, c);
	ASSERT_LE(1, dev_stat(self->fd, SECMMU_STAT_DEVICE_FAULTS));
}

TEST_F(dev, munmap_invalidates)
{
	uint64_t before;
	char c;

	ASSERT_EQ(0, dev_write(self->fd, self->mem + 3 * PAGE, 8, NULL, 1));
	before = dev_stat(self->fd, SECMMU_STAT_INVALIDATED_ENTRIES);
	ASSERT_EQ(0, munmap(self->mem + 3 * PAGE, PAGE));
	EXPECT_INVALIDATED(self->fd, before);
	ASSERT_EQ(-EFAULT, dev_read(self->fd, self->mem + 3 * PAGE, 1, &c));
	ASSERT_EQ(-EFAULT, dev_write(self->fd, self->mem + 3 * PAGE, 8, NULL, 1));
}

TEST_F(dev, dontneed_invalidates)
{
	uint64_t before, v = 1;

	ASSERT_EQ(0, dev_write(self->fd, self->mem, 8, NULL, 0xabc));
	before = dev_stat(self->fd, SECMMU_STAT_INVALIDATED_ENTRIES);
	ASSERT_EQ(0, madvise(self->mem, PAGE, MADV_DONTNEED));
	EXPECT_INVALIDATED(self->fd, before);
	/* A fresh zero page, not the freed one. */
	ASSERT_EQ(0, dev_read(self->fd, self->mem, 8, &v));
	ASSERT_EQ(0, v);
	ASSERT_EQ(0, dev_write(self->fd, self->mem, 8, NULL, 0xdef));
	ASSERT_EQ(0xdef, *(uint64_t *)self->mem);
}

TEST_F(dev, mremap_invalidates)
{
	uint64_t before, v = 0;
	char *dst;

	ASSERT_EQ(0, dev_write(self->fd, self->mem + 4 * PAGE, 8, NULL, 0x42));
	before = dev_stat(self->fd, SECMMU_STAT_INVALIDATED_ENTRIES);
	dst = mremap(self->mem + 4 * PAGE, PAGE, PAGE, MREMAP_MAYMOVE | MREMAP_FIXED,
		     self->mem + 15 * PAGE);
	ASSERT_NE(MAP_FAILED, dst);
	EXPECT_INVALIDATED(self->fd, before);
	ASSERT_EQ(-EFAULT, dev_read(self->fd, self->mem + 4 * PAGE, 8, &v));
	ASSERT_EQ(0, dev_read(self->fd, dst, 8, &v));
	ASSERT_EQ(0x42, v);
	ASSERT_EQ(0, dev_write(self->fd, dst, 8, NULL, 0x43));
	ASSERT_EQ(0x43, *(uint64_t *)dst);
}

TEST_F(dev, fork_cow_invalidates)
{
	int pipefd[2], status;
	uint64_t before, v;
	pid_t pid;
	char go;

	ASSERT_EQ(0, dev_write(self->fd, self->mem, 8, NULL, 0x1111));
	ASSERT_EQ(0, pipe(pipefd));
	before = dev_stat(self->fd, SECMMU_STAT_INVALIDATED_ENTRIES);
	pid = fork();
	ASSERT_LE(0, pid);
	if (pid == 0) {
		/* The child keeps the original page; the device must not
		 * write into it through the parent's binding. */
		if (read(pipefd[0], &go, 1) != 1)
			_exit(2);
		_exit(*(volatile uint64_t *)self->mem == 0x1111 ? 0 : 1);
	}
	/* fork write-protected the parent's PTE: the entry went away. */
	EXPECT_INVALIDATED(self->fd, before);
	*(volatile uint64_t *)self->mem = 0x2222;	/* COW: new page */
	ASSERT_EQ(0, dev_read(self->fd, self->mem, 8, &v));
	ASSERT_EQ(0x2222, v);
	ASSERT_EQ(0, dev_write(self->fd, self->mem, 8, NULL, 0x3333));
	ASSERT_EQ(0x3333, *(volatile uint64_t *)self->mem);
	ASSERT_EQ(1, write(pipefd[1], "g", 1));
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	ASSERT_TRUE(WIFEXITED(status));
	ASSERT_EQ(0, WEXITSTATUS(status)) TH_LOG("device wrote into the child's page");
}

TEST_F(dev, move_pages_4k_invalidates)
{
	uint64_t before, v = 0;
	int from, to;

	ASSERT_EQ(0, dev_write(self->fd, self->mem + 5 * PAGE, 8, NULL, 0x77));
	from = page_node(self->mem + 5 * PAGE);
	ASSERT_LE(0, from);
	to = !from;
	before = dev_stat(self->fd, SECMMU_STAT_INVALIDATED_ENTRIES);
	ASSERT_EQ(0, move_range(self->mem + 5 * PAGE, 1, to));
	ASSERT_EQ(to, page_node(self->mem + 5 * PAGE));
	EXPECT_INVALIDATED(self->fd, before);
	ASSERT_EQ(0, dev_write(self->fd, self->mem + 5 * PAGE + 8, 8, NULL, 0x78));
	ASSERT_EQ(0x77, *(uint64_t *)(self->mem + 5 * PAGE));
	ASSERT_EQ(0x78, *(uint64_t *)(self->mem + 5 * PAGE + 8));
	ASSERT_EQ(0, dev_read(self->fd, self->mem + 5 * PAGE, 8, &v));
	ASSERT_EQ(0x77, v);
}

TEST_F(dev, move_pages_thp_invalidates)
{
	uint64_t before, v = 0;
	int from, to;

	if (anon_huge_kb() < 2048)
		SKIP(return, "no THP backing the region");
	ASSERT_EQ(0, dev_write(self->fd, self->thp + 8 * PAGE, 8, NULL, 0x99));
	ASSERT_EQ(1, dev_stat(self->fd, SECMMU_STAT_HUGE_FILLS));
	from = page_node(self->thp);
	ASSERT_LE(0, from);
	to = !from;
	before = dev_stat(self->fd, SECMMU_STAT_INVALIDATED_ENTRIES);
	/* One address moves the whole THP (the others would report -EBUSY
	 * for the folio already isolated). */
	ASSERT_EQ(0, move_range(self->thp, 1, to));
	ASSERT_LE(2048, anon_huge_kb()) TH_LOG("no longer a THP after the move");
	ASSERT_EQ(to, page_node(self->thp + HPAGE - PAGE));
	EXPECT_INVALIDATED(self->fd, before);
	ASSERT_EQ(0, dev_write(self->fd, self->thp + 9 * PAGE, 8, NULL, 0x9a));
	ASSERT_EQ(0x99, *(uint64_t *)(self->thp + 8 * PAGE));
	ASSERT_EQ(0x9a, *(uint64_t *)(self->thp + 9 * PAGE));
	ASSERT_EQ(0, dev_read(self->fd, self->thp + 8 * PAGE, 8, &v));
	ASSERT_EQ(0x99, v);
}

/*
 * Lost writes, checked per write: before each move a single-pass stream
 * starts over 65536 words of the THP (its first 512 KiB); once it writes
 * through the cached translation the THP moves with move_pages(2), then the
 * pass ends and every slot is checked. No later pass can overwrite a lost
 * write, as a continuous stream's would.
 */
/* 300 s: on the debug kernel under TCG, on a loaded host, the 12 moves
 * outlasted the harness's default 30 s. */
TEST_F_TIMEOUT(dev, stream_races_move_pages_thp, 300)
{
	struct secmmu_stream s = {
		.addr = (uintptr_t)self->thp, .stride = 8, .slots = 65536,
		.flags = SECMMU_STREAM_ONCE,
	};
	struct secmmu_verify ver;
	uint64_t w0, during, writes = 0;
	int i, node, overlapped = 0;

	if (anon_huge_kb() < 2048)
		SKIP(return, "no THP backing the region");
	for (i = 0; i < 12; i++) {
		w0 = dev_stat(self->fd, SECMMU_STAT_STREAM_WRITES);
		node = page_node(self->thp);
		ASSERT_LE(0, node);
		ASSERT_EQ(0, ioctl(self->fd, SECMMU_IOCTL_STREAM_START, &s)) TH_LOG("pass %d", i);
		/* The device writes through its translation of the THP. */
		ASSERT_LT(w0, wait_dev_stat(self->fd, SECMMU_STAT_STREAM_WRITES, w0 + 1));
		ASSERT_EQ(0, move_range(self->thp, 1, !node));
		during = dev_stat(self->fd, SECMMU_STAT_STREAM_WRITES) - w0;
		overlapped += during < s.slots;
		/* The pass ends on its own. */
		ASSERT_LE(w0 + s.slots, wait_dev_stat(self->fd, SECMMU_STAT_STREAM_WRITES,
						      w0 + s.slots)) TH_LOG("pass %d", i);
		ASSERT_EQ(0, ioctl(self->fd, SECMMU_IOCTL_STREAM_VERIFY, &ver));
		ASSERT_EQ(s.slots, ver.writes) TH_LOG("pass %d", i);
		ASSERT_EQ(0, ver.lost_writes) TH_LOG("pass %d: first lost slot %llu", i,
						     (unsigned long long)ver.first_lost_slot);
		ASSERT_EQ(!node, page_node(self->thp)) TH_LOG("move %d", i);
		ASSERT_EQ(!node, page_node(self->thp + HPAGE - PAGE));
		writes += ver.writes;
	}
	TH_LOG("12 moves, %llu single-pass writes, %d passes still writing when the move returned, "
	       "%llu invalidations", (unsigned long long)writes, overlapped,
	       (unsigned long long)dev_stat(self->fd, SECMMU_STAT_INVALIDATIONS));
	/* The race was run: some passes were still writing after the move. */
	ASSERT_LT(0, overlapped);
	ASSERT_LE(12, dev_stat(self->fd, SECMMU_STAT_INVALIDATIONS));
}

TEST_F(dev, stream_lifecycle_errors)
{
	struct secmmu_stream s = {
		.addr = (uintptr_t)self->mem, .stride = 8, .slots = 16,
	};
	struct secmmu_verify ver;

	ASSERT_EQ(-1, ioctl(self->fd, SECMMU_IOCTL_STREAM_STOP));
	ASSERT_EQ(ENOENT, errno);
	ASSERT_EQ(-1, ioctl(self->fd, SECMMU_IOCTL_STREAM_VERIFY, &ver));
	ASSERT_EQ(ENOENT, errno);
	ASSERT_EQ(0, ioctl(self->fd, SECMMU_IOCTL_STREAM_START, &s));
	ASSERT_EQ(-1, ioctl(self->fd, SECMMU_IOCTL_STREAM_START, &s));
	ASSERT_EQ(EBUSY, errno);
	ASSERT_LT(0, wait_dev_stat(self->fd, SECMMU_STAT_STREAM_WRITES, 1));
	ASSERT_EQ(0, ioctl(self->fd, SECMMU_IOCTL_STREAM_VERIFY, &ver));
	ASSERT_EQ(0, ver.lost_writes);
	ASSERT_LT(0, ver.writes);
	/* The detector: a CPU write over a slot is a lost device write. */
	*(uint64_t *)(self->mem + 8) = 0;
	ASSERT_EQ(0, ioctl(self->fd, SECMMU_IOCTL_STREAM_VERIFY, &ver));
	ASSERT_EQ(1, ver.lost_writes);
	ASSERT_EQ(1, ver.first_lost_slot);
	ASSERT_EQ(1, dev_stat(self->fd, SECMMU_STAT_LOST_WRITES));
}

/* SECMMU_STREAM_ONCE: one pass, every slot written once, then the stream
 * stops by itself; the next start replaces it. */
TEST_F(dev, stream_once)
{
	struct secmmu_stream s = {
		.addr = (uintptr_t)self->mem, .stride = PAGE, .slots = 16,
		.flags = SECMMU_STREAM_ONCE,
	};
	struct secmmu_verify ver;
	uint64_t done = dev_stat(self->fd, SECMMU_STAT_STREAM_WRITES);
	int i;

	for (i = 0; i < 3; i++) {
		ASSERT_EQ(0, ioctl(self->fd, SECMMU_IOCTL_STREAM_START, &s)) TH_LOG("pass %d", i);
		/* Wait for the pass to end by itself (VERIFY would cut it
		 * short): its 16 writes show in the context's counter. */
		done += 16;
		ASSERT_EQ(done, wait_dev_stat(self->fd, SECMMU_STAT_STREAM_WRITES, done))
			TH_LOG("pass %d", i);
		ASSERT_EQ(0, ioctl(self->fd, SECMMU_IOCTL_STREAM_VERIFY, &ver));
		ASSERT_EQ(16, ver.writes);
		ASSERT_EQ(0, ver.lost_writes);
		/* Sequence numbers restart at 1 with each stream. */
		ASSERT_EQ(16, *(uint64_t *)(self->mem + 15 * PAGE));
	}
	/* The detector: a CPU write over one slot after the pass. */
	*(uint64_t *)(self->mem + 3 * PAGE) = 0;
	ASSERT_EQ(0, ioctl(self->fd, SECMMU_IOCTL_STREAM_VERIFY, &ver));
	ASSERT_EQ(1, ver.lost_writes);
	ASSERT_EQ(3, ver.first_lost_slot);
}

TEST(bad_input)
{
	char *m = mmap(NULL, PAGE, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	struct secmmu_bind bad_bind = { .flags = 1 };
	struct secmmu_bind big_bind = { .tlb_entries = SECMMU_MAX_TLB_ENTRIES + 1 };
	struct secmmu_stream s = { .addr = (uintptr_t)m, .stride = 8, .slots = 0 };
	struct secmmu_access a = { 0 };
	char buf[16];
	uint64_t faults;
	int fd = open(SECMMU_DEV, O_RDWR);

	ASSERT_LE(0, fd);
	/* Unbound context. */
	ASSERT_EQ(-ENOTCONN, dev_write(fd, m, 8, NULL, 1));
	ASSERT_EQ(-ENOTCONN, dev_read(fd, m, 8, buf));
	ASSERT_EQ(-1, ioctl(fd, SECMMU_IOCTL_TLB_FLUSH));
	ASSERT_EQ(ENOTCONN, errno);
	ASSERT_EQ(-1, ioctl(fd, SECMMU_IOCTL_STREAM_START, &s));
	ASSERT_EQ(ENOTCONN, errno);
	ASSERT_EQ(-1, ioctl(fd, SECMMU_IOCTL_BIND, &bad_bind));
	ASSERT_EQ(EINVAL, errno);
	ASSERT_EQ(-1, ioctl(fd, SECMMU_IOCTL_BIND, &big_bind));
	ASSERT_EQ(EINVAL, errno);
	ASSERT_EQ(-1, ioctl(fd, SECMMU_IOCTL_BIND, (void *)8));
	ASSERT_EQ(EFAULT, errno);
	ASSERT_EQ(-1, ioctl(fd, _IO(SECMMU_IOC_MAGIC, 0x7f)));
	ASSERT_EQ(ENOTTY, errno);
	ASSERT_EQ(-1, ioctl(fd, _IOW(SECMMU_IOC_MAGIC, SECMMU_IOC_NR_BIND, int)));
	ASSERT_EQ(ENOTTY, errno);

	ASSERT_EQ(0, ioctl(fd, SECMMU_IOCTL_BIND, &(struct secmmu_bind){ 0 }));
	/* Zero and huge lengths, unaligned value fills, flags, padding. */
	ASSERT_EQ(-EINVAL, dev_write(fd, m, 0, buf, 0));
	ASSERT_EQ(-EINVAL, dev_write(fd, m, SECMMU_MAX_ACCESS + 1, buf, 0));
	ASSERT_EQ(-EINVAL, dev_write(fd, m + 1, 8, NULL, 1));
	ASSERT_EQ(-EINVAL, dev_write(fd, m, 12, NULL, 1));
	a.addr = (uintptr_t)m; a.len = 8; a.user_buf = (uintptr_t)buf; a.flags = 1;
	ASSERT_EQ(-1, ioctl(fd, SECMMU_IOCTL_WRITE, &a));
	ASSERT_EQ(EINVAL, errno);
	a.flags = 0; a.pad = 1;
	ASSERT_EQ(-1, ioctl(fd, SECMMU_IOCTL_WRITE, &a));
	ASSERT_EQ(EINVAL, errno);
	/* Addresses outside any VMA, wrapping ranges, kernel addresses. */
	ASSERT_EQ(-EFAULT, dev_write(fd, (void *)PAGE, 8, NULL, 1));
	ASSERT_EQ(-EFAULT, dev_read(fd, (void *)(~0UL - 3), 8, buf));
	ASSERT_EQ(-EFAULT, dev_write(fd, (void *)0xffff888000000000UL, 8, NULL, 1));
	/* Bad user buffers. */
	ASSERT_EQ(-EFAULT, dev_write(fd, m, 8, (void *)8, 0));
	ASSERT_EQ(-EFAULT, dev_read(fd, m, 8, (void *)8));
	ASSERT_EQ(-EFAULT, dev_read(fd, m, 8, NULL));
	ASSERT_EQ(-EFAULT, dev_read(fd, m, 8, (void *)0xffff888000000000UL));
	/* Bad streams. */
	ASSERT_EQ(-1, ioctl(fd, SECMMU_IOCTL_STREAM_START, &s));
	ASSERT_EQ(EINVAL, errno);
	s.slots = SECMMU_MAX_STREAM_SLOTS + 1;
	ASSERT_EQ(-1, ioctl(fd, SECMMU_IOCTL_STREAM_START, &s));
	ASSERT_EQ(EINVAL, errno);
	s.slots = 4; s.stride = 4;
	ASSERT_EQ(-1, ioctl(fd, SECMMU_IOCTL_STREAM_START, &s));
	ASSERT_EQ(EINVAL, errno);
	s.stride = 8; s.addr = (uintptr_t)m + 4;
	ASSERT_EQ(-1, ioctl(fd, SECMMU_IOCTL_STREAM_START, &s));
	ASSERT_EQ(EINVAL, errno);
	s.addr = ~7ULL; s.slots = 4;
	ASSERT_EQ(-1, ioctl(fd, SECMMU_IOCTL_STREAM_START, &s));
	ASSERT_EQ(EFAULT, errno);
	/* A stream over unmapped memory stops itself on the device fault. */
	s.addr = PAGE; s.slots = 1;
	faults = dev_stat(fd, SECMMU_STAT_DEVICE_FAULTS);
	ASSERT_EQ(0, ioctl(fd, SECMMU_IOCTL_STREAM_START, &s));
	ASSERT_LE(faults + 1, wait_dev_stat(fd, SECMMU_STAT_DEVICE_FAULTS, faults + 1));
	ASSERT_EQ(-1, ioctl(fd, SECMMU_IOCTL_STREAM_STOP));
	ASSERT_EQ(EFAULT, errno);
	close(fd);
}

TEST(unprivileged_open_refused)
{
	struct stat st;

	ASSERT_EQ(0, stat(SECMMU_DEV, &st));
	ASSERT_EQ(0600, st.st_mode & 0777);
}

TEST(exit_with_stream_running)
{
	int status, i;
	pid_t pid = fork();

	ASSERT_LE(0, pid);
	if (pid == 0) {
		char *m = mmap(NULL, PAGE, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		struct secmmu_stream s = { .addr = (uintptr_t)m, .stride = 8, .slots = 64 };
		int fd = secmmu_open_bound(0);

		if (fd < 0 || ioctl(fd, SECMMU_IOCTL_STREAM_START, &s))
			_exit(1);
		usleep(20000);
		_exit(0);	/* no stop, no close */
	}
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	ASSERT_EQ(0, WEXITSTATUS(status));
	for (i = 0; i < 1000 && module_refs() != 0; i++)
		usleep(10000);
	ASSERT_EQ(0, module_refs());
}

TEST(close_while_bound)
{
	int i, fd, target = -1;

	for (i = 0; i < 20; i++) {
		fd = secmmu_open_bound(0);
		ASSERT_LE(0, fd);
		ASSERT_EQ(0, dev_write(fd, &target, sizeof(target), &i, 0));
		ASSERT_EQ(i, target);
		close(fd);
	}
	ASSERT_EQ(0, module_refs());
}

TEST_HARNESS_MAIN
