/* SPDX-License-Identifier: Apache-2.0 */
/*
 * sealvmd.h — the daemon's internals: data dir, configuration, service wiring.
 */
#ifndef SEALVMD_H
#define SEALVMD_H

#include <stdbool.h>

#include "sealvm/audit.h"
#include "sealvm/cos.h"
#include "sealvm/db.h"
#include "sealvm/err.h"
#include "sealvm/http.h"
#include "sealvm/iam.h"
#include "sealvm/keystore.h"
#include "sealvm/kms.h"
#include "sealvm/rc.h"
#include "sealvm/secret.h"

#define SEALVMD_MASTER_KEY "master.key"
#define SEALVMD_DB "sealvm.db"

struct sealvmd_config {
	char *data_dir;
	char *listen; /* "127.0.0.1:8720" */
	char *tls_cert;
	char *tls_key;
	bool insecure_listen;
	bool access_log;
	char *services; /* "iam,audit" or "all" */
	char *region;	/* "us-south" */
	int64_t token_ttl_s;
	unsigned audit_unauthenticated_max; /* per source and window, recorded one by one */
	unsigned audit_window_s;
	unsigned audit_retention_s;	     /* events older than this are pruned; 0: kept */
	unsigned audit_retention_interval_s; /* how often the pruning runs */
	char *audit_export_dir;		     /* pruned events are exported here first; NULL: not */
	struct http_limits limits;
	/* "keystore": where root keys live (the PIN only by file or environment name) */
	struct {
		char *backend; /* "soft" | "pkcs11" */
		char *module;
		char *token_label;
		char *pin_file;
		char *pin_env;
		unsigned sessions;
	} keystore;
	struct kms_config kms; /* "kms": the key service's timing rules */
	/* object storage: the S3 listener ("none": off) and the URL the endpoints table gives */
	char *s3_listen;     /* "127.0.0.1:8730" */
	char *s3_public_url; /* NULL: http(s)://<s3_listen, with the port bound> */
	int64_t cos_upload_max_age_s;
	int64_t cos_upload_sweep_interval_s;
};

void sealvmd_config_defaults(struct sealvmd_config *cfg);
/* Reads a JSON config file over the defaults; unknown keys are an error naming them. */
int sealvmd_config_load(const char *path, struct sealvmd_config *cfg, struct sealvm_err *err);
void sealvmd_config_done(struct sealvmd_config *cfg);

/* The running daemon's state. */
struct sealvmd {
	struct sealvmd_config *cfg;
	struct sealvm_secret *master;
	struct sealvm_secret *chain_key; /* audit chain HMAC key, derived from master */
	struct sealvm_db *db;
	struct audit_log *audit_log; /* events of requests that change nothing */
	struct iam *iam;
	struct audit_service *audit;
	struct rc *rc;
	struct keystore *ks;
	struct kms *kms;
	struct cos *cos;  /* serve only: object storage and its S3 listener */
	char s3_url[300]; /* what GET /v2/endpoints names for the region ("" without S3) */
	struct audit_unauth unauth; /* serve only: the API's bounded operator trail (hooks) */
};

/* Opens the data dir: checks its mode, loads the master key, opens the database (migrations). */
int sealvmd_open(struct sealvmd *d, struct sealvmd_config *cfg, struct sealvm_err *err);
void sealvmd_close(struct sealvmd *d);

/* The ladder's hooks: identity for authn/authz, the audit chain for events. */
void sealvmd_hooks(struct sealvmd *d, struct http_hooks *ret);
/* Records what the bound on unauthenticated requests still counts (at a stop). */
void sealvmd_hooks_drain(struct sealvmd *d);

/* /healthz */
const struct http_service *sealvmd_health_service(void);

/* GET /v2/endpoints: the region → S3 endpoint table (IBM's endpoints JSON shape). */
const struct http_service *sealvmd_endpoints_service(struct sealvmd *d);

#endif
