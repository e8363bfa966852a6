// SPDX-License-Identifier: Apache-2.0
/*
 * audit.c — Activity Tracker events: CADF shape, hash chain, query and verify (see audit.h).
 *
 * Turns what a service knows about a request into one CADF event, fixes its
 * canonical text (compact, sorted keys, ASCII), links it to the previous
 * event with HMAC-SHA256 under the chain key, and hands the row to the store
 * (audit_store.c: all SQL lives there). Verification recomputes every link
 * from the stored bytes and checks that the filterable columns say what the
 * chained text says, so neither can be edited alone.
 *
 * Must never: put anything into an event that the caller did not give (no
 * defaults that look like data), log or echo the chain key, or write an
 * event outside the caller's transaction (the event and the state change it
 * records commit together).
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include "sealvm/audit.h"

#include "audit_internal.h"

#define CANONICAL_FLAGS (JSON_COMPACT | JSON_SORT_KEYS | JSON_ENSURE_ASCII)
#define ACTION_MAX 128
/* 9999-12-31T23:59:59.999Z: eventTime has four year digits. */
#define TIME_MS_MAX INT64_C(253402300799999)

static inline void mac_ctx_freep(EVP_MAC_CTX **c)
{
	EVP_MAC_CTX_free(*c); /* NULL is a no-op; cleanses the key schedule */
}
#define _cleanup_mac_ctx_ _cleanup_(mac_ctx_freep)

/* ---- the chain link ---- */

/*
 * Fetched once and kept for the process. Not pthread_once: a fetch that fails
 * (out of memory) must be retried by the next append, not disable audit — and
 * so every audited request — until a restart.
 */
static pthread_mutex_t hmac_lock = PTHREAD_MUTEX_INITIALIZER;
static EVP_MAC *hmac_alg;

static int chain_ctx_new(EVP_MAC_CTX **ret, struct sealvm_err *err)
{
	pthread_mutex_lock(&hmac_lock);
	if (!hmac_alg)
		hmac_alg = EVP_MAC_fetch(NULL, "HMAC", NULL);
	EVP_MAC *alg = hmac_alg;
	pthread_mutex_unlock(&hmac_lock);
	if (!alg)
		return sealvm_err_set(err, -EIO, "AUDIT_CRYPTO",
				      "HMAC-SHA256 is not available from OpenSSL");
	EVP_MAC_CTX *c = EVP_MAC_CTX_new(alg);
	if (!c)
		return sealvm_err_set(err, -ENOMEM, NULL, "out of memory for the audit chain MAC");
	*ret = c;
	return 0;
}

/* out = HMAC-SHA256(key, prev || seq (8 bytes, big endian) || text). */
static int chain_link(EVP_MAC_CTX *c, const unsigned char *key, const unsigned char *prev,
		      int64_t seq, const char *text, size_t len,
		      unsigned char out[AUDIT_CHAIN_SIZE], struct sealvm_err *err)
{
	OSSL_PARAM params[] = {
		OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
		OSSL_PARAM_construct_end(),
	};
	unsigned char be[8];
	for (int i = 0; i < 8; i++)
		be[i] = (unsigned char)((uint64_t)seq >> (56 - 8 * i));
	size_t outl = 0;
	if (EVP_MAC_init(c, key, AUDIT_CHAIN_KEY_SIZE, params) != 1 ||
	    EVP_MAC_update(c, prev, AUDIT_CHAIN_SIZE) != 1 ||
	    EVP_MAC_update(c, be, sizeof(be)) != 1 ||
	    EVP_MAC_update(c, (const unsigned char *)text, len) != 1 ||
	    EVP_MAC_final(c, out, &outl, AUDIT_CHAIN_SIZE) != 1 || outl != AUDIT_CHAIN_SIZE)
		return sealvm_err_set(err, -EIO, "AUDIT_CRYPTO",
				      "computing the audit chain MAC failed");
	return 0;
}

/* ---- the CADF event ---- */

static const char *outcome_name(enum audit_outcome o)
{
	switch (o) {
	case AUDIT_SUCCESS:
		return "success";
	case AUDIT_FAILURE:
		return "failure";
	case AUDIT_PENDING:
		return "pending";
	}
	return NULL;
}

static const char *severity_for(int status)
{
	switch (status) {
	case 401:
	case 403:
	case 503:
	case 507:
		return "critical";
	case 400:
	case 409:
	case 424:
	case 500:
	case 502:
	case 504:
	case 505:
		return "warning";
	default:
		return "normal";
	}
}

/* Strict UTF-8, as jansson wants it: no overlongs, no surrogates, nothing above U+10FFFF. */
static bool utf8_valid(const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s, *end = p + len;
	while (p < end) {
		unsigned c = *p++;
		if (c < 0x80)
			continue;
		unsigned n, min, cp;
		if ((c & 0xe0) == 0xc0)
			n = 1, min = 0x80, cp = c & 0x1f;
		else if ((c & 0xf0) == 0xe0)
			n = 2, min = 0x800, cp = c & 0x0f;
		else if ((c & 0xf8) == 0xf0)
			n = 3, min = 0x10000, cp = c & 0x07;
		else
			return false;
		if ((size_t)(end - p) < n)
			return false;
		for (unsigned i = 0; i < n; i++) {
			if ((p[i] & 0xc0) != 0x80)
				return false;
			cp = (cp << 6) | (p[i] & 0x3f);
		}
		p += n;
		if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return false;
	}
	return true;
}

/* Sets @key to the string @v (@len bytes) unless it is empty. */
static int set_strn(json_t *o, const char *key, const char *v, size_t len, const char *field,
		    struct sealvm_err *err)
{
	if (!v || len == 0)
		return 0;
	if (memchr(v, 0, len) || !utf8_valid(v, len))
		return sealvm_err_set(err, -EINVAL, "AUDIT_EVENT_INVALID",
				      "audit event field %s is not valid UTF-8 text", field);
	if (json_object_set_new(o, key, json_stringn(v, len)) < 0)
		return sealvm_err_set(err, -ENOMEM, NULL, "out of memory building an audit event");
	return 0;
}

static int set_str(json_t *o, const char *key, const char *v, const char *field,
		   struct sealvm_err *err)
{
	return set_strn(o, key, v, v ? strlen(v) : 0, field, err);
}

/* A principal's fixed-size field: not trusted to be NUL-terminated. */
#define set_field(o, key, arr, field, err)                                                         \
	set_strn(o, key, arr, strnlen(arr, sizeof(arr)), field, err)

static int set_new(json_t *o, const char *key, json_t *v, struct sealvm_err *err)
{
	if (json_object_set_new(o, key, v) < 0)
		return sealvm_err_set(err, -ENOMEM, NULL, "out of memory building an audit event");
	return 0;
}

/* Sets @key to a new empty object; *ret borrows it. */
static int set_object(json_t *o, const char *key, json_t **ret, struct sealvm_err *err)
{
	json_t *c = json_object();
	int r = set_new(o, key, c, err);
	if (r < 0)
		return r;
	*ret = c;
	return 0;
}

/* Drops @key from @o when it ended up empty: nothing given, nothing shown. */
static void drop_if_empty(json_t *o, const char *key)
{
	json_t *c = json_object_get(o, key);
	if (c && json_object_size(c) == 0)
		json_object_del(o, key);
}

/* [A-Za-z0-9_-] components separated by single dots, at least two. */
static bool action_valid(const char *a)
{
	size_t len = a ? strnlen(a, ACTION_MAX + 1) : 0;
	if (len == 0 || len > ACTION_MAX || a[0] == '.' || a[len - 1] == '.' || !strchr(a, '.'))
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = a[i];
		if (c == '.' && a[i + 1] == '.')
			return false;
		if (!(c == '.' || c == '-' || c == '_' || (c >= 'a' && c <= 'z') ||
		      (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')))
			return false;
	}
	return true;
}

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* "YYYY-MM-DDTHH:mm:ss.SS+0000" for @ms (0 <= ms <= TIME_MS_MAX). */
static int format_event_time(int64_t ms, char out[32])
{
	time_t secs = (time_t)(ms / 1000);
	struct tm tm;
	if (!gmtime_r(&secs, &tm))
		return -EINVAL;
	int n = snprintf(out, 32, "%04d-%02d-%02dT%02d:%02d:%02d.%02d+0000", tm.tm_year + 1900,
			 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
			 (int)(ms % 1000 / 10));
	return n == 27 ? 0 : -EINVAL;
}

static int build_initiator(json_t *root, const struct audit_event *ev, struct sealvm_err *err)
{
	json_t *ini = NULL;
	int r = set_object(root, "initiator", &ini, err);
	if (r < 0)
		return r;
	const struct sealvm_principal *p = ev->initiator;
	const char *type;
	switch (p ? p->kind : PRINCIPAL_NONE) {
	case PRINCIPAL_NONE:
		type = "service/security/unauthenticated";
		break;
	case PRINCIPAL_USER:
		type = "service/security/account/user";
		break;
	case PRINCIPAL_SERVICE_ID:
		type = "service/security/account/serviceid";
		break;
	case PRINCIPAL_SERVICE:
		type = "service/security/clientid";
		break;
	default:
		return sealvm_err_set(err, -EINVAL, "AUDIT_EVENT_INVALID",
				      "audit event initiator has unknown principal kind %d",
				      (int)p->kind);
	}
	r = set_str(ini, "typeURI", type, "initiator.typeURI", err);
	if (r < 0)
		return r;
	if (p && p->kind != PRINCIPAL_NONE) {
		r = set_field(ini, "id", p->iam_id, "initiator.id", err);
		if (r >= 0) {
			bool named = strnlen(p->name, sizeof(p->name)) > 0;
			if (named || p->kind != PRINCIPAL_SERVICE)
				r = set_field(ini, "name", p->name, "initiator.name", err);
			else
				r = set_field(ini, "name", p->service_name, "initiator.name", err);
		}
		if (r < 0)
			return r;
		json_t *cred = NULL;
		r = set_object(ini, "credential", &cred, err);
		if (r < 0)
			return r;
		r = set_field(cred, "type", p->credential_type, "initiator.credential.type", err);
		if (r < 0)
			return r;
		drop_if_empty(ini, "credential");
	}
	json_t *host = NULL;
	r = set_object(ini, "host", &host, err);
	if (r < 0)
		return r;
	r = set_str(host, "address", ev->host_address, "initiator.host.address", err);
	if (r >= 0)
		r = set_str(host, "agent", ev->user_agent, "initiator.host.agent", err);
	if (r < 0)
		return r;
	drop_if_empty(ini, "host");
	return 0;
}

static int set_copy(json_t *root, const char *key, json_t *v, struct sealvm_err *err)
{
	if (!v)
		return 0;
	json_t *c = json_deep_copy(v);
	if (!c)
		return sealvm_err_set(err, -ENOMEM, NULL, "out of memory copying audit %s", key);
	return set_new(root, key, c, err);
}

/* Validates @ev and builds its CADF object; *ret_time_ms is the stored (truncated) time. */
static int event_build(const struct audit_event *ev, json_t **ret, int64_t *ret_time_ms,
		       struct sealvm_err *err)
{
	if (!ev)
		return sealvm_err_set(err, -EINVAL, "AUDIT_EVENT_INVALID", "no audit event given");
	if (!action_valid(ev->action))
		return sealvm_err_set(err, -EINVAL, "AUDIT_EVENT_INVALID",
				      "audit action must be service.object.verb in [A-Za-z0-9_-], "
				      "at most %d characters",
				      ACTION_MAX);
	const char *outcome = outcome_name(ev->outcome);
	if (!outcome)
		return sealvm_err_set(err, -EINVAL, "AUDIT_EVENT_INVALID",
				      "audit event %s has unknown outcome %d", ev->action,
				      (int)ev->outcome);
	if (ev->status < 100 || ev->status > 599)
		return sealvm_err_set(err, -EINVAL, "AUDIT_EVENT_INVALID",
				      "audit event %s has HTTP status %d, not 100..599", ev->action,
				      ev->status);
	const char *severity = ev->severity ? ev->severity : severity_for(ev->status);
	if (strcmp(severity, "normal") != 0 && strcmp(severity, "warning") != 0 &&
	    strcmp(severity, "critical") != 0)
		return sealvm_err_set(
			err, -EINVAL, "AUDIT_EVENT_INVALID",
			"audit event %s: severity must be normal, warning or critical", ev->action);
	int64_t ms = ev->time_ms == 0 ? now_ms() : ev->time_ms;
	if (ms < 0 || ms > TIME_MS_MAX)
		return sealvm_err_set(err, -EINVAL, "AUDIT_EVENT_INVALID",
				      "audit event %s: time %" PRId64 " ms is out of range",
				      ev->action, ms);
	ms -= ms % 10;
	char when[32];
	if (format_event_time(ms, when) < 0)
		return sealvm_err_set(err, -EINVAL, "AUDIT_EVENT_INVALID",
				      "audit event %s: time %" PRId64 " ms cannot be formatted",
				      ev->action, ms);

	_cleanup_json_ json_t *root = json_object();
	if (!root)
		return sealvm_err_set(err, -ENOMEM, NULL, "out of memory building an audit event");
	int r = set_str(root, "eventTime", when, "eventTime", err);
	if (r >= 0)
		r = set_str(root, "action", ev->action, "action", err);
	if (r >= 0)
		r = set_str(root, "outcome", outcome, "outcome", err);
	if (r >= 0)
		r = set_str(root, "severity", severity, "severity", err);
	if (r >= 0)
		r = set_str(root, "accountId", ev->account_id, "account_id", err);
	if (r >= 0)
		r = set_str(root, "correlationId", ev->correlation_id, "correlation_id", err);
	if (r >= 0)
		r = set_new(root, "dataEvent", json_boolean(ev->data_event), err);
	if (r < 0)
		return r;

	json_t *reason = NULL;
	r = set_object(root, "reason", &reason, err);
	if (r < 0)
		return r;
	r = set_new(reason, "reasonCode", json_integer(ev->status), err);
	if (r >= 0)
		r = set_str(reason, "reasonType", ev->reason_type, "reason_type", err);
	if (r >= 0 && ev->outcome == AUDIT_FAILURE)
		r = set_str(reason, "reasonForFailure", ev->failure, "failure", err);
	if (r < 0)
		return r;

	r = build_initiator(root, ev, err);
	if (r < 0)
		return r;

	json_t *target = NULL;
	r = set_object(root, "target", &target, err);
	if (r < 0)
		return r;
	r = set_str(target, "id", ev->target_id, "target_id", err);
	if (r >= 0)
		r = set_str(target, "name", ev->target_name, "target_name", err);
	if (r >= 0)
		r = set_str(target, "typeURI", ev->target_type, "target_type", err);
	if (r < 0)
		return r;
	drop_if_empty(root, "target");

	json_t *observer = NULL;
	r = set_object(root, "observer", &observer, err);
	if (r < 0)
		return r;
	r = set_str(observer, "name", "ActivityTracker", "observer.name", err);
	if (r >= 0)
		r = set_copy(root, "requestData", ev->request_data, err);
	if (r >= 0)
		r = set_copy(root, "responseData", ev->response_data, err);
	if (r < 0)
		return r;

	/* "<service>: <verb> [<target name>] <outcome>" */
	const char *dot = strchr(ev->action, '.');
	const char *verb = strrchr(ev->action, '.') + 1;
	bool named = ev->target_name && ev->target_name[0];
	char *msg = NULL;
	if (asprintf(&msg, "%.*s: %s%s%s %s", (int)(dot - ev->action), ev->action, verb,
		     named ? " " : "", named ? ev->target_name : "", outcome) < 0)
		return sealvm_err_set(err, -ENOMEM, NULL, "out of memory building an audit event");
	r = set_str(root, "message", msg, "message", err);
	free(msg);
	if (r < 0)
		return r;

	*ret = TAKE_PTR(root);
	if (ret_time_ms)
		*ret_time_ms = ms;
	return 0;
}

json_t *audit_event_json(const struct audit_event *ev)
{
	json_t *j = NULL;
	if (event_build(ev, &j, NULL, NULL) < 0)
		return NULL;
	return j;
}

/* The columns a row repeats from its event, read back from the event itself. */
struct event_columns {
	const char *account_id, *action, *outcome, *target_id, *initiator_id, *event_time;
};

static const char *member_string(json_t *o, const char *key)
{
	return json_string_value(json_object_get(o, key)); /* NULL when absent or not a string */
}

static void event_columns(json_t *ev, struct event_columns *c)
{
	*c = (struct event_columns){
		.account_id = member_string(ev, "accountId"),
		.action = member_string(ev, "action"),
		.outcome = member_string(ev, "outcome"),
		.target_id = member_string(json_object_get(ev, "target"), "id"),
		.initiator_id = member_string(json_object_get(ev, "initiator"), "id"),
		.event_time = member_string(ev, "eventTime"),
	};
}

/*
 * A stored event's object (new reference), or NULL: *ret_oom says whether
 * memory ran out. jansson 2.14 can report a failed allocation inside its lexer
 * as a syntax error, so a text is declared unparsable only when a second
 * attempt fails the same way — a lost allocation must not read as tampering.
 */
static json_t *parse_event(const struct audit_row *row, bool *ret_oom)
{
	for (int attempt = 0; attempt < 2; attempt++) {
		json_error_t jerr;
		json_t *ev = json_loadb(row->event, row->event_len, JSON_REJECT_DUPLICATES, &jerr);
		if (json_is_object(ev))
			return ev;
		json_decref(ev);
		if (!ev && json_error_code(&jerr) == json_error_out_of_memory) {
			*ret_oom = true;
			return NULL;
		}
	}
	return NULL;
}

/* ---- append ---- */

int audit_append(sqlite3 *conn, const struct audit_event *ev, const unsigned char *chain_key,
		 int64_t *ret_seq, struct sealvm_err *err)
{
	if (!conn || !chain_key)
		return sealvm_err_set(err, -EINVAL, "AUDIT_EVENT_INVALID",
				      "audit append needs a connection and the chain key");
	if (sqlite3_get_autocommit(conn))
		return sealvm_err_set(err, -EINVAL, "AUDIT_NO_TRANSACTION",
				      "audit events are written only inside the transaction of "
				      "the change they record");

	_cleanup_json_ json_t *event = NULL;
	int64_t time_ms = 0;
	int r = event_build(ev, &event, &time_ms, err);
	if (r < 0)
		return r;
	/*
	 * json_dumpb into a fixed buffer, not json_dumps: jansson 2.14 ignores a
	 * failed append while writing an object key, so json_dumps can return a
	 * key-less, unparsable text when an allocation fails midway — and that text
	 * would be chained. Writing to a buffer cannot fail that way.
	 */
	_cleanup_free_ char *text = malloc(AUDIT_EVENT_MAX_BYTES + 1);
	if (!text)
		return sealvm_err_set(err, -ENOMEM, NULL,
				      "out of memory serializing an audit event");
	size_t len = json_dumpb(event, text, AUDIT_EVENT_MAX_BYTES + 1, CANONICAL_FLAGS);
	if (len == 0)
		return sealvm_err_set(err, -ENOMEM, NULL,
				      "out of memory serializing an audit event");
	if (len > AUDIT_EVENT_MAX_BYTES)
		return sealvm_err_set(err, -E2BIG, "AUDIT_EVENT_TOO_LARGE",
				      "audit event %s is %zu bytes, over the %d-byte limit; "
				      "send less requestData/responseData",
				      ev->action, len, AUDIT_EVENT_MAX_BYTES);
	text[len] = 0;

	int64_t last = 0;
	unsigned char prev[AUDIT_CHAIN_SIZE], chain[AUDIT_CHAIN_SIZE];
	r = audit_store_last(conn, &last, prev, err);
	if (r < 0)
		return r;
	if (last == INT64_MAX)
		return sealvm_err_set(err, -E2BIG, "AUDIT_SEQ_EXHAUSTED", "audit seq exhausted");
	int64_t seq = last + 1;

	_cleanup_mac_ctx_ EVP_MAC_CTX *mac = NULL;
	r = chain_ctx_new(&mac, err);
	if (r < 0)
		return r;
	r = chain_link(mac, chain_key, prev, seq, text, len, chain, err);
	if (r < 0)
		return r;

	struct event_columns c;
	event_columns(event, &c);
	struct audit_row row = {
		.seq = seq,
		.time_ms = time_ms,
		.account_id = c.account_id,
		.action = c.action,
		.outcome = c.outcome,
		.target_id = c.target_id,
		.initiator_id = c.initiator_id,
		.event = text,
		.event_len = len,
		.chain = chain,
		.chain_len = sizeof(chain),
	};
	r = audit_store_insert(conn, &row, err);
	if (r < 0)
		return r;
	if (ret_seq)
		*ret_seq = seq;
	return 0;
}

/* ---- query ---- */

struct query_state {
	json_t *events;
	unsigned limit;
	int64_t last_seq;
	bool more;
	struct sealvm_err *err;
};

static int query_row(const struct audit_row *row, void *userdata)
{
	struct query_state *s = userdata;
	if (json_array_size(s->events) == s->limit) {
		s->more = true;
		return 1; /* the one row past the page: there is a next page */
	}
	bool oom = false;
	json_t *ev = parse_event(row, &oom);
	if (oom)
		return sealvm_err_set(s->err, -ENOMEM, NULL, "out of memory listing audit events");
	if (!ev) {
		return sealvm_err_set(s->err, -EBADMSG, "AUDIT_EVENT_CORRUPT",
				      "stored audit event %" PRId64 " does not parse; run audit "
				      "verification",
				      row->seq);
	}
	if (json_array_append_new(s->events, ev) < 0)
		return sealvm_err_set(s->err, -ENOMEM, NULL, "out of memory listing audit events");
	s->last_seq = row->seq;
	return 0;
}

static const char *nonempty(const char *s)
{
	return s && s[0] ? s : NULL;
}

int audit_query(sqlite3 *conn, const struct audit_query *q, json_t **ret, struct sealvm_err *err)
{
	if (!conn || !q || !ret)
		return sealvm_err_set(err, -EINVAL, "AUDIT_QUERY_INVALID", "audit query: no query");
	struct audit_query v = *q;
	v.account_id = nonempty(q->account_id);
	v.action_prefix = nonempty(q->action_prefix);
	v.target = nonempty(q->target);
	v.initiator = nonempty(q->initiator);
	v.outcome = nonempty(q->outcome);
	if (!v.account_id)
		return sealvm_err_set(err, -EINVAL, "AUDIT_QUERY_INVALID",
				      "audit query needs the account whose events to list");
	if (v.limit == 0)
		v.limit = AUDIT_QUERY_LIMIT_DEFAULT;
	if (v.limit > AUDIT_QUERY_LIMIT_MAX)
		return sealvm_err_set(err, -EINVAL, "AUDIT_QUERY_INVALID",
				      "limit %u is over the maximum of %d events per page", v.limit,
				      AUDIT_QUERY_LIMIT_MAX);
	if (v.from_ms < 0 || v.to_ms < 0 || (v.from_ms > 0 && v.to_ms > 0 && v.from_ms > v.to_ms))
		return sealvm_err_set(err, -EINVAL, "AUDIT_QUERY_INVALID",
				      "time range from %" PRId64 " to %" PRId64
				      " ms is not a range; from must not be after to",
				      v.from_ms, v.to_ms);
	if (v.after_seq < 0)
		return sealvm_err_set(err, -EINVAL, "AUDIT_QUERY_INVALID",
				      "paging cursor %" PRId64 " is negative", v.after_seq);
	if (v.outcome && strcmp(v.outcome, "success") != 0 && strcmp(v.outcome, "failure") != 0 &&
	    strcmp(v.outcome, "pending") != 0)
		return sealvm_err_set(err, -EINVAL, "AUDIT_QUERY_INVALID",
				      "outcome filter must be success, failure or pending");

	_cleanup_json_ json_t *events = json_array();
	if (!events)
		return sealvm_err_set(err, -ENOMEM, NULL, "out of memory listing audit events");
	struct query_state s = {.events = events, .limit = v.limit, .err = err};
	int r = audit_store_scan_query(conn, &v, v.limit + 1, query_row, &s, err);
	if (r < 0)
		return r;

	json_t *next = s.more ? json_integer(s.last_seq) : json_null();
	_cleanup_json_ json_t *out = json_object();
	if (!out || !next || json_object_set_new(out, "next", next) < 0 ||
	    json_object_set(out, "events", events) < 0)
		return sealvm_err_set(err, -ENOMEM, NULL, "out of memory listing audit events");
	*ret = TAKE_PTR(out);
	return 0;
}

/* ---- verify ---- */

struct verify_state {
	EVP_MAC_CTX *mac;
	const unsigned char *key;
	int64_t checkpoint_seq;
	const unsigned char *checkpoint_head;
	struct audit_verify_result *res;
	struct sealvm_err *err;
};

static _printf_(3, 4) int verify_bad(struct verify_state *s, int64_t seq, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(s->res->why, sizeof(s->res->why), fmt, ap);
	va_end(ap);
	s->res->first_bad_seq = seq;
	return -EBADMSG;
}

static bool same_text(const char *a, const char *b)
{
	return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static int verify_row(const struct audit_row *row, void *userdata)
{
	struct verify_state *s = userdata;
	struct audit_verify_result *res = s->res;
	int64_t want = res->head_seq + 1;

	res->events++;
	if (row->seq != want) {
		if (row->seq > want)
			return verify_bad(s, row->seq,
					  "event %" PRId64 " follows event %" PRId64
					  ": events %" PRId64 "..%" PRId64 " are missing",
					  row->seq, res->head_seq, want, row->seq - 1);
		return verify_bad(s, row->seq, "event %" PRId64 " is out of order", row->seq);
	}
	if (row->chain_len != AUDIT_CHAIN_SIZE || !row->chain)
		return verify_bad(s, row->seq,
				  "event %" PRId64 " has a %zu-byte chain value, not %d bytes",
				  row->seq, row->chain_len, AUDIT_CHAIN_SIZE);

	unsigned char link[AUDIT_CHAIN_SIZE];
	int r = chain_link(s->mac, s->key, res->head, row->seq, row->event, row->event_len, link,
			   s->err);
	if (r < 0)
		return r;
	if (CRYPTO_memcmp(link, row->chain, AUDIT_CHAIN_SIZE) != 0)
		return verify_bad(s, row->seq,
				  "event %" PRId64 " does not match its chain value: its text or "
				  "chain value was changed, an earlier event was replaced, or the "
				  "chain key is wrong",
				  row->seq);

	/* The MAC covers the text; the filterable columns must say what the text says. */
	bool oom = false;
	_cleanup_json_ json_t *ev = parse_event(row, &oom);
	if (oom)
		return sealvm_err_set(s->err, -ENOMEM, NULL,
				      "out of memory verifying audit events");
	if (!ev)
		return verify_bad(s, row->seq, "event %" PRId64 " is not a JSON object", row->seq);
	struct event_columns c;
	event_columns(ev, &c);
	char when[32] = "";
	const char *bad = NULL;
	if (!same_text(row->account_id, c.account_id))
		bad = "account_id";
	else if (!same_text(row->action, c.action))
		bad = "action";
	else if (!same_text(row->outcome, c.outcome))
		bad = "outcome";
	else if (!same_text(row->target_id, c.target_id))
		bad = "target_id";
	else if (!same_text(row->initiator_id, c.initiator_id))
		bad = "initiator_id";
	else if (row->time_ms < 0 || row->time_ms > TIME_MS_MAX || row->time_ms % 10 != 0 ||
		 format_event_time(row->time_ms, when) < 0 || !same_text(when, c.event_time))
		bad = "time_ms";
	if (bad)
		return verify_bad(s, row->seq,
				  "event %" PRId64 ": column %s does not match the chained event",
				  row->seq, bad);

	if (row->seq == s->checkpoint_seq &&
	    CRYPTO_memcmp(link, s->checkpoint_head, AUDIT_CHAIN_SIZE) != 0)
		return verify_bad(s, row->seq,
				  "the chain at event %" PRId64 " differs from the checkpoint: "
				  "events up to %" PRId64 " were rewritten",
				  row->seq, row->seq);

	memcpy(res->head, link, AUDIT_CHAIN_SIZE);
	res->head_seq = row->seq;
	return 0;
}

int audit_verify(sqlite3 *conn, const unsigned char *chain_key, int64_t checkpoint_seq,
		 const unsigned char *checkpoint_head, struct audit_verify_result *ret,
		 struct sealvm_err *err)
{
	if (!ret)
		return sealvm_err_set(err, -EINVAL, "AUDIT_VERIFY_INVALID", "no result given");
	memset(ret, 0, sizeof(*ret));
	if (!conn || !chain_key || checkpoint_seq < 0 || (checkpoint_seq > 0 && !checkpoint_head)) {
		snprintf(ret->why, sizeof(ret->why), "bad arguments");
		return sealvm_err_set(err, -EINVAL, "AUDIT_VERIFY_INVALID",
				      "audit verification needs the chain key, and a checkpoint "
				      "needs both its seq and its head");
	}

	_cleanup_mac_ctx_ EVP_MAC_CTX *mac = NULL;
	int r = chain_ctx_new(&mac, err);
	if (r < 0)
		return r;
	struct verify_state s = {
		.mac = mac,
		.key = chain_key,
		.checkpoint_seq = checkpoint_seq,
		.checkpoint_head = checkpoint_head,
		.res = ret,
		.err = err,
	};
	r = audit_store_scan_all(conn, verify_row, &s, err);
	if (r == 0 && checkpoint_seq > ret->head_seq)
		r = verify_bad(&s, ret->head_seq + 1,
			       "the checkpoint names event %" PRId64
			       " but the chain ends at %" PRId64 ": events %" PRId64 "..%" PRId64
			       " were removed",
			       checkpoint_seq, ret->head_seq, ret->head_seq + 1, checkpoint_seq);
	if (r == -EBADMSG && ret->first_bad_seq > 0)
		return sealvm_err_set(err, -EBADMSG, "AUDIT_CHAIN_BROKEN", "audit chain broken: %s",
				      ret->why);
	if (r < 0) {
		if (!ret->why[0])
			snprintf(ret->why, sizeof(ret->why), "verification could not run: %.200s",
				 sealvm_err_isset(err) ? err->message : strerror(-r));
		return r;
	}
	ret->ok = true;
	return 0;
}
