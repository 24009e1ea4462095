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
 *
 * Prints nothing and exits 0 on success; on failure prints the errno's
 * name (ENOENT, EEXIST ...) to stdout and exits 1.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int fail(void)
{
	const char *n = strerrorname_np(errno);

	printf("%s\n", n ? n : "?");
	return 1;
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
	if (argc == 3 && !strcmp(argv[1], "chdir"))
		return chdir(argv[2]) ? fail() : 0;
	fprintf(stderr, "usage: see fsop.c\n");
	return 2;
}
