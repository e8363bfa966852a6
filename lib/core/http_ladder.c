// SPDX-License-Identifier: Apache-2.0
/*
 * http_ladder.c — the one request ladder (see http.h) and what handlers read.
 *
 * Route → limits → authenticate → resolve → authorize → handler → audit, in
 * that order and nowhere else: handlers never authenticate or audit, and no
 * step runs before the one above it has passed. Every failure becomes a
 * status through one errno table (http_status_for) and a body through the
 * service's error formatter or the generic JSON one; every request — 404,
 * 405, 413 and 401 included — is offered to the audit hook exactly once, and
 * a failing audit turns the answer into 503 (fail closed).
 *
 * This file must never log or echo a request body, a header value other
 * than the request id, or anything a hook put in a principal besides its
 * iam_id; and it must never trust the request: paths, escapes, lengths and
 * ids are checked before use.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

#include "sealvm/log.h"
#include "http_internal.h"

/* ---- responses ---------------------------------------------------------- */

void http_response_done(struct http_response *resp)
{
	if (!resp)
		return;
	json_decref(resp->body);
	free(resp->raw_body);
	for (unsigned i = 0; i < resp->n_headers && i < ELEMENTSOF(resp->headers); i++)
		free(resp->headers[i].value);
	memset(resp, 0, sizeof(*resp));
}

int http_response_header(struct http_response *resp, const char *name, const char *value)
{
	if (!resp || !name || !value)
		return -EINVAL;
	/* A value from request data must not be able to split the response. */
	for (const char *c = value; *c; c++)
		if ((unsigned char)*c < 0x20 && *c != '\t')
			return -EINVAL;
	if (resp->n_headers >= ELEMENTSOF(resp->headers))
		return -E2BIG;
	char *copy = strdup(value);
	if (!copy)
		return -ENOMEM;
	resp->headers[resp->n_headers].name = name;
	resp->headers[resp->n_headers].value = copy;
	resp->n_headers++;
	return 0;
}

/*
 * The one errno → status table (docs/internals/http.md repeats it). A
 * service's formatter may still choose another status for its API.
 */
static int http_status_for(int code)
{
	switch (-code) {
	case EINVAL:
	case EBADMSG:
	case EKEYREJECTED:
	case EILSEQ:
		return 400;
	case EPERM:
		return 401;
	case EACCES:
		return 403;
	case ENOENT:
		return 404;
	case EEXIST:
	case ENOTEMPTY:
	case EALREADY:
	case ESTALE:
		return 409;
	case E2BIG:
	case EFBIG:
		return 413;
	case ERANGE:
		return 416;
	case ENOTSUP:
	case ENOSYS:
		return 501;
	case EBUSY:
	case EAGAIN:
	case ENOMEM:
	case ENOSPC:
	case EROFS:
		return 503;
	case ETIMEDOUT:
		return 504;
	default:
		return 500;
	}
}

static const char *default_message(int status)
{
	switch (status) {
	case 400:
		return "the request is not valid";
	case 401:
		return "the request has no valid credentials; authenticate and retry";
	case 403:
		return "the caller is not allowed to do this";
	case 404:
		return "not found";
	case 409:
		return "the request conflicts with the current state";
	case 413:
		return "the request body is too large";
	case 503:
		return "the service is unavailable; retry later";
	default:
		return "internal error; the request id identifies it in the server's log";
	}
}

/* A JSON string from text that may carry bytes that are not UTF-8 (they become '?'). */
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

static void generic_error(const struct http_request *req, int status, const struct sealvm_err *err,
			  struct http_response *resp)
{
	json_t *inner = json_object();
	if (inner) {
		json_object_set_new(inner, "code", json_integer(status));
		json_object_set_new(inner, "reason", json_text(err->reason));
		json_object_set_new(inner, "message", json_text(err->message));
		json_object_set_new(inner, "request_id", json_string(req->id));
		resp->body = json_pack("{s:o}", "error", inner);
	}
	resp->status = status;
	/* Without a body (no memory) http.c answers with a fixed JSON text. */
}

/* Fills @resp with the error body for @status, through the service's formatter when it has one. */
static void format_error(struct http_request *req, int status, struct sealvm_err *err,
			 struct http_response *resp)
{
	http_response_done(resp);
	if (!sealvm_err_isset(err))
		sealvm_err_set(err, -EIO, NULL, "%s", default_message(status));
	if (!err->reason[0])
		snprintf(err->reason, sizeof(err->reason), "%s", sealvm_err_reason_for(err->code));
	if (req->service && req->service->format_error) {
		req->service->format_error(req, status, err, resp);
		if (!resp->status)
			resp->status = status;
		if (resp->body || resp->raw_body)
			return;
		http_response_done(resp);
	}
	generic_error(req, status, err, resp);
}

/*
 * The audit step. Returns 0 when the request is recorded (or needs no
 * record); otherwise @resp has become a 503 and the caller sends it as is.
 */
static int ladder_audit(struct http_request *req, struct http_response *resp, int status,
			const struct sealvm_err *failure)
{
	const struct http_hooks *h = &req->srv->cfg.hooks;
	struct sealvm_err aerr = SEALVM_ERR_INIT;

	if (req->audited || (req->route && (req->route->flags & HTTP_ROUTE_NO_AUDIT)))
		return 0;
	req->audited = true; /* once, whatever happens next */
	int r = req->may_suspend && h->audit_async
			? h->audit_async(req, status, failure, h->ctx, &aerr)
			: h->audit(req, status, failure, h->ctx, &aerr);
	if (r >= 0)
		return 0; /* 1: the answer waits for http_request_audit_done */
	http_ladder_audit_failed(req, resp, r, &aerr);
	return -EIO;
}

void http_ladder_audit_failed(struct http_request *req, struct http_response *resp, int code,
			      const struct sealvm_err *aerr)
{
	log_error("request %s: the audit event could not be written (%s: %s); answering 503",
		  req->id, aerr->reason[0] ? aerr->reason : sealvm_err_reason_for(code),
		  aerr->message);
	struct sealvm_err e = SEALVM_ERR_INIT;
	sealvm_err_set(&e, -EIO, "AUDIT_UNAVAILABLE",
		       "the audit event for this request could not be written, so the request was "
		       "refused; retry later");
	format_error(req, 503, &e, resp);
	resp->status = 503;
}

void http_request_audit_wait(struct http_request *req)
{
	req->phase = HTTP_PHASE_AUDIT;
	atomic_fetch_add(&req->srv->suspended, 1);
	MHD_suspend_connection(req->conn);
}

void http_request_audit_done(struct http_request *req, int result, const struct sealvm_err *err)
{
	struct http_server *srv = req->srv;
	req->audit_result = result;
	if (result < 0 && err)
		req->audit_err = *err;
	MHD_resume_connection(req->conn);
	/* The last touch of the request on this thread: the stop waits for the count. */
	atomic_fetch_sub(&srv->suspended, 1);
}

/* An error answer for @status, audited. */
static void respond_status(struct http_request *req, struct http_response *resp, int status,
			   struct sealvm_err *err)
{
	format_error(req, status, err, resp);
	/* A service's formatter may answer with a more precise status (412, 428): audit that one.
	 */
	ladder_audit(req, resp, resp->status ? resp->status : status, err);
}

static void respond_errno(struct http_request *req, struct http_response *resp, int code,
			  struct sealvm_err *err)
{
	if (code >= 0)
		code = -EIO;
	if (!sealvm_err_isset(err))
		sealvm_err_set(err, code, NULL, "%s", default_message(http_status_for(code)));
	respond_status(req, resp, http_status_for(code), err);
}

/* ---- request ids -------------------------------------------------------- */

static bool request_id_valid(const char *s)
{
	size_t n = 0;
	if (!s)
		return false;
	for (; s[n]; n++) {
		unsigned char c = (unsigned char)s[n];
		if (n >= HTTP_REQUEST_ID_MAX)
			return false;
		if (!isalnum(c) && c != '.' && c != '_' && c != ':' && c != '-')
			return false;
	}
	return n > 0;
}

/*
 * Request ids are unique, not secret: each thread draws 16 random bytes once
 * and then counts in the low 64 bits, so a request costs no DRBG call (and no
 * DRBG lock). Formatted as a version-4 UUID.
 */
static __thread unsigned char id_seed[16];
static __thread uint64_t id_count;
static __thread bool id_seeded;

static void request_id_make(char out[static 37])
{
	static const char hex[] = "0123456789abcdef";
	unsigned char b[16];

	if (!id_seeded) {
		if (RAND_bytes(id_seed, sizeof(id_seed)) != 1) {
			/* Fall back to the clock and the thread's address. */
			struct timespec ts;
			clock_gettime(CLOCK_REALTIME, &ts);
			uintptr_t a = (uintptr_t)&id_count;
			memcpy(id_seed, &ts, MIN(sizeof(ts), sizeof(id_seed)));
			memcpy(id_seed + 8, &a, MIN(sizeof(a), sizeof(id_seed) - 8));
		}
		id_seeded = true;
	}
	memcpy(b, id_seed, sizeof(b));
	uint64_t n = ++id_count, low = 0;
	for (int i = 0; i < 8; i++)
		low = (low << 8) | b[8 + i];
	low += n;
	for (int i = 7; i >= 0; i--, low >>= 8)
		b[8 + i] = (unsigned char)low;
	b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
	b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
	size_t o = 0;
	for (size_t i = 0; i < 16; i++) {
		if (i == 4 || i == 6 || i == 8 || i == 10)
			out[o++] = '-';
		out[o++] = hex[b[i] >> 4];
		out[o++] = hex[b[i] & 15];
	}
	out[o] = 0;
}

static void request_id_init(struct http_request *req)
{
	static const char *const names[] = {"correlation-id", "x-request-id"};
	for (size_t i = 0; i < ELEMENTSOF(names); i++) {
		const char *v = http_request_header(req, names[i]);
		if (request_id_valid(v)) {
			snprintf(req->id, sizeof(req->id), "%s", v);
			return;
		}
	}
	request_id_make(req->id);
}

/* ---- routes ------------------------------------------------------------- */

/* Splits "/a/b" into {"a","b"}; "/" is one empty segment. -E2BIG past @max. */
static int split_path(const char *p, size_t n, struct http_segment *segs, unsigned max)
{
	unsigned k = 0;
	if (n == 0 || p[0] != '/')
		return -EINVAL;
	size_t i = 1;
	for (;;) {
		size_t j = i;
		while (j < n && p[j] != '/')
			j++;
		if (k >= max)
			return -E2BIG;
		segs[k].text = p + i;
		segs[k].len = j - i;
		segs[k].param = segs[k].greedy = false;
		k++;
		if (j >= n)
			break;
		i = j + 1;
	}
	return (int)k;
}

static bool same_pattern(const struct http_compiled_route *a, const struct http_compiled_route *b)
{
	if (a->n_segments != b->n_segments)
		return false;
	for (unsigned i = 0; i < a->n_segments; i++) {
		const struct http_segment *x = &a->segments[i], *y = &b->segments[i];
		if (x->param != y->param || x->greedy != y->greedy)
			return false;
		if (!x->param && (x->len != y->len || memcmp(x->text, y->text, x->len) != 0))
			return false;
	}
	return true;
}

int http_routes_compile(struct http_server *srv, struct sealvm_err *err)
{
	const struct http_server_config *cfg = &srv->cfg;
	size_t total = 0;

	for (size_t s = 0; s < cfg->n_services; s++)
		total += cfg->services[s].n_routes;
	srv->routes = calloc(total ? total : 1, sizeof(*srv->routes));
	if (!srv->routes)
		return sealvm_err_set(err, -ENOMEM, NULL,
				      "out of memory compiling the route table");

	size_t k = 0;
	for (size_t s = 0; s < cfg->n_services; s++) {
		const struct http_service *svc = &cfg->services[s];
		for (size_t i = 0; i < svc->n_routes; i++) {
			const struct http_route *rt = &svc->routes[i];
			struct http_compiled_route *c = &srv->routes[k];
			const char *what = rt->pattern ? rt->pattern : "(null)";

			if (!rt->method || !rt->pattern || !rt->handler)
				return sealvm_err_set(
					err, -EINVAL, "ROUTE_INVALID",
					"service %s: route %s lacks a method, pattern or handler",
					svc->name ? svc->name : "?", what);
			if (!(rt->flags & HTTP_ROUTE_PUBLIC) && !rt->action)
				return sealvm_err_set(
					err, -EINVAL, "ROUTE_INVALID",
					"service %s: route %s %s is not public and has no IAM action",
					svc->name ? svc->name : "?", rt->method, what);
			int n = split_path(rt->pattern, strlen(rt->pattern), c->segments,
					   HTTP_MAX_PATTERN_SEGMENTS);
			if (n < 0)
				return sealvm_err_set(
					err, -EINVAL, "ROUTE_INVALID",
					"route pattern %s must start with '/' and have at most %d segments",
					what, HTTP_MAX_PATTERN_SEGMENTS);
			c->n_segments = (unsigned)n;
			unsigned params = 0;
			for (unsigned j = 0; j < c->n_segments; j++) {
				struct http_segment *sg = &c->segments[j];
				if (sg->len == 0 || sg->text[0] != '{')
					continue;
				if (sg->len < 3 || sg->text[sg->len - 1] != '}')
					return sealvm_err_set(
						err, -EINVAL, "ROUTE_INVALID",
						"route pattern %s: a parameter must be a whole {segment}",
						what);
				sg->text++;
				sg->len -= 2;
				sg->param = true;
				if (sg->text[sg->len - 1] == '+') {
					sg->greedy = true;
					sg->len--;
					if (j + 1 != c->n_segments || sg->len == 0)
						return sealvm_err_set(
							err, -EINVAL, "ROUTE_INVALID",
							"route pattern %s: {name+} must be the last segment",
							what);
				}
				if (++params > HTTP_MAX_PARAMS)
					return sealvm_err_set(
						err, -EINVAL, "ROUTE_INVALID",
						"route pattern %s has more than %d parameters",
						what, HTTP_MAX_PARAMS);
			}
			c->route = rt;
			c->service = svc;
			for (size_t p = 0; p < k; p++)
				if (strcmp(srv->routes[p].route->method, rt->method) == 0 &&
				    same_pattern(&srv->routes[p], c))
					return sealvm_err_set(err, -EINVAL, "ROUTE_DUPLICATE",
							      "route %s %s is defined twice",
							      rt->method, what);
			k++;
		}
	}
	srv->n_routes = k;
	return 0;
}

/* Whether @c matches the split path; @n_path segments in @path. */
static bool route_matches(const struct http_compiled_route *c, const struct http_segment *path,
			  unsigned n_path)
{
	for (unsigned i = 0; i < c->n_segments; i++) {
		const struct http_segment *sg = &c->segments[i];
		if (sg->greedy)
			return i < n_path; /* the rest, at least one segment */
		if (i >= n_path)
			return false;
		if (sg->param) {
			if (path[i].len == 0)
				return false;
		} else if (sg->len != path[i].len || memcmp(sg->text, path[i].text, sg->len) != 0) {
			return false;
		}
	}
	return c->n_segments == n_path;
}

static int seg_rank(const struct http_segment *s)
{
	return s->greedy ? 2 : s->param ? 1 : 0;
}

/* True when @a is more specific than @b: a literal beats {param} beats {rest+}, leftmost first. */
static bool more_specific(const struct http_compiled_route *a, const struct http_compiled_route *b)
{
	unsigned n = MIN(a->n_segments, b->n_segments);
	for (unsigned i = 0; i < n; i++) {
		int ra = seg_rank(&a->segments[i]), rb = seg_rank(&b->segments[i]);
		if (ra != rb)
			return ra < rb;
	}
	return false;
}

/* Strict percent-decoding: %XX needs two hex digits; a decoded NUL is refused. */
static long pct_decode(const char *src, size_t n, char *dst, bool plus_space)
{
	size_t o = 0;
	for (size_t i = 0; i < n; i++) {
		char c = src[i];
		if (c == '%') {
			if (i + 2 >= n)
				return -EINVAL;
			int hi = isxdigit((unsigned char)src[i + 1]) ? src[i + 1] : -1;
			int lo = isxdigit((unsigned char)src[i + 2]) ? src[i + 2] : -1;
			if (hi < 0 || lo < 0)
				return -EINVAL;
			hi = isdigit(hi) ? hi - '0' : (tolower(hi) - 'a' + 10);
			lo = isdigit(lo) ? lo - '0' : (tolower(lo) - 'a' + 10);
			c = (char)(hi << 4 | lo);
			if (c == 0)
				return -EINVAL;
			i += 2;
		} else if (c == '+' && plus_space) {
			c = ' ';
		}
		dst[o++] = c;
	}
	dst[o] = 0;
	return (long)o;
}

/* Routes @req. 0, or an error answer already in @resp. */
static int ladder_route(struct http_request *req, struct http_response *resp)
{
	struct http_server *srv = req->srv;
	struct http_segment path[HTTP_MAX_PATH_SEGMENTS];
	struct sealvm_err err = SEALVM_ERR_INIT;
	const struct http_compiled_route *best = NULL;
	const struct http_compiled_route *any = NULL;
	char allow[128];
	size_t allow_len = 0;

	allow[0] = 0;
	int n = split_path(req->path, req->path_len, path, HTTP_MAX_PATH_SEGMENTS);
	for (size_t i = 0; n > 0 && i < srv->n_routes; i++) {
		const struct http_compiled_route *c = &srv->routes[i];
		if (!route_matches(c, path, (unsigned)n))
			continue;
		if (!any)
			any = c;
		if (strcmp(c->route->method, req->method) == 0) {
			if (!best || more_specific(c, best))
				best = c;
			continue;
		}
		/* Another method on this path: remember it for Allow, once. */
		size_t ml = strlen(c->route->method);
		bool seen = false;
		for (const char *p = allow; *p;) {
			const char *e = strchr(p, ',');
			size_t l = e ? (size_t)(e - p) : strlen(p);
			if (l == ml && memcmp(p, c->route->method, ml) == 0)
				seen = true;
			p = e ? e + 2 : p + l;
		}
		if (!seen && allow_len + ml + 3 < sizeof(allow))
			allow_len +=
				(size_t)snprintf(allow + allow_len, sizeof(allow) - allow_len,
						 "%s%s", allow_len ? ", " : "", c->route->method);
	}

	if (!best && any) {
		req->service = any->service;
		sealvm_err_set(&err, -ENOTSUP, "METHOD_NOT_ALLOWED",
			       "%s is not allowed on %.256s; allowed: %s", req->method, req->path,
			       allow);
		respond_status(req, resp, 405, &err);
		if (resp->status == 405)
			http_response_header(resp, "Allow", allow);
		return -ENOTSUP;
	}
	if (!best) {
		sealvm_err_set(&err, -ENOENT, "NOT_FOUND", "no such resource: %s %.256s",
			       req->method, req->path);
		respond_status(req, resp, 404, &err);
		return -ENOENT;
	}

	req->croute = best;
	req->route = best->route;
	req->service = best->service;
	char *out = req->decoded;
	for (unsigned i = 0; i < best->n_segments; i++) {
		const struct http_segment *sg = &best->segments[i];
		if (!sg->param)
			continue;
		size_t raw_len = sg->greedy ? (size_t)(req->path + req->path_len - path[i].text)
					    : path[i].len;
		long d = pct_decode(path[i].text, raw_len, out, false);
		if (d < 0) {
			sealvm_err_set(
				&err, -EINVAL, "MALFORMED_PATH",
				"the path %.256s has a malformed percent escape or an encoded NUL",
				req->path);
			respond_status(req, resp, 400, &err);
			return -EINVAL;
		}
		req->param_names[req->n_params] = sg->text;
		req->param_name_lens[req->n_params] = sg->len;
		req->param_values[req->n_params] = out;
		req->n_params++;
		out += d + 1;
	}
	return 0;
}

/* ---- the ladder ----------------------------------------------------------- */

/* A strict decimal Content-Length; -EINVAL when it is not one. */
static int parse_length(const char *s, unsigned long long *ret)
{
	unsigned long long v = 0;
	if (!*s)
		return -EINVAL;
	for (; *s; s++) {
		if (!isdigit((unsigned char)*s))
			return -EINVAL;
		if (v > (~0ULL - 9) / 10)
			return -E2BIG;
		v = v * 10 + (unsigned long long)(*s - '0');
	}
	*ret = v;
	return 0;
}

static void respond_too_large(struct http_request *req, struct http_response *resp,
			      const char *what)
{
	struct sealvm_err err = SEALVM_ERR_INIT;
	sealvm_err_set(&err, -E2BIG, "PAYLOAD_TOO_LARGE",
		       "the request body %s the limit of %zu bytes for %s %s", what,
		       req->route->max_body, req->route->method, req->route->pattern);
	respond_status(req, resp, 413, &err);
}

int http_ladder_begin(struct http_request *req, struct http_response *resp)
{
	request_id_init(req);

	int r = ladder_route(req, resp);
	if (r < 0)
		return r;

	/* Limits: a declared length is judged before a byte of the body is read. */
	const char *cl = http_request_header(req, "Content-Length");
	if (cl) {
		unsigned long long len;
		r = parse_length(cl, &len);
		if (r == -EINVAL) {
			struct sealvm_err err = SEALVM_ERR_INIT;
			sealvm_err_set(&err, -EINVAL, "MALFORMED_CONTENT_LENGTH",
				       "the Content-Length header is not a decimal number");
			respond_status(req, resp, 400, &err);
			return -EINVAL;
		}
		if (r < 0 || len > req->route->max_body) {
			respond_too_large(req, resp, "exceeds");
			return -E2BIG;
		}
		if (len > 0) {
			req->body = malloc((size_t)len);
			if (!req->body) {
				struct sealvm_err err = SEALVM_ERR_INIT;
				respond_errno(req, resp, -ENOMEM, &err);
				return -ENOMEM;
			}
			req->body_cap = (size_t)len;
		}
	}
	return 0;
}

int http_ladder_body(struct http_request *req, const char *data, size_t len)
{
	if (req->body_error)
		return req->body_error;
	if (len > req->route->max_body - req->body_len) {
		req->body_error = -E2BIG;
	} else if (req->body_len + len > req->body_cap) {
		size_t cap = MAX(req->body_cap * 2, req->body_len + len);
		cap = MAX(cap, (size_t)4096);
		cap = MIN(cap, req->route->max_body);
		unsigned char *p = realloc(req->body, cap);
		if (!p) {
			req->body_error = -ENOMEM;
		} else {
			req->body = p;
			req->body_cap = cap;
		}
	}
	if (req->body_error) {
		free(req->body);
		req->body = NULL;
		req->body_len = req->body_cap = 0;
		return req->body_error;
	}
	memcpy(req->body + req->body_len, data, len);
	req->body_len += len;
	return 0;
}

void http_ladder_finish(struct http_request *req, struct http_response *resp)
{
	const struct http_route *rt = req->route;
	const struct http_service *svc = req->service;
	const struct http_hooks *h = &req->srv->cfg.hooks;
	struct sealvm_err err = SEALVM_ERR_INIT;
	int r;

	if (req->body_error == -E2BIG)
		return respond_too_large(req, resp, "exceeds");
	if (req->body_error < 0)
		return respond_errno(req, resp, req->body_error, &err);

	if (!(rt->flags & HTTP_ROUTE_PUBLIC)) {
		r = h->authenticate(req, &req->principal, h->ctx, &err);
		if (r < 0) {
			memset(&req->principal, 0, sizeof(req->principal));
			return respond_errno(req, resp, r, &err);
		}
		req->authenticated = true;
	}

	if (rt->resolve) {
		r = rt->resolve(req, &req->target, svc->ctx, &err);
		if (r < 0)
			return respond_errno(req, resp, r, &err);
	} else {
		snprintf(req->target.account_id, sizeof(req->target.account_id), "%s",
			 req->principal.account_id);
		snprintf(req->target.service_name, sizeof(req->target.service_name), "%s",
			 svc->name ? svc->name : "");
	}

	if (!(rt->flags & HTTP_ROUTE_PUBLIC)) {
		r = h->authorize(&req->principal, rt->action, &req->target, h->ctx, &err);
		if (r < 0)
			return respond_errno(req, resp, r, &err);
	}

	r = rt->handler(req, resp, svc->ctx, &err);
	if (r < 0)
		return respond_errno(req, resp, r, &err);
	if (resp->status == 0)
		resp->status = (resp->body || resp->raw_body) ? 200 : 204;
	ladder_audit(req, resp, resp->status, NULL);
}

/* ---- accessors ------------------------------------------------------------ */

const char *http_request_method(const struct http_request *req)
{
	return req->method;
}

const char *http_request_path(const struct http_request *req)
{
	return req->path;
}

const char *http_request_query(const struct http_request *req)
{
	return req->query;
}

const char *http_request_param(const struct http_request *req, const char *name)
{
	size_t n = strlen(name);
	for (unsigned i = 0; i < req->n_params; i++)
		if (req->param_name_lens[i] == n && memcmp(req->param_names[i], name, n) == 0)
			return req->param_values[i];
	return NULL;
}

const char *http_request_header(const struct http_request *req, const char *name)
{
	return MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, name);
}

const char *http_request_id(const struct http_request *req)
{
	return req->id;
}

const char *http_request_remote(const struct http_request *req)
{
	return req->remote;
}

const char *http_request_user_agent(const struct http_request *req)
{
	return http_request_header(req, "User-Agent");
}

const unsigned char *http_request_body(const struct http_request *req, size_t *ret_len)
{
	if (ret_len)
		*ret_len = req->body_len;
	return req->body_len ? req->body : NULL;
}

const struct http_route *http_request_route(const struct http_request *req)
{
	return req->route;
}

const struct sealvm_principal *http_request_principal(const struct http_request *req)
{
	return &req->principal;
}

const struct http_target *http_request_target(const struct http_request *req)
{
	return &req->target;
}

void http_request_keep(struct http_request *req, void *obj, void (*release)(void *))
{
	if (req->kept_release)
		req->kept_release(req->kept);
	req->kept = obj;
	req->kept_release = release;
}

void *http_request_kept(const struct http_request *req)
{
	return req->kept;
}

int http_request_json(const struct http_request *req, json_t **ret, struct sealvm_err *err)
{
	json_error_t jerr;

	if (req->body_len == 0)
		return sealvm_err_set(err, -EINVAL, "MALFORMED_JSON",
				      "the request body is empty; a JSON document was expected");
	json_t *j =
		json_loadb((const char *)req->body, req->body_len, JSON_REJECT_DUPLICATES, &jerr);
	if (!j)
		return sealvm_err_set(err, -EINVAL, "MALFORMED_JSON",
				      "the request body is not valid JSON: line %d column %d: %s",
				      jerr.line, jerr.column, jerr.text);
	*ret = j;
	return 0;
}

/*
 * One field of an application/x-www-form-urlencoded text ('+' is a space,
 * %XX strict). NULL with errno ENOENT when absent, EINVAL when malformed or
 * given twice, ENOMEM.
 */
static char *form_field(const char *s, size_t n, const char *name)
{
	char *found = NULL;
	_cleanup_free_ char *scratch = NULL;

	if (!s || n == 0) {
		errno = ENOENT;
		return NULL;
	}
	scratch = malloc(n + 1);
	if (!scratch) {
		errno = ENOMEM;
		return NULL;
	}
	size_t i = 0;
	while (i < n) {
		const char *amp = memchr(s + i, '&', n - i);
		size_t end = amp ? (size_t)(amp - s) : n;
		const char *eq = memchr(s + i, '=', end - i);
		size_t name_end = eq ? (size_t)(eq - s) : end;
		if (end > i) {
			long d = pct_decode(s + i, name_end - i, scratch, true);
			if (d < 0)
				goto malformed;
			if (strcmp(scratch, name) == 0) {
				if (found)
					goto malformed;
				size_t vs = eq ? name_end + 1 : end;
				found = malloc(end - vs + 1);
				if (!found) {
					errno = ENOMEM;
					return NULL;
				}
				if (pct_decode(s + vs, end - vs, found, true) < 0)
					goto malformed;
			}
		}
		i = end + 1;
	}
	if (!found)
		errno = ENOENT;
	return found;
malformed:
	free(found);
	errno = EINVAL;
	return NULL;
}

char *http_request_form_field(const struct http_request *req, const char *name)
{
	return form_field((const char *)req->body, req->body_len, name);
}

char *http_request_query_field(const struct http_request *req, const char *name)
{
	return form_field(req->query, strlen(req->query), name);
}

void http_request_set_audit_data(struct http_request *req, json_t *request_data,
				 json_t *response_data)
{
	json_decref(req->audit_request_data);
	json_decref(req->audit_response_data);
	req->audit_request_data = request_data;
	req->audit_response_data = response_data;
}

json_t *http_request_audit_request_data(const struct http_request *req)
{
	return req->audit_request_data;
}

json_t *http_request_audit_response_data(const struct http_request *req)
{
	return req->audit_response_data;
}

void http_request_audited(struct http_request *req)
{
	req->audited = true;
}

/*
 * Runs on the database writer thread while the handler's thread waits for
 * its job, so setting req->audited here is ordered before the ladder reads
 * it. Marked audited only when the append succeeded: a job that fails
 * leaves the failure to the ladder's own audit.
 */
int http_request_audit_in_job(struct http_request *req, struct sqlite3 *conn, int status,
			      struct sealvm_err *err)
{
	const struct http_hooks *h = &req->srv->cfg.hooks;
	if (!h->audit_in_job)
		return sealvm_err_set(err, -ENOTSUP, "AUDIT_IN_JOB_UNAVAILABLE",
				      "this server has no hook to audit inside a write job");
	int r = h->audit_in_job(req, conn, status, h->ctx, err);
	if (r < 0)
		return r;
	req->audited = true;
	return 0;
}

void http_request_set_target(struct http_request *req, const struct http_target *target)
{
	if (target)
		req->target = *target;
}

void http_request_set_initiator(struct http_request *req, const struct sealvm_principal *p)
{
	if (req && p && req->principal.kind == PRINCIPAL_NONE)
		req->principal = *p;
}

void http_request_free(struct http_request *req)
{
	if (!req)
		return;
	free(req->body);
	http_response_done(&req->early);
	http_response_done(&req->pending); /* a connection that went away while suspended */
	json_decref(req->audit_request_data);
	json_decref(req->audit_response_data);
	if (req->kept_release)
		req->kept_release(req->kept);
	free(req);
}
