/*
 * meta-bench.c - create, stat and delete N empty files in a directory,
 * timed, one process and one thread, so that the file system and not
 * fork() or an interpreter sets the pace (bench/fuse-compare.sh).
 *
 *   meta-bench DIR [N]      (N defaults to 10000)
 *
 * Phase one creates DIR/f0 ... DIR/f(N-1) with open(O_CREAT | O_EXCL |
 * O_WRONLY) and close; phase two stat()s each; phase three unlink()s
 * each. Prints one line:
 *
 *   create S stat S unlink S total S files/s F
 *
 * S in seconds, F = N / total: whole create + stat + delete cycles per
 * second. Exits 1 at the first failed call, with its errno.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what, const char *path)
{
	fprintf(stderr, "meta-bench: %s %s: %s\n", what, path,
		strerror(errno));
	exit(1);
}

int main(int argc, char *argv[])
{
	char path[4096];
	double t0, t1, t2, t3;
	struct stat st;
	long n = 10000, i;
	int fd;

	if (argc < 2 || argc > 3) {
		fprintf(stderr, "usage: meta-bench DIR [N]\n");
		return 2;
	}
	if (argc == 3) {
		n = strtol(argv[2], NULL, 10);
		if (n < 1) {
			fprintf(stderr, "meta-bench: N must be positive\n");
			return 2;
		}
	}
	t0 = now();
	for (i = 0; i < n; i++) {
		snprintf(path, sizeof(path), "%s/f%ld", argv[1], i);
		fd = open(path, O_CREAT | O_EXCL | O_WRONLY, 0644);
		if (fd < 0)
			die("create", path);
		if (close(fd))
			die("close", path);
	}
	t1 = now();
	for (i = 0; i < n; i++) {
		snprintf(path, sizeof(path), "%s/f%ld", argv[1], i);
		if (stat(path, &st))
			die("stat", path);
	}
	t2 = now();
	for (i = 0; i < n; i++) {
		snprintf(path, sizeof(path), "%s/f%ld", argv[1], i);
		if (unlink(path))
			die("unlink", path);
	}
	t3 = now();
	printf("create %.3f stat %.3f unlink %.3f total %.3f files/s %.1f\n",
	       t1 - t0, t2 - t1, t3 - t2, t3 - t0, (double)n / (t3 - t0));
	return 0;
}
