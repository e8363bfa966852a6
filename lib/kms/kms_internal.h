/* SPDX-License-Identifier: Apache-2.0 */
/*
 * kms_internal.h — what the key service's files share. Not a public interface.
 *
 *   kms.c               the service object, the state machine, the operations
 *                       (create, wrap, unwrap, rotate, delete, …) and their DB jobs
 *   kms_ctext.c         the wrapped-DEK (ciphertext) format and its AAD
 *   kms_import.c        import tokens: RSA key pair, nonce, secure import checks
 *   kms_registrations.c registrations and lifecycle notifications
 *   kms_store.c         SQL only
 *   kms_http.c          handlers, route table, resolvers, the KP error envelope
 *
 * Handlers never touch SQLite; the store never sees HTTP. Key material is
 * only ever in struct sealvm_secret; the store sees sealed blobs and keystore
 * references only.
 */
#ifndef SEALVM_KMS_INTERNAL_H
#define SEALVM_KMS_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>
#include <sqlite3.h>

#include "sealvm/keystore.h"
#include "sealvm/kms.h"
#include "sealvm/rc.h"

/* Key states (Key Protect's integers). */
enum kms_state {
	KMS_PREACTIVE = 0,
	KMS_ACTIVE = 1,
	KMS_SUSPENDED = 2,
	KMS_DEACTIVATED = 3,
	KMS_DESTROYED = 5,
};

/* What can be asked of one key: the columns of the state machine. */
enum kms_action {
	KMS_A_READ,	/* GET /keys/{id}, /metadata */
	KMS_A_VERSIONS, /* GET /keys/{id}/versions */
	KMS_A_WRAP,
	KMS_A_UNWRAP,
	KMS_A_REWRAP,
	KMS_A_ROTATE,
	KMS_A_DISABLE,
	KMS_A_ENABLE,
	KMS_A_SET_DELETION,
	KMS_A_UNSET_DELETION,
	KMS_A_DELETE,
	KMS_A_RESTORE,
	KMS_A_PURGE,
	KMS_A_REGISTER,	  /* create a registration */
	KMS_A_ALIAS,	  /* create an alias */
	KMS_A_POLICY_SET, /* PUT a key policy */
	KMS__A_MAX,
};

/* Its name in messages and tests: "wrap", "setKeyForDeletion", … */
const char *kms_action_name(enum kms_action a);

#define KMS_NAME_MAX 90
#define KMS_DESCRIPTION_MAX 240
#define KMS_ALIAS_MIN 2
#define KMS_ALIAS_MAX 90
#define KMS_ALIASES_PER_KEY 5
#define KMS_ALIASES_PER_INSTANCE 1000
#define KMS_IAM_ID_MAX 128
#define KMS_RING_MAX 64

/* One key's row (no material). Times are epoch milliseconds; 0 = never/none. */
struct kms_key {
	char id[KMS_ID_MAX];
	char account_id[KMS_ID_MAX];
	char instance[KMS_ID_MAX];
	char crn[320];
	char name[KMS_NAME_MAX + 2];
	char description[KMS_DESCRIPTION_MAX + 2];
	char key_ring[KMS_RING_MAX + 1];
	bool extractable; /* true: a standard key */
	bool imported;
	int state; /* as stored; kms_effective_state adds expiry */
	int bits;
	int64_t created_ms;
	char created_by[KMS_IAM_ID_MAX];
	int64_t updated_ms;
	char updated_by[KMS_IAM_ID_MAX];
	int64_t action_ms;  /* the last state change (enable waits enable_delay_s after it) */
	int64_t rotated_ms; /* the last rotation */
	int64_t expiration_ms;
	int version; /* the newest version's number (1, 2, …) */
	char version_id[KMS_ID_MAX];
	int64_t version_ms;
	bool dual_auth;
	char deletion_by[KMS_IAM_ID_MAX]; /* dual auth: who set the key for deletion */
	int64_t deletion_expires_ms;
	int64_t deleted_ms;
	char deleted_by[KMS_IAM_ID_MAX];
};

/* One version of a root key: its keystore reference. */
struct kms_version {
	char key_id[KMS_ID_MAX];
	int version;
	char id[KMS_ID_MAX];
	int64_t created_ms;
	int bytes; /* 16, 24, 32 */
	unsigned char ref[KEYSTORE_REF_MAX];
	size_t ref_len;
};

struct kms_registration {
	char key_id[KMS_ID_MAX];
	char resource_crn[512];
	char instance[KMS_ID_MAX];
	char service[64];
	char description[KMS_DESCRIPTION_MAX + 2];
	bool prevent_deletion;
	int64_t created_ms;
	char created_by[KMS_IAM_ID_MAX];
	int64_t updated_ms;
	char updated_by[KMS_IAM_ID_MAX];
	char version_id[KMS_ID_MAX];
	int64_t version_ms;
};

struct kms_import_token {
	char instance[KMS_ID_MAX];
	char account_id[KMS_ID_MAX];
	int64_t created_ms;
	int64_t expires_ms;
	int max_retrievals;
	int remaining;
	unsigned char nonce[12];
	char name[128];	    /* its keystore name */
	unsigned char *pub; /* DER SubjectPublicKeyInfo (malloc'ed) */
	size_t pub_len;
	unsigned char *ref; /* keystore reference of the private key (malloc'ed) */
	size_t ref_len;
};
void kms_import_token_done(struct kms_import_token *t);

/* ---- the service object ----------------------------------------------------------------- */

enum kms_stmt_id {
	KMS_ST_KEY_BY_ID,
	KMS_ST_KEY_BY_ALIAS,
	KMS_ST_VERSION_BY_ID,
	KMS_ST_VERSION_BY_NUMBER,
	KMS__ST_MAX,
};

#define KMS_LISTENERS_MAX 16

struct kms {
	struct kms_deps deps;
	struct kms_config cfg;
	struct http_service http;

	struct kms_listener listeners[KMS_LISTENERS_MAX];
	unsigned n_listeners;
	/*
	 * Keys ("instance/id-or-alias") and versions ("key/version-id/number") an
	 * operation reads, kept true by the state generation (rowcache.h). A
	 * version holds the keystore reference: a sealed blob or a token handle,
	 * never material in clear.
	 */
	struct sealvm_rowcache *key_rows, *version_rows;
};

/* Room for a keystore name "<instance>/<key>/<version>" (and the import-token names). */
#define KS_NAME_BUF 160

/* kms_http.c: fills kms->http (routes, error formatter). */
void kms_http_init(struct kms *kms);
/*
 * The HTTP status Key Protect answers for @err's reason code (409 for
 * KEY_ACTION_INVALID_STATE_ERR, 422 for UNPROCESSABLE_CIPHERTEXT_ERR, …);
 * for reasons it does not know, the status of errno @code.
 */
int kms_reason_status(const struct sealvm_err *err, int code);

/* Milliseconds since the epoch (wall clock: times the API shows). */
int64_t kms_now_ms(void);
/* "YYYY-MM-DDTHH:MM:SSZ" of @ms; @buf has room for 32. */
const char *kms_time_text(int64_t ms, char *buf, size_t size);
/* Parses RFC 3339 ("2030-01-02T03:04:05Z", fractions and ±hh:mm offsets accepted). */
int kms_time_parse(const char *s, int64_t *ret_ms);

/*
 * Room for one more item in the array @v of @n items of @size bytes that has
 * room for *@cap: @v itself, a larger array that replaces it (realloc: @v is
 * gone then, *@cap grown), or NULL for no memory (@v and *@cap unchanged).
 */
void *kms_grow(void *v, size_t n, size_t *cap, size_t size);

/* A new random (v4) UUID, lower case, and the checks on the texts we accept as ids. */
int kms_uuid_new(char out[KMS_ID_MAX]);
bool kms_uuid_valid(const char *s);
int kms_uuid_parse(const char *s, unsigned char out[16]);
void kms_uuid_format(const unsigned char u[16], char out[KMS_ID_MAX]);

/* ---- who is asking, and where the audit event goes -------------------------------------- */

/*
 * A request's context for the operations: the acting principal, the
 * instance, and either the HTTP request (the ladder's audit, written inside
 * write jobs with http_request_audit_in_job) or, for the in-process API,
 * what the service's own event needs.
 */
struct kms_call {
	struct kms *kms;
	const struct sealvm_principal *p;
	struct rc_instance inst;
	struct http_request *req; /* HTTP; NULL in-process */
	int ok_status;		  /* the status of success (0: the operation's usual one) */
	bool rotate_imported;	  /* rotate: the new material came from the caller */
	/* in-process: */
	const char *audit_action;
	char correlation_id[KMS_ID_MAX];
	struct http_target target;
	json_t *request_data;  /* owned */
	json_t *response_data; /* owned */
	bool audited;
};

/* Looks up @instance (a kms instance of @account_id): -ENOENT INSTANCE_NOT_FOUND_ERR. */
int kms_instance_get(struct kms *kms, const char *account_id, const char *instance,
		     struct rc_instance *ret, struct sealvm_err *err);
/* Looks up a key by id or alias in @instance (read pool): -ENOENT KEY_NOT_FOUND_ERR. */
int kms_key_lookup(struct kms *kms, const char *instance, const char *id_or_alias,
		   struct kms_key *ret, struct sealvm_err *err);
/* Fills @t for @key (NULL: the instance itself). */
void kms_target(const struct rc_instance *inst, const struct kms_key *key, struct http_target *t);

/*
 * The in-process start of a call: the instance in the principal's account,
 * the key (@key NULL: none; found into *@ret_key), the target, and the same
 * decision (@iam_action) the ladder asks for over HTTP. Whatever it returns,
 * end the call with kms_call_end, which records @audit_action's event.
 */
int kms_call_begin(struct kms_call *c, struct kms *kms, const struct sealvm_principal *p,
		   const char *instance, const char *key, const char *iam_action,
		   const char *audit_action, struct kms_key *ret_key, struct sealvm_err *err);
/*
 * Ends an in-process call whose result is @r and error @e: records its event
 * (kms_call_finish), frees it (kms_call_done) and, on failure, copies @e to
 * @err unless @err holds an error already. Returns the call's final result.
 */
int kms_call_end(struct kms_call *c, int r, struct sealvm_err *e, struct sealvm_err *err);
/* Who a principal is in the rows a change writes: its IAM id, else its name, else "unknown". */
const char *kms_principal_id(const struct sealvm_principal *p);

/* Sets the target the audit event names (the new key, on create). */
void kms_call_set_target(struct kms_call *c, const struct http_target *t);
/* Sets the audit data of the call (steals both; NULL is fine). */
void kms_call_audit_data(struct kms_call *c, json_t *request_data, json_t *response_data);
/* Inside a write job: the call's audit event, committed with the change. */
int kms_call_audit_in_job(struct kms_call *c, sqlite3 *conn, int status, struct sealvm_err *err);
/* In-process calls: records the event in a job of its own unless already done (fail closed). */
int kms_call_finish(struct kms_call *c, int r, const struct sealvm_err *failure,
		    struct sealvm_err *err);
void kms_call_done(struct kms_call *c);

/* ---- the state machine -------------------------------------------------------------------- */

/* The state the API shows: Active or Suspended past the expiration date is Deactivated. */
int kms_effective_state(const struct kms_key *k, int64_t now_ms);

/*
 * May @a be done on @k at @now_ms? 0, or the refusal: -EINVAL KEY_ROOT_REQ_ERR
 * (root-key-only action on a standard key), -EINVAL KEY_ROOT_REQ_REG_ERR,
 * -EALREADY KEY_ACTION_INVALID_STATE_ERR, -EALREADY KEY_INVALID_STATE_ERR
 * (registrations), -ESTALE KEY_DELETED_ERR, and the timing rules: -EAGAIN
 * REQ_TOO_EARLY_ERR (enable, purge), -EAGAIN KEY_ROTATION_NOT_PERMITTED,
 * -EINVAL KEY_RESTORE_EXPIRED, -EINVAL KEY_EXPIRED_ERR (restore after the
 * expiration date).
 */
int kms_check_action(const struct kms_config *cfg, const struct kms_key *k, enum kms_action a,
		     int64_t now_ms, struct sealvm_err *err);

/* ---- the ciphertext format (kms_ctext.c) ---------------------------------------------------- */

#define KMS_CTEXT_MAGIC "SVK"
#define KMS_CTEXT_FORMAT 1
#define KMS_CTEXT_HEADER (4 + 16) /* magic + format byte, version uuid */
#define KMS_CTEXT_OVERHEAD (KMS_CTEXT_HEADER + KEYSTORE_IV_BYTES + KEYSTORE_TAG_BYTES)

/* A parsed ciphertext: pointers into the decoded blob. */
struct kms_ctext {
	const unsigned char *header; /* KMS_CTEXT_HEADER bytes */
	char version_id[KMS_ID_MAX];
	const unsigned char *iv;
	const unsigned char *ct;
	size_t ct_len;
	const unsigned char *tag;
};

/* Canonical base64 → a new blob; -EINVAL INVALID_FIELD_ERR:ciphertext. */
int kms_ctext_decode(const char *b64, size_t len, unsigned char **ret, size_t *ret_len,
		     struct sealvm_err *err);
/* Splits a blob; -EINVAL INVALID_FIELD_ERR:ciphertext when it is not one of ours. */
int kms_ctext_parse(const unsigned char *blob, size_t len, struct kms_ctext *ret,
		    struct sealvm_err *err);
/* The header of a new ciphertext for version @version_id. */
int kms_ctext_header(const char *version_id, unsigned char out[KMS_CTEXT_HEADER]);
/*
 * The GCM additional data: a domain label, the header, the account, the
 * instance, the key id, the version number and each of the caller's AAD
 * strings, each length-prefixed. New malloc'ed buffer.
 */
int kms_ctext_aad(const unsigned char header[KMS_CTEXT_HEADER], const char *account_id,
		  const char *instance, const char *key_id, int version, const char *const *aad,
		  size_t n_aad, unsigned char **ret, size_t *ret_len);
/* header | iv | ct | tag as base64 (new string). */
int kms_ctext_encode(const unsigned char header[KMS_CTEXT_HEADER],
		     const unsigned char iv[KEYSTORE_IV_BYTES], const unsigned char *ct,
		     size_t ct_len, const unsigned char tag[KEYSTORE_TAG_BYTES], char **ret);

/* The keystore name of a key version: "<instance>/<key>/<version>". */
void kms_version_name(const char *instance, const char *key_id, int version, char *buf,
		      size_t size);

/*
 * DEK text rules for `plaintext`: canonical padded base64 of
 * 1..KMS_PLAINTEXT_MAX bytes → new secret with the bytes. -EINVAL
 * INVALID_FIELD_ERR:plaintext otherwise (never quoting it).
 */
int kms_plaintext_decode(const char *text, size_t len, struct sealvm_secret **ret,
			 struct sealvm_err *err);
/*
 * The same for any material field: canonical padded base64 of 1..@max bytes
 * → new secret; -EINVAL INVALID_FIELD_ERR:@field otherwise.
 */
int kms_b64_secret_decode(const char *text, size_t len, size_t max, const char *field,
			  struct sealvm_secret **ret, struct sealvm_err *err);
/* Bytes → their base64 text, in a new secret. */
int kms_plaintext_encode(const struct sealvm_secret *raw, struct sealvm_secret **ret);
/* Checks an `aad` list: at most KMS_AAD_MAX_ITEMS strings of ≤ KMS_AAD_ITEM_MAX characters. */
int kms_aad_check(const char *const *aad, size_t n, struct sealvm_err *err);

/* ---- operations (kms.c) ------------------------------------------------------------------ */

/* What a key create/import asks for (strings borrowed). */
struct kms_create_input {
	const char *name;
	const char *description;
	const char *key_ring;
	const char *const *aliases;
	size_t n_aliases;
	int64_t expiration_ms;
	bool extractable;
	/* import: */
	const struct sealvm_secret *payload; /* plain material (already decoded), or NULL */
	bool secure;			     /* payload came under the import token */
};

int kms_op_create(struct kms_call *c, const struct kms_create_input *in, struct kms_key *ret,
		  struct sealvm_err *err);

/* wrap: @plain NULL → generate. */
int kms_op_wrap(struct kms_call *c, const struct kms_key *k, const struct sealvm_secret *plain_text,
		const char *const *aad, size_t n_aad, struct kms_wrap_result *ret,
		struct sealvm_err *err);
/* unwrap; @rewrap_always: the rewrap action (always re-encrypts under the newest version). */
int kms_op_unwrap(struct kms *kms, const struct kms_key *k, const char *ciphertext,
		  const char *const *aad, size_t n_aad, bool rewrap_always,
		  struct kms_unwrap_result *ret, struct sealvm_err *err);

/* State changes, each one write job with its audit event; then notifications. */
int kms_op_rotate(struct kms_call *c, const char *key_id, const struct sealvm_secret *payload,
		  struct sealvm_err *err);
int kms_op_set_state(struct kms_call *c, const char *key_id, enum kms_action a, struct kms_key *ret,
		     struct sealvm_err *err);
int kms_op_delete(struct kms_call *c, const char *key_id, bool force, struct kms_key *ret,
		  struct sealvm_err *err);
int kms_op_purge(struct kms_call *c, const char *key_id, struct kms_key *ret,
		 struct sealvm_err *err);
int kms_op_key_policy(struct kms_call *c, const char *key_id, bool dual_auth, struct kms_key *ret,
		      struct sealvm_err *err);
int kms_op_instance_policy_get(struct kms *kms, const char *instance, bool *ret_dual_auth,
			       int64_t *ret_updated_ms, char *ret_updated_by,
			       struct sealvm_err *err);
int kms_op_instance_policy_set(struct kms_call *c, bool dual_auth, struct sealvm_err *err);
int kms_op_alias_create(struct kms_call *c, const char *key_id, const char *alias,
			int64_t *ret_created_ms, struct sealvm_err *err);
int kms_op_alias_delete(struct kms_call *c, const char *key_id, const char *alias,
			struct sealvm_err *err);
/* The standard key's material (secret), or -EINVAL KEY_ROOT_REQ... for root keys. */
int kms_op_payload(struct kms *kms, const struct kms_key *k, struct sealvm_secret **ret,
		   struct sealvm_err *err);

/* Checks an alias against Key Protect's rules: -EINVAL INVALID_FIELD_ERR:alias. */
int kms_alias_check(const char *alias, struct sealvm_err *err);

/* Lists: each row to @fn. */
struct kms_list_query {
	const char *instance;
	const char *key_ring; /* NULL: all */
	unsigned state_mask;  /* bit n = state n */
	int extractable;      /* -1 any, 0 root, 1 standard */
	unsigned limit, offset;
	int64_t now_ms;
};
int kms_op_list(struct kms *kms, const struct kms_list_query *q,
		int (*fn)(const struct kms_key *k, void *arg), void *arg, struct sealvm_err *err);
int kms_op_aliases(struct kms *kms, const char *key_id, json_t **ret, struct sealvm_err *err);
int kms_op_versions(struct kms *kms, const char *key_id,
		    int (*fn)(const struct kms_version *v, void *arg), void *arg,
		    struct sealvm_err *err);

/* ---- registrations and notifications (kms_registrations.c) --------------------------------- */

int kms_op_registration_put(struct kms_call *c, const char *key_id, const char *resource_crn,
			    const char *description, bool prevent, bool *ret_created,
			    struct kms_registration *ret, struct sealvm_err *err);
int kms_op_registration_delete(struct kms_call *c, const char *key_id, const char *resource_crn,
			       struct sealvm_err *err);
int kms_op_registrations(struct kms *kms, const char *instance, const char *key_id,
			 const char *crn_filter, unsigned limit, unsigned offset,
			 int (*fn)(const struct kms_registration *r, void *arg), void *arg,
			 struct sealvm_err *err);
/* After a lifecycle change committed: tells the registered services. */
void kms_notify(struct kms *kms, enum kms_event_type type, const struct kms_key *k,
		const char *old_version);
/* The service-name field of a CRN ("" when @crn is no CRN); false when malformed. */
bool kms_crn_service(const char *crn, char *buf, size_t size);

/* ---- import tokens (kms_import.c) ---------------------------------------------------------- */

/* POST /import_token: a new RSA-4096 pair and nonce for the call's instance. */
int kms_op_import_token_create(struct kms_call *c, int64_t expiration_s, int max_retrievals,
			       struct kms_import_token *ret, struct sealvm_err *err);
/* GET /import_token: counts one retrieval. */
int kms_op_import_token_get(struct kms_call *c, struct kms_import_token *ret,
			    struct sealvm_err *err);
/*
 * Secure import: decrypts @payload_ct (RSAES-OAEP-SHA-256 under the token's
 * key) and checks @encrypted_nonce (AES-GCM under that material, @iv) against
 * the token's nonce. *@ret is the material. Errors: -ENOENT
 * IMPORT_TOKEN_NOT_FOUND_ERR, -EAGAIN IMPORT_TOKEN_EXPIRED_ERR,
 * -EINVAL INVALID_FIELD_ERR:payload|encryptedNonce|iv|encryptionAlgorithm,
 * INCORRECT_NONCE_IV_ERR, INCORRECT_NONCE_ERR.
 */
int kms_import_unwrap(struct kms *kms, const char *instance, const char *algorithm,
		      const char *payload, const char *encrypted_nonce, const char *iv,
		      struct sealvm_secret **ret, struct sealvm_err *err);

/* ---- request bodies (kms_request.c) ------------------------------------------------------- */

enum kms_req_kind {
	KMS_REQ_CREATE,	    /* POST /keys: the envelope with one key */
	KMS_REQ_WRAP,	    /* {plaintext?, aad?}, or no body */
	KMS_REQ_UNWRAP,	    /* {ciphertext, aad?} (unwrap, rewrap) */
	KMS_REQ_ROTATE,	    /* {payload?, encryptionAlgorithm?, encryptedNonce?, iv?} or none */
	KMS_REQ_EMPTY,	    /* disable, enable, setKeyForDeletion, …: none, or {} */
	KMS_REQ_RESTORE,    /* anything JSON, ignored (a payload in it is wiped) */
	KMS_REQ_KEY_POLICY, /* the envelope with {type?, dualAuthDelete: {enabled}} */
	KMS_REQ_INSTANCE_POLICY, /* the envelope with {policy_type, policy_data: {enabled}} */
	KMS_REQ_REGISTRATION, /* the envelope with {preventKeyDeletion?, description?}, or none */
	KMS_REQ_IMPORT_TOKEN, /* {expiration?, maxAllowedRetrievals?}, or none */
	KMS__REQ_MAX,
};

/* A parsed body. Strings point into @body; free everything with kms_request_done. */
struct kms_request {
	enum kms_req_kind kind;
	json_t *body; /* NULL when there was none */
	/* create */
	const char *name;
	const char *description; /* create, registration */
	const char **aliases;	 /* malloc'ed array of borrowed strings */
	size_t n_aliases;
	int64_t expiration_ms;
	bool extractable;
	/* create, rotate: the payload as sent (text: base64, or the RSA ciphertext's base64) */
	struct sealvm_secret *payload;
	const char *algorithm;
	const char *encrypted_nonce;
	const char *iv;
	/* wrap, unwrap */
	struct sealvm_secret *plaintext; /* the text as sent */
	const char *ciphertext;
	const char **aad; /* malloc'ed array of borrowed strings */
	size_t n_aad;
	/* policies */
	bool enabled;
	/* registration */
	bool prevent;
	/* import token */
	int64_t expiration_s;
	int max_retrievals;
};

/*
 * Parses @len bytes of @body (Content-Type @content_type, NULL: none) as a
 * body of @kind. -ENOTSUP UNSUPPORTED_MEDIA_TYPE_ERR, -EINVAL NO_BODY_ERR,
 * BAD_BODY_ERR, COLLECTION_TOTAL_MISMATCH_ERR, INVALID_FIELD_ERR:<field>,
 * BODY_QUERY_PARAM_MISMATCH_ERR, -ENOMEM. On failure @ret holds nothing.
 */
int kms_request_parse(enum kms_req_kind kind, const char *content_type, const unsigned char *body,
		      size_t len, struct kms_request *ret, struct sealvm_err *err);
void kms_request_done(struct kms_request *r);

/* sealvm_err_set with the reason "@kp:@field" (a Key Protect code and the field it is about). */
int kms_field_error(struct sealvm_err *err, int code, const char *kp, const char *field,
		    const char *fmt, ...) _printf_(5, 6);

/* ---- the store (kms_store.c) ---------------------------------------------------------------- */

/*
 * SQL only. Each function runs on the connection it is given: a borrowed
 * reader, or the writer's inside a db_write job (the *_w and write
 * functions). Errors: -ENOENT with the Key Protect reason of what is missing
 * (KEY_NOT_FOUND_ERR, REGISTRATION_NOT_FOUND_ERR, …), -EEXIST for a
 * duplicate alias (KEY_ALIAS_NOT_UNIQUE_ERR), db_error's otherwise. Listing
 * functions call @fn per row and stop at its first negative result.
 * kms_store_policy_get returns 1 when the instance has a stored policy, 0
 * when it has the default (no dual authorization).
 */

int kms_store_key_get(struct kms *kms, sqlite3 *conn, const char *instance, const char *id_or_alias,
		      struct kms_key *ret, struct sealvm_err *err);
/* In a write job: the row by id (any state). */
int kms_store_key_get_w(sqlite3 *conn, const char *instance, const char *key_id,
			struct kms_key *ret, struct sealvm_err *err);
int kms_store_key_insert(sqlite3 *conn, const struct kms_key *k, const unsigned char *payload,
			 size_t payload_len, struct sealvm_err *err);
int kms_store_key_update(sqlite3 *conn, const struct kms_key *k, struct sealvm_err *err);
int kms_store_key_delete_all(sqlite3 *conn, const char *key_id, struct sealvm_err *err);
int kms_store_key_payload(sqlite3 *conn, const char *key_id, unsigned char **ret, size_t *ret_len,
			  struct sealvm_err *err);
int kms_store_key_list(sqlite3 *conn, const struct kms_list_query *q,
		       int (*fn)(const struct kms_key *k, void *arg), void *arg,
		       struct sealvm_err *err);

int kms_store_version_get(struct kms *kms, sqlite3 *conn, const char *key_id,
			  const char *version_id, int number, struct kms_version *ret,
			  struct sealvm_err *err);
int kms_store_version_insert(sqlite3 *conn, const struct kms_version *v, struct sealvm_err *err);
int kms_store_version_list(sqlite3 *conn, const char *key_id,
			   int (*fn)(const struct kms_version *v, void *arg), void *arg,
			   struct sealvm_err *err);

int kms_store_alias_insert(sqlite3 *conn, const char *instance, const char *alias,
			   const char *key_id, int64_t now_ms, const char *by,
			   struct sealvm_err *err);
int kms_store_alias_delete(sqlite3 *conn, const char *instance, const char *alias,
			   const char *key_id, struct sealvm_err *err);
int kms_store_alias_count(sqlite3 *conn, const char *instance, const char *key_id, int *ret_count,
			  struct sealvm_err *err);
int kms_store_alias_list(sqlite3 *conn, const char *key_id,
			 int (*fn)(const char *alias, int64_t created_ms, const char *by,
				   void *arg),
			 void *arg, struct sealvm_err *err);

int kms_store_policy_get(sqlite3 *conn, const char *instance, bool *ret_dual,
			 int64_t *ret_updated_ms, char *ret_updated_by, struct sealvm_err *err);
int kms_store_policy_put(sqlite3 *conn, const char *instance, bool dual, int64_t now_ms,
			 const char *by, struct sealvm_err *err);

int kms_store_reg_get(sqlite3 *conn, const char *key_id, const char *crn,
		      struct kms_registration *ret, struct sealvm_err *err);
int kms_store_reg_put(sqlite3 *conn, const struct kms_registration *r, struct sealvm_err *err);
int kms_store_reg_delete(sqlite3 *conn, const char *key_id, const char *crn,
			 struct sealvm_err *err);
/* Counts of a key's registrations: all, and those preventing deletion. */
int kms_store_reg_count(sqlite3 *conn, const char *key_id, int *ret_all, int *ret_prevent,
			struct sealvm_err *err);
int kms_store_reg_list(sqlite3 *conn, const char *instance, const char *key_id,
		       const char *crn_filter, unsigned limit, unsigned offset,
		       int (*fn)(const struct kms_registration *r, void *arg), void *arg,
		       struct sealvm_err *err);

int kms_store_token_get(sqlite3 *conn, const char *instance, struct kms_import_token *ret,
			struct sealvm_err *err);
int kms_store_token_put(sqlite3 *conn, const struct kms_import_token *t, struct sealvm_err *err);
int kms_store_token_retrieve(sqlite3 *conn, const char *instance, struct sealvm_err *err);

#endif
