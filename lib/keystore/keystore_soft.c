// SPDX-License-Identifier: Apache-2.0
/*
 * keystore_soft.c — the software keystore: root keys sealed under the data
 * dir's master key.
 *
 * A key's reference is its material sealed with seal_blob under the master
 * key, AAD "kms/root-key/<name>" (the prefix keeps these blobs apart from
 * every other sealed secret; the name binds the blob to its key version).
 * The reference alone holds the key: nothing is stored here and destroying
 * a key is the KMS forgetting its reference (and this file dropping it from
 * its cache).
 *
 * Opening a blob costs a secret-memory mapping (mmap + mlock + munmap, about
 * 20 µs here: more than everything else of an unwrap together), so opened
 * keys are cached — only in secret memory: one locked mapping holds the
 * material of SOFT_CACHE_SETS × SOFT_CACHE_WAYS keys, a set-associative cache
 * indexed by the blob's random nonce and keyed by (name, reference); the
 * clear-text copy of a key never leaves it (AES-GCM runs on the cached bytes
 * under a read lock). The set's lock stripe is a rwlock: hits share it,
 * inserts and evictions take it alone. The cache is bounded (round-robin
 * eviction per set), wiped slot by slot on eviction and destroy, and whole
 * when the keystore closes. Import-token keys are keystore_rsa.c's sealed
 * RSA keys and are not cached.
 *
 * This file must never put key material, plaintext or the master key in a
 * message, and a reference that fails to open must look the same whatever
 * was wrong with it.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "keystore_internal.h"
#include "sealvm/seal.h"

#define SOFT_CACHE_SETS 128
#define SOFT_CACHE_WAYS 4
#define SOFT_CACHE_STRIPES 16
#define SOFT_KEY_MAX 32
#define SOFT_REF_MAX (SEALVM_SEAL_OVERHEAD + SOFT_KEY_MAX)

/* What a cached key is known by; its material is at keys->data + SOFT_KEY_MAX * slot. */
struct soft_slot {
	bool used;
	unsigned char key_len;
	unsigned char ref_len;
	unsigned char ref[SOFT_REF_MAX];
	char name[KS_NAME_MAX + 1];
};

struct ks_soft {
	struct keystore ks; /* first: the dispatcher's view */
	const struct sealvm_secret *master;
	struct sealvm_secret *keys; /* the cached material: one locked, wiped mapping */
	struct soft_slot slots[SOFT_CACHE_SETS * SOFT_CACHE_WAYS];
	unsigned char victim[SOFT_CACHE_SETS]; /* the next way to evict, per set */
	pthread_rwlock_t stripes[SOFT_CACHE_STRIPES];
};

static pthread_once_t gcm_once = PTHREAD_ONCE_INIT;
static EVP_CIPHER *gcm_128, *gcm_192, *gcm_256;

static void gcm_fetch(void)
{
	gcm_128 = EVP_CIPHER_fetch(NULL, "AES-128-GCM", NULL);
	gcm_192 = EVP_CIPHER_fetch(NULL, "AES-192-GCM", NULL);
	gcm_256 = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);
}

static const EVP_CIPHER *gcm_for(size_t key_len)
{
	if (pthread_once(&gcm_once, gcm_fetch) != 0)
		return NULL;
	switch (key_len) {
	case 16:
		return gcm_128;
	case 24:
		return gcm_192;
	case 32:
		return gcm_256;
	default:
		return NULL;
	}
}

static inline void cipher_ctx_freep(EVP_CIPHER_CTX **c)
{
	EVP_CIPHER_CTX_free(*c); /* the provider wipes the key schedule */
}

static struct ks_soft *soft(struct keystore *ks)
{
	return (struct ks_soft *)ks;
}

/* A soft reference is a sealed AES key: the seal overhead plus 16, 24 or 32 bytes. */
static bool ref_shape_ok(const unsigned char *ref, size_t ref_len)
{
	size_t n;
	if (ref_len < SEALVM_SEAL_OVERHEAD || memcmp(ref, "SVS1", 4) != 0)
		return false;
	n = ref_len - SEALVM_SEAL_OVERHEAD;
	return n == 16 || n == 24 || n == 32;
}

/* Opens the reference of @name into secret memory: -ENOENT, -EBADMSG or -EIO. */
static int key_open(struct ks_soft *s, const char *name, const unsigned char *ref, size_t ref_len,
		    struct sealvm_secret **ret, struct sealvm_err *err)
{
	struct sealvm_err serr = SEALVM_ERR_INIT;
	char aad[KS_NAME_MAX + 32];
	int r;

	ks_seal_aad(aad, sizeof(aad), KS_SOFT_AAD_PREFIX, name);
	r = seal_open(s->master, aad, ref, ref_len, ret, &serr);
	if (r == -EBADMSG)
		return ks_decrypt_failed(err, name);
	if (r < 0)
		return sealvm_err_set(err, r, "KEYSTORE_FAILED", "keystore: %s", serr.message);
	return 0;
}

/* ---- the cache of opened keys ---- */

/* The set of a (well-shaped) reference: bytes of its random seal nonce. */
static unsigned cache_set(const unsigned char *ref)
{
	unsigned v = (unsigned)ref[4] | (unsigned)ref[5] << 8 | (unsigned)ref[6] << 16 |
		     (unsigned)ref[7] << 24;
	return v % SOFT_CACHE_SETS;
}

static pthread_rwlock_t *cache_lock(struct ks_soft *s, unsigned set)
{
	return &s->stripes[set % SOFT_CACHE_STRIPES];
}

/* The slot of (@name, @ref) in @set, or -1. The caller holds the set's lock. */
static int cache_find(struct ks_soft *s, unsigned set, const char *name, const unsigned char *ref,
		      size_t ref_len)
{
	for (unsigned w = 0; w < SOFT_CACHE_WAYS; w++) {
		unsigned i = set * SOFT_CACHE_WAYS + w;
		const struct soft_slot *sl = &s->slots[i];
		if (sl->used && sl->ref_len == ref_len && memcmp(sl->ref, ref, ref_len) == 0 &&
		    strcmp(sl->name, name) == 0)
			return (int)i;
	}
	return -1;
}

static void cache_drop(struct ks_soft *s, unsigned i)
{
	OPENSSL_cleanse(s->keys->data + (size_t)i * SOFT_KEY_MAX, SOFT_KEY_MAX);
	memset(&s->slots[i], 0, sizeof(s->slots[i]));
}

/* Puts an opened key into the cache (unless another thread did already). */
static void cache_insert(struct ks_soft *s, unsigned set, const char *name,
			 const unsigned char *ref, size_t ref_len, const struct sealvm_secret *key)
{
	pthread_rwlock_t *lock = cache_lock(s, set);
	pthread_rwlock_wrlock(lock);
	if (cache_find(s, set, name, ref, ref_len) < 0) {
		unsigned i = set * SOFT_CACHE_WAYS + s->victim[set]++ % SOFT_CACHE_WAYS;
		struct soft_slot *sl = &s->slots[i];
		cache_drop(s, i);
		memcpy(s->keys->data + (size_t)i * SOFT_KEY_MAX, key->data, key->len);
		sl->key_len = (unsigned char)key->len;
		sl->ref_len = (unsigned char)ref_len;
		memcpy(sl->ref, ref, ref_len);
		snprintf(sl->name, sizeof(sl->name), "%s", name);
		sl->used = true;
	}
	pthread_rwlock_unlock(lock);
}

/* ---- AES-GCM on a key held in secret memory ---- */

struct gcm_job {
	bool encrypt;
	const unsigned char *aad;
	size_t aad_len;
	const unsigned char *in;
	size_t len;
	const unsigned char *iv;
	unsigned char *out;
	unsigned char *tag; /* encrypt: out; decrypt: in (copied: the ctrl wants it writable) */
};

/* 0, -EBADMSG (the tag did not verify) or -EIO. Leaves nothing of the key behind. */
static int gcm_run(const unsigned char *key, size_t key_len, const struct gcm_job *j)
{
	_cleanup_(cipher_ctx_freep) EVP_CIPHER_CTX *ctx = NULL;
	const EVP_CIPHER *cipher = gcm_for(key_len);
	unsigned char tagbuf[KEYSTORE_TAG_BYTES];
	int outl, ok;

	if (!cipher)
		return -EIO;
	ctx = EVP_CIPHER_CTX_new();
	if (!ctx)
		return -ENOMEM;
	if (j->encrypt) {
		ok = EVP_EncryptInit_ex2(ctx, cipher, key, j->iv, NULL) == 1 &&
		     (j->aad_len == 0 ||
		      EVP_EncryptUpdate(ctx, NULL, &outl, j->aad, (int)j->aad_len) == 1) &&
		     EVP_EncryptUpdate(ctx, j->out, &outl, j->in, (int)j->len) == 1 &&
		     (size_t)outl == j->len && EVP_EncryptFinal_ex(ctx, j->tag, &outl) == 1 &&
		     EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, KEYSTORE_TAG_BYTES, j->tag) ==
			     1;
		if (!ok) {
			ERR_clear_error();
			OPENSSL_cleanse(j->out, j->len);
			return -EIO;
		}
		return 0;
	}
	memcpy(tagbuf, j->tag, sizeof(tagbuf));
	if (EVP_DecryptInit_ex2(ctx, cipher, key, j->iv, NULL) != 1 ||
	    (j->aad_len > 0 && EVP_DecryptUpdate(ctx, NULL, &outl, j->aad, (int)j->aad_len) != 1) ||
	    EVP_DecryptUpdate(ctx, j->out, &outl, j->in, (int)j->len) != 1 ||
	    (size_t)outl != j->len) {
		ERR_clear_error();
		OPENSSL_cleanse(j->out, j->len);
		return -EIO;
	}
	if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, KEYSTORE_TAG_BYTES, tagbuf) != 1 ||
	    EVP_DecryptFinal_ex(ctx, j->out + j->len, &outl) != 1) {
		ERR_clear_error();
		OPENSSL_cleanse(j->out, j->len);
		return -EBADMSG;
	}
	return 0;
}

/*
 * Runs @j under the key of (@name, @ref): from the cache under the set's read
 * lock when it is there, else opened from the reference (and then cached).
 */
static int soft_gcm(struct ks_soft *s, const char *name, const unsigned char *ref, size_t ref_len,
		    const struct gcm_job *j, struct sealvm_err *err)
{
	_cleanup_secret_ struct sealvm_secret *key = NULL;
	unsigned set;
	int r, i;

	if (!ref_shape_ok(ref, ref_len))
		return sealvm_err_set(
			err, -ENOENT, "KEYSTORE_KEY_MISSING",
			"keystore: the reference of key %s names no soft-keystore key", name);
	set = cache_set(ref);
	pthread_rwlock_rdlock(cache_lock(s, set));
	i = cache_find(s, set, name, ref, ref_len);
	if (i >= 0)
		r = gcm_run(s->keys->data + (size_t)i * SOFT_KEY_MAX, s->slots[i].key_len, j);
	pthread_rwlock_unlock(cache_lock(s, set));
	if (i < 0) {
		r = key_open(s, name, ref, ref_len, &key, err);
		if (r < 0)
			return r;
		cache_insert(s, set, name, ref, ref_len, key);
		r = gcm_run(key->data, key->len, j);
	}
	if (r == -EBADMSG)
		return ks_decrypt_failed(err, name);
	if (r < 0)
		return sealvm_err_set(err, r, "KEYSTORE_FAILED",
				      "keystore: AES-GCM under key %s failed (OpenSSL)", name);
	return 0;
}

/* ---- the operations ---- */

static int soft_key_create(struct keystore *ks, const char *name, size_t bytes,
			   const struct sealvm_secret *material, unsigned char *ref,
			   size_t *ref_len, struct sealvm_err *err)
{
	_cleanup_secret_ struct sealvm_secret *fresh = NULL;
	_cleanup_free_ unsigned char *blob = NULL;
	char aad[KS_NAME_MAX + 32];
	size_t blob_len = 0;
	int r;

	if (!material) {
		r = sealvm_secret_random(bytes, &fresh);
		if (r < 0)
			return sealvm_err_set(err, r, "KEYSTORE_FAILED",
					      "keystore: cannot generate a %zu-byte key", bytes);
		material = fresh;
	}
	ks_seal_aad(aad, sizeof(aad), KS_SOFT_AAD_PREFIX, name);
	r = seal_blob(soft(ks)->master, aad, material, &blob, &blob_len, err);
	if (r < 0)
		return r;
	if (blob_len > KEYSTORE_REF_MAX)
		return sealvm_err_set(err, -EIO, "KEYSTORE_FAILED",
				      "keystore: a reference of %zu bytes does not fit", blob_len);
	memcpy(ref, blob, blob_len);
	*ref_len = blob_len;
	return 0;
}

static int soft_key_destroy(struct keystore *ks, const char *name, const unsigned char *ref,
			    size_t ref_len, struct sealvm_err *err)
{
	struct ks_soft *s = soft(ks);
	unsigned set;
	int i;

	/* The reference is the key: once the KMS drops it, only our cached copy is left. */
	if (!ref_shape_ok(ref, ref_len))
		return 0;
	set = cache_set(ref);
	pthread_rwlock_wrlock(cache_lock(s, set));
	i = cache_find(s, set, name, ref, ref_len);
	if (i >= 0)
		cache_drop(s, (unsigned)i);
	pthread_rwlock_unlock(cache_lock(s, set));
	return 0;
}

static int soft_encrypt(struct keystore *ks, const char *name, const unsigned char *ref,
			size_t ref_len, const unsigned char *aad, size_t aad_len,
			const struct sealvm_secret *plain, unsigned char iv[KEYSTORE_IV_BYTES],
			unsigned char *ct, unsigned char tag[KEYSTORE_TAG_BYTES],
			struct sealvm_err *err)
{
	struct gcm_job j = {
		.encrypt = true,
		.aad = aad,
		.aad_len = aad_len,
		.in = plain->data,
		.len = plain->len,
		.iv = iv,
		.out = ct,
		.tag = tag,
	};

	if (RAND_bytes(iv, KEYSTORE_IV_BYTES) != 1) {
		ERR_clear_error();
		return sealvm_err_set(
			err, -EIO, "KEYSTORE_FAILED",
			"keystore: cannot generate an IV (OpenSSL RAND_bytes failed)");
	}
	return soft_gcm(soft(ks), name, ref, ref_len, &j, err);
}

static int soft_decrypt(struct keystore *ks, const char *name, const unsigned char *ref,
			size_t ref_len, const unsigned char *aad, size_t aad_len,
			const unsigned char iv[KEYSTORE_IV_BYTES], const unsigned char *ct,
			size_t ct_len, const unsigned char tag[KEYSTORE_TAG_BYTES],
			struct sealvm_secret **ret, struct sealvm_err *err)
{
	_cleanup_secret_ struct sealvm_secret *plain = NULL;
	int r;

	/* Decrypt straight into secret memory; it is wiped if the tag then fails. */
	r = sealvm_secret_new(ct_len, &plain);
	if (r < 0)
		return sealvm_err_set(err, r, NULL, "keystore: cannot allocate secure memory");
	struct gcm_job j = {
		.encrypt = false,
		.aad = aad,
		.aad_len = aad_len,
		.in = ct,
		.len = ct_len,
		.iv = iv,
		.out = plain->data,
		.tag = (unsigned char *)tag,
	};
	r = soft_gcm(soft(ks), name, ref, ref_len, &j, err);
	if (r < 0)
		return r;
	plain->len = ct_len;
	plain->data[ct_len] = 0;
	*ret = TAKE_PTR(plain);
	return 0;
}

static int soft_rsa_create(struct keystore *ks, const char *name, unsigned char **ret_pub,
			   size_t *ret_pub_len, unsigned char **ret_ref, size_t *ret_ref_len,
			   struct sealvm_err *err)
{
	return ks_rsa_sealed_create(soft(ks)->master, name, ret_pub, ret_pub_len, ret_ref,
				    ret_ref_len, err);
}

static int soft_rsa_decrypt(struct keystore *ks, const char *name, const unsigned char *ref,
			    size_t ref_len, const unsigned char *ct, size_t ct_len,
			    struct sealvm_secret **ret, struct sealvm_err *err)
{
	return ks_rsa_sealed_decrypt(soft(ks)->master, name, ref, ref_len, ct, ct_len, ret, err);
}

static int soft_rsa_destroy(struct keystore *ks, const char *name, const unsigned char *ref,
			    size_t ref_len, struct sealvm_err *err)
{
	return 0; /* as for AES keys: the sealed reference is the key, and it is not cached */
}

static void soft_close(struct keystore *ks)
{
	struct ks_soft *s = soft(ks);
	for (unsigned i = 0; i < SOFT_CACHE_STRIPES; i++)
		pthread_rwlock_destroy(&s->stripes[i]);
	sealvm_secret_free(s->keys); /* wipes every cached key */
	free(s);
}

static const struct keystore_ops soft_ops = {
	.name = "soft",
	.close = soft_close,
	.key_create = soft_key_create,
	.key_destroy = soft_key_destroy,
	.encrypt = soft_encrypt,
	.decrypt = soft_decrypt,
	.rsa_create = soft_rsa_create,
	.rsa_decrypt = soft_rsa_decrypt,
	.rsa_destroy = soft_rsa_destroy,
};

int ks_soft_open(const struct keystore_config *cfg, struct keystore **ret, struct sealvm_err *err)
{
	struct ks_soft *s = calloc(1, sizeof(*s));
	int r;

	if (!s)
		return sealvm_err_set(err, -ENOMEM, NULL, "keystore: out of memory");
	r = sealvm_secret_new((size_t)SOFT_CACHE_SETS * SOFT_CACHE_WAYS * SOFT_KEY_MAX, &s->keys);
	if (r < 0) {
		free(s);
		return sealvm_err_set(err, r, NULL,
				      "keystore: cannot allocate secure memory for the key cache");
	}
	for (unsigned i = 0; i < SOFT_CACHE_STRIPES; i++)
		pthread_rwlock_init(&s->stripes[i], NULL);
	s->ks.ops = &soft_ops;
	s->master = cfg->master;
	*ret = &s->ks;
	return 0;
}
