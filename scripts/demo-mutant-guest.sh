#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# The demo's second boot, on the mutant kernel (kernel/mutants/): the seed
# bug of 2018 put back into today's THP migration. The same path case,
# move_pages(2) of a THP raced by the device's single-pass streams, runs
# twice in one boot: with the stock ordering, then with the mutant's knob
# on (the secondary TLB invalidated in remove_migration_pmd(), after the
# copy). The case judges only what the device sees.
set -u
top=${SECMMU_TOP:-$(cd "$(dirname "$0")/.." && pwd)}
knob=/sys/module/kernel/parameters/mutant_thp_migration_seed
bin=$top/build/selftests/c/paths_test
echo "=== the seed bug in Linux $(uname -r): mutant thp_migration_seed"
echo "    (kernel/mutants/01-thp-migration-seed.patch undoes 7066f0f933a1)"
[ -w "$knob" ] || { echo "not the mutant kernel: $knob is missing"; exit 1; }
echo 0 >/proc/sys/kernel/numa_balancing
run() {
	echo "$1" >"$knob"
	echo
	echo "--- $2"
	out=$("$bin" -t move_pages_thp 2>&1)
	grep -E '^# cell|^(not )?ok ' <<<"$out" | sed 's/^/    /'
	echo 0 >"$knob"
}
run 0 "knob off: today's ordering (secondary TLBs invalidated before the copy)"
echo clear >/sys/kernel/debug/secmmu/events
run 1 "knob on: the 2018 ordering (secondary TLBs invalidated after the copy)"
echo
echo "--- the device's view of the last move with the knob on (event log):"
echo "    fills of the old page, then the invalidation that came after the copy,"
echo "    then fills of the new page on the other node"
"$top/build/bin/secmmu" events | awk '$5 == "fill" || $5 == "invalidate" || $5 == "freed_page_access"' |
	tail -n 8 | sed 's/^/    /'
exit 0
