// SPDX-License-Identifier: Apache-2.0
/* Unit tests of lib/core/secret.c: allocation, locking flags, file reads, equality. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <pthread.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "sealvm/secret.h"

static void test_new_random_from(void **state)
{
	struct sealvm_secret *s = NULL, *t = NULL;

	assert_int_equal(sealvm_secret_new(100, &s), 0);
	assert_int_equal(s->len, 0);
	assert_int_equal(s->cap, 100);
	for (size_t i = 0; i <= 100; i++)
		assert_int_equal(s->data[i], 0);
	sealvm_secret_free(s);

	assert_int_equal(sealvm_secret_random(64, &s), 0);
	assert_int_equal(s->len, 64);
	assert_int_equal(sealvm_secret_from(s->data, s->len, &t), 0);
	assert_true(sealvm_secret_equal(s, t));
	t->data[63] ^= 1;
	assert_false(sealvm_secret_equal(s, t));
	t->len = 63;
	assert_false(sealvm_secret_equal(s, t));
	sealvm_secret_free(s);
	sealvm_secret_free(t);
	sealvm_secret_free(NULL);

	assert_int_equal(sealvm_secret_new(SEALVM_SECRET_MAX + 1, &s), -E2BIG);
}

static void test_read_file(void **state)
{
	char dir[] = "/tmp/sealvm-test-XXXXXX", path[64];
	struct sealvm_secret *s = NULL;
	struct sealvm_err err = SEALVM_ERR_INIT;

	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/key", dir);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs("abc\n", f);
	fclose(f);

	assert_int_equal(sealvm_secret_read_file(path, 16, &s, &err), 0);
	assert_int_equal(s->len, 4); /* the newline is kept: the caller decides */
	assert_memory_equal(s->data, "abc\n", 4);
	assert_int_equal(s->data[4], 0);
	sealvm_secret_free(s);

	assert_int_equal(sealvm_secret_read_file(path, 3, &s, &err), -E2BIG);
	assert_string_equal(err.reason, "KEY_FILE_TOO_LARGE");
	sealvm_err_clear(&err);
	assert_int_equal(sealvm_secret_read_file(dir, 3, &s, &err), -EISDIR);
	sealvm_err_clear(&err);
	unlink(path);
	assert_int_equal(sealvm_secret_read_file(path, 3, &s, &err), -ENOENT);
	assert_non_null(strstr(err.message, path));
	rmdir(dir);
}

/*
 * Small secrets come from a pool of reused slots: every size up to past the
 * pool's largest class works to its full capacity, neighbours do not touch,
 * and a slot handed out again is zeroed (it was wiped when freed).
 */
static void test_sizes_and_reuse(void **state)
{
	enum { N = 64 };
	struct sealvm_secret *s[N];
	static const size_t caps[] = {0, 1, 31, 32, 200, 215, 216, 217, 990, 991, 992, 1000, 3000};
	for (size_t k = 0; k < sizeof(caps) / sizeof(caps[0]); k++) {
		for (int i = 0; i < N; i++) {
			assert_int_equal(sealvm_secret_new(caps[k], &s[i]), 0);
			assert_int_equal(s[i]->cap, caps[k]);
			assert_int_equal(s[i]->len, 0);
			for (size_t b = 0; b <= caps[k]; b++)
				assert_int_equal(s[i]->data[b], 0);
			memset(s[i]->data, 0xA0 + i, caps[k]);
			s[i]->data[caps[k]] = 0;
		}
		for (int i = 0; i < N; i++)
			for (size_t b = 0; b < caps[k]; b++)
				assert_int_equal(s[i]->data[b], (unsigned char)(0xA0 + i));
		for (int i = 0; i < N; i++)
			sealvm_secret_free(s[i]);
	}
	/* two live secrets never share a slot */
	struct sealvm_secret *a, *b;
	assert_int_equal(sealvm_secret_from("0123456789abcdef", 16, &a), 0);
	assert_int_equal(sealvm_secret_from("0123456789abcdef", 16, &b), 0);
	assert_true(sealvm_secret_equal(a, b));
	assert_true(a->data != b->data);
	sealvm_secret_free(a);
	sealvm_secret_free(b);
}

static void *churn(void *arg)
{
	for (int i = 0; i < 20000; i++) {
		struct sealvm_secret *s;
		if (sealvm_secret_random(32 + (size_t)(i % 300), &s) != 0)
			return (void *)1;
		unsigned char first = s->data[0];
		s->data[0] = first;
		sealvm_secret_free(s);
	}
	return arg;
}

static void test_threads(void **state)
{
	pthread_t t[4];
	for (int i = 0; i < 4; i++)
		assert_int_equal(pthread_create(&t[i], NULL, churn, NULL), 0);
	for (int i = 0; i < 4; i++) {
		void *r;
		pthread_join(t[i], &r);
		assert_null(r);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_new_random_from),
		cmocka_unit_test(test_read_file),
		cmocka_unit_test(test_sizes_and_reuse),
		cmocka_unit_test(test_threads),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
