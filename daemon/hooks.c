// SPDX-License-Identifier: Apache-2.0
/*
 * hooks.c — how the request ladder reaches identity and audit in sealvmd.
 *
 * authenticate: a bearer token, verified by the identity service.
 * authorize:    the identity service's one decision function.
 * audit:        one CADF event per request, appended to the hash chain in a
 *               write job of its own (before the response: the ladder waits),
 *               or, for a handler's write job, on that job's connection so the
 *               change and its event commit together.
 * Events carry ids, names and the non-secret request/response data services
 * chose; never a header value, a body or a credential.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sealvm/audit.h"
#include "sealvm/bound.h"
#include "sealvm/log.h"

#include "sealvmd.h"

static int hook_authenticate(struct http_request *req, struct sealvm_principal *p, void *ctx,
			     struct sealvm_err *err)
{
	struct sealvmd *d = ctx;
	const char *auth = http_request_header(req, "authorization");
	if (!auth)
		return sealvm_err_set(
			err, -EPERM, "TOKEN_MISSING",
			"no Authorization header: send 'Authorization: Bearer TOKEN' (POST /identity/token gives one)");
	return iam_authenticate_bearer(d->iam, auth, p, err);
}

static int hook_authorize(const struct sealvm_principal *p, const char *action,
			  const struct http_target *target, void *ctx, struct sealvm_err *err)
{
	struct sealvmd *d = ctx;
	return iam_authorize(d->iam, p, action, target, err);
}

static const char *reason_type(int status)
{
	switch (status) {
	case 200:
		return "OK";
	case 201:
		return "Created";
	case 204:
		return "No Content";
	case 400:
		return "Bad Request";
	case 401:
		return "Unauthorized";
	case 403:
		return "Forbidden";
	case 404:
		return "Not Found";
	case 405:
		return "Method Not Allowed";
	case 409:
		return "Conflict";
	case 413:
		return "Payload Too Large";
	case 429:
		return "Too Many Requests";
	case 503:
		return "Service Unavailable";
	default:
		return status >= 500 ? "Server Error" : status >= 400 ? "Client Error" : "OK";
	}
}

/* The request's audit action: its route's, or that of a request no route took. */
static const char *event_action(struct http_request *req)
{
	const struct http_route *route = http_request_route(req);
	return route && route->audit_action ? route->audit_action : "sealvm.request.unrouted";
}

/* Fills @ev from the request; strings stay owned by the request. */
static void event_from(struct http_request *req, int status, const struct sealvm_err *failure,
		       struct audit_event *ev)
{
	const struct sealvm_principal *p = http_request_principal(req);
	const struct http_target *t = http_request_target(req);

	memset(ev, 0, sizeof(*ev));
	ev->action = event_action(req);
	ev->outcome = status < 400 ? AUDIT_SUCCESS : AUDIT_FAILURE;
	ev->status = status;
	ev->reason_type = reason_type(status);
	ev->failure =
		status >= 400 && failure && sealvm_err_isset(failure) ? failure->message : NULL;
	ev->initiator = p && p->kind != PRINCIPAL_NONE ? p : NULL;
	ev->host_address = http_request_remote(req);
	ev->user_agent = http_request_user_agent(req);
	if (t) {
		ev->target_id = t->crn[0] ? t->crn : NULL;
		ev->target_name = t->name[0] ? t->name : NULL;
		ev->account_id = t->account_id[0] ? t->account_id : NULL;
	}
	/* The trail is the caller's account when the target names none; no account: operator's. */
	if (!ev->account_id && ev->initiator && ev->initiator->account_id[0])
		ev->account_id = ev->initiator->account_id;
	ev->correlation_id = http_request_id(req);
	ev->request_data = http_request_audit_request_data(req);
	ev->response_data = http_request_audit_response_data(req);
}

struct audit_job {
	struct sealvmd *d;
	struct audit_event ev;
	struct audit_record *rec; /* built before queueing: the writer only chains and stores */
};

static int audit_job_run(sqlite3 *conn, void *userdata, struct sealvm_err *err)
{
	struct audit_job *j = userdata;
	int64_t seq;
	return audit_record_append(conn, j->rec, j->d->chain_key->data, &seq, err);
}

/* Records @j->ev in its own write job. */
static int audit_write(struct audit_job *j, struct sealvm_err *err)
{
	int r = audit_record_new(&j->ev, &j->rec, err);
	if (r >= 0)
		/* The ladder's own events record nothing changed: the event log (or a row). */
		r = db_write_flags(j->d->db, audit_job_run, j, DB_JOB_APPEND_ONLY | DB_JOB_LOG,
				   err);
	audit_record_free(j->rec);
	j->rec = NULL;
	return r;
}

/*
 * Requests that belong to no account (failed authentication, unknown routes
 * without a token) go to the operator's trail, bounded: per source address
 * and window, the first `threshold` are recorded one by one; beyond that they
 * are only counted, and the count is recorded as one aggregate event when
 * that source is next seen in a later window. So a flood of bad requests
 * cannot fill the disk, nor stop the service through fail-closed audit.
 */

/* The operator trail's write: one event, durably, through the writer. */
static int write_event(void *ctx, const struct audit_event *ev, struct sealvm_err *err)
{
	struct audit_job a = {.d = ctx, .ev = *ev};
	return audit_write(&a, err);
}

void sealvmd_hooks_drain(struct sealvmd *d)
{
	audit_unauth_drain(&d->unauth);
}

static int hook_audit(struct http_request *req, int status, const struct sealvm_err *failure,
		      void *ctx, struct sealvm_err *err)
{
	struct audit_job j = {.d = ctx};
	int r;

	event_from(req, status, failure, &j.ev);
	if (!j.ev.account_id) {
		const char *src = http_request_remote(req) ? http_request_remote(req) : "-";
		r = audit_unauth_admit(&j.d->unauth, src, http_request_id(req), err);
		if (r <= 0)
			return r;
	}
	r = audit_write(&j, err);
	if (r < 0)
		log_error("audit: cannot record %s (request %s): %s", j.ev.action,
			  http_request_id(req), err && err->message[0] ? err->message : "error");
	return r;
}

/*
 * The same event without holding a thread (routes marked
 * HTTP_ROUTE_NONBLOCKING): built here, chained and stored by the writer
 * while the connection is suspended; the answer goes out once it is durable.
 * The operator's trail (no account) is bounded first, as in hook_audit (a
 * pending aggregate count is written synchronously, at most once per source
 * and window); each event it admits goes the same way.
 */
struct async_audit {
	struct sealvmd *d;
	struct http_request *req;
	struct audit_record *rec;
};

static int async_audit_run(sqlite3 *conn, void *userdata, struct sealvm_err *err)
{
	struct async_audit *a = userdata;
	int64_t seq;
	return audit_record_append(conn, a->rec, a->d->chain_key->data, &seq, err);
}

static void async_audit_done(void *arg, int result, const struct sealvm_err *err)
{
	struct async_audit *a = arg;
	struct http_request *req = a->req;
	if (result < 0)
		log_error("audit: cannot record %s (request %s): %s", event_action(req),
			  http_request_id(req), err && err->message[0] ? err->message : "error");
	audit_record_free(a->rec);
	free(a);
	http_request_audit_done(req, result, err);
}

static int hook_audit_async(struct http_request *req, int status, const struct sealvm_err *failure,
			    void *ctx, struct sealvm_err *err)
{
	struct sealvmd *d = ctx;
	struct audit_event ev;
	event_from(req, status, failure, &ev);
	if (!ev.account_id) {
		/* The operator's trail, bounded as in hook_audit; what is admitted goes async. */
		const char *src = http_request_remote(req) ? http_request_remote(req) : "-";
		int r = audit_unauth_admit(&d->unauth, src, http_request_id(req), err);
		if (r <= 0)
			return r;
	}

	struct async_audit *a = calloc(1, sizeof(*a));
	if (!a)
		return sealvm_err_set(err, -ENOMEM, NULL, "out of memory for the audit event");
	a->d = d;
	a->req = req;
	int r = audit_record_new(&ev, &a->rec, err);
	if (r >= 0) {
		/* Suspended first: the completion may come before db_write_async returns. */
		http_request_audit_wait(req);
		/* To the event log (conn NULL), or as a row in a batch with state changes. */
		r = db_write_async(a->d->db, async_audit_run, a, DB_JOB_APPEND_ONLY | DB_JOB_LOG,
				   async_audit_done, a, err);
		if (r < 0) /* the failure is the answer, delivered through the resume */
			async_audit_done(a, r, err);
		return 1;
	}
	log_error("audit: cannot record %s (request %s): %s", ev.action, http_request_id(req),
		  err && err->message[0] ? err->message : "error");
	audit_record_free(a->rec);
	free(a);
	return r;
}

static int hook_audit_in_job(struct http_request *req, struct sqlite3 *conn, int status, void *ctx,
			     struct sealvm_err *err)
{
	struct sealvmd *d = ctx;
	struct audit_event ev;
	int64_t seq;
	event_from(req, status, NULL, &ev);
	return audit_append(conn, &ev, d->chain_key->data, &seq, err);
}

void sealvmd_hooks(struct sealvmd *d, struct http_hooks *ret)
{
	memset(ret, 0, sizeof(*ret));
	ret->authenticate = hook_authenticate;
	ret->authorize = hook_authorize;
	ret->audit = hook_audit;
	ret->audit_async = hook_audit_async;
	ret->audit_in_job = hook_audit_in_job;
	ret->ctx = d;
	/*
	 * Requests that belong to no account (failed authentication, unknown routes
	 * without a token) go to the operator's trail, bounded per source address and
	 * window (bound.h), so that a flood of bad requests cannot fill the disk nor
	 * stop the service through fail-closed audit. Without memory for the table,
	 * every such request is recorded.
	 */
	d->unauth = (struct audit_unauth){
		.status = 401, .listener = "api", .write = write_event, .ctx = d};
	if (sealvm_bound_new(d->cfg->audit_unauthenticated_max, d->cfg->audit_window_s,
			     &d->unauth.bound) < 0)
		log_warning("audit: no memory to bound unauthenticated requests; recording each");
}

/* ---- /healthz -------------------------------------------------------------------------- */

static int healthz(struct http_request *req, struct http_response *resp, void *ctx,
		   struct sealvm_err *err)
{
	resp->status = 200;
	resp->body = json_pack("{s:s}", "status", "ok");
	return resp->body ? 0 : -ENOMEM;
}

static const struct http_route health_routes[] = {
	{"GET", "/healthz", healthz, NULL, NULL, NULL, 0, HTTP_ROUTE_PUBLIC | HTTP_ROUTE_NO_AUDIT},
};

static const struct http_service health_service = {
	.name = "health",
	.routes = health_routes,
	.n_routes = ELEMENTSOF(health_routes),
};

const struct http_service *sealvmd_health_service(void)
{
	return &health_service;
}
