/*
 * transport_i.h - the transport interface: one verbs-shaped ops table, with
 * a TCP implementation (tcp.c) and an RDMA verbs one (verbs.c, or its stub).
 *
 * Objects, as in verbs:
 *   domain   - a protection domain: owns memory regions and their keys;
 *   mr       - a registered region: local key, remote key, access rights;
 *   cq       - a completion queue; waitable;
 *   listener - a passive endpoint that accepts connections;
 *   ep       - a connected endpoint (an RC queue pair): a receive queue of
 *              posted buffers, sends, one-sided RDMA WRITE and READ.
 *
 * Semantics every implementation keeps:
 *   - a SEND is delivered into the next posted receive buffer of the peer, in
 *     order; a message larger than that buffer is an error that breaks the
 *     connection (as a verbs local length error does);
 *   - an RDMA WRITE followed by a SEND on the same ep is placed before the
 *     SEND completes at the peer;
 *   - RDMA WRITE and READ name (remote address, remote key); the peer's
 *     transport checks the key, the access right and the bounds, and a bad
 *     one breaks the connection without touching memory;
 *   - completions: a RECV completion for every delivered message; a send,
 *     write or read completion only when posted with DAFS_TP_SIGNALED, except
 *     errors, which always complete; when a connection breaks, every posted
 *     receive and outstanding operation completes with a negative status
 *     (flush), and later posts return -ENOTCONN.
 *
 * All functions return 0 or a negative errno; conversion from rdma-core's or
 * the socket API's conventions happens inside the implementation only.
 * An implementation that lacks an op gets dafs_tp_stub_*, returning
 * -EOPNOTSUPP, so callers never test for NULL.
 */
#ifndef DAFS_TRANSPORT_I_H
#define DAFS_TRANSPORT_I_H

#include <stddef.h>
#include <stdint.h>

struct dafs_tp_ops;

/* Base objects: each implementation embeds one first and downcasts with
 * container_of. Upper layers call through ->ops. */
struct dafs_domain {
	const struct dafs_tp_ops *ops;
};
struct dafs_cq {
	const struct dafs_tp_ops *ops;
};
struct dafs_listener {
	const struct dafs_tp_ops *ops;
};
struct dafs_ep {
	const struct dafs_tp_ops *ops;
	void *ctx; /* the owner's (dafs_ep_attr.ctx) */
};

#ifndef container_of
#define container_of(ptr, type, member)                                        \
	((type *)((char *)(ptr)-offsetof(type, member)))
#endif

/* dafs_mr access bits */
#define DAFS_ACC_LOCAL_WRITE 0x1
#define DAFS_ACC_REMOTE_WRITE 0x2 /* peer may RDMA WRITE into it */
#define DAFS_ACC_REMOTE_READ 0x4  /* peer may RDMA READ from it */

struct dafs_mr {
	void *addr;
	size_t len;
	uint32_t lkey, rkey;
	unsigned access;
	struct dafs_domain *dom;
};

struct dafs_sge {
	void *addr;
	uint32_t len;
	uint32_t lkey;
};

/* post flags */
#define DAFS_TP_SIGNALED 0x1 /* ask for a completion */
#define DAFS_TP_INLINE 0x2   /* small payload copied at post time */

enum dafs_wc_op {
	DAFS_WC_RECV = 1,
	DAFS_WC_SEND,
	DAFS_WC_RDMA_WRITE,
	DAFS_WC_RDMA_READ,
};

struct dafs_wc {
	uint64_t wr_id;
	int status; /* 0 or negative errno (-ECONNRESET on flush) */
	uint8_t op; /* enum dafs_wc_op */
	uint32_t byte_len; /* RECV: message length */
	struct dafs_ep *ep;
};

struct dafs_ep_attr {
	struct dafs_cq *send_cq; /* send, write, read completions */
	struct dafs_cq *recv_cq; /* receive completions */
	uint32_t max_send;       /* outstanding sends (verbs SQ depth) */
	uint32_t max_recv;       /* posted receives (verbs RQ depth) */
	uint32_t max_inline;     /* largest DAFS_TP_INLINE payload */
	void *ctx;               /* the owner's, returned by dafs_ep_ctx() */
};

struct dafs_tp_ops {
	const char *name; /* "tcp", "rdma" */
	/*
	 * 1 if post_send and rdma_write have taken the bytes of their gather
	 * list when they return, so its buffers may be written again at once
	 * (tcp sends them before returning); 0 if the buffers must stay as
	 * they are until the operation completes (verbs: the device reads
	 * them later), which for an unsignaled one its caller learns only
	 * from a later signaled op on the same ep.
	 */
	int post_copies;

	int (*domain_new)(struct dafs_domain **dom);
	void (*domain_free)(struct dafs_domain *dom);
	int (*reg_mr)(struct dafs_domain *dom, void *addr, size_t len,
		      unsigned access, struct dafs_mr **mr);
	int (*dereg_mr)(struct dafs_mr *mr);

	int (*cq_new)(struct dafs_domain *dom, uint32_t depth,
		      struct dafs_cq **cq);
	void (*cq_free)(struct dafs_cq *cq);
	/* Reap up to @n completions; returns how many (0 if none). */
	int (*poll_cq)(struct dafs_cq *cq, struct dafs_wc *wc, int n);
	/* Block until the CQ may have completions, or @timeout_ms passes
	 * (-1: no limit). Returns 0, or -ETIMEDOUT. Spurious returns allowed. */
	int (*wait_cq)(struct dafs_cq *cq, int timeout_ms);
	/* Wake every waiter of @cq (for shutdown). */
	void (*cq_kick)(struct dafs_cq *cq);
	/*
	 * Optional (NULL: nothing to say). @cq's waiters are a pool of
	 * workers, each back in wait_cq as soon as it has handled what it
	 * took (a server's handlers): the transport may leave a sleeper
	 * asleep when one leaves with a completion, as long as it still
	 * reads what arrives should that one be away long.
	 */
	void (*cq_workers)(struct dafs_cq *cq);

	/* Listen on @host:@port ("127.0.0.1", "::1", ...). @port 0 picks one;
	 * dafs_listener_port() tells which. */
	int (*listen)(struct dafs_domain *dom, const char *host, uint16_t port,
		      struct dafs_listener **l);
	/* Wait for the next connection; -ECANCELED after listener_close. */
	int (*accept)(struct dafs_listener *l, const struct dafs_ep_attr *attr,
		      struct dafs_ep **ep);
	uint16_t (*listener_port)(struct dafs_listener *l);
	/* Stop: a blocked accept returns -ECANCELED; then frees @l. */
	void (*listener_close)(struct dafs_listener *l);

	int (*connect)(struct dafs_domain *dom, const char *host, uint16_t port,
		       const struct dafs_ep_attr *attr, struct dafs_ep **ep);
	/* Break the connection (flushing as described above) but keep @ep. */
	void (*disconnect)(struct dafs_ep *ep);
	/* Disconnect if needed and free @ep; no completion for @ep may be
	 * reaped after this returns. */
	void (*ep_free)(struct dafs_ep *ep);

	int (*post_recv)(struct dafs_ep *ep, uint64_t wr_id,
			 const struct dafs_sge *sge);
	int (*post_send)(struct dafs_ep *ep, uint64_t wr_id,
			 const struct dafs_sge *sgl, int nsge, unsigned flags);
	int (*rdma_write)(struct dafs_ep *ep, uint64_t wr_id,
			  const struct dafs_sge *sgl, int nsge, uint64_t raddr,
			  uint32_t rkey, unsigned flags);
	int (*rdma_read)(struct dafs_ep *ep, uint64_t wr_id,
			 const struct dafs_sge *sge, uint64_t raddr,
			 uint32_t rkey, unsigned flags);
	/*
	 * An RDMA WRITE whose payload is the bytes [@off, @off + @len) of
	 * the file @fd instead of a gather list, so a server can answer a
	 * read from its page cache without copying the data into a
	 * registered buffer first. Everything else is as rdma_write with one
	 * SGE: the peer checks (@rkey, @raddr, @len), a following SEND on
	 * @ep is placed after it, it completes only if DAFS_TP_SIGNALED
	 * (DAFS_TP_INLINE is -EINVAL: the data is not in memory), errors
	 * always complete.
	 *
	 * @fd: a regular file open for reading, without O_DIRECT; borrowed
	 * for the call only (an implementation reads it before returning).
	 * The caller checked that the bytes exist. If the file shrinks
	 * meanwhile, the peer still gets exactly @len bytes, zeros in place
	 * of the missing ones (the frame promised @len; the stream stays
	 * usable), and the call returns 0. An implementation may read part
	 * of the file before it sends anything: a read error then fails the
	 * call with nothing posted; one after the frame has begun breaks the
	 * connection and completes this write with the file's error.
	 *
	 * Returns 0 (posted), -EINVAL (bad flags; @off + @len beyond
	 * INT64_MAX; @fd not a regular file or opened O_DIRECT), -EBADF
	 * (@fd not open for reading), -ENOTCONN (connection broken),
	 * -EOPNOTSUPP (the transport cannot send from a file), another
	 * negative errno (the file's read error, or no resources for the
	 * transfer, such as -EMFILE). Whatever the error, nothing was
	 * posted, and the caller can read the data into a registered buffer
	 * and rdma_write it instead.
	 */
	int (*rdma_write_file)(struct dafs_ep *ep, uint64_t wr_id, int fd,
			       uint64_t off, uint32_t len, uint64_t raddr,
			       uint32_t rkey, unsigned flags);
};

/* Implementations. dafs_tp_verbs is the stub table without rdma-core. */
extern const struct dafs_tp_ops dafs_tp_tcp;
extern const struct dafs_tp_ops dafs_tp_verbs;

/* Find a transport by URL scheme ("tcp", "rdma"); NULL if unknown. */
const struct dafs_tp_ops *dafs_tp_find(const char *scheme);

/* Stubs for ops an implementation lacks (transport.c); each returns
 * -EOPNOTSUPP or does nothing. */
int dafs_tp_stub_domain_new(struct dafs_domain **dom);
void dafs_tp_stub_domain_free(struct dafs_domain *dom);
void dafs_tp_stub_cq_free(struct dafs_cq *cq);
void dafs_tp_stub_cq_kick(struct dafs_cq *cq);
void dafs_tp_stub_listener_close(struct dafs_listener *l);
void dafs_tp_stub_disconnect(struct dafs_ep *ep);
void dafs_tp_stub_ep_free(struct dafs_ep *ep);
int dafs_tp_stub_reg_mr(struct dafs_domain *dom, void *addr, size_t len,
			unsigned access, struct dafs_mr **mr);
int dafs_tp_stub_dereg_mr(struct dafs_mr *mr);
int dafs_tp_stub_cq_new(struct dafs_domain *dom, uint32_t depth,
			struct dafs_cq **cq);
int dafs_tp_stub_poll_cq(struct dafs_cq *cq, struct dafs_wc *wc, int n);
int dafs_tp_stub_wait_cq(struct dafs_cq *cq, int timeout_ms);
int dafs_tp_stub_listen(struct dafs_domain *dom, const char *host,
			uint16_t port, struct dafs_listener **l);
int dafs_tp_stub_accept(struct dafs_listener *l,
			const struct dafs_ep_attr *attr, struct dafs_ep **ep);
uint16_t dafs_tp_stub_listener_port(struct dafs_listener *l);
int dafs_tp_stub_connect(struct dafs_domain *dom, const char *host,
			 uint16_t port, const struct dafs_ep_attr *attr,
			 struct dafs_ep **ep);
int dafs_tp_stub_post_recv(struct dafs_ep *ep, uint64_t wr_id,
			   const struct dafs_sge *sge);
int dafs_tp_stub_post_send(struct dafs_ep *ep, uint64_t wr_id,
			   const struct dafs_sge *sgl, int nsge, unsigned flags);
int dafs_tp_stub_rdma_write(struct dafs_ep *ep, uint64_t wr_id,
			    const struct dafs_sge *sgl, int nsge,
			    uint64_t raddr, uint32_t rkey, unsigned flags);
int dafs_tp_stub_rdma_read(struct dafs_ep *ep, uint64_t wr_id,
			   const struct dafs_sge *sge, uint64_t raddr,
			   uint32_t rkey, unsigned flags);
int dafs_tp_stub_rdma_write_file(struct dafs_ep *ep, uint64_t wr_id, int fd,
				 uint64_t off, uint32_t len, uint64_t raddr,
				 uint32_t rkey, unsigned flags);

#endif /* DAFS_TRANSPORT_I_H */
