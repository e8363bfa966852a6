// SPDX-License-Identifier: Apache-2.0
/*
 * fuzz_s3_multipart_xml.c — the CompleteMultipartUpload parser and the XML
 * writer.
 *
 * An accepted document holds 1..10000 parts in strictly ascending order, each
 * with a part number in range and an ETag; written back with the XML writer
 * (which escapes every text) it must parse to the same list. A refusal is
 * -EINVAL or -E2BIG with an S3 reason and no half-built list.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sealvm/s3.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void write_back(const struct s3_part_list *l)
{
	struct sealvm_err err = SEALVM_ERR_INIT;
	struct s3_part_list again;
	struct s3_xml *w = NULL;
	char *doc = NULL;
	size_t len = 0;

	if (s3_xml_new(S3_MULTIPART_XML_MAX, &w) < 0)
		return;
	s3_xml_open(w, "CompleteMultipartUpload", true);
	for (size_t i = 0; i < l->n; i++) {
		const struct s3_part *p = &l->parts[i];
		s3_xml_open(w, "Part", false);
		s3_xml_elemf(w, "ETag", "\"%s\"", p->etag);
		s3_xml_elemf(w, "PartNumber", "%u", p->number);
		if (p->checksum_crc32[0])
			s3_xml_elem(w, "ChecksumCRC32", p->checksum_crc32);
		if (p->checksum_crc32c[0])
			s3_xml_elem(w, "ChecksumCRC32C", p->checksum_crc32c);
		if (p->checksum_sha1[0])
			s3_xml_elem(w, "ChecksumSHA1", p->checksum_sha1);
		if (p->checksum_sha256[0])
			s3_xml_elem(w, "ChecksumSHA256", p->checksum_sha256);
		s3_xml_close(w);
	}
	int r = s3_xml_finish(w, &doc, &len);
	s3_xml_free(w);
	if (r == -ENOMEM || r == -E2BIG)
		return;
	if (r != 0)
		abort();
	if (s3_multipart_parse(doc, len, &again, &err) != 0 || again.n != l->n)
		abort();
	if (memcmp(again.parts, l->parts, l->n * sizeof(*l->parts)) != 0)
		abort();
	s3_part_list_done(&again);
	free(doc);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sealvm_err err = SEALVM_ERR_INIT;
	struct s3_part_list l;

	int r = s3_multipart_parse(data, size, &l, &err);
	if (r < 0) {
		if (r != -ENOMEM &&
		    ((r != -EINVAL && r != -E2BIG) || !err.reason[0] || l.parts || l.n))
			abort();
		return 0;
	}
	if (l.n < 1 || l.n > S3_MULTIPART_PARTS_MAX)
		abort();
	for (size_t i = 0; i < l.n; i++) {
		if (l.parts[i].number < 1 || l.parts[i].number > S3_MULTIPART_PARTS_MAX)
			abort();
		if (i && l.parts[i].number <= l.parts[i - 1].number)
			abort();
		if (!l.parts[i].etag[0] || strchr(l.parts[i].etag, '"'))
			abort();
	}
	write_back(&l);
	s3_part_list_done(&l);
	return 0;
}
