// SPDX-License-Identifier: Apache-2.0
/*
 * Unit tests of lib/audit: the CADF event, the hash chain and what verify catches,
 * and the account-scoped query. Plain SQLite connections with the audit
 * migrations applied by hand, so these tests do not depend on the db layer.
 */
#include <errno.h>
#include <regex.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/crypto.h>
#include <openssl/hmac.h>

#include "sealvm/audit.h"

static const unsigned char KEY[AUDIT_CHAIN_KEY_SIZE] = {
	0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa,
	0xbb, 0xcc, 0xdd, 0xee, 0xff, 0x10, 0x21, 0x32, 0x43, 0x54, 0x65,
	0x76, 0x87, 0x98, 0xa9, 0xba, 0xcb, 0xdc, 0xed, 0xfe, 0x0f,
};

/*
 * Allocation-failure injection: jansson, SQLite and OpenSSL allocate through
 * these, and the fail_at-th allocation after arming fails. Single-threaded.
 */
static long fail_at = -1;
static bool injected;
enum { IN_JANSSON = 1, IN_SQLITE = 2, IN_OPENSSL = 4, IN_ALL = 7 };
static unsigned inject_into = IN_ALL;

static bool should_fail_in(unsigned where)
{
	if (fail_at < 0 || !(inject_into & where))
		return false;
	if (fail_at-- == 0) {
		injected = true;
		return true;
	}
	return false;
}

static void arm(long n)
{
	injected = false;
	fail_at = n;
}

static void disarm(void)
{
	fail_at = -1;
}

static void *j_malloc(size_t n)
{
	return should_fail_in(IN_JANSSON) ? NULL : malloc(n);
}

static void *o_malloc(size_t n, const char *file, int line)
{
	return should_fail_in(IN_OPENSSL) ? NULL : malloc(n);
}

static void *o_realloc(void *p, size_t n, const char *file, int line)
{
	return should_fail_in(IN_OPENSSL) ? NULL : realloc(p, n);
}

static void o_free(void *p, const char *file, int line)
{
	free(p);
}

/* SQLite wants the size back: a 16-byte header keeps it (and the alignment). */
static void *s_malloc(int n)
{
	if (should_fail_in(IN_SQLITE))
		return NULL;
	size_t *b = malloc((size_t)n + 16);
	if (!b)
		return NULL;
	b[0] = (size_t)n;
	return (char *)b + 16;
}

static void s_free(void *p)
{
	if (p)
		free((char *)p - 16);
}

static void *s_realloc(void *p, int n)
{
	if (!p)
		return s_malloc(n);
	if (should_fail_in(IN_SQLITE))
		return NULL;
	size_t *b = realloc((char *)p - 16, (size_t)n + 16);
	if (!b)
		return NULL;
	b[0] = (size_t)n;
	return (char *)b + 16;
}

static int s_size(void *p)
{
	return p ? (int)*(size_t *)((char *)p - 16) : 0;
}

static int s_roundup(int n)
{
	return (n + 7) & ~7;
}

static int s_init(void *x)
{
	return 0;
}

static void s_shutdown(void *x)
{
}

static void install_allocators(void)
{
	static const sqlite3_mem_methods m = {s_malloc,	 s_free, s_realloc,  s_size,
					      s_roundup, s_init, s_shutdown, NULL};
	assert_int_equal(CRYPTO_set_mem_functions(o_malloc, o_realloc, o_free), 1);
	json_set_alloc_funcs(j_malloc, free);
	sqlite3_shutdown();
	assert_int_equal(sqlite3_config(SQLITE_CONFIG_MALLOC, &m), SQLITE_OK);
	assert_int_equal(sqlite3_initialize(), SQLITE_OK);
}

static void exec_ok(sqlite3 *db, const char *sql)
{
	char *msg = NULL;
	int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
	if (rc != SQLITE_OK)
		fail_msg("%s: %s", sql, msg ? msg : "?");
	sqlite3_free(msg);
}

static sqlite3 *open_db(const char *path)
{
	sqlite3 *db = NULL;
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	exec_ok(db, "BEGIN");
	for (size_t i = 0; i < audit_n_migrations; i++) {
		assert_string_equal(audit_migrations[i].owner, "audit");
		assert_int_equal(audit_migrations[i].version, (int)i + 1);
		exec_ok(db, audit_migrations[i].sql);
	}
	exec_ok(db, "COMMIT");
	return db;
}

static struct sealvm_principal user(const char *account)
{
	struct sealvm_principal p = {.kind = PRINCIPAL_USER};
	snprintf(p.iam_id, sizeof(p.iam_id), "IBMid-%s-owner", account);
	snprintf(p.account_id, sizeof(p.account_id), "%s", account);
	snprintf(p.name, sizeof(p.name), "owner@%s.example", account);
	snprintf(p.credential_type, sizeof(p.credential_type), "token");
	return p;
}

static struct audit_event base_event(void)
{
	return (struct audit_event){
		.action = "iam-identity.account-serviceid.create",
		.outcome = AUDIT_SUCCESS,
		.status = 201,
		.reason_type = "Created",
		.target_id = "crn:v1:sealvm:public:iam-identity::a/acct1::serviceid:sid1",
		.target_name = "image-reader",
		.target_type = "iam-identity/serviceid",
		.account_id = "acct1",
		.correlation_id = "req-1",
		.host_address = "127.0.0.1",
		.user_agent = "sealvm/0.1",
		.time_ms = INT64_C(1700000000123),
	};
}

static json_t *path(json_t *j, const char *a, const char *b)
{
	j = json_object_get(j, a);
	return b ? json_object_get(j, b) : j;
}

static const char *str_at(json_t *j, const char *a, const char *b)
{
	return json_string_value(path(j, a, b));
}

/* ---- the event ---- */

static void test_event_fields(void **state)
{
	struct sealvm_principal p = user("acct1");
	struct audit_event ev = base_event();
	ev.initiator = &p;
	json_t *j = audit_event_json(&ev);
	assert_non_null(j);

	assert_string_equal(str_at(j, "eventTime", NULL), "2023-11-14T22:13:20.12+0000");
	regex_t re;
	assert_int_equal(regcomp(&re,
				 "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{2}"
				 "\\+0000$",
				 REG_EXTENDED | REG_NOSUB),
			 0);
	assert_int_equal(regexec(&re, str_at(j, "eventTime", NULL), 0, NULL, 0), 0);
	assert_string_equal(str_at(j, "action", NULL), "iam-identity.account-serviceid.create");
	assert_string_equal(str_at(j, "outcome", NULL), "success");
	assert_string_equal(str_at(j, "severity", NULL), "normal");
	assert_int_equal(json_integer_value(path(j, "reason", "reasonCode")), 201);
	assert_string_equal(str_at(j, "reason", "reasonType"), "Created");
	assert_null(path(j, "reason", "reasonForFailure"));
	assert_string_equal(str_at(j, "initiator", "id"), "IBMid-acct1-owner");
	assert_string_equal(str_at(j, "initiator", "name"), "owner@acct1.example");
	assert_string_equal(str_at(j, "initiator", "typeURI"), "service/security/account/user");
	assert_string_equal(
		json_string_value(json_object_get(path(j, "initiator", "credential"), "type")),
		"token");
	assert_string_equal(
		json_string_value(json_object_get(path(j, "initiator", "host"), "address")),
		"127.0.0.1");
	assert_string_equal(
		json_string_value(json_object_get(path(j, "initiator", "host"), "agent")),
		"sealvm/0.1");
	assert_string_equal(str_at(j, "target", "id"),
			    "crn:v1:sealvm:public:iam-identity::a/acct1::serviceid:sid1");
	assert_string_equal(str_at(j, "target", "name"), "image-reader");
	assert_string_equal(str_at(j, "target", "typeURI"), "iam-identity/serviceid");
	assert_string_equal(str_at(j, "observer", "name"), "ActivityTracker");
	assert_string_equal(str_at(j, "correlationId", NULL), "req-1");
	assert_string_equal(str_at(j, "accountId", NULL), "acct1");
	assert_true(json_is_false(json_object_get(j, "dataEvent")));
	assert_string_equal(str_at(j, "message", NULL),
			    "iam-identity: create image-reader success");
	assert_null(json_object_get(j, "logSourceCRN"));
	assert_null(json_object_get(j, "requestData"));
	assert_null(json_object_get(j, "responseData"));
	json_decref(j);

	/* hundredths are truncated, and midnight of the epoch formats */
	ev.time_ms = 1;
	j = audit_event_json(&ev);
	assert_string_equal(str_at(j, "eventTime", NULL), "1970-01-01T00:00:00.00+0000");
	json_decref(j);
	ev.time_ms = INT64_C(1700000000999);
	j = audit_event_json(&ev);
	assert_string_equal(str_at(j, "eventTime", NULL), "2023-11-14T22:13:20.99+0000");
	json_decref(j);
	/* 0 = now */
	ev.time_ms = 0;
	j = audit_event_json(&ev);
	assert_int_equal(regexec(&re, str_at(j, "eventTime", NULL), 0, NULL, 0), 0);
	char year[16];
	struct tm tm;
	gmtime_r(&(time_t){time(NULL)}, &tm);
	snprintf(year, sizeof(year), "%04d", 1900 + tm.tm_year);
	assert_memory_equal(str_at(j, "eventTime", NULL), year, 4);
	json_decref(j);
	regfree(&re);
}

static void test_event_nothing_not_given(void **state)
{
	struct audit_event ev = {.action = "kms.secrets.list", .status = 200};
	json_t *j = audit_event_json(&ev);
	assert_non_null(j);
	/* exactly these members */
	const char *want[] = {"eventTime", "action",   "outcome",   "severity", "reason",
			      "initiator", "observer", "dataEvent", "message"};
	assert_int_equal(json_object_size(j), ELEMENTSOF(want));
	for (size_t i = 0; i < ELEMENTSOF(want); i++)
		assert_non_null(json_object_get(j, want[i]));
	assert_int_equal(json_object_size(json_object_get(j, "reason")), 1);
	json_t *ini = json_object_get(j, "initiator");
	assert_int_equal(json_object_size(ini), 1);
	assert_string_equal(str_at(j, "initiator", "typeURI"), "service/security/unauthenticated");
	assert_string_equal(str_at(j, "message", NULL), "kms: list success");
	json_decref(j);
}

static void test_event_severity_table(void **state)
{
	static const struct {
		int status;
		const char *severity;
	} table[] = {
		{401, "critical"}, {403, "critical"}, {503, "critical"}, {507, "critical"},
		{400, "warning"},  {409, "warning"},  {424, "warning"},	 {500, "warning"},
		{502, "warning"},  {504, "warning"},  {505, "warning"},	 {200, "normal"},
		{201, "normal"},   {204, "normal"},   {202, "normal"},	 {404, "normal"},
		{405, "normal"},   {413, "normal"},   {429, "normal"},	 {501, "normal"},
	};
	struct audit_event ev = base_event();
	for (size_t i = 0; i < ELEMENTSOF(table); i++) {
		ev.status = table[i].status;
		ev.outcome = table[i].status >= 400 ? AUDIT_FAILURE : AUDIT_SUCCESS;
		json_t *j = audit_event_json(&ev);
		assert_non_null(j);
		if (strcmp(str_at(j, "severity", NULL), table[i].severity) != 0)
			fail_msg("status %d: severity %s, want %s", table[i].status,
				 str_at(j, "severity", NULL), table[i].severity);
		assert_int_equal(json_integer_value(path(j, "reason", "reasonCode")),
				 table[i].status);
		json_decref(j);
	}
	/* an explicit severity wins (KP: kms.secrets.delete is critical on success) */
	ev = base_event();
	ev.action = "kms.secrets.delete";
	ev.severity = "critical";
	json_t *j = audit_event_json(&ev);
	assert_string_equal(str_at(j, "severity", NULL), "critical");
	json_decref(j);
	ev.severity = "loud";
	assert_null(audit_event_json(&ev));
}

static void test_event_principals(void **state)
{
	struct audit_event ev = base_event();
	struct sealvm_principal p = {.kind = PRINCIPAL_SERVICE_ID};
	strcpy(p.iam_id, "iam-ServiceId-1234");
	strcpy(p.name, "image-reader");
	strcpy(p.credential_type, "apikey");
	ev.initiator = &p;
	json_t *j = audit_event_json(&ev);
	assert_string_equal(str_at(j, "initiator", "typeURI"),
			    "service/security/account/serviceid");
	assert_string_equal(str_at(j, "initiator", "id"), "iam-ServiceId-1234");
	assert_string_equal(
		json_string_value(json_object_get(path(j, "initiator", "credential"), "type")),
		"apikey");
	json_decref(j);

	struct sealvm_principal s = {.kind = PRINCIPAL_SERVICE};
	strcpy(s.iam_id, "crn:v1:sealvm:public:iam-identity::::serviceid:block-storage");
	strcpy(s.service_name, "block-storage");
	strcpy(s.credential_type, "s2s-authorization");
	ev.initiator = &s;
	j = audit_event_json(&ev);
	assert_string_equal(str_at(j, "initiator", "typeURI"), "service/security/clientid");
	assert_string_equal(str_at(j, "initiator", "name"), "block-storage");
	json_decref(j);

	struct sealvm_principal none = {.kind = PRINCIPAL_NONE};
	strcpy(none.iam_id, "ignored");
	ev.initiator = &none;
	j = audit_event_json(&ev);
	assert_string_equal(str_at(j, "initiator", "typeURI"), "service/security/unauthenticated");
	assert_null(path(j, "initiator", "id"));
	assert_null(path(j, "initiator", "credential"));
	json_decref(j);

	/* a user without a credential type: no empty credential object */
	struct sealvm_principal u = user("acct1");
	u.credential_type[0] = 0;
	ev.initiator = &u;
	ev.host_address = NULL;
	ev.user_agent = NULL;
	j = audit_event_json(&ev);
	assert_null(path(j, "initiator", "credential"));
	assert_null(path(j, "initiator", "host"));
	json_decref(j);

	/* an unterminated name array is read only up to its size */
	memset(u.name, 'x', sizeof(u.name));
	j = audit_event_json(&ev);
	assert_int_equal(strlen(str_at(j, "initiator", "name")), sizeof(u.name));
	json_decref(j);

	struct sealvm_principal bad = {.kind = (enum principal_kind)42};
	ev.initiator = &bad;
	assert_null(audit_event_json(&ev));
}

static void test_event_failure_reason(void **state)
{
	struct audit_event ev = base_event();
	ev.failure = "the service ID already has 20 API keys";
	json_t *j = audit_event_json(&ev); /* success: the failure text is not shown */
	assert_null(path(j, "reason", "reasonForFailure"));
	json_decref(j);
	ev.outcome = AUDIT_FAILURE;
	ev.status = 409;
	ev.reason_type = "Conflict";
	j = audit_event_json(&ev);
	assert_string_equal(str_at(j, "reason", "reasonForFailure"),
			    "the service ID already has 20 API keys");
	assert_string_equal(str_at(j, "outcome", NULL), "failure");
	assert_string_equal(str_at(j, "message", NULL),
			    "iam-identity: create image-reader failure");
	json_decref(j);
	ev.outcome = AUDIT_PENDING;
	ev.status = 202;
	j = audit_event_json(&ev);
	assert_string_equal(str_at(j, "outcome", NULL), "pending");
	assert_null(path(j, "reason", "reasonForFailure"));
	json_decref(j);
}

static void test_event_data_deep_copied(void **state)
{
	struct audit_event ev = base_event();
	json_t *req = json_pack("{s:s, s:{s:i}}", "name", "image-reader", "nested", "n", 1);
	json_t *resp = json_pack("{s:s}", "id", "sid1");
	ev.request_data = req;
	ev.response_data = resp;
	ev.data_event = true;
	json_t *j = audit_event_json(&ev);
	assert_true(json_equal(json_object_get(j, "requestData"), req));
	assert_true(json_equal(json_object_get(j, "responseData"), resp));
	assert_ptr_not_equal(json_object_get(j, "requestData"), req);
	assert_ptr_not_equal(path(j, "requestData", "nested"), json_object_get(req, "nested"));
	assert_true(json_is_true(json_object_get(j, "dataEvent")));
	/* changing the caller's data later does not change the event */
	json_object_set_new(json_object_get(req, "nested"), "n", json_integer(2));
	assert_int_equal(json_integer_value(json_object_get(path(j, "requestData", "nested"), "n")),
			 1);
	assert_int_equal(req->refcount, 1);
	json_decref(j);
	json_decref(req);
	json_decref(resp);
}

static void test_event_invalid(void **state)
{
	struct audit_event ev = base_event();
	const char *bad_actions[] = {NULL,     "",	 "kms",	    ".kms.x",
				     "kms.x.", "kms..x", "kms.x y", "kms.%.list"};
	for (size_t i = 0; i < ELEMENTSOF(bad_actions); i++) {
		ev.action = bad_actions[i];
		assert_null(audit_event_json(&ev));
	}
	ev = base_event();
	ev.status = 99;
	assert_null(audit_event_json(&ev));
	ev.status = 600;
	assert_null(audit_event_json(&ev));
	ev = base_event();
	ev.outcome = (enum audit_outcome)7;
	assert_null(audit_event_json(&ev));
	ev = base_event();
	ev.target_name = "bad \xff utf8";
	assert_null(audit_event_json(&ev));
	ev.target_name = "caf\xc3\xa9"; /* valid UTF-8: escaped as \u00e9 in canonical text */
	json_t *j = audit_event_json(&ev);
	assert_non_null(j);
	json_decref(j);
	ev.time_ms = -5;
	assert_null(audit_event_json(&ev));
	assert_null(audit_event_json(NULL));
}

/* ---- append + verify ---- */

struct fixture {
	sqlite3 *db;
	char path[64];
};

static int setup_db(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	snprintf(f->path, sizeof(f->path), "/tmp/sealvm-audit-test-XXXXXX");
	int fd = mkstemp(f->path);
	assert_true(fd >= 0);
	close(fd);
	unlink(f->path);
	f->db = open_db(f->path);
	*state = f;
	return 0;
}

static int teardown_db(void **state)
{
	struct fixture *f = *state;
	sqlite3_close(f->db);
	char p[80];
	unlink(f->path);
	snprintf(p, sizeof(p), "%s-journal", f->path);
	unlink(p);
	snprintf(p, sizeof(p), "%s-wal", f->path);
	unlink(p);
	snprintf(p, sizeof(p), "%s-shm", f->path);
	unlink(p);
	free(f);
	return 0;
}

static const char *ACCOUNTS[] = {"acct1", "acct2", "acct3"};
static const char *ACTIONS[] = {"kms.secrets.create", "kms.secrets.wrap",
				"iam-identity.account-serviceid.create",
				"cloud-object-storage.object.read"};
#define T0 INT64_C(1700000000000)

/* Event i of the standard 200: account i%3, action i%4, target per 5, failure every 7th. */
static void append_n(sqlite3 *db, int from, int to)
{
	exec_ok(db, "BEGIN");
	for (int i = from; i < to; i++) {
		struct sealvm_principal p = user(ACCOUNTS[i % 3]);
		char target[64];
		snprintf(target, sizeof(target), "crn:target:%d", i % 5);
		struct audit_event ev = base_event();
		ev.action = ACTIONS[i % 4];
		ev.account_id = ACCOUNTS[i % 3];
		ev.initiator = &p;
		ev.target_id = target;
		ev.time_ms = T0 + (int64_t)i * 1000;
		if (i % 7 == 0) {
			ev.outcome = AUDIT_FAILURE;
			ev.status = 403;
			ev.failure = "denied";
		}
		struct sealvm_err err = SEALVM_ERR_INIT;
		int64_t seq = 0;
		int r = audit_append(db, &ev, KEY, &seq, &err);
		if (r < 0)
			fail_msg("append %d: %s %s", i, err.reason, err.message);
		assert_int_equal(seq, i + 1);
	}
	exec_ok(db, "COMMIT");
}

static int verify(sqlite3 *db, int64_t cp_seq, const unsigned char *cp_head,
		  struct audit_verify_result *res)
{
	struct sealvm_err err = SEALVM_ERR_INIT;
	int r = audit_verify(db, KEY, cp_seq, cp_head, res, &err);
	if (r == 0) {
		assert_true(res->ok);
		assert_int_equal(res->first_bad_seq, 0);
		assert_false(sealvm_err_isset(&err));
	} else if (r == -EBADMSG) {
		assert_false(res->ok);
		assert_true(res->first_bad_seq > 0);
		assert_true(res->why[0] != 0);
		assert_string_equal(err.reason, "AUDIT_CHAIN_BROKEN");
	}
	return r;
}

static void test_append_verify_ok(void **state)
{
	struct fixture *f = *state;
	struct audit_verify_result res;
	assert_int_equal(verify(f->db, 0, NULL, &res), 0); /* empty chain is fine */
	assert_int_equal(res.head_seq, 0);
	append_n(f->db, 0, 200);
	assert_int_equal(verify(f->db, 0, NULL, &res), 0);
	assert_int_equal(res.head_seq, 200);
	assert_int_equal(res.events, 200);

	/* the stored text is the canonical form of the stored event */
	sqlite3_stmt *st;
	assert_int_equal(sqlite3_prepare_v2(f->db, "SELECT event, length(chain) FROM audit_events",
					    -1, &st, NULL),
			 SQLITE_OK);
	while (sqlite3_step(st) == SQLITE_ROW) {
		const char *text = (const char *)sqlite3_column_text(st, 0);
		json_t *j = json_loads(text, 0, NULL);
		char *again = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENSURE_ASCII);
		assert_string_equal(again, text);
		free(again);
		json_decref(j);
		assert_int_equal(sqlite3_column_int(st, 1), 32);
	}
	sqlite3_finalize(st);

	/* the chain is HMAC(key, prev || be64(seq) || text): recompute seq 1 and 2 independently */
	unsigned char prev[32] = {0};
	for (int seq = 1; seq <= 2; seq++) {
		assert_int_equal(
			sqlite3_prepare_v2(f->db,
					   "SELECT event, chain FROM audit_events WHERE seq = ?",
					   -1, &st, NULL),
			SQLITE_OK);
		sqlite3_bind_int(st, 1, seq);
		assert_int_equal(sqlite3_step(st), SQLITE_ROW);
		unsigned char msg[8192];
		size_t len = (size_t)sqlite3_column_bytes(st, 0);
		assert_true(len + 40 < sizeof(msg));
		memcpy(msg, prev, 32);
		memset(msg + 32, 0, 8);
		msg[39] = (unsigned char)seq;
		memcpy(msg + 40, sqlite3_column_text(st, 0), len);
		unsigned char mac[32];
		unsigned maclen = 0;
		assert_non_null(HMAC(EVP_sha256(), KEY, 32, msg, len + 40, mac, &maclen));
		assert_int_equal(maclen, 32);
		assert_int_equal(sqlite3_column_bytes(st, 1), 32);
		assert_memory_equal(sqlite3_column_blob(st, 1), mac, 32);
		memcpy(prev, mac, 32);
		sqlite3_finalize(st);
	}

	unsigned char head[32];
	memcpy(head, res.head, 32);
	struct sealvm_err err = SEALVM_ERR_INIT;
	assert_int_equal(audit_verify(f->db, KEY, 200, head, &res, &err), 0);
	assert_true(res.ok);
}

static void test_append_outside_transaction(void **state)
{
	struct fixture *f = *state;
	struct audit_event ev = base_event();
	struct sealvm_err err = SEALVM_ERR_INIT;
	assert_int_equal(audit_append(f->db, &ev, KEY, NULL, &err), -EINVAL);
	assert_string_equal(err.reason, "AUDIT_NO_TRANSACTION");

	exec_ok(f->db, "BEGIN");
	sealvm_err_clear(&err);
	ev.action = "bad";
	assert_int_equal(audit_append(f->db, &ev, KEY, NULL, &err), -EINVAL);
	assert_string_equal(err.reason, "AUDIT_EVENT_INVALID");
	/* too large */
	ev = base_event();
	char *big = malloc(AUDIT_EVENT_MAX_BYTES + 1);
	memset(big, 'a', AUDIT_EVENT_MAX_BYTES);
	big[AUDIT_EVENT_MAX_BYTES] = 0;
	json_t *req = json_pack("{s:s}", "blob", big);
	ev.request_data = req;
	sealvm_err_clear(&err);
	assert_int_equal(audit_append(f->db, &ev, KEY, NULL, &err), -E2BIG);
	assert_string_equal(err.reason, "AUDIT_EVENT_TOO_LARGE");
	json_decref(req);
	free(big);
	exec_ok(f->db, "COMMIT");
	struct audit_verify_result res;
	assert_int_equal(verify(f->db, 0, NULL, &res), 0);
	assert_int_equal(res.head_seq, 0);
}

static void tamper(sqlite3 *db, const char *sql)
{
	exec_ok(db, sql);
}

static void test_verify_modified_text(void **state)
{
	struct fixture *f = *state;
	append_n(f->db, 0, 200);
	/* flip one byte of event 77: a digit of its reasonCode */
	tamper(f->db, "UPDATE audit_events SET event = replace(event, '\"reasonCode\":201',"
		      " '\"reasonCode\":200') WHERE seq = 77");
	assert_int_equal(sqlite3_changes(f->db), 1);
	struct audit_verify_result res;
	assert_int_equal(verify(f->db, 0, NULL, &res), -EBADMSG);
	assert_int_equal(res.first_bad_seq, 77);
	assert_int_equal(res.head_seq, 76);
	assert_int_equal(res.events, 77);
	assert_non_null(strstr(res.why, "77"));
}

static void test_verify_modified_chain(void **state)
{
	struct fixture *f = *state;
	append_n(f->db, 0, 200);
	/* flip one bit of byte 10 of event 120's chain value */
	sqlite3_stmt *st;
	unsigned char chain[32];
	assert_int_equal(sqlite3_prepare_v2(f->db, "SELECT chain FROM audit_events WHERE seq = 120",
					    -1, &st, NULL),
			 SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	memcpy(chain, sqlite3_column_blob(st, 0), 32);
	sqlite3_finalize(st);
	chain[10] ^= 1;
	assert_int_equal(sqlite3_prepare_v2(f->db,
					    "UPDATE audit_events SET chain = ? WHERE seq = 120", -1,
					    &st, NULL),
			 SQLITE_OK);
	sqlite3_bind_blob(st, 1, chain, 32, SQLITE_STATIC);
	assert_int_equal(sqlite3_step(st), SQLITE_DONE);
	sqlite3_finalize(st);
	struct audit_verify_result res;
	assert_int_equal(verify(f->db, 0, NULL, &res), -EBADMSG);
	assert_int_equal(res.first_bad_seq, 120);
}

static void test_verify_deleted_middle(void **state)
{
	struct fixture *f = *state;
	append_n(f->db, 0, 200);
	tamper(f->db, "DELETE FROM audit_events WHERE seq = 100");
	struct audit_verify_result res;
	assert_int_equal(verify(f->db, 0, NULL, &res), -EBADMSG);
	assert_int_equal(res.first_bad_seq, 101);
	assert_non_null(strstr(res.why, "missing"));

	/* and the first one */
	tamper(f->db, "DELETE FROM audit_events WHERE seq = 1");
	assert_int_equal(verify(f->db, 0, NULL, &res), -EBADMSG);
	assert_int_equal(res.first_bad_seq, 2);
}

static void test_verify_swapped(void **state)
{
	struct fixture *f = *state;
	append_n(f->db, 0, 200);
	tamper(f->db, "UPDATE audit_events SET event = CASE seq"
		      " WHEN 50 THEN (SELECT event FROM audit_events WHERE seq = 150)"
		      " ELSE (SELECT event FROM audit_events WHERE seq = 50) END"
		      " WHERE seq IN (50, 150)");
	struct audit_verify_result res;
	assert_int_equal(verify(f->db, 0, NULL, &res), -EBADMSG);
	assert_int_equal(res.first_bad_seq, 50);

	/* swapping whole rows (seq stays the key) is the same thing */
	struct fixture *g = f;
	tamper(g->db, "DELETE FROM audit_events");
	append_n(g->db, 0, 20);
	tamper(g->db, "UPDATE audit_events SET seq = -seq WHERE seq IN (5, 6);"
		      "UPDATE audit_events SET seq = 6 WHERE seq = -5;"
		      "UPDATE audit_events SET seq = 5 WHERE seq = -6");
	assert_int_equal(verify(g->db, 0, NULL, &res), -EBADMSG);
	assert_int_equal(res.first_bad_seq, 5);
}

static void test_verify_columns_bound(void **state)
{
	struct fixture *f = *state;
	append_n(f->db, 0, 30);
	struct audit_verify_result res;
	static const char *edits[] = {
		"UPDATE audit_events SET account_id = 'acct9' WHERE seq = 10",
		"UPDATE audit_events SET account_id = NULL WHERE seq = 11",
		"UPDATE audit_events SET action = 'kms.secrets.read' WHERE seq = 12",
		"UPDATE audit_events SET outcome = 'success' WHERE seq = 15",
		"UPDATE audit_events SET target_id = 'x' WHERE seq = 16",
		"UPDATE audit_events SET initiator_id = 'x' WHERE seq = 17",
		"UPDATE audit_events SET time_ms = time_ms + 10 WHERE seq = 18",
		"UPDATE audit_events SET time_ms = time_ms + 1 WHERE seq = 19",
	};
	static const int64_t at[] = {10, 11, 12, 15, 16, 17, 18, 19};
	for (size_t i = 0; i < ELEMENTSOF(edits); i++) {
		exec_ok(f->db, "SAVEPOINT t");
		tamper(f->db, edits[i]);
		assert_int_equal(sqlite3_changes(f->db), 1);
		assert_int_equal(verify(f->db, 0, NULL, &res), -EBADMSG);
		if (res.first_bad_seq != at[i])
			fail_msg("%s: bad at %lld", edits[i], (long long)res.first_bad_seq);
		assert_non_null(strstr(res.why, "column"));
		exec_ok(f->db, "ROLLBACK TO t; RELEASE t");
	}
	assert_int_equal(verify(f->db, 0, NULL, &res), 0);
}

static void test_verify_truncated_tail(void **state)
{
	struct fixture *f = *state;
	append_n(f->db, 0, 200);
	struct audit_verify_result res;
	assert_int_equal(verify(f->db, 0, NULL, &res), 0);
	unsigned char cp[32];
	memcpy(cp, res.head, 32);
	int64_t cp_seq = res.head_seq;

	/* a checkpoint from the current head passes */
	assert_int_equal(verify(f->db, cp_seq, cp, &res), 0);

	tamper(f->db, "DELETE FROM audit_events WHERE seq > 180");
	assert_int_equal(verify(f->db, 0, NULL, &res), 0); /* alone it cannot tell */
	assert_int_equal(res.head_seq, 180);
	assert_int_equal(verify(f->db, cp_seq, cp, &res), -EBADMSG);
	assert_int_equal(res.first_bad_seq, 181);
	assert_non_null(strstr(res.why, "removed"));

	/* truncate, then append other events: the chain passes seq 200 with another value */
	exec_ok(f->db, "BEGIN");
	for (int i = 180; i < 200; i++) {
		struct audit_event ev = base_event();
		ev.action = "kms.secrets.read";
		assert_int_equal(audit_append(f->db, &ev, KEY, NULL, NULL), 0);
	}
	exec_ok(f->db, "COMMIT");
	assert_int_equal(verify(f->db, 0, NULL, &res), 0);
	assert_int_equal(verify(f->db, cp_seq, cp, &res), -EBADMSG);
	assert_int_equal(res.first_bad_seq, 200);
	assert_non_null(strstr(res.why, "checkpoint"));

	/* a checkpoint in the middle of the chain is checked where it falls */
	unsigned char wrong[32] = {0};
	assert_int_equal(verify(f->db, 50, wrong, &res), -EBADMSG);
	assert_int_equal(res.first_bad_seq, 50);

	struct sealvm_err err = SEALVM_ERR_INIT;
	assert_int_equal(audit_verify(f->db, KEY, 5, NULL, &res, &err), -EINVAL);
	assert_int_equal(audit_verify(f->db, KEY, -1, cp, &res, &err), -EINVAL);
}

static void test_verify_wrong_key(void **state)
{
	struct fixture *f = *state;
	append_n(f->db, 0, 10);
	unsigned char other[32];
	memcpy(other, KEY, 32);
	other[31] ^= 1;
	struct audit_verify_result res;
	struct sealvm_err err = SEALVM_ERR_INIT;
	assert_int_equal(audit_verify(f->db, other, 0, NULL, &res, &err), -EBADMSG);
	assert_false(res.ok);
	assert_int_equal(res.first_bad_seq, 1);
	assert_int_equal(res.head_seq, 0);
}

static void test_append_continues_chain_across_transactions(void **state)
{
	struct fixture *f = *state;
	append_n(f->db, 0, 5);
	/* a rolled-back append leaves no trace and does not consume a seq */
	exec_ok(f->db, "BEGIN");
	struct audit_event ev = base_event();
	int64_t seq = 0;
	assert_int_equal(audit_append(f->db, &ev, KEY, &seq, NULL), 0);
	assert_int_equal(seq, 6);
	exec_ok(f->db, "ROLLBACK");
	append_n(f->db, 5, 10);
	struct audit_verify_result res;
	assert_int_equal(verify(f->db, 0, NULL, &res), 0);
	assert_int_equal(res.head_seq, 10);

	/* a corrupt head refuses further appends */
	tamper(f->db, "PRAGMA ignore_check_constraints = ON;"
		      "UPDATE audit_events SET chain = x'00' WHERE seq = 10;"
		      "PRAGMA ignore_check_constraints = OFF");
	exec_ok(f->db, "BEGIN");
	struct sealvm_err err = SEALVM_ERR_INIT;
	assert_int_equal(audit_append(f->db, &ev, KEY, &seq, &err), -EBADMSG);
	assert_string_equal(err.reason, "AUDIT_CHAIN_CORRUPT");
	exec_ok(f->db, "ROLLBACK");
	assert_int_equal(verify(f->db, 0, NULL, &res), -EBADMSG);
	assert_int_equal(res.first_bad_seq, 10);
}

/* ---- query ---- */

static json_t *query(sqlite3 *db, struct audit_query q)
{
	json_t *out = NULL;
	struct sealvm_err err = SEALVM_ERR_INIT;
	int r = audit_query(db, &q, &out, &err);
	if (r < 0)
		fail_msg("query: %d %s %s", r, err.reason, err.message);
	return out;
}

static size_t n_events(json_t *out)
{
	return json_array_size(json_object_get(out, "events"));
}

static void test_query_scoping_and_filters(void **state)
{
	struct fixture *f = *state;
	append_n(f->db, 0, 200);
	/* an operator-trail event is never in any account's results */
	exec_ok(f->db, "BEGIN");
	struct audit_event op = base_event();
	op.account_id = NULL;
	op.action = "sealvm.daemon.start";
	assert_int_equal(audit_append(f->db, &op, KEY, NULL, NULL), 0);
	exec_ok(f->db, "COMMIT");

	json_t *out = query(f->db, (struct audit_query){.account_id = "acct2", .limit = 1000});
	assert_int_equal(n_events(out), 67); /* i % 3 == 1 for i in 0..199 */
	assert_true(json_is_null(json_object_get(out, "next")));
	size_t i;
	json_t *e;
	json_array_foreach(json_object_get(out, "events"), i, e)
	{
		assert_string_equal(str_at(e, "accountId", NULL), "acct2");
		assert_string_equal(str_at(e, "initiator", "id"), "IBMid-acct2-owner");
		assert_string_equal(str_at(e, "observer", "name"), "ActivityTracker");
		assert_null(json_object_get(e, "seq"));
	}
	json_decref(out);

	out = query(f->db, (struct audit_query){.account_id = "nobody"});
	assert_int_equal(n_events(out), 0);
	assert_true(json_is_null(json_object_get(out, "next")));
	json_decref(out);
	/* an account id is an exact match, never a pattern */
	out = query(f->db, (struct audit_query){.account_id = "acct%"});
	assert_int_equal(n_events(out), 0);
	json_decref(out);

	/* time: from <= t < to; acct1 = i%3==0, t = T0 + i s */
	out = query(f->db, (struct audit_query){.account_id = "acct1",
						.from_ms = T0 + 30000,
						.to_ms = T0 + 60000});
	assert_int_equal(n_events(out), 10); /* i = 30, 33, ..., 57 */
	assert_string_equal(
		str_at(json_array_get(json_object_get(out, "events"), 0), "eventTime", NULL),
		"2023-11-14T22:13:50.00+0000");
	json_decref(out);
	out = query(f->db, (struct audit_query){.account_id = "acct1", .from_ms = T0 + 190000});
	assert_int_equal(n_events(out), 3); /* 192, 195, 198 */
	json_decref(out);
	out = query(f->db, (struct audit_query){.account_id = "acct1", .to_ms = T0 + 3000});
	assert_int_equal(n_events(out), 1); /* 0 */
	json_decref(out);

	/* action prefix */
	out = query(f->db, (struct audit_query){.account_id = "acct1", .action_prefix = "kms."});
	assert_int_equal(n_events(out), 33); /* i%3==0 && i%4 in {0,1}: 17 + 16 */
	json_array_foreach(json_object_get(out, "events"), i, e)
		assert_memory_equal(str_at(e, "action", NULL), "kms.", 4);
	json_decref(out);
	out = query(f->db, (struct audit_query){.account_id = "acct1",
						.action_prefix = "kms.secrets.wrap"});
	assert_int_equal(n_events(out), 16);
	json_decref(out);

	/* target, initiator, outcome */
	out = query(f->db, (struct audit_query){.account_id = "acct1", .target = "crn:target:0"});
	assert_int_equal(n_events(out), 14); /* i%15==0 */
	json_array_foreach(json_object_get(out, "events"), i, e)
		assert_string_equal(str_at(e, "target", "id"), "crn:target:0");
	json_decref(out);
	out = query(f->db,
		    (struct audit_query){.account_id = "acct1", .initiator = "IBMid-acct2-owner"});
	assert_int_equal(n_events(out), 0);
	json_decref(out);
	out = query(f->db,
		    (struct audit_query){.account_id = "acct1", .initiator = "IBMid-acct1-owner"});
	assert_int_equal(n_events(out), 67);
	json_decref(out);
	out = query(f->db, (struct audit_query){.account_id = "acct1", .outcome = "failure"});
	assert_int_equal(n_events(out), 10); /* i%21==0: 0, 21, ..., 189 */
	json_array_foreach(json_object_get(out, "events"), i, e)
	{
		assert_string_equal(str_at(e, "outcome", NULL), "failure");
		assert_string_equal(str_at(e, "severity", NULL), "critical");
	}
	json_decref(out);
	/* combined */
	out = query(f->db, (struct audit_query){.account_id = "acct1",
						.outcome = "failure",
						.action_prefix = "kms.secrets.create",
						.from_ms = T0 + 1}); /* i%84==0, i>0: 84, 168 */
	assert_int_equal(n_events(out), 2);
	json_decref(out);
}

static void test_query_literal_prefix(void **state)
{
	struct fixture *f = *state;
	exec_ok(f->db, "BEGIN");
	const char *actions[] = {"kms.secrets.create", "kms_x.secrets.create", "kmsAx.y.z",
				 "kms-x.secrets.create"};
	for (size_t i = 0; i < ELEMENTSOF(actions); i++) {
		struct audit_event ev = base_event();
		ev.action = actions[i];
		assert_int_equal(audit_append(f->db, &ev, KEY, NULL, NULL), 0);
	}
	exec_ok(f->db, "COMMIT");
	json_t *out =
		query(f->db, (struct audit_query){.account_id = "acct1", .action_prefix = "kms_"});
	assert_int_equal(n_events(out), 1);
	assert_string_equal(
		str_at(json_array_get(json_object_get(out, "events"), 0), "action", NULL),
		"kms_x.secrets.create");
	json_decref(out);
	out = query(f->db, (struct audit_query){.account_id = "acct1", .action_prefix = "kms%"});
	assert_int_equal(n_events(out), 0);
	json_decref(out);
	out = query(f->db, (struct audit_query){.account_id = "acct1", .action_prefix = "%"});
	assert_int_equal(n_events(out), 0);
	json_decref(out);
	out = query(f->db,
		    (struct audit_query){.account_id = "acct1", .action_prefix = "' OR 1=1 --"});
	assert_int_equal(n_events(out), 0);
	json_decref(out);
	out = query(f->db, (struct audit_query){.account_id = "acct1", .action_prefix = "KMS."});
	assert_int_equal(n_events(out), 0); /* case-sensitive */
	json_decref(out);
	out = query(f->db, (struct audit_query){.account_id = "acct1", .action_prefix = "kms"});
	assert_int_equal(n_events(out), 4);
	json_decref(out);
}

static void test_query_paging_and_limits(void **state)
{
	struct fixture *f = *state;
	append_n(f->db, 0, 200);
	/* page through acct3's 66 events, 7 at a time */
	int64_t after = 0, last_seq = 0;
	size_t total = 0, pages = 0;
	for (;;) {
		json_t *out = query(f->db, (struct audit_query){.account_id = "acct3",
								.after_seq = after,
								.limit = 7});
		size_t n = n_events(out);
		total += n;
		pages++;
		json_t *next = json_object_get(out, "next");
		size_t i;
		json_t *e;
		json_array_foreach(json_object_get(out, "events"), i, e)
			assert_string_equal(str_at(e, "accountId", NULL), "acct3");
		if (json_is_null(next)) {
			assert_true(n <= 7);
			json_decref(out);
			break;
		}
		assert_int_equal(n, 7);
		assert_true(json_integer_value(next) > last_seq);
		last_seq = after = json_integer_value(next);
		json_decref(out);
		assert_true(pages < 100);
	}
	assert_int_equal(total, 66);
	assert_int_equal(pages, 10); /* 9 full pages + 3 */
	/* exactly a full last page: next is null, not a cursor to an empty page */
	json_t *out = query(f->db, (struct audit_query){.account_id = "acct3", .limit = 66});
	assert_int_equal(n_events(out), 66);
	assert_true(json_is_null(json_object_get(out, "next")));
	json_decref(out);
	out = query(f->db, (struct audit_query){.account_id = "acct3", .limit = 65});
	assert_int_equal(n_events(out), 65);
	assert_true(json_is_integer(json_object_get(out, "next")));
	json_decref(out);

	/* limit 0 = 100, 1000 allowed, above is an error */
	struct audit_query q = {.account_id = "acct1"};
	exec_ok(f->db, "BEGIN");
	for (int i = 0; i < 150; i++) {
		struct audit_event ev = base_event();
		assert_int_equal(audit_append(f->db, &ev, KEY, NULL, NULL), 0);
	}
	exec_ok(f->db, "COMMIT");
	out = query(f->db, q);
	assert_int_equal(n_events(out), 100);
	assert_true(json_is_integer(json_object_get(out, "next")));
	json_decref(out);
	q.limit = 1000;
	out = query(f->db, q);
	assert_int_equal(n_events(out), 67 + 150);
	json_decref(out);
	q.limit = 1;
	out = query(f->db, q);
	assert_int_equal(n_events(out), 1);
	json_decref(out);

	struct sealvm_err err = SEALVM_ERR_INIT;
	json_t *none = NULL;
	q.limit = 5000;
	assert_int_equal(audit_query(f->db, &q, &none, &err), -EINVAL);
	assert_string_equal(err.reason, "AUDIT_QUERY_INVALID");
	assert_null(none);
	q.limit = 1001;
	assert_int_equal(audit_query(f->db, &q, &none, NULL), -EINVAL);
	q.limit = 0;
	struct audit_query bad[] = {
		{.account_id = NULL},
		{.account_id = ""},
		{.account_id = "acct1", .outcome = "maybe"},
		{.account_id = "acct1", .from_ms = -1},
		{.account_id = "acct1", .from_ms = 10, .to_ms = 5},
		{.account_id = "acct1", .after_seq = -1},
	};
	for (size_t i = 0; i < ELEMENTSOF(bad); i++)
		assert_int_equal(audit_query(f->db, &bad[i], &none, NULL), -EINVAL);
	assert_null(none);
}

static void test_query_corrupt_event(void **state)
{
	struct fixture *f = *state;
	append_n(f->db, 0, 3);
	tamper(f->db, "UPDATE audit_events SET event = '{not json' WHERE seq = 2");
	json_t *out = NULL;
	struct sealvm_err err = SEALVM_ERR_INIT;
	assert_int_equal(
		audit_query(f->db, &(struct audit_query){.account_id = "acct2"}, &out, &err),
		-EBADMSG);
	assert_null(out);
	assert_string_equal(err.reason, "AUDIT_EVENT_CORRUPT");
}

/*
 * The stored text is written directly, not by jansson: it must be exactly
 * what jansson's canonical dump (compact, sorted keys, ASCII) of the same
 * object gives, for every kind of character an input may hold.
 */
static void test_append_text_is_canonical(void **state)
{
	struct fixture *f = *state;
	struct sealvm_principal p = user("acct1");
	static const char *const names[] = {
		"plain",
		"quote \" backslash \\ slash / tab \t newline \n cr \r bs \b ff \f",
		"ctl \x01\x1f del \x7f",
		"latin \xc3\xa9 euro \xe2\x82\xac astral \xf0\x9f\x98\x80 last \xf4\x8f\xbf\xbf",
		"",
	};
	json_t *data = json_pack("{s:s, s:[s,i,b,n], s:{s:f}}", "z\xc3\xa9", "\xf0\x9f\x98\x80\"",
				 "list", "a\nb", 7, 1, "nested", "x", 1.5);
	assert_non_null(data);
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		struct audit_event ev = base_event();
		ev.initiator = &p;
		ev.target_name = names[i];
		ev.user_agent = names[i];
		ev.outcome = i % 2 ? AUDIT_FAILURE : AUDIT_SUCCESS;
		ev.status = i % 2 ? 409 : 200;
		ev.failure = names[i];
		ev.request_data = data;
		ev.response_data = i % 2 ? NULL : data;
		ev.data_event = i % 2;
		exec_ok(f->db, "BEGIN");
		int64_t seq = 0;
		assert_int_equal(audit_append(f->db, &ev, KEY, &seq, NULL), 0);
		exec_ok(f->db, "COMMIT");
		sqlite3_stmt *st;
		assert_int_equal(sqlite3_prepare_v2(f->db,
						    "SELECT event FROM audit_events WHERE seq = ?",
						    -1, &st, NULL),
				 SQLITE_OK);
		sqlite3_bind_int64(st, 1, seq);
		assert_int_equal(sqlite3_step(st), SQLITE_ROW);
		const char *text = (const char *)sqlite3_column_text(st, 0);
		json_error_t jerr;
		json_t *j = json_loads(text, JSON_REJECT_DUPLICATES, &jerr);
		assert_non_null(j);
		char *again = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENSURE_ASCII);
		assert_string_equal(text, again);
		/* and it says what the event said */
		if (names[i][0])
			assert_string_equal(json_string_value(path(j, "target", "name")), names[i]);
		assert_true(json_equal(json_object_get(j, "requestData"), data));
		json_t *built = audit_event_json(&ev);
		assert_non_null(built);
		/* eventTime aside (the same here: time_ms is fixed), the same object */
		assert_true(json_equal(built, j));
		json_decref(built);
		free(again);
		json_decref(j);
		sqlite3_finalize(st);
	}
	json_decref(data);
}

/* ---- retention: pruning keeps the chain verifiable ---- */

static int prune(sqlite3 *db, int64_t through, struct sealvm_err *err)
{
	exec_ok(db, "BEGIN");
	int r = audit_prune(db, KEY, through, "req-prune", err);
	if (r >= 0)
		exec_ok(db, "COMMIT");
	else
		exec_ok(db, "ROLLBACK");
	return r;
}

static void chain_of(sqlite3 *db, int64_t seq, unsigned char out[AUDIT_CHAIN_SIZE])
{
	sqlite3_stmt *st;
	assert_int_equal(sqlite3_prepare_v2(db, "SELECT chain FROM audit_events WHERE seq = ?", -1,
					    &st, NULL),
			 SQLITE_OK);
	sqlite3_bind_int64(st, 1, seq);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	memcpy(out, sqlite3_column_blob(st, 0), AUDIT_CHAIN_SIZE);
	sqlite3_finalize(st);
}

static int64_t count_rows(sqlite3 *db, const char *where)
{
	char sql[256];
	snprintf(sql, sizeof(sql), "SELECT count(*) FROM audit_events WHERE %s", where);
	sqlite3_stmt *st;
	assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	int64_t n = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return n;
}

static void test_prune_keeps_chain_verifiable(void **state)
{
	struct fixture *f = *state;
	struct audit_verify_result res;
	struct sealvm_err err = SEALVM_ERR_INIT;
	unsigned char cp3[AUDIT_CHAIN_SIZE], cp8[AUDIT_CHAIN_SIZE];

	append_n(f->db, 0, 10);
	chain_of(f->db, 3, cp3);
	chain_of(f->db, 8, cp8);

	/* the prune point: events older than event 6's time, i.e. 1..5 */
	int64_t point = -1;
	assert_int_equal(audit_prune_point(f->db, T0 + 5 * 1000, 100, &point, &err), 0);
	assert_int_equal(point, 5);
	assert_int_equal(audit_prune_point(f->db, T0, 100, &point, &err), 0);
	assert_int_equal(point, 0);
	assert_int_equal(audit_prune_point(f->db, T0 + 100 * 1000, 3, &point, &err), 0);
	assert_int_equal(point, 3); /* at most 3 looked at */

	assert_int_equal(prune(f->db, 5, &err), 5);
	assert_int_equal(count_rows(f->db, "seq <= 5"), 0);
	assert_int_equal(count_rows(f->db, "action = 'audit.events.prune' AND seq = 11"), 1);
	assert_int_equal(verify(f->db, 0, NULL, &res), 0);
	assert_int_equal(res.pruned_through, 5);
	assert_int_equal(res.head_seq, 11);
	assert_int_equal(res.events, 6);

	/* pruning again below the anchor removes nothing; past the head is refused */
	assert_int_equal(prune(f->db, 4, &err), 0);
	assert_int_equal(prune(f->db, 99, &err), -EINVAL);
	assert_string_equal(err.reason, "AUDIT_PRUNE_INVALID");
	sealvm_err_clear(&err);

	/* the chain goes on after a prune */
	exec_ok(f->db, "BEGIN");
	struct audit_event ev = base_event();
	int64_t seq = 0;
	assert_int_equal(audit_append(f->db, &ev, KEY, &seq, NULL), 0);
	exec_ok(f->db, "COMMIT");
	assert_int_equal(seq, 12);
	assert_int_equal(verify(f->db, 0, NULL, &res), 0);

	/* a checkpoint after the anchor still verifies; one before it cannot be checked here */
	assert_int_equal(verify(f->db, 8, cp8, &res), 0);
	assert_int_equal(audit_verify(f->db, KEY, 3, cp3, &res, &err), -ESTALE);
	assert_string_equal(err.reason, "AUDIT_CHECKPOINT_PRUNED");
	sealvm_err_clear(&err);

	/* a second prune moves the anchor; the newest prune event justifies it */
	assert_int_equal(prune(f->db, 8, &err), 3);
	assert_int_equal(verify(f->db, 0, NULL, &res), 0);
	assert_int_equal(res.pruned_through, 8);
	assert_int_equal(verify(f->db, 8, cp8, &res), 0);
}

static void test_prune_forgery_detected(void **state)
{
	struct fixture *f = *state;
	struct audit_verify_result res;
	struct sealvm_err err = SEALVM_ERR_INIT;
	append_n(f->db, 0, 10);
	assert_int_equal(prune(f->db, 5, &err), 5);

	/* someone with the file removes two more of the oldest and moves the anchor along */
	unsigned char c7[AUDIT_CHAIN_SIZE];
	chain_of(f->db, 7, c7);
	exec_ok(f->db, "BEGIN");
	exec_ok(f->db, "DELETE FROM audit_events WHERE seq <= 7");
	sqlite3_stmt *st;
	assert_int_equal(sqlite3_prepare_v2(f->db, "UPDATE audit_anchor SET seq = 7, chain = ?", -1,
					    &st, NULL),
			 SQLITE_OK);
	sqlite3_bind_blob(st, 1, c7, AUDIT_CHAIN_SIZE, SQLITE_STATIC);
	assert_int_equal(sqlite3_step(st), SQLITE_DONE);
	sqlite3_finalize(st);
	exec_ok(f->db, "COMMIT");
	assert_int_equal(verify(f->db, 0, NULL, &res), -EBADMSG);
	assert_int_equal(res.first_bad_seq, 8);
	assert_non_null(strstr(res.why, "no retained audit.events.prune"));
}

static void test_prune_event_removed_detected(void **state)
{
	struct fixture *f = *state;
	struct audit_verify_result res;
	struct sealvm_err err = SEALVM_ERR_INIT;
	append_n(f->db, 0, 10);
	assert_int_equal(prune(f->db, 10, &err), 10);
	assert_int_equal(verify(f->db, 0, NULL, &res), 0);
	assert_int_equal(res.head_seq, 11);
	/* the prune event is the only event left; removing it leaves an unexplained anchor */
	exec_ok(f->db, "DELETE FROM audit_events WHERE seq = 11");
	assert_int_equal(verify(f->db, 0, NULL, &res), -EBADMSG);
	assert_int_equal(res.first_bad_seq, 11);
}

static void test_prune_anchor_removed_detected(void **state)
{
	struct fixture *f = *state;
	struct audit_verify_result res;
	struct sealvm_err err = SEALVM_ERR_INIT;
	append_n(f->db, 0, 10);
	assert_int_equal(prune(f->db, 4, &err), 4);
	/* without its anchor the first kept event follows nothing */
	exec_ok(f->db, "DELETE FROM audit_anchor");
	assert_int_equal(verify(f->db, 0, NULL, &res), -EBADMSG);
	assert_int_equal(res.first_bad_seq, 5);
	assert_non_null(strstr(res.why, "missing"));
}

/* ---- allocation failures: every one is an error, none corrupts the chain ---- */

static void rollback_if_open(sqlite3 *db)
{
	if (!sqlite3_get_autocommit(db))
		exec_ok(db, "ROLLBACK");
}

static void test_append_allocation_failures(void **state)
{
	struct fixture *f = *state;
	append_n(f->db, 0, 3);
	int64_t committed = 3;
	struct sealvm_principal p = user("acct1");
	json_t *req = json_pack("{s:s, s:[i,i]}", "requestURI", "/api/v2/keys", "list", 1, 2);
	struct audit_event ref = base_event();
	ref.initiator = &p;
	ref.request_data = req;
	ref.response_data = req;
	json_t *ref_json = audit_event_json(&ref);
	char *want = json_dumps(ref_json, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENSURE_ASCII);
	sqlite3_stmt *st;
	assert_int_equal(sqlite3_prepare_v2(f->db, "SELECT event FROM audit_events WHERE seq = ?",
					    -1, &st, NULL),
			 SQLITE_OK);
	long n;
	for (n = 0; n < 100000; n++) {
		exec_ok(f->db, "BEGIN");
		struct audit_event ev = base_event();
		ev.initiator = &p;
		ev.request_data = req;
		ev.response_data = req;
		struct sealvm_err err = SEALVM_ERR_INIT;
		int64_t seq = 0;
		arm(n);
		int r = audit_append(f->db, &ev, KEY, &seq, &err);
		disarm();
		if (r == 0) {
			assert_int_equal(seq, committed + 1);
			exec_ok(f->db, "COMMIT");
			committed++;
			/* a success under failures stored the whole event, not a part of it */
			sqlite3_reset(st);
			sqlite3_bind_int64(st, 1, seq);
			assert_int_equal(sqlite3_step(st), SQLITE_ROW);
			assert_string_equal((const char *)sqlite3_column_text(st, 0), want);
			if (!injected)
				break;
		} else {
			assert_true(injected);
			if (r != -ENOMEM && r != -EIO)
				fail_msg("allocation %ld: %d %s %s", n, r, err.reason, err.message);
			assert_true(sealvm_err_isset(&err));
			rollback_if_open(f->db);
		}
	}
	assert_true(n > 10);
	sqlite3_finalize(st);
	free(want);
	struct audit_verify_result res;
	assert_int_equal(verify(f->db, 0, NULL, &res), 0);
	assert_int_equal(res.head_seq, committed);

	/* audit_event_json: NULL or a whole event */
	for (n = 0; n < 100000; n++) {
		arm(n);
		json_t *j = audit_event_json(&ref);
		disarm();
		if (!j) {
			assert_true(injected);
			continue;
		}
		assert_true(json_equal(j, ref_json));
		json_decref(j);
		if (!injected)
			break;
	}
	json_decref(ref_json);
	json_decref(req);
}

/*
 * Not into jansson here: its parser (2.14) can abort on a failed allocation
 * (an assert in lex_scan_string) or report it as a syntax error. audit.c
 * retries a parse that fails before it calls a stored event unparsable.
 */
static void test_query_verify_allocation_failures(void **state)
{
	struct fixture *f = *state;
	append_n(f->db, 0, 30);
	inject_into = IN_SQLITE | IN_OPENSSL;
	long n;
	for (n = 0; n < 100000; n++) {
		json_t *out = NULL;
		struct sealvm_err err = SEALVM_ERR_INIT;
		arm(n);
		int r = audit_query(f->db, &(struct audit_query){.account_id = "acct2", .limit = 4},
				    &out, &err);
		disarm();
		if (r < 0) {
			assert_true(injected);
			if (r != -ENOMEM && r != -EIO)
				fail_msg("allocation %ld: %d %s %s", n, r, err.reason, err.message);
			assert_null(out);
			continue;
		}
		assert_int_equal(n_events(out), 4);
		assert_int_equal(json_integer_value(json_object_get(out, "next")), 11);
		json_decref(out);
		if (!injected)
			break;
	}
	for (n = 0; n < 100000; n++) {
		struct audit_verify_result res;
		struct sealvm_err err = SEALVM_ERR_INIT;
		arm(n);
		int r = audit_verify(f->db, KEY, 0, NULL, &res, &err);
		disarm();
		if (r < 0) {
			assert_true(injected);
			/* never a false alarm: a failed allocation is not a broken chain */
			if (r != -ENOMEM && r != -EIO)
				fail_msg("allocation %ld: %d %s", n, r, res.why);
			assert_false(res.ok);
			continue;
		}
		assert_true(res.ok);
		assert_int_equal(res.head_seq, 30);
		if (!injected)
			break;
	}
	inject_into = IN_ALL;
}

/* ---- throughput: one transaction of 10,000 appends on a file, synchronous=FULL, WAL ---- */

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void test_append_throughput(void **state)
{
	struct fixture *f = *state;
	exec_ok(f->db, "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL");
	struct sealvm_principal p = user("acct1");
	json_t *req = json_pack("{s:s, s:s}", "requestURI", "/api/v2/keys", "instanceID",
				"0c8b9b6e-1f1a-4d8e-9a55-5b0f0e1e2f3a");
	enum { N = 10000 };
	double t = now_s();
	exec_ok(f->db, "BEGIN");
	for (int i = 0; i < N; i++) {
		struct audit_event ev = base_event();
		ev.initiator = &p;
		ev.request_data = req;
		ev.time_ms = 0;
		assert_int_equal(audit_append(f->db, &ev, KEY, NULL, NULL), 0);
	}
	exec_ok(f->db, "COMMIT");
	t = now_s() - t;
	json_decref(req);
	print_message("audit: %d appends in one transaction (file, WAL, synchronous=FULL): "
		      "%.3f s, %.0f appends/s\n",
		      N, t, N / t);
	double v = now_s();
	struct audit_verify_result res;
	assert_int_equal(verify(f->db, 0, NULL, &res), 0);
	assert_int_equal(res.head_seq, N);
	v = now_s() - v;
	print_message("audit: verify of %d events: %.3f s, %.0f events/s\n", N, v, N / v);
}

int main(void)
{
	install_allocators();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_event_fields),
		cmocka_unit_test(test_event_nothing_not_given),
		cmocka_unit_test(test_event_severity_table),
		cmocka_unit_test(test_event_principals),
		cmocka_unit_test(test_event_failure_reason),
		cmocka_unit_test(test_event_data_deep_copied),
		cmocka_unit_test(test_event_invalid),
		cmocka_unit_test_setup_teardown(test_append_verify_ok, setup_db, teardown_db),
		cmocka_unit_test_setup_teardown(test_append_outside_transaction, setup_db,
						teardown_db),
		cmocka_unit_test_setup_teardown(test_verify_modified_text, setup_db, teardown_db),
		cmocka_unit_test_setup_teardown(test_verify_modified_chain, setup_db, teardown_db),
		cmocka_unit_test_setup_teardown(test_verify_deleted_middle, setup_db, teardown_db),
		cmocka_unit_test_setup_teardown(test_verify_swapped, setup_db, teardown_db),
		cmocka_unit_test_setup_teardown(test_verify_columns_bound, setup_db, teardown_db),
		cmocka_unit_test_setup_teardown(test_verify_truncated_tail, setup_db, teardown_db),
		cmocka_unit_test_setup_teardown(test_verify_wrong_key, setup_db, teardown_db),
		cmocka_unit_test_setup_teardown(test_append_continues_chain_across_transactions,
						setup_db, teardown_db),
		cmocka_unit_test_setup_teardown(test_query_scoping_and_filters, setup_db,
						teardown_db),
		cmocka_unit_test_setup_teardown(test_query_literal_prefix, setup_db, teardown_db),
		cmocka_unit_test_setup_teardown(test_query_paging_and_limits, setup_db,
						teardown_db),
		cmocka_unit_test_setup_teardown(test_query_corrupt_event, setup_db, teardown_db),
		cmocka_unit_test_setup_teardown(test_prune_keeps_chain_verifiable, setup_db,
						teardown_db),
		cmocka_unit_test_setup_teardown(test_prune_forgery_detected, setup_db, teardown_db),
		cmocka_unit_test_setup_teardown(test_prune_event_removed_detected, setup_db,
						teardown_db),
		cmocka_unit_test_setup_teardown(test_prune_anchor_removed_detected, setup_db,
						teardown_db),
		cmocka_unit_test_setup_teardown(test_append_text_is_canonical, setup_db,
						teardown_db),
		cmocka_unit_test_setup_teardown(test_append_allocation_failures, setup_db,
						teardown_db),
		cmocka_unit_test_setup_teardown(test_query_verify_allocation_failures, setup_db,
						teardown_db),
		cmocka_unit_test_setup_teardown(test_append_throughput, setup_db, teardown_db),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
