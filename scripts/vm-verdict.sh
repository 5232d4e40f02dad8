#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Judge one VM run from the files guest-run.sh left in OUTDIR: the command's
# status, its KTAP results and the guest's dmesg. Writes OUTDIR/counts
# ("PASSED FAILED SKIPPED") and exits non-zero if the run failed.
set -uo pipefail
out=$1
fail=0
say() { printf '[secmmu] vm: %s\n' "$*" >&2; }

# Kernel reports that fail any run.
REPORTS='BUG:|WARNING:|Oops|KASAN|lockdep|general protection|RCU stall|rcu_sched self-detected stall|Call Trace|Kernel panic|blocked for more than'

read -r p f s < <(awk '
	/^(not )?ok [0-9]+/ {
		if ($0 ~ /# *SKIP/) s++
		else if ($1 == "not") f++
		else p++
	}
	END { printf "%d %d %d\n", p, f, s }' "$out/output.log" 2>/dev/null || echo "0 0 0")
: "${p:=0}" "${f:=0}" "${s:=0}"

if [ ! -f "$out/rc" ]; then
	say "the guest died before the command finished; console tail:"
	tail -n 40 "$out/console.log" >&2 2>/dev/null
	grep -E "$REPORTS" "$out/console.log" >&2 2>/dev/null | head -n 20
	fail=1
	f=$((f + 1))
else
	rc=$(cat "$out/rc")
	if [ "$rc" != 0 ]; then
		say "command exited with status $rc"
		fail=1
		[ "$f" -gt 0 ] || f=$((f + 1))
	fi
	if [ "$f" -gt 0 ] && [ "$rc" = 0 ]; then
		say "KTAP reports $f failing case(s) although the command exited 0"
		fail=1
	fi
	# Lines that match a pattern but report nothing: a debug kernel's boot
# banner for lockdep.
BENIGN='RCU lockdep checking is enabled'
if grep -E "$REPORTS" "$out/dmesg.txt" 2>/dev/null | grep -vE "$BENIGN" >"$out/reports.txt"; then
		say "kernel reports in dmesg (full log: $out/dmesg.txt):"
		head -n 20 "$out/reports.txt" >&2
		fail=1
		f=$((f + 1))
	fi
fi
echo "$p $f $s" >"$out/counts"
say "$p passed, $f failed, $s skipped$( ((fail)) && echo ' -> FAIL' || echo ' -> ok')"
# The command's own status wins, so 'make vm-run' returns it unchanged.
rc=$(cat "$out/rc" 2>/dev/null || echo 255)
[ "$rc" != 0 ] && exit "$rc"
exit "$fail"
