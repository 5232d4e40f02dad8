#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Boot the test kernel with virtme-ng (2 vCPUs, 2 NUMA nodes with one CPU
# each), insert secmmu.ko, run a command as root in the checkout, collect the
# kernel console and dmesg, and return the command's status.
#
#   vm-run.sh [--shell] [--no-module] [--out DIR] [--] CMD...
#
# The run fails (non-zero) when the command fails, when its KTAP output has a
# failing case, when the guest died before the command finished, or when the
# guest's dmesg holds a kernel report (BUG:, WARNING:, Oops, KASAN, lockdep,
# general protection, RCU stall, Call Trace, a hung task).
. "$(dirname "$0")/lib.sh"

shell=0 module=1 out=""
while [ $# -gt 0 ]; do
	case "$1" in
	--shell) shell=1 ;;
	--no-module) module=0 ;;
	--out) out=$2; shift ;;
	--) shift; break ;;
	*) break ;;
	esac
	shift
done
cmd="$*"
[ "$shell" = 1 ] || [ -n "$cmd" ] || die "usage: vm-run.sh [--shell] [--no-module] [--out DIR] -- CMD"

kb=${SECMMU_KBUILD:?SECMMU_KBUILD must point at the kernel build}
bz="$kb/arch/x86/boot/bzImage"
[ -f "$bz" ] || die "no kernel image at $bz"
ko="$SECMMU_TOP/secmmu.ko"
[ "$module" = 0 ] || [ -f "$ko" ] || die "secmmu.ko is not built (make module)"

# KVM when it can run the guest, else TCG. Here /dev/kvm may be a paravirt
# shim (kvm_pvm) on which QEMU aborts, so probe instead of trusting the node.
accel() {
	if [ -n "${SECMMU_ACCEL:-}" ]; then echo "$SECMMU_ACCEL"; return; fi
	if [ ! -w /dev/kvm ] || [ -d /sys/module/kvm_pvm ]; then
		echo tcg; return
	fi
	if run_cmd "timeout 20 qemu-system-x86_64 -accel kvm -cpu host -M q35 -m 64 \
		-nodefaults -display none -no-reboot -kernel '$bz' \
		-append 'panic=-1 console=none' >/dev/null 2>&1"; then
		echo kvm
	else
		echo tcg
	fi
}
acc=$(accel)

out=${out:-$SECMMU_TOP/build/vm/last}
rm -rf "$out" && mkdir -p "$out"
# lib/test_hmm.ko of this kernel (CONFIG_TEST_HMM=m), for the path case
# that races its migrate_vma() (guest-run.sh names it in SECMMU_TEST_HMM).
[ ! -f "$kb/lib/test_hmm.ko" ] || cp "$kb/lib/test_hmm.ko" "$out/test_hmm.ko"

vng_args=(--run "$bz" --user root --cpus 2 --memory 2G
	--numa 1G,cpus=0 --numa 1G,cpus=1
	--qemu-opts="-smp 2,sockets=2,cores=1,threads=1"
	--rwdir "$SECMMU_TOP" --rwdir "$out" -v
	# 4-level paging: TCG's "-cpu max" offers LA57, and the debug kernel's
	# KASAN shadow setup has tripped over 5-level paging at early boot.
	--append "no5lvl"
	# TCG's TSC is one clock for every vCPU, but the kernel finds it
	# "unsynchronized" and falls back to the HPET, whose every read is an
	# emulated MMIO access: timestamps would dominate the device's callback.
	--append "tsc=reliable"
	# The IO-APIC timer check counts emulated ticks in a fixed window: on a
	# loaded host TCG misses it and the guest panics at boot ("IO-APIC +
	# timer doesn't work"). Seen here with two VMs and a kernel build on 2
	# CPUs; the check is for broken real hardware.
	--append "no_timer_check")
[ "$acc" = tcg ] && vng_args+=(--disable-kvm)

q() { printf '%q ' "$@"; }
if [ "$shell" = 1 ]; then
	log "VM shell ($acc); the checkout is at $SECMMU_TOP, secmmu.ko is inserted"
	# virtme-ng's own interactive shell (an --exec script has no terminal);
	# the module is inserted by the shell's rc file.
	SECMMU_BASHRC="$SECMMU_TOP/scripts/guest-bashrc" \
		run_cmd "cd $(q "$SECMMU_TOP") && vng $(q "${vng_args[@]}")"
	exit $?
fi

t0=$(date +%s)
log "booting $(basename "$kb") ($acc, 2 vCPUs, 2 NUMA nodes)"
rc=0
run_cmd "cd $(q "$SECMMU_TOP") && vng $(q "${vng_args[@]}") \
	--exec $(q "SECMMU_ACCEL=$acc bash $SECMMU_TOP/scripts/guest-run.sh $(q "$out") $module $(q "$cmd")") \
	</dev/null >$(q "$out/console.log") 2>&1" || rc=$?
log "VM run finished in $(($(date +%s) - t0)) s (vng rc=$rc)"

[ -n "${SECMMU_QUIET:-}" ] || cat "$out/output.log" 2>/dev/null
exec "$SECMMU_TOP/scripts/vm-verdict.sh" "$out"
