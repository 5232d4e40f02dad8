/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Headers secmmu generates Rust bindings for (scripts/gen-bindings.sh), and
 * the C helpers in helpers.c that wrap static inline functions and macros.
 */
#include <linux/mmu_notifier.h>
#include <linux/migrate.h>

unsigned int secmmu_hpage_pmd_order(void);
#include <linux/workqueue.h>
#include "../include/uapi/secmmu.h"

int secmmu_walk(struct mm_struct *mm, unsigned long addr, bool write,
		unsigned long *pfn, bool *huge, int *nid, unsigned long *id);
struct folio *secmmu_page_get(unsigned long pfn, const unsigned long *id);
void secmmu_page_put(struct folio *folio);
void *secmmu_map_pfn(unsigned long pfn);
void secmmu_unmap(void *addr);
int secmmu_pfn_to_nid(unsigned long pfn);
unsigned int secmmu_cpu(void);
struct workqueue_struct *secmmu_alloc_wq(void);
struct mm_struct *secmmu_get_mm_by_pid(int nr);
int secmmu_thp_folio_get(struct mm_struct *mm, unsigned long addr,
			 unsigned long *pfn);
void secmmu_folio_put(unsigned long pfn);
unsigned long secmmu_task_size(struct mm_struct *mm);
bool secmmu_node_valid(int nid);
unsigned long secmmu_alloc_thp_dst(int nid);
void secmmu_free_thp_dst(unsigned long mpfn);
void secmmu_copy_thp(unsigned long dst_pfn, unsigned long src_pfn);
long secmmu_cmp_thp(unsigned long a_pfn, unsigned long b_pfn);
void secmmu_corrupt_thp(unsigned long pfn);
