/* SPDX-License-Identifier: Apache-2.0 */
/*
 * seal.h — the data dir's master key, and secrets sealed under it.
 *
 * Secrets the server must use again (the token signing key, S3 HMAC secrets,
 * soft-keystore root keys) are stored sealed: AES-256-GCM under a key derived
 * from the master key, with a fresh 96-bit nonce and AAD naming what the blob
 * is (e.g. "iam/signing-key/<kid>"), so a blob cannot be moved to another row. Values
 * that are only compared (API keys) are stored as keyed hashes instead:
 * HMAC-SHA256 under a key derived from the master key, compared in constant
 * time. Subkeys are derived with HKDF-SHA256, one label per use.
 *
 * Blob format (binary): "SVS1" | nonce[12] | ciphertext | tag[16]; the GCM
 * AAD is the bytes of the AAD string (no terminating NUL). The ciphertext has
 * the plaintext's length. docs/internals/crypto.md has the whole scheme.
 */
#ifndef SEALVM_SEAL_H
#define SEALVM_SEAL_H

#include <stdbool.h>
#include <stddef.h>

#include "sealvm/err.h"
#include "sealvm/secret.h"

#define SEALVM_MASTER_KEY_BYTES 32
#define SEALVM_SEAL_OVERHEAD (4 + 12 + 16)
#define SEALVM_KEYED_HASH_BYTES 32

/*
 * Creates a new master key file at @path (O_EXCL|O_NOFOLLOW, 0600, fsynced):
 * 32 random bytes. On success *@ret holds the key (secret memory; free with
 * sealvm_secret_free). Errors: -EEXIST (OUTPUT_EXISTS) if anything is at
 * @path — an existing key is never replaced —, those of
 * sealvm_write_file_exclusive otherwise.
 */
int seal_master_create(const char *path, struct sealvm_secret **ret, struct sealvm_err *err);

/*
 * Loads the master key into secret memory. The file must be a regular file
 * (not a symbolic link: -ELOOP MASTER_KEY_SYMLINK; anything else: -EINVAL
 * NOT_A_FILE), with no permission bit for group or others (-EPERM
 * MASTER_KEY_MODE, the message says `chmod 600`), of exactly 32 bytes
 * (-EBADMSG MASTER_KEY_INVALID); -ENOENT etc. as open(2) says.
 */
int seal_master_load(const char *path, struct sealvm_secret **ret, struct sealvm_err *err);

/*
 * Derives a 32-byte subkey for @label ("seal", "audit-chain", "apikey-hash",
 * …) from the 32-byte @master with HKDF-SHA256 (salt "sealvm-v1", info
 * @label). Deterministic; different labels give independent keys. *@ret is
 * new secret memory. -EINVAL for a master of another size or an empty
 * label, -ENOMEM, -EIO when OpenSSL fails.
 */
int seal_derive(const struct sealvm_secret *master, const char *label, struct sealvm_secret **ret);

/*
 * Seals @plain under the subkey seal_derive(@master, "seal") (the master key
 * itself never keys a cipher), with a fresh random nonce and @aad (a
 * non-empty string naming the blob's place) as additional data. *@ret_blob
 * is a new malloc'ed blob of plain->len + SEALVM_SEAL_OVERHEAD bytes, which
 * holds no secret in clear. -EINVAL for an empty @aad or an over-large
 * plaintext, -ENOMEM, -EIO.
 */
int seal_blob(const struct sealvm_secret *master, const char *aad,
	      const struct sealvm_secret *plain, unsigned char **ret_blob, size_t *ret_len,
	      struct sealvm_err *err);

/*
 * Opens a blob made by seal_blob into new secret memory. Any change to the
 * blob, another @aad, another master key, a short or unknown blob: -EBADMSG
 * SEALED_BLOB_INVALID, always with the same message (it does not tell which
 * check failed). -EINVAL for an empty @aad, -ENOMEM, -EIO.
 */
int seal_open(const struct sealvm_secret *master, const char *aad, const unsigned char *blob,
	      size_t len, struct sealvm_secret **ret, struct sealvm_err *err) _warn_unused_result_;

/*
 * @out = HMAC-SHA256(@key, @domain || 0x00 || @data): the stored form of
 * values that are only ever compared (API keys). @key is a derived subkey
 * (seal_derive(master, "apikey-hash")), @domain a non-empty label that keeps
 * hashes of different kinds of values apart. -EINVAL for a key shorter than
 * 16 bytes or an empty domain, -EIO when OpenSSL fails. On failure @out is
 * wiped and means nothing: callers must check the result.
 */
int seal_keyed_hash(const struct sealvm_secret *key, const char *domain, const void *data,
		    size_t len, unsigned char out[SEALVM_KEYED_HASH_BYTES]) _warn_unused_result_;

/*
 * @out = SHA-256(@data) with the algorithm fetched once per process (a
 * digest named by EVP_sha256() is looked up again on every call, which a
 * request path should not pay). -EIO when OpenSSL fails.
 */
int seal_sha256(const void *data, size_t len, unsigned char out[32]) _warn_unused_result_;

/* Constant-time comparison of two keyed hashes. */
bool seal_hash_equal(const unsigned char a[SEALVM_KEYED_HASH_BYTES],
		     const unsigned char b[SEALVM_KEYED_HASH_BYTES]) _warn_unused_result_;

#endif
