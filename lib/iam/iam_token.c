// SPDX-License-Identifier: Apache-2.0
/*
 * iam_token.c — access tokens: signing keys, the API-key exchange, bearer
 * verification with its cache, and the token endpoint's rate limit.
 *
 * Signing keys are P-256 key pairs stored sealed (AAD "iam/signing-key/<kid>")
 * and loaded into memory; the newest unretired one signs, every key whose
 * tokens may still be alive verifies. A verified token's principal is cached
 * under the SHA-256 of the token text until the token expires, so the hot
 * path (every authenticated request) is one hash and one table probe.
 *
 * This file must never log, format into an error, or store a token text, an
 * API key value or a private key. Token texts live in heap memory only as
 * long as a request needs them and are wiped before they are freed.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "sealvm/jwt.h"
#include "sealvm/log.h"
#include "sealvm/seal.h"

#include "iam_internal.h"

#define GRANT_APIKEY "urn:ibm:params:oauth:grant-type:apikey"

/* Verification cache: 16 shards x 64 sets x 4 ways = 4096 principals. */
#define CACHE_SHARDS 16
#define CACHE_SETS 64
#define CACHE_WAYS 4

/* Token endpoint rate limit: 512 sets x 8 ways of per-address buckets. */
#define RATE_SETS 512
#define RATE_WAYS 8

/* A key id we do not know makes us re-read the keys, at most this often (seconds). */
#define KEYS_REFRESH_UNKNOWN_S 5
/* The signer re-reads the keys this often, to see a rotation made by another process. */
#define KEYS_REFRESH_SIGNER_S 60

struct loaded_key {
	char kid[IAM_KID_MAX];
	EVP_PKEY *pkey; /* private + public */
	json_t *jwk;
	int64_t created, retired_at;
};

struct cache_entry {
	unsigned char digest[32];
	int64_t until; /* epoch seconds: exp + skew; 0 = empty */
	struct sealvm_principal p;
};

struct cache_shard {
	pthread_mutex_t lock;
	struct cache_entry e[CACHE_SETS][CACHE_WAYS];
};

struct rate_slot {
	char addr[48];
	double tokens;
	int64_t last_ns; /* CLOCK_MONOTONIC; 0 = empty */
};

struct iam_tokens {
	pthread_mutex_t keys_lock;
	struct loaded_key *keys; /* newest first */
	size_t n_keys;
	int64_t refreshed_mono; /* CLOCK_MONOTONIC seconds of the last load */

	struct cache_shard shards[CACHE_SHARDS];
	atomic_uint_fast64_t hits, misses;

	pthread_mutex_t rate_lock;
	uint64_t rate_seed;
	struct rate_slot rate[RATE_SETS][RATE_WAYS];
};

static int64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void wipe_free(char *s)
{
	if (s) {
		OPENSSL_cleanse(s, strlen(s));
		free(s);
	}
}

static inline void wipe_freep(char **s)
{
	wipe_free(*s);
}
#define _cleanup_wipe_ _cleanup_(wipe_freep)

static inline void pkey_freep(EVP_PKEY **k)
{
	EVP_PKEY_free(*k);
}

/* How long a retired key keeps verifying: its last tokens' lifetime, skew, and a refresh lag. */
static int64_t retired_grace(const struct iam *iam)
{
	return iam->cfg.token_ttl_s + iam->cfg.clock_skew_s + KEYS_REFRESH_SIGNER_S;
}

/* ---- signing keys ------------------------------------------------------------------ */

static void keys_free(struct loaded_key *keys, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		EVP_PKEY_free(keys[i].pkey);
		json_decref(keys[i].jwk);
	}
	free(keys);
}

struct load_ctx {
	struct iam *iam;
	struct loaded_key *old; /* borrowed under no lock: only the loader replaces the array */
	size_t n_old;
	struct loaded_key *keys;
	size_t n, cap;
	struct sealvm_err *err;
};

static int load_one(const struct iam_signing_key_row *row, void *arg)
{
	struct load_ctx *c = arg;
	struct loaded_key k = {0};
	char aad[32 + IAM_KID_MAX];

	if (c->n == c->cap) {
		size_t cap = c->cap ? c->cap * 2 : 4;
		struct loaded_key *nk = realloc(c->keys, cap * sizeof(*nk));
		if (!nk)
			return sealvm_err_set(c->err, -ENOMEM, NULL, "out of memory");
		c->keys = nk;
		c->cap = cap;
	}
	snprintf(k.kid, sizeof(k.kid), "%s", row->kid);
	k.created = row->created;
	k.retired_at = row->retired_at;
	/* A key we hold already is not unsealed again. */
	for (size_t i = 0; i < c->n_old; i++) {
		if (strcmp(c->old[i].kid, row->kid) == 0 && EVP_PKEY_up_ref(c->old[i].pkey) == 1) {
			k.pkey = c->old[i].pkey;
			k.jwk = json_incref(c->old[i].jwk);
			c->keys[c->n++] = k;
			return 0;
		}
	}
	snprintf(aad, sizeof(aad), "iam/signing-key/%s", row->kid);
	_cleanup_secret_ struct sealvm_secret *der = NULL;
	int r = seal_open(c->iam->master, aad, row->sealed, row->sealed_len, &der, c->err);
	if (r < 0)
		return r;
	r = jwt_key_from_der(der, &k.pkey);
	if (r < 0)
		return sealvm_err_set(c->err, r, "SIGNING_KEY_INVALID",
				      "signing key %s does not hold a P-256 key", row->kid);
	k.jwk = jwt_key_jwk(k.pkey, k.kid);
	if (!k.jwk) {
		EVP_PKEY_free(k.pkey);
		return sealvm_err_set(c->err, -ENOMEM, NULL, "out of memory");
	}
	c->keys[c->n++] = k;
	return 0;
}

/* Re-reads the signing keys that may still verify live tokens, and swaps them in. */
static int keys_load(struct iam *iam, struct sealvm_err *err)
{
	struct iam_tokens *t = iam->tokens;
	struct load_ctx c = {.iam = iam, .err = err};

	pthread_mutex_lock(&t->keys_lock);
	/* Loads are rare; holding the lock keeps two loaders from racing the swap. */
	c.old = t->keys;
	c.n_old = t->n_keys;
	sqlite3 *conn = db_read_begin(iam->db);
	int r = iam_store_signing_key_list(conn, iam->now() - retired_grace(iam), load_one, &c,
					   err);
	db_read_end(iam->db, conn);
	if (r < 0) {
		pthread_mutex_unlock(&t->keys_lock);
		keys_free(c.keys, c.n);
		return r;
	}
	struct loaded_key *old = t->keys;
	size_t n_old = t->n_keys;
	t->keys = c.keys;
	t->n_keys = c.n;
	t->refreshed_mono = mono_ns() / 1000000000;
	pthread_mutex_unlock(&t->keys_lock);
	keys_free(old, n_old);
	return 0;
}

int iam_tokens_load(struct iam *iam, struct sealvm_err *err)
{
	return keys_load(iam, err);
}

static void make_kid(int64_t now, char out[IAM_KID_MAX])
{
	unsigned char rnd[4] = {0};
	struct tm tm;
	time_t tt = (time_t)now;
	gmtime_r(&tt, &tm);
	(void)RAND_bytes(rnd, sizeof(rnd));
	snprintf(out, IAM_KID_MAX, "%04d%02d%02d-%02x%02x%02x%02x", tm.tm_year + 1900,
		 tm.tm_mon + 1, tm.tm_mday, rnd[0], rnd[1], rnd[2], rnd[3]);
}

int iam_signing_key_prepare(struct iam *iam, struct iam_new_signing_key *ret,
			    struct sealvm_err *err)
{
	_cleanup_(pkey_freep) EVP_PKEY *key = NULL;
	_cleanup_secret_ struct sealvm_secret *der = NULL;
	struct iam_new_signing_key k = {0};
	char aad[32 + IAM_KID_MAX];

	k.created = iam->now();
	make_kid(k.created, k.kid);
	int r = jwt_key_generate(&key);
	if (r < 0)
		return sealvm_err_set(err, r, "SIGNING_KEY_GENERATE",
				      "cannot generate a signing key");
	r = jwt_key_to_der(key, &der);
	if (r < 0)
		return sealvm_err_set(err, r, "SIGNING_KEY_GENERATE",
				      "cannot encode a signing key");
	snprintf(aad, sizeof(aad), "iam/signing-key/%s", k.kid);
	r = seal_blob(iam->master, aad, der, &k.sealed, &k.sealed_len, err);
	if (r < 0)
		return r;
	json_t *jwk = jwt_key_jwk(key, k.kid);
	k.public_jwk = jwk ? json_dumps(jwk, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
	json_decref(jwk);
	if (!k.public_jwk) {
		free(k.sealed);
		return sealvm_err_set(err, -ENOMEM, NULL, "out of memory");
	}
	*ret = k;
	return 0;
}

void iam_signing_key_prepared_done(struct iam_new_signing_key *k)
{
	if (!k)
		return;
	free(k->sealed);
	free(k->public_jwk);
	k->sealed = NULL;
	k->public_jwk = NULL;
}

struct rotate_job {
	struct iam_new_signing_key *k;
};

static int rotate_job_run(sqlite3 *conn, void *userdata, struct sealvm_err *err)
{
	struct rotate_job *j = userdata;
	int r = iam_store_signing_key_insert(conn, j->k->kid, j->k->created, j->k->sealed,
					     j->k->sealed_len, j->k->public_jwk, err);
	if (r < 0)
		return r;
	r = iam_store_signing_key_retire_others(conn, j->k->kid, j->k->created, err);
	return r < 0 ? r : 0;
}

int iam_rotate_signing_key(struct iam *iam, char ret_kid[64], struct sealvm_err *err)
{
	struct iam_new_signing_key k = {0};
	int r = iam_signing_key_prepare(iam, &k, err);
	if (r < 0)
		return r;
	struct rotate_job j = {.k = &k};
	r = db_write(iam->db, rotate_job_run, &j, err);
	if (r >= 0)
		r = keys_load(iam, err);
	if (r >= 0 && ret_kid)
		snprintf(ret_kid, 64, "%s", k.kid);
	iam_signing_key_prepared_done(&k);
	return r < 0 ? r : 0;
}

int iam_tokens_jwks(struct iam *iam, json_t **ret, struct sealvm_err *err)
{
	struct iam_tokens *t = iam->tokens;
	json_t *keys = json_array();
	if (!keys)
		return sealvm_err_set(err, -ENOMEM, NULL, "out of memory");
	int64_t cutoff = iam->now() - retired_grace(iam);
	pthread_mutex_lock(&t->keys_lock);
	for (size_t i = 0; i < t->n_keys; i++)
		if (t->keys[i].retired_at == 0 || t->keys[i].retired_at > cutoff)
			json_array_append(keys, t->keys[i].jwk);
	pthread_mutex_unlock(&t->keys_lock);
	json_t *o = json_pack("{s:o}", "keys", keys);
	if (!o)
		return sealvm_err_set(err, -ENOMEM, NULL, "out of memory");
	*ret = o;
	return 0;
}

/* The current signing key, with a reference the caller drops; NULL when there is none. */
static EVP_PKEY *current_key(struct iam *iam, char kid[IAM_KID_MAX])
{
	struct iam_tokens *t = iam->tokens;
	EVP_PKEY *k = NULL;
	bool stale;

	pthread_mutex_lock(&t->keys_lock);
	stale = mono_ns() / 1000000000 - t->refreshed_mono >= KEYS_REFRESH_SIGNER_S;
	pthread_mutex_unlock(&t->keys_lock);
	if (stale) {
		struct sealvm_err e = SEALVM_ERR_INIT;
		if (keys_load(iam, &e) < 0)
			log_warning("iam: cannot re-read the signing keys (%s); signing with the "
				    "ones loaded",
				    e.message);
	}
	pthread_mutex_lock(&t->keys_lock);
	for (size_t i = 0; i < t->n_keys; i++) {
		if (t->keys[i].retired_at == 0 && EVP_PKEY_up_ref(t->keys[i].pkey) == 1) {
			k = t->keys[i].pkey;
			snprintf(kid, IAM_KID_MAX, "%s", t->keys[i].kid);
			break;
		}
	}
	pthread_mutex_unlock(&t->keys_lock);
	return k;
}

int iam_token_sign_claims(struct iam *iam, const json_t *claims, char **ret, struct sealvm_err *err)
{
	char kid[IAM_KID_MAX];
	_cleanup_(pkey_freep) EVP_PKEY *key = current_key(iam, kid);
	if (!key)
		return sealvm_err_set(err, -ENOENT, "NO_SIGNING_KEY",
				      "the server has no token signing key; initialise the data "
				      "dir first");
	return jwt_sign(key, kid, claims, ret, err);
}

int iam_token_issue(struct iam *iam, const struct sealvm_principal *p, const char *sub,
		    const char *identifier, const char *email, char **ret, int64_t *ret_exp,
		    struct sealvm_err *err)
{
	unsigned char rnd[16];
	char jti[33];
	bool user = p->kind == PRINCIPAL_USER;

	if (p->kind != PRINCIPAL_USER && p->kind != PRINCIPAL_SERVICE_ID)
		return sealvm_err_set(err, -EINVAL, "PRINCIPAL_KIND",
				      "tokens are issued to users and service IDs only");
	if (RAND_bytes(rnd, sizeof(rnd)) != 1)
		return sealvm_err_set(err, -EIO, "RANDOM_FAILED", "the random generator failed");
	for (size_t i = 0; i < sizeof(rnd); i++)
		snprintf(jti + 2 * i, 3, "%02x", rnd[i]);
	int64_t iat = iam->now();
	int64_t exp = iat + iam->cfg.token_ttl_s;
	_cleanup_json_ json_t *claims = json_pack(
		"{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:{s:b, s:s}, s:I, s:I, s:s, s:s, s:s,"
		" s:s, s:i, s:[s]}",
		"iam_id", p->iam_id, "id", p->iam_id, "realmid", user ? "IBMid" : "iam", "jti", jti,
		"identifier", identifier, "name", p->name, "sub", sub, "sub_type",
		user ? "User" : "ServiceId", "account", "valid", 1, "bss", p->account_id, "iat",
		(json_int_t)iat, "exp", (json_int_t)exp, "iss", iam->cfg.issuer, "grant_type",
		GRANT_APIKEY, "scope", "ibm openid", "client_id", "default", "acr", 1, "amr",
		"pwd");
	if (!claims)
		return sealvm_err_set(err, -ENOMEM, NULL, "out of memory");
	if (user && email && email[0] &&
	    json_object_set_new(claims, "email", json_string(email)) < 0)
		return sealvm_err_set(err, -ENOMEM, NULL, "out of memory");
	int r = iam_token_sign_claims(iam, claims, ret, err);
	if (r < 0)
		return r;
	*ret_exp = exp;
	return 0;
}

/* ---- rate limit --------------------------------------------------------------------- */

static uint64_t addr_hash(uint64_t seed, const char *s)
{
	uint64_t h = 1469598103934665603ull ^ seed;
	for (; *s; s++) {
		h ^= (unsigned char)*s;
		h *= 1099511628211ull;
	}
	return h ^ (h >> 29);
}

int iam_token_rate_check(struct iam *iam, const char *remote, unsigned *ret_retry_after)
{
	struct iam_tokens *t = iam->tokens;
	double cap = iam->cfg.token_rate_per_min;
	double per_ns = cap / 60e9;
	int64_t now = mono_ns();
	const char *addr = remote && remote[0] ? remote : "-";
	struct rate_slot *set = t->rate[addr_hash(t->rate_seed, addr) % RATE_SETS];
	struct rate_slot *s = NULL, *victim = NULL;
	int r = 0;

	pthread_mutex_lock(&t->rate_lock);
	for (unsigned i = 0; i < RATE_WAYS && !s; i++)
		if (set[i].last_ns && strncmp(set[i].addr, addr, sizeof(set[i].addr) - 1) == 0)
			s = &set[i];
	if (!s) {
		/* An empty slot, else one that has refilled (idle), else the least recent. */
		for (unsigned i = 0; i < RATE_WAYS; i++) {
			struct rate_slot *c = &set[i];
			if (!c->last_ns || c->tokens + (double)(now - c->last_ns) * per_ns >= cap) {
				victim = c;
				break;
			}
			if (!victim || c->last_ns < victim->last_ns)
				victim = c;
		}
		s = victim;
		snprintf(s->addr, sizeof(s->addr), "%s", addr);
		s->tokens = cap;
		s->last_ns = now;
	}
	s->tokens += (double)(now - s->last_ns) * per_ns;
	if (s->tokens > cap)
		s->tokens = cap;
	s->last_ns = now;
	if (s->tokens >= 1.0) {
		s->tokens -= 1.0;
	} else {
		if (ret_retry_after)
			*ret_retry_after = (unsigned)((1.0 - s->tokens) / per_ns / 1e9) + 1;
		r = -EAGAIN;
	}
	pthread_mutex_unlock(&t->rate_lock);
	return r;
}

/* ---- token exchange ------------------------------------------------------------------ */

static int apikey_not_found(struct sealvm_err *err)
{
	/* One answer for unknown, deleted and locked keys and locked owners: no oracle. */
	return sealvm_err_set(err, -EINVAL, "APIKEY_NOT_FOUND",
			      "Provided API key could not be found.");
}

/* Finds and checks an API key; fills @ret_login. Errors as iam_authenticate_apikey. */
static int apikey_check(struct iam *iam, const char *apikey, size_t len,
			struct iam_apikey_login *ret_login, struct sealvm_err *err)
{
	unsigned char hash[SEALVM_KEYED_HASH_BYTES];
	struct iam_apikey_login l;
	struct sealvm_err e = SEALVM_ERR_INIT;

	if (!apikey || len < IAM_APIKEY_MIN || len > IAM_APIKEY_MAX || memchr(apikey, 0, len))
		return apikey_not_found(err);
	int r = seal_keyed_hash(iam->apikey_hash_key, "apikey", apikey, len, hash);
	if (r < 0)
		return sealvm_err_set(err, r, "APIKEY_HASH_FAILED", "cannot hash the API key");
	sqlite3 *conn = db_read_begin(iam->db);
	r = iam_store_apikey_login(conn, hash, &l, &e);
	db_read_end(iam->db, conn);
	if (r == -ENOENT)
		return apikey_not_found(err);
	if (r < 0) {
		*err = e;
		return r;
	}
	bool same = seal_hash_equal(hash, l.hash);
	OPENSSL_cleanse(hash, sizeof(hash));
	if (!same)
		return apikey_not_found(err);
	if (l.key.locked || !l.owner_found || l.owner_locked) {
		log_info("iam: API key %s refused at login: %s", l.key.id,
			 l.key.locked	  ? "the key is locked"
			 : !l.owner_found ? "its owner no longer exists"
					  : "its owner is locked");
		return apikey_not_found(err);
	}
	char owner[IAM_IAM_ID_MAX];
	if (iam_account_owner(iam, l.key.account_id, owner, &e) < 0)
		return apikey_not_found(err);
	*ret_login = l;
	return 0;
}

static void principal_from_login(const struct iam_apikey_login *l, const char *credential,
				 struct sealvm_principal *p)
{
	memset(p, 0, sizeof(*p));
	p->kind = l->owner_kind == IAM_OWNER_USER ? PRINCIPAL_USER : PRINCIPAL_SERVICE_ID;
	snprintf(p->iam_id, sizeof(p->iam_id), "%s", l->key.iam_id);
	snprintf(p->account_id, sizeof(p->account_id), "%s", l->key.account_id);
	snprintf(p->name, sizeof(p->name), "%s", l->owner_name);
	snprintf(p->credential_type, sizeof(p->credential_type), "%s", credential);
}

int iam_authenticate_apikey(struct iam *iam, const char *apikey, size_t len,
			    struct sealvm_principal *ret, struct sealvm_err *err)
{
	struct iam_apikey_login l;
	struct sealvm_err e = SEALVM_ERR_INIT;
	int r = apikey_check(iam, apikey, len, &l, &e);
	if (r == -EINVAL)
		return sealvm_err_set(err, -EPERM, "APIKEY_NOT_FOUND",
				      "Provided API key could not be found.");
	if (r < 0) {
		if (err && !sealvm_err_isset(err))
			*err = e;
		return r;
	}
	principal_from_login(&l, "apikey", ret);
	return 0;
}

int iam_token_exchange(struct iam *iam, const char *remote, const char *apikey, size_t len,
		       json_t **ret, struct iam_apikey_login *ret_login, unsigned *ret_retry_after,
		       struct sealvm_err *err)
{
	struct iam_apikey_login l;
	struct sealvm_principal p;
	_cleanup_wipe_ char *token = NULL;
	int64_t exp;
	unsigned retry = 60;

	if (iam_token_rate_check(iam, remote, &retry) < 0) {
		if (ret_retry_after)
			*ret_retry_after = retry;
		return sealvm_err_set(err, -EAGAIN, "RATE_LIMITED",
				      "too many token requests from this address; retry in %u s",
				      retry);
	}
	int r = apikey_check(iam, apikey, len, &l, err);
	if (r < 0)
		return r;
	principal_from_login(&l, "apikey", &p);
	const char *sub =
		l.owner_kind == IAM_OWNER_USER && l.owner_email[0] ? l.owner_email : l.owner_id;
	const char *identifier = l.owner_id;
	if (l.owner_kind == IAM_OWNER_USER && strncmp(identifier, "IBMid-", 6) == 0)
		identifier += 6;
	r = iam_token_issue(iam, &p, sub, identifier, l.owner_email, &token, &exp, err);
	if (r < 0)
		return r;
	json_t *o = json_pack("{s:s, s:s, s:s, s:I, s:I, s:s}", "access_token", token,
			      "refresh_token", "not_supported", "token_type", "Bearer",
			      "expires_in", (json_int_t)iam->cfg.token_ttl_s, "expiration",
			      (json_int_t)exp, "scope", "ibm openid");
	if (!o)
		return sealvm_err_set(err, -ENOMEM, NULL, "out of memory");
	if (ret_login)
		*ret_login = l;
	*ret = o;
	return 0;
}

/* ---- bearer verification --------------------------------------------------------------- */

struct lookup_ctx {
	struct iam *iam;
	EVP_PKEY *held; /* the reference handed to jwt_verify, dropped after it returns */
	bool refreshed;
};

static EVP_PKEY *find_key(struct iam_tokens *t, const char *kid)
{
	EVP_PKEY *k = NULL;
	pthread_mutex_lock(&t->keys_lock);
	for (size_t i = 0; i < t->n_keys; i++) {
		if (strcmp(t->keys[i].kid, kid) == 0) {
			if (EVP_PKEY_up_ref(t->keys[i].pkey) == 1)
				k = t->keys[i].pkey;
			break;
		}
	}
	pthread_mutex_unlock(&t->keys_lock);
	return k;
}

static EVP_PKEY *lookup_kid(const char *kid, void *userdata)
{
	struct lookup_ctx *c = userdata;
	struct iam_tokens *t = c->iam->tokens;

	c->held = find_key(t, kid);
	if (c->held)
		return c->held;
	/* Perhaps a key rotated in by another process: re-read, but not at a stranger's pace. */
	pthread_mutex_lock(&t->keys_lock);
	bool may = mono_ns() / 1000000000 - t->refreshed_mono >= KEYS_REFRESH_UNKNOWN_S;
	pthread_mutex_unlock(&t->keys_lock);
	if (!may)
		return NULL;
	struct sealvm_err e = SEALVM_ERR_INIT;
	if (keys_load(c->iam, &e) < 0)
		return NULL;
	c->refreshed = true;
	c->held = find_key(t, kid);
	return c->held;
}

static int bad_claims(struct sealvm_err *err, const char *what)
{
	return sealvm_err_set(err, -EPERM, "TOKEN_MALFORMED", "the bearer token is malformed: %s",
			      what);
}

static const char *claim_str(json_t *claims, const char *name)
{
	json_t *v = json_object_get(claims, name);
	return json_is_string(v) ? json_string_value(v) : NULL;
}

static int claims_to_principal(struct iam *iam, json_t *claims, struct sealvm_principal *ret,
			       struct sealvm_err *err)
{
	struct sealvm_principal p = {0};
	json_t *jexp = json_object_get(claims, "exp");
	json_t *jiat = json_object_get(claims, "iat");
	int64_t now = iam->now(), skew = iam->cfg.clock_skew_s;

	if (!json_is_integer(jexp) || !json_is_integer(jiat))
		return bad_claims(err, "exp and iat must be integers");
	int64_t exp = json_integer_value(jexp), iat = json_integer_value(jiat);
	if (exp <= iat)
		return bad_claims(err, "exp is not after iat");
	if (now > exp + skew)
		return sealvm_err_set(err, -EPERM, "TOKEN_EXPIRED",
				      "the bearer token has expired; get a new one from POST "
				      "/identity/token");
	if (iat > now + skew)
		return sealvm_err_set(
			err, -EPERM, "TOKEN_NOT_YET_VALID",
			"the bearer token was issued in the future; check the clocks");
	const char *iss = claim_str(claims, "iss");
	if (!iss || strcmp(iss, iam->cfg.issuer) != 0)
		return sealvm_err_set(err, -EPERM, "TOKEN_WRONG_ISSUER",
				      "the bearer token was not issued by this server");
	const char *iam_id = claim_str(claims, "iam_id");
	const char *sub_type = claim_str(claims, "sub_type");
	const char *name = claim_str(claims, "name");
	json_t *acct = json_object_get(claims, "account");
	const char *bss = json_is_object(acct) ? claim_str(acct, "bss") : NULL;
	if (!iam_id || !sub_type || !name || !bss)
		return bad_claims(err, "iam_id, sub_type, name and account.bss are required");
	if (!json_is_true(json_object_get(acct, "valid")))
		return sealvm_err_set(err, -EPERM, "TOKEN_ACCOUNT_INVALID",
				      "the bearer token's account is not valid");
	if (strcmp(sub_type, "User") == 0 && strncmp(iam_id, "IBMid-", 6) == 0)
		p.kind = PRINCIPAL_USER;
	else if (strcmp(sub_type, "ServiceId") == 0 && strncmp(iam_id, "iam-ServiceId-", 14) == 0)
		p.kind = PRINCIPAL_SERVICE_ID;
	else
		return bad_claims(err, "sub_type does not match iam_id");
	if (strlen(iam_id) >= sizeof(p.iam_id) || strlen(name) >= sizeof(p.name) ||
	    !iam_account_id_valid(bss))
		return bad_claims(err, "a claim is too long");
	char owner[IAM_IAM_ID_MAX];
	struct sealvm_err e = SEALVM_ERR_INIT;
	int r = iam_account_owner(iam, bss, owner, &e);
	if (r == -ENOENT)
		return sealvm_err_set(err, -EPERM, "TOKEN_ACCOUNT_UNKNOWN",
				      "the bearer token's account does not exist here");
	if (r < 0) {
		*err = e;
		return r;
	}
	snprintf(p.iam_id, sizeof(p.iam_id), "%s", iam_id);
	snprintf(p.account_id, sizeof(p.account_id), "%s", bss);
	snprintf(p.name, sizeof(p.name), "%s", name);
	snprintf(p.credential_type, sizeof(p.credential_type), "token");
	p.expires = exp;
	*ret = p;
	return 0;
}

static struct cache_entry *cache_set(struct iam_tokens *t, const unsigned char d[32],
				     struct cache_shard **ret_shard)
{
	struct cache_shard *s = &t->shards[d[0] % CACHE_SHARDS];
	*ret_shard = s;
	return s->e[d[1] % CACHE_SETS];
}

static bool cache_get(struct iam *iam, const unsigned char d[32], struct sealvm_principal *ret)
{
	struct cache_shard *s;
	struct cache_entry *set = cache_set(iam->tokens, d, &s);
	int64_t now = iam->now();
	bool hit = false;

	pthread_mutex_lock(&s->lock);
	for (unsigned i = 0; i < CACHE_WAYS; i++) {
		if (set[i].until && CRYPTO_memcmp(set[i].digest, d, 32) == 0) {
			if (now <= set[i].until) {
				*ret = set[i].p;
				hit = true;
			} else {
				set[i].until = 0;
			}
			break;
		}
	}
	pthread_mutex_unlock(&s->lock);
	return hit;
}

static void cache_put(struct iam *iam, const unsigned char d[32], const struct sealvm_principal *p,
		      int64_t until)
{
	struct cache_shard *s;
	struct cache_entry *set = cache_set(iam->tokens, d, &s);
	int64_t now = iam->now();
	struct cache_entry *victim = NULL;

	pthread_mutex_lock(&s->lock);
	for (unsigned i = 0; i < CACHE_WAYS; i++) {
		struct cache_entry *c = &set[i];
		if (!c->until || c->until < now || memcmp(c->digest, d, 32) == 0) {
			victim = c;
			break;
		}
		/* Full set: evict the entry that would expire first. */
		if (!victim || c->until < victim->until)
			victim = c;
	}
	memcpy(victim->digest, d, 32);
	victim->until = until;
	victim->p = *p;
	pthread_mutex_unlock(&s->lock);
}

void iam_token_cache_stats(struct iam *iam, uint64_t *ret_hits, uint64_t *ret_misses)
{
	if (ret_hits)
		*ret_hits = atomic_load(&iam->tokens->hits);
	if (ret_misses)
		*ret_misses = atomic_load(&iam->tokens->misses);
}

void iam_token_cache_clear(struct iam *iam)
{
	for (unsigned i = 0; i < CACHE_SHARDS; i++) {
		struct cache_shard *s = &iam->tokens->shards[i];
		pthread_mutex_lock(&s->lock);
		memset(s->e, 0, sizeof(s->e));
		pthread_mutex_unlock(&s->lock);
	}
}

int iam_authenticate_bearer(struct iam *iam, const char *authorization,
			    struct sealvm_principal *ret, struct sealvm_err *err)
{
	unsigned char digest[32];
	struct sealvm_principal p;

	if (!authorization || !authorization[0])
		return sealvm_err_set(err, -EPERM, "TOKEN_MISSING",
				      "no bearer token: send 'Authorization: Bearer TOKEN' (POST "
				      "/identity/token gives one)");
	if (strncasecmp(authorization, "Bearer", 6) != 0 || authorization[6] != ' ')
		return sealvm_err_set(err, -EPERM, "TOKEN_MISSING",
				      "the Authorization header is not 'Bearer TOKEN'");
	const char *token = authorization + 7;
	while (*token == ' ')
		token++;
	size_t len = strnlen(token, SEALVM_JWT_MAX_TOKEN + 1);
	if (len == 0)
		return sealvm_err_set(err, -EPERM, "TOKEN_MISSING",
				      "the Authorization header carries no token");
	if (len > SEALVM_JWT_MAX_TOKEN)
		return sealvm_err_set(err, -EPERM, "TOKEN_MALFORMED",
				      "the bearer token is malformed: longer than %d characters",
				      SEALVM_JWT_MAX_TOKEN);
	if (seal_sha256(token, len, digest) < 0)
		return sealvm_err_set(err, -EIO, "DIGEST_FAILED", "cannot hash the bearer token");
	if (cache_get(iam, digest, &p)) {
		atomic_fetch_add(&iam->tokens->hits, 1);
		*ret = p;
		return 0;
	}
	atomic_fetch_add(&iam->tokens->misses, 1);

	struct lookup_ctx lc = {.iam = iam};
	_cleanup_json_ json_t *claims = NULL;
	int r = jwt_verify(token, lookup_kid, &lc, &claims, err);
	EVP_PKEY_free(lc.held);
	if (r < 0)
		return r;
	r = claims_to_principal(iam, claims, &p, err);
	if (r < 0)
		return r;
	cache_put(iam, digest, &p, p.expires + iam->cfg.clock_skew_s);
	*ret = p;
	return 0;
}

/* ---- lifetime ------------------------------------------------------------------------- */

int iam_tokens_new(struct iam *iam, struct sealvm_err *err)
{
	struct iam_tokens *t = calloc(1, sizeof(*t));
	if (!t)
		return sealvm_err_set(err, -ENOMEM, NULL, "out of memory");
	pthread_mutex_init(&t->keys_lock, NULL);
	pthread_mutex_init(&t->rate_lock, NULL);
	for (unsigned i = 0; i < CACHE_SHARDS; i++)
		pthread_mutex_init(&t->shards[i].lock, NULL);
	if (RAND_bytes((unsigned char *)&t->rate_seed, sizeof(t->rate_seed)) != 1)
		t->rate_seed = (uint64_t)mono_ns();
	iam->tokens = t;
	return 0;
}

void iam_tokens_free(struct iam *iam)
{
	struct iam_tokens *t = iam ? iam->tokens : NULL;
	if (!t)
		return;
	keys_free(t->keys, t->n_keys);
	pthread_mutex_destroy(&t->keys_lock);
	pthread_mutex_destroy(&t->rate_lock);
	for (unsigned i = 0; i < CACHE_SHARDS; i++)
		pthread_mutex_destroy(&t->shards[i].lock);
	OPENSSL_cleanse(t->shards, sizeof(t->shards));
	free(t);
	iam->tokens = NULL;
}

/* ---- signed statements (audit checkpoints) ---------------------------------------------- */

int iam_sign_statement(struct iam *iam, const json_t *claims, char **ret, struct sealvm_err *err)
{
	return iam_token_sign_claims(iam, claims, ret, err);
}

int iam_verify_statement(struct iam *iam, const char *jws, json_t **ret_claims,
			 struct sealvm_err *err)
{
	struct lookup_ctx lc = {.iam = iam};
	int r = jwt_verify(jws, lookup_kid, &lc, ret_claims, err);
	EVP_PKEY_free(lc.held);
	return r;
}
