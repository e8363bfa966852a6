// SPDX-License-Identifier: Apache-2.0
/*
 * kms_http.c — the Key Protect v2 API: resolvers, handlers, the route table
 * and the Key Protect error envelope.
 *
 * Every route is under /api/v2 and names a key service instance with the
 * `bluemix-instance` header; the resolvers find it in the caller's account
 * (an unknown instance, one of another account or of another service: 404
 * INSTANCE_NOT_FOUND_ERR) and the key by id or alias (404
 * KEY_NOT_FOUND_ERR), so the ladder's authorization sees service "kms",
 * the instance, resource type "key" and the key id. Request bodies are
 * JSON under application/json or any Key Protect media type
 * (application/vnd.ibm.kms.*+json, application/vnd.ibm.collection+json);
 * unknown fields are refused (BAD_BODY_ERR naming the field). Errors answer
 * with Key Protect's envelope and status per reason code.
 *
 * Handlers parse and format only; kms.c does the work. Plaintexts, payloads
 * and encrypted nonces are copied into secret memory at once and their
 * copies in the parsed JSON wiped; they never go into audit data, which
 * carries ids, versions and states only.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sealvm/b64.h"
#include "sealvm/log.h"

#include "kms_internal.h"

/* ---- errors: Key Protect's envelope ------------------------------------------------------- */

static const struct {
	const char *code;
	int status;
} kp_status[] = {
	{"AUTHORIZATIONS_NOT_MET", 409},
	{"BAD_BODY_ERR", 400},
	{"BEARER_SUB_EXTRACTION_ERR", 400},
	{"BODY_QUERY_PARAM_MISMATCH_ERR", 400},
	{"COLLECTION_TOTAL_MISMATCH_ERR", 400},
	{"CONFIG_RULE_CONFLICT_ERR", 403},
	{"FEATURE_RESTRICTED_ERR", 403},
	{"IMPORT_TOKEN_EXPIRED_ERR", 409},
	{"IMPORT_TOKEN_NOT_FOUND_ERR", 404},
	{"INCOMPLETE_METADATA_ERR", 500},
	{"INCORRECT_NONCE_ERR", 400},
	{"INCORRECT_NONCE_IV_ERR", 400},
	{"INSTANCE_NOT_FOUND_ERR", 404},
	{"INVALID_FIELD_ERR", 400},
	{"INVALID_HEADER_ERR", 400},
	{"INVALID_QUERY_PARAM_ERR", 400},
	{"INVALID_SIG_EXP_ERR", 422},
	{"KEY_ACTION_INVALID_STATE_ERR", 409},
	{"KEY_ALIAS_NOT_FOUND_ERR", 404},
	{"KEY_ALIAS_NOT_UNIQUE_ERR", 409},
	{"KEY_ALIAS_QUOTA_ERR", 400},
	{"KEY_CREATE_IMPORT_ACCESS_ERR", 409},
	{"KEY_DELETED_ERR", 410},
	{"KEY_EXPIRED_ERR", 400},
	{"KEY_IMPT_REQ_ERR", 400},
	{"KEY_INVALID_STATE_ERR", 422},
	{"KEY_NOT_FOUND_ERR", 404},
	{"KEY_PAYLOAD_REQ_ERR", 400},
	{"KEY_RESTORE_EXPIRED", 400},
	{"KEY_RING_NOT_FOUND_ERR", 404},
	{"KEY_ROOT_REQ_ERR", 400},
	{"KEY_ROOT_REQ_REG_ERR", 422},
	{"KEY_ROTATION_NOT_PERMITTED", 409},
	{"KEY_VERSION_INVALID", 422},
	{"NOT_DUAL_AUTH_ERR", 409},
	{"NO_BODY_ERR", 400},
	{"NUM_COLLECTION_RESOURCE_ERR", 400},
	{"PREV_KEY_DEL_ERR", 409},
	{"PROTECTED_RESOURCE_ERR", 409},
	{"REGISTRATION_NOT_FOUND_ERR", 404},
	{"REQ_TOO_EARLY_ERR", 409},
	{"RESOURCE_OWNER_ERR", 403},
	{"SERVICE_ONLY_ERR", 403},
	{"UNAUTHORIZED_ERR", 401},
	{"UNPROCESSABLE_CIPHERTEXT_ERR", 422},
	{"UNSUPPORTED_MEDIA_TYPE_ERR", 415},
};

/* Key Protect's status for the reason code @code; @fallback for codes it does not list. */
static int kp_status_of(const char *code, int fallback)
{
	for (size_t i = 0; i < ELEMENTSOF(kp_status); i++)
		if (strcmp(kp_status[i].code, code) == 0)
			return kp_status[i].status;
	return fallback;
}

int kms_reason_status(const struct sealvm_err *err, int fallback)
{
	char buf[SEALVM_ERR_REASON_MAX];
	return kp_status_of(err ? kms_reason_code(err, buf, sizeof(buf)) : "", fallback);
}

static const char *phrase(int status)
{
	switch (status) {
	case 400:
		return "Bad Request";
	case 401:
		return "Unauthorized";
	case 403:
		return "Forbidden";
	case 404:
		return "Not Found";
	case 405:
		return "Method Not Allowed";
	case 409:
		return "Conflict";
	case 410:
		return "Gone";
	case 413:
		return "Payload Too Large";
	case 415:
		return "Unsupported Media Type";
	case 422:
		return "Unprocessable Entity";
	case 503:
		return "Service Unavailable";
	default:
		return status >= 500 ? "Internal Server Error" : "Error";
	}
}

/* A JSON string from text that may hold bytes that are not UTF-8 (they become '?'). */
static json_t *text(const char *s)
{
	json_t *j = json_string(s);
	if (j)
		return j;
	char *copy = strdup(s);
	if (!copy)
		return NULL;
	for (char *c = copy; *c; c++)
		if ((unsigned char)*c >= 0x80)
			*c = '?';
	j = json_string(copy);
	free(copy);
	return j;
}

static void kp_error(const struct http_request *req, int status, const struct sealvm_err *err,
		     struct http_response *resp)
{
	char buf[SEALVM_ERR_REASON_MAX];
	const char *code = kms_reason_code(err, buf, sizeof(buf));
	const char *field = strchr(err->reason, ':');
	char msg[SEALVM_ERR_MESSAGE_MAX + 64];

	/* The ladder's own reasons, in Key Protect's words where it has them. */
	if (!strcmp(code, "MALFORMED_JSON"))
		code = "BAD_BODY_ERR";
	else if (status == 401)
		code = "UNAUTHORIZED_ERR";
	status = kp_status_of(code, status);

	json_t *reason = json_pack("{s:s, s:o, s:i, s:s}", "code", code, "message",
				   text(err->message), "status", status, "moreInfo",
				   "https://cloud.ibm.com/apidocs/key-protect");
	if (reason && field && field[1])
		json_object_set_new(
			reason, "target",
			json_pack("{s:s, s:s}", "type",
				  strcmp(code, "INVALID_HEADER_ERR") == 0 ? "header" : "field",
				  "name", field + 1));
	snprintf(msg, sizeof(msg), "%s: %s", phrase(status), err->message);
	resp->body =
		json_pack("{s:{s:s, s:i}, s:[{s:o, s:[o]}]}", "metadata", "collectionType",
			  "application/vnd.ibm.kms.error+json", "collectionTotal", 1, "resources",
			  "errorMsg", text(msg), "reasons", reason ? reason : json_object());
	resp->status = status;
	(void)req;
}

/* ---- what the resolvers found, for the handler that follows on the same thread ----------- */

static __thread struct {
	const struct http_request *req;
	struct rc_instance inst;
	struct kms_key key;
	bool has_key;
} resolved;

static int resolve_instance(struct http_request *req, struct http_target *t, void *ctx,
			    struct sealvm_err *err)
{
	struct kms *kms = ctx;
	const char *guid = http_request_header(req, "bluemix-instance");
	resolved.req = NULL;
	if (!guid || !guid[0])
		return sealvm_err_set(err, -EINVAL, "INVALID_HEADER_ERR:bluemix-instance",
				      "the bluemix-instance header is required: the GUID of a key "
				      "service instance (POST /v2/resource_instances makes one)");
	int r = kms_instance_get(kms, http_request_principal(req)->account_id, guid, &resolved.inst,
				 err);
	if (r < 0)
		return r;
	kms_target(&resolved.inst, NULL, t);
	resolved.has_key = false;
	resolved.req = req;
	return 0;
}

static int resolve_key(struct http_request *req, struct http_target *t, void *ctx,
		       struct sealvm_err *err)
{
	struct kms *kms = ctx;
	int r = resolve_instance(req, t, ctx, err);
	if (r < 0)
		return r;
	resolved.req = NULL;
	r = kms_key_lookup(kms, resolved.inst.guid, http_request_param(req, "id"), &resolved.key,
			   err);
	if (r < 0)
		return r;
	kms_target(&resolved.inst, &resolved.key, t);
	resolved.has_key = true;
	resolved.req = req;
	return 0;
}

/* The call for a request, from what its resolver found (resolving again if needed). */
static int call_of(struct http_request *req, struct kms *kms, bool need_key, struct kms_call *c,
		   struct kms_key *key, struct sealvm_err *err)
{
	if (resolved.req != req || (need_key && !resolved.has_key)) {
		struct http_target t;
		int r = need_key ? resolve_key(req, &t, kms, err)
				 : resolve_instance(req, &t, kms, err);
		if (r < 0)
			return r;
	}
	memset(c, 0, sizeof(*c));
	c->kms = kms;
	c->p = http_request_principal(req);
	c->inst = resolved.inst;
	c->req = req;
	if (need_key)
		*key = resolved.key;
	return 0;
}

/* The request's body, parsed as @kind. */
static int parse(struct http_request *req, enum kms_req_kind kind, struct kms_request *ret,
		 struct sealvm_err *err)
{
	size_t len;
	const unsigned char *body = http_request_body(req, &len);
	return kms_request_parse(kind, http_request_header(req, "Content-Type"), body, len, ret,
				 err);
}

/* `prefer: return=minimal | return=representation`; @dflt when absent. */
static bool prefer_representation(struct http_request *req, bool dflt)
{
	const char *p = http_request_header(req, "prefer");
	if (!p)
		return dflt;
	if (strstr(p, "return=representation"))
		return true;
	if (strstr(p, "return=minimal"))
		return false;
	return dflt;
}

static int err_code(const struct sealvm_err *err)
{
	return sealvm_err_isset(err) ? err->code : -EIO;
}

/* The x-kms-key-ring header; NULL when it is absent or empty. */
static const char *key_ring_header(struct http_request *req)
{
	const char *ring = http_request_header(req, "x-kms-key-ring");
	return ring && ring[0] ? ring : NULL;
}

/*
 * Routes that differ in one argument share a function: @name is the route's
 * handler, and calls @fn with @arg.
 */
#define HANDLER_WITH(name, fn, arg)                                                                \
	static int name(struct http_request *req, struct http_response *resp, void *ctx,           \
			struct sealvm_err *err)                                                    \
	{                                                                                          \
		return fn(req, resp, ctx, arg, err);                                               \
	}

/* ---- responses ---------------------------------------------------------------------------------
 */

#define KP_KEY "application/vnd.ibm.kms.key+json"
#define KP_POLICY "application/vnd.ibm.kms.policy+json"
#define KP_REGISTRATION "application/vnd.ibm.kms.registration+json"

static json_t *envelope(const char *type, json_t *resources)
{
	if (!resources)
		return NULL;
	return json_pack("{s:{s:s, s:I}, s:o}", "metadata", "collectionType", type,
			 "collectionTotal", (json_int_t)json_array_size(resources), "resources",
			 resources);
}

/* 0 once the answer has its body; a body that could not be built ran out of memory. */
static int answered(const struct http_response *resp, struct sealvm_err *err)
{
	return resp->body ? 0 : sealvm_err_set(err, -ENOMEM, NULL, "out of memory");
}

/* Answers @status with the envelope of @type around @resources (stolen; NULL: no memory). */
static int reply(struct http_response *resp, int status, const char *type, json_t *resources,
		 struct sealvm_err *err)
{
	resp->status = status;
	resp->body = envelope(type, resources);
	return answered(resp, err);
}

/* After an operation that returned @r: 204 without a body, or @r's errno. */
static int no_content(struct http_response *resp, int r)
{
	if (r < 0)
		return r;
	resp->status = 204;
	return 0;
}

/* Answers the list a listing (result @r) filled into @items (stolen; NULL: no memory). */
static int list_reply(struct http_response *resp, const char *type, json_t *items, int r,
		      struct sealvm_err *err)
{
	if (r < 0) {
		json_decref(items);
		return r == -ENOMEM ? sealvm_err_set(err, r, NULL, "out of memory") : r;
	}
	return reply(resp, 200, type, items, err);
}

/* The audit data of a list over an instance: the instance and how many were listed. */
static void list_audit(struct http_request *req, const char *instance, const json_t *items)
{
	http_request_set_audit_data(
		req, json_pack("{s:s}", "instanceID", instance),
		json_pack("{s:I}", "totalResources", (json_int_t)json_array_size(items)));
}

static void set_time(json_t *o, const char *name, int64_t ms)
{
	char t[32];
	if (ms > 0)
		json_object_set_new(o, name, json_string(kms_time_text(ms, t, sizeof(t))));
}

/* A key as Key Protect shows it (new reference). @aliases stolen; @payload NULL: none shown. */
static json_t *key_json(struct kms *kms, const struct kms_key *k, json_t *aliases,
			const struct sealvm_secret *payload)
{
	int64_t now = kms_now_ms();
	char bits[16];
	snprintf(bits, sizeof(bits), "%d", k->bits);
	json_t *o = json_pack(
		"{s:s, s:s, s:s, s:o, s:i, s:b, s:s, s:b, s:s, s:s, s:s, s:{s:s, s:s}, s:i, s:s,"
		" s:{s:s}, s:b}",
		"type", "application/vnd.ibm.kms.key+json", "id", k->id, "name", k->name, "aliases",
		aliases ? aliases : json_array(), "state", kms_effective_state(k, now),
		"extractable", k->extractable, "crn", k->crn, "imported", k->imported, "keyRingID",
		k->key_ring, "createdBy", k->created_by, "algorithmType", "AES",
		"algorithmMetadata", "bitLength", bits, "mode", "Deprecated", "algorithmBitSize",
		k->bits, "algorithmMode", "Deprecated", "keyVersion", "id", k->version_id,
		"deleted", k->state == KMS_DESTROYED);
	if (!o)
		return NULL;
	if (k->description[0])
		json_object_set_new(o, "description", json_string(k->description));
	set_time(o, "creationDate", k->created_ms);
	set_time(o, "lastUpdateDate", k->updated_ms);
	set_time(o, "lastRotateDate", k->rotated_ms);
	set_time(o, "expirationDate", k->expiration_ms);
	set_time(json_object_get(o, "keyVersion"), "creationDate", k->version_ms);
	json_t *da = json_pack("{s:b}", "enabled", k->dual_auth);
	if (da && k->dual_auth) {
		bool set = k->deletion_by[0] && k->deletion_expires_ms > now;
		json_object_set_new(da, "keySetForDeletion", json_boolean(set));
		if (set)
			set_time(da, "authExpiration", k->deletion_expires_ms);
	}
	json_object_set_new(o, "dualAuthDelete", da);
	if (k->state == KMS_DESTROYED) {
		set_time(o, "deletionDate", k->deleted_ms);
		json_object_set_new(o, "deletedBy", json_string(k->deleted_by));
		set_time(o, "restoreExpirationDate",
			 k->deleted_ms + kms->cfg.restore_window_s * 1000);
		json_object_set_new(
			o, "restoreAllowed",
			json_boolean(now - k->deleted_ms <= kms->cfg.restore_window_s * 1000));
		json_object_set_new(
			o, "purgeAllowed",
			json_boolean(now - k->deleted_ms >= kms->cfg.purge_delay_s * 1000));
		set_time(o, "purgeAllowedFrom", k->deleted_ms + kms->cfg.purge_delay_s * 1000);
		set_time(o, "purgeScheduledOn", k->deleted_ms + 90LL * 86400 * 1000);
	}
	if (payload) {
		_cleanup_free_ char *b64 = malloc(sealvm_b64_encoded_len(payload->len, false) + 1);
		if (!b64) {
			json_decref(o);
			return NULL;
		}
		sealvm_b64_encode(payload->data, payload->len, b64, false);
		json_object_set_new(o, "payload", json_string(b64));
		explicit_bzero(b64, strlen(b64));
	}
	return o;
}

static json_t *key_json_full(struct kms *kms, const struct kms_key *k,
			     const struct sealvm_secret *payload, struct sealvm_err *err)
{
	json_t *aliases = NULL;
	if (kms_op_aliases(kms, k->id, &aliases, err) < 0)
		return NULL;
	json_t *o = key_json(kms, k, aliases, payload);
	if (!o)
		sealvm_err_set(err, -ENOMEM, NULL, "out of memory");
	return o;
}

static int key_response(struct kms *kms, const struct kms_key *k,
			const struct sealvm_secret *payload, int status, struct http_response *resp,
			struct sealvm_err *err)
{
	json_t *o = key_json_full(kms, k, payload, err);
	if (!o)
		return err_code(err);
	return reply(resp, status, KP_KEY, json_pack("[o]", o), err);
}

/* ---- keys
 * ---------------------------------------------------------------------------------------- */

/*
 * The material a create or rotate body @q carries, into *@ret (none without
 * a payload): a secure import under the instance's import token
 * (*@ret_secure), or the payload's base64 of at most @max bytes.
 */
static int body_material(const struct kms_call *c, const struct kms_request *q, size_t max,
			 struct sealvm_secret **ret, bool *ret_secure, struct sealvm_err *err)
{
	/* kms_request_parse has made sure a secure import has its payload. */
	bool secure = q->encrypted_nonce || q->iv || q->algorithm;
	if (ret_secure)
		*ret_secure = secure;
	if (secure)
		return kms_import_unwrap(c->kms, c->inst.guid, q->algorithm,
					 (const char *)q->payload->data, q->encrypted_nonce, q->iv,
					 ret, err);
	if (q->payload)
		return kms_b64_secret_decode((const char *)q->payload->data, q->payload->len, max,
					     "payload", ret, err);
	return 0;
}

static int h_key_create(struct http_request *req, struct http_response *resp, void *ctx,
			struct sealvm_err *err)
{
	struct kms *kms = ctx;
	struct kms_call c;
	struct kms_key k;
	struct kms_request q;
	_cleanup_secret_ struct sealvm_secret *material = NULL;
	struct kms_create_input in = {0};
	int r;

	if ((r = call_of(req, kms, false, &c, NULL, err)) < 0 ||
	    (r = parse(req, KMS_REQ_CREATE, &q, err)) < 0)
		return r;
	r = body_material(&c, &q, KMS_STANDARD_KEY_MAX, &material, &in.secure, err);
	if (r < 0)
		goto out;
	in.payload = material;
	in.name = q.name;
	in.description = q.description;
	in.aliases = q.aliases;
	in.n_aliases = q.n_aliases;
	in.expiration_ms = q.expiration_ms;
	in.extractable = q.extractable;
	in.key_ring = key_ring_header(req);
	c.ok_status = 201;
	r = kms_op_create(&c, &in, &k, err);
	if (r < 0)
		goto out;
	/* The creator may see a standard key's material (Writer includes kms.secrets.read). */
	bool full = prefer_representation(req, true);
	r = key_response(kms, &k, full && k.extractable ? material : NULL, 201, resp, err);
out:
	kms_request_done(&q);
	return r;
}

static int parse_uint_param(struct http_request *req, const char *name, unsigned min, unsigned max,
			    unsigned dflt, unsigned *ret, struct sealvm_err *err)
{
	char *v = http_request_query_field(req, name);
	*ret = dflt;
	if (!v) {
		if (errno == ENOENT)
			return 0;
		return kms_field_error(err, -EINVAL, "INVALID_QUERY_PARAM_ERR", name,
				       "the query parameter '%s' is malformed or given twice",
				       name);
	}
	char *end;
	errno = 0;
	unsigned long n = strtoul(v, &end, 10);
	bool bad = !v[0] || *end || errno || !isdigit((unsigned char)v[0]) || n < min || n > max;
	free(v);
	if (bad)
		return kms_field_error(
			err, -EINVAL, "INVALID_QUERY_PARAM_ERR", name,
			"the query parameter '%s' must be a whole number from %u to %u", name, min,
			max);
	*ret = (unsigned)n;
	return 0;
}

/* ?limit= and ?offset= of a list. */
static int page_params(struct http_request *req, unsigned *ret_limit, unsigned *ret_offset,
		       struct sealvm_err *err)
{
	int r = parse_uint_param(req, "limit", 1, 5000, 200, ret_limit, err);
	return r < 0 ? r : parse_uint_param(req, "offset", 0, 1000000000, 0, ret_offset, err);
}

struct list_ctx {
	struct kms *kms;
	json_t *items;
	struct sealvm_err *err;
};

static int list_one(const struct kms_key *k, void *arg)
{
	struct list_ctx *l = arg;
	json_t *o = key_json_full(l->kms, k, NULL, l->err);
	if (!o)
		return err_code(l->err);
	return json_array_append_new(l->items, o) == 0 ? 0 : -ENOMEM;
}

static int h_key_list(struct http_request *req, struct http_response *resp, void *ctx,
		      struct sealvm_err *err)
{
	struct kms *kms = ctx;
	struct kms_call c;
	struct kms_list_query q = {.extractable = -1, .now_ms = kms_now_ms()};
	int r;
	if ((r = call_of(req, kms, false, &c, NULL, err)) < 0 ||
	    (r = page_params(req, &q.limit, &q.offset, err)) < 0)
		return r;
	q.instance = c.inst.guid;
	q.state_mask = 1u << 0 | 1u << 1 | 1u << 2 | 1u << 3;
	char *state = http_request_query_field(req, "state");
	if (state) {
		q.state_mask = 0;
		bool bad = !state[0];
		for (char *tok = state, *next; tok && !bad; tok = next) {
			next = strchr(tok, ',');
			if (next)
				*next++ = '\0';
			if (strlen(tok) == 1 && strchr("01235", tok[0]))
				q.state_mask |= 1u << (tok[0] - '0');
			else
				bad = true;
		}
		free(state);
		if (bad)
			return kms_field_error(
				err, -EINVAL, "INVALID_QUERY_PARAM_ERR", "state",
				"the query parameter 'state' must be a comma-separated "
				"list of 0, 1, 2, 3 and 5");
	} else if (errno != ENOENT) {
		return kms_field_error(err, -EINVAL, "INVALID_QUERY_PARAM_ERR", "state",
				       "the query parameter 'state' is malformed or given twice");
	}
	char *ex = http_request_query_field(req, "extractable");
	if (ex) {
		q.extractable = !strcmp(ex, "true") ? 1 : !strcmp(ex, "false") ? 0 : -2;
		free(ex);
		if (q.extractable == -2)
			return kms_field_error(err, -EINVAL, "INVALID_QUERY_PARAM_ERR",
					       "extractable",
					       "the query parameter 'extractable' must be true or "
					       "false");
	}
	q.key_ring = key_ring_header(req);
	struct list_ctx l = {.kms = kms, .items = json_array(), .err = err};
	r = l.items ? kms_op_list(kms, &q, list_one, &l, err) : -ENOMEM;
	if (r >= 0)
		list_audit(req, c.inst.guid, l.items);
	return list_reply(resp, KP_KEY, l.items, r, err);
}

static void key_audit(struct http_request *req, const struct kms_key *k)
{
	http_request_set_audit_data(
		req, json_pack("{s:s, s:s}", "instanceID", k->instance, "keyRingId", k->key_ring),
		json_pack("{s:s, s:i, s:s}", "keyId", k->id, "keyState",
			  kms_effective_state(k, kms_now_ms()), "keyVersionId", k->version_id));
}

/* GET /keys/{id} (@with_payload) and /keys/{id}/metadata. */
static int key_read(struct http_request *req, struct http_response *resp, struct kms *kms,
		    bool with_payload, struct sealvm_err *err)
{
	struct kms_call c;
	struct kms_key k;
	_cleanup_secret_ struct sealvm_secret *payload = NULL;
	int r = call_of(req, kms, true, &c, &k, err);
	if (r < 0)
		return r;
	/* Only a standard key shows its material, and the route needs kms.secrets.read. */
	if (with_payload && k.extractable && k.state != KMS_DESTROYED) {
		r = kms_op_payload(kms, &k, &payload, err);
		if (r < 0)
			return r;
	}
	key_audit(req, &k);
	return key_response(kms, &k, payload, 200, resp, err);
}

HANDLER_WITH(h_key_get, key_read, true)
HANDLER_WITH(h_key_metadata, key_read, false)

static int version_one(const struct kms_version *v, void *arg)
{
	char t[32];
	return json_array_append_new(arg, json_pack("{s:s, s:s}", "id", v->id, "creationDate",
						    kms_time_text(v->created_ms, t, sizeof(t)))) ==
			       0
		       ? 0
		       : -ENOMEM;
}

static int h_key_versions(struct http_request *req, struct http_response *resp, void *ctx,
			  struct sealvm_err *err)
{
	struct kms *kms = ctx;
	struct kms_call c;
	struct kms_key k;
	int r;
	if ((r = call_of(req, kms, true, &c, &k, err)) < 0 ||
	    (r = kms_check_action(&kms->cfg, &k, KMS_A_VERSIONS, kms_now_ms(), err)) < 0)
		return r;
	json_t *items = json_array();
	r = items ? kms_op_versions(kms, k.id, version_one, items, err) : -ENOMEM;
	if (r >= 0)
		key_audit(req, &k);
	return list_reply(resp, "application/vnd.ibm.kms.key_version+json", items, r, err);
}

/* ---- actions
 * ------------------------------------------------------------------------------------- */

/* The audit data of wrap, unwrap and rewrap: the key, and @response_data (stolen). */
static void wrap_audit(struct http_request *req, const struct kms_key *k, json_t *response_data)
{
	http_request_set_audit_data(
		req, json_pack("{s:s, s:s}", "instanceID", k->instance, "keyId", k->id),
		response_data);
}

static int h_wrap(struct http_request *req, struct http_response *resp, void *ctx,
		  struct sealvm_err *err)
{
	struct kms *kms = ctx;
	struct kms_call c;
	struct kms_key k;
	struct kms_wrap_result w = {0};
	struct kms_request q;
	int r;

	if ((r = call_of(req, kms, true, &c, &k, err)) < 0 ||
	    (r = parse(req, KMS_REQ_WRAP, &q, err)) < 0)
		return r;
	wrap_audit(req, &k, NULL);
	r = kms_op_wrap(&c, &k, q.plaintext, q.aad, q.n_aad, &w, err);
	kms_request_done(&q);
	if (r < 0)
		return r;
	wrap_audit(req, &k, json_pack("{s:s}", "keyVersionId", w.key_version));
	resp->body = json_pack("{s:s, s:{s:s}}", "ciphertext", w.ciphertext, "keyVersion", "id",
			       w.key_version);
	if (resp->body && w.plaintext)
		json_object_set_new(
			resp->body, "plaintext",
			json_stringn((const char *)w.plaintext->data, w.plaintext->len));
	kms_wrap_result_done(&w);
	resp->status = 200;
	return answered(resp, err);
}

/* unwrap, and rewrap (@rewrap): the same body, the same operation. */
static int unwrap_common(struct http_request *req, struct http_response *resp, struct kms *kms,
			 bool rewrap, struct sealvm_err *err)
{
	struct kms_call c;
	struct kms_key k;
	struct kms_unwrap_result u = {0};
	struct kms_request q;
	int r;

	if ((r = call_of(req, kms, true, &c, &k, err)) < 0 ||
	    (r = parse(req, KMS_REQ_UNWRAP, &q, err)) < 0)
		return r;
	wrap_audit(req, &k, NULL);
	r = kms_op_unwrap(kms, &k, q.ciphertext, q.aad, q.n_aad, rewrap, &u, err);
	kms_request_done(&q);
	if (r < 0)
		return r;
	json_t *audit = json_pack("{s:s}", "keyVersionId", u.key_version);
	if (audit && u.rewrapped)
		json_object_set_new(audit, "rewrappedKeyVersionId",
				    json_string(u.rewrapped_version));
	wrap_audit(req, &k, audit);
	resp->body = json_pack("{s:{s:s}}", "keyVersion", "id", u.key_version);
	if (resp->body && !rewrap)
		json_object_set_new(
			resp->body, "plaintext",
			json_stringn((const char *)u.plaintext->data, u.plaintext->len));
	if (resp->body && u.rewrapped) {
		json_object_set_new(resp->body, "ciphertext", json_string(u.rewrapped));
		json_object_set_new(resp->body, "rewrappedKeyVersion",
				    json_pack("{s:s}", "id", u.rewrapped_version));
	}
	kms_unwrap_result_done(&u);
	resp->status = 200;
	return answered(resp, err);
}

HANDLER_WITH(h_unwrap, unwrap_common, false)
HANDLER_WITH(h_rewrap, unwrap_common, true)

static int h_rotate(struct http_request *req, struct http_response *resp, void *ctx,
		    struct sealvm_err *err)
{
	struct kms *kms = ctx;
	struct kms_call c;
	struct kms_key k;
	struct kms_request q;
	_cleanup_secret_ struct sealvm_secret *material = NULL;
	int r;

	if ((r = call_of(req, kms, true, &c, &k, err)) < 0 ||
	    (r = parse(req, KMS_REQ_ROTATE, &q, err)) < 0)
		return r;
	if (q.payload && !k.imported)
		r = kms_field_error(err, -EINVAL, "BAD_BODY_ERR", "payload",
				    "this root key was generated by the service: rotate it without "
				    "a payload (the new material is generated too)");
	else
		r = body_material(&c, &q, 32, &material, NULL, err);
	kms_request_done(&q);
	if (r < 0)
		return r;
	c.ok_status = 204;
	return no_content(resp, kms_op_rotate(&c, k.id, material, err));
}

/* disable, enable, setKeyForDeletion, unsetKeyForDeletion: no body, 204. */
static int simple_action(struct http_request *req, struct http_response *resp, struct kms *kms,
			 enum kms_action a, struct sealvm_err *err)
{
	struct kms_call c;
	struct kms_key k;
	struct kms_request q;
	int r;
	if ((r = call_of(req, kms, true, &c, &k, err)) < 0 ||
	    (r = parse(req, KMS_REQ_EMPTY, &q, err)) < 0)
		return r;
	kms_request_done(&q);
	c.ok_status = 204;
	return no_content(resp, kms_op_set_state(&c, k.id, a, NULL, err));
}

HANDLER_WITH(h_disable, simple_action, KMS_A_DISABLE)
HANDLER_WITH(h_enable, simple_action, KMS_A_ENABLE)
HANDLER_WITH(h_set_deletion, simple_action, KMS_A_SET_DELETION)
HANDLER_WITH(h_unset_deletion, simple_action, KMS_A_UNSET_DELETION)

static int h_restore(struct http_request *req, struct http_response *resp, void *ctx,
		     struct sealvm_err *err)
{
	struct kms *kms = ctx;
	struct kms_call c;
	struct kms_key k;
	struct kms_request q;
	int r;
	if ((r = call_of(req, kms, true, &c, &k, err)) < 0 ||
	    (r = parse(req, KMS_REQ_RESTORE, &q, err)) < 0)
		return r;
	kms_request_done(&q);
	c.ok_status = 201;
	r = kms_op_set_state(&c, k.id, KMS_A_RESTORE, &k, err);
	if (r < 0)
		return r;
	return key_response(kms, &k, NULL, 201, resp, err);
}

static int force_param(struct http_request *req, bool *ret, struct sealvm_err *err)
{
	char *v = http_request_query_field(req, "force");
	*ret = false;
	if (!v)
		return errno == ENOENT
			       ? 0
			       : kms_field_error(err, -EINVAL, "INVALID_QUERY_PARAM_ERR", "force",
						 "the query parameter 'force' is malformed or "
						 "given twice");
	int r = 0;
	if (!strcmp(v, "true"))
		*ret = true;
	else if (strcmp(v, "false") != 0)
		r = kms_field_error(err, -EINVAL, "INVALID_QUERY_PARAM_ERR", "force",
				    "the query parameter 'force' must be true or false");
	free(v);
	return r;
}

static int h_key_delete(struct http_request *req, struct http_response *resp, void *ctx,
			struct sealvm_err *err)
{
	struct kms *kms = ctx;
	struct kms_call c;
	struct kms_key k;
	bool force;
	int r;
	if ((r = call_of(req, kms, true, &c, &k, err)) < 0 ||
	    (r = force_param(req, &force, err)) < 0)
		return r;
	bool repr = prefer_representation(req, false);
	c.ok_status = repr ? 200 : 204;
	r = kms_op_delete(&c, k.id, force, &k, err);
	if (r < 0 || !repr)
		return no_content(resp, r);
	return key_response(kms, &k, NULL, 200, resp, err);
}

static int h_key_purge(struct http_request *req, struct http_response *resp, void *ctx,
		       struct sealvm_err *err)
{
	struct kms *kms = ctx;
	struct kms_call c;
	struct kms_key k;
	int r = call_of(req, kms, true, &c, &k, err);
	if (r < 0)
		return r;
	bool repr = prefer_representation(req, false);
	c.ok_status = repr ? 200 : 204;
	r = kms_op_purge(&c, k.id, &k, err);
	if (r < 0 || !repr)
		return no_content(resp, r);
	/* The aliases went with the key's rows. */
	return reply(resp, 200, KP_KEY, json_pack("[o]", key_json(kms, &k, json_array(), NULL)),
		     err);
}

/* ---- aliases
 * ------------------------------------------------------------------------------------- */

static int h_alias_create(struct http_request *req, struct http_response *resp, void *ctx,
			  struct sealvm_err *err)
{
	struct kms_call c;
	struct kms_key k;
	int64_t created;
	char t[32];
	const char *alias = http_request_param(req, "alias");
	int r;
	if ((r = call_of(req, ctx, true, &c, &k, err)) < 0 ||
	    (r = kms_op_alias_create(&c, k.id, alias, &created, err)) < 0)
		return r;
	return reply(resp, 201, "application/vnd.ibm.kms.alias+json",
		     json_pack("[{s:s, s:s, s:s, s:s}]", "keyId", k.id, "alias", alias, "createdBy",
			       c.p->iam_id, "creationDate", kms_time_text(created, t, sizeof(t))),
		     err);
}

static int h_alias_delete(struct http_request *req, struct http_response *resp, void *ctx,
			  struct sealvm_err *err)
{
	struct kms_call c;
	struct kms_key k;
	int r = call_of(req, ctx, true, &c, &k, err);
	if (r >= 0)
		r = kms_op_alias_delete(&c, k.id, http_request_param(req, "alias"), err);
	return no_content(resp, r);
}

/* ---- policies
 * ------------------------------------------------------------------------------------ */

/* ?policy= must be absent or dualAuthDelete (the one policy this service keeps). */
static int policy_param(struct http_request *req, bool required, struct sealvm_err *err)
{
	char *v = http_request_query_field(req, "policy");
	if (!v) {
		if (errno == ENOENT && !required)
			return 0;
		return kms_field_error(
			err, -EINVAL, "INVALID_QUERY_PARAM_ERR", "policy",
			"the query parameter 'policy' is required: policy=dualAuthDelete");
	}
	bool ok = strcmp(v, "dualAuthDelete") == 0;
	free(v);
	if (!ok)
		return kms_field_error(err, -EINVAL, "INVALID_QUERY_PARAM_ERR", "policy",
				       "the only policy this service keeps is dualAuthDelete");
	return 0;
}

/* A key's policy, answered as Key Protect's envelope with one resource. */
static int key_policy_reply(struct http_response *resp, const struct kms_key *k,
			    struct sealvm_err *err)
{
	char t[32];
	json_t *o = json_pack(
		"{s:s, s:s, s:{s:b}, s:s}", "type", "application/vnd.ibm.kms.policy+json", "crn",
		k->crn, "dualAuthDelete", "enabled", k->dual_auth, "updatedBy", k->updated_by);
	if (o)
		json_object_set_new(o, "lastUpdateDate",
				    json_string(kms_time_text(k->updated_ms, t, sizeof(t))));
	return reply(resp, 200, KP_POLICY, json_pack("[o]", o), err);
}

static int h_key_policy_get(struct http_request *req, struct http_response *resp, void *ctx,
			    struct sealvm_err *err)
{
	struct kms_call c;
	struct kms_key k;
	int r;
	if ((r = call_of(req, ctx, true, &c, &k, err)) < 0 ||
	    (r = policy_param(req, false, err)) < 0)
		return r;
	return key_policy_reply(resp, &k, err);
}

/* The policy's "enabled", from the key's or the instance's body shape (kms_request.c). */
static int policy_body(struct http_request *req, bool instance, bool *ret, struct sealvm_err *err)
{
	struct kms_request q;
	int r = parse(req, instance ? KMS_REQ_INSTANCE_POLICY : KMS_REQ_KEY_POLICY, &q, err);
	if (r < 0)
		return r;
	*ret = q.enabled;
	kms_request_done(&q);
	return 0;
}

static int h_key_policy_put(struct http_request *req, struct http_response *resp, void *ctx,
			    struct sealvm_err *err)
{
	struct kms_call c;
	struct kms_key k;
	bool on;
	int r;
	if ((r = call_of(req, ctx, true, &c, &k, err)) < 0 ||
	    (r = policy_param(req, true, err)) < 0 || (r = policy_body(req, false, &on, err)) < 0)
		return r;
	c.ok_status = 200;
	r = kms_op_key_policy(&c, k.id, on, &k, err);
	if (r < 0)
		return r;
	return key_policy_reply(resp, &k, err);
}

static int h_instance_policy_get(struct http_request *req, struct http_response *resp, void *ctx,
				 struct sealvm_err *err)
{
	struct kms *kms = ctx;
	struct kms_call c;
	bool on;
	int64_t updated;
	char by[KMS_IAM_ID_MAX], t[32];
	int r;
	if ((r = call_of(req, kms, false, &c, NULL, err)) < 0 ||
	    (r = policy_param(req, false, err)) < 0 ||
	    (r = kms_op_instance_policy_get(kms, c.inst.guid, &on, &updated, by, err)) < 0)
		return r;
	json_t *o = json_pack("{s:s, s:{s:b}}", "policy_type", "dualAuthDelete", "policy_data",
			      "enabled", on);
	if (o && r > 0) {
		json_object_set_new(o, "updatedBy", json_string(by));
		json_object_set_new(o, "lastUpdated",
				    json_string(kms_time_text(updated, t, sizeof(t))));
	}
	return reply(resp, 200, KP_POLICY, json_pack("[o]", o), err);
}

static int h_instance_policy_put(struct http_request *req, struct http_response *resp, void *ctx,
				 struct sealvm_err *err)
{
	struct kms_call c;
	bool on;
	int r;
	if ((r = call_of(req, ctx, false, &c, NULL, err)) < 0 ||
	    (r = policy_param(req, true, err)) < 0 || (r = policy_body(req, true, &on, err)) < 0)
		return r;
	c.ok_status = 204;
	return no_content(resp, kms_op_instance_policy_set(&c, on, err));
}

/* ---- registrations
 * ------------------------------------------------------------------------------- */

static json_t *reg_json(const struct kms_registration *g)
{
	char c[32], u[32], v[32];
	return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:b, s:{s:s, s:s}}", "keyId",
			 g->key_id, "resourceCrn", g->resource_crn, "createdBy", g->created_by,
			 "creationDate", kms_time_text(g->created_ms, c, sizeof(c)), "updatedBy",
			 g->updated_by, "lastUpdated", kms_time_text(g->updated_ms, u, sizeof(u)),
			 "description", g->description, "preventKeyDeletion", g->prevent_deletion,
			 "keyVersion", "id", g->version_id, "creationDate",
			 kms_time_text(g->version_ms, v, sizeof(v)));
}

static int reg_one(const struct kms_registration *g, void *arg)
{
	return json_array_append_new(arg, reg_json(g)) == 0 ? 0 : -ENOMEM;
}

/* The registrations of the instance, or of one key (@per_key). */
static int reg_list(struct http_request *req, struct http_response *resp, struct kms *kms,
		    bool per_key, struct sealvm_err *err)
{
	struct kms_call c;
	struct kms_key k;
	unsigned limit, offset;
	int r;
	if ((r = call_of(req, kms, per_key, &c, &k, err)) < 0 ||
	    (r = page_params(req, &limit, &offset, err)) < 0)
		return r;
	char *crn = http_request_query_field(req, "urlEncodedResourceCRNQuery");
	if (!crn && errno != ENOENT)
		return kms_field_error(
			err, -EINVAL, "INVALID_QUERY_PARAM_ERR", "urlEncodedResourceCRNQuery",
			"the query parameter 'urlEncodedResourceCRNQuery' is malformed");
	json_t *items = json_array();
	r = items ? kms_op_registrations(kms, c.inst.guid, per_key ? k.id : NULL, crn, limit,
					 offset, reg_one, items, err)
		  : -ENOMEM;
	free(crn);
	if (r >= 0)
		list_audit(req, c.inst.guid, items);
	return list_reply(resp, KP_REGISTRATION, items, r, err);
}

HANDLER_WITH(h_reg_list_key, reg_list, true)
HANDLER_WITH(h_reg_list, reg_list, false)

static int h_reg_create(struct http_request *req, struct http_response *resp, void *ctx,
			struct sealvm_err *err)
{
	struct kms_call c;
	struct kms_key k;
	struct kms_registration g;
	struct kms_request q;
	bool created;
	int r;
	if ((r = call_of(req, ctx, true, &c, &k, err)) < 0 ||
	    (r = parse(req, KMS_REQ_REGISTRATION, &q, err)) < 0)
		return r;
	r = kms_op_registration_put(&c, k.id, http_request_param(req, "crn"), q.description,
				    q.prevent, &created, &g, err);
	kms_request_done(&q);
	if (r < 0)
		return r;
	return reply(resp, created ? 201 : 200, KP_REGISTRATION, json_pack("[o]", reg_json(&g)),
		     err);
}

static int h_reg_delete(struct http_request *req, struct http_response *resp, void *ctx,
			struct sealvm_err *err)
{
	struct kms_call c;
	struct kms_key k;
	int r = call_of(req, ctx, true, &c, &k, err);
	if (r >= 0)
		r = kms_op_registration_delete(&c, k.id, http_request_param(req, "crn"), err);
	return no_content(resp, r);
}

/* ---- import tokens
 * -------------------------------------------------------------------------------- */

static json_t *token_json(const struct kms_import_token *t)
{
	char c[32], e[32];
	return json_pack("{s:s, s:s, s:i, s:i}", "creationDate",
			 kms_time_text(t->created_ms, c, sizeof(c)), "expirationDate",
			 kms_time_text(t->expires_ms, e, sizeof(e)), "maxAllowedRetrievals",
			 t->max_retrievals, "remainingRetrievals", t->remaining);
}

static int h_token_create(struct http_request *req, struct http_response *resp, void *ctx,
			  struct sealvm_err *err)
{
	struct kms_call c;
	struct kms_import_token t;
	struct kms_request q;
	int r;
	if ((r = call_of(req, ctx, false, &c, NULL, err)) < 0 ||
	    (r = parse(req, KMS_REQ_IMPORT_TOKEN, &q, err)) < 0)
		return r;
	r = kms_op_import_token_create(&c, q.expiration_s, q.max_retrievals, &t, err);
	kms_request_done(&q);
	if (r < 0)
		return r;
	resp->status = 200;
	resp->body = token_json(&t);
	kms_import_token_done(&t);
	return answered(resp, err);
}

/* An import token's payload: base64 of the PEM public key (new string; NULL: no memory). */
static char *pem_b64(const unsigned char *der, size_t len)
{
	size_t b64n = sealvm_b64_encoded_len(len, false);
	size_t pem_cap = b64n + b64n / 64 + 80;
	_cleanup_free_ char *b64 = malloc(b64n + 1), *pem = malloc(pem_cap);
	if (!b64 || !pem)
		return NULL;
	sealvm_b64_encode(der, len, b64, false);
	size_t n = (size_t)snprintf(pem, pem_cap, "-----BEGIN PUBLIC KEY-----\n");
	for (size_t i = 0; i < b64n; i += 64)
		n += (size_t)snprintf(pem + n, pem_cap - n, "%.64s\n", b64 + i);
	n += (size_t)snprintf(pem + n, pem_cap - n, "-----END PUBLIC KEY-----\n");
	char *out = malloc(sealvm_b64_encoded_len(n, false) + 1);
	if (out)
		sealvm_b64_encode(pem, n, out, false);
	return out;
}

static int h_token_get(struct http_request *req, struct http_response *resp, void *ctx,
		       struct sealvm_err *err)
{
	struct kms_call c;
	struct kms_import_token t;
	int r;
	if ((r = call_of(req, ctx, false, &c, NULL, err)) < 0 ||
	    (r = kms_op_import_token_get(&c, &t, err)) < 0)
		return r;
	_cleanup_free_ char *payload = pem_b64(t.pub, t.pub_len);
	char nonce[32];
	if (!payload) {
		kms_import_token_done(&t);
		return sealvm_err_set(err, -ENOMEM, NULL, "out of memory");
	}
	sealvm_b64_encode(t.nonce, sizeof(t.nonce), nonce, false);
	resp->body = token_json(&t);
	kms_import_token_done(&t);
	if (resp->body) {
		json_object_set_new(resp->body, "payload", json_string(payload));
		json_object_set_new(resp->body, "nonce", json_string(nonce));
	}
	resp->status = 200;
	return answered(resp, err);
}

/* ---- the route table
 * ------------------------------------------------------------------------------ */

#define KB(n) ((size_t)(n)*1024)
#define KEYS "/api/v2/keys"
#define KEY KEYS "/{id}"

static const struct http_route kms_routes[] = {
	{"POST", KEYS, h_key_create, resolve_instance, "kms.secrets.create", "kms.secrets.create",
	 KB(64), 0},
	{"GET", KEYS, h_key_list, resolve_instance, "kms.secrets.list", "kms.secrets.list", 0,
	 HTTP_ROUTE_NONBLOCKING},
	{"GET", KEY, h_key_get, resolve_key, "kms.secrets.read", "kms.secrets.read", 0,
	 HTTP_ROUTE_NONBLOCKING},
	{"GET", KEY "/metadata", h_key_metadata, resolve_key, "kms.secrets-metadata.read",
	 "kms.secrets-metadata.read", 0, HTTP_ROUTE_NONBLOCKING},
	{"GET", KEY "/versions", h_key_versions, resolve_key, "kms.secrets-key-versions.list",
	 "kms.secrets-key-versions.list", 0, HTTP_ROUTE_NONBLOCKING},
	{"POST", KEY "/actions/wrap", h_wrap, resolve_key, "kms.secrets.wrap", "kms.secrets.wrap",
	 KB(64), HTTP_ROUTE_NONBLOCKING},
	{"POST", KEY "/actions/unwrap", h_unwrap, resolve_key, "kms.secrets.unwrap",
	 "kms.secrets.unwrap", KB(64), HTTP_ROUTE_NONBLOCKING},
	{"POST", KEY "/actions/rewrap", h_rewrap, resolve_key, "kms.secrets.rewrap",
	 "kms.secrets.rewrap", KB(64), HTTP_ROUTE_NONBLOCKING},
	{"POST", KEY "/actions/rotate", h_rotate, resolve_key, "kms.secrets.rotate",
	 "kms.secrets.rotate", KB(64), 0},
	{"POST", KEY "/actions/disable", h_disable, resolve_key, "kms.secrets.disable",
	 "kms.secrets.disable", KB(4), 0},
	{"POST", KEY "/actions/enable", h_enable, resolve_key, "kms.secrets.enable",
	 "kms.secrets.enable", KB(4), 0},
	{"POST", KEY "/actions/setKeyForDeletion", h_set_deletion, resolve_key,
	 "kms.secrets.setkeyfordeletion", "kms.secrets.setkeyfordeletion", KB(4), 0},
	{"POST", KEY "/actions/unsetKeyForDeletion", h_unset_deletion, resolve_key,
	 "kms.secrets.unsetkeyfordeletion", "kms.secrets.unsetkeyfordeletion", KB(4), 0},
	{"DELETE", KEY, h_key_delete, resolve_key, "kms.secrets.delete", "kms.secrets.delete", 0,
	 0},
	{"DELETE", KEY "/purge", h_key_purge, resolve_key, "kms.secrets.purge", "kms.secrets.purge",
	 0, 0},
	{"POST", KEY "/restore", h_restore, resolve_key, "kms.secrets.restore",
	 "kms.secrets.restore", KB(64), 0},
	{"POST", KEY "/aliases/{alias}", h_alias_create, resolve_key, "kms.secrets-alias.create",
	 "kms.secrets-alias.create", KB(4), 0},
	{"DELETE", KEY "/aliases/{alias}", h_alias_delete, resolve_key, "kms.secrets-alias.delete",
	 "kms.secrets-alias.delete", 0, 0},
	{"GET", KEY "/policies", h_key_policy_get, resolve_key, "kms.policies.read",
	 "kms.policies.read", 0, HTTP_ROUTE_NONBLOCKING},
	{"PUT", KEY "/policies", h_key_policy_put, resolve_key, "kms.policies.write",
	 "kms.policies.write", KB(16), 0},
	{"GET", "/api/v2/instance/policies", h_instance_policy_get, resolve_instance,
	 "kms.instance-policies.read", "kms.instance-policies.read", 0, HTTP_ROUTE_NONBLOCKING},
	{"PUT", "/api/v2/instance/policies", h_instance_policy_put, resolve_instance,
	 "kms.instance-policies.write", "kms.instance-policies.write", KB(16), 0},
	{"GET", KEYS "/registrations", h_reg_list, resolve_instance, "kms.registrations.list",
	 "kms.registrations.list", 0, HTTP_ROUTE_NONBLOCKING},
	{"GET", KEY "/registrations", h_reg_list_key, resolve_key, "kms.registrations.list",
	 "kms.registrations.list", 0, HTTP_ROUTE_NONBLOCKING},
	{"POST", KEY "/registrations/{crn}", h_reg_create, resolve_key, "kms.registrations.create",
	 "kms.registrations.create", KB(16), 0},
	{"DELETE", KEY "/registrations/{crn}", h_reg_delete, resolve_key,
	 "kms.registrations.delete", "kms.registrations.delete", 0, 0},
	{"POST", "/api/v2/import_token", h_token_create, resolve_instance,
	 "kms.import-token.create", "kms.import-token.create", KB(4), 0},
	{"GET", "/api/v2/import_token", h_token_get, resolve_instance, "kms.import-token.read",
	 "kms.import-token.read", 0, 0},
};

void kms_http_init(struct kms *kms)
{
	kms->http.name = "kms";
	kms->http.routes = kms_routes;
	kms->http.n_routes = ELEMENTSOF(kms_routes);
	kms->http.format_error = kp_error;
	kms->http.ctx = kms;
}

const struct http_service *kms_http(struct kms *kms)
{
	return &kms->http;
}
