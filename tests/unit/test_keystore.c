// SPDX-License-Identifier: Apache-2.0
/*
 * Unit tests of lib/keystore: one table of cases run against the soft
 * keystore and against the pkcs11 keystore on a real SoftHSM2 token made for
 * the run (tests/softhsm.sh; skipped with a message when SoftHSM2 is not
 * installed), plus the pkcs11 configuration cases (PIN from a file or the
 * environment, wrong PIN, missing token, module, PIN).
 *
 * Answers are checked against OpenSSL used directly (AES-GCM with the
 * imported material, RSA-OAEP-SHA-256 with the public key), never against
 * values computed by the code under test. Every bad input checks errno and
 * reason, and that nothing was returned.
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <p11-kit/pkcs11.h>

#include "sealvm/keystore.h"
#include "sealvm/seal.h"

struct env {
	const char *backend;
	struct sealvm_secret *master;
	struct keystore *ks;
	bool skip;
	char dir[128];	  /* temp dir; for pkcs11 the SoftHSM2 token lives below it */
	char module[256]; /* pkcs11: module path, token label, PIN file */
	char token[64];
	char pin_file[192];
};

static struct env soft_env = {.backend = "soft"};
static struct env p11_env = {.backend = "pkcs11"};
static struct env p11_cfg_env = {.backend = "pkcs11"};

/* ---- helpers ---- */

static struct sealvm_secret *random_secret(size_t n)
{
	struct sealvm_secret *s = NULL;
	assert_int_equal(sealvm_secret_random(n, &s), 0);
	return s;
}

static struct keystore_config config_of(const struct env *e)
{
	struct keystore_config cfg = {
		.backend = e->backend,
		.master = e->master,
		.module = e->module,
		.token_label = e->token,
		.pin_file = e->pin_file,
		.sessions = 2, /* fewer than the concurrency test's threads: they must wait */
	};
	return cfg;
}

static void rmrf(const char *dir)
{
	char cmd[256];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	assert_int_equal(system(cmd), 0);
}

/* Sets up the SoftHSM2 token of @e through tests/softhsm.sh; false when SoftHSM2 is missing. */
static bool softhsm_setup(struct env *e)
{
	const char *data = getenv("SEALVM_TEST_DATA");
	char script[512], cmd[1024], path[256], line[512];
	FILE *f;
	int rc;

	if (!data) {
		fprintf(stderr, "SEALVM_TEST_DATA is not set: cannot find tests/softhsm.sh\n");
		return false;
	}
	snprintf(script, sizeof(script), "%s/../../softhsm.sh", data);
	snprintf(cmd, sizeof(cmd), "bash -c '. \"%s\" && softhsm_setup \"%s/hsm\"'", script,
		 e->dir);
	rc = system(cmd);
	if (rc != 0) {
		fprintf(stderr,
			"SKIP pkcs11 keystore tests: tests/softhsm.sh could not make a token (needs the Debian package softhsm2)\n");
		return false;
	}
	snprintf(path, sizeof(path), "%s/hsm/env", e->dir);
	f = fopen(path, "r");
	assert_non_null(f);
	while (fgets(line, sizeof(line), f)) {
		char *eq = strchr(line, '='), *nl = strchr(line, '\n');
		if (!eq)
			continue;
		if (nl)
			*nl = 0;
		*eq = 0;
		if (strcmp(line, "SOFTHSM2_CONF") == 0)
			setenv("SOFTHSM2_CONF", eq + 1, 1);
		else if (strcmp(line, "SEALVM_TEST_PKCS11_MODULE") == 0)
			snprintf(e->module, sizeof(e->module), "%s", eq + 1);
		else if (strcmp(line, "SEALVM_TEST_PKCS11_TOKEN") == 0)
			snprintf(e->token, sizeof(e->token), "%s", eq + 1);
		else if (strcmp(line, "SEALVM_TEST_PKCS11_PIN_FILE") == 0)
			snprintf(e->pin_file, sizeof(e->pin_file), "%s", eq + 1);
	}
	fclose(f);
	return e->module[0] && e->token[0] && e->pin_file[0];
}

static int env_setup(struct env *e, bool open)
{
	struct sealvm_err err = SEALVM_ERR_INIT;
	struct keystore_config cfg;

	snprintf(e->dir, sizeof(e->dir), "/tmp/sealvm-ks-XXXXXX");
	if (!mkdtemp(e->dir))
		return -1;
	if (sealvm_secret_random(SEALVM_MASTER_KEY_BYTES, &e->master) < 0)
		return -1;
	if (strcmp(e->backend, "pkcs11") == 0 && !softhsm_setup(e)) {
		e->skip = true;
		return 0;
	}
	if (!open)
		return 0;
	cfg = config_of(e);
	if (keystore_open(&cfg, &e->ks, &err) < 0) {
		fprintf(stderr, "keystore_open(%s): %s %s\n", e->backend, err.reason, err.message);
		return -1;
	}
	return 0;
}

static int env_teardown(struct env *e)
{
	keystore_close(e->ks);
	e->ks = NULL;
	sealvm_secret_free(e->master);
	e->master = NULL;
	if (e->dir[0])
		rmrf(e->dir);
	return 0;
}

static int soft_setup(void **state)
{
	*state = &soft_env;
	return env_setup(&soft_env, true);
}
static int soft_teardown(void **state)
{
	return env_teardown(&soft_env);
}
static int p11_setup(void **state)
{
	*state = &p11_env;
	return env_setup(&p11_env, true);
}
static int p11_teardown(void **state)
{
	return env_teardown(&p11_env);
}
static int p11_cfg_setup(void **state)
{
	*state = &p11_cfg_env;
	return env_setup(&p11_cfg_env, false);
}
static int p11_cfg_teardown(void **state)
{
	return env_teardown(&p11_cfg_env);
}

static struct env *env_of(void **state)
{
	struct env *e = *state;
	if (e->skip)
		skip();
	return e;
}

/* AES-GCM with OpenSSL directly: the reference the keystore must agree with. */
static int ossl_gcm(bool enc, const struct sealvm_secret *key, const unsigned char *iv,
		    const unsigned char *aad, size_t aad_len, const unsigned char *in, size_t len,
		    unsigned char *out, unsigned char *tag)
{
	const EVP_CIPHER *c = key->len == 16   ? EVP_aes_128_gcm()
			      : key->len == 24 ? EVP_aes_192_gcm()
					       : EVP_aes_256_gcm();
	EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
	int outl, ok;
	assert_non_null(ctx);
	if (enc)
		ok = EVP_EncryptInit_ex(ctx, c, NULL, key->data, iv) == 1 &&
		     EVP_EncryptUpdate(ctx, NULL, &outl, aad, (int)aad_len) == 1 &&
		     EVP_EncryptUpdate(ctx, out, &outl, in, (int)len) == 1 &&
		     EVP_EncryptFinal_ex(ctx, out + outl, &outl) == 1 &&
		     EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, 16, tag) == 1;
	else
		ok = EVP_DecryptInit_ex(ctx, c, NULL, key->data, iv) == 1 &&
		     EVP_DecryptUpdate(ctx, NULL, &outl, aad, (int)aad_len) == 1 &&
		     EVP_DecryptUpdate(ctx, out, &outl, in, (int)len) == 1 &&
		     EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, 16, tag) == 1 &&
		     EVP_DecryptFinal_ex(ctx, out + outl, &outl) == 1;
	EVP_CIPHER_CTX_free(ctx);
	return ok ? 0 : -1;
}

struct key {
	char name[96];
	unsigned char ref[KEYSTORE_REF_MAX];
	size_t ref_len;
};

static void key_make(struct keystore *ks, struct key *k, const char *name, size_t bytes,
		     const struct sealvm_secret *material)
{
	struct sealvm_err err = SEALVM_ERR_INIT;
	snprintf(k->name, sizeof(k->name), "%s", name);
	k->ref_len = 0;
	int r = keystore_key_create(ks, k->name, bytes, material, k->ref, &k->ref_len, &err);
	if (r < 0)
		fail_msg("keystore_key_create(%s, %zu): %d %s %s", name, bytes, r, err.reason,
			 err.message);
	assert_true(k->ref_len > 0 && k->ref_len <= KEYSTORE_REF_MAX);
}

static void unique_name(char *buf, size_t size, const char *what)
{
	static unsigned counter;
	unsigned char rnd[4];
	assert_int_equal(RAND_bytes(rnd, sizeof(rnd)), 1);
	snprintf(buf, size, "inst-%02x%02x%02x%02x/%s/%u", rnd[0], rnd[1], rnd[2], rnd[3], what,
		 ++counter);
}

struct sealed {
	unsigned char iv[KEYSTORE_IV_BYTES], tag[KEYSTORE_TAG_BYTES], ct[64];
	size_t len;
};

static void seal_with(struct keystore *ks, const struct key *k, const char *aad,
		      const struct sealvm_secret *plain, struct sealed *out)
{
	struct sealvm_err err = SEALVM_ERR_INIT;
	assert_true(plain->len <= sizeof(out->ct));
	int r = keystore_encrypt(ks, k->name, k->ref, k->ref_len, (const unsigned char *)aad,
				 strlen(aad), plain, out->iv, out->ct, out->tag, &err);
	if (r < 0)
		fail_msg("keystore_encrypt(%s): %d %s %s", k->name, r, err.reason, err.message);
	out->len = plain->len;
}

/* Decrypts and expects @want (or, with @want NULL, -EBADMSG and nothing returned). */
static void open_expect(struct keystore *ks, const char *name, const unsigned char *ref,
			size_t ref_len, const char *aad, const struct sealed *s,
			const struct sealvm_secret *want, int want_r, const char *want_reason)
{
	struct sealvm_err err = SEALVM_ERR_INIT;
	struct sealvm_secret *got = NULL;
	int r = keystore_decrypt(ks, name, ref, ref_len, (const unsigned char *)aad, strlen(aad),
				 s->iv, s->ct, s->len, s->tag, &got, &err);
	if (want) {
		if (r < 0)
			fail_msg("keystore_decrypt(%s): %d %s %s", name, r, err.reason,
				 err.message);
		assert_non_null(got);
		assert_true(sealvm_secret_equal(got, want));
		sealvm_secret_free(got);
		return;
	}
	assert_int_equal(r, want_r);
	assert_null(got);
	assert_string_equal(err.reason, want_reason);
	assert_true(err.message[0] != 0);
}

/* ---- the table, for both backends ---- */

static void test_generated_round_trip(void **state)
{
	struct env *e = env_of(state);
	static const size_t sizes[] = {16, 24, 32};
	for (size_t i = 0; i < 3; i++) {
		struct key k;
		struct sealed s;
		char name[96];
		unique_name(name, sizeof(name), "gen");
		key_make(e->ks, &k, name, sizes[i], NULL);
		for (size_t len = 1; len <= 64; len += 21) {
			struct sealvm_secret *plain = random_secret(len);
			seal_with(e->ks, &k, "aad-1", plain, &s);
			/* 8 bytes: equal by chance 1 time in 2^64 (one byte would be 1 in 256) */
			if (len >= 8)
				assert_memory_not_equal(s.ct, plain->data, 8);
			/* twice: the soft keystore answers the second from its cache */
			open_expect(e->ks, k.name, k.ref, k.ref_len, "aad-1", &s, plain, 0, NULL);
			open_expect(e->ks, k.name, k.ref, k.ref_len, "aad-1", &s, plain, 0, NULL);
			sealvm_secret_free(plain);
		}
	}
}

/*
 * Imported keys of each size: what the keystore encrypts, OpenSSL opens with
 * the material, and the other way round — the format is plain AES-GCM with
 * a 96-bit IV and 128-bit tag, inside a token too.
 */
static void test_imported_matches_openssl(void **state)
{
	struct env *e = env_of(state);
	static const size_t sizes[] = {16, 24, 32};
	for (size_t i = 0; i < 3; i++) {
		struct sealvm_secret *material = random_secret(sizes[i]);
		struct sealvm_secret *plain = random_secret(32);
		unsigned char back[32];
		struct key k;
		struct sealed s;
		char name[96];

		unique_name(name, sizeof(name), "imp");
		key_make(e->ks, &k, name, sizes[i], material);
		seal_with(e->ks, &k, "the-aad", plain, &s);
		assert_int_equal(ossl_gcm(false, material, s.iv, (const unsigned char *)"the-aad",
					  7, s.ct, s.len, back, s.tag),
				 0);
		assert_memory_equal(back, plain->data, 32);

		assert_int_equal(RAND_bytes(s.iv, sizeof(s.iv)), 1);
		assert_int_equal(ossl_gcm(true, material, s.iv, (const unsigned char *)"x", 1,
					  plain->data, 32, s.ct, s.tag),
				 0);
		open_expect(e->ks, k.name, k.ref, k.ref_len, "x", &s, plain, 0, NULL);
		sealvm_secret_free(material);
		sealvm_secret_free(plain);
	}
}

static void test_ivs_are_fresh(void **state)
{
	struct env *e = env_of(state);
	struct sealvm_secret *plain = random_secret(32);
	struct sealed a, b;
	struct key k;
	char name[96];
	unique_name(name, sizeof(name), "iv");
	key_make(e->ks, &k, name, 32, NULL);
	seal_with(e->ks, &k, "", plain, &a);
	seal_with(e->ks, &k, "", plain, &b);
	assert_memory_not_equal(a.iv, b.iv, KEYSTORE_IV_BYTES);
	assert_memory_not_equal(a.ct, b.ct, 32);
	open_expect(e->ks, k.name, k.ref, k.ref_len, "", &a, plain, 0, NULL);
	sealvm_secret_free(plain);
}

static void test_tampering_fails(void **state)
{
	struct env *e = env_of(state);
	struct sealvm_secret *plain = random_secret(32);
	struct key k, other;
	struct sealed s, t;
	char name[96], name2[96];

	unique_name(name, sizeof(name), "tamper");
	unique_name(name2, sizeof(name2), "other");
	key_make(e->ks, &k, name, 32, NULL);
	key_make(e->ks, &other, name2, 32, NULL);
	seal_with(e->ks, &k, "aad", plain, &s);
	open_expect(e->ks, k.name, k.ref, k.ref_len, "aad", &s, plain, 0, NULL);

	/* wrong AAD */
	open_expect(e->ks, k.name, k.ref, k.ref_len, "aae", &s, NULL, -EBADMSG,
		    "KEYSTORE_DECRYPT_FAILED");
	open_expect(e->ks, k.name, k.ref, k.ref_len, "", &s, NULL, -EBADMSG,
		    "KEYSTORE_DECRYPT_FAILED");
	/* the right reference under another key's name: it belongs elsewhere */
	open_expect(e->ks, other.name, k.ref, k.ref_len, "aad", &s, NULL, -EBADMSG,
		    "KEYSTORE_DECRYPT_FAILED");
	/* another key */
	open_expect(e->ks, other.name, other.ref, other.ref_len, "aad", &s, NULL, -EBADMSG,
		    "KEYSTORE_DECRYPT_FAILED");
	/* one bit of the IV, of the ciphertext (first and last byte), of the tag */
	for (size_t i = 0; i < KEYSTORE_IV_BYTES; i += 11) {
		t = s;
		t.iv[i] ^= 0x01;
		open_expect(e->ks, k.name, k.ref, k.ref_len, "aad", &t, NULL, -EBADMSG,
			    "KEYSTORE_DECRYPT_FAILED");
	}
	t = s;
	t.ct[0] ^= 0x80;
	open_expect(e->ks, k.name, k.ref, k.ref_len, "aad", &t, NULL, -EBADMSG,
		    "KEYSTORE_DECRYPT_FAILED");
	t = s;
	t.ct[31] ^= 0x01;
	open_expect(e->ks, k.name, k.ref, k.ref_len, "aad", &t, NULL, -EBADMSG,
		    "KEYSTORE_DECRYPT_FAILED");
	t = s;
	t.len = 31; /* truncated */
	open_expect(e->ks, k.name, k.ref, k.ref_len, "aad", &t, NULL, -EBADMSG,
		    "KEYSTORE_DECRYPT_FAILED");
	for (size_t i = 0; i < KEYSTORE_TAG_BYTES; i += 15) {
		t = s;
		t.tag[i] ^= 0x01;
		open_expect(e->ks, k.name, k.ref, k.ref_len, "aad", &t, NULL, -EBADMSG,
			    "KEYSTORE_DECRYPT_FAILED");
	}
	/* and the untouched one still opens: nothing was spoiled on the way */
	open_expect(e->ks, k.name, k.ref, k.ref_len, "aad", &s, plain, 0, NULL);
	sealvm_secret_free(plain);
}

static void test_tampered_reference(void **state)
{
	struct env *e = env_of(state);
	struct sealvm_secret *plain = random_secret(16);
	struct key k;
	struct sealed s;
	unsigned char ref[KEYSTORE_REF_MAX];
	char name[96];
	unique_name(name, sizeof(name), "ref");
	key_make(e->ks, &k, name, 32, NULL);
	seal_with(e->ks, &k, "a", plain, &s);
	/* A flipped bit in the last byte of the reference: soft, the blob fails its tag;
	 * pkcs11, the id names no object. */
	memcpy(ref, k.ref, k.ref_len);
	ref[k.ref_len - 1] ^= 0x01;
	if (strcmp(e->backend, "soft") == 0)
		open_expect(e->ks, k.name, ref, k.ref_len, "a", &s, NULL, -EBADMSG,
			    "KEYSTORE_DECRYPT_FAILED");
	else
		open_expect(e->ks, k.name, ref, k.ref_len, "a", &s, NULL, -ENOENT,
			    "KEYSTORE_KEY_MISSING");
	sealvm_secret_free(plain);
}

static void test_unknown_reference(void **state)
{
	struct env *e = env_of(state);
	struct sealvm_err err = SEALVM_ERR_INIT;
	struct sealvm_secret *plain = random_secret(16);
	unsigned char rnd[64], iv[12], tag[16], ct[16];
	const size_t lens[] = {16, 48, 64, 5, 200};
	struct sealed s;
	struct key k;
	char name[96];

	unique_name(name, sizeof(name), "known");
	key_make(e->ks, &k, name, 32, NULL);
	seal_with(e->ks, &k, "a", plain, &s);
	assert_int_equal(RAND_bytes(rnd, sizeof(rnd)), 1);
	for (size_t i = 0; i < ELEMENTSOF(lens); i++) {
		unsigned char ref[256] = {0};
		memcpy(ref, rnd, lens[i] < sizeof(rnd) ? lens[i] : sizeof(rnd));
		open_expect(e->ks, k.name, ref, lens[i], "a", &s, NULL, -ENOENT,
			    "KEYSTORE_KEY_MISSING");
		sealvm_err_clear(&err);
		assert_int_equal(keystore_encrypt(e->ks, k.name, ref, lens[i], NULL, 0, plain, iv,
						  ct, tag, &err),
				 -ENOENT);
		assert_string_equal(err.reason, "KEYSTORE_KEY_MISSING");
	}
	sealvm_secret_free(plain);
}

static void test_destroy_idempotent(void **state)
{
	struct env *e = env_of(state);
	struct sealvm_err err = SEALVM_ERR_INIT;
	struct sealvm_secret *plain = random_secret(32);
	struct key k;
	struct sealed s;
	char name[96];

	unique_name(name, sizeof(name), "destroy");
	key_make(e->ks, &k, name, 32, NULL);
	seal_with(e->ks, &k, "a", plain, &s);
	open_expect(e->ks, k.name, k.ref, k.ref_len, "a", &s, plain, 0, NULL);
	assert_int_equal(keystore_key_destroy(e->ks, k.name, k.ref, k.ref_len, &err), 0);
	assert_int_equal(keystore_key_destroy(e->ks, k.name, k.ref, k.ref_len, &err), 0);
	assert_int_equal(err.code, 0);
	if (strcmp(e->backend, "pkcs11") == 0) {
		/* gone from the token, and from the handle cache */
		open_expect(e->ks, k.name, k.ref, k.ref_len, "a", &s, NULL, -ENOENT,
			    "KEYSTORE_KEY_MISSING");
		sealvm_err_clear(&err);
		unsigned char iv[12], tag[16], ct[32];
		assert_int_equal(keystore_encrypt(e->ks, k.name, k.ref, k.ref_len, NULL, 0, plain,
						  iv, ct, tag, &err),
				 -ENOENT);
	}
	sealvm_secret_free(plain);
}

static void test_destroy_wrong_name(void **state)
{
	struct env *e = env_of(state);
	struct sealvm_err err = SEALVM_ERR_INIT;
	struct sealvm_secret *plain = random_secret(32);
	struct key k;
	struct sealed s;
	char name[96], other[96];

	unique_name(name, sizeof(name), "keep");
	unique_name(other, sizeof(other), "thief");
	key_make(e->ks, &k, name, 32, NULL);
	seal_with(e->ks, &k, "a", plain, &s);
	int r = keystore_key_destroy(e->ks, other, k.ref, k.ref_len, &err);
	if (strcmp(e->backend, "pkcs11") == 0) {
		assert_int_equal(r, -EBADMSG);
		assert_non_null(strstr(err.message, "nothing was destroyed"));
	} else
		assert_int_equal(r, 0);
	/* either way, the key still works under its own name */
	open_expect(e->ks, k.name, k.ref, k.ref_len, "a", &s, plain, 0, NULL);
	sealvm_secret_free(plain);
}

static void test_bad_arguments(void **state)
{
	struct env *e = env_of(state);
	struct sealvm_secret *plain = random_secret(32), *m16 = random_secret(16), *got = NULL;
	struct sealvm_secret *empty = NULL;
	unsigned char ref[KEYSTORE_REF_MAX], iv[12], tag[16], ct[32];
	size_t ref_len = 0;
	struct key k;
	char name[96], longname[300];
	struct sealvm_err err;

	unique_name(name, sizeof(name), "args");
	key_make(e->ks, &k, name, 32, NULL);
	assert_int_equal(sealvm_secret_new(1, &empty), 0);
	memset(longname, 'a', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = 0;

#define EXPECT_INVALID(call)                                                                       \
	do {                                                                                       \
		sealvm_err_clear(&err);                                                            \
		assert_int_equal((call), -EINVAL);                                                 \
		assert_string_equal(err.reason, "KEYSTORE_INVALID");                               \
	} while (0)
	EXPECT_INVALID(keystore_key_create(e->ks, "n/k/1", 20, NULL, ref, &ref_len, &err));
	EXPECT_INVALID(keystore_key_create(e->ks, "n/k/1", 0, NULL, ref, &ref_len, &err));
	EXPECT_INVALID(keystore_key_create(e->ks, "n/k/1", 64, NULL, ref, &ref_len, &err));
	EXPECT_INVALID(keystore_key_create(e->ks, "n/k/1", 32, m16, ref, &ref_len, &err));
	EXPECT_INVALID(keystore_key_create(e->ks, "", 32, NULL, ref, &ref_len, &err));
	EXPECT_INVALID(keystore_key_create(e->ks, NULL, 32, NULL, ref, &ref_len, &err));
	EXPECT_INVALID(keystore_key_create(e->ks, "has space", 32, NULL, ref, &ref_len, &err));
	EXPECT_INVALID(keystore_key_create(e->ks, "tab\there", 32, NULL, ref, &ref_len, &err));
	EXPECT_INVALID(keystore_key_create(e->ks, longname, 32, NULL, ref, &ref_len, &err));
	EXPECT_INVALID(keystore_key_create(e->ks, "n/k/1", 32, NULL, NULL, &ref_len, &err));
	assert_int_equal(ref_len, 0);
	EXPECT_INVALID(keystore_encrypt(e->ks, k.name, k.ref, k.ref_len, NULL, 0, empty, iv, ct,
					tag, &err));
	EXPECT_INVALID(keystore_encrypt(e->ks, k.name, k.ref, k.ref_len, NULL, 0, NULL, iv, ct, tag,
					&err));
	EXPECT_INVALID(keystore_encrypt(e->ks, k.name, k.ref, k.ref_len, NULL, 3, plain, iv, ct,
					tag, &err));
	EXPECT_INVALID(keystore_encrypt(e->ks, k.name, NULL, 0, NULL, 0, plain, iv, ct, tag, &err));
	EXPECT_INVALID(
		keystore_encrypt(e->ks, k.name, k.ref, 0, NULL, 0, plain, iv, ct, tag, &err));
	EXPECT_INVALID(keystore_decrypt(e->ks, k.name, k.ref, k.ref_len, NULL, 0, iv, ct, 0, tag,
					&got, &err));
	EXPECT_INVALID(keystore_decrypt(e->ks, k.name, k.ref, k.ref_len, NULL, 0, iv, ct,
					SEALVM_SECRET_MAX + 1, tag, &got, &err));
	EXPECT_INVALID(keystore_decrypt(e->ks, "", k.ref, k.ref_len, NULL, 0, iv, ct, 32, tag, &got,
					&err));
	EXPECT_INVALID(keystore_key_destroy(e->ks, k.name, NULL, 0, &err));
	EXPECT_INVALID(keystore_rsa_decrypt(e->ks, k.name, k.ref, k.ref_len, ct, 32, &got, &err));
	EXPECT_INVALID(keystore_rsa_decrypt(e->ks, k.name, k.ref, k.ref_len, ct, 0, &got, &err));
	EXPECT_INVALID(keystore_rsa_create(e->ks, "", NULL, NULL, NULL, NULL, &err));
#undef EXPECT_INVALID
	assert_null(got);
	/* the key is unharmed */
	struct sealed s;
	seal_with(e->ks, &k, "z", plain, &s);
	open_expect(e->ks, k.name, k.ref, k.ref_len, "z", &s, plain, 0, NULL);
	sealvm_secret_free(plain);
	sealvm_secret_free(m16);
	sealvm_secret_free(empty);
}

/* RSA-OAEP-SHA-256 (MGF1-SHA-256) encryption by OpenSSL with the keystore's public key. */
static size_t ossl_oaep(const unsigned char *spki, size_t spki_len, const unsigned char *msg,
			size_t len, unsigned char out[512])
{
	const unsigned char *p = spki;
	EVP_PKEY *pkey = d2i_PUBKEY(NULL, &p, (long)spki_len);
	EVP_PKEY_CTX *ctx;
	size_t outl = 512;
	assert_non_null(pkey);
	assert_int_equal(EVP_PKEY_get_bits(pkey), 4096);
	assert_int_equal(EVP_PKEY_get_base_id(pkey), EVP_PKEY_RSA);
	ctx = EVP_PKEY_CTX_new(pkey, NULL);
	assert_non_null(ctx);
	assert_int_equal(EVP_PKEY_encrypt_init(ctx), 1);
	assert_int_equal(EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_OAEP_PADDING), 1);
	assert_int_equal(EVP_PKEY_CTX_set_rsa_oaep_md(ctx, EVP_sha256()), 1);
	assert_int_equal(EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, EVP_sha256()), 1);
	assert_int_equal(EVP_PKEY_encrypt(ctx, out, &outl, msg, len), 1);
	EVP_PKEY_CTX_free(ctx);
	EVP_PKEY_free(pkey);
	return outl;
}

static void test_rsa_import_token(void **state)
{
	struct env *e = env_of(state);
	struct sealvm_err err = SEALVM_ERR_INIT;
	struct sealvm_secret *msg = random_secret(32), *got = NULL;
	unsigned char *pub = NULL, *ref = NULL, ct[512];
	size_t pub_len = 0, ref_len = 0, ct_len;
	char name[96], other[96];
	int r;

	unique_name(name, sizeof(name), "import-token");
	unique_name(other, sizeof(other), "import-token");
	r = keystore_rsa_create(e->ks, name, &pub, &pub_len, &ref, &ref_len, &err);
	if (r < 0)
		fail_msg("keystore_rsa_create: %d %s %s", r, err.reason, err.message);
	ct_len = ossl_oaep(pub, pub_len, msg->data, msg->len, ct);
	assert_int_equal(ct_len, 512);

	r = keystore_rsa_decrypt(e->ks, name, ref, ref_len, ct, ct_len, &got, &err);
	if (r < 0)
		fail_msg("keystore_rsa_decrypt: %d %s %s", r, err.reason, err.message);
	assert_true(sealvm_secret_equal(got, msg));
	sealvm_secret_free(got);
	got = NULL;

	/* a changed ciphertext, another name, a flipped reference: refused, nothing out */
	ct[100] ^= 0x01;
	assert_int_equal(keystore_rsa_decrypt(e->ks, name, ref, ref_len, ct, ct_len, &got, &err),
			 -EBADMSG);
	assert_string_equal(err.reason, "KEYSTORE_DECRYPT_FAILED");
	ct[100] ^= 0x01;
	sealvm_err_clear(&err);
	assert_int_equal(keystore_rsa_decrypt(e->ks, other, ref, ref_len, ct, ct_len, &got, &err),
			 -EBADMSG);
	sealvm_err_clear(&err);
	ref[ref_len - 1] ^= 0x01;
	r = keystore_rsa_decrypt(e->ks, name, ref, ref_len, ct, ct_len, &got, &err);
	assert_true(r == -EBADMSG || r == -ENOENT);
	ref[ref_len - 1] ^= 0x01;
	assert_null(got);

	/* SoftHSM2 2.6.1 has no OAEP with SHA-256: the private key is sealed, not 16-byte id */
	if (strcmp(e->backend, "soft") == 0 || ref_len != 16)
		assert_memory_equal(ref, "SVS1", 4);

	sealvm_err_clear(&err);
	assert_int_equal(keystore_rsa_destroy(e->ks, name, ref, ref_len, &err), 0);
	assert_int_equal(keystore_rsa_destroy(e->ks, name, ref, ref_len, &err), 0);
	free(pub);
	free(ref);
	sealvm_secret_free(msg);
}

struct worker {
	struct keystore *ks;
	struct key *keys;
	size_t nkeys;
	unsigned seed;
	int failures;
};

static void *worker_run(void *arg)
{
	struct worker *w = arg;
	for (int i = 0; i < 150; i++) {
		struct key *k = &w->keys[(w->seed + (unsigned)i) % w->nkeys];
		struct sealvm_err err = SEALVM_ERR_INIT;
		struct sealvm_secret *plain = NULL, *got = NULL;
		unsigned char iv[12], tag[16], ct[40];
		size_t len = 1 + (w->seed * 7 + (unsigned)i) % 40;
		if (sealvm_secret_random(len, &plain) < 0) {
			w->failures++;
			continue;
		}
		if (keystore_encrypt(w->ks, k->name, k->ref, k->ref_len, (const unsigned char *)"t",
				     1, plain, iv, ct, tag, &err) < 0 ||
		    keystore_decrypt(w->ks, k->name, k->ref, k->ref_len, (const unsigned char *)"t",
				     1, iv, ct, len, tag, &got, &err) < 0 ||
		    !sealvm_secret_equal(got, plain))
			w->failures++;
		/* and a bad tag is refused even while others use the same key and session pool */
		tag[0] ^= 1;
		sealvm_secret_free(got);
		got = NULL;
		if (keystore_decrypt(w->ks, k->name, k->ref, k->ref_len, (const unsigned char *)"t",
				     1, iv, ct, len, tag, &got, &err) != -EBADMSG ||
		    got)
			w->failures++;
		sealvm_secret_free(got);
		sealvm_secret_free(plain);
	}
	return NULL;
}

static void test_concurrency(void **state)
{
	struct env *e = env_of(state);
	struct key keys[3];
	struct worker w[6];
	pthread_t t[6];
	for (size_t i = 0; i < ELEMENTSOF(keys); i++) {
		char name[96];
		unique_name(name, sizeof(name), "conc");
		key_make(e->ks, &keys[i], name, 32, NULL);
	}
	for (size_t i = 0; i < ELEMENTSOF(t); i++) {
		w[i] = (struct worker){e->ks, keys, ELEMENTSOF(keys), (unsigned)i, 0};
		assert_int_equal(pthread_create(&t[i], NULL, worker_run, &w[i]), 0);
	}
	for (size_t i = 0; i < ELEMENTSOF(t); i++) {
		assert_int_equal(pthread_join(t[i], NULL), 0);
		assert_int_equal(w[i].failures, 0);
	}
}

/*
 * More keys than the soft key cache holds (512), and enough for some sets of the pkcs11
 * handle cache (64 sets of 4) to overflow: evictions keep every answer right.
 */
static void test_many_keys(void **state)
{
	struct env *e = env_of(state);
	size_t n = strcmp(e->backend, "soft") == 0 ? 700 : 150;
	struct key *keys = calloc(n, sizeof(*keys));
	struct sealed *s = calloc(n, sizeof(*s));
	struct sealvm_secret *plain = random_secret(32);
	assert_non_null(keys);
	assert_non_null(s);
	for (size_t i = 0; i < n; i++) {
		char name[96];
		unique_name(name, sizeof(name), "many");
		key_make(e->ks, &keys[i], name, 32, NULL);
		seal_with(e->ks, &keys[i], "m", plain, &s[i]);
	}
	for (int round = 0; round < 2; round++)
		for (size_t i = 0; i < n; i++) {
			open_expect(e->ks, keys[i].name, keys[i].ref, keys[i].ref_len, "m", &s[i],
				    plain, 0, NULL);
			/* a neighbour's ciphertext never opens under this key */
			open_expect(e->ks, keys[i].name, keys[i].ref, keys[i].ref_len, "m",
				    &s[(i + 1) % n], NULL, -EBADMSG, "KEYSTORE_DECRYPT_FAILED");
		}
	for (size_t i = 0; i < n; i++)
		assert_int_equal(keystore_key_destroy(e->ks, keys[i].name, keys[i].ref,
						      keys[i].ref_len, NULL),
				 0);
	sealvm_secret_free(plain);
	free(keys);
	free(s);
}

/* ---- where the material must not be ---- */

static const unsigned char *needle;
static size_t needle_len;
static int found_in;

static int scan_file(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	unsigned char *buf;
	FILE *f;
	size_t n;
	if (type != FTW_F || st->st_size == 0)
		return 0;
	f = fopen(path, "rb");
	if (!f)
		return 0;
	buf = malloc((size_t)st->st_size);
	n = buf ? fread(buf, 1, (size_t)st->st_size, f) : 0;
	if (buf && memmem(buf, n, needle, needle_len))
		found_in++;
	free(buf);
	fclose(f);
	return 0;
}

static int scan_dir(const char *dir, const void *what, size_t len)
{
	needle = what;
	needle_len = len;
	found_in = 0;
	assert_int_equal(nftw(dir, scan_file, 16, FTW_PHYS), 0);
	return found_in;
}

static void test_material_not_stored(void **state)
{
	struct env *e = env_of(state);
	struct sealvm_secret *material = random_secret(32);
	struct key k;
	char name[96], dir[192];

	unique_name(name, sizeof(name), "hidden");
	key_make(e->ks, &k, name, 32, material);
	/* not in the reference (the soft keystore's whole storage), nor any half of it */
	assert_null(memmem(k.ref, k.ref_len, material->data, 32));
	assert_null(memmem(k.ref, k.ref_len, material->data, 16));
	assert_null(memmem(k.ref, k.ref_len, material->data + 16, 16));
	if (strcmp(e->backend, "pkcs11") == 0) {
		snprintf(dir, sizeof(dir), "%s/hsm/tokens", e->dir);
		/* the scan can find things: the token's own label is stored in clear */
		assert_true(scan_dir(dir, e->token, strlen(e->token)) > 0);
		/* SoftHSM2 encrypts every attribute of a private object, the label too */
		assert_int_equal(scan_dir(dir, name, strlen(name)), 0);
		assert_int_equal(scan_dir(dir, material->data, 32), 0);
		assert_int_equal(scan_dir(dir, material->data, 16), 0);
		assert_int_equal(scan_dir(dir, material->data + 16, 16), 0);
	}
	sealvm_secret_free(material);
}

/* The token object's attributes, read through the module itself. */
static void test_p11_object_attributes(void **state)
{
	struct env *e = env_of(state);
	struct sealvm_secret *material = random_secret(32);
	CK_FUNCTION_LIST_PTR f = NULL;
	CK_C_GetFunctionList get;
	CK_SLOT_ID slots[16];
	CK_ULONG nslots = 16, n = 0;
	CK_SESSION_HANDLE h = CK_INVALID_HANDLE;
	CK_OBJECT_HANDLE o;
	CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
	CK_BBOOL token = 0, priv = 0, sens = 0, extr = 1, never = 0, enc = 0, dec = 0, wrap = 1;
	unsigned char value[32];
	char label[128];
	struct key k;
	char name[96];
	void *dl;

	unique_name(name, sizeof(name), "attrs");
	key_make(e->ks, &k, name, 32, material);
	assert_int_equal(k.ref_len, 16);
	dl = dlopen(e->module, RTLD_NOW | RTLD_LOCAL);
	assert_non_null(dl);
	*(void **)&get = dlsym(dl, "C_GetFunctionList");
	assert_non_null(get);
	assert_int_equal(get(&f), CKR_OK);
	/* already initialized by the keystore, and already logged in: the state is per process */
	assert_int_equal(f->C_Initialize(NULL), CKR_CRYPTOKI_ALREADY_INITIALIZED);
	assert_int_equal(f->C_GetSlotList(CK_TRUE, slots, &nslots), CKR_OK);
	for (CK_ULONG i = 0; i < nslots && h == CK_INVALID_HANDLE; i++) {
		CK_TOKEN_INFO info;
		if (f->C_GetTokenInfo(slots[i], &info) == CKR_OK &&
		    memcmp(info.label, e->token, strlen(e->token)) == 0)
			assert_int_equal(
				f->C_OpenSession(slots[i], CKF_SERIAL_SESSION, NULL, NULL, &h),
				CKR_OK);
	}
	assert_true(h != CK_INVALID_HANDLE);
	CK_ATTRIBUTE find[] = {{CKA_CLASS, &cls, sizeof(cls)}, {CKA_ID, k.ref, 16}};
	assert_int_equal(f->C_FindObjectsInit(h, find, 2), CKR_OK);
	assert_int_equal(f->C_FindObjects(h, &o, 1, &n), CKR_OK);
	assert_int_equal(f->C_FindObjectsFinal(h), CKR_OK);
	assert_int_equal(n, 1);
	CK_ATTRIBUTE a[] = {
		{CKA_TOKEN, &token, 1},
		{CKA_PRIVATE, &priv, 1},
		{CKA_SENSITIVE, &sens, 1},
		{CKA_EXTRACTABLE, &extr, 1},
		{CKA_NEVER_EXTRACTABLE, &never, 1},
		{CKA_ENCRYPT, &enc, 1},
		{CKA_DECRYPT, &dec, 1},
		{CKA_WRAP, &wrap, 1},
		{CKA_LABEL, label, sizeof(label)},
	};
	assert_int_equal(f->C_GetAttributeValue(h, o, a, ELEMENTSOF(a)), CKR_OK);
	assert_true(token && priv && sens && !extr && enc && dec && !wrap);
	/* imported material was known outside: never-extractable it is not */
	assert_false(never);
	assert_int_equal(a[8].ulValueLen, strlen(name));
	assert_memory_equal(label, name, strlen(name));
	CK_ATTRIBUTE v = {CKA_VALUE, value, sizeof(value)};
	assert_int_equal(f->C_GetAttributeValue(h, o, &v, 1), CKR_ATTRIBUTE_SENSITIVE);
	assert_int_equal(f->C_CloseSession(h), CKR_OK);
	dlclose(dl);
	sealvm_secret_free(material);
}

/*
 * The token forgets every session of the process (what a reset or a dropped
 * network HSM connection does): the pool reopens them, logs in again and the
 * operations go on.
 */
static void test_p11_session_recovery(void **state)
{
	struct env *e = env_of(state);
	struct sealvm_secret *plain = random_secret(32);
	CK_FUNCTION_LIST_PTR f = NULL;
	CK_C_GetFunctionList get;
	CK_SLOT_ID slots[16], slot = 0;
	CK_ULONG nslots = 16;
	bool found = false;
	struct key k;
	struct sealed s;
	char name[96];
	void *dl;

	unique_name(name, sizeof(name), "recover");
	key_make(e->ks, &k, name, 32, NULL);
	seal_with(e->ks, &k, "r", plain, &s);
	dl = dlopen(e->module, RTLD_NOW | RTLD_LOCAL);
	assert_non_null(dl);
	*(void **)&get = dlsym(dl, "C_GetFunctionList");
	assert_non_null(get);
	assert_int_equal(get(&f), CKR_OK);
	assert_int_equal(f->C_GetSlotList(CK_TRUE, slots, &nslots), CKR_OK);
	for (CK_ULONG i = 0; i < nslots; i++) {
		CK_TOKEN_INFO info;
		if (f->C_GetTokenInfo(slots[i], &info) == CKR_OK &&
		    memcmp(info.label, e->token, strlen(e->token)) == 0) {
			slot = slots[i];
			found = true;
		}
	}
	assert_true(found);
	for (int round = 0; round < 2; round++) {
		assert_int_equal(f->C_CloseAllSessions(slot), CKR_OK);
		/* more operations than the pool has sessions, each one answered right */
		for (int i = 0; i < 4; i++) {
			open_expect(e->ks, k.name, k.ref, k.ref_len, "r", &s, plain, 0, NULL);
			seal_with(e->ks, &k, "r", plain, &s);
		}
	}
	dlclose(dl);
	sealvm_secret_free(plain);
}

/* ---- soft only ---- */

static void test_soft_reopen_and_other_master(void **state)
{
	struct env *e = env_of(state);
	struct sealvm_err err = SEALVM_ERR_INIT;
	struct sealvm_secret *plain = random_secret(32), *other = random_secret(32);
	struct keystore *ks2 = NULL, *ks3 = NULL;
	struct keystore_config cfg = {.backend = NULL, .master = e->master};
	struct key k;
	struct sealed s;
	char name[96];

	unique_name(name, sizeof(name), "reopen");
	key_make(e->ks, &k, name, 32, NULL);
	seal_with(e->ks, &k, "r", plain, &s);
	assert_int_equal(keystore_open(&cfg, &ks2, &err), 0);
	assert_string_equal(keystore_backend(ks2), "soft");
	open_expect(ks2, k.name, k.ref, k.ref_len, "r", &s, plain, 0, NULL);
	cfg.master = other;
	assert_int_equal(keystore_open(&cfg, &ks3, &err), 0);
	open_expect(ks3, k.name, k.ref, k.ref_len, "r", &s, NULL, -EBADMSG,
		    "KEYSTORE_DECRYPT_FAILED");
	keystore_close(ks2);
	keystore_close(ks3);
	sealvm_secret_free(plain);
	sealvm_secret_free(other);
}

static void test_open_config_errors(void **state)
{
	struct sealvm_err err = SEALVM_ERR_INIT;
	struct sealvm_secret *short_master = random_secret(16);
	struct keystore *ks = NULL;
	struct keystore_config cfg = {.backend = "soft"};

	assert_int_equal(keystore_open(&cfg, &ks, &err), -EINVAL);
	assert_string_equal(err.reason, "KEYSTORE_INVALID");
	sealvm_err_clear(&err);
	cfg.master = short_master;
	assert_int_equal(keystore_open(&cfg, &ks, &err), -EINVAL);
	sealvm_err_clear(&err);
	cfg.backend = "hsm";
	assert_int_equal(keystore_open(&cfg, &ks, &err), -EINVAL);
	assert_non_null(strstr(err.message, "pkcs11"));
	sealvm_err_clear(&err);
	cfg.backend = "pkcs11";
	assert_int_equal(keystore_open(&cfg, &ks, &err), -EINVAL);
	assert_non_null(strstr(err.message, "module"));
	assert_null(ks);
	assert_null(keystore_backend(NULL));
	keystore_close(NULL);
	sealvm_secret_free(short_master);
}

/* ---- pkcs11 configuration (no other keystore open: login state is per process) ---- */

static struct sealvm_secret *read_pin(const struct env *e)
{
	struct sealvm_secret *pin = NULL;
	assert_int_equal(sealvm_secret_read_file(e->pin_file, 256, &pin, NULL), 0);
	assert_true(pin->len > 0);
	return pin;
}

static void no_pin_in(const struct sealvm_err *err, const struct sealvm_secret *pin)
{
	assert_null(memmem(err->message, strlen(err->message), pin->data, pin->len));
	assert_null(memmem(err->reason, strlen(err->reason), pin->data, pin->len));
}

/* Opens, makes a key, round-trips; returns the key so a later keystore can use it. */
static void open_and_use(const struct keystore_config *cfg, struct key *k, bool create)
{
	struct sealvm_err err = SEALVM_ERR_INIT;
	struct sealvm_secret *plain = random_secret(32);
	struct keystore *ks = NULL;
	struct sealed s;
	int r = keystore_open(cfg, &ks, &err);
	if (r < 0)
		fail_msg("keystore_open: %d %s %s", r, err.reason, err.message);
	assert_string_equal(keystore_backend(ks), "pkcs11");
	if (create) {
		char name[96];
		unique_name(name, sizeof(name), "cfg");
		key_make(ks, k, name, 32, NULL);
	}
	seal_with(ks, k, "c", plain, &s);
	open_expect(ks, k->name, k->ref, k->ref_len, "c", &s, plain, 0, NULL);
	keystore_close(ks);
	sealvm_secret_free(plain);
}

static void test_p11_pin_file_and_env(void **state)
{
	struct env *e = env_of(state);
	struct keystore_config cfg = config_of(e);
	struct sealvm_secret *pin = read_pin(e);
	char path[256];
	struct key k;
	int fd;

	/* from the file (no newline), creating a key that outlives the keystore */
	open_and_use(&cfg, &k, true);

	/* the same key through a keystore that takes the PIN from the environment */
	cfg.pin_file = NULL;
	cfg.pin_env = "SEALVM_TEST_KS_PIN";
	assert_int_equal(setenv("SEALVM_TEST_KS_PIN", (const char *)pin->data, 1), 0);
	open_and_use(&cfg, &k, false);
	unsetenv("SEALVM_TEST_KS_PIN");

	/* a PIN file that ends with a newline, as editors write it */
	snprintf(path, sizeof(path), "%s/pin-nl", e->dir);
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, pin->data, pin->len), (ssize_t)pin->len);
	assert_int_equal(write(fd, "\n", 1), 1);
	close(fd);
	cfg.pin_env = NULL;
	cfg.pin_file = path;
	open_and_use(&cfg, &k, false);
	sealvm_secret_free(pin);
}

static void expect_open_fails(const struct keystore_config *cfg, int want, const char *reason,
			      const char *in_message, const struct sealvm_secret *pin)
{
	struct sealvm_err err = SEALVM_ERR_INIT;
	struct keystore *ks = NULL;
	int r = keystore_open(cfg, &ks, &err);
	if (r != want || strcmp(err.reason, reason) != 0)
		fail_msg("keystore_open: want %d %s, got %d %s: %s", want, reason, r, err.reason,
			 err.message);
	assert_null(ks);
	if (in_message && !strstr(err.message, in_message))
		fail_msg("message lacks \"%s\": %s", in_message, err.message);
	if (pin)
		no_pin_in(&err, pin);
}

static void test_p11_open_errors(void **state)
{
	struct env *e = env_of(state);
	struct keystore_config cfg;
	struct sealvm_secret *pin = read_pin(e);
	char wrong[256], wrong_pin[64];
	int fd;

	/* a wrong PIN: refused, and neither PIN shows in the message */
	snprintf(wrong, sizeof(wrong), "%s/wrong-pin", e->dir);
	snprintf(wrong_pin, sizeof(wrong_pin), "not-the-pin-%u", (unsigned)getpid());
	fd = open(wrong, O_WRONLY | O_CREAT | O_EXCL, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, wrong_pin, strlen(wrong_pin)), (ssize_t)strlen(wrong_pin));
	close(fd);
	cfg = config_of(e);
	cfg.pin_file = wrong;
	expect_open_fails(&cfg, -EPERM, "KEYSTORE_PIN_INCORRECT", "CKR_PIN_INCORRECT", pin);
	{
		struct sealvm_err err = SEALVM_ERR_INIT;
		struct keystore *ks = NULL;
		assert_int_equal(keystore_open(&cfg, &ks, &err), -EPERM);
		assert_null(strstr(err.message, wrong_pin));
		assert_non_null(strstr(err.message, wrong)); /* it says where the PIN came from */
	}
	/* the same wrong PIN from the environment */
	cfg.pin_file = NULL;
	cfg.pin_env = "SEALVM_TEST_KS_WRONG";
	setenv("SEALVM_TEST_KS_WRONG", wrong_pin, 1);
	expect_open_fails(&cfg, -EPERM, "KEYSTORE_PIN_INCORRECT", "SEALVM_TEST_KS_WRONG", pin);
	unsetenv("SEALVM_TEST_KS_WRONG");
	/* the variable is not set */
	expect_open_fails(&cfg, -EINVAL, "KEYSTORE_PIN_MISSING", "SEALVM_TEST_KS_WRONG", pin);
	/* no PIN source at all; both */
	cfg.pin_env = NULL;
	expect_open_fails(&cfg, -EINVAL, "KEYSTORE_PIN_MISSING", "pin_file", pin);
	cfg.pin_env = "X";
	cfg.pin_file = e->pin_file;
	expect_open_fails(&cfg, -EINVAL, "KEYSTORE_PIN_MISSING", "not both", pin);
	/* a PIN file that is not there; an empty one */
	cfg = config_of(e);
	snprintf(wrong, sizeof(wrong), "%s/no-such-pin", e->dir);
	cfg.pin_file = wrong;
	expect_open_fails(&cfg, -ENOENT, "KEYSTORE_PIN_MISSING", "no-such-pin", pin);
	snprintf(wrong, sizeof(wrong), "%s/empty-pin", e->dir);
	fd = open(wrong, O_WRONLY | O_CREAT | O_EXCL, 0600);
	assert_true(fd >= 0);
	close(fd);
	expect_open_fails(&cfg, -EINVAL, "KEYSTORE_PIN_MISSING", "empty", pin);
	/* no token by that label: the message lists the tokens there are */
	cfg = config_of(e);
	cfg.token_label = "no-such-token";
	expect_open_fails(&cfg, -ENOENT, "KEYSTORE_TOKEN_MISSING", "sealvm-test", pin);
	cfg.token_label = "a-label-longer-than-thirty-two-chars";
	expect_open_fails(&cfg, -EINVAL, "KEYSTORE_INVALID", "32", pin);
	cfg.token_label = NULL;
	expect_open_fails(&cfg, -EINVAL, "KEYSTORE_INVALID", "token_label", pin);
	/* no module there; a file that is not a module */
	cfg = config_of(e);
	cfg.module = "/nonexistent/libpkcs11.so";
	expect_open_fails(&cfg, -ENOENT, "KEYSTORE_MODULE_INVALID", "/nonexistent/libpkcs11.so",
			  pin);
	cfg.module = e->pin_file;
	expect_open_fails(&cfg, -EINVAL, "KEYSTORE_MODULE_INVALID", "cannot load", pin);
	cfg = config_of(e);
	cfg.sessions = 100000;
	expect_open_fails(&cfg, -EINVAL, "KEYSTORE_INVALID", "sessions", pin);

	/* after all that, the right configuration still works (the PIN was not locked) */
	struct key k;
	cfg = config_of(e);
	open_and_use(&cfg, &k, true);
	sealvm_secret_free(pin);
}

/* Without the master key, a token lacking OAEP-SHA-256 cannot make import-token keys. */
static void test_p11_rsa_needs_master(void **state)
{
	struct env *e = env_of(state);
	struct keystore_config cfg = config_of(e);
	struct sealvm_err err = SEALVM_ERR_INIT;
	struct keystore *ks = NULL;
	unsigned char *pub = NULL, *ref = NULL;
	size_t pub_len = 0, ref_len = 0;
	char name[96];
	int r;

	unique_name(name, sizeof(name), "rsa-nomaster");
	cfg.master = NULL;
	assert_int_equal(keystore_open(&cfg, &ks, &err), 0);
	r = keystore_rsa_create(ks, name, &pub, &pub_len, &ref, &ref_len, &err);
	if (r == 0) {
		/* a token that does OAEP-SHA-256 keeps the key itself */
		assert_int_equal(ref_len, 16);
		assert_int_equal(keystore_rsa_destroy(ks, name, ref, ref_len, &err), 0);
	} else {
		assert_int_equal(r, -EINVAL);
		assert_non_null(strstr(err.message, "SHA-256"));
		assert_null(pub);
		assert_null(ref);
	}
	free(pub);
	free(ref);
	keystore_close(ks);
}

int main(void)
{
	const struct CMUnitTest table[] = {
		cmocka_unit_test(test_generated_round_trip),
		cmocka_unit_test(test_imported_matches_openssl),
		cmocka_unit_test(test_ivs_are_fresh),
		cmocka_unit_test(test_tampering_fails),
		cmocka_unit_test(test_tampered_reference),
		cmocka_unit_test(test_unknown_reference),
		cmocka_unit_test(test_destroy_idempotent),
		cmocka_unit_test(test_destroy_wrong_name),
		cmocka_unit_test(test_bad_arguments),
		cmocka_unit_test(test_rsa_import_token),
		cmocka_unit_test(test_concurrency),
		cmocka_unit_test(test_many_keys),
		cmocka_unit_test(test_material_not_stored),
	};
	const struct CMUnitTest soft_only[] = {
		cmocka_unit_test(test_soft_reopen_and_other_master),
		cmocka_unit_test(test_open_config_errors),
	};
	const struct CMUnitTest p11_only[] = {
		cmocka_unit_test(test_p11_object_attributes),
		cmocka_unit_test(test_p11_session_recovery),
	};
	const struct CMUnitTest p11_config[] = {
		cmocka_unit_test(test_p11_pin_file_and_env),
		cmocka_unit_test(test_p11_open_errors),
		cmocka_unit_test(test_p11_rsa_needs_master),
	};
	int failed = 0;
	failed += cmocka_run_group_tests_name("soft", table, soft_setup, soft_teardown);
	failed += cmocka_run_group_tests_name("soft_only", soft_only, soft_setup, soft_teardown);
	failed += cmocka_run_group_tests_name("pkcs11", table, p11_setup, p11_teardown);
	failed += cmocka_run_group_tests_name("pkcs11_only", p11_only, p11_setup, p11_teardown);
	failed += cmocka_run_group_tests_name("pkcs11_config", p11_config, p11_cfg_setup,
					      p11_cfg_teardown);
	return failed;
}
