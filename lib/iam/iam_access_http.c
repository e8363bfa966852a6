// SPDX-License-Identifier: Apache-2.0
/*
 * iam_access_http.c — /v1/policies: the route table and its handlers (IBM
 * Policy Management API shapes).
 *
 * Handlers only: the ladder has authenticated, resolved and authorized the
 * request before a handler runs, and audits what a handler does not. Each
 * mutating handler does its writes in one db_write job whose last step is
 * http_request_audit_in_job, so a policy change and its audit event commit
 * together. Validation is iam_access.c's, SQL iam_access_store.c's. Nothing
 * here logs or echoes a credential: bodies and errors carry policy fields only.
 *
 * ETags: every write gives the policy a fresh random ETag. PUT requires
 * If-Match (428 IF_MATCH_REQUIRED without it, 412 PRECONDITION_FAILED when it
 * names another version); DELETE honours If-Match when given.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sealvm/http.h"
#include "sealvm/macro.h"

#include "iam_internal.h"

#define POLICY_BODY_MAX (16 * 1024)
#define POLICY_ID_MAX 64

/* --- errors ---------------------------------------------------------------------- */

/* A JSON string from text that may not be UTF-8 (a message cut at its size limit). */
static json_t *json_text(const char *s)
{
	json_t *j = json_string(s);
	if (j)
		return j;
	_cleanup_free_ char *copy = strdup(s);
	if (!copy)
		return NULL;
	for (char *c = copy; *c; c++)
		if ((unsigned char)*c >= 0x80)
			*c = '?';
	return json_string(copy);
}

/*
 * IBM's Policy Management error body {trace, errors: [{code, message}],
 * status_code}, plus the generic "error" member our own CLI reads. The
 * ETag preconditions answer 412/428, which the errno table has no entry for.
 */
static void access_format_error(const struct http_request *req, int status,
				const struct sealvm_err *err, struct http_response *resp)
{
	char code[SEALVM_ERR_REASON_MAX];

	if (strcmp(err->reason, "PRECONDITION_FAILED") == 0)
		status = 412;
	else if (strcmp(err->reason, "IF_MATCH_REQUIRED") == 0)
		status = 428;
	snprintf(code, sizeof(code), "%s", err->reason);
	for (char *c = code; *c; c++)
		*c = (char)tolower((unsigned char)*c);
	const char *rid = http_request_id(req);
	resp->status = status;
	resp->body = json_pack("{s:s, s:[{s:s, s:o*}], s:i, s:{s:i, s:s, s:o*, s:s}}", "trace",
			       rid ? rid : "", "errors", "code", code, "message",
			       json_text(err->message), "status_code", status, "error", "code",
			       status, "reason", err->reason, "message", json_text(err->message),
			       "request_id", rid ? rid : "");
}

/* --- helpers ---------------------------------------------------------------------- */

static struct sealvm_db *db_of(void *ctx)
{
	return iam_access_db(ctx);
}

struct row_copy {
	char account_id[40];
	char type[16];
	char etag[48];
	char created_at[32];
	char created_by_id[IAM_IAM_ID_MAX];
	json_t *json; /* when wanted */
	bool want_json;
	bool found;
};

static int copy_row(const struct iam_policy_row *row, void *userdata, struct sealvm_err *err)
{
	struct row_copy *c = userdata;
	c->found = true;
	snprintf(c->account_id, sizeof(c->account_id), "%s", row->account_id);
	snprintf(c->type, sizeof(c->type), "%s", row->type);
	snprintf(c->etag, sizeof(c->etag), "%s", row->etag);
	snprintf(c->created_at, sizeof(c->created_at), "%s", row->created_at);
	snprintf(c->created_by_id, sizeof(c->created_by_id), "%s", row->created_by_id);
	if (c->want_json) {
		c->json = iam_policy_json(row);
		if (!c->json)
			return sealvm_err_set(err, -ENOMEM, "NO_MEMORY", "out of memory");
	}
	return 1;
}

static int policy_not_found(const char *id, struct sealvm_err *err)
{
	return sealvm_err_set(err, -ENOENT, "POLICY_NOT_FOUND",
			      "policy %.64s not found in your account", id);
}

/* Reads policy @id of @account_id into @c on @conn; -ENOENT when missing or another account's. */
static int policy_read(sqlite3 *conn, const char *account_id, const char *id, struct row_copy *c,
		       struct sealvm_err *err)
{
	if (strlen(id) > POLICY_ID_MAX)
		return policy_not_found(id, err);
	int r = iam_access_store_get(conn, id, copy_row, c, err);
	if (r < 0)
		return r;
	if (!c->found || strcmp(c->account_id, account_id) != 0) {
		json_decref(c->json);
		c->json = NULL;
		return policy_not_found(id, err);
	}
	return 0;
}

static int set_etag(struct http_response *resp, const char *etag)
{
	char quoted[64];
	snprintf(quoted, sizeof(quoted), "\"%s\"", etag);
	return http_response_header(resp, "ETag", quoted);
}

static void target_for(struct http_target *t, const char *account_id, const char *id)
{
	memset(t, 0, sizeof(*t));
	snprintf(t->account_id, sizeof(t->account_id), "%s", account_id);
	snprintf(t->service_name, sizeof(t->service_name), "%s", IAM_ACCESS_SERVICE_NAME);
	snprintf(t->resource_type, sizeof(t->resource_type), "policy");
	snprintf(t->resource, sizeof(t->resource), "%s", id);
	snprintf(t->name, sizeof(t->name), "%s", id);
	iam_policy_crn(account_id, id, t->crn, sizeof(t->crn));
}

/* Non-secret data for the audit event: the policy's type and role ids (when known), its id. */
static void audit_data(struct http_request *req, const char *type, const char *roles_json,
		       const char *id)
{
	json_t *rq = type ? json_pack("{s:s}", "policyType", type) : NULL;
	if (rq && roles_json)
		json_object_set_new(rq, "roles", json_loads(roles_json, 0, NULL));
	json_t *rs = id ? json_pack("{s:s}", "policyId", id) : NULL;
	http_request_set_audit_data(req, rq, rs);
}

/* --- resolve ------------------------------------------------------------------------- */

static int resolve_policy(struct http_request *req, struct http_target *t, void *ctx,
			  struct sealvm_err *err)
{
	const struct sealvm_principal *p = http_request_principal(req);
	const char *id = http_request_param(req, "id");
	struct row_copy c = {0};

	if (!id)
		return policy_not_found("", err);
	sqlite3 *conn = db_read_begin(db_of(ctx));
	int r = policy_read(conn, p->account_id, id, &c, err);
	db_read_end(db_of(ctx), conn);
	if (r < 0)
		return r;
	target_for(t, c.account_id, id);
	return 0;
}

/* --- list ------------------------------------------------------------------------------ */

struct list_ctx {
	json_t *arr;
};

static int list_row(const struct iam_policy_row *row, void *userdata, struct sealvm_err *err)
{
	struct list_ctx *l = userdata;
	json_t *o = iam_policy_json(row);
	if (!o || json_array_append_new(l->arr, o) < 0)
		return sealvm_err_set(err, -ENOMEM, "NO_MEMORY", "out of memory");
	return 0;
}

/* A query parameter: NULL when absent; -EINVAL when malformed or repeated. */
static int query_param(struct http_request *req, const char *name, char **ret,
		       struct sealvm_err *err)
{
	char *v = http_request_query_field(req, name);
	if (v) {
		*ret = v;
		return 0;
	}
	if (errno == ENOENT) {
		*ret = NULL;
		return 0;
	}
	if (errno == ENOMEM)
		return sealvm_err_set(err, -ENOMEM, "NO_MEMORY", "out of memory");
	return sealvm_err_set(err, -EINVAL, "INVALID_QUERY",
			      "query parameter %s: malformed or given more than once", name);
}

static int handle_list(struct http_request *req, struct http_response *resp, void *ctx,
		       struct sealvm_err *err)
{
	const struct sealvm_principal *p = http_request_principal(req);
	_cleanup_free_ char *account_id = NULL, *iam_id = NULL, *type = NULL, *service = NULL;
	int r = query_param(req, "account_id", &account_id, err);
	if (r >= 0)
		r = query_param(req, "iam_id", &iam_id, err);
	if (r >= 0)
		r = query_param(req, "type", &type, err);
	if (r >= 0)
		r = query_param(req, "service_name", &service, err);
	if (r < 0)
		return r;
	if (account_id && strcmp(account_id, p->account_id) != 0)
		return sealvm_err_set(err, -EACCES, "ACCOUNT_MISMATCH",
				      "account_id: you may list the policies of your own account "
				      "(%s) only",
				      p->account_id);
	if (type && strcmp(type, "access") != 0 && strcmp(type, "authorization") != 0)
		return sealvm_err_set(err, -EINVAL, "INVALID_QUERY",
				      "type: must be \"access\" or \"authorization\"");
	if (iam_id && type && strcmp(type, "authorization") == 0)
		return sealvm_err_set(err, -EINVAL, "INVALID_QUERY",
				      "iam_id: authorizations have no iam_id subject; filter them "
				      "by type alone");

	struct iam_policy_filter f = {
		.account_id = p->account_id,
		.type = iam_id ? "access" : (type && type[0] ? type : NULL),
		.subject = iam_id && iam_id[0] ? iam_id : NULL,
		.service_name = service && service[0] ? service : NULL,
	};
	_cleanup_json_ json_t *arr = json_array();
	if (!arr)
		return sealvm_err_set(err, -ENOMEM, "NO_MEMORY", "out of memory");
	struct list_ctx l = {arr};
	sqlite3 *conn = db_read_begin(db_of(ctx));
	r = iam_access_store_list(conn, &f, list_row, &l, err);
	db_read_end(db_of(ctx), conn);
	if (r < 0)
		return r;
	resp->body = json_pack("{s:O}", "policies", arr);
	if (!resp->body)
		return sealvm_err_set(err, -ENOMEM, "NO_MEMORY", "out of memory");
	resp->status = 200;
	return 0;
}

/* --- get --------------------------------------------------------------------------------- */

static int handle_get(struct http_request *req, struct http_response *resp, void *ctx,
		      struct sealvm_err *err)
{
	const struct sealvm_principal *p = http_request_principal(req);
	const char *id = http_request_param(req, "id");
	struct row_copy c = {.want_json = true};

	sqlite3 *conn = db_read_begin(db_of(ctx));
	int r = policy_read(conn, p->account_id, id, &c, err);
	db_read_end(db_of(ctx), conn);
	if (r < 0)
		return r;
	resp->body = c.json;
	resp->status = 200;
	if (set_etag(resp, c.etag) < 0)
		return sealvm_err_set(err, -ENOMEM, "NO_MEMORY", "out of memory");
	return 0;
}

/* --- create and replace ---------------------------------------------------------------- */

struct write_job {
	struct http_request *req;
	const struct iam_policy_spec *spec;
	struct iam_policy_row row;
	const char *if_match; /* replace, delete */
	int status;
	/* Filled by replace from the stored policy. */
	char created_at[32];
	char created_by_id[IAM_IAM_ID_MAX];
};

static int job_create(sqlite3 *conn, void *userdata, struct sealvm_err *err)
{
	struct write_job *j = userdata;
	int64_t n;
	int r = iam_access_store_count(conn, j->row.account_id, &n, err);
	if (r < 0)
		return r;
	if (n >= IAM_POLICIES_PER_ACCOUNT_MAX)
		return sealvm_err_set(err, -E2BIG, "TOO_MANY_POLICIES",
				      "the account has %lld policies, the most it may have; delete "
				      "some first",
				      (long long)n);
	r = iam_access_store_insert(conn, &j->row, j->spec->rules, j->spec->n_rules, err);
	if (r < 0)
		return r;
	return http_request_audit_in_job(j->req, conn, j->status, err);
}

static int job_replace(sqlite3 *conn, void *userdata, struct sealvm_err *err)
{
	struct write_job *j = userdata;
	struct row_copy c = {0};
	int r = policy_read(conn, j->row.account_id, j->row.id, &c, err);
	if (r < 0)
		return r;
	if (strcmp(c.type, j->row.type) != 0)
		return sealvm_err_set(
			err, -EINVAL, "INVALID_TYPE",
			"type: a policy's type cannot change (it is \"%s\"); delete it "
			"and create another",
			c.type);
	if (!iam_policy_etag_matches(j->if_match, c.etag))
		return sealvm_err_set(err, -EALREADY, "PRECONDITION_FAILED",
				      "If-Match does not name the policy's current version: it was "
				      "changed since you read it; GET it again and retry");
	snprintf(j->created_at, sizeof(j->created_at), "%s", c.created_at);
	snprintf(j->created_by_id, sizeof(j->created_by_id), "%s", c.created_by_id);
	r = iam_access_store_update(conn, &j->row, j->spec->rules, j->spec->n_rules, err);
	if (r < 0)
		return r;
	return http_request_audit_in_job(j->req, conn, j->status, err);
}

static int write_policy(struct http_request *req, struct http_response *resp, void *ctx,
			bool replace, struct sealvm_err *err)
{
	const struct sealvm_principal *p = http_request_principal(req);
	_cleanup_json_ json_t *body = NULL;
	struct iam_policy_spec spec;
	char id[POLICY_ID_MAX + 1], etag[40], now[32];
	const char *if_match = NULL;

	if (replace) {
		if_match = http_request_header(req, "If-Match");
		if (!if_match || !if_match[0])
			return sealvm_err_set(
				err, -EINVAL, "IF_MATCH_REQUIRED",
				"If-Match: required to replace a policy; send the ETag "
				"of the version you read (GET /v1/policies/{id})");
		snprintf(id, sizeof(id), "%s", http_request_param(req, "id"));
	} else if (iam_policy_new_id(id) < 0) {
		return sealvm_err_set(err, -EIO, "RANDOM_FAILED", "cannot generate a policy id");
	}
	if (iam_policy_new_etag(etag) < 0)
		return sealvm_err_set(err, -EIO, "RANDOM_FAILED", "cannot generate an ETag");
	int r = http_request_json(req, &body, err);
	if (r < 0)
		return r;
	r = iam_policy_parse(body, p->account_id, &spec, err);
	if (r < 0)
		return r;
	iam_policy_time(now);

	struct write_job j = {
		.req = req,
		.spec = &spec,
		.if_match = if_match,
		.status = replace ? 200 : 201,
		.row =
			{
				.id = id,
				.account_id = p->account_id,
				.type = spec.authorization ? "authorization" : "access",
				.subject = spec.subject,
				.description = spec.description,
				.subjects = spec.subjects_json,
				.roles = spec.roles_json,
				.resources = spec.resources_json,
				.etag = etag,
				.created_at = now,
				.created_by_id = p->iam_id,
				.last_modified_at = now,
				.last_modified_by_id = p->iam_id,
			},
	};
	if (!replace) {
		struct http_target t;
		target_for(&t, p->account_id, id);
		http_request_set_target(req, &t);
	}
	audit_data(req, j.row.type, spec.roles_json, id);

	r = db_write(db_of(ctx), replace ? job_replace : job_create, &j, err);
	if (r >= 0) {
		if (replace) {
			j.row.created_at = j.created_at;
			j.row.created_by_id = j.created_by_id;
		}
		resp->body = iam_policy_json(&j.row);
		resp->status = j.status;
		if (!resp->body || set_etag(resp, etag) < 0)
			r = sealvm_err_set(
				err, -ENOMEM, "NO_MEMORY",
				"the policy was saved but the answer could not be built");
	}
	iam_policy_spec_done(&spec);
	return r < 0 ? r : 0;
}

static int handle_create(struct http_request *req, struct http_response *resp, void *ctx,
			 struct sealvm_err *err)
{
	return write_policy(req, resp, ctx, false, err);
}

static int handle_replace(struct http_request *req, struct http_response *resp, void *ctx,
			  struct sealvm_err *err)
{
	return write_policy(req, resp, ctx, true, err);
}

/* --- delete ------------------------------------------------------------------------------ */

static int job_delete(sqlite3 *conn, void *userdata, struct sealvm_err *err)
{
	struct write_job *j = userdata;
	if (j->if_match) {
		struct row_copy c = {0};
		int r = policy_read(conn, j->row.account_id, j->row.id, &c, err);
		if (r < 0)
			return r;
		if (!iam_policy_etag_matches(j->if_match, c.etag))
			return sealvm_err_set(
				err, -EALREADY, "PRECONDITION_FAILED",
				"If-Match does not name the policy's current version");
	}
	int r = iam_access_store_delete(conn, j->row.account_id, j->row.id, err);
	if (r < 0)
		return r;
	return http_request_audit_in_job(j->req, conn, j->status, err);
}

static int handle_delete(struct http_request *req, struct http_response *resp, void *ctx,
			 struct sealvm_err *err)
{
	const struct sealvm_principal *p = http_request_principal(req);
	const char *if_match = http_request_header(req, "If-Match");
	struct write_job j = {
		.req = req,
		.if_match = if_match && if_match[0] ? if_match : NULL,
		.status = 204,
		.row = {.id = http_request_param(req, "id"), .account_id = p->account_id},
	};
	audit_data(req, NULL, NULL, j.row.id);
	int r = db_write(db_of(ctx), job_delete, &j, err);
	if (r < 0)
		return r;
	resp->status = 204;
	return 0;
}

/* --- the table --------------------------------------------------------------------------- */

static const struct http_route access_routes[] = {
	{"POST", "/v1/policies", handle_create, NULL, "iam.policy.create", "iam-am.policy.create",
	 POLICY_BODY_MAX, 0},
	{"GET", "/v1/policies", handle_list, NULL, "iam.policy.list", "iam-am.policy.list", 0,
	 HTTP_ROUTE_NONBLOCKING},
	{"GET", "/v1/policies/{id}", handle_get, resolve_policy, "iam.policy.read",
	 "iam-am.policy.read", 0, HTTP_ROUTE_NONBLOCKING},
	{"PUT", "/v1/policies/{id}", handle_replace, resolve_policy, "iam.policy.update",
	 "iam-am.policy.update", POLICY_BODY_MAX, 0},
	{"DELETE", "/v1/policies/{id}", handle_delete, resolve_policy, "iam.policy.delete",
	 "iam-am.policy.delete", 0, 0},
};

const struct http_service *iam_access_http(struct iam *iam)
{
	struct http_service *svc = iam_access_service_slot(iam);
	if (!svc)
		return NULL;
	*svc = (struct http_service){
		.name = IAM_ACCESS_SERVICE_NAME,
		.routes = access_routes,
		.n_routes = ELEMENTSOF(access_routes),
		.format_error = access_format_error,
		.ctx = iam,
	};
	return svc;
}
