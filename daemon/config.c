// SPDX-License-Identifier: Apache-2.0
/*
 * config.c — sealvmd's configuration: defaults, then a JSON file, then flags.
 *
 * The file holds no secret (TLS keys and PINs are named by path or environment
 * variable; a "pin" key is refused with a message saying so); an unknown
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
	cfg->audit_retention_s = 90u * 24 * 3600; /* Activity Tracker's default */
	cfg->audit_retention_interval_s = 3600;
	/* Handlers that write wait for their group commit: more threads, more writes per fsync. */
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	cfg->limits.threads = (unsigned)(n > 0 ? 32 * n : 64);
	cfg->keystore.backend = strdup("soft");
	kms_config_defaults(&cfg->kms);
	cfg->s3_listen = strdup("127.0.0.1:8730");
	struct cos_config cc;
	cos_config_defaults(&cc);
	cfg->cos_upload_max_age_s = cc.upload_max_age_s;
	cfg->cos_upload_sweep_interval_s = cc.upload_sweep_interval_s;
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

/* "keystore": {"backend": "soft"|"pkcs11", "pkcs11": {module, token_label, pin_file|pin_env,
 * sessions}} */
static int load_keystore(json_t *o, const char *path, struct sealvmd_config *cfg,
			 struct sealvm_err *err)
{
	const char *key;
	json_t *v;
	int r = 0;

	if (!json_is_object(o))
		return sealvm_err_set(err, -EINVAL, "CONFIG_INVALID",
				      "%s: \"keystore\" must be an object", path);
	json_object_foreach(o, key, v)
	{
		if (!strcmp(key, "backend")) {
			r = set_str(&cfg->keystore.backend, v, key, path, err);
			if (r >= 0 && strcmp(cfg->keystore.backend, "soft") != 0 &&
			    strcmp(cfg->keystore.backend, "pkcs11") != 0)
				r = sealvm_err_set(err, -EINVAL, "CONFIG_INVALID",
						   "%s: \"keystore.backend\" must be \"soft\" or "
						   "\"pkcs11\"",
						   path);
		} else if (!strcmp(key, "pkcs11")) {
			const char *k2;
			json_t *v2;
			if (!json_is_object(v))
				return sealvm_err_set(err, -EINVAL, "CONFIG_INVALID",
						      "%s: \"keystore.pkcs11\" must be an object",
						      path);
			json_object_foreach(v, k2, v2)
			{
				if (!strcmp(k2, "module"))
					r = set_str(&cfg->keystore.module, v2, k2, path, err);
				else if (!strcmp(k2, "token_label"))
					r = set_str(&cfg->keystore.token_label, v2, k2, path, err);
				else if (!strcmp(k2, "pin_file"))
					r = set_str(&cfg->keystore.pin_file, v2, k2, path, err);
				else if (!strcmp(k2, "pin_env"))
					r = set_str(&cfg->keystore.pin_env, v2, k2, path, err);
				else if (!strcmp(k2, "sessions"))
					r = set_uint(&cfg->keystore.sessions, v2, k2, path, err);
				else if (!strcmp(k2, "pin"))
					r = sealvm_err_set(
						err, -EINVAL, "CONFIG_PIN_IN_CLEAR",
						"%s: the PIN never goes in the config file: name a file "
						"(\"pin_file\") or an environment variable (\"pin_env\")",
						path);
				else
					r = sealvm_err_set(
						err, -EINVAL, "CONFIG_UNKNOWN_KEY",
						"%s: unknown setting \"keystore.pkcs11.%s\" (see "
						"docs/configuration.md)",
						path, k2);
				if (r < 0)
					return r;
			}
		} else {
			r = sealvm_err_set(err, -EINVAL, "CONFIG_UNKNOWN_KEY",
					   "%s: unknown setting \"keystore.%s\" (see "
					   "docs/configuration.md)",
					   path, key);
		}
		if (r < 0)
			return r;
	}
	if (!strcmp(cfg->keystore.backend, "pkcs11") &&
	    (!cfg->keystore.module || !cfg->keystore.token_label ||
	     (!cfg->keystore.pin_file && !cfg->keystore.pin_env)))
		return sealvm_err_set(err, -EINVAL, "CONFIG_INVALID",
				      "%s: the pkcs11 keystore needs \"keystore.pkcs11\" with "
				      "\"module\", \"token_label\" and \"pin_file\" or \"pin_env\"",
				      path);
	return 0;
}

/* "kms": {"enable_delay_s", "rotate_interval_s", "restore_window_s", "dual_auth_window_s",
 * "purge_delay_s"} */
static int load_kms(json_t *o, const char *path, struct sealvmd_config *cfg, struct sealvm_err *err)
{
	const char *key;
	json_t *v;

	if (!json_is_object(o))
		return sealvm_err_set(err, -EINVAL, "CONFIG_INVALID",
				      "%s: \"kms\" must be an object", path);
	json_object_foreach(o, key, v)
	{
		int64_t *dst = !strcmp(key, "enable_delay_s")	    ? &cfg->kms.enable_delay_s
			       : !strcmp(key, "rotate_interval_s")  ? &cfg->kms.rotate_interval_s
			       : !strcmp(key, "restore_window_s")   ? &cfg->kms.restore_window_s
			       : !strcmp(key, "dual_auth_window_s") ? &cfg->kms.dual_auth_window_s
			       : !strcmp(key, "purge_delay_s")	    ? &cfg->kms.purge_delay_s
			       : !strcmp(key, "import_token_min_s") ? &cfg->kms.import_token_min_s
								    : NULL;
		if (!dst)
			return sealvm_err_set(err, -EINVAL, "CONFIG_UNKNOWN_KEY",
					      "%s: unknown setting \"kms.%s\" (see "
					      "docs/configuration.md)",
					      path, key);
		if (!json_is_integer(v))
			return sealvm_err_set(err, -EINVAL, "CONFIG_INVALID",
					      "%s: \"kms.%s\" must be a whole number of seconds",
					      path, key);
		*dst = json_integer_value(v);
	}
	return kms_config_check(&cfg->kms, err);
}

/* "cos": {"upload_max_age_s", "upload_sweep_interval_s"} */
static int load_cos(json_t *o, const char *path, struct sealvmd_config *cfg, struct sealvm_err *err)
{
	const char *key;
	json_t *v;

	if (!json_is_object(o))
		return sealvm_err_set(err, -EINVAL, "CONFIG_INVALID",
				      "%s: \"cos\" must be an object", path);
	json_object_foreach(o, key, v)
	{
		int64_t *dst = !strcmp(key, "upload_max_age_s") ? &cfg->cos_upload_max_age_s
			       : !strcmp(key, "upload_sweep_interval_s")
				       ? &cfg->cos_upload_sweep_interval_s
				       : NULL;
		int64_t min = dst == &cfg->cos_upload_max_age_s ? 60 : 1;
		if (!dst)
			return sealvm_err_set(err, -EINVAL, "CONFIG_UNKNOWN_KEY",
					      "%s: unknown setting \"cos.%s\" (see "
					      "docs/configuration.md)",
					      path, key);
		if (!json_is_integer(v) || json_integer_value(v) < min ||
		    json_integer_value(v) > 10ll * 366 * 86400)
			return sealvm_err_set(err, -EINVAL, "CONFIG_INVALID",
					      "%s: \"cos.%s\" must be a whole number of seconds "
					      "from %lld to ten years",
					      path, key, (long long)min);
		*dst = json_integer_value(v);
	}
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
		else if (!strcmp(key, "audit_retention_s")) {
			if (!json_is_integer(v) || json_integer_value(v) < 0 ||
			    json_integer_value(v) > 10 * 366 * 24 * 3600)
				r = sealvm_err_set(
					err, -EINVAL, "CONFIG_INVALID",
					"%s: \"audit_retention_s\" must be a whole number "
					"of seconds from 0 (keep every event) to ten years",
					path);
			else
				cfg->audit_retention_s = (unsigned)json_integer_value(v);
		} else if (!strcmp(key, "audit_retention_interval_s")) {
			r = set_uint(&cfg->audit_retention_interval_s, v, key, path, err);
			if (r >= 0 && cfg->audit_retention_interval_s == 0)
				r = sealvm_err_set(err, -EINVAL, "CONFIG_INVALID",
						   "%s: \"audit_retention_interval_s\" must be at "
						   "least 1",
						   path);
		} else if (!strcmp(key, "audit_export_dir"))
			r = set_str(&cfg->audit_export_dir, v, key, path, err);
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
		else if (!strcmp(key, "http_workers"))
			r = set_uint(&cfg->limits.workers, v, key, path, err);
		else if (!strcmp(key, "keystore"))
			r = load_keystore(v, path, cfg, err);
		else if (!strcmp(key, "kms"))
			r = load_kms(v, path, cfg, err);
		else if (!strcmp(key, "cos"))
			r = load_cos(v, path, cfg, err);
		else if (!strcmp(key, "s3_listen"))
			r = set_str(&cfg->s3_listen, v, key, path, err);
		else if (!strcmp(key, "s3_public_url"))
			r = set_str(&cfg->s3_public_url, v, key, path, err);
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
	free(cfg->audit_export_dir);
	free(cfg->s3_listen);
	free(cfg->s3_public_url);
	free(cfg->keystore.backend);
	free(cfg->keystore.module);
	free(cfg->keystore.token_label);
	free(cfg->keystore.pin_file);
	free(cfg->keystore.pin_env);
	memset(cfg, 0, sizeof(*cfg));
}
