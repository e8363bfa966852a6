// SPDX-License-Identifier: Apache-2.0
/*
 * kms_request.c — the request bodies of the Key Protect API, parsed.
 *
 * One parser per kind of body (create, wrap, unwrap/rewrap, rotate, the
 * action routes without a body, policies, registrations, import tokens),
 * all from raw bytes and the Content-Type, so that the handlers and the
 * fuzz target (tests/fuzz/fuzz_kms_request.c) run the very same code. The
 * rules: JSON under application/json or a Key Protect media type; names
 * given once (JSON_REJECT_DUPLICATES); no field the route does not know
 * (BAD_BODY_ERR naming it); each field's type and size checked with a
 * reason that names it (INVALID_FIELD_ERR:<field>); Key Protect's
 * envelope where Key Protect has one (COLLECTION_TOTAL_MISMATCH_ERR, one
 * resource per request).
 *
 * Material (a wrap's plaintext, a key's payload) is copied into secret
 * memory and its text in the parsed document wiped at once; this file never
 * puts it in a message.
 */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kms_internal.h"

/* ---- helpers -------------------------------------------------------------------------- */

/* application/json, application/vnd.ibm.collection+json or application/vnd.ibm.kms.*+json. */
static int media_check(const char *ct, size_t len, struct sealvm_err *err)
{
	if (len == 0 || !ct)
		return 0;
	size_t n = strcspn(ct, ";");
	while (n > 0 && isspace((unsigned char)ct[n - 1]))
		n--;
	char type[128];
	if (n >= sizeof(type))
		goto bad;
	for (size_t i = 0; i < n; i++)
		type[i] = (char)tolower((unsigned char)ct[i]);
	type[n] = '\0';
	if (!strcmp(type, "application/json") ||
	    !strcmp(type, "application/vnd.ibm.collection+json"))
		return 0;
	if (!strncmp(type, "application/vnd.ibm.kms.", 24) && n > 29 &&
	    !strcmp(type + n - 5, "+json"))
		return 0;
bad:
	return sealvm_err_set(err, -ENOTSUP, "UNSUPPORTED_MEDIA_TYPE_ERR",
			      "the body must be JSON: send Content-Type application/json or a Key "
			      "Protect media type (application/vnd.ibm.kms.key+json, "
			      "application/vnd.ibm.kms.key_action+json, …)");
}

/* The JSON object body (new reference), or NULL in *@ret for an empty body when allowed. */
static int body_object(const unsigned char *body, size_t len, bool optional, json_t **ret,
		       struct sealvm_err *err)
{
	json_error_t jerr;
	*ret = NULL;
	if (len == 0) {
		if (optional)
			return 0;
		return sealvm_err_set(err, -EINVAL, "NO_BODY_ERR",
				      "Missing body in request: a JSON document is expected");
	}
	json_t *j = json_loadb((const char *)body, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!j)
		return sealvm_err_set(err, -EINVAL, "BAD_BODY_ERR",
				      "Invalid body data was passed: the body is not valid JSON "
				      "(line %d column %d: %s)",
				      jerr.line, jerr.column, jerr.text);
	if (!json_is_object(j)) {
		json_decref(j);
		return sealvm_err_set(
			err, -EINVAL, "BAD_BODY_ERR",
			"Invalid body data was passed: the body must be a JSON object");
	}
	*ret = j;
	return 0;
}

static int only_fields(json_t *obj, const char *const *allowed, struct sealvm_err *err)
{
	const char *key;
	json_t *v;
	json_object_foreach(obj, key, v)
	{
		bool ok = false;
		for (const char *const *a = allowed; *a && !ok; a++)
			ok = strcmp(*a, key) == 0;
		if (!ok)
			return sealvm_err_set(
				err, -EINVAL, "BAD_BODY_ERR",
				"Invalid body data was passed: unknown field \"%.64s\"", key);
	}
	return 0;
}

int kms_field_error(struct sealvm_err *err, int code, const char *kp, const char *field,
		    const char *fmt, ...)
{
	char reason[SEALVM_ERR_REASON_MAX], msg[SEALVM_ERR_MESSAGE_MAX];
	va_list ap;
	snprintf(reason, sizeof(reason), "%s:%s", kp, field);
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return sealvm_err_set(err, code, reason, "%s", msg);
}

/* A string member: *@ret borrowed, NULL when absent (and not @required). */
static int str_field(json_t *obj, const char *name, size_t max, bool required, const char **ret,
		     struct sealvm_err *err)
{
	json_t *v = obj ? json_object_get(obj, name) : NULL;
	*ret = NULL;
	if (!v) {
		if (!required)
			return 0;
		return kms_field_error(err, -EINVAL, "INVALID_FIELD_ERR", name,
				       "The field '%s' is required", name);
	}
	if (!json_is_string(v) || json_string_length(v) > max ||
	    strlen(json_string_value(v)) != json_string_length(v))
		return kms_field_error(err, -EINVAL, "INVALID_FIELD_ERR", name,
				       "The field '%s' must be: a string of at most %zu characters",
				       name, max);
	*ret = json_string_value(v);
	return 0;
}

static int bool_field(json_t *obj, const char *name, bool dflt, bool *ret, struct sealvm_err *err)
{
	json_t *v = obj ? json_object_get(obj, name) : NULL;
	*ret = dflt;
	if (!v)
		return 0;
	if (!json_is_boolean(v))
		return kms_field_error(err, -EINVAL, "INVALID_FIELD_ERR", name,
				       "The field '%s' must be: true or false", name);
	*ret = json_is_true(v);
	return 0;
}

/* Wipes the text of a string member that held material (its copy is in secret memory now). */
static void wipe_field(json_t *obj, const char *name)
{
	json_t *v = obj ? json_object_get(obj, name) : NULL;
	if (json_is_string(v))
		explicit_bzero((char *)json_string_value(v), json_string_length(v));
}

/* A text member copied into secret memory (new secret), its JSON copy wiped. NULL when absent. */
static int secret_field(json_t *obj, const char *name, size_t max, struct sealvm_secret **ret,
			struct sealvm_err *err)
{
	const char *s;
	*ret = NULL;
	int r = str_field(obj, name, max, false, &s, err);
	if (r < 0 || !s)
		return r;
	r = sealvm_secret_from(s, strlen(s), ret);
	wipe_field(obj, name);
	return r < 0 ? sealvm_err_set(err, r, NULL, "out of memory") : 0;
}

/* The `aad` member: *@ret a new array of borrowed strings (free() it), *@ret_n its length. */
static int aad_field(json_t *obj, const char ***ret, size_t *ret_n, struct sealvm_err *err)
{
	json_t *v = obj ? json_object_get(obj, "aad") : NULL;
	*ret = NULL;
	*ret_n = 0;
	if (!v)
		return 0;
	if (!json_is_array(v) || json_array_size(v) > KMS_AAD_MAX_ITEMS)
		return kms_field_error(err, -EINVAL, "INVALID_FIELD_ERR", "aad",
				       "The field 'aad' must be: a list of at most %d strings",
				       KMS_AAD_MAX_ITEMS);
	size_t n = json_array_size(v);
	const char **a = calloc(n + 1, sizeof(*a));
	if (!a)
		return sealvm_err_set(err, -ENOMEM, NULL, "out of memory");
	for (size_t i = 0; i < n; i++) {
		json_t *s = json_array_get(v, i);
		if (!json_is_string(s) || json_string_length(s) > KMS_AAD_ITEM_MAX ||
		    strlen(json_string_value(s)) != json_string_length(s)) {
			free(a);
			return kms_field_error(err, -EINVAL, "INVALID_FIELD_ERR", "aad",
					       "The field 'aad' must be: strings of at most %d "
					       "bytes without NUL (item %zu is not)",
					       KMS_AAD_ITEM_MAX, i + 1);
		}
		a[i] = json_string_value(s);
	}
	*ret = a;
	*ret_n = n;
	return 0;
}

/*
 * The Key Protect envelope {"metadata": {collectionType, collectionTotal},
 * "resources": [...]}: checks it and returns its one resource (borrowed).
 */
static int envelope_one(json_t *body, const char *what, json_t **ret, struct sealvm_err *err)
{
	static const char *const allowed[] = {"metadata", "resources", NULL};
	json_t *md = json_object_get(body, "metadata"), *res = json_object_get(body, "resources");
	int r = only_fields(body, allowed, err);
	if (r < 0)
		return r;
	if (!json_is_object(md) || json_object_size(md) == 0)
		return sealvm_err_set(err, -EINVAL, "BAD_BODY_ERR",
				      "Invalid body data was passed: CollectionMetadata is empty "
				      "(send {\"metadata\": {\"collectionType\": …, "
				      "\"collectionTotal\": 1}, \"resources\": [ … ]})");
	json_t *total = json_object_get(md, "collectionTotal");
	json_t *type = json_object_get(md, "collectionType");
	if (!json_is_integer(total) || (type && !json_is_string(type)))
		return sealvm_err_set(err, -EINVAL, "BAD_BODY_ERR",
				      "Invalid body data was passed: metadata needs collectionType "
				      "(a string) and collectionTotal (a number)");
	if (!json_is_array(res) || json_array_size(res) == 0)
		return sealvm_err_set(err, -EINVAL, "BAD_BODY_ERR",
				      "Invalid body data was passed: one resource is required");
	if (json_integer_value(total) != (json_int_t)json_array_size(res))
		return sealvm_err_set(err, -EINVAL, "COLLECTION_TOTAL_MISMATCH_ERR",
				      "Collection total does not match number of resources");
	if (json_array_size(res) != 1)
		return sealvm_err_set(err, -EINVAL, "BAD_BODY_ERR",
				      "Invalid body data was passed: only one %s per request is "
				      "supported",
				      what);
	if (!json_is_object(json_array_get(res, 0)))
		return sealvm_err_set(err, -EINVAL, "BAD_BODY_ERR",
				      "Invalid body data was passed: a resource must be an object");
	*ret = json_array_get(res, 0);
	return 0;
}

/* ---- the parsers -------------------------------------------------------------------------------
 */

static int parse_create(struct kms_request *q, struct sealvm_err *err)
{
	static const char *const allowed[] = {
		"type",		  "name",	 "aliases", "description",
		"expirationDate", "extractable", "payload", "encryptionAlgorithm",
		"encryptedNonce", "iv",		 NULL,
	};
	json_t *res;
	const char *type, *expiration;
	int r = envelope_one(q->body, "key", &res, err);
	if (r < 0)
		return r;
	/* The material is copied into secret memory before anything can fail. */
	if ((r = secret_field(res, "payload", 16384, &q->payload, err)) < 0 ||
	    (r = only_fields(res, allowed, err)) < 0 ||
	    (r = str_field(res, "type", 64, false, &type, err)) < 0 ||
	    (r = str_field(res, "name", 1024, true, &q->name, err)) < 0 ||
	    (r = str_field(res, "description", 1024, false, &q->description, err)) < 0 ||
	    (r = str_field(res, "expirationDate", 64, false, &expiration, err)) < 0 ||
	    (r = str_field(res, "encryptionAlgorithm", 64, false, &q->algorithm, err)) < 0 ||
	    (r = str_field(res, "encryptedNonce", 1024, false, &q->encrypted_nonce, err)) < 0 ||
	    (r = str_field(res, "iv", 1024, false, &q->iv, err)) < 0 ||
	    (r = bool_field(res, "extractable", false, &q->extractable, err)) < 0)
		return r;
	if (type && strcmp(type, "application/vnd.ibm.kms.key+json") != 0)
		return kms_field_error(
			err, -EINVAL, "INVALID_FIELD_ERR", "type",
			"The field 'type' must be: application/vnd.ibm.kms.key+json");
	json_t *al = json_object_get(res, "aliases");
	if (al) {
		if (!json_is_array(al) || json_array_size(al) > KMS_ALIASES_PER_KEY)
			return kms_field_error(err, -EINVAL, "INVALID_FIELD_ERR", "aliases",
					       "The field 'aliases' must be: a list of at most %d "
					       "aliases",
					       KMS_ALIASES_PER_KEY);
		q->aliases = calloc(json_array_size(al) + 1, sizeof(*q->aliases));
		if (!q->aliases)
			return sealvm_err_set(err, -ENOMEM, NULL, "out of memory");
		for (size_t i = 0; i < json_array_size(al); i++) {
			json_t *a = json_array_get(al, i);
			if (!json_is_string(a) ||
			    strlen(json_string_value(a)) != json_string_length(a))
				return kms_field_error(
					err, -EINVAL, "INVALID_FIELD_ERR", "aliases",
					"The field 'aliases' must be: a list of strings");
			q->aliases[i] = json_string_value(a);
		}
		q->n_aliases = json_array_size(al);
	}
	if (expiration && kms_time_parse(expiration, &q->expiration_ms) < 0)
		return kms_field_error(
			err, -EINVAL, "INVALID_FIELD_ERR", "expirationDate",
			"The field 'expirationDate' must be: an RFC 3339 time such as "
			"2030-01-31T12:00:00Z");
	if ((q->encrypted_nonce || q->iv || q->algorithm) && !q->payload)
		return kms_field_error(err, -EINVAL, "INVALID_FIELD_ERR", "payload",
				       "The field 'payload' is required for a secure import");
	if ((q->encrypted_nonce || q->iv || q->algorithm) && q->extractable)
		return kms_field_error(err, -EINVAL, "INVALID_FIELD_ERR", "encryptedNonce",
				       "secure import (encryptedNonce, iv) is for root keys: send "
				       "extractable false");
	return 0;
}

static int parse_rotate(struct kms_request *q, struct sealvm_err *err)
{
	static const char *const allowed[] = {"payload", "encryptionAlgorithm", "encryptedNonce",
					      "iv", NULL};
	int r;
	if (!q->body)
		return 0;
	if ((r = secret_field(q->body, "payload", 16384, &q->payload, err)) < 0 ||
	    (r = only_fields(q->body, allowed, err)) < 0 ||
	    (r = str_field(q->body, "encryptionAlgorithm", 64, false, &q->algorithm, err)) < 0 ||
	    (r = str_field(q->body, "encryptedNonce", 1024, false, &q->encrypted_nonce, err)) < 0 ||
	    (r = str_field(q->body, "iv", 1024, false, &q->iv, err)) < 0)
		return r;
	if ((q->encrypted_nonce || q->iv || q->algorithm) && !q->payload)
		return kms_field_error(err, -EINVAL, "INVALID_FIELD_ERR", "payload",
				       "The field 'payload' is required for a secure import");
	return 0;
}

/* {"resources": [{"type": …, "dualAuthDelete": {"enabled": B}}]} (key) or
 * {"resources": [{"policy_type": "dualAuthDelete", "policy_data": {"enabled": B}}]} (instance). */
static int parse_policy(struct kms_request *q, bool instance, struct sealvm_err *err)
{
	static const char *const key_fields[] = {"type", "dualAuthDelete", NULL};
	static const char *const inst_fields[] = {"policy_type", "policy_data", NULL};
	static const char *const enabled_only[] = {"enabled", NULL};
	json_t *res, *data;
	int r;
	if ((r = envelope_one(q->body, "policy", &res, err)) < 0 ||
	    (r = only_fields(res, instance ? inst_fields : key_fields, err)) < 0)
		return r;
	if (instance) {
		json_t *t = json_object_get(res, "policy_type");
		if (!json_is_string(t) || strcmp(json_string_value(t), "dualAuthDelete") != 0)
			return sealvm_err_set(err, -EINVAL, "BODY_QUERY_PARAM_MISMATCH_ERR",
					      "Data in body does not match data required by query "
					      "parameter: policy_type must be dualAuthDelete");
		data = json_object_get(res, "policy_data");
	} else {
		json_t *t = json_object_get(res, "type");
		if (t && (!json_is_string(t) ||
			  strcmp(json_string_value(t), "application/vnd.ibm.kms.policy+json") != 0))
			return kms_field_error(err, -EINVAL, "INVALID_FIELD_ERR", "type",
					       "The field 'type' must be: "
					       "application/vnd.ibm.kms.policy+json");
		data = json_object_get(res, "dualAuthDelete");
	}
	const char *name = instance ? "policy_data" : "dualAuthDelete";
	if (!json_is_object(data))
		return kms_field_error(err, -EINVAL, "INVALID_FIELD_ERR", name,
				       "The field '%s' must be: {\"enabled\": true|false}", name);
	if ((r = only_fields(data, enabled_only, err)) < 0)
		return r;
	if (!json_is_boolean(json_object_get(data, "enabled")))
		return kms_field_error(err, -EINVAL, "INVALID_FIELD_ERR", name,
				       "The field '%s' must be: {\"enabled\": true|false}", name);
	q->enabled = json_is_true(json_object_get(data, "enabled"));
	return 0;
}

static int parse_registration(struct kms_request *q, struct sealvm_err *err)
{
	static const char *const allowed[] = {"preventKeyDeletion", "description", NULL};
	json_t *res;
	int r;
	if (!q->body)
		return 0;
	if ((r = envelope_one(q->body, "registration", &res, err)) < 0 ||
	    (r = only_fields(res, allowed, err)) < 0 ||
	    (r = str_field(res, "description", 1024, false, &q->description, err)) < 0 ||
	    (r = bool_field(res, "preventKeyDeletion", false, &q->prevent, err)) < 0)
		return r;
	return 0;
}

static int parse_import_token(struct kms_request *q, struct sealvm_err *err)
{
	static const char *const allowed[] = {"expiration", "maxAllowedRetrievals", NULL};
	int r;
	q->expiration_s = 600;
	q->max_retrievals = 1;
	if (!q->body)
		return 0;
	if ((r = only_fields(q->body, allowed, err)) < 0)
		return r;
	json_t *e = json_object_get(q->body, "expiration");
	json_t *m = json_object_get(q->body, "maxAllowedRetrievals");
	/* The lower bound is the service's (kms.import_token_min_s): kms_op_import_token_create. */
	if (e &&
	    (!json_is_integer(e) || json_integer_value(e) < 1 || json_integer_value(e) > 86400))
		return kms_field_error(err, -EINVAL, "INVALID_FIELD_ERR", "expiration",
				       "The field 'expiration' must be: a number of seconds up to "
				       "86400");
	if (m && (!json_is_integer(m) || json_integer_value(m) < 1 || json_integer_value(m) > 500))
		return kms_field_error(err, -EINVAL, "INVALID_FIELD_ERR", "maxAllowedRetrievals",
				       "The field 'maxAllowedRetrievals' must be: 1 to 500");
	if (e)
		q->expiration_s = json_integer_value(e);
	if (m)
		q->max_retrievals = (int)json_integer_value(m);
	return 0;
}

int kms_request_parse(enum kms_req_kind kind, const char *content_type, const unsigned char *body,
		      size_t len, struct kms_request *ret, struct sealvm_err *err)
{
	static const char *const none[] = {NULL};
	static const char *const wrap_fields[] = {"plaintext", "aad", NULL};
	static const char *const unwrap_fields[] = {"ciphertext", "aad", NULL};
	bool optional = kind == KMS_REQ_WRAP || kind == KMS_REQ_ROTATE || kind == KMS_REQ_EMPTY ||
			kind == KMS_REQ_RESTORE || kind == KMS_REQ_REGISTRATION ||
			kind == KMS_REQ_IMPORT_TOKEN;
	int r;

	memset(ret, 0, sizeof(*ret));
	ret->kind = kind;
	if ((r = media_check(content_type, len, err)) < 0 ||
	    (r = body_object(body, len, optional, &ret->body, err)) < 0)
		goto fail;
	switch (kind) {
	case KMS_REQ_CREATE:
		r = parse_create(ret, err);
		break;
	case KMS_REQ_WRAP:
		if (ret->body &&
		    ((r = secret_field(ret->body, "plaintext", 16384, &ret->plaintext, err)) < 0 ||
		     (r = only_fields(ret->body, wrap_fields, err)) < 0))
			break;
		r = aad_field(ret->body, &ret->aad, &ret->n_aad, err);
		break;
	case KMS_REQ_UNWRAP:
		if ((r = only_fields(ret->body, unwrap_fields, err)) < 0 ||
		    (r = str_field(ret->body, "ciphertext", KMS_CIPHERTEXT_MAX, true,
				   &ret->ciphertext, err)) < 0)
			break;
		r = aad_field(ret->body, &ret->aad, &ret->n_aad, err);
		break;
	case KMS_REQ_ROTATE:
		r = parse_rotate(ret, err);
		break;
	case KMS_REQ_EMPTY:
		r = ret->body ? only_fields(ret->body, none, err) : 0;
		break;
	case KMS_REQ_RESTORE:
		/*
		 * The material is kept until purge, so restore needs none; older
		 * clients send an envelope with a payload: parsed, wiped, ignored.
		 */
		if (ret->body) {
			json_t *res = json_object_get(ret->body, "resources");
			for (size_t i = 0; json_is_array(res) && i < json_array_size(res); i++)
				wipe_field(json_array_get(res, i), "payload");
			wipe_field(ret->body, "payload");
		}
		r = 0;
		break;
	case KMS_REQ_KEY_POLICY:
	case KMS_REQ_INSTANCE_POLICY:
		r = parse_policy(ret, kind == KMS_REQ_INSTANCE_POLICY, err);
		break;
	case KMS_REQ_REGISTRATION:
		r = parse_registration(ret, err);
		break;
	case KMS_REQ_IMPORT_TOKEN:
		r = parse_import_token(ret, err);
		break;
	default:
		r = sealvm_err_set(err, -EINVAL, "INTERNAL", "unknown kind of request body");
	}
	if (r >= 0)
		return 0;
fail:
	kms_request_done(ret);
	return r;
}

void kms_request_done(struct kms_request *r)
{
	if (!r)
		return;
	sealvm_secret_free(r->payload);
	sealvm_secret_free(r->plaintext);
	free(r->aliases);
	free(r->aad);
	json_decref(r->body);
	memset(r, 0, sizeof(*r));
}
