// SPDX-License-Identifier: Apache-2.0
/*
 * iam_access.c — access management: policy validation and the one decision function.
 *
 * iam_authorize answers "may this principal do this action on this target?"
 * for every request of every service, so it is short and fast: a few string
 * checks, then one query on a read connection through a covering index
 * (statements cached per read connection), then the role tables of
 * iam_roles.c. The order of the checks is documented in
 * docs/internals/iam-access.md and must not change without it.
 *
 * Policies are validated here before any is stored: every field a client
 * sends is checked, and an error names the field. This file never writes SQL
 * (iam_access_store.c does) and never sees HTTP (iam_access_http.c does). A
 * denial's message names the action and the principal's iam_id — never a
 * token, never a key.
 */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/rand.h>

#include "sealvm/iam.h"
#include "sealvm/log.h"
#include "sealvm/macro.h"

#include "iam_internal.h"

struct iam_access_state {
	struct iam *iam;
	struct sealvm_db *db;
	struct http_service http;
};

static struct iam_access_state *state_new(struct iam *iam)
{
	struct iam_access_state *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->iam = iam;
	s->db = iam->db;
	return s;
}

static void state_free(struct iam_access_state *s)
{
	if (!s)
		return;
	free(s);
}

/*
 * The state, made on first use when iam_new did not call iam_access_init:
 * whichever thread installs it first wins, the others free theirs.
 */
static struct iam_access_state *state_of(struct iam *iam)
{
	struct iam_access_state *s = __atomic_load_n(&iam->access, __ATOMIC_ACQUIRE);
	if (s)
		return s;
	struct iam_access_state *fresh = state_new(iam);
	if (!fresh)
		return NULL;
	struct iam_access_state *expected = NULL;
	if (__atomic_compare_exchange_n(&iam->access, &expected, fresh, false, __ATOMIC_ACQ_REL,
					__ATOMIC_ACQUIRE))
		return fresh;
	state_free(fresh);
	return expected;
}

int iam_access_init(struct iam *iam, struct sealvm_err *err)
{
	if (!state_of(iam))
		return sealvm_err_set(err, -ENOMEM, "NO_MEMORY",
				      "cannot allocate the access state");
	return 0;
}

void iam_access_done(struct iam *iam)
{
	if (!iam)
		return;
	state_free(iam->access);
	iam->access = NULL;
}

struct sealvm_db *iam_access_db(struct iam *iam)
{
	return iam->db;
}

struct http_service *iam_access_service_slot(struct iam *iam)
{
	struct iam_access_state *s = state_of(iam);
	return s ? &s->http : NULL;
}

/* --- ids, times, etags -------------------------------------------------------- */

int iam_policy_new_id(char ret[37])
{
	unsigned char b[16];
	if (RAND_bytes(b, sizeof(b)) != 1)
		return -EIO;
	b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
	b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
	snprintf(ret, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
		 b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12],
		 b[13], b[14], b[15]);
	return 0;
}

int iam_policy_new_etag(char ret[40])
{
	unsigned char b[16];
	if (RAND_bytes(b, sizeof(b)) != 1)
		return -EIO;
	char *o = ret;
	*o++ = '1';
	*o++ = '-';
	for (size_t i = 0; i < sizeof(b); i++)
		o += snprintf(o, 3, "%02x", b[i]);
	return 0;
}

void iam_policy_time(char ret[32])
{
	struct timespec ts;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	size_t n = strftime(ret, 32, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(ret + n, 32 - n, ".%03dZ", (int)(ts.tv_nsec / 1000000) % 1000);
}

bool iam_policy_etag_matches(const char *if_match, const char *etag)
{
	if (!if_match || !etag)
		return false;
	while (*if_match == ' ')
		if_match++;
	if (strcmp(if_match, "*") == 0)
		return true;
	/* Weak or strong, quoted or bare: the value is what counts (one value; no lists). */
	if (strncmp(if_match, "W/", 2) == 0)
		if_match += 2;
	size_t n = strlen(if_match);
	while (n > 0 && if_match[n - 1] == ' ')
		n--;
	if (n >= 2 && if_match[0] == '"' && if_match[n - 1] == '"') {
		if_match++;
		n -= 2;
	}
	return n == strlen(etag) && memcmp(if_match, etag, n) == 0;
}

void iam_policy_crn(const char *account_id, const char *id, char *buf, size_t size)
{
	snprintf(buf, size, "crn:v1:sealvm:public:iam-access::a/%s::policy:%s", account_id, id);
}

/* --- validation ------------------------------------------------------------------ */

static _printf_(3, 4) int invalid(struct sealvm_err *err, const char *reason, const char *fmt, ...)
{
	char msg[SEALVM_ERR_MESSAGE_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return sealvm_err_set(err, -EINVAL, reason, "%s", msg);
}

/* A value we store and compare: 1..IAM_POLICY_VALUE_MAX bytes, no control characters. */
static bool value_ok(const char *v)
{
	size_t n = strlen(v);
	if (n == 0 || n > IAM_POLICY_VALUE_MAX)
		return false;
	for (const unsigned char *c = (const unsigned char *)v; *c; c++)
		if (*c < 0x20 || *c == 0x7f)
			return false;
	return true;
}

struct attr {
	const char *name;
	const char *value;
	const char *op; /* NULL when not given */
};

/*
 * @holder["attributes"] (holder is @field, e.g. "subjects[0]") → up to
 * IAM_POLICY_MAX_ATTRIBUTES attributes, names unique.
 */
static int parse_attrs(const json_t *holder, const char *field, const char *reason, bool allow_op,
		       struct attr *ret, size_t *ret_n, struct sealvm_err *err)
{
	if (!json_is_object(holder))
		return invalid(err, reason, "%s: must be an object with \"attributes\"", field);
	const char *key;
	json_t *v;
	json_object_foreach((json_t *)holder, key, v)
	{
		if (strcmp(key, "attributes") != 0)
			return invalid(err, reason,
				       "%s.%s: unknown member; only \"attributes\" is allowed",
				       field, key);
	}
	const json_t *attrs = json_object_get(holder, "attributes");
	if (!json_is_array(attrs) || json_array_size(attrs) == 0)
		return invalid(err, reason, "%s.attributes: must be a non-empty array", field);
	if (json_array_size(attrs) > IAM_POLICY_MAX_ATTRIBUTES)
		return invalid(err, reason, "%s.attributes: at most %d attributes", field,
			       IAM_POLICY_MAX_ATTRIBUTES);
	size_t n = json_array_size(attrs);
	for (size_t i = 0; i < n; i++) {
		const json_t *a = json_array_get(attrs, i);
		if (!json_is_object(a))
			return invalid(err, reason, "%s.attributes[%zu]: must be an object", field,
				       i);
		json_object_foreach((json_t *)a, key, v)
		{
			if (strcmp(key, "name") != 0 && strcmp(key, "value") != 0 &&
			    !(allow_op && strcmp(key, "operator") == 0))
				return invalid(
					err, reason,
					"%s.attributes[%zu].%s: unknown member; allowed: name, "
					"value%s",
					field, i, key, allow_op ? ", operator" : "");
		}
		const json_t *name = json_object_get(a, "name");
		const json_t *value = json_object_get(a, "value");
		const json_t *op = json_object_get(a, "operator");
		if (!json_is_string(name) || json_string_length(name) == 0)
			return invalid(err, reason,
				       "%s.attributes[%zu].name: must be a non-empty string", field,
				       i);
		if (!json_is_string(value) || !value_ok(json_string_value(value)))
			return invalid(
				err, reason,
				"%s.attributes[%zu].value: must be a string of 1 to %d bytes "
				"without control characters",
				field, i, IAM_POLICY_VALUE_MAX);
		if (op && !json_is_string(op))
			return invalid(err, reason, "%s.attributes[%zu].operator: must be a string",
				       field, i);
		ret[i] = (struct attr){json_string_value(name), json_string_value(value),
				       op ? json_string_value(op) : NULL};
		for (size_t j = 0; j < i; j++)
			if (strcmp(ret[j].name, ret[i].name) == 0)
				return invalid(err, reason,
					       "%s.attributes[%zu].name: \"%s\" is given twice",
					       field, i, ret[i].name);
	}
	*ret_n = n;
	return 0;
}

static const struct attr *attr_find(const struct attr *a, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(a[i].name, name) == 0)
			return &a[i];
	return NULL;
}

static const char *attr_value(const struct attr *a, size_t n, const char *name)
{
	const struct attr *x = attr_find(a, n, name);
	return x ? x->value : "";
}

static int set_attr(json_t *arr, const char *name, const char *value, const char *op)
{
	json_t *o = op ? json_pack("{s:s, s:s, s:s}", "name", name, "value", value, "operator", op)
		       : json_pack("{s:s, s:s}", "name", name, "value", value);
	if (!o || json_array_append_new(arr, o) < 0)
		return -ENOMEM;
	return 0;
}

/* [{"attributes": arr}] as compact text (new string) from @arr (stolen). */
static char *wrap_attributes(json_t *arr)
{
	_cleanup_json_ json_t *outer = json_pack("[{s:o}]", "attributes", arr);
	return outer ? json_dumps(outer, JSON_COMPACT) : NULL;
}

static int parse_subject(const json_t *body, bool authorization, const char *account_id,
			 struct iam_policy_spec *spec, const char **ret_instance,
			 struct sealvm_err *err)
{
	const json_t *subjects = json_object_get(body, "subjects");
	struct attr a[IAM_POLICY_MAX_ATTRIBUTES];
	size_t n;

	if (!json_is_array(subjects) || json_array_size(subjects) != 1)
		return invalid(err, "INVALID_SUBJECT",
			       "subjects: must be an array of exactly one subject");
	int r = parse_attrs(json_array_get(subjects, 0), "subjects[0]", "INVALID_SUBJECT", false, a,
			    &n, err);
	if (r < 0)
		return r;

	_cleanup_json_ json_t *arr = json_array();
	if (!arr)
		return -ENOMEM;
	if (!authorization) {
		if (n != 1 || strcmp(a[0].name, "iam_id") != 0)
			return invalid(
				err, "INVALID_SUBJECT",
				"subjects[0].attributes: an access policy's subject is exactly "
				"one attribute named \"iam_id\"");
		if (strlen(a[0].value) >= sizeof(((struct sealvm_principal *)0)->iam_id) ||
		    strchr(a[0].value, ' '))
			return invalid(err, "INVALID_SUBJECT",
				       "subjects[0].attributes[0].value: \"%s\" is not an iam_id",
				       a[0].value);
		spec->subject = a[0].value;
		*ret_instance = "";
		if (set_attr(arr, "iam_id", a[0].value, NULL) < 0)
			return -ENOMEM;
	} else {
		for (size_t i = 0; i < n; i++)
			if (strcmp(a[i].name, "accountId") != 0 &&
			    strcmp(a[i].name, "serviceName") != 0 &&
			    strcmp(a[i].name, "serviceInstance") != 0)
				return invalid(err, "INVALID_SUBJECT",
					       "subjects[0].attributes[%zu].name: \"%s\" is not a "
					       "subject attribute of an authorization; allowed: "
					       "accountId, serviceName, serviceInstance",
					       i, a[i].name);
		const struct attr *acct = attr_find(a, n, "accountId");
		const struct attr *svc = attr_find(a, n, "serviceName");
		const struct attr *inst = attr_find(a, n, "serviceInstance");
		if (!acct)
			return invalid(err, "INVALID_SUBJECT",
				       "subjects[0].attributes: an authorization's source needs "
				       "\"accountId\"");
		if (strcmp(acct->value, account_id) != 0)
			return sealvm_err_set(
				err, -EACCES, "ACCOUNT_MISMATCH",
				"subjects[0] accountId \"%s\" is not your account %s: "
				"authorizations name sources of your own account",
				acct->value, account_id);
		if (!svc)
			return invalid(err, "INVALID_SUBJECT",
				       "subjects[0].attributes: an authorization's source needs "
				       "\"serviceName\"");
		if (!iam_roles_service(svc->value))
			return invalid(err, "INVALID_SUBJECT",
				       "subjects[0] serviceName: \"%s\" is not a known service",
				       svc->value);
		spec->subject = svc->value;
		*ret_instance = inst ? inst->value : "";
		if (set_attr(arr, "accountId", acct->value, NULL) < 0 ||
		    set_attr(arr, "serviceName", svc->value, NULL) < 0 ||
		    (inst && set_attr(arr, "serviceInstance", inst->value, NULL) < 0))
			return -ENOMEM;
	}
	spec->subjects_json = wrap_attributes(TAKE_PTR(arr));
	return spec->subjects_json ? 0 : -ENOMEM;
}

static const char *const resource_attr_names[] = {
	"accountId", "serviceName", "serviceInstance", "resourceType",
	"resource",  "keyRing",	    "region",
};

struct resource {
	const char *service_name, *service_instance, *resource_type, *resource, *key_ring, *region;
	bool resource_match;
};

static int parse_resource(const json_t *body, const char *account_id, struct resource *ret,
			  char **ret_json, struct sealvm_err *err)
{
	const json_t *resources = json_object_get(body, "resources");
	struct attr a[IAM_POLICY_MAX_ATTRIBUTES];
	size_t n;

	if (!json_is_array(resources) || json_array_size(resources) != 1)
		return invalid(err, "INVALID_RESOURCE",
			       "resources: must be an array of exactly one resource");
	int r = parse_attrs(json_array_get(resources, 0), "resources[0]", "INVALID_RESOURCE", true,
			    a, &n, err);
	if (r < 0)
		return r;
	for (size_t i = 0; i < n; i++) {
		bool known = false;
		for (size_t k = 0; k < ELEMENTSOF(resource_attr_names); k++)
			known = known || strcmp(a[i].name, resource_attr_names[k]) == 0;
		if (!known)
			return invalid(
				err, "INVALID_RESOURCE",
				"resources[0].attributes[%zu].name: unknown attribute \"%s\"; "
				"allowed: accountId, serviceName, serviceInstance, "
				"resourceType, resource, region, keyRing",
				i, a[i].name);
		const char *op = a[i].op;
		if (op && strcmp(op, "stringEquals") != 0 &&
		    !(strcmp(op, "stringMatch") == 0 && strcmp(a[i].name, "resource") == 0))
			return invalid(err, "INVALID_RESOURCE",
				       "resources[0].attributes[%zu].operator: \"%s\" is not "
				       "supported for %s; use stringEquals (stringMatch is allowed "
				       "on \"resource\" only)",
				       i, op, a[i].name);
	}
	const struct attr *acct = attr_find(a, n, "accountId");
	if (!acct)
		return invalid(err, "INVALID_RESOURCE",
			       "resources[0].attributes: \"accountId\" is required");
	if (strcmp(acct->value, account_id) != 0)
		return sealvm_err_set(err, -EACCES, "ACCOUNT_MISMATCH",
				      "resources[0] accountId \"%s\" is not your account %s: "
				      "policies grant access in your own account only",
				      acct->value, account_id);

	struct resource res = {
		.service_name = attr_value(a, n, "serviceName"),
		.service_instance = attr_value(a, n, "serviceInstance"),
		.resource_type = attr_value(a, n, "resourceType"),
		.resource = attr_value(a, n, "resource"),
		.key_ring = attr_value(a, n, "keyRing"),
		.region = attr_value(a, n, "region"),
	};
	const struct attr *ra = attr_find(a, n, "resource");
	res.resource_match = ra && ra->op && strcmp(ra->op, "stringMatch") == 0;

	if (res.service_name[0]) {
		const struct iam_service *svc = iam_roles_service(res.service_name);
		if (!svc || svc->n_roles == 0)
			return invalid(
				err, "INVALID_RESOURCE",
				"resources[0] serviceName: \"%s\" is not a service with roles",
				res.service_name);
		if (strlen(res.service_instance) >=
		    sizeof(((struct http_target *)0)->service_instance))
			return invalid(err, "INVALID_RESOURCE",
				       "resources[0] serviceInstance: longer than %zu bytes",
				       sizeof(((struct http_target *)0)->service_instance) - 1);
		if (res.key_ring[0] && strcmp(res.service_name, "kms") != 0)
			return invalid(err, "INVALID_RESOURCE",
				       "resources[0] keyRing: only kms resources have key rings");
	} else if (res.service_instance[0] || res.resource_type[0] || res.resource[0] ||
		   res.key_ring[0]) {
		return invalid(
			err, "INVALID_RESOURCE",
			"resources[0].attributes: serviceInstance, resourceType, resource and "
			"keyRing need \"serviceName\"");
	}
	if (strlen(res.resource_type) >= sizeof(((struct http_target *)0)->resource_type))
		return invalid(err, "INVALID_RESOURCE",
			       "resources[0] resourceType: longer than %zu bytes",
			       sizeof(((struct http_target *)0)->resource_type) - 1);

	_cleanup_json_ json_t *arr = json_array();
	if (!arr)
		return -ENOMEM;
	for (size_t k = 0; k < ELEMENTSOF(resource_attr_names); k++) {
		const struct attr *x = attr_find(a, n, resource_attr_names[k]);
		if (x && set_attr(arr, x->name, x->value, x->op) < 0)
			return -ENOMEM;
	}
	*ret_json = wrap_attributes(TAKE_PTR(arr));
	if (!*ret_json)
		return -ENOMEM;
	*ret = res;
	return 0;
}

static int parse_roles(const json_t *body, const struct resource *res, bool authorization,
		       struct iam_policy_spec *spec, const char *subject_instance,
		       struct sealvm_err *err)
{
	const json_t *roles = json_object_get(body, "roles");
	const struct iam_service *svc =
		res->service_name[0] ? iam_roles_service(res->service_name) : NULL;

	if (!json_is_array(roles) || json_array_size(roles) == 0)
		return invalid(err, "INVALID_ROLE", "roles: must be a non-empty array");
	if (json_array_size(roles) > IAM_POLICY_MAX_ROLES)
		return invalid(err, "INVALID_ROLE", "roles: at most %d roles",
			       IAM_POLICY_MAX_ROLES);
	if (authorization && !svc)
		return invalid(
			err, "INVALID_RESOURCE",
			"resources[0] serviceName: an authorization needs the target service");

	_cleanup_json_ json_t *out = json_array();
	if (!out)
		return -ENOMEM;
	size_t n = json_array_size(roles);
	for (size_t i = 0; i < n; i++) {
		const json_t *r = json_array_get(roles, i);
		const char *key;
		json_t *v;
		if (!json_is_object(r))
			return invalid(err, "INVALID_ROLE", "roles[%zu]: must be an object", i);
		/* display_name and description are what GET returns: accepted back, ignored. */
		json_object_foreach((json_t *)r, key, v)
		{
			if (strcmp(key, "role_id") != 0 && strcmp(key, "display_name") != 0 &&
			    strcmp(key, "description") != 0)
				return invalid(
					err, "INVALID_ROLE",
					"roles[%zu].%s: unknown member; roles are {\"role_id\": "
					"CRN}",
					i, key);
		}
		const json_t *id = json_object_get(r, "role_id");
		if (!json_is_string(id))
			return invalid(err, "INVALID_ROLE", "roles[%zu].role_id: must be a string",
				       i);
		const char *crn = json_string_value(id);
		bool platform;
		const char *name;
		if (iam_roles_parse_crn(crn, &platform, &name) < 0)
			return invalid(err, "INVALID_ROLE",
				       "roles[%zu].role_id: \"%.160s\" is not a role CRN (%s<Name> "
				       "or %s<Name>)",
				       i, crn, IAM_ROLE_CRN_PLATFORM, IAM_ROLE_CRN_SERVICE);
		if (svc) {
			if (!iam_roles_find(svc, crn))
				return invalid(
					err, "INVALID_ROLE",
					"roles[%zu].role_id: %s role \"%s\" is not a role of "
					"service \"%s\"",
					i, platform ? "platform" : "service", name, svc->name);
		} else if (!iam_roles_generic_name(crn)) {
			return invalid(
				err, "INVALID_ROLE",
				"roles[%zu].role_id: \"%s\" needs a serviceName in resources; "
				"a policy on every service takes platform roles only (Viewer, "
				"Operator, Editor, Administrator)",
				i, name);
		}
		for (size_t j = 0; j < i; j++)
			if (strcmp(spec->rules[j].role_crn, crn) == 0)
				return invalid(err, "INVALID_ROLE",
					       "roles[%zu].role_id: given twice", i);
		spec->rules[i] = (struct iam_policy_rule){
			.role_crn = crn,
			.service_name = res->service_name,
			.service_instance = res->service_instance,
			.resource_type = res->resource_type,
			.resource = res->resource,
			.resource_match = res->resource_match,
			.key_ring = res->key_ring,
			.region = res->region,
			.subject_instance = subject_instance,
		};
		spec->n_rules = i + 1;
		json_t *o = json_pack("{s:s}", "role_id", crn);
		if (!o || json_array_append_new(out, o) < 0)
			return -ENOMEM;
	}
	spec->roles_json = json_dumps(out, JSON_COMPACT);
	return spec->roles_json ? 0 : -ENOMEM;
}

static const char *const body_members[] = {
	"type",
	"subjects",
	"roles",
	"resources",
	"description",
	/* Read-only members of a policy as GET returns it: accepted back on PUT, ignored. */
	"id",
	"href",
	"created_at",
	"created_by_id",
	"last_modified_at",
	"last_modified_by_id",
	"state",
};

int iam_policy_parse(const json_t *body, const char *account_id, struct iam_policy_spec *ret,
		     struct sealvm_err *err)
{
	struct iam_policy_spec spec = {0};
	struct resource res = {"", "", "", "", "", "", false};
	const char *subject_instance = "";
	const char *key;
	json_t *v;
	int r;

	if (!json_is_object(body))
		return invalid(err, "INVALID_BODY", "the body must be a JSON object (a policy)");
	json_object_foreach((json_t *)body, key, v)
	{
		bool known = false;
		for (size_t i = 0; i < ELEMENTSOF(body_members); i++)
			known = known || strcmp(key, body_members[i]) == 0;
		if (!known)
			return invalid(err, "INVALID_BODY",
				       "%s: unknown member; a policy has type, subjects, roles, "
				       "resources, description",
				       key);
	}
	const json_t *type = json_object_get(body, "type");
	if (!json_is_string(type) || (strcmp(json_string_value(type), "access") != 0 &&
				      strcmp(json_string_value(type), "authorization") != 0))
		return invalid(err, "INVALID_TYPE",
			       "type: must be \"access\" or \"authorization\"");
	spec.authorization = strcmp(json_string_value(type), "authorization") == 0;

	const json_t *desc = json_object_get(body, "description");
	if (desc && !json_is_null(desc)) {
		if (!json_is_string(desc) || json_string_length(desc) > IAM_POLICY_DESCRIPTION_MAX)
			return invalid(err, "INVALID_BODY",
				       "description: must be a string of at most %d bytes",
				       IAM_POLICY_DESCRIPTION_MAX);
		spec.description = json_string_value(desc);
	}

	r = parse_subject(body, spec.authorization, account_id, &spec, &subject_instance, err);
	if (r >= 0)
		r = parse_resource(body, account_id, &res, &spec.resources_json, err);
	if (r >= 0)
		r = parse_roles(body, &res, spec.authorization, &spec, subject_instance, err);
	if (r < 0) {
		iam_policy_spec_done(&spec);
		if (r == -ENOMEM)
			return sealvm_err_set(err, -ENOMEM, "NO_MEMORY", "out of memory");
		return r;
	}
	*ret = spec;
	return 0;
}

void iam_policy_spec_done(struct iam_policy_spec *spec)
{
	if (!spec)
		return;
	free(spec->subjects_json);
	free(spec->roles_json);
	free(spec->resources_json);
	spec->subjects_json = spec->roles_json = spec->resources_json = NULL;
}

/* roles as stored, with display_name and description added from the role tables. */
static json_t *roles_for_output(const char *text)
{
	json_t *roles = json_loads(text, 0, NULL);
	size_t i;
	json_t *r;
	if (!json_is_array(roles)) {
		json_decref(roles);
		return NULL;
	}
	json_array_foreach(roles, i, r)
	{
		bool platform;
		const char *name;
		const char *crn = json_string_value(json_object_get(r, "role_id"));
		if (crn && iam_roles_parse_crn(crn, &platform, &name) == 0) {
			json_object_set_new(r, "display_name", json_string(name));
			json_object_set_new(
				r, "description",
				json_string(platform ? "platform role" : "service role"));
		}
	}
	return roles;
}

json_t *iam_policy_json(const struct iam_policy_row *row)
{
	char href[96];
	snprintf(href, sizeof(href), "/v1/policies/%s", row->id);
	json_t *subjects = json_loads(row->subjects, 0, NULL);
	json_t *roles = roles_for_output(row->roles);
	json_t *resources = json_loads(row->resources, 0, NULL);
	if (!subjects || !roles || !resources) {
		json_decref(subjects);
		json_decref(roles);
		json_decref(resources);
		return NULL;
	}
	json_t *o =
		json_pack("{s:s, s:s, s:o, s:o, s:o, s:s, s:s, s:s, s:s, s:s, s:s}", "id", row->id,
			  "type", row->type, "subjects", subjects, "roles", roles, "resources",
			  resources, "href", href, "created_at", row->created_at, "created_by_id",
			  row->created_by_id, "last_modified_at", row->last_modified_at,
			  "last_modified_by_id", row->last_modified_by_id, "state", "active");
	if (o && row->description &&
	    json_object_set_new(o, "description", json_string(row->description)) < 0) {
		json_decref(o);
		return NULL;
	}
	return o;
}

/* --- deleting a subject's policies (for the identity half) ------------------------ */

int iam_access_delete_subject_policies(sqlite3 *conn, const char *account_id, const char *iam_id,
				       struct sealvm_err *err)
{
	if (!conn || !account_id || !account_id[0] || !iam_id || !iam_id[0])
		return sealvm_err_set(
			err, -EINVAL, "INVALID_ARGUMENT",
			"deleting a subject's policies needs an account and an iam_id");
	return iam_access_store_delete_subject(conn, account_id, iam_id, err);
}

/* --- the decision ------------------------------------------------------------------ */

/* '*' any run of bytes, '?' one byte; everything else literal. Iterative, no recursion. */
static bool string_match(const char *pat, const char *s)
{
	const char *star = NULL, *resume = NULL;
	while (*s) {
		if (*pat == '?' || (*pat && *pat != '*' && *pat == *s)) {
			pat++;
			s++;
		} else if (*pat == '*') {
			star = pat++;
			resume = s;
		} else if (star) {
			pat = star + 1;
			s = ++resume;
		} else {
			return false;
		}
	}
	while (*pat == '*')
		pat++;
	return *pat == '\0';
}

/* Field @index (0-based) of a CRN "crn:v1:cname:ctype:service:location:scope:instance:type:res". */
static bool crn_field(const char *crn, unsigned index, char *buf, size_t size)
{
	if (!crn || strncmp(crn, "crn:", 4) != 0)
		return false;
	const char *p = crn;
	for (unsigned i = 0; i < index; i++) {
		p = strchr(p, ':');
		if (!p)
			return false;
		p++;
	}
	size_t n = strcspn(p, ":");
	if (n >= size)
		return false;
	memcpy(buf, p, n);
	buf[n] = '\0';
	return true;
}

struct decide {
	const struct iam_service *svc;
	const char *action;
	const struct http_target *t;
	const char *region;	     /* the target CRN's location, "" unknown */
	const char *source_instance; /* PRINCIPAL_SERVICE: from its iam_id CRN, "" unknown */
};

static int decide_row(const struct iam_rule_row *row, void *userdata)
{
	const struct decide *d = userdata;

	/* A policy on every service does not reach the account management services. */
	if (!row->service_name[0] && d->svc->account_management)
		return 0;
	const struct iam_role *role = iam_roles_find(d->svc, row->role_crn);
	if (!role || !iam_role_allows(d->svc, role, d->action))
		return 0;
	if (row->resource_match &&
	    (!d->t->resource[0] || !string_match(row->resource, d->t->resource)))
		return 0;
	/* http_target carries no key ring yet: a keyRing-scoped rule cannot be proven to apply. */
	if (row->key_ring[0])
		return 0;
	if (row->region[0] && strcmp(row->region, d->region) != 0)
		return 0;
	if (row->subject_instance[0] && strcmp(row->subject_instance, d->source_instance) != 0)
		return 0;
	return 1;
}

static int policies_allow(struct iam *iam, const struct iam_decide_query *q, struct decide *d,
			  struct sealvm_err *err)
{
	struct iam_access_state *s = state_of(iam);

	if (!s)
		return sealvm_err_set(err, -EIO, "INTERNAL",
				      "access management is not initialised");
	sqlite3 *conn = db_read_begin(s->db);
	if (!conn)
		return sealvm_err_set(err, -EIO, "DB_ERROR", "no database connection");
	/* The statement is prepared once per read connection (db_prepare's cache). */
	sqlite3_stmt *st = NULL;
	int r = iam_access_store_decide_prepare(conn, &st, err);
	if (r >= 0)
		r = iam_access_store_decide(conn, st, q, decide_row, d, err);
	db_stmt_release(st);
	db_read_end(s->db, conn);
	return r;
}

static const char *principal_label(const struct sealvm_principal *p)
{
	return p->iam_id[0] ? p->iam_id : (p->name[0] ? p->name : "(unnamed principal)");
}

int iam_authorize(struct iam *iam, const struct sealvm_principal *p, const char *action,
		  const struct http_target *target, struct sealvm_err *err)
{
	static const struct http_target no_target;
	const struct http_target *t = target ? target : &no_target;

	/* 1. Only authenticated principals get this far; refuse anything else outright. */
	if (!p || p->kind == PRINCIPAL_NONE)
		return sealvm_err_set(err, -EPERM, "NOT_AUTHENTICATED",
				      "the request is not authenticated; authenticate and retry");
	if (!action || !action[0])
		return sealvm_err_set(err, -EACCES, "ACTION_NOT_ALLOWED",
				      "no action to authorize (a route without an IAM action)");

	/* 2. An account-level action acts in the principal's own account. */
	const char *account = t->account_id[0] ? t->account_id : p->account_id;

	/*
	 * 3. Nobody acts across accounts — our own services included: a service
	 * acts in the customer's account its principal names, and an
	 * authorization of account B must not let it act on B's resources for
	 * account A (a confused deputy).
	 */
	if (!p->account_id[0] || strcmp(p->account_id, account) != 0)
		return sealvm_err_set(err, -EACCES, "ACTION_NOT_ALLOWED",
				      "%s of account %s may not do %s in another account",
				      principal_label(p),
				      p->account_id[0] ? p->account_id : "(none)", action);

	const struct iam_service *svc = iam_roles_service_of_action(action);
	if (!svc) {
		log_error("iam_authorize: action \"%s\" belongs to no known service; denied",
			  action);
		return sealvm_err_set(err, -EACCES, "ACTION_NOT_ALLOWED",
				      "%s is not a known action; nobody may do it", action);
	}

	/* 4. The account owner may do everything in their account. */
	if (p->kind == PRINCIPAL_USER) {
		char owner[IAM_IAM_ID_MAX];
		struct sealvm_err oerr = SEALVM_ERR_INIT;
		int r = iam_account_owner(iam, account, owner, &oerr);
		if (r == 0 && strcmp(owner, p->iam_id) == 0)
			return 0;
		if (r < 0 && r != -ENOENT) {
			if (err && !sealvm_err_isset(err))
				*err = oerr;
			return r;
		}
	}

	char region[64] = "";
	char source_instance[64] = "";
	crn_field(t->crn, 5, region, sizeof(region));
	struct decide d = {
		.svc = svc,
		.action = action,
		.t = t,
		.region = region,
		.source_instance = source_instance,
	};
	struct iam_decide_query q = {
		.account_id = account,
		.service_name = svc->name,
		.service_instance = t->service_instance,
		.resource_type = t->resource_type,
		.resource = t->resource,
	};
	int r;

	switch (p->kind) {
	case PRINCIPAL_USER:
	case PRINCIPAL_SERVICE_ID:
		/* 5. An access policy naming the principal, with a role that has the action. */
		if (!p->iam_id[0])
			break;
		q.type = "access";
		q.subject = p->iam_id;
		r = policies_allow(iam, &q, &d, err);
		if (r < 0)
			return r;
		if (r > 0)
			return 0;
		break;
	case PRINCIPAL_SERVICE: {
		/* 6. An authorization of the account naming this service as the source. */
		if (!p->service_name[0])
			break;
		crn_field(p->iam_id, 7, source_instance, sizeof(source_instance));
		q.type = "authorization";
		q.subject = p->service_name;
		r = policies_allow(iam, &q, &d, err);
		if (r < 0)
			return r;
		if (r > 0)
			return 0;
		const struct iam_role *least = iam_roles_first_allowing(svc, action);
		return sealvm_err_set(
			err, -EACCES, "AUTHORIZATION_MISSING",
			"%s is not authorized to use %s in account %s (%s): create an authorization "
			"policy with source %s, target %s%s%s and a role that includes the action "
			"(%s%s)",
			p->service_name, svc->name, account, action, p->service_name, svc->name,
			t->service_instance[0] ? " instance " : "", t->service_instance,
			least ? least->name : "none of its roles does yet",
			least ? (least->platform ? ", a platform role" : ", a service role") : "");
	}
	default:
		break;
	}

	/* 7. Nothing grants it. */
	return sealvm_err_set(err, -EACCES, "ACTION_NOT_ALLOWED",
			      "%s is not allowed to do %s%s%s: ask the account owner for a policy "
			      "granting a role that includes it",
			      principal_label(p), action,
			      t->resource[0] || t->service_instance[0] ? " on " : "",
			      t->resource[0] ? t->resource : t->service_instance);
}
