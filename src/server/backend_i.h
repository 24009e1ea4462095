/*
 * backend_i.h - the export backend of dafsd: one exported local directory,
 * its opaque file handles, and every file-system operation on it.
 *
 * Confinement: the export root is opened once; every name is a single
 * component resolved relative to a directory of the export with openat2()
 * and RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_SYMLINKS (the
 * final component is never followed either), so "..", absolute symlinks,
 * symlinks pointing out and symlink loops never reach outside.
 *
 * Handles: a kernel file handle (name_to_handle_at) of an object found
 * beneath the root, plus the export id, authenticated with a keyed
 * SipHash-2-4 MAC under a per-server secret kept in the LMDB state
 * (state_i.h). A handle is only ever issued for an object reached beneath the
 * root, and a forged or altered handle fails the MAC check (-DAFS_EBADHANDLE)
 * before the kernel sees it; handles stay valid across server restarts
 * because the key and the kernel handles do. Objects that no longer exist
 * give -ESTALE.
 *
 * Two kinds, chosen when the export is opened: kernel handles (version 1),
 * opened with open_by_handle_at(), where the server has CAP_DAC_READ_SEARCH;
 * table handles (version 2) where it has not (run as an ordinary user).
 * Those add the inode number, and the state keeps each handed-out object's
 * (parent, name) in a per-export table; resolving walks it up to the root,
 * opens the path beneath the root and checks inode number and kernel handle
 * (the generation) of what it finds. The calls that issue handles for
 * (dirfd, name) record it; link, rename, remove and rmdir keep the tables of
 * all table exports on the same file system up to date. Renames and removals
 * made by local users, not through dafsd, make table handles under them
 * stale until the object is looked up again.
 *
 * Credentials: every operation runs with the calling thread's file-system
 * credentials (creds_i.h); the backend does no permission checks of its own.
 *
 * All functions return 0 (or a length) or a negative errno / -DAFS_E* code.
 * Names must be one component: non-empty, at most DAFS_NAME_MAX bytes, no
 * '/', not "." or ".." (-EINVAL), except dafs_be_lookup(), which accepts "."
 * (the directory itself) and ".." (its parent; the root's parent is the
 * root).
 */
#ifndef DAFS_BACKEND_I_H
#define DAFS_BACKEND_I_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dafs/dafs.h"

struct dafs_export;
struct dafs_state;
struct fdc_entry;

/* The descriptor cache of each export: entries, and how long one unused
 * is kept (see dafs_be_resolve_ref) */
#define DAFS_FDCACHE_MAX 256
#define DAFS_FDCACHE_AGE_MS 2000

#define DAFS_HKEY_LEN 16

/*
 * Open @path as export @name with numeric @id (part of its handles) and the
 * handle MAC @key. The root must be a directory. If open_by_handle_at() is
 * refused (EPERM: no CAP_DAC_READ_SEARCH), the export uses table handles
 * kept in @st, which must then outlive the export (close the export first).
 * @st may be NULL where table handles are not wanted.
 * Errors: -ENOENT, -ENOTDIR, -EACCES from opening the root; -EOPNOTSUPP if
 * the file system cannot produce or decode file handles; -EPERM if table
 * handles are needed and @st is NULL; state errors (state_i.h); -ENOMEM.
 */
int dafs_export_open(struct dafs_state *st, const char *name, const char *path,
		     uint16_t id, const uint8_t key[DAFS_HKEY_LEN],
		     struct dafs_export **ex);
void dafs_export_close(struct dafs_export *ex);
const char *dafs_export_name(const struct dafs_export *ex);
/* 1 if the export uses table handles, 0 for kernel handles. */
int dafs_export_table(const struct dafs_export *ex);
/* The root's handle. */
void dafs_export_root(const struct dafs_export *ex, dafs_fh_t *fh);

/*
 * Resolve @fh to an O_PATH | O_NOFOLLOW fd (the caller closes it), checking
 * the MAC first. Must run with the server's own credentials (a non-zero
 * fsuid drops CAP_DAC_READ_SEARCH, which open_by_handle_at needs; table
 * handles need search permission on the directories on the way); the
 * operations below then run with the request's credentials on that fd.
 * Returns the fd, or -DAFS_EBADHANDLE (not ours / forged), -ESTALE (gone;
 * with table handles also: no longer where it was recorded, or a kernel
 * handle from a privileged run), -EACCES (table handles: a directory on the
 * way cannot be searched).
 */
int dafs_be_resolve(struct dafs_export *ex, const dafs_fh_t *fh);
/*
 * dafs_be_resolve() through the export's descriptor cache (fdcache_i.h):
 * the fd is borrowed, valid until dafs_be_unref(ex, *@ref, fd), which the
 * caller must call instead of close(). A kept descriptor is used only
 * while its object still has a link (one statx), so a removed file's
 * handle is -ESTALE at once, as without the cache; what the cache costs
 * is that a removed file's inode (and space) lives on for up to
 * DAFS_FDCACHE_AGE_MS (plus a tick) after the last request that named it.
 * Exports with table handles do not cache (a kept descriptor would skip
 * the walk that confines them): this is dafs_be_resolve() for them.
 * With @attr that statx takes all the attributes, and *@have_attr says
 * whether they were taken (into @attr): a GETATTR is spared its own.
 */
int dafs_be_resolve_ref(struct dafs_export *ex, const dafs_fh_t *fh,
			struct fdc_entry **ref, dafs_attr_t *attr,
			bool *have_attr);
void dafs_be_unref(struct dafs_export *ex, struct fdc_entry *ref, int fd);
/* Once a second or so: close cached descriptors idle for too long. */
void dafs_be_tick(struct dafs_export *ex);
/* The handle of @fd, an object of this export. With table handles nothing
 * is recorded: it resolves only if the object was handed out by name. */
int dafs_be_handle(struct dafs_export *ex, int fd, dafs_fh_t *fh);

/*
 * The operations. @fd / @dirfd are O_PATH fds from dafs_be_resolve(); they
 * run with the calling thread's credentials, so the kernel checks access.
 * With table handles, a call that hands out a handle for a name also fails
 * with the state's errors (-ENOSPC, -EIO) if it cannot record it: a handle
 * that could not be resolved is worse than an error. link, remove, rmdir
 * and rename update the tables after the fact and never fail for them.
 */
int dafs_be_lookup(struct dafs_export *ex, int dirfd, const char *name,
		   dafs_fh_t *fh, dafs_attr_t *attr);
int dafs_be_getattr(int fd, dafs_attr_t *attr);
/* access(2) of @fd's object for @mask (R_OK, W_OK, X_OK bits; 0: it
 * exists) with the thread's credentials, as they are (AT_EACCESS) */
int dafs_be_access(int fd, uint32_t mask);
/* Apply the DAFS_SET_* bits of @sa in the order size, mode, owner, times;
 * @attr receives the attributes after. */
int dafs_be_setattr(int fd, const dafs_setattr_t *sa, dafs_attr_t *attr);

/*
 * Open an existing file for I/O: @oflags are DAFS_O_* (wire flags). Opening a
 * directory for writing gives -EISDIR; a symlink, -ELOOP. Returns a new fd
 * for I/O (the caller closes it).
 */
int dafs_be_open(int fd, uint32_t oflags, dafs_attr_t *attr);
/* Create (DAFS_O_EXCL: exclusively) and open @name in @dirfd; returns the
 * I/O fd. DAFS_O_TRUNC truncates an existing file. */
int dafs_be_create(struct dafs_export *ex, int dirfd, const char *name,
		   uint32_t oflags, uint32_t mode, dafs_fh_t *fh,
		   dafs_attr_t *attr);
/* The same; where @name exists (and DAFS_O_EXCL is not set), first
 * @existing(@arg, PFD) with an O_PATH fd of the file found, before it is
 * opened or truncated: a nonzero return (a negative errno) ends the
 * create with it. dafsd recalls the file's delegations there, so that
 * nothing is truncated under a holder's unwritten data. */
int dafs_be_create_hook(struct dafs_export *ex, int dirfd, const char *name,
			uint32_t oflags, uint32_t mode,
			int (*existing)(void *arg, int pfd), void *arg,
			dafs_fh_t *fh, dafs_attr_t *attr);
int dafs_be_mkdir(struct dafs_export *ex, int dirfd, const char *name,
		  uint32_t mode, dafs_fh_t *fh, dafs_attr_t *attr);
int dafs_be_mknod(struct dafs_export *ex, int dirfd, const char *name,
		  uint32_t mode, uint64_t rdev, dafs_fh_t *fh,
		  dafs_attr_t *attr);
int dafs_be_symlink(struct dafs_export *ex, int dirfd, const char *name,
		    const char *target, dafs_fh_t *fh, dafs_attr_t *attr);
/* Returns the target length; @buf is NUL-terminated; -ERANGE if too small. */
int dafs_be_readlink(int fd, char *buf, size_t size);
int dafs_be_link(int fd, int dirfd, const char *name, dafs_attr_t *attr);
int dafs_be_remove(int dirfd, const char *name);
int dafs_be_rmdir(int dirfd, const char *name);
/* @flags: DAFS_RENAME_NOREPLACE, DAFS_RENAME_EXCHANGE. */
int dafs_be_rename(int sdirfd, const char *sname, int ddirfd,
		   const char *dname, uint32_t flags);

struct dafs_be_dirent {
	const char *name;
	uint64_t cookie; /* position after this entry */
	uint64_t ino;
	uint32_t type; /* S_IFMT bits */
	/* with plus: */
	dafs_fh_t fh;
	dafs_attr_t attr;
};
/* Return 0 to continue, > 0 to stop before consuming @ent (it did not fit:
 * the reply resumes at it next time), < 0 to fail. */
typedef int (*dafs_be_emit)(void *arg, const struct dafs_be_dirent *ent);
/*
 * Emit entries from @cookie (0 = start), skipping "." and "..". With @plus,
 * each entry carries its handle and attributes; table handles are recorded
 * in batches and resolve once the call has returned (0). *@eof = 1 when the
 * end was reached. Cookies are the directory's own offsets (stable across
 * calls and server restarts for the file systems Linux ships).
 */
int dafs_be_readdir(struct dafs_export *ex, int dirfd, uint64_t cookie,
		    int plus, dafs_be_emit emit, void *arg, int *eof);
int dafs_be_statfs(int fd, dafs_statfs_t *st);

/* As getxattr(2)/listxattr(2): @size 0 asks for the length. */
int dafs_be_getxattr(int fd, const char *name, void *buf, size_t size);
int dafs_be_setxattr(int fd, const char *name, const void *val, size_t size,
		     int flags);
int dafs_be_listxattr(int fd, char *buf, size_t size);
int dafs_be_removexattr(int fd, const char *name);

/* Keyed 64-bit PRF (SipHash-2-4) for handle MACs. */
uint64_t dafs_siphash(const uint8_t key[16], const void *data, size_t len);

#endif /* DAFS_BACKEND_I_H */
