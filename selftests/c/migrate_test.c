// SPDX-License-Identifier: GPL-2.0
/*
 * The hardened THP migration helper (/sys/kernel/debug/secmmu/migrate_thp):
 * THPs moved between the two nodes stay intact THPs on the requested node,
 * every documented error, streams across migrations, late_invalidate
 * injection (the hardened helper catches it, the unhardened one loses
 * writes), and the ordering the event log records. Then what the helper
 * must refuse or survive: the huge zero page, addresses at and above
 * TASK_SIZE, a THP zapped under it, allocation failures while it snapshots
 * the bound contexts, and late_invalidate racing MADV_DONTNEED, munmap and
 * a second context on the same mm.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
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
	char fs_wait[16], fs_verbose[16];	/* failslab settings to restore */
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
	if (self->fs_wait[0])
		write_text_file("/sys/kernel/debug/failslab/ignore-gfp-wait", self->fs_wait,
				strlen(self->fs_wait));
	if (self->fs_verbose[0])
		write_text_file("/sys/kernel/debug/failslab/verbose", self->fs_verbose,
				strlen(self->fs_verbose));
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

/* Single passes of a stream over the THP's 512 pages, each verified as
 * soon as it has written: a lost write is counted in its own pass, and no
 * later pass can overwrite it (a continuous stream's next round would). */
struct passes {
	int fd;
	char *thp;
	volatile int stop;
	uint64_t passes, writes, lost;
	int err;
};

static void *single_passes(void *p)
{
	struct passes *ps = p;
	struct secmmu_stream s = { .addr = (uintptr_t)ps->thp, .stride = PAGE, .slots = 512,
				   .flags = SECMMU_STREAM_ONCE };
	struct secmmu_verify v;
	uint64_t w0;

	while (!ps->stop) {
		w0 = dev_stat(ps->fd, SECMMU_STAT_STREAM_WRITES);
		if (ioctl(ps->fd, SECMMU_IOCTL_STREAM_START, &s)) {
			ps->err = -errno;
			break;
		}
		/* Verify once the pass has written (it stops the pass). */
		wait_dev_stat(ps->fd, SECMMU_STAT_STREAM_WRITES, w0 + 1);
		if (ioctl(ps->fd, SECMMU_IOCTL_STREAM_VERIFY, &v)) {
			ps->err = -errno;
			break;
		}
		ps->passes++;
		ps->writes += v.writes;
		ps->lost += v.lost_writes;
	}
	return NULL;
}

/* Runs @n helper migrations while single passes write to the THP; returns
 * their sums in @ver. */
static int stream_migrations(struct __test_metadata *_metadata, char *thp, int n,
			     bool unhardened, struct secmmu_verify *ver, int *fd_out)
{
	struct passes ps = { .thp = thp };
	int fd = secmmu_open_bound(0), i, node, r = 0, busy = 0;
	pthread_t t;

	if (fd < 0)
		return fd;
	ps.fd = fd;
	if (pthread_create(&t, NULL, single_passes, &ps))
		return -EAGAIN;
	/* The device writes through its translation of the THP first. */
	wait_dev_stat(fd, SECMMU_STAT_STREAM_WRITES, 512);
	for (i = 0; i < n && !r; i++) {
		node = !page_node(thp);
		r = migrate(thp, node, unhardened);
		/* A device page walk holds a page reference for a moment; setup
		 * then reads the THP as pinned (documented -EBUSY): retry. */
		if (r == -EBUSY && busy++ < 100) {
			r = 0;
			i--;
			continue;
		}
		if (!r && page_node(thp) != node)
			r = -EIO;
	}
	ps.stop = 1;
	pthread_join(t, NULL);
	if (r)
		return r;
	if (ps.err)
		return ps.err;
	*ver = (struct secmmu_verify){ .slots = 512, .writes = ps.writes, .lost_writes = ps.lost };
	TH_LOG("%d %s migrations (%d -EBUSY retried): %llu stream writes in %llu single passes, "
	       "%llu lost", n, unhardened ? "unhardened" : "hardened", busy,
	       (unsigned long long)ps.writes, (unsigned long long)ps.passes,
	       (unsigned long long)ps.lost);
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
/* A helper request run on a thread of its own. */
struct bg_migration {
	char *thp;
	int node, r;
	bool unhardened;
};

static void *bg_migrate(void *p)
{
	struct bg_migration *m = p;

	m->r = migrate(m->thp, m->node, m->unhardened);
	return NULL;
}

/* Whether the event log holds an event of @kind. */
static bool event_seen(const char *kind)
{
	static char ev[1 << 20];
	char pat[40];

	snprintf(pat, sizeof(pat), " %s ", kind);
	return read_file(DBG "events", ev, sizeof(ev)) > 0 && strstr(ev, pat);
}

/*
 * The detector fires: the pre-fix ordering with a late secondary TLB
 * invalidation loses device writes. A single pass over the THP's 512 pages
 * starts once the unhardened helper has copied (copy_end in the event
 * log), while the injected stale translation still lives (200 ms): every
 * write lands in the old page, after the copy, and is lost; being one pass,
 * nothing later overwrites the evidence.
 */
TEST_F(thp, injection_unhardened_loses_writes)
{
	struct secmmu_stream s = { .addr = (uintptr_t)self->thp, .stride = PAGE, .slots = 512,
				   .flags = SECMMU_STREAM_ONCE };
	struct bg_migration m = { .thp = self->thp, .node = !page_node(self->thp),
				  .unhardened = true };
	struct secmmu_verify ver;
	char *ev = malloc(8 << 20), *p, kind[32];
	unsigned long long seq, copy_seq = 0, stale_after_copy = 0;
	double t0 = now_s();
	uint64_t w0;
	pthread_t t;
	int fd = secmmu_open_bound(0);

	ASSERT_NE(NULL, ev);
	ASSERT_LE(0, fd);
	/* The device caches its translation of the THP. */
	ASSERT_EQ(0, dev_write(fd, self->thp, 8, NULL, 0));
	ASSERT_EQ(0, inject(200000));
	ASSERT_EQ(0, write_text_file(DBG "events", "clear", 5));
	ASSERT_EQ(0, pthread_create(&t, NULL, bg_migrate, &m));
	while (!event_seen("copy_end") && now_s() - t0 < 20)
		;
	w0 = dev_stat(fd, SECMMU_STAT_STREAM_WRITES);
	ASSERT_EQ(0, ioctl(fd, SECMMU_IOCTL_STREAM_START, &s));
	ASSERT_LE(w0 + 512, wait_dev_stat(fd, SECMMU_STAT_STREAM_WRITES, w0 + 512));
	ASSERT_EQ(0, ioctl(fd, SECMMU_IOCTL_STREAM_VERIFY, &ver));
	ASSERT_EQ(0, pthread_join(t, NULL));
	ASSERT_EQ(0, m.r);
	TH_LOG("one pass after copy_end: %llu writes, %llu lost",
	       (unsigned long long)ver.writes, (unsigned long long)ver.lost_writes);
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
	ASSERT_STREQ("late_invalidate=1234\ncorrupt_copy=0\nskip_invalidate=0\n", buf);
	ASSERT_EQ(-EINVAL, write_text_file(DBG "inject", "corrupt_copy=2", 14));
	ASSERT_EQ(-EINVAL, write_text_file(DBG "inject", "corrupt_copy", 12));
	ASSERT_EQ(-EINVAL, write_text_file(DBG "inject", "late_invalidate=", 16));
	ASSERT_EQ(-EINVAL, write_text_file(DBG "inject", "late_invalidate=-1", 18));
	ASSERT_EQ(-EINVAL, write_text_file(DBG "inject", "late_invalidate=99999999", 24));
	ASSERT_EQ(-EINVAL, write_text_file(DBG "inject", "bogus=1", 7));
	ASSERT_EQ(-EINVAL, write_text_file(DBG "events", "clr", 3));
	ASSERT_EQ(0, inject(0));
}

#define KPF_THP		22
#define KPF_ZERO_PAGE	24

/* The /proc/kpageflags word of the page mapped at @p: 0 if nothing is
 * mapped there, ~0 if it cannot be read. */
static uint64_t kpageflags_at(const void *p)
{
	uint64_t ent = 0, flags = ~0ULL;
	int fd = open("/proc/self/pagemap", O_RDONLY);

	if (fd < 0)
		return ~0ULL;
	if (pread(fd, &ent, sizeof(ent), (uintptr_t)p / PAGE * sizeof(ent)) != sizeof(ent))
		ent = ~0ULL;
	close(fd);
	if (ent == ~0ULL)
		return ~0ULL;
	if (!(ent & (1ULL << 63)))
		return 0;
	fd = open("/proc/kpageflags", O_RDONLY);
	if (fd < 0)
		return ~0ULL;
	if (pread(fd, &flags, sizeof(flags), (ent & ((1ULL << 55) - 1)) * sizeof(flags)) != sizeof(flags))
		flags = ~0ULL;
	close(fd);
	return flags;
}

static bool is_huge_zero(uint64_t flags)
{
	return flags != ~0ULL && (flags & (1ULL << KPF_ZERO_PAGE)) && (flags & (1ULL << KPF_THP));
}

/*
 * A MADV_HUGEPAGE region that was only read is mapped by the huge zero
 * page: nothing of the process's own to move. The helper refuses it with
 * -EFAULT (as move_pages(2) reports the zero page), in both modes and for
 * both nodes, and nothing is mapped there afterwards.
 */
TEST(huge_zero_page_refused)
{
	char *map = mmap(NULL, 2 * HPAGE, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	uint64_t fails = global_stat("thp_migration_failures"), flags, sum = 0;
	int balancing = numa_balancing_set(0), node, unhardened, r;
	char buf[8] = "", res[512];
	volatile uint64_t *z;
	long kb;
	size_t i;

	ASSERT_NE(MAP_FAILED, map);
	if (read_file("/sys/kernel/mm/transparent_hugepage/use_zero_page", buf, sizeof(buf)) <= 0 ||
	    buf[0] != '1')
		SKIP(return, "transparent_hugepage/use_zero_page is not 1");
	z = (volatile uint64_t *)(((uintptr_t)map + HPAGE - 1) & ~(HPAGE - 1));
	ASSERT_EQ(0, madvise((void *)z, HPAGE, MADV_HUGEPAGE));
	kb = anon_huge_kb();
	for (i = 0; i < HPAGE / 8; i += PAGE / 8)
		sum |= z[i];
	ASSERT_EQ(0, sum);
	flags = kpageflags_at((void *)z);
	if (!is_huge_zero(flags))
		SKIP(return, "reading did not map the huge zero page (kpageflags %#llx)",
		     (unsigned long long)flags);
	/* move_pages(2) reports the zero page as -EFAULT too. */
	ASSERT_EQ(-EFAULT, page_node((void *)z));

	for (node = 0; node < 2; node++)
		for (unhardened = 0; unhardened < 2; unhardened++) {
			r = migrate((char *)z + 12345, node, unhardened);
			EXPECT_EQ(-EFAULT, r) TH_LOG("huge zero page to node %d (%s): %d", node,
						     unhardened ? "unhardened" : "hardened", r);
			ASSERT_LT(0, migrate_result(res, sizeof(res)));
			EXPECT_NE(NULL, strstr(res, "result=-14 ")) TH_LOG("%s", res);
		}
	ASSERT_EQ(fails + 4, global_stat("thp_migration_failures"));

	/* Nothing was mapped there: still the huge zero page, still zeros,
	 * no anonymous THP of the process's own. */
	for (i = 0; i < HPAGE / 8; i++)
		sum |= z[i];
	ASSERT_EQ(0, sum) TH_LOG("the zero-page region reads non-zero after the helper");
	ASSERT_EQ(kb, anon_huge_kb()) TH_LOG("AnonHugePages changed");
	flags = kpageflags_at((void *)z);
	ASSERT_TRUE(is_huge_zero(flags)) TH_LOG("kpageflags %#llx", (unsigned long long)flags);

	/* The region, and the helper, still work: a write gives the process
	 * a page of its own, which moves if it is a THP. */
	z[1] = 42;
	ASSERT_EQ(42, z[1]);
	ASSERT_EQ(0, z[0]);
	if (anon_huge_kb() >= kb + 2048) {
		node = page_node((void *)z);
		ASSERT_LE(0, node);
		ASSERT_EQ(0, migrate((void *)z, !node, false));
		ASSERT_EQ(42, z[1]);
	}
	munmap(map, 2 * HPAGE);
	if (balancing >= 0)
		numa_balancing_set(balancing);
}

/*
 * Addresses at and above TASK_SIZE (0x7ffffffff000 with 4-level paging),
 * non-canonical ones, and blocks whose end passes TASK_SIZE: -EFAULT, in
 * hex and in decimal, in both modes, without an overflow or a splat. An
 * address that overflows u64 parsing stays -EINVAL.
 */
TEST(top_of_range_addresses)
{
	static const uint64_t addrs[] = {
		0xffffffffffffffffULL, 0xfffffffffffffff8ULL, 0xfffffffffffff000ULL,
		0xffffffffffe00000ULL, 0xffffffffffe00001ULL, 0xffffffffff600000ULL,
		0xffff888000000000ULL, 0xffff800000000000ULL, 0x8000000000000000ULL,
		0x0000800000000000ULL, 0x0000800000001000ULL,
		TASK_SIZE_4L, TASK_SIZE_4L + 1, 0x00007fffffffffffULL,
		0x00007fffffe00000ULL + HPAGE - 1,
		/* Below TASK_SIZE, in the last 2 MiB block, which ends past it. */
		TASK_SIZE_4L - 1, TASK_SIZE_4L - PAGE, 0x00007fffffe00000ULL,
	};
	uint64_t fails = global_stat("thp_migration_failures");
	unsigned int i, n = 0;
	char res[512];
	int dec, unhardened, r;

	for (i = 0; i < sizeof(addrs) / sizeof(addrs[0]); i++)
		for (dec = 0; dec < 2; dec++)
			for (unhardened = 0; unhardened < 2; unhardened++) {
				r = migrate_raw(getpid(), addrs[i], (i + dec) & 1, dec, unhardened);
				EXPECT_EQ(-EFAULT, r) TH_LOG("addr %#llx (%s, %s): %d",
							     (unsigned long long)addrs[i],
							     dec ? "decimal" : "hex",
							     unhardened ? "unhardened" : "hardened", r);
				n++;
			}
	/* Each was parsed and failed as a request. */
	ASSERT_EQ(fails + n, global_stat("thp_migration_failures"));
	ASSERT_LT(0, migrate_result(res, sizeof(res)));
	ASSERT_NE(NULL, strstr(res, "result=-14 ")) TH_LOG("%s", res);
	/* 2^64 does not parse. */
	ASSERT_EQ(-EINVAL, write_text_file(DBG "migrate_thp", "1 0x10000000000000000 0", 23));
	ASSERT_EQ(-EINVAL, write_text_file(DBG "migrate_thp", "1 18446744073709551616 0", 24));
	/* The helper still answers for an ordinary address. */
	ASSERT_EQ(-EFAULT, migrate((void *)PAGE, 0, false));
}

/* A thread that zaps the THP and writes it again, each generation's value
 * into a different word of every page, so that a page of an earlier
 * generation mapped back into the region shows. */
struct zapper {
	char *thp;
	volatile int stop;
	uint64_t gen;
	long ops;
	int err;
};

static void *zap_and_retouch(void *p)
{
	struct zapper *z = p;
	size_t i;

	while (!z->stop) {
		z->gen++;
		if (madvise(z->thp, HPAGE, MADV_DONTNEED)) {
			z->err = -errno;
			break;
		}
		for (i = 0; i < HPAGE; i += PAGE)
			((volatile uint64_t *)(z->thp + i))[z->gen % 512] = z->gen;
		z->ops++;
	}
	return NULL;
}

static bool helper_result_ok(int r)
{
	return r == 0 || r == -EAGAIN || r == -EBUSY || r == -ENOENT || r == -EFAULT ||
	       r == -EALREADY;
}

/*
 * The THP goes away (MADV_DONTNEED) between the helper's lookup and
 * migrate_vma_setup, over and over: every request ends with a documented
 * result (-EALREADY too: the targets alternate and a new THP may already
 * be on the node), and nothing is ever mapped into the hole. At the end the
 * region holds exactly what the CPU last wrote.
 */
TEST_F_TIMEOUT(thp, hole_after_dontneed, 120)
{
	int hist[6] = { 0 }, bad = 0, i, r, j;
	struct zapper z = { .thp = self->thp };
	double t0 = now_s();
	pthread_t t;
	size_t off;

	ASSERT_EQ(0, pthread_create(&t, NULL, zap_and_retouch, &z));
	/* At least 300 requests and 100 zaps (a zap and retouch is slow), and
	 * until a request got as far as setup (moved, or found the hole). */
	for (i = 0; (i < 300 || z.ops < 100 || hist[0] + hist[1] == 0) && now_s() - t0 < 60; i++) {
		r = migrate(self->thp + (i * 7 % 512) * PAGE, i & 1, false);
		if (!helper_result_ok(r)) {
			bad = r;
			break;
		}
		hist[r == 0 ? 0 : r == -EAGAIN ? 1 : r == -EBUSY ? 2 : r == -ENOENT ? 3 :
		     r == -EFAULT ? 4 : 5]++;
	}
	z.stop = 1;
	ASSERT_EQ(0, pthread_join(t, NULL));
	TH_LOG("%d requests in %.1f s: %d moved, %d EAGAIN, %d EBUSY, %d ENOENT, %d EFAULT, "
	       "%d EALREADY; %ld zaps", i, now_s() - t0, hist[0], hist[1], hist[2], hist[3],
	       hist[4], hist[5], z.ops);
	ASSERT_EQ(0, bad) TH_LOG("request %d: undocumented result %d", i, bad);
	ASSERT_EQ(0, z.err) TH_LOG("madvise: %d", z.err);
	ASSERT_LT(0, z.ops);
	/* The race was exercised: a request reached setup, and either moved
	 * the THP or found the hole the zap left (-EAGAIN). */
	ASSERT_LT(0, hist[0] + hist[1]) TH_LOG("no request reached setup: the race was not exercised");
	/* Every page holds the last generation's value and zeros. */
	for (off = 0; off < HPAGE; off += PAGE) {
		const uint64_t *w = (const uint64_t *)(self->thp + off);

		for (j = 0; j < 512; j++) {
			uint64_t want = (uint64_t)j == z.gen % 512 ? z.gen : 0;

			ASSERT_EQ(want, w[j]) TH_LOG("page %zu word %d: %#llx, generation %llu",
						     off / PAGE, j, (unsigned long long)w[j],
						     (unsigned long long)z.gen);
		}
	}
}

/* The helper's result line ends with contexts_checked=N, the number of
 * contexts bound to the target mm (not those of other mms). */
static long long checked_after_move(struct __test_metadata *_metadata, char *thp,
				    bool unhardened)
{
	char res[512], *last;
	int node = !page_node(thp), r;

	r = migrate(thp, node, unhardened);
	if (r) {
		TH_LOG("migration failed: %d", r);
		return LLONG_MIN;
	}
	if (migrate_result(res, sizeof(res)) <= 0)
		return LLONG_MIN;
	last = strrchr(res, ' ');
	if (!last || strncmp(last, " contexts_checked=", 18) ||
	    !strstr(res, " late_invalidations_caught=") ||
	    strstr(res, " late_invalidations_caught=") > last) {
		TH_LOG("contexts_checked is not the last field: %s", res);
		return LLONG_MIN;
	}
	if (!strstr(res, "result=0 ") || !strstr(res, unhardened ? "mode=unhardened" : "mode=hardened")) {
		TH_LOG("%s", res);
		return LLONG_MIN;
	}
	return result_field(res, "contexts_checked");
}

TEST_F(thp, contexts_checked_reported)
{
	uint64_t sum = checksum(self->thp, HPAGE), ready;
	int fds[2], p[2], status, i;
	pid_t pid;

	ASSERT_EQ(0, checked_after_move(_metadata, self->thp, false));
	for (i = 0; i < 2; i++) {
		fds[i] = secmmu_open_bound(0);
		ASSERT_LE(0, fds[i]);
		/* Give the context translations of the THP to drain. */
		ASSERT_EQ(0, dev_read(fds[i], self->thp, 8, &ready));
		ASSERT_EQ(i + 1, checked_after_move(_metadata, self->thp, false));
	}
	ASSERT_EQ(2, checked_after_move(_metadata, self->thp, true));

	/* A context bound to another mm (a child without the THP) is not
	 * one of them. */
	ASSERT_EQ(0, madvise(self->thp, HPAGE, MADV_DONTFORK));
	ASSERT_EQ(0, pipe(p));
	pid = fork();
	ASSERT_LE(0, pid);
	if (pid == 0) {
		int fd = secmmu_open_bound(0);

		ready = fd;
		if (write(p[1], &ready, sizeof(ready)) != sizeof(ready))
			_exit(3);
		for (;;)
			pause();
	}
	close(p[1]);
	ASSERT_EQ(sizeof(ready), read(p[0], &ready, sizeof(ready)));
	close(p[0]);
	ASSERT_LE(0, (int)ready) TH_LOG("child bind: %d", (int)ready);
	ASSERT_EQ(2, checked_after_move(_metadata, self->thp, false));
	ASSERT_EQ(0, kill(pid, SIGKILL));
	ASSERT_EQ(pid, waitpid(pid, &status, 0));

	close(fds[0]);
	ASSERT_EQ(1, checked_after_move(_metadata, self->thp, false));
	close(fds[1]);
	ASSERT_EQ(0, checked_after_move(_metadata, self->thp, false));
	ASSERT_EQ(sum, checksum(self->thp, HPAGE));
}

/* Sets a fault attribute file under /sys/kernel/debug/@attr/, keeping its
 * old value in @old (once): 0 or -errno. */
static int fault_attr_set(const char *attr, const char *val, char *old, size_t len)
{
	char path[128];
	char *nl;

	snprintf(path, sizeof(path), "/sys/kernel/debug/%s", attr);
	if (!old[0]) {
		if (read_file(path, old, len) <= 0)
			return -ENOENT;
		nl = strchr(old, '\n');
		if (nl)
			*nl = 0;
	}
	return write_text_file(path, val, strlen(val));
}

static int fail_nth_set(int fd, unsigned int n)
{
	char s[16];
	int len = snprintf(s, sizeof(s), "%u", n);

	return pwrite(fd, s, len, 0) == len ? 0 : -errno;
}

static long fail_nth_get(int fd)
{
	char s[16] = "";

	if (pread(fd, s, sizeof(s) - 1, 0) <= 0)
		return -1;
	return strtol(s, NULL, 10);
}

/*
 * Out of memory while the helper snapshots the contexts bound to the mm:
 * the N-th fault-injectable allocation of the request fails, for N = 1, 2,
 * ... until a request passes all its allocations. A failing request returns
 * a documented errno (-ENOMEM among them) and leaves the THP intact; a
 * successful one reports the bound context checked and the copy verified,
 * never "hardened, verified=1" after checking nobody.
 */
TEST_F_TIMEOUT(thp, snapshot_enomem_fails, 600)
{
	int nth = open("/proc/thread-self/fail-nth", O_RDWR), fd, mfd, n, node, r, e;
	int ok = 0, enomem = 0, errs = 0;
	uint64_t sum = checksum(self->thp, HPAGE);
	char line[128], res[512];
	bool done = false;
	double t0 = now_s();
	long left;

	if (nth < 0)
		SKIP(return, "no /proc/thread-self/fail-nth (CONFIG_FAULT_INJECTION), runs on the debug kernel");
	/* failslab ignores allocations that may sleep unless told otherwise,
	 * and by default dumps a stack for every failure it forces (which the
	 * runner's dmesg scan would report). */
	if (fault_attr_set("failslab/ignore-gfp-wait", "N", self->fs_wait, sizeof(self->fs_wait)) ||
	    fault_attr_set("failslab/verbose", "0", self->fs_verbose, sizeof(self->fs_verbose)))
		SKIP(return, "no /sys/kernel/debug/failslab (CONFIG_FAULT_INJECTION_DEBUG_FS): "
		     "GFP_KERNEL allocations cannot be failed, and each failure would dump a stack");
	fd = secmmu_open_bound(0);
	ASSERT_LE(0, fd);
	ASSERT_EQ(0, dev_write(fd, self->thp, 8, NULL, 0));	/* the fixture's word 0 is 0 */
	mfd = open(DBG "migrate_thp", O_RDWR);
	ASSERT_LE(0, mfd);

	for (n = 1; n <= 256 && !done && now_s() - t0 < 480; n++) {
		int len;

		node = !page_node(self->thp);
		len = snprintf(line, sizeof(line), "%d %p %d", getpid(), self->thp, node);
		ASSERT_EQ(0, fail_nth_set(nth, n));
		r = write(mfd, line, len);
		e = r < 0 ? errno : 0;
		left = fail_nth_get(nth);
		ASSERT_EQ(0, fail_nth_set(nth, 0));
		if (r >= 0) {
			ASSERT_EQ(len, r);
			ASSERT_LT(0, migrate_result(res, sizeof(res)));
			EXPECT_EQ(1, result_field(res, "contexts_checked")) TH_LOG("fail-nth %d: %s", n, res);
			EXPECT_EQ(1, result_field(res, "verified")) TH_LOG("fail-nth %d: %s", n, res);
			EXPECT_NE(NULL, strstr(res, "mode=hardened")) TH_LOG("%s", res);
			EXPECT_EQ(node, page_node(self->thp)) TH_LOG("fail-nth %d", n);
			ok++;
			/* The injection was not consumed: no allocation left to fail. */
			done = left > 0;
		} else {
			TH_LOG("fail-nth %d: -%d (%s)%s", n, e, strerror(e),
			       left > 0 ? ", injection not reached" : "");
			EXPECT_TRUE(e == ENOMEM || e == EAGAIN || e == EBUSY || e == EFAULT ||
				    e == EINVAL || e == ENOENT) TH_LOG("fail-nth %d: undocumented -%d", n, e);
			EXPECT_NE(EIO, e);
			enomem += e == ENOMEM;
			errs++;
			EXPECT_EQ(!node, page_node(self->thp)) TH_LOG("a failure moved the THP (fail-nth %d)", n);
		}
		EXPECT_EQ(sum, checksum(self->thp, HPAGE)) TH_LOG("THP contents changed, fail-nth %d", n);
	}
	TH_LOG("%d requests: %d succeeded, %d failed (%d with -ENOMEM); ended by %s", n - 1, ok,
	       errs, enomem, done ? "a request with no allocation left to fail" : "the bound");
	ASSERT_LT(0, enomem) TH_LOG("no request failed with -ENOMEM");
	ASSERT_LT(0, ok) TH_LOG("no request succeeded");
	ASSERT_TRUE(done) TH_LOG("%d requests did not reach one with no allocation left to fail",
				 n - 1);
	close(mfd);
	close(fd);
	close(nth);
}

/*
 * late_invalidate injection is memory-safe: while a stream writes the THP
 * and the helper moves it back and forth (hardened and unhardened), a
 * second thread zaps it, unmaps and maps it again, or binds a second
 * context to the same mm and writes through it. Every call returns a
 * documented result; the runner's dmesg scan (KASAN on the debug kernel)
 * judges that the device never touched a freed page.
 */
enum race_kind { RACE_DONTNEED, RACE_MUNMAP, RACE_SECOND_BIND };

struct inject_racer {
	char *thp;
	enum race_kind kind;
	volatile int stop;
	long ops;
	int err;
	const char *what;
};

static void touch_thp(char *thp, uint64_t v)
{
	size_t i;

	for (i = 0; i < HPAGE; i += PAGE)
		((volatile uint64_t *)(thp + i))[1] = v;
}

static void *inject_racer(void *p)
{
	struct inject_racer *r = p;
	struct secmmu_bind b = { 0 };
	int fd = -1, ret = 0;

	if (r->kind == RACE_SECOND_BIND) {
		fd = open(SECMMU_DEV, O_RDWR);
		if (fd < 0) {
			r->err = -errno;
			r->what = "open";
			return NULL;
		}
	}
	while (!r->stop && !ret) {
		switch (r->kind) {
		case RACE_DONTNEED:
			if (madvise(r->thp, HPAGE, MADV_DONTNEED)) {
				ret = -errno;
				r->what = "MADV_DONTNEED";
				break;
			}
			touch_thp(r->thp, r->ops);
			break;
		case RACE_MUNMAP:
			if (munmap(r->thp, HPAGE)) {
				ret = -errno;
				r->what = "munmap";
				break;
			}
			if (mmap(r->thp, HPAGE, PROT_READ | PROT_WRITE,
				 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) != r->thp) {
				ret = -errno;
				r->what = "mmap MAP_FIXED";
				break;
			}
			if (madvise(r->thp, HPAGE, MADV_HUGEPAGE)) {
				ret = -errno;
				r->what = "MADV_HUGEPAGE";
				break;
			}
			touch_thp(r->thp, r->ops);
			break;
		case RACE_SECOND_BIND:
			if (ioctl(fd, SECMMU_IOCTL_BIND, &b)) {
				ret = -errno;
				r->what = "BIND";
				break;
			}
			ret = dev_write(fd, r->thp + (r->ops % 512) * PAGE + 16, PAGE - 16, NULL, r->ops);
			if (ret == -EAGAIN)
				ret = 0;
			if (ret) {
				r->what = "device write";
				break;
			}
			if (ioctl(fd, SECMMU_IOCTL_UNBIND)) {
				ret = -errno;
				r->what = "UNBIND";
			}
			break;
		}
		if (!ret)
			r->ops++;
	}
	r->err = ret;
	if (fd >= 0)
		close(fd);
	return NULL;
}

static void inject_race(struct __test_metadata *_metadata, char *thp, enum race_kind kind)
{
	static const char *const names[] = { "MADV_DONTNEED", "munmap+mmap", "second bind" };
	struct secmmu_stream s = { .addr = (uintptr_t)thp, .stride = PAGE, .slots = 512 };
	struct inject_racer r = { .thp = thp, .kind = kind };
	int fd = secmmu_open_bound(0), i, ret, moved = 0, restarts = 0, bad = 0, start_err = 0;
	uint64_t caught = global_stat("late_invalidations_caught");
	double t0 = now_s();
	pthread_t t;

	ASSERT_LE(0, fd);
	ASSERT_EQ(0, inject(2000));
	ASSERT_EQ(0, ioctl(fd, SECMMU_IOCTL_STREAM_START, &s));
	ASSERT_LE(1, wait_dev_stat(fd, SECMMU_STAT_STREAM_WRITES, 1));
	ASSERT_EQ(0, pthread_create(&t, NULL, inject_racer, &r));
	/* At least 400 attempts and 100 racer operations, at most 45 s. */
	for (i = 0; (i < 400 || r.ops < 100) && now_s() - t0 < 45 && !r.err; i++) {
		ret = migrate(thp + (i * 13 % 512) * PAGE, i & 1, i % 3 == 2);
		if (!ret) {
			moved++;
		} else if (!helper_result_ok(ret) && ret != -ENOMEM) {
			bad = ret;
			break;
		}
		/* Keep the device writing: a stream stopped by a fault (the
		 * range unmapped for a moment) is started again. */
		if (!ioctl(fd, SECMMU_IOCTL_STREAM_START, &s)) {
			restarts++;
		} else if (errno != EBUSY) {
			start_err = -errno;
			break;
		}
	}
	r.stop = 1;
	ASSERT_EQ(0, pthread_join(t, NULL));
	ret = ioctl(fd, SECMMU_IOCTL_STREAM_STOP) ? -errno : 0;
	ASSERT_EQ(0, inject(0));
	TH_LOG("%s: %d of %d attempts moved the THP in %.1f s; %ld racer operations, "
	       "stream restarted %d times, %llu late invalidations caught", names[kind], moved, i,
	       now_s() - t0, r.ops, restarts,
	       (unsigned long long)(global_stat("late_invalidations_caught") - caught));
	EXPECT_EQ(0, bad) TH_LOG("attempt %d: undocumented helper result %d", i, bad);
	EXPECT_EQ(0, start_err) TH_LOG("STREAM_START: %d", start_err);
	EXPECT_EQ(0, r.err) TH_LOG("racer: %s returned %d", r.what ? r.what : "?", r.err);
	ASSERT_TRUE(ret == 0 || ret == -EAGAIN || ret == -ENOMEM ||
		    (kind == RACE_MUNMAP && ret == -EFAULT)) TH_LOG("STREAM_STOP: %d", ret);
	ASSERT_LT(0, r.ops);
	ASSERT_LT(0, i);
	ASSERT_EQ(0, close(fd));
}

TEST_F_TIMEOUT(thp, inject_race_dontneed, 120)
{
	inject_race(_metadata, self->thp, RACE_DONTNEED);
}

TEST_F_TIMEOUT(thp, inject_race_munmap, 120)
{
	inject_race(_metadata, self->thp, RACE_MUNMAP);
}

TEST_F_TIMEOUT(thp, inject_race_second_bind, 120)
{
	inject_race(_metadata, self->thp, RACE_SECOND_BIND);
}

TEST_HARNESS_MAIN
