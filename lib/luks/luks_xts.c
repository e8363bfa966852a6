// SPDX-License-Identifier: Apache-2.0
/*
 * luks_xts.c — the payload cipher: AES-XTS with plain64/plain IVs, in place.
 *
 * Each sector is one XTS data unit. Its tweak (IV) is the sector's position
 * in 512-byte units from the start of the payload plus the header's IV
 * offset, little endian: 64 bits for plain64, the low 32 bits for plain.
 * That holds for 4096-byte sectors too (dm-crypt shifts IVs to large-sector
 * units only for BitLocker and plain mode, never for LUKS). One context per
 * thread is keyed once; per sector only the IV changes. This file must never
 * log or copy the key: it goes from secret memory into the OpenSSL context,
 * which wipes it when freed.
 */
#include <errno.h>
#include <string.h>

#include <openssl/err.h>

#include "luks_internal.h"

int luks_xts_init(struct luks_xts *x, const unsigned char *key, size_t key_len, bool encrypt,
		  uint32_t sector_size, uint64_t iv_offset, bool plain64)
{
	const EVP_CIPHER *cipher;

	memset(x, 0, sizeof(*x));
	if (key_len == 64)
		cipher = EVP_aes_256_xts();
	else if (key_len == 32)
		cipher = EVP_aes_128_xts();
	else
		return -EINVAL;
	if (sector_size < LUKS_SECTOR || sector_size > 4096 || (sector_size & (sector_size - 1)))
		return -EINVAL;

	x->ctx = EVP_CIPHER_CTX_new();
	if (!x->ctx)
		return -ENOMEM;
	/*
	 * OpenSSL 3 refuses to encrypt with two equal key halves (and allows
	 * decrypting with them); a key we generate never has them, a key from
	 * a hostile header might. Either way this is an error, not a crash.
	 */
	if (EVP_CipherInit_ex(x->ctx, cipher, NULL, key, NULL, encrypt ? 1 : 0) != 1) {
		ERR_clear_error();
		EVP_CIPHER_CTX_free(x->ctx);
		x->ctx = NULL;
		return -EINVAL;
	}
	x->sector_size = sector_size;
	x->iv_offset = iv_offset;
	x->plain64 = plain64;
	return 0;
}

int luks_xts_run(struct luks_xts *x, uint64_t byte_off, unsigned char *buf, size_t len)
{
	unsigned char iv[16] = {0};
	uint64_t unit = byte_off / LUKS_SECTOR + x->iv_offset;
	const uint64_t step = x->sector_size / LUKS_SECTOR;

	if (byte_off % x->sector_size || len % x->sector_size)
		return -EINVAL;
	for (size_t done = 0; done < len; done += x->sector_size, unit += step) {
		uint64_t n = x->plain64 ? unit : (uint32_t)unit;
		int outl = 0;

		for (unsigned i = 0; i < 8; i++)
			iv[i] = (unsigned char)(n >> (8 * i));
		if (EVP_CipherInit_ex(x->ctx, NULL, NULL, NULL, iv, -1) != 1 ||
		    EVP_CipherUpdate(x->ctx, buf + done, &outl, buf + done, (int)x->sector_size) !=
			    1 ||
		    (uint32_t)outl != x->sector_size) {
			ERR_clear_error();
			return -EIO;
		}
	}
	return 0;
}

void luks_xts_done(struct luks_xts *x)
{
	EVP_CIPHER_CTX_free(x->ctx);
	x->ctx = NULL;
}
