// SPDX-License-Identifier: Apache-2.0
/*
 * cos.c — the object storage service's lifetime: configuration, start
 * (data directories and crash recovery, the upload sweeper, the S3 listener)
 * and stop.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sealvm/log.h"
#include "sealvm/macro.h"
#include "sealvm/sigv4.h"

#include "cos_internal.h"

void cos_config_defaults(struct cos_config *cfg)
{
	*cfg = (struct cos_config){
		.access_log = true,
		.upload_max_age_s = 7 * 86400,
		.upload_sweep_interval_s = 3600,
	};
}

int cos_new(const struct cos_deps *deps, const struct cos_config *cfg, struct cos **ret,
	    struct sealvm_err *err)
{
	if (!deps || !deps->db || !deps->rc || !deps->iam || !deps->chain_key || !deps->region ||
	    !deps->data_dir || !cfg || !ret)
		return sealvm_err_set(err, -EINVAL, "CONFIG_INVALID",
				      "object storage needs a database, resource controller, "
				      "identity service, audit chain key, region and data dir");
	if (cfg->upload_max_age_s < 60 || cfg->upload_sweep_interval_s < 1)
		return sealvm_err_set(err, -EINVAL, "CONFIG_INVALID",
				      "cos: upload_max_age_s must be at least 60 and "
				      "upload_sweep_interval_s at least 1");
	struct cos *c = calloc(1, sizeof(*c));
	if (!c)
		return sealvm_err_set(err, -ENOMEM, "NO_MEMORY", "out of memory");
	c->deps = *deps;
	c->cfg = *cfg;
	c->root_fd = -1;
	int r = -ENOMEM;
	if (asprintf(&c->root, "%s/cos", deps->data_dir) < 0) {
		c->root = NULL;
		sealvm_err_set(err, r, "NO_MEMORY", "out of memory");
		goto fail;
	}
	r = sigv4_key_cache_new(1024, &c->sigv4_cache);
	if (r < 0) {
		sealvm_err_set(err, r, "NO_MEMORY", "out of memory");
		goto fail;
	}
	r = cos_fs_open(c, err);
	if (r < 0)
		goto fail;
	r = cos_sweeper_start(c, err);
	if (r < 0)
		goto fail;
	if (cfg->listen) {
		r = cos_front_start(c, err);
		if (r < 0)
			goto fail;
	}
	*ret = c;
	return 0;
fail:
	cos_free(c);
	return r;
}

void cos_free(struct cos *c)
{
	if (!c)
		return;
	cos_front_stop(c);
	cos_sweeper_stop(c);
	cos_fs_close(c);
	sigv4_key_cache_free(c->sigv4_cache);
	free(c->root);
	free(c);
}

uint16_t cos_port(const struct cos *c)
{
	return c && c->front ? cos_front_port(c) : 0;
}

struct sigv4_key_cache *cos_sigv4_cache(struct cos *c)
{
	return c ? c->sigv4_cache : NULL;
}
