// SPDX-License-Identifier: Apache-2.0
/*
 * s3_client_parse.c — what the S3 client reads: cos:// URIs, the endpoints
 * table (IBM's endpoints JSON), and the answers of an S3 server (a small XML
 * reader that finds elements by name and decodes their text).
 *
 * The XML reader is not a general parser: it finds <Name>...</Name> in the
 * answer body, bounded by the body's length, never recursing, and decodes the
 * five predefined entities and character references. Answers come from the
 * server we talk to, but are still read as untrusted bytes: every search is
 * bounded and nothing is copied without a length.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <curl/curl.h>
#include <jansson.h>

#include "sealvm/s3client.h"

#include "s3_client_internal.h"

#define ENDPOINTS_MAX (1u << 20)

/* ---- XML ---------------------------------------------------------------------------------- */

static const char *find_mem(const char *p, const char *end, const char *needle, size_t n)
{
	if (end < p || (size_t)(end - p) < n)
		return NULL;
	return memmem(p, (size_t)(end - p), needle, n);
}

int s3c_xml_find(const char **p, const char *end, const char *name, const char **ret_in,
		 const char **ret_in_end)
{
	size_t nl = strlen(name);
	const char *s = *p;

	while ((s = find_mem(s, end, "<", 1))) {
		const char *t = s + 1, *gt;
		if ((size_t)(end - t) < nl || memcmp(t, name, nl) != 0) {
			s = t;
			continue;
		}
		t += nl;
		if (t >= end || !(*t == '>' || *t == '/' || *t == ' ' || *t == '\t' || *t == '\r' ||
				  *t == '\n')) {
			s = t;
			continue;
		}
		gt = find_mem(t, end, ">", 1);
		if (!gt)
			return 0;
		if (gt[-1] == '/') { /* <Name/> */
			*ret_in = *ret_in_end = gt + 1;
			*p = gt + 1;
			return 1;
		}
		/* the matching close: these answers never nest an element in one of its name */
		char close[80];
		int cl = snprintf(close, sizeof(close), "</%s>", name);
		if (cl < 0 || (size_t)cl >= sizeof(close))
			return 0;
		const char *ce = find_mem(gt + 1, end, close, (size_t)cl);
		if (!ce)
			return 0;
		*ret_in = gt + 1;
		*ret_in_end = ce;
		*p = ce + cl;
		return 1;
	}
	return 0;
}

static void put_utf8(char *out, size_t *o, unsigned long cp)
{
	if (cp < 0x80) {
		out[(*o)++] = (char)cp;
	} else if (cp < 0x800) {
		out[(*o)++] = (char)(0xc0 | (cp >> 6));
		out[(*o)++] = (char)(0x80 | (cp & 0x3f));
	} else if (cp < 0x10000) {
		out[(*o)++] = (char)(0xe0 | (cp >> 12));
		out[(*o)++] = (char)(0x80 | ((cp >> 6) & 0x3f));
		out[(*o)++] = (char)(0x80 | (cp & 0x3f));
	} else {
		out[(*o)++] = (char)(0xf0 | (cp >> 18));
		out[(*o)++] = (char)(0x80 | ((cp >> 12) & 0x3f));
		out[(*o)++] = (char)(0x80 | ((cp >> 6) & 0x3f));
		out[(*o)++] = (char)(0x80 | (cp & 0x3f));
	}
}

char *s3c_xml_decode(const char *p, size_t n)
{
	static const struct {
		const char *ent;
		char ch;
	} ents[] = {
		{"&amp;", '&'}, {"&lt;", '<'}, {"&gt;", '>'}, {"&quot;", '"'}, {"&apos;", '\''}};
	char *out = malloc(n + 1);
	size_t o = 0, i = 0;

	if (!out)
		return NULL;
	while (i < n) {
		if (p[i] != '&') {
			out[o++] = p[i++];
			continue;
		}
		bool done = false;
		for (size_t e = 0; e < ELEMENTSOF(ents) && !done; e++) {
			size_t el = strlen(ents[e].ent);
			if (n - i >= el && !memcmp(p + i, ents[e].ent, el)) {
				out[o++] = ents[e].ch;
				i += el;
				done = true;
			}
		}
		if (done)
			continue;
		if (n - i >= 4 && p[i + 1] == '#') {
			size_t j = i + 2;
			bool hex = j < n && (p[j] == 'x' || p[j] == 'X');
			unsigned long cp = 0;
			size_t digits = 0;
			if (hex)
				j++;
			for (; j < n && p[j] != ';' && digits < 8; j++, digits++) {
				char ch = p[j];
				int v = ch >= '0' && ch <= '9'		? ch - '0'
					: hex && ch >= 'a' && ch <= 'f' ? ch - 'a' + 10
					: hex && ch >= 'A' && ch <= 'F' ? ch - 'A' + 10
									: -1;
				if (v < 0)
					break;
				cp = cp * (hex ? 16 : 10) + (unsigned long)v;
			}
			/* at most 4 UTF-8 bytes for a reference of at least 4 characters */
			if (digits > 0 && j < n && p[j] == ';' && cp > 0 && cp <= 0x10ffff &&
			    !(cp >= 0xd800 && cp <= 0xdfff)) {
				put_utf8(out, &o, cp);
				i = j + 1;
				continue;
			}
		}
		out[o++] = p[i++]; /* a lone '&': kept as it is */
	}
	out[o] = 0;
	return out;
}

char *s3c_xml_text(const char *p, const char *end, const char *name)
{
	const char *in, *ie;

	if (!s3c_xml_find(&p, end, name, &in, &ie))
		return NULL;
	return s3c_xml_decode(in, (size_t)(ie - in));
}

/* ---- cos:// URIs --------------------------------------------------------------------------- */

void s3c_uri_done(struct s3c_uri *u)
{
	free(u->key);
	u->key = NULL;
}

int s3c_uri_parse(const char *uri, struct s3c_uri *ret, struct sealvm_err *err)
{
	struct s3c_uri u = {0};
	const char *p, *slash;
	size_t n;

	if (!uri || strncmp(uri, "cos://", 6) != 0)
		return sealvm_err_set(err, -EINVAL, "BAD_URI",
				      "'%s' is not a cos:// URI: give cos://REGION/BUCKET/KEY",
				      uri ? uri : "");
	p = uri + 6;
	slash = strchr(p, '/');
	n = slash ? (size_t)(slash - p) : strlen(p);
	if (n == 0 || n >= sizeof(u.region))
		return sealvm_err_set(err, -EINVAL, "BAD_URI",
				      "'%s' names no region: give cos://REGION/BUCKET/KEY", uri);
	for (size_t i = 0; i < n; i++)
		if (!((p[i] >= 'a' && p[i] <= 'z') || (p[i] >= '0' && p[i] <= '9') || p[i] == '-'))
			return sealvm_err_set(err, -EINVAL, "BAD_URI",
					      "the region of '%s' may hold only a-z, 0-9 and '-'",
					      uri);
	memcpy(u.region, p, n);
	if (!slash)
		return sealvm_err_set(err, -EINVAL, "BAD_URI",
				      "'%s' names no bucket: give cos://REGION/BUCKET/KEY", uri);
	p = slash + 1;
	slash = strchr(p, '/');
	n = slash ? (size_t)(slash - p) : strlen(p);
	if (n < 3 || n > 63)
		return sealvm_err_set(err, -EINVAL, "BAD_URI",
				      "the bucket of '%s' must have 3 to 63 characters", uri);
	for (size_t i = 0; i < n; i++)
		if (!((p[i] >= 'a' && p[i] <= 'z') || (p[i] >= '0' && p[i] <= '9') || p[i] == '-' ||
		      p[i] == '.'))
			return sealvm_err_set(err, -EINVAL, "BAD_URI",
					      "the bucket of '%s' may hold only a-z, 0-9, '.' and "
					      "'-'",
					      uri);
	memcpy(u.bucket, p, n);
	p = slash ? slash + 1 : p + n;
	n = strlen(p);
	if (n > 1024)
		return sealvm_err_set(err, -EINVAL, "BAD_URI",
				      "the key of '%s' is longer than 1024 bytes", uri);
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)p[i] < 0x20 || p[i] == 0x7f)
			return sealvm_err_set(err, -EINVAL, "BAD_URI",
					      "the key of the URI holds a control character");
	if (!(u.key = strdup(p)))
		return -ENOMEM;
	*ret = u;
	return 0;
}

/* ---- the endpoints table ------------------------------------------------------------------- */

/* service-endpoints.regional (borrowed), or NULL with @err set. */
static json_t *regional_of(json_t *j, struct sealvm_err *err)
{
	json_t *reg = json_object_get(json_object_get(j, "service-endpoints"), "regional");

	if (!json_is_object(reg)) {
		sealvm_err_set(err, -EINVAL, "BAD_ANSWER",
			       "the endpoints document has no service-endpoints.regional");
		return NULL;
	}
	return reg;
}

int s3c_endpoints_regions(const char *text, size_t len, char ***ret, struct sealvm_err *err)
{
	json_t *j = json_loadb(text, len, 0, NULL), *reg, *v;
	const char *k;
	char **out;
	size_t n = 0;

	if (!j)
		return sealvm_err_set(err, -EINVAL, "BAD_ANSWER",
				      "the endpoints document is not JSON");
	if (!(reg = regional_of(j, err))) {
		json_decref(j);
		return -EINVAL;
	}
	out = calloc(json_object_size(reg) + 1, sizeof(char *));
	if (!out) {
		json_decref(j);
		return -ENOMEM;
	}
	json_object_foreach(reg, k, v)
	{
		if (!(out[n] = strdup(k))) {
			for (size_t i = 0; i < n; i++)
				free(out[i]);
			free(out);
			json_decref(j);
			return -ENOMEM;
		}
		n++;
	}
	json_decref(j);
	*ret = out;
	return 0;
}

int s3c_endpoints_lookup(const char *text, size_t len, const char *region, char **ret,
			 struct sealvm_err *err)
{
	json_t *j = json_loadb(text, len, 0, NULL), *reg, *url;
	int rc = 0;

	if (!j)
		return sealvm_err_set(err, -EINVAL, "BAD_ANSWER",
				      "the endpoints document is not JSON");
	if (!(reg = regional_of(j, err))) {
		json_decref(j);
		return -EINVAL;
	}
	if (!json_object_get(reg, region)) {
		char list[256] = "";
		const char *k;
		json_t *v;
		size_t o = 0;
		json_object_foreach(reg, k, v)
		{
			int w = snprintf(list + o, sizeof(list) - o, "%s%s", o ? ", " : "", k);
			if (w < 0 || (size_t)w >= sizeof(list) - o)
				break;
			o += (size_t)w;
		}
		rc = sealvm_err_set(err, -ENOENT, "UNKNOWN_REGION",
				    "the deployment serves no region '%s' (it serves: %s)", region,
				    o ? list : "none");
		goto out;
	}
	url = json_object_get(json_object_get(json_object_get(reg, region), "public"), region);
	if (!json_is_string(url) || (strncmp(json_string_value(url), "http://", 7) != 0 &&
				     strncmp(json_string_value(url), "https://", 8) != 0)) {
		rc = sealvm_err_set(err, -EINVAL, "BAD_ANSWER",
				    "the endpoints document gives region '%s' no public URL",
				    region);
		goto out;
	}
	if (!(*ret = strdup(json_string_value(url))))
		rc = -ENOMEM;
out:
	json_decref(j);
	return rc;
}

struct buf {
	char *p;
	size_t n;
};

static size_t on_body(char *p, size_t size, size_t n, void *userdata)
{
	struct buf *b = userdata;
	size_t add = size * n;
	char *nb;

	if (add > ENDPOINTS_MAX - b->n)
		return 0;
	nb = realloc(b->p, b->n + add + 1);
	if (!nb)
		return 0;
	memcpy(nb + b->n, p, add);
	b->n += add;
	nb[b->n] = 0;
	b->p = nb;
	return add;
}

int s3c_endpoint_resolve(const char *api_url, const char *region, char **ret_url, char **ret_region,
			 struct sealvm_err *err)
{
	_cleanup_free_ char *url = NULL, *found = NULL, *reg = NULL;
	struct buf b = {0};
	char errbuf[CURL_ERROR_SIZE] = "";
	long status = 0;
	CURLcode cc;
	CURL *curl;
	int rc;

	if (s3c_global_init() < 0 || !(curl = curl_easy_init()))
		return sealvm_err_set(err, -EIO, "CONNECT_FAILED", "cannot start libcurl");
	if (asprintf(&url, "%s/v2/endpoints", api_url) < 0) {
		url = NULL;
		curl_easy_cleanup(curl);
		return -ENOMEM;
	}
	curl_easy_setopt(curl, CURLOPT_URL, url);
	curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(curl, CURLOPT_WRITEDATA, &b);
	curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT, 10L);
	curl_easy_setopt(curl, CURLOPT_TIMEOUT, 60L);
	curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(curl, CURLOPT_USERAGENT, "sealvm-s3");
	cc = curl_easy_perform(curl);
	curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
	curl_easy_cleanup(curl);
	if (cc != CURLE_OK) {
		rc = sealvm_err_set(err, -EIO, "CONNECT_FAILED",
				    "cannot fetch the endpoints table %s: %s", url,
				    errbuf[0] ? errbuf : curl_easy_strerror(cc));
		goto out;
	}
	if (status != 200) {
		rc = sealvm_err_set(err, -EIO, "BAD_ANSWER",
				    "GET %s answered HTTP %ld: the deployment publishes no "
				    "endpoints table; give the S3 endpoint with --endpoint",
				    url, status);
		goto out;
	}
	if (!region) {
		char **regions = NULL;
		size_t n = 0;
		if ((rc = s3c_endpoints_regions(b.p ? b.p : "", b.n, &regions, err)) < 0)
			goto out;
		for (; regions[n]; n++)
			;
		if (n == 1)
			reg = regions[0];
		else
			free(regions[0]);
		for (size_t i = 1; i < n; i++)
			free(regions[i]);
		free(regions);
		if (n != 1) {
			rc = sealvm_err_set(err, -EINVAL, "REGION_NEEDED",
					    "the deployment serves %zu regions: name one "
					    "(--region or a cos://REGION/... URI)",
					    n);
			goto out;
		}
	} else if (!(reg = strdup(region))) {
		rc = -ENOMEM;
		goto out;
	}
	if ((rc = s3c_endpoints_lookup(b.p ? b.p : "", b.n, reg, &found, err)) < 0)
		goto out;
	*ret_url = TAKE_PTR(found);
	if (ret_region)
		*ret_region = TAKE_PTR(reg);
out:
	free(b.p);
	return rc;
}
