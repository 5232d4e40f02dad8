// SPDX-License-Identifier: GPL-2.0
/*
 * Lifecycle: module unload while contexts exist, fork (the binding follows
 * the file, not the process), execve while bound, thread exit in a bound
 * process, several threads racing bind/unbind/stream/verify/flush on one
 * context, and the bound process dying while the device engine is faulting
 * on its mm or while the helper migrates one of its THPs; SIGKILL of a
 * process blocked in a long device write, and the notifier's release
 * racing unbind and close.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <time.h>
#include <sys/wait.h>

#include "kselftest_harness.h"
#include "secmmu_lib.h"

TEST(rmmod_refused_while_open)
{
	int fd = secmmu_open_bound(0);

	ASSERT_LE(0, fd);
	ASSERT_LT(0, module_refs());
	ASSERT_NE(0, system("rmmod secmmu 2>/dev/null"));
	ASSERT_EQ(0, access("/sys/kernel/debug/secmmu/version", R_OK));
	close(fd);
	ASSERT_EQ(0, module_refs());
}

/* A forked child shares the file and so the parent's binding: its device
 * write lands in the parent's mm (breaking COW there), not its own. */
TEST(fork_child_uses_parents_binding)
{
	uint64_t *v = mmap(NULL, PAGE, PROT_READ | PROT_WRITE,
			   MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	int fd = secmmu_open_bound(0), status;
	pid_t pid;

	ASSERT_LE(0, fd);
	ASSERT_NE(MAP_FAILED, v);
	*v = 1;
	pid = fork();
	ASSERT_LE(0, pid);
	if (pid == 0) {
		if (dev_write(fd, v, 8, NULL, 2))
			_exit(1);
		/* The child's own copy is untouched. */
		_exit(*(volatile uint64_t *)v == 1 ? 0 : 2);
	}
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	ASSERT_EQ(0, WEXITSTATUS(status));
	ASSERT_EQ(2, *(volatile uint64_t *)v);
	close(fd);
}

static void *bind_and_exit(void *arg)
{
	*(int *)arg = secmmu_open_bound(0);
	return NULL;
}

/* The binding is to the mm, not the thread that made it. */
TEST(thread_exit_keeps_binding)
{
	uint64_t x = 0, got = 0;
	pthread_t t;
	int fd = -1;

	ASSERT_EQ(0, pthread_create(&t, NULL, bind_and_exit, &fd));
	ASSERT_EQ(0, pthread_join(t, NULL));
	ASSERT_LE(0, fd);
	ASSERT_EQ(0, dev_write(fd, &x, 8, NULL, 42));
	ASSERT_EQ(42, x);
	ASSERT_EQ(0, dev_read(fd, &x, 8, &got));
	ASSERT_EQ(42, got);
	close(fd);
}

struct racer {
	int fd;
	int id;
	char *mem;
	volatile int *stop;
	int unexpected;
	long ops;
};

static void *race(void *p)
{
	struct racer *r = p;
	unsigned int seed = r->id * 7919 + 1;

	while (!*r->stop) {
		struct secmmu_bind b = { 0 };
		struct secmmu_stream s = { .addr = (uintptr_t)r->mem, .stride = 8, .slots = 64 };
		struct secmmu_verify v;
		struct secmmu_stats st;
		int ret;

		switch (rand_r(&seed) % 7) {
		case 0:
			ret = ioctl(r->fd, SECMMU_IOCTL_BIND, &b) ? errno : 0;
			r->unexpected += ret && ret != EBUSY;
			break;
		case 1:
			ret = ioctl(r->fd, SECMMU_IOCTL_UNBIND) ? errno : 0;
			r->unexpected += ret && ret != ENOTCONN;
			break;
		case 2:
			ret = ioctl(r->fd, SECMMU_IOCTL_STREAM_START, &s) ? errno : 0;
			r->unexpected += ret && ret != ENOTCONN && ret != EBUSY;
			break;
		case 3:
			ret = ioctl(r->fd, SECMMU_IOCTL_STREAM_VERIFY, &v) ? errno : 0;
			r->unexpected += ret && ret != ENOTCONN && ret != ENOENT;
			break;
		case 4:
			ret = ioctl(r->fd, SECMMU_IOCTL_TLB_FLUSH) ? errno : 0;
			r->unexpected += ret && ret != ENOTCONN;
			break;
		case 5:
			ret = -dev_write(r->fd, r->mem + 1024, 64, NULL, r->id);
			r->unexpected += ret && ret != ENOTCONN;
			break;
		default:
			ret = ioctl(r->fd, SECMMU_IOCTL_GET_STATS, &st) ? errno : 0;
			r->unexpected += ret != 0;
		}
		r->ops++;
	}
	return NULL;
}

TEST(concurrent_ops_on_one_context)
{
	char *mem = mmap(NULL, 2 * PAGE, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	struct racer r[4];
	pthread_t t[4];
	volatile int stop = 0;
	int fd = open(SECMMU_DEV, O_RDWR), i;
	long ops = 0;

	ASSERT_LE(0, fd);
	ASSERT_NE(MAP_FAILED, mem);
	for (i = 0; i < 4; i++) {
		r[i] = (struct racer){ .fd = fd, .id = i, .mem = mem, .stop = &stop };
		ASSERT_EQ(0, pthread_create(&t[i], NULL, race, &r[i]));
	}
	sleep(2);
	stop = 1;
	for (i = 0; i < 4; i++) {
		ASSERT_EQ(0, pthread_join(t[i], NULL));
		EXPECT_EQ(0, r[i].unexpected) TH_LOG("thread %d", i);
		ops += r[i].ops;
	}
	TH_LOG("%ld racing operations", ops);
	ASSERT_LT(100, ops);
	close(fd);
	ASSERT_EQ(0, module_refs());
}

/*
 * execve() while bound: the file (without O_CLOEXEC) survives the exec, the
 * binding stays with the old mm, which is gone. The new program sees the
 * device refuse it with the documented errors; unbind and close work.
 */
#define AFTER_EXEC_ENV "SECMMU_LIFECYCLE_AFTER_EXEC"

/* Runs in the exec'd image: returns the number of the first unexpected
 * result (0 if all are as documented). */
static int after_exec(int fd)
{
	uint64_t x = 0;
	struct secmmu_verify v;
	int ret;

	/* The old mm is gone: a device access finds no address space. */
	if (dev_write(fd, &x, 8, NULL, 1) != -ESRCH)
		return 10;
	/* The stream stopped on the same error. */
	ret = ioctl(fd, SECMMU_IOCTL_STREAM_STOP) ? errno : 0;
	if (ret != ESRCH)
		return 11;
	/* Verifying reads the bound mm through the CPU: not ours. */
	ret = ioctl(fd, SECMMU_IOCTL_STREAM_VERIFY, &v) ? errno : 0;
	if (ret != EPERM)
		return 12;
	if (ioctl(fd, SECMMU_IOCTL_UNBIND))
		return 13;
	/* Bindable again, to the new mm. */
	{
		struct secmmu_bind b = { 0 };

		if (ioctl(fd, SECMMU_IOCTL_BIND, &b))
			return 14;
	}
	if (dev_write(fd, &x, 8, NULL, 7) || x != 7)
		return 15;
	close(fd);
	return 0;
}

__attribute__((constructor)) static void maybe_after_exec(void)
{
	const char *fd = getenv(AFTER_EXEC_ENV);

	if (fd)
		_exit(after_exec(atoi(fd)));
}

TEST(execve_while_bound)
{
	char *mem = mmap(NULL, 16 * PAGE, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	int status;
	pid_t pid;

	ASSERT_NE(MAP_FAILED, mem);
	pid = fork();
	ASSERT_LE(0, pid);
	if (pid == 0) {
		struct secmmu_stream s = { .addr = (uintptr_t)mem, .stride = PAGE, .slots = 16 };
		char env[64], *argv[] = { "lifecycle_test", NULL };
		char *envp[] = { env, NULL };
		int fd = secmmu_open_bound(0);

		if (fd < 0 || ioctl(fd, SECMMU_IOCTL_STREAM_START, &s))
			_exit(2);
		usleep(20000);
		snprintf(env, sizeof(env), AFTER_EXEC_ENV "=%d", fd);
		execve("/proc/self/exe", argv, envp);
		_exit(3);
	}
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	ASSERT_TRUE(WIFEXITED(status));
	ASSERT_EQ(0, WEXITSTATUS(status)) TH_LOG("check %d after exec failed", WEXITSTATUS(status));
	ASSERT_EQ(0, module_refs());
}

/* Reads one value the child sends when it is ready. */
static int wait_ready(int rfd, uint64_t *v)
{
	return read(rfd, v, sizeof(*v)) == sizeof(*v) ? 0 : -1;
}

/*
 * The bound process dies while the engine walks and faults its mm: a
 * stream over 64 MiB of unpopulated memory with an 8-entry TLB misses on
 * every write, so the engine is almost always inside a fill when the
 * SIGKILL lands. The kill waits until the context has missed (the engine
 * is in its fill loop), then varying delays put it at different points.
 */
TEST(mm_teardown_mid_fault)
{
	uint64_t misses = global_stat("tlb_misses");
	int round;

	for (round = 0; round < 12; round++) {
		int p[2], status, wait;
		uint64_t ready;
		char path[128];
		pid_t pid;

		ASSERT_EQ(0, pipe(p));
		pid = fork();
		ASSERT_LE(0, pid);
		if (pid == 0) {
			size_t len = 64UL << 20;
			char *mem = mmap(NULL, len, PROT_READ | PROT_WRITE,
					 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
			struct secmmu_stream s = { .addr = (uintptr_t)mem, .stride = PAGE,
						   .slots = len / PAGE };
			int fd = secmmu_open_bound(8);

			struct secmmu_stats st;

			if (mem == MAP_FAILED || fd < 0 ||
			    ioctl(fd, SECMMU_IOCTL_GET_STATS, &st) ||
			    ioctl(fd, SECMMU_IOCTL_STREAM_START, &s))
				_exit(2);
			ready = st.ctx_id;
			if (write(p[1], &ready, sizeof(ready)) != sizeof(ready))
				_exit(3);
			for (;;)
				pause();
		}
		close(p[1]);
		ASSERT_EQ(0, wait_ready(p[0], &ready));
		close(p[0]);
		snprintf(path, sizeof(path), DBG "ctx/%llu/stats", (unsigned long long)ready);
		for (wait = 0; wait < 5000; wait++) {
			uint64_t m = stat_in(path, "tlb_misses");

			if (m != ~0ULL && m >= 2)
				break;
			usleep(1000);
		}
		ASSERT_GT(5000, wait) TH_LOG("round %d: the engine never missed", round);
		usleep((round % 6) * 7000);
		ASSERT_EQ(0, kill(pid, SIGKILL));
		ASSERT_EQ(pid, waitpid(pid, &status, 0));
		ASSERT_TRUE(WIFSIGNALED(status));
	}
	/* At least the two misses each round waited for. */
	ASSERT_LE(misses + 24, global_stat("tlb_misses"));
	ASSERT_EQ(0, module_refs());
}

struct migrate_call {
	pid_t pid;
	void *addr;
	int node;
	int ret;
};

static void *call_migrate(void *p)
{
	struct migrate_call *c = p;

	c->ret = migrate_pid(c->pid, c->addr, c->node, false);
	return NULL;
}

/*
 * The bound process dies while the helper migrates its THP: the device's
 * invalidations are made late (late_invalidate) so the helper is waiting
 * for them, or copying, when the SIGKILL lands. The helper either finishes
 * or fails cleanly; nothing is left behind.
 */
TEST(exit_during_helper_migration)
{
	static const int delays_ms[] = { 0, 5, 30, 80, 150 };
	uint64_t fails = global_stat("thp_migration_failures");
	uint64_t moves = global_stat("thp_migrations");
	unsigned int i;

	ASSERT_EQ(0, inject(100000));
	for (i = 0; i < sizeof(delays_ms) / sizeof(delays_ms[0]); i++) {
		struct migrate_call c = { 0 };
		int p[2], status;
		uint64_t addr;
		pthread_t t;
		pid_t pid;

		ASSERT_EQ(0, pipe(p));
		pid = fork();
		ASSERT_LE(0, pid);
		if (pid == 0) {
			char *thp = thp_alloc(1);
			struct secmmu_stream s = { .stride = PAGE, .slots = HPAGE / PAGE };
			int fd = secmmu_open_bound(0);

			if (!thp || fd < 0)
				_exit(2);
			s.addr = (uintptr_t)thp;
			if (ioctl(fd, SECMMU_IOCTL_STREAM_START, &s))
				_exit(3);
			addr = (uintptr_t)thp;
			if (write(p[1], &addr, sizeof(addr)) != sizeof(addr))
				_exit(4);
			for (;;)
				pause();
		}
		close(p[1]);
		ASSERT_EQ(0, wait_ready(p[0], &addr));
		close(p[0]);
		c.pid = pid;
		c.addr = (void *)(uintptr_t)addr;
		c.node = 1;
		/* First to node 1 (or it is there already), then race back. */
		c.ret = migrate_pid(pid, c.addr, 1, false);
		ASSERT_TRUE(c.ret == 0 || c.ret == -EALREADY) TH_LOG("setup move: %d", c.ret);
		c.node = 0;
		ASSERT_EQ(0, pthread_create(&t, NULL, call_migrate, &c));
		usleep(delays_ms[i] * 1000);
		ASSERT_EQ(0, kill(pid, SIGKILL));
		ASSERT_EQ(0, pthread_join(t, NULL));
		ASSERT_EQ(pid, waitpid(pid, &status, 0));
		TH_LOG("kill after %d ms: helper returned %d", delays_ms[i], c.ret);
		EXPECT_TRUE(c.ret == 0 || c.ret == -ESRCH || c.ret == -EFAULT ||
			    c.ret == -EBUSY || c.ret == -ENOENT || c.ret == -EAGAIN)
			TH_LOG("unexpected helper result %d", c.ret);
	}
	ASSERT_EQ(0, inject(0));
	ASSERT_LE(moves, global_stat("thp_migrations"));
	ASSERT_LE(fails, global_stat("thp_migration_failures"));
	ASSERT_EQ(0, module_refs());
}

#define HUNG_TASK_TIMEOUT "/proc/sys/kernel/hung_task_timeout_secs"

/* Lowers the hung-task timeout to 3 s for a test where the kernel has the
 * detector (the debug kernel): a task stuck in D state longer than that is
 * reported, and the runner's dmesg scan fails the run. Restored after. */
FIXTURE(hung_task) {
	char old[32];
};

FIXTURE_SETUP(hung_task)
{
	char *nl;

	if (read_file(HUNG_TASK_TIMEOUT, self->old, sizeof(self->old)) <= 0) {
		self->old[0] = 0;
		return;
	}
	nl = strchr(self->old, '\n');
	if (nl)
		*nl = 0;
	ASSERT_EQ(0, write_text_file(HUNG_TASK_TIMEOUT, "3", 1));
}

FIXTURE_TEARDOWN(hung_task)
{
	if (self->old[0])
		write_text_file(HUNG_TASK_TIMEOUT, self->old, strlen(self->old));
}

struct flipper {
	char *mem;
	size_t len;
	int prot;
};

static void *flip_protection(void *p)
{
	struct flipper *f = p;

	for (;;) {
		mprotect(f->mem, f->len, f->prot);
		mprotect(f->mem, f->len, PROT_READ | PROT_WRITE);
	}
	return NULL;
}

/*
 * A process whose main thread is in a 64 MiB device write (a value fill, or
 * from a bounce buffer) while another thread flips the buffer between
 * read-only (@prot PROT_READ: the write may fault and end) or executable
 * (PROT_READ | PROT_WRITE | PROT_EXEC: every flip only invalidates, so the
 * write never faults and its fills keep being discarded) and read-write:
 * SIGKILL ends it within KILL_BOUND_S. The child issues the write over and
 * over; the kill waits until the engine has missed on its context (a write
 * is in flight). The bound is for TCG on a loaded host, where freeing the
 * killed writer's 128 MiB has taken 3.2 s (0.02 s idle); a write the kill
 * cannot end runs for minutes.
 */
#define KILL_BOUND_S 15

static void killed_in_device_write(struct __test_metadata *_metadata, bool bounce, int prot)
{
	char what[64];
	int p[2], status = 0, wait, i;
	double t0, reaped = 0;
	uint64_t ready;
	char path[128];
	pid_t pid, w = 0;

	snprintf(what, sizeof(what), "%s, flipping to %s", bounce ? "bounce buffer" : "value fill",
		 prot & PROT_EXEC ? "rwx" : "r");
	ASSERT_EQ(0, pipe(p));
	pid = fork();
	ASSERT_LE(0, pid);
	if (pid == 0) {
		size_t len = 64UL << 20;
		char *mem = mmap(NULL, len, PROT_READ | PROT_WRITE,
				 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		char *buf = NULL;
		struct flipper f = { .mem = mem, .len = len, .prot = prot };
		struct secmmu_stats st;
		pthread_t t;
		int fd = secmmu_open_bound(0);

		if (bounce) {
			buf = mmap(NULL, len, PROT_READ | PROT_WRITE,
				   MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
			if (buf == MAP_FAILED)
				_exit(2);
			memset(buf, 0x5a, len);
		}
		if (mem == MAP_FAILED || fd < 0 || ioctl(fd, SECMMU_IOCTL_GET_STATS, &st))
			_exit(3);
		if (pthread_create(&t, NULL, flip_protection, &f))
			_exit(4);
		ready = st.ctx_id;
		if (write(p[1], &ready, sizeof(ready)) != sizeof(ready))
			_exit(5);
		for (;;)
			dev_write(fd, mem, len, buf, 0x5a5a5a5a5a5a5a5aULL);
	}
	close(p[1]);
	i = wait_ready(p[0], &ready);
	close(p[0]);
	snprintf(path, sizeof(path), DBG "ctx/%llu/stats", (unsigned long long)ready);
	for (wait = 0; !i && wait < 2000; wait++) {
		uint64_t m = stat_in(path, "tlb_misses");

		if (m != ~0ULL && m >= 2)
			break;
		usleep(10000);
	}
	ASSERT_EQ(0, kill(pid, SIGKILL));
	t0 = now_s();
	while (now_s() - t0 < KILL_BOUND_S) {
		w = waitpid(pid, &status, WNOHANG);
		if (w)
			break;
		usleep(10000);
	}
	reaped = now_s() - t0;
	if (!w) {
		/* Reap it anyway, to say how long it took. */
		w = waitpid(pid, &status, 0) == pid ? 0 : -1;
		TH_LOG("%s: the killed writer was reaped only after %.1f s", what, now_s() - t0);
	}
	ASSERT_EQ(0, i) TH_LOG("%s: the child did not get ready", what);
	ASSERT_GT(2000, wait) TH_LOG("%s: the engine never missed on the child's context", what);
	ASSERT_EQ(pid, w) TH_LOG("%s: still there %d s after SIGKILL", what, KILL_BOUND_S);
	ASSERT_TRUE(WIFSIGNALED(status)) TH_LOG("%s: status %#x", what, status);
	ASSERT_EQ(SIGKILL, WTERMSIG(status));
	TH_LOG("%s: the killed writer was gone after %.2f s", what, reaped);
	/* Its context is closed: nothing of it left behind. */
	for (i = 0; i < 1000 && module_refs() > 0; i++)
		usleep(10000);
	ASSERT_EQ(0, module_refs());
}

TEST_F_TIMEOUT(hung_task, sigkill_blocked_device_write, 180)
{
	killed_in_device_write(_metadata, false, PROT_READ);
	killed_in_device_write(_metadata, true, PROT_READ);
	killed_in_device_write(_metadata, false, PROT_READ | PROT_WRITE | PROT_EXEC);
	killed_in_device_write(_metadata, true, PROT_READ | PROT_WRITE | PROT_EXEC);
}

struct unbinder {
	int fd;
	volatile int *go;
};

static void *unbind_and_close(void *p)
{
	struct unbinder *u = p;

	while (!*u->go)
		;
	ioctl(u->fd, SECMMU_IOCTL_UNBIND);
	close(u->fd);
	return NULL;
}

static void spin(unsigned int n)
{
	volatile unsigned int i;

	for (i = 0; i < n; i++)
		;
}

/*
 * The notifier's release runs from exit_mmap while the binding is being
 * undone, 50 times: (0) a thread of the bound process unbinds and closes
 * while its main thread exits; (1) another holder of the file (the parent)
 * unbinds and closes while the bound child exits; (2) the same while the
 * parent SIGKILLs the child at a random moment. A stream runs each time.
 * Every binding ends exactly once and the module's reference count goes
 * back to 0.
 */
TEST_F_TIMEOUT(hung_task, release_races_exit, 180)
{
	uint64_t binds = global_stat("binds"), unbinds = global_stat("unbinds");
	unsigned int seed = getpid();
	int round, i;

	for (round = 0; round < 50; round++) {
		int mode = round % 3, p[2], status, fd = -1, r = 0;
		unsigned int delay = rand_r(&seed) % 200000;
		char c;
		pid_t pid;

		if (mode) {
			fd = open(SECMMU_DEV, O_RDWR);
			ASSERT_LE(0, fd);
		}
		ASSERT_EQ(0, pipe(p));
		pid = fork();
		ASSERT_LE(0, pid);
		if (pid == 0) {
			char *mem = mmap(NULL, 16 * PAGE, PROT_READ | PROT_WRITE,
					 MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
			struct secmmu_stream s = { .addr = (uintptr_t)mem, .stride = PAGE, .slots = 16 };
			struct secmmu_bind b = { .tlb_entries = 8 };
			volatile int go = 0;
			struct unbinder u;
			pthread_t t;

			if (mem == MAP_FAILED)
				_exit(2);
			if (!mode)
				fd = open(SECMMU_DEV, O_RDWR);
			if (fd < 0 || ioctl(fd, SECMMU_IOCTL_BIND, &b) ||
			    ioctl(fd, SECMMU_IOCTL_STREAM_START, &s))
				_exit(3);
			u = (struct unbinder){ .fd = fd, .go = &go };
			if (!mode && pthread_create(&t, NULL, unbind_and_close, &u))
				_exit(4);
			c = 1;
			if (write(p[1], &c, 1) != 1)
				_exit(5);
			go = 1;
			if (mode == 2)
				for (;;)
					pause();
			spin(delay);
			_exit(0);
		}
		close(p[1]);
		ASSERT_EQ(1, read(p[0], &c, 1)) TH_LOG("round %d: the child did not get ready", round);
		close(p[0]);
		if (mode == 2) {
			spin(delay);
			ASSERT_EQ(0, kill(pid, SIGKILL));
		}
		if (mode) {
			spin(delay / 2);
			r = ioctl(fd, SECMMU_IOCTL_UNBIND) ? -errno : 0;
			ASSERT_EQ(0, close(fd));
		}
		ASSERT_EQ(pid, waitpid(pid, &status, 0));
		ASSERT_EQ(0, r) TH_LOG("round %d: UNBIND from the other holder: %d", round, r);
		if (mode == 2) {
			ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
				TH_LOG("round %d: status %#x", round, status);
		} else {
			ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
				TH_LOG("round %d: status %#x", round, status);
		}
	}
	for (i = 0; i < 1000 && (module_refs() > 0 || global_stat("unbinds") < unbinds + 50); i++)
		usleep(10000);
	ASSERT_EQ(0, module_refs());
	ASSERT_EQ(binds + 50, global_stat("binds"));
	ASSERT_EQ(unbinds + 50, global_stat("unbinds")) TH_LOG("each binding must end exactly once");
}

TEST_HARNESS_MAIN
