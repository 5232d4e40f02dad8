#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Configure and build (once, cached) the Rust-enabled test kernel from the
# cached linux-source tree. Prints the build (objtree) directory on stdout.
#
# The cache key covers the source version, the config fragment, this recipe
# and the rootfs (toolchain) key: change any of them and only the kernel is
# rebuilt.
. "$(dirname "$0")/lib.sh"

KERNEL_RECIPE=1
flavour=${1:-test}
frags=("$SECMMU_TOP/config/secmmu.config")
[ "$flavour" = debug ] && frags+=("$SECMMU_TOP/config/secmmu-debug.config")

src=$("$SECMMU_TOP/scripts/fetch-kernel-source.sh")
ver=$(cat "$src/.debian-version")
key=$( { echo "$ver $KERNEL_RECIPE"; toolchain_versions; cat "${frags[@]}"; } | hash_of)
kb="$SECMMU_CACHE/kbuild-$flavour-$ver-$key"
if [ -f "$kb/.complete" ]; then
	echo "$kb"
	exit 0
fi
# One kernel build at a time on this machine: a second caller waits, then
# finds the build done.
exec 9>"$SECMMU_CACHE/.kernel.lock"
flock 9
if [ -f "$kb/.complete" ]; then
	echo "$kb"
	exit 0
fi

# Seed a new build from the newest finished one of the same source and
# flavour: Kbuild then rebuilds only what the changed inputs touch.
seed=$(ls -dt "$SECMMU_CACHE/kbuild-$flavour-$ver-"*/.complete 2>/dev/null | head -n 1 || true)
if [ -n "$seed" ] && [ ! -d "$kb" ]; then
	seed=$(dirname "$seed")
	step "seed the kernel build from $(basename "$seed")" \
		cp -a --reflink=auto "$seed" "$kb.tmp" >&2 && mv "$kb.tmp" "$kb"
	rm -f "$kb/.complete"
fi
mkdir -p "$kb"
cat "${frags[@]}" >"$kb/secmmu.fragment"
mk="make -C '$src' O='$kb' ARCH=x86_64 LLVM=1"

configure() {
	in_rootfs "$mk KCONFIG_ALLCONFIG='$kb/secmmu.fragment' allnoconfig >/dev/null &&
		$mk olddefconfig >/dev/null"
	# Every option the fragment asks for must have stuck.
	local bad=0 line opt want got
	while IFS= read -r line; do
		case "$line" in CONFIG_*=*) ;; *) continue ;; esac
		opt=${line%%=*}
		want=${line#*=}
		got=$(grep -E "^$opt=|^# $opt is not set" "$kb/.config" | head -n 1)
		case "$got" in "$opt="*) got=${got#*=} ;; *) got=n ;; esac
		if [ "$want" != "$got" ]; then
			log "config: $opt wanted $want, got $got"
			bad=1
		fi
	done <"$kb/secmmu.fragment"
	return "$bad"
}
step "configure linux $ver ($flavour kernel)" configure >&2 ||
	die "kernel config did not take the fragment (see above); is the Rust toolchain usable? ($mk rustavailable)"

# One job more than CPUs keeps both busy while one waits on I/O or on a
# Rust crate the C side does not need.
jobs=$(($(nproc) + 1))
build() {
	in_rootfs "$mk -j$jobs all >'$kb/build.log' 2>&1" ||
		{ tail -n 40 "$kb/build.log" >&2; return 1; }
}
step "build linux $ver ($flavour kernel, -j$jobs; about 20 minutes on 2 CPUs)" build >&2 ||
	die "kernel build failed, see $kb/build.log"
echo "$ver" >"$kb/.debian-version"
echo "$src" >"$kb/.srctree"
touch "$kb/.complete"
echo "$kb"
