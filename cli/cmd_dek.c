// SPDX-License-Identifier: Apache-2.0
/*
 * cmd_dek.c — `sealvm dek generate`.
 *
 * The DEK goes to the file the user names (0600, never overwritten) or to
 * stdout; it never appears in a message.
 */
#include <getopt.h>
#include <string.h>
#include <unistd.h>

#include "sealvm/dek.h"
#include "sealvm/file.h"
#include "sealvm/num.h"

#include "cli.h"

struct dek_args {
	unsigned bytes;
	const char *out;
};

static int dek_opt(int c, const char *arg, void *userdata)
{
	struct dek_args *a = userdata;
	switch (c) {
	case 'b':
		if (sealvm_parse_uint(arg, SEALVM_DEK_MIN_BYTES, SEALVM_DEK_MAX_BYTES, &a->bytes) <
		    0)
			return cli_usage_error(
				"--bytes '%s': give a whole number from %d to %d (its base64 text must be 32 to 512 characters)",
				arg, SEALVM_DEK_MIN_BYTES, SEALVM_DEK_MAX_BYTES);
		return 0;
	case 'o':
		a->out = arg;
		return 0;
	}
	return -1;
}

int cmd_dek_generate(int argc, char **argv)
{
	static const struct option opts[] = {
		{"bytes", required_argument, NULL, 'b'},
		{"out", required_argument, NULL, 'o'},
		{0},
	};
	struct dek_args a = {.bytes = SEALVM_DEK_DEFAULT_BYTES};
	struct sealvm_err err = SEALVM_ERR_INIT;
	_cleanup_secret_ struct sealvm_secret *dek = NULL;
	int ex, r;

	if (cli_parse(argc, argv, "", opts, dek_opt, &a, &ex))
		return ex;
	if (optind != argc)
		return cli_usage_error("unexpected argument '%s'", argv[optind]);

	r = sealvm_dek_generate(a.bytes, &dek, &err);
	if (r < 0)
		return cli_fail(&err, r);
	if (a.out) {
		r = sealvm_write_file_exclusive(a.out, dek->data, dek->len, 0600, &err);
		if (r < 0)
			return cli_fail(&err, r);
		return EXIT_OK;
	}
	r = sealvm_write_all(STDOUT_FILENO, dek->data, dek->len);
	if (r < 0) {
		cli_error("cannot write the DEK to standard output: %s", strerror(-r));
		return EXIT_FAIL;
	}
	return EXIT_OK;
}
