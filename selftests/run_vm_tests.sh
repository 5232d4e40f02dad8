#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Runs inside the test VM: every built selftest, each printing KTAP. Exits
# non-zero if any failed. Built by scripts/build-selftests.sh into build/.
top=${SECMMU_TOP:-$(cd "$(dirname "$0")/.." && pwd)}
bin="$top/build/selftests"
rc=0
# NUMA balancing would move pages behind the tests' backs (the device's own
# faults are NUMA hinting faults); the scenario turns it on for its run.
echo 0 >/proc/sys/kernel/numa_balancing
# Leak detection where the kernel has it (the debug kernel): forget what
# boot left, judge only what the tests leave.
leaks=/sys/kernel/debug/kmemleak
[ -w "$leaks" ] && echo clear >"$leaks"
# Every selftest the tree has must have been built: a missing binary fails
# the run (it is not skipped). The path matrix runs through `secmmu paths`,
# which also prints the path x oracle matrix.
expect() {
	for f in "$top"/selftests/c/*.c; do echo "c/$(basename "$f" .c)"; done
	sed -n 's/^name = "\(.*_test\)"/rust\/\1/p' "$top/selftests/rust/Cargo.toml"
}
for t in $(expect); do
	if [ ! -x "$bin/$t" ]; then
		echo "# selftest: $t"
		echo "TAP version 13"
		echo "1..1"
		echo "not ok 1 $(basename "$t") # the binary $bin/$t is missing"
		rc=1
		continue
	fi
	[ "$t" = c/paths_test ] && continue
	echo "# selftest: $(basename "$t")"
	"$bin/$t" || rc=1
done
# SECMMU_PATHS_CASES="a b": only those path cases (a run by hand;
# the cases left out are listed as not run).
echo "# selftest: secmmu paths${SECMMU_PATHS_CASES:+ (only: $SECMMU_PATHS_CASES)}"
# shellcheck disable=SC2086 # a list of case names
"$top/build/bin/secmmu" paths --ktap --bin "$bin/c/paths_test" ${SECMMU_PATHS_CASES:-} || rc=1
# The seed scenario, bounded: every migration driver against a stream.
echo "# selftest: secmmu scenario"
"$top/build/bin/secmmu" scenario --ktap || rc=1
# The fuzzer, a fixed short sequence (make fuzz runs longer ones).
echo "# selftest: secmmu fuzz"
"$top/build/bin/secmmu" fuzz --ktap --seed "${SECMMU_FUZZ_SEED:-20261127}" --ops 2000 || rc=1
# Its detector fires: with a deliberately wrong model the run must fail
# and print the seed and the sequence.
echo "# selftest: secmmu fuzz detector"
echo "TAP version 13"
echo "1..1"
out=$("$top/build/bin/secmmu" fuzz --seed 7 --ops 2000 --break-model 2>&1)
if [ $? -ne 0 ] && grep -q "replay with: secmmu fuzz --seed 7" <<<"$out" &&
	grep -q "BIND" <<<"$out"; then
	echo "ok 1 fuzz_detector_fires"
else
	echo "# the fuzzer did not report the broken model:"
	tail -n 5 <<<"$out" | sed 's/^/# /'
	echo "not ok 1 fuzz_detector_fires"
	rc=1
fi
# A short bounded stress (make stress runs the full one).
echo "# selftest: secmmu stress (short)"
"$top/build/bin/secmmu" stress --ktap --seconds "${SECMMU_STRESS_SHORT:-20}" \
	--min-migrations "${SECMMU_STRESS_SHORT_MIN:-50}" || rc=1
# The stress detectors fire: with the helper unhardened and late
# invalidations injected (the pre-fix ordering) the device writes through
# translations the kernel asked it to drop, and the run must fail. It stops
# at the first stale access; 120 s is the limit for a slow kernel.
echo "# selftest: secmmu stress detector"
echo "TAP version 13"
echo "1..1"
out=$("$top/build/bin/secmmu" stress --seconds 120 --min-migrations 1 --inject 2>&1)
if [ $? -ne 0 ] && grep -q "no_injection_effects: FAILED: stale_accesses" <<<"$out"; then
	echo "ok 1 stress_detector_fires"
	grep -E "stress: (thp migrations|stream writes)|FAILED" <<<"$out" | sed 's/^/# /'
else
	echo "# the stress run did not fail under injection:"
	tail -n 12 <<<"$out" | sed 's/^/# /'
	echo "not ok 1 stress_detector_fires"
	rc=1
fi
# Leaks: kmemleak reports an object once it has been unreferenced for a
# while and seen by two scans. kmemleak_scan prints how many it reports.
kmemleak_scan() {
	echo scan >"$leaks"; sleep 6; echo scan >"$leaks"
	grep -c '^unreferenced object' "$leaks"
}
if [ -w "$leaks" ]; then
	echo "# selftest: kmemleak"
	echo "TAP version 13"
	echo "1..2"
	found=$(kmemleak_scan)
	if [ "$found" = 0 ]; then
		echo "ok 1 kmemleak_no_leaks"
	else
		echo "# kmemleak: $found unreferenced object(s):"
		head -n 60 "$leaks" | sed 's/^/# /'
		echo "not ok 1 kmemleak_no_leaks"
		rc=1
	fi
	# The check fires: forget what was seen, leak one object on purpose
	# (inject leak_object=1), and the same scan must report it, from
	# secmmu's code. kmemleak does not report an object while a stale copy
	# of its address sits in scanned memory (a kernel stack, a reused
	# slab object): the leak is made by a process that exits at once, and
	# up to 3 leaks are tried, each with its own 2 scans. It fails if none
	# is reported.
	echo clear >"$leaks"
	fired=0
	for try in 1 2 3; do
		sh -c 'echo leak_object=1 >/sys/kernel/debug/secmmu/inject'
		found=$(kmemleak_scan)
		if [ "$found" != 0 ] && grep -q secmmu "$leaks"; then
			fired=$try
			break
		fi
		echo "# leak $try: kmemleak reported $found object(s), none from secmmu"
	done
	if [ "$fired" != 0 ]; then
		echo "# kmemleak reported the object leaked on purpose (leak $fired of 3)"
		echo "ok 2 kmemleak_detector_fires"
	else
		echo "# kmemleak reported none of 3 objects leaked on purpose"
		echo "not ok 2 kmemleak_detector_fires"
		rc=1
	fi
	# The leak is deliberate and stays until reboot; kmemleak forgets it.
	echo clear >"$leaks"
fi
exit "$rc"
