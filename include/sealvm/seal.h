/* SPDX-License-Identifier: Apache-2.0 */
/*
 * seal.h — the data dir's master key, and secrets sealed under it.
 *
 * Secrets the server must use again (the token signing key, S3 HMAC secrets,
 * soft-keystore root keys) are stored sealed: AES-256-GCM under the master
 * key, with a fresh 96-bit nonce and AAD naming what the blob is (e.g.
 * "iam/signing-key/<kid>"), so a blob cannot be moved to another row. Values
 * that are only compared (API keys) are stored as keyed hashes instead:
 * HMAC-SHA256 under a key derived from the master key, compared in constant
 * time. Subkeys are derived with HKDF-SHA256, one label per use.
 *
 * Blob format (binary): "SVS1" | nonce[12] | ciphertext | tag[16].
 */
#ifndef SEALVM_SEAL_H
#define SEALVM_SEAL_H

#include <stddef.h>

#include "sealvm/err.h"
#include "sealvm/secret.h"

#define SEALVM_MASTER_KEY_BYTES 32
#define SEALVM_SEAL_OVERHEAD (4 + 12 + 16)

/*
 * Creates a new master key file at @path (O_EXCL|O_NOFOLLOW, 0600, fsynced):
 * 32 random bytes. -EEXIST if it exists.
 */
int seal_master_create(const char *path, struct sealvm_secret **ret, struct sealvm_err *err);

/* Loads the master key; refuses (-EPERM MASTER_KEY_MODE) a file readable by group or others. */
int seal_master_load(const char *path, struct sealvm_secret **ret, struct sealvm_err *err);

/* Derives a 32-byte subkey for @label ("audit-chain", "apikey-hash", …) with HKDF-SHA256. */
int seal_derive(const struct sealvm_secret *master, const char *label,
		struct sealvm_secret **ret);

/* Seals @plain (new malloc'ed blob of plain->len + SEALVM_SEAL_OVERHEAD bytes). */
int seal_blob(const struct sealvm_secret *master, const char *aad, const struct sealvm_secret *plain,
	      unsigned char **ret_blob, size_t *ret_len, struct sealvm_err *err);

/* Opens a blob into secret memory; -EBADMSG (SEALED_BLOB_INVALID) on any change or wrong AAD. */
int seal_open(const struct sealvm_secret *master, const char *aad, const unsigned char *blob,
	      size_t len, struct sealvm_secret **ret, struct sealvm_err *err);

#endif
