// SPDX-License-Identifier: Apache-2.0
/* Unit tests of lib/core/b64.c: RFC 4648 vectors, strictness, round trips. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/rand.h>

#include "sealvm/b64.h"

static void test_rfc4648_vectors(void **state)
{
	static const char *const plain[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
	static const char *const enc[] = {"",	      "Zg==",	  "Zm8=",    "Zm9v",
					  "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
	static const char *const url[] = {"", "Zg", "Zm8", "Zm9v", "Zm9vYg", "Zm9vYmE", "Zm9vYmFy"};
	char out[64];
	unsigned char dec[64];

	for (size_t i = 0; i < 7; i++) {
		size_t n = strlen(plain[i]);
		assert_int_equal(sealvm_b64_encode(plain[i], n, out, false), strlen(enc[i]));
		assert_string_equal(out, enc[i]);
		assert_int_equal(sealvm_b64_encoded_len(n, false), strlen(enc[i]));
		assert_int_equal(sealvm_b64_encode(plain[i], n, out, true), strlen(url[i]));
		assert_string_equal(out, url[i]);
		long r = sealvm_b64_decode(enc[i], strlen(enc[i]), dec, false);
		assert_int_equal(r, (long)n);
		assert_memory_equal(dec, plain[i], n);
		r = sealvm_b64_decode(url[i], strlen(url[i]), dec, true);
		assert_int_equal(r, (long)n);
		assert_memory_equal(dec, plain[i], n);
	}
}

static void test_alphabets(void **state)
{
	unsigned char bytes[] = {0xfb, 0xff, 0xbf};
	char out[8];
	unsigned char dec[8];

	sealvm_b64_encode(bytes, 3, out, false);
	assert_string_equal(out, "+/+/");
	sealvm_b64_encode(bytes, 3, out, true);
	assert_string_equal(out, "-_-_");
	assert_true(sealvm_b64_decode("-_-_", 4, dec, false) < 0);
	assert_true(sealvm_b64_decode("+/+/", 4, dec, true) < 0);
}

static void test_rejects_non_canonical(void **state)
{
	unsigned char dec[64];
	static const char *const bad[] = {
		"Zh==",	     /* unused bits set */
		"Zm9=",	     /* unused bits set */
		"Zg=",	     /* short padding */
		"Zg",	     /* missing padding */
		"Zg===",     /* bad length */
		"Z===",	     /* one symbol */
		"=Zg=",	     /* padding first */
		"Zm=v",	     /* padding inside */
		"Zm9v\n",    /* newline */
		" Zm9v",     /* space */
		"Zm9v YmFy", /* inner space */
		"Zm9*",	     /* outside the alphabet */
		"Zm9v\0mFy", /* NUL */
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		size_t n = i == 12 ? 8 : strlen(bad[i]);
		assert_true(sealvm_b64_decode(bad[i], n, dec, false) < 0);
		assert_false(sealvm_b64_is_canonical(bad[i], n));
	}
	/* base64url: padding is not allowed, unused bits must be zero, length % 4 != 1 */
	assert_true(sealvm_b64_decode("Zg==", 4, dec, true) < 0);
	assert_true(sealvm_b64_decode("Zh", 2, dec, true) < 0);
	assert_true(sealvm_b64_decode("Zm9vY", 5, dec, true) < 0);
}

static void test_round_trip_random(void **state)
{
	unsigned char in[400], dec[600];
	char enc[700];

	for (size_t n = 0; n < sizeof(in); n += 7) {
		assert_int_equal(RAND_bytes(in, (int)sizeof(in)), 1);
		for (int url = 0; url <= 1; url++) {
			size_t e = sealvm_b64_encode(in, n, enc, url);
			assert_int_equal(e, sealvm_b64_encoded_len(n, url));
			long d = sealvm_b64_decode(enc, e, dec, url);
			assert_int_equal(d, (long)n);
			assert_memory_equal(dec, in, n);
			if (!url && n > 0)
				assert_true(sealvm_b64_is_canonical(enc, e));
		}
	}
}

/* Changing any one character of a canonical text must change the value or be refused. */
static void test_every_change_detected(void **state)
{
	unsigned char in[32], dec[64];
	char enc[64];
	assert_int_equal(RAND_bytes(in, sizeof(in)), 1);
	size_t e = sealvm_b64_encode(in, sizeof(in), enc, true);
	for (size_t i = 0; i < e; i++) {
		char saved = enc[i];
		for (int c = 1; c < 256; c++) {
			if (c == saved)
				continue;
			enc[i] = (char)c;
			long d = sealvm_b64_decode(enc, e, dec, true);
			if (d >= 0)
				assert_memory_not_equal(dec, in, sizeof(in));
		}
		enc[i] = saved;
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rfc4648_vectors),
		cmocka_unit_test(test_alphabets),
		cmocka_unit_test(test_rejects_non_canonical),
		cmocka_unit_test(test_round_trip_random),
		cmocka_unit_test(test_every_change_detected),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
