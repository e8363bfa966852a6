// SPDX-License-Identifier: Apache-2.0
/*
 * cos_auth.c — who is asking, on what, and may they: the S3 front's
 * authentication (AWS SigV4 in the Authorization header or a presigned
 * query, with HMAC keys of the resource controller; or an identity bearer
 * token), bucket resolution, the instance and account rules, the IAM
 * decision, and the request's audit event.
 *
 * HMAC keys act in their own object storage instance: a bucket of another
 * instance (or account) is AccessDenied whatever the policies say. Bearer
 * tokens name the instance with `ibm-service-instance-id` where one is
 * needed (bucket create and list). Anonymous requests are refused.
 *
 * This file must never log or audit a header value, a signature or a secret:
 * the events carry ids, names, the sanitised user agent and the failure's
 * message only.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "sealvm/iam.h"
#include "sealvm/log.h"
#include "sealvm/rc.h"

#include "cos_front.h"

/* ---- authentication -------------------------------------------------------------------------- */

struct lookup_ctx {
	struct rc *rc;
	bool have;
	struct rc_hmac_identity id;
};

/* The verifier's secret lookup, keeping who the key acts as. */
static int lookup(void *userdata, const char *access_key_id, struct sealvm_secret **ret,
		  struct sealvm_err *err)
{
	struct lookup_ctx *l = userdata;
	int r = rc_hmac_lookup(l->rc, access_key_id, &l->id, ret, err);
	if (r >= 0)
		l->have = true;
	return r;
}

static int authenticate_bearer(struct cos_req *req, const char *authz, struct sealvm_err *err)
{
	int r = iam_authenticate_bearer(req->c->deps.iam, authz, &req->principal, err);
	if (r < 0)
		return r;
	const char *inst = cos_req_header(req, "ibm-service-instance-id");
	if (inst) {
		if (strlen(inst) >= sizeof(req->instance_guid))
			return sealvm_err_set(err, -EINVAL, "InvalidArgument",
					      "ibm-service-instance-id is too long to be an "
					      "instance GUID");
		snprintf(req->instance_guid, sizeof(req->instance_guid), "%s", inst);
	}
	req->authenticated = true;
	return 0;
}

int cos_authenticate(struct cos_req *req, struct sealvm_err *err)
{
	struct sigv4_request sr = {
		.method = req->method,
		.raw_path = req->path,
		.raw_query = req->query,
		.headers = req->headers,
		.n_headers = req->n_headers,
	};
	switch (sigv4_detect(&sr)) {
	case SIGV4_KIND_NONE:
		return sealvm_err_set(
			err, -EACCES, "AccessDenied",
			"anonymous access is not allowed: sign the request with "
			"HMAC credentials (AWS SigV4) or send Authorization: Bearer TOKEN");
	case SIGV4_KIND_OTHER: {
		const char *a = cos_req_header(req, "authorization");
		if (a && strncasecmp(a, "Bearer ", 7) == 0)
			return authenticate_bearer(req, a, err);
		return sealvm_err_set(err, -EINVAL, "InvalidRequest",
				      "the authorization mechanism is not supported: use "
				      "AWS4-HMAC-SHA256 (SigV4) or Bearer");
	}
	case SIGV4_KIND_HEADER:
	case SIGV4_KIND_QUERY:
		break;
	}
	struct lookup_ctx l = {.rc = req->c->deps.rc};
	struct sigv4_verifier v = {
		.region = req->c->deps.region,
		.lookup = lookup,
		.userdata = &l,
		.cache = req->c->sigv4_cache,
	};
	int r = sigv4_verify(&v, &sr, time(NULL), &req->auth, err);
	if (r < 0)
		return r;
	if (!l.have) {
		/* the signing key came from the cache: who the key acts as, now */
		struct sealvm_secret *s = NULL;
		r = rc_hmac_lookup(req->c->deps.rc, req->auth.access_key_id, &l.id, &s, err);
		sealvm_secret_free(s);
		if (r < 0)
			return r;
	}
	req->principal = l.id.principal;
	snprintf(req->instance_guid, sizeof(req->instance_guid), "%s", l.id.instance_guid);
	req->sigv4 = true;
	req->authenticated = true;
	return 0;
}

/* ---- resolution and authorization ------------------------------------------------------------ */

static void target_from_bucket(const struct cos_bucket *b, struct http_target *t)
{
	memset(t, 0, sizeof(*t));
	snprintf(t->account_id, sizeof(t->account_id), "%s", b->account_id);
	snprintf(t->service_name, sizeof(t->service_name), "cloud-object-storage");
	snprintf(t->service_instance, sizeof(t->service_instance), "%s", b->instance_guid);
	snprintf(t->resource_type, sizeof(t->resource_type), "bucket");
	snprintf(t->resource, sizeof(t->resource), "%s", b->name);
	snprintf(t->crn, sizeof(t->crn), "%s", b->crn);
	snprintf(t->name, sizeof(t->name), "%s", b->name);
}

int cos_authorize_bucket(struct cos_req *req, const struct cos_bucket *b, const char *action,
			 struct sealvm_err *err)
{
	if (strcmp(req->principal.credential_type, "hmac") == 0 &&
	    strcmp(b->instance_guid, req->instance_guid) != 0)
		return sealvm_err_set(err, -EACCES, "AccessDenied",
				      "access to bucket %s is denied: these HMAC credentials "
				      "belong to another object storage instance",
				      b->name);
	if (strcmp(b->account_id, req->principal.account_id) != 0)
		return sealvm_err_set(err, -EACCES, "AccessDenied",
				      "access to bucket %s is denied: it belongs to another "
				      "account",
				      b->name);
	struct http_target t;
	target_from_bucket(b, &t);
	int r = iam_authorize(req->c->deps.iam, &req->principal, action, &t, err);
	if (r < 0 && err && strcmp(err->reason, "ACTION_NOT_ALLOWED") == 0)
		snprintf(err->reason, sizeof(err->reason), "AccessDenied");
	return r;
}

int cos_resolve_authorize(struct cos_req *req, const char *action, struct sealvm_err *err)
{
	struct cos_bucket b;
	int r = cos_bucket_get(req->c, req->bucket_name, &b, err);
	if (r < 0)
		return r;
	r = cos_authorize_bucket(req, &b, action, err);
	if (r < 0)
		return r;
	req->bucket = b;
	req->have_bucket = true;
	snprintf(req->bucket_crn, sizeof(req->bucket_crn), "%s", b.crn);
	return 0;
}

int cos_authorize_instance(struct cos_req *req, const char *action, struct sealvm_err *err)
{
	if (!req->instance_guid[0])
		return sealvm_err_set(err, -EINVAL, "InvalidArgument",
				      "with a bearer token, name the object storage instance in "
				      "the ibm-service-instance-id header");
	struct rc_instance inst;
	int r = rc_instance_get(req->c->deps.rc, req->principal.account_id, req->instance_guid,
				&inst, NULL);
	if (r < 0 || strcmp(inst.resource_id, "cloud-object-storage") != 0)
		return sealvm_err_set(err, -EACCES, "AccessDenied",
				      "%s is not an object storage instance of your account",
				      req->instance_guid);
	struct http_target t = {0};
	snprintf(t.account_id, sizeof(t.account_id), "%s", req->principal.account_id);
	snprintf(t.service_name, sizeof(t.service_name), "cloud-object-storage");
	snprintf(t.service_instance, sizeof(t.service_instance), "%s", inst.guid);
	if (req->op == COS_OP_BUCKET_CREATE) {
		snprintf(t.resource_type, sizeof(t.resource_type), "bucket");
		snprintf(t.resource, sizeof(t.resource), "%s", req->bucket_name);
		/* the CRN the bucket will have (cos_internal.h), for its events */
		snprintf(req->bucket_crn, sizeof(req->bucket_crn),
			 "crn:v1:sealvm:local:cloud-object-storage:global:a/%s:%s:bucket:%s",
			 inst.account_id, inst.guid, req->bucket_name);
	} else {
		snprintf(req->bucket_crn, sizeof(req->bucket_crn), "%s", inst.crn);
	}
	snprintf(t.crn, sizeof(t.crn), "%s", req->bucket_crn);
	r = iam_authorize(req->c->deps.iam, &req->principal, action, &t, err);
	if (r < 0 && err && strcmp(err->reason, "ACTION_NOT_ALLOWED") == 0)
		snprintf(err->reason, sizeof(err->reason), "AccessDenied");
	return r;
}

/* ---- audit ----------------------------------------------------------------------------------- */

/* Copies @s into @out keeping printable ASCII only (audit text must be UTF-8; no controls). */
static void sanitise(const char *s, char *out, size_t outsz)
{
	size_t k = 0;
	for (; s && *s && k + 1 < outsz; s++)
		out[k++] = (*s >= 0x20 && *s < 0x7f) ? *s : '?';
	out[k] = 0;
}

void cos_event(struct cos_req *req, int status, const struct sealvm_err *failure,
	       struct audit_event *ev)
{
	const struct cos_op_info *oi = cos_op_info(req->op);
	memset(ev, 0, sizeof(*ev));
	ev->action = oi->audit_action;
	ev->outcome = status < 400 ? AUDIT_SUCCESS : AUDIT_FAILURE;
	ev->status = status;
	ev->reason_type = status < 300	  ? "OK"
			  : status == 403 ? "Forbidden"
			  : status == 404 ? "Not Found"
			  : status == 409 ? "Conflict"
			  : status == 503 ? "Service Unavailable"
			  : status >= 500 ? "Server Error"
					  : "Client Error";
	if (status >= 400 && failure && sealvm_err_isset(failure)) {
		sanitise(failure->message, req->audit_failure, sizeof(req->audit_failure));
		ev->failure = req->audit_failure;
	}
	ev->initiator = req->authenticated ? &req->principal : NULL;
	ev->host_address = req->remote[0] ? req->remote : NULL;
	if (!req->user_agent[0]) {
		const char *ua = cos_req_header(req, "user-agent");
		if (ua)
			sanitise(ua, req->user_agent, sizeof(req->user_agent));
	}
	ev->user_agent = req->user_agent[0] ? req->user_agent : NULL;
	if (!req->audit_name) {
		const char *n = req->key ? req->key : req->bucket_name[0] ? req->bucket_name : NULL;
		if (n && cos_utf8_valid(n))
			req->audit_name = strdup(n);
		else if (n && (req->audit_name = malloc(strlen(n) + 1)))
			sanitise(n, req->audit_name, strlen(n) + 1);
	}
	ev->target_name = req->audit_name;
	ev->target_id = req->bucket_crn[0] ? req->bucket_crn : NULL;
	ev->target_type = req->key ? "cloud-object-storage/object" : "cloud-object-storage/bucket";
	if (req->have_bucket)
		ev->account_id = req->bucket.account_id;
	else if (req->authenticated && req->principal.account_id[0])
		ev->account_id = req->principal.account_id;
	ev->correlation_id = req->id;
	ev->data_event = oi->data_event;
}

int cos_audit_request(struct cos_req *req, int status, const struct sealvm_err *failure,
		      struct sealvm_err *err)
{
	/* the operator's trail, bounded per source and window (a count beyond it) */
	if (!req->authenticated && status >= 400) {
		int admit = cos_front_unauth_admit(req, err);
		if (admit <= 0)
			return admit;
	}
	struct audit_event ev;
	cos_event(req, status, failure, &ev);
	return cos_audit(req->c, &ev, err);
}
