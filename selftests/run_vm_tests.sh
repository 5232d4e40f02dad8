#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Runs inside the test VM: every built selftest, each printing KTAP. Exits
# non-zero if any failed. Built by scripts/build-selftests.sh into build/.
top=${SECMMU_TOP:-$(cd "$(dirname "$0")/.." && pwd)}
bin="$top/build/selftests"
rc=0
# NUMA balancing would move pages behind the tests' backs (the device's own
# faults are NUMA hinting faults); the scenario turns it on for its run.
echo 0 >/proc/sys/kernel/numa_balancing
for t in "$bin"/c/* "$bin"/rust/*; do
	[ -x "$t" ] || continue
	echo "# selftest: $(basename "$t")"
	"$t" || rc=1
done
# The seed scenario, bounded: every migration driver against a stream.
echo "# selftest: secmmu scenario"
"$top/build/bin/secmmu" scenario --ktap || rc=1
exit "$rc"
