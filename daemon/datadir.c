// SPDX-License-Identifier: Apache-2.0
/*
 * datadir.c — the data dir: layout, first initialisation, opening.
 *
 * DIR (0700) holds master.key (0600, 32 random bytes that seal every secret
 * the server reuses) and sealvm.db (0600, the control-plane database). The
 * keystore (soft: under the master key; pkcs11: a token) opens right after
 * the master key, and the key service last, on top of everything. This
 * file never prints key material; the owner API key made at init leaves only
 * through the caller, once.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sealvm/audit.h"
#include "sealvm/bound.h"
#include "sealvm/file.h"
#include "sealvm/log.h"
#include "sealvm/migrations.h"
#include "sealvm/seal.h"

#include "sealvmd.h"

static char *path_in(const char *dir, const char *name)
{
	char *p = NULL;
	if (asprintf(&p, "%s/%s", dir, name) < 0)
		return NULL;
	return p;
}

static int sign_statement(void *ctx, const json_t *claims, char **ret, struct sealvm_err *err)
{
	return iam_sign_statement(ctx, claims, ret, err);
}

static int verify_statement(void *ctx, const char *jws, json_t **ret, struct sealvm_err *err)
{
	return iam_verify_statement(ctx, jws, ret, err);
}

static int check_dir(const char *dir, struct sealvm_err *err)
{
	struct stat st;
	if (stat(dir, &st) < 0)
		return sealvm_err_set_errno(err, negative_errno(), "DATA_DIR_MISSING",
					    "data dir %s: run 'sealvmd init --data-dir %s' first",
					    dir, dir);
	if (!S_ISDIR(st.st_mode))
		return sealvm_err_set(err, -ENOTDIR, "DATA_DIR_INVALID", "%s is not a directory",
				      dir);
	if (st.st_mode & 077)
		return sealvm_err_set(
			err, -EPERM, "DATA_DIR_MODE",
			"data dir %s is accessible by group or others (mode %03o): chmod 700 %s",
			dir, st.st_mode & 0777, dir);
	return 0;
}

int sealvmd_open(struct sealvmd *d, struct sealvmd_config *cfg, struct sealvm_err *err)
{
	_cleanup_free_ char *mk = NULL, *dbp = NULL;
	_cleanup_free_ struct db_migration *migs = NULL;
	size_t n_migs = 0;
	int r;

	memset(d, 0, sizeof(*d));
	d->cfg = cfg;
	r = check_dir(cfg->data_dir, err);
	if (r < 0)
		return r;
	mk = path_in(cfg->data_dir, SEALVMD_MASTER_KEY);
	dbp = path_in(cfg->data_dir, SEALVMD_DB);
	migs = sealvm_migrations(&n_migs);
	if (!mk || !dbp || !migs)
		return sealvm_err_set(err, -ENOMEM, NULL, "out of memory");
	r = seal_master_load(mk, &d->master, err);
	if (r < 0)
		goto fail;
	r = seal_derive(d->master, "audit-chain", &d->chain_key);
	if (r < 0) {
		sealvm_err_set(err, r, NULL, "cannot derive the audit chain key");
		goto fail;
	}
	struct keystore_config kc = {
		.backend = cfg->keystore.backend,
		.master = d->master,
		.module = cfg->keystore.module,
		.token_label = cfg->keystore.token_label,
		.pin_file = cfg->keystore.pin_file,
		.pin_env = cfg->keystore.pin_env,
		.sessions = cfg->keystore.sessions,
	};
	r = keystore_open(&kc, &d->ks, err);
	if (r < 0)
		goto fail;
	r = db_open(dbp, migs, n_migs, NULL, &d->db, err);
	if (r < 0)
		goto fail;
	r = audit_log_open(d->db, &d->audit_log, err);
	if (r == -EBUSY && strcmp(err->reason, "AUDIT_LOG_BUSY") == 0) {
		/* A running daemon writes it: this process's events go in as rows. */
		sealvm_err_clear(err);
		r = 0;
	}
	if (r < 0)
		goto fail;
	struct iam_config ic = {
		.region = cfg->region,
		.token_ttl_s = cfg->token_ttl_s,
	};
	r = iam_new(d->db, d->master, &ic, &d->iam, err);
	if (r < 0)
		goto fail;
	r = audit_service_new(d->db, d->chain_key->data, &d->audit);
	if (r >= 0) {
		struct audit_signer signer = {
			.sign = sign_statement,
			.verify = verify_statement,
			.ctx = d->iam,
		};
		audit_service_set_signer(d->audit, &signer);
		r = rc_new(d->db, cfg->region, &d->rc);
		if (r >= 0) {
			rc_set_master(d->rc, d->master);
			rc_set_iam(d->rc, d->iam);
			/* Whatever services run, an instance holding data is never orphaned. */
			rc_add_delete_guard(d->rc, "kms", kms_instance_delete_guard);
			rc_add_delete_guard(d->rc, "cloud-object-storage",
					    cos_instance_delete_guard);
		}
	}
	if (r < 0) {
		sealvm_err_set(err, r, NULL, "out of memory");
		goto fail;
	}
	struct kms_deps kd = {
		.db = d->db,
		.ks = d->ks,
		.rc = d->rc,
		.iam = d->iam,
		.master = d->master,
		.chain_key = d->chain_key->data,
		.region = cfg->region,
	};
	r = kms_new(&kd, &cfg->kms, &d->kms, err);
	if (r < 0)
		goto fail;
	return 0;
fail:
	sealvmd_close(d);
	return r;
}

void sealvmd_close(struct sealvmd *d)
{
	kms_free(d->kms);
	d->kms = NULL;
	rc_free(d->rc);
	d->rc = NULL;
	audit_service_free(d->audit);
	d->audit = NULL;
	iam_free(d->iam);
	db_close(d->db);
	audit_log_close(d->audit_log); /* after the writer's last batch */
	d->audit_log = NULL;
	keystore_close(d->ks);
	d->ks = NULL;
	sealvm_secret_free(d->chain_key);
	sealvm_secret_free(d->master);
	d->iam = NULL;
	d->db = NULL;
	d->chain_key = d->master = NULL;
	sealvm_bound_free(d->unauth.bound);
	d->unauth.bound = NULL;
}
