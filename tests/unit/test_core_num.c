// SPDX-License-Identifier: Apache-2.0
/* Unit tests of lib/core/num.c: strict decimal and size parsing. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "sealvm/num.h"

static void test_u64(void **state)
{
	uint64_t v = 7;
	assert_int_equal(sealvm_parse_u64("0", 0, 10, &v), 0);
	assert_int_equal(v, 0);
	assert_int_equal(sealvm_parse_u64("18446744073709551615", 0, UINT64_MAX, &v), 0);
	assert_true(v == UINT64_MAX);
	assert_int_equal(sealvm_parse_u64("18446744073709551616", 0, UINT64_MAX, &v), -ERANGE);
	assert_int_equal(sealvm_parse_u64("11", 0, 10, &v), -ERANGE);
	assert_int_equal(sealvm_parse_u64("4", 5, 10, &v), -ERANGE);
	v = 99;
	static const char *const bad[] = {"", "-1", "+1", " 1", "1 ", "0x10", "1e3", "1.0", "abc"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(sealvm_parse_u64(bad[i], 0, UINT64_MAX, &v), -EINVAL);
	assert_int_equal(v, 99); /* untouched on failure */
	assert_int_equal(sealvm_parse_u64(NULL, 0, 1, &v), -EINVAL);
}

static void test_uint(void **state)
{
	unsigned u;
	assert_int_equal(sealvm_parse_uint("256", 1, 256, &u), 0);
	assert_int_equal(u, 256);
	assert_int_equal(sealvm_parse_uint("257", 1, 256, &u), -ERANGE);
	assert_int_equal(sealvm_parse_uint("0", 1, 256, &u), -ERANGE);
}

static void test_size(void **state)
{
	uint64_t v;
	assert_int_equal(sealvm_parse_size("4096", 0, UINT64_MAX, &v), 0);
	assert_true(v == 4096);
	assert_int_equal(sealvm_parse_size("64K", 0, UINT64_MAX, &v), 0);
	assert_true(v == 65536);
	assert_int_equal(sealvm_parse_size("2MiB", 0, UINT64_MAX, &v), 0);
	assert_true(v == 2u << 20);
	assert_int_equal(sealvm_parse_size("1G", 0, UINT64_MAX, &v), 0);
	assert_true(v == 1u << 30);
	assert_int_equal(sealvm_parse_size("3T", 0, UINT64_MAX, &v), 0);
	assert_true(v == 3ull << 40);
	assert_int_equal(sealvm_parse_size("16777216T", 0, UINT64_MAX, &v), -ERANGE);
	assert_int_equal(sealvm_parse_size("1X", 0, UINT64_MAX, &v), -EINVAL);
	assert_int_equal(sealvm_parse_size("G", 0, UINT64_MAX, &v), -EINVAL);
	assert_int_equal(sealvm_parse_size("1 G", 0, UINT64_MAX, &v), -EINVAL);
	assert_int_equal(sealvm_parse_size("2G", 0, 1u << 30, &v), -ERANGE);
}

static void test_format_size(void **state)
{
	char buf[32];
	assert_string_equal(sealvm_format_size(512, buf, sizeof(buf)), "512 B");
	assert_string_equal(sealvm_format_size(1536, buf, sizeof(buf)), "1.5 KiB");
	assert_string_equal(sealvm_format_size(2ull << 30, buf, sizeof(buf)), "2.0 GiB");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_u64),
		cmocka_unit_test(test_uint),
		cmocka_unit_test(test_size),
		cmocka_unit_test(test_format_size),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
