// SPDX-License-Identifier: Apache-2.0
/*
 * keystore.c — the keystore interface (include/sealvm/keystore.h): checks
 * every argument once, then hands the call to the backend's ops table
 * (keystore_soft.c or keystore_pkcs11.c).
 *
 * The checks live here so that both backends refuse the same bad inputs
 * with the same errno and reason, and so that a backend never sees a NULL,
 * an empty name or a size it cannot handle. Nothing here touches key
 * material; messages name sizes and key names (which are not secret), never
 * bytes of a key, a plaintext or a PIN.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "keystore_internal.h"
#include "sealvm/seal.h"

/* AAD is small in practice (the KMS binds instance, key and the caller's AAD); cap it anyway. */
#define KS_AAD_MAX (1024 * 1024)

bool ks_name_valid(const char *name)
{
	size_t n;
	if (!name)
		return false;
	n = strnlen(name, KS_NAME_MAX + 1);
	if (n == 0 || n > KS_NAME_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if (name[i] < 0x21 || name[i] > 0x7e)
			return false;
	return true;
}

int ks_decrypt_failed(struct sealvm_err *err, const char *name)
{
	return sealvm_err_set(
		err, -EBADMSG, "KEYSTORE_DECRYPT_FAILED",
		"decryption under key %s failed: the ciphertext, IV, tag or AAD was changed, or the key reference belongs to another key",
		name);
}

void ks_seal_aad(char *buf, size_t size, const char *prefix, const char *name)
{
	snprintf(buf, size, "%s%s", prefix, name);
}

static int invalid(struct sealvm_err *err, const char *what)
{
	return sealvm_err_set(err, -EINVAL, "KEYSTORE_INVALID", "keystore: %s", what);
}

static int check_name(const char *name, struct sealvm_err *err)
{
	if (!ks_name_valid(name))
		return sealvm_err_set(
			err, -EINVAL, "KEYSTORE_INVALID",
			"keystore: a key name must be 1 to %d printable ASCII characters without spaces",
			KS_NAME_MAX);
	return 0;
}

static int check_ref(const unsigned char *ref, size_t ref_len, struct sealvm_err *err)
{
	if (!ref || ref_len == 0)
		return invalid(err, "a key reference is needed");
	return 0;
}

int keystore_open(const struct keystore_config *cfg, struct keystore **ret, struct sealvm_err *err)
{
	if (!cfg || !ret)
		return invalid(err, "keystore_open needs a configuration");
	if (!cfg->backend || strcmp(cfg->backend, "soft") == 0) {
		if (!cfg->master || cfg->master->len != SEALVM_MASTER_KEY_BYTES)
			return invalid(err, "the soft keystore needs the data dir's master key");
		return ks_soft_open(cfg, ret, err);
	}
	if (strcmp(cfg->backend, "pkcs11") == 0) {
		if (!cfg->module || !*cfg->module)
			return invalid(
				err,
				"the pkcs11 keystore needs \"module\": the path of the PKCS#11 module (.so)");
		if (!cfg->token_label || !*cfg->token_label)
			return invalid(
				err,
				"the pkcs11 keystore needs \"token_label\": the label of the token to use");
		if (strlen(cfg->token_label) > 32)
			return invalid(err, "a PKCS#11 token label has at most 32 characters");
		if (cfg->master && cfg->master->len != SEALVM_MASTER_KEY_BYTES)
			return invalid(err, "the master key must be 32 bytes");
		return ks_pkcs11_open(cfg, ret, err);
	}
	return sealvm_err_set(err, -EINVAL, "KEYSTORE_INVALID",
			      "keystore: unknown backend \"%.32s\": use \"soft\" or \"pkcs11\"",
			      cfg->backend);
}

void keystore_close(struct keystore *ks)
{
	if (ks)
		ks->ops->close(ks);
}

const char *keystore_backend(const struct keystore *ks)
{
	return ks ? ks->ops->name : NULL;
}

int keystore_key_create(struct keystore *ks, const char *name, size_t bytes,
			const struct sealvm_secret *material, unsigned char *ref, size_t *ref_len,
			struct sealvm_err *err)
{
	int r;
	if (!ks || !ref || !ref_len)
		return invalid(err,
			       "keystore_key_create needs a keystore and room for the reference");
	r = check_name(name, err);
	if (r < 0)
		return r;
	if (bytes != 16 && bytes != 24 && bytes != 32)
		return sealvm_err_set(err, -EINVAL, "KEYSTORE_INVALID",
				      "keystore: an AES key has 16, 24 or 32 bytes, not %zu",
				      bytes);
	if (material && material->len != bytes)
		return sealvm_err_set(
			err, -EINVAL, "KEYSTORE_INVALID",
			"keystore: the key material has %zu bytes, %zu were announced",
			material->len, bytes);
	return ks->ops->key_create(ks, name, bytes, material, ref, ref_len, err);
}

int keystore_key_destroy(struct keystore *ks, const char *name, const unsigned char *ref,
			 size_t ref_len, struct sealvm_err *err)
{
	int r;
	if (!ks)
		return invalid(err, "no keystore");
	r = check_name(name, err);
	if (r < 0)
		return r;
	r = check_ref(ref, ref_len, err);
	if (r < 0)
		return r;
	return ks->ops->key_destroy(ks, name, ref, ref_len, err);
}

static int check_aad(const unsigned char *aad, size_t aad_len, struct sealvm_err *err)
{
	if (!aad && aad_len > 0)
		return invalid(err, "AAD of non-zero length without a buffer");
	if (aad_len > KS_AAD_MAX)
		return sealvm_err_set(err, -EINVAL, "KEYSTORE_INVALID",
				      "keystore: AAD of %zu bytes, at most %d are allowed", aad_len,
				      KS_AAD_MAX);
	return 0;
}

int keystore_encrypt(struct keystore *ks, const char *name, const unsigned char *ref,
		     size_t ref_len, const unsigned char *aad, size_t aad_len,
		     const struct sealvm_secret *plain, unsigned char iv[KEYSTORE_IV_BYTES],
		     unsigned char *ct, unsigned char tag[KEYSTORE_TAG_BYTES],
		     struct sealvm_err *err)
{
	int r;
	if (!ks || !iv || !ct || !tag)
		return invalid(err, "keystore_encrypt needs a keystore and output buffers");
	if ((r = check_name(name, err)) < 0 || (r = check_ref(ref, ref_len, err)) < 0 ||
	    (r = check_aad(aad, aad_len, err)) < 0)
		return r;
	if (!plain || plain->len == 0 || plain->len > SEALVM_SECRET_MAX)
		return sealvm_err_set(err, -EINVAL, "KEYSTORE_INVALID",
				      "keystore: the plaintext must have 1 to %d bytes",
				      SEALVM_SECRET_MAX);
	return ks->ops->encrypt(ks, name, ref, ref_len, aad, aad_len, plain, iv, ct, tag, err);
}

int keystore_decrypt(struct keystore *ks, const char *name, const unsigned char *ref,
		     size_t ref_len, const unsigned char *aad, size_t aad_len,
		     const unsigned char iv[KEYSTORE_IV_BYTES], const unsigned char *ct,
		     size_t ct_len, const unsigned char tag[KEYSTORE_TAG_BYTES],
		     struct sealvm_secret **ret, struct sealvm_err *err)
{
	int r;
	if (!ks || !iv || !ct || !tag || !ret)
		return invalid(err,
			       "keystore_decrypt needs a keystore, the IV, ciphertext and tag");
	if ((r = check_name(name, err)) < 0 || (r = check_ref(ref, ref_len, err)) < 0 ||
	    (r = check_aad(aad, aad_len, err)) < 0)
		return r;
	if (ct_len == 0 || ct_len > SEALVM_SECRET_MAX)
		return sealvm_err_set(err, -EINVAL, "KEYSTORE_INVALID",
				      "keystore: the ciphertext must have 1 to %d bytes",
				      SEALVM_SECRET_MAX);
	return ks->ops->decrypt(ks, name, ref, ref_len, aad, aad_len, iv, ct, ct_len, tag, ret,
				err);
}

int keystore_rsa_create(struct keystore *ks, const char *name, unsigned char **ret_pub,
			size_t *ret_pub_len, unsigned char **ret_ref, size_t *ret_ref_len,
			struct sealvm_err *err)
{
	int r;
	if (!ks || !ret_pub || !ret_pub_len || !ret_ref || !ret_ref_len)
		return invalid(err, "keystore_rsa_create needs a keystore and its four outputs");
	r = check_name(name, err);
	if (r < 0)
		return r;
	return ks->ops->rsa_create(ks, name, ret_pub, ret_pub_len, ret_ref, ret_ref_len, err);
}

int keystore_rsa_decrypt(struct keystore *ks, const char *name, const unsigned char *ref,
			 size_t ref_len, const unsigned char *ct, size_t ct_len,
			 struct sealvm_secret **ret, struct sealvm_err *err)
{
	int r;
	if (!ks || !ct || !ret)
		return invalid(err, "keystore_rsa_decrypt needs a keystore and a ciphertext");
	if ((r = check_name(name, err)) < 0 || (r = check_ref(ref, ref_len, err)) < 0)
		return r;
	if (ct_len != KS_RSA_BYTES)
		return sealvm_err_set(
			err, -EINVAL, "KEYSTORE_INVALID",
			"keystore: an RSA-%d OAEP ciphertext has exactly %d bytes, not %zu",
			KS_RSA_BITS, KS_RSA_BYTES, ct_len);
	return ks->ops->rsa_decrypt(ks, name, ref, ref_len, ct, ct_len, ret, err);
}

int keystore_rsa_destroy(struct keystore *ks, const char *name, const unsigned char *ref,
			 size_t ref_len, struct sealvm_err *err)
{
	int r;
	if (!ks)
		return invalid(err, "no keystore");
	if ((r = check_name(name, err)) < 0 || (r = check_ref(ref, ref_len, err)) < 0)
		return r;
	return ks->ops->rsa_destroy(ks, name, ref, ref_len, err);
}
