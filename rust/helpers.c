// SPDX-License-Identifier: GPL-2.0
/*
 * C helpers for secmmu's Rust crate: static inline functions and macros of
 * linux/mm.h, linux/huge_mm.h and linux/migrate.h that bindgen cannot turn
 * into callable symbols. Declared in mm_bindings.h.
 */
#include <linux/huge_mm.h>
#include "mm_bindings.h"

/* HPAGE_PMD_ORDER is a macro over PMD_SHIFT: the order of a PMD-mapped THP. */
unsigned int secmmu_hpage_pmd_order(void)
{
	return HPAGE_PMD_ORDER;
}
