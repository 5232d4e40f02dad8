#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Build (once, cached) the mutant test kernel: the cached test kernel plus
# kernel/mutants/*.patch, each patch reintroducing a historical secondary-TLB
# bug behind its own knob (/sys/module/kernel/parameters/mutant_*, all 0 at
# boot). Prints the build directory on stdout; boot it with
# SECMMU_KBUILD=<dir> scripts/vm-run.sh. secmmu.ko built for the test kernel
# loads on it unchanged: same config, same release, no new exports.
#
# Method: copy the test kernel's build directory, then, in one private mount
# namespace, bind-mount the copy over the test build path (Kbuild recorded
# absolute paths there) and each patched source file over the original, and
# run the kernel's make: only the patched objects and vmlinux are rebuilt.
# Neither the kernel source nor the test kernel's build directory changes.
#
# The cache key covers the test kernel (its directory name is its own key),
# the patches and this recipe.
. "$(dirname "$0")/lib.sh"

[ -z "${KDIR:-}" ] || die "the mutant kernel is built from the cached test kernel: unset KDIR"
kt=$("$SECMMU_TOP/scripts/kdir.sh" test)
[ -f "$kt/.complete" ] || die "the test kernel at $kt is not complete"
src=$(cat "$kt/.srctree")
ver=$(cat "$kt/.debian-version")
mapfile -t patches < <(LC_ALL=C ls "$SECMMU_TOP"/kernel/mutants/*.patch)
[ "${#patches[@]}" -gt 0 ] || die "no patches in kernel/mutants/"
key=$( { basename "$kt"; cat "${patches[@]}"; cat "$0"; } | hash_of)
kb="$SECMMU_CACHE/kbuild-mutant-$ver-$key"
if [ -f "$kb/.complete" ]; then
	echo "$kb"
	exit 0
fi
# One mutant build at a time. Not build-kernel.sh's lock: this one reads the
# finished test kernel only and takes half a minute, where a debug kernel
# build holds that lock for twenty.
exec 9>"$SECMMU_CACHE/.mutant.lock"
flock 9
if [ -f "$kb/.complete" ]; then
	echo "$kb"
	exit 0
fi

# The patched copies of the touched source files. Only .c files: a touched
# header would rebuild half the kernel.
scratch="$SECMMU_CACHE/mutant-src-$key"
rm -rf "$scratch" && mkdir -p "$scratch"
mapfile -t files < <(sed -n 's#^+++ b/\([^[:space:]]*\).*#\1#p' "${patches[@]}" | LC_ALL=C sort -u)
for f in "${files[@]}"; do
	case "$f" in *.c) ;; *) die "$f: the mutant patches may only touch .c files" ;; esac
	[ -f "$src/$f" ] || die "$f: not in the kernel source $src"
	mkdir -p "$scratch/$(dirname "$f")"
	cp "$src/$f" "$scratch/$f"
done
for p in "${patches[@]}"; do
	(cd "$scratch" && patch -p1 --fuzz=0 -s --no-backup-if-mismatch <"$p") >&2 ||
		die "$(basename "$p") does not apply to linux $ver"
done

tmp="$kb.tmp"
rm -rf "$tmp"
step "copy the test kernel build ($(basename "$kt"))" \
	cp -a --reflink=auto "$kt" "$tmp" >&2
rm -f "$tmp/.complete"
touch "$tmp/.mutant-build-start"
sleep 1
test_vmlinux_mtime=$(stat -c %Y "$kt/vmlinux")

# The build, in in_rootfs's private mount namespace: the cache is visible in
# the rootfs at the same path, so the bind mounts are made there, before make.
q() { printf '%q ' "$@"; }
mounts="mount --bind $(q "$tmp" "$kt") && "
for f in "${files[@]}"; do
	mounts+="mount --bind $(q "$scratch/$f" "$src/$f") && "
done
jobs=$(($(nproc) + 1))
build() {
	in_rootfs "$mounts make -C $(q "$src") O=$(q "$kt") ARCH=x86_64 LLVM=1 -j$jobs all \
		>$(q "$kt/mutant-build.log") 2>&1" ||
		{ tail -n 40 "$tmp/mutant-build.log" >&2; return 1; }
}
step "build the mutant kernel (${#patches[@]} patches, ${#files[@]} files, -j$jobs)" build >&2 ||
	die "mutant kernel build failed, see $tmp/mutant-build.log"

# The test kernel's build directory is untouched.
[ "$(stat -c %Y "$kt/vmlinux")" = "$test_vmlinux_mtime" ] ||
	die "the test kernel's vmlinux changed: the bind mount did not hold"
# What the build rebuilt: the patched objects, the version object and the
# link; nothing else.
(cd "$tmp" && find . -name '*.o' -newer .mutant-build-start | sed 's#^\./##' | LC_ALL=C sort) \
	>"$tmp/mutant-rebuilt.txt"
unexpected=$(grep -vxF -f <(for f in "${files[@]}"; do echo "${f%.c}.o"; done) "$tmp/mutant-rebuilt.txt" |
	grep -vE '^(init/version(-timestamp)?\.o|vmlinux\.o|\.tmp_vmlinux.*|.*\.vmlinux\.export\.o|arch/x86/boot/.*|arch/x86/realmode/.*|kernel/kheaders\.o|lib/buildid\.o)$' || true)
[ -z "$unexpected" ] || log "rebuilt besides the patched objects: $(echo $unexpected)"
for f in "${files[@]}"; do
	grep -qxF "${f%.c}.o" "$tmp/mutant-rebuilt.txt" || die "${f%.c}.o was not rebuilt"
done
log "rebuilt objects: $(wc -l <"$tmp/mutant-rebuilt.txt") (list: $kb/mutant-rebuilt.txt)"

# Same modules ABI: secmmu.ko for the test kernel must load unchanged.
vermagic() { grep -a -o -m1 "$(cat "$1/include/config/kernel.release") SMP[ -~]*" "$1/vmlinux" | head -n 1; }
vm_test=$(vermagic "$kt")
vm_mut=$(vermagic "$tmp")
[ -n "$vm_test" ] && [ "$vm_test" = "$vm_mut" ] ||
	die "vermagic differs: test kernel '$vm_test', mutant kernel '$vm_mut'"
cmp -s "$kt/.config" "$tmp/.config" || die "the mutant kernel's .config differs from the test kernel's"
cmp -s "$kt/Module.symvers" "$tmp/Module.symvers" ||
	die "the mutant kernel's exports (Module.symvers) differ from the test kernel's"
if [ -f "$SECMMU_TOP/secmmu.ko" ]; then
	mod=$(grep -a -o -m1 'vermagic=[ -~]*' "$SECMMU_TOP/secmmu.ko" | head -n 1)
	mod=${mod#vermagic=}
	[ "${mod% }" = "${vm_mut% }" ] ||
		log "warning: secmmu.ko's vermagic '$mod' is not the kernel's '$vm_mut' (rebuild the module)"
fi
log "vermagic: $vm_mut (same as the test kernel)"
grep -ho '^core_param(mutant_[a-z0-9_]*' "$scratch"/*/*.c "$scratch"/*/*/*/*.c 2>/dev/null |
	sed 's/^core_param(//' | LC_ALL=C sort >"$tmp/.mutants"

echo "$ver" >"$tmp/.debian-version"
echo "$src" >"$tmp/.srctree"
rm -f "$tmp/.mutant-build-start"
rm -rf "$kb" && mv "$tmp" "$kb"
touch "$kb/.complete"
# Older mutant kernels (other patches, another test kernel) are dead cache.
for old in "$SECMMU_CACHE"/kbuild-mutant-* "$SECMMU_CACHE"/mutant-src-*; do
	case "$old" in "$kb" | "$scratch") ;; *) rm -rf "$old" ;; esac
done
echo "$kb"
