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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_new_random_from),
		cmocka_unit_test(test_read_file),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
