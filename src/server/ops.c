/*
 * ops.c - dafsd's request handlers, dispatched by opcode through a table.
 *
 * Each handler resolves the request's file handles with the server's own
 * credentials (open_by_handle_at needs CAP_DAC_READ_SEARCH), then switches
 * the thread to the request's credentials for the operation itself, so the
 * kernel enforces permissions as for a local process of that user.
 * Handlers return 0 or a negative error; the dispatcher builds the reply.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

#include "server_i.h"

/* Reply bodies are at most this big (the data of READ and friends is put
 * in place separately). */
union rep_body {
	struct dafs_m_u32 u32;
	struct dafs_m_u64 u64;
	struct dafs_m_attr attr;
	struct dafs_m_fh_attr fh_attr;
	struct dafs_m_create_rep create;
	struct dafs_m_path path;
	struct dafs_m_statfs statfs;
	struct dafs_m_open_rep open;
	struct dafs_m_xattr_rep xattr;
};

/*
 * A handler gets the decoded body and the O_PATH fds of the handles its
 * table entry names (resolved by the dispatcher with the server's own
 * credentials, in order), and runs with the request's credentials when its
 * entry says so. It either fills @rep (encoded by the dispatcher) or builds
 * its reply itself and sets *@len.
 */
typedef int (*handler_fn)(struct srv_req *r, const void *body, const int *fd,
			  union rep_body *rep, uint32_t *len);

/* ---- helpers ---- */

static int cred_on(struct srv_req *r)
{
	const struct dafs_creds *c;
	uint32_t id = r->h.arg;

	if (!r->srv->can_switch)
		return 0;
	if (id >= atomic_load_explicit(&r->sess->ncreds,
				       memory_order_acquire))
		return -DAFS_EBADCRED;
	c = &r->sess->creds[id];
	return dafs_creds_apply(c);
}

static void cred_off(struct srv_req *r)
{
	if (r->srv->can_switch)
		dafs_creds_reset();
}

/* Copy a NAME/PATH view to a C string (the codec guarantees no NUL and the
 * length bound). */
static void cstr(char *dst, const struct dafs_view *v)
{
	memcpy(dst, v->p, v->len);
	dst[v->len] = '\0';
}

static void closefd(int fd)
{
	if (fd >= 0)
		close(fd);
}

/* ---- open files of the session ---- */

/*
 * The table is an array of pointers to entries that never move, so a user
 * holding an entry across a request is not left with a dangling pointer
 * when another request's open grows the table.
 */
static uint64_t open_add(struct srv_session *s, int fd, uint32_t flags,
			 const struct srv_dkey *dk)
{
	struct srv_open *o, **n;
	uint32_t i, cap;
	uint64_t id = 0;

	pthread_mutex_lock(&s->lock);
	if (s->open_free == UINT32_MAX) {
		cap = s->nopens ? s->nopens * 2 : 64;
		n = realloc(s->opens, cap * sizeof(*n));
		if (!n)
			goto out;
		s->opens = n;
		for (i = s->nopens; i < cap; i++) {
			n[i] = calloc(1, sizeof(*n[i]));
			if (!n[i])
				break;
			n[i]->fd = -1;
			n[i]->gen = 1;
			n[i]->idx = i;
			n[i]->next_free = i + 1 < cap ? i + 1 : UINT32_MAX;
		}
		if (i > s->nopens)
			n[i - 1]->next_free = UINT32_MAX;
		if (i == s->nopens)
			goto out;
		s->open_free = s->nopens;
		s->nopens = i;
	}
	i = s->open_free;
	o = s->opens[i];
	s->open_free = o->next_free;
	s->nopen_used++;
	o->fd = fd;
	o->flags = flags;
	o->users = 0;
	o->closing = 0;
	o->revoked = 0;
	o->dk = dk ? *dk : (struct srv_dkey){0};
	id = (uint64_t)o->gen << 32 | i;
out:
	pthread_mutex_unlock(&s->lock);
	return id;
}

/* Free the slot of @o (s->lock held); its delegation record is returned
 * in *@dk for the caller to close outside the lock. */
static void open_release(struct srv_session *s, struct srv_open *o,
			 struct srv_dkey *dk)
{
	closefd(o->fd);
	*dk = o->dk;
	o->dk.tracked = 0;
	o->fd = -1;
	o->gen++;
	o->next_free = s->open_free;
	s->open_free = o->idx;
	s->nopen_used--;
}

/*
 * Before an OPEN or CREATE does anything: EMFILE, as for a local process
 * out of descriptors, if the session has its --max-opens files open. A
 * client that opens without closing would otherwise use up the server's
 * descriptors, and every session's opens, accepts and directory reads
 * with them. (Checked first, so a CREATE that is refused has made no
 * file; opens racing past it can pass the limit by a handful.)
 */
static int opens_full(struct srv_req *r)
{
	struct srv_session *s = r->sess;
	int full;

	pthread_mutex_lock(&s->lock);
	full = s->nopen_used >= r->srv->max_opens;
	pthread_mutex_unlock(&s->lock);
	return full ? -EMFILE : 0;
}

/* Take a reference on open file @id; -DAFS_EBADOPEN if unknown. */
static int open_get(struct srv_session *s, uint64_t id, struct srv_open **op)
{
	uint32_t i = (uint32_t)id, gen = (uint32_t)(id >> 32);
	int rc = -DAFS_EBADOPEN;

	pthread_mutex_lock(&s->lock);
	if (i < s->nopens && s->opens[i]->fd >= 0 && s->opens[i]->gen == gen &&
	    !s->opens[i]->closing) {
		s->opens[i]->users++;
		*op = s->opens[i];
		rc = 0;
	}
	pthread_mutex_unlock(&s->lock);
	return rc;
}

static void open_put(struct srv_session *s, struct srv_open *o)
{
	struct srv_dkey dk = {0};

	pthread_mutex_lock(&s->lock);
	if (--o->users == 0 && o->closing)
		open_release(s, o, &dk);
	pthread_mutex_unlock(&s->lock);
	srv_deleg_close(s, &dk);
}

/* open_get for I/O: a file whose delegation was revoked is refused. */
static int open_get_io(struct srv_session *s, uint64_t id,
		       struct srv_open **op)
{
	int rc = open_get(s, id, op);

	if (!rc && atomic_load(&(*op)->revoked)) {
		open_put(s, *op);
		rc = -DAFS_EREVOKED;
	}
	return rc;
}

static int open_close(struct srv_session *s, uint64_t id)
{
	struct srv_open *o;
	int rc = open_get(s, id, &o);

	if (rc)
		return rc;
	pthread_mutex_lock(&s->lock);
	o->closing = 1;
	pthread_mutex_unlock(&s->lock);
	open_put(s, o);
	return 0;
}

void srv_session_close_files(struct srv_session *s)
{
	struct srv_dkey dk;
	uint32_t i;

	/* first, so that no revocation looks at the table freed below */
	srv_deleg_owner_gone(s);
	for (i = 0; i < s->nopens; i++) {
		if (s->opens[i]->fd >= 0 && !s->opens[i]->users) {
			open_release(s, s->opens[i], &dk);
			srv_deleg_close(s, &dk);
		}
		free(s->opens[i]);
	}
	free(s->opens);
	s->opens = NULL;
	s->nopens = 0;
}

void srv_session_revoke(struct srv_session *s, const struct dlg_key *key)
{
	uint32_t i;

	pthread_mutex_lock(&s->lock);
	for (i = 0; i < s->nopens; i++)
		if (s->opens[i]->fd >= 0 && s->opens[i]->dk.tracked &&
		    s->opens[i]->dk.key.dev == key->dev &&
		    s->opens[i]->dk.key.ino == key->ino)
			atomic_store(&s->opens[i]->revoked, 1);
	pthread_mutex_unlock(&s->lock);
}

/* ---- handlers ---- */

static int h_null(struct srv_req *r, const void *b, const int *fd,
		  union rep_body *rep, uint32_t *len)
{
	(void)fd, (void)r, (void)b, (void)rep, (void)len;
	return 0;
}

static int h_cred_register(struct srv_req *r, const void *b, const int *fd,
			   union rep_body *rep, uint32_t *len)
{
	const struct dafs_m_cred_register_req *q = b;
	struct srv_session *s = r->sess;
	struct dafs_creds c = {0};
	uint32_t i;
	int rc = 0;

	(void)fd, (void)len;
	c.uid = q->uid;
	c.gid = q->gid;
	c.ngroups = q->groups.n;
	memcpy(c.groups, q->groups.v, q->groups.n * sizeof(uint32_t));
	if (r->srv->cfg.root_squash && c.uid == 0) {
		c.uid = c.gid = 65534;
		c.ngroups = 0;
	}
	pthread_mutex_lock(&s->lock);
	/* never id 0: the anonymous slot, and the client's "default" */
	for (i = 1; i < s->ncreds; i++)
		if (!memcmp(&s->creds[i], &c, sizeof(c)))
			break;
	if (i == s->ncreds) {
		if (s->ncreds == SRV_MAX_CREDS)
			rc = -ENOSPC;
		else {
			s->creds[i] = c;
			atomic_store_explicit(&s->ncreds, i + 1,
					      memory_order_release);
		}
	}
	pthread_mutex_unlock(&s->lock);
	rep->u32.v = i;
	return rc;
}

static int h_probe_callback(struct srv_req *r, const void *b, const int *fd,
			    union rep_body *rep, uint32_t *len)
{
	(void)fd, (void)b, (void)len;
	return srv_callback(r->sess, DAFS_OP_CB_NULL, NULL, 5000, &rep->u64.v);
}

static int h_lookup(struct srv_req *r, const void *b, const int *fd,
		    union rep_body *rep, uint32_t *len)
{
	const struct dafs_m_dirop_req *q = b;
	char name[DAFS_NAME_MAX + 1];

	(void)len;
	cstr(name, &q->name);
	return dafs_be_lookup(r->sess->ex, fd[0], name, &rep->fh_attr.fh,
			      &rep->fh_attr.attr);
}

static int h_getattr(struct srv_req *r, const void *b, const int *fd,
		     union rep_body *rep, uint32_t *len)
{
	(void)b, (void)len;
	if (r->attr0) {
		rep->attr.attr = *r->attr0;
		return 0;
	}
	return dafs_be_getattr(fd[0], &rep->attr.attr);
}

static int h_access(struct srv_req *r, const void *b, const int *fd,
		    union rep_body *rep, uint32_t *len)
{
	const struct dafs_m_access_req *q = b;

	(void)r, (void)rep, (void)len;
	return dafs_be_access(fd[0], q->mask);
}

static int h_setattr(struct srv_req *r, const void *b, const int *fd,
		     union rep_body *rep, uint32_t *len)
{
	const struct dafs_m_setattr_req *q = b;

	(void)r, (void)len;
	return dafs_be_setattr(fd[0], &q->sa, &rep->attr.attr);
}

/* What an open with wire flags @f does to the file, for delegations. */
static int open_kind(uint32_t f)
{
	return (f & DAFS_O_ACCMODE) != DAFS_O_RDONLY || (f & DAFS_O_TRUNC)
		       ? DLG_C_WRITE
		       : DLG_C_READ;
}

/* Record the open @iofd (its delegation operation begun as @dk) in the
 * session and grant what @flags ask for. Returns the open id, or 0 after
 * closing @iofd and ending @dk. */
static uint64_t open_finish(struct srv_req *r, int iofd, uint32_t flags,
			    struct srv_dkey *dk, uint32_t *deleg,
			    uint64_t *deleg_id)
{
	uint64_t id;
	int rc;

	rc = srv_deleg_open(r, dk, flags & DAFS_O_WANT_DELEG, deleg_id);
	if (rc < 0) {
		close(iofd);
		return 0;
	}
	*deleg = (uint32_t)rc;
	id = open_add(r->sess, iofd, flags & ~DAFS_O_WANT_DELEG, dk);
	if (!id) {
		close(iofd);
		srv_deleg_close(r->sess, dk);
		/* a granted delegation stays: its holder learns of it on
		 * the retry, or it goes with the session */
	}
	return id;
}

/* A create's delegation operation. */
struct create_dk {
	struct srv_req *r;
	struct srv_dkey dk;
	int kind;
};

/* dafs_be_create_hook's call with the existing file it is about to open
 * (and truncate): begin the operation on that very file (again, if the
 * name held another at an earlier call). So another client's delegation
 * is recalled, and its holder's writes have landed, before an O_TRUNC
 * truncates. */
static int create_existing(void *arg, int pfd)
{
	struct create_dk *c = arg;

	if (c->dk.tracked && srv_deleg_is(&c->dk, pfd))
		return 0;
	srv_deleg_end(c->r->srv, &c->dk);
	return srv_deleg_begin_fd(c->r, pfd, c->kind, &c->dk);
}

static int h_create(struct srv_req *r, const void *b, const int *fd,
		    union rep_body *rep, uint32_t *len)
{
	const struct dafs_m_create_req *q = b;
	uint32_t flags = q->flags & ~DAFS_O_WANT_DELEG;
	char name[DAFS_NAME_MAX + 1];
	struct create_dk c = {.r = r, .kind = open_kind(flags)};
	struct srv_dkey *dk = &c.dk;
	int iofd, rc;

	(void)len;
	if (flags & ~DAFS_O_ALL)
		return -EINVAL;
	rc = opens_full(r);
	if (rc)
		return rc;
	cstr(name, &q->name);
	/* a file that exists is opened, with the same conflicts as an
	 * open: create_existing begins on it */
	iofd = dafs_be_create_hook(r->sess->ex, fd[0], name, flags, q->mode,
				   create_existing, &c, &rep->create.fh,
				   &rep->create.attr);
	if (iofd < 0) {
		srv_deleg_end(r->srv, dk);
		return iofd;
	}
	/* a file we created is new, but the hook may have begun on one
	 * found at the name first and removed since: begin on ours */
	if (dk->tracked && !srv_deleg_is(dk, iofd))
		srv_deleg_end(r->srv, dk);
	rc = 0;
	if (!dk->tracked) {
		/* the file exists now: a retry would find it there (EEXIST
		 * for an exclusive create), so this waits on the recalls
		 * rather than answer DAFS_EDELAY */
		r->committed = 1;
		rc = srv_deleg_begin_fd(r, iofd, c.kind, dk);
		/* another client may have opened the new file, been granted
		 * a delegation and written before that wait ended */
		if (!rc)
			rc = dafs_be_getattr(iofd, &rep->create.attr);
	}
	if (rc) {
		srv_deleg_end(r->srv, dk);
		close(iofd);
		return rc;
	}
	rep->create.open_id =
		open_finish(r, iofd, q->flags, dk, &rep->create.deleg,
			    &rep->create.deleg_id);
	return rep->create.open_id ? 0 : -ENOMEM;
}

static int h_mkdir(struct srv_req *r, const void *b, const int *fd,
		   union rep_body *rep, uint32_t *len)
{
	const struct dafs_m_mkdir_req *q = b;
	char name[DAFS_NAME_MAX + 1];

	(void)len;
	cstr(name, &q->name);
	return dafs_be_mkdir(r->sess->ex, fd[0], name, q->mode,
			     &rep->fh_attr.fh, &rep->fh_attr.attr);
}

static int h_mknod(struct srv_req *r, const void *b, const int *fd,
		   union rep_body *rep, uint32_t *len)
{
	const struct dafs_m_mknod_req *q = b;
	char name[DAFS_NAME_MAX + 1];

	(void)len;
	cstr(name, &q->name);
	return dafs_be_mknod(r->sess->ex, fd[0], name, q->mode, q->rdev,
			     &rep->fh_attr.fh, &rep->fh_attr.attr);
}

static int h_symlink(struct srv_req *r, const void *b, const int *fd,
		     union rep_body *rep, uint32_t *len)
{
	const struct dafs_m_symlink_req *q = b;
	char name[DAFS_NAME_MAX + 1], target[DAFS_PATH_MAX + 1];

	(void)len;
	cstr(name, &q->name);
	cstr(target, &q->target);
	return dafs_be_symlink(r->sess->ex, fd[0], name, target,
			       &rep->fh_attr.fh, &rep->fh_attr.attr);
}

static int h_readlink(struct srv_req *r, const void *b, const int *fd,
		      union rep_body *rep, uint32_t *len)
{
	/* the target is put straight after the reply's length field */
	char *dst = (char *)r->reply + DAFS_HDR_SIZE + 4;
	int rc;

	(void)b, (void)rep;
	rc = dafs_be_readlink(fd[0], dst, DAFS_PATH_MAX + 1);
	if (rc < 0)
		return rc;
	if (rc == 0)
		return -EIO;
	dafs_put32(r->reply + DAFS_HDR_SIZE, (uint32_t)rc);
	*len = DAFS_HDR_SIZE + 4 + (uint32_t)rc;
	return 0;
}

static int h_link(struct srv_req *r, const void *b, const int *fd,
		  union rep_body *rep, uint32_t *len)
{
	const struct dafs_m_link_req *q = b;
	char name[DAFS_NAME_MAX + 1];

	(void)r, (void)len;
	cstr(name, &q->name);
	return dafs_be_link(fd[0], fd[1], name, &rep->attr.attr);
}

static int dirop(const void *b, int dirfd,
		 int (*fn)(int dirfd, const char *name))
{
	const struct dafs_m_dirop_req *q = b;
	char name[DAFS_NAME_MAX + 1];

	cstr(name, &q->name);
	return fn(dirfd, name);
}

static int h_remove(struct srv_req *r, const void *b, const int *fd,
		    union rep_body *rep, uint32_t *len)
{
	const struct dafs_m_dirop_req *q = b;
	char name[DAFS_NAME_MAX + 1];
	struct srv_dkey dk;
	int rc;

	(void)rep, (void)len;
	cstr(name, &q->name);
	rc = srv_deleg_begin_name(r, fd[0], name, DLG_C_WRITE, &dk);
	if (rc)
		return rc;
	rc = dafs_be_remove(fd[0], name);
	srv_deleg_end(r->srv, &dk);
	return rc;
}

static int h_rmdir(struct srv_req *r, const void *b, const int *fd,
		   union rep_body *rep, uint32_t *len)
{
	(void)r, (void)rep, (void)len;
	return dirop(b, fd[0], dafs_be_rmdir);
}

static int h_rename(struct srv_req *r, const void *b, const int *fd,
		    union rep_body *rep, uint32_t *len)
{
	const struct dafs_m_rename_req *q = b;
	char sname[DAFS_NAME_MAX + 1], dname[DAFS_NAME_MAX + 1];

	struct srv_dkey sdk, ddk = {0};
	int rc;

	(void)rep, (void)len;
	cstr(sname, &q->sname);
	cstr(dname, &q->dname);
	/* the file renamed, and the one it replaces (or exchanges with) */
	rc = srv_deleg_begin_name(r, fd[0], sname, DLG_C_WRITE, &sdk);
	if (!rc)
		rc = srv_deleg_begin_name(r, fd[1], dname, DLG_C_WRITE, &ddk);
	if (!rc)
		rc = dafs_be_rename(fd[0], sname, fd[1], dname, q->flags);
	srv_deleg_end(r->srv, &ddk);
	srv_deleg_end(r->srv, &sdk);
	return rc;
}

struct rd_ctx {
	struct dafs_enc e;
	int plus;
	uint32_t n;
};

static int rd_emit(void *arg, const struct dafs_be_dirent *ent)
{
	struct rd_ctx *c = arg;
	struct dafs_m_dirent_plus d;
	size_t pos = c->e.pos;

	d.cookie = ent->cookie;
	d.ino = ent->ino;
	d.type = ent->type;
	d.name.p = (const uint8_t *)ent->name;
	d.name.len = (uint32_t)strlen(ent->name);
	if (c->plus) {
		d.fh = ent->fh;
		d.attr = ent->attr;
	}
	/* the common prefix of dirent and dirent_plus is identical */
	dafs_enc_msg(&c->e, c->plus ? &dafs_mt_dirent_plus : &dafs_mt_dirent,
		     &d);
	if (c->e.err == -EMSGSIZE) {
		c->e.pos = pos;
		c->e.err = 0;
		return 1; /* does not fit: resume here next time */
	}
	if (c->e.err)
		return c->e.err;
	c->n++;
	return 0;
}

static int h_readdir(struct srv_req *r, const void *b, const int *fd,
		     union rep_body *rep, uint32_t *len)
{
	const struct dafs_m_readdir_req *q = b;
	/* layout: header, le32 eof, le32 entries length, entries */
	const uint32_t start = DAFS_HDR_SIZE + 8;
	struct rd_ctx c;
	uint32_t max = q->maxbytes;
	int rc, eof = 0;

	(void)rep;
	if (max > r->reply_cap - start)
		max = r->reply_cap - start;
	dafs_enc_init(&c.e, r->reply + start, max);
	c.plus = !!q->plus;
	c.n = 0;
	rc = dafs_be_readdir(r->sess->ex, fd[0], q->cookie, c.plus, rd_emit, &c,
			     &eof);
	if (rc < 0)
		return rc;
	if (!eof && c.n == 0)
		return -EINVAL; /* not even one entry fits in maxbytes */
	dafs_put32(r->reply + DAFS_HDR_SIZE, (uint32_t)eof);
	dafs_put32(r->reply + DAFS_HDR_SIZE + 4, (uint32_t)c.e.pos);
	*len = start + (uint32_t)c.e.pos;
	return 0;
}

static int h_statfs(struct srv_req *r, const void *b, const int *fd,
		    union rep_body *rep, uint32_t *len)
{
	(void)r, (void)b, (void)len;
	return dafs_be_statfs(fd[0], &rep->statfs.st);
}

static int h_open(struct srv_req *r, const void *b, const int *fd,
		  union rep_body *rep, uint32_t *len)
{
	const struct dafs_m_open_req *q = b;
	uint32_t flags = q->flags & ~DAFS_O_WANT_DELEG;
	struct srv_dkey dk = {0};
	int iofd, rc;

	(void)len;
	if (flags & (~DAFS_O_ALL | DAFS_O_EXCL))
		return -EINVAL;
	rc = opens_full(r);
	if (rc)
		return rc;
	rc = srv_deleg_begin_fd(r, fd[0], open_kind(flags), &dk);
	if (rc)
		return rc;
	iofd = dafs_be_open(fd[0], flags, &rep->open.attr);
	if (iofd < 0) {
		srv_deleg_end(r->srv, &dk);
		return iofd;
	}
	rep->open.open_id = open_finish(r, iofd, q->flags, &dk,
					&rep->open.deleg, &rep->open.deleg_id);
	return rep->open.open_id ? 0 : -ENOMEM;
}

static int h_close(struct srv_req *r, const void *b, const int *fd,
		   union rep_body *rep, uint32_t *len)
{
	const struct dafs_m_u64 *q = b;

	(void)fd, (void)rep, (void)len;
	return open_close(r->sess, q->v);
}

/* pread/pwrite until done or EOF; returns bytes or -errno. */
static ssize_t full_pread(int fd, void *buf, size_t len, uint64_t off)
{
	size_t done = 0;
	ssize_t n;

	while (done < len) {
		n = pread(fd, (char *)buf + done, len - done,
			  (off_t)(off + done));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return done ? (ssize_t)done : -errno;
		}
		if (n == 0)
			break;
		done += (size_t)n;
	}
	return (ssize_t)done;
}

static ssize_t full_pwrite(int fd, const void *buf, size_t len, uint64_t off)
{
	size_t done = 0;
	ssize_t n;

	while (done < len) {
		n = pwrite(fd, (const char *)buf + done, len - done,
			   (off_t)(off + done));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return done ? (ssize_t)done : -errno;
		}
		done += (size_t)n;
	}
	return (ssize_t)done;
}

/*
 * A direct read straight from the file by rdma_write_file, which spares
 * the copy into the I/O buffer. Returns the bytes sent (fewer than @len at
 * end of file), or a negative error when nothing was sent: this transport
 * or this file cannot do it, or the file could not be read, and the
 * caller goes through the I/O buffer instead.
 */
static ssize_t read_from_file(struct srv_req *r, struct srv_open *o,
			      uint64_t off, uint32_t len, uint32_t rkey,
			      uint64_t raddr)
{
	struct dafs_ep *ep = r->conn->ep;
	struct stat st;
	uint64_t n;
	int rc;

	/* O_DIRECT: the client asked to bypass the page cache, and its
	 * alignment errors must reach it as this read's error, which pread
	 * reports and a frame already under way could not (the transport
	 * refuses such a descriptor anyway). */
	if (o->flags & DAFS_O_DIRECT)
		return -EOPNOTSUPP;
	if (fstat(o->fd, &st))
		return -errno;
	/* The size decides how much is sent, and only a regular file's
	 * size says how much there is to read. */
	if (!S_ISREG(st.st_mode))
		return -EOPNOTSUPP;
	n = (uint64_t)st.st_size > off ? (uint64_t)st.st_size - off : 0;
	if (n > len)
		n = len;
	if (!n)
		return 0;
	/* unsignaled: RC ordering places it before the reply. If the file
	 * shrinks meanwhile the client gets zeros for the lost tail. */
	rc = ep->ops->rdma_write_file(ep, 0, o->fd, off, (uint32_t)n, raddr,
				      rkey, 0);
	return rc ? rc : (ssize_t)n;
}

/*
 * One read: into @inl (inline, the reply) or, when @rkey is set, by RDMA
 * WRITE into the client's memory - from the file itself where the
 * transport can, else through the I/O buffer.
 */
static ssize_t do_read(struct srv_req *r, uint64_t open_id, uint64_t off,
		       uint32_t len, uint32_t rkey, uint64_t raddr,
		       uint8_t *inl)
{
	struct srv_open *o;
	struct dafs_sge sge;
	uint32_t direct;
	ssize_t n;
	int rc;

	if (len > r->sess->p.max_io || (!rkey && !inl))
		return -EINVAL;
	if (off > (uint64_t)INT64_MAX)
		return -EINVAL;
	rc = open_get_io(r->sess, open_id, &o);
	if (rc)
		return rc;
	if ((o->flags & DAFS_O_ACCMODE) == DAFS_O_WRONLY) {
		open_put(r->sess, o);
		return -EBADF;
	}
	if (rkey) {
		/* the fd stays ours until the transport has read it */
		n = read_from_file(r, o, off, len, rkey, raddr);
		if (n >= 0) {
			open_put(r->sess, o);
			return n;
		}
		/* Nothing was sent. Through the I/O buffer a file that
		 * cannot be read fails as it always did: a short count, or
		 * its error. */
	}
	/* O_DIRECT wants an aligned buffer: the I/O buffer is page-aligned,
	 * the reply is not (offset and length alignment stay the caller's,
	 * with EINVAL as on a local disk) */
	direct = o->flags & DAFS_O_DIRECT;
	if (rkey || direct)
		srv_fence_wait(r->srv, r->fence);
	n = full_pread(o->fd, rkey || direct ? r->iobuf : inl, len, off);
	open_put(r->sess, o);
	if (n > 0 && !rkey && inl != r->iobuf && direct)
		memcpy(inl, r->iobuf, (size_t)n);
	if (n > 0 && rkey) {
		uint64_t wr_id;
		unsigned fl;

		sge.addr = r->iobuf;
		sge.len = (uint32_t)n;
		sge.lkey = r->iomr->lkey;
		/* RC ordering places it before the reply; signaled only
		 * where the transport reads the buffer after the post, so
		 * that the next writer of the buffer waits for it */
		fl = srv_fence_arm(r->srv, r->fence, r->conn, &wr_id);
		rc = r->conn->ep->ops->rdma_write(r->conn->ep, wr_id, &sge, 1,
						  raddr, rkey, fl);
		if (rc) {
			srv_fence_disarm(r->fence);
			return rc;
		}
	}
	return n;
}

static ssize_t do_write(struct srv_req *r, uint64_t open_id, uint64_t off,
			uint32_t len, uint32_t rkey, uint64_t raddr,
			const struct dafs_view *data)
{
	struct srv_wait w = {0, 0};
	struct srv_open *o;
	struct dafs_sge sge;
	const void *src;
	ssize_t n;
	int rc;

	if (len > r->sess->p.max_io || off > (uint64_t)INT64_MAX)
		return -EINVAL;
	if (!rkey && data->len != len)
		return -EINVAL;
	rc = open_get_io(r->sess, open_id, &o);
	if (rc)
		return rc;
	if ((o->flags & DAFS_O_ACCMODE) == DAFS_O_RDONLY) {
		rc = -EBADF;
		goto out;
	}
	src = data->p;
	/* both write the I/O buffer below */
	if (len && (rkey || (o->flags & DAFS_O_DIRECT)))
		srv_fence_wait(r->srv, r->fence);
	if (rkey && len) {
		sge.addr = r->iobuf;
		sge.len = len;
		sge.lkey = r->iomr->lkey;
		rc = r->conn->ep->ops->rdma_read(r->conn->ep, (uintptr_t)&w,
						 &sge, raddr, rkey,
						 DAFS_TP_SIGNALED);
		if (!rc)
			rc = srv_wait_send(r->srv, &w);
		if (rc)
			goto out;
		src = r->iobuf;
	} else if ((o->flags & DAFS_O_DIRECT) && len) {
		/* O_DIRECT wants an aligned buffer; the data sits in a
		 * receive buffer at a message offset */
		memcpy(r->iobuf, src, len);
		src = r->iobuf;
	}
	n = full_pwrite(o->fd, src, len, off);
	open_put(r->sess, o);
	return n;
out:
	open_put(r->sess, o);
	return rc;
}

static int h_read(struct srv_req *r, const void *b, const int *fd,
		  union rep_body *rep, uint32_t *len)
{
	const struct dafs_m_read_req *q = b;
	/* inline layout: header, le32 count, le32 eof, le32 len, data */
	const uint32_t start = DAFS_HDR_SIZE + 12;
	uint8_t *inl = NULL;
	ssize_t n;

	(void)fd, (void)rep;
	if (!q->rkey) {
		if (q->len > r->sess->p.inline_max ||
		    q->len > r->reply_cap - start)
			return -EINVAL;
		inl = r->reply + start;
	}
	n = do_read(r, q->open_id, q->off, q->len, q->rkey, q->raddr, inl);
	if (n < 0)
		return (int)n;
	dafs_put32(r->reply + DAFS_HDR_SIZE, (uint32_t)n);
	dafs_put32(r->reply + DAFS_HDR_SIZE + 4, (uint32_t)n < q->len);
	dafs_put32(r->reply + DAFS_HDR_SIZE + 8, inl ? (uint32_t)n : 0);
	*len = start + (inl ? (uint32_t)n : 0);
	return 0;
}

static int h_write(struct srv_req *r, const void *b, const int *fd,
		   union rep_body *rep, uint32_t *len)
{
	const struct dafs_m_write_req *q = b;
	ssize_t n;

	(void)fd, (void)len;
	if (q->rkey && q->data.len)
		return -EINVAL;
	n = do_write(r, q->open_id, q->off, q->len, q->rkey, q->raddr,
		     &q->data);
	if (n < 0)
		return (int)n;
	rep->u32.v = (uint32_t)n;
	return 0;
}

static int h_commit(struct srv_req *r, const void *b, const int *fd,
		    union rep_body *rep, uint32_t *len)
{
	const struct dafs_m_commit_req *q = b;
	struct srv_open *o;
	int rc;

	(void)fd, (void)rep, (void)len;
	rc = open_get_io(r->sess, q->open_id, &o);
	if (rc)
		return rc;
	rc = (q->datasync ? fdatasync(o->fd) : fsync(o->fd)) ? -errno : 0;
	open_put(r->sess, o);
	return rc;
}

static int h_fallocate(struct srv_req *r, const void *b, const int *fd,
		       union rep_body *rep, uint32_t *len)
{
	const struct dafs_m_fallocate_req *q = b;
	struct srv_open *o;
	int rc;

	(void)fd, (void)rep, (void)len;
	if (q->off > (uint64_t)INT64_MAX || q->len > (uint64_t)INT64_MAX)
		return -EINVAL;
	rc = open_get_io(r->sess, q->open_id, &o);
	if (rc)
		return rc;
	rc = fallocate(o->fd, (int)q->mode, (off_t)q->off, (off_t)q->len)
		     ? -errno
		     : 0;
	open_put(r->sess, o);
	return rc;
}

/* SEEK_DATA / SEEK_HOLE on the server's file: ENXIO past the end, as
 * lseek(2) */
static int h_lseek(struct srv_req *r, const void *b, const int *fd,
		   union rep_body *rep, uint32_t *len)
{
	const struct dafs_m_lseek_req *q = b;
	struct srv_open *o;
	off_t pos;
	int rc;

	(void)fd, (void)len;
	if (q->off > (uint64_t)INT64_MAX ||
	    (q->whence != DAFS_SEEK_DATA && q->whence != DAFS_SEEK_HOLE))
		return -EINVAL;
	rc = open_get_io(r->sess, q->open_id, &o);
	if (rc)
		return rc;
	pos = lseek(o->fd, (off_t)q->off,
		    q->whence == DAFS_SEEK_DATA ? SEEK_DATA : SEEK_HOLE);
	rc = pos < 0 ? -errno : 0;
	open_put(r->sess, o);
	if (!rc)
		rep->u64.v = (uint64_t)pos;
	return rc;
}

static int h_copy_range(struct srv_req *r, const void *b, const int *fd,
			union rep_body *rep, uint32_t *len)
{
	const struct dafs_m_copy_range_req *q = b;
	struct srv_open *src, *dst;
	loff_t soff = (loff_t)q->soff, doff = (loff_t)q->doff;
	uint64_t done = 0;
	ssize_t n;
	int rc;

	(void)fd, (void)len;
	if (q->soff > (uint64_t)INT64_MAX || q->doff > (uint64_t)INT64_MAX)
		return -EINVAL;
	rc = open_get_io(r->sess, q->src, &src);
	if (rc)
		return rc;
	rc = open_get_io(r->sess, q->dst, &dst);
	if (rc) {
		open_put(r->sess, src);
		return rc;
	}
	while (done < q->len) {
		n = copy_file_range(src->fd, &soff, dst->fd, &doff,
				    q->len - done, 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (!done)
				rc = -errno;
			break;
		}
		if (n == 0)
			break;
		done += (uint64_t)n;
	}
	open_put(r->sess, dst);
	open_put(r->sess, src);
	rep->u64.v = done;
	return rc;
}

static int h_getxattr(struct srv_req *r, const void *b, const int *fd,
		      union rep_body *rep, uint32_t *len)
{
	const struct dafs_m_getxattr_req *q = b;
	/* layout: header, le32 size, le32 len, value */
	const uint32_t start = DAFS_HDR_SIZE + 8;
	char name[DAFS_NAME_MAX + 1];
	uint32_t cap = q->size;
	int rc;

	(void)rep;
	if (cap > r->reply_cap - start)
		return -E2BIG;
	cstr(name, &q->name);
	rc = dafs_be_getxattr(fd[0], name, r->reply + start, cap);
	if (rc < 0)
		return rc;
	dafs_put32(r->reply + DAFS_HDR_SIZE, (uint32_t)rc);
	dafs_put32(r->reply + DAFS_HDR_SIZE + 4, cap ? (uint32_t)rc : 0);
	*len = start + (cap ? (uint32_t)rc : 0);
	return 0;
}

static int h_listxattr(struct srv_req *r, const void *b, const int *fd,
		       union rep_body *rep, uint32_t *len)
{
	const struct dafs_m_listxattr_req *q = b;
	const uint32_t start = DAFS_HDR_SIZE + 8;
	uint32_t cap = q->size;
	int rc;

	(void)rep;
	if (cap > r->reply_cap - start)
		return -E2BIG;
	rc = dafs_be_listxattr(fd[0], (char *)r->reply + start, cap);
	if (rc < 0)
		return rc;
	dafs_put32(r->reply + DAFS_HDR_SIZE, (uint32_t)rc);
	dafs_put32(r->reply + DAFS_HDR_SIZE + 4, cap ? (uint32_t)rc : 0);
	*len = start + (cap ? (uint32_t)rc : 0);
	return 0;
}

static int h_setxattr(struct srv_req *r, const void *b, const int *fd,
		      union rep_body *rep, uint32_t *len)
{
	const struct dafs_m_setxattr_req *q = b;
	char name[DAFS_NAME_MAX + 1];

	(void)r, (void)rep, (void)len;
	cstr(name, &q->name);
	return dafs_be_setxattr(fd[0], name, q->value.p, q->value.len,
				(int)q->flags);
}

static int h_removexattr(struct srv_req *r, const void *b, const int *fd,
			 union rep_body *rep, uint32_t *len)
{
	const struct dafs_m_xattr_name_req *q = b;
	char name[DAFS_NAME_MAX + 1];

	(void)r, (void)rep, (void)len;
	cstr(name, &q->name);
	return dafs_be_removexattr(fd[0], name);
}

static int h_delegreturn(struct srv_req *r, const void *b, const int *fd,
			 union rep_body *rep, uint32_t *len)
{
	const struct dafs_m_u64 *q = b;

	(void)fd, (void)rep, (void)len;
	return srv_deleg_return(r, q->v);
}

/*
 * BATCH: each descriptor runs on its own and gets its own status; one bad
 * descriptor does not fail the others. Inline read data goes into the
 * reply after its result.
 */
static int h_batch(struct srv_req *r, const void *b, const int *fd,
		   union rep_body *rep, uint32_t *len)
{
	const struct dafs_m_batch_req *q = b;
	/* layout: header, le32 n, le32 results length, results */
	const uint32_t start = DAFS_HDR_SIZE + 8;
	struct dafs_m_batch_desc d[DAFS_BATCH_MAX];
	struct dafs_dec dec;
	uint8_t *out = r->reply + start, *end = r->reply + r->reply_cap;
	size_t room;
	uint32_t i;
	ssize_t n;

	(void)fd, (void)rep;
	if (q->n == 0 || q->n > DAFS_BATCH_MAX)
		return -EINVAL;
	/*
	 * Everything that fails the batch as a whole is found before any
	 * descriptor runs: a batch either fails untouched or runs every
	 * descriptor, each with its own result (a write already made must
	 * not be reported as failed, and done again by a retry). Each
	 * result's status, count and length (12 bytes) are set aside first;
	 * an inline read whose data no longer fits gets EMSGSIZE alone.
	 */
	if ((size_t)(end - out) < (size_t)q->n * 12)
		return -EMSGSIZE;
	dafs_dec_init(&dec, q->descs.p, q->descs.len);
	for (i = 0; i < q->n; i++)
		if (dafs_dec_msg(&dec, &dafs_mt_batch_desc, &d[i]))
			return -DAFS_EPROTO;
	if (dec.pos != dec.len)
		return -DAFS_EPROTO;
	for (i = 0; i < q->n; i++) {
		/* what the results still to come leave for this one's data */
		room = (size_t)(end - out) - (size_t)(q->n - i) * 12;
		if (d[i].flags & DAFS_BF_WRITE) {
			n = d[i].rkey && d[i].data.len
				    ? -EINVAL
				    : do_write(r, d[i].open_id, d[i].off,
					       d[i].len, d[i].rkey, d[i].raddr,
					       &d[i].data);
			dafs_put32(out + 8, 0);
		} else {
			uint8_t *inl = NULL;

			n = 0;
			if (!d[i].rkey) {
				/* as READ; or no room left for the data */
				if (d[i].len > r->sess->p.inline_max)
					n = -EINVAL;
				else if (d[i].len > room)
					n = -EMSGSIZE;
				inl = out + 12;
			}
			if (!n)
				n = do_read(r, d[i].open_id, d[i].off,
					    d[i].len, d[i].rkey, d[i].raddr,
					    inl);
			dafs_put32(out + 8, inl && n > 0 ? (uint32_t)n : 0);
		}
		dafs_put32(out, n < 0 ? dafs_err_to_status((int)n) : 0);
		dafs_put32(out + 4, n < 0 ? 0 : (uint32_t)n);
		out += 12 + dafs_get32(out + 8);
	}
	dafs_put32(r->reply + DAFS_HDR_SIZE, q->n);
	dafs_put32(r->reply + DAFS_HDR_SIZE + 4,
		   (uint32_t)(out - (r->reply + start)));
	*len = (uint32_t)(out - r->reply);
	return 0;
}

/*
 * LOCK and LOCKT (locks.c): through an open file of the session, as the
 * server (the open's access mode decides, as fcntl's; the file's bits
 * now do not), but a credential id the session does not know is refused
 * as everywhere else.
 */
static int lock_cred_known(struct srv_req *r)
{
	return !r->srv->can_switch || r->h.arg < r->sess->ncreds;
}

/* A lock refused for want of descriptors is the administrator's to know
 * (a limit to raise, or a client taking too many): said at most every
 * 10 s, with the counts. */
static void lock_enolck(struct srv_req *r)
{
	static _Atomic uint64_t last_ns;
	uint64_t now = srv_now_ns(), t = atomic_load(&last_ns);

	if ((t && now - t < 10000000000ull) ||
	    !atomic_compare_exchange_strong(&last_ns, &t, now))
		return;
	srv_log(LOG_WARNING,
		"session of %s: lock refused (ENOLCK): it holds %u lock "
		"descriptors (--max-lock-fds %u), all sessions %u (at most "
		"%u)",
		r->sess->client, srv_locks_count(&r->sess->locks),
		r->sess->locks.max, srv_lockbudget_used(&r->srv->lockbudget),
		r->srv->lockbudget.max);
}

static int h_lock(struct srv_req *r, const void *b, const int *fd,
		  union rep_body *rep, uint32_t *len)
{
	const struct dafs_m_lock_req *q = b;
	struct srv_open *o;
	int rc;

	(void)fd, (void)rep, (void)len;
	if (!lock_cred_known(r))
		return -DAFS_EBADCRED;
	rc = open_get(r->sess, q->open_id, &o);
	if (rc)
		return rc;
	rc = srv_locks_set(&r->sess->locks, o->fd, o->flags, q);
	open_put(r->sess, o);
	if (rc == -ENOLCK)
		lock_enolck(r);
	return rc;
}

static int h_lockt(struct srv_req *r, const void *b, const int *fd,
		   union rep_body *rep, uint32_t *len)
{
	const struct dafs_m_lock_req *q = b;
	struct dafs_m_lockt_rep out = {0};
	struct srv_open *o;
	struct dafs_enc e;
	int rc;

	(void)fd, (void)rep;
	if (!lock_cred_known(r))
		return -DAFS_EBADCRED;
	rc = open_get(r->sess, q->open_id, &o);
	if (rc)
		return rc;
	rc = srv_locks_test(&r->sess->locks, o->fd, o->flags, q, &out);
	open_put(r->sess, o);
	if (rc)
		return rc;
	/* the body laid out here, after the header the dispatcher writes */
	dafs_enc_init(&e, r->reply + DAFS_HDR_SIZE,
		      r->reply_cap - DAFS_HDR_SIZE);
	if (dafs_enc_msg(&e, dafs_ops[DAFS_OP_LOCKT].rep, &out))
		return -EIO;
	*len = DAFS_HDR_SIZE + (uint32_t)e.pos;
	return 0;
}

/* Handle fields to resolve: 1 + their offset in the request body. */
#define FH(type, member) ((uint16_t)(offsetof(type, member) + 1))
#define FH1(type, member)                                                      \
	{                                                                      \
		FH(type, member), 0                                            \
	}
#define FH2(type, m1, m2)                                                      \
	{                                                                      \
		FH(type, m1), FH(type, m2)                                     \
	}

struct handler {
	handler_fn fn;
	uint16_t fh[2]; /* handles to resolve, in order; 0: none */
	uint8_t user;	/* run with the request's credentials */
	uint8_t change; /* changes the file of fh[0]: recall delegations */
	uint8_t attr0;	/* wants fh[0]'s attributes (srv_req.attr0) */
};

static const struct handler handlers[DAFS_OP_MAX] = {
	[DAFS_OP_NULL] = {h_null},
	[DAFS_OP_CRED_REGISTER] = {h_cred_register},
	[DAFS_OP_PROBE_CALLBACK] = {h_probe_callback},
	[DAFS_OP_LOOKUP] = {h_lookup, FH1(struct dafs_m_dirop_req, dir), 1},
	[DAFS_OP_GETATTR] = {h_getattr, FH1(struct dafs_m_fh, fh), 0, 0, 1},
	[DAFS_OP_SETATTR] = {h_setattr, FH1(struct dafs_m_setattr_req, fh), 1,
			     1},
	[DAFS_OP_CREATE] = {h_create, FH1(struct dafs_m_create_req, dir), 1},
	[DAFS_OP_MKDIR] = {h_mkdir, FH1(struct dafs_m_mkdir_req, dir), 1},
	[DAFS_OP_MKNOD] = {h_mknod, FH1(struct dafs_m_mknod_req, dir), 1},
	[DAFS_OP_SYMLINK] = {h_symlink, FH1(struct dafs_m_symlink_req, dir), 1},
	[DAFS_OP_READLINK] = {h_readlink, FH1(struct dafs_m_fh, fh), 0},
	[DAFS_OP_LINK] = {h_link, FH2(struct dafs_m_link_req, fh, dir), 1, 1},
	[DAFS_OP_REMOVE] = {h_remove, FH1(struct dafs_m_dirop_req, dir), 1},
	[DAFS_OP_RMDIR] = {h_rmdir, FH1(struct dafs_m_dirop_req, dir), 1},
	[DAFS_OP_RENAME] = {h_rename, FH2(struct dafs_m_rename_req, sdir, ddir),
			    1},
	[DAFS_OP_READDIR] = {h_readdir, FH1(struct dafs_m_readdir_req, dir), 1},
	[DAFS_OP_STATFS] = {h_statfs, FH1(struct dafs_m_fh, fh), 0},
	[DAFS_OP_OPEN] = {h_open, FH1(struct dafs_m_open_req, fh), 1},
	[DAFS_OP_CLOSE] = {h_close, {0, 0}, 1},
	[DAFS_OP_READ] = {h_read, {0, 0}, 1},
	[DAFS_OP_WRITE] = {h_write, {0, 0}, 1},
	[DAFS_OP_COMMIT] = {h_commit, {0, 0}, 1},
	[DAFS_OP_FALLOCATE] = {h_fallocate, {0, 0}, 1},
	[DAFS_OP_COPY_RANGE] = {h_copy_range, {0, 0}, 1},
	[DAFS_OP_GETXATTR] = {h_getxattr, FH1(struct dafs_m_getxattr_req, fh),
			      1},
	[DAFS_OP_SETXATTR] = {h_setxattr, FH1(struct dafs_m_setxattr_req, fh),
			      1, 1},
	[DAFS_OP_LISTXATTR] = {h_listxattr,
			       FH1(struct dafs_m_listxattr_req, fh), 1},
	[DAFS_OP_REMOVEXATTR] = {h_removexattr,
				 FH1(struct dafs_m_xattr_name_req, fh), 1, 1},
	[DAFS_OP_BATCH] = {h_batch, {0, 0}, 1},
	[DAFS_OP_DELEGRETURN] = {h_delegreturn},
	[DAFS_OP_LSEEK] = {h_lseek, {0, 0}, 1},
	[DAFS_OP_LOCK] = {h_lock},
	[DAFS_OP_LOCKT] = {h_lockt},
	[DAFS_OP_ACCESS] = {h_access, FH1(struct dafs_m_access_req, fh), 1},
};

/*
 * Resolve the entry's handles with the server's own credentials
 * (open_by_handle_at needs CAP_DAC_READ_SEARCH, which a switched fsuid
 * drops), then run the handler, with the request's credentials if the
 * entry says so.
 */
static int run(struct srv_req *r, const struct handler *hd, const void *body,
	       union rep_body *rep, uint32_t *len)
{
	int fd[2] = {-1, -1}, i, rc = 0, user = 0;
	struct fdc_entry *ref[2] = {NULL, NULL};
	struct srv_dkey dk = {0};
	bool have0 = false;
	dafs_attr_t a0;

	/* borrowed from the export's descriptor cache: handlers must not
	 * close them or change their state */
	for (i = 0; i < 2 && hd->fh[i] && !rc; i++) {
		rc = dafs_be_resolve_ref(
			r->sess->ex,
			(const dafs_fh_t *)((const uint8_t *)body + hd->fh[i] -
					    1),
			&ref[i], !i && hd->attr0 ? &a0 : NULL,
			i ? NULL : &have0);
		if (rc >= 0) {
			fd[i] = rc;
			rc = 0;
		}
	}
	r->attr0 = have0 ? &a0 : NULL;
	/* a change to a regular file waits for other sessions' delegations
	 * of it to be returned or revoked */
	if (!rc && hd->change)
		rc = srv_deleg_begin_fd(r, fd[0], DLG_C_WRITE, &dk);
	if (!rc && hd->user) {
		user = 1;
		rc = cred_on(r);
	}
	if (!rc)
		rc = hd->fn(r, body, fd, rep, len);
	r->attr0 = NULL;
	if (user)
		cred_off(r);
	srv_deleg_end(r->srv, &dk);
	for (i = 1; i >= 0; i--)
		if (fd[i] >= 0)
			dafs_be_unref(r->sess->ex, ref[i], fd[i]);
	return rc;
}

uint32_t srv_execute(struct srv_req *r, const void *body)
{
	struct dafs_hdr h = r->h;
	union rep_body rep;
	uint32_t len = 0;
	ssize_t n;
	int rc;

	memset(&rep, 0, sizeof(rep));
	rc = h.op < DAFS_OP_MAX && handlers[h.op].fn
		     ? run(r, &handlers[h.op], body, &rep, &len)
		     : -DAFS_EPROTO;
	h.flags = DAFS_HF_REPLY;
	h.arg = dafs_err_to_status(rc);
	if (rc == 0 && len) {
		/* the handler laid out its own body */
		h.len = len - DAFS_HDR_SIZE;
		dafs_hdr_put(r->reply, &h);
		return len;
	}
	n = dafs_msg_build(r->reply, r->reply_cap, &h, rc ? NULL : &rep, NULL);
	if (n < 0) {
		srv_log(3, "session %s: %s reply does not fit (%zd)",
			r->sess->client, dafs_op_name(h.op), n);
		h.arg = dafs_err_to_status(-EIO);
		n = dafs_msg_build(r->reply, r->reply_cap, &h, NULL, NULL);
	}
	return (uint32_t)n;
}
