/*
 * wire.c - the table-driven codec of the DAFS wire format (see wire_i.h and
 * docs/protocol.md). Each message type is a list of typed fields; one
 * encoder and one decoder walk the lists.
 */
#include <errno.h>
#include <stddef.h>

#include "wire_i.h"

/* Encoded sizes of the fixed blocks (docs/protocol.md). */
#define ATTR_WIRE 96
#define SATTR_WIRE 48
#define STATFS_WIRE 52

#define F(type, st, m)                                                         \
	{                                                                      \
		DAFS_F_##type, offsetof(st, m)                                 \
	}
#define MT(var, label, st, ...)                                                \
	static const struct dafs_field var##_f[] = {__VA_ARGS__};              \
	static const struct dafs_msgtype var = {                               \
		label, var##_f, sizeof(var##_f) / sizeof(var##_f[0]),          \
		sizeof(st)}
#define MT0(var, label)                                                        \
	static const struct dafs_msgtype var = {label, NULL, 0, 0}

MT0(mt_empty, "empty");
MT(mt_create_session_req, "create_session_req",
   struct dafs_m_create_session_req,
   F(U32, struct dafs_m_create_session_req, version),
   F(NAME, struct dafs_m_create_session_req, export_),
   F(U32, struct dafs_m_create_session_req, max_request),
   F(U32, struct dafs_m_create_session_req, max_response),
   F(U32, struct dafs_m_create_session_req, inline_max),
   F(U32, struct dafs_m_create_session_req, credits),
   F(U32, struct dafs_m_create_session_req, cb_credits),
   F(U32, struct dafs_m_create_session_req, write_method),
   F(U32, struct dafs_m_create_session_req, lease_ms));
MT(mt_create_session_rep, "create_session_rep",
   struct dafs_m_create_session_rep,
   F(SID, struct dafs_m_create_session_rep, sid),
   F(U32, struct dafs_m_create_session_rep, max_request),
   F(U32, struct dafs_m_create_session_rep, max_response),
   F(U32, struct dafs_m_create_session_rep, inline_max),
   F(U32, struct dafs_m_create_session_rep, credits),
   F(U32, struct dafs_m_create_session_rep, cb_credits),
   F(U32, struct dafs_m_create_session_rep, write_method),
   F(U32, struct dafs_m_create_session_rep, lease_ms),
   F(U32, struct dafs_m_create_session_rep, max_io),
   F(FH, struct dafs_m_create_session_rep, root));
MT(mt_bind_conn_req, "bind_conn_req", struct dafs_m_bind_conn_req,
   F(SID, struct dafs_m_bind_conn_req, sid),
   F(U32, struct dafs_m_bind_conn_req, dir));
MT(mt_cred_register_req, "cred_register_req",
   struct dafs_m_cred_register_req,
   F(U32, struct dafs_m_cred_register_req, uid),
   F(U32, struct dafs_m_cred_register_req, gid),
   F(GROUPS, struct dafs_m_cred_register_req, groups));
MT(mt_u32, "u32", struct dafs_m_u32, F(U32, struct dafs_m_u32, v));
MT(mt_u64, "u64", struct dafs_m_u64, F(U64, struct dafs_m_u64, v));
MT(mt_fh, "fh", struct dafs_m_fh, F(FH, struct dafs_m_fh, fh));
MT(mt_attr, "attr", struct dafs_m_attr, F(ATTR, struct dafs_m_attr, attr));
MT(mt_fh_attr, "fh_attr", struct dafs_m_fh_attr,
   F(FH, struct dafs_m_fh_attr, fh), F(ATTR, struct dafs_m_fh_attr, attr));
MT(mt_dirop_req, "dirop_req", struct dafs_m_dirop_req,
   F(FH, struct dafs_m_dirop_req, dir), F(NAME, struct dafs_m_dirop_req, name));
MT(mt_setattr_req, "setattr_req", struct dafs_m_setattr_req,
   F(FH, struct dafs_m_setattr_req, fh),
   F(SATTR, struct dafs_m_setattr_req, sa));
MT(mt_create_req, "create_req", struct dafs_m_create_req,
   F(FH, struct dafs_m_create_req, dir), F(NAME, struct dafs_m_create_req, name),
   F(U32, struct dafs_m_create_req, flags),
   F(U32, struct dafs_m_create_req, mode));
MT(mt_create_rep, "create_rep", struct dafs_m_create_rep,
   F(FH, struct dafs_m_create_rep, fh), F(ATTR, struct dafs_m_create_rep, attr),
   F(U64, struct dafs_m_create_rep, open_id),
   F(U32, struct dafs_m_create_rep, deleg),
   F(U64, struct dafs_m_create_rep, deleg_id));
MT(mt_mkdir_req, "mkdir_req", struct dafs_m_mkdir_req,
   F(FH, struct dafs_m_mkdir_req, dir), F(NAME, struct dafs_m_mkdir_req, name),
   F(U32, struct dafs_m_mkdir_req, mode));
MT(mt_mknod_req, "mknod_req", struct dafs_m_mknod_req,
   F(FH, struct dafs_m_mknod_req, dir), F(NAME, struct dafs_m_mknod_req, name),
   F(U32, struct dafs_m_mknod_req, mode),
   F(U64, struct dafs_m_mknod_req, rdev));
MT(mt_symlink_req, "symlink_req", struct dafs_m_symlink_req,
   F(FH, struct dafs_m_symlink_req, dir),
   F(NAME, struct dafs_m_symlink_req, name),
   F(PATH, struct dafs_m_symlink_req, target));
MT(mt_path, "path", struct dafs_m_path, F(PATH, struct dafs_m_path, path));
MT(mt_link_req, "link_req", struct dafs_m_link_req,
   F(FH, struct dafs_m_link_req, fh), F(FH, struct dafs_m_link_req, dir),
   F(NAME, struct dafs_m_link_req, name));
MT(mt_rename_req, "rename_req", struct dafs_m_rename_req,
   F(FH, struct dafs_m_rename_req, sdir),
   F(NAME, struct dafs_m_rename_req, sname),
   F(FH, struct dafs_m_rename_req, ddir),
   F(NAME, struct dafs_m_rename_req, dname),
   F(U32, struct dafs_m_rename_req, flags));
MT(mt_readdir_req, "readdir_req", struct dafs_m_readdir_req,
   F(FH, struct dafs_m_readdir_req, dir),
   F(U64, struct dafs_m_readdir_req, cookie),
   F(U32, struct dafs_m_readdir_req, maxbytes),
   F(U32, struct dafs_m_readdir_req, plus));
MT(mt_readdir_rep, "readdir_rep", struct dafs_m_readdir_rep,
   F(U32, struct dafs_m_readdir_rep, eof),
   F(BYTES, struct dafs_m_readdir_rep, entries));
MT(mt_statfs, "statfs", struct dafs_m_statfs,
   F(STATFS, struct dafs_m_statfs, st));
MT(mt_open_req, "open_req", struct dafs_m_open_req,
   F(FH, struct dafs_m_open_req, fh), F(U32, struct dafs_m_open_req, flags));
MT(mt_open_rep, "open_rep", struct dafs_m_open_rep,
   F(U64, struct dafs_m_open_rep, open_id),
   F(ATTR, struct dafs_m_open_rep, attr), F(U32, struct dafs_m_open_rep, deleg),
   F(U64, struct dafs_m_open_rep, deleg_id));
MT(mt_cb_recall_req, "cb_recall_req", struct dafs_m_cb_recall_req,
   F(FH, struct dafs_m_cb_recall_req, fh),
   F(U64, struct dafs_m_cb_recall_req, deleg_id),
   F(U32, struct dafs_m_cb_recall_req, type));
MT(mt_read_req, "read_req", struct dafs_m_read_req,
   F(U64, struct dafs_m_read_req, open_id), F(U64, struct dafs_m_read_req, off),
   F(U32, struct dafs_m_read_req, len), F(U32, struct dafs_m_read_req, rkey),
   F(U64, struct dafs_m_read_req, raddr));
MT(mt_read_rep, "read_rep", struct dafs_m_read_rep,
   F(U32, struct dafs_m_read_rep, count), F(U32, struct dafs_m_read_rep, eof),
   F(BYTES, struct dafs_m_read_rep, data));
MT(mt_write_req, "write_req", struct dafs_m_write_req,
   F(U64, struct dafs_m_write_req, open_id),
   F(U64, struct dafs_m_write_req, off), F(U32, struct dafs_m_write_req, len),
   F(U32, struct dafs_m_write_req, rkey),
   F(U64, struct dafs_m_write_req, raddr),
   F(BYTES, struct dafs_m_write_req, data));
MT(mt_commit_req, "commit_req", struct dafs_m_commit_req,
   F(U64, struct dafs_m_commit_req, open_id),
   F(U32, struct dafs_m_commit_req, datasync));
MT(mt_fallocate_req, "fallocate_req", struct dafs_m_fallocate_req,
   F(U64, struct dafs_m_fallocate_req, open_id),
   F(U32, struct dafs_m_fallocate_req, mode),
   F(U64, struct dafs_m_fallocate_req, off),
   F(U64, struct dafs_m_fallocate_req, len));
MT(mt_lseek_req, "lseek_req", struct dafs_m_lseek_req,
   F(U64, struct dafs_m_lseek_req, open_id),
   F(U64, struct dafs_m_lseek_req, off),
   F(U32, struct dafs_m_lseek_req, whence));
MT(mt_access_req, "access_req", struct dafs_m_access_req,
   F(FH, struct dafs_m_access_req, fh), F(U32, struct dafs_m_access_req, mask));
MT(mt_lock_req, "lock_req", struct dafs_m_lock_req,
   F(U64, struct dafs_m_lock_req, open_id),
   F(U64, struct dafs_m_lock_req, owner),
   F(U32, struct dafs_m_lock_req, kind), F(U32, struct dafs_m_lock_req, type),
   F(U64, struct dafs_m_lock_req, start), F(U64, struct dafs_m_lock_req, len));
MT(mt_lockt_rep, "lockt_rep", struct dafs_m_lockt_rep,
   F(U32, struct dafs_m_lockt_rep, type),
   F(U64, struct dafs_m_lockt_rep, start),
   F(U64, struct dafs_m_lockt_rep, len));
MT(mt_copy_range_req, "copy_range_req", struct dafs_m_copy_range_req,
   F(U64, struct dafs_m_copy_range_req, src),
   F(U64, struct dafs_m_copy_range_req, soff),
   F(U64, struct dafs_m_copy_range_req, dst),
   F(U64, struct dafs_m_copy_range_req, doff),
   F(U64, struct dafs_m_copy_range_req, len));
MT(mt_getxattr_req, "getxattr_req", struct dafs_m_getxattr_req,
   F(FH, struct dafs_m_getxattr_req, fh),
   F(NAME, struct dafs_m_getxattr_req, name),
   F(U32, struct dafs_m_getxattr_req, size));
MT(mt_xattr_rep, "xattr_rep", struct dafs_m_xattr_rep,
   F(U32, struct dafs_m_xattr_rep, size),
   F(BYTES, struct dafs_m_xattr_rep, value));
MT(mt_setxattr_req, "setxattr_req", struct dafs_m_setxattr_req,
   F(FH, struct dafs_m_setxattr_req, fh),
   F(NAME, struct dafs_m_setxattr_req, name),
   F(U32, struct dafs_m_setxattr_req, flags),
   F(BYTES, struct dafs_m_setxattr_req, value));
MT(mt_listxattr_req, "listxattr_req", struct dafs_m_listxattr_req,
   F(FH, struct dafs_m_listxattr_req, fh),
   F(U32, struct dafs_m_listxattr_req, size));
MT(mt_xattr_name_req, "xattr_name_req", struct dafs_m_xattr_name_req,
   F(FH, struct dafs_m_xattr_name_req, fh),
   F(NAME, struct dafs_m_xattr_name_req, name));
MT(mt_batch_req, "batch_req", struct dafs_m_batch_req,
   F(U32, struct dafs_m_batch_req, n), F(BYTES, struct dafs_m_batch_req, descs));
MT(mt_batch_rep, "batch_rep", struct dafs_m_batch_rep,
   F(U32, struct dafs_m_batch_rep, n),
   F(BYTES, struct dafs_m_batch_rep, results));

#define PUBMT(var, label, st, ...)                                             \
	static const struct dafs_field var##_f[] = {__VA_ARGS__};              \
	const struct dafs_msgtype var = {label, var##_f,                       \
					 sizeof(var##_f) / sizeof(var##_f[0]), \
					 sizeof(st)}
PUBMT(dafs_mt_dirent, "dirent", struct dafs_m_dirent,
      F(U64, struct dafs_m_dirent, cookie), F(U64, struct dafs_m_dirent, ino),
      F(U32, struct dafs_m_dirent, type), F(NAME, struct dafs_m_dirent, name));
PUBMT(dafs_mt_dirent_plus, "dirent_plus", struct dafs_m_dirent_plus,
      F(U64, struct dafs_m_dirent_plus, cookie),
      F(U64, struct dafs_m_dirent_plus, ino),
      F(U32, struct dafs_m_dirent_plus, type),
      F(NAME, struct dafs_m_dirent_plus, name),
      F(FH, struct dafs_m_dirent_plus, fh),
      F(ATTR, struct dafs_m_dirent_plus, attr));
PUBMT(dafs_mt_batch_desc, "batch_desc", struct dafs_m_batch_desc,
      F(U64, struct dafs_m_batch_desc, open_id),
      F(U64, struct dafs_m_batch_desc, off),
      F(U32, struct dafs_m_batch_desc, len),
      F(U32, struct dafs_m_batch_desc, flags),
      F(U32, struct dafs_m_batch_desc, rkey),
      F(U64, struct dafs_m_batch_desc, raddr),
      F(BYTES, struct dafs_m_batch_desc, data));
PUBMT(dafs_mt_batch_result, "batch_result", struct dafs_m_batch_result,
      F(U32, struct dafs_m_batch_result, status),
      F(U32, struct dafs_m_batch_result, count),
      F(BYTES, struct dafs_m_batch_result, data));

#define I DAFS_OPF_IDEMPOTENT
#define OP(code, label, rq, rp, fl)                                            \
	[DAFS_OP_##code] = {label, &rq, &rp, fl}
const struct dafs_opdesc dafs_ops[DAFS_OP_MAX] = {
	OP(NULL, "NULL", mt_empty, mt_empty, I | DAFS_OPF_NOSESSION),
	OP(CREATE_SESSION, "CREATE_SESSION", mt_create_session_req,
	   mt_create_session_rep, DAFS_OPF_NOSESSION),
	OP(BIND_CONN, "BIND_CONN", mt_bind_conn_req, mt_empty,
	   DAFS_OPF_NOSESSION),
	OP(DESTROY_SESSION, "DESTROY_SESSION", mt_empty, mt_empty, 0),
	OP(CRED_REGISTER, "CRED_REGISTER", mt_cred_register_req, mt_u32, 0),
	OP(PROBE_CALLBACK, "PROBE_CALLBACK", mt_empty, mt_u64, I),
	OP(LOOKUP, "LOOKUP", mt_dirop_req, mt_fh_attr, I),
	OP(GETATTR, "GETATTR", mt_fh, mt_attr, I),
	OP(SETATTR, "SETATTR", mt_setattr_req, mt_attr, 0),
	OP(CREATE, "CREATE", mt_create_req, mt_create_rep, 0),
	OP(MKDIR, "MKDIR", mt_mkdir_req, mt_fh_attr, 0),
	OP(MKNOD, "MKNOD", mt_mknod_req, mt_fh_attr, 0),
	OP(SYMLINK, "SYMLINK", mt_symlink_req, mt_fh_attr, 0),
	OP(READLINK, "READLINK", mt_fh, mt_path, I),
	OP(LINK, "LINK", mt_link_req, mt_attr, 0),
	OP(REMOVE, "REMOVE", mt_dirop_req, mt_empty, 0),
	OP(RMDIR, "RMDIR", mt_dirop_req, mt_empty, 0),
	OP(RENAME, "RENAME", mt_rename_req, mt_empty, 0),
	OP(READDIR, "READDIR", mt_readdir_req, mt_readdir_rep, I),
	OP(STATFS, "STATFS", mt_fh, mt_statfs, I),
	OP(OPEN, "OPEN", mt_open_req, mt_open_rep, 0),
	OP(CLOSE, "CLOSE", mt_u64, mt_empty, 0),
	OP(READ, "READ", mt_read_req, mt_read_rep, I),
	OP(WRITE, "WRITE", mt_write_req, mt_u32, 0),
	OP(COMMIT, "COMMIT", mt_commit_req, mt_empty, I),
	OP(FALLOCATE, "FALLOCATE", mt_fallocate_req, mt_empty, 0),
	OP(COPY_RANGE, "COPY_RANGE", mt_copy_range_req, mt_u64, 0),
	OP(GETXATTR, "GETXATTR", mt_getxattr_req, mt_xattr_rep, I),
	OP(SETXATTR, "SETXATTR", mt_setxattr_req, mt_empty, 0),
	OP(LISTXATTR, "LISTXATTR", mt_listxattr_req, mt_xattr_rep, I),
	OP(REMOVEXATTR, "REMOVEXATTR", mt_xattr_name_req, mt_empty, 0),
	OP(BATCH, "BATCH", mt_batch_req, mt_batch_rep, 0),
	OP(DELEGRETURN, "DELEGRETURN", mt_u64, mt_empty, 0),
	OP(LSEEK, "LSEEK", mt_lseek_req, mt_u64, I),
	OP(LOCK, "LOCK", mt_lock_req, mt_empty, 0),
	OP(LOCKT, "LOCKT", mt_lock_req, mt_lockt_rep, I),
	OP(ACCESS, "ACCESS", mt_access_req, mt_empty, I),
	OP(CB_NULL, "CB_NULL", mt_empty, mt_empty, I | DAFS_OPF_CALLBACK),
	OP(CB_RECALL, "CB_RECALL", mt_cb_recall_req, mt_empty,
	   I | DAFS_OPF_CALLBACK),
};
#undef OP
#undef I

const struct dafs_opdesc *dafs_op_desc(uint32_t op)
{
	if (op >= DAFS_OP_MAX || !dafs_ops[op].name)
		return NULL;
	return &dafs_ops[op];
}

const char *dafs_op_name(uint32_t op)
{
	const struct dafs_opdesc *d = dafs_op_desc(op);

	return d ? d->name : "?";
}

/* ---- encoder ---- */

static uint8_t *room(struct dafs_enc *e, size_t n)
{
	uint8_t *p;

	if (e->err)
		return NULL;
	if (e->deferred || n > e->cap - e->pos) {
		/* nothing may follow a deferred field */
		e->err = e->deferred ? -EINVAL : -EMSGSIZE;
		return NULL;
	}
	p = e->p + e->pos;
	e->pos += n;
	return p;
}

static void put_u32(struct dafs_enc *e, uint32_t v)
{
	uint8_t *p = room(e, 4);

	if (p)
		dafs_put32(p, v);
}

static void put_u64(struct dafs_enc *e, uint64_t v)
{
	uint8_t *p = room(e, 8);

	if (p)
		dafs_put64(p, v);
}

static void put_time(struct dafs_enc *e, const dafs_time_t *t)
{
	/* refuse here what the peer's decoder would refuse */
	if (t->nsec >= 1000000000u && !e->err)
		e->err = -EINVAL;
	put_u64(e, (uint64_t)t->sec);
	put_u32(e, t->nsec);
}

/* @text: a NAME or PATH (no NUL, never deferred); else BYTES. */
static void put_view(struct dafs_enc *e, const struct dafs_view *v,
		     uint32_t min, uint32_t max, int text)
{
	uint8_t *p;

	if (v->len < min || v->len > max ||
	    (text && v->p && memchr(v->p, 0, v->len))) {
		if (!e->err)
			e->err = -EINVAL;
		return;
	}
	put_u32(e, v->len);
	if (!v->p && v->len) {
		if (text) {
			if (!e->err)
				e->err = -EINVAL;
			return;
		}
		if (!e->err)
			e->deferred = v->len;
		return;
	}
	p = room(e, v->len);
	if (p && v->len)
		memcpy(p, v->p, v->len);
}

static void put_field(struct dafs_enc *e, uint8_t type, const void *m)
{
	const dafs_fh_t *fh;
	const dafs_attr_t *a;
	const dafs_setattr_t *sa;
	const dafs_statfs_t *st;
	const struct dafs_groups *g;
	uint8_t *p;
	uint32_t i;

	switch (type) {
	case DAFS_F_U32:
		put_u32(e, *(const uint32_t *)m);
		break;
	case DAFS_F_U64:
		put_u64(e, *(const uint64_t *)m);
		break;
	case DAFS_F_FH:
		fh = m;
		if (fh->len > DAFS_FH_MAX) {
			e->err = e->err ? e->err : -EINVAL;
			break;
		}
		p = room(e, 2 + fh->len);
		if (p) {
			dafs_put16(p, fh->len);
			memcpy(p + 2, fh->data, fh->len);
		}
		break;
	case DAFS_F_NAME:
		put_view(e, m, 1, DAFS_NAME_MAX, 1);
		break;
	case DAFS_F_PATH:
		put_view(e, m, 1, DAFS_PATH_MAX, 1);
		break;
	case DAFS_F_BYTES:
		put_view(e, m, 0, UINT32_MAX, 0);
		break;
	case DAFS_F_ATTR:
		a = m;
		put_u64(e, a->ino);
		put_u64(e, a->size);
		put_u64(e, a->blocks);
		put_u64(e, a->change);
		put_u64(e, a->rdev);
		put_u32(e, a->mode);
		put_u32(e, a->nlink);
		put_u32(e, a->uid);
		put_u32(e, a->gid);
		put_u32(e, a->blksize);
		put_time(e, &a->atime);
		put_time(e, &a->mtime);
		put_time(e, &a->ctime);
		break;
	case DAFS_F_SATTR:
		sa = m;
		put_u32(e, sa->mask);
		put_u32(e, sa->mode);
		put_u32(e, sa->uid);
		put_u32(e, sa->gid);
		put_u64(e, sa->size);
		put_time(e, &sa->atime);
		put_time(e, &sa->mtime);
		break;
	case DAFS_F_SID:
		p = room(e, DAFS_SID_LEN);
		if (p)
			memcpy(p, m, DAFS_SID_LEN);
		break;
	case DAFS_F_GROUPS:
		g = m;
		if (g->n > DAFS_GROUPS_MAX) {
			e->err = e->err ? e->err : -EINVAL;
			break;
		}
		put_u32(e, g->n);
		for (i = 0; i < g->n; i++)
			put_u32(e, g->v[i]);
		break;
	case DAFS_F_STATFS:
		st = m;
		put_u64(e, st->blocks);
		put_u64(e, st->bfree);
		put_u64(e, st->bavail);
		put_u64(e, st->files);
		put_u64(e, st->ffree);
		put_u32(e, st->bsize);
		put_u32(e, st->frsize);
		put_u32(e, st->namemax);
		break;
	default:
		e->err = e->err ? e->err : -EINVAL;
	}
}

int dafs_enc_msg(struct dafs_enc *e, const struct dafs_msgtype *t,
		 const void *s)
{
	const uint8_t *base = s;
	uint8_t i;

	for (i = 0; i < t->nf && !e->err; i++)
		put_field(e, t->f[i].type, base + t->f[i].off);
	return e->err;
}

/* ---- decoder ---- */

static const uint8_t *take(struct dafs_dec *d, size_t n)
{
	const uint8_t *p;

	if (d->err)
		return NULL;
	if (n > d->len - d->pos) {
		d->err = -DAFS_EPROTO;
		return NULL;
	}
	p = d->p + d->pos;
	d->pos += n;
	return p;
}

static uint32_t get_u32(struct dafs_dec *d)
{
	const uint8_t *p = take(d, 4);

	return p ? dafs_get32(p) : 0;
}

static uint64_t get_u64(struct dafs_dec *d)
{
	const uint8_t *p = take(d, 8);

	return p ? dafs_get64(p) : 0;
}

static void get_time(struct dafs_dec *d, dafs_time_t *t)
{
	t->sec = (int64_t)get_u64(d);
	t->nsec = get_u32(d);
	if (t->nsec >= 1000000000u && !d->err)
		d->err = -DAFS_EPROTO;
}

static void get_view(struct dafs_dec *d, struct dafs_view *v, uint32_t min,
		     uint32_t max, int text)
{
	uint32_t n = get_u32(d);
	const uint8_t *p;

	if (d->err)
		return;
	if (n < min || n > max) {
		d->err = -DAFS_EPROTO;
		return;
	}
	p = take(d, n);
	if (!p)
		return;
	if (text && memchr(p, 0, n)) {
		d->err = -DAFS_EPROTO;
		return;
	}
	v->p = p;
	v->len = n;
}

static void get_field(struct dafs_dec *d, uint8_t type, void *m)
{
	dafs_fh_t *fh;
	dafs_attr_t *a;
	dafs_setattr_t *sa;
	dafs_statfs_t *st;
	struct dafs_groups *g;
	const uint8_t *p;
	uint32_t i;

	switch (type) {
	case DAFS_F_U32:
		*(uint32_t *)m = get_u32(d);
		break;
	case DAFS_F_U64:
		*(uint64_t *)m = get_u64(d);
		break;
	case DAFS_F_FH:
		fh = m;
		p = take(d, 2);
		if (!p)
			break;
		fh->len = dafs_get16(p);
		if (fh->len > DAFS_FH_MAX) {
			d->err = -DAFS_EPROTO;
			break;
		}
		p = take(d, fh->len);
		if (p)
			memcpy(fh->data, p, fh->len);
		break;
	case DAFS_F_NAME:
		get_view(d, m, 1, DAFS_NAME_MAX, 1);
		break;
	case DAFS_F_PATH:
		get_view(d, m, 1, DAFS_PATH_MAX, 1);
		break;
	case DAFS_F_BYTES:
		get_view(d, m, 0, UINT32_MAX, 0);
		break;
	case DAFS_F_ATTR:
		a = m;
		a->ino = get_u64(d);
		a->size = get_u64(d);
		a->blocks = get_u64(d);
		a->change = get_u64(d);
		a->rdev = get_u64(d);
		a->mode = get_u32(d);
		a->nlink = get_u32(d);
		a->uid = get_u32(d);
		a->gid = get_u32(d);
		a->blksize = get_u32(d);
		get_time(d, &a->atime);
		get_time(d, &a->mtime);
		get_time(d, &a->ctime);
		break;
	case DAFS_F_SATTR:
		sa = m;
		sa->mask = get_u32(d);
		sa->mode = get_u32(d);
		sa->uid = get_u32(d);
		sa->gid = get_u32(d);
		sa->size = get_u64(d);
		get_time(d, &sa->atime);
		get_time(d, &sa->mtime);
		break;
	case DAFS_F_SID:
		p = take(d, DAFS_SID_LEN);
		if (p)
			memcpy(m, p, DAFS_SID_LEN);
		break;
	case DAFS_F_GROUPS:
		g = m;
		g->n = get_u32(d);
		if (g->n > DAFS_GROUPS_MAX) {
			d->err = d->err ? d->err : -DAFS_EPROTO;
			g->n = 0;
			break;
		}
		for (i = 0; i < g->n; i++)
			g->v[i] = get_u32(d);
		break;
	case DAFS_F_STATFS:
		st = m;
		st->blocks = get_u64(d);
		st->bfree = get_u64(d);
		st->bavail = get_u64(d);
		st->files = get_u64(d);
		st->ffree = get_u64(d);
		st->bsize = get_u32(d);
		st->frsize = get_u32(d);
		st->namemax = get_u32(d);
		break;
	default:
		d->err = -DAFS_EPROTO;
	}
}

int dafs_dec_msg(struct dafs_dec *d, const struct dafs_msgtype *t, void *s)
{
	uint8_t *base = s;
	uint8_t i;

	if (t->size)
		memset(s, 0, t->size);
	for (i = 0; i < t->nf && !d->err; i++)
		get_field(d, t->f[i].type, base + t->f[i].off);
	return d->err;
}

/* ---- header and whole messages ---- */

void dafs_hdr_put(uint8_t *b, const struct dafs_hdr *h)
{
	dafs_put32(b, DAFS_MAGIC);
	b[4] = DAFS_PROTO_VERSION;
	b[5] = h->flags;
	dafs_put16(b + 6, h->op);
	dafs_put32(b + 8, h->slot);
	dafs_put32(b + 12, h->seq);
	dafs_put32(b + 16, h->arg);
	dafs_put32(b + 20, h->len);
}

int dafs_hdr_get(const uint8_t *b, size_t len, struct dafs_hdr *h)
{
	if (len < DAFS_HDR_SIZE || dafs_get32(b) != DAFS_MAGIC)
		return -DAFS_EPROTO;
	h->version = b[4];
	if (h->version != DAFS_PROTO_VERSION)
		return -DAFS_EVERSION;
	h->flags = b[5];
	h->op = dafs_get16(b + 6);
	h->slot = dafs_get32(b + 8);
	h->seq = dafs_get32(b + 12);
	h->arg = dafs_get32(b + 16);
	h->len = dafs_get32(b + 20);
	return 0;
}

static const struct dafs_msgtype *body_type(const struct dafs_hdr *h)
{
	const struct dafs_opdesc *d = dafs_op_desc(h->op);

	if (!d)
		return NULL;
	/* a callback op only travels with the callback flag, and vice versa */
	if (!(d->flags & DAFS_OPF_CALLBACK) != !(h->flags & DAFS_HF_CB))
		return NULL;
	return (h->flags & DAFS_HF_REPLY) ? d->rep : d->req;
}

ssize_t dafs_msg_build(void *buf, size_t cap, struct dafs_hdr *h,
		       const void *body, uint32_t *deferred)
{
	const struct dafs_msgtype *t = body_type(h);
	int error_reply = (h->flags & DAFS_HF_REPLY) && h->arg != DAFS_OK;
	struct dafs_enc e;

	if (!t || (!body && t->nf && !error_reply))
		return -EINVAL;
	if (cap < DAFS_HDR_SIZE)
		return -EMSGSIZE;
	dafs_enc_init(&e, (uint8_t *)buf + DAFS_HDR_SIZE, cap - DAFS_HDR_SIZE);
	/* an error reply carries no body */
	if (!error_reply && body && dafs_enc_msg(&e, t, body))
		return e.err;
	if (e.deferred && !deferred)
		return -EINVAL;
	/* the header's length must hold the body and the deferred bytes */
	if (e.pos > UINT32_MAX - e.deferred)
		return -EMSGSIZE;
	if (deferred)
		*deferred = e.deferred;
	h->len = (uint32_t)e.pos + e.deferred;
	dafs_hdr_put(buf, h);
	return (ssize_t)(DAFS_HDR_SIZE + e.pos);
}

int dafs_msg_parse(const void *buf, size_t len, struct dafs_hdr *h,
		   void *body)
{
	const struct dafs_msgtype *t;
	struct dafs_dec d;
	int rc;

	rc = dafs_hdr_get(buf, len, h);
	if (rc)
		return rc;
	if (h->len != len - DAFS_HDR_SIZE)
		return -DAFS_EPROTO;
	t = body_type(h);
	if (!t)
		return -DAFS_EPROTO;
	if ((h->flags & DAFS_HF_REPLY) && h->arg != DAFS_OK) {
		/* error replies have an empty body */
		if (h->len)
			return -DAFS_EPROTO;
		if (t->size)
			memset(body, 0, t->size);
		return 0;
	}
	dafs_dec_init(&d, (const uint8_t *)buf + DAFS_HDR_SIZE, h->len);
	if (dafs_dec_msg(&d, t, body))
		return d.err;
	if (d.pos != d.len)
		return -DAFS_EPROTO; /* trailing garbage */
	return 0;
}
