/* SPDX-License-Identifier: Apache-2.0 */
/*
 * jwt.h — ES256 JSON Web Tokens, as IBM IAM issues them.
 *
 * Header {"alg":"ES256","typ":"JWT","kid":…}; signature raw r||s (64 bytes),
 * converted from and to OpenSSL's DER. Every base64url part is decoded
 * strictly (canonical only), so a token has exactly one valid text. Claims
 * are checked by the caller (iam): this module signs and verifies.
 */
#ifndef SEALVM_JWT_H
#define SEALVM_JWT_H

#include <stdint.h>

#include <jansson.h>
#include <openssl/evp.h>

#include "sealvm/err.h"
#include "sealvm/secret.h"

/* A P-256 key pair (EVP_PKEY), new; its private part as PKCS#8 DER in secret memory. */
int jwt_key_generate(EVP_PKEY **ret);
int jwt_key_to_der(EVP_PKEY *key, struct sealvm_secret **ret);
int jwt_key_from_der(const struct sealvm_secret *der, EVP_PKEY **ret);
/* The public key as a JWK {kty, crv, x, y, kid, alg, use} (new reference). */
json_t *jwt_key_jwk(EVP_PKEY *key, const char *kid);

/* Signs @claims (borrowed) with @key under @kid; returns a new malloc'ed token string. */
int jwt_sign(EVP_PKEY *key, const char *kid, const json_t *claims, char **ret,
	     struct sealvm_err *err);

/*
 * Splits and checks @token: three canonical base64url parts, header alg ES256
 * and a kid, then asks @lookup for the key of that kid (NULL: unknown kid →
 * -EPERM TOKEN_UNKNOWN_KEY) and verifies the signature. On success returns
 * the claims (new reference). Every failure is -EPERM with a reason
 * (TOKEN_MALFORMED, TOKEN_BAD_SIGNATURE, …), never naming the token's text.
 */
int jwt_verify(const char *token, EVP_PKEY *(*lookup)(const char *kid, void *userdata),
	       void *userdata, json_t **ret_claims, struct sealvm_err *err);

#endif
