/* SPDX-License-Identifier: Apache-2.0 */
/*
 * jwt.h — ES256 JSON Web Tokens, as IBM IAM issues them.
 *
 * Header {"alg":"ES256","kid":…,"typ":"JWT"}; signature raw r||s (64 bytes),
 * converted from and to OpenSSL's DER. Every base64url part is decoded
 * strictly (canonical only) and signatures are low-S, so a token has exactly
 * one valid text. Claims (exp, iat, iss, …) are checked by the caller (iam):
 * this module signs and verifies.
 */
#ifndef SEALVM_JWT_H
#define SEALVM_JWT_H

#include <stdint.h>

#include <jansson.h>
#include <openssl/evp.h>

#include "sealvm/err.h"
#include "sealvm/secret.h"

#define SEALVM_JWT_MAX_TOKEN 8192 /* characters; longer tokens are refused unread */
#define SEALVM_JWT_SIG_BYTES 64	  /* raw r || s */
#define SEALVM_JWT_KID_MAX 128	  /* characters of a key id */

/*
 * A new P-256 key pair (EVP_PKEY, free with EVP_PKEY_free). -ENOMEM / -EIO.
 */
int jwt_key_generate(EVP_PKEY **ret);

/*
 * The private key as PKCS#8 DER (PrivateKeyInfo), written straight into new
 * secret memory; for sealing with seal_blob. -EINVAL for a key that is not
 * a P-256 private key, -ENOMEM, -EIO.
 */
int jwt_key_to_der(EVP_PKEY *key, struct sealvm_secret **ret);

/*
 * Parses PKCS#8 DER made by jwt_key_to_der into a new EVP_PKEY. The whole
 * input must be one PrivateKeyInfo of a P-256 key: -EBADMSG otherwise.
 */
int jwt_key_from_der(const struct sealvm_secret *der, EVP_PKEY **ret);

/*
 * The public key as a JWK {kty "EC", crv "P-256", x, y (base64url of 32
 * bytes each), kid, alg "ES256", use "sig"} (new reference), or NULL when
 * @key is no P-256 key or memory runs out.
 */
json_t *jwt_key_jwk(EVP_PKEY *key, const char *kid);

/*
 * Signs @claims (borrowed; a JSON object, serialised compactly in its own
 * key order) with the P-256 @key under @kid (1..SEALVM_JWT_KID_MAX
 * characters). The signature is low-S (s <= n/2), so every token has exactly
 * one valid text. Returns a new malloc'ed token string in *@ret.
 * Errors: -EINVAL (bad kid, claims no object, key no P-256 key), -E2BIG
 * (token longer than SEALVM_JWT_MAX_TOKEN), -ENOMEM, -EIO.
 */
int jwt_sign(EVP_PKEY *key, const char *kid, const json_t *claims, char **ret,
	     struct sealvm_err *err);

/*
 * The key of a key id, for jwt_verify: a borrowed, ready-to-use P-256
 * EVP_PKEY that stays valid until jwt_verify returns, or NULL when the kid
 * is unknown. Called at most once per jwt_verify, after the token's form and
 * header were checked; @kid is the header's kid (a NUL-free string of
 * 1..SEALVM_JWT_KID_MAX characters, attacker-chosen: look it up, never
 * format it into a path or a query text).
 */
typedef EVP_PKEY *(*jwt_lookup_fn)(const char *kid, void *userdata);

/*
 * Checks @token: at most SEALVM_JWT_MAX_TOKEN characters, exactly two dots,
 * three non-empty canonical base64url parts; the header a JSON object with
 * only alg (exactly "ES256"), kid (a string) and optionally typ (exactly
 * "JWT") — crit or any other member is refused —; the signature 64 bytes,
 * r and s in [1, n-1] and s <= n/2 (low-S). Then asks @lookup for the key of
 * the kid and verifies the signature; the claims must be a JSON object.
 * Duplicate JSON members are refused. On success *@ret_claims is the claims
 * object (new reference). Every failure is -EPERM with a reason:
 * TOKEN_MALFORMED, TOKEN_BAD_ALG, TOKEN_UNKNOWN_KEY, TOKEN_BAD_SIGNATURE,
 * and a message that never contains any part of the token (nor its kid);
 * -ENOMEM when memory runs out. Thread-safe when @lookup is.
 */
int jwt_verify(const char *token, EVP_PKEY *(*lookup)(const char *kid, void *userdata),
	       void *userdata, json_t **ret_claims, struct sealvm_err *err) _warn_unused_result_;

#endif
