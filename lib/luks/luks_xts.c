// SPDX-License-Identifier: Apache-2.0
/*
 * luks_xts.c — the payload cipher: AES-XTS with plain64/plain IVs, in place.
 *
 * Each sector is one XTS data unit. Its IV is the sector's position in
 * 512-byte units from the start of the payload plus the header's IV offset,
 * little endian: 64 bits for plain64, the low 32 bits for plain. That holds
 * for 4096-byte sectors too (dm-crypt shifts IVs to large-sector units only
 * for BitLocker and plain mode, never for LUKS).
 *
 * XTS (IEEE 1619, no ciphertext stealing: sectors are whole blocks) is
 *   T_0 = AES(K2, IV),  T_j+1 = T_j * alpha,  C_j = AES(K1, P_j ^ T_j) ^ T_j.
 * We compute it in batches: all T_0 of a batch in one ECB call, the T_j by
 * doubling, then one XOR pass, one ECB call over the whole batch and a second
 * XOR pass. That keeps AES-NI pipelines full instead of paying an EVP
 * re-initialisation per 512-byte sector. Interoperability is proven against
 * OpenSSL's own XTS (unit test), cryptsetup and QEMU (integration tests).
 * This file must never log or copy the key; the tweak buffer is wiped.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/err.h>

#include "luks_internal.h"

static EVP_CIPHER_CTX *ecb_new(const unsigned char *key, size_t half, bool encrypt)
{
	const EVP_CIPHER *c = half == 32 ? EVP_aes_256_ecb() : EVP_aes_128_ecb();
	EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();

	if (!ctx)
		return NULL;
	if (EVP_CipherInit_ex(ctx, c, NULL, key, NULL, encrypt ? 1 : 0) != 1 ||
	    EVP_CIPHER_CTX_set_padding(ctx, 0) != 1) {
		ERR_clear_error();
		EVP_CIPHER_CTX_free(ctx);
		return NULL;
	}
	return ctx;
}

int luks_xts_init(struct luks_xts *x, const unsigned char *key, size_t key_len, bool encrypt,
		  uint32_t sector_size, uint64_t iv_offset, bool plain64)
{
	size_t half = key_len / 2;

	memset(x, 0, sizeof(*x));
	if (key_len != 64 && key_len != 32)
		return -EINVAL;
	if (sector_size < LUKS_SECTOR || sector_size > 4096 || (sector_size & (sector_size - 1)))
		return -EINVAL;
	/* A key we generate never has equal halves; refusing them to encrypt is what OpenSSL does.
	 */
	if (encrypt && CRYPTO_memcmp(key, key + half, half) == 0)
		return -EINVAL;

	x->tweaks = malloc(LUKS_XTS_BATCH);
	x->data_ctx = ecb_new(key, half, encrypt);
	x->tweak_ctx = ecb_new(key + half, half, true);
	if (!x->tweaks || !x->data_ctx || !x->tweak_ctx) {
		luks_xts_done(x);
		return -ENOMEM;
	}
	x->sector_size = sector_size;
	x->iv_offset = iv_offset;
	x->plain64 = plain64;
	return 0;
}

/* dst ^= src over @len bytes (a multiple of 16), in 16-byte vectors. */
static inline void xor_into(unsigned char *restrict dst, const unsigned char *restrict src,
			    size_t len)
{
	typedef uint64_t v2 __attribute__((vector_size(16)));
	for (size_t i = 0; i < len; i += 16) {
		v2 a, b;
		memcpy(&a, dst + i, 16);
		memcpy(&b, src + i, 16);
		a ^= b;
		memcpy(dst + i, &a, 16);
	}
}

#ifdef __SSE2__
#include <emmintrin.h>

/* t * alpha: every 32-bit lane shifts left, carrying into the next; bit 127 folds back as 0x87. */
static inline __m128i gf_double(__m128i t)
{
	__m128i carry = _mm_shuffle_epi32(_mm_srai_epi32(t, 31), 0x93);
	carry = _mm_and_si128(carry, _mm_set_epi32(1, 1, 1, 0x87));
	return _mm_xor_si128(_mm_slli_epi32(t, 1), carry);
}

/* Writes the @blocks tweaks of one sector, starting from @t0, to @tw, and XORs them into @d. */
static inline void tweak_sector(const unsigned char *t0, unsigned char *tw, unsigned char *d,
				size_t blocks)
{
	__m128i t = _mm_loadu_si128((const __m128i *)t0);
	for (size_t j = 0; j < blocks; j++) {
		__m128i v = _mm_loadu_si128((const __m128i *)(d + 16 * j));
		_mm_storeu_si128((__m128i *)(tw + 16 * j), t);
		_mm_storeu_si128((__m128i *)(d + 16 * j), _mm_xor_si128(v, t));
		t = gf_double(t);
	}
}
#else
static inline void tweak_sector(const unsigned char *t0, unsigned char *tw, unsigned char *d,
				size_t blocks)
{
	uint64_t lo, hi;
	memcpy(&lo, t0, 8);
	memcpy(&hi, t0 + 8, 8);
	lo = le64toh(lo);
	hi = le64toh(hi);
	for (size_t j = 0; j < blocks; j++) {
		uint64_t l = htole64(lo), h = htole64(hi), dl, dh;
		memcpy(tw + 16 * j, &l, 8);
		memcpy(tw + 16 * j + 8, &h, 8);
		memcpy(&dl, d + 16 * j, 8);
		memcpy(&dh, d + 16 * j + 8, 8);
		dl ^= l;
		dh ^= h;
		memcpy(d + 16 * j, &dl, 8);
		memcpy(d + 16 * j + 8, &dh, 8);
		uint64_t carry = hi >> 63;
		hi = hi << 1 | lo >> 63;
		lo = lo << 1 ^ (0x87 & -carry);
	}
}
#endif

/* @n bytes at @buf, @n a multiple of the sector size and at most LUKS_XTS_BATCH. */
static int xts_batch(struct luks_xts *x, uint64_t unit, unsigned char *buf, size_t n)
{
	const size_t nsec = n / x->sector_size;
	const uint64_t step = x->sector_size / LUKS_SECTOR;
	const size_t blocks = x->sector_size / 16;
	unsigned char t0[LUKS_XTS_BATCH / LUKS_SECTOR * 16];
	unsigned char *tw = x->tweaks;
	int outl;

	/* T_0 = AES(K2, IV) for every sector of the batch, in one ECB call. */
	for (size_t s = 0; s < nsec; s++, unit += step) {
		uint64_t iv = htole64(x->plain64 ? unit : (uint32_t)unit), zero = 0;
		memcpy(t0 + 16 * s, &iv, 8);
		memcpy(t0 + 16 * s + 8, &zero, 8);
	}
	if (EVP_CipherUpdate(x->tweak_ctx, t0, &outl, t0, (int)(16 * nsec)) != 1 ||
	    (size_t)outl != 16 * nsec)
		return -EIO;

	/* T_j+1 = T_j * alpha in GF(2^128) (little-endian convention); P_j ^= T_j as we go. */
	for (size_t s = 0; s < nsec; s++)
		tweak_sector(t0 + 16 * s, tw + s * x->sector_size, buf + s * x->sector_size,
			     blocks);
	OPENSSL_cleanse(t0, 16 * nsec);
	if (EVP_CipherUpdate(x->data_ctx, buf, &outl, buf, (int)n) != 1 || (size_t)outl != n)
		return -EIO;
	xor_into(buf, tw, n);
	return 0;
}

int luks_xts_run(struct luks_xts *x, uint64_t byte_off, unsigned char *buf, size_t len)
{
	uint64_t unit = byte_off / LUKS_SECTOR + x->iv_offset;

	if (byte_off % x->sector_size || len % x->sector_size)
		return -EINVAL;
	while (len > 0) {
		size_t n = MIN(len, (size_t)LUKS_XTS_BATCH);
		if (xts_batch(x, unit, buf, n) < 0) {
			ERR_clear_error();
			return -EIO;
		}
		unit += n / LUKS_SECTOR;
		buf += n;
		len -= n;
	}
	return 0;
}

void luks_xts_done(struct luks_xts *x)
{
	EVP_CIPHER_CTX_free(x->data_ctx);
	EVP_CIPHER_CTX_free(x->tweak_ctx);
	if (x->tweaks) {
		OPENSSL_cleanse(x->tweaks, LUKS_XTS_BATCH);
		free(x->tweaks);
	}
	x->data_ctx = x->tweak_ctx = NULL;
	x->tweaks = NULL;
}
