#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Runs INSIDE the VM booted on the mutant kernel (scripts/build-mutant-kernel.sh,
# make mutants): does every kernel mutant of kernel/mutants/mutants.tsv get
# killed by its kill tests (build/selftests/c/paths_test cases)?
#
#   selftests/run_mutants.sh [MUTANT...]     (default: every mutant)
#
# First the control: every knob 0, every kill test once; all must pass. Then,
# per mutant: its knob to 1, its kill tests, the knob back to 0. A mutant is
# killed when one of its kill tests fails that passed in the control. Prints
# KTAP (one line for the control, one per mutant: ok = killed) and the kill
# table; exits non-zero if the control failed or a mutant survived that is
# not a recorded finding (kernel/mutants/findings.tsv: a survivor listed
# there with the reason is reported as a skipped case, never dropped). The
# tests never read the knobs: only this runner writes them.
#
# Environment: MUTANT_CASE_TIMEOUT (s, default 150), MUTANT_STOP_AT_KILL=1
# (skip a mutant's remaining kill tests once one failed), MUTANT_TSV and
# MUTANT_TEST_BIN (another table or test binary). Per-case logs, the
# kernel messages of each mutant and the kill table go to
# $SECMMU_VM_OUT/mutants/ (the VM run's output directory).
top=${SECMMU_TOP:-$(cd "$(dirname "$0")/.." && pwd)}
tsv=${MUTANT_TSV:-$top/kernel/mutants/mutants.tsv}
bin=${MUTANT_TEST_BIN:-$top/build/selftests/c/paths_test}
params=${MUTANT_PARAMS:-/sys/module/kernel/parameters}
# MUTANT_PARAMS=<dir of fake knobs>: a dry run of the runner's logic outside
# the VM; it then leaves the kernel log and numa_balancing alone.
in_vm=1
[ -n "${MUTANT_PARAMS:-}" ] && in_vm=0
klog() { ((in_vm)) && dmesg "$@"; }
case_timeout=${MUTANT_CASE_TIMEOUT:-150}
logs="${SECMMU_VM_OUT:-/tmp}/mutants"
# Kernel reports (as scripts/vm-verdict.sh counts them).
REPORTS='BUG:|WARNING:|Oops|KASAN|lockdep|general protection|RCU stall|rcu_sched self-detected stall|Call Trace|Kernel panic|blocked for more than'

bail() {
	echo "TAP version 13"
	echo "1..0"
	echo "Bail out! $*"
	exit 2
}

# --- the table, the binary, the cases, the knobs: all must be there ---
[ -f "$tsv" ] || bail "no mutant table at $tsv"
names=() knobs=() fixes=() kills=()
while IFS=$'\t' read -r name knob fix kill _desc; do
	case "$name" in '' | '#'*) continue ;; esac
	[ -n "$knob" ] && [ -n "$fix" ] && [ -n "$kill" ] || bail "malformed line for '$name' in $tsv"
	names+=("$name") knobs+=("$knob") fixes+=("$fix") kills+=("$kill")
done <"$tsv"
[ "${#names[@]}" -gt 0 ] || bail "no mutants in $tsv"
sel=()
if [ $# -gt 0 ]; then
	for want in "$@"; do
		found=
		for i in "${!names[@]}"; do
			[ "${names[$i]}" = "$want" ] && { sel+=("$i"); found=1; }
		done
		[ -n "$found" ] || bail "no mutant named '$want' in $tsv"
	done
else
	sel=("${!names[@]}")
fi
[ -x "$bin" ] || bail "no test binary $bin (selftests/c/paths_test.c, built by scripts/build-selftests.sh)"
cases=$("$bin" -l 2>&1 | awk 'NF >= 1 && $1 != "#" && $NF !~ /^-+$/ {print $NF}')
missing=""
for i in "${sel[@]}"; do
	for c in ${kills[$i]//,/ }; do
		grep -qxF "$c" <<<"$cases" || missing+=" ${names[$i]}:$c"
	done
	[ -w "$params/${knobs[$i]}" ] || missing+=" knob:${knobs[$i]}"
done
[ -z "$missing" ] || bail "missing kill tests or knobs (is this the mutant kernel?):$missing"

# Every knob off, whatever a previous run left.
all_off() {
	local k
	for k in "${knobs[@]}"; do
		[ -w "$params/$k" ] && echo 0 >"$params/$k"
	done
}
trap all_off EXIT
all_off
((in_vm)) && echo 0 >/proc/sys/kernel/numa_balancing
mkdir -p "$logs"
rm -f "$logs"/*.log "$logs"/*.dmesg

now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

# run_case TAG CASE: runs one kill test; sets case_rc, case_secs, case_oracles.
run_case() {
	local tag=$1 c=$2 t0 log="$logs/$1-$2.log"
	t0=$(now)
	timeout -k 10 "$case_timeout" "$bin" -t "$c" >"$log" 2>&1
	case_rc=$?
	case_secs=$(secs "$t0" "$(now)")
	# Cells that saw violations name their oracle.
	case_oracles=$(grep -o 'cell path=[^ ]* oracle=[^ ]* ops=[0-9]* accesses=[0-9]* violations=[0-9]*' "$log" |
		awk '{ split($6, v, "="); if (v[2] > 0) { sub("oracle=", "", $3); print $3 } }' | sort -u | paste -sd, -)
	[ "$case_rc" = 124 ] && case_oracles="${case_oracles:+$case_oracles,}timeout"
	# A case that cannot run here SKIPs (and prints a not_run cell).
	case_skip=$(sed -n 's/.*not_run=\([^ ]*\).*/\1/p; s/^ok [0-9][0-9]* .*# *SKIP *\(.*\)/\1/p' "$log" | head -n 1)
	[ "$case_rc" = 0 ] || case_skip=""
	return 0
}

total=$((1 + ${#sel[@]}))
if [ "${MUTANT_CONTROL_SUITE:-0}" != 1 ]; then
	echo "TAP version 13"
	echo "1..$total"
fi

# --- the control ---
# With MUTANT_CONTROL_SUITE=1 (make check) the control is first the whole
# suite, every knob off: the mutant kernel must pass it like the test
# kernel does, which shows the patches change nothing else.
suite_rc=0
if [ "${MUTANT_CONTROL_SUITE:-0}" = 1 ]; then
	"$top/selftests/run_vm_tests.sh" || suite_rc=1
	echo "# control: the whole suite on the mutant kernel: $([ "$suite_rc" = 0 ] && echo passed || echo FAILED)"
	all_off
	echo "TAP version 13"
	echo "1..$total"
fi
declare -A control_ok
ctl_fail="" ctl_skip=""
t_ctl=$(now)
mapfile -t uniq_cases < <(for i in "${sel[@]}"; do tr ',' '\n' <<<"${kills[$i]}"; done | awk '!seen[$0]++')
for c in "${uniq_cases[@]}"; do
	run_case control "$c"
	if [ "$case_rc" = 0 ] && [ -n "$case_skip" ]; then
		control_ok[$c]=1
		ctl_skip+=" $c"
		echo "# control: $c: not run here ($case_skip): it cannot kill anything"
	elif [ "$case_rc" = 0 ]; then
		control_ok[$c]=1
		echo "# control: $c: pass (${case_secs} s)"
	else
		ctl_fail+=" $c"
		echo "# control: $c: FAIL rc=$case_rc (${case_secs} s${case_oracles:+, oracle $case_oracles}); log $logs/control-$c.log"
		grep -E '^(not ok|#.*(FAIL|Expected|violations=[1-9]))' "$logs/control-$c.log" | head -n 5 | sed 's/^/#   /'
	fi
done
if [ -z "$ctl_fail" ]; then
	echo "ok 1 control_all_knobs_off # ${#uniq_cases[@]} kill tests in $(secs "$t_ctl" "$(now)") s${ctl_skip:+; not run:$ctl_skip}"
else
	echo "not ok 1 control_all_knobs_off # failed:$ctl_fail"
fi
# Whatever the control left in the kernel log stays there for vm-verdict.sh.
klog >"$logs/control.dmesg"

# --- the findings: mutants known to survive today's cases ---
# kernel/mutants/findings.tsv: name, why no case kills it yet. A survivor
# listed there is reported as a finding; any other survivor fails the run.
declare -A finding
findings=${MUTANT_FINDINGS:-$(dirname "$tsv")/findings.tsv}
if [ -f "$findings" ]; then
	while IFS=$'\t' read -r fname why; do
		case "$fname" in '' | '#'*) continue ;; esac
		finding[$fname]=$why
	done <"$findings"
fi

# --- the mutants ---
table=()
survived=0 known=0
n=1
for i in "${sel[@]}"; do
	n=$((n + 1))
	name=${names[$i]} knob=${knobs[$i]}
	failed="" oracles="" first="-" skipped_after_kill=0
	all_off
	klog -C
	echo 1 >"$params/$knob"
	case "$(cat "$params/$knob")" in Y | 1) ;; *) bail "$knob did not take 1" ;; esac
	t0=$(now)
	for c in ${kills[$i]//,/ }; do
		if [ -n "$failed" ] && [ "${MUTANT_STOP_AT_KILL:-0}" = 1 ]; then
			skipped_after_kill=1
			break
		fi
		run_case "$name" "$c"
		if [ "$case_rc" = 0 ] && [ -n "$case_skip" ]; then
			echo "# $name: $c: not run ($case_skip)"
		elif [ "$case_rc" = 0 ]; then
			echo "# $name: $c: pass (${case_secs} s)"
		elif [ -z "${control_ok[$c]:-}" ]; then
			echo "# $name: $c: fails, but failed in the control too: not counted"
		else
			failed+="${failed:+,}$c"
			oracles+="${oracles:+,}${case_oracles:-none}"
			[ "$first" = - ] && first="$(secs "$t0" "$(now)") s"
			echo "# $name: $c: FAIL rc=$case_rc (${case_secs} s, oracle ${case_oracles:-none}); log $logs/$name-$c.log"
		fi
	done
	echo 0 >"$params/$knob"
	# Kernel reports under a mutant are evidence, not a test-suite failure:
	# saved with the mutant, then cleared so vm-verdict.sh judges the rest.
	klog >"$logs/$name.dmesg"
	if grep -qE "$REPORTS" "$logs/$name.dmesg"; then
		oracles+="${oracles:+,}kernel-report"
		echo "# $name: kernel reports (see $logs/$name.dmesg):"
		grep -E "$REPORTS" "$logs/$name.dmesg" | head -n 5 | sed 's/^/#   /'
	fi
	klog -C
	oracles=$(tr ',' '\n' <<<"$oracles" | awk 'NF && !seen[$0]++' | paste -sd, -)
	if [ -n "$failed" ]; then
		echo "ok $n $name # killed by $failed$( ((skipped_after_kill)) && echo ' (stopped at the first kill)')"
		killed=yes
	elif [ -n "${finding[$name]:-}" ]; then
		# A survivor already recorded as a finding (findings.tsv): listed,
		# with what is missing, not hidden; it does not fail the run.
		echo "ok $n $name # SKIP survived (a recorded finding): ${finding[$name]}"
		killed="no (finding)"
		known=$((known + 1))
	else
		echo "not ok $n $name # survived: ${kills[$i]} all passed"
		killed=no
		survived=$((survived + 1))
	fi
	table+=("$name|${fixes[$i]}|${failed:--}|${oracles:--}|$first|$killed")
done

# --- the kill table ---
{
	echo "mutant|upstream fix|failed tests|oracle that fired|time to first violation|killed"
	printf '%s\n' "${table[@]}"
} >"$logs/kill-table.txt"
echo "# kill table (time: from the knob write to the end of the first failing case):"
awk -F'|' '{ for (i = 1; i <= NF; i++) { cell[NR, i] = $i; if (length($i) > w[i]) w[i] = length($i) } n = NF }
	END { for (r = 1; r <= NR; r++) { line = "#"; for (i = 1; i <= n; i++)
		line = line sprintf(" %-*s%s", w[i], cell[r, i], i < n ? " |" : ""); print line } }' \
	"$logs/kill-table.txt"
echo "# control: $([ -z "$ctl_fail" ] && echo passed || echo "FAILED:$ctl_fail"); mutants: $((${#sel[@]} - survived - known)) killed, $survived survived, $known survived as recorded findings"
[ -z "$ctl_fail" ] && [ "$survived" = 0 ] && [ "$suite_rc" = 0 ]
