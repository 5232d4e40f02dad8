#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# make demo, the main job: build what is missing, boot the VM with secmmu.ko
# inserted, run the seed scenario and print its report and timelines and
# the path matrix; then boot the mutant kernel and show the seed bug.
. "$(dirname "$0")/lib.sh"
T0=$(date +%s)
kb=$("$SECMMU_TOP/scripts/kdir.sh" "${SECMMU_FLAVOUR:-test}")
"$SECMMU_TOP/scripts/build-module.sh" modules
"$SECMMU_TOP/scripts/build-selftests.sh"
export SECMMU_KBUILD=$kb
SECMMU_QUIET=1 "$SECMMU_TOP/scripts/vm-run.sh" --out "$SECMMU_TOP/build/vm/demo" -- scripts/demo-guest.sh
rc=$?
cat "$SECMMU_TOP/build/vm/demo/output.log" 2>/dev/null
# The seed bug in today's kernel: a second boot, on the mutant kernel.
if mkb=$("$SECMMU_TOP/scripts/build-mutant-kernel.sh"); then
	SECMMU_KBUILD=$mkb SECMMU_QUIET=1 "$SECMMU_TOP/scripts/vm-run.sh" \
		--out "$SECMMU_TOP/build/vm/demo-mutant" -- scripts/demo-mutant-guest.sh || rc=1
	cat "$SECMMU_TOP/build/vm/demo-mutant/output.log" 2>/dev/null
else
	log "the mutant kernel did not build"
	rc=1
fi
log "demo finished in $(($(date +%s) - T0)) s"
exit "$rc"
