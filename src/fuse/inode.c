/*
 * inode.c - the inode table of dafs-fuse (see inode_i.h): node ids for
 * server file handles, with the kernel's lookup counts.
 */
#include <errno.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "fuse/inode_i.h"

struct fino {
	struct fino *next_fh, *next_id; /* hash chains */
	struct fino *next_name;		/* ... by name, while nparent */
	uint64_t id;
	uint64_t nlookup;
	uint64_t changed; /* fino_mark stamp of the last change, 0: none */
	uint64_t wrote;	  /* ... of the last write (fino_attr_wrote) */
	uint64_t deleg_id; /* the delegation held, 0: none */
	int deleg;	   /* its type, DAFS_DELEG_* */
	int nocaps;	   /* under the delegation: no security.capability */
	uint32_t xgen;	   /* bumped by every xattr change and deleg drop */
	int locked;	   /* POSIX locks were asked for through this mount */
	uint32_t hash;	  /* of the handle bytes */
	dafs_fh_t fh;
	/* the name the kernel last got it by (lookup, create, readdirplus):
	 * parent node id (0: none known) and the name's hash */
	uint64_t nparent;
	uint32_t nhash;
	/* attributes kept under the write delegation (fino_attr_*) */
	int attr_ok;
	dafs_attr_t attr;
	uint64_t names_changed; /* of a directory: stamp of its last name
				   gone (fino_name_gone) */
};

#define INITIAL_BUCKETS 1024u

/* FNV-1a over the handle; handles are MAC'd, so well spread already. */
static uint32_t fh_hash(const dafs_fh_t *fh)
{
	uint32_t h = 2166136261u;
	uint16_t i;

	for (i = 0; i < fh->len; i++) {
		h ^= fh->data[i];
		h *= 16777619u;
	}
	return h;
}

static size_t id_bucket(const struct fino_table *t, uint64_t id)
{
	return (size_t)(id ^ (id >> 32)) & (t->nbuckets - 1);
}

static int fh_equal(const dafs_fh_t *a, const dafs_fh_t *b)
{
	return a->len == b->len && !memcmp(a->data, b->data, a->len);
}

static size_t name_bucket(const struct fino_table *t, uint64_t parent,
			  uint32_t nhash)
{
	return (size_t)(nhash ^ parent ^ (parent >> 32)) & (t->nbuckets - 1);
}

static void link_entry(struct fino_table *t, struct fino *e)
{
	size_t b = e->hash & (t->nbuckets - 1);

	e->next_fh = t->by_fh[b];
	t->by_fh[b] = e;
	b = id_bucket(t, e->id);
	e->next_id = t->by_id[b];
	t->by_id[b] = e;
	if (e->nparent) {
		b = name_bucket(t, e->nparent, e->nhash);
		e->next_name = t->by_name[b];
		t->by_name[b] = e;
	}
}

/*
 * Rehash both tables into @n buckets (a power of two): doubled when the
 * entries reach the bucket count, cut to twice the entries when they fall
 * below an eighth of it (a walk of a big tree, then forgotten, leaves no
 * big table behind). On allocation failure keep the old ones (longer
 * chains, still correct).
 */
static void resize(struct fino_table *t, size_t n)
{
	struct fino **ofh = t->by_fh, **oid = t->by_id, **onm = t->by_name;
	struct fino *e, *next;
	size_t on = t->nbuckets, i;

	t->by_fh = calloc(n, sizeof(*t->by_fh));
	t->by_id = calloc(n, sizeof(*t->by_id));
	t->by_name = calloc(n, sizeof(*t->by_name));
	if (!t->by_fh || !t->by_id || !t->by_name) {
		free(t->by_fh);
		free(t->by_id);
		free(t->by_name);
		t->by_fh = ofh;
		t->by_id = oid;
		t->by_name = onm;
		return;
	}
	t->nbuckets = n;
	/* every entry is on exactly one by_fh chain: relink from those */
	for (i = 0; i < on; i++) {
		for (e = ofh[i]; e; e = next) {
			next = e->next_fh;
			link_entry(t, e);
		}
	}
	free(ofh);
	free(oid);
	free(onm);
}

/* Whether the table is due to shrink, and to what size. */
static size_t shrink_to(const struct fino_table *t)
{
	size_t n = INITIAL_BUCKETS;

	if (t->nbuckets <= INITIAL_BUCKETS || t->count >= t->nbuckets / 8)
		return 0;
	while (n < t->count * 2)
		n *= 2;
	return n;
}

static struct fino *find_id(struct fino_table *t, uint64_t id)
{
	struct fino *e;

	for (e = t->by_id[id_bucket(t, id)]; e; e = e->next_id)
		if (e->id == id)
			return e;
	return NULL;
}

int fino_table_init(struct fino_table *t, const dafs_fh_t *root)
{
	memset(t, 0, sizeof(*t));
	t->nbuckets = INITIAL_BUCKETS;
	t->by_fh = calloc(t->nbuckets, sizeof(*t->by_fh));
	t->by_id = calloc(t->nbuckets, sizeof(*t->by_id));
	t->by_name = calloc(t->nbuckets, sizeof(*t->by_name));
	t->root = calloc(1, sizeof(*t->root));
	if (!t->by_fh || !t->by_id || !t->by_name || !t->root) {
		free(t->by_fh);
		free(t->by_id);
		free(t->by_name);
		free(t->root);
		return -ENOMEM;
	}
	pthread_mutex_init(&t->lock, NULL);
	t->root->id = FINO_ROOT_ID;
	t->root->nlookup = 1;
	t->root->fh = *root;
	t->root->hash = fh_hash(root);
	link_entry(t, t->root);
	t->count = 1;
	t->next_id = FINO_ROOT_ID + 1;
	return 0;
}

void fino_table_fini(struct fino_table *t)
{
	struct fino *e, *next;
	size_t i;

	for (i = 0; i < t->nbuckets; i++) {
		for (e = t->by_fh[i]; e; e = next) {
			next = e->next_fh;
			free(e);
		}
	}
	free(t->by_fh);
	free(t->by_id);
	free(t->by_name);
	pthread_mutex_destroy(&t->lock);
	memset(t, 0, sizeof(*t));
}

int fino_ref(struct fino_table *t, const dafs_fh_t *fh, uint64_t *id)
{
	uint32_t h = fh_hash(fh);
	struct fino *e;

	pthread_mutex_lock(&t->lock);
	for (e = t->by_fh[h & (t->nbuckets - 1)]; e; e = e->next_fh)
		if (e->hash == h && fh_equal(&e->fh, fh))
			break;
	if (!e) {
		e = calloc(1, sizeof(*e));
		if (!e) {
			pthread_mutex_unlock(&t->lock);
			return -ENOMEM;
		}
		e->id = t->next_id++;
		e->deleg = DAFS_DELEG_NONE;
		e->hash = h;
		e->fh = *fh;
		if (t->count >= t->nbuckets)
			resize(t, t->nbuckets * 2);
		link_entry(t, e);
		t->count++;
	}
	e->nlookup++;
	*id = e->id;
	pthread_mutex_unlock(&t->lock);
	return 0;
}

/* Unlink @e from a chain: the handle chain if @by_fh, else the id one. */
static void unlink_from(struct fino **head, struct fino *e, int by_fh)
{
	struct fino **pp = head;

	while (*pp && *pp != e)
		pp = by_fh ? &(*pp)->next_fh : &(*pp)->next_id;
	if (*pp)
		*pp = by_fh ? e->next_fh : e->next_id;
}

/* @e forgets its name (t->lock held). */
static void name_off(struct fino_table *t, struct fino *e)
{
	struct fino **pp;

	if (!e->nparent)
		return;
	pp = &t->by_name[name_bucket(t, e->nparent, e->nhash)];
	while (*pp && *pp != e)
		pp = &(*pp)->next_name;
	if (*pp)
		*pp = e->next_name;
	e->nparent = 0;
	e->next_name = NULL;
}

/* @e's kept attributes go (t->lock held). */
static void attr_off(struct fino *e)
{
	e->attr_ok = 0;
}

/* ... and its change is stamped: a reply asked for before cannot bring
 * them back (fino_attr_keep) - what it says may predate the change. */
static void attr_gone(struct fino_table *t, struct fino *e)
{
	e->attr_ok = 0;
	e->changed = ++t->seq;
}

uint64_t fino_forget(struct fino_table *t, uint64_t id, uint64_t n)
{
	struct fino *e;
	uint64_t deleg;
	size_t shrink;

	if (id == FINO_ROOT_ID)
		return 0;
	pthread_mutex_lock(&t->lock);
	e = find_id(t, id);
	if (!e) {
		pthread_mutex_unlock(&t->lock);
		return 0;
	}
	e->nlookup = n >= e->nlookup ? 0 : e->nlookup - n;
	if (e->nlookup) {
		pthread_mutex_unlock(&t->lock);
		return 0;
	}
	deleg = e->deleg_id;
	if (deleg) {
		t->ndelegs--;
		t->gone[t->gone_next++ % 64] = deleg;
	}
	attr_off(e);
	name_off(t, e);
	unlink_from(&t->by_fh[e->hash & (t->nbuckets - 1)], e, 1);
	unlink_from(&t->by_id[id_bucket(t, id)], e, 0);
	t->count--;
	if (e->changed > t->freed_changed)
		t->freed_changed = e->changed;
	shrink = shrink_to(t);
	if (shrink)
		resize(t, shrink);
	pthread_mutex_unlock(&t->lock);
	free(e);
	/*
	 * The nodes freed since the last shrink sit in malloc's arenas, one
	 * per thread that made them, and the next walk's threads need not
	 * reuse the same ones: give their free pages back to the system
	 * (a few times while a big table drains, each a fraction of it).
	 */
	if (shrink)
		malloc_trim(0);
	return deleg;
}

int fino_deleg_set(struct fino_table *t, uint64_t id, int type,
		   uint64_t deleg_id)
{
	struct fino *e;
	int had = DAFS_DELEG_NONE;

	pthread_mutex_lock(&t->lock);
	e = find_id(t, id);
	for (unsigned i = 0; e && type != DAFS_DELEG_NONE && i < 64; i++)
		if (t->gone[i] == deleg_id)
			type = DAFS_DELEG_NONE;
	if (e && type == DAFS_DELEG_NONE) {
		if (e->deleg_id) {
			t->ndelegs--;
			e->xgen++;
		}
		e->deleg_id = 0;
		e->deleg = DAFS_DELEG_NONE;
		e->nocaps = 0;
		attr_gone(t, e);
		e = NULL;
	}
	if (e) {
		had = e->deleg_id == deleg_id ? e->deleg : DAFS_DELEG_NONE;
		/* a grant (or another kind): what the server said before
		 * may be another client's state since changed */
		if (had != type)
			attr_gone(t, e);
		if (had == DAFS_DELEG_NONE)
			e->xgen++; /* an answer read before the grant is old */
		if (!e->deleg_id)
			t->ndelegs++;
		e->deleg = type;
		e->deleg_id = deleg_id;
	}
	pthread_mutex_unlock(&t->lock);
	return had;
}

int fino_deleg(struct fino_table *t, uint64_t id)
{
	struct fino *e;
	int type;

	pthread_mutex_lock(&t->lock);
	e = find_id(t, id);
	type = e ? e->deleg : DAFS_DELEG_NONE;
	pthread_mutex_unlock(&t->lock);
	return type;
}

uint64_t fino_deleg_id(struct fino_table *t, uint64_t id)
{
	struct fino *e;
	uint64_t did;

	pthread_mutex_lock(&t->lock);
	e = find_id(t, id);
	did = e && e->deleg ? e->deleg_id : 0;
	pthread_mutex_unlock(&t->lock);
	return did;
}

void fino_set_locked(struct fino_table *t, uint64_t id)
{
	struct fino *e;

	pthread_mutex_lock(&t->lock);
	e = find_id(t, id);
	if (e)
		e->locked = 1;
	pthread_mutex_unlock(&t->lock);
}

int fino_locked(struct fino_table *t, uint64_t id)
{
	struct fino *e;
	int locked;

	pthread_mutex_lock(&t->lock);
	e = find_id(t, id);
	locked = e && e->locked;
	pthread_mutex_unlock(&t->lock);
	return locked;
}

uint64_t fino_deleg_drop(struct fino_table *t, const dafs_fh_t *fh,
			 uint64_t deleg_id)
{
	struct fino *e = NULL;
	uint64_t id = 0;
	size_t b;

	pthread_mutex_lock(&t->lock);
	t->gone[t->gone_next++ % 64] = deleg_id;
	if (fh->len) {
		uint32_t h = fh_hash(fh);

		for (e = t->by_fh[h & (t->nbuckets - 1)]; e; e = e->next_fh)
			if (e->hash == h && fh_equal(&e->fh, fh))
				break;
	}
	if (e)
		id = e->id; /* its held writes go back first, whatever it holds */
	if (!e || e->deleg_id != deleg_id)
		for (b = 0, e = NULL; b < t->nbuckets && !e; b++)
			for (e = t->by_id[b]; e; e = e->next_id)
				if (e->deleg_id == deleg_id)
					break;
	if (e && e->deleg_id == deleg_id) {
		e->deleg_id = 0;
		e->deleg = DAFS_DELEG_NONE;
		e->nocaps = 0;
		attr_gone(t, e);
		e->xgen++;
		t->ndelegs--;
		id = e->id;
	}
	pthread_mutex_unlock(&t->lock);
	return id;
}

int fino_nocaps(struct fino_table *t, uint64_t id, uint32_t *gen)
{
	struct fino *e;
	int r;

	pthread_mutex_lock(&t->lock);
	e = find_id(t, id);
	r = e && e->deleg && e->nocaps;
	*gen = e ? e->xgen : 0;
	pthread_mutex_unlock(&t->lock);
	return r;
}

void fino_set_nocaps(struct fino_table *t, uint64_t id, uint32_t gen)
{
	struct fino *e;

	pthread_mutex_lock(&t->lock);
	e = find_id(t, id);
	if (e && e->deleg && e->xgen == gen)
		e->nocaps = 1;
	pthread_mutex_unlock(&t->lock);
}

void fino_xattr_changed(struct fino_table *t, uint64_t id)
{
	struct fino *e;

	pthread_mutex_lock(&t->lock);
	t->xchanges++;
	e = find_id(t, id);
	if (e) {
		e->nocaps = 0;
		e->xgen++;
		attr_gone(t, e); /* its ctime, its mode (an ACL) */
	}
	pthread_mutex_unlock(&t->lock);
}

uint64_t fino_xattr_epoch(struct fino_table *t)
{
	uint64_t n;

	pthread_mutex_lock(&t->lock);
	n = t->xchanges;
	pthread_mutex_unlock(&t->lock);
	return n;
}

void fino_caps_gone(struct fino_table *t, uint64_t id, uint64_t epoch,
		    uint64_t deleg_id)
{
	struct fino *e;

	pthread_mutex_lock(&t->lock);
	e = find_id(t, id);
	if (e && e->deleg && deleg_id && e->deleg_id == deleg_id &&
	    t->xchanges == epoch)
		e->nocaps = 1;
	pthread_mutex_unlock(&t->lock);
}

size_t fino_ndelegs(struct fino_table *t)
{
	size_t n;

	pthread_mutex_lock(&t->lock);
	n = t->ndelegs;
	pthread_mutex_unlock(&t->lock);
	return n;
}

int fino_fh(struct fino_table *t, uint64_t id, dafs_fh_t *fh)
{
	struct fino *e;

	pthread_mutex_lock(&t->lock);
	e = find_id(t, id);
	if (e)
		*fh = e->fh;
	pthread_mutex_unlock(&t->lock);
	return e ? 0 : -ESTALE;
}

void fino_mark(struct fino_table *t, uint64_t id)
{
	struct fino *e;

	pthread_mutex_lock(&t->lock);
	e = find_id(t, id);
	if (e)
		e->changed = ++t->seq;
	pthread_mutex_unlock(&t->lock);
}

uint64_t fino_seq(struct fino_table *t)
{
	uint64_t seq;

	pthread_mutex_lock(&t->lock);
	seq = t->seq;
	pthread_mutex_unlock(&t->lock);
	return seq;
}

uint64_t fino_changed(struct fino_table *t, const dafs_fh_t *fh)
{
	uint32_t h = fh_hash(fh);
	struct fino *e;
	uint64_t c;

	pthread_mutex_lock(&t->lock);
	for (e = t->by_fh[h & (t->nbuckets - 1)]; e; e = e->next_fh)
		if (e->hash == h && fh_equal(&e->fh, fh))
			break;
	c = t->freed_changed;
	if (e && e->changed > c)
		c = e->changed;
	pthread_mutex_unlock(&t->lock);
	return c;
}

/* FNV-1a over a name */
static uint32_t name_hash(const char *name)
{
	uint32_t h = 2166136261u;

	for (; *name; name++) {
		h ^= (uint8_t)*name;
		h *= 16777619u;
	}
	return h;
}

void fino_named(struct fino_table *t, uint64_t id, uint64_t parent,
		const char *name, uint64_t seq)
{
	uint32_t h = name_hash(name);
	struct fino *e, *p;
	size_t b;

	pthread_mutex_lock(&t->lock);
	e = find_id(t, id);
	p = find_id(t, parent);
	if (e && (!p || p->names_changed > seq)) {
		/* a name in @parent went while the reply was on its way
		 * (a lookup racing a rename): it may be this one */
		attr_off(e);
		name_off(t, e);
	} else if (e && (e->nparent != parent || e->nhash != h)) {
		/* known by another name than the one its attributes were
		 * kept with: an unlink of that one would not find them */
		attr_off(e);
		name_off(t, e);
		e->nparent = parent;
		e->nhash = h;
		b = name_bucket(t, parent, h);
		e->next_name = t->by_name[b];
		t->by_name[b] = e;
	}
	pthread_mutex_unlock(&t->lock);
}

void fino_name_gone(struct fino_table *t, uint64_t parent, const char *name)
{
	uint32_t h = name_hash(name);
	struct fino *e, *next;

	pthread_mutex_lock(&t->lock);
	e = find_id(t, parent);
	if (e)
		e->names_changed = ++t->seq;
	/* a hash shared with another name drops that one's too: more
	 * than needed, never less */
	for (e = t->by_name[name_bucket(t, parent, h)]; e; e = next) {
		next = e->next_name;
		if (e->nparent == parent && e->nhash == h) {
			attr_gone(t, e);
			name_off(t, e);
		}
	}
	pthread_mutex_unlock(&t->lock);
}

/* The later of two times. */
static dafs_time_t later(dafs_time_t a, dafs_time_t b)
{
	return a.sec > b.sec || (a.sec == b.sec && a.nsec >= b.nsec) ? a : b;
}

void fino_attr_keep(struct fino_table *t, uint64_t id, const dafs_attr_t *a,
		    uint64_t wseq, uint64_t seq)
{
	struct fino *e;

	pthread_mutex_lock(&t->lock);
	e = find_id(t, id);
	/* a write since @wseq or another change since @seq: what is kept
	 * (a write updated it) or nothing is newer than @a */
	if (e && e->wrote <= wseq && e->changed <= seq) {
		if (e->deleg == DAFS_DELEG_WRITE && e->nparent &&
		    S_ISREG(a->mode) && a->nlink == 1) {
			/* times only go forward: the kept ones came from
			 * this client's clock */
			if (e->attr_ok) {
				dafs_attr_t old = e->attr;

				e->attr = *a;
				e->attr.mtime = later(old.mtime, a->mtime);
				e->attr.ctime = later(old.ctime, a->ctime);
			} else {
				e->attr = *a;
			}
			e->attr_ok = 1;
		} else {
			attr_off(e);
		}
	}
	pthread_mutex_unlock(&t->lock);
}

int fino_attr_get(struct fino_table *t, uint64_t id, dafs_attr_t *a)
{
	struct fino *e;
	int rc = -ENOENT;

	pthread_mutex_lock(&t->lock);
	e = find_id(t, id);
	if (e && e->attr_ok && e->deleg == DAFS_DELEG_WRITE) {
		*a = e->attr;
		rc = 0;
	}
	pthread_mutex_unlock(&t->lock);
	return rc;
}

void fino_attr_wrote(struct fino_table *t, uint64_t id, uint64_t off,
		     uint64_t len, int append)
{
	struct timespec ts;
	struct fino *e;
	dafs_time_t now;

	pthread_mutex_lock(&t->lock);
	e = find_id(t, id);
	if (e) {
		e->changed = e->wrote = ++t->seq;
		if (e->attr_ok) {
			/* read under the lock: a later write never leaves an
			 * earlier time */
			clock_gettime(CLOCK_REALTIME, &ts);
			now.sec = ts.tv_sec;
			now.nsec = (uint32_t)ts.tv_nsec;
			/* the server puts an append at its end of file: the
			 * size kept, which counts every write before */
			if (append)
				off = e->attr.size;
			/* the blocks of the file system's block size the
			 * bytes past the old end start (the server's own
			 * figure comes with the next attributes it sends) */
			if (off + len > e->attr.size) {
				uint64_t bs = e->attr.blksize >= 512
						      ? e->attr.blksize
						      : 4096;
				uint64_t from = (e->attr.size + bs - 1) / bs,
					 to = (off + len + bs - 1) / bs;

				if (off / bs > from)
					from = off / bs;
				if (to > from)
					e->attr.blocks +=
						(to - from) * (bs / 512);
				e->attr.size = off + len;
			}
			e->attr.mtime = later(e->attr.mtime, now);
			e->attr.ctime = later(e->attr.ctime, now);
			e->attr.change++;
		}
	}
	pthread_mutex_unlock(&t->lock);
}

void fino_attr_drop(struct fino_table *t, uint64_t id)
{
	struct fino *e;

	pthread_mutex_lock(&t->lock);
	e = find_id(t, id);
	if (e)
		attr_gone(t, e);
	pthread_mutex_unlock(&t->lock);
}

uint64_t fino_id(struct fino_table *t, const dafs_fh_t *fh)
{
	uint32_t h = fh_hash(fh);
	struct fino *e;
	uint64_t id = 0;

	pthread_mutex_lock(&t->lock);
	for (e = t->by_fh[h & (t->nbuckets - 1)]; e; e = e->next_fh)
		if (e->hash == h && fh_equal(&e->fh, fh)) {
			id = e->id;
			break;
		}
	pthread_mutex_unlock(&t->lock);
	return id;
}

size_t fino_count(struct fino_table *t)
{
	size_t n;

	pthread_mutex_lock(&t->lock);
	n = t->count;
	pthread_mutex_unlock(&t->lock);
	return n;
}
