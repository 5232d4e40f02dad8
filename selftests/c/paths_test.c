// SPDX-License-Identifier: GPL-2.0
/*
 * The path matrix: one case per kernel path that changes a mapping the
 * device holds a translation of, judged by the oracles of paths_lib.h.
 * Each case prints its matrix cells; `secmmu paths` gathers them.
 *
 * The cases live in paths/<family>.h; the oracles' own self-tests (each
 * oracle made to fire on purpose) in paths/oracles.h.
 */
#include "kselftest_harness.h"
#include "paths_lib.h"

/*
 * A device context bound to this process with room for every translation a
 * case takes, NUMA balancing off (a case that wants it turns it on), and,
 * at teardown, the freed_page cell of the case: the module's count of
 * device accesses through a freed or reused page must be 0.
 */
FIXTURE(paths) {
	int fd;
	int numa_old;
	uint64_t ops;		/* kernel operations the case ran */
};

FIXTURE_SETUP(paths)
{
	self->numa_old = numa_balancing_set(0);
	self->fd = secmmu_open_bound(SECMMU_MAX_TLB_ENTRIES);
	ASSERT_LE(0, self->fd) TH_LOG("bind: %s", strerror(-self->fd));
	self->ops = 0;
}

FIXTURE_TEARDOWN(paths)
{
	/* The oracles' self-tests are not paths: no matrix cell for them. */
	bool path = strncmp(_metadata->name, "oracle_", 7) != 0;
	uint64_t freed = path ? freed_page_cell(_metadata->name, self->fd, self->ops) :
				dev_stat(self->fd, SECMMU_STAT_FREED_PAGE_ACCESSES);

	close(self->fd);
	if (self->numa_old >= 0)
		numa_balancing_set(self->numa_old);
	if (freed) {
		EXPECT_EQ(0, freed) TH_LOG("device accesses through a freed or reused page");
	}
}

#include "paths/migrate.h"
#include "paths/unmap.h"
#include "paths/oracles.h"
#include "paths/kill.h"

TEST_HARNESS_MAIN
