// SPDX-License-Identifier: Apache-2.0
/*
 * Unit tests of lib/core/http.c and http_ladder.c: a server on 127.0.0.1
 * port 0 inside this process, a fake service and fake hooks that count their
 * calls, and libcurl as the client. No assertion depends on wall-clock time.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <curl/curl.h>
#include <jansson.h>

#include "sealvm/http.h"
#include "sealvm/log.h"

/* ---- the fake service and hooks --------------------------------------------- */

static struct {
	atomic_int authenticate, authorize, resolve, handler, audit, format_error;
	atomic_int kept_released; /* objects resolvers kept, freed with their request */
	atomic_int audit_status;
	atomic_bool audit_fails;
	atomic_bool audit_saw_route;
	atomic_bool slow_entered;
	atomic_int audit_in_job;
	atomic_bool audit_in_job_fails;
	char audit_target_crn[320];
} calls;

static int fake_authenticate(struct http_request *req, struct sealvm_principal *p, void *ctx,
			     struct sealvm_err *err)
{
	calls.authenticate++;
	const char *a = http_request_header(req, "Authorization");
	if (!a || strncmp(a, "Bearer ", 7) != 0)
		return sealvm_err_set(err, -EPERM, "NO_TOKEN", "no bearer token");
	if (strncmp(a + 7, "good", 4) == 0 || strncmp(a + 7, "denied", 6) == 0) {
		p->kind = PRINCIPAL_USER;
		snprintf(p->iam_id, sizeof(p->iam_id), "IBMid-%s", a[7] == 'g' ? "good" : "denied");
		snprintf(p->account_id, sizeof(p->account_id), "acct1");
		return 0;
	}
	return sealvm_err_set(err, -EPERM, "BAD_TOKEN", "the token is not valid");
}

static int fake_authorize(const struct sealvm_principal *p, const char *action,
			  const struct http_target *target, void *ctx, struct sealvm_err *err)
{
	calls.authorize++;
	if (strcmp(p->iam_id, "IBMid-denied") == 0)
		return sealvm_err_set(err, -EACCES, "FORBIDDEN", "%s is not allowed", action);
	return 0;
}

static int fake_audit(struct http_request *req, int status, const struct sealvm_err *failure,
		      void *ctx, struct sealvm_err *err)
{
	calls.audit++;
	calls.audit_status = status;
	calls.audit_saw_route = http_request_route(req) != NULL;
	if (calls.audit_fails)
		return sealvm_err_set(err, -EIO, "DB_DOWN", "the database is gone");
	return 0;
}

/*
 * The asynchronous audit hook (the second run of the suite): the same
 * bookkeeping, then the completion comes from another thread, as the
 * database writer's would — after a delay while calls.audit_delay is set.
 */
static atomic_bool async_mode;
static atomic_int audit_async_calls;
static atomic_bool audit_delay, audit_delayed_entered;

struct completion {
	struct http_request *req;
	bool fail;
	bool delay;
};

static void *complete_later(void *p)
{
	struct completion *c = p;
	struct sealvm_err e = SEALVM_ERR_INIT;
	if (c->delay) {
		audit_delayed_entered = true;
		usleep(300 * 1000);
	}
	if (c->fail)
		sealvm_err_set(&e, -EIO, "DB_DOWN", "the database is gone");
	http_request_audit_done(c->req, c->fail ? -EIO : 0, &e);
	free(c);
	return NULL;
}

static int fake_audit_async(struct http_request *req, int status, const struct sealvm_err *failure,
			    void *ctx, struct sealvm_err *err)
{
	calls.audit++;
	audit_async_calls++;
	calls.audit_status = status;
	calls.audit_saw_route = http_request_route(req) != NULL;
	struct completion *c = malloc(sizeof(*c));
	pthread_t t;
	if (!c)
		return sealvm_err_set(err, -ENOMEM, NULL, "out of memory");
	*c = (struct completion){req, calls.audit_fails, audit_delay};
	http_request_audit_wait(req);
	if (pthread_create(&t, NULL, complete_later, c) != 0) {
		c->delay = false;
		complete_later(c);
		return 1;
	}
	pthread_detach(t);
	return 1;
}

static int fake_audit_in_job(struct http_request *req, struct sqlite3 *conn, int status, void *ctx,
			     struct sealvm_err *err)
{
	calls.audit_in_job++;
	snprintf(calls.audit_target_crn, sizeof(calls.audit_target_crn), "%s",
		 http_request_target(req)->crn);
	if (calls.audit_in_job_fails)
		return sealvm_err_set(err, -EIO, "DB_DOWN", "the database is gone");
	return 0;
}

static int h_in_job(struct http_request *req, struct http_response *resp, void *ctx,
		    struct sealvm_err *err)
{
	struct http_target t = *http_request_target(req);
	calls.handler++;
	snprintf(t.crn, sizeof(t.crn), "crn:v1:test:thing:new");
	http_request_set_target(req, &t);
	/* As inside a db_write job: the event commits with the state change. */
	int r = http_request_audit_in_job(req, NULL, 201, err);
	if (r < 0)
		return r;
	resp->status = 201;
	resp->body = json_pack("{s:b}", "created", 1);
	return 0;
}

static int h_thing(struct http_request *req, struct http_response *resp, void *ctx,
		   struct sealvm_err *err)
{
	calls.handler++;
	resp->body =
		json_pack("{s:s, s:s, s:s, s:s}", "id", http_request_param(req, "id"), "path",
			  http_request_path(req), "principal", http_request_principal(req)->iam_id,
			  "request_id", http_request_id(req));
	return 0;
}

static int h_special(struct http_request *req, struct http_response *resp, void *ctx,
		     struct sealvm_err *err)
{
	calls.handler++;
	resp->body = json_pack("{s:s}", "special", "yes");
	return 0;
}

static int h_object(struct http_request *req, struct http_response *resp, void *ctx,
		    struct sealvm_err *err)
{
	calls.handler++;
	resp->body = json_pack("{s:s, s:s}", "bucket", http_request_param(req, "bucket"), "key",
			       http_request_param(req, "key"));
	return 0;
}

static int h_list(struct http_request *req, struct http_response *resp, void *ctx,
		  struct sealvm_err *err)
{
	calls.handler++;
	resp->body = json_pack("{s:[]}", "items");
	return 0;
}

static int h_create(struct http_request *req, struct http_response *resp, void *ctx,
		    struct sealvm_err *err)
{
	json_t *j;
	calls.handler++;
	int r = http_request_json(req, &j, err);
	if (r < 0)
		return r;
	resp->status = 201;
	resp->body = j;
	return 0;
}

static int h_delete(struct http_request *req, struct http_response *resp, void *ctx,
		    struct sealvm_err *err)
{
	calls.handler++;
	return 0;
}

static int h_form(struct http_request *req, struct http_response *resp, void *ctx,
		  struct sealvm_err *err)
{
	calls.handler++;
	char *g = http_request_form_field(req, "grant_type");
	char *k = http_request_form_field(req, "apikey");
	char *d = http_request_form_field(req, "dup");
	int dup_errno = errno;
	char *m = http_request_form_field(req, "missing");
	int missing_errno = errno;
	char *q = http_request_query_field(req, "q");
	char *u = http_request_query_field(req, "uploads");
	resp->body =
		json_pack("{s:s?, s:s?, s:b, s:i, s:b, s:i, s:s?, s:s?}", "grant_type", g, "apikey",
			  k, "dup_null", d == NULL, "dup_errno", dup_errno, "missing_null",
			  m == NULL, "missing_errno", missing_errno, "q", q, "uploads", u);
	free(g);
	free(k);
	free(d);
	free(m);
	free(q);
	free(u);
	return 0;
}

static int h_fail(struct http_request *req, struct http_response *resp, void *ctx,
		  struct sealvm_err *err)
{
	calls.handler++;
	int code = atoi(http_request_param(req, "code"));
	resp->body = json_pack("{s:s}", "partial", "must not be sent");
	return sealvm_err_set(err, -code, "FAKE_FAILURE", "failing with errno %d", code);
}

static int h_slow(struct http_request *req, struct http_response *resp, void *ctx,
		  struct sealvm_err *err)
{
	calls.handler++;
	calls.slow_entered = true;
	usleep(300 * 1000);
	resp->body = json_pack("{s:s}", "slow", "done");
	return 0;
}

static int h_audited(struct http_request *req, struct http_response *resp, void *ctx,
		     struct sealvm_err *err)
{
	calls.handler++;
	http_request_audited(req);
	resp->status = 201;
	resp->body = json_pack("{s:b}", "audited", 1);
	return 0;
}

static int h_health(struct http_request *req, struct http_response *resp, void *ctx,
		    struct sealvm_err *err)
{
	calls.handler++;
	resp->body = json_pack("{s:s}", "status", "ok");
	return 0;
}

static void release_kept(void *obj)
{
	calls.kept_released++;
	free(obj);
}

static int r_owned(struct http_request *req, struct http_target *t, void *ctx,
		   struct sealvm_err *err)
{
	calls.resolve++;
	const char *id = http_request_param(req, "id");
	if (strcmp(id, "missing") == 0)
		return sealvm_err_set(err, -ENOENT, "THING_NOT_FOUND", "no thing %s", id);
	snprintf(t->account_id, sizeof(t->account_id), "acct1");
	snprintf(t->resource, sizeof(t->resource), "%s", id);
	/* What it "read", for the handler; kept twice to check the first is released. */
	http_request_keep(req, strdup("stale"), release_kept);
	char *row = malloc(strlen(id) + 5);
	if (row)
		sprintf(row, "row:%s", id);
	http_request_keep(req, row, release_kept);
	return 0;
}

/* Answers from what the resolver kept. */
static int h_owned(struct http_request *req, struct http_response *resp, void *ctx,
		   struct sealvm_err *err)
{
	calls.handler++;
	const char *row = http_request_kept(req);
	resp->body = json_pack("{s:s?}", "kept", row);
	return 0;
}

static const struct http_route fake_routes[] = {
	{"GET", "/v1/things", h_list, NULL, "fake.thing.list", "fake.thing.list", 0, 0},
	{"POST", "/v1/things", h_create, NULL, "fake.thing.create", "fake.thing.create", 64, 0},
	{"GET", "/v1/things/{id}", h_thing, NULL, "fake.thing.read", "fake.thing.read", 0,
	 HTTP_ROUTE_NONBLOCKING},
	{"DELETE", "/v1/things/{id}", h_delete, NULL, "fake.thing.delete", "fake.thing.delete", 0,
	 0},
	{"GET", "/v1/things/special", h_special, NULL, "fake.thing.read", "fake.thing.read", 0, 0},
	{"GET", "/v1/objects/{bucket}/{key+}", h_object, NULL, "fake.object.read",
	 "fake.object.read", 0, 0},
	{"GET", "/v1/owned/{id}", h_owned, r_owned, "fake.owned.read", "fake.owned.read", 0, 0},
	{"GET", "/v1/raw/{id}", h_thing, NULL, "fake.thing.read", "fake.thing.read", 0, 0},
	{"GET", "/v1/fail/{code}", h_fail, NULL, "fake.fail", "fake.fail", 0, 0},
	{"GET", "/v1/slow", h_slow, NULL, "fake.slow", "fake.slow", 0, 0},
	{"GET", "/v1/quick", h_health, NULL, "fake.quick", "fake.quick", 0, HTTP_ROUTE_NONBLOCKING},
	{"POST", "/v1/in-job", h_in_job, NULL, "fake.injob", "fake.injob", 0, 0},
	{"POST", "/v1/audited", h_audited, NULL, "fake.audited", "fake.audited", 1024, 0},
	{"POST", "/public/form", h_form, NULL, NULL, "fake.form", 1024,
	 HTTP_ROUTE_PUBLIC | HTTP_ROUTE_FORM},
	{"GET", "/public/ping", h_health, NULL, NULL, "fake.ping", 0, HTTP_ROUTE_PUBLIC},
	{"GET", "/healthz", h_health, NULL, NULL, NULL, 0, HTTP_ROUTE_PUBLIC | HTTP_ROUTE_NO_AUDIT},
};

static void xml_error(const struct http_request *req, int status, const struct sealvm_err *err,
		      struct http_response *resp)
{
	calls.format_error++;
	char *x = NULL;
	int n = asprintf(&x, "<Error><Code>%s</Code><RequestId>%s</RequestId></Error>", err->reason,
			 http_request_id(req));
	if (n < 0)
		return;
	resp->raw_body = x;
	resp->raw_len = (size_t)n;
	resp->content_type = "application/xml";
}

static int h_xml_missing(struct http_request *req, struct http_response *resp, void *ctx,
			 struct sealvm_err *err)
{
	calls.handler++;
	return sealvm_err_set(err, -ENOENT, "NoSuchKey", "no such key");
}

static const struct http_route xml_routes[] = {
	{"GET", "/xml/{key}", h_xml_missing, NULL, NULL, "fake.xml.read", 0, HTTP_ROUTE_PUBLIC},
};

static const struct http_service services[] = {
	{"fake", fake_routes, sizeof(fake_routes) / sizeof(fake_routes[0]), NULL, NULL},
	{"xml", xml_routes, 1, xml_error, NULL},
};

static struct http_server_config base_config(void)
{
	struct http_server_config cfg = {
		.listen = "127.0.0.1:0",
		.limits = {.threads = 4},
		.services = services,
		.n_services = 2,
		.hooks = {fake_authenticate, fake_authorize, fake_audit, fake_audit_in_job, NULL},
	};
	if (async_mode) {
		cfg.hooks.audit_async = fake_audit_async;
		cfg.limits.workers = 2;
	}
	return cfg;
}

static struct http_server *srv;
static uint16_t port;

static int group_setup(void **state)
{
	struct http_server_config cfg = base_config();
	struct sealvm_err err = SEALVM_ERR_INIT;
	curl_global_init(CURL_GLOBAL_ALL);
	if (http_server_start(&cfg, &srv, &err) < 0) {
		fprintf(stderr, "start: %s: %s\n", err.reason, err.message);
		return -1;
	}
	port = http_server_port(srv);
	return port ? 0 : -1;
}

static int group_setup_async(void **state)
{
	async_mode = true;
	return group_setup(state);
}

static int group_teardown(void **state)
{
	http_server_stop(srv);
	curl_global_cleanup();
	return 0;
}

/* ---- a small client ----------------------------------------------------------- */

struct reply {
	CURLcode rc;
	long status;
	char body[16384];
	size_t body_len;
	char cid[200], xrid[200], allow[128], ctype[64];
};

struct upload {
	const char *data;
	size_t len, off;
};

static size_t on_body(char *p, size_t sz, size_t n, void *ud)
{
	struct reply *r = ud;
	size_t len = sz * n;
	size_t room = sizeof(r->body) - 1 - r->body_len;
	memcpy(r->body + r->body_len, p, MIN(len, room));
	r->body_len += MIN(len, room);
	r->body[r->body_len] = 0;
	return len;
}

static void grab(const char *line, size_t len, const char *name, char *out, size_t out_len)
{
	size_t nl = strlen(name);
	if (len <= nl + 1 || strncasecmp(line, name, nl) != 0 || line[nl] != ':')
		return;
	const char *v = line + nl + 1;
	size_t vl = len - nl - 1;
	while (vl && (*v == ' '))
		v++, vl--;
	while (vl && (v[vl - 1] == '\r' || v[vl - 1] == '\n'))
		vl--;
	snprintf(out, out_len, "%.*s", (int)vl, v);
}

static size_t on_header(char *p, size_t sz, size_t n, void *ud)
{
	struct reply *r = ud;
	size_t len = sz * n;
	grab(p, len, "correlation-id", r->cid, sizeof(r->cid));
	grab(p, len, "x-request-id", r->xrid, sizeof(r->xrid));
	grab(p, len, "allow", r->allow, sizeof(r->allow));
	grab(p, len, "content-type", r->ctype, sizeof(r->ctype));
	return len;
}

static size_t on_read(char *p, size_t sz, size_t n, void *ud)
{
	struct upload *u = ud;
	size_t len = MIN(sz * n, u->len - u->off);
	/* Small chunks for small bodies: the limit is crossed mid-body. */
	len = MIN(len, u->len < 4096 ? (size_t)16 : (size_t)65536);
	memcpy(p, u->data + u->off, len);
	u->off += len;
	return len;
}

enum { PLAIN = 0, CHUNKED = 1 };

static void request_on(uint16_t p, bool tls, const char *method, const char *path,
		       const char *const *headers, const char *body, size_t body_len, int mode,
		       struct reply *out)
{
	char url[4096];
	struct curl_slist *hl = NULL;
	struct upload up = {body, body_len, 0};
	CURL *c = curl_easy_init();

	memset(out, 0, sizeof(*out));
	snprintf(url, sizeof(url), "%s://127.0.0.1:%u%s", tls ? "https" : "http", p, path);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_PATH_AS_IS, 1L);
	curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, out);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, out);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
	if (tls) {
		curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 0L);
		curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 0L);
	}
	for (; headers && *headers; headers++)
		hl = curl_slist_append(hl, *headers);
	if (body && mode == CHUNKED) {
		hl = curl_slist_append(hl, "Transfer-Encoding: chunked");
		curl_easy_setopt(c, CURLOPT_POST, 1L);
		curl_easy_setopt(c, CURLOPT_READFUNCTION, on_read);
		curl_easy_setopt(c, CURLOPT_READDATA, &up);
	} else if (body) {
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
	}
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
	out->rc = curl_easy_perform(c);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &out->status);
	curl_slist_free_all(hl);
	curl_easy_cleanup(c);
}

static const char *const AUTH_GOOD[] = {"Authorization: Bearer good", NULL};
static const char *const AUTH_DENIED[] = {"Authorization: Bearer denied", NULL};

static void request(const char *method, const char *path, const char *const *headers,
		    const char *body, struct reply *out)
{
	request_on(port, false, method, path, headers, body, body ? strlen(body) : 0, PLAIN, out);
}

/* The body as JSON (new reference); fails the test when it is not JSON. */
static json_t *body_json(const struct reply *r)
{
	json_error_t e;
	json_t *j = json_loadb(r->body, r->body_len, 0, &e);
	if (!j)
		fail_msg("not JSON (status %ld): %s", r->status, r->body);
	return j;
}

/* Checks the generic error shape and returns its reason (static copy). */
static const char *error_reason(const struct reply *r)
{
	static char reason[64];
	json_t *j = body_json(r);
	json_t *e = json_object_get(j, "error");
	assert_non_null(e);
	assert_int_equal(json_integer_value(json_object_get(e, "code")), r->status);
	assert_non_null(json_string_value(json_object_get(e, "message")));
	assert_string_equal(json_string_value(json_object_get(e, "request_id")), r->cid);
	snprintf(reason, sizeof(reason), "%s", json_string_value(json_object_get(e, "reason")));
	json_decref(j);
	assert_string_equal(r->ctype, "application/json");
	return reason;
}

/* ---- tests ------------------------------------------------------------------------ */

static void test_route_params(void **state)
{
	struct reply r;
	json_t *j;

	request("GET", "/v1/things/a%20b", AUTH_GOOD, NULL, &r);
	assert_int_equal(r.status, 200);
	j = body_json(&r);
	assert_string_equal(json_string_value(json_object_get(j, "id")), "a b");
	assert_string_equal(json_string_value(json_object_get(j, "principal")), "IBMid-good");
	json_decref(j);

	/* A literal segment beats {id}, whatever the table order. */
	request("GET", "/v1/things/special", AUTH_GOOD, NULL, &r);
	assert_int_equal(r.status, 200);
	assert_non_null(strstr(r.body, "\"special\""));

	/* {key+} takes the rest of the path, decoded. */
	request("GET", "/v1/objects/bkt/dir/sub%2Fname.txt", AUTH_GOOD, NULL, &r);
	assert_int_equal(r.status, 200);
	j = body_json(&r);
	assert_string_equal(json_string_value(json_object_get(j, "bucket")), "bkt");
	assert_string_equal(json_string_value(json_object_get(j, "key")), "dir/sub/name.txt");
	json_decref(j);

	/* Strict escapes: a bad %XX or an encoded NUL is 400. */
	request("GET", "/v1/things/a%zz", AUTH_GOOD, NULL, &r);
	assert_int_equal(r.status, 400);
	assert_string_equal(error_reason(&r), "MALFORMED_PATH");
	request("GET", "/v1/things/a%00b", AUTH_GOOD, NULL, &r);
	assert_int_equal(r.status, 400);
	request("GET", "/v1/things/a%4", AUTH_GOOD, NULL, &r);
	assert_int_equal(r.status, 400);

	/* An empty segment matches no {param}; a trailing slash is another path. */
	request("GET", "/v1/things//", AUTH_GOOD, NULL, &r);
	assert_int_equal(r.status, 404);
	request("GET", "/v1/things/", AUTH_GOOD, NULL, &r);
	assert_int_equal(r.status, 404);
}

static void test_raw_path(void **state)
{
	struct reply r;
	request("GET", "/v1/raw/x%2Fy%41?foo=bar%20baz", AUTH_GOOD, NULL, &r);
	assert_int_equal(r.status, 200);
	json_t *j = body_json(&r);
	assert_string_equal(json_string_value(json_object_get(j, "path")), "/v1/raw/x%2Fy%41");
	assert_string_equal(json_string_value(json_object_get(j, "id")), "x/yA");
	json_decref(j);
}

static void test_404_405(void **state)
{
	struct reply r;
	int audits = calls.audit;

	request("GET", "/nowhere", AUTH_GOOD, NULL, &r);
	assert_int_equal(r.status, 404);
	assert_string_equal(error_reason(&r), "NOT_FOUND");
	assert_int_equal(calls.audit, audits + 1);
	assert_false(calls.audit_saw_route);

	request("DELETE", "/v1/things", AUTH_GOOD, NULL, &r);
	assert_int_equal(r.status, 405);
	assert_string_equal(error_reason(&r), "METHOD_NOT_ALLOWED");
	assert_string_equal(r.allow, "GET, POST");
	assert_int_equal(calls.audit, audits + 2);

	request("PUT", "/v1/things/x", AUTH_GOOD, NULL, &r);
	assert_int_equal(r.status, 405);
	assert_string_equal(r.allow, "GET, DELETE");

	/* A 404 without a body keeps the connection open for the next request. */
	CURL *c = curl_easy_init();
	char url[128];
	long st = 0, connects = -1;
	memset(&r, 0, sizeof(r));
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &r);
	snprintf(url, sizeof(url), "http://127.0.0.1:%u/nowhere", port);
	curl_easy_setopt(c, CURLOPT_URL, url);
	assert_int_equal(curl_easy_perform(c), CURLE_OK);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &st);
	assert_int_equal(st, 404);
	snprintf(url, sizeof(url), "http://127.0.0.1:%u/public/ping", port);
	curl_easy_setopt(c, CURLOPT_URL, url);
	assert_int_equal(curl_easy_perform(c), CURLE_OK);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &st);
	curl_easy_getinfo(c, CURLINFO_NUM_CONNECTS, &connects);
	assert_int_equal(st, 200);
	assert_int_equal(connects, 0);
	curl_easy_cleanup(c);
}

static void test_ladder_order(void **state)
{
	struct reply r;
	int authn = calls.authenticate, authz = calls.authorize, res = calls.resolve,
	    hnd = calls.handler, kept = calls.kept_released;

	/* No credentials: 401, nothing after authentication runs. */
	request("GET", "/v1/owned/x", NULL, NULL, &r);
	assert_int_equal(r.status, 401);
	assert_string_equal(error_reason(&r), "NO_TOKEN");
	assert_int_equal(calls.authenticate, authn + 1);
	assert_int_equal(calls.resolve, res);
	assert_int_equal(calls.authorize, authz);
	assert_int_equal(calls.handler, hnd);

	/* Denied: 403, the handler does not run. */
	request("GET", "/v1/owned/x", AUTH_DENIED, NULL, &r);
	assert_int_equal(r.status, 403);
	assert_string_equal(error_reason(&r), "FORBIDDEN");
	assert_int_equal(calls.resolve, res + 1);
	assert_int_equal(calls.authorize, authz + 1);
	assert_int_equal(calls.handler, hnd);

	/* The target does not exist: 404 before authorization. */
	request("GET", "/v1/owned/missing", AUTH_GOOD, NULL, &r);
	assert_int_equal(r.status, 404);
	assert_string_equal(error_reason(&r), "THING_NOT_FOUND");
	assert_int_equal(calls.resolve, res + 2);
	assert_int_equal(calls.authorize, authz + 1);
	assert_int_equal(calls.handler, hnd);

	/* All the way; the handler answers from what the resolver kept. */
	request("GET", "/v1/owned/x", AUTH_GOOD, NULL, &r);
	assert_int_equal(r.status, 200);
	assert_int_equal(calls.authorize, authz + 2);
	assert_int_equal(calls.handler, hnd + 1);
	assert_non_null(strstr(r.body, "\"kept\":\"row:x\""));

	/* Routes without a resolver keep nothing: the handler sees NULL. */
	request("GET", "/v1/things/y", AUTH_GOOD, NULL, &r);
	assert_int_equal(r.status, 200);
	assert_null(strstr(r.body, "kept"));

	/*
	 * Every kept object was released, the replaced one at once and the last
	 * with its request (denied ones too): two per resolve that found its
	 * target. The request is freed just after its answer is sent, so wait
	 * for that (bounded) rather than assume it happened.
	 */
	for (int i = 0; i < 200 && calls.kept_released < kept + 4; i++)
		usleep(10 * 1000);
	assert_int_equal(calls.kept_released, kept + 4);
}

static void test_public_skips_authn(void **state)
{
	struct reply r;
	int authn = calls.authenticate, authz = calls.authorize;
	request("GET", "/public/ping", NULL, NULL, &r);
	assert_int_equal(r.status, 200);
	assert_int_equal(calls.authenticate, authn);
	assert_int_equal(calls.authorize, authz);
}

static void test_errno_table(void **state)
{
	static const struct {
		int code;
		long status;
	} table[] = {{EINVAL, 400}, {EPERM, 401},  {EACCES, 403}, {ENOENT, 404},
		     {EEXIST, 409}, {E2BIG, 413},  {ERANGE, 416}, {ENOTSUP, 501},
		     {EBUSY, 503},  {ENOSPC, 503}, {EIO, 500},	  {EDOM, 500}};
	for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
		char path[64];
		struct reply r;
		snprintf(path, sizeof(path), "/v1/fail/%d", table[i].code);
		request("GET", path, AUTH_GOOD, NULL, &r);
		assert_int_equal(r.status, table[i].status);
		assert_string_equal(error_reason(&r), "FAKE_FAILURE");
		/* What the handler put in the response before failing is not sent. */
		assert_null(strstr(r.body, "must not be sent"));
	}
}

static void test_413_content_length(void **state)
{
	struct reply r;
	char big[100];
	int hnd = calls.handler, audits = calls.audit;

	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = 0;
	request("POST", "/v1/things", AUTH_GOOD, big, &r);
	assert_int_equal(r.status, 413);
	assert_string_equal(error_reason(&r), "PAYLOAD_TOO_LARGE");
	assert_int_equal(calls.handler, hnd);
	assert_int_equal(calls.audit, audits + 1);

	/* A big body announced with Expect: 100-continue is refused before it is sent. */
	size_t n = 4 << 20;
	char *huge = malloc(n + 1);
	assert_non_null(huge);
	memset(huge, 'y', n);
	huge[n] = 0;
	static const char *const expect[] = {"Authorization: Bearer good", "Expect: 100-continue",
					     NULL};
	request_on(port, false, "POST", "/v1/things", expect, huge, n, PLAIN, &r);
	free(huge);
	assert_int_equal(r.status, 413);
	assert_string_equal(error_reason(&r), "PAYLOAD_TOO_LARGE");

	/* A route without a body takes none. */
	request("GET", "/v1/things", AUTH_GOOD, "x", &r);
	assert_int_equal(r.status, 413);
}

static void test_413_chunked(void **state)
{
	struct reply r;
	char big[200];
	int hnd = calls.handler, audits = calls.audit;

	memset(big, 'x', sizeof(big));
	static const char *const h[] = {"Authorization: Bearer good", "Expect:", NULL};
	request_on(port, false, "POST", "/v1/things", h, big, sizeof(big), CHUNKED, &r);
	assert_int_equal(r.status, 413);
	assert_string_equal(error_reason(&r), "PAYLOAD_TOO_LARGE");
	assert_int_equal(calls.handler, hnd);
	assert_int_equal(calls.audit, audits + 1);

	/* A flood far past the limit is cut off (no answer), still audited once. */
	size_t n = 8 << 20;
	char *huge = malloc(n);
	assert_non_null(huge);
	memset(huge, 'z', n);
	audits = calls.audit;
	request_on(port, false, "POST", "/v1/things", h, huge, n, CHUNKED, &r);
	free(huge);
	assert_true(r.rc != CURLE_OK || r.status == 413);
	assert_int_equal(calls.handler, hnd);
	assert_int_equal(calls.audit, audits + 1);

	/* Within the limit, chunked is fine. */
	static const char small[] = "{\"a\": [1, 2, 3]}";
	request_on(port, false, "POST", "/v1/things", h, small, strlen(small), CHUNKED, &r);
	assert_int_equal(r.status, 201);
	assert_string_equal(r.body, "{\"a\":[1,2,3]}");
}

static void test_json_body(void **state)
{
	struct reply r;
	request("POST", "/v1/things", AUTH_GOOD, "{\"a\": 1}", &r);
	assert_int_equal(r.status, 201);
	assert_string_equal(r.body, "{\"a\":1}");

	request("POST", "/v1/things", AUTH_GOOD, "{\"a\": 1,\n \"b\": }", &r);
	assert_int_equal(r.status, 400);
	assert_string_equal(error_reason(&r), "MALFORMED_JSON");
	assert_non_null(strstr(r.body, "line 2 column"));

	request("POST", "/v1/things", AUTH_GOOD, "{\"a\": 1, \"a\": 2}", &r);
	assert_int_equal(r.status, 400);
	assert_non_null(strstr(r.body, "duplicate"));

	request("POST", "/v1/things", AUTH_GOOD, NULL, &r);
	assert_int_equal(r.status, 400);
	assert_string_equal(error_reason(&r), "MALFORMED_JSON");
}

static void test_form_and_query(void **state)
{
	struct reply r;
	request("POST", "/public/form?q=a+b%2Bc&uploads",
		(const char *const[]){"Content-Type: application/x-www-form-urlencoded", NULL},
		"grant_type=urn%3Aibm%3Aparams&apikey=a+b%20c&dup=1&dup=2", &r);
	assert_int_equal(r.status, 200);
	json_t *j = body_json(&r);
	assert_string_equal(json_string_value(json_object_get(j, "grant_type")), "urn:ibm:params");
	assert_string_equal(json_string_value(json_object_get(j, "apikey")), "a b c");
	assert_true(json_is_true(json_object_get(j, "dup_null")));
	assert_int_equal(json_integer_value(json_object_get(j, "dup_errno")), EINVAL);
	assert_true(json_is_true(json_object_get(j, "missing_null")));
	assert_int_equal(json_integer_value(json_object_get(j, "missing_errno")), ENOENT);
	assert_string_equal(json_string_value(json_object_get(j, "q")), "a b+c");
	assert_string_equal(json_string_value(json_object_get(j, "uploads")), "");
	json_decref(j);

	request("POST", "/public/form", NULL, "grant_type=%zz", &r);
	assert_int_equal(r.status, 200);
	j = body_json(&r);
	assert_true(json_is_null(json_object_get(j, "grant_type")));
	json_decref(j);
}

static void test_request_id(void **state)
{
	struct reply r;
	request("GET", "/public/ping", (const char *const[]){"correlation-id: abc-123_x.y:z", NULL},
		NULL, &r);
	assert_string_equal(r.cid, "abc-123_x.y:z");
	assert_string_equal(r.xrid, "abc-123_x.y:z");

	request("GET", "/public/ping", (const char *const[]){"x-request-id: req.42", NULL}, NULL,
		&r);
	assert_string_equal(r.cid, "req.42");
	assert_string_equal(r.xrid, "req.42");

	/* Invalid ones are replaced by a fresh UUIDv4. */
	char hdr[200];
	char longid[130];
	memset(longid, 'a', 129);
	longid[129] = 0;
	snprintf(hdr, sizeof(hdr), "x-request-id: %s", longid);
	const char *bad[][2] = {
		{hdr, NULL}, {"x-request-id: bad id!", NULL}, {"correlation-id: semi;colon", NULL}};
	for (size_t i = 0; i < 3; i++) {
		request("GET", "/public/ping", bad[i], NULL, &r);
		assert_int_equal(r.status, 200);
		assert_int_equal(strlen(r.cid), 36);
		assert_int_equal(r.cid[14], '4');
		assert_string_equal(r.cid, r.xrid);
	}
	/* 128 characters is still fine. */
	longid[128] = 0;
	snprintf(hdr, sizeof(hdr), "x-request-id: %s", longid);
	request("GET", "/public/ping", (const char *const[]){hdr, NULL}, NULL, &r);
	assert_string_equal(r.cid, longid);

	/* No id at all: made, and the handler sees the same one. */
	request("GET", "/v1/things/x", AUTH_GOOD, NULL, &r);
	json_t *j = body_json(&r);
	assert_string_equal(json_string_value(json_object_get(j, "request_id")), r.cid);
	json_decref(j);
}

static void test_audit_once(void **state)
{
	static const struct {
		const char *method, *path;
		const char *const *headers;
		const char *body;
		long status;
	} cases[] = {
		{"GET", "/v1/things/x", AUTH_GOOD, NULL, 200},
		{"GET", "/nowhere", AUTH_GOOD, NULL, 404},
		{"PATCH", "/v1/things", AUTH_GOOD, NULL, 405},
		{"GET", "/v1/things/x", NULL, NULL, 401},
		{"GET", "/v1/things/x", AUTH_DENIED, NULL, 403},
		{"POST", "/v1/things", AUTH_GOOD,
		 "[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30]",
		 413},
		{"GET", "/v1/owned/missing", AUTH_GOOD, NULL, 404},
		{"GET", "/v1/fail/22", AUTH_GOOD, NULL, 400},
		{"DELETE", "/v1/things/x", AUTH_GOOD, NULL, 204},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct reply r;
		int before = calls.audit;
		request(cases[i].method, cases[i].path, cases[i].headers, cases[i].body, &r);
		assert_int_equal(r.status, cases[i].status);
		assert_int_equal(calls.audit, before + 1);
		assert_int_equal(calls.audit_status, cases[i].status);
	}

	/* /healthz is never audited; a handler that audited itself is not audited twice. */
	struct reply r;
	int before = calls.audit;
	request("GET", "/healthz", NULL, NULL, &r);
	assert_int_equal(r.status, 200);
	assert_int_equal(calls.audit, before);
	request("POST", "/v1/audited", AUTH_GOOD, "{}", &r);
	assert_int_equal(r.status, 201);
	assert_int_equal(calls.audit, before);
}

static void test_audit_in_job(void **state)
{
	struct reply r;
	int ladder = calls.audit, injob = calls.audit_in_job;

	request("POST", "/v1/in-job", AUTH_GOOD, NULL, &r);
	assert_int_equal(r.status, 201);
	assert_int_equal(calls.audit_in_job, injob + 1);
	assert_int_equal(calls.audit, ladder);
	assert_string_equal(calls.audit_target_crn, "crn:v1:test:thing:new");

	/* The job's append fails: the request fails, and the ladder audits the failure. */
	calls.audit_in_job_fails = true;
	request("POST", "/v1/in-job", AUTH_GOOD, NULL, &r);
	calls.audit_in_job_fails = false;
	assert_int_equal(r.status, 500);
	assert_string_equal(error_reason(&r), "DB_DOWN");
	assert_int_equal(calls.audit_in_job, injob + 2);
	assert_int_equal(calls.audit, ladder + 1);
	assert_int_equal(calls.audit_status, 500);

	/* Without the hook, auditing in a job is refused rather than skipped. */
	struct http_server_config cfg = base_config();
	struct http_server *s = NULL;
	struct sealvm_err err = SEALVM_ERR_INIT;
	cfg.hooks.audit_in_job = NULL;
	assert_int_equal(http_server_start(&cfg, &s, &err), 0);
	request_on(http_server_port(s), false, "POST", "/v1/in-job", AUTH_GOOD, NULL, 0, PLAIN, &r);
	assert_int_equal(r.status, 501);
	assert_string_equal(error_reason(&r), "AUDIT_IN_JOB_UNAVAILABLE");
	http_server_stop(s);
}

static void test_audit_failure_503(void **state)
{
	struct reply r;
	calls.audit_fails = true;
	request("GET", "/v1/things/x", AUTH_GOOD, NULL, &r);
	assert_int_equal(r.status, 503);
	assert_string_equal(error_reason(&r), "AUDIT_UNAVAILABLE");
	assert_null(strstr(r.body, "\"id\""));
	/* Failures fail closed too, and the formatter of the service is used. */
	request("GET", "/nowhere", NULL, NULL, &r);
	assert_int_equal(r.status, 503);
	request("GET", "/xml/k", NULL, NULL, &r);
	assert_int_equal(r.status, 503);
	assert_non_null(strstr(r.body, "<Code>AUDIT_UNAVAILABLE</Code>"));
	calls.audit_fails = false;

	request("GET", "/v1/things/x", AUTH_GOOD, NULL, &r);
	assert_int_equal(r.status, 200);
}

static void test_format_error(void **state)
{
	struct reply r;
	int before = calls.format_error;
	request("GET", "/xml/some%20key", NULL, NULL, &r);
	assert_int_equal(r.status, 404);
	assert_string_equal(r.ctype, "application/xml");
	char want[512];
	snprintf(want, sizeof(want),
		 "<Error><Code>NoSuchKey</Code><RequestId>%s</RequestId></Error>", r.cid);
	assert_string_equal(r.body, want);
	assert_int_equal(calls.format_error, before + 1);

	/* 405 on a path of that service uses its formatter too. */
	request("POST", "/xml/k", NULL, NULL, &r);
	assert_int_equal(r.status, 405);
	assert_non_null(strstr(r.body, "<Code>METHOD_NOT_ALLOWED</Code>"));
	assert_string_equal(r.allow, "GET");
}

static void test_listen_rules(void **state)
{
	struct http_server_config cfg = base_config();
	struct http_server *s = NULL;
	struct sealvm_err err = SEALVM_ERR_INIT;

	cfg.listen = "0.0.0.0:0";
	assert_int_equal(http_server_start(&cfg, &s, &err), -EINVAL);
	assert_string_equal(err.reason, "NON_LOOPBACK_WITHOUT_TLS");
	assert_null(s);

	sealvm_err_clear(&err);
	cfg.listen = "[::]:0";
	assert_int_equal(http_server_start(&cfg, &s, &err), -EINVAL);
	assert_string_equal(err.reason, "NON_LOOPBACK_WITHOUT_TLS");

	static const char *const bad[] = {
		"127.0.0.1", "127.0.0.1:", "127.0.0.1:65536", "localhost:80",
		"::1:80",    "[::1]80",	   "127.0.0.1:8x",    ""};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		sealvm_err_clear(&err);
		cfg.listen = bad[i];
		assert_int_equal(http_server_start(&cfg, &s, &err), -EINVAL);
		assert_string_equal(err.reason, "LISTEN_INVALID");
	}

	sealvm_err_clear(&err);
	cfg.listen = "0.0.0.0:0";
	cfg.insecure_listen = true;
	assert_int_equal(http_server_start(&cfg, &s, &err), 0);
	assert_true(http_server_port(s) > 0);
	struct reply r;
	request_on(http_server_port(s), false, "GET", "/public/ping", NULL, NULL, 0, PLAIN, &r);
	assert_int_equal(r.status, 200);
	http_server_stop(s);

	/* IPv6 loopback (skipped quietly where the machine has none). */
	sealvm_err_clear(&err);
	cfg = base_config();
	cfg.listen = "[::1]:0";
	if (http_server_start(&cfg, &s, &err) == 0) {
		assert_true(http_server_port(s) > 0);
		http_server_stop(s);
	}

	/* TLS needs both files. */
	sealvm_err_clear(&err);
	cfg = base_config();
	cfg.tls_cert = "/nonexistent.pem";
	assert_int_equal(http_server_start(&cfg, &s, &err), -EINVAL);
	assert_string_equal(err.reason, "TLS_INCOMPLETE");
}

static void test_route_table_checks(void **state)
{
	static const struct http_route dup[] = {
		{"GET", "/a/{x}", h_list, NULL, "a", "a", 0, 0},
		{"GET", "/a/{y}", h_list, NULL, "a", "a", 0, 0},
	};
	static const struct http_route no_action[] = {{"GET", "/a", h_list, NULL, NULL, "a", 0, 0}};
	static const struct http_route greedy_mid[] = {
		{"GET", "/a/{x+}/b", h_list, NULL, "a", "a", 0, HTTP_ROUTE_PUBLIC}};
	static const struct http_route too_many[] = {
		{"GET", "/{a}/{b}/{c}/{d}/{e}", h_list, NULL, "a", "a", 0, 0}};
	const struct http_route *tables[] = {dup, no_action, greedy_mid, too_many};
	size_t sizes[] = {2, 1, 1, 1};
	for (size_t i = 0; i < 4; i++) {
		struct http_service svc = {"bad", tables[i], sizes[i], NULL, NULL};
		struct http_server_config cfg = base_config();
		struct http_server *s = NULL;
		struct sealvm_err err = SEALVM_ERR_INIT;
		cfg.services = &svc;
		cfg.n_services = 1;
		assert_int_equal(http_server_start(&cfg, &s, &err), -EINVAL);
		assert_null(s);
	}

	struct http_server_config cfg = base_config();
	struct http_server *s = NULL;
	struct sealvm_err err = SEALVM_ERR_INIT;
	cfg.hooks.audit = NULL;
	assert_int_equal(http_server_start(&cfg, &s, &err), -EINVAL);
	assert_string_equal(err.reason, "HOOKS_MISSING");
}

/* A GET of @path on its own thread, for tests that stop the server under it. */
struct client_arg {
	uint16_t port;
	const char *path;
	struct reply r;
};

static void *client_main(void *p)
{
	struct client_arg *a = p;
	request_on(a->port, false, "GET", a->path, AUTH_GOOD, NULL, 0, PLAIN, &a->r);
	return NULL;
}

static void test_graceful_stop(void **state)
{
	struct http_server_config cfg = base_config();
	struct http_server *s = NULL;
	struct sealvm_err err = SEALVM_ERR_INIT;
	pthread_t t;

	assert_int_equal(http_server_start(&cfg, &s, &err), 0);
	struct client_arg a = {.port = http_server_port(s), .path = "/v1/slow"};
	calls.slow_entered = false;
	assert_int_equal(pthread_create(&t, NULL, client_main, &a), 0);
	while (!calls.slow_entered)
		usleep(1000);
	http_server_stop(s); /* must wait for the slow handler's answer to go out */
	pthread_join(t, NULL);
	assert_int_equal(a.r.rc, CURLE_OK);
	assert_int_equal(a.r.status, 200);
	assert_string_equal(a.r.body, "{\"slow\":\"done\"}");

	/* Once stopped, nothing listens there. */
	struct reply r;
	request_on(a.port, false, "GET", "/public/ping", NULL, NULL, 0, PLAIN, &r);
	assert_int_not_equal(r.rc, CURLE_OK);
}

/*
 * Suspended connections: a read's answer waits for its event, the stop waits
 * for a suspended request (libmicrohttpd must not free it under its
 * completion), and a failed event is a 503 — the handler's answer never goes out.
 */
static void test_async_audit(void **state)
{
	struct http_server_config cfg = base_config();
	struct http_server *s = NULL;
	struct sealvm_err err = SEALVM_ERR_INIT;
	struct reply r;
	pthread_t t;

	int before = audit_async_calls;
	request("GET", "/v1/things/a1", AUTH_GOOD, NULL, &r);
	assert_int_equal(r.status, 200);
	assert_int_equal(audit_async_calls, before + 1);
	/* A route that may wait for a write runs on the pool, with the synchronous hook. */
	before = audit_async_calls;
	request("GET", "/v1/things", AUTH_GOOD, NULL, &r);
	assert_int_equal(r.status, 200);
	assert_int_equal(audit_async_calls, before);
	/* Failures on a non-blocking route are recorded asynchronously too. */
	before = audit_async_calls;
	request("GET", "/v1/quick", NULL, NULL, &r);
	assert_int_equal(r.status, 401);
	assert_int_equal(audit_async_calls, before + 1);

	calls.audit_fails = true;
	request("GET", "/v1/things/a2", AUTH_GOOD, NULL, &r);
	calls.audit_fails = false;
	assert_int_equal(r.status, 503);
	assert_string_equal(error_reason(&r), "AUDIT_UNAVAILABLE");
	assert_null(strstr(r.body, "a2"));

	/* A stop while an event is pending waits for it, and the answer goes out. */
	assert_int_equal(http_server_start(&cfg, &s, &err), 0);
	struct client_arg a = {.port = http_server_port(s), .path = "/v1/quick"};
	audit_delayed_entered = false;
	audit_delay = true;
	assert_int_equal(pthread_create(&t, NULL, client_main, &a), 0);
	while (!audit_delayed_entered)
		usleep(1000);
	http_server_stop(s);
	audit_delay = false;
	pthread_join(t, NULL);
	assert_int_equal(a.r.rc, CURLE_OK);
	assert_int_equal(a.r.status, 200);
	assert_string_equal(a.r.body, "{\"status\":\"ok\"}");
}

#define N_THREADS 8
#define PER_THREAD 25

static atomic_int concurrent_ok;

static void *hammer(void *p)
{
	CURL *c = curl_easy_init();
	char url[128];
	struct reply *r = malloc(sizeof(*r));
	struct curl_slist *hl = curl_slist_append(NULL, "Authorization: Bearer good");

	for (int i = 0; i < PER_THREAD; i++) {
		memset(r, 0, sizeof(*r));
		snprintf(url, sizeof(url), "http://127.0.0.1:%u/v1/things/t%d-%d", port,
			 (int)(intptr_t)p, i);
		curl_easy_setopt(c, CURLOPT_URL, url);
		curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
		curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
		curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
		curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
		/* Half on fresh connections, half kept alive. */
		curl_easy_setopt(c, CURLOPT_FORBID_REUSE, (long)(i % 2));
		if (curl_easy_perform(c) == CURLE_OK) {
			long st = 0;
			char want[64];
			curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &st);
			snprintf(want, sizeof(want), "\"id\":\"t%d-%d\"", (int)(intptr_t)p, i);
			if (st == 200 && strstr(r->body, want))
				concurrent_ok++;
		}
	}
	curl_slist_free_all(hl);
	curl_easy_cleanup(c);
	free(r);
	return NULL;
}

static void test_concurrent(void **state)
{
	pthread_t t[N_THREADS];
	concurrent_ok = 0;
	for (intptr_t i = 0; i < N_THREADS; i++)
		assert_int_equal(pthread_create(&t[i], NULL, hammer, (void *)i), 0);
	for (int i = 0; i < N_THREADS; i++)
		pthread_join(t[i], NULL);
	assert_int_equal(concurrent_ok, N_THREADS * PER_THREAD);
}

static void test_access_log_no_secrets(void **state)
{
	struct http_server_config cfg = base_config();
	struct http_server *s = NULL;
	struct sealvm_err err = SEALVM_ERR_INIT;
	char path[] = "/tmp/sealvm-http-log-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	unlink(path);

	cfg.access_log = true;
	assert_int_equal(http_server_start(&cfg, &s, &err), 0);
	int saved = dup(STDERR_FILENO);
	assert_true(saved >= 0);
	fflush(stderr);
	dup2(fd, STDERR_FILENO);

	struct reply r;
	static const char *const h[] = {"Authorization: Bearer goodSECRETTOKEN123", NULL};
	request_on(http_server_port(s), false, "GET", "/v1/things/x?X-Amz-Signature=SIGSECRET456",
		   h, NULL, 0, PLAIN, &r);
	request_on(http_server_port(s), false, "POST", "/v1/things", h, "{\"BODYSECRET789\":1}", 19,
		   PLAIN, &r);
	request_on(http_server_port(s), false, "GET", "/v1/things/x",
		   (const char *const[]){"Authorization: Bearer badSECRETTOKEN000", NULL}, NULL, 0,
		   PLAIN, &r);
	http_server_stop(s); /* the last lines are written before stop returns */

	fflush(stderr);
	dup2(saved, STDERR_FILENO);
	close(saved);
	char buf[8192];
	ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
	close(fd);
	assert_true(n > 0);
	buf[n] = 0;
	assert_null(strstr(buf, "SECRET"));
	assert_null(strstr(buf, "Bearer"));
	assert_null(strstr(buf, "X-Amz"));
	assert_non_null(strstr(buf, "path=/v1/things/x status=200"));
	assert_non_null(strstr(buf, "principal=IBMid-good"));
	assert_non_null(strstr(buf, "status=201"));
	assert_non_null(strstr(buf, "status=401"));
	assert_non_null(strstr(buf, "remote=127.0.0.1"));
	int lines = 0;
	for (char *p = buf; (p = strstr(p, "access id=")); p++)
		lines++;
	assert_int_equal(lines, 3);
}

static void test_header_too_large(void **state)
{
	/* Answered by libmicrohttpd itself, before our code runs: only check it is refused. */
	size_t n = 64 * 1024;
	char *h = malloc(n + 32);
	assert_non_null(h);
	strcpy(h, "X-Big: ");
	memset(h + 7, 'a', n);
	h[7 + n] = 0;
	struct reply r;
	int before = calls.handler;
	request("GET", "/public/ping", (const char *const[]){h, NULL}, NULL, &r);
	free(h);
	assert_true(r.status >= 400 || r.rc != CURLE_OK);
	assert_int_equal(calls.handler, before);

	/* 8 KiB of headers are fine with the 16 KiB default. */
	h = malloc(8 * 1024 + 32);
	strcpy(h, "X-Big: ");
	memset(h + 7, 'a', 8 * 1024);
	h[7 + 8 * 1024] = 0;
	request("GET", "/public/ping", (const char *const[]){h, NULL}, NULL, &r);
	free(h);
	assert_int_equal(r.status, 200);
}

static void test_tls(void **state)
{
	char dir[] = "/tmp/sealvm-http-tls-XXXXXX";
	char cmd[1024], cert[128], key[128];
	assert_non_null(mkdtemp(dir));
	snprintf(cert, sizeof(cert), "%s/cert.pem", dir);
	snprintf(key, sizeof(key), "%s/key.pem", dir);
	snprintf(cmd, sizeof(cmd),
		 "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 "
		 "-subj /CN=localhost -keyout %s -out %s >/dev/null 2>&1",
		 key, cert);
	if (system(cmd) != 0) {
		snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
		(void)!system(cmd);
		skip();
	}

	struct http_server_config cfg = base_config();
	struct http_server *s = NULL;
	struct sealvm_err err = SEALVM_ERR_INIT;
	cfg.tls_cert = cert;
	cfg.tls_key = key;
	/* With TLS a non-loopback listener is allowed. */
	cfg.listen = "0.0.0.0:0";
	int r = http_server_start(&cfg, &s, &err);
	if (r < 0)
		fail_msg("TLS start: %s: %s", err.reason, err.message);
	struct reply rep;
	request_on(http_server_port(s), true, "GET", "/v1/things/tls", AUTH_GOOD, NULL, 0, PLAIN,
		   &rep);
	assert_int_equal(rep.rc, CURLE_OK);
	assert_int_equal(rep.status, 200);
	assert_non_null(strstr(rep.body, "\"id\":\"tls\""));
	/* Plain HTTP to a TLS port gets no answer from us. */
	request_on(http_server_port(s), false, "GET", "/public/ping", NULL, NULL, 0, PLAIN, &rep);
	assert_int_not_equal(rep.status, 200);
	http_server_stop(s);

	sealvm_err_clear(&err);
	cfg.tls_key = "/nonexistent-key.pem";
	assert_true(http_server_start(&cfg, &s, &err) < 0);

	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	(void)!system(cmd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_route_params),
		cmocka_unit_test(test_raw_path),
		cmocka_unit_test(test_404_405),
		cmocka_unit_test(test_ladder_order),
		cmocka_unit_test(test_public_skips_authn),
		cmocka_unit_test(test_errno_table),
		cmocka_unit_test(test_413_content_length),
		cmocka_unit_test(test_413_chunked),
		cmocka_unit_test(test_json_body),
		cmocka_unit_test(test_form_and_query),
		cmocka_unit_test(test_request_id),
		cmocka_unit_test(test_audit_once),
		cmocka_unit_test(test_audit_in_job),
		cmocka_unit_test(test_audit_failure_503),
		cmocka_unit_test(test_format_error),
		cmocka_unit_test(test_listen_rules),
		cmocka_unit_test(test_route_table_checks),
		cmocka_unit_test(test_graceful_stop),
		cmocka_unit_test(test_concurrent),
		cmocka_unit_test(test_access_log_no_secrets),
		cmocka_unit_test(test_header_too_large),
		cmocka_unit_test(test_tls),
	};
	/* The asynchronous run adds what only it has. */
	struct CMUnitTest async_tests[ELEMENTSOF(tests) + 1];
	memcpy(async_tests, tests, sizeof(tests));
	async_tests[ELEMENTSOF(tests)] = (struct CMUnitTest)cmocka_unit_test(test_async_audit);
	/*
	 * Twice: every ladder on libmicrohttpd's threads with a synchronous audit
	 * hook; then with an asynchronous one, where non-blocking routes suspend
	 * their connection for the event and the others run on the handler pool.
	 */
	int failed = cmocka_run_group_tests_name("synchronous audit", tests, group_setup,
						 group_teardown);
	failed +=
		_cmocka_run_group_tests("asynchronous audit, handler pool", async_tests,
					ELEMENTSOF(async_tests), group_setup_async, group_teardown);
	return failed;
}
