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

/* Sizes of the chain key and of a chain value (HMAC-SHA256). */
#define AUDIT_CHAIN_KEY_SIZE 32
#define AUDIT_CHAIN_SIZE 32

/* Limits: events per query page (default when 0), canonical event text. */
#define AUDIT_QUERY_LIMIT_DEFAULT 100
#define AUDIT_QUERY_LIMIT_MAX 1000
#define AUDIT_EVENT_MAX_BYTES 32768

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
	const char *action; /* "iam-identity.account-serviceid.create" */
	enum audit_outcome outcome;
	int status;		 /* HTTP status: reason.reasonCode, and the severity */
	const char *reason_type; /* short text, e.g. "Created", "Forbidden" */
	const char *failure;	 /* reason.reasonForFailure (no secrets), or NULL */
	const struct sealvm_principal *initiator; /* NULL or kind NONE: unauthenticated */
	const char *host_address;		  /* initiator.host.address */
	const char *user_agent;			  /* initiator.host.agent */
	const char *target_id;			  /* CRN */
	const char *target_name;
	const char *target_type;    /* typeURI, e.g. "iam-identity/serviceid" */
	const char *account_id;	    /* whose trail it belongs to; NULL: the operator's */
	const char *correlation_id; /* the request id */
	bool data_event;	    /* object reads/writes */
	json_t *request_data;	    /* borrowed, may be NULL */
	json_t *response_data;	    /* borrowed, may be NULL */
	int64_t time_ms;	    /* 0 = now; stored truncated to hundredths, as eventTime */
	const char *severity;	    /* NULL: from status; else "normal"|"warning"|"critical" */
};

/*
 * The CADF JSON of @ev (new reference), or NULL when @ev is invalid (no
 * action, status outside 100..599, a string that is not UTF-8, an unknown
 * principal kind or severity) or memory ran out; audit_append says which.
 * Members, each present only when its input was given:
 *   eventTime "YYYY-MM-DDTHH:mm:ss.SS+0000" (UTC, hundredths), action,
 *   outcome "success"|"failure"|"pending", reason {reasonCode (= status),
 *   reasonType, reasonForFailure (outcome failure only)}, severity (@severity,
 *   else critical for 401/403/503/507, warning for 400/409/424/500/502/504/505,
 *   normal otherwise), initiator {id, name, typeURI, credential {type}, host
 *   {address, agent}} (typeURI service/security/account/user,
 *   .../account/serviceid, service/security/clientid for our own services,
 *   service/security/unauthenticated without a principal), target {id, name,
 *   typeURI}, observer {name "ActivityTracker"}, requestData and responseData
 *   (deep copies), correlationId, dataEvent (always), message "<service>:
 *   <verb> [<target name>] <outcome>" (service = the action's first
 *   dot-component, verb its last), and accountId (a sealvm addition: it puts
 *   the trail an event belongs to under the chain; absent for the operator's).
 */
json_t *audit_event_json(const struct audit_event *ev);

struct sealvm_bound;
/*
 * The operator's trail of one listener, bounded: requests that fail without
 * credentials are recorded one by one up to the bound per source and window
 * (bound.h); the rest are counted, and each count is recorded as one
 * sealvm.unauthenticated-requests.aggregate event (outcome failure, @status —
 * 401 on the API, 403 on S3 —, request data: listener, source, window_start,
 * window_s, suppressed) through the listener's own @write.
 */
struct audit_unauth {
	struct sealvm_bound *bound; /* NULL: every request recorded */
	int status;
	const char *listener; /* "api", "s3" */
	int (*write)(void *ctx, const struct audit_event *ev, struct sealvm_err *err);
	void *ctx;
};
/*
 * One unauthenticated failure from @source: 1 to record it, 0 when it is only
 * counted. A count due from an earlier window is written first (correlation
 * id @id); a negative errno when that write fails.
 */
int audit_unauth_admit(const struct audit_unauth *u, const char *source, const char *id,
		       struct sealvm_err *err);
/* At a stop: writes every count still pending (failures are logged). */
void audit_unauth_drain(const struct audit_unauth *u);

/*
 * Appends @ev to the chain, on @conn, inside the caller's transaction (its
 * write job's savepoint; -EINVAL AUDIT_NO_TRANSACTION in autocommit mode).
 * @conn NULL — a DB_JOB_LOG job in a log batch — appends to the event log
 * instead (audit_log_open; -EINVAL AUDIT_NO_TRANSACTION without one).
 * seq = last seq + 1 (1 for the first event); chain = HMAC-SHA256(@chain_key,
 * previous chain value (32 zero bytes for the first) || seq as 8 bytes big
 * endian || canonical JSON), where the canonical JSON is
 * json_dumps(audit_event_json(ev), JSON_COMPACT | JSON_SORT_KEYS |
 * JSON_ENSURE_ASCII) and is what is stored. @chain_key is AUDIT_CHAIN_KEY_SIZE
 * bytes (derived from the master key). Sets *ret_seq (may be NULL) on success.
 * Errors: -EINVAL (AUDIT_EVENT_INVALID: which field), -E2BIG (canonical text
 * over AUDIT_EVENT_MAX_BYTES), -EBADMSG (the stored head is corrupt), -ENOMEM,
 * -EIO (SQLite). On failure nothing was written by this call; the caller rolls
 * back its savepoint (audit is fail-closed).
 */
int audit_append(sqlite3 *conn, const struct audit_event *ev, const unsigned char *chain_key,
		 int64_t *ret_seq, struct sealvm_err *err);

/*
 * audit_append in two halves, so that the costly half runs outside the
 * database's single writer: audit_record_new builds and serializes @ev on any
 * thread (nothing of @ev is borrowed afterwards; the errors of building as
 * audit_append), and audit_record_append chains and stores the record inside
 * a write job (the errors of storing as audit_append). A record is appended
 * at most once; free it with audit_record_free (NULL is fine).
 */
struct audit_record;
int audit_record_new(const struct audit_event *ev, struct audit_record **ret,
		     struct sealvm_err *err);
int audit_record_append(sqlite3 *conn, const struct audit_record *rec,
			const unsigned char *chain_key, int64_t *ret_seq, struct sealvm_err *err);
void audit_record_free(struct audit_record *rec);

/*
 * The event log (decision 0024): events of requests that change nothing are
 * appended, a batch at a time (one write, one fdatasync), to segment files in
 * audit-log/ beside the database file instead of becoming rows; one chain
 * runs through rows and log records by seq, and every reader below merges
 * both. audit_log_open creates the directory, cuts off a record a crash cut
 * short, makes the log this process's (one per process) and sets it as @db's
 * log (db_set_log): from then on jobs queued with DB_JOB_LOG | DB_JOB_APPEND_ONLY
 * append their records with audit_record_append(NULL, ...). Close it after
 * db_close (or before any such job is queued).
 */
#define AUDIT_LOG_DIR "audit-log" /* beside the database file */
struct audit_log;
int audit_log_open(struct sealvm_db *db, struct audit_log **ret, struct sealvm_err *err);
void audit_log_close(struct audit_log *log);
/*
 * After audit_prune committed: removes the log segments every record of which
 * is at or below @through_seq (the newest segment stays). Returns how many.
 */
int audit_log_drop_through(sqlite3 *conn, int64_t through_seq, struct sealvm_err *err);

/*
 * Every event after the pruning anchor, rows and log records, oldest first,
 * each as the retention export writes it — one line {"seq", "chain" (hex),
 * "event"} — handed to @out (a non-zero return stops and is returned). The
 * whole trail, the operator's included: `sealvm events export --data-dir`.
 */
int audit_export(sqlite3 *conn, int (*out)(void *ctx, const char *line, size_t n), void *ctx,
		 struct sealvm_err *err);

struct audit_query {
	const char *account_id;	   /* required: the caller's account */
	int64_t from_ms, to_ms;	   /* 0 = open */
	const char *action_prefix; /* "iam-identity." */
	const char *target;	   /* exact target id */
	const char *initiator;	   /* exact initiator id */
	const char *outcome;	   /* "success" | "failure" | "pending" */
	int64_t after_seq;	   /* paging: events with seq > after_seq */
	unsigned limit;		   /* 1..1000, 0 = 100; above 1000: -EINVAL */
};

/*
 * Events of @q->account_id only (exact match; the operator's trail is not
 * reachable here), oldest first: {"events": [CADF objects as stored], "next":
 * seq or null}. Time range: from_ms <= time < to_ms. action_prefix is a
 * literal prefix (no wildcards). "next" is the seq of the last event returned
 * when more events match: pass it as after_seq to get the next page; null on
 * the last page. *ret is a new reference. Errors: -EINVAL (AUDIT_QUERY_INVALID:
 * no account, limit over 1000, unknown outcome, negative times, from > to,
 * negative after_seq), -EBADMSG (a stored event does not parse), -ENOMEM, -EIO.
 */
int audit_query(sqlite3 *conn, const struct audit_query *q, json_t **ret, struct sealvm_err *err);

struct audit_verify_result {
	bool ok;
	int64_t events;	       /* events checked (up to and including the first bad one) */
	int64_t first_bad_seq; /* 0 when ok */
	char why[256];	       /* "" when ok; else what was found, naming the seq */
	unsigned char
		head[AUDIT_CHAIN_SIZE]; /* chain value of the last (good) event; zeros: none */
	int64_t head_seq;		/* its seq; 0 when there is none */
	int64_t pruned_through;		/* events 1..this were removed by retention; 0: none */
};

/*
 * Recomputes the whole chain from the stored texts, streaming in seq order,
 * and checks that each row's indexed columns (time_ms, account_id, action,
 * outcome, target_id, initiator_id) say what its chained event says. With
 * @checkpoint_seq > 0 also proves the chain still passes through
 * (@checkpoint_seq, @checkpoint_head): a checkpoint beyond the last event
 * means the tail was removed; a different chain value there means a rewrite.
 * Checking the checkpoint's signature is the caller's job.
 * Returns 0 when the chain is intact (ret->ok), -EBADMSG (AUDIT_CHAIN_BROKEN)
 * when it is not — then @ret is filled too: first_bad_seq and why — and other
 * negative errnos when verification could not run (-EINVAL, -ENOMEM, -EIO).
 */
_warn_unused_result_ int audit_verify(sqlite3 *conn, const unsigned char *chain_key,
				      int64_t checkpoint_seq, const unsigned char *checkpoint_head,
				      struct audit_verify_result *ret, struct sealvm_err *err);

/*
 * Retention. audit_prune removes the events with seq <= @through_seq inside
 * the caller's write job, keeping the chain verifiable: it first appends an
 * operator-trail event `audit.events.prune` whose requestData names
 * {"throughSeq", "throughChain" (hex), "events"}, then deletes the rows and
 * moves the pruning anchor to (@through_seq, its chain value). Verification
 * then starts from the anchor, and accepts it only if a retained, chained
 * prune event names exactly it — so removing the oldest events by editing
 * the file is still detected. Returns the number of events removed (0 when
 * none is at or below @through_seq). @correlation_id may be NULL.
 */
int audit_prune(sqlite3 *conn, const unsigned char *chain_key, int64_t through_seq,
		const char *correlation_id, struct sealvm_err *err);

/*
 * The newest seq that retention may remove for @cutoff_ms: the last of the
 * oldest events (at most @max of them, in seq order) whose time is before
 * @cutoff_ms, stopping at the first that is not. *ret_seq = 0: none.
 */
int audit_prune_point(sqlite3 *conn, int64_t cutoff_ms, unsigned max, int64_t *ret_seq,
		      struct sealvm_err *err);

/*
 * The retention runner: a thread that every @interval_s removes the events
 * older than @retention_s (with audit_prune, in batches of at most 5000 per
 * write transaction), after writing them to @export_dir (NULL: no export) as
 * audit-<first seq>-<last seq>.jsonl, one {"seq", "chain" (hex), "event"}
 * per line, created 0600 and fsynced before the events are removed.
 */
struct audit_retention_config {
	unsigned retention_s;
	unsigned interval_s;
	const char *export_dir; /* borrowed */
};
struct audit_retention;
int audit_retention_new(struct sealvm_db *db, const unsigned char *chain_key,
			const struct audit_retention_config *cfg, struct audit_retention **ret,
			struct sealvm_err *err);
int audit_retention_start(struct audit_retention *r, struct sealvm_err *err);
/* One pass now, as the thread does it (tests; `sealvmd prune-audit`). */
int audit_retention_run_once(struct audit_retention *r, int64_t now_ms, uint64_t *ret_pruned,
			     struct sealvm_err *err);
/* Stops the thread (finishing the batch in hand) and frees. NULL is fine. */
void audit_retention_free(struct audit_retention *r);

/* ---- the events API (GET /v1/events, GET /v1/events/verify) ---------------------------- */

struct http_service;
struct audit_service;

/* The events API over @db; @chain_key (AUDIT_CHAIN_KEY_SIZE bytes) is borrowed. */
int audit_service_new(struct sealvm_db *db, const unsigned char *chain_key,
		      struct audit_service **ret);
void audit_service_free(struct audit_service *s);
const struct http_service *audit_http(struct audit_service *s);

/*
 * Checkpoints: GET /v1/events/checkpoint returns the chain head signed by the
 * server; GET /v1/events/verify?checkpoint=JWS proves the chain still passes
 * through it. The signer is the identity service's (set by the daemon).
 */
struct audit_signer {
	int (*sign)(void *ctx, const json_t *claims, char **ret, struct sealvm_err *err);
	int (*verify)(void *ctx, const char *jws, json_t **ret_claims, struct sealvm_err *err);
	void *ctx;
};
void audit_service_set_signer(struct audit_service *s, const struct audit_signer *signer);

#endif
