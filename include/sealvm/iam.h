/* SPDX-License-Identifier: Apache-2.0 */
/*
 * iam.h — identity and access: accounts, users, service IDs, API keys,
 * tokens, access and authorization policies, and the one decision function.
 *
 * Two halves with their own tables (migration owners "iam-identity" and
 * "iam-access"), like IBM's IAM Identity and IAM Access Management services:
 *
 *  identity  accounts, users, service IDs, API keys (stored as keyed hashes,
 *            value shown once), ES256 tokens from API keys (POST
 *            /identity/token), published verification keys (GET
 *            /identity/keys), signing-key rotation.
 *  access    policies (type access | authorization), roles per service as
 *            data, and iam_authorize: may PRINCIPAL do ACTION on TARGET?
 *
 * Shapes and names follow ../shared/reference/ibm-e2e-apis.md §2–3. No
 * function here logs or returns a secret except the single response field
 * that shows a new API key's value, once.
 */
#ifndef SEALVM_IAM_H
#define SEALVM_IAM_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "sealvm/db.h"
#include "sealvm/err.h"
#include "sealvm/http.h"
#include "sealvm/principal.h"
#include "sealvm/secret.h"

extern const struct db_migration iam_identity_migrations[];
extern const size_t iam_identity_n_migrations;
extern const struct db_migration iam_access_migrations[];
extern const size_t iam_access_n_migrations;

struct iam_config {
	const char *region;	     /* default region, "us-south" */
	const char *issuer;	     /* token "iss"; default "sealvm" */
	int64_t token_ttl_s;	     /* 3600 */
	int64_t clock_skew_s;	     /* accepted skew on iat/exp; 60 */
	unsigned token_rate_per_min; /* POST /identity/token per source address; 0 = 600 */
};

struct iam;

/*
 * The identity and access service on @db (whose migrations must include the
 * two lists above). @master seals the signing keys and keys the API-key
 * hashes (it is borrowed and must outlive @ret). Loads the signing keys.
 */
int iam_new(struct sealvm_db *db, const struct sealvm_secret *master, const struct iam_config *cfg,
	    struct iam **ret, struct sealvm_err *err);
void iam_free(struct iam *iam);

/*
 * First start of a data dir: creates the first signing key, the account,
 * its owner user (@owner_name, @owner_email) and an owner API key whose value
 * is returned once in *ret_apikey (secret memory). -EEXIST if an account exists.
 */
int iam_bootstrap(struct iam *iam, const char *owner_name, const char *owner_email,
		  struct sealvm_secret **ret_apikey, char ret_account_id[40],
		  struct sealvm_err *err);

/* Adds a new signing key and signs with it from now on; old keys verify until their tokens expire.
 */
int iam_rotate_signing_key(struct iam *iam, char ret_kid[64], struct sealvm_err *err);

/*
 * Authentication for the ladder: a bearer token in @authorization ("Bearer
 * …"). Fills @ret; -EPERM with TOKEN_MISSING / TOKEN_MALFORMED /
 * TOKEN_EXPIRED / TOKEN_BAD_SIGNATURE / TOKEN_UNKNOWN_KEY (a token of
 * another deployment) otherwise. Verified tokens are cached until expiry.
 */
int iam_authenticate_bearer(struct iam *iam, const char *authorization,
			    struct sealvm_principal *ret, struct sealvm_err *err);

/* Authentication by an API key value (SoftLayer basic auth, token exchange). */
int iam_authenticate_apikey(struct iam *iam, const char *apikey, size_t len,
			    struct sealvm_principal *ret, struct sealvm_err *err);

/*
 * The one decision function. 0 when @p may do @action (e.g.
 * "kms.secrets.wrap", "iam-identity.serviceid.create") on @target; -EACCES
 * (reason ACTION_NOT_ALLOWED, naming the action) otherwise. The account owner
 * may do everything in their account; nobody acts across accounts; service
 * IDs and other users need an access policy granting a role that includes
 * the action on a resource matching @target; our own services
 * (PRINCIPAL_SERVICE) need an authorization policy of the target's account
 * with their service name as source.
 */
int iam_authorize(struct iam *iam, const struct sealvm_principal *p, const char *action,
		  const struct http_target *target, struct sealvm_err *err);

/*
 * A principal for one of our own services acting in @account_id (e.g.
 * "block-storage"); what it may do is decided by iam_authorize against the
 * account's authorization policies.
 */
void iam_service_principal(const char *service_name, const char *account_id,
			   struct sealvm_principal *ret);

/* The HTTP services: identity (/identity/token and /keys, /v1/users, /v1/serviceids, /v1/apikeys)
 * and access (/v1/policies). */
const struct http_service *iam_identity_http(struct iam *iam);
const struct http_service *iam_access_http(struct iam *iam);

/*
 * Signs @claims (borrowed) with the current token signing key: a compact
 * ES256 JWS, verifiable by anyone with GET /identity/keys. Used for audit
 * checkpoints. New malloc'ed string in *ret.
 */
int iam_sign_statement(struct iam *iam, const json_t *claims, char **ret, struct sealvm_err *err);
/* Verifies a statement signed by this deployment (any key it still knows); claims in *ret_claims.
 */
int iam_verify_statement(struct iam *iam, const char *jws, json_t **ret_claims,
			 struct sealvm_err *err);

#endif
