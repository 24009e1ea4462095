/*
 * gen_corpus.c - writes the seed corpus of fuzz_wire: one valid message per
 * opcode and direction, plus error replies and element lists (readdir
 * entries, batch descriptors and results) that the fuzzer would take long to
 * find on its own.
 *
 * usage: gen_corpus DIR   (the checked-in seeds are test/fuzz/corpus)
 *
 * Every opcode of dafs_ops[] must have a seed here: a new opcode without
 * one makes this program fail. Each message is parsed back before it is
 * written.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "proto/wire_i.h"

typedef union {
	uint8_t b[DAFS_BODY_MAX];
	uint64_t align;
	struct dafs_m_create_session_req csq;
	struct dafs_m_create_session_rep csp;
	struct dafs_m_bind_conn_req bind;
	struct dafs_m_cred_register_req cred;
	struct dafs_m_u32 u32;
	struct dafs_m_u64 u64;
	struct dafs_m_fh fh;
	struct dafs_m_attr attr;
	struct dafs_m_fh_attr fha;
	struct dafs_m_dirop_req dirop;
	struct dafs_m_setattr_req setattr;
	struct dafs_m_create_req create;
	struct dafs_m_create_rep createp;
	struct dafs_m_mkdir_req mkdir;
	struct dafs_m_mknod_req mknod;
	struct dafs_m_symlink_req symlink;
	struct dafs_m_path path;
	struct dafs_m_link_req link;
	struct dafs_m_rename_req rename;
	struct dafs_m_readdir_req readdir;
	struct dafs_m_readdir_rep readdirp;
	struct dafs_m_statfs statfs;
	struct dafs_m_open_req open;
	struct dafs_m_open_rep openp;
	struct dafs_m_read_req read;
	struct dafs_m_read_rep readp;
	struct dafs_m_write_req write;
	struct dafs_m_commit_req commit;
	struct dafs_m_fallocate_req falloc;
	struct dafs_m_copy_range_req copy;
	struct dafs_m_getxattr_req getx;
	struct dafs_m_xattr_rep xattrp;
	struct dafs_m_setxattr_req setx;
	struct dafs_m_listxattr_req listx;
	struct dafs_m_xattr_name_req xname;
	struct dafs_m_batch_req batch;
	struct dafs_m_batch_rep batchp;
	struct dafs_m_cb_recall_req recall;
	struct dafs_m_lseek_req lseek;
	struct dafs_m_lock_req lock;
	struct dafs_m_lockt_rep lockt;
	struct dafs_m_access_req access;
} body_t;

static const char *outdir;
static uint32_t seq;

static struct dafs_view text(const char *s)
{
	struct dafs_view v = {(const uint8_t *)s, (uint32_t)strlen(s)};

	return v;
}

static void fh(dafs_fh_t *f, uint8_t tag)
{
	f->len = 12;
	memset(f->data, 0, sizeof(f->data));
	memcpy(f->data, "\x01\x00\xfa\xce", 4);
	f->data[4] = tag;
}

static void attr(dafs_attr_t *a, uint32_t mode)
{
	a->ino = 4242;
	a->size = 12345;
	a->blocks = 32;
	a->change = 0x1700000000000001ull;
	a->mode = mode;
	a->nlink = 1;
	a->uid = 1000;
	a->gid = 1000;
	a->blksize = 4096;
	a->atime.sec = 1700000000;
	a->atime.nsec = 1;
	a->mtime.sec = 1700000001;
	a->mtime.nsec = 999999999;
	a->ctime.sec = 1700000002;
	a->ctime.nsec = 500000000;
}

/* Build, parse back, write DIR/NAME. */
static void emit(const char *name, uint16_t op, uint8_t flags, uint32_t arg,
		 const body_t *b)
{
	static uint8_t buf[8192];
	struct dafs_hdr h = {.flags = flags, .op = op, .arg = arg};
	struct dafs_hdr h2;
	body_t out;
	char path[4096];
	ssize_t n;
	FILE *f;

	seq++;
	h.slot = seq % 16;
	h.seq = seq;
	n = dafs_msg_build(buf, sizeof(buf), &h, b, NULL);
	if (n < 0 || dafs_msg_parse(buf, (size_t)n, &h2, &out)) {
		fprintf(stderr, "gen_corpus: %s: does not build (%zd)\n", name,
			n);
		exit(1);
	}
	snprintf(path, sizeof(path), "%s/%s", outdir, name);
	f = fopen(path, "wb");
	if (!f || fwrite(buf, 1, (size_t)n, f) != (size_t)n || fclose(f)) {
		fprintf(stderr, "gen_corpus: %s: %s\n", path, strerror(errno));
		exit(1);
	}
}

/* The body of @op's request (!reply) or reply; 0, or -1 if none known. */
static int fill(uint32_t op, int reply, body_t *b)
{
	static uint8_t data[64] = "inline data\0with a NUL";

	memset(b, 0, sizeof(*b));
	switch (op << 1 | (uint32_t)reply) {
	case DAFS_OP_NULL << 1:
	case DAFS_OP_NULL << 1 | 1:
	case DAFS_OP_BIND_CONN << 1 | 1:
	case DAFS_OP_DESTROY_SESSION << 1:
	case DAFS_OP_DESTROY_SESSION << 1 | 1:
	case DAFS_OP_PROBE_CALLBACK << 1:
	case DAFS_OP_REMOVE << 1 | 1:
	case DAFS_OP_RMDIR << 1 | 1:
	case DAFS_OP_RENAME << 1 | 1:
	case DAFS_OP_CLOSE << 1 | 1:
	case DAFS_OP_COMMIT << 1 | 1:
	case DAFS_OP_FALLOCATE << 1 | 1:
	case DAFS_OP_SETXATTR << 1 | 1:
	case DAFS_OP_REMOVEXATTR << 1 | 1:
	case DAFS_OP_CB_NULL << 1:
	case DAFS_OP_CB_NULL << 1 | 1:
	case DAFS_OP_CB_RECALL << 1 | 1:
	case DAFS_OP_DELEGRETURN << 1 | 1:
	case DAFS_OP_LOCK << 1 | 1:
	case DAFS_OP_ACCESS << 1 | 1:
		return 0; /* empty bodies */
	case DAFS_OP_DELEGRETURN << 1:
		b->u64.v = 0x5f0000000001ull;
		return 0;
	case DAFS_OP_LSEEK << 1:
		b->lseek.open_id = 7;
		b->lseek.off = 65536;
		b->lseek.whence = DAFS_SEEK_HOLE;
		return 0;
	case DAFS_OP_LSEEK << 1 | 1:
		b->u64.v = 1048576;
		return 0;
	case DAFS_OP_LOCK << 1:
		b->lock.open_id = 7;
		b->lock.owner = 0xffff8881234567c0ull;
		b->lock.kind = DAFS_LOCK_POSIX;
		b->lock.type = DAFS_LOCK_WRITE;
		b->lock.start = 4096;
		b->lock.len = 0;
		return 0;
	case DAFS_OP_LOCKT << 1:
		b->lock.open_id = 7;
		b->lock.owner = 42;
		b->lock.kind = DAFS_LOCK_POSIX;
		b->lock.type = DAFS_LOCK_READ;
		b->lock.start = 0;
		b->lock.len = 100;
		return 0;
	case DAFS_OP_LOCKT << 1 | 1:
		b->lockt.type = DAFS_LOCK_WRITE;
		b->lockt.start = 50;
		b->lockt.len = 10;
		return 0;
	case DAFS_OP_ACCESS << 1:
		fh(&b->access.fh, 4);
		b->access.mask = 4 | 2; /* R_OK | W_OK */
		return 0;
	case DAFS_OP_CB_RECALL << 1:
		fh(&b->recall.fh, 2);
		b->recall.deleg_id = 0x5f0000000001ull;
		b->recall.type = 2;
		return 0;
	case DAFS_OP_CREATE_SESSION << 1:
		b->csq.version = DAFS_PROTO_VERSION;
		b->csq.export_ = text("export");
		b->csq.max_request = 1052672;
		b->csq.max_response = 131072;
		b->csq.inline_max = 4096;
		b->csq.credits = 16;
		b->csq.cb_credits = 2;
		b->csq.write_method = DAFS_WRITE_GATHER;
		b->csq.lease_ms = 30000;
		return 0;
	case DAFS_OP_CREATE_SESSION << 1 | 1:
		memcpy(b->csp.sid, "0123456789abcdef", DAFS_SID_LEN);
		b->csp.max_request = 1052672;
		b->csp.max_response = 131072;
		b->csp.inline_max = 4096;
		b->csp.credits = 16;
		b->csp.cb_credits = 2;
		b->csp.write_method = DAFS_WRITE_RDMA_READ;
		b->csp.lease_ms = 30000;
		b->csp.max_io = 1048576;
		fh(&b->csp.root, 0);
		return 0;
	case DAFS_OP_BIND_CONN << 1:
		memcpy(b->bind.sid, "0123456789abcdef", DAFS_SID_LEN);
		b->bind.dir = DAFS_CONN_BACK;
		return 0;
	case DAFS_OP_CRED_REGISTER << 1:
		b->cred.uid = 1000;
		b->cred.gid = 1000;
		b->cred.groups.n = 3;
		b->cred.groups.v[0] = 4;
		b->cred.groups.v[1] = 27;
		b->cred.groups.v[2] = 100;
		return 0;
	case DAFS_OP_CRED_REGISTER << 1 | 1:
	case DAFS_OP_WRITE << 1 | 1:
		b->u32.v = 4096;
		return 0;
	case DAFS_OP_PROBE_CALLBACK << 1 | 1:
	case DAFS_OP_COPY_RANGE << 1 | 1:
		b->u64.v = 27000;
		return 0;
	case DAFS_OP_LOOKUP << 1:
	case DAFS_OP_REMOVE << 1:
	case DAFS_OP_RMDIR << 1:
		fh(&b->dirop.dir, 1);
		b->dirop.name = text("file.txt");
		return 0;
	case DAFS_OP_LOOKUP << 1 | 1:
	case DAFS_OP_MKDIR << 1 | 1:
	case DAFS_OP_MKNOD << 1 | 1:
	case DAFS_OP_SYMLINK << 1 | 1:
		fh(&b->fha.fh, 2);
		attr(&b->fha.attr, 0100644);
		return 0;
	case DAFS_OP_GETATTR << 1:
	case DAFS_OP_READLINK << 1:
	case DAFS_OP_STATFS << 1:
		fh(&b->fh.fh, 3);
		return 0;
	case DAFS_OP_GETATTR << 1 | 1:
	case DAFS_OP_SETATTR << 1 | 1:
	case DAFS_OP_LINK << 1 | 1:
		attr(&b->attr.attr, 040755);
		return 0;
	case DAFS_OP_SETATTR << 1:
		fh(&b->setattr.fh, 4);
		b->setattr.sa.mask = DAFS_SET_MODE | DAFS_SET_SIZE |
				     DAFS_SET_MTIME | DAFS_SET_ATIME_NOW;
		b->setattr.sa.mode = 0600;
		b->setattr.sa.size = 1 << 20;
		b->setattr.sa.mtime.sec = 1600000000;
		b->setattr.sa.mtime.nsec = 250;
		return 0;
	case DAFS_OP_CREATE << 1:
		fh(&b->create.dir, 1);
		b->create.name = text("new");
		b->create.flags = DAFS_O_RDWR | DAFS_O_EXCL;
		b->create.mode = 0644;
		return 0;
	case DAFS_OP_CREATE << 1 | 1:
		fh(&b->createp.fh, 5);
		attr(&b->createp.attr, 0100644);
		b->createp.open_id = 0x100000001ull;
		b->createp.deleg = 2;
		b->createp.deleg_id = 0x5f0000000001ull;
		return 0;
	case DAFS_OP_MKDIR << 1:
		fh(&b->mkdir.dir, 1);
		b->mkdir.name = text("dir");
		b->mkdir.mode = 0755;
		return 0;
	case DAFS_OP_MKNOD << 1:
		fh(&b->mknod.dir, 1);
		b->mknod.name = text("fifo");
		b->mknod.mode = 010644;
		b->mknod.rdev = 0;
		return 0;
	case DAFS_OP_SYMLINK << 1:
		fh(&b->symlink.dir, 1);
		b->symlink.name = text("link");
		b->symlink.target = text("../some/where");
		return 0;
	case DAFS_OP_READLINK << 1 | 1:
		b->path.path = text("../some/where");
		return 0;
	case DAFS_OP_LINK << 1:
		fh(&b->link.fh, 2);
		fh(&b->link.dir, 1);
		b->link.name = text("hard");
		return 0;
	case DAFS_OP_RENAME << 1:
		fh(&b->rename.sdir, 1);
		b->rename.sname = text("a");
		fh(&b->rename.ddir, 6);
		b->rename.dname = text("b");
		b->rename.flags = DAFS_RENAME_NOREPLACE;
		return 0;
	case DAFS_OP_READDIR << 1:
		fh(&b->readdir.dir, 1);
		b->readdir.cookie = 0;
		b->readdir.maxbytes = 65536;
		b->readdir.plus = 1;
		return 0;
	case DAFS_OP_READDIR << 1 | 1:
		b->readdirp.eof = 1; /* entries: separate seeds below */
		return 0;
	case DAFS_OP_STATFS << 1 | 1:
		b->statfs.st.blocks = 1000000;
		b->statfs.st.bfree = 500000;
		b->statfs.st.bavail = 400000;
		b->statfs.st.files = 65536;
		b->statfs.st.ffree = 60000;
		b->statfs.st.bsize = 4096;
		b->statfs.st.frsize = 4096;
		b->statfs.st.namemax = 255;
		return 0;
	case DAFS_OP_OPEN << 1:
		fh(&b->open.fh, 2);
		b->open.flags = DAFS_O_RDWR | DAFS_O_APPEND |
				DAFS_O_WANT_WRITE_DELEG;
		return 0;
	case DAFS_OP_OPEN << 1 | 1:
		b->openp.open_id = 7;
		attr(&b->openp.attr, 0100600);
		b->openp.deleg = 1;
		b->openp.deleg_id = 0x5f0000000002ull;
		return 0;
	case DAFS_OP_CLOSE << 1:
		b->u64.v = 7;
		return 0;
	case DAFS_OP_READ << 1:
		b->read.open_id = 7;
		b->read.off = 4096;
		b->read.len = 65536;
		b->read.rkey = 0x1234;
		b->read.raddr = 0x7f0000100000ull;
		return 0;
	case DAFS_OP_READ << 1 | 1:
		b->readp.count = 22;
		b->readp.eof = 1;
		b->readp.data.p = data;
		b->readp.data.len = 22;
		return 0;
	case DAFS_OP_WRITE << 1:
		b->write.open_id = 7;
		b->write.off = 0;
		b->write.len = 22;
		b->write.data.p = data;
		b->write.data.len = 22;
		return 0;
	case DAFS_OP_COMMIT << 1:
		b->commit.open_id = 7;
		b->commit.datasync = 1;
		return 0;
	case DAFS_OP_FALLOCATE << 1:
		b->falloc.open_id = 7;
		b->falloc.mode = 0;
		b->falloc.off = 0;
		b->falloc.len = 1 << 20;
		return 0;
	case DAFS_OP_COPY_RANGE << 1:
		b->copy.src = 7;
		b->copy.soff = 0;
		b->copy.dst = 8;
		b->copy.doff = 4096;
		b->copy.len = 27000;
		return 0;
	case DAFS_OP_GETXATTR << 1:
		fh(&b->getx.fh, 2);
		b->getx.name = text("user.comment");
		b->getx.size = 256;
		return 0;
	case DAFS_OP_GETXATTR << 1 | 1:
	case DAFS_OP_LISTXATTR << 1 | 1:
		b->xattrp.size = 13;
		b->xattrp.value.p = (const uint8_t *)"user.comment";
		b->xattrp.value.len = 13;
		return 0;
	case DAFS_OP_SETXATTR << 1:
		fh(&b->setx.fh, 2);
		b->setx.name = text("user.comment");
		b->setx.flags = 1;
		b->setx.value.p = data;
		b->setx.value.len = 11;
		return 0;
	case DAFS_OP_LISTXATTR << 1:
		fh(&b->listx.fh, 2);
		b->listx.size = 4096;
		return 0;
	case DAFS_OP_REMOVEXATTR << 1:
		fh(&b->xname.fh, 2);
		b->xname.name = text("user.comment");
		return 0;
	case DAFS_OP_BATCH << 1:
	case DAFS_OP_BATCH << 1 | 1:
		return 0; /* empty lists; full ones below */
	}
	return -1;
}

static void lower(char *d, const char *s)
{
	while (*s) {
		*d++ = (char)(*s >= 'A' && *s <= 'Z' ? *s - 'A' + 'a' : *s);
		s++;
	}
	*d = 0;
}

/* Seeds with element lists in their views. */
static void lists(void)
{
	static uint8_t ents[2048], plus[2048], descs[512], res[512];
	const char *names[] = {"a", "b.txt", "dir"};
	struct dafs_m_dirent_plus dp;
	struct dafs_m_dirent de;
	struct dafs_m_batch_desc bd;
	struct dafs_m_batch_result br;
	struct dafs_enc e, ep;
	body_t b;
	int i;

	dafs_enc_init(&e, ents, sizeof(ents));
	dafs_enc_init(&ep, plus, sizeof(plus));
	for (i = 0; i < 3; i++) {
		memset(&dp, 0, sizeof(dp));
		dp.cookie = 100 + (uint64_t)i;
		dp.ino = 4242 + (uint64_t)i;
		dp.type = i == 2 ? 0040000 : 0100000;
		dp.name = text(names[i]);
		fh(&dp.fh, (uint8_t)(10 + i));
		attr(&dp.attr, dp.type | 0644);
		de.cookie = dp.cookie;
		de.ino = dp.ino;
		de.type = dp.type;
		de.name = dp.name;
		dafs_enc_msg(&e, &dafs_mt_dirent, &de);
		dafs_enc_msg(&ep, &dafs_mt_dirent_plus, &dp);
	}

	memset(&bd, 0, sizeof(bd));
	dafs_enc_init(&e, descs, sizeof(descs));
	bd.open_id = 7;
	bd.len = 5;
	bd.flags = DAFS_BF_WRITE;
	bd.data = text("hello");
	dafs_enc_msg(&e, &dafs_mt_batch_desc, &bd);
	bd.off = 65536;
	bd.len = 65536;
	bd.flags = 0;
	bd.rkey = 0x77;
	bd.raddr = 0x7f0000200000ull;
	bd.data = text("");
	dafs_enc_msg(&e, &dafs_mt_batch_desc, &bd);
	if (e.err || ep.err) {
		fprintf(stderr, "gen_corpus: element lists do not encode\n");
		exit(1);
	}
	memset(&b, 0, sizeof(b));
	b.batch.n = 2;
	b.batch.descs.p = descs;
	b.batch.descs.len = (uint32_t)e.pos;
	emit("batch-req-2", DAFS_OP_BATCH, 0, 1, &b);

	dafs_enc_init(&e, res, sizeof(res));
	memset(&br, 0, sizeof(br));
	br.count = 5;
	dafs_enc_msg(&e, &dafs_mt_batch_result, &br);
	br.status = EIO;
	br.count = 0;
	dafs_enc_msg(&e, &dafs_mt_batch_result, &br);
	br.status = 0;
	br.count = 3;
	br.data = text("abc");
	dafs_enc_msg(&e, &dafs_mt_batch_result, &br);
	memset(&b, 0, sizeof(b));
	b.batchp.n = 3;
	b.batchp.results.p = res;
	b.batchp.results.len = (uint32_t)e.pos;
	emit("batch-rep-3", DAFS_OP_BATCH, DAFS_HF_REPLY, 0, &b);

	dafs_enc_init(&e, ents, sizeof(ents));
	for (i = 0; i < 3; i++) {
		de.cookie = 100 + (uint64_t)i;
		de.ino = 4242 + (uint64_t)i;
		de.type = 0100000;
		de.name = text(names[i]);
		dafs_enc_msg(&e, &dafs_mt_dirent, &de);
	}
	memset(&b, 0, sizeof(b));
	b.readdirp.eof = 0;
	b.readdirp.entries.p = ents;
	b.readdirp.entries.len = (uint32_t)e.pos;
	emit("readdir-rep-3", DAFS_OP_READDIR, DAFS_HF_REPLY, 0, &b);
	b.readdirp.eof = 1;
	b.readdirp.entries.p = plus;
	b.readdirp.entries.len = (uint32_t)ep.pos;
	emit("readdir-rep-plus-3", DAFS_OP_READDIR, DAFS_HF_REPLY, 0, &b);
}

int main(int argc, char **argv)
{
	char name[64], low[32];
	body_t b;
	uint32_t op;
	int reply;

	if (argc != 2) {
		fprintf(stderr, "usage: gen_corpus DIR\n");
		return 2;
	}
	outdir = argv[1];
	if (mkdir(outdir, 0777) < 0 && errno != EEXIST) {
		perror(outdir);
		return 1;
	}
	for (op = 0; op < DAFS_OP_MAX; op++) {
		const struct dafs_opdesc *d = dafs_op_desc(op);
		uint8_t cb;

		if (!d)
			continue;
		cb = (d->flags & DAFS_OPF_CALLBACK) ? DAFS_HF_CB : 0;
		lower(low, d->name);
		for (reply = 0; reply < 2; reply++) {
			if (fill(op, reply, &b)) {
				fprintf(stderr,
					"gen_corpus: no seed for %s %s\n",
					d->name, reply ? "reply" : "request");
				return 1;
			}
			snprintf(name, sizeof(name), "%s-%s", low,
				 reply ? "rep" : "req");
			emit(name, (uint16_t)op,
			     (uint8_t)(cb | (reply ? DAFS_HF_REPLY : 0)),
			     reply ? DAFS_OK : 1, &b);
		}
	}
	/* error replies: a status and no body */
	memset(&b, 0, sizeof(b));
	emit("lookup-rep-enoent", DAFS_OP_LOOKUP, DAFS_HF_REPLY, ENOENT, &b);
	emit("write-rep-eseq", DAFS_OP_WRITE, DAFS_HF_REPLY, DAFS_ESEQ, &b);
	emit("lock-rep-denied", DAFS_OP_LOCK, DAFS_HF_REPLY, DAFS_EDENIED, &b);
	lists();
	return 0;
}
