/* SPDX-License-Identifier: Apache-2.0 */
/*
 * rc.h — the resource controller: service instances of an account.
 *
 * Like IBM's resource controller, `POST /v2/resource_instances {name, target,
 * resource_id}` creates an instance of a service ("kms",
 * "cloud-object-storage") in a region the deployment serves; it gets a GUID
 * and a CRN, and later services (keys, buckets) attach to it. List, get and
 * delete complete the API. Migration owner "resource-controller".
 *
 * Resource keys (`/v2/resource_keys`) with `parameters: {HMAC: true}` are
 * the HMAC credentials of a cloud-object-storage instance: an access key id
 * (32 hex) and a secret access key (48 hex) that S3 clients sign with
 * (SigV4). The secret is shown once, in the creation response; it is stored
 * sealed under the master key (it must verify signatures again, so it cannot
 * be a hash). rc_hmac_lookup gives the S3 listener the secret and who the
 * key acts as. docs/internals/rc-hmac.md has the whole design.
 */
#ifndef SEALVM_RC_H
#define SEALVM_RC_H

#include <stdbool.h>

#include "sealvm/db.h"
#include "sealvm/err.h"
#include "sealvm/http.h"
#include "sealvm/principal.h"
#include "sealvm/secret.h"

extern const struct db_migration rc_migrations[];
extern const size_t rc_n_migrations;

struct rc;

/* @region: the region this deployment serves (borrowed). */
int rc_new(struct sealvm_db *db, const char *region, struct rc **ret);
void rc_free(struct rc *rc);
const struct http_service *rc_http(struct rc *rc);

struct rc_instance {
	char guid[40];
	char crn[320];
	char account_id[40];
	char name[128];
	char resource_id[64];
	char region[32];
	char state[16];
	char created_at[32];
};

/* Looks up an instance by GUID within @account_id (-ENOENT otherwise), for other services. */
int rc_instance_get(struct rc *rc, const char *account_id, const char *guid,
		    struct rc_instance *ret, struct sealvm_err *err);

/*
 * Gives the resource controller the data dir's master key (borrowed; it must
 * outlive @rc), which seals and opens HMAC secrets. Until it is set, the
 * resource key routes answer 503 HMAC_UNAVAILABLE and rc_hmac_lookup fails.
 */
void rc_set_master(struct rc *rc, const struct sealvm_secret *master);

struct iam;
/*
 * Gives the resource controller IAM's decision function (borrowed): a key
 * made to act as a service ID needs, besides resource-controller.key.create,
 * what creating an API key for that service ID needs
 * (iam-identity.apikey.create on it), for it grants the same power. Until it
 * is set, creating a key with serviceid_crn answers 503 HMAC_UNAVAILABLE.
 */
void rc_set_iam(struct rc *rc, struct iam *iam);

/*
 * A service's say on deleting one of its instances: called inside the delete's
 * write transaction (on @conn) for an instance of the service it was added
 * for. A negative errno refuses the delete; the guards of kms and
 * cloud-object-storage answer -ENOTEMPTY (409) RESOURCE_INSTANCE_NOT_EMPTY
 * while the instance holds keys or buckets, so that no data is orphaned.
 */
typedef int (*rc_delete_guard_fn)(sqlite3 *conn, const char *account_id, const char *instance_guid,
				  struct sealvm_err *err);
/*
 * A guard's refusal: -ENOTEMPTY RESOURCE_INSTANCE_NOT_EMPTY, "@what @guid still has @n
 * @one|@many: delete it|them first".
 */
int rc_refuse_not_empty(struct sealvm_err *err, const char *what, const char *guid, int64_t n,
			const char *one, const char *many);
#define RC_MAX_DELETE_GUARDS 8
/*
 * Adds @fn for instances of @resource_id (static string). Set up before serving;
 * -E2BIG past RC_MAX_DELETE_GUARDS. Deleting an instance also deletes its
 * resource keys (HMAC credentials act only in their instance).
 */
int rc_add_delete_guard(struct rc *rc, const char *resource_id, rc_delete_guard_fn fn);

struct sigv4_key_cache;
/*
 * The S3 listener's signing-key cache (borrowed; NULL for none): deleting a
 * resource key calls sigv4_key_cache_forget on it after the delete commits,
 * so a deleted key stops verifying at once.
 */
void rc_set_sigv4_cache(struct rc *rc, struct sigv4_key_cache *cache);

#define RC_HMAC_ACCESS_KEY_ID_LEN 32
#define RC_HMAC_SECRET_LEN 48

/* Who an HMAC key acts as, and for which object storage instance. No secret. */
struct rc_hmac_identity {
	struct sealvm_principal principal; /* the creator, or the service ID it names;
					      credential_type "hmac" */
	char key_guid[40];		   /* the resource key */
	char instance_guid[40];		   /* the cloud-object-storage instance */
	char instance_crn[320];
};

/*
 * Looks up the HMAC key @access_key_id: on success *@ret is who it acts as
 * and *@ret_secret a new secret holding the 48-character secret access key
 * (free with sealvm_secret_free). A key that is unknown, deleted, malformed,
 * whose instance is gone or whose service ID is gone: -EPERM with reason
 * InvalidAccessKeyId (S3's). A blob that does not open: -EBADMSG
 * SEALED_BLOB_INVALID. -EAGAIN HMAC_UNAVAILABLE before rc_set_master.
 * Thread-safe; reads only.
 */
int rc_hmac_lookup(struct rc *rc, const char *access_key_id, struct rc_hmac_identity *ret,
		   struct sealvm_secret **ret_secret, struct sealvm_err *err);

/*
 * rc_hmac_lookup as a sigv4_secret_fn (sigv4.h): @userdata is the struct rc.
 * Set .lookup = rc_hmac_sigv4_lookup, .userdata = rc in a sigv4_verifier.
 */
int rc_hmac_sigv4_lookup(void *userdata, const char *access_key_id, struct sealvm_secret **ret,
			 struct sealvm_err *err);

#endif
