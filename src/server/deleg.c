/*
 * deleg.c - the delegation manager's state machine (see deleg_i.h).
 *
 * A file record exists while anything refers to it: an opener, a
 * delegation, an operation in progress, or a recent recall whose hold-off
 * has not yet passed (the record is then dropped by the next call that
 * finds it idle). Records hang off a fixed hash table; delegations are also
 * hashed by id for DELEGRETURN.
 */
#include <errno.h>
#include <stdlib.h>

#include "dafs/dafs.h"
#include "deleg_i.h"

struct dlg_opener {
	void *owner;
	uint32_t nread, nwrite;
	struct dlg_opener *next;
};

struct dlg_file {
	struct dlg_key key;
	struct dlg *delegs;
	struct dlg_opener *openers;
	uint32_t busy;        /* operations between dlg_begin and dlg_end */
	uint32_t waiting;     /* operations waiting for recalls (dlg_wait) */
	uint64_t recalled_ns; /* last recall (0: never) */
	struct dlg_file *hnext;
};

static size_t key_hash(struct dlg_key k)
{
	uint64_t h = k.ino * 0x9e3779b97f4a7c15ull ^ k.dev;

	return (size_t)(h ^ h >> 29) % DLG_FILE_BUCKETS;
}

static size_t id_hash(uint64_t id)
{
	return (size_t)((id * 0x9e3779b97f4a7c15ull) >> 40) % DLG_ID_BUCKETS;
}

static int key_eq(struct dlg_key a, struct dlg_key b)
{
	return a.dev == b.dev && a.ino == b.ino;
}

void dlg_mgr_init(struct dlg_mgr *m, int policy, uint64_t lease_ns,
		  uint64_t holdoff_ns, uint64_t id_base)
{
	*m = (struct dlg_mgr){0};
	m->policy = policy;
	m->lease_ns = lease_ns;
	m->holdoff_ns = holdoff_ns;
	m->next_id = id_base ? id_base : 1;
}

static struct dlg_file *file_find(struct dlg_mgr *m, struct dlg_key key)
{
	struct dlg_file *f;

	for (f = m->files[key_hash(key)]; f; f = f->hnext)
		if (key_eq(f->key, key))
			return f;
	return NULL;
}

static struct dlg_file *file_get(struct dlg_mgr *m, struct dlg_key key)
{
	struct dlg_file *f = file_find(m, key);
	size_t b;

	if (f)
		return f;
	f = calloc(1, sizeof(*f));
	if (!f)
		return NULL;
	b = key_hash(key);
	f->key = key;
	f->hnext = m->files[b];
	m->files[b] = f;
	return f;
}

/* Free @f if nothing refers to it any more. */
static void file_maybe_free(struct dlg_mgr *m, struct dlg_file *f,
			    uint64_t now)
{
	struct dlg_file **pp;

	if (f->delegs || f->openers || f->busy || f->waiting)
		return;
	/* keep the hold-off (a caller without a clock passes 0: keep) */
	if (f->recalled_ns && now < f->recalled_ns + m->holdoff_ns)
		return;
	for (pp = &m->files[key_hash(f->key)]; *pp != f; pp = &(*pp)->hnext)
		;
	*pp = f->hnext;
	free(f);
}

static void id_unlink(struct dlg_mgr *m, struct dlg *d)
{
	struct dlg **pp;

	for (pp = &m->ids[id_hash(d->id)]; *pp != d; pp = &(*pp)->hnext)
		;
	*pp = d->hnext;
}

static void file_unlink(struct dlg_file *f, struct dlg *d)
{
	struct dlg **pp;

	for (pp = &f->delegs; *pp != d; pp = &(*pp)->fnext)
		;
	*pp = d->fnext;
	d->fnext = NULL;
	d->f = NULL;
}

static int conflicts(const struct dlg *d, void *owner, int kind)
{
	return d->owner != owner && (kind == DLG_C_WRITE || d->type == DLG_WRITE);
}

int dlg_begin(struct dlg_mgr *m, struct dlg_key key, void *owner, int kind,
	      uint64_t now, struct dlg_event *recalls, int max, int *nrecalls,
	      uint64_t *deadline_ns)
{
	struct dlg_file *f = file_get(m, key);
	struct dlg *d;
	int n = 0;

	*nrecalls = 0;
	*deadline_ns = UINT64_MAX;
	if (!f)
		return -ENOMEM;
	for (d = f->delegs; d; d = d->fnext) {
		if (!conflicts(d, owner, kind))
			continue;
		n++;
		if (d->state == DLG_GRANTED && *nrecalls < max) {
			d->state = DLG_RECALLING;
			d->recall_ns = now;
			f->recalled_ns = now;
			m->st.recalls++;
		}
		if (d->state != DLG_RECALLING)
			continue; /* recalled on the next round */
		if (!d->sent && *nrecalls < max &&
		    (!d->try_ns || now - d->try_ns >= DLG_RETRY_NS)) {
			d->try_ns = now;
			recalls[(*nrecalls)++] = (struct dlg_event){
				d->id, d->key, d->owner, d->type};
		}
		if (d->recall_ns + d->lease_ns < *deadline_ns)
			*deadline_ns = d->recall_ns + d->lease_ns;
		if (!d->sent && d->try_ns + DLG_RETRY_NS < *deadline_ns)
			*deadline_ns = d->try_ns + DLG_RETRY_NS;
	}
	if (n == 0)
		f->busy++;
	return n;
}

void dlg_wait(struct dlg_mgr *m, struct dlg_key key, int delta)
{
	struct dlg_file *f = delta > 0 ? file_get(m, key) : file_find(m, key);

	if (!f)
		return; /* out of memory: grants are merely not held off */
	if (delta > 0)
		f->waiting++;
	else if (f->waiting) {
		f->waiting--;
		file_maybe_free(m, f, 0);
	}
}

void dlg_recall_sent(struct dlg_mgr *m, uint64_t id, int ok, uint64_t now)
{
	struct dlg *d;

	for (d = m->ids[id_hash(id)]; d; d = d->hnext)
		if (d->id == id)
			break;
	if (!d || d->state != DLG_RECALLING)
		return;
	if (ok)
		d->sent = 1;
	else
		d->try_ns = now;
}

void dlg_end(struct dlg_mgr *m, struct dlg_key key)
{
	struct dlg_file *f = file_find(m, key);

	if (f && f->busy) {
		f->busy--;
		file_maybe_free(m, f, 0);
	}
}

static struct dlg_opener *opener_find(struct dlg_file *f, void *owner)
{
	struct dlg_opener *o;

	for (o = f->openers; o; o = o->next)
		if (o->owner == owner)
			return o;
	return NULL;
}

/* May @owner be granted @type on @f? */
static int grantable(const struct dlg_mgr *m, const struct dlg_file *f,
		     void *owner, int type, uint64_t now)
{
	const struct dlg_opener *o;
	const struct dlg *d;

	if (type == DLG_NONE || f->busy || f->waiting)
		return 0;
	if (type == DLG_WRITE ? m->policy != DLG_POLICY_ON
			      : m->policy == DLG_POLICY_OFF)
		return 0;
	if (f->recalled_ns && now - f->recalled_ns < m->holdoff_ns)
		return 0;
	for (o = f->openers; o; o = o->next)
		if (o->owner != owner && (type == DLG_WRITE || o->nwrite))
			return 0;
	for (d = f->delegs; d; d = d->fnext) {
		if (d->state == DLG_RECALLING)
			return 0; /* anyone's: a recall is under way */
		if (d->owner != owner && (type == DLG_WRITE || d->type == DLG_WRITE))
			return 0;
	}
	return 1;
}

int dlg_open(struct dlg_mgr *m, struct dlg_key key, void *owner, int kind,
	     int want, uint64_t lease_ns, uint64_t now, uint64_t *id)
{
	struct dlg_file *f = file_find(m, key);
	struct dlg_opener *o;
	struct dlg *d;
	size_t b;

	*id = 0;
	if (!f)
		return -ENOMEM; /* dlg_begin made it; a caller's bug */
	if (f->busy)
		f->busy--;
	o = opener_find(f, owner);
	if (!o) {
		o = calloc(1, sizeof(*o));
		if (!o) {
			file_maybe_free(m, f, now);
			return -ENOMEM;
		}
		o->owner = owner;
		o->next = f->openers;
		f->openers = o;
	}
	if (kind == DLG_C_WRITE)
		o->nwrite++;
	else
		o->nread++;

	/* a delegation of this owner already: the same one, or upgraded */
	for (d = f->delegs; d; d = d->fnext)
		if (d->owner == owner && d->state == DLG_GRANTED)
			break;
	if (d) {
		if (d->type == DLG_READ && want == DLG_WRITE &&
		    grantable(m, f, owner, DLG_WRITE, now)) {
			d->type = DLG_WRITE;
			m->st.upgrades++;
		}
		*id = d->id;
		return d->type;
	}
	if (want == DLG_WRITE && !grantable(m, f, owner, DLG_WRITE, now))
		want = DLG_READ;
	if (!grantable(m, f, owner, want, now))
		return DLG_NONE;
	d = calloc(1, sizeof(*d));
	if (!d)
		return DLG_NONE; /* the open stands, without a delegation */
	d->id = m->next_id++;
	d->key = key;
	d->owner = owner;
	d->type = want;
	d->state = DLG_GRANTED;
	d->lease_ns = lease_ns && lease_ns < m->lease_ns ? lease_ns : m->lease_ns;
	d->f = f;
	d->fnext = f->delegs;
	f->delegs = d;
	b = id_hash(d->id);
	d->hnext = m->ids[b];
	m->ids[b] = d;
	if (want == DLG_WRITE)
		m->st.grants_write++;
	else
		m->st.grants_read++;
	m->st.active++;
	*id = d->id;
	return want;
}

void dlg_close(struct dlg_mgr *m, struct dlg_key key, void *owner, int kind)
{
	struct dlg_file *f = file_find(m, key);
	struct dlg_opener *o, **pp;

	if (!f)
		return;
	for (pp = &f->openers; (o = *pp); pp = &o->next)
		if (o->owner == owner)
			break;
	if (!o)
		return;
	if (kind == DLG_C_WRITE && o->nwrite)
		o->nwrite--;
	else if (kind == DLG_C_READ && o->nread)
		o->nread--;
	if (!o->nread && !o->nwrite) {
		*pp = o->next;
		free(o);
	}
	file_maybe_free(m, f, 0);
}

static struct dlg *id_find(const struct dlg_mgr *m, uint64_t id)
{
	struct dlg *d;

	for (d = m->ids[id_hash(id)]; d; d = d->hnext)
		if (d->id == id)
			return d;
	return NULL;
}

const struct dlg *dlg_find(const struct dlg_mgr *m, uint64_t id)
{
	return id_find(m, id);
}

int dlg_return(struct dlg_mgr *m, uint64_t id, void *owner, uint64_t now)
{
	struct dlg *d = id_find(m, id);
	struct dlg_file *f;
	uint64_t t;

	if (!d || d->owner != owner)
		return -DAFS_EBADDELEG;
	id_unlink(m, d);
	if (d->state == DLG_REVOKED) {
		free(d);
		return -DAFS_EREVOKED;
	}
	if (d->state == DLG_RECALLING) {
		t = now - d->recall_ns;
		m->st.recall_ns_total += t;
		if (t > m->st.recall_ns_max)
			m->st.recall_ns_max = t;
	}
	m->st.returns++;
	m->st.active--;
	f = d->f;
	file_unlink(f, d);
	free(d);
	file_maybe_free(m, f, now);
	return 0;
}

int dlg_expire(struct dlg_mgr *m, uint64_t now, struct dlg_event *out,
	       int max)
{
	struct dlg_file *f, *fn;
	struct dlg *d, *dn;
	size_t b;
	int n = 0;

	for (b = 0; b < DLG_FILE_BUCKETS; b++) {
		for (f = m->files[b]; f; f = fn) {
			fn = f->hnext;
			for (d = f->delegs; d && n < max; d = dn) {
				dn = d->fnext;
				if (d->state != DLG_RECALLING ||
				    now - d->recall_ns < d->lease_ns)
					continue;
				file_unlink(f, d);
				d->state = DLG_REVOKED;
				m->st.revokes++;
				m->st.active--;
				out[n++] = (struct dlg_event){d->id, d->key,
							      d->owner, d->type};
			}
			file_maybe_free(m, f, now);
		}
	}
	return n;
}

void dlg_owner_gone(struct dlg_mgr *m, void *owner)
{
	struct dlg *d, **pp;
	size_t b;

	for (b = 0; b < DLG_ID_BUCKETS; b++) {
		pp = &m->ids[b];
		while ((d = *pp)) {
			if (d->owner != owner) {
				pp = &d->hnext;
				continue;
			}
			*pp = d->hnext;
			if (d->f) {
				struct dlg_file *f = d->f;

				file_unlink(f, d);
				m->st.active--;
				file_maybe_free(m, f, 0);
			}
			free(d);
		}
	}
}

void dlg_mgr_destroy(struct dlg_mgr *m)
{
	struct dlg_file *f, *fn;
	struct dlg_opener *o, *on;
	struct dlg *d, *dn;
	size_t b;

	for (b = 0; b < DLG_ID_BUCKETS; b++)
		for (d = m->ids[b]; d; d = dn) {
			dn = d->hnext;
			free(d);
		}
	for (b = 0; b < DLG_FILE_BUCKETS; b++)
		for (f = m->files[b]; f; f = fn) {
			fn = f->hnext;
			for (o = f->openers; o; o = on) {
				on = o->next;
				free(o);
			}
			free(f);
		}
	*m = (struct dlg_mgr){0};
}
