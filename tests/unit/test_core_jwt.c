// SPDX-License-Identifier: Apache-2.0
/*
 * Unit tests of lib/core/jwt.c: sign/verify round trip, low-S, one valid text
 * per token (every single-character change fails), header and structure
 * rules, key lookup, key encodings, and interoperability with an ES256
 * implementation that is not ours (data/jwt_es256.py, Debian's python3).
 *
 * The test side builds signatures and DER with OpenSSL's BIGNUM/ECDSA_SIG
 * and the group order from EC_GROUP, not with jwt.c's byte arithmetic, so
 * the two check each other.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/obj_mac.h>
#include <openssl/param_build.h>
#include <openssl/x509.h>

#include "sealvm/b64.h"
#include "sealvm/jwt.h"

#define KID "kid-7f3a9c"

struct keyring {
	const char *kid;
	EVP_PKEY *key;
	int calls;
	char last_kid[256];
};

static EVP_PKEY *lookup(const char *kid, void *userdata)
{
	struct keyring *k = userdata;
	k->calls++;
	snprintf(k->last_kid, sizeof(k->last_kid), "%s", kid);
	return strcmp(kid, k->kid) == 0 ? k->key : NULL;
}

static EVP_PKEY *new_key(void)
{
	EVP_PKEY *k = NULL;
	assert_int_equal(jwt_key_generate(&k), 0);
	assert_non_null(k);
	return k;
}

static BIGNUM *p256_order(void)
{
	EC_GROUP *g = EC_GROUP_new_by_curve_name(NID_X9_62_prime256v1);
	assert_non_null(g);
	BIGNUM *n = BN_dup(EC_GROUP_get0_order(g));
	EC_GROUP_free(g);
	assert_non_null(n);
	return n;
}

static char *b64u(const void *data, size_t n)
{
	char *s = malloc(sealvm_b64_encoded_len(n, true) + 1);
	assert_non_null(s);
	sealvm_b64_encode(data, n, s, true);
	return s;
}

/* Decodes part @idx (0..2) of @token; returns its length. */
static size_t token_part(const char *token, int idx, unsigned char *out, size_t cap)
{
	const char *start = token, *end;
	for (int i = 0; i < idx; i++) {
		start = strchr(start, '.');
		assert_non_null(start);
		start++;
	}
	end = strchr(start, '.');
	if (!end)
		end = start + strlen(start);
	assert_true(sealvm_b64_decoded_max((size_t)(end - start)) <= cap);
	long n = sealvm_b64_decode(start, (size_t)(end - start), out, true);
	assert_true(n >= 0);
	return (size_t)n;
}

/* r || s (32 + 32) of @der, with OpenSSL's own parser. */
static void der_to_raw(const unsigned char *der, size_t len, unsigned char raw[64])
{
	const unsigned char *p = der;
	ECDSA_SIG *sig = d2i_ECDSA_SIG(NULL, &p, (long)len);
	const BIGNUM *r, *s;
	assert_non_null(sig);
	ECDSA_SIG_get0(sig, &r, &s);
	assert_int_equal(BN_bn2binpad(r, raw, 32), 32);
	assert_int_equal(BN_bn2binpad(s, raw + 32, 32), 32);
	ECDSA_SIG_free(sig);
}

static size_t raw_to_der(const unsigned char raw[64], unsigned char *der)
{
	ECDSA_SIG *sig = ECDSA_SIG_new();
	BIGNUM *r = BN_bin2bn(raw, 32, NULL), *s = BN_bin2bn(raw + 32, 32, NULL);
	assert_int_equal(ECDSA_SIG_set0(sig, r, s), 1);
	unsigned char *p = der;
	int n = i2d_ECDSA_SIG(sig, &p);
	ECDSA_SIG_free(sig);
	assert_true(n > 0);
	return (size_t)n;
}

static bool s_is_high(const unsigned char raw[64])
{
	BIGNUM *n = p256_order(), *half = BN_new(), *s = BN_bin2bn(raw + 32, 32, NULL);
	BN_rshift1(half, n);
	bool high = BN_cmp(s, half) > 0;
	BN_free(n);
	BN_free(half);
	BN_free(s);
	return high;
}

/* s := n - s (switches between the low and the high twin). */
static void flip_s(unsigned char raw[64])
{
	BIGNUM *n = p256_order(), *s = BN_bin2bn(raw + 32, 32, NULL);
	assert_int_equal(BN_sub(s, n, s), 1);
	assert_int_equal(BN_bn2binpad(s, raw + 32, 32), 32);
	BN_free(n);
	BN_free(s);
}

static bool openssl_verify(EVP_PKEY *key, const char *msg, size_t len, const unsigned char raw[64])
{
	unsigned char der[80];
	size_t dl = raw_to_der(raw, der);
	EVP_MD_CTX *m = EVP_MD_CTX_new();
	assert_int_equal(EVP_DigestVerifyInit(m, NULL, EVP_sha256(), NULL, key), 1);
	int ok = EVP_DigestVerify(m, der, dl, (const unsigned char *)msg, len);
	EVP_MD_CTX_free(m);
	return ok == 1;
}

/* A token with any header and claims text, low-S signed by @key (test-side code). */
static char *make_token(EVP_PKEY *key, const char *header, const char *claims)
{
	char *h = b64u(header, strlen(header)), *c = b64u(claims, strlen(claims));
	size_t in_len = strlen(h) + 1 + strlen(c);
	char *t = malloc(in_len + 1 + 86 + 1);
	unsigned char der[80], raw[64];
	size_t dl = sizeof(der);
	assert_non_null(t);
	sprintf(t, "%s.%s", h, c);
	EVP_MD_CTX *m = EVP_MD_CTX_new();
	assert_int_equal(EVP_DigestSignInit(m, NULL, EVP_sha256(), NULL, key), 1);
	assert_int_equal(EVP_DigestSign(m, der, &dl, (const unsigned char *)t, in_len), 1);
	EVP_MD_CTX_free(m);
	der_to_raw(der, dl, raw);
	if (s_is_high(raw))
		flip_s(raw);
	t[in_len] = '.';
	sealvm_b64_encode(raw, 64, t + in_len + 1, true);
	free(h);
	free(c);
	return t;
}

/* Replaces the signature part of @token with @raw. */
static void set_sig(char *token, const unsigned char raw[64])
{
	char *dot = strrchr(token, '.');
	assert_non_null(dot);
	assert_int_equal(strlen(dot + 1), 86);
	sealvm_b64_encode(raw, 64, dot + 1, true);
}

static void get_sig(const char *token, unsigned char raw[66])
{
	assert_int_equal(token_part(token, 2, raw, 66), 64);
}

/* Asserts that the error message quotes no 8 characters of @token, nor the kid. */
static void assert_no_token_text(const struct sealvm_err *err, const char *token)
{
	size_t n = strlen(token);
	for (size_t i = 0; i + 8 <= n; i++) {
		char w[9];
		memcpy(w, token + i, 8);
		w[8] = 0;
		assert_null(strstr(err->message, w));
	}
	assert_null(strstr(err->message, KID));
}

static void expect_fail(const char *token, struct keyring *ring, const char *reason)
{
	struct sealvm_err err = SEALVM_ERR_INIT;
	json_t *claims = NULL;
	int r = jwt_verify(token, lookup, ring, &claims, &err);
	if (r != -EPERM)
		print_error("token accepted or wrong error (%d) at: %s\n", r, token);
	assert_int_equal(r, -EPERM);
	assert_null(claims);
	if (reason)
		assert_string_equal(err.reason, reason);
	assert_true(err.message[0] != 0);
	assert_no_token_text(&err, token);
}

static json_t *expect_ok(const char *token, struct keyring *ring)
{
	struct sealvm_err err = SEALVM_ERR_INIT;
	json_t *claims = NULL;
	int r = jwt_verify(token, lookup, ring, &claims, &err);
	if (r != 0)
		print_error("refused (%s: %s): %s\n", err.reason, err.message, token);
	assert_int_equal(r, 0);
	assert_true(json_is_object(claims));
	return claims;
}

static json_t *sample_claims(void)
{
	/* IAM-like claims, in a deliberately unsorted order that must survive. */
	json_t *c = json_pack("{s:s, s:s, s:s, s:{s:s, s:b}, s:I, s:I, s:s, s:[s]}", "iam_id",
			      "iam-ServiceId-0f1e2d3c", "sub", "ServiceId-0f1e2d3c", "sub_type",
			      "ServiceId", "account", "bss", "a1b2c3", "valid", 1, "iat",
			      (json_int_t)1700000000, "exp", (json_int_t)1700003600, "iss",
			      "https://iam.sealvm.local/identity", "amr", "pwd");
	assert_non_null(c);
	return c;
}

static char *sign_sample(EVP_PKEY *key, json_t *claims)
{
	struct sealvm_err err = SEALVM_ERR_INIT;
	char *token = NULL;
	assert_int_equal(jwt_sign(key, KID, claims, &token, &err), 0);
	assert_non_null(token);
	return token;
}

static void test_roundtrip(void **state)
{
	EVP_PKEY *key = new_key();
	struct keyring ring = {KID, key, 0, ""};
	json_t *claims = sample_claims(), *got;
	char *token = sign_sample(key, claims);
	unsigned char buf[8192];
	size_t n;

	/* Header exactly as specified; claims compact, in their own order. */
	n = token_part(token, 0, buf, sizeof(buf));
	buf[n] = 0;
	assert_string_equal((char *)buf, "{\"alg\":\"ES256\",\"kid\":\"" KID "\",\"typ\":\"JWT\"}");
	n = token_part(token, 1, buf, sizeof(buf));
	buf[n] = 0;
	char *compact = json_dumps(claims, JSON_COMPACT);
	assert_string_equal((char *)buf, compact);
	assert_true(strncmp((char *)buf, "{\"iam_id\":", 10) == 0);
	free(compact);
	assert_null(strchr(token, '='));

	got = expect_ok(token, &ring);
	assert_true(json_equal(got, claims));
	assert_int_equal(ring.calls, 1);
	assert_string_equal(ring.last_kid, KID);
	json_decref(got);

	/* A second signature of the same claims differs (random k) and verifies too. */
	char *token2 = sign_sample(key, claims);
	assert_string_not_equal(token, token2);
	got = expect_ok(token2, &ring);
	json_decref(got);

	free(token);
	free(token2);
	json_decref(claims);
	EVP_PKEY_free(key);
}

static void test_signature_low_s(void **state)
{
	EVP_PKEY *key = new_key();
	json_t *claims = sample_claims();
	unsigned char raw[66];

	for (int i = 0; i < 64; i++) {
		json_object_set_new(claims, "n", json_integer(i));
		char *token = sign_sample(key, claims);
		const char *sig = strrchr(token, '.') + 1;
		assert_int_equal(strlen(sig), 86);
		get_sig(token, raw);
		assert_false(s_is_high(raw));
		/* And it is a valid ECDSA signature for OpenSSL itself. */
		assert_true(openssl_verify(key, token, (size_t)(sig - 1 - token), raw));
		free(token);
	}
	json_decref(claims);
	EVP_PKEY_free(key);
}

/* The strict base64url and the signature together: no other text of a token is valid. */
static void test_every_character_matters(void **state)
{
	EVP_PKEY *key = new_key();
	struct keyring ring = {KID, key, 0, ""};
	json_t *claims = json_pack("{s:s, s:i}", "sub", "x", "exp", 1);
	char *token = sign_sample(key, claims);
	size_t len = strlen(token);
	const char repl[] = "AQgwBf019-_.=+/ ";
	char *t = malloc(len + 2);
	unsigned tried = 0;

	for (size_t i = 0; i < len; i++) {
		char alts[sizeof(repl) + 3];
		memcpy(alts, repl, sizeof(repl) - 1);
		alts[sizeof(repl) - 1] = (char)(token[i] ^ 0x01); /* neighbouring symbol */
		alts[sizeof(repl)] = (char)(token[i] ^ 0x20);	  /* case flip */
		alts[sizeof(repl) + 1] = (char)(token[i] + 1);
		alts[sizeof(repl) + 2] = 0;
		for (size_t a = 0; alts[a]; a++) {
			if (alts[a] == token[i])
				continue;
			memcpy(t, token, len + 1);
			t[i] = alts[a];
			expect_fail(t, &ring, NULL);
			tried++;
		}
	}
	/* Every truncation, and anything appended. */
	for (size_t n = 0; n < len; n++) {
		memcpy(t, token, n);
		t[n] = 0;
		expect_fail(t, &ring, NULL);
	}
	const char *tails[] = {"A", "=", ".", "\n", " "};
	for (size_t k = 0; k < ELEMENTSOF(tails); k++) {
		memcpy(t, token, len);
		t[len] = tails[k][0];
		t[len + 1] = 0;
		expect_fail(t, &ring, NULL);
	}
	print_message("%u single-character changes of a %zu-character token, all refused\n", tried,
		      len);
	json_t *got = expect_ok(token, &ring);
	json_decref(got);
	free(t);
	free(token);
	json_decref(claims);
	EVP_PKEY_free(key);
}

static void test_header_rules(void **state)
{
	EVP_PKEY *key = new_key();
	struct keyring ring = {KID, key, 0, ""};
	const char *claims = "{\"sub\":\"x\"}";
	static const struct {
		const char *header;
		const char *reason; /* NULL: accepted */
	} cases[] = {
		{"{\"alg\":\"ES256\",\"kid\":\"" KID "\",\"typ\":\"JWT\"}", NULL},
		{"{\"alg\":\"ES256\",\"kid\":\"" KID "\"}", NULL},
		{"{\"kid\":\"" KID "\",\"typ\":\"JWT\",\"alg\":\"ES256\"}", NULL},
		{"{ \"alg\" : \"ES256\", \"kid\" : \"" KID "\" }", NULL},
		{"{\"alg\":\"none\",\"kid\":\"" KID "\",\"typ\":\"JWT\"}", "TOKEN_BAD_ALG"},
		{"{\"alg\":\"HS256\",\"kid\":\"" KID "\",\"typ\":\"JWT\"}", "TOKEN_BAD_ALG"},
		{"{\"alg\":\"RS256\",\"kid\":\"" KID "\",\"typ\":\"JWT\"}", "TOKEN_BAD_ALG"},
		{"{\"alg\":\"ES384\",\"kid\":\"" KID "\"}", "TOKEN_BAD_ALG"},
		{"{\"alg\":\"es256\",\"kid\":\"" KID "\"}", "TOKEN_BAD_ALG"},
		{"{\"alg\":\"ES256 \",\"kid\":\"" KID "\"}", "TOKEN_BAD_ALG"},
		{"{\"alg\":[\"ES256\"],\"kid\":\"" KID "\"}", "TOKEN_BAD_ALG"},
		{"{\"kid\":\"" KID "\",\"typ\":\"JWT\"}", "TOKEN_BAD_ALG"},
		{"{\"alg\":\"ES256\",\"typ\":\"JWT\"}", "TOKEN_MALFORMED"},
		{"{\"alg\":\"ES256\",\"kid\":7}", "TOKEN_MALFORMED"},
		{"{\"alg\":\"ES256\",\"kid\":\"\"}", "TOKEN_MALFORMED"},
		{"{\"alg\":\"ES256\",\"kid\":\"k\\u00001\"}", "TOKEN_MALFORMED"},
		{"{\"alg\":\"ES256\",\"kid\":\"" KID "\",\"crit\":[\"exp\"]}", "TOKEN_MALFORMED"},
		{"{\"alg\":\"ES256\",\"kid\":\"" KID "\",\"jku\":\"https://evil/\"}",
		 "TOKEN_MALFORMED"},
		{"{\"alg\":\"ES256\",\"kid\":\"" KID "\",\"typ\":\"JOSE\"}", "TOKEN_MALFORMED"},
		{"{\"alg\":\"ES256\",\"kid\":\"" KID "\",\"typ\":null}", "TOKEN_MALFORMED"},
		{"{\"alg\":\"HS256\",\"alg\":\"ES256\",\"kid\":\"" KID "\"}", "TOKEN_MALFORMED"},
		{"{\"alg\":\"ES256\",\"kid\":\"" KID "\"}x", "TOKEN_MALFORMED"},
		{"[\"ES256\"]", "TOKEN_MALFORMED"},
		{"\"ES256\"", "TOKEN_MALFORMED"},
		{"{\"alg\":\"ES256\",\"kid\":\"" KID "\"", "TOKEN_MALFORMED"},
	};
	for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
		char *t = make_token(key, cases[i].header, claims);
		if (cases[i].reason) {
			expect_fail(t, &ring, cases[i].reason);
		} else {
			json_t *got = expect_ok(t, &ring);
			json_decref(got);
		}
		free(t);
	}

	/* A kid of 129 characters. */
	char hdr[300];
	snprintf(hdr, sizeof(hdr), "{\"alg\":\"ES256\",\"kid\":\"%0129d\"}", 0);
	char *t = make_token(key, hdr, claims);
	expect_fail(t, &ring, "TOKEN_MALFORMED");
	free(t);

	/* alg none with an empty signature, alg HS256 with an HMAC-sized one. */
	const char *none_hdr = "{\"alg\":\"none\",\"kid\":\"" KID "\"}";
	const char *hs_hdr = "{\"alg\":\"HS256\",\"kid\":\"" KID "\"}";
	char *h = b64u(none_hdr, strlen(none_hdr));
	char *c = b64u(claims, strlen(claims));
	char none[512];
	snprintf(none, sizeof(none), "%s.%s.", h, c);
	expect_fail(none, &ring, "TOKEN_MALFORMED");
	free(h);
	h = b64u(hs_hdr, strlen(hs_hdr));
	unsigned char mac[32] = {1};
	char *m = b64u(mac, sizeof(mac));
	snprintf(none, sizeof(none), "%s.%s.%s", h, c, m);
	expect_fail(none, &ring, "TOKEN_BAD_ALG");
	free(h);
	free(c);
	free(m);
	EVP_PKEY_free(key);
}

static void test_claims_rules(void **state)
{
	EVP_PKEY *key = new_key();
	struct keyring ring = {KID, key, 0, ""};
	const char *hdr = "{\"alg\":\"ES256\",\"kid\":\"" KID "\",\"typ\":\"JWT\"}";
	const char *bad[] = {
		"[1,2]",      "\"sub\"",	   "42",	  "null",
		"{\"a\":1}{", "{\"a\":1,\"a\":2}", "{\"a\":1} x", "{\"a\":\"\\u0000\"}"};
	for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
		char *t = make_token(key, hdr, bad[i]);
		int before = ring.calls;
		expect_fail(t, &ring, "TOKEN_MALFORMED");
		/* The claims are looked at only after the signature held. */
		assert_int_equal(ring.calls, before + 1);
		free(t);
	}
	char *t = make_token(key, hdr, "{}");
	json_t *got = expect_ok(t, &ring);
	assert_int_equal(json_object_size(got), 0);
	json_decref(got);
	free(t);
	EVP_PKEY_free(key);
}

static void test_structure_rules(void **state)
{
	EVP_PKEY *key = new_key();
	struct keyring ring = {KID, key, 0, ""};
	json_t *claims = sample_claims();
	char *token = sign_sample(key, claims);
	const char *dot1 = strchr(token, '.'), *dot2 = strrchr(token, '.');
	char buf[9000];

	const char *plain[] = {"", ".", "..", "...", "a", "a.b", "a.b.c.d", "a..c", ".b.c", "a.b."};
	for (size_t i = 0; i < ELEMENTSOF(plain); i++)
		expect_fail(plain[i], &ring, "TOKEN_MALFORMED");
	assert_int_equal(ring.calls, 0);

	/* A fourth part, an empty middle part. */
	snprintf(buf, sizeof(buf), "%s.AAAA", token);
	expect_fail(buf, &ring, "TOKEN_MALFORMED");
	snprintf(buf, sizeof(buf), "%.*s.%s", (int)(dot1 - token), token, dot2);
	expect_fail(buf, &ring, "TOKEN_MALFORMED");
	/* Padding on the signature, a signature of 63 and of 65 bytes. */
	snprintf(buf, sizeof(buf), "%s==", token);
	expect_fail(buf, &ring, "TOKEN_MALFORMED");
	unsigned char raw[66] = {0};
	get_sig(token, raw);
	for (size_t n = 63; n <= 65; n += 2) {
		char *s = b64u(raw, n);
		snprintf(buf, sizeof(buf), "%.*s.%s", (int)(dot2 - token), token, s);
		expect_fail(buf, &ring, "TOKEN_MALFORMED");
		free(s);
	}
	/* The base64 (not url) alphabet in the header. */
	snprintf(buf, sizeof(buf), "%s", token);
	buf[2] = '+';
	expect_fail(buf, &ring, "TOKEN_MALFORMED");

	/* Longer than 8 KiB: refused before anything else, even well-formed. */
	json_t *big = json_object();
	char *pad = malloc(6200);
	memset(pad, 'x', 6100);
	pad[6100] = 0;
	json_object_set_new(big, "pad", json_string(pad));
	char *big_text = json_dumps(big, JSON_COMPACT);
	char *bt = make_token(key, "{\"alg\":\"ES256\",\"kid\":\"" KID "\"}", big_text);
	free(big_text);
	assert_true(strlen(bt) > SEALVM_JWT_MAX_TOKEN);
	expect_fail(bt, &ring, "TOKEN_MALFORMED");
	/* And jwt_sign will not make one. */
	struct sealvm_err err = SEALVM_ERR_INIT;
	char *out = NULL;
	assert_int_equal(jwt_sign(key, KID, big, &out, &err), -E2BIG);
	assert_null(out);
	assert_string_equal(err.reason, "TOKEN_TOO_LARGE");
	free(pad);
	free(bt);
	json_decref(big);

	struct sealvm_err e2 = SEALVM_ERR_INIT;
	json_t *c2 = NULL;
	assert_int_equal(jwt_verify(NULL, lookup, &ring, &c2, &e2), -EPERM);
	free(token);
	json_decref(claims);
	EVP_PKEY_free(key);
}

static void test_keys_and_kids(void **state)
{
	EVP_PKEY *key = new_key(), *other = new_key();
	struct keyring ring = {KID, key, 0, ""};
	json_t *claims = sample_claims();
	char *token = sign_sample(key, claims);

	/* Unknown kid. */
	struct keyring unknown = {"kid-other", key, 0, ""};
	expect_fail(token, &unknown, "TOKEN_UNKNOWN_KEY");
	assert_int_equal(unknown.calls, 1);
	/* Same kid, another key: a forgery. */
	struct keyring wrong = {KID, other, 0, ""};
	expect_fail(token, &wrong, "TOKEN_BAD_SIGNATURE");
	/* A lookup that hands back a key of another curve. */
	EVP_PKEY *p384 = EVP_EC_gen("P-384");
	assert_non_null(p384);
	struct keyring curve = {KID, p384, 0, ""};
	expect_fail(token, &curve, "TOKEN_UNKNOWN_KEY");

	json_t *got = expect_ok(token, &ring);
	json_decref(got);
	free(token);
	json_decref(claims);
	EVP_PKEY_free(p384);
	EVP_PKEY_free(key);
	EVP_PKEY_free(other);
}

static void test_high_s_and_ranges(void **state)
{
	EVP_PKEY *key = new_key();
	struct keyring ring = {KID, key, 0, ""};
	json_t *claims = sample_claims();
	char *token = sign_sample(key, claims);
	size_t signed_len = (size_t)(strrchr(token, '.') - token);
	unsigned char raw[66], twin[66];

	get_sig(token, raw);
	memcpy(twin, raw, 64);
	flip_s(twin);
	assert_true(s_is_high(twin));
	/* The high-S twin is a valid ECDSA signature... */
	assert_true(openssl_verify(key, token, signed_len, twin));
	/* ...which a token must not carry. */
	char *t = strdup(token);
	set_sig(t, twin);
	expect_fail(t, &ring, "TOKEN_BAD_SIGNATURE");

	/* r or s zero, equal to n, or all ones. */
	BIGNUM *n = p256_order();
	unsigned char nb[32], ones[32];
	assert_int_equal(BN_bn2binpad(n, nb, 32), 32);
	memset(ones, 0xff, sizeof(ones));
	const unsigned char zero[32] = {0};
	const unsigned char *bad_values[] = {zero, nb, ones};
	for (size_t i = 0; i < ELEMENTSOF(bad_values); i++) {
		for (int half = 0; half < 2; half++) {
			unsigned char v[64];
			memcpy(v, raw, 64);
			memcpy(v + 32 * half, bad_values[i], 32);
			set_sig(t, v);
			expect_fail(t, &ring, "TOKEN_BAD_SIGNATURE");
		}
	}
	/* s = n/2 exactly is accepted by the range check (then fails as a signature). */
	BIGNUM *h = BN_new();
	BN_rshift1(h, n);
	unsigned char v[64];
	memcpy(v, raw, 32);
	assert_int_equal(BN_bn2binpad(h, v + 32, 32), 32);
	set_sig(t, v);
	expect_fail(t, &ring, "TOKEN_BAD_SIGNATURE");

	set_sig(t, raw);
	json_t *got = expect_ok(t, &ring);
	json_decref(got);
	BN_free(h);
	BN_free(n);
	free(t);
	free(token);
	json_decref(claims);
	EVP_PKEY_free(key);
}

static void test_sign_arguments(void **state)
{
	EVP_PKEY *key = new_key();
	json_t *claims = sample_claims(), *arr = json_array();
	struct sealvm_err err = SEALVM_ERR_INIT;
	char *out = NULL, kid[200];

	assert_int_equal(jwt_sign(key, "", claims, &out, &err), -EINVAL);
	sealvm_err_clear(&err);
	assert_int_equal(jwt_sign(key, NULL, claims, &out, &err), -EINVAL);
	sealvm_err_clear(&err);
	memset(kid, 'k', 129);
	kid[129] = 0;
	assert_int_equal(jwt_sign(key, kid, claims, &out, &err), -EINVAL);
	sealvm_err_clear(&err);
	kid[128] = 0;
	assert_int_equal(jwt_sign(key, kid, claims, &out, &err), 0);
	free(out);
	out = NULL;
	assert_int_equal(jwt_sign(key, "k\xff", claims, &out, &err), -EINVAL);
	sealvm_err_clear(&err);
	assert_int_equal(jwt_sign(key, KID, arr, &out, &err), -EINVAL);
	sealvm_err_clear(&err);
	assert_int_equal(jwt_sign(key, KID, NULL, &out, &err), -EINVAL);
	sealvm_err_clear(&err);
	EVP_PKEY *p384 = EVP_EC_gen("P-384");
	assert_int_equal(jwt_sign(p384, KID, claims, &out, &err), -EINVAL);
	assert_null(out);
	EVP_PKEY_free(p384);
	json_decref(arr);
	json_decref(claims);
	EVP_PKEY_free(key);
}

static void test_der_roundtrip(void **state)
{
	EVP_PKEY *key = new_key(), *back = NULL, *x = NULL;
	struct sealvm_secret *der = NULL, *bad = NULL;
	json_t *claims = sample_claims();

	assert_int_equal(jwt_key_to_der(key, &der), 0);
	/* PKCS#8 PrivateKeyInfo, as OpenSSL's own parser reads it, with nothing after. */
	const unsigned char *p = der->data;
	PKCS8_PRIV_KEY_INFO *p8 = d2i_PKCS8_PRIV_KEY_INFO(NULL, &p, (long)der->len);
	assert_non_null(p8);
	assert_ptr_equal(p, der->data + der->len);
	PKCS8_PRIV_KEY_INFO_free(p8);

	assert_int_equal(jwt_key_from_der(der, &back), 0);
	assert_int_equal(EVP_PKEY_eq(key, back), 1);
	/* The restored key signs tokens that the original's public key verifies. */
	char *token = sign_sample(back, claims);
	struct keyring ring = {KID, key, 0, ""};
	json_t *got = expect_ok(token, &ring);
	json_decref(got);
	free(token);

	/* Truncated at every length, extended, garbage: refused. */
	for (size_t n = 0; n < der->len; n++) {
		assert_int_equal(sealvm_secret_from(der->data, n, &bad), 0);
		assert_int_equal(jwt_key_from_der(bad, &x), -EBADMSG);
		sealvm_secret_free(bad);
	}
	assert_int_equal(sealvm_secret_new(der->len + 1, &bad), 0);
	memcpy(bad->data, der->data, der->len);
	bad->len = der->len + 1;
	assert_int_equal(jwt_key_from_der(bad, &x), -EBADMSG);
	memset(bad->data, 0x30, bad->len);
	assert_int_equal(jwt_key_from_der(bad, &x), -EBADMSG);
	sealvm_secret_free(bad);
	assert_null(x);

	/* Another curve: neither written nor read. */
	EVP_PKEY *p384 = EVP_EC_gen("P-384");
	struct sealvm_secret *d384 = NULL;
	assert_int_equal(jwt_key_to_der(p384, &d384), -EINVAL);
	unsigned char *enc = NULL;
	p8 = EVP_PKEY2PKCS8(p384);
	int l = i2d_PKCS8_PRIV_KEY_INFO(p8, &enc);
	assert_true(l > 0);
	assert_int_equal(sealvm_secret_from(enc, (size_t)l, &d384), 0);
	assert_int_equal(jwt_key_from_der(d384, &x), -EBADMSG);
	OPENSSL_clear_free(enc, (size_t)l);
	PKCS8_PRIV_KEY_INFO_free(p8);
	sealvm_secret_free(d384);
	EVP_PKEY_free(p384);

	sealvm_secret_free(der);
	EVP_PKEY_free(back);
	json_decref(claims);
	EVP_PKEY_free(key);
}

/* A public-only P-256 key from JWK coordinates. */
static EVP_PKEY *key_from_xy(const unsigned char x[32], const unsigned char y[32])
{
	unsigned char point[65];
	point[0] = 0x04;
	memcpy(point + 1, x, 32);
	memcpy(point + 33, y, 32);
	OSSL_PARAM params[] = {
		OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, (char *)"prime256v1",
						 0),
		OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, point, sizeof(point)),
		OSSL_PARAM_construct_end(),
	};
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
	EVP_PKEY *pk = NULL;
	assert_int_equal(EVP_PKEY_fromdata_init(ctx), 1);
	assert_int_equal(EVP_PKEY_fromdata(ctx, &pk, EVP_PKEY_PUBLIC_KEY, params), 1);
	EVP_PKEY_CTX_free(ctx);
	return pk;
}

static void test_jwk(void **state)
{
	EVP_PKEY *key = new_key();
	json_t *jwk = jwt_key_jwk(key, KID);
	unsigned char x[40], y[40], bx[32], by[32];
	BIGNUM *bn = NULL;

	assert_non_null(jwk);
	assert_int_equal(json_object_size(jwk), 7);
	assert_string_equal(json_string_value(json_object_get(jwk, "kty")), "EC");
	assert_string_equal(json_string_value(json_object_get(jwk, "crv")), "P-256");
	assert_string_equal(json_string_value(json_object_get(jwk, "kid")), KID);
	assert_string_equal(json_string_value(json_object_get(jwk, "alg")), "ES256");
	assert_string_equal(json_string_value(json_object_get(jwk, "use")), "sig");
	const char *xs = json_string_value(json_object_get(jwk, "x"));
	const char *ys = json_string_value(json_object_get(jwk, "y"));
	assert_int_equal(strlen(xs), 43);
	assert_int_equal(sealvm_b64_decode(xs, strlen(xs), x, true), 32);
	assert_int_equal(sealvm_b64_decode(ys, strlen(ys), y, true), 32);
	assert_null(json_object_get(jwk, "d"));

	assert_int_equal(EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_EC_PUB_X, &bn), 1);
	assert_int_equal(BN_bn2binpad(bn, bx, 32), 32);
	BN_free(bn);
	bn = NULL;
	assert_int_equal(EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_EC_PUB_Y, &bn), 1);
	assert_int_equal(BN_bn2binpad(bn, by, 32), 32);
	BN_free(bn);
	assert_memory_equal(x, bx, 32);
	assert_memory_equal(y, by, 32);

	/* A verifier holding only the JWK accepts our tokens. */
	EVP_PKEY *pub = key_from_xy(x, y);
	json_t *claims = sample_claims();
	char *token = sign_sample(key, claims);
	struct keyring ring = {KID, pub, 0, ""};
	json_t *got = expect_ok(token, &ring);
	json_decref(got);

	/* A public key cannot be exported as a private one. */
	struct sealvm_secret *der = NULL;
	assert_int_equal(jwt_key_to_der(pub, &der), -EINVAL);
	assert_null(der);
	assert_null(jwt_key_jwk(key, ""));
	EVP_PKEY *p384 = EVP_EC_gen("P-384");
	assert_null(jwt_key_jwk(p384, KID));
	EVP_PKEY_free(p384);

	free(token);
	json_decref(claims);
	json_decref(jwk);
	EVP_PKEY_free(pub);
	EVP_PKEY_free(key);
}

static const char *script_path(char *buf, size_t len)
{
	const char *dir = getenv("SEALVM_TEST_DATA");
	snprintf(buf, len, "%s/jwt_es256.py", dir ? dir : "tests/unit/data");
	return buf;
}

static void write_pem(const struct sealvm_secret *der, const char *path)
{
	size_t n = sealvm_b64_encoded_len(der->len, false);
	char *b = malloc(n + 1);
	FILE *f = fopen(path, "w");
	assert_non_null(b);
	assert_non_null(f);
	sealvm_b64_encode(der->data, der->len, b, false);
	fputs("-----BEGIN PRIVATE KEY-----\n", f);
	for (size_t i = 0; i < n; i += 64)
		fprintf(f, "%.*s\n", (int)MIN((size_t)64, n - i), b + i);
	fputs("-----END PRIVATE KEY-----\n", f);
	assert_int_equal(fclose(f), 0);
	OPENSSL_cleanse(b, n);
	free(b);
}

/*
 * Tokens from python3-cryptography (and PyJWT when installed) must verify,
 * and python must verify ours. Those libraries do not normalise s, so about
 * half of their signatures are high-S: the test checks that each such token
 * is refused as it is, and accepted once s is replaced by n - s.
 */
static void test_interop_python(void **state)
{
	char dir[] = "/tmp/sealvm-jwt-XXXXXX", pem[96], tok[96], cmd[1024], script[512];
	struct sealvm_secret *der = NULL;
	EVP_PKEY *key;
	unsigned high = 0, total = 0;

	if (access("/usr/bin/python3", X_OK) != 0) {
		print_message(
			"skipped: /usr/bin/python3 (with python3-cryptography) is not installed\n");
		skip();
	}
	key = new_key();
	assert_non_null(mkdtemp(dir));
	snprintf(pem, sizeof(pem), "%s/key.pem", dir);
	snprintf(tok, sizeof(tok), "%s/token", dir);
	assert_int_equal(jwt_key_to_der(key, &der), 0);
	write_pem(der, pem);
	sealvm_secret_free(der);

	snprintf(cmd, sizeof(cmd), "/usr/bin/python3 '%s' sign '%s' " KID " 16",
		 script_path(script, sizeof(script)), pem);
	FILE *p = popen(cmd, "r");
	assert_non_null(p);
	struct keyring ring = {KID, key, 0, ""};
	char line[4096];
	while (fgets(line, sizeof(line), p)) {
		line[strcspn(line, "\n")] = 0;
		unsigned char raw[66];
		get_sig(line, raw);
		if (s_is_high(raw)) {
			high++;
			expect_fail(line, &ring, "TOKEN_BAD_SIGNATURE");
			flip_s(raw);
			set_sig(line, raw);
		}
		json_t *got = expect_ok(line, &ring);
		assert_int_equal(json_integer_value(json_object_get(got, "n")), total);
		assert_string_equal(json_string_value(json_object_get(got, "sub")),
				    "iam-ServiceId-1234");
		json_decref(got);
		total++;
	}
	int status = pclose(p);
	if (WIFEXITED(status) && WEXITSTATUS(status) == 77) {
		print_message(
			"skipped: python3-cryptography is not installed for /usr/bin/python3\n");
		unlink(pem);
		rmdir(dir);
		EVP_PKEY_free(key);
		skip();
	}
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	assert_int_equal(total, 16);
	print_message(
		"python tokens: %u verified, %u of them high-S (refused as such, accepted once normalised)\n",
		total, high);

	/* The other way: python checks ours. */
	json_t *claims = sample_claims();
	char *token = sign_sample(key, claims);
	FILE *f = fopen(tok, "w");
	assert_non_null(f);
	fputs(token, f);
	fclose(f);
	snprintf(cmd, sizeof(cmd), "/usr/bin/python3 '%s' verify '%s' '%s'", script, pem, tok);
	p = popen(cmd, "r");
	assert_non_null(p);
	assert_non_null(fgets(line, sizeof(line), p));
	assert_int_equal(pclose(p), 0);
	json_t *back = json_loads(line, 0, NULL);
	assert_non_null(back);
	assert_true(json_equal(back, claims));

	json_decref(back);
	json_decref(claims);
	free(token);
	unlink(tok);
	unlink(pem);
	rmdir(dir);
	EVP_PKEY_free(key);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip),
		cmocka_unit_test(test_signature_low_s),
		cmocka_unit_test(test_every_character_matters),
		cmocka_unit_test(test_header_rules),
		cmocka_unit_test(test_claims_rules),
		cmocka_unit_test(test_structure_rules),
		cmocka_unit_test(test_keys_and_kids),
		cmocka_unit_test(test_high_s_and_ranges),
		cmocka_unit_test(test_sign_arguments),
		cmocka_unit_test(test_der_roundtrip),
		cmocka_unit_test(test_jwk),
		cmocka_unit_test(test_interop_python),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
