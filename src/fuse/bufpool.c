/*
 * bufpool.c - registered per-thread I/O buffers of dafs-fuse (see
 * bufpool_i.h).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fuse/bufpool_i.h"

static void put_buf(void *arg)
{
	struct fbuf *b = arg;
	struct fbuf_pool *p = b->pool;

	if (b->slot < 0) {
		free(b->data);
		free(b);
		return;
	}
	pthread_mutex_lock(&p->lock);
	p->free[p->nfree++] = b->slot;
	pthread_mutex_unlock(&p->lock);
}

int fbuf_pool_init(struct fbuf_pool *p, dafs_session_t *s, int n, size_t size)
{
	long page = sysconf(_SC_PAGESIZE);
	void *base;
	int i, rc = -ENOMEM;

	memset(p, 0, sizeof(*p));
	if (n < 1 || !size)
		return -EINVAL;
	if (page <= 0)
		page = 4096;
	p->s = s;
	p->n = n;
	p->size = (size + (size_t)page - 1) & ~((size_t)page - 1);
	/* page aligned: O_DIRECT files and the kernel like it */
	if (posix_memalign(&base, (size_t)page, p->size * n))
		goto fail;
	p->base = base;
	p->free = calloc((size_t)n, sizeof(*p->free));
	p->bufs = calloc((size_t)n, sizeof(*p->bufs));
	if (!p->free || !p->bufs)
		goto fail;
	rc = dafs_mem_register(s, p->base, p->size * n, &p->mem);
	if (rc)
		goto fail;
	rc = pthread_key_create(&p->key, put_buf);
	if (rc) {
		rc = -rc;
		goto fail_dereg;
	}
	pthread_mutex_init(&p->lock, NULL);
	for (i = 0; i < n; i++) {
		p->bufs[i].pool = p;
		p->bufs[i].data = p->base + (size_t)i * p->size;
		p->bufs[i].size = p->size;
		p->bufs[i].mem = p->mem;
		p->bufs[i].slot = i;
		p->free[i] = n - 1 - i;
	}
	p->nfree = n;
	return 0;

fail_dereg:
	dafs_mem_deregister(p->mem);
fail:
	free(p->bufs);
	free(p->free);
	free(p->base);
	memset(p, 0, sizeof(*p));
	return rc;
}

void fbuf_pool_fini(struct fbuf_pool *p)
{
	if (!p->base)
		return;
	pthread_key_delete(p->key);
	pthread_mutex_destroy(&p->lock);
	dafs_mem_deregister(p->mem);
	free(p->bufs);
	free(p->free);
	free(p->base);
	memset(p, 0, sizeof(*p));
}

struct fbuf *fbuf_get(struct fbuf_pool *p)
{
	struct fbuf *b = pthread_getspecific(p->key);

	if (b)
		return b;
	pthread_mutex_lock(&p->lock);
	if (p->nfree)
		b = &p->bufs[p->free[--p->nfree]];
	pthread_mutex_unlock(&p->lock);
	if (!b) {
		void *data;

		b = calloc(1, sizeof(*b));
		if (!b)
			return NULL;
		if (posix_memalign(&data, 4096, p->size)) {
			free(b);
			return NULL;
		}
		b->data = data;
		b->pool = p;
		b->size = p->size;
		b->slot = -1;
	}
	pthread_setspecific(p->key, b);
	return b;
}
