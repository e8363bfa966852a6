// SPDX-License-Identifier: Apache-2.0
/*
 * config.c — sealvmd's configuration: defaults, then a JSON file, then flags.
 *
 * The file holds no secret (TLS keys and PINs are named by path); an unknown
 * key is an error that names it, so a typo never silently keeps a default.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "sealvmd.h"

void sealvmd_config_defaults(struct sealvmd_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->listen = strdup("127.0.0.1:8720");
	cfg->services = strdup("all");
	cfg->region = strdup("us-south");
	cfg->token_ttl_s = 3600;
	cfg->access_log = true;
	cfg->audit_unauthenticated_max = 100;
	cfg->audit_window_s = 60;
	/* Handlers that write wait for their group commit: more threads, more writes per fsync. */
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	cfg->limits.threads = (unsigned)(n > 0 ? 32 * n : 64);
}

static int set_str(char **dst, json_t *v, const char *key, const char *path, struct sealvm_err *err)
{
	if (!json_is_string(v))
		return sealvm_err_set(err, -EINVAL, "CONFIG_INVALID", "%s: \"%s\" must be a string",
				      path, key);
	char *s = strdup(json_string_value(v));
	if (!s)
		return -ENOMEM;
	free(*dst);
	*dst = s;
	return 0;
}

static int set_uint(unsigned *dst, json_t *v, const char *key, const char *path,
		    struct sealvm_err *err)
{
	if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 1000000)
		return sealvm_err_set(err, -EINVAL, "CONFIG_INVALID",
				      "%s: \"%s\" must be a whole number from 0 to 1000000", path,
				      key);
	*dst = (unsigned)json_integer_value(v);
	return 0;
}

int sealvmd_config_load(const char *path, struct sealvmd_config *cfg, struct sealvm_err *err)
{
	json_error_t je;
	json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
	const char *key;
	json_t *v;
	int r = 0;

	if (!root)
		return sealvm_err_set(err, -EINVAL, "CONFIG_INVALID", "%s: line %d column %d: %s",
				      path, je.line, je.column, je.text);
	if (!json_is_object(root)) {
		json_decref(root);
		return sealvm_err_set(err, -EINVAL, "CONFIG_INVALID", "%s: must be a JSON object",
				      path);
	}
	json_object_foreach(root, key, v)
	{
		if (!strcmp(key, "listen"))
			r = set_str(&cfg->listen, v, key, path, err);
		else if (!strcmp(key, "tls_cert"))
			r = set_str(&cfg->tls_cert, v, key, path, err);
		else if (!strcmp(key, "tls_key"))
			r = set_str(&cfg->tls_key, v, key, path, err);
		else if (!strcmp(key, "services"))
			r = set_str(&cfg->services, v, key, path, err);
		else if (!strcmp(key, "region"))
			r = set_str(&cfg->region, v, key, path, err);
		else if (!strcmp(key, "insecure_listen") || !strcmp(key, "access_log")) {
			if (!json_is_boolean(v))
				r = sealvm_err_set(err, -EINVAL, "CONFIG_INVALID",
						   "%s: \"%s\" must be true or false", path, key);
			else if (key[0] == 'i')
				cfg->insecure_listen = json_is_true(v);
			else
				cfg->access_log = json_is_true(v);
		} else if (!strcmp(key, "token_ttl_s")) {
			if (!json_is_integer(v) || json_integer_value(v) < 60 ||
			    json_integer_value(v) > 86400)
				r = sealvm_err_set(err, -EINVAL, "CONFIG_INVALID",
						   "%s: \"token_ttl_s\" must be 60 to 86400", path);
			else
				cfg->token_ttl_s = json_integer_value(v);
		} else if (!strcmp(key, "max_connections"))
			r = set_uint(&cfg->limits.max_connections, v, key, path, err);
		else if (!strcmp(key, "max_connections_per_ip"))
			r = set_uint(&cfg->limits.max_per_ip, v, key, path, err);
		else if (!strcmp(key, "connection_timeout_s"))
			r = set_uint(&cfg->limits.connection_timeout_s, v, key, path, err);
		else if (!strcmp(key, "audit_unauthenticated_max"))
			r = set_uint(&cfg->audit_unauthenticated_max, v, key, path, err);
		else if (!strcmp(key, "audit_window_s")) {
			r = set_uint(&cfg->audit_window_s, v, key, path, err);
			if (r >= 0 && cfg->audit_window_s == 0)
				r = sealvm_err_set(err, -EINVAL, "CONFIG_INVALID",
						   "%s: \"audit_window_s\" must be at least 1",
						   path);
		} else if (!strcmp(key, "http_threads"))
			r = set_uint(&cfg->limits.threads, v, key, path, err);
		else
			r = sealvm_err_set(err, -EINVAL, "CONFIG_UNKNOWN_KEY",
					   "%s: unknown setting \"%s\" (see docs/configuration.md)",
					   path, key);
		if (r < 0)
			break;
	}
	json_decref(root);
	return r;
}

void sealvmd_config_done(struct sealvmd_config *cfg)
{
	free(cfg->data_dir);
	free(cfg->listen);
	free(cfg->tls_cert);
	free(cfg->tls_key);
	free(cfg->services);
	free(cfg->region);
	memset(cfg, 0, sizeof(*cfg));
}
