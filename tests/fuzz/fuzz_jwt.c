// SPDX-License-Identifier: Apache-2.0
/*
 * fuzz_jwt.c — token verification and the sign/verify round trip.
 *
 * An input that starts with '{' is taken as claims: if it is a JSON object
 * that jwt_sign accepts, the token it makes must verify and give the same
 * claims back. Any other input is a token: jwt_verify must refuse it with
 * -EPERM, a reason and a message that does not quote it — or accept it only
 * in the one form we issue. The seeds are signed with the fixed test key
 * below (kid "fuzz"), so the fuzzer starts past the signature check.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sealvm/jwt.h"
#include "sealvm/secret.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A P-256 test key, PKCS#8 DER; it signs nothing but the seed corpus. */
static const unsigned char fuzz_key_der[] = {
	0x30, 0x81, 0x87, 0x02, 0x01, 0x00, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce,
	0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x04,
	0x6d, 0x30, 0x6b, 0x02, 0x01, 0x01, 0x04, 0x20, 0xc5, 0xc2, 0x7e, 0x1f, 0xcf, 0xb1,
	0x95, 0x19, 0x28, 0x91, 0x14, 0xcb, 0x9e, 0xb8, 0xce, 0xd1, 0xf1, 0x29, 0x31, 0x4f,
	0x26, 0xd6, 0xc3, 0x67, 0x7b, 0xbb, 0xe7, 0xea, 0x8c, 0xac, 0x84, 0xce, 0xa1, 0x44,
	0x03, 0x42, 0x00, 0x04, 0x7e, 0x26, 0x58, 0x1c, 0x33, 0x2e, 0xa9, 0x2b, 0x23, 0xfe,
	0xde, 0xb9, 0x4e, 0x7d, 0x7a, 0x32, 0x15, 0xd1, 0x9b, 0xfd, 0x56, 0xcb, 0x9a, 0xfe,
	0xbd, 0x2c, 0x10, 0x5f, 0xa6, 0x5e, 0x1d, 0xe8, 0xac, 0x4a, 0xd5, 0xdd, 0xbb, 0x03,
	0x98, 0x06, 0x51, 0x63, 0x63, 0xe2, 0xa5, 0x06, 0xc8, 0x16, 0xc4, 0xc6, 0xdc, 0x20,
	0x2f, 0xbb, 0x3b, 0x63, 0x93, 0x84, 0xb9, 0x82, 0xb3, 0x14, 0xaf, 0x29,
};

static EVP_PKEY *fuzz_key(void)
{
	static EVP_PKEY *key;
	if (!key) {
		struct sealvm_secret *der = NULL;
		if (sealvm_secret_from(fuzz_key_der, sizeof(fuzz_key_der), &der) < 0 ||
		    jwt_key_from_der(der, &key) < 0)
			abort();
		sealvm_secret_free(der);
	}
	return key;
}

static EVP_PKEY *lookup(const char *kid, void *userdata)
{
	(void)userdata;
	return strcmp(kid, "fuzz") == 0 ? fuzz_key() : NULL;
}

static void fuzz_sign(const uint8_t *data, size_t size)
{
	struct sealvm_err err = SEALVM_ERR_INIT;
	json_t *claims, *back = NULL;
	char *token = NULL;

	claims = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, NULL);
	if (!claims)
		return;
	int r = jwt_sign(fuzz_key(), "fuzz", claims, &token, &err);
	if (r == 0) {
		sealvm_err_clear(&err);
		if (jwt_verify(token, lookup, NULL, &back, &err) != 0)
			abort(); /* we refused our own token */
		if (!json_equal(claims, back))
			abort(); /* the claims changed on the way */
	} else if (r != -EINVAL && r != -E2BIG) {
		abort();
	}
	json_decref(back);
	json_decref(claims);
	free(token);
}

static void fuzz_verify(const uint8_t *data, size_t size)
{
	struct sealvm_err err = SEALVM_ERR_INIT;
	json_t *claims = NULL;
	char *token;

	/* A token is a C string: an embedded NUL would only hide the rest. */
	if (memchr(data, 0, size))
		return;
	token = malloc(size + 1);
	if (!token)
		return;
	memcpy(token, data, size);
	token[size] = 0;
	int r = jwt_verify(token, lookup, NULL, &claims, &err);
	if (r == 0) {
		const char *dot1 = strchr(token, '.'), *dot2 = strrchr(token, '.');
		if (!json_is_object(claims) || !dot1 || dot1 == dot2 ||
		    strchr(dot1 + 1, '.') != dot2 || strlen(dot2 + 1) != 86 || strchr(token, '='))
			abort();
	} else {
		if (r != -EPERM || claims || !err.reason[0] || !err.message[0])
			abort();
		if (size >= 16 && memmem(err.message, strlen(err.message), token, size))
			abort();
	}
	json_decref(claims);
	free(token);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > 2 * SEALVM_JWT_MAX_TOKEN)
		return 0;
	if (size > 0 && data[0] == '{')
		fuzz_sign(data, size);
	else
		fuzz_verify(data, size);
	return 0;
}
