/*
 * test_url.c - dafs_url_parse() and dafs_strerror().
 *
 * url.c and strerror.c are compiled into this test directly, so it runs
 * without the rest of libdafs.
 */
#include <check.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dafs/dafs.h"

static void parse_ok(const char *url, const char *scheme, const char *host,
		     unsigned port, const char *export_, const char *path)
{
	dafs_url_t u;
	int r = dafs_url_parse(url, &u);

	ck_assert_msg(r == 0, "%s: got %d", url, r);
	ck_assert_str_eq(u.scheme, scheme);
	ck_assert_str_eq(u.host, host);
	ck_assert_uint_eq(u.port, port);
	ck_assert_str_eq(u.export_, export_);
	ck_assert_str_eq(u.path, path);
}

static void parse_bad(const char *url)
{
	dafs_url_t u;
	int r;

	/* A failed parse must leave the output alone. */
	memset(&u, 0x5a, sizeof(u));
	r = dafs_url_parse(url, &u);
	ck_assert_msg(r == -DAFS_EURL, "%s: got %d, want -DAFS_EURL", url, r);
	ck_assert_int_eq(((unsigned char *)&u)[0], 0x5a);
	ck_assert_int_eq(((unsigned char *)&u)[sizeof(u) - 1], 0x5a);
}

START_TEST(url_basic)
{
	parse_ok("tcp://localhost:4821/data", "tcp", "localhost", 4821, "data",
		 "");
	parse_ok("tcp://localhost/data", "tcp", "localhost", DAFS_DEFAULT_PORT,
		 "data", "");
	parse_ok("rdma://node7.example.org:1/scratch/a/b", "rdma",
		 "node7.example.org", 1, "scratch", "/a/b");
	parse_ok("tcp://10.0.0.1:65535/e/f", "tcp", "10.0.0.1", 65535, "e",
		 "/f");
	parse_ok("TCP://h/e", "tcp", "h", DAFS_DEFAULT_PORT, "e", "");
	parse_ok("RdMa://h/e", "rdma", "h", DAFS_DEFAULT_PORT, "e", "");
	parse_ok("tcp://h:04820/e", "tcp", "h", 4820, "e", "");
	parse_ok("tcp://my_host-1./e", "tcp", "my_host-1.", DAFS_DEFAULT_PORT,
		 "e", "");
}
END_TEST

START_TEST(url_ipv6)
{
	parse_ok("tcp://[::1]:4820/e", "tcp", "::1", 4820, "e", "");
	parse_ok("tcp://[::1]/e/x", "tcp", "::1", DAFS_DEFAULT_PORT, "e", "/x");
	parse_ok("rdma://[fe80::1:2:3:4]:99/e", "rdma", "fe80::1:2:3:4", 99,
		 "e", "");
	parse_ok("tcp://[::ffff:192.0.2.1]/e", "tcp", "::ffff:192.0.2.1",
		 DAFS_DEFAULT_PORT, "e", "");
	parse_ok("tcp://[fe80::1%eth0]/e", "tcp", "fe80::1%eth0",
		 DAFS_DEFAULT_PORT, "e", "");
	/* "%25" alone is the numeric zone 25, not an encoded empty zone */
	parse_ok("tcp://[fe80::1%25]/e", "tcp", "fe80::1%25", DAFS_DEFAULT_PORT,
		 "e", "");
	parse_ok("tcp://[fe80::1%25eth0]:7/e", "tcp", "fe80::1%eth0", 7, "e",
		 "");
}
END_TEST

START_TEST(url_path)
{
	parse_ok("tcp://h/e/", "tcp", "h", DAFS_DEFAULT_PORT, "e", "");
	parse_ok("tcp://h/e//", "tcp", "h", DAFS_DEFAULT_PORT, "e", "");
	parse_ok("tcp://h/e//a///b//", "tcp", "h", DAFS_DEFAULT_PORT, "e",
		 "/a/b");
	parse_ok("tcp://h/e/a/./../b", "tcp", "h", DAFS_DEFAULT_PORT, "e",
		 "/a/./../b");
	parse_ok("tcp://h/e/with space/100%/q?x#y", "tcp", "h",
		 DAFS_DEFAULT_PORT, "e", "/with space/100%/q?x#y");
	parse_ok("tcp://h/e:x/a:b", "tcp", "h", DAFS_DEFAULT_PORT, "e:x",
		 "/a:b");
}
END_TEST

START_TEST(url_bad_form)
{
	static const char *const bad[] = {
		"",
		"tcp",
		"tcp:/h/e",
		"tcp//h/e",
		"://h/e",
		"udp://h/e",
		"http://h/e",
		"tcpx://h/e",
		"verylongscheme://h/e",
		"tcp://",
		"tcp:///e",
		"tcp://h",
		"tcp://h/",
		"tcp://h//e",
		"tcp://h:4820",
		"tcp://h:4820/",
		"tcp://h/./x",
		"tcp://h/../x",
		"tcp://h/.",
		"tcp://h:/e",
		"tcp://h:0/e",
		"tcp://h:65536/e",
		"tcp://h:99999999999999999999/e",
		"tcp://h:-1/e",
		"tcp://h:+1/e",
		"tcp://h: 1/e",
		"tcp://h:1x/e",
		"tcp://h:1:2/e",
		"tcp://user@h/e",
		"tcp://h h/e",
		"tcp://.h/e",
		"tcp://a..b/e",
		"tcp://./e",
		"tcp://::1/e",
		"tcp://[::1/e",
		"tcp://[]/e",
		"tcp://[::1]x/e",
		"tcp://[::1]:/e",
		"tcp://[::g]/e",
		"tcp://[1.2.3.4]/e",
		"tcp://[fe80::1%]/e",
		"tcp://[fe80::1%%eth0]/e",
		"tcp://[fe80::1%e/th]/e",
		"tcp://[::1]]/e",
	};
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		parse_bad(bad[i]);
}
END_TEST

START_TEST(url_null)
{
	dafs_url_t u;

	ck_assert_int_eq(dafs_url_parse(NULL, &u), -DAFS_EURL);
	ck_assert_int_eq(dafs_url_parse("tcp://h/e", NULL), -DAFS_EURL);
}
END_TEST

/* Build "tcp://HOST/EXPORT" + PATH with fields of chosen lengths. */
static char *make_url(size_t hostlen, size_t exportlen, size_t pathlen)
{
	size_t n = 6 + hostlen + 1 + exportlen + pathlen + 1, i;
	char *s = malloc(n), *p = s;

	ck_assert_ptr_nonnull(s);
	p += sprintf(p, "tcp://");
	/* labels of 50 characters, so the 63-character label limit holds */
	for (i = 0; i < hostlen; i++)
		*p++ = (i % 51 == 50) ? '.' : 'h';
	*p++ = '/';
	memset(p, 'e', exportlen);
	p += exportlen;
	for (i = 0; i < pathlen; i++)
		*p++ = (i % 100 == 0) ? '/' : 'p';
	*p = '\0';
	return s;
}

START_TEST(url_limits)
{
	dafs_url_t u;
	char *s;

	/* Host: 255 characters fit, 256 do not. */
	s = make_url(255, 1, 0);
	ck_assert_int_eq(dafs_url_parse(s, &u), 0);
	ck_assert_uint_eq(strlen(u.host), 255);
	free(s);
	s = make_url(256, 1, 0);
	parse_bad(s);
	free(s);

	/* Export: DAFS_NAME_MAX fits, one more does not. */
	s = make_url(1, DAFS_NAME_MAX, 0);
	ck_assert_int_eq(dafs_url_parse(s, &u), 0);
	ck_assert_uint_eq(strlen(u.export_), DAFS_NAME_MAX);
	free(s);
	s = make_url(1, DAFS_NAME_MAX + 1, 0);
	parse_bad(s);
	free(s);

	/* Path: DAFS_PATH_MAX fits, one more does not. */
	s = make_url(1, 1, DAFS_PATH_MAX);
	ck_assert_int_eq(dafs_url_parse(s, &u), 0);
	ck_assert_uint_eq(strlen(u.path), DAFS_PATH_MAX);
	free(s);
	s = make_url(1, 1, DAFS_PATH_MAX + 1);
	parse_bad(s);
	free(s);

	/* Collapsed slashes do not count against the limit. */
	s = malloc(DAFS_PATH_MAX * 3);
	ck_assert_ptr_nonnull(s);
	strcpy(s, "tcp://h/e");
	memset(s + 9, '/', DAFS_PATH_MAX * 2);
	strcpy(s + 9 + DAFS_PATH_MAX * 2, "x");
	ck_assert_int_eq(dafs_url_parse(s, &u), 0);
	ck_assert_str_eq(u.path, "/x");
	free(s);

	/* A 63-character label is fine, 64 is not. */
	s = malloc(128);
	ck_assert_ptr_nonnull(s);
	strcpy(s, "tcp://");
	memset(s + 6, 'a', 63);
	strcpy(s + 69, "/e");
	ck_assert_int_eq(dafs_url_parse(s, &u), 0);
	memset(s + 6, 'a', 64);
	strcpy(s + 70, "/e");
	parse_bad(s);
	free(s);
}
END_TEST

START_TEST(strerror_codes)
{
	int c;
	size_t i, j;
	const char *names[DAFS_ELAST - DAFS_EBASE];

	ck_assert_str_eq(dafs_strerror(0), "success");
	for (c = DAFS_EBASE + 1; c <= DAFS_ELAST; c++) {
		const char *s = dafs_strerror(-c);

		ck_assert_ptr_nonnull(s);
		ck_assert_msg(strcmp(s, "unknown error") != 0,
			      "code %d has no name", c);
		ck_assert_uint_gt(strlen(s), 10);
		names[c - DAFS_EBASE - 1] = s;
	}
	/* Distinct names, so a message identifies its code. */
	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		for (j = i + 1; j < sizeof(names) / sizeof(names[0]); j++)
			ck_assert_str_ne(names[i], names[j]);

	ck_assert_str_eq(dafs_strerror(-DAFS_EPROTO),
			 "protocol error: malformed message (session closed)");
	ck_assert_ptr_nonnull(strstr(dafs_strerror(-DAFS_EURL), "URL"));
	ck_assert_ptr_nonnull(strstr(dafs_strerror(-DAFS_EBROKEN), "broken"));
	ck_assert_ptr_nonnull(strstr(dafs_strerror(-DAFS_ENOEXPORT), "export"));
	ck_assert_ptr_nonnull(strstr(dafs_strerror(-DAFS_EVERSION), "version"));
}
END_TEST

START_TEST(strerror_errno)
{
	ck_assert_str_eq(dafs_strerror(-ENOENT), "No such file or directory");
	ck_assert_str_eq(dafs_strerror(-EACCES), "Permission denied");
	ck_assert_str_eq(dafs_strerror(-ECONNREFUSED), "Connection refused");
	ck_assert_str_eq(dafs_strerror(-ELOOP),
			 "Too many levels of symbolic links");
	ck_assert_str_eq(dafs_strerror(-ESTALE), "Stale file handle");
}
END_TEST

START_TEST(strerror_unknown)
{
	ck_assert_str_eq(dafs_strerror(1), "unknown error");
	ck_assert_str_eq(dafs_strerror(ENOENT), "unknown error");
	ck_assert_str_eq(dafs_strerror(DAFS_EPROTO), "unknown error");
	ck_assert_str_eq(dafs_strerror(-DAFS_EBASE), "unknown error");
	ck_assert_str_eq(dafs_strerror(-DAFS_ELAST - 1), "unknown error");
	ck_assert_str_eq(dafs_strerror(-4000), "unknown error");
	ck_assert_str_eq(dafs_strerror(INT_MIN), "unknown error");
	ck_assert_str_eq(dafs_strerror(INT_MAX), "unknown error");
}
END_TEST

static Suite *url_suite(void)
{
	Suite *s = suite_create("url");
	TCase *tc = tcase_create("url");

	tcase_add_test(tc, url_basic);
	tcase_add_test(tc, url_ipv6);
	tcase_add_test(tc, url_path);
	tcase_add_test(tc, url_bad_form);
	tcase_add_test(tc, url_null);
	tcase_add_test(tc, url_limits);
	suite_add_tcase(s, tc);

	tc = tcase_create("strerror");
	tcase_add_test(tc, strerror_codes);
	tcase_add_test(tc, strerror_errno);
	tcase_add_test(tc, strerror_unknown);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(url_suite());
	int failed;

	srunner_run_all(sr, CK_ENV);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
