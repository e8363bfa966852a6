// SPDX-License-Identifier: Apache-2.0
/*
 * cmd_events.c — `sealvm events list|verify` through the audit API.
 *
 * list pages through GET /v1/events (with --all it follows `next` to the
 * end); verify asks the server to recompute the chain and exits 1 naming the
 * first bad record. Both print the server's JSON with --json.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "sealvm/audit.h"
#include "sealvm/file.h"
#include "sealvm/seal.h"

#include "sealvm/num.h"

#include "cli.h"
#include "client.h"

struct events_args {
	const char *from, *to, *action, *target, *initiator, *outcome, *limit;
	const char *checkpoint, *out, *data_dir;
	bool all, json;
};

static int events_opt(int c, const char *arg, void *userdata)
{
	struct events_args *a = userdata;
	unsigned n;

	switch (c) {
	case 'f':
		a->from = arg;
		return 0;
	case 't':
		a->to = arg;
		return 0;
	case 'a':
		a->action = arg;
		return 0;
	case 'T':
		a->target = arg;
		return 0;
	case 'i':
		a->initiator = arg;
		return 0;
	case 'o':
		if (strcmp(arg, "success") && strcmp(arg, "failure"))
			return cli_usage_error("--outcome '%s': give success or failure", arg);
		a->outcome = arg;
		return 0;
	case 'l':
		if (sealvm_parse_uint(arg, 1, 1000, &n) < 0)
			return cli_usage_error("--limit '%s': give a whole number from 1 to 1000",
					       arg);
		a->limit = arg;
		return 0;
	case 'A':
		a->all = true;
		return 0;
	case 'j':
		a->json = true;
		return 0;
	case 'c':
		a->checkpoint = arg;
		return 0;
	case 'O':
		a->out = arg;
		return 0;
	case 'D':
		a->data_dir = arg;
		return 0;
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
			fprintf(stderr,
				"more events follow; use --all, or a narrower --from/--to\n");
	}
	ex = EXIT_OK;
out:
	json_decref(page);
	json_decref(all);
	return ex;
}

/* Reads a checkpoint file: one JWS (base64url and dots), a trailing newline allowed. */
static int read_checkpoint(const char *path, char *buf, size_t n)
{
	FILE *f = fopen(path, "re");
	if (!f) {
		cli_error("cannot open checkpoint file %s: %s", path, strerror(errno));
		return EXIT_FAIL;
	}
	size_t len = fread(buf, 1, n - 1, f);
	bool more = fgetc(f) != EOF;
	fclose(f);
	buf[len] = 0;
	while (len && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
		buf[--len] = 0;
	for (size_t i = 0; i < len; i++) {
		char ch = buf[i];
		if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
		      (ch >= '0' && ch <= '9') || ch == '-' || ch == '_' || ch == '.'))
			more = true;
	}
	if (more || len == 0) {
		cli_error(
			"%s is not a checkpoint (one line made by 'sealvm events checkpoint') [INVALID_CHECKPOINT]",
			path);
		return EXIT_FAIL;
	}
	return EXIT_OK;
}

/* The data dir's database, read-only (WAL: the daemon may be running or stopped); 0 or an error
 * said. */
static int open_data_db(const char *data_dir, sqlite3 **ret)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/sealvm.db", data_dir);
	int r = sqlite3_open_v2(path, ret, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOFOLLOW, NULL);
	if (r != SQLITE_OK) {
		cli_error("cannot open %s: %s", path,
			  *ret ? sqlite3_errmsg(*ret) : "out of memory");
		sqlite3_close(*ret);
		*ret = NULL;
		return EXIT_FAIL;
	}
	sqlite3_busy_timeout(*ret, 5000);
	return 0;
}

/*
 * Offline: the chain key is derived from the data dir's master key and the
 * database is opened read-only (the daemon may be running or stopped).
 */
static int verify_offline(const struct events_args *a)
{
	struct sealvm_err err = SEALVM_ERR_INIT;
	_cleanup_secret_ struct sealvm_secret *master = NULL, *key = NULL;
	struct audit_verify_result res;
	char path[4096];
	sqlite3 *db = NULL;
	int r;

	snprintf(path, sizeof(path), "%s/master.key", a->data_dir);
	r = seal_master_load(path, &master, &err);
	if (r < 0)
		return cli_fail(&err, r);
	r = seal_derive(master, "audit-chain", &key);
	if (r < 0)
		return cli_fail(NULL, r);
	if (open_data_db(a->data_dir, &db) != 0)
		return EXIT_FAIL;
	r = audit_verify(db, key->data, 0, NULL, &res, &err);
	sqlite3_close(db);
	if (r < 0 && r != -EBADMSG)
		return cli_fail(&err, r);
	if (a->json) {
		json_t *j = json_pack("{s:b, s:I, s:I}", "ok", res.ok, "events",
				      (json_int_t)res.events, "head_seq", (json_int_t)res.head_seq);
		if (j && res.pruned_through)
			json_object_set_new(j, "pruned_through", json_integer(res.pruned_through));
		if (j && !res.ok) {
			json_object_set_new(j, "first_bad_seq", json_integer(res.first_bad_seq));
			json_object_set_new(j, "why", json_string(res.why));
		}
		if (j)
			cli_print_json(j);
		json_decref(j);
	} else if (res.ok) {
		printf("ok: %lld events, head seq %lld (verified offline from %s)\n",
		       (long long)res.events, (long long)res.head_seq, a->data_dir);
		if (res.pruned_through)
			printf("events 1..%lld were removed by retention; a recorded prune event "
			       "vouches for it\n",
			       (long long)res.pruned_through);
	}
	if (!res.ok) {
		cli_error(
			"the audit chain in %s does not verify: first bad record seq %lld: %s [AUDIT_CHAIN_BROKEN]",
			a->data_dir, (long long)res.first_bad_seq, res.why);
		return EXIT_FAIL;
	}
	return EXIT_OK;
}

int cmd_events_verify(int argc, char **argv)
{
	static const struct option opts[] = {{"json", no_argument, NULL, 'j'},
					     {"checkpoint", required_argument, NULL, 'c'},
					     {"data-dir", required_argument, NULL, 'D'},
					     {0}};
	struct events_args a = {0};
	_cleanup_client_ struct cli_client *c = NULL;
	json_t *j = NULL;
	char path[10240] = "/v1/events/verify", cp[8192];
	int ex;

	if (cli_parse(argc, argv, "", opts, events_opt, &a, &ex))
		return ex;
	if (optind != argc)
		return cli_usage_error("unexpected argument '%s'", argv[optind]);
	if (a.data_dir && a.checkpoint)
		return cli_usage_error(
			"--checkpoint is verified through the API (it needs the server's public keys); drop --data-dir");
	if (a.data_dir)
		return verify_offline(&a);
	if (a.checkpoint) {
		if ((ex = read_checkpoint(a.checkpoint, cp, sizeof(cp))) != 0)
			return ex;
		snprintf(path, sizeof(path), "/v1/events/verify?checkpoint=%s", cp);
	}
	if ((ex = cli_client_open(&c)) != 0 || (ex = cli_api(c, "GET", path, NULL, &j)) != 0)
		return ex;
	bool ok = json_is_true(json_object_get(j, "ok"));
	if (a.json)
		cli_print_json(j);
	else if (ok)
		printf("ok: %" JSON_INTEGER_FORMAT " events, head seq %" JSON_INTEGER_FORMAT
		       " (%s)%s\n",
		       json_integer_value(json_object_get(j, "events")),
		       json_integer_value(json_object_get(j, "head_seq")),
		       json_string_value(json_object_get(j, "head")) ?: "-",
		       a.checkpoint ? "; the chain passes through the checkpoint" : "");
	if (ok && !a.json && json_integer_value(json_object_get(j, "pruned_through")) > 0)
		printf("events 1..%" JSON_INTEGER_FORMAT " were removed by retention; a recorded "
		       "prune event vouches for it\n",
		       json_integer_value(json_object_get(j, "pruned_through")));
	if (!ok)
		cli_error(
			"the audit chain does not verify%s: first bad record seq %" JSON_INTEGER_FORMAT
			": %s; keep the data dir for investigation [AUDIT_CHAIN_BROKEN]",
			a.checkpoint ? " against the checkpoint" : "",
			json_integer_value(json_object_get(j, "first_bad_seq")),
			json_string_value(json_object_get(j, "why")) ?: "no reason given");
	json_decref(j);
	return ok ? EXIT_OK : EXIT_FAIL;
}

static int export_line(void *ctx, const char *line, size_t n)
{
	(void)ctx;
	return fwrite(line, 1, n, stdout) == n ? 0 : -EIO;
}

/* Offline, like verify --data-dir: every event of the data dir as JSON lines. */
int cmd_events_export(int argc, char **argv)
{
	static const struct option opts[] = {{"data-dir", required_argument, NULL, 'D'}, {0}};
	struct events_args a = {0};
	struct sealvm_err err = SEALVM_ERR_INIT;
	sqlite3 *db = NULL;
	int ex;

	if (cli_parse(argc, argv, "", opts, events_opt, &a, &ex))
		return ex;
	if (optind != argc)
		return cli_usage_error("unexpected argument '%s'", argv[optind]);
	if (!a.data_dir)
		return cli_usage_error("give --data-dir DIR (export reads the data dir itself)");
	if (open_data_db(a.data_dir, &db) != 0)
		return EXIT_FAIL;
	int r = audit_export(db, export_line, NULL, &err);
	sqlite3_close(db);
	if (r < 0)
		return cli_fail(&err, r);
	if (fflush(stdout) != 0) {
		cli_error("cannot write the events: %s", strerror(errno));
		return EXIT_FAIL;
	}
	return EXIT_OK;
}

int cmd_events_checkpoint(int argc, char **argv)
{
	static const struct option opts[] = {
		{"json", no_argument, NULL, 'j'}, {"out", required_argument, NULL, 'O'}, {0}};
	struct events_args a = {0};
	_cleanup_client_ struct cli_client *c = NULL;
	struct sealvm_err err = SEALVM_ERR_INIT;
	json_t *j = NULL;
	int ex;

	if (cli_parse(argc, argv, "", opts, events_opt, &a, &ex))
		return ex;
	if (optind != argc)
		return cli_usage_error("unexpected argument '%s'", argv[optind]);
	if ((ex = cli_client_open(&c)) != 0 ||
	    (ex = cli_api(c, "GET", "/v1/events/checkpoint", NULL, &j)) != 0)
		return ex;
	const char *jws = json_string_value(json_object_get(j, "checkpoint"));
	if (!jws) {
		json_decref(j);
		cli_error("the server sent no checkpoint");
		return EXIT_FAIL;
	}
	if (a.json) {
		cli_print_json(j);
	} else if (a.out) {
		char line[8200];
		int n = snprintf(line, sizeof(line), "%s\n", jws);
		if (n < 0 || (size_t)n >= sizeof(line) ||
		    sealvm_write_file_exclusive(a.out, line, (size_t)n, 0644, &err) < 0) {
			json_decref(j);
			return cli_fail(&err, -EIO);
		}
		fprintf(stderr,
			"checkpoint of seq %" JSON_INTEGER_FORMAT
			" written to %s: keep it off this machine\n",
			json_integer_value(json_object_get(j, "seq")), a.out);
	} else {
		printf("%s\n", jws);
	}
	json_decref(j);
	return EXIT_OK;
}
