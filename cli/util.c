// SPDX-License-Identifier: Apache-2.0
/*
 * util.c — shared plumbing of the CLI: messages, option and argument parsing,
 * request paths, JSON output.
 *
 * Messages go to stderr and name the command; they are built from error
 * records that never carry secrets.
 */
#include <getopt.h>
#include <stdarg.h>
#include <string.h>

#include <curl/curl.h>

#include "cli.h"

void cli_error(const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "sealvm %s: ", cli_path);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

int cli_fail(const struct sealvm_err *err, int r)
{
	if (sealvm_err_isset(err))
		cli_error("%s [%s]", err->message, err->reason);
	else
		cli_error("failed: %s", strerror(r < 0 ? -r : EIO));
	return EXIT_FAIL;
}

int cli_usage_error(const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "sealvm %s: ", cli_path);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nRun 'sealvm %s --help' for usage.\n", cli_path);
	return EXIT_USAGE;
}

int cli_oom(void)
{
	cli_error("out of memory");
	return EXIT_FAIL;
}

int cli_parse(int argc, char **argv, const char *shortopts, const struct option *longopts,
	      int (*on_opt)(int c, const char *arg, void *userdata), void *userdata, int *ret_exit)
{
	int c;

	optind = 0; /* full reinitialisation, as the GNU getopt documents */
	opterr = 0;
	while ((c = getopt_long(argc, argv, shortopts, longopts, NULL)) != -1) {
		if (c == '?' || c == ':') {
			const char *what = argv[optind - 1];
			/* getopt_long reports a known option without its value as '?' with optopt
			 * set for short options; for long ones the word is a known option name. */
			bool known = false;
			for (const struct option *o = longopts; o->name; o++)
				if (strncmp(what, "--", 2) == 0 && !strcmp(what + 2, o->name))
					known = true;
			if (known || c == ':')
				*ret_exit = cli_usage_error("option '%s' needs a value", what);
			else
				*ret_exit = cli_usage_error("unknown option '%s'", what);
			return 1;
		}
		if (on_opt(c, optarg, userdata) != 0) {
			*ret_exit = EXIT_USAGE;
			return 1;
		}
	}
	return 0;
}

int cli_check_positionals(int argc, char **argv, int npos, const char *posname)
{
	if (argc - optind < npos)
		return cli_usage_error("missing %s", posname);
	if (argc - optind > npos)
		return cli_usage_error("unexpected argument '%s'", argv[optind + npos]);
	return 0;
}

char *cli_id_path(const char *prefix, const char *id, const char *suffix)
{
	char *esc = curl_easy_escape(NULL, id, 0), *p = NULL;

	if (esc && asprintf(&p, "%s/%s%s", prefix, esc, suffix) < 0)
		p = NULL;
	curl_free(esc);
	return p;
}

int cli_print_json(const json_t *v)
{
	char *s = json_dumps(v, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	if (!s)
		return -ENOMEM;
	puts(s);
	free(s);
	return 0;
}

void cli_hex(const unsigned char *in, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[in[i] >> 4];
		out[2 * i + 1] = digits[in[i] & 15];
	}
	out[2 * n] = 0;
}
