/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The oracles' self-tests: each oracle of paths_lib.h made to fire. With
 * the module's skip_invalidate injection on, the device ignores the
 * kernel's invalidations (a driver without its notifier, or a kernel that
 * never invalidates); a small version of a path case then runs with the
 * same oracle function as the matrix, and the test passes only if that
 * oracle reports violations. The module refuses an access through a page
 * freed or reused by another kind of folio (the freed_page oracle), but not
 * through one reallocated as a folio of the same kind: so every page the
 * device reaches stale here stays allocated (a forked child holds it, or
 * mprotect only), except in oracle_freed_page_fires, whose memfd page can
 * only come back as another kind (see there), on a context of its own.
 *
 * Each prints "# fired oracle=NAME violations=N" (not a matrix cell). The
 * injection is switched off before any assertion, by a SIGABRT handler
 * (a failed ASSERT aborts) and by a guard process if the case is killed.
 */

static inline void orc_inject_off(void *unused)
{
	inject_skip_invalidate(false);
}

static void orc_on_abort(int sig)
{
	(void)sig;
	inject_skip_invalidate(false);
}

struct orc {
	struct um_guard g;
};

/*
 * Arms the ways back before anything else: the SIGABRT handler and the
 * guard. The guard is forked first of all, because a fork write-protects
 * the process's memory and flushes the device's TLB: forked after the
 * device took its translations, it would undo the case's setup.
 */
static inline void orc_arm(struct orc *o)
{
	signal(SIGABRT, orc_on_abort);
	um_guard_start(&o->g, orc_inject_off, NULL);
}

/* Switches the injection on: 0 or -errno. */
static inline int orc_on(void)
{
	char buf[128];
	int r = inject_skip_invalidate(true);

	if (!r && (read_file(DBG "inject", buf, sizeof(buf)) <= 0 ||
		   !strstr(buf, "skip_invalidate=1")))
		r = -ENOTSUP;
	return r;
}

/* Switches it off; the device drops the stale translations it kept. */
static inline int orc_off(struct orc *o, int fd)
{
	int r = inject_skip_invalidate(false);

	if (fd >= 0)
		ioctl(fd, SECMMU_IOCTL_TLB_FLUSH);
	um_guard_stop(&o->g);
	signal(SIGABRT, SIG_DFL);
	return r;
}

static inline void orc_fired(const char *oracle, uint64_t violations)
{
	printf("# fired oracle=%s violations=%llu\n", oracle, (unsigned long long)violations);
	fflush(stdout);
}

/* The race's operation: the parent's CPU writes the last page's last word,
 * beyond the stream's slots: COW, the parent gets a copy. */
static inline int orc_cow_tail(void *a)
{
	*(volatile uint64_t *)((char *)a + 128 * PAGE - 8) = 1;
	return 0;
}

/* lost_write: fork (the child keeps the pages), then a stream writes the
 * parent's memory while the parent's CPU breaks COW of the last page: the
 * device keeps writing the old page, now only the child's. */
TEST_F_TIMEOUT(paths, oracle_lost_write_fires, 120)
{
	struct um_peer peer = { .pid = -1 };
	struct tally t = { 0 };
	struct orc o;
	char *p;
	int on, off, r = -EINVAL;

	orc_arm(&o);
	p = um_anon(128, 31);
	ASSERT_NE(NULL, p);
	ASSERT_EQ(0, dev_prime(self->fd, p, 128 * PAGE));
	on = orc_on();
	if (!on) {
		r = um_peer_start(&peer, NULL, NULL, NULL);
		if (!r)
			r = race_passes(self->fd, p, 127 * 512 + 256, orc_cow_tail, p, 1, 3, &t);
	}
	off = orc_off(&o, self->fd);
	um_peer_finish(&peer);
	self->ops += t.ops + 1;
	ASSERT_EQ(0, on) TH_LOG("skip_invalidate=1: %s", strerror(-on));
	ASSERT_EQ(0, off) TH_LOG("skip_invalidate=0: %s", strerror(-off));
	ASSERT_LE(0, r) TH_LOG("fork or stream: %s", strerror(-r));
	orc_fired("lost_write", t.violations);
	ASSERT_LT(0, t.violations) TH_LOG("%llu stream writes, none lost",
					  (unsigned long long)t.accesses);
	munmap(p, 128 * PAGE);
}

/* stale_read: the device reads, fork, the parent's CPU writes (COW): the
 * device keeps reading the old page, now the child's. */
TEST_F_TIMEOUT(paths, oracle_stale_read_fires, 120)
{
	struct um_peer peer = { .pid = -1 };
	struct tally t = { 0 };
	struct orc o;
	char *p;
	int on, off, r = -EINVAL;

	orc_arm(&o);
	p = um_anon(16, 32);
	ASSERT_NE(NULL, p);
	ASSERT_EQ(0, um_prime_read(self->fd, p, 16 * PAGE));
	on = orc_on();
	if (!on) {
		r = um_peer_start(&peer, NULL, NULL, NULL);
		if (!r)
			stale_read_check(self->fd, p, 16 * PAGE, 1, &t);
	}
	off = orc_off(&o, self->fd);
	um_peer_finish(&peer);
	self->ops += 2;
	ASSERT_EQ(0, on) TH_LOG("skip_invalidate=1: %s", strerror(-on));
	ASSERT_EQ(0, off) TH_LOG("skip_invalidate=0: %s", strerror(-off));
	ASSERT_EQ(0, r) TH_LOG("fork: %s", strerror(-r));
	orc_fired("stale_read", t.violations);
	ASSERT_LT(0, t.violations) TH_LOG("%llu device reads, none stale",
					  (unsigned long long)t.accesses);
	munmap(p, 16 * PAGE);
}

/* write_after_revoke: writable translations, mprotect(PROT_READ): the
 * device keeps writing. (mprotect, not munmap: the pages stay allocated.) */
TEST_F_TIMEOUT(paths, oracle_write_after_revoke_fires, 120)
{
	struct tally t = { 0 };
	struct orc o;
	char *p;
	int on, off, r = -EINVAL;

	orc_arm(&o);
	p = um_anon(16, 33);
	ASSERT_NE(NULL, p);
	ASSERT_EQ(0, dev_prime(self->fd, p, 16 * PAGE));
	on = orc_on();
	if (!on) {
		r = mprotect(p, 16 * PAGE, PROT_READ) ? -errno : 0;
		if (!r)
			revoked_write_check(self->fd, p, 16 * PAGE, &t);
	}
	off = orc_off(&o, self->fd);
	self->ops += 1;
	ASSERT_EQ(0, on) TH_LOG("skip_invalidate=1: %s", strerror(-on));
	ASSERT_EQ(0, off) TH_LOG("skip_invalidate=0: %s", strerror(-off));
	ASSERT_EQ(0, r) TH_LOG("mprotect: %s", strerror(-r));
	orc_fired("write_after_revoke", t.violations);
	ASSERT_LT(0, t.violations) TH_LOG("%llu device writes after mprotect, all refused",
					  (unsigned long long)t.accesses);
	munmap(p, 16 * PAGE);
}

/* isolation: writable translations, fork (the child snapshots its copy),
 * device writes in the parent: they land in the pages the child shares. */
TEST_F_TIMEOUT(paths, oracle_isolation_fires, 120)
{
	struct um_case c = UM_CASE("oracle_isolation_fires", self->fd);
	struct um_peer peer = { .pid = -1 };
	struct um_snap snap;
	struct orc o;
	char *p;
	int on, off, r = -EINVAL;

	orc_arm(&o);
	p = um_anon(16, 34);
	ASSERT_NE(NULL, p);
	ASSERT_EQ(0, dev_prime(self->fd, p, 16 * PAGE));
	snap = (struct um_snap){ .p = p, .len = 16 * PAGE };
	on = orc_on();
	if (!on) {
		r = um_peer_start(&peer, um_snap_take, um_snap_changed, &snap);
		if (!r) {
			um_iso_write(&c, p, 16 * PAGE);
			um_iso_peer(&c, um_peer_finish(&peer));
		}
	}
	off = orc_off(&o, self->fd);
	um_peer_finish(&peer);
	self->ops += 1;
	ASSERT_EQ(0, on) TH_LOG("skip_invalidate=1: %s", strerror(-on));
	ASSERT_EQ(0, off) TH_LOG("skip_invalidate=0: %s", strerror(-off));
	ASSERT_EQ(0, r) TH_LOG("fork: %s", strerror(-r));
	ASSERT_EQ(0, c.err[0]) TH_LOG("%s", c.err);
	orc_fired("isolation", c.iso.violations);
	ASSERT_LT(0, c.iso.violations) TH_LOG("%llu device writes, none in the child's pages",
					      (unsigned long long)c.iso.accesses);
	munmap(p, 16 * PAGE);
}

/*
 * freed_page: writable translations, on a context of its own, of a memfd
 * mapping; munmap and close (the file's last reference: its pages are
 * freed), then a device write: refused with -EIO and counted.
 *
 * A memfd, not anonymous memory: the module recognises a page reused by
 * another folio of another kind or file, but not a page freed and
 * reallocated as a folio of the same kind (reference counts carry no
 * generation). An anonymous page freed here is soon reused as another
 * process's anonymous page, and the device's write would land in it.
 */
TEST_F_TIMEOUT(paths, oracle_freed_page_fires, 120)
{
	uint64_t f0, f1;
	struct orc o;
	char *p;
	int fd, mfd;
	int on, off, r = -EINVAL, w = 0;

	orc_arm(&o);
	mfd = memfd_create("secmmu-freed", MFD_CLOEXEC);
	ASSERT_LE(0, mfd);
	ASSERT_EQ(0, ftruncate(mfd, 4 * PAGE));
	p = mmap(NULL, 4 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
	ASSERT_NE(MAP_FAILED, p);
	um_fill(p, 4 * PAGE, 35);
	fd = secmmu_open_bound(0);
	ASSERT_LE(0, fd) TH_LOG("bind: %s", strerror(-fd));
	ASSERT_EQ(0, dev_prime(fd, p, 4 * PAGE));
	f0 = dev_stat(fd, SECMMU_STAT_FREED_PAGE_ACCESSES);
	on = orc_on();
	if (!on) {
		r = munmap(p, 4 * PAGE) ? -errno : 0;
		close(mfd);
		mfd = -1;
		if (!r)
			w = dev_write(fd, p, 8, NULL, 0x5ec0ffee);
	}
	off = orc_off(&o, fd);
	f1 = dev_stat(fd, SECMMU_STAT_FREED_PAGE_ACCESSES);
	close(fd);
	if (mfd >= 0)
		close(mfd);
	self->ops += 1;
	ASSERT_EQ(0, on) TH_LOG("skip_invalidate=1: %s", strerror(-on));
	ASSERT_EQ(0, off) TH_LOG("skip_invalidate=0: %s", strerror(-off));
	ASSERT_EQ(0, r) TH_LOG("munmap: %s", strerror(-r));
	orc_fired("freed_page", f1 - f0);
	ASSERT_EQ(-EIO, w) TH_LOG("the write through a freed page returned %d", w);
	ASSERT_LT(f0, f1) TH_LOG("freed_page_accesses did not rise");
}
