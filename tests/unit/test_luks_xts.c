// SPDX-License-Identifier: Apache-2.0
/*
 * Unit tests of lib/luks/luks_xts.c: our batched XTS must equal OpenSSL's own
 * EVP AES-XTS sector by sector, for 512- and 4096-byte sectors, plain64 and
 * plain IVs (with wrap-around of the 32-bit counter), IV offsets, 256- and
 * 512-bit keys, both directions, and buffers larger than one batch.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "../../lib/luks/luks_internal.h"

/* Reference: one EVP XTS call per sector, IV = little-endian unit number. */
static void reference(const unsigned char *key, size_t klen, bool enc, uint32_t ss,
		      uint64_t iv_offset, bool plain64, uint64_t off, unsigned char *buf,
		      size_t len)
{
	EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
	assert_non_null(ctx);
	assert_int_equal(EVP_CipherInit_ex(ctx, klen == 64 ? EVP_aes_256_xts() : EVP_aes_128_xts(),
					   NULL, key, NULL, enc),
			 1);
	for (size_t done = 0; done < len; done += ss) {
		uint64_t unit = (off + done) / 512 + iv_offset;
		uint64_t n = plain64 ? unit : (uint32_t)unit;
		unsigned char iv[16] = {0};
		int outl;
		for (int i = 0; i < 8; i++)
			iv[i] = (unsigned char)(n >> (8 * i));
		assert_int_equal(EVP_CipherInit_ex(ctx, NULL, NULL, NULL, iv, -1), 1);
		assert_int_equal(EVP_CipherUpdate(ctx, buf + done, &outl, buf + done, (int)ss), 1);
	}
	EVP_CIPHER_CTX_free(ctx);
}

static void compare(size_t klen, uint32_t ss, uint64_t iv_offset, bool plain64, uint64_t off,
		    size_t len)
{
	unsigned char key[64];
	unsigned char *a = malloc(len), *b = malloc(len), *orig = malloc(len);
	struct luks_xts x;

	assert_non_null(a);
	assert_non_null(b);
	assert_non_null(orig);
	assert_int_equal(RAND_bytes(key, sizeof(key)), 1);
	assert_int_equal(RAND_bytes(orig, (int)len), 1);
	for (int enc = 1; enc >= 0; enc--) {
		memcpy(a, orig, len);
		memcpy(b, orig, len);
		assert_int_equal(luks_xts_init(&x, key, klen, enc, ss, iv_offset, plain64), 0);
		assert_int_equal(luks_xts_run(&x, off, a, len), 0);
		luks_xts_done(&x);
		reference(key, klen, enc, ss, iv_offset, plain64, off, b, len);
		assert_memory_equal(a, b, len);
		assert_memory_not_equal(a, orig, len);
	}
	/* and back */
	assert_int_equal(luks_xts_init(&x, key, klen, true, ss, iv_offset, plain64), 0);
	memcpy(a, orig, len);
	assert_int_equal(luks_xts_run(&x, off, a, len), 0);
	luks_xts_done(&x);
	assert_int_equal(luks_xts_init(&x, key, klen, false, ss, iv_offset, plain64), 0);
	assert_int_equal(luks_xts_run(&x, off, a, len), 0);
	luks_xts_done(&x);
	assert_memory_equal(a, orig, len);
	free(a);
	free(b);
	free(orig);
}

static void test_matches_openssl(void **state)
{
	const size_t big = 3 * LUKS_XTS_BATCH + 4096 * 3; /* several batches and a partial one */
	compare(64, 512, 0, true, 0, 512);
	compare(64, 512, 0, true, 0, big);
	compare(64, 512, 0, true, 1ull << 40, big);
	compare(64, 4096, 0, true, 0, big);
	compare(64, 4096, 0, true, 8192, 4096 * 5);
	compare(32, 512, 0, true, 0, big);
	compare(32, 4096, 0, false, 0, big);
	compare(64, 512, 7, true, 512 * 3, 512 * 9);
	/* plain: the 32-bit counter wraps; plain64 does not */
	compare(64, 512, 0, false, ((1ull << 32) - 5) * 512, 512 * 64);
	compare(64, 512, 0, true, ((1ull << 32) - 5) * 512, 512 * 64);
}

static void test_rejects(void **state)
{
	unsigned char key[64] = {0}, buf[1024];
	struct luks_xts x;

	assert_int_equal(luks_xts_init(&x, key, 48, true, 512, 0, true), -EINVAL);
	assert_int_equal(luks_xts_init(&x, key, 64, true, 1000, 0, true), -EINVAL);
	assert_int_equal(luks_xts_init(&x, key, 64, true, 8192, 0, true), -EINVAL);
	/* equal halves: refused to encrypt, allowed to decrypt (as OpenSSL and dm-crypt do) */
	assert_int_equal(luks_xts_init(&x, key, 64, true, 512, 0, true), -EINVAL);
	assert_int_equal(luks_xts_init(&x, key, 64, false, 512, 0, true), 0);
	assert_int_equal(luks_xts_run(&x, 100, buf, 512), -EINVAL); /* unaligned offset */
	assert_int_equal(luks_xts_run(&x, 0, buf, 500), -EINVAL);   /* partial sector */
	luks_xts_done(&x);
	luks_xts_done(&x); /* twice is harmless */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_matches_openssl),
		cmocka_unit_test(test_rejects),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
