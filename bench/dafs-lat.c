/*
 * dafs-lat.c - round-trip time of a metadata call over libdafs:
 *
 *   dafs-lat URL N      -> "getattr usec/call REQBYTES REPBYTES"
 *
 * URL names a file or directory of an export; N getattr calls are timed
 * after N/10 untimed ones. The request and reply sizes on the wire are
 * printed so the raw TCP ping-pong can be run with the same sizes.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dafs/dafs.h"

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	dafs_session_t *s;
	dafs_attr_t a;
	dafs_fh_t fh;
	dafs_url_t u;
	char path[DAFS_PATH_MAX + 1], *p, *save;
	double t0, t1;
	long i, n;
	int rc;

	if (argc != 3) {
		fprintf(stderr, "usage: dafs-lat URL N\n");
		return 2;
	}
	n = strtol(argv[2], NULL, 0);
	rc = dafs_url_parse(argv[1], &u);
	if (!rc)
		rc = dafs_session_open(argv[1], NULL, &s);
	if (rc) {
		fprintf(stderr, "dafs-lat: %s: %s\n", argv[1],
			dafs_strerror(rc));
		return 1;
	}
	dafs_root(s, &fh);
	snprintf(path, sizeof(path), "%s", u.path);
	for (p = strtok_r(path, "/", &save); p; p = strtok_r(NULL, "/", &save)) {
		rc = dafs_lookup(s, &fh, p, &fh, NULL);
		if (rc) {
			fprintf(stderr, "dafs-lat: lookup %s: %s\n", p,
				dafs_strerror(rc));
			return 1;
		}
	}
	for (i = 0; i < n / 10; i++)
		dafs_getattr(s, &fh, &a);
	t0 = now();
	for (i = 0; i < n; i++) {
		rc = dafs_getattr(s, &fh, &a);
		if (rc) {
			fprintf(stderr, "dafs-lat: getattr: %s\n",
				dafs_strerror(rc));
			return 1;
		}
	}
	t1 = now();
	/* wire sizes: 32-byte TCP frame header + 24-byte DAFS header +
	 * body (fh: 2 + len; attr: 96) */
	printf("getattr %.1f usec/call %u %u\n", (t1 - t0) * 1e6 / (double)n,
	       32 + 24 + 2 + fh.len, 32 + 24 + 96);
	dafs_session_close(s);
	return 0;
}
