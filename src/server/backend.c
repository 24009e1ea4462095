/*
 * backend.c - the export backend: one local directory tree, its file
 * handles, and the file-system operations dafsd performs on it.
 *
 * Confinement rests on three things, all enforced by the kernel:
 *  - names are single components, opened with openat2() relative to a
 *    directory of the export with RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
 *    RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV and O_NOFOLLOW, so neither "..",
 *    a symlink (absolute, relative, looping) nor a mount point leads out;
 *  - handles are only minted for objects reached that way (or by handle),
 *    on the export's own mount, and carry a keyed MAC, so a client cannot
 *    name an object it was never shown;
 *  - every operation runs on an O_PATH fd under the calling thread's
 *    credentials, so the kernel makes every permission decision.
 *
 * Exports do not cross mounts: objects on another mount than the root's
 * (a file system mounted inside the export, a bind mount) give -EXDEV.
 *
 * Handles come in two kinds, chosen per export when it is opened. Kernel
 * handles (version 1) are opened with open_by_handle_at(), which needs
 * CAP_DAC_READ_SEARCH. Without it (dafsd run as an ordinary user) the export
 * uses table handles (version 2): the handle names the inode number and the
 * kernel handle (which embeds the generation, so a reused inode number is
 * told apart), and the LMDB state keeps, per export, each object's parent
 * and name as dafsd last handed it out. Resolving walks those records up to
 * the root, opens the path beneath the root exactly as a lookup would, and
 * checks that it found the same object; anything else is -ESTALE.
 *
 * Where a system call has no form that works on an O_PATH fd (chmod,
 * truncate, open for I/O, xattrs, link), the call goes through
 * /proc/self/fd/N. That magic link is our own fd, so it names exactly the
 * inode we hold and cannot be redirected; the kernel still checks the
 * thread's fsuid against that inode as for any path.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "proto/wire_i.h"
#include "server/backend_i.h"
#include "server/fdcache_i.h"
#include "server/state_i.h"

/*
 * Handle layouts (all of it covered by the MAC), kernel handles:
 *
 *   0      version (FH_KERNEL)
 *   1..2   export id, little-endian
 *   3      kernel handle type (struct file_handle.handle_type)
 *   4..    kernel handle bytes (f_handle), n = len - 12
 *   len-8  SipHash-2-4 of bytes [0, len - 8) under the export's key, LE
 *
 * and table handles:
 *
 *   0      version (FH_TABLE)
 *   1..2   export id, little-endian
 *   3..10  inode number, little-endian
 *   11     kernel handle type
 *   12..   kernel handle bytes, n = len - 20
 *   len-8  the MAC, as above
 *
 * The length is implicit: SipHash mixes the message length into its last
 * word, so truncating or extending a handle breaks the MAC as well.
 */
#define FH_KERNEL 1
#define FH_TABLE 2
#define FH_OFF_EXPORT 1
#define FH_OFF_INO 3   /* table handles */
#define FH_KH_OFF_K 4  /* where the kernel handle starts, kernel handles */
#define FH_KH_OFF_T 12 /* ... table handles; its type is the byte before */
#define FH_MAC_LEN 8

#ifndef MAX_HANDLE_SZ
#define MAX_HANDLE_SZ 128
#endif

/* How a name is resolved: see the comment at the top. */
#define RESOLVE_EXPORT                                                         \
	(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS |       \
	 RESOLVE_NO_XDEV)

#define READDIR_BUF (32 * 1024)
#define PROC_FD_LEN 32

struct dafs_export {
	char *name;
	int root_fd;  /* O_PATH | O_DIRECTORY, for the export's life */
	int mount_fd; /* the root again, O_RDONLY: for open_by_handle_at */
	int mnt_id;   /* the root's mount, as name_to_handle_at reports it */
	uint64_t root_dev, root_ino;
	uint16_t id;
	uint8_t key[DAFS_HKEY_LEN];
	dafs_fh_t root_fh;
	struct dafs_table *tab;	      /* non-NULL: table handles */
	struct fdcache fdc;	      /* resolved handles' descriptors */
	struct dafs_export *tab_next; /* on tab_exports, under tab_lock */
};

/*
 * The exports with table handles. link, remove, rmdir and rename are given
 * only fds, and their effect on names concerns every such export on the
 * same file system: a rename must follow the object in each table that
 * records it (exports may nest and share objects). So they find the tables
 * here, by device. Written at export open and close, read by those calls.
 */
static pthread_rwlock_t tab_lock = PTHREAD_RWLOCK_INITIALIZER;
static struct dafs_export *tab_exports;

/* A struct file_handle with room for any kernel handle. */
union kfh {
	struct file_handle h;
	unsigned char room[sizeof(struct file_handle) + MAX_HANDLE_SZ];
};

static const char *proc_fd(char buf[PROC_FD_LEN], int fd)
{
	snprintf(buf, PROC_FD_LEN, "/proc/self/fd/%d", fd);
	return buf;
}

/* Open one component beneath @dirfd, never following a symlink. */
static int open_beneath(int dirfd, const char *name, int flags, mode_t mode)
{
	struct open_how how = {
		.flags = (uint64_t)(flags | O_NOFOLLOW | O_CLOEXEC),
		.mode = (flags & O_CREAT) ? mode : 0,
		.resolve = RESOLVE_EXPORT,
	};
	int tries = 0;
	long fd;

	/*
	 * EAGAIN: a rename elsewhere raced with the walk and the kernel could
	 * not prove the result stayed beneath; a fresh walk settles it.
	 */
	do
		fd = syscall(SYS_openat2, dirfd, name, &how, sizeof(how));
	while (fd < 0 && errno == EAGAIN && ++tries < 16);
	return fd < 0 ? -errno : (int)fd;
}

/* One component, not "." or ".." (lookup deals with those itself). */
static int check_name(const char *name)
{
	size_t len;

	if (!name)
		return -EINVAL;
	len = strnlen(name, DAFS_NAME_MAX + 1);
	if (len == 0 || len > DAFS_NAME_MAX || memchr(name, '/', len))
		return -EINVAL;
	if (!strcmp(name, ".") || !strcmp(name, ".."))
		return -EINVAL;
	return 0;
}

static void put_le16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static void put_le64(uint8_t *p, uint64_t v)
{
	int i;

	for (i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

/*
 * Attributes from statx. The change attribute is ctime in nanoseconds plus
 * the size: every data or metadata change moves ctime, and the size term
 * still tells two appends apart on a file system whose clock did not tick
 * in between (on Linux >= 6.13 multigrain timestamps make ctime itself
 * fine-grained once observed). Only a shrink by exactly the ctime advance
 * in nanoseconds would cancel out. It is an equality token, not an order.
 */
static void fill_attr(const struct statx *sx, dafs_attr_t *a)
{
	uint64_t ctime_ns = (uint64_t)sx->stx_ctime.tv_sec * 1000000000u +
			    sx->stx_ctime.tv_nsec;

	memset(a, 0, sizeof(*a));
	a->ino = sx->stx_ino;
	a->size = sx->stx_size;
	a->blocks = sx->stx_blocks;
	a->change = ctime_ns + sx->stx_size;
	a->rdev = makedev(sx->stx_rdev_major, sx->stx_rdev_minor);
	a->mode = sx->stx_mode;
	a->nlink = sx->stx_nlink;
	a->uid = sx->stx_uid;
	a->gid = sx->stx_gid;
	a->blksize = sx->stx_blksize;
	a->atime.sec = sx->stx_atime.tv_sec;
	a->atime.nsec = sx->stx_atime.tv_nsec;
	a->mtime.sec = sx->stx_mtime.tv_sec;
	a->mtime.nsec = sx->stx_mtime.tv_nsec;
	a->ctime.sec = sx->stx_ctime.tv_sec;
	a->ctime.nsec = sx->stx_ctime.tv_nsec;
}

static int stat_fd(int fd, struct statx *sx)
{
	if (statx(fd, "", AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW,
		  STATX_BASIC_STATS, sx) < 0)
		return -errno;
	return 0;
}

int dafs_be_getattr(int fd, dafs_attr_t *attr)
{
	struct statx sx;
	int err = stat_fd(fd, &sx);

	if (err)
		return err;
	if (attr)
		fill_attr(&sx, attr);
	return 0;
}

int dafs_be_access(int fd, uint32_t mask)
{
	if (mask & ~(uint32_t)(R_OK | W_OK | X_OK))
		return -EINVAL;
	/* the system call itself, as openat2: a C library without it (or
	 * whose faccessat2 a filter refuses) emulates faccessat and refuses
	 * AT_EMPTY_PATH; and an emulation by path would check the real or
	 * effective ids, which are dafsd's, not the fsuid of the request */
	if (syscall(SYS_faccessat2, fd, "", (int)mask,
		    AT_EACCESS | AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0)
		return -errno;
	return 0;
}

static uint64_t get_le64(const uint8_t *p)
{
	uint64_t v = 0;
	int i;

	for (i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

/* The kernel's handle for @fd, which must be on the export's mount. */
static int kernel_handle(struct dafs_export *ex, int fd, union kfh *k)
{
	int mnt_id;

	k->h.handle_bytes = MAX_HANDLE_SZ;
	if (name_to_handle_at(fd, "", &k->h, &mnt_id, AT_EMPTY_PATH) < 0)
		return errno == EOVERFLOW ? -EOPNOTSUPP : -errno;
	if (mnt_id != ex->mnt_id)
		return -EXDEV;
	if (k->h.handle_type < 0 || k->h.handle_type > 0xff)
		return -EOPNOTSUPP;
	return 0;
}

/*
 * Build our handle around the kernel's handle for @fd; @ino (its inode
 * number) goes into table handles.
 */
static int make_fh(struct dafs_export *ex, int fd, uint64_t ino, dafs_fh_t *fh)
{
	size_t off = ex->tab ? FH_KH_OFF_T : FH_KH_OFF_K, n;
	union kfh k;
	uint64_t mac;
	int err;

	err = kernel_handle(ex, fd, &k);
	if (err)
		return err;
	n = k.h.handle_bytes;
	if (n > DAFS_FH_MAX - off - FH_MAC_LEN)
		return -EOPNOTSUPP;

	memset(fh, 0, sizeof(*fh));
	fh->data[0] = ex->tab ? FH_TABLE : FH_KERNEL;
	put_le16(fh->data + FH_OFF_EXPORT, ex->id);
	if (ex->tab)
		put_le64(fh->data + FH_OFF_INO, ino);
	fh->data[off - 1] = (uint8_t)k.h.handle_type;
	memcpy(fh->data + off, k.h.f_handle, n);
	mac = dafs_siphash(ex->key, fh->data, off + n);
	put_le64(fh->data + off + n, mac);
	fh->len = (uint16_t)(off + n + FH_MAC_LEN);
	return 0;
}

/*
 * Handle and attributes of @fd, either may be NULL; *@ino (if not NULL)
 * receives its inode number where it was needed (a table handle or the
 * attributes), else 0.
 */
static int describe(struct dafs_export *ex, int fd, dafs_fh_t *fh,
		    dafs_attr_t *attr, uint64_t *ino)
{
	uint64_t num = 0;
	struct statx sx;
	int err;

	/* One statx serves both: the attributes and the table's number. */
	if (attr || (fh && ex->tab)) {
		err = stat_fd(fd, &sx);
		if (err)
			return err;
		if (attr)
			fill_attr(&sx, attr);
		num = sx.stx_ino;
	}
	if (ino)
		*ino = num;
	return fh ? make_fh(ex, fd, num, fh) : 0;
}

int dafs_be_handle(struct dafs_export *ex, int fd, dafs_fh_t *fh)
{
	return describe(ex, fd, fh, NULL, NULL);
}

/* Device and inode number of @name in @dirfd ("" for @dirfd itself). */
static int name_id(int dirfd, const char *name, uint64_t *dev, uint64_t *ino)
{
	struct statx sx;

	if (statx(dirfd, name,
		  AT_SYMLINK_NOFOLLOW | (*name ? 0 : AT_EMPTY_PATH), STATX_INO,
		  &sx) < 0)
		return -errno;
	if (dev)
		*dev = makedev(sx.stx_dev_major, sx.stx_dev_minor);
	*ino = sx.stx_ino;
	return 0;
}

/*
 * In table mode: @ino, just handed out, is @name in @dirfd. A failure here
 * fails the call, since the handle it made could not be resolved.
 */
static int record(struct dafs_export *ex, int dirfd, const char *name,
		  uint64_t ino)
{
	struct dafs_table_rec rec = {.ino = ino, .name = name};
	int err;

	if (!ex->tab)
		return 0;
	err = name_id(dirfd, "", NULL, &rec.parent);
	if (err)
		return err;
	return dafs_state_table_put(ex->tab, &rec, 1, 0);
}

/* Whether any export uses table handles (so names must be followed). */
static int tables_in_use(void)
{
	int r;

	pthread_rwlock_rdlock(&tab_lock);
	r = tab_exports != NULL;
	pthread_rwlock_unlock(&tab_lock);
	return r;
}

/*
 * After a link, rename or remove on device @dev: put (@del 0) or delete
 * (@del 1) records in the table of every table export on that device.
 * Errors are dropped: the operation itself succeeded, and a record left
 * behind or missing only makes handles of that object stale (-ESTALE,
 * never another object: resolution checks identity).
 */
static void tables_update(uint64_t dev, const struct dafs_table_rec *recs,
			  size_t n, int del)
{
	struct dafs_export *ex;
	size_t i;

	pthread_rwlock_rdlock(&tab_lock);
	for (ex = tab_exports; ex; ex = ex->tab_next) {
		if (ex->root_dev != dev)
			continue;
		if (!del) {
			(void)dafs_state_table_put(ex->tab, recs, n,
						   DAFS_TABLE_EXISTING);
			continue;
		}
		for (i = 0; i < n; i++)
			(void)dafs_state_table_del(ex->tab, &recs[i]);
	}
	pthread_rwlock_unlock(&tab_lock);
}

/*
 * Open @path (components separated by '/', possibly longer than PATH_MAX)
 * beneath @dirfd as a lookup would, a chunk of at most PATH_MAX - 1 bytes
 * at a time, each from the directory the last one reached.
 */
static int open_path(int dirfd, char *path)
{
	int fd, dfd = dirfd;
	char *p = path, *slash;

	while (strnlen(p, PATH_MAX) == PATH_MAX) {
		/* Names are at most 255 bytes: there is a '/' in there. */
		slash = memrchr(p, '/', PATH_MAX);
		if (!slash || slash == p) {
			fd = -ENAMETOOLONG;
			goto out;
		}
		*slash = '\0';
		fd = open_beneath(dfd, p, O_PATH | O_DIRECTORY, 0);
		*slash = '/';
		if (fd < 0)
			goto out;
		if (dfd != dirfd)
			close(dfd);
		dfd = fd;
		p = slash + 1;
	}
	fd = open_beneath(dfd, p, O_PATH, 0);
out:
	if (dfd != dirfd)
		close(dfd);
	return fd;
}

/* Whether @fd is the object a table handle names: inode number and kernel
 * handle (hence generation) both the same. */
static int same_object(struct dafs_export *ex, int fd, uint64_t ino, int type,
		       const uint8_t *kh, size_t n)
{
	uint64_t fino = 0;
	union kfh k;
	int err;

	err = name_id(fd, "", NULL, &fino);
	if (err)
		return err;
	err = kernel_handle(ex, fd, &k);
	if (err)
		return err == -EXDEV ? -ESTALE : err;
	if (fino != ino || k.h.handle_type != type || k.h.handle_bytes != n ||
	    memcmp(k.h.f_handle, kh, n))
		return -ESTALE;
	return 0;
}

/* Resolve a table handle (its MAC checked) through the export's table. */
static int resolve_table(struct dafs_export *ex, const dafs_fh_t *fh,
			 uint64_t ino, int type, const uint8_t *kh, size_t n)
{
	char *path;
	int fd, err;

	if (ino == ex->root_ino) {
		/* The root has no record; its handle is fixed. */
		if (fh->len != ex->root_fh.len ||
		    memcmp(fh->data, ex->root_fh.data, fh->len))
			return -ESTALE;
		fd = fcntl(ex->root_fd, F_DUPFD_CLOEXEC, 0);
		return fd < 0 ? -errno : fd;
	}
	err = dafs_state_table_path(ex->tab, ino, ex->root_ino, &path);
	if (err == -ENOENT || err == -ELOOP)
		return -ESTALE;
	if (err < 0)
		return err;
	fd = open_path(ex->root_fd, path);
	free(path);
	/*
	 * The recorded path no longer leads anywhere (removed, renamed by a
	 * local user, a component replaced by a symlink or a mount): stale.
	 * Other errors (EACCES on a directory on the way) pass through.
	 */
	if (fd == -ENOENT || fd == -ENOTDIR || fd == -ELOOP || fd == -EXDEV ||
	    fd == -ENAMETOOLONG)
		return -ESTALE;
	if (fd < 0)
		return fd;
	err = same_object(ex, fd, ino, type, kh, n);
	if (err) {
		close(fd);
		return err;
	}
	return fd;
}

int dafs_be_resolve(struct dafs_export *ex, const dafs_fh_t *fh)
{
	uint8_t want[FH_MAC_LEN], diff = 0;
	size_t off, n, i;
	union kfh k;
	int fd;

	if (fh->len > DAFS_FH_MAX)
		return -DAFS_EBADHANDLE;
	if (fh->len > 0 && fh->data[0] == FH_KERNEL)
		off = FH_KH_OFF_K;
	else if (fh->len > 0 && fh->data[0] == FH_TABLE)
		off = FH_KH_OFF_T;
	else
		return -DAFS_EBADHANDLE;
	if (fh->len <= off + FH_MAC_LEN)
		return -DAFS_EBADHANDLE;
	if ((fh->data[FH_OFF_EXPORT] | fh->data[FH_OFF_EXPORT + 1] << 8) !=
	    ex->id)
		return -DAFS_EBADHANDLE;
	n = fh->len - off - FH_MAC_LEN;
	put_le64(want, dafs_siphash(ex->key, fh->data, off + n));
	/* Constant time, so the MAC cannot be learnt a byte at a time. */
	for (i = 0; i < FH_MAC_LEN; i++)
		diff |= want[i] ^ fh->data[off + n + i];
	if (diff)
		return -DAFS_EBADHANDLE;

	if (ex->tab) {
		/*
		 * A kernel handle we issued while we had the capability:
		 * genuine, but there is nothing to resolve it with now.
		 */
		if (fh->data[0] != FH_TABLE)
			return -ESTALE;
		return resolve_table(ex, fh, get_le64(fh->data + FH_OFF_INO),
				     fh->data[off - 1], fh->data + off, n);
	}

	/*
	 * Both kinds carry the kernel handle, so table handles issued by an
	 * unprivileged run still resolve now. Decoding against the root's fd
	 * pins the result to the export's mount. The kernel answers ESTALE
	 * for an object that is gone; other errors pass through.
	 */
	k.h.handle_bytes = (unsigned int)n;
	k.h.handle_type = fh->data[off - 1];
	memcpy(k.h.f_handle, fh->data + off, n);
	fd = open_by_handle_at(ex->mount_fd, &k.h,
			       O_PATH | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	return fd;
}

/*
 * The cache is keyed by the whole handle, MAC included: only a handle
 * whose MAC checked out was ever added, and a forged one never matches
 * byte for byte, so a hit needs no second check. A kept descriptor still
 * names the object it was opened for even after a rename; only a removal
 * changes the answer, which nlink tells.
 */
int dafs_be_resolve_ref(struct dafs_export *ex, const dafs_fh_t *fh,
			struct fdc_entry **ref, dafs_attr_t *attr,
			bool *have_attr)
{
	struct statx sx;
	int fd;

	*ref = NULL;
	if (have_attr)
		*have_attr = false;
	/*
	 * Not for table handles: resolving one walks its recorded path and
	 * refuses an object no longer found there, such as a directory a
	 * local user moved out of the export; a kept descriptor would still
	 * reach it, and through it, names outside the export.
	 */
	if (ex->tab)
		return dafs_be_resolve(ex, fh);
	if (fh->len > DAFS_FH_MAX)
		return -DAFS_EBADHANDLE;
	fd = fdc_get(&ex->fdc, fh->data, fh->len, ref);
	if (fd >= 0) {
		/* all the attributes only if wanted: on a network or FUSE
		 * file system more may cost a revalidation */
		if (!statx(fd, "", AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW,
			   attr ? STATX_BASIC_STATS : STATX_NLINK, &sx) &&
		    sx.stx_nlink > 0) {
			if (attr && have_attr) {
				fill_attr(&sx, attr);
				*have_attr = true;
			}
			return fd;
		}
		/* removed since: ask the kernel again, as without the
		 * cache (another process may hold it open; that is its
		 * answer, not ours) */
		fdc_drop(&ex->fdc, *ref);
		fdc_put(&ex->fdc, *ref, fd);
		*ref = NULL;
	}
	fd = dafs_be_resolve(ex, fh);
	if (fd == -EMFILE || fd == -ENFILE) {
		/* out of descriptors: the kept ones make room first */
		fdc_flush(&ex->fdc);
		fd = dafs_be_resolve(ex, fh);
	}
	if (fd < 0)
		return fd;
	return fdc_add(&ex->fdc, fh->data, fh->len, fd, ref);
}

void dafs_be_unref(struct dafs_export *ex, struct fdc_entry *ref, int fd)
{
	fdc_put(&ex->fdc, ref, fd);
}

void dafs_be_tick(struct dafs_export *ex)
{
	fdc_sweep(&ex->fdc);
}

int dafs_export_open(struct dafs_state *st, const char *name, const char *path,
		     uint16_t id, const uint8_t key[DAFS_HKEY_LEN],
		     struct dafs_export **out)
{
	char path_buf[PROC_FD_LEN];
	struct dafs_export *ex;
	struct statx sx;
	union kfh k;
	int fd, err;

	*out = NULL;
	ex = calloc(1, sizeof(*ex));
	if (!ex)
		return -ENOMEM;
	ex->name = strdup(name);
	if (!ex->name) {
		err = -ENOMEM;
		goto fail_free;
	}
	ex->id = id;
	memcpy(ex->key, key, DAFS_HKEY_LEN);
	err = fdc_init(&ex->fdc, DAFS_FDCACHE_MAX, DAFS_FDCACHE_AGE_MS);
	if (err)
		goto fail_name;

	ex->root_fd = open(path, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (ex->root_fd < 0) {
		err = -errno;
		goto fail_name;
	}
	/*
	 * open_by_handle_at() refuses an O_PATH mount fd (EBADF), so the
	 * same directory is held open once more for reading, through the
	 * first fd so both are certainly the same inode.
	 */
	ex->mount_fd = open(proc_fd(path_buf, ex->root_fd),
			    O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (ex->mount_fd < 0) {
		err = -errno;
		goto fail_fd;
	}
	err = stat_fd(ex->root_fd, &sx);
	if (err)
		goto fail_mount;
	ex->root_dev = makedev(sx.stx_dev_major, sx.stx_dev_minor);
	ex->root_ino = sx.stx_ino;

	/* Learn the mount id, and whether the file system has handles. */
	k.h.handle_bytes = MAX_HANDLE_SZ;
	if (name_to_handle_at(ex->root_fd, "", &k.h, &ex->mnt_id,
			      AT_EMPTY_PATH) < 0) {
		err = errno == EOVERFLOW ? -EOPNOTSUPP : -errno;
		goto fail_mount;
	}
	/*
	 * Which handles: try the root's own kernel handle. Without
	 * CAP_DAC_READ_SEARCH that is EPERM whatever the handle, and the
	 * export falls back to the handle table. Any other failure means the
	 * file system cannot decode handles at all.
	 */
	fd = open_by_handle_at(ex->mount_fd, &k.h, O_PATH | O_CLOEXEC);
	if (fd >= 0) {
		close(fd);
	} else if (errno != EPERM) {
		err = errno == EOVERFLOW ? -EOPNOTSUPP : -errno;
		goto fail_mount;
	} else if (!st) {
		err = -EPERM;
		goto fail_mount;
	} else {
		err = dafs_state_table_open(st, id, &ex->tab);
		if (err)
			goto fail_mount;
	}
	err = make_fh(ex, ex->root_fd, ex->root_ino, &ex->root_fh);
	if (err)
		goto fail_tab;
	if (ex->tab) {
		pthread_rwlock_wrlock(&tab_lock);
		ex->tab_next = tab_exports;
		tab_exports = ex;
		pthread_rwlock_unlock(&tab_lock);
	}

	/*
	 * The client applies its own umask, so modes must arrive at the
	 * file system as given; creating with the process umask and fixing up
	 * with chmod afterwards would override default ACLs and the setgid
	 * bit a directory passes on. umask is process-wide (dafsd's own files
	 * are created with explicit modes), hence here, once, before handler
	 * threads exist.
	 */
	umask(0);
	*out = ex;
	return 0;

fail_tab:
	dafs_state_table_close(ex->tab);
fail_mount:
	close(ex->mount_fd);
fail_fd:
	close(ex->root_fd);
fail_name:
	fdc_fini(&ex->fdc);
	free(ex->name);
fail_free:
	free(ex);
	return err;
}

void dafs_export_close(struct dafs_export *ex)
{
	struct dafs_export **pp;

	if (!ex)
		return;
	if (ex->tab) {
		pthread_rwlock_wrlock(&tab_lock);
		for (pp = &tab_exports; *pp; pp = &(*pp)->tab_next) {
			if (*pp == ex) {
				*pp = ex->tab_next;
				break;
			}
		}
		pthread_rwlock_unlock(&tab_lock);
		dafs_state_table_close(ex->tab);
	}
	fdc_fini(&ex->fdc);
	close(ex->mount_fd);
	close(ex->root_fd);
	/* The key is the handle secret: do not leave it in freed memory. */
	explicit_bzero(ex->key, sizeof(ex->key));
	free(ex->name);
	free(ex);
}

const char *dafs_export_name(const struct dafs_export *ex)
{
	return ex->name;
}

int dafs_export_table(const struct dafs_export *ex)
{
	return ex->tab != NULL;
}

void dafs_export_root(const struct dafs_export *ex, dafs_fh_t *fh)
{
	*fh = ex->root_fh;
}

static int is_root(struct dafs_export *ex, int fd)
{
	struct statx sx;
	int err = stat_fd(fd, &sx);

	if (err)
		return err;
	return makedev(sx.stx_dev_major, sx.stx_dev_minor) == ex->root_dev &&
	       sx.stx_ino == ex->root_ino;
}

static int lookup_fd(struct dafs_export *ex, int dirfd, const char *name)
{
	struct open_how how = {
		.flags = O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC,
		.resolve = RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS |
			   RESOLVE_NO_XDEV,
	};
	long fd;
	int r;

	if (strcmp(name, ".."))
		return open_beneath(dirfd, name, O_PATH, 0);

	/*
	 * ".." is by definition not beneath dirfd, so RESOLVE_BENEATH cannot
	 * apply. At the root it is the root (reopened through ".", so the
	 * kernel still checks search permission); below the root the parent
	 * is inside the export, and RESOLVE_NO_XDEV keeps the walk on the
	 * export's mount.
	 */
	r = is_root(ex, dirfd);
	if (r < 0)
		return r;
	if (r)
		return open_beneath(ex->root_fd, ".", O_PATH | O_DIRECTORY, 0);
	fd = syscall(SYS_openat2, dirfd, "..", &how, sizeof(how));
	return fd < 0 ? -errno : (int)fd;
}

int dafs_be_lookup(struct dafs_export *ex, int dirfd, const char *name,
		   dafs_fh_t *fh, dafs_attr_t *attr)
{
	uint64_t ino;
	int fd, err;

	if (!name)
		return -EINVAL;
	if (strcmp(name, ".") && strcmp(name, "..")) {
		err = check_name(name);
		if (err)
			return err;
	}
	fd = lookup_fd(ex, dirfd, name);
	if (fd < 0)
		return fd;
	err = describe(ex, fd, fh, attr, &ino);
	close(fd);
	/*
	 * "." and ".." are not names the object can be found by again; the
	 * directories they reach were recorded when they were handed out.
	 */
	if (!err && fh && strcmp(name, ".") && strcmp(name, ".."))
		err = record(ex, dirfd, name, ino);
	return err;
}

/* One utimensat() time: the given value, now, or left alone. */
static void set_time(struct timespec *ts, const dafs_time_t *t, int given,
		     int now)
{
	ts->tv_sec = 0;
	if (given) {
		ts->tv_sec = t->sec;
		ts->tv_nsec = t->nsec;
	} else {
		ts->tv_nsec = now ? UTIME_NOW : UTIME_OMIT;
	}
}

int dafs_be_setattr(int fd, const dafs_setattr_t *sa, dafs_attr_t *attr)
{
	const uint32_t known = DAFS_SET_MODE | DAFS_SET_UID | DAFS_SET_GID |
			       DAFS_SET_SIZE | DAFS_SET_ATIME | DAFS_SET_MTIME |
			       DAFS_SET_ATIME_NOW | DAFS_SET_MTIME_NOW;
	char path[PROC_FD_LEN];
	struct timespec ts[2];
	struct statx sx;
	int err;

	if (sa->mask & ~known)
		return -EINVAL;
	if (((sa->mask & DAFS_SET_ATIME) && (sa->mask & DAFS_SET_ATIME_NOW)) ||
	    ((sa->mask & DAFS_SET_MTIME) && (sa->mask & DAFS_SET_MTIME_NOW)))
		return -EINVAL;
	if (((sa->mask & DAFS_SET_MODE) && (sa->mode & ~07777u)) ||
	    ((sa->mask & DAFS_SET_ATIME) && sa->atime.nsec >= 1000000000u) ||
	    ((sa->mask & DAFS_SET_MTIME) && sa->mtime.nsec >= 1000000000u))
		return -EINVAL;
	err = stat_fd(fd, &sx);
	if (err)
		return err;
	proc_fd(path, fd);

	/*
	 * Size first, as open(O_TRUNC) would: truncate(2) wants write
	 * permission for the thread's fsuid (-EACCES) and refuses anything
	 * but a regular file (-EISDIR, -EINVAL).
	 */
	if (sa->mask & DAFS_SET_SIZE) {
		if (sa->size > INT64_MAX)
			return -EFBIG;
		if (S_ISLNK(sx.stx_mode))
			return -EINVAL;
		if (truncate(path, (off_t)sa->size) < 0)
			return -errno;
	}
	if (sa->mask & DAFS_SET_MODE) {
		/* Linux has no symlink modes: chmod would reach the target. */
		if (S_ISLNK(sx.stx_mode))
			return -EOPNOTSUPP;
		if (chmod(path, sa->mode) < 0)
			return -errno;
	}
	if (sa->mask & (DAFS_SET_UID | DAFS_SET_GID)) {
		uid_t uid = sa->mask & DAFS_SET_UID ? sa->uid : (uid_t)-1;
		gid_t gid = sa->mask & DAFS_SET_GID ? sa->gid : (gid_t)-1;

		/* On the fd itself: a symlink's owner, not its target's. */
		if (fchownat(fd, "", uid, gid, AT_EMPTY_PATH) < 0)
			return -errno;
	}
	if (sa->mask & (DAFS_SET_ATIME | DAFS_SET_MTIME | DAFS_SET_ATIME_NOW |
			DAFS_SET_MTIME_NOW)) {
		set_time(&ts[0], &sa->atime, sa->mask & DAFS_SET_ATIME,
			 sa->mask & DAFS_SET_ATIME_NOW);
		set_time(&ts[1], &sa->mtime, sa->mask & DAFS_SET_MTIME,
			 sa->mask & DAFS_SET_MTIME_NOW);
		/* AT_EMPTY_PATH works on O_PATH fds, symlinks included. */
		if (utimensat(fd, "", ts, AT_EMPTY_PATH) < 0)
			return -errno;
	}
	return attr ? dafs_be_getattr(fd, attr) : 0;
}

static int map_oflags(uint32_t o, int *flags)
{
	int f;

	if (o & ~(uint32_t)DAFS_O_ALL)
		return -EINVAL;
	switch (o & DAFS_O_ACCMODE) {
	case DAFS_O_RDONLY:
		f = O_RDONLY;
		break;
	case DAFS_O_WRONLY:
		f = O_WRONLY;
		break;
	case DAFS_O_RDWR:
		f = O_RDWR;
		break;
	default:
		return -EINVAL;
	}
	if (o & DAFS_O_APPEND)
		f |= O_APPEND;
	if (o & DAFS_O_TRUNC)
		f |= O_TRUNC;
	if (o & DAFS_O_SYNC)
		f |= O_SYNC;
	if (o & DAFS_O_DSYNC)
		f |= O_DSYNC;
	if (o & DAFS_O_DIRECT)
		f |= O_DIRECT;
	*flags = f;
	return 0;
}

/*
 * Open the object behind O_PATH @fd for I/O with open(2) @flags. Only
 * regular files, and directories for reading if @dir_ok, are opened: a FIFO
 * would block a handler thread, and device nodes are the client's to
 * interpret, as over NFS (opening them here would reach the server's
 * devices); -EINVAL for those.
 */
static int reopen(int fd, int flags, int dir_ok)
{
	char path[PROC_FD_LEN];
	struct statx sx;
	int err, nfd;

	err = stat_fd(fd, &sx);
	if (err)
		return err;
	if (S_ISLNK(sx.stx_mode))
		return -ELOOP;
	if (S_ISDIR(sx.stx_mode)) {
		if (!dir_ok || (flags & O_ACCMODE) != O_RDONLY ||
		    (flags & O_TRUNC))
			return -EISDIR;
		flags |= O_DIRECTORY;
	} else if (!S_ISREG(sx.stx_mode)) {
		return -EINVAL;
	}
	/*
	 * No O_NOFOLLOW: the magic link itself must be followed. It leads to
	 * exactly the inode checked above, never further.
	 */
	nfd = open(proc_fd(path, fd), flags | O_CLOEXEC);
	return nfd < 0 ? -errno : nfd;
}

int dafs_be_open(int fd, uint32_t oflags, dafs_attr_t *attr)
{
	int flags, nfd, err;

	err = map_oflags(oflags & ~(uint32_t)DAFS_O_EXCL, &flags);
	if (err)
		return err;
	nfd = reopen(fd, flags, 1);
	if (nfd < 0)
		return nfd;
	if (attr) {
		err = dafs_be_getattr(nfd, attr);
		if (err) {
			close(nfd);
			return err;
		}
	}
	return nfd;
}

/* Whether @name in @dirfd is still the file of @fd. */
static int still_at(int dirfd, const char *name, int fd)
{
	struct stat a, b;

	return !fstatat(dirfd, name, &a, AT_SYMLINK_NOFOLLOW) &&
	       !fstat(fd, &b) && a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

int dafs_be_create(struct dafs_export *ex, int dirfd, const char *name,
		   uint32_t oflags, uint32_t mode, dafs_fh_t *fh,
		   dafs_attr_t *attr)
{
	return dafs_be_create_hook(ex, dirfd, name, oflags, mode, NULL, NULL,
				   fh, attr);
}

int dafs_be_create_hook(struct dafs_export *ex, int dirfd, const char *name,
			uint32_t oflags, uint32_t mode,
			int (*existing)(void *arg, int pfd), void *arg,
			dafs_fh_t *fh, dafs_attr_t *attr)
{
	int flags, fd = -EEXIST, pfd, tries, err;
	uint64_t ino;

	err = check_name(name);
	if (err)
		return err;
	err = map_oflags(oflags & ~(uint32_t)DAFS_O_EXCL, &flags);
	if (err)
		return err;
	if ((mode & S_IFMT) && (mode & S_IFMT) != S_IFREG)
		return -EINVAL;
	mode &= 07777;

	/*
	 * Always try an exclusive create first; only if the name exists, and
	 * the caller did not ask for exclusivity, open what is there - through
	 * an O_PATH fd and reopen(), so an existing FIFO, device or symlink
	 * (-ELOOP) is refused exactly as dafs_be_open() refuses it. A name
	 * removed between the two steps is created on the next round.
	 */
	for (tries = 0; tries < 8; tries++) {
		fd = open_beneath(dirfd, name, flags | O_CREAT | O_EXCL, mode);
		if (fd != -EEXIST || (oflags & DAFS_O_EXCL))
			break;
		pfd = open_beneath(dirfd, name, O_PATH, 0);
		if (pfd == -ENOENT)
			continue;
		if (pfd < 0) {
			fd = pfd;
			break;
		}
		err = existing ? existing(arg, pfd) : 0;
		if (!err && existing && !still_at(dirfd, name, pfd)) {
			/* renamed or removed while the hook waited (up to a
			 * lease): what the name holds now is looked at anew */
			close(pfd);
			continue;
		}
		fd = err ? err : reopen(pfd, flags, 0);
		close(pfd);
		break;
	}
	if (fd < 0)
		return fd;

	err = describe(ex, fd, fh, attr, &ino);
	if (!err && fh)
		err = record(ex, dirfd, name, ino);
	if (err) {
		close(fd);
		return err;
	}
	return fd;
}

/* After creating @name in @dirfd: its handle and attributes. */
static int describe_name(struct dafs_export *ex, int dirfd, const char *name,
			 dafs_fh_t *fh, dafs_attr_t *attr)
{
	uint64_t ino;
	int fd, err;

	if (!fh && !attr)
		return 0;
	fd = open_beneath(dirfd, name, O_PATH, 0);
	if (fd < 0)
		return fd;
	err = describe(ex, fd, fh, attr, &ino);
	close(fd);
	if (!err && fh)
		err = record(ex, dirfd, name, ino);
	return err;
}

int dafs_be_mkdir(struct dafs_export *ex, int dirfd, const char *name,
		  uint32_t mode, dafs_fh_t *fh, dafs_attr_t *attr)
{
	int err = check_name(name);

	if (err)
		return err;
	if ((mode & S_IFMT) && (mode & S_IFMT) != S_IFDIR)
		return -EINVAL;
	if (mkdirat(dirfd, name, mode & 07777) < 0)
		return -errno;
	return describe_name(ex, dirfd, name, fh, attr);
}

int dafs_be_mknod(struct dafs_export *ex, int dirfd, const char *name,
		  uint32_t mode, uint64_t rdev, dafs_fh_t *fh,
		  dafs_attr_t *attr)
{
	int err = check_name(name);
	dev_t dev = 0;

	if (err)
		return err;
	switch (mode & S_IFMT) {
	case S_IFCHR:
	case S_IFBLK:
		/* Creating them needs CAP_MKNOD, which a non-zero fsuid
		 * drops: the kernel decides. */
		dev = (dev_t)rdev;
		break;
	case S_IFIFO:
	case S_IFSOCK:
	case S_IFREG:
		break;
	default:
		return -EINVAL;
	}
	if (mknodat(dirfd, name, mode & (S_IFMT | 07777), dev) < 0)
		return -errno;
	return describe_name(ex, dirfd, name, fh, attr);
}

int dafs_be_symlink(struct dafs_export *ex, int dirfd, const char *name,
		    const char *target, dafs_fh_t *fh, dafs_attr_t *attr)
{
	int err = check_name(name);

	if (err)
		return err;
	if (!target || !*target)
		return -EINVAL;
	if (strnlen(target, DAFS_PATH_MAX + 1) > DAFS_PATH_MAX)
		return -ENAMETOOLONG;
	/* The target is only ever stored, never resolved by the server. */
	if (symlinkat(target, dirfd, name) < 0)
		return -errno;
	return describe_name(ex, dirfd, name, fh, attr);
}

int dafs_be_readlink(int fd, char *buf, size_t size)
{
	ssize_t n;

	if (size == 0)
		return -ERANGE;
	n = readlinkat(fd, "", buf, size);
	if (n < 0) {
		struct statx sx;

		/* An empty path on anything but a symlink says ENOENT. */
		if (errno == ENOENT && !stat_fd(fd, &sx) &&
		    !S_ISLNK(sx.stx_mode))
			return -EINVAL;
		return -errno;
	}
	/* readlink truncates silently; a full buffer leaves no room for NUL. */
	if ((size_t)n >= size)
		return -ERANGE;
	buf[n] = '\0';
	return (int)n;
}

int dafs_be_link(int fd, int dirfd, const char *name, dafs_attr_t *attr)
{
	struct dafs_table_rec rec = {.name = name};
	char path[PROC_FD_LEN];
	int err = check_name(name), track;
	uint64_t dev;

	if (err)
		return err;
	track = tables_in_use() && !name_id(fd, "", NULL, &rec.ino) &&
		!name_id(dirfd, "", &dev, &rec.parent);
	/*
	 * linkat(fd, "", AT_EMPTY_PATH) needs CAP_DAC_READ_SEARCH, which a
	 * switched thread has dropped; following our own magic link is the
	 * unprivileged way to link an fd, and it links a symlink itself.
	 */
	if (linkat(AT_FDCWD, proc_fd(path, fd), dirfd, name,
		   AT_SYMLINK_FOLLOW) < 0)
		return -errno;
	/*
	 * The new name becomes the recorded one: "write a temporary, link it
	 * into place, remove the temporary" then keeps handles valid.
	 */
	if (track)
		tables_update(dev, &rec, 1, 0);
	return attr ? dafs_be_getattr(fd, attr) : 0;
}

/* remove and rmdir: the name goes, and with it its record, if it is that
 * object's (a file with other links then goes stale until looked up). */
static int unlink_name(int dirfd, const char *name, int flags)
{
	struct dafs_table_rec rec = {.name = name};
	int err = check_name(name), track;
	uint64_t dev;

	if (err)
		return err;
	track = tables_in_use() && !name_id(dirfd, "", &dev, &rec.parent) &&
		!name_id(dirfd, name, NULL, &rec.ino);
	if (unlinkat(dirfd, name, flags) < 0)
		/* POSIX allows either for a non-empty directory; say one. */
		return errno == EEXIST ? -ENOTEMPTY : -errno;
	if (track)
		tables_update(dev, &rec, 1, 1);
	return 0;
}

int dafs_be_remove(int dirfd, const char *name)
{
	return unlink_name(dirfd, name, 0);
}

int dafs_be_rmdir(int dirfd, const char *name)
{
	return unlink_name(dirfd, name, AT_REMOVEDIR);
}

int dafs_be_rename(int sdirfd, const char *sname, int ddirfd, const char *dname,
		   uint32_t flags)
{
	/* [0]: the object moved to dname; [1]: the one at dname before */
	struct dafs_table_rec rec[2] = {{.name = dname}, {.name = dname}};
	uint64_t dev, sdir;
	unsigned int rf = 0;
	int err, track, had_target = 0;

	err = check_name(sname);
	if (!err)
		err = check_name(dname);
	if (err)
		return err;
	if (flags & ~(DAFS_RENAME_NOREPLACE | DAFS_RENAME_EXCHANGE))
		return -EINVAL;
	if (flags & DAFS_RENAME_NOREPLACE)
		rf |= RENAME_NOREPLACE;
	if (flags & DAFS_RENAME_EXCHANGE)
		rf |= RENAME_EXCHANGE;
	/* The numbers before, for the tables after. */
	track = tables_in_use() && !name_id(sdirfd, "", &dev, &sdir) &&
		!name_id(ddirfd, "", NULL, &rec[0].parent) &&
		!name_id(sdirfd, sname, NULL, &rec[0].ino);
	if (track) {
		had_target = !name_id(ddirfd, dname, NULL, &rec[1].ino) &&
			     rec[1].ino != rec[0].ino;
		rec[1].parent = rec[0].parent;
	}
	if (renameat2(sdirfd, sname, ddirfd, dname, rf) < 0)
		return -errno;
	if (!track)
		return 0;
	if (rf & RENAME_EXCHANGE) {
		/* Each took the other's place. */
		rec[1].parent = sdir;
		rec[1].name = sname;
		tables_update(dev, rec, had_target ? 2 : 1, 0);
		return 0;
	}
	/*
	 * The replaced object lost its name (if the record says so); the
	 * moved one, and through the parent links everything beneath it,
	 * now lives under the new name.
	 */
	if (had_target)
		tables_update(dev, &rec[1], 1, 1);
	tables_update(dev, rec, 1, 0);
	return 0;
}

/* One entry with plus: its handle and attributes, pinned by one open; its
 * inode number in *@ino, 0 for a mount point (no handle). */
static int describe_entry(struct dafs_export *ex, int dirfd,
			  struct dafs_be_dirent *ent, uint64_t *ino)
{
	int fd, err;

	*ino = 0;
	fd = open_beneath(dirfd, ent->name, O_PATH, 0);
	if (fd == -EXDEV) {
		/*
		 * A mount point: listed, so the directory reads as it is,
		 * but with no handle (len 0), since exports do not cross
		 * mounts; a lookup of it gives -EXDEV.
		 */
		memset(&ent->fh, 0, sizeof(ent->fh));
		memset(&ent->attr, 0, sizeof(ent->attr));
		ent->attr.ino = ent->ino;
		ent->attr.mode = ent->type;
		return 0;
	}
	if (fd < 0)
		return fd;
	err = describe(ex, fd, &ent->fh, &ent->attr, ino);
	close(fd);
	if (!err)
		ent->type = ent->attr.mode & S_IFMT;
	return err;
}

/*
 * The records of one readdir-plus call, written in one transaction per
 * getdents64 buffer (the names point into it) rather than one per entry.
 */
struct rd_recs {
	struct dafs_table_rec *rec;
	size_t n;
	uint64_t dir; /* the directory's inode number */
};

/* The smallest dirent64: a buffer holds at most this many entries. */
#define RD_RECS_MAX (READDIR_BUF / 24)

static void rd_note(struct rd_recs *r, uint64_t ino, const char *name)
{
	r->rec[r->n].ino = ino;
	r->rec[r->n].parent = r->dir;
	r->rec[r->n].name = name;
	r->n++;
}

static int rd_flush(struct dafs_export *ex, struct rd_recs *r)
{
	int err = 0;

	if (r->n)
		err = dafs_state_table_put(ex->tab, r->rec, r->n, 0);
	r->n = 0;
	return err;
}

int dafs_be_readdir(struct dafs_export *ex, int dirfd, uint64_t cookie,
		    int plus, dafs_be_emit emit, void *arg, int *eof)
{
	char path[PROC_FD_LEN];
	struct dafs_be_dirent ent;
	struct rd_recs recs = {0};
	struct statx sx;
	uint64_t ino;
	char *buf;
	ssize_t n, pos;
	int dfd, err = 0, r;

	*eof = 0;
	if (cookie > INT64_MAX)
		return -EINVAL;
	/*
	 * Listing needs read permission on the directory, not search, so the
	 * O_PATH fd is reopened rather than "." looked up in it.
	 */
	dfd = open(proc_fd(path, dirfd), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return -errno;
	buf = malloc(READDIR_BUF);
	if (!buf) {
		err = -ENOMEM;
		goto out_close;
	}
	if (plus && ex->tab) {
		err = name_id(dirfd, "", NULL, &recs.dir);
		if (err)
			goto out_free;
		recs.rec = malloc(RD_RECS_MAX * sizeof(*recs.rec));
		if (!recs.rec) {
			err = -ENOMEM;
			goto out_free;
		}
	}
	/* Cookies are the file system's own d_off values. */
	if (lseek(dfd, (off_t)cookie, SEEK_SET) < 0) {
		err = -errno;
		goto out_free;
	}

	for (;;) {
		/* The handles emitted so far must resolve before the names
		 * they were recorded under are overwritten. */
		if (recs.rec) {
			err = rd_flush(ex, &recs);
			if (err)
				goto out_free;
		}
		n = getdents64(dfd, buf, READDIR_BUF);
		if (n < 0) {
			err = -errno;
			goto out_free;
		}
		if (n == 0) {
			*eof = 1;
			goto out_free;
		}
		for (pos = 0; pos < n;) {
			struct dirent64 *d = (struct dirent64 *)(buf + pos);

			pos += d->d_reclen;
			if (!strcmp(d->d_name, ".") || !strcmp(d->d_name, ".."))
				continue;
			memset(&ent, 0, sizeof(ent));
			ent.name = d->d_name;
			ent.cookie = (uint64_t)d->d_off;
			ent.ino = d->d_ino;
			ent.type = DTTOIF(d->d_type);
			if (plus) {
				err = describe_entry(ex, dirfd, &ent, &ino);
				if (!err && ino && recs.rec)
					rd_note(&recs, ino, d->d_name);
			} else if (d->d_type == DT_UNKNOWN) {
				/* Some file systems leave the type to stat. */
				if (statx(dirfd, d->d_name, AT_SYMLINK_NOFOLLOW,
					  STATX_TYPE, &sx) < 0)
					err = -errno;
				else
					ent.type = sx.stx_mode & S_IFMT;
			}
			/* Removed since getdents read it: it is gone. */
			if (err == -ENOENT) {
				err = 0;
				continue;
			}
			if (err)
				goto out_free;
			r = emit(arg, &ent);
			if (r < 0)
				err = r;
			if (r)
				goto out_free;
		}
	}

out_free:
	/* A stop (r > 0) is a success: what was emitted must resolve. */
	if (!err && recs.rec)
		err = rd_flush(ex, &recs);
	free(recs.rec);
	free(buf);
out_close:
	close(dfd);
	return err;
}

int dafs_be_statfs(int fd, dafs_statfs_t *st)
{
	struct statfs s;

	if (fstatfs(fd, &s) < 0)
		return -errno;
	memset(st, 0, sizeof(*st));
	st->blocks = s.f_blocks;
	st->bfree = s.f_bfree;
	st->bavail = s.f_bavail;
	st->files = s.f_files;
	st->ffree = s.f_ffree;
	st->bsize = (uint32_t)s.f_bsize;
	st->frsize = (uint32_t)(s.f_frsize ? s.f_frsize : s.f_bsize);
	st->namemax = (uint32_t)s.f_namelen;
	return 0;
}

/*
 * Extended attributes go through the magic link, which lands on the inode
 * of the fd and no further: for a symlink they are the symlink's own (as
 * l*xattr), which Linux allows for trusted.* and security.* but not user.*.
 */
int dafs_be_getxattr(int fd, const char *name, void *buf, size_t size)
{
	char path[PROC_FD_LEN];
	ssize_t n = getxattr(proc_fd(path, fd), name, buf, size);

	return n < 0 ? -errno : (int)n;
}

int dafs_be_setxattr(int fd, const char *name, const void *val, size_t size,
		     int flags)
{
	char path[PROC_FD_LEN];

	if (flags & ~(XATTR_CREATE | XATTR_REPLACE))
		return -EINVAL;
	if (setxattr(proc_fd(path, fd), name, val, size, flags) < 0)
		return -errno;
	return 0;
}

int dafs_be_listxattr(int fd, char *buf, size_t size)
{
	char path[PROC_FD_LEN];
	ssize_t n = listxattr(proc_fd(path, fd), buf, size);

	return n < 0 ? -errno : (int)n;
}

int dafs_be_removexattr(int fd, const char *name)
{
	char path[PROC_FD_LEN];

	if (removexattr(proc_fd(path, fd), name) < 0)
		return -errno;
	return 0;
}
