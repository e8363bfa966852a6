/* SPDX-License-Identifier: Apache-2.0 */
/*
 * http.h — the HTTP front of every service, and the one request ladder.
 *
 * A service is a table of routes {method, path pattern, handler, IAM action,
 * audit action, body limit}. The server (libmicrohttpd, every limit set) runs
 * each request through the same ladder, in this order, like Redis's
 * processCommand:
 *
 *   route      → 404 unknown path, 405 known path with another method
 *   limits     → 413 body over the route's limit, 431 headers too large
 *   authn      → hooks.authenticate: 401 (missing, malformed, expired,
 *                foreign token) unless the route is public
 *   resolve    → route.resolve: finds the target's attributes (account,
 *                instance, resource); 404 when it does not exist — or belongs
 *                to another account, so that existence does not leak
 *   authz      → hooks.authorize(principal, action, target): 403 naming the action
 *   handler    → the route's own work; never authenticates or audits
 *   audit      → one event per request, success or failure, written before
 *                the response (fail closed: 503 if it cannot be written)
 *
 * Handlers and hooks fail with a negative errno and a struct sealvm_err; the
 * service's error formatter turns that into its API's error body (IAM JSON,
 * Key Protect envelope, S3 XML). Nothing answers with HTML or an empty body.
 * Every request has an id (from `correlation-id` / `x-request-id`, validated,
 * or made) echoed in the response and carried into logs and audit.
 */
#ifndef SEALVM_HTTP_H
#define SEALVM_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "sealvm/err.h"
#include "sealvm/principal.h"

struct http_request;
struct http_server;
struct sqlite3;

#define HTTP_MAX_PARAMS 4

/* What a route's target is, for authorization and audit. Empty strings when unknown. */
struct http_target {
	char account_id[40];
	char service_name[64]; /* "iam-identity", "kms", "cloud-object-storage", … */
	char service_instance[64];
	char resource_type[32];
	char resource[128];
	char crn[320];	/* the target's CRN, for audit */
	char name[128]; /* a display name, for audit */
};

struct http_response {
	int status;	/* 0 until set; the ladder uses 200 if a handler leaves it */
	json_t *body;	/* owned; NULL = no body (204) */
	char *raw_body; /* owned; a non-JSON body (S3 XML), with raw_len */
	size_t raw_len;
	const char *content_type; /* static; default "application/json" */
	struct {
		const char *name; /* static */
		char *value;	  /* owned */
	} headers[8];
	unsigned n_headers;
};

/* Adds a response header (the value is copied). -E2BIG past 8 headers. */
int http_response_header(struct http_response *resp, const char *name, const char *value);

typedef int (*http_handler_fn)(struct http_request *req, struct http_response *resp, void *ctx,
			       struct sealvm_err *err);
typedef int (*http_resolve_fn)(struct http_request *req, struct http_target *target, void *ctx,
			       struct sealvm_err *err);

enum {
	HTTP_ROUTE_PUBLIC = 1 << 0,   /* no authentication (token endpoint, health, public keys) */
	HTTP_ROUTE_FORM = 1 << 1,     /* body is application/x-www-form-urlencoded, not JSON */
	HTTP_ROUTE_NO_AUDIT = 1 << 2, /* /healthz only */
	/*
	 * The resolver and handler never wait for a write of their own (reads,
	 * wrap/unwrap): they run on libmicrohttpd's few I/O threads, and while the
	 * request's audit event commits its connection is suspended instead of a
	 * thread parked (hooks.audit_async). Routes without it run on the
	 * server's handler pool (limits.threads), where waiting costs a thread of
	 * the pool, not an I/O thread.
	 */
	HTTP_ROUTE_NONBLOCKING = 1 << 3,
};

/*
 * Patterns: literal segments match the raw (undecoded) path bytes; {name}
 * matches one non-empty segment and {name+} (last segment only) the rest of
 * the path; both are percent-decoded strictly into http_request_param (a bad
 * escape or %00 → 400). A literal beats {name}, which beats {name+}, whatever
 * the table order. At most HTTP_MAX_PARAMS parameters and 16 segments.
 */
struct http_route {
	const char *method;  /* "GET", "POST", … ("HEAD" is not implied by "GET") */
	const char *pattern; /* "/v1/serviceids/{id}": {name} matches one non-empty segment */
	http_handler_fn handler;
	http_resolve_fn resolve; /* NULL: the target is the principal's account */
	const char
		*action; /* IAM action checked by authorize, e.g. "iam-identity.serviceid.create" */
	const char *audit_action; /* CADF action, e.g. "iam-identity.account-serviceid.create" */
	size_t max_body;	  /* bytes; 0 = no body allowed */
	unsigned flags;
};

/* Formats an error for a service's API (IAM JSON, Key Protect envelope, S3 XML). */
typedef void (*http_error_fn)(const struct http_request *req, int status,
			      const struct sealvm_err *err, struct http_response *resp);

struct http_service {
	const char *name; /* "iam-identity", "kms", … (logs) */
	const struct http_route *routes;
	size_t n_routes;
	http_error_fn
		format_error; /* NULL: the generic {"error": {code, reason, message, request_id}} */
	void *ctx;	      /* passed to handlers and resolvers */
};

/*
 * The hooks through which the ladder reaches identity and audit (set by the
 * daemon). Hooks, resolvers and handlers run on the server's worker threads,
 * concurrently: they must be thread-safe. The audit hook is required;
 * authenticate and authorize are required when any route is not public.
 */
struct http_hooks {
	/* Fills @p from the request's credentials; -EPERM (401) when they are bad or missing. */
	int (*authenticate)(struct http_request *req, struct sealvm_principal *p, void *ctx,
			    struct sealvm_err *err);
	/* 0 when @p may do @action on @target; -EACCES (403) otherwise. */
	int (*authorize)(const struct sealvm_principal *p, const char *action,
			 const struct http_target *target, void *ctx, struct sealvm_err *err);
	/*
	 * Records the request's event (outcome from @status). Called by the
	 * ladder for every request the handler did not already audit inside its
	 * own write job (see http_request_audited). Failure → 503, fail closed.
	 */
	int (*audit)(struct http_request *req, int status, const struct sealvm_err *failure,
		     void *ctx, struct sealvm_err *err);
	/* The same event, appended on @conn inside a handler's write job (see
	 * http_request_audit_in_job). */
	int (*audit_in_job)(struct http_request *req, struct sqlite3 *conn, int status, void *ctx,
			    struct sealvm_err *err);
	void *ctx;
	/*
	 * The same event as @audit, without waiting for it, for a request on an
	 * HTTP_ROUTE_NONBLOCKING route. Returns 1 when the event went to the
	 * database asynchronously: the hook called http_request_audit_wait(req)
	 * before handing it over, and calls (from any thread, once)
	 * http_request_audit_done(req, result, err) when it has committed or
	 * failed. Returns 0 or a negative errno, as @audit, when it recorded the
	 * event (or failed to) synchronously. NULL: @audit is used.
	 */
	int (*audit_async)(struct http_request *req, int status, const struct sealvm_err *failure,
			   void *ctx, struct sealvm_err *err);
};

/* For hooks.audit_async: the request waits for its event (its connection is suspended). */
void http_request_audit_wait(struct http_request *req);
/* For hooks.audit_async: the event is durable (@result >= 0) or failed (the answer becomes 503). */
void http_request_audit_done(struct http_request *req, int result, const struct sealvm_err *err);

/* Accessors for handlers, resolvers and hooks. Strings live as long as the request. */
const char *http_request_method(const struct http_request *req);
const char *http_request_path(const struct http_request *req);	/* raw, undecoded */
const char *http_request_query(const struct http_request *req); /* raw, "" when none */
const char *http_request_param(const struct http_request *req, const char *name); /* {name} */
const char *http_request_header(const struct http_request *req, const char *name);
const char *http_request_id(const struct http_request *req);
const char *http_request_remote(const struct http_request *req); /* "127.0.0.1" */
const char *http_request_user_agent(const struct http_request *req);
const unsigned char *http_request_body(const struct http_request *req, size_t *ret_len);
const struct http_route *http_request_route(const struct http_request *req);
const struct sealvm_principal *http_request_principal(const struct http_request *req);
const struct http_target *http_request_target(const struct http_request *req);
/*
 * What a resolver read to name the target (a row), kept for the handler so that
 * it answers from the very row the decision was made on instead of reading it
 * again; @release (may be NULL) frees it with the request. Keeping again
 * releases the previous object.
 */
void http_request_keep(struct http_request *req, void *obj, void (*release)(void *));
void *http_request_kept(const struct http_request *req); /* NULL when nothing was kept */
/* Parses the JSON body (new reference); -EINVAL with the position in the message. */
int http_request_json(const struct http_request *req, json_t **ret, struct sealvm_err *err);
/*
 * Decodes one field of a form body or of the query string (new string,
 * free()): '+' is a space, %XX strict. "" for a field without a value. NULL
 * with errno ENOENT (absent), EINVAL (malformed, or given more than once),
 * ENOMEM.
 */
char *http_request_form_field(const struct http_request *req, const char *name);
char *http_request_query_field(const struct http_request *req, const char *name);

/* Per-request data the audit hook keeps (request/response data, the target's name). */
void http_request_set_audit_data(struct http_request *req, json_t *request_data,
				 json_t *response_data);		  /* steals both */
json_t *http_request_audit_request_data(const struct http_request *req);  /* borrowed */
json_t *http_request_audit_response_data(const struct http_request *req); /* borrowed */
/* A handler that wrote the event inside its own write job says so, and the ladder does not. */
void http_request_audited(struct http_request *req);

/*
 * Inside a handler's db_write job: appends this request's audit event
 * (outcome from @status, target from the resolver or as the handler set it)
 * on @conn, so that the state change and its event commit in the same
 * transaction; marks the request audited. Calls hooks.audit_in_job.
 */
int http_request_audit_in_job(struct http_request *req, struct sqlite3 *conn, int status,
			      struct sealvm_err *err);
/* Lets a handler name the target it created (CRN, name) for the audit event. */
void http_request_set_target(struct http_request *req, const struct http_target *target);
/*
 * Lets the handler of a public route that establishes who the caller is (the
 * API key exchange) name that principal as the audit event's initiator. Only
 * on a request that authenticated nobody; ignored otherwise.
 */
void http_request_set_initiator(struct http_request *req, const struct sealvm_principal *p);

struct http_limits {
	unsigned max_connections;      /* 0 = 1024 */
	unsigned max_per_ip;	       /* 0 = 256 */
	unsigned connection_timeout_s; /* 0 = 30 */
	size_t max_header_bytes;       /* 0 = 16 KiB */
	unsigned threads; /* handler pool (API) or libmicrohttpd threads; 0 = online CPUs */
	unsigned workers; /* API: libmicrohttpd's I/O threads; 0 = online CPUs, at least 2 */
	/*
	 * Requests that fail without credentials, per source address and window:
	 * beyond unauth_max their access-log lines (http_access_log) — and on the
	 * S3 listener their operator-trail events — are counted, and the count is
	 * written as one line (one aggregate event). 0 = 100, 60 s.
	 */
	unsigned unauth_max;
	unsigned unauth_window_s;
};

struct http_server_config {
	const char *listen;   /* "127.0.0.1:8720", "[::1]:8720" */
	const char *tls_cert; /* PEM files; both or neither */
	const char *tls_key;
	bool insecure_listen; /* allow a non-loopback listener without TLS */
	struct http_limits limits;
	const struct http_service *services;
	size_t n_services;
	struct http_hooks hooks;
	bool access_log; /* one line per request (log level notice), no secrets */
};

/*
 * Starts listening. Refuses (-EINVAL NON_LOOPBACK_WITHOUT_TLS) a non-loopback
 * address without TLS unless insecure_listen. The port may be 0 (any).
 */
int http_server_start(const struct http_server_config *cfg, struct http_server **ret,
		      struct sealvm_err *err);
/* The port actually bound (for port 0). */
uint16_t http_server_port(const struct http_server *srv);
/*
 * Stops accepting, lets in-flight requests finish (their answers go out; at
 * most limits.connection_timeout_s is waited), frees. NULL is fine.
 */
void http_server_stop(struct http_server *srv);

#endif
