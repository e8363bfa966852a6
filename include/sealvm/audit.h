/* SPDX-License-Identifier: Apache-2.0 */
/*
 * audit.h — Activity Tracker events (CADF), hash-chained, in the control-plane database.
 *
 * One event per request per acting service, success or failure. An event is
 * inserted in the same transaction as the state change it records (inside the
 * caller's db_write job), so after a crash neither exists without the other.
 * Each stored event carries chain = HMAC-SHA256(chain_key, prev_chain ||
 * seq || canonical event JSON); changing, removing or reordering any event
 * breaks every later link, and a checkpoint (the head, signed by the server)
 * kept elsewhere proves the chain was not truncated or rewritten by someone
 * holding the data dir. Events never carry secrets: request and response
 * data are built by services from non-secret fields only.
 */
#ifndef SEALVM_AUDIT_H
#define SEALVM_AUDIT_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>
#include <sqlite3.h>

#include "sealvm/db.h"
#include "sealvm/err.h"
#include "sealvm/principal.h"

/* The audit tables' migrations, for db_open. */
extern const struct db_migration audit_migrations[];
extern const size_t audit_n_migrations;

enum audit_outcome {
	AUDIT_SUCCESS,
	AUDIT_FAILURE,
	AUDIT_PENDING,
};

/* What a service knows about one event; audit_event_json turns it into CADF. */
struct audit_event {
	const char *action;         /* "iam-identity.account-serviceid.create" */
	enum audit_outcome outcome;
	int status;                 /* HTTP status: reason.reasonCode, and the severity */
	const char *reason_type;    /* short text, e.g. "Created", "Forbidden" */
	const char *failure;        /* reason.reasonForFailure (no secrets), or NULL */
	const struct sealvm_principal *initiator; /* NULL or kind NONE: unauthenticated */
	const char *host_address;   /* initiator.host.address */
	const char *user_agent;     /* initiator.host.agent */
	const char *target_id;      /* CRN */
	const char *target_name;
	const char *target_type;    /* typeURI, e.g. "iam-identity/serviceid" */
	const char *account_id;     /* whose trail it belongs to; NULL: the operator's */
	const char *correlation_id; /* the request id */
	bool data_event;            /* object reads/writes */
	json_t *request_data;       /* borrowed, may be NULL */
	json_t *response_data;      /* borrowed, may be NULL */
	int64_t time_ms;            /* 0 = now */
};

/*
 * The CADF JSON of @ev (new reference): eventTime "YYYY-MM-DDTHH:mm:ss.SS+0000",
 * action, outcome, reason {reasonCode, reasonType, reasonForFailure}, severity
 * (critical for 401/403/503/507, warning for 400/409/424/500/502/504/505,
 * else normal), initiator {id, name, typeURI, credential {type}, host
 * {address, agent}}, target {id, name, typeURI}, observer {name
 * "ActivityTracker"}, requestData, responseData, correlationId, dataEvent,
 * message "service: action outcome".
 */
json_t *audit_event_json(const struct audit_event *ev);

/*
 * Appends @ev to the chain, on @conn, inside the caller's write job (its
 * savepoint). @chain_key is the HMAC key (from the master key; 32 bytes).
 * Sets *ret_seq to the event's sequence number.
 */
int audit_append(sqlite3 *conn, const struct audit_event *ev, const unsigned char *chain_key,
		 int64_t *ret_seq, struct sealvm_err *err);

struct audit_query {
	const char *account_id;     /* required: the caller's account */
	int64_t from_ms, to_ms;     /* 0 = open */
	const char *action_prefix;  /* "iam-identity." */
	const char *target;         /* exact target id */
	const char *initiator;      /* exact initiator id */
	const char *outcome;        /* "success" | "failure" */
	int64_t after_seq;          /* paging: events with seq > after_seq */
	unsigned limit;             /* 1..1000, 0 = 100 */
};

/* Events matching @q, oldest first: {"events": [...], "next": seq or null}. New reference. */
int audit_query(sqlite3 *conn, const struct audit_query *q, json_t **ret, struct sealvm_err *err);

struct audit_verify_result {
	bool ok;
	int64_t events;             /* events checked */
	int64_t first_bad_seq;      /* 0 when ok */
	char why[256];
	unsigned char head[32];     /* chain value of the last event */
	int64_t head_seq;
};

/*
 * Recomputes the whole chain. With @checkpoint_seq > 0 also proves the chain
 * still passes through (@checkpoint_seq, @checkpoint_head).
 */
int audit_verify(sqlite3 *conn, const unsigned char *chain_key, int64_t checkpoint_seq,
		 const unsigned char *checkpoint_head, struct audit_verify_result *ret,
		 struct sealvm_err *err);

#endif
