// SPDX-License-Identifier: Apache-2.0
/*
 * rc_http.c — the resource controller's API: handlers and route table.
 *
 *   POST   /v2/resource_instances        {name, target: REGION, resource_id: SERVICE}
 *   GET    /v2/resource_instances[?resource_id=]
 *   GET    /v2/resource_instances/{guid}
 *   DELETE /v2/resource_instances/{guid}
 *   POST|GET /v2/resource_keys, GET|DELETE /v2/resource_keys/{guid} (rc_hmac.c)
 *
 * An instance of another account is "not found", never "forbidden".
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/rand.h>

#include "sealvm/log.h"
#include "sealvm/rowcache.h"
#include "sealvm/sigv4.h"

#include "rc_internal.h"

static const char *const known_services[] = {"kms", "cloud-object-storage"};

static json_t *instance_json(const struct rc_instance *i)
{
	char url[96];
	snprintf(url, sizeof(url), "/v2/resource_instances/%s", i->guid);
	return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "id", i->crn,
			 "guid", i->guid, "crn", i->crn, "url", url, "name", i->name, "region_id",
			 i->region, "account_id", i->account_id, "resource_id", i->resource_id,
			 "state", i->state, "type", "service_instance", "created_at",
			 i->created_at);
}

static void target_of(struct http_request *req, const struct rc_instance *i)
{
	struct http_target t = *http_request_target(req);
	snprintf(t.account_id, sizeof(t.account_id), "%s", i->account_id);
	snprintf(t.service_name, sizeof(t.service_name), "resource-controller");
	snprintf(t.service_instance, sizeof(t.service_instance), "%s", i->guid);
	snprintf(t.resource_type, sizeof(t.resource_type), "instance");
	snprintf(t.resource, sizeof(t.resource), "%s", i->guid);
	snprintf(t.crn, sizeof(t.crn), "%s", i->crn);
	snprintf(t.name, sizeof(t.name), "%s", i->name);
	http_request_set_target(req, &t);
}

static int resolve_instance(struct http_request *req, struct http_target *t, void *ctx,
			    struct sealvm_err *err)
{
	struct rc *rc = ctx;
	const struct sealvm_principal *p = http_request_principal(req);
	struct rc_instance i;
	sqlite3 *conn = db_read_begin(rc->db);
	int r = rc_store_get(conn, p->account_id, http_request_param(req, "guid"), &i, err);
	db_read_end(rc->db, conn);
	if (r < 0)
		return r;
	snprintf(t->account_id, sizeof(t->account_id), "%s", i.account_id);
	snprintf(t->service_name, sizeof(t->service_name), "resource-controller");
	snprintf(t->service_instance, sizeof(t->service_instance), "%s", i.guid);
	snprintf(t->resource_type, sizeof(t->resource_type), "instance");
	snprintf(t->resource, sizeof(t->resource), "%s", i.guid);
	snprintf(t->crn, sizeof(t->crn), "%s", i.crn);
	snprintf(t->name, sizeof(t->name), "%s", i.name);
	return 0;
}

struct create_job {
	struct http_request *req;
	struct rc_instance i;
};

static int create_run(sqlite3 *conn, void *userdata, struct sealvm_err *err)
{
	struct create_job *j = userdata;
	int r = rc_store_insert(conn, &j->i, err);
	if (r < 0)
		return r;
	target_of(j->req, &j->i);
	http_request_set_audit_data(j->req, json_incref(http_request_audit_request_data(j->req)),
				    json_pack("{s:s, s:s}", "guid", j->i.guid, "crn", j->i.crn));
	return http_request_audit_in_job(j->req, conn, 201, err);
}

static int field(json_t *body, const char *name, size_t max, const char **ret,
		 struct sealvm_err *err)
{
	json_t *v = json_object_get(body, name);
	if (!v)
		return sealvm_err_set(err, -EINVAL, "PROPERTY_MISSING", "%s is required", name);
	if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) > max)
		return sealvm_err_set(err, -EINVAL, "INVALID_FIELD",
				      "%s must be a string of 1 to %zu characters", name, max);
	*ret = json_string_value(v);
	return 0;
}

static int h_create(struct http_request *req, struct http_response *resp, void *ctx,
		    struct sealvm_err *err)
{
	struct rc *rc = ctx;
	const struct sealvm_principal *p = http_request_principal(req);
	json_t *body = NULL;
	const char *name, *target, *resource_id;
	struct create_job j = {.req = req};
	unsigned char u[16];
	int r;

	if ((r = http_request_json(req, &body, err)) < 0)
		return r;
	if (!json_is_object(body)) {
		json_decref(body);
		return sealvm_err_set(err, -EINVAL, "INVALID_BODY",
				      "the body must be a JSON object");
	}
	if ((r = field(body, "name", 127, &name, err)) < 0 ||
	    (r = field(body, "target", 31, &target, err)) < 0 ||
	    (r = field(body, "resource_id", 63, &resource_id, err)) < 0)
		goto out;
	http_request_set_audit_data(req,
				    json_pack("{s:s, s:s, s:s}", "name", name, "target", target,
					      "resource_id", resource_id),
				    NULL);
	if (strcmp(target, rc->region) != 0) {
		r = sealvm_err_set(
			err, -EINVAL, "INVALID_TARGET",
			"target '%s' is not a region this deployment serves (it serves %s)", target,
			rc->region);
		goto out;
	}
	bool known = false;
	for (size_t k = 0; k < ELEMENTSOF(known_services); k++)
		known |= strcmp(resource_id, known_services[k]) == 0;
	if (!known) {
		r = sealvm_err_set(
			err, -EINVAL, "INVALID_RESOURCE_ID",
			"resource_id '%s' is no service with instances here: use kms or cloud-object-storage",
			resource_id);
		goto out;
	}
	if (RAND_bytes(u, sizeof(u)) != 1) {
		r = sealvm_err_set(err, -EIO, "RANDOM_FAILED", "no random bytes");
		goto out;
	}
	u[6] = (u[6] & 0x0f) | 0x40;
	u[8] = (u[8] & 0x3f) | 0x80;
	snprintf(j.i.guid, sizeof(j.i.guid),
		 "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", u[0], u[1],
		 u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12], u[13], u[14],
		 u[15]);
	snprintf(j.i.account_id, sizeof(j.i.account_id), "%s", p->account_id);
	snprintf(j.i.crn, sizeof(j.i.crn), "crn:v1:sealvm:local:%s:%s:a/%s:%s::", resource_id,
		 rc->region, p->account_id, j.i.guid);
	snprintf(j.i.name, sizeof(j.i.name), "%s", name);
	snprintf(j.i.resource_id, sizeof(j.i.resource_id), "%s", resource_id);
	snprintf(j.i.region, sizeof(j.i.region), "%s", rc->region);
	snprintf(j.i.state, sizeof(j.i.state), "active");
	time_t now = time(NULL);
	struct tm tm;
	gmtime_r(&now, &tm);
	strftime(j.i.created_at, sizeof(j.i.created_at), "%Y-%m-%dT%H:%M:%SZ", &tm);
	r = db_write(rc->db, create_run, &j, err);
	if (r < 0)
		goto out;
	resp->status = 201;
	resp->body = instance_json(&j.i);
	r = resp->body ? 0 : -ENOMEM;
out:
	json_decref(body);
	return r;
}

static int list_one(const struct rc_instance *i, void *arg)
{
	return json_array_append_new(arg, instance_json(i)) == 0 ? 0 : -ENOMEM;
}

static int h_list(struct http_request *req, struct http_response *resp, void *ctx,
		  struct sealvm_err *err)
{
	struct rc *rc = ctx;
	char *resource_id = http_request_query_field(req, "resource_id");
	json_t *items = json_array();
	sqlite3 *conn = db_read_begin(rc->db);
	int r = items ? rc_store_list(conn, http_request_principal(req)->account_id, resource_id,
				      list_one, items, err)
		      : -ENOMEM;
	db_read_end(rc->db, conn);
	free(resource_id);
	if (r < 0) {
		json_decref(items);
		return r;
	}
	resp->status = 200;
	resp->body = json_pack("{s:I, s:n, s:o}", "rows_count", (json_int_t)json_array_size(items),
			       "next_url", "resources", items);
	return resp->body ? 0 : -ENOMEM;
}

static int h_get(struct http_request *req, struct http_response *resp, void *ctx,
		 struct sealvm_err *err)
{
	struct rc *rc = ctx;
	struct rc_instance i;
	sqlite3 *conn = db_read_begin(rc->db);
	int r = rc_store_get(conn, http_request_target(req)->account_id,
			     http_request_param(req, "guid"), &i, err);
	db_read_end(rc->db, conn);
	if (r < 0)
		return r;
	resp->status = 200;
	resp->body = instance_json(&i);
	return resp->body ? 0 : -ENOMEM;
}

int rc_refuse_not_empty(struct sealvm_err *err, const char *what, const char *guid, int64_t n,
			const char *one, const char *many)
{
	return sealvm_err_set(err, -ENOTEMPTY, "RESOURCE_INSTANCE_NOT_EMPTY",
			      "%s %s still has %lld %s: delete %s first", what, guid, (long long)n,
			      n == 1 ? one : many, n == 1 ? "it" : "them");
}

int rc_add_delete_guard(struct rc *rc, const char *resource_id, rc_delete_guard_fn fn)
{
	if (rc->n_guards >= RC_MAX_DELETE_GUARDS)
		return -E2BIG;
	rc->guards[rc->n_guards].resource_id = resource_id;
	rc->guards[rc->n_guards].fn = fn;
	rc->n_guards++;
	return 0;
}

struct delete_job {
	struct rc *rc;
	struct http_request *req;
	/* The access key ids of the instance's HMAC keys, to drop from the signing-key cache. */
	char (*keys)[RC_HMAC_ACCESS_KEY_ID_LEN + 1];
	size_t n_keys;
};

static int collect_key(const struct rc_hmac_key *k, void *arg)
{
	struct delete_job *j = arg;
	void *grown = realloc(j->keys, (j->n_keys + 1) * sizeof(*j->keys));
	if (!grown)
		return -ENOMEM;
	j->keys = grown;
	snprintf(j->keys[j->n_keys++], sizeof(*j->keys), "%s", k->access_key_id);
	return 0;
}

static int delete_run(sqlite3 *conn, void *userdata, struct sealvm_err *err)
{
	struct delete_job *j = userdata;
	const struct http_target *t = http_request_target(j->req);
	struct rc_instance i;
	int n_keys = 0;
	int r = rc_store_get(conn, t->account_id, t->resource, &i, err);
	if (r < 0)
		return r;
	/* The owning service refuses while the instance holds data (keys, buckets). */
	for (unsigned g = 0; g < j->rc->n_guards; g++)
		if (strcmp(j->rc->guards[g].resource_id, i.resource_id) == 0 &&
		    (r = j->rc->guards[g].fn(conn, i.account_id, i.guid, err)) < 0)
			return r;
	j->n_keys = 0;
	r = rc_hmac_store_list(conn, i.account_id, i.guid, collect_key, j, err);
	if (r == -ENOMEM && !sealvm_err_isset(err))
		sealvm_err_set(err, r, NULL, "out of memory");
	if (r < 0 ||
	    (r = rc_hmac_store_delete_instance(conn, i.account_id, i.guid, &n_keys, err)) < 0 ||
	    (r = rc_store_delete(conn, i.account_id, i.guid, err)) < 0)
		return r;
	http_request_set_audit_data(j->req, NULL,
				    json_pack("{s:i}", "resource_keys_deleted", n_keys));
	return http_request_audit_in_job(j->req, conn, 204, err);
}

static int h_delete(struct http_request *req, struct http_response *resp, void *ctx,
		    struct sealvm_err *err)
{
	struct rc *rc = ctx;
	struct delete_job j = {.rc = rc, .req = req};
	int r = db_write(rc->db, delete_run, &j, err);
	/* Committed: the instance's HMAC keys are gone; drop what the cache derived from them. */
	for (size_t k = 0; r >= 0 && rc->sigv4_cache && k < j.n_keys; k++)
		sigv4_key_cache_forget(rc->sigv4_cache, j.keys[k]);
	free(j.keys);
	if (r < 0)
		return r;
	resp->status = 204;
	return 0;
}

static const struct http_route rc_routes[] = {
	{"POST", "/v2/resource_instances", h_create, NULL, "resource-controller.instance.create",
	 "resource-controller.instance.create", 16 * 1024, 0},
	{"GET", "/v2/resource_instances", h_list, NULL, "resource-controller.instance.list",
	 "resource-controller.instance.list", 0, HTTP_ROUTE_NONBLOCKING},
	{"GET", "/v2/resource_instances/{guid}", h_get, resolve_instance,
	 "resource-controller.instance.read", "resource-controller.instance.read", 0,
	 HTTP_ROUTE_NONBLOCKING},
	{"DELETE", "/v2/resource_instances/{guid}", h_delete, resolve_instance,
	 "resource-controller.instance.delete", "resource-controller.instance.delete", 0, 0},
	{"POST", "/v2/resource_keys", rc_hmac_h_create, NULL, "resource-controller.key.create",
	 "resource-controller.resource-key.create", 16 * 1024, 0},
	{"GET", "/v2/resource_keys", rc_hmac_h_list, NULL, "resource-controller.key.list",
	 "resource-controller.resource-key.list", 0, HTTP_ROUTE_NONBLOCKING},
	{"GET", "/v2/resource_keys/{guid}", rc_hmac_h_get, rc_hmac_resolve,
	 "resource-controller.key.read", "resource-controller.resource-key.read", 0,
	 HTTP_ROUTE_NONBLOCKING},
	{"DELETE", "/v2/resource_keys/{guid}", rc_hmac_h_delete, rc_hmac_resolve,
	 "resource-controller.key.delete", "resource-controller.resource-key.delete", 0, 0},
};

int rc_new(struct sealvm_db *db, const char *region, struct rc **ret)
{
	struct rc *rc = calloc(1, sizeof(*rc));
	if (!rc)
		return -ENOMEM;
	rc->db = db;
	rc->region = region;
	/* Without memory for it, every lookup reads the database (a NULL cache misses). */
	(void)sealvm_rowcache_new(1024, sizeof(struct rc_instance), &rc->instance_rows);
	rc->http.name = "resource-controller";
	rc->http.routes = rc_routes;
	rc->http.n_routes = ELEMENTSOF(rc_routes);
	rc->http.ctx = rc;
	*ret = rc;
	return 0;
}

void rc_free(struct rc *rc)
{
	if (rc)
		sealvm_rowcache_free(rc->instance_rows);
	free(rc);
}

const struct http_service *rc_http(struct rc *rc)
{
	return &rc->http;
}

struct instance_ref {
	const char *account_id, *guid;
};

static int instance_read(sqlite3 *conn, void *ctx, void *row, struct sealvm_err *err)
{
	const struct instance_ref *ref = ctx;
	return rc_store_get(conn, ref->account_id, ref->guid, row, err);
}

int rc_instance_get(struct rc *rc, const char *account_id, const char *guid,
		    struct rc_instance *ret, struct sealvm_err *err)
{
	struct instance_ref ref = {account_id, guid};
	char key[SEALVM_ROWCACHE_KEY_MAX + 1];
	/* "ACCOUNT/GUID": an account id never has a '/', so the split is unique. */
	bool keyed = account_id && guid && !strchr(account_id, '/') &&
		     (size_t)snprintf(key, sizeof(key), "%s/%s", account_id, guid) < sizeof(key);
	return sealvm_rowcache_read(rc->instance_rows, rc->db, keyed ? key : NULL, ret,
				    instance_read, &ref, err);
}
