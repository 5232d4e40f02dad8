#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Build secmmu.ko against the test kernel (or $KDIR).
#   build-module.sh [modules|clippy|rustfmtcheck|rustfmt|clean]
. "$(dirname "$0")/lib.sh"
what=${1:-modules}
kb=$("$SECMMU_TOP/scripts/kdir.sh" "${SECMMU_FLAVOUR:-test}")
src=$(cat "$kb/.srctree" 2>/dev/null || readlink -f "$kb/source" 2>/dev/null || echo "$kb")
mk="make -C '$kb' M='$SECMMU_TOP' LLVM=1"
fmt_files() { find "$SECMMU_TOP/rust" -name '*.rs' ! -name '*_generated.rs' | sort; }

case "$what" in
modules)
	step "build secmmu.ko" run_cmd "$mk modules" ;;
clippy)
	# Clippy sees the same sources as the compiler: the CLIPPY=1 build must
	# print no warning (W=1 adds the kernel's extra Rust lints).
	run_cmd "$mk clean >/dev/null && $mk CLIPPY=1 W=1 modules 2>&1" | tee "$SECMMU_TOP/build/clippy.log"
	! grep -E '^(warning|error)' "$SECMMU_TOP/build/clippy.log" ;;
rustfmtcheck)
	run_cmd "rustfmt --check --config-path '$src/.rustfmt.toml' $(fmt_files | tr '\n' ' ')" ;;
rustfmt)
	run_cmd "rustfmt --config-path '$src/.rustfmt.toml' $(fmt_files | tr '\n' ' ')" ;;
clean)
	run_cmd "$mk clean" ;;
*) die "unknown action $what" ;;
esac
