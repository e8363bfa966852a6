// SPDX-License-Identifier: Apache-2.0
/*
 * hmac_peer.c — verifies a request signed by a peer (botocore) with HMAC
 * credentials from `POST /v2/resource_keys`, through sigv4_verify and
 * rc_hmac_sigv4_lookup on a stopped sealvmd's data dir, for test_hmac.sh.
 *
 * Usage: hmac_peer DATA_DIR REQUEST.json
 *
 * REQUEST.json: {"method", "path", "query", "headers": [[name, value], ...]}.
 * The request is verified at the time its x-amz-date names (no wall clock).
 * Prints "OK ACCESS_KEY_ID IAM_ID INSTANCE_GUID" and exits 0 when it
 * verifies, else "REFUSED REASON" and exits 1; 2 for a usage or setup error.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "sealvm/audit.h"
#include "sealvm/iam.h"
#include "sealvm/kms.h"
#include "sealvm/migrations.h"
#include "sealvm/rc.h"
#include "sealvm/seal.h"
#include "sealvm/sigv4.h"

#define MAX_HEADERS 64

int main(int argc, char **argv)
{
	struct sealvm_err err = SEALVM_ERR_INIT;
	struct sealvm_secret *master = NULL;
	struct sealvm_db *db = NULL;
	struct rc *rc = NULL;
	char path[4096];

	if (argc != 3) {
		fprintf(stderr, "usage: hmac_peer DATA_DIR REQUEST.json\n");
		return 2;
	}
	json_error_t je;
	json_t *j = json_load_file(argv[2], 0, &je);
	json_t *hs = json_object_get(j, "headers");
	if (!j || !json_is_array(hs) || json_array_size(hs) > MAX_HEADERS) {
		fprintf(stderr, "hmac_peer: %s: not a request\n", argv[2]);
		return 2;
	}
	struct sigv4_header h[MAX_HEADERS];
	size_t n = json_array_size(hs);
	for (size_t i = 0; i < n; i++) {
		h[i].name = json_string_value(json_array_get(json_array_get(hs, i), 0));
		h[i].value = json_string_value(json_array_get(json_array_get(hs, i), 1));
		if (!h[i].name || !h[i].value) {
			fprintf(stderr, "hmac_peer: header %zu is not [name, value]\n", i);
			return 2;
		}
	}
	struct sigv4_request req = {
		.method = json_string_value(json_object_get(j, "method")),
		.raw_path = json_string_value(json_object_get(j, "path")),
		.raw_query = json_string_value(json_object_get(j, "query")),
		.headers = h,
		.n_headers = n,
	};
	time_t now;
	const char *date = sigv4_request_header(&req, "x-amz-date");
	if (!req.method || !req.raw_path || !date || sigv4_parse_amz_date(date, &now) < 0) {
		fprintf(stderr, "hmac_peer: the request lacks a method, path or x-amz-date\n");
		return 2;
	}

	size_t nm = 0;
	struct db_migration *m = sealvm_migrations(&nm);
	if (!m)
		return 2;
	snprintf(path, sizeof(path), "%s/master.key", argv[1]);
	if (seal_master_load(path, &master, &err) < 0)
		goto setup_fail;
	snprintf(path, sizeof(path), "%s/sealvm.db", argv[1]);
	if (db_open(path, m, nm, NULL, &db, &err) < 0)
		goto setup_fail;
	if (rc_new(db, "us-south", &rc) < 0) {
		sealvm_err_set(&err, -ENOMEM, NULL, "out of memory");
		goto setup_fail;
	}
	rc_set_master(rc, master);

	struct sigv4_verifier v = {
		.region = "us-south", .lookup = rc_hmac_sigv4_lookup, .userdata = rc};
	struct sigv4_auth auth = {0};
	int r = sigv4_verify(&v, &req, now, &auth, &err);
	int ret = 0;
	if (r < 0) {
		printf("REFUSED %s\n", err.reason);
		ret = 1;
	} else {
		/* Who the key acts as: what the S3 listener would authorize. */
		struct rc_hmac_identity id;
		struct sealvm_secret *s = NULL;
		struct sealvm_err e2 = SEALVM_ERR_INIT;
		if (rc_hmac_lookup(rc, auth.access_key_id, &id, &s, &e2) < 0) {
			printf("REFUSED %s\n", e2.reason);
			ret = 1;
		} else {
			printf("OK %s %s %s\n", auth.access_key_id, id.principal.iam_id,
			       id.instance_guid);
		}
		sealvm_secret_free(s);
	}
	sigv4_auth_done(&auth);
	rc_free(rc);
	db_close(db);
	sealvm_secret_free(master);
	free(m);
	json_decref(j);
	return ret;

setup_fail:
	fprintf(stderr, "hmac_peer: %s\n", err.message);
	return 2;
}
