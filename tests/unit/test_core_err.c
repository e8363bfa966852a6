// SPDX-License-Identifier: Apache-2.0
/* Unit tests of lib/core/err.c and lib/core/dek.c: sticky errors, DEK rules. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "sealvm/dek.h"
#include "sealvm/err.h"

static void test_sticky(void **state)
{
	struct sealvm_err err = SEALVM_ERR_INIT;
	assert_false(sealvm_err_isset(&err));
	assert_int_equal(sealvm_err_set(&err, -ENOENT, "FIRST", "first %d", 1), -ENOENT);
	assert_int_equal(sealvm_err_set(&err, -EIO, "SECOND", "second"), -EIO);
	assert_true(sealvm_err_isset(&err));
	assert_int_equal(err.code, -ENOENT);
	assert_string_equal(err.reason, "FIRST");
	assert_string_equal(err.message, "first 1");
	sealvm_err_clear(&err);
	assert_int_equal(sealvm_err_set_errno(&err, -ENOSPC, NULL, "write %s", "x"), -ENOSPC);
	assert_string_equal(err.reason, "NO_SPACE");
	assert_non_null(strstr(err.message, "write x: "));
	/* NULL is allowed and still returns the code */
	assert_int_equal(sealvm_err_set(NULL, -EINVAL, "X", "y"), -EINVAL);
}

static void test_long_message_truncated(void **state)
{
	struct sealvm_err err = SEALVM_ERR_INIT;
	char big[2000];
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = 0;
	sealvm_err_set_errno(&err, -EIO, "R", "%s", big);
	assert_int_equal(strlen(err.message), sizeof(err.message) - 1);
}

static int dek_reason(const char *text, size_t len, char *reason)
{
	struct sealvm_err err = SEALVM_ERR_INIT;
	int r = sealvm_dek_validate((const unsigned char *)text, len, "test", &err);
	strcpy(reason, r < 0 ? err.reason : "OK");
	/* the message never quotes the text */
	if (r < 0 && len > 8)
		assert_null(memmem(err.message, strlen(err.message), text, len));
	return r;
}

static void test_dek_rules(void **state)
{
	char reason[64], text[600];

	strcpy(text, "q83vEjRWeJq83vEjRWeJq83vEjRWeJq83vEjRWeJq80=");
	assert_int_equal(dek_reason(text, strlen(text), reason), 0);
	assert_int_equal(dek_reason(text, 0, reason), -EINVAL);
	assert_string_equal(reason, "DEK_EMPTY");
	strcat(text, "\n");
	dek_reason(text, strlen(text), reason);
	assert_string_equal(reason, "DEK_NEWLINE");
	dek_reason("QUJDREVGR0hJSktMTU5PUFFSU1Q=", 28, reason);
	assert_string_equal(reason, "DEK_TOO_SHORT");
	memset(text, 'A', 516);
	dek_reason(text, 516, reason);
	assert_string_equal(reason, "DEK_TOO_LONG");
	assert_int_equal(dek_reason(text, 512, reason), 0); /* 512 'A's: canonical */
	dek_reason("q83vEjRWeJq83vEjRWeJq83vEjRWeJq83vEjRWe-q80=", 44, reason);
	assert_string_equal(reason, "DEK_NOT_BASE64");
	dek_reason("q83vEjRWeJq83vEjRWeJq83vEjRWeJq83vEjRWeJq81=", 44, reason);
	assert_string_equal(reason, "DEK_NOT_CANONICAL");
	dek_reason("q83vEjRWeJq83vEjRWeJq83vEjRWeJq83vEjRWeJq8", 42, reason);
	assert_string_equal(reason, "DEK_NOT_CANONICAL");
}

static void test_dek_generate(void **state)
{
	struct sealvm_err err = SEALVM_ERR_INIT;
	struct sealvm_secret *a = NULL, *b = NULL;

	assert_int_equal(sealvm_dek_generate(32, &a, &err), 0);
	assert_int_equal(a->len, 44);
	assert_int_equal(sealvm_dek_validate(a->data, a->len, "gen", &err), 0);
	assert_int_equal(sealvm_dek_generate(32, &b, &err), 0);
	assert_false(sealvm_secret_equal(a, b));
	sealvm_secret_free(a);
	sealvm_secret_free(b);
	assert_int_equal(sealvm_dek_generate(384, &a, &err), 0);
	assert_int_equal(a->len, 512);
	sealvm_secret_free(a);
	assert_int_equal(sealvm_dek_generate(22, &a, &err), 0);
	assert_int_equal(a->len, 32);
	sealvm_secret_free(a);
	assert_int_equal(sealvm_dek_generate(21, &a, &err), -EINVAL);
	assert_int_equal(sealvm_dek_generate(385, &a, NULL), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sticky),
		cmocka_unit_test(test_long_message_truncated),
		cmocka_unit_test(test_dek_rules),
		cmocka_unit_test(test_dek_generate),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
