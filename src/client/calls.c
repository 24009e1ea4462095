/*
 * calls.c - the DAFS API calls of libdafs: metadata operations, open files,
 * registered memory, synchronous and asynchronous I/O, completion groups,
 * batch I/O. Each call encodes a request body, runs it through the session
 * (client.c) and decodes the reply.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "client_i.h"

static int name_view(const char *name, struct dafs_view *v)
{
	size_t n = name ? strlen(name) : 0;

	if (n == 0 || n > DAFS_NAME_MAX)
		return n ? -ENAMETOOLONG : -EINVAL;
	v->p = (const uint8_t *)name;
	v->len = (uint32_t)n;
	return 0;
}

static void copy_fh_attr(const struct dafs_m_fh_attr *r, dafs_fh_t *fh,
			 dafs_attr_t *attr)
{
	if (fh)
		*fh = r->fh;
	if (attr)
		*attr = r->attr;
}

DAFS_API int dafs_lookup(dafs_session_t *s, const dafs_fh_t *dir,
			 const char *name, dafs_fh_t *fh, dafs_attr_t *attr)
{
	struct dafs_m_dirop_req q;
	struct dafs_m_fh_attr r;
	int rc;

	/* attributes come back: held writes first (nothing to do, but one
	 * atomic load, when none are) */
	if (attr)
		dafs_c_wb_sync_fh(s, NULL, NULL);
	q.dir = *dir;
	rc = name_view(name, &q.name);
	if (!rc)
		rc = dafs_c_simple(s, DAFS_OP_LOOKUP, &q, &r);
	if (!rc)
		copy_fh_attr(&r, fh, attr);
	return rc;
}

DAFS_API int dafs_getattr(dafs_session_t *s, const dafs_fh_t *fh,
			  dafs_attr_t *attr)
{
	struct dafs_m_fh q;
	struct dafs_m_attr r;
	int rc;

	dafs_c_wb_sync_fh(s, fh, NULL); /* the size of what is held */
	q.fh = *fh;
	rc = dafs_c_simple(s, DAFS_OP_GETATTR, &q, &r);
	if (!rc && attr)
		*attr = r.attr;
	return rc;
}

DAFS_API int dafs_access(dafs_session_t *s, const dafs_fh_t *fh, uint32_t mask)
{
	struct dafs_m_access_req q;

	if (mask & ~7u)
		return -EINVAL;
	q.fh = *fh;
	q.mask = mask;
	return dafs_c_simple(s, DAFS_OP_ACCESS, &q, NULL);
}

DAFS_API int dafs_setattr(dafs_session_t *s, const dafs_fh_t *fh,
			  const dafs_setattr_t *sa, dafs_attr_t *attr)
{
	struct dafs_m_setattr_req q;
	struct dafs_m_attr r;
	int rc;

	dafs_c_wb_sync_fh(s, fh, NULL);
	q.fh = *fh;
	q.sa = *sa;
	if (q.sa.atime.nsec >= 1000000000u || q.sa.mtime.nsec >= 1000000000u)
		return -EINVAL;
	if (s->dc && (sa->mask & DAFS_SET_SIZE))
		dc_invalidate(s->dc, fh);
	rc = dafs_c_simple(s, DAFS_OP_SETATTR, &q, &r);
	if (s->dc && (sa->mask & DAFS_SET_SIZE))
		dc_invalidate(s->dc, fh); /* and what was read meanwhile */
	if (!rc && attr)
		*attr = r.attr;
	return rc;
}

DAFS_API int dafs_mkdir(dafs_session_t *s, const dafs_fh_t *dir,
			const char *name, uint32_t mode, dafs_fh_t *fh,
			dafs_attr_t *attr)
{
	struct dafs_m_mkdir_req q;
	struct dafs_m_fh_attr r;
	int rc;

	q.dir = *dir;
	q.mode = mode;
	rc = name_view(name, &q.name);
	if (!rc)
		rc = dafs_c_simple(s, DAFS_OP_MKDIR, &q, &r);
	if (!rc)
		copy_fh_attr(&r, fh, attr);
	return rc;
}

DAFS_API int dafs_mknod(dafs_session_t *s, const dafs_fh_t *dir,
			const char *name, uint32_t mode, uint64_t rdev,
			dafs_fh_t *fh, dafs_attr_t *attr)
{
	struct dafs_m_mknod_req q;
	struct dafs_m_fh_attr r;
	int rc;

	q.dir = *dir;
	q.mode = mode;
	q.rdev = rdev;
	rc = name_view(name, &q.name);
	if (!rc)
		rc = dafs_c_simple(s, DAFS_OP_MKNOD, &q, &r);
	if (!rc)
		copy_fh_attr(&r, fh, attr);
	return rc;
}

DAFS_API int dafs_symlink(dafs_session_t *s, const dafs_fh_t *dir,
			  const char *name, const char *target, dafs_fh_t *fh,
			  dafs_attr_t *attr)
{
	struct dafs_m_symlink_req q;
	struct dafs_m_fh_attr r;
	size_t n = target ? strlen(target) : 0;
	int rc;

	if (n == 0)
		return -ENOENT;
	if (n > DAFS_PATH_MAX)
		return -ENAMETOOLONG;
	q.dir = *dir;
	q.target.p = (const uint8_t *)target;
	q.target.len = (uint32_t)n;
	rc = name_view(name, &q.name);
	if (!rc)
		rc = dafs_c_simple(s, DAFS_OP_SYMLINK, &q, &r);
	if (!rc)
		copy_fh_attr(&r, fh, attr);
	return rc;
}

DAFS_API int dafs_readlink(dafs_session_t *s, const dafs_fh_t *fh, char *buf,
			   size_t size)
{
	struct dafs_m_fh q;
	struct dafs_m_path r;
	struct creq *cr;
	int rc;

	q.fh = *fh;
	rc = dafs_c_call(s, DAFS_OP_READLINK, &q, &r, NULL, &cr);
	if (rc)
		return rc;
	if (r.path.len + 1 > size) {
		rc = -ERANGE;
	} else {
		memcpy(buf, r.path.p, r.path.len);
		buf[r.path.len] = '\0';
		rc = (int)r.path.len;
	}
	dafs_c_end(s, cr);
	return rc;
}

DAFS_API int dafs_link(dafs_session_t *s, const dafs_fh_t *fh,
		       const dafs_fh_t *dir, const char *name,
		       dafs_attr_t *attr)
{
	struct dafs_m_link_req q;
	struct dafs_m_attr r;
	int rc;

	q.fh = *fh;
	q.dir = *dir;
	rc = name_view(name, &q.name);
	if (!rc)
		rc = dafs_c_simple(s, DAFS_OP_LINK, &q, &r);
	if (!rc && attr)
		*attr = r.attr;
	return rc;
}

static int dirop(dafs_session_t *s, uint16_t op, const dafs_fh_t *dir,
		 const char *name)
{
	struct dafs_m_dirop_req q;
	int rc;

	q.dir = *dir;
	rc = name_view(name, &q.name);
	return rc ? rc : dafs_c_simple(s, op, &q, NULL);
}

DAFS_API int dafs_remove(dafs_session_t *s, const dafs_fh_t *dir,
			 const char *name)
{
	return dirop(s, DAFS_OP_REMOVE, dir, name);
}

DAFS_API int dafs_rmdir(dafs_session_t *s, const dafs_fh_t *dir,
			const char *name)
{
	return dirop(s, DAFS_OP_RMDIR, dir, name);
}

DAFS_API int dafs_rename(dafs_session_t *s, const dafs_fh_t *sdir,
			 const char *sname, const dafs_fh_t *ddir,
			 const char *dname, uint32_t flags)
{
	struct dafs_m_rename_req q;
	int rc;

	if (flags & ~(DAFS_RENAME_NOREPLACE | DAFS_RENAME_EXCHANGE) ||
	    flags == (DAFS_RENAME_NOREPLACE | DAFS_RENAME_EXCHANGE))
		return -EINVAL;
	q.sdir = *sdir;
	q.ddir = *ddir;
	q.flags = flags;
	rc = name_view(sname, &q.sname);
	if (!rc)
		rc = name_view(dname, &q.dname);
	return rc ? rc : dafs_c_simple(s, DAFS_OP_RENAME, &q, NULL);
}

DAFS_API int dafs_statfs(dafs_session_t *s, const dafs_fh_t *fh,
			 dafs_statfs_t *st)
{
	struct dafs_m_fh q;
	struct dafs_m_statfs r;
	int rc;

	q.fh = *fh;
	rc = dafs_c_simple(s, DAFS_OP_STATFS, &q, &r);
	if (!rc && st)
		*st = r.st;
	return rc;
}

DAFS_API int dafs_readdir(dafs_session_t *s, const dafs_fh_t *dir,
			  uint64_t *cookie, int plus, dafs_dirent_cb cb,
			  void *arg, int *eof)
{
	struct dafs_m_readdir_req q;
	struct dafs_m_readdir_rep r;
	struct dafs_m_dirent_plus e;
	char name[DAFS_NAME_MAX + 1];
	dafs_dirent_t ent;
	struct dafs_dec d;
	struct creq *cr;
	int rc, n = 0, stop = 0;

	if (plus)
		dafs_c_wb_sync_fh(s, NULL, NULL); /* the sizes listed */
	q.dir = *dir;
	q.cookie = *cookie;
	q.maxbytes = s->p.max_response - DAFS_HDR_SIZE - 8;
	q.plus = !!plus;
	rc = dafs_c_call(s, DAFS_OP_READDIR, &q, &r, NULL, &cr);
	if (rc)
		return rc;
	dafs_dec_init(&d, r.entries.p, r.entries.len);
	while (!stop && d.pos < d.len) {
		if (dafs_dec_msg(&d, plus ? &dafs_mt_dirent_plus
					  : &dafs_mt_dirent,
				 &e)) {
			rc = -DAFS_EPROTO;
			break;
		}
		memcpy(name, e.name.p, e.name.len);
		name[e.name.len] = '\0';
		ent.name = name;
		ent.cookie = e.cookie;
		ent.ino = e.ino;
		ent.type = e.type;
		ent.fh = plus ? &e.fh : NULL;
		ent.attr = plus ? &e.attr : NULL;
		stop = cb ? cb(arg, &ent) : 0;
		*cookie = e.cookie;
		n++;
	}
	if (eof)
		*eof = !rc && !stop && r.eof;
	dafs_c_end(s, cr);
	return rc ? rc : n;
}

/* ---- open files ---- */

static int to_wire_flags(int flags, uint32_t *out)
{
	uint32_t w = 0;

	switch (flags & O_ACCMODE) {
	case O_RDONLY:
		w = DAFS_O_RDONLY;
		break;
	case O_WRONLY:
		w = DAFS_O_WRONLY;
		break;
	case O_RDWR:
		w = DAFS_O_RDWR;
		break;
	default:
		return -EINVAL;
	}
	if (flags & O_APPEND)
		w |= DAFS_O_APPEND;
	if (flags & O_TRUNC)
		w |= DAFS_O_TRUNC;
	if (flags & O_EXCL)
		w |= DAFS_O_EXCL;
	if ((flags & O_SYNC) == O_SYNC)
		w |= DAFS_O_SYNC;
	else if (flags & O_DSYNC)
		w |= DAFS_O_DSYNC;
	if (flags & O_DIRECT)
		w |= DAFS_O_DIRECT;
	if (flags & DAFS_OPEN_DELEG_WRITE)
		w |= DAFS_O_WANT_WRITE_DELEG;
	else if (flags & DAFS_OPEN_DELEG_READ)
		w |= DAFS_O_WANT_READ_DELEG;
	*out = w;
	return 0;
}

static void count_grant(dafs_session_t *s, uint32_t type, uint64_t id,
			const dafs_fh_t *fh)
{
	unsigned i;

	pthread_mutex_lock(&s->lock);
	if (type == DAFS_DELEG_READ)
		s->dstats.granted_read++;
	else if (type == DAFS_DELEG_WRITE)
		s->dstats.granted_write++;
	if (type != DAFS_DELEG_NONE) {
		for (i = 0; i < 256 && s->dfh[i].id != id; i++)
			;
		if (i == 256) {
			i = s->dfh_next++ % 256;
			s->dfh[i].id = id;
			s->dfh[i].fh = *fh;
		}
	}
	pthread_mutex_unlock(&s->lock);
}

static int new_file(dafs_session_t *s, uint64_t id, int flags,
		    const dafs_fh_t *fh, uint32_t deleg, uint64_t deleg_id,
		    uint64_t change, dafs_file_t **f)
{
	dafs_file_t *file = calloc(1, sizeof(*file));
	struct dafs_m_u64 q;

	if (!file) {
		q.v = id;
		dafs_c_simple(s, DAFS_OP_CLOSE, &q, NULL);
		return -ENOMEM;
	}
	file->s = s;
	file->open_id = id;
	file->flags = flags;
	file->fh = *fh;
	file->deleg = (int)deleg;
	file->deleg_id = deleg_id;
	count_grant(s, deleg, deleg_id, fh);
	if ((flags & DAFS_OPEN_CACHED) && s->dc) {
		/* close-to-open: blocks read under another change go */
		dc_validate(s->dc, fh, change);
		file->cached = 1;
	}
	dafs_c_wb_open(file);
	*f = file;
	return 0;
}

DAFS_API int dafs_open(dafs_session_t *s, const dafs_fh_t *fh, int flags,
		       dafs_file_t **f)
{
	struct dafs_m_open_req q;
	struct dafs_m_open_rep r;
	int rc;

	q.fh = *fh;
	rc = to_wire_flags(flags & ~(O_CREAT | O_EXCL), &q.flags);
	if (!rc)
		rc = dafs_c_simple(s, DAFS_OP_OPEN, &q, &r);
	return rc ? rc
		  : new_file(s, r.open_id, flags, fh, r.deleg, r.deleg_id,
			     r.attr.change, f);
}

DAFS_API int dafs_create(dafs_session_t *s, const dafs_fh_t *dir,
			 const char *name, int flags, uint32_t mode,
			 dafs_file_t **f, dafs_fh_t *fh, dafs_attr_t *attr)
{
	struct dafs_m_create_req q;
	struct dafs_m_create_rep r;
	int rc;

	dafs_c_wb_sync_fh(s, NULL, NULL); /* an existing file's size */
	q.dir = *dir;
	q.mode = mode;
	rc = name_view(name, &q.name);
	if (!rc)
		rc = to_wire_flags(flags & ~O_CREAT, &q.flags);
	if (!rc)
		rc = dafs_c_simple(s, DAFS_OP_CREATE, &q, &r);
	if (rc)
		return rc;
	if (fh)
		*fh = r.fh;
	if (attr)
		*attr = r.attr;
	return new_file(s, r.open_id, flags, &r.fh, r.deleg, r.deleg_id,
			r.attr.change, f);
}

DAFS_API int dafs_close(dafs_file_t *f)
{
	struct dafs_m_u64 q;
	int rc, err;

	if (!f)
		return -EINVAL;
	err = dafs_c_wb_close(f);
	q.v = f->open_id;
	rc = dafs_c_simple(f->s, DAFS_OP_CLOSE, &q, NULL);
	free(f);
	return err ? err : rc;
}

DAFS_API const dafs_fh_t *dafs_file_fh(const dafs_file_t *f)
{
	return &f->fh;
}

/* ---- delegations ---- */

DAFS_API int dafs_file_deleg(const dafs_file_t *f, uint64_t *id)
{
	if (id)
		*id = f->deleg_id;
	return f->deleg;
}

DAFS_API int dafs_deleg_return(dafs_session_t *s, uint64_t id)
{
	struct dafs_m_u64 q = {id};
	uint64_t t = 0, now;
	int rc, i;

	/* what is held under it goes first, and nothing more is held */
	dafs_c_wb_recall(s, id);
	rc = dafs_c_simple(s, DAFS_OP_DELEGRETURN, &q, NULL);
	now = dafs_c_now_ns();
	pthread_mutex_lock(&s->lock);
	for (i = 0; i < CREC_MAX; i++)
		if (s->recalls[i].id == id) {
			t = now - s->recalls[i].t_ns;
			s->recalls[i].id = 0;
		}
	if (rc == 0) {
		s->dstats.returns++;
		if (t) {
			s->dstats.recall_ns_total += t;
			if (t > s->dstats.recall_ns_max)
				s->dstats.recall_ns_max = t;
		}
	} else if (rc == -DAFS_EREVOKED) {
		s->dstats.revoked++;
	}
	pthread_mutex_unlock(&s->lock);
	return rc;
}

DAFS_API int dafs_cache_setup(dafs_session_t *s, uint64_t bytes,
			     const char *dir)
{
	struct dcache *dc;
	int rc;

	if (!bytes)
		return -EINVAL;
	if (s->dc)
		return -EBUSY;
	rc = dc_open(&dc, bytes, dir);
	if (rc)
		return rc;
	pthread_mutex_lock(&s->lock);
	if (s->dc) {
		pthread_mutex_unlock(&s->lock);
		dc_close(dc);
		return -EBUSY;
	}
	s->dc = dc;
	s->wb_max = bytes / 4;
	pthread_mutex_unlock(&s->lock);
	return 0;
}

DAFS_API int dafs_cache_stats(dafs_session_t *s, dafs_cache_stats_t *st)
{
	struct dc_stats d;

	if (!s->dc)
		return -ENOENT;
	dc_stats(s->dc, &d);
	st->hits = d.hits;
	st->misses = d.misses;
	st->hit_bytes = d.hit_bytes;
	st->evictions = d.evictions;
	st->invalidations = d.invalidations;
	st->blocks = d.blocks;
	st->bytes = d.bytes;
	st->limit = d.limit;
	st->persistent = d.persistent;
	dafs_c_wb_stats(s, st);
	return 0;
}

DAFS_API int dafs_set_recall_handler(dafs_session_t *s, dafs_recall_fn fn,
				     void *arg)
{
	pthread_mutex_lock(&s->lock);
	s->recall_fn = fn;
	s->recall_arg = arg;
	/* a handler already running may still use the old argument: wait
	 * for it, unless this is that handler */
	while (s->recall_busy && !dafs_c_on_cb_thread(s))
		pthread_cond_wait(&s->cv, &s->lock);
	pthread_mutex_unlock(&s->lock);
	return 0;
}

DAFS_API int dafs_deleg_stats(dafs_session_t *s, dafs_deleg_stats_t *st)
{
	pthread_mutex_lock(&s->lock);
	*st = s->dstats;
	pthread_mutex_unlock(&s->lock);
	return 0;
}

DAFS_API int dafs_op_count(dafs_session_t *s, unsigned i, const char **name,
			   uint64_t *count)
{
	uint32_t op;

	/* the fore channel's opcodes, in order, skipping unassigned ones */
	for (op = 0; op < DAFS_OP_CB_NULL; op++) {
		if (!dafs_op_desc(op) || i--)
			continue;
		*name = dafs_op_name(op);
		*count = __atomic_load_n(&s->op_sent[op], __ATOMIC_RELAXED);
		return 0;
	}
	return -ENOENT;
}

void dafs_c_recall(dafs_session_t *s, const struct dafs_m_cb_recall_req *q)
{
	dafs_recall_fn fn;
	void *arg;
	int i, slot = -1;

	pthread_mutex_lock(&s->lock);
	s->dstats.recalls++;
	for (i = 0; i < CREC_MAX; i++) {
		if (s->recalls[i].id == q->deleg_id) {
			slot = -1; /* recalled twice: keep the first time */
			break;
		}
		if (!s->recalls[i].id && slot < 0)
			slot = i;
	}
	if (i == CREC_MAX && slot >= 0) {
		s->recalls[slot].id = q->deleg_id;
		s->recalls[slot].t_ns = dafs_c_now_ns();
	}
	fn = s->recall_fn;
	arg = s->recall_arg;
	if (fn)
		s->recall_busy++;
	pthread_mutex_unlock(&s->lock);
	/* what is held under it goes back first, and no more is held */
	dafs_c_wb_recall(s, q->deleg_id);
	/* what was cached under the delegation may change from now on */
	if (s->dc) {
		dafs_fh_t fh = q->fh;

		pthread_mutex_lock(&s->lock);
		for (i = 0; !fh.len && i < 256; i++)
			if (s->dfh[i].id == q->deleg_id)
				fh = s->dfh[i].fh;
		pthread_mutex_unlock(&s->lock);
		if (fh.len)
			dc_invalidate(s->dc, &fh);
	}
	if (fn) {
		pthread_mutex_lock(&s->recall_mu);
		fn(arg, &q->fh, q->deleg_id, (int)q->type);
		pthread_mutex_unlock(&s->recall_mu);
		pthread_mutex_lock(&s->lock);
		s->recall_busy--;
		pthread_cond_broadcast(&s->cv);
		pthread_mutex_unlock(&s->lock);
	} else {
		dafs_deleg_return(s, q->deleg_id);
	}
}

/* ---- registered memory ---- */

DAFS_API int dafs_mem_register(dafs_session_t *s, void *buf, size_t len,
			       dafs_mem_t **out)
{
	dafs_mem_t *m;
	int rc;

	if (!buf || !len)
		return -EINVAL;
	m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	rc = dafs_c_tmp_reg(s, buf, len, &m->reg);
	if (rc) {
		free(m);
		return rc;
	}
	m->mr = m->reg->mr;
	m->buf = buf;
	m->len = len;
	m->s = s;
	*out = m;
	return 0;
}

DAFS_API int dafs_mem_deregister(dafs_mem_t *m)
{
	if (!m)
		return -EINVAL;
	if (atomic_load(&m->users))
		return -EBUSY;
	/* the registration stays in the session's cache */
	dafs_c_tmp_put(m->reg);
	free(m);
	return 0;
}

/* ---- I/O ---- */

static int check_mem(const dafs_mem_t *m, const void *buf, size_t len)
{
	const uint8_t *b = buf, *base = m->buf;

	/* the registration may cover more (whole pages, a neighbour's
	 * buffer): the caller may use what it registered */
	if (b < base || len > m->len || (size_t)(b - base) > m->len - len)
		return -EINVAL;
	return 0;
}

/*
 * Prepare one read or write: choose inline or direct, register the buffer
 * for this I/O if the caller gave no registration. Fills the request body
 * and, for a gather-send write, the gather element.
 */
static int prep_io(dafs_file_t *f, int write, void *buf, size_t len,
		   uint64_t off, dafs_mem_t *mem, struct dafs_m_read_req *rq,
		   struct dafs_m_write_req *wq, struct dafs_sge *gather,
		   struct dafs_rc_entry **tmp)
{
	dafs_session_t *s = f->s;
	struct dafs_mr *mr = NULL;
	int acc = f->flags & O_ACCMODE, rc;

	*tmp = NULL;
	gather->len = 0;
	if (len > s->p.max_io || off > (uint64_t)INT64_MAX)
		return -EINVAL;
	if (write ? acc == O_RDONLY : acc == O_WRONLY)
		return -EBADF;
	if (mem) {
		rc = check_mem(mem, buf, len);
		if (rc)
			return rc;
		mr = mem->mr;
	} else if (len > s->p.inline_max) {
		rc = dafs_c_tmp_reg(s, buf, len, tmp);
		if (rc)
			return rc;
		mr = (*tmp)->mr;
	}
	/* small I/O travels inline, whatever the registration */
	if (len <= s->p.inline_max)
		mr = NULL;
	if (!write) {
		rq->open_id = f->open_id;
		rq->off = off;
		rq->len = (uint32_t)len;
		rq->rkey = mr ? mr->rkey : 0;
		rq->raddr = (uintptr_t)buf;
		return 0;
	}
	wq->open_id = f->open_id;
	wq->off = off;
	wq->len = (uint32_t)len;
	wq->rkey = 0;
	wq->raddr = 0;
	wq->data.len = (uint32_t)len;
	wq->data.p = buf;
	if (mr && s->p.write_method == DAFS_WRITE_RDMA_READ) {
		wq->rkey = mr->rkey;
		wq->raddr = (uintptr_t)buf;
		wq->data.len = 0;
		wq->data.p = NULL;
	} else if (mr) {
		/* gather-send: the data goes from the caller's buffer */
		wq->data.p = NULL;
		gather->addr = buf;
		gather->len = (uint32_t)len;
		gather->lkey = mr->lkey;
	}
	return 0;
}

static void drop_tmp(dafs_session_t *s, struct dafs_rc_entry *reg)
{
	(void)s;
	dafs_c_tmp_put(reg);
}

static ssize_t read_server(dafs_file_t *f, void *buf, size_t len,
			   uint64_t off, dafs_mem_t *mem);
static ssize_t write_server(dafs_file_t *f, const void *buf, size_t len,
			    uint64_t off, dafs_mem_t *mem);

/* dc_read's fill: one cache block from the server, in reads of at most the session's
 * max_io (which may be less than a block). Returns the bytes read, short
 * at end of file, or a read's error. */
static ssize_t fill_block(void *arg, uint64_t blk, void *buf)
{
	dafs_file_t *f = arg;
	size_t piece = f->s->p.max_io < DC_BLOCK ? f->s->p.max_io : DC_BLOCK;
	size_t done = 0, want;
	ssize_t n;

	while (done < DC_BLOCK) {
		want = DC_BLOCK - done < piece ? DC_BLOCK - done : piece;
		n = read_server(f, (char *)buf + done, want,
				blk * DC_BLOCK + done, NULL);
		if (n < 0)
			return n; /* a short block would read as end of file */
		done += (size_t)n;
		if ((size_t)n < want)
			break; /* end of file */
	}
	return (ssize_t)done;
}

DAFS_API ssize_t dafs_read(dafs_file_t *f, void *buf, size_t len,
			   uint64_t off, dafs_mem_t *mem)
{
	dafs_c_wb_sync_fh(f->s, &f->fh, NULL);
	if (f->cached) {
		if (mem && check_mem(mem, buf, len))
			return -EINVAL;
		if (off > (uint64_t)INT64_MAX)
			return -EINVAL;
		/* as the server would on a miss: a hit must not read what
		 * a write-only open may not */
		if ((f->flags & O_ACCMODE) == O_WRONLY)
			return -EBADF;
		return dc_read(f->s->dc, &f->fh, off, buf, len, fill_block, f);
	}
	return read_server(f, buf, len, off, mem);
}

static ssize_t read_server(dafs_file_t *f, void *buf, size_t len,
			   uint64_t off, dafs_mem_t *mem)
{
	dafs_session_t *s = f->s;
	struct dafs_m_read_req q;
	struct dafs_m_read_rep r;
	struct dafs_sge g;
	struct dafs_rc_entry *tmp;
	struct creq *cr;
	ssize_t rc;

	rc = prep_io(f, 0, buf, len, off, mem, &q, NULL, &g, &tmp);
	if (rc)
		return rc;
	if (mem)
		atomic_fetch_add(&mem->users, 1);
	rc = dafs_c_begin(s, DAFS_OP_READ, &q, NULL, &cr);
	if (!rc) {
		/* given up on, it is fenced before this returns */
		cr->exposed = q.rkey != 0;
		rc = dafs_c_send(s, cr);
		if (!rc)
			rc = dafs_c_wait(s, cr, &r);
		if (!rc && (r.count > len ||
			    (r.data.len && r.data.len != r.count) ||
			    (!q.rkey && r.data.len != r.count)))
			rc = -DAFS_EPROTO;
		if (!rc) {
			if (r.data.len)
				memcpy(buf, r.data.p, r.data.len);
			rc = r.count;
		}
		dafs_c_end(s, cr);
	}
	if (mem)
		atomic_fetch_sub(&mem->users, 1);
	drop_tmp(s, tmp);
	return rc;
}

DAFS_API ssize_t dafs_write(dafs_file_t *f, const void *buf, size_t len,
			    uint64_t off, dafs_mem_t *mem)
{
	ssize_t n;

	if (mem && check_mem(mem, buf, len))
		return -EINVAL;
	/* before anything is held: the write-back arithmetic relies on
	 * off + len not wrapping, as the server refuses beyond INT64_MAX */
	if (off > (uint64_t)INT64_MAX || len > (uint64_t)INT64_MAX - off)
		return -EINVAL;
	if (f->wb.on) {
		n = dafs_c_wb_write(f, buf, len, off);
		if (n)
			return n;
	} else {
		dafs_c_wb_sync_fh(f->s, &f->fh, NULL);
	}
	return write_server(f, buf, len, off, mem);
}

ssize_t dafs_c_write_server(dafs_file_t *f, const void *buf, size_t len,
			    uint64_t off)
{
	return write_server(f, buf, len, off, NULL);
}

/* With a data cache, the write @cr carries drops [@off, @off + @len) of
 * @f's blocks again when its reply is delivered (deliver()). */
static void cache_span(struct creq *cr, const dafs_file_t *f, uint64_t off,
		       size_t len)
{
	if (!f->s->dc)
		return;
	cr->dcw1.fh = f->fh;
	cr->dcw1.off = off;
	cr->dcw1.len = len;
	cr->dcw = &cr->dcw1;
	cr->ndcw = 1;
}

static ssize_t write_server(dafs_file_t *f, const void *buf, size_t len,
			    uint64_t off, dafs_mem_t *mem)
{
	dafs_session_t *s = f->s;
	struct dafs_m_write_req q;
	struct dafs_m_u32 r;
	struct dafs_sge g;
	struct dafs_rc_entry *tmp;
	struct creq *cr;
	ssize_t rc;

	rc = prep_io(f, 1, (void *)buf, len, off, mem, NULL, &q, &g, &tmp);
	if (rc)
		return rc;
	if (mem)
		atomic_fetch_add(&mem->users, 1);
	/* before (fills in flight are not kept) and after (nor those that
	 * began meanwhile) */
	if (s->dc)
		dc_write(s->dc, &f->fh, off, len);
	rc = dafs_c_begin(s, DAFS_OP_WRITE, &q, &g, &cr);
	if (!rc) {
		/* a reply that comes after the wait gave up (an orphan's,
		 * delivered then) drops the range again too */
		cache_span(cr, f, off, len);
		/* given up on, it is fenced before this returns */
		cr->exposed = q.rkey != 0;
		rc = dafs_c_send(s, cr);
		if (!rc)
			rc = dafs_c_wait(s, cr, &r);
		if (!rc)
			rc = r.v <= len ? (ssize_t)r.v : -DAFS_EPROTO;
		dafs_c_end(s, cr);
	}
	if (s->dc)
		dc_write(s->dc, &f->fh, off, len);
	if (mem)
		atomic_fetch_sub(&mem->users, 1);
	drop_tmp(s, tmp);
	return rc;
}

DAFS_API int dafs_commit(dafs_file_t *f, int datasync)
{
	struct dafs_m_commit_req q;
	int rc, err;

	dafs_c_wb_sync_fh(f->s, &f->fh, f);
	err = dafs_c_wb_flush(f);
	q.open_id = f->open_id;
	q.datasync = !!datasync;
	rc = dafs_c_simple(f->s, DAFS_OP_COMMIT, &q, NULL);
	return err ? err : rc;
}

DAFS_API int dafs_fallocate(dafs_file_t *f, int mode, uint64_t off,
			    uint64_t len)
{
	struct dafs_m_fallocate_req q;
	int rc;

	dafs_c_wb_sync_fh(f->s, &f->fh, NULL);
	q.open_id = f->open_id;
	q.mode = (uint32_t)mode;
	q.off = off;
	q.len = len;
	rc = dafs_c_simple(f->s, DAFS_OP_FALLOCATE, &q, NULL);
	if (f->s->dc)
		dc_invalidate(f->s->dc, &f->fh); /* holes, sizes */
	return rc;
}

DAFS_API int64_t dafs_lseek(dafs_file_t *f, uint64_t off, int whence)
{
	struct dafs_m_lseek_req q;
	struct dafs_m_u64 r;
	int rc;

	if (whence != SEEK_DATA && whence != SEEK_HOLE)
		return -EINVAL;
	dafs_c_wb_sync_fh(f->s, &f->fh, NULL);
	q.open_id = f->open_id;
	q.off = off;
	q.whence = whence == SEEK_DATA ? DAFS_SEEK_DATA : DAFS_SEEK_HOLE;
	rc = dafs_c_simple(f->s, DAFS_OP_LSEEK, &q, &r);
	return rc ? rc : (int64_t)r.v;
}

DAFS_API ssize_t dafs_copy_range(dafs_file_t *src, uint64_t soff,
				 dafs_file_t *dst, uint64_t doff, uint64_t len)
{
	struct dafs_m_copy_range_req q;
	struct dafs_m_u64 r;
	int rc;

	if (src->s != dst->s)
		return -EXDEV;
	dafs_c_wb_sync_fh(src->s, &src->fh, NULL);
	dafs_c_wb_sync_fh(dst->s, &dst->fh, NULL);
	q.src = src->open_id;
	q.soff = soff;
	q.dst = dst->open_id;
	q.doff = doff;
	q.len = len;
	rc = dafs_c_simple(src->s, DAFS_OP_COPY_RANGE, &q, &r);
	if (dst->s->dc)
		dc_invalidate(dst->s->dc, &dst->fh);
	return rc ? rc : (ssize_t)r.v;
}

/* ---- locks ---- */

static void lock_req(const dafs_file_t *f, const dafs_lock_t *lk,
		     struct dafs_m_lock_req *q)
{
	q->open_id = f->open_id;
	q->owner = lk->owner;
	q->kind = lk->kind;
	q->type = lk->type;
	q->start = lk->start;
	q->len = lk->len;
}

/* LOCK, waiting for its answer until @deadline (0: the session's
 * timeout). */
static int lock_until(dafs_file_t *f, const dafs_lock_t *lk, uint64_t deadline)
{
	struct dafs_m_lock_req q;
	int rc;

	if (!f || !lk)
		return -EINVAL;
	/* a lock is a point of coherence: what is held goes first */
	dafs_c_wb_sync_fh(f->s, &f->fh, NULL);
	lock_req(f, lk, &q);
	rc = deadline ? dafs_c_simple_until(f->s, DAFS_OP_LOCK, &q, NULL,
					    deadline)
		      : dafs_c_simple(f->s, DAFS_OP_LOCK, &q, NULL);
	/* what was cached may predate the last holder's writes: a lock is a
	 * point of coherence, as an open is */
	if (!rc && lk->type != DAFS_LOCK_UNLOCK && f->cached && f->s->dc)
		dc_invalidate(f->s->dc, &f->fh);
	return rc;
}

DAFS_API int dafs_lock(dafs_file_t *f, const dafs_lock_t *lk)
{
	return lock_until(f, lk, 0);
}

DAFS_API int dafs_lock_timed(dafs_file_t *f, const dafs_lock_t *lk,
			     int timeout_ms)
{
	if (timeout_ms <= 0)
		return lock_until(f, lk, 0);
	return lock_until(f, lk,
			  dafs_c_now_ns() + (uint64_t)timeout_ms * 1000000u);
}

/* Sleep @ms, in slices, asking @stop between them; 1 if it said stop. */
static int lock_nap(uint32_t ms, dafs_lock_stop_fn stop, void *arg)
{
	uint32_t step;

	while (ms) {
		if (stop && stop(arg))
			return 1;
		step = ms < 10 ? ms : 10;
		usleep(step * 1000u);
		ms -= step;
	}
	return stop && stop(arg);
}

DAFS_API int dafs_lock_wait(dafs_file_t *f, const dafs_lock_t *lk,
			    int timeout_ms, dafs_lock_stop_fn stop, void *arg)
{
	uint64_t deadline = 0, now;
	uint32_t delay = 1, nap;
	int rc;

	if (timeout_ms > 0)
		deadline = dafs_c_now_ns() + (uint64_t)timeout_ms * 1000000u;
	for (;;) {
		rc = dafs_lock(f, lk);
		if (rc != -DAFS_EDENIED || timeout_ms == 0)
			return rc;
		nap = delay;
		if (deadline) {
			now = dafs_c_now_ns();
			if (now >= deadline)
				return rc;
			if ((deadline - now) / 1000000u < nap)
				nap = (uint32_t)((deadline - now) / 1000000u) + 1;
		}
		if (lock_nap(nap, stop, arg))
			return -EINTR;
		/* 1 ms, doubling to 100: a lock held briefly is taken soon,
		 * one held long costs a request every 100 ms */
		delay = delay * 2 > 100 ? 100 : delay * 2;
	}
}

DAFS_API int dafs_lock_test(dafs_file_t *f, dafs_lock_t *lk)
{
	struct dafs_m_lock_req q;
	struct dafs_m_lockt_rep r;
	int rc;

	if (!f || !lk)
		return -EINVAL;
	lock_req(f, lk, &q);
	rc = dafs_c_simple(f->s, DAFS_OP_LOCKT, &q, &r);
	if (rc)
		return rc;
	if (r.type > DAFS_LOCK_WRITE)
		return -DAFS_EPROTO;
	lk->type = r.type;
	lk->start = r.start;
	lk->len = r.len;
	lk->owner = 0;
	return 0;
}

/* ---- extended attributes ---- */

static ssize_t xattr_get(dafs_session_t *s, uint16_t op, const void *q,
			 void *buf, size_t size)
{
	struct dafs_m_xattr_rep r;
	struct creq *cr;
	ssize_t rc;

	rc = dafs_c_call(s, op, q, &r, NULL, &cr);
	if (rc)
		return rc;
	if (size && r.value.len != r.size)
		rc = -DAFS_EPROTO;
	else if (size && r.size > size)
		rc = -ERANGE;
	else {
		if (size)
			memcpy(buf, r.value.p, r.value.len);
		rc = r.size;
	}
	dafs_c_end(s, cr);
	return rc;
}

DAFS_API ssize_t dafs_getxattr(dafs_session_t *s, const dafs_fh_t *fh,
			       const char *name, void *buf, size_t size)
{
	struct dafs_m_getxattr_req q;
	int rc;

	q.fh = *fh;
	q.size = size > 65536 ? 65536 : (uint32_t)size;
	rc = name_view(name, &q.name);
	return rc ? rc : xattr_get(s, DAFS_OP_GETXATTR, &q, buf, q.size);
}

DAFS_API ssize_t dafs_listxattr(dafs_session_t *s, const dafs_fh_t *fh,
				char *buf, size_t size)
{
	struct dafs_m_listxattr_req q;

	q.fh = *fh;
	q.size = size > 65536 ? 65536 : (uint32_t)size;
	return xattr_get(s, DAFS_OP_LISTXATTR, &q, buf, q.size);
}

DAFS_API int dafs_setxattr(dafs_session_t *s, const dafs_fh_t *fh,
			   const char *name, const void *val, size_t size,
			   int flags)
{
	struct dafs_m_setxattr_req q;
	int rc;

	if (size > 65536)
		return -E2BIG;
	q.fh = *fh;
	q.flags = (uint32_t)flags;
	q.value.p = size ? val : (const uint8_t *)"";
	q.value.len = (uint32_t)size;
	rc = name_view(name, &q.name);
	return rc ? rc : dafs_c_simple(s, DAFS_OP_SETXATTR, &q, NULL);
}

DAFS_API int dafs_removexattr(dafs_session_t *s, const dafs_fh_t *fh,
			      const char *name)
{
	struct dafs_m_xattr_name_req q;
	int rc;

	q.fh = *fh;
	rc = name_view(name, &q.name);
	return rc ? rc : dafs_c_simple(s, DAFS_OP_REMOVEXATTR, &q, NULL);
}

/* ---- completion groups and asynchronous I/O ---- */

DAFS_API int dafs_cg_new(dafs_session_t *s, dafs_cg_t **out)
{
	dafs_cg_t *cg = calloc(1, sizeof(*cg));

	if (!cg)
		return -ENOMEM;
	cg->s = s;
	*out = cg;
	return 0;
}

DAFS_API int dafs_cg_free(dafs_cg_t *cg)
{
	if (!cg)
		return 0;
	if (cg->outstanding)
		return -EBUSY;
	free(cg->q);
	free(cg);
	return 0;
}

static int submit_async(dafs_cg_t *cg, struct creq *cr)
{
	dafs_session_t *s = cg->s;
	int rc;

	pthread_mutex_lock(&s->lock);
	cg->outstanding++;
	pthread_mutex_unlock(&s->lock);
	rc = dafs_c_send(s, cr);
	if (rc) {
		pthread_mutex_lock(&s->lock);
		cg->outstanding--;
		pthread_mutex_unlock(&s->lock);
		dafs_c_tmp_put(cr->tmp_reg);
		cr->tmp_reg = NULL;
		if (cr->mem)
			atomic_fetch_sub(&cr->mem->users, 1);
		cr->mem = NULL;
		dafs_c_async_release(cr);
		dafs_c_end(s, cr);
	}
	return rc;
}

static int io_async(dafs_file_t *f, int write, void *buf, size_t len,
		    uint64_t off, dafs_mem_t *mem, dafs_cg_t *cg, void *ctx)
{
	dafs_session_t *s = f->s;
	struct dafs_m_read_req rq;
	struct dafs_m_write_req wq;
	struct dafs_sge g;
	struct dafs_rc_entry *tmp;
	struct creq *cr;
	int rc;

	if (cg->s != s)
		return -EINVAL;
	dafs_c_wb_sync_fh(s, &f->fh, NULL);
	if (write && s->dc)
		dc_write(s->dc, &f->fh, off, len);
	rc = prep_io(f, write, buf, len, off, mem, &rq, &wq, &g, &tmp);
	if (rc)
		return rc;
	rc = dafs_c_begin(s, write ? DAFS_OP_WRITE : DAFS_OP_READ,
			  write ? (void *)&wq : (void *)&rq, &g, &cr);
	if (rc) {
		drop_tmp(s, tmp);
		return rc;
	}
	cr->kind = write ? CREQ_WRITE : CREQ_READ;
	cr->cg = cg;
	cr->ctx = ctx;
	cr->ubuf = buf;
	cr->ulen = (uint32_t)len;
	cr->inl_read = !write && !rq.rkey;
	cr->tmp_reg = tmp;
	cr->mem = mem;
	if (mem)
		atomic_fetch_add(&mem->users, 1);
	if (write)
		cache_span(cr, f, off, len);
	return submit_async(cg, cr);
}

DAFS_API int dafs_read_async(dafs_file_t *f, void *buf, size_t len,
			     uint64_t off, dafs_mem_t *mem, dafs_cg_t *cg,
			     void *ctx)
{
	return io_async(f, 0, buf, len, off, mem, cg, ctx);
}

DAFS_API int dafs_write_async(dafs_file_t *f, const void *buf, size_t len,
			      uint64_t off, dafs_mem_t *mem, dafs_cg_t *cg,
			      void *ctx)
{
	return io_async(f, 1, (void *)buf, len, off, mem, cg, ctx);
}

static int cg_take(dafs_cg_t *cg, dafs_completion_t *out, int n)
{
	int i = 0;

	while (i < n && cg->count) {
		out[i++] = cg->q[cg->head];
		cg->head = (cg->head + 1) % cg->cap;
		cg->count--;
	}
	return i;
}

DAFS_API int dafs_cg_poll(dafs_cg_t *cg, dafs_completion_t *out, int n)
{
	dafs_session_t *s = cg->s;
	int got, rc;

	rc = dafs_c_progress_cg(s, cg, 0);
	pthread_mutex_lock(&s->lock);
	got = cg_take(cg, out, n);
	pthread_mutex_unlock(&s->lock);
	return got ? got : rc;
}

DAFS_API int dafs_cg_wait(dafs_cg_t *cg, dafs_completion_t *out, int n,
			  int timeout_ms)
{
	dafs_session_t *s = cg->s;
	int got, rc;

	pthread_mutex_lock(&s->lock);
	got = cg_take(cg, out, n);
	if (!got && !cg->outstanding) {
		pthread_mutex_unlock(&s->lock);
		return -ENOENT;
	}
	pthread_mutex_unlock(&s->lock);
	if (got)
		return got;
	rc = dafs_c_progress_cg(s, cg, timeout_ms);
	pthread_mutex_lock(&s->lock);
	got = cg_take(cg, out, n);
	pthread_mutex_unlock(&s->lock);
	return got ? got : rc;
}

/*
 * BATCH: every element is direct (server RDMA) when its buffer is
 * registered or bigger than the inline limit, else inline. Large writes use
 * the server's RDMA READ whatever the session's write method, because one
 * request can gather only one payload.
 */
DAFS_API int dafs_batch_io(dafs_session_t *s, const dafs_iodesc_t *io, int n,
			   dafs_cg_t *cg)
{
	struct dafs_m_batch_req q;
	struct dafs_m_batch_desc d;
	struct dafs_enc e;
	uint8_t *descs = NULL;
	dafs_iodesc_t *copy = NULL;
	struct dc_span *dcw = NULL;
	struct creq *cr;
	size_t cap = 0;
	int i, rc = 0;

	if (n <= 0 || n > DAFS_BATCH_MAX || cg->s != s)
		return -EINVAL;
	for (i = 0; i < n; i++) {
		if (io[i].file->s != s || io[i].len > s->p.max_io)
			return -EINVAL;
		if (io[i].write && io[i].len <= s->p.inline_max)
			cap += io[i].len;
		if (!io[i].mem && io[i].len > s->p.inline_max)
			return -EINVAL; /* direct elements need registration */
		if (io[i].mem && check_mem(io[i].mem, io[i].buf, io[i].len))
			return -EINVAL;
	}
	for (i = 0; i < n; i++)
		dafs_c_wb_sync_fh(s, &io[i].file->fh, NULL);
	for (i = 0; i < n; i++)
		if (io[i].write && s->dc)
			dc_write(s->dc, &io[i].file->fh, io[i].off, io[i].len);
	cap += (size_t)n * 64;
	descs = malloc(cap);
	copy = malloc((size_t)n * sizeof(*copy));
	if (s->dc)
		dcw = malloc((size_t)n * sizeof(*dcw));
	if (!descs || !copy || (s->dc && !dcw)) {
		rc = -ENOMEM;
		goto out;
	}
	memcpy(copy, io, (size_t)n * sizeof(*copy));
	dafs_enc_init(&e, descs, cap);
	for (i = 0; i < n; i++) {
		int direct = io[i].len > s->p.inline_max;

		memset(&d, 0, sizeof(d));
		d.open_id = io[i].file->open_id;
		d.off = io[i].off;
		d.len = io[i].len;
		d.flags = io[i].write ? DAFS_BF_WRITE : 0;
		if (direct) {
			d.rkey = io[i].mem->mr->rkey;
			d.raddr = (uintptr_t)io[i].buf;
		} else if (io[i].write) {
			d.data.p = io[i].buf;
			d.data.len = io[i].len;
		}
		dafs_enc_msg(&e, &dafs_mt_batch_desc, &d);
	}
	if (e.err) {
		rc = e.err;
		goto out;
	}
	q.n = (uint32_t)n;
	q.descs.p = descs;
	q.descs.len = (uint32_t)e.pos;
	rc = dafs_c_begin(s, DAFS_OP_BATCH, &q, NULL, &cr);
	if (rc)
		goto out;
	cr->kind = CREQ_BATCH;
	cr->cg = cg;
	cr->batch = copy;
	cr->nbatch = n;
	copy = NULL;
	for (i = 0; i < n; i++)
		if (cr->batch[i].mem)
			atomic_fetch_add(&cr->batch[i].mem->users, 1);
	cr->dcw = dcw;
	dcw = NULL;
	for (i = 0; cr->dcw && i < n; i++)
		if (io[i].write) {
			cr->dcw[cr->ndcw].fh = io[i].file->fh;
			cr->dcw[cr->ndcw].off = io[i].off;
			cr->dcw[cr->ndcw++].len = io[i].len;
		}
	pthread_mutex_lock(&s->lock);
	/* one outstanding per element; submit_async adds the last */
	cg->outstanding += (uint32_t)n - 1;
	pthread_mutex_unlock(&s->lock);
	rc = submit_async(cg, cr);
	if (rc) {
		pthread_mutex_lock(&s->lock);
		cg->outstanding -= (uint32_t)n - 1;
		pthread_mutex_unlock(&s->lock);
	}
out:
	free(descs);
	free(copy);
	free(dcw);
	return rc;
}
