/*
 * passthrough.c - a minimal pass-through FUSE file system, the local
 * reference of bench/fuse-compare.sh. It stands in for libfuse's
 * example/passthrough, which Debian does not ship as a binary, and
 * behaves as that example does by default: libfuse3's high-level API,
 * multi-threaded loop, st_ino from the lower file system (use_ino), entry,
 * attribute and negative timeouts of 0, no kernel_cache (the kernel drops
 * a file's pages at each open), each call forwarded to the matching
 * system call on the lower directory, and reads handed to libfuse as a
 * file-descriptor buffer (read_buf) so it can splice where the kernel
 * lets it.
 *
 *   passthrough SOURCE MOUNTPOINT [-f] [-s] [--cached] [-o OPTIONS]
 *
 * --cached: entry timeout 1 s, attribute timeout 60 s, kernel_cache - what
 * dafs-fuse gives the kernel for a file it holds a delegation of; the
 * most any FUSE client can do here without the network (deleg-bench.sh's
 * reference).
 *
 * Paths are resolved relative to a descriptor of SOURCE (openat & co.),
 * so the process may chdir("/") when it goes to the background.
 * Written for the bench's workloads (sequential and random I/O,
 * postmark, create/stat/unlink); not a general-purpose file system: no
 * locks, xattrs, ioctls or special files beyond what the calls below
 * do.
 */
#define FUSE_USE_VERSION 31

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fuse.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/time.h>
#include <unistd.h>

static int src_fd = -1;
static int cached; /* --cached */
static char *src_path;

/* "/" is the source itself, "/a/b" is "a/b" beneath it */
static const char *rel(const char *path)
{
	while (*path == '/')
		path++;
	return *path ? path : ".";
}

static int neg(int rc)
{
	return rc < 0 ? -errno : rc;
}

static void *pt_init(struct fuse_conn_info *conn, struct fuse_config *cfg)
{
	(void)conn;
	cfg->use_ino = 1;
	/* see every change of the lower directory at once; or cache as
	 * dafs-fuse does under a delegation */
	cfg->entry_timeout = cached ? 1 : 0;
	cfg->attr_timeout = cached ? 60 : 0;
	cfg->negative_timeout = 0;
	cfg->kernel_cache = cached;
	return NULL;
}

static int pt_getattr(const char *path, struct stat *st,
		      struct fuse_file_info *fi)
{
	if (fi)
		return neg(fstat((int)fi->fh, st));
	return neg(fstatat(src_fd, rel(path), st, AT_SYMLINK_NOFOLLOW));
}

static int pt_access(const char *path, int mask)
{
	return neg(faccessat(src_fd, rel(path), mask, AT_SYMLINK_NOFOLLOW));
}

static int pt_readlink(const char *path, char *buf, size_t size)
{
	ssize_t n;

	if (size == 0)
		return -EINVAL;
	n = readlinkat(src_fd, rel(path), buf, size - 1);
	if (n < 0)
		return -errno;
	buf[n] = '\0';
	return 0;
}

static int pt_opendir(const char *path, struct fuse_file_info *fi)
{
	int fd = openat(src_fd, rel(path), O_RDONLY | O_DIRECTORY);
	DIR *d;

	if (fd < 0)
		return -errno;
	d = fdopendir(fd);
	if (!d) {
		int e = errno;

		close(fd);
		return -e;
	}
	fi->fh = (uint64_t)(uintptr_t)d;
	return 0;
}

static int pt_readdir(const char *path, void *buf, fuse_fill_dir_t fill,
		      off_t off, struct fuse_file_info *fi,
		      enum fuse_readdir_flags flags)
{
	DIR *d = (DIR *)(uintptr_t)fi->fh;
	struct dirent *e;

	(void)path;
	(void)flags;
	/* offsets are the lower file system's telldir cookies */
	seekdir(d, off);
	for (;;) {
		struct stat st;

		errno = 0;
		e = readdir(d);
		if (!e)
			return errno ? -errno : 0;
		memset(&st, 0, sizeof(st));
		st.st_ino = e->d_ino;
		st.st_mode = (mode_t)DTTOIF(e->d_type);
		if (fill(buf, e->d_name, &st, e->d_off, 0))
			return 0;
	}
}

static int pt_releasedir(const char *path, struct fuse_file_info *fi)
{
	(void)path;
	closedir((DIR *)(uintptr_t)fi->fh);
	return 0;
}

static int pt_mkdir(const char *path, mode_t mode)
{
	return neg(mkdirat(src_fd, rel(path), mode));
}

static int pt_unlink(const char *path)
{
	return neg(unlinkat(src_fd, rel(path), 0));
}

static int pt_rmdir(const char *path)
{
	return neg(unlinkat(src_fd, rel(path), AT_REMOVEDIR));
}

static int pt_symlink(const char *target, const char *path)
{
	return neg(symlinkat(target, src_fd, rel(path)));
}

static int pt_rename(const char *from, const char *to, unsigned int flags)
{
	return neg(renameat2(src_fd, rel(from), src_fd, rel(to), flags));
}

static int pt_link(const char *from, const char *to)
{
	return neg(linkat(src_fd, rel(from), src_fd, rel(to), 0));
}

static int pt_chmod(const char *path, mode_t mode, struct fuse_file_info *fi)
{
	if (fi)
		return neg(fchmod((int)fi->fh, mode));
	return neg(fchmodat(src_fd, rel(path), mode, 0));
}

static int pt_chown(const char *path, uid_t uid, gid_t gid,
		    struct fuse_file_info *fi)
{
	if (fi)
		return neg(fchown((int)fi->fh, uid, gid));
	return neg(fchownat(src_fd, rel(path), uid, gid, AT_SYMLINK_NOFOLLOW));
}

static int pt_truncate(const char *path, off_t size, struct fuse_file_info *fi)
{
	int fd, rc;

	if (fi)
		return neg(ftruncate((int)fi->fh, size));
	fd = openat(src_fd, rel(path), O_WRONLY);
	if (fd < 0)
		return -errno;
	rc = neg(ftruncate(fd, size));
	close(fd);
	return rc;
}

static int pt_utimens(const char *path, const struct timespec tv[2],
		      struct fuse_file_info *fi)
{
	if (fi)
		return neg(futimens((int)fi->fh, tv));
	return neg(utimensat(src_fd, rel(path), tv, AT_SYMLINK_NOFOLLOW));
}

static int pt_create(const char *path, mode_t mode, struct fuse_file_info *fi)
{
	int fd = openat(src_fd, rel(path), fi->flags, mode);

	if (fd < 0)
		return -errno;
	fi->fh = (uint64_t)fd;
	return 0;
}

static int pt_open(const char *path, struct fuse_file_info *fi)
{
	int fd = openat(src_fd, rel(path), fi->flags & ~O_CREAT);

	if (fd < 0)
		return -errno;
	fi->fh = (uint64_t)fd;
	return 0;
}

static int pt_read(const char *path, char *buf, size_t size, off_t off,
		   struct fuse_file_info *fi)
{
	ssize_t n = pread((int)fi->fh, buf, size, off);

	(void)path;
	return n < 0 ? -errno : (int)n;
}

/* the data stays in the file: libfuse reads or splices it from fh */
static int pt_read_buf(const char *path, struct fuse_bufvec **bufp,
		       size_t size, off_t off, struct fuse_file_info *fi)
{
	struct fuse_bufvec *bv = malloc(sizeof(*bv));

	(void)path;
	if (!bv)
		return -ENOMEM;
	*bv = FUSE_BUFVEC_INIT(size);
	bv->buf[0].flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK;
	bv->buf[0].fd = (int)fi->fh;
	bv->buf[0].pos = off;
	*bufp = bv;
	return 0;
}

static int pt_write(const char *path, const char *buf, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	ssize_t n = pwrite((int)fi->fh, buf, size, off);

	(void)path;
	return n < 0 ? -errno : (int)n;
}

static int pt_write_buf(const char *path, struct fuse_bufvec *in, off_t off,
			struct fuse_file_info *fi)
{
	struct fuse_bufvec out = FUSE_BUFVEC_INIT(fuse_buf_size(in));

	(void)path;
	out.buf[0].flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK;
	out.buf[0].fd = (int)fi->fh;
	out.buf[0].pos = off;
	return (int)fuse_buf_copy(&out, in, FUSE_BUF_SPLICE_NONBLOCK);
}

static int pt_statfs(const char *path, struct statvfs *sv)
{
	(void)path;
	return neg(fstatvfs(src_fd, sv));
}

static int pt_flush(const char *path, struct fuse_file_info *fi)
{
	int fd;

	(void)path;
	/* close() of a duplicate: reports delayed write errors, as the
	 * close of the caller would on a local file */
	fd = dup((int)fi->fh);
	if (fd < 0)
		return -errno;
	return neg(close(fd));
}

static int pt_release(const char *path, struct fuse_file_info *fi)
{
	(void)path;
	close((int)fi->fh);
	return 0;
}

static int pt_fsync(const char *path, int datasync, struct fuse_file_info *fi)
{
	(void)path;
	return neg(datasync ? fdatasync((int)fi->fh) : fsync((int)fi->fh));
}

static int pt_fallocate(const char *path, int mode, off_t off, off_t len,
			struct fuse_file_info *fi)
{
	(void)path;
	return neg(fallocate((int)fi->fh, mode, off, len));
}

static const struct fuse_operations pt_ops = {
	.init = pt_init,
	.getattr = pt_getattr,
	.access = pt_access,
	.readlink = pt_readlink,
	.opendir = pt_opendir,
	.readdir = pt_readdir,
	.releasedir = pt_releasedir,
	.mkdir = pt_mkdir,
	.symlink = pt_symlink,
	.unlink = pt_unlink,
	.rmdir = pt_rmdir,
	.rename = pt_rename,
	.link = pt_link,
	.chmod = pt_chmod,
	.chown = pt_chown,
	.truncate = pt_truncate,
	.utimens = pt_utimens,
	.create = pt_create,
	.open = pt_open,
	.read = pt_read,
	.read_buf = pt_read_buf,
	.write = pt_write,
	.write_buf = pt_write_buf,
	.statfs = pt_statfs,
	.flush = pt_flush,
	.release = pt_release,
	.fsync = pt_fsync,
	.fallocate = pt_fallocate,
};

/* the first argument that is not an option is SOURCE; the rest go to
 * libfuse */
static int opt_proc(void *data, const char *arg, int key,
		    struct fuse_args *out)
{
	(void)data;
	(void)out;
	if (key == FUSE_OPT_KEY_OPT && !strcmp(arg, "--cached")) {
		cached = 1;
		return 0;
	}
	if (key == FUSE_OPT_KEY_NONOPT && !src_path) {
		src_path = realpath(arg, NULL);
		if (!src_path) {
			fprintf(stderr, "passthrough: %s: %s\n", arg,
				strerror(errno));
			return -1;
		}
		return 0;
	}
	return 1;
}

int main(int argc, char *argv[])
{
	struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
	int rc;

	if (fuse_opt_parse(&args, NULL, NULL, opt_proc) < 0)
		return 1;
	if (!src_path) {
		fprintf(stderr, "usage: passthrough SOURCE MOUNTPOINT [-f] "
				"[-s] [--cached] [-o OPTIONS]\n");
		fuse_opt_free_args(&args);
		return 1;
	}
	src_fd = open(src_path, O_RDONLY | O_DIRECTORY);
	if (src_fd < 0) {
		fprintf(stderr, "passthrough: %s: %s\n", src_path,
			strerror(errno));
		fuse_opt_free_args(&args);
		return 1;
	}
	/* files are created with the caller's mode as given */
	umask(0);
	rc = fuse_main(args.argc, args.argv, &pt_ops, NULL);
	fuse_opt_free_args(&args);
	close(src_fd);
	free(src_path);
	return rc;
}
