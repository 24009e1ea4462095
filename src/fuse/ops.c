/*
 * ops.c - the FUSE low-level operations of dafs-fuse, each one libdafs
 * call (or a few) on the mount's session.
 *
 * Conventions: a handler finds the server handle of its node id, switches
 * its thread to the caller's credentials when the server checks
 * permissions for the call (as_caller), calls libdafs, and replies. libdafs
 * errors are negative; they become FUSE's positive errno in one place,
 * dfs_errno(), called only by reply_err().
 *
 * Lookup counts: every reply that gives the kernel a node (entry, create,
 * readdirplus) takes one reference in the inode table; when the reply
 * cannot be delivered (the request was interrupted) the reference is given
 * back at once.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <malloc.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "fuse/fs_i.h"

/* ---- conventions at the edge ---- */

int dfs_errno(int rc)
{
	if (rc >= 0)
		return 0;
	rc = -rc;
	if (rc == DAFS_EBADHANDLE || rc == ESTALE)
		return ESTALE;
	/* F_SETLK's answer to a conflict; flock's EWOULDBLOCK is the same
	 * number */
	if (rc == DAFS_EDENIED)
		return EAGAIN;
	/* project codes (a broken session, a protocol error ...), a request
	 * that timed out or was cancelled: the server is unreachable or
	 * misbehaves, which a program sees as an I/O error */
	if (rc > DAFS_EBASE || rc == ETIMEDOUT || rc == ECANCELED || rc >= 4096)
		return EIO;
	return rc;
}

static void reply_err(fuse_req_t req, int rc)
{
	fuse_reply_err(req, dfs_errno(rc));
}

static struct dfs *FS(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

static void to_stat(const dafs_attr_t *a, struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = a->ino;
	st->st_mode = a->mode;
	st->st_nlink = a->nlink;
	st->st_uid = a->uid;
	st->st_gid = a->gid;
	st->st_rdev = a->rdev;
	st->st_size = (off_t)a->size;
	st->st_blksize = a->blksize;
	st->st_blocks = (blkcnt_t)a->blocks;
	st->st_atim.tv_sec = a->atime.sec;
	st->st_atim.tv_nsec = a->atime.nsec;
	st->st_mtim.tv_sec = a->mtime.sec;
	st->st_mtim.tv_nsec = a->mtime.nsec;
	st->st_ctim.tv_sec = a->ctime.sec;
	st->st_ctim.tv_nsec = a->ctime.nsec;
}

/*
 * Make the caller of @req this thread's credentials on the session: the
 * server then checks permissions as the kernel would for that process.
 * Supplementary groups beyond the protocol's 32 are cut, as NFS's
 * AUTH_SYS cuts beyond 16. Reading them costs a read of /proc (about
 * 12 us here), which root's requests skip: on the server uid 0 passes
 * every check that groups could, and root-squash drops them anyway.
 */
static int as_caller_id(struct dfs *fs, fuse_req_t req, uint32_t *idp)
{
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	gid_t groups[FCRED_GROUPS_MAX];
	uint32_t id;
	int n = 0, rc;

	if (ctx->uid != 0)
		n = fuse_req_getgroups(req, FCRED_GROUPS_MAX, groups);
	if (n < 0)
		n = 0; /* the caller has gone: its primary group still counts */
	if (n > FCRED_GROUPS_MAX)
		n = FCRED_GROUPS_MAX;
	rc = fcred_get(&fs->creds, ctx->uid, ctx->gid, n, groups, &id);
	if (rc)
		return rc;
	if (idp)
		*idp = id;
	return dafs_cred_use(fs->s, id);
}

static int as_caller(struct dfs *fs, fuse_req_t req)
{
	return as_caller_id(fs, req, NULL);
}

/* The daemon's own credentials, for calls the server does not check
 * (getattr, reads of an open file, close). Writes go as the caller: their
 * side effects (clearing setuid bits, limits) are the writer's. */
static void as_self(struct dfs *fs)
{
	dafs_cred_use(fs->s, 0);
}

static int refuse_ro(struct dfs *fs)
{
	return fs->o.ro ? -EROFS : 0;
}

static int parked_any(struct dfs *fs);
static void park_close(struct dfs *fs, uint64_t ino);
static void park_stop(struct dfs *fs);

/* Drop @n lookups of @ino; a node that goes takes its delegation with it,
 * given back to the server (nothing is cached for it any more). */
static void forget(struct dfs *fs, fuse_ino_t ino, uint64_t n)
{
	uint64_t deleg = fino_forget(&fs->ino, ino, n);
	dafs_fh_t fh;

	/* a node gone takes its parked opens along, before its
	 * delegation */
	if (parked_any(fs) && fino_fh(&fs->ino, ino, &fh) == -ESTALE)
		park_close(fs, ino);
	if (deleg)
		dafs_deleg_return(fs->s, deleg);
}

/* How long the kernel may keep @ino's attributes: while this mount holds
 * a delegation of the file nobody else changes it, and a recall drops
 * what the kernel holds (dfs_recall), so the delegation timeout applies. */
static double attr_tmo(struct dfs *fs, fuse_ino_t ino)
{
	return fs->o.deleg != DFS_DELEG_OFF && fino_deleg(&fs->ino, ino)
		       ? fs->o.deleg_timeout
		       : fs->o.attr_timeout;
}

/* The delegation to ask for with an open of @flags (and the data cache,
 * if there is one). */
static int deleg_want(const struct dfs *fs, int flags)
{
	int cached = fs->o.cache_mb > 0 ? DAFS_OPEN_CACHED : 0;

	if (fs->o.deleg == DFS_DELEG_OFF)
		return cached;
	if (fs->o.deleg == DFS_DELEG_ON && (flags & O_ACCMODE) != O_RDONLY)
		return DAFS_OPEN_DELEG_WRITE | cached;
	return DAFS_OPEN_DELEG_READ | cached;
}

static void wb_sync_ino(struct dfs *fs, fuse_ino_t ino);
struct dfs_file;
static uint64_t flock_owner(const struct dfs_file *file);
static void lock_release_owners(struct dfs *fs, struct dfs_file *file);

/*
 * Note the delegation @f came with, and say whether the kernel may keep
 * the pages it has of @ino: only if this mount held the same delegation
 * before this open, so that no other client can have changed the file
 * since the pages were read (the pages read before a first grant may be
 * older than another client's last write).
 */
static int deleg_opened(struct dfs *fs, fuse_ino_t ino, dafs_file_t *f)
{
	uint64_t id;
	int type = dafs_file_deleg(f, &id);

	if (type == DAFS_DELEG_NONE) {
		/* whatever the node thought it held is gone (being
		 * recalled, or revoked): its held writes go out, none are
		 * held from now on */
		if (fs->o.deleg != DFS_DELEG_OFF &&
		    fino_deleg(&fs->ino, ino) != DAFS_DELEG_NONE) {
			park_stop(fs);
			fino_deleg_set(&fs->ino, ino, DAFS_DELEG_NONE, 0);
			wb_sync_ino(fs, ino);
			park_close(fs, ino);
		}
		return 0;
	}
	return fino_deleg_set(&fs->ino, ino, type, id) != DAFS_DELEG_NONE;
}

/* The id of the delegation @f's open came with, 0 if none. */
static uint64_t opened_under(dafs_file_t *f)
{
	uint64_t id;

	return dafs_file_deleg(f, &id) != DAFS_DELEG_NONE ? id : 0;
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Reply with a new entry for @fh, named @name in @parent: one more lookup
 * of its node. @a came from a request made at fino_seq() @seq: kept for
 * getattr under a write delegation (fino_attr_keep). */
static void reply_entry(struct dfs *fs, fuse_req_t req, const dafs_fh_t *fh,
			const dafs_attr_t *a, fuse_ino_t parent,
			const char *name, uint64_t seq)
{
	struct fuse_entry_param e;
	uint64_t id;
	int rc;

	rc = fino_ref(&fs->ino, fh, &id);
	if (rc) {
		reply_err(req, rc);
		return;
	}
	fino_named(&fs->ino, id, parent, name, seq);
	fino_attr_keep(&fs->ino, id, a, seq, seq);
	memset(&e, 0, sizeof(e));
	e.ino = id;
	e.attr_timeout = attr_tmo(fs, id);
	e.entry_timeout = fs->o.entry_timeout;
	to_stat(a, &e.attr);
	if (fuse_reply_entry(req, &e))
		forget(fs, id, 1);
}

/*
 * A call of this mount changed @ino on the server (its size, times, mode,
 * or for a directory its entries): directory batches read before now no
 * longer speak for it (do_readdir). Made before the reply, so that no
 * readdir the kernel sends after seeing the change misses the stamp.
 */
static void changed(struct dfs *fs, fuse_ino_t ino)
{
	fino_mark(&fs->ino, ino);
}

/* ---- handles: open files and directories ---- */

struct dfs_file {
	struct dfs_handle h; /* first: the handle list holds these */
	dafs_file_t *f;
	int flags;	/* the server open's flags, minus O_TRUNC/O_EXCL:
			   what it serves once parked (park_put) */
	uint32_t cred;	/* the caller it was opened as */
	int created;	/* by op_create, with an access the new mode does
			   not give the caller: never parked */
	int revoked;	/* I/O said DAFS_EREVOKED: never parked */
	int stale;	/* the node's parked opens were dropped while it was
			   open (who may open it changed, a recall): the
			   access checked for it may be gone, never parked
			   (under hlock) */
	uint64_t deleg_id; /* the delegation it was opened (or served)
			   under, 0: none - parked only while the node
			   still holds that one: what the server checked
			   may have changed since, unseen, without it */
	int wb_on;	/* writes may be held (wback.c) */
	struct fwb wb;
	uint64_t eseen;	/* write-back errors of other open files of the
			   node reported up to here (fwb_err_take) */
	int flocked;	/* flock locks were asked for through it */
	/* the POSIX lock owners that asked for locks through it, under
	 * fs->hlock (lock_release_owners) */
	uint64_t ino;
	uint64_t *powners;
	uint32_t npowners, cpowners;
};

static void file_free(struct dfs_file *file)
{
	free(file->powners);
	free(file);
}

/*
 * Parked opens. While this mount holds a file's delegation nobody else
 * opens it for a conflicting access or changes it, so an open of it need
 * not ask the server: the server open that a release would close is kept
 * ("parked") for the next open of the node by the same caller that it
 * serves (park_fits), and the open is answered here. Parked opens are
 * closed when the delegation goes (recall, a grant refused), when the node
 * is forgotten, and beyond PARK_MAX (oldest first). Postmark opens and
 * closes every file it touches: this takes the OPEN round trip off each
 * open and the CLOSE off each close.
 *
 * So that one server open serves the opens that follow, a write open
 * that asks for a write delegation asks the server for read access too
 * (wide_flags): a file created for writing (postmark's fopen "w") then
 * serves the reads of it that come next.
 */
#define PARK_MAX 256u

struct dfs_park {
	struct dfs_park *next;
	uint64_t ino;
	dafs_file_t *f;
	int flags;	/* server_flags() of the open, minus O_TRUNC/O_EXCL */
	uint32_t cred; /* the caller it was opened as */
};

static int park_flags(int flags)
{
	return flags & (O_ACCMODE | O_APPEND | O_SYNC | O_DSYNC);
}

/*
 * Does an open made with @have serve an open asking for @want? It must
 * have the access asked for; a writer also needs the same O_APPEND, O_SYNC
 * and O_DSYNC, which change where and how its writes land, while a reader
 * is served by any open that may read.
 */
static int park_fits(int have, int want)
{
	int ha = have & O_ACCMODE, wa = want & O_ACCMODE;

	if (wa != O_RDONLY && (have & ~O_ACCMODE) != (want & ~O_ACCMODE))
		return 0;
	return ha == wa || ha == O_RDWR;
}

/*
 * The generation: park_close() and park_stop() move it on, so that a
 * release or an open that looked at the node's delegation before a drop
 * began (a recall, a refused grant, a change of who may open the file)
 * neither parks nor takes afterwards. Read before looking at the
 * delegation, checked under hlock when parking or taking.
 */
static uint64_t park_gen(struct dfs *fs)
{
	uint64_t g;

	pthread_mutex_lock(&fs->hlock);
	g = fs->park_gen;
	pthread_mutex_unlock(&fs->hlock);
	return g;
}

/* A drop of @ino's parked opens begins: nothing parks or is taken from
 * now on on the strength of what was seen before. */
static void park_stop(struct dfs *fs)
{
	pthread_mutex_lock(&fs->hlock);
	fs->park_gen++;
	pthread_mutex_unlock(&fs->hlock);
}

/* A parked open of @ino for @cred that serves @flags, taken off the list,
 * if nothing was dropped since generation @gen; NULL if none. *@have:
 * the flags it was opened with, which it serves again once released. */
static dafs_file_t *park_take(struct dfs *fs, uint64_t ino, int flags,
			      uint32_t cred, uint64_t gen, int *have)
{
	struct dfs_park **pp, *p;
	dafs_file_t *f = NULL;

	pthread_mutex_lock(&fs->hlock);
	if (fs->park_gen != gen) {
		pthread_mutex_unlock(&fs->hlock);
		return NULL;
	}
	for (pp = &fs->parked; (p = *pp); pp = &p->next) {
		if (p->ino == ino && p->cred == cred &&
		    park_fits(p->flags, park_flags(flags))) {
			*pp = p->next;
			fs->nparked--;
			fs->local_opens++;
			f = p->f;
			*have = p->flags;
			free(p);
			break;
		}
	}
	pthread_mutex_unlock(&fs->hlock);
	return f;
}

/* Park @f (opened for @ino as @cred with @flags) if nothing was dropped
 * since generation @gen; closes it instead then, or when there is no
 * memory. The oldest beyond PARK_MAX is closed. */
static void park_put(struct dfs *fs, uint64_t ino, dafs_file_t *f, int flags,
		     uint32_t cred, uint64_t gen)
{
	struct dfs_park *p = malloc(sizeof(*p)), **pp, *old = NULL;

	if (p) {
		pthread_mutex_lock(&fs->hlock);
		if (fs->park_gen != gen) {
			pthread_mutex_unlock(&fs->hlock);
			free(p);
			p = NULL;
		}
	}
	if (!p) {
		as_self(fs);
		dafs_close(f);
		return;
	}
	p->ino = ino;
	p->f = f;
	p->flags = park_flags(flags);
	p->cred = cred;
	p->next = fs->parked;
	fs->parked = p;
	if (++fs->nparked > PARK_MAX) {
		for (pp = &fs->parked; (*pp)->next; pp = &(*pp)->next)
			;
		old = *pp;
		*pp = NULL;
		fs->nparked--;
	}
	pthread_mutex_unlock(&fs->hlock);
	if (old) {
		as_self(fs);
		dafs_close(old->f);
		free(old);
	}
}

/* Close the parked opens of @ino (0: all of them); the generation moves
 * on, and the node's open files are never parked (what was checked when
 * they were opened may no longer hold: a chmod, an ACL, another client's
 * change behind a recall). */
static void park_close(struct dfs *fs, uint64_t ino)
{
	struct dfs_park **pp, *p, *gone = NULL;
	struct dfs_handle *h;

	pthread_mutex_lock(&fs->hlock);
	fs->park_gen++;
	for (h = fs->handles.next; h != &fs->handles; h = h->next) {
		struct dfs_file *f = (struct dfs_file *)h;

		if (!h->dir && (!ino || f->ino == ino))
			f->stale = 1;
	}
	for (pp = &fs->parked; (p = *pp);) {
		if (!ino || p->ino == ino) {
			*pp = p->next;
			fs->nparked--;
			p->next = gone;
			gone = p;
		} else {
			pp = &p->next;
		}
	}
	pthread_mutex_unlock(&fs->hlock);
	while ((p = gone)) {
		gone = p->next;
		as_self(fs);
		dafs_close(p->f);
		free(p);
	}
}

/*
 * I/O through @file said DAFS_EREVOKED: the server revoked the node's
 * delegation (a recall this mount never answered, its callback channel
 * lost). What the node thought it held is gone: no open is parked or
 * served on it, and this open is never parked.
 */
static void file_revoked(struct dfs *fs, struct dfs_file *file)
{
	file->revoked = 1;
	park_stop(fs);
	fino_deleg_set(&fs->ino, file->ino, DAFS_DELEG_NONE, 0);
	park_close(fs, file->ino);
}

static int parked_any(struct dfs *fs)
{
	int n;

	pthread_mutex_lock(&fs->hlock);
	n = fs->nparked != 0;
	pthread_mutex_unlock(&fs->hlock);
	return n;
}

/* Writes of this mount held for @ino (none unless it holds the file's
 * write delegation) go to the server before an operation that must see
 * them. */
static void wb_sync_ino(struct dfs *fs, fuse_ino_t ino)
{
	if (atomic_load(&fs->wb.bytes))
		fwb_flush_ino(&fs->wb, ino, fs->s, NULL);
}

/* All held writes: before a reply that hands the kernel attributes of
 * nodes it looked up (opendir and readdirplus batches) */
static void wb_sync_all(struct dfs *fs)
{
	if (atomic_load(&fs->wb.bytes))
		fwb_flush_ino(&fs->wb, FWB_ALL, fs->s, NULL);
}

/*
 * Attributes @a of @fh, fetched by a request sent at fino_seq() @seq, for
 * a reply that hands them to the kernel (lookup, create of an existing
 * name): they must count every write this mount answered before. If the
 * node holds writes, they go now; if any reached the server after @seq
 * (then or meanwhile, fino_changed), the attributes are fetched again.
 * Other nodes' writes are not waited for: their attributes are not in
 * the reply.
 */
static int wb_settle(struct dfs *fs, const dafs_fh_t *fh, uint64_t seq,
		     dafs_attr_t *a)
{
	uint64_t ino;

	if (atomic_load(&fs->wb.bytes) && (ino = fino_id(&fs->ino, fh)))
		fwb_flush_ino(&fs->wb, ino, fs->s, NULL);
	if (fino_changed(&fs->ino, fh) <= seq)
		return 0;
	as_self(fs);
	return dafs_getattr(fs->s, fh, a);
}

/* Held writes of @ino reached the server: a directory batch read before
 * has an old size for it (do_readdir must not hand it to the kernel). A
 * failed one: the size kept counts bytes the server has not, ask it. */
static void wb_sent(void *arg, uint64_t ino, int err)
{
	struct dfs *fs = arg;

	if (err)
		fino_attr_drop(&fs->ino, ino);
	else
		changed(fs, ino);
}

/* fwb_write's question: does the mount hold @ino's write delegation? */
static int wb_may_hold(void *arg, uint64_t ino)
{
	struct dfs *fs = arg;

	return fino_deleg(&fs->ino, ino) == DAFS_DELEG_WRITE;
}

/* Writes of an open file with @flags may be held when write-back is on
 * and nothing asks for them to be synchronous. */
static void wb_open(struct dfs *fs, struct dfs_file *file, fuse_ino_t ino,
		    int flags)
{
	if (fs->o.deleg != DFS_DELEG_ON || !fs->o.wb_max_mb ||
	    (flags & O_ACCMODE) == O_RDONLY ||
	    (flags & (O_DIRECT | O_SYNC | O_DSYNC)))
		return;
	fwb_open(&fs->wb, &file->wb, ino, file->f, !!(flags & O_APPEND));
	file->wb_on = 1;
}

struct dfs_dent {
	uint64_t cookie;
	uint32_t type;
	uint32_t name; /* offset in dfs_dir.names */
	uint64_t ino;
	dafs_fh_t fh;	  /* plus batches only */
	dafs_attr_t attr; /* plus batches only */
};

/*
 * An open directory keeps the last batch of entries the server sent (one
 * READDIR round trip fills up to max_response bytes), so the kernel's
 * page-sized readdir calls are served from it rather than each costing a
 * round trip that discards most of what it fetched.
 */
struct dfs_dir {
	struct dfs_handle h;  /* first */
	pthread_mutex_t lock; /* everything below; held over READDIR */
	dafs_fh_t fh;
	uint64_t self_ino, parent_ino; /* for "." and "..", 0: not known */
	int filled;		       /* a batch is held */
	int plus;		       /* it has handles and attributes */
	int eof;		       /* it ends the directory */
	int served;		       /* entries went out since opendir */
	uint64_t start;		       /* the server cookie it was read from */
	uint64_t seq;		       /* fino_seq() before it was read */
	double read_at;		       /* CLOCK_MONOTONIC seconds, then */
	struct dfs_dent *ents;
	uint32_t n, cap;
	char *names;
	size_t nlen, ncap;
	int err; /* set by the fill callback */
};

static void handle_add(struct dfs *fs, struct dfs_handle *h, int dir)
{
	h->dir = dir;
	pthread_mutex_lock(&fs->hlock);
	h->next = fs->handles.next;
	h->prev = &fs->handles;
	h->next->prev = h;
	fs->handles.next = h;
	if (dir)
		fs->ndirs++;
	else
		fs->nfiles++;
	pthread_mutex_unlock(&fs->hlock);
}

static void handle_del(struct dfs *fs, struct dfs_handle *h)
{
	pthread_mutex_lock(&fs->hlock);
	h->prev->next = h->next;
	h->next->prev = h->prev;
	if (h->dir)
		fs->ndirs--;
	else
		fs->nfiles--;
	pthread_mutex_unlock(&fs->hlock);
}

/* A new open file of the node @file->ino joins the list: stale at once
 * if parked opens were dropped since generation @gen, read before its
 * access was checked (a chmod while the server opened it). */
static void file_add(struct dfs *fs, struct dfs_file *file, uint64_t gen)
{
	handle_add(fs, &file->h, 0);
	pthread_mutex_lock(&fs->hlock);
	if (fs->park_gen != gen)
		file->stale = 1;
	pthread_mutex_unlock(&fs->hlock);
}

static struct dfs_file *file_of(struct fuse_file_info *fi)
{
	return (struct dfs_file *)(uintptr_t)fi->fh;
}

static struct dfs_dir *dir_of(struct fuse_file_info *fi)
{
	return (struct dfs_dir *)(uintptr_t)fi->fh;
}

static void dir_free(struct dfs_dir *d)
{
	pthread_mutex_destroy(&d->lock);
	free(d->ents);
	free(d->names);
	free(d);
}

/* ---- lookup and forget ---- */

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct dfs *fs = FS(req);
	dafs_fh_t dir, fh;
	dafs_attr_t a;
	uint64_t seq = fino_seq(&fs->ino);
	int rc;

	rc = fino_fh(&fs->ino, parent, &dir);
	if (!rc)
		rc = as_caller(fs, req);
	if (!rc)
		rc = dafs_lookup(fs->s, &dir, name, &fh, &a);
	/* the reply's attributes must count held writes */
	if (!rc)
		rc = wb_settle(fs, &fh, seq, &a);
	if (rc == -ENOENT && fs->o.negative_timeout > 0) {
		struct fuse_entry_param e;

		/* node id 0: "no such name", cached for the timeout */
		memset(&e, 0, sizeof(e));
		e.entry_timeout = fs->o.negative_timeout;
		fuse_reply_entry(req, &e);
		return;
	}
	if (rc)
		reply_err(req, rc);
	else
		reply_entry(fs, req, &fh, &a, parent, name, seq);
}

static void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	forget(FS(req), ino, nlookup);
	fuse_reply_none(req);
}

static void op_forget_multi(fuse_req_t req, size_t count,
			    struct fuse_forget_data *forgets)
{
	struct dfs *fs = FS(req);
	size_t i;

	for (i = 0; i < count; i++)
		forget(fs, forgets[i].ino, forgets[i].nlookup);
	fuse_reply_none(req);
}

/* ---- attributes ---- */

static void op_getattr(fuse_req_t req, fuse_ino_t ino,
		       struct fuse_file_info *fi)
{
	struct dfs *fs = FS(req);
	struct stat st;
	dafs_fh_t fh;
	dafs_attr_t a;
	uint64_t wseq, seq;
	int rc;

	(void)fi;
	/* kept under the write delegation: the kernel asks after every
	 * write, held ones included */
	if (!fino_attr_get(&fs->ino, ino, &a)) {
		to_stat(&a, &st);
		fuse_reply_attr(req, &st, attr_tmo(fs, ino));
		return;
	}
	/* a write held while the held ones go may be missed by the reply:
	 * not kept then (wseq); their own sending is in it (seq) */
	wseq = fino_seq(&fs->ino);
	wb_sync_ino(fs, ino);
	seq = fino_seq(&fs->ino);
	rc = fino_fh(&fs->ino, ino, &fh);
	if (!rc) {
		as_self(fs);
		rc = dafs_getattr(fs->s, &fh, &a);
	}
	if (rc) {
		reply_err(req, rc);
		return;
	}
	fino_attr_keep(&fs->ino, ino, &a, wseq, seq);
	to_stat(&a, &st);
	fuse_reply_attr(req, &st, attr_tmo(fs, ino));
}

/*
 * The FUSE kernel clears setuid and setgid bits before a write by sending
 * a SETATTR as the writer (libfuse 3.14 cannot negotiate
 * FUSE_HANDLE_KILLPRIV: it drops it from the INIT reply), which the server
 * refuses when the writer does not own the file, failing the write. A mode
 * change that only clears those bits is applied with the daemon's
 * credentials when the caller may write the file: such a caller could
 * clear them by writing anyway, as on a local disk. Whether it may is the
 * server's to say, ACLs and all (ACCESS as the caller: the mode bits
 * alone let a user an ACL denies clear the bit).
 */
static int kill_priv(struct dfs *fs, fuse_req_t req, const dafs_fh_t *fh,
		     const dafs_setattr_t *sa, dafs_attr_t *a)
{
	const uint32_t priv = S_ISUID | S_ISGID;
	dafs_attr_t cur;
	uint32_t old;
	int rc;

	as_self(fs);
	rc = dafs_getattr(fs->s, fh, &cur);
	if (rc)
		return rc;
	old = cur.mode & 07777;
	if (sa->mask != DAFS_SET_MODE || sa->mode == old || (sa->mode & ~old) ||
	    ((old & ~sa->mode) & ~priv) || !S_ISREG(cur.mode))
		return -EPERM;
	rc = as_caller(fs, req);
	if (!rc)
		rc = dafs_access(fs->s, fh, W_OK);
	if (rc)
		return -EPERM;
	as_self(fs);
	return dafs_setattr(fs->s, fh, sa, a);
}

static void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr,
		       int to_set, struct fuse_file_info *fi)
{
	struct dfs *fs = FS(req);
	dafs_setattr_t sa;
	struct stat st;
	dafs_fh_t fh;
	dafs_attr_t a;
	int rc = 0;

	wb_sync_ino(fs, ino);
	/* who may open the file changes: the next opens ask the server
	 * (closed again after the change, for a release parking meanwhile) */
	if (to_set & (FUSE_SET_ATTR_MODE | FUSE_SET_ATTR_UID |
		      FUSE_SET_ATTR_GID))
		park_close(fs, ino);
	memset(&sa, 0, sizeof(sa));
	if (to_set & FUSE_SET_ATTR_MODE) {
		sa.mask |= DAFS_SET_MODE;
		sa.mode = attr->st_mode & 07777;
	}
	if (to_set & FUSE_SET_ATTR_UID) {
		sa.mask |= DAFS_SET_UID;
		sa.uid = attr->st_uid;
	}
	if (to_set & FUSE_SET_ATTR_GID) {
		sa.mask |= DAFS_SET_GID;
		sa.gid = attr->st_gid;
	}
	if (to_set & FUSE_SET_ATTR_SIZE) {
		sa.mask |= DAFS_SET_SIZE;
		sa.size = (uint64_t)attr->st_size;
	}
	/* the kernel sets ATIME along with ATIME_NOW; UTIME_OMIT sends
	 * neither */
	if (to_set & FUSE_SET_ATTR_ATIME_NOW) {
		sa.mask |= DAFS_SET_ATIME_NOW;
	} else if (to_set & FUSE_SET_ATTR_ATIME) {
		sa.mask |= DAFS_SET_ATIME;
		sa.atime.sec = attr->st_atim.tv_sec;
		sa.atime.nsec = (uint32_t)attr->st_atim.tv_nsec;
	}
	if (to_set & FUSE_SET_ATTR_MTIME_NOW) {
		sa.mask |= DAFS_SET_MTIME_NOW;
	} else if (to_set & FUSE_SET_ATTR_MTIME) {
		sa.mask |= DAFS_SET_MTIME;
		sa.mtime.sec = attr->st_mtim.tv_sec;
		sa.mtime.nsec = (uint32_t)attr->st_mtim.tv_nsec;
	}
	/* FUSE_SET_ATTR_CTIME: the server's file system sets ctime itself */
	if (sa.mask)
		rc = refuse_ro(fs);
	/*
	 * With an open file (ftruncate, futimens) the file's handle is the
	 * node's handle: the protocol has no SETATTR by open id yet, so the
	 * server checks the caller's permission on the file as truncate(2)
	 * would, not the open file's mode as ftruncate(2) would.
	 */
	if (!rc && fi && !((struct dfs_handle *)(uintptr_t)fi->fh)->dir)
		fh = *dafs_file_fh(file_of(fi)->f);
	else if (!rc)
		rc = fino_fh(&fs->ino, ino, &fh);
	if (!rc && sa.mask) {
		rc = as_caller(fs, req);
		if (!rc)
			rc = dafs_setattr(fs->s, &fh, &sa, &a);
		if (rc == -EPERM && sa.mask == DAFS_SET_MODE)
			rc = kill_priv(fs, req, &fh, &sa, &a);
		if (sa.mask & (DAFS_SET_MODE | DAFS_SET_UID | DAFS_SET_GID))
			park_close(fs, ino);
	} else if (!rc) {
		as_self(fs);
		rc = dafs_getattr(fs->s, &fh, &a);
	}
	/* changed, even by a change that failed half-way */
	if (sa.mask)
		fino_attr_drop(&fs->ino, ino);
	if (rc) {
		reply_err(req, rc);
		return;
	}
	to_stat(&a, &st);
	fuse_reply_attr(req, &st, attr_tmo(fs, ino));
}

/*
 * access(2) and chdir(2): with default_permissions off the kernel asks.
 * The server answers as its kernel would for the caller: mode bits, ACLs,
 * a read-only export.
 */
static void op_access(fuse_req_t req, fuse_ino_t ino, int mask)
{
	struct dfs *fs = FS(req);
	dafs_fh_t fh;
	int rc;

	rc = fino_fh(&fs->ino, ino, &fh);
	if (!rc)
		rc = as_caller(fs, req);
	if (!rc)
		rc = dafs_access(fs->s, &fh, (uint32_t)mask & 7);
	reply_err(req, rc);
}

static void op_readlink(fuse_req_t req, fuse_ino_t ino)
{
	struct dfs *fs = FS(req);
	char buf[DAFS_PATH_MAX + 1];
	dafs_fh_t fh;
	int rc;

	rc = fino_fh(&fs->ino, ino, &fh);
	if (!rc) {
		as_self(fs);
		rc = dafs_readlink(fs->s, &fh, buf, sizeof(buf));
	}
	if (rc < 0)
		reply_err(req, rc);
	else
		fuse_reply_readlink(req, buf);
}

/* ---- names: create and remove ---- */

/* The parent's handle, the caller's credentials, a writable mount. */
static int dirop_begin_id(struct dfs *fs, fuse_req_t req, fuse_ino_t parent,
			  dafs_fh_t *dir, uint32_t *cred)
{
	int rc = refuse_ro(fs);

	if (!rc)
		rc = fino_fh(&fs->ino, parent, dir);
	if (!rc)
		rc = as_caller_id(fs, req, cred);
	return rc;
}

static int dirop_begin(struct dfs *fs, fuse_req_t req, fuse_ino_t parent,
		       dafs_fh_t *dir)
{
	return dirop_begin_id(fs, req, parent, dir, NULL);
}

static void op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name,
		     mode_t mode, dev_t rdev)
{
	struct dfs *fs = FS(req);
	dafs_file_t *f;
	dafs_fh_t dir, fh;
	dafs_attr_t a;
	uint64_t seq = fino_seq(&fs->ino);
	int rc;

	rc = dirop_begin(fs, req, parent, &dir);
	if (!rc && S_ISREG(mode)) {
		/* mknod(2) of a regular file: an exclusive create */
		rc = dafs_create(fs->s, &dir, name, O_WRONLY | O_EXCL,
				 mode & 07777, &f, &fh, &a);
		if (!rc) {
			as_self(fs);
			dafs_close(f);
		}
	} else if (!rc) {
		rc = dafs_mknod(fs->s, &dir, name, mode, rdev, &fh, &a);
	}
	if (rc) {
		reply_err(req, rc);
		return;
	}
	changed(fs, parent);
	reply_entry(fs, req, &fh, &a, parent, name, seq);
}

static void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name,
		     mode_t mode)
{
	struct dfs *fs = FS(req);
	dafs_fh_t dir, fh;
	dafs_attr_t a;
	uint64_t seq = fino_seq(&fs->ino);
	int rc;

	rc = dirop_begin(fs, req, parent, &dir);
	if (!rc)
		rc = dafs_mkdir(fs->s, &dir, name, mode & 07777, &fh, &a);
	if (rc) {
		reply_err(req, rc);
		return;
	}
	changed(fs, parent);
	reply_entry(fs, req, &fh, &a, parent, name, seq);
}

static void op_symlink(fuse_req_t req, const char *link, fuse_ino_t parent,
		       const char *name)
{
	struct dfs *fs = FS(req);
	dafs_fh_t dir, fh;
	dafs_attr_t a;
	uint64_t seq = fino_seq(&fs->ino);
	int rc;

	rc = dirop_begin(fs, req, parent, &dir);
	if (!rc)
		rc = dafs_symlink(fs->s, &dir, name, link, &fh, &a);
	if (rc) {
		reply_err(req, rc);
		return;
	}
	changed(fs, parent);
	reply_entry(fs, req, &fh, &a, parent, name, seq);
}

static void op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent,
		    const char *newname)
{
	struct dfs *fs = FS(req);
	dafs_fh_t dir, fh;
	dafs_attr_t a;
	uint64_t seq = fino_seq(&fs->ino);
	int rc;

	wb_sync_ino(fs, ino); /* the reply carries the file's attributes */
	rc = fino_fh(&fs->ino, ino, &fh);
	if (!rc)
		rc = dirop_begin(fs, req, newparent, &dir);
	if (!rc)
		rc = dafs_link(fs->s, &fh, &dir, newname, &a);
	/* one link more (or maybe, after a failure): nothing kept */
	fino_attr_drop(&fs->ino, ino);
	if (rc) {
		reply_err(req, rc);
		return;
	}
	changed(fs, ino);
	changed(fs, newparent);
	reply_entry(fs, req, &fh, &a, newparent, newname, seq);
}

static void op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct dfs *fs = FS(req);
	dafs_fh_t dir;
	int rc;

	rc = dirop_begin(fs, req, parent, &dir);
	if (!rc)
		rc = dafs_remove(fs->s, &dir, name);
	if (!rc)
		changed(fs, parent);
	/* one link fewer, a new ctime (even after an error: a reply lost
	 * after the server removed it) */
	fino_name_gone(&fs->ino, parent, name);
	reply_err(req, rc);
}

static void op_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct dfs *fs = FS(req);
	dafs_fh_t dir;
	int rc;

	rc = dirop_begin(fs, req, parent, &dir);
	if (!rc)
		rc = dafs_rmdir(fs->s, &dir, name);
	if (!rc)
		changed(fs, parent);
	reply_err(req, rc);
}

static void op_rename(fuse_req_t req, fuse_ino_t parent, const char *name,
		      fuse_ino_t newparent, const char *newname,
		      unsigned int flags)
{
	struct dfs *fs = FS(req);
	dafs_fh_t sdir, ddir;
	uint32_t dflags = 0;
	int rc = 0;

	if (flags & RENAME_NOREPLACE)
		dflags |= DAFS_RENAME_NOREPLACE;
	if (flags & RENAME_EXCHANGE)
		dflags |= DAFS_RENAME_EXCHANGE;
	/* RENAME_WHITEOUT is for overlay file systems */
	if (flags & ~(unsigned int)(RENAME_NOREPLACE | RENAME_EXCHANGE))
		rc = -EINVAL;
	if (!rc)
		rc = fino_fh(&fs->ino, newparent, &ddir);
	if (!rc)
		rc = dirop_begin(fs, req, parent, &sdir);
	if (!rc)
		rc = dafs_rename(fs->s, &sdir, name, &ddir, newname, dflags);
	if (!rc) {
		changed(fs, parent);
		changed(fs, newparent);
	}
	/* a new ctime for the one moved, one link fewer for one replaced
	 * (even after an error: a reply lost after the server did it) */
	fino_name_gone(&fs->ino, parent, name);
	fino_name_gone(&fs->ino, newparent, newname);
	reply_err(req, rc);
}

/* ---- files ---- */

/*
 * The open(2) flags the server takes; the kernel has dealt with O_CREAT,
 * O_EXCL (for open) and O_NOCTTY, and the rest are local. O_SYNC includes
 * the O_DSYNC bit.
 *
 * O_DIRECT stays here: the kernel bypasses this mount's page cache by
 * itself for a file opened with it, and the server opens its file without
 * it. dafsd moves O_DIRECT data through its message buffers, which are not
 * aligned, so every write and every read of up to inline_max bytes fails
 * there with EINVAL (a server bug, reported); until that is fixed the
 * server's page cache serves these files.
 */
static int server_flags(int flags)
{
	return flags &
	       (O_ACCMODE | O_APPEND | O_TRUNC | O_EXCL | O_SYNC | O_DSYNC);
}

static int writes(int flags)
{
	return (flags & O_ACCMODE) != O_RDONLY || (flags & O_TRUNC);
}

/*
 * Server flags @sf widened for parking: a write-only open that asks for a
 * write delegation asks for read access too, so that once parked it also
 * serves the reads of the file (parked opens). @sf itself otherwise.
 */
static int wide_flags(const struct dfs *fs, int sf, int kflags)
{
	if ((deleg_want(fs, kflags) & DAFS_OPEN_DELEG_WRITE) &&
	    (sf & O_ACCMODE) == O_WRONLY)
		return (sf & ~O_ACCMODE) | O_RDWR;
	return sf;
}

/*
 * Whether the caller of @req may open the file it has just created, of
 * attributes @a, with @flags' access by the owner's mode bits, which are
 * the owner's whole access with or without ACLs: the server did not check
 * (a new file is opened as asked whatever its mode), and a parked open
 * serves later opens without asking it.
 */
static int creator_may(fuse_req_t req, const dafs_attr_t *a, int flags)
{
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	uint32_t want, own = (a->mode >> 6) & 7;

	switch (flags & O_ACCMODE) {
	case O_RDONLY:
		want = 4;
		break;
	case O_WRONLY:
		want = 2;
		break;
	default:
		want = 6;
	}
	if (ctx->uid != 0 && ctx->uid != a->uid)
		return 0;
	return (own & want) == want;
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct dfs *fs = FS(req);
	struct dfs_file *file;
	uint64_t gen, epoch;
	int rc = 0, parked, sf, wide;
	uint32_t cred;
	dafs_fh_t fh;

	if (writes(fi->flags))
		rc = refuse_ro(fs);
	/* a truncating open must come after the writes held before it */
	if (!rc && (fi->flags & O_TRUNC))
		wb_sync_ino(fs, ino);
	if (!rc)
		rc = fino_fh(&fs->ino, ino, &fh);
	if (!rc)
		rc = as_caller_id(fs, req, &cred);
	if (rc) {
		reply_err(req, rc);
		return;
	}
	file = calloc(1, sizeof(*file));
	if (!file) {
		reply_err(req, -ENOMEM);
		return;
	}
	file->eseen = fwb_err_mark(&fs->wb);
	file->flags = server_flags(fi->flags) & ~(O_EXCL | O_TRUNC);
	file->cred = cred;
	/* under the delegation, a parked open of the node serves it (a
	 * truncation still goes to the server) */
	gen = park_gen(fs);
	if (!(fi->flags & O_TRUNC) && fs->o.deleg != DFS_DELEG_OFF &&
	    fino_deleg(&fs->ino, ino) != DAFS_DELEG_NONE)
		file->f = park_take(fs, ino, file->flags, cred, gen,
				    &file->flags);
	parked = file->f != NULL;
	epoch = fino_xattr_epoch(&fs->ino);
	/*
	 * O_APPEND goes to the server, which opens its file with it: each
	 * write then lands at the end of the file whatever offset the kernel
	 * sends, as pwrite(2) does on an O_APPEND file. The kernel computes
	 * that offset from its own idea of the size, which is right while
	 * this mount is the only writer.
	 */
	if (!file->f) {
		sf = server_flags(fi->flags) & ~O_EXCL;
		wide = wide_flags(fs, sf, fi->flags);
		rc = dafs_open(fs->s, &fh, wide | deleg_want(fs, fi->flags),
			       &file->f);
		/* no read access: the access asked for */
		if (rc == -EACCES && wide != sf)
			rc = dafs_open(fs->s, &fh,
				       (wide = sf) | deleg_want(fs, fi->flags),
				       &file->f);
		file->flags = wide & ~O_TRUNC;
	}
	if (rc) {
		file_free(file);
		reply_err(req, rc);
		return;
	}
	if (fi->flags & O_TRUNC)
		fino_attr_drop(&fs->ino, ino); /* and changed */
	file->ino = ino;
	file_add(fs, file, gen);
	fi->fh = (uintptr_t)file;
	/* without a delegation held since before this open, other clients
	 * may have changed the file: the page cache is dropped at open
	 * (close-to-open consistency). A parked open was served under the
	 * delegation the node holds (its own grant may be older). */
	fi->keep_cache = parked ? 1 : deleg_opened(fs, ino, file->f);
	file->deleg_id = parked ? fino_deleg_id(&fs->ino, ino)
				: opened_under(file->f);
	/* truncated: no security.capability under its delegation */
	if (fi->flags & O_TRUNC)
		fino_caps_gone(&fs->ino, ino, epoch, file->deleg_id);
	/* ... and its attributes looked up again: a size looked up before
	 * this open (whose recall made the last holder send its writes)
	 * would end reads there. Attributes only: the open holds no page. */
	if (!fi->keep_cache) {
		/* nor may a directory batch read before */
		changed(fs, ino);
		if (fs->se)
			fuse_lowlevel_notify_inval_inode(fs->se, ino, -1, 0);
	}
	wb_open(fs, file, ino, fi->flags);
	if (fuse_reply_open(req, fi)) {
		if (file->wb_on)
			fwb_close(&fs->wb, &file->wb, fs->s);
		handle_del(fs, &file->h);
		as_self(fs);
		dafs_close(file->f);
		file_free(file);
	}
}

static void op_create(fuse_req_t req, fuse_ino_t parent, const char *name,
		      mode_t mode, struct fuse_file_info *fi)
{
	struct dfs *fs = FS(req);
	struct fuse_entry_param e;
	struct dfs_file *file;
	dafs_fh_t dir, fh;
	uint64_t id, epoch, gen, seq;
	int rc, sf, wide, fresh = 0;
	dafs_attr_t a;
	uint32_t cred;

	seq = fino_seq(&fs->ino);
	rc = dirop_begin_id(fs, req, parent, &dir, &cred);
	if (rc) {
		reply_err(req, rc);
		return;
	}
	file = calloc(1, sizeof(*file));
	if (!file) {
		reply_err(req, -ENOMEM);
		return;
	}
	file->eseen = fwb_err_mark(&fs->wb);
	epoch = fino_xattr_epoch(&fs->ino);
	gen = park_gen(fs);
	sf = server_flags(fi->flags);
	/* read access too only if the owner may read: a parked open that
	 * may not serve reads is no use */
	wide = mode & S_IRUSR ? wide_flags(fs, sf, fi->flags) : sf;
	rc = dafs_create(fs->s, &dir, name, wide | deleg_want(fs, fi->flags),
			 mode & 07777, &file->f, &fh, &a);
	/* an existing file the caller may not read: the access asked for */
	if (rc == -EACCES && wide != sf)
		rc = dafs_create(fs->s, &dir, name,
				 (wide = sf) | deleg_want(fs, fi->flags),
				 mode & 07777, &file->f, &fh, &a);
	/* an existing file's attributes come back: they must count what
	 * this mount wrote and held. (Held writes cannot meet a truncation
	 * here, to land after it: the kernel sends CREATE only for a name
	 * it has no positive entry of, and a file this mount holds writes
	 * of is open through an entry it has; another client's link or
	 * rename that puts it at this name recalls its delegation first,
	 * which sends them.) */
	if (!rc && !(fi->flags & O_EXCL)) {
		rc = wb_settle(fs, &fh, seq, &a);
		if (rc) {
			as_self(fs);
			dafs_close(file->f);
		}
	}
	if (!rc) {
		/* a node new to the mount has no writes of its own yet */
		fresh = !fino_id(&fs->ino, &fh);
		rc = fino_ref(&fs->ino, &fh, &id);
		if (rc) {
			as_self(fs);
			dafs_close(file->f);
		}
	}
	if (rc) {
		file_free(file);
		reply_err(req, rc);
		return;
	}
	changed(fs, parent);
	file->flags = wide & ~(O_EXCL | O_TRUNC);
	file->cred = cred;
	/* the creator gets the access it asked for whatever the new mode
	 * says (a file made 0444 and written): an open to serve later ones
	 * from only if the mode gives the owner that access */
	file->created = !creator_may(req, &a, file->flags);
	file->ino = id;
	file_add(fs, file, gen);
	fi->fh = (uintptr_t)file;
	fi->keep_cache = deleg_opened(fs, id, file->f);
	file->deleg_id = opened_under(file->f);
	/* the attributes the server made it with, kept under its write
	 * delegation unless changed since @seq (for a new node, nothing of
	 * this mount changed it but the grant, which they came with); then
	 * the change stamp (O_TRUNC of an existing file) */
	fino_named(&fs->ino, id, parent, name, seq);
	if (fresh)
		seq = fino_seq(&fs->ino);
	fino_attr_keep(&fs->ino, id, &a, seq, seq);
	changed(fs, id);
	/* made or truncated: no security.capability under its delegation */
	if (fi->flags & (O_EXCL | O_TRUNC))
		fino_caps_gone(&fs->ino, id, epoch, file->deleg_id);
	wb_open(fs, file, id, fi->flags);
	memset(&e, 0, sizeof(e));
	e.ino = id;
	e.attr_timeout = attr_tmo(fs, id);
	e.entry_timeout = fs->o.entry_timeout;
	to_stat(&a, &e.attr);
	if (fuse_reply_create(req, &e, fi)) {
		if (file->wb_on)
			fwb_close(&fs->wb, &file->wb, fs->s);
		forget(fs, id, 1);
		handle_del(fs, &file->h);
		as_self(fs);
		dafs_close(file->f);
		file_free(file);
	}
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	struct dfs *fs = FS(req);
	struct fbuf *b = fbuf_get(&fs->pool);
	ssize_t n;

	if (!b) {
		reply_err(req, -ENOMEM);
		return;
	}
	/* the kernel never asks for more than max_read (= max_io) */
	if (size > fs->max_io)
		size = fs->max_io;
	wb_sync_ino(fs, ino);
	as_self(fs);
	n = dafs_read(file_of(fi)->f, b->data, size, (uint64_t)off, b->mem);
	if (n == -DAFS_EREVOKED)
		file_revoked(fs, file_of(fi));
	if (n < 0)
		reply_err(req, (int)n);
	else
		fuse_reply_buf(req, (const char *)b->data, (size_t)n);
}

/*
 * Writes arrive as a buffer vector: in libfuse's receive buffer, or still
 * in a pipe when splice is on. Small ones travel inline in the request, so
 * they go straight from where they are; larger ones are gathered into the
 * thread's registered buffer (from the pipe this is the only copy) and
 * leave from there.
 */
static void op_write_buf(fuse_req_t req, fuse_ino_t ino, struct fuse_bufvec *in,
			 off_t off, struct fuse_file_info *fi)
{
	struct dfs *fs = FS(req);
	struct dfs_file *file = file_of(fi);
	size_t len = fuse_buf_size(in);
	struct fbuf *b;
	dafs_mem_t *mem = NULL;
	const void *data;
	uint32_t cred;
	int rc, behind = -1;
	ssize_t n;

	rc = refuse_ro(fs);
	if (!rc)
		/* as the writer: the server clears setuid and setgid bits
		 * on a write by anyone without CAP_FSETID, as a local write
		 * would */
		rc = as_caller_id(fs, req, &cred);
	if (rc) {
		reply_err(req, rc);
		return;
	}
	/* the kernel never sends more than max_write (= max_io) */
	if (len > fs->max_io)
		len = fs->max_io;
	/* a whole extent under write-back goes behind (wback_i.h); not on
	 * an O_APPEND file, whose writes land at the server's end of file
	 * as each arrives: two in flight could land in either order */
	if (file->wb_on && !(file->flags & O_APPEND) && len == fs->wb.cap &&
	    wb_may_hold(fs, ino))
		behind = fwb_behind_get(&fs->wb);
	if (behind < 0 && in->count == 1 && in->idx == 0 && in->off == 0 &&
	    !(in->buf[0].flags & FUSE_BUF_IS_FD) && len <= fs->inline_max) {
		data = in->buf[0].mem;
	} else {
		struct fuse_bufvec dst = FUSE_BUFVEC_INIT(len);

		if (behind >= 0) {
			dst.buf[0].mem = fwb_behind_buf(&fs->wb, behind);
		} else {
			b = fbuf_get(&fs->pool);
			if (!b) {
				reply_err(req, -ENOMEM);
				return;
			}
			dst.buf[0].mem = b->data;
			mem = b->mem;
		}
		n = fuse_buf_copy(&dst, in, 0);
		if (n < 0) {
			if (behind >= 0)
				fwb_behind_put(&fs->wb, behind);
			reply_err(req, (int)n);
			return;
		}
		len = (size_t)n;
		data = dst.buf[0].mem;
	}
	/* what other open files of the node hold goes first: writes reach
	 * the server in the order they were made */
	if (atomic_load(&fs->wb.bytes))
		fwb_flush_ino(&fs->wb, ino, fs->s,
			      file->wb_on ? &file->wb : NULL);
	if (behind >= 0) {
		n = fwb_behind(&fs->wb, &file->wb, fs->s, wb_may_hold, fs,
			       behind, len, (uint64_t)off, cred);
		goto out;
	}
	if (file->wb_on) {
		dafs_cred_use(fs->s, cred);
		n = fwb_write(&fs->wb, &file->wb, fs->s, wb_may_hold, fs,
			      data, len, (uint64_t)off, cred);
		if (n)
			goto out;
	}
	/* as the writer: sending what others held (above) changed the
	 * thread's credentials to theirs */
	n = dafs_cred_use(fs->s, cred);
	if (!n)
		n = dafs_write(file->f, data, len, (uint64_t)off, mem);
out:
	if (n == -DAFS_EREVOKED)
		file_revoked(fs, file);
	/* changed, and the size and times kept under the delegation (an
	 * append at the server's end of file, whatever the offset); not
	 * after a failure (a reply lost after the server wrote) */
	if (n < 0)
		fino_attr_drop(&fs->ino, ino);
	else
		fino_attr_wrote(&fs->ino, ino, (uint64_t)off, (uint64_t)n,
				!!(file->flags & O_APPEND));
	if (n < 0) {
		reply_err(req, (int)n);
		return;
	}
	fuse_reply_write(req, (size_t)n);
}

/*
 * close(2) of one descriptor. Under the write delegation, close is
 * answered first (with a write-back error met before, if any) and what
 * the descriptor held goes to the server after: as a local file system
 * (and NFSv4 under a write delegation) starts write-back at close without
 * waiting for it. Nobody else sees the file until the delegation is
 * recalled, which sends everything first, and every request of this
 * mount that needs the bytes on the server (read, getattr, lookup, a
 * write through another descriptor, fsync) waits for them: the send holds
 * the file's write-back lock. An error of that send is fsync's, of this
 * or any other descriptor of the file, as a local file system reports it.
 * Without the delegation, or with POSIX locks to release, the writes go
 * first and close returns their error.
 *
 * A close releases the POSIX locks its process (fi->lock_owner) holds on
 * the file, through whichever descriptor they were taken, as POSIX wants;
 * the kernel leaves that to us. Only nodes locked through this mount ask
 * the server. A failed release is not close's error: what the server
 * could not be told goes with the session.
 */
static void op_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct dfs *fs = FS(req);
	struct dfs_file *file = file_of(fi);
	int rc = 0;

	if (file->wb_on && !fino_locked(&fs->ino, ino) &&
	    wb_may_hold(fs, ino) && fwb_close_early(&fs->wb) &&
	    fwb_busy(&file->wb)) {
		atomic_fetch_add(&fs->wb.early_closes, 1);
		/* the release that may follow the answer at once waits */
		fwb_pin(&fs->wb, &file->wb);
		reply_err(req, fwb_err_take_own(&fs->wb, &file->wb));
		fwb_send_unpin(&fs->wb, &file->wb, fs->s);
		return;
	}
	if (file->wb_on)
		rc = fwb_flush(&fs->wb, &file->wb, fs->s);
	if (fino_locked(&fs->ino, ino)) {
		dafs_lock_t lk = {.kind = DAFS_LOCK_POSIX,
				  .type = DAFS_LOCK_UNLOCK,
				  .owner = fi->lock_owner};

		/* what the others hold, written under the lock, first */
		wb_sync_ino(fs, ino);
		as_self(fs);
		dafs_lock(file->f, &lk);
	}
	reply_err(req, rc);
}

static void op_release(fuse_req_t req, fuse_ino_t ino,
		       struct fuse_file_info *fi)
{
	struct dfs *fs = FS(req);
	struct dfs_file *file = file_of(fi);
	/* before it leaves the list: a drop after that moves this on */
	uint64_t gen = park_gen(fs);

	handle_del(fs, &file->h);
	/* an error nobody reported (the close was answered before its
	 * write-back) stays for the next fsync of the file */
	if (file->wb_on)
		fwb_close(&fs->wb, &file->wb, fs->s);
	as_self(fs);
	if (file->npowners)
		lock_release_owners(fs, file);
	/* the last close of an open file description that took flock
	 * locks: they go with it (flock(2)) */
	if (fi->flock_release || file->flocked) {
		dafs_lock_t lk = {.kind = DAFS_LOCK_FLOCK,
				  .type = DAFS_LOCK_UNLOCK,
				  .owner = flock_owner(file)};

		dafs_lock(file->f, &lk);
	}
	/* kept for the next open while the delegation is held and no lock
	 * state hangs on it; the kernel ignores release errors, and the
	 * server has closed anyway */
	if (fs->o.deleg != DFS_DELEG_OFF && !file->created &&
	    !file->revoked && !file->stale && !file->npowners &&
	    !file->flocked &&
	    !fi->flock_release && !fino_locked(&fs->ino, ino) &&
	    file->deleg_id && file->deleg_id == fino_deleg_id(&fs->ino, ino))
		park_put(fs, ino, file->f, file->flags, file->cred, gen);
	else
		dafs_close(file->f);
	file_free(file);
	fuse_reply_err(req, 0);
}

static void op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync,
		     struct fuse_file_info *fi)
{
	struct dfs *fs = FS(req);
	struct dfs_file *file = file_of(fi);
	int rc = 0, err;

	/* what every open file of the node holds, not only this one's: an
	 * fsync of any descriptor makes the file's writes durable */
	wb_sync_ino(fs, ino);
	if (file->wb_on)
		rc = fwb_flush(&fs->wb, &file->wb, fs->s);
	/* and, as Linux does for every descriptor, what another open file
	 * of the node failed to write back since this one was opened */
	if (!rc)
		rc = fwb_err_take(&fs->wb, ino, file->wb_on ? file->wb.id : 0,
				  &file->eseen);
	/* and one that no descriptor reported, whenever it came (taken
	 * either way: reported once) */
	err = fwb_err_take_unseen(&fs->wb, ino);
	if (!rc)
		rc = err;
	as_self(fs);
	if (!rc)
		rc = dafs_commit(file->f, datasync);
	reply_err(req, rc);
}

static void op_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t offset,
			 off_t length, struct fuse_file_info *fi)
{
	struct dfs *fs = FS(req);
	int rc = refuse_ro(fs);

	wb_sync_ino(fs, ino);
	if (!rc)
		rc = as_caller(fs, req);
	if (!rc)
		rc = dafs_fallocate(file_of(fi)->f, mode, (uint64_t)offset,
				    (uint64_t)length);
	/* changed (or maybe, after a failure) */
	fino_attr_drop(&fs->ino, ino);
	reply_err(req, rc);
}

/* copy_file_range(2): the server copies, no data crosses the wire. */
static void op_copy_file_range(fuse_req_t req, fuse_ino_t ino_in, off_t off_in,
			       struct fuse_file_info *fi_in, fuse_ino_t ino_out,
			       off_t off_out, struct fuse_file_info *fi_out,
			       size_t len, int flags)
{
	struct dfs *fs = FS(req);
	ssize_t n;
	int rc = refuse_ro(fs);

	if (!rc && flags)
		rc = -EINVAL;
	if (!rc) {
		wb_sync_ino(fs, ino_in);
		wb_sync_ino(fs, ino_out);
	}
	if (!rc)
		rc = as_caller(fs, req); /* it writes: as the writer */
	if (rc) {
		reply_err(req, rc);
		return;
	}
	n = dafs_copy_range(file_of(fi_in)->f, (uint64_t)off_in,
			    file_of(fi_out)->f, (uint64_t)off_out, len);
	/* changed (or maybe, after a failure) */
	fino_attr_drop(&fs->ino, ino_out);
	if (n < 0) {
		reply_err(req, (int)n);
		return;
	}
	fuse_reply_write(req, (size_t)n);
}

/* lseek(2) with SEEK_DATA or SEEK_HOLE (the kernel handles the others):
 * asked of the server's file, after the writes held for it */
static void op_lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence,
		     struct fuse_file_info *fi)
{
	struct dfs *fs = FS(req);
	int64_t pos;

	if (whence != SEEK_DATA && whence != SEEK_HOLE) {
		reply_err(req, -EINVAL);
		return;
	}
	wb_sync_ino(fs, ino);
	as_self(fs);
	pos = dafs_lseek(file_of(fi)->f, (uint64_t)off, whence);
	if (pos < 0)
		reply_err(req, (int)pos);
	else
		fuse_reply_lseek(req, (off_t)pos);
}

/* ---- locks (locks.c) ---- */

/*
 * fcntl(2) locks and flock(2) go to the server, so they hold between
 * mounts and with the server's local processes. Owners are the kernel's:
 * a process's file table for POSIX locks (fi->lock_owner), so processes
 * of this mount conflict with each other as they would on a local disk,
 * and an open file description for flock, which is one FUSE open: our
 * dfs_file stands for it. Not the kernel's id of the description (a
 * pointer): the RELEASE that drops its locks comes in the background
 * after the last close, and a new description at the same address could
 * take a lock under the same id before it, and lose it to it. Ours lives
 * until that RELEASE is done. Calls as the daemon: the server checks the
 * open's access mode, not the caller (the kernel has checked fcntl's
 * rule already).
 */
static uint64_t flock_owner(const struct dfs_file *file)
{
	return (uint64_t)(uintptr_t)file;
}

/*
 * Lock requests and last-close releases of one node are serialized: each
 * holds its node's mutex (one of a small array, by node id) from the
 * moment it looks at or notes the owners of the node's open files until
 * its calls to the server are done. Without it lock_release_owners could
 * decide that an owner locked through no other open file, and then,
 * after dropping fs->hlock, unlock it on the server just after the owner
 * was granted a new lock through another open of the node (a process
 * that closes one descriptor of a file and locks through another at once,
 * an OFD owner id reused by a new open file): the unlock of the whole
 * file would take that lock. Serialized, a request either comes first,
 * and its owner noted on the other open is kept, or waits for the
 * release's unlocks and is granted after them. A per-(node, owner) count
 * of locks in flight would allow more concurrency but not remove the
 * need to order the count's last drop against the unlock; lock requests
 * of one node are not frequent enough for that to matter. Only the first
 * try of a request runs under the mutex: the waiter thread's later tries
 * need not, the owner being noted on an open file that stays open while
 * it waits. Lock order: a node's mutex before every other lock of the
 * mount (fs->hlock, the write-back set's, the waiter's, libfuse's).
 */
#define LOCK_SERIAL 64 /* a power of two */

static pthread_mutex_t lock_serial[LOCK_SERIAL] = {
	[0 ... LOCK_SERIAL - 1] = PTHREAD_MUTEX_INITIALIZER};

static pthread_mutex_t *lock_serial_of(uint64_t ino)
{
	return &lock_serial[(ino * 0x9e3779b97f4a7c15ull) >> 58];
}

/* Test hook (mount-locks): a pause, in ms, between a last close's
 * decision on the owners to release and its unlocks, where the race this
 * serialization closes would be. */
static void lock_release_test_delay(void)
{
	const char *ms = getenv("DAFS_FUSE_TEST_RELEASE_DELAY_MS");

	if (ms && *ms)
		usleep((useconds_t)strtoul(ms, NULL, 10) * 1000u);
}

/* Note POSIX owner @owner asking for a lock through @file (fs->hlock). */
static void lock_note_owner(struct dfs *fs, struct dfs_file *file,
			    uint64_t owner)
{
	uint32_t i;

	pthread_mutex_lock(&fs->hlock);
	for (i = 0; i < file->npowners; i++)
		if (file->powners[i] == owner)
			break;
	if (i == file->npowners) {
		if (file->npowners == file->cpowners) {
			uint32_t cap = file->cpowners ? file->cpowners * 2 : 4;
			uint64_t *p = realloc(file->powners, cap * sizeof(*p));

			if (p) {
				file->powners = p;
				file->cpowners = cap;
			}
		}
		if (file->npowners < file->cpowners)
			file->powners[file->npowners++] = owner;
	}
	pthread_mutex_unlock(&fs->hlock);
}

/*
 * The last close of the open file description @file (already off the
 * handle list): release the POSIX locks that no close released. A
 * process's locks go at each close(2) (op_flush, with its owner), but the
 * locks of an open file description (F_OFD_SETLK) belong to the
 * description itself, and the kernel neither flushes with that owner nor
 * tells release which owner it was. So every owner that locked through
 * @file and through no other file of the node still open is released:
 * a process's owner that reached here has been flushed (it closed its
 * descriptor of @file) and holds nothing that an unlock could take from
 * it, unless it locked again through another open file, which keeps it.
 */
static void lock_release_owners(struct dfs *fs, struct dfs_file *file)
{
	dafs_lock_t lk = {.kind = DAFS_LOCK_POSIX, .type = DAFS_LOCK_UNLOCK};
	pthread_mutex_t *serial = lock_serial_of(file->ino);
	struct dfs_handle *h;
	uint32_t i, j, n = 0;

	/* until the unlocks are done: no lock request of the node between
	 * the decision and them (see lock_serial) */
	pthread_mutex_lock(serial);
	pthread_mutex_lock(&fs->hlock);
	for (i = 0; i < file->npowners; i++) {
		int kept = 0;

		for (h = fs->handles.next; h != &fs->handles && !kept;
		     h = h->next) {
			struct dfs_file *o = (struct dfs_file *)h;

			if (h->dir || o->ino != file->ino)
				continue;
			for (j = 0; j < o->npowners && !kept; j++)
				kept = o->powners[j] == file->powners[i];
		}
		if (!kept)
			file->powners[n++] = file->powners[i];
	}
	file->npowners = n;
	pthread_mutex_unlock(&fs->hlock);
	if (n) {
		lock_release_test_delay();
		wb_sync_ino(fs, file->ino); /* written under those locks */
	}
	for (i = 0; i < n; i++) {
		lk.owner = file->powners[i];
		dafs_lock(file->f, &lk);
	}
	pthread_mutex_unlock(serial);
}

static void lock_send(fuse_req_t req, fuse_ino_t ino,
		      struct fuse_file_info *fi, dafs_lock_t *lk, int sleep)
{
	struct dfs *fs = FS(req);
	pthread_mutex_t *serial = NULL;

	lk->owner = lk->kind == DAFS_LOCK_FLOCK ? flock_owner(file_of(fi))
						: fi->lock_owner;
	if (lk->kind == DAFS_LOCK_FLOCK && lk->type != DAFS_LOCK_UNLOCK)
		file_of(fi)->flocked = 1;
	if (lk->kind == DAFS_LOCK_POSIX && lk->type != DAFS_LOCK_UNLOCK) {
		/* noted and tried in one piece against a last close's
		 * release of the node's owners (see lock_serial); flock
		 * owners are their open file's alone */
		serial = lock_serial_of(ino);
		pthread_mutex_lock(serial);
		lock_note_owner(fs, file_of(fi), lk->owner);
	}
	if (lk->type == DAFS_LOCK_UNLOCK)
		/* what was written under the lock reaches the server before
		 * another client can take it */
		wb_sync_ino(fs, ino);
	else if (lk->kind == DAFS_LOCK_POSIX)
		fino_set_locked(&fs->ino, ino);
	as_self(fs);
	flk_request(fs, req, ino, file_of(fi)->f, lk, sleep);
	if (serial)
		pthread_mutex_unlock(serial);
}

/* fuse_lowlevel's struct flock (l_whence is SEEK_SET, l_len 0 to the end)
 * as a POSIX lock; -EINVAL for what fcntl would refuse. */
static int lock_of(const struct flock *fl, dafs_lock_t *lk)
{
	memset(lk, 0, sizeof(*lk));
	lk->kind = DAFS_LOCK_POSIX;
	switch (fl->l_type) {
	case F_RDLCK:
		lk->type = DAFS_LOCK_READ;
		break;
	case F_WRLCK:
		lk->type = DAFS_LOCK_WRITE;
		break;
	case F_UNLCK:
		lk->type = DAFS_LOCK_UNLOCK;
		break;
	default:
		return -EINVAL;
	}
	if (fl->l_start < 0 || fl->l_len < 0)
		return -EINVAL;
	lk->start = (uint64_t)fl->l_start;
	lk->len = (uint64_t)fl->l_len;
	return 0;
}

static void op_setlk(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi,
		     struct flock *lock, int sleep)
{
	dafs_lock_t lk;
	int rc = lock_of(lock, &lk);

	if (rc)
		reply_err(req, rc);
	else
		lock_send(req, ino, fi, &lk, sleep);
}

static void op_flock(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi,
		     int op)
{
	dafs_lock_t lk = {.kind = DAFS_LOCK_FLOCK};

	switch (op & (LOCK_SH | LOCK_EX | LOCK_UN)) {
	case LOCK_SH:
		lk.type = DAFS_LOCK_READ;
		break;
	case LOCK_EX:
		lk.type = DAFS_LOCK_WRITE;
		break;
	case LOCK_UN:
		lk.type = DAFS_LOCK_UNLOCK;
		break;
	default:
		reply_err(req, -EINVAL);
		return;
	}
	lock_send(req, ino, fi, &lk, !(op & LOCK_NB));
}

/* F_GETLK: the conflicting lock, or F_UNLCK. Its owner may be on another
 * client or the server, so there is no pid to give: l_pid is 0. */
static void op_getlk(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi,
		     struct flock *lock)
{
	struct dfs *fs = FS(req);
	struct flock out = *lock;
	dafs_lock_t lk;
	int rc = lock_of(lock, &lk);

	(void)ino;
	if (!rc && lk.type == DAFS_LOCK_UNLOCK)
		rc = -EINVAL;
	if (!rc) {
		lk.owner = fi->lock_owner;
		as_self(fs);
		rc = dafs_lock_test(file_of(fi)->f, &lk);
	}
	if (rc) {
		reply_err(req, rc);
		return;
	}
	out.l_whence = SEEK_SET;
	out.l_pid = 0;
	if (lk.type == DAFS_LOCK_UNLOCK) {
		out.l_type = F_UNLCK;
	} else {
		out.l_type = lk.type == DAFS_LOCK_READ ? F_RDLCK : F_WRLCK;
		out.l_start = (off_t)lk.start;
		out.l_len = (off_t)lk.len;
	}
	fuse_reply_lock(req, &out);
}

/* ---- directories ---- */

/* dafs_readdir callback: append one entry to the batch. */
static int dir_add(void *arg, const dafs_dirent_t *ent)
{
	struct dfs_dir *d = arg;
	size_t len = strlen(ent->name) + 1;
	struct dfs_dent *e;

	if (d->n == d->cap) {
		uint32_t cap = d->cap ? d->cap * 2 : 256;
		void *p = realloc(d->ents, cap * sizeof(*d->ents));

		if (!p)
			goto nomem;
		d->ents = p;
		d->cap = cap;
	}
	if (d->nlen + len > d->ncap) {
		size_t cap = d->ncap ? d->ncap * 2 : 16384;
		void *p;

		while (cap < d->nlen + len)
			cap *= 2;
		p = realloc(d->names, cap);
		if (!p)
			goto nomem;
		d->names = p;
		d->ncap = cap;
	}
	e = &d->ents[d->n++];
	e->cookie = ent->cookie;
	e->type = ent->type;
	e->ino = ent->ino;
	e->name = (uint32_t)d->nlen;
	memcpy(d->names + d->nlen, ent->name, len);
	d->nlen += len;
	if (ent->fh)
		e->fh = *ent->fh;
	if (ent->attr)
		e->attr = *ent->attr;
	return 0;
nomem:
	d->err = -ENOMEM;
	return 1;
}

/* Read one batch from server cookie @cookie (d->lock held, the caller's
 * credentials in use: the server checks read permission each time). */
static int dir_fill(struct dfs *fs, struct dfs_dir *d, uint64_t cookie,
		    int plus)
{
	uint64_t c = cookie;
	int eof = 0, rc;

	d->filled = 0;
	d->n = 0;
	d->nlen = 0;
	d->err = 0;
	d->seq = fino_seq(&fs->ino);
	d->read_at = now();
	rc = dafs_readdir(fs->s, &d->fh, &c, plus, dir_add, d, &eof);
	if (rc < 0)
		return rc;
	if (d->err)
		return d->err;
	d->filled = 1;
	d->plus = plus;
	d->eof = eof;
	d->start = cookie;
	return 0;
}

/* Where the batch holds the entry after server cookie @cookie: its index,
 * d->n when the batch ends there, or -1 when it is not in the batch. */
static long dir_find(const struct dfs_dir *d, uint64_t cookie)
{
	uint32_t i;

	if (!d->filled)
		return -1;
	if (cookie == d->start)
		return 0;
	for (i = 0; i < d->n; i++)
		if (d->ents[i].cookie == cookie)
			return (long)i + 1;
	return -1;
}

static void op_opendir(fuse_req_t req, fuse_ino_t ino,
		       struct fuse_file_info *fi)
{
	struct dfs *fs = FS(req);
	struct dfs_dir *d;
	int rc;

	d = calloc(1, sizeof(*d));
	if (!d) {
		reply_err(req, -ENOMEM);
		return;
	}
	pthread_mutex_init(&d->lock, NULL);
	wb_sync_all(fs); /* the first batch, read here, carries attributes */
	rc = fino_fh(&fs->ino, ino, &d->fh);
	if (!rc)
		rc = as_caller(fs, req);
	/*
	 * The first batch now: the server checks read permission as the
	 * caller (EACCES belongs to opendir(3), as on a local disk), and the
	 * first readdir is then served without a round trip.
	 */
	if (!rc)
		rc = dir_fill(fs, d, 0, 1);
	if (rc) {
		dir_free(d);
		reply_err(req, rc);
		return;
	}
	handle_add(fs, &d->h, 1);
	fi->fh = (uintptr_t)d;
	if (fuse_reply_open(req, fi)) {
		handle_del(fs, &d->h);
		dir_free(d);
	}
}

/* Inode numbers for "." and "..": looked up once per open directory. */
static void dir_dots(struct dfs *fs, struct dfs_dir *d)
{
	dafs_attr_t a;

	if (d->self_ino)
		return;
	d->self_ino = dafs_getattr(fs->s, &d->fh, &a) ? 1 : a.ino;
	/* ".." of the export root is the root, as the server resolves it */
	d->parent_ino = dafs_lookup(fs->s, &d->fh, "..", NULL, &a) ? d->self_ino
								   : a.ino;
}

/*
 * readdir and readdirplus. FUSE offsets: 0 is the start, 1 follows ".",
 * 2 follows "..", anything else is the server cookie after which to go on
 * (the file system's own d_off; those never take the values 1 and 2,
 * which "." and ".." occupy on Linux file systems, as NFSv4 reserves
 * them). In plus mode every entry but "." and ".." gives the kernel a
 * lookup of its node; the ones that do not reach it are given back.
 *
 * Offset 0 once entries have gone out is a rewinddir(3): the directory is
 * read afresh, as it promises.
 *
 * The kernel applies readdirplus attributes over what it knows unless a
 * change of its own completed after it sent the request. A batch read
 * during this request is thus always safe; one read earlier (at opendir,
 * or for an earlier request) may predate a write, truncate or rename this
 * mount made since, and would take the kernel's size, times or names back
 * (a read past the old size sees the end of the file; a removed name gets
 * a dentry). From such a batch an entry goes with its attributes only if
 * neither it nor the directory changed through this mount since the batch
 * was read (fino_changed), and for attr_timeout at most; otherwise it goes
 * as a bare name (node id 0), which the kernel looks up when it needs to.
 */
static void do_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi, int plus)
{
	struct dfs *fs = FS(req);
	struct dfs_dir *d = dir_of(fi);
	struct fbuf *b = fbuf_get(&fs->pool);
	uint64_t cookie, *ids;
	size_t pos = 0, need, maxids, nids = 0, i;
	struct fuse_entry_param e;
	long idx;
	int rc = 0, fresh = 0, aged = 0;

	if (plus)
		wb_sync_all(fs); /* batches carry attributes */

	if (!b) {
		reply_err(req, -ENOMEM);
		return;
	}
	/* the reply in the first half of the buffer, node ids in the
	 * second: an entry takes at least 24 bytes */
	if (size > b->size / 2)
		size = b->size / 2;
	ids = (uint64_t *)(void *)(b->data + b->size / 2);
	maxids = b->size / 2 / sizeof(*ids);

	pthread_mutex_lock(&d->lock);
	rc = as_caller(fs, req);
	if (rc)
		goto out;
	memset(&e, 0, sizeof(e));
	e.attr.st_mode = S_IFDIR;
	if (off < 2)
		dir_dots(fs, d);
	if (off == 0) {
		e.attr.st_ino = d->self_ino;
		need = plus ? fuse_add_direntry_plus(req, (char *)b->data, size,
						     ".", &e, 1)
			    : fuse_add_direntry(req, (char *)b->data, size, ".",
						&e.attr, 1);
		if (need > size)
			goto out;
		pos += need;
	}
	if (off <= 1) {
		e.attr.st_ino = d->parent_ino;
		need = plus ? fuse_add_direntry_plus(req, (char *)b->data + pos,
						     size - pos, "..", &e, 2)
			    : fuse_add_direntry(req, (char *)b->data + pos,
						size - pos, "..", &e.attr, 2);
		if (need > size - pos)
			goto out;
		pos += need;
	}
	cookie = off <= 2 ? 0 : (uint64_t)off;

	idx = dir_find(d, cookie);
	if (idx >= 0 && plus && !d->plus)
		idx = -1; /* attributes needed that the batch lacks */
	if (off == 0 && d->served)
		idx = -1; /* rewinddir */
	if (idx >= 0 && plus)
		aged = now() - d->read_at > fs->o.attr_timeout ||
		       fino_changed(&fs->ino, &d->fh) > d->seq;
	for (;;) {
		struct dfs_dent *ent;
		const char *name;

		if (idx < 0 || ((uint32_t)idx == d->n && !d->eof)) {
			rc = dir_fill(fs, d, cookie, plus || d->plus);
			if (rc)
				break;
			if (!d->n)
				d->eof = 1; /* no progress: never ask again */
			idx = 0;
			fresh = 1;
		}
		if ((uint32_t)idx == d->n)
			break; /* the end of the directory */
		ent = &d->ents[idx];
		name = d->names + ent->name;
		if (plus && !fresh &&
		    (aged || fino_changed(&fs->ino, &ent->fh) > d->seq)) {
			/* a bare name: the attributes may be older than the
			 * kernel's */
			memset(&e, 0, sizeof(e));
			e.attr.st_ino = ent->ino;
			e.attr.st_mode = ent->type;
			need = fuse_add_direntry_plus(
				req, (char *)b->data + pos, size - pos, name,
				&e, (off_t)ent->cookie);
			if (need > size - pos)
				break;
			pos += need;
		} else if (plus) {
			uint64_t id;

			need = fuse_add_direntry_plus(req, NULL, 0, name, NULL,
						      0);
			if (need > size - pos || nids == maxids)
				break;
			rc = fino_ref(&fs->ino, &ent->fh, &id);
			if (rc)
				break;
			fino_named(&fs->ino, id, ino, name, d->seq);
			ids[nids++] = id;
			memset(&e, 0, sizeof(e));
			e.ino = id;
			e.attr_timeout = fs->o.attr_timeout;
			e.entry_timeout = fs->o.entry_timeout;
			to_stat(&ent->attr, &e.attr);
			pos += fuse_add_direntry_plus(
				req, (char *)b->data + pos, size - pos, name,
				&e, (off_t)ent->cookie);
		} else {
			struct stat st;

			memset(&st, 0, sizeof(st));
			st.st_ino = ent->ino;
			st.st_mode = ent->type;
			need = fuse_add_direntry(req, (char *)b->data + pos,
						 size - pos, name, &st,
						 (off_t)ent->cookie);
			if (need > size - pos)
				break;
			pos += need;
		}
		cookie = ent->cookie;
		idx++;
	}
out:
	if (pos)
		d->served = 1;
	pthread_mutex_unlock(&d->lock);
	/* what was gathered goes out even if the next batch failed; the
	 * error then comes with the next call */
	if (rc && !pos) {
		reply_err(req, rc);
		return;
	}
	if (fuse_reply_buf(req, (const char *)b->data, pos))
		for (i = 0; i < nids; i++)
			forget(fs, ids[i], 1);
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	do_readdir(req, ino, size, off, fi, 0);
}

static void op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size,
			   off_t off, struct fuse_file_info *fi)
{
	do_readdir(req, ino, size, off, fi, 1);
}

static void op_releasedir(fuse_req_t req, fuse_ino_t ino,
			  struct fuse_file_info *fi)
{
	struct dfs *fs = FS(req);
	struct dfs_dir *d = dir_of(fi);

	(void)ino;
	handle_del(fs, &d->h);
	dir_free(d);
	fuse_reply_err(req, 0);
}

/* Directory changes are synchronous on the server: nothing to flush. */
static void op_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync,
			struct fuse_file_info *fi)
{
	(void)ino, (void)datasync, (void)fi;
	fuse_reply_err(req, 0);
}

static void op_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct dfs *fs = FS(req);
	struct statvfs sv;
	dafs_statfs_t st;
	dafs_fh_t fh;
	int rc;

	rc = fino_fh(&fs->ino, ino, &fh);
	if (!rc) {
		as_self(fs);
		rc = dafs_statfs(fs->s, &fh, &st);
	}
	if (rc) {
		reply_err(req, rc);
		return;
	}
	memset(&sv, 0, sizeof(sv));
	sv.f_bsize = st.bsize;
	sv.f_frsize = st.frsize;
	sv.f_blocks = st.blocks;
	sv.f_bfree = st.bfree;
	sv.f_bavail = st.bavail;
	sv.f_files = st.files;
	sv.f_ffree = st.ffree;
	sv.f_favail = st.ffree;
	sv.f_namemax = st.namemax;
	fuse_reply_statfs(req, &sv);
}

/* ---- extended attributes ---- */

static void op_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name,
			const char *value, size_t size, int flags)
{
	struct dfs *fs = FS(req);
	dafs_fh_t fh;
	int rc;

	rc = dirop_begin(fs, req, ino, &fh);
	if (!rc)
		rc = dafs_setxattr(fs->s, &fh, name, value, size, flags);
	fino_xattr_changed(&fs->ino, ino);
	park_close(fs, ino); /* an ACL may change who may open it */
	reply_err(req, rc);
}

/* getxattr and listxattr: the size alone when @size is 0, else the value
 * through the thread's buffer. */
static void xattr_reply(fuse_req_t req, fuse_ino_t ino, const char *name,
			size_t size)
{
	struct dfs *fs = FS(req);
	struct fbuf *b = NULL;
	int caps = name && !strcmp(name, "security.capability");
	uint32_t xgen = 0;
	dafs_fh_t fh;
	ssize_t n;
	int rc;

	if (caps && fino_nocaps(&fs->ino, ino, &xgen)) {
		fuse_reply_err(req, ENODATA);
		return;
	}
	rc = fino_fh(&fs->ino, ino, &fh);
	if (!rc)
		rc = as_caller(fs, req);
	if (!rc && size) {
		b = fbuf_get(&fs->pool);
		if (!b)
			rc = -ENOMEM;
		else if (size > b->size)
			size = b->size;
	}
	if (rc) {
		reply_err(req, rc);
		return;
	}
	n = name ? dafs_getxattr(fs->s, &fh, name, b ? b->data : NULL, size)
		 : dafs_listxattr(fs->s, &fh, b ? (char *)b->data : NULL, size);
	if (caps && n == -ENODATA)
		fino_set_nocaps(&fs->ino, ino, xgen);
	if (n < 0)
		reply_err(req, (int)n);
	else if (!size)
		fuse_reply_xattr(req, (size_t)n);
	else
		fuse_reply_buf(req, (const char *)b->data, (size_t)n);
}

/*
 * "dafs.stats" of the mount's root is the mount's statistics, one
 * "name value" per line (dafsstat reads it). The name is outside the
 * user., trusted., security. and system. namespaces, so it can be no
 * attribute of the server's files; FUSE passes it through.
 */
static void stats_xattr(fuse_req_t req, size_t size)
{
	char line[DFS_STATS_MAX], *p;
	size_t n;

	dfs_stats(FS(req), line, sizeof(line));
	for (p = line; (p = strstr(p, ", ")); p++) {
		*p = '\n';
		memmove(p + 1, p + 2, strlen(p + 2) + 1);
	}
	n = strlen(line);
	line[n++] = '\n';
	if (size == 0)
		fuse_reply_xattr(req, n);
	else if (size < n)
		fuse_reply_err(req, ERANGE);
	else
		fuse_reply_buf(req, line, n);
}

static void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name,
			size_t size)
{
	if (ino == FUSE_ROOT_ID && !strcmp(name, DFS_STATS_XATTR)) {
		stats_xattr(req, size);
		return;
	}
	xattr_reply(req, ino, name, size);
}

static void op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	xattr_reply(req, ino, NULL, size);
}

static void op_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	struct dfs *fs = FS(req);
	dafs_fh_t fh;
	int rc;

	rc = dirop_begin(fs, req, ino, &fh);
	if (!rc)
		rc = dafs_removexattr(fs->s, &fh, name);
	fino_xattr_changed(&fs->ino, ino);
	park_close(fs, ino);
	reply_err(req, rc);
}

/* ---- the connection ---- */

static void want(struct fuse_conn_info *conn, unsigned int cap)
{
	if (conn->capable & cap)
		conn->want |= cap;
}

static void op_init(void *userdata, struct fuse_conn_info *conn)
{
	struct dfs *fs = userdata;

	/* requests as large as the session carries in one I/O */
	conn->max_write = fs->max_io;
	conn->max_read = fs->max_io;
	conn->max_readahead = fs->max_io;
	want(conn, FUSE_CAP_ASYNC_READ);
	/* O_TRUNC reaches the server's open, checked there as the caller */
	want(conn, FUSE_CAP_ATOMIC_O_TRUNC);
	want(conn, FUSE_CAP_READDIRPLUS);
	want(conn, FUSE_CAP_READDIRPLUS_AUTO);
	want(conn, FUSE_CAP_PARALLEL_DIROPS);
	want(conn, FUSE_CAP_AUTO_INVAL_DATA);
	want(conn, FUSE_CAP_ASYNC_DIO);
	if (fs->o.splice)
		want(conn, FUSE_CAP_SPLICE_READ);
	else
		conn->want &= ~(unsigned int)FUSE_CAP_SPLICE_READ;
	/* POSIX and flock locks go to the server (op_setlk, op_flock):
	 * coherent between mounts, and with the server's processes */
	want(conn, FUSE_CAP_POSIX_LOCKS);
	want(conn, FUSE_CAP_FLOCK_LOCKS);
	/*
	 * No write-back cache: without delegations another client's writes
	 * would meet stale pages here.
	 */
	conn->want &= ~(unsigned int)FUSE_CAP_WRITEBACK_CACHE;
	conn->time_gran = 1;
}

/* The FUSE session is going (fuse_session_destroy): lock requests still
 * waiting are answered while it can take answers. */
static void op_destroy(void *userdata)
{
	flk_stop(userdata);
}

const struct fuse_lowlevel_ops dfs_ops = {
	.access = op_access,
	.copy_file_range = op_copy_file_range,
	.lseek = op_lseek,
	.create = op_create,
	.destroy = op_destroy,
	.fallocate = op_fallocate,
	.flock = op_flock,
	.flush = op_flush,
	.forget = op_forget,
	.forget_multi = op_forget_multi,
	.fsync = op_fsync,
	.fsyncdir = op_fsyncdir,
	.getattr = op_getattr,
	.getlk = op_getlk,
	.getxattr = op_getxattr,
	.init = op_init,
	.link = op_link,
	.listxattr = op_listxattr,
	.lookup = op_lookup,
	.mkdir = op_mkdir,
	.mknod = op_mknod,
	.open = op_open,
	.opendir = op_opendir,
	.read = op_read,
	.readdir = op_readdir,
	.readdirplus = op_readdirplus,
	.readlink = op_readlink,
	.release = op_release,
	.releasedir = op_releasedir,
	.removexattr = op_removexattr,
	.rename = op_rename,
	.rmdir = op_rmdir,
	.setattr = op_setattr,
	.setlk = op_setlk,
	.setxattr = op_setxattr,
	.statfs = op_statfs,
	.symlink = op_symlink,
	.unlink = op_unlink,
	.write_buf = op_write_buf,
};

/* ---- setup ---- */

/*
 * A delegation is recalled (on libdafs's callback thread): forget it, drop
 * the kernel's pages and attributes of the file (nothing is dirty in them:
 * writes go to the server as they come), and give it back.
 */
static void dfs_recall(void *arg, const dafs_fh_t *fh, uint64_t id, int type)
{
	struct dfs *fs = arg;
	uint64_t ino;

	/* no open is served or parked on the delegation from here on */
	park_stop(fs);
	ino = fino_deleg_drop(&fs->ino, fh, id);

	(void)type;
	/* dropped first, so no write is held from now on; a write that
	 * saw the delegation still held has its file's lock, which the
	 * write-back waits for */
	if (ino)
		fwb_flush_ino(&fs->wb, ino, fs->s, NULL);
	if (ino && fs->se)
		fuse_lowlevel_notify_inval_inode(fs->se, ino, 0, 0);
	/* before the return: the conflicting open is decided then, and
	 * an open of ours still there would refuse it a delegation */
	if (ino)
		park_close(fs, ino);
	dafs_deleg_return(fs->s, id);
}

int dfs_init(struct dfs *fs)
{
	dafs_session_info_t info;
	dafs_fh_t root;
	int rc;

	dafs_session_query(fs->s, &info);
	fs->max_io = info.max_io;
	fs->inline_max = info.inline_max;
	dafs_root(fs->s, &root);
	pthread_mutex_init(&fs->hlock, NULL);
	fs->handles.next = fs->handles.prev = &fs->handles;
	rc = fino_table_init(&fs->ino, &root);
	if (rc)
		return rc;
	fcred_cache_init(&fs->creds, fs->s);
	if (fs->o.cache_mb > 0) {
		rc = dafs_cache_setup(fs->s, (uint64_t)fs->o.cache_mb << 20,
				      fs->o.cache_dir);
		if (rc) {
			fuse_log(FUSE_LOG_ERR, "dafs-fuse: data cache%s%s: %s\n",
				 fs->o.cache_dir ? " in " : "",
				 fs->o.cache_dir ? fs->o.cache_dir : "",
				 dafs_strerror(rc));
			return rc;
		}
	}
	fwb_set_init(&fs->wb, (uint64_t)fs->o.wb_max_mb << 20,
		     fs->max_io < (1u << 20) ? fs->max_io : (1u << 20), wb_sent,
		     fs);
	fs->wb.close_behind_ns =
		fs->o.close_behind_us < 0
			? UINT64_MAX
			: (uint64_t)fs->o.close_behind_us * 1000;
	if (fs->o.deleg == DFS_DELEG_ON && fs->o.wb_max_mb) {
		rc = fwb_behind_start(&fs->wb, fs->s, fs->o.wb_behind,
				      fs->o.timeout_ms);
		if (rc) {
			fuse_log(FUSE_LOG_ERR, "dafs-fuse: write-behind "
				 "buffers: %s\n", dafs_strerror(rc));
			return rc;
		}
	}
	dafs_set_recall_handler(fs->s, dfs_recall, fs);
	/* one buffer per worker thread, and one to spare */
	rc = fbuf_pool_init(&fs->pool, fs->s, fs->o.threads + 1, fs->max_io);
	if (!rc) {
		rc = flk_start(fs);
		if (rc)
			fbuf_pool_fini(&fs->pool);
	}
	if (rc) {
		fcred_cache_fini(&fs->creds);
		fino_table_fini(&fs->ino);
	}
	return rc;
}

/* This process's threads now (libfuse's workers among them: each holds a
 * receive buffer counted in the heap; the walk test needs both figures
 * from one moment). -1 if /proc says nothing. */
static int count_threads(void)
{
	DIR *d = opendir("/proc/self/task");
	struct dirent *de;
	int n = 0;

	if (!d)
		return -1;
	while ((de = readdir(d)))
		n += de->d_name[0] != '.';
	closedir(d);
	return n;
}

/* Append ", rpc NAME COUNT" to @buf for every operation the session has
 * sent (names in lower case: "rpc open 12"). */
static void rpc_stats(dafs_session_t *s, char *buf, size_t size)
{
	size_t len = strlen(buf), j;
	const char *name;
	char lower[32];
	uint64_t count;
	unsigned i;
	int n;

	for (i = 0; !dafs_op_count(s, i, &name, &count); i++) {
		if (!count)
			continue;
		for (j = 0; name[j] && j < sizeof(lower) - 1; j++)
			lower[j] = (char)tolower((unsigned char)name[j]);
		lower[j] = '\0';
		n = snprintf(buf + len, size - len, ", rpc %s %llu", lower,
			     (unsigned long long)count);
		if (n < 0 || (size_t)n >= size - len) {
			buf[len] = '\0'; /* no half entries */
			return;
		}
		len += (size_t)n;
	}
}

void dfs_stats(struct dfs *fs, char *buf, size_t size)
{
	dafs_deleg_stats_t ds;
	dafs_cache_stats_t cs;
	uint64_t files, dirs, local_opens;
	unsigned nparked;
	uint32_t creds;
	/* malloc's bytes in use (arenas and mmapped blocks): what the
	 * daemon holds, whatever the arenas keep of what it freed */
	struct mallinfo2 mi = mallinfo2();
	size_t heap = mi.uordblks + mi.hblkhd;

	pthread_mutex_lock(&fs->hlock);
	files = fs->nfiles;
	dirs = fs->ndirs;
	local_opens = fs->local_opens;
	nparked = fs->nparked;
	pthread_mutex_unlock(&fs->hlock);
	pthread_mutex_lock(&fs->creds.lock);
	creds = fs->creds.n;
	pthread_mutex_unlock(&fs->creds.lock);
	dafs_deleg_stats(fs->s, &ds);
	memset(&cs, 0, sizeof(cs));
	dafs_cache_stats(fs->s, &cs); /* zeros without a cache */
	snprintf(buf, size,
		 "inodes %zu, open files %llu, open directories %llu, "
		 "credential sets %u, delegations held %zu, "
		 "granted read %llu, granted write %llu, recalls %llu, "
		 "returns %llu, revoked %llu, recall latency avg %.3f ms "
		 "max %.3f ms, writes held %llu, written back %llu bytes "
		 "in %llu sends, write-back errors %llu, cache hits %llu, "
		 "cache misses %llu, cache bytes %llu, lock waits %llu, "
		 "locks granted after waiting %llu, local opens %llu, "
		 "parked opens %u, writes behind %llu, closes before "
		 "write-back %llu, write-back avg %.1f us, heap in use %zu, "
		 "process threads %d",
		 fino_count(&fs->ino), (unsigned long long)files,
		 (unsigned long long)dirs, creds, fino_ndelegs(&fs->ino),
		 (unsigned long long)ds.granted_read,
		 (unsigned long long)ds.granted_write,
		 (unsigned long long)ds.recalls, (unsigned long long)ds.returns,
		 (unsigned long long)ds.revoked,
		 ds.returns
			 ? (double)ds.recall_ns_total / 1e6 / (double)ds.returns
			 : 0.0,
		 (double)ds.recall_ns_max / 1e6,
		 (unsigned long long)atomic_load(&fs->wb.held),
		 (unsigned long long)atomic_load(&fs->wb.flushed_bytes),
		 (unsigned long long)atomic_load(&fs->wb.flushes),
		 (unsigned long long)atomic_load(&fs->wb.errors),
		 (unsigned long long)cs.hits, (unsigned long long)cs.misses,
		 (unsigned long long)cs.bytes,
		 (unsigned long long)flk_waiting(fs),
		 (unsigned long long)atomic_load(&fs->locks.granted_after_wait),
		 (unsigned long long)local_opens, nparked,
		 (unsigned long long)atomic_load(&fs->wb.behind),
		 (unsigned long long)atomic_load(&fs->wb.early_closes),
		 (double)atomic_load(&fs->wb.send_ns) / 1e3, heap,
		 count_threads());
	rpc_stats(fs->s, buf, size);
}

void dfs_fini(struct dfs *fs)
{
	struct dfs_handle *h, *next;

	/* nothing waits on the files closed below any more */
	flk_fini(fs);
	/* what the kernel never released: a lazy unmount, a lost device */
	for (h = fs->handles.next; h != &fs->handles; h = next) {
		next = h->next;
		if (h->dir) {
			dir_free((struct dfs_dir *)h);
		} else {
			struct dfs_file *file = (struct dfs_file *)h;

			if (file->wb_on)
				fwb_close(&fs->wb, &file->wb, fs->s);
			dafs_close(file->f);
			file_free(file);
		}
	}
	fs->handles.next = fs->handles.prev = &fs->handles;
	park_close(fs, 0);
	fbuf_pool_fini(&fs->pool);
	fwb_set_fini(&fs->wb);
	fcred_cache_fini(&fs->creds);
	fino_table_fini(&fs->ino);
	pthread_mutex_destroy(&fs->hlock);
}
