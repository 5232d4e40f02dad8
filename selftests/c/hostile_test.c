// SPDX-License-Identifier: GPL-2.0
/*
 * Hostile input: malformed and edge-case inputs to every debugfs writer and
 * every ioctl of secmmu, each expecting a specific errno (table-driven),
 * including addresses and buffers at and above TASK_SIZE.
 * The runner's dmesg scan then checks none of them left a kernel report.
 */
#define _GNU_SOURCE
#include <stddef.h>

#include "kselftest_harness.h"
#include "secmmu_lib.h"

#define DBG "/sys/kernel/debug/secmmu/"
#define KPTR ((void *)0xffff888000000000UL)

struct text_case {
	const char *file;
	const char *in;
	size_t len;	/* 0: strlen(in) */
	int err;	/* expected write(2) result: 0 or -errno */
};

#define T(f, s, e) { DBG f, s, 0, e }
#define TL(f, s, l, e) { DBG f, s, l, e }

static const struct text_case text_cases[] = {
	/* migrate_thp: fields, numbers, separators, sizes. */
	T("migrate_thp", " ", -EINVAL), T("migrate_thp", "\n", -EINVAL),
	T("migrate_thp", "abc", -EINVAL), T("migrate_thp", "1", -EINVAL),
	T("migrate_thp", "1 2", -EINVAL), T("migrate_thp", "1 2 3 4 5", -EINVAL),
	T("migrate_thp", "1 2 3 x", -EINVAL), T("migrate_thp", "1 2 3 Unhardened", -EINVAL),
	T("migrate_thp", "1 2 3 unhardened extra", -EINVAL),
	T("migrate_thp", "-1 0x1000 0", -EINVAL), T("migrate_thp", "0 0x1000 0", -EINVAL),
	T("migrate_thp", "1 -0x1000 0", -EINVAL), T("migrate_thp", "1 0x 0", -EINVAL),
	T("migrate_thp", "1 0X 0", -EINVAL), T("migrate_thp", "1 0xg 0", -EINVAL),
	T("migrate_thp", "1 x10 0", -EINVAL), T("migrate_thp", "1 1e3 0", -EINVAL),
	T("migrate_thp", "1 18446744073709551616 0", -EINVAL),
	T("migrate_thp", "1 0x10000000000000000 0", -EINVAL),
	T("migrate_thp", "2147483648 0x1000 0", -EINVAL),
	T("migrate_thp", "99999999999999999999 0x1000 0", -EINVAL),
	T("migrate_thp", "1 0x1000 2147483648", -EINVAL),
	T("migrate_thp", "1 0x1000 -2147483649", -EINVAL),
	T("migrate_thp", "1 0x1000 0x1", -EINVAL), T("migrate_thp", "1 0x1000 one", -EINVAL),
	T("migrate_thp", "1,0x1000,0", -EINVAL), T("migrate_thp", "1;0x1000;0", -EINVAL),
	T("migrate_thp", "pid addr node", -EINVAL),
	TL("migrate_thp", "1\0 0x1000 0", 11, -EINVAL),
	TL("migrate_thp", "\xff\xfe\xfd", 3, -EINVAL),
	TL("migrate_thp", "1 0x1000 0\0", 11, -EINVAL),
	/* Well-formed, but the process is the VM's init and 0x1000 is no VMA. */
	T("migrate_thp", "1\t0x1000\t0", -EFAULT), T("migrate_thp", "  1   4096   0  ", -EFAULT),
	T("migrate_thp", "1 0x1000 0\n", -EFAULT), T("migrate_thp", "1 0x1000 1 unhardened", -EFAULT),
	/* Nodes that cannot be targets. */
	T("migrate_thp", "1 0x1000 2", -EINVAL), T("migrate_thp", "1 0x1000 -1", -EINVAL),
	T("migrate_thp", "1 0x1000 1023", -EINVAL), T("migrate_thp", "1 0x1000 1024", -EINVAL),
	T("migrate_thp", "1 0x1000 2147483647", -EINVAL),
	/* No such process. */
	T("migrate_thp", "4000000 0x1000 0", -ESRCH), T("migrate_thp", "2147483647 0x1000 0", -ESRCH),
	/* At or above TASK_SIZE (0x7ffffffff000), non-canonical, or a 2 MiB
	 * block that ends past TASK_SIZE: -EFAULT, without an overflow. */
	T("migrate_thp", "1 0xffffffffffffffff 0", -EFAULT),
	T("migrate_thp", "1 18446744073709551615 1", -EFAULT),
	T("migrate_thp", "1 0xffffffffffffffff 1 unhardened", -EFAULT),
	T("migrate_thp", "1 0xfffffffffffff000 0", -EFAULT),
	T("migrate_thp", "1 0xffffffffffe00000 0 unhardened", -EFAULT),
	T("migrate_thp", "1 0xffffffffff600000 1", -EFAULT),
	T("migrate_thp", "1 0xffff888000000000 0", -EFAULT),
	T("migrate_thp", "1 0xffff800000000000 0", -EFAULT),
	T("migrate_thp", "1 0x8000000000000000 1", -EFAULT),
	T("migrate_thp", "1 9223372036854775808 0", -EFAULT),
	T("migrate_thp", "1 0x800000000000 1 unhardened", -EFAULT),
	T("migrate_thp", "1 0x7ffffffff000 0", -EFAULT),
	T("migrate_thp", "1 140737488351232 0", -EFAULT),
	T("migrate_thp", "1 0x7fffffffffff 0", -EFAULT),
	T("migrate_thp", "1 0X7FFFFFFFEFFF 1", -EFAULT),
	T("migrate_thp", "1 0x7fffffe00000 0", -EFAULT),
	/* inject */
	T("inject", " ", -EINVAL), T("inject", "late_invalidate", -EINVAL),
	T("inject", "late_invalidate=", -EINVAL), T("inject", "late_invalidate=-1", -EINVAL),
	T("inject", "late_invalidate=abc", -EINVAL), T("inject", "late_invalidate=1000001", -EINVAL),
	T("inject", "late_invalidate=18446744073709551616", -EINVAL),
	T("inject", "late_invalidate= 5", -EINVAL), T("inject", "late_invalidate=5 ", -EINVAL),
	T("inject", "LATE_INVALIDATE=5", -EINVAL), T("inject", "late_invalidate=5 extra", -EINVAL),
	T("inject", "late_invalidate=0x10", -EINVAL), T("inject", "late_invalidate==5", -EINVAL),
	T("inject", "corrupt_copy=", -EINVAL), T("inject", "corrupt_copy=2", -EINVAL),
	T("inject", "corrupt_copy=-1", -EINVAL), T("inject", "corrupt_copy=yes", -EINVAL),
	T("inject", "corrupt_copy=01", -EINVAL), T("inject", "corrupt_copy", -EINVAL),
	T("inject", "skip_invalidate=", -EINVAL), T("inject", "skip_invalidate=2", -EINVAL),
	T("inject", "skip_invalidate=yes", -EINVAL), T("inject", "skip_invalidate", -EINVAL),
	T("inject", "=5", -EINVAL), T("inject", "==", -EINVAL), T("inject", "=", -EINVAL),
	T("inject", "leak_object=0", -EINVAL), T("inject", "leak_object=2", -EINVAL),
	T("inject", "leak_object=", -EINVAL), T("inject", "leak_object", -EINVAL),
	T("inject", "leak_object=1 ", -EINVAL), T("inject", "leak_object=01", -EINVAL),
	T("inject", "bogus=1", -EINVAL), T("inject", "late_invalidate=5\n\n", -EINVAL),
	TL("inject", "late_invalidate=5\0", 18, -EINVAL), TL("inject", "\x80", 1, -EINVAL),
	T("inject", "late_invalidate=0\n", 0), T("inject", "late_invalidate=1000000", 0),
	T("inject", "late_invalidate=0", 0), T("inject", "corrupt_copy=0\n", 0),
	T("inject", "skip_invalidate=0\n", 0),
	/* events */
	T("events", "clr", -EINVAL), T("events", "clear\n\n", -EINVAL),
	T("events", "clear ", -EINVAL), T("events", " clear", -EINVAL),
	T("events", "CLEAR", -EINVAL), T("events", "clearx", -EINVAL),
	T("events", "\n", -EINVAL), TL("events", "clear\0", 6, -EINVAL),
	TL("events", "\xc3\x28", 2, -EINVAL), T("events", "clear", 0), T("events", "clear\n", 0),
	/* invalidate_hist */
	T("invalidate_hist", "clr", -EINVAL), T("invalidate_hist", "clear\n\n", -EINVAL),
	T("invalidate_hist", " clear", -EINVAL), TL("invalidate_hist", "clear\0", 6, -EINVAL),
	T("invalidate_hist", "clear", 0), T("invalidate_hist", "clear\n", 0),
	/* bench_fill: CTX ADDR LEN (no context 999999 exists) */
	T("bench_fill", "1", -EINVAL), T("bench_fill", "1 0x1000", -EINVAL),
	T("bench_fill", "1 0x1000 8 9", -EINVAL), T("bench_fill", "x 0x1000 8", -EINVAL),
	T("bench_fill", "-1 0x1000 8", -EINVAL), T("bench_fill", "4294967296 0x1000 8", -EINVAL),
	T("bench_fill", "999999 0x1001 8", -EINVAL), T("bench_fill", "999999 0x1000 7", -EINVAL),
	T("bench_fill", "999999 0x1000 0", -EINVAL),
	T("bench_fill", "999999 0x1000 67108872", -EINVAL),
	T("bench_fill", "999999 0x1000 0xg", -EINVAL),
	TL("bench_fill", "999999\0 0x1000 8", 17, -EINVAL),
	T("bench_fill", "999999 0xfffffffffffffff8 16", -EFAULT),
	T("bench_fill", "999999 0xfffffffffffffff8 8", -EFAULT),
	T("bench_fill", "999999 18446744073709551608 16", -EFAULT),
	T("bench_fill", "999999 0xfffffffffffff000 0x4000000", -EFAULT),
	T("bench_fill", "999999 0x1000 8", -ENOENT), T("bench_fill", " 999999\t4096  8\n", -ENOENT),
};

TEST(debugfs_writers)
{
	char big[512];
	unsigned int i;

	for (i = 0; i < sizeof(text_cases) / sizeof(text_cases[0]); i++) {
		const struct text_case *c = &text_cases[i];
		size_t len = c->len ? c->len : strlen(c->in);

		EXPECT_EQ(c->err, write_text_file(c->file, c->in, len))
			TH_LOG("case %u: %s '%.40s'", i, c->file, c->in);
	}
	/* Empty and overlong writes to each. */
	memset(big, '1', sizeof(big));
	EXPECT_EQ(-EINVAL, write_text_file(DBG "migrate_thp", "", 0));
	EXPECT_EQ(-EINVAL, write_text_file(DBG "inject", "", 0));
	EXPECT_EQ(-EINVAL, write_text_file(DBG "events", "", 0));
	EXPECT_EQ(-EINVAL, write_text_file(DBG "invalidate_hist", "", 0));
	EXPECT_EQ(-EINVAL, write_text_file(DBG "bench_fill", "", 0));
	EXPECT_EQ(-EINVAL, write_text_file(DBG "bench_fill", big, 81));
	EXPECT_EQ(-EINVAL, write_text_file(DBG "migrate_thp", big, 129));
	EXPECT_EQ(-EINVAL, write_text_file(DBG "migrate_thp", big, sizeof(big)));
	EXPECT_EQ(-EINVAL, write_text_file(DBG "inject", big, 65));
	EXPECT_EQ(-EINVAL, write_text_file(DBG "events", big, 65));
	memset(big, ' ', 128);
	EXPECT_EQ(-EINVAL, write_text_file(DBG "migrate_thp", big, 128));
	write_text_file(DBG "inject", "late_invalidate=0", 17);
}

TEST(debugfs_read_only_files)
{
	EXPECT_NE(0, write_text_file(DBG "version", "1", 1));
	EXPECT_NE(0, write_text_file(DBG "stats", "1", 1));
}

static const unsigned int valid_cmds[] = {
	SECMMU_IOCTL_BIND, SECMMU_IOCTL_UNBIND, SECMMU_IOCTL_WRITE, SECMMU_IOCTL_READ,
	SECMMU_IOCTL_STREAM_START, SECMMU_IOCTL_STREAM_STOP, SECMMU_IOCTL_STREAM_VERIFY,
	SECMMU_IOCTL_TLB_FLUSH, SECMMU_IOCTL_GET_STATS,
};

static bool is_valid(unsigned int cmd)
{
	unsigned int i;

	for (i = 0; i < sizeof(valid_cmds) / sizeof(valid_cmds[0]); i++)
		if (cmd == valid_cmds[i])
			return true;
	return false;
}

/* Every number secmmu does not define, including its own numbers with a
 * size or direction that lies, and other magics: -ENOTTY. */
TEST(unknown_and_lying_ioctls)
{
	static const unsigned int sizes[] = { 0, 1, 4, 7, 8, 24, 32, 40, 64, 4096, 16383 };
	static const unsigned int dirs[] = { _IOC_NONE, _IOC_READ, _IOC_WRITE, _IOC_READ | _IOC_WRITE };
	char arg[16384] = { 0 };
	unsigned int nr, s, d, n = 0;
	int fd = secmmu_open_bound(0);

	ASSERT_LE(0, fd);
	for (nr = 0; nr <= 0x10; nr++)
		for (s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++)
			for (d = 0; d < 4; d++) {
				unsigned int cmd = _IOC(dirs[d], SECMMU_IOC_MAGIC, nr, sizes[s]);

				if (is_valid(cmd))
					continue;
				n++;
				EXPECT_EQ(-1, ioctl(fd, cmd, arg)) TH_LOG("cmd %#x", cmd);
				EXPECT_EQ(ENOTTY, errno) TH_LOG("cmd %#x", cmd);
			}
	for (s = 0; s < sizeof(valid_cmds) / sizeof(valid_cmds[0]); s++) {
		unsigned int other = (valid_cmds[s] & ~_IOC_TYPEMASK) |
				     ((SECMMU_IOC_MAGIC - 1) << _IOC_TYPESHIFT);

		EXPECT_EQ(-1, ioctl(fd, other, arg));
		EXPECT_EQ(ENOTTY, errno);
		n++;
	}
	TH_LOG("%u unknown or lying ioctl numbers refused", n);
	ASSERT_LE(200, n);
	close(fd);
}

/* Bad argument pointers for every ioctl that takes one: -EFAULT. */
TEST(bad_pointers)
{
	static const unsigned int cmds[] = {
		SECMMU_IOCTL_WRITE, SECMMU_IOCTL_READ, SECMMU_IOCTL_STREAM_START,
		SECMMU_IOCTL_GET_STATS,
	};
	void *ptrs[] = { NULL, (void *)1, (void *)PAGE, KPTR, (void *)~0UL, (void *)(~0UL - 7) };
	char *ro = mmap(NULL, PAGE, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	int fd = secmmu_open_bound(0), ufd = open(SECMMU_DEV, O_RDWR);
	unsigned int c, p;

	ASSERT_LE(0, fd);
	ASSERT_LE(0, ufd);
	ASSERT_NE(MAP_FAILED, ro);
	for (p = 0; p < sizeof(ptrs) / sizeof(ptrs[0]); p++) {
		EXPECT_EQ(-1, ioctl(ufd, SECMMU_IOCTL_BIND, ptrs[p]));
		EXPECT_EQ(EFAULT, errno);
		for (c = 0; c < sizeof(cmds) / sizeof(cmds[0]); c++) {
			EXPECT_EQ(-1, ioctl(fd, cmds[c], ptrs[p])) TH_LOG("cmd %#x ptr %p", cmds[c], ptrs[p]);
			EXPECT_EQ(EFAULT, errno) TH_LOG("cmd %#x ptr %p", cmds[c], ptrs[p]);
		}
	}
	/* Output structures into read-only memory. */
	EXPECT_EQ(-1, ioctl(fd, SECMMU_IOCTL_GET_STATS, ro));
	EXPECT_EQ(EFAULT, errno);
	/* A read whose destination buffer is read-only or the kernel's. */
	EXPECT_EQ(-EFAULT, dev_read(fd, &fd, 4, ro));
	EXPECT_EQ(-EFAULT, dev_read(fd, &fd, 4, KPTR));
	/* A write from a buffer that ends in unmapped memory. */
	EXPECT_EQ(-EFAULT, dev_write(fd, ro, 8, (void *)(PAGE - 4), 0));
	close(ufd);
	close(fd);
}

struct access_case {
	uint64_t addr_off;	/* from a 2-page RW buffer, or absolute if abs */
	bool abs;
	uint64_t len;
	bool use_buf;
	uint32_t flags, pad;
	int werr, rerr;
};

/* Lengths, alignment, flags and addresses for READ and WRITE. */
TEST(access_edges)
{
	static const struct access_case cases[] = {
		{ 0, false, 0, true, 0, 0, -EINVAL, -EINVAL },
		{ 0, false, 1, true, 1, 0, -EINVAL, -EINVAL },
		{ 0, false, 1, true, 0x80000000, 0, -EINVAL, -EINVAL },
		{ 0, false, 1, true, 0, 1, -EINVAL, -EINVAL },
		{ 0, false, SECMMU_MAX_ACCESS + 1, true, 0, 0, -EINVAL, -EINVAL },
		{ 0, false, ~0ULL, true, 0, 0, -EINVAL, -EINVAL },
		{ 0, false, 1ULL << 63, true, 0, 0, -EINVAL, -EINVAL },
		{ 1, false, 8, false, 0, 0, -EINVAL, -EFAULT },
		{ 0, false, 12, false, 0, 0, -EINVAL, -EFAULT },
		{ 0, false, 1, true, 0, 0, 0, 0 },
		{ PAGE - 1, false, 2, true, 0, 0, 0, 0 },
		{ 2 * PAGE - 1, false, 1, true, 0, 0, 0, 0 },
		{ 2 * PAGE - 1, false, 2, true, 0, 0, -EFAULT, -EFAULT },
		{ 0, true, 8, true, 0, 0, -EFAULT, -EFAULT },
		{ PAGE, true, 8, true, 0, 0, -EFAULT, -EFAULT },
		{ 0x7ffffffff000ULL, true, 8, true, 0, 0, -EFAULT, -EFAULT },
		{ 0x800000000000ULL, true, 8, true, 0, 0, -EFAULT, -EFAULT },
		{ 0xffff888000000000ULL, true, 8, true, 0, 0, -EFAULT, -EFAULT },
		{ ~0ULL - 7, true, 8, true, 0, 0, -EFAULT, -EFAULT },
		{ ~0ULL, true, 2, true, 0, 0, -EFAULT, -EFAULT },
		/* At and past TASK_SIZE, non-canonical, the vsyscall page; with
		 * a bounce buffer and as value fills (READ has no user_buf then:
		 * -EFAULT too). */
		{ TASK_SIZE_4L - 8, true, 16, true, 0, 0, -EFAULT, -EFAULT },
		{ TASK_SIZE_4L - 8, true, 16, false, 0, 0, -EFAULT, -EFAULT },
		{ TASK_SIZE_4L - PAGE, true, 2 * PAGE, true, 0, 0, -EFAULT, -EFAULT },
		{ TASK_SIZE_4L, true, 8, false, 0, 0, -EFAULT, -EFAULT },
		{ 0x7ffffffffff8ULL, true, 8, false, 0, 0, -EFAULT, -EFAULT },
		{ 0x800000000000ULL, true, 8, false, 0, 0, -EFAULT, -EFAULT },
		{ 0x8000000000000000ULL, true, 8, true, 0, 0, -EFAULT, -EFAULT },
		{ 0x8000000000000000ULL, true, 8, false, 0, 0, -EFAULT, -EFAULT },
		{ 0xffff800000000000ULL, true, PAGE, true, 0, 0, -EFAULT, -EFAULT },
		{ 0xffff800000000000ULL, true, PAGE, false, 0, 0, -EFAULT, -EFAULT },
		{ 0xffff888000000000ULL, true, 8, false, 0, 0, -EFAULT, -EFAULT },
		{ 0xffffffffff600000ULL, true, 8, true, 0, 0, -EFAULT, -EFAULT },
		{ 0xffffffffff600000ULL, true, 8, false, 0, 0, -EFAULT, -EFAULT },
		{ 0xffffffffffe00000ULL, true, 2 << 20, false, 0, 0, -EFAULT, -EFAULT },
		{ 0xfffffffffffff000ULL, true, PAGE, true, 0, 0, -EFAULT, -EFAULT },
		{ 0xfffffffffffff000ULL, true, PAGE, false, 0, 0, -EFAULT, -EFAULT },
		{ ~0ULL - 7, true, 8, false, 0, 0, -EFAULT, -EFAULT },
	};
	char *m = mmap(NULL, 3 * PAGE, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	static char buf[16];
	int fd = secmmu_open_bound(0);
	unsigned int i;

	ASSERT_LE(0, fd);
	ASSERT_NE(MAP_FAILED, m);
	ASSERT_EQ(0, munmap(m + 2 * PAGE, PAGE));
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct access_case *c = &cases[i];
		struct secmmu_access a = {
			.addr = c->abs ? c->addr_off : (uintptr_t)m + c->addr_off,
			.len = c->len, .value = 1,
			.user_buf = c->use_buf ? (uintptr_t)buf : 0,
			.flags = c->flags, .pad = c->pad,
		};
		int r = ioctl(fd, SECMMU_IOCTL_WRITE, &a) ? -errno : 0;

		EXPECT_EQ(c->werr, r) TH_LOG("write case %u", i);
		r = ioctl(fd, SECMMU_IOCTL_READ, &a) ? -errno : 0;
		EXPECT_EQ(c->rerr, r) TH_LOG("read case %u", i);
	}
	close(fd);
}

/* Stream geometry and lifecycle: specific errnos. */
TEST(stream_edges)
{
	char *m = mmap(NULL, PAGE, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	struct { uint64_t addr, stride; uint32_t slots, flags; int err; } cases[] = {
		{ 0, 8, 0, 0, -EINVAL }, { 0, 8, SECMMU_MAX_STREAM_SLOTS + 1, 0, -EINVAL },
		{ 0, 8, ~0U, 0, -EINVAL }, { 0, 0, 1, 0, -EINVAL }, { 0, 4, 1, 0, -EINVAL },
		{ 0, 12, 2, 0, -EINVAL }, { 4, 8, 1, 0, -EINVAL }, { 0, 8, 1, 2, -EINVAL },
		{ 0, 8, 1, 0x80000000, -EINVAL },
		{ ~7ULL, 8, 2, 0, -EFAULT }, { 0, 1ULL << 62, 8, 0, -EFAULT },
		{ 0, ~7ULL, 3, 0, -EFAULT },
		/* The last slot's end past TASK_SIZE, without wrapping. */
		{ TASK_SIZE_4L, 8, 1, 0, -EFAULT }, { TASK_SIZE_4L - 8, 8, 2, 0, -EFAULT },
		{ 0x7ffffffffff8ULL, 8, 1, 0, -EFAULT }, { 0x800000000000ULL, 8, 1, 0, -EFAULT },
		{ 0x8000000000000000ULL, 8, 1, 0, -EFAULT },
		{ 0xffff800000000000ULL, PAGE, 16, 0, -EFAULT },
		{ 0xffff888000000000ULL, 8, 1, SECMMU_STREAM_ONCE, -EFAULT },
		{ 0xffffffffff600000ULL, 8, 1, 0, -EFAULT },
		{ 0xfffffffffffff000ULL, 8, 512, 0, -EFAULT },
		{ 0, TASK_SIZE_4L, 2, 0, -EFAULT }, { 0, 1ULL << 32, SECMMU_MAX_STREAM_SLOTS, 0, -EFAULT },
		{ 0, 1ULL << 46, 3, 0, -EFAULT },
	};
	struct secmmu_stream s;
	struct secmmu_verify v;
	int fd = secmmu_open_bound(0), ufd = open(SECMMU_DEV, O_RDWR);
	unsigned int i;

	ASSERT_LE(0, fd);
	ASSERT_LE(0, ufd);
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		s = (struct secmmu_stream){
			.addr = cases[i].addr == 0 ? (uintptr_t)m : (cases[i].addr < PAGE ? (uintptr_t)m + cases[i].addr : cases[i].addr),
			.stride = cases[i].stride, .slots = cases[i].slots, .flags = cases[i].flags,
		};
		int r = ioctl(fd, SECMMU_IOCTL_STREAM_START, &s) ? -errno : 0;

		EXPECT_EQ(cases[i].err, r) TH_LOG("stream case %u", i);
		/* A start that should have failed must not block the next. */
		if (!r)
			ioctl(fd, SECMMU_IOCTL_STREAM_STOP);
	}
	/* Wrong state, unbound and bound. */
	s = (struct secmmu_stream){ .addr = (uintptr_t)m, .stride = 8, .slots = 4 };
	EXPECT_EQ(-1, ioctl(ufd, SECMMU_IOCTL_STREAM_START, &s));
	EXPECT_EQ(ENOTCONN, errno);
	EXPECT_EQ(-1, ioctl(ufd, SECMMU_IOCTL_STREAM_VERIFY, &v));
	EXPECT_EQ(ENOTCONN, errno);
	EXPECT_EQ(-1, ioctl(ufd, SECMMU_IOCTL_STREAM_STOP));
	EXPECT_EQ(ENOENT, errno);
	EXPECT_EQ(-1, ioctl(fd, SECMMU_IOCTL_STREAM_VERIFY, &v));
	EXPECT_EQ(ENOENT, errno);
	EXPECT_EQ(0, ioctl(fd, SECMMU_IOCTL_STREAM_START, &s));
	EXPECT_EQ(-1, ioctl(fd, SECMMU_IOCTL_STREAM_START, &s));
	EXPECT_EQ(EBUSY, errno);
	EXPECT_EQ(0, ioctl(fd, SECMMU_IOCTL_STREAM_STOP));
	EXPECT_EQ(0, ioctl(fd, SECMMU_IOCTL_STREAM_STOP));
	EXPECT_EQ(0, ioctl(fd, SECMMU_IOCTL_STREAM_VERIFY, &v));
	EXPECT_EQ(0, v.lost_writes);
	/* A stopped stream is replaced by the next start; a failed start
	 * keeps it. */
	s.flags = 4;
	EXPECT_EQ(-1, ioctl(fd, SECMMU_IOCTL_STREAM_START, &s));
	EXPECT_EQ(EINVAL, errno);
	EXPECT_EQ(0, ioctl(fd, SECMMU_IOCTL_STREAM_VERIFY, &v));
	s.flags = SECMMU_STREAM_ONCE;
	EXPECT_EQ(0, ioctl(fd, SECMMU_IOCTL_STREAM_START, &s));
	/* Unbinding drops the stream: stop and verify then have none. */
	EXPECT_EQ(0, ioctl(fd, SECMMU_IOCTL_UNBIND));
	EXPECT_EQ(-1, ioctl(fd, SECMMU_IOCTL_UNBIND));
	EXPECT_EQ(ENOTCONN, errno);
	EXPECT_EQ(-1, ioctl(fd, SECMMU_IOCTL_STREAM_STOP));
	EXPECT_EQ(ENOENT, errno);
	EXPECT_EQ(-1, ioctl(fd, SECMMU_IOCTL_TLB_FLUSH));
	EXPECT_EQ(ENOTCONN, errno);
	close(ufd);
	close(fd);
}

/* The user_buf pointer itself at or past TASK_SIZE, non-canonical, or
 * wrapping: WRITE cannot read it, READ cannot write it: -EFAULT. */
TEST(user_buf_top_of_range)
{
	static const uint64_t bufs[] = {
		TASK_SIZE_4L, TASK_SIZE_4L - 8, 0x7ffffffffff8ULL, 0x800000000000ULL,
		0x8000000000000000ULL, 0xffff800000000000ULL, 0xffff888000000000ULL,
		0xffffffffff600000ULL, 0xfffffffffffff000ULL, ~0ULL - 7, ~0ULL,
	};
	uint64_t *m = mmap(NULL, PAGE, PROT_READ | PROT_WRITE,
			   MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	int fd = secmmu_open_bound(0);
	unsigned int i;

	ASSERT_LE(0, fd);
	ASSERT_NE(MAP_FAILED, m);
	m[0] = 7;
	m[1] = 9;
	for (i = 0; i < sizeof(bufs) / sizeof(bufs[0]); i++) {
		void *b = (void *)(uintptr_t)bufs[i];

		EXPECT_EQ(-EFAULT, dev_write(fd, m, 16, b, 0)) TH_LOG("write from %p", b);
		EXPECT_EQ(-EFAULT, dev_read(fd, m, 16, b)) TH_LOG("read into %p", b);
	}
	/* Nothing was written from those buffers. */
	EXPECT_EQ(7, m[0]);
	EXPECT_EQ(9, m[1]);
	close(fd);
}

/*
 * Memory mapped right up to TASK_SIZE (the last 32 MiB): accesses inside it
 * work; an access, a stream or a bench_fill running past its end into
 * TASK_SIZE is -EFAULT, and so is a user_buf straddling TASK_SIZE.
 */
#define TOP_LEN (32UL << 20)
TEST(top_page_mapped)
{
	char *top = mmap((void *)(uintptr_t)(TASK_SIZE_4L - TOP_LEN), TOP_LEN,
			 PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED_NOREPLACE, -1, 0);
	struct secmmu_stream s = { .addr = TASK_SIZE_4L - 16, .stride = 8, .slots = 2 };
	uint64_t *m = mmap(NULL, PAGE, PROT_READ | PROT_WRITE,
			   MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	char *end = top + TOP_LEN, line[80];
	uint64_t got[2] = { 0 }, writes;
	struct secmmu_verify v;
	struct secmmu_stats st;
	int fd, n;

	if (top != (char *)(uintptr_t)(TASK_SIZE_4L - TOP_LEN))
		SKIP(return, "the 32 MiB below TASK_SIZE are taken (%p)", top);
	ASSERT_NE(MAP_FAILED, m);
	fd = secmmu_open_bound(0);
	ASSERT_LE(0, fd);
	ASSERT_EQ(0, ioctl(fd, SECMMU_IOCTL_GET_STATS, &st));

	/* Inside the page: fine. */
	ASSERT_EQ(0, dev_write(fd, end - 16, 16, NULL, 3));
	ASSERT_EQ(3, ((uint64_t *)end)[-1]);
	ASSERT_EQ(0, dev_read(fd, end - 16, 16, got));
	ASSERT_EQ(3, got[1]);
	/* Past its end. */
	EXPECT_EQ(-EFAULT, dev_write(fd, end - 8, 16, NULL, 4));
	EXPECT_EQ(-EFAULT, dev_write(fd, end - 8, 16, m, 0));
	EXPECT_EQ(-EFAULT, dev_write(fd, end - PAGE, 2 * PAGE, NULL, 4));
	EXPECT_EQ(-EFAULT, dev_read(fd, end - 8, 16, got));
	EXPECT_EQ(-EFAULT, dev_read(fd, end - 8, 9, got));
	/* 64 MiB from 32 MiB below TASK_SIZE. */
	EXPECT_EQ(-EFAULT, dev_write(fd, top, SECMMU_MAX_ACCESS, NULL, 5));
	EXPECT_EQ(-EFAULT, dev_write(fd, end - SECMMU_MAX_ACCESS + PAGE, SECMMU_MAX_ACCESS, NULL, 5));
	/* user_buf straddling TASK_SIZE. */
	EXPECT_EQ(-EFAULT, dev_write(fd, m, 16, end - 8, 0));
	EXPECT_EQ(-EFAULT, dev_read(fd, m, 16, end - 8));

	/* A stream whose last slot ends at TASK_SIZE starts; one slot more
	 * does not. */
	s.addr = TASK_SIZE_4L - 8;
	EXPECT_EQ(-EFAULT, ioctl(fd, SECMMU_IOCTL_STREAM_START, &s) ? -errno : 0);
	if (!ioctl(fd, SECMMU_IOCTL_STREAM_STOP) || errno != ENOENT)
		TH_LOG("a stream past TASK_SIZE was started");
	s.addr = TASK_SIZE_4L - 16;
	s.flags = SECMMU_STREAM_ONCE;
	writes = dev_stat(fd, SECMMU_STAT_STREAM_WRITES);
	ASSERT_EQ(0, ioctl(fd, SECMMU_IOCTL_STREAM_START, &s));
	ASSERT_LE(writes + 2, wait_dev_stat(fd, SECMMU_STAT_STREAM_WRITES, writes + 2));
	ASSERT_EQ(0, ioctl(fd, SECMMU_IOCTL_STREAM_STOP));
	ASSERT_EQ(0, ioctl(fd, SECMMU_IOCTL_STREAM_VERIFY, &v));
	ASSERT_EQ(0, v.lost_writes);

	/* bench_fill through the context: up to TASK_SIZE, and past it. */
	n = snprintf(line, sizeof(line), "%u %p 16", st.ctx_id, end - 16);
	EXPECT_EQ(0, write_text_file(DBG "bench_fill", line, n));
	EXPECT_EQ(0x5a5a5a5a5a5a5a5aULL, ((uint64_t *)end)[-1]);
	n = snprintf(line, sizeof(line), "%u %p 16", st.ctx_id, end - 8);
	EXPECT_EQ(-EFAULT, write_text_file(DBG "bench_fill", line, n)) TH_LOG("%s", line);
	n = snprintf(line, sizeof(line), "%u %p 0x4000000", st.ctx_id, end - PAGE);
	EXPECT_EQ(-EFAULT, write_text_file(DBG "bench_fill", line, n)) TH_LOG("%s", line);
	n = snprintf(line, sizeof(line), "%u %p 0x4000000", st.ctx_id, top);
	EXPECT_EQ(-EFAULT, write_text_file(DBG "bench_fill", line, n)) TH_LOG("%s", line);
	close(fd);
	munmap(top, TOP_LEN);
}

/* bench_fill (CTX ADDR LEN) through a bound context, addresses near 2^64
 * and ranges past TASK_SIZE: -EFAULT; a well-formed one works. */
TEST(bench_fill_top_of_range)
{
	static const char *const ranges[] = {
		"0x7ffffffff000 8", "140737488351232 8", "0x7ffffffffff8 16",
		"0x7ffffffff000 0x4000000",
		"0x800000000000 8", "0x8000000000000000 8", "9223372036854775808 4096",
		"0xffff800000000000 4096", "0xffff888000000000 8", "0xffffffffff600000 8",
		"0xffffffffffe00000 0x200000", "0xfffffffffffff000 4096",
		"0xfffffffffffffff8 8", "18446744073709551608 8", "0xfffffffffffffff8 16",
	};
	uint64_t *m = mmap(NULL, PAGE, PROT_READ | PROT_WRITE,
			   MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	int fd = secmmu_open_bound(0), n;
	struct secmmu_stats st;
	unsigned int i;
	char line[80];

	ASSERT_LE(0, fd);
	ASSERT_NE(MAP_FAILED, m);
	ASSERT_EQ(0, ioctl(fd, SECMMU_IOCTL_GET_STATS, &st));
	for (i = 0; i < sizeof(ranges) / sizeof(ranges[0]); i++) {
		n = snprintf(line, sizeof(line), "%u %s", st.ctx_id, ranges[i]);
		EXPECT_EQ(-EFAULT, write_text_file(DBG "bench_fill", line, n)) TH_LOG("'%s'", line);
	}
	n = snprintf(line, sizeof(line), "%u %p 8", st.ctx_id, (void *)m);
	ASSERT_EQ(0, write_text_file(DBG "bench_fill", line, n));
	ASSERT_EQ(0x5a5a5a5a5a5a5a5aULL, m[0]);
	close(fd);
}

TEST_HARNESS_MAIN
