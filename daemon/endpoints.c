// SPDX-License-Identifier: Apache-2.0
/*
 * endpoints.c — GET /v2/endpoints: where this deployment's object storage
 * answers, in the shape of IBM COS's public endpoints document
 * ({"service-endpoints": {"regional": {REGION: {"public": {REGION: URL}}}}}),
 * so that clients resolve cos://REGION/BUCKET/OBJECT through it. Public, like
 * IBM's; it names no account and no secret. Our URLs carry their scheme and
 * port (IBM's give host names only).
 */
#include <errno.h>

#include <jansson.h>

#include "sealvm/macro.h"

#include "sealvmd.h"

static int endpoints(struct http_request *req, struct http_response *resp, void *ctx,
		     struct sealvm_err *err)
{
	struct sealvmd *d = ctx;
	const char *region = d->cfg->region;
	json_t *regional = json_object();
	if (!regional)
		return -ENOMEM;
	if (d->s3_url[0] &&
	    json_object_set_new(regional, region,
				json_pack("{s:{s:s}}", "public", region, d->s3_url)) < 0) {
		json_decref(regional);
		return -ENOMEM;
	}
	resp->status = 200;
	resp->body = json_pack("{s:{s:o, s:{}, s:{}}}", "service-endpoints", "regional", regional,
			       "cross-region", "single-site");
	return resp->body ? 0 : -ENOMEM;
}

static const struct http_route endpoints_routes[] = {
	{"GET", "/v2/endpoints", endpoints, NULL, NULL, "cloud-object-storage.endpoints.read", 0,
	 HTTP_ROUTE_PUBLIC},
};

const struct http_service *sealvmd_endpoints_service(struct sealvmd *d)
{
	static struct http_service svc = {
		.name = "endpoints",
		.routes = endpoints_routes,
		.n_routes = ELEMENTSOF(endpoints_routes),
	};
	svc.ctx = d;
	return &svc;
}
