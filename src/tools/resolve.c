/*
 * resolve.c - walk a path from the export root, one dafs_lookup() per
 * component, following symlinks on the client (see resolve_i.h).
 *
 * The walk keeps a stack of the directory handles it went through, so ".."
 * pops back to the real parent even after a symlink took it elsewhere, and
 * never climbs above the root. A symlink met on the way is spliced into the
 * unwalked rest of the path, as the kernel does.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tools/resolve_i.h"

struct walk {
	dafs_fh_t *stack; /* stack[0] is the root, stack[depth - 1] current */
	size_t depth, cap;
};

static int push(struct walk *w, const dafs_fh_t *fh)
{
	dafs_fh_t *n;

	if (w->depth == w->cap) {
		n = realloc(w->stack, (w->cap ? w->cap * 2 : 16) * sizeof(*n));
		if (!n)
			return -ENOMEM;
		w->stack = n;
		w->cap = w->cap ? w->cap * 2 : 16;
	}
	w->stack[w->depth++] = *fh;
	return 0;
}

/*
 * Replace the unwalked @rest (which starts with '/' or is empty) of the
 * path held in @buf by the symlink @target followed by @rest.
 */
static int splice(char *buf, const char *rest, const char *target)
{
	char tmp[DAFS_PATH_MAX + 1];
	size_t tl = strlen(target), rl = strlen(rest);

	if (tl + 1 + rl > DAFS_PATH_MAX)
		return -ENAMETOOLONG;
	memcpy(tmp, target, tl);
	tmp[tl] = '/';
	memcpy(tmp + tl + 1, rest, rl + 1);
	memcpy(buf, tmp, tl + 1 + rl + 1);
	return 0;
}

static int is_dot(const char *n)
{
	return n[0] == '.' && n[1] == '\0';
}

static int is_dotdot(const char *n)
{
	return n[0] == '.' && n[1] == '.' && n[2] == '\0';
}

int dtool_resolve(dafs_session_t *s, const char *path, unsigned int flags,
		  uint32_t mode, dafs_fh_t *fh, dafs_attr_t *attr)
{
	struct walk w = {0};
	char buf[DAFS_PATH_MAX + 1], name[DAFS_NAME_MAX + 1];
	char target[DAFS_PATH_MAX + 1];
	dafs_fh_t cur, root;
	dafs_attr_t a, last_attr;
	int have_attr = 0, links = 0, last, r;
	const char *p, *end;
	size_t len;

	if (strlen(path) > DAFS_PATH_MAX)
		return -ENAMETOOLONG;
	strcpy(buf, path);
	r = dafs_root(s, &root);
	if (r < 0)
		return r;
	r = push(&w, &root);
	if (r < 0)
		return r;

	p = buf;
	for (;;) {
		while (*p == '/')
			p++;
		if (!*p)
			break;
		end = strchrnul(p, '/');
		len = (size_t)(end - p);
		if (len > DAFS_NAME_MAX) {
			r = -ENAMETOOLONG;
			goto out;
		}
		memcpy(name, p, len);
		name[len] = '\0';
		p = end;
		last = !p[strspn(p, "/")];

		if (is_dot(name))
			continue;
		if (is_dotdot(name)) {
			if (w.depth > 1)
				w.depth--;
			have_attr = 0;
			continue;
		}

		r = dafs_lookup(s, &w.stack[w.depth - 1], name, &cur, &a);
		if (r == -ENOENT && (flags & DTOOL_MKDIRS)) {
			r = dafs_mkdir(s, &w.stack[w.depth - 1], name, mode,
				       &cur, &a);
			/* lost a race with another mkdir: use theirs */
			if (r == -EEXIST)
				r = dafs_lookup(s, &w.stack[w.depth - 1], name,
						&cur, &a);
		}
		if (r < 0)
			goto out;

		if (S_ISLNK(a.mode) && (!last || (flags & DTOOL_FOLLOW))) {
			if (++links > DTOOL_MAXSYMLINKS) {
				r = -ELOOP;
				goto out;
			}
			r = dafs_readlink(s, &cur, target, sizeof(target));
			if (r < 0)
				goto out;
			/* an empty target names nothing, as on Linux */
			if (r == 0) {
				r = -ENOENT;
				goto out;
			}
			/* absolute targets start again at the export root */
			if (target[0] == '/')
				w.depth = 1;
			r = splice(buf, p, target);
			if (r < 0)
				goto out;
			p = buf;
			have_attr = 0;
			continue;
		}
		if (!last && !S_ISDIR(a.mode)) {
			r = -ENOTDIR;
			goto out;
		}
		r = push(&w, &cur);
		if (r < 0)
			goto out;
		last_attr = a;
		have_attr = 1;
	}

	/* The path ended on the root, ".", or "..": ask for attributes. */
	if (!have_attr) {
		r = dafs_getattr(s, &w.stack[w.depth - 1], &last_attr);
		if (r < 0)
			goto out;
	}
	*fh = w.stack[w.depth - 1];
	if (attr)
		*attr = last_attr;
	r = 0;
out:
	free(w.stack);
	return r;
}

int dtool_resolve_parent(dafs_session_t *s, const char *path, dafs_fh_t *dir,
			 char name[DAFS_NAME_MAX + 1])
{
	char parent[DAFS_PATH_MAX + 1];
	const char *slash, *base;
	size_t plen;
	dafs_attr_t a;
	int r;

	/* Trailing slashes belong to no component. */
	plen = strlen(path);
	while (plen > 0 && path[plen - 1] == '/')
		plen--;
	if (plen > DAFS_PATH_MAX)
		return -ENAMETOOLONG;
	memcpy(parent, path, plen);
	parent[plen] = '\0';

	slash = strrchr(parent, '/');
	base = slash ? slash + 1 : parent;
	if (strlen(base) > DAFS_NAME_MAX)
		return -ENAMETOOLONG;
	if (is_dot(base) || is_dotdot(base))
		return -EINVAL;
	strcpy(name, base);
	parent[base - parent] = '\0';

	r = dtool_resolve(s, parent, DTOOL_FOLLOW, 0, dir, &a);
	if (r < 0)
		return r;
	if (!S_ISDIR(a.mode))
		return -ENOTDIR;
	return 0;
}

const char *dtool_basename(const char *path)
{
	const char *slash = strrchr(path, '/');

	if (!path[0])
		return "/";
	return slash ? slash + 1 : path;
}
