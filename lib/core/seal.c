// SPDX-License-Identifier: Apache-2.0
/*
 * seal.c — the master key, HKDF subkeys, sealed blobs and keyed hashes (see seal.h).
 *
 * The master key is only ever an HKDF input: every use (sealing, the audit
 * chain, API-key hashes) has its own derived subkey, so no two uses share a
 * key. Keys and plaintexts live in secret memory (the one exception: the
 * sealing subkey, held on the stack for one call and wiped on every path);
 * OpenSSL contexts are freed (and so wiped by OpenSSL) on every path. This
 * file must never put key or plaintext bytes in an error message, and
 * seal_open must not tell which of its checks failed: a blob is valid or it
 * is not.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#include "sealvm/file.h"
#include "sealvm/seal.h"

#define SEAL_MAGIC "SVS1"
#define SEAL_MAGIC_LEN 4
#define SEAL_NONCE_LEN 12
#define SEAL_TAG_LEN 16
#define SEAL_HKDF_SALT "sealvm-v1"
#define SEAL_LABEL_MAX 255
#define SEAL_AAD_MAX 1024

/*
 * Algorithms are fetched once per process: a fetch takes a global lock and a
 * lookup, which sealing on a request path should not pay every time. They
 * stay loaded until exit.
 */
static pthread_once_t algs_once = PTHREAD_ONCE_INIT;
static EVP_KDF *alg_hkdf;
static EVP_MAC *alg_hmac;
static EVP_CIPHER *alg_gcm;
static EVP_MD *alg_sha256;

static void algs_fetch(void)
{
	alg_hkdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
	alg_hmac = EVP_MAC_fetch(NULL, "HMAC", NULL);
	alg_gcm = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);
	alg_sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
}

static bool algs_ready(void)
{
	if (pthread_once(&algs_once, algs_fetch) != 0)
		return false;
	return alg_hkdf && alg_hmac && alg_gcm && alg_sha256;
}

static inline void cipher_ctx_freep(EVP_CIPHER_CTX **c)
{
	EVP_CIPHER_CTX_free(*c); /* NULL is fine; the provider wipes the key schedule */
}

static inline void kdf_ctx_freep(EVP_KDF_CTX **c)
{
	EVP_KDF_CTX_free(*c);
}

static inline void mac_ctx_freep(EVP_MAC_CTX **c)
{
	EVP_MAC_CTX_free(*c);
}

int seal_master_create(const char *path, struct sealvm_secret **ret, struct sealvm_err *err)
{
	_cleanup_secret_ struct sealvm_secret *key = NULL;
	int r;

	r = sealvm_secret_random(SEALVM_MASTER_KEY_BYTES, &key);
	if (r < 0)
		return sealvm_err_set(err, r, NULL, "cannot generate the master key for %s", path);
	r = sealvm_write_file_exclusive(path, key->data, key->len, 0600, err);
	if (r < 0)
		return r;
	*ret = TAKE_PTR(key);
	return 0;
}

int seal_master_load(const char *path, struct sealvm_secret **ret, struct sealvm_err *err)
{
	_cleanup_secret_ struct sealvm_secret *key = NULL;
	_cleanup_close_ int fd = -1;
	struct stat st;
	int r;

	/*
	 * Everything is checked on the opened descriptor and read from it, so the
	 * file checked is the file read. O_NONBLOCK: a FIFO put in its place must
	 * not hang the daemon at start.
	 */
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW | O_NONBLOCK);
	if (fd < 0) {
		r = negative_errno();
		if (r == -ELOOP)
			return sealvm_err_set(
				err, r, "MASTER_KEY_SYMLINK",
				"master key %s is a symbolic link: put the key file itself there",
				path);
		return sealvm_err_set_errno(err, r, NULL, "cannot open master key %s", path);
	}
	if (fstat(fd, &st) < 0)
		return sealvm_err_set_errno(err, negative_errno(), NULL,
					    "cannot stat master key %s", path);
	if (!S_ISREG(st.st_mode))
		return sealvm_err_set(err, -EINVAL, "NOT_A_FILE",
				      "master key %s is not a regular file", path);
	if (st.st_mode & 077)
		return sealvm_err_set(
			err, -EPERM, "MASTER_KEY_MODE",
			"master key %s is accessible by group or others (mode %04o): run 'chmod 600 %s' and check who may have read it",
			path, (unsigned)(st.st_mode & 07777), path);
	if (st.st_size != SEALVM_MASTER_KEY_BYTES)
		return sealvm_err_set(
			err, -EBADMSG, "MASTER_KEY_INVALID",
			"master key %s holds %lld bytes, a master key exactly %d: restore the file from its backup",
			path, (long long)st.st_size, SEALVM_MASTER_KEY_BYTES);

	/* One byte of room more than a key, so that a file that grew is noticed. */
	r = sealvm_secret_new(SEALVM_MASTER_KEY_BYTES + 1, &key);
	if (r < 0)
		return sealvm_err_set(err, r, NULL, "cannot allocate secure memory for %s", path);
	while (key->len < key->cap) {
		ssize_t n = read(fd, key->data + key->len, key->cap - key->len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return sealvm_err_set_errno(err, negative_errno(), NULL,
						    "cannot read master key %s", path);
		if (n == 0)
			break;
		key->len += (size_t)n;
	}
	if (key->len != SEALVM_MASTER_KEY_BYTES)
		return sealvm_err_set(
			err, -EBADMSG, "MASTER_KEY_INVALID",
			"master key %s changed size while it was read: restore the file from its backup",
			path);
	key->data[key->len] = 0;
	*ret = TAKE_PTR(key);
	return 0;
}

/* HKDF-SHA256(ikm = master, salt "sealvm-v1", info = label) → 32 bytes at @out. */
static int hkdf(const struct sealvm_secret *master, const char *label,
		unsigned char out[SEALVM_MASTER_KEY_BYTES])
{
	_cleanup_(kdf_ctx_freep) EVP_KDF_CTX *kctx = NULL;
	OSSL_PARAM params[5];
	size_t label_len;

	if (!master || master->len != SEALVM_MASTER_KEY_BYTES || !label)
		return -EINVAL;
	label_len = strlen(label);
	if (label_len == 0 || label_len > SEAL_LABEL_MAX)
		return -EINVAL;
	if (!algs_ready())
		return -EIO;
	kctx = EVP_KDF_CTX_new(alg_hkdf);
	if (!kctx)
		return -ENOMEM;
	params[0] = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)"SHA256", 0);
	params[1] =
		OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, master->data, master->len);
	params[2] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, (char *)SEAL_HKDF_SALT,
						      sizeof(SEAL_HKDF_SALT) - 1);
	params[3] =
		OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, (char *)label, label_len);
	params[4] = OSSL_PARAM_construct_end();
	if (EVP_KDF_derive(kctx, out, SEALVM_MASTER_KEY_BYTES, params) != 1) {
		ERR_clear_error();
		OPENSSL_cleanse(out, SEALVM_MASTER_KEY_BYTES);
		return -EIO;
	}
	return 0;
}

int seal_derive(const struct sealvm_secret *master, const char *label, struct sealvm_secret **ret)
{
	_cleanup_secret_ struct sealvm_secret *key = NULL;
	int r;

	r = sealvm_secret_new(SEALVM_MASTER_KEY_BYTES, &key);
	if (r < 0)
		return r;
	r = hkdf(master, label, key->data);
	if (r < 0)
		return r;
	key->len = SEALVM_MASTER_KEY_BYTES;
	*ret = TAKE_PTR(key);
	return 0;
}

/* The one answer seal_open gives for any bad blob, so that failures cannot be told apart. */
static int blob_invalid(struct sealvm_err *err)
{
	ERR_clear_error();
	return sealvm_err_set(
		err, -EBADMSG, "SEALED_BLOB_INVALID",
		"a sealed secret failed its integrity check: it was changed, belongs elsewhere, or was sealed under another master key");
}

static int check_aad(const char *aad, size_t *ret_len, struct sealvm_err *err)
{
	size_t n = aad ? strlen(aad) : 0;
	if (n == 0 || n > SEAL_AAD_MAX)
		return sealvm_err_set(
			err, -EINVAL, "INVALID_ARGUMENT",
			"a sealed secret needs an AAD of 1 to %d characters naming its place",
			SEAL_AAD_MAX);
	*ret_len = n;
	return 0;
}

/*
 * The sealing subkey, derived into the caller's stack buffer rather than a
 * secret mapping: it lives for one call, OpenSSL's AES key schedule made
 * from it is ordinary heap memory anyway, and a mapping (mmap, mlock,
 * munmap) would cost more than the sealing itself. Callers wipe it on every
 * path (sealing_key_wipe).
 */
static int seal_key(const struct sealvm_secret *master, unsigned char key[SEALVM_MASTER_KEY_BYTES],
		    struct sealvm_err *err)
{
	int r = hkdf(master, "seal", key);
	if (r == -EINVAL)
		return sealvm_err_set(err, r, "INVALID_ARGUMENT", "the master key must be %d bytes",
				      SEALVM_MASTER_KEY_BYTES);
	if (r < 0)
		return sealvm_err_set(err, r, NULL, "cannot derive the sealing key");
	return 0;
}

static inline void sealing_key_wipe(unsigned char (*key)[SEALVM_MASTER_KEY_BYTES])
{
	OPENSSL_cleanse(*key, sizeof(*key));
}

int seal_blob(const struct sealvm_secret *master, const char *aad,
	      const struct sealvm_secret *plain, unsigned char **ret_blob, size_t *ret_len,
	      struct sealvm_err *err)
{
	_cleanup_(sealing_key_wipe) unsigned char key[SEALVM_MASTER_KEY_BYTES];
	_cleanup_(cipher_ctx_freep) EVP_CIPHER_CTX *ctx = NULL;
	_cleanup_free_ unsigned char *blob = NULL;
	unsigned char *nonce, *ct, *tag;
	size_t aad_len = 0, total;
	int r, outl;

	r = check_aad(aad, &aad_len, err);
	if (r < 0)
		return r;
	if (!plain || plain->len > SEALVM_SECRET_MAX)
		return sealvm_err_set(err, -EINVAL, "INVALID_ARGUMENT",
				      "a sealed secret holds at most %d bytes", SEALVM_SECRET_MAX);
	r = seal_key(master, key, err);
	if (r < 0)
		return r;

	total = plain->len + SEALVM_SEAL_OVERHEAD;
	blob = malloc(total);
	if (!blob)
		return sealvm_err_set(err, -ENOMEM, NULL, "cannot allocate a sealed blob");
	nonce = blob + SEAL_MAGIC_LEN;
	ct = nonce + SEAL_NONCE_LEN;
	tag = ct + plain->len;
	memcpy(blob, SEAL_MAGIC, SEAL_MAGIC_LEN);
	/* A random 96-bit nonce per blob; each blob is sealed once, so 2^32 blobs per key stay
	 * safe. */
	if (RAND_bytes(nonce, SEAL_NONCE_LEN) != 1) {
		ERR_clear_error();
		return sealvm_err_set(err, -EIO, NULL, "cannot generate a nonce");
	}

	ctx = EVP_CIPHER_CTX_new();
	if (!ctx)
		return sealvm_err_set(err, -ENOMEM, NULL, "cannot allocate a cipher context");
	if (EVP_EncryptInit_ex2(ctx, alg_gcm, key, nonce, NULL) != 1 ||
	    EVP_EncryptUpdate(ctx, NULL, &outl, (const unsigned char *)aad, (int)aad_len) != 1 ||
	    (plain->len > 0 &&
	     (EVP_EncryptUpdate(ctx, ct, &outl, plain->data, (int)plain->len) != 1 ||
	      (size_t)outl != plain->len)) ||
	    EVP_EncryptFinal_ex(ctx, tag, &outl) != 1 ||
	    EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, SEAL_TAG_LEN, tag) != 1) {
		ERR_clear_error();
		/* The buffer may hold part of the ciphertext only, but leave nothing behind. */
		OPENSSL_cleanse(blob, total);
		return sealvm_err_set(err, -EIO, NULL, "cannot seal a secret (AES-256-GCM failed)");
	}
	*ret_blob = TAKE_PTR(blob);
	*ret_len = total;
	return 0;
}

int seal_open(const struct sealvm_secret *master, const char *aad, const unsigned char *blob,
	      size_t len, struct sealvm_secret **ret, struct sealvm_err *err)
{
	_cleanup_(sealing_key_wipe) unsigned char key[SEALVM_MASTER_KEY_BYTES];
	_cleanup_secret_ struct sealvm_secret *plain = NULL;
	_cleanup_(cipher_ctx_freep) EVP_CIPHER_CTX *ctx = NULL;
	unsigned char tag[SEAL_TAG_LEN];
	const unsigned char *nonce, *ct;
	size_t aad_len = 0, ct_len;
	int r, outl;

	r = check_aad(aad, &aad_len, err);
	if (r < 0)
		return r;
	if (!blob || len < SEALVM_SEAL_OVERHEAD || len - SEALVM_SEAL_OVERHEAD > SEALVM_SECRET_MAX ||
	    memcmp(blob, SEAL_MAGIC, SEAL_MAGIC_LEN) != 0)
		return blob_invalid(err);
	nonce = blob + SEAL_MAGIC_LEN;
	ct = nonce + SEAL_NONCE_LEN;
	ct_len = len - SEALVM_SEAL_OVERHEAD;
	memcpy(tag, ct + ct_len, SEAL_TAG_LEN); /* the ctrl wants a writable buffer */

	r = seal_key(master, key, err);
	if (r < 0)
		return r;
	/* Decrypt straight into secret memory; it is wiped if the tag then fails. */
	r = sealvm_secret_new(ct_len, &plain);
	if (r < 0)
		return sealvm_err_set(err, r, NULL, "cannot allocate secure memory");
	ctx = EVP_CIPHER_CTX_new();
	if (!ctx)
		return sealvm_err_set(err, -ENOMEM, NULL, "cannot allocate a cipher context");
	if (EVP_DecryptInit_ex2(ctx, alg_gcm, key, nonce, NULL) != 1 ||
	    EVP_DecryptUpdate(ctx, NULL, &outl, (const unsigned char *)aad, (int)aad_len) != 1 ||
	    (ct_len > 0 && (EVP_DecryptUpdate(ctx, plain->data, &outl, ct, (int)ct_len) != 1 ||
			    (size_t)outl != ct_len)) ||
	    EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, SEAL_TAG_LEN, tag) != 1 ||
	    EVP_DecryptFinal_ex(ctx, plain->data + ct_len, &outl) != 1)
		return blob_invalid(err);
	plain->len = ct_len;
	plain->data[ct_len] = 0;
	*ret = TAKE_PTR(plain);
	return 0;
}

int seal_keyed_hash(const struct sealvm_secret *key, const char *domain, const void *data,
		    size_t len, unsigned char out[SEALVM_KEYED_HASH_BYTES])
{
	_cleanup_(mac_ctx_freep) EVP_MAC_CTX *mctx = NULL;
	OSSL_PARAM params[2];
	size_t outl = 0;

	OPENSSL_cleanse(out, SEALVM_KEYED_HASH_BYTES);
	if (!key || key->len < 16 || !domain || !*domain || (!data && len > 0))
		return -EINVAL;
	if (!algs_ready())
		return -EIO;
	mctx = EVP_MAC_CTX_new(alg_hmac);
	if (!mctx)
		return -ENOMEM;
	params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0);
	params[1] = OSSL_PARAM_construct_end();
	/* The domain's terminating NUL is the 0x00 separator: "a" + "\0bc" != "ab" + "\0c". */
	if (EVP_MAC_init(mctx, key->data, key->len, params) != 1 ||
	    EVP_MAC_update(mctx, (const unsigned char *)domain, strlen(domain) + 1) != 1 ||
	    (len > 0 && EVP_MAC_update(mctx, data, len) != 1) ||
	    EVP_MAC_final(mctx, out, &outl, SEALVM_KEYED_HASH_BYTES) != 1 ||
	    outl != SEALVM_KEYED_HASH_BYTES) {
		ERR_clear_error();
		OPENSSL_cleanse(out, SEALVM_KEYED_HASH_BYTES);
		return -EIO;
	}
	return 0;
}

bool seal_hash_equal(const unsigned char a[SEALVM_KEYED_HASH_BYTES],
		     const unsigned char b[SEALVM_KEYED_HASH_BYTES])
{
	return CRYPTO_memcmp(a, b, SEALVM_KEYED_HASH_BYTES) == 0;
}

int seal_sha256(const void *data, size_t len, unsigned char out[32])
{
	unsigned n = 0;
	if (!algs_ready() || EVP_Digest(data, len, out, &n, alg_sha256, NULL) != 1 || n != 32)
		return -EIO;
	return 0;
}
