// SPDX-License-Identifier: Apache-2.0
/*
 * cmd_events.c — `sealvm events list|verify` through the audit API.
 *
 * list pages through GET /v1/events (with --all it follows `next` to the
 * end); verify asks the server to recompute the chain and exits 1 naming the
 * first bad record. Both print the server's JSON with --json.
 */
#include <getopt.h>
#include <string.h>

#include "sealvm/num.h"

#include "cli.h"
#include "client.h"

struct events_args {
	const char *from, *to, *action, *target, *initiator, *outcome, *limit;
	bool all, json;
};

static int events_opt(int c, const char *arg, void *userdata)
{
	struct events_args *a = userdata;
	unsigned n;

	switch (c) {
	case 'f': a->from = arg; return 0;
	case 't': a->to = arg; return 0;
	case 'a': a->action = arg; return 0;
	case 'T': a->target = arg; return 0;
	case 'i': a->initiator = arg; return 0;
	case 'o':
		if (strcmp(arg, "success") && strcmp(arg, "failure"))
			return cli_usage_error("--outcome '%s': give success or failure", arg);
		a->outcome = arg;
		return 0;
	case 'l':
		if (sealvm_parse_uint(arg, 1, 1000, &n) < 0)
			return cli_usage_error("--limit '%s': give a whole number from 1 to 1000", arg);
		a->limit = arg;
		return 0;
	case 'A': a->all = true; return 0;
	case 'j': a->json = true; return 0;
	}
	return -1;
}

static void print_events(const json_t *events)
{
	static const char *const hdr[] = {"TIME", "ACTION", "OUTCOME", "INITIATOR", "TARGET"};
	static const char *const keys[] = {"eventTime", "action", "outcome", "initiator.id",
					   "target.id"};
	cli_print_table(events, hdr, keys, ELEMENTSOF(keys));
}

int cmd_events_list(int argc, char **argv)
{
	static const struct option opts[] = {
		{"from", required_argument, NULL, 'f'},
		{"to", required_argument, NULL, 't'},
		{"action", required_argument, NULL, 'a'},
		{"target", required_argument, NULL, 'T'},
		{"initiator", required_argument, NULL, 'i'},
		{"outcome", required_argument, NULL, 'o'},
		{"limit", required_argument, NULL, 'l'},
		{"all", no_argument, NULL, 'A'},
		{"json", no_argument, NULL, 'j'},
		{0},
	};
	struct events_args a = {0};
	_cleanup_client_ struct cli_client *c = NULL;
	_cleanup_free_ char *base = strdup("/v1/events"), *next = NULL;
	json_t *all = NULL, *page = NULL;
	int ex;

	if (cli_parse(argc, argv, "", opts, events_opt, &a, &ex))
		return ex;
	if (optind != argc)
		return cli_usage_error("unexpected argument '%s'", argv[optind]);
	if (!base || (a.from && cli_query_add(&base, "from", a.from) < 0) ||
	    (a.to && cli_query_add(&base, "to", a.to) < 0) ||
	    (a.action && cli_query_add(&base, "action", a.action) < 0) ||
	    (a.target && cli_query_add(&base, "target", a.target) < 0) ||
	    (a.initiator && cli_query_add(&base, "initiator", a.initiator) < 0) ||
	    (a.outcome && cli_query_add(&base, "outcome", a.outcome) < 0) ||
	    (a.limit && cli_query_add(&base, "limit", a.limit) < 0) || !(all = json_array())) {
		cli_error("out of memory");
		return EXIT_FAIL;
	}
	if ((ex = cli_client_open(&c)) != 0)
		goto out;
	for (;;) {
		_cleanup_free_ char *path = strdup(base);
		const json_t *n;

		if (!path || (next && cli_query_add(&path, "next", next) < 0)) {
			cli_error("out of memory");
			ex = EXIT_FAIL;
			goto out;
		}
		json_decref(page);
		page = NULL;
		if ((ex = cli_api(c, "GET", path, NULL, &page)) != 0)
			goto out;
		json_array_extend(all, json_object_get(page, "events"));
		n = json_object_get(page, "next");
		free(next);
		next = NULL;
		if (json_is_integer(n)) {
			if (asprintf(&next, "%" JSON_INTEGER_FORMAT, json_integer_value(n)) < 0)
				next = NULL;
		} else if (json_is_string(n)) {
			next = strdup(json_string_value(n));
		}
		if (!a.all || !next)
			break;
	}
	if (a.json) {
		/* one page: the server's answer; --all: all events, and next is null */
		if (a.all)
			json_object_set_new(page, "next", json_null());
		json_object_set(page, "events", all);
		cli_print_json(page);
	} else {
		print_events(all);
		if (next)
			fprintf(stderr, "more events follow; use --all, or a narrower --from/--to\n");
	}
	ex = EXIT_OK;
out:
	json_decref(page);
	json_decref(all);
	return ex;
}

int cmd_events_verify(int argc, char **argv)
{
	static const struct option opts[] = {{"json", no_argument, NULL, 'j'}, {0}};
	struct events_args a = {0};
	_cleanup_client_ struct cli_client *c = NULL;
	json_t *j = NULL;
	int ex;

	if (cli_parse(argc, argv, "", opts, events_opt, &a, &ex))
		return ex;
	if (optind != argc)
		return cli_usage_error("unexpected argument '%s'", argv[optind]);
	if ((ex = cli_client_open(&c)) != 0 || (ex = cli_api(c, "GET", "/v1/events/verify", NULL, &j)) != 0)
		return ex;
	bool ok = json_is_true(json_object_get(j, "ok"));
	if (a.json)
		cli_print_json(j);
	else if (ok)
		printf("ok: %" JSON_INTEGER_FORMAT " events, head seq %" JSON_INTEGER_FORMAT " (%s)\n",
		       json_integer_value(json_object_get(j, "events")),
		       json_integer_value(json_object_get(j, "head_seq")),
		       json_string_value(json_object_get(j, "head")) ?: "-");
	if (!ok)
		cli_error("the audit chain does not verify: first bad record seq %" JSON_INTEGER_FORMAT
			  ": %s; keep the data dir for investigation [AUDIT_CHAIN_BROKEN]",
			  json_integer_value(json_object_get(j, "first_bad_seq")),
			  json_string_value(json_object_get(j, "why")) ?: "no reason given");
	json_decref(j);
	return ok ? EXIT_OK : EXIT_FAIL;
}
