/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Cases written to kill the kernel mutants (kernel/mutants/) that the path
 * matrix's cases let survive: each one puts the device's translation where
 * the mutated path forgets to invalidate it, and judges what the device
 * sees with the oracles of paths_lib.h (through unmap.h's um_* tallies).
 *
 *   cow_held_4k, cow_held_thp   the device holds a read translation of a
 *                               COW-shared page when the CPU's write fault
 *                               copies it (wp_page_copy())
 *   gather_nested_dontneed,     two threads zap the same mm at once (nested
 *   gather_nested_munmap        mmu_gathers: tlb_finish_mmu() flushes fullmm)
 *                               while the device holds translations of what
 *                               one of them zaps
 *   move_pages_ptemapped,       move_pages(2) of a PTE-mapped THP (one folio,
 *   move_pages_ptemapped_1cpu   512 PTEs) while the device streams into it;
 *                               _1cpu stays on one CPU (unbatched unmap)
 *   mremap_punch_race           mremap(2) of 4 KiB shmem pages racing a hole
 *                               punch of the moved pages (CVE-2018-18281)
 *   pageout_ptemapped           MADV_PAGEOUT of a PTE-mapped THP, swapped out
 *                               whole, the device holding 4 KiB translations
 *   khugepaged_retract          khugepaged retracts the page table of a
 *                               PTE-mapped shmem THP, then a hole punch
 *   migrate_vma_dontneed        lib/test_hmm's migrate_vma() of 4 KiB pages
 *                               shared with a child, racing MADV_DONTNEED:
 *                               a real-time zapper preempts the migrator
 *                               the moment it drops the PTL
 *   numa_thp_refault            NUMA balancing migrating a THP that the
 *                               device faulted back in within the hinting
 *                               fault (a real-time nudger holds the
 *                               faulting CPU until the device wrote)
 *
 * Helpers are kl_*.
 */
#include <linux/futex.h>
#include <pthread.h>
#include <sys/uio.h>
#include <sys/wait.h>

/* ------------------------------------------------------------------ */
/* COW with the device's read translation held across the write fault. */

#define KL_COW_PAGES 128
#define KL_COW_ROUNDS 4

/*
 * fork (which flushes the device's TLB), then the device reads every page
 * (read-only translations of the pages parent and child now share), then
 * the parent's CPU writes a fresh token into each (COW: a new page) and the
 * device reads it back (stale_read). Then the device writes into each page:
 * it must land in the parent's page (isolation), and the child must see
 * none of it.
 */
static inline void kl_cow_round(struct um_case *c, bool thp, uint64_t seed)
{
	const size_t len = thp ? HPAGE : KL_COW_PAGES * PAGE;
	/* THP: the parent's first CPU write splits the PMD (the THP is shared
	 * with the child) and copies page 0; the device then takes 4 KiB
	 * translations of the other, still shared, subpages. */
	const size_t skip = thp ? PAGE : 0;
	struct um_snap snap;
	struct um_peer peer = { .pid = -1 };
	uint64_t huge = 0, h0;
	char *p = thp ? um_thp(seed) : um_anon(KL_COW_PAGES, seed);
	int r;

	UM_REQ(c, p, "mmap: %s", strerror(errno));
	r = um_prime(c->fd, p, len, &huge);
	UM_REQ(c, !r, "prime: %s", strerror(-r));
	UM_REQ(c, !thp || huge, "no THP for the region");
	snap = (struct um_snap){ .p = p, .len = len };
	r = um_peer_start(&peer, um_snap_take, um_snap_changed, &snap);
	c->ops++;
	UM_REQ(c, !r, "fork: %s", strerror(-r));
	if (thp)
		*(volatile uint64_t *)(p + 8) = token(++c->round, 0);
	h0 = dev_stat(c->fd, SECMMU_STAT_HUGE_FILLS);
	r = um_prime_read(c->fd, p + skip, len - skip);
	UM_REQ(c, !r, "device read: %s", strerror(-r));
	UM_REQ(c, dev_stat(c->fd, SECMMU_STAT_HUGE_FILLS) == h0,
	       "the device took a 2 MiB translation of the shared region");
	/* The CPU write faults (COW) while the device holds the old page. */
	um_stale(c, p + skip, len - skip);
	um_iso_write(c, p + skip, len - skip);
	um_iso_peer(c, um_peer_finish(&peer));
out:
	if (peer.pid > 0)
		um_peer_finish(&peer);
	if (p)
		munmap(p, len);
}

static inline void kl_cow_case(struct um_case *c, bool thp)
{
	int i;

	if (thp && !um_thp_ok(c))
		return;
	for (i = 0; i < KL_COW_ROUNDS && !c->err[0]; i++)
		kl_cow_round(c, thp, 0x636f77 + i);
}

TEST_F_TIMEOUT(paths, cow_held_4k, 120)
{
	struct um_case c = UM_CASE("cow_held_4k", self->fd);

	kl_cow_case(&c, false);
	um_finish(_metadata, self, &c);
}

TEST_F_TIMEOUT(paths, cow_held_thp, 120)
{
	struct um_case c = UM_CASE("cow_held_thp", self->fd);

	kl_cow_case(&c, true);
	um_finish(_metadata, self, &c);
}

/* ------------------------------------------------------------------ */
/* Nested mmu_gathers: two threads zapping one mm at once.              */

/* The other thread's region: 128 PTE tables of empty PTEs its
 * MADV_DONTNEED walks, so that it spends most of its time inside an
 * mmu_gather (mm->tlb_flush_pending raised). */
#define KL_ZAP_LEN (256UL << 20)
#define KL_GATHER_PAGES 64
#define KL_GATHER_ROUNDS 400
#define KL_GATHER_SECS 60

struct kl_zapper {
	char *p;
	volatile int stop;
	volatile uint64_t zaps;
};

static void *kl_zapper_fn(void *a)
{
	struct kl_zapper *z = a;
	size_t off;

	while (!z->stop) {
		/* Repopulate some PTE tables now and then: the walk must find
		 * tables to walk. */
		if (!(z->zaps & 15))
			for (off = 0; off < KL_ZAP_LEN; off += HPAGE)
				z->p[off] = 1;
		madvise(z->p, KL_ZAP_LEN, MADV_DONTNEED);
		z->zaps++;
	}
	return NULL;
}

/*
 * Rounds: a fresh region of 4 KiB pages, the device's writable translations
 * of it, then MADV_DONTNEED (@munmap false: a device write must land where
 * the CPU reads) or munmap (a device write must fault), while the other
 * thread zaps its own region in a loop.
 */
static inline void kl_gather_case(struct um_case *c, bool unmap)
{
	const size_t len = KL_GATHER_PAGES * PAGE;
	struct kl_zapper z = { 0 };
	pthread_t th;
	bool started = false;
	double t0;
	char *p = NULL;
	int i, r;

	z.p = mmap(NULL, KL_ZAP_LEN, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	UM_REQ(c, z.p != MAP_FAILED, "mmap: %s", strerror(errno));
	madvise(z.p, KL_ZAP_LEN, MADV_NOHUGEPAGE);
	UM_REQ(c, !pthread_create(&th, NULL, kl_zapper_fn, &z), "pthread_create");
	started = true;
	/* The other thread is zapping. */
	for (t0 = now_s(); z.zaps < 2 && now_s() - t0 < 20; usleep(1000))
		;
	UM_REQ(c, z.zaps >= 2, "the other thread did not zap");
	for (i = 0, t0 = now_s(); i < KL_GATHER_ROUNDS && now_s() - t0 < KL_GATHER_SECS; i++) {
		p = um_anon(KL_GATHER_PAGES, 0x6761 + i);
		UM_REQ(c, p, "mmap: %s", strerror(errno));
		r = um_prime(c->fd, p, len, NULL);
		UM_REQ(c, !r, "prime: %s", strerror(-r));
		r = unmap ? munmap(p, len) : madvise(p, len, MADV_DONTNEED);
		c->ops++;
		UM_REQ(c, !r, "%s: %s", unmap ? "munmap" : "MADV_DONTNEED", strerror(errno));
		if (unmap) {
			um_revoked(c, p, len);
			p = NULL;
		} else {
			um_dropped(c, p, len);
			munmap(p, len);
			p = NULL;
		}
		if (c->revoke.violations) {
			i++;
			break;
		}
	}
	snprintf(c->note, sizeof(c->note), "%d rounds, the other thread zapped %llu times",
		 i, (unsigned long long)z.zaps);
out:
	z.stop = 1;
	if (started)
		pthread_join(th, NULL);
	if (p)
		munmap(p, len);
	if (z.p && z.p != MAP_FAILED)
		munmap(z.p, KL_ZAP_LEN);
}

TEST_F_TIMEOUT(paths, gather_nested_dontneed, 120)
{
	struct um_case c = UM_CASE("gather_nested_dontneed", self->fd);

	kl_gather_case(&c, false);
	um_finish(_metadata, self, &c);
}

TEST_F_TIMEOUT(paths, gather_nested_munmap, 120)
{
	struct um_case c = UM_CASE("gather_nested_munmap", self->fd);

	kl_gather_case(&c, true);
	um_finish(_metadata, self, &c);
}

/* ------------------------------------------------------------------ */
/* move_pages(2) of a PTE-mapped THP while the device streams into it.  */

/*
 * A THP mapped by 512 PTEs (its PMD split by an mprotect() round trip, the
 * folio kept whole) migrates as one folio: try_to_migrate_one() turns every
 * PTE into a migration entry, the folio is copied subpage by subpage, and
 * only then are the PTEs restored. A device write to a subpage the copy has
 * already passed, through a translation the unmap should have invalidated,
 * lands in the old folio: lost (lost_write, per write: single-pass
 * streams). @one_cpu: the process stays on one CPU from the start, so that
 * try_to_migrate_one() flushes unbatched (else TTU_BATCH_FLUSH).
 */
#define KL_MIG_ROUNDS 24
#define KL_MIG_SECS 70

#define KL_KPF_COMPOUND_TAIL 16
#define KL_KPF_THP 22

/* The /proc/kpageflags word of the page mapped at @p (0 if unknown). */
static inline uint64_t kl_kpageflags(const void *p)
{
	uint64_t e = um_pagemap(p), f = 0;
	int fd;

	if (!(e & UM_PM_PRESENT) || !(e & UM_PM_PFN))
		return 0;
	fd = open("/proc/kpageflags", O_RDONLY);
	if (fd < 0)
		return 0;
	if (pread(fd, &f, 8, (e & UM_PM_PFN) * 8) != 8)
		f = 0;
	close(fd);
	return f;
}

struct kl_mig {
	char *p;
	int target;
	long ret;
	uint64_t moved;
};

static inline int kl_mig_op(void *a)
{
	struct kl_mig *m = a;
	void *pg = m->p;
	int node = m->target, status = -1;

	m->ret = sys_move_pages(1, &pg, &node, &status);
	if (m->ret < 0)
		m->ret = -errno;
	else if (status == node)
		m->moved++;
	return 0;
}

static inline void kl_mig_case(struct um_case *c, bool one_cpu)
{
	struct kl_mig m = { 0 };
	uint64_t h0, overlap = 0, large = 0, recollapsed = 0;
	struct race r;
	double t0;
	int i, node, ret;

	if (one_cpu)
		um_pin();
	if (!um_thp_ok(c))
		return;
	if (access("/sys/devices/system/node/node1", F_OK)) {
		snprintf(c->not_run, sizeof(c->not_run), "fewer than 2 NUMA nodes");
		return;
	}
	c->judged |= UM_LOST | UM_STALE;
	for (i = 0, t0 = now_s(); i < KL_MIG_ROUNDS && now_s() - t0 < KL_MIG_SECS; i++) {
		uint64_t huge = 0;

		m.p = um_thp(0x6d6967 + i);
		UM_REQ(c, m.p, "mmap: %s", strerror(errno));
		r.writes = 0;
		ret = um_prime(c->fd, m.p, PAGE, &huge);
		UM_REQ(c, !ret, "prime: %s", strerror(-ret));
		if (!huge) {
			munmap(m.p, HPAGE);
			m.p = NULL;
			continue;
		}
		/* Split the PMD, keep the folio whole and mapped by PTEs. */
		UM_REQ(c, !mprotect(m.p + HPAGE / 2, PAGE, PROT_READ) &&
			  !mprotect(m.p + HPAGE / 2, PAGE, PROT_READ | PROT_WRITE),
		       "mprotect: %s", strerror(errno));
		large += (kl_kpageflags(m.p + PAGE) & (1ULL << KL_KPF_COMPOUND_TAIL)) != 0;
		/* 4 KiB writable translations of the subpages the stream writes. */
		h0 = dev_stat(c->fd, SECMMU_STAT_HUGE_FILLS);
		ret = dev_prime(c->fd, m.p, UM_WIN);
		UM_REQ(c, !ret, "prime 4 KiB: %s", strerror(-ret));
		if (dev_stat(c->fd, SECMMU_STAT_HUGE_FILLS) != h0) {
			/* khugepaged collapsed it again meanwhile: next round. */
			recollapsed++;
			munmap(m.p, HPAGE);
			m.p = NULL;
			continue;
		}
		node = page_node(m.p);
		UM_REQ(c, node >= 0, "page_node: %s", strerror(-node));
		m.target = !node;
		ret = race_stream(c->fd, m.p, UM_SLOTS, kl_mig_op, &m, &r);
		UM_REQ(c, !ret, "stream: %s", strerror(-ret));
		UM_REQ(c, m.ret >= 0, "move_pages: %s", strerror(-m.ret));
		c->ops++;
		c->lost.ops++;
		c->lost.accesses += r.writes;
		c->lost.violations += r.lost;
		overlap += r.overlapped;
		um_stale(c, m.p, UM_WIN);
		munmap(m.p, HPAGE);
		m.p = NULL;
		if (c->lost.violations || c->stale.violations)
			break;
	}
	UM_REQ(c, m.moved, "move_pages moved no folio in %d rounds", i);
	snprintf(c->note, sizeof(c->note),
		 "%d rounds, %llu folios moved, %llu still large after the split, %llu passes overlapped, %llu rounds skipped (PMD-mapped again)",
		 i, (unsigned long long)m.moved, (unsigned long long)large,
		 (unsigned long long)overlap, (unsigned long long)recollapsed);
out:
	if (m.p)
		munmap(m.p, HPAGE);
}

TEST_F_TIMEOUT(paths, move_pages_ptemapped, 120)
{
	struct um_case c = UM_CASE("move_pages_ptemapped", self->fd);

	kl_mig_case(&c, false);
	um_finish(_metadata, self, &c);
}

TEST_F_TIMEOUT(paths, move_pages_ptemapped_1cpu, 120)
{
	struct um_case c = UM_CASE("move_pages_ptemapped_1cpu", self->fd);

	kl_mig_case(&c, true);
	um_finish(_metadata, self, &c);
}

/* ------------------------------------------------------------------ */
/* mremap(2) racing a hole punch of the moved pages (CVE-2018-18281).   */

/*
 * A shared memfd mapping of 4 KiB pages is moved by mremap() (to a
 * PMD-misaligned address: PTE by PTE) while the device streams into the
 * first pages of the OLD range through its writable translations, and
 * another thread punches those pages out of the file at an offset into the
 * move (10-90 % of a measured mremap; the race's offset, not a wait). A
 * punched page already moved is unmapped at the new address only (a short,
 * ranged flush) and freed; mremap() must have invalidated the device's
 * old-address translation when it moved the PTE, so no device access may
 * reach the freed page (freed_page). Afterwards a device write to the old
 * range must fault (write_after_revoke) and the device must read what the
 * CPU writes at the new one (stale_read).
 */
#define KL_MREMAP_PAGES 16384UL
/* Pages punched (at most 33: a longer flush is a full one, which would
 * reach the device's old translations too). */
#define KL_MREMAP_PUNCH 16UL
#define KL_MREMAP_ROUNDS 24
#define KL_MREMAP_SECS 70

struct kl_trunc {
	int mfd;
	size_t len;
	int go[2], ack[2];	/* main -> thread: a delay (or stop); thread -> main */
	volatile uint64_t truncs;
	volatile double t0, t1;
};

/* Punches the first pages out of the file @delay seconds after each go (it
 * sleeps, leaving the CPU to the device's engine: the delay is the race's
 * offset). */
static void *kl_trunc_fn(void *a)
{
	struct kl_trunc *t = a;
	double delay;
	struct timespec ts;

	while (read(t->go[0], &delay, sizeof(delay)) == sizeof(delay) && delay >= 0) {
		ts.tv_sec = (time_t)delay;
		ts.tv_nsec = (long)((delay - ts.tv_sec) * 1e9);
		nanosleep(&ts, NULL);
		t->t0 = now_s();
		if (!fallocate(t->mfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0,
			       KL_MREMAP_PUNCH * PAGE))
			t->truncs++;
		t->t1 = now_s();
		if (write(t->ack[1], "a", 1) != 1)
			break;
	}
	return NULL;
}

static inline void kl_mremap_case(struct um_case *c)
{
	const size_t len = KL_MREMAP_PAGES * PAGE;
	struct kl_trunc t = { .mfd = -1, .len = len, .go = { -1, -1 }, .ack = { -1, -1 } };
	struct secmmu_stream s = { .stride = 8, .slots = KL_MREMAP_PUNCH * PAGE / 8 };
	char *old = NULL, *res = NULL, *nw;
	uint64_t w0, wa, wb, during = 0, punched = 0, freed0 = dev_stat(c->fd, SECMMU_STAT_FREED_PAGE_ACCESSES);
	double t0, dur = 0, d, te;
	bool started = false;
	pthread_t th;
	char ch;
	int i, r;

	t.mfd = memfd_create("kl_mremap", MFD_CLOEXEC);
	UM_REQ(c, t.mfd >= 0, "memfd_create: %s", strerror(errno));
	UM_REQ(c, !pipe2(t.go, O_CLOEXEC) && !pipe2(t.ack, O_CLOEXEC), "pipe: %s", strerror(errno));
	UM_REQ(c, !pthread_create(&th, NULL, kl_trunc_fn, &t), "pthread_create");
	started = true;
	for (i = 0, t0 = now_s(); i < KL_MREMAP_ROUNDS && now_s() - t0 < KL_MREMAP_SECS; i++) {
		UM_REQ(c, !ftruncate(t.mfd, 0) && !ftruncate(t.mfd, len), "ftruncate: %s",
		       strerror(errno));
		old = um_map_aligned(len, MAP_SHARED, t.mfd);
		UM_REQ(c, old, "mmap: %s", strerror(errno));
		res = mmap(NULL, len + 2 * PAGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		UM_REQ(c, res != MAP_FAILED, "mmap: %s", strerror(errno));
		nw = res + PAGE;
		if (!(((uintptr_t)nw) & (HPAGE - 1)))
			nw += PAGE;
		um_fill(old, len, 0x6d72 + i);
		r = um_prime(c->fd, old, KL_MREMAP_PUNCH * PAGE, NULL);
		UM_REQ(c, !r, "prime: %s", strerror(-r));
		/* The device streams into the old range, round-robin. */
		s.addr = (uintptr_t)old;
		w0 = dev_stat(c->fd, SECMMU_STAT_STREAM_WRITES);
		UM_REQ(c, !ioctl(c->fd, SECMMU_IOCTL_STREAM_START, &s), "stream: %s",
		       strerror(errno));
		wait_dev_stat(c->fd, SECMMU_STAT_STREAM_WRITES, w0 + 1);
		/* Round 0 measures the move; later rounds punch at 10-90 %
		 * of it. */
		d = i ? dur * (0.1 + 0.8 * ((i - 1) % 9) / 8.0) : 0;
		if (i && write(t.go[1], &d, sizeof(d)) != sizeof(d))
			um_fail(c, "pipe: %s", strerror(errno));
		d = now_s();
		wa = dev_stat(c->fd, SECMMU_STAT_STREAM_WRITES);
		r = mremap(old, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, nw) == MAP_FAILED;
		wb = dev_stat(c->fd, SECMMU_STAT_STREAM_WRITES);
		te = now_s() - d;
		if (!i)
			dur = te;
		if (i && read(t.ack[0], &ch, 1) != 1)
			um_fail(c, "pipe: %s", strerror(errno));
		during += wb - wa;
		punched += t.t0 > d && t.t1 < d + te;
		ioctl(c->fd, SECMMU_IOCTL_STREAM_STOP);
		c->ops++;
		UM_REQ(c, !r, "mremap: %s", strerror(errno));
		/* The old range is gone; the new one holds the file. */
		um_revoked(c, old, KL_MREMAP_PUNCH * PAGE);
		um_stale(c, nw, KL_MREMAP_PUNCH * PAGE);
		munmap(res, len + 2 * PAGE);
		res = NULL;
		old = NULL;
		if (dev_stat(c->fd, SECMMU_STAT_FREED_PAGE_ACCESSES) != freed0 ||
		    c->revoke.violations || c->stale.violations) {
			i++;
			break;
		}
	}
	snprintf(c->note, sizeof(c->note),
		 "%d rounds, %llu punches (%llu inside the mremap), %llu stream writes during it, mremap %.1f ms",
		 i, (unsigned long long)t.truncs, (unsigned long long)punched,
		 (unsigned long long)during, dur * 1e3);
out:
	if (started) {
		d = -1;
		if (write(t.go[1], &d, sizeof(d)) == sizeof(d))
			pthread_join(th, NULL);
	}
	for (i = 0; i < 2; i++) {
		if (t.go[i] >= 0)
			close(t.go[i]);
		if (t.ack[i] >= 0)
			close(t.ack[i]);
	}
	if (res && res != MAP_FAILED)
		munmap(res, len + 2 * PAGE);
	if (old)
		munmap(old, len);
	if (t.mfd >= 0)
		close(t.mfd);
}

TEST_F_TIMEOUT(paths, mremap_punch_race, 120)
{
	struct um_case c = UM_CASE("mremap_punch_race", self->fd);

	kl_mremap_case(&c);
	um_finish(_metadata, self, &c);
}

/* ------------------------------------------------------------------ */
/* MADV_PAGEOUT of a PTE-mapped THP, swapped out whole.                 */

/*
 * A THP whose PMD was split (an mprotect() round trip: the folio stays
 * whole, mapped by 512 PTEs) while the device holds a 4 KiB translation of
 * every subpage; MADV_PAGEOUT swaps the folio out to zram in one
 * try_to_unmap() call, which must invalidate every one of those
 * translations before the folio is freed. Then the CPU writes a token into
 * each page (swap-in) and the device must read it (stale_read; freed_page).
 */
#define KL_OUT_ROUNDS 6
#define KL_OUT_TRIES 16

/*
 * One round; false if it could not set the stage and proved nothing (no
 * THP free, khugepaged collapsed the split folio again before the device
 * took its 4 KiB translations, reclaim swapped nothing out: all seen under
 * a slow debug kernel): the caller tries again, bounded.
 */
static inline bool kl_pageout_round(struct um_case *c, uint64_t seed, uint64_t *large,
				    uint64_t *out)
{
	uint64_t huge = 0, h0, o;
	char *p = um_thp(seed);
	bool done = false;
	int r;

	UM_REQ(c, p, "mmap: %s", strerror(errno));
	r = um_prime(c->fd, p, PAGE, &huge);
	UM_REQ(c, !r, "prime: %s", strerror(-r));
	if (!huge)
		goto out;
	UM_REQ(c, !mprotect(p + HPAGE / 2, PAGE, PROT_READ) &&
		  !mprotect(p + HPAGE / 2, PAGE, PROT_READ | PROT_WRITE),
	       "mprotect: %s", strerror(errno));
	*large += (kl_kpageflags(p + PAGE) & (1ULL << KL_KPF_COMPOUND_TAIL)) != 0;
	h0 = dev_stat(c->fd, SECMMU_STAT_HUGE_FILLS);
	r = dev_prime(c->fd, p, HPAGE);
	UM_REQ(c, !r, "prime 4 KiB: %s", strerror(-r));
	if (dev_stat(c->fd, SECMMU_STAT_HUGE_FILLS) != h0)
		goto out;
	o = um_vmstat("pswpout");
	r = madvise(p, HPAGE, MADV_PAGEOUT);
	c->ops++;
	UM_REQ(c, !r, "MADV_PAGEOUT: %s", strerror(errno));
	if (!um_swapped(p, HPAGE))
		goto out;
	*out += um_vmstat("pswpout") - o;
	um_stale(c, p, HPAGE);
	done = true;
out:
	if (p)
		munmap(p, HPAGE);
	return done;
}

TEST_F_TIMEOUT(paths, pageout_ptemapped, 120)
{
	struct um_case c = UM_CASE("pageout_ptemapped", self->fd);
	struct um_swap s = { .on = false };
	struct um_guard g = { .pid = -1 };
	uint64_t large = 0, out = 0;
	char why[256] = "";
	int i, done = 0;

	um_pin();
	if (!um_thp_ok(&c))
		goto out;
	if (um_swap_on(&s, why, sizeof(why))) {
		um_swap_off(&s);
		um_fail(&c, "zram swap: %s", why);
		goto out;
	}
	um_guard_start(&g, um_swap_off, &s);
	for (i = 0; i < KL_OUT_TRIES && done < KL_OUT_ROUNDS && !c.err[0] &&
	     !c.stale.violations; i++)
		done += kl_pageout_round(&c, 0x6f7574 + i, &large, &out);
	snprintf(c.note, sizeof(c.note),
		 "%d rounds swapped a split THP out of %d tried, %llu folios still large after the split, %llu pages swapped out",
		 done, i, (unsigned long long)large, (unsigned long long)out);
	if (!done && !c.stale.violations)
		um_fail(&c, "no round swapped a split THP out in %d tries", i);
	um_swap_off(&s);
	um_guard_stop(&g);
out:
	um_finish(_metadata, self, &c);
}

/* ------------------------------------------------------------------ */
/* khugepaged retracting the page table of a PTE-mapped shmem THP.       */

/*
 * A shmem THP mapped by PTEs (faulted while an mprotect() split the VMA),
 * the device holding a 4 KiB writable translation of every subpage.
 * khugepaged (not MADV_COLLAPSE: khugepaged installs no PMD) finds the
 * PTE-mapped THP, clears the PTEs and frees the page table
 * (try_collapse_pte_mapped_thp()): the device's translations must go with
 * them, since nothing maps the range afterwards and a hole punch then frees
 * the THP without any flush. After the punch a device write must land
 * where the CPU reads (write_after_revoke; freed_page).
 */
#define KL_KHP "/sys/kernel/mm/transparent_hugepage/"
#define KL_KHP_SECS 60

static struct um_knob kl_khp_knobs[3];

static inline void kl_khp_restore(void *a)
{
	int i;

	for (i = 2; i >= 0; i--)
		um_knob_restore(&kl_khp_knobs[i]);
}

TEST_F_TIMEOUT(paths, khugepaged_retract, 120)
{
	struct um_case c = UM_CASE("khugepaged_retract", self->fd);
	struct um_guard g = { .pid = -1 };
	int mfd = -1, r;
	char *p = NULL;
	uint64_t h0, seen = 0;
	double t0 = 0;
	size_t off;

	if (access(KL_KHP "shmem_enabled", W_OK) ||
	    access(KL_KHP "khugepaged/scan_sleep_millisecs", W_OK)) {
		snprintf(c.not_run, sizeof(c.not_run), "no shmem THP or khugepaged knobs");
		goto done;
	}
	um_knob_save(&kl_khp_knobs[0], KL_KHP "shmem_enabled");
	um_knob_save(&kl_khp_knobs[1], KL_KHP "khugepaged/scan_sleep_millisecs");
	um_knob_save(&kl_khp_knobs[2], KL_KHP "khugepaged/pages_to_scan");
	um_guard_start(&g, kl_khp_restore, NULL);
	UM_REQ(&c, !set_knob(KL_KHP "shmem_enabled", "advise"), "shmem_enabled: advise");
	mfd = memfd_create("kl_khugepaged", MFD_CLOEXEC);
	UM_REQ(&c, mfd >= 0 && !ftruncate(mfd, HPAGE), "memfd: %s", strerror(errno));
	p = um_map_aligned(HPAGE, MAP_SHARED, mfd);
	UM_REQ(&c, p, "mmap: %s", strerror(errno));
	UM_REQ(&c, !madvise(p, HPAGE, MADV_HUGEPAGE), "MADV_HUGEPAGE: %s", strerror(errno));
	p[0] = 1;	/* a shmem THP, PMD-mapped */
	if (!(kl_kpageflags(p + PAGE) & (1ULL << KL_KPF_COMPOUND_TAIL))) {
		snprintf(c.not_run, sizeof(c.not_run), "no shmem THP for a MADV_HUGEPAGE memfd");
		goto out;
	}
	/*
	 * khugepaged, at its default pace, could map the THP by its PMD again
	 * before the device primes: keep it off this VMA until then.
	 */
	UM_REQ(&c, !madvise(p, HPAGE, MADV_NOHUGEPAGE), "MADV_NOHUGEPAGE: %s", strerror(errno));
	/* The VMA split: the PMD goes, the pages refault by PTEs. */
	UM_REQ(&c, !mprotect(p + HPAGE / 2, PAGE, PROT_READ), "mprotect: %s", strerror(errno));
	for (off = 0; off < HPAGE; off += PAGE)
		(void)*(volatile char *)(p + off);
	UM_REQ(&c, !mprotect(p + HPAGE / 2, PAGE, PROT_READ | PROT_WRITE), "mprotect: %s",
	       strerror(errno));
	um_fill(p, HPAGE, 0x6b68);
	h0 = dev_stat(c.fd, SECMMU_STAT_HUGE_FILLS);
	r = dev_prime(c.fd, p, HPAGE);
	UM_REQ(&c, !r, "prime: %s", strerror(-r));
	UM_REQ(&c, dev_stat(c.fd, SECMMU_STAT_HUGE_FILLS) == h0,
	       "the device took a 2 MiB translation: the THP is still PMD-mapped");
	/* khugepaged, fast: wait (bounded) until our PTEs are gone. */
	UM_REQ(&c, !madvise(p, HPAGE, MADV_HUGEPAGE), "MADV_HUGEPAGE: %s", strerror(errno));
	set_knob(KL_KHP "khugepaged/pages_to_scan", "4096");
	set_knob(KL_KHP "khugepaged/scan_sleep_millisecs", "0");
	for (t0 = now_s(); now_s() - t0 < KL_KHP_SECS; usleep(20000))
		if (!(um_pagemap(p) & UM_PM_PRESENT)) {
			seen = 1;
			break;
		}
	kl_khp_restore(NULL);
	c.ops++;
	UM_REQ(&c, seen, "khugepaged did not retract the page table in %d s", KL_KHP_SECS);
	/* Nothing maps the range: the punch frees the THP, flushing nothing. */
	UM_REQ(&c, !fallocate(mfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, HPAGE),
	       "punch: %s", strerror(errno));
	c.ops++;
	um_dropped(&c, p, HPAGE);
	snprintf(c.note, sizeof(c.note), "khugepaged retracted the page table in %.1f s",
		 now_s() - t0);
out:
	kl_khp_restore(NULL);
	um_guard_stop(&g);
	if (p)
		munmap(p, HPAGE);
	if (mfd >= 0)
		close(mfd);
done:
	um_finish(_metadata, self, &c);
}

/* ------------------------------------------------------------------ */
/* Device memory migration (migrate_vma(), lib/test_hmm) racing a zap.  */

/*
 * migrate_vma_setup() turns each present PTE of the range into a migration
 * entry and must flush the TLBs before it drops the PTL; an anonymous page
 * that is not exclusive to the process gets no flush of its own there (an
 * exclusive one does: ptep_clear_flush()). So the pages here are shared
 * with a child (fork: read-only in both, not exclusive), and referenced by
 * a pipe (vmsplice()), so that lib/test_hmm's migration to its device
 * memory (HMM_DMIRROR_MIGRATE_TO_DEV) always gives up after unmapping them
 * and puts them back: every call collects them again. Before each call the
 * device reads every page (read-only translations).
 *
 * A SCHED_FIFO zapper on the migrator's CPU wakes at random moments. A
 * wakeup while the migrator holds the PTL preempts it the moment it drops
 * it; when the migrator's stack shows it in migrate_vma_collect_pmd(), the
 * zapper zaps the pages (MADV_DONTNEED: nothing to flush, the PTEs are
 * migration entries), the CPU writes a fresh token into each (a new page)
 * and the device must read the token back (stale_read). A lower-priority
 * SCHED_FIFO blocker spins on that CPU while the zapper waits for the
 * device, so that the migrator cannot run meanwhile. Then the pages are
 * shared again (a new child) and the race goes on.
 */
#define KL_HMM_PAGES	16
#define KL_HMM_SECS	45
#define KL_HMM_WANT	200	/* windows that end the case early */
#define KL_HMM_DEV	"/dev/hmm_dmirror0"

/* lib/test_hmm_uapi.h */
struct kl_hmm_cmd {
	uint64_t addr, ptr, npages, cpages, faults;
};
#define KL_HMM_MIGRATE_TO_DEV _IOWR('H', 0x02, struct kl_hmm_cmd)

struct kl_hmm {
	char *p;		/* KL_HMM_PAGES pages, then one more kept mapped */
	char *bounce;		/* test_hmm copies what it moved here */
	int hfd, fd, pipe[2];
	pid_t child;		/* shares the pages */
	volatile pid_t mig_tid;
	volatile int stop, armed, block;
	uint64_t migrations, refused, wakeups, windows, gens;
	int err;
	char why[128];
	struct tally *stale;
};

static inline long kl_futex(volatile int *addr, int op, int val)
{
	return syscall(SYS_futex, addr, op, val, NULL, NULL, 0);
}

/* Pins the calling thread to @cpu and, if @prio, makes it SCHED_FIFO. */
static inline int kl_pin_rt(int cpu, int prio)
{
	struct sched_param sp = { .sched_priority = prio };
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	if (sched_setaffinity(0, sizeof(set), &set))
		return -errno;
	if (prio && sched_setscheduler(0, SCHED_FIFO, &sp))
		return -errno;
	return 0;
}

static inline void kl_hmm_fail(struct kl_hmm *h, const char *what, int err)
{
	if (!h->err) {
		snprintf(h->why, sizeof(h->why), "%s: %s", what, strerror(err));
		h->err = err;
	}
	h->stop = 1;
}

static void *kl_hmm_migrator(void *a)
{
	struct kl_hmm *h = a;
	struct kl_hmm_cmd cmd;
	int i;

	if (kl_pin_rt(0, 0))
		kl_hmm_fail(h, "migrator: affinity", errno);
	h->mig_tid = gettid();
	while (!h->stop) {
		if (!h->armed) {
			usleep(100);
			continue;
		}
		for (i = 0; i < KL_HMM_PAGES; i++) {
			uint64_t v;

			if (dev_read(h->fd, h->p + i * PAGE, 8, &v))
				kl_hmm_fail(h, "device read", EIO);
		}
		cmd = (struct kl_hmm_cmd){ .addr = (uintptr_t)h->p, .npages = KL_HMM_PAGES,
					   .ptr = (uintptr_t)h->bounce };
		/* Gives up on pages it could not move: counted, expected. */
		if (ioctl(h->hfd, KL_HMM_MIGRATE_TO_DEV, &cmd))
			h->refused++;
		else
			h->migrations++;
	}
	return NULL;
}

/* Spins while the zapper waits, so that the migrator stays off the CPU. */
static void *kl_hmm_blocker(void *a)
{
	struct kl_hmm *h = a;
	double t0;

	if (kl_pin_rt(0, 5))
		kl_hmm_fail(h, "blocker: SCHED_FIFO", errno);
	while (!h->stop) {
		kl_futex(&h->block, FUTEX_WAIT, 0);
		for (t0 = now_s(); h->block && now_s() - t0 < 0.2;)
			;
	}
	return NULL;
}

/* Whether the migrator's kernel stack is in migrate_vma_collect_pmd(). */
static inline bool kl_hmm_in_collect(struct kl_hmm *h)
{
	char path[64], buf[2048];

	snprintf(path, sizeof(path), "/proc/self/task/%d/stack", (int)h->mig_tid);
	return read_file(path, buf, sizeof(buf)) > 0 && strstr(buf, "migrate_vma_collect_pmd");
}

static void *kl_hmm_zapper(void *a)
{
	struct kl_hmm *h = a;
	unsigned int seed = getpid();
	struct timespec ts;

	if (kl_pin_rt(0, 10))
		kl_hmm_fail(h, "zapper: SCHED_FIFO", errno);
	while (!h->stop && h->windows < KL_HMM_WANT && !h->stale->violations) {
		ts = (struct timespec){ .tv_nsec = 20000 + rand_r(&seed) % 400000 };
		clock_nanosleep(CLOCK_MONOTONIC, 0, &ts, NULL);
		h->wakeups++;
		if (!h->armed || !h->mig_tid || !kl_hmm_in_collect(h))
			continue;
		h->windows++;
		h->block = 1;
		kl_futex(&h->block, FUTEX_WAKE, 1);
		if (madvise(h->p, KL_HMM_PAGES * PAGE, MADV_DONTNEED))
			kl_hmm_fail(h, "MADV_DONTNEED", errno);
		h->stale->ops++;
		stale_read_check(h->fd, h->p, KL_HMM_PAGES * PAGE, 300 + h->gens, h->stale);
		h->block = 0;
		h->armed = 0;
	}
	h->stop = 1;
	return NULL;
}

/* Shares the pages again: a new child, the pipe's references. */
static inline int kl_hmm_arm(struct kl_hmm *h)
{
	struct iovec iov[KL_HMM_PAGES];
	char drain[4096];
	int i;

	if (h->child > 0) {
		kill(h->child, SIGKILL);
		waitpid(h->child, NULL, 0);
		h->child = 0;
	}
	while (read(h->pipe[0], drain, sizeof(drain)) > 0)
		;
	if (madvise(h->p, KL_HMM_PAGES * PAGE, MADV_DONTNEED))
		return -errno;
	for (i = 0; i < KL_HMM_PAGES; i++)
		*(volatile uint64_t *)(h->p + i * PAGE) = token(310 + h->gens, i);
	h->child = fork();
	if (h->child < 0)
		return -errno;
	if (h->child == 0) {
		for (;;)
			pause();
	}
	for (i = 0; i < KL_HMM_PAGES; i++)
		iov[i] = (struct iovec){ .iov_base = h->p + i * PAGE, .iov_len = PAGE };
	if (vmsplice(h->pipe[1], iov, KL_HMM_PAGES, 0) != KL_HMM_PAGES * PAGE)
		return -EIO;
	h->gens++;
	h->armed = 1;
	return 0;
}

static struct um_knob kl_hmm_knob;

static inline void kl_hmm_restore(void *a)
{
	um_knob_restore(&kl_hmm_knob);
}

/* Loads lib/test_hmm (SECMMU_TEST_HMM names the kernel's module) unless
 * its device is there; 0, 1 if this kernel has none, or -1. */
static inline int kl_hmm_load(struct um_case *c)
{
	const char *ko = getenv("SECMMU_TEST_HMM");
	char cmd[512];

	if (!access(KL_HMM_DEV, F_OK))
		return 0;
	if (!ko || !*ko) {
		snprintf(c->not_run, sizeof(c->not_run),
			 "no lib/test_hmm.ko for this kernel (CONFIG_TEST_HMM=m)");
		return 1;
	}
	snprintf(cmd, sizeof(cmd), "insmod '%s'", ko);
	if (system(cmd) || access(KL_HMM_DEV, F_OK)) {
		um_fail(c, "%s: no %s after it", cmd, KL_HMM_DEV);
		return -1;
	}
	return 0;
}

TEST_F_TIMEOUT(paths, migrate_vma_dontneed, 120)
{
	struct um_case c = UM_CASE("migrate_vma_dontneed", self->fd);
	struct kl_hmm h = { .fd = self->fd, .hfd = -1, .pipe = { -1, -1 }, .stale = &c.stale };
	struct um_guard g = { .pid = -1 };
	pthread_t mt = 0, zt = 0, bt = 0;
	double t0;
	int r;

	if (kl_hmm_load(&c))
		goto out;
	h.hfd = open(KL_HMM_DEV, O_RDWR);
	UM_REQ(&c, h.hfd >= 0, "%s: %s", KL_HMM_DEV, strerror(errno));
	UM_REQ(&c, !pipe2(h.pipe, O_NONBLOCK), "pipe: %s", strerror(errno));
	fcntl(h.pipe[1], F_SETPIPE_SZ, 2 * KL_HMM_PAGES * PAGE);
	um_knob_save(&kl_hmm_knob, MIG_ENGINE_CPUS);
	um_guard_start(&g, kl_hmm_restore, NULL);
	/* The device and this thread on CPU 1; the migrator, the zapper
	 * and the blocker on CPU 0. */
	UM_REQ(&c, !set_knob(MIG_ENGINE_CPUS, "2"), "engine cpumask: %s", strerror(errno));
	UM_REQ(&c, !kl_pin_rt(1, 0), "affinity: %s", strerror(errno));
	h.p = mig_anon((KL_HMM_PAGES + 1) * PAGE, false);
	h.bounce = malloc(KL_HMM_PAGES * PAGE);
	UM_REQ(&c, h.p && h.bounce, "mmap: %s", strerror(errno));
	c.judged |= UM_STALE;
	r = kl_hmm_arm(&h);
	UM_REQ(&c, !r, "sharing the pages: %s", strerror(-r));
	UM_REQ(&c, !pthread_create(&mt, NULL, kl_hmm_migrator, &h) &&
		  !pthread_create(&bt, NULL, kl_hmm_blocker, &h) &&
		  !pthread_create(&zt, NULL, kl_hmm_zapper, &h), "pthread_create");
	for (t0 = now_s(); !h.stop && now_s() - t0 < KL_HMM_SECS;) {
		if (h.armed) {
			usleep(1000);
			continue;
		}
		r = kl_hmm_arm(&h);
		if (r)
			kl_hmm_fail(&h, "sharing the pages", -r);
	}
out:
	h.stop = 1;
	h.block = 0;
	kl_futex(&h.block, FUTEX_WAKE, 1);
	if (zt)
		pthread_join(zt, NULL);
	kl_futex(&h.block, FUTEX_WAKE, 1);
	if (bt)
		pthread_join(bt, NULL);
	if (mt)
		pthread_join(mt, NULL);
	if (h.child > 0) {
		kill(h.child, SIGKILL);
		waitpid(h.child, NULL, 0);
	}
	if (!c.err[0] && h.err)
		um_fail(&c, "%s", h.why);
	if (!c.err[0] && !c.not_run[0] && !h.windows)
		um_fail(&c, "in %llu wakeups the zapper never found the migrator preempted in migrate_vma_collect_pmd()",
			(unsigned long long)h.wakeups);
	c.ops = h.migrations + h.refused + h.gens;
	snprintf(c.note, sizeof(c.note),
		 "%llu test_hmm migrations (%llu gave up), %llu zapper wakeups, %llu in migrate_vma_collect_pmd(), %llu sharings",
		 (unsigned long long)h.migrations, (unsigned long long)h.refused,
		 (unsigned long long)h.wakeups, (unsigned long long)h.windows,
		 (unsigned long long)h.gens);
	if (h.hfd >= 0)
		close(h.hfd);
	if (h.pipe[0] >= 0)
		close(h.pipe[0]);
	if (h.pipe[1] >= 0)
		close(h.pipe[1]);
	if (h.p)
		munmap(h.p, (KL_HMM_PAGES + 1) * PAGE);
	free(h.bounce);
	um_knob_restore(&kl_hmm_knob);
	um_guard_stop(&g);
	um_finish(_metadata, self, &c);
}

/* ------------------------------------------------------------------ */
/* NUMA balancing migrating a THP the device faulted back in.           */

/*
 * NUMA balancing moves a THP in the hinting fault of a CPU on the other
 * node: do_huge_pmd_numa_page() isolates it and drops the PTL with the PMD
 * still PROT_NONE, then migrate_pages() unmaps it (set_pmd_migration_entry(),
 * which must invalidate the secondary TLBs), copies it, maps the copy. A
 * device access in between (here the device works on the memory's node)
 * faults the PMD back in (NUMA_NO_NODE: nothing to move from its side) and
 * takes a translation, which the unmap must then invalidate.
 *
 * Made to happen: a reader on the other node's CPU reads the THP in a loop;
 * a SCHED_FIFO nudger on the reader's CPU wakes at random moments and, when
 * the reader's stack shows it inside do_huge_pmd_numa_page() and not yet at
 * the unmap, starts a single-pass stream over the THP and keeps the reader
 * off its CPU until the device has written through a translation (it
 * faulted the PMD back in); then the reader goes on and migrates the THP
 * under the stream. Every write of the pass must be in the THP's new copy
 * (lost_write). After each move the reader and the device swap nodes.
 */
#define KL_NUMA_SECS	120
#define KL_NUMA_ROUND_S	5	/* bound on one round */
#define KL_NUMA_WANT	3	/* moves under the device that end the case */
#define KL_NUMA_THPS	16	/* THPs per round: more hinting faults */

struct kl_numa {
	char *volatile p;	/* the THP while a round runs, else NULL */
	int fd, target;
	volatile pid_t reader_tid, nudger_tid;
	volatile int stop, acted, reading;
	volatile uint64_t loops;	/* the reader's passes over the THPs */
	volatile int cur;		/* the THP the reader reads now */
	int faulting;			/* the THP it faulted on, when acted */
	bool faulted_in;	/* the device wrote before the reader went on */
	uint64_t wakeups, in_fault, w_start, f_start;
	uint64_t faulted_rounds, moved_rounds;	/* of the rounds it acted in */
	int err;
	char why[128];
};

static inline void kl_numa_fail(struct kl_numa *n, const char *what, int err)
{
	if (!n->err) {
		snprintf(n->why, sizeof(n->why), "%s: %s", what, strerror(err));
		n->err = err;
	}
	n->stop = 1;
}

/* Pins thread @tid (0: the caller) to the first CPU of @node. */
static inline int kl_pin_node(pid_t tid, int node)
{
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(mig_node_cpu(node), &set);
	return sched_setaffinity(tid, sizeof(set), &set) ? -errno : 0;
}

static void *kl_numa_reader(void *a)
{
	struct kl_numa *n = a;
	char *p;

	n->reader_tid = gettid();
	while (!n->stop) {
		p = n->p;
		n->reading = p != NULL;
		if (p) {
			size_t i;

			for (i = 0; i < KL_NUMA_THPS; i++) {
				n->cur = i;
				(void)*(volatile uint64_t *)(p + i * HPAGE);
			}
			n->loops++;
		} else {
			usleep(100);
		}
	}
	n->reading = 0;
	return NULL;
}

/* Whether the reader is inside a NUMA hinting fault on a THP, before the
 * unmap of its migration (none of the later steps on its stack). */
static inline bool kl_numa_in_fault(struct kl_numa *n)
{
	static const char *const past[] = {
		"try_to_migrate", "migrate_folio_move", "move_to_new_folio",
		"folio_mc_copy", "remove_migration",
	};
	char path[64], buf[2048];
	size_t i;

	snprintf(path, sizeof(path), "/proc/self/task/%d/stack", (int)n->reader_tid);
	if (read_file(path, buf, sizeof(buf)) <= 0 || !strstr(buf, "do_huge_pmd_numa_page"))
		return false;
	for (i = 0; i < sizeof(past) / sizeof(past[0]); i++)
		if (strstr(buf, past[i]))
			return false;
	return true;
}

/* Starts the pass over the THP the reader faults on and holds the CPU
 * until the device wrote through a translation (50 ms at most). */
static inline void kl_numa_nudge(struct kl_numa *n)
{
	struct secmmu_stream s = {
		.stride = 8, .slots = MIG_SLOTS,
		.flags = SECMMU_STREAM_ONCE,
	};
	double t0;

	n->faulting = n->cur;
	s.addr = (uintptr_t)(n->p + n->faulting * HPAGE);
	n->w_start = dev_stat(n->fd, SECMMU_STAT_STREAM_WRITES);
	n->f_start = dev_stat(n->fd, SECMMU_STAT_DEVICE_FAULTS);
	if (ioctl(n->fd, SECMMU_IOCTL_STREAM_START, &s)) {
		kl_numa_fail(n, "stream", errno);
		return;
	}
	n->faulted_in = false;
	for (t0 = now_s(); !n->faulted_in && now_s() - t0 < 0.05;)
		n->faulted_in = dev_stat(n->fd, SECMMU_STAT_STREAM_WRITES) - n->w_start >= 64;
	n->acted = 1;
}

static void *kl_numa_nudger(void *a)
{
	struct sched_param sp = { .sched_priority = 10 };
	struct kl_numa *n = a;
	unsigned int seed = getpid();
	struct timespec ts;

	uint64_t last = 0, now;

	n->nudger_tid = gettid();
	if (sched_setscheduler(0, SCHED_FIFO, &sp))
		kl_numa_fail(n, "nudger: SCHED_FIFO", errno);
	while (!n->stop) {
		ts = (struct timespec){ .tv_nsec = 10000 + rand_r(&seed) % 40000 };
		clock_nanosleep(CLOCK_MONOTONIC, 0, &ts, NULL);
		n->wakeups++;
		/* The stack only when the reader made no read since the last
		 * wakeup: it is in the kernel (reading the stack is slow). */
		now = n->loops;
		if (now != last) {
			last = now;
			continue;
		}
		if (n->acted || !n->p || !kl_numa_in_fault(n))
			continue;
		n->in_fault++;
		kl_numa_nudge(n);
	}
	return NULL;
}

/* KL_NUMA_THPS THPs on node @node, PMD-mapped; NULL if none could be had. */
static inline char *kl_numa_thps(int node)
{
	const size_t len = KL_NUMA_THPS * HPAGE;
	unsigned long mask = 1UL << node;
	char *p = mig_reserve(len);
	size_t off;

	if (!p || mmap(p, len, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) != p ||
	    madvise(p, len, MADV_HUGEPAGE) ||
	    syscall(SYS_mbind, p, len, MIG_MPOL_BIND, &mask, 64UL, 0U))
		return NULL;
	for (off = 0; off < len; off += PAGE)
		*(uint64_t *)(p + off) = token(8, off / PAGE);
	/* NUMA balancing may move them: the default policy again. */
	syscall(SYS_mbind, p, len, 0, NULL, 0UL, 0U);
	for (off = 0; off < len; off += HPAGE)
		if (!mig_pmd_mapped(p + off, false) || page_node(p + off) != node) {
			munmap(p, len);
			return NULL;
		}
	return p;
}

/* How many of the THPs at @p are on @node. */
static inline int kl_numa_on(char *p, int node)
{
	int i, k = 0;

	for (i = 0; i < KL_NUMA_THPS; i++)
		k += page_node(p + i * HPAGE) == node;
	return k;
}

/*
 * One round on fresh THPs on node 0: the reader and the nudger on node 1,
 * the device and this thread on node 0; until the nudger acted and the pass
 * ended, every THP moved without it, or KL_NUMA_ROUND_S. Adds to c->lost;
 * returns whether THPs moved under a pass whose device faulted a PMD back
 * in within the hinting fault.
 */
static inline bool kl_numa_round(struct um_case *c, struct kl_numa *n)
{
	struct secmmu_verify ver;
	char *p = NULL;
	bool moved;
	double t0;
	int tries;

	for (tries = 0; tries < 3 && !p; tries++) {
		p = kl_numa_thps(0);
		if (!p)	/* no huge page free: compact and try again */
			set_knob("/proc/sys/vm/compact_memory", "1");
	}
	if (!p) {
		um_fail(c, "no THPs to be had on node 0");
		return false;
	}
	n->target = 1;
	n->acted = 0;
	n->p = p;
	for (t0 = now_s(); !n->acted && !n->stop && now_s() - t0 < KL_NUMA_ROUND_S;) {
		usleep(5000);
		if (n->acted)
			break;
		if (kl_numa_on(p, n->target) == KL_NUMA_THPS)
			break;	/* all moved unseen: the next round */
	}
	n->p = NULL;
	while (n->reading)
		;
	if (n->acted) {
		wait_stream(n->fd, n->w_start, MIG_SLOTS, n->f_start);
		if (ioctl(n->fd, SECMMU_IOCTL_STREAM_VERIFY, &ver)) {
			um_fail(c, "stream verify: %s", strerror(errno));
		} else {
			c->lost.ops++;
			c->lost.accesses += ver.writes;
			c->lost.violations += ver.lost_writes;
		}
	}
	moved = n->acted && page_node(p + n->faulting * HPAGE) == n->target;
	munmap(p, KL_NUMA_THPS * HPAGE);
	if (!n->acted)
		return false;
	n->faulted_rounds += n->faulted_in;
	n->moved_rounds += moved;
	return n->faulted_in && moved;
}

TEST_F_TIMEOUT(paths, numa_thp_refault, 180)
{
	struct um_case c = UM_CASE("numa_thp_refault", self->fd);
	struct kl_numa n = { .fd = self->fd };
	pthread_t rt = 0, nt = 0;
	long long vm0 = mig_numa_migrated();
	uint64_t moved = 0, rounds = 0;
	char mask[16];
	double t0;

	if (access("/sys/devices/system/node/node1", F_OK)) {
		snprintf(c.not_run, sizeof(c.not_run), "fewer than 2 NUMA nodes");
		goto out;
	}
	if (access("/proc/sys/kernel/numa_balancing", F_OK)) {
		snprintf(c.not_run, sizeof(c.not_run), "kernel without NUMA balancing");
		goto out;
	}
	if (!um_thp_ok(&c))
		goto out;
	/* The device and this thread on node 0, with the memory. */
	snprintf(mask, sizeof(mask), "%x", 1U << mig_node_cpu(0));
	UM_REQ(&c, !mig_knob_set(MIG_ENGINE_CPUS, mask), "engine cpumask: %s", strerror(errno));
	UM_REQ(&c, !kl_pin_node(0, 0), "affinity: %s", strerror(errno));
	mig_knob_set("/proc/sys/kernel/numa_balancing_scan_delay_ms", "0");
	mig_knob_set(MIG_NUMA_KNOBS "scan_delay_ms", "0");
	mig_knob_set(MIG_NUMA_KNOBS "scan_period_min_ms", "10");
	mig_knob_set(MIG_NUMA_KNOBS "scan_period_max_ms", "100");
	UM_REQ(&c, numa_balancing_set(1) >= 0, "numa_balancing: %s", strerror(errno));
	c.judged |= UM_LOST;
	UM_REQ(&c, !pthread_create(&rt, NULL, kl_numa_reader, &n) &&
		  !pthread_create(&nt, NULL, kl_numa_nudger, &n), "pthread_create");
	while (!n.reader_tid || !n.nudger_tid)
		usleep(1000);
	UM_REQ(&c, !kl_pin_node(n.reader_tid, 1) && !kl_pin_node(n.nudger_tid, 1),
	       "affinity: %s", strerror(errno));
	for (t0 = now_s(); !n.stop && moved < KL_NUMA_WANT && !c.lost.violations &&
	     !c.err[0] && now_s() - t0 < KL_NUMA_SECS; rounds++)
		moved += kl_numa_round(&c, &n);
out:
	n.stop = 1;
	if (nt)
		pthread_join(nt, NULL);
	if (rt)
		pthread_join(rt, NULL);
	numa_balancing_set(0);
	mig_knobs_restore();
	if (!c.err[0] && n.err)
		um_fail(&c, "%s", n.why);
	if (!c.err[0] && !c.not_run[0] && !moved && !c.lost.violations)
		um_fail(&c, "NUMA balancing never moved the THP under the device's pass (%llu rounds, %llu passes started in a hinting fault)",
			(unsigned long long)rounds, (unsigned long long)n.in_fault);
	c.ops = rounds;
	snprintf(c.note, sizeof(c.note),
		 "%llu rounds of %d THPs, %llu nudger wakeups, %llu passes started in a hinting fault, %llu faulted in by the device, %llu moved, %llu both; numa_pages_migrated +%lld",
		 (unsigned long long)rounds, KL_NUMA_THPS,
		 (unsigned long long)n.wakeups, (unsigned long long)n.in_fault,
		 (unsigned long long)n.faulted_rounds, (unsigned long long)n.moved_rounds,
		 (unsigned long long)moved, mig_numa_migrated() - vm0);
	um_finish(_metadata, self, &c);
}
