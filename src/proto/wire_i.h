/*
 * wire_i.h - DAFS wire format: message header, opcodes, message bodies and
 * the table-driven codec that encodes and decodes them.
 *
 * Every message is a 24-byte header followed by a body. Bodies are flat
 * sequences of little-endian fields described by per-message field tables;
 * one encoder and one decoder walk those tables, so every message is checked
 * by the same code and the decoder is the single fuzz target. The decoder
 * never reads past the buffer it is given and never allocates: variable
 * fields decode to views that borrow from the message buffer.
 * docs/protocol.md is the reference for all of this.
 */
#ifndef DAFS_WIRE_I_H
#define DAFS_WIRE_I_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "dafs/dafs.h"

#define DAFS_MAGIC 0x53464144u /* "DAFS" as little-endian bytes */
#define DAFS_PROTO_VERSION 1
#define DAFS_HDR_SIZE 24

/* dafs_hdr.flags */
#define DAFS_HF_REPLY 0x01 /* a reply (else a request) */
#define DAFS_HF_CB 0x02    /* callback channel (server -> client request) */

struct dafs_hdr {
	uint8_t version;
	uint8_t flags;
	uint16_t op;
	uint32_t slot;
	uint32_t seq;
	uint32_t arg; /* request: credential id; reply: status (enum below) */
	uint32_t len; /* body length */
};

/*
 * Opcodes. Values are part of the wire format: never renumber.
 * Fore channel (client -> server) below 64, callback channel from 64.
 */
enum dafs_op {
	DAFS_OP_NULL = 0,
	DAFS_OP_CREATE_SESSION = 1,
	DAFS_OP_BIND_CONN = 2,
	DAFS_OP_DESTROY_SESSION = 3,
	DAFS_OP_CRED_REGISTER = 4,
	DAFS_OP_PROBE_CALLBACK = 5,
	DAFS_OP_LOOKUP = 10,
	DAFS_OP_GETATTR = 11,
	DAFS_OP_SETATTR = 12,
	DAFS_OP_CREATE = 13,
	DAFS_OP_MKDIR = 14,
	DAFS_OP_MKNOD = 15,
	DAFS_OP_SYMLINK = 16,
	DAFS_OP_READLINK = 17,
	DAFS_OP_LINK = 18,
	DAFS_OP_REMOVE = 19,
	DAFS_OP_RMDIR = 20,
	DAFS_OP_RENAME = 21,
	DAFS_OP_READDIR = 22,
	DAFS_OP_STATFS = 23,
	DAFS_OP_OPEN = 24,
	DAFS_OP_CLOSE = 25,
	DAFS_OP_READ = 26,
	DAFS_OP_WRITE = 27,
	DAFS_OP_COMMIT = 28,
	DAFS_OP_FALLOCATE = 29,
	DAFS_OP_COPY_RANGE = 30,
	DAFS_OP_GETXATTR = 31,
	DAFS_OP_SETXATTR = 32,
	DAFS_OP_LISTXATTR = 33,
	DAFS_OP_REMOVEXATTR = 34,
	DAFS_OP_BATCH = 35,
	DAFS_OP_DELEGRETURN = 36,
	DAFS_OP_LSEEK = 37,
	DAFS_OP_LOCK = 38,
	DAFS_OP_LOCKT = 39,
	DAFS_OP_ACCESS = 40,
	DAFS_OP_CB_NULL = 64,
	DAFS_OP_CB_RECALL = 65,
	DAFS_OP_MAX = 66
};

/*
 * Wire status codes in replies: 0 is success; 1..4095 are Linux errno
 * values (the server and clients are Linux; docs/protocol.md lists those a
 * server returns); DAFS_EBASE+N are the project codes of dafs.h.
 */
#define DAFS_OK 0

/* Borrowed bytes inside a message buffer. */
struct dafs_view {
	const uint8_t *p;
	uint32_t len;
};

#define DAFS_SID_LEN 16
#define DAFS_GROUPS_MAX 32

struct dafs_groups {
	uint32_t n;
	uint32_t v[DAFS_GROUPS_MAX];
};

/* Field types of the codec tables. */
enum dafs_ftype {
	DAFS_F_U32 = 1,
	DAFS_F_U64,
	DAFS_F_FH,     /* le16 len (<= DAFS_FH_MAX) + bytes -> dafs_fh_t */
	DAFS_F_NAME,   /* le32 len (1..255), no NUL -> dafs_view */
	DAFS_F_PATH,   /* le32 len (1..4095), no NUL -> dafs_view */
	DAFS_F_BYTES,  /* le32 len + bytes -> dafs_view (may be last-deferred) */
	DAFS_F_ATTR,   /* fixed 96 bytes -> dafs_attr_t */
	DAFS_F_SATTR,  /* fixed 48 bytes -> dafs_setattr_t */
	DAFS_F_SID,    /* 16 bytes -> uint8_t[16] */
	DAFS_F_GROUPS, /* le32 n (<= 32) + n * le32 -> dafs_groups */
	DAFS_F_STATFS, /* fixed 52 bytes -> dafs_statfs_t */
};

struct dafs_field {
	uint8_t type;
	uint16_t off;
};

struct dafs_msgtype {
	const char *name;
	const struct dafs_field *f;
	uint8_t nf;
	uint16_t size; /* sizeof the decoded struct */
};

/* dafs_opdesc.flags */
#define DAFS_OPF_IDEMPOTENT 0x01 /* a replay may re-execute it */
#define DAFS_OPF_NOSESSION 0x02  /* valid before a session is bound */
#define DAFS_OPF_CALLBACK 0x04   /* callback channel op */

struct dafs_opdesc {
	const char *name;
	const struct dafs_msgtype *req, *rep;
	uint8_t flags;
};

/* The op table; NULL entries are holes. Index only after dafs_op_desc(). */
extern const struct dafs_opdesc dafs_ops[DAFS_OP_MAX];

/* The descriptor of @op, or NULL if @op is not an opcode. */
const struct dafs_opdesc *dafs_op_desc(uint32_t op);
/* "LOOKUP" etc., or "?" (for logs). */
const char *dafs_op_name(uint32_t op);

/* ---- message bodies (decoded forms) ---- */

struct dafs_m_create_session_req {
	uint32_t version;
	struct dafs_view export_;
	uint32_t max_request, max_response, inline_max, credits, cb_credits;
	uint32_t write_method, lease_ms;
};
struct dafs_m_create_session_rep {
	uint8_t sid[DAFS_SID_LEN];
	uint32_t max_request, max_response, inline_max, credits, cb_credits;
	uint32_t write_method, lease_ms, max_io;
	dafs_fh_t root;
};
enum { DAFS_CONN_FORE = 1, DAFS_CONN_BACK = 2 };
struct dafs_m_bind_conn_req {
	uint8_t sid[DAFS_SID_LEN];
	uint32_t dir;
};
struct dafs_m_cred_register_req {
	uint32_t uid, gid;
	struct dafs_groups groups;
};
struct dafs_m_u32 {
	uint32_t v;
};
struct dafs_m_u64 {
	uint64_t v;
};
struct dafs_m_fh {
	dafs_fh_t fh;
};
struct dafs_m_attr {
	dafs_attr_t attr;
};
struct dafs_m_fh_attr {
	dafs_fh_t fh;
	dafs_attr_t attr;
};
struct dafs_m_dirop_req { /* dir + name: lookup, remove, rmdir */
	dafs_fh_t dir;
	struct dafs_view name;
};
struct dafs_m_setattr_req {
	dafs_fh_t fh;
	dafs_setattr_t sa;
};
struct dafs_m_create_req {
	dafs_fh_t dir;
	struct dafs_view name;
	uint32_t flags; /* DAFS_O_* */
	uint32_t mode;
};
struct dafs_m_create_rep {
	dafs_fh_t fh;
	dafs_attr_t attr;
	uint64_t open_id;
	uint32_t deleg; /* DAFS_DELEG_* granted */
	uint64_t deleg_id;
};
struct dafs_m_mkdir_req {
	dafs_fh_t dir;
	struct dafs_view name;
	uint32_t mode;
};
struct dafs_m_mknod_req {
	dafs_fh_t dir;
	struct dafs_view name;
	uint32_t mode;
	uint64_t rdev;
};
struct dafs_m_symlink_req {
	dafs_fh_t dir;
	struct dafs_view name;
	struct dafs_view target;
};
struct dafs_m_path {
	struct dafs_view path;
};
struct dafs_m_link_req {
	dafs_fh_t fh;
	dafs_fh_t dir;
	struct dafs_view name;
};
struct dafs_m_rename_req {
	dafs_fh_t sdir;
	struct dafs_view sname;
	dafs_fh_t ddir;
	struct dafs_view dname;
	uint32_t flags;
};
struct dafs_m_readdir_req {
	dafs_fh_t dir;
	uint64_t cookie;
	uint32_t maxbytes;
	uint32_t plus;
};
struct dafs_m_readdir_rep {
	uint32_t eof;
	struct dafs_view entries; /* dafs_m_dirent (or _plus) repeated */
};
struct dafs_m_dirent {
	uint64_t cookie, ino;
	uint32_t type;
	struct dafs_view name;
};
struct dafs_m_dirent_plus {
	uint64_t cookie, ino;
	uint32_t type;
	struct dafs_view name;
	dafs_fh_t fh;
	dafs_attr_t attr;
};
struct dafs_m_statfs {
	dafs_statfs_t st;
};
struct dafs_m_open_req {
	dafs_fh_t fh;
	uint32_t flags; /* DAFS_O_* */
};
struct dafs_m_open_rep {
	uint64_t open_id;
	dafs_attr_t attr;
	uint32_t deleg; /* DAFS_DELEG_* granted */
	uint64_t deleg_id;
};
struct dafs_m_cb_recall_req {
	dafs_fh_t fh;
	uint64_t deleg_id;
	uint32_t type; /* DAFS_DELEG_* being recalled */
};
struct dafs_m_read_req {
	uint64_t open_id, off;
	uint32_t len;
	uint32_t rkey; /* 0: reply inline; else RDMA WRITE to raddr */
	uint64_t raddr;
};
struct dafs_m_read_rep {
	uint32_t count, eof;
	struct dafs_view data; /* empty for direct reads */
};
struct dafs_m_write_req {
	uint64_t open_id, off;
	uint32_t len;
	uint32_t rkey; /* 0: data follows; else server RDMA READs raddr */
	uint64_t raddr;
	struct dafs_view data;
};
struct dafs_m_commit_req {
	uint64_t open_id;
	uint32_t datasync;
};
struct dafs_m_fallocate_req {
	uint64_t open_id;
	uint32_t mode;
	uint64_t off, len;
};
/* LSEEK whence: where the next data or hole is (Linux's values) */
#define DAFS_SEEK_DATA 3
#define DAFS_SEEK_HOLE 4
struct dafs_m_lseek_req {
	uint64_t open_id, off;
	uint32_t whence;
};
/* ACCESS: whether the request's credentials may read (4), write (2),
 * execute or search (1) the object, as access(2) with AT_EACCESS; 0 asks
 * only whether it exists */
struct dafs_m_access_req {
	dafs_fh_t fh;
	uint32_t mask;
};
/*
 * LOCK and LOCKT: a byte-range (POSIX) or whole-file (flock) lock of a
 * lock owner the client chose, taken through one of the session's open
 * files. kind: DAFS_LOCK_POSIX / _FLOCK; type: DAFS_LOCK_READ / _WRITE /
 * _UNLOCK (LOCK only); len 0 reaches to the end of the file and beyond.
 */
struct dafs_m_lock_req {
	uint64_t open_id, owner;
	uint32_t kind, type;
	uint64_t start, len;
};
/* LOCKT's answer: a conflicting lock (the first the server's kernel
 * finds), type DAFS_LOCK_UNLOCK (and start and len 0) if there is none */
struct dafs_m_lockt_rep {
	uint32_t type;
	uint64_t start, len;
};
struct dafs_m_copy_range_req {
	uint64_t src, soff, dst, doff, len;
};
struct dafs_m_getxattr_req {
	dafs_fh_t fh;
	struct dafs_view name;
	uint32_t size;
};
struct dafs_m_xattr_rep { /* getxattr, listxattr */
	uint32_t size;
	struct dafs_view value;
};
struct dafs_m_setxattr_req {
	dafs_fh_t fh;
	struct dafs_view name;
	uint32_t flags;
	struct dafs_view value;
};
struct dafs_m_listxattr_req {
	dafs_fh_t fh;
	uint32_t size;
};
struct dafs_m_xattr_name_req {
	dafs_fh_t fh;
	struct dafs_view name;
};
struct dafs_m_batch_req {
	uint32_t n;
	struct dafs_view descs; /* dafs_m_batch_desc repeated n times */
};
#define DAFS_BF_WRITE 1
struct dafs_m_batch_desc {
	uint64_t open_id, off;
	uint32_t len, flags, rkey;
	uint64_t raddr;
	struct dafs_view data; /* inline write data, else empty */
};
struct dafs_m_batch_rep {
	uint32_t n;
	struct dafs_view results; /* dafs_m_batch_result repeated n times */
};
struct dafs_m_batch_result {
	uint32_t status; /* wire status */
	uint32_t count;
	struct dafs_view data; /* inline read data, else empty */
};

/* Open flags on the wire (portable subset of open(2) flags). */
#define DAFS_O_RDONLY 0x0
#define DAFS_O_WRONLY 0x1
#define DAFS_O_RDWR 0x2
#define DAFS_O_ACCMODE 0x3
#define DAFS_O_APPEND 0x10
#define DAFS_O_TRUNC 0x20
#define DAFS_O_EXCL 0x40
#define DAFS_O_SYNC 0x80
#define DAFS_O_DSYNC 0x100
#define DAFS_O_DIRECT 0x200
#define DAFS_O_ALL 0x3f3
/* OPEN and CREATE only: the delegation the client would like */
#define DAFS_O_WANT_READ_DELEG 0x1000
#define DAFS_O_WANT_WRITE_DELEG 0x2000
#define DAFS_O_WANT_DELEG (DAFS_O_WANT_READ_DELEG | DAFS_O_WANT_WRITE_DELEG)

/* Sub-message types (readdir entries, batch elements) for dafs_dec(). */
extern const struct dafs_msgtype dafs_mt_dirent, dafs_mt_dirent_plus;
extern const struct dafs_msgtype dafs_mt_batch_desc, dafs_mt_batch_result;

/* ---- codec ---- */

/* Encoder over a caller-owned buffer. Errors are sticky. */
struct dafs_enc {
	uint8_t *p;
	size_t cap, pos;
	uint32_t deferred; /* bytes of a trailing field sent out of band */
	int err;           /* 0 or -EMSGSIZE / -EINVAL */
};

/* Decoder over a borrowed buffer. Errors are sticky. */
struct dafs_dec {
	const uint8_t *p;
	size_t len, pos;
	int err; /* 0 or -DAFS_EPROTO */
};

static inline void dafs_enc_init(struct dafs_enc *e, void *buf, size_t cap)
{
	e->p = buf;
	e->cap = cap;
	e->pos = 0;
	e->deferred = 0;
	e->err = 0;
}

static inline void dafs_dec_init(struct dafs_dec *d, const void *buf,
				 size_t len)
{
	d->p = buf;
	d->len = len;
	d->pos = 0;
	d->err = 0;
}

/*
 * Encode @s (a struct of type @t) at the encoder's position. A DAFS_F_BYTES
 * field whose view has p == NULL and len > 0 must be the last field: only its
 * length is written, and e->deferred says how many bytes the caller must send
 * right after the encoded message (a gather list). Returns e->err.
 */
int dafs_enc_msg(struct dafs_enc *e, const struct dafs_msgtype *t,
		 const void *s);
/* Decode one @t into @s (which it zeroes first). Returns d->err. */
int dafs_dec_msg(struct dafs_dec *d, const struct dafs_msgtype *t, void *s);

/* Header: encode at the start of @buf (>= DAFS_HDR_SIZE); decode and
 * validate magic and version (-DAFS_EPROTO, -DAFS_EVERSION). */
void dafs_hdr_put(uint8_t *buf, const struct dafs_hdr *h);
int dafs_hdr_get(const uint8_t *buf, size_t len, struct dafs_hdr *h);

/*
 * Build a whole message: header + body of op @op, direction from @h->flags.
 * @h->len is filled in (including any deferred bytes). Returns the number of
 * bytes written to @buf, or a negative error. *@deferred receives the
 * out-of-band byte count (may be NULL when none is possible).
 */
ssize_t dafs_msg_build(void *buf, size_t cap, struct dafs_hdr *h,
		       const void *body, uint32_t *deferred);

/*
 * Parse a whole message: header, then the body of the op's request or reply
 * type into @body (a buffer of at least DAFS_BODY_MAX bytes). Checks that the
 * body length matches the frame and that the body decodes exactly.
 */
#define DAFS_BODY_MAX 512
int dafs_msg_parse(const void *buf, size_t len, struct dafs_hdr *h,
		   void *body);

/* Wire status <-> library return code (negative errno or -DAFS_E*). */
/* A status no server sends (beyond the project band) is a protocol error,
 * never a negated overflow. */
static inline int dafs_status_to_err(uint32_t st)
{
	if (st == 0)
		return 0;
	return st <= DAFS_ELAST ? -(int)st : -DAFS_EPROTO;
}
static inline uint32_t dafs_err_to_status(int err)
{
	return err >= 0 ? 0 : (uint32_t)-err;
}

/* ---- little-endian helpers ---- */
static inline void dafs_put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}
static inline void dafs_put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}
static inline void dafs_put64(uint8_t *p, uint64_t v)
{
	dafs_put32(p, (uint32_t)v);
	dafs_put32(p + 4, (uint32_t)(v >> 32));
}
static inline uint16_t dafs_get16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}
static inline uint32_t dafs_get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}
static inline uint64_t dafs_get64(const uint8_t *p)
{
	return (uint64_t)dafs_get32(p) | (uint64_t)dafs_get32(p + 4) << 32;
}

#endif /* DAFS_WIRE_I_H */
