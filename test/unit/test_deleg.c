/*
 * test_deleg.c - the delegation manager's state machine (src/server/deleg.c)
 * driven by hand-built events with literal timestamps: grants and refusals
 * by openers and policy, recall of conflicting delegations (once), return
 * with recall latency, revocation after the lease and its tombstone, the
 * hold-off after a recall, operations in progress blocking grants, upgrade,
 * an owner going away, and many files and owners at once.
 */
#include <check.h>
#include <stdlib.h>

#include "dafs/dafs.h"
#include "server/deleg_i.h"

#define MS 1000000ull
#define LEASE (10000 * MS)
#define HOLDOFF (1000 * MS)

static struct dlg_mgr m;
/* owners: any distinct pointers */
static char A, B, C;
static const struct dlg_key K1 = {1, 100}, K2 = {1, 200};

static void setup(void)
{
	dlg_mgr_init(&m, DLG_POLICY_ON, LEASE, HOLDOFF, 1000);
}

static void teardown(void)
{
	dlg_mgr_destroy(&m);
}

/* begin + open; asserts the begin went through */
static int do_open(struct dlg_key k, void *owner, int kind, int want,
		   uint64_t now, uint64_t *id)
{
	struct dlg_event ev[4];
	uint64_t dl;
	int nev;

	ck_assert_int_eq(dlg_begin(&m, k, owner, kind, now, ev, 4, &nev, &dl),
			 0);
	ck_assert_int_eq(nev, 0);
	return dlg_open(&m, k, owner, kind, want, LEASE, now, id);
}

START_TEST(grant_read_many)
{
	uint64_t a, b, c;

	ck_assert_int_eq(do_open(K1, &A, DLG_C_READ, DLG_READ, 1, &a), DLG_READ);
	ck_assert_int_eq(do_open(K1, &B, DLG_C_READ, DLG_READ, 2, &b), DLG_READ);
	ck_assert_int_eq(do_open(K1, &C, DLG_C_READ, DLG_READ, 3, &c), DLG_READ);
	ck_assert_uint_ne(a, b);
	ck_assert_uint_ne(b, c);
	ck_assert_uint_eq(a, 1000);
	ck_assert_uint_eq(m.st.grants_read, 3);
	ck_assert_uint_eq(m.st.active, 3);
	ck_assert_ptr_eq(dlg_find(&m, b)->owner, &B);
}
END_TEST

START_TEST(write_deleg_rules)
{
	uint64_t a, b;

	/* a write delegation for the only opener */
	ck_assert_int_eq(do_open(K1, &A, DLG_C_WRITE, DLG_WRITE, 1, &a),
			 DLG_WRITE);
	/* a second owner's open conflicts: it must recall first (below) */
	dlg_return(&m, a, &A, 2);
	/* A still has it open for writing: B may not get even a read one */
	ck_assert_int_eq(do_open(K1, &B, DLG_C_READ, DLG_READ, 3, &b),
			 DLG_NONE);
	ck_assert_uint_eq(b, 0);
	/* B wanting write while A reads K2 gets a read delegation: nobody
	 * else writes */
	ck_assert_int_eq(do_open(K2, &A, DLG_C_READ, DLG_NONE, 4, &a), DLG_NONE);
	ck_assert_int_eq(do_open(K2, &B, DLG_C_WRITE, DLG_WRITE, 5, &b),
			 DLG_READ);
	/* once A closes, B's next write open upgrades it */
	dlg_close(&m, K2, &A, DLG_C_READ);
	ck_assert_int_eq(do_open(K2, &B, DLG_C_WRITE, DLG_WRITE, 6, &a),
			 DLG_WRITE);
	ck_assert_uint_eq(a, b);
}
END_TEST

START_TEST(write_wanted_read_given)
{
	uint64_t a, b;

	/* A reads (no delegation wanted); B wants write: only read fits */
	ck_assert_int_eq(do_open(K1, &A, DLG_C_READ, DLG_NONE, 1, &a), DLG_NONE);
	ck_assert_int_eq(do_open(K1, &B, DLG_C_READ, DLG_WRITE, 2, &b),
			 DLG_READ);
}
END_TEST

START_TEST(policy)
{
	uint64_t a;

	m.policy = DLG_POLICY_READ;
	ck_assert_int_eq(do_open(K1, &A, DLG_C_WRITE, DLG_WRITE, 1, &a),
			 DLG_READ);
	dlg_mgr_destroy(&m);
	dlg_mgr_init(&m, DLG_POLICY_OFF, LEASE, HOLDOFF, 1);
	ck_assert_int_eq(do_open(K1, &A, DLG_C_READ, DLG_READ, 1, &a), DLG_NONE);
	ck_assert_uint_eq(m.st.active, 0);
}
END_TEST

START_TEST(recall_once_and_return)
{
	struct dlg_event ev[4];
	uint64_t a, c, dl;
	int nev;

	ck_assert_int_eq(do_open(K1, &A, DLG_C_READ, DLG_READ, 1, &a), DLG_READ);
	ck_assert_int_eq(do_open(K1, &C, DLG_C_READ, DLG_READ, 1, &c), DLG_READ);
	dlg_close(&m, K1, &A, DLG_C_READ); /* the delegation outlives it */
	/* B reads: read delegations do not conflict */
	ck_assert_int_eq(dlg_begin(&m, K1, &B, DLG_C_READ, 5, ev, 4, &nev, &dl),
			 0);
	dlg_end(&m, K1);
	/* B writes: both read delegations are recalled, once */
	ck_assert_int_eq(
		dlg_begin(&m, K1, &B, DLG_C_WRITE, 10 * MS, ev, 4, &nev, &dl),
		2);
	ck_assert_int_eq(nev, 2);
	ck_assert(ev[0].owner == &A || ev[1].owner == &A);
	ck_assert(ev[0].owner == &C || ev[1].owner == &C);
	/* until the CB_RECALLs are known to have arrived, the next look is
	 * at the retry */
	ck_assert_uint_eq(dl, 10 * MS + DLG_RETRY_NS);
	dlg_recall_sent(&m, a, 1, 11 * MS);
	dlg_recall_sent(&m, c, 1, 11 * MS);
	ck_assert_int_eq(
		dlg_begin(&m, K1, &B, DLG_C_WRITE, 20 * MS, ev, 4, &nev, &dl),
		2);
	ck_assert_int_eq(nev, 0); /* not recalled again */
	ck_assert_uint_eq(dl, 10 * MS + LEASE);
	ck_assert_uint_eq(m.st.recalls, 2);
	ck_assert_int_eq(dlg_find(&m, a)->state, DLG_RECALLING);
	/* returns; a wrong owner or id is refused */
	ck_assert_int_eq(dlg_return(&m, a, &B, 30 * MS), -DAFS_EBADDELEG);
	ck_assert_int_eq(dlg_return(&m, 999999, &A, 30 * MS), -DAFS_EBADDELEG);
	ck_assert_int_eq(dlg_return(&m, a, &A, 40 * MS), 0);
	ck_assert_int_eq(dlg_return(&m, a, &A, 40 * MS), -DAFS_EBADDELEG);
	ck_assert_int_eq(
		dlg_begin(&m, K1, &B, DLG_C_WRITE, 45 * MS, ev, 4, &nev, &dl),
		1);
	ck_assert_int_eq(dlg_return(&m, c, &C, 70 * MS), 0);
	ck_assert_int_eq(
		dlg_begin(&m, K1, &B, DLG_C_WRITE, 80 * MS, ev, 4, &nev, &dl),
		0);
	dlg_end(&m, K1);
	ck_assert_uint_eq(m.st.returns, 2);
	ck_assert_uint_eq(m.st.recall_ns_total, 30 * MS + 60 * MS);
	ck_assert_uint_eq(m.st.recall_ns_max, 60 * MS);
	ck_assert_uint_eq(m.st.active, 0);
}
END_TEST

START_TEST(revoke_after_lease)
{
	struct dlg_event ev[4], rev[4];
	uint64_t a, dl;
	int nev;

	ck_assert_int_eq(do_open(K1, &A, DLG_C_WRITE, DLG_WRITE, 1, &a),
			 DLG_WRITE);
	/* a read by B conflicts with a write delegation */
	ck_assert_int_eq(dlg_begin(&m, K1, &B, DLG_C_READ, 100 * MS, ev, 4,
				   &nev, &dl),
			 1);
	ck_assert_int_eq(nev, 1);
	ck_assert_int_eq(ev[0].type, DLG_WRITE);
	/* not yet */
	ck_assert_int_eq(dlg_expire(&m, 100 * MS + LEASE - 1, rev, 4), 0);
	ck_assert_int_eq(dlg_expire(&m, 100 * MS + LEASE, rev, 4), 1);
	ck_assert_ptr_eq(rev[0].owner, &A);
	ck_assert_uint_eq(rev[0].id, a);
	ck_assert_uint_eq(rev[0].key.ino, K1.ino);
	ck_assert_int_eq(dlg_find(&m, a)->state, DLG_REVOKED);
	ck_assert_uint_eq(m.st.revokes, 1);
	ck_assert_uint_eq(m.st.active, 0);
	/* B goes ahead now */
	ck_assert_int_eq(dlg_begin(&m, K1, &B, DLG_C_READ, 100 * MS + LEASE,
				   ev, 4, &nev, &dl),
			 0);
	dlg_end(&m, K1);
	/* the late return learns of the revocation, once */
	ck_assert_int_eq(dlg_return(&m, a, &A, 200 * MS + LEASE),
			 -DAFS_EREVOKED);
	ck_assert_int_eq(dlg_return(&m, a, &A, 200 * MS + LEASE),
			 -DAFS_EBADDELEG);
}
END_TEST

START_TEST(holdoff_after_recall)
{
	struct dlg_event ev[4];
	uint64_t a, b, dl;
	int nev;

	ck_assert_int_eq(do_open(K1, &A, DLG_C_READ, DLG_READ, 1, &a), DLG_READ);
	dlg_close(&m, K1, &A, DLG_C_READ);
	ck_assert_int_eq(dlg_begin(&m, K1, &B, DLG_C_WRITE, 10 * MS, ev, 4,
				   &nev, &dl),
			 1);
	ck_assert_int_eq(dlg_return(&m, a, &A, 20 * MS), 0);
	/* A opens again before B's operation has run: no grant while B's
	 * operation is under way, nor during the hold-off */
	ck_assert_int_eq(dlg_begin(&m, K1, &B, DLG_C_WRITE, 21 * MS, ev, 4,
				   &nev, &dl),
			 0);
	ck_assert_int_eq(dlg_begin(&m, K1, &A, DLG_C_READ, 22 * MS, ev, 4,
				   &nev, &dl),
			 0);
	ck_assert_int_eq(dlg_open(&m, K1, &A, DLG_C_READ, DLG_READ, LEASE, 23 * MS,
				  &a),
			 DLG_NONE);
	dlg_end(&m, K1); /* B's operation done */
	dlg_close(&m, K1, &A, DLG_C_READ);
	ck_assert_int_eq(do_open(K1, &A, DLG_C_READ, DLG_READ, 500 * MS, &a),
			 DLG_NONE);
	dlg_close(&m, K1, &A, DLG_C_READ);
	/* after the hold-off, granted again */
	ck_assert_int_eq(
		do_open(K1, &A, DLG_C_READ, DLG_READ, 10 * MS + HOLDOFF, &a),
		DLG_READ);
	(void)b;
}
END_TEST

START_TEST(busy_blocks_grants)
{
	struct dlg_event ev[4];
	uint64_t a, dl;
	int nev;

	/* B removes K1 (an operation in progress): A's open meanwhile gets
	 * no delegation */
	ck_assert_int_eq(dlg_begin(&m, K1, &B, DLG_C_WRITE, 1, ev, 4, &nev, &dl),
			 0);
	ck_assert_int_eq(do_open(K1, &A, DLG_C_READ, DLG_READ, 2, &a), DLG_NONE);
	dlg_end(&m, K1);
	dlg_close(&m, K1, &A, DLG_C_READ);
	ck_assert_int_eq(do_open(K1, &A, DLG_C_READ, DLG_READ, 3, &a), DLG_READ);
}
END_TEST

START_TEST(own_ops_no_conflict_and_upgrade)
{
	struct dlg_event ev[4];
	uint64_t a, a2, dl;
	int nev;

	ck_assert_int_eq(do_open(K1, &A, DLG_C_READ, DLG_READ, 1, &a), DLG_READ);
	/* A's own write does not recall A's delegation */
	ck_assert_int_eq(dlg_begin(&m, K1, &A, DLG_C_WRITE, 2, ev, 4, &nev, &dl),
			 0);
	/* and its write open upgrades it, same id */
	ck_assert_int_eq(dlg_open(&m, K1, &A, DLG_C_WRITE, DLG_WRITE, LEASE, 3, &a2),
			 DLG_WRITE);
	ck_assert_uint_eq(a2, a);
	ck_assert_uint_eq(m.st.upgrades, 1);
	/* with B reading, a read delegation is not upgraded */
	ck_assert_int_eq(do_open(K2, &B, DLG_C_READ, DLG_NONE, 4, &a2), DLG_NONE);
	ck_assert_int_eq(do_open(K2, &A, DLG_C_READ, DLG_READ, 5, &a), DLG_READ);
	ck_assert_int_eq(do_open(K2, &A, DLG_C_WRITE, DLG_WRITE, 6, &a2),
			 DLG_READ);
	ck_assert_uint_eq(a2, a);
}
END_TEST

START_TEST(owner_gone)
{
	struct dlg_event ev[4], rev[4];
	uint64_t a, b, dl;
	int nev;

	ck_assert_int_eq(do_open(K1, &A, DLG_C_WRITE, DLG_WRITE, 1, &a),
			 DLG_WRITE);
	ck_assert_int_eq(do_open(K2, &A, DLG_C_READ, DLG_READ, 1, &b), DLG_READ);
	ck_assert_int_eq(dlg_begin(&m, K2, &B, DLG_C_WRITE, 2, ev, 4, &nev, &dl),
			 1);
	ck_assert_int_eq(dlg_expire(&m, 2 + LEASE, rev, 4), 1); /* tombstone */
	dlg_close(&m, K1, &A, DLG_C_WRITE);
	dlg_close(&m, K2, &A, DLG_C_READ);
	dlg_owner_gone(&m, &A);
	ck_assert_ptr_null(dlg_find(&m, a));
	ck_assert_ptr_null(dlg_find(&m, b));
	ck_assert_uint_eq(m.st.active, 0);
	ck_assert_int_eq(dlg_begin(&m, K1, &B, DLG_C_WRITE, 3 + LEASE, ev, 4,
				   &nev, &dl),
			 0);
	dlg_end(&m, K1);
}
END_TEST

START_TEST(many_files)
{
	struct dlg_event ev[4], rev[64];
	struct dlg_key k;
	uint64_t id, dl;
	int i, nev, n = 0;

	for (i = 0; i < 10000; i++) {
		k.dev = 7;
		k.ino = (uint64_t)i;
		ck_assert_int_eq(do_open(k, &A, DLG_C_READ, DLG_READ, 1, &id),
				 DLG_READ);
		dlg_close(&m, k, &A, DLG_C_READ);
	}
	ck_assert_uint_eq(m.st.active, 10000);
	for (i = 0; i < 10000; i += 100) {
		k.dev = 7;
		k.ino = (uint64_t)i;
		ck_assert_int_eq(dlg_begin(&m, k, &B, DLG_C_WRITE, 5, ev, 4,
					   &nev, &dl),
				 1);
	}
	/* expiry in batches of at most 64 */
	while ((i = dlg_expire(&m, 5 + LEASE, rev, 64)) > 0)
		n += i;
	ck_assert_int_eq(n, 100);
	ck_assert_uint_eq(m.st.active, 9900);
}
END_TEST

START_TEST(recall_retried_until_sent)
{
	struct dlg_event ev[4];
	uint64_t a, dl;
	int nev;

	ck_assert_int_eq(do_open(K1, &A, DLG_C_READ, DLG_READ, 1, &a), DLG_READ);
	ck_assert_int_eq(dlg_begin(&m, K1, &B, DLG_C_WRITE, 10 * MS, ev, 4,
				   &nev, &dl),
			 1);
	ck_assert_int_eq(nev, 1);
	/* the deadline is the retry, not the revocation */
	ck_assert_uint_eq(dl, 10 * MS + DLG_RETRY_NS);
	dlg_recall_sent(&m, a, 0, 10 * MS); /* the send failed */
	ck_assert_int_eq(dlg_begin(&m, K1, &B, DLG_C_WRITE, 50 * MS, ev, 4,
				   &nev, &dl),
			 1);
	ck_assert_int_eq(nev, 0); /* too soon */
	ck_assert_int_eq(dlg_begin(&m, K1, &B, DLG_C_WRITE,
				   10 * MS + DLG_RETRY_NS, ev, 4, &nev, &dl),
			 1);
	ck_assert_int_eq(nev, 1); /* tried again */
	ck_assert_uint_eq(ev[0].id, a);
	dlg_recall_sent(&m, a, 1, 10 * MS + DLG_RETRY_NS);
	ck_assert_int_eq(dlg_begin(&m, K1, &B, DLG_C_WRITE, 5000 * MS, ev, 4,
				   &nev, &dl),
			 1);
	ck_assert_int_eq(nev, 0); /* reached the holder: never again */
	ck_assert_uint_eq(dl, 10 * MS + LEASE); /* from the first recall */
	ck_assert_uint_eq(m.st.recalls, 1);
}
END_TEST

START_TEST(no_grants_while_waiting_or_recalling)
{
	struct dlg_event ev[4];
	uint64_t a, c, dl;
	int nev;

	ck_assert_int_eq(do_open(K1, &A, DLG_C_READ, DLG_READ, 1, &a), DLG_READ);
	dlg_close(&m, K1, &A, DLG_C_READ);
	ck_assert_int_eq(dlg_begin(&m, K1, &B, DLG_C_WRITE, 2 * MS, ev, 4,
				   &nev, &dl),
			 1);
	dlg_wait(&m, K1, 1);
	/* past the hold-off: C reads, and still gets nothing while B
	 * waits and A's delegation is being recalled */
	ck_assert_int_eq(do_open(K1, &C, DLG_C_READ, DLG_READ,
				 2 * MS + HOLDOFF, &c),
			 DLG_NONE);
	dlg_close(&m, K1, &C, DLG_C_READ);
	/* nor A itself: its own open gets no second delegation */
	ck_assert_int_eq(do_open(K1, &A, DLG_C_READ, DLG_READ,
				 2 * MS + HOLDOFF, &c),
			 DLG_NONE);
	dlg_close(&m, K1, &A, DLG_C_READ);
	ck_assert_int_eq(dlg_return(&m, a, &A, 3 * MS + HOLDOFF), 0);
	dlg_wait(&m, K1, -1);
	ck_assert_int_eq(dlg_begin(&m, K1, &B, DLG_C_WRITE, 4 * MS + HOLDOFF,
				   ev, 4, &nev, &dl),
			 0);
	dlg_end(&m, K1);
	ck_assert_int_eq(do_open(K1, &C, DLG_C_READ, DLG_READ,
				 5 * MS + 2 * HOLDOFF, &c),
			 DLG_READ);
}
END_TEST

START_TEST(holder_lease)
{
	struct dlg_event ev[4], rev[4];
	uint64_t a, dl;
	int nev;

	/* a holder with a lease shorter than the server's longest is
	 * revoked when its own lease has passed */
	ck_assert_int_eq(dlg_begin(&m, K1, &A, DLG_C_WRITE, 1, ev, 4, &nev, &dl),
			 0);
	ck_assert_int_eq(dlg_open(&m, K1, &A, DLG_C_WRITE, DLG_WRITE,
				  2000 * MS, 1, &a),
			 DLG_WRITE);
	ck_assert_int_eq(dlg_begin(&m, K1, &B, DLG_C_READ, 10 * MS, ev, 4,
				   &nev, &dl),
			 1);
	dlg_recall_sent(&m, a, 1, 10 * MS);
	ck_assert_int_eq(dlg_begin(&m, K1, &B, DLG_C_READ, 11 * MS, ev, 4,
				   &nev, &dl),
			 1);
	ck_assert_uint_eq(dl, 2010 * MS);
	ck_assert_int_eq(dlg_expire(&m, 2009 * MS, rev, 4), 0);
	ck_assert_int_eq(dlg_expire(&m, 2010 * MS, rev, 4), 1);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("deleg");
	TCase *t = tcase_create("core");

	tcase_add_checked_fixture(t, setup, teardown);
	tcase_add_test(t, grant_read_many);
	tcase_add_test(t, write_deleg_rules);
	tcase_add_test(t, write_wanted_read_given);
	tcase_add_test(t, policy);
	tcase_add_test(t, recall_once_and_return);
	tcase_add_test(t, revoke_after_lease);
	tcase_add_test(t, holdoff_after_recall);
	tcase_add_test(t, busy_blocks_grants);
	tcase_add_test(t, own_ops_no_conflict_and_upgrade);
	tcase_add_test(t, owner_gone);
	tcase_add_test(t, many_files);
	tcase_add_test(t, recall_retried_until_sent);
	tcase_add_test(t, no_grants_while_waiting_or_recalling);
	tcase_add_test(t, holder_lease);
	suite_add_tcase(s, t);
	return s;
}

int main(void)
{
	SRunner *r = srunner_create(suite());
	int failed;

	srunner_run_all(r, CK_ENV);
	failed = srunner_ntests_failed(r);
	srunner_free(r);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
