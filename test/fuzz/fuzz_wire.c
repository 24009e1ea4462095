/*
 * fuzz_wire.c - fuzz target for the wire decoder (src/proto/wire.c).
 *
 * Any input: dafs_msg_parse() returns without reading past the end (the
 * sanitizers watch). An accepted input must encode back to exactly its own
 * bytes with dafs_msg_build(), and must not fit a buffer one byte smaller:
 * the encoding is canonical, so a decoder that accepts something the encoder
 * would not produce, or loses a field, shows up here. The element lists that
 * travel in views (readdir entries, batch descriptors and results) are
 * walked with dafs_dec_msg() and each element is checked the same way.
 *
 * Built with libFuzzer by run-fuzz.sh, and with a plain main() by
 * standalone.c for the fuzz-corpus test.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/wire_i.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Whole messages the decoder accepted; standalone.c reports it. */
unsigned long dafs_fuzz_accepted;

typedef union {
	uint8_t b[DAFS_BODY_MAX];
	uint64_t align;
} body_t;

/* A broken invariant: crash so that the fuzzer keeps the input. */
static void require(int ok)
{
	if (!ok)
		abort();
}

/* Decode elements of @t from @v until it ends or an element fails; each
 * decoded element must re-encode to the bytes it came from. */
static void walk(const struct dafs_view *v, const struct dafs_msgtype *t)
{
	struct dafs_dec d;
	struct dafs_enc e;
	uint8_t *again;
	size_t start, n;
	body_t s;

	if (!v->len)
		return;
	again = malloc(v->len);
	require(again != NULL);
	dafs_dec_init(&d, v->p, v->len);
	while (d.pos < d.len) {
		start = d.pos;
		if (dafs_dec_msg(&d, t, &s))
			break;
		n = d.pos - start;
		require(n > 0 && n <= v->len);
		dafs_enc_init(&e, again, n);
		require(dafs_enc_msg(&e, t, &s) == 0);
		require(e.pos == n && e.deferred == 0);
		require(memcmp(again, v->p + start, n) == 0);
		if (n > 1) {
			/* one byte short: refused, and nothing written past */
			dafs_enc_init(&e, again, n - 1);
			require(dafs_enc_msg(&e, t, &s) == -EMSGSIZE);
		}
	}
	free(again);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct dafs_hdr h, h2;
	uint32_t deferred = 0;
	uint8_t *again;
	body_t body;
	ssize_t n;

	if (dafs_msg_parse(data, size, &h, &body))
		return 0;
	dafs_fuzz_accepted++;
	require(size >= DAFS_HDR_SIZE && size - DAFS_HDR_SIZE == h.len);

	again = malloc(size);
	require(again != NULL);
	h2 = h;
	n = dafs_msg_build(again, size, &h2, &body, &deferred);
	require(n >= 0 && (size_t)n == size && deferred == 0);
	require(h2.len == h.len);
	require(memcmp(again, data, size) == 0);
	h2 = h;
	require(dafs_msg_build(again, size - 1, &h2, &body, &deferred) ==
		-EMSGSIZE);
	free(again);

	if (h.op == DAFS_OP_READDIR && (h.flags & DAFS_HF_REPLY)) {
		const struct dafs_m_readdir_rep *r = (const void *)&body;

		/* the reply does not say which kind; the request did */
		walk(&r->entries, &dafs_mt_dirent);
		walk(&r->entries, &dafs_mt_dirent_plus);
	} else if (h.op == DAFS_OP_BATCH && (h.flags & DAFS_HF_REPLY)) {
		const struct dafs_m_batch_rep *r = (const void *)&body;

		walk(&r->results, &dafs_mt_batch_result);
	} else if (h.op == DAFS_OP_BATCH) {
		const struct dafs_m_batch_req *r = (const void *)&body;

		walk(&r->descs, &dafs_mt_batch_desc);
	}
	return 0;
}
