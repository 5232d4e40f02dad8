/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Headers secmmu generates Rust bindings for (scripts/gen-bindings.sh), and
 * the C helpers in helpers.c that wrap static inline functions and macros.
 */
#include <linux/mmu_notifier.h>
#include <linux/migrate.h>

unsigned int secmmu_hpage_pmd_order(void);
