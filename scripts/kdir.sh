#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Print the kernel build directory modules are built against: $KDIR when the
# user brought their own tree, else the cached test kernel (provisioned on
# first use). Argument: kernel flavour (test|debug).
. "$(dirname "$0")/lib.sh"
if [ -n "${KDIR:-}" ]; then
	[ -f "$KDIR/Module.symvers" ] && [ -f "$KDIR/.config" ] ||
		die "KDIR=$KDIR is not a prepared kernel build (no .config/Module.symvers)"
	grep -q '^CONFIG_RUST=y' "$KDIR/.config" || die "KDIR=$KDIR has no CONFIG_RUST=y"
	echo "$KDIR"
	exit 0
fi
"$SECMMU_TOP/scripts/provision-rootfs.sh"
exec "$SECMMU_TOP/scripts/build-kernel.sh" "${1:-test}"
