#!/bin/bash
# Runner self-test: every case passes, but a WARNING appears in dmesg.
# vm-run.sh must report this run as failed.
echo "WARNING: secmmu runner self-test, injected on purpose" >/dev/kmsg
echo "TAP version 13"
echo "1..1"
echo "ok 1 runner_selftest_clean_case"
exit 0
