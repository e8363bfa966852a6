// SPDX-License-Identifier: Apache-2.0
/*
 * iam_identity.c — the identity half's logic: the service's lifetime and
 * bootstrap, and the operations on users, service IDs and API keys.
 *
 * Every change runs as one db_write job that reads what it checks and writes
 * what it changes (so a check cannot go stale between the two), then runs the
 * caller's tail — the HTTP layer appends the request's audit event there, so
 * the change and its event commit together. Slow work (random values, keyed
 * hashes, key generation and sealing) happens before the job. Targets in
 * another account answer -ENOENT, exactly like missing ones.
 *
 * Never logs, stores or returns an API key value except through the one
 * out-parameter of iam_apikey_create / iam_bootstrap.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "sealvm/b64.h"
#include "sealvm/log.h"
#include "sealvm/rowcache.h"
#include "sealvm/seal.h"

#include "iam_internal.h"

/* ---- small helpers ------------------------------------------------------------------ */

static int64_t real_now(void)
{
	return (int64_t)time(NULL);
}

int64_t iam_now_ms(const struct iam *iam)
{
	struct timespec ts;
	if (iam && iam->now != real_now)
		return iam->now() * 1000;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void iam_format_time(int64_t ms, char out[32])
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;
	if (!gmtime_r(&t, &tm) || strftime(out, 32, "%Y-%m-%dT%H:%M:%S+0000", &tm) == 0)
		snprintf(out, 32, "1970-01-01T00:00:00+0000");
}

int iam_random_hex(size_t n, char *out)
{
	unsigned char b[32];
	if (n > sizeof(b) || RAND_bytes(b, (int)n) != 1)
		return -EIO;
	for (size_t i = 0; i < n; i++)
		snprintf(out + 2 * i, 3, "%02x", b[i]);
	return 0;
}

int iam_random_uuid(char out[37])
{
	unsigned char b[16];
	if (RAND_bytes(b, sizeof(b)) != 1)
		return -EIO;
	b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
	b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
	snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
		 b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12],
		 b[13], b[14], b[15]);
	return 0;
}

static int random_failed(struct sealvm_err *err)
{
	return sealvm_err_set(err, -EIO, "RANDOM_FAILED", "the random generator failed");
}

/* Well-formed UTF-8 without control characters. */
static bool text_ok(const char *s, size_t n)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0;
	while (i < n) {
		unsigned c = p[i];
		if (c < 0x20 || c == 0x7f)
			return false;
		if (c < 0x80) {
			i++;
			continue;
		}
		unsigned len = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 ? 2 : 0;
		if (!len || c > 0xf4 || i + len > n)
			return false;
		unsigned cp = c & (0x3f >> (len - 1));
		for (unsigned k = 1; k < len; k++) {
			if ((p[i + k] & 0xc0) != 0x80)
				return false;
			cp = (cp << 6) | (p[i + k] & 0x3f);
		}
		if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
		    (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		i += len;
	}
	return true;
}

int iam_check_name(const char *field, const char *s, struct sealvm_err *err)
{
	size_t n = s ? strlen(s) : 0;
	if (n == 0)
		return sealvm_err_set(err, -EINVAL, "INVALID_NAME",
				      "'%s' is required and may not be empty", field);
	if (n > IAM_NAME_MAX)
		return sealvm_err_set(err, -EINVAL, "INVALID_NAME",
				      "'%s' is %zu bytes long; at most %d are allowed", field, n,
				      IAM_NAME_MAX);
	if (!text_ok(s, n))
		return sealvm_err_set(err, -EINVAL, "INVALID_NAME",
				      "'%s' must be UTF-8 text without control characters", field);
	return 0;
}

int iam_check_description(const char *s, struct sealvm_err *err)
{
	size_t n = s ? strlen(s) : 0;
	if (n > IAM_DESCRIPTION_MAX)
		return sealvm_err_set(err, -EINVAL, "INVALID_DESCRIPTION",
				      "'description' is %zu bytes long; at most %d are allowed", n,
				      IAM_DESCRIPTION_MAX);
	if (!text_ok(s ? s : "", n))
		return sealvm_err_set(
			err, -EINVAL, "INVALID_DESCRIPTION",
			"'description' must be UTF-8 text without control characters");
	return 0;
}

static int check_email(const char *s, struct sealvm_err *err)
{
	size_t n = s ? strlen(s) : 0;
	const char *at = s ? strchr(s, '@') : NULL;
	if (n < 3 || n > IAM_EMAIL_MAX || !at || at == s || !at[1] || strchr(at + 1, '@') ||
	    strpbrk(s, " \t\"<>,;") || !text_ok(s, n))
		return sealvm_err_set(err, -EINVAL, "INVALID_EMAIL",
				      "'email' must be an e-mail address (user@domain, at most %d "
				      "bytes)",
				      IAM_EMAIL_MAX);
	return 0;
}

bool iam_account_id_valid(const char *s)
{
	size_t i;
	for (i = 0; s && s[i]; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return i == 32;
}

enum iam_owner_kind iam_owner_kind_of(const char *iam_id)
{
	if (!iam_id)
		return IAM_OWNER_NONE;
	if (strncmp(iam_id, "iam-ServiceId-", 14) == 0)
		return IAM_OWNER_SERVICE_ID;
	if (strncmp(iam_id, "IBMid-", 6) == 0)
		return IAM_OWNER_USER;
	return IAM_OWNER_NONE;
}

static int tail_run(const struct iam_job_tail *tail, sqlite3 *conn, const void *entity, int status,
		    struct sealvm_err *err)
{
	return tail && tail->fn ? tail->fn(conn, tail->arg, entity, status, err) : 0;
}

static int not_found(struct sealvm_err *err, const char *reason, const char *what)
{
	sealvm_err_clear(err);
	return sealvm_err_set(err, -ENOENT, reason, "%s was not found in this account", what);
}

/* Parses an If-Match value; NULL or "*" matches any version. */
static int check_if_match(const char *if_match, int64_t version, struct sealvm_err *err)
{
	char tag[32];
	if (!if_match || strcmp(if_match, "*") == 0)
		return 0;
	snprintf(tag, sizeof(tag), "%lld", (long long)version);
	size_t n = strlen(if_match);
	/* A quoted entity tag ("3") is accepted as well as the bare one. */
	if (n >= 2 && if_match[0] == '"' && if_match[n - 1] == '"' && n - 2 == strlen(tag) &&
	    memcmp(if_match + 1, tag, n - 2) == 0)
		return 0;
	if (strcmp(if_match, tag) == 0)
		return 0;
	return sealvm_err_set(err, -EEXIST, "ENTITY_TAG_MISMATCH",
			      "If-Match does not name the current version (entity_tag %s); read "
			      "the resource again and retry",
			      tag);
}

/* ---- accounts ------------------------------------------------------------------------- */

int iam_account_get(struct iam *iam, const char *account_id, struct iam_account *ret,
		    struct sealvm_err *err)
{
	sqlite3 *conn = db_read_begin(iam->db);
	int r = iam_store_account_get(conn, account_id, ret, err);
	db_read_end(iam->db, conn);
	return r;
}

int iam_account_owner(struct iam *iam, const char *account_id, char ret_owner[IAM_IAM_ID_MAX],
		      struct sealvm_err *err)
{
	struct iam_account a;

	if (!iam_account_id_valid(account_id))
		return sealvm_err_set(err, -ENOENT, "ACCOUNT_NOT_FOUND",
				      "the account was not found");
	/* An account's owner never changes, and accounts are never deleted: cache them. */
	pthread_mutex_lock(&iam->owners_lock);
	for (unsigned i = 0; i < iam->n_owners; i++) {
		if (strcmp(iam->owners[i].account_id, account_id) == 0) {
			memcpy(ret_owner, iam->owners[i].owner_iam_id, IAM_IAM_ID_MAX);
			pthread_mutex_unlock(&iam->owners_lock);
			return 0;
		}
	}
	pthread_mutex_unlock(&iam->owners_lock);
	int r = iam_account_get(iam, account_id, &a, err);
	if (r < 0)
		return r;
	pthread_mutex_lock(&iam->owners_lock);
	if (iam->n_owners < ELEMENTSOF(iam->owners)) {
		unsigned i = iam->n_owners++;
		memcpy(iam->owners[i].account_id, a.id, sizeof(a.id));
		memcpy(iam->owners[i].owner_iam_id, a.owner_iam_id, IAM_IAM_ID_MAX);
	}
	pthread_mutex_unlock(&iam->owners_lock);
	memcpy(ret_owner, a.owner_iam_id, IAM_IAM_ID_MAX);
	return 0;
}

/* ---- API key values ------------------------------------------------------------------- */

/* A new API key value (44 base64url characters) in secret memory, and its keyed hash. */
static int apikey_value_new(struct iam *iam, struct sealvm_secret **ret_value,
			    unsigned char hash[SEALVM_KEYED_HASH_BYTES], struct sealvm_err *err)
{
	_cleanup_secret_ struct sealvm_secret *raw = NULL;
	_cleanup_secret_ struct sealvm_secret *value = NULL;

	int r = sealvm_secret_random(IAM_APIKEY_RANDOM_BYTES, &raw);
	if (r < 0)
		return sealvm_err_set(err, r, "RANDOM_FAILED", "cannot make an API key value");
	r = sealvm_secret_new(sealvm_b64_encoded_len(IAM_APIKEY_RANDOM_BYTES, true) + 1, &value);
	if (r < 0)
		return sealvm_err_set(err, r, NULL, "out of memory");
	value->len = sealvm_b64_encode(raw->data, raw->len, (char *)value->data, true);
	r = seal_keyed_hash(iam->apikey_hash_key, "apikey", value->data, value->len, hash);
	if (r < 0)
		return sealvm_err_set(err, r, "APIKEY_HASH_FAILED", "cannot hash the API key");
	*ret_value = TAKE_PTR(value);
	return 0;
}

static void apikey_fill(struct iam_apikey *k, const char *account_id, const char *owner_iam_id,
			const char *name, const char *description, const char *created_by,
			int64_t now_ms)
{
	snprintf(k->iam_id, sizeof(k->iam_id), "%s", owner_iam_id);
	snprintf(k->account_id, sizeof(k->account_id), "%s", account_id);
	snprintf(k->name, sizeof(k->name), "%s", name);
	snprintf(k->description, sizeof(k->description), "%s", description ? description : "");
	snprintf(k->crn, sizeof(k->crn), IAM_CRN_PREFIX "%s::apikey:%s", account_id, k->id);
	snprintf(k->created_by, sizeof(k->created_by), "%s",
		 created_by ? created_by : owner_iam_id);
	k->version = 1;
	k->created_ms = k->modified_ms = now_ms;
}

/* ---- bootstrap ------------------------------------------------------------------------- */

struct bootstrap_job {
	struct iam_new_signing_key *key; /* NULL when the store has one already */
	struct iam_account account;
	struct iam_user owner;
	struct iam_apikey apikey;
	unsigned char hash[SEALVM_KEYED_HASH_BYTES];
};

static int bootstrap_run(sqlite3 *conn, void *userdata, struct sealvm_err *err)
{
	struct bootstrap_job *j = userdata;
	int64_t n;
	int r = iam_store_account_count(conn, &n, err);
	if (r < 0)
		return r;
	if (n > 0)
		return sealvm_err_set(
			err, -EEXIST, "ALREADY_INITIALISED",
			"this data dir already has an account; it is initialised once");
	if (j->key) {
		r = iam_store_signing_key_count(conn, &n, err);
		if (r < 0)
			return r;
		if (n == 0 && (r = iam_store_signing_key_insert(conn, j->key->kid, j->key->created,
								j->key->sealed, j->key->sealed_len,
								j->key->public_jwk, err)) < 0)
			return r;
	}
	if ((r = iam_store_account_insert(conn, &j->account, err)) < 0 ||
	    (r = iam_store_user_insert(conn, &j->owner, err)) < 0 ||
	    (r = iam_store_apikey_insert(conn, &j->apikey, j->hash, err)) < 0)
		return r;
	return 0;
}

int iam_bootstrap(struct iam *iam, const char *owner_name, const char *owner_email,
		  struct sealvm_secret **ret_apikey, char ret_account_id[40],
		  struct sealvm_err *err)
{
	_cleanup_secret_ struct sealvm_secret *value = NULL;
	struct iam_new_signing_key key = {0};
	struct bootstrap_job j = {0};
	char hex[33], uuid[37];
	int64_t n = 0;
	int r;

	if (!owner_email)
		owner_email = "";
	if ((r = iam_check_name("owner name", owner_name, err)) < 0)
		return r;
	if (owner_email[0] && (r = check_email(owner_email, err)) < 0)
		return r;

	sqlite3 *conn = db_read_begin(iam->db);
	r = iam_store_signing_key_count(conn, &n, err);
	db_read_end(iam->db, conn);
	if (r < 0)
		return r;
	if (n == 0) {
		if ((r = iam_signing_key_prepare(iam, &key, err)) < 0)
			return r;
		j.key = &key;
	}

	int64_t now = iam_now_ms(iam);
	if (iam_random_hex(16, j.account.id) < 0 || iam_random_hex(16, hex) < 0 ||
	    iam_random_uuid(uuid) < 0) {
		r = random_failed(err);
		goto out;
	}
	snprintf(j.account.name, sizeof(j.account.name), "%s's Account", owner_name);
	snprintf(j.account.owner_iam_id, sizeof(j.account.owner_iam_id), "IBMid-%s", hex);
	j.account.created_ms = now;
	snprintf(j.owner.iam_id, sizeof(j.owner.iam_id), "%s", j.account.owner_iam_id);
	snprintf(j.owner.account_id, sizeof(j.owner.account_id), "%s", j.account.id);
	snprintf(j.owner.name, sizeof(j.owner.name), "%s", owner_name);
	snprintf(j.owner.email, sizeof(j.owner.email), "%s", owner_email);
	snprintf(j.owner.state, sizeof(j.owner.state), "ACTIVE");
	j.owner.created_ms = now;
	snprintf(j.apikey.id, sizeof(j.apikey.id), "ApiKey-%s", uuid);
	apikey_fill(&j.apikey, j.account.id, j.owner.iam_id, "owner",
		    "API key of the account owner, made at initialisation", j.owner.iam_id, now);
	if ((r = apikey_value_new(iam, &value, j.hash, err)) < 0)
		goto out;
	r = db_write(iam->db, bootstrap_run, &j, err);
	OPENSSL_cleanse(j.hash, sizeof(j.hash));
	if (r < 0)
		goto out;
	if ((r = iam_tokens_load(iam, err)) < 0)
		goto out;
	memcpy(ret_account_id, j.account.id, 33);
	*ret_apikey = TAKE_PTR(value);
	r = 0;
out:
	iam_signing_key_prepared_done(&key);
	return r;
}

/* ---- users ----------------------------------------------------------------------------- */

struct user_job {
	const struct iam_job_tail *tail;
	struct iam_user u;
	const char *account_id;
	const char *iam_id;
};

static int account_must_exist(sqlite3 *conn, const char *account_id, struct sealvm_err *err)
{
	struct iam_account a;
	int r = iam_store_account_get(conn, account_id, &a, err);
	return r == -ENOENT ? not_found(err, "ACCOUNT_NOT_FOUND", "the account") : r;
}

static int user_create_run(sqlite3 *conn, void *userdata, struct sealvm_err *err)
{
	struct user_job *j = userdata;
	int r = account_must_exist(conn, j->u.account_id, err);
	if (r < 0)
		return r;
	r = iam_store_user_insert(conn, &j->u, err);
	if (r == -EEXIST) {
		sealvm_err_clear(err);
		return sealvm_err_set(err, -EEXIST, "USER_EXISTS",
				      "a user with this e-mail address is already in the account");
	}
	if (r < 0)
		return r;
	return tail_run(j->tail, conn, &j->u, 201, err);
}

int iam_user_create(struct iam *iam, const char *account_id, const char *name, const char *email,
		    const struct iam_job_tail *tail, struct iam_user *ret, struct sealvm_err *err)
{
	struct user_job j = {.tail = tail};
	char hex[33];
	int r;

	if ((r = iam_check_name("name", name, err)) < 0 || (r = check_email(email, err)) < 0)
		return r;
	if (iam_random_hex(16, hex) < 0)
		return random_failed(err);
	snprintf(j.u.iam_id, sizeof(j.u.iam_id), "IBMid-%s", hex);
	snprintf(j.u.account_id, sizeof(j.u.account_id), "%s", account_id);
	snprintf(j.u.name, sizeof(j.u.name), "%s", name);
	snprintf(j.u.email, sizeof(j.u.email), "%s", email);
	snprintf(j.u.state, sizeof(j.u.state), "ACTIVE");
	j.u.created_ms = iam_now_ms(iam);
	r = db_write(iam->db, user_create_run, &j, err);
	if (r < 0)
		return r;
	if (ret)
		*ret = j.u;
	return 0;
}

static int user_read(sqlite3 *conn, void *ctx, void *row, struct sealvm_err *err)
{
	return iam_store_user_get(conn, ctx, row, err);
}

static int serviceid_read(sqlite3 *conn, void *ctx, void *row, struct sealvm_err *err)
{
	return iam_store_serviceid_get(conn, ctx, row, err);
}

static int apikey_read(sqlite3 *conn, void *ctx, void *row, struct sealvm_err *err)
{
	return iam_store_apikey_get(conn, ctx, row, err);
}

static int user_get_in(sqlite3 *conn, const char *account_id, const char *iam_id,
		       struct iam_user *ret, struct sealvm_err *err)
{
	int r = iam_store_user_get(conn, iam_id, ret, err);
	if (r == -ENOENT || (r == 0 && strcmp(ret->account_id, account_id) != 0))
		return not_found(err, "USER_NOT_FOUND", "the user");
	return r;
}

int iam_user_get(struct iam *iam, const char *account_id, const char *iam_id, struct iam_user *ret,
		 struct sealvm_err *err)
{
	int r = sealvm_rowcache_read(iam->user_rows, iam->db, iam_id, ret, user_read,
				     (void *)iam_id, err);
	if (r == -ENOENT || (r == 0 && strcmp(ret->account_id, account_id) != 0))
		return not_found(err, "USER_NOT_FOUND", "the user");
	return r;
}

int iam_user_list(struct iam *iam, const char *account_id,
		  int (*fn)(const struct iam_user *u, void *arg), void *arg, struct sealvm_err *err)
{
	sqlite3 *conn = db_read_begin(iam->db);
	int r = iam_store_user_list(conn, account_id, fn, arg, err);
	db_read_end(iam->db, conn);
	return r;
}

static int user_delete_run(sqlite3 *conn, void *userdata, struct sealvm_err *err)
{
	struct user_job *j = userdata;
	struct iam_user u;
	struct iam_account a;
	int r = user_get_in(conn, j->account_id, j->iam_id, &u, err);
	if (r < 0)
		return r;
	if ((r = iam_store_account_get(conn, u.account_id, &a, err)) < 0)
		return r;
	if (strcmp(a.owner_iam_id, u.iam_id) == 0)
		return sealvm_err_set(err, -EEXIST, "USER_IS_OWNER",
				      "the account owner cannot be deleted");
	if ((r = iam_store_apikey_delete_by_owner(conn, u.iam_id, err)) < 0 ||
	    (r = iam_access_delete_subject_policies(conn, u.account_id, u.iam_id, err)) < 0 ||
	    (r = iam_store_user_delete(conn, u.iam_id, err)) < 0)
		return r;
	return tail_run(j->tail, conn, &u, 204, err);
}

int iam_user_delete(struct iam *iam, const char *account_id, const char *iam_id,
		    const struct iam_job_tail *tail, struct sealvm_err *err)
{
	struct user_job j = {.tail = tail, .account_id = account_id, .iam_id = iam_id};
	int r = db_write(iam->db, user_delete_run, &j, err);
	return r < 0 ? r : 0;
}

/* ---- service IDs ----------------------------------------------------------------------- */

struct sid_job {
	const struct iam_job_tail *tail;
	struct iam_serviceid s;
	const char *account_id, *id, *if_match, *name, *description;
	bool locked;
	int64_t now_ms;
};

static int serviceid_get_in(sqlite3 *conn, const char *account_id, const char *id,
			    struct iam_serviceid *ret, struct sealvm_err *err)
{
	int r = iam_store_serviceid_get(conn, id, ret, err);
	if (r == -ENOENT || (r == 0 && strcmp(ret->account_id, account_id) != 0))
		return not_found(err, "SERVICEID_NOT_FOUND", "the service ID");
	return r;
}

static int serviceid_create_run(sqlite3 *conn, void *userdata, struct sealvm_err *err)
{
	struct sid_job *j = userdata;
	int r = account_must_exist(conn, j->s.account_id, err);
	if (r < 0)
		return r;
	if ((r = iam_store_serviceid_insert(conn, &j->s, err)) < 0)
		return r;
	return tail_run(j->tail, conn, &j->s, 201, err);
}

int iam_serviceid_create(struct iam *iam, const char *account_id, const char *name,
			 const char *description, const struct iam_job_tail *tail,
			 struct iam_serviceid *ret, struct sealvm_err *err)
{
	struct sid_job j = {.tail = tail};
	char uuid[37];
	int r;

	if ((r = iam_check_name("name", name, err)) < 0 ||
	    (r = iam_check_description(description, err)) < 0)
		return r;
	if (iam_random_uuid(uuid) < 0)
		return random_failed(err);
	snprintf(j.s.id, sizeof(j.s.id), "ServiceId-%s", uuid);
	snprintf(j.s.iam_id, sizeof(j.s.iam_id), "iam-ServiceId-%s", uuid);
	snprintf(j.s.account_id, sizeof(j.s.account_id), "%s", account_id);
	snprintf(j.s.name, sizeof(j.s.name), "%s", name);
	snprintf(j.s.description, sizeof(j.s.description), "%s", description ? description : "");
	snprintf(j.s.crn, sizeof(j.s.crn), IAM_CRN_PREFIX "%s::serviceid:%s", account_id, j.s.id);
	j.s.version = 1;
	j.s.created_ms = j.s.modified_ms = iam_now_ms(iam);
	r = db_write(iam->db, serviceid_create_run, &j, err);
	if (r < 0)
		return r;
	if (ret)
		*ret = j.s;
	return 0;
}

int iam_serviceid_get(struct iam *iam, const char *account_id, const char *id,
		      struct iam_serviceid *ret, struct sealvm_err *err)
{
	int r = sealvm_rowcache_read(iam->serviceid_rows, iam->db, id, ret, serviceid_read,
				     (void *)id, err);
	if (r == -ENOENT || (r == 0 && strcmp(ret->account_id, account_id) != 0))
		return not_found(err, "SERVICEID_NOT_FOUND", "the service ID");
	return r;
}

int iam_serviceid_list(struct iam *iam, const char *account_id, const char *name, unsigned offset,
		       unsigned limit, int (*fn)(const struct iam_serviceid *s, void *arg),
		       void *arg, int64_t *ret_total, struct sealvm_err *err)
{
	sqlite3 *conn = db_read_begin(iam->db);
	/* One snapshot for the count and the page. */
	sqlite3_exec(conn, "BEGIN", NULL, NULL, NULL);
	int r = iam_store_serviceid_list(conn, account_id, name, offset, limit, fn, arg, ret_total,
					 err);
	db_read_end(iam->db, conn);
	return r;
}

static int locked_conflict(struct sealvm_err *err, const char *what)
{
	return sealvm_err_set(err, -EEXIST, "LOCKED",
			      "the %s is locked: unlock it (DELETE .../lock) before changing or "
			      "deleting it",
			      what);
}

static int serviceid_update_run(sqlite3 *conn, void *userdata, struct sealvm_err *err)
{
	struct sid_job *j = userdata;
	int r = serviceid_get_in(conn, j->account_id, j->id, &j->s, err);
	if (r < 0)
		return r;
	if (j->s.locked)
		return locked_conflict(err, "service ID");
	if ((r = check_if_match(j->if_match, j->s.version, err)) < 0)
		return r;
	if (j->name)
		snprintf(j->s.name, sizeof(j->s.name), "%s", j->name);
	if (j->description)
		snprintf(j->s.description, sizeof(j->s.description), "%s", j->description);
	j->s.version++;
	j->s.modified_ms = j->now_ms;
	if ((r = iam_store_serviceid_update(conn, &j->s, err)) < 0)
		return r;
	return tail_run(j->tail, conn, &j->s, 200, err);
}

int iam_serviceid_update(struct iam *iam, const char *account_id, const char *id,
			 const char *if_match, const char *name, const char *description,
			 const struct iam_job_tail *tail, struct iam_serviceid *ret,
			 struct sealvm_err *err)
{
	struct sid_job j = {.tail = tail,
			    .account_id = account_id,
			    .id = id,
			    .if_match = if_match,
			    .name = name,
			    .description = description,
			    .now_ms = iam_now_ms(iam)};
	int r;
	if ((name && (r = iam_check_name("name", name, err)) < 0) ||
	    (description && (r = iam_check_description(description, err)) < 0))
		return r;
	r = db_write(iam->db, serviceid_update_run, &j, err);
	if (r < 0)
		return r;
	if (ret)
		*ret = j.s;
	return 0;
}

static int serviceid_delete_run(sqlite3 *conn, void *userdata, struct sealvm_err *err)
{
	struct sid_job *j = userdata;
	int r = serviceid_get_in(conn, j->account_id, j->id, &j->s, err);
	if (r < 0)
		return r;
	if (j->s.locked)
		return locked_conflict(err, "service ID");
	/* IBM: deleting a service ID deletes its API keys and its policies, irreversibly. */
	if ((r = iam_store_apikey_delete_by_owner(conn, j->s.iam_id, err)) < 0 ||
	    (r = iam_access_delete_subject_policies(conn, j->s.account_id, j->s.iam_id, err)) < 0 ||
	    (r = iam_store_serviceid_delete(conn, j->s.id, err)) < 0)
		return r;
	return tail_run(j->tail, conn, &j->s, 204, err);
}

int iam_serviceid_delete(struct iam *iam, const char *account_id, const char *id,
			 const struct iam_job_tail *tail, struct sealvm_err *err)
{
	struct sid_job j = {.tail = tail, .account_id = account_id, .id = id};
	int r = db_write(iam->db, serviceid_delete_run, &j, err);
	return r < 0 ? r : 0;
}

static int serviceid_lock_run(sqlite3 *conn, void *userdata, struct sealvm_err *err)
{
	struct sid_job *j = userdata;
	int r = serviceid_get_in(conn, j->account_id, j->id, &j->s, err);
	if (r < 0)
		return r;
	/* Locking a locked one (or unlocking an unlocked one) changes nothing and succeeds. */
	if (j->s.locked != j->locked) {
		j->s.locked = j->locked;
		j->s.version++;
		j->s.modified_ms = j->now_ms;
		if ((r = iam_store_serviceid_update(conn, &j->s, err)) < 0)
			return r;
	}
	return tail_run(j->tail, conn, &j->s, 204, err);
}

int iam_serviceid_set_locked(struct iam *iam, const char *account_id, const char *id, bool locked,
			     const struct iam_job_tail *tail, struct iam_serviceid *ret,
			     struct sealvm_err *err)
{
	struct sid_job j = {.tail = tail,
			    .account_id = account_id,
			    .id = id,
			    .locked = locked,
			    .now_ms = iam_now_ms(iam)};
	int r = db_write(iam->db, serviceid_lock_run, &j, err);
	if (r < 0)
		return r;
	if (ret)
		*ret = j.s;
	return 0;
}

/* ---- API keys -------------------------------------------------------------------------- */

struct key_job {
	const struct iam_job_tail *tail;
	struct iam_apikey k;
	unsigned char hash[SEALVM_KEYED_HASH_BYTES];
	const char *account_id, *id, *if_match, *name, *description;
	bool locked;
	int64_t now_ms;
};

static int apikey_get_in(sqlite3 *conn, const char *account_id, const char *id,
			 struct iam_apikey *ret, struct sealvm_err *err)
{
	int r = iam_store_apikey_get(conn, id, ret, err);
	if (r == -ENOENT || (r == 0 && strcmp(ret->account_id, account_id) != 0))
		return not_found(err, "APIKEY_NOT_FOUND", "the API key");
	return r;
}

static int apikey_create_run(sqlite3 *conn, void *userdata, struct sealvm_err *err)
{
	struct key_job *j = userdata;
	int r = account_must_exist(conn, j->k.account_id, err);
	if (r < 0)
		return r;
	/* The owner must exist, in this account, now (in the same transaction as the insert). */
	if (iam_owner_kind_of(j->k.iam_id) == IAM_OWNER_SERVICE_ID) {
		struct iam_serviceid s;
		r = iam_store_serviceid_get_by_iam_id(conn, j->k.iam_id, &s, err);
		if (r == -ENOENT || (r == 0 && strcmp(s.account_id, j->k.account_id) != 0))
			return not_found(err, "IAM_ID_NOT_FOUND",
					 "the service ID named by 'iam_id'");
	} else {
		struct iam_user u;
		r = user_get_in(conn, j->k.account_id, j->k.iam_id, &u, err);
		if (r == -ENOENT)
			return not_found(err, "IAM_ID_NOT_FOUND", "the user named by 'iam_id'");
	}
	if (r < 0)
		return r;
	if ((r = iam_store_apikey_insert(conn, &j->k, j->hash, err)) < 0)
		return r;
	return tail_run(j->tail, conn, &j->k, 201, err);
}

int iam_apikey_create(struct iam *iam, const char *account_id, const char *owner_iam_id,
		      const char *name, const char *description, const char *created_by,
		      const struct iam_job_tail *tail, struct iam_apikey *ret,
		      struct sealvm_secret **ret_value, struct sealvm_err *err)
{
	_cleanup_secret_ struct sealvm_secret *value = NULL;
	struct key_job j = {.tail = tail};
	char uuid[37];
	int r;

	if ((r = iam_check_name("name", name, err)) < 0 ||
	    (r = iam_check_description(description, err)) < 0)
		return r;
	enum iam_owner_kind kind = iam_owner_kind_of(owner_iam_id);
	if (kind == IAM_OWNER_NONE || strlen(owner_iam_id) >= IAM_IAM_ID_MAX)
		return sealvm_err_set(err, -EINVAL, "INVALID_IAM_ID",
				      "'iam_id' must name a user (IBMid-…) or a service ID "
				      "(iam-ServiceId-…)");
	/* IBM: a user's API keys are made by that user alone. */
	if (kind == IAM_OWNER_USER && created_by && strcmp(created_by, owner_iam_id) != 0)
		return sealvm_err_set(err, -EACCES, "APIKEY_FOR_OTHER_USER",
				      "a user's API keys can only be created by that user");
	if (iam_random_uuid(uuid) < 0)
		return random_failed(err);
	snprintf(j.k.id, sizeof(j.k.id), "ApiKey-%s", uuid);
	apikey_fill(&j.k, account_id, owner_iam_id, name, description, created_by, iam_now_ms(iam));
	if ((r = apikey_value_new(iam, &value, j.hash, err)) < 0)
		return r;
	r = db_write(iam->db, apikey_create_run, &j, err);
	OPENSSL_cleanse(j.hash, sizeof(j.hash));
	if (r < 0)
		return r;
	if (ret)
		*ret = j.k;
	*ret_value = TAKE_PTR(value);
	return 0;
}

int iam_apikey_get(struct iam *iam, const char *account_id, const char *id, struct iam_apikey *ret,
		   struct sealvm_err *err)
{
	int r = sealvm_rowcache_read(iam->apikey_rows, iam->db, id, ret, apikey_read, (void *)id,
				     err);
	if (r == -ENOENT || (r == 0 && strcmp(ret->account_id, account_id) != 0))
		return not_found(err, "APIKEY_NOT_FOUND", "the API key");
	return r;
}

int iam_apikey_list(struct iam *iam, const char *account_id, const char *owner_iam_id,
		    unsigned offset, unsigned limit,
		    int (*fn)(const struct iam_apikey *k, void *arg), void *arg, int64_t *ret_total,
		    struct sealvm_err *err)
{
	sqlite3 *conn = db_read_begin(iam->db);
	sqlite3_exec(conn, "BEGIN", NULL, NULL, NULL);
	int r = iam_store_apikey_list(conn, account_id, owner_iam_id, offset, limit, fn, arg,
				      ret_total, err);
	db_read_end(iam->db, conn);
	return r;
}

static int apikey_update_run(sqlite3 *conn, void *userdata, struct sealvm_err *err)
{
	struct key_job *j = userdata;
	int r = apikey_get_in(conn, j->account_id, j->id, &j->k, err);
	if (r < 0)
		return r;
	if (j->k.locked)
		return locked_conflict(err, "API key");
	if ((r = check_if_match(j->if_match, j->k.version, err)) < 0)
		return r;
	if (j->name)
		snprintf(j->k.name, sizeof(j->k.name), "%s", j->name);
	if (j->description)
		snprintf(j->k.description, sizeof(j->k.description), "%s", j->description);
	j->k.version++;
	j->k.modified_ms = j->now_ms;
	if ((r = iam_store_apikey_update(conn, &j->k, err)) < 0)
		return r;
	return tail_run(j->tail, conn, &j->k, 200, err);
}

int iam_apikey_update(struct iam *iam, const char *account_id, const char *id, const char *if_match,
		      const char *name, const char *description, const struct iam_job_tail *tail,
		      struct iam_apikey *ret, struct sealvm_err *err)
{
	struct key_job j = {.tail = tail,
			    .account_id = account_id,
			    .id = id,
			    .if_match = if_match,
			    .name = name,
			    .description = description,
			    .now_ms = iam_now_ms(iam)};
	int r;
	if ((name && (r = iam_check_name("name", name, err)) < 0) ||
	    (description && (r = iam_check_description(description, err)) < 0))
		return r;
	r = db_write(iam->db, apikey_update_run, &j, err);
	if (r < 0)
		return r;
	if (ret)
		*ret = j.k;
	return 0;
}

static int apikey_delete_run(sqlite3 *conn, void *userdata, struct sealvm_err *err)
{
	struct key_job *j = userdata;
	int r = apikey_get_in(conn, j->account_id, j->id, &j->k, err);
	if (r < 0)
		return r;
	if (j->k.locked)
		return locked_conflict(err, "API key");
	if ((r = iam_store_apikey_delete(conn, j->k.id, err)) < 0)
		return r;
	return tail_run(j->tail, conn, &j->k, 204, err);
}

int iam_apikey_delete(struct iam *iam, const char *account_id, const char *id,
		      const struct iam_job_tail *tail, struct sealvm_err *err)
{
	struct key_job j = {.tail = tail, .account_id = account_id, .id = id};
	int r = db_write(iam->db, apikey_delete_run, &j, err);
	return r < 0 ? r : 0;
}

static int apikey_lock_run(sqlite3 *conn, void *userdata, struct sealvm_err *err)
{
	struct key_job *j = userdata;
	int r = apikey_get_in(conn, j->account_id, j->id, &j->k, err);
	if (r < 0)
		return r;
	if (j->k.locked != j->locked) {
		j->k.locked = j->locked;
		j->k.version++;
		j->k.modified_ms = j->now_ms;
		if ((r = iam_store_apikey_update(conn, &j->k, err)) < 0)
			return r;
	}
	return tail_run(j->tail, conn, &j->k, 204, err);
}

int iam_apikey_set_locked(struct iam *iam, const char *account_id, const char *id, bool locked,
			  const struct iam_job_tail *tail, struct iam_apikey *ret,
			  struct sealvm_err *err)
{
	struct key_job j = {.tail = tail,
			    .account_id = account_id,
			    .id = id,
			    .locked = locked,
			    .now_ms = iam_now_ms(iam)};
	int r = db_write(iam->db, apikey_lock_run, &j, err);
	if (r < 0)
		return r;
	if (ret)
		*ret = j.k;
	return 0;
}

/* ---- principals for our own services --------------------------------------------------- */

void iam_service_principal(const char *service_name, const char *account_id,
			   struct sealvm_principal *ret)
{
	memset(ret, 0, sizeof(*ret));
	ret->kind = PRINCIPAL_SERVICE;
	snprintf(ret->service_name, sizeof(ret->service_name), "%s", service_name);
	snprintf(ret->iam_id, sizeof(ret->iam_id),
		 "crn:v1:sealvm:local:%s:::::", ret->service_name);
	snprintf(ret->account_id, sizeof(ret->account_id), "%s", account_id ? account_id : "");
	snprintf(ret->name, sizeof(ret->name), "%s", ret->service_name);
	snprintf(ret->credential_type, sizeof(ret->credential_type), "s2s-authorization");
}

/* ---- lifetime --------------------------------------------------------------------------- */

int iam_new(struct sealvm_db *db, const struct sealvm_secret *master, const struct iam_config *cfg,
	    struct iam **ret, struct sealvm_err *err)
{
	struct iam *iam;
	int r;

	if (!db || !master || master->len != SEALVM_MASTER_KEY_BYTES)
		return sealvm_err_set(err, -EINVAL, NULL,
				      "iam_new needs a database and a master key");
	iam = calloc(1, sizeof(*iam));
	if (!iam)
		return sealvm_err_set(err, -ENOMEM, NULL, "out of memory");
	iam->db = db;
	iam->master = master;
	iam->now = real_now;
	pthread_mutex_init(&iam->owners_lock, NULL);
	if (cfg)
		iam->cfg = *cfg;
	snprintf(iam->region, sizeof(iam->region), "%s",
		 cfg && cfg->region ? cfg->region : "us-south");
	snprintf(iam->issuer, sizeof(iam->issuer), "%s",
		 cfg && cfg->issuer ? cfg->issuer : "sealvm");
	iam->cfg.region = iam->region;
	iam->cfg.issuer = iam->issuer;
	if (iam->cfg.token_ttl_s <= 0)
		iam->cfg.token_ttl_s = 3600;
	if (iam->cfg.token_ttl_s > 86400)
		iam->cfg.token_ttl_s = 86400;
	if (iam->cfg.clock_skew_s <= 0)
		iam->cfg.clock_skew_s = 60;
	if (iam->cfg.clock_skew_s > 600)
		iam->cfg.clock_skew_s = 600;
	if (iam->cfg.token_rate_per_min == 0)
		iam->cfg.token_rate_per_min = 600;

	/* Without memory for a cache, every read goes to the database (a NULL cache misses). */
	(void)sealvm_rowcache_new(1024, sizeof(struct iam_serviceid), &iam->serviceid_rows);
	(void)sealvm_rowcache_new(1024, sizeof(struct iam_user), &iam->user_rows);
	(void)sealvm_rowcache_new(1024, sizeof(struct iam_apikey), &iam->apikey_rows);

	r = seal_derive(master, "apikey-hash", &iam->apikey_hash_key);
	if (r < 0) {
		sealvm_err_set(err, r, "KEY_DERIVATION_FAILED",
			       "cannot derive the API key hash key");
		goto fail;
	}
	if ((r = iam_tokens_new(iam, err)) < 0 || (r = iam_tokens_load(iam, err)) < 0 ||
	    (r = iam_access_init(iam, err)) < 0)
		goto fail;
	iam_identity_http_init(iam);
	*ret = iam;
	return 0;
fail:
	iam_free(iam);
	return r;
}

void iam_free(struct iam *iam)
{
	if (!iam)
		return;
	iam_access_done(iam);
	iam_tokens_free(iam);
	sealvm_secret_free(iam->apikey_hash_key);
	sealvm_rowcache_free(iam->serviceid_rows);
	sealvm_rowcache_free(iam->user_rows);
	sealvm_rowcache_free(iam->apikey_rows);
	pthread_mutex_destroy(&iam->owners_lock);
	free(iam);
}
