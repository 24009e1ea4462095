/*
 * itree.h - an intrusive interval tree over address ranges [start, end):
 * a treap ordered by (start, node address) whose nodes also keep the
 * largest end in their subtree, so that "which range contains [a, b)" and
 * "which ranges overlap [a, b)" prune whole subtrees.
 *
 * Ranges may overlap. Expected depth O(log n) (random priorities); no
 * allocation, no locking: the owner embeds a node in its object, fills
 * start and end, and serialises calls.
 */
#ifndef DAFS_CACHE_ITREE_H
#define DAFS_CACHE_ITREE_H

#include <stddef.h>
#include <stdint.h>

struct dafs_itree_node {
	uintptr_t start, end; /* [start, end), set by the owner */
	uintptr_t max_end;    /* largest end in this subtree */
	uint32_t prio;
	struct dafs_itree_node *left, *right;
};

struct dafs_itree {
	struct dafs_itree_node *root;
	uint64_t seed; /* priorities; any value */
	size_t n;
};

void dafs_itree_init(struct dafs_itree *t, uint64_t seed);
/* Insert @n (start < end, not in a tree). */
void dafs_itree_insert(struct dafs_itree *t, struct dafs_itree_node *n);
/* Remove @n, which is in @t. */
void dafs_itree_remove(struct dafs_itree *t, struct dafs_itree_node *n);

/*
 * The node with the lowest start among those containing [@a, @b) for
 * which @ok(node, @arg) is true (@ok NULL: any); NULL if none.
 */
struct dafs_itree_node *
dafs_itree_find(const struct dafs_itree *t, uintptr_t a, uintptr_t b,
		int (*ok)(const struct dafs_itree_node *, void *), void *arg);

/*
 * Call @fn on every node overlapping [@a, @b), in start order. @fn must not
 * change the tree (collect, then remove).
 */
void dafs_itree_overlaps(const struct dafs_itree *t, uintptr_t a, uintptr_t b,
			 void (*fn)(struct dafs_itree_node *, void *),
			 void *arg);

#endif /* DAFS_CACHE_ITREE_H */
