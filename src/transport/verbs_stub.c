/*
 * verbs_stub.c - stands in for verbs.c when rdma-core is not found: every op
 * returns -EOPNOTSUPP, so "rdma://" URLs fail with a clear error.
 */
#include "transport_i.h"

const struct dafs_tp_ops dafs_tp_verbs = {
	.name = "rdma",
	.accept = dafs_tp_stub_accept,
	.connect = dafs_tp_stub_connect,
	.cq_free = dafs_tp_stub_cq_free,
	.cq_kick = dafs_tp_stub_cq_kick,
	.cq_new = dafs_tp_stub_cq_new,
	.dereg_mr = dafs_tp_stub_dereg_mr,
	.disconnect = dafs_tp_stub_disconnect,
	.domain_free = dafs_tp_stub_domain_free,
	.domain_new = dafs_tp_stub_domain_new,
	.ep_free = dafs_tp_stub_ep_free,
	.listen = dafs_tp_stub_listen,
	.listener_close = dafs_tp_stub_listener_close,
	.listener_port = dafs_tp_stub_listener_port,
	.poll_cq = dafs_tp_stub_poll_cq,
	.post_recv = dafs_tp_stub_post_recv,
	.post_send = dafs_tp_stub_post_send,
	.rdma_read = dafs_tp_stub_rdma_read,
	.rdma_write = dafs_tp_stub_rdma_write,
	.rdma_write_file = dafs_tp_stub_rdma_write_file,
	.reg_mr = dafs_tp_stub_reg_mr,
	.wait_cq = dafs_tp_stub_wait_cq,
};
