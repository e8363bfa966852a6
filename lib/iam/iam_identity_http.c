// SPDX-License-Identifier: Apache-2.0
/*
 * iam_identity_http.c — the identity half's HTTP front: one route table,
 * resolvers, handlers, and IBM IAM's JSON shapes (bodies and errors).
 *
 * Handlers only parse, call the logic (iam_identity.c, iam_token.c) and
 * render. They never authenticate, authorize or audit: the ladder does, and
 * a write's audit event is appended inside the logic's write job through the
 * job tail below. Resolvers answer 404 for a target that is missing or in
 * another account, so existence never leaks.
 *
 * Never puts an API key value or a token into an error, a log line or audit
 * data; the two response fields that carry them (apikey on creation,
 * access_token) are the only exceptions, and API key form values are wiped.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "sealvm/num.h"

#include "iam_internal.h"

#define JSON_BODY_MAX (16 * 1024)
#define FORM_BODY_MAX (8 * 1024)

/* ---- errors in IBM IAM's shape ---------------------------------------------------------- */

/*
 * IBM's token endpoint answers {errorCode, errorMessage, errorDetails,
 * context}; its management APIs {trace, errors: [{code, message}],
 * status_code}. Clients read either, so both are sent. errorCode is IBM's
 * BXNIM code where IBM has one for the case, else our stable reason code.
 */
static void iam_format_error(const struct http_request *req, int status,
			     const struct sealvm_err *err, struct http_response *resp)
{
	const char *code = err->reason;
	const char *message = err->message;
	const char *details = NULL;

	if (strcmp(err->reason, "APIKEY_NOT_FOUND") == 0) {
		code = "BXNIM0415E";
	} else if (strcmp(err->reason, "PROPERTY_MISSING") == 0) {
		code = "BXNIM0109E";
		message = "Property missing or empty.";
		details = err->message;
	}
	json_t *ctxt = json_pack("{s:s, s:s}", "requestId", http_request_id(req), "clientIp",
				 http_request_remote(req));
	json_t *errors = json_pack("[{s:s, s:s}]", "code", err->reason, "message", err->message);
	json_t *body =
		json_pack("{s:s, s:s, s:s?, s:o?, s:s, s:o?, s:i}", "errorCode", code,
			  "errorMessage", message, "errorDetails", details, "context", ctxt,
			  "trace", http_request_id(req), "errors", errors, "status_code", status);
	resp->status = status;
	resp->body = body; /* NULL (no memory): the ladder falls back to its generic body */
}

/* ---- request parsing -------------------------------------------------------------------- */

static int body_object(struct http_request *req, json_t **ret, struct sealvm_err *err)
{
	json_t *j = NULL;
	int r = http_request_json(req, &j, err);
	if (r < 0)
		return r;
	if (!json_is_object(j)) {
		json_decref(j);
		return sealvm_err_set(err, -EINVAL, "INVALID_BODY",
				      "the request body must be a JSON object");
	}
	*ret = j;
	return 0;
}

/* A string member: absent or null → *ret NULL (an error when @required); other types → 400. */
static int field_str(json_t *o, const char *name, bool required, const char **ret,
		     struct sealvm_err *err)
{
	json_t *v = json_object_get(o, name);
	if (!v || json_is_null(v)) {
		if (required)
			return sealvm_err_set(err, -EINVAL, "PROPERTY_MISSING",
					      "Property '%s' either missing or empty.", name);
		*ret = NULL;
		return 0;
	}
	if (!json_is_string(v))
		return sealvm_err_set(err, -EINVAL, "INVALID_FIELD", "'%s' must be a string", name);
	if (strlen(json_string_value(v)) != json_string_length(v))
		return sealvm_err_set(err, -EINVAL, "INVALID_FIELD",
				      "'%s' contains a NUL character", name);
	*ret = json_string_value(v);
	return 0;
}

static int query_param(struct http_request *req, const char *name, char **ret,
		       struct sealvm_err *err)
{
	errno = 0;
	char *v = http_request_query_field(req, name);
	if (!v && errno == ENOMEM)
		return sealvm_err_set(err, -ENOMEM, NULL, "out of memory");
	if (!v && errno == EINVAL)
		return sealvm_err_set(err, -EINVAL, "INVALID_QUERY",
				      "query parameter '%s' is malformed or given twice", name);
	*ret = v && v[0] ? v : NULL;
	if (v && !v[0])
		free(v);
	return 0;
}

/* pagesize (1..100, default 20) and pagetoken (an opaque offset we handed out). */
static int paging(struct http_request *req, unsigned *ret_offset, unsigned *ret_limit,
		  struct sealvm_err *err)
{
	_cleanup_free_ char *size = NULL, *token = NULL;
	unsigned limit = IAM_PAGE_DEFAULT, offset = 0;
	int r;
	if ((r = query_param(req, "pagesize", &size, err)) < 0 ||
	    (r = query_param(req, "pagetoken", &token, err)) < 0)
		return r;
	if (size && sealvm_parse_uint(size, 1, IAM_PAGE_MAX, &limit) < 0)
		return sealvm_err_set(err, -EINVAL, "INVALID_QUERY",
				      "'pagesize' must be a number from 1 to %d", IAM_PAGE_MAX);
	if (token && sealvm_parse_uint(token, 0, 1u << 30, &offset) < 0)
		return sealvm_err_set(err, -EINVAL, "INVALID_QUERY",
				      "'pagetoken' is not one this server handed out");
	*ret_offset = offset;
	*ret_limit = limit;
	return 0;
}

/* ---- JSON shapes ------------------------------------------------------------------------ */

static json_t *serviceid_json(const struct iam_serviceid *s)
{
	char created[32], modified[32], tag[24];
	iam_format_time(s->created_ms, created);
	iam_format_time(s->modified_ms, modified);
	snprintf(tag, sizeof(tag), "%lld", (long long)s->version);
	return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:b, s:s, s:s, s:s}", "id", s->id,
			 "iam_id", s->iam_id, "account_id", s->account_id, "name", s->name,
			 "description", s->description, "crn", s->crn, "locked", s->locked,
			 "created_at", created, "modified_at", modified, "entity_tag", tag);
}

static json_t *apikey_json(const struct iam_apikey *k)
{
	char created[32], modified[32], tag[24];
	iam_format_time(k->created_ms, created);
	iam_format_time(k->modified_ms, modified);
	snprintf(tag, sizeof(tag), "%lld", (long long)k->version);
	return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:b, s:s, s:s, s:s, s:s}", "id", k->id,
			 "iam_id", k->iam_id, "account_id", k->account_id, "name", k->name,
			 "description", k->description, "crn", k->crn, "locked", k->locked,
			 "created_by", k->created_by, "created_at", created, "modified_at",
			 modified, "entity_tag", tag);
}

static json_t *user_json(const struct iam_user *u)
{
	char created[32];
	iam_format_time(u->created_ms, created);
	return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "id", u->iam_id, "iam_id",
			 u->iam_id, "account_id", u->account_id, "name", u->name, "email", u->email,
			 "user_id", u->email, "state", u->state, "created_at", created);
}

static int set_etag(struct http_response *resp, int64_t version)
{
	char tag[32];
	snprintf(tag, sizeof(tag), "\"%lld\"", (long long)version);
	return http_response_header(resp, "ETag", tag);
}

static int respond(struct http_response *resp, int status, json_t *body, struct sealvm_err *err)
{
	if (!body)
		return sealvm_err_set(err, -ENOMEM, NULL, "out of memory");
	resp->status = status;
	resp->body = body;
	return 0;
}

/* ---- targets ---------------------------------------------------------------------------- */

static void target_base(struct http_request *req, struct http_target *t, const char *account_id,
			const char *type)
{
	memset(t, 0, sizeof(*t));
	snprintf(t->account_id, sizeof(t->account_id), "%s", account_id);
	snprintf(t->service_name, sizeof(t->service_name), IAM_SERVICE_NAME);
	snprintf(t->resource_type, sizeof(t->resource_type), "%s", type);
}

static void target_entity(struct http_target *t, const char *id, const char *crn, const char *name)
{
	snprintf(t->resource, sizeof(t->resource), "%s", id);
	snprintf(t->crn, sizeof(t->crn), "%s", crn);
	snprintf(t->name, sizeof(t->name), "%s", name);
}

/* An account named by the request must be the caller's: nobody acts across accounts. */
static int same_account(struct http_request *req, const char *named, struct sealvm_err *err)
{
	const struct sealvm_principal *p = http_request_principal(req);
	if (named && strcmp(named, p->account_id) != 0)
		return sealvm_err_set(
			err, -EACCES, "OTHER_ACCOUNT",
			"'account_id' is not the caller's account; nobody acts across "
			"accounts");
	return 0;
}

static int resolve_collection(struct http_request *req, struct http_target *t, const char *type,
			      bool body_account, struct sealvm_err *err)
{
	_cleanup_free_ char *q = NULL;
	const char *named = NULL;
	int r;

	if (body_account) {
		_cleanup_json_ json_t *body = NULL;
		if ((r = body_object(req, &body, err)) < 0 ||
		    (r = field_str(body, "account_id", false, &named, err)) < 0 ||
		    (r = same_account(req, named, err)) < 0)
			return r;
	} else {
		if ((r = query_param(req, "account_id", &q, err)) < 0 ||
		    (r = same_account(req, q, err)) < 0)
			return r;
	}
	target_base(req, t, http_request_principal(req)->account_id, type);
	return 0;
}

static int resolve_serviceids(struct http_request *req, struct http_target *t, void *ctx,
			      struct sealvm_err *err)
{
	bool post = strcmp(http_request_method(req), "POST") == 0;
	return resolve_collection(req, t, "serviceid", post, err);
}

static int resolve_users(struct http_request *req, struct http_target *t, void *ctx,
			 struct sealvm_err *err)
{
	return resolve_collection(req, t, "user", false, err);
}

/*
 * Keeps a copy of the row a resolver read: a GET answers from the very row the
 * decision was made on, without reading it again.
 */
static int keep_row(struct http_request *req, const void *row, size_t size, struct sealvm_err *err)
{
	void *copy = malloc(size);
	if (!copy)
		return sealvm_err_set(err, -ENOMEM, NULL, "out of memory");
	memcpy(copy, row, size);
	http_request_keep(req, copy, free);
	return 0;
}

/* The row the route's resolver kept (it always keeps one, or fails the request). */
static const void *kept_row(const struct http_request *req, struct sealvm_err *err)
{
	const void *row = http_request_kept(req);
	if (!row)
		sealvm_err_set(err, -EIO, NULL, "internal error: the resolver kept no row");
	return row;
}

static int resolve_serviceid(struct http_request *req, struct http_target *t, void *ctx,
			     struct sealvm_err *err)
{
	struct iam_serviceid s;
	const char *account = http_request_principal(req)->account_id;
	int r = iam_serviceid_get(ctx, account, http_request_param(req, "id"), &s, err);
	if (r < 0)
		return r;
	target_base(req, t, s.account_id, "serviceid");
	target_entity(t, s.id, s.crn, s.name);
	return keep_row(req, &s, sizeof(s), err);
}

static int resolve_user(struct http_request *req, struct http_target *t, void *ctx,
			struct sealvm_err *err)
{
	struct iam_user u;
	const char *account = http_request_principal(req)->account_id;
	char crn[IAM_CRN_MAX];
	int r = iam_user_get(ctx, account, http_request_param(req, "id"), &u, err);
	if (r < 0)
		return r;
	snprintf(crn, sizeof(crn), IAM_CRN_PREFIX "%s::user:%s", u.account_id, u.iam_id);
	target_base(req, t, u.account_id, "user");
	target_entity(t, u.iam_id, crn, u.name);
	return keep_row(req, &u, sizeof(u), err);
}

static int resolve_apikey(struct http_request *req, struct http_target *t, void *ctx,
			  struct sealvm_err *err)
{
	struct iam_apikey k;
	const char *account = http_request_principal(req)->account_id;
	int r = iam_apikey_get(ctx, account, http_request_param(req, "id"), &k, err);
	if (r < 0)
		return r;
	target_base(req, t, k.account_id, "apikey");
	target_entity(t, k.id, k.crn, k.name);
	return keep_row(req, &k, sizeof(k), err);
}

/* The owner an API key request names: its service ID or user is the target. */
static int resolve_owner(struct http_request *req, struct http_target *t, struct iam *iam,
			 const char *iam_id, struct sealvm_err *err)
{
	const char *account = http_request_principal(req)->account_id;
	int r;

	switch (iam_owner_kind_of(iam_id)) {
	case IAM_OWNER_SERVICE_ID: {
		struct iam_serviceid s;
		sqlite3 *conn = db_read_begin(iam->db);
		r = iam_store_serviceid_get_by_iam_id(conn, iam_id, &s, err);
		db_read_end(iam->db, conn);
		if (r == -ENOENT || (r == 0 && strcmp(s.account_id, account) != 0)) {
			sealvm_err_clear(err);
			return sealvm_err_set(err, -ENOENT, "IAM_ID_NOT_FOUND",
					      "the service ID named by 'iam_id' was not found in "
					      "this account");
		}
		if (r < 0)
			return r;
		target_base(req, t, s.account_id, "serviceid");
		target_entity(t, s.id, s.crn, s.name);
		return 0;
	}
	case IAM_OWNER_USER: {
		struct iam_user u;
		char crn[IAM_CRN_MAX];
		r = iam_user_get(iam, account, iam_id, &u, err);
		if (r == -ENOENT) {
			sealvm_err_clear(err);
			return sealvm_err_set(err, -ENOENT, "IAM_ID_NOT_FOUND",
					      "the user named by 'iam_id' was not found in this "
					      "account");
		}
		if (r < 0)
			return r;
		snprintf(crn, sizeof(crn), IAM_CRN_PREFIX "%s::user:%s", u.account_id, u.iam_id);
		target_base(req, t, u.account_id, "user");
		target_entity(t, u.iam_id, crn, u.name);
		return 0;
	}
	default:
		return sealvm_err_set(err, -EINVAL, "INVALID_IAM_ID",
				      "'iam_id' must name a user (IBMid-…) or a service ID "
				      "(iam-ServiceId-…)");
	}
}

static int resolve_apikeys(struct http_request *req, struct http_target *t, void *ctx,
			   struct sealvm_err *err)
{
	int r;
	if (strcmp(http_request_method(req), "POST") == 0) {
		_cleanup_json_ json_t *body = NULL;
		const char *iam_id, *named;
		if ((r = body_object(req, &body, err)) < 0 ||
		    (r = field_str(body, "iam_id", true, &iam_id, err)) < 0 ||
		    (r = field_str(body, "account_id", false, &named, err)) < 0 ||
		    (r = same_account(req, named, err)) < 0)
			return r;
		return resolve_owner(req, t, ctx, iam_id, err);
	}
	_cleanup_free_ char *iam_id = NULL;
	if ((r = query_param(req, "iam_id", &iam_id, err)) < 0)
		return r;
	if (iam_id)
		return resolve_owner(req, t, ctx, iam_id, err);
	return resolve_collection(req, t, "apikey", false, err);
}

/* ---- the job tail: target, audit data, and the event in the same transaction ------------ */

enum tail_kind { TAIL_USER, TAIL_SERVICEID, TAIL_APIKEY };

struct http_tail {
	struct http_request *req;
	enum tail_kind kind;
};

static int http_tail_fn(sqlite3 *conn, void *arg, const void *entity, int status,
			struct sealvm_err *err)
{
	struct http_tail *tl = arg;
	struct http_target t = *http_request_target(tl->req);
	json_t *resp_data = NULL;
	char crn[IAM_CRN_MAX];

	switch (tl->kind) {
	case TAIL_USER: {
		const struct iam_user *u = entity;
		snprintf(crn, sizeof(crn), IAM_CRN_PREFIX "%s::user:%s", u->account_id, u->iam_id);
		target_base(tl->req, &t, u->account_id, "user");
		target_entity(&t, u->iam_id, crn, u->name);
		resp_data = json_pack("{s:s, s:s}", "iam_id", u->iam_id, "name", u->name);
		break;
	}
	case TAIL_SERVICEID: {
		const struct iam_serviceid *s = entity;
		target_base(tl->req, &t, s->account_id, "serviceid");
		target_entity(&t, s->id, s->crn, s->name);
		resp_data = json_pack("{s:s, s:s, s:s, s:b}", "id", s->id, "iam_id", s->iam_id,
				      "name", s->name, "locked", s->locked);
		break;
	}
	case TAIL_APIKEY: {
		const struct iam_apikey *k = entity;
		target_base(tl->req, &t, k->account_id, "apikey");
		target_entity(&t, k->id, k->crn, k->name);
		resp_data = json_pack("{s:s, s:s, s:s, s:b}", "id", k->id, "iam_id", k->iam_id,
				      "name", k->name, "locked", k->locked);
		break;
	}
	}
	http_request_set_target(tl->req, &t);
	http_request_set_audit_data(tl->req, json_incref(http_request_audit_request_data(tl->req)),
				    resp_data);
	return http_request_audit_in_job(tl->req, conn, status, err);
}

static void audit_request(struct http_request *req, json_t *data)
{
	/* Ids and names only; stolen. */
	http_request_set_audit_data(req, data, NULL);
}

/* ---- tokens ----------------------------------------------------------------------------- */

static void wipe_str(char *s)
{
	if (s) {
		OPENSSL_cleanse(s, strlen(s));
		free(s);
	}
}

static int form_required(struct http_request *req, const char *name, char **ret,
			 struct sealvm_err *err)
{
	errno = 0;
	char *v = http_request_form_field(req, name);
	if (!v && errno == ENOMEM)
		return sealvm_err_set(err, -ENOMEM, NULL, "out of memory");
	if (!v && errno == EINVAL)
		return sealvm_err_set(err, -EINVAL, "INVALID_FORM",
				      "form field '%s' is malformed or given more than once", name);
	if (!v || !v[0]) {
		wipe_str(v);
		return sealvm_err_set(err, -EINVAL, "PROPERTY_MISSING",
				      "Property '%s' either missing or empty.", name);
	}
	*ret = v;
	return 0;
}

static int h_token(struct http_request *req, struct http_response *resp, void *ctx,
		   struct sealvm_err *err)
{
	struct iam *iam = ctx;
	_cleanup_free_ char *grant = NULL;
	char *apikey = NULL;
	struct iam_apikey_login login;
	unsigned retry = 60;
	json_t *body = NULL;
	int r;

	audit_request(req, json_pack("{s:s}", "grant_type", "apikey"));
	if ((r = form_required(req, "grant_type", &grant, err)) < 0)
		return r;
	if (strcmp(grant, "urn:ibm:params:oauth:grant-type:apikey") != 0)
		return sealvm_err_set(err, -EINVAL, "UNSUPPORTED_GRANT_TYPE",
				      "grant_type must be urn:ibm:params:oauth:grant-type:apikey");
	if ((r = form_required(req, "apikey", &apikey, err)) < 0)
		return r;
	r = iam_token_exchange(iam, http_request_remote(req), apikey, strlen(apikey), &body, &login,
			       &retry, err);
	wipe_str(apikey);
	if (r == -EAGAIN) {
		char ra[16];
		iam_format_error(req, 429, err, resp);
		snprintf(ra, sizeof(ra), "%u", retry);
		http_response_header(resp, "Retry-After", ra);
		return 0;
	}
	if (r < 0)
		return r;
	/* The login belongs to the key's account trail, with the key as its target. */
	struct http_target t;
	target_base(req, &t, login.key.account_id, "apikey");
	target_entity(&t, login.key.id, login.key.crn, login.key.name);
	http_request_set_target(req, &t);
	/* Who logged in, as IBM records it: the key's owner, with the API key as credential. */
	struct sealvm_principal who = {
		.kind = login.owner_kind == IAM_OWNER_SERVICE_ID ? PRINCIPAL_SERVICE_ID
								 : PRINCIPAL_USER,
	};
	snprintf(who.iam_id, sizeof(who.iam_id), "%s", login.key.iam_id);
	snprintf(who.account_id, sizeof(who.account_id), "%s", login.key.account_id);
	snprintf(who.name, sizeof(who.name), "%s", login.owner_name);
	snprintf(who.credential_type, sizeof(who.credential_type), "apikey");
	http_request_set_initiator(req, &who);
	http_request_set_audit_data(req, json_pack("{s:s}", "grant_type", "apikey"),
				    json_pack("{s:s, s:s, s:s}", "apikey_id", login.key.id,
					      "iam_id", login.key.iam_id, "name",
					      login.owner_name));
	http_response_header(resp, "Cache-Control", "no-store");
	return respond(resp, 200, body, err);
}

static int h_keys(struct http_request *req, struct http_response *resp, void *ctx,
		  struct sealvm_err *err)
{
	json_t *body = NULL;
	int r = iam_tokens_jwks(ctx, &body, err);
	if (r < 0)
		return r;
	return respond(resp, 200, body, err);
}

/* ---- users -------------------------------------------------------------------------------- */

static int h_user_create(struct http_request *req, struct http_response *resp, void *ctx,
			 struct sealvm_err *err)
{
	_cleanup_json_ json_t *body = NULL;
	const char *name, *email;
	struct iam_user u;
	int r;

	if ((r = body_object(req, &body, err)) < 0 ||
	    (r = field_str(body, "name", true, &name, err)) < 0 ||
	    (r = field_str(body, "email", true, &email, err)) < 0)
		return r;
	audit_request(req, json_pack("{s:s}", "name", name));
	struct http_tail tl = {.req = req, .kind = TAIL_USER};
	struct iam_job_tail tail = {.fn = http_tail_fn, .arg = &tl};
	r = iam_user_create(ctx, http_request_target(req)->account_id, name, email, &tail, &u, err);
	if (r < 0)
		return r;
	return respond(resp, 201, user_json(&u), err);
}

static int user_append(const struct iam_user *u, void *arg)
{
	return json_array_append_new(arg, user_json(u)) < 0 ? -ENOMEM : 0;
}

static int h_user_list(struct http_request *req, struct http_response *resp, void *ctx,
		       struct sealvm_err *err)
{
	json_t *list = json_array();
	if (!list)
		return sealvm_err_set(err, -ENOMEM, NULL, "out of memory");
	int r = iam_user_list(ctx, http_request_target(req)->account_id, user_append, list, err);
	if (r < 0) {
		json_decref(list);
		return r == -ENOMEM ? sealvm_err_set(err, r, NULL, "out of memory") : r;
	}
	return respond(resp, 200, json_pack("{s:o}", "users", list), err);
}

static int h_user_get(struct http_request *req, struct http_response *resp, void *ctx,
		      struct sealvm_err *err)
{
	const struct iam_user *u = kept_row(req, err);
	if (!u)
		return err->code;
	return respond(resp, 200, user_json(u), err);
}

static int h_user_delete(struct http_request *req, struct http_response *resp, void *ctx,
			 struct sealvm_err *err)
{
	const struct http_target *t = http_request_target(req);
	audit_request(req, json_pack("{s:s}", "iam_id", t->resource));
	struct http_tail tl = {.req = req, .kind = TAIL_USER};
	struct iam_job_tail tail = {.fn = http_tail_fn, .arg = &tl};
	int r = iam_user_delete(ctx, t->account_id, t->resource, &tail, err);
	if (r < 0)
		return r;
	resp->status = 204;
	return 0;
}

/* ---- service IDs ---------------------------------------------------------------------------- */

static int h_serviceid_create(struct http_request *req, struct http_response *resp, void *ctx,
			      struct sealvm_err *err)
{
	_cleanup_json_ json_t *body = NULL;
	const char *name, *description;
	struct iam_serviceid s;
	int r;

	if ((r = body_object(req, &body, err)) < 0 ||
	    (r = field_str(body, "name", true, &name, err)) < 0 ||
	    (r = field_str(body, "description", false, &description, err)) < 0)
		return r;
	audit_request(req, json_pack("{s:s}", "name", name));
	struct http_tail tl = {.req = req, .kind = TAIL_SERVICEID};
	struct iam_job_tail tail = {.fn = http_tail_fn, .arg = &tl};
	r = iam_serviceid_create(ctx, http_request_target(req)->account_id, name, description,
				 &tail, &s, err);
	if (r < 0)
		return r;
	set_etag(resp, s.version);
	return respond(resp, 201, serviceid_json(&s), err);
}

struct page {
	json_t *items;
};

static int serviceid_append(const struct iam_serviceid *s, void *arg)
{
	return json_array_append_new(((struct page *)arg)->items, serviceid_json(s)) < 0 ? -ENOMEM
											 : 0;
}

static int apikey_append(const struct iam_apikey *k, void *arg)
{
	return json_array_append_new(((struct page *)arg)->items, apikey_json(k)) < 0 ? -ENOMEM : 0;
}

/* {offset, limit, <member>: [...], next?: pagetoken}: the IBM paging shape. */
static int page_respond(struct http_response *resp, const char *member, struct page *pg,
			unsigned offset, unsigned limit, int64_t total, struct sealvm_err *err)
{
	json_t *o = json_pack("{s:I, s:I, s:o}", "offset", (json_int_t)offset, "limit",
			      (json_int_t)limit, member, pg->items);
	pg->items = NULL;
	if (o && (int64_t)offset + limit < total) {
		char next[24];
		snprintf(next, sizeof(next), "%u", offset + limit);
		json_object_set_new(o, "next", json_string(next));
	}
	return respond(resp, 200, o, err);
}

static int h_serviceid_list(struct http_request *req, struct http_response *resp, void *ctx,
			    struct sealvm_err *err)
{
	_cleanup_free_ char *name = NULL;
	struct page pg = {.items = json_array()};
	unsigned offset, limit;
	int64_t total = 0;
	int r;

	if (!pg.items)
		return sealvm_err_set(err, -ENOMEM, NULL, "out of memory");
	if ((r = paging(req, &offset, &limit, err)) < 0 ||
	    (r = query_param(req, "name", &name, err)) < 0 ||
	    (r = iam_serviceid_list(ctx, http_request_target(req)->account_id, name, offset, limit,
				    serviceid_append, &pg, &total, err)) < 0) {
		json_decref(pg.items);
		return r == -ENOMEM ? sealvm_err_set(err, r, NULL, "out of memory") : r;
	}
	return page_respond(resp, "serviceids", &pg, offset, limit, total, err);
}

static int h_serviceid_get(struct http_request *req, struct http_response *resp, void *ctx,
			   struct sealvm_err *err)
{
	const struct iam_serviceid *s = kept_row(req, err);
	if (!s)
		return err->code;
	set_etag(resp, s->version);
	return respond(resp, 200, serviceid_json(s), err);
}

static int h_serviceid_update(struct http_request *req, struct http_response *resp, void *ctx,
			      struct sealvm_err *err)
{
	_cleanup_json_ json_t *body = NULL;
	const char *name, *description;
	const struct http_target *t = http_request_target(req);
	struct iam_serviceid s;
	int r;

	if ((r = body_object(req, &body, err)) < 0 ||
	    (r = field_str(body, "name", false, &name, err)) < 0 ||
	    (r = field_str(body, "description", false, &description, err)) < 0)
		return r;
	audit_request(req, json_pack("{s:s, s:s?}", "id", t->resource, "name", name));
	struct http_tail tl = {.req = req, .kind = TAIL_SERVICEID};
	struct iam_job_tail tail = {.fn = http_tail_fn, .arg = &tl};
	r = iam_serviceid_update(ctx, t->account_id, t->resource,
				 http_request_header(req, "If-Match"), name, description, &tail, &s,
				 err);
	if (r < 0)
		return r;
	set_etag(resp, s.version);
	return respond(resp, 200, serviceid_json(&s), err);
}

static int h_serviceid_delete(struct http_request *req, struct http_response *resp, void *ctx,
			      struct sealvm_err *err)
{
	const struct http_target *t = http_request_target(req);
	audit_request(req, json_pack("{s:s}", "id", t->resource));
	struct http_tail tl = {.req = req, .kind = TAIL_SERVICEID};
	struct iam_job_tail tail = {.fn = http_tail_fn, .arg = &tl};
	int r = iam_serviceid_delete(ctx, t->account_id, t->resource, &tail, err);
	if (r < 0)
		return r;
	resp->status = 204;
	return 0;
}

static int serviceid_lock(struct http_request *req, struct http_response *resp, void *ctx,
			  bool locked, struct sealvm_err *err)
{
	const struct http_target *t = http_request_target(req);
	audit_request(req, json_pack("{s:s, s:s}", "id", t->resource, "operation",
				     locked ? "lock" : "unlock"));
	struct http_tail tl = {.req = req, .kind = TAIL_SERVICEID};
	struct iam_job_tail tail = {.fn = http_tail_fn, .arg = &tl};
	int r = iam_serviceid_set_locked(ctx, t->account_id, t->resource, locked, &tail, NULL, err);
	if (r < 0)
		return r;
	resp->status = 204;
	return 0;
}

static int h_serviceid_lock(struct http_request *req, struct http_response *resp, void *ctx,
			    struct sealvm_err *err)
{
	return serviceid_lock(req, resp, ctx, true, err);
}

static int h_serviceid_unlock(struct http_request *req, struct http_response *resp, void *ctx,
			      struct sealvm_err *err)
{
	return serviceid_lock(req, resp, ctx, false, err);
}

/* ---- API keys ---------------------------------------------------------------------------------
 */

static int h_apikey_create(struct http_request *req, struct http_response *resp, void *ctx,
			   struct sealvm_err *err)
{
	_cleanup_json_ json_t *body = NULL;
	_cleanup_secret_ struct sealvm_secret *value = NULL;
	const char *name, *description, *iam_id;
	const struct http_target *t = http_request_target(req);
	struct iam_apikey k;
	int r;

	if ((r = body_object(req, &body, err)) < 0 ||
	    (r = field_str(body, "name", true, &name, err)) < 0 ||
	    (r = field_str(body, "description", false, &description, err)) < 0 ||
	    (r = field_str(body, "iam_id", true, &iam_id, err)) < 0)
		return r;
	json_t *sv = json_object_get(body, "store_value");
	if (sv && !json_is_null(sv) && !json_is_boolean(sv))
		return sealvm_err_set(err, -EINVAL, "INVALID_FIELD",
				      "'store_value' must be a boolean");
	if (json_is_true(sv))
		return sealvm_err_set(err, -EINVAL, "STORE_VALUE_UNSUPPORTED",
				      "'store_value' true is not supported: API key values are "
				      "stored only as keyed hashes and shown once, at creation");
	audit_request(req, json_pack("{s:s, s:s}", "name", name, "iam_id", iam_id));
	struct http_tail tl = {.req = req, .kind = TAIL_APIKEY};
	struct iam_job_tail tail = {.fn = http_tail_fn, .arg = &tl};
	r = iam_apikey_create(ctx, t->account_id, iam_id, name, description,
			      http_request_principal(req)->iam_id, &tail, &k, &value, err);
	if (r < 0)
		return r;
	json_t *o = apikey_json(&k);
	/* The one place an API key value leaves the server. */
	if (o && json_object_set_new(o, "apikey",
				     json_stringn((const char *)value->data, value->len)) < 0) {
		json_decref(o);
		o = NULL;
	}
	http_response_header(resp, "Cache-Control", "no-store");
	set_etag(resp, k.version);
	return respond(resp, 201, o, err);
}

static int h_apikey_list(struct http_request *req, struct http_response *resp, void *ctx,
			 struct sealvm_err *err)
{
	const struct http_target *t = http_request_target(req);
	_cleanup_free_ char *iam_id = NULL;
	struct page pg = {.items = json_array()};
	unsigned offset, limit;
	int64_t total = 0;
	int r;

	if (!pg.items)
		return sealvm_err_set(err, -ENOMEM, NULL, "out of memory");
	if ((r = paging(req, &offset, &limit, err)) < 0 ||
	    (r = query_param(req, "iam_id", &iam_id, err)) < 0 ||
	    (r = iam_apikey_list(ctx, t->account_id, iam_id, offset, limit, apikey_append, &pg,
				 &total, err)) < 0) {
		json_decref(pg.items);
		return r == -ENOMEM ? sealvm_err_set(err, r, NULL, "out of memory") : r;
	}
	return page_respond(resp, "apikeys", &pg, offset, limit, total, err);
}

static int h_apikey_get(struct http_request *req, struct http_response *resp, void *ctx,
			struct sealvm_err *err)
{
	const struct iam_apikey *k = kept_row(req, err);
	if (!k)
		return err->code;
	set_etag(resp, k->version);
	return respond(resp, 200, apikey_json(k), err);
}

static int h_apikey_update(struct http_request *req, struct http_response *resp, void *ctx,
			   struct sealvm_err *err)
{
	_cleanup_json_ json_t *body = NULL;
	const char *name, *description;
	const struct http_target *t = http_request_target(req);
	struct iam_apikey k;
	int r;

	if ((r = body_object(req, &body, err)) < 0 ||
	    (r = field_str(body, "name", false, &name, err)) < 0 ||
	    (r = field_str(body, "description", false, &description, err)) < 0)
		return r;
	audit_request(req, json_pack("{s:s, s:s?}", "id", t->resource, "name", name));
	struct http_tail tl = {.req = req, .kind = TAIL_APIKEY};
	struct iam_job_tail tail = {.fn = http_tail_fn, .arg = &tl};
	r = iam_apikey_update(ctx, t->account_id, t->resource, http_request_header(req, "If-Match"),
			      name, description, &tail, &k, err);
	if (r < 0)
		return r;
	set_etag(resp, k.version);
	return respond(resp, 200, apikey_json(&k), err);
}

static int h_apikey_delete(struct http_request *req, struct http_response *resp, void *ctx,
			   struct sealvm_err *err)
{
	const struct http_target *t = http_request_target(req);
	audit_request(req, json_pack("{s:s}", "id", t->resource));
	struct http_tail tl = {.req = req, .kind = TAIL_APIKEY};
	struct iam_job_tail tail = {.fn = http_tail_fn, .arg = &tl};
	int r = iam_apikey_delete(ctx, t->account_id, t->resource, &tail, err);
	if (r < 0)
		return r;
	resp->status = 204;
	return 0;
}

static int apikey_lock(struct http_request *req, struct http_response *resp, void *ctx, bool locked,
		       struct sealvm_err *err)
{
	const struct http_target *t = http_request_target(req);
	audit_request(req, json_pack("{s:s, s:s}", "id", t->resource, "operation",
				     locked ? "lock" : "unlock"));
	struct http_tail tl = {.req = req, .kind = TAIL_APIKEY};
	struct iam_job_tail tail = {.fn = http_tail_fn, .arg = &tl};
	int r = iam_apikey_set_locked(ctx, t->account_id, t->resource, locked, &tail, NULL, err);
	if (r < 0)
		return r;
	resp->status = 204;
	return 0;
}

static int h_apikey_lock(struct http_request *req, struct http_response *resp, void *ctx,
			 struct sealvm_err *err)
{
	return apikey_lock(req, resp, ctx, true, err);
}

static int h_apikey_unlock(struct http_request *req, struct http_response *resp, void *ctx,
			   struct sealvm_err *err)
{
	return apikey_lock(req, resp, ctx, false, err);
}

/* ---- the route table ------------------------------------------------------------------------ */

#define PUBLIC HTTP_ROUTE_PUBLIC
#define FORM HTTP_ROUTE_FORM

/*
 * Audit actions use IBM's Activity Tracker names where IBM has one for the
 * event (account-serviceid.*; lock and unlock are updates, as at IBM). API
 * key events are "iam-identity.apikey.*" because one route serves user and
 * service-ID keys and a route has one audit action; docs/internals/iam-identity.md.
 */
static const struct http_route identity_routes[] = {
	{"POST", "/identity/token", h_token, NULL, "iam-identity.apikey.login",
	 "iam-identity.apikey.login", FORM_BODY_MAX, PUBLIC | FORM | HTTP_ROUTE_NONBLOCKING},
	{"GET", "/identity/keys", h_keys, NULL, "iam-identity.keys.read", "iam-identity.keys.read",
	 0, PUBLIC | HTTP_ROUTE_NONBLOCKING},

	{"POST", "/v1/users", h_user_create, resolve_users, "iam-identity.user.create",
	 "iam-identity.user.create", JSON_BODY_MAX, 0},
	{"GET", "/v1/users", h_user_list, resolve_users, "iam-identity.user.list",
	 "iam-identity.user.list", 0, HTTP_ROUTE_NONBLOCKING},
	{"GET", "/v1/users/{id}", h_user_get, resolve_user, "iam-identity.user.read",
	 "iam-identity.user.read", 0, HTTP_ROUTE_NONBLOCKING},
	{"DELETE", "/v1/users/{id}", h_user_delete, resolve_user, "iam-identity.user.delete",
	 "iam-identity.user.delete", 0, 0},

	{"POST", "/v1/serviceids", h_serviceid_create, resolve_serviceids,
	 "iam-identity.serviceid.create", "iam-identity.account-serviceid.create", JSON_BODY_MAX,
	 0},
	{"GET", "/v1/serviceids", h_serviceid_list, resolve_serviceids,
	 "iam-identity.serviceid.list", "iam-identity.account-serviceid.list", 0,
	 HTTP_ROUTE_NONBLOCKING},
	{"GET", "/v1/serviceids/{id}", h_serviceid_get, resolve_serviceid,
	 "iam-identity.serviceid.read", "iam-identity.account-serviceid.read", 0,
	 HTTP_ROUTE_NONBLOCKING},
	{"PUT", "/v1/serviceids/{id}", h_serviceid_update, resolve_serviceid,
	 "iam-identity.serviceid.update", "iam-identity.account-serviceid.update", JSON_BODY_MAX,
	 0},
	{"DELETE", "/v1/serviceids/{id}", h_serviceid_delete, resolve_serviceid,
	 "iam-identity.serviceid.delete", "iam-identity.account-serviceid.delete", 0, 0},
	{"POST", "/v1/serviceids/{id}/lock", h_serviceid_lock, resolve_serviceid,
	 "iam-identity.serviceid.lock", "iam-identity.account-serviceid.update", 0, 0},
	{"DELETE", "/v1/serviceids/{id}/lock", h_serviceid_unlock, resolve_serviceid,
	 "iam-identity.serviceid.unlock", "iam-identity.account-serviceid.update", 0, 0},

	{"POST", "/v1/apikeys", h_apikey_create, resolve_apikeys, "iam-identity.apikey.create",
	 "iam-identity.apikey.create", JSON_BODY_MAX, 0},
	{"GET", "/v1/apikeys", h_apikey_list, resolve_apikeys, "iam-identity.apikey.list",
	 "iam-identity.apikey.list", 0, HTTP_ROUTE_NONBLOCKING},
	{"GET", "/v1/apikeys/{id}", h_apikey_get, resolve_apikey, "iam-identity.apikey.read",
	 "iam-identity.apikey.read", 0, HTTP_ROUTE_NONBLOCKING},
	{"PUT", "/v1/apikeys/{id}", h_apikey_update, resolve_apikey, "iam-identity.apikey.update",
	 "iam-identity.apikey.update", JSON_BODY_MAX, 0},
	{"DELETE", "/v1/apikeys/{id}", h_apikey_delete, resolve_apikey,
	 "iam-identity.apikey.delete", "iam-identity.apikey.delete", 0, 0},
	{"POST", "/v1/apikeys/{id}/lock", h_apikey_lock, resolve_apikey, "iam-identity.apikey.lock",
	 "iam-identity.apikey.update", 0, 0},
	{"DELETE", "/v1/apikeys/{id}/lock", h_apikey_unlock, resolve_apikey,
	 "iam-identity.apikey.unlock", "iam-identity.apikey.update", 0, 0},
};

void iam_identity_http_init(struct iam *iam)
{
	iam->identity_http = (struct http_service){
		.name = IAM_SERVICE_NAME,
		.routes = identity_routes,
		.n_routes = ELEMENTSOF(identity_routes),
		.format_error = iam_format_error,
		.ctx = iam,
	};
}

const struct http_service *iam_identity_http(struct iam *iam)
{
	return &iam->identity_http;
}
