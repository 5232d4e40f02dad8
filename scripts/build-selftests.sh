#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Build the C (kselftest_harness.h from the kernel source tree) and Rust
# selftests into build/selftests/{c,rust}, with the rootfs's toolchains.
. "$(dirname "$0")/lib.sh"
kb=$("$SECMMU_TOP/scripts/kdir.sh" "${SECMMU_FLAVOUR:-test}")
src=$(cat "$kb/.srctree" 2>/dev/null || readlink -f "$kb/source" 2>/dev/null || echo "$kb")
harness="$src/tools/testing/selftests"
[ -f "$harness/kselftest_harness.h" ] || die "no kselftest_harness.h under $harness"
out="$SECMMU_TOP/build/selftests"
mkdir -p "$out/c" "$out/rust"

cflags="-O2 -g -Wall -Wextra -Werror -Wno-unused-parameter -Wno-sign-compare -I'$harness' -I'$SECMMU_TOP/include/uapi' -pthread"
c_cmds=""
for f in "$SECMMU_TOP"/selftests/c/*.c; do
	c_cmds+="gcc $cflags -o '$out/c/$(basename "$f" .c)' '$f' && "
done
step "build C selftests" run_cmd "${c_cmds}true"

step "build the secmmu tool" run_cmd "cd '$SECMMU_TOP/tools/secmmu' && cargo build -q --release --offline --locked &&
	mkdir -p '$SECMMU_TOP/build/bin' && cp target/release/secmmu '$SECMMU_TOP/build/bin/'"

bins="$SECMMU_TOP/selftests/rust/target/release"
step "build Rust selftests" run_cmd "cd '$SECMMU_TOP/selftests/rust' && cargo build -q --release --offline --locked &&
	for b in \$(sed -n 's/^name = \"\\(.*_test\\)\"/\\1/p' Cargo.toml); do cp '$bins'/\$b '$out/rust/'; done"
