// SPDX-License-Identifier: Apache-2.0
/*
 * kms_import.c — import tokens and the server side of secure import.
 *
 * POST /import_token makes, per instance, an RSA-4096 key pair (its private
 * half in the keystore when the token can do RSAES-OAEP-SHA-256, else
 * sealed under the master key: keystore.h decides) and a 12-byte nonce; a
 * new token replaces the old one, whose key is destroyed. GET /import_token
 * hands out the public key (base64 of PEM) and the nonce, counting down
 * maxAllowedRetrievals. A secure import then sends
 *   payload        RSAES-OAEP-SHA-256(public key, material)
 *   encryptedNonce AES-GCM(material, iv, nonce) as ciphertext||tag
 *   iv             the 12-byte GCM IV
 * and kms_import_unwrap checks, in this order: the token exists
 * (IMPORT_TOKEN_NOT_FOUND_ERR) and has not expired (IMPORT_TOKEN_EXPIRED_ERR),
 * the algorithm, the payload opens (INVALID_FIELD_ERR:payload), the nonce
 * opens under the material with that IV (INCORRECT_NONCE_IV_ERR) and equals
 * the token's (INCORRECT_NONCE_ERR). The material exists in clear only in
 * secret memory, from the keystore's RSA decryption to keystore_key_create.
 * The nonce is not secret (GET returns it); the encrypted nonce and the
 * payload never reach a log or an audit record.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "sealvm/b64.h"
#include "sealvm/log.h"

#include "kms_internal.h"

#define NONCE_BYTES 12
#define RSA_CT_BYTES 512

void kms_import_token_done(struct kms_import_token *t)
{
	if (!t)
		return;
	free(t->pub);
	free(t->ref);
	t->pub = t->ref = NULL;
	t->pub_len = t->ref_len = 0;
}

struct token_job {
	struct kms_call *c;
	struct kms_import_token *t;  /* new (create) or read (get) */
	struct kms_import_token old; /* create: the token it replaces */
	bool had_old;
	int64_t now;
};

static int create_run(sqlite3 *conn, void *userdata, struct sealvm_err *err)
{
	struct token_job *j = userdata;
	struct sealvm_err e = SEALVM_ERR_INIT;
	int r = kms_store_token_get(conn, j->t->instance, &j->old, &e);
	if (r < 0 && r != -ENOENT) {
		if (err && !sealvm_err_isset(err))
			*err = e;
		return r;
	}
	j->had_old = r == 0;
	r = kms_store_token_put(conn, j->t, err);
	if (r < 0)
		return r;
	char created[32], expires[32];
	kms_call_audit_data(j->c, json_pack("{s:s}", "instanceID", j->t->instance),
			    json_pack("{s:s, s:s, s:i}", "creationDate",
				      kms_time_text(j->t->created_ms, created, sizeof(created)),
				      "expirationDate",
				      kms_time_text(j->t->expires_ms, expires, sizeof(expires)),
				      "maxAllowedRetrievals", j->t->max_retrievals));
	return kms_call_audit_in_job(j->c, conn, 200, err);
}

int kms_op_import_token_create(struct kms_call *c, int64_t expiration_s, int max_retrievals,
			       struct kms_import_token *ret, struct sealvm_err *err)
{
	struct kms *kms = c->kms;
	struct token_job j = {.c = c, .t = ret, .now = kms_now_ms()};
	int r;

	memset(ret, 0, sizeof(*ret));
	if (expiration_s < kms->cfg.import_token_min_s || expiration_s > 86400)
		return sealvm_err_set(err, -EINVAL, "INVALID_FIELD_ERR:expiration",
				      "The field 'expiration' must be: %lld to 86400 seconds",
				      (long long)kms->cfg.import_token_min_s);
	if (max_retrievals < 1 || max_retrievals > 500)
		return sealvm_err_set(err, -EINVAL, "INVALID_FIELD_ERR:maxAllowedRetrievals",
				      "The field 'maxAllowedRetrievals' must be: 1 to 500");
	snprintf(ret->instance, sizeof(ret->instance), "%s", c->inst.guid);
	snprintf(ret->account_id, sizeof(ret->account_id), "%s", c->inst.account_id);
	ret->max_retrievals = ret->remaining = max_retrievals;
	if (RAND_bytes(ret->nonce, NONCE_BYTES) != 1)
		return sealvm_err_set(err, -EIO, "RANDOM_FAILED", "no random bytes");
	snprintf(ret->name, sizeof(ret->name), "%s/import-token/%lld", c->inst.guid,
		 (long long)j.now);
	r = keystore_rsa_create(kms->deps.ks, ret->name, &ret->pub, &ret->pub_len, &ret->ref,
				&ret->ref_len, err);
	if (r < 0)
		return r;
	/* Making an RSA-4096 pair takes seconds: the token's life starts once it exists. */
	j.now = kms_now_ms();
	ret->created_ms = j.now;
	ret->expires_ms = j.now + expiration_s * 1000;
	r = db_write(kms->deps.db, create_run, &j, err);
	struct kms_import_token *gone = r < 0 ? ret : (j.had_old ? &j.old : NULL);
	if (gone) {
		struct sealvm_err e = SEALVM_ERR_INIT;
		if (keystore_rsa_destroy(kms->deps.ks, gone->name, gone->ref, gone->ref_len, &e) <
		    0)
			log_warning("kms: import token key %s not destroyed: %s", gone->name,
				    e.message);
	}
	kms_import_token_done(&j.old);
	if (r < 0)
		kms_import_token_done(ret);
	return r;
}

static int expired(struct sealvm_err *err)
{
	return sealvm_err_set(err, -EAGAIN, "IMPORT_TOKEN_EXPIRED_ERR",
			      "The import token has expired: create a new one with POST "
			      "/api/v2/import_token");
}

static int get_run(sqlite3 *conn, void *userdata, struct sealvm_err *err)
{
	struct token_job *j = userdata;
	int r = kms_store_token_get(conn, j->c->inst.guid, j->t, err);
	if (r < 0)
		return r;
	if (j->t->expires_ms <= j->now)
		return expired(err);
	r = kms_store_token_retrieve(conn, j->t->instance, err);
	if (r < 0)
		return r;
	j->t->remaining--;
	kms_call_audit_data(j->c, json_pack("{s:s}", "instanceID", j->t->instance),
			    json_pack("{s:i}", "remainingRetrievals", j->t->remaining));
	return kms_call_audit_in_job(j->c, conn, 200, err);
}

int kms_op_import_token_get(struct kms_call *c, struct kms_import_token *ret,
			    struct sealvm_err *err)
{
	struct token_job j = {.c = c, .t = ret, .now = kms_now_ms()};
	memset(ret, 0, sizeof(*ret));
	int r = db_write(c->kms->deps.db, get_run, &j, err);
	if (r < 0)
		kms_import_token_done(ret);
	return r;
}

/* Decodes a base64 field of at most @max bytes into @out (room for decoded_max). */
static long field_b64(const char *s, size_t max, unsigned char *out, size_t out_size)
{
	size_t n = s ? strlen(s) : 0;
	if (n == 0 || n > sealvm_b64_encoded_len(max, false) ||
	    sealvm_b64_decoded_max(n) > out_size)
		return -EINVAL;
	return sealvm_b64_decode(s, n, out, false);
}

int kms_import_unwrap(struct kms *kms, const char *instance, const char *algorithm,
		      const char *payload, const char *encrypted_nonce, const char *iv,
		      struct sealvm_secret **ret, struct sealvm_err *err)
{
	struct kms_import_token t;
	unsigned char ct[RSA_CT_BYTES + 8], ivb[24], enc[NONCE_BYTES + 16 + 8], out[sizeof(enc)];
	_cleanup_secret_ struct sealvm_secret *material = NULL;
	EVP_CIPHER_CTX *ctx = NULL;
	int r, outl = 0, finl = 0;

	sqlite3 *conn = db_read_begin(kms->deps.db);
	if (!conn)
		return sealvm_err_set(err, -EIO, "DB_ERROR", "no database connection");
	r = kms_store_token_get(conn, instance, &t, err);
	db_read_end(kms->deps.db, conn);
	if (r < 0)
		return r;
	if (t.expires_ms <= kms_now_ms()) {
		r = expired(err);
		goto out;
	}
	if (!algorithm || strcmp(algorithm, "RSAES_OAEP_SHA_256") != 0) {
		r = sealvm_err_set(err, -EINVAL, "INVALID_FIELD_ERR:encryptionAlgorithm",
				   "The field 'encryptionAlgorithm' must be: RSAES_OAEP_SHA_256");
		goto out;
	}
	long n = field_b64(payload, RSA_CT_BYTES, ct, sizeof(ct));
	if (n != RSA_CT_BYTES) {
		r = sealvm_err_set(err, -EINVAL, "INVALID_FIELD_ERR:payload",
				   "The field 'payload' must be: the key material encrypted with "
				   "the import token's public key (RSAES-OAEP-SHA-256, %d bytes), "
				   "base64 encoded",
				   RSA_CT_BYTES);
		goto out;
	}
	long ivn = field_b64(iv, 12, ivb, sizeof(ivb));
	if (ivn != 12) {
		r = sealvm_err_set(
			err, -EINVAL, "INVALID_FIELD_ERR:iv",
			"The field 'iv' must be: the 12-byte AES-GCM IV of the encrypted "
			"nonce, base64 encoded");
		goto out;
	}
	long en = field_b64(encrypted_nonce, NONCE_BYTES + 16, enc, sizeof(enc));
	if (en != NONCE_BYTES + 16) {
		r = sealvm_err_set(err, -EINVAL, "INVALID_FIELD_ERR:encryptedNonce",
				   "The field 'encryptedNonce' must be: the import token's nonce "
				   "encrypted with AES-GCM under the key material (ciphertext and "
				   "16-byte tag, %d bytes), base64 encoded",
				   NONCE_BYTES + 16);
		goto out;
	}
	r = keystore_rsa_decrypt(kms->deps.ks, t.name, t.ref, t.ref_len, ct, (size_t)n, &material,
				 err);
	if (r == -EBADMSG || r == -EINVAL) {
		sealvm_err_clear(err);
		r = sealvm_err_set(err, -EINVAL, "INVALID_FIELD_ERR:payload",
				   "The field 'payload' must be: the key material encrypted with "
				   "the current import token's public key (it does not decrypt)");
		goto out;
	}
	if (r < 0)
		goto out;
	const EVP_CIPHER *cipher = material->len == 16	 ? EVP_aes_128_gcm()
				   : material->len == 24 ? EVP_aes_192_gcm()
				   : material->len == 32 ? EVP_aes_256_gcm()
							 : NULL;
	if (!cipher) {
		r = sealvm_err_set(
			err, -EINVAL, "INVALID_FIELD_ERR:payload",
			"The field 'payload' must be: 16, 24 or 32 bytes of key material "
			"(AES-128, -192 or -256)");
		goto out;
	}
	ctx = EVP_CIPHER_CTX_new();
	if (!ctx || EVP_DecryptInit_ex(ctx, cipher, NULL, NULL, NULL) != 1 ||
	    EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, 12, NULL) != 1 ||
	    EVP_DecryptInit_ex(ctx, NULL, NULL, material->data, ivb) != 1 ||
	    EVP_DecryptUpdate(ctx, out, &outl, enc, NONCE_BYTES) != 1 ||
	    EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, 16, enc + NONCE_BYTES) != 1) {
		r = sealvm_err_set(err, -EIO, "CRYPTO_FAILED", "AES-GCM could not be set up");
		goto out;
	}
	if (EVP_DecryptFinal_ex(ctx, out + outl, &finl) != 1) {
		r = sealvm_err_set(err, -EINVAL, "INCORRECT_NONCE_IV_ERR",
				   "The provided encrypted nonce was not encrypted with the key "
				   "material given OR the provided IV does not match the encrypted "
				   "nonce");
		goto out;
	}
	if (outl + finl != NONCE_BYTES || CRYPTO_memcmp(out, t.nonce, NONCE_BYTES) != 0) {
		r = sealvm_err_set(err, -EINVAL, "INCORRECT_NONCE_ERR",
				   "The encrypted nonce given does not match existing record: "
				   "encrypt the nonce of the current import token (GET "
				   "/api/v2/import_token)");
		goto out;
	}
	*ret = TAKE_PTR(material);
	r = 0;
out:
	EVP_CIPHER_CTX_free(ctx);
	OPENSSL_cleanse(out, sizeof(out));
	kms_import_token_done(&t);
	return r;
}
