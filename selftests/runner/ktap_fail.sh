#!/bin/bash
# Runner self-test: a KTAP case that fails while the command exits 0.
# vm-run.sh must report this run as failed.
echo "TAP version 13"
echo "1..2"
echo "ok 1 runner_selftest_passing_case"
echo "not ok 2 runner_selftest_deliberate_failure"
exit 0
