// SPDX-License-Identifier: Apache-2.0
/*
 * s3_query.c — the S3 request query string: raw text in, decoded parameters
 * out, strictly (see s3.h).
 *
 * The server gets the query undecoded (SigV4 signs it that way); handlers get
 * it from here. A bad escape or a decoded NUL is refused rather than guessed
 * at, the size is capped, and a parameter given twice is kept twice so that
 * a handler can refuse the ambiguity instead of silently taking one value.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "sealvm/s3.h"

#include "s3_internal.h"

void s3_query_done(struct s3_query *q)
{
	if (!q)
		return;
	for (size_t i = 0; i < q->n; i++) {
		free(q->params[i].name);
		free(q->params[i].value);
	}
	free(q->params);
	q->params = NULL;
	q->n = 0;
}

static int decode_part(const char *s, size_t n, const char *what, char **ret,
		       struct sealvm_err *err)
{
	char *out = malloc(n + 1);
	if (!out)
		return sealvm_err_set(err, -ENOMEM, NULL, "out of memory");
	long d = s3_pct_decode(s, n, true, out);
	if (d < 0) {
		free(out);
		return sealvm_err_set(err, -EINVAL, "InvalidURI",
				      "a query parameter %s has a '%%' that is not followed by two "
				      "hex digits",
				      what);
	}
	if (memchr(out, 0, (size_t)d)) {
		free(out);
		return sealvm_err_set(err, -EINVAL, "InvalidURI",
				      "a query parameter %s contains an encoded NUL (%%00)", what);
	}
	out[d] = 0;
	*ret = out;
	return 0;
}

int s3_query_parse(const char *raw, struct s3_query *ret, struct sealvm_err *err)
{
	struct s3_query q = {0};
	int r;

	memset(ret, 0, sizeof(*ret));
	if (!raw || !*raw)
		return 0;
	size_t len = strlen(raw);
	if (len > S3_QUERY_MAX)
		return sealvm_err_set(err, -E2BIG, "InvalidArgument",
				      "the query string is longer than %d characters",
				      S3_QUERY_MAX);
	for (const char *seg = raw;;) {
		size_t slen = strcspn(seg, "&");
		if (slen > 0) {
			const char *eq = memchr(seg, '=', slen);
			size_t nlen = eq ? (size_t)(eq - seg) : slen;
			struct s3_query_param *p;

			if (q.n == S3_QUERY_PARAMS_MAX) {
				r = sealvm_err_set(err, -E2BIG, "InvalidArgument",
						   "the query has more than %d parameters",
						   S3_QUERY_PARAMS_MAX);
				goto fail;
			}
			if (!q.params) {
				q.params = calloc(S3_QUERY_PARAMS_MAX, sizeof(*q.params));
				if (!q.params) {
					r = sealvm_err_set(err, -ENOMEM, NULL, "out of memory");
					goto fail;
				}
			}
			p = &q.params[q.n];
			r = decode_part(seg, nlen, "name", &p->name, err);
			if (r < 0)
				goto fail;
			r = decode_part(eq ? eq + 1 : seg + slen, eq ? slen - nlen - 1 : 0, "value",
					&p->value, err);
			if (r < 0) {
				free(p->name);
				p->name = NULL;
				goto fail;
			}
			p->has_value = eq != NULL;
			q.n++;
		}
		if (!seg[slen])
			break;
		seg += slen + 1;
	}
	*ret = q;
	return 0;
fail:
	s3_query_done(&q);
	return r;
}

int s3_query_get(const struct s3_query *q, const char *name, const char **ret_value,
		 struct sealvm_err *err)
{
	const char *found = NULL;
	for (size_t i = 0; i < q->n; i++) {
		if (strcmp(q->params[i].name, name) != 0)
			continue;
		if (found)
			return sealvm_err_set(err, -ENOTUNIQ, "InvalidArgument",
					      "the query parameter %s is given more than once",
					      name);
		found = q->params[i].value;
	}
	if (!found)
		return -ENOENT;
	*ret_value = found;
	return 0;
}

bool s3_query_has(const struct s3_query *q, const char *name)
{
	for (size_t i = 0; i < q->n; i++)
		if (strcmp(q->params[i].name, name) == 0)
			return true;
	return false;
}
