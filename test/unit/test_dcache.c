/*
 * test_dcache.c - libdafs's data cache (src/cache/dcache.c) on its own,
 * with an in-memory "server file" behind the fill callback that counts its
 * reads: a miss then hits, reads across blocks, the end of the file in a
 * short block, LRU eviction under the byte limit, validation by the change
 * attribute, writes and invalidation dropping blocks, a fill across an
 * invalidation not kept, and the LMDB form surviving a close and reopen.
 */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cache/dcache.h"

struct server_file {
	uint8_t *data;
	size_t size;
	int fills;
	struct dcache *invalidate_during; /* a recall while a fill runs */
	dafs_fh_t fh;
};

static ssize_t fill(void *arg, uint64_t blk, void *buf)
{
	struct server_file *sf = arg;
	uint64_t off = blk * DC_BLOCK;
	size_t n;

	sf->fills++;
	if (sf->invalidate_during)
		dc_invalidate(sf->invalidate_during, &sf->fh);
	if (off >= sf->size)
		return 0;
	n = sf->size - off < DC_BLOCK ? sf->size - off : DC_BLOCK;
	memcpy(buf, sf->data + off, n);
	return (ssize_t)n;
}

static void server_file(struct server_file *sf, size_t size, int seed,
			int id)
{
	memset(sf, 0, sizeof(*sf));
	sf->data = malloc(size ? size : 1);
	ck_assert_ptr_nonnull(sf->data);
	for (size_t i = 0; i < size; i++)
		sf->data[i] = (uint8_t)(i * 7 + (size_t)seed);
	sf->size = size;
	sf->fh.len = 8;
	memset(sf->fh.data, id, 8);
}

static void read_check(struct dcache *dc, struct server_file *sf,
		       uint64_t off, size_t len)
{
	uint8_t *buf = malloc(len ? len : 1);
	size_t want = off >= sf->size	      ? 0
		      : sf->size - off < len ? sf->size - off
					      : len;
	ssize_t n = dc_read(dc, &sf->fh, off, buf, len, fill, sf);

	ck_assert_int_eq(n, (ssize_t)want);
	ck_assert(memcmp(buf, sf->data + off, want) == 0);
	free(buf);
}

START_TEST(hit_after_miss)
{
	struct server_file sf;
	struct dcache *dc;
	struct dc_stats st;

	server_file(&sf, 300000, 1, 1); /* 4 full blocks and a short one */
	ck_assert_int_eq(dc_open(&dc, 16u << 20, NULL), 0);
	ck_assert_int_eq(dc_validate(dc, &sf.fh, 5), 0);
	read_check(dc, &sf, 1000, 200000); /* blocks 0..3 */
	ck_assert_int_eq(sf.fills, 4);
	read_check(dc, &sf, 0, 300000);
	ck_assert_int_eq(sf.fills, 5); /* only the short last block */
	read_check(dc, &sf, 100, 50);
	read_check(dc, &sf, 290000, 100000); /* past the end: short */
	read_check(dc, &sf, 300000, 10);     /* at the end: nothing */
	read_check(dc, &sf, 400000, 10);     /* beyond */
	ck_assert_int_eq(sf.fills, 5);
	dc_stats(dc, &st);
	ck_assert_uint_eq(st.blocks, 5);
	ck_assert_uint_eq(st.bytes, 300000);
	ck_assert_uint_eq(st.misses, 5);
	ck_assert_uint_ge(st.hits, 7);
	/* the same change keeps the blocks */
	ck_assert_int_eq(dc_validate(dc, &sf.fh, 5), 1);
	read_check(dc, &sf, 0, 300000);
	ck_assert_int_eq(sf.fills, 5);
	dc_close(dc);
	free(sf.data);
}
END_TEST

START_TEST(lru_eviction)
{
	struct server_file a, b;
	struct dcache *dc;
	struct dc_stats st;

	server_file(&a, 4 * DC_BLOCK, 2, 2);
	server_file(&b, 4 * DC_BLOCK, 3, 3);
	ck_assert_int_eq(dc_open(&dc, 3 * DC_BLOCK, NULL), 0);
	read_check(dc, &a, 0, 3 * DC_BLOCK); /* a0 a1 a2 */
	read_check(dc, &a, 0, 1);	      /* a0 most recent */
	read_check(dc, &b, 0, DC_BLOCK);      /* evicts a1 */
	dc_stats(dc, &st);
	ck_assert_uint_eq(st.blocks, 3);
	ck_assert_uint_eq(st.evictions, 1);
	ck_assert_uint_le(st.bytes, 3 * DC_BLOCK);
	a.fills = 0;
	read_check(dc, &a, 0, 1);	 /* a0: still there */
	read_check(dc, &a, 2 * DC_BLOCK, 1); /* a2: still there */
	ck_assert_int_eq(a.fills, 0);
	read_check(dc, &a, DC_BLOCK, 1); /* a1: gone, read again */
	ck_assert_int_eq(a.fills, 1);
	dc_close(dc);
	free(a.data);
	free(b.data);
}
END_TEST

START_TEST(change_write_invalidate)
{
	struct server_file sf;
	struct dcache *dc;
	struct dc_stats st;

	server_file(&sf, 3 * DC_BLOCK + 100, 4, 4);
	ck_assert_int_eq(dc_open(&dc, 1u << 20, NULL), 0);
	dc_validate(dc, &sf.fh, 1);
	read_check(dc, &sf, 0, sf.size);
	ck_assert_int_eq(sf.fills, 4);
	/* another change attribute at the next open: all blocks go */
	ck_assert_int_eq(dc_validate(dc, &sf.fh, 2), 0);
	dc_stats(dc, &st);
	ck_assert_uint_eq(st.blocks, 0);
	ck_assert_uint_eq(st.invalidations, 1);
	read_check(dc, &sf, 0, sf.size);
	ck_assert_int_eq(sf.fills, 8);
	/* a write in block 1 drops block 1 and the short last block */
	sf.data[DC_BLOCK + 5] ^= 0xff;
	dc_write(dc, &sf.fh, DC_BLOCK + 5, 1);
	sf.fills = 0;
	read_check(dc, &sf, 0, sf.size);
	ck_assert_int_eq(sf.fills, 2);
	/* invalidate: everything read again */
	dc_invalidate(dc, &sf.fh);
	sf.fills = 0;
	read_check(dc, &sf, 0, sf.size);
	ck_assert_int_eq(sf.fills, 4);
	/* a fill across an invalidation (a recall) returns its bytes but
	 * is not kept */
	dc_invalidate(dc, &sf.fh);
	sf.invalidate_during = dc;
	sf.fills = 0;
	read_check(dc, &sf, 0, 10);
	sf.invalidate_during = NULL;
	read_check(dc, &sf, 0, 10);
	ck_assert_int_eq(sf.fills, 2);
	dc_close(dc);
	free(sf.data);
}
END_TEST

START_TEST(persistent)
{
	char dir[] = "/tmp/dcache-test.XXXXXX", cmd[128];
	struct server_file sf, sg;
	struct dcache *dc;
	struct dc_stats st;

	ck_assert_ptr_nonnull(mkdtemp(dir));
	server_file(&sf, 2 * DC_BLOCK + 7, 5, 5);
	server_file(&sg, 1000, 6, 6);
	ck_assert_int_eq(dc_open(&dc, 1u << 20, dir), 0);
	{
		struct dcache *second;

		/* one process (one cache) per directory */
		ck_assert_int_eq(dc_open(&second, 1u << 20, dir), -EBUSY);
	}
	dc_validate(dc, &sf.fh, 77);
	dc_validate(dc, &sg.fh, 88);
	read_check(dc, &sf, 0, sf.size);
	read_check(dc, &sg, 0, sg.size);
	ck_assert_int_eq(sf.fills + sg.fills, 4);
	dc_close(dc);

	/* a new process: the blocks are back, used if the change matches */
	ck_assert_int_eq(dc_open(&dc, 1u << 20, dir), 0);
	dc_stats(dc, &st);
	ck_assert_int_eq(st.persistent, 1);
	ck_assert_uint_eq(st.blocks, 4);
	ck_assert_uint_eq(st.bytes, sf.size + sg.size);
	ck_assert_int_eq(dc_validate(dc, &sf.fh, 77), 1);
	sf.fills = 0;
	read_check(dc, &sf, 0, sf.size);
	ck_assert_int_eq(sf.fills, 0);
	/* g changed on the server meanwhile: its blocks go */
	sg.data[3] ^= 1;
	ck_assert_int_eq(dc_validate(dc, &sg.fh, 89), 0);
	sg.fills = 0;
	read_check(dc, &sg, 0, sg.size);
	ck_assert_int_eq(sg.fills, 1);
	dc_close(dc);

	/* and the new bytes are what the next process finds */
	ck_assert_int_eq(dc_open(&dc, 1u << 20, dir), 0);
	ck_assert_int_eq(dc_validate(dc, &sg.fh, 89), 1);
	sg.fills = 0;
	read_check(dc, &sg, 0, sg.size);
	ck_assert_int_eq(sg.fills, 0);
	dc_close(dc);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	ck_assert_int_eq(system(cmd), 0);
	free(sf.data);
	free(sg.data);
}
END_TEST

START_TEST(bad_dir)
{
	struct dcache *dc;

	ck_assert_int_lt(dc_open(&dc, 1u << 20, "/proc/self/no/such/dir"), 0);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("dcache");
	TCase *t = tcase_create("core");
	SRunner *r;
	int failed;

	tcase_add_test(t, hit_after_miss);
	tcase_add_test(t, lru_eviction);
	tcase_add_test(t, change_write_invalidate);
	tcase_add_test(t, persistent);
	tcase_add_test(t, bad_dir);
	suite_add_tcase(s, t);
	r = srunner_create(s);
	srunner_run_all(r, CK_ENV);
	failed = srunner_ntests_failed(r);
	srunner_free(r);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
