/* SPDX-License-Identifier: Apache-2.0 */
/*
 * cli.h — the sealvm command-line tool's internals.
 *
 * Commands form a tree described by tables of {name, run, summary, help}.
 * Exit status: 0 success, 1 failure, 2 usage error. Errors go to stderr as
 * "sealvm <command>: <what failed, on which input, what to do>".
 */
#ifndef SEALVM_CLI_H
#define SEALVM_CLI_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

#include "sealvm/err.h"

enum {
	EXIT_OK = 0,
	EXIT_FAIL = 1,
	EXIT_USAGE = 2,
};

struct cli_command {
	const char *name;
	int (*run)(int argc, char **argv);  /* NULL for a group */
	const struct cli_command *children; /* NULL-name terminated, for a group */
	const char *summary;		    /* one line for listings */
	const char *usage;		    /* the full --help text (after "Usage: sealvm PATH ") */
};

/* The path of the running command, e.g. "image encrypt", for messages. */
extern const char *cli_path;

/* Prints "sealvm PATH: message" to stderr. */
void cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Reports @err (or @r when err is unset) and returns EXIT_FAIL. */
int cli_fail(const struct sealvm_err *err, int r);
/* Prints a usage error with a pointer to --help; returns EXIT_USAGE. */
int cli_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Reports "out of memory"; returns EXIT_FAIL. */
int cli_oom(void);

/*
 * Parses the options of a leaf command with getopt_long. Handles --help (prints
 * the usage and returns 1 with *ret_exit = EXIT_OK) and unknown options
 * (returns 1, *ret_exit = EXIT_USAGE). Calls @on_opt for every other option;
 * a non-zero return from it is a usage error (already reported). Returns 0
 * when parsing finished and the command should run, with optind set.
 */
struct option;
int cli_parse(int argc, char **argv, const char *shortopts, const struct option *longopts,
	      int (*on_opt)(int c, const char *arg, void *userdata), void *userdata, int *ret_exit);

/*
 * After cli_parse: checks that exactly @npos positional arguments follow the options,
 * naming a missing one @posname. Returns 0, or EXIT_USAGE (already reported).
 */
int cli_check_positionals(int argc, char **argv, int npos, const char *posname);

/* "@prefix/@id@suffix" with @id URL-encoded (an ID or alias from argv), or NULL on ENOMEM. */
char *cli_id_path(const char *prefix, const char *id, const char *suffix);

/* Prints a JSON value to stdout, indented, with a newline. Steals nothing. */
int cli_print_json(const json_t *v);

/* Progress bar on stderr. */
struct cli_progress;
struct cli_progress *cli_progress_new(const char *label, bool enabled);
void cli_progress_update(uint64_t done, uint64_t total, void *userdata);
void cli_progress_finish(struct cli_progress *p);

/* Hex of @n bytes into @out (2n+1). */
void cli_hex(const unsigned char *in, size_t n, char *out);

int cmd_dek_generate(int argc, char **argv);
int cmd_image_encrypt(int argc, char **argv);
int cmd_image_decrypt(int argc, char **argv);
int cmd_image_verify(int argc, char **argv);
int cmd_image_inspect(int argc, char **argv);

/* cmd_kms.c: the key service (Key Protect v2 API). */
int cmd_kms_key_create(int argc, char **argv);
int cmd_kms_key_import(int argc, char **argv);
int cmd_kms_key_list(int argc, char **argv);
int cmd_kms_key_show(int argc, char **argv);
int cmd_kms_key_delete(int argc, char **argv);
int cmd_kms_key_restore(int argc, char **argv);
int cmd_kms_key_disable(int argc, char **argv);
int cmd_kms_key_enable(int argc, char **argv);
int cmd_kms_key_rotate(int argc, char **argv);
int cmd_kms_key_versions(int argc, char **argv);
int cmd_kms_wrap(int argc, char **argv);
int cmd_kms_unwrap(int argc, char **argv);
int cmd_kms_rewrap(int argc, char **argv);
int cmd_kms_import_token_create(int argc, char **argv);
int cmd_kms_import_token_show(int argc, char **argv);

#endif
