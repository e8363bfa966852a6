/* SPDX-License-Identifier: Apache-2.0 */
/*
 * kms.h — the key management service: Key Protect v2 compatible keys, and
 * the C interface other services use to wrap and unwrap under them.
 *
 * Keys live in key service instances (resource-controller instances of
 * service "kms"; the `bluemix-instance` header names one). A root key
 * (extractable false) is AES-256 (or 128/192 when imported) material that
 * never leaves the keystore (include/sealvm/keystore.h): it only wraps and
 * unwraps data encryption keys (DEKs). A standard key (extractable true) is
 * material the service stores sealed under the master key and hands back to
 * callers allowed to read it. Root keys have versions: rotation adds one,
 * and old versions keep unwrapping.
 *
 * A wrapped DEK (ciphertext) is our own versioned binary format, base64:
 * it names the key version that made it and binds the account, the
 * instance, the key id, the version and the caller's AAD; every byte of it
 * is authenticated (docs/internals/kms.md "Ciphertext"). Unlike Key
 * Protect, a ciphertext opens only under the key that made it, not under
 * another key that holds the same material.
 *
 * The HTTP API (kms_http) follows ../shared/reference/ibm-e2e-apis.md §1;
 * docs/api.md lists its shapes. Other services (block storage, images,
 * object storage) call kms_wrap/kms_unwrap with their own service principal
 * (iam_service_principal): the same authorization decision as over HTTP
 * (iam_authorize, so the customer's authorization policy is required) and
 * an audit event of their own with the calling service as initiator.
 *
 * Errors: a negative errno and, in the sticky error, a Key Protect reason
 * code (KEY_ACTION_INVALID_STATE_ERR, UNPROCESSABLE_CIPHERTEXT_ERR, …). A
 * reason about one request field carries the field's name after a colon
 * ("INVALID_FIELD_ERR:ciphertext"); kms_reason_code() gives the bare code.
 * No function here logs, returns in an error or audits key material.
 *
 * Migration owner "kms".
 */
#ifndef SEALVM_KMS_H
#define SEALVM_KMS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sealvm/db.h"
#include "sealvm/err.h"
#include "sealvm/http.h"
#include "sealvm/principal.h"
#include "sealvm/secret.h"

struct keystore;
struct rc;
struct iam;
struct kms;

/* Limits on what a caller may send. */
#define KMS_PLAINTEXT_MAX 4096	  /* bytes a DEK may have (decoded) */
#define KMS_AAD_MAX_ITEMS 32	  /* strings in an `aad` list */
#define KMS_AAD_ITEM_MAX 255	  /* characters in one of them */
#define KMS_STANDARD_KEY_MAX 7500 /* bytes of a standard key's material */
#define KMS_CIPHERTEXT_MAX 8192	  /* characters of a base64 ciphertext */
#define KMS_ID_MAX 40		  /* a key id, version id or instance GUID, with NUL */

extern const struct db_migration kms_migrations[];
extern const size_t kms_n_migrations;

/*
 * The resource controller's delete guard for kms instances
 * (rc_delete_guard_fn): -ENOTEMPTY RESOURCE_INSTANCE_NOT_EMPTY while the
 * instance has keys that are not deleted (deleted ones, restorable for 30
 * days, go with the instance). Reads only; needs no running service.
 */
int kms_instance_delete_guard(sqlite3 *conn, const char *account_id, const char *instance_guid,
			      struct sealvm_err *err);

/*
 * The timing rules, in seconds (Key Protect's values are the defaults;
 * tests shorten them). Each is 0..(10 years).
 */
struct kms_config {
	int64_t enable_delay_s;	    /* enable ≥ this long after the key's last action: 30 */
	int64_t rotate_interval_s;  /* rotations at least this far apart: 3600 */
	int64_t restore_window_s;   /* a deleted key can be restored this long: 2592000 (30 d) */
	int64_t dual_auth_window_s; /* setKeyForDeletion stays valid this long: 604800 (7 d) */
	int64_t purge_delay_s;	    /* a deleted key can be purged this long after: 14400 (4 h) */
	int64_t import_token_min_s; /* the shortest import-token expiration accepted: 300 */
};

/* Fills @cfg with the defaults above. */
void kms_config_defaults(struct kms_config *cfg);
/* -EINVAL (CONFIG_INVALID, naming the field) when a value is out of range. */
int kms_config_check(const struct kms_config *cfg, struct sealvm_err *err);

/* What the service runs on. Everything is borrowed and must outlive the service. */
struct kms_deps {
	struct sealvm_db *db; /* with kms_migrations applied */
	struct keystore *ks;
	struct rc *rc;			    /* instances: rc_instance_get */
	struct iam *iam;		    /* decisions for the in-process API: iam_authorize */
	const struct sealvm_secret *master; /* seals standard keys */
	const unsigned char *chain_key;	    /* audit chain key (AUDIT_CHAIN_KEY_SIZE) */
	const char *region;		    /* the deployment's region, for CRNs */
};

/*
 * A new service. @cfg NULL means the defaults (copied). -EINVAL (naming what
 * is missing or out of range), -ENOMEM. Free with kms_free before its
 * dependencies.
 */
int kms_new(const struct kms_deps *deps, const struct kms_config *cfg, struct kms **ret,
	    struct sealvm_err *err);
void kms_free(struct kms *kms);

/* The Key Protect API under /api/v2 (routes, resolvers, KP error envelope). Borrowed. */
const struct http_service *kms_http(struct kms *kms);

/* The Key Protect reason code of @err->reason without its ":field" suffix (static or @err's). */
const char *kms_reason_code(const struct sealvm_err *err, char *buf, size_t size);

/* ---- lifecycle notifications ------------------------------------------------------------ */

enum kms_event_type {
	KMS_EVENT_DISABLE,
	KMS_EVENT_ENABLE,
	KMS_EVENT_ROTATE,
	KMS_EVENT_DELETE,
	KMS_EVENT_RESTORE,
};

/* One lifecycle change of a key, as told to one registration's service. Strings are borrowed. */
struct kms_key_event {
	enum kms_event_type type;
	const char *account_id;
	const char *instance;
	const char *key_id;
	const char *key_crn;
	const char *resource_crn; /* the registration this notice is for */
	int key_state;		  /* the key's state after the change (1, 2, 5) */
	const char *key_version;  /* the newest version id after the change */
	const char *old_version;  /* KMS_EVENT_ROTATE: the version it replaced; else NULL */
};

/*
 * A service that wants to be told of lifecycle changes of keys that protect
 * its resources. A registration belongs to the service named by its
 * resource CRN's service-name field (crn:v1:…:<service-name>:…): after a
 * disable, enable, rotate, delete or restore has committed, @notify runs
 * once per registration of the key whose service is @service_name, on the
 * thread that made the change, with no lock held. It may call back into the
 * service. It must return quickly (queue work of its own); later it may be a
 * remote call.
 */
struct kms_listener {
	const char *service_name; /* "images", "block-storage", … (borrowed) */
	void (*notify)(void *ctx, const struct kms_key_event *ev);
	void *ctx;
};

/* Adds a listener (before serving; not thread-safe against notifications). -E2BIG past 16. */
int kms_listener_add(struct kms *kms, const struct kms_listener *l);

/* ---- the in-process API for other services ------------------------------------------------ */

/*
 * Splits a root key CRN (crn:v1:…:kms:<region>:a/<account>:<instance>:key:<id>)
 * into @ret_instance and @ret_key (KMS_ID_MAX bytes each). -EINVAL
 * (INVALID_FIELD_ERR:crn) when it is not one.
 */
int kms_key_crn_parse(const char *crn, char *ret_instance, char *ret_key, struct sealvm_err *err);

struct kms_wrap_result {
	char *ciphertext;		 /* base64, malloc'ed */
	char key_version[KMS_ID_MAX];	 /* the version that wrapped it */
	struct sealvm_secret *plaintext; /* the generated DEK text when none was given, else NULL */
};
/* Frees what a result holds (NULL members are fine) and zeroes it. */
void kms_wrap_result_done(struct kms_wrap_result *r);

struct kms_unwrap_result {
	struct sealvm_secret *plaintext; /* the DEK text exactly as it was wrapped */
	char key_version[KMS_ID_MAX];	 /* the version the ciphertext names */
	char *rewrapped; /* when the key was rotated since: the DEK under the newest version */
	char rewrapped_version[KMS_ID_MAX]; /* its version; "" when rewrapped is NULL */
};
void kms_unwrap_result_done(struct kms_unwrap_result *r);

/*
 * Wraps @plaintext (canonical padded base64 of 1..KMS_PLAINTEXT_MAX bytes;
 * NULL: a new random 32-byte DEK is made and returned in ret->plaintext)
 * under the newest version of root key @key (id or alias) of @instance, with
 * @n_aad strings @aad (may be NULL when 0) bound to it. @p is the acting
 * principal (a service's, from iam_service_principal, or a user's): the
 * account it acts in must own @instance, and iam_authorize must allow it
 * kms.secrets.wrap on the key. One audit event (kms.secrets.wrap, initiator
 * @p) is recorded whatever the outcome; if it cannot be, the call fails
 * (-EIO AUDIT_UNAVAILABLE) and nothing is returned.
 * Errors: -ENOENT (INSTANCE_NOT_FOUND_ERR, KEY_NOT_FOUND_ERR), -EACCES
 * (iam's reason), -EINVAL (INVALID_FIELD_ERR:plaintext|aad,
 * KEY_ROOT_REQ_ERR), -EALREADY (KEY_ACTION_INVALID_STATE_ERR: 409),
 * -ESTALE (KEY_DELETED_ERR: 410), -EIO, -ENOMEM.
 */
int kms_wrap(struct kms *kms, const struct sealvm_principal *p, const char *instance,
	     const char *key, const struct sealvm_secret *plaintext, const char *const *aad,
	     size_t n_aad, struct kms_wrap_result *ret, struct sealvm_err *err);

/*
 * Unwraps @ciphertext (base64, as kms_wrap or the API made it) with the
 * same @aad it was wrapped with. When the key has been rotated since,
 * ret->rewrapped holds the DEK wrapped under the newest version (callers
 * should store it). Authorization (kms.secrets.unwrap) and audit as for
 * kms_wrap. Errors as kms_wrap, and: -EINVAL (INVALID_FIELD_ERR:ciphertext)
 * for text that is not one of our ciphertexts; -EBADMSG
 * (UNPROCESSABLE_CIPHERTEXT_ERR: 422) for one that does not open under this
 * key with this AAD — changed, cut, made by another key, instance or
 * account, or wrong AAD: it never says which.
 */
int kms_unwrap(struct kms *kms, const struct sealvm_principal *p, const char *instance,
	       const char *key, const char *ciphertext, const char *const *aad, size_t n_aad,
	       struct kms_unwrap_result *ret, struct sealvm_err *err) _warn_unused_result_;

/*
 * The unwrap operation alone — key lookup, state check, keystore decrypt,
 * rewrap when rotated — without authorization and without an audit event:
 * what kms_unwrap and the HTTP unwrap do besides those, for benchmarks and
 * tests that compare the costs. @account_id must own @instance. Services
 * must call kms_unwrap.
 */
int kms_unwrap_unaudited(struct kms *kms, const char *account_id, const char *instance,
			 const char *key, const char *ciphertext, const char *const *aad,
			 size_t n_aad, struct kms_unwrap_result *ret,
			 struct sealvm_err *err) _warn_unused_result_;

/*
 * Registers @resource_crn (a CRN of @p's account) as protected by root key
 * @key: created, or updated when it exists. @prevent_key_deletion makes a
 * forced delete of the key fail (PREV_KEY_DEL_ERR). The key must be a root
 * key (-EINVAL KEY_ROOT_REQ_REG_ERR: 422) in state Active (-EALREADY
 * KEY_INVALID_STATE_ERR: 422). kms.registrations.create, audited.
 */
int kms_registration_create(struct kms *kms, const struct sealvm_principal *p, const char *instance,
			    const char *key, const char *resource_crn, const char *description,
			    bool prevent_key_deletion, struct sealvm_err *err);
/* Removes a registration (-ENOENT REGISTRATION_NOT_FOUND_ERR). kms.registrations.delete, audited.
 */
int kms_registration_delete(struct kms *kms, const struct sealvm_principal *p, const char *instance,
			    const char *key, const char *resource_crn, struct sealvm_err *err);

#endif
