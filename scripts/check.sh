#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# make check: build whatever is missing, run every test, print a summary and
# end with "N passed, N failed, N skipped". Exits non-zero on any failure.
. "$(dirname "$0")/lib.sh"
set +e

T0=$(date +%s)
PASSED=0 FAILED=0 SKIPPED=0
FAILS=()
results="$SECMMU_TOP/build/check"
rm -rf "$results" && mkdir -p "$results"

# record NAME STATUS: one host-side check.
record() {
	if [ "$2" = 0 ]; then
		PASSED=$((PASSED + 1)); printf 'ok      %s\n' "$1"
	else
		FAILED=$((FAILED + 1)); FAILS+=("$1"); printf 'FAIL    %s\n' "$1"
	fi
}
# add_counts NAME FILE: add a "P F S" counts file from a VM run.
add_counts() {
	local p=0 f=1 s=0
	[ -f "$2" ] && read -r p f s <"$2"
	PASSED=$((PASSED + p)) FAILED=$((FAILED + f)) SKIPPED=$((SKIPPED + s))
	[ "$f" = 0 ] || FAILS+=("$1")
	printf '%-7s %s (%s passed, %s failed, %s skipped)\n' "$([ "$f" = 0 ] && echo ok || echo FAIL)" "$1" "$p" "$f" "$s"
}
# show_failures LOG: each failing case of a VM run's KTAP log with what it
# logged since it started (its last 15 "#" lines), so that CI's output
# alone says why.
show_failures() {
	awk '/^# +RUN / { n = 0 }
	     /^#/ { buf[n++ % 15] = $0 }
	     /^not ok / { for (i = (n > 15 ? n - 15 : 0); i < n; i++) print "    | " buf[i % 15]
			  print "    " $0; n = 0 }' "$1" 2>/dev/null
}

echo "== provisioning (cached under $SECMMU_CACHE)"
flavour=${SECMMU_FLAVOUR:-test}
kb=$("$SECMMU_TOP/scripts/kdir.sh" "$flavour") || { echo "0 passed, 1 failed"; exit 1; }
export SECMMU_KBUILD=$kb
echo "$flavour kernel: $kb"

echo "== build"
"$SECMMU_TOP/scripts/build-module.sh" modules >"$results/module.log" 2>&1
record "build secmmu.ko" $? || true
[ -f "$SECMMU_TOP/secmmu.ko" ] || { tail -n 30 "$results/module.log"; echo "$PASSED passed, $((FAILED)) failed"; exit 1; }
"$SECMMU_TOP/scripts/build-selftests.sh" >"$results/selftests-build.log" 2>&1
rc=$?; record "build selftests" $rc; ((rc == 0)) || tail -n 30 "$results/selftests-build.log"

echo "== lint"
"$SECMMU_TOP/scripts/check-docs.sh" >"$results/docs.log" 2>&1
rc=$?; record "Documentation/*.rst parse strictly (docutils), index lists them all" $rc
((rc == 0)) || grep -E '^FAIL' "$results/docs.log"
# The check fails on broken markup: a copy with an unterminated literal.
bad="$results/docs-broken"
rm -rf "$bad" && cp -r "$SECMMU_TOP/Documentation" "$bad" && printf '\nBroken ``literal\n' >>"$bad/usage.rst"
SECMMU_DOCS=$bad "$SECMMU_TOP/scripts/check-docs.sh" >"$results/docs-broken.log" 2>&1
rc=$?
grep -q '^FAIL usage.rst' "$results/docs-broken.log"; found=$?
record "the documentation check fails on broken markup" $((rc == 0 || found != 0))
"$SECMMU_TOP/scripts/build-module.sh" rustfmtcheck >"$results/rustfmt.log" 2>&1
rc=$?; record "rustfmtcheck (module)" $rc; ((rc == 0)) || tail -n 30 "$results/rustfmt.log"
"$SECMMU_TOP/scripts/build-module.sh" clippy >"$results/clippy.log" 2>&1
rc=$?; record "CLIPPY=1 W=1 build (module), no warnings" $rc; ((rc == 0)) || grep -A8 -E '^(warning|error)' "$results/clippy.log" | head -n 40
# The clippy build replaced the module; rebuild it plainly for the VM.
"$SECMMU_TOP/scripts/build-module.sh" modules >>"$results/module.log" 2>&1 || record "rebuild secmmu.ko" 1
run_cmd "cd '$SECMMU_TOP/selftests/rust' && cargo fmt --check && cd '$SECMMU_TOP/tools/secmmu' && cargo fmt --check" >"$results/cargo-fmt.log" 2>&1
rc=$?; record "cargo fmt --check (selftests, tools)" $rc; ((rc == 0)) || head -n 30 "$results/cargo-fmt.log"
run_cmd "cd '$SECMMU_TOP/selftests/rust' && cargo clippy -q --offline --locked --all-targets -- -D warnings && cd '$SECMMU_TOP/tools/secmmu' && cargo clippy -q --offline --locked --all-targets -- -D warnings" >"$results/cargo-clippy.log" 2>&1
rc=$?; record "cargo clippy, no warnings (selftests, tools)" $rc; ((rc == 0)) || head -n 40 "$results/cargo-clippy.log"

echo "== host-side cargo test"
for crate in "$SECMMU_TOP"/selftests/rust "$SECMMU_TOP"/tools/secmmu; do
	run_cmd "cd '$crate' && cargo test -q --offline --locked 2>&1" >"$results/cargo-test.log" 2>&1
	rc=$?
	# "test result: ok. N passed; M failed; ..." per test binary
	read -r p f < <(awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
		END { print p + 0, f + 0 }' "$results/cargo-test.log")
	((rc == 0)) || [ "$f" -gt 0 ] || f=1
	echo "$p $f 0" >"$results/cargo-test.counts"
	add_counts "cargo test $(basename "$crate")" "$results/cargo-test.counts"
	((rc == 0)) || tail -n 30 "$results/cargo-test.log"
done

echo "== selftests in the VM"
# The guest does not inherit this environment: hand the suite's knobs over
# in the command. suite_cmd MIN: the short stress run must reach MIN THP
# migrations unless SECMMU_STRESS_SHORT_MIN says otherwise. The debug
# kernel migrates about a tenth as fast (50-odd in 20 s), so it asks 10:
# its pass is there for KASAN, lockdep and kmemleak, not for throughput.
suite_cmd() {
	echo "SECMMU_FUZZ_SEED=${SECMMU_FUZZ_SEED:-20261127}" \
		"SECMMU_STRESS_SHORT=${SECMMU_STRESS_SHORT:-20}" \
		${2:+"SECMMU_PATHS_CASES='$2'"} \
		"SECMMU_STRESS_SHORT_MIN=${SECMMU_STRESS_SHORT_MIN:-$1} selftests/run_vm_tests.sh"
}
min=50
[ "$flavour" = debug ] && min=10
SECMMU_QUIET=1 "$SECMMU_TOP/scripts/vm-run.sh" --out "$SECMMU_TOP/build/vm/selftests" -- "$(suite_cmd $min)"
add_counts "VM selftests (KTAP + dmesg scan)" "$SECMMU_TOP/build/vm/selftests/counts"
grep -E '^(not ok|ok) ' "$SECMMU_TOP/build/vm/selftests/output.log" | sed 's/^/    /'
show_failures "$SECMMU_TOP/build/vm/selftests/output.log"

# Kernel mutants: the test kernel with real historical secondary-TLB bugs
# put back, each behind its own knob (kernel/mutants/). One boot: the whole
# suite with every knob off (the control), then each mutant alone against
# the path cases that must kill it. Skipped with KDIR= (only the user's
# kernel) or SECMMU_CHECK_MUTANTS=0, and then listed as not run.
if [ "${SECMMU_CHECK_MUTANTS:-1}" = 1 ] && [ -z "${KDIR:-}" ] && [ "$flavour" = test ]; then
	echo "== kernel mutants (control: the whole suite, every knob off; then each mutant)"
	if mkb=$("$SECMMU_TOP/scripts/build-mutant-kernel.sh" 2>"$results/mutant-kernel.log"); then
		echo "mutant kernel: $mkb"
		SECMMU_KBUILD=$mkb SECMMU_QUIET=1 "$SECMMU_TOP/scripts/vm-run.sh" \
			--out "$SECMMU_TOP/build/vm/mutants" -- "MUTANT_CONTROL_SUITE=1 $(suite_cmd $min | sed 's,selftests/run_vm_tests.sh$,selftests/run_mutants.sh,')"
		add_counts "kernel mutants: control suite and kill runs (KTAP + dmesg scan)" \
			"$SECMMU_TOP/build/vm/mutants/counts"
		show_failures "$SECMMU_TOP/build/vm/mutants/output.log"
		sed -n '/^# kill table/,/^# control: /p' "$SECMMU_TOP/build/vm/mutants/output.log" | sed 's/^# \{0,1\}/    /'
	else
		tail -n 20 "$results/mutant-kernel.log"
		record "build the mutant kernel" 1
	fi
else
	echo "== kernel mutants: not run (KDIR= or SECMMU_CHECK_MUTANTS=0)"
fi

echo "== the runner judges failures (these VM runs must fail)"
# runner_must_fail NAME SCRIPT WHY_REGEX: the runner's verdict must be
# failure, for the reason given.
runner_must_fail() {
	local out="$SECMMU_TOP/build/vm/runner-${2##*/}"
	mkdir -p "$SECMMU_TOP/build/vm"
	SECMMU_QUIET=1 "$SECMMU_TOP/scripts/vm-run.sh" --out "$out" -- "$2" 2>"$out.verdict"
	local rc=$?
	cat "$out.verdict" >&2
	if [ "$rc" != 0 ] && grep -qE "$3" "$out.verdict"; then
		record "runner fails a run with $1" 0
	else
		record "runner fails a run with $1 (verdict rc=$rc)" 1
	fi
}
runner_must_fail "a failing KTAP case" selftests/runner/ktap_fail.sh 'KTAP reports 1 failing'
runner_must_fail "a WARNING in dmesg" selftests/runner/dmesg_warning.sh 'kernel reports in dmesg'
runner_must_fail "a guest that crashed" selftests/runner/guest_panic.sh 'guest died'
# make vm-run returns the command's own status.
out="$SECMMU_TOP/build/vm/runner-status"
SECMMU_QUIET=1 "$SECMMU_TOP/scripts/vm-run.sh" --out "$out" -- 'exit 3' 2>/dev/null
rc=$?
record "runner returns the command's exit status (3, got $rc)" $((rc != 3))

# The whole suite again on the debug kernel (KASAN, lockdep, DEBUG_VM,
# kmemleak, Rust debug assertions and overflow checks). SECMMU_CHECK_DEBUG=0
# skips it (e.g. with KDIR=, where there is only the user's kernel).
if [ "${SECMMU_CHECK_DEBUG:-1}" = 1 ] && [ -z "${KDIR:-}" ] && [ "$flavour" = test ]; then
	echo "== selftests on the debug kernel"
	if dkb=$("$SECMMU_TOP/scripts/kdir.sh" debug 2>"$results/debug-kernel.log"); then
		echo "debug kernel: $dkb"
		SECMMU_FLAVOUR=debug "$SECMMU_TOP/scripts/build-module.sh" modules >"$results/module-debug.log" 2>&1
		rc=$?; record "build secmmu.ko for the debug kernel" $rc
		if ((rc == 0)); then
			SECMMU_KBUILD=$dkb SECMMU_QUIET=1 "$SECMMU_TOP/scripts/vm-run.sh" \
				--out "$SECMMU_TOP/build/vm/selftests-debug" -- "$(suite_cmd 10)"
			add_counts "VM selftests on the debug kernel (KTAP + dmesg scan + kmemleak)" \
				"$SECMMU_TOP/build/vm/selftests-debug/counts"
			show_failures "$SECMMU_TOP/build/vm/selftests-debug/output.log"
		fi
		# Leave the module built for the test kernel, as make demo expects.
		"$SECMMU_TOP/scripts/build-module.sh" modules >>"$results/module.log" 2>&1 ||
			record "rebuild secmmu.ko for the test kernel" 1
	else
		tail -n 20 "$results/debug-kernel.log"
		record "build the debug kernel" 1
	fi
fi

echo
echo "== summary ($(($(date +%s) - T0)) s)"
for f in "${FAILS[@]}"; do echo "failed: $f"; done
echo "$PASSED passed, $FAILED failed, $SKIPPED skipped"
[ "$FAILED" = 0 ]
