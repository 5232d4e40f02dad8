// SPDX-License-Identifier: GPL-2.0
/*
 * C helpers for secmmu's Rust crate: static inline functions and macros of
 * linux/mm.h, linux/huge_mm.h, linux/highmem.h and linux/workqueue.h that
 * bindgen cannot turn into callable symbols. Declared in mm_bindings.h.
 */
#include <linux/highmem.h>
#include <linux/huge_mm.h>
#include <linux/migrate.h>
#include <linux/mm.h>
#include <linux/pid.h>
#include <linux/sched/mm.h>
#include <linux/sched/task.h>
#include <linux/pgtable.h>
#include <linux/workqueue.h>
#include "mm_bindings.h"

/* HPAGE_PMD_ORDER is a macro over PMD_SHIFT: the order of a PMD-mapped THP. */
unsigned int secmmu_hpage_pmd_order(void)
{
	return HPAGE_PMD_ORDER;
}

/* The huge PMD mapping @addr, if there is one right now. */
static bool pmd_huge_pfn(struct mm_struct *mm, unsigned long addr,
			 unsigned long *pfn)
{
	pgd_t *pgd;
	p4d_t *p4d;
	pud_t *pud;
	pmd_t pmd;

	pgd = pgd_offset(mm, addr);
	if (pgd_none(*pgd) || pgd_bad(*pgd))
		return false;
	p4d = p4d_offset(pgd, addr);
	if (p4d_none(*p4d) || p4d_bad(*p4d))
		return false;
	pud = pud_offset(p4d, addr);
	if (pud_none(*pud) || !pud_present(*pud) || pud_leaf(*pud))
		return false;
	pmd = pmdp_get_lockless(pmd_offset(pud, addr));
	if (!pmd_present(pmd) || !pmd_leaf(pmd))
		return false;
	*pfn = pmd_pfn(pmd);
	return true;
}

/* What a folio's mapping word says of its kind: anonymous (KSM included)
 * keeps only the FOLIO_MAPPING_ANON bit, a file folio its address_space. */
static unsigned long mapping_kind(struct folio *folio)
{
	unsigned long m = (unsigned long)READ_ONCE(folio->mapping);

	return m & FOLIO_MAPPING_ANON ? FOLIO_MAPPING_ANON : m;
}

/*
 * The device's page walk: fault @addr in for @mm as a device would (ATS
 * translation request / page request), report its PFN, whether a huge PMD
 * maps it and the identity of its folio (@id: the folio, the kind of its
 * mapping and its index, for secmmu_page_get()), and drop the page reference before
 * returning: the device keeps none, so only the mmu_notifier keeps its TLB
 * correct. The caller holds mmap_read_lock(@mm) and an mm_users reference.
 */
int secmmu_walk(struct mm_struct *mm, unsigned long addr, bool write,
		unsigned long *pfn, bool *huge, int *nid, unsigned long *id)
{
	struct page *page;
	unsigned long hpfn;
	long n;

	n = get_user_pages_remote(mm, addr, 1, write ? FOLL_WRITE : 0, &page,
				  NULL);
	if (n < 0)
		return n;
	if (n != 1)
		return -EFAULT;
	*pfn = page_to_pfn(page);
	*nid = page_to_nid(page);
	id[0] = (unsigned long)page_folio(page);
	id[1] = mapping_kind(page_folio(page));
	id[2] = READ_ONCE(page_folio(page)->index);
	*huge = false;
	if (pmd_huge_pfn(mm, addr, &hpfn) &&
	    hpfn + ((addr & ~HPAGE_PMD_MASK) >> PAGE_SHIFT) == *pfn) {
		*huge = true;
		*pfn = hpfn;
	}
	put_page(page);
	return 0;
}

/*
 * The freed-page oracle's check before a device access to @pfn through a
 * translation filled with identity @id (secmmu_walk()): takes a reference
 * on the folio and returns it (drop it with secmmu_page_put()) if the page
 * still belongs to that folio, of the same kind (anonymous, or the same
 * file) and at the same index. ERR_PTR(-ENOENT): the folio was freed (reference
 * count 0); ERR_PTR(-ESTALE): the page was reused (another folio, a slab or page
 * table page, another mapping or index). Neither touches the page. The
 * reference keeps the page from being freed while the device accesses it,
 * whatever the kernel does meanwhile. An anonymous folio's anon_vma may
 * legitimately change under a live translation (a copy-on-write reuse
 * moves it), so only the anonymous bit is compared, with the index, which
 * is the folio's linear page index in its VMA: a folio freed and
 * reallocated as an anonymous folio at the same struct page and index is
 * not recognised (reference counts carry no generation).
 */
struct folio *secmmu_page_get(unsigned long pfn, const unsigned long *id)
{
	struct page *page = pfn_to_page(pfn);
	struct folio *folio = page_folio(page);

	if (!folio_try_get(folio))
		return ERR_PTR(-ENOENT);
	if (page_folio(page) != folio || (unsigned long)folio != id[0] ||
	    folio_test_slab(folio) || folio_test_pgtable(folio) ||
	    mapping_kind(folio) != id[1] || READ_ONCE(folio->index) != id[2]) {
		folio_put(folio);
		return ERR_PTR(-ESTALE);
	}
	return folio;
}

/* Drops the reference secmmu_page_get() took. */
void secmmu_page_put(struct folio *folio)
{
	folio_put(folio);
}

/* A kernel mapping of @pfn; no sleeping until secmmu_unmap(). */
void *secmmu_map_pfn(unsigned long pfn)
{
	return kmap_local_page(pfn_to_page(pfn));
}

void secmmu_unmap(void *addr)
{
	kunmap_local(addr);
}

int secmmu_pfn_to_nid(unsigned long pfn)
{
	return page_to_nid(pfn_to_page(pfn));
}

/* The CPU an event is recorded on. */
unsigned int secmmu_cpu(void)
{
	return raw_smp_processor_id();
}

/*
 * The device engine's own workqueue: module exit drains it. WQ_SYSFS lets
 * a user place the device on a NUMA node through
 * /sys/devices/virtual/workqueue/secmmu_engine/cpumask: the engine's page
 * faults, like a real device's, count as NUMA hinting faults from there.
 */
struct workqueue_struct *secmmu_alloc_wq(void)
{
	return alloc_workqueue("secmmu_engine", WQ_UNBOUND | WQ_SYSFS, 0);
}

/*
 * The mm of process @nr (in the caller's pid namespace) with an mm_users
 * reference (mmput() it), or NULL if there is no such process or it has
 * no mm.
 */
struct mm_struct *secmmu_get_mm_by_pid(int nr)
{
	struct task_struct *task;
	struct mm_struct *mm;
	struct pid *pid;

	pid = find_get_pid(nr);
	if (!pid)
		return NULL;
	task = get_pid_task(pid, PIDTYPE_PID);
	put_pid(pid);
	if (!task)
		return NULL;
	mm = get_task_mm(task);
	put_task_struct(task);
	return mm;
}

/*
 * With mmap_read_lock(@mm) held: the THP a huge PMD maps at the PMD-aligned
 * @addr, with a folio reference taken under the PMD lock (drop it with
 * secmmu_folio_put()), and its head PFN. -ENOENT: no PMD-mapped THP there;
 * -EFAULT: the huge zero page maps it (nothing of the process's own). In an
 * anonymous VMA a huge PMD maps an anonymous THP or the huge zero folio,
 * which is not anonymous; is_huge_zero_folio() reads a symbol modules
 * cannot, so anything not anonymous is refused as the zero page.
 */
int secmmu_thp_folio_get(struct mm_struct *mm, unsigned long addr,
			 unsigned long *pfn)
{
	struct folio *folio;
	spinlock_t *ptl;
	pmd_t *pmdp;
	pgd_t *pgd;
	p4d_t *p4d;
	pud_t *pud;
	int ret = -ENOENT;

	pgd = pgd_offset(mm, addr);
	if (pgd_none(*pgd) || pgd_bad(*pgd))
		return -ENOENT;
	p4d = p4d_offset(pgd, addr);
	if (p4d_none(*p4d) || p4d_bad(*p4d))
		return -ENOENT;
	pud = pud_offset(p4d, addr);
	if (pud_none(*pud) || !pud_present(*pud) || pud_leaf(*pud))
		return -ENOENT;
	pmdp = pmd_offset(pud, addr);
	ptl = pmd_lock(mm, pmdp);
	if (pmd_present(*pmdp) && pmd_trans_huge(*pmdp)) {
		folio = pmd_folio(*pmdp);
		if (!folio_test_anon(folio)) {
			ret = -EFAULT;
		} else {
			folio_get(folio);
			*pfn = folio_pfn(folio);
			ret = 0;
		}
	}
	spin_unlock(ptl);
	return ret;
}

/* Drops a reference secmmu_thp_folio_get() took on the folio at @pfn. */
void secmmu_folio_put(unsigned long pfn)
{
	folio_put(pfn_folio(pfn));
}

/* The top of @mm's user address space (TASK_SIZE of its tasks). */
unsigned long secmmu_task_size(struct mm_struct *mm)
{
	return mm->task_size;
}

/* @nid names an online node with memory. */
bool secmmu_node_valid(int nid)
{
	return nid >= 0 && nid < MAX_NUMNODES && node_online(nid) &&
	       node_state(nid, N_MEMORY);
}

/*
 * A PMD-order folio on node @nid only, locked, for migrate_vma_pages(), as
 * a migrate PFN entry with MIGRATE_PFN_COMPOUND; 0 if none is free there.
 */
unsigned long secmmu_alloc_thp_dst(int nid)
{
	struct folio *folio;

	folio = __folio_alloc_node(GFP_HIGHUSER_MOVABLE | __GFP_THISNODE |
				   __GFP_NOWARN | __GFP_NORETRY,
				   HPAGE_PMD_ORDER, nid);
	if (!folio)
		return 0;
	folio_lock(folio);
	return migrate_pfn(folio_pfn(folio)) | MIGRATE_PFN_COMPOUND;
}

/* Undo secmmu_alloc_thp_dst() for a destination migration did not take. */
void secmmu_free_thp_dst(unsigned long mpfn)
{
	struct folio *folio = page_folio(migrate_pfn_to_page(mpfn));

	folio_unlock(folio);
	folio_put(folio);
}

/* Copies the 2 MiB THP at @src_pfn to @dst_pfn, page by page. */
void secmmu_copy_thp(unsigned long dst_pfn, unsigned long src_pfn)
{
	unsigned long i;

	for (i = 0; i < HPAGE_PMD_NR; i++) {
		copy_highpage(pfn_to_page(dst_pfn + i), pfn_to_page(src_pfn + i));
		cond_resched();
	}
}

/* Flips one byte of the THP at @pfn (the corrupt_copy injection). */
void secmmu_corrupt_thp(unsigned long pfn)
{
	u8 *p = kmap_local_page(pfn_to_page(pfn));

	p[0] ^= 0xff;
	kunmap_local(p);
}

/*
 * Whether two pages differ, a word at a time: the kernel's memcmp() is a
 * byte loop, and this check runs on every hardened migration.
 */
static bool secmmu_page_differs(const unsigned long *a, const unsigned long *b)
{
	unsigned long i, acc = 0;

	for (i = 0; i < PAGE_SIZE / sizeof(long); i++)
		acc |= a[i] ^ b[i];
	return acc != 0;
}

/* Index of the first page that differs between the two THPs, or -1. */
long secmmu_cmp_thp(unsigned long a_pfn, unsigned long b_pfn)
{
	unsigned long i;
	bool diff;

	for (i = 0; i < HPAGE_PMD_NR; i++) {
		const unsigned long *a = kmap_local_page(pfn_to_page(a_pfn + i));
		const unsigned long *b = kmap_local_page(pfn_to_page(b_pfn + i));

		diff = secmmu_page_differs(a, b);
		kunmap_local(b);
		kunmap_local(a);
		if (diff)
			return i;
	}
	return -1;
}
