#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Generate secmmu's bindings for the kernel headers it needs beyond
# kernel::bindings, with exactly the bindgen flags the kernel used for its
# own bindings (read back from the kernel build's saved command).
#   gen-bindings.sh OBJTREE WRAPPER_HEADER OUTPUT
set -euo pipefail
objtree=$1 header=$(readlink -f "$2") out=$(realpath -m "$3")
cmdfile="$objtree/rust/bindings/.bindings_generated.rs.cmd"
[ -f "$cmdfile" ] || { echo "gen-bindings: $cmdfile missing: the kernel was built without CONFIG_RUST?" >&2; exit 1; }

# savedcmd_rust/bindings/bindings_generated.rs := bindgen <helper.h> ... -o <out> -- <cflags> ; sed ...
saved=$(sed -n 's/^savedcmd_rust\/bindings\/bindings_generated.rs := //p' "$cmdfile")
saved=${saved%%;*}
read -r -a words <<<"$saved"

# Only what secmmu uses and kernel::bindings lacks; every other type the
# generated items mention resolves to kernel::bindings through the raw line.
allow=(
	--allowlist-type 'migrate_vma'
	--allowlist-type 'migrate_vma_direction'
	--allowlist-var 'MIGRATE_PFN_.*'
	--allowlist-var 'MIGRATE_VMA_SELECT_.*'
	--allowlist-function 'migrate_vma_(setup|pages|finalize)'
	--allowlist-function 'secmmu_.*'
	--allowlist-type 'secmmu_.*'
	--allowlist-var 'SECMMU_.*'
	--no-recursive-allowlist
	--raw-line 'use kernel::bindings::*;'
)

args=() seen_dd=0 skip=0
for w in "${words[@]}"; do
	if ((skip)); then skip=0; continue; fi
	case "$w" in
	bindgen) continue ;;
	*/rust/bindings/bindings_helper.h) args+=("$header"); continue ;;
	-o) args+=(-o "$out"); skip=1; continue ;;
	-Wp,-MMD,*) continue ;;
	--) ((seen_dd)) || args+=("${allow[@]}"); seen_dd=1 ;;
	esac
	# The saved command is make syntax: undo its $(pound) and quoting.
	w=${w//\$(pound)/#}
	w=${w//\'/}
	args+=("$w")
done
cd "$objtree"
bindgen "${args[@]}"
