// SPDX-License-Identifier: GPL-2.0
/*
 * Lifecycle: module unload while contexts exist, fork (the binding follows
 * the file, not the process), execve while bound, thread exit in a bound
 * process, several threads racing bind/unbind/stream/verify/flush on one
 * context, and the bound process dying while the device engine is faulting
 * on its mm or while the helper migrates one of its THPs.
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

TEST_HARNESS_MAIN
