// SPDX-License-Identifier: Apache-2.0
/*
 * cmd_login.c — `sealvm login` and `sealvm logout`.
 *
 * login exchanges the API key in a file for a token and keeps the endpoint,
 * the key file's path and the token in the login state; it never takes the
 * key itself from the command line and never stores the key's value.
 */
#include <getopt.h>
#include <string.h>

#include "cli.h"
#include "client.h"

struct login_args {
	const char *endpoint;
	const char *apikey_file;
};

static int login_opt(int c, const char *arg, void *userdata)
{
	struct login_args *a = userdata;
	switch (c) {
	case 'e':
		a->endpoint = arg;
		return 0;
	case 'k':
		a->apikey_file = arg;
		return 0;
	}
	return -1;
}

int cmd_login(int argc, char **argv)
{
	static const struct option opts[] = {
		{"endpoint", required_argument, NULL, 'e'},
		{"apikey-file", required_argument, NULL, 'k'},
		{0},
	};
	struct login_args a = {0};
	int ex;

	if (cli_parse(argc, argv, "", opts, login_opt, &a, &ex))
		return ex;
	if (optind != argc)
		return cli_usage_error("unexpected argument '%s'", argv[optind]);
	/* the global options count too: `sealvm --endpoint URL login --apikey-file FILE` */
	if (!a.endpoint)
		a.endpoint =
			cli_globals.endpoint ? cli_globals.endpoint : getenv("SEALVM_ENDPOINT");
	if (!a.apikey_file)
		a.apikey_file = cli_globals.apikey_file ? cli_globals.apikey_file
							: getenv("SEALVM_APIKEY_FILE");
	if (!a.endpoint || !*a.endpoint)
		return cli_usage_error(
			"give --endpoint URL (the sealvmd address, e.g. http://127.0.0.1:8720)");
	if (!a.apikey_file || !*a.apikey_file)
		return cli_usage_error("give --apikey-file FILE (a file holding the API key)");
	return cli_login(a.endpoint, a.apikey_file);
}

static int no_opt(int c, const char *arg, void *userdata)
{
	(void)c;
	(void)arg;
	(void)userdata;
	return -1;
}

int cmd_logout(int argc, char **argv)
{
	static const struct option opts[] = {{0}};
	int ex;

	if (cli_parse(argc, argv, "", opts, no_opt, NULL, &ex))
		return ex;
	if (optind != argc)
		return cli_usage_error("unexpected argument '%s'", argv[optind]);
	return cli_logout();
}
