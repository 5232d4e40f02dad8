#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Runs inside the guest: insert secmmu.ko, run the command in the checkout,
# save its output, status and dmesg for vm-verdict.sh.
#   guest-run.sh OUTDIR INSERT_MODULE CMD
out=$1 module=$2 cmd=${3:-}
top=$(cd "$(dirname "$0")/.." && pwd)

mountpoint -q /sys/kernel/debug || mount -t debugfs none /sys/kernel/debug
# The guest root is a read-only 9p share: scratch space lives in tmpfs.
mountpoint -q /tmp || mount -t tmpfs -o size=512m tmpfs /tmp

date +%s >"$out/booted"
if [ "$module" = 1 ]; then
	if ! insmod "$top/secmmu.ko" 2>"$out/insmod.err"; then
		echo "secmmu: insmod failed: $(cat "$out/insmod.err")"
		dmesg >"$out/dmesg.txt"
		echo 125 >"$out/rc"
		exit 125
	fi
fi
cd "$top" || exit 1
export SECMMU_TOP="$top" SECMMU_VM_OUT="$out"
# The kernel's lib/test_hmm.ko, when it has one (vm-run.sh copied it).
[ ! -f "$out/test_hmm.ko" ] || export SECMMU_TEST_HMM="$out/test_hmm.ko"
bash -c "$cmd" 2>&1 | tee "$out/output.log"
rc=${PIPESTATUS[0]}
dmesg >"$out/dmesg.txt"
echo "$rc" >"$out/rc"
exit "$rc"
