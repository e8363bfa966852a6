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
#include "sealvm/bound.h"
#include "sealvm/log.h"

#include "audit_internal.h"

#define CANONICAL_FLAGS (JSON_COMPACT | JSON_SORT_KEYS | JSON_ENSURE_ASCII)
#define ACTION_MAX 128
#define PRUNE_ACTION "audit.events.prune"
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
	/*
	 * The digest is set once per context: named in every EVP_MAC_init, it
	 * was fetched by name again for every link (on the one writer thread).
	 */
	OSSL_PARAM params[] = {
		OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
		OSSL_PARAM_construct_end(),
	};
	if (EVP_MAC_CTX_set_params(c, params) != 1) {
		EVP_MAC_CTX_free(c);
		return sealvm_err_set(err, -EIO, "AUDIT_CRYPTO",
				      "HMAC-SHA256 is not available from OpenSSL");
	}
	*ret = c;
	return 0;
}

/* out = HMAC-SHA256(key, prev || seq (8 bytes, big endian) || text); @c from chain_ctx_new. */
static int chain_link(EVP_MAC_CTX *c, const unsigned char *key, const unsigned char *prev,
		      int64_t seq, const char *text, size_t len,
		      unsigned char out[AUDIT_CHAIN_SIZE], struct sealvm_err *err)
{
	unsigned char be[8];
	for (int i = 0; i < 8; i++)
		be[i] = (unsigned char)((uint64_t)seq >> (56 - 8 * i));
	size_t outl = 0;
	if (EVP_MAC_init(c, key, AUDIT_CHAIN_KEY_SIZE, NULL) != 1 ||
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

/*
 * The canonical text, written directly: what json_dumps(event,
 * JSON_COMPACT | JSON_SORT_KEYS | JSON_ENSURE_ASCII) gives for the CADF
 * object (the unit tests check it against jansson), without building a tree
 * of objects first — this runs once per request. Members are written in
 * sorted order; a member whose input is absent or empty is left out.
 */
struct cj {
	char *buf;
	size_t len, cap;
	int error; /* sticky: -ENOMEM, -E2BIG */
	unsigned depth;
	bool first[8]; /* per open object: no member written yet */
};

static void cj_reserve(struct cj *w, size_t more)
{
	if (w->error || w->len + more + 1 <= w->cap)
		return;
	size_t cap = w->cap ? w->cap : 1024;
	while (cap < w->len + more + 1)
		cap *= 2;
	if (cap > 4 * (size_t)AUDIT_EVENT_MAX_BYTES) {
		w->error = -E2BIG;
		return;
	}
	char *b = realloc(w->buf, cap);
	if (!b) {
		w->error = -ENOMEM;
		return;
	}
	w->buf = b;
	w->cap = cap;
}

static void cj_raw(struct cj *w, const char *s, size_t n)
{
	cj_reserve(w, n);
	if (w->error)
		return;
	memcpy(w->buf + w->len, s, n);
	w->len += n;
}

#define cj_lit(w, s) cj_raw(w, s, sizeof(s) - 1)

/* A JSON string of valid UTF-8 @s, escaped as jansson escapes with JSON_ENSURE_ASCII. */
static void cj_string(struct cj *w, const char *s, size_t n)
{
	static const char hex[] = "0123456789ABCDEF";
	const unsigned char *p = (const unsigned char *)s, *end = p + n;
	cj_lit(w, "\"");
	while (p < end && !w->error) {
		const unsigned char *run = p;
		while (p < end && *p >= 0x20 && *p < 0x80 && *p != '"' && *p != '\\')
			p++;
		cj_raw(w, (const char *)run, (size_t)(p - run));
		if (p == end)
			break;
		unsigned c = *p++;
		switch (c) {
		case '"':
			cj_lit(w, "\\\"");
			continue;
		case '\\':
			cj_lit(w, "\\\\");
			continue;
		case '\b':
			cj_lit(w, "\\b");
			continue;
		case '\f':
			cj_lit(w, "\\f");
			continue;
		case '\n':
			cj_lit(w, "\\n");
			continue;
		case '\r':
			cj_lit(w, "\\r");
			continue;
		case '\t':
			cj_lit(w, "\\t");
			continue;
		}
		if (c >= 0x80) { /* validated before: a well-formed sequence */
			unsigned extra = c >= 0xf0 ? 3 : c >= 0xe0 ? 2 : 1;
			c &= extra == 3 ? 0x07 : extra == 2 ? 0x0f : 0x1f;
			for (unsigned i = 0; i < extra; i++)
				c = (c << 6) | (*p++ & 0x3f);
		}
		unsigned units[2], nu = 0;
		if (c >= 0x10000) {
			c -= 0x10000;
			units[nu++] = 0xd800 | (c >> 10);
			units[nu++] = 0xdc00 | (c & 0x3ff);
		} else {
			units[nu++] = c;
		}
		for (unsigned i = 0; i < nu; i++) {
			char e[6] = {'\\',
				     'u',
				     hex[units[i] >> 12],
				     hex[(units[i] >> 8) & 15],
				     hex[(units[i] >> 4) & 15],
				     hex[units[i] & 15]};
			cj_raw(w, e, sizeof(e));
		}
	}
	cj_lit(w, "\"");
}

static void cj_key(struct cj *w, const char *key)
{
	if (!w->first[w->depth])
		cj_lit(w, ",");
	w->first[w->depth] = false;
	cj_string(w, key, strlen(key));
	cj_lit(w, ":");
}

static void cj_open(struct cj *w, const char *key)
{
	if (key)
		cj_key(w, key);
	cj_lit(w, "{");
	w->first[++w->depth] = true;
}

static void cj_close(struct cj *w)
{
	cj_lit(w, "}");
	w->depth--;
}

/* "key":"value" unless @v is NULL or empty; -EINVAL (naming @field) if it is not UTF-8 text. */
static int cj_strn(struct cj *w, const char *key, const char *v, size_t n, const char *field,
		   struct sealvm_err *err)
{
	if (!v || n == 0)
		return 0;
	if (memchr(v, 0, n) || !utf8_valid(v, n))
		return sealvm_err_set(err, -EINVAL, "AUDIT_EVENT_INVALID",
				      "audit event field %s is not valid UTF-8 text", field);
	cj_key(w, key);
	cj_string(w, v, n);
	return 0;
}

static int cj_str(struct cj *w, const char *key, const char *v, const char *field,
		  struct sealvm_err *err)
{
	return cj_strn(w, key, v, v ? strlen(v) : 0, field, err);
}

/* A principal's fixed-size field: not trusted to be NUL-terminated. */
#define cj_field(w, key, arr, field, err)                                                          \
	cj_strn(w, key, arr, strnlen(arr, sizeof(arr)), field, err)

static bool nonempty_field(const char *arr, size_t size)
{
	return strnlen(arr, size) > 0;
}

/* "key":<canonical JSON of @v> (a caller's requestData/responseData) unless @v is NULL. */
static int cj_json(struct cj *w, const char *key, json_t *v, struct sealvm_err *err)
{
	if (!v)
		return 0;
	cj_key(w, key);
	const size_t flags = CANONICAL_FLAGS | JSON_ENCODE_ANY;
	for (int attempt = 0; attempt < 2 && !w->error; attempt++) {
		size_t room = w->cap > w->len ? w->cap - w->len - 1 : 0;
		size_t n = room ? json_dumpb(v, w->buf + w->len, room, flags) : 0;
		if (room && n == 0)
			break;
		if (n && n <= room) {
			w->len += n;
			return 0;
		}
		if (!n) /* no room at all yet: ask how much */
			n = json_dumpb(v, NULL, 0, flags);
		if (!n)
			break;
		cj_reserve(w, n);
	}
	if (w->error == -E2BIG)
		return 0; /* reported with the event's size */
	return sealvm_err_set(err, -ENOMEM, NULL, "out of memory serializing audit %s", key);
}

static const char *initiator_type(const struct sealvm_principal *p)
{
	switch (p ? p->kind : PRINCIPAL_NONE) {
	case PRINCIPAL_NONE:
		return "service/security/unauthenticated";
	case PRINCIPAL_USER:
		return "service/security/account/user";
	case PRINCIPAL_SERVICE_ID:
		return "service/security/account/serviceid";
	case PRINCIPAL_SERVICE:
		return "service/security/clientid";
	}
	return NULL;
}

static int write_initiator(struct cj *w, const struct audit_event *ev, struct sealvm_err *err)
{
	const struct sealvm_principal *p = ev->initiator;
	const char *type = initiator_type(p);
	int r = 0;
	if (!type)
		return sealvm_err_set(err, -EINVAL, "AUDIT_EVENT_INVALID",
				      "audit event initiator has unknown principal kind %d",
				      (int)p->kind);
	bool known = p && p->kind != PRINCIPAL_NONE;
	cj_open(w, "initiator");
	if (known && nonempty_field(p->credential_type, sizeof(p->credential_type))) {
		cj_open(w, "credential");
		r = cj_field(w, "type", p->credential_type, "initiator.credential.type", err);
		cj_close(w);
	}
	bool has_host =
		(ev->host_address && ev->host_address[0]) || (ev->user_agent && ev->user_agent[0]);
	if (r >= 0 && has_host) {
		cj_open(w, "host");
		r = cj_str(w, "address", ev->host_address, "initiator.host.address", err);
		if (r >= 0)
			r = cj_str(w, "agent", ev->user_agent, "initiator.host.agent", err);
		cj_close(w);
	}
	if (r >= 0 && known) {
		r = cj_field(w, "id", p->iam_id, "initiator.id", err);
		if (r >= 0) {
			bool named = nonempty_field(p->name, sizeof(p->name));
			if (named || p->kind != PRINCIPAL_SERVICE)
				r = cj_field(w, "name", p->name, "initiator.name", err);
			else
				r = cj_field(w, "name", p->service_name, "initiator.name", err);
		}
	}
	if (r >= 0)
		r = cj_str(w, "typeURI", type, "initiator.typeURI", err);
	cj_close(w);
	return r;
}

/*
 * Validates @ev and writes its canonical CADF text into @w; *ret_time_ms is
 * the stored (truncated) time.
 */
static int event_write(const struct audit_event *ev, struct cj *w, int64_t *ret_time_ms,
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

	/* "<service>: <verb> [<target name>] <outcome>" */
	const char *dot = strchr(ev->action, '.');
	const char *verb = strrchr(ev->action, '.') + 1;
	bool named = ev->target_name && ev->target_name[0];
	char msg[512];
	int mn = snprintf(msg, sizeof(msg), "%.*s: %s%s%s %s", (int)(dot - ev->action), ev->action,
			  verb, named ? " " : "", named ? ev->target_name : "", outcome);
	_cleanup_free_ char *long_msg = NULL;
	const char *message = msg;
	if (mn < 0)
		return sealvm_err_set(err, -EINVAL, "AUDIT_EVENT_INVALID",
				      "audit event %s: message cannot be formatted", ev->action);
	if ((size_t)mn >= sizeof(msg)) {
		if (asprintf(&long_msg, "%.*s: %s%s%s %s", (int)(dot - ev->action), ev->action,
			     verb, named ? " " : "", named ? ev->target_name : "", outcome) < 0)
			return sealvm_err_set(err, -ENOMEM, NULL,
					      "out of memory building an audit event");
		message = long_msg;
	}

	char code[16];
	snprintf(code, sizeof(code), "%d", ev->status);
	int r;
	cj_open(w, NULL);
	if ((r = cj_str(w, "accountId", ev->account_id, "account_id", err)) < 0 ||
	    (r = cj_str(w, "action", ev->action, "action", err)) < 0 ||
	    (r = cj_str(w, "correlationId", ev->correlation_id, "correlation_id", err)) < 0)
		return r;
	cj_key(w, "dataEvent");
	if (ev->data_event)
		cj_lit(w, "true");
	else
		cj_lit(w, "false");
	if ((r = cj_str(w, "eventTime", when, "eventTime", err)) < 0 ||
	    (r = write_initiator(w, ev, err)) < 0 ||
	    (r = cj_str(w, "message", message, "message", err)) < 0)
		return r;
	cj_open(w, "observer");
	cj_key(w, "name");
	cj_lit(w, "\"ActivityTracker\"");
	cj_close(w);
	if ((r = cj_str(w, "outcome", outcome, "outcome", err)) < 0)
		return r;
	cj_open(w, "reason");
	cj_key(w, "reasonCode");
	cj_raw(w, code, strlen(code));
	if (ev->outcome == AUDIT_FAILURE)
		r = cj_str(w, "reasonForFailure", ev->failure, "failure", err);
	if (r >= 0)
		r = cj_str(w, "reasonType", ev->reason_type, "reason_type", err);
	cj_close(w);
	if (r < 0 || (r = cj_json(w, "requestData", ev->request_data, err)) < 0 ||
	    (r = cj_json(w, "responseData", ev->response_data, err)) < 0 ||
	    (r = cj_str(w, "severity", severity, "severity", err)) < 0)
		return r;
	if ((ev->target_id && ev->target_id[0]) || named ||
	    (ev->target_type && ev->target_type[0])) {
		cj_open(w, "target");
		if ((r = cj_str(w, "id", ev->target_id, "target_id", err)) < 0 ||
		    (r = cj_str(w, "name", ev->target_name, "target_name", err)) < 0 ||
		    (r = cj_str(w, "typeURI", ev->target_type, "target_type", err)) < 0)
			return r;
		cj_close(w);
	}
	cj_close(w);
	if (w->error == -ENOMEM)
		return sealvm_err_set(err, -ENOMEM, NULL,
				      "out of memory serializing an audit event");
	if (w->error == -E2BIG || w->len > AUDIT_EVENT_MAX_BYTES)
		return sealvm_err_set(err, -E2BIG, "AUDIT_EVENT_TOO_LARGE",
				      "audit event %s is %zu bytes, over the %d-byte limit; "
				      "send less requestData/responseData",
				      ev->action, w->len, AUDIT_EVENT_MAX_BYTES);
	w->buf[w->len] = 0;
	if (ret_time_ms)
		*ret_time_ms = ms;
	return 0;
}

json_t *audit_event_json(const struct audit_event *ev)
{
	struct cj w = {0};
	json_t *j = NULL;
	if (event_write(ev, &w, NULL, NULL) >= 0)
		j = json_loadb(w.buf, w.len, JSON_REJECT_DUPLICATES, NULL);
	/*
	 * jansson 2.14 can lose a member when an allocation fails while it loads;
	 * an object that does not dump back to the very text is not the event.
	 */
	if (j) {
		char *back = malloc(w.len + 1);
		if (!back || json_dumpb(j, back, w.len + 1, CANONICAL_FLAGS) != w.len ||
		    memcmp(back, w.buf, w.len) != 0) {
			json_decref(j);
			j = NULL;
		}
		free(back);
	}
	free(w.buf);
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

struct audit_record {
	int64_t time_ms;
	char *account_id, *action, *outcome, *target_id, *initiator_id; /* the row's columns */
	size_t len;
	char *text; /* the canonical text, NUL-terminated */
};

void audit_record_free(struct audit_record *rec)
{
	if (!rec)
		return;
	free(rec->text);
	free(rec);
}

/* Copies @v (or NULL when empty) to *@dst, at @pos in the arena. */
static char *arena_put(char **pos, const char *v, size_t n)
{
	if (!v || n == 0)
		return NULL;
	char *d = *pos;
	memcpy(d, v, n);
	d[n] = 0;
	*pos += n + 1;
	return d;
}

int audit_record_new(const struct audit_event *ev, struct audit_record **ret,
		     struct sealvm_err *err)
{
	struct cj w = {0};
	int64_t time_ms = 0;
	int r = event_write(ev, &w, &time_ms, err);
	if (r < 0) {
		free(w.buf);
		return r;
	}
	const struct sealvm_principal *p = ev->initiator;
	const char *ini = p && p->kind != PRINCIPAL_NONE ? p->iam_id : NULL;
	size_t n_ini = ini ? strnlen(ini, sizeof(p->iam_id)) : 0;
	const char *outcome = outcome_name(ev->outcome);
	size_t n_acc = ev->account_id ? strlen(ev->account_id) : 0;
	size_t n_act = strlen(ev->action), n_out = strlen(outcome);
	size_t n_tgt = ev->target_id ? strlen(ev->target_id) : 0;
	struct audit_record *rec = malloc(sizeof(*rec) + n_acc + n_act + n_out + n_tgt + n_ini + 5);
	if (!rec) {
		free(w.buf);
		return sealvm_err_set(err, -ENOMEM, NULL,
				      "out of memory serializing an audit event");
	}
	char *pos = (char *)(rec + 1);
	rec->account_id = arena_put(&pos, ev->account_id, n_acc);
	rec->action = arena_put(&pos, ev->action, n_act);
	rec->outcome = arena_put(&pos, outcome, n_out);
	rec->target_id = arena_put(&pos, ev->target_id, n_tgt);
	rec->initiator_id = arena_put(&pos, ini, n_ini);
	rec->text = w.buf;
	rec->len = w.len;
	rec->time_ms = time_ms;
	*ret = rec;
	return 0;
}

/*
 * The chain MAC's context, made once per thread (in practice: the database
 * writer's) and keyed anew for each link; OpenSSL then does not look the
 * digest up by name on every event.
 */
static pthread_key_t mac_key;
static pthread_once_t mac_key_once = PTHREAD_ONCE_INIT;
static bool mac_key_ok;

static void mac_destroy(void *c)
{
	EVP_MAC_CTX_free(c);
}

static void mac_key_init(void)
{
	mac_key_ok = pthread_key_create(&mac_key, mac_destroy) == 0;
}

/* The calling thread's context (new or kept), or NULL with @err set. */
static EVP_MAC_CTX *thread_mac(struct sealvm_err *err)
{
	pthread_once(&mac_key_once, mac_key_init);
	EVP_MAC_CTX *c = mac_key_ok ? pthread_getspecific(mac_key) : NULL;
	if (c)
		return c;
	if (chain_ctx_new(&c, err) < 0)
		return NULL;
	if (mac_key_ok && pthread_setspecific(mac_key, c) != 0) {
		EVP_MAC_CTX_free(c);
		sealvm_err_set(err, -ENOMEM, NULL, "out of memory for the audit chain MAC");
		return NULL;
	}
	return c; /* without a key (never in practice) it leaks: one context */
}

static void thread_mac_drop(void)
{
	if (!mac_key_ok)
		return;
	EVP_MAC_CTX_free(pthread_getspecific(mac_key));
	pthread_setspecific(mac_key, NULL);
}

int audit_record_append(sqlite3 *conn, const struct audit_record *rec,
			const unsigned char *chain_key, int64_t *ret_seq, struct sealvm_err *err)
{
	if (!chain_key || !rec)
		return sealvm_err_set(err, -EINVAL, "AUDIT_EVENT_INVALID",
				      "audit append needs a record and the chain key");
	struct audit_log *log = NULL;
	if (!conn) {
		/* A log batch (DB_JOB_LOG): the record goes to the event log. */
		log = audit_log_current();
		if (!log)
			return sealvm_err_set(err, -EINVAL, "AUDIT_NO_TRANSACTION",
					      "audit events without a connection go to the event "
					      "log, and none is open");
	} else if (sqlite3_get_autocommit(conn))
		return sealvm_err_set(err, -EINVAL, "AUDIT_NO_TRANSACTION",
				      "audit events are written only inside the transaction of "
				      "the change they record");

	int64_t last = 0;
	unsigned char prev[AUDIT_CHAIN_SIZE], chain[AUDIT_CHAIN_SIZE];
	int r = 0;
	if (log)
		audit_log_staged_head(log, &last, prev);
	else
		r = audit_store_last(conn, &last, prev, err);
	if (r < 0)
		return r;
	if (last == INT64_MAX)
		return sealvm_err_set(err, -E2BIG, "AUDIT_SEQ_EXHAUSTED", "audit seq exhausted");
	int64_t seq = last + 1;

	EVP_MAC_CTX *mac = thread_mac(err);
	if (!mac)
		return err && err->code ? err->code : -ENOMEM;
	r = chain_link(mac, chain_key, prev, seq, rec->text, rec->len, chain, err);
	if (r < 0) {
		thread_mac_drop(); /* a context in an unknown state is not reused */
		return r;
	}

	struct audit_row row = {
		.seq = seq,
		.time_ms = rec->time_ms,
		.account_id = rec->account_id,
		.action = rec->action,
		.outcome = rec->outcome,
		.target_id = rec->target_id,
		.initiator_id = rec->initiator_id,
		.event = rec->text,
		.event_len = rec->len,
		.chain = chain,
		.chain_len = sizeof(chain),
	};
	r = log ? audit_log_stage(log, &row, err) : audit_store_insert(conn, &row, err);
	if (r < 0)
		return r;
	if (ret_seq)
		*ret_seq = seq;
	return 0;
}

int audit_append(sqlite3 *conn, const struct audit_event *ev, const unsigned char *chain_key,
		 int64_t *ret_seq, struct sealvm_err *err)
{
	if (!chain_key)
		return sealvm_err_set(err, -EINVAL, "AUDIT_EVENT_INVALID",
				      "audit append needs the chain key");
	if (conn && sqlite3_get_autocommit(conn))
		return sealvm_err_set(err, -EINVAL, "AUDIT_NO_TRANSACTION",
				      "audit events are written only inside the transaction of "
				      "the change they record");
	struct audit_record *rec = NULL;
	int r = audit_record_new(ev, &rec, err);
	if (r >= 0)
		r = audit_record_append(conn, rec, chain_key, ret_seq, err);
	audit_record_free(rec);
	return r;
}

/* ---- retention ---- */

static void hex_of(const unsigned char *b, size_t n, char *out)
{
	static const char hex[] = "0123456789abcdef";
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = hex[b[i] >> 4];
		out[2 * i + 1] = hex[b[i] & 15];
	}
	out[2 * n] = 0;
}

struct prune_point {
	int64_t cutoff_ms, seq;
};

static int prune_point_row(const struct audit_row *row, void *userdata)
{
	struct prune_point *p = userdata;
	if (row->time_ms >= p->cutoff_ms)
		return 1; /* stop: this one and all after it are kept */
	p->seq = row->seq;
	return 0;
}

int audit_prune_point(sqlite3 *conn, int64_t cutoff_ms, unsigned max, int64_t *ret_seq,
		      struct sealvm_err *err)
{
	struct prune_point p = {.cutoff_ms = cutoff_ms};
	int r = audit_store_scan_oldest(conn, max, prune_point_row, &p, err);
	if (r < 0)
		return r;
	*ret_seq = p.seq;
	return 0;
}

struct chain_at {
	int64_t seq;
	bool found;
	unsigned char chain[AUDIT_CHAIN_SIZE];
};

static int chain_at_row(const struct audit_row *row, void *userdata)
{
	struct chain_at *c = userdata;
	if (row->seq > c->seq)
		return 1;
	if (row->seq == c->seq && row->chain && row->chain_len == AUDIT_CHAIN_SIZE) {
		memcpy(c->chain, row->chain, AUDIT_CHAIN_SIZE);
		c->found = true;
	}
	return 0;
}

int audit_prune(sqlite3 *conn, const unsigned char *chain_key, int64_t through_seq,
		const char *correlation_id, struct sealvm_err *err)
{
	if (!conn || !chain_key || through_seq <= 0)
		return sealvm_err_set(err, -EINVAL, "AUDIT_PRUNE_INVALID",
				      "audit prune needs a connection, the chain key and a seq");
	if (sqlite3_get_autocommit(conn))
		return sealvm_err_set(err, -EINVAL, "AUDIT_NO_TRANSACTION",
				      "audit pruning runs only inside a write transaction");
	int64_t anchor = 0, last = 0;
	unsigned char anchor_chain[AUDIT_CHAIN_SIZE], head[AUDIT_CHAIN_SIZE];
	int r = audit_store_anchor(conn, &anchor, anchor_chain, err);
	if (r >= 0)
		r = audit_store_last(conn, &last, head, err);
	if (r < 0)
		return r;
	if (through_seq <= anchor)
		return 0; /* already gone */
	if (through_seq > last)
		return sealvm_err_set(err, -EINVAL, "AUDIT_PRUNE_INVALID",
				      "cannot prune through event %" PRId64
				      ": the chain ends at %" PRId64,
				      through_seq, last);
	/* The chain value to keep: the stored one, which the chain itself vouches for. */
	struct chain_at at = {.seq = through_seq};
	r = audit_store_scan_oldest(conn, (unsigned)MIN(through_seq - anchor, (int64_t)UINT32_MAX),
				    chain_at_row, &at, err);
	if (r < 0)
		return r;
	if (!at.found)
		return sealvm_err_set(err, -EBADMSG, "AUDIT_CHAIN_CORRUPT",
				      "event %" PRId64 " is missing: verify the audit chain",
				      through_seq);

	char hex[2 * AUDIT_CHAIN_SIZE + 1];
	hex_of(at.chain, AUDIT_CHAIN_SIZE, hex);
	_cleanup_json_ json_t *data =
		json_pack("{s:I, s:s, s:I}", "throughSeq", (json_int_t)through_seq, "throughChain",
			  hex, "events", (json_int_t)(through_seq - anchor));
	if (!data)
		return sealvm_err_set(err, -ENOMEM, NULL, "out of memory pruning audit events");
	struct audit_event ev = {
		.action = PRUNE_ACTION,
		.outcome = AUDIT_SUCCESS,
		.status = 200,
		.reason_type = "OK",
		.correlation_id = correlation_id,
		.request_data = data,
	};
	r = audit_append(conn, &ev, chain_key, NULL, err);
	if (r < 0)
		return r;
	r = audit_store_delete_through(conn, through_seq, err);
	if (r < 0)
		return r;
	/* Rows and log records alike: the log's segments go once this commits. */
	int removed = (int)MIN(through_seq - anchor, (int64_t)INT32_MAX);
	r = audit_store_set_anchor(conn, through_seq, at.chain, err);
	return r < 0 ? r : removed;
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
	int64_t anchor_seq;
	unsigned char anchor[AUDIT_CHAIN_SIZE];
	bool anchor_justified; /* a retained prune event names the anchor */
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

/* Whether the prune event @ev names exactly (@seq, @chain) as what it removed. */
static bool prune_names(json_t *ev, int64_t seq, const unsigned char chain[AUDIT_CHAIN_SIZE])
{
	json_t *rd = json_object_get(ev, "requestData");
	json_t *through = json_object_get(rd, "throughSeq");
	const char *c = json_string_value(json_object_get(rd, "throughChain"));
	char want[2 * AUDIT_CHAIN_SIZE + 1];
	hex_of(chain, AUDIT_CHAIN_SIZE, want);
	return json_is_integer(through) && json_integer_value(through) == seq && c &&
	       strcmp(c, want) == 0;
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

	if (s->anchor_seq > 0 && same_text(c.action, PRUNE_ACTION) &&
	    prune_names(ev, s->anchor_seq, s->anchor))
		s->anchor_justified = true;

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
	/*
	 * The anchor and the rows from one snapshot, and the log read up to where
	 * it was when that snapshot was fixed (by the anchor's read): read its
	 * limit before and after, until no log batch came in between.
	 */
	bool own_txn = sqlite3_get_autocommit(conn);
	struct audit_log_limit l1, l2;
	for (int tries = 0;; tries++) {
		r = audit_store_log_limit(conn, &l1, err);
		if (r < 0)
			return r;
		if (own_txn && sqlite3_exec(conn, "BEGIN", NULL, NULL, NULL) != SQLITE_OK)
			return sealvm_err_set(
				err, -EIO, "AUDIT_DB_ERROR",
				"audit verification cannot start a read transaction: %s",
				sqlite3_errmsg(conn));
		r = audit_store_anchor(conn, &s.anchor_seq, s.anchor, err);
		if (r >= 0)
			r = audit_store_log_limit(conn, &l2, err);
		if (r < 0 || !own_txn || audit_log_limit_same(&l1, &l2) || tries == 20)
			break;
		sqlite3_exec(conn, "COMMIT", NULL, NULL, NULL);
	}
	if (r == -EBADMSG) {
		ret->first_bad_seq = 1;
		snprintf(ret->why, sizeof(ret->why), "the pruning anchor is corrupt");
	}
	if (r >= 0) {
		ret->head_seq = s.anchor_seq;
		ret->pruned_through = s.anchor_seq;
		memcpy(ret->head, s.anchor, AUDIT_CHAIN_SIZE);
		if (checkpoint_seq > 0 && checkpoint_seq < s.anchor_seq)
			r = sealvm_err_set(err, -ESTALE, "AUDIT_CHECKPOINT_PRUNED",
					   "the checkpoint names event %" PRId64
					   ", which retention has removed (events 1..%" PRId64
					   " are pruned): check it against the exported events",
					   checkpoint_seq, s.anchor_seq);
		else if (checkpoint_seq > 0 && checkpoint_seq == s.anchor_seq &&
			 CRYPTO_memcmp(s.anchor, checkpoint_head, AUDIT_CHAIN_SIZE) != 0)
			r = verify_bad(&s, checkpoint_seq,
				       "the pruning anchor (event %" PRId64
				       ") differs from the checkpoint: events up to %" PRId64
				       " were rewritten",
				       checkpoint_seq, checkpoint_seq);
	}
	if (r >= 0)
		r = audit_store_scan_all_at(conn, &l1, verify_row, &s, err);
	if (r == -EBADMSG && !ret->first_bad_seq) {
		/* The log holds a damaged record: the chain breaks right after the last good one.
		 */
		ret->first_bad_seq = ret->head_seq + 1;
		snprintf(ret->why, sizeof(ret->why), "%.200s",
			 sealvm_err_isset(err) ? err->message : "a damaged event log record");
	}
	if (own_txn)
		sqlite3_exec(conn, "COMMIT", NULL, NULL, NULL);
	if (r == 0 && s.anchor_seq > 0 && !s.anchor_justified)
		r = verify_bad(&s, s.anchor_seq + 1,
			       "events 1..%" PRId64 " were removed, and no retained "
			       "audit.events.prune event records that removal",
			       s.anchor_seq);
	if (r == 0 && ret->head_seq == s.anchor_seq && s.anchor_seq > 0)
		r = verify_bad(&s, s.anchor_seq + 1,
			       "events 1..%" PRId64 " were pruned but no event follows them: "
			       "the prune event itself was removed",
			       s.anchor_seq);
	if (r == 0 && checkpoint_seq > ret->head_seq)
		r = verify_bad(&s, ret->head_seq + 1,
			       "the checkpoint names event %" PRId64
			       " but the chain ends at %" PRId64 ": events %" PRId64 "..%" PRId64
			       " were removed",
			       checkpoint_seq, ret->head_seq, ret->head_seq + 1, checkpoint_seq);
	if (r == -EBADMSG && ret->first_bad_seq > 0) {
		sealvm_err_clear(err);
		return sealvm_err_set(err, -EBADMSG, "AUDIT_CHAIN_BROKEN", "audit chain broken: %s",
				      ret->why);
	}
	if (r < 0) {
		if (!ret->why[0])
			snprintf(ret->why, sizeof(ret->why), "verification could not run: %.200s",
				 sealvm_err_isset(err) ? err->message : strerror(-r));
		return r;
	}
	ret->ok = true;
	return 0;
}

/* Writes @due (what the bound counted for one source and window) as one aggregate event. */
static int write_aggregate(const struct audit_unauth *u, const struct sealvm_bound_count *due,
			   const char *id, struct sealvm_err *err)
{
	json_t *data =
		json_pack("{s:s, s:s, s:I, s:i, s:i}", "listener", u->listener, "source",
			  due->source, "window_start", (json_int_t)due->window_start, "window_s",
			  (int)due->window_s, "suppressed", (int)due->suppressed);
	struct audit_event ev = {
		.action = "sealvm.unauthenticated-requests.aggregate",
		.outcome = AUDIT_FAILURE,
		.status = u->status,
		.reason_type = u->status == 401 ? "Unauthorized" : "Forbidden",
		.failure = "requests without valid credentials, counted instead of recorded one by "
			   "one",
		.host_address = due->source,
		.correlation_id = id,
		.request_data = data,
	};
	int r = data ? u->write(u->ctx, &ev, err)
		     : sealvm_err_set(err, -ENOMEM, NULL, "out of memory");
	json_decref(data);
	return r;
}

int audit_unauth_admit(const struct audit_unauth *u, const char *source, const char *id,
		       struct sealvm_err *err)
{
	if (!u->bound)
		return 1;
	struct sealvm_bound_count due;
	bool admit = sealvm_bound_admit(u->bound, source, &due);
	if (due.suppressed) {
		int r = write_aggregate(u, &due, id, err);
		if (r < 0)
			return r;
	}
	return admit;
}

static void drain_one(const struct sealvm_bound_count *due, void *arg)
{
	struct sealvm_err e = SEALVM_ERR_INIT;
	const struct audit_unauth *u = arg;
	if (write_aggregate(u, due, NULL, &e) < 0)
		log_error("audit: cannot record %u unauthenticated %s requests from %s: %s",
			  due->suppressed, u->listener, due->source, e.message);
}

void audit_unauth_drain(const struct audit_unauth *u)
{
	if (u->bound)
		sealvm_bound_drain(u->bound, drain_one, (void *)u);
}
