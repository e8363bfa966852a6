// SPDX-License-Identifier: Apache-2.0
/*
 * jwt.c — ES256 tokens: signing, strict verification, key encodings (see jwt.h).
 *
 * A token is accepted only in the one form we would have issued: canonical
 * base64url parts, a header with nothing but alg/kid/typ, a 64-byte raw
 * signature with s in the lower half of the group order. So no accepted
 * token can be altered into another accepted text (no padding or trailing-bit
 * games, no (r, n - s) twin), and no header option can change how it is
 * checked. The token is a bearer secret: this file never copies any part of
 * it (nor its kid) into an error message or a log line. Verification runs on
 * every request, so its path allocates only what jansson and one OpenSSL
 * verify context need, and parses the claims only after the signature holds.
 */
#include <errno.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/bn.h>
#include <openssl/decoder.h>
#include <openssl/ec.h>
#include <openssl/encoder.h>
#include <openssl/err.h>
#include <openssl/evp.h>

#include "sealvm/b64.h"
#include "sealvm/jwt.h"

#define SCALAR_BYTES 32
/* Base64url characters of the 64-byte signature. */
#define SIG_B64_LEN 86
/* DER of an ECDSA-Sig-Value with two 32-byte integers: at most 2 + 2 * (2 + 33). */
#define SIG_DER_MAX 72
/* Room for the decoding of any part of a token of the maximum length. */
#define PART_BUF_MAX (SEALVM_JWT_MAX_TOKEN / 4 * 3 + 3)
/* A P-256 PKCS#8 PrivateKeyInfo is 138 bytes (with the public key); leave room. */
#define PKCS8_DER_MAX 256

/* The order n of P-256 and floor(n / 2), big-endian. */
static const unsigned char p256_n[SCALAR_BYTES] = {
	0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff,
	0xff, 0xff, 0xff, 0xff, 0xff, 0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17,
	0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
};
static const unsigned char p256_half_n[SCALAR_BYTES] = {
	0x7f, 0xff, 0xff, 0xff, 0x80, 0x00, 0x00, 0x00, 0x7f, 0xff, 0xff,
	0xff, 0xff, 0xff, 0xff, 0xff, 0xde, 0x73, 0x7d, 0x56, 0xd3, 0x8b,
	0xcf, 0x42, 0x79, 0xdc, 0xe5, 0x61, 0x7e, 0x31, 0x92, 0xa8,
};

static inline void md_ctx_freep(EVP_MD_CTX **c)
{
	EVP_MD_CTX_free(*c);
}

static inline void pkey_freep(EVP_PKEY **k)
{
	EVP_PKEY_free(*k);
}

static inline void ecdsa_sig_freep(ECDSA_SIG **s)
{
	ECDSA_SIG_free(*s);
}

static inline void bn_freep(BIGNUM **b)
{
	BN_free(*b);
}

static inline void encoder_ctx_freep(OSSL_ENCODER_CTX **c)
{
	OSSL_ENCODER_CTX_free(*c);
}

static inline void decoder_ctx_freep(OSSL_DECODER_CTX **c)
{
	OSSL_DECODER_CTX_free(*c);
}

/* Signature scalars are public: plain comparisons are fine here. */
static bool scalar_is_zero(const unsigned char v[SCALAR_BYTES])
{
	unsigned char acc = 0;
	for (size_t i = 0; i < SCALAR_BYTES; i++)
		acc |= v[i];
	return acc == 0;
}

/* a := b - a, for a < b. */
static void scalar_negate_mod(unsigned char a[SCALAR_BYTES], const unsigned char b[SCALAR_BYTES])
{
	unsigned borrow = 0;
	for (size_t i = SCALAR_BYTES; i-- > 0;) {
		unsigned d = (unsigned)b[i] - a[i] - borrow;
		a[i] = (unsigned char)d;
		borrow = (d >> 8) & 1;
	}
}

/* Encodes a 32-byte unsigned big-endian integer as a minimal DER INTEGER. */
static size_t der_integer(unsigned char *p, const unsigned char v[SCALAR_BYTES])
{
	size_t skip = 0;
	while (skip < SCALAR_BYTES - 1 && v[skip] == 0)
		skip++;
	size_t n = SCALAR_BYTES - skip;
	size_t pad = (v[skip] & 0x80) ? 1 : 0;
	p[0] = 0x02;
	p[1] = (unsigned char)(n + pad);
	p[2] = 0;
	memcpy(p + 2 + pad, v + skip, n);
	return 2 + pad + n;
}

/* raw r||s → DER ECDSA-Sig-Value, without allocating. Returns the DER length. */
static size_t sig_raw_to_der(const unsigned char raw[SEALVM_JWT_SIG_BYTES],
			     unsigned char der[SIG_DER_MAX])
{
	size_t n = 2;
	n += der_integer(der + n, raw);
	n += der_integer(der + n, raw + SCALAR_BYTES);
	der[0] = 0x30;
	der[1] = (unsigned char)(n - 2);
	return n;
}

static bool is_p256(EVP_PKEY *key)
{
	char group[32];

	if (!key || !EVP_PKEY_is_a(key, "EC"))
		return false;
	if (EVP_PKEY_get_group_name(key, group, sizeof(group), NULL) != 1) {
		ERR_clear_error();
		return false;
	}
	return strcmp(group, "prime256v1") == 0 || strcmp(group, "P-256") == 0;
}

int jwt_key_generate(EVP_PKEY **ret)
{
	EVP_PKEY *key = EVP_EC_gen("P-256");
	if (!key) {
		ERR_clear_error();
		return -EIO;
	}
	*ret = key;
	return 0;
}

int jwt_key_to_der(EVP_PKEY *key, struct sealvm_secret **ret)
{
	_cleanup_(encoder_ctx_freep) OSSL_ENCODER_CTX *ectx = NULL;
	_cleanup_secret_ struct sealvm_secret *der = NULL;
	unsigned char *p;
	size_t room;
	int r;

	if (!is_p256(key))
		return -EINVAL;
	/*
	 * PKCS#8 explicitly ("PrivateKeyInfo"): i2d_PrivateKey would give the
	 * SEC1 form for EC keys. The encoder writes into our secret memory; its
	 * own staging buffer is freed with OPENSSL_clear_free.
	 */
	ectx = OSSL_ENCODER_CTX_new_for_pkey(key, EVP_PKEY_KEYPAIR, "DER", "PrivateKeyInfo", NULL);
	if (!ectx || OSSL_ENCODER_CTX_get_num_encoders(ectx) == 0) {
		ERR_clear_error();
		return -EIO;
	}
	r = sealvm_secret_new(PKCS8_DER_MAX, &der);
	if (r < 0)
		return r;
	p = der->data;
	room = der->cap;
	if (OSSL_ENCODER_to_data(ectx, &p, &room) != 1) {
		ERR_clear_error();
		/* No private part, or encoding failed. */
		return -EINVAL;
	}
	der->len = der->cap - room;
	*ret = TAKE_PTR(der);
	return 0;
}

int jwt_key_from_der(const struct sealvm_secret *der, EVP_PKEY **ret)
{
	_cleanup_(decoder_ctx_freep) OSSL_DECODER_CTX *dctx = NULL;
	_cleanup_(pkey_freep) EVP_PKEY *key = NULL;
	const unsigned char *p;
	size_t left;

	if (!der || der->len == 0)
		return -EBADMSG;
	dctx = OSSL_DECODER_CTX_new_for_pkey(&key, "DER", "PrivateKeyInfo", "EC", EVP_PKEY_KEYPAIR,
					     NULL, NULL);
	if (!dctx) {
		ERR_clear_error();
		return -EIO;
	}
	p = der->data;
	left = der->len;
	if (OSSL_DECODER_from_data(dctx, &p, &left) != 1 || !key || left != 0 || !is_p256(key)) {
		ERR_clear_error();
		return -EBADMSG;
	}
	*ret = TAKE_PTR(key);
	return 0;
}

static bool coordinate_b64(EVP_PKEY *key, const char *param, char out[64])
{
	_cleanup_(bn_freep) BIGNUM *bn = NULL;
	unsigned char bin[SCALAR_BYTES];

	if (EVP_PKEY_get_bn_param(key, param, &bn) != 1 ||
	    BN_bn2binpad(bn, bin, sizeof(bin)) != (int)sizeof(bin)) {
		ERR_clear_error();
		return false;
	}
	sealvm_b64_encode(bin, sizeof(bin), out, true);
	return true;
}

json_t *jwt_key_jwk(EVP_PKEY *key, const char *kid)
{
	char x[64], y[64];

	if (!is_p256(key) || !kid || !*kid)
		return NULL;
	if (!coordinate_b64(key, OSSL_PKEY_PARAM_EC_PUB_X, x) ||
	    !coordinate_b64(key, OSSL_PKEY_PARAM_EC_PUB_Y, y))
		return NULL;
	return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "kty", "EC", "crv", "P-256", "x", x,
			 "y", y, "kid", kid, "alg", "ES256", "use", "sig");
}

/*
 * Signs @len bytes at @input; writes the low-S raw r||s. OpenSSL's ECDSA
 * gives either s or n - s; we always keep the one <= n/2, which is what the
 * verifier demands.
 */
static int sign_raw(EVP_PKEY *key, const char *input, size_t len,
		    unsigned char raw[SEALVM_JWT_SIG_BYTES])
{
	_cleanup_(md_ctx_freep) EVP_MD_CTX *mctx = NULL;
	_cleanup_(ecdsa_sig_freep) ECDSA_SIG *sig = NULL;
	unsigned char der[SIG_DER_MAX + 8];
	size_t der_len = sizeof(der);
	const unsigned char *p = der;
	const BIGNUM *r, *s;

	mctx = EVP_MD_CTX_new();
	if (!mctx)
		return -ENOMEM;
	if (EVP_DigestSignInit(mctx, NULL, EVP_sha256(), NULL, key) != 1 ||
	    EVP_DigestSign(mctx, der, &der_len, (const unsigned char *)input, len) != 1)
		goto fail;
	sig = d2i_ECDSA_SIG(NULL, &p, (long)der_len);
	if (!sig)
		goto fail;
	ECDSA_SIG_get0(sig, &r, &s);
	if (BN_bn2binpad(r, raw, SCALAR_BYTES) != SCALAR_BYTES ||
	    BN_bn2binpad(s, raw + SCALAR_BYTES, SCALAR_BYTES) != SCALAR_BYTES)
		goto fail;
	if (memcmp(raw + SCALAR_BYTES, p256_half_n, SCALAR_BYTES) > 0)
		scalar_negate_mod(raw + SCALAR_BYTES, p256_n);
	return 0;
fail:
	ERR_clear_error();
	return -EIO;
}

int jwt_sign(EVP_PKEY *key, const char *kid, const json_t *claims, char **ret,
	     struct sealvm_err *err)
{
	_cleanup_(json_decrefp) json_t *header = NULL;
	_cleanup_free_ char *header_text = NULL, *claims_text = NULL, *token = NULL;
	unsigned char raw[SEALVM_JWT_SIG_BYTES];
	size_t kid_len, hlen, clen, hb, cb, total, o;
	int r;

	kid_len = kid ? strlen(kid) : 0;
	if (kid_len == 0 || kid_len > SEALVM_JWT_KID_MAX)
		return sealvm_err_set(err, -EINVAL, "INVALID_ARGUMENT",
				      "a token key id must have 1 to %d characters",
				      SEALVM_JWT_KID_MAX);
	if (!json_is_object(claims))
		return sealvm_err_set(err, -EINVAL, "INVALID_ARGUMENT",
				      "token claims must be a JSON object");
	if (!is_p256(key))
		return sealvm_err_set(err, -EINVAL, "INVALID_ARGUMENT",
				      "the token signing key is not a P-256 key");

	header = json_pack("{s:s, s:s, s:s}", "alg", "ES256", "kid", kid, "typ", "JWT");
	if (!header)
		return sealvm_err_set(err, -EINVAL, "INVALID_ARGUMENT",
				      "the token key id is not valid UTF-8");
	header_text = json_dumps(header, JSON_COMPACT);
	claims_text = json_dumps(claims, JSON_COMPACT);
	if (!header_text || !claims_text)
		return sealvm_err_set(err, -ENOMEM, NULL, "cannot serialise a token");
	hlen = strlen(header_text);
	clen = strlen(claims_text);
	if (hlen > SEALVM_JWT_MAX_TOKEN || clen > SEALVM_JWT_MAX_TOKEN)
		goto too_big;
	hb = sealvm_b64_encoded_len(hlen, true);
	cb = sealvm_b64_encoded_len(clen, true);
	total = hb + 1 + cb + 1 + SIG_B64_LEN;
	if (total > SEALVM_JWT_MAX_TOKEN)
		goto too_big;

	token = malloc(total + 1);
	if (!token)
		return sealvm_err_set(err, -ENOMEM, NULL, "cannot allocate a token");
	o = sealvm_b64_encode(header_text, hlen, token, true);
	token[o++] = '.';
	o += sealvm_b64_encode(claims_text, clen, token + o, true);
	r = sign_raw(key, token, o, raw);
	if (r < 0)
		return sealvm_err_set(err, r, NULL, "cannot sign a token (ECDSA P-256 failed)");
	token[o++] = '.';
	o += sealvm_b64_encode(raw, sizeof(raw), token + o, true);
	if (o != total)
		return sealvm_err_set(err, -EIO, NULL, "token length mismatch");
	*ret = TAKE_PTR(token);
	return 0;
too_big:
	return sealvm_err_set(err, -E2BIG, "TOKEN_TOO_LARGE",
			      "the token would be longer than %d characters: carry fewer claims",
			      SEALVM_JWT_MAX_TOKEN);
}

static int malformed(struct sealvm_err *err, const char *what)
{
	return sealvm_err_set(err, -EPERM, "TOKEN_MALFORMED", "the bearer token is malformed: %s",
			      what);
}

static int bad_signature(struct sealvm_err *err)
{
	ERR_clear_error();
	return sealvm_err_set(err, -EPERM, "TOKEN_BAD_SIGNATURE",
			      "the bearer token's signature is not valid: get a new token");
}

/* Checks the decoded header; on success *ret_kid borrows from @header. */
static int check_header(const json_t *header, const char **ret_kid, struct sealvm_err *err)
{
	const json_t *alg = NULL, *kid = NULL, *typ = NULL;
	const char *name;
	json_t *value;

	if (!json_is_object(header))
		return malformed(err, "its header is not a JSON object");
	json_object_foreach((json_t *)header, name, value)
	{
		if (strcmp(name, "alg") == 0)
			alg = value;
		else if (strcmp(name, "kid") == 0)
			kid = value;
		else if (strcmp(name, "typ") == 0)
			typ = value;
		else if (strcmp(name, "crit") == 0)
			return malformed(err,
					 "critical header parameters (crit) are not supported");
		else
			return malformed(err,
					 "its header has a member other than alg, kid and typ");
	}
	/* Without JSON_ALLOW_NUL a string holds no NUL: strcmp sees all of it. */
	if (!json_is_string(alg) || strcmp(json_string_value(alg), "ES256") != 0)
		return sealvm_err_set(
			err, -EPERM, "TOKEN_BAD_ALG",
			"the bearer token is not signed with ES256, the only algorithm accepted");
	if (!json_is_string(kid) || json_string_length(kid) == 0 ||
	    json_string_length(kid) > SEALVM_JWT_KID_MAX)
		return malformed(err, "its header has no valid key id (kid)");
	if (typ && (!json_is_string(typ) || strcmp(json_string_value(typ), "JWT") != 0))
		return malformed(err, "its header's typ is not JWT");
	*ret_kid = json_string_value(kid);
	return 0;
}

int jwt_verify(const char *token, EVP_PKEY *(*lookup)(const char *kid, void *userdata),
	       void *userdata, json_t **ret_claims, struct sealvm_err *err)
{
	_cleanup_(json_decrefp) json_t *header = NULL, *claims = NULL;
	_cleanup_(md_ctx_freep) EVP_MD_CTX *mctx = NULL;
	unsigned char part[PART_BUF_MAX];
	unsigned char raw[SEALVM_JWT_SIG_BYTES + 2];
	unsigned char der[SIG_DER_MAX];
	const unsigned char *sig_r = raw, *sig_s = raw + SCALAR_BYTES;
	const char *dot1, *dot2, *kid = NULL;
	size_t n, hlen, plen, slen, der_len;
	long dlen, claims_len;
	json_error_t jerr;
	EVP_PKEY *key;
	int r;

	if (!token || !lookup)
		return malformed(err, "no token");
	n = strnlen(token, SEALVM_JWT_MAX_TOKEN + 1);
	if (n > SEALVM_JWT_MAX_TOKEN)
		return malformed(err, "it is longer than 8192 characters");

	/* Exactly two dots, three non-empty parts. */
	dot1 = memchr(token, '.', n);
	if (!dot1)
		return malformed(err, "it does not have three parts separated by dots");
	dot2 = memchr(dot1 + 1, '.', n - (size_t)(dot1 + 1 - token));
	if (!dot2 || memchr(dot2 + 1, '.', n - (size_t)(dot2 + 1 - token)))
		return malformed(err, "it does not have three parts separated by dots");
	hlen = (size_t)(dot1 - token);
	plen = (size_t)(dot2 - dot1 - 1);
	slen = n - (size_t)(dot2 + 1 - token);
	if (hlen == 0 || plen == 0 || slen == 0)
		return malformed(err, "one of its three parts is empty");

	/* Header: canonical base64url, then a JSON object of our one form. */
	dlen = sealvm_b64_decode(token, hlen, part, true);
	if (dlen <= 0)
		return malformed(err, "its header is not canonical base64url");
	header = json_loadb((const char *)part, (size_t)dlen, JSON_REJECT_DUPLICATES, &jerr);
	if (!header)
		return malformed(err, "its header is not valid JSON");
	r = check_header(header, &kid, err);
	if (r < 0)
		return r;

	/* Signature: exactly 64 bytes of canonical base64url. */
	if (slen != SIG_B64_LEN ||
	    sealvm_b64_decode(dot2 + 1, slen, raw, true) != SEALVM_JWT_SIG_BYTES)
		return malformed(err, "its signature is not 64 bytes of canonical base64url");
	/* Payload: canonical too; parsed only once the signature holds. */
	claims_len = sealvm_b64_decode(dot1 + 1, plen, part, true);
	if (claims_len <= 0)
		return malformed(err, "its claims are not canonical base64url");

	/* r, s in [1, n-1], and s <= n/2: the one signature of each (key, message, k). */
	if (scalar_is_zero(sig_r) || memcmp(sig_r, p256_n, SCALAR_BYTES) >= 0 ||
	    scalar_is_zero(sig_s) || memcmp(sig_s, p256_half_n, SCALAR_BYTES) > 0)
		return bad_signature(err);

	key = lookup(kid, userdata);
	if (!key)
		return sealvm_err_set(
			err, -EPERM, "TOKEN_UNKNOWN_KEY",
			"the bearer token was signed with a key this server does not know (rotated out or foreign): get a new token");
	if (!is_p256(key))
		return sealvm_err_set(
			err, -EPERM, "TOKEN_UNKNOWN_KEY",
			"the key registered for the bearer token's key id is not a P-256 key");

	der_len = sig_raw_to_der(raw, der);
	mctx = EVP_MD_CTX_new();
	if (!mctx)
		return sealvm_err_set(err, -ENOMEM, NULL, "cannot allocate a digest context");
	if (EVP_DigestVerifyInit(mctx, NULL, EVP_sha256(), NULL, key) != 1 ||
	    EVP_DigestVerify(mctx, der, der_len, (const unsigned char *)token,
			     (size_t)(dot2 - token)) != 1)
		return bad_signature(err);

	claims = json_loadb((const char *)part, (size_t)claims_len, JSON_REJECT_DUPLICATES, &jerr);
	if (!json_is_object(claims))
		return malformed(err, "its claims are not a JSON object");
	*ret_claims = TAKE_PTR(claims);
	return 0;
}
