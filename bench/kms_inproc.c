// SPDX-License-Identifier: Apache-2.0
/*
 * kms_inproc.c — the key service's wrap and unwrap done in-process, for bench/kms.
 *
 * Opens a data dir the way sealvmd does (its own sealvmd_open: master key, database,
 * keystore, services) and calls the key service's C interface from THREADS threads for
 * SECONDS seconds, so that bench/kms can set HTTP wrap/unwrap beside the same operation
 * without HTTP:
 *   wrap         kms_wrap as the block-storage service (authorization + audit event)
 *   unwrap       kms_unwrap as the block-storage service (authorization + audit event)
 *   unwrap-bare  kms_unwrap_unaudited: key lookup, state check, keystore decrypt only
 * Prints one line: "OP ops_per_s p99_ms ops errors". The data dir must not be in use by a
 * running sealvmd. Never prints a DEK.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sealvm/dek.h"
#include "sealvm/iam.h"
#include "sealvm/kms.h"
#include "sealvm/log.h"
#include "sealvm/num.h"
#include "sealvm/secret.h"

#include "sealvmd.h"

/* Latency buckets: 1 µs wide below 1 ms, 1 ms wide from 1 ms to 10 s. */
#define US_BUCKETS 1000
#define MS_BUCKETS 10000
#define NBUCKETS (US_BUCKETS + MS_BUCKETS)

enum op { OP_WRAP, OP_UNWRAP, OP_UNWRAP_BARE };

struct job {
	struct sealvmd *d;
	enum op op;
	const char *account, *instance, *key, *ciphertext;
	const struct sealvm_secret *dek;
	struct sealvm_principal principal;
	atomic_bool stop;
};

struct worker {
	pthread_t thread;
	struct job *job;
	uint64_t ops, errors;
	uint64_t hist[NBUCKETS];
	char first_error[SEALVM_ERR_MESSAGE_MAX + SEALVM_ERR_REASON_MAX + 4];
};

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int one(struct job *j, struct sealvm_err *err)
{
	int r;

	switch (j->op) {
	case OP_WRAP: {
		struct kms_wrap_result w = {0};
		r = kms_wrap(j->d->kms, &j->principal, j->instance, j->key, j->dek, NULL, 0, &w,
			     err);
		kms_wrap_result_done(&w);
		return r;
	}
	case OP_UNWRAP: {
		struct kms_unwrap_result u = {0};
		r = kms_unwrap(j->d->kms, &j->principal, j->instance, j->key, j->ciphertext, NULL,
			       0, &u, err);
		kms_unwrap_result_done(&u);
		return r;
	}
	case OP_UNWRAP_BARE: {
		struct kms_unwrap_result u = {0};
		r = kms_unwrap_unaudited(j->d->kms, j->account, j->instance, j->key, j->ciphertext,
					 NULL, 0, &u, err);
		kms_unwrap_result_done(&u);
		return r;
	}
	}
	return -EINVAL;
}

static void *run(void *arg)
{
	struct worker *w = arg;

	while (!atomic_load(&w->job->stop)) {
		struct sealvm_err err = SEALVM_ERR_INIT;
		uint64_t t0 = now_ns();
		int r = one(w->job, &err);
		uint64_t us = (now_ns() - t0) / 1000;

		if (r < 0) {
			if (w->errors++ == 0)
				snprintf(w->first_error, sizeof(w->first_error), "%s [%s]",
					 err.message, err.reason);
			continue;
		}
		w->ops++;
		if (us < US_BUCKETS)
			w->hist[us]++;
		else if (us / 1000 < MS_BUCKETS)
			w->hist[US_BUCKETS + us / 1000]++;
		else
			w->hist[NBUCKETS - 1]++;
	}
	return NULL;
}

/* Reads a one-line text file (the ciphertext), without its trailing newline. */
static char *read_line(const char *path)
{
	FILE *f = fopen(path, "re");
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;

	if (!f)
		return NULL;
	n = getline(&line, &cap, f);
	fclose(f);
	if (n <= 0) {
		free(line);
		return NULL;
	}
	while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
		line[--n] = 0;
	return line;
}

static void usage(void)
{
	fprintf(stderr, "usage: kms_inproc CONFIG DATA_DIR ACCOUNT INSTANCE KEY CIPHERTEXT_FILE "
			"wrap|unwrap|unwrap-bare SECONDS THREADS\n");
	exit(2);
}

int main(int argc, char **argv)
{
	struct sealvmd_config cfg;
	struct sealvmd d;
	struct sealvm_err err = SEALVM_ERR_INIT;
	_cleanup_secret_ struct sealvm_secret *dek = NULL;
	_cleanup_free_ char *ct = NULL;
	struct job job = {0};
	struct worker *workers;
	unsigned seconds, nthreads;
	uint64_t ops = 0, errors = 0, t0, t1, rank, seen = 0;
	double p99 = 0;
	int r;

	if (argc != 10)
		usage();
	if (!strcmp(argv[7], "wrap"))
		job.op = OP_WRAP;
	else if (!strcmp(argv[7], "unwrap"))
		job.op = OP_UNWRAP;
	else if (!strcmp(argv[7], "unwrap-bare"))
		job.op = OP_UNWRAP_BARE;
	else
		usage();
	if (sealvm_parse_uint(argv[8], 1, 3600, &seconds) < 0 ||
	    sealvm_parse_uint(argv[9], 1, 1024, &nthreads) < 0)
		usage();
	sealvm_log_set_ident("kms_inproc");
	sealvm_secret_harden_process();

	sealvmd_config_defaults(&cfg);
	if (sealvmd_config_load(argv[1], &cfg, &err) < 0) {
		fprintf(stderr, "kms_inproc: %s [%s]\n", err.message, err.reason);
		return 1;
	}
	free(cfg.data_dir);
	cfg.data_dir = strdup(argv[2]);
	if (!cfg.data_dir || !(ct = read_line(argv[6]))) {
		fprintf(stderr, "kms_inproc: cannot read %s\n", argv[6]);
		return 1;
	}
	r = sealvmd_open(&d, &cfg, &err);
	if (r < 0) {
		fprintf(stderr, "kms_inproc: %s [%s]\n", err.message, err.reason);
		return 1;
	}
	if (!d.kms) {
		fprintf(stderr, "kms_inproc: the data dir opened without a key service\n");
		sealvmd_close(&d);
		return 1;
	}
	r = sealvm_dek_generate(SEALVM_DEK_DEFAULT_BYTES, &dek, &err);
	if (r < 0) {
		fprintf(stderr, "kms_inproc: %s\n", err.message);
		return 1;
	}
	job.d = &d;
	job.account = argv[3];
	job.instance = argv[4];
	job.key = argv[5];
	job.ciphertext = ct;
	job.dek = dek;
	iam_service_principal("block-storage", job.account, &job.principal);

	workers = calloc(nthreads, sizeof(*workers));
	if (!workers)
		return 1;
	t0 = now_ns();
	for (unsigned i = 0; i < nthreads; i++) {
		workers[i].job = &job;
		if (pthread_create(&workers[i].thread, NULL, run, &workers[i]) != 0) {
			fprintf(stderr, "kms_inproc: cannot start thread %u\n", i);
			atomic_store(&job.stop, true);
			nthreads = i;
			break;
		}
	}
	struct timespec nap = {.tv_sec = seconds};
	while (nanosleep(&nap, &nap) < 0 && errno == EINTR)
		;
	atomic_store(&job.stop, true);
	for (unsigned i = 0; i < nthreads; i++)
		pthread_join(workers[i].thread, NULL);
	t1 = now_ns();

	for (unsigned i = 0; i < nthreads; i++) {
		ops += workers[i].ops;
		errors += workers[i].errors;
		if (workers[i].errors && errors == workers[i].errors)
			fprintf(stderr, "kms_inproc: %s: first error: %s\n", argv[7],
				workers[i].first_error);
	}
	rank = ops -
	       ops / 100; /* the 99th percentile: the op at this rank, counted from the fastest */
	for (size_t b = 0; b < NBUCKETS && ops; b++) {
		uint64_t n = 0;
		for (unsigned i = 0; i < nthreads; i++)
			n += workers[i].hist[b];
		seen += n;
		if (seen >= rank) {
			p99 = b < US_BUCKETS ? (double)(b + 1) / 1000.0
					     : (double)(b - US_BUCKETS + 1);
			break;
		}
	}
	printf("%s %.0f %.2f %" PRIu64 " %" PRIu64 "\n", argv[7],
	       (double)ops * 1e9 / (double)(t1 - t0), p99, ops, errors);
	free(workers);
	sealvmd_close(&d);
	sealvmd_config_done(&cfg);
	return errors && !ops ? 1 : 0;
}
