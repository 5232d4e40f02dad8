#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# The demo's guest side: print the topology and secmmu's debugfs files.
set -u
echo "=== secmmu demo on $(uname -r)"
echo
echo "--- NUMA topology"
numactl --hardware 2>/dev/null || cat /sys/devices/system/node/online
echo
echo "--- memory policy knobs"
printf '%-40s %s\n' "transparent_hugepage/enabled" "$(cat /sys/kernel/mm/transparent_hugepage/enabled)"
printf '%-40s %s\n' "kernel.numa_balancing" "$(cat /proc/sys/kernel/numa_balancing)"
echo
echo "--- /sys/kernel/debug/secmmu/"
for f in /sys/kernel/debug/secmmu/*; do
	[ -f "$f" ] || continue
	echo "[$(basename "$f")]"
	sed 's/^/  /' "$f"
done
