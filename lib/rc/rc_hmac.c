// SPDX-License-Identifier: Apache-2.0
/*
 * rc_hmac.c — HMAC resource keys of object storage instances: the API
 * handlers and the lookup the S3 listener verifies signatures with.
 *
 *   POST   /v2/resource_keys  {name, source: COS_INSTANCE_GUID,
 *                              parameters: {HMAC: true, serviceid_crn?}}
 *   GET    /v2/resource_keys[?source=GUID]
 *   GET    /v2/resource_keys/{guid}
 *   DELETE /v2/resource_keys/{guid}
 *
 * The secret access key (48 hex characters) is made in secret memory, sealed
 * under the master key with the AAD "rc/hmac-secret/<access_key_id>" (so a
 * blob copied to another row does not open), and leaves the server once: in
 * the creation response. It is never in audit data, logs or errors. A key
 * acts as its creator, or as the service ID that serviceid_crn names.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/rand.h>

#include "sealvm/iam.h"
#include "sealvm/seal.h"
#include "sealvm/sigv4.h"

#include "rc_internal.h"

void rc_set_master(struct rc *rc, const struct sealvm_secret *master)
{
	rc->master = master;
}

void rc_set_iam(struct rc *rc, struct iam *iam)
{
	rc->iam = iam;
}

void rc_set_sigv4_cache(struct rc *rc, struct sigv4_key_cache *cache)
{
	rc->sigv4_cache = cache;
}

static const char hexdigits[] = "0123456789abcdef";

static void hex(const unsigned char *in, size_t n, char *out)
{
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = hexdigits[in[i] >> 4];
		out[2 * i + 1] = hexdigits[in[i] & 15];
	}
	out[2 * n] = '\0';
}

static bool is_access_key_id(const char *s)
{
	size_t n = 0;
	for (; s[n]; n++)
		if (!strchr(hexdigits, s[n]) || n >= RC_HMAC_ACCESS_KEY_ID_LEN)
			return false;
	return n == RC_HMAC_ACCESS_KEY_ID_LEN;
}

static json_t *key_json(const struct rc_hmac_key *k, const struct sealvm_secret *secret)
{
	char url[96];
	snprintf(url, sizeof(url), "/v2/resource_keys/%s", k->guid);
	json_t *hk = json_pack("{s:s}", "access_key_id", k->access_key_id);
	/* The one place a secret access key leaves the server: the creation response. */
	if (hk && secret &&
	    json_object_set_new(hk, "secret_access_key",
				json_stringn((const char *)secret->data, secret->len)) < 0) {
		json_decref(hk);
		return NULL;
	}
	json_t *cred = json_pack("{s:o, s:s, s:s}", "cos_hmac_keys", hk, "resource_instance_id",
				 k->instance_crn, "iam_apikey_description",
				 "HMAC credentials of an object storage instance");
	if (cred && k->serviceid_crn[0] &&
	    json_object_set_new(cred, "iam_serviceid_crn", json_string(k->serviceid_crn)) < 0) {
		json_decref(cred);
		return NULL;
	}
	if (!cred)
		return NULL;
	return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:o, s:b, s:s, s:s}", "id",
			 k->crn, "guid", k->guid, "crn", k->crn, "url", url, "name", k->name,
			 "account_id", k->account_id, "source_crn", k->instance_crn, "state",
			 "active", "type", "resource_key", "credentials", cred, "iam_compatible", 1,
			 "created_by", k->created_by, "created_at", k->created_at);
}

static void fill_target(struct http_target *t, const struct rc_hmac_key *k)
{
	snprintf(t->account_id, sizeof(t->account_id), "%s", k->account_id);
	snprintf(t->service_name, sizeof(t->service_name), "resource-controller");
	snprintf(t->service_instance, sizeof(t->service_instance), "%s", k->instance_guid);
	snprintf(t->resource_type, sizeof(t->resource_type), "resource-key");
	snprintf(t->resource, sizeof(t->resource), "%s", k->guid);
	snprintf(t->crn, sizeof(t->crn), "%s", k->crn);
	snprintf(t->name, sizeof(t->name), "%s", k->name);
}

int rc_hmac_resolve(struct http_request *req, struct http_target *t, void *ctx,
		    struct sealvm_err *err)
{
	struct rc *rc = ctx;
	struct rc_hmac_key k;
	sqlite3 *conn = db_read_begin(rc->db);
	int r = rc_hmac_store_get(conn, http_request_principal(req)->account_id,
				  http_request_param(req, "guid"), &k, err);
	db_read_end(rc->db, conn);
	if (r < 0)
		return r;
	fill_target(t, &k);
	return 0;
}

struct create_job {
	struct http_request *req;
	struct rc_hmac_key k;
	const unsigned char *sealed;
	size_t sealed_len;
};

static int create_run(sqlite3 *conn, void *userdata, struct sealvm_err *err)
{
	struct create_job *j = userdata;
	int r = rc_hmac_store_insert(conn, &j->k, j->sealed, j->sealed_len, err);
	if (r < 0)
		return r;
	struct http_target t = *http_request_target(j->req);
	fill_target(&t, &j->k);
	http_request_set_target(j->req, &t);
	http_request_set_audit_data(j->req, json_incref(http_request_audit_request_data(j->req)),
				    json_pack("{s:s, s:s, s:s, s:s}", "guid", j->k.guid, "crn",
					      j->k.crn, "access_key_id", j->k.access_key_id,
					      "acts_as", j->k.iam_id));
	return http_request_audit_in_job(j->req, conn, 201, err);
}

static int str_field(json_t *o, const char *name, bool required, size_t max, const char **ret,
		     struct sealvm_err *err)
{
	json_t *v = json_object_get(o, name);
	*ret = NULL;
	if (!v || json_is_null(v)) {
		if (required)
			return sealvm_err_set(err, -EINVAL, "PROPERTY_MISSING", "%s is required",
					      name);
		return 0;
	}
	if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) > max)
		return sealvm_err_set(err, -EINVAL, "INVALID_FIELD",
				      "%s must be a string of 1 to %zu characters", name, max);
	*ret = json_string_value(v);
	return 0;
}

static int random_uuid(char out[40], struct sealvm_err *err)
{
	unsigned char u[16];
	if (RAND_bytes(u, sizeof(u)) != 1)
		return sealvm_err_set(err, -EIO, "RANDOM_FAILED", "no random bytes");
	u[6] = (u[6] & 0x0f) | 0x40;
	u[8] = (u[8] & 0x3f) | 0x80;
	snprintf(out, 40, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
		 u[0], u[1], u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12],
		 u[13], u[14], u[15]);
	return 0;
}

/* A new access key id (32 hex) and secret access key (48 hex, in secret memory). */
static int new_credentials(char akid[RC_HMAC_ACCESS_KEY_ID_LEN + 1],
			   struct sealvm_secret **ret_secret, struct sealvm_err *err)
{
	_cleanup_secret_ struct sealvm_secret *raw = NULL, *secret = NULL;
	unsigned char id[RC_HMAC_ACCESS_KEY_ID_LEN / 2];
	if (RAND_bytes(id, sizeof(id)) != 1)
		return sealvm_err_set(err, -EIO, "RANDOM_FAILED", "no random bytes");
	hex(id, sizeof(id), akid);
	if (sealvm_secret_random(RC_HMAC_SECRET_LEN / 2, &raw) < 0 ||
	    sealvm_secret_new(RC_HMAC_SECRET_LEN, &secret) < 0)
		return sealvm_err_set(err, -EIO, "RANDOM_FAILED", "no random secret");
	hex(raw->data, raw->len, (char *)secret->data);
	secret->len = RC_HMAC_SECRET_LEN;
	*ret_secret = secret;
	secret = NULL;
	return 0;
}

int rc_hmac_h_create(struct http_request *req, struct http_response *resp, void *ctx,
		     struct sealvm_err *err)
{
	struct rc *rc = ctx;
	const struct sealvm_principal *p = http_request_principal(req);
	_cleanup_secret_ struct sealvm_secret *secret = NULL;
	_cleanup_free_ unsigned char *sealed = NULL;
	json_t *body = NULL;
	const char *name, *source, *sid_crn = NULL;
	struct create_job j = {.req = req};
	struct rc_instance inst;
	char aad[64];
	int r;

	if (!rc->master)
		return sealvm_err_set(err, -EAGAIN, "HMAC_UNAVAILABLE",
				      "HMAC credentials are not available on this server");
	if ((r = http_request_json(req, &body, err)) < 0)
		return r;
	if (!json_is_object(body)) {
		r = sealvm_err_set(err, -EINVAL, "INVALID_BODY", "the body must be a JSON object");
		goto out;
	}
	if ((r = str_field(body, "name", true, 127, &name, err)) < 0 ||
	    (r = str_field(body, "source", true, 39, &source, err)) < 0)
		goto out;
	json_t *params = json_object_get(body, "parameters");
	if (params && !json_is_object(params)) {
		r = sealvm_err_set(err, -EINVAL, "INVALID_FIELD", "parameters must be an object");
		goto out;
	}
	if (params && (r = str_field(params, "serviceid_crn", false, 319, &sid_crn, err)) < 0)
		goto out;
	json_t *audit_in = json_pack("{s:s, s:s, s:b}", "name", name, "source", source, "HMAC",
				     json_is_true(json_object_get(params, "HMAC")));
	if (audit_in && sid_crn)
		json_object_set_new(audit_in, "serviceid_crn", json_string(sid_crn));
	http_request_set_audit_data(req, audit_in, NULL);
	if (!json_is_true(json_object_get(params, "HMAC"))) {
		r = sealvm_err_set(err, -EINVAL, "HMAC_REQUIRED",
				   "only HMAC resource keys are supported here: set "
				   "parameters.HMAC to true");
		goto out;
	}
	if (p->kind != PRINCIPAL_USER && p->kind != PRINCIPAL_SERVICE_ID) {
		r = sealvm_err_set(err, -EPERM, "PRINCIPAL_UNSUPPORTED",
				   "HMAC keys act as a user or a service ID, not as a service");
		goto out;
	}
	r = rc_instance_get(rc, p->account_id, source, &inst, err);
	if (r == -ENOENT) {
		sealvm_err_clear(err);
		r = sealvm_err_set(err, -ENOENT, "SOURCE_NOT_FOUND",
				   "no resource instance %s in this account", source);
	}
	if (r < 0)
		goto out;
	if (strcmp(inst.resource_id, "cloud-object-storage") != 0) {
		r = sealvm_err_set(err, -EINVAL, "INVALID_SOURCE",
				   "resource instance %s is a %s instance: HMAC keys belong to "
				   "cloud-object-storage instances",
				   source, inst.resource_id);
		goto out;
	}
	if (sid_crn) {
		char sid_id[96];
		if (!rc->iam) {
			r = sealvm_err_set(err, -EAGAIN, "HMAC_UNAVAILABLE",
					   "keys acting as a service ID are not available on "
					   "this server");
			goto out;
		}
		sqlite3 *conn = db_read_begin(rc->db);
		r = rc_hmac_store_serviceid(conn, p->account_id, sid_crn, sid_id, j.k.iam_id,
					    j.k.principal_name, err);
		db_read_end(rc->db, conn);
		if (r == -ENOENT && !sealvm_err_isset(err))
			r = sealvm_err_set(err, -ENOENT, "SERVICEID_NOT_FOUND",
					   "no service ID %s in this account", sid_crn);
		if (r < 0)
			goto out;
		/* A key acting as a service ID is as strong as an API key of it: same permission.
		 */
		struct http_target st = {0};
		snprintf(st.account_id, sizeof(st.account_id), "%s", p->account_id);
		snprintf(st.service_name, sizeof(st.service_name), "iam-identity");
		snprintf(st.resource_type, sizeof(st.resource_type), "serviceid");
		snprintf(st.resource, sizeof(st.resource), "%s", sid_id);
		snprintf(st.crn, sizeof(st.crn), "%s", sid_crn);
		snprintf(st.name, sizeof(st.name), "%s", j.k.principal_name);
		if ((r = iam_authorize(rc->iam, p, "iam-identity.apikey.create", &st, err)) < 0)
			goto out;
		j.k.principal_kind = PRINCIPAL_SERVICE_ID;
		snprintf(j.k.serviceid_crn, sizeof(j.k.serviceid_crn), "%s", sid_crn);
	} else {
		j.k.principal_kind = p->kind;
		snprintf(j.k.iam_id, sizeof(j.k.iam_id), "%s", p->iam_id);
		snprintf(j.k.principal_name, sizeof(j.k.principal_name), "%s", p->name);
	}
	if ((r = random_uuid(j.k.guid, err)) < 0 ||
	    (r = new_credentials(j.k.access_key_id, &secret, err)) < 0)
		goto out;
	snprintf(j.k.account_id, sizeof(j.k.account_id), "%s", p->account_id);
	snprintf(j.k.crn, sizeof(j.k.crn),
		 "crn:v1:sealvm:local:cloud-object-storage:%s:a/%s:%s:resource-key:%s", inst.region,
		 p->account_id, inst.guid, j.k.guid);
	snprintf(j.k.name, sizeof(j.k.name), "%s", name);
	snprintf(j.k.instance_guid, sizeof(j.k.instance_guid), "%s", inst.guid);
	snprintf(j.k.instance_crn, sizeof(j.k.instance_crn), "%s", inst.crn);
	snprintf(j.k.created_by, sizeof(j.k.created_by), "%s", p->iam_id);
	time_t now = time(NULL);
	struct tm tm;
	gmtime_r(&now, &tm);
	strftime(j.k.created_at, sizeof(j.k.created_at), "%Y-%m-%dT%H:%M:%SZ", &tm);
	rc_hmac_aad(j.k.access_key_id, aad);
	if ((r = seal_blob(rc->master, aad, secret, &sealed, &j.sealed_len, err)) < 0)
		goto out;
	j.sealed = sealed;
	if ((r = db_write(rc->db, create_run, &j, err)) < 0)
		goto out;
	http_response_header(resp, "Cache-Control", "no-store");
	resp->status = 201;
	resp->body = key_json(&j.k, secret);
	r = resp->body ? 0 : -ENOMEM;
out:
	json_decref(body);
	return r;
}

static int list_one(const struct rc_hmac_key *k, void *arg)
{
	return json_array_append_new(arg, key_json(k, NULL)) == 0 ? 0 : -ENOMEM;
}

int rc_hmac_h_list(struct http_request *req, struct http_response *resp, void *ctx,
		   struct sealvm_err *err)
{
	struct rc *rc = ctx;
	char *source = http_request_query_field(req, "source");
	json_t *items = json_array();
	sqlite3 *conn = db_read_begin(rc->db);
	int r = items ? rc_hmac_store_list(conn, http_request_principal(req)->account_id, source,
					   list_one, items, err)
		      : -ENOMEM;
	db_read_end(rc->db, conn);
	free(source);
	if (r < 0) {
		json_decref(items);
		return r;
	}
	resp->status = 200;
	resp->body = json_pack("{s:I, s:n, s:o}", "rows_count", (json_int_t)json_array_size(items),
			       "next_url", "resources", items);
	return resp->body ? 0 : -ENOMEM;
}

int rc_hmac_h_get(struct http_request *req, struct http_response *resp, void *ctx,
		  struct sealvm_err *err)
{
	struct rc *rc = ctx;
	struct rc_hmac_key k;
	const struct http_target *t = http_request_target(req);
	sqlite3 *conn = db_read_begin(rc->db);
	int r = rc_hmac_store_get(conn, t->account_id, t->resource, &k, err);
	db_read_end(rc->db, conn);
	if (r < 0)
		return r;
	resp->status = 200;
	resp->body = key_json(&k, NULL);
	return resp->body ? 0 : -ENOMEM;
}

struct delete_job {
	struct http_request *req;
	char access_key_id[RC_HMAC_ACCESS_KEY_ID_LEN + 1];
};

static int delete_run(sqlite3 *conn, void *userdata, struct sealvm_err *err)
{
	struct delete_job *j = userdata;
	const struct http_target *t = http_request_target(j->req);
	struct rc_hmac_key k;
	int r = rc_hmac_store_get(conn, t->account_id, t->resource, &k, err);
	if (r < 0)
		return r;
	if ((r = rc_hmac_store_delete(conn, t->account_id, t->resource, err)) < 0)
		return r;
	snprintf(j->access_key_id, sizeof(j->access_key_id), "%s", k.access_key_id);
	http_request_set_audit_data(j->req, NULL,
				    json_pack("{s:s}", "access_key_id", k.access_key_id));
	return http_request_audit_in_job(j->req, conn, 204, err);
}

int rc_hmac_h_delete(struct http_request *req, struct http_response *resp, void *ctx,
		     struct sealvm_err *err)
{
	struct rc *rc = ctx;
	struct delete_job j = {.req = req};
	int r = db_write(rc->db, delete_run, &j, err);
	if (r < 0)
		return r;
	/* Committed: the lookup no longer finds the key; drop what the cache derived from it. */
	if (rc->sigv4_cache)
		sigv4_key_cache_forget(rc->sigv4_cache, j.access_key_id);
	resp->status = 204;
	return 0;
}

static int invalid_key(struct sealvm_err *err)
{
	return sealvm_err_set(err, -EPERM, "InvalidAccessKeyId",
			      "The AWS access key Id you provided does not exist in our records.");
}

int rc_hmac_lookup(struct rc *rc, const char *access_key_id, struct rc_hmac_identity *ret,
		   struct sealvm_secret **ret_secret, struct sealvm_err *err)
{
	_cleanup_free_ unsigned char *sealed = NULL;
	struct rc_hmac_key k;
	size_t n = 0;
	char aad[64];

	if (!rc->master)
		return sealvm_err_set(err, -EAGAIN, "HMAC_UNAVAILABLE",
				      "HMAC credentials are not available on this server");
	if (!access_key_id || !is_access_key_id(access_key_id))
		return invalid_key(err);
	sqlite3 *conn = db_read_begin(rc->db);
	int r = rc_hmac_store_lookup(conn, access_key_id, &k, &sealed, &n, err);
	db_read_end(rc->db, conn);
	if (r == -ENOENT)
		return invalid_key(err);
	if (r < 0)
		return r;
	rc_hmac_aad(k.access_key_id, aad);
	struct sealvm_secret *s = NULL;
	r = seal_open(rc->master, aad, sealed, n, &s, err);
	if (r < 0)
		return r;
	if (s->len != RC_HMAC_SECRET_LEN) {
		sealvm_secret_free(s);
		return sealvm_err_set(err, -EBADMSG, "SEALED_BLOB_INVALID",
				      "a sealed secret is invalid");
	}
	memset(ret, 0, sizeof(*ret));
	ret->principal.kind = (enum principal_kind)k.principal_kind;
	snprintf(ret->principal.iam_id, sizeof(ret->principal.iam_id), "%s", k.iam_id);
	snprintf(ret->principal.account_id, sizeof(ret->principal.account_id), "%s", k.account_id);
	snprintf(ret->principal.name, sizeof(ret->principal.name), "%s", k.principal_name);
	snprintf(ret->principal.credential_type, sizeof(ret->principal.credential_type), "hmac");
	snprintf(ret->key_guid, sizeof(ret->key_guid), "%s", k.guid);
	snprintf(ret->instance_guid, sizeof(ret->instance_guid), "%s", k.instance_guid);
	snprintf(ret->instance_crn, sizeof(ret->instance_crn), "%s", k.instance_crn);
	*ret_secret = s;
	return 0;
}

int rc_hmac_sigv4_lookup(void *userdata, const char *access_key_id, struct sealvm_secret **ret,
			 struct sealvm_err *err)
{
	struct rc_hmac_identity id;
	return rc_hmac_lookup(userdata, access_key_id, &id, ret, err);
}
