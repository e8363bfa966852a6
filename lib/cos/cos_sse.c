// SPDX-License-Identifier: Apache-2.0
/*
 * cos_sse.c — SSE-KP: the data encryption keys of objects and the
 * segmented AES-256-GCM format of their data files.
 *
 * Each object (or multipart upload) has its own 32-byte DEK, made by the
 * KMS (kms_wrap without plaintext) as the object storage service, wrapped by
 * the bucket's root key with AAD ["cloud-object-storage", bucket CRN, object
 * id]; only the wrapped form and its key version are stored. A data file is
 * a 32-byte header ("SVCOSE1\n", a random 16-byte salt, 8 zero bytes) and
 * segments of 64 KiB plaintext, each sealed with its own 16-byte tag under
 * HKDF-SHA256(DEK, salt, "sealvm cos segment v1"), nonce = 4 zero bytes and
 * the segment index (64-bit big endian), AAD = role (the part number, 0 for
 * a single PUT, 32-bit BE) || segment index (64-bit BE) || final flag (1
 * byte). So segments cannot be reordered, dropped from the end, or moved
 * between files, parts or objects; and a range is read by opening only the
 * segments it covers. A file always has at least one (final) segment.
 * DEKs live only in struct sealvm_secret; nothing here logs or returns them.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/rand.h>

#include "sealvm/b64.h"
#include "sealvm/iam.h"
#include "sealvm/kms.h"
#include "sealvm/log.h"
#include "sealvm/macro.h"

#include "cos_engine.h"

static const unsigned char magic[8] = {'S', 'V', 'C', 'O', 'S', 'E', '1', '\n'};
static const char hkdf_info[] = "sealvm cos segment v1";

static pthread_once_t algs_once = PTHREAD_ONCE_INIT;
static EVP_KDF *alg_hkdf;
static EVP_CIPHER *alg_gcm;

static void algs_fetch(void)
{
	alg_hkdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
	alg_gcm = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);
}

/* ---- DEKs through the KMS ----------------------------------------------------------------------
 */

int cos_sse_kms_error(int r, const struct sealvm_err *kerr, const struct cos_bucket *b,
		      bool creating, struct sealvm_err *err)
{
	const char *msg = kerr && kerr->message[0] ? kerr->message : "no detail";
	switch (r) {
	case -EACCES:
	case -EPERM:
		return sealvm_err_set(
			err, -EACCES, "KMSAccessDenied",
			"the object storage service may not use root key %s: the account must "
			"authorize cloud-object-storage → kms (Reader) on KMS instance %s (KMS: %s)",
			b->sse_key_crn, b->sse_instance, msg);
	case -EALREADY:
	case -ESTALE:
		return sealvm_err_set(err, -EKEYREVOKED, "KMSKeyDisabled",
				      "the bucket's root key %s is disabled or deleted, so its "
				      "objects cannot be %s; enable or restore the key (KMS: %s)",
				      b->sse_key_crn, creating ? "protected" : "read or written",
				      msg);
	case -ENOENT:
		if (creating)
			return sealvm_err_set(err, -EINVAL, "InvalidArgument",
					      "root key %s does not exist (KMS: %s)",
					      b->sse_key_crn, msg);
		return sealvm_err_set(err, -EKEYREVOKED, "KMSKeyDisabled",
				      "the bucket's root key %s no longer exists (KMS: %s)",
				      b->sse_key_crn, msg);
	case -EINVAL:
		return sealvm_err_set(err, -EINVAL, "InvalidArgument",
				      "%s cannot protect a bucket: a root key (not a standard "
				      "key) of an instance of this account is needed (KMS: %s)",
				      b->sse_key_crn, msg);
	case -EBADMSG:
		return sealvm_err_set(err, -EBADMSG, "InternalError",
				      "the stored wrapped key of the object does not open under "
				      "root key %s",
				      b->sse_key_crn);
	case -ENOMEM:
		return sealvm_err_set(err, -ENOMEM, "InternalError", "out of memory");
	default:
		if (kerr && strcmp(kerr->reason, "AUDIT_UNAVAILABLE") == 0)
			return sealvm_err_set(err, -EIO, "ServiceUnavailable",
					      "the key service cannot record its audit event; "
					      "retry later");
		return sealvm_err_set(err, r < 0 ? r : -EIO, "InternalError",
				      "the key service failed (KMS: %s)", msg);
	}
}

static void sse_aad(const struct cos_bucket *b, const char *sse_id, const char *aad[3])
{
	aad[0] = "cloud-object-storage";
	aad[1] = b->crn;
	aad[2] = sse_id;
}

/* The DEK text (base64 of 32 bytes) the KMS handles, as raw bytes in a secret. */
static int dek_decode(const struct sealvm_secret *text, struct sealvm_secret **ret,
		      struct sealvm_err *err)
{
	_cleanup_secret_ struct sealvm_secret *dek = NULL;
	int r = sealvm_secret_new(sealvm_b64_decoded_max(text->len), &dek);
	if (r < 0)
		return sealvm_err_set(err, r, "InternalError", "out of memory");
	long n = sealvm_b64_decode((const char *)text->data, text->len, dek->data, false);
	if (n != COS_DEK_LEN)
		return sealvm_err_set(err, -EBADMSG, "InternalError",
				      "the key service returned a data key of the wrong length");
	dek->len = (size_t)n;
	*ret = TAKE_PTR(dek);
	return 0;
}

int cos_sse_dek_new(struct cos *c, const struct cos_bucket *b, const char *sse_id,
		    struct sealvm_secret **ret_dek, char **ret_wdek, char ret_version[40],
		    struct sealvm_err *err)
{
	struct sealvm_principal sp;
	struct kms_wrap_result w = {0};
	struct sealvm_err kerr = SEALVM_ERR_INIT;
	const char *aad[3];
	_cleanup_secret_ struct sealvm_secret *dek = NULL;

	if (!c->deps.kms)
		return sealvm_err_set(err, -EACCES, "KMSAccessDenied",
				      "server-side encryption is not available on this server");
	iam_service_principal("cloud-object-storage", b->account_id, &sp);
	sse_aad(b, sse_id, aad);
	int r = kms_wrap(c->deps.kms, &sp, b->sse_instance, b->sse_key_id, NULL, aad, 3, &w, &kerr);
	if (r < 0)
		return cos_sse_kms_error(r, &kerr, b, false, err);
	r = w.plaintext ? dek_decode(w.plaintext, &dek, err)
			: sealvm_err_set(err, -EIO, "InternalError", "the key service made no key");
	if (r < 0) {
		kms_wrap_result_done(&w);
		return r;
	}
	snprintf(ret_version, 40, "%s", w.key_version);
	*ret_wdek = TAKE_PTR(w.ciphertext);
	*ret_dek = TAKE_PTR(dek);
	kms_wrap_result_done(&w);
	return 0;
}

int cos_sse_dek_open(struct cos *c, const struct cos_bucket *b, const char *sse_id,
		     const char *wdek, struct sealvm_secret **ret_dek, char **ret_rewrapped,
		     char ret_version[40], struct sealvm_err *err)
{
	struct sealvm_principal sp;
	struct kms_unwrap_result u = {0};
	struct sealvm_err kerr = SEALVM_ERR_INIT;
	const char *aad[3];
	_cleanup_secret_ struct sealvm_secret *dek = NULL;

	if (!c->deps.kms)
		return sealvm_err_set(err, -EACCES, "KMSAccessDenied",
				      "server-side encryption is not available on this server");
	iam_service_principal("cloud-object-storage", b->account_id, &sp);
	sse_aad(b, sse_id, aad);
	int r = kms_unwrap(c->deps.kms, &sp, b->sse_instance, b->sse_key_id, wdek, aad, 3, &u,
			   &kerr);
	if (r < 0)
		return cos_sse_kms_error(r, &kerr, b, false, err);
	r = dek_decode(u.plaintext, &dek, err);
	if (r < 0) {
		kms_unwrap_result_done(&u);
		return r;
	}
	if (ret_rewrapped) {
		*ret_rewrapped = TAKE_PTR(u.rewrapped);
		if (ret_version)
			snprintf(ret_version, 40, "%s", u.rewrapped_version);
	}
	*ret_dek = TAKE_PTR(dek);
	kms_unwrap_result_done(&u);
	return 0;
}

/* ---- the segment format ------------------------------------------------------------------------
 */

struct cos_sse_file {
	EVP_CIPHER_CTX *ctx;
	unsigned role;
	uint64_t n_seg;
	bool encrypt;
};

uint64_t cos_sse_segments(uint64_t plain_size)
{
	return plain_size ? DIV_ROUND_UP(plain_size, COS_SSE_SEG) : 1;
}

uint64_t cos_sse_disk_size(uint64_t plain_size)
{
	return COS_SSE_HDR + plain_size + cos_sse_segments(plain_size) * COS_SSE_TAG;
}

int cos_sse_header_new(unsigned char hdr[COS_SSE_HDR], unsigned char ret_salt[COS_SSE_SALT])
{
	memset(hdr, 0, COS_SSE_HDR);
	memcpy(hdr, magic, sizeof(magic));
	/* a reused salt would reuse nonces: never go on without randomness */
	if (RAND_bytes(ret_salt, COS_SSE_SALT) != 1)
		return -EIO;
	memcpy(hdr + sizeof(magic), ret_salt, COS_SSE_SALT);
	return 0;
}

int cos_sse_header_parse(const unsigned char hdr[COS_SSE_HDR], unsigned char ret_salt[COS_SSE_SALT])
{
	static const unsigned char zero[COS_SSE_HDR - sizeof(magic) - COS_SSE_SALT];
	if (memcmp(hdr, magic, sizeof(magic)) != 0 ||
	    memcmp(hdr + sizeof(magic) + COS_SSE_SALT, zero, sizeof(zero)) != 0)
		return -EBADMSG;
	memcpy(ret_salt, hdr + sizeof(magic), COS_SSE_SALT);
	return 0;
}

int cos_sse_file_new(const struct sealvm_secret *dek, const unsigned char *salt, unsigned role,
		     uint64_t plain_size, bool encrypt, struct cos_sse_file **ret,
		     struct sealvm_err *err)
{
	_cleanup_secret_ struct sealvm_secret *sub = NULL;
	EVP_KDF_CTX *kctx = NULL;
	int r;

	if (pthread_once(&algs_once, algs_fetch) != 0 || !alg_hkdf || !alg_gcm)
		return sealvm_err_set(err, -EIO, "InternalError", "AES-256-GCM is not available");
	r = sealvm_secret_new(32, &sub);
	if (r < 0)
		return sealvm_err_set(err, r, "InternalError", "out of memory");
	kctx = EVP_KDF_CTX_new(alg_hkdf);
	OSSL_PARAM params[] = {
		OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)"SHA256", 0),
		OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, dek->data, dek->len),
		OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, (void *)salt, COS_SSE_SALT),
		OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, (void *)hkdf_info,
						  sizeof(hkdf_info) - 1),
		OSSL_PARAM_construct_end(),
	};
	r = kctx && EVP_KDF_derive(kctx, sub->data, 32, params) == 1 ? 0 : -EIO;
	EVP_KDF_CTX_free(kctx);
	if (r < 0)
		return sealvm_err_set(err, r, "InternalError", "cannot derive the file key");
	sub->len = 32;

	struct cos_sse_file *f = calloc(1, sizeof(*f));
	if (!f)
		return sealvm_err_set(err, -ENOMEM, "InternalError", "out of memory");
	f->ctx = EVP_CIPHER_CTX_new();
	f->role = role;
	f->n_seg = cos_sse_segments(plain_size);
	f->encrypt = encrypt;
	if (!f->ctx || EVP_CipherInit_ex2(f->ctx, alg_gcm, sub->data, NULL, encrypt, NULL) != 1) {
		cos_sse_file_free(f);
		return sealvm_err_set(err, -EIO, "InternalError", "cannot set up AES-256-GCM");
	}
	*ret = f;
	return 0;
}

void cos_sse_file_free(struct cos_sse_file *f)
{
	if (!f)
		return;
	EVP_CIPHER_CTX_free(f->ctx); /* the provider wipes the key schedule */
	free(f);
}

static void put_be(unsigned char *p, uint64_t v, int n)
{
	for (int i = n - 1; i >= 0; i--, v >>= 8)
		p[i] = (unsigned char)v;
}

static int segment(struct cos_sse_file *f, uint64_t idx, const unsigned char *in, size_t len,
		   unsigned char *out, unsigned char *tag)
{
	unsigned char iv[12] = {0}, aad[13];
	int outl = 0;
	if (idx >= f->n_seg || len > COS_SSE_SEG)
		return -EBADMSG;
	put_be(iv + 4, idx, 8);
	put_be(aad, f->role, 4);
	put_be(aad + 4, idx, 8);
	aad[12] = idx + 1 == f->n_seg;
	if (EVP_CipherInit_ex2(f->ctx, NULL, NULL, iv, f->encrypt, NULL) != 1 ||
	    EVP_CipherUpdate(f->ctx, NULL, &outl, aad, sizeof(aad)) != 1)
		return -EIO;
	if (len && EVP_CipherUpdate(f->ctx, out, &outl, in, (int)len) != 1)
		return -EIO;
	if (!f->encrypt && EVP_CIPHER_CTX_ctrl(f->ctx, EVP_CTRL_GCM_SET_TAG, COS_SSE_TAG, tag) != 1)
		return -EIO;
	if (EVP_CipherFinal_ex(f->ctx, out + len, &outl) != 1)
		return f->encrypt ? -EIO : -EBADMSG;
	if (f->encrypt && EVP_CIPHER_CTX_ctrl(f->ctx, EVP_CTRL_GCM_GET_TAG, COS_SSE_TAG, tag) != 1)
		return -EIO;
	return 0;
}

int cos_sse_seal(struct cos_sse_file *f, uint64_t idx, const void *in, size_t len, void *out,
		 struct sealvm_err *err)
{
	int r = segment(f, idx, in, len, out, (unsigned char *)out + len);
	if (r < 0)
		return sealvm_err_set(err, -EIO, "InternalError", "cannot encrypt object data");
	return 0;
}

int cos_sse_open(struct cos_sse_file *f, uint64_t idx, const void *in, size_t len, void *out,
		 struct sealvm_err *err)
{
	if (len < COS_SSE_TAG)
		return sealvm_err_set(err, -EBADMSG, "InternalError",
				      "stored object data is truncated");
	size_t n = len - COS_SSE_TAG;
	int r = segment(f, idx, in, n, out, (unsigned char *)in + n);
	if (r < 0) {
		OPENSSL_cleanse(out, n); /* never hand out what did not authenticate */
		return sealvm_err_set(err, r == -EIO ? -EIO : -EBADMSG, "InternalError",
				      "stored object data failed authentication (segment %llu): "
				      "it was changed or damaged",
				      (unsigned long long)idx);
	}
	return 0;
}
