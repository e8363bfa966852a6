// SPDX-License-Identifier: Apache-2.0
/*
 * keystore_rsa.c — the import-token RSA-4096 keys that live outside a token:
 * generated with OpenSSL, the private key kept as a PKCS#8 DER blob sealed
 * under the master key (AAD "kms/import-token/<name>"), opened for one
 * RSAES-OAEP-SHA-256 decryption at a time. The soft keystore uses nothing
 * else; the pkcs11 keystore uses it when its token cannot do OAEP with
 * SHA-256 (SoftHSM2 2.6.1). Also the two small public-key helpers the
 * pkcs11 backend needs (SPKI from modulus/exponent, OAEP encryption for its
 * capability probe).
 *
 * The private key's DER encoding is written straight into secret memory and
 * sealed from there. OpenSSL's EVP_PKEY holds the key in ordinary heap
 * memory while it exists (OpenSSL frees BIGNUMs with BN_clear_free, so it is
 * wiped when freed); that window is one key generation or one decryption.
 * This file must never put key or plaintext bytes into a message.
 */
#include <errno.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/decoder.h>
#include <openssl/encoder.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "keystore_internal.h"
#include "sealvm/seal.h"

/* An RSA-4096 PKCS#8 DER is about 2.4 KiB; leave room for any encoder's choices. */
#define KS_RSA_DER_MAX 8192

static inline void pkey_freep(EVP_PKEY **p)
{
	EVP_PKEY_free(*p);
}
static inline void pkey_ctx_freep(EVP_PKEY_CTX **p)
{
	EVP_PKEY_CTX_free(*p);
}
static inline void encoder_ctx_freep(OSSL_ENCODER_CTX **p)
{
	OSSL_ENCODER_CTX_free(*p);
}
static inline void decoder_ctx_freep(OSSL_DECODER_CTX **p)
{
	OSSL_DECODER_CTX_free(*p);
}
static inline void bn_freep(BIGNUM **p)
{
	BN_free(*p);
}
static inline void param_bld_freep(OSSL_PARAM_BLD **p)
{
	OSSL_PARAM_BLD_free(*p);
}
static inline void params_freep(OSSL_PARAM **p)
{
	OSSL_PARAM_free(*p);
}

static int openssl_failed(struct sealvm_err *err, const char *what)
{
	unsigned long e = ERR_peek_last_error();
	char buf[160] = "no detail";
	if (e)
		ERR_error_string_n(e, buf, sizeof(buf));
	ERR_clear_error();
	return sealvm_err_set(err, -EIO, "KEYSTORE_FAILED", "keystore: %s failed (OpenSSL: %s)",
			      what, buf);
}

/* DER SubjectPublicKeyInfo of @pkey, malloc'ed (OpenSSL's allocator may not be malloc). */
static int spki_of(EVP_PKEY *pkey, unsigned char **ret, size_t *ret_len, struct sealvm_err *err)
{
	unsigned char *p, *der;
	int n = i2d_PUBKEY(pkey, NULL);
	if (n <= 0)
		return openssl_failed(err, "encoding the RSA public key");
	der = malloc((size_t)n);
	if (!der)
		return sealvm_err_set(err, -ENOMEM, NULL, "keystore: out of memory");
	p = der;
	if (i2d_PUBKEY(pkey, &p) != n) {
		free(der);
		return openssl_failed(err, "encoding the RSA public key");
	}
	*ret = der;
	*ret_len = (size_t)n;
	return 0;
}

int ks_rsa_sealed_create(const struct sealvm_secret *master, const char *name,
			 unsigned char **ret_pub, size_t *ret_pub_len, unsigned char **ret_ref,
			 size_t *ret_ref_len, struct sealvm_err *err)
{
	_cleanup_(pkey_freep) EVP_PKEY *pkey = NULL;
	_cleanup_(encoder_ctx_freep) OSSL_ENCODER_CTX *ectx = NULL;
	_cleanup_secret_ struct sealvm_secret *der = NULL;
	_cleanup_free_ unsigned char *pub = NULL;
	unsigned char *blob = NULL, *p;
	size_t pub_len = 0, blob_len = 0, left;
	char aad[KS_NAME_MAX + 32];
	int r;

	if (!master)
		return sealvm_err_set(
			err, -EINVAL, "KEYSTORE_INVALID",
			"keystore: import-token keys outside the token are sealed under the master key, and none was configured");
	pkey = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)KS_RSA_BITS);
	if (!pkey)
		return openssl_failed(err, "generating an RSA-4096 key");
	r = spki_of(pkey, &pub, &pub_len, err);
	if (r < 0)
		return r;

	r = sealvm_secret_new(KS_RSA_DER_MAX, &der);
	if (r < 0)
		return sealvm_err_set(err, r, NULL, "keystore: cannot allocate secure memory");
	ectx = OSSL_ENCODER_CTX_new_for_pkey(pkey, OSSL_KEYMGMT_SELECT_KEYPAIR, "DER",
					     "PrivateKeyInfo", NULL);
	if (!ectx || OSSL_ENCODER_CTX_get_num_encoders(ectx) == 0)
		return openssl_failed(err, "preparing the PKCS#8 encoder");
	/* With a buffer given, the encoder writes into it and counts down the room left. */
	p = der->data;
	left = der->cap;
	if (OSSL_ENCODER_to_data(ectx, &p, &left) != 1 || left >= der->cap)
		return openssl_failed(err, "encoding the RSA private key");
	der->len = der->cap - left;

	ks_seal_aad(aad, sizeof(aad), KS_RSA_AAD_PREFIX, name);
	r = seal_blob(master, aad, der, &blob, &blob_len, err);
	if (r < 0)
		return r;
	*ret_pub = TAKE_PTR(pub);
	*ret_pub_len = pub_len;
	*ret_ref = blob;
	*ret_ref_len = blob_len;
	return 0;
}

int ks_rsa_sealed_decrypt(const struct sealvm_secret *master, const char *name,
			  const unsigned char *ref, size_t ref_len, const unsigned char *ct,
			  size_t ct_len, struct sealvm_secret **ret, struct sealvm_err *err)
{
	_cleanup_secret_ struct sealvm_secret *der = NULL, *out = NULL;
	_cleanup_(pkey_freep) EVP_PKEY *pkey = NULL;
	_cleanup_(decoder_ctx_freep) OSSL_DECODER_CTX *dctx = NULL;
	_cleanup_(pkey_ctx_freep) EVP_PKEY_CTX *pctx = NULL;
	struct sealvm_err serr = SEALVM_ERR_INIT;
	char aad[KS_NAME_MAX + 32];
	const unsigned char *p;
	size_t left, outl;
	int r;

	if (!master)
		return sealvm_err_set(err, -EINVAL, "KEYSTORE_INVALID",
				      "keystore: no master key to open the import-token key with");
	/* A sealed blob starts with the seal magic; anything else is not a reference of ours. */
	if (ref_len < SEALVM_SEAL_OVERHEAD + 1 || memcmp(ref, "SVS1", 4) != 0)
		return sealvm_err_set(err, -ENOENT, "KEYSTORE_KEY_MISSING",
				      "keystore: the reference of import-token key %s names no key",
				      name);
	ks_seal_aad(aad, sizeof(aad), KS_RSA_AAD_PREFIX, name);
	r = seal_open(master, aad, ref, ref_len, &der, &serr);
	if (r == -EBADMSG)
		return ks_decrypt_failed(err, name);
	if (r < 0)
		return sealvm_err_set(err, r, "KEYSTORE_FAILED", "keystore: %s", serr.message);

	dctx = OSSL_DECODER_CTX_new_for_pkey(&pkey, "DER", "PrivateKeyInfo", "RSA",
					     OSSL_KEYMGMT_SELECT_KEYPAIR, NULL, NULL);
	if (!dctx)
		return openssl_failed(err, "preparing the PKCS#8 decoder");
	p = der->data;
	left = der->len;
	if (OSSL_DECODER_from_data(dctx, &p, &left) != 1 || !pkey)
		return openssl_failed(err, "decoding the import-token private key");
	if (EVP_PKEY_get_bits(pkey) != KS_RSA_BITS)
		return sealvm_err_set(err, -EIO, "KEYSTORE_FAILED",
				      "keystore: the import-token key of %s is not RSA-%d", name,
				      KS_RSA_BITS);

	pctx = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
	if (!pctx || EVP_PKEY_decrypt_init(pctx) != 1 ||
	    EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_OAEP_PADDING) != 1 ||
	    EVP_PKEY_CTX_set_rsa_oaep_md(pctx, EVP_sha256()) != 1 ||
	    EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, EVP_sha256()) != 1)
		return openssl_failed(err, "preparing RSA-OAEP-SHA-256");
	r = sealvm_secret_new(KS_RSA_BYTES, &out);
	if (r < 0)
		return sealvm_err_set(err, r, NULL, "keystore: cannot allocate secure memory");
	outl = out->cap;
	if (EVP_PKEY_decrypt(pctx, out->data, &outl, ct, ct_len) != 1) {
		ERR_clear_error();
		return ks_decrypt_failed(err, name);
	}
	out->len = outl;
	out->data[outl] = 0;
	*ret = TAKE_PTR(out);
	return 0;
}

int ks_rsa_spki_from(const unsigned char *n, size_t n_len, const unsigned char *e, size_t e_len,
		     unsigned char **ret, size_t *ret_len, struct sealvm_err *err)
{
	_cleanup_(bn_freep) BIGNUM *bn_n = NULL, *bn_e = NULL;
	_cleanup_(param_bld_freep) OSSL_PARAM_BLD *bld = NULL;
	_cleanup_(params_freep) OSSL_PARAM *params = NULL;
	_cleanup_(pkey_ctx_freep) EVP_PKEY_CTX *pctx = NULL;
	_cleanup_(pkey_freep) EVP_PKEY *pkey = NULL;

	bn_n = BN_bin2bn(n, (int)n_len, NULL);
	bn_e = BN_bin2bn(e, (int)e_len, NULL);
	bld = OSSL_PARAM_BLD_new();
	if (!bn_n || !bn_e || !bld || !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn_n) ||
	    !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, bn_e))
		return openssl_failed(err, "building the RSA public key");
	params = OSSL_PARAM_BLD_to_param(bld);
	pctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
	if (!params || !pctx || EVP_PKEY_fromdata_init(pctx) != 1 ||
	    EVP_PKEY_fromdata(pctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) != 1)
		return openssl_failed(err, "building the RSA public key");
	return spki_of(pkey, ret, ret_len, err);
}

int ks_rsa_oaep_encrypt(const unsigned char *spki, size_t spki_len, const unsigned char *msg,
			size_t msg_len, unsigned char *out, size_t *out_len)
{
	_cleanup_(pkey_freep) EVP_PKEY *pkey = NULL;
	_cleanup_(pkey_ctx_freep) EVP_PKEY_CTX *pctx = NULL;
	const unsigned char *p = spki;

	pkey = d2i_PUBKEY(NULL, &p, (long)spki_len);
	if (!pkey)
		goto fail;
	pctx = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
	if (!pctx || EVP_PKEY_encrypt_init(pctx) != 1 ||
	    EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_OAEP_PADDING) != 1 ||
	    EVP_PKEY_CTX_set_rsa_oaep_md(pctx, EVP_sha256()) != 1 ||
	    EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, EVP_sha256()) != 1 ||
	    EVP_PKEY_encrypt(pctx, out, out_len, msg, msg_len) != 1)
		goto fail;
	return 0;
fail:
	ERR_clear_error();
	return -EIO;
}
