/*
 * fsop.c - system calls the shell cannot make, for the mount test:
 *
 *   fsop rename-noreplace A B    renameat2(A, B, RENAME_NOREPLACE)
 *   fsop rename-exchange A B     renameat2(A, B, RENAME_EXCHANGE)
 *   fsop create-excl F           open(F, O_CREAT | O_EXCL | O_WRONLY)
 *   fsop append F TEXT           write TEXT through O_APPEND at offset 0
 *                                (pwrite; the file's end is where it goes)
 *   fsop ftruncate F N           open F for writing and ftruncate to N
 *   fsop unlinked-fstat F        create F, unlink it, write, fstat it
 *   fsop chdir D                 chdir(D)
 *   fsop unlink|rmdir|mkdir|readlink|open-w|truncate0 PATH
 *   fsop link|symlink|rename A B      link(A, B), symlink(A, B) ...
 *   fsop setxattr-create F NAME  setxattr(F, NAME, "v", XATTR_CREATE)
 *   fsop acl-read-only F UID     an access ACL on F: owner, group, mask
 *                                and other rwx, user UID r-x (no write)
 *   fsop getxattr|removexattr F NAME
 *   fsop readdir-size D F        opendir(D), grow F (in D) to 1,000,000
 *                                bytes, read D: stat(F) must still say
 *                                1,000,000 (no stale size from readdir)
 *   fsop readdir-unlink D NAME   opendir(D), unlink NAME, read D: NAME
 *                                may be listed but stat must not find
 *                                it; rewinddir, read: it is not listed
 *   fsop setlk F r|w|u START LEN   fcntl(F_SETLK) through a read-write
 *                                open of F (LEN 0: to the end)
 *   fsop setlkw F r|w START LEN  fcntl(F_SETLKW): waits; prints how many
 *                                ms it waited
 *   fsop hold F r|w|u START LEN [r|w|u START LEN]...
 *                                F_SETLK of each in turn, then prints
 *                                "held" and sleeps until killed (the
 *                                locks go with it); on SIGUSR1 unlocks
 *                                the whole file (the descriptor stays
 *                                open) and prints "unlocked"
 *   fsop flock-hold F s|x        flock(LOCK_NB), "held", sleeps until
 *                                killed
 *   fsop getlk F r|w START LEN   fcntl(F_GETLK): prints "unlck", or the
 *                                conflicting lock as "r|w START LEN"
 *   fsop setlk-ro F w START LEN  F_SETLK through a read-only open
 *
 * Prints nothing and exits 0 on success; on failure prints the errno's
 * name (ENOENT, EEXIST ...) to stdout, or for the readdir checks what was
 * seen, and exits 1.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <sys/file.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

static void put_le32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

static int fail(void)
{
	const char *n = strerrorname_np(errno);

	printf("%s\n", n ? n : "?");
	return 1;
}

/* read @d to its end; 1 if an entry is called @name */
static int lists(DIR *d, const char *name)
{
	struct dirent *de;
	int found = 0;

	while ((de = readdir(d)))
		found |= !strcmp(de->d_name, name);
	return found;
}

/* Directory batches and the kernel's readdirplus: what a readdir hands
 * the kernel must be no older than what this process did before it. */
static int readdir_check(const char *op, const char *dir, const char *name)
{
	DIR *d = opendir(dir);
	struct stat st;
	int fd;

	if (!d)
		return fail();
	if (!strcmp(op, "readdir-size")) {
		fd = openat(dirfd(d), name, O_WRONLY);
		if (fd < 0 || pwrite(fd, "x", 1, 999999) != 1 || close(fd))
			return fail();
		lists(d, name);
		if (fstatat(dirfd(d), name, &st, 0))
			return fail();
		if (st.st_size != 1000000) {
			printf("size %lld after readdir\n",
			       (long long)st.st_size);
			return 1;
		}
	} else {
		if (unlinkat(dirfd(d), name, 0))
			return fail();
		lists(d, name); /* POSIX: listed or not */
		if (!fstatat(dirfd(d), name, &st, AT_SYMLINK_NOFOLLOW)) {
			printf("stat finds it after unlink and readdir\n");
			return 1;
		}
		rewinddir(d);
		if (lists(d, name)) {
			printf("listed after unlink and rewinddir\n");
			return 1;
		}
	}
	return closedir(d) ? fail() : 0;
}

static long long ms_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static volatile sig_atomic_t usr1;

static void on_usr1(int sig)
{
	(void)sig;
	usr1 = 1;
}

/* "r|w|u" START LEN at @a as a struct flock */
static void lock_arg(char **a, struct flock *fl)
{
	memset(fl, 0, sizeof(*fl));
	fl->l_whence = SEEK_SET;
	fl->l_type = !strcmp(a[0], "r")	  ? F_RDLCK
		     : !strcmp(a[0], "w") ? F_WRLCK
					  : F_UNLCK;
	fl->l_start = strtoll(a[1], NULL, 10);
	fl->l_len = strtoll(a[2], NULL, 10);
}

/* fsop hold: the locks, then wait to be killed (or told to unlock) */
static int hold(int argc, char **argv)
{
	struct sigaction sa = {.sa_handler = on_usr1};
	struct flock fl;
	int fd, i;

	sigaction(SIGUSR1, &sa, NULL);
	fd = open(argv[2], O_RDWR);
	if (fd < 0)
		return fail();
	for (i = 3; i + 2 < argc; i += 3) {
		lock_arg(argv + i, &fl);
		if (fcntl(fd, F_SETLK, &fl))
			return fail();
	}
	printf("held\n");
	fflush(stdout);
	for (;;) {
		pause();
		if (usr1) {
			usr1 = 0;
			lock_arg((char *[]){"u", "0", "0"}, &fl);
			if (fcntl(fd, F_SETLK, &fl))
				return fail();
			printf("unlocked\n");
			fflush(stdout);
		}
	}
}

static int flock_hold(char **argv)
{
	int fd = open(argv[2], O_RDONLY);

	if (fd < 0)
		return fail();
	if (flock(fd, (strcmp(argv[3], "s") ? LOCK_EX : LOCK_SH) | LOCK_NB))
		return fail();
	printf("held\n");
	fflush(stdout);
	for (;;)
		pause();
}

/* The fcntl lock commands: argv = op F TYPE START LEN. */
static int lock_op(char **argv)
{
	const char *op = argv[1];
	struct flock fl;
	long long t0;
	int fd;

	lock_arg(argv + 3, &fl);
	fd = open(argv[2], strcmp(op, "setlk-ro") ? O_RDWR : O_RDONLY);
	if (fd < 0)
		return fail();
	if (!strcmp(op, "getlk")) {
		if (fcntl(fd, F_GETLK, &fl))
			return fail();
		if (fl.l_type == F_UNLCK)
			printf("unlck\n");
		else
			printf("%s %lld %lld\n", fl.l_type == F_RDLCK ? "r" : "w",
			       (long long)fl.l_start, (long long)fl.l_len);
		return 0;
	}
	if (!strcmp(op, "setlkw")) {
		t0 = ms_now();
		if (fcntl(fd, F_SETLKW, &fl))
			return fail();
		printf("%lld\n", ms_now() - t0);
		return 0;
	}
	if (fcntl(fd, F_SETLK, &fl))
		return fail();
	return 0;
}

int main(int argc, char **argv)
{
	struct stat st;
	int fd;

	if (argc == 4 && !strcmp(argv[1], "rename-noreplace"))
		return renameat2(AT_FDCWD, argv[2], AT_FDCWD, argv[3],
				 RENAME_NOREPLACE)
			       ? fail()
			       : 0;
	if (argc == 4 && !strcmp(argv[1], "rename-exchange"))
		return renameat2(AT_FDCWD, argv[2], AT_FDCWD, argv[3],
				 RENAME_EXCHANGE)
			       ? fail()
			       : 0;
	if (argc == 3 && !strcmp(argv[1], "create-excl")) {
		fd = open(argv[2], O_CREAT | O_EXCL | O_WRONLY, 0644);
		if (fd < 0)
			return fail();
		return close(fd) ? fail() : 0;
	}
	if (argc == 4 && !strcmp(argv[1], "acl-read-only")) {
		/* system.posix_acl_access: version 2, then (tag, perm, id)
		 * entries in tag order, little-endian */
		uint8_t acl[4 + 5 * 8], *p = acl + 4;
		const uint16_t tags[5] = {0x01, 0x02, 0x04, 0x10, 0x20};
		const uint16_t perms[5] = {7, 5, 7, 7, 7};
		uint32_t uid = (uint32_t)strtoul(argv[3], NULL, 10);
		int i;

		put_le32(acl, 2);
		for (i = 0; i < 5; i++, p += 8) {
			p[0] = (uint8_t)tags[i];
			p[1] = (uint8_t)(tags[i] >> 8);
			p[2] = (uint8_t)perms[i];
			p[3] = 0;
			put_le32(p + 4, tags[i] == 0x02 ? uid : 0xffffffffu);
		}
		return setxattr(argv[2], "system.posix_acl_access", acl,
				sizeof(acl), 0)
			       ? fail()
			       : 0;
	}
	if (argc == 3 && !strcmp(argv[1], "create-ro-then-write")) {
		/* the creator writes through its own open whatever the
		 * mode; a later open for writing must be refused */
		fd = open(argv[2], O_CREAT | O_EXCL | O_RDWR, 0444);
		if (fd < 0)
			return fail();
		if (write(fd, "mine\n", 5) != 5 || close(fd))
			return fail();
		fd = open(argv[2], O_WRONLY);
		if (fd < 0)
			return fail();
		close(fd);
		return 0;
	}
	if (argc == 4 && !strcmp(argv[1], "append")) {
		size_t n = strlen(argv[3]);

		fd = open(argv[2], O_WRONLY | O_APPEND);
		if (fd < 0)
			return fail();
		if (pwrite(fd, argv[3], n, 0) != (ssize_t)n)
			return fail();
		return close(fd) ? fail() : 0;
	}
	if (argc == 4 && !strcmp(argv[1], "ftruncate")) {
		fd = open(argv[2], O_WRONLY);
		if (fd < 0)
			return fail();
		if (ftruncate(fd, strtoll(argv[3], NULL, 10)))
			return fail();
		return close(fd) ? fail() : 0;
	}
	if (argc == 3 && !strcmp(argv[1], "unlinked-fstat")) {
		fd = open(argv[2], O_CREAT | O_EXCL | O_RDWR, 0600);
		if (fd < 0)
			return fail();
		if (unlink(argv[2]) || write(fd, "abc", 3) != 3 ||
		    fstat(fd, &st))
			return fail();
		if (st.st_size != 3) {
			errno = EIO;
			return fail();
		}
		return close(fd) ? fail() : 0;
	}
	if (argc == 4 && (!strcmp(argv[1], "readdir-size") ||
			  !strcmp(argv[1], "readdir-unlink")))
		return readdir_check(argv[1], argv[2], argv[3]);
	if (argc == 6 &&
	    (!strcmp(argv[1], "setlk") || !strcmp(argv[1], "setlkw") ||
	     !strcmp(argv[1], "getlk") || !strcmp(argv[1], "setlk-ro")))
		return lock_op(argv);
	if (argc >= 6 && (argc - 3) % 3 == 0 && !strcmp(argv[1], "hold"))
		return hold(argc, argv);
	if (argc == 4 && !strcmp(argv[1], "flock-hold"))
		return flock_hold(argv);
	if (argc == 3 && !strcmp(argv[1], "chdir"))
		return chdir(argv[2]) ? fail() : 0;
	if (argc == 3) {
		char buf[256];
		const char *op = argv[1], *p = argv[2];
		int rc = -2;

		if (!strcmp(op, "unlink"))
			rc = unlink(p);
		else if (!strcmp(op, "rmdir"))
			rc = rmdir(p);
		else if (!strcmp(op, "mkdir"))
			rc = mkdir(p, 0755);
		else if (!strcmp(op, "readlink"))
			rc = readlink(p, buf, sizeof(buf)) < 0 ? -1 : 0;
		else if (!strcmp(op, "truncate0"))
			rc = truncate(p, 0);
		else if (!strcmp(op, "open-w")) {
			fd = open(p, O_WRONLY);
			rc = fd < 0 ? -1 : close(fd);
		}
		if (rc != -2)
			return rc ? fail() : 0;
	}
	if (argc == 4) {
		char buf[64];
		const char *op = argv[1], *a = argv[2], *b = argv[3];
		int rc = -2;

		if (!strcmp(op, "link"))
			rc = link(a, b);
		else if (!strcmp(op, "symlink"))
			rc = symlink(a, b);
		else if (!strcmp(op, "rename"))
			rc = rename(a, b);
		else if (!strcmp(op, "setxattr-create"))
			rc = setxattr(a, b, "v", 1, XATTR_CREATE);
		else if (!strcmp(op, "getxattr"))
			rc = getxattr(a, b, buf, sizeof(buf)) < 0 ? -1 : 0;
		else if (!strcmp(op, "removexattr"))
			rc = removexattr(a, b);
		if (rc != -2)
			return rc ? fail() : 0;
	}
	fprintf(stderr, "usage: see fsop.c\n");
	return 2;
}
