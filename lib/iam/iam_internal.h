/* SPDX-License-Identifier: Apache-2.0 */
/*
 * iam_internal.h — what the files of lib/iam share. Not a public interface.
 *
 * Two halves live here, each with its own block: identity (iam_identity*.c,
 * iam_token.c: accounts, users, service IDs, API keys, tokens) and access
 * (iam_access*.c: policies, roles, iam_authorize). Each half edits only its
 * own block. Logic files never see HTTP; store files only run SQL; handlers
 * never touch SQLite.
 */
#ifndef SEALVM_IAM_INTERNAL_H
#define SEALVM_IAM_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>
#include <sqlite3.h>

#include "sealvm/db.h"
#include "sealvm/err.h"
#include "sealvm/http.h"
#include "sealvm/iam.h"
#include "sealvm/principal.h"
#include "sealvm/secret.h"

static inline void iam_json_decrefp(json_t **j)
{
	json_decref(*j); /* NULL is a no-op */
}
#define _cleanup_json_ _cleanup_(iam_json_decrefp)

/* ========================= identity half =================================== */

#define IAM_MIGRATION_OWNER_IDENTITY "iam-identity"
#define IAM_SERVICE_NAME "iam-identity"
#define IAM_CRN_PREFIX "crn:v1:sealvm:local:iam-identity::a/"

/* Limits on what a client controls (docs/internals/iam-identity.md). */
#define IAM_NAME_MAX 127	 /* bytes of a name: what fits a principal and an audit target */
#define IAM_DESCRIPTION_MAX 1024 /* bytes of a description */
#define IAM_EMAIL_MAX 254	 /* RFC 5321 path limit */
#define IAM_APIKEY_MIN 16	 /* characters of an API key value we even look up */
#define IAM_APIKEY_MAX 256
#define IAM_APIKEY_RANDOM_BYTES 33 /* 44 base64url characters, IBM's length */
#define IAM_PAGE_DEFAULT 20
#define IAM_PAGE_MAX 100
#define IAM_ID_MAX 64 /* "ServiceId-<uuid>", "ApiKey-<uuid>", "IBMid-<32 hex>" */
#define IAM_IAM_ID_MAX 96
#define IAM_CRN_MAX 320
#define IAM_KID_MAX 64

/* Kinds of API key owners. */
enum iam_owner_kind {
	IAM_OWNER_NONE = 0,
	IAM_OWNER_USER,
	IAM_OWNER_SERVICE_ID,
};

struct iam_account {
	char id[40];
	char name[IAM_NAME_MAX + 32];
	char owner_iam_id[IAM_IAM_ID_MAX];
	int64_t created_ms;
};

struct iam_user {
	char iam_id[IAM_IAM_ID_MAX];
	char account_id[40];
	char name[IAM_NAME_MAX + 1];
	char email[IAM_EMAIL_MAX + 1];
	char state[16]; /* "ACTIVE" */
	int64_t created_ms;
};

struct iam_serviceid {
	char id[IAM_ID_MAX];
	char iam_id[IAM_IAM_ID_MAX];
	char account_id[40];
	char name[IAM_NAME_MAX + 1];
	char description[IAM_DESCRIPTION_MAX + 1];
	char crn[IAM_CRN_MAX];
	bool locked;
	int64_t version; /* entity_tag */
	int64_t created_ms, modified_ms;
};

struct iam_apikey {
	char id[IAM_ID_MAX];
	char iam_id[IAM_IAM_ID_MAX]; /* the owner */
	char account_id[40];
	char name[IAM_NAME_MAX + 1];
	char description[IAM_DESCRIPTION_MAX + 1];
	char crn[IAM_CRN_MAX];
	char created_by[IAM_IAM_ID_MAX];
	bool locked;
	int64_t version;
	int64_t created_ms, modified_ms;
};

/* An API key found by its hash, with what login needs to know about its owner. */
struct iam_apikey_login {
	struct iam_apikey key;
	unsigned char hash[32];
	enum iam_owner_kind owner_kind;
	bool owner_found;
	bool owner_locked; /* service ID locked, or user not ACTIVE */
	char owner_name[IAM_NAME_MAX + 1];
	char owner_email[IAM_EMAIL_MAX + 1];
	char owner_id[IAM_ID_MAX]; /* "ServiceId-…" / the user's iam_id */
};

struct iam_signing_key_row {
	char kid[IAM_KID_MAX];
	int64_t created;	     /* epoch seconds */
	int64_t retired_at;	     /* 0 = current */
	const unsigned char *sealed; /* borrowed from the statement */
	size_t sealed_len;
	const char *public_jwk; /* borrowed */
};

/*
 * Caller-supplied last step of a write job (the HTTP layer audits there); may
 * be NULL. @entity is the job's struct iam_user / iam_serviceid / iam_apikey
 * as it now stands (as it stood, for a deletion); @status the HTTP status
 * the operation answers with.
 */
struct iam_job_tail {
	int (*fn)(sqlite3 *conn, void *arg, const void *entity, int status, struct sealvm_err *err);
	void *arg;
};

struct iam_tokens; /* iam_token.c */

struct iam {
	/* --- identity half ---------------------------------------------------- */
	struct sealvm_db *db;
	const struct sealvm_secret *master;    /* borrowed */
	struct sealvm_secret *apikey_hash_key; /* seal_derive(master, "apikey-hash") */
	struct iam_config cfg;		       /* strings point at region/issuer below */
	char region[64];
	char issuer[256];
	int64_t (*now)(void); /* epoch seconds; tests may replace it */
	struct iam_tokens *tokens;
	struct http_service identity_http;
	pthread_mutex_t owners_lock; /* account → owner cache (accounts never change owner) */
	struct {
		char account_id[40];
		char owner_iam_id[IAM_IAM_ID_MAX];
	} owners[16];
	unsigned n_owners;
	/* Rows GETs name, by id, kept true by the state generation (rowcache.h). */
	struct sealvm_rowcache *serviceid_rows, *user_rows, *apikey_rows;

	/* --- access half (lib/iam/iam_access*.c; edited by that half only) ----- */
	struct iam_access_state *access;
	/* --- end of access half ------------------------------------------------- */
};

/* iam_identity.c: helpers shared by the identity files. */
int64_t iam_now_ms(const struct iam *iam);
void iam_format_time(int64_t ms, char out[32]); /* "2025-01-31T12:00:00+0000" */
/* Validates a name (1..IAM_NAME_MAX bytes, no control characters) for @field. */
int iam_check_name(const char *field, const char *s, struct sealvm_err *err);
int iam_check_description(const char *s, struct sealvm_err *err);
/* True when @s looks like an account id (32 lowercase hex). */
bool iam_account_id_valid(const char *s);
enum iam_owner_kind iam_owner_kind_of(const char *iam_id);
/* Random identifiers: a v4 UUID (36 characters), @n random bytes as lowercase hex. */
int iam_random_uuid(char out[37]);
int iam_random_hex(size_t n, char *out);

/*
 * The identity operations, for the handlers and tests. Every write runs in
 * one db_write job; @tail (may be NULL) is its last step. Errors: -EINVAL
 * (bad input, naming the field), -ENOENT (missing, or in another account),
 * -EEXIST (conflict: locked, duplicate, entity tag mismatch), -EIO.
 */
int iam_account_get(struct iam *iam, const char *account_id, struct iam_account *ret,
		    struct sealvm_err *err);
/* The owner of @account_id (cached); -ENOENT when no such account. */
int iam_account_owner(struct iam *iam, const char *account_id, char ret_owner[IAM_IAM_ID_MAX],
		      struct sealvm_err *err);

int iam_user_create(struct iam *iam, const char *account_id, const char *name, const char *email,
		    const struct iam_job_tail *tail, struct iam_user *ret, struct sealvm_err *err);
int iam_user_get(struct iam *iam, const char *account_id, const char *iam_id, struct iam_user *ret,
		 struct sealvm_err *err);
/* Calls @fn for each user of @account_id; a non-zero return stops (and is returned). */
int iam_user_list(struct iam *iam, const char *account_id,
		  int (*fn)(const struct iam_user *u, void *arg), void *arg,
		  struct sealvm_err *err);
int iam_user_delete(struct iam *iam, const char *account_id, const char *iam_id,
		    const struct iam_job_tail *tail, struct sealvm_err *err);

int iam_serviceid_create(struct iam *iam, const char *account_id, const char *name,
			 const char *description, const struct iam_job_tail *tail,
			 struct iam_serviceid *ret, struct sealvm_err *err);
int iam_serviceid_get(struct iam *iam, const char *account_id, const char *id,
		      struct iam_serviceid *ret, struct sealvm_err *err);
/* One page: @offset, @limit; *ret_total is the number of service IDs of the account. */
int iam_serviceid_list(struct iam *iam, const char *account_id, const char *name, unsigned offset,
		       unsigned limit, int (*fn)(const struct iam_serviceid *s, void *arg),
		       void *arg, int64_t *ret_total, struct sealvm_err *err);
/* NULL @name / @description: unchanged. @if_match NULL or "*": any version. */
int iam_serviceid_update(struct iam *iam, const char *account_id, const char *id,
			 const char *if_match, const char *name, const char *description,
			 const struct iam_job_tail *tail, struct iam_serviceid *ret,
			 struct sealvm_err *err);
/* Deletes the service ID, its API keys and its policies, in one job. -EEXIST when locked. */
int iam_serviceid_delete(struct iam *iam, const char *account_id, const char *id,
			 const struct iam_job_tail *tail, struct sealvm_err *err);
int iam_serviceid_set_locked(struct iam *iam, const char *account_id, const char *id, bool locked,
			     const struct iam_job_tail *tail, struct iam_serviceid *ret,
			     struct sealvm_err *err);

/*
 * Creates an API key for @owner_iam_id (a user or service ID of
 * @account_id). *@ret_value is the value (secret memory), the only time it
 * exists outside the caller's hands; only its keyed hash is stored.
 */
int iam_apikey_create(struct iam *iam, const char *account_id, const char *owner_iam_id,
		      const char *name, const char *description, const char *created_by,
		      const struct iam_job_tail *tail, struct iam_apikey *ret,
		      struct sealvm_secret **ret_value, struct sealvm_err *err);
int iam_apikey_get(struct iam *iam, const char *account_id, const char *id, struct iam_apikey *ret,
		   struct sealvm_err *err);
/* @owner_iam_id NULL: every key of the account. */
int iam_apikey_list(struct iam *iam, const char *account_id, const char *owner_iam_id,
		    unsigned offset, unsigned limit,
		    int (*fn)(const struct iam_apikey *k, void *arg), void *arg, int64_t *ret_total,
		    struct sealvm_err *err);
int iam_apikey_update(struct iam *iam, const char *account_id, const char *id, const char *if_match,
		      const char *name, const char *description, const struct iam_job_tail *tail,
		      struct iam_apikey *ret, struct sealvm_err *err);
int iam_apikey_delete(struct iam *iam, const char *account_id, const char *id,
		      const struct iam_job_tail *tail, struct sealvm_err *err);
int iam_apikey_set_locked(struct iam *iam, const char *account_id, const char *id, bool locked,
			  const struct iam_job_tail *tail, struct iam_apikey *ret,
			  struct sealvm_err *err);

/* iam_token.c */
int iam_tokens_new(struct iam *iam, struct sealvm_err *err);
void iam_tokens_free(struct iam *iam);
/* (Re)reads the signing keys that may still verify live tokens, unsealing new ones. */
int iam_tokens_load(struct iam *iam, struct sealvm_err *err);
/*
 * A prepared signing key: generated and sealed outside any job (slow), then
 * inserted by iam_signing_key_insert inside one.
 */
struct iam_new_signing_key {
	char kid[IAM_KID_MAX];
	unsigned char *sealed;
	size_t sealed_len;
	char *public_jwk;
	int64_t created;
};
int iam_signing_key_prepare(struct iam *iam, struct iam_new_signing_key *ret,
			    struct sealvm_err *err);
void iam_signing_key_prepared_done(struct iam_new_signing_key *k);
/* The verification keys of /identity/keys: {"keys": [JWK…]} (new reference). */
int iam_tokens_jwks(struct iam *iam, json_t **ret, struct sealvm_err *err);
/*
 * The token exchange of POST /identity/token, without HTTP: rate limit for
 * @remote (-EAGAIN, reason RATE_LIMITED, *ret_retry_after set), API key
 * check (-EINVAL APIKEY_NOT_FOUND for unknown, locked or deleted keys and
 * locked owners, one message for all), signing. *@ret is the response body
 * (new reference; holds the token); *@ret_login the key used (for audit).
 */
int iam_token_exchange(struct iam *iam, const char *remote, const char *apikey, size_t len,
		       json_t **ret, struct iam_apikey_login *ret_login, unsigned *ret_retry_after,
		       struct sealvm_err *err);
/* Signs a token for @p (kind USER or SERVICE_ID); *@ret new string, *@ret_exp its expiry. */
int iam_token_issue(struct iam *iam, const struct sealvm_principal *p, const char *sub,
		    const char *identifier, const char *email, char **ret, int64_t *ret_exp,
		    struct sealvm_err *err);
/* Signs @claims as they are, with the current key (tests, and nothing else). */
int iam_token_sign_claims(struct iam *iam, const json_t *claims, char **ret,
			  struct sealvm_err *err);
/* Cache statistics (tests, benchmarks). */
void iam_token_cache_stats(struct iam *iam, uint64_t *ret_hits, uint64_t *ret_misses);
/* Drops every cached verification (tests, benchmarks). */
void iam_token_cache_clear(struct iam *iam);
/* The rate limit check alone (tests). 0 allowed; -EAGAIN with *ret_retry_after. */
int iam_token_rate_check(struct iam *iam, const char *remote, unsigned *ret_retry_after);

/* iam_identity_store.c: SQL only; every function runs on the connection it is given. */
int iam_store_account_insert(sqlite3 *conn, const struct iam_account *a, struct sealvm_err *err);
int iam_store_account_count(sqlite3 *conn, int64_t *ret, struct sealvm_err *err);
int iam_store_account_get(sqlite3 *conn, const char *id, struct iam_account *ret,
			  struct sealvm_err *err);

int iam_store_user_insert(sqlite3 *conn, const struct iam_user *u, struct sealvm_err *err);
int iam_store_user_get(sqlite3 *conn, const char *iam_id, struct iam_user *ret,
		       struct sealvm_err *err);
int iam_store_user_list(sqlite3 *conn, const char *account_id,
			int (*fn)(const struct iam_user *u, void *arg), void *arg,
			struct sealvm_err *err);
int iam_store_user_delete(sqlite3 *conn, const char *iam_id, struct sealvm_err *err);

int iam_store_serviceid_insert(sqlite3 *conn, const struct iam_serviceid *s,
			       struct sealvm_err *err);
int iam_store_serviceid_get(sqlite3 *conn, const char *id, struct iam_serviceid *ret,
			    struct sealvm_err *err);
int iam_store_serviceid_get_by_iam_id(sqlite3 *conn, const char *iam_id, struct iam_serviceid *ret,
				      struct sealvm_err *err);
int iam_store_serviceid_list(sqlite3 *conn, const char *account_id, const char *name,
			     unsigned offset, unsigned limit,
			     int (*fn)(const struct iam_serviceid *s, void *arg), void *arg,
			     int64_t *ret_total, struct sealvm_err *err);
/* Writes name, description, locked, version, modified of @s. */
int iam_store_serviceid_update(sqlite3 *conn, const struct iam_serviceid *s,
			       struct sealvm_err *err);
int iam_store_serviceid_delete(sqlite3 *conn, const char *id, struct sealvm_err *err);

int iam_store_apikey_insert(sqlite3 *conn, const struct iam_apikey *k, const unsigned char hash[32],
			    struct sealvm_err *err);
int iam_store_apikey_get(sqlite3 *conn, const char *id, struct iam_apikey *ret,
			 struct sealvm_err *err);
int iam_store_apikey_list(sqlite3 *conn, const char *account_id, const char *owner_iam_id,
			  unsigned offset, unsigned limit,
			  int (*fn)(const struct iam_apikey *k, void *arg), void *arg,
			  int64_t *ret_total, struct sealvm_err *err);
int iam_store_apikey_update(sqlite3 *conn, const struct iam_apikey *k, struct sealvm_err *err);
int iam_store_apikey_delete(sqlite3 *conn, const char *id, struct sealvm_err *err);
/* Deletes every key of @owner_iam_id; returns how many. */
int iam_store_apikey_delete_by_owner(sqlite3 *conn, const char *owner_iam_id,
				     struct sealvm_err *err);
/* The key with keyed hash @hash, joined with its owner. -ENOENT when none. */
int iam_store_apikey_login(sqlite3 *conn, const unsigned char hash[32],
			   struct iam_apikey_login *ret, struct sealvm_err *err);

int iam_store_signing_key_insert(sqlite3 *conn, const char *kid, int64_t created,
				 const unsigned char *sealed, size_t sealed_len,
				 const char *public_jwk, struct sealvm_err *err);
/* Marks every current key but @kid retired at @when. */
int iam_store_signing_key_retire_others(sqlite3 *conn, const char *kid, int64_t when,
					struct sealvm_err *err);
/* Keys not retired before @retired_after (0: all), newest first. */
int iam_store_signing_key_list(sqlite3 *conn, int64_t retired_after,
			       int (*fn)(const struct iam_signing_key_row *k, void *arg), void *arg,
			       struct sealvm_err *err);
int iam_store_signing_key_count(sqlite3 *conn, int64_t *ret, struct sealvm_err *err);

/* iam_identity_http.c */
void iam_identity_http_init(struct iam *iam);

/*
 * Provided by the access half: deletes every policy whose subject is
 * @iam_id in @account_id, on @conn inside the caller's write job (so that a
 * deleted service ID or user takes its policies with it atomically).
 * Returns the number deleted or a negative errno.
 */
int iam_access_delete_subject_policies(sqlite3 *conn, const char *account_id, const char *iam_id,
				       struct sealvm_err *err);

/* ========================= access half ===================================== */
/*
 * Edited by the access half only (iam_access.c, iam_access_store.c,
 * iam_access_http.c, iam_roles.c). docs/internals/iam-access.md explains.
 *
 * Wiring: iam_new calls iam_access_init(iam, err) once iam->db is set, and
 * iam_free calls iam_access_done(iam) before the database is closed.
 */
#define IAM_MIGRATION_OWNER_ACCESS "iam-access"
#define IAM_ACCESS_SERVICE_NAME "iam-access"
#define IAM_ROLE_CRN_PLATFORM "crn:v1:bluemix:public:iam::::role:"
#define IAM_ROLE_CRN_SERVICE "crn:v1:bluemix:public:iam::::serviceRole:"

/* Limits on what a client controls in a policy. */
#define IAM_POLICY_MAX_ROLES 16
#define IAM_POLICY_MAX_ATTRIBUTES 8
#define IAM_POLICY_VALUE_MAX 127 /* bytes of an attribute value (http_target.resource) */
#define IAM_POLICY_DESCRIPTION_MAX 300
#define IAM_POLICIES_PER_ACCOUNT_MAX 4020 /* IBM's per-account limit */

struct iam_access_state;

int iam_access_init(struct iam *iam, struct sealvm_err *err);
void iam_access_done(struct iam *iam);

/* iam_roles.c: services, roles and actions as data. */
struct iam_role {
	const char *name;	    /* "Reader" */
	bool platform;		    /* role:<name> (true) or serviceRole:<name> */
	const char *inherits;	    /* a role of the same service and kind, or NULL */
	const char *const *actions; /* NULL-terminated; "a.b.*" = every action "a.b.<x>" */
};

struct iam_service {
	const char *name;	   /* serviceName in policies: "kms" */
	const char *action_prefix; /* first dot-component of its actions: "kms", "iam" */
	bool account_management;   /* not covered by a policy without serviceName */
	const struct iam_role *roles;
	size_t n_roles;
};

size_t iam_roles_services(const struct iam_service **ret);
const struct iam_service *iam_roles_service(const char *name);
/* The service an action belongs to (by its first dot-component), or NULL. */
const struct iam_service *iam_roles_service_of_action(const char *action);
/* Splits a role CRN; -EINVAL unless IAM_ROLE_CRN_PLATFORM/SERVICE + [A-Za-z0-9]{1,64}. */
int iam_roles_parse_crn(const char *crn, bool *ret_platform, const char **ret_name);
/* @svc's role named by @crn, or NULL. */
const struct iam_role *iam_roles_find(const struct iam_service *svc, const char *crn);
bool iam_role_allows(const struct iam_service *svc, const struct iam_role *role,
		     const char *action);
/* True for the platform roles a policy on every service may carry (Viewer … Administrator). */
bool iam_roles_generic_name(const char *crn);
/* The first role of @svc (table order: least privilege first) that allows @action, or NULL. */
const struct iam_role *iam_roles_first_allowing(const struct iam_service *svc, const char *action);

/* iam_access_store.c: SQL only. */
struct iam_policy_rule {
	const char *role_crn;
	const char *service_name;     /* "" = every service but account management ones */
	const char *service_instance; /* "" = any; likewise below */
	const char *resource_type;
	const char *resource;
	bool resource_match; /* resource is a stringMatch pattern ('*', '?') */
	const char *key_ring;
	const char *region;
	const char *subject_instance; /* authorization: the source instance */
};

/* A stored policy; strings borrowed (from a statement or the caller). */
struct iam_policy_row {
	const char *id;
	const char *account_id;
	const char *type;	 /* "access" | "authorization" */
	const char *subject;	 /* iam_id, or the source service name */
	const char *description; /* may be NULL */
	const char *subjects;	 /* JSON texts as returned by the API */
	const char *roles;
	const char *resources;
	const char *etag;
	const char *created_at;
	const char *created_by_id;
	const char *last_modified_at;
	const char *last_modified_by_id;
};

struct iam_policy_filter {
	const char *account_id; /* required */
	const char *type;	/* NULL: any */
	const char *subject;
	const char *service_name;
};

/* A candidate rule of a decision (borrowed from the statement). */
struct iam_rule_row {
	const char *role_crn;
	const char *service_name;
	const char *subject_instance;
	const char *resource;
	bool resource_match;
	const char *key_ring;
	const char *region;
};

struct iam_decide_query {
	const char *account_id, *type, *subject;
	const char *service_name, *service_instance, *resource_type, *resource;
};

/* A non-zero return stops a scan and is returned by it. */
typedef int (*iam_policy_row_fn)(const struct iam_policy_row *row, void *userdata,
				 struct sealvm_err *err);
typedef int (*iam_rule_fn)(const struct iam_rule_row *row, void *userdata);

int iam_access_store_insert(sqlite3 *conn, const struct iam_policy_row *row,
			    const struct iam_policy_rule *rules, size_t n_rules,
			    struct sealvm_err *err);
/* -ENOENT when no policy @row->id in @row->account_id. */
int iam_access_store_update(sqlite3 *conn, const struct iam_policy_row *row,
			    const struct iam_policy_rule *rules, size_t n_rules,
			    struct sealvm_err *err);
int iam_access_store_delete(sqlite3 *conn, const char *account_id, const char *id,
			    struct sealvm_err *err);
/* Deletes the access policies of @subject in @account_id; returns how many. */
int iam_access_store_delete_subject(sqlite3 *conn, const char *account_id, const char *subject,
				    struct sealvm_err *err);
int iam_access_store_count(sqlite3 *conn, const char *account_id, int64_t *ret,
			   struct sealvm_err *err);
int iam_access_store_get(sqlite3 *conn, const char *id, iam_policy_row_fn fn, void *userdata,
			 struct sealvm_err *err);
int iam_access_store_list(sqlite3 *conn, const struct iam_policy_filter *f, iam_policy_row_fn fn,
			  void *userdata, struct sealvm_err *err);
int iam_access_store_decide_prepare(sqlite3 *conn, sqlite3_stmt **ret, struct sealvm_err *err);
/* Runs @st (from decide_prepare on @conn) for @q; resets it before returning. */
int iam_access_store_decide(sqlite3 *conn, sqlite3_stmt *st, const struct iam_decide_query *q,
			    iam_rule_fn fn, void *userdata, struct sealvm_err *err);

/* iam_access.c: policy logic, for the handlers and tests. */
struct iam_policy_spec {
	bool authorization;
	const char *subject;				    /* borrowed from the parsed body */
	const char *description;			    /* borrowed; NULL when absent */
	struct iam_policy_rule rules[IAM_POLICY_MAX_ROLES]; /* strings borrowed from the body */
	size_t n_rules;
	char *subjects_json; /* owned: normalised texts to store */
	char *roles_json;
	char *resources_json;
};

/*
 * Validates a policy body (borrowed; must outlive @ret) for @account_id.
 * -EINVAL naming the field (reasons INVALID_BODY, INVALID_TYPE,
 * INVALID_SUBJECT, INVALID_ROLE, INVALID_RESOURCE), -EACCES
 * (ACCOUNT_MISMATCH) for another account, -ENOMEM. Fills @ret on success
 * (release with iam_policy_spec_done).
 */
int iam_policy_parse(const json_t *body, const char *account_id, struct iam_policy_spec *ret,
		     struct sealvm_err *err);
void iam_policy_spec_done(struct iam_policy_spec *spec);
/* A stored policy as the API returns it (new reference), or NULL without memory. */
json_t *iam_policy_json(const struct iam_policy_row *row);
/* "crn:v1:sealvm:public:iam-access::a/<account>::policy:<id>" */
void iam_policy_crn(const char *account_id, const char *id, char *buf, size_t size);
/* A fresh UUIDv4 id and a fresh ETag value; -EIO when the RNG fails. */
int iam_policy_new_id(char ret[37]);
int iam_policy_new_etag(char ret[40]);
/* "2025-01-31T12:00:00.123Z" */
void iam_policy_time(char ret[32]);
/* True when @if_match (an If-Match header) names @etag, or is "*". */
bool iam_policy_etag_matches(const char *if_match, const char *etag);

/* iam_access.c: the state (statement cache for decisions, the HTTP service). */
struct sealvm_db *iam_access_db(struct iam *iam);
/* Where iam_access_http.c keeps the service it returns (inside the access state). */
struct http_service *iam_access_service_slot(struct iam *iam);

#endif
