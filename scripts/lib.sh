# SPDX-License-Identifier: GPL-2.0
# Common helpers for the secmmu provisioning and VM scripts. Source it.

set -euo pipefail

SECMMU_TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SECMMU_CACHE=${SECMMU_CACHE:-/var/cache/secmmu}
SECMMU_SUITE=trixie
SECMMU_MIRROR=${SECMMU_MIRROR:-http://deb.debian.org/debian}
# The kernel series secmmu is built and tested against. The point release is
# whatever trixie-backports carries; it is recorded in the cache key.
SECMMU_KSERIES=7.3

export SECMMU_TOP SECMMU_CACHE

log() { printf '[secmmu] %s\n' "$*" >&2; }
die() { printf '[secmmu] error: %s\n' "$*" >&2; exit 1; }

# step NAME CMD...: run CMD, print what it does and how long it took.
step() {
	local name=$1 t0 rc
	shift
	log "$name ..."
	t0=$(date +%s)
	"$@" && rc=0 || rc=$?
	log "$name: $( ((rc == 0)) && echo done || echo "FAILED (rc=$rc)") in $(($(date +%s) - t0)) s"
	return "$rc"
}

hash_of() { sha256sum | cut -c1-16; }

# The rootfs's package list: the toolchain Debian builds its Rust kernels
# with, the C/Rust selftest toolchains, and what virtme-ng needs to boot.
ROOTFS_PACKAGES=(
	rustc rust-src cargo rustfmt rust-clippy bindgen libclang-dev clang lld llvm
	build-essential bc bison flex libelf-dev libssl-dev cpio kmod
	python3 python3-venv python3-pip pahole rsync xz-utils zstd
	virtme-ng qemu-system-x86 numactl procps util-linux
	ca-certificates busybox-static file iproute2 git systemd-standalone-tmpfiles
)
# Version of the rootfs recipe below; bump when the recipe changes.
ROOTFS_RECIPE=3
VNG_VERSION=1.42

rootfs_key() {
	printf '%s\n' "$SECMMU_SUITE" "$ROOTFS_RECIPE" "$VNG_VERSION" \
		"${ROOTFS_PACKAGES[@]}" | hash_of
}

rootfs_dir() { echo "$SECMMU_CACHE/rootfs-$SECMMU_SUITE-$(rootfs_key)"; }

# The versions of the tools a kernel build depends on, from the rootfs:
# part of the kernel's cache key (the rest of the rootfs does not matter).
toolchain_versions() {
	grep -E '^(rustc|rust-src|bindgen|clang|lld|llvm|libclang-dev|gcc|make|pahole) ' \
		"$(rootfs_dir)/.packages" 2>/dev/null
}

# in_rootfs [--vm] CMD: run CMD (a bash string) inside the trixie rootfs, in
# a private mount namespace so that no mount outlives the command. The
# checkout and the cache are visible at the same paths as on the host.
in_rootfs() {
	local root
	root=$(rootfs_dir)
	[ -f "$root/.complete" ] || die "rootfs missing: run 'make rootfs' first"
	local pwd_now
	pwd_now=$(pwd)
	unshare -m --propagation private -- bash -euo pipefail -c '
		root=$1; top=$2; cache=$3; cwd=$4; shift 4
		mount --rbind /proc "$root/proc"
		mount --rbind /sys "$root/sys"
		mount --rbind /dev "$root/dev"
		mount -t tmpfs -o size=4g tmpfs "$root/tmp"
		mkdir -p "$root$top" "$root$cache"
		mount --bind "$cache" "$root$cache"
		mount --bind "$top" "$root$top"
		# make shell: an rc file for the guest root shell inserts the module.
		if [ -n "${SECMMU_BASHRC:-}" ]; then
			touch "$root/root/.bashrc"
			mount --bind "$SECMMU_BASHRC" "$root/root/.bashrc"
		fi
		cp /etc/resolv.conf "$root/etc/resolv.conf" 2>/dev/null || true
		exec chroot "$root" /usr/bin/env -i \
			HOME=/root TERM="${TERM:-dumb}" LANG=C.UTF-8 \
			PATH=/opt/vng/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
			SECMMU_CACHE="$cache" SECMMU_TOP="$top" CI="${CI:-}" \
			bash -c "cd \"\$0\" && $*" "$cwd"
	' secmmu "$root" "$SECMMU_TOP" "$SECMMU_CACHE" "$pwd_now" "$*"
}

# run_cmd CMD: run a bash string with the project's toolchain: inside the
# rootfs, or on the host when the user brought their own kernel (KDIR=).
run_cmd() {
	if [ -n "${KDIR:-}" ]; then
		bash -euo pipefail -c "$*"
	else
		in_rootfs "$*"
	fi
}
