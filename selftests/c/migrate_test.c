// SPDX-License-Identifier: GPL-2.0
/*
 * The hardened THP migration helper (/sys/kernel/debug/secmmu/migrate_thp):
 * THPs moved between the two nodes stay intact THPs on the requested node,
 * every documented error, streams across migrations, late_invalidate
 * injection (the hardened helper catches it, the unhardened one loses
 * writes), and the ordering the event log records.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stddef.h>
#include <sys/uio.h>
#include <sys/wait.h>

#include "kselftest_harness.h"
#include "secmmu_lib.h"

static uint64_t checksum(const char *p, size_t len)
{
	uint64_t h = 1469598103934665603ULL;
	size_t i;

	for (i = 0; i < len; i += 8)
		h = (h ^ *(const uint64_t *)(p + i)) * 1099511628211ULL;
	return h;
}

FIXTURE(thp) {
	char *thp;
	int balancing;
};

FIXTURE_SETUP(thp)
{
	size_t i;

	ASSERT_EQ(0, inject(0));
	self->balancing = numa_balancing_set(0);
	self->thp = thp_alloc(1);
	ASSERT_NE(NULL, self->thp);
	if (anon_huge_kb() < 2048)
		SKIP(return, "no THP backing the region");
	for (i = 0; i < HPAGE; i += 8)
		*(uint64_t *)(self->thp + i) = i * 2654435761ULL;
}

FIXTURE_TEARDOWN(thp)
{
	inject(0);
	write_text_file(DBG "inject", "corrupt_copy=0", 14);
	if (self->balancing >= 0)
		numa_balancing_set(self->balancing);
}

TEST_F(thp, ping_pong_intact)
{
	uint64_t sum = checksum(self->thp, HPAGE), before = global_stat("thp_migrations");
	char res[256];
	int i, node;

	for (i = 0; i < 20; i++) {
		node = !page_node(self->thp);
		ASSERT_EQ(0, migrate(self->thp + 12345, node, false)) TH_LOG("move %d", i);
		ASSERT_EQ(node, page_node(self->thp));
		ASSERT_EQ(node, page_node(self->thp + HPAGE - PAGE));
		ASSERT_LE(2048, anon_huge_kb()) TH_LOG("not a THP after move %d", i);
		ASSERT_EQ(sum, checksum(self->thp, HPAGE)) TH_LOG("contents changed, move %d", i);
	}
	ASSERT_EQ(before + 20, global_stat("thp_migrations"));
	ASSERT_LT(0, read_file(DBG "migrate_thp", res, sizeof(res)));
	ASSERT_NE(NULL, strstr(res, "result=0 ")) TH_LOG("%s", res);
	ASSERT_NE(NULL, strstr(res, "verified=1")) TH_LOG("%s", res);
	ASSERT_NE(NULL, strstr(res, "mode=hardened")) TH_LOG("%s", res);
}

TEST_F(thp, errors)
{
	char *small = mmap(NULL, 4 * PAGE, PROT_READ | PROT_WRITE,
			   MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	char *shared = mmap(NULL, 3 * HPAGE, PROT_READ | PROT_WRITE,
			    MAP_SHARED | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	uint64_t sum = checksum(self->thp, HPAGE), fails = global_stat("thp_migration_failures");
	int node = page_node(self->thp);
	char line[128], res[256];
	struct { const char *in; int err; } bad[] = {
		{ "", -EINVAL }, { "\n", -EINVAL }, { "abc", -EINVAL },
		{ "1", -EINVAL }, { "1 0x1000", -EINVAL },
		{ "1 0x1000 0 unhardened extra", -EINVAL }, { "1 0x1000 0 hardened", -EINVAL },
		{ "-1 0x1000 0", -EINVAL }, { "0 0x1000 0", -EINVAL },
		{ "1 0x 0", -EINVAL }, { "1 0xzz 0", -EINVAL },
		{ "1 99999999999999999999999 0", -EINVAL },
		{ "99999999999 0x1000 0", -EINVAL },
		{ "1 4096 x", -EINVAL },
	};
	unsigned int i;

	ASSERT_NE(MAP_FAILED, small);
	ASSERT_NE(MAP_FAILED, shared);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		const char *in = bad[i].in;
		int err = bad[i].err;

		ASSERT_EQ(err, write_text_file(DBG "migrate_thp", in, strlen(in))) TH_LOG("input '%s'", in);
	}
	/* Embedded NUL and an overlong line. */
	ASSERT_EQ(-EINVAL, write_text_file(DBG "migrate_thp", "1\0 2 3", 6));
	memset(line, '1', sizeof(line));
	ASSERT_EQ(-EINVAL, write_text_file(DBG "migrate_thp", line, sizeof(line)));

	/* No such process (pid_max is far below this). */
	snprintf(line, sizeof(line), "%d %p %d", 4000000, self->thp, !node);
	ASSERT_EQ(-ESRCH, write_text_file(DBG "migrate_thp", line, strlen(line)));
	/* Not in any VMA; not anonymous private; no THP. */
	ASSERT_EQ(-EFAULT, migrate((void *)PAGE, !node, false));
	ASSERT_EQ(-EINVAL, migrate(shared + HPAGE, !node, false));
	ASSERT_EQ(-ENOENT, migrate(small, !node, false));
	/* Bad nodes; already there. */
	ASSERT_EQ(-EINVAL, migrate(self->thp, 2, false));
	ASSERT_EQ(-EINVAL, migrate(self->thp, -1, false));
	ASSERT_EQ(-EINVAL, migrate(self->thp, 1 << 20, false));
	ASSERT_EQ(-EALREADY, migrate(self->thp, node, false));
	ASSERT_LT(0, read_file(DBG "migrate_thp", res, sizeof(res)));
	ASSERT_NE(NULL, strstr(res, "result=-114")) TH_LOG("%s", res);

	/* Failures leave the THP where it was, intact. */
	ASSERT_EQ(node, page_node(self->thp));
	ASSERT_LE(2048, anon_huge_kb());
	ASSERT_EQ(sum, checksum(self->thp, HPAGE));
	ASSERT_LT(fails, global_stat("thp_migration_failures"));
}

/* A page reference the kernel cannot migrate away (a pipe holds one
 * after vmsplice): the helper reports -EBUSY and the THP stays. */
TEST_F(thp, busy_when_pinned)
{
	uint64_t sum = checksum(self->thp, HPAGE);
	struct iovec iov = { .iov_base = self->thp + PAGE, .iov_len = PAGE };
	int node = page_node(self->thp), p[2];

	ASSERT_EQ(0, pipe(p));
	ASSERT_EQ(PAGE, vmsplice(p[1], &iov, 1, 0));
	ASSERT_EQ(-EBUSY, migrate(self->thp, !node, false));
	ASSERT_EQ(node, page_node(self->thp));
	ASSERT_LE(2048, anon_huge_kb());
	ASSERT_EQ(sum, checksum(self->thp, HPAGE));
	close(p[0]);
	close(p[1]);
	ASSERT_EQ(0, migrate(self->thp, !node, false));
}

/* No huge page free on the target node: fill node 1 with THPs
 * (MPOL_PREFERRED spills to node 0 instead of invoking the OOM killer). */
TEST_F(thp, enomem_when_node_full)
{
	size_t len = 1100UL << 20, i;
	unsigned long mask = 1UL << 1;
	char *m;
	int r;

	if (page_node(self->thp) != 0)
		ASSERT_EQ(0, migrate(self->thp, 0, false));
	m = mmap(NULL, len, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	ASSERT_NE(MAP_FAILED, m);
	ASSERT_EQ(0, madvise(m, len, MADV_HUGEPAGE));
	ASSERT_EQ(0, syscall(SYS_mbind, m, len, 1 /* MPOL_PREFERRED */, &mask, 3, 0));
	for (i = 0; i < len; i += PAGE)
		m[i] = 1;
	r = migrate(self->thp, 1, false);
	munmap(m, len);
	ASSERT_EQ(-ENOMEM, r);
	ASSERT_EQ(0, page_node(self->thp));
	ASSERT_LE(2048, anon_huge_kb());
}

/* The copy verification fires: with corrupt_copy injected, the hardened
 * helper aborts with -EIO and the THP stays where it was, intact. */
TEST_F(thp, verify_failure_aborts)
{
	uint64_t sum = checksum(self->thp, HPAGE), before = global_stat("thp_verify_failures");
	int node = page_node(self->thp);
	char res[256];

	ASSERT_EQ(0, write_text_file(DBG "inject", "corrupt_copy=1", 14));
	ASSERT_EQ(-EIO, migrate(self->thp, !node, false));
	ASSERT_EQ(0, write_text_file(DBG "inject", "corrupt_copy=0", 14));
	ASSERT_EQ(before + 1, global_stat("thp_verify_failures"));
	ASSERT_LT(0, read_file(DBG "migrate_thp", res, sizeof(res)));
	ASSERT_NE(NULL, strstr(res, "result=-5 ")) TH_LOG("%s", res);
	/* The copy and the failed comparison were made and timed. */
	ASSERT_EQ(NULL, strstr(res, " copy_ns=0 ")) TH_LOG("%s", res);
	ASSERT_EQ(NULL, strstr(res, " verify_ns=0 ")) TH_LOG("%s", res);
	ASSERT_NE(NULL, strstr(res, " verified=0 ")) TH_LOG("%s", res);
	ASSERT_EQ(node, page_node(self->thp));
	ASSERT_LE(2048, anon_huge_kb());
	ASSERT_EQ(sum, checksum(self->thp, HPAGE));
	ASSERT_EQ(0, migrate(self->thp, !node, false));
}

TEST_F(thp, unprivileged_refused)
{
	int status;
	pid_t pid = fork();

	ASSERT_LE(0, pid);
	if (pid == 0) {
		if (setgid(65534) || setuid(65534))
			_exit(3);
		if (open(DBG "migrate_thp", O_WRONLY) >= 0)
			_exit(1);
		if (open(SECMMU_DEV, O_RDWR) >= 0)
			_exit(2);
		_exit(0);
	}
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	ASSERT_EQ(0, WEXITSTATUS(status));
}

/* Runs @n helper migrations while a stream writes to the THP; returns the
 * verify result. */
static int stream_migrations(struct __test_metadata *_metadata, char *thp, int n,
			     bool unhardened, struct secmmu_verify *ver, int *fd_out)
{
	struct secmmu_stream s = { .addr = (uintptr_t)thp, .stride = PAGE, .slots = 512 };
	int fd = secmmu_open_bound(0), i, node, r;

	if (fd < 0)
		return fd;
	if (ioctl(fd, SECMMU_IOCTL_STREAM_START, &s))
		return -errno;
	usleep(5000);
	for (i = 0; i < n; i++) {
		node = !page_node(thp);
		r = migrate(thp, node, unhardened);
		if (r)
			return r;
		if (page_node(thp) != node)
			return -EIO;
	}
	if (ioctl(fd, SECMMU_IOCTL_STREAM_STOP))
		return -errno;
	if (ioctl(fd, SECMMU_IOCTL_STREAM_VERIFY, ver))
		return -errno;
	TH_LOG("%d %s migrations: %llu stream writes, %llu lost", n,
	       unhardened ? "unhardened" : "hardened", (unsigned long long)ver->writes,
	       (unsigned long long)ver->lost_writes);
	*fd_out = fd;
	return 0;
}

TEST_F(thp, stream_across_100_migrations)
{
	struct secmmu_verify ver;
	int fd;

	ASSERT_EQ(0, stream_migrations(_metadata, self->thp, 100, false, &ver, &fd));
	ASSERT_EQ(0, ver.lost_writes);
	ASSERT_LT(512, ver.writes);
	ASSERT_LE(100, dev_stat(fd, SECMMU_STAT_INVALIDATIONS));
	ASSERT_EQ(0, dev_stat(fd, SECMMU_STAT_LATE_INVALIDATIONS_CAUGHT));
	close(fd);
}

TEST_F(thp, unhardened_without_injection_loses_nothing)
{
	struct secmmu_verify ver;
	int fd;

	ASSERT_EQ(0, stream_migrations(_metadata, self->thp, 10, true, &ver, &fd));
	ASSERT_EQ(0, ver.lost_writes);
	close(fd);
}

TEST_F(thp, injection_hardened_catches)
{
	struct secmmu_verify ver;
	int fd;

	ASSERT_EQ(0, inject(20000));
	ASSERT_EQ(0, stream_migrations(_metadata, self->thp, 10, false, &ver, &fd));
	ASSERT_EQ(0, ver.lost_writes);
	ASSERT_LT(0, dev_stat(fd, SECMMU_STAT_LATE_INVALIDATIONS_CAUGHT));
	close(fd);
}

/* The detector fires: the pre-fix ordering with a late secondary TLB
 * invalidation loses device writes. */
TEST_F(thp, injection_unhardened_loses_writes)
{
	struct secmmu_verify ver;
	char *ev = malloc(8 << 20), *p, kind[32];
	unsigned long long seq, copy_seq = 0, stale_after_copy = 0;
	int fd;

	ASSERT_NE(NULL, ev);
	ASSERT_EQ(0, inject(20000));
	ASSERT_EQ(0, write_text_file(DBG "events", "clear", 5));
	ASSERT_EQ(0, stream_migrations(_metadata, self->thp, 1, true, &ver, &fd));
	ASSERT_LT(0, ver.lost_writes) TH_LOG("the lost-write detector did not fire");
	ASSERT_LE(ver.lost_writes, dev_stat(fd, SECMMU_STAT_LOST_WRITES));
	ASSERT_LT(0, dev_stat(fd, SECMMU_STAT_STALE_ACCESSES));
	ASSERT_LT(0, read_file(DBG "events", ev, 8 << 20));
	for (p = ev; *p; p = strchr(p, '\n') + 1) {
		if (sscanf(p, "%llu %*u %*u %*u %31s", &seq, kind) == 2) {
			if (!strcmp(kind, "copy_begin"))
				copy_seq = seq;
			else if (!strcmp(kind, "stale_access") && copy_seq && seq > copy_seq)
				stale_after_copy++;
		}
		if (!strchr(p, '\n'))
			break;
	}
	ASSERT_NE(0, copy_seq);
	ASSERT_LT(0, stale_after_copy) TH_LOG("no stale_access after copy_begin");
	free(ev);
	close(fd);
}

/* From the event log: for a hardened migration every invalidation covering
 * the range precedes copy_begin, no stale access follows it, and the
 * device's first fill after migrate_done is on the new node. */
TEST_F(thp, event_ordering)
{
	char *ev = malloc(8 << 20), *p, kind[32];
	unsigned long long seq, a, b, copy = 0, done = 0, last_inval = 0;
	unsigned long start = (unsigned long)self->thp;
	int fd = secmmu_open_bound(0), node, fill_node = -2, ctx, n;

	ASSERT_NE(NULL, ev);
	ASSERT_LE(0, fd);
	ASSERT_EQ(0, dev_write(fd, self->thp, 8, NULL, 1));
	ASSERT_EQ(0, inject(20000));
	node = !page_node(self->thp);
	ASSERT_EQ(0, write_text_file(DBG "events", "clear\n", 6));
	ASSERT_EQ(0, migrate(self->thp, node, false));
	ASSERT_EQ(0, dev_write(fd, self->thp + 8, 8, NULL, 2));
	ASSERT_LT(0, read_file(DBG "events", ev, 8 << 20));
	for (p = ev; *p; p = strchr(p, '\n') + 1) {
		if (sscanf(p, "%llu %*u %*u %d %31s %llx %llx %d", &seq, &ctx, kind, &a, &b, &n) == 6) {
			if (!strcmp(kind, "invalidate") && a <= start && b >= start + HPAGE && !copy)
				last_inval = seq;
			if (!strcmp(kind, "invalidate") && a < start + HPAGE && b > start)
				ASSERT_EQ(0, copy) TH_LOG("invalidation after copy_begin: %.60s", p);
			if (!strcmp(kind, "copy_begin"))
				copy = seq;
			if (!strcmp(kind, "stale_access"))
				ASSERT_EQ(0, copy) TH_LOG("stale access after copy_begin");
			if (!strcmp(kind, "migrate_done"))
				done = seq;
			if (!strcmp(kind, "fill") && done && fill_node == -2)
				fill_node = n;
		}
		if (!strchr(p, '\n'))
			break;
	}
	ASSERT_NE(0, last_inval) TH_LOG("no invalidation covering the THP:\n%s", ev);
	ASSERT_LT(last_inval, copy);
	ASSERT_LT(copy, done);
	ASSERT_EQ(node, fill_node);
	free(ev);
	close(fd);
}

TEST(inject_file)
{
	char buf[64];

	ASSERT_EQ(0, inject(1234));
	ASSERT_LT(0, read_file(DBG "inject", buf, sizeof(buf)));
	ASSERT_STREQ("late_invalidate=1234\ncorrupt_copy=0\n", buf);
	ASSERT_EQ(-EINVAL, write_text_file(DBG "inject", "corrupt_copy=2", 14));
	ASSERT_EQ(-EINVAL, write_text_file(DBG "inject", "corrupt_copy", 12));
	ASSERT_EQ(-EINVAL, write_text_file(DBG "inject", "late_invalidate=", 16));
	ASSERT_EQ(-EINVAL, write_text_file(DBG "inject", "late_invalidate=-1", 18));
	ASSERT_EQ(-EINVAL, write_text_file(DBG "inject", "late_invalidate=99999999", 24));
	ASSERT_EQ(-EINVAL, write_text_file(DBG "inject", "bogus=1", 7));
	ASSERT_EQ(-EINVAL, write_text_file(DBG "events", "clr", 3));
	ASSERT_EQ(0, inject(0));
}

TEST_HARNESS_MAIN
