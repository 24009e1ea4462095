/*
 * dcache.c - libdafs's data cache (see dcache.h).
 *
 * Index: files in a hash by handle bytes, blocks in a hash by (file,
 * block number), every block on its file's list and on one LRU list. In
 * memory mode a block's bytes hang off its index entry; in LMDB mode they
 * live in the "blocks" database under (handle length, handle, block number
 * big-endian), and each file's change attribute in "files" under its
 * handle.
 */
#include <errno.h>
#include <fcntl.h>
#include <lmdb.h>
#include <stdio.h>
#include <sys/file.h>
#include <unistd.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cache/dcache.h"

#define FILE_BUCKETS 4096u
#define BLK_BUCKETS 65536u

struct dc_file;

struct dc_blk {
	struct dc_blk *hnext;	       /* block hash */
	struct dc_blk *lprev, *lnext;  /* LRU, most recent at the head */
	struct dc_blk *fprev, *fnext;  /* the file's blocks */
	struct dc_file *f;
	uint64_t blk;
	uint32_t len;
	uint8_t *data; /* memory mode only */
};

struct dc_file {
	struct dc_file *hnext;
	dafs_fh_t fh;
	uint64_t change;
	int has_change;
	uint64_t gen; /* moves on each invalidation: a fill across one is
		       * not kept */
	struct dc_blk *blocks;
	struct dc_blk *last; /* a cached short block: the end of the file */
};

struct dcache {
	pthread_mutex_t lock;
	uint64_t limit;
	struct dc_file *files[FILE_BUCKETS];
	struct dc_blk *blks[BLK_BUCKETS];
	struct dc_blk lru; /* list head */
	struct dc_stats st;
	/* LMDB mode */
	int lockfd; /* flock'ed: one process per directory */
	MDB_env *env;
	MDB_dbi dfiles, dblocks;
};

static uint32_t fh_hash(const dafs_fh_t *fh)
{
	uint32_t h = 2166136261u;

	for (uint16_t i = 0; i < fh->len; i++)
		h = (h ^ fh->data[i]) * 16777619u;
	return h;
}

static size_t blk_bucket(const struct dc_file *f, uint64_t blk)
{
	uint64_t h = ((uintptr_t)f >> 4) * 0x9e3779b97f4a7c15ull ^ blk;

	return (size_t)((h * 0x9e3779b97f4a7c15ull) >> 48) % BLK_BUCKETS;
}

static int lmdb_err(int rc)
{
	if (rc == ENOMEM || rc == EACCES || rc == ENOENT || rc == ENOSPC ||
	    rc == EROFS || rc == EAGAIN)
		return -rc;
	return -EIO;
}

/* ---- LMDB keys ---- */

static size_t blk_key(uint8_t *k, const dafs_fh_t *fh, uint64_t blk)
{
	k[0] = (uint8_t)fh->len;
	memcpy(k + 1, fh->data, fh->len);
	for (int i = 0; i < 8; i++)
		k[1 + fh->len + i] = (uint8_t)(blk >> (56 - 8 * i));
	return 1 + fh->len + 8u;
}

static int blk_key_parse(const MDB_val *k, dafs_fh_t *fh, uint64_t *blk)
{
	const uint8_t *p = k->mv_data;

	if (k->mv_size < 9 || p[0] > DAFS_FH_MAX ||
	    k->mv_size != 1u + p[0] + 8u)
		return -1;
	fh->len = p[0];
	memcpy(fh->data, p + 1, fh->len);
	*blk = 0;
	for (int i = 0; i < 8; i++)
		*blk = *blk << 8 | p[1 + fh->len + i];
	return 0;
}

/* ---- index ---- */

static struct dc_file *file_find(struct dcache *dc, const dafs_fh_t *fh)
{
	struct dc_file *f;

	for (f = dc->files[fh_hash(fh) % FILE_BUCKETS]; f; f = f->hnext)
		if (f->fh.len == fh->len &&
		    !memcmp(f->fh.data, fh->data, fh->len))
			return f;
	return NULL;
}

static struct dc_file *file_get(struct dcache *dc, const dafs_fh_t *fh)
{
	struct dc_file *f = file_find(dc, fh);
	size_t b;

	if (f)
		return f;
	f = calloc(1, sizeof(*f));
	if (!f)
		return NULL;
	f->fh = *fh;
	b = fh_hash(fh) % FILE_BUCKETS;
	f->hnext = dc->files[b];
	dc->files[b] = f;
	return f;
}

static struct dc_blk *blk_find(struct dcache *dc, struct dc_file *f,
			       uint64_t blk)
{
	struct dc_blk *b;

	for (b = dc->blks[blk_bucket(f, blk)]; b; b = b->hnext)
		if (b->f == f && b->blk == blk)
			return b;
	return NULL;
}

static void lru_unlink(struct dc_blk *b)
{
	b->lprev->lnext = b->lnext;
	b->lnext->lprev = b->lprev;
}

static void lru_push(struct dcache *dc, struct dc_blk *b)
{
	b->lnext = dc->lru.lnext;
	b->lprev = &dc->lru;
	b->lnext->lprev = b;
	dc->lru.lnext = b;
}

static void blk_link(struct dcache *dc, struct dc_blk *b)
{
	size_t h = blk_bucket(b->f, b->blk);

	b->hnext = dc->blks[h];
	dc->blks[h] = b;
	b->fprev = NULL;
	b->fnext = b->f->blocks;
	if (b->fnext)
		b->fnext->fprev = b;
	b->f->blocks = b;
	if (b->len < DC_BLOCK)
		b->f->last = b;
	lru_push(dc, b);
	dc->st.blocks++;
	dc->st.bytes += b->len;
}

/* Unlink and free @b; its LMDB record is deleted in @txn (if any). */
static void blk_drop(struct dcache *dc, struct dc_blk *b, MDB_txn *txn)
{
	struct dc_blk **pp;

	for (pp = &dc->blks[blk_bucket(b->f, b->blk)]; *pp != b;
	     pp = &(*pp)->hnext)
		;
	*pp = b->hnext;
	if (b->fprev)
		b->fprev->fnext = b->fnext;
	else
		b->f->blocks = b->fnext;
	if (b->fnext)
		b->fnext->fprev = b->fprev;
	if (b->f->last == b)
		b->f->last = NULL;
	lru_unlink(b);
	dc->st.blocks--;
	dc->st.bytes -= b->len;
	if (txn) {
		uint8_t k[1 + DAFS_FH_MAX + 8];
		MDB_val key = {blk_key(k, &b->f->fh, b->blk), k};

		mdb_del(txn, dc->dblocks, &key, NULL);
	}
	free(b->data);
	free(b);
}

/* Drop every block of @f (lock held); in LMDB mode within @txn, which
 * the caller commits. */
static void file_drop_blocks_txn(struct dcache *dc, struct dc_file *f,
				 MDB_txn *txn)
{
	f->gen++;
	if (!f->blocks)
		return;
	dc->st.invalidations++;
	while (f->blocks)
		blk_drop(dc, f->blocks, txn);
}

/* The same in a transaction of its own. If LMDB fails, the file's change
 * record goes (in a last transaction): blocks left behind are then never
 * taken for current by a later process. */
static void file_drop_blocks(struct dcache *dc, struct dc_file *f)
{
	MDB_txn *txn = NULL;

	if (!dc->env || !f->blocks) {
		file_drop_blocks_txn(dc, f, NULL);
		return;
	}
	if (mdb_txn_begin(dc->env, NULL, 0, &txn))
		txn = NULL;
	file_drop_blocks_txn(dc, f, txn);
	if (!txn || mdb_txn_commit(txn)) {
		MDB_val k = {f->fh.len, f->fh.data};

		f->has_change = 0;
		if (!mdb_txn_begin(dc->env, NULL, 0, &txn)) {
			mdb_del(txn, dc->dfiles, &k, NULL);
			(void)mdb_txn_commit(txn); /* nothing more to try */
		}
	}
}

/* ---- open / close ---- */

static int load(struct dcache *dc)
{
	MDB_txn *txn;
	MDB_cursor *cur;
	MDB_val k, v;
	dafs_fh_t fh;
	uint64_t blk;
	int rc;

	rc = mdb_txn_begin(dc->env, NULL, MDB_RDONLY, &txn);
	if (rc)
		return lmdb_err(rc);
	rc = mdb_cursor_open(txn, dc->dblocks, &cur);
	if (rc) {
		mdb_txn_abort(txn);
		return lmdb_err(rc);
	}
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); !rc;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		struct dc_file *f;
		struct dc_blk *b;
		MDB_val fk, fv;

		if (blk_key_parse(&k, &fh, &blk) || v.mv_size > DC_BLOCK)
			continue; /* not ours: left alone */
		f = file_get(dc, &fh);
		if (!f)
			break;
		if (!f->has_change) {
			fk.mv_size = fh.len;
			fk.mv_data = fh.data;
			if (!mdb_get(txn, dc->dfiles, &fk, &fv) &&
			    fv.mv_size == 8) {
				memcpy(&f->change, fv.mv_data, 8);
				f->has_change = 1;
			}
		}
		b = calloc(1, sizeof(*b));
		if (!b)
			break;
		b->f = f;
		b->blk = blk;
		b->len = (uint32_t)v.mv_size;
		blk_link(dc, b);
	}
	mdb_cursor_close(cur);
	mdb_txn_abort(txn);
	return 0;
}

int dc_open(struct dcache **out, uint64_t limit, const char *dir)
{
	struct dcache *dc = calloc(1, sizeof(*dc));
	MDB_txn *txn;
	int rc;

	if (!dc)
		return -ENOMEM;
	pthread_mutex_init(&dc->lock, NULL);
	dc->lockfd = -1;
	dc->lru.lnext = dc->lru.lprev = &dc->lru;
	dc->limit = limit;
	dc->st.limit = limit;
	if (dir) {
		char lock[4096];

		if (mkdir(dir, 0700) && errno != EEXIST) {
			rc = -errno;
			goto fail;
		}
		/* one process per directory: two would each index only their
		 * own blocks and could pair one's old blocks with the other's
		 * newer change attribute */
		snprintf(lock, sizeof(lock), "%s/lock", dir);
		dc->lockfd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
		if (dc->lockfd < 0) {
			rc = -errno;
			goto fail;
		}
		if (flock(dc->lockfd, LOCK_EX | LOCK_NB)) {
			rc = errno == EWOULDBLOCK ? -EBUSY : -errno;
			goto fail;
		}
		rc = mdb_env_create(&dc->env);
		if (!rc)
			rc = mdb_env_set_maxdbs(dc->env, 2);
		/* room for the limit, LMDB's own pages and some slack */
		if (!rc)
			rc = mdb_env_set_mapsize(dc->env,
						 (size_t)(limit + limit / 2 +
							  (64u << 20)));
		if (!rc)
			rc = mdb_env_open(dc->env, dir,
					  MDB_NOTLS | MDB_NOSYNC, 0600);
		if (!rc)
			rc = mdb_txn_begin(dc->env, NULL, 0, &txn);
		if (!rc) {
			rc = mdb_dbi_open(txn, "files", MDB_CREATE,
					  &dc->dfiles);
			if (!rc)
				rc = mdb_dbi_open(txn, "blocks", MDB_CREATE,
						  &dc->dblocks);
			if (!rc)
				rc = mdb_txn_commit(txn);
			else
				mdb_txn_abort(txn);
		}
		if (rc) {
			rc = lmdb_err(rc);
			goto fail;
		}
		dc->st.persistent = 1;
		rc = load(dc);
		if (rc)
			goto fail;
	}
	*out = dc;
	return 0;
fail:
	dc_close(dc);
	return rc;
}

void dc_close(struct dcache *dc)
{
	struct dc_file *f, *fn;
	size_t i;

	if (!dc)
		return;
	while (dc->lru.lnext != &dc->lru)
		blk_drop(dc, dc->lru.lnext, NULL);
	for (i = 0; i < FILE_BUCKETS; i++)
		for (f = dc->files[i]; f; f = fn) {
			fn = f->hnext;
			free(f);
		}
	if (dc->env) {
		mdb_env_sync(dc->env, 1);
		mdb_env_close(dc->env);
	}
	if (dc->lockfd >= 0)
		close(dc->lockfd);
	pthread_mutex_destroy(&dc->lock);
	free(dc);
}

/* ---- operations ---- */

int dc_validate(struct dcache *dc, const dafs_fh_t *fh, uint64_t change)
{
	struct dc_file *f;
	MDB_txn *txn;
	int kept = 0;

	pthread_mutex_lock(&dc->lock);
	f = file_get(dc, fh);
	if (f) {
		if (f->has_change && f->change == change) {
			kept = f->blocks != NULL;
		} else if (!dc->env) {
			file_drop_blocks(dc, f);
			f->change = change;
			f->has_change = 1;
		} else if (mdb_txn_begin(dc->env, NULL, 0, &txn)) {
			file_drop_blocks(dc, f); /* no change recorded */
		} else {
			/* the old blocks go and the new change comes in one
			 * transaction: never one without the other */
			MDB_val k = {fh->len, (void *)fh->data};
			MDB_val v = {8, &change};

			file_drop_blocks_txn(dc, f, txn);
			if (mdb_put(txn, dc->dfiles, &k, &v, 0) ||
			    mdb_txn_commit(txn)) {
				f->has_change = 0;
				file_drop_blocks(dc, f);
			} else {
				f->change = change;
				f->has_change = 1;
			}
		}
	}
	pthread_mutex_unlock(&dc->lock);
	return kept;
}

/* Copy block @b's bytes [@from, @from + @n) to @dst (lock held); -1 if
 * they are gone from LMDB. */
static int blk_copy(struct dcache *dc, struct dc_blk *b, uint32_t from,
		    uint32_t n, uint8_t *dst)
{
	uint8_t k[1 + DAFS_FH_MAX + 8];
	MDB_val key, val;
	MDB_txn *txn;
	int rc = -1;

	if (!dc->env) {
		memcpy(dst, b->data + from, n);
		return 0;
	}
	key.mv_size = blk_key(k, &b->f->fh, b->blk);
	key.mv_data = k;
	if (mdb_txn_begin(dc->env, NULL, MDB_RDONLY, &txn))
		return -1;
	if (!mdb_get(txn, dc->dblocks, &key, &val) && val.mv_size == b->len) {
		memcpy(dst, (uint8_t *)val.mv_data + from, n);
		rc = 0;
	}
	mdb_txn_abort(txn);
	return rc;
}

/* Keep a freshly read block (lock held); @data is taken over in memory
 * mode and copied in LMDB mode. */
static void blk_insert(struct dcache *dc, struct dc_file *f, uint64_t blk,
		       uint8_t *data, uint32_t len)
{
	struct dc_blk *b;
	MDB_txn *txn = NULL;

	if (len > dc->limit || blk_find(dc, f, blk)) {
		free(data);
		return;
	}
	b = calloc(1, sizeof(*b));
	if (!b) {
		free(data);
		return;
	}
	b->f = f;
	b->blk = blk;
	b->len = len;
	/* room first: the least recently used blocks go (committed on their
	 * own, so a put that fails does not bring them back in LMDB) */
	if (dc->st.bytes + len > dc->limit) {
		if (dc->env && mdb_txn_begin(dc->env, NULL, 0, &txn))
			txn = NULL;
		while (dc->st.bytes + len > dc->limit &&
		       dc->lru.lprev != &dc->lru) {
			blk_drop(dc, dc->lru.lprev, txn);
			dc->st.evictions++;
		}
		if (txn)
			mdb_txn_commit(txn);
		txn = NULL;
	}
	if (dc->env && mdb_txn_begin(dc->env, NULL, 0, &txn))
		txn = NULL;
	if (dc->env) {
		uint8_t k[1 + DAFS_FH_MAX + 8];
		MDB_val key = {blk_key(k, &f->fh, blk), k};
		MDB_val val = {len, data};

		/* a full map (LMDB's pages beyond the slack) keeps nothing */
		if (!txn || mdb_put(txn, dc->dblocks, &key, &val, 0)) {
			if (txn)
				mdb_txn_abort(txn);
			free(data);
			free(b);
			return;
		}
		free(data);
		if (mdb_txn_commit(txn)) {
			free(b);
			return;
		}
	} else {
		b->data = data;
	}
	blk_link(dc, b);
}

ssize_t dc_read(struct dcache *dc, const dafs_fh_t *fh, uint64_t off,
		void *buf, size_t len, dc_fill_fn fill, void *arg)
{
	uint8_t *dst = buf;
	size_t done = 0;

	while (done < len) {
		uint64_t pos = off + done, blk = pos / DC_BLOCK, gen;
		uint32_t in = (uint32_t)(pos % DC_BLOCK), n;
		struct dc_file *f;
		struct dc_blk *b;
		uint8_t *data;
		ssize_t got;

		pthread_mutex_lock(&dc->lock);
		f = file_get(dc, fh);
		if (!f) {
			pthread_mutex_unlock(&dc->lock);
			return done ? (ssize_t)done : -ENOMEM;
		}
		b = blk_find(dc, f, blk);
		if (b) {
			n = b->len > in ? b->len - in : 0;
			if (n > len - done)
				n = (uint32_t)(len - done);
			if (!n || !blk_copy(dc, b, in, n, dst + done)) {
				uint32_t blen = b->len; /* b may go once unlocked */

				lru_unlink(b);
				lru_push(dc, b);
				dc->st.hits++;
				dc->st.hit_bytes += n;
				pthread_mutex_unlock(&dc->lock);
				done += n;
				if (blen < DC_BLOCK && in + n >= blen)
					break; /* the end of the file */
				if (!n)
					break;
				continue;
			}
			blk_drop(dc, b, NULL); /* gone from LMDB */
		}
		if (f->last && blk > f->last->blk) {
			/* past the block that ends the file */
			pthread_mutex_unlock(&dc->lock);
			break;
		}
		dc->st.misses++;
		gen = f->gen;
		pthread_mutex_unlock(&dc->lock);

		data = malloc(DC_BLOCK);
		if (!data)
			return done ? (ssize_t)done : -ENOMEM;
		got = fill(arg, blk, data);
		if (got < 0) {
			free(data);
			return done ? (ssize_t)done : got;
		}
		n = (uint32_t)got > in ? (uint32_t)got - in : 0;
		if (n > len - done)
			n = (uint32_t)(len - done);
		memcpy(dst + done, data + in, n);
		done += n;
		pthread_mutex_lock(&dc->lock);
		f = file_find(dc, fh);
		if (f && f->gen == gen)
			blk_insert(dc, f, blk, data, (uint32_t)got);
		else
			free(data);
		pthread_mutex_unlock(&dc->lock);
		if ((uint32_t)got < DC_BLOCK || !n)
			break;
	}
	return (ssize_t)done;
}

void dc_write(struct dcache *dc, const dafs_fh_t *fh, uint64_t off,
	      uint64_t len)
{
	uint64_t first = off / DC_BLOCK, last = (off + len) / DC_BLOCK;
	struct dc_file *f;
	struct dc_blk *b, *bn;
	MDB_txn *txn = NULL;

	pthread_mutex_lock(&dc->lock);
	f = file_find(dc, fh);
	if (f) {
		f->gen++;
		if (dc->env && f->blocks && mdb_txn_begin(dc->env, NULL, 0, &txn))
			txn = NULL;
		for (b = f->blocks; b; b = bn) {
			bn = b->fnext;
			if ((b->blk >= first && b->blk <= last) ||
			    b->len < DC_BLOCK)
				blk_drop(dc, b, txn);
		}
		if (txn)
			mdb_txn_commit(txn);
	}
	pthread_mutex_unlock(&dc->lock);
}

void dc_invalidate(struct dcache *dc, const dafs_fh_t *fh)
{
	struct dc_file *f;

	pthread_mutex_lock(&dc->lock);
	f = file_find(dc, fh);
	if (f)
		file_drop_blocks(dc, f);
	pthread_mutex_unlock(&dc->lock);
}

void dc_stats(struct dcache *dc, struct dc_stats *st)
{
	pthread_mutex_lock(&dc->lock);
	*st = dc->st;
	pthread_mutex_unlock(&dc->lock);
}
