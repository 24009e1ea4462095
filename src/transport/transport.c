/*
 * transport.c - transport lookup by URL scheme and the -EOPNOTSUPP stubs
 * that stand in for ops an implementation lacks.
 */
#include <errno.h>
#include <string.h>

#include "transport_i.h"

const struct dafs_tp_ops *dafs_tp_find(const char *scheme)
{
	if (!strcmp(scheme, "tcp"))
		return &dafs_tp_tcp;
	if (!strcmp(scheme, "rdma"))
		return &dafs_tp_verbs;
	return NULL;
}

int dafs_tp_stub_domain_new(struct dafs_domain **dom)
{
	(void)dom;
	return -EOPNOTSUPP;
}

void dafs_tp_stub_domain_free(struct dafs_domain *dom)
{
	(void)dom;
}

int dafs_tp_stub_reg_mr(struct dafs_domain *dom, void *addr, size_t len,
			unsigned access, struct dafs_mr **mr)
{
	(void)dom, (void)addr, (void)len, (void)access, (void)mr;
	return -EOPNOTSUPP;
}

int dafs_tp_stub_dereg_mr(struct dafs_mr *mr)
{
	(void)mr;
	return -EOPNOTSUPP;
}

int dafs_tp_stub_cq_new(struct dafs_domain *dom, uint32_t depth,
			struct dafs_cq **cq)
{
	(void)dom, (void)depth, (void)cq;
	return -EOPNOTSUPP;
}

void dafs_tp_stub_cq_free(struct dafs_cq *cq)
{
	(void)cq;
}

int dafs_tp_stub_poll_cq(struct dafs_cq *cq, struct dafs_wc *wc, int n)
{
	(void)cq, (void)wc, (void)n;
	return -EOPNOTSUPP;
}

int dafs_tp_stub_wait_cq(struct dafs_cq *cq, int timeout_ms)
{
	(void)cq, (void)timeout_ms;
	return -EOPNOTSUPP;
}

void dafs_tp_stub_cq_kick(struct dafs_cq *cq)
{
	(void)cq;
}

int dafs_tp_stub_listen(struct dafs_domain *dom, const char *host,
			uint16_t port, struct dafs_listener **l)
{
	(void)dom, (void)host, (void)port, (void)l;
	return -EOPNOTSUPP;
}

int dafs_tp_stub_accept(struct dafs_listener *l,
			const struct dafs_ep_attr *attr, struct dafs_ep **ep)
{
	(void)l, (void)attr, (void)ep;
	return -EOPNOTSUPP;
}

uint16_t dafs_tp_stub_listener_port(struct dafs_listener *l)
{
	(void)l;
	return 0;
}

void dafs_tp_stub_listener_close(struct dafs_listener *l)
{
	(void)l;
}

int dafs_tp_stub_connect(struct dafs_domain *dom, const char *host,
			 uint16_t port, const struct dafs_ep_attr *attr,
			 struct dafs_ep **ep)
{
	(void)dom, (void)host, (void)port, (void)attr, (void)ep;
	return -EOPNOTSUPP;
}

void dafs_tp_stub_disconnect(struct dafs_ep *ep)
{
	(void)ep;
}

void dafs_tp_stub_ep_free(struct dafs_ep *ep)
{
	(void)ep;
}

int dafs_tp_stub_post_recv(struct dafs_ep *ep, uint64_t wr_id,
			   const struct dafs_sge *sge)
{
	(void)ep, (void)wr_id, (void)sge;
	return -EOPNOTSUPP;
}

int dafs_tp_stub_post_send(struct dafs_ep *ep, uint64_t wr_id,
			   const struct dafs_sge *sgl, int nsge, unsigned flags)
{
	(void)ep, (void)wr_id, (void)sgl, (void)nsge, (void)flags;
	return -EOPNOTSUPP;
}

int dafs_tp_stub_rdma_write(struct dafs_ep *ep, uint64_t wr_id,
			    const struct dafs_sge *sgl, int nsge,
			    uint64_t raddr, uint32_t rkey, unsigned flags)
{
	(void)ep, (void)wr_id, (void)sgl, (void)nsge, (void)raddr, (void)rkey;
	(void)flags;
	return -EOPNOTSUPP;
}

int dafs_tp_stub_rdma_read(struct dafs_ep *ep, uint64_t wr_id,
			   const struct dafs_sge *sge, uint64_t raddr,
			   uint32_t rkey, unsigned flags)
{
	(void)ep, (void)wr_id, (void)sge, (void)raddr, (void)rkey, (void)flags;
	return -EOPNOTSUPP;
}

int dafs_tp_stub_rdma_write_file(struct dafs_ep *ep, uint64_t wr_id, int fd,
				 uint64_t off, uint32_t len, uint64_t raddr,
				 uint32_t rkey, unsigned flags)
{
	(void)ep, (void)wr_id, (void)fd, (void)off, (void)len, (void)raddr;
	(void)rkey, (void)flags;
	return -EOPNOTSUPP;
}
