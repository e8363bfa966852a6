// SPDX-License-Identifier: Apache-2.0
/*
 * audit_http.c — the events API: handlers and route table only.
 *
 *   GET /v1/events          the caller's account trail, filtered and paged:
 *                           from, to (epoch ms or YYYY-MM-DDTHH:MM:SSZ), action
 *                           (prefix), target, initiator, outcome, next, limit
 *   GET /v1/events/verify   recomputes the whole hash chain: ok, or the first
 *                           bad sequence number; ?checkpoint=JWS also proves the
 *                           chain still passes through a checkpoint taken earlier
 *   GET /v1/events/checkpoint  the chain head (seq, value) signed by the server,
 *                           to keep off the machine
 *
 * Reading the trail is itself an audited action. Queries are always scoped
 * to the caller's account; another account's events are unreachable here.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sealvm/audit.h"
#include "sealvm/http.h"
#include "sealvm/num.h"

struct audit_service {
	struct sealvm_db *db;
	const unsigned char *chain_key;
	struct audit_signer signer;
	struct http_service http;
};

#define CHECKPOINT_TYPE "sealvm-audit-checkpoint"

static void hex(const unsigned char *in, size_t n, char *out)
{
	for (size_t i = 0; i < n; i++)
		snprintf(out + 2 * i, 3, "%02x", in[i]);
}

static int unhex(const char *s, unsigned char *out, size_t n)
{
	if (!s || strlen(s) != 2 * n)
		return -EINVAL;
	for (size_t i = 0; i < n; i++) {
		unsigned v;
		if (sscanf(s + 2 * i, "%2x", &v) != 1)
			return -EINVAL;
		out[i] = (unsigned char)v;
	}
	return 0;
}

/* Verifies a checkpoint statement and extracts (seq, head). */
static int checkpoint_parse(struct audit_service *s, const char *jws, int64_t *ret_seq,
			    unsigned char head[AUDIT_CHAIN_SIZE], struct sealvm_err *err)
{
	json_t *claims = NULL;
	struct sealvm_err e = SEALVM_ERR_INIT;
	int r;

	if (!s->signer.verify)
		return sealvm_err_set(err, -ENOTSUP, "NO_SIGNER", "checkpoints are not available");
	r = s->signer.verify(s->signer.ctx, jws, &claims, &e);
	if (r < 0)
		return sealvm_err_set(err, -EINVAL, "INVALID_CHECKPOINT",
				      "checkpoint: not a checkpoint signed by this deployment (%s)",
				      e.reason);
	json_t *seq = json_object_get(claims, "seq");
	const char *typ = json_string_value(json_object_get(claims, "typ"));
	if (!typ || strcmp(typ, CHECKPOINT_TYPE) != 0 || !json_is_integer(seq) ||
	    json_integer_value(seq) < 1 ||
	    unhex(json_string_value(json_object_get(claims, "head")), head, AUDIT_CHAIN_SIZE) < 0) {
		json_decref(claims);
		return sealvm_err_set(
			err, -EINVAL, "INVALID_CHECKPOINT",
			"checkpoint: the signed statement is not an audit checkpoint");
	}
	*ret_seq = json_integer_value(seq);
	json_decref(claims);
	return 0;
}

/* epoch milliseconds, or an ISO 8601 UTC time "YYYY-MM-DDTHH:MM:SSZ" */
static int parse_time(const char *s, int64_t *ret)
{
	uint64_t v;
	struct tm tm = {0};
	if (sealvm_parse_u64(s, 0, (uint64_t)INT64_MAX, &v) == 0) {
		*ret = (int64_t)v;
		return 0;
	}
	const char *end = strptime(s, "%Y-%m-%dT%H:%M:%SZ", &tm);
	if (!end || *end)
		return -EINVAL;
	time_t t = timegm(&tm);
	if (t < 0)
		return -EINVAL;
	*ret = (int64_t)t * 1000;
	return 0;
}

static int events_list(struct http_request *req, struct http_response *resp, void *ctx,
		       struct sealvm_err *err)
{
	struct audit_service *s = ctx;
	const struct sealvm_principal *p = http_request_principal(req);
	struct audit_query q = {.account_id = p->account_id};
	static const char *const fields[] = {"from",	  "to",	     "action", "target",
					     "initiator", "outcome", "next",   "limit"};
	char *v[ELEMENTSOF(fields)] = {0};
	json_t *out = NULL;
	int r = 0;

	for (size_t i = 0; i < ELEMENTSOF(fields); i++)
		v[i] = http_request_query_field(req, fields[i]);
	if (v[0] && parse_time(v[0], &q.from_ms) < 0)
		r = sealvm_err_set(err, -EINVAL, "INVALID_FIELD",
				   "from: give epoch milliseconds or YYYY-MM-DDTHH:MM:SSZ");
	if (!r && v[1] && parse_time(v[1], &q.to_ms) < 0)
		r = sealvm_err_set(err, -EINVAL, "INVALID_FIELD",
				   "to: give epoch milliseconds or YYYY-MM-DDTHH:MM:SSZ");
	q.action_prefix = v[2];
	q.target = v[3];
	q.initiator = v[4];
	q.outcome = v[5];
	if (!r && v[6]) {
		uint64_t n;
		if (sealvm_parse_u64(v[6], 0, (uint64_t)INT64_MAX, &n) < 0)
			r = sealvm_err_set(err, -EINVAL, "INVALID_FIELD",
					   "next: use the value a previous page returned");
		q.after_seq = (int64_t)n;
	}
	if (!r && v[7] && sealvm_parse_uint(v[7], 1, AUDIT_QUERY_LIMIT_MAX, &q.limit) < 0)
		r = sealvm_err_set(err, -EINVAL, "INVALID_FIELD", "limit: give 1 to %d",
				   AUDIT_QUERY_LIMIT_MAX);
	if (!r) {
		sqlite3 *conn = db_read_begin(s->db);
		r = audit_query(conn, &q, &out, err);
		db_read_end(s->db, conn);
	}
	for (size_t i = 0; i < ELEMENTSOF(fields); i++)
		free(v[i]);
	if (r < 0)
		return r;
	resp->status = 200;
	resp->body = out;
	http_request_set_audit_data(
		req, NULL,
		json_pack("{s:I}", "events",
			  (json_int_t)json_array_size(json_object_get(out, "events"))));
	return 0;
}

static int events_verify(struct http_request *req, struct http_response *resp, void *ctx,
			 struct sealvm_err *err)
{
	struct audit_service *s = ctx;
	struct audit_verify_result res;
	char head[2 * AUDIT_CHAIN_SIZE + 1];
	unsigned char cp_head[AUDIT_CHAIN_SIZE];
	int64_t cp_seq = 0;
	char *cp = http_request_query_field(req, "checkpoint");
	int r = 0;

	if (cp) {
		r = checkpoint_parse(s, cp, &cp_seq, cp_head, err);
		free(cp);
		if (r < 0)
			return r;
	}
	sqlite3 *conn = db_read_begin(s->db);
	r = audit_verify(conn, s->chain_key, cp_seq, cp_seq ? cp_head : NULL, &res, err);
	db_read_end(s->db, conn);
	if (r < 0 && r != -EBADMSG)
		return r;
	hex(res.head, AUDIT_CHAIN_SIZE, head);
	resp->status = 200;
	resp->body =
		json_pack("{s:b, s:I, s:I, s:s}", "ok", res.ok, "events", (json_int_t)res.events,
			  "head_seq", (json_int_t)res.head_seq, "head", head);
	if (resp->body && cp_seq)
		json_object_set_new(resp->body, "checkpoint_seq", json_integer(cp_seq));
	if (resp->body && res.pruned_through)
		json_object_set_new(resp->body, "pruned_through", json_integer(res.pruned_through));
	if (resp->body && !res.ok) {
		json_object_set_new(resp->body, "first_bad_seq", json_integer(res.first_bad_seq));
		json_object_set_new(resp->body, "why", json_string(res.why));
	}
	http_request_set_audit_data(req, json_pack("{s:I}", "checkpoint_seq", (json_int_t)cp_seq),
				    json_pack("{s:b}", "ok", res.ok));
	return resp->body ? 0 : -ENOMEM;
}

static int events_checkpoint(struct http_request *req, struct http_response *resp, void *ctx,
			     struct sealvm_err *err)
{
	struct audit_service *s = ctx;
	struct audit_verify_result res;
	char head[2 * AUDIT_CHAIN_SIZE + 1], *jws = NULL;

	if (!s->signer.sign)
		return sealvm_err_set(err, -ENOTSUP, "NO_SIGNER", "checkpoints are not available");
	/* Only a head that verifies is worth signing. */
	sqlite3 *conn = db_read_begin(s->db);
	int r = audit_verify(conn, s->chain_key, 0, NULL, &res, err);
	db_read_end(s->db, conn);
	if (r < 0 && r != -EBADMSG)
		return r;
	if (!res.ok)
		return sealvm_err_set(
			err, -EBADMSG, "AUDIT_CHAIN_BROKEN",
			"the audit chain does not verify (first bad event %lld): no checkpoint",
			(long long)res.first_bad_seq);
	hex(res.head, AUDIT_CHAIN_SIZE, head);
	json_t *claims =
		json_pack("{s:s, s:I, s:s, s:I}", "typ", CHECKPOINT_TYPE, "seq",
			  (json_int_t)res.head_seq, "head", head, "iat", (json_int_t)time(NULL));
	if (!claims)
		return -ENOMEM;
	r = s->signer.sign(s->signer.ctx, claims, &jws, err);
	json_decref(claims);
	if (r < 0)
		return r;
	resp->status = 200;
	resp->body = json_pack("{s:I, s:s, s:s}", "seq", (json_int_t)res.head_seq, "head", head,
			       "checkpoint", jws);
	free(jws);
	http_request_set_audit_data(req, NULL, json_pack("{s:I}", "seq", (json_int_t)res.head_seq));
	return resp->body ? 0 : -ENOMEM;
}

static const struct http_route audit_routes[] = {
	{"GET", "/v1/events", events_list, NULL, "audit.events.read", "audit.events.list", 0, 0},
	{"GET", "/v1/events/verify", events_verify, NULL, "audit.events.verify",
	 "audit.events.verify", 0, 0},
	{"GET", "/v1/events/checkpoint", events_checkpoint, NULL, "audit.events.checkpoint",
	 "audit.events.checkpoint", 0, 0},
};

int audit_service_new(struct sealvm_db *db, const unsigned char *chain_key,
		      struct audit_service **ret)
{
	struct audit_service *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->db = db;
	s->chain_key = chain_key;
	s->http.name = "audit";
	s->http.routes = audit_routes;
	s->http.n_routes = ELEMENTSOF(audit_routes);
	s->http.ctx = s;
	*ret = s;
	return 0;
}

void audit_service_set_signer(struct audit_service *s, const struct audit_signer *signer)
{
	s->signer = *signer;
}

void audit_service_free(struct audit_service *s)
{
	free(s);
}

const struct http_service *audit_http(struct audit_service *s)
{
	return &s->http;
}
