/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The path matrix, migration family: every kernel path that moves, splits,
 * collapses, reprotects or remaps memory the device holds a translation of
 * (4 KiB and 2 MiB): NUMA balancing, move_pages(2), migrate_pages(2),
 * mbind(2), the module's THP helper, compaction, MADV_COLLAPSE, partial
 * unmaps of a THP, mprotect and mremap. Each case is judged by the oracles
 * of paths_lib.h that apply and prints their cells; the fixture adds the
 * freed_page cell. Included by paths_test.c.
 *
 * A case first makes the device hold translations of the whole region
 * (dev_prime; for a THP a 2 MiB one, checked through huge_fills), runs the
 * operation once and checks (stale_read, write_after_revoke); then, where
 * the memory stays mapped, it races single-pass streams against the
 * operation (lost_write, race_passes()) until MIG_OVERLAPS passes were
 * still writing when it returned, and fails if none was. Operations that
 * cannot repeat on the same memory (collapse, split, compaction, mremap)
 * get a fresh region per pass. NUMA balancing moves pages when it likes:
 * there a pass counts if a move landed while it still had slots to write.
 * Knobs a case changes (NUMA scan rates, the engine's cpumask,
 * shmem_enabled) are restored at its end, also when an ASSERT aborts it.
 */
#include <pthread.h>
#include <sched.h>
#include <signal.h>

#ifndef MADV_COLLAPSE
#define MADV_COLLAPSE 25
#endif
#ifndef MREMAP_DONTUNMAP
#define MREMAP_DONTUNMAP 4
#endif

#define MIG_SLOTS	65536U			/* one stream pass, stride 8 */
#define MIG_4K_LEN	(MIG_SLOTS * 8UL)	/* 128 pages: what a pass covers */
#define MIG_FRAG_LEN	(16UL << 20)		/* compaction's fragmented region */
#define MIG_FLUSH_LEN	(256UL << 20)		/* ... and what flushes its holes */
#define MIG_OVERLAPS	2			/* overlapping passes wanted */
#define MIG_PASSES	20			/* at most this many passes */
#define MIG_WAIT_S	60			/* bound on a NUMA migration */
#define MIG_TIMEOUT	900			/* per case, TCG */
#define MIG_MPOL_BIND	2
#define MIG_THP_SYSFS	"/sys/kernel/mm/transparent_hugepage/"
#define MIG_NUMA_KNOBS	"/sys/kernel/debug/sched/numa_balancing/"
#define MIG_ENGINE_CPUS	"/sys/devices/virtual/workqueue/secmmu_engine/cpumask"

/* A case's memory, its operation and its oracles' tallies. */
struct mig_ctx {
	char *p;			/* the memory the device maps */
	size_t len;			/* HPAGE or MIG_4K_LEN */
	bool thp, shmem;
	char *sub;			/* split_*: the 4 KiB in the THP's middle */
	char *dst;			/* mremap's target */
	char *frag;			/* compaction: the fragmented region */
	int (*op)(struct mig_ctx *);	/* one kernel operation, checked */
	int (*move)(struct mig_ctx *, int node);	/* node moves: the syscall */
	int target;			/* node the last move went to */
	int mremap_flags;		/* mremap: MREMAP_DONTUNMAP or 0 */
	size_t dst_len;
	char why[160];			/* what the failing op saw */
	int err;			/* first failure of op: later ops do nothing */
	uint64_t runs;			/* kernel operations run */
	uint64_t retries;		/* -EBUSY/-EAGAIN retried */
	uint64_t moved;			/* compaction: stream pages that moved */
	uint64_t pfns[MIG_4K_LEN / PAGE];
	pthread_t toucher;		/* NUMA: the CPU reading the memory */
	volatile int stop;
	int fd;				/* NUMA: the device context */
	bool waiting;			/* NUMA: a move toward target is due */
	bool engine_pinned;		/* NUMA: the engine's cpumask was set */
	bool engine_follows;		/* NUMA: the engine is on the reader's node */
	int followed;			/* NUMA: moves that needed it */
	long had;			/* NUMA: region pages on target then */
	long long vm0;			/* NUMA: numa_pages_migrated at the start */
	double deadline;		/* NUMA: fail if nothing moved by then */
	uint64_t pass_w0;		/* NUMA: stream writes before the pass (~0: none) */
	bool mid_pass;			/* NUMA: the last move landed while it wrote */
	struct tally lw, sr, war;	/* lost_write, stale_read, write_after_revoke */
};

/* ---- knobs, restored at the end of the case or when an ASSERT aborts ---- */

static struct { const char *path; char old[64]; int len; } mig_knobs[8];
static int mig_nknobs;

static void mig_knobs_restore(void)
{
	while (mig_nknobs > 0) {
		mig_nknobs--;
		write_text_file(mig_knobs[mig_nknobs].path, mig_knobs[mig_nknobs].old,
				mig_knobs[mig_nknobs].len);
	}
}

static void mig_on_abort(int sig)
{
	mig_knobs_restore();
	signal(sig, SIG_DFL);
	raise(sig);
}

/* Sets @path to @val, remembering the old value (the bracketed word of a
 * "a [b] c" choice file); 0, or -errno (-ENOENT: no such knob). */
static int mig_knob_set(const char *path, const char *val)
{
	char buf[256], *s, *e;
	long n = read_file(path, buf, sizeof(buf));

	if (n < 0)
		return n;
	s = strchr(buf, '[') ? strchr(buf, '[') + 1 : buf;
	e = strpbrk(s, "]\n");
	if (e)
		*e = 0;
	if (mig_nknobs == 8 || strlen(s) >= sizeof(mig_knobs[0].old))
		return -E2BIG;
	strcpy(mig_knobs[mig_nknobs].old, s);
	mig_knobs[mig_nknobs].len = strlen(s);
	mig_knobs[mig_nknobs].path = path;
	mig_nknobs++;
	signal(SIGABRT, mig_on_abort);
	return set_knob(path, val);
}

/* ---- memory ---- */

/* A 2 MiB-aligned hole of @len bytes between PROT_NONE guards (so that
 * what is mapped there never merges with another VMA), or NULL. */
static char *mig_reserve(size_t len)
{
	char *b = mmap(NULL, len + 2 * HPAGE, PROT_NONE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

	if (b == MAP_FAILED)
		return NULL;
	return (char *)(((uintptr_t)b + HPAGE) & ~(HPAGE - 1));
}

/* @len bytes of touched private anonymous memory, one THP if @thp
 * (MADV_HUGEPAGE), else 4 KiB pages (MADV_NOHUGEPAGE); or NULL. */
static char *mig_anon(size_t len, bool thp)
{
	char *p = mig_reserve(len);
	size_t off;

	if (!p || mmap(p, len, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) != p ||
	    madvise(p, len, thp ? MADV_HUGEPAGE : MADV_NOHUGEPAGE))
		return NULL;
	for (off = 0; off < len; off += PAGE)
		*(uint64_t *)(p + off) = token(7, off / PAGE);
	return p;
}

/* @len bytes of a memfd (shmem), mapped shared, touched (4 KiB pages). */
static char *mig_shmem(size_t len)
{
	int fd = memfd_create("secmmu-mig", 0);
	char *p = mig_reserve(len);
	size_t off;

	if (fd < 0 || !p || ftruncate(fd, len) ||
	    mmap(p, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, 0) != p)
		p = NULL;
	if (fd >= 0)
		close(fd);
	for (off = 0; p && off < len; off += PAGE)
		*(uint64_t *)(p + off) = token(7, off / PAGE);
	return p;
}

/* The "@field:" kB of the VMA holding @addr in /proc/self/smaps, or -1. */
static long mig_smaps_kb(const void *addr, const char *field)
{
	char line[512];
	unsigned long lo, hi;
	size_t l = strlen(field);
	bool in = false;
	long kb = -1;
	FILE *f = fopen("/proc/self/smaps", "r");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2)
			in = (uintptr_t)addr >= lo && (uintptr_t)addr < hi;
		else if (in && !strncmp(line, field, l) && line[l] == ':')
			kb = strtol(line + l + 1, NULL, 10);
	}
	fclose(f);
	return kb;
}

/* Whether the memory at @p is PMD-mapped by a THP (anon or shmem). */
static bool mig_pmd_mapped(const void *p, bool shmem)
{
	return mig_smaps_kb(p, shmem ? "ShmemPmdMapped" : "AnonHugePages") >= 2048;
}

/* A /proc/vmstat counter, or -1. */
static long long mig_vmstat(const char *name)
{
	char line[128];
	long long v = -1;
	size_t l = strlen(name);
	FILE *f = fopen("/proc/vmstat", "r");

	while (f && fgets(line, sizeof(line), f))
		if (!strncmp(line, name, l) && line[l] == ' ')
			v = strtoll(line + l + 1, NULL, 10);
	if (f)
		fclose(f);
	return v;
}

/* The PFNs of the @n pages at @p into @pfns (0 where not present). */
static void mig_pfns(const char *p, size_t n, uint64_t *pfns)
{
	int fd = open("/proc/self/pagemap", O_RDONLY);
	size_t i;

	if (fd < 0 || pread(fd, pfns, n * 8, (uintptr_t)p / PAGE * 8) != (ssize_t)(n * 8))
		memset(pfns, 0, n * 8);
	for (i = 0; i < n; i++)
		pfns[i] = pfns[i] >> 63 ? pfns[i] & ((1ULL << 55) - 1) : 0;
	if (fd >= 0)
		close(fd);
}

/* How many of the region's pages are on @node (-errno on failure). */
static long mig_count_on(struct mig_ctx *c, int node)
{
	void *pages[512];
	int status[512];
	size_t i, n = c->len / PAGE;
	long k = 0;

	for (i = 0; i < n; i++)
		pages[i] = c->p + i * PAGE;
	if (syscall(SYS_move_pages, 0, n, pages, NULL, status, 0))
		return -errno;
	for (i = 0; i < n; i++)
		k += status[i] == node;
	return k;
}

/* The node holding fewer of the region's pages: where a move goes. */
static int mig_emptier(struct mig_ctx *c)
{
	return mig_count_on(c, 1) * 2 <= (long)(c->len / PAGE) ? 1 : 0;
}

/* The first CPU of @node (the VM: node 0 cpu 0, node 1 cpu 1). */
static int mig_node_cpu(int node)
{
	char path[64], buf[64];

	snprintf(path, sizeof(path), "/sys/devices/system/node/node%d/cpulist", node);
	return read_file(path, buf, sizeof(buf)) > 0 ? atoi(buf) : node;
}

#define MIG_NOT_RUN(why) do {					\
	cell_not_run(_metadata->name, why);			\
	SKIP(return, "%s", why);				\
} while (0)

/* Only a kernel without THP (no sysfs directory) may skip a THP case. */
#define MIG_NEED_THP() do {					\
	if (access(MIG_THP_SYSFS "enabled", F_OK))		\
		MIG_NOT_RUN("kernel_without_THP");		\
} while (0)

#define MIG_NEED_NODES() do {					\
	if (access("/sys/devices/system/node/node1", F_OK))	\
		MIG_NOT_RUN("one_NUMA_node");			\
} while (0)

/*
 * The checks of a fresh region: what it claims to be (a THP if c->thp,
 * else 4 KiB pages), then the device takes a writable translation of every
 * page (2 MiB for a THP).
 */
static void mig_ready(struct __test_metadata *_metadata, FIXTURE_DATA(paths) *self,
		      struct mig_ctx *c)
{
	uint64_t huge = dev_stat(self->fd, SECMMU_STAT_HUGE_FILLS);

	ASSERT_NE(NULL, c->p) TH_LOG("mapping the region: %s", strerror(errno));
	ASSERT_EQ(c->thp, mig_pmd_mapped(c->p, c->shmem))
		TH_LOG("%s", c->thp ? "no THP backs the region (the kernel has THP)" :
		       "a THP maps the 4 KiB region");
	ASSERT_EQ(0, dev_prime(self->fd, c->p, c->len));
	if (c->thp)
		ASSERT_LT(huge, dev_stat(self->fd, SECMMU_STAT_HUGE_FILLS))
			TH_LOG("the device holds no 2 MiB translation of the THP");
}

/* A fresh region in @c: one THP if c->thp, else c->len (MIG_4K_LEN if 0)
 * of 4 KiB pages, anonymous or (c->shmem) a memfd; mig_ready(). */
static void mig_region(struct __test_metadata *_metadata, FIXTURE_DATA(paths) *self,
		       struct mig_ctx *c)
{
	int tries;

	c->len = c->thp ? HPAGE : (c->len ? c->len : MIG_4K_LEN);
	for (tries = 0; tries < 3; tries++) {
		c->p = c->shmem ? mig_shmem(c->len) : mig_anon(c->len, c->thp);
		if (!c->thp || !c->p || mig_pmd_mapped(c->p, false))
			break;
		/* No huge page free: compact and try again. */
		munmap(c->p, c->len);
		set_knob("/proc/sys/vm/compact_memory", "1");
	}
	mig_ready(_metadata, self, c);
}

/* Unmaps the region (and its mremap target, compaction's fragments). */
static void mig_release(struct mig_ctx *c)
{
	munmap(c->p, c->len);
	if (c->dst)
		munmap(c->dst, c->dst_len);
	if (c->frag)
		munmap(c->frag, MIG_FRAG_LEN);
	c->dst = c->frag = NULL;
}

/* One operation through c->op; a failure sticks (the next ops do nothing). */
static int mig_op(void *arg)
{
	struct mig_ctx *c = arg;
	int r;

	if (c->err)
		return c->err;
	r = c->op(c);
	c->runs++;
	if (r)
		c->err = r;
	return r;
}

#define MIG_OP_OK(c) ASSERT_EQ(0, mig_op(c))					\
	TH_LOG("%s: %s %s", _metadata->name, strerror(-(c)->err), (c)->why)

/*
 * lost_write over a fresh region per pass (for operations that cannot be
 * repeated on the same memory): @prep makes it, the pass races c->op.
 * Returns the overlapping passes.
 */
static int mig_race_fresh(struct __test_metadata *_metadata, FIXTURE_DATA(paths) *self,
			  struct mig_ctx *c,
			  void (*prep)(struct __test_metadata *, FIXTURE_DATA(paths) *,
				       struct mig_ctx *))
{
	int pass, r, overlap = 0;

	for (pass = 0; pass < MIG_PASSES && overlap < MIG_OVERLAPS; pass++) {
		prep(_metadata, self, c);
		r = race_passes(self->fd, c->p, MIG_SLOTS, mig_op, c, 1, 1, &c->lw);
		ASSERT_LE(0, r) TH_LOG("stream: %s", strerror(-r));
		ASSERT_EQ(0, c->err) TH_LOG("pass %d: %s %s", pass, strerror(-c->err), c->why);
		overlap += r;
		mig_release(c);
	}
	return overlap;
}

/* Prints the cells of the oracles the case used, adds its operations to
 * the fixture's, and fails the case on any violation. */
static void mig_report(struct __test_metadata *_metadata, FIXTURE_DATA(paths) *self,
		       struct mig_ctx *c, int overlap)
{
	const char *name = _metadata->name;

	self->ops += c->runs;
	if (c->lw.ops)
		cell(name, "lost_write", c->lw.ops, c->lw.accesses, c->lw.violations);
	if (c->sr.ops)
		cell(name, "stale_read", c->sr.ops, c->sr.accesses, c->sr.violations);
	if (c->war.ops)
		cell(name, "write_after_revoke", c->war.ops, c->war.accesses, c->war.violations);
	TH_LOG("%llu operations (%llu retried); %d raced passes overlapped the operation",
	       (unsigned long long)c->runs, (unsigned long long)c->retries, overlap);
	EXPECT_EQ(0, c->lw.violations) TH_LOG("device writes lost");
	EXPECT_EQ(0, c->sr.violations) TH_LOG("device reads returned stale data");
	EXPECT_EQ(0, c->war.violations) TH_LOG("device writes after the revoke");
}

/* report, then the race must really have run */
static void mig_finish(struct __test_metadata *_metadata, FIXTURE_DATA(paths) *self,
		       struct mig_ctx *c, int overlap)
{
	mig_report(_metadata, self, c, overlap);
	ASSERT_LE(1, overlap) TH_LOG("no pass was still writing when the operation returned");
}

/* A device read of each page of [@p, @p + @len) returns what the CPU reads
 * there (memory the CPU cannot write now: no fresh token). */
static void mig_cpu_read_check(int fd, char *p, size_t len, struct tally *t)
{
	uint64_t got;
	size_t off;

	for (off = 0; off < len; off += PAGE) {
		got = ~0ULL;
		t->accesses++;
		if (dev_read(fd, p + off, 8, &got) || got != *(volatile uint64_t *)(p + off))
			t->violations++;
	}
}

/* After PROT_NONE a device read must fault too. */
static void mig_read_faults_check(int fd, char *p, size_t len, struct tally *t)
{
	uint64_t got;
	size_t off;

	for (off = 0; off < len; off += PAGE) {
		t->accesses++;
		if (dev_read(fd, p + off, 8, &got) != -EFAULT)
			t->violations++;
	}
}

/* ---- moves between nodes: move_pages, migrate_pages, mbind, the helper ---- */

static int mig_move_pages(struct mig_ctx *c, int node)
{
	long r = move_range(c->p, c->thp ? 1 : c->len / PAGE, node);

	return r < 0 ? (int)r : 0;	/* pages left behind: mig_op_node */
}

static int mig_migrate_pages(struct mig_ctx *c, int node)
{
	unsigned long from = 1UL << !node, to = 1UL << node;

	return syscall(SYS_migrate_pages, 0, 64UL, &from, &to) < 0 ? -errno : 0;
}

static int mig_mbind(struct mig_ctx *c, int node)
{
	unsigned long mask = 1UL << node;

	return syscall(SYS_mbind, c->p, c->len, MIG_MPOL_BIND, &mask, 64UL,
		       MPOL_MF_MOVE) ? -errno : 0;
}

/* The module's hardened helper. A device walk holds a page reference for a
 * moment and setup then reads the THP as pinned (documented -EBUSY): retry,
 * as migrate_test.c does. */
static int mig_helper(struct mig_ctx *c, int node)
{
	int r, busy = 0;

	while ((r = migrate(c->p, node, false)) == -EBUSY && busy++ < 100)
		c->retries++;
	return r;
}

/* Moves the region with c->move to the node holding fewer of its pages and
 * checks that every page got there (one the kernel could not move this
 * time, e.g. while a device walk held it, is moved again). */
static int mig_op_node(struct mig_ctx *c)
{
	int node = mig_emptier(c), tries, r;

	for (tries = 0; tries < 10; tries++) {
		r = c->move(c, node);
		if (r)
			return r;
		if (mig_count_on(c, node) == (long)(c->len / PAGE)) {
			c->target = node;
			return 0;
		}
		c->retries++;
	}
	return -EAGAIN;
}

/*
 * The device holds translations of every page across one move
 * (stale_read); then single-pass streams race moves back and forth
 * (lost_write). Returns the overlapping passes.
 */
static int mig_node_flow(struct __test_metadata *_metadata, FIXTURE_DATA(paths) *self,
			 struct mig_ctx *c)
{
	int overlap;

	mig_region(_metadata, self, c);
	MIG_OP_OK(c);
	ASSERT_TRUE(!c->thp || mig_pmd_mapped(c->p, false)) TH_LOG("the move split the THP");
	c->sr.ops = 1;
	stale_read_check(self->fd, c->p, c->len, 1, &c->sr);
	overlap = race_passes(self->fd, c->p, MIG_SLOTS, mig_op, c, MIG_OVERLAPS, MIG_PASSES,
			      &c->lw);
	ASSERT_LE(0, overlap) TH_LOG("stream: %s", strerror(-overlap));
	ASSERT_EQ(0, c->err) TH_LOG("%s: %s %s", _metadata->name, strerror(-c->err), c->why);
	return overlap;
}

static void mig_move_case(struct __test_metadata *_metadata, FIXTURE_DATA(paths) *self,
			  int (*move)(struct mig_ctx *, int), bool thp)
{
	struct mig_ctx c = { .thp = thp, .op = mig_op_node, .move = move };

	mig_finish(_metadata, self, &c, mig_node_flow(_metadata, self, &c));
}

TEST_F_TIMEOUT(paths, move_pages_thp, MIG_TIMEOUT)
{
	MIG_NEED_NODES();
	MIG_NEED_THP();
	mig_move_case(_metadata, self, mig_move_pages, true);
}

TEST_F_TIMEOUT(paths, move_pages_4k, MIG_TIMEOUT)
{
	MIG_NEED_NODES();
	mig_move_case(_metadata, self, mig_move_pages, false);
}

TEST_F_TIMEOUT(paths, migrate_pages_thp, MIG_TIMEOUT)
{
	MIG_NEED_NODES();
	MIG_NEED_THP();
	mig_move_case(_metadata, self, mig_migrate_pages, true);
}

TEST_F_TIMEOUT(paths, migrate_pages_4k, MIG_TIMEOUT)
{
	MIG_NEED_NODES();
	mig_move_case(_metadata, self, mig_migrate_pages, false);
}

TEST_F_TIMEOUT(paths, mbind_thp, MIG_TIMEOUT)
{
	MIG_NEED_NODES();
	MIG_NEED_THP();
	mig_move_case(_metadata, self, mig_mbind, true);
}

TEST_F_TIMEOUT(paths, mbind_4k, MIG_TIMEOUT)
{
	MIG_NEED_NODES();
	mig_move_case(_metadata, self, mig_mbind, false);
}

TEST_F_TIMEOUT(paths, helper_thp, MIG_TIMEOUT)
{
	MIG_NEED_NODES();
	MIG_NEED_THP();
	mig_move_case(_metadata, self, mig_helper, true);
}

/* ---- NUMA balancing ---- */

/* The CPU side: reads every page (it never writes a stream slot), from
 * wherever mig_op_numa pinned it. */
static void *mig_touch(void *arg)
{
	struct mig_ctx *c = arg;
	size_t off;

	while (!c->stop) {
		for (off = 0; off < c->len; off += PAGE)
			(void)*(volatile uint64_t *)(c->p + off);
		sched_yield();
	}
	return NULL;
}

static long long mig_numa_migrated(void)
{
	long long v = mig_vmstat("numa_pages_migrated");

	return v >= 0 ? v : mig_vmstat("pgmigrate_success");
}

/* Pins the calling thread (0) or @t to the first CPU of @node. */
static int mig_pin(pthread_t t, int node)
{
	cpu_set_t cpus;

	CPU_ZERO(&cpus);
	CPU_SET(mig_node_cpu(node), &cpus);
	return t ? pthread_setaffinity_np(t, sizeof(cpus), &cpus) :
		   sched_setaffinity(0, sizeof(cpus), &cpus);
}

/* Runs the device's engine on @node (its workqueue's cpumask). */
static void mig_pin_engine(struct mig_ctx *c, int node)
{
	char mask[16];

	snprintf(mask, sizeof(mask), "%x", 1U << mig_node_cpu(node));
	if (c->engine_pinned)
		set_knob(MIG_ENGINE_CPUS, mask);
	else
		c->engine_pinned = !mig_knob_set(MIG_ENGINE_CPUS, mask);
}

/* Whether NUMA balancing moved pages of the region to c->target since
 * the pinning (a THP: all of it). */
static bool mig_numa_landed(struct mig_ctx *c)
{
	return c->thp ? page_node(c->p) == c->target : mig_count_on(c, c->target) > c->had;
}

/*
 * NUMA balancing moves pages when it likes, not when asked; so the
 * operation is: pin the reading thread to the node holding fewer of the
 * region's pages and the device's engine (and this thread) to the other
 * one, where the memory is, so that the device keeps writing while the
 * reader's faults move it (once the previous move landed); then wait until
 * pages of the region reach the reader's node or, in a raced pass, until
 * the pass has written its slots (the move is still due: the next pass
 * waits on). A move landed in the pass if the pass had slots left to write
 * then (c->mid_pass). Fails if nothing moved within MIG_WAIT_S of the
 * pinning.
 */
static int mig_op_numa(struct mig_ctx *c)
{
	uint64_t w;
	bool landed;

	if (!c->toucher && pthread_create(&c->toucher, NULL, mig_touch, c))
		return -EAGAIN;
	if (!c->waiting) {
		c->target = mig_emptier(c);
		c->had = mig_count_on(c, c->target);
		c->deadline = now_s() + MIG_WAIT_S;
		c->waiting = true;
		if (mig_pin(c->toucher, c->target) || mig_pin(0, !c->target))
			return -EINVAL;
		mig_pin_engine(c, !c->target);
		c->engine_follows = false;
	}
	for (;;) {
		landed = mig_numa_landed(c);
		w = dev_stat(c->fd, SECMMU_STAT_STREAM_WRITES) - c->pass_w0;
		if (landed)
			break;
		if (now_s() > c->deadline) {
			snprintf(c->why, sizeof(c->why), "(no page of the region reached node %d "
				 "in %d s; numa_pages_migrated %lld -> %lld)", c->target,
				 MIG_WAIT_S, c->vm0, mig_numa_migrated());
			return -ETIMEDOUT;
		}
		if (c->pass_w0 != ~0ULL && w >= MIG_SLOTS)
			return 0;	/* the pass is over, the move still due */
		/* The device's faults on the memory's node restore its PMD
		 * before the reader faults: a THP may then stay put. Past a
		 * third of the bound, the engine joins the reader (whose node
		 * its faults then pull the memory to, as the reader's do). */
		if (!c->engine_follows && now_s() > c->deadline - MIG_WAIT_S * 2 / 3) {
			mig_pin_engine(c, c->target);
			c->engine_follows = true;
			c->followed++;
		}
		sched_yield();
	}
	/* Seen after it landed, the pass still had slots to write. */
	c->mid_pass = c->pass_w0 != ~0ULL && w < MIG_SLOTS;
	c->waiting = false;
	c->moved++;
	return 0;
}

static void mig_numa_case(struct __test_metadata *_metadata, FIXTURE_DATA(paths) *self,
			  bool thp)
{
	struct mig_ctx c = { .thp = thp, .op = mig_op_numa, .fd = self->fd,
			     .vm0 = mig_numa_migrated() };
	int r, overlap = 0, passes;
	double end;

	if (access("/proc/sys/kernel/numa_balancing", F_OK))
		MIG_NOT_RUN("kernel_without_NUMA_balancing");
	/* Scan at once and often (where the knobs exist). */
	mig_knob_set("/proc/sys/kernel/numa_balancing_scan_delay_ms", "0");
	mig_knob_set(MIG_NUMA_KNOBS "scan_delay_ms", "0");
	mig_knob_set(MIG_NUMA_KNOBS "scan_period_min_ms", "10");
	mig_knob_set(MIG_NUMA_KNOBS "scan_period_max_ms", "200");
	ASSERT_LE(0, numa_balancing_set(1));
	mig_region(_metadata, self, &c);
	c.pass_w0 = ~0ULL;
	MIG_OP_OK(&c);		/* a move with the device holding translations */
	ASSERT_TRUE(!thp || mig_pmd_mapped(c.p, false)) TH_LOG("the move split the THP");
	c.sr.ops = 1;
	stale_read_check(self->fd, c.p, c.len, 1, &c.sr);
	/* Back-to-back passes until MIG_OVERLAPS moves landed in one. */
	end = now_s() + 3 * MIG_WAIT_S;
	for (passes = 0; overlap < MIG_OVERLAPS && !c.err && now_s() < end; passes++) {
		c.pass_w0 = dev_stat(self->fd, SECMMU_STAT_STREAM_WRITES);
		c.mid_pass = false;
		r = race_passes(self->fd, c.p, MIG_SLOTS, mig_op, &c, 1, 1, &c.lw);
		ASSERT_LE(0, r) TH_LOG("stream: %s", strerror(-r));
		overlap += c.mid_pass;
	}
	c.stop = 1;
	if (c.toucher)
		pthread_join(c.toucher, NULL);
	numa_balancing_set(0);
	mig_knobs_restore();
	ASSERT_EQ(0, c.err) TH_LOG("%s", c.why);
	TH_LOG("%llu NUMA moves of the region (numa_pages_migrated +%lld) in %d passes, "
	       "%d with the engine on the reader's node", (unsigned long long)c.moved,
	       mig_numa_migrated() - c.vm0, passes, c.followed);
	/* The moves were NUMA balancing's: its counter rose with them. */
	ASSERT_LE(c.moved * (thp ? 512 : 1), mig_numa_migrated() - c.vm0);
	c.lw.ops = c.moved - 1;	/* the moves in raced passes */
	c.runs = c.moved;
	mig_finish(_metadata, self, &c, overlap);
}

TEST_F_TIMEOUT(paths, numa_thp, MIG_TIMEOUT)
{
	MIG_NEED_NODES();
	MIG_NEED_THP();
	mig_numa_case(_metadata, self, true);
}

TEST_F_TIMEOUT(paths, numa_4k, MIG_TIMEOUT)
{
	MIG_NEED_NODES();
	mig_numa_case(_metadata, self, false);
}

/* ---- compaction ---- */

/* Compacts every zone; counts the stream's pages that moved. */
static int mig_op_compact(struct mig_ctx *c)
{
	uint64_t after[MIG_4K_LEN / PAGE];
	size_t i, n = c->len / PAGE;
	int r;

	mig_pfns(c->p, n, c->pfns);
	r = set_knob("/proc/sys/vm/compact_memory", "1");
	mig_pfns(c->p, n, after);
	for (i = 0; i < n; i++)
		c->moved += after[i] != c->pfns[i];
	return r;
}

static int mig_pfn_cmp(const void *a, const void *b)
{
	const uint64_t *x = a, *y = b;

	return (x[0] > y[0]) - (x[0] < y[0]);
}

/*
 * Something to compact, and the device's pages in its way: of a 16 MiB
 * pool of 4 KiB pages, the 128 with the lowest PFNs become the region
 * (mremap'd side by side; full compaction migrates from the bottom of a
 * zone up), and every other page of the rest is freed. (Without the
 * flush, repeated compactions here moved nothing.)
 */
static void mig_prep_fragmented(struct __test_metadata *_metadata,
				FIXTURE_DATA(paths) *self, struct mig_ctx *c)
{
	size_t n = MIG_FRAG_LEN / PAGE, i;
	uint64_t (*pool)[2] = calloc(n, sizeof(*pool)), *pfns = calloc(n, 8);
	char *to;

	ASSERT_TRUE(pool && pfns);
	c->frag = mig_anon(MIG_FRAG_LEN, false);
	c->len = MIG_4K_LEN;
	c->p = mig_reserve(c->len);
	ASSERT_TRUE(c->frag && c->p);
	mig_pfns(c->frag, n, pfns);
	for (i = 0; i < n; i++) {
		pool[i][0] = pfns[i] ? pfns[i] : ~0ULL;
		pool[i][1] = i;
	}
	qsort(pool, n, sizeof(*pool), mig_pfn_cmp);
	for (i = 0; i < c->len / PAGE; i++) {
		to = c->p + i * PAGE;
		ASSERT_EQ(to, mremap(c->frag + pool[i][1] * PAGE, PAGE, PAGE,
				     MREMAP_MAYMOVE | MREMAP_FIXED, to));
	}
	for (i = 1; i < n; i += 2)
		madvise(c->frag + i * PAGE, PAGE, MADV_DONTNEED);	/* holes: ENOMEM */
	/* Pages just freed wait in the per-CPU lists, where compaction does
	 * not see them free: push them out with a large allocation. */
	to = mmap(NULL, MIG_FLUSH_LEN, PROT_READ | PROT_WRITE,
		  MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	ASSERT_NE(MAP_FAILED, to);
	munmap(to, MIG_FLUSH_LEN);
	free(pool);
	free(pfns);
	mig_ready(_metadata, self, c);
}

TEST_F_TIMEOUT(paths, compaction, MIG_TIMEOUT)
{
	struct mig_ctx c = { .op = mig_op_compact };
	long long scanned = mig_vmstat("compact_migrate_scanned");
	long long moved = mig_vmstat("pgmigrate_success");
	int overlap;

	if (access("/proc/sys/vm/compact_memory", W_OK))
		MIG_NOT_RUN("kernel_without_compaction");
	mig_prep_fragmented(_metadata, self, &c);
	MIG_OP_OK(&c);
	c.sr.ops = 1;
	stale_read_check(self->fd, c.p, c.len, 1, &c.sr);
	mig_release(&c);
	c.moved = 0;
	overlap = mig_race_fresh(_metadata, self, &c, mig_prep_fragmented);
	scanned = mig_vmstat("compact_migrate_scanned") - scanned;
	moved = mig_vmstat("pgmigrate_success") - moved;
	TH_LOG("compact_migrate_scanned +%lld, pgmigrate_success +%lld, "
	       "stream pages moved in raced runs %llu", scanned, moved, (unsigned long long)c.moved);
	mig_report(_metadata, self, &c, overlap);
	ASSERT_LT(0, scanned) TH_LOG("compaction scanned nothing in %llu runs",
				     (unsigned long long)c.runs);
	ASSERT_LT(0, moved) TH_LOG("compaction moved nothing in %llu runs",
				   (unsigned long long)c.runs);
	ASSERT_LT(0, c.moved) TH_LOG("compaction moved none of the stream's pages in %llu "
				     "raced runs", (unsigned long long)c.lw.ops);
	ASSERT_LE(1, overlap) TH_LOG("no pass was still writing when the operation returned");
}

/* ---- MADV_COLLAPSE ---- */

/* Collapses the 2 MiB region into a THP (retrying -EAGAIN: a page briefly
 * referenced, e.g. by a device walk) and checks a PMD maps it. */
static int mig_op_collapse(struct mig_ctx *c)
{
	int tries, r = 0;

	for (tries = 0; tries < 20; tries++) {
		r = madvise(c->p, HPAGE, MADV_COLLAPSE) ? -errno : 0;
		if (r != -EAGAIN)
			break;
		c->retries++;
	}
	if (!r && !mig_pmd_mapped(c->p, c->shmem)) {
		snprintf(c->why, sizeof(c->why), "(no PMD maps the region after MADV_COLLAPSE)");
		r = -EIO;
	}
	return r;
}

/* 2 MiB of 4 KiB pages the device maps, then eligible for collapse. */
static void mig_prep_collapse(struct __test_metadata *_metadata,
			      FIXTURE_DATA(paths) *self, struct mig_ctx *c)
{
	c->len = HPAGE;
	mig_region(_metadata, self, c);
	ASSERT_EQ(0, madvise(c->p, HPAGE, MADV_HUGEPAGE));
}

static void mig_collapse_case(struct __test_metadata *_metadata,
			      FIXTURE_DATA(paths) *self, bool shmem)
{
	struct mig_ctx c = { .shmem = shmem, .len = HPAGE, .op = mig_op_collapse };
	int overlap;

	if (shmem && access(MIG_THP_SYSFS "shmem_enabled", F_OK))
		MIG_NOT_RUN("kernel_without_shmem_THP");
	if (shmem)
		ASSERT_EQ(0, mig_knob_set(MIG_THP_SYSFS "shmem_enabled", "advise"));
	mig_prep_collapse(_metadata, self, &c);
	MIG_OP_OK(&c);
	c.sr.ops = 1;
	stale_read_check(self->fd, c.p, HPAGE, 1, &c.sr);
	mig_release(&c);
	overlap = mig_race_fresh(_metadata, self, &c, mig_prep_collapse);
	mig_knobs_restore();
	mig_finish(_metadata, self, &c, overlap);
}

TEST_F_TIMEOUT(paths, collapse_anon, MIG_TIMEOUT)
{
	MIG_NEED_THP();
	mig_collapse_case(_metadata, self, false);
}

TEST_F_TIMEOUT(paths, collapse_shmem, MIG_TIMEOUT)
{
	MIG_NEED_THP();
	mig_collapse_case(_metadata, self, true);
}

/* ---- splitting a PMD-mapped THP: an operation on 4 KiB in its middle ---- */

static int mig_op_munmap_sub(struct mig_ctx *c)
{
	return munmap(c->sub, PAGE) ? -errno : 0;
}

static int mig_op_mprotect_sub(struct mig_ctx *c)
{
	return mprotect(c->sub, PAGE, PROT_READ) ? -errno : 0;
}

static int mig_op_dontneed_sub(struct mig_ctx *c)
{
	return madvise(c->sub, PAGE, MADV_DONTNEED) ? -errno : 0;
}

static int mig_op_mremap_sub(struct mig_ctx *c)
{
	return mremap(c->sub, PAGE, PAGE, MREMAP_MAYMOVE | MREMAP_FIXED, c->dst) == c->dst ?
	       0 : -errno;
}

/* A THP the device maps with a 2 MiB translation; the subrange lies beyond
 * the first 512 KiB, which a raced stream writes. */
static void mig_prep_split(struct __test_metadata *_metadata,
			   FIXTURE_DATA(paths) *self, struct mig_ctx *c)
{
	c->thp = true;
	mig_region(_metadata, self, c);
	c->sub = c->p + HPAGE / 2;
	c->dst = mig_reserve(PAGE);
	c->dst_len = PAGE;
	ASSERT_NE(NULL, c->dst);
}

/* The operation once; the rest of the THP must read correctly through the
 * device (stale_read). The case then checks the subrange. */
static void mig_split_begin(struct __test_metadata *_metadata,
			    FIXTURE_DATA(paths) *self, struct mig_ctx *c)
{
	mig_prep_split(_metadata, self, c);
	MIG_OP_OK(c);
	c->sr.ops = c->war.ops = 1;
	stale_read_check(self->fd, c->p, HPAGE / 2, 1, &c->sr);
	stale_read_check(self->fd, c->sub + PAGE, HPAGE / 2 - PAGE, 2, &c->sr);
}

/* lost_write: streams over the THP's first 512 KiB race the operation. */
static void mig_split_end(struct __test_metadata *_metadata,
			  FIXTURE_DATA(paths) *self, struct mig_ctx *c)
{
	mig_release(c);
	mig_finish(_metadata, self, c, mig_race_fresh(_metadata, self, c, mig_prep_split));
}

TEST_F_TIMEOUT(paths, split_munmap, MIG_TIMEOUT)
{
	struct mig_ctx c = { .op = mig_op_munmap_sub };

	MIG_NEED_THP();
	mig_split_begin(_metadata, self, &c);
	revoked_write_check(self->fd, c.sub, PAGE, &c.war);
	mig_split_end(_metadata, self, &c);
}

TEST_F_TIMEOUT(paths, split_mprotect, MIG_TIMEOUT)
{
	struct mig_ctx c = { .op = mig_op_mprotect_sub };

	MIG_NEED_THP();
	mig_split_begin(_metadata, self, &c);
	revoked_write_check(self->fd, c.sub, PAGE, &c.war);
	mig_cpu_read_check(self->fd, c.sub, PAGE, &c.sr);
	ASSERT_EQ(0, mprotect(c.sub, PAGE, PROT_READ | PROT_WRITE));
	c.runs++;
	stale_read_check(self->fd, c.sub, PAGE, 3, &c.sr);
	mig_split_end(_metadata, self, &c);
}

TEST_F_TIMEOUT(paths, split_dontneed, MIG_TIMEOUT)
{
	struct mig_ctx c = { .op = mig_op_dontneed_sub };

	MIG_NEED_THP();
	mig_split_begin(_metadata, self, &c);
	dropped_write_check(self->fd, c.sub, PAGE, 3, &c.war);
	mig_split_end(_metadata, self, &c);
}

TEST_F_TIMEOUT(paths, split_mremap, MIG_TIMEOUT)
{
	struct mig_ctx c = { .op = mig_op_mremap_sub };

	MIG_NEED_THP();
	mig_split_begin(_metadata, self, &c);
	revoked_write_check(self->fd, c.sub, PAGE, &c.war);
	stale_read_check(self->fd, c.dst, PAGE, 3, &c.sr);
	mig_split_end(_metadata, self, &c);
}

/* ---- mprotect of the whole region ---- */

/*
 * The device holds writable translations; after mprotect(PROT_READ) its
 * writes must fault and its reads return the CPU's data; after PROT_NONE
 * both must fault. Made writable again, stale_read.
 */
static void mig_mprotect_case(struct __test_metadata *_metadata,
			      FIXTURE_DATA(paths) *self, bool thp)
{
	struct mig_ctx c = { .thp = thp };
	int prot[2] = { PROT_READ, PROT_NONE }, i;

	mig_region(_metadata, self, &c);
	for (i = 0; i < 2; i++) {
		ASSERT_EQ(0, dev_prime(self->fd, c.p, c.len));
		ASSERT_TRUE(!thp || mig_pmd_mapped(c.p, false)) TH_LOG("round %d: no THP", i);
		ASSERT_EQ(0, mprotect(c.p, c.len, prot[i]));
		c.war.ops++;
		revoked_write_check(self->fd, c.p, c.len, &c.war);
		if (prot[i] == PROT_READ)
			mig_cpu_read_check(self->fd, c.p, c.len, &c.sr);
		else
			mig_read_faults_check(self->fd, c.p, c.len, &c.war);
		ASSERT_EQ(0, mprotect(c.p, c.len, PROT_READ | PROT_WRITE));
		c.sr.ops++;
		stale_read_check(self->fd, c.p, c.len, 1 + i, &c.sr);
		c.runs += 2;
	}
	mig_report(_metadata, self, &c, 0);
}

TEST_F_TIMEOUT(paths, mprotect_thp, MIG_TIMEOUT)
{
	MIG_NEED_THP();
	mig_mprotect_case(_metadata, self, true);
}

TEST_F_TIMEOUT(paths, mprotect_4k, MIG_TIMEOUT)
{
	mig_mprotect_case(_metadata, self, false);
}

/* ---- mremap ---- */

static int mig_op_mremap(struct mig_ctx *c)
{
	int flags = MREMAP_MAYMOVE | MREMAP_FIXED | c->mremap_flags;

	return mremap(c->p, c->len, c->len, flags, c->dst) == c->dst ? 0 : -errno;
}

/* A fresh region the device maps and a 2 MiB-aligned target for it. */
static void mig_prep_mremap(struct __test_metadata *_metadata,
			    FIXTURE_DATA(paths) *self, struct mig_ctx *c)
{
	mig_region(_metadata, self, c);
	c->dst = mig_reserve(c->len);
	c->dst_len = c->len;
	ASSERT_NE(NULL, c->dst);
}

/*
 * write_after_revoke, raced: a single-pass stream over the old range while
 * mremap moves it away. Once mremap has returned the stream may complete
 * the one write in flight; its next write must fault. Returns the passes
 * still writing when mremap returned.
 */
static int mig_race_revoke(struct __test_metadata *_metadata,
			   FIXTURE_DATA(paths) *self, struct mig_ctx *c)
{
	struct secmmu_stream s = { .stride = 8, .slots = MIG_SLOTS,
				   .flags = SECMMU_STREAM_ONCE };
	uint64_t w0, f0, at_return, end;
	int pass, overlap = 0;

	for (pass = 0; pass < MIG_PASSES && overlap < MIG_OVERLAPS; pass++) {
		mig_prep_mremap(_metadata, self, c);
		s.addr = (uintptr_t)c->p;
		w0 = dev_stat(self->fd, SECMMU_STAT_STREAM_WRITES);
		f0 = dev_stat(self->fd, SECMMU_STAT_DEVICE_FAULTS);
		ASSERT_EQ(0, ioctl(self->fd, SECMMU_IOCTL_STREAM_START, &s));
		wait_dev_stat(self->fd, SECMMU_STAT_STREAM_WRITES, w0 + 1);
		MIG_OP_OK(c);
		at_return = dev_stat(self->fd, SECMMU_STAT_STREAM_WRITES) - w0;
		end = wait_stream(self->fd, w0, MIG_SLOTS, f0);
		ioctl(self->fd, SECMMU_IOCTL_STREAM_STOP);
		c->war.ops++;
		if (at_return < MIG_SLOTS) {
			overlap++;
			c->war.accesses++;
			if (end > at_return + 1) {
				c->war.accesses += end - at_return - 1;
				c->war.violations += end - at_return - 1;
			}
		}
		mig_release(c);
	}
	return overlap;
}

/*
 * The device maps the region; mremap moves it (the old range: unmapped, or
 * mapped and empty with MREMAP_DONTUNMAP); the new range reads correctly.
 */
static void mig_mremap_case(struct __test_metadata *_metadata,
			    FIXTURE_DATA(paths) *self, bool thp, int flags)
{
	struct mig_ctx c = { .thp = thp, .op = mig_op_mremap, .mremap_flags = flags };
	bool dontunmap = flags & MREMAP_DONTUNMAP;

	mig_prep_mremap(_metadata, self, &c);
	MIG_OP_OK(&c);
	c.war.ops = c.sr.ops = 1;
	ASSERT_TRUE(!thp || mig_pmd_mapped(c.dst, false)) TH_LOG("the PMD did not move whole");
	if (dontunmap)
		dropped_write_check(self->fd, c.p, c.len, 2, &c.war);
	else
		revoked_write_check(self->fd, c.p, c.len, &c.war);
	stale_read_check(self->fd, c.dst, c.len, 1, &c.sr);
	if (dontunmap)
		munmap(c.p, c.len);
	c.p = c.dst;	/* the region is at the target now */
	c.dst = NULL;
	mig_release(&c);
	if (dontunmap)
		mig_report(_metadata, self, &c, 0);
	else
		mig_finish(_metadata, self, &c, mig_race_revoke(_metadata, self, &c));
}

TEST_F_TIMEOUT(paths, mremap_4k, MIG_TIMEOUT)
{
	mig_mremap_case(_metadata, self, false, 0);
}

TEST_F_TIMEOUT(paths, mremap_pmd, MIG_TIMEOUT)
{
	MIG_NEED_THP();
	mig_mremap_case(_metadata, self, true, 0);
}

TEST_F_TIMEOUT(paths, mremap_dontunmap, MIG_TIMEOUT)
{
	mig_mremap_case(_metadata, self, false, MREMAP_DONTUNMAP);
}
