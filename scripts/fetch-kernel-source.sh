#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Fetch (once, cached) linux-source-$SECMMU_KSERIES from trixie-backports and
# unpack it into the cache. Prints the source directory on stdout.
. "$(dirname "$0")/lib.sh"

root=$(rootfs_dir)
ver=$(cat "$root/.linux-source-version" 2>/dev/null || true)
[ -n "$ver" ] && [ "$ver" != "(none)" ] || die "rootfs has no linux-source-$SECMMU_KSERIES candidate"
src="$SECMMU_CACHE/linux-source-$ver"
if [ -f "$src/.complete" ]; then
	echo "$src"
	exit 0
fi

fetch() {
	local dl="$SECMMU_CACHE/dl"
	mkdir -p "$dl"
	# If the point release was replaced in the archive, refresh the index
	# and take the newest 7.3.y instead: the series is pinned, not the point.
	in_rootfs "cd '$dl' && { apt-get download -q linux-source-$SECMMU_KSERIES=$ver ||
		{ apt-get update -qq && apt-get download -q linux-source-$SECMMU_KSERIES; }; }"
}
step "download linux-source-$SECMMU_KSERIES ($ver)" fetch >&2
deb=$(ls -t "$SECMMU_CACHE"/dl/linux-source-"$SECMMU_KSERIES"_*.deb | head -n 1)
got=$(dpkg-deb -f "$deb" Version)
if [ "$got" != "$ver" ]; then
	log "linux-source-$SECMMU_KSERIES $ver is gone from the archive; using $got"
	echo "$got" >"$root/.linux-source-version"
	ver=$got
	src="$SECMMU_CACHE/linux-source-$ver"
fi

unpack() {
	local tmp="$src.tmp" x
	rm -rf "$tmp" && mkdir -p "$tmp/deb"
	dpkg-deb -x "$deb" "$tmp/deb"
	x=$(ls "$tmp"/deb/usr/src/linux-source-"$SECMMU_KSERIES".tar.* | head -n 1)
	tar -C "$tmp" -xf "$x" --strip-components=1
	rm -rf "$tmp/deb"
	echo "$ver" >"$tmp/.debian-version"
	touch "$tmp/.complete"
	rm -rf "$src" && mv "$tmp" "$src"
}
step "unpack linux-source $ver" unpack >&2
echo "$src"
