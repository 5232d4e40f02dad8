# SPDX-License-Identifier: GPL-2.0
#
# secmmu: user-facing entry points. The kernel build itself goes through
# Kbuild (make -C $KDIR M=$PWD), driven by scripts/build-module.sh.
#
#   make demo          the main job: build what is missing, boot the VM, report
#   make check         build what is missing and run every test
#   make vm-run CMD=.. run CMD in the VM (module inserted, cwd = checkout)
#   make shell         interactive VM shell, same setup
#   make stress        bounded stress in the VM (STRESS_SECONDS=120, STRESS_SEED=1)
#   make bench         benchmarks in one VM boot, ratios (build/bench/bench.json)
#   make fuzz          seeded fuzzer in the VM (FUZZ_SEED=random, FUZZ_OPS=20000,
#                      FUZZ_SECONDS=600)
#   make mutants       the mutant kernel (kernel/mutants/): is every mutant killed
#                      by its kill tests? (MUTANTS="name ..." for a subset)
#
# KDIR=/path/to/kernel/build uses your own Rust-enabled kernel tree and host
# toolchain instead of the provisioned ones (see Documentation/usage.rst).

SHELL := /bin/bash
S := scripts
export KDIR SECMMU_CACHE CMD

STRESS_SECONDS ?= 120
STRESS_SEED ?= 1
FUZZ_SEED ?= 0
FUZZ_OPS ?= 20000
FUZZ_SECONDS ?= 600

.PHONY: all rootfs kernel module clippy rustfmtcheck rustfmt selftests check \
	demo vm-run shell stress fuzz bench mutants clean

all: module

rootfs:
	@$(S)/provision-rootfs.sh

kernel:
	@$(S)/kdir.sh $${SECMMU_FLAVOUR:-test} >/dev/null

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
	@$(S)/build-selftests.sh >/dev/null
	@SECMMU_KBUILD=$$($(S)/kdir.sh $${SECMMU_FLAVOUR:-test}) $(S)/vm-run.sh --out build/vm/run -- "$$CMD"

stress: module selftests
	@SECMMU_KBUILD=$$($(S)/kdir.sh $${SECMMU_FLAVOUR:-test}) $(S)/vm-run.sh --out build/vm/stress -- \
		build/bin/secmmu stress --ktap --seconds $(STRESS_SECONDS) --seed $(STRESS_SEED)

fuzz: module selftests
	@SECMMU_KBUILD=$$($(S)/kdir.sh $${SECMMU_FLAVOUR:-test}) $(S)/vm-run.sh --out build/vm/fuzz -- \
		build/bin/secmmu fuzz --ktap --seed $(FUZZ_SEED) --ops $(FUZZ_OPS) --seconds $(FUZZ_SECONDS)

bench: module selftests
	@mkdir -p build/bench
	@SECMMU_KBUILD=$$($(S)/kdir.sh $${SECMMU_FLAVOUR:-test}) $(S)/vm-run.sh --out build/vm/bench -- \
		build/bin/secmmu bench --json build/bench/bench.json

mutants: module selftests
	@kb=$$($(S)/build-mutant-kernel.sh) && \
		SECMMU_KBUILD=$$kb $(S)/vm-run.sh --out build/vm/mutants -- selftests/run_mutants.sh $(MUTANTS)

shell:
	@$(S)/build-module.sh modules >/dev/null
	@SECMMU_KBUILD=$$($(S)/kdir.sh $${SECMMU_FLAVOUR:-test}) $(S)/vm-run.sh --shell --out build/vm/shell

clean:
	-@$(S)/build-module.sh clean
	rm -rf build selftests/c/out selftests/rust/target
