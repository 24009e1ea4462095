/*
 * bufpool_i.h - dafs-fuse's I/O buffers: one region registered once with
 * the libdafs session, cut into one buffer per FUSE worker thread.
 *
 * A read lands in the calling thread's buffer straight from the server (an
 * RDMA WRITE, or the TCP transport's tagged placement) and goes from there
 * to the kernel; a write is gathered into it from /dev/fuse. Registration
 * pins memory and programs the NIC, so it happens once, at mount, never per
 * request. A thread takes a buffer on its first request and gives it back
 * when it exits (a thread-specific key's destructor). Should more threads
 * than buffers ever run, the extra ones get a private buffer that libdafs
 * registers per I/O: slower, still correct.
 */
#ifndef DAFS_FUSE_BUFPOOL_I_H
#define DAFS_FUSE_BUFPOOL_I_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "dafs/dafs.h"

struct fbuf_pool;

/* One thread's buffer. */
struct fbuf {
	struct fbuf_pool *pool;
	uint8_t *data;
	size_t size;
	dafs_mem_t *mem; /* the registration holding data, or NULL */
	int slot;	 /* index in the pool, -1 for a private buffer */
};

struct fbuf_pool {
	dafs_session_t *s;
	uint8_t *base; /* n * size bytes, page aligned */
	size_t size;
	dafs_mem_t *mem;      /* the one registration of base */
	pthread_key_t key;    /* the calling thread's struct fbuf */
	pthread_mutex_t lock; /* free list */
	int *free;	      /* stack of free slots */
	int nfree, n;
	struct fbuf *bufs;
};

/* Allocate and register @n buffers of @size bytes. Returns 0, -ENOMEM or
 * dafs_mem_register()'s error. */
int fbuf_pool_init(struct fbuf_pool *p, dafs_session_t *s, int n, size_t size);
/* Deregister and free; every thread that used a buffer has exited. */
void fbuf_pool_fini(struct fbuf_pool *p);

/* The calling thread's buffer (taken on first use). NULL only when even a
 * private buffer cannot be allocated. */
struct fbuf *fbuf_get(struct fbuf_pool *p);

#endif /* DAFS_FUSE_BUFPOOL_I_H */
