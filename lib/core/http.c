// SPDX-License-Identifier: Apache-2.0
/*
 * http.c — the HTTP server: libmicrohttpd set up with every limit, feeding
 * each request through the ladder (http_ladder.c) and sending what it made.
 *
 * One daemon with a pool of worker threads, each running its own epoll loop;
 * handlers and hooks run on those threads, concurrently. A request costs one
 * allocation for its state (raw target + decoded-path room in the same
 * block), one for its body when it has one, and one for the serialised
 * response. The raw path is kept: a no-op unescape callback stops
 * libmicrohttpd from decoding it, and the raw target (query included) is
 * copied from the URI-log callback, before libmicrohttpd splits it.
 *
 * This file must never log a header (the Authorization header above all), a
 * body, a query string (presigned URLs carry signatures) or a token; the
 * access log names the path without its query.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "sealvm/file.h"
#include "sealvm/http_listen.h"
#include "sealvm/jsonout.h"
#include "sealvm/log.h"
#include "http_internal.h"

/* Body bytes we read and drop after a too-large chunked body, before closing instead. */
#define HTTP_DISCARD_MAX ((size_t)1024 * 1024)

/* What we send when even an error body cannot be built (no memory). */
static const char fallback_body[] =
	"{\"error\":{\"code\":503,\"reason\":\"NO_MEMORY\",\"message\":\"the server is out of memory; retry later\"}}";

/* ---- libmicrohttpd callbacks ---------------------------------------------- */

/* Called with the whole request target before libmicrohttpd splits off the query. */
static void *on_uri(void *cls, const char *uri, struct MHD_Connection *conn)
{
	struct http_server *srv = cls;
	size_t n = strlen(uri);
	/* uri copy, then room for the decoded path parameters (each NUL-terminated). */
	struct http_request *req = calloc(1, sizeof(*req) + 2 * (n + 1) + HTTP_MAX_PARAMS);
	if (!req)
		return NULL;
	req->srv = srv;
	req->conn = conn;
	memcpy(req->uri, uri, n + 1);
	req->path = req->uri;
	char *q = memchr(req->uri, '?', n);
	if (q) {
		*q = 0;
		req->query = q + 1;
		req->path_len = (size_t)(q - req->uri);
	} else {
		req->query = req->uri + n;
		req->path_len = n;
	}
	req->decoded = req->uri + n + 1;
	clock_gettime(CLOCK_MONOTONIC, &req->t0);
	return req;
}

static void remote_init(struct http_request *req)
{
	http_remote_address(req->conn, req->remote, sizeof(req->remote));
}

static bool has_header(const struct http_response *resp, const char *name)
{
	for (unsigned i = 0; i < resp->n_headers; i++)
		if (strcasecmp(resp->headers[i].name, name) == 0)
			return true;
	return false;
}

/* Queues @resp (always consumed) for @req. */
static enum MHD_Result send_response(struct http_request *req, struct http_response *resp)
{
	struct MHD_Response *r = NULL;
	int status = resp->status ? resp->status : 500;
	const char *ctype = resp->content_type ? resp->content_type : "application/json";
	size_t len = 0;

	if (resp->body) {
		char *text = sealvm_json_compact(resp->body, 1, &len);
		if (text)
			r = MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE);
		if (!r)
			free(text);
	} else if (resp->raw_body) {
		len = resp->raw_len;
		r = MHD_create_response_from_buffer(len, resp->raw_body, MHD_RESPMEM_MUST_FREE);
		if (r)
			resp->raw_body = NULL;
	} else if (status < 400) {
		r = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
	}
	if (!r) {
		/* No memory, or an error without a body: still JSON, never empty. */
		status = 503;
		ctype = "application/json";
		len = sizeof(fallback_body) - 1;
		r = MHD_create_response_from_buffer(len, (void *)fallback_body,
						    MHD_RESPMEM_PERSISTENT);
		if (!r) {
			http_response_done(resp);
			return MHD_NO;
		}
	}

	if (len > 0)
		MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
	MHD_add_response_header(r, "correlation-id", req->id);
	MHD_add_response_header(r, "x-request-id", req->id);
	for (unsigned i = 0; i < resp->n_headers; i++)
		MHD_add_response_header(r, resp->headers[i].name, resp->headers[i].value);
	if (!has_header(resp, "Cache-Control"))
		MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
	if (http_listener_stopping(req->srv->listener))
		MHD_add_response_header(r, MHD_HTTP_HEADER_CONNECTION, "close");

	enum MHD_Result ret = MHD_queue_response(req->conn, (unsigned)status, r);
	MHD_destroy_response(r);
	if (ret == MHD_YES) {
		req->responded = true;
		req->status = status;
		req->bytes_out = len;
	}
	http_response_done(resp);
	return ret;
}

/* Whether a body follows the headers (declared, or chunked). */
static bool request_has_body(const struct http_request *req)
{
	const char *cl = http_request_header(req, MHD_HTTP_HEADER_CONTENT_LENGTH);
	if (cl && strcmp(cl, "0") != 0)
		return true;
	return http_request_header(req, MHD_HTTP_HEADER_TRANSFER_ENCODING) != NULL;
}

/* ---- the handler pool ------------------------------------------------------- */

static void pool_push(struct http_server *srv, struct http_request *req)
{
	req->pool_next = NULL;
	pthread_mutex_lock(&srv->pool_lock);
	if (srv->pool_tail)
		srv->pool_tail->pool_next = req;
	else
		srv->pool_head = req;
	srv->pool_tail = req;
	pthread_cond_signal(&srv->pool_work);
	pthread_mutex_unlock(&srv->pool_lock);
}

/* Runs the ladder of each request handed over, then resumes its connection. */
static void *pool_main(void *arg)
{
	struct http_server *srv = arg;
	pthread_mutex_lock(&srv->pool_lock);
	for (;;) {
		while (!srv->pool_head && !srv->pool_stop)
			pthread_cond_wait(&srv->pool_work, &srv->pool_lock);
		struct http_request *req = srv->pool_head;
		if (!req)
			break; /* stopping, and nothing is left */
		srv->pool_head = req->pool_next;
		if (!srv->pool_head)
			srv->pool_tail = NULL;
		pthread_mutex_unlock(&srv->pool_lock);

		http_ladder_finish(req, &req->pending);
		MHD_resume_connection(req->conn);
		/* The request may be gone from here on: the stop waits for the count. */
		atomic_fetch_sub(&srv->suspended, 1);

		pthread_mutex_lock(&srv->pool_lock);
	}
	pthread_mutex_unlock(&srv->pool_lock);
	return NULL;
}

static void pool_stop(struct http_server *srv)
{
	pthread_mutex_lock(&srv->pool_lock);
	srv->pool_stop = true;
	pthread_cond_broadcast(&srv->pool_work);
	pthread_mutex_unlock(&srv->pool_lock);
	for (unsigned i = 0; i < srv->n_pool_threads; i++)
		pthread_join(srv->pool_threads[i], NULL);
	srv->n_pool_threads = 0;
}

static int pool_start(struct http_server *srv, unsigned n, struct sealvm_err *err)
{
	srv->pool_threads = calloc(n, sizeof(*srv->pool_threads));
	if (!srv->pool_threads)
		return sealvm_err_set(err, -ENOMEM, NULL, "out of memory");
	for (unsigned i = 0; i < n; i++) {
		int e = pthread_create(&srv->pool_threads[i], NULL, pool_main, srv);
		if (e != 0) {
			pool_stop(srv);
			return sealvm_err_set_errno(err, -e, "THREAD_FAILED",
						    "cannot start the handler pool");
		}
		srv->n_pool_threads++;
	}
	return 0;
}

static enum MHD_Result on_access(void *cls, struct MHD_Connection *conn, const char *url,
				 const char *method, const char *version, const char *upload_data,
				 size_t *upload_data_size, void **con_cls)
{
	struct http_request *req = *con_cls;
	struct http_response resp = {0};

	if (!req)
		return MHD_NO; /* the URI callback found no memory: drop the connection */

	if (!req->started) {
		req->started = true;
		req->method = method;
		remote_init(req);
		if (http_ladder_begin(req, &resp) < 0) {
			if (request_has_body(req))
				return send_response(req, &resp); /* not a byte of it is read */
			req->early = resp;
			req->has_early = true;
		}
		return MHD_YES;
	}

	if (*upload_data_size > 0) {
		size_t n = *upload_data_size;
		*upload_data_size = 0;
		if (req->responded || req->has_early)
			return MHD_YES;
		if (http_ladder_body(req, upload_data, n) < 0) {
			/*
			 * The answer (413) can only go out once the body is in;
			 * we drop what still arrives, up to a bound, and past it
			 * we close the connection (the request is still audited).
			 */
			req->discarded += n;
			if (req->discarded > HTTP_DISCARD_MAX) {
				http_ladder_finish(req, &resp);
				http_response_done(&resp);
				return MHD_NO;
			}
		}
		return MHD_YES;
	}

	if (req->responded)
		return MHD_YES;
	if (req->has_early) {
		req->has_early = false;
		resp = req->early;
		memset(&req->early, 0, sizeof(req->early));
		return send_response(req, &resp);
	}
	switch (req->phase) {
	case HTTP_PHASE_POOLED: /* resumed: the pool ran the ladder */
	case HTTP_PHASE_AUDIT:	/* resumed: the event committed, or failed */
		resp = req->pending;
		memset(&req->pending, 0, sizeof(req->pending));
		if (req->phase == HTTP_PHASE_AUDIT && req->audit_result < 0)
			http_ladder_audit_failed(req, &resp, req->audit_result, &req->audit_err);
		req->phase = HTTP_PHASE_RUNNING;
		return send_response(req, &resp);
	case HTTP_PHASE_RUNNING:
		break;
	}
	struct http_server *srv = cls;
	if (srv->n_pool_threads && !(req->route->flags & HTTP_ROUTE_NONBLOCKING)) {
		/* A handler that may wait for a write waits on a thread of the pool. */
		req->phase = HTTP_PHASE_POOLED;
		atomic_fetch_add(&srv->suspended, 1);
		MHD_suspend_connection(conn);
		pool_push(srv, req);
		return MHD_YES;
	}
	req->may_suspend = srv->n_pool_threads > 0;
	http_ladder_finish(req, &resp);
	if (req->phase == HTTP_PHASE_AUDIT) {
		/* Resumed by http_request_audit_done, not before this returns. */
		req->pending = resp;
		return MHD_YES;
	}
	return send_response(req, &resp);
}

static void access_log(const struct http_request *req, enum MHD_RequestTerminationCode toe)
{
	struct timespec t1;
	clock_gettime(CLOCK_MONOTONIC, &t1);
	long long us = (long long)(t1.tv_sec - req->t0.tv_sec) * 1000000 +
		       (t1.tv_nsec - req->t0.tv_nsec) / 1000;
	char status[16];
	if (req->responded)
		snprintf(status, sizeof(status), "%d", req->status);
	else
		snprintf(status, sizeof(status), "-");

	/* The path only: a query may carry a presigned signature. */
	bool unauth_failure = !req->authenticated && (!req->responded || req->status >= 400);
	http_access_log(
		req->srv->listener, req->remote[0] ? req->remote : "-", unauth_failure,
		"access id=%s remote=%s method=%s path=%.512s status=%s bytes=%zu ms=%lld.%03lld "
		"principal=%s%s%s",
		req->id[0] ? req->id : "-", req->remote[0] ? req->remote : "-",
		req->method ? req->method : "-", req->path, status, req->bytes_out, us / 1000,
		us % 1000, req->authenticated ? req->principal.iam_id : "-",
		toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? "" : " end=",
		toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? "" : http_termination_name(toe));
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
			 enum MHD_RequestTerminationCode toe)
{
	struct http_server *srv = cls;
	struct http_request *req = *con_cls;

	if (!req)
		return;
	*con_cls = NULL;
	if (srv->cfg.access_log)
		access_log(req, toe);
	http_request_free(req);
}

/* ---- set-up ------------------------------------------------------------------ */

static void server_free(struct http_server *srv)
{
	if (!srv)
		return;
	pool_stop(srv);
	free(srv->pool_threads);
	pthread_cond_destroy(&srv->pool_work);
	pthread_mutex_destroy(&srv->pool_lock);
	free(srv->routes);
	free(srv);
}

static void server_freep(struct http_server **srv)
{
	server_free(*srv);
}

int http_server_start(const struct http_server_config *cfg, struct http_server **ret,
		      struct sealvm_err *err)
{
	_cleanup_(server_freep) struct http_server *srv = NULL;
	int r;

	if (!cfg || !ret)
		return sealvm_err_set(err, -EINVAL, NULL, "no server configuration");
	if (!cfg->hooks.audit)
		return sealvm_err_set(err, -EINVAL, "HOOKS_MISSING",
				      "the HTTP server needs an audit hook (audit is fail-closed)");
	for (size_t s = 0; s < cfg->n_services; s++)
		for (size_t i = 0; i < cfg->services[s].n_routes; i++)
			if (!(cfg->services[s].routes[i].flags & HTTP_ROUTE_PUBLIC) &&
			    (!cfg->hooks.authenticate || !cfg->hooks.authorize))
				return sealvm_err_set(
					err, -EINVAL, "HOOKS_MISSING",
					"routes that are not public need the authenticate and authorize hooks");

	srv = calloc(1, sizeof(*srv));
	if (!srv)
		return sealvm_err_set(err, -ENOMEM, NULL, "out of memory");
	pthread_mutex_init(&srv->pool_lock, NULL);
	pthread_cond_init(&srv->pool_work, NULL);
	srv->cfg = *cfg;
	http_limits_defaults(&srv->cfg.limits, 0);

	r = http_routes_compile(srv, err);
	if (r < 0)
		return r;

	/*
	 * With an asynchronous audit hook, libmicrohttpd's threads only do I/O
	 * and the ladders that never wait; the others run on the handler pool.
	 * Without one, every ladder runs on libmicrohttpd's threads, as many as
	 * limits.threads.
	 */
	bool pooled = cfg->hooks.audit_async != NULL;
	if (pooled && (r = pool_start(srv, srv->cfg.limits.threads, err)) < 0)
		return r;

	struct http_listener_config lc = {
		.what = "http",
		.listen = cfg->listen,
		.tls_cert = cfg->tls_cert,
		.tls_key = cfg->tls_key,
		.insecure_listen = cfg->insecure_listen,
		.limits = srv->cfg.limits,
		/*
		 * libmicrohttpd reads the request line and headers into a buffer
		 * of about half its per-connection pool; the rest holds the
		 * response head.
		 */
		.memory_limit = srv->cfg.limits.max_header_bytes + 4096,
		.access = on_access,
		.completed = on_completed,
		.uri = on_uri,
		.cls = srv,
		.io_threads = pooled ? srv->cfg.limits.workers : 0,
		.suspend = pooled,
	};
	r = http_listener_start(&lc, &srv->listener, err);
	if (r < 0)
		return r;
	*ret = TAKE_PTR(srv);
	return 0;
}

uint16_t http_server_port(const struct http_server *srv)
{
	return srv ? http_listener_port(srv->listener) : 0;
}

void http_server_stop(struct http_server *srv)
{
	if (!srv)
		return;
	http_listener_drain(srv->listener);
	/*
	 * A suspended connection is resumed by the pool or by its event's commit;
	 * libmicrohttpd must not free it before. Both finish on their own (the
	 * database runs every queued job), so this waits without a deadline.
	 */
	for (unsigned i = 0; atomic_load(&srv->suspended) > 0; i++) {
		if (i == 500)
			log_warning("http: still waiting for %u suspended request(s) to finish",
				    atomic_load(&srv->suspended));
		usleep(10 * 1000);
	}
	pool_stop(srv);
	http_listener_stop(srv->listener);
	server_free(srv);
}
