/*
 * session.c - negotiation, the slot table with its reply cache, the client
 * slot allocator (see session_i.h). Exactly-once execution rests on
 * dafs_slot_begin(): a retransmission (same slot, same seq) of a
 * non-idempotent op is answered from the cached reply, never executed again.
 */
#include <errno.h>
#include <stdlib.h>

#include "session_i.h"

static void *std_alloc(void *ctx, size_t size)
{
	(void)ctx;
	return calloc(1, size);
}

static void std_free(void *ctx, void *p)
{
	(void)ctx;
	free(p);
}

const struct dafs_alloc dafs_alloc_std = {std_alloc, std_free, NULL};

const struct dafs_sess_params dafs_sess_defaults = {
	.max_request = (1u << 20) + 4096,
	.max_response = 128u << 10,
	.inline_max = 4096,
	.credits = 16,
	.cb_credits = 2,
	.write_method = DAFS_WRITE_GATHER,
	.lease_ms = 30000,
	.max_io = 1u << 20,
};

static uint32_t pick(uint32_t asked, uint32_t dflt, uint32_t lo, uint32_t hi)
{
	uint32_t v = asked ? asked : dflt;

	if (v > hi)
		v = hi;
	if (v < lo)
		v = lo;
	return v;
}

void dafs_sess_negotiate(const struct dafs_m_create_session_req *req,
			 const struct dafs_sess_params *lim,
			 struct dafs_sess_params *o)
{
	const struct dafs_sess_params *d = &dafs_sess_defaults;
	uint32_t room;

	o->max_request = pick(req->max_request, d->max_request, DAFS_MSG_MIN,
			      lim->max_request);
	o->max_response = pick(req->max_response, d->max_response,
			       DAFS_MSG_MIN, lim->max_response);
	o->credits = pick(req->credits, d->credits, 1, lim->credits);
	o->cb_credits = pick(req->cb_credits, d->cb_credits, 1,
			     lim->cb_credits);
	o->lease_ms = pick(req->lease_ms, d->lease_ms, 1000, lim->lease_ms);
	o->write_method = req->write_method == DAFS_WRITE_RDMA_READ &&
					  lim->write_method ==
						  DAFS_WRITE_RDMA_READ
				  ? DAFS_WRITE_RDMA_READ
				  : DAFS_WRITE_GATHER;
	/* inline data must fit both a request and a reply */
	room = (o->max_request < o->max_response ? o->max_request
						 : o->max_response) -
	       DAFS_IO_OVERHEAD;
	o->inline_max = pick(req->inline_max, d->inline_max, 0,
			     lim->inline_max < room ? lim->inline_max : room);
	/* a gather-send write carries its data in the request */
	o->max_io = lim->max_io;
	if (o->write_method == DAFS_WRITE_GATHER &&
	    o->max_io > o->max_request - DAFS_IO_OVERHEAD)
		o->max_io = o->max_request - DAFS_IO_OVERHEAD;
}

int dafs_slots_init(struct dafs_slot_table *t, uint32_t n, uint8_t **bufs,
		    const struct dafs_alloc *a)
{
	uint32_t i;

	t->s = a->alloc(a->ctx, n * sizeof(*t->s));
	if (!t->s)
		return -ENOMEM;
	t->n = n;
	t->a = a;
	for (i = 0; i < n; i++)
		t->s[i].reply = bufs[i];
	return 0;
}

void dafs_slots_fini(struct dafs_slot_table *t)
{
	if (t->s)
		t->a->free(t->a->ctx, t->s);
	t->s = NULL;
	t->n = 0;
}

static uint32_t seq_next(uint32_t seq)
{
	return seq == UINT32_MAX ? 1 : seq + 1;
}

enum dafs_slot_verdict dafs_slot_begin(struct dafs_slot_table *t,
				       uint32_t slot, uint32_t seq,
				       uint16_t op, uint8_t opflags)
{
	struct dafs_slot *s;

	if (slot >= t->n)
		return DAFS_SV_BADSLOT;
	s = &t->s[slot];
	if (s->state == DAFS_SLOT_BUSY)
		return DAFS_SV_BUSY;
	if (seq == s->seq && seq != 0) {
		/* a retransmission: must be the same op */
		if (op != s->op)
			return DAFS_SV_MISORDERED;
		if (s->cached && !(opflags & DAFS_OPF_IDEMPOTENT))
			return DAFS_SV_REPLAY;
		if (!(opflags & DAFS_OPF_IDEMPOTENT))
			/* executed but its reply was never cached: the
			 * outcome is unknown, so never run it twice */
			return DAFS_SV_MISORDERED;
		s->state = DAFS_SLOT_BUSY;
		s->cached = 0;
		s->prev_seq = s->seq;
		return DAFS_SV_REEXEC;
	}
	if (seq != seq_next(s->seq))
		return DAFS_SV_MISORDERED;
	s->prev_seq = s->seq;
	s->seq = seq;
	s->op = op;
	s->cached = 0;
	s->state = DAFS_SLOT_BUSY;
	return DAFS_SV_NEW;
}

void dafs_slot_unwind(struct dafs_slot_table *t, uint32_t slot)
{
	struct dafs_slot *s;

	if (slot >= t->n)
		return;
	s = &t->s[slot];
	s->state = DAFS_SLOT_IDLE;
	s->seq = s->prev_seq;
	s->cached = 0;
	s->reply_len = 0;
}

void dafs_slot_end(struct dafs_slot_table *t, uint32_t slot, uint32_t len)
{
	struct dafs_slot *s;

	if (slot >= t->n)
		return;
	s = &t->s[slot];
	s->state = DAFS_SLOT_IDLE;
	s->reply_len = len;
	s->cached = len != 0;
}

int dafs_cslots_init(struct dafs_cslots *c, uint32_t n,
		     const struct dafs_alloc *a)
{
	uint32_t i;

	c->s = a->alloc(a->ctx, n * sizeof(*c->s));
	if (!c->s)
		return -ENOMEM;
	c->a = a;
	c->n = c->nfree = n;
	c->free_head = 0;
	for (i = 0; i < n; i++)
		c->s[i].next = i + 1;
	return 0;
}

void dafs_cslots_fini(struct dafs_cslots *c)
{
	if (c->s)
		c->a->free(c->a->ctx, c->s);
	c->s = NULL;
	c->n = c->nfree = 0;
}

int dafs_cslot_get(struct dafs_cslots *c, uint32_t *slot, uint32_t *seq)
{
	struct dafs_cslot *s;

	if (!c->nfree)
		return -EAGAIN;
	*slot = c->free_head;
	s = &c->s[*slot];
	c->free_head = s->next;
	c->nfree--;
	s->busy = 1;
	s->seq = seq_next(s->seq);
	*seq = s->seq;
	return 0;
}

void dafs_cslot_unuse(struct dafs_cslots *c, uint32_t slot)
{
	if (slot >= c->n || !c->s[slot].busy)
		return;
	/* seq_next's inverse: 1 goes back to UINT32_MAX (0 is never used) */
	c->s[slot].seq = c->s[slot].seq == 1 ? UINT32_MAX : c->s[slot].seq - 1;
	dafs_cslot_put(c, slot);
}

void dafs_cslot_put(struct dafs_cslots *c, uint32_t slot)
{
	struct dafs_cslot *s;

	if (slot >= c->n || !c->s[slot].busy)
		return;
	s = &c->s[slot];
	s->busy = 0;
	s->next = c->free_head;
	c->free_head = slot;
	c->nfree++;
}
