/*
 * test_fuse_tables.c - dafs-fuse's data structures on their own: the inode
 * table (src/fuse/inode.c) and the canonical form of credential sets
 * (src/fuse/creds.c). No mount, no server.
 */
#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuse/creds_i.h"
#include "fuse/inode_i.h"

/* A handle whose bytes encode @n, of length 8..63 by @n. */
static dafs_fh_t fh_of(uint32_t n)
{
	dafs_fh_t fh;

	memset(&fh, 0, sizeof(fh));
	fh.len = (uint16_t)(8 + n % 56);
	memcpy(fh.data, &n, sizeof(n));
	fh.data[fh.len - 1] = (uint8_t)(n * 7);
	return fh;
}

static int fh_eq(const dafs_fh_t *a, const dafs_fh_t *b)
{
	return a->len == b->len && !memcmp(a->data, b->data, a->len);
}

START_TEST(inode_root)
{
	struct fino_table t;
	dafs_fh_t root = fh_of(0), got;
	uint64_t id;

	ck_assert_int_eq(fino_table_init(&t, &root), 0);
	ck_assert_uint_eq(fino_count(&t), 1);
	ck_assert_int_eq(fino_fh(&t, FINO_ROOT_ID, &got), 0);
	ck_assert(fh_eq(&got, &root));
	/* the root's handle found again is the root */
	ck_assert_int_eq(fino_ref(&t, &root, &id), 0);
	ck_assert_uint_eq(id, FINO_ROOT_ID);
	/* forgetting the root never frees it */
	fino_forget(&t, FINO_ROOT_ID, 1000);
	ck_assert_int_eq(fino_fh(&t, FINO_ROOT_ID, &got), 0);
	ck_assert_uint_eq(fino_count(&t), 1);
	fino_table_fini(&t);
}
END_TEST

START_TEST(inode_counts)
{
	struct fino_table t;
	dafs_fh_t root = fh_of(0), a = fh_of(1), b = fh_of(2), got;
	uint64_t ia, ia2, ib, ia3;

	ck_assert_int_eq(fino_table_init(&t, &root), 0);
	ck_assert_int_eq(fino_ref(&t, &a, &ia), 0);
	ck_assert_int_eq(fino_ref(&t, &a, &ia2), 0);
	ck_assert_int_eq(fino_ref(&t, &b, &ib), 0);
	ck_assert_uint_eq(ia, ia2);
	ck_assert_uint_ne(ia, ib);
	ck_assert_uint_ne(ia, FINO_ROOT_ID);
	ck_assert_uint_eq(fino_count(&t), 3);

	/* two lookups: one forget leaves it, the second frees it */
	fino_forget(&t, ia, 1);
	ck_assert_int_eq(fino_fh(&t, ia, &got), 0);
	ck_assert(fh_eq(&got, &a));
	fino_forget(&t, ia, 1);
	ck_assert_int_eq(fino_fh(&t, ia, &got), -ESTALE);
	ck_assert_uint_eq(fino_count(&t), 2);
	/* a forget of more than the count frees too; unknown ids are
	 * ignored */
	fino_forget(&t, ib, 5);
	fino_forget(&t, ib, 1);
	fino_forget(&t, 999999, 1);
	ck_assert_uint_eq(fino_count(&t), 1);

	/* found again after being freed: a new id, never an old one */
	ck_assert_int_eq(fino_ref(&t, &a, &ia3), 0);
	ck_assert_uint_ne(ia3, ia);
	ck_assert_uint_ne(ia3, ib);
	fino_table_fini(&t);
}
END_TEST

/* The mark that makes a node's flushes release POSIX locks: per node,
 * gone with the node (a node found again starts unmarked). */
START_TEST(inode_locked)
{
	struct fino_table t;
	dafs_fh_t root = fh_of(0), a = fh_of(1), b = fh_of(2);
	uint64_t ia, ib, ia2;

	ck_assert_int_eq(fino_table_init(&t, &root), 0);
	ck_assert_int_eq(fino_ref(&t, &a, &ia), 0);
	ck_assert_int_eq(fino_ref(&t, &b, &ib), 0);
	ck_assert_int_eq(fino_locked(&t, ia), 0);
	fino_set_locked(&t, ia);
	fino_set_locked(&t, 999999); /* unknown: ignored */
	ck_assert_int_eq(fino_locked(&t, ia), 1);
	ck_assert_int_eq(fino_locked(&t, ib), 0);
	ck_assert_int_eq(fino_locked(&t, 999999), 0);
	fino_forget(&t, ia, 1);
	ck_assert_int_eq(fino_locked(&t, ia), 0);
	ck_assert_int_eq(fino_ref(&t, &a, &ia2), 0);
	ck_assert_int_eq(fino_locked(&t, ia2), 0);
	fino_table_fini(&t);
}
END_TEST

/* Handles that differ only in length or in the last byte are different
 * files. */
START_TEST(inode_similar_handles)
{
	struct fino_table t;
	dafs_fh_t root = fh_of(0), a = fh_of(5), b, c;
	uint64_t ia, ib, ic;

	ck_assert_int_eq(fino_table_init(&t, &root), 0);
	b = a;
	b.len++;
	c = a;
	c.data[c.len - 1] ^= 1;
	ck_assert_int_eq(fino_ref(&t, &a, &ia), 0);
	ck_assert_int_eq(fino_ref(&t, &b, &ib), 0);
	ck_assert_int_eq(fino_ref(&t, &c, &ic), 0);
	ck_assert_uint_ne(ia, ib);
	ck_assert_uint_ne(ia, ic);
	ck_assert_uint_ne(ib, ic);
	fino_table_fini(&t);
}
END_TEST

/* 200,000 entries (the tables double many times), each found by id and by
 * handle; forgotten (the tables shrink again), the table is back to the
 * root. */
START_TEST(inode_many)
{
	enum { N = 200000 };
	struct fino_table t;
	dafs_fh_t root = fh_of(0), fh, got;
	uint64_t *ids = malloc(N * sizeof(*ids)), id;
	uint32_t i;

	ck_assert_ptr_nonnull(ids);
	ck_assert_int_eq(fino_table_init(&t, &root), 0);
	for (i = 0; i < N; i++) {
		fh = fh_of(i + 1);
		ck_assert_int_eq(fino_ref(&t, &fh, &ids[i]), 0);
	}
	ck_assert_uint_eq(fino_count(&t), N + 1);
	for (i = 0; i < N; i++) {
		fh = fh_of(i + 1);
		ck_assert_int_eq(fino_fh(&t, ids[i], &got), 0);
		ck_assert(fh_eq(&got, &fh));
		ck_assert_int_eq(fino_ref(&t, &fh, &id), 0);
		ck_assert_uint_eq(id, ids[i]);
	}
	/* all but every 16th forgotten: the tables shrink under the rest,
	 * which are still found both ways */
	for (i = 0; i < N; i++)
		if (i % 16)
			fino_forget(&t, ids[i], 2);
	ck_assert_uint_eq(fino_count(&t), N / 16 + 1);
	for (i = 0; i < N; i += 16) {
		fh = fh_of(i + 1);
		ck_assert_int_eq(fino_fh(&t, ids[i], &got), 0);
		ck_assert(fh_eq(&got, &fh));
		ck_assert_int_eq(fino_ref(&t, &fh, &id), 0);
		ck_assert_uint_eq(id, ids[i]);
		fino_forget(&t, ids[i], 3);
	}
	ck_assert_uint_eq(fino_count(&t), 1);
	fino_table_fini(&t);
	free(ids);
}
END_TEST

struct racer {
	struct fino_table *t;
	uint32_t base;
};

/* Each thread takes and drops references on a shared set of handles. */
static void *race(void *arg)
{
	struct racer *r = arg;
	dafs_fh_t fh;
	uint64_t id;
	uint32_t i;

	for (i = 0; i < 50000; i++) {
		fh = fh_of(1 + (r->base + i) % 64);
		if (fino_ref(r->t, &fh, &id))
			return (void *)1;
		fino_forget(r->t, id, 1);
	}
	return NULL;
}

START_TEST(inode_threads)
{
	struct fino_table t;
	dafs_fh_t root = fh_of(0);
	struct racer r[4];
	pthread_t th[4];
	void *ret;
	int i;

	ck_assert_int_eq(fino_table_init(&t, &root), 0);
	for (i = 0; i < 4; i++) {
		r[i].t = &t;
		r[i].base = (uint32_t)i * 17;
		ck_assert_int_eq(pthread_create(&th[i], NULL, race, &r[i]), 0);
	}
	for (i = 0; i < 4; i++) {
		ck_assert_int_eq(pthread_join(th[i], &ret), 0);
		ck_assert_ptr_null(ret);
	}
	ck_assert_uint_eq(fino_count(&t), 1);
	fino_table_fini(&t);
}
END_TEST

/*
 * Change stamps (fino_mark, fino_changed): what a directory batch stamped
 * S speaks for. A node is changed after S once marked after S, and any
 * node is once an entry marked after S was freed (its handle forgotten).
 */
START_TEST(inode_changed)
{
	struct fino_table t;
	dafs_fh_t root = fh_of(0), a = fh_of(1), b = fh_of(2), c = fh_of(3);
	uint64_t ia, ib, s0, s1;

	ck_assert_int_eq(fino_table_init(&t, &root), 0);
	ck_assert_int_eq(fino_ref(&t, &a, &ia), 0);
	ck_assert_int_eq(fino_ref(&t, &b, &ib), 0);
	s0 = fino_seq(&t);
	ck_assert_uint_eq(fino_changed(&t, &a), 0);
	ck_assert_uint_eq(fino_changed(&t, &c), 0); /* not in the table */

	fino_mark(&t, ia);
	s1 = fino_seq(&t);
	ck_assert_uint_gt(s1, s0);
	ck_assert_uint_gt(fino_changed(&t, &a), s0); /* a batch at s0: stale */
	ck_assert_uint_le(fino_changed(&t, &a), s1); /* at s1: current */
	ck_assert_uint_le(fino_changed(&t, &b), s0); /* b untouched */
	fino_mark(&t, 12345);			     /* unknown: ignored */
	ck_assert_uint_eq(fino_seq(&t), s1);
	fino_mark(&t, FINO_ROOT_ID);
	ck_assert_uint_gt(fino_changed(&t, &root), s1);

	/* a is freed: its stamp now counts for every handle */
	s1 = fino_seq(&t);
	fino_mark(&t, ia);
	fino_forget(&t, ia, 1);
	ck_assert_uint_gt(fino_changed(&t, &b), s1);
	ck_assert_uint_gt(fino_changed(&t, &c), s1);
	ck_assert_uint_le(fino_changed(&t, &c), fino_seq(&t));
	/* an unchanged entry freed adds nothing */
	s1 = fino_seq(&t);
	fino_forget(&t, ib, 1);
	ck_assert_uint_le(fino_changed(&t, &c), s1);
	fino_table_fini(&t);
}
END_TEST

START_TEST(cred_canonical)
{
	const gid_t g1[] = {30, 10, 20, 10, 30};
	const gid_t g2[] = {10, 20, 30};
	gid_t many[40];
	struct fcred a, b;
	int i;

	fcred_canon(&a, 1000, 100, 5, g1);
	fcred_canon(&b, 1000, 100, 3, g2);
	ck_assert_uint_eq(a.ngroups, 3);
	ck_assert_uint_eq(a.groups[0], 10);
	ck_assert_uint_eq(a.groups[1], 20);
	ck_assert_uint_eq(a.groups[2], 30);
	ck_assert_int_eq(memcmp(&a, &b, sizeof(a)), 0);

	/* no groups, or a failed read (negative) */
	fcred_canon(&a, 0, 0, 0, NULL);
	ck_assert_uint_eq(a.ngroups, 0);
	fcred_canon(&a, 0, 0, -5, NULL);
	ck_assert_uint_eq(a.ngroups, 0);

	/* more than the protocol carries: the first 32 */
	for (i = 0; i < 40; i++)
		many[i] = (gid_t)(100 - i);
	fcred_canon(&a, 1, 1, 40, many);
	ck_assert_uint_eq(a.ngroups, FCRED_GROUPS_MAX);
	ck_assert_uint_eq(a.groups[0], 69);
	ck_assert_uint_eq(a.groups[FCRED_GROUPS_MAX - 1], 100);
}
END_TEST

static Suite *tables_suite(void)
{
	Suite *s = suite_create("fuse-tables");
	TCase *tc = tcase_create("inode");

	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, inode_root);
	tcase_add_test(tc, inode_counts);
	tcase_add_test(tc, inode_locked);
	tcase_add_test(tc, inode_similar_handles);
	tcase_add_test(tc, inode_many);
	tcase_add_test(tc, inode_threads);
	tcase_add_test(tc, inode_changed);
	suite_add_tcase(s, tc);

	tc = tcase_create("creds");
	tcase_add_test(tc, cred_canonical);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(tables_suite());
	int failed;

	srunner_run_all(sr, CK_ENV);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
