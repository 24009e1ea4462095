/*
 * dafsstat - the statistics of a dafs-fuse mount while it is mounted:
 * delegations held, granted, recalled, returned and revoked, the recall
 * latency, writes held and written back, inodes and open files. Reads the
 * "dafs.stats" extended attribute of the mount's root, which dafs-fuse
 * answers itself.
 *
 *   dafsstat [-i SECONDS [-c COUNT]] MOUNTPOINT
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#define STATS_XATTR "dafs.stats"

static void usage(FILE *f)
{
	fprintf(f,
		"usage: dafsstat [-i SECONDS [-c COUNT]] MOUNTPOINT\n"
		"\n"
		"Print the statistics of the dafs-fuse mount at MOUNTPOINT, "
		"one \"name value\"\n"
		"per line; with -i, again every SECONDS (COUNT times, default "
		"forever).\n");
}

static int show(const char *mnt)
{
	char buf[8192];
	ssize_t n;

	n = getxattr(mnt, STATS_XATTR, buf, sizeof(buf) - 1);
	if (n < 0) {
		if (errno == ENODATA || errno == EOPNOTSUPP || errno == ENOTSUP)
			fprintf(stderr,
				"dafsstat: %s: not a dafs-fuse mount (no %s "
				"attribute)\n",
				mnt, STATS_XATTR);
		else
			fprintf(stderr, "dafsstat: %s: %s\n", mnt,
				strerror(errno));
		return -1;
	}
	buf[n] = '\0';
	fputs(buf, stdout);
	fflush(stdout);
	return 0;
}

int main(int argc, char *argv[])
{
	double interval = 0;
	long count = -1, i;
	char *end;
	int c;

	while ((c = getopt(argc, argv, "i:c:hV")) != -1) {
		switch (c) {
		case 'i':
			interval = strtod(optarg, &end);
			if (*end || interval <= 0) {
				fprintf(stderr, "dafsstat: -i wants seconds > 0\n");
				return 2;
			}
			break;
		case 'c':
			count = strtol(optarg, &end, 10);
			if (*end || count <= 0) {
				fprintf(stderr, "dafsstat: -c wants a count > 0\n");
				return 2;
			}
			break;
		case 'h':
			usage(stdout);
			return 0;
		case 'V':
			printf("dafsstat %s\n", DAFS_TOOLS_VERSION);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind + 1 != argc) {
		usage(stderr);
		return 2;
	}
	if (interval <= 0)
		return show(argv[optind]) ? 1 : 0;
	for (i = 0; count < 0 || i < count; i++) {
		struct timespec ts;

		if (i) {
			ts.tv_sec = (time_t)interval;
			ts.tv_nsec = (long)((interval - (double)ts.tv_sec) * 1e9);
			nanosleep(&ts, NULL);
			putchar('\n');
		}
		if (show(argv[optind]))
			return 1;
	}
	return 0;
}
