/* SPDX-License-Identifier: Apache-2.0 */
/*
 * client.h — the CLI's HTTP client for the sealvmd APIs, and its login state.
 *
 * One client per command run: an endpoint, a bearer token and the commands'
 * entry points. Where the endpoint and the credentials come from, first match
 * wins: the global options (--endpoint, --token-file, --apikey-file), the
 * environment (SEALVM_ENDPOINT, SEALVM_TOKEN, SEALVM_APIKEY_FILE), the login
 * state in $XDG_CONFIG_HOME/sealvm/login.json (~/.config when unset). Secrets
 * are only ever read from files or SEALVM_TOKEN, never from argv.
 */
#ifndef SEALVM_CLI_CLIENT_H
#define SEALVM_CLI_CLIENT_H

#include <stdbool.h>

#include <jansson.h>

#include "sealvm/secret.h"

/* Global options, set by main() before dispatch; borrowed from argv (never secrets). */
struct cli_globals {
	const char *endpoint;
	const char *token_file;
	const char *apikey_file;
};
extern struct cli_globals cli_globals;

struct cli_client;

/*
 * Resolves endpoint and credentials and gets a usable token (exchanging an
 * API key file, or refreshing the login state's token when less than 10% of
 * its lifetime is left). On failure the error is reported on stderr and
 * EXIT_FAIL returned; on success 0 and *ret (free with cli_client_free).
 */
int cli_client_open(struct cli_client **ret);
void cli_client_free(struct cli_client *c);
static inline void cli_client_freep(struct cli_client **c)
{
	cli_client_free(*c);
}
#define _cleanup_client_ _cleanup_(cli_client_freep)

/*
 * Sends METHOD PATH (PATH starts with '/' and is already URL-encoded) with
 * @body as JSON (borrowed; NULL for none). On a 2xx answer returns 0 and
 * *ret_json (a new reference; NULL when the answer has no body). Otherwise
 * reports the failure on stderr — the URL, the server's reason and message,
 * the request id — and returns EXIT_FAIL.
 */
int cli_api(struct cli_client *c, const char *method, const char *path, const json_t *body,
	    json_t **ret_json);

/*
 * cli_api with @headers, a NULL-terminated list of extra "Name: value" lines
 * (borrowed; never a secret: they may be logged by proxies), and the body's
 * @content_type (NULL: application/json). Error bodies in the Key Protect
 * envelope are reported with their reason code too. The request text is
 * wiped before it is freed, so a body may carry a DEK.
 */
int cli_api_ex(struct cli_client *c, const char *method, const char *path,
	       const char *const *headers, const char *content_type, const json_t *body,
	       json_t **ret_json);

/* The account of the caller, read from the token's account.bss claim (not verified). */
const char *cli_client_account(struct cli_client *c);

/* added for `sealvm cos`: the S3 client needs the API URL and the bearer token. */
/* The API endpoint of an open client (borrowed, no trailing '/'). */
const char *cli_client_endpoint(struct cli_client *c);
/* The bearer token of an open client (borrowed; never print it). */
const struct sealvm_secret *cli_client_token(struct cli_client *c);
/*
 * The API endpoint without credentials (flag > SEALVM_ENDPOINT > login state), as a new
 * string in *ret; -ENOENT when none is known.
 */
int cli_endpoint_resolve(char **ret);

/* Appends "&name=escaped(value)" (or "?" for the first) to the path buffer; 0 or -ENOMEM. */
int cli_query_add(char **path, const char *name, const char *value);

/* Login state. */
int cli_login(const char *endpoint, const char *apikey_file);
int cli_logout(void);

/* Output: "key: value" lines for the scalar members of @obj, in order. */
void cli_print_object(const json_t *obj);
/*
 * Aligned columns: @headers and @keys (dotted paths, "a.b") have @n entries;
 * each row of @rows (an array of objects) gives one line.
 */
void cli_print_table(const json_t *rows, const char *const *headers, const char *const *keys,
		     size_t n);

int cmd_login(int argc, char **argv);
int cmd_logout(int argc, char **argv);
int cmd_iam_serviceid_create(int argc, char **argv);
int cmd_iam_serviceid_list(int argc, char **argv);
int cmd_iam_serviceid_show(int argc, char **argv);
int cmd_iam_serviceid_update(int argc, char **argv);
int cmd_iam_serviceid_delete(int argc, char **argv);
int cmd_iam_serviceid_lock(int argc, char **argv);
int cmd_iam_serviceid_unlock(int argc, char **argv);
int cmd_iam_apikey_create(int argc, char **argv);
int cmd_iam_apikey_list(int argc, char **argv);
int cmd_iam_apikey_show(int argc, char **argv);
int cmd_iam_apikey_delete(int argc, char **argv);
int cmd_iam_apikey_lock(int argc, char **argv);
int cmd_iam_apikey_unlock(int argc, char **argv);
int cmd_iam_policy_create(int argc, char **argv);
int cmd_iam_policy_list(int argc, char **argv);
int cmd_iam_policy_show(int argc, char **argv);
int cmd_iam_policy_delete(int argc, char **argv);
int cmd_iam_authz_create(int argc, char **argv);
int cmd_iam_authz_list(int argc, char **argv);
int cmd_iam_authz_delete(int argc, char **argv);
int cmd_iam_hmac_create(int argc, char **argv);
int cmd_iam_hmac_list(int argc, char **argv);
int cmd_iam_hmac_show(int argc, char **argv);
int cmd_iam_hmac_delete(int argc, char **argv);
int cmd_resource_instance_create(int argc, char **argv);
int cmd_resource_instance_list(int argc, char **argv);
int cmd_resource_instance_show(int argc, char **argv);
int cmd_resource_instance_delete(int argc, char **argv);
int cmd_events_list(int argc, char **argv);
int cmd_events_verify(int argc, char **argv);
int cmd_events_export(int argc, char **argv);
int cmd_events_checkpoint(int argc, char **argv);

#endif
