/*
 * itree.c - interval treap (itree.h). Split and merge carry the whole
 * algorithm; each fixes max_end on the way back up.
 */
#include "itree.h"

typedef struct dafs_itree_node node;

void dafs_itree_init(struct dafs_itree *t, uint64_t seed)
{
	t->root = NULL;
	t->seed = seed ? seed : 0x9e3779b97f4a7c15ull;
	t->n = 0;
}

static uint32_t next_prio(struct dafs_itree *t)
{
	/* xorshift64* */
	t->seed ^= t->seed >> 12;
	t->seed ^= t->seed << 25;
	t->seed ^= t->seed >> 27;
	return (uint32_t)((t->seed * 0x2545f4914f6cdd1dull) >> 32);
}

static void fix(node *n)
{
	uintptr_t m = n->end;

	if (n->left && n->left->max_end > m)
		m = n->left->max_end;
	if (n->right && n->right->max_end > m)
		m = n->right->max_end;
	n->max_end = m;
}

/* (n->start, n) < (start, p) */
static int before(const node *n, uintptr_t start, uintptr_t p)
{
	return n->start < start || (n->start == start && (uintptr_t)n < p);
}

/* Nodes ordered before (start, p) go to *l, the rest to *r. */
static void split(node *t, uintptr_t start, uintptr_t p, node **l, node **r)
{
	if (!t) {
		*l = *r = NULL;
		return;
	}
	if (before(t, start, p)) {
		split(t->right, start, p, &t->right, r);
		*l = t;
	} else {
		split(t->left, start, p, l, &t->left);
		*r = t;
	}
	fix(t);
}

/* Every node of @a is ordered before every node of @b. */
static node *merge(node *a, node *b)
{
	if (!a)
		return b;
	if (!b)
		return a;
	if (a->prio > b->prio) {
		a->right = merge(a->right, b);
		fix(a);
		return a;
	}
	b->left = merge(a, b->left);
	fix(b);
	return b;
}

void dafs_itree_insert(struct dafs_itree *t, struct dafs_itree_node *n)
{
	node *l, *r;

	n->left = n->right = NULL;
	n->max_end = n->end;
	n->prio = next_prio(t);
	split(t->root, n->start, (uintptr_t)n, &l, &r);
	t->root = merge(merge(l, n), r);
	t->n++;
}

void dafs_itree_remove(struct dafs_itree *t, struct dafs_itree_node *n)
{
	node *l, *m, *r;

	split(t->root, n->start, (uintptr_t)n, &l, &m);
	/* m starts with n: everything at or after (start, n + 1) stays */
	split(m, n->start, (uintptr_t)n + 1, &m, &r);
	t->root = merge(l, r);
	n->left = n->right = NULL;
	t->n--;
}

static node *find(node *t, uintptr_t a, uintptr_t b,
		  int (*ok)(const node *, void *), void *arg)
{
	node *r;

	while (t && t->max_end >= b) {
		r = find(t->left, a, b, ok, arg);
		if (r)
			return r;
		/* t and its right subtree start after a */
		if (t->start > a)
			return NULL;
		if (t->end >= b && (!ok || ok(t, arg)))
			return t;
		t = t->right;
	}
	return NULL;
}

struct dafs_itree_node *
dafs_itree_find(const struct dafs_itree *t, uintptr_t a, uintptr_t b,
		int (*ok)(const struct dafs_itree_node *, void *), void *arg)
{
	return find(t->root, a, b, ok, arg);
}

static void overlaps(node *t, uintptr_t a, uintptr_t b,
		     void (*fn)(node *, void *), void *arg)
{
	while (t && t->max_end > a) {
		overlaps(t->left, a, b, fn, arg);
		if (t->start >= b)
			return;
		if (t->end > a)
			fn(t, arg);
		t = t->right;
	}
}

void dafs_itree_overlaps(const struct dafs_itree *t, uintptr_t a, uintptr_t b,
			 void (*fn)(struct dafs_itree_node *, void *),
			 void *arg)
{
	overlaps(t->root, a, b, fn, arg);
}
