/* SPDX-License-Identifier: Apache-2.0 */
/*
 * cos.h — object storage: an S3-compatible store with regional buckets and
 * server-side encryption under the customer's root key (IBM COS SSE-KP).
 *
 * The service has its own listener (path-style S3: `sealvmd --s3-listen
 * ADDR:PORT`), not the JSON API listener: objects stream through it (never
 * whole in memory), requests are authenticated by AWS SigV4 with HMAC keys
 * (rc_hmac_lookup) or by an identity bearer token, authorized by
 * iam_authorize (cloud-object-storage roles, per bucket), and every action is
 * audited (cloud-object-storage.bucket.* / .object.*; object reads and writes
 * as data events). Errors are S3 XML.
 *
 * State: the database (migration owner "cos": buckets, objects, multipart
 * uploads and parts) and the files under <data dir>/cos/ (immutable data
 * files; the database row is the commit point, so a crash never shows a
 * half object). docs/internals/cos.md has the whole design.
 */
#ifndef SEALVM_COS_H
#define SEALVM_COS_H

#include <stdbool.h>
#include <stdint.h>

#include "sealvm/db.h"
#include "sealvm/err.h"
#include "sealvm/http.h"
#include "sealvm/secret.h"

extern const struct db_migration cos_migrations[];
extern const size_t cos_n_migrations;

struct rc;
struct iam;
struct kms;
struct cos;
struct sigv4_key_cache;

/*
 * The resource controller's delete guard for cloud-object-storage instances
 * (rc_delete_guard_fn): -ENOTEMPTY RESOURCE_INSTANCE_NOT_EMPTY while the
 * instance has buckets. Reads only; needs no running service.
 */
int cos_instance_delete_guard(sqlite3 *conn, const char *account_id, const char *instance_guid,
			      struct sealvm_err *err);

/* What the service runs on. Everything is borrowed and must outlive the service. */
struct cos_deps {
	struct sealvm_db *db; /* with cos_migrations applied */
	struct rc *rc;	      /* instances (rc_instance_get) and HMAC keys (rc_hmac_lookup) */
	struct iam *iam;      /* bearer tokens and decisions */
	struct kms *kms;      /* SSE-KP: kms_wrap/kms_unwrap/registrations (NULL: SSE refused) */
	const unsigned char *chain_key; /* audit chain key (AUDIT_CHAIN_KEY_SIZE) */
	const char *region;		/* the deployment's region: "us-south" */
	const char *data_dir;		/* objects live under <data_dir>/cos */
};

struct cos_config {
	const char *listen;   /* "127.0.0.1:8730"; NULL: no listener (engine only, tests) */
	const char *tls_cert; /* PEM files; both or neither, as on the API listener */
	const char *tls_key;
	bool insecure_listen; /* allow a non-loopback listener without TLS */
	bool access_log;      /* one line per request (no secrets) */
	struct http_limits limits;
	int64_t upload_max_age_s; /* incomplete multipart uploads older are aborted: 7 days */
	int64_t upload_sweep_interval_s; /* how often they are looked for: 3600 */
};

/* Fills @cfg with the defaults (no listener). */
void cos_config_defaults(struct cos_config *cfg);

/*
 * A new service: creates <data_dir>/cos and its subdirectories (0700),
 * removes temporary files a crash left and data files no row names (both
 * never visible), and opens the listener when cfg->listen is set (port 0:
 * any). -EINVAL (CONFIG_INVALID, NON_LOOPBACK_WITHOUT_TLS), -EADDRINUSE, -EIO.
 */
int cos_new(const struct cos_deps *deps, const struct cos_config *cfg, struct cos **ret,
	    struct sealvm_err *err);
/* Stops the listener (finishing requests in flight) and the sweeper, frees. NULL is fine. */
void cos_free(struct cos *c);

/* The port the S3 listener bound (0 without one). */
uint16_t cos_port(const struct cos *c);

/*
 * The listener's SigV4 signing-key cache, for rc_set_sigv4_cache (deleting
 * an HMAC key forgets its cached signing keys at once).
 */
struct sigv4_key_cache *cos_sigv4_cache(struct cos *c);

/*
 * Aborts the multipart uploads initiated before @now_ms - upload_max_age_s
 * (as the sweeper thread does each interval), audited as
 * cloud-object-storage.multipart.abort by the service. *@ret_n: how many.
 */
int cos_sweep_uploads(struct cos *c, int64_t now_ms, unsigned *ret_n, struct sealvm_err *err);

#endif
