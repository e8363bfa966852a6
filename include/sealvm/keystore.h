/* SPDX-License-Identifier: Apache-2.0 */
/*
 * keystore.h — where the KMS's root keys live, behind one interface.
 *
 * Two backends:
 *  - "soft" (default): root key material is sealed under the data dir's
 *    master key (seal_blob, AAD "kms/root-key/" + the key's @name); the
 *    *reference* the KMS stores for a key version is that sealed blob.
 *    Material is unsealed only into secret memory: for one operation, and
 *    into a bounded cache of opened keys that is itself secret memory
 *    (docs/internals/keystore.md).
 *  - "pkcs11": root keys are non-extractable, sensitive CKK_AES objects in a
 *    PKCS#11 token (module and token label from the config, PIN from a file
 *    or the environment); the reference is the object's CKA_ID. Encrypt and
 *    decrypt run CKM_AES_GCM inside the token. Sessions are pooled across
 *    threads.
 *
 * @name is a stable, unique, non-secret string naming one key version, chosen
 * by the KMS ("<instance-guid>/<key-id>/<version>"); it binds the reference
 * to its row (soft: the seal AAD; pkcs11: CKA_LABEL) so a reference copied
 * to another row does not open.
 *
 * Root keys only ever encrypt and decrypt short values (DEKs of at most
 * SEALVM_SECRET_MAX bytes) with AES-256/192/128-GCM, a fresh random 96-bit IV
 * per encryption and a 128-bit tag. Import tokens need an RSA-4096 key pair
 * whose private half decrypts RSAES-OAEP with SHA-256 (MGF1-SHA-256); a
 * backend that cannot do that inside the token (SoftHSM2 2.6.1 does OAEP with
 * SHA-1 only) keeps that private key sealed under the master key instead.
 *
 * Every function is thread-safe. Errors: negative errno plus a reason in
 * @err: -EBADMSG KEYSTORE_DECRYPT_FAILED (tag mismatch: wrong key, IV, AAD or
 * data, or a reference used under another key's @name — never says which),
 * -ENOENT KEYSTORE_KEY_MISSING (reference names no object), -EINVAL
 * KEYSTORE_INVALID (bad sizes or arguments), -EIO KEYSTORE_FAILED (backend
 * failure; the message names the PKCS#11 CKR_ code or the OpenSSL failure,
 * never key material), -ENOMEM.
 *
 * keystore_open adds the configuration's own: -EINVAL KEYSTORE_INVALID
 * (unknown backend, missing module/token_label/master key, sessions > 256),
 * -ENOENT or -EINVAL KEYSTORE_MODULE_INVALID (the module is not there or not
 * a PKCS#11 module), -ENOENT KEYSTORE_TOKEN_MISSING (no initialized token
 * with that label; the message lists the labels there are), -EINVAL or
 * -ENOENT KEYSTORE_PIN_MISSING (no PIN source, both, an unset variable, an
 * unreadable or empty file), -EPERM KEYSTORE_PIN_INCORRECT (the token
 * refused the PIN: CKR_PIN_INCORRECT) or KEYSTORE_PIN_LOCKED. No message
 * contains the PIN; they name where it came from.
 */
#ifndef SEALVM_KEYSTORE_H
#define SEALVM_KEYSTORE_H

#include <stdbool.h>
#include <stddef.h>

#include "sealvm/err.h"
#include "sealvm/secret.h"

#define KEYSTORE_IV_BYTES 12
#define KEYSTORE_TAG_BYTES 16
#define KEYSTORE_REF_MAX 256 /* the largest reference a backend returns */

struct keystore;

struct keystore_config {
	const char *backend; /* "soft" (NULL means soft) or "pkcs11" */
	/*
	 * The master key (borrowed, must outlive the keystore). soft: required.
	 * pkcs11: optional; needed for import-token keys when the token cannot
	 * decrypt RSA-OAEP with SHA-256 (they are then sealed under it).
	 */
	const struct sealvm_secret *master;
	/* pkcs11 */
	const char *module;	 /* path of the PKCS#11 module (.so) */
	const char *token_label; /* the token to use, by CKA_LABEL of its CK_TOKEN_INFO */
	const char *pin_file; /* the user PIN, read from this file (trailing newline dropped) … */
	const char *pin_env;  /* … or from this environment variable; never from the config */
	unsigned sessions;    /* session pool size; 0 means 2 × CPUs */
};

int keystore_open(const struct keystore_config *cfg, struct keystore **ret, struct sealvm_err *err);
void keystore_close(struct keystore *ks);
const char *keystore_backend(const struct keystore *ks); /* "soft" or "pkcs11" */

/*
 * Creates a new AES key of @bytes (16, 24 or 32) for @name: generated inside
 * the backend (@material NULL), or imported from @material (then of exactly
 * @bytes bytes; the caller wipes its copy). Writes the reference to @ref
 * (KEYSTORE_REF_MAX bytes) and its length to *@ref_len.
 */
int keystore_key_create(struct keystore *ks, const char *name, size_t bytes,
			const struct sealvm_secret *material, unsigned char *ref, size_t *ref_len,
			struct sealvm_err *err);

/*
 * Destroys the key (pkcs11: C_DestroyObject; soft: drops it from the cache of
 * opened keys — the reference is the key, the KMS forgets it). Idempotent: a
 * key already gone is success. pkcs11: a reference whose object is another
 * key's (another CKA_LABEL) destroys nothing, -EBADMSG.
 */
int keystore_key_destroy(struct keystore *ks, const char *name, const unsigned char *ref,
			 size_t ref_len, struct sealvm_err *err);

/*
 * AES-GCM under the key: @iv (out, fresh random), @ct (out, plain->len bytes),
 * @tag (out). @plain has 1 to SEALVM_SECRET_MAX bytes; @aad (at most 1 MiB)
 * may be NULL when @aad_len is 0.
 */
int keystore_encrypt(struct keystore *ks, const char *name, const unsigned char *ref,
		     size_t ref_len, const unsigned char *aad, size_t aad_len,
		     const struct sealvm_secret *plain, unsigned char iv[KEYSTORE_IV_BYTES],
		     unsigned char *ct, unsigned char tag[KEYSTORE_TAG_BYTES],
		     struct sealvm_err *err);

/* The inverse; *@ret is new secret memory of @ct_len bytes. */
int keystore_decrypt(struct keystore *ks, const char *name, const unsigned char *ref,
		     size_t ref_len, const unsigned char *aad, size_t aad_len,
		     const unsigned char iv[KEYSTORE_IV_BYTES], const unsigned char *ct,
		     size_t ct_len, const unsigned char tag[KEYSTORE_TAG_BYTES],
		     struct sealvm_secret **ret, struct sealvm_err *err);

/*
 * Import tokens: a new RSA-4096 key pair for @name. *@ret_pub is a new
 * malloc'ed DER SubjectPublicKeyInfo; the reference names the private key
 * (soft, or pkcs11 without OAEP-SHA-256: a PKCS#8 blob sealed with AAD
 * "kms/import-token/" + @name, about 2.4 KiB, longer than KEYSTORE_REF_MAX,
 * hence malloc'ed *@ret_ref; pkcs11 with it: a 16-byte CKA_ID). Generating
 * the key takes a second or so.
 */
int keystore_rsa_create(struct keystore *ks, const char *name, unsigned char **ret_pub,
			size_t *ret_pub_len, unsigned char **ret_ref, size_t *ret_ref_len,
			struct sealvm_err *err);

/*
 * RSAES-OAEP-SHA-256 decryption with the private key; *@ret is secret memory.
 * @ct_len must be 512 (-EINVAL otherwise); a ciphertext that does not decrypt:
 * -EBADMSG KEYSTORE_DECRYPT_FAILED.
 */
int keystore_rsa_decrypt(struct keystore *ks, const char *name, const unsigned char *ref,
			 size_t ref_len, const unsigned char *ct, size_t ct_len,
			 struct sealvm_secret **ret, struct sealvm_err *err);

/* Destroys the private key. Idempotent. */
int keystore_rsa_destroy(struct keystore *ks, const char *name, const unsigned char *ref,
			 size_t ref_len, struct sealvm_err *err);

#endif
