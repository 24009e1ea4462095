/*
 * session_i.h - the DAFS session state machine, sans I/O: negotiation of
 * session parameters, the server's slot table with its reply cache, the
 * client's slot allocator, and lease arithmetic. No sockets, no threads, no
 * clock (times are passed in, in nanoseconds), no malloc of its own (an
 * allocator is passed in). Callers serialise access with their own locks.
 */
#ifndef DAFS_SESSION_I_H
#define DAFS_SESSION_I_H

#include <stddef.h>
#include <stdint.h>

#include "wire_i.h"

struct dafs_alloc {
	void *(*alloc)(void *ctx, size_t size); /* zeroed memory or NULL */
	void (*free)(void *ctx, void *p);
	void *ctx;
};

/* The default allocator (calloc/free). */
extern const struct dafs_alloc dafs_alloc_std;

/* Negotiated parameters of a session. */
struct dafs_sess_params {
	uint32_t max_request, max_response, inline_max;
	uint32_t credits, cb_credits, write_method, lease_ms, max_io;
};

/* Smallest message buffers any session uses: every non-data message fits
 * (the largest, a SYMLINK request with a 4095-byte target, is 4509 bytes). */
#define DAFS_MSG_MIN 8192
/* Room for header and fields before the data of a READ reply or WRITE
 * request (a bound, not an exact size). */
#define DAFS_IO_OVERHEAD 128
/* The largest max_io a client accepts from a server (dafsd offers 1 MiB
 * at most; the protocol allows more, within reason). */
#define DAFS_IO_LIMIT (64u << 20)

/* The defaults a client asks for (dafs_session_opts_t zero fields). */
extern const struct dafs_sess_params dafs_sess_defaults;

/*
 * Server side of CREATE_SESSION: clamp what the client asked for (@req; zero
 * fields take dafs_sess_defaults) to the server's limits @lim and fill @out.
 * Never fails: every result is within [minimum, limit]; an unknown write
 * method falls back to DAFS_WRITE_GATHER.
 */
void dafs_sess_negotiate(const struct dafs_m_create_session_req *req,
			 const struct dafs_sess_params *lim,
			 struct dafs_sess_params *out);

/* ---- server slot table and reply cache ---- */

enum dafs_slot_state { DAFS_SLOT_IDLE = 0, DAFS_SLOT_BUSY = 1 };

struct dafs_slot {
	uint32_t seq;       /* last sequence number accepted */
	uint32_t prev_seq;  /* what dafs_slot_unwind() goes back to */
	uint8_t state;      /* enum dafs_slot_state */
	uint8_t cached;     /* reply[0..reply_len) answers seq */
	uint16_t op;        /* op of seq */
	uint32_t reply_len;
	uint8_t *reply;     /* caller-provided buffer of the session */
};

struct dafs_slot_table {
	uint32_t n;
	struct dafs_slot *s;
	const struct dafs_alloc *a;
};

/* Verdict on an incoming request. */
enum dafs_slot_verdict {
	DAFS_SV_NEW = 0,    /* execute; reply into slot->reply, then end */
	DAFS_SV_REPLAY,     /* send slot->reply[0..reply_len) again */
	DAFS_SV_REEXEC,     /* retransmitted idempotent op: execute again */
	DAFS_SV_BUSY,       /* slot still executing: answer DAFS_EDELAY */
	DAFS_SV_BADSLOT,    /* slot out of range: answer DAFS_EPROTO */
	DAFS_SV_MISORDERED, /* answer DAFS_ESEQ */
};

/* @n slots; @bufs[i] is slot i's reply buffer (the caller owns them). */
int dafs_slots_init(struct dafs_slot_table *t, uint32_t n, uint8_t **bufs,
		    const struct dafs_alloc *a);
void dafs_slots_fini(struct dafs_slot_table *t);
/*
 * Classify request (@slot, @seq, @op with opdesc flags @opflags). Sequence
 * numbers start at 1 on a new slot and wrap from UINT32_MAX to 1. NEW and
 * REEXEC mark the slot busy.
 */
enum dafs_slot_verdict dafs_slot_begin(struct dafs_slot_table *t,
				       uint32_t slot, uint32_t seq,
				       uint16_t op, uint8_t opflags);
/* The request on @slot finished; its reply of @len bytes is in the slot's
 * buffer (len 0: no reply to cache, e.g. the connection died first). */
void dafs_slot_end(struct dafs_slot_table *t, uint32_t slot, uint32_t len);
/* The request on @slot did nothing and asks to be sent again (its reply
 * is DAFS_EDELAY): the slot goes back to where it was before it came, so
 * the retransmission executes as new, and nothing is cached. */
void dafs_slot_unwind(struct dafs_slot_table *t, uint32_t slot);

/* ---- client slot allocator ---- */

struct dafs_cslot {
	uint32_t seq;  /* last sequence number used */
	uint32_t next; /* free-list link */
	uint8_t busy;
};

struct dafs_cslots {
	uint32_t n, nfree, free_head;
	struct dafs_cslot *s;
	const struct dafs_alloc *a;
};

int dafs_cslots_init(struct dafs_cslots *c, uint32_t n,
		     const struct dafs_alloc *a);
void dafs_cslots_fini(struct dafs_cslots *c);
/* Take a free slot and its next sequence number; -EAGAIN if none. */
int dafs_cslot_get(struct dafs_cslots *c, uint32_t *slot, uint32_t *seq);
/* Give @slot back (its reply arrived, or the request was abandoned after a
 * reply-less failure; the seq is kept so the server sees seq + 1 next). */
void dafs_cslot_put(struct dafs_cslots *c, uint32_t slot);
/* Give @slot back with its last sequence number unused: the server
 * answered DAFS_EDELAY and unwound its slot, and the request is given up,
 * so the next request on the slot takes the same number. */
void dafs_cslot_unuse(struct dafs_cslots *c, uint32_t slot);

/* ---- leases ---- */

/* Non-zero when a lease of @lease_ms last renewed at @renewed_ns has
 * expired at @now_ns. */
static inline int dafs_lease_expired(uint64_t renewed_ns, uint32_t lease_ms,
				     uint64_t now_ns)
{
	/* renewed after @now_ns was read (another thread): not expired,
	 * rather than a wrapped, huge difference */
	if (now_ns <= renewed_ns)
		return 0;
	return now_ns - renewed_ns > (uint64_t)lease_ms * 1000000u;
}

#endif /* DAFS_SESSION_I_H */
