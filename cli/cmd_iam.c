// SPDX-License-Identifier: Apache-2.0
/*
 * cmd_iam.c — `sealvm iam service-id|api-key|policy|authorization|hmac ...`.
 *
 * Thin commands over the identity and access APIs: build the request, send it
 * through the client, print the answer as columns, key: value lines or (with
 * --json) the server's JSON. An API key's value is printed once, to stdout or
 * to a new 0600 file, and appears in no message; an HMAC secret access key
 * likewise, once, to stdout.
 */
#include <getopt.h>
#include <string.h>

#include "sealvm/file.h"

#include "cli.h"
#include "client.h"

#define ROLE_CRN "crn:v1:bluemix:public:iam::::role:"
#define SERVICE_ROLE_CRN "crn:v1:bluemix:public:iam::::serviceRole:"

struct iam_args {
	const char *name, *description, *iam_id, *out;
	const char *subject, *role, *service, *instance, *rtype, *resource, *type;
	const char *source, *target, *source_instance, *target_instance;
	const char *service_id;
	bool json;
};

enum {
	OPT_NAME = 'n',
	OPT_DESC = 'd',
	OPT_IAMID = 'i',
	OPT_OUT = 'o',
	OPT_SUBJECT = 's',
	OPT_ROLE = 'r',
	OPT_SERVICE = 'S',
	OPT_INSTANCE = 'I',
	OPT_RTYPE = 't',
	OPT_RESOURCE = 'R',
	OPT_TYPE = 'T',
	OPT_SOURCE = 'a',
	OPT_TARGET = 'b',
	OPT_SOURCE_INST = 'A',
	OPT_TARGET_INST = 'B',
	OPT_JSON = 'j',
	OPT_SERVICEID = 'D',
};

#define O_JSON                                                                                     \
	{                                                                                          \
		"json", no_argument, NULL, OPT_JSON                                                \
	}
#define O_NAME                                                                                     \
	{                                                                                          \
		"name", required_argument, NULL, OPT_NAME                                          \
	}
#define O_DESC                                                                                     \
	{                                                                                          \
		"description", required_argument, NULL, OPT_DESC                                   \
	}
#define O_IAMID                                                                                    \
	{                                                                                          \
		"iam-id", required_argument, NULL, OPT_IAMID                                       \
	}

static int iam_opt(int c, const char *arg, void *userdata)
{
	struct iam_args *a = userdata;
	const char **slot = NULL;

	switch (c) {
	case OPT_JSON:
		a->json = true;
		return 0;
	case OPT_NAME:
		slot = &a->name;
		break;
	case OPT_DESC:
		slot = &a->description;
		break;
	case OPT_IAMID:
		slot = &a->iam_id;
		break;
	case OPT_OUT:
		slot = &a->out;
		break;
	case OPT_SUBJECT:
		slot = &a->subject;
		break;
	case OPT_ROLE:
		slot = &a->role;
		break;
	case OPT_SERVICE:
		slot = &a->service;
		break;
	case OPT_INSTANCE:
		slot = &a->instance;
		break;
	case OPT_RTYPE:
		slot = &a->rtype;
		break;
	case OPT_RESOURCE:
		slot = &a->resource;
		break;
	case OPT_TYPE:
		slot = &a->type;
		break;
	case OPT_SOURCE:
		slot = &a->source;
		break;
	case OPT_TARGET:
		slot = &a->target;
		break;
	case OPT_SOURCE_INST:
		slot = &a->source_instance;
		break;
	case OPT_TARGET_INST:
		slot = &a->target_instance;
		break;
	case OPT_SERVICEID:
		slot = &a->service_id;
		break;
	default:
		return -1;
	}
	if (!*arg)
		return cli_usage_error("an option has an empty value; give a non-empty one");
	*slot = arg;
	return 0;
}

/*
 * Parses options and exactly @npos positional arguments (named @posname in messages).
 * Returns 1 with *ret_exit set when the command must not run.
 */
static int parse(int argc, char **argv, const struct option *opts, struct iam_args *a, int npos,
		 const char *posname, int *ret_exit)
{
	if (cli_parse(argc, argv, "", opts, iam_opt, a, ret_exit))
		return 1;
	*ret_exit = cli_check_positionals(argc, argv, npos, posname);
	return *ret_exit != 0;
}

/* GET of a paged identity list; follows `next` and returns all items in one array. */
static int get_all_pages(struct cli_client *c, const char *path, const char *member, json_t **ret)
{
	json_t *all = json_array();
	_cleanup_free_ char *token = NULL;

	if (!all)
		return cli_oom();
	for (;;) {
		_cleanup_free_ char *p = strdup(path);
		json_t *page = NULL;
		int ex;

		if (!p || cli_query_add(&p, "pagesize", "100") < 0 ||
		    (token && cli_query_add(&p, "pagetoken", token) < 0)) {
			json_decref(all);
			return cli_oom();
		}
		if ((ex = cli_api(c, "GET", p, NULL, &page)) != 0) {
			json_decref(all);
			return ex;
		}
		json_array_extend(all, json_object_get(page, member));
		const char *next = json_string_value(json_object_get(page, "next"));
		free(token);
		token = next ? strdup(next) : NULL;
		json_decref(page);
		if (!token)
			break;
	}
	*ret = all;
	return 0;
}

/* Prints an answer: JSON with --json, else key: value lines. Steals @j. */
static int show(const struct iam_args *a, json_t *j)
{
	if (a->json)
		cli_print_json(j ? j : json_null());
	else if (j)
		cli_print_object(j);
	json_decref(j);
	return EXIT_OK;
}

/* A request without a body whose answer is shown; @verb is said when there is none. */
static int simple(int argc, char **argv, const char *method, const char *prefix, const char *suffix,
		  const char *verb)
{
	static const struct option opts[] = {O_JSON, {0}};
	struct iam_args a = {0};
	_cleanup_client_ struct cli_client *c = NULL;
	_cleanup_free_ char *path = NULL;
	json_t *j = NULL;
	int ex;

	if (parse(argc, argv, opts, &a, 1, "ID", &ex))
		return ex;
	if (!(path = cli_id_path(prefix, argv[optind], suffix)))
		return cli_oom();
	if ((ex = cli_client_open(&c)) != 0 || (ex = cli_api(c, method, path, NULL, &j)) != 0)
		return ex;
	if (!j && !a.json) {
		printf("%s %s\n", verb, argv[optind]);
		return EXIT_OK;
	}
	return show(&a, j);
}

/* ---- service IDs --------------------------------------------------------------------------- */

int cmd_iam_serviceid_create(int argc, char **argv)
{
	static const struct option opts[] = {O_DESC, O_JSON, {0}};
	struct iam_args a = {0};
	_cleanup_client_ struct cli_client *c = NULL;
	json_t *body, *j = NULL;
	int ex;

	if (parse(argc, argv, opts, &a, 1, "NAME", &ex))
		return ex;
	body = json_pack("{s:s, s:s}", "name", argv[optind], "description",
			 a.description ? a.description : "");
	if (!body)
		return cli_oom();
	if ((ex = cli_client_open(&c)) == 0)
		ex = cli_api(c, "POST", "/v1/serviceids", body, &j);
	json_decref(body);
	return ex ? ex : show(&a, j);
}

int cmd_iam_serviceid_list(int argc, char **argv)
{
	static const struct option opts[] = {O_JSON, {0}};
	static const char *const hdr[] = {"ID", "NAME", "LOCKED", "IAM_ID", "DESCRIPTION"};
	static const char *const keys[] = {"id", "name", "locked", "iam_id", "description"};
	struct iam_args a = {0};
	_cleanup_client_ struct cli_client *c = NULL;
	json_t *all = NULL;
	int ex;

	if (parse(argc, argv, opts, &a, 0, "", &ex))
		return ex;
	if ((ex = cli_client_open(&c)) != 0 ||
	    (ex = get_all_pages(c, "/v1/serviceids", "serviceids", &all)) != 0)
		return ex;
	if (a.json) {
		json_t *o = json_pack("{s:o}", "serviceids", all);
		cli_print_json(o);
		json_decref(o);
	} else {
		cli_print_table(all, hdr, keys, ELEMENTSOF(keys));
		json_decref(all);
	}
	return EXIT_OK;
}

int cmd_iam_serviceid_show(int argc, char **argv)
{
	return simple(argc, argv, "GET", "/v1/serviceids", "", "");
}

int cmd_iam_serviceid_update(int argc, char **argv)
{
	static const struct option opts[] = {O_NAME, O_DESC, O_JSON, {0}};
	struct iam_args a = {0};
	_cleanup_client_ struct cli_client *c = NULL;
	_cleanup_free_ char *path = NULL;
	json_t *body, *j = NULL;
	int ex;

	if (parse(argc, argv, opts, &a, 1, "ID", &ex))
		return ex;
	if (!a.name && !a.description)
		return cli_usage_error("nothing to change: give --name or --description");
	if (!(path = cli_id_path("/v1/serviceids", argv[optind], "")) || !(body = json_object()))
		return cli_oom();
	if (a.name)
		json_object_set_new(body, "name", json_string(a.name));
	if (a.description)
		json_object_set_new(body, "description", json_string(a.description));
	if ((ex = cli_client_open(&c)) == 0)
		ex = cli_api(c, "PUT", path, body, &j);
	json_decref(body);
	return ex ? ex : show(&a, j);
}

int cmd_iam_serviceid_delete(int argc, char **argv)
{
	return simple(argc, argv, "DELETE", "/v1/serviceids", "", "deleted");
}

int cmd_iam_serviceid_lock(int argc, char **argv)
{
	return simple(argc, argv, "POST", "/v1/serviceids", "/lock", "locked");
}

int cmd_iam_serviceid_unlock(int argc, char **argv)
{
	return simple(argc, argv, "DELETE", "/v1/serviceids", "/lock", "unlocked");
}

/* ---- API keys ------------------------------------------------------------------------------ */

int cmd_iam_apikey_create(int argc, char **argv)
{
	static const struct option opts[] = {
		O_IAMID, O_DESC, {"out", required_argument, NULL, OPT_OUT}, O_JSON, {0},
	};
	struct iam_args a = {0};
	struct sealvm_err err = SEALVM_ERR_INIT;
	_cleanup_client_ struct cli_client *c = NULL;
	json_t *body, *j = NULL, *v;
	int ex, r;

	if (parse(argc, argv, opts, &a, 1, "NAME", &ex))
		return ex;
	if (!a.iam_id)
		return cli_usage_error(
			"give --iam-id IAM_ID (the service ID or user the key is for)");
	if (a.out && access(a.out, F_OK) == 0) {
		/* refuse before the key exists: it could not be shown again */
		cli_error("--out '%s' exists; name a new file [OUTPUT_EXISTS]", a.out);
		return EXIT_FAIL;
	}
	body = json_pack("{s:s, s:s, s:s}", "name", argv[optind], "iam_id", a.iam_id, "description",
			 a.description ? a.description : "");
	if (!body)
		return cli_oom();
	if ((ex = cli_client_open(&c)) == 0)
		ex = cli_api(c, "POST", "/v1/apikeys", body, &j);
	json_decref(body);
	if (ex)
		return ex;
	v = json_object_get(j, "apikey");
	if (!json_is_string(v)) {
		cli_error("the answer holds no API key value [BAD_ANSWER]");
		json_decref(j);
		return EXIT_FAIL;
	}
	if (a.out) {
		r = sealvm_write_file_exclusive(a.out, json_string_value(v), json_string_length(v),
						0600, &err);
		explicit_bzero((char *)json_string_value(v), json_string_length(v));
		json_object_del(j, "apikey");
		if (r < 0) {
			cli_error("the key %s was created but its value could not be written: %s; "
				  "delete it and create another [%s]",
				  json_string_value(json_object_get(j, "id")),
				  sealvm_err_isset(&err) ? err.message : strerror(-r),
				  sealvm_err_isset(&err) ? err.reason : "OUTPUT_WRITE");
			json_decref(j);
			return EXIT_FAIL;
		}
		return show(&a, j);
	}
	if (a.json) {
		cli_print_json(j);
	} else {
		/* the value alone on stdout, the details on stderr: `> FILE` keeps only the key */
		fwrite(json_string_value(v), 1, json_string_length(v), stdout);
		fputc('\n', stdout);
		fprintf(stderr, "created API key %s for %s; its value is shown only once\n",
			json_string_value(json_object_get(j, "id")), a.iam_id);
	}
	explicit_bzero((char *)json_string_value(v), json_string_length(v));
	json_decref(j);
	return EXIT_OK;
}

int cmd_iam_apikey_list(int argc, char **argv)
{
	static const struct option opts[] = {O_IAMID, O_JSON, {0}};
	static const char *const hdr[] = {"ID", "NAME", "LOCKED", "IAM_ID", "DESCRIPTION"};
	static const char *const keys[] = {"id", "name", "locked", "iam_id", "description"};
	struct iam_args a = {0};
	_cleanup_client_ struct cli_client *c = NULL;
	_cleanup_free_ char *path = strdup("/v1/apikeys");
	json_t *all = NULL;
	int ex;

	if (parse(argc, argv, opts, &a, 0, "", &ex))
		return ex;
	if (!path || (a.iam_id && cli_query_add(&path, "iam_id", a.iam_id) < 0))
		return cli_oom();
	if ((ex = cli_client_open(&c)) != 0 || (ex = get_all_pages(c, path, "apikeys", &all)) != 0)
		return ex;
	if (a.json) {
		json_t *o = json_pack("{s:o}", "apikeys", all);
		cli_print_json(o);
		json_decref(o);
	} else {
		cli_print_table(all, hdr, keys, ELEMENTSOF(keys));
		json_decref(all);
	}
	return EXIT_OK;
}

int cmd_iam_apikey_show(int argc, char **argv)
{
	return simple(argc, argv, "GET", "/v1/apikeys", "", "");
}

int cmd_iam_apikey_delete(int argc, char **argv)
{
	return simple(argc, argv, "DELETE", "/v1/apikeys", "", "deleted");
}

int cmd_iam_apikey_lock(int argc, char **argv)
{
	return simple(argc, argv, "POST", "/v1/apikeys", "/lock", "locked");
}

int cmd_iam_apikey_unlock(int argc, char **argv)
{
	return simple(argc, argv, "DELETE", "/v1/apikeys", "/lock", "unlocked");
}

/* ---- policies ------------------------------------------------------------------------------ */

/* A role CRN for a short role name; a CRN passes through. Platform roles are IAM's four. */
static char *role_crn(const char *role)
{
	static const char *const platform[] = {"Viewer", "Operator", "Editor", "Administrator"};
	char *s = NULL;

	if (!strncmp(role, "crn:", 4))
		return strdup(role);
	for (size_t i = 0; i < ELEMENTSOF(platform); i++)
		if (!strcasecmp(role, platform[i]))
			return asprintf(&s, ROLE_CRN "%s", platform[i]) < 0 ? NULL : s;
	return asprintf(&s, SERVICE_ROLE_CRN "%s", role) < 0 ? NULL : s;
}

static int add_attr(json_t *attrs, const char *name, const char *value)
{
	if (!value)
		return 0;
	return json_array_append_new(attrs, json_pack("{s:s, s:s}", "name", name, "value", value));
}

static json_t *policy_body(const char *type, json_t *subject_attrs, const char *role,
			   json_t *resource_attrs)
{
	_cleanup_free_ char *crn = role_crn(role);
	if (!crn)
		return NULL;
	return json_pack("{s:s, s:[{s:o}], s:[{s:s}], s:[{s:o}]}", "type", type, "subjects",
			 "attributes", subject_attrs, "roles", "role_id", crn, "resources",
			 "attributes", resource_attrs);
}

static int need_account(struct cli_client *c, const char **ret)
{
	*ret = cli_client_account(c);
	if (!*ret) {
		cli_error("the token names no account (account.bss); log in with an API key "
			  "[NO_ACCOUNT]");
		return EXIT_FAIL;
	}
	return 0;
}

/* "name=value,..." of a policy's subjects[0] or resources[0]. */
static char *attrs_text(const json_t *policy, const char *member)
{
	const json_t *attrs =
		json_object_get(json_array_get(json_object_get(policy, member), 0), "attributes");
	char *s = strdup(""), *n;
	size_t i;
	const json_t *at;

	json_array_foreach(attrs, i, at)
	{
		if (!s || asprintf(&n, "%s%s%s=%s", s, *s ? "," : "",
				   json_string_value(json_object_get(at, "name")),
				   json_string_value(json_object_get(at, "value"))) < 0) {
			free(s);
			return NULL;
		}
		free(s);
		s = n;
	}
	return s;
}

/* A flat view of a policy for columns and key: value lines (a new reference). */
static json_t *policy_flat(const json_t *p)
{
	_cleanup_free_ char *subj = attrs_text(p, "subjects"), *res = attrs_text(p, "resources");
	const json_t *roles = json_object_get(p, "roles"), *r;
	_cleanup_free_ char *rs = strdup("");
	size_t i;

	json_array_foreach(roles, i, r)
	{
		const char *name = json_string_value(json_object_get(r, "display_name"));
		char *n;
		if (!name)
			name = json_string_value(json_object_get(r, "role_id"));
		if (!rs || asprintf(&n, "%s%s%s", rs, *rs ? "," : "", name ? name : "?") < 0)
			return NULL;
		free(rs);
		rs = n;
	}
	return json_pack("{s:s?, s:s?, s:s?, s:s?, s:s?, s:s?}", "id",
			 json_string_value(json_object_get(p, "id")), "type",
			 json_string_value(json_object_get(p, "type")), "subject", subj, "roles",
			 rs, "resource", res, "created_at",
			 json_string_value(json_object_get(p, "created_at")));
}

static int print_policies(const struct iam_args *a, json_t *j)
{
	static const char *const hdr[] = {"ID", "TYPE", "SUBJECT", "ROLES", "RESOURCE"};
	static const char *const keys[] = {"id", "type", "subject", "roles", "resource"};
	json_t *flat, *p;
	size_t i;

	if (a->json) {
		cli_print_json(j);
		json_decref(j);
		return EXIT_OK;
	}
	if (!(flat = json_array())) {
		json_decref(j);
		return cli_oom();
	}
	json_array_foreach(json_object_get(j, "policies"), i, p)
		json_array_append_new(flat, policy_flat(p));
	cli_print_table(flat, hdr, keys, ELEMENTSOF(keys));
	json_decref(flat);
	json_decref(j);
	return EXIT_OK;
}

static int show_policy(const struct iam_args *a, json_t *j)
{
	if (a->json)
		return show(a, j);
	json_t *flat = policy_flat(j);
	json_decref(j);
	if (!flat)
		return cli_oom();
	cli_print_object(flat);
	json_decref(flat);
	return EXIT_OK;
}

static int list_policies(const struct iam_args *a, const char *type, const char *iam_id)
{
	_cleanup_client_ struct cli_client *c = NULL;
	_cleanup_free_ char *path = strdup("/v1/policies");
	const char *account;
	json_t *j = NULL;
	int ex;

	if ((ex = cli_client_open(&c)) != 0 || (ex = need_account(c, &account)) != 0)
		return ex;
	if (!path || cli_query_add(&path, "account_id", account) < 0 ||
	    (type && cli_query_add(&path, "type", type) < 0) ||
	    (iam_id && cli_query_add(&path, "iam_id", iam_id) < 0))
		return cli_oom();
	if ((ex = cli_api(c, "GET", path, NULL, &j)) != 0)
		return ex;
	return print_policies(a, j);
}

int cmd_iam_policy_create(int argc, char **argv)
{
	static const struct option opts[] = {
		{"subject", required_argument, NULL, OPT_SUBJECT},
		{"role", required_argument, NULL, OPT_ROLE},
		{"service", required_argument, NULL, OPT_SERVICE},
		{"instance", required_argument, NULL, OPT_INSTANCE},
		{"resource-type", required_argument, NULL, OPT_RTYPE},
		{"resource", required_argument, NULL, OPT_RESOURCE},
		O_JSON,
		{0},
	};
	struct iam_args a = {0};
	_cleanup_client_ struct cli_client *c = NULL;
	const char *account;
	json_t *subj, *res, *body, *j = NULL;
	int ex;

	if (parse(argc, argv, opts, &a, 0, "", &ex))
		return ex;
	if (!a.subject || !a.role || !a.service)
		return cli_usage_error("give --subject IAM_ID, --role ROLE and --service NAME");
	if ((ex = cli_client_open(&c)) != 0 || (ex = need_account(c, &account)) != 0)
		return ex;
	subj = json_array();
	res = json_array();
	if (!subj || !res || add_attr(subj, "iam_id", a.subject) < 0 ||
	    add_attr(res, "accountId", account) < 0 ||
	    add_attr(res, "serviceName", a.service) < 0 ||
	    add_attr(res, "serviceInstance", a.instance) < 0 ||
	    add_attr(res, "resourceType", a.rtype) < 0 ||
	    add_attr(res, "resource", a.resource) < 0 ||
	    !(body = policy_body("access", subj, a.role, res)))
		return cli_oom();
	ex = cli_api(c, "POST", "/v1/policies", body, &j);
	json_decref(body);
	return ex ? ex : show_policy(&a, j);
}

int cmd_iam_policy_list(int argc, char **argv)
{
	static const struct option opts[] = {
		O_IAMID,
		{"type", required_argument, NULL, OPT_TYPE},
		O_JSON,
		{0},
	};
	struct iam_args a = {0};
	int ex;

	if (parse(argc, argv, opts, &a, 0, "", &ex))
		return ex;
	if (a.type && strcmp(a.type, "access") && strcmp(a.type, "authorization"))
		return cli_usage_error("--type '%s': give access or authorization", a.type);
	return list_policies(&a, a.type, a.iam_id);
}

int cmd_iam_policy_show(int argc, char **argv)
{
	static const struct option opts[] = {O_JSON, {0}};
	struct iam_args a = {0};
	_cleanup_client_ struct cli_client *c = NULL;
	_cleanup_free_ char *path = NULL;
	json_t *j = NULL;
	int ex;

	if (parse(argc, argv, opts, &a, 1, "ID", &ex))
		return ex;
	if (!(path = cli_id_path("/v1/policies", argv[optind], "")))
		return cli_oom();
	if ((ex = cli_client_open(&c)) != 0 || (ex = cli_api(c, "GET", path, NULL, &j)) != 0)
		return ex;
	return show_policy(&a, j);
}

int cmd_iam_policy_delete(int argc, char **argv)
{
	return simple(argc, argv, "DELETE", "/v1/policies", "", "deleted");
}

/* ---- authorizations ------------------------------------------------------------------------ */

int cmd_iam_authz_create(int argc, char **argv)
{
	static const struct option opts[] = {
		{"source", required_argument, NULL, OPT_SOURCE},
		{"target", required_argument, NULL, OPT_TARGET},
		{"role", required_argument, NULL, OPT_ROLE},
		{"source-instance", required_argument, NULL, OPT_SOURCE_INST},
		{"target-instance", required_argument, NULL, OPT_TARGET_INST},
		O_JSON,
		{0},
	};
	struct iam_args a = {0};
	_cleanup_client_ struct cli_client *c = NULL;
	const char *account;
	json_t *subj, *res, *body, *j = NULL;
	int ex;

	if (parse(argc, argv, opts, &a, 0, "", &ex))
		return ex;
	if (!a.source || !a.target || !a.role)
		return cli_usage_error("give --source SERVICE, --target SERVICE and --role ROLE");
	if ((ex = cli_client_open(&c)) != 0 || (ex = need_account(c, &account)) != 0)
		return ex;
	subj = json_array();
	res = json_array();
	if (!subj || !res || add_attr(subj, "accountId", account) < 0 ||
	    add_attr(subj, "serviceName", a.source) < 0 ||
	    add_attr(subj, "serviceInstance", a.source_instance) < 0 ||
	    add_attr(res, "accountId", account) < 0 || add_attr(res, "serviceName", a.target) < 0 ||
	    add_attr(res, "serviceInstance", a.target_instance) < 0 ||
	    !(body = policy_body("authorization", subj, a.role, res)))
		return cli_oom();
	ex = cli_api(c, "POST", "/v1/policies", body, &j);
	json_decref(body);
	return ex ? ex : show_policy(&a, j);
}

int cmd_iam_authz_list(int argc, char **argv)
{
	static const struct option opts[] = {O_JSON, {0}};
	struct iam_args a = {0};
	int ex;

	if (parse(argc, argv, opts, &a, 0, "", &ex))
		return ex;
	return list_policies(&a, "authorization", NULL);
}

int cmd_iam_authz_delete(int argc, char **argv)
{
	return simple(argc, argv, "DELETE", "/v1/policies", "", "deleted");
}

/* ---- resource instances ------------------------------------------------------------------ */

int cmd_resource_instance_create(int argc, char **argv)
{
	static const struct option opts[] = {
		{"service", required_argument, NULL, OPT_SERVICE},
		{"region", required_argument, NULL, OPT_TARGET},
		O_JSON,
		{0},
	};
	struct iam_args a = {0};
	_cleanup_client_ struct cli_client *c = NULL;
	json_t *body, *j = NULL;
	int ex;

	if (parse(argc, argv, opts, &a, 1, "NAME", &ex))
		return ex;
	if (!a.service)
		return cli_usage_error("--service kms|cloud-object-storage is required");
	body = json_pack("{s:s, s:s, s:s}", "name", argv[optind], "target",
			 a.target ? a.target : "us-south", "resource_id", a.service);
	if (!body)
		return cli_oom();
	if ((ex = cli_client_open(&c)) == 0)
		ex = cli_api(c, "POST", "/v2/resource_instances", body, &j);
	json_decref(body);
	return ex ? ex : show(&a, j);
}

int cmd_resource_instance_list(int argc, char **argv)
{
	static const struct option opts[] = {
		{"service", required_argument, NULL, OPT_SERVICE},
		O_JSON,
		{0},
	};
	static const char *const hdr[] = {"GUID", "NAME", "SERVICE", "REGION", "CRN"};
	static const char *const keys[] = {"guid", "name", "resource_id", "region_id", "crn"};
	struct iam_args a = {0};
	_cleanup_client_ struct cli_client *c = NULL;
	_cleanup_free_ char *path = strdup("/v2/resource_instances");
	json_t *j = NULL;
	int ex;

	if (!path)
		return cli_oom();
	if (parse(argc, argv, opts, &a, 0, "", &ex))
		return ex;
	if (a.service && cli_query_add(&path, "resource_id", a.service) < 0)
		return cli_oom();
	if ((ex = cli_client_open(&c)) != 0 || (ex = cli_api(c, "GET", path, NULL, &j)) != 0)
		return ex;
	if (a.json)
		cli_print_json(j);
	else
		cli_print_table(json_object_get(j, "resources"), hdr, keys, ELEMENTSOF(hdr));
	json_decref(j);
	return EXIT_OK;
}

int cmd_resource_instance_show(int argc, char **argv)
{
	return simple(argc, argv, "GET", "/v2/resource_instances", "", "instance");
}

int cmd_resource_instance_delete(int argc, char **argv)
{
	return simple(argc, argv, "DELETE", "/v2/resource_instances", "", "deleted instance");
}

/* ---- HMAC credentials (resource keys of cloud-object-storage instances) ------------------- */

/* The fields of a resource key worth a line or a column, at the top level. */
static json_t *hmac_flat(const json_t *k)
{
	const json_t *cred = json_object_get(k, "credentials");
	const json_t *hk = json_object_get(cred, "cos_hmac_keys");
	const char *sid = json_string_value(json_object_get(cred, "iam_serviceid_crn"));
	const char *f[][2] = {
		{"guid", json_string_value(json_object_get(k, "guid"))},
		{"name", json_string_value(json_object_get(k, "name"))},
		{"access_key_id", json_string_value(json_object_get(hk, "access_key_id"))},
		{"instance", json_string_value(json_object_get(k, "source_crn"))},
		{"acts_as", sid ? sid : json_string_value(json_object_get(k, "created_by"))},
		{"created_at", json_string_value(json_object_get(k, "created_at"))},
	};
	json_t *o = json_object();
	for (size_t i = 0; o && i < ELEMENTSOF(f); i++)
		if (json_object_set_new(o, f[i][0], json_string(f[i][1] ? f[i][1] : "")) < 0) {
			json_decref(o);
			o = NULL;
		}
	return o;
}

int cmd_iam_hmac_create(int argc, char **argv)
{
	static const struct option opts[] = {
		{"instance", required_argument, NULL, OPT_INSTANCE},
		{"service-id", required_argument, NULL, OPT_SERVICEID},
		O_NAME,
		O_JSON,
		{0},
	};
	struct iam_args a = {0};
	_cleanup_client_ struct cli_client *c = NULL;
	_cleanup_free_ char *sid_crn = NULL;
	json_t *body, *j = NULL, *v, *flat;
	int ex;

	if (parse(argc, argv, opts, &a, 0, "", &ex))
		return ex;
	if (!a.instance)
		return cli_usage_error("give --instance GUID (a cloud-object-storage instance)");
	if ((ex = cli_client_open(&c)) != 0)
		return ex;
	if (a.service_id && strncmp(a.service_id, "crn:", 4) == 0) {
		sid_crn = strdup(a.service_id);
	} else if (a.service_id) {
		_cleanup_free_ char *path = cli_id_path("/v1/serviceids", a.service_id, "");
		json_t *sid = NULL;
		if (!path)
			return cli_oom();
		if ((ex = cli_api(c, "GET", path, NULL, &sid)) != 0)
			return ex;
		const char *crn = json_string_value(json_object_get(sid, "crn"));
		sid_crn = crn ? strdup(crn) : NULL;
		json_decref(sid);
		if (crn && !sid_crn)
			return cli_oom();
		if (!crn) {
			cli_error("the service ID %s has no CRN [BAD_ANSWER]", a.service_id);
			return EXIT_FAIL;
		}
	}
	if (a.service_id && !sid_crn)
		return cli_oom();
	body = json_pack("{s:s, s:s, s:{s:b}}", "name", a.name ? a.name : "hmac-credentials",
			 "source", a.instance, "parameters", "HMAC", 1);
	if (!body || (sid_crn && json_object_set_new(json_object_get(body, "parameters"),
						     "serviceid_crn", json_string(sid_crn)) < 0)) {
		json_decref(body);
		return cli_oom();
	}
	ex = cli_api(c, "POST", "/v2/resource_keys", body, &j);
	json_decref(body);
	if (ex)
		return ex;
	v = json_object_get(json_object_get(json_object_get(j, "credentials"), "cos_hmac_keys"),
			    "secret_access_key");
	flat = hmac_flat(j);
	if (!json_is_string(v) || !flat) {
		cli_error("the answer holds no secret access key [BAD_ANSWER]");
		json_decref(flat);
		json_decref(j);
		return EXIT_FAIL;
	}
	if (a.json) {
		/* the same string object: wiped once below */
		if (json_object_set(flat, "secret_access_key", v) < 0) {
			json_decref(flat);
			json_decref(j);
			return cli_oom();
		}
		cli_print_json(flat);
	} else {
		/* the credentials alone on stdout, the details on stderr */
		printf("access_key_id: %s\n",
		       json_string_value(json_object_get(flat, "access_key_id")));
		fputs("secret_access_key: ", stdout);
		fwrite(json_string_value(v), 1, json_string_length(v), stdout);
		fputc('\n', stdout);
		fflush(stdout);
		fprintf(stderr,
			"created HMAC key %s for instance %s; its secret is shown only once\n",
			json_string_value(json_object_get(flat, "guid")), a.instance);
	}
	explicit_bzero((char *)json_string_value(v), json_string_length(v));
	json_decref(flat);
	json_decref(j);
	return EXIT_OK;
}

int cmd_iam_hmac_list(int argc, char **argv)
{
	static const struct option opts[] = {
		{"instance", required_argument, NULL, OPT_INSTANCE},
		O_JSON,
		{0},
	};
	static const char *const hdr[] = {"GUID", "NAME", "ACCESS_KEY_ID", "ACTS_AS"};
	static const char *const keys[] = {"guid", "name", "access_key_id", "acts_as"};
	struct iam_args a = {0};
	_cleanup_client_ struct cli_client *c = NULL;
	_cleanup_free_ char *path = strdup("/v2/resource_keys");
	json_t *j = NULL, *rows;
	int ex;

	if (!path)
		return cli_oom();
	if (parse(argc, argv, opts, &a, 0, "", &ex))
		return ex;
	if (a.instance && cli_query_add(&path, "source", a.instance) < 0)
		return cli_oom();
	if ((ex = cli_client_open(&c)) != 0 || (ex = cli_api(c, "GET", path, NULL, &j)) != 0)
		return ex;
	if (a.json) {
		cli_print_json(j);
		json_decref(j);
		return EXIT_OK;
	}
	rows = json_array();
	const json_t *all = json_object_get(j, "resources");
	for (size_t i = 0; rows && i < json_array_size(all); i++)
		if (json_array_append_new(rows, hmac_flat(json_array_get(all, i))) < 0) {
			json_decref(rows);
			rows = NULL;
		}
	json_decref(j);
	if (!rows)
		return cli_oom();
	cli_print_table(rows, hdr, keys, ELEMENTSOF(keys));
	json_decref(rows);
	return EXIT_OK;
}

int cmd_iam_hmac_show(int argc, char **argv)
{
	static const struct option opts[] = {O_JSON, {0}};
	struct iam_args a = {0};
	_cleanup_client_ struct cli_client *c = NULL;
	_cleanup_free_ char *path = NULL;
	json_t *j = NULL;
	int ex;

	if (parse(argc, argv, opts, &a, 1, "GUID", &ex))
		return ex;
	if (!(path = cli_id_path("/v2/resource_keys", argv[optind], "")))
		return cli_oom();
	if ((ex = cli_client_open(&c)) != 0 || (ex = cli_api(c, "GET", path, NULL, &j)) != 0)
		return ex;
	if (a.json)
		return show(&a, j);
	json_t *flat = hmac_flat(j);
	json_decref(j);
	return flat ? show(&a, flat) : cli_oom();
}

int cmd_iam_hmac_delete(int argc, char **argv)
{
	return simple(argc, argv, "DELETE", "/v2/resource_keys", "", "deleted HMAC key");
}
