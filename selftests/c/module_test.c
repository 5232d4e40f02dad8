// SPDX-License-Identifier: GPL-2.0
/*
 * secmmu module selftests: the module is inserted, its debugfs directory and
 * read-only version file exist, and it unloads and reloads cleanly.
 *
 * Runs in the test VM (make check), as root, with the checkout as cwd and
 * secmmu.ko inserted by the runner.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kselftest_harness.h"
#include "secmmu_lib.h"

#define DEBUGFS_DIR "/sys/kernel/debug/secmmu"

static const char *module_path(void)
{
	static char path[4096];
	const char *top = getenv("SECMMU_TOP");

	snprintf(path, sizeof(path), "%s/secmmu.ko", top ? top : ".");
	return path;
}

TEST(module_is_live)
{
	char state[64];

	ASSERT_LT(0, read_file("/sys/module/secmmu/initstate", state, sizeof(state)));
	ASSERT_EQ(0, strcmp(state, "live\n"));
}

TEST(version_readable)
{
	char buf[256];

	ASSERT_LT(0, read_file(DEBUGFS_DIR "/version", buf, sizeof(buf)));
	ASSERT_EQ(0, strncmp(buf, "secmmu ", 7)) TH_LOG("version reads '%s'", buf);
	ASSERT_NE(NULL, strstr(buf, "thp_order 9\n")) TH_LOG("version reads '%s'", buf);
}

TEST(version_is_read_only)
{
	struct stat st;

	ASSERT_EQ(0, stat(DEBUGFS_DIR "/version", &st));
	ASSERT_EQ(0, st.st_mode & 0222);
	ASSERT_EQ(0400, st.st_mode & 0777);
}

TEST(unload_and_reload)
{
	struct stat st;
	char cmd[4200];

	ASSERT_EQ(0, system("rmmod secmmu"));
	ASSERT_NE(0, stat(DEBUGFS_DIR, &st)) TH_LOG("debugfs dir outlived rmmod");
	ASSERT_NE(0, access("/sys/module/secmmu", F_OK));
	/* The userspace tool says what is wrong when the module is absent. */
	snprintf(cmd, sizeof(cmd),
		 "%s/build/bin/secmmu stats 2>&1 | grep -q 'is secmmu.ko loaded'",
		 getenv("SECMMU_TOP") ? getenv("SECMMU_TOP") : ".");
	ASSERT_EQ(0, system(cmd)) TH_LOG("secmmu stats gave no clear error without the module");

	snprintf(cmd, sizeof(cmd), "insmod %s", module_path());
	ASSERT_EQ(0, system(cmd));
	ASSERT_EQ(0, stat(DEBUGFS_DIR "/version", &st));
}

FIXTURE(slow) {
};

FIXTURE_SETUP(slow)
{
}

FIXTURE_TEARDOWN(slow)
{
}

/* Slow on a KASAN kernel under TCG: a longer timeout than the default. */
TEST_F_TIMEOUT(slow, load_unload_cycles, 600)
{
	char cmd[4200];
	int i;

	snprintf(cmd, sizeof(cmd), "rmmod secmmu && insmod %s", module_path());
	for (i = 0; i < 10; i++)
		ASSERT_EQ(0, system(cmd)) TH_LOG("cycle %d", i);
}

TEST(double_insert_refused)
{
	char cmd[4200];

	snprintf(cmd, sizeof(cmd), "test -d /sys/module/secmmu || insmod %s", module_path());
	ASSERT_EQ(0, system(cmd));

	snprintf(cmd, sizeof(cmd), "insmod %s 2>/dev/null", module_path());
	ASSERT_NE(0, system(cmd));
	ASSERT_EQ(0, access(DEBUGFS_DIR "/version", R_OK));
}

TEST_HARNESS_MAIN
