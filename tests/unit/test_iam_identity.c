// SPDX-License-Identifier: Apache-2.0
/*
 * Unit tests of the identity half of lib/iam: bootstrap, users, service IDs,
 * API keys (stored only as keyed hashes), tokens (exchange, verification,
 * expiry, foreign and tampered tokens, rotation, cache, rate limit), and the
 * HTTP routes through a real server on 127.0.0.1 port 0 driven by libcurl,
 * with the real authorization function and a real audit chain. Every test
 * has its own data dir under $TMPDIR.
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
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <curl/curl.h>
#include <jansson.h>

#include "sealvm/audit.h"
#include "sealvm/b64.h"
#include "sealvm/db.h"
#include "sealvm/http.h"
#include "sealvm/iam.h"
#include "sealvm/log.h"
#include "sealvm/seal.h"

#include "lib/iam/iam_internal.h"

/* ---- fixture ------------------------------------------------------------------------------ */

struct fx {
	char dir[256];
	char dbpath[300];
	struct sealvm_secret *master;
	struct sealvm_secret *chain_key;
	struct sealvm_db *db;
	struct iam *iam;
	char account[40];
	struct sealvm_secret *owner_key;
	struct http_server *srv;
	struct http_service *services;
	uint16_t port;
};

static struct db_migration *all_migrations(size_t *ret_n)
{
	size_t n = iam_identity_n_migrations + iam_access_n_migrations + audit_n_migrations, k = 0;
	struct db_migration *m = calloc(n, sizeof(*m));
	assert_non_null(m);
	for (size_t i = 0; i < iam_identity_n_migrations; i++)
		m[k++] = iam_identity_migrations[i];
	for (size_t i = 0; i < iam_access_n_migrations; i++)
		m[k++] = iam_access_migrations[i];
	for (size_t i = 0; i < audit_n_migrations; i++)
		m[k++] = audit_migrations[i];
	*ret_n = n;
	return m;
}

static void fx_open(struct fx *f, unsigned rate)
{
	struct sealvm_err err = SEALVM_ERR_INIT;
	char mk[300];
	size_t n;
	const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";

	memset(f, 0, sizeof(*f));
	snprintf(f->dir, sizeof(f->dir), "%s/sealvm-iamid-XXXXXX", tmp);
	assert_non_null(mkdtemp(f->dir));
	snprintf(mk, sizeof(mk), "%s/master.key", f->dir);
	snprintf(f->dbpath, sizeof(f->dbpath), "%s/control.db", f->dir);
	assert_int_equal(seal_master_create(mk, &f->master, &err), 0);
	assert_int_equal(seal_derive(f->master, "audit-chain", &f->chain_key), 0);
	struct db_migration *m = all_migrations(&n);
	int r = db_open(f->dbpath, m, n, NULL, &f->db, &err);
	free(m);
	if (r < 0)
		fail_msg("db_open: %s", err.message);
	struct iam_config cfg = {.token_rate_per_min = rate};
	r = iam_new(f->db, f->master, &cfg, &f->iam, &err);
	if (r < 0)
		fail_msg("iam_new: %s", err.message);
}

static void fx_boot(struct fx *f, unsigned rate)
{
	struct sealvm_err err = SEALVM_ERR_INIT;
	fx_open(f, rate);
	int r = iam_bootstrap(f->iam, "Owner", "owner@example.com", &f->owner_key, f->account,
			      &err);
	if (r < 0)
		fail_msg("bootstrap: %s", err.message);
}

static void rm_rf(const char *dir)
{
	char cmd[400];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", dir);
}

static void fx_close(struct fx *f)
{
	http_server_stop(f->srv);
	free(f->services);
	iam_free(f->iam);
	db_close(f->db);
	sealvm_secret_free(f->owner_key);
	sealvm_secret_free(f->chain_key);
	sealvm_secret_free(f->master);
	rm_rf(f->dir);
}

/* A service ID with one API key; the value is returned (free it). */
static struct sealvm_secret *make_sid_key(struct fx *f, struct iam_serviceid *sid,
					  struct iam_apikey *key)
{
	struct sealvm_err err = SEALVM_ERR_INIT;
	struct sealvm_secret *v = NULL;
	assert_int_equal(iam_serviceid_create(f->iam, f->account, "image-importer", "imports", NULL,
					      sid, &err),
			 0);
	assert_int_equal(iam_apikey_create(f->iam, f->account, sid->iam_id, "importer-key", NULL,
					   NULL, NULL, key, &v, &err),
			 0);
	return v;
}

/* Exchanges @key for a token (new string) or returns NULL with *ret_r set. */
static char *exchange(struct fx *f, const struct sealvm_secret *key, const char *remote, int *ret_r,
		      struct sealvm_err *err)
{
	json_t *body = NULL;
	int r = iam_token_exchange(f->iam, remote, (const char *)key->data, key->len, &body, NULL,
				   NULL, err);
	if (ret_r)
		*ret_r = r;
	if (r < 0)
		return NULL;
	char *t = strdup(json_string_value(json_object_get(body, "access_token")));
	json_decref(body);
	return t;
}

static int verify(struct fx *f, const char *token, struct sealvm_principal *p,
		  struct sealvm_err *err)
{
	char *h = NULL;
	assert_true(asprintf(&h, "Bearer %s", token) > 0);
	int r = iam_authenticate_bearer(f->iam, h, p, err);
	free(h);
	return r;
}

/* ---- bootstrap ----------------------------------------------------------------------------- */

static void test_bootstrap_once(void **state)
{
	struct fx f;
	struct sealvm_err err = SEALVM_ERR_INIT;
	struct sealvm_secret *k2 = NULL;
	char acct2[40];

	fx_boot(&f, 0);
	assert_int_equal(strlen(f.account), 32);
	assert_true(iam_account_id_valid(f.account));
	assert_true(f.owner_key->len >= 44);
	assert_int_equal(iam_bootstrap(f.iam, "Other", "o@example.com", &k2, acct2, &err), -EEXIST);
	assert_null(k2);

	/* The owner's key works, and gives a User principal for the owner. */
	struct sealvm_principal p;
	assert_int_equal(iam_authenticate_apikey(f.iam, (const char *)f.owner_key->data,
						 f.owner_key->len, &p, &err),
			 0);
	assert_int_equal(p.kind, PRINCIPAL_USER);
	assert_string_equal(p.account_id, f.account);
	assert_string_equal(p.credential_type, "apikey");
	char owner[IAM_IAM_ID_MAX];
	assert_int_equal(iam_account_owner(f.iam, f.account, owner, &err), 0);
	assert_string_equal(owner, p.iam_id);
	fx_close(&f);
}

/* True when @needle occurs in the file at @path (absent file: false). */
static bool file_contains(const char *path, const void *needle, size_t n)
{
	FILE *fp = fopen(path, "rb");
	if (!fp)
		return false;
	size_t cap = 1 << 20, len = 0;
	char *buf = malloc(cap);
	assert_non_null(buf);
	size_t got;
	while ((got = fread(buf + len, 1, cap - len, fp)) > 0) {
		len += got;
		if (len == cap) {
			cap *= 2;
			buf = realloc(buf, cap);
			assert_non_null(buf);
		}
	}
	fclose(fp);
	bool found = memmem(buf, len, needle, n) != NULL;
	free(buf);
	return found;
}

static void test_apikey_value_once_hash_only(void **state)
{
	struct fx f;
	struct iam_serviceid sid;
	struct iam_apikey key, got;
	struct sealvm_err err = SEALVM_ERR_INIT;
	char wal[320];

	fx_boot(&f, 0);
	struct sealvm_secret *v = make_sid_key(&f, &sid, &key);
	assert_int_equal(v->len, 44);
	assert_true(strncmp(key.id, "ApiKey-", 7) == 0);
	assert_int_equal(iam_apikey_get(f.iam, f.account, key.id, &got, &err), 0);
	assert_string_equal(got.iam_id, sid.iam_id);
	assert_string_equal(got.crn, key.crn);

	/* Neither value is anywhere in the database files, only their keyed hashes. */
	char *tok = exchange(&f, v, "10.0.0.1", NULL, &err);
	assert_non_null(tok);
	iam_free(f.iam);
	f.iam = NULL;
	db_close(f.db);
	f.db = NULL;
	snprintf(wal, sizeof(wal), "%s-wal", f.dbpath);
	assert_false(file_contains(f.dbpath, v->data, v->len));
	assert_false(file_contains(wal, v->data, v->len));
	assert_false(file_contains(f.dbpath, f.owner_key->data, f.owner_key->len));
	assert_false(file_contains(wal, f.owner_key->data, f.owner_key->len));
	assert_false(file_contains(f.dbpath, tok, strlen(tok)));
	/* Nor the signing key in clear: only the sealed blob (its public JWK is public). */
	free(tok);
	sealvm_secret_free(v);
	fx_close(&f);
}

/* ---- tokens ---------------------------------------------------------------------------------- */

static void test_token_roundtrip(void **state)
{
	struct fx f;
	struct iam_serviceid sid;
	struct iam_apikey key;
	struct sealvm_err err = SEALVM_ERR_INIT;
	struct sealvm_principal p;
	json_t *body = NULL;

	fx_boot(&f, 0);
	struct sealvm_secret *v = make_sid_key(&f, &sid, &key);
	assert_int_equal(iam_token_exchange(f.iam, "10.0.0.1", (const char *)v->data, v->len, &body,
					    NULL, NULL, &err),
			 0);
	assert_string_equal(json_string_value(json_object_get(body, "token_type")), "Bearer");
	assert_string_equal(json_string_value(json_object_get(body, "refresh_token")),
			    "not_supported");
	assert_int_equal(json_integer_value(json_object_get(body, "expires_in")), 3600);
	assert_string_equal(json_string_value(json_object_get(body, "scope")), "ibm openid");
	int64_t expiration = json_integer_value(json_object_get(body, "expiration"));
	assert_true(expiration > time(NULL) + 3500);
	const char *tok = json_string_value(json_object_get(body, "access_token"));

	assert_int_equal(verify(&f, tok, &p, &err), 0);
	assert_int_equal(p.kind, PRINCIPAL_SERVICE_ID);
	assert_string_equal(p.iam_id, sid.iam_id);
	assert_string_equal(p.account_id, f.account);
	assert_string_equal(p.name, "image-importer");
	assert_string_equal(p.credential_type, "token");
	assert_int_equal(p.expires, expiration);

	/* The scheme is case-insensitive. */
	char *h = NULL;
	assert_true(asprintf(&h, "bEARER %s", tok) > 0);
	struct sealvm_principal p2;
	assert_int_equal(iam_authenticate_bearer(f.iam, h, &p2, &err), 0);
	free(h);
	/* Missing, empty, other schemes. */
	err = (struct sealvm_err)SEALVM_ERR_INIT;
	assert_int_equal(iam_authenticate_bearer(f.iam, NULL, &p2, &err), -EPERM);
	assert_string_equal(err.reason, "TOKEN_MISSING");
	err = (struct sealvm_err)SEALVM_ERR_INIT;
	assert_int_equal(iam_authenticate_bearer(f.iam, "Basic abc", &p2, &err), -EPERM);
	err = (struct sealvm_err)SEALVM_ERR_INIT;
	assert_int_equal(iam_authenticate_bearer(f.iam, "Bearer ", &p2, &err), -EPERM);
	err = (struct sealvm_err)SEALVM_ERR_INIT;
	assert_int_equal(iam_authenticate_bearer(f.iam, "Bearer a.b.c", &p2, &err), -EPERM);
	assert_string_equal(err.reason, "TOKEN_MALFORMED");

	json_decref(body);
	sealvm_secret_free(v);
	fx_close(&f);
}

static json_t *claims_for(struct fx *f, int64_t iat, int64_t exp)
{
	return json_pack("{s:s, s:s, s:s, s:s, s:{s:b, s:s}, s:I, s:I, s:s}", "iam_id",
			 "iam-ServiceId-00000000-0000-4000-8000-000000000000", "sub_type",
			 "ServiceId", "name", "x", "sub", "ServiceId-x", "account", "valid", 1,
			 "bss", f->account, "iat", (json_int_t)iat, "exp", (json_int_t)exp, "iss",
			 "sealvm");
}

static void test_token_expired(void **state)
{
	struct fx f;
	struct sealvm_err err = SEALVM_ERR_INIT;
	struct sealvm_principal p;
	char *tok = NULL;
	int64_t now = time(NULL);

	fx_boot(&f, 0);
	/* Expired beyond the skew. */
	json_t *c = claims_for(&f, now - 7200, now - 3600);
	assert_int_equal(iam_token_sign_claims(f.iam, c, &tok, &err), 0);
	json_decref(c);
	assert_int_equal(verify(&f, tok, &p, &err), -EPERM);
	assert_string_equal(err.reason, "TOKEN_EXPIRED");
	free(tok);
	/* Expired, but within the clock skew (60 s): accepted. */
	c = claims_for(&f, now - 3630, now - 30);
	assert_int_equal(iam_token_sign_claims(f.iam, c, &tok, &err), 0);
	json_decref(c);
	err = (struct sealvm_err)SEALVM_ERR_INIT;
	assert_int_equal(verify(&f, tok, &p, &err), 0);
	free(tok);
	/* Issued in the future. */
	c = claims_for(&f, now + 600, now + 4200);
	assert_int_equal(iam_token_sign_claims(f.iam, c, &tok, &err), 0);
	json_decref(c);
	err = (struct sealvm_err)SEALVM_ERR_INIT;
	assert_int_equal(verify(&f, tok, &p, &err), -EPERM);
	assert_string_equal(err.reason, "TOKEN_NOT_YET_VALID");
	free(tok);
	/* Another issuer. */
	c = claims_for(&f, now, now + 600);
	json_object_set_new(c, "iss", json_string("https://iam.cloud.ibm.com/identity"));
	assert_int_equal(iam_token_sign_claims(f.iam, c, &tok, &err), 0);
	json_decref(c);
	err = (struct sealvm_err)SEALVM_ERR_INIT;
	assert_int_equal(verify(&f, tok, &p, &err), -EPERM);
	assert_string_equal(err.reason, "TOKEN_WRONG_ISSUER");
	free(tok);
	/* An account that does not exist here. */
	c = claims_for(&f, now, now + 600);
	json_object_set_new(json_object_get(c, "account"), "bss",
			    json_string("0123456789abcdef0123456789abcdef"));
	assert_int_equal(iam_token_sign_claims(f.iam, c, &tok, &err), 0);
	json_decref(c);
	err = (struct sealvm_err)SEALVM_ERR_INIT;
	assert_int_equal(verify(&f, tok, &p, &err), -EPERM);
	assert_string_equal(err.reason, "TOKEN_ACCOUNT_UNKNOWN");
	free(tok);
	/* sub_type that does not match iam_id. */
	c = claims_for(&f, now, now + 600);
	json_object_set_new(c, "sub_type", json_string("User"));
	assert_int_equal(iam_token_sign_claims(f.iam, c, &tok, &err), 0);
	json_decref(c);
	err = (struct sealvm_err)SEALVM_ERR_INIT;
	assert_int_equal(verify(&f, tok, &p, &err), -EPERM);
	assert_string_equal(err.reason, "TOKEN_MALFORMED");
	free(tok);
	fx_close(&f);
}

static void test_token_other_deployment(void **state)
{
	struct fx a, b;
	struct sealvm_err err = SEALVM_ERR_INIT;
	struct sealvm_principal p;

	fx_boot(&a, 0);
	fx_boot(&b, 0);
	char *tok = exchange(&b, b.owner_key, "10.0.0.1", NULL, &err);
	assert_non_null(tok);
	assert_int_equal(verify(&b, tok, &p, &err), 0);
	err = (struct sealvm_err)SEALVM_ERR_INIT;
	assert_int_equal(verify(&a, tok, &p, &err), -EPERM);
	assert_string_equal(err.reason, "TOKEN_UNKNOWN_KEY");
	/* Nor does the other deployment's API key work here. */
	err = (struct sealvm_err)SEALVM_ERR_INIT;
	int r;
	assert_null(exchange(&a, b.owner_key, "10.0.0.1", &r, &err));
	assert_int_equal(r, -EINVAL);
	assert_string_equal(err.reason, "APIKEY_NOT_FOUND");
	free(tok);
	fx_close(&a);
	fx_close(&b);
}

static void test_token_tampered(void **state)
{
	struct fx f;
	struct sealvm_err err = SEALVM_ERR_INIT;
	struct sealvm_principal p;

	fx_boot(&f, 0);
	char *tok = exchange(&f, f.owner_key, "10.0.0.1", NULL, &err);
	assert_non_null(tok);
	size_t n = strlen(tok);
	char *dot1 = strchr(tok, '.'), *dot2 = strrchr(tok, '.');
	size_t where[] = {(size_t)(dot1 - tok) + 5, (size_t)(dot2 - tok) - 3,
			  (size_t)(dot2 - tok) + 10, n - 2};
	for (size_t i = 0; i < ELEMENTSOF(where); i++) {
		char *t = strdup(tok);
		t[where[i]] = t[where[i]] == 'A' ? 'B' : 'A';
		err = (struct sealvm_err)SEALVM_ERR_INIT;
		assert_int_equal(verify(&f, t, &p, &err), -EPERM);
		/* The message never carries any part of the token. */
		assert_null(strstr(err.message, "eyJ"));
		free(t);
	}
	/* Trailing garbage after the token. */
	char *t2 = NULL;
	assert_true(asprintf(&t2, "%s ", tok) > 0);
	err = (struct sealvm_err)SEALVM_ERR_INIT;
	assert_int_equal(verify(&f, t2, &p, &err), -EPERM);
	free(t2);
	free(tok);
	fx_close(&f);
}

static void test_locked_apikey_no_token(void **state)
{
	struct fx f;
	struct iam_serviceid sid;
	struct iam_apikey key;
	struct sealvm_err err = SEALVM_ERR_INIT;
	int r;

	fx_boot(&f, 0);
	struct sealvm_secret *v = make_sid_key(&f, &sid, &key);
	assert_int_equal(iam_apikey_set_locked(f.iam, f.account, key.id, true, NULL, NULL, &err),
			 0);
	assert_null(exchange(&f, v, "10.0.0.1", &r, &err));
	assert_int_equal(r, -EINVAL);
	assert_string_equal(err.reason, "APIKEY_NOT_FOUND");
	/* A locked key can be neither deleted nor updated. */
	err = (struct sealvm_err)SEALVM_ERR_INIT;
	assert_int_equal(iam_apikey_delete(f.iam, f.account, key.id, NULL, &err), -EEXIST);
	err = (struct sealvm_err)SEALVM_ERR_INIT;
	assert_int_equal(
		iam_apikey_update(f.iam, f.account, key.id, NULL, "n", NULL, NULL, NULL, &err),
		-EEXIST);
	/* Unlocked: tokens again. */
	err = (struct sealvm_err)SEALVM_ERR_INIT;
	assert_int_equal(iam_apikey_set_locked(f.iam, f.account, key.id, false, NULL, NULL, &err),
			 0);
	char *tok = exchange(&f, v, "10.0.0.1", NULL, &err);
	assert_non_null(tok);
	free(tok);
	/* A locked service ID: its keys give no token. */
	assert_int_equal(iam_serviceid_set_locked(f.iam, f.account, sid.id, true, NULL, NULL, &err),
			 0);
	err = (struct sealvm_err)SEALVM_ERR_INIT;
	assert_null(exchange(&f, v, "10.0.0.1", &r, &err));
	assert_string_equal(err.reason, "APIKEY_NOT_FOUND");
	struct sealvm_principal p;
	err = (struct sealvm_err)SEALVM_ERR_INIT;
	assert_int_equal(iam_authenticate_apikey(f.iam, (const char *)v->data, v->len, &p, &err),
			 -EPERM);
	sealvm_secret_free(v);
	fx_close(&f);
}

static void test_deleted_apikey(void **state)
{
	struct fx f;
	struct iam_serviceid sid;
	struct iam_apikey key;
	struct sealvm_err err = SEALVM_ERR_INIT;
	struct sealvm_principal p;
	int r;

	fx_boot(&f, 0);
	struct sealvm_secret *v = make_sid_key(&f, &sid, &key);
	char *tok = exchange(&f, v, "10.0.0.1", NULL, &err);
	assert_non_null(tok);
	assert_int_equal(iam_apikey_delete(f.iam, f.account, key.id, NULL, &err), 0);
	assert_int_equal(iam_apikey_get(f.iam, f.account, key.id, &key, &err), -ENOENT);
	err = (struct sealvm_err)SEALVM_ERR_INIT;
	assert_null(exchange(&f, v, "10.0.0.1", &r, &err));
	assert_string_equal(err.reason, "APIKEY_NOT_FOUND");
	/* A token issued before lives until it expires, as IBM's do (not only from the cache). */
	iam_token_cache_clear(f.iam);
	err = (struct sealvm_err)SEALVM_ERR_INIT;
	assert_int_equal(verify(&f, tok, &p, &err), 0);
	assert_string_equal(p.iam_id, sid.iam_id);
	free(tok);
	sealvm_secret_free(v);
	fx_close(&f);
}

static void test_serviceid_lock_delete(void **state)
{
	struct fx f;
	struct iam_serviceid sid, got;
	struct iam_apikey key, key2;
	struct sealvm_err err = SEALVM_ERR_INIT;
	struct sealvm_secret *v2 = NULL;

	fx_boot(&f, 0);
	struct sealvm_secret *v = make_sid_key(&f, &sid, &key);
	assert_int_equal(iam_apikey_create(f.iam, f.account, sid.iam_id, "second", "d", NULL, NULL,
					   &key2, &v2, &err),
			 0);
	assert_int_equal(iam_serviceid_set_locked(f.iam, f.account, sid.id, true, NULL, &got, &err),
			 0);
	assert_true(got.locked);
	err = (struct sealvm_err)SEALVM_ERR_INIT;
	assert_int_equal(iam_serviceid_delete(f.iam, f.account, sid.id, NULL, &err), -EEXIST);
	assert_string_equal(err.reason, "LOCKED");
	err = (struct sealvm_err)SEALVM_ERR_INIT;
	assert_int_equal(iam_serviceid_update(f.iam, f.account, sid.id, NULL, "renamed", NULL, NULL,
					      NULL, &err),
			 -EEXIST);
	assert_int_equal(iam_serviceid_get(f.iam, f.account, sid.id, &got, &err), 0);
	assert_string_equal(got.name, "image-importer");

	/* Unlock, rename with the right entity tag, refuse a stale one. */
	assert_int_equal(
		iam_serviceid_set_locked(f.iam, f.account, sid.id, false, NULL, &got, &err), 0);
	char tag[24];
	snprintf(tag, sizeof(tag), "%lld", (long long)got.version);
	assert_int_equal(iam_serviceid_update(f.iam, f.account, sid.id, tag, "renamed", NULL, NULL,
					      &got, &err),
			 0);
	assert_string_equal(got.name, "renamed");
	err = (struct sealvm_err)SEALVM_ERR_INIT;
	assert_int_equal(iam_serviceid_update(f.iam, f.account, sid.id, tag, "again", NULL, NULL,
					      NULL, &err),
			 -EEXIST);
	assert_string_equal(err.reason, "ENTITY_TAG_MISMATCH");

	/* Deleting the service ID deletes its keys. */
	assert_int_equal(iam_serviceid_delete(f.iam, f.account, sid.id, NULL, &err), 0);
	assert_int_equal(iam_serviceid_get(f.iam, f.account, sid.id, &got, &err), -ENOENT);
	err = (struct sealvm_err)SEALVM_ERR_INIT;
	assert_int_equal(iam_apikey_get(f.iam, f.account, key.id, &key, &err), -ENOENT);
	err = (struct sealvm_err)SEALVM_ERR_INIT;
	assert_int_equal(iam_apikey_get(f.iam, f.account, key2.id, &key2, &err), -ENOENT);
	int r;
	assert_null(exchange(&f, v2, "10.0.0.1", &r, &err));
	sealvm_secret_free(v);
	sealvm_secret_free(v2);
	fx_close(&f);
}

static void test_cross_account_and_validation(void **state)
{
	struct fx f;
	struct iam_serviceid sid, got;
	struct iam_apikey key;
	struct sealvm_err err = SEALVM_ERR_INIT;
	char longname[IAM_NAME_MAX + 2], longdesc[IAM_DESCRIPTION_MAX + 2];
	const char *other = "0123456789abcdef0123456789abcdef";

	fx_boot(&f, 0);
	struct sealvm_secret *v = make_sid_key(&f, &sid, &key);
	/* Another account sees nothing: the same answer as for a missing id. */
	assert_int_equal(iam_serviceid_get(f.iam, other, sid.id, &got, &err), -ENOENT);
	assert_int_equal(iam_apikey_get(f.iam, other, key.id, &key, &err), -ENOENT);
	assert_int_equal(iam_serviceid_delete(f.iam, other, sid.id, NULL, &err), -ENOENT);
	assert_int_equal(iam_serviceid_get(f.iam, f.account, sid.id, &got, &err), 0);
	/* Keys for an owner of another account, or for no one. */
	struct sealvm_secret *v2 = NULL;
	err = (struct sealvm_err)SEALVM_ERR_INIT;
	assert_int_equal(
		iam_apikey_create(f.iam, other, sid.iam_id, "k", NULL, NULL, NULL, NULL, &v2, &err),
		-ENOENT);
	err = (struct sealvm_err)SEALVM_ERR_INIT;
	assert_int_equal(iam_apikey_create(f.iam, f.account, "iam-ServiceId-nope", "k", NULL, NULL,
					   NULL, NULL, &v2, &err),
			 -ENOENT);
	err = (struct sealvm_err)SEALVM_ERR_INIT;
	assert_int_equal(iam_apikey_create(f.iam, f.account, "someone", "k", NULL, NULL, NULL, NULL,
					   &v2, &err),
			 -EINVAL);
	assert_null(v2);
	/* Names and descriptions. */
	memset(longname, 'n', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	memset(longdesc, 'd', sizeof(longdesc) - 1);
	longdesc[sizeof(longdesc) - 1] = '\0';
	err = (struct sealvm_err)SEALVM_ERR_INIT;
	assert_int_equal(iam_serviceid_create(f.iam, f.account, longname, NULL, NULL, NULL, &err),
			 -EINVAL);
	longname[IAM_NAME_MAX] = '\0';
	assert_int_equal(iam_serviceid_create(f.iam, f.account, longname, NULL, NULL, NULL, &err),
			 0);
	err = (struct sealvm_err)SEALVM_ERR_INIT;
	assert_int_equal(iam_serviceid_create(f.iam, f.account, "x", longdesc, NULL, NULL, &err),
			 -EINVAL);
	err = (struct sealvm_err)SEALVM_ERR_INIT;
	assert_int_equal(iam_serviceid_create(f.iam, f.account, "", NULL, NULL, NULL, &err),
			 -EINVAL);
	err = (struct sealvm_err)SEALVM_ERR_INIT;
	assert_int_equal(iam_serviceid_create(f.iam, f.account, "a\nb", NULL, NULL, NULL, &err),
			 -EINVAL);
	err = (struct sealvm_err)SEALVM_ERR_INIT;
	assert_int_equal(
		iam_serviceid_create(f.iam, f.account, "bad \xc3\x28", NULL, NULL, NULL, &err),
		-EINVAL);
	/* Service ID names are not unique (as at IBM). */
	assert_int_equal(
		iam_serviceid_create(f.iam, f.account, "image-importer", NULL, NULL, NULL, &err),
		0);
	/* Users: e-mail unique per account; the owner cannot be deleted. */
	struct iam_user u;
	assert_int_equal(
		iam_user_create(f.iam, f.account, "Ann", "ann@example.com", NULL, &u, &err), 0);
	assert_true(strncmp(u.iam_id, "IBMid-", 6) == 0);
	err = (struct sealvm_err)SEALVM_ERR_INIT;
	assert_int_equal(
		iam_user_create(f.iam, f.account, "Ann2", "ann@example.com", NULL, NULL, &err),
		-EEXIST);
	err = (struct sealvm_err)SEALVM_ERR_INIT;
	assert_int_equal(iam_user_create(f.iam, f.account, "Bob", "not-an-email", NULL, NULL, &err),
			 -EINVAL);
	char owner[IAM_IAM_ID_MAX];
	assert_int_equal(iam_account_owner(f.iam, f.account, owner, &err), 0);
	err = (struct sealvm_err)SEALVM_ERR_INIT;
	assert_int_equal(iam_user_delete(f.iam, f.account, owner, NULL, &err), -EEXIST);
	/* A user's key is made by that user only; deleting the user deletes it. */
	err = (struct sealvm_err)SEALVM_ERR_INIT;
	assert_int_equal(iam_apikey_create(f.iam, f.account, u.iam_id, "k", NULL, owner, NULL, NULL,
					   &v2, &err),
			 -EACCES);
	assert_int_equal(iam_apikey_create(f.iam, f.account, u.iam_id, "k", NULL, u.iam_id, NULL,
					   &key, &v2, &err),
			 0);
	assert_int_equal(iam_user_delete(f.iam, f.account, u.iam_id, NULL, &err), 0);
	assert_int_equal(iam_apikey_get(f.iam, f.account, key.id, &key, &err), -ENOENT);
	sealvm_secret_free(v2);
	sealvm_secret_free(v);
	fx_close(&f);
}

static void test_rotation(void **state)
{
	struct fx f;
	struct sealvm_err err = SEALVM_ERR_INIT;
	struct sealvm_principal p;
	char kid[64];
	json_t *jwks = NULL;

	fx_boot(&f, 0);
	char *t1 = exchange(&f, f.owner_key, "10.0.0.1", NULL, &err);
	assert_non_null(t1);
	assert_int_equal(iam_tokens_jwks(f.iam, &jwks, &err), 0);
	assert_int_equal(json_array_size(json_object_get(jwks, "keys")), 1);
	const char *kid1 = json_string_value(
		json_object_get(json_array_get(json_object_get(jwks, "keys"), 0), "kid"));
	char old_kid[64];
	snprintf(old_kid, sizeof(old_kid), "%s", kid1);
	json_decref(jwks);

	assert_int_equal(iam_rotate_signing_key(f.iam, kid, &err), 0);
	assert_string_not_equal(kid, old_kid);
	char *t2 = exchange(&f, f.owner_key, "10.0.0.1", NULL, &err);
	assert_non_null(t2);
	/* The new token names the new kid in its header. */
	char *dot = strchr(t2, '.');
	char hdr[256];
	long n = sealvm_b64_decode(t2, (size_t)(dot - t2), hdr, true);
	assert_true(n > 0);
	hdr[n] = '\0';
	assert_non_null(strstr(hdr, kid));
	iam_token_cache_clear(f.iam);
	assert_int_equal(verify(&f, t1, &p, &err), 0);
	assert_int_equal(verify(&f, t2, &p, &err), 0);
	assert_int_equal(iam_tokens_jwks(f.iam, &jwks, &err), 0);
	assert_int_equal(json_array_size(json_object_get(jwks, "keys")), 2);
	json_decref(jwks);

	/* A restart loads both keys from the store. */
	iam_free(f.iam);
	struct iam_config cfg = {0};
	assert_int_equal(iam_new(f.db, f.master, &cfg, &f.iam, &err), 0);
	assert_int_equal(verify(&f, t1, &p, &err), 0);
	assert_int_equal(verify(&f, t2, &p, &err), 0);
	free(t1);
	free(t2);
	fx_close(&f);
}

static void test_rate_limit(void **state)
{
	struct fx f;
	struct sealvm_err err = SEALVM_ERR_INIT;
	int r;

	fx_boot(&f, 5);
	for (int i = 0; i < 5; i++) {
		char *t = exchange(&f, f.owner_key, "192.0.2.7", &r, &err);
		assert_non_null(t);
		free(t);
	}
	assert_null(exchange(&f, f.owner_key, "192.0.2.7", &r, &err));
	assert_int_equal(r, -EAGAIN);
	assert_string_equal(err.reason, "RATE_LIMITED");
	/* Another address has its own bucket. */
	err = (struct sealvm_err)SEALVM_ERR_INIT;
	char *t = exchange(&f, f.owner_key, "192.0.2.8", &r, &err);
	assert_non_null(t);
	free(t);
	/* Bad keys count too: a guesser is slowed like anyone. */
	unsigned retry = 0;
	for (int i = 0; i < 5; i++)
		(void)iam_token_rate_check(f.iam, "198.51.100.1", &retry);
	assert_int_equal(iam_token_rate_check(f.iam, "198.51.100.1", &retry), -EAGAIN);
	assert_true(retry >= 1 && retry <= 13);
	fx_close(&f);
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void test_cache(void **state)
{
	struct fx f;
	struct sealvm_err err = SEALVM_ERR_INIT;
	struct sealvm_principal p1, p2;
	uint64_t h0, m0, h1, m1;

	fx_boot(&f, 100000);
	char *t = exchange(&f, f.owner_key, "10.0.0.1", NULL, &err);
	assert_non_null(t);
	char *h = NULL;
	assert_true(asprintf(&h, "Bearer %s", t) > 0);
	iam_token_cache_stats(f.iam, &h0, &m0);
	assert_int_equal(iam_authenticate_bearer(f.iam, h, &p1, &err), 0);
	assert_int_equal(iam_authenticate_bearer(f.iam, h, &p2, &err), 0);
	iam_token_cache_stats(f.iam, &h1, &m1);
	assert_int_equal(m1 - m0, 1);
	assert_int_equal(h1 - h0, 1);
	assert_memory_equal(&p1, &p2, sizeof(p1));

	/* Throughput with and without the cache (printed for the record, not asserted). */
	unsigned n_hit = 200000, n_miss = 2000;
	double t0 = now_s();
	for (unsigned i = 0; i < n_hit; i++)
		assert_int_equal(iam_authenticate_bearer(f.iam, h, &p2, &err), 0);
	double t1 = now_s();
	/* Distinct tokens, made beforehand: each verification is a miss (signature checked). */
	char **hs = calloc(n_miss, sizeof(*hs));
	assert_non_null(hs);
	for (unsigned i = 0; i < n_miss; i++) {
		char *ti = exchange(&f, f.owner_key, "10.0.0.1", NULL, &err);
		assert_non_null(ti);
		assert_true(asprintf(&hs[i], "Bearer %s", ti) > 0);
		free(ti);
	}
	iam_token_cache_stats(f.iam, &h0, &m0);
	t1 = now_s();
	for (unsigned i = 0; i < n_miss; i++)
		assert_int_equal(iam_authenticate_bearer(f.iam, hs[i], &p2, &err), 0);
	double t2 = now_s();
	iam_token_cache_stats(f.iam, &h1, &m1);
	assert_int_equal(m1 - m0, n_miss);
	for (unsigned i = 0; i < n_miss; i++)
		free(hs[i]);
	free(hs);
	printf("# token verify: %.0f ops/s cached, %.0f ops/s uncached (one thread)\n",
	       n_hit / (t1 - t0), n_miss / (t2 - t1));
	free(h);
	free(t);
	fx_close(&f);
}

/* ---- HTTP: the routes through a real server -------------------------------------------------- */

static int hook_authenticate(struct http_request *req, struct sealvm_principal *p, void *ctx,
			     struct sealvm_err *err)
{
	struct fx *f = ctx;
	return iam_authenticate_bearer(f->iam, http_request_header(req, "authorization"), p, err);
}

static int hook_authorize(const struct sealvm_principal *p, const char *action,
			  const struct http_target *target, void *ctx, struct sealvm_err *err)
{
	struct fx *f = ctx;
	return iam_authorize(f->iam, p, action, target, err);
}

static void event_from(struct http_request *req, int status, const struct sealvm_err *failure,
		       struct audit_event *ev)
{
	const struct http_route *route = http_request_route(req);
	const struct sealvm_principal *p = http_request_principal(req);
	const struct http_target *t = http_request_target(req);
	memset(ev, 0, sizeof(*ev));
	ev->action = route && route->audit_action ? route->audit_action : "test.unrouted";
	ev->outcome = status < 400 ? AUDIT_SUCCESS : AUDIT_FAILURE;
	ev->status = status;
	ev->failure =
		status >= 400 && failure && sealvm_err_isset(failure) ? failure->message : NULL;
	ev->initiator = p && p->kind != PRINCIPAL_NONE ? p : NULL;
	ev->host_address = http_request_remote(req);
	ev->target_id = t && t->crn[0] ? t->crn : NULL;
	ev->target_name = t && t->name[0] ? t->name : NULL;
	ev->account_id = t && t->account_id[0] ? t->account_id : NULL;
	ev->correlation_id = http_request_id(req);
	ev->request_data = http_request_audit_request_data(req);
	ev->response_data = http_request_audit_response_data(req);
}

struct audit_job {
	struct fx *f;
	struct audit_event ev;
};

static int audit_job_run(sqlite3 *conn, void *userdata, struct sealvm_err *err)
{
	struct audit_job *j = userdata;
	return audit_append(conn, &j->ev, j->f->chain_key->data, NULL, err);
}

static int hook_audit(struct http_request *req, int status, const struct sealvm_err *failure,
		      void *ctx, struct sealvm_err *err)
{
	struct audit_job j = {.f = ctx};
	event_from(req, status, failure, &j.ev);
	return db_write(j.f->db, audit_job_run, &j, err);
}

static int hook_audit_in_job(struct http_request *req, struct sqlite3 *conn, int status, void *ctx,
			     struct sealvm_err *err)
{
	struct fx *f = ctx;
	struct audit_event ev;
	event_from(req, status, NULL, &ev);
	return audit_append(conn, &ev, f->chain_key->data, NULL, err);
}

static void fx_serve(struct fx *f)
{
	struct sealvm_err err = SEALVM_ERR_INIT;
	struct http_service *services = calloc(2, sizeof(*services));
	assert_non_null(services);
	services[0] = *iam_identity_http(f->iam);
	services[1] = *iam_access_http(f->iam);
	f->services = services;
	struct http_server_config cfg = {
		.listen = "127.0.0.1:0",
		.limits = {.threads = 4},
		.services = services,
		.n_services = 2,
		.hooks = {hook_authenticate, hook_authorize, hook_audit, hook_audit_in_job, f},
	};
	if (http_server_start(&cfg, &f->srv, &err) < 0)
		fail_msg("server: %s", err.message);
	f->port = http_server_port(f->srv);
}

struct reply {
	long status;
	char body[32768];
	size_t len;
	char retry_after[32];
	char etag[64];
};

static size_t on_body(char *p, size_t sz, size_t n, void *ud)
{
	struct reply *r = ud;
	size_t k = sz * n;
	if (r->len + k >= sizeof(r->body))
		return 0;
	memcpy(r->body + r->len, p, k);
	r->len += k;
	r->body[r->len] = '\0';
	return k;
}

static size_t on_header(char *p, size_t sz, size_t n, void *ud)
{
	struct reply *r = ud;
	size_t k = sz * n;
	if (k > 13 && strncasecmp(p, "Retry-After: ", 13) == 0)
		snprintf(r->retry_after, sizeof(r->retry_after), "%.*s", (int)(k - 15), p + 13);
	if (k > 6 && strncasecmp(p, "ETag: ", 6) == 0)
		snprintf(r->etag, sizeof(r->etag), "%.*s", (int)(k - 8), p + 6);
	return k;
}

/* One request; @token NULL: none; @form: a form body, else JSON. Returns the parsed body or NULL.
 */
static json_t *call(struct fx *f, const char *method, const char *path, const char *token,
		    const char *body, bool form, struct reply *r)
{
	char url[512], auth[9000];
	struct curl_slist *hl = NULL;
	CURL *c = curl_easy_init();
	assert_non_null(c);
	memset(r, 0, sizeof(*r));
	snprintf(url, sizeof(url), "http://127.0.0.1:%u%s", f->port, path);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
	if (token) {
		snprintf(auth, sizeof(auth), "Authorization: Bearer %s", token);
		hl = curl_slist_append(hl, auth);
	}
	if (body) {
		hl = curl_slist_append(hl, form ? "Content-Type: application/x-www-form-urlencoded"
						: "Content-Type: application/json");
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(body));
	}
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
	CURLcode rc = curl_easy_perform(c);
	assert_int_equal(rc, CURLE_OK);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
	curl_slist_free_all(hl);
	curl_easy_cleanup(c);
	return r->len ? json_loads(r->body, 0, NULL) : NULL;
}

static char *http_token(struct fx *f, const struct sealvm_secret *key)
{
	char form[256];
	struct reply r;
	snprintf(form, sizeof(form),
		 "grant_type=urn%%3Aibm%%3Aparams%%3Aoauth%%3Agrant-type%%3Aapikey&apikey=%.*s",
		 (int)key->len, (const char *)key->data);
	json_t *j = call(f, "POST", "/identity/token", NULL, form, true, &r);
	assert_int_equal(r.status, 200);
	char *t = strdup(json_string_value(json_object_get(j, "access_token")));
	json_decref(j);
	return t;
}

static int64_t count_events(struct fx *f, const char *action)
{
	sqlite3 *conn = db_read_begin(f->db);
	sqlite3_stmt *st = NULL;
	int64_t n = -1;
	if (sqlite3_prepare_v2(conn,
			       "SELECT count(*) FROM audit_events WHERE ?1 IS NULL OR action = ?1",
			       -1, &st, NULL) == SQLITE_OK) {
		sqlite3_bind_text(st, 1, action, -1, SQLITE_STATIC);
		if (sqlite3_step(st) == SQLITE_ROW)
			n = sqlite3_column_int64(st, 0);
	}
	sqlite3_finalize(st);
	db_read_end(f->db, conn);
	return n;
}

static int64_t count_rows(struct fx *f, const char *table)
{
	char sql[128];
	sqlite3 *conn = db_read_begin(f->db);
	sqlite3_stmt *st = NULL;
	int64_t n = -1;
	snprintf(sql, sizeof(sql), "SELECT count(*) FROM %s", table);
	if (sqlite3_prepare_v2(conn, sql, -1, &st, NULL) == SQLITE_OK &&
	    sqlite3_step(st) == SQLITE_ROW)
		n = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	db_read_end(f->db, conn);
	return n;
}

static void test_http_routes(void **state)
{
	struct fx f;
	struct reply r;
	char path[256], body[512];

	fx_boot(&f, 0);
	fx_serve(&f);
	char *tok = http_token(&f, f.owner_key);

	/* Token errors in IBM's shape. */
	json_t *j = call(
		&f, "POST", "/identity/token", NULL,
		"grant_type=urn%3Aibm%3Aparams%3Aoauth%3Agrant-type%3Aapikey&apikey=nopenopenopenopenope",
		true, &r);
	assert_int_equal(r.status, 400);
	assert_string_equal(json_string_value(json_object_get(j, "errorCode")), "BXNIM0415E");
	assert_non_null(json_object_get(json_object_get(j, "context"), "requestId"));
	json_decref(j);
	j = call(&f, "POST", "/identity/token", NULL, "apikey=x", true, &r);
	assert_int_equal(r.status, 400);
	assert_string_equal(json_string_value(json_object_get(j, "errorCode")), "BXNIM0109E");
	json_decref(j);
	j = call(&f, "POST", "/identity/token", NULL, "grant_type=password&apikey=x", true, &r);
	assert_int_equal(r.status, 400);
	json_decref(j);

	/* Keys are public. */
	j = call(&f, "GET", "/identity/keys", NULL, NULL, false, &r);
	assert_int_equal(r.status, 200);
	assert_int_equal(json_array_size(json_object_get(j, "keys")), 1);
	json_decref(j);

	/* No token, bad token. */
	j = call(&f, "GET", "/v1/serviceids", NULL, NULL, false, &r);
	assert_int_equal(r.status, 401);
	json_decref(j);
	j = call(&f, "GET", "/v1/serviceids", "abc.def.ghi", NULL, false, &r);
	assert_int_equal(r.status, 401);
	json_decref(j);

	/* Service IDs. */
	int64_t ev0 = count_events(&f, NULL);
	j = call(&f, "POST", "/v1/serviceids", tok,
		 "{\"name\":\"importer\",\"description\":\"reads images\",\"extra\":1}", false, &r);
	assert_int_equal(r.status, 201);
	assert_int_equal(count_events(&f, NULL), ev0 + 1);
	assert_int_equal(count_events(&f, "iam-identity.account-serviceid.create"), 1);
	char sid[64], sid_iam[96];
	snprintf(sid, sizeof(sid), "%s", json_string_value(json_object_get(j, "id")));
	snprintf(sid_iam, sizeof(sid_iam), "%s", json_string_value(json_object_get(j, "iam_id")));
	assert_string_equal(json_string_value(json_object_get(j, "account_id")), f.account);
	assert_true(strncmp(json_string_value(json_object_get(j, "crn")),
			    "crn:v1:sealvm:local:iam-identity::a/", 36) == 0);
	assert_true(json_is_false(json_object_get(j, "locked")));
	json_decref(j);

	j = call(&f, "POST", "/v1/serviceids", tok, "{\"name\":7}", false, &r);
	assert_int_equal(r.status, 400);
	assert_non_null(strstr(json_string_value(json_object_get(j, "errorMessage")), "'name'"));
	json_decref(j);
	j = call(&f, "POST", "/v1/serviceids", tok,
		 "{\"name\":\"x\",\"account_id\":\"0123456789abcdef0123456789abcdef\"}", false, &r);
	assert_int_equal(r.status, 403);
	json_decref(j);

	j = call(&f, "GET", "/v1/serviceids?pagesize=1", tok, NULL, false, &r);
	assert_int_equal(r.status, 200);
	assert_int_equal(json_array_size(json_object_get(j, "serviceids")), 1);
	json_decref(j);

	snprintf(path, sizeof(path), "/v1/serviceids/%s", sid);
	j = call(&f, "GET", path, tok, NULL, false, &r);
	assert_int_equal(r.status, 200);
	assert_string_equal(r.etag, "\"1\"");
	json_decref(j);
	j = call(&f, "GET", "/v1/serviceids/ServiceId-00000000-0000-4000-8000-000000000000", tok,
		 NULL, false, &r);
	assert_int_equal(r.status, 404);
	json_decref(j);
	j = call(&f, "PUT", path, tok, "{\"name\":\"importer2\"}", false, &r);
	assert_int_equal(r.status, 200);
	assert_string_equal(json_string_value(json_object_get(j, "name")), "importer2");
	json_decref(j);

	/* API key for the service ID: the value in the creation response only. */
	snprintf(body, sizeof(body), "{\"name\":\"k1\",\"iam_id\":\"%s\"}", sid_iam);
	j = call(&f, "POST", "/v1/apikeys", tok, body, false, &r);
	assert_int_equal(r.status, 201);
	const char *value = json_string_value(json_object_get(j, "apikey"));
	assert_non_null(value);
	struct sealvm_secret *v = NULL;
	assert_int_equal(sealvm_secret_from(value, strlen(value), &v), 0);
	char kid_[64];
	snprintf(kid_, sizeof(kid_), "%s", json_string_value(json_object_get(j, "id")));
	json_decref(j);
	snprintf(path, sizeof(path), "/v1/apikeys/%s", kid_);
	j = call(&f, "GET", path, tok, NULL, false, &r);
	assert_int_equal(r.status, 200);
	assert_null(json_object_get(j, "apikey"));
	assert_null(strstr(r.body, (const char *)v->data));
	json_decref(j);
	snprintf(path, sizeof(path), "/v1/apikeys?iam_id=%s", sid_iam);
	j = call(&f, "GET", path, tok, NULL, false, &r);
	assert_int_equal(r.status, 200);
	assert_int_equal(json_array_size(json_object_get(j, "apikeys")), 1);
	json_decref(j);
	j = call(&f, "POST", "/v1/apikeys", tok,
		 "{\"name\":\"k\",\"iam_id\":\"iam-ServiceId-nope\"}", false, &r);
	assert_int_equal(r.status, 404);
	json_decref(j);
	snprintf(body, sizeof(body), "{\"name\":\"k\",\"iam_id\":\"%s\",\"store_value\":true}",
		 sid_iam);
	j = call(&f, "POST", "/v1/apikeys", tok, body, false, &r);
	assert_int_equal(r.status, 400);
	json_decref(j);

	/* The service ID's token works here; the audit event names no secret. */
	char *stok = http_token(&f, v);
	assert_non_null(stok);

	/* A policy for the service ID (the access half's API), deleted with it below. */
	snprintf(body, sizeof(body),
		 "{\"type\":\"access\",\"subjects\":[{\"attributes\":[{\"name\":\"iam_id\","
		 "\"value\":\"%s\"}]}],\"roles\":[{\"role_id\":\"crn:v1:bluemix:public:iam::::"
		 "serviceRole:Reader\"}],\"resources\":[{\"attributes\":[{\"name\":\"accountId\","
		 "\"value\":\"%s\"},{\"name\":\"serviceName\",\"value\":\"kms\"}]}]}",
		 sid_iam, f.account);
	j = call(&f, "POST", "/v1/policies", tok, body, false, &r);
	if (r.status != 201)
		fail_msg("policy create: %ld %s", r.status, r.body);
	json_decref(j);
	assert_int_equal(count_rows(&f, "iam_policies"), 1);

	/* Lock: 204; a locked service ID cannot be deleted (409). */
	snprintf(path, sizeof(path), "/v1/serviceids/%s/lock", sid);
	j = call(&f, "POST", path, tok, NULL, false, &r);
	assert_int_equal(r.status, 204);
	snprintf(path, sizeof(path), "/v1/serviceids/%s", sid);
	j = call(&f, "DELETE", path, tok, NULL, false, &r);
	assert_int_equal(r.status, 409);
	json_decref(j);
	snprintf(path, sizeof(path), "/v1/serviceids/%s/lock", sid);
	j = call(&f, "DELETE", path, tok, NULL, false, &r);
	assert_int_equal(r.status, 204);
	int64_t ev1 = count_events(&f, NULL);
	snprintf(path, sizeof(path), "/v1/serviceids/%s", sid);
	j = call(&f, "DELETE", path, tok, NULL, false, &r);
	assert_int_equal(r.status, 204);
	assert_int_equal(count_events(&f, NULL), ev1 + 1);
	snprintf(path, sizeof(path), "/v1/apikeys/%s", kid_);
	j = call(&f, "GET", path, tok, NULL, false, &r);
	assert_int_equal(r.status, 404);
	json_decref(j);
	assert_int_equal(count_rows(&f, "iam_policies"), 0);

	/* Users. */
	j = call(&f, "POST", "/v1/users", tok, "{\"name\":\"Ann\",\"email\":\"ann@example.com\"}",
		 false, &r);
	assert_int_equal(r.status, 201);
	json_decref(j);
	j = call(&f, "GET", "/v1/users", tok, NULL, false, &r);
	assert_int_equal(r.status, 200);
	assert_int_equal(json_array_size(json_object_get(j, "users")), 2);
	json_decref(j);

	/* Nothing secret in the audit trail, and the chain verifies. */
	struct audit_verify_result vr;
	struct sealvm_err err = SEALVM_ERR_INIT;
	sqlite3 *conn = db_read_begin(f.db);
	assert_int_equal(audit_verify(conn, f.chain_key->data, 0, NULL, &vr, &err), 0);
	db_read_end(f.db, conn);
	assert_true(vr.ok);
	http_server_stop(f.srv);
	f.srv = NULL;
	char wal[320];
	snprintf(wal, sizeof(wal), "%s-wal", f.dbpath);
	assert_false(file_contains(f.dbpath, v->data, v->len));
	assert_false(file_contains(wal, v->data, v->len));
	assert_false(file_contains(wal, tok, strlen(tok)));
	assert_false(file_contains(wal, stok, strlen(stok)));
	assert_false(file_contains(wal, f.owner_key->data, f.owner_key->len));
	sealvm_secret_free(v);
	free(stok);
	free(tok);
	fx_close(&f);
}

static void test_http_rate_limit(void **state)
{
	struct fx f;
	struct reply r;
	char form[256];

	fx_boot(&f, 3);
	fx_serve(&f);
	snprintf(form, sizeof(form),
		 "grant_type=urn%%3Aibm%%3Aparams%%3Aoauth%%3Agrant-type%%3Aapikey&apikey=%.*s",
		 (int)f.owner_key->len, (const char *)f.owner_key->data);
	for (int i = 0; i < 3; i++) {
		json_t *j = call(&f, "POST", "/identity/token", NULL, form, true, &r);
		assert_int_equal(r.status, 200);
		json_decref(j);
	}
	json_t *j = call(&f, "POST", "/identity/token", NULL, form, true, &r);
	assert_int_equal(r.status, 429);
	assert_true(atoi(r.retry_after) >= 1);
	assert_string_equal(json_string_value(json_object_get(j, "errorCode")), "RATE_LIMITED");
	json_decref(j);
	fx_close(&f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bootstrap_once),
		cmocka_unit_test(test_apikey_value_once_hash_only),
		cmocka_unit_test(test_token_roundtrip),
		cmocka_unit_test(test_token_expired),
		cmocka_unit_test(test_token_other_deployment),
		cmocka_unit_test(test_token_tampered),
		cmocka_unit_test(test_locked_apikey_no_token),
		cmocka_unit_test(test_deleted_apikey),
		cmocka_unit_test(test_serviceid_lock_delete),
		cmocka_unit_test(test_cross_account_and_validation),
		cmocka_unit_test(test_rotation),
		cmocka_unit_test(test_rate_limit),
		cmocka_unit_test(test_cache),
		cmocka_unit_test(test_http_routes),
		cmocka_unit_test(test_http_rate_limit),
	};
	sealvm_log_set_level(SEALVM_LOG_WARNING);
	curl_global_init(CURL_GLOBAL_ALL);
	int r = cmocka_run_group_tests(tests, NULL, NULL);
	curl_global_cleanup();
	return r;
}
