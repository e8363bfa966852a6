/* SPDX-License-Identifier: Apache-2.0 */
/*
 * http_internal.h — what http.c (the libmicrohttpd glue) and http_ladder.c
 * (routing, the ladder, request accessors) share. Not a public interface.
 */
#ifndef SEALVM_HTTP_INTERNAL_H
#define SEALVM_HTTP_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include <microhttpd.h>

#include "sealvm/http.h"
#include "sealvm/secret.h"

/* Longest route pattern, in segments, and longest request path we split. */
#define HTTP_MAX_PATTERN_SEGMENTS 16
#define HTTP_MAX_PATH_SEGMENTS 64
/* A request id: [A-Za-z0-9._:-]{1,128}. */
#define HTTP_REQUEST_ID_MAX 128

struct http_segment {
	const char *text; /* literal text, or the parameter's name */
	size_t len;
	bool param;  /* {name} */
	bool greedy; /* {name+}: the rest of the path, last segment only */
};

struct http_compiled_route {
	const struct http_route *route;
	const struct http_service *service;
	unsigned n_segments;
	struct http_segment segments[HTTP_MAX_PATTERN_SEGMENTS];
};

struct http_server {
	struct http_listener *listener;
	struct http_server_config cfg; /* copied, limits filled; services and hooks are borrowed */
	struct http_compiled_route *routes;
	size_t n_routes;

	/* The handler pool: requests on routes that may wait for a write. */
	pthread_mutex_t pool_lock;
	pthread_cond_t pool_work;
	struct http_request *pool_head, *pool_tail;
	bool pool_stop;
	pthread_t *pool_threads;
	unsigned n_pool_threads;
	atomic_uint suspended; /* connections suspended and not yet resumed */
};

/* Where a request is while its connection is suspended. */
enum http_phase {
	HTTP_PHASE_RUNNING, /* on the thread libmicrohttpd called us on */
	HTTP_PHASE_POOLED,  /* the handler pool runs its ladder; the answer is in ->pending */
	HTTP_PHASE_AUDIT,   /* its event commits; the answer is in ->pending */
};

struct http_request {
	struct http_server *srv;
	struct MHD_Connection *conn;
	const char *method; /* libmicrohttpd's, valid for the request */
	char *path;	    /* raw, undecoded; in uri[] */
	char *query;	    /* raw, after '?'; "" when none */
	size_t path_len;

	const struct http_compiled_route *croute;
	const struct http_route *route;
	const struct http_service *service; /* the route's, or the path's (405), or NULL */
	unsigned n_params;
	const char *param_names[HTTP_MAX_PARAMS]; /* in the pattern */
	size_t param_name_lens[HTTP_MAX_PARAMS];
	char *param_values[HTTP_MAX_PARAMS]; /* in decoded[] */
	char *decoded;			     /* room for the path, decoded */

	char id[HTTP_REQUEST_ID_MAX + 1];
	char remote[48];

	unsigned char *body;
	size_t body_len;
	size_t body_cap;

	bool started;	/* the access handler has seen the headers */
	bool responded; /* a response is queued */
	bool audited;	/* the handler wrote the event itself */
	bool authenticated;
	int body_error;	  /* -E2BIG / -ENOMEM while reading the body */
	size_t discarded; /* body bytes dropped after body_error */

	struct sealvm_principal principal;
	struct http_target target;
	json_t *audit_request_data;
	json_t *audit_response_data;
	void *kept; /* what the resolver read, for the handler (http_request_keep) */
	void (*kept_release)(void *);

	/*
	 * An answer made before the body phase (404, 405, 400) for a request
	 * without a body: sent on the final call, so that the connection stays
	 * open (libmicrohttpd closes it after an answer queued earlier).
	 */
	struct http_response early;
	bool has_early;

	enum http_phase phase;
	bool may_suspend; /* the ladder may audit asynchronously (hooks.audit_async) */
	struct http_response pending;
	int audit_result;
	struct sealvm_err audit_err;
	struct http_request *pool_next;

	int status;	  /* what we queued, 0 while none */
	size_t bytes_out; /* body bytes of what we queued */
	struct timespec t0;

	char uri[]; /* the raw request target, then the decoded-path room */
};

/* http_ladder.c */
int http_routes_compile(struct http_server *srv, struct sealvm_err *err);
/*
 * Runs the first part of the ladder when the headers are in: request id,
 * route, limits. Returns 0 to go on reading the body, or a negative errno
 * with @resp filled (an error response) to answer at once.
 */
int http_ladder_begin(struct http_request *req, struct http_response *resp);
/*
 * Appends a body chunk. Past the route's limit (-E2BIG) or without memory
 * (-ENOMEM) it records the failure in req->body_error and keeps nothing:
 * libmicrohttpd 0.9.75 cannot queue a response while a body is arriving, so
 * the answer waits for the end of the body (which is then read and dropped).
 */
int http_ladder_body(struct http_request *req, const char *data, size_t len);
/*
 * The answer when an asynchronous audit event failed: @resp (the handler's)
 * is dropped and becomes the 503 AUDIT_UNAVAILABLE, as in the synchronous case.
 */
void http_ladder_audit_failed(struct http_request *req, struct http_response *resp, int code,
			      const struct sealvm_err *aerr);
/* The rest of the ladder, once the body is in: always fills @resp. */
void http_ladder_finish(struct http_request *req, struct http_response *resp);
/* Frees what a response owns, and zeroes it. */
void http_response_done(struct http_response *resp);
void http_request_free(struct http_request *req);

#endif
