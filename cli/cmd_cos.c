// SPDX-License-Identifier: Apache-2.0
/*
 * cmd_cos.c — `sealvm cos bucket create|list|show|delete`, `sealvm cos
 * put|get|head|ls|rm|presign`: object storage from the command line, on the
 * library's S3 client (s3client.h).
 *
 * Objects are named by cos://REGION/BUCKET/KEY URIs; the region's S3 endpoint
 * comes from the deployment's endpoints table (GET /v2/endpoints on the API),
 * or from --s3-endpoint / SEALVM_COS_ENDPOINT. Credentials: HMAC keys from
 * --hmac-file (the JSON `sealvm iam hmac create --json` prints) or
 * AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, else the session's bearer token
 * with the instance from --instance or SEALVM_COS_INSTANCE.
 *
 * What this file must never do: take a secret from argv, print one, or leave
 * one in memory that is freed unwiped. A download goes to FILE.partial and is
 * renamed only when complete (and its --sha256 matches): a failed get leaves
 * nothing behind.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <libgen.h>
#include <stddef.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>

#include "sealvm/file.h"
#include "sealvm/num.h"
#include "sealvm/s3client.h"
#include "sealvm/secret.h"

#include "cli.h"
#include "client.h"
#include "cmd_cos.h"

#define HMAC_FILE_MAX 4096
#define DEFAULT_THRESHOLD (64ull << 20)
#define STATE_SUFFIX ".sealvm-upload"

static inline void cos_json_decrefp(json_t **j)
{
	json_decref(*j);
}
#define _cleanup_json_ _cleanup_(cos_json_decrefp)

struct cos_args {
	const char *pos[2];
	const char *instance, *endpoint, *region, *location, *kms_key_crn, *hmac_file;
	const char *content_type, *delimiter, *method, *sha256_hex, *range;
	const char *meta[S3C_META_MAX];
	size_t n_meta;
	uint64_t part_size, threshold, max_rate;
	unsigned parallel, expires;
	int progress; /* -1: on a terminal */
	bool json, sha256, force;
};

enum {
	OPT_JSON = 0x100,
	OPT_INSTANCE,
	OPT_ENDPOINT,
	OPT_REGION,
	OPT_LOCATION,
	OPT_KMS_KEY_CRN,
	OPT_HMAC_FILE,
	OPT_CONTENT_TYPE,
	OPT_META,
	OPT_PART_SIZE,
	OPT_PARALLEL,
	OPT_THRESHOLD,
	OPT_SHA256,
	OPT_SHA256_HEX,
	OPT_PROGRESS,
	OPT_NO_PROGRESS,
	OPT_RANGE,
	OPT_DELIMITER,
	OPT_EXPIRES,
	OPT_METHOD,
	OPT_FORCE,
	OPT_MAX_RATE,
};

static const struct option all_opts[] = {
	{"json", no_argument, NULL, OPT_JSON},
	{"instance", required_argument, NULL, OPT_INSTANCE},
	{"s3-endpoint", required_argument, NULL, OPT_ENDPOINT},
	{"region", required_argument, NULL, OPT_REGION},
	{"hmac-file", required_argument, NULL, OPT_HMAC_FILE},
	{"location", required_argument, NULL, OPT_LOCATION},
	{"kms-key-crn", required_argument, NULL, OPT_KMS_KEY_CRN},
	{"content-type", required_argument, NULL, OPT_CONTENT_TYPE},
	{"meta", required_argument, NULL, OPT_META},
	{"part-size", required_argument, NULL, OPT_PART_SIZE},
	{"parallel", required_argument, NULL, OPT_PARALLEL},
	{"multipart-threshold", required_argument, NULL, OPT_THRESHOLD},
	{"sha256", no_argument, NULL, OPT_SHA256},
	{"sha256", required_argument, NULL, OPT_SHA256_HEX},
	{"progress", no_argument, NULL, OPT_PROGRESS},
	{"no-progress", no_argument, NULL, OPT_NO_PROGRESS},
	{"range", required_argument, NULL, OPT_RANGE},
	{"delimiter", required_argument, NULL, OPT_DELIMITER},
	{"expires", required_argument, NULL, OPT_EXPIRES},
	{"method", required_argument, NULL, OPT_METHOD},
	{"force", no_argument, NULL, OPT_FORCE},
	{"max-rate", required_argument, NULL, OPT_MAX_RATE},
	{0},
};

/* The options every cos command takes. */
#define COMMON OPT_JSON, OPT_INSTANCE, OPT_ENDPOINT, OPT_HMAC_FILE

static int cos_opt(int c, const char *arg, void *userdata)
{
	struct cos_args *a = userdata;
	int r;

	switch (c) {
	case OPT_JSON:
		a->json = true;
		return 0;
	case OPT_PROGRESS:
		a->progress = 1;
		return 0;
	case OPT_NO_PROGRESS:
		a->progress = 0;
		return 0;
	case OPT_FORCE:
		a->force = true;
		return 0;
	case OPT_SHA256: /* put: send the real SHA-256 for the server to check */
		a->sha256 = true;
		return 0;
	case OPT_SHA256_HEX: /* get: what the data must hash to */
		a->sha256 = true;
		a->sha256_hex = arg;
		return 0;
	case OPT_META:
		if (a->n_meta == S3C_META_MAX)
			return cli_usage_error("at most %d --meta options", S3C_META_MAX);
		if (!strchr(arg, '=') || arg[0] == '=')
			return cli_usage_error("--meta '%s': give NAME=VALUE", arg);
		a->meta[a->n_meta++] = arg;
		return 0;
	case OPT_PART_SIZE:
		if (sealvm_parse_size(arg, S3C_PART_MIN, S3C_PART_MAX, &a->part_size) < 0)
			return cli_usage_error("--part-size '%s': give a size from 5M to 5G", arg);
		return 0;
	case OPT_THRESHOLD:
		if (sealvm_parse_size(arg, 1, S3C_PART_MAX, &a->threshold) < 0)
			return cli_usage_error("--multipart-threshold '%s': give a size up to 5G",
					       arg);
		return 0;
	case OPT_MAX_RATE:
		if (sealvm_parse_size(arg, 1024, UINT64_MAX / 2, &a->max_rate) < 0)
			return cli_usage_error(
				"--max-rate '%s': give bytes per second (at least 1K)", arg);
		return 0;
	case OPT_PARALLEL:
		if (sealvm_parse_uint(arg, 1, S3C_PARALLEL_MAX, &a->parallel) < 0)
			return cli_usage_error("--parallel '%s': give a number from 1 to %d", arg,
					       S3C_PARALLEL_MAX);
		return 0;
	case OPT_EXPIRES:
		if (sealvm_parse_uint(arg, 1, 604800, &a->expires) < 0)
			return cli_usage_error("--expires '%s': give seconds from 1 to 604800 "
					       "(7 days)",
					       arg);
		return 0;
	case OPT_METHOD:
		if (strcmp(arg, "GET") != 0 && strcmp(arg, "PUT") != 0)
			return cli_usage_error("--method '%s': GET or PUT", arg);
		a->method = arg;
		return 0;
	default:
		break;
	}
	if (!*arg)
		return cli_usage_error("an option has an empty value; give a non-empty one");
	switch (c) {
	case OPT_INSTANCE:
		a->instance = arg;
		break;
	case OPT_ENDPOINT:
		a->endpoint = arg;
		break;
	case OPT_REGION:
		a->region = arg;
		break;
	case OPT_LOCATION:
		a->location = arg;
		break;
	case OPT_KMS_KEY_CRN:
		a->kms_key_crn = arg;
		break;
	case OPT_HMAC_FILE:
		a->hmac_file = arg;
		break;
	case OPT_CONTENT_TYPE:
		a->content_type = arg;
		break;
	case OPT_DELIMITER:
		a->delimiter = arg;
		break;
	case OPT_RANGE:
		a->range = arg;
		break;
	default:
		r = -1;
		return r;
	}
	return 0;
}

/* Parses the options of @accept (0-terminated) and exactly @npos positionals into a->pos. */
static int parse(int argc, char **argv, const int *accept, struct cos_args *a, int npos,
		 const char *posname, int *ret_exit)
{
	struct option opts[ELEMENTSOF(all_opts)] = {0};
	size_t n = 0;

	a->progress = -1;
	for (const struct option *o = all_opts; o->name; o++)
		for (const int *p = accept; *p; p++)
			if (*p == o->val)
				opts[n++] = *o;
	if (cli_parse(argc, argv, "", opts, cos_opt, a, ret_exit))
		return 1;
	if ((*ret_exit = cli_check_positionals(argc, argv, npos, posname)) != 0)
		return 1;
	for (int i = 0; i < npos; i++)
		a->pos[i] = argv[optind + i];
	if (!a->instance) {
		const char *env = getenv("SEALVM_COS_INSTANCE");
		a->instance = env && *env ? env : NULL;
	}
	if (a->instance) {
		for (const char *p = a->instance; *p; p++)
			if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
			      (*p >= '0' && *p <= '9') || *p == '-') ||
			    p - a->instance > 64) {
				*ret_exit =
					cli_usage_error("--instance '%s' is not an instance GUID "
							"(letters, digits and '-')",
							a->instance);
				return 1;
			}
	}
	return 0;
}

/* ---- credentials and the client ----------------------------------------------------------- */

/* Reads the flat HMAC JSON {access_key_id, secret_access_key}. Reports; 0 or EXIT_FAIL. */
static int read_hmac_file(const char *path, char **ret_akid, struct sealvm_secret **ret_secret)
{
	struct sealvm_err err = SEALVM_ERR_INIT;
	_cleanup_secret_ struct sealvm_secret *text = NULL, *sk = NULL;
	json_t *j, *v;
	const char *ak;
	int r;

	r = sealvm_secret_read_file(path, HMAC_FILE_MAX, &text, &err);
	if (r < 0) {
		cli_error("cannot read the HMAC file '%s': %s; give the file 'sealvm iam hmac "
			  "create --json' wrote [HMAC_FILE_UNREADABLE]",
			  path, sealvm_err_isset(&err) ? err.message : strerror(-r));
		return EXIT_FAIL;
	}
	j = json_loadb((const char *)text->data, text->len, 0, NULL);
	ak = json_string_value(json_object_get(j, "access_key_id"));
	v = json_object_get(j, "secret_access_key");
	if (json_is_string(v) && json_string_length(v) > 0 && ak && *ak && strlen(ak) <= 128)
		r = sealvm_secret_from(json_string_value(v), json_string_length(v), &sk);
	else
		r = -EINVAL;
	if (ak && r == 0 && !(*ret_akid = strdup(ak)))
		r = -ENOMEM;
	if (json_is_string(v))
		explicit_bzero((char *)json_string_value(v), json_string_length(v));
	json_decref(j);
	if (r == -ENOMEM)
		return cli_oom();
	if (r < 0) {
		cli_error("the HMAC file '%s' is not a JSON object with access_key_id and "
			  "secret_access_key (the output of 'sealvm iam hmac create --json') "
			  "[HMAC_FILE_MALFORMED]",
			  path);
		return EXIT_FAIL;
	}
	*ret_secret = TAKE_PTR(sk);
	return 0;
}

/*
 * The S3 client for @region (NULL: the deployment's only region): endpoint and credentials
 * as the file comment says. Reports; 0 or an exit status. *@ret_region: the region used.
 */
static int cos_open(const struct cos_args *a, const char *region, bool need_hmac, struct s3c **ret,
		    char **ret_region)
{
	struct sealvm_err err = SEALVM_ERR_INIT;
	_cleanup_free_ char *akid = NULL, *s3url = NULL, *api = NULL, *reg = NULL;
	_cleanup_secret_ struct sealvm_secret *secret = NULL;
	_cleanup_client_ struct cli_client *cl = NULL;
	const char *env_ak = getenv("AWS_ACCESS_KEY_ID"), *env_sk = getenv("AWS_SECRET_ACCESS_KEY");
	const char *ep = a->endpoint ? a->endpoint : getenv("SEALVM_COS_ENDPOINT");
	struct s3c_config cfg = {0};
	int ex, r;

	if (s3c_global_init() < 0) {
		cli_error("cannot start the HTTP client");
		return EXIT_FAIL;
	}
	if (a->hmac_file) {
		if ((ex = read_hmac_file(a->hmac_file, &akid, &secret)) != 0)
			return ex;
	} else if (env_ak && *env_ak && env_sk && *env_sk) {
		if (!(akid = strdup(env_ak)) ||
		    sealvm_secret_from(env_sk, strlen(env_sk), &secret) < 0)
			return cli_oom();
	} else if (need_hmac) {
		cli_error("a presigned URL needs HMAC credentials: give --hmac-file FILE (from "
			  "'sealvm iam hmac create --json') or set AWS_ACCESS_KEY_ID and "
			  "AWS_SECRET_ACCESS_KEY [PRESIGN_NEEDS_HMAC]");
		return EXIT_FAIL;
	} else {
		if ((ex = cli_client_open(&cl)) != 0)
			return ex;
	}
	if (ep && *ep) {
		if (!(s3url = strdup(ep)) || !(reg = strdup(region ? region : "us-south")))
			return cli_oom();
	} else {
		if (cl) {
			if (!(api = strdup(cli_client_endpoint(cl))))
				return cli_oom();
		} else if ((r = cli_endpoint_resolve(&api)) < 0) {
			cli_error(
				"no S3 endpoint: give --s3-endpoint URL (or SEALVM_COS_ENDPOINT), or "
				"the API endpoint (sealvm --endpoint URL, SEALVM_ENDPOINT or 'sealvm "
				"login') to read the region's endpoint from [NO_ENDPOINT]");
			return EXIT_FAIL;
		}
		if ((r = s3c_endpoint_resolve(api, region, &s3url, &reg, &err)) < 0)
			return cli_fail(&err, r);
	}
	cfg.endpoint = s3url;
	cfg.max_send_rate = a->max_rate;
	cfg.region = reg;
	if (secret) {
		cfg.access_key_id = akid;
		cfg.secret_access_key = secret;
	} else {
		cfg.bearer_token = cli_client_token(cl);
		cfg.instance_id = a->instance;
	}
	if ((r = s3c_new(&cfg, ret, &err)) < 0)
		return cli_fail(&err, r);
	if (ret_region)
		*ret_region = TAKE_PTR(reg);
	return 0;
}

/* Reports an operation's failure on @what (a URI or a bucket). */
static int op_fail(const char *what, const struct sealvm_err *err, int r)
{
	if (sealvm_err_isset(err))
		cli_error("%s: %s [%s]", what, err->message, err->reason);
	else
		cli_error("%s: %s", what, strerror(r < 0 ? -r : EIO));
	return EXIT_FAIL;
}

static int parse_uri(const char *text, bool need_key, struct s3c_uri *u)
{
	struct sealvm_err err = SEALVM_ERR_INIT;

	if (s3c_uri_parse(text, u, &err) < 0)
		return cli_usage_error("%s", err.message);
	if (need_key && !*u->key) {
		s3c_uri_done(u);
		return cli_usage_error("'%s' names no object: give cos://REGION/BUCKET/KEY", text);
	}
	return 0;
}

static bool progress_wanted(const struct cos_args *a)
{
	return a->progress < 0 ? isatty(STDERR_FILENO) : a->progress == 1;
}

/* The region of a LocationConstraint ("us-south-standard" → "us-south"). New string. */
static char *region_of_location(const char *loc)
{
	static const char *const classes[] = {"-standard", "-vault", "-cold", "-smart", "-flex"};
	size_t n = strlen(loc);

	for (size_t i = 0; i < ELEMENTSOF(classes); i++) {
		size_t k = strlen(classes[i]);
		if (n > k && !strcmp(loc + n - k, classes[i]))
			return strndup(loc, n - k);
	}
	return strdup(loc);
}

/* ---- buckets ------------------------------------------------------------------------------- */

int cmd_cos_bucket_create(int argc, char **argv)
{
	static const int accept[] = {COMMON, OPT_REGION, OPT_LOCATION, OPT_KMS_KEY_CRN, 0};
	struct cos_args a = {0};
	struct sealvm_err err = SEALVM_ERR_INIT;
	_cleanup_(s3c_freep) struct s3c *c = NULL;
	_cleanup_free_ char *region = NULL, *loc_region = NULL, *loc = NULL;
	int ex, r;

	if (parse(argc, argv, accept, &a, 1, "NAME (the bucket)", &ex))
		return ex;
	if (a.location && !(loc_region = region_of_location(a.location)))
		return cli_oom();
	if ((ex = cos_open(&a, a.region ? a.region : loc_region, false, &c, &region)) != 0)
		return ex;
	if (a.location)
		loc = strdup(a.location);
	else if (asprintf(&loc, "%s-standard", region) < 0)
		loc = NULL;
	if (!loc)
		return cli_oom();
	if ((r = s3c_bucket_create(c, a.pos[0], loc, a.kms_key_crn, &err)) < 0)
		return op_fail(a.pos[0], &err, r);
	if (a.json) {
		_cleanup_json_ json_t *j =
			json_pack("{s:s, s:s, s:s, s:b, s:s?}", "name", a.pos[0], "region", region,
				  "location", loc, "sse", a.kms_key_crn != NULL, "kms_key_crn",
				  a.kms_key_crn);
		if (!j)
			return cli_oom();
		cli_print_json(j);
	} else {
		printf("created bucket %s in %s%s\n", a.pos[0], loc,
		       a.kms_key_crn ? " (objects encrypted under the root key)" : "");
	}
	return EXIT_OK;
}

int cmd_cos_bucket_list(int argc, char **argv)
{
	static const int accept[] = {COMMON, OPT_REGION, 0};
	struct cos_args a = {0};
	struct sealvm_err err = SEALVM_ERR_INIT;
	_cleanup_(s3c_freep) struct s3c *c = NULL;
	_cleanup_free_ char *region = NULL;
	_cleanup_free_ struct s3c_bucket *v = NULL;
	_cleanup_json_ json_t *rows = NULL;
	size_t n = 0;
	int ex, r;

	if (parse(argc, argv, accept, &a, 0, "", &ex))
		return ex;
	if ((ex = cos_open(&a, a.region, false, &c, &region)) != 0)
		return ex;
	if ((r = s3c_bucket_list(c, &v, &n, &err)) < 0)
		return op_fail("bucket list", &err, r);
	rows = json_array();
	for (size_t i = 0; rows && i < n; i++)
		if (json_array_append_new(rows, json_pack("{s:s, s:s}", "name", v[i].name,
							  "created", v[i].created)) < 0)
			return cli_oom();
	if (!rows)
		return cli_oom();
	if (a.json) {
		_cleanup_json_ json_t *j = json_pack("{s:O}", "buckets", rows);
		if (!j)
			return cli_oom();
		cli_print_json(j);
	} else {
		static const char *const hd[] = {"NAME", "CREATED"}, *const keys[] = {"name",
										      "created"};
		cli_print_table(rows, hd, keys, 2);
	}
	return EXIT_OK;
}

int cmd_cos_bucket_show(int argc, char **argv)
{
	static const int accept[] = {COMMON, OPT_REGION, 0};
	struct cos_args a = {0};
	struct sealvm_err err = SEALVM_ERR_INIT;
	_cleanup_(s3c_freep) struct s3c *c = NULL;
	_cleanup_free_ char *region = NULL;
	struct s3c_bucket_info bi;
	_cleanup_json_ json_t *j = NULL;
	int ex, r;

	if (parse(argc, argv, accept, &a, 1, "NAME (the bucket)", &ex))
		return ex;
	if ((ex = cos_open(&a, a.region, false, &c, &region)) != 0)
		return ex;
	if ((r = s3c_bucket_head(c, a.pos[0], &bi, &err)) < 0)
		return op_fail(a.pos[0], &err, r);
	j = json_pack("{s:s, s:s, s:s, s:b, s:s}", "name", a.pos[0], "region", region, "location",
		      bi.location, "sse", bi.sse, "kms_key", bi.crk_id);
	if (!j)
		return cli_oom();
	if (a.json)
		cli_print_json(j);
	else
		cli_print_object(j);
	return EXIT_OK;
}

int cmd_cos_bucket_delete(int argc, char **argv)
{
	static const int accept[] = {COMMON, OPT_REGION, 0};
	struct cos_args a = {0};
	struct sealvm_err err = SEALVM_ERR_INIT;
	_cleanup_(s3c_freep) struct s3c *c = NULL;
	_cleanup_free_ char *region = NULL;
	int ex, r;

	if (parse(argc, argv, accept, &a, 1, "NAME (the bucket)", &ex))
		return ex;
	if ((ex = cos_open(&a, a.region, false, &c, &region)) != 0)
		return ex;
	if ((r = s3c_bucket_delete(c, a.pos[0], &err)) < 0)
		return op_fail(a.pos[0], &err, r);
	if (a.json)
		printf("{\n  \"deleted\": true\n}\n");
	else
		printf("deleted bucket %s\n", a.pos[0]);
	return EXIT_OK;
}

/* ---- objects ------------------------------------------------------------------------------- */

static json_t *object_json(const struct s3c_uri *u, const struct s3c_object *o)
{
	json_t *j = json_pack("{s:s, s:s, s:s, s:I, s:s, s:s, s:s}", "bucket", u->bucket, "key",
			      o->key ? o->key : u->key, "region", u->region, "size",
			      (json_int_t)o->size, "etag", o->etag, "last_modified",
			      o->last_modified, "content_type", o->content_type);
	json_t *m = json_object();

	if (!j || !m) {
		json_decref(j);
		json_decref(m);
		return NULL;
	}
	for (size_t i = 0; i < o->n_meta; i++)
		json_object_set_new(m, o->meta[i].name, json_string(o->meta[i].value));
	json_object_set_new(j, "meta", m);
	return j;
}

int cmd_cos_put(int argc, char **argv)
{
	static const int accept[] = {COMMON,
				     OPT_PART_SIZE,
				     OPT_PARALLEL,
				     OPT_THRESHOLD,
				     OPT_SHA256,
				     OPT_CONTENT_TYPE,
				     OPT_META,
				     OPT_PROGRESS,
				     OPT_NO_PROGRESS,
				     OPT_MAX_RATE,
				     0};
	struct cos_args a = {0};
	struct sealvm_err err = SEALVM_ERR_INIT;
	_cleanup_(s3c_freep) struct s3c *c = NULL;
	_cleanup_free_ char *region = NULL, *key = NULL, *state = NULL, *uri_text = NULL;
	_cleanup_close_ int fd = -1;
	struct s3c_uri u = {0};
	struct s3c_meta meta[S3C_META_MAX];
	_cleanup_free_ char *metabuf[S3C_META_MAX] = {0};
	struct s3c_upload_result res = {0};
	struct cli_progress *p = NULL;
	struct stat st;
	bool multipart;
	int ex, r;

	if (parse(argc, argv, accept, &a, 2, "FILE and cos://REGION/BUCKET/KEY", &ex))
		return ex;
	if ((ex = parse_uri(a.pos[1], false, &u)) != 0)
		return ex;
	/* a URI that ends in '/' (or names only the bucket) takes the file's name */
	if (!*u.key || u.key[strlen(u.key) - 1] == '/') {
		_cleanup_free_ char *copy = strdup(a.pos[0]);
		if (!copy || asprintf(&key, "%s%s", u.key, basename(copy)) < 0) {
			key = NULL;
			s3c_uri_done(&u);
			return cli_oom();
		}
	} else if (!(key = strdup(u.key))) {
		s3c_uri_done(&u);
		return cli_oom();
	}
	for (size_t i = 0; i < a.n_meta; i++) {
		if (!(metabuf[i] = strdup(a.meta[i]))) {
			s3c_uri_done(&u);
			return cli_oom();
		}
		char *eq = strchr(metabuf[i], '=');
		*eq = 0;
		meta[i] = (struct s3c_meta){metabuf[i], eq + 1};
	}
	fd = open(a.pos[0], O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		cli_error("cannot read '%s': %s; give a regular file [FILE_UNREADABLE]", a.pos[0],
			  fd < 0 ? strerror(errno) : "not a regular file");
		s3c_uri_done(&u);
		return EXIT_FAIL;
	}
	if ((ex = cos_open(&a, u.region, false, &c, &region)) != 0) {
		s3c_uri_done(&u);
		return ex;
	}
	if (asprintf(&uri_text, "cos://%s/%s/%s", u.region, u.bucket, key) < 0 ||
	    asprintf(&state, "%s" STATE_SUFFIX, a.pos[0]) < 0) {
		s3c_uri_done(&u);
		return cli_oom();
	}
	multipart = (uint64_t)st.st_size > (a.threshold ? a.threshold : DEFAULT_THRESHOLD) ||
		    access(state, F_OK) == 0;
	p = cli_progress_new("uploading", progress_wanted(&a));
	struct s3c_put_opts po = {
		.content_type = a.content_type,
		.meta = meta,
		.n_meta = a.n_meta,
		.payload = a.sha256 ? S3C_PAYLOAD_SHA256 : S3C_PAYLOAD_TRAILER,
		.progress = cli_progress_update,
		.userdata = p,
	};
	if (multipart) {
		struct s3c_upload_opts uo = {
			.put = po,
			.part_size = a.part_size,
			.parallel = a.parallel ? a.parallel : 4,
			.state_path = state,
			.source_mtime_ns =
				(int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec,
		};
		r = s3c_upload_file(c, u.bucket, key, fd, (uint64_t)st.st_size, &uo, &res, &err);
	} else {
		r = s3c_put_fd(c, u.bucket, key, fd, 0, (uint64_t)st.st_size, &po, res.etag, &err);
	}
	cli_progress_finish(p);
	s3c_uri_done(&u);
	if (r < 0) {
		ex = op_fail(uri_text, &err, r);
		if (multipart && access(state, F_OK) == 0)
			fprintf(stderr,
				"sealvm %s: run the same command again to resume the "
				"upload (its state is in %s)\n",
				cli_path, state);
		return ex;
	}
	if (a.json) {
		_cleanup_json_ json_t *j =
			json_pack("{s:s, s:s, s:I, s:s, s:i, s:i, s:s}", "uri", uri_text, "key",
				  key, "size", (json_int_t)st.st_size, "etag", res.etag, "parts",
				  (int)res.parts, "parts_resumed", (int)res.parts_resumed,
				  "integrity", a.sha256 ? "sha256" : "crc32c-trailer");
		if (!j)
			return cli_oom();
		cli_print_json(j);
	} else {
		char sz[32];
		printf("uploaded %s to %s (%s, ETag %s", a.pos[0], uri_text,
		       sealvm_format_size((uint64_t)st.st_size, sz, sizeof(sz)), res.etag);
		if (multipart)
			printf(", %u parts", res.parts);
		if (res.parts_resumed)
			printf(", %u resumed", res.parts_resumed);
		printf(")\n");
	}
	return EXIT_OK;
}

/* "A-B" or "A-" into @r. */
static int parse_range(const char *s, struct s3c_range *r)
{
	const char *dash = strchr(s, '-');
	char first[24];
	size_t n;

	if (!dash || dash == s || (size_t)(dash - s) >= sizeof(first))
		return -EINVAL;
	n = (size_t)(dash - s);
	memcpy(first, s, n);
	first[n] = 0;
	if (sealvm_parse_u64(first, 0, UINT64_MAX - 1, &r->first) < 0)
		return -EINVAL;
	if (!dash[1]) {
		r->last = UINT64_MAX;
		return 0;
	}
	if (sealvm_parse_u64(dash + 1, 0, UINT64_MAX - 1, &r->last) < 0 || r->last < r->first)
		return -EINVAL;
	return 0;
}

static bool hex64(const char *s)
{
	if (!s || strlen(s) != 64)
		return false;
	for (; *s; s++)
		if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f') ||
		      (*s >= 'A' && *s <= 'F')))
			return false;
	return true;
}

int cmd_cos_get(int argc, char **argv)
{
	static const int accept[] = {
		COMMON, OPT_RANGE, OPT_SHA256_HEX, OPT_FORCE, OPT_PROGRESS, OPT_NO_PROGRESS, 0};
	struct cos_args a = {0};
	struct sealvm_err err = SEALVM_ERR_INIT;
	_cleanup_(s3c_freep) struct s3c *c = NULL;
	_cleanup_free_ char *region = NULL;
	_cleanup_atomic_ struct sealvm_atomic_file *out = NULL;
	struct s3c_uri u = {0};
	struct s3c_range range;
	struct s3c_object o = {0};
	struct s3c_get_opts go = {0};
	unsigned char sha[32];
	char hex[65];
	bool to_stdout;
	struct cli_progress *p;
	int ex, r;

	if (parse(argc, argv, accept, &a, 2, "cos://REGION/BUCKET/KEY and FILE", &ex))
		return ex;
	if (a.sha256 && !hex64(a.sha256_hex))
		return cli_usage_error("--sha256 HEX: give the 64 hex digits the object must hash "
				       "to");
	if (a.range && parse_range(a.range, &range) < 0)
		return cli_usage_error("--range '%s': give FIRST-LAST or FIRST- (byte offsets, "
				       "FIRST <= LAST)",
				       a.range);
	if ((ex = parse_uri(a.pos[0], true, &u)) != 0)
		return ex;
	to_stdout = !strcmp(a.pos[1], "-");
	if ((ex = cos_open(&a, u.region, false, &c, &region)) != 0)
		goto done;
	if (!to_stdout && (r = sealvm_atomic_open(a.pos[1], a.force ? SEALVM_ATOMIC_REPLACE : 0,
						  0644, &out, &err)) < 0) {
		ex = cli_fail(&err, r);
		goto done;
	}
	p = cli_progress_new("downloading", progress_wanted(&a) && !to_stdout);
	go.range = a.range ? &range : NULL;
	go.sha256 = a.sha256;
	go.progress = cli_progress_update;
	go.userdata = p;
	r = s3c_get_fd(c, u.bucket, u.key, to_stdout ? STDOUT_FILENO : out->fd, &go, &o, sha, &err);
	cli_progress_finish(p);
	if (r < 0) {
		ex = op_fail(a.pos[0], &err, r);
		goto done;
	}
	if (a.sha256) {
		cli_hex(sha, 32, hex);
		if (strcasecmp(hex, a.sha256_hex) != 0) {
			cli_error(
				"%s: the data hashes to %s, not to the --sha256 given; %s was not "
				"written [SHA256_MISMATCH]",
				a.pos[0], hex, a.pos[1]);
			ex = EXIT_FAIL;
			goto done;
		}
	}
	if (!to_stdout && (r = sealvm_atomic_commit(TAKE_PTR(out), &err)) < 0) {
		ex = cli_fail(&err, r);
		goto done;
	}
	if (a.json && !to_stdout) {
		_cleanup_json_ json_t *j = object_json(&u, &o);
		if (!j) {
			ex = cli_oom();
			goto done;
		}
		json_object_set_new(j, "file", json_string(a.pos[1]));
		if (o.content_range[0])
			json_object_set_new(j, "content_range", json_string(o.content_range));
		if (a.sha256)
			json_object_set_new(j, "sha256", json_string(hex));
		cli_print_json(j);
	} else if (!to_stdout) {
		char sz[32];
		printf("downloaded %s to %s (%s%s%s%s)\n", a.pos[0], a.pos[1],
		       sealvm_format_size(o.size, sz, sizeof(sz)), o.content_range[0] ? ", " : "",
		       o.content_range, a.sha256 ? ", SHA-256 verified" : "");
	}
	ex = EXIT_OK;
done:
	s3c_object_done(&o);
	s3c_uri_done(&u);
	return ex;
}

int cmd_cos_head(int argc, char **argv)
{
	static const int accept[] = {COMMON, 0};
	struct cos_args a = {0};
	struct sealvm_err err = SEALVM_ERR_INIT;
	_cleanup_(s3c_freep) struct s3c *c = NULL;
	_cleanup_free_ char *region = NULL;
	_cleanup_json_ json_t *j = NULL;
	struct s3c_uri u = {0};
	struct s3c_object o = {0};
	int ex, r;

	if (parse(argc, argv, accept, &a, 1, "cos://REGION/BUCKET/KEY", &ex))
		return ex;
	if ((ex = parse_uri(a.pos[0], true, &u)) != 0)
		return ex;
	if ((ex = cos_open(&a, u.region, false, &c, &region)) != 0)
		goto done;
	if ((r = s3c_head(c, u.bucket, u.key, &o, &err)) < 0) {
		ex = op_fail(a.pos[0], &err, r);
		goto done;
	}
	if (!(j = object_json(&u, &o))) {
		ex = cli_oom();
		goto done;
	}
	if (a.json) {
		cli_print_json(j);
	} else {
		json_t *m = json_object_get(j, "meta");
		const char *k;
		json_t *v;
		json_incref(m);
		json_object_del(j, "meta");
		cli_print_object(j);
		json_object_foreach(m, k, v) printf("meta.%s: %s\n", k, json_string_value(v));
		json_decref(m);
	}
	ex = EXIT_OK;
done:
	s3c_object_done(&o);
	s3c_uri_done(&u);
	return ex;
}

int cmd_cos_ls(int argc, char **argv)
{
	static const int accept[] = {COMMON, OPT_DELIMITER, 0};
	struct cos_args a = {0};
	struct sealvm_err err = SEALVM_ERR_INIT;
	_cleanup_(s3c_freep) struct s3c *c = NULL;
	_cleanup_free_ char *region = NULL, *token = NULL;
	_cleanup_json_ json_t *objs = json_array(), *prefixes = json_array();
	struct s3c_uri u = {0};
	int ex = EXIT_FAIL, r;

	if (!objs || !prefixes)
		return cli_oom();
	if (parse(argc, argv, accept, &a, 1, "cos://REGION/BUCKET[/PREFIX]", &ex))
		return ex;
	if ((ex = parse_uri(a.pos[0], false, &u)) != 0)
		return ex;
	if ((ex = cos_open(&a, u.region, false, &c, &region)) != 0)
		goto done;
	for (;;) {
		struct s3c_list l = {0};
		struct s3c_list_opts lo = {
			.prefix = u.key, .delimiter = a.delimiter, .continuation = token};
		if ((r = s3c_list(c, u.bucket, &lo, &l, &err)) < 0) {
			ex = op_fail(a.pos[0], &err, r);
			goto done;
		}
		for (size_t i = 0; i < l.n_objects; i++)
			json_array_append_new(objs, json_pack("{s:s, s:I, s:s, s:s}", "key",
							      l.objects[i].key, "size",
							      (json_int_t)l.objects[i].size, "etag",
							      l.objects[i].etag, "last_modified",
							      l.objects[i].last_modified));
		for (size_t i = 0; i < l.n_prefixes; i++)
			json_array_append_new(prefixes, json_string(l.prefixes[i]));
		free(token);
		token = l.truncated ? TAKE_PTR(l.next) : NULL;
		s3c_list_done(&l);
		if (!token)
			break;
	}
	if (a.json) {
		_cleanup_json_ json_t *j =
			json_pack("{s:s, s:s, s:O, s:O}", "bucket", u.bucket, "prefix", u.key,
				  "objects", objs, "prefixes", prefixes);
		if (!j) {
			ex = cli_oom();
			goto done;
		}
		cli_print_json(j);
	} else {
		for (size_t i = 0; i < json_array_size(prefixes); i++)
			printf("%20s  %-24s  %s\n", "PRE", "",
			       json_string_value(json_array_get(prefixes, i)));
		for (size_t i = 0; i < json_array_size(objs); i++) {
			json_t *o = json_array_get(objs, i);
			printf("%20" JSON_INTEGER_FORMAT "  %-24s  %s\n",
			       json_integer_value(json_object_get(o, "size")),
			       json_string_value(json_object_get(o, "last_modified")),
			       json_string_value(json_object_get(o, "key")));
		}
	}
	ex = EXIT_OK;
done:
	s3c_uri_done(&u);
	return ex;
}

int cmd_cos_rm(int argc, char **argv)
{
	static const int accept[] = {COMMON, 0};
	struct cos_args a = {0};
	struct sealvm_err err = SEALVM_ERR_INIT;
	_cleanup_(s3c_freep) struct s3c *c = NULL;
	_cleanup_free_ char *region = NULL;
	struct s3c_uri u = {0};
	int ex, r;

	if (parse(argc, argv, accept, &a, 1, "cos://REGION/BUCKET/KEY", &ex))
		return ex;
	if ((ex = parse_uri(a.pos[0], true, &u)) != 0)
		return ex;
	if ((ex = cos_open(&a, u.region, false, &c, &region)) != 0)
		goto done;
	if ((r = s3c_delete(c, u.bucket, u.key, &err)) < 0) {
		ex = op_fail(a.pos[0], &err, r);
		goto done;
	}
	if (a.json)
		printf("{\n  \"deleted\": true\n}\n");
	else
		printf("deleted %s\n", a.pos[0]);
	ex = EXIT_OK;
done:
	s3c_uri_done(&u);
	return ex;
}

int cmd_cos_presign(int argc, char **argv)
{
	static const int accept[] = {COMMON, OPT_EXPIRES, OPT_METHOD, 0};
	struct cos_args a = {0};
	struct sealvm_err err = SEALVM_ERR_INIT;
	_cleanup_(s3c_freep) struct s3c *c = NULL;
	_cleanup_free_ char *region = NULL, *url = NULL;
	struct s3c_uri u = {0};
	int ex, r;

	if (parse(argc, argv, accept, &a, 1, "cos://REGION/BUCKET/KEY", &ex))
		return ex;
	if ((ex = parse_uri(a.pos[0], true, &u)) != 0)
		return ex;
	if ((ex = cos_open(&a, u.region, true, &c, &region)) != 0)
		goto done;
	r = s3c_presign(c, a.method ? a.method : "GET", u.bucket, u.key,
			a.expires ? a.expires : 3600, 0, &url, &err);
	if (r < 0) {
		ex = op_fail(a.pos[0], &err, r);
		goto done;
	}
	if (a.json) {
		_cleanup_json_ json_t *j = json_pack("{s:s, s:s, s:i}", "url", url, "method",
						     a.method ? a.method : "GET", "expires_in",
						     (int)(a.expires ? a.expires : 3600));
		if (!j) {
			ex = cli_oom();
			goto done;
		}
		cli_print_json(j);
	} else {
		printf("%s\n", url);
	}
	ex = EXIT_OK;
done:
	s3c_uri_done(&u);
	return ex;
}
