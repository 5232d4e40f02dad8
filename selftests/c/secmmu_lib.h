/* SPDX-License-Identifier: GPL-2.0 */
/* Small helpers shared by secmmu's C selftests. */
#ifndef SECMMU_LIB_H
#define SECMMU_LIB_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "secmmu.h"

#define SECMMU_DEV "/dev/secmmu"
#define PAGE 4096UL
#define HPAGE (2UL << 20)
#define MPOL_MF_MOVE (1 << 1)

static inline int secmmu_open_bound(unsigned int entries)
{
	struct secmmu_bind b = { .tlb_entries = entries };
	int fd = open(SECMMU_DEV, O_RDWR);

	if (fd < 0)
		return -errno;
	if (ioctl(fd, SECMMU_IOCTL_BIND, &b)) {
		int e = errno;

		close(fd);
		return -e;
	}
	return fd;
}

/* Device write of @len bytes from @buf (or the 64-bit @value if !buf). */
static inline int dev_write(int fd, void *addr, size_t len, const void *buf, uint64_t value)
{
	struct secmmu_access a = {
		.addr = (uintptr_t)addr, .len = len, .value = value,
		.user_buf = (uintptr_t)buf,
	};

	return ioctl(fd, SECMMU_IOCTL_WRITE, &a) ? -errno : 0;
}

static inline int dev_read(int fd, const void *addr, size_t len, void *buf)
{
	struct secmmu_access a = {
		.addr = (uintptr_t)addr, .len = len, .user_buf = (uintptr_t)buf,
	};

	return ioctl(fd, SECMMU_IOCTL_READ, &a) ? -errno : 0;
}

static inline uint64_t dev_stat(int fd, enum secmmu_stat s)
{
	struct secmmu_stats st;

	if (ioctl(fd, SECMMU_IOCTL_GET_STATS, &st))
		return ~0ULL;
	return st.counters[s];
}

/* Waits until the context's counter @s reaches @min, polling every 10 ms
 * for up to 20 s (the engine is slow on a debug kernel); returns its last
 * value. Tests wait on counters rather than sleep for a fixed time. */
static inline uint64_t wait_dev_stat(int fd, enum secmmu_stat s, uint64_t min)
{
	uint64_t v = dev_stat(fd, s);
	int i;

	for (i = 0; i < 2000 && (v == ~0ULL || v < min); i++) {
		usleep(10000);
		v = dev_stat(fd, s);
	}
	return v;
}

/* A 2 MiB-aligned, MADV_HUGEPAGE, touched THP region of @n huge pages. */
static inline char *thp_alloc(size_t n)
{
	size_t len = (n + 1) * HPAGE;
	char *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	char *a;
	size_t i;

	if (p == MAP_FAILED)
		return NULL;
	a = (char *)(((uintptr_t)p + HPAGE - 1) & ~(HPAGE - 1));
	if (madvise(a, n * HPAGE, MADV_HUGEPAGE))
		return NULL;
	for (i = 0; i < n * HPAGE; i += PAGE)
		a[i] = 1;
	return a;
}

static inline long sys_move_pages(unsigned long count, void **pages,
				  const int *nodes, int *status)
{
	return syscall(SYS_move_pages, 0, count, pages, nodes, status, MPOL_MF_MOVE);
}

/* Node of the page at @p, or -errno. */
static inline int page_node(void *p)
{
	int status = -1;

	if (syscall(SYS_move_pages, 0, 1UL, &p, NULL, &status, 0))
		return -errno;
	return status;
}

/* Moves the @npages pages at @p to @node; returns pages not moved or -errno. */
static inline long move_range(char *p, size_t npages, int node)
{
	void *pages[512];
	int nodes[512], status[512];
	size_t i;
	long r, bad = 0;

	if (npages > 512)
		return -EINVAL;
	for (i = 0; i < npages; i++) {
		pages[i] = p + i * PAGE;
		nodes[i] = node;
	}
	r = sys_move_pages(npages, pages, nodes, status);
	if (r < 0)
		return -errno;
	for (i = 0; i < npages; i++)
		if (status[i] != node)
			bad++;
	return bad + r;
}

static inline long anon_huge_kb(void)
{
	char line[256];
	long kb = 0, v;
	FILE *f = fopen("/proc/self/smaps", "r");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "AnonHugePages: %ld kB", &v) == 1)
			kb += v;
	fclose(f);
	return kb;
}

/* The module's reference count, or -1 if it is not loaded. */
static inline int module_refs(void)
{
	char buf[32] = "";
	int fd = open("/sys/module/secmmu/refcnt", O_RDONLY);

	if (fd < 0)
		return -1;
	if (read(fd, buf, sizeof(buf) - 1) < 0)
		buf[0] = 0;
	close(fd);
	return atoi(buf);
}

/* One write(2) of @len bytes to @path: 0, or -errno (-EIO if short). */
static inline int write_text_file(const char *path, const char *s, size_t len)
{
	int fd = open(path, O_WRONLY);
	ssize_t n;

	if (fd < 0)
		return -errno;
	n = write(fd, s, len);
	n = n < 0 ? -errno : (n == (ssize_t)len ? 0 : -EIO);
	close(fd);
	return n;
}

/*
 * Sets kernel.numa_balancing to @on and returns the old value (-1 if there
 * is none). The device's own page faults are NUMA hinting faults, so with
 * balancing on, pages may move behind a test's back.
 */
static inline int numa_balancing_set(int on)
{
	char c = '0';
	int fd = open("/proc/sys/kernel/numa_balancing", O_RDWR);

	if (fd < 0)
		return -1;
	if (read(fd, &c, 1) != 1)
		c = '0';
	c -= '0';
	if (pwrite(fd, on ? "1" : "0", 1, 0) != 1)
		c = -1;
	close(fd);
	return c;
}

#define DBG "/sys/kernel/debug/secmmu/"

/* Asks the helper to move the THP at @addr of process @pid to @node. */
static inline int migrate_pid(pid_t pid, void *addr, int node, bool unhardened)
{
	char line[128];
	int n = snprintf(line, sizeof(line), "%d %p %d%s\n", pid, addr, node,
			 unhardened ? " unhardened" : "");

	return write_text_file(DBG "migrate_thp", line, n);
}

/* Moves the caller's THP at @addr to @node with the helper: 0 or -errno. */
static inline int migrate(void *addr, int node, bool unhardened)
{
	return migrate_pid(getpid(), addr, node, unhardened);
}

/* Sets the late_invalidate injection (microseconds, 0 = off). */
static inline int inject(unsigned int us)
{
	char line[64];
	int n = snprintf(line, sizeof(line), "late_invalidate=%u", us);

	return write_text_file(DBG "inject", line, n);
}

/* Reads a (small) file into @buf, NUL-terminated: length or -errno. */
static inline long read_file(const char *path, char *buf, size_t len)
{
	int fd = open(path, O_RDONLY);
	long n, total = 0;

	if (fd < 0)
		return -errno;
	while (total < (long)len - 1 && (n = read(fd, buf + total, len - 1 - total)) > 0)
		total += n;
	close(fd);
	buf[total] = 0;
	return total;
}

/* One counter of a stats file (global or ctx/<id>), or ~0 if unreadable. */
static inline uint64_t stat_in(const char *path, const char *name)
{
	char buf[4096], *p;
	size_t l = strlen(name);

	if (read_file(path, buf, sizeof(buf)) <= 0)
		return ~0ULL;
	for (p = buf; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
		if (!strncmp(p, name, l) && p[l] == ' ')
			return strtoull(p + l + 1, NULL, 10);
	return ~0ULL;
}

/* One counter of the global stats file, or ~0 if unreadable. */
static inline uint64_t global_stat(const char *name)
{
	return stat_in(DBG "stats", name);
}

/* x86-64 TASK_SIZE with 4-level paging (the VM boots with no5lvl). */
#define TASK_SIZE_4L 0x7ffffffff000ULL

/* Monotonic time in seconds. */
static inline double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Asks the helper to move the THP at the raw 64-bit @addr of @pid to @node,
 * the address written in hex (0x...) or, if @decimal, in decimal. */
static inline int migrate_raw(pid_t pid, uint64_t addr, int node, bool decimal,
			      bool unhardened)
{
	char line[128];
	int n = snprintf(line, sizeof(line), decimal ? "%d %llu %d%s" : "%d 0x%llx %d%s",
			 pid, (unsigned long long)addr, node,
			 unhardened ? " unhardened" : "");

	return write_text_file(DBG "migrate_thp", line, n);
}

/* The helper's last-result line into @buf (of @len bytes): length or -errno. */
static inline long migrate_result(char *buf, size_t len)
{
	return read_file(DBG "migrate_thp", buf, len);
}

/* The decimal value of the field "@name=" in a result line (the field must
 * start the line or follow a space), or LLONG_MIN if it is not there. */
static inline long long result_field(const char *res, const char *name)
{
	size_t l = strlen(name);
	const char *p;

	for (p = res; (p = strstr(p, name)); p += l)
		if ((p == res || p[-1] == ' ') && p[l] == '=')
			return strtoll(p + l + 1, NULL, 10);
	return LLONG_MIN;
}

#endif
