/*
 * test_session.c - the session state machine of src/proto, sans I/O:
 * negotiation from a hand-built CREATE_SESSION frame, the slot table and
 * its reply cache (new, replay, re-execute, busy, misordered, bad slot,
 * wrap-around), the client's slot allocator (credits), and lease expiry with
 * literal timestamps.
 */
#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "proto/session_i.h"
#include "proto/wire_i.h"

static const struct dafs_sess_params limits = {
	.max_request = 65536 + 4096,
	.max_response = 32768,
	.inline_max = 8192,
	.credits = 8,
	.cb_credits = 2,
	.write_method = DAFS_WRITE_RDMA_READ,
	.lease_ms = 60000,
	.max_io = 1u << 20,
};

/* CREATE_SESSION request for export "data", every parameter given. */
static const uint8_t create_frame[] = {
	0x44, 0x41, 0x46, 0x53, /* magic "DAFS" */
	0x01, 0x00, 0x01, 0x00, /* version 1, flags 0, op 1 */
	0x00, 0x00, 0x00, 0x00, /* slot 0 */
	0x01, 0x00, 0x00, 0x00, /* seq 1 */
	0x00, 0x00, 0x00, 0x00, /* cred 0 */
	0x28, 0x00, 0x00, 0x00, /* body length 40 */
	0x01, 0x00, 0x00, 0x00, /* version 1 */
	0x04, 0x00, 0x00, 0x00, 'd', 'a', 't', 'a', /* export */
	0x00, 0x00, 0x20, 0x00, /* max request 2 MiB (above the limit) */
	0x00, 0x04, 0x00, 0x00, /* max response 1 KiB (below the minimum) */
	0x00, 0x10, 0x00, 0x00, /* inline 4096 */
	0x00, 0x01, 0x00, 0x00, /* credits 256 (above the limit) */
	0x00, 0x00, 0x00, 0x00, /* cb credits: default */
	0x02, 0x00, 0x00, 0x00, /* write method RDMA READ */
	0x00, 0x00, 0x00, 0x00, /* lease: default */
};

START_TEST(negotiate_hand_built)
{
	struct dafs_m_create_session_req q;
	struct dafs_sess_params p;
	struct dafs_hdr h;

	ck_assert_int_eq(dafs_msg_parse(create_frame, sizeof(create_frame),
					&h, &q),
			 0);
	ck_assert_uint_eq(h.op, DAFS_OP_CREATE_SESSION);
	ck_assert_uint_eq(q.export_.len, 4);
	ck_assert(!memcmp(q.export_.p, "data", 4));
	dafs_sess_negotiate(&q, &limits, &p);
	ck_assert_uint_eq(p.max_request, limits.max_request); /* clamped */
	ck_assert_uint_eq(p.max_response, DAFS_MSG_MIN);      /* raised */
	ck_assert_uint_eq(p.credits, 8);
	ck_assert_uint_eq(p.cb_credits, 2);
	ck_assert_uint_eq(p.write_method, DAFS_WRITE_RDMA_READ);
	ck_assert_uint_eq(p.lease_ms, 30000); /* the default, under 60 s */
	/* inline data must fit the smaller of request and response */
	ck_assert_uint_le(p.inline_max, DAFS_MSG_MIN - DAFS_IO_OVERHEAD);
	/* RDMA READ writes do not carry data in the request */
	ck_assert_uint_eq(p.max_io, limits.max_io);
}
END_TEST

START_TEST(negotiate_defaults_and_fallbacks)
{
	struct dafs_m_create_session_req q;
	struct dafs_sess_params p, lim = limits;

	memset(&q, 0, sizeof(q));
	lim.write_method = DAFS_WRITE_GATHER; /* server cannot RDMA READ */
	q.write_method = DAFS_WRITE_RDMA_READ;
	dafs_sess_negotiate(&q, &lim, &p);
	ck_assert_uint_eq(p.write_method, DAFS_WRITE_GATHER);
	/* gather-send writes carry their data: max_io fits a request */
	ck_assert_uint_le(p.max_io, p.max_request - DAFS_IO_OVERHEAD);
	q.write_method = 77; /* unknown */
	dafs_sess_negotiate(&q, &limits, &p);
	ck_assert_uint_eq(p.write_method, DAFS_WRITE_GATHER);
	q.credits = 0;
	q.lease_ms = 10;
	dafs_sess_negotiate(&q, &limits, &p);
	ck_assert_uint_eq(p.credits, 8); /* default 16 clamped to 8 */
	ck_assert_uint_eq(p.lease_ms, 1000); /* raised to the minimum */
}
END_TEST

#define NSLOTS 4
static uint8_t bufs[NSLOTS][256];
static struct dafs_slot_table tab;

static void slots_setup(void)
{
	uint8_t *b[NSLOTS];
	int i;

	for (i = 0; i < NSLOTS; i++)
		b[i] = bufs[i];
	memset(bufs, 0, sizeof(bufs));
	ck_assert_int_eq(dafs_slots_init(&tab, NSLOTS, b, &dafs_alloc_std), 0);
}

static void slots_teardown(void)
{
	dafs_slots_fini(&tab);
}

static const uint8_t NI = 0;                  /* not idempotent */
static const uint8_t ID = DAFS_OPF_IDEMPOTENT; /* idempotent */

START_TEST(slot_new_then_replay)
{
	/* an exclusive create executes once; its retransmission replays the
	 * cached reply byte for byte */
	ck_assert_int_eq(dafs_slot_begin(&tab, 1, 1, DAFS_OP_CREATE, NI),
			 DAFS_SV_NEW);
	memcpy(tab.s[1].reply, "reply-of-create", 15);
	dafs_slot_end(&tab, 1, 15);
	ck_assert_int_eq(dafs_slot_begin(&tab, 1, 1, DAFS_OP_CREATE, NI),
			 DAFS_SV_REPLAY);
	ck_assert_uint_eq(tab.s[1].reply_len, 15);
	ck_assert(!memcmp(tab.s[1].reply, "reply-of-create", 15));
	/* and again: still a replay, never a second execution */
	ck_assert_int_eq(dafs_slot_begin(&tab, 1, 1, DAFS_OP_CREATE, NI),
			 DAFS_SV_REPLAY);
	/* the next sequence number executes */
	ck_assert_int_eq(dafs_slot_begin(&tab, 1, 2, DAFS_OP_RENAME, NI),
			 DAFS_SV_NEW);
	dafs_slot_end(&tab, 1, 10);
	ck_assert_int_eq(dafs_slot_begin(&tab, 1, 2, DAFS_OP_RENAME, NI),
			 DAFS_SV_REPLAY);
}
END_TEST

START_TEST(slot_unwind_after_delay)
{
	/* an OPEN answered DAFS_EDELAY did nothing: its resend (same slot,
	 * same seq) executes as new, and the sequence goes on from there */
	ck_assert_int_eq(dafs_slot_begin(&tab, 3, 1, DAFS_OP_OPEN, NI),
			 DAFS_SV_NEW);
	dafs_slot_end(&tab, 3, 30);
	ck_assert_int_eq(dafs_slot_begin(&tab, 3, 2, DAFS_OP_OPEN, NI),
			 DAFS_SV_NEW);
	dafs_slot_unwind(&tab, 3);
	ck_assert_int_eq(tab.s[3].state, DAFS_SLOT_IDLE);
	ck_assert_int_eq(tab.s[3].cached, 0);
	ck_assert_int_eq(dafs_slot_begin(&tab, 3, 2, DAFS_OP_OPEN, NI),
			 DAFS_SV_NEW);
	dafs_slot_end(&tab, 3, 30);
	ck_assert_int_eq(dafs_slot_begin(&tab, 3, 2, DAFS_OP_OPEN, NI),
			 DAFS_SV_REPLAY);
	/* an idempotent re-execution unwound stays a re-execution */
	ck_assert_int_eq(dafs_slot_begin(&tab, 3, 3, DAFS_OP_READ, ID),
			 DAFS_SV_NEW);
	dafs_slot_end(&tab, 3, 30);
	ck_assert_int_eq(dafs_slot_begin(&tab, 3, 3, DAFS_OP_READ, ID),
			 DAFS_SV_REEXEC);
	dafs_slot_unwind(&tab, 3);
	ck_assert_int_eq(dafs_slot_begin(&tab, 3, 3, DAFS_OP_READ, ID),
			 DAFS_SV_REEXEC);
	dafs_slot_end(&tab, 3, 30);
	ck_assert_int_eq(dafs_slot_begin(&tab, 3, 4, DAFS_OP_READ, ID),
			 DAFS_SV_NEW);
	dafs_slot_end(&tab, 3, 30);
}
END_TEST

START_TEST(slot_idempotent_reexecutes)
{
	ck_assert_int_eq(dafs_slot_begin(&tab, 0, 1, DAFS_OP_READ, ID),
			 DAFS_SV_NEW);
	dafs_slot_end(&tab, 0, 40);
	ck_assert_int_eq(dafs_slot_begin(&tab, 0, 1, DAFS_OP_READ, ID),
			 DAFS_SV_REEXEC);
	ck_assert_int_eq(tab.s[0].state, DAFS_SLOT_BUSY);
	dafs_slot_end(&tab, 0, 40);
}
END_TEST

START_TEST(slot_busy_while_executing)
{
	ck_assert_int_eq(dafs_slot_begin(&tab, 2, 1, DAFS_OP_CREATE, NI),
			 DAFS_SV_NEW);
	/* the retransmission arrives before the original finished */
	ck_assert_int_eq(dafs_slot_begin(&tab, 2, 1, DAFS_OP_CREATE, NI),
			 DAFS_SV_BUSY);
	ck_assert_int_eq(dafs_slot_begin(&tab, 2, 2, DAFS_OP_CREATE, NI),
			 DAFS_SV_BUSY);
	dafs_slot_end(&tab, 2, 8);
	ck_assert_int_eq(dafs_slot_begin(&tab, 2, 1, DAFS_OP_CREATE, NI),
			 DAFS_SV_REPLAY);
}
END_TEST

START_TEST(slot_misordered_and_bad)
{
	/* first request of a slot must be seq 1 */
	ck_assert_int_eq(dafs_slot_begin(&tab, 3, 0, DAFS_OP_GETATTR, ID),
			 DAFS_SV_MISORDERED);
	ck_assert_int_eq(dafs_slot_begin(&tab, 3, 2, DAFS_OP_GETATTR, ID),
			 DAFS_SV_MISORDERED);
	ck_assert_int_eq(dafs_slot_begin(&tab, 3, 1, DAFS_OP_GETATTR, ID),
			 DAFS_SV_NEW);
	dafs_slot_end(&tab, 3, 4);
	/* skipping ahead, going back, or reusing seq for another op */
	ck_assert_int_eq(dafs_slot_begin(&tab, 3, 3, DAFS_OP_GETATTR, ID),
			 DAFS_SV_MISORDERED);
	ck_assert_int_eq(dafs_slot_begin(&tab, 3, 1, DAFS_OP_REMOVE, NI),
			 DAFS_SV_MISORDERED);
	ck_assert_int_eq(dafs_slot_begin(&tab, NSLOTS, 1, DAFS_OP_NULL, ID),
			 DAFS_SV_BADSLOT);
	ck_assert_int_eq(dafs_slot_begin(&tab, UINT32_MAX, 1, DAFS_OP_NULL,
					 ID),
			 DAFS_SV_BADSLOT);
	/* a misordered request changes nothing: seq 2 is still next */
	ck_assert_int_eq(dafs_slot_begin(&tab, 3, 2, DAFS_OP_GETATTR, ID),
			 DAFS_SV_NEW);
}
END_TEST

START_TEST(slot_uncached_not_replayed)
{
	/* executed, but the reply never reached the cache (len 0): a
	 * retransmission must not run a non-idempotent op again */
	ck_assert_int_eq(dafs_slot_begin(&tab, 0, 1, DAFS_OP_REMOVE, NI),
			 DAFS_SV_NEW);
	dafs_slot_end(&tab, 0, 0);
	ck_assert_int_eq(dafs_slot_begin(&tab, 0, 1, DAFS_OP_REMOVE, NI),
			 DAFS_SV_MISORDERED);
}
END_TEST

START_TEST(slot_wraps)
{
	tab.s[0].seq = UINT32_MAX - 1;
	ck_assert_int_eq(dafs_slot_begin(&tab, 0, UINT32_MAX, DAFS_OP_NULL,
					 ID),
			 DAFS_SV_NEW);
	dafs_slot_end(&tab, 0, 4);
	/* after UINT32_MAX comes 1, never 0 */
	ck_assert_int_eq(dafs_slot_begin(&tab, 0, 0, DAFS_OP_NULL, ID),
			 DAFS_SV_MISORDERED);
	ck_assert_int_eq(dafs_slot_begin(&tab, 0, 1, DAFS_OP_NULL, ID),
			 DAFS_SV_NEW);
}
END_TEST

START_TEST(cslots_credits)
{
	struct dafs_cslots c;
	uint32_t slot, seq, used[3];
	int i;

	ck_assert_int_eq(dafs_cslots_init(&c, 3, &dafs_alloc_std), 0);
	for (i = 0; i < 3; i++) {
		ck_assert_int_eq(dafs_cslot_get(&c, &used[i], &seq), 0);
		ck_assert_uint_eq(seq, 1);
	}
	/* all credits in use */
	ck_assert_int_eq(dafs_cslot_get(&c, &slot, &seq), -EAGAIN);
	ck_assert(used[0] != used[1] && used[1] != used[2] &&
		  used[0] != used[2]);
	dafs_cslot_put(&c, used[1]);
	dafs_cslot_put(&c, used[1]); /* a double put is ignored */
	ck_assert_uint_eq(c.nfree, 1);
	ck_assert_int_eq(dafs_cslot_get(&c, &slot, &seq), 0);
	ck_assert_uint_eq(slot, used[1]);
	ck_assert_uint_eq(seq, 2); /* the slot's next sequence */
	ck_assert_int_eq(dafs_cslot_get(&c, &slot, &seq), -EAGAIN);
	/* given back unused (DAFS_EDELAY, then given up): the same number
	 * comes again */
	dafs_cslot_unuse(&c, slot);
	ck_assert_int_eq(dafs_cslot_get(&c, &slot, &seq), 0);
	ck_assert_uint_eq(slot, used[1]);
	ck_assert_uint_eq(seq, 2);
	dafs_cslots_fini(&c);
}
END_TEST

/* Client and server slot machinery agree: every request the allocator
 * hands out is NEW on the server, its retransmission a REPLAY. */
START_TEST(client_server_in_step)
{
	struct dafs_cslots c;
	uint32_t slot, seq;
	int i;

	ck_assert_int_eq(dafs_cslots_init(&c, NSLOTS, &dafs_alloc_std), 0);
	for (i = 0; i < 1000; i++) {
		ck_assert_int_eq(dafs_cslot_get(&c, &slot, &seq), 0);
		ck_assert_int_eq(dafs_slot_begin(&tab, slot, seq,
						 DAFS_OP_WRITE, NI),
				 DAFS_SV_NEW);
		dafs_slot_end(&tab, slot, 24);
		if (i % 7 == 0)
			ck_assert_int_eq(dafs_slot_begin(&tab, slot, seq,
							 DAFS_OP_WRITE, NI),
					 DAFS_SV_REPLAY);
		dafs_cslot_put(&c, slot);
	}
	dafs_cslots_fini(&c);
}
END_TEST

/* The callback channel runs the same machinery in the other direction:
 * the server allocates from cb_credits, the client keeps the table. */
START_TEST(callback_direction)
{
	static const uint8_t cb_frame[] = {
		0x44, 0x41, 0x46, 0x53, 0x01, DAFS_HF_CB, 0x40, 0x00, /* op 64 */
		0x00, 0x00, 0x00, 0x00, 0x05, 0x00, 0x00, 0x00, /* slot 0 seq 5 */
		0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
	};
	static const uint8_t fore_with_cb_op[] = {
		0x44, 0x41, 0x46, 0x53, 0x01, 0x00, 0x40, 0x00, /* no CB flag */
		0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00,
		0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
	};
	struct dafs_hdr h;

	ck_assert_int_eq(dafs_msg_parse(cb_frame, sizeof(cb_frame), &h, NULL),
			 0);
	ck_assert_uint_eq(h.op, DAFS_OP_CB_NULL);
	ck_assert_uint_eq(h.seq, 5);
	tab.s[0].seq = 4;
	ck_assert_int_eq(dafs_slot_begin(&tab, h.slot, h.seq, h.op,
					 dafs_op_desc(h.op)->flags),
			 DAFS_SV_NEW);
	/* a callback op without the callback flag is a protocol error */
	ck_assert_int_eq(dafs_msg_parse(fore_with_cb_op,
					sizeof(fore_with_cb_op), &h, NULL),
			 -DAFS_EPROTO);
}
END_TEST

START_TEST(lease_expiry)
{
	const uint64_t renewed = 1000000000000ull; /* 1000 s */

	ck_assert(!dafs_lease_expired(renewed, 30000, renewed));
	ck_assert(!dafs_lease_expired(renewed, 30000,
				      renewed + 30000000000ull));
	ck_assert(dafs_lease_expired(renewed, 30000,
				     renewed + 30000000001ull));
	ck_assert(!dafs_lease_expired(renewed, 90000,
				      renewed + 60000000000ull));
	/* renewed just after the reaper read its clock */
	ck_assert(!dafs_lease_expired(renewed, 30000, renewed - 1));
}
END_TEST

static Suite *session_suite(void)
{
	Suite *s = suite_create("session");
	TCase *t;

	t = tcase_create("negotiate");
	tcase_add_test(t, negotiate_hand_built);
	tcase_add_test(t, negotiate_defaults_and_fallbacks);
	suite_add_tcase(s, t);

	t = tcase_create("slots");
	tcase_add_checked_fixture(t, slots_setup, slots_teardown);
	tcase_add_test(t, slot_new_then_replay);
	tcase_add_test(t, slot_idempotent_reexecutes);
	tcase_add_test(t, slot_unwind_after_delay);
	tcase_add_test(t, slot_busy_while_executing);
	tcase_add_test(t, slot_misordered_and_bad);
	tcase_add_test(t, slot_uncached_not_replayed);
	tcase_add_test(t, slot_wraps);
	tcase_add_test(t, client_server_in_step);
	tcase_add_test(t, callback_direction);
	suite_add_tcase(s, t);

	t = tcase_create("credits_leases");
	tcase_add_test(t, cslots_credits);
	tcase_add_test(t, lease_expiry);
	suite_add_tcase(s, t);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(session_suite());
	int failed;

	srunner_run_all(sr, CK_ENV);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
