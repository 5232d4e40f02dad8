# SPDX-License-Identifier: GPL-2.0
#
# secmmu: user-facing entry points. The kernel build itself goes through
# Kbuild (make -C $KDIR M=$PWD), driven by scripts/build-module.sh.
#
#   make demo          the main job: build what is missing, boot the VM, report
#   make check         build what is missing and run every test
#   make vm-run CMD=.. run CMD in the VM (module inserted, cwd = checkout)
#   make shell         interactive VM shell, same setup
#
# KDIR=/path/to/kernel/build uses your own Rust-enabled kernel tree and host
# toolchain instead of the provisioned ones (see README.md).

SHELL := /bin/bash
S := scripts
export KDIR SECMMU_CACHE CMD

.PHONY: all rootfs kernel module clippy rustfmtcheck rustfmt selftests check \
	demo vm-run shell clean

all: module

rootfs:
	@$(S)/provision-rootfs.sh

kernel:
	@$(S)/kdir.sh >/dev/null

module:
	@$(S)/build-module.sh modules

clippy:
	@$(S)/build-module.sh clippy

rustfmtcheck:
	@$(S)/build-module.sh rustfmtcheck

rustfmt:
	@$(S)/build-module.sh rustfmt

selftests:
	@$(S)/build-selftests.sh

check:
	@$(S)/check.sh

demo:
	@$(S)/demo.sh

vm-run:
	@test -n "$$CMD" || { echo "usage: make vm-run CMD='command'" >&2; exit 2; }
	@$(S)/build-module.sh modules >/dev/null
	@SECMMU_KBUILD=$$($(S)/kdir.sh $${SECMMU_FLAVOUR:-test}) $(S)/vm-run.sh --out build/vm/run -- "$$CMD"

shell:
	@$(S)/build-module.sh modules >/dev/null
	@SECMMU_KBUILD=$$($(S)/kdir.sh $${SECMMU_FLAVOUR:-test}) $(S)/vm-run.sh --shell --out build/vm/shell

clean:
	-@$(S)/build-module.sh clean
	rm -rf build selftests/c/out selftests/rust/target
