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
#include <string.h>
#include <time.h>

#include "sealvm/audit.h"
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

/* Fills @ev from the request; strings stay owned by the request. */
static void event_from(struct http_request *req, int status, const struct sealvm_err *failure,
		       struct audit_event *ev)
{
	const struct http_route *route = http_request_route(req);
	const struct sealvm_principal *p = http_request_principal(req);
	const struct http_target *t = http_request_target(req);

	memset(ev, 0, sizeof(*ev));
	ev->action = route && route->audit_action ? route->audit_action : "sealvm.request.unrouted";
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
		r = db_write(j->d->db, audit_job_run, j, err);
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
#define AGG_SLOTS 1024

struct agg_slot {
	char source[48];
	int64_t window; /* window number (time / window length) */
	unsigned count; /* events of this window so far */
	unsigned suppressed;
};

static struct agg_slot agg[AGG_SLOTS];
static pthread_mutex_t agg_lock = PTHREAD_MUTEX_INITIALIZER;

static unsigned agg_hash(const char *s)
{
	unsigned h = 2166136261u;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 16777619u;
	return h % AGG_SLOTS;
}

/*
 * Decides for one operator-trail event: true = record it. *ret_flush gets the
 * number suppressed in the source's previous window (to be recorded now) and
 * *ret_window that window's number.
 */
static bool agg_admit(const struct sealvmd_config *cfg, const char *source, unsigned *ret_flush,
		      int64_t *ret_window)
{
	int64_t w = (int64_t)time(NULL) / (cfg->audit_window_s ? cfg->audit_window_s : 60);
	struct agg_slot *s;
	bool admit;

	pthread_mutex_lock(&agg_lock);
	s = &agg[agg_hash(source)];
	*ret_flush = 0;
	if (strcmp(s->source, source) != 0 || s->window != w) {
		if (strcmp(s->source, source) == 0 && s->suppressed) {
			*ret_flush = s->suppressed;
			*ret_window = s->window;
		}
		/* A colliding source takes the slot over; its old count is dropped with it. */
		snprintf(s->source, sizeof(s->source), "%s", source);
		s->window = w;
		s->count = 0;
		s->suppressed = 0;
	}
	admit = s->count < cfg->audit_unauthenticated_max;
	if (admit)
		s->count++;
	else
		s->suppressed++;
	pthread_mutex_unlock(&agg_lock);
	return admit;
}

static int hook_audit(struct http_request *req, int status, const struct sealvm_err *failure,
		      void *ctx, struct sealvm_err *err)
{
	struct audit_job j = {.d = ctx};
	unsigned flush = 0;
	int64_t window = 0;
	int r;

	event_from(req, status, failure, &j.ev);
	if (!j.ev.account_id) {
		const char *src = http_request_remote(req) ? http_request_remote(req) : "-";
		bool admit = agg_admit(j.d->cfg, src, &flush, &window);
		if (flush) {
			struct audit_job a = {.d = j.d};
			json_t *data = json_pack(
				"{s:s, s:I, s:I, s:i}", "source", src, "window_start",
				(json_int_t)window *
					(j.d->cfg->audit_window_s ? j.d->cfg->audit_window_s : 60),
				"suppressed", (json_int_t)flush, "window_s",
				(int)(j.d->cfg->audit_window_s ? j.d->cfg->audit_window_s : 60));
			a.ev.action = "sealvm.unauthenticated-requests.aggregate";
			a.ev.outcome = AUDIT_FAILURE;
			a.ev.status = 401;
			a.ev.reason_type = "Unauthorized";
			a.ev.failure =
				"requests without valid credentials, counted instead of recorded one by one";
			a.ev.host_address = src;
			a.ev.correlation_id = http_request_id(req);
			a.ev.request_data = data;
			r = audit_write(&a, err);
			json_decref(data);
			if (r < 0)
				return r;
		}
		if (!admit)
			return 0;
	}
	r = audit_write(&j, err);
	if (r < 0)
		log_error("audit: cannot record %s (request %s): %s", j.ev.action,
			  http_request_id(req), err && err->message[0] ? err->message : "error");
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
	ret->audit_in_job = hook_audit_in_job;
	ret->ctx = d;
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
