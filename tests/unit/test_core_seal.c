// SPDX-License-Identifier: Apache-2.0
/*
 * Unit tests of lib/core/seal.c: the master key file rules, HKDF subkeys
 * (pinned by known answers computed independently), sealed blobs that refuse
 * every change, and keyed hashes.
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
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/evp.h>

#include "sealvm/seal.h"

struct fixture {
	char dir[64];
	char path[96];
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	if (!f)
		return -1;
	snprintf(f->dir, sizeof(f->dir), "/tmp/sealvm-seal-XXXXXX");
	if (!mkdtemp(f->dir))
		return -1;
	snprintf(f->path, sizeof(f->path), "%s/master.key", f->dir);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
	if (system(cmd) != 0)
		return -1;
	free(f);
	return 0;
}

static void hex_to_bin(const char *hex, unsigned char *out, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned v;
		assert_int_equal(sscanf(hex + 2 * i, "%2x", &v), 1);
		out[i] = (unsigned char)v;
	}
}

static struct sealvm_secret *counting_master(unsigned char first)
{
	unsigned char b[SEALVM_MASTER_KEY_BYTES];
	struct sealvm_secret *s = NULL;
	for (size_t i = 0; i < sizeof(b); i++)
		b[i] = (unsigned char)(first + i);
	assert_int_equal(sealvm_secret_from(b, sizeof(b), &s), 0);
	return s;
}

static void write_file(const char *path, const void *data, size_t len, mode_t mode)
{
	unlink(path);
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, mode);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, len), (ssize_t)len);
	assert_int_equal(fchmod(fd, mode), 0);
	close(fd);
}

static void test_master_create_load(void **state)
{
	struct fixture *f = *state;
	struct sealvm_secret *a = NULL, *b = NULL;
	struct sealvm_err err = SEALVM_ERR_INIT;
	struct stat st;

	assert_int_equal(seal_master_create(f->path, &a, &err), 0);
	assert_int_equal(a->len, SEALVM_MASTER_KEY_BYTES);
	assert_int_equal(stat(f->path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	assert_int_equal(st.st_size, SEALVM_MASTER_KEY_BYTES);

	assert_int_equal(seal_master_load(f->path, &b, &err), 0);
	assert_true(sealvm_secret_equal(a, b));

	/* An existing key is never replaced. */
	struct sealvm_secret *c = NULL;
	assert_int_equal(seal_master_create(f->path, &c, &err), -EEXIST);
	assert_null(c);
	sealvm_err_clear(&err);
	sealvm_secret_free(b);
	b = NULL;
	assert_int_equal(seal_master_load(f->path, &b, &err), 0);
	assert_true(sealvm_secret_equal(a, b));

	/* Two keys are different. */
	char other[128];
	snprintf(other, sizeof(other), "%s/other.key", f->dir);
	assert_int_equal(seal_master_create(other, &c, &err), 0);
	assert_false(sealvm_secret_equal(a, c));
	sealvm_secret_free(a);
	sealvm_secret_free(b);
	sealvm_secret_free(c);
}

static void test_master_load_refuses(void **state)
{
	struct fixture *f = *state;
	struct sealvm_secret *k = NULL;
	struct sealvm_err err = SEALVM_ERR_INIT;
	unsigned char bytes[40] = {1, 2, 3};
	char link[128];

	/* Readable by others or the group: refused, with the fix in the message. */
	const mode_t modes[] = {0644, 0640, 0604, 0660, 0601, 0610};
	for (size_t i = 0; i < ELEMENTSOF(modes); i++) {
		write_file(f->path, bytes, SEALVM_MASTER_KEY_BYTES, modes[i]);
		sealvm_err_clear(&err);
		assert_int_equal(seal_master_load(f->path, &k, &err), -EPERM);
		assert_null(k);
		assert_string_equal(err.reason, "MASTER_KEY_MODE");
		assert_non_null(strstr(err.message, f->path));
		assert_non_null(strstr(err.message, "chmod 600"));
	}
	/* 0400 is fine. */
	write_file(f->path, bytes, SEALVM_MASTER_KEY_BYTES, 0400);
	sealvm_err_clear(&err);
	assert_int_equal(seal_master_load(f->path, &k, &err), 0);
	assert_memory_equal(k->data, bytes, SEALVM_MASTER_KEY_BYTES);
	sealvm_secret_free(k);
	k = NULL;

	/* Wrong sizes. */
	const size_t sizes[] = {0, 1, 31, 33, 40};
	for (size_t i = 0; i < ELEMENTSOF(sizes); i++) {
		write_file(f->path, bytes, sizes[i], 0600);
		sealvm_err_clear(&err);
		assert_int_equal(seal_master_load(f->path, &k, &err), -EBADMSG);
		assert_null(k);
		assert_string_equal(err.reason, "MASTER_KEY_INVALID");
	}

	/* Not a regular file, a symbolic link, missing. */
	sealvm_err_clear(&err);
	assert_int_equal(seal_master_load(f->dir, &k, &err), -EINVAL);
	assert_string_equal(err.reason, "NOT_A_FILE");
	write_file(f->path, bytes, SEALVM_MASTER_KEY_BYTES, 0600);
	snprintf(link, sizeof(link), "%s/link.key", f->dir);
	assert_int_equal(symlink(f->path, link), 0);
	sealvm_err_clear(&err);
	assert_int_equal(seal_master_load(link, &k, &err), -ELOOP);
	assert_string_equal(err.reason, "MASTER_KEY_SYMLINK");
	unlink(f->path);
	sealvm_err_clear(&err);
	assert_int_equal(seal_master_load(f->path, &k, &err), -ENOENT);
	assert_non_null(strstr(err.message, f->path));
	assert_null(k);
}

static void test_derive(void **state)
{
	struct sealvm_secret *m1 = counting_master(0), *m2 = counting_master(1);
	struct sealvm_secret *a = NULL, *b = NULL, *c = NULL, *d = NULL;
	unsigned char expect[32];

	/* Known answers: HKDF-SHA256(ikm = 00..1f, salt "sealvm-v1", info label), computed apart.
	 */
	assert_int_equal(seal_derive(m1, "seal", &a), 0);
	assert_int_equal(a->len, 32);
	hex_to_bin("f8d624785da4ea22c3042a2eb922a2b2a08977946fcb08cf36a6b50bbd436905", expect, 32);
	assert_memory_equal(a->data, expect, 32);
	assert_int_equal(seal_derive(m1, "audit-chain", &b), 0);
	hex_to_bin("bb2e155f0ef2ae6fbc67d3affea2694edcb61a18f85bf551d42790254df63acf", expect, 32);
	assert_memory_equal(b->data, expect, 32);

	/* Deterministic per label, different across labels and masters. */
	assert_int_equal(seal_derive(m1, "seal", &c), 0);
	assert_true(sealvm_secret_equal(a, c));
	assert_false(sealvm_secret_equal(a, b));
	assert_int_equal(seal_derive(m2, "seal", &d), 0);
	assert_false(sealvm_secret_equal(a, d));
	assert_false(sealvm_secret_equal(a, m1));

	struct sealvm_secret *x = NULL;
	assert_int_equal(seal_derive(m1, "", &x), -EINVAL);
	assert_int_equal(seal_derive(m1, NULL, &x), -EINVAL);
	assert_int_equal(seal_derive(NULL, "seal", &x), -EINVAL);
	m2->len = 31;
	assert_int_equal(seal_derive(m2, "seal", &x), -EINVAL);
	assert_null(x);

	sealvm_secret_free(m1);
	sealvm_secret_free(m2);
	sealvm_secret_free(a);
	sealvm_secret_free(b);
	sealvm_secret_free(c);
	sealvm_secret_free(d);
}

static const char PLAIN[] = "S3-HMAC-SECRET:wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

static void seal_plain(const struct sealvm_secret *master, const char *aad, unsigned char **blob,
		       size_t *len)
{
	struct sealvm_secret *p = NULL;
	struct sealvm_err err = SEALVM_ERR_INIT;
	assert_int_equal(sealvm_secret_from(PLAIN, strlen(PLAIN), &p), 0);
	assert_int_equal(seal_blob(master, aad, p, blob, len, &err), 0);
	sealvm_secret_free(p);
}

/* Opens and expects the one uniform failure. */
static void expect_invalid(const struct sealvm_secret *master, const char *aad,
			   const unsigned char *blob, size_t len)
{
	static char first_message[SEALVM_ERR_MESSAGE_MAX];
	struct sealvm_secret *out = NULL;
	struct sealvm_err err = SEALVM_ERR_INIT;

	assert_int_equal(seal_open(master, aad, blob, len, &out, &err), -EBADMSG);
	assert_null(out);
	assert_string_equal(err.reason, "SEALED_BLOB_INVALID");
	/* Every kind of failure reads the same. */
	if (!first_message[0])
		snprintf(first_message, sizeof(first_message), "%s", err.message);
	assert_string_equal(err.message, first_message);
	assert_null(strstr(err.message, PLAIN));
	assert_null(strstr(err.message, aad));
}

static void test_blob_roundtrip(void **state)
{
	struct sealvm_secret *m = counting_master(7), *out = NULL, *sk = NULL;
	struct sealvm_err err = SEALVM_ERR_INIT;
	unsigned char *blob = NULL, *blob2 = NULL;
	size_t len = 0, len2 = 0;

	seal_plain(m, "iam/signing-key/k1", &blob, &len);
	assert_int_equal(len, strlen(PLAIN) + SEALVM_SEAL_OVERHEAD);
	assert_memory_equal(blob, "SVS1", 4);
	/* The plaintext, or any 8 bytes of it, never appears in the blob. */
	for (size_t i = 0; i + 8 <= strlen(PLAIN); i++)
		assert_null(memmem(blob, len, PLAIN + i, 8));
	assert_int_equal(seal_open(m, "iam/signing-key/k1", blob, len, &out, &err), 0);
	assert_int_equal(out->len, strlen(PLAIN));
	assert_memory_equal(out->data, PLAIN, strlen(PLAIN));
	assert_int_equal(out->data[out->len], 0);
	sealvm_secret_free(out);
	out = NULL;

	/* A fresh nonce each time: same input, different blobs. */
	seal_plain(m, "iam/signing-key/k1", &blob2, &len2);
	assert_int_equal(len, len2);
	assert_memory_not_equal(blob + 4, blob2 + 4, 12);
	assert_memory_not_equal(blob, blob2, len);

	/*
	 * The format, checked with OpenSSL directly: AES-256-GCM under
	 * HKDF(master, "seal") — not under the master key —, AAD the string.
	 */
	assert_int_equal(seal_derive(m, "seal", &sk), 0);
	for (int use_master = 0; use_master <= 1; use_master++) {
		const struct sealvm_secret *k = use_master ? m : sk;
		EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
		unsigned char pt[256], tag[16];
		int outl, ok;
		const char *aad = "iam/signing-key/k1";
		size_t ctl = len - SEALVM_SEAL_OVERHEAD;
		memcpy(tag, blob + len - 16, 16);
		assert_int_equal(EVP_DecryptInit_ex2(c, EVP_aes_256_gcm(), k->data, blob + 4, NULL),
				 1);
		assert_int_equal(EVP_DecryptUpdate(c, NULL, &outl, (const unsigned char *)aad,
						   (int)strlen(aad)),
				 1);
		assert_int_equal(EVP_DecryptUpdate(c, pt, &outl, blob + 16, (int)ctl), 1);
		assert_int_equal(EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_SET_TAG, 16, tag), 1);
		ok = EVP_DecryptFinal_ex(c, pt + outl, &outl);
		EVP_CIPHER_CTX_free(c);
		assert_int_equal(ok, use_master ? 0 : 1);
		if (!use_master)
			assert_memory_equal(pt, PLAIN, ctl);
	}

	/* An empty secret seals and opens too. */
	struct sealvm_secret *empty = NULL;
	unsigned char *eb = NULL;
	size_t el = 0;
	assert_int_equal(sealvm_secret_new(0, &empty), 0);
	assert_int_equal(seal_blob(m, "empty/one", empty, &eb, &el, &err), 0);
	assert_int_equal(el, SEALVM_SEAL_OVERHEAD);
	assert_int_equal(seal_open(m, "empty/one", eb, el, &out, &err), 0);
	assert_int_equal(out->len, 0);
	expect_invalid(m, "empty/two", eb, el);

	/* An AAD is required. */
	sealvm_err_clear(&err);
	assert_int_equal(seal_blob(m, "", empty, &eb, &el, &err), -EINVAL);
	sealvm_err_clear(&err);
	assert_int_equal(seal_blob(m, NULL, empty, &eb, &el, &err), -EINVAL);
	struct sealvm_secret *o2 = NULL;
	sealvm_err_clear(&err);
	assert_int_equal(seal_open(m, "", blob, len, &o2, &err), -EINVAL);
	assert_null(o2);

	free(eb);
	sealvm_secret_free(empty);
	sealvm_secret_free(out);
	sealvm_secret_free(sk);
	sealvm_secret_free(m);
	free(blob);
	free(blob2);
}

static void test_blob_refuses_changes(void **state)
{
	struct sealvm_secret *m = counting_master(7), *m2 = counting_master(8);
	unsigned char *blob = NULL, *copy;
	size_t len = 0;
	const char *aad = "cos/hmac/0123";

	seal_plain(m, aad, &blob, &len);
	copy = malloc(len + 1);
	assert_non_null(copy);

	/* Every single bit of every byte: magic, nonce, ciphertext, tag. */
	for (size_t i = 0; i < len; i++) {
		for (int bit = 0; bit < 8; bit++) {
			memcpy(copy, blob, len);
			copy[i] ^= (unsigned char)(1u << bit);
			expect_invalid(m, aad, copy, len);
		}
	}
	/* Wrong AAD, including prefixes and extensions of the right one. */
	expect_invalid(m, "cos/hmac/0124", blob, len);
	expect_invalid(m, "cos/hmac/012", blob, len);
	expect_invalid(m, "cos/hmac/01234", blob, len);
	/* Wrong master key. */
	expect_invalid(m2, aad, blob, len);
	/* Every truncation, and an extension. */
	for (size_t n = 0; n < len; n++)
		expect_invalid(m, aad, blob, n);
	memcpy(copy, blob, len);
	copy[len] = 0;
	expect_invalid(m, aad, copy, len + 1);
	/* Another magic with the rest intact. */
	memcpy(copy, blob, len);
	memcpy(copy, "SVS2", 4);
	expect_invalid(m, aad, copy, len);
	expect_invalid(m, aad, NULL, 0);

	/* Still opens unchanged. */
	struct sealvm_secret *out = NULL;
	struct sealvm_err err = SEALVM_ERR_INIT;
	assert_int_equal(seal_open(m, aad, blob, len, &out, &err), 0);
	sealvm_secret_free(out);

	free(copy);
	free(blob);
	sealvm_secret_free(m);
	sealvm_secret_free(m2);
}

static void test_keyed_hash(void **state)
{
	struct sealvm_secret *k = counting_master(32), *k2 = counting_master(33);
	unsigned char a[32], b[32], expect[32];

	/* Known answer: HMAC-SHA256(20..3f, "apikey" 00 "secret-api-key"). */
	assert_int_equal(seal_keyed_hash(k, "apikey", "secret-api-key", 14, a), 0);
	hex_to_bin("7b0de2c5f30a4fd2f1e14ffa5f1c03844ccddb72d33d33d39b6e1b5f0302232e", expect, 32);
	assert_memory_equal(a, expect, 32);
	assert_int_equal(seal_keyed_hash(k, "apikey", "secret-api-key", 14, b), 0);
	assert_true(seal_hash_equal(a, b));

	/* Domains separate, also against shifting bytes across the boundary. */
	assert_int_equal(seal_keyed_hash(k, "hmac-secret", "secret-api-key", 14, b), 0);
	assert_false(seal_hash_equal(a, b));
	assert_int_equal(seal_keyed_hash(k, "ab", "c", 1, a), 0);
	assert_int_equal(seal_keyed_hash(k, "a", "bc", 2, b), 0);
	assert_false(seal_hash_equal(a, b));
	/* Other key, other data. */
	assert_int_equal(seal_keyed_hash(k, "apikey", "secret-api-key", 14, a), 0);
	assert_int_equal(seal_keyed_hash(k2, "apikey", "secret-api-key", 14, b), 0);
	assert_false(seal_hash_equal(a, b));
	assert_int_equal(seal_keyed_hash(k, "apikey", "secret-api-kez", 14, b), 0);
	assert_false(seal_hash_equal(a, b));
	for (int i = 0; i < 32; i++) {
		memcpy(b, a, 32);
		b[i] ^= 0x80;
		assert_false(seal_hash_equal(a, b));
	}
	/* Empty data is a value too. */
	assert_int_equal(seal_keyed_hash(k, "apikey", NULL, 0, b), 0);
	assert_false(seal_hash_equal(a, b));

	assert_int_equal(seal_keyed_hash(k, "", "x", 1, a), -EINVAL);
	assert_int_equal(seal_keyed_hash(NULL, "d", "x", 1, a), -EINVAL);
	k2->len = 8;
	assert_int_equal(seal_keyed_hash(k2, "d", "x", 1, a), -EINVAL);
	sealvm_secret_free(k);
	sealvm_secret_free(k2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_master_create_load, setup, teardown),
		cmocka_unit_test_setup_teardown(test_master_load_refuses, setup, teardown),
		cmocka_unit_test(test_derive),
		cmocka_unit_test(test_blob_roundtrip),
		cmocka_unit_test(test_blob_refuses_changes),
		cmocka_unit_test(test_keyed_hash),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
