// SPDX-License-Identifier: Apache-2.0
/*
 * main.c — sealvmd: `init` a data dir, `serve` the APIs, `rotate-signing-key`.
 *
 * The daemon holds key material: it refuses core dumps, ignores SIGPIPE and
 * SIGXFSZ (errors come back as EPIPE/EFBIG), and stops on SIGTERM/SIGINT by
 * closing the listener, finishing the requests in flight and exiting 0. The
 * owner API key made by init is written once, to stdout or to a 0600 file the
 * operator names — never to the log.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sealvm_config.h"
#include "sealvm/audit.h"
#include "sealvm/file.h"
#include "sealvm/log.h"
#include "sealvm/seal.h"

#include "sealvmd.h"

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: sealvmd [serve] --data-dir DIR [--config FILE] [--listen ADDR:PORT]\n"
		"               [--s3-listen ADDR:PORT|none] [--services LIST]\n"
		"               [--tls-cert FILE --tls-key FILE] [--insecure-listen]\n"
		"       sealvmd init --data-dir DIR [--owner-key-file FILE] [--region REGION]\n"
		"                    [--owner-name NAME] [--owner-email EMAIL]\n"
		"       sealvmd rotate-signing-key --data-dir DIR\n"
		"\n"
		"  --data-dir DIR        state: master.key and sealvm.db (mode 0700)\n"
		"  --config FILE         JSON settings (docs/configuration.md); flags override it\n"
		"  --listen ADDR:PORT    default 127.0.0.1:8720; non-loopback needs TLS or --insecure-listen\n"
		"  --s3-listen ADDR:PORT the S3 (object storage) listener, default 127.0.0.1:8730;\n"
		"                        'none' serves no S3; TLS and loopback rules as --listen\n"
		"  --services LIST       services to serve (default: all)\n"
		"  --no-access-log       no per-request log lines\n"
		"  --owner-key-file FILE init: write the owner API key there (0600) instead of stdout\n"
		"  --verbose             debug diagnostics\n");
}

enum {
	OPT_DATA_DIR = 0x100,
	OPT_CONFIG,
	OPT_LISTEN,
	OPT_S3_LISTEN,
	OPT_SERVICES,
	OPT_TLS_CERT,
	OPT_TLS_KEY,
	OPT_INSECURE,
	OPT_NO_ACCESS_LOG,
	OPT_OWNER_KEY_FILE,
	OPT_REGION,
	OPT_OWNER_NAME,
	OPT_OWNER_EMAIL,
	OPT_VERBOSE,
	OPT_HELP,
	OPT_VERSION,
};

struct args {
	const char *command;
	const char *config;
	const char *owner_key_file;
	const char *owner_name;
	const char *owner_email;
};

static void replace(char **dst, const char *v)
{
	free(*dst);
	*dst = strdup(v);
}

static int init_data_dir(struct sealvmd_config *cfg, const struct args *a)
{
	struct sealvm_err err = SEALVM_ERR_INIT;
	_cleanup_free_ char *mk = NULL;
	_cleanup_secret_ struct sealvm_secret *master = NULL, *apikey = NULL;
	struct sealvmd d;
	char account[40];
	bool made_dir = false, made_master = false;
	struct stat st;
	int r;

	/* Every refusal that can be known up front comes before anything is created. */
	if (a->owner_key_file && lstat(a->owner_key_file, &st) == 0) {
		fprintf(stderr,
			"sealvmd init: %s already exists; the owner API key is never written over "
			"a file (remove it or name another); nothing changed [OUTPUT_EXISTS]\n",
			a->owner_key_file);
		return 1;
	}
	if (mkdir(cfg->data_dir, 0700) == 0)
		made_dir = true;
	else if (errno != EEXIST) {
		fprintf(stderr, "sealvmd init: cannot create %s: %s\n", cfg->data_dir,
			strerror(errno));
		return 1;
	}
	if (chmod(cfg->data_dir, 0700) < 0) {
		fprintf(stderr, "sealvmd init: cannot chmod %s: %s\n", cfg->data_dir,
			strerror(errno));
		return 1;
	}
	if (asprintf(&mk, "%s/%s", cfg->data_dir, SEALVMD_MASTER_KEY) < 0)
		return 1;
	r = seal_master_create(mk, &master, &err);
	if (r == -EEXIST) {
		fprintf(stderr,
			"sealvmd init: %s is already initialised (it has %s); nothing changed [ALREADY_INITIALISED]\n",
			cfg->data_dir, SEALVMD_MASTER_KEY);
		return 1;
	}
	if (r < 0)
		goto fail;
	made_master = true;
	r = sealvmd_open(&d, cfg, &err);
	if (r < 0)
		goto fail;
	r = iam_bootstrap(d.iam, a->owner_name ? a->owner_name : "owner",
			  a->owner_email ? a->owner_email : "owner@localhost", &apikey, account,
			  &err);
	sealvmd_close(&d);
	if (r < 0)
		goto fail;
	if (a->owner_key_file) {
		r = sealvm_write_file_exclusive(a->owner_key_file, apikey->data, apikey->len, 0600,
						&err);
		if (r < 0)
			goto fail;
	} else {
		r = sealvm_write_all(STDOUT_FILENO, apikey->data, apikey->len);
		if (r >= 0)
			r = sealvm_write_all(STDOUT_FILENO, "\n", 1);
		if (r < 0)
			goto fail;
	}
	log_notice("initialised %s: account %s, region %s", cfg->data_dir, account, cfg->region);
	return 0;
fail:
	fprintf(stderr, "sealvmd init: %s [%s]\n", err.message[0] ? err.message : strerror(-r),
		err.reason[0] ? err.reason : sealvm_err_reason_for(r));
	/* Nothing half-made: an account whose owner key nobody saw is of no use. */
	if (made_master) {
		static const char *const made[] = {SEALVMD_DB "-wal", SEALVMD_DB "-shm",
						   SEALVMD_DB "-journal", SEALVMD_DB,
						   SEALVMD_MASTER_KEY};
		for (size_t i = 0; i < ELEMENTSOF(made); i++) {
			_cleanup_free_ char *p = NULL;
			if (asprintf(&p, "%s/%s", cfg->data_dir, made[i]) >= 0)
				(void)unlink(p);
		}
		_cleanup_free_ char *logdir = NULL;
		if (asprintf(&logdir, "%s/%s", cfg->data_dir, AUDIT_LOG_DIR) >= 0)
			(void)rmdir(logdir); /* empty: init's events are rows */
		if (made_dir)
			(void)rmdir(cfg->data_dir);
		fprintf(stderr, "sealvmd init: removed what this run had created in %s\n",
			cfg->data_dir);
	}
	return 1;
}

/* Starts object storage and its S3 listener (unless s3_listen is "none"). */

/*
 * Both listeners' limits: the access log bounds the lines of requests that
 * fail without credentials as the audit trail bounds their events (the same
 * count per source address and window).
 */
static struct http_limits listener_limits(const struct sealvmd_config *cfg)
{
	struct http_limits lim = cfg->limits;
	lim.unauth_max = cfg->audit_unauthenticated_max;
	lim.unauth_window_s = cfg->audit_window_s;
	return lim;
}
static int start_cos(struct sealvmd *d, struct sealvm_err *err)
{
	const struct sealvmd_config *cfg = d->cfg;
	bool on = cfg->s3_listen && strcmp(cfg->s3_listen, "none") != 0;
	struct cos_deps deps = {
		.db = d->db,
		.rc = d->rc,
		.iam = d->iam,
		.kms = d->kms,
		.chain_key = d->chain_key->data,
		.region = cfg->region,
		.data_dir = cfg->data_dir,
	};
	struct cos_config cc;
	cos_config_defaults(&cc);
	cc.listen = on ? cfg->s3_listen : NULL;
	cc.tls_cert = cfg->tls_cert;
	cc.tls_key = cfg->tls_key;
	cc.insecure_listen = cfg->insecure_listen;
	cc.access_log = cfg->access_log;
	cc.limits = listener_limits(cfg);
	cc.upload_max_age_s = cfg->cos_upload_max_age_s;
	cc.upload_sweep_interval_s = cfg->cos_upload_sweep_interval_s;
	int r = cos_new(&deps, &cc, &d->cos, err);
	if (r < 0)
		return r;
	rc_set_sigv4_cache(d->rc, cos_sigv4_cache(d->cos));
	if (!on)
		return 0;
	if (cfg->s3_public_url) {
		snprintf(d->s3_url, sizeof(d->s3_url), "%s", cfg->s3_public_url);
	} else {
		/* The listen address's host part, with the port actually bound. */
		const char *colon = strrchr(cfg->s3_listen, ':');
		int host_len = colon ? (int)(colon - cfg->s3_listen) : (int)strlen(cfg->s3_listen);
		snprintf(d->s3_url, sizeof(d->s3_url), "%s://%.*s:%u",
			 cfg->tls_cert ? "https" : "http", host_len, cfg->s3_listen,
			 cos_port(d->cos));
	}
	log_notice("S3 on %s (port %u), endpoint %s", cfg->s3_listen, cos_port(d->cos), d->s3_url);
	return 0;
}

static void stop_cos(struct sealvmd *d)
{
	if (d->rc)
		rc_set_sigv4_cache(d->rc, NULL);
	cos_free(d->cos);
	d->cos = NULL;
}

/* Lines the log writer holds before callers wait: ~1 s of access lines at 20k req/s. */
#define LOG_WRITER_BYTES (4u << 20)

static int serve(struct sealvmd_config *cfg)
{
	struct sealvm_err err = SEALVM_ERR_INIT;
	struct http_server *srv = NULL;
	struct sealvmd d;
	sigset_t set;
	int r, sig = 0;

	/* Threads started below inherit the mask: only sigwait here sees the signals. */
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	/* Access lines never wait for the disk on a request's thread. */
	if (sealvm_log_writer_start(LOG_WRITER_BYTES) < 0)
		log_warning("no memory for the log writer: lines are written as they come");

	r = sealvmd_open(&d, cfg, &err);
	if (r < 0)
		goto fail;
	if (!d.audit_log) {
		sealvmd_close(&d);
		r = sealvm_err_set(&err, -EBUSY, "DATA_DIR_BUSY",
				   "another sealvmd serves %s (it holds the event log)",
				   cfg->data_dir);
		goto fail;
	}
	r = start_cos(&d, &err);
	if (r < 0) {
		sealvmd_close(&d);
		goto fail;
	}
	const struct http_service *services[] = {
		sealvmd_health_service(), sealvmd_endpoints_service(&d), iam_identity_http(d.iam),
		iam_access_http(d.iam),	  audit_http(d.audit),		 rc_http(d.rc),
		kms_http(d.kms),
	};
	struct http_service svc[ELEMENTSOF(services)];
	for (size_t i = 0; i < ELEMENTSOF(services); i++)
		svc[i] = *services[i];
	struct http_server_config hc = {
		.listen = cfg->listen,
		.tls_cert = cfg->tls_cert,
		.tls_key = cfg->tls_key,
		.insecure_listen = cfg->insecure_listen,
		.limits = listener_limits(cfg),
		.services = svc,
		.n_services = ELEMENTSOF(svc),
		.access_log = cfg->access_log,
	};
	sealvmd_hooks(&d, &hc.hooks);
	r = http_server_start(&hc, &srv, &err);
	if (r < 0) {
		stop_cos(&d);
		sealvmd_close(&d);
		goto fail;
	}
	struct audit_retention *retention = NULL;
	if (cfg->audit_retention_s > 0) {
		struct audit_retention_config rc = {
			.retention_s = cfg->audit_retention_s,
			.interval_s = cfg->audit_retention_interval_s,
			.export_dir = cfg->audit_export_dir,
		};
		r = audit_retention_new(d.db, d.chain_key->data, &rc, &retention, &err);
		if (r >= 0)
			r = audit_retention_start(retention, &err);
		if (r < 0) {
			audit_retention_free(retention);
			http_server_stop(srv);
			stop_cos(&d);
			sealvmd_close(&d);
			goto fail;
		}
	}
	log_notice("serving on %s (port %u), data dir %s", cfg->listen, http_server_port(srv),
		   cfg->data_dir);
	sigwait(&set, &sig);
	log_notice("signal %d: stopping (finishing requests in flight)", sig);
	http_server_stop(srv);
	stop_cos(&d);
	sealvmd_hooks_drain(&d);
	audit_retention_free(retention);
	sealvmd_close(&d);
	log_notice("stopped");
	sealvm_log_writer_stop();
	return 0;
fail:
	log_error("%s [%s]", err.message[0] ? err.message : strerror(-r),
		  err.reason[0] ? err.reason : sealvm_err_reason_for(r));
	sealvm_log_writer_stop();
	return 1;
}

static int rotate_key(struct sealvmd_config *cfg)
{
	struct sealvm_err err = SEALVM_ERR_INIT;
	struct sealvmd d;
	char kid[64];
	int r = sealvmd_open(&d, cfg, &err);
	if (r >= 0) {
		r = iam_rotate_signing_key(d.iam, kid, &err);
		sealvmd_close(&d);
	}
	if (r < 0) {
		fprintf(stderr, "sealvmd rotate-signing-key: %s [%s]\n", err.message, err.reason);
		return 1;
	}
	printf("new signing key: %s (tokens signed with the old key verify until they expire)\n",
	       kid);
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"data-dir", required_argument, NULL, OPT_DATA_DIR},
		{"config", required_argument, NULL, OPT_CONFIG},
		{"listen", required_argument, NULL, OPT_LISTEN},
		{"s3-listen", required_argument, NULL, OPT_S3_LISTEN},
		{"services", required_argument, NULL, OPT_SERVICES},
		{"tls-cert", required_argument, NULL, OPT_TLS_CERT},
		{"tls-key", required_argument, NULL, OPT_TLS_KEY},
		{"insecure-listen", no_argument, NULL, OPT_INSECURE},
		{"no-access-log", no_argument, NULL, OPT_NO_ACCESS_LOG},
		{"owner-key-file", required_argument, NULL, OPT_OWNER_KEY_FILE},
		{"region", required_argument, NULL, OPT_REGION},
		{"owner-name", required_argument, NULL, OPT_OWNER_NAME},
		{"owner-email", required_argument, NULL, OPT_OWNER_EMAIL},
		{"verbose", no_argument, NULL, OPT_VERBOSE},
		{"help", no_argument, NULL, OPT_HELP},
		{"version", no_argument, NULL, OPT_VERSION},
		{0},
	};
	struct sealvmd_config cfg;
	struct args a = {.command = "serve"};
	/* Flags are applied after the config file: keep them until then. */
	const char *flag_listen = NULL, *flag_s3_listen = NULL, *flag_services = NULL,
		   *flag_cert = NULL, *flag_key = NULL, *flag_region = NULL;
	bool flag_insecure = false, flag_no_log = false;
	int c, rc;

	sealvm_log_set_ident("sealvmd");
	sealvm_log_set_timestamps(true);
	sealvm_log_set_level(SEALVM_LOG_INFO);
	sealvm_secret_harden_process();
	signal(SIGPIPE, SIG_IGN);
	signal(SIGXFSZ, SIG_IGN);

	if (argc > 1 && argv[1][0] != '-') {
		a.command = argv[1];
		argv++;
		argc--;
	}
	sealvmd_config_defaults(&cfg);
	opterr = 0;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case OPT_DATA_DIR:
			replace(&cfg.data_dir, optarg);
			break;
		case OPT_CONFIG:
			a.config = optarg;
			break;
		case OPT_LISTEN:
			flag_listen = optarg;
			break;
		case OPT_S3_LISTEN:
			flag_s3_listen = optarg;
			break;
		case OPT_SERVICES:
			flag_services = optarg;
			break;
		case OPT_TLS_CERT:
			flag_cert = optarg;
			break;
		case OPT_TLS_KEY:
			flag_key = optarg;
			break;
		case OPT_INSECURE:
			flag_insecure = true;
			break;
		case OPT_NO_ACCESS_LOG:
			flag_no_log = true;
			break;
		case OPT_OWNER_KEY_FILE:
			a.owner_key_file = optarg;
			break;
		case OPT_REGION:
			flag_region = optarg;
			break;
		case OPT_OWNER_NAME:
			a.owner_name = optarg;
			break;
		case OPT_OWNER_EMAIL:
			a.owner_email = optarg;
			break;
		case OPT_VERBOSE:
			sealvm_log_set_level(SEALVM_LOG_DEBUG);
			break;
		case OPT_HELP:
			usage(stdout);
			sealvmd_config_done(&cfg);
			return 0;
		case OPT_VERSION:
			printf("sealvmd %s\n", SEALVM_VERSION);
			sealvmd_config_done(&cfg);
			return 0;
		default:
			fprintf(stderr,
				"sealvmd: unknown option or missing value: '%s'; see 'sealvmd --help'\n",
				argv[optind - 1]);
			sealvmd_config_done(&cfg);
			return 2;
		}
	}
	if (optind != argc) {
		fprintf(stderr, "sealvmd: unexpected argument '%s'; see 'sealvmd --help'\n",
			argv[optind]);
		sealvmd_config_done(&cfg);
		return 2;
	}
	if (!cfg.data_dir) {
		fprintf(stderr, "sealvmd: --data-dir DIR is required; see 'sealvmd --help'\n");
		sealvmd_config_done(&cfg);
		return 2;
	}
	if (a.config) {
		struct sealvm_err err = SEALVM_ERR_INIT;
		if (sealvmd_config_load(a.config, &cfg, &err) < 0) {
			fprintf(stderr, "sealvmd: %s [%s]\n", err.message, err.reason);
			sealvmd_config_done(&cfg);
			return 2;
		}
	}
	if (flag_listen)
		replace(&cfg.listen, flag_listen);
	if (flag_s3_listen)
		replace(&cfg.s3_listen, flag_s3_listen);
	if (flag_services)
		replace(&cfg.services, flag_services);
	if (flag_cert)
		replace(&cfg.tls_cert, flag_cert);
	if (flag_key)
		replace(&cfg.tls_key, flag_key);
	if (flag_region)
		replace(&cfg.region, flag_region);
	if (flag_insecure)
		cfg.insecure_listen = true;
	if (flag_no_log)
		cfg.access_log = false;

	if (!strcmp(a.command, "init"))
		rc = init_data_dir(&cfg, &a);
	else if (!strcmp(a.command, "serve"))
		rc = serve(&cfg);
	else if (!strcmp(a.command, "rotate-signing-key"))
		rc = rotate_key(&cfg);
	else {
		fprintf(stderr, "sealvmd: unknown command '%s'; see 'sealvmd --help'\n", a.command);
		rc = 2;
	}
	sealvmd_config_done(&cfg);
	return rc;
}
