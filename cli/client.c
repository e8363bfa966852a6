// SPDX-License-Identifier: Apache-2.0
/*
 * client.c — the CLI's HTTP client (libcurl) and its login state.
 *
 * Resolves the endpoint and the credentials (flag > environment > login
 * state), exchanges API keys for tokens, refreshes the login state's token
 * when less than 10% of its lifetime is left, sends JSON requests and turns
 * error answers into one message with the server's reason and request id.
 *
 * It must never put an API key or a token into argv, a message or a log;
 * the login state stores the API key file's path, never its value, in a
 * 0600 file in a 0700 directory.
 */
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <curl/curl.h>

#include "sealvm/b64.h"
#include "sealvm/file.h"
#include "sealvm/log.h"
#include "sealvm/secret.h"

#include "cli.h"
#include "client.h"

#define RESPONSE_MAX (64u * 1024 * 1024) /* an answer larger than this is refused */
#define APIKEY_FILE_MAX 4096
#define GRANT_TYPE "urn%3Aibm%3Aparams%3Aoauth%3Agrant-type%3Aapikey"

struct cli_globals cli_globals;

struct cli_client {
	char *endpoint; /* no trailing '/' */
	struct sealvm_secret *token;
	char account[128];
};

/* ---- HTTP -------------------------------------------------------------------------------- */

struct http_result {
	long status;
	char *body; /* NUL-terminated; wiped before it is freed (it may hold a token) */
	size_t len;
	char request_id[129];
};

static void http_result_done(struct http_result *r)
{
	if (r->body) {
		explicit_bzero(r->body, r->len);
		free(r->body);
	}
	r->body = NULL;
	r->len = 0;
}

static size_t on_body(char *p, size_t size, size_t n, void *userdata)
{
	struct http_result *r = userdata;
	size_t add = size * n;
	char *nb;

	if (add > RESPONSE_MAX - r->len)
		return 0; /* curl reports CURLE_WRITE_ERROR */
	nb = malloc(r->len + add + 1);
	if (!nb)
		return 0;
	if (r->body)
		memcpy(nb, r->body, r->len);
	memcpy(nb + r->len, p, add);
	nb[r->len + add] = 0;
	if (r->body) {
		explicit_bzero(r->body, r->len);
		free(r->body);
	}
	r->body = nb;
	r->len += add;
	return add;
}

static size_t on_header(char *p, size_t size, size_t n, void *userdata)
{
	struct http_result *r = userdata;
	size_t len = size * n;
	static const char name[] = "x-request-id:";

	if (len > sizeof(name) && !strncasecmp(p, name, sizeof(name) - 1)) {
		size_t i = sizeof(name) - 1, o = 0;
		while (i < len && (p[i] == ' ' || p[i] == '\t'))
			i++;
		while (i < len && o + 1 < sizeof(r->request_id) && p[i] > ' ' && p[i] < 0x7f)
			r->request_id[o++] = p[i++];
		r->request_id[o] = 0;
	}
	return len;
}

static void slist_wipe_free(struct curl_slist *l)
{
	for (struct curl_slist *i = l; i; i = i->next)
		explicit_bzero(i->data, strlen(i->data));
	curl_slist_free_all(l);
}

/*
 * One request. @token (may be NULL) goes into the Authorization header. Returns 0 when an
 * answer arrived (any status) and -EIO when none did, with curl's words in @errbuf.
 */
static int http_do(const char *method, const char *url, const struct sealvm_secret *token,
		   const char *const *extra, const char *content_type, const void *body,
		   size_t body_len, struct http_result *res, char errbuf[CURL_ERROR_SIZE])
{
	struct curl_slist *hdrs = NULL, *h;
	_cleanup_secret_ struct sealvm_secret *auth = NULL;
	CURL *curl;
	CURLcode cc;
	int r = 0;

	memset(res, 0, sizeof(*res));
	errbuf[0] = 0;
	curl = curl_easy_init();
	if (!curl) {
		snprintf(errbuf, CURL_ERROR_SIZE, "cannot start the HTTP client");
		return -ENOMEM;
	}
	h = curl_slist_append(hdrs, "Accept: application/json");
	if (h)
		hdrs = h;
	for (const char *const *x = extra; x && *x; x++)
		if ((h = curl_slist_append(hdrs, *x)))
			hdrs = h;
	if (content_type) {
		char ct[96];
		snprintf(ct, sizeof(ct), "Content-Type: %s", content_type);
		if ((h = curl_slist_append(hdrs, ct)))
			hdrs = h;
	}
	if (token) {
		static const char prefix[] = "Authorization: Bearer ";
		if (sealvm_secret_new(sizeof(prefix) + token->len, &auth) < 0) {
			r = -ENOMEM;
			goto out;
		}
		memcpy(auth->data, prefix, sizeof(prefix) - 1);
		memcpy(auth->data + sizeof(prefix) - 1, token->data, token->len);
		auth->len = sizeof(prefix) - 1 + token->len;
		auth->data[auth->len] = 0;
		if (!(h = curl_slist_append(hdrs, (char *)auth->data))) {
			r = -ENOMEM;
			goto out;
		}
		hdrs = h;
	}
	curl_easy_setopt(curl, CURLOPT_URL, url);
	curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method);
	if (!strcmp(method, "GET"))
		curl_easy_setopt(curl, CURLOPT_HTTPGET, 1L);
	if (body) {
		curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
	}
	curl_easy_setopt(curl, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(curl, CURLOPT_WRITEDATA, res);
	curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(curl, CURLOPT_HEADERDATA, res);
	curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT, 10L);
	curl_easy_setopt(curl, CURLOPT_TIMEOUT, 300L);
	curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(curl, CURLOPT_USERAGENT, "sealvm-cli");
	cc = curl_easy_perform(curl);
	if (cc != CURLE_OK) {
		if (!errbuf[0])
			snprintf(errbuf, CURL_ERROR_SIZE, "%s", curl_easy_strerror(cc));
		http_result_done(res);
		r = -EIO;
		goto out;
	}
	curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &res->status);
out:
	curl_easy_cleanup(curl);
	slist_wipe_free(hdrs);
	return r;
}

/* The reason and message of an error body, whichever of our API shapes it has. */
static void error_fields(const json_t *j, const char **reason, const char **message)
{
	const json_t *e = json_object_get(j, "error");
	const json_t *first = json_array_get(json_object_get(j, "errors"), 0);

	/* Key Protect: {"resources":[{"errorMsg", "reasons":[{"code","message"}]}]} */
	const json_t *kp = json_array_get(json_object_get(j, "resources"), 0);
	const json_t *kpr = json_array_get(json_object_get(kp, "reasons"), 0);

	*reason = json_string_value(json_object_get(e, "reason"));
	if (!*reason)
		*reason = json_string_value(json_object_get(first, "code"));
	if (!*reason)
		*reason = json_string_value(json_object_get(j, "errorCode"));
	if (!*reason)
		*reason = json_string_value(json_object_get(kpr, "code"));
	*message = json_string_value(json_object_get(e, "message"));
	if (!*message)
		*message = json_string_value(json_object_get(first, "message"));
	if (!*message)
		*message = json_string_value(json_object_get(j, "errorMessage"));
	if (!*message)
		*message = json_string_value(json_object_get(kpr, "message"));
	if (!*message)
		*message = json_string_value(json_object_get(kp, "errorMsg"));
}

static const char *what_to_do(long status)
{
	switch (status) {
	case 400:
		return "correct the request";
	case 401:
		return "log in again ('sealvm login') or give valid credentials";
	case 403:
		return "ask the account owner for a policy that allows this action";
	case 404:
		return "check the ID (it may not exist, or belong to another account)";
	case 409:
		return "the object changed or exists; check its state and retry";
	case 429:
		return "too many requests; wait and retry";
	case 503:
		return "the service is unavailable; retry later";
	default:
		return "the request id identifies the request in the server's log";
	}
}

static int report_http_error(const char *method, const char *url, const struct http_result *res)
{
	json_t *j = res->body ? json_loadb(res->body, res->len, 0, NULL) : NULL;
	const char *reason = NULL, *message = NULL;

	if (j)
		error_fields(j, &reason, &message);
	cli_error("%s %s: HTTP %ld: %s; %s (request id %s) [%s]", method, url, res->status,
		  message ? message : "the server gave no reason", what_to_do(res->status),
		  res->request_id[0] ? res->request_id : "none", reason ? reason : "HTTP_ERROR");
	json_decref(j);
	return EXIT_FAIL;
}

/* ---- tokens ------------------------------------------------------------------------------ */

/* Reads an API key file (one line; a trailing newline is dropped). Reports; EXIT_FAIL or 0. */
static int read_key_file(const char *path, const char *what, struct sealvm_secret **ret)
{
	struct sealvm_err err = SEALVM_ERR_INIT;
	_cleanup_secret_ struct sealvm_secret *s = NULL;
	int r = sealvm_secret_read_file(path, APIKEY_FILE_MAX, &s, &err);

	if (r < 0) {
		cli_error("cannot read the %s file '%s': %s; give a readable file [%s]", what, path,
			  sealvm_err_isset(&err) ? err.message : strerror(-r),
			  sealvm_err_isset(&err) ? err.reason : "FILE_UNREADABLE");
		return EXIT_FAIL;
	}
	while (s->len > 0 && (s->data[s->len - 1] == '\n' || s->data[s->len - 1] == '\r' ||
			      s->data[s->len - 1] == ' '))
		s->data[--s->len] = 0;
	if (s->len == 0 || memchr(s->data, '\n', s->len)) {
		cli_error("the %s file '%s' must hold one non-empty line [KEY_FILE_MALFORMED]",
			  what, path);
		return EXIT_FAIL;
	}
	*ret = TAKE_PTR(s);
	return 0;
}

/*
 * POST /identity/token with the key in @apikey_file. On success the token, its expiry
 * (epoch seconds) and lifetime (seconds). Reports failures; returns EXIT_FAIL or 0.
 */
static int exchange(const char *endpoint, const char *apikey_file, struct sealvm_secret **ret_token,
		    long long *ret_exp, long long *ret_life)
{
	static const char prefix[] = "grant_type=" GRANT_TYPE "&apikey=";
	_cleanup_secret_ struct sealvm_secret *key = NULL, *form = NULL, *tok = NULL;
	_cleanup_free_ char *url = NULL;
	struct http_result res;
	char errbuf[CURL_ERROR_SIZE];
	json_t *j = NULL;
	const char *at;
	int ex = EXIT_FAIL;

	if ((ex = read_key_file(apikey_file, "API key", &key)) != 0)
		return ex;
	ex = EXIT_FAIL;
	if (asprintf(&url, "%s/identity/token", endpoint) < 0 ||
	    sealvm_secret_new(sizeof(prefix) + 3 * key->len, &form) < 0) {
		url = NULL;
		cli_error("out of memory");
		return EXIT_FAIL;
	}
	memcpy(form->data, prefix, sizeof(prefix) - 1);
	form->len = sizeof(prefix) - 1;
	for (size_t i = 0; i < key->len; i++) {
		unsigned char c = key->data[i];
		if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		    c == '-' || c == '_' || c == '.' || c == '~') {
			form->data[form->len++] = c;
		} else {
			static const char hex[] = "0123456789ABCDEF";
			form->data[form->len++] = '%';
			form->data[form->len++] = hex[c >> 4];
			form->data[form->len++] = hex[c & 15];
		}
	}
	if (http_do("POST", url, NULL, NULL, "application/x-www-form-urlencoded", form->data,
		    form->len, &res, errbuf) < 0) {
		cli_error("cannot reach %s: %s; check --endpoint, SEALVM_ENDPOINT or the login "
			  "state, and that sealvmd runs [CONNECT_FAILED]",
			  url, errbuf);
		return EXIT_FAIL;
	}
	if (res.status != 200) {
		ex = report_http_error("POST", url, &res);
		http_result_done(&res);
		return ex;
	}
	j = json_loadb(res.body, res.len, 0, NULL);
	at = json_string_value(json_object_get(j, "access_token"));
	if (!at || sealvm_secret_from(at, strlen(at), &tok) < 0) {
		cli_error("POST %s: the answer has no access_token (request id %s) [BAD_ANSWER]",
			  url, res.request_id[0] ? res.request_id : "none");
		goto out;
	}
	*ret_exp = json_integer_value(json_object_get(j, "expiration"));
	*ret_life = json_integer_value(json_object_get(j, "expires_in"));
	if (*ret_life <= 0)
		*ret_life = 3600;
	if (*ret_exp <= 0)
		*ret_exp = (long long)time(NULL) + *ret_life;
	*ret_token = TAKE_PTR(tok);
	ex = 0;
out:
	if (j) {
		/* the parsed copy of the token: wipe it before jansson frees it */
		json_t *v = json_object_get(j, "access_token");
		if (json_is_string(v))
			explicit_bzero((char *)json_string_value(v), json_string_length(v));
		json_decref(j);
	}
	http_result_done(&res);
	return ex;
}

/* Reads the account id from the token's payload (not verified: the server does that). */
static void token_account(const struct sealvm_secret *tok, char *out, size_t outlen)
{
	const char *p = (const char *)tok->data, *a = strchr(p, '.'),
		   *b = a ? strchr(a + 1, '.') : NULL;
	_cleanup_free_ char *buf = NULL;
	json_t *j;
	long n;

	out[0] = 0;
	if (!b)
		return;
	a++;
	buf = malloc(sealvm_b64_decoded_max((size_t)(b - a)) + 1);
	if (!buf)
		return;
	n = sealvm_b64_decode(a, (size_t)(b - a), buf, true);
	if (n < 0)
		return;
	j = json_loadb(buf, (size_t)n, 0, NULL);
	const char *acc = json_string_value(json_object_get(json_object_get(j, "account"), "bss"));
	if (acc)
		snprintf(out, outlen, "%s", acc);
	json_decref(j);
}

/* ---- login state ------------------------------------------------------------------------- */

static int state_paths(char **ret_dir, char **ret_file)
{
	const char *xdg = getenv("XDG_CONFIG_HOME"), *home = getenv("HOME");
	char *dir = NULL, *file = NULL;

	if (xdg && xdg[0] == '/') {
		if (asprintf(&dir, "%s/sealvm", xdg) < 0)
			return -ENOMEM;
	} else if (home && home[0]) {
		if (asprintf(&dir, "%s/.config/sealvm", home) < 0)
			return -ENOMEM;
	} else {
		return -ENOENT;
	}
	if (asprintf(&file, "%s/login.json", dir) < 0) {
		free(dir);
		return -ENOMEM;
	}
	*ret_dir = dir;
	*ret_file = file;
	return 0;
}

static int mkdir_private(const char *dir)
{
	_cleanup_free_ char *parent = strdup(dir);
	char *slash;

	if (!parent)
		return -ENOMEM;
	slash = strrchr(parent, '/');
	if (slash && slash != parent) {
		*slash = 0;
		/* ~/.config may not exist yet; it is not ours, so the usual mode */
		if (mkdir(parent, 0755) < 0 && errno != EEXIST)
			return negative_errno();
	}
	if (mkdir(dir, 0700) < 0 && errno != EEXIST)
		return negative_errno();
	/* an existing directory keeps the owner's choice unless it is open to others */
	struct stat st;
	if (stat(dir, &st) < 0)
		return negative_errno();
	if ((st.st_mode & 077) && chmod(dir, 0700) < 0)
		return negative_errno();
	return 0;
}

/* Writes the state atomically (0600). Reports; EXIT_FAIL or 0. */
static int state_save(const char *endpoint, const char *apikey_file,
		      const struct sealvm_secret *tok, long long exp, long long life)
{
	_cleanup_free_ char *dir = NULL, *file = NULL, *partial = NULL, *text = NULL;
	_cleanup_atomic_ struct sealvm_atomic_file *f = NULL;
	struct sealvm_err err = SEALVM_ERR_INIT;
	json_t *j;
	int r;

	if ((r = state_paths(&dir, &file)) < 0) {
		cli_error(
			"cannot place the login state: set HOME or XDG_CONFIG_HOME [NO_CONFIG_DIR]");
		return EXIT_FAIL;
	}
	if ((r = mkdir_private(dir)) < 0) {
		cli_error("cannot create '%s': %s; check its parent's permissions [CONFIG_DIR]",
			  dir, strerror(-r));
		return EXIT_FAIL;
	}
	/* A leftover of an interrupted write in our own 0700 directory is ours to remove. */
	if (asprintf(&partial, "%s.partial", file) >= 0)
		unlink(partial);
	j = json_pack("{s:s, s:s, s:s%, s:I, s:I}", "endpoint", endpoint, "apikey_file",
		      apikey_file, "token", (const char *)tok->data, tok->len, "expiration",
		      (json_int_t)exp, "expires_in", (json_int_t)life);
	if (j) {
		text = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
		json_t *v = json_object_get(j, "token");
		explicit_bzero((char *)json_string_value(v), json_string_length(v));
		json_decref(j);
	}
	if (!text) {
		cli_error("out of memory");
		return EXIT_FAIL;
	}
	r = sealvm_atomic_open(file, SEALVM_ATOMIC_REPLACE, 0600, &f, &err);
	if (r >= 0)
		r = sealvm_write_all(f->fd, text, strlen(text));
	explicit_bzero(text, strlen(text));
	if (r >= 0) {
		r = sealvm_atomic_commit(TAKE_PTR(f), &err);
	}
	if (r < 0) {
		cli_error("cannot write the login state '%s': %s [%s]", file,
			  sealvm_err_isset(&err) ? err.message : strerror(-r),
			  sealvm_err_isset(&err) ? err.reason : "STATE_WRITE");
		return EXIT_FAIL;
	}
	return 0;
}

/* The login state (a new reference) or NULL when there is none. */
static json_t *state_load(void)
{
	_cleanup_free_ char *dir = NULL, *file = NULL;

	if (state_paths(&dir, &file) < 0)
		return NULL;
	return json_load_file(file, 0, NULL);
}

static void state_free(json_t *j)
{
	json_t *v = json_object_get(j, "token");
	if (json_is_string(v))
		explicit_bzero((char *)json_string_value(v), json_string_length(v));
	json_decref(j);
}

static int check_endpoint(const char *url, char **ret)
{
	char *e;
	size_t n;

	if (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0)
		return cli_usage_error("endpoint '%s': give an http:// or https:// URL", url);
	e = strdup(url);
	if (!e)
		return EXIT_FAIL;
	n = strlen(e);
	while (n > 8 && e[n - 1] == '/')
		e[--n] = 0;
	*ret = e;
	return 0;
}

int cli_login(const char *endpoint, const char *apikey_file)
{
	_cleanup_free_ char *ep = NULL;
	_cleanup_secret_ struct sealvm_secret *tok = NULL;
	char abs[PATH_MAX];
	long long exp, life;
	int ex;

	if ((ex = check_endpoint(endpoint, &ep)) != 0)
		return ex;
	if (!realpath(apikey_file, abs)) {
		cli_error("cannot read the API key file '%s': %s; give a readable file "
			  "[FILE_UNREADABLE]",
			  apikey_file, strerror(errno));
		return EXIT_FAIL;
	}
	if ((ex = exchange(ep, abs, &tok, &exp, &life)) != 0)
		return ex;
	if ((ex = state_save(ep, abs, tok, exp, life)) != 0)
		return ex;
	printf("logged in to %s; the token expires in %lld s\n", ep, life);
	return EXIT_OK;
}

int cli_logout(void)
{
	_cleanup_free_ char *dir = NULL, *file = NULL;

	if (state_paths(&dir, &file) < 0)
		return EXIT_OK;
	if (unlink(file) < 0 && errno != ENOENT) {
		cli_error("cannot remove the login state '%s': %s [STATE_WRITE]", file,
			  strerror(errno));
		return EXIT_FAIL;
	}
	return EXIT_OK;
}

/* ---- the client ---------------------------------------------------------------------------- */

void cli_client_free(struct cli_client *c)
{
	if (!c)
		return;
	free(c->endpoint);
	sealvm_secret_free(c->token);
	free(c);
}

/* The login state's token, refreshed when less than 10% of its lifetime is left. */
static int state_token(json_t *st, struct cli_client *c)
{
	const char *tok = json_string_value(json_object_get(st, "token"));
	const char *keyfile = json_string_value(json_object_get(st, "apikey_file"));
	long long exp = json_integer_value(json_object_get(st, "expiration"));
	long long life = json_integer_value(json_object_get(st, "expires_in"));
	long long now = (long long)time(NULL);
	_cleanup_secret_ struct sealvm_secret *fresh = NULL;
	long long nexp, nlife;

	if (life <= 0)
		life = 3600;
	if (tok && now < exp - life / 10)
		return sealvm_secret_from(tok, strlen(tok), &c->token) < 0 ? EXIT_FAIL : 0;
	if (!keyfile) {
		cli_error("the login state has no API key file to refresh the token; run 'sealvm "
			  "login' again [NOT_LOGGED_IN]");
		return EXIT_FAIL;
	}
	log_debug("refreshing the login token (expires at %lld)", exp);
	if (exchange(c->endpoint, keyfile, &fresh, &nexp, &nlife) != 0) {
		if (tok && now < exp) {
			cli_error("warning: could not refresh the token; using the current one "
				  "until it expires");
			return sealvm_secret_from(tok, strlen(tok), &c->token) < 0 ? EXIT_FAIL : 0;
		}
		return EXIT_FAIL;
	}
	/* Failing to store the new token costs only a later refresh. */
	(void)state_save(c->endpoint, keyfile, fresh, nexp, nlife);
	c->token = TAKE_PTR(fresh);
	return 0;
}

int cli_client_open(struct cli_client **ret)
{
	struct cli_client *c;
	_cleanup_(cli_client_freep) struct cli_client *owned = NULL;
	json_t *st = NULL;
	const char *ep, *env_token = getenv("SEALVM_TOKEN"),
			*env_keyfile = getenv("SEALVM_APIKEY_FILE");
	const char *st_ep;
	long long exp, life;
	int ex = EXIT_FAIL;

	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		cli_error("cannot start the HTTP client");
		return EXIT_FAIL;
	}
	owned = c = calloc(1, sizeof(*c));
	if (!c)
		return EXIT_FAIL;
	st = state_load();
	st_ep = json_string_value(json_object_get(st, "endpoint"));
	ep = cli_globals.endpoint ? cli_globals.endpoint : getenv("SEALVM_ENDPOINT");
	if (ep && !*ep)
		ep = NULL;
	if (!ep)
		ep = st_ep;
	if (!ep) {
		cli_error("no endpoint: run 'sealvm login --endpoint URL --apikey-file FILE', or "
			  "give --endpoint or SEALVM_ENDPOINT [NOT_LOGGED_IN]");
		goto out;
	}
	if ((ex = check_endpoint(ep, &c->endpoint)) != 0)
		goto out;
	ex = EXIT_FAIL;

	if (cli_globals.token_file) {
		if (read_key_file(cli_globals.token_file, "token", &c->token) != 0)
			goto out;
	} else if (cli_globals.apikey_file) {
		if (exchange(c->endpoint, cli_globals.apikey_file, &c->token, &exp, &life) != 0)
			goto out;
	} else if (env_token && *env_token) {
		if (sealvm_secret_from(env_token, strlen(env_token), &c->token) < 0)
			goto out;
	} else if (env_keyfile && *env_keyfile) {
		if (exchange(c->endpoint, env_keyfile, &c->token, &exp, &life) != 0)
			goto out;
	} else if (st && st_ep && !strcmp(st_ep, c->endpoint)) {
		if (state_token(st, c) != 0)
			goto out;
	} else {
		/* The login state's token belongs to its own endpoint; never send it elsewhere. */
		cli_error("no credentials for %s: run 'sealvm login --endpoint URL --apikey-file "
			  "FILE', or give --apikey-file, --token-file, SEALVM_APIKEY_FILE or "
			  "SEALVM_TOKEN [NOT_LOGGED_IN]",
			  c->endpoint);
		goto out;
	}
	token_account(c->token, c->account, sizeof(c->account));
	*ret = TAKE_PTR(owned);
	ex = 0;
out:
	state_free(st);
	return ex;
}

const char *cli_client_account(struct cli_client *c)
{
	return c->account[0] ? c->account : NULL;
}

const char *cli_client_endpoint(struct cli_client *c)
{
	return c->endpoint;
}

const struct sealvm_secret *cli_client_token(struct cli_client *c)
{
	return c->token;
}

int cli_endpoint_resolve(char **ret)
{
	const char *ep = cli_globals.endpoint ? cli_globals.endpoint : getenv("SEALVM_ENDPOINT");
	json_t *st = NULL;
	char *e;
	size_t n;

	if (!ep || !*ep) {
		st = state_load();
		ep = json_string_value(json_object_get(st, "endpoint"));
	}
	e = ep && *ep ? strdup(ep) : NULL;
	state_free(st);
	if (!e)
		return ep && *ep ? -ENOMEM : -ENOENT;
	n = strlen(e);
	while (n > 8 && e[n - 1] == '/')
		e[--n] = 0;
	*ret = e;
	return 0;
}

/* Wipes and frees a request text: a body may carry a DEK (kms wrap) or key material. */
static void text_wipe_freep(char **p)
{
	if (*p) {
		explicit_bzero(*p, strlen(*p));
		free(*p);
	}
}

int cli_api(struct cli_client *c, const char *method, const char *path, const json_t *body,
	    json_t **ret_json)
{
	return cli_api_ex(c, method, path, NULL, NULL, body, ret_json);
}

int cli_api_ex(struct cli_client *c, const char *method, const char *path,
	       const char *const *headers, const char *content_type, const json_t *body,
	       json_t **ret_json)
{
	_cleanup_free_ char *url = NULL;
	_cleanup_(text_wipe_freep) char *text = NULL;
	struct http_result res;
	char errbuf[CURL_ERROR_SIZE];
	json_error_t jerr;
	json_t *j = NULL;

	if (asprintf(&url, "%s%s", c->endpoint, path) < 0) {
		url = NULL;
		cli_error("out of memory");
		return EXIT_FAIL;
	}
	if (body && !(text = json_dumps(body, JSON_COMPACT))) {
		cli_error("out of memory");
		return EXIT_FAIL;
	}
	log_debug("%s %s", method, url);
	if (http_do(method, url, c->token, headers,
		    text ? (content_type ? content_type : "application/json") : NULL, text,
		    text ? strlen(text) : 0, &res, errbuf) < 0) {
		cli_error("cannot reach %s: %s; check --endpoint, SEALVM_ENDPOINT or the login "
			  "state, and that sealvmd runs [CONNECT_FAILED]",
			  url, errbuf);
		return EXIT_FAIL;
	}
	if (res.status < 200 || res.status > 299) {
		int ex = report_http_error(method, url, &res);
		http_result_done(&res);
		return ex;
	}
	if (res.len > 0) {
		j = json_loadb(res.body, res.len, 0, &jerr);
		if (!j) {
			cli_error("%s %s: the answer is not JSON (%s; request id %s) [BAD_ANSWER]",
				  method, url, jerr.text,
				  res.request_id[0] ? res.request_id : "none");
			http_result_done(&res);
			return EXIT_FAIL;
		}
	}
	http_result_done(&res);
	*ret_json = j;
	return 0;
}

int cli_query_add(char **path, const char *name, const char *value)
{
	char *esc = curl_easy_escape(NULL, value, 0), *np;
	int r;

	if (!esc)
		return -ENOMEM;
	r = asprintf(&np, "%s%c%s=%s", *path, strchr(*path, '?') ? '&' : '?', name, esc);
	curl_free(esc);
	if (r < 0)
		return -ENOMEM;
	free(*path);
	*path = np;
	return 0;
}

/* ---- output ---------------------------------------------------------------------------------- */

static char *scalar_text(const json_t *v)
{
	char *s = NULL;

	switch (json_typeof(v)) {
	case JSON_STRING:
		return strdup(json_string_value(v));
	case JSON_INTEGER:
		if (asprintf(&s, "%" JSON_INTEGER_FORMAT, json_integer_value(v)) < 0)
			return NULL;
		return s;
	case JSON_REAL:
		if (asprintf(&s, "%g", json_real_value(v)) < 0)
			return NULL;
		return s;
	case JSON_TRUE:
		return strdup("true");
	case JSON_FALSE:
		return strdup("false");
	case JSON_NULL:
		return strdup("-");
	default:
		return json_dumps(v, JSON_COMPACT | JSON_PRESERVE_ORDER);
	}
}

void cli_print_object(const json_t *obj)
{
	const char *k;
	const json_t *v;
	size_t w = 0;

	json_object_foreach((json_t *)obj, k, v) if (strlen(k) > w) w = strlen(k);
	json_object_foreach((json_t *)obj, k, v)
	{
		_cleanup_free_ char *s = scalar_text(v);
		printf("%s:%*s %s\n", k, (int)(w - strlen(k)), "", s ? s : "?");
	}
}

static const json_t *dotted(const json_t *o, const char *path)
{
	char part[64];

	while (o && *path) {
		size_t n = strcspn(path, ".");
		if (n >= sizeof(part))
			return NULL;
		memcpy(part, path, n);
		part[n] = 0;
		o = json_object_get(o, part);
		path += n + (path[n] == '.');
	}
	return o;
}

void cli_print_table(const json_t *rows, const char *const *headers, const char *const *keys,
		     size_t n)
{
	size_t nrows = json_array_size(rows), w[16] = {0};

	if (n > ELEMENTSOF(w))
		n = ELEMENTSOF(w);
	for (size_t c = 0; c < n; c++)
		w[c] = strlen(headers[c]);
	for (size_t r = 0; r < nrows; r++)
		for (size_t c = 0; c < n; c++) {
			const json_t *v = dotted(json_array_get(rows, r), keys[c]);
			_cleanup_free_ char *s = v ? scalar_text(v) : NULL;
			if (s && strlen(s) > w[c])
				w[c] = strlen(s);
		}
	for (size_t c = 0; c < n; c++)
		printf("%-*s%s", c + 1 < n ? (int)w[c] : 0, headers[c], c + 1 < n ? "  " : "\n");
	for (size_t r = 0; r < nrows; r++)
		for (size_t c = 0; c < n; c++) {
			const json_t *v = dotted(json_array_get(rows, r), keys[c]);
			_cleanup_free_ char *s = v ? scalar_text(v) : NULL;
			printf("%-*s%s", c + 1 < n ? (int)w[c] : 0, s ? s : "-",
			       c + 1 < n ? "  " : "\n");
		}
}
