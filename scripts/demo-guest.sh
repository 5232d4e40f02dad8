#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# The demo's guest side: the topology, the seed scenario with its report and
# two timelines, the path x oracle matrix, and where the module's counters
# ended up.
set -u
top=${SECMMU_TOP:-$(cd "$(dirname "$0")/.." && pwd)}
echo "=== secmmu demo on Linux $(uname -r)"
echo
echo "--- NUMA topology"
numactl --hardware 2>/dev/null | grep -E '^(available|node [0-9]+ (cpus|size))'
printf '%s %s\n' "transparent_hugepage:" "$(cat /sys/kernel/mm/transparent_hugepage/enabled)"
# Balancing runs only in the scenario's own run, so that it does not move
# the helper's and move_pages' THPs behind their backs.
echo 0 >/proc/sys/kernel/numa_balancing
echo
echo "--- the seed scenario: a device sharing the page tables streams writes into"
echo "    THPs while they migrate between the nodes; lost writes are counted"
echo
"$top/build/bin/secmmu" scenario --timelines
rc=$?
echo
echo "--- the path matrix: every kernel path that changes a mapping the device"
echo "    holds, judged by what the device sees (ops/device accesses/violations)"
echo
"$top/build/bin/secmmu" paths >"${SECMMU_VM_OUT:-/tmp}/paths.log" 2>&1
prc=$?
sed -n '/^path /,$p' "${SECMMU_VM_OUT:-/tmp}/paths.log"
[ "$prc" = 0 ] || rc=1
echo
echo "--- /sys/kernel/debug/secmmu/stats (all contexts)"
"$top/build/bin/secmmu" stats | paste -sd' ' | fold -s -w 100
exit "$rc"
