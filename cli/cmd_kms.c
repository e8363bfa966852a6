// SPDX-License-Identifier: Apache-2.0
/*
 * cmd_kms.c — `sealvm kms key ...`, `sealvm kms wrap|unwrap|rewrap`,
 * `sealvm kms import-token ...`: the key service (Key Protect v2 API) from the
 * command line.
 *
 * Every request names the KMS instance in the `bluemix-instance` header
 * (--instance or SEALVM_KMS_INSTANCE) and uses Key Protect's shapes and media
 * types. `key import --secure` does the import-token exchange here, on the
 * client: the key material is encrypted with RSAES-OAEP-SHA-256 under the
 * token's public key and the token's nonce with AES-GCM under the material.
 *
 * What this file must never do: take a secret (DEK, key material) from argv,
 * print one in a message, or leave one in a buffer that is freed unwiped.
 * DEKs and key material are read from and written to files (0600, never
 * overwritten) through locked secret memory; the JSON and HTTP buffers they
 * pass through belong to jansson and libcurl, which this file gives an
 * allocator that wipes every block it frees.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <malloc.h>
#include <stddef.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "sealvm/b64.h"
#include "sealvm/dek.h"
#include "sealvm/file.h"
#include "sealvm/num.h"
#include "sealvm/secret.h"

#include "cli.h"
#include "client.h"

#define KEY_MEDIA "application/vnd.ibm.kms.key+json"
#define ACTION_MEDIA "application/vnd.ibm.kms.key_action+json"
#define ENC_ALG "RSAES_OAEP_SHA_256"
#define MAX_ALIASES 5
#define MAX_AAD 32
#define MATERIAL_MAX_BYTES 7500					   /* a standard key's largest */
#define MATERIAL_FILE_MAX (4 * ((MATERIAL_MAX_BYTES + 2) / 3) + 2) /* its base64, a newline */
#define WDEK_FILE_MAX (64 * 1024)
#define LIST_PAGE 200
#define KEY_ARG "KEY (an ID or alias)"
#define ROOT_KEY_ARG "KEY (a root key's ID or alias)"
#define NONCE_IV_BYTES 12
#define GCM_TAG_BYTES 16

static inline void kms_json_decrefp(json_t **j)
{
	json_decref(*j);
}
#define _cleanup_json_ _cleanup_(kms_json_decrefp)

/* ---- wiping allocator for jansson and libcurl ------------------------------------------------ */

/*
 * A wrapped DEK's plaintext and imported key material pass through JSON texts, jansson's
 * strings and libcurl's buffers. These functions wipe every block before freeing it. They
 * keep no header (malloc_usable_size gives the size), so blocks stay compatible with free():
 * code that frees a jansson or libcurl result with free() keeps working, only unwiped.
 */
static void wipe_free(void *p)
{
	if (!p)
		return;
	explicit_bzero(p, malloc_usable_size(p));
	free(p);
}

static void *wipe_realloc(void *p, size_t n)
{
	void *q;

	if (!p)
		return malloc(n);
	if (n == 0) {
		wipe_free(p);
		return NULL;
	}
	q = malloc(n);
	if (!q)
		return NULL;
	memcpy(q, p, MIN(n, malloc_usable_size(p)));
	wipe_free(p);
	return q;
}

static char *wipe_strdup(const char *s)
{
	return strdup(s);
}

static void *wipe_calloc(size_t n, size_t size)
{
	return calloc(n, size);
}

/* Must run before anything of jansson or libcurl: every kms command starts here. */
static void kms_init(void)
{
	json_set_alloc_funcs(malloc, wipe_free);
	(void)curl_global_init_mem(CURL_GLOBAL_DEFAULT, malloc, wipe_free, wipe_realloc,
				   wipe_strdup, wipe_calloc);
}

/* ---- arguments ------------------------------------------------------------------------------ */

struct kms_args {
	const char *key; /* the positional argument: the KEY (create and import: the NAME) */
	const char *instance, *description, *expiration_date, *key_file, *dek_file, *dek_out;
	const char *wdek_file, *out, *rewrapped_out, *payload_out, *state;
	const char *aliases[MAX_ALIASES];
	size_t n_aliases;
	const char *aad[MAX_AAD];
	size_t n_aad;
	unsigned limit, offset, token_expiration, max_retrievals;
	bool have_limit, have_offset, have_token_expiration, have_max_retrievals;
	bool json, standard, secure, raw, force, new_token;
};

enum {
	OPT_INSTANCE = 0x100,
	OPT_JSON,
	OPT_DESCRIPTION,
	OPT_EXPIRATION_DATE,
	OPT_ALIAS,
	OPT_STANDARD,
	OPT_KEY_FILE,
	OPT_RAW,
	OPT_SECURE,
	OPT_NEW_TOKEN,
	OPT_STATE,
	OPT_LIMIT,
	OPT_OFFSET,
	OPT_PAYLOAD_OUT,
	OPT_FORCE,
	OPT_DEK_FILE,
	OPT_DEK_OUT,
	OPT_WDEK_FILE,
	OPT_OUT,
	OPT_REWRAPPED_OUT,
	OPT_AAD,
	OPT_EXPIRATION,
	OPT_MAX_RETRIEVALS,
};

/*
 * Every option of the kms commands; each command accepts --instance, --json and those it names.
 * A FLAG sets the bool and a VALUE the string (non-empty) at @member of struct kms_args; the
 * values that need checking (PARSED) are parsed in kms_opt.
 */
#define ARG(m) offsetof(struct kms_args, m)
static const struct kms_option {
	const char *name;
	int id;
	enum { FLAG, VALUE, PARSED } kind;
	size_t member;
} kms_options[] = {
	{"instance", OPT_INSTANCE, VALUE, ARG(instance)},
	{"json", OPT_JSON, FLAG, ARG(json)},
	{"description", OPT_DESCRIPTION, VALUE, ARG(description)},
	{"expiration-date", OPT_EXPIRATION_DATE, VALUE, ARG(expiration_date)},
	{"alias", OPT_ALIAS, PARSED, 0},
	{"standard", OPT_STANDARD, FLAG, ARG(standard)},
	{"key-file", OPT_KEY_FILE, VALUE, ARG(key_file)},
	{"raw", OPT_RAW, FLAG, ARG(raw)},
	{"secure", OPT_SECURE, FLAG, ARG(secure)},
	{"new-token", OPT_NEW_TOKEN, FLAG, ARG(new_token)},
	{"state", OPT_STATE, VALUE, ARG(state)},
	{"limit", OPT_LIMIT, PARSED, 0},
	{"offset", OPT_OFFSET, PARSED, 0},
	{"payload-out", OPT_PAYLOAD_OUT, VALUE, ARG(payload_out)},
	{"force", OPT_FORCE, FLAG, ARG(force)},
	{"dek-file", OPT_DEK_FILE, VALUE, ARG(dek_file)},
	{"dek-out", OPT_DEK_OUT, VALUE, ARG(dek_out)},
	{"wdek-file", OPT_WDEK_FILE, VALUE, ARG(wdek_file)},
	{"out", OPT_OUT, VALUE, ARG(out)},
	{"rewrapped-out", OPT_REWRAPPED_OUT, VALUE, ARG(rewrapped_out)},
	{"aad", OPT_AAD, PARSED, 0},
	{"expiration", OPT_EXPIRATION, PARSED, 0},
	{"max-retrievals", OPT_MAX_RETRIEVALS, PARSED, 0},
};
#undef ARG

static int kms_opt(int c, const char *arg, void *userdata)
{
	struct kms_args *a = userdata;

	for (size_t i = 0; i < ELEMENTSOF(kms_options); i++) {
		const struct kms_option *o = &kms_options[i];

		if (o->id != c || o->kind == PARSED)
			continue;
		if (o->kind == FLAG) {
			*(bool *)((char *)a + o->member) = true;
			return 0;
		}
		if (!*arg)
			return cli_usage_error(
				"an option has an empty value; give a non-empty one");
		*(const char **)((char *)a + o->member) = arg;
		return 0;
	}
	switch (c) {
	case OPT_LIMIT:
		if (sealvm_parse_uint(arg, 1, 5000, &a->limit) < 0)
			return cli_usage_error("--limit '%s': give a whole number from 1 to 5000",
					       arg);
		a->have_limit = true;
		return 0;
	case OPT_OFFSET:
		if (sealvm_parse_uint(arg, 0, 1000000000, &a->offset) < 0)
			return cli_usage_error("--offset '%s': give a whole number from 0", arg);
		a->have_offset = true;
		return 0;
	case OPT_EXPIRATION:
		if (sealvm_parse_uint(arg, 1, 1000000000, &a->token_expiration) < 0)
			return cli_usage_error(
				"--expiration '%s': give the token's lifetime in seconds "
				"(Key Protect allows 300 to 86400)",
				arg);
		a->have_token_expiration = true;
		return 0;
	case OPT_MAX_RETRIEVALS:
		if (sealvm_parse_uint(arg, 1, 1000000, &a->max_retrievals) < 0)
			return cli_usage_error("--max-retrievals '%s': give a whole number from 1 "
					       "(Key Protect allows up to 500)",
					       arg);
		a->have_max_retrievals = true;
		return 0;
	case OPT_ALIAS:
		if (a->n_aliases == MAX_ALIASES)
			return cli_usage_error("at most %d --alias options: a key has at most %d "
					       "aliases",
					       MAX_ALIASES, MAX_ALIASES);
		if (!*arg)
			return cli_usage_error("--alias needs a non-empty value");
		a->aliases[a->n_aliases++] = arg;
		return 0;
	case OPT_AAD:
		if (a->n_aad == MAX_AAD)
			return cli_usage_error("at most %d --aad options", MAX_AAD);
		if (strlen(arg) > 255)
			return cli_usage_error("an --aad value has %zu characters: at most 255",
					       strlen(arg));
		a->aad[a->n_aad++] = arg;
		return 0;
	default:
		return -1;
	}
}

/* A GUID goes into a header: only letters, digits and '-', so nothing can be smuggled. */
static bool header_safe(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > 64)
		return false;
	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && *s != '-')
			return false;
	return true;
}

/*
 * Parses the options (--instance, --json and those of @accept, a 0-terminated list of OPT_
 * values; NULL for none) and exactly @npos positional arguments, the first in a->key; resolves
 * the instance. Returns 1 with *ret_exit set when the command must not run.
 */
static int parse(int argc, char **argv, const int *accept, struct kms_args *a, int npos,
		 const char *posname, int *ret_exit)
{
	struct option opts[ELEMENTSOF(kms_options) + 1] = {0};
	size_t n = 0;

	kms_init();
	for (size_t i = 0; i < ELEMENTSOF(kms_options); i++) {
		const struct kms_option *o = &kms_options[i];
		bool take = o->id == OPT_INSTANCE || o->id == OPT_JSON;

		for (const int *p = accept; p && *p && !take; p++)
			take = *p == o->id;
		if (!take)
			continue;
		opts[n].name = o->name;
		opts[n].has_arg = o->kind == FLAG ? no_argument : required_argument;
		opts[n++].val = o->id;
	}
	if (cli_parse(argc, argv, "", opts, kms_opt, a, ret_exit))
		return 1;
	if ((*ret_exit = cli_check_positionals(argc, argv, npos, posname)) != 0)
		return 1;
	a->key = npos > 0 ? argv[optind] : NULL;
	if (!a->instance) {
		const char *env = getenv("SEALVM_KMS_INSTANCE");
		a->instance = env && *env ? env : NULL;
	}
	if (!a->instance) {
		*ret_exit = cli_usage_error(
			"no KMS instance: give --instance GUID or set SEALVM_KMS_INSTANCE "
			"(make one with 'sealvm resource instance create NAME --service kms')");
		return 1;
	}
	if (!header_safe(a->instance)) {
		*ret_exit = cli_usage_error("--instance '%s' is not an instance GUID (letters, "
					    "digits and '-')",
					    a->instance);
		return 1;
	}
	return 0;
}

/* ---- requests ------------------------------------------------------------------------------- */

/*
 * METHOD /api/v2PATH with the instance header (and `prefer: return=representation` when
 * @prefer). A body goes as Key Protect's media type for key actions ("/actions/" in @path)
 * and new keys (POST /keys), else as JSON. *@ret_json as cli_api.
 */
static int kms_call(struct cli_client *c, const struct kms_args *a, const char *method,
		    const char *path, const json_t *body, bool prefer, json_t **ret_json)
{
	_cleanup_free_ char *inst = NULL, *full = NULL;
	const char *headers[3] = {0}, *media = NULL;
	json_t *j = NULL;
	int ex;

	if (strstr(path, "/actions/"))
		media = ACTION_MEDIA;
	else if (!strcmp(path, "/keys"))
		media = KEY_MEDIA;

	if (asprintf(&inst, "bluemix-instance: %s", a->instance) < 0) {
		inst = NULL;
		return cli_oom();
	}
	if (asprintf(&full, "/api/v2%s", path) < 0) {
		full = NULL;
		return cli_oom();
	}
	headers[0] = inst;
	if (prefer)
		headers[1] = "Prefer: return=representation";
	ex = cli_api_ex(c, method, full, headers, media, body, &j);
	if (ex)
		return ex;
	if (ret_json)
		*ret_json = j;
	else
		json_decref(j);
	return 0;
}

/* kms_call on the command's key: METHOD /api/v2/keys/ESCAPED(a->key)@suffix. */
static int key_call(struct cli_client *c, const struct kms_args *a, const char *method,
		    const char *suffix, const json_t *body, bool prefer, json_t **ret_json)
{
	_cleanup_free_ char *path = cli_id_path("/keys", a->key, suffix);

	if (!path)
		return cli_oom();
	return kms_call(c, a, method, path, body, prefer, ret_json);
}

/* A JSON array of the strings @v[0..n). */
static json_t *strings_json(const char *const *v, size_t n)
{
	json_t *arr = json_array();

	for (size_t i = 0; arr && i < n; i++)
		json_array_append_new(arr, json_string(v[i]));
	return arr;
}

/* The Key Protect collection envelope around one resource; steals @res. NULL on ENOMEM. */
static json_t *envelope(const char *type, json_t *res)
{
	if (!res)
		return NULL;
	return json_pack("{s:{s:s, s:i}, s:[o]}", "metadata", "collectionType", type,
			 "collectionTotal", 1, "resources", res);
}

/* resources[0] of a Key Protect answer (borrowed), or NULL. */
static json_t *first_resource(const json_t *j)
{
	return json_array_get(json_object_get(j, "resources"), 0);
}

/* The id of the key version in @member of @j (borrowed), or "?". */
static const char *version_of(const json_t *j, const char *member)
{
	return json_string_value(json_object_get(json_object_get(j, member), "id")) ?: "?";
}

static const char *state_name(json_int_t s)
{
	static const char *const names[] = {
		"Pre-activation", "Active", "Suspended", "Deactivated", NULL, "Destroyed",
	};

	return s >= 0 && s < (json_int_t)ELEMENTSOF(names) && names[s] ? names[s] : "unknown";
}

/* Adds "stateName" and "kind" next to the numeric fields, for people (not in --json). */
static void humanize_key(json_t *k)
{
	json_t *st = json_object_get(k, "state");

	if (json_is_integer(st))
		json_object_set_new(k, "stateName",
				    json_string(state_name(json_integer_value(st))));
	if (json_is_boolean(json_object_get(k, "extractable")))
		json_object_set_new(k, "kind",
				    json_string(json_is_true(json_object_get(k, "extractable"))
							? "standard"
							: "root"));
}

/* The fields of a key worth a line, in this order; the rest only with --json. */
static void print_key(const json_t *key)
{
	static const char *const fields[] = {
		"id",
		"name",
		"kind",
		"state",
		"stateName",
		"crn",
		"aliases",
		"description",
		"imported",
		"keyRingID",
		"creationDate",
		"createdBy",
		"lastUpdateDate",
		"lastRotateDate",
		"keyVersion",
		"expirationDate",
		"deleted",
		"deletionDate",
		"deletedBy",
		"dualAuthDelete",
	};
	_cleanup_json_ json_t *o = json_object();

	if (!o)
		return;
	for (size_t i = 0; i < ELEMENTSOF(fields); i++) {
		json_t *v = json_object_get(key, fields[i]);
		if (!v)
			continue;
		if (!strcmp(fields[i], "keyVersion") && json_object_get(v, "id"))
			v = json_object_get(v, "id");
		json_object_set(o, fields[i], v);
	}
	cli_print_object(o);
}

/* Shows a Key Protect key answer: the first resource (JSON or lines). Steals @j. */
static int show_key(const struct kms_args *a, json_t *j)
{
	json_t *k = first_resource(j);

	if (a->json) {
		cli_print_json(j ? j : json_null());
	} else if (k) {
		humanize_key(k);
		print_key(k);
	}
	json_decref(j);
	return EXIT_OK;
}

/* ---- files ---------------------------------------------------------------------------------- */

static void trim_right(struct sealvm_secret *s)
{
	while (s->len > 0 && (s->data[s->len - 1] == '\n' || s->data[s->len - 1] == '\r' ||
			      s->data[s->len - 1] == ' ' || s->data[s->len - 1] == '\t'))
		s->data[--s->len] = 0;
}

/*
 * Reads key material from @path into *@ret (raw bytes, secret memory). The file holds the
 * material as base64 text (one line; a trailing newline is ignored), or with @raw the bytes
 * themselves. Root keys need 16, 24 or 32 bytes; standard keys 1 to 7500. Reports; returns
 * EXIT_FAIL or 0.
 */
static int read_material(const char *path, bool raw, bool standard, struct sealvm_secret **ret)
{
	struct sealvm_err err = SEALVM_ERR_INIT;
	_cleanup_secret_ struct sealvm_secret *f = NULL, *m = NULL;
	long n;
	int r;

	r = sealvm_secret_read_file(path, raw ? MATERIAL_MAX_BYTES : MATERIAL_FILE_MAX, &f, &err);
	if (r == -E2BIG) {
		cli_error("key file '%s' is too large: key material is at most %d bytes "
			  "[KEY_MATERIAL_SIZE]",
			  path, MATERIAL_MAX_BYTES);
		return EXIT_FAIL;
	}
	if (r < 0) {
		cli_error("cannot read key file '%s': %s [%s]", path,
			  sealvm_err_isset(&err) ? err.message : strerror(-r),
			  sealvm_err_isset(&err) ? err.reason : "FILE_UNREADABLE");
		return EXIT_FAIL;
	}
	if (raw) {
		m = TAKE_PTR(f);
	} else {
		trim_right(f);
		if (f->len == 0 || !sealvm_b64_is_canonical((const char *)f->data, f->len)) {
			cli_error("key file '%s' is not one line of canonical padded base64; give "
				  "base64 text, or --raw for a file of raw bytes "
				  "[KEY_MATERIAL_NOT_BASE64]",
				  path);
			return EXIT_FAIL;
		}
		if (sealvm_secret_new(sealvm_b64_decoded_max(f->len), &m) < 0)
			return cli_oom();
		n = sealvm_b64_decode((const char *)f->data, f->len, m->data, false);
		if (n < 0) {
			cli_error("key file '%s' is not base64 [KEY_MATERIAL_NOT_BASE64]", path);
			return EXIT_FAIL;
		}
		m->len = (size_t)n;
	}
	if (!standard && m->len != 16 && m->len != 24 && m->len != 32) {
		cli_error("key file '%s' holds %zu bytes of key material: a root key needs 16, 24 "
			  "or 32 (AES-128/192/256) [KEY_MATERIAL_SIZE]",
			  path, m->len);
		return EXIT_FAIL;
	}
	if (standard && (m->len == 0 || m->len > MATERIAL_MAX_BYTES)) {
		cli_error("key file '%s' holds %zu bytes: a standard key holds 1 to %d "
			  "[KEY_MATERIAL_SIZE]",
			  path, m->len, MATERIAL_MAX_BYTES);
		return EXIT_FAIL;
	}
	*ret = TAKE_PTR(m);
	return 0;
}

/* Base64 of @n bytes as a new jansson string (its buffer is wiped when freed). */
static json_t *b64_json(const unsigned char *p, size_t n)
{
	_cleanup_secret_ struct sealvm_secret *t = NULL;

	if (sealvm_secret_new(sealvm_b64_encoded_len(n, false), &t) < 0)
		return NULL;
	t->len = sealvm_b64_encode(p, n, (char *)t->data, false);
	return json_stringn((const char *)t->data, t->len);
}

/*
 * Reads a wrapped DEK (the `ciphertext` text) from @path, or standard input for "-": one
 * line of printable ASCII, a trailing newline ignored. Not a secret. Reports; EXIT_FAIL or 0.
 */
static int read_wdek(const char *path, char **ret)
{
	_cleanup_close_ int fd = -1;
	_cleanup_free_ char *buf = malloc(WDEK_FILE_MAX + 1);
	size_t len = 0;

	if (!buf)
		return cli_oom();
	fd = strcmp(path, "-") ? open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY) : dup(STDIN_FILENO);
	if (fd < 0) {
		cli_error("cannot read WDEK file '%s': %s [FILE_UNREADABLE]", path,
			  strerror(errno));
		return EXIT_FAIL;
	}
	for (;;) {
		ssize_t n = read(fd, buf + len, WDEK_FILE_MAX + 1 - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			cli_error("cannot read WDEK file '%s': %s [FILE_UNREADABLE]", path,
				  strerror(errno));
			return EXIT_FAIL;
		}
		if (n == 0)
			break;
		len += (size_t)n;
		if (len > WDEK_FILE_MAX) {
			cli_error("WDEK file '%s' is larger than %d bytes: it is not a wrapped "
				  "DEK [WDEK_MALFORMED]",
				  path, WDEK_FILE_MAX);
			return EXIT_FAIL;
		}
	}
	while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r' || buf[len - 1] == ' '))
		len--;
	buf[len] = 0;
	for (size_t i = 0; i < len; i++)
		if (buf[i] <= ' ' || buf[i] > '~') {
			cli_error("WDEK file '%s' is not one line of text (byte %zu): give the "
				  "ciphertext that 'sealvm kms wrap' wrote [WDEK_MALFORMED]",
				  path, i + 1);
			return EXIT_FAIL;
		}
	if (len == 0) {
		cli_error("WDEK file '%s' is empty [WDEK_MALFORMED]", path);
		return EXIT_FAIL;
	}
	*ret = TAKE_PTR(buf);
	return 0;
}

/* Refuses an output file that exists, before a request whose answer could not be shown again. */
static int check_new_output(const char *opt, const char *path)
{
	if (!path || !strcmp(path, "-"))
		return 0;
	if (access(path, F_OK) == 0 || errno != ENOENT) {
		cli_error("%s '%s' exists; name a new file (outputs are never overwritten) "
			  "[OUTPUT_EXISTS]",
			  opt, path);
		return EXIT_FAIL;
	}
	return 0;
}

/* Writes @len bytes to @path (0600, exclusive) or to stdout for "-". Reports. */
static int write_out(const char *what, const char *path, const void *p, size_t len)
{
	struct sealvm_err err = SEALVM_ERR_INIT;
	int r;

	if (!strcmp(path, "-")) {
		r = sealvm_write_all(STDOUT_FILENO, p, len);
		if (r < 0) {
			cli_error("cannot write the %s to standard output: %s [IO_ERROR]", what,
				  strerror(-r));
			return EXIT_FAIL;
		}
		return 0;
	}
	r = sealvm_write_file_exclusive(path, p, len, 0600, &err);
	if (r < 0) {
		cli_error("cannot write the %s to '%s': %s [%s]", what, path,
			  sealvm_err_isset(&err) ? err.message : strerror(-r),
			  sealvm_err_isset(&err) ? err.reason : "OUTPUT_WRITE");
		return EXIT_FAIL;
	}
	return 0;
}

/* Writes a ciphertext (WDEK) with a newline to @path (0600, exclusive) or stdout. */
static int write_wdek(const char *path, const char *ct)
{
	_cleanup_free_ char *line = NULL;

	if (asprintf(&line, "%s\n", ct) < 0)
		return cli_oom();
	return write_out("WDEK", path, line, strlen(line));
}

/*
 * Validates the plaintext of an answer against the DEK rules and writes it to @path (0600,
 * exclusive; "-" for stdout). Reports; EXIT_FAIL or 0.
 */
static int write_dek(const char *path, const json_t *plain)
{
	struct sealvm_err err = SEALVM_ERR_INIT;
	const char *p = json_string_value(plain);

	if (!p) {
		cli_error("the answer has no plaintext [BAD_ANSWER]");
		return EXIT_FAIL;
	}
	if (sealvm_dek_validate((const unsigned char *)p, json_string_length(plain),
				"the plaintext the key service returned", &err) < 0) {
		cli_error("%s; it was not written [%s]", err.message, err.reason);
		return EXIT_FAIL;
	}
	return write_out("DEK", path, p, json_string_length(plain));
}

/* ---- keys ----------------------------------------------------------------------------------- */

/* The members common to create and import: name, kind, description, aliases, expiry. */
static json_t *key_resource(const struct kms_args *a, const char *name)
{
	json_t *k = json_pack("{s:s, s:s, s:b}", "type", KEY_MEDIA, "name", name, "extractable",
			      a->standard);

	if (!k)
		return NULL;
	if (a->description)
		json_object_set_new(k, "description", json_string(a->description));
	if (a->expiration_date)
		json_object_set_new(k, "expirationDate", json_string(a->expiration_date));
	if (a->n_aliases)
		json_object_set_new(k, "aliases", strings_json(a->aliases, a->n_aliases));
	return k;
}

static int post_key(struct cli_client *c, const struct kms_args *a, json_t *res)
{
	_cleanup_json_ json_t *body = envelope(KEY_MEDIA, res);
	json_t *j = NULL;
	int ex;

	if (!body)
		return cli_oom();
	if ((ex = kms_call(c, a, "POST", "/keys", body, true, &j)) != 0)
		return ex;
	if (!first_resource(j)) {
		json_decref(j);
		cli_error("POST /api/v2/keys: the answer holds no key [BAD_ANSWER]");
		return EXIT_FAIL;
	}
	return show_key(a, j);
}

int cmd_kms_key_create(int argc, char **argv)
{
	static const int opts[] = {OPT_STANDARD, OPT_DESCRIPTION, OPT_EXPIRATION_DATE, OPT_ALIAS,
				   0};
	struct kms_args a = {0};
	_cleanup_client_ struct cli_client *c = NULL;
	json_t *res;
	int ex;

	if (parse(argc, argv, opts, &a, 1, "NAME", &ex))
		return ex;
	if (!(res = key_resource(&a, argv[optind])))
		return cli_oom();
	if ((ex = cli_client_open(&c)) != 0) {
		json_decref(res);
		return ex;
	}
	return post_key(c, &a, res);
}

/* RSAES-OAEP-SHA-256 (MGF1-SHA-256, empty label) of @m under @pub into *@ret (malloc'ed). */
static int oaep_encrypt(EVP_PKEY *pub, const struct sealvm_secret *m, unsigned char **ret,
			size_t *ret_len)
{
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(NULL, pub, NULL);
	unsigned char *out = NULL;
	size_t n = 0;
	int r = -EIO;

	if (!ctx || EVP_PKEY_encrypt_init(ctx) <= 0 ||
	    EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_OAEP_PADDING) <= 0 ||
	    EVP_PKEY_CTX_set_rsa_oaep_md_name(ctx, "SHA256", NULL) <= 0 ||
	    EVP_PKEY_CTX_set_rsa_mgf1_md_name(ctx, "SHA256", NULL) <= 0 ||
	    EVP_PKEY_encrypt(ctx, NULL, &n, m->data, m->len) <= 0)
		goto out;
	if (!(out = malloc(n))) {
		r = -ENOMEM;
		goto out;
	}
	if (EVP_PKEY_encrypt(ctx, out, &n, m->data, m->len) <= 0)
		goto out;
	*ret = TAKE_PTR(out);
	*ret_len = n;
	r = 0;
out:
	free(out);
	EVP_PKEY_CTX_free(ctx);
	return r;
}

/* AES-GCM (128/192/256 by the material's length) of @nonce under @m, a random 96-bit IV. */
static int gcm_encrypt_nonce(const struct sealvm_secret *m, const unsigned char *nonce,
			     size_t nonce_len, unsigned char iv[NONCE_IV_BYTES],
			     unsigned char *out /* nonce_len + GCM_TAG_BYTES */)
{
	const EVP_CIPHER *cipher = m->len == 16	  ? EVP_aes_128_gcm()
				   : m->len == 24 ? EVP_aes_192_gcm()
						  : EVP_aes_256_gcm();
	EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
	int n = 0, fin = 0, r = -EIO;

	if (!ctx || RAND_bytes(iv, NONCE_IV_BYTES) != 1 ||
	    EVP_EncryptInit_ex(ctx, cipher, NULL, NULL, NULL) != 1 ||
	    EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, NONCE_IV_BYTES, NULL) != 1 ||
	    EVP_EncryptInit_ex(ctx, NULL, NULL, m->data, iv) != 1 ||
	    EVP_EncryptUpdate(ctx, out, &n, nonce, (int)nonce_len) != 1 ||
	    EVP_EncryptFinal_ex(ctx, out + n, &fin) != 1 ||
	    EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, GCM_TAG_BYTES, out + nonce_len) != 1)
		goto out;
	r = 0;
out:
	EVP_CIPHER_CTX_free(ctx); /* cleanses the key schedule */
	return r;
}

/* The import token's public key: base64 of PEM (as Key Protect sends it) or of DER. */
static EVP_PKEY *token_public_key(const char *b64)
{
	size_t n = strlen(b64);
	_cleanup_free_ unsigned char *der = malloc(sealvm_b64_decoded_max(n) + 1);
	const unsigned char *p;
	EVP_PKEY *pk = NULL;
	long len;

	if (!der || (len = sealvm_b64_decode(b64, n, der, false)) <= 0)
		return NULL;
	if (len > 10 && !memcmp(der, "-----BEGIN", 10)) {
		BIO *bio = BIO_new_mem_buf(der, (int)len);
		if (bio)
			pk = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
		BIO_free(bio);
	} else {
		p = der;
		pk = d2i_PUBKEY(NULL, &p, len);
	}
	if (pk && (EVP_PKEY_get_base_id(pk) != EVP_PKEY_RSA || EVP_PKEY_get_bits(pk) < 2048)) {
		EVP_PKEY_free(pk);
		pk = NULL;
	}
	return pk;
}

/*
 * The import-token exchange (Key Protect's secure import): fetches the token's public key
 * and nonce (GET /import_token, which uses one of its retrievals) and adds to @res the
 * members `payload` (the material under RSAES-OAEP-SHA-256), `encryptedNonce` (the nonce
 * under AES-GCM keyed by the material, with its tag), `iv` and `encryptionAlgorithm`.
 */
static int secure_members(struct cli_client *c, const struct kms_args *a,
			  const struct sealvm_secret *m, json_t *res)
{
	_cleanup_json_ json_t *tok = NULL;
	_cleanup_free_ unsigned char *wrapped = NULL, *nonce = NULL, *enc = NULL;
	unsigned char iv[NONCE_IV_BYTES];
	const char *pub_b64, *nonce_b64;
	size_t wrapped_len = 0;
	EVP_PKEY *pub;
	long nonce_len;
	int ex, r;

	if (a->new_token) {
		_cleanup_json_ json_t *body = json_object();
		if (!body)
			return cli_oom();
		if ((ex = kms_call(c, a, "POST", "/import_token", body, false, NULL)) != 0)
			return ex;
	}
	if ((ex = kms_call(c, a, "GET", "/import_token", NULL, false, &tok)) != 0)
		return ex;
	pub_b64 = json_string_value(json_object_get(tok, "payload"));
	nonce_b64 = json_string_value(json_object_get(tok, "nonce"));
	if (!pub_b64 || !nonce_b64) {
		cli_error("GET /api/v2/import_token: the answer has no payload (public key) or no "
			  "nonce [BAD_ANSWER]");
		return EXIT_FAIL;
	}
	pub = token_public_key(pub_b64);
	if (!pub) {
		cli_error("GET /api/v2/import_token: the payload is not a base64 RSA public key of "
			  "at least 2048 bits [BAD_ANSWER]");
		return EXIT_FAIL;
	}
	r = oaep_encrypt(pub, m, &wrapped, &wrapped_len);
	EVP_PKEY_free(pub);
	if (r < 0) {
		cli_error("cannot encrypt the key material under the import token's public key "
			  "(RSAES-OAEP-SHA-256) [CRYPTO_FAILED]");
		return EXIT_FAIL;
	}
	nonce = malloc(sealvm_b64_decoded_max(strlen(nonce_b64)) + 1);
	if (!nonce)
		return cli_oom();
	nonce_len = sealvm_b64_decode(nonce_b64, strlen(nonce_b64), nonce, false);
	if (nonce_len <= 0 || nonce_len > 1024) {
		cli_error("GET /api/v2/import_token: the nonce is not base64 [BAD_ANSWER]");
		return EXIT_FAIL;
	}
	if (!(enc = malloc((size_t)nonce_len + GCM_TAG_BYTES)))
		return cli_oom();
	if (gcm_encrypt_nonce(m, nonce, (size_t)nonce_len, iv, enc) < 0) {
		cli_error("cannot encrypt the import token's nonce (AES-GCM) [CRYPTO_FAILED]");
		return EXIT_FAIL;
	}
	if (json_object_set_new(res, "payload", b64_json(wrapped, wrapped_len)) < 0 ||
	    json_object_set_new(res, "encryptedNonce",
				b64_json(enc, (size_t)nonce_len + GCM_TAG_BYTES)) < 0 ||
	    json_object_set_new(res, "iv", b64_json(iv, sizeof(iv))) < 0 ||
	    json_object_set_new(res, "encryptionAlgorithm", json_string(ENC_ALG)) < 0)
		return cli_oom();
	return 0;
}

/* Adds the key material @m to @res: with --secure by the import-token exchange, else as is. */
static int material_members(struct cli_client *c, const struct kms_args *a,
			    const struct sealvm_secret *m, json_t *res)
{
	if (a->secure)
		return secure_members(c, a, m, res);
	if (json_object_set_new(res, "payload", b64_json(m->data, m->len)) < 0)
		return cli_oom();
	return 0;
}

int cmd_kms_key_import(int argc, char **argv)
{
	static const int opts[] = {
		OPT_KEY_FILE,	     OPT_RAW,	   OPT_SECURE,
		OPT_NEW_TOKEN,	     OPT_STANDARD, OPT_DESCRIPTION,
		OPT_EXPIRATION_DATE, OPT_ALIAS,	   0,
	};
	struct kms_args a = {0};
	_cleanup_client_ struct cli_client *c = NULL;
	_cleanup_secret_ struct sealvm_secret *m = NULL;
	_cleanup_json_ json_t *res = NULL;
	int ex;

	if (parse(argc, argv, opts, &a, 1, "NAME", &ex))
		return ex;
	if (!a.key_file)
		return cli_usage_error("give --key-file FILE: the key material (base64 text, or "
				       "raw bytes with --raw); never an argument");
	if (a.secure && a.standard)
		return cli_usage_error("--secure imports root keys only; a standard key is "
				       "imported without an import token");
	if (a.new_token && !a.secure)
		return cli_usage_error("--new-token goes with --secure");
	if ((ex = read_material(a.key_file, a.raw, a.standard, &m)) != 0)
		return ex;
	if (!(res = key_resource(&a, argv[optind])))
		return cli_oom();
	if ((ex = cli_client_open(&c)) != 0)
		return ex;
	if ((ex = material_members(c, &a, m, res)) != 0)
		return ex;
	sealvm_secret_free(TAKE_PTR(m));
	return post_key(c, &a, TAKE_PTR(res));
}

/* "1,2" or "active,suspended" → "1,2"; NULL (reported) when a word is unknown. */
static char *state_query(const char *s)
{
	static const struct {
		const char *name;
		char num;
	} names[] = {
		{"pre-activation", '0'},
		{"active", '1'},
		{"suspended", '2'},
		{"disabled", '2'},
		{"deactivated", '3'},
		{"destroyed", '5'},
		{"deleted", '5'},
		{"0", '0'},
		{"1", '1'},
		{"2", '2'},
		{"3", '3'},
		{"5", '5'},
	};
	_cleanup_free_ char *copy = strdup(s);
	char *out = calloc(1, 2 * strlen(s) + 2), *save = NULL, *w;
	size_t o = 0;

	if (!copy || !out) {
		free(out);
		return NULL;
	}
	for (w = strtok_r(copy, ",", &save); w; w = strtok_r(NULL, ",", &save)) {
		size_t i;
		for (i = 0; i < ELEMENTSOF(names); i++)
			if (!strcasecmp(w, names[i].name))
				break;
		if (i == ELEMENTSOF(names)) {
			cli_usage_error("--state: '%s' is not a key state (pre-activation, active, "
					"suspended, deactivated, destroyed, or 0, 1, 2, 3, 5)",
					w);
			free(out);
			return NULL;
		}
		if (o)
			out[o++] = ',';
		out[o++] = names[i].num;
	}
	if (!o) {
		cli_usage_error("--state needs at least one state");
		free(out);
		return NULL;
	}
	return out;
}

int cmd_kms_key_list(int argc, char **argv)
{
	static const int opts[] = {OPT_STATE, OPT_LIMIT, OPT_OFFSET, 0};
	static const char *const hdr[] = {"ID", "NAME", "KIND", "STATE", "CREATED"};
	static const char *const keys[] = {"id", "name", "kind", "stateName", "creationDate"};
	struct kms_args a = {0};
	_cleanup_client_ struct cli_client *c = NULL;
	_cleanup_free_ char *states = NULL;
	_cleanup_json_ json_t *all = json_array();
	unsigned offset, limit;
	int ex;

	if (parse(argc, argv, opts, &a, 0, "", &ex))
		return ex;
	if (a.state && !(states = state_query(a.state)))
		return EXIT_USAGE;
	if (!all)
		return cli_oom();
	if ((ex = cli_client_open(&c)) != 0)
		return ex;
	/* One page with --limit/--offset; otherwise every page. */
	offset = a.offset;
	limit = a.have_limit ? a.limit : LIST_PAGE;
	for (;;) {
		_cleanup_free_ char *path = NULL;
		char num[32];
		json_t *page = NULL, *res;

		if (!(path = strdup("/keys")))
			return cli_oom();
		snprintf(num, sizeof(num), "%u", limit);
		if (cli_query_add(&path, "limit", num) < 0)
			return cli_oom();
		snprintf(num, sizeof(num), "%u", offset);
		if (cli_query_add(&path, "offset", num) < 0 ||
		    (states && cli_query_add(&path, "state", states) < 0))
			return cli_oom();
		if ((ex = kms_call(c, &a, "GET", path, NULL, false, &page)) != 0)
			return ex;
		res = json_object_get(page, "resources");
		size_t n = json_array_size(res);
		json_array_extend(all, res);
		json_decref(page);
		if (a.have_limit || a.have_offset || n < limit)
			break;
		offset += limit;
	}
	if (a.json) {
		_cleanup_json_ json_t *o = json_pack(
			"{s:{s:s, s:I}, s:O}", "metadata", "collectionType", KEY_MEDIA,
			"collectionTotal", (json_int_t)json_array_size(all), "resources", all);
		cli_print_json(o);
	} else {
		size_t i;
		json_t *k;
		json_array_foreach(all, i, k) humanize_key(k);
		cli_print_table(all, hdr, keys, ELEMENTSOF(keys));
	}
	return EXIT_OK;
}

int cmd_kms_key_show(int argc, char **argv)
{
	static const int opts[] = {OPT_PAYLOAD_OUT, 0};
	struct kms_args a = {0};
	_cleanup_client_ struct cli_client *c = NULL;
	_cleanup_free_ char *path = NULL;
	json_t *j = NULL, *k, *payload;
	int ex;

	if (parse(argc, argv, opts, &a, 1, KEY_ARG, &ex))
		return ex;
	if ((ex = check_new_output("--payload-out", a.payload_out)) != 0)
		return ex;
	/* Without --payload-out, the metadata: the payload never travels unless asked for. */
	if (!(path = cli_id_path("/keys", a.key, a.payload_out ? "" : "/metadata")))
		return cli_oom();
	if ((ex = cli_client_open(&c)) != 0 ||
	    (ex = kms_call(c, &a, "GET", path, NULL, false, &j)) != 0)
		return ex;
	k = first_resource(j);
	if (!k) {
		json_decref(j);
		cli_error("GET /api/v2%s: the answer holds no key [BAD_ANSWER]", path);
		return EXIT_FAIL;
	}
	if (a.payload_out) {
		payload = json_object_get(k, "payload");
		if (!json_is_string(payload)) {
			json_decref(j);
			cli_error("key %s has no payload to write: only standard keys give theirs, "
				  "and only to ReaderPlus and above [NO_PAYLOAD]",
				  a.key);
			return EXIT_FAIL;
		}
		ex = write_out("payload", a.payload_out, json_string_value(payload),
			       json_string_length(payload));
		json_object_del(k, "payload");
		if (ex || !strcmp(a.payload_out, "-")) {
			/* with "-", stdout holds the payload alone */
			json_decref(j);
			return ex ? ex : EXIT_OK;
		}
	}
	return show_key(&a, j);
}

/* A request on one key whose answer may be empty (204): says @verb when it is. */
static int key_action(int argc, char **argv, const char *method, const char *suffix,
		      const char *verb, bool prefer)
{
	struct kms_args a = {0};
	_cleanup_client_ struct cli_client *c = NULL;
	json_t *j = NULL;
	int ex;

	if (parse(argc, argv, NULL, &a, 1, KEY_ARG, &ex))
		return ex;
	if ((ex = cli_client_open(&c)) != 0 ||
	    (ex = key_call(c, &a, method, suffix, NULL, prefer, &j)) != 0)
		return ex;
	if (!first_resource(j)) {
		if (a.json)
			cli_print_json(j ? j : json_null());
		else
			printf("%s key %s\n", verb, a.key);
		json_decref(j);
		return EXIT_OK;
	}
	return show_key(&a, j);
}

int cmd_kms_key_delete(int argc, char **argv)
{
	static const int opts[] = {OPT_FORCE, 0};
	struct kms_args a = {0};
	_cleanup_client_ struct cli_client *c = NULL;
	json_t *j = NULL;
	int ex;

	if (parse(argc, argv, opts, &a, 1, KEY_ARG, &ex))
		return ex;
	if ((ex = cli_client_open(&c)) != 0 ||
	    (ex = key_call(c, &a, "DELETE", a.force ? "?force=true" : "", NULL, true, &j)) != 0)
		return ex;
	if (a.json)
		return show_key(&a, j);
	json_decref(j);
	printf("deleted key %s; 'sealvm kms key restore %s' brings it back within the restore "
	       "window\n",
	       a.key, a.key);
	return EXIT_OK;
}

int cmd_kms_key_restore(int argc, char **argv)
{
	return key_action(argc, argv, "POST", "/restore", "restored", true);
}

int cmd_kms_key_disable(int argc, char **argv)
{
	return key_action(argc, argv, "POST", "/actions/disable", "disabled", false);
}

int cmd_kms_key_enable(int argc, char **argv)
{
	return key_action(argc, argv, "POST", "/actions/enable", "enabled", false);
}

int cmd_kms_key_rotate(int argc, char **argv)
{
	static const int opts[] = {OPT_KEY_FILE, OPT_RAW, OPT_SECURE, OPT_NEW_TOKEN, 0};
	struct kms_args a = {0};
	_cleanup_client_ struct cli_client *c = NULL;
	_cleanup_secret_ struct sealvm_secret *m = NULL;
	_cleanup_json_ json_t *body = NULL;
	json_t *j = NULL;
	int ex;

	if (parse(argc, argv, opts, &a, 1, KEY_ARG, &ex))
		return ex;
	if (a.secure && !a.key_file)
		return cli_usage_error("--secure needs --key-file: the new key material");
	if (a.new_token && !a.secure)
		return cli_usage_error("--new-token goes with --secure");
	if (a.key_file && (ex = read_material(a.key_file, a.raw, false, &m)) != 0)
		return ex;
	if ((ex = cli_client_open(&c)) != 0)
		return ex;
	if (m) {
		if (!(body = json_object()))
			return cli_oom();
		if ((ex = material_members(c, &a, m, body)) != 0)
			return ex;
		sealvm_secret_free(TAKE_PTR(m));
	}
	if ((ex = key_call(c, &a, "POST", "/actions/rotate", body, false, NULL)) != 0)
		return ex;
	json_decref(TAKE_PTR(body)); /* wiped on free: it may hold key material */
	/* 204 says nothing: show the new version. */
	if ((ex = key_call(c, &a, "GET", "/metadata", NULL, false, &j)) != 0)
		return ex;
	if (a.json)
		return show_key(&a, j);
	printf("rotated key %s; new version %s\n", a.key,
	       version_of(first_resource(j), "keyVersion"));
	json_decref(j);
	return EXIT_OK;
}

int cmd_kms_key_versions(int argc, char **argv)
{
	static const char *const hdr[] = {"VERSION", "CREATED"};
	static const char *const keys[] = {"id", "creationDate"};
	struct kms_args a = {0};
	_cleanup_client_ struct cli_client *c = NULL;
	json_t *j = NULL;
	int ex;

	if (parse(argc, argv, NULL, &a, 1, KEY_ARG, &ex))
		return ex;
	if ((ex = cli_client_open(&c)) != 0 ||
	    (ex = key_call(c, &a, "GET", "/versions", NULL, false, &j)) != 0)
		return ex;
	if (a.json)
		cli_print_json(j ? j : json_null());
	else
		cli_print_table(json_object_get(j, "resources"), hdr, keys, ELEMENTSOF(keys));
	json_decref(j);
	return EXIT_OK;
}

/* ---- wrap, unwrap, rewrap ---------------------------------------------------------------------
 */

/*
 * POST /api/v2/keys/KEY@suffix with @body, which gains the --aad values, on a client of its
 * own. *@ret_json the answer. Reports; EXIT_FAIL or 0.
 */
static int dek_action(const struct kms_args *a, const char *suffix, json_t *body, json_t **ret_json)
{
	_cleanup_client_ struct cli_client *c = NULL;
	int ex;

	if (a->n_aad && json_object_set_new(body, "aad", strings_json(a->aad, a->n_aad)) < 0)
		return cli_oom();
	if ((ex = cli_client_open(&c)) != 0)
		return ex;
	return key_call(c, a, "POST", suffix, body, false, ret_json);
}

/* The `ciphertext` of a wrap or rewrap answer (borrowed); NULL, reported, when it has none. */
static const char *answer_ciphertext(const json_t *j)
{
	const char *ct = json_string_value(json_object_get(j, "ciphertext"));

	if (!ct)
		cli_error("the answer has no ciphertext [BAD_ANSWER]");
	return ct;
}

/* The request body {"ciphertext": WDEK} of unwrap and rewrap, from the --wdek-file. */
static int wdek_body(const struct kms_args *a, json_t **ret)
{
	_cleanup_free_ char *wdek = NULL;
	int ex;

	if ((ex = read_wdek(a->wdek_file, &wdek)) != 0)
		return ex;
	if (!(*ret = json_pack("{s:s}", "ciphertext", wdek)))
		return cli_oom();
	return 0;
}

int cmd_kms_wrap(int argc, char **argv)
{
	static const int opts[] = {OPT_DEK_FILE, OPT_DEK_OUT, OPT_OUT, OPT_AAD, 0};
	struct kms_args a = {0};
	struct sealvm_err err = SEALVM_ERR_INIT;
	_cleanup_secret_ struct sealvm_secret *dek = NULL;
	_cleanup_json_ json_t *body = NULL, *j = NULL;
	const char *ct;
	int ex, r;

	if (parse(argc, argv, opts, &a, 1, ROOT_KEY_ARG, &ex))
		return ex;
	if (!!a.dek_file == !!a.dek_out)
		return cli_usage_error("give --dek-file FILE (wrap that DEK) or --dek-out FILE "
				       "(the service generates one and it goes to FILE)");
	if (a.dek_out && !strcmp(a.dek_out, "-") && (!a.out || a.json))
		return cli_usage_error("--dek-out - writes the DEK alone to standard output: give "
				       "--out FILE for the WDEK, and no --json");
	if ((ex = check_new_output("--dek-out", a.dek_out)) != 0 ||
	    (ex = check_new_output("--out", a.out)) != 0)
		return ex;
	if (a.dek_file && (r = sealvm_dek_read_file(a.dek_file, &dek, &err)) < 0)
		return cli_fail(&err, r);
	if (!(body = json_object()))
		return cli_oom();
	if (dek && json_object_set_new(body, "plaintext",
				       json_stringn((const char *)dek->data, dek->len)) < 0)
		return cli_oom();
	if ((ex = dek_action(&a, "/actions/wrap", body, &j)) != 0)
		return ex;
	if (!(ct = answer_ciphertext(j)))
		return EXIT_FAIL;
	if (a.dek_out) {
		if ((ex = write_dek(a.dek_out, json_object_get(j, "plaintext"))) != 0)
			return ex;
	}
	json_object_del(j, "plaintext"); /* wiped on free; never printed */
	if (a.out && (ex = write_wdek(a.out, ct)) != 0) {
		if (a.dek_out && strcmp(a.dek_out, "-"))
			unlink(a.dek_out); /* a DEK without its WDEK could not be recovered */
		return ex;
	}
	if (a.json) {
		cli_print_json(j);
	} else if (a.out) {
		/* with --dek-out -, stdout holds the DEK alone */
		fprintf(a.dek_out && !strcmp(a.dek_out, "-") ? stderr : stdout,
			"wrapped %sunder key %s version %s; WDEK in %s\n",
			a.dek_out ? "a new DEK " : "", a.key, version_of(j, "keyVersion"), a.out);
	} else {
		/* the WDEK alone on stdout, the details on stderr: `> FILE` keeps only the WDEK */
		printf("%s\n", ct);
		fprintf(stderr, "wrapped %sunder key %s version %s\n",
			a.dek_out ? "a new DEK " : "", a.key, version_of(j, "keyVersion"));
	}
	return EXIT_OK;
}

int cmd_kms_unwrap(int argc, char **argv)
{
	static const int opts[] = {OPT_WDEK_FILE, OPT_DEK_OUT, OPT_REWRAPPED_OUT, OPT_AAD, 0};
	struct kms_args a = {0};
	_cleanup_json_ json_t *body = NULL, *j = NULL;
	const char *rewrapped;
	int ex;

	if (parse(argc, argv, opts, &a, 1, ROOT_KEY_ARG, &ex))
		return ex;
	if (!a.wdek_file || !a.dek_out)
		return cli_usage_error("give --wdek-file FILE (the wrapped DEK) and --dek-out FILE "
				       "(where the DEK goes; '-' for standard output)");
	if (!strcmp(a.dek_out, "-") && a.json)
		return cli_usage_error("--dek-out - writes the DEK alone to standard output: "
				       "no --json with it");
	if ((ex = check_new_output("--dek-out", a.dek_out)) != 0 ||
	    (ex = check_new_output("--rewrapped-out", a.rewrapped_out)) != 0 ||
	    (ex = wdek_body(&a, &body)) != 0)
		return ex;
	if ((ex = dek_action(&a, "/actions/unwrap", body, &j)) != 0 ||
	    (ex = write_dek(a.dek_out, json_object_get(j, "plaintext"))) != 0)
		return ex;
	json_object_del(j, "plaintext");
	rewrapped = json_object_get(j, "rewrappedKeyVersion")
			    ? json_string_value(json_object_get(j, "ciphertext"))
			    : NULL;
	if (rewrapped && a.rewrapped_out && (ex = write_wdek(a.rewrapped_out, rewrapped)) != 0)
		return ex;
	if (a.json) {
		cli_print_json(j);
		return EXIT_OK;
	}
	/* With --dek-out -, stdout holds the DEK alone: the report goes to stderr. */
	FILE *rep = strcmp(a.dek_out, "-") ? stdout : stderr;
	fprintf(rep, "unwrapped with key %s version %s; DEK in %s\n", a.key,
		version_of(j, "keyVersion"),
		strcmp(a.dek_out, "-") ? a.dek_out : "standard output");
	if (rewrapped)
		fprintf(rep,
			"the key was rotated since this WDEK was made: %s holds it under the "
			"newest version %s%s\n",
			a.rewrapped_out ? a.rewrapped_out : "the answer",
			version_of(j, "rewrappedKeyVersion"),
			a.rewrapped_out ? "" : " (give --rewrapped-out FILE to keep it)");
	return EXIT_OK;
}

int cmd_kms_rewrap(int argc, char **argv)
{
	static const int opts[] = {OPT_WDEK_FILE, OPT_OUT, OPT_AAD, 0};
	struct kms_args a = {0};
	_cleanup_json_ json_t *body = NULL, *j = NULL;
	const char *ct;
	int ex;

	if (parse(argc, argv, opts, &a, 1, ROOT_KEY_ARG, &ex))
		return ex;
	if (!a.wdek_file)
		return cli_usage_error("give --wdek-file FILE: the wrapped DEK to rewrap");
	if ((ex = check_new_output("--out", a.out)) != 0 || (ex = wdek_body(&a, &body)) != 0 ||
	    (ex = dek_action(&a, "/actions/rewrap", body, &j)) != 0)
		return ex;
	json_object_del(j, "plaintext"); /* Key Protect sends none; never print one */
	if (!(ct = answer_ciphertext(j)))
		return EXIT_FAIL;
	if (a.out && (ex = write_wdek(a.out, ct)) != 0)
		return ex;
	if (a.json) {
		cli_print_json(j);
	} else if (a.out) {
		printf("rewrapped under key %s version %s (was version %s); WDEK in %s\n", a.key,
		       version_of(j, "rewrappedKeyVersion"), version_of(j, "keyVersion"), a.out);
	} else {
		printf("%s\n", ct);
		fprintf(stderr, "rewrapped under key %s version %s (was version %s)\n", a.key,
			version_of(j, "rewrappedKeyVersion"), version_of(j, "keyVersion"));
	}
	return EXIT_OK;
}

/* ---- import tokens -------------------------------------------------------------------------- */

int cmd_kms_import_token_create(int argc, char **argv)
{
	static const int opts[] = {OPT_EXPIRATION, OPT_MAX_RETRIEVALS, 0};
	struct kms_args a = {0};
	_cleanup_client_ struct cli_client *c = NULL;
	_cleanup_json_ json_t *body = json_object();
	json_t *j = NULL;
	int ex;

	if (parse(argc, argv, opts, &a, 0, "", &ex))
		return ex;
	if (!body)
		return cli_oom();
	if (a.have_token_expiration)
		json_object_set_new(body, "expiration", json_integer(a.token_expiration));
	if (a.have_max_retrievals)
		json_object_set_new(body, "maxAllowedRetrievals", json_integer(a.max_retrievals));
	if ((ex = cli_client_open(&c)) != 0 ||
	    (ex = kms_call(c, &a, "POST", "/import_token", body, false, &j)) != 0)
		return ex;
	if (a.json)
		cli_print_json(j ? j : json_null());
	else if (j)
		cli_print_object(j);
	json_decref(j);
	return EXIT_OK;
}

int cmd_kms_import_token_show(int argc, char **argv)
{
	struct kms_args a = {0};
	_cleanup_client_ struct cli_client *c = NULL;
	_cleanup_json_ json_t *j = NULL;
	int ex;

	if (parse(argc, argv, NULL, &a, 0, "", &ex))
		return ex;
	if ((ex = cli_client_open(&c)) != 0 ||
	    (ex = kms_call(c, &a, "GET", "/import_token", NULL, false, &j)) != 0)
		return ex;
	if (a.json) {
		cli_print_json(j ? j : json_null());
		return EXIT_OK;
	}
	json_t *pl = json_object_get(j, "payload");
	if (json_is_string(pl)) {
		char note[96];
		snprintf(note, sizeof(note),
			 "(RSA public key, %zu base64 characters; --json shows it)",
			 json_string_length(pl));
		json_object_set_new(j, "payload", json_string(note));
	}
	cli_print_object(j);
	return EXIT_OK;
}
