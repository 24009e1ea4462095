/*
 * test_wire.c - the wire codec (src/proto/wire.c).
 *
 * Every opcode of dafs_ops[] round-trips in both directions with distinct
 * field values; literal frames pin the byte layout; malformed frames are
 * rejected. Every frame handed to the decoder is a heap copy of exactly its
 * own size, so a build with -Db_sanitize=address proves the decoder never
 * reads past the end.
 */
#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "proto/wire_i.h"

/* A decoded-body buffer as dafs_msg_parse() wants it, suitably aligned. */
typedef union {
	uint8_t b[DAFS_BODY_MAX];
	uint64_t align;
} body_t;

/* ---- distinct field values ---- */

struct gen {
	uint32_t n;
	size_t used;
	uint8_t pool[16384]; /* storage the generated views borrow */
};

static uint32_t g32(struct gen *g)
{
	g->n++;
	/* high bit set and every byte different: byte-order slips show */
	return 0x80000000u | (g->n & 0x7fff) << 16 |
	       ((g->n * 0x9e37u) & 0xffff);
}

static uint64_t g64(struct gen *g)
{
	uint64_t hi = g32(g);

	return hi << 32 | g32(g);
}

static uint8_t *galloc(struct gen *g, size_t n)
{
	uint8_t *p;

	ck_assert_uint_le(n, sizeof(g->pool) - g->used);
	p = g->pool + g->used;
	g->used += n;
	return p;
}

/* Binary bytes, zeros included. */
static void gbytes(struct gen *g, struct dafs_view *v, uint32_t len)
{
	uint8_t *p = galloc(g, len), s = (uint8_t)g32(g);
	uint32_t i;

	for (i = 0; i < len; i++)
		p[i] = (uint8_t)(s + i * 31);
	v->p = p;
	v->len = len;
}

/* Text for NAME and PATH: any byte but NUL. */
static void gtext(struct gen *g, struct dafs_view *v, uint32_t len)
{
	uint8_t *p = galloc(g, len), s = (uint8_t)g32(g);
	uint32_t i;

	for (i = 0; i < len; i++)
		p[i] = (uint8_t)(1 + (s + i * 37) % 255);
	v->p = p;
	v->len = len;
}

static void gfh(struct gen *g, dafs_fh_t *fh, uint16_t len)
{
	uint8_t s = (uint8_t)g32(g);
	uint16_t i;

	fh->len = len;
	for (i = 0; i < len; i++)
		fh->data[i] = (uint8_t)(s + i * 13 + 1);
}

static void gtime(struct gen *g, dafs_time_t *t)
{
	t->sec = (int64_t)g64(g); /* negative: pre-1970 times travel too */
	t->nsec = (g32(g) & 0xffffff) * 37; /* < 1e9 */
}

static void gattr(struct gen *g, dafs_attr_t *a)
{
	a->ino = g64(g);
	a->size = g64(g);
	a->blocks = g64(g);
	a->change = g64(g);
	a->rdev = g64(g);
	a->mode = g32(g);
	a->nlink = g32(g);
	a->uid = g32(g);
	a->gid = g32(g);
	a->blksize = g32(g);
	gtime(g, &a->atime);
	gtime(g, &a->mtime);
	gtime(g, &a->ctime);
}

static void gsattr(struct gen *g, dafs_setattr_t *sa)
{
	sa->mask = g32(g);
	sa->mode = g32(g);
	sa->uid = g32(g);
	sa->gid = g32(g);
	sa->size = g64(g);
	gtime(g, &sa->atime);
	gtime(g, &sa->mtime);
}

static void gstatfs(struct gen *g, dafs_statfs_t *st)
{
	st->blocks = g64(g);
	st->bfree = g64(g);
	st->bavail = g64(g);
	st->files = g64(g);
	st->ffree = g64(g);
	st->bsize = g32(g);
	st->frsize = g32(g);
	st->namemax = g32(g);
}

static void gsid(struct gen *g, uint8_t *sid)
{
	int i;

	for (i = 0; i < DAFS_SID_LEN; i++)
		sid[i] = (uint8_t)g32(g);
}

/* ---- field comparisons ---- */

#define EQ(f) ck_assert_uint_eq(a->f, b->f)

static void eq_view(const struct dafs_view *a, const struct dafs_view *b)
{
	ck_assert_uint_eq(a->len, b->len);
	if (a->len) {
		ck_assert_ptr_nonnull(b->p);
		ck_assert_mem_eq(a->p, b->p, a->len);
	}
}

static void eq_fh(const dafs_fh_t *a, const dafs_fh_t *b)
{
	EQ(len);
	ck_assert_mem_eq(a->data, b->data, a->len);
}

static void eq_time(const dafs_time_t *a, const dafs_time_t *b)
{
	ck_assert_int_eq(a->sec, b->sec);
	EQ(nsec);
}

static void eq_attr(const dafs_attr_t *a, const dafs_attr_t *b)
{
	EQ(ino);
	EQ(size);
	EQ(blocks);
	EQ(change);
	EQ(rdev);
	EQ(mode);
	EQ(nlink);
	EQ(uid);
	EQ(gid);
	EQ(blksize);
	eq_time(&a->atime, &b->atime);
	eq_time(&a->mtime, &b->mtime);
	eq_time(&a->ctime, &b->ctime);
}

static void eq_sattr(const dafs_setattr_t *a, const dafs_setattr_t *b)
{
	EQ(mask);
	EQ(mode);
	EQ(uid);
	EQ(gid);
	EQ(size);
	eq_time(&a->atime, &b->atime);
	eq_time(&a->mtime, &b->mtime);
}

static void eq_statfs(const dafs_statfs_t *a, const dafs_statfs_t *b)
{
	EQ(blocks);
	EQ(bfree);
	EQ(bavail);
	EQ(files);
	EQ(ffree);
	EQ(bsize);
	EQ(frsize);
	EQ(namemax);
}

static void eq_groups(const struct dafs_groups *a, const struct dafs_groups *b)
{
	uint32_t i;

	EQ(n);
	for (i = 0; i < a->n; i++)
		EQ(v[i]);
}

/* ---- one fill and one compare per message body ---- */

/*
 * Written out by hand from the structs, not derived from the codec tables,
 * so a table that drops or retypes a field fails the round trip.
 */
#define BODY(t)                                                                \
	static void fill_##t(struct gen *g, struct dafs_m_##t *a);             \
	static void cmp_##t(const struct dafs_m_##t *a,                        \
			    const struct dafs_m_##t *b);                       \
	static void fill_v_##t(struct gen *g, void *a)                         \
	{                                                                      \
		fill_##t(g, a);                                                \
	}                                                                      \
	static void cmp_v_##t(const void *a, const void *b)                    \
	{                                                                      \
		cmp_##t(a, b);                                                 \
	}                                                                      \
	static const struct kind k_##t = {#t, sizeof(struct dafs_m_##t),       \
					  fill_v_##t, cmp_v_##t}

struct kind {
	const char *name;
	size_t size;
	void (*fill)(struct gen *g, void *s);
	void (*cmp)(const void *a, const void *b);
};

static void fill_v_empty(struct gen *g, void *a)
{
	(void)g;
	(void)a;
}
static void cmp_v_empty(const void *a, const void *b)
{
	(void)a;
	(void)b;
}
static const struct kind k_empty = {"empty", 0, fill_v_empty, cmp_v_empty};

BODY(create_session_req);
BODY(create_session_rep);
BODY(bind_conn_req);
BODY(cred_register_req);
BODY(u32);
BODY(u64);
BODY(fh);
BODY(attr);
BODY(fh_attr);
BODY(dirop_req);
BODY(setattr_req);
BODY(create_req);
BODY(create_rep);
BODY(mkdir_req);
BODY(mknod_req);
BODY(symlink_req);
BODY(path);
BODY(link_req);
BODY(rename_req);
BODY(readdir_req);
BODY(readdir_rep);
BODY(statfs);
BODY(open_req);
BODY(open_rep);
BODY(read_req);
BODY(read_rep);
BODY(write_req);
BODY(commit_req);
BODY(fallocate_req);
BODY(copy_range_req);
BODY(getxattr_req);
BODY(xattr_rep);
BODY(setxattr_req);
BODY(listxattr_req);
BODY(xattr_name_req);
BODY(batch_req);
BODY(batch_rep);
BODY(cb_recall_req);
BODY(lseek_req);
BODY(lock_req);
BODY(lockt_rep);
BODY(access_req);

static void fill_create_session_req(struct gen *g,
				    struct dafs_m_create_session_req *a)
{
	a->version = g32(g);
	gtext(g, &a->export_, 12);
	a->max_request = g32(g);
	a->max_response = g32(g);
	a->inline_max = g32(g);
	a->credits = g32(g);
	a->cb_credits = g32(g);
	a->write_method = g32(g);
	a->lease_ms = g32(g);
}
static void cmp_create_session_req(const struct dafs_m_create_session_req *a,
				   const struct dafs_m_create_session_req *b)
{
	EQ(version);
	eq_view(&a->export_, &b->export_);
	EQ(max_request);
	EQ(max_response);
	EQ(inline_max);
	EQ(credits);
	EQ(cb_credits);
	EQ(write_method);
	EQ(lease_ms);
}

static void fill_create_session_rep(struct gen *g,
				    struct dafs_m_create_session_rep *a)
{
	gsid(g, a->sid);
	a->max_request = g32(g);
	a->max_response = g32(g);
	a->inline_max = g32(g);
	a->credits = g32(g);
	a->cb_credits = g32(g);
	a->write_method = g32(g);
	a->lease_ms = g32(g);
	a->max_io = g32(g);
	gfh(g, &a->root, DAFS_FH_MAX);
}
static void cmp_create_session_rep(const struct dafs_m_create_session_rep *a,
				   const struct dafs_m_create_session_rep *b)
{
	ck_assert_mem_eq(a->sid, b->sid, DAFS_SID_LEN);
	EQ(max_request);
	EQ(max_response);
	EQ(inline_max);
	EQ(credits);
	EQ(cb_credits);
	EQ(write_method);
	EQ(lease_ms);
	EQ(max_io);
	eq_fh(&a->root, &b->root);
}

static void fill_bind_conn_req(struct gen *g, struct dafs_m_bind_conn_req *a)
{
	gsid(g, a->sid);
	a->dir = g32(g);
}
static void cmp_bind_conn_req(const struct dafs_m_bind_conn_req *a,
			      const struct dafs_m_bind_conn_req *b)
{
	ck_assert_mem_eq(a->sid, b->sid, DAFS_SID_LEN);
	EQ(dir);
}

static void fill_cred_register_req(struct gen *g,
				   struct dafs_m_cred_register_req *a)
{
	uint32_t i;

	a->uid = g32(g);
	a->gid = g32(g);
	a->groups.n = DAFS_GROUPS_MAX;
	for (i = 0; i < a->groups.n; i++)
		a->groups.v[i] = g32(g);
}
static void cmp_cred_register_req(const struct dafs_m_cred_register_req *a,
				  const struct dafs_m_cred_register_req *b)
{
	EQ(uid);
	EQ(gid);
	eq_groups(&a->groups, &b->groups);
}

static void fill_u32(struct gen *g, struct dafs_m_u32 *a)
{
	a->v = g32(g);
}
static void cmp_u32(const struct dafs_m_u32 *a, const struct dafs_m_u32 *b)
{
	EQ(v);
}

static void fill_u64(struct gen *g, struct dafs_m_u64 *a)
{
	a->v = g64(g);
}
static void cmp_u64(const struct dafs_m_u64 *a, const struct dafs_m_u64 *b)
{
	EQ(v);
}

static void fill_fh(struct gen *g, struct dafs_m_fh *a)
{
	gfh(g, &a->fh, 20);
}
static void cmp_fh(const struct dafs_m_fh *a, const struct dafs_m_fh *b)
{
	eq_fh(&a->fh, &b->fh);
}

static void fill_attr(struct gen *g, struct dafs_m_attr *a)
{
	gattr(g, &a->attr);
}
static void cmp_attr(const struct dafs_m_attr *a, const struct dafs_m_attr *b)
{
	eq_attr(&a->attr, &b->attr);
}

static void fill_fh_attr(struct gen *g, struct dafs_m_fh_attr *a)
{
	gfh(g, &a->fh, 33);
	gattr(g, &a->attr);
}
static void cmp_fh_attr(const struct dafs_m_fh_attr *a,
			const struct dafs_m_fh_attr *b)
{
	eq_fh(&a->fh, &b->fh);
	eq_attr(&a->attr, &b->attr);
}

static void fill_dirop_req(struct gen *g, struct dafs_m_dirop_req *a)
{
	gfh(g, &a->dir, 8);
	gtext(g, &a->name, DAFS_NAME_MAX);
}
static void cmp_dirop_req(const struct dafs_m_dirop_req *a,
			  const struct dafs_m_dirop_req *b)
{
	eq_fh(&a->dir, &b->dir);
	eq_view(&a->name, &b->name);
}

static void fill_setattr_req(struct gen *g, struct dafs_m_setattr_req *a)
{
	gfh(g, &a->fh, 16);
	gsattr(g, &a->sa);
}
static void cmp_setattr_req(const struct dafs_m_setattr_req *a,
			    const struct dafs_m_setattr_req *b)
{
	eq_fh(&a->fh, &b->fh);
	eq_sattr(&a->sa, &b->sa);
}

static void fill_create_req(struct gen *g, struct dafs_m_create_req *a)
{
	gfh(g, &a->dir, 24);
	gtext(g, &a->name, 17);
	a->flags = g32(g);
	a->mode = g32(g);
}
static void cmp_create_req(const struct dafs_m_create_req *a,
			   const struct dafs_m_create_req *b)
{
	eq_fh(&a->dir, &b->dir);
	eq_view(&a->name, &b->name);
	EQ(flags);
	EQ(mode);
}

static void fill_create_rep(struct gen *g, struct dafs_m_create_rep *a)
{
	gfh(g, &a->fh, 40);
	gattr(g, &a->attr);
	a->open_id = g64(g);
	a->deleg = g32(g);
	a->deleg_id = g64(g);
}
static void cmp_create_rep(const struct dafs_m_create_rep *a,
			   const struct dafs_m_create_rep *b)
{
	eq_fh(&a->fh, &b->fh);
	eq_attr(&a->attr, &b->attr);
	EQ(open_id);
	EQ(deleg);
	EQ(deleg_id);
}

static void fill_mkdir_req(struct gen *g, struct dafs_m_mkdir_req *a)
{
	gfh(g, &a->dir, 12);
	gtext(g, &a->name, 5);
	a->mode = g32(g);
}
static void cmp_mkdir_req(const struct dafs_m_mkdir_req *a,
			  const struct dafs_m_mkdir_req *b)
{
	eq_fh(&a->dir, &b->dir);
	eq_view(&a->name, &b->name);
	EQ(mode);
}

static void fill_mknod_req(struct gen *g, struct dafs_m_mknod_req *a)
{
	gfh(g, &a->dir, 13);
	gtext(g, &a->name, 1);
	a->mode = g32(g);
	a->rdev = g64(g);
}
static void cmp_mknod_req(const struct dafs_m_mknod_req *a,
			  const struct dafs_m_mknod_req *b)
{
	eq_fh(&a->dir, &b->dir);
	eq_view(&a->name, &b->name);
	EQ(mode);
	EQ(rdev);
}

static void fill_symlink_req(struct gen *g, struct dafs_m_symlink_req *a)
{
	gfh(g, &a->dir, 14);
	gtext(g, &a->name, 9);
	gtext(g, &a->target, DAFS_PATH_MAX);
}
static void cmp_symlink_req(const struct dafs_m_symlink_req *a,
			    const struct dafs_m_symlink_req *b)
{
	eq_fh(&a->dir, &b->dir);
	eq_view(&a->name, &b->name);
	eq_view(&a->target, &b->target);
}

static void fill_path(struct gen *g, struct dafs_m_path *a)
{
	gtext(g, &a->path, 300);
}
static void cmp_path(const struct dafs_m_path *a, const struct dafs_m_path *b)
{
	eq_view(&a->path, &b->path);
}

static void fill_link_req(struct gen *g, struct dafs_m_link_req *a)
{
	gfh(g, &a->fh, 10);
	gfh(g, &a->dir, 11);
	gtext(g, &a->name, 7);
}
static void cmp_link_req(const struct dafs_m_link_req *a,
			 const struct dafs_m_link_req *b)
{
	eq_fh(&a->fh, &b->fh);
	eq_fh(&a->dir, &b->dir);
	eq_view(&a->name, &b->name);
}

static void fill_rename_req(struct gen *g, struct dafs_m_rename_req *a)
{
	gfh(g, &a->sdir, 18);
	gtext(g, &a->sname, 6);
	gfh(g, &a->ddir, 19);
	gtext(g, &a->dname, 8);
	a->flags = g32(g);
}
static void cmp_rename_req(const struct dafs_m_rename_req *a,
			   const struct dafs_m_rename_req *b)
{
	eq_fh(&a->sdir, &b->sdir);
	eq_view(&a->sname, &b->sname);
	eq_fh(&a->ddir, &b->ddir);
	eq_view(&a->dname, &b->dname);
	EQ(flags);
}

static void fill_readdir_req(struct gen *g, struct dafs_m_readdir_req *a)
{
	gfh(g, &a->dir, 0); /* an empty handle is well-formed on the wire */
	a->cookie = g64(g);
	a->maxbytes = g32(g);
	a->plus = g32(g);
}
static void cmp_readdir_req(const struct dafs_m_readdir_req *a,
			    const struct dafs_m_readdir_req *b)
{
	eq_fh(&a->dir, &b->dir);
	EQ(cookie);
	EQ(maxbytes);
	EQ(plus);
}

static void fill_readdir_rep(struct gen *g, struct dafs_m_readdir_rep *a)
{
	a->eof = g32(g);
	gbytes(g, &a->entries, 77);
}
static void cmp_readdir_rep(const struct dafs_m_readdir_rep *a,
			    const struct dafs_m_readdir_rep *b)
{
	EQ(eof);
	eq_view(&a->entries, &b->entries);
}

static void fill_statfs(struct gen *g, struct dafs_m_statfs *a)
{
	gstatfs(g, &a->st);
}
static void cmp_statfs(const struct dafs_m_statfs *a,
		       const struct dafs_m_statfs *b)
{
	eq_statfs(&a->st, &b->st);
}

static void fill_open_req(struct gen *g, struct dafs_m_open_req *a)
{
	gfh(g, &a->fh, 30);
	a->flags = g32(g);
}
static void cmp_open_req(const struct dafs_m_open_req *a,
			 const struct dafs_m_open_req *b)
{
	eq_fh(&a->fh, &b->fh);
	EQ(flags);
}

static void fill_open_rep(struct gen *g, struct dafs_m_open_rep *a)
{
	a->open_id = g64(g);
	gattr(g, &a->attr);
	a->deleg = g32(g);
	a->deleg_id = g64(g);
}
static void cmp_open_rep(const struct dafs_m_open_rep *a,
			 const struct dafs_m_open_rep *b)
{
	EQ(open_id);
	eq_attr(&a->attr, &b->attr);
	EQ(deleg);
	EQ(deleg_id);
}

static void fill_lseek_req(struct gen *g, struct dafs_m_lseek_req *a)
{
	a->open_id = g64(g);
	a->off = g64(g);
	a->whence = g32(g);
}
static void cmp_lseek_req(const struct dafs_m_lseek_req *a,
			  const struct dafs_m_lseek_req *b)
{
	EQ(open_id);
	EQ(off);
	EQ(whence);
}

static void fill_lock_req(struct gen *g, struct dafs_m_lock_req *a)
{
	a->open_id = g64(g);
	a->owner = g64(g);
	a->kind = g32(g);
	a->type = g32(g);
	a->start = g64(g);
	a->len = g64(g);
}
static void cmp_lock_req(const struct dafs_m_lock_req *a,
			 const struct dafs_m_lock_req *b)
{
	EQ(open_id);
	EQ(owner);
	EQ(kind);
	EQ(type);
	EQ(start);
	EQ(len);
}

static void fill_lockt_rep(struct gen *g, struct dafs_m_lockt_rep *a)
{
	a->type = g32(g);
	a->start = g64(g);
	a->len = g64(g);
}
static void cmp_lockt_rep(const struct dafs_m_lockt_rep *a,
			  const struct dafs_m_lockt_rep *b)
{
	EQ(type);
	EQ(start);
	EQ(len);
}

static void fill_access_req(struct gen *g, struct dafs_m_access_req *a)
{
	gfh(g, &a->fh, 40);
	a->mask = g32(g);
}
static void cmp_access_req(const struct dafs_m_access_req *a,
			   const struct dafs_m_access_req *b)
{
	eq_fh(&a->fh, &b->fh);
	EQ(mask);
}

static void fill_cb_recall_req(struct gen *g, struct dafs_m_cb_recall_req *a)
{
	gfh(g, &a->fh, 40);
	a->deleg_id = g64(g);
	a->type = g32(g);
}
static void cmp_cb_recall_req(const struct dafs_m_cb_recall_req *a,
			      const struct dafs_m_cb_recall_req *b)
{
	eq_fh(&a->fh, &b->fh);
	EQ(deleg_id);
	EQ(type);
}

static void fill_read_req(struct gen *g, struct dafs_m_read_req *a)
{
	a->open_id = g64(g);
	a->off = g64(g);
	a->len = g32(g);
	a->rkey = g32(g);
	a->raddr = g64(g);
}
static void cmp_read_req(const struct dafs_m_read_req *a,
			 const struct dafs_m_read_req *b)
{
	EQ(open_id);
	EQ(off);
	EQ(len);
	EQ(rkey);
	EQ(raddr);
}

static void fill_read_rep(struct gen *g, struct dafs_m_read_rep *a)
{
	a->count = g32(g);
	a->eof = g32(g);
	gbytes(g, &a->data, 100);
}
static void cmp_read_rep(const struct dafs_m_read_rep *a,
			 const struct dafs_m_read_rep *b)
{
	EQ(count);
	EQ(eof);
	eq_view(&a->data, &b->data);
}

static void fill_write_req(struct gen *g, struct dafs_m_write_req *a)
{
	a->open_id = g64(g);
	a->off = g64(g);
	a->len = g32(g);
	a->rkey = g32(g);
	a->raddr = g64(g);
	gbytes(g, &a->data, 129);
}
static void cmp_write_req(const struct dafs_m_write_req *a,
			  const struct dafs_m_write_req *b)
{
	EQ(open_id);
	EQ(off);
	EQ(len);
	EQ(rkey);
	EQ(raddr);
	eq_view(&a->data, &b->data);
}

static void fill_commit_req(struct gen *g, struct dafs_m_commit_req *a)
{
	a->open_id = g64(g);
	a->datasync = g32(g);
}
static void cmp_commit_req(const struct dafs_m_commit_req *a,
			   const struct dafs_m_commit_req *b)
{
	EQ(open_id);
	EQ(datasync);
}

static void fill_fallocate_req(struct gen *g, struct dafs_m_fallocate_req *a)
{
	a->open_id = g64(g);
	a->mode = g32(g);
	a->off = g64(g);
	a->len = g64(g);
}
static void cmp_fallocate_req(const struct dafs_m_fallocate_req *a,
			      const struct dafs_m_fallocate_req *b)
{
	EQ(open_id);
	EQ(mode);
	EQ(off);
	EQ(len);
}

static void fill_copy_range_req(struct gen *g, struct dafs_m_copy_range_req *a)
{
	a->src = g64(g);
	a->soff = g64(g);
	a->dst = g64(g);
	a->doff = g64(g);
	a->len = g64(g);
}
static void cmp_copy_range_req(const struct dafs_m_copy_range_req *a,
			       const struct dafs_m_copy_range_req *b)
{
	EQ(src);
	EQ(soff);
	EQ(dst);
	EQ(doff);
	EQ(len);
}

static void fill_getxattr_req(struct gen *g, struct dafs_m_getxattr_req *a)
{
	gfh(g, &a->fh, 21);
	gtext(g, &a->name, 14);
	a->size = g32(g);
}
static void cmp_getxattr_req(const struct dafs_m_getxattr_req *a,
			     const struct dafs_m_getxattr_req *b)
{
	eq_fh(&a->fh, &b->fh);
	eq_view(&a->name, &b->name);
	EQ(size);
}

static void fill_xattr_rep(struct gen *g, struct dafs_m_xattr_rep *a)
{
	a->size = g32(g);
	gbytes(g, &a->value, 33);
}
static void cmp_xattr_rep(const struct dafs_m_xattr_rep *a,
			  const struct dafs_m_xattr_rep *b)
{
	EQ(size);
	eq_view(&a->value, &b->value);
}

static void fill_setxattr_req(struct gen *g, struct dafs_m_setxattr_req *a)
{
	gfh(g, &a->fh, 22);
	gtext(g, &a->name, 15);
	a->flags = g32(g);
	gbytes(g, &a->value, 0); /* an empty value is a valid xattr */
}
static void cmp_setxattr_req(const struct dafs_m_setxattr_req *a,
			     const struct dafs_m_setxattr_req *b)
{
	eq_fh(&a->fh, &b->fh);
	eq_view(&a->name, &b->name);
	EQ(flags);
	eq_view(&a->value, &b->value);
}

static void fill_listxattr_req(struct gen *g, struct dafs_m_listxattr_req *a)
{
	gfh(g, &a->fh, 23);
	a->size = g32(g);
}
static void cmp_listxattr_req(const struct dafs_m_listxattr_req *a,
			      const struct dafs_m_listxattr_req *b)
{
	eq_fh(&a->fh, &b->fh);
	EQ(size);
}

static void fill_xattr_name_req(struct gen *g, struct dafs_m_xattr_name_req *a)
{
	gfh(g, &a->fh, 24);
	gtext(g, &a->name, 16);
}
static void cmp_xattr_name_req(const struct dafs_m_xattr_name_req *a,
			       const struct dafs_m_xattr_name_req *b)
{
	eq_fh(&a->fh, &b->fh);
	eq_view(&a->name, &b->name);
}

static void fill_batch_req(struct gen *g, struct dafs_m_batch_req *a)
{
	a->n = g32(g);
	gbytes(g, &a->descs, 60);
}
static void cmp_batch_req(const struct dafs_m_batch_req *a,
			  const struct dafs_m_batch_req *b)
{
	EQ(n);
	eq_view(&a->descs, &b->descs);
}

static void fill_batch_rep(struct gen *g, struct dafs_m_batch_rep *a)
{
	a->n = g32(g);
	gbytes(g, &a->results, 61);
}
static void cmp_batch_rep(const struct dafs_m_batch_rep *a,
			  const struct dafs_m_batch_rep *b)
{
	EQ(n);
	eq_view(&a->results, &b->results);
}

/* ---- the opcode cases ---- */

#define IDEM DAFS_OPF_IDEMPOTENT
#define NOSS DAFS_OPF_NOSESSION
#define CBCH DAFS_OPF_CALLBACK

struct opcase {
	uint32_t op;
	const char *name;
	const struct kind *req, *rep;
	uint8_t flags;
};

/* clang-format off */
#define C(op, rq, rp, fl) {DAFS_OP_##op, #op, &k_##rq, &k_##rp, fl}
static const struct opcase cases[] = {
	C(NULL, empty, empty, IDEM | NOSS),
	C(CREATE_SESSION, create_session_req, create_session_rep, NOSS),
	C(BIND_CONN, bind_conn_req, empty, NOSS),
	C(DESTROY_SESSION, empty, empty, 0),
	C(CRED_REGISTER, cred_register_req, u32, 0),
	C(PROBE_CALLBACK, empty, u64, IDEM),
	C(LOOKUP, dirop_req, fh_attr, IDEM),
	C(GETATTR, fh, attr, IDEM),
	C(SETATTR, setattr_req, attr, 0),
	C(CREATE, create_req, create_rep, 0),
	C(MKDIR, mkdir_req, fh_attr, 0),
	C(MKNOD, mknod_req, fh_attr, 0),
	C(SYMLINK, symlink_req, fh_attr, 0),
	C(READLINK, fh, path, IDEM),
	C(LINK, link_req, attr, 0),
	C(REMOVE, dirop_req, empty, 0),
	C(RMDIR, dirop_req, empty, 0),
	C(RENAME, rename_req, empty, 0),
	C(READDIR, readdir_req, readdir_rep, IDEM),
	C(STATFS, fh, statfs, IDEM),
	C(OPEN, open_req, open_rep, 0),
	C(CLOSE, u64, empty, 0),
	C(READ, read_req, read_rep, IDEM),
	C(WRITE, write_req, u32, 0),
	C(COMMIT, commit_req, empty, IDEM),
	C(FALLOCATE, fallocate_req, empty, 0),
	C(COPY_RANGE, copy_range_req, u64, 0),
	C(GETXATTR, getxattr_req, xattr_rep, IDEM),
	C(SETXATTR, setxattr_req, empty, 0),
	C(LISTXATTR, listxattr_req, xattr_rep, IDEM),
	C(REMOVEXATTR, xattr_name_req, empty, 0),
	C(BATCH, batch_req, batch_rep, 0),
	C(DELEGRETURN, u64, empty, 0),
	C(LSEEK, lseek_req, u64, IDEM),
	C(LOCK, lock_req, empty, 0),
	C(LOCKT, lock_req, lockt_rep, IDEM),
	C(ACCESS, access_req, empty, IDEM),
	C(CB_NULL, empty, empty, IDEM | CBCH),
	C(CB_RECALL, cb_recall_req, empty, IDEM | CBCH),
};
#undef C
/* clang-format on */
#define NCASES ((int)(sizeof(cases) / sizeof(cases[0])))

static const struct opcase *find_case(uint32_t op)
{
	int i;

	for (i = 0; i < NCASES; i++)
		if (cases[i].op == op)
			return &cases[i];
	return NULL;
}

/* ---- frame helpers ---- */

/* dafs_msg_parse() on an exact-size heap copy, so ASan sees any overread. */
static int parse_copy(const void *f, size_t n, struct dafs_hdr *h, void *body)
{
	uint8_t *c = malloc(n ? n : 1);
	int rc;

	ck_assert_ptr_nonnull(c);
	if (n)
		memcpy(c, f, n);
	rc = dafs_msg_parse(c, n, h, body);
	free(c);
	return rc;
}

/* A byte builder for hand-assembled bodies. */
struct bb {
	size_t n;
	uint8_t b[8192];
};

static void b16(struct bb *b, uint16_t v)
{
	dafs_put16(b->b + b->n, v);
	b->n += 2;
}
static void b32(struct bb *b, uint32_t v)
{
	dafs_put32(b->b + b->n, v);
	b->n += 4;
}
static void b64(struct bb *b, uint64_t v)
{
	dafs_put64(b->b + b->n, v);
	b->n += 8;
}
static void bmem(struct bb *b, const void *p, size_t n)
{
	memcpy(b->b + b->n, p, n);
	b->n += n;
}
static void bfill(struct bb *b, int c, size_t n)
{
	memset(b->b + b->n, c, n);
	b->n += n;
}
/* An attribute block (96 bytes) with the given nanoseconds. */
static void battr(struct bb *b, uint32_t an, uint32_t mn, uint32_t cn)
{
	bfill(b, 0x11, 60);
	b64(b, 1);
	b32(b, an);
	b64(b, 2);
	b32(b, mn);
	b64(b, 3);
	b32(b, cn);
}

/* Parse header (24 bytes, len = body size) + @body. */
static int parse_body(uint8_t flags, uint16_t op, uint32_t arg,
		      const struct bb *body, void *out)
{
	struct dafs_hdr h = {.flags = flags,
			     .op = op,
			     .slot = 1,
			     .seq = 1,
			     .arg = arg,
			     .len = (uint32_t)body->n};
	uint8_t *f = malloc(DAFS_HDR_SIZE + body->n);
	int rc;

	ck_assert_ptr_nonnull(f);
	dafs_hdr_put(f, &h);
	memcpy(f + DAFS_HDR_SIZE, body->b, body->n);
	rc = dafs_msg_parse(f, DAFS_HDR_SIZE + body->n, &h, out);
	free(f);
	return rc;
}

static uint8_t dir_flags(const struct opcase *c, int reply)
{
	return (uint8_t)((reply ? DAFS_HF_REPLY : 0) |
			 ((c->flags & CBCH) ? DAFS_HF_CB : 0));
}

/* ---- round trips ---- */

/*
 * Build, parse and compare one message; then prove that every shorter
 * frame, every shorter body, a trailing byte and every too-small encoder
 * buffer are refused.
 */
static void roundtrip(const struct opcase *c, int reply)
{
	static struct gen g; /* too big for comfort on the stack */
	const struct kind *k = reply ? c->rep : c->req;
	struct dafs_hdr h = {0}, h2;
	body_t in, out, out2;
	uint8_t *buf, *f, *again;
	uint32_t deferred = 0xdead;
	ssize_t n, m, cap;
	size_t i;

	memset(&g, 0, sizeof(g));
	g.n = c->op * 1000 + (uint32_t)reply * 500;
	memset(&in, 0, sizeof(in));
	k->fill(&g, &in);
	h.flags = dir_flags(c, reply);
	h.op = (uint16_t)c->op;
	h.slot = 0x04030201;
	h.seq = 0x0a0b0c0d;
	h.arg = reply ? DAFS_OK : 0x1e2e3e4e; /* request: credential id */
	h.len = 0xffffffff;		      /* the builder fills it in */

	buf = malloc(8192);
	ck_assert_ptr_nonnull(buf);
	n = dafs_msg_build(buf, 8192, &h, &in, &deferred);
	ck_assert_msg(n >= DAFS_HDR_SIZE, "%s %s: build %zd", c->name,
		      reply ? "reply" : "request", n);
	ck_assert_uint_eq(deferred, 0);
	ck_assert_uint_eq(h.len, (size_t)n - DAFS_HDR_SIZE);

	f = malloc((size_t)n);
	ck_assert_ptr_nonnull(f);
	memcpy(f, buf, (size_t)n);
	memset(&out, 0xa5, sizeof(out));
	ck_assert_int_eq(dafs_msg_parse(f, (size_t)n, &h2, &out), 0);
	ck_assert_uint_eq(h2.version, DAFS_PROTO_VERSION);
	ck_assert_uint_eq(h2.flags, h.flags);
	ck_assert_uint_eq(h2.op, c->op);
	ck_assert_uint_eq(h2.slot, h.slot);
	ck_assert_uint_eq(h2.seq, h.seq);
	ck_assert_uint_eq(h2.arg, h.arg);
	ck_assert_uint_eq(h2.len, h.len);
	k->cmp(&in, &out);

	/* the decoded form encodes to the same bytes: the encoding is
	 * canonical */
	again = malloc((size_t)n);
	ck_assert_ptr_nonnull(again);
	ck_assert_int_eq(dafs_msg_build(again, (size_t)n, &h2, &out, NULL), n);
	ck_assert_mem_eq(again, f, (size_t)n);

	/* every encoder buffer below the needed size: -EMSGSIZE */
	for (cap = 0; cap < n; cap++) {
		struct dafs_hdr h3 = h;

		m = dafs_msg_build(again, (size_t)cap, &h3, &in, NULL);
		ck_assert_msg(m == -EMSGSIZE, "%s: cap %zd of %zd gave %zd",
			      c->name, cap, n, m);
	}
	free(again);

	/* every truncated frame */
	for (i = 0; i < (size_t)n; i++)
		ck_assert_int_eq(parse_copy(f, i, &h2, &out2), -DAFS_EPROTO);

	/* every truncated body, with a header that agrees with the frame:
	 * this reaches the body decoder at every cut */
	for (i = DAFS_HDR_SIZE; i < (size_t)n; i++) {
		memcpy(buf, f, i);
		dafs_put32(buf + 20, (uint32_t)(i - DAFS_HDR_SIZE));
		ck_assert_msg(parse_copy(buf, i, &h2, &out2) == -DAFS_EPROTO,
			      "%s: body cut at %zu accepted", c->name,
			      i - DAFS_HDR_SIZE);
	}

	/* one trailing byte, counted in the header: garbage */
	memcpy(buf, f, (size_t)n);
	buf[n] = 0;
	dafs_put32(buf + 20, h.len + 1);
	ck_assert_int_eq(parse_copy(buf, (size_t)n + 1, &h2, &out2),
			 -DAFS_EPROTO);
	/* ... or not counted: the frame is longer than the header says */
	dafs_put32(buf + 20, h.len);
	ck_assert_int_eq(parse_copy(buf, (size_t)n + 1, &h2, &out2),
			 -DAFS_EPROTO);

	free(f);
	free(buf);
}

/* An error reply of @c: no body on the wire whatever the caller passes. */
static void error_reply(const struct opcase *c)
{
	static struct gen g;
	struct dafs_hdr h = {0}, h2;
	body_t in, out;
	uint8_t buf[64];
	ssize_t n;
	size_t i;

	memset(&g, 0, sizeof(g));
	memset(&in, 0, sizeof(in));
	c->rep->fill(&g, &in);
	h.flags = dir_flags(c, 1);
	h.op = (uint16_t)c->op;
	h.arg = ENOENT;
	n = dafs_msg_build(buf, sizeof(buf), &h, &in, NULL);
	ck_assert_int_eq(n, DAFS_HDR_SIZE);
	ck_assert_uint_eq(h.len, 0);
	memset(&out, 0xa5, sizeof(out));
	ck_assert_int_eq(parse_copy(buf, (size_t)n, &h2, &out), 0);
	ck_assert_uint_eq(h2.arg, ENOENT);
	ck_assert_int_eq(dafs_status_to_err(h2.arg), -ENOENT);
	/* the body is zeroed, not left as the caller's garbage */
	for (i = 0; i < c->rep->size; i++)
		ck_assert_uint_eq(out.b[i], 0);

	/* a body after an error status is a protocol error */
	buf[DAFS_HDR_SIZE] = 0;
	dafs_put32(buf + 20, 1);
	ck_assert_int_eq(parse_copy(buf, DAFS_HDR_SIZE + 1, &h2, &out),
			 -DAFS_EPROTO);
}

START_TEST(test_roundtrip)
{
	roundtrip(&cases[_i], 0);
	roundtrip(&cases[_i], 1);
	error_reply(&cases[_i]);
}
END_TEST

/* The table and the cases agree: a new opcode needs a case here. */
START_TEST(test_every_op_has_a_case)
{
	const struct opcase *c;
	uint32_t op;
	int i, n = 0;

	for (op = 0; op < DAFS_OP_MAX; op++) {
		const struct dafs_opdesc *d = dafs_op_desc(op);

		if (!d)
			continue;
		n++;
		c = find_case(op);
		ck_assert_msg(c != NULL, "opcode %u (%s) has no test case", op,
			      d->name);
		ck_assert_str_eq(d->name, c->name);
		ck_assert_str_eq(dafs_op_name(op), c->name);
		ck_assert_msg(d->flags == c->flags, "%s: flags %#x, want %#x",
			      c->name, d->flags, c->flags);
		/* the table decodes into the struct the case fills */
		ck_assert_uint_eq(d->req->size, c->req->size);
		ck_assert_uint_eq(d->rep->size, c->rep->size);
		ck_assert_uint_le(d->req->size, DAFS_BODY_MAX);
		ck_assert_uint_le(d->rep->size, DAFS_BODY_MAX);
	}
	ck_assert_int_eq(n, NCASES);
	for (i = 0; i < NCASES; i++)
		ck_assert_ptr_nonnull(dafs_op_desc(cases[i].op));
	ck_assert_ptr_null(dafs_op_desc(DAFS_OP_MAX));
	ck_assert_ptr_null(dafs_op_desc(6));
	ck_assert_ptr_null(dafs_op_desc(0xffffffffu));
	ck_assert_str_eq(dafs_op_name(41), "?");
	ck_assert_str_eq(dafs_op_name(63), "?");
	ck_assert_str_eq(dafs_op_name(0x10000), "?");
}
END_TEST

/* ---- literal frames ---- */

/* clang-format off: the byte tables are laid out field by field */

/*
 * Parse an exact-size copy of @f; re-encoding the result must give @f back.
 * Returns the copy, which the decoded views borrow: the caller frees it.
 */
static uint8_t *frame(const uint8_t *f, size_t n, struct dafs_hdr *h,
		      void *body)
{
	uint8_t *c = malloc(n), *again = malloc(n);
	struct dafs_hdr h2;

	ck_assert_ptr_nonnull(c);
	ck_assert_ptr_nonnull(again);
	memcpy(c, f, n);
	ck_assert_int_eq(dafs_msg_parse(c, n, h, body), 0);
	h2 = *h;
	ck_assert_int_eq(dafs_msg_build(again, n, &h2, body, NULL), (ssize_t)n);
	ck_assert_mem_eq(again, f, n);
	free(again);
	return c;
}

START_TEST(test_frame_getattr)
{
	static const uint8_t f[] = {
		'D',  'A',  'F',  'S',	/* magic */
		0x01,			/* version */
		0x00,			/* flags: request */
		0x0b, 0x00,		/* op 11: GETATTR */
		0x01, 0x02, 0x03, 0x04, /* slot */
		0x2a, 0x00, 0x00, 0x80, /* seq */
		0x07, 0x00, 0x00, 0x00, /* arg: credential id */
		0x06, 0x00, 0x00, 0x00, /* body length */
		0x04, 0x00,		/* fh: le16 length */
		0xde, 0xad, 0xbe, 0xef,
	};
	struct dafs_m_fh b;
	struct dafs_hdr h;

	free(frame(f, sizeof(f), &h, &b));
	ck_assert_uint_eq(h.version, 1);
	ck_assert_uint_eq(h.flags, 0);
	ck_assert_uint_eq(h.op, DAFS_OP_GETATTR);
	ck_assert_uint_eq(h.slot, 0x04030201);
	ck_assert_uint_eq(h.seq, 0x8000002a);
	ck_assert_uint_eq(h.arg, 7);
	ck_assert_uint_eq(h.len, 6);
	ck_assert_uint_eq(b.fh.len, 4);
	ck_assert_mem_eq(b.fh.data, "\xde\xad\xbe\xef", 4);
}
END_TEST

START_TEST(test_frame_getattr_reply)
{
	static const uint8_t f[] = {
		'D',
		'A',
		'F',
		'S',
		0x01,
		0x01, /* flags: reply */
		0x0b,
		0x00, /* GETATTR */
		0x05,
		0x00,
		0x00,
		0x00, /* slot 5 */
		0x09,
		0x00,
		0x00,
		0x00, /* seq 9 */
		0x00,
		0x00,
		0x00,
		0x00, /* status 0 */
		0x60,
		0x00,
		0x00,
		0x00, /* body length 96 */
		/* attr: ino, size, blocks, change, rdev (le64 each) */
		0x01,
		0x02,
		0x03,
		0x04,
		0x05,
		0x06,
		0x07,
		0x08,
		0x00,
		0x20,
		0x00,
		0x00,
		0x01,
		0x00,
		0x00,
		0x00,
		0x10,
		0x00,
		0x00,
		0x00,
		0x00,
		0x00,
		0x00,
		0x00,
		0x11,
		0x22,
		0x33,
		0x44,
		0x55,
		0x66,
		0x77,
		0x88,
		0x03,
		0x08,
		0x00,
		0x00,
		0x00,
		0x00,
		0x00,
		0x00,
		/* mode, nlink, uid, gid, blksize (le32 each) */
		0xa4,
		0x81,
		0x00,
		0x00,
		0x02,
		0x00,
		0x00,
		0x00,
		0xe8,
		0x03,
		0x00,
		0x00,
		0x64,
		0x00,
		0x00,
		0x00,
		0x00,
		0x10,
		0x00,
		0x00,
		/* atime, mtime, ctime: le64 seconds (signed), le32 nsec */
		0x00,
		0xf1,
		0x53,
		0x65,
		0x00,
		0x00,
		0x00,
		0x00,
		0x15,
		0xcd,
		0x5b,
		0x07,
		0xff,
		0xff,
		0xff,
		0xff,
		0xff,
		0xff,
		0xff,
		0xff,
		0xff,
		0xc9,
		0x9a,
		0x3b,
		0x00,
		0x00,
		0x00,
		0x00,
		0x01,
		0x00,
		0x00,
		0x00,
		0x00,
		0x00,
		0x00,
		0x00,
	};
	struct dafs_m_attr b;
	struct dafs_hdr h;

	ck_assert_uint_eq(sizeof(f), DAFS_HDR_SIZE + 96);
	free(frame(f, sizeof(f), &h, &b));
	ck_assert_uint_eq(h.flags, DAFS_HF_REPLY);
	ck_assert_uint_eq(h.arg, DAFS_OK);
	ck_assert_uint_eq(b.attr.ino, 0x0807060504030201ull);
	ck_assert_uint_eq(b.attr.size, 0x100002000ull);
	ck_assert_uint_eq(b.attr.blocks, 0x10);
	ck_assert_uint_eq(b.attr.change, 0x8877665544332211ull);
	ck_assert_uint_eq(b.attr.rdev, 0x803);
	ck_assert_uint_eq(b.attr.mode, 0100644);
	ck_assert_uint_eq(b.attr.nlink, 2);
	ck_assert_uint_eq(b.attr.uid, 1000);
	ck_assert_uint_eq(b.attr.gid, 100);
	ck_assert_uint_eq(b.attr.blksize, 4096);
	ck_assert_int_eq(b.attr.atime.sec, 1700000000);
	ck_assert_uint_eq(b.attr.atime.nsec, 123456789);
	ck_assert_int_eq(b.attr.mtime.sec, -1);
	ck_assert_uint_eq(b.attr.mtime.nsec, 999999999);
	ck_assert_int_eq(b.attr.ctime.sec, 0x100000000ll);
	ck_assert_uint_eq(b.attr.ctime.nsec, 0);
}
END_TEST

START_TEST(test_frame_lookup)
{
	static const uint8_t f[] = {
		'D',  'A',  'F',  'S',	0x01, 0x00, 0x0a, 0x00, /* LOOKUP */
		0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00,
		0x00, 0x00, 0x00, 0x0a, 0x00, 0x00, 0x00, /* body length 10 */
		0x01, 0x00, 0x7f,			  /* fh: 1 byte */
		0x03, 0x00, 0x00, 0x00, /* name: le32 length, bytes, no NUL */
		'e',  't',  'c',
	};
	struct dafs_m_dirop_req b;
	struct dafs_hdr h;
	uint8_t *c = frame(f, sizeof(f), &h, &b);

	ck_assert_uint_eq(b.dir.len, 1);
	ck_assert_uint_eq(b.dir.data[0], 0x7f);
	ck_assert_uint_eq(b.name.len, 3);
	ck_assert_mem_eq(b.name.p, "etc", 3);
	/* the view borrows from the frame */
	ck_assert_ptr_eq(b.name.p, c + sizeof(f) - 3);
	free(c);
}
END_TEST

START_TEST(test_frame_read_write)
{
	static const uint8_t rd[] = {
		'D',  'A',  'F',  'S',	0x01, 0x00, 0x1a, 0x00, /* READ */
		0x02, 0x00, 0x00, 0x00, 0x03, 0x00, 0x00, 0x00,
		0x00, 0x00, 0x00, 0x00, 0x20, 0x00, 0x00, 0x00, /* 32 */
		0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11, /* open_id */
		0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, /* off */
		0x00, 0x00, 0x01, 0x00,				/* len */
		0xbe, 0xba, 0xfe, 0xca,				/* rkey */
		0x44, 0x33, 0x22, 0x11, 0x00, 0x7f, 0x00, 0x00, /* raddr */
	};
	static const uint8_t wr[] = {
		'D',  'A',  'F',  'S',	0x01, 0x00, 0x1b, 0x00, /* WRITE */
		0x02, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00,
		0x00, 0x00, 0x00, 0x00, 0x27, 0x00, 0x00, 0x00, /* 36 + 3 */
		0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /* open_id */
		0x00, 0x10, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /* off */
		0x03, 0x00, 0x00, 0x00,				/* len */
		0x00, 0x00, 0x00, 0x00,				/* rkey 0 */
		0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /* raddr */
		0x03, 0x00, 0x00, 0x00, 'h',  'i',  0x00,	/* data */
	};
	struct dafs_m_read_req r;
	struct dafs_m_write_req w;
	struct dafs_hdr h;
	uint8_t *c;

	free(frame(rd, sizeof(rd), &h, &r));
	ck_assert_uint_eq(r.open_id, 0x1122334455667788ull);
	ck_assert_uint_eq(r.off, 0x100000000ull);
	ck_assert_uint_eq(r.len, 65536);
	ck_assert_uint_eq(r.rkey, 0xcafebabe);
	ck_assert_uint_eq(r.raddr, 0x7f0011223344ull);

	c = frame(wr, sizeof(wr), &h, &w);
	ck_assert_uint_eq(w.open_id, 1);
	ck_assert_uint_eq(w.off, 4096);
	ck_assert_uint_eq(w.len, 3);
	ck_assert_uint_eq(w.rkey, 0);
	ck_assert_uint_eq(w.data.len, 3);
	ck_assert_mem_eq(w.data.p, "hi", 3); /* BYTES may hold NUL */
	free(c);
}
END_TEST

/* LOCK (38) request and the LOCKT (39) reply, byte by byte */
START_TEST(test_frame_lock)
{
	static const uint8_t lk[] = {
		'D',  'A',  'F',  'S',	0x01, 0x00, 0x26, 0x00, /* LOCK */
		0x05, 0x00, 0x00, 0x00, 0x09, 0x00, 0x00, 0x00,
		0x01, 0x00, 0x00, 0x00, 0x28, 0x00, 0x00, 0x00, /* 40 */
		0x03, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, /* open_id */
		0xef, 0xcd, 0xab, 0x89, 0x67, 0x45, 0x23, 0x01, /* owner */
		0x01, 0x00, 0x00, 0x00,				/* POSIX */
		0x02, 0x00, 0x00, 0x00,				/* WRITE */
		0x00, 0x10, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /* start */
		0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /* len: EOF */
	};
	static const uint8_t tr[] = {
		'D',  'A',  'F',  'S',	0x01, 0x01, 0x27, 0x00, /* LOCKT rep */
		0x05, 0x00, 0x00, 0x00, 0x0a, 0x00, 0x00, 0x00,
		0x00, 0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, /* ok, 20 */
		0x01, 0x00, 0x00, 0x00,				/* READ */
		0x64, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /* start */
		0x0a, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /* len */
	};
	struct dafs_m_lockt_rep t;
	struct dafs_m_lock_req l;
	struct dafs_hdr h;

	free(frame(lk, sizeof(lk), &h, &l));
	ck_assert_uint_eq(h.op, DAFS_OP_LOCK);
	ck_assert_uint_eq(l.open_id, 0x100000003ull);
	ck_assert_uint_eq(l.owner, 0x0123456789abcdefull);
	ck_assert_uint_eq(l.kind, DAFS_LOCK_POSIX);
	ck_assert_uint_eq(l.type, DAFS_LOCK_WRITE);
	ck_assert_uint_eq(l.start, 4096);
	ck_assert_uint_eq(l.len, 0);

	free(frame(tr, sizeof(tr), &h, &t));
	ck_assert_uint_eq(h.op, DAFS_OP_LOCKT);
	ck_assert_uint_eq(h.flags, DAFS_HF_REPLY);
	ck_assert_uint_eq(t.type, DAFS_LOCK_READ);
	ck_assert_uint_eq(t.start, 100);
	ck_assert_uint_eq(t.len, 10);

	/* LOCK's reply has no body; the denial is a status */
	{
		static const uint8_t den[] = {
			'D',  'A',  'F',  'S',	0x01, 0x01, 0x26, 0x00,
			0x05, 0x00, 0x00, 0x00, 0x09, 0x00, 0x00, 0x00,
			0x3f, 0x75, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
		};
		body_t b;

		free(frame(den, sizeof(den), &h, &b));
		ck_assert_uint_eq(h.arg, DAFS_EDENIED);
		ck_assert_int_eq(dafs_status_to_err(h.arg), -DAFS_EDENIED);
	}
}
END_TEST

START_TEST(test_frame_setattr_statfs_cred)
{
	static const uint8_t sa[] = {
		'D',  'A',  'F',  'S',	0x01, 0x00, 0x0c, 0x00, /* SETATTR */
		0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
		0x00, 0x00, 0x00, 0x00, 0x34, 0x00, 0x00, 0x00, /* 4 + 48 */
		0x02, 0x00, 0xab, 0xcd,				/* fh */
		0x3f, 0x00, 0x00, 0x00,				/* mask */
		0xed, 0x01, 0x00, 0x00,				/* mode 0755 */
		0x01, 0x02, 0x00, 0x00,				/* uid */
		0x03, 0x04, 0x00, 0x00,				/* gid */
		0x00, 0x00, 0x00, 0x40, 0x00, 0x00, 0x00, 0x00, /* size */
		0x0a, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /* atime */
		0x0b, 0x00, 0x00, 0x00, 0x0c, 0x00, 0x00, 0x00,
		0x00, 0x00, 0x00, 0x00, /* mtime */
		0x0d, 0x00, 0x00, 0x00,
	};
	static const uint8_t st[] = {
		'D',  'A',  'F',  'S',	0x01, 0x01, 0x17, 0x00, /* STATFS reply
								 */
		0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
		0x00, 0x00, 0x00, 0x34, 0x00, 0x00, 0x00,    /* 52 */
		0x01, 0,    0,	  0,	0,    0,    0,	  0, /* blocks */
		0x02, 0,    0,	  0,	0,    0,    0,	  0, /* bfree */
		0x03, 0,    0,	  0,	0,    0,    0,	  0, /* bavail */
		0x04, 0,    0,	  0,	0,    0,    0,	  0, /* files */
		0x05, 0,    0,	  0,	0,    0,    0,	  0, /* ffree */
		0x00, 0x10, 0,	  0,			     /* bsize */
		0x00, 0x02, 0,	  0,			     /* frsize */
		0xff, 0x00, 0,	  0,			     /* namemax */
	};
	static const uint8_t cr[] = {
		'D',  'A',  'F',  'S',	0x01, 0x00, 0x04, 0x00, /* CRED_REGISTER
								 */
		0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
		0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, /* 20 */
		0xe8, 0x03, 0x00, 0x00,			  /* uid */
		0xe9, 0x03, 0x00, 0x00,			  /* gid */
		0x02, 0x00, 0x00, 0x00, /* groups: n, then n le32 */
		0x04, 0x00, 0x00, 0x00, 0x1b, 0x00, 0x00, 0x00,
	};
	struct dafs_m_setattr_req s;
	struct dafs_m_statfs t;
	struct dafs_m_cred_register_req c;
	struct dafs_hdr h;

	free(frame(sa, sizeof(sa), &h, &s));
	ck_assert_uint_eq(s.fh.len, 2);
	ck_assert_uint_eq(s.sa.mask, 0x3f);
	ck_assert_uint_eq(s.sa.mode, 0755);
	ck_assert_uint_eq(s.sa.uid, 0x201);
	ck_assert_uint_eq(s.sa.gid, 0x403);
	ck_assert_uint_eq(s.sa.size, 0x40000000);
	ck_assert_int_eq(s.sa.atime.sec, 10);
	ck_assert_uint_eq(s.sa.atime.nsec, 11);
	ck_assert_int_eq(s.sa.mtime.sec, 12);
	ck_assert_uint_eq(s.sa.mtime.nsec, 13);

	free(frame(st, sizeof(st), &h, &t));
	ck_assert_uint_eq(t.st.blocks, 1);
	ck_assert_uint_eq(t.st.bfree, 2);
	ck_assert_uint_eq(t.st.bavail, 3);
	ck_assert_uint_eq(t.st.files, 4);
	ck_assert_uint_eq(t.st.ffree, 5);
	ck_assert_uint_eq(t.st.bsize, 4096);
	ck_assert_uint_eq(t.st.frsize, 512);
	ck_assert_uint_eq(t.st.namemax, 255);

	free(frame(cr, sizeof(cr), &h, &c));
	ck_assert_uint_eq(c.uid, 1000);
	ck_assert_uint_eq(c.gid, 1001);
	ck_assert_uint_eq(c.groups.n, 2);
	ck_assert_uint_eq(c.groups.v[0], 4);
	ck_assert_uint_eq(c.groups.v[1], 27);
}
END_TEST

START_TEST(test_frame_error_and_callback)
{
	static const uint8_t err[] = {
		'D',  'A',  'F',  'S',	0x01, 0x01, /* reply */
		0x0a, 0x00,			    /* LOOKUP */
		0x07, 0x00, 0x00, 0x00, 0x08, 0x00,
		0x00, 0x00, 0x02, 0x00, 0x00, 0x00, /* status ENOENT */
		0x00, 0x00, 0x00, 0x00,		    /* no body */
	};
	static const uint8_t seq[] = {
		'D',  'A',  'F',  'S',	0x01, 0x01, 0x0b, 0x00, /* GETATTR */
		0x07, 0x00, 0x00, 0x00, 0x08, 0x00, 0x00, 0x00,
		0x35, 0x75, 0x00, 0x00, /* status DAFS_ESEQ = 30005 */
		0x00, 0x00, 0x00, 0x00,
	};
	static const uint8_t cb[] = {
		'D',  'A',  'F',  'S',	0x01, 0x02, /* callback request */
		0x40, 0x00,			    /* CB_NULL */
		0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00,
		0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
	};
	static const uint8_t cbr[] = {
		'D',  'A',  'F',  'S',	0x01, 0x03, /* callback reply */
		0x40, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00,
		0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
	};
	body_t b;
	struct dafs_hdr h;

	free(frame(err, sizeof(err), &h, &b));
	ck_assert_int_eq(dafs_status_to_err(h.arg), -ENOENT);
	free(frame(seq, sizeof(seq), &h, &b));
	ck_assert_int_eq(dafs_status_to_err(h.arg), -DAFS_ESEQ);
	ck_assert_uint_eq(dafs_err_to_status(-DAFS_ESEQ), 30005);
	ck_assert_uint_eq(dafs_err_to_status(0), DAFS_OK);
	ck_assert_uint_eq(dafs_err_to_status(-EIO), EIO);
	free(frame(cb, sizeof(cb), &h, &b));
	ck_assert_uint_eq(h.flags, DAFS_HF_CB);
	ck_assert_uint_eq(h.op, DAFS_OP_CB_NULL);
	free(frame(cbr, sizeof(cbr), &h, &b));
	ck_assert_uint_eq(h.flags, DAFS_HF_CB | DAFS_HF_REPLY);
}
END_TEST

/* ---- rejections ---- */

static const uint8_t good_getattr[] = {
	'D',  'A',  'F',  'S',	0x01, 0x00, 0x0b, 0x00, 0x01,
	0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00,
	0x00, 0x00, 0x03, 0x00, 0x00, 0x00, 0x01, 0x00, 0x55,
};
/* clang-format on */

START_TEST(test_reject_header)
{
	uint8_t f[sizeof(good_getattr)];
	struct dafs_hdr h;
	body_t b;
	int i;

	ck_assert_int_eq(parse_copy(good_getattr, sizeof(f), &h, &b), 0);
	/* magic */
	for (i = 0; i < 4; i++) {
		memcpy(f, good_getattr, sizeof(f));
		f[i] ^= 0x20;
		ck_assert_int_eq(parse_copy(f, sizeof(f), &h, &b),
				 -DAFS_EPROTO);
	}
	memcpy(f, good_getattr, sizeof(f));
	memcpy(f, "SFAD", 4); /* big-endian magic */
	ck_assert_int_eq(parse_copy(f, sizeof(f), &h, &b), -DAFS_EPROTO);
	/* version */
	memcpy(f, good_getattr, sizeof(f));
	f[4] = 0;
	ck_assert_int_eq(parse_copy(f, sizeof(f), &h, &b), -DAFS_EVERSION);
	f[4] = 2;
	ck_assert_int_eq(parse_copy(f, sizeof(f), &h, &b), -DAFS_EVERSION);
	f[4] = 0xff;
	ck_assert_int_eq(parse_copy(f, sizeof(f), &h, &b), -DAFS_EVERSION);
	f[0] = 'X'; /* magic is checked first */
	ck_assert_int_eq(parse_copy(f, sizeof(f), &h, &b), -DAFS_EPROTO);
	/* header length against the frame */
	memcpy(f, good_getattr, sizeof(f));
	f[20] = 2;
	ck_assert_int_eq(parse_copy(f, sizeof(f), &h, &b), -DAFS_EPROTO);
	f[20] = 4;
	ck_assert_int_eq(parse_copy(f, sizeof(f), &h, &b), -DAFS_EPROTO);
	f[20] = 3;
	f[23] = 0x80;
	ck_assert_int_eq(parse_copy(f, sizeof(f), &h, &b), -DAFS_EPROTO);
	memset(f + 20, 0xff, 4);
	ck_assert_int_eq(parse_copy(f, sizeof(f), &h, &b), -DAFS_EPROTO);
	/* callback flag on a fore-channel op */
	memcpy(f, good_getattr, sizeof(f));
	f[5] = DAFS_HF_CB;
	ck_assert_int_eq(parse_copy(f, sizeof(f), &h, &b), -DAFS_EPROTO);
}
END_TEST

START_TEST(test_reject_opcodes)
{
	struct bb empty = {0};
	body_t b;
	uint32_t op;

	/* every 16-bit opcode outside the table, both directions, both
	 * channels */
	for (op = 0; op <= 0xffff; op++) {
		if (dafs_op_desc(op))
			continue;
		ck_assert_int_eq(parse_body(0, (uint16_t)op, 0, &empty, &b),
				 -DAFS_EPROTO);
		ck_assert_int_eq(
			parse_body(DAFS_HF_CB, (uint16_t)op, 0, &empty, &b),
			-DAFS_EPROTO);
		ck_assert_int_eq(
			parse_body(DAFS_HF_REPLY, (uint16_t)op, 0, &empty, &b),
			-DAFS_EPROTO);
		ck_assert_int_eq(parse_body(DAFS_HF_REPLY | DAFS_HF_CB,
					    (uint16_t)op, 0, &empty, &b),
				 -DAFS_EPROTO);
	}
	/* empty-bodied ops: valid only on their own channel */
	ck_assert_int_eq(parse_body(0, DAFS_OP_NULL, 0, &empty, &b), 0);
	ck_assert_int_eq(parse_body(DAFS_HF_CB, DAFS_OP_NULL, 0, &empty, &b),
			 -DAFS_EPROTO);
	ck_assert_int_eq(parse_body(DAFS_HF_CB, DAFS_OP_CB_NULL, 0, &empty, &b),
			 0);
	ck_assert_int_eq(parse_body(0, DAFS_OP_CB_NULL, 0, &empty, &b),
			 -DAFS_EPROTO);
	ck_assert_int_eq(
		parse_body(DAFS_HF_REPLY, DAFS_OP_CB_NULL, 0, &empty, &b),
		-DAFS_EPROTO);
	ck_assert_int_eq(parse_body(DAFS_HF_REPLY | DAFS_HF_CB,
				    DAFS_OP_DESTROY_SESSION, 0, &empty, &b),
			 -DAFS_EPROTO);
}
END_TEST

/* LOOKUP request with an empty handle and a name of @n bytes of @c. */
static int lookup_name(uint32_t n, int c)
{
	struct bb *b = calloc(1, sizeof(*b));
	body_t out;
	int rc;

	b16(b, 0);
	b32(b, n);
	bfill(b, c, n);
	rc = parse_body(0, DAFS_OP_LOOKUP, 0, b, &out);
	free(b);
	return rc;
}

START_TEST(test_reject_sizes)
{
	struct bb *b = calloc(1, sizeof(*b));
	body_t out;
	uint32_t i;

	/* NAME: 1..255 bytes */
	ck_assert_int_eq(lookup_name(0, 'a'), -DAFS_EPROTO);
	ck_assert_int_eq(lookup_name(1, 'a'), 0);
	ck_assert_int_eq(lookup_name(255, 'a'), 0);
	ck_assert_int_eq(lookup_name(256, 'a'), -DAFS_EPROTO);
	b->n = 0;
	b16(b, 0);
	b32(b, 0xffffffff); /* huge length, nothing behind it */
	ck_assert_int_eq(parse_body(0, DAFS_OP_LOOKUP, 0, b, &out),
			 -DAFS_EPROTO);

	/* PATH: 1..4095 bytes (READLINK reply, SYMLINK target) */
	for (i = 0; i < 4; i++) {
		static const uint32_t len[] = {0, 1, 4095, 4096};

		b->n = 0;
		b32(b, len[i]);
		bfill(b, '/', len[i]);
		ck_assert_int_eq(
			parse_body(DAFS_HF_REPLY, DAFS_OP_READLINK, 0, b, &out),
			(i == 1 || i == 2) ? 0 : -DAFS_EPROTO);
		b->n = 0;
		b16(b, 0);
		b32(b, 1);
		bmem(b, "l", 1);
		b32(b, len[i]);
		bfill(b, 'x', len[i]);
		ck_assert_int_eq(parse_body(0, DAFS_OP_SYMLINK, 0, b, &out),
				 (i == 1 || i == 2) ? 0 : -DAFS_EPROTO);
	}

	/* FH: at most 64 bytes */
	for (i = 63; i <= 65; i++) {
		b->n = 0;
		b16(b, (uint16_t)i);
		bfill(b, 0xfe, i);
		ck_assert_int_eq(parse_body(0, DAFS_OP_GETATTR, 0, b, &out),
				 i <= DAFS_FH_MAX ? 0 : -DAFS_EPROTO);
	}
	b->n = 0;
	b16(b, 0xffff);
	bfill(b, 0xfe, 100);
	ck_assert_int_eq(parse_body(0, DAFS_OP_GETATTR, 0, b, &out),
			 -DAFS_EPROTO);

	/* GROUPS: at most 32 */
	for (i = 31; i <= 34; i++) {
		uint32_t j;

		b->n = 0;
		b32(b, 1000);
		b32(b, 1000);
		b32(b, i);
		for (j = 0; j < i; j++)
			b32(b, j + 1);
		ck_assert_int_eq(
			parse_body(0, DAFS_OP_CRED_REGISTER, 0, b, &out),
			i <= DAFS_GROUPS_MAX ? 0 : -DAFS_EPROTO);
	}
	b->n = 0;
	b32(b, 0);
	b32(b, 0);
	b32(b, 0xffffffff);
	ck_assert_int_eq(parse_body(0, DAFS_OP_CRED_REGISTER, 0, b, &out),
			 -DAFS_EPROTO);
	free(b);
}
END_TEST

START_TEST(test_reject_nul)
{
	struct bb b = {0};
	body_t out;

	b16(&b, 0);
	b32(&b, 3);
	bmem(&b, "a\0b", 3);
	ck_assert_int_eq(parse_body(0, DAFS_OP_LOOKUP, 0, &b, &out),
			 -DAFS_EPROTO);
	b.n = 0;
	b16(&b, 0);
	b32(&b, 4);
	bmem(&b, "abc\0", 4); /* a C string's terminator is not sent */
	ck_assert_int_eq(parse_body(0, DAFS_OP_LOOKUP, 0, &b, &out),
			 -DAFS_EPROTO);
	b.n = 0;
	b16(&b, 0);
	b32(&b, 1);
	bmem(&b, "", 1);
	ck_assert_int_eq(parse_body(0, DAFS_OP_REMOVE, 0, &b, &out),
			 -DAFS_EPROTO);
	b.n = 0;
	b32(&b, 6);
	bmem(&b, "/a\0/b", 6);
	ck_assert_int_eq(
		parse_body(DAFS_HF_REPLY, DAFS_OP_READLINK, 0, &b, &out),
		-DAFS_EPROTO);
	/* CREATE_SESSION's export name is a NAME too */
	b.n = 0;
	b32(&b, 1);
	b32(&b, 2);
	bmem(&b, "x\0", 2);
	bfill(&b, 0, 7 * 4);
	ck_assert_int_eq(parse_body(0, DAFS_OP_CREATE_SESSION, 0, &b, &out),
			 -DAFS_EPROTO);
	b.n = 4;
	b32(&b, 2);
	bmem(&b, "xy", 2);
	bfill(&b, 0, 7 * 4);
	ck_assert_int_eq(parse_body(0, DAFS_OP_CREATE_SESSION, 0, &b, &out), 0);
}
END_TEST

START_TEST(test_reject_nsec)
{
	static const uint32_t bad[] = {1000000000u, 1000000001u, 0xffffffffu};
	struct bb b = {0};
	body_t out;
	int i, slot;

	battr(&b, 999999999, 999999999, 999999999);
	ck_assert_int_eq(
		parse_body(DAFS_HF_REPLY, DAFS_OP_GETATTR, 0, &b, &out), 0);
	for (slot = 0; slot < 3; slot++) {
		for (i = 0; i < 3; i++) {
			b.n = 0;
			battr(&b, slot == 0 ? bad[i] : 0,
			      slot == 1 ? bad[i] : 0, slot == 2 ? bad[i] : 0);
			ck_assert_int_eq(parse_body(DAFS_HF_REPLY,
						    DAFS_OP_GETATTR, 0, &b,
						    &out),
					 -DAFS_EPROTO);
		}
	}
	/* SETATTR: atime, then mtime */
	for (slot = 0; slot < 3; slot++) {
		b.n = 0;
		b16(&b, 0);
		bfill(&b, 0, 24);
		b64(&b, 0);
		b32(&b, slot == 0 ? 1000000000u : 999999999u);
		b64(&b, 0);
		b32(&b, slot == 1 ? 1000000000u : 999999999u);
		ck_assert_int_eq(parse_body(0, DAFS_OP_SETATTR, 0, &b, &out),
				 slot == 2 ? 0 : -DAFS_EPROTO);
	}
}
END_TEST

START_TEST(test_reject_trailing)
{
	struct bb b = {0};
	body_t out;

	b16(&b, 1);
	bmem(&b, "\x42", 1);
	ck_assert_int_eq(parse_body(0, DAFS_OP_GETATTR, 0, &b, &out), 0);
	bmem(&b, "\x00", 1);
	ck_assert_int_eq(parse_body(0, DAFS_OP_GETATTR, 0, &b, &out),
			 -DAFS_EPROTO);
	b.n = 0;
	bmem(&b, "\x00", 1);
	ck_assert_int_eq(parse_body(0, DAFS_OP_NULL, 0, &b, &out),
			 -DAFS_EPROTO);
	ck_assert_int_eq(
		parse_body(DAFS_HF_REPLY, DAFS_OP_DESTROY_SESSION, 0, &b, &out),
		-DAFS_EPROTO);
	/* a request's arg is a credential id, not a status: body expected */
	b.n = 0;
	ck_assert_int_eq(parse_body(0, DAFS_OP_GETATTR, 5, &b, &out),
			 -DAFS_EPROTO);
	b16(&b, 0);
	ck_assert_int_eq(parse_body(0, DAFS_OP_GETATTR, 5, &b, &out), 0);
}
END_TEST

/* ---- the encoder ---- */

START_TEST(test_enc_deferred)
{
	static uint8_t data[1000];
	struct dafs_m_write_req w = {0}, w2;
	struct dafs_hdr h = {0}, h2;
	uint8_t *buf = malloc(DAFS_HDR_SIZE + 36 + sizeof(data));
	uint32_t deferred = 0;
	ssize_t n;
	size_t i;

	ck_assert_ptr_nonnull(buf);
	for (i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)(i * 7);
	w.open_id = 9;
	w.off = 8192;
	w.len = sizeof(data);
	w.data.p = NULL; /* sent by the caller right after the message */
	w.data.len = sizeof(data);
	h.op = DAFS_OP_WRITE;
	n = dafs_msg_build(buf, DAFS_HDR_SIZE + 36, &h, &w, &deferred);
	ck_assert_int_eq(n, DAFS_HDR_SIZE + 36);
	ck_assert_uint_eq(deferred, sizeof(data));
	ck_assert_uint_eq(h.len, 36 + sizeof(data));
	ck_assert_uint_eq(dafs_get32(buf + 20), 36 + sizeof(data));
	ck_assert_uint_eq(dafs_get32(buf + DAFS_HDR_SIZE + 32), sizeof(data));

	/* header + body, then the gathered data: one valid frame */
	memcpy(buf + n, data, sizeof(data));
	ck_assert_int_eq(
		dafs_msg_parse(buf, (size_t)n + sizeof(data), &h2, &w2), 0);
	ck_assert_uint_eq(w2.open_id, 9);
	ck_assert_uint_eq(w2.data.len, sizeof(data));
	ck_assert_mem_eq(w2.data.p, data, sizeof(data));

	/* a caller that cannot take deferred bytes */
	ck_assert_int_eq(dafs_msg_build(buf, DAFS_HDR_SIZE + 36, &h, &w, NULL),
			 -EINVAL);
	/* deferred bytes that would overflow the header's length */
	w.data.len = UINT32_MAX - 10;
	ck_assert_int_lt(
		dafs_msg_build(buf, DAFS_HDR_SIZE + 36, &h, &w, &deferred), 0);
	w.data.len = UINT32_MAX - 36;
	ck_assert_int_eq(
		dafs_msg_build(buf, DAFS_HDR_SIZE + 36, &h, &w, &deferred),
		DAFS_HDR_SIZE + 36);
	ck_assert_uint_eq(h.len, UINT32_MAX);
	free(buf);
}
END_TEST

struct deferred_first {
	struct dafs_view v;
	uint32_t x;
};
static const struct dafs_field deferred_first_f[] = {
	{DAFS_F_BYTES, offsetof(struct deferred_first, v)},
	{DAFS_F_U32, offsetof(struct deferred_first, x)},
};
static const struct dafs_msgtype deferred_first_t = {
	"deferred_first", deferred_first_f, 2, sizeof(struct deferred_first)};

START_TEST(test_enc_deferred_not_last)
{
	static const uint8_t ten[10] = "0123456789";
	struct deferred_first s = {{NULL, 10}, 1};
	struct dafs_m_batch_desc d = {0};
	struct dafs_m_dirop_req l = {0};
	struct dafs_hdr h = {0};
	struct dafs_enc e;
	uint8_t buf[256];

	dafs_enc_init(&e, buf, sizeof(buf));
	ck_assert_int_eq(dafs_enc_msg(&e, &deferred_first_t, &s), -EINVAL);
	/* with its bytes present the same type encodes */
	s.v.p = ten;
	dafs_enc_init(&e, buf, sizeof(buf));
	ck_assert_int_eq(dafs_enc_msg(&e, &deferred_first_t, &s), 0);
	ck_assert_uint_eq(e.pos, 4 + 10 + 4);

	/* nothing may follow a deferred sub-message either */
	d.data.len = 5;
	dafs_enc_init(&e, buf, sizeof(buf));
	ck_assert_int_eq(dafs_enc_msg(&e, &dafs_mt_batch_desc, &d), 0);
	ck_assert_uint_eq(e.deferred, 5);
	ck_assert_int_eq(dafs_enc_msg(&e, &dafs_mt_batch_desc, &d), -EINVAL);
	ck_assert_int_eq(e.err, -EINVAL); /* sticky */

	/* NAME and PATH cannot be deferred */
	l.name.len = 3;
	h.op = DAFS_OP_LOOKUP;
	ck_assert_int_eq(dafs_msg_build(buf, sizeof(buf), &h, &l, NULL),
			 -EINVAL);
}
END_TEST

START_TEST(test_enc_invalid)
{
	static uint8_t big[5000];
	struct dafs_m_dirop_req l = {0};
	struct dafs_m_symlink_req s = {0};
	struct dafs_m_fh fh = {0};
	struct dafs_m_cred_register_req c = {0};
	struct dafs_m_setattr_req sa = {0};
	struct dafs_hdr h = {0};
	uint8_t *buf = malloc(8192);

	ck_assert_ptr_nonnull(buf);
	memset(big, 'n', sizeof(big));
	h.op = DAFS_OP_LOOKUP;
	l.name.p = big;
	l.name.len = 256;
	ck_assert_int_eq(dafs_msg_build(buf, 8192, &h, &l, NULL), -EINVAL);
	l.name.len = 0;
	ck_assert_int_eq(dafs_msg_build(buf, 8192, &h, &l, NULL), -EINVAL);
	l.name.p = (const uint8_t *)"a\0b";
	l.name.len = 3;
	ck_assert_int_eq(dafs_msg_build(buf, 8192, &h, &l, NULL), -EINVAL);
	l.name.len = 1;
	ck_assert_int_gt(dafs_msg_build(buf, 8192, &h, &l, NULL), 0);

	h.op = DAFS_OP_SYMLINK;
	s.name.p = big;
	s.name.len = 1;
	s.target.p = big;
	s.target.len = 4096;
	ck_assert_int_eq(dafs_msg_build(buf, 8192, &h, &s, NULL), -EINVAL);
	s.target.len = 4095;
	ck_assert_int_gt(dafs_msg_build(buf, 8192, &h, &s, NULL), 0);

	h.op = DAFS_OP_GETATTR;
	fh.fh.len = DAFS_FH_MAX + 1;
	ck_assert_int_eq(dafs_msg_build(buf, 8192, &h, &fh, NULL), -EINVAL);

	h.op = DAFS_OP_CRED_REGISTER;
	c.groups.n = DAFS_GROUPS_MAX + 1;
	ck_assert_int_eq(dafs_msg_build(buf, 8192, &h, &c, NULL), -EINVAL);

	/* a time the peer would refuse is refused here */
	h.op = DAFS_OP_SETATTR;
	sa.sa.mtime.nsec = 1000000000u;
	ck_assert_int_eq(dafs_msg_build(buf, 8192, &h, &sa, NULL), -EINVAL);

	/* a body is required where the message has fields */
	h.op = DAFS_OP_GETATTR;
	ck_assert_int_eq(dafs_msg_build(buf, 8192, &h, NULL, NULL), -EINVAL);
	h.op = DAFS_OP_NULL;
	ck_assert_int_eq(dafs_msg_build(buf, 8192, &h, NULL, NULL),
			 DAFS_HDR_SIZE);

	/* unknown opcodes and channel mismatches */
	h.op = 6;
	ck_assert_int_eq(dafs_msg_build(buf, 8192, &h, &fh, NULL), -EINVAL);
	h.op = DAFS_OP_MAX;
	ck_assert_int_eq(dafs_msg_build(buf, 8192, &h, &fh, NULL), -EINVAL);
	h.op = DAFS_OP_CB_NULL;
	ck_assert_int_eq(dafs_msg_build(buf, 8192, &h, NULL, NULL), -EINVAL);
	h.flags = DAFS_HF_CB;
	ck_assert_int_eq(dafs_msg_build(buf, 8192, &h, NULL, NULL),
			 DAFS_HDR_SIZE);
	h.op = DAFS_OP_NULL;
	ck_assert_int_eq(dafs_msg_build(buf, 8192, &h, NULL, NULL), -EINVAL);
	free(buf);
}
END_TEST

/* ---- sub-messages ---- */

START_TEST(test_sub_dirents)
{
	static uint8_t ents[4096];
	static char longname[256];
	const char *names[] = {"a", "b.txt", longname};
	struct dafs_m_readdir_rep rep = {0}, rep2;
	struct dafs_m_dirent_plus dp, dp2;
	struct dafs_m_dirent de, de2;
	struct dafs_hdr h = {0};
	struct dafs_enc e;
	struct dafs_dec d;
	uint8_t *buf = malloc(8192);
	int plus, i;
	ssize_t n;

	ck_assert_ptr_nonnull(buf);
	memset(longname, 'L', DAFS_NAME_MAX);
	for (plus = 0; plus < 2; plus++) {
		dafs_enc_init(&e, ents, sizeof(ents));
		for (i = 0; i < 3; i++) {
			memset(&dp, 0, sizeof(dp));
			dp.cookie = 0x1000 + (uint64_t)i;
			dp.ino = 0xabc00000000ull + (uint64_t)i;
			dp.type = 0040000u >> i;
			dp.name.p = (const uint8_t *)names[i];
			dp.name.len = (uint32_t)strlen(names[i]);
			dp.fh.len = (uint16_t)(8 + i);
			memset(dp.fh.data, 'f' + i, dp.fh.len);
			dp.attr.ino = dp.ino;
			dp.attr.size = 100u * (uint64_t)i;
			dp.attr.mtime.nsec = 5 + (uint32_t)i;
			if (plus) {
				ck_assert_int_eq(
					dafs_enc_msg(&e, &dafs_mt_dirent_plus,
						     &dp),
					0);
			} else {
				de.cookie = dp.cookie;
				de.ino = dp.ino;
				de.type = dp.type;
				de.name = dp.name;
				ck_assert_int_eq(
					dafs_enc_msg(&e, &dafs_mt_dirent, &de),
					0);
			}
		}
		rep.eof = 1;
		rep.entries.p = ents;
		rep.entries.len = (uint32_t)e.pos;
		h.op = DAFS_OP_READDIR;
		h.flags = DAFS_HF_REPLY;
		n = dafs_msg_build(buf, 8192, &h, &rep, NULL);
		ck_assert_int_gt(n, 0);
		ck_assert_int_eq(dafs_msg_parse(buf, (size_t)n, &h, &rep2), 0);
		ck_assert_uint_eq(rep2.eof, 1);

		/* walk the entries in the decoded view */
		dafs_dec_init(&d, rep2.entries.p, rep2.entries.len);
		for (i = 0; d.pos < d.len; i++) {
			ck_assert_int_lt(i, 3);
			if (plus) {
				ck_assert_int_eq(
					dafs_dec_msg(&d, &dafs_mt_dirent_plus,
						     &dp2),
					0);
			} else {
				ck_assert_int_eq(
					dafs_dec_msg(&d, &dafs_mt_dirent, &de2),
					0);
				dp2.cookie = de2.cookie;
				dp2.ino = de2.ino;
				dp2.type = de2.type;
				dp2.name = de2.name;
			}
			ck_assert_uint_eq(dp2.cookie, 0x1000 + (uint64_t)i);
			ck_assert_uint_eq(dp2.ino,
					  0xabc00000000ull + (uint64_t)i);
			ck_assert_uint_eq(dp2.type, 0040000u >> i);
			ck_assert_uint_eq(dp2.name.len, strlen(names[i]));
			ck_assert_mem_eq(dp2.name.p, names[i], dp2.name.len);
			if (plus) {
				ck_assert_uint_eq(dp2.fh.len, 8 + i);
				ck_assert_uint_eq(dp2.fh.data[7], 'f' + i);
				ck_assert_uint_eq(dp2.attr.size, 100u * i);
				ck_assert_uint_eq(dp2.attr.mtime.nsec, 5 + i);
			}
		}
		ck_assert_int_eq(i, 3);

		/* a cut entry list fails the entry decoder, not the reader */
		dafs_dec_init(&d, rep2.entries.p, rep2.entries.len - 1);
		while (!d.err && d.pos < d.len)
			dafs_dec_msg(&d,
				     plus ? &dafs_mt_dirent_plus
					  : &dafs_mt_dirent,
				     &dp2);
		ck_assert_int_eq(d.err, -DAFS_EPROTO);
	}
	free(buf);
}
END_TEST

START_TEST(test_sub_batch)
{
	static uint8_t descs[1024], results[1024];
	struct dafs_m_batch_desc in[3] = {
		{.open_id = 11,
		 .off = 0,
		 .len = 5,
		 .flags = DAFS_BF_WRITE,
		 .data = {(const uint8_t *)"hello", 5}},
		{.open_id = 12,
		 .off = 1u << 20,
		 .len = 65536,
		 .flags = 0,
		 .rkey = 0x1234,
		 .raddr = 0x7ff000001000ull},
		{.open_id = 13,
		 .off = 7,
		 .len = 1 << 20,
		 .flags = DAFS_BF_WRITE,
		 .rkey = 0x99,
		 .raddr = 0x2000},
	};
	struct dafs_m_batch_result res[3] = {
		{.status = 0, .count = 5},
		{.status = 0, .count = 3, .data = {(const uint8_t *)"a\0b", 3}},
		{.status = EIO},
	};
	struct dafs_m_batch_desc od;
	struct dafs_m_batch_result orr;
	struct dafs_m_batch_req rq = {0}, rq2;
	struct dafs_m_batch_rep rp = {0}, rp2;
	struct dafs_hdr h = {0};
	struct dafs_enc e;
	struct dafs_dec d;
	uint8_t buf[4096];
	ssize_t n;
	int i;

	dafs_enc_init(&e, descs, sizeof(descs));
	for (i = 0; i < 3; i++)
		ck_assert_int_eq(dafs_enc_msg(&e, &dafs_mt_batch_desc, &in[i]),
				 0);
	rq.n = 3;
	rq.descs.p = descs;
	rq.descs.len = (uint32_t)e.pos;
	h.op = DAFS_OP_BATCH;
	n = dafs_msg_build(buf, sizeof(buf), &h, &rq, NULL);
	ck_assert_int_gt(n, 0);
	ck_assert_int_eq(dafs_msg_parse(buf, (size_t)n, &h, &rq2), 0);
	ck_assert_uint_eq(rq2.n, 3);
	dafs_dec_init(&d, rq2.descs.p, rq2.descs.len);
	for (i = 0; i < 3; i++) {
		ck_assert_int_eq(dafs_dec_msg(&d, &dafs_mt_batch_desc, &od), 0);
		ck_assert_uint_eq(od.open_id, in[i].open_id);
		ck_assert_uint_eq(od.off, in[i].off);
		ck_assert_uint_eq(od.len, in[i].len);
		ck_assert_uint_eq(od.flags, in[i].flags);
		ck_assert_uint_eq(od.rkey, in[i].rkey);
		ck_assert_uint_eq(od.raddr, in[i].raddr);
		eq_view(&in[i].data, &od.data);
	}
	ck_assert_uint_eq(d.pos, d.len);

	dafs_enc_init(&e, results, sizeof(results));
	for (i = 0; i < 3; i++)
		ck_assert_int_eq(
			dafs_enc_msg(&e, &dafs_mt_batch_result, &res[i]), 0);
	rp.n = 3;
	rp.results.p = results;
	rp.results.len = (uint32_t)e.pos;
	h.flags = DAFS_HF_REPLY;
	h.arg = DAFS_OK; /* the batch went through; elements carry theirs */
	n = dafs_msg_build(buf, sizeof(buf), &h, &rp, NULL);
	ck_assert_int_gt(n, 0);
	ck_assert_int_eq(dafs_msg_parse(buf, (size_t)n, &h, &rp2), 0);
	ck_assert_uint_eq(rp2.n, 3);
	dafs_dec_init(&d, rp2.results.p, rp2.results.len);
	for (i = 0; i < 3; i++) {
		ck_assert_int_eq(dafs_dec_msg(&d, &dafs_mt_batch_result, &orr),
				 0);
		ck_assert_uint_eq(orr.status, res[i].status);
		ck_assert_uint_eq(orr.count, res[i].count);
		eq_view(&res[i].data, &orr.data);
	}
	ck_assert_uint_eq(d.pos, d.len);
	/* and past the end: an error, not a read */
	ck_assert_int_eq(dafs_dec_msg(&d, &dafs_mt_batch_result, &orr),
			 -DAFS_EPROTO);
}
END_TEST

static Suite *wire_suite(void)
{
	Suite *s = suite_create("wire");
	TCase *tc;

	tc = tcase_create("roundtrip");
	tcase_add_test(tc, test_every_op_has_a_case);
	tcase_add_loop_test(tc, test_roundtrip, 0, NCASES);
	suite_add_tcase(s, tc);

	tc = tcase_create("frames");
	tcase_add_test(tc, test_frame_getattr);
	tcase_add_test(tc, test_frame_getattr_reply);
	tcase_add_test(tc, test_frame_lookup);
	tcase_add_test(tc, test_frame_read_write);
	tcase_add_test(tc, test_frame_lock);
	tcase_add_test(tc, test_frame_setattr_statfs_cred);
	tcase_add_test(tc, test_frame_error_and_callback);
	suite_add_tcase(s, tc);

	tc = tcase_create("reject");
	tcase_add_test(tc, test_reject_header);
	tcase_add_test(tc, test_reject_opcodes);
	tcase_add_test(tc, test_reject_sizes);
	tcase_add_test(tc, test_reject_nul);
	tcase_add_test(tc, test_reject_nsec);
	tcase_add_test(tc, test_reject_trailing);
	suite_add_tcase(s, tc);

	tc = tcase_create("encoder");
	tcase_add_test(tc, test_enc_deferred);
	tcase_add_test(tc, test_enc_deferred_not_last);
	tcase_add_test(tc, test_enc_invalid);
	tcase_add_test(tc, test_sub_dirents);
	tcase_add_test(tc, test_sub_batch);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(wire_suite());
	int failed;

	srunner_run_all(sr, CK_ENV);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
