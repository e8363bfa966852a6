// SPDX-License-Identifier: Apache-2.0
/*
 * s3_xml.c — the one XML document S3 servers read (CompleteMultipartUpload)
 * and a writer for the ones they answer with (see s3.h).
 *
 * The parser is a strict recursive descent over that single document shape,
 * not a general XML parser: there is no DTD, no external entity, no CDATA,
 * no namespace prefix, no attribute but the root's S3 xmlns, so none of the
 * classic XML attacks has anything to work with (docs/decisions/0007). Text is
 * UTF-8, entities are the five predefined ones and character references.
 * The writer escapes every text it is given and caps the document size.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sealvm/b64.h"
#include "sealvm/s3.h"

#include "s3_internal.h"

#define R_XML "MalformedXML"
#define ROOT "CompleteMultipartUpload"
#define LEAF_TEXT_MAX 1024 /* bytes of a leaf's decoded text */

struct parser {
	const char *p;
	const char *end;
	struct sealvm_err *err;
	unsigned part_index; /* 1-based, for messages */
};

static int bad(struct parser *ps, const char *what)
{
	if (ps->part_index)
		return sealvm_err_set(ps->err, -EINVAL, R_XML,
				      "the CompleteMultipartUpload body is not well-formed or does "
				      "not match the schema: %s (in Part #%u)",
				      what, ps->part_index);
	return sealvm_err_set(ps->err, -EINVAL, R_XML,
			      "the CompleteMultipartUpload body is not well-formed or does not "
			      "match the schema: %s",
			      what);
}

static bool is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static bool starts(const struct parser *ps, const char *s)
{
	size_t n = strlen(s);
	return (size_t)(ps->end - ps->p) >= n && memcmp(ps->p, s, n) == 0;
}

/* Whitespace and comments. */
static int skip_misc(struct parser *ps)
{
	for (;;) {
		while (ps->p < ps->end && is_space(*ps->p))
			ps->p++;
		if (!starts(ps, "<!--"))
			return 0;
		const char *q = ps->p + 4;
		for (;; q++) {
			if (ps->end - q < 3)
				return bad(ps, "an unterminated comment");
			if (q[0] == '-' && q[1] == '-') {
				if (q[2] != '>')
					return bad(ps, "'--' inside a comment");
				break;
			}
		}
		ps->p = q + 3;
	}
}

static bool is_name_char(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       c == '_' || c == '-' || c == '.' || c == ':';
}

/* '<' Name: reads the name into @name (at most @cap - 1 characters). */
static int open_tag(struct parser *ps, char *name, size_t cap)
{
	size_t n = 0;
	if (ps->p >= ps->end || *ps->p != '<')
		return bad(ps, "an element was expected");
	ps->p++;
	if (ps->p < ps->end && (*ps->p == '!' || *ps->p == '?' || *ps->p == '/'))
		return bad(ps, "a DOCTYPE, CDATA section, processing instruction or stray end "
			       "tag");
	while (ps->p < ps->end && is_name_char(*ps->p)) {
		if (n + 1 >= cap)
			return bad(ps, "an unknown element");
		name[n++] = *ps->p++;
	}
	name[n] = 0;
	if (n == 0)
		return bad(ps, "an element without a name");
	return 0;
}

/* Optional whitespace, then '>' (no attributes); "/>" is refused (the elements need content). */
static int tag_end(struct parser *ps)
{
	while (ps->p < ps->end && is_space(*ps->p))
		ps->p++;
	if (ps->p < ps->end && *ps->p == '>') {
		ps->p++;
		return 0;
	}
	return bad(ps, "an attribute, an empty element or an unterminated tag");
}

/* "</" name S? ">" */
static int close_tag(struct parser *ps, const char *name)
{
	size_t n = strlen(name);
	if (!starts(ps, "</") || (size_t)(ps->end - ps->p - 2) < n ||
	    memcmp(ps->p + 2, name, n) != 0)
		return bad(ps, "an end tag does not match its start tag");
	ps->p += 2 + n;
	if (ps->p < ps->end && is_name_char(*ps->p))
		return bad(ps, "an end tag does not match its start tag");
	return tag_end(ps);
}

static int put_utf8(uint32_t cp, char *out, size_t *o, size_t cap)
{
	char t[4];
	size_t n;
	if (cp < 0x80) {
		t[0] = (char)cp, n = 1;
	} else if (cp < 0x800) {
		t[0] = (char)(0xc0 | cp >> 6), t[1] = (char)(0x80 | (cp & 0x3f)), n = 2;
	} else if (cp < 0x10000) {
		t[0] = (char)(0xe0 | cp >> 12), t[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		t[2] = (char)(0x80 | (cp & 0x3f)), n = 3;
	} else {
		t[0] = (char)(0xf0 | cp >> 18), t[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
		t[2] = (char)(0x80 | ((cp >> 6) & 0x3f)), t[3] = (char)(0x80 | (cp & 0x3f)), n = 4;
	}
	if (*o + n > cap)
		return -E2BIG;
	memcpy(out + *o, t, n);
	*o += n;
	return 0;
}

static bool xml_char_ok(uint32_t cp)
{
	return cp == 0x9 || cp == 0xa || cp == 0xd || (cp >= 0x20 && cp <= 0xd7ff) ||
	       (cp >= 0xe000 && cp <= 0xfffd) || (cp >= 0x10000 && cp <= 0x10ffff);
}

/* Leaf text up to the next '<', entities decoded, into @out (NUL-terminated). */
static int leaf_text(struct parser *ps, char *out, size_t cap, size_t *ret_len)
{
	size_t o = 0;
	while (ps->p < ps->end && *ps->p != '<') {
		char c = *ps->p;
		if (c != '&') {
			if ((unsigned char)c < 0x20 && !is_space(c))
				return bad(ps, "a control character in text");
			if (o + 1 >= cap)
				return bad(ps, "an element's text is too long");
			out[o++] = c;
			ps->p++;
			continue;
		}
		const char *semi = memchr(ps->p, ';', (size_t)MIN(ps->end - ps->p, 12));
		if (!semi)
			return bad(ps, "an unterminated entity");
		size_t n = (size_t)(semi - ps->p - 1);
		const char *e = ps->p + 1;
		uint32_t cp = 0;
		if (n == 2 && memcmp(e, "lt", 2) == 0)
			cp = '<';
		else if (n == 2 && memcmp(e, "gt", 2) == 0)
			cp = '>';
		else if (n == 3 && memcmp(e, "amp", 3) == 0)
			cp = '&';
		else if (n == 4 && memcmp(e, "quot", 4) == 0)
			cp = '"';
		else if (n == 4 && memcmp(e, "apos", 4) == 0)
			cp = '\'';
		else if (n >= 2 && e[0] == '#') {
			bool hex = e[1] == 'x';
			size_t k = hex ? 2 : 1;
			if (k == n)
				return bad(ps, "an empty character reference");
			for (; k < n; k++) {
				int d = hex ? s3_hexval((unsigned char)e[k])
					    : (e[k] >= '0' && e[k] <= '9' ? e[k] - '0' : -1);
				if (d < 0 || cp > 0x10ffff)
					return bad(ps, "a bad character reference");
				cp = cp * (hex ? 16 : 10) + (uint32_t)d;
			}
			if (!xml_char_ok(cp))
				return bad(ps, "a character reference to a character XML forbids");
		} else {
			return bad(ps, "an entity other than &lt; &gt; &amp; &quot; &apos; or a "
				       "character reference");
		}
		if (put_utf8(cp, out, &o, cap - 1) < 0)
			return bad(ps, "an element's text is too long");
		ps->p = semi + 1;
	}
	out[o] = 0;
	*ret_len = o;
	return 0;
}

static int parse_part_number(struct parser *ps, const char *t, size_t n, unsigned *ret)
{
	unsigned v = 0;
	if (n == 0 || n > 5 || t[0] == '0')
		return bad(ps, "PartNumber must be a number from 1 to 10000");
	for (size_t i = 0; i < n; i++) {
		if (t[i] < '0' || t[i] > '9')
			return bad(ps, "PartNumber must be a number from 1 to 10000");
		v = v * 10 + (unsigned)(t[i] - '0');
	}
	if (v < 1 || v > S3_MULTIPART_PARTS_MAX)
		return bad(ps, "PartNumber must be a number from 1 to 10000");
	*ret = v;
	return 0;
}

static int parse_etag(struct parser *ps, const char *t, size_t n, char *out)
{
	if (n >= 2 && t[0] == '"' && t[n - 1] == '"') {
		t++;
		n -= 2;
	}
	if (n == 0 || n > S3_ETAG_MAX)
		return bad(ps, "ETag is empty or too long");
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)t[i] <= 0x20 || (unsigned char)t[i] >= 0x7f || t[i] == '"')
			return bad(ps, "ETag has a character outside printable ASCII or a quote "
				       "inside");
	memcpy(out, t, n);
	out[n] = 0;
	return 0;
}

static int parse_checksum(struct parser *ps, const char *t, size_t n, size_t digest, char *out,
			  size_t cap, const char *what)
{
	unsigned char tmp[S3_CHECKSUM_MAX + 3];
	if (n != sealvm_b64_encoded_len(digest, false) || n >= cap ||
	    sealvm_b64_decode(t, n, tmp, false) != (long)digest)
		return bad(ps, what);
	memcpy(out, t, n);
	out[n] = 0;
	return 0;
}

static int parse_part(struct parser *ps, struct s3_part *part)
{
	char name[32], text[LEAF_TEXT_MAX + 1];
	bool seen_num = false, seen_etag = false;
	int r;

	memset(part, 0, sizeof(*part));
	r = tag_end(ps);
	if (r < 0)
		return r;
	for (;;) {
		size_t n = 0;
		r = skip_misc(ps);
		if (r < 0)
			return r;
		if (starts(ps, "</"))
			break;
		r = open_tag(ps, name, sizeof(name));
		if (r == 0)
			r = tag_end(ps);
		if (r == 0)
			r = leaf_text(ps, text, sizeof(text), &n);
		if (r == 0)
			r = close_tag(ps, name);
		if (r < 0)
			return r;
		if (strcmp(name, "PartNumber") == 0 && !seen_num) {
			r = parse_part_number(ps, text, n, &part->number);
			seen_num = true;
		} else if (strcmp(name, "ETag") == 0 && !seen_etag) {
			r = parse_etag(ps, text, n, part->etag);
			seen_etag = true;
		} else if (strcmp(name, "ChecksumCRC32") == 0 && !part->checksum_crc32[0]) {
			r = parse_checksum(ps, text, n, 4, part->checksum_crc32,
					   sizeof(part->checksum_crc32),
					   "ChecksumCRC32 is not the base64 of 4 bytes");
		} else if (strcmp(name, "ChecksumCRC32C") == 0 && !part->checksum_crc32c[0]) {
			r = parse_checksum(ps, text, n, 4, part->checksum_crc32c,
					   sizeof(part->checksum_crc32c),
					   "ChecksumCRC32C is not the base64 of 4 bytes");
		} else if (strcmp(name, "ChecksumSHA1") == 0 && !part->checksum_sha1[0]) {
			r = parse_checksum(ps, text, n, 20, part->checksum_sha1,
					   sizeof(part->checksum_sha1),
					   "ChecksumSHA1 is not the base64 of 20 bytes");
		} else if (strcmp(name, "ChecksumSHA256") == 0 && !part->checksum_sha256[0]) {
			r = parse_checksum(ps, text, n, 32, part->checksum_sha256,
					   sizeof(part->checksum_sha256),
					   "ChecksumSHA256 is not the base64 of 32 bytes");
		} else {
			r = bad(ps, "an unknown or repeated element inside Part");
		}
		if (r < 0)
			return r;
	}
	if (!seen_num || !seen_etag)
		return bad(ps, "a Part needs a PartNumber and an ETag");
	return close_tag(ps, "Part");
}

/* The root's attributes: nothing, or xmlns="S3_XML_NS" (either quote). */
static int root_attributes(struct parser *ps)
{
	const char *ns = S3_XML_NS;
	size_t nslen = strlen(ns);
	bool had_space = false;
	while (ps->p < ps->end && is_space(*ps->p)) {
		ps->p++;
		had_space = true;
	}
	if (!had_space || !starts(ps, "xmlns"))
		return 0;
	ps->p += 5;
	while (ps->p < ps->end && is_space(*ps->p))
		ps->p++;
	if (ps->p >= ps->end || *ps->p != '=')
		return bad(ps, "an attribute on CompleteMultipartUpload other than the S3 xmlns");
	ps->p++;
	while (ps->p < ps->end && is_space(*ps->p))
		ps->p++;
	if (ps->p >= ps->end || (*ps->p != '"' && *ps->p != '\''))
		return bad(ps, "an unquoted attribute value");
	char q = *ps->p++;
	if ((size_t)(ps->end - ps->p) < nslen + 1 || memcmp(ps->p, ns, nslen) != 0 ||
	    ps->p[nslen] != q)
		return bad(ps, "an xmlns other than " S3_XML_NS);
	ps->p += nslen + 1;
	return 0;
}

void s3_part_list_done(struct s3_part_list *l)
{
	if (!l)
		return;
	free(l->parts);
	l->parts = NULL;
	l->n = 0;
}

int s3_multipart_parse(const void *body, size_t len, struct s3_part_list *ret,
		       struct sealvm_err *err)
{
	struct parser ps = {body, (const char *)body + len, err, 0};
	struct s3_part_list l = {0};
	size_t cap = 0;
	char name[32];
	int r;

	memset(ret, 0, sizeof(*ret));
	if (len > S3_MULTIPART_XML_MAX)
		return sealvm_err_set(err, -E2BIG, "MaxMessageLengthExceeded",
				      "the CompleteMultipartUpload body is larger than %u bytes",
				      S3_MULTIPART_XML_MAX);
	if (!s3_utf8_valid(body, len) || memchr(body, 0, len))
		return bad(&ps, "the body is not UTF-8 text");
	if (starts(&ps, "\xef\xbb\xbf"))
		ps.p += 3;
	if (starts(&ps, "<?xml") && ps.end - ps.p > 5 && is_space(ps.p[5])) {
		const char *q = ps.p + 5;
		for (; q < ps.end - 1 && !(q[0] == '?' && q[1] == '>'); q++)
			if (*q == '<' || *q == '>' || ((unsigned char)*q < 0x20 && !is_space(*q)))
				return bad(&ps, "a malformed XML declaration");
		if (q >= ps.end - 1)
			return bad(&ps, "an unterminated XML declaration");
		ps.p = q + 2;
	}
	r = skip_misc(&ps);
	if (r == 0)
		r = open_tag(&ps, name, sizeof(name));
	if (r < 0)
		goto fail;
	if (strcmp(name, ROOT) != 0) {
		r = bad(&ps, "the root element is not CompleteMultipartUpload");
		goto fail;
	}
	r = root_attributes(&ps);
	if (r == 0)
		r = tag_end(&ps);
	if (r < 0)
		goto fail;
	for (;;) {
		r = skip_misc(&ps);
		if (r < 0)
			goto fail;
		if (starts(&ps, "</"))
			break;
		r = open_tag(&ps, name, sizeof(name));
		if (r < 0)
			goto fail;
		if (strcmp(name, "Part") != 0) {
			r = bad(&ps, "an element other than Part inside CompleteMultipartUpload");
			goto fail;
		}
		if (l.n == S3_MULTIPART_PARTS_MAX) {
			r = bad(&ps, "more than 10000 parts");
			goto fail;
		}
		if (l.n == cap) {
			size_t ncap = cap ? MIN(cap * 4, (size_t)S3_MULTIPART_PARTS_MAX) : 16;
			struct s3_part *np = realloc(l.parts, ncap * sizeof(*np));
			if (!np) {
				r = sealvm_err_set(err, -ENOMEM, NULL, "out of memory");
				goto fail;
			}
			l.parts = np;
			cap = ncap;
		}
		ps.part_index = (unsigned)l.n + 1;
		r = parse_part(&ps, &l.parts[l.n]);
		if (r < 0)
			goto fail;
		if (l.n > 0 && l.parts[l.n].number <= l.parts[l.n - 1].number) {
			r = sealvm_err_set(err, -EINVAL, "InvalidPartOrder",
					   "the list of parts was not in ascending order: part %u "
					   "follows part %u",
					   l.parts[l.n].number, l.parts[l.n - 1].number);
			goto fail;
		}
		l.n++;
		ps.part_index = 0;
	}
	r = close_tag(&ps, ROOT);
	if (r == 0)
		r = skip_misc(&ps);
	if (r < 0)
		goto fail;
	if (ps.p != ps.end) {
		r = bad(&ps, "content after the root element");
		goto fail;
	}
	if (l.n == 0) {
		r = bad(&ps, "no Part");
		goto fail;
	}
	*ret = l;
	return 0;
fail:
	s3_part_list_done(&l);
	return r;
}

/* ---- the writer --------------------------------------------------------------------- */

struct s3_xml {
	struct s3_buf b;
	int error;
	unsigned depth;
	bool root_done;
	char open[S3_XML_DEPTH_MAX][64];
};

static void w_fail(struct s3_xml *w, int code)
{
	if (!w->error)
		w->error = code;
}

int s3_xml_new(size_t max, struct s3_xml **ret)
{
	struct s3_xml *w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	s3_buf_init(&w->b, max);
	s3_buf_puts(&w->b, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
	w->error = w->b.error;
	*ret = w;
	return 0;
}

void s3_xml_free(struct s3_xml *w)
{
	if (!w)
		return;
	s3_buf_done(&w->b);
	free(w);
}

static bool name_ok(const char *name)
{
	size_t n = name ? strlen(name) : 0;
	if (n == 0 || n >= 64 ||
	    !((name[0] >= 'A' && name[0] <= 'Z') || (name[0] >= 'a' && name[0] <= 'z')))
		return false;
	for (size_t i = 0; i < n; i++)
		if (!is_name_char(name[i]) || name[i] == ':')
			return false;
	return true;
}

static void put_escaped(struct s3_xml *w, const char *text)
{
	size_t n = strlen(text);
	if (!s3_utf8_valid(text, n)) {
		w_fail(w, -EILSEQ);
		return;
	}
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)text[i];
		switch (c) {
		case '&':
			s3_buf_puts(&w->b, "&amp;");
			break;
		case '<':
			s3_buf_puts(&w->b, "&lt;");
			break;
		case '>':
			s3_buf_puts(&w->b, "&gt;");
			break;
		case '"':
			s3_buf_puts(&w->b, "&quot;");
			break;
		case '\'':
			s3_buf_puts(&w->b, "&apos;");
			break;
		default:
			if (c < 0x20)
				s3_buf_printf(&w->b, "&#x%X;", c);
			else
				s3_buf_putc(&w->b, (char)c);
		}
	}
}

void s3_xml_open(struct s3_xml *w, const char *name, bool with_ns)
{
	if (w->error)
		return;
	if (!name_ok(name) || w->depth == S3_XML_DEPTH_MAX || (w->depth == 0 && w->root_done)) {
		w_fail(w, -EINVAL);
		return;
	}
	s3_buf_putc(&w->b, '<');
	s3_buf_puts(&w->b, name);
	if (with_ns && w->depth == 0)
		s3_buf_puts(&w->b, " xmlns=\"" S3_XML_NS "\"");
	s3_buf_putc(&w->b, '>');
	snprintf(w->open[w->depth], sizeof(w->open[0]), "%s", name);
	w->depth++;
	if (w->b.error)
		w_fail(w, w->b.error);
}

void s3_xml_close(struct s3_xml *w)
{
	if (w->error)
		return;
	if (w->depth == 0) {
		w_fail(w, -EINVAL);
		return;
	}
	w->depth--;
	s3_buf_printf(&w->b, "</%s>", w->open[w->depth]);
	if (w->depth == 0)
		w->root_done = true;
	if (w->b.error)
		w_fail(w, w->b.error);
}

void s3_xml_elem(struct s3_xml *w, const char *name, const char *text)
{
	if (w->error)
		return;
	if (!name_ok(name) || w->depth == 0 || !text) {
		w_fail(w, -EINVAL);
		return;
	}
	s3_buf_printf(&w->b, "<%s>", name);
	put_escaped(w, text);
	s3_buf_printf(&w->b, "</%s>", name);
	if (w->b.error)
		w_fail(w, w->b.error);
}

void s3_xml_elemf(struct s3_xml *w, const char *name, const char *fmt, ...)
{
	char *text = NULL;
	va_list ap;
	if (w->error)
		return;
	va_start(ap, fmt);
	int n = vasprintf(&text, fmt, ap);
	va_end(ap);
	if (n < 0) {
		w_fail(w, -ENOMEM);
		return;
	}
	s3_xml_elem(w, name, text);
	free(text);
}

int s3_xml_finish(struct s3_xml *w, char **ret, size_t *ret_len)
{
	while (!w->error && w->depth > 0)
		s3_xml_close(w);
	if (!w->error && !w->root_done)
		w_fail(w, -EINVAL);
	if (w->error)
		return w->error;
	return s3_buf_steal(&w->b, ret, ret_len);
}

int s3_xml_error(const char *code, const char *message, const char *resource,
		 const char *request_id, char **ret, size_t *ret_len)
{
	struct s3_xml *w;
	int r = s3_xml_new(64 * 1024, &w);
	if (r < 0)
		return r;
	s3_xml_open(w, "Error", false);
	s3_xml_elem(w, "Code", code ? code : "InternalError");
	s3_xml_elem(w, "Message", message ? message : "");
	if (resource)
		s3_xml_elem(w, "Resource", resource);
	if (request_id)
		s3_xml_elem(w, "RequestId", request_id);
	r = s3_xml_finish(w, ret, ret_len);
	s3_xml_free(w);
	return r;
}
