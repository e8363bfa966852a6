// SPDX-License-Identifier: Apache-2.0
/*
 * cos_parse.c — the S3 front's small parsers of request text: the object key
 * and bucket segments of the raw path (strict percent-decoding), UTF-8
 * validation, the CreateBucketConfiguration body, the Range header, and the
 * DeleteObjects body.
 *
 * Each takes attacker-controlled bytes, bounds what it produces, and refuses
 * rather than guesses (tests/fuzz/fuzz_cos_front.c holds them to that). They
 * must never allocate more than their input's size plus one.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sealvm/macro.h"

#include "cos_front.h"

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Strict percent-decoding of a path part ('+' is itself); NUL and bad escapes refused. */
int cos_path_decode(const char *s, size_t n, char **ret, struct sealvm_err *err)
{
	char *o = malloc(n + 1);
	if (!o)
		return sealvm_err_set(err, -ENOMEM, "NO_MEMORY", "out of memory");
	size_t k = 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '%') {
			int a = i + 1 < n ? hexval(s[i + 1]) : -1;
			int b = i + 2 < n ? hexval(s[i + 2]) : -1;
			int h = a < 0 || b < 0 ? -1 : a * 16 + b;
			if (h <= 0) {
				free(o);
				return sealvm_err_set(err, -EINVAL, "InvalidURI",
						      "the request path has a bad percent-escape "
						      "or an encoded NUL");
			}
			o[k++] = (char)h;
			i += 2;
		} else {
			o[k++] = s[i];
		}
	}
	o[k] = 0;
	*ret = o;
	return 0;
}

bool cos_utf8_valid(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	while (*p) {
		unsigned c = *p, n;
		if (c < 0x80) {
			p++;
			continue;
		} else if ((c & 0xE0) == 0xC0 && c >= 0xC2)
			n = 1;
		else if ((c & 0xF0) == 0xE0)
			n = 2;
		else if ((c & 0xF8) == 0xF0 && c <= 0xF4)
			n = 3;
		else
			return false;
		unsigned cp = c & (0x3F >> n);
		for (unsigned i = 1; i <= n; i++) {
			if ((p[i] & 0xC0) != 0x80)
				return false;
			cp = cp << 6 | (p[i] & 0x3F);
		}
		if ((n == 2 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) ||
		    (n == 3 && (cp < 0x10000 || cp > 0x10FFFF)))
			return false;
		p += n + 1;
	}
	return true;
}

/*
 * The LocationConstraint of a CreateBucketConfiguration body ("" when the body
 * is empty or names none). Strict enough for what clients send: the root
 * element, one optional LocationConstraint leaf, nothing else but whitespace
 * and an XML declaration.
 */
int cos_parse_location(const unsigned char *body, size_t len, char *out, size_t outsz,
		       struct sealvm_err *err)
{
	out[0] = 0;
	if (!len)
		return 0; /* no body: no LocationConstraint */
	_cleanup_free_ char *s = strndup((const char *)body, len);
	if (!s)
		return sealvm_err_set(err, -ENOMEM, "NO_MEMORY", "out of memory");
	if (strlen(s) != len)
		goto bad;
	char *p = s;
	while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
		p++;
	if (!*p)
		return 0;
	if (strncmp(p, "<?xml", 5) == 0) {
		p = strstr(p, "?>");
		if (!p)
			goto bad;
		p += 2;
	}
	while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
		p++;
	if (strncmp(p, "<CreateBucketConfiguration", 26) != 0 || (p[26] != '>' && p[26] != ' '))
		goto bad;
	char *gt = strchr(p, '>');
	if (!gt)
		goto bad;
	char *end = strstr(gt, "</CreateBucketConfiguration>");
	if (!end)
		goto bad;
	for (char *t = end + 28; *t; t++)
		if (*t != ' ' && *t != '\t' && *t != '\r' && *t != '\n')
			goto bad;
	*end = 0;
	char *lc = strstr(gt, "<LocationConstraint>");
	if (!lc) {
		for (char *t = gt + 1; *t; t++)
			if (*t != ' ' && *t != '\t' && *t != '\r' && *t != '\n')
				goto bad;
		return 0;
	}
	char *v = lc + 20;
	char *ve = strstr(v, "</LocationConstraint>");
	if (!ve || (size_t)(ve - v) >= outsz)
		goto bad;
	for (char *t = gt + 1; t < lc; t++)
		if (*t != ' ' && *t != '\t' && *t != '\r' && *t != '\n')
			goto bad;
	for (char *t = ve + 21; *t; t++)
		if (*t != ' ' && *t != '\t' && *t != '\r' && *t != '\n')
			goto bad;
	for (char *t = v; t < ve; t++)
		if (*t == '<' || *t == '&' || *t == '>' || (unsigned char)*t < 0x20)
			goto bad;
	memcpy(out, v, (size_t)(ve - v));
	out[ve - v] = 0;
	return 0;
bad:
	return sealvm_err_set(err, -EINVAL, "MalformedXML",
			      "the CreateBucketConfiguration body is not well-formed or names "
			      "something besides LocationConstraint");
}

/*
 * Parses a Range header. 0 with r->partial when one satisfiable range was
 * asked; 0 without it when there is none, it is not a bytes range we read,
 * or it names several ranges (all ignored, as S3 does); -ERANGE when it
 * cannot be satisfied.
 */
int cos_parse_range(const char *h, uint64_t size, struct cos_range *r)
{
	memset(r, 0, sizeof(*r));
	if (!h)
		return 0;
	while (*h == ' ')
		h++;
	if (strncmp(h, "bytes=", 6) != 0)
		return 0;
	h += 6;
	if (strchr(h, ','))
		return 0;
	const char *dash = strchr(h, '-');
	if (!dash)
		return 0;
	uint64_t a = 0, b = 0;
	bool has_a = false, has_b = false;
	for (const char *p = h; p < dash; p++) {
		if (*p < '0' || *p > '9' || a > UINT64_MAX / 10 - 9)
			return 0;
		a = a * 10 + (uint64_t)(*p - '0');
		has_a = true;
	}
	for (const char *p = dash + 1; *p; p++) {
		if (*p < '0' || *p > '9' || b > UINT64_MAX / 10 - 9)
			return 0;
		b = b * 10 + (uint64_t)(*p - '0');
		has_b = true;
	}
	if (!has_a && !has_b)
		return 0;
	if (!has_a) {
		/* the last b bytes */
		if (b == 0 || size == 0)
			return -ERANGE;
		r->first = b >= size ? 0 : size - b;
		r->last = size - 1;
		r->partial = true;
		return 0;
	}
	if (has_b && b < a)
		return 0; /* syntactically invalid: ignored */
	if (a >= size)
		return -ERANGE;
	r->first = a;
	r->last = has_b && b < size ? b : size - 1;
	r->partial = true;
	return 0;
}

/* ---- DeleteObjects body ---------------------------------------------------------------------- */

struct xp {
	const char *p, *end;
};

static void xp_ws(struct xp *x)
{
	while (x->p < x->end && (*x->p == ' ' || *x->p == '\t' || *x->p == '\r' || *x->p == '\n'))
		x->p++;
}

static bool xp_lit(struct xp *x, const char *s)
{
	size_t n = strlen(s);
	if ((size_t)(x->end - x->p) < n || memcmp(x->p, s, n) != 0)
		return false;
	x->p += n;
	return true;
}

/* Appends code point @cp as UTF-8; false for NUL, surrogates and beyond U+10FFFF. */
static bool put_utf8(char *o, size_t *k, unsigned long cp)
{
	if (cp == 0 || (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF)
		return false;
	if (cp < 0x80) {
		o[(*k)++] = (char)cp;
	} else if (cp < 0x800) {
		o[(*k)++] = (char)(0xC0 | cp >> 6);
		o[(*k)++] = (char)(0x80 | (cp & 0x3F));
	} else if (cp < 0x10000) {
		o[(*k)++] = (char)(0xE0 | cp >> 12);
		o[(*k)++] = (char)(0x80 | ((cp >> 6) & 0x3F));
		o[(*k)++] = (char)(0x80 | (cp & 0x3F));
	} else {
		o[(*k)++] = (char)(0xF0 | cp >> 18);
		o[(*k)++] = (char)(0x80 | ((cp >> 12) & 0x3F));
		o[(*k)++] = (char)(0x80 | ((cp >> 6) & 0x3F));
		o[(*k)++] = (char)(0x80 | (cp & 0x3F));
	}
	return true;
}

/*
 * The text of a leaf up to its closing tag @close (consumed), entities and
 * character references decoded: a new string in *@ret. -EINVAL when the text
 * holds markup, a bad reference, a NUL, or is longer than @max bytes decoded.
 */
static int xp_text(struct xp *x, const char *close, size_t max, char **ret)
{
	const char *lt = memchr(x->p, '<', (size_t)(x->end - x->p));
	if (!lt)
		return -EINVAL;
	size_t n = (size_t)(lt - x->p);
	char *o = malloc(n + 1);
	if (!o)
		return -ENOMEM;
	size_t k = 0;
	for (const char *p = x->p; p < lt;) {
		if (*p == 0) {
			free(o);
			return -EINVAL;
		}
		if (*p != '&') {
			o[k++] = *p++;
			continue;
		}
		const char *semi = memchr(p, ';', (size_t)(lt - p));
		if (!semi || semi - p > 10) {
			free(o);
			return -EINVAL;
		}
		size_t el = (size_t)(semi - p + 1);
		unsigned long cp = 0;
		if (el == 5 && memcmp(p, "&amp;", 5) == 0)
			cp = '&';
		else if (el == 4 && memcmp(p, "&lt;", 4) == 0)
			cp = '<';
		else if (el == 4 && memcmp(p, "&gt;", 4) == 0)
			cp = '>';
		else if (el == 6 && memcmp(p, "&quot;", 6) == 0)
			cp = '"';
		else if (el == 6 && memcmp(p, "&apos;", 6) == 0)
			cp = '\'';
		else if (el > 3 && p[1] == '#') {
			bool hex = p[2] == 'x';
			const char *d = p + (hex ? 3 : 2);
			if (d == semi) {
				free(o);
				return -EINVAL;
			}
			for (; d < semi; d++) {
				int v = hexval(*d);
				if (v < 0 || (!hex && v > 9)) {
					free(o);
					return -EINVAL;
				}
				cp = cp * (hex ? 16 : 10) + (unsigned long)v;
			}
		}
		/* a reference names at most 6 hex or 7 decimal digits: no overflow above */
		if (!put_utf8(o, &k, cp) || k > n) {
			free(o);
			return -EINVAL;
		}
		p = semi + 1;
	}
	o[k] = 0;
	x->p = lt;
	if (k > max || !xp_lit(x, close)) {
		free(o);
		return -EINVAL;
	}
	*ret = o;
	return 0;
}

void cos_delete_list_done(struct cos_delete_list *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->objects[i].key);
	free(l->objects);
	memset(l, 0, sizeof(*l));
}

int cos_parse_delete(const unsigned char *body, size_t len, struct cos_delete_list *ret,
		     struct sealvm_err *err)
{
	struct cos_delete_list l = {0};
	struct xp x = {(const char *)body, (const char *)body + len};
	bool quiet_seen = false;
	int r = -EINVAL;

	if (memchr(body, 0, len))
		goto bad;
	xp_lit(&x, "\xEF\xBB\xBF");
	xp_ws(&x);
	if (xp_lit(&x, "<?xml")) {
		const char *q = x.p;
		while (q + 1 < x.end && !(q[0] == '?' && q[1] == '>'))
			q++;
		if (q + 1 >= x.end)
			goto bad;
		x.p = q + 2;
		xp_ws(&x);
	}
	if (!xp_lit(&x, "<Delete"))
		goto bad;
	if (!xp_lit(&x, ">")) {
		/* only an xmlns attribute */
		xp_ws(&x);
		if (!xp_lit(&x, "xmlns=\""))
			goto bad;
		while (x.p < x.end && *x.p != '"' && *x.p != '<' && *x.p != '&')
			x.p++;
		if (!xp_lit(&x, "\""))
			goto bad;
		xp_ws(&x);
		if (!xp_lit(&x, ">"))
			goto bad;
	}
	for (;;) {
		xp_ws(&x);
		if (xp_lit(&x, "</Delete>"))
			break;
		if (xp_lit(&x, "<Quiet>")) {
			if (quiet_seen)
				goto bad;
			quiet_seen = true;
			if (xp_lit(&x, "true"))
				l.quiet = true;
			else if (!xp_lit(&x, "false"))
				goto bad;
			if (!xp_lit(&x, "</Quiet>"))
				goto bad;
			continue;
		}
		if (!xp_lit(&x, "<Object>"))
			goto bad;
		if (l.n == COS_DELETE_MAX) {
			r = -E2BIG;
			goto bad;
		}
		if (!l.objects) {
			l.objects = calloc(COS_DELETE_MAX, sizeof(*l.objects));
			if (!l.objects) {
				r = -ENOMEM;
				goto bad;
			}
		}
		struct cos_delete_obj *o = &l.objects[l.n];
		bool version = false;
		for (;;) {
			xp_ws(&x);
			if (xp_lit(&x, "</Object>"))
				break;
			char *t = NULL;
			if (xp_lit(&x, "<Key>")) {
				if (o->key)
					goto bad;
				r = xp_text(&x, "</Key>", COS_KEY_MAX, &t);
				if (r < 0)
					goto bad;
				o->key = t;
				l.n++; /* owned by the list from here on */
			} else if (xp_lit(&x, "<VersionId>")) {
				if (version)
					goto bad;
				r = xp_text(&x, "</VersionId>", 1024, &t);
				if (r < 0)
					goto bad;
				free(t);
				version = o->version = true;
			} else {
				r = -EINVAL;
				goto bad;
			}
		}
		if (!o->key || !o->key[0] || !cos_utf8_valid(o->key)) {
			r = -EINVAL;
			goto bad;
		}
	}
	xp_ws(&x);
	if (x.p != x.end || l.n == 0) {
		r = -EINVAL;
		goto bad;
	}
	*ret = l;
	return 0;
bad:
	cos_delete_list_done(&l); /* l.n counts the keys read, each owned */
	if (r == -ENOMEM)
		return sealvm_err_set(err, -ENOMEM, "NO_MEMORY", "out of memory");
	if (r == -E2BIG)
		return sealvm_err_set(err, -EINVAL, "MalformedXML",
				      "a Delete request names at most %d objects", COS_DELETE_MAX);
	return sealvm_err_set(err, -EINVAL, "MalformedXML",
			      "the Delete body is not well-formed: <Delete> with an optional "
			      "<Quiet> and 1 to %d <Object><Key>…</Key></Object>",
			      COS_DELETE_MAX);
}
