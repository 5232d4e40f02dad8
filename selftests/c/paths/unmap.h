/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The path matrix's unmap family: every kernel path that unmaps, drops,
 * replaces, shares or moves a page the device holds a translation of
 * (munmap, MADV_DONTNEED, MADV_FREE + reclaim, swap-out to zram, fork +
 * COW, KSM, UFFDIO_MOVE, shmem truncation, hole punch and MADV_REMOVE, a
 * shared mapping across fork, memory-block offline, soft offline, exit and
 * execve).
 *
 * Each case primes the device's translations of the memory (4 KiB pages,
 * and a THP where the path has one), runs the operation, and judges it
 * with every oracle of paths_lib.h that applies, printing one cell per
 * oracle; the fixture adds the freed_page cell. Races use race_passes()
 * one pass at a time (um_race()), each pass set up afresh.
 *
 * Cases that change system state (swap, KSM, THP knobs, memory blocks,
 * the skip_invalidate injection of oracles.h) restore it on their own
 * paths, never behind an ASSERT, and through a guard process (um_guard)
 * if the case dies (an ASSERT, the harness's timeout).
 *
 * Helpers are um_*.
 */
#include <dirent.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/wait.h>
#include <linux/userfaultfd.h>

#ifndef MADV_FREE
#define MADV_FREE 8
#endif
#ifndef MADV_PAGEOUT
#define MADV_PAGEOUT 21
#endif
#ifndef MADV_SOFT_OFFLINE
#define MADV_SOFT_OFFLINE 101
#endif
#ifndef MPOL_BIND
#define MPOL_BIND 2
#endif

/* The longest single pass: 65536 words, 512 KiB. */
#define UM_SLOTS SECMMU_MAX_STREAM_SLOTS
#define UM_WIN (UM_SLOTS * 8UL)
/* Passes a race takes at most to get one still writing when the op returned. */
#define UM_PASSES 4

/* ------------------------------------------------------------------ */
/* A case's tallies and verdict.                                       */

enum { UM_LOST = 1, UM_STALE = 2, UM_REVOKE = 4, UM_ISO = 8 };

struct um_case {
	const char *path;
	int fd;
	uint64_t ops;		/* kernel operations run */
	uint64_t round;		/* token rounds used */
	struct tally lost, stale, revoke, iso;
	unsigned int judged;	/* UM_*: the oracles that judged the case */
	char err[768];		/* the first thing that went wrong */
	char not_run[512];	/* why this kernel or VM cannot run the path */
	char note[512];
};

#define UM_CASE(p, f) { .path = (p), .fd = (f) }

static inline void um_fail(struct um_case *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static inline void um_fail(struct um_case *c, const char *fmt, ...)
{
	va_list ap;

	if (c->err[0])
		return;
	va_start(ap, fmt);
	vsnprintf(c->err, sizeof(c->err), fmt, ap);
	va_end(ap);
}

/* The case fails with the message unless @cond; goes to out. */
#define UM_REQ(c, cond, ...) do {					\
	if (!(cond)) {							\
		um_fail((c), __VA_ARGS__);				\
		goto out;						\
	}								\
} while (0)

static inline uint64_t um_cell(const char *path, const char *oracle, const struct tally *t)
{
	cell(path, oracle, t->ops, t->accesses, t->violations);
	return t->violations;
}

/* The isolation oracle's cell. */
static inline uint64_t um_isolation_cell(const char *path, const struct tally *t)
{
	cell(path, "isolation", t->ops, t->accesses, t->violations);
	return t->violations;
}

/* Prints the case's cells (or its not-run cell) and judges it. */
static inline void um_finish(struct __test_metadata *_metadata,
			     FIXTURE_DATA(paths) *self, struct um_case *c)
{
	uint64_t v = 0;

	self->ops += c->ops;
	if (c->note[0])
		TH_LOG("%s: %s", c->path, c->note);
	if (c->not_run[0] && !c->err[0]) {
		cell_not_run(c->path, c->not_run);
		SKIP(return, "%s", c->not_run);
	}
	if (c->judged & UM_LOST)
		v += um_cell(c->path, "lost_write", &c->lost);
	if (c->judged & UM_STALE)
		v += um_cell(c->path, "stale_read", &c->stale);
	if (c->judged & UM_REVOKE)
		v += um_cell(c->path, "write_after_revoke", &c->revoke);
	if (c->judged & UM_ISO)
		v += um_isolation_cell(c->path, &c->iso);
	EXPECT_EQ(0, c->err[0]) TH_LOG("%s: %s", c->path, c->err);
	EXPECT_NE(0, c->judged) TH_LOG("%s: no oracle judged the path", c->path);
	EXPECT_EQ(0, v) TH_LOG("%s: the oracles found %llu violations", c->path,
			       (unsigned long long)v);
}

/* The oracles of paths_lib.h, each adding to the case's tally. */
static inline void um_stale(struct um_case *c, char *p, size_t len)
{
	c->judged |= UM_STALE;
	c->stale.ops++;
	stale_read_check(c->fd, p, len, ++c->round, &c->stale);
}

static inline void um_revoked(struct um_case *c, char *p, size_t len)
{
	c->judged |= UM_REVOKE;
	c->revoke.ops++;
	revoked_write_check(c->fd, p, len, &c->revoke);
}

static inline void um_dropped(struct um_case *c, char *p, size_t len)
{
	c->judged |= UM_REVOKE;
	c->revoke.ops++;
	dropped_write_check(c->fd, p, len, ++c->round, &c->revoke);
}

/*
 * isolation, this process's side: the device writes a token into each page
 * of [@p, @p + @len) (at offset 16); each must show in this process's
 * memory, not in a page another process now owns.
 */
static inline void um_iso_write(struct um_case *c, char *p, size_t len)
{
	uint64_t round = ++c->round;
	size_t off;

	c->judged |= UM_ISO;
	c->iso.ops++;
	for (off = 0; off < len; off += PAGE) {
		uint64_t want = token(round, off / PAGE);

		c->iso.accesses++;
		if (dev_write(c->fd, p + off + 16, 8, NULL, want) ||
		    *(volatile uint64_t *)(p + off + 16) != want)
			c->iso.violations++;
	}
}

/* isolation, the other process's side: its pages that changed although no
 * write of its own touched them (~0: the peer could not tell). */
static inline void um_iso_peer(struct um_case *c, uint64_t changed)
{
	c->judged |= UM_ISO;
	if (changed == ~0ULL) {
		um_fail(c, "isolation: the other process died before reporting");
		c->iso.violations++;
		return;
	}
	c->iso.violations += changed;
}

/* ------------------------------------------------------------------ */
/* Memory.                                                             */

/* Fills [@p, @p + @len) with words no page holds by chance. */
static inline void um_fill(char *p, size_t len, uint64_t seed)
{
	size_t off;

	for (off = 0; off < len; off += 8)
		*(uint64_t *)(p + off) = (seed << 40) ^ 0x2545f4914f6cdd1dULL ^ off;
}

/* @n private anonymous 4 KiB pages (never THP), filled; NULL on failure. */
static inline char *um_anon(size_t n, uint64_t seed)
{
	char *p = mmap(NULL, n * PAGE, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		return NULL;
	madvise(p, n * PAGE, MADV_NOHUGEPAGE);
	um_fill(p, n * PAGE, seed);
	return p;
}

/* A 2 MiB-aligned mapping of @len bytes (a multiple of 2 MiB), nothing
 * else mapped around it: munmap(p, len) frees it all. */
static inline char *um_map_aligned(size_t len, int flags, int fd)
{
	char *raw = mmap(NULL, len + HPAGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	char *a, *p;

	if (raw == MAP_FAILED)
		return NULL;
	a = (char *)(((uintptr_t)raw + HPAGE - 1) & ~(HPAGE - 1));
	p = mmap(a, len, PROT_READ | PROT_WRITE, flags | MAP_FIXED, fd, 0);
	if (p == MAP_FAILED) {
		munmap(raw, len + HPAGE);
		return NULL;
	}
	if (a > raw)
		munmap(raw, a - raw);
	if (raw + len + HPAGE > a + len)
		munmap(a + len, raw + len + HPAGE - (a + len));
	return p;
}

/* One MADV_HUGEPAGE anonymous 2 MiB region, filled (a THP if the kernel
 * had one); NULL on failure. */
static inline char *um_thp(uint64_t seed)
{
	char *p = um_map_aligned(HPAGE, MAP_PRIVATE | MAP_ANONYMOUS, -1);

	if (!p)
		return NULL;
	madvise(p, HPAGE, MADV_HUGEPAGE);
	um_fill(p, HPAGE, seed);
	return p;
}

/* dev_prime(), and how many 2 MiB translations it took (via @huge). */
static inline int um_prime(int fd, char *p, size_t len, uint64_t *huge)
{
	uint64_t h0 = dev_stat(fd, SECMMU_STAT_HUGE_FILLS);
	int r = dev_prime(fd, p, len);

	if (huge)
		*huge += dev_stat(fd, SECMMU_STAT_HUGE_FILLS) - h0;
	return r;
}

/* The device takes a read-only translation of every page. */
static inline int um_prime_read(int fd, char *p, size_t len)
{
	uint64_t v;
	size_t off;
	int r;

	for (off = 0; off < len; off += PAGE) {
		r = dev_read(fd, p + off, 8, &v);
		if (r)
			return r;
	}
	return 0;
}

/* Whether the kernel backs a MADV_HUGEPAGE region with a THP the device
 * maps with one 2 MiB translation; if not, says why in c->not_run. */
static inline bool um_thp_ok(struct um_case *c)
{
	uint64_t huge = 0;
	char *p = um_thp(1);

	if (!p) {
		um_fail(c, "mmap 4 MiB: %s", strerror(errno));
		return false;
	}
	if (um_prime(c->fd, p, HPAGE, &huge))
		um_fail(c, "device write to a fresh THP region failed");
	munmap(p, HPAGE);
	if (!huge)
		snprintf(c->not_run, sizeof(c->not_run),
			 "no THP: a MADV_HUGEPAGE 2 MiB region got no 2 MiB device translation");
	return huge > 0;
}

/* The pagemap entry of the page at @p (0 if unreadable). */
static inline uint64_t um_pagemap(const void *p)
{
	uint64_t e = 0;
	int fd = open("/proc/self/pagemap", O_RDONLY);

	if (fd < 0)
		return 0;
	if (pread(fd, &e, 8, (uintptr_t)p / PAGE * 8) != 8)
		e = 0;
	close(fd);
	return e;
}

#define UM_PM_PRESENT (1ULL << 63)
#define UM_PM_SWAP (1ULL << 62)
#define UM_PM_PFN ((1ULL << 55) - 1)

/* Pages of [@p, @p + @len) that are swapped out now. */
static inline size_t um_swapped(const char *p, size_t len)
{
	size_t off, n = 0;

	for (off = 0; off < len; off += PAGE)
		n += !!(um_pagemap(p + off) & UM_PM_SWAP);
	return n;
}

/* A counter of /proc/vmstat, or 0. */
static inline uint64_t um_vmstat(const char *name)
{
	char line[128];
	unsigned long long v = 0;
	size_t l = strlen(name);
	FILE *f = fopen("/proc/vmstat", "r");

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, name, l) && line[l] == ' ') {
			v = strtoull(line + l + 1, NULL, 10);
			break;
		}
	fclose(f);
	return v;
}

/* Runs the caller on one CPU (the one it is on): lru_add_drain() in
 * madvise() only drains the local CPU's batches. */
static inline void um_pin(void)
{
	cpu_set_t set;
	int cpu = sched_getcpu();

	CPU_ZERO(&set);
	CPU_SET(cpu < 0 ? 0 : cpu, &set);
	sched_setaffinity(0, sizeof(set), &set);
}

/* ------------------------------------------------------------------ */
/* Knobs, and a guard that restores state if the case dies.            */

struct um_knob {
	char path[160];
	char old[96];
	bool saved;
};

/* Saves a knob's value (the [bracketed] word of a choice file). */
static inline bool um_knob_save(struct um_knob *k, const char *path)
{
	char buf[256], *a, *b;

	snprintf(k->path, sizeof(k->path), "%s", path);
	k->saved = false;
	if (read_file(path, buf, sizeof(buf)) <= 0)
		return false;
	a = strchr(buf, '[');
	b = a ? strchr(a, ']') : NULL;
	if (a && b) {
		*b = 0;
		memmove(buf, a + 1, strlen(a + 1) + 1);
	}
	buf[strcspn(buf, "\n")] = 0;
	snprintf(k->old, sizeof(k->old), "%.90s", buf);
	k->saved = true;
	return true;
}

static inline void um_knob_restore(struct um_knob *k)
{
	if (k->saved)
		set_knob(k->path, k->old);
}

/*
 * A guard: a process outside the case's process group that runs @fn(@arg)
 * if the case dies before um_guard_stop() (the harness SIGKILLs the group on
 * a timeout; an ASSERT aborts). It holds none of the case's files.
 * Start it before the device takes translations: the fork write-protects
 * the process's private memory and flushes the device's TLB.
 */
struct um_guard {
	pid_t pid;
	int fd;
};

static inline void um_guard_start(struct um_guard *g, void (*fn)(void *), void *arg)
{
	int p[2], i;

	g->pid = -1;
	g->fd = -1;
	if (pipe2(p, O_CLOEXEC))
		return;
	fflush(stdout);
	fflush(stderr);
	g->pid = fork();
	if (g->pid == 0) {
		ssize_t n;
		char ch;

		setsid();
		for (i = 3; i < 1024; i++)
			if (i != p[0])
				close(i);
		do
			n = read(p[0], &ch, 1);
		while (n < 0 && errno == EINTR);
		if (n != 1)
			fn(arg);
		_exit(0);
	}
	close(p[0]);
	if (g->pid < 0) {
		close(p[1]);
		return;
	}
	g->fd = p[1];
}

/* The case restored the state itself: the guard leaves without acting. */
static inline void um_guard_stop(struct um_guard *g)
{
	if (g->pid <= 0)
		return;
	if (write(g->fd, "q", 1) != 1)
		perror("guard");
	close(g->fd);
	waitpid(g->pid, NULL, 0);
	g->pid = -1;
}

/* ------------------------------------------------------------------ */
/* A peer: another process that sets up, reports ready, waits, checks.  */

typedef uint64_t (*um_fn)(void *arg, volatile uint64_t *out);

struct um_peer {
	pid_t pid;
	int go;			/* parent -> child */
	int ready;		/* child -> parent */
	volatile uint64_t *out;	/* shared: [0] setup, [1] check, [2..6] free, [7] done */
	uint64_t res[8];	/* out, as the peer left it (um_peer_finish()) */
};

static inline void um_peer_close(struct um_peer *pr)
{
	if (pr->go >= 0)
		close(pr->go);
	if (pr->ready >= 0)
		close(pr->ready);
	if (pr->out && pr->out != MAP_FAILED)
		munmap((void *)pr->out, PAGE);
	pr->go = pr->ready = -1;
	pr->out = NULL;
	pr->pid = -1;
}

/* Forks the peer: @setup(@arg) runs, then the call returns (0 or -errno);
 * @check(@arg) runs in the child at um_peer_finish(). */
static inline int um_peer_start(struct um_peer *pr, um_fn setup, um_fn check, void *arg)
{
	int go[2], rd[2], st;
	char ch;

	pr->pid = -1;
	pr->go = pr->ready = -1;
	pr->out = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (pr->out == MAP_FAILED)
		return -errno;
	if (pipe2(go, O_CLOEXEC))
		return -errno;
	if (pipe2(rd, O_CLOEXEC)) {
		close(go[0]);
		close(go[1]);
		return -errno;
	}
	signal(SIGPIPE, SIG_IGN);
	fflush(stdout);
	fflush(stderr);
	pr->pid = fork();
	if (pr->pid == 0) {
		close(go[1]);
		close(rd[0]);
		pr->out[0] = setup ? setup(arg, pr->out) : 0;
		if (write(rd[1], "r", 1) != 1 || read(go[0], &ch, 1) != 1)
			_exit(1);
		pr->out[1] = check ? check(arg, pr->out) : 0;
		pr->out[7] = 1;
		_exit(0);
	}
	close(go[0]);
	close(rd[1]);
	pr->go = go[1];
	pr->ready = rd[0];
	if (pr->pid < 0) {
		st = -errno;
		um_peer_close(pr);
		return st;
	}
	if (read(pr->ready, &ch, 1) != 1) {
		waitpid(pr->pid, &st, 0);
		um_peer_close(pr);
		return -ECHILD;
	}
	return 0;
}

/* Lets the peer check and exit; its check's result, ~0 if it died. */
static inline uint64_t um_peer_finish(struct um_peer *pr)
{
	uint64_t r;
	int st = 0;

	if (pr->pid <= 0)
		return ~0ULL;
	if (write(pr->go, "g", 1) != 1)
		perror("peer");
	waitpid(pr->pid, &st, 0);
	for (r = 0; r < 8; r++)
		pr->res[r] = pr->out[r];
	r = pr->out[7] == 1 && WIFEXITED(st) && !WEXITSTATUS(st) ? pr->out[1] : ~0ULL;
	um_peer_close(pr);
	return r;
}

/* A peer that snapshots [p, p + len) as it is right after the fork and at
 * the end reports how many of its pages changed. */
struct um_snap {
	const char *p;
	size_t len;
	char *copy;
};

static inline uint64_t um_snap_take(void *a, volatile uint64_t *out)
{
	struct um_snap *s = a;

	s->copy = malloc(s->len);
	if (!s->copy)
		return 1;
	memcpy(s->copy, s->p, s->len);
	return 0;
}

static inline uint64_t um_snap_changed(void *a, volatile uint64_t *out)
{
	struct um_snap *s = a;
	uint64_t n = 0;
	size_t off;

	if (!s->copy)
		return ~0ULL;
	for (off = 0; off < s->len; off += PAGE)
		n += !!memcmp(s->copy + off, s->p + off, PAGE);
	return n;
}

/* ------------------------------------------------------------------ */
/* Races.                                                              */

/*
 * lost_write: single passes of @slots words from *@pp (race_passes(), one
 * pass each), @setup(@arg) before each (it may map a fresh *@pp), until a
 * pass was still writing when @op(@arg) returned, at most UM_PASSES.
 */
static inline void um_race(struct um_case *c, char **pp, uint32_t slots,
			   int (*setup)(void *), int (*op)(void *), void *arg)
{
	int i, r, overlap = 0;

	c->judged |= UM_LOST;
	for (i = 0; i < UM_PASSES && !overlap; i++) {
		if (setup) {
			r = setup(arg);
			if (r) {
				um_fail(c, "race setup, pass %d: %s", i, strerror(-r));
				return;
			}
		}
		r = race_passes(c->fd, *pp, slots, op, arg, 1, 1, &c->lost);
		if (r < 0) {
			um_fail(c, "race pass %d: the stream: %s", i, strerror(-r));
			return;
		}
		c->ops++;
		overlap += r;
	}
	if (!overlap)
		snprintf(c->note, sizeof(c->note),
			 "no pass was still writing when the operation returned (%d passes)", i);
}

/* ------------------------------------------------------------------ */
/* munmap, MADV_DONTNEED: part of the region is cut while a stream      */
/* writes the rest; then the cut part, what stays, and the whole.       */

struct um_cut {
	struct um_case *c;
	char *p;
	size_t len;	/* the region */
	size_t keep;	/* [p, p + keep) stays, [p + keep, p + len) is cut */
	int advice;	/* 0: munmap, else this madvise() */
	bool thp;
	int err;
	uint64_t huge;
	uint64_t seed;
};

static inline int um_cut_op(void *a)
{
	struct um_cut *x = a;
	int r = x->advice ? madvise(x->p + x->keep, x->len - x->keep, x->advice)
			  : munmap(x->p + x->keep, x->len - x->keep);

	if (r && !x->err)
		x->err = -errno;
	return r;
}

/* A fresh region, filled and primed. */
static inline int um_cut_setup(void *a)
{
	struct um_cut *x = a;

	if (x->p)
		munmap(x->p, x->len);
	x->p = x->thp ? um_thp(++x->seed) : um_anon(x->len / PAGE, ++x->seed);
	if (!x->p)
		return -ENOMEM;
	return um_prime(x->c->fd, x->p, x->len, &x->huge);
}

static inline void um_cut_case(struct um_case *c, bool thp, int advice)
{
	const char *what = advice ? "MADV_DONTNEED" : "munmap";
	struct um_cut x = {
		.c = c, .len = thp ? HPAGE : 2 * UM_WIN, .keep = thp ? HPAGE / 2 : UM_WIN,
		.advice = advice, .thp = thp,
	};
	int r;

	if (thp && !um_thp_ok(c))
		return;
	/* A stream writes what stays while the rest is cut (for a THP: the
	 * PMD is split under the device's 2 MiB translation). */
	um_race(c, &x.p, UM_SLOTS, um_cut_setup, um_cut_op, &x);
	UM_REQ(c, !x.err, "%s: %s", what, strerror(-x.err));
	UM_REQ(c, !thp || x.huge, "no pass had a THP");
	if (advice)
		um_dropped(c, x.p + x.keep, x.len - x.keep);
	else
		um_revoked(c, x.p + x.keep, x.len - x.keep);
	um_stale(c, x.p, x.keep);

	/* The whole region at once (a THP: its PMD is zapped whole). */
	x.keep = 0;
	r = um_cut_setup(&x);
	UM_REQ(c, !r, "prime: %s", strerror(-r));
	um_cut_op(&x);
	c->ops++;
	UM_REQ(c, !x.err, "%s: %s", what, strerror(-x.err));
	if (!advice) {
		um_revoked(c, x.p, x.len);
		goto out;
	}
	um_stale(c, x.p, x.len);
	r = um_prime(c->fd, x.p, x.len, NULL);
	UM_REQ(c, !r, "prime: %s", strerror(-r));
	um_cut_op(&x);
	c->ops++;
	UM_REQ(c, !x.err, "%s: %s", what, strerror(-x.err));
	um_dropped(c, x.p, x.len);
out:
	if (x.p)
		munmap(x.p, x.len);
}

TEST_F_TIMEOUT(paths, munmap_4k, 300)
{
	struct um_case c = UM_CASE("munmap_4k", self->fd);

	um_cut_case(&c, false, 0);
	um_finish(_metadata, self, &c);
}

TEST_F_TIMEOUT(paths, munmap_thp, 300)
{
	struct um_case c = UM_CASE("munmap_thp", self->fd);

	um_cut_case(&c, true, 0);
	um_finish(_metadata, self, &c);
}

TEST_F_TIMEOUT(paths, dontneed_4k, 300)
{
	struct um_case c = UM_CASE("dontneed_4k", self->fd);

	um_cut_case(&c, false, MADV_DONTNEED);
	um_finish(_metadata, self, &c);
}

TEST_F_TIMEOUT(paths, dontneed_thp, 300)
{
	struct um_case c = UM_CASE("dontneed_thp", self->fd);

	um_cut_case(&c, true, MADV_DONTNEED);
	um_finish(_metadata, self, &c);
}

/* ------------------------------------------------------------------ */
/* MADV_FREE + reclaim (MADV_PAGEOUT): clean lazy-free pages are        */
/* discarded; a device write after MADV_FREE must dirty what it writes. */

struct um_free {
	struct um_case *c;
	char *p;
	size_t len;
	int err;
	uint64_t seed;
};

/* Before a pass: dirty data, the device's translations, then MADV_FREE
 * (which cleans the pages and invalidates the translations). */
static inline int um_free_setup(void *a)
{
	struct um_free *x = a;
	int r;

	um_fill(x->p, x->len, ++x->seed);
	r = um_prime(x->c->fd, x->p, x->len, NULL);
	if (r)
		return r;
	x->c->ops++;
	return madvise(x->p, x->len, MADV_FREE) ? -errno : 0;
}

static inline int um_pageout_op(void *a)
{
	struct um_free *x = a;

	if (madvise(x->p, x->len, MADV_PAGEOUT) && !x->err)
		x->err = -errno;
	return x->err;
}

TEST_F_TIMEOUT(paths, free_reclaim, 300)
{
	struct um_case c = UM_CASE("free_reclaim", self->fd);
	const size_t n = 64, half = n / 2 * PAGE;
	struct um_free x = { .c = &c, .len = n * PAGE };
	size_t off, discarded = 0;
	int i, r;

	um_pin();
	x.p = um_anon(n, 7);
	UM_REQ(&c, x.p, "mmap: %s", strerror(errno));
	/* A stream writes the lazy-free pages while reclaim discards them:
	 * a page it wrote was dirtied by the write, so kept; one discarded
	 * first is faulted in afresh by the next device write. */
	um_race(&c, &x.p, x.len / 8, um_free_setup, um_pageout_op, &x);
	UM_REQ(&c, !x.err, "MADV_PAGEOUT: %s", strerror(-x.err));

	/* Device writes after MADV_FREE into the first half: kept with
	 * their data; the second half, only read by the device: discarded. */
	for (i = 0; i < 4 && !discarded; i++) {
		r = um_free_setup(&x);
		UM_REQ(&c, !r, "MADV_FREE: %s", strerror(-r));
		r = um_prime_read(c.fd, x.p, x.len);
		UM_REQ(&c, !r, "device read: %s", strerror(-r));
		c.judged |= UM_REVOKE;
		c.revoke.ops++;
		for (off = 0; off < half; off += PAGE) {
			c.revoke.accesses++;
			if (dev_write(c.fd, x.p + off + 16, 8, NULL, token(1000 + i, off / PAGE)))
				c.revoke.violations++;
		}
		c.ops++;
		r = um_pageout_op(&x);
		UM_REQ(&c, !r, "MADV_PAGEOUT: %s", strerror(-r));
		for (off = 0; off < half; off += PAGE)
			if (*(volatile uint64_t *)(x.p + off + 16) != token(1000 + i, off / PAGE))
				c.revoke.violations++;
		for (off = half; off < x.len; off += PAGE)
			discarded += *(volatile uint64_t *)(x.p + off) == 0 &&
				     *(volatile uint64_t *)(x.p + off + PAGE - 8) == 0;
	}
	UM_REQ(&c, discarded, "MADV_PAGEOUT discarded none of %zu clean MADV_FREE pages (%d tries)",
	       (x.len - half) / PAGE, i);
	/* The device's translations of the discarded pages went with them. */
	um_stale(&c, x.p + half, x.len - half);

	/* And a device write after MADV_FREE + reclaim lands where the CPU reads. */
	r = um_free_setup(&x);
	UM_REQ(&c, !r, "MADV_FREE: %s", strerror(-r));
	r = um_pageout_op(&x);
	c.ops++;
	UM_REQ(&c, !r, "MADV_PAGEOUT: %s", strerror(-r));
	um_dropped(&c, x.p, x.len);
out:
	if (x.p)
		munmap(x.p, x.len);
	um_finish(_metadata, self, &c);
}

/* ------------------------------------------------------------------ */
/* Swap-out to zram.                                                    */

struct um_swap {
	char name[32];		/* zramN */
	char dev[48];		/* /dev/zramN */
	bool on;
};

static inline void um_swap_off(void *a)
{
	struct um_swap *s = a;
	char path[96];

	if (!s->name[0])
		return;
	syscall(SYS_swapoff, s->dev);
	snprintf(path, sizeof(path), "/sys/block/%s/reset", s->name);
	set_knob(path, "1");
	s->on = false;
}

/* A swap header for a device of @size bytes (what mkswap writes). */
static inline int um_swap_header(const char *dev, uint64_t size)
{
	char page[PAGE];
	uint32_t v[3] = { 1, (uint32_t)(size / PAGE - 1), 0 };
	int fd = open(dev, O_WRONLY);
	int r = 0;

	if (fd < 0)
		return -errno;
	memset(page, 0, sizeof(page));
	memcpy(page + 1024, v, sizeof(v));	/* version, last_page, nr_badpages */
	memcpy(page + PAGE - 10, "SWAPSPACE2", 10);
	if (pwrite(fd, page, PAGE, 0) != PAGE || fsync(fd))
		r = errno ? -errno : -EIO;
	close(fd);
	return r;
}

/* Swap on a 64 MiB zram device; 0, or the reason in @why. */
static inline int um_swap_on(struct um_swap *s, char *why, size_t wl)
{
	char path[96], buf[32];
	long id = 0;
	int r;

	if (access("/sys/block/zram0", F_OK)) {
		/* No zram0: ask zram-control for a device. */
		if (read_file("/sys/class/zram-control/hot_add", buf, sizeof(buf)) <= 0) {
			snprintf(why, wl, "no /sys/block/zram0 and no zram-control/hot_add (CONFIG_ZRAM=y?)");
			return -ENODEV;
		}
		id = strtol(buf, NULL, 10);
	}
	snprintf(s->name, sizeof(s->name), "zram%ld", id);
	snprintf(s->dev, sizeof(s->dev), "/dev/zram%ld", id);
	/* A previous run may have left it on. */
	syscall(SYS_swapoff, s->dev);
	snprintf(path, sizeof(path), "/sys/block/%s/reset", s->name);
	set_knob(path, "1");
	snprintf(path, sizeof(path), "/sys/block/%s/disksize", s->name);
	r = set_knob(path, "64M");
	if (r) {
		snprintf(why, wl, "%s: 64M: %s", path, strerror(-r));
		return r;
	}
	if (!access("/sbin/mkswap", X_OK) || !access("/usr/sbin/mkswap", X_OK)) {
		char cmd[128];

		snprintf(cmd, sizeof(cmd), "mkswap %s >/dev/null 2>&1", s->dev);
		fflush(stdout);
		fflush(stderr);
		r = system(cmd) == 0 ? 0 : -EIO;
	} else {
		r = um_swap_header(s->dev, 64ULL << 20);
	}
	if (r) {
		snprintf(why, wl, "mkswap %s: %s", s->dev, strerror(-r));
		return r;
	}
	if (syscall(SYS_swapon, s->dev, 0)) {
		r = -errno;
		snprintf(why, wl, "swapon %s: %s", s->dev, strerror(-r));
		return r;
	}
	s->on = true;
	return 0;
}

struct um_out {
	struct um_case *c;
	char *p;
	size_t len;	/* region */
	bool thp;
	int err;
	uint64_t seed, huge, out;	/* pswpout seen rise, in pages */
};

static inline int um_out_setup(void *a)
{
	struct um_out *x = a;

	if (x->thp) {
		if (x->p)
			munmap(x->p, x->len);
		x->p = um_thp(++x->seed);
		if (!x->p)
			return -ENOMEM;
	} else {
		um_fill(x->p, x->len, ++x->seed);
	}
	return um_prime(x->c->fd, x->p, x->len, &x->huge);
}

static inline int um_out_op(void *a)
{
	struct um_out *x = a;
	uint64_t o = um_vmstat("pswpout");

	if (madvise(x->p, x->len, MADV_PAGEOUT) && !x->err)
		x->err = -errno;
	x->out += um_vmstat("pswpout") - o;
	return x->err;
}

/* Prime, swap out (checked in the pagemap), then @check. */
static inline void um_out_then(struct um_case *c, struct um_out *x, bool stale)
{
	size_t gone;
	int r;

	r = um_prime(c->fd, x->p, x->len, NULL);
	if (r) {
		um_fail(c, "prime: %s", strerror(-r));
		return;
	}
	um_out_op(x);
	c->ops++;
	gone = um_swapped(x->p, x->len);
	if (x->err || !gone) {
		um_fail(c, "MADV_PAGEOUT: %s, %zu of %zu pages swapped out", strerror(-x->err),
			gone, x->len / PAGE);
		return;
	}
	if (stale)
		um_stale(c, x->p, x->len);
	else
		um_dropped(c, x->p, x->len);
}

static inline void um_out_case(struct um_case *c, bool thp)
{
	struct um_out x = { .c = c, .len = thp ? HPAGE : 64 * PAGE, .thp = thp };

	if (!thp) {
		x.p = um_anon(64, 3);
		if (!x.p) {
			um_fail(c, "mmap: %s", strerror(errno));
			return;
		}
	}
	/* A stream writes while the pages go out: after swap-in the data
	 * must hold every device write. */
	/* A pass can overlap and still swap nothing out (the stream's own
	 * faults keep the folio busy): race again, a bounded number of times,
	 * until pages really went out during one. */
	for (int k = 0; k < 8 && !x.out && !x.err && !c->err[0]; k++)
		um_race(c, &x.p, thp ? UM_SLOTS : x.len / 8, um_out_setup, um_out_op, &x);
	UM_REQ(c, !x.err, "MADV_PAGEOUT: %s", strerror(-x.err));
	UM_REQ(c, x.out, "pswpout did not rise over %s MADV_PAGEOUT passes", thp ? "THP" : "4 KiB");
	UM_REQ(c, !thp || x.huge, "no THP in any pass");
	um_out_then(c, &x, true);
	um_out_then(c, &x, false);
out:
	if (x.p)
		munmap(x.p, x.len);
}

TEST_F_TIMEOUT(paths, pageout_swap, 600)
{
	struct um_case c = UM_CASE("pageout_swap", self->fd);
	struct um_swap s = { .on = false };
	struct um_guard g = { .pid = -1 };
	char why[256] = "";

	um_pin();
	if (um_swap_on(&s, why, sizeof(why))) {
		um_swap_off(&s);
		um_fail(&c, "zram swap: %s", why);
		goto out;
	}
	um_guard_start(&g, um_swap_off, &s);
	um_out_case(&c, false);
	if (!c.err[0]) {
		struct um_case t = UM_CASE("pageout_swap", self->fd);

		if (um_thp_ok(&t)) {
			um_out_case(&c, true);
		} else {
			snprintf(c.note, sizeof(c.note), "THP part not run: %.200s%.200s", t.not_run, t.err);
		}
	}
	um_swap_off(&s);
	um_guard_stop(&g);
out:
	um_finish(_metadata, self, &c);
}

/* ------------------------------------------------------------------ */
/* fork + COW.                                                          */

struct um_fork {
	struct um_case *c;
	char *p;
	size_t len;
	bool thp;
	int err;
	uint64_t seed, huge, seen;	/* lost.accesses already given to isolation */
	struct um_snap snap;
	struct um_peer peer;
};

/* The child of the last pass reports; a fresh region is mapped and primed. */
static inline void um_fork_reap(struct um_fork *x)
{
	struct um_case *c = x->c;

	if (x->peer.pid <= 0)
		return;
	um_iso_peer(c, um_peer_finish(&x->peer));
	/* Every stream write after the fork could have gone to the child. */
	c->iso.ops++;
	c->iso.accesses += c->lost.accesses - x->seen;
	x->seen = c->lost.accesses;
}

static inline int um_fork_setup(void *a)
{
	struct um_fork *x = a;

	um_fork_reap(x);
	if (x->p)
		munmap(x->p, x->len);
	x->p = x->thp ? um_thp(++x->seed) : um_anon(x->len / PAGE, ++x->seed);
	if (!x->p)
		return -ENOMEM;
	x->seen = x->c->lost.accesses;
	return um_prime(x->c->fd, x->p, x->len, &x->huge);
}

/* The fork: the child snapshots its copy as the fork left it. */
static inline int um_fork_op(void *a)
{
	struct um_fork *x = a;
	int r;

	x->snap = (struct um_snap){ .p = x->p, .len = x->len };
	r = um_peer_start(&x->peer, um_snap_take, um_snap_changed, &x->snap);
	if (r && !x->err)
		x->err = r;
	return r;
}

static inline void um_cow_case(struct um_case *c, bool thp)
{
	struct um_fork x = {
		.c = c, .len = thp ? HPAGE : UM_WIN, .thp = thp, .peer = { .pid = -1 },
	};
	size_t half;
	int r;

	if (thp && !um_thp_ok(c))
		return;
	/* A stream writes the parent's memory while it forks: every write
	 * must show in the parent (a write after the fork breaks COW), none
	 * in the child. */
	um_race(c, &x.p, UM_SLOTS, um_fork_setup, um_fork_op, &x);
	um_fork_reap(&x);
	UM_REQ(c, !x.err, "fork: %s", strerror(-x.err));
	UM_REQ(c, !thp || x.huge, "no THP in any pass");

	/* Writable translations, fork, the parent's CPU writes half of the
	 * pages (COW): the device must read the parent's new data; its
	 * writes must land in the parent's pages, not the child's. */
	r = um_fork_setup(&x);
	UM_REQ(c, !r, "prime: %s", strerror(-r));
	half = x.len / 2;
	r = um_fork_op(&x);
	c->ops++;
	UM_REQ(c, !r, "fork: %s", strerror(-r));
	um_stale(c, x.p, half);
	um_iso_write(c, x.p, x.len);
	um_fork_reap(&x);

	/* The device holds a read translation across the COW: the fork (which
	 * flushes the device's TLB), then the device reads the pages now
	 * shared with the child, then the parent's CPU write copies them: the
	 * device must not keep reading the old page, now the child's. (For a
	 * THP the write fault first splits the shared PMD, which invalidates
	 * the device's 2 MiB translation; cow_held_thp in kill.h covers the
	 * 4 KiB translations of a split THP.) */
	r = um_fork_setup(&x);
	UM_REQ(c, !r, "map: %s", strerror(-r));
	UM_REQ(c, !ioctl(c->fd, SECMMU_IOCTL_TLB_FLUSH), "TLB_FLUSH: %s", strerror(errno));
	r = um_fork_op(&x);
	c->ops++;
	UM_REQ(c, !r, "fork: %s", strerror(-r));
	r = um_prime_read(c->fd, x.p, x.len);
	UM_REQ(c, !r, "device read: %s", strerror(-r));
	um_stale(c, x.p, x.len);
	um_fork_reap(&x);
out:
	um_fork_reap(&x);
	if (x.p)
		munmap(x.p, x.len);
}

TEST_F_TIMEOUT(paths, cow_4k, 300)
{
	struct um_case c = UM_CASE("cow_4k", self->fd);

	um_cow_case(&c, false);
	um_finish(_metadata, self, &c);
}

TEST_F_TIMEOUT(paths, cow_thp, 300)
{
	struct um_case c = UM_CASE("cow_thp", self->fd);

	um_cow_case(&c, true);
	um_finish(_metadata, self, &c);
}

/* ------------------------------------------------------------------ */
/* KSM.                                                                 */

#define UM_KSM "/sys/kernel/mm/ksm/"
#define UM_KSM_PAGES 8

static struct um_knob um_ksm_knobs[4];

static inline void um_ksm_restore(void *a)
{
	int i;

	for (i = 3; i >= 0; i--)
		um_knob_restore(&um_ksm_knobs[i]);
}

/* One page of content only our pages hold: every merged page is one of ours. */
static inline void um_ksm_fill(char *p, size_t n, uint64_t seed)
{
	size_t i;

	for (i = 0; i < n; i++)
		um_fill(p + i * PAGE, PAGE, seed);
}

/* The peer maps pages of the same content, mergeable, and at the end
 * counts its pages that do not hold it any more. */
struct um_ksm_peer {
	uint64_t seed;
	char *p;
};

static inline uint64_t um_ksm_peer_setup(void *a, volatile uint64_t *out)
{
	struct um_ksm_peer *k = a;

	k->p = um_anon(UM_KSM_PAGES, 0);
	if (!k->p)
		return 1;
	um_ksm_fill(k->p, UM_KSM_PAGES, k->seed);
	return madvise(k->p, UM_KSM_PAGES * PAGE, MADV_MERGEABLE) ? 2 : 0;
}

static inline uint64_t um_ksm_peer_check(void *a, volatile uint64_t *out)
{
	struct um_ksm_peer *k = a;
	char *want = um_anon(1, 0);
	uint64_t n = 0;
	size_t i;

	if (!k->p || !want)
		return ~0ULL;
	um_ksm_fill(want, 1, k->seed);
	for (i = 0; i < UM_KSM_PAGES; i++)
		n += !!memcmp(k->p + i * PAGE, want, PAGE);
	return n;
}

/* Pages of process @pid merged by KSM, or -1. */
static inline long um_ksm_merged(pid_t pid)
{
	char path[64], buf[32];

	snprintf(path, sizeof(path), "/proc/%d/ksm_merging_pages", pid);
	if (read_file(path, buf, sizeof(buf)) <= 0)
		return -1;
	return strtol(buf, NULL, 10);
}

TEST_F_TIMEOUT(paths, ksm_merge, 600)
{
	struct um_case c = UM_CASE("ksm_merge", self->fd);
	struct um_ksm_peer k = { .seed = 0x6b73 ^ (uint64_t)getpid() };
	struct um_peer peer = { .pid = -1 };
	struct um_guard g = { .pid = -1 };
	const size_t len = UM_KSM_PAGES * PAGE;
	char *p = NULL, *want = NULL;
	long mine = 0, theirs = 0;
	double t0;
	size_t i;
	int r;

	UM_REQ(&c, !access(UM_KSM "run", W_OK), "no " UM_KSM "run (CONFIG_KSM=y?)");
	um_knob_save(&um_ksm_knobs[0], UM_KSM "run");
	um_knob_save(&um_ksm_knobs[1], UM_KSM "pages_to_scan");
	um_knob_save(&um_ksm_knobs[2], UM_KSM "sleep_millisecs");
	um_knob_save(&um_ksm_knobs[3], UM_KSM "smart_scan");
	um_guard_start(&g, um_ksm_restore, NULL);
	/* The other process's pages first (so it shares nothing with ours). */
	r = um_peer_start(&peer, um_ksm_peer_setup, um_ksm_peer_check, &k);
	UM_REQ(&c, !r, "fork: %s", strerror(-r));
	UM_REQ(&c, !peer.out[0], "the other process's mergeable pages: step %llu failed",
	       (unsigned long long)peer.out[0]);
	p = um_anon(UM_KSM_PAGES, 0);
	want = um_anon(1, 0);
	UM_REQ(&c, p && want, "mmap: %s", strerror(errno));
	um_ksm_fill(p, UM_KSM_PAGES, k.seed);
	um_ksm_fill(want, 1, k.seed);
	/* The device holds writable translations of every page. */
	r = dev_prime(c.fd, p, len);
	UM_REQ(&c, !r, "prime: %s", strerror(-r));
	UM_REQ(&c, !madvise(p, len, MADV_MERGEABLE), "MADV_MERGEABLE: %s", strerror(errno));
	set_knob(UM_KSM "smart_scan", "0");
	set_knob(UM_KSM "pages_to_scan", "10000");
	set_knob(UM_KSM "sleep_millisecs", "0");
	r = set_knob(UM_KSM "run", "1");
	/* The merge: bounded polling of both processes' merged pages. */
	for (t0 = now_s(); !r && now_s() - t0 < 120; usleep(20000)) {
		mine = um_ksm_merged(getpid());
		theirs = um_ksm_merged(peer.pid);
		if (mine < 0 || (mine >= UM_KSM_PAGES && theirs >= UM_KSM_PAGES))
			break;
	}
	set_knob(UM_KSM "run", "0");
	um_ksm_restore(NULL);
	UM_REQ(&c, !r, UM_KSM "run: %s", strerror(-r));
	UM_REQ(&c, mine >= 0, "no /proc/self/ksm_merging_pages");
	UM_REQ(&c, mine >= UM_KSM_PAGES && theirs >= UM_KSM_PAGES,
	       "KSM merged %ld of our %d pages and %ld of the other process's in %.0f s",
	       mine, UM_KSM_PAGES, theirs, now_s() - t0);
	c.ops++;

	/* Pages 0-1: a device write lands there (COW of the KSM page) and in
	 * no other page that shared it, in this process or the other. */
	um_iso_write(&c, p, 2 * PAGE);
	for (i = 4; i < UM_KSM_PAGES; i++) {
		c.iso.accesses++;
		c.iso.violations += !!memcmp(p + i * PAGE, want, PAGE);
	}
	um_iso_peer(&c, um_peer_finish(&peer));
	/* Pages 2-3: the CPU writes (COW of the KSM page); the device reads. */
	um_stale(&c, p + 2 * PAGE, 2 * PAGE);
out:
	if (peer.pid > 0)
		um_peer_finish(&peer);
	um_ksm_restore(NULL);
	um_guard_stop(&g);
	if (p)
		munmap(p, len);
	if (want)
		munmap(want, PAGE);
	um_finish(_metadata, self, &c);
}

/* ------------------------------------------------------------------ */
/* UFFDIO_MOVE.                                                         */

/* The checks of one move of @len bytes (4 KiB pages or a THP). */
static inline void um_move_once(struct um_case *c, int uffd, bool thp)
{
	const size_t len = thp ? HPAGE : 8 * PAGE;
	char *src = thp ? um_thp(21) : um_anon(8, 21);
	char *dst = thp ? um_map_aligned(HPAGE, MAP_PRIVATE | MAP_ANONYMOUS, -1)
			: mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	char *want = um_anon(len / PAGE, 21);
	struct uffdio_register reg = { 0 };
	struct uffdio_move mv = { 0 };
	uint64_t huge = 0, v;
	size_t off, changed = 0;
	int r;

	UM_REQ(c, src && want && dst && dst != MAP_FAILED, "mmap: %s", strerror(errno));
	if (thp)
		madvise(dst, len, MADV_HUGEPAGE);
	else
		madvise(dst, len, MADV_NOHUGEPAGE);
	um_fill(want, len, 21);
	/* The device holds writable translations of the source. */
	r = um_prime(c->fd, src, len, &huge);
	UM_REQ(c, !r, "prime: %s", strerror(-r));
	if (thp && !huge) {
		snprintf(c->note, sizeof(c->note), "THP part not run: no THP for the source");
		goto out;
	}
	reg.range.start = (uintptr_t)dst;
	reg.range.len = len;
	reg.mode = UFFDIO_REGISTER_MODE_MISSING;
	UM_REQ(c, !ioctl(uffd, UFFDIO_REGISTER, &reg), "UFFDIO_REGISTER: %s", strerror(errno));
	mv.dst = (uintptr_t)dst;
	mv.src = (uintptr_t)src;
	mv.len = len;
	r = ioctl(uffd, UFFDIO_MOVE, &mv);
	c->ops++;
	UM_REQ(c, !r && mv.move == (int64_t)len, "UFFDIO_MOVE %s: %s (moved %lld)",
	       thp ? "2 MiB" : "32 KiB", r ? strerror(errno) : "short", (long long)mv.move);
	UM_REQ(c, !memcmp(dst, want, len), "the data did not move");

	/* src: its PTEs are gone; a device write lands in a new page there. */
	um_dropped(c, src, len);
	/* ... and not in the moved pages, now dst's. */
	c->judged |= UM_ISO;
	c->iso.ops++;
	for (off = 0; off < len; off += PAGE) {
		c->iso.accesses++;
		changed += !!memcmp(dst + off, want + off, PAGE);
	}
	c->iso.violations += changed;
	/* dst: the device reads the moved data, then the CPU's new data. */
	c->judged |= UM_STALE;
	for (off = 0; off < len; off += PAGE) {
		c->stale.accesses++;
		if (dev_read(c->fd, dst + off + 8, 8, &v) || v != *(uint64_t *)(want + off + 8))
			c->stale.violations++;
	}
	um_stale(c, dst, len);
out:
	if (src)
		munmap(src, len);
	if (dst && dst != MAP_FAILED)
		munmap(dst, len);
	if (want)
		munmap(want, len);
}

TEST_F_TIMEOUT(paths, uffdio_move, 300)
{
	struct um_case c = UM_CASE("uffdio_move", self->fd);
	struct uffdio_api api = { .api = UFFD_API, .features = UFFD_FEATURE_MOVE };
	int uffd = syscall(__NR_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);

	UM_REQ(&c, uffd >= 0, "userfaultfd: %s", strerror(errno));
	if (ioctl(uffd, UFFDIO_API, &api) || !(api.features & UFFD_FEATURE_MOVE)) {
		int e = errno;
		struct uffdio_api q = { .api = UFFD_API };
		int u2 = syscall(__NR_userfaultfd, O_CLOEXEC | UFFD_USER_MODE_ONLY);

		if (u2 >= 0 && !ioctl(u2, UFFDIO_API, &q) && !(q.features & UFFD_FEATURE_MOVE))
			snprintf(c.not_run, sizeof(c.not_run),
				 "UFFD_FEATURE_MOVE not offered by this kernel (UFFDIO_API features 0x%llx)",
				 (unsigned long long)q.features);
		else
			um_fail(&c, "UFFDIO_API with UFFD_FEATURE_MOVE: %s", strerror(e));
		if (u2 >= 0)
			close(u2);
		goto out;
	}
	um_move_once(&c, uffd, false);
	if (!c.err[0]) {
		struct um_case t = UM_CASE("uffdio_move", self->fd);

		if (um_thp_ok(&t))
			um_move_once(&c, uffd, true);
		else
			snprintf(c.note, sizeof(c.note), "THP part not run: %.200s%.200s", t.not_run, t.err);
	}
out:
	if (uffd >= 0)
		close(uffd);
	um_finish(_metadata, self, &c);
}

/* ------------------------------------------------------------------ */
/* shmem: ftruncate, hole punch, MADV_REMOVE of a memfd mapping.        */

/*
 * write_after_revoke beyond a file's new EOF: a device write must fault
 * where the CPU's would (SIGBUS: no page table entry, and the fault finds
 * no page). shmem may map a large folio straddling EOF with a PMD across
 * i_size (finish_fault()'s exception for shmem, when the truncation could
 * not split the folio): there the CPU writes without a fault, so the
 * device's write must land where the CPU reads. Returns those pages.
 */
static inline size_t um_revoked_eof(struct um_case *c, char *p, size_t len)
{
	uint64_t round = ++c->round;
	size_t off, mapped = 0;

	c->judged |= UM_REVOKE;
	c->revoke.ops++;
	for (off = 0; off < len; off += PAGE) {
		if (um_pagemap(p + off) & UM_PM_PRESENT) {
			mapped++;
			dropped_write_check(c->fd, p + off, PAGE, round, &c->revoke);
		} else {
			revoked_write_check(c->fd, p + off, PAGE, &c->revoke);
		}
	}
	return mapped;
}

enum { UM_TRUNC, UM_PUNCH, UM_REMOVE };

struct um_shm {
	struct um_case *c;
	int mode;
	bool huge;
	int mfd;
	char *p;
	size_t len, cut;	/* [cut, len) is cut */
	int err;
	uint64_t seed, hfills;
};

static inline void um_shm_unmap(struct um_shm *x)
{
	if (x->p)
		munmap(x->p, x->len);
	if (x->mfd >= 0)
		close(x->mfd);
	x->p = NULL;
	x->mfd = -1;
}

/* A fresh memfd mapping (2 MiB aligned, MADV_HUGEPAGE for THP), filled,
 * primed. */
static inline int um_shm_setup(void *a)
{
	struct um_shm *x = a;

	um_shm_unmap(x);
	x->mfd = memfd_create("secmmu-path", MFD_CLOEXEC);
	if (x->mfd < 0 || ftruncate(x->mfd, x->len))
		return -errno;
	x->p = um_map_aligned(x->len, MAP_SHARED, x->mfd);
	if (!x->p)
		return -errno;
	madvise(x->p, x->len, x->huge ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
	um_fill(x->p, x->len, ++x->seed);
	return um_prime(x->c->fd, x->p, x->len, &x->hfills);
}

static inline int um_shm_op(void *a)
{
	struct um_shm *x = a;
	int r;

	if (x->mode == UM_TRUNC)
		r = ftruncate(x->mfd, x->cut);
	else if (x->mode == UM_PUNCH)
		r = fallocate(x->mfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, x->cut,
			      x->len - x->cut);
	else
		r = madvise(x->p + x->cut, x->len - x->cut, MADV_REMOVE);
	if (r && !x->err)
		x->err = -errno;
	return r;
}

static inline void um_shm_once(struct um_case *c, int mode, bool huge)
{
	struct um_shm x = {
		.c = c, .mode = mode, .huge = huge, .mfd = -1,
		.len = huge ? 2 * HPAGE : 2 * UM_WIN, .cut = huge ? HPAGE / 2 : UM_WIN,
	};

	/* A stream writes what stays while the rest is cut (a shmem THP:
	 * split under the device's 2 MiB translation). */
	um_race(c, &x.p, UM_SLOTS, um_shm_setup, um_shm_op, &x);
	UM_REQ(c, !x.err, "%s: %s",
	       mode == UM_TRUNC ? "ftruncate" : mode == UM_PUNCH ? "fallocate(PUNCH_HOLE)" : "MADV_REMOVE",
	       strerror(-x.err));
	if (huge && !x.hfills) {
		snprintf(c->note, sizeof(c->note),
			 "shmem THP part not run: no 2 MiB translation of a MADV_HUGEPAGE memfd "
			 "mapping with shmem_enabled=advise");
		goto out;
	}
	/* Beyond EOF a device write faults (SIGBUS for the CPU); a punched or
	 * removed range takes a new page where the CPU reads. */
	if (mode == UM_TRUNC) {
		size_t mapped = um_revoked_eof(c, x.p + x.cut, x.len - x.cut);

		if (mapped)
			snprintf(c->note, sizeof(c->note),
				 "%zu pages beyond EOF still mapped by the CPU (shmem PMD across "
				 "i_size, the THP not split): judged as mapped", mapped);
	} else
		um_dropped(c, x.p + x.cut, x.len - x.cut);
	um_stale(c, x.p, x.cut);
out:
	um_shm_unmap(&x);
}

#define UM_SHMEM_ENABLED "/sys/kernel/mm/transparent_hugepage/shmem_enabled"

static struct um_knob um_shmem_knob;

static inline void um_shmem_restore(void *a)
{
	um_knob_restore(&um_shmem_knob);
}

static inline void um_shmem_case(struct um_case *c, int mode)
{
	struct um_guard g = { .pid = -1 };
	int r;

	um_shm_once(c, mode, false);
	if (c->err[0])
		return;
	if (!um_knob_save(&um_shmem_knob, UM_SHMEM_ENABLED)) {
		snprintf(c->note, sizeof(c->note), "shmem THP part not run: no " UM_SHMEM_ENABLED);
		return;
	}
	um_guard_start(&g, um_shmem_restore, NULL);
	r = set_knob(UM_SHMEM_ENABLED, "advise");
	if (r)
		um_fail(c, UM_SHMEM_ENABLED ": advise: %s", strerror(-r));
	else
		um_shm_once(c, mode, true);
	um_shmem_restore(NULL);
	um_guard_stop(&g);
}

TEST_F_TIMEOUT(paths, shmem_ftruncate, 300)
{
	struct um_case c = UM_CASE("shmem_ftruncate", self->fd);

	um_shmem_case(&c, UM_TRUNC);
	um_finish(_metadata, self, &c);
}

TEST_F_TIMEOUT(paths, shmem_punch_hole, 300)
{
	struct um_case c = UM_CASE("shmem_punch_hole", self->fd);

	um_shmem_case(&c, UM_PUNCH);
	um_finish(_metadata, self, &c);
}

TEST_F_TIMEOUT(paths, shmem_madv_remove, 300)
{
	struct um_case c = UM_CASE("shmem_madv_remove", self->fd);

	um_shmem_case(&c, UM_REMOVE);
	um_finish(_metadata, self, &c);
}

/* ------------------------------------------------------------------ */
/* A MAP_SHARED anonymous mapping across fork.                          */

struct um_shared {
	struct um_case *c;
	char *p;	/* shared: [0, half) the parent's stream, [half, len) the child's */
	size_t len, half;
	struct um_peer peer;
	int err;
	int cfd;	/* the child's context (in the child) */
};

/* Child: a context of its own, bound to its mm. */
static inline uint64_t um_shared_open(void *a, volatile uint64_t *out)
{
	struct um_shared *x = a;

	x->cfd = secmmu_open_bound(0);
	return x->cfd < 0;
}

/* Child, on go: a single-pass stream of its context over the parent's
 * half, checked by the child (out[2] writes, out[3] lost). */
static inline uint64_t um_shared_stream(void *a, volatile uint64_t *out)
{
	struct um_shared *x = a;
	struct secmmu_stream s = {
		.addr = (uintptr_t)x->p, .stride = 8, .slots = x->half / 8,
		.flags = SECMMU_STREAM_ONCE,
	};
	struct secmmu_verify ver;

	if (ioctl(x->cfd, SECMMU_IOCTL_STREAM_START, &s))
		return 2;
	wait_dev_stat(x->cfd, SECMMU_STAT_STREAM_WRITES, s.slots);
	if (ioctl(x->cfd, SECMMU_IOCTL_STREAM_VERIFY, &ver))
		return 3;
	out[2] = ver.writes;
	out[3] = ver.lost_writes;
	close(x->cfd);
	return 0;
}

/* Child, second phase: its own context writes tokens into its half and
 * stays bound until the child exits (the race's operation). */
static inline uint64_t um_shared_bind(void *a, volatile uint64_t *out)
{
	struct um_shared *x = a;
	size_t off;

	if (um_shared_open(a, out))
		return 1;
	for (off = x->half; off < x->len; off += PAGE)
		if (dev_write(x->cfd, x->p + off + 24, 8, NULL, token(77, off / PAGE)))
			return 2;
	return 0;	/* the context goes with the exit */
}

/* Before a pass: the child (forked first: a fork flushes the device's TLB),
 * then the parent's device takes its translations. */
static inline int um_shared_setup(void *a)
{
	struct um_shared *x = a;
	int r;

	r = um_peer_start(&x->peer, um_shared_bind, NULL, x);
	if (!r && x->peer.out[0])
		r = -EIO;
	if (r)
		return r;
	return um_prime(x->c->fd, x->p, x->len, NULL);
}

/* The operation: the child exits, its mm and its context go. */
static inline int um_shared_exit(void *a)
{
	struct um_shared *x = a;
	uint64_t r = um_peer_finish(&x->peer);
	size_t off;

	if (r == ~0ULL && !x->err)
		x->err = -ECHILD;
	/* The child's device writes show in the parent. */
	for (off = x->half; off < x->len; off += PAGE) {
		x->c->lost.accesses++;
		x->c->lost.violations +=
			*(volatile uint64_t *)(x->p + off + 24) != token(77, off / PAGE);
	}
	return 0;
}

TEST_F_TIMEOUT(paths, shared_fork, 300)
{
	struct um_case c = UM_CASE("shared_fork", self->fd);
	struct um_shared x = {
		.c = &c, .len = 2 * 32 * PAGE, .half = 32 * PAGE, .peer = { .pid = -1 },
	};
	uint64_t r, i;
	int e;

	x.p = mmap(NULL, x.len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	UM_REQ(&c, x.p != MAP_FAILED, "mmap: %s", strerror(errno));
	um_fill(x.p, x.len, 9);

	/* The child's own context writes every slot of the parent's half once
	 * while the parent's device maps them: each write shows in the parent
	 * (slot i holds i + 1). */
	e = um_peer_start(&x.peer, um_shared_open, um_shared_stream, &x);
	c.ops++;
	UM_REQ(&c, !e, "fork: %s", strerror(-e));
	UM_REQ(&c, !x.peer.out[0], "child: bind failed");
	e = dev_prime(c.fd, x.p, x.len);
	UM_REQ(&c, !e, "prime: %s", strerror(-e));
	r = um_peer_finish(&x.peer);
	UM_REQ(&c, !r, "child: stream step %llu failed", (unsigned long long)r);
	c.judged |= UM_LOST;
	c.lost.ops++;
	c.lost.accesses += x.peer.res[2];
	c.lost.violations += x.peer.res[3];
	UM_REQ(&c, x.peer.res[2] == x.half / 8, "child's stream made %llu of %zu writes",
	       (unsigned long long)x.peer.res[2], x.half / 8);
	for (i = 0; i < x.half / 8; i++)
		c.lost.violations += ((volatile uint64_t *)x.p)[i] != i + 1;
	/* The parent's device reads what the child's device wrote. */
	c.judged |= UM_STALE;
	c.stale.ops++;
	for (i = 0; i < x.half / 8; i += 512) {
		uint64_t v = 0;

		c.stale.accesses++;
		if (dev_read(c.fd, x.p + i * 8, 8, &v) || v != i + 1)
			c.stale.violations++;
	}

	/* A stream writes the parent's half while a child bound to the same
	 * memory exits. */
	um_race(&c, &x.p, x.half / 8, um_shared_setup, um_shared_exit, &x);
	UM_REQ(&c, !x.err, "child: %s", strerror(-x.err));
	/* After the child is gone the parent's device writes land where the
	 * parent's CPU reads, and its reads see the parent's CPU writes. */
	um_dropped(&c, x.p, x.len);
	um_stale(&c, x.p, x.len);
out:
	if (x.peer.pid > 0)
		um_peer_finish(&x.peer);
	if (x.p && x.p != MAP_FAILED)
		munmap(x.p, x.len);
	um_finish(_metadata, self, &c);
}

/* ------------------------------------------------------------------ */
/* Memory-block offline.                                                */

#define UM_MEM "/sys/devices/system/memory/"

/* The state file of the block being offlined, in a MAP_SHARED page: the
 * guard (forked before) sees it. */
static char *um_block_state;

static inline void um_block_online(void *a)
{
	if (um_block_state && um_block_state[0])
		set_knob(um_block_state, "online");
}

static void um_alarm(int sig)
{
	(void)sig;
}

/* Writes "offline" to the block's state, interruptible after @secs. */
static inline int um_block_offline(const char *state, unsigned int secs)
{
	struct sigaction sa = { .sa_handler = um_alarm }, old;
	int r;

	sigaction(SIGALRM, &sa, &old);	/* no SA_RESTART: the write ends with EINTR */
	alarm(secs);
	r = set_knob(state, "offline");
	alarm(0);
	sigaction(SIGALRM, &old, NULL);
	return r;
}

struct um_offl {
	const char *state;
	unsigned int secs;	/* the write's bound */
	int err;
};

static inline int um_offline_op(void *a)
{
	struct um_offl *o = a;

	o->err = um_block_offline(o->state, o->secs);
	return o->err;
}

/*
 * The time all offline attempts of the case may take: offline_pages()
 * retries a page that will not migrate until a signal ends it, and the
 * mutant runner gives a case 150 s in all.
 */
#define UM_OFFLINE_BUDGET_S	90
#define UM_OFFLINE_TRY_S	60

/* The block of PFN @pfn. */
#define UM_BLOCK(pfn, bs) ((long)((pfn) * PAGE / (bs)))

#define UM_KPF_HWPOISON 19

/*
 * Whether block @b (of @bs bytes) holds a hardware-poisoned page
 * (/proc/kpageflags), as a soft offline (MADV_SOFT_OFFLINE) earlier in the
 * boot leaves one: the kernel offlines such a block but refuses to online
 * it again (-EHWPOISON), so it must not be picked. -1 if unreadable.
 */
static inline int um_block_poisoned(long b, long bs)
{
	size_t n = bs / PAGE, i;
	uint64_t *f = malloc(n * 8);
	int fd = open("/proc/kpageflags", O_RDONLY), r = -1;

	if (f && fd >= 0 && pread(fd, f, n * 8, (off_t)b * n * 8) == (ssize_t)(n * 8))
		for (r = 0, i = 0; i < n && !r; i++)
			r = !!(f[i] & (1ULL << UM_KPF_HWPOISON));
	if (fd >= 0)
		close(fd);
	free(f);
	return r;
}

TEST_F_TIMEOUT(paths, offline_block, 900)
{
	struct um_case c = UM_CASE("offline_block", self->fd);
	const size_t n = 40960;		/* 160 MiB: more than one 128 MiB block */
	const size_t len = n * PAGE;
	struct um_guard g = { .pid = -1 };
	char buf[256], tried[480] = "", *p = NULL;
	uint64_t *pm = NULL;
	long bs, blocks[64], counts[64], b;
	int nb = 0, i, j, k, fd, done = -1;
	unsigned long mask = 1UL << 1;
	double t0;
	cpu_set_t set;
	size_t off, pg;

	if (access("/sys/devices/system/node/node1", F_OK)) {
		snprintf(c.not_run, sizeof(c.not_run), "no NUMA node 1");
		goto out;
	}
	UM_REQ(&c, read_file(UM_MEM "block_size_bytes", buf, sizeof(buf)) > 0,
	       "no " UM_MEM "block_size_bytes (CONFIG_MEMORY_HOTPLUG=y?)");
	bs = strtol(buf, NULL, 16);
	UM_REQ(&c, bs >= (long)HPAGE, "block size %ld", bs);
	um_block_state = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	UM_REQ(&c, um_block_state != MAP_FAILED, "mmap: %s", strerror(errno));
	um_block_state[0] = 0;
	/* Before the device maps anything (see um_guard). */
	um_guard_start(&g, um_block_online, NULL);
	/* Page tables and the case's own allocations on node 0: node 1's
	 * blocks then hold our data pages and little of the kernel's. */
	CPU_ZERO(&set);
	CPU_SET(0, &set);
	sched_setaffinity(0, sizeof(set), &set);
	p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	UM_REQ(&c, p != MAP_FAILED, "mmap: %s", strerror(errno));
	madvise(p, len, MADV_NOHUGEPAGE);
	UM_REQ(&c, !syscall(SYS_mbind, p, len, MPOL_BIND, &mask, 64UL, 0U), "mbind node 1: %s",
	       strerror(errno));
	for (off = 0; off < len; off += PAGE)
		*(uint64_t *)(p + off) = token(5, off / PAGE);
	UM_REQ(&c, page_node(p) == 1 && page_node(p + len - PAGE) == 1, "the region is not on node 1");
	pm = malloc(n * 8);
	fd = open("/proc/self/pagemap", O_RDONLY);
	UM_REQ(&c, pm && fd >= 0, "pagemap: %s", strerror(errno));
	i = pread(fd, pm, n * 8, (uintptr_t)p / PAGE * 8) == (ssize_t)(n * 8);
	close(fd);
	UM_REQ(&c, i, "pagemap read");
	/* Our pages per block. */
	for (pg = 0; pg < n; pg++) {
		UM_REQ(&c, pm[pg] & UM_PM_PRESENT && pm[pg] & UM_PM_PFN, "no PFN in pagemap");
		b = UM_BLOCK(pm[pg] & UM_PM_PFN, bs);
		for (i = 0; i < nb && blocks[i] != b; i++)
			;
		if (i == nb && nb < 64) {
			blocks[nb] = b;
			counts[nb++] = 0;
		}
		if (i < nb)
			counts[i]++;
	}
	/* The blocks holding most of our pages first. */
	for (i = 0; i < nb; i++)
		for (j = i + 1; j < nb; j++)
			if (counts[j] > counts[i]) {
				long tb = blocks[i], tc = counts[i];

				blocks[i] = blocks[j];
				counts[i] = counts[j];
				blocks[j] = tb;
				counts[j] = tc;
			}
	t0 = now_s();
	for (i = 0; i < nb && i < 4 && done < 0; i++) {
		struct um_offl o = { .state = um_block_state };
		size_t best = 0, bestn = 0, wn;
		char zones[64] = "?", st[32] = "?", path[128];
		double left = UM_OFFLINE_BUDGET_S - (now_s() - t0);

		if (left < 5) {
			snprintf(tried + strlen(tried), sizeof(tried) - strlen(tried),
				 "%smemory%ld and after: not tried (%d s budget spent)", i ? "; " : "",
				 blocks[i], UM_OFFLINE_BUDGET_S);
			break;
		}
		o.secs = left < UM_OFFLINE_TRY_S ? (unsigned int)left : UM_OFFLINE_TRY_S;

		snprintf(um_block_state, 128, UM_MEM "memory%ld/state", blocks[i]);
		snprintf(path, sizeof(path), UM_MEM "memory%ld/valid_zones", blocks[i]);
		read_file(path, zones, sizeof(zones));
		zones[strcspn(zones, "\n")] = 0;
		read_file(um_block_state, st, sizeof(st));
		st[strcspn(st, "\n")] = 0;
		if (strcmp(st, "online")) {
			snprintf(tried + strlen(tried), sizeof(tried) - strlen(tried),
				 "%smemory%ld: state %s", i ? "; " : "", blocks[i], st);
			continue;
		}
		k = um_block_poisoned(blocks[i], bs);
		UM_REQ(&c, k >= 0, "/proc/kpageflags: %s", strerror(errno));
		if (k) {
			snprintf(tried + strlen(tried), sizeof(tried) - strlen(tried),
				 "%smemory%ld: holds a poisoned page", i ? "; " : "", blocks[i]);
			continue;
		}
		/* The device maps our pages in the block (up to 1024 of them),
		 * and a stream window where most of them are. */
		for (pg = 0, k = 0; pg < n; pg++) {
			if (UM_BLOCK(pm[pg] & UM_PM_PFN, bs) != blocks[i])
				continue;
			if (k++ < 1024 && dev_prime(c.fd, p + pg * PAGE, PAGE))
				um_fail(&c, "prime");
		}
		for (off = 0; off + UM_WIN <= len; off += UM_WIN) {
			for (pg = off / PAGE, wn = 0; pg < (off + UM_WIN) / PAGE; pg++)
				wn += UM_BLOCK(pm[pg] & UM_PM_PFN, bs) == blocks[i];
			if (wn > bestn) {
				bestn = wn;
				best = off;
			}
		}
		if (dev_prime(c.fd, p + best, UM_WIN))
			um_fail(&c, "prime");
		/* Offline, raced by a stream over the window. */
		c.judged |= UM_LOST;
		j = race_passes(c.fd, p + best, UM_SLOTS, um_offline_op, &o, 1, 1, &c.lost);
		c.ops++;
		if (j < 0)
			um_fail(&c, "race: the stream: %s", strerror(-j));
		if (o.err) {
			um_block_online(NULL);
			snprintf(tried + strlen(tried), sizeof(tried) - strlen(tried),
				 "%smemory%ld (%ld of our pages, valid_zones %s): %s", i ? "; " : "",
				 blocks[i], counts[i], zones, strerror(-o.err));
			continue;
		}
		done = i;
		/* Our pages left the block; the device must follow them. */
		c.judged |= UM_STALE | UM_REVOKE;
		c.stale.ops++;
		c.revoke.ops++;
		for (pg = 0, k = 0; pg < n && k < 1024; pg++) {
			if (UM_BLOCK(pm[pg] & UM_PM_PFN, bs) != blocks[i])
				continue;
			k++;
			if (UM_BLOCK(um_pagemap(p + pg * PAGE) & UM_PM_PFN, bs) == blocks[i])
				um_fail(&c, "page %zu still in the offline block", pg);
			stale_read_check(c.fd, p + pg * PAGE, PAGE, 200, &c.stale);
			dropped_write_check(c.fd, p + pg * PAGE, PAGE, 201, &c.revoke);
		}
		j = set_knob(um_block_state, "online");
		if (j)
			um_fail(&c, "%s: online: %s", um_block_state, strerror(-j));
		snprintf(c.note, sizeof(c.note), "offlined memory%ld (%ld of our pages, valid_zones %s)%s%s",
			 blocks[i], counts[i], zones, tried[0] ? " after: " : "", tried);
	}
	if (done < 0 && !c.err[0]) {
		c.judged = 0;
		snprintf(c.not_run, sizeof(c.not_run),
			 "no node-1 memory block holding the device's pages could be offlined: %s",
			 tried[0] ? tried : "none found");
	}
out:
	um_guard_stop(&g);
	free(pm);
	if (p && p != MAP_FAILED)
		munmap(p, len);
	um_finish(_metadata, self, &c);
}

/* ------------------------------------------------------------------ */
/* Soft offline (MADV_SOFT_OFFLINE): the page is migrated and retired.   */

struct um_soft {
	struct um_case *c;
	char *p;
	size_t len;
	size_t lo;	/* pages offlined from here on */
	size_t next;
	bool thp;
	int err;
	uint64_t seed, huge, moved;
};

static inline int um_soft_setup(void *a)
{
	struct um_soft *x = a;

	if (x->thp) {
		if (x->p)
			munmap(x->p, x->len);
		x->p = um_thp(++x->seed);
		if (!x->p)
			return -ENOMEM;
	}
	return um_prime(x->c->fd, x->p, x->len, &x->huge);
}

/* Soft-offlines the next page (a transient reference, e.g. the device's
 * own during an access, makes it -EBUSY: retried). */
static inline int um_soft_op(void *a)
{
	struct um_soft *x = a;
	char *pg = x->p + x->lo + (x->next++ * PAGE) % (x->len - x->lo);
	uint64_t pfn = um_pagemap(pg) & UM_PM_PFN;
	int i, r = 0;

	for (i = 0; i < 20; i++) {
		r = madvise(pg, PAGE, MADV_SOFT_OFFLINE) ? -errno : 0;
		if (r != -EBUSY && r != -EAGAIN)
			break;
		usleep(1000);
	}
	if (r && !x->err)
		x->err = r;
	x->moved += !r && (um_pagemap(pg) & UM_PM_PFN) != pfn;
	return r;
}

static inline void um_soft_case(struct um_case *c, bool thp)
{
	struct um_soft x = {
		.c = c, .len = thp ? HPAGE : UM_WIN, .lo = thp ? HPAGE / 2 : 0, .thp = thp,
	};
	int r;

	if (!thp) {
		x.p = um_anon(x.len / PAGE, 11);
		UM_REQ(c, x.p, "mmap: %s", strerror(errno));
	}
	/* A stream writes while a page (of the THP: split first) moves. */
	um_race(c, &x.p, UM_SLOTS, um_soft_setup, um_soft_op, &x);
	UM_REQ(c, !x.err, "MADV_SOFT_OFFLINE: %s", strerror(-x.err));
	UM_REQ(c, !thp || x.huge, "no THP in any pass");
	/* One more, with the device's translations primed just before. */
	r = um_soft_setup(&x);
	UM_REQ(c, !r, "prime: %s", strerror(-r));
	um_soft_op(&x);
	c->ops++;
	UM_REQ(c, !x.err, "MADV_SOFT_OFFLINE: %s", strerror(-x.err));
	UM_REQ(c, x.moved, "MADV_SOFT_OFFLINE moved no page (PFNs unchanged)");
	um_stale(c, x.p, x.len);
	um_dropped(c, x.p, x.len);
out:
	if (x.p)
		munmap(x.p, x.len);
}

TEST_F_TIMEOUT(paths, soft_offline, 300)
{
	struct um_case c = UM_CASE("soft_offline", self->fd);

	um_soft_case(&c, false);
	if (!c.err[0]) {
		struct um_case t = UM_CASE("soft_offline", self->fd);

		if (um_thp_ok(&t))
			um_soft_case(&c, true);
		else
			snprintf(c.note, sizeof(c.note), "THP part not run: %.200s%.200s", t.not_run, t.err);
	}
	um_finish(_metadata, self, &c);
}

/* ------------------------------------------------------------------ */
/* exit and execve of a process whose context has a stream running.      */

enum { UM_EXIT, UM_KILL, UM_EXEC, UM_EXEC_CLOEXEC };

/* The child: its own context (a file that survives exec unless
 * UM_EXEC_CLOEXEC), a continuous stream over its memory, running. */
static inline uint64_t um_exit_setup(void *a, volatile uint64_t *out)
{
	int mode = *(int *)a;
	struct secmmu_bind bind = { 0 };
	struct secmmu_stats st;
	struct secmmu_stream s = { .stride = 8, .slots = 64 * 512 };
	char *m = um_anon(64, 13);
	int fd = open(SECMMU_DEV, O_RDWR | (mode == UM_EXEC_CLOEXEC ? O_CLOEXEC : 0));

	if (fd < 0 || !m || ioctl(fd, SECMMU_IOCTL_BIND, &bind))
		return 1;
	s.addr = (uintptr_t)m;
	if (ioctl(fd, SECMMU_IOCTL_STREAM_START, &s))
		return 2;
	if (wait_dev_stat(fd, SECMMU_STAT_STREAM_WRITES, 1) < 1 ||
	    ioctl(fd, SECMMU_IOCTL_GET_STATS, &st))
		return 3;
	out[2] = st.ctx_id;
	return 0;
}

static inline uint64_t um_exit_go(void *a, volatile uint64_t *out)
{
	int mode = *(int *)a;

	if (mode == UM_EXEC || mode == UM_EXEC_CLOEXEC) {
		execl("/bin/true", "true", (char *)NULL);
		_exit(127);
	}
	_exit(0);	/* the stream still running, the file still open */
}

/* Device accesses counted module-wide. */
static inline uint64_t um_global_accesses(void)
{
	return global_stat("stream_writes") + global_stat("device_reads") +
	       global_stat("device_writes");
}

static inline void um_exit_case(struct __test_metadata *_metadata, FIXTURE_DATA(paths) *self,
				const char *path, const int *modes, int nmodes)
{
	uint64_t f0 = global_stat("freed_page_accesses"), a0 = um_global_accesses();
	uint64_t f1, a1;
	char dir[96], err[256] = "";
	int i, k, st = 0, r;

	for (i = 0; i < nmodes && !err[0]; i++) {
		struct um_peer pr;
		int mode = modes[i];

		r = um_peer_start(&pr, um_exit_setup, um_exit_go, &mode);
		if (r || pr.out[0]) {
			snprintf(err, sizeof(err), "child %d: %s (step %llu)", mode,
				 strerror(r ? -r : EIO), r ? 0ULL : (unsigned long long)pr.out[0]);
			if (!r)
				um_peer_finish(&pr);
			break;
		}
		snprintf(dir, sizeof(dir), DBG "ctx/%llu", (unsigned long long)pr.out[2]);
		if (access(dir, F_OK))
			snprintf(err, sizeof(err), "%s missing while the child is bound", dir);
		if (mode == UM_KILL)
			kill(pr.pid, SIGKILL);
		else if (write(pr.go, "g", 1) != 1)
			snprintf(err, sizeof(err), "child %d: %s", mode, strerror(errno));
		waitpid(pr.pid, &st, 0);
		self->ops++;
		if (mode == UM_KILL ? !WIFSIGNALED(st) : !WIFEXITED(st) || WEXITSTATUS(st))
			snprintf(err, sizeof(err), "child %d: wait status 0x%x", mode, st);
		um_peer_close(&pr);
		/* The context saw its mm go and its file close: its directory
		 * goes (bounded wait). */
		for (k = 0; k < 1000 && !access(dir, F_OK); k++)
			usleep(10000);
		if (!access(dir, F_OK))
			snprintf(err, sizeof(err), "child %d: %s still there 10 s after the exit",
				 mode, dir);
	}
	f1 = global_stat("freed_page_accesses");
	a1 = um_global_accesses();
	EXPECT_NE(~0ULL, f0) TH_LOG("no global freed_page_accesses");
	cell(path, "freed_page", nmodes, a1 - a0, f1 - f0);
	EXPECT_EQ(0, err[0]) TH_LOG("%s: %s", path, err);
	EXPECT_EQ(f0, f1) TH_LOG("%s: %llu device accesses through freed pages", path,
				 (unsigned long long)(f1 - f0));
}

TEST_F_TIMEOUT(paths, exit_mmap, 120)
{
	static const int modes[] = { UM_EXIT, UM_KILL };

	um_exit_case(_metadata, self, "exit_mmap", modes, 2);
}

TEST_F_TIMEOUT(paths, execve, 120)
{
	static const int modes[] = { UM_EXEC, UM_EXEC_CLOEXEC };

	um_exit_case(_metadata, self, "execve", modes, 2);
}
