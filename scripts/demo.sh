#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# make demo, the main job: build what is missing, boot the VM with secmmu.ko
# inserted, run the seed scenario and print its report and timelines.
. "$(dirname "$0")/lib.sh"
T0=$(date +%s)
kb=$("$SECMMU_TOP/scripts/kdir.sh" "${SECMMU_FLAVOUR:-test}")
"$SECMMU_TOP/scripts/build-module.sh" modules
"$SECMMU_TOP/scripts/build-selftests.sh"
export SECMMU_KBUILD=$kb
SECMMU_QUIET=1 "$SECMMU_TOP/scripts/vm-run.sh" --out "$SECMMU_TOP/build/vm/demo" -- scripts/demo-guest.sh
rc=$?
cat "$SECMMU_TOP/build/vm/demo/output.log" 2>/dev/null
log "demo finished in $(($(date +%s) - T0)) s"
exit "$rc"
