#!/bin/bash
# Runner self-test: the guest kernel crashes before the command finishes.
# vm-run.sh must report this run as failed.
echo "TAP version 13"
echo "1..1"
echo c >/proc/sysrq-trigger
echo "ok 1 runner_selftest_unreachable"
