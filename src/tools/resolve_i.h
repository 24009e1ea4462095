/*
 * resolve_i.h - client-side path resolution for the command-line tools.
 *
 * The server resolves one name at a time (dafs_lookup), so a path is walked
 * here component by component from the export root. Symlinks are followed
 * on the client: a relative target is taken relative to the directory that
 * holds the link, an absolute one relative to the export root, which is the
 * root of everything the client can see (".." at the root stays there).
 */
#ifndef DAFS_TOOLS_RESOLVE_I_H
#define DAFS_TOOLS_RESOLVE_I_H

#include <stdint.h>

#include "dafs/dafs.h"

/** Most symlinks followed while resolving one path (as Linux's MAXSYMLINKS). */
#define DTOOL_MAXSYMLINKS 40

/** @name dtool_resolve() flags */
/**@{*/
#define DTOOL_FOLLOW 0x1u /**< follow a symlink in the last component too */
#define DTOOL_MKDIRS 0x2u /**< create missing directories (mkdir -p) */
/**@}*/

/**
 * Resolve @p path ("" or "/a/b", as dafs_url_t.path) on @p s.
 *
 * @param[in] flags  DTOOL_FOLLOW, DTOOL_MKDIRS
 * @param[in] mode   permissions of directories DTOOL_MKDIRS creates
 * @param[out] fh    the handle the path names
 * @param[out] attr  its attributes (may be NULL)
 * @return 0; -ENOENT, -ENOTDIR, -ELOOP (more than DTOOL_MAXSYMLINKS links),
 *         -ENAMETOOLONG (a component or an expanded path too long), -ENOMEM,
 *         or any error of dafs_lookup(), dafs_readlink(), dafs_mkdir().
 */
int dtool_resolve(dafs_session_t *s, const char *path, unsigned int flags,
		  uint32_t mode, dafs_fh_t *fh, dafs_attr_t *attr);

/**
 * Resolve the directory that holds the last component of @p path, following
 * every symlink on the way, and return that component's name.
 *
 * @param[out] dir   the containing directory
 * @param[out] name  the last component; "" when @p path names the export
 *                   root itself (then @p dir is the root)
 * @return 0; -EINVAL when the last component is "." or ".."; errors as
 *         dtool_resolve().
 */
int dtool_resolve_parent(dafs_session_t *s, const char *path, dafs_fh_t *dir,
			 char name[DAFS_NAME_MAX + 1]);

/** The last component of @p path, or "/" for the export root. Borrowed
 * from @p path. */
const char *dtool_basename(const char *path);

#endif /* DAFS_TOOLS_RESOLVE_I_H */
