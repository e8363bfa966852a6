/* SPDX-License-Identifier: Apache-2.0 */
/*
 * rc.h — the resource controller: service instances of an account.
 *
 * Like IBM's resource controller, `POST /v2/resource_instances {name, target,
 * resource_id}` creates an instance of a service ("kms",
 * "cloud-object-storage") in a region the deployment serves; it gets a GUID
 * and a CRN, and later services (keys, buckets) attach to it. List, get and
 * delete complete the API. Migration owner "resource-controller".
 */
#ifndef SEALVM_RC_H
#define SEALVM_RC_H

#include <stdbool.h>

#include "sealvm/db.h"
#include "sealvm/err.h"
#include "sealvm/http.h"

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

#endif
