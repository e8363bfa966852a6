// SPDX-License-Identifier: Apache-2.0
/*
 * fuzz_cos_front.c — the S3 front's request-text parsers (lib/cos/cos_parse.c).
 *
 * The first byte picks the parser, the rest is its input:
 *   0: cos_path_decode — an accepted path part decodes to at most its own
 *      length, and encoding every byte of the result as %XX decodes back to
 *      the same string; a refusal says InvalidURI. cos_utf8_valid runs on it.
 *   1: cos_parse_location — an accepted body gives a LocationConstraint that
 *      fits its buffer and holds no markup; a refusal says MalformedXML.
 *   2: cos_parse_range — the next 8 bytes are the object size; a range that
 *      is taken lies inside the object (first <= last < size), and a refusal
 *      is -ERANGE only.
 *   3: cos_parse_delete — an accepted body names 1..1000 non-empty UTF-8 keys
 *      of at most 1024 bytes; written out again with every byte of each key
 *      as a character reference, it parses back to the same keys; a refusal
 *      says MalformedXML.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/cos/cos_front.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void path(const char *s)
{
	struct sealvm_err err = SEALVM_ERR_INIT;
	char *out = NULL, *again = NULL;
	size_t n = strlen(s);
	int r = cos_path_decode(s, n, &out, &err);
	if (r < 0) {
		if (strcmp(err.reason, "InvalidURI") != 0 && r != -ENOMEM)
			abort();
		return;
	}
	size_t m = strlen(out);
	if (m > n)
		abort();
	(void)cos_utf8_valid(out);
	char *enc = malloc(3 * m + 1);
	if (!enc)
		abort();
	for (size_t i = 0; i < m; i++)
		sprintf(enc + 3 * i, "%%%02X", (unsigned char)out[i]);
	enc[3 * m] = 0;
	if (cos_path_decode(enc, 3 * m, &again, NULL) < 0 || strcmp(again, out) != 0)
		abort();
	free(enc);
	free(again);
	free(out);
}

static void location(const uint8_t *data, size_t size)
{
	struct sealvm_err err = SEALVM_ERR_INIT;
	char out[48];
	int r = cos_parse_location(data, size, out, sizeof(out), &err);
	if (r < 0) {
		if (strcmp(err.reason, "MalformedXML") != 0 && r != -ENOMEM)
			abort();
		return;
	}
	if (strnlen(out, sizeof(out)) >= sizeof(out) || strpbrk(out, "<&>"))
		abort();
}

static void range(const uint8_t *data, size_t size)
{
	uint64_t obj = 0;
	if (size < 8)
		return;
	memcpy(&obj, data, 8);
	obj %= (uint64_t)1 << 44; /* objects are at most 5 TiB */
	char *h = strndup((const char *)data + 8, size - 8);
	if (!h)
		abort();
	struct cos_range rg;
	int r = cos_parse_range(h, obj, &rg);
	if (r < 0 && r != -ERANGE)
		abort();
	if (r == 0 && rg.partial && !(rg.first <= rg.last && rg.last < obj))
		abort();
	free(h);
}

static void delete_body(const uint8_t *data, size_t size)
{
	struct sealvm_err err = SEALVM_ERR_INIT;
	struct cos_delete_list l, l2;
	int r = cos_parse_delete(data, size, &l, &err);
	if (r < 0) {
		if (strcmp(err.reason, "MalformedXML") != 0 && r != -ENOMEM)
			abort();
		return;
	}
	if (l.n < 1 || l.n > COS_DELETE_MAX)
		abort();
	size_t cap = 64;
	for (size_t i = 0; i < l.n; i++) {
		size_t kl = strlen(l.objects[i].key);
		if (kl < 1 || kl > COS_KEY_MAX || !cos_utf8_valid(l.objects[i].key))
			abort();
		cap += 32 + 6 * kl;
	}
	/* again, each ASCII byte as &#xHH; and the rest as is */
	char *x = malloc(cap), *p = x;
	if (!x)
		abort();
	p += sprintf(p, "<Delete>%s", l.quiet ? "<Quiet>true</Quiet>" : "");
	for (size_t i = 0; i < l.n; i++) {
		p += sprintf(p, "<Object><Key>");
		for (const unsigned char *c = (const unsigned char *)l.objects[i].key; *c; c++)
			p += *c < 0x80 ? sprintf(p, "&#x%X;", *c) : sprintf(p, "%c", *c);
		p += sprintf(p, "</Key></Object>");
	}
	p += sprintf(p, "</Delete>");
	if (cos_parse_delete((const unsigned char *)x, (size_t)(p - x), &l2, NULL) < 0 ||
	    l2.n != l.n || l2.quiet != l.quiet)
		abort();
	for (size_t i = 0; i < l.n; i++)
		if (strcmp(l.objects[i].key, l2.objects[i].key) != 0)
			abort();
	cos_delete_list_done(&l2);
	cos_delete_list_done(&l);
	free(x);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	uint8_t sel = data[0] % 4;
	data++;
	size--;
	if (sel == 1) {
		location(data, size);
		return 0;
	}
	if (sel == 2) {
		range(data, size);
		return 0;
	}
	if (sel == 3) {
		delete_body(data, size);
		return 0;
	}
	char *s = strndup((const char *)data, size);
	if (!s)
		abort();
	path(s);
	free(s);
	return 0;
}
