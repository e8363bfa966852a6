/* SPDX-License-Identifier: Apache-2.0 */
/*
 * keystore_internal.h — what the keystore dispatcher (keystore.c) and its
 * backends (keystore_soft.c, keystore_pkcs11.c) share; nothing outside
 * lib/keystore includes it.
 *
 * keystore.c checks every argument of the public functions once (names,
 * sizes, NULLs) and then calls the backend through its ops table, so a
 * backend function may assume: @name is a valid key name (ks_name_valid),
 * @bytes is 16, 24 or 32, a material secret has exactly @bytes bytes,
 * 0 < ref_len, plain->len and ct_len are within 1..SEALVM_SECRET_MAX.
 */
#ifndef SEALVM_KEYSTORE_INTERNAL_H
#define SEALVM_KEYSTORE_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>

#include <openssl/evp.h>

#include "sealvm/keystore.h"

/* The longest @name: "<guid>/<key-id>/<version>" is about 90 characters. */
#define KS_NAME_MAX 255
/* An RSA-4096 ciphertext is exactly the modulus size. */
#define KS_RSA_BITS 4096
#define KS_RSA_BYTES (KS_RSA_BITS / 8)
/* The seal AAD prefixes that keep keystore blobs apart from every other sealed secret. */
#define KS_SOFT_AAD_PREFIX "kms/root-key/"
#define KS_RSA_AAD_PREFIX "kms/import-token/"

struct keystore_ops {
	const char *name; /* "soft", "pkcs11" */
	void (*close)(struct keystore *ks);
	int (*key_create)(struct keystore *ks, const char *name, size_t bytes,
			  const struct sealvm_secret *material, unsigned char *ref, size_t *ref_len,
			  struct sealvm_err *err);
	int (*key_destroy)(struct keystore *ks, const char *name, const unsigned char *ref,
			   size_t ref_len, struct sealvm_err *err);
	int (*encrypt)(struct keystore *ks, const char *name, const unsigned char *ref,
		       size_t ref_len, const unsigned char *aad, size_t aad_len,
		       const struct sealvm_secret *plain, unsigned char iv[KEYSTORE_IV_BYTES],
		       unsigned char *ct, unsigned char tag[KEYSTORE_TAG_BYTES],
		       struct sealvm_err *err);
	int (*decrypt)(struct keystore *ks, const char *name, const unsigned char *ref,
		       size_t ref_len, const unsigned char *aad, size_t aad_len,
		       const unsigned char iv[KEYSTORE_IV_BYTES], const unsigned char *ct,
		       size_t ct_len, const unsigned char tag[KEYSTORE_TAG_BYTES],
		       struct sealvm_secret **ret, struct sealvm_err *err);
	int (*rsa_create)(struct keystore *ks, const char *name, unsigned char **ret_pub,
			  size_t *ret_pub_len, unsigned char **ret_ref, size_t *ret_ref_len,
			  struct sealvm_err *err);
	int (*rsa_decrypt)(struct keystore *ks, const char *name, const unsigned char *ref,
			   size_t ref_len, const unsigned char *ct, size_t ct_len,
			   struct sealvm_secret **ret, struct sealvm_err *err);
	int (*rsa_destroy)(struct keystore *ks, const char *name, const unsigned char *ref,
			   size_t ref_len, struct sealvm_err *err);
};

/* The head of every backend's keystore object. */
struct keystore {
	const struct keystore_ops *ops;
};

/* Backends' constructors: @cfg is already checked for the fields the backend needs. */
int ks_soft_open(const struct keystore_config *cfg, struct keystore **ret, struct sealvm_err *err);
int ks_pkcs11_open(const struct keystore_config *cfg, struct keystore **ret,
		   struct sealvm_err *err);

/* True for 1..KS_NAME_MAX printable ASCII characters (names go into messages and labels). */
bool ks_name_valid(const char *name);

/* The one message every backend gives for -EBADMSG: it never tells which input was wrong. */
int ks_decrypt_failed(struct sealvm_err *err, const char *name);

/* "<prefix><name>" into @buf (KS_NAME_MAX + 32 bytes): the seal AAD of a keystore blob. */
void ks_seal_aad(char *buf, size_t size, const char *prefix, const char *name);

/*
 * RSA-4096 import-token keys made with OpenSSL and kept sealed under @master
 * (AAD KS_RSA_AAD_PREFIX + name): the soft backend's only kind, and the
 * pkcs11 backend's fallback when its token cannot decrypt OAEP-SHA-256.
 * ks_rsa_sealed_create returns the DER SubjectPublicKeyInfo and the sealed
 * PKCS#8 blob (both malloc'ed); ks_rsa_sealed_decrypt opens the blob for one
 * decryption. Errors as keystore.h says.
 */
int ks_rsa_sealed_create(const struct sealvm_secret *master, const char *name,
			 unsigned char **ret_pub, size_t *ret_pub_len, unsigned char **ret_ref,
			 size_t *ret_ref_len, struct sealvm_err *err);
int ks_rsa_sealed_decrypt(const struct sealvm_secret *master, const char *name,
			  const unsigned char *ref, size_t ref_len, const unsigned char *ct,
			  size_t ct_len, struct sealvm_secret **ret, struct sealvm_err *err);

/*
 * The DER SubjectPublicKeyInfo of an RSA public key given by its big-endian
 * modulus and exponent (what a PKCS#11 token returns), malloc'ed.
 */
int ks_rsa_spki_from(const unsigned char *n, size_t n_len, const unsigned char *e, size_t e_len,
		     unsigned char **ret, size_t *ret_len, struct sealvm_err *err);

/*
 * RSAES-OAEP-SHA-256 encryption with a DER SubjectPublicKeyInfo: used by
 * the pkcs11 backend to try its token's OAEP once, and by the tests.
 */
int ks_rsa_oaep_encrypt(const unsigned char *spki, size_t spki_len, const unsigned char *msg,
			size_t msg_len, unsigned char *out, size_t *out_len);

#endif
