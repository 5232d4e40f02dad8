#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Build (once, cached) the Debian trixie rootfs that holds the kernel Rust
# toolchain, the selftest toolchains, virtme-ng and QEMU.
. "$(dirname "$0")/lib.sh"

root=$(rootfs_dir)
mkdir -p "$SECMMU_CACHE"
exec 9>"$SECMMU_CACHE/.rootfs.lock"
flock 9
if [ -f "$root/.complete" ]; then
	log "rootfs: cached at $root"
	exit 0
fi

command -v debootstrap >/dev/null || {
	log "installing debootstrap on the host (the only host change)"
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
}

log "first run: building the trixie rootfs and the test kernel takes several minutes"
mkdir -p "$SECMMU_CACHE"
tmp="$root.tmp"
rm -rf "$tmp"

bootstrap() {
	debootstrap --variant=minbase "$SECMMU_SUITE" "$tmp" "$SECMMU_MIRROR" >"$SECMMU_CACHE/debootstrap.log" 2>&1
}
step "debootstrap $SECMMU_SUITE (minbase)" bootstrap ||
	die "debootstrap failed, see $SECMMU_CACHE/debootstrap.log"

cat >"$tmp/etc/apt/sources.list" <<SRC
deb $SECMMU_MIRROR $SECMMU_SUITE main
deb $SECMMU_MIRROR $SECMMU_SUITE-updates main
deb $SECMMU_MIRROR $SECMMU_SUITE-backports main
deb http://deb.debian.org/debian-security $SECMMU_SUITE-security main
SRC
echo 'APT::Install-Recommends "false";' >"$tmp/etc/apt/apt.conf.d/90norecommends"

install_pkgs() {
	unshare -m --propagation private -- bash -euo pipefail -c '
		root=$1; shift
		mount --rbind /proc "$root/proc"; mount --rbind /sys "$root/sys"; mount --rbind /dev "$root/dev"
		cp /etc/resolv.conf "$root/etc/resolv.conf" 2>/dev/null || true
		chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive \
			bash -euo pipefail -c "apt-get update -qq && apt-get install -y -qq $*"
	' secmmu "$tmp" "$@" >"$SECMMU_CACHE/rootfs-apt.log" 2>&1
}
step "apt-get install toolchain into the rootfs" install_pkgs "${ROOTFS_PACKAGES[@]}" ||
	die "package install failed, see $SECMMU_CACHE/rootfs-apt.log"

# Registries over TLS from inside the rootfs must trust the host's CAs.
[ -f /etc/ssl/certs/ca-certificates.crt ] &&
	cp /etc/ssl/certs/ca-certificates.crt "$tmp/etc/ssl/certs/ca-certificates.crt"

venv() {
	unshare -m --propagation private -- bash -euo pipefail -c '
		root=$1; shift
		mount --rbind /proc "$root/proc"; mount --rbind /dev "$root/dev"
		cp /etc/resolv.conf "$root/etc/resolv.conf" 2>/dev/null || true
		chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
			SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
			bash -euo pipefail -c "python3 -m venv /opt/vng && /opt/vng/bin/pip install -q virtme-ng==$1"
	' secmmu "$tmp" "$VNG_VERSION" >"$SECMMU_CACHE/rootfs-vng.log" 2>&1
}
step "virtme-ng $VNG_VERSION into a rootfs venv" venv ||
	die "virtme-ng install failed, see $SECMMU_CACHE/rootfs-vng.log"

# Record what went in, for the report and the kernel-source cache key.
chroot "$tmp" dpkg-query -W -f '${Package} ${Version}\n' >"$tmp/.packages"
apt_src=$(chroot "$tmp" apt-cache policy linux-source-$SECMMU_KSERIES | awk '/Candidate/ {print $2}')
echo "$apt_src" >"$tmp/.linux-source-version"
touch "$tmp/.complete"
mv "$tmp" "$root"
log "rootfs ready at $root (linux-source-$SECMMU_KSERIES candidate $apt_src)"
