/*
 * standalone.c - runs a libFuzzer target without libFuzzer, so the project's
 * own compiler (and its sanitizer builds) exercise the target over the seed
 * corpus as an ordinary test.
 *
 * usage: fuzz_wire_standalone [--all-accepted] FILE|DIR...
 *
 * Every file named (for a directory, every regular file in it, in name
 * order) is passed to LLVMFuzzerTestOneInput() whole and then cut at every
 * shorter length, each time as an exact-size heap copy so that an ASan build
 * catches any read past the end. With --all-accepted, fail unless the target
 * accepted every whole file: seeds that no longer parse have gone stale.
 * Exit status: 0, or 1 on an unreadable file, an empty corpus or a stale
 * seed; a broken invariant aborts inside the target.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
/* Optional: a target may count the inputs it accepted. */
extern unsigned long dafs_fuzz_accepted __attribute__((weak));

static unsigned long inputs, cuts, stale;
static int all_accepted;

static void feed(const uint8_t *data, size_t size)
{
	uint8_t *c = malloc(size ? size : 1);

	if (!c) {
		perror("malloc");
		exit(1);
	}
	if (size)
		memcpy(c, data, size);
	LLVMFuzzerTestOneInput(c, size);
	free(c);
}

static int run_file(const char *path)
{
	unsigned long before = &dafs_fuzz_accepted ? dafs_fuzz_accepted : 0;
	uint8_t *data = NULL;
	struct stat st;
	size_t got = 0, i;
	ssize_t n;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0) {
		fprintf(stderr, "%s: %s\n", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	data = malloc(st.st_size ? (size_t)st.st_size : 1);
	if (!data) {
		close(fd);
		return -1;
	}
	while (got < (size_t)st.st_size) {
		n = read(fd, data + got, (size_t)st.st_size - got);
		if (n <= 0) {
			fprintf(stderr, "%s: short read\n", path);
			free(data);
			close(fd);
			return -1;
		}
		got += (size_t)n;
	}
	close(fd);

	feed(data, got);
	inputs++;
	if (&dafs_fuzz_accepted && dafs_fuzz_accepted == before) {
		if (all_accepted)
			fprintf(stderr, "%s: not accepted (stale seed?)\n",
				path);
		stale++;
	}
	for (i = 0; i < got; i++, cuts++)
		feed(data, i);
	free(data);
	return 0;
}

static int regular(const struct dirent *d)
{
	return d->d_name[0] != '.';
}

static int run_path(const char *path)
{
	struct dirent **ents;
	struct stat st;
	char *p;
	int n, i, rc = 0;

	if (stat(path, &st) < 0) {
		fprintf(stderr, "%s: %s\n", path, strerror(errno));
		return -1;
	}
	if (!S_ISDIR(st.st_mode))
		return run_file(path);
	n = scandir(path, &ents, regular, alphasort);
	if (n < 0) {
		fprintf(stderr, "%s: %s\n", path, strerror(errno));
		return -1;
	}
	for (i = 0; i < n; i++) {
		if (rc == 0 &&
		    asprintf(&p, "%s/%s", path, ents[i]->d_name) > 0) {
			if (stat(p, &st) == 0 && S_ISREG(st.st_mode))
				rc = run_file(p);
			free(p);
		}
		free(ents[i]);
	}
	free(ents);
	return rc;
}

int main(int argc, char **argv)
{
	int i;

	for (i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--all-accepted")) {
			all_accepted = 1;
			continue;
		}
		if (run_path(argv[i]))
			return 1;
	}
	printf("%lu inputs, %lu accepted whole, %lu cuts\n", inputs,
	       inputs - stale, cuts);
	if (!inputs) {
		fprintf(stderr, "no inputs\n");
		return 1;
	}
	if (all_accepted && (stale || !&dafs_fuzz_accepted))
		return 1;
	return 0;
}
