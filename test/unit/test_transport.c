/*
 * test_transport.c - the transports (src/transport/tcp*.c, verbs.c) over
 * real connections, inside the test process. By default the TCP transport
 * over loopback; DAFS_TEST_TRANSPORT=rdma runs the cases that apply to
 * both against the verbs transport (plus its own), connecting to
 * DAFS_TEST_HOST (an address of the RDMA device; default 127.0.0.1), and
 * exits 77 (skipped) when there is no RDMA device. scripts/rdma-tests.sh
 * runs it so, in a VM with Soft-RoCE if need be.
 *
 * Each test connects an endpoint "a" (connect) to an endpoint "b"
 * (accept), each in its own domain with its own CQ, and asserts what an
 * owner of the interface would notice: the bytes that land in memory,
 * completion statuses, wr_ids and lengths, and error codes. Remote
 * protocol violations are checked to leave canary bytes around (and in)
 * the target untouched and to flush both sides. A few tests play the peer
 * with a raw socket and hand-built frames, pinning the wire format that
 * docs/transport-tcp.md describes.
 */
#include <arpa/inet.h>
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "transport/tcp_i.h"

#define TMO_MS 5000 /* generous: ASan builds on a busy 2-core machine */
#define CANARY 0xa5
#define ACC_RW (DAFS_ACC_LOCAL_WRITE | DAFS_ACC_REMOTE_WRITE)
#define ACC_ALL (ACC_RW | DAFS_ACC_REMOTE_READ)

static const struct dafs_tp_ops *tp = &dafs_tp_tcp;
static const char *host = "127.0.0.1"; /* where listeners listen */
static bool verbs; /* tp is the verbs transport */

struct side {
	struct dafs_domain *dom;
	struct dafs_cq *cq; /* send and receive completions */
	struct dafs_ep *ep;
	int ctx; /* its address is the ep's ctx */
};

struct pair {
	struct side a, b; /* a connected, b accepted */
	struct dafs_listener *l;
};

/* A registered buffer. */
struct buf {
	uint8_t *p;
	size_t len;
	struct dafs_mr *mr;
};

/* ---- helpers ---- */

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};

	nanosleep(&ts, NULL);
}

static struct dafs_ep_attr attr_of(struct side *s, uint32_t max_recv,
				   uint32_t max_inline)
{
	return (struct dafs_ep_attr){
		.send_cq = s->cq,
		.recv_cq = s->cq,
		.max_send = 64,
		.max_recv = max_recv,
		.max_inline = max_inline,
		.ctx = &s->ctx,
	};
}

static void side_init(struct side *s)
{
	ck_assert_int_eq(tp->domain_new(&s->dom), 0);
	ck_assert_int_eq(tp->cq_new(s->dom, 16, &s->cq), 0);
	s->ep = NULL;
}

struct connector {
	struct dafs_domain *dom;
	const char *host;
	uint16_t port;
	const struct dafs_ep_attr *attr;
	struct dafs_ep *ep;
	int rc;
};

static void *connect_main(void *arg)
{
	struct connector *c = arg;

	c->rc = tp->connect(c->dom, c->host, c->port, c->attr, &c->ep);
	return NULL;
}

/*
 * Connect from @dom to @l at @host and accept the connection. On tcp in
 * this thread: the kernel completes the handshake before accept is
 * called. On verbs connect returns only once the peer has accepted (no
 * backlog of established connections), so it connects from another one.
 */
static void connect_accept(struct dafs_domain *dom, const char *host,
			   const struct dafs_ep_attr *ca, struct dafs_ep **cep,
			   struct dafs_listener *l,
			   const struct dafs_ep_attr *la, struct dafs_ep **lep)
{
	struct connector c = {dom, host, tp->listener_port(l), ca, NULL, 1};
	pthread_t t;

	if (!verbs) {
		ck_assert_int_eq(tp->connect(dom, host, c.port, ca, cep), 0);
		ck_assert_int_eq(tp->accept(l, la, lep), 0);
		return;
	}
	ck_assert_int_eq(pthread_create(&t, NULL, connect_main, &c), 0);
	ck_assert_int_eq(tp->accept(l, la, lep), 0);
	pthread_join(t, NULL);
	ck_assert_int_eq(c.rc, 0);
	*cep = c.ep;
}

static void pair_open_at(struct pair *p, const char *host, uint32_t max_recv,
			 uint32_t max_inline)
{
	struct dafs_ep_attr aa, ba;
	uint16_t port;

	side_init(&p->a);
	side_init(&p->b);
	ck_assert_int_eq(tp->listen(p->b.dom, host, 0, &p->l), 0);
	port = tp->listener_port(p->l);
	ck_assert_uint_ne(port, 0);
	aa = attr_of(&p->a, max_recv, max_inline);
	ba = attr_of(&p->b, max_recv, max_inline);
	connect_accept(p->a.dom, host, &aa, &p->a.ep, p->l, &ba, &p->b.ep);
	ck_assert_ptr_eq(p->a.ep->ctx, &p->a.ctx);
	ck_assert_ptr_eq(p->b.ep->ctx, &p->b.ctx);
}

static void pair_open(struct pair *p)
{
	pair_open_at(p, host, 64, 64);
}

static void side_close(struct side *s)
{
	tp->ep_free(s->ep);
	tp->cq_free(s->cq);
	tp->domain_free(s->dom);
}

static void pair_close(struct pair *p)
{
	side_close(&p->a);
	side_close(&p->b);
	tp->listener_close(p->l);
}

static void buf_init(struct buf *b, struct side *s, size_t len, unsigned access,
		     uint8_t fill)
{
	b->p = malloc(len);
	ck_assert_ptr_nonnull(b->p);
	b->len = len;
	memset(b->p, fill, len);
	ck_assert_int_eq(tp->reg_mr(s->dom, b->p, len, access, &b->mr), 0);
}

static void buf_fini(struct buf *b)
{
	ck_assert_int_eq(tp->dereg_mr(b->mr), 0);
	free(b->p);
}

static struct dafs_sge sge_of(struct buf *b, size_t off, uint32_t len)
{
	return (struct dafs_sge){b->p + off, len, b->mr->lkey};
}

static uint64_t raddr_of(struct buf *b, size_t off)
{
	return (uint64_t)(uintptr_t)(b->p + off);
}

/* The next completion on @cq, failing the test after TMO_MS. */
static void wait_wc(struct dafs_cq *cq, struct dafs_wc *wc)
{
	uint64_t end = now_ms() + TMO_MS, t;
	int n;

	for (;;) {
		n = tp->poll_cq(cq, wc, 1);
		ck_assert_int_ge(n, 0);
		if (n == 1)
			return;
		t = now_ms();
		ck_assert_msg(t < end, "no completion within %d ms", TMO_MS);
		tp->wait_cq(cq, (int)(end - t));
	}
}

/* No completion on @cq for @ms milliseconds. */
static void expect_none(struct dafs_cq *cq, unsigned ms)
{
	struct dafs_wc wc;

	sleep_ms(ms);
	ck_assert_int_eq(tp->poll_cq(cq, &wc, 1), 0);
}

static void expect_wc(struct dafs_cq *cq, struct dafs_ep *ep, uint64_t wr_id,
		      uint8_t op, int status)
{
	struct dafs_wc wc;

	wait_wc(cq, &wc);
	ck_assert_uint_eq(wc.wr_id, wr_id);
	ck_assert_int_eq(wc.status, status);
	ck_assert_uint_eq(wc.op, op);
	ck_assert_ptr_eq(wc.ep, ep);
}

static void post_recv(struct side *s, uint64_t wr_id, struct buf *b, size_t off,
		      uint32_t len)
{
	struct dafs_sge sge = sge_of(b, off, len);

	ck_assert_int_eq(tp->post_recv(s->ep, wr_id, &sge), 0);
}

static void send_buf(struct side *s, uint64_t wr_id, struct buf *b, size_t off,
		     uint32_t len, unsigned flags)
{
	struct dafs_sge sge = sge_of(b, off, len);

	ck_assert_int_eq(tp->post_send(s->ep, wr_id, &sge, 1, flags), 0);
}

/* One check at the end, not one per byte: every passing check costs a
 * message to check's runner, and some ranges here are megabytes. */
static void assert_filled(const uint8_t *p, size_t len, uint8_t v)
{
	size_t i;

	for (i = 0; i < len && p[i] == v; i++)
		;
	ck_assert_msg(i == len, "byte %zu is 0x%02x, not 0x%02x", i,
		      i < len ? p[i] : v, v);
}

/* A completion that failed with @status on tcp; on verbs the device picks
 * the code (rxe and a hardware NIC differ), so any failure will do. */
static void expect_wc_failed(struct dafs_cq *cq, struct dafs_ep *ep,
			     uint64_t wr_id, uint8_t op, int status)
{
	struct dafs_wc wc;

	wait_wc(cq, &wc);
	ck_assert_uint_eq(wc.wr_id, wr_id);
	ck_assert_uint_eq(wc.op, op);
	ck_assert_ptr_eq(wc.ep, ep);
	if (verbs)
		ck_assert_int_lt(wc.status, 0);
	else
		ck_assert_int_eq(wc.status, status);
}

/* Every post on @s refuses with -ENOTCONN. */
static void assert_posts_refused(struct side *s, struct buf *b)
{
	struct dafs_sge sge = sge_of(b, 0, 8);

	ck_assert_int_eq(tp->post_recv(s->ep, 1, &sge), -ENOTCONN);
	ck_assert_int_eq(tp->post_send(s->ep, 1, &sge, 1, DAFS_TP_SIGNALED),
			 -ENOTCONN);
	ck_assert_int_eq(tp->rdma_write(s->ep, 1, &sge, 1, raddr_of(b, 0),
					b->mr->rkey, DAFS_TP_SIGNALED),
			 -ENOTCONN);
	ck_assert_int_eq(tp->rdma_read(s->ep, 1, &sge, raddr_of(b, 0),
				       b->mr->rkey, DAFS_TP_SIGNALED),
			 -ENOTCONN);
}

/* Reap from @cq until the RECV completion @wr_id shows up, which must be
 * a flush; other completions before it (a signaled write that went out
 * before the break) are skipped. */
static void expect_recv_flush(struct side *s, uint64_t wr_id, int status)
{
	struct dafs_wc wc;

	do
		wait_wc(s->cq, &wc);
	while (wc.op != DAFS_WC_RECV);
	ck_assert_uint_eq(wc.wr_id, wr_id);
	ck_assert_int_eq(wc.status, status);
	ck_assert_ptr_eq(wc.ep, s->ep);
}

static uint32_t csum(const uint8_t *p, size_t len)
{
	uint32_t h = 2166136261u; /* FNV-1a */

	while (len--) {
		h ^= *p++;
		h *= 16777619u;
	}
	return h;
}

static void pattern(uint8_t *p, size_t len, uint32_t seed)
{
	size_t i;

	for (i = 0; i < len; i++) {
		seed = seed * 1103515245u + 12345u;
		p[i] = (uint8_t)(seed >> 16);
	}
}

/* ---- messages ---- */

START_TEST(test_send_recv_order)
{
	struct buf sb, rb;
	struct dafs_wc wc;
	struct pair p;
	int i;

	pair_open(&p);
	buf_init(&sb, &p.a, 4096, DAFS_ACC_LOCAL_WRITE, 0);
	buf_init(&rb, &p.b, 4 * 256, DAFS_ACC_LOCAL_WRITE, CANARY);
	for (i = 0; i < 4; i++)
		post_recv(&p.b, 100 + i, &rb, 256 * i, 256);
	/* Three messages of different lengths and contents, then an empty
	 * one. */
	for (i = 0; i < 3; i++) {
		memset(sb.p + 1024 * i, 'x' + i, 10 + i);
		send_buf(&p.a, 1 + i, &sb, 1024 * i, 10 + i, DAFS_TP_SIGNALED);
	}
	ck_assert_int_eq(tp->post_send(p.a.ep, 4, NULL, 0, DAFS_TP_SIGNALED),
			 0);
	for (i = 0; i < 4; i++) {
		wait_wc(p.b.cq, &wc);
		ck_assert_uint_eq(wc.op, DAFS_WC_RECV);
		ck_assert_int_eq(wc.status, 0);
		ck_assert_uint_eq(wc.wr_id, 100 + i);
		ck_assert_ptr_eq(wc.ep, p.b.ep);
		ck_assert_ptr_eq(wc.ep->ctx, &p.b.ctx);
		if (i == 3) {
			ck_assert_uint_eq(wc.byte_len, 0);
			break;
		}
		ck_assert_uint_eq(wc.byte_len, 10 + i);
		assert_filled(rb.p + 256 * i, 10 + i, 'x' + i);
		/* nothing written past the message */
		assert_filled(rb.p + 256 * i + 10 + i, 256 - 10 - i, CANARY);
	}
	for (i = 0; i < 4; i++)
		expect_wc(p.a.cq, p.a.ep, 1 + i, DAFS_WC_SEND, 0);

	/* And back the other way. */
	post_recv(&p.a, 7, &sb, 2048, 64);
	memcpy(rb.p, "pong", 4);
	send_buf(&p.b, 8, &rb, 0, 4, 0);
	wait_wc(p.a.cq, &wc);
	ck_assert_uint_eq(wc.wr_id, 7);
	ck_assert_uint_eq(wc.byte_len, 4);
	ck_assert_mem_eq(sb.p + 2048, "pong", 4);

	buf_fini(&sb);
	buf_fini(&rb);
	pair_close(&p);
}
END_TEST

START_TEST(test_gather_send)
{
	struct buf s1, s2, rb;
	struct dafs_sge sgl[4];
	struct dafs_wc wc;
	struct pair p;

	pair_open(&p);
	buf_init(&s1, &p.a, 100, 0, 0);
	buf_init(&s2, &p.a, 5000, 0, 0);
	buf_init(&rb, &p.b, 8192, DAFS_ACC_LOCAL_WRITE, CANARY);
	memcpy(s1.p + 10, "head:", 5);
	pattern(s2.p, 5000, 7);
	memcpy(s1.p + 50, ":tail", 5);
	sgl[0] = sge_of(&s1, 10, 5);
	sgl[1] = sge_of(&s2, 0, 5000);
	sgl[2] = sge_of(&s1, 0, 0); /* empty segments carry nothing */
	sgl[3] = sge_of(&s1, 50, 5);
	post_recv(&p.b, 1, &rb, 0, 8192);
	ck_assert_int_eq(tp->post_send(p.a.ep, 9, sgl, 4, DAFS_TP_SIGNALED), 0);
	wait_wc(p.b.cq, &wc);
	ck_assert_int_eq(wc.status, 0);
	ck_assert_uint_eq(wc.byte_len, 5010);
	ck_assert_mem_eq(rb.p, "head:", 5);
	ck_assert_mem_eq(rb.p + 5, s2.p, 5000);
	ck_assert_mem_eq(rb.p + 5005, ":tail", 5);
	assert_filled(rb.p + 5010, 8192 - 5010, CANARY);
	expect_wc(p.a.cq, p.a.ep, 9, DAFS_WC_SEND, 0);
	buf_fini(&s1);
	buf_fini(&s2);
	buf_fini(&rb);
	pair_close(&p);
}
END_TEST

START_TEST(test_selective_signaling)
{
	struct buf sb, rb;
	struct dafs_wc wc;
	struct pair p;
	int i;

	pair_open(&p);
	buf_init(&sb, &p.a, 64, 0, 's');
	buf_init(&rb, &p.b, 6 * 64, DAFS_ACC_LOCAL_WRITE, 0);
	for (i = 0; i < 6; i++)
		post_recv(&p.b, i, &rb, 64 * i, 64);
	for (i = 0; i < 5; i++)
		send_buf(&p.a, i, &sb, 0, 64, 0);
	send_buf(&p.a, 5, &sb, 0, 64, DAFS_TP_SIGNALED);
	for (i = 0; i < 6; i++) {
		wait_wc(p.b.cq, &wc);
		ck_assert_uint_eq(wc.wr_id, i);
		ck_assert_int_eq(wc.status, 0);
	}
	/* exactly one completion on the sending side: the signaled one */
	expect_wc(p.a.cq, p.a.ep, 5, DAFS_WC_SEND, 0);
	expect_none(p.a.cq, 50);
	buf_fini(&sb);
	buf_fini(&rb);
	pair_close(&p);
}
END_TEST

START_TEST(test_inline_send)
{
	char msg[32] = "inline, not registered";
	struct dafs_sge sge = {msg, sizeof(msg), 0xdeadbeef};
	struct dafs_wc wc;
	struct pair p;
	struct buf rb;

	pair_open_at(&p, host, 8, 32);
	buf_init(&rb, &p.b, 64, DAFS_ACC_LOCAL_WRITE, 0);
	post_recv(&p.b, 1, &rb, 0, 64);
	ck_assert_int_eq(tp->post_send(p.a.ep, 1, &sge, 1,
				       DAFS_TP_INLINE | DAFS_TP_SIGNALED),
			 0);
	/* The payload is copied (here: sent) before post_send returns. */
	memset(msg, 0, sizeof(msg));
	wait_wc(p.b.cq, &wc);
	ck_assert_uint_eq(wc.byte_len, 32);
	ck_assert_str_eq((char *)rb.p, "inline, not registered");
	expect_wc(p.a.cq, p.a.ep, 1, DAFS_WC_SEND, 0);
	/* Larger than max_inline: refused, and without INLINE the bogus
	 * lkey is refused. */
	sge.len = 33;
	ck_assert_int_eq(tp->post_send(p.a.ep, 2, &sge, 1, DAFS_TP_INLINE),
			 -EINVAL);
	sge.len = 8;
	if (!verbs) /* verbs: the NIC refuses it when it executes it */
		ck_assert_int_eq(tp->post_send(p.a.ep, 2, &sge, 1, 0),
				 -EINVAL);
	expect_none(p.b.cq, 20);
	buf_fini(&rb);
	pair_close(&p);
}
END_TEST

/* ---- one-sided operations ---- */

START_TEST(test_rdma_write_then_send)
{
	struct buf src, target, rb;
	struct dafs_sge sgl[2];
	struct dafs_wc wc;
	struct pair p;

	pair_open(&p);
	buf_init(&src, &p.a, 4096, 0, 0);
	buf_init(&target, &p.b, 4096, ACC_RW, CANARY);
	buf_init(&rb, &p.b, 64, DAFS_ACC_LOCAL_WRITE, 0);
	pattern(src.p, 4096, 3);
	post_recv(&p.b, 1, &rb, 0, 64);

	/* 100 bytes gathered from two segments, at offset 1000. */
	sgl[0] = sge_of(&src, 0, 60);
	sgl[1] = sge_of(&src, 2000, 40);
	ck_assert_int_eq(tp->rdma_write(p.a.ep, 5, sgl, 2,
					raddr_of(&target, 1000),
					target.mr->rkey, DAFS_TP_SIGNALED),
			 0);
	memcpy(src.p + 3000, "done", 4);
	send_buf(&p.a, 6, &src, 3000, 4, DAFS_TP_SIGNALED);

	/* When the SEND completes at b, the write is already in place. */
	wait_wc(p.b.cq, &wc);
	ck_assert_int_eq(wc.status, 0);
	ck_assert_uint_eq(wc.wr_id, 1);
	ck_assert_mem_eq(rb.p, "done", 4);
	assert_filled(target.p, 1000, CANARY);
	ck_assert_mem_eq(target.p + 1000, src.p, 60);
	ck_assert_mem_eq(target.p + 1060, src.p + 2000, 40);
	assert_filled(target.p + 1100, 4096 - 1100, CANARY);
	/* a one-sided write completes nothing at the target */
	expect_none(p.b.cq, 20);

	expect_wc(p.a.cq, p.a.ep, 5, DAFS_WC_RDMA_WRITE, 0);
	expect_wc(p.a.cq, p.a.ep, 6, DAFS_WC_SEND, 0);
	buf_fini(&src);
	buf_fini(&target);
	buf_fini(&rb);
	pair_close(&p);
}
END_TEST

START_TEST(test_rdma_read)
{
	struct buf dst, source;
	struct dafs_sge sge;
	struct dafs_wc wc;
	struct pair p;

	pair_open(&p);
	buf_init(&dst, &p.a, 4096, DAFS_ACC_LOCAL_WRITE, CANARY);
	buf_init(&source, &p.b, 8192, DAFS_ACC_REMOTE_READ, 0);
	pattern(source.p, 8192, 11);

	sge = sge_of(&dst, 100, 3000);
	ck_assert_int_eq(tp->rdma_read(p.a.ep, 77, &sge,
				       raddr_of(&source, 5000), source.mr->rkey,
				       DAFS_TP_SIGNALED),
			 0);
	wait_wc(p.a.cq, &wc);
	ck_assert_uint_eq(wc.wr_id, 77);
	ck_assert_uint_eq(wc.op, DAFS_WC_RDMA_READ);
	ck_assert_int_eq(wc.status, 0);
	ck_assert_ptr_eq(wc.ep, p.a.ep);
	assert_filled(dst.p, 100, CANARY);
	ck_assert_mem_eq(dst.p + 100, source.p + 5000, 3000);
	assert_filled(dst.p + 3100, 4096 - 3100, CANARY);
	/* the responder's owner sees nothing */
	expect_none(p.b.cq, 20);

	/* The last byte of the region, and a zero-length read. */
	sge = sge_of(&dst, 0, 1);
	ck_assert_int_eq(tp->rdma_read(p.a.ep, 78, &sge,
				       raddr_of(&source, 8191), source.mr->rkey,
				       DAFS_TP_SIGNALED),
			 0);
	expect_wc(p.a.cq, p.a.ep, 78, DAFS_WC_RDMA_READ, 0);
	ck_assert_uint_eq(dst.p[0], source.p[8191]);
	sge = sge_of(&dst, 0, 0);
	ck_assert_int_eq(tp->rdma_read(p.a.ep, 79, &sge, raddr_of(&source, 0),
				       source.mr->rkey, DAFS_TP_SIGNALED),
			 0);
	expect_wc(p.a.cq, p.a.ep, 79, DAFS_WC_RDMA_READ, 0);
	buf_fini(&dst);
	buf_fini(&source);
	pair_close(&p);
}
END_TEST

/* Both peers read 8 MiB from each other at once: more than the socket
 * buffers hold, so each side's responses must flow while it is being
 * answered itself. */
struct xread {
	struct side *s;
	struct buf *dst;
	struct buf *src; /* the peer's */
	int status;
};

static void *xread_main(void *arg)
{
	struct xread *x = arg;
	struct dafs_sge sge = sge_of(x->dst, 0, (uint32_t)x->dst->len);
	struct dafs_wc wc;
	uint64_t end = now_ms() + 4 * TMO_MS;

	x->status = tp->rdma_read(x->s->ep, 1, &sge, raddr_of(x->src, 0),
				  x->src->mr->rkey, DAFS_TP_SIGNALED);
	if (x->status)
		return NULL;
	x->status = -ETIMEDOUT;
	while (now_ms() < end) {
		if (tp->poll_cq(x->s->cq, &wc, 1) == 1) {
			x->status = wc.status;
			break;
		}
		tp->wait_cq(x->s->cq, 100);
	}
	return NULL;
}

START_TEST(test_rdma_large_cross)
{
	const size_t len = 8u << 20;
	struct buf sa, sb, da, db;
	struct xread xa, xb;
	pthread_t ta, tb;
	struct pair p;

	pair_open(&p);
	buf_init(&sa, &p.a, len, DAFS_ACC_REMOTE_READ, 0);
	buf_init(&sb, &p.b, len, DAFS_ACC_REMOTE_READ, 0);
	buf_init(&da, &p.a, len, DAFS_ACC_LOCAL_WRITE, 0);
	buf_init(&db, &p.b, len, DAFS_ACC_LOCAL_WRITE, 0);
	pattern(sa.p, len, 1);
	pattern(sb.p, len, 2);
	xa = (struct xread){&p.a, &da, &sb, 1};
	xb = (struct xread){&p.b, &db, &sa, 1};
	ck_assert_int_eq(pthread_create(&ta, NULL, xread_main, &xa), 0);
	ck_assert_int_eq(pthread_create(&tb, NULL, xread_main, &xb), 0);
	pthread_join(ta, NULL);
	pthread_join(tb, NULL);
	ck_assert_int_eq(xa.status, 0);
	ck_assert_int_eq(xb.status, 0);
	ck_assert(!memcmp(da.p, sb.p, len));
	ck_assert(!memcmp(db.p, sa.p, len));
	buf_fini(&sa);
	buf_fini(&sb);
	buf_fini(&da);
	buf_fini(&db);
	pair_close(&p);
}
END_TEST

/* A signaled SEND posted after an unsignaled READ does not complete
 * before the READ's data is in place (a verbs send queue completes in
 * order, so seeing the SEND's completion means the READ is done). */
START_TEST(test_completion_order_behind_read)
{
	struct buf ab, source, rb;
	struct dafs_sge sge;
	struct dafs_wc wc;
	struct pair p;

	pair_open(&p);
	buf_init(&ab, &p.a, 4096, DAFS_ACC_LOCAL_WRITE, 0);
	buf_init(&source, &p.b, 1024, DAFS_ACC_REMOTE_READ, 0);
	buf_init(&rb, &p.b, 128, DAFS_ACC_LOCAL_WRITE, 0);
	pattern(source.p, 1024, 5);
	memset(ab.p + 2048, CANARY, 1024);

	/* b has no receive posted: its transport holds the first SEND, and
	 * the READ request queued behind it waits too. */
	send_buf(&p.a, 1, &ab, 0, 16, 0);
	sge = sge_of(&ab, 2048, 1024);
	ck_assert_int_eq(tp->rdma_read(p.a.ep, 2, &sge, raddr_of(&source, 0),
				       source.mr->rkey, 0),
			 0);
	send_buf(&p.a, 3, &ab, 0, 16, DAFS_TP_SIGNALED);
	expect_none(p.a.cq, 100);
	assert_filled(ab.p + 2048, 1024, CANARY);

	post_recv(&p.b, 10, &rb, 0, 64);
	post_recv(&p.b, 11, &rb, 64, 64);
	wait_wc(p.a.cq, &wc);
	ck_assert_uint_eq(wc.wr_id, 3);
	ck_assert_uint_eq(wc.op, DAFS_WC_SEND);
	ck_assert_int_eq(wc.status, 0);
	ck_assert_mem_eq(ab.p + 2048, source.p, 1024);
	expect_wc(p.b.cq, p.b.ep, 10, DAFS_WC_RECV, 0);
	expect_wc(p.b.cq, p.b.ep, 11, DAFS_WC_RECV, 0);
	expect_none(p.a.cq, 20); /* the READ was unsignaled */
	buf_fini(&ab);
	buf_fini(&source);
	buf_fini(&rb);
	pair_close(&p);
}
END_TEST

/* ---- broken connections ---- */

/* A bad one-sided operation by a: b's transport refuses it, touches no
 * memory, and both sides flush. */
enum bad_case {
	BAD_WRITE_STALE_GEN,
	BAD_WRITE_UNKNOWN_KEY,
	BAD_WRITE_NO_ACCESS,
	BAD_WRITE_PAST_END,
	BAD_WRITE_BEFORE_START,
	BAD_WRITE_WRAPS,
	BAD_READ_BAD_KEY,
	BAD_READ_NO_ACCESS,
	BAD_READ_PAST_END,
	BAD_NCASES
};

START_TEST(test_bad_remote_op)
{
	const enum bad_case c = (enum bad_case)_i;
	bool is_read = c >= BAD_READ_BAD_KEY;
	struct buf local, target, ra, rb;
	unsigned access = ACC_ALL;
	uint64_t raddr;
	uint32_t rkey, len = 64;
	struct dafs_sge sge;
	struct dafs_wc wc;
	struct pair p;

	if (c == BAD_WRITE_NO_ACCESS)
		access = DAFS_ACC_LOCAL_WRITE | DAFS_ACC_REMOTE_READ;
	if (c == BAD_READ_NO_ACCESS)
		access = ACC_RW;
	pair_open(&p);
	buf_init(&local, &p.a, 4096, DAFS_ACC_LOCAL_WRITE, CANARY);
	buf_init(&target, &p.b, 4096, access, CANARY);
	buf_init(&ra, &p.a, 64, DAFS_ACC_LOCAL_WRITE, 0);
	buf_init(&rb, &p.b, 128, DAFS_ACC_LOCAL_WRITE, CANARY);
	if (!is_read)
		memset(local.p, 'W', 4096);
	post_recv(&p.a, 50, &ra, 0, 64);
	post_recv(&p.b, 60, &rb, 0, 64);
	post_recv(&p.b, 61, &rb, 64, 64);

	rkey = target.mr->rkey;
	raddr = raddr_of(&target, 1024);
	switch (c) {
	case BAD_WRITE_STALE_GEN:
	case BAD_READ_BAD_KEY:
		rkey ^= 1u << 16; /* same slot, another generation */
		break;
	case BAD_WRITE_UNKNOWN_KEY:
		rkey ^= 0x1234; /* a slot nobody registered */
		break;
	case BAD_WRITE_PAST_END:
	case BAD_READ_PAST_END:
		raddr = raddr_of(&target, 4096 - len + 1);
		break;
	case BAD_WRITE_BEFORE_START:
		raddr = raddr_of(&target, 0) - 1;
		break;
	case BAD_WRITE_WRAPS:
		raddr = UINT64_MAX - 7;
		break;
	default:
		break;
	}
	sge = sge_of(&local, 0, len);
	if (is_read) /* unsignaled: errors complete anyway */
		ck_assert_int_eq(tp->rdma_read(p.a.ep, 7, &sge, raddr, rkey, 0),
				 0);
	else
		ck_assert_int_eq(
			tp->rdma_write(p.a.ep, 7, &sge, 1, raddr, rkey, 0), 0);

	/* b: both receives flush, in order. */
	expect_wc(p.b.cq, p.b.ep, 60, DAFS_WC_RECV, -ECONNRESET);
	expect_wc(p.b.cq, p.b.ep, 61, DAFS_WC_RECV, -ECONNRESET);
	/* a: its receive flushes, and so does the READ. */
	if (is_read && verbs) {
		/* verbs: the READ fails with the NAK's error (before the
		 * break), the receive flushes; either order */
		unsigned seen = 0;

		for (int k = 0; k < 2; k++) {
			wait_wc(p.a.cq, &wc);
			ck_assert_ptr_eq(wc.ep, p.a.ep);
			if (wc.op == DAFS_WC_RDMA_READ) {
				ck_assert_uint_eq(wc.wr_id, 7);
				ck_assert_int_lt(wc.status, 0);
				seen |= 1;
			} else {
				ck_assert_uint_eq(wc.wr_id, 50);
				ck_assert_int_eq(wc.status, -ECONNRESET);
				seen |= 2;
			}
		}
		ck_assert_uint_eq(seen, 3);
	} else if (is_read) {
		wait_wc(p.a.cq, &wc);
		ck_assert_uint_eq(wc.wr_id, 50);
		ck_assert_int_eq(wc.status, -ECONNRESET);
		expect_wc(p.a.cq, p.a.ep, 7, DAFS_WC_RDMA_READ, -ECONNRESET);
	} else {
		expect_recv_flush(&p.a, 50, -ECONNRESET);
	}
	expect_none(p.a.cq, 20);
	expect_none(p.b.cq, 0);

	assert_filled(target.p, 4096, CANARY);
	assert_filled(rb.p, 128, CANARY);
	if (is_read)
		assert_filled(local.p, 4096, CANARY);
	assert_posts_refused(&p.a, &ra);
	assert_posts_refused(&p.b, &rb);
	buf_fini(&local);
	buf_fini(&target);
	buf_fini(&ra);
	buf_fini(&rb);
	pair_close(&p);
}
END_TEST

START_TEST(test_oversized_send)
{
	struct buf sb, rb, ra;
	struct pair p;

	pair_open(&p);
	buf_init(&sb, &p.a, 64, 0, 'S');
	buf_init(&ra, &p.a, 64, DAFS_ACC_LOCAL_WRITE, 0);
	buf_init(&rb, &p.b, 64, DAFS_ACC_LOCAL_WRITE, CANARY);
	post_recv(&p.a, 9, &ra, 0, 64);
	post_recv(&p.b, 1, &rb, 0, 16);
	post_recv(&p.b, 2, &rb, 16, 48);
	send_buf(&p.a, 3, &sb, 0, 17, 0);
	/* the first receive has the local length error, the next flushes;
	 * (on verbs the SEND fails too, so skip to a's receive) */
	expect_wc_failed(p.b.cq, p.b.ep, 1, DAFS_WC_RECV, -EMSGSIZE);
	expect_wc(p.b.cq, p.b.ep, 2, DAFS_WC_RECV, -ECONNRESET);
	expect_recv_flush(&p.a, 9, -ECONNRESET);
	assert_filled(rb.p, 64, CANARY);
	assert_posts_refused(&p.a, &ra);
	assert_posts_refused(&p.b, &rb);
	buf_fini(&sb);
	buf_fini(&ra);
	buf_fini(&rb);
	pair_close(&p);
}
END_TEST

START_TEST(test_flush_on_peer_close)
{
	struct buf rb, sb;
	struct dafs_sge sge;
	struct pair p;
	int i;

	pair_open(&p);
	buf_init(&rb, &p.b, 3 * 64, DAFS_ACC_LOCAL_WRITE, CANARY);
	buf_init(&sb, &p.b, 64, DAFS_ACC_REMOTE_READ | DAFS_ACC_LOCAL_WRITE, 0);
	for (i = 0; i < 3; i++)
		post_recv(&p.b, 20 + i, &rb, 64 * i, 64);
	tp->ep_free(p.a.ep);
	p.a.ep = NULL;
	for (i = 0; i < 3; i++)
		expect_wc(p.b.cq, p.b.ep, 20 + i, DAFS_WC_RECV, -ECONNRESET);
	expect_none(p.b.cq, 20);
	assert_filled(rb.p, 3 * 64, CANARY);
	assert_posts_refused(&p.b, &sb);
	sge = sge_of(&rb, 0, 8);
	ck_assert_int_eq(tp->post_recv(p.b.ep, 1, &sge), -ENOTCONN);
	buf_fini(&rb);
	buf_fini(&sb);
	pair_close(&p);
}
END_TEST

/* An outstanding READ whose answer never comes flushes too. */
START_TEST(test_flush_outstanding_read)
{
	struct buf dst, source, sb;
	struct dafs_sge sge;
	struct pair p;

	pair_open(&p);
	buf_init(&dst, &p.a, 64, DAFS_ACC_LOCAL_WRITE, CANARY);
	buf_init(&sb, &p.a, 64, 0, 0);
	buf_init(&source, &p.b, 64, DAFS_ACC_REMOTE_READ, 0);
	/* b holds a SEND (no receive posted), so the READ behind it stays
	 * unanswered until b breaks. */
	send_buf(&p.a, 1, &sb, 0, 8, 0);
	sge = sge_of(&dst, 0, 64);
	ck_assert_int_eq(tp->rdma_read(p.a.ep, 2, &sge, raddr_of(&source, 0),
				       source.mr->rkey, 0),
			 0);
	sleep_ms(20);
	tp->disconnect(p.b.ep);
	expect_wc(p.a.cq, p.a.ep, 2, DAFS_WC_RDMA_READ, -ECONNRESET);
	assert_filled(dst.p, 64, CANARY);
	buf_fini(&dst);
	buf_fini(&sb);
	buf_fini(&source);
	pair_close(&p);
}
END_TEST

START_TEST(test_disconnect)
{
	struct buf ra, rb;
	struct dafs_wc wc;
	struct pair p;

	pair_open(&p);
	buf_init(&ra, &p.a, 64, DAFS_ACC_LOCAL_WRITE, 0);
	buf_init(&rb, &p.b, 64, DAFS_ACC_LOCAL_WRITE, 0);
	post_recv(&p.a, 1, &ra, 0, 32);
	post_recv(&p.a, 2, &ra, 32, 32);
	post_recv(&p.b, 3, &rb, 0, 64);
	tp->disconnect(p.a.ep);
	/* disconnect returns with the flush already queued */
	ck_assert_int_eq(tp->poll_cq(p.a.cq, &wc, 1), 1);
	ck_assert_uint_eq(wc.wr_id, 1);
	ck_assert_int_eq(wc.status, -ECONNRESET);
	ck_assert_int_eq(tp->poll_cq(p.a.cq, &wc, 1), 1);
	ck_assert_uint_eq(wc.wr_id, 2);
	ck_assert_int_eq(wc.status, -ECONNRESET);
	assert_posts_refused(&p.a, &ra);
	expect_wc(p.b.cq, p.b.ep, 3, DAFS_WC_RECV, -ECONNRESET);
	assert_posts_refused(&p.b, &rb);
	/* a second disconnect is harmless */
	tp->disconnect(p.a.ep);
	expect_none(p.a.cq, 0);
	buf_fini(&ra);
	buf_fini(&rb);
	pair_close(&p);
}
END_TEST

/* A receive buffer deregistered while posted: the message that would
 * land in it breaks the connection instead (a local protection error). */
START_TEST(test_recv_buffer_deregistered)
{
	struct buf sb, rb, ra;
	uint8_t *mem;
	struct pair p;

	pair_open(&p);
	buf_init(&sb, &p.a, 64, 0, 'x');
	buf_init(&ra, &p.a, 64, DAFS_ACC_LOCAL_WRITE, 0);
	buf_init(&rb, &p.b, 64, DAFS_ACC_LOCAL_WRITE, CANARY);
	post_recv(&p.a, 5, &ra, 0, 64);
	post_recv(&p.b, 1, &rb, 0, 64);
	mem = rb.p;
	ck_assert_int_eq(tp->dereg_mr(rb.mr), 0);
	send_buf(&p.a, 2, &sb, 0, 8, 0);
	expect_wc_failed(p.b.cq, p.b.ep, 1, DAFS_WC_RECV, -EFAULT);
	expect_recv_flush(&p.a, 5, -ECONNRESET);
	assert_filled(mem, 64, CANARY);
	free(mem);
	buf_fini(&sb);
	buf_fini(&ra);
	pair_close(&p);
}
END_TEST

/* ---- keys and local checks ---- */

START_TEST(test_stale_rkey)
{
	struct buf src, rb, ra;
	struct dafs_mr *mr1, *mr2;
	uint32_t old_rkey, old_lkey;
	struct dafs_sge sge;
	struct dafs_wc wc;
	uint8_t *target;
	struct pair p;

	pair_open(&p);
	buf_init(&src, &p.a, 256, 0, 'N');
	buf_init(&ra, &p.a, 64, DAFS_ACC_LOCAL_WRITE, 0);
	buf_init(&rb, &p.b, 64, DAFS_ACC_LOCAL_WRITE, 0);
	target = malloc(256);
	ck_assert_ptr_nonnull(target);
	memset(target, CANARY, 256);

	/* Register, forget, register the same memory again: the old key is
	 * dead even though the memory is registered. */
	ck_assert_int_eq(tp->reg_mr(p.b.dom, target, 256, ACC_RW, &mr1), 0);
	old_rkey = mr1->rkey;
	old_lkey = mr1->lkey;
	ck_assert_int_eq(tp->dereg_mr(mr1), 0);
	ck_assert_int_eq(tp->reg_mr(p.b.dom, target, 256, ACC_RW, &mr2), 0);
	ck_assert_uint_ne(mr2->rkey, old_rkey);
	ck_assert_uint_ne(mr2->lkey, old_lkey);

	/* The new key works... */
	post_recv(&p.b, 1, &rb, 0, 64);
	sge = sge_of(&src, 0, 16);
	ck_assert_int_eq(tp->rdma_write(p.a.ep, 1, &sge, 1,
					(uint64_t)(uintptr_t)target, mr2->rkey,
					0),
			 0);
	send_buf(&p.a, 2, &src, 0, 1, 0);
	wait_wc(p.b.cq, &wc);
	ck_assert_int_eq(wc.status, 0);
	assert_filled(target, 16, 'N');
	memset(target, CANARY, 256);

	/* ...locally, the old lkey is refused... */
	sge = (struct dafs_sge){target, 16, old_lkey};
	ck_assert_int_eq(tp->post_send(p.b.ep, 3, &sge, 1, 0), -EINVAL);

	/* ...and remotely the old rkey breaks the connection untouched. */
	post_recv(&p.a, 9, &ra, 0, 64);
	memset(src.p, 'O', 256);
	sge = sge_of(&src, 0, 16);
	ck_assert_int_eq(tp->rdma_write(p.a.ep, 4, &sge, 1,
					(uint64_t)(uintptr_t)target, old_rkey,
					0),
			 0);
	expect_recv_flush(&p.a, 9, -ECONNRESET);
	assert_filled(target, 256, CANARY);

	ck_assert_int_eq(tp->dereg_mr(mr2), 0);
	free(target);
	buf_fini(&src);
	buf_fini(&ra);
	buf_fini(&rb);
	pair_close(&p);
}
END_TEST

START_TEST(test_local_validation)
{
	struct buf sb, ro, rb, other;
	struct dafs_sge sge, sgl[17];
	struct dafs_mr *mr;
	struct dafs_wc wc;
	struct side extra;
	struct pair p;
	int i;

	pair_open(&p);
	side_init(&extra);
	buf_init(&sb, &p.a, 256, 0, 'v');
	buf_init(&ro, &p.a, 256, 0, 0); /* no LOCAL_WRITE */
	buf_init(&rb, &p.b, 256, DAFS_ACC_LOCAL_WRITE, CANARY);
	buf_init(&other, &extra, 256, ACC_ALL, 0); /* another domain */

	/* registration */
	ck_assert_int_eq(tp->reg_mr(p.a.dom, sb.p, 0, 0, &mr), -EINVAL);
	ck_assert_int_eq(tp->reg_mr(p.a.dom, NULL, 16, 0, &mr), -EINVAL);
	ck_assert_int_eq(tp->reg_mr(p.a.dom, sb.p, 16, 0x100, &mr), -EINVAL);
	ck_assert_int_eq(
		tp->reg_mr(p.a.dom, sb.p, 16, DAFS_ACC_REMOTE_WRITE, &mr),
		-EINVAL);

	/* SGEs outside their region, or under a key that is not ours */
	sge = sge_of(&sb, 200, 57);
	ck_assert_int_eq(tp->post_send(p.a.ep, 1, &sge, 1, 0), -EINVAL);
	sge = (struct dafs_sge){sb.p - 1, 8, sb.mr->lkey};
	ck_assert_int_eq(tp->post_send(p.a.ep, 1, &sge, 1, 0), -EINVAL);
	sge = (struct dafs_sge){sb.p, 8, sb.mr->lkey ^ 0x5555};
	ck_assert_int_eq(tp->post_send(p.a.ep, 1, &sge, 1, 0), -EINVAL);
	sge = sge_of(&other, 0, 8);
	ck_assert_int_eq(tp->post_send(p.a.ep, 1, &sge, 1, 0), -EINVAL);
	ck_assert_int_eq(tp->rdma_write(p.a.ep, 1, &sge, 1, 0, 0, 0), -EINVAL);
	ck_assert_int_eq(tp->post_recv(p.a.ep, 1, &sge), -EINVAL);
	/* one bad SGE among good ones spoils the post */
	sgl[0] = sge_of(&sb, 0, 8);
	sgl[1] = sge_of(&sb, 250, 8);
	ck_assert_int_eq(tp->post_send(p.a.ep, 1, sgl, 2, 0), -EINVAL);

	/* receive and READ targets must be locally writable */
	sge = sge_of(&ro, 0, 64);
	ck_assert_int_eq(tp->post_recv(p.a.ep, 1, &sge), -EACCES);
	ck_assert_int_eq(tp->rdma_read(p.a.ep, 1, &sge, 0, 0, 0), -EACCES);

	/* malformed posts */
	for (i = 0; i < 17; i++)
		sgl[i] = sge_of(&sb, 0, 1);
	ck_assert_int_eq(tp->post_send(p.a.ep, 1, sgl, 17, 0), -EINVAL);
	ck_assert_int_eq(tp->post_send(p.a.ep, 1, sgl, -1, 0), -EINVAL);
	ck_assert_int_eq(tp->post_send(p.a.ep, 1, NULL, 1, 0), -EINVAL);
	ck_assert_int_eq(tp->post_send(p.a.ep, 1, sgl, 1, 0x80), -EINVAL);
	ck_assert_int_eq(tp->rdma_read(p.a.ep, 1, NULL, 0, 0, 0), -EINVAL);
	ck_assert_int_eq(tp->post_recv(p.a.ep, 1, NULL), -EINVAL);

	/* None of that reached the peer; the connection still works, and
	 * 16 SGEs is the limit, not over it. */
	post_recv(&p.b, 42, &rb, 0, 256);
	ck_assert_int_eq(tp->post_send(p.a.ep, 43, sgl, 16, DAFS_TP_SIGNALED),
			 0);
	wait_wc(p.b.cq, &wc);
	ck_assert_uint_eq(wc.wr_id, 42);
	ck_assert_int_eq(wc.status, 0);
	ck_assert_uint_eq(wc.byte_len, 16);
	assert_filled(rb.p, 16, 'v');
	expect_wc(p.a.cq, p.a.ep, 43, DAFS_WC_SEND, 0);
	expect_none(p.a.cq, 0);

	buf_fini(&sb);
	buf_fini(&ro);
	buf_fini(&rb);
	buf_fini(&other);
	tp->cq_free(extra.cq);
	tp->domain_free(extra.dom);
	pair_close(&p);
}
END_TEST

START_TEST(test_recv_queue_full)
{
	struct dafs_sge sge;
	struct pair p;
	struct buf rb;
	int i;

	pair_open_at(&p, host, 4, 0);
	buf_init(&rb, &p.b, 64, DAFS_ACC_LOCAL_WRITE, 0);
	sge = sge_of(&rb, 0, 64);
	for (i = 0; i < 4; i++)
		ck_assert_int_eq(tp->post_recv(p.b.ep, i, &sge), 0);
	ck_assert_int_eq(tp->post_recv(p.b.ep, 4, &sge), -ENOMEM);
	buf_fini(&rb);
	pair_close(&p);
}
END_TEST

/* ---- completion queues ---- */

START_TEST(test_wait_cq_timeout)
{
	struct dafs_domain *dom;
	struct dafs_cq *cq;
	struct dafs_wc wc;
	uint64_t t0;

	ck_assert_int_eq(tp->domain_new(&dom), 0);
	ck_assert_int_eq(tp->cq_new(dom, 4, &cq), 0);
	ck_assert_int_eq(tp->wait_cq(cq, 0), -ETIMEDOUT);
	t0 = now_ms();
	ck_assert_int_eq(tp->wait_cq(cq, 30), -ETIMEDOUT);
	ck_assert_uint_ge(now_ms() - t0, 25); /* it did wait */
	ck_assert_int_eq(tp->poll_cq(cq, &wc, 1), 0);
	ck_assert_int_eq(tp->poll_cq(cq, &wc, -1), -EINVAL);
	tp->cq_free(cq);
	tp->domain_free(dom);
}
END_TEST

struct waiter {
	struct dafs_cq *cq;
	int ret;
};

static void *waiter_main(void *arg)
{
	struct waiter *w = arg;

	w->ret = tp->wait_cq(w->cq, -1);
	return NULL;
}

START_TEST(test_cq_kick)
{
	struct dafs_domain *dom;
	struct waiter w[3];
	pthread_t t[3];
	int i;

	ck_assert_int_eq(tp->domain_new(&dom), 0);
	ck_assert_int_eq(tp->cq_new(dom, 4, &w[0].cq), 0);
	for (i = 0; i < 3; i++) {
		w[i].cq = w[0].cq;
		w[i].ret = 1;
		ck_assert_int_eq(
			pthread_create(&t[i], NULL, waiter_main, &w[i]), 0);
	}
	sleep_ms(100); /* let them block */
	tp->cq_kick(w[0].cq);
	for (i = 0; i < 3; i++) {
		pthread_join(t[i], NULL);
		ck_assert_int_eq(w[i].ret, 0);
	}
	/* A kick nobody waited for ends the next wait at once. */
	tp->cq_kick(w[0].cq);
	ck_assert_int_eq(tp->wait_cq(w[0].cq, -1), 0);
	ck_assert_int_eq(tp->wait_cq(w[0].cq, 10), -ETIMEDOUT);
	tp->cq_free(w[0].cq);
	tp->domain_free(dom);
}
END_TEST

/* A CQ smaller than the burst loses nothing. */
START_TEST(test_cq_grows)
{
	struct dafs_ep_attr aa, ba;
	struct buf sb, rb, src, dst;
	struct dafs_cq *rcq;
	struct dafs_wc wc[64];
	struct dafs_sge sge;
	struct pair p;
	int i, n, got = 0;

	side_init(&p.a);
	side_init(&p.b);
	ck_assert_int_eq(tp->cq_new(p.b.dom, 2, &rcq), 0);
	ck_assert_int_eq(tp->listen(p.b.dom, host, 0, &p.l), 0);
	aa = attr_of(&p.a, 64, 0);
	ba = attr_of(&p.b, 64, 0);
	ba.recv_cq = rcq;
	connect_accept(p.a.dom, host, &aa, &p.a.ep, p.l, &ba, &p.b.ep);
	buf_init(&sb, &p.a, 64, 0, 0);
	buf_init(&dst, &p.a, 8, DAFS_ACC_LOCAL_WRITE, 0);
	buf_init(&rb, &p.b, 64 * 50, DAFS_ACC_LOCAL_WRITE, 0);
	buf_init(&src, &p.b, 8, DAFS_ACC_REMOTE_READ, 0);
	for (i = 0; i < 50; i++)
		post_recv(&p.b, i, &rb, 64 * i, 64);
	for (i = 0; i < 50; i++) {
		sb.p[0] = (uint8_t)i;
		send_buf(&p.a, i, &sb, 0, 1, 0);
	}
	/* b's transport answers this READ after it has handled all 50
	 * SENDs, so by then their completions are all queued. */
	sge = sge_of(&dst, 0, 8);
	ck_assert_int_eq(tp->rdma_read(p.a.ep, 99, &sge, raddr_of(&src, 0),
				       src.mr->rkey, DAFS_TP_SIGNALED),
			 0);
	expect_wc(p.a.cq, p.a.ep, 99, DAFS_WC_RDMA_READ, 0);
	while ((n = tp->poll_cq(rcq, wc, 64)) > 0) {
		for (i = 0; i < n; i++) {
			ck_assert_uint_eq(wc[i].wr_id, got + i);
			ck_assert_int_eq(wc[i].status, 0);
			ck_assert_uint_eq(rb.p[64 * (got + i)], got + i);
		}
		got += n;
	}
	ck_assert_int_eq(got, 50);
	buf_fini(&sb);
	buf_fini(&dst);
	buf_fini(&rb);
	buf_fini(&src);
	tp->ep_free(p.b.ep);
	p.b.ep = NULL;
	tp->cq_free(rcq);
	pair_close(&p);
}
END_TEST

/* After ep_free, a shared CQ holds no completion of that endpoint, and
 * keeps the other endpoint's. */
START_TEST(test_ep_free_purges_cq)
{
	struct dafs_ep_attr aa, ba;
	struct dafs_ep *a2, *b2;
	struct buf sb, ra, rb;
	struct dafs_wc wc;
	struct dafs_sge sge;
	unsigned seen = 0;
	struct pair p;
	int i;

	pair_open(&p);
	aa = attr_of(&p.a, 8, 0);
	ba = attr_of(&p.b, 8, 0);
	connect_accept(p.a.dom, host, &aa, &a2, p.l, &ba, &b2);
	buf_init(&sb, &p.a, 64, 0, 0);
	buf_init(&ra, &p.a, 64, DAFS_ACC_LOCAL_WRITE, 0);
	buf_init(&rb, &p.b, 256, DAFS_ACC_LOCAL_WRITE, 0);
	post_recv(&p.b, 1, &rb, 0, 64);
	post_recv(&p.b, 2, &rb, 64, 64);
	sge = sge_of(&rb, 128, 64);
	ck_assert_int_eq(tp->post_recv(b2, 3, &sge), 0);
	post_recv(&p.a, 4, &ra, 0, 64); /* flushes into a's CQ on free */

	send_buf(&p.a, 10, &sb, 0, 8, DAFS_TP_SIGNALED);
	send_buf(&p.a, 11, &sb, 0, 8, DAFS_TP_SIGNALED);
	sge = sge_of(&sb, 0, 8);
	ck_assert_int_eq(tp->post_send(a2, 12, &sge, 1, DAFS_TP_SIGNALED), 0);
	/* Wait until all three arrived, so the send completions exist. The
	 * two connections deliver independently: any order between them. */
	for (i = 0; i < 3; i++) {
		wait_wc(p.b.cq, &wc);
		ck_assert_int_eq(wc.status, 0);
		ck_assert_uint_ge(wc.wr_id, 1);
		ck_assert_uint_le(wc.wr_id, 3);
		ck_assert_ptr_eq(wc.ep, wc.wr_id == 3 ? b2 : p.b.ep);
		seen |= 1u << wc.wr_id;
	}
	ck_assert_uint_eq(seen, 0xe);

	tp->ep_free(p.a.ep);
	p.a.ep = NULL;
	ck_assert_int_eq(tp->poll_cq(p.a.cq, &wc, 1), 1);
	ck_assert_ptr_eq(wc.ep, a2);
	ck_assert_uint_eq(wc.wr_id, 12);
	expect_none(p.a.cq, 20);

	tp->ep_free(a2);
	tp->ep_free(b2);
	buf_fini(&sb);
	buf_fini(&ra);
	buf_fini(&rb);
	pair_close(&p);
}
END_TEST

/* ---- listeners and names ---- */

struct acceptor {
	struct dafs_listener *l;
	struct dafs_ep_attr attr;
	struct dafs_ep *ep;
	int ret;
};

static void *accept_main(void *arg)
{
	struct acceptor *x = arg;

	x->ret = tp->accept(x->l, &x->attr, &x->ep);
	return NULL;
}

START_TEST(test_listener_close_unblocks_accept)
{
	struct acceptor x[2];
	struct side s;
	pthread_t t[2];
	int i;

	side_init(&s);
	ck_assert_int_eq(tp->listen(s.dom, host, 0, &x[0].l), 0);
	for (i = 0; i < 2; i++) {
		x[i].l = x[0].l;
		x[i].attr = attr_of(&s, 8, 0);
		x[i].ret = 1;
		ck_assert_int_eq(
			pthread_create(&t[i], NULL, accept_main, &x[i]), 0);
	}
	sleep_ms(100); /* let them block */
	tp->listener_close(x[0].l);
	for (i = 0; i < 2; i++) {
		pthread_join(t[i], NULL);
		ck_assert_int_eq(x[i].ret, -ECANCELED);
	}
	tp->cq_free(s.cq);
	tp->domain_free(s.dom);
}
END_TEST

static void round_trip(struct pair *p)
{
	struct buf sb, rb;
	struct dafs_wc wc;

	buf_init(&sb, &p->a, 16, 0, 'h');
	buf_init(&rb, &p->b, 16, DAFS_ACC_LOCAL_WRITE, 0);
	post_recv(&p->b, 1, &rb, 0, 16);
	send_buf(&p->a, 2, &sb, 0, 16, 0);
	wait_wc(p->b.cq, &wc);
	ck_assert_int_eq(wc.status, 0);
	assert_filled(rb.p, 16, 'h');
	buf_fini(&sb);
	buf_fini(&rb);
}

START_TEST(test_hosts)
{
	static const char *hosts[] = {"127.0.0.1", "::1", "localhost"};
	struct pair p;

	pair_open_at(&p, hosts[_i], 8, 0);
	round_trip(&p);
	pair_close(&p);
}
END_TEST

START_TEST(test_connect_refused)
{
	struct dafs_listener *l;
	struct dafs_ep_attr a;
	struct dafs_ep *ep;
	struct side s;
	uint16_t port;

	side_init(&s);
	a = attr_of(&s, 8, 0);
	/* a port that was free a moment ago */
	ck_assert_int_eq(tp->listen(s.dom, host, 0, &l), 0);
	port = tp->listener_port(l);
	tp->listener_close(l);
	ck_assert_int_eq(tp->connect(s.dom, host, port, &a, &ep),
			 -ECONNREFUSED);
	ck_assert_int_eq(tp->connect(s.dom, host, 0, &a, &ep), -EINVAL);
	a.recv_cq = NULL;
	ck_assert_int_eq(tp->connect(s.dom, host, port, &a, &ep),
			 -EINVAL);
	tp->cq_free(s.cq);
	tp->domain_free(s.dom);
}
END_TEST

/* ---- the wire, from a raw socket ---- */

static void put32(uint8_t *p, uint32_t v)
{
	int i;

	for (i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> 8 * i);
}

static void put64(uint8_t *p, uint64_t v)
{
	put32(p, (uint32_t)v);
	put32(p + 4, (uint32_t)(v >> 32));
}

/* One 32-byte frame header as docs/transport-tcp.md lays it out. */
static void hdr(uint8_t *p, uint8_t type, uint32_t len, uint32_t rkey,
		uint64_t addr, uint64_t tag)
{
	memset(p, 0, 32);
	p[0] = type;
	put32(p + 4, len);
	put32(p + 8, rkey);
	put64(p + 16, addr);
	put64(p + 24, tag);
}

static int raw_connect(uint16_t port)
{
	struct sockaddr_in sin = {.sin_family = AF_INET,
				  .sin_port = htons(port)};
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	ck_assert_int_ge(fd, 0);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_eq(connect(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	return fd;
}

static void raw_write(int fd, const void *p, size_t len)
{
	ck_assert_int_eq(write(fd, p, len), (ssize_t)len);
}

/* What the raw peer sends after (or instead of) its HELLO. */
enum raw_case {
	RAW_GOOD_SEND,
	RAW_NO_HELLO,
	RAW_UNKNOWN_TYPE,
	RAW_RESERVED_BITS,
	RAW_UNSOLICITED_RESP,
	RAW_NCASES
};

START_TEST(test_raw_peer)
{
	const enum raw_case c = (enum raw_case)_i;
	struct dafs_ep_attr a;
	struct dafs_ep *ep;
	struct buf rb;
	struct side s;
	struct dafs_listener *l;
	uint8_t h[32], in[32];
	int fd;

	side_init(&s);
	ck_assert_int_eq(tp->listen(s.dom, "127.0.0.1", 0, &l), 0);
	fd = raw_connect(tp->listener_port(l));
	a = attr_of(&s, 8, 0);
	ck_assert_int_eq(tp->accept(l, &a, &ep), 0);
	buf_init(&rb, &s, 64, DAFS_ACC_LOCAL_WRITE, CANARY);
	s.ep = ep;
	post_recv(&s, 1, &rb, 0, 64);

	/* the transport greets first: HELLO, magic "DAFSTCP1", version 1 */
	ck_assert_int_eq(recv(fd, in, 32, MSG_WAITALL), 32);
	hdr(h, 1, 0, 0, 0x3150435453464144ull, 1);
	ck_assert_mem_eq(in, h, 32);
	ck_assert_mem_eq(in + 16, "DAFSTCP1", 8);

	if (c != RAW_NO_HELLO)
		raw_write(fd, h, 32);
	switch (c) {
	case RAW_GOOD_SEND:
		hdr(h, 2, 5, 0, 0, 0);
		raw_write(fd, h, 32);
		raw_write(fd, "hello", 5);
		expect_wc(s.cq, ep, 1, DAFS_WC_RECV, 0);
		ck_assert_mem_eq(rb.p, "hello", 5);
		assert_filled(rb.p + 5, 59, CANARY);
		break;
	case RAW_NO_HELLO:
		hdr(h, 2, 5, 0, 0, 0);
		raw_write(fd, h, 32);
		raw_write(fd, "hello", 5);
		break;
	case RAW_UNKNOWN_TYPE:
		hdr(h, 9, 0, 0, 0, 0);
		raw_write(fd, h, 32);
		break;
	case RAW_RESERVED_BITS:
		hdr(h, 2, 5, 0, 0, 0);
		h[1] = 1;
		raw_write(fd, h, 32);
		raw_write(fd, "hello", 5);
		break;
	case RAW_UNSOLICITED_RESP:
		hdr(h, 5, 5, 0, 0, 1);
		raw_write(fd, h, 32);
		raw_write(fd, "hello", 5);
		break;
	default:
		break;
	}
	if (c != RAW_GOOD_SEND) {
		expect_wc(s.cq, ep, 1, DAFS_WC_RECV, -ECONNRESET);
		assert_filled(rb.p, 64, CANARY);
		/* and the raw peer sees the stream end */
		ck_assert_int_eq(recv(fd, in, 1, 0), 0);
	}
	close(fd);
	tp->ep_free(ep);
	buf_fini(&rb);
	tp->listener_close(l);
	tp->cq_free(s.cq);
	tp->domain_free(s.dom);
}
END_TEST

/* ---- RDMA WRITE from a file ---- */

/* An unlinked temporary file of @len bytes of pattern(@seed); *@data gets
 * a copy of them (free it). */
static int file_new(size_t len, uint32_t seed, uint8_t **data)
{
	char path[] = "/tmp/dafs-test-transport-XXXXXX";
	int fd = mkstemp(path);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(unlink(path), 0);
	*data = malloc(len ? len : 1);
	ck_assert_ptr_nonnull(*data);
	pattern(*data, len, seed);
	ck_assert_int_eq(pwrite(fd, *data, len, 0), (ssize_t)len);
	return fd;
}

/* Reopen @fd's file with @flags (through /proc, which works for an
 * unlinked file too). */
static int file_reopen(int fd, int flags)
{
	char path[64];

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	return open(path, flags);
}

START_TEST(test_rdma_write_file)
{
	const size_t flen = 3u << 20, head = 2u << 20;
	struct buf target, rb, sb;
	struct dafs_wc wc;
	struct pair p;
	uint8_t *data;
	int fd;

	pair_open(&p);
	fd = file_new(flen, 11, &data);
	buf_init(&target, &p.b, flen + 8192, ACC_RW, CANARY);
	buf_init(&rb, &p.b, 128, DAFS_ACC_LOCAL_WRITE, 0);
	buf_init(&sb, &p.a, 64, 0, 0);
	post_recv(&p.b, 1, &rb, 0, 64);
	post_recv(&p.b, 2, &rb, 64, 64);

	/* 70000 bytes from the middle of the file, at offset 1000. */
	ck_assert_int_eq(tp->rdma_write_file(p.a.ep, 5, fd, 12345, 70000,
					     raddr_of(&target, 1000),
					     target.mr->rkey, DAFS_TP_SIGNALED),
			 0);
	memcpy(sb.p, "done", 4);
	send_buf(&p.a, 6, &sb, 0, 4, DAFS_TP_SIGNALED);
	/* When the SEND completes at b, the write is already in place. */
	wait_wc(p.b.cq, &wc);
	ck_assert_uint_eq(wc.wr_id, 1);
	ck_assert_int_eq(wc.status, 0);
	ck_assert_mem_eq(rb.p, "done", 4);
	assert_filled(target.p, 1000, CANARY);
	ck_assert(!memcmp(target.p + 1000, data + 12345, 70000));
	assert_filled(target.p + 71000, target.len - 71000, CANARY);
	expect_none(p.b.cq, 20);
	expect_wc(p.a.cq, p.a.ep, 5, DAFS_WC_RDMA_WRITE, 0);
	expect_wc(p.a.cq, p.a.ep, 6, DAFS_WC_SEND, 0);
	/* it reads like pread: the descriptor's offset stays */
	ck_assert_int_eq(lseek(fd, 0, SEEK_CUR), 0);

	/* The whole file in two unsignaled writes larger than the socket
	 * buffers, and an empty one; only the signaled SEND completes. */
	memset(target.p, CANARY, target.len);
	ck_assert_int_eq(tp->rdma_write_file(p.a.ep, 7, fd, 0, head,
					     raddr_of(&target, 0),
					     target.mr->rkey, 0),
			 0);
	ck_assert_int_eq(tp->rdma_write_file(p.a.ep, 8, fd, head, flen - head,
					     raddr_of(&target, head),
					     target.mr->rkey, 0),
			 0);
	ck_assert_int_eq(tp->rdma_write_file(p.a.ep, 9, fd, flen, 0,
					     raddr_of(&target, flen + 100),
					     target.mr->rkey, 0),
			 0);
	send_buf(&p.a, 10, &sb, 0, 4, DAFS_TP_SIGNALED);
	expect_wc(p.b.cq, p.b.ep, 2, DAFS_WC_RECV, 0);
	ck_assert(!memcmp(target.p, data, flen));
	assert_filled(target.p + flen, 8192, CANARY);
	expect_wc(p.a.cq, p.a.ep, 10, DAFS_WC_SEND, 0);
	expect_none(p.a.cq, 50);

	/* Unaligned at both ends, and longer than any one pipeful. */
	memset(target.p, CANARY, target.len);
	post_recv(&p.b, 3, &rb, 0, 64);
	ck_assert_int_eq(
		tp->rdma_write_file(p.a.ep, 11, fd, 4097, flen - 4097 - 3,
				    raddr_of(&target, 5), target.mr->rkey, 0),
		0);
	send_buf(&p.a, 12, &sb, 0, 4, DAFS_TP_SIGNALED);
	expect_wc(p.b.cq, p.b.ep, 3, DAFS_WC_RECV, 0);
	assert_filled(target.p, 5, CANARY);
	ck_assert(!memcmp(target.p + 5, data + 4097, flen - 4097 - 3));
	assert_filled(target.p + 5 + flen - 4097 - 3,
		      target.len - (5 + flen - 4097 - 3), CANARY);
	expect_wc(p.a.cq, p.a.ep, 12, DAFS_WC_SEND, 0);

	close(fd);
	free(data);
	buf_fini(&target);
	buf_fini(&rb);
	buf_fini(&sb);
	pair_close(&p);
}
END_TEST

/* Open descriptors of this process. */
static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	int n = 0;

	ck_assert_ptr_nonnull(d);
	while (readdir(d))
		n++;
	closedir(d);
	return n;
}

struct file_writer {
	struct dafs_ep *ep;
	struct buf *target;
	int fd;
	int rc;
};

static void *file_writer_main(void *arg)
{
	struct file_writer *w = arg;

	w->rc = tp->rdma_write_file(w->ep, 1, w->fd, 0, 4096,
				    raddr_of(w->target, 0), w->target->mr->rkey,
				    0);
	return NULL;
}

/* A thread that sent from a file and exits leaves no descriptor behind
 * (the TCP transport stages through a pipe per thread). */
START_TEST(test_rdma_write_file_thread_exit)
{
	struct file_writer w;
	struct buf target, rb, sb;
	struct pair p;
	uint8_t *data;
	pthread_t t;
	int before, i;

	pair_open(&p);
	buf_init(&target, &p.b, 4096, ACC_RW, CANARY);
	buf_init(&rb, &p.b, 64 * 4, DAFS_ACC_LOCAL_WRITE, 0);
	buf_init(&sb, &p.a, 64, 0, 0);
	w = (struct file_writer){p.a.ep, &target, file_new(4096, 8, &data), 1};
	before = count_fds();
	for (i = 0; i < 4; i++) {
		post_recv(&p.b, (uint64_t)i, &rb, 64 * (size_t)i, 64);
		memset(target.p, CANARY, target.len);
		ck_assert_int_eq(pthread_create(&t, NULL, file_writer_main, &w),
				 0);
		pthread_join(t, NULL);
		ck_assert_int_eq(w.rc, 0);
		send_buf(&p.a, 100, &sb, 0, 1, 0);
		expect_wc(p.b.cq, p.b.ep, (uint64_t)i, DAFS_WC_RECV, 0);
		ck_assert(!memcmp(target.p, data, 4096));
		ck_assert_int_eq(count_fds(), before);
	}
	close(w.fd);
	free(data);
	buf_fini(&target);
	buf_fini(&rb);
	buf_fini(&sb);
	pair_close(&p);
}
END_TEST

/* The file shrank after the caller looked at its size: the frame still
 * carries the promised length, zeros where the file ended, and the stream
 * stays in step. */
START_TEST(test_rdma_write_file_shrunk)
{
	struct buf target, rb, sb;
	struct dafs_wc wc;
	struct pair p;
	uint8_t *data;
	int fd;

	pair_open(&p);
	fd = file_new(200000, 5, &data);
	ck_assert_int_eq(ftruncate(fd, 3000), 0);
	buf_init(&target, &p.b, 256 << 10, ACC_RW, CANARY);
	buf_init(&rb, &p.b, 192, DAFS_ACC_LOCAL_WRITE, 0);
	buf_init(&sb, &p.a, 64, 0, 0);
	post_recv(&p.b, 1, &rb, 0, 64);
	post_recv(&p.b, 2, &rb, 64, 64);

	/* 2000 bytes left of 150000 asked for: 148000 zeros */
	ck_assert_int_eq(tp->rdma_write_file(p.a.ep, 1, fd, 1000, 150000,
					     raddr_of(&target, 100),
					     target.mr->rkey, DAFS_TP_SIGNALED),
			 0);
	memcpy(sb.p, "one", 3);
	send_buf(&p.a, 2, &sb, 0, 3, 0);
	wait_wc(p.b.cq, &wc);
	ck_assert_uint_eq(wc.wr_id, 1);
	ck_assert_int_eq(wc.status, 0);
	ck_assert_uint_eq(wc.byte_len, 3);
	ck_assert_mem_eq(rb.p, "one", 3);
	assert_filled(target.p, 100, CANARY);
	ck_assert_mem_eq(target.p + 100, data + 1000, 2000);
	assert_filled(target.p + 2100, 148000, 0);
	assert_filled(target.p + 150100, target.len - 150100, CANARY);
	expect_wc(p.a.cq, p.a.ep, 1, DAFS_WC_RDMA_WRITE, 0);

	/* Nothing left at all: only zeros. */
	ck_assert_int_eq(ftruncate(fd, 0), 0);
	memset(target.p, CANARY, target.len);
	ck_assert_int_eq(tp->rdma_write_file(p.a.ep, 3, fd, 0, 5000,
					     raddr_of(&target, 0),
					     target.mr->rkey, 0),
			 0);
	memcpy(sb.p, "two", 3);
	send_buf(&p.a, 4, &sb, 0, 3, 0);
	expect_wc(p.b.cq, p.b.ep, 2, DAFS_WC_RECV, 0);
	ck_assert_mem_eq(rb.p + 64, "two", 3);
	assert_filled(target.p, 5000, 0);
	assert_filled(target.p + 5000, target.len - 5000, CANARY);

	/* Cut in a later pipeful of a long write. */
	close(fd);
	free(data);
	fd = file_new(3u << 20, 6, &data);
	ck_assert_int_eq(ftruncate(fd, (3u << 19) + 100), 0);
	buf_fini(&target);
	buf_init(&target, &p.b, 3u << 20, ACC_RW, CANARY);
	post_recv(&p.b, 4, &rb, 0, 64);
	ck_assert_int_eq(tp->rdma_write_file(p.a.ep, 6, fd, 10, (3u << 20) - 10,
					     raddr_of(&target, 10),
					     target.mr->rkey, 0),
			 0);
	send_buf(&p.a, 7, &sb, 0, 3, 0);
	expect_wc(p.b.cq, p.b.ep, 4, DAFS_WC_RECV, 0);
	assert_filled(target.p, 10, CANARY);
	ck_assert(!memcmp(target.p + 10, data + 10, (3u << 19) + 90));
	assert_filled(target.p + (3u << 19) + 100, (3u << 19) - 100, 0);

	/* And the connection carries on as before. */
	post_recv(&p.b, 3, &rb, 128, 64);
	memcpy(sb.p, "three", 5);
	send_buf(&p.a, 5, &sb, 0, 5, DAFS_TP_SIGNALED);
	wait_wc(p.b.cq, &wc);
	ck_assert_uint_eq(wc.wr_id, 3);
	ck_assert_int_eq(wc.status, 0);
	ck_assert_uint_eq(wc.byte_len, 5);
	ck_assert_mem_eq(rb.p + 128, "three", 5);
	expect_wc(p.a.cq, p.a.ep, 5, DAFS_WC_SEND, 0);
	expect_none(p.a.cq, 20);

	close(fd);
	free(data);
	buf_fini(&target);
	buf_fini(&rb);
	buf_fini(&sb);
	pair_close(&p);
}
END_TEST

/* The target checks a file write's key and bounds like any other: a bad
 * one breaks the connection untouched. */
START_TEST(test_rdma_write_file_refused)
{
	struct buf target, ra, rb;
	uint32_t rkey;
	uint64_t raddr;
	struct pair p;
	uint8_t *data;
	int fd;

	pair_open(&p);
	fd = file_new(4096, 9, &data);
	buf_init(&target, &p.b, 4096, ACC_RW, CANARY);
	buf_init(&ra, &p.a, 64, DAFS_ACC_LOCAL_WRITE, 0);
	buf_init(&rb, &p.b, 128, DAFS_ACC_LOCAL_WRITE, CANARY);
	post_recv(&p.a, 50, &ra, 0, 64);
	post_recv(&p.b, 60, &rb, 0, 64);
	post_recv(&p.b, 61, &rb, 64, 64);

	rkey = target.mr->rkey;
	raddr = raddr_of(&target, 1024);
	if (_i == 0)
		rkey ^= 1u << 16; /* same slot, another generation */
	else
		raddr = raddr_of(&target, 4096 - 64 + 1); /* past the end */
	/* unsignaled: errors complete anyway */
	ck_assert_int_eq(
		tp->rdma_write_file(p.a.ep, 7, fd, 0, 64, raddr, rkey, 0), 0);
	expect_wc(p.b.cq, p.b.ep, 60, DAFS_WC_RECV, -ECONNRESET);
	expect_wc(p.b.cq, p.b.ep, 61, DAFS_WC_RECV, -ECONNRESET);
	expect_recv_flush(&p.a, 50, -ECONNRESET);
	expect_none(p.a.cq, 20);
	expect_none(p.b.cq, 0);
	assert_filled(target.p, 4096, CANARY);
	assert_filled(rb.p, 128, CANARY);
	assert_posts_refused(&p.a, &ra);
	ck_assert_int_eq(tp->rdma_write_file(p.a.ep, 8, fd, 0, 64,
					     raddr_of(&target, 0),
					     target.mr->rkey, 0),
			 -ENOTCONN);
	buf_fini(&target);
	buf_fini(&ra);
	buf_fini(&rb);
	pair_close(&p);

	/* What the refused call had read must not turn up in the next
	 * frame from this thread, on another connection. */
	pair_open(&p);
	buf_init(&target, &p.b, 4096, ACC_RW, CANARY);
	buf_init(&rb, &p.b, 64, DAFS_ACC_LOCAL_WRITE, 0);
	buf_init(&ra, &p.a, 64, 0, 'x');
	post_recv(&p.b, 1, &rb, 0, 64);
	ck_assert_int_eq(tp->rdma_write_file(p.a.ep, 9, fd, 100, 64,
					     raddr_of(&target, 0),
					     target.mr->rkey, 0),
			 0);
	send_buf(&p.a, 10, &ra, 0, 1, 0);
	expect_wc(p.b.cq, p.b.ep, 1, DAFS_WC_RECV, 0);
	ck_assert_mem_eq(target.p, data + 100, 64);
	assert_filled(target.p + 64, 4096 - 64, CANARY);

	close(fd);
	free(data);
	buf_fini(&target);
	buf_fini(&ra);
	buf_fini(&rb);
	pair_close(&p);
}
END_TEST

/* What is refused before anything goes out: the connection is unharmed.
 * Runs in its own process (check forks), so the descriptor limit it lowers
 * goes with it. */
START_TEST(test_rdma_write_file_validation)
{
	struct buf target, rb, sb;
	int fd, wfd, pfd[2], odfd, fill[64], nfill;
	struct rlimit rl, nofile;
	uint64_t raddr;
	uint32_t rkey;
	struct pair p;
	uint8_t *data;

	pair_open(&p);
	fd = file_new(4096, 3, &data);
	buf_init(&target, &p.b, 4096, ACC_RW, CANARY);
	buf_init(&rb, &p.b, 64, DAFS_ACC_LOCAL_WRITE, 0);
	buf_init(&sb, &p.a, 64, 0, 'v');
	raddr = raddr_of(&target, 0);
	rkey = target.mr->rkey;

	/* flags: the payload is not in memory, so no INLINE */
	ck_assert_int_eq(tp->rdma_write_file(p.a.ep, 1, fd, 0, 16, raddr, rkey,
					     DAFS_TP_INLINE),
			 -EINVAL);
	ck_assert_int_eq(
		tp->rdma_write_file(p.a.ep, 1, fd, 0, 16, raddr, rkey, 0x80),
		-EINVAL);
	/* a range that no off_t can name */
	ck_assert_int_eq(tp->rdma_write_file(p.a.ep, 1, fd, (uint64_t)INT64_MAX,
					     1, raddr, rkey, 0),
			 -EINVAL);
	/* descriptors that cannot be read */
	ck_assert_int_eq(
		tp->rdma_write_file(p.a.ep, 1, -1, 0, 16, raddr, rkey, 0),
		-EBADF);
	wfd = file_reopen(fd, O_WRONLY);
	ck_assert_int_ge(wfd, 0);
	ck_assert_int_eq(
		tp->rdma_write_file(p.a.ep, 1, wfd, 0, 16, raddr, rkey, 0),
		-EBADF);
	close(wfd);
	wfd = file_reopen(fd, O_PATH);
	ck_assert_int_ge(wfd, 0);
	ck_assert_int_eq(
		tp->rdma_write_file(p.a.ep, 1, wfd, 0, 16, raddr, rkey, 0),
		-EBADF);
	close(wfd);
	/* not a regular file */
	wfd = open("/tmp", O_RDONLY | O_DIRECTORY);
	ck_assert_int_ge(wfd, 0);
	ck_assert_int_eq(
		tp->rdma_write_file(p.a.ep, 1, wfd, 0, 16, raddr, rkey, 0),
		-EINVAL);
	close(wfd);
	ck_assert_int_eq(pipe(pfd), 0);
	ck_assert_int_eq(
		tp->rdma_write_file(p.a.ep, 1, pfd[0], 0, 16, raddr, rkey, 0),
		-EINVAL);
	close(pfd[0]);
	close(pfd[1]);
	/* O_DIRECT, where the file system has it */
	odfd = file_reopen(fd, O_RDONLY | O_DIRECT);
	if (odfd >= 0) {
		ck_assert_int_eq(tp->rdma_write_file(p.a.ep, 1, odfd, 0, 4096,
						     raddr, rkey, 0),
				 -EINVAL);
		close(odfd);
	}

	/* Out of descriptors for the transfer (its pipe, on TCP): an
	 * error, nothing posted. */
	ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
	nofile = rl;
	nofile.rlim_cur = 64;
	ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &nofile), 0);
	for (nfill = 0; nfill < 64 && (fill[nfill] = dup(fd)) >= 0; nfill++)
		;
	ck_assert_int_eq(
		tp->rdma_write_file(p.a.ep, 1, fd, 0, 16, raddr, rkey, 0),
		-EMFILE);
	while (nfill--)
		close(fill[nfill]);
	ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &rl), 0);

	/* None of that reached the peer. */
	post_recv(&p.b, 2, &rb, 0, 64);
	send_buf(&p.a, 3, &sb, 0, 8, DAFS_TP_SIGNALED);
	expect_wc(p.b.cq, p.b.ep, 2, DAFS_WC_RECV, 0);
	assert_filled(rb.p, 8, 'v');
	assert_filled(target.p, 4096, CANARY);
	expect_wc(p.a.cq, p.a.ep, 3, DAFS_WC_SEND, 0);
	expect_none(p.a.cq, 0);

	close(fd);
	free(data);
	buf_fini(&target);
	buf_fini(&rb);
	buf_fini(&sb);
	pair_close(&p);
}
END_TEST

/* On the wire a write from a file is the very frame rdma_write sends from
 * memory holding the same bytes: the peer cannot tell them apart. */
START_TEST(test_rdma_write_file_wire)
{
	const uint32_t len = 5000, rkey = 0xabcdef01;
	const uint64_t raddr = 0x1122334455667788ull;
	struct dafs_listener *l;
	struct dafs_ep_attr a;
	struct dafs_sge sge;
	struct dafs_ep *ep;
	uint8_t h[32], *in;
	struct buf src;
	struct side s;
	uint8_t *data;
	int fd, ffd;

	side_init(&s);
	ck_assert_int_eq(tp->listen(s.dom, "127.0.0.1", 0, &l), 0);
	fd = raw_connect(tp->listener_port(l));
	a = attr_of(&s, 8, 0);
	ck_assert_int_eq(tp->accept(l, &a, &ep), 0);
	ck_assert_int_eq(recv(fd, h, 32, MSG_WAITALL), 32); /* HELLO */
	raw_write(fd, h, 32);

	ffd = file_new(len + 300, 21, &data);
	buf_init(&src, &s, len, 0, 0);
	memcpy(src.p, data + 300, len);
	sge = sge_of(&src, 0, len);
	ck_assert_int_eq(tp->rdma_write(ep, 1, &sge, 1, raddr, rkey, 0), 0);
	ck_assert_int_eq(
		tp->rdma_write_file(ep, 2, ffd, 300, len, raddr, rkey, 0), 0);
	in = malloc(2 * (32 + len));
	ck_assert_ptr_nonnull(in);
	ck_assert_int_eq(recv(fd, in, 2 * (32 + len), MSG_WAITALL),
			 2 * (32 + len));
	hdr(h, 3, len, rkey, raddr, 0);
	ck_assert_mem_eq(in, h, 32);
	ck_assert(!memcmp(in + 32, data + 300, len));
	ck_assert(!memcmp(in + 32 + len, in, 32 + len));

	free(in);
	close(fd);
	tp->ep_free(ep);
	close(ffd);
	free(data);
	buf_fini(&src);
	tp->listener_close(l);
	tp->cq_free(s.cq);
	tp->domain_free(s.dom);
}
END_TEST

/* ---- many threads on one endpoint ---- */

#define NTHREADS 4
#define NMSG 1000
#define MSG_MAX 256
#define SIGNAL_EVERY 100

struct msg_hdr {
	uint32_t thread, seq, len, sum;
};

struct sender {
	struct dafs_ep *ep;
	struct buf *mem; /* NMSG slots of MSG_MAX bytes, never reused */
	uint32_t id;
	int err;
};

static void *sender_main(void *arg)
{
	struct sender *s = arg;
	struct dafs_sge sgl[2];
	struct msg_hdr h;
	uint32_t seq, len;
	uint8_t *slot;
	unsigned flags;

	for (seq = 0; seq < NMSG; seq++) {
		slot = s->mem->p + (size_t)seq * MSG_MAX;
		len = (seq * 37 + s->id * 11) % (MSG_MAX - sizeof(h));
		pattern(slot + sizeof(h), len, s->id << 16 | seq);
		h = (struct msg_hdr){s->id, seq, len,
				     csum(slot + sizeof(h), len)};
		memcpy(slot, &h, sizeof(h));
		/* header and payload as two segments */
		sgl[0] = sge_of(s->mem, (size_t)seq * MSG_MAX, sizeof(h));
		sgl[1] = sge_of(s->mem, (size_t)seq * MSG_MAX + sizeof(h), len);
		flags = (seq + 1) % SIGNAL_EVERY ? 0 : DAFS_TP_SIGNALED;
		s->err = tp->post_send(s->ep, s->id << 16 | seq, sgl, 2, flags);
		if (s->err)
			break;
	}
	return NULL;
}

START_TEST(test_concurrent_senders)
{
	struct sender snd[NTHREADS];
	struct buf mem[NTHREADS], rb;
	uint32_t next[NTHREADS] = {0};
	pthread_t t[NTHREADS];
	struct dafs_wc wc[16];
	struct msg_hdr h;
	struct pair p;
	unsigned got = 0, sends = 0;
	uint64_t end;
	int i, n, k;
	uint8_t *m;

	pair_open_at(&p, host, 64, 0);
	buf_init(&rb, &p.b, 64 * MSG_MAX, DAFS_ACC_LOCAL_WRITE, 0);
	for (i = 0; i < 64; i++)
		post_recv(&p.b, i, &rb, (size_t)i * MSG_MAX, MSG_MAX);
	for (i = 0; i < NTHREADS; i++) {
		buf_init(&mem[i], &p.a, (size_t)NMSG * MSG_MAX, 0, 0);
		snd[i] = (struct sender){p.a.ep, &mem[i], (uint32_t)i, 0};
		ck_assert_int_eq(
			pthread_create(&t[i], NULL, sender_main, &snd[i]), 0);
	}

	end = now_ms() + 12 * TMO_MS;
	while (got < NTHREADS * NMSG) {
		ck_assert_msg(now_ms() < end, "only %u messages arrived", got);
		n = tp->poll_cq(p.b.cq, wc, 16);
		if (!n) {
			tp->wait_cq(p.b.cq, 100);
			continue;
		}
		for (k = 0; k < n; k++) {
			ck_assert_int_eq(wc[k].status, 0);
			ck_assert_uint_eq(wc[k].op, DAFS_WC_RECV);
			m = rb.p + wc[k].wr_id * MSG_MAX;
			ck_assert_uint_ge(wc[k].byte_len, sizeof(h));
			memcpy(&h, m, sizeof(h));
			ck_assert_uint_lt(h.thread, NTHREADS);
			ck_assert_uint_eq(wc[k].byte_len, sizeof(h) + h.len);
			/* each thread's messages arrive in its order, intact */
			ck_assert_uint_eq(h.seq, next[h.thread]);
			next[h.thread]++;
			ck_assert_uint_eq(csum(m + sizeof(h), h.len), h.sum);
			post_recv(&p.b, wc[k].wr_id, &rb, wc[k].wr_id * MSG_MAX,
				  MSG_MAX);
		}
		got += n;
	}
	for (i = 0; i < NTHREADS; i++) {
		pthread_join(t[i], NULL);
		ck_assert_int_eq(snd[i].err, 0);
		ck_assert_uint_eq(next[i], NMSG);
	}
	/* one completion per SIGNAL_EVERY sends, each a signaled wr_id */
	while ((n = tp->poll_cq(p.a.cq, wc, 16)) > 0) {
		for (k = 0; k < n; k++) {
			ck_assert_int_eq(wc[k].status, 0);
			ck_assert_uint_eq(
				((wc[k].wr_id & 0xffff) + 1) % SIGNAL_EVERY, 0);
		}
		sends += n;
	}
	ck_assert_uint_eq(sends, NTHREADS * NMSG / SIGNAL_EVERY);
	for (i = 0; i < NTHREADS; i++)
		buf_fini(&mem[i]);
	buf_fini(&rb);
	pair_close(&p);
}
END_TEST

/* ---- consumer-driven receive ---- */

/*
 * A thread waiting on a CQ reads its endpoints' sockets itself; the
 * receive thread reads only when nobody else does. These tests use two
 * hooks of tcp_i.h: frame counts by reader (the receive thread, or
 * anybody else), and a switch that keeps a receive thread from reading at
 * all, so that a completion can only have come from the waiter's own
 * reading.
 */

/*
 * The next completion on @cq within @ms, for threads other than the
 * test's own (check's asserts belong to the main thread). @step: the
 * longest single wait_cq. With its receive thread kept from reading, an
 * endpoint's messages are read only while somebody waits on its CQ, and a
 * waiter reads while it spins, not once asleep: so such a test waits in
 * short steps, each beginning with a spin, however slow the machine.
 */
static int next_wc(struct dafs_cq *cq, struct dafs_wc *wc, unsigned ms,
		   unsigned step)
{
	uint64_t end = now_ms() + ms, t;
	int n;

	for (;;) {
		n = tp->poll_cq(cq, wc, 1);
		if (n)
			return n < 0 ? n : 0;
		t = now_ms();
		if (t >= end)
			return -ETIMEDOUT;
		tp->wait_cq(cq, (int)(end - t < step ? end - t : step));
	}
}

/* wait_wc in steps of 1 ms, for endpoints whose receive thread is kept
 * from reading. */
static void wait_wc_stepped(struct dafs_cq *cq, struct dafs_wc *wc)
{
	ck_assert_msg(!next_wc(cq, wc, TMO_MS, 1), "no completion within %d ms",
		      TMO_MS);
}

static void expect_wc_stepped(struct dafs_cq *cq, struct dafs_ep *ep,
			      uint64_t wr_id, uint8_t op, int status)
{
	struct dafs_wc wc;

	wait_wc_stepped(cq, &wc);
	ck_assert_uint_eq(wc.wr_id, wr_id);
	ck_assert_int_eq(wc.status, status);
	ck_assert_uint_eq(wc.op, op);
	ck_assert_ptr_eq(wc.ep, ep);
}

static struct tcp_ep_stats stats_of(struct dafs_ep *ep)
{
	struct tcp_ep_stats st;

	tcp_ep_stats(ep, &st);
	return st;
}

/* First failure of a helper thread, reported by the main thread. */
struct tfail {
	pthread_mutex_t lock;
	char msg[160];
};

#define TFAIL(f, ...)                                                          \
	do {                                                                   \
		pthread_mutex_lock(&(f)->lock);                                \
		if (!(f)->msg[0])                                              \
			snprintf((f)->msg, sizeof((f)->msg), __VA_ARGS__);     \
		pthread_mutex_unlock(&(f)->lock);                              \
	} while (0)

static void tfail_init(struct tfail *f)
{
	pthread_mutex_init(&f->lock, NULL);
	f->msg[0] = 0;
}

static void tfail_check(struct tfail *f)
{
	ck_assert_msg(!f->msg[0], "%s", f->msg);
	pthread_mutex_destroy(&f->lock);
}

#define ECHO_N 300
#define ECHO_LEN 512

struct echo {
	struct side *s;
	struct buf *rb;
	struct tfail *fail;
};

/* Sends every message back as it came. */
static void *echo_main(void *arg)
{
	struct echo *e = arg;
	struct dafs_sge sge;
	struct dafs_wc wc;
	unsigned i;
	int err;

	for (i = 0; i < ECHO_N; i++) {
		err = next_wc(e->s->cq, &wc, TMO_MS, 1);
		if (err || wc.status || wc.op != DAFS_WC_RECV) {
			TFAIL(e->fail, "echo %u: err %d status %d op %u", i,
			      err, err ? 0 : wc.status, err ? 0 : wc.op);
			return NULL;
		}
		sge = sge_of(e->rb, 0, wc.byte_len);
		err = tp->post_send(e->s->ep, 0, &sge, 1, 0);
		sge = sge_of(e->rb, 0, ECHO_LEN);
		if (!err)
			err = tp->post_recv(e->s->ep, 0, &sge);
		if (err) {
			TFAIL(e->fail, "echo %u: post: %d", i, err);
			return NULL;
		}
	}
	return NULL;
}

/* Round trips complete with both receive threads kept from reading: each
 * waiter reads its own message. Afterwards, with nobody polling, the
 * receive thread takes over again. */
START_TEST(test_consumer_reads_own_reply)
{
	struct tcp_ep_stats a0, b0, a1, b1;
	struct buf sa, ra, rb;
	struct dafs_wc wc;
	struct tfail fail;
	struct echo e;
	struct pair p;
	pthread_t t;
	uint64_t end;
	unsigned i;

	pair_open(&p);
	buf_init(&sa, &p.a, ECHO_LEN, DAFS_ACC_LOCAL_WRITE, 0);
	buf_init(&ra, &p.a, ECHO_LEN, DAFS_ACC_LOCAL_WRITE, 0);
	buf_init(&rb, &p.b, ECHO_LEN, DAFS_ACC_LOCAL_WRITE, 0);
	post_recv(&p.b, 0, &rb, 0, ECHO_LEN);
	tcp_ep_pause_rx(p.a.ep, true);
	tcp_ep_pause_rx(p.b.ep, true);
	a0 = stats_of(p.a.ep);
	b0 = stats_of(p.b.ep);

	tfail_init(&fail);
	e = (struct echo){&p.b, &rb, &fail};
	ck_assert_int_eq(pthread_create(&t, NULL, echo_main, &e), 0);
	for (i = 0; i < ECHO_N; i++) {
		uint32_t len = 1 + (i * 97) % ECHO_LEN;

		pattern(sa.p, len, i);
		post_recv(&p.a, i, &ra, 0, ECHO_LEN);
		send_buf(&p.a, i, &sa, 0, len, 0);
		wait_wc_stepped(p.a.cq, &wc);
		ck_assert_int_eq(wc.status, 0);
		ck_assert_uint_eq(wc.op, DAFS_WC_RECV);
		ck_assert_uint_eq(wc.wr_id, i);
		ck_assert_uint_eq(wc.byte_len, len);
		ck_assert_uint_eq(csum(ra.p, len), csum(sa.p, len));
	}
	pthread_join(t, NULL);
	tfail_check(&fail);

	/* nothing by the receive threads: every frame by a waiter */
	a1 = stats_of(p.a.ep);
	b1 = stats_of(p.b.ep);
	ck_assert_uint_eq(a1.rx_thread_frames, a0.rx_thread_frames);
	ck_assert_uint_eq(b1.rx_thread_frames, b0.rx_thread_frames);
	ck_assert_uint_ge(a1.driven_frames - a0.driven_frames, ECHO_N);
	ck_assert_uint_ge(b1.driven_frames - b0.driven_frames, ECHO_N);

	/* Let a's receive thread read again; nobody polls a's CQ, yet the
	 * message is read and completes. */
	tcp_ep_pause_rx(p.a.ep, false);
	post_recv(&p.a, 7, &ra, 0, ECHO_LEN);
	send_buf(&p.b, 0, &rb, 0, 16, 0);
	end = now_ms() + TMO_MS;
	while (stats_of(p.a.ep).rx_thread_frames == a1.rx_thread_frames) {
		ck_assert_msg(now_ms() < end, "receive thread idle");
		sleep_ms(1);
	}
	ck_assert_int_eq(tp->poll_cq(p.a.cq, &wc, 1), 1);
	ck_assert_uint_eq(wc.wr_id, 7);
	ck_assert_int_eq(wc.status, 0);
	tcp_ep_pause_rx(p.b.ep, false);
	buf_fini(&sa);
	buf_fini(&ra);
	buf_fini(&rb);
	pair_close(&p);
}
END_TEST

/* The transport answers the peer's RDMA READ although nobody on its side
 * polls: neither ever, nor since a waiter spun there a moment ago. */
START_TEST(test_read_answered_unpolled)
{
	struct buf src, dst, sa, rb;
	struct tcp_ep_stats b0;
	struct dafs_sge sge;
	struct pair p;
	int round;

	pair_open(&p);
	buf_init(&src, &p.b, 65536, DAFS_ACC_REMOTE_READ, 0);
	buf_init(&dst, &p.a, 65536, DAFS_ACC_LOCAL_WRITE, CANARY);
	buf_init(&sa, &p.a, 64, 0, 0);
	buf_init(&rb, &p.b, 64, DAFS_ACC_LOCAL_WRITE, 0);
	for (round = 0; round < 2; round++) {
		if (round == 1) {
			/* b's waiter spins, reads its message and leaves */
			post_recv(&p.b, 5, &rb, 0, 64);
			send_buf(&p.a, 0, &sa, 0, 8, 0);
			expect_wc(p.b.cq, p.b.ep, 5, DAFS_WC_RECV, 0);
		}
		b0 = stats_of(p.b.ep);
		pattern(src.p, src.len, 100 + round);
		memset(dst.p, CANARY, dst.len);
		sge = sge_of(&dst, 0, 65536);
		ck_assert_int_eq(tp->rdma_read(p.a.ep, 9, &sge,
					       raddr_of(&src, 0), src.mr->rkey,
					       DAFS_TP_SIGNALED),
				 0);
		expect_wc(p.a.cq, p.a.ep, 9, DAFS_WC_RDMA_READ, 0);
		ck_assert_mem_eq(dst.p, src.p, 65536);
		/* b's side never looked: its receive thread read the
		 * request */
		ck_assert_uint_gt(stats_of(p.b.ep).rx_thread_frames,
				  b0.rx_thread_frames);
	}
	expect_none(p.b.cq, 0);
	buf_fini(&src);
	buf_fini(&dst);
	buf_fini(&sa);
	buf_fini(&rb);
	pair_close(&p);
}
END_TEST

/* A SEND that finds no receive posted: a waiter leaves it where it is
 * (it cannot wait for a buffer), and the post_recv that ends the wait
 * reads it on - with the receive thread kept from reading, nobody else
 * could. */
START_TEST(test_stalled_send_read_by_post_recv)
{
	struct tcp_ep_stats st;
	struct buf sb, rb;
	struct dafs_wc wc;
	struct pair p;
	uint64_t end;

	pair_open(&p);
	buf_init(&sb, &p.a, 64, 0, 0);
	buf_init(&rb, &p.b, 64, DAFS_ACC_LOCAL_WRITE, CANARY);
	tcp_ep_pause_rx(p.b.ep, true);
	memcpy(sb.p, "stalled", 7);
	send_buf(&p.a, 1, &sb, 0, 7, 0);
	/* polling reads the header, then stops: no buffer */
	end = now_ms() + TMO_MS;
	while (!stats_of(p.b.ep).stalled) {
		ck_assert_int_eq(tp->poll_cq(p.b.cq, &wc, 1), 0);
		ck_assert_msg(now_ms() < end, "the SEND never stalled");
		sleep_ms(1);
	}
	expect_none(p.b.cq, 5);
	assert_filled(rb.p, 64, CANARY);
	st = stats_of(p.b.ep);
	post_recv(&p.b, 9, &rb, 0, 64);
	/* the post itself read it on, before anybody polled */
	ck_assert_uint_eq(stats_of(p.b.ep).driven_frames, st.driven_frames + 1);
	ck_assert(!stats_of(p.b.ep).stalled);
	ck_assert_int_eq(tp->poll_cq(p.b.cq, &wc, 1), 1);
	ck_assert_uint_eq(wc.wr_id, 9);
	ck_assert_int_eq(wc.status, 0);
	ck_assert_uint_eq(wc.byte_len, 7);
	ck_assert_mem_eq(rb.p, "stalled", 7);
	ck_assert_uint_eq(stats_of(p.b.ep).rx_thread_frames,
			  st.rx_thread_frames);
	tcp_ep_pause_rx(p.b.ep, false);
	buf_fini(&sb);
	buf_fini(&rb);
	pair_close(&p);
}
END_TEST

/* How a frame that a waiter began ends. */
enum mid_case {
	MID_DISCONNECT, /* the owner breaks the connection */
	MID_EP_FREE,	/* the owner frees the endpoint while a thread reads */
	MID_PEER_CLOSE, /* the peer goes away, and the waiter notices */
	MID_NCASES
};

struct reaper {
	struct dafs_cq *cq;
	atomic_bool stop;
	struct dafs_wc wc[8];
	unsigned n;
};

/* Keeps waiting on a CQ (and so reading its sockets), reaping what comes. */
static void *reaper_main(void *arg)
{
	struct reaper *r = arg;
	struct dafs_wc wc;

	while (!atomic_load(&r->stop)) {
		if (tp->poll_cq(r->cq, &wc, 1) == 1) {
			if (r->n < 8)
				r->wc[r->n] = wc;
			r->n++;
			continue;
		}
		tp->wait_cq(r->cq, 1);
	}
	return NULL;
}

/*
 * A waiter reads the first part of a SEND into its receive buffer and
 * leaves the rest to whoever reads next (the receive thread is kept from
 * reading); then the connection ends. The receive that was being filled
 * completes first with an error, the ones behind it flush in order, the
 * buffer's region is released, and ep_free keeps its guarantee while
 * another thread goes on reading the CQ.
 */
START_TEST(test_flush_mid_frame)
{
	const enum mid_case c = (enum mid_case)_i;
	struct dafs_listener *l;
	struct tcp_ep_stats st;
	struct dafs_ep_attr a;
	struct reaper r = {0};
	uint8_t h[32], in[32], data[400];
	struct dafs_wc wc;
	struct buf rb;
	struct side s;
	pthread_t t;
	uint64_t end;
	unsigned i;
	int fd;

	side_init(&s);
	ck_assert_int_eq(tp->listen(s.dom, "127.0.0.1", 0, &l), 0);
	fd = raw_connect(tp->listener_port(l));
	a = attr_of(&s, 8, 0);
	ck_assert_int_eq(tp->accept(l, &a, &s.ep), 0);
	tcp_ep_pause_rx(s.ep, true);
	buf_init(&rb, &s, 3 * 4096, DAFS_ACC_LOCAL_WRITE, CANARY);
	for (i = 0; i < 3; i++)
		post_recv(&s, 1 + i, &rb, 4096 * i, 4096);

	ck_assert_int_eq(recv(fd, in, 32, MSG_WAITALL), 32);
	hdr(h, 1, 0, 0, 0x3150435453464144ull, 1);
	raw_write(fd, h, 32);
	hdr(h, 2, 1000, 0, 0, 0);
	raw_write(fd, h, 32);
	pattern(data, sizeof(data), 77);
	raw_write(fd, data, sizeof(data));

	/* polling reads what is there: 400 bytes land, nothing completes */
	end = now_ms() + TMO_MS;
	while (memcmp(rb.p, data, sizeof(data))) {
		ck_assert_msg(now_ms() < end, "the waiter read nothing");
		ck_assert_int_eq(tp->poll_cq(s.cq, &wc, 1), 0);
		sleep_ms(1);
	}
	assert_filled(rb.p + sizeof(data), 3 * 4096 - sizeof(data), CANARY);
	st = stats_of(s.ep);
	ck_assert_uint_eq(st.rx_thread_frames, 0);
	ck_assert_uint_eq(st.driven_frames, 1); /* the HELLO */
	expect_none(s.cq, 10);

	switch (c) {
	case MID_DISCONNECT:
		tp->disconnect(s.ep);
		for (i = 0; i < 3; i++)
			expect_wc_stepped(s.cq, s.ep, 1 + i, DAFS_WC_RECV,
					  -ECONNRESET);
		break;
	case MID_EP_FREE:
		r.cq = s.cq;
		ck_assert_int_eq(pthread_create(&t, NULL, reaper_main, &r), 0);
		sleep_ms(5);
		tp->ep_free(s.ep);
		/* nothing of the endpoint is left to reap */
		ck_assert_int_eq(tp->poll_cq(s.cq, &wc, 1), 0);
		atomic_store(&r.stop, true);
		pthread_join(t, NULL);
		ck_assert_uint_le(r.n, 3);
		for (i = 0; i < r.n; i++) {
			/* whatever was reaped came first, in order */
			ck_assert_uint_eq(r.wc[i].wr_id, 1 + i);
			ck_assert_int_eq(r.wc[i].status, -ECONNRESET);
		}
		s.ep = NULL;
		break;
	case MID_PEER_CLOSE:
		close(fd);
		fd = -1;
		for (i = 0; i < 3; i++)
			expect_wc_stepped(s.cq, s.ep, 1 + i, DAFS_WC_RECV,
					  -ECONNRESET);
		break;
	default:
		break;
	}
	if (s.ep)
		expect_none(s.cq, 0);
	/* the region is free again: deregistration does not wait */
	buf_fini(&rb);
	if (fd >= 0)
		close(fd);
	tp->ep_free(s.ep);
	tp->listener_close(l);
	tp->cq_free(s.cq);
	tp->domain_free(s.dom);
}
END_TEST

#define ME_EPS 8
#define ME_MSGS 50

/* One CQ fed by many endpoints (a server's): its waiter reads all of them
 * (through the CQ's epoll set; their receive threads are kept from
 * reading), each endpoint's messages in order; endpoints freed meanwhile
 * leave the others alone. */
START_TEST(test_many_endpoints_one_cq)
{
	struct dafs_ep *ae[ME_EPS], *be[ME_EPS];
	unsigned next[ME_EPS] = {0}, i, k, got = 0;
	struct dafs_ep_attr aa, ba;
	struct dafs_listener *l;
	struct buf sa, rb;
	struct side a, b;
	struct dafs_wc wc;
	uint32_t v;

	side_init(&a);
	side_init(&b);
	ck_assert_int_eq(tp->listen(b.dom, "127.0.0.1", 0, &l), 0);
	aa = attr_of(&a, ME_MSGS, 0);
	ba = attr_of(&b, ME_MSGS, 0);
	buf_init(&sa, &a, ME_EPS * ME_MSGS * 4, 0, 0);
	buf_init(&rb, &b, ME_EPS * ME_MSGS * 4, DAFS_ACC_LOCAL_WRITE, 0);
	for (k = 0; k < ME_EPS; k++) {
		ck_assert_int_eq(tp->connect(a.dom, "127.0.0.1",
					     tp->listener_port(l), &aa, &ae[k]),
				 0);
		ck_assert_int_eq(tp->accept(l, &ba, &be[k]), 0);
		tcp_ep_pause_rx(be[k], true);
		b.ep = be[k];
		for (i = 0; i < ME_MSGS; i++)
			post_recv(&b, k * ME_MSGS + i, &rb,
				  (k * ME_MSGS + i) * 4, 4);
	}
	/* every endpoint sends, interleaved */
	for (i = 0; i < ME_MSGS; i++)
		for (k = 0; k < ME_EPS; k++) {
			v = k << 16 | i;
			memcpy(sa.p + (k * ME_MSGS + i) * 4, &v, 4);
			a.ep = ae[k];
			send_buf(&a, 0, &sa, (k * ME_MSGS + i) * 4, 4, 0);
		}
	while (got < ME_EPS * ME_MSGS) {
		wait_wc_stepped(b.cq, &wc);
		ck_assert_int_eq(wc.status, 0);
		for (k = 0; k < ME_EPS && be[k] != wc.ep; k++)
			;
		ck_assert_uint_lt(k, ME_EPS);
		ck_assert_uint_eq(wc.wr_id, k * ME_MSGS + next[k]);
		memcpy(&v, rb.p + wc.wr_id * 4, 4);
		ck_assert_uint_eq(v, k << 16 | next[k]);
		next[k]++;
		got++;
		/* halfway, the odd endpoints go away */
		if (got == ME_EPS * ME_MSGS / 2)
			for (k = 1; k < ME_EPS; k += 2) {
				tp->ep_free(be[k]);
				be[k] = NULL;
				got += ME_MSGS - next[k];
				next[k] = ME_MSGS;
			}
	}
	for (k = 0; k < ME_EPS; k++) {
		ck_assert_uint_eq(next[k], ME_MSGS);
		tp->ep_free(be[k]);
		tp->ep_free(ae[k]);
	}
	expect_none(b.cq, 0);
	buf_fini(&sa);
	buf_fini(&rb);
	tp->listener_close(l);
	tp->cq_free(a.cq);
	tp->cq_free(b.cq);
	tp->domain_free(a.dom);
	tp->domain_free(b.dom);
}
END_TEST

#define MC_THREADS 4
#define MC_MSGS 4000
#define MC_SLOTS 32
#define MC_MAX 1024

struct mc_consumer {
	struct side *s;
	struct buf *rb;
	atomic_uint *got;   /* messages reaped by all */
	atomic_uchar *seen; /* MC_MSGS flags */
	struct tfail *fail;
	unsigned n;
};

/* One of several threads waiting on one CQ, reposting what it reaps. */
static void *mc_main(void *arg)
{
	struct mc_consumer *c = arg;
	uint64_t end = now_ms() + 12 * TMO_MS;
	struct dafs_wc wc[4];
	struct msg_hdr h;
	struct dafs_sge sge;
	int64_t last = -1;
	int i, n;
	uint8_t *m;

	while (atomic_load(c->got) < MC_MSGS) {
		if (now_ms() > end) {
			TFAIL(c->fail, "consumer: only %u messages",
			      atomic_load(c->got));
			return NULL;
		}
		n = tp->poll_cq(c->s->cq, wc, 4);
		if (n <= 0) {
			tp->wait_cq(c->s->cq, 10);
			continue;
		}
		for (i = 0; i < n; i++) {
			m = c->rb->p + wc[i].wr_id * MC_MAX;
			memcpy(&h, m, sizeof(h));
			if (wc[i].status || wc[i].op != DAFS_WC_RECV ||
			    wc[i].byte_len != sizeof(h) + h.len ||
			    h.seq >= MC_MSGS ||
			    csum(m + sizeof(h), h.len) != h.sum) {
				TFAIL(c->fail, "bad message: status %d seq %u",
				      wc[i].status, h.seq);
				return NULL;
			}
			/* completions leave the ring in order, so each
			 * thread sees its share in order; and each message
			 * arrives once */
			if ((int64_t)h.seq <= last ||
			    atomic_exchange(&c->seen[h.seq], 1)) {
				TFAIL(c->fail, "seq %u after %lld, or twice",
				      h.seq, (long long)last);
				return NULL;
			}
			last = h.seq;
			sge = sge_of(c->rb, wc[i].wr_id * MC_MAX, MC_MAX);
			if (tp->post_recv(c->s->ep, wc[i].wr_id, &sge)) {
				TFAIL(c->fail, "repost failed");
				return NULL;
			}
			c->n++;
		}
		atomic_fetch_add(c->got, (unsigned)n);
	}
	return NULL;
}

/* Many threads wait on one CQ: every message reaches exactly one of them,
 * intact, and each sees its share in order. */
START_TEST(test_many_consumers)
{
	struct mc_consumer c[MC_THREADS];
	static atomic_uchar seen[MC_MSGS];
	pthread_t t[MC_THREADS];
	struct dafs_sge sgl[2];
	struct tfail fail;
	struct buf sb, rb;
	atomic_uint got = 0;
	struct msg_hdr h;
	struct pair p;
	unsigned i, total = 0, busy = 0;
	uint32_t len;
	uint8_t *slot;

	pair_open_at(&p, host, MC_SLOTS, 0);
	buf_init(&rb, &p.b, MC_SLOTS * MC_MAX, DAFS_ACC_LOCAL_WRITE, 0);
	buf_init(&sb, &p.a, (size_t)MC_MSGS * MC_MAX, 0, 0);
	for (i = 0; i < MC_SLOTS; i++)
		post_recv(&p.b, i, &rb, (size_t)i * MC_MAX, MC_MAX);
	tfail_init(&fail);
	for (i = 0; i < MC_THREADS; i++) {
		c[i] = (struct mc_consumer){&p.b, &rb, &got, seen, &fail, 0};
		ck_assert_int_eq(pthread_create(&t[i], NULL, mc_main, &c[i]),
				 0);
	}
	for (i = 0; i < MC_MSGS; i++) {
		slot = sb.p + (size_t)i * MC_MAX;
		len = (i * 131) % (MC_MAX - sizeof(h));
		pattern(slot + sizeof(h), len, i);
		h = (struct msg_hdr){0, i, len, csum(slot + sizeof(h), len)};
		memcpy(slot, &h, sizeof(h));
		sgl[0] = sge_of(&sb, (size_t)i * MC_MAX, sizeof(h));
		sgl[1] = sge_of(&sb, (size_t)i * MC_MAX + sizeof(h), len);
		ck_assert_int_eq(tp->post_send(p.a.ep, i, sgl, 2, 0), 0);
		/* now and then a pause, so the consumers run dry and sleep */
		if (i % 500 == 499)
			sleep_ms(2);
	}
	for (i = 0; i < MC_THREADS; i++) {
		pthread_join(t[i], NULL);
		total += c[i].n;
		busy += c[i].n > 0;
	}
	tfail_check(&fail);
	ck_assert_uint_eq(total, MC_MSGS);
	for (i = 0; i < MC_MSGS; i++)
		ck_assert_uint_eq(seen[i], 1);
	ck_assert_uint_ge(busy, 1);
	expect_none(p.b.cq, 0);
	buf_fini(&sb);
	buf_fini(&rb);
	pair_close(&p);
}
END_TEST

/*
 * Mixed traffic both ways on one connection, the receiving side's waiter
 * now spinning, now asleep, now away (so frames are read by it, by the
 * receive thread, or a bit by each): a sends messages, RDMA WRITEs each
 * announced by a message, and RDMA READs of b; b RDMA READs a. Nothing is
 * lost, reordered or misplaced.
 */
#define MX_OPS 1500
#define MX_MSG 2048 /* receive buffer size */
#define MX_SLOTS 16
#define MX_WMAX 8192  /* largest RDMA WRITE */
#define MX_RMAX 16384 /* largest RDMA READ */
#define MX_RD 4	      /* READ destinations, each side */

enum mx_kind { MX_PLAIN, MX_WROTE, MX_END };

struct mx_msg {
	uint32_t kind, seq, len, sum; /* PLAIN: payload; WROTE: written */
	uint64_t off;		      /* WROTE: where in b's region */
};

struct mx_b {
	struct side *s;
	struct buf *rb, *wr, *dst, *a_src;
	struct tfail *fail;
	unsigned reads, msgs;
};

/* A READ of @len bytes at @off of @src, expected to equal pattern(seed). */
static uint32_t mx_read_len(unsigned k)
{
	return 1 + (k * 7919) % MX_RMAX;
}

static void *mx_b_main(void *arg)
{
	struct mx_b *b = arg;
	unsigned next_seq = 0, posted = 0, done = 0, k;
	struct dafs_sge sge;
	struct mx_msg m;
	struct dafs_wc wc;
	bool end = false;
	uint32_t len;
	uint8_t *buf;
	int err;

	while (!end || done < posted) {
		err = next_wc(b->s->cq, &wc, 2 * TMO_MS, 2 * TMO_MS);
		if (err || wc.status) {
			TFAIL(b->fail, "b: err %d status %d after %u msgs", err,
			      err ? 0 : wc.status, next_seq);
			return NULL;
		}
		if (wc.op == DAFS_WC_RDMA_READ) {
			/* b's READs of a complete in order, with a's bytes */
			k = (unsigned)wc.wr_id;
			len = mx_read_len(k);
			if (k != done ||
			    memcmp(b->dst->p + (k % MX_RD) * MX_RMAX,
				   b->a_src->p + k * 13, len)) {
				TFAIL(b->fail, "b: READ %u of %u wrong", k,
				      done);
				return NULL;
			}
			done++;
			continue;
		}
		buf = b->rb->p + wc.wr_id * MX_MSG;
		memcpy(&m, buf, sizeof(m));
		if (wc.op != DAFS_WC_RECV || m.seq != next_seq) {
			TFAIL(b->fail, "b: op %u seq %u, expected %u", wc.op,
			      m.seq, next_seq);
			return NULL;
		}
		next_seq++;
		if ((m.kind == MX_PLAIN &&
		     (wc.byte_len != sizeof(m) + m.len ||
		      csum(buf + sizeof(m), m.len) != m.sum)) ||
		    (m.kind == MX_WROTE &&
		     csum(b->wr->p + m.off, m.len) != m.sum)) {
			/* an RDMA WRITE is placed before the message
			 * behind it completes */
			TFAIL(b->fail, "b: message %u (kind %u) corrupt", m.seq,
			      m.kind);
			return NULL;
		}
		end = m.kind == MX_END;
		sge = sge_of(b->rb, wc.wr_id * MX_MSG, MX_MSG);
		if (tp->post_recv(b->s->ep, wc.wr_id, &sge)) {
			TFAIL(b->fail, "b: repost failed");
			return NULL;
		}
		/* now and then a READ of a's memory, at most MX_RD out */
		if (!end && m.seq % 5 == 0 && posted - done < MX_RD) {
			k = posted;
			sge = sge_of(b->dst, (k % MX_RD) * MX_RMAX,
				     mx_read_len(k));
			err = tp->rdma_read(
				b->s->ep, k, &sge, raddr_of(b->a_src, k * 13),
				b->a_src->mr->rkey, DAFS_TP_SIGNALED);
			if (err) {
				TFAIL(b->fail, "b: rdma_read: %d", err);
				return NULL;
			}
			posted++;
		}
		/* the waiter wanders off: the receive thread's turn */
		if (m.seq % 7 == 3)
			sleep_ms(m.seq % 3);
	}
	b->reads = done;
	b->msgs = next_seq;
	return NULL;
}

START_TEST(test_mixed_load)
{
	struct buf sa, wa, a_src, a_dst, rb, wr, dst, b_src;
	unsigned i, op, nw = 0, rposted = 0, rdone = 0;
	uint64_t woff = 0;
	struct dafs_sge sgl[2];
	struct tfail fail;
	struct dafs_wc wc;
	struct mx_msg m;
	struct mx_b b;
	struct pair p;
	pthread_t t;
	uint32_t len;

	pair_open_at(&p, host, MX_SLOTS, 0);
	/* a: messages, what it writes, what b reads, where its READs go */
	buf_init(&sa, &p.a, (size_t)(MX_OPS + 1) * MX_MSG, 0, 0);
	buf_init(&wa, &p.a, (size_t)MX_OPS * MX_WMAX, 0, 0);
	buf_init(&a_src, &p.a, MX_RMAX + MX_OPS * 13, DAFS_ACC_REMOTE_READ, 0);
	buf_init(&a_dst, &p.a, MX_RD * MX_RMAX, DAFS_ACC_LOCAL_WRITE, 0);
	pattern(a_src.p, a_src.len, 1);
	/* b: receive slots, what a writes, its READ targets, what a reads */
	buf_init(&rb, &p.b, MX_SLOTS * MX_MSG, DAFS_ACC_LOCAL_WRITE, 0);
	buf_init(&wr, &p.b, (size_t)MX_OPS * MX_WMAX, ACC_RW, 0);
	buf_init(&dst, &p.b, MX_RD * MX_RMAX, DAFS_ACC_LOCAL_WRITE, 0);
	buf_init(&b_src, &p.b, MX_RMAX + MX_OPS * 13, DAFS_ACC_REMOTE_READ, 0);
	pattern(b_src.p, b_src.len, 2);
	for (i = 0; i < MX_SLOTS; i++)
		post_recv(&p.b, i, &rb, (size_t)i * MX_MSG, MX_MSG);

	tfail_init(&fail);
	b = (struct mx_b){&p.b, &rb, &wr, &dst, &a_src, &fail, 0, 0};
	ck_assert_int_eq(pthread_create(&t, NULL, mx_b_main, &b), 0);
	for (i = 0; i <= MX_OPS; i++) {
		op = i == MX_OPS ? 99 : (i * 2654435761u) >> 30;
		m = (struct mx_msg){MX_PLAIN, i, 0, 0, 0};
		if (op == 99) {
			m.kind = MX_END;
		} else if (op == 0) {
			/* an RDMA WRITE, announced by the next message */
			len = 1 + (i * 613) % MX_WMAX;
			pattern(wa.p + woff, len, i);
			sgl[0] = sge_of(&wa, woff, len);
			ck_assert_int_eq(tp->rdma_write(p.a.ep, 0, sgl, 1,
							raddr_of(&wr, woff),
							wr.mr->rkey, 0),
					 0);
			m = (struct mx_msg){MX_WROTE, i, len,
					    csum(wa.p + woff, len), woff};
			woff += len;
			nw++;
		} else if (op == 1) {
			/* a READ of b, at most MX_RD out; reap in order */
			while (rposted - rdone >= MX_RD) {
				wait_wc(p.a.cq, &wc);
				ck_assert_int_eq(wc.status, 0);
				ck_assert_uint_eq(wc.op, DAFS_WC_RDMA_READ);
				ck_assert_uint_eq(wc.wr_id, rdone);
				ck_assert_mem_eq(a_dst.p + (rdone % MX_RD) *
								   MX_RMAX,
						 b_src.p + rdone * 13,
						 mx_read_len(rdone + 1000));
				rdone++;
			}
			sgl[0] = sge_of(&a_dst, (rposted % MX_RD) * MX_RMAX,
					mx_read_len(rposted + 1000));
			ck_assert_int_eq(
				tp->rdma_read(p.a.ep, rposted, sgl,
					      raddr_of(&b_src, rposted * 13),
					      b_src.mr->rkey, DAFS_TP_SIGNALED),
				0);
			rposted++;
		}
		if (m.kind == MX_PLAIN) {
			m.len = (i * 389) % (MX_MSG - sizeof(m));
			pattern(sa.p + (size_t)i * MX_MSG + sizeof(m), m.len,
				i);
			m.sum = csum(sa.p + (size_t)i * MX_MSG + sizeof(m),
				     m.len);
		}
		memcpy(sa.p + (size_t)i * MX_MSG, &m, sizeof(m));
		sgl[0] = sge_of(&sa, (size_t)i * MX_MSG, sizeof(m));
		sgl[1] = sge_of(&sa, (size_t)i * MX_MSG + sizeof(m),
				m.kind == MX_PLAIN ? m.len : 0);
		ck_assert_int_eq(tp->post_send(p.a.ep, i, sgl, 2, 0), 0);
	}
	while (rdone < rposted) {
		wait_wc(p.a.cq, &wc);
		ck_assert_int_eq(wc.status, 0);
		ck_assert_uint_eq(wc.wr_id, rdone);
		ck_assert_mem_eq(a_dst.p + (rdone % MX_RD) * MX_RMAX,
				 b_src.p + rdone * 13,
				 mx_read_len(rdone + 1000));
		rdone++;
	}
	pthread_join(t, NULL);
	tfail_check(&fail);
	ck_assert_uint_eq(b.msgs, MX_OPS + 1);
	ck_assert_uint_gt(nw, 0);
	ck_assert_uint_gt(b.reads, 0);
	expect_none(p.a.cq, 0);
	buf_fini(&sa);
	buf_fini(&wa);
	buf_fini(&a_src);
	buf_fini(&a_dst);
	buf_fini(&rb);
	buf_fini(&wr);
	buf_fini(&dst);
	buf_fini(&b_src);
	pair_close(&p);
}
END_TEST

/*
 * A CQ of workers (a server's handlers, tcp_cq_workers): a worker that
 * leaves with a request wakes nobody when the peer is synchronous, yet a
 * request that arrives while that worker is away long (a slow request) is
 * taken by another within a tick or two, not after the receive thread's
 * 100 ms safety net or the slow one's return: whether the slow request
 * was read by a spinner, or found waiting by a worker back from a short
 * one (M, then SLOW2 right behind it).
 */
#define WK_N 2		/* workers */
#define WK_SLOTS 8	/* receives posted on the workers' side */
#define WK_SYNC 300	/* synchronous round trips */
#define WK_SLOW WK_SYNC /* the ids of the slow requests, and the others */
#define WK_NEXT (WK_SYNC + 1)
#define WK_M (WK_SYNC + 2)
#define WK_SLOW2 (WK_SYNC + 3)
#define WK_NEXT2 (WK_SYNC + 4)
#define WK_IDS (WK_SYNC + 5)
#define WK_SLOW_MS 400
#define WK_M_US 300 /* well under the standby's tick */
#define WK_BOUND_MS 50

struct wk {
	struct side *s;
	struct buf *rb;
	struct buf sb; /* the echo's source */
	atomic_bool *stop;
	_Atomic uint64_t *taken_ms; /* by request id */
	struct tfail *fail;
};

static void *wk_main(void *arg)
{
	struct wk *w = arg;
	struct dafs_sge sge;
	struct dafs_wc wc;
	uint32_t id;
	int n;

	while (!atomic_load(w->stop)) {
		n = tp->poll_cq(w->s->cq, &wc, 1);
		if (n == 0) {
			/* no timeout: a word lost would hang here, not hide
			 * behind a timeout's wake-up */
			tp->wait_cq(w->s->cq, -1);
			continue;
		}
		if (n < 0 || wc.status || wc.op != DAFS_WC_RECV ||
		    wc.byte_len != sizeof(id)) {
			TFAIL(w->fail, "worker: n %d status %d op %u len %u", n,
			      wc.status, wc.op, wc.byte_len);
			return NULL;
		}
		memcpy(&id, w->rb->p + wc.wr_id * sizeof(id), sizeof(id));
		if (id >= WK_IDS) {
			TFAIL(w->fail, "worker: id %u", id);
			return NULL;
		}
		atomic_store(&w->taken_ms[id], now_ms());
		if (id == WK_SLOW || id == WK_SLOW2)
			sleep_ms(WK_SLOW_MS);
		if (id == WK_M)
			nanosleep(&(struct timespec){0, WK_M_US * 1000L}, NULL);
		sge = sge_of(w->rb, wc.wr_id * sizeof(id), sizeof(id));
		memcpy(w->sb.p, &id, sizeof(id));
		if (tp->post_recv(w->s->ep, wc.wr_id, &sge) ||
		    (sge = sge_of(&w->sb, 0, sizeof(id)),
		     tp->post_send(w->s->ep, 0, &sge, 1, 0))) {
			TFAIL(w->fail, "worker: repost or echo failed");
			return NULL;
		}
	}
	return NULL;
}

/* The echo in a's receive @wr_id (at 8 * @wr_id in @ra) says @id. */
static void wk_echo(struct pair *p, struct buf *ra, uint64_t wr_id,
		    uint32_t id)
{
	struct dafs_wc wc;
	uint32_t got;

	do
		wait_wc(p->a.cq, &wc);
	while (wc.op != DAFS_WC_RECV);
	ck_assert_int_eq(wc.status, 0);
	ck_assert_uint_eq(wc.wr_id, wr_id);
	memcpy(&got, ra->p + 8 * wr_id, sizeof(got));
	ck_assert_uint_eq(got, id);
}

/* Send request @id from a and wait for its echo. */
static void wk_call(struct pair *p, struct buf *sa, struct buf *ra,
		    uint32_t id)
{
	post_recv(&p->a, 0, ra, 0, sizeof(id));
	memcpy(sa->p, &id, sizeof(id));
	send_buf(&p->a, 0, sa, 0, sizeof(id), 0);
	wk_echo(p, ra, 0, id);
}

START_TEST(test_workers_standby)
{
	static _Atomic uint64_t taken[WK_IDS];
	const char *spin = getenv("DAFS_SPIN_US");
	struct tcp_cq_stats s0, s1, s2;
	atomic_bool stop = false;
	struct wk w[WK_N];
	pthread_t t[WK_N];
	struct buf sa, ra, rb;
	struct tfail fail;
	uint64_t t0, t1;
	struct pair p;
	uint32_t i;

	pair_open(&p);
	tp->cq_workers(p.b.cq);
	buf_init(&sa, &p.a, 64, 0, 0);
	buf_init(&ra, &p.a, 64, DAFS_ACC_LOCAL_WRITE, 0);
	buf_init(&rb, &p.b, WK_SLOTS * sizeof(i), DAFS_ACC_LOCAL_WRITE, 0);
	for (i = 0; i < WK_SLOTS; i++)
		post_recv(&p.b, i, &rb, i * sizeof(i), sizeof(i));
	tfail_init(&fail);
	for (i = 0; i < WK_N; i++) {
		w[i] = (struct wk){&p.b, &rb, {0}, &stop, taken, &fail};
		buf_init(&w[i].sb, &p.b, 64, 0, 0);
		ck_assert_int_eq(pthread_create(&t[i], NULL, wk_main, &w[i]),
				 0);
	}
	sleep_ms(5); /* both asleep: one of them the standby */

	/* a synchronous peer: handed over lazily (unless nobody spins) */
	tcp_cq_stats(p.b.cq, &s0);
	for (i = 0; i < WK_SYNC; i++)
		wk_call(&p, &sa, &ra, i);
	tcp_cq_stats(p.b.cq, &s1);
	if (!spin || strcmp(spin, "0"))
		ck_assert_uint_gt(s1.lazy, s0.lazy);

	/* a slow request, and another behind it; receives complete in the
	 * order posted, so the first echo lands in the first one posted */
	post_recv(&p.a, 0, &ra, 0, sizeof(i));
	memcpy(sa.p, &(uint32_t){WK_SLOW}, sizeof(i));
	send_buf(&p.a, 0, &sa, 0, sizeof(i), 0);
	t0 = now_ms();
	while (!atomic_load(&taken[WK_SLOW])) {
		ck_assert_msg(now_ms() < t0 + TMO_MS, "slow request not taken");
		sleep_ms(1);
	}
	sleep_ms(5);
	t0 = now_ms();
	post_recv(&p.a, 1, &ra, 8, sizeof(i));
	memcpy(sa.p, &(uint32_t){WK_NEXT}, sizeof(i));
	send_buf(&p.a, 0, &sa, 0, sizeof(i), 0);
	wk_echo(&p, &ra, 0, WK_NEXT);
	t1 = now_ms();
	tcp_cq_stats(p.b.cq, &s2);
	ck_assert_msg(t1 - t0 < WK_BOUND_MS,
		      "request behind a slow one answered after %llu ms "
		      "(lazy %llu woken %llu standby %llu)",
		      (unsigned long long)(t1 - t0),
		      (unsigned long long)s2.lazy,
		      (unsigned long long)s2.woken,
		      (unsigned long long)s2.standby);
	wk_echo(&p, &ra, 1, WK_SLOW);

	/* back to a synchronous peer (after a pause in which every worker
	 * stops spinning), then M and SLOW2 back to back: the worker that
	 * took M finds SLOW2 waiting when it comes back */
	sleep_ms(5);
	for (i = 0; i < 50; i++)
		wk_call(&p, &sa, &ra, i);
	post_recv(&p.a, 0, &ra, 0, sizeof(i));
	post_recv(&p.a, 1, &ra, 8, sizeof(i));
	post_recv(&p.a, 2, &ra, 16, sizeof(i));
	memcpy(sa.p, &(uint32_t){WK_M}, sizeof(i));
	send_buf(&p.a, 0, &sa, 0, sizeof(i), 0);
	memcpy(sa.p, &(uint32_t){WK_SLOW2}, sizeof(i));
	send_buf(&p.a, 0, &sa, 0, sizeof(i), 0);
	wk_echo(&p, &ra, 0, WK_M);
	t0 = now_ms();
	while (!atomic_load(&taken[WK_SLOW2])) {
		ck_assert_msg(now_ms() < t0 + TMO_MS, "SLOW2 not taken");
		sleep_ms(1);
	}
	sleep_ms(5);
	t0 = now_ms();
	memcpy(sa.p, &(uint32_t){WK_NEXT2}, sizeof(i));
	send_buf(&p.a, 0, &sa, 0, sizeof(i), 0);
	wk_echo(&p, &ra, 1, WK_NEXT2);
	t1 = now_ms();
	tcp_cq_stats(p.b.cq, &s2);
	ck_assert_msg(t1 - t0 < WK_BOUND_MS,
		      "request behind SLOW2 answered after %llu ms "
		      "(lazy %llu woken %llu standby %llu)",
		      (unsigned long long)(t1 - t0),
		      (unsigned long long)s2.lazy, (unsigned long long)s2.woken,
		      (unsigned long long)s2.standby);
	wk_echo(&p, &ra, 2, WK_SLOW2);
	atomic_store(&stop, true);
	tp->cq_kick(p.b.cq);
	for (i = 0; i < WK_N; i++)
		pthread_join(t[i], NULL);
	tfail_check(&fail);
	for (i = 0; i < WK_N; i++)
		buf_fini(&w[i].sb);
	buf_fini(&sa);
	buf_fini(&ra);
	buf_fini(&rb);
	pair_close(&p);
}
END_TEST

/* ---- the verbs transport's own ---- */

/* Far more unsignaled sends than the send queue holds, and nobody polls
 * the sender's CQ: the transport signals one now and then by itself and
 * takes those completions when the queue fills, without showing them. */
START_TEST(test_verbs_unsignaled_flood)
{
	const unsigned total = 40 * 64;
	struct buf sb, rb;
	struct dafs_wc wc;
	struct pair p;
	unsigned i, got = 0;
	uint32_t v;

	pair_open(&p); /* max_send 64 */
	buf_init(&sb, &p.a, total * 4, 0, 0);
	buf_init(&rb, &p.b, 64 * 4, DAFS_ACC_LOCAL_WRITE, 0);
	for (i = 0; i < 64; i++)
		post_recv(&p.b, i, &rb, i * 4, 4);
	for (i = 0; i < total; i++) {
		memcpy(sb.p + i * 4, &i, 4);
		send_buf(&p.a, 1000 + i, &sb, i * 4, 4, 0);
		/* keep b's receives posted (rnr would only slow it down) */
		while (tp->poll_cq(p.b.cq, &wc, 1) == 1) {
			ck_assert_int_eq(wc.status, 0);
			memcpy(&v, rb.p + wc.wr_id * 4, 4);
			ck_assert_uint_eq(v, got);
			got++;
			post_recv(&p.b, wc.wr_id, &rb, wc.wr_id * 4, 4);
		}
	}
	while (got < total) {
		wait_wc(p.b.cq, &wc);
		ck_assert_int_eq(wc.status, 0);
		memcpy(&v, rb.p + wc.wr_id * 4, 4);
		ck_assert_uint_eq(v, got);
		got++;
		post_recv(&p.b, wc.wr_id, &rb, wc.wr_id * 4, 4);
	}
	/* one signaled send at the end: the only completion a sees */
	send_buf(&p.a, 7, &sb, 0, 4, DAFS_TP_SIGNALED);
	expect_wc(p.a.cq, p.a.ep, 7, DAFS_WC_SEND, 0);
	expect_none(p.a.cq, 20);
	buf_fini(&sb);
	buf_fini(&rb);
	pair_close(&p);
}
END_TEST

/* RDMA WRITE from a file is not offered: the server falls back to a
 * read into a registered buffer and rdma_write. */
START_TEST(test_verbs_write_file_unsupported)
{
	struct pair p;
	struct buf t;
	int fd;

	pair_open(&p);
	buf_init(&t, &p.b, 64, ACC_RW, 0);
	fd = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(tp->rdma_write_file(p.a.ep, 1, fd, 0, 16,
					      raddr_of(&t, 0), t.mr->rkey,
					      DAFS_TP_SIGNALED),
			 -EOPNOTSUPP);
	close(fd);
	expect_none(p.a.cq, 0);
	buf_fini(&t);
	pair_close(&p);
}
END_TEST

/* A device that is not there: the domain cannot bind to it. */
START_TEST(test_verbs_no_such_device)
{
	struct dafs_domain *dom;

	setenv("DAFS_RDMA_DEVICE", "no-such-device", 1);
	ck_assert_int_eq(tp->domain_new(&dom), -ENODEV);
	unsetenv("DAFS_RDMA_DEVICE");
}
END_TEST

/* Memory registered, CQs made and a receive buffer ready before any
 * connection (what the client and server do), and CQs shared by two
 * endpoints (a server's): both connections work. */
START_TEST(test_verbs_two_eps_shared_cq)
{
	struct dafs_ep_attr aa, ba;
	struct dafs_ep *a2, *b2;
	struct buf sb, rb;
	struct dafs_wc wc;
	struct dafs_sge sge;
	unsigned seen = 0;
	struct pair p;
	int i;

	side_init(&p.a);
	side_init(&p.b);
	buf_init(&sb, &p.a, 64, 0, 'x');
	buf_init(&rb, &p.b, 128, DAFS_ACC_LOCAL_WRITE, 0);
	ck_assert_int_eq(tp->listen(p.b.dom, host, 0, &p.l), 0);
	aa = attr_of(&p.a, 8, 0);
	ba = attr_of(&p.b, 8, 0);
	connect_accept(p.a.dom, host, &aa, &p.a.ep, p.l, &ba, &p.b.ep);
	connect_accept(p.a.dom, host, &aa, &a2, p.l, &ba, &b2);
	post_recv(&p.b, 1, &rb, 0, 64);
	sge = sge_of(&rb, 64, 64);
	ck_assert_int_eq(tp->post_recv(b2, 2, &sge), 0);
	send_buf(&p.a, 0, &sb, 0, 8, 0);
	sge = sge_of(&sb, 0, 16);
	ck_assert_int_eq(tp->post_send(a2, 0, &sge, 1, 0), 0);
	for (i = 0; i < 2; i++) {
		wait_wc(p.b.cq, &wc);
		ck_assert_int_eq(wc.status, 0);
		ck_assert_ptr_eq(wc.ep, wc.wr_id == 1 ? p.b.ep : b2);
		ck_assert_uint_eq(wc.byte_len, wc.wr_id == 1 ? 8 : 16);
		seen |= 1u << wc.wr_id;
	}
	ck_assert_uint_eq(seen, 6);
	tp->ep_free(a2);
	tp->ep_free(b2);
	buf_fini(&sb);
	buf_fini(&rb);
	pair_close(&p);
}
END_TEST

static Suite *transport_suite(void)
{
	Suite *s = suite_create("transport");
	TCase *tc = tcase_create("common");

	/* the interface's semantics: every transport */
	tcase_add_test(tc, test_send_recv_order);
	tcase_add_test(tc, test_gather_send);
	tcase_add_test(tc, test_selective_signaling);
	tcase_add_test(tc, test_inline_send);
	tcase_add_test(tc, test_rdma_write_then_send);
	tcase_add_test(tc, test_rdma_read);
	tcase_add_test(tc, test_rdma_large_cross);
	tcase_add_test(tc, test_completion_order_behind_read);
	tcase_add_loop_test(tc, test_bad_remote_op, 0, BAD_NCASES);
	tcase_add_test(tc, test_oversized_send);
	tcase_add_test(tc, test_flush_on_peer_close);
	tcase_add_test(tc, test_flush_outstanding_read);
	tcase_add_test(tc, test_disconnect);
	tcase_add_test(tc, test_recv_buffer_deregistered);
	tcase_add_test(tc, test_recv_queue_full);
	tcase_add_test(tc, test_wait_cq_timeout);
	tcase_add_test(tc, test_cq_kick);
	tcase_add_test(tc, test_cq_grows);
	tcase_add_test(tc, test_ep_free_purges_cq);
	tcase_add_test(tc, test_listener_close_unblocks_accept);
	tcase_add_test(tc, test_connect_refused);
	tcase_add_test(tc, test_concurrent_senders);
	tcase_add_test(tc, test_many_consumers);
	tcase_add_test(tc, test_mixed_load);
	suite_add_tcase(s, tc);

	if (verbs) {
		tc = tcase_create("verbs");
		tcase_add_test(tc, test_verbs_unsignaled_flood);
		tcase_add_test(tc, test_verbs_write_file_unsupported);
		tcase_add_test(tc, test_verbs_no_such_device);
		tcase_add_test(tc, test_verbs_two_eps_shared_cq);
		suite_add_tcase(s, tc);
		return s;
	}

	/* TCP only: local key checks at post time, names, its wire format,
	 * RDMA WRITE from a file, its receive threads (tcp_i.h hooks) */
	tc = tcase_create("tcp");
	tcase_add_test(tc, test_stale_rkey);
	tcase_add_test(tc, test_local_validation);
	tcase_add_loop_test(tc, test_hosts, 0, 3);
	tcase_add_loop_test(tc, test_raw_peer, 0, RAW_NCASES);
	tcase_add_test(tc, test_rdma_write_file);
	tcase_add_test(tc, test_rdma_write_file_shrunk);
	tcase_add_loop_test(tc, test_rdma_write_file_refused, 0, 2);
	tcase_add_test(tc, test_rdma_write_file_validation);
	tcase_add_test(tc, test_rdma_write_file_wire);
	tcase_add_test(tc, test_rdma_write_file_thread_exit);
	tcase_add_test(tc, test_consumer_reads_own_reply);
	tcase_add_test(tc, test_workers_standby);
	tcase_add_test(tc, test_read_answered_unpolled);
	tcase_add_test(tc, test_stalled_send_read_by_post_recv);
	tcase_add_loop_test(tc, test_flush_mid_frame, 0, MID_NCASES);
	tcase_add_test(tc, test_many_endpoints_one_cq);
	suite_add_tcase(s, tc);
	return s;
}

/* An RDMA device the verbs transport can use: one in sysfs, and a domain
 * that binds to it. */
static bool rdma_usable(void)
{
	struct dafs_domain *dom;
	struct dirent *e;
	bool any = false;
	DIR *d;

	d = opendir("/sys/class/infiniband");
	if (!d)
		return false;
	while ((e = readdir(d)))
		any |= e->d_name[0] != '.';
	closedir(d);
	if (!any || tp->domain_new(&dom))
		return false;
	tp->domain_free(dom);
	return true;
}

int main(void)
{
	const char *t = getenv("DAFS_TEST_TRANSPORT");
	const char *h = getenv("DAFS_TEST_HOST");
	SRunner *sr;
	int failed;

	if (t && *t) {
		tp = dafs_tp_find(t);
		if (!tp) {
			fprintf(stderr, "DAFS_TEST_TRANSPORT=%s: unknown\n", t);
			return EXIT_FAILURE;
		}
	}
	if (h && *h)
		host = h;
	verbs = tp == &dafs_tp_verbs;
	/* (the check in a child: the runner itself keeps no verbs state,
	 * so forked tests start clean) */
	if (verbs) {
		pid_t pid = fork();
		int st = 0;

		if (pid == 0)
			_exit(rdma_usable() ? 0 : 77);
		if (pid < 0 || waitpid(pid, &st, 0) != pid || !WIFEXITED(st) ||
		    WEXITSTATUS(st)) {
			printf("1..0 # SKIP no usable RDMA device "
			       "(scripts/rdma-tests.sh runs this in a VM)\n");
			return 77;
		}
	}
	sr = srunner_create(transport_suite());
	srunner_run_all(sr, CK_ENV);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
