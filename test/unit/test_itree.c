/*
 * test_itree.c - the interval treap (src/cache/itree.c) against a brute
 * force list: random inserts and removes of possibly overlapping ranges,
 * and after each step containment and overlap queries agree with a scan.
 */
#include <check.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cache/itree.h"

#define N 400
#define SPACE 4000

static struct dafs_itree_node nodes[N];
static int in[N];

static uint64_t rnd_state = 88172645463325252ull;

static uint64_t rnd(void)
{
	rnd_state ^= rnd_state << 13;
	rnd_state ^= rnd_state >> 7;
	rnd_state ^= rnd_state << 17;
	return rnd_state;
}

static int accept_odd(const struct dafs_itree_node *n, void *arg)
{
	(void)arg;
	return (int)((n - nodes) & 1);
}

struct seen {
	int hit[N];
	uintptr_t last_start;
	int ordered;
};

static void visit(struct dafs_itree_node *n, void *arg)
{
	struct seen *s = arg;

	s->hit[n - nodes]++;
	if (n->start < s->last_start)
		s->ordered = 0;
	s->last_start = n->start;
}

static void check_queries(struct dafs_itree *t)
{
	for (int q = 0; q < 30; q++) {
		uintptr_t a = rnd() % SPACE, b = a + 1 + rnd() % 200;
		struct dafs_itree_node *f, *fo;
		uintptr_t best = UINTPTR_MAX, best_odd = UINTPTR_MAX;
		struct seen s;

		memset(&s, 0, sizeof(s));
		s.ordered = 1;
		for (int i = 0; i < N; i++) {
			if (!in[i] || nodes[i].start > a || nodes[i].end < b)
				continue;
			if (nodes[i].start < best)
				best = nodes[i].start;
			if ((i & 1) && nodes[i].start < best_odd)
				best_odd = nodes[i].start;
		}
		f = dafs_itree_find(t, a, b, NULL, NULL);
		if (best == UINTPTR_MAX) {
			ck_assert_ptr_null(f);
		} else {
			ck_assert_ptr_nonnull(f);
			ck_assert_uint_eq(f->start, best);
			ck_assert(f->start <= a && f->end >= b);
		}
		fo = dafs_itree_find(t, a, b, accept_odd, NULL);
		if (best_odd == UINTPTR_MAX) {
			ck_assert_ptr_null(fo);
		} else {
			ck_assert_ptr_nonnull(fo);
			ck_assert_uint_eq(fo->start, best_odd);
			ck_assert((fo - nodes) & 1);
		}
		dafs_itree_overlaps(t, a, b, visit, &s);
		ck_assert(s.ordered);
		/* one assertion per query: each costs check a write(2) */
		int bad = 0;

		for (int i = 0; i < N; i++)
			bad += s.hit[i] != (in[i] && nodes[i].start < b &&
					    nodes[i].end > a);
		ck_assert_int_eq(bad, 0);
	}
}

START_TEST(test_random)
{
	struct dafs_itree t;
	size_t n = 0;

	dafs_itree_init(&t, 1);
	for (int step = 0; step < 3000; step++) {
		int i = (int)(rnd() % N);

		if (in[i]) {
			dafs_itree_remove(&t, &nodes[i]);
			in[i] = 0;
			n--;
		} else {
			/* duplicates of one range happen often */
			nodes[i].start = rnd() % 50 * (SPACE / 50);
			nodes[i].end = nodes[i].start + 1 + rnd() % 300;
			dafs_itree_insert(&t, &nodes[i]);
			in[i] = 1;
			n++;
		}
		if (t.n != n)
			ck_abort_msg("size %zu, expected %zu", t.n, n);
		if (step % 10 == 0)
			check_queries(&t);
	}
	for (int i = 0; i < N; i++)
		if (in[i])
			dafs_itree_remove(&t, &nodes[i]);
	ck_assert_ptr_null(t.root);
}
END_TEST

START_TEST(test_empty_and_edges)
{
	struct dafs_itree t;
	struct dafs_itree_node a = {.start = 100, .end = 200};

	dafs_itree_init(&t, 0);
	ck_assert_ptr_null(dafs_itree_find(&t, 0, 1, NULL, NULL));
	dafs_itree_insert(&t, &a);
	ck_assert_ptr_eq(dafs_itree_find(&t, 100, 200, NULL, NULL), &a);
	ck_assert_ptr_eq(dafs_itree_find(&t, 199, 200, NULL, NULL), &a);
	ck_assert_ptr_null(dafs_itree_find(&t, 99, 150, NULL, NULL));
	ck_assert_ptr_null(dafs_itree_find(&t, 150, 201, NULL, NULL));
	dafs_itree_remove(&t, &a);
	ck_assert_ptr_null(t.root);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("itree");
	TCase *tc = tcase_create("itree");
	SRunner *sr;
	int failed;

	tcase_add_test(tc, test_random);
	tcase_add_test(tc, test_empty_and_edges);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_ENV);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
