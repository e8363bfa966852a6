// SPDX-License-Identifier: Apache-2.0
/*
 * s3_checksum.c — the running checksums S3 clients declare: CRC32 (zlib),
 * CRC32C (SSE4.2 instruction when the CPU has it, else slicing-by-8 tables),
 * SHA-1, SHA-256 and MD5 (OpenSSL EVP), and the check of a declared base64
 * value (see s3.h).
 *
 * These run over whole object bodies, so they are on the data path: no
 * allocation per update, no copies.
 */
#include <errno.h>
#include <pthread.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <zlib.h>

#if defined(__x86_64__)
#include <nmmintrin.h>
#endif

#include "sealvm/b64.h"
#include "sealvm/s3.h"

#include "s3_internal.h"

/* ---- CRC32C ------------------------------------------------------------------------- */

static uint32_t crc32c_table[8][256];
static pthread_once_t crc32c_once = PTHREAD_ONCE_INIT;

static void crc32c_init_tables(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;
		for (int k = 0; k < 8; k++)
			c = c & 1 ? (c >> 1) ^ 0x82f63b78u : c >> 1;
		crc32c_table[0][i] = c;
	}
	for (uint32_t i = 0; i < 256; i++)
		for (int t = 1; t < 8; t++)
			crc32c_table[t][i] = (crc32c_table[t - 1][i] >> 8) ^
					     crc32c_table[0][crc32c_table[t - 1][i] & 0xff];
}

uint32_t s3_crc32c_sw(uint32_t c, const unsigned char *p, size_t n)
{
	pthread_once(&crc32c_once, crc32c_init_tables);
	while (n && ((uintptr_t)p & 7)) {
		c = (c >> 8) ^ crc32c_table[0][(c ^ *p++) & 0xff];
		n--;
	}
	while (n >= 8) {
		uint32_t lo, hi;
		memcpy(&lo, p, 4);
		memcpy(&hi, p + 4, 4);
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
		lo = __builtin_bswap32(lo);
		hi = __builtin_bswap32(hi);
#endif
		lo ^= c;
		c = crc32c_table[7][lo & 0xff] ^ crc32c_table[6][(lo >> 8) & 0xff] ^
		    crc32c_table[5][(lo >> 16) & 0xff] ^ crc32c_table[4][lo >> 24] ^
		    crc32c_table[3][hi & 0xff] ^ crc32c_table[2][(hi >> 8) & 0xff] ^
		    crc32c_table[1][(hi >> 16) & 0xff] ^ crc32c_table[0][hi >> 24];
		p += 8;
		n -= 8;
	}
	while (n--)
		c = (c >> 8) ^ crc32c_table[0][(c ^ *p++) & 0xff];
	return c;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) uint32_t s3_crc32c_hw(uint32_t c, const unsigned char *p,
							size_t n)
{
	uint64_t c64;
	while (n && ((uintptr_t)p & 7)) {
		c = _mm_crc32_u8(c, *p++);
		n--;
	}
	c64 = c;
	while (n >= 8) {
		uint64_t v;
		memcpy(&v, p, 8);
		c64 = _mm_crc32_u64(c64, v);
		p += 8;
		n -= 8;
	}
	c = (uint32_t)c64;
	while (n--)
		c = _mm_crc32_u8(c, *p++);
	return c;
}

bool s3_crc32c_has_hw(void)
{
	return __builtin_cpu_supports("sse4.2");
}
#else
uint32_t s3_crc32c_hw(uint32_t c, const unsigned char *p, size_t n)
{
	return s3_crc32c_sw(c, p, n);
}

bool s3_crc32c_has_hw(void)
{
	return false;
}
#endif

uint32_t s3_crc32c(uint32_t crc, const void *data, size_t len)
{
	uint32_t c = ~crc;
#if defined(__x86_64__)
	if (s3_crc32c_has_hw())
		return ~s3_crc32c_hw(c, data, len);
#endif
	return ~s3_crc32c_sw(c, data, len);
}

/* ---- the running checksum ----------------------------------------------------------- */

static const EVP_MD *md_of(enum s3_checksum_alg alg)
{
	switch (alg) {
	case S3_CHECKSUM_SHA1:
		return EVP_sha1();
	case S3_CHECKSUM_SHA256:
		return EVP_sha256();
	case S3_CHECKSUM_MD5:
		return EVP_md5();
	default:
		return NULL;
	}
}

size_t s3_checksum_len(enum s3_checksum_alg alg)
{
	switch (alg) {
	case S3_CHECKSUM_CRC32:
	case S3_CHECKSUM_CRC32C:
		return 4;
	case S3_CHECKSUM_SHA1:
		return 20;
	case S3_CHECKSUM_SHA256:
		return 32;
	case S3_CHECKSUM_MD5:
		return 16;
	default:
		return 0;
	}
}

int s3_checksum_init(struct s3_checksum *c, enum s3_checksum_alg alg)
{
	memset(c, 0, sizeof(*c));
	switch (alg) {
	case S3_CHECKSUM_CRC32:
	case S3_CHECKSUM_CRC32C:
		c->alg = alg;
		c->crc = 0;
		return 0;
	case S3_CHECKSUM_SHA1:
	case S3_CHECKSUM_SHA256:
	case S3_CHECKSUM_MD5: {
		EVP_MD_CTX *ctx = EVP_MD_CTX_new();
		if (!ctx)
			return -ENOMEM;
		if (EVP_DigestInit_ex(ctx, md_of(alg), NULL) != 1) {
			EVP_MD_CTX_free(ctx);
			return -EIO;
		}
		c->alg = alg;
		c->md = ctx;
		return 0;
	}
	default:
		return -EINVAL;
	}
}

void s3_checksum_update(struct s3_checksum *c, const void *data, size_t len)
{
	switch (c->alg) {
	case S3_CHECKSUM_CRC32:
		c->crc = (uint32_t)crc32_z(c->crc, data, len);
		break;
	case S3_CHECKSUM_CRC32C:
		c->crc = s3_crc32c(c->crc, data, len);
		break;
	default:
		if (c->md)
			(void)EVP_DigestUpdate(c->md, data, len);
		break;
	}
}

int s3_checksum_final(struct s3_checksum *c, unsigned char out[S3_CHECKSUM_MAX])
{
	unsigned int n = 0;
	switch (c->alg) {
	case S3_CHECKSUM_CRC32:
	case S3_CHECKSUM_CRC32C:
		out[0] = (unsigned char)(c->crc >> 24);
		out[1] = (unsigned char)(c->crc >> 16);
		out[2] = (unsigned char)(c->crc >> 8);
		out[3] = (unsigned char)c->crc;
		c->alg = S3_CHECKSUM_NONE;
		return 4;
	case S3_CHECKSUM_SHA1:
	case S3_CHECKSUM_SHA256:
	case S3_CHECKSUM_MD5:
		if (!c->md || EVP_DigestFinal_ex(c->md, out, &n) != 1)
			return -EIO;
		s3_checksum_done(c);
		return (int)n;
	default:
		return -EINVAL;
	}
}

void s3_checksum_done(struct s3_checksum *c)
{
	if (!c)
		return;
	EVP_MD_CTX_free(c->md);
	memset(c, 0, sizeof(*c));
}

static const struct {
	enum s3_checksum_alg alg;
	const char *header;
	const char *algorithm;
} names[] = {
	{S3_CHECKSUM_CRC32, "x-amz-checksum-crc32", "CRC32"},
	{S3_CHECKSUM_CRC32C, "x-amz-checksum-crc32c", "CRC32C"},
	{S3_CHECKSUM_SHA1, "x-amz-checksum-sha1", "SHA1"},
	{S3_CHECKSUM_SHA256, "x-amz-checksum-sha256", "SHA256"},
	{S3_CHECKSUM_MD5, "content-md5", "MD5"},
};

enum s3_checksum_alg s3_checksum_from_header(const char *name)
{
	if (!name)
		return S3_CHECKSUM_NONE;
	for (size_t i = 0; i < ELEMENTSOF(names); i++)
		if (names[i].alg != S3_CHECKSUM_MD5 && s3_strcaseeq(name, names[i].header))
			return names[i].alg;
	return S3_CHECKSUM_NONE;
}

enum s3_checksum_alg s3_checksum_from_algorithm(const char *value)
{
	if (!value)
		return S3_CHECKSUM_NONE;
	for (size_t i = 0; i < ELEMENTSOF(names); i++)
		if (names[i].alg != S3_CHECKSUM_MD5 && strcmp(value, names[i].algorithm) == 0)
			return names[i].alg;
	return S3_CHECKSUM_NONE;
}

const char *s3_checksum_header(enum s3_checksum_alg alg)
{
	for (size_t i = 0; i < ELEMENTSOF(names); i++)
		if (names[i].alg == alg)
			return names[i].header;
	return NULL;
}

int s3_checksum_verify_b64(struct s3_checksum *c, const char *b64, struct sealvm_err *err)
{
	unsigned char got[S3_CHECKSUM_MAX], want[S3_CHECKSUM_MAX + 3];
	enum s3_checksum_alg alg = c->alg;
	size_t dlen = s3_checksum_len(alg);
	size_t blen = b64 ? strlen(b64) : 0;
	const char *what = alg == S3_CHECKSUM_MD5 ? "Content-MD5" : s3_checksum_header(alg);

	if (dlen == 0)
		return sealvm_err_set(err, -EINVAL, "InternalError", "no checksum is running");
	if (blen != sealvm_b64_encoded_len(dlen, false) ||
	    sealvm_b64_decode(b64, blen, want, false) != (long)dlen)
		return sealvm_err_set(err, -EINVAL, "InvalidDigest",
				      "the %s value is not the base64 of a %zu-byte digest", what,
				      dlen);
	int n = s3_checksum_final(c, got);
	if (n < 0)
		return sealvm_err_set(err, n, "InternalError", "cannot finish the checksum");
	if (CRYPTO_memcmp(got, want, dlen) != 0)
		return sealvm_err_set(err, -EBADMSG, "BadDigest",
				      "the %s you specified did not match the calculated checksum",
				      what);
	return 0;
}
