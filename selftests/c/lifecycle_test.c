// SPDX-License-Identifier: GPL-2.0
/*
 * Lifecycle: module unload while contexts exist, fork (the binding follows
 * the file, not the process), thread exit in a bound process, and several
 * threads racing bind/unbind/stream/verify/flush on one context.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stddef.h>
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

TEST_HARNESS_MAIN
