/* SPDX-License-Identifier: Apache-2.0 */
/*
 * diskfmt_qcow2.c — qcow2 images, versions 2 and 3, read-only.
 *
 * A virtual cluster is found through two tables: the L1 table (one entry per
 * L2 table) and L2 tables (one entry per cluster): a standard cluster (host
 * offset, cluster aligned), a zero cluster (v3 flag), an unallocated one
 * (reads as zeros: backing files are refused) or a compressed one (a zlib raw
 * deflate stream, decompressed into one cluster). All big-endian.
 *
 * Every header field and table entry is untrusted: offsets are checked to be
 * aligned and inside the file before use, sizes against overflow, and the
 * whole mapping is checked once at open (every L2 table is read once) so that
 * a damaged image is refused before the first byte is consumed. Reads
 * coalesce host-contiguous clusters into one pread; a few L2 tables and the
 * last decompressed cluster are cached. This file must never load the whole
 * image, follow a backing file, or accept a feature it does not implement
 * (external data files, extended L2 entries, zstd, encryption).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "sealvm/macro.h"

#include "diskfmt_internal.h"

#define QCOW2_V2_HEADER_LEN 72u
#define QCOW2_V3_HEADER_MIN 104u
#define QCOW2_HEADER_READ 112u /* through the compression type byte and its padding */
#define QCOW2_MIN_CLUSTER_BITS 9u
#define QCOW2_MAX_CLUSTER_BITS 21u
#define QCOW2_MAX_L1_BYTES (32u << 20) /* qemu's limit for the active L1 table */
#define QCOW2_BACKING_NAME_MAX 1023u

#define QCOW2_INCOMPAT_DIRTY (UINT64_C(1) << 0)
#define QCOW2_INCOMPAT_CORRUPT (UINT64_C(1) << 1)
#define QCOW2_INCOMPAT_DATA_FILE (UINT64_C(1) << 2)
#define QCOW2_INCOMPAT_COMPRESSION (UINT64_C(1) << 3)
#define QCOW2_INCOMPAT_EXTL2 (UINT64_C(1) << 4)
#define QCOW2_INCOMPAT_KNOWN                                                                       \
	(QCOW2_INCOMPAT_DIRTY | QCOW2_INCOMPAT_CORRUPT | QCOW2_INCOMPAT_DATA_FILE |                \
	 QCOW2_INCOMPAT_COMPRESSION | QCOW2_INCOMPAT_EXTL2)

#define QCOW2_COMPRESSION_ZLIB 0u
#define QCOW2_COMPRESSION_ZSTD 1u

#define QCOW2_OFLAG_COMPRESSED (UINT64_C(1) << 62)
#define QCOW2_OFLAG_ZERO (UINT64_C(1) << 0)
#define QCOW2_OFFSET_MASK UINT64_C(0x00fffffffffffe00) /* bits 9-55 */

#define QCOW2_L2_CACHE_SLOTS 4
/* Compressed bytes are read ahead in windows this large (or two clusters, if larger). */
#define QCOW2_COMPRESSED_WINDOW (512u << 10)

struct qcow2_header {
	uint32_t version;
	uint64_t backing_file_offset;
	uint32_t backing_file_size;
	uint32_t cluster_bits;
	uint64_t size;
	uint32_t crypt_method;
	uint32_t l1_size;
	uint64_t l1_table_offset;
	uint64_t incompatible_features;
	uint32_t header_length;
	uint8_t compression_type;
};

struct qcow2_l2_slot {
	uint64_t offset; /* host offset of the table; 0: empty slot */
	uint64_t used;	 /* tick of the last use */
	uint64_t *table; /* host order */
};

struct qcow2 {
	struct qcow2_header h;
	uint32_t cluster_bits;
	uint64_t cluster_size;
	uint32_t l2_bits; /* log2 of entries per L2 table */
	uint64_t total_clusters;
	uint64_t *l1; /* host order; l1_used entries */
	uint64_t l1_used;

	/* Compressed cluster descriptor layout. */
	unsigned csize_shift;
	uint64_t csize_mask;
	uint64_t coffset_mask;

	struct qcow2_l2_slot l2_cache[QCOW2_L2_CACHE_SLOTS];
	uint64_t tick;

	z_stream zs;
	bool zs_ready;
	unsigned char *cwin; /* compressed bytes [cwin_off, cwin_off + cwin_len) */
	size_t cwin_cap;
	uint64_t cwin_off;
	size_t cwin_len;
	unsigned char *cluster; /* decompressed cluster cluster_vc */
	uint64_t cluster_vc;	/* UINT64_MAX: none */
};

enum qcow2_kind {
	QCOW2_UNALLOCATED,
	QCOW2_ZERO,
	QCOW2_NORMAL,
	QCOW2_COMPRESSED,
};

struct qcow2_map {
	enum qcow2_kind kind;
	uint64_t host;	/* NORMAL: host cluster offset; COMPRESSED: offset of the stream */
	uint64_t csize; /* COMPRESSED: bytes of the stream present in the file */
};

static int qcow2_read_header(const struct disk_source *src, struct qcow2_header *ret,
			     struct sealvm_err *err)
{
	unsigned char buf[QCOW2_HEADER_READ] = {0};
	uint64_t fsize = src->info.file_size;
	size_t n;
	int r;

	if (fsize < QCOW2_V2_HEADER_LEN)
		return sealvm_err_set(err, -EBADMSG, "QCOW2_BAD_HEADER",
				      "%s is too small (%" PRIu64
				      " bytes) to hold a qcow2 header; it is truncated",
				      src->path, fsize);
	n = (size_t)MIN(fsize, (uint64_t)sizeof(buf));
	r = disk_pread_exact(src, buf, n, 0, "the qcow2 header", err);
	if (r < 0)
		return r;

	*ret = (struct qcow2_header){
		.version = disk_be32(buf + 4),
		.backing_file_offset = disk_be64(buf + 8),
		.backing_file_size = disk_be32(buf + 16),
		.cluster_bits = disk_be32(buf + 20),
		.size = disk_be64(buf + 24),
		.crypt_method = disk_be32(buf + 32),
		.l1_size = disk_be32(buf + 36),
		.l1_table_offset = disk_be64(buf + 40),
		.header_length = QCOW2_V2_HEADER_LEN,
		.compression_type = QCOW2_COMPRESSION_ZLIB,
	};
	if (ret->version >= 3) {
		if (n < QCOW2_V3_HEADER_MIN)
			return sealvm_err_set(err, -EBADMSG, "QCOW2_BAD_HEADER",
					      "%s is too small (%" PRIu64
					      " bytes) to hold a qcow2 v3 header; it is truncated",
					      src->path, fsize);
		ret->incompatible_features = disk_be64(buf + 72);
		ret->header_length = disk_be32(buf + 100);
		if (ret->header_length > QCOW2_V3_HEADER_MIN && n > QCOW2_V3_HEADER_MIN)
			ret->compression_type = buf[104];
	}
	return 0;
}

/*
 * The header's own consistency: geometry, where the L1 table and the backing
 * file name lie. Features are judged separately (qcow2_check_features) so
 * that a probe can describe images that opening refuses.
 */
static int qcow2_check_structure(const struct disk_source *src, const struct qcow2_header *h,
				 struct sealvm_err *err)
{
	uint64_t fsize = src->info.file_size, cluster_size, l1_needed;

	if (h->cluster_bits < QCOW2_MIN_CLUSTER_BITS || h->cluster_bits > QCOW2_MAX_CLUSTER_BITS)
		return sealvm_err_set(err, -EBADMSG, "QCOW2_BAD_HEADER",
				      "%s: qcow2 cluster_bits %" PRIu32
				      " is outside 9..21; the image is damaged",
				      src->path, h->cluster_bits);
	cluster_size = UINT64_C(1) << h->cluster_bits;

	if (h->version >= 3) {
		if (h->header_length < QCOW2_V3_HEADER_MIN || h->header_length > cluster_size)
			return sealvm_err_set(err, -EBADMSG, "QCOW2_BAD_HEADER",
					      "%s: qcow2 header length %" PRIu32
					      " is invalid; the image is damaged",
					      src->path, h->header_length);
		if (h->header_length > fsize)
			return sealvm_err_set(err, -EBADMSG, "QCOW2_BAD_HEADER",
					      "%s ends inside its qcow2 header; it is truncated",
					      src->path);
	}

	/* Each L1 entry maps one L2 table of cluster_size / 8 clusters. */
	l1_needed = disk_div_round_up(h->size, cluster_size * (cluster_size / 8));
	if (l1_needed > QCOW2_MAX_L1_BYTES / 8)
		return sealvm_err_set(err, -E2BIG, "QCOW2_TOO_LARGE",
				      "%s: qcow2 virtual size %" PRIu64
				      " needs an L1 table larger than 32 MiB; not supported",
				      src->path, h->size);
	if (l1_needed > h->l1_size)
		return sealvm_err_set(err, -EBADMSG, "QCOW2_BAD_HEADER",
				      "%s: the qcow2 L1 table (%" PRIu32
				      " entries) is too small for the virtual size %" PRIu64
				      "; the image is damaged",
				      src->path, h->l1_size, h->size);
	if (l1_needed > 0 && ((h->l1_table_offset & (cluster_size - 1)) != 0 ||
			      !disk_range_ok(h->l1_table_offset, l1_needed * 8, fsize)))
		return sealvm_err_set(err, -EBADMSG, "QCOW2_BAD_HEADER",
				      "%s: the qcow2 L1 table (offset %" PRIu64 ", %" PRIu64
				      " entries) is unaligned or lies past the end of the file "
				      "(file size %" PRIu64 "); the image is truncated or damaged",
				      src->path, h->l1_table_offset, l1_needed, fsize);

	if (h->backing_file_offset != 0 && h->backing_file_size != 0 &&
	    (h->backing_file_size > QCOW2_BACKING_NAME_MAX ||
	     !disk_range_ok(h->backing_file_offset, h->backing_file_size, fsize)))
		return sealvm_err_set(err, -EBADMSG, "QCOW2_BAD_HEADER",
				      "%s: the qcow2 backing file name (offset %" PRIu64
				      ", %" PRIu32 " bytes) is too long or lies past the end of "
				      "the file; the image is damaged",
				      src->path, h->backing_file_offset, h->backing_file_size);
	return 0;
}

static const char *qcow2_compression_name(uint8_t t)
{
	switch (t) {
	case QCOW2_COMPRESSION_ZLIB:
		return "zlib";
	case QCOW2_COMPRESSION_ZSTD:
		return "zstd";
	default:
		return "unknown";
	}
}

static int qcow2_fill_info(struct disk_source *src, const struct qcow2_header *h,
			   struct sealvm_err *err)
{
	struct disk_info *info = &src->info;

	info->format = DISK_FORMAT_QCOW2;
	info->virtual_size = h->size;
	info->qcow2_version = h->version;
	info->qcow2_cluster_size = UINT32_C(1) << h->cluster_bits;
	info->qcow2_encrypted = h->crypt_method != 0;
	info->qcow2_incompatible_features = h->incompatible_features;
	snprintf(info->qcow2_compression, sizeof(info->qcow2_compression), "%s",
		 qcow2_compression_name(h->compression_type));

	info->qcow2_backing_file[0] = '\0';
	if (h->backing_file_offset != 0 && h->backing_file_size != 0) {
		char name[QCOW2_BACKING_NAME_MAX + 1];
		int r;

		r = disk_pread_exact(src, name, h->backing_file_size, h->backing_file_offset,
				     "the qcow2 backing file name", err);
		if (r < 0)
			return r;
		disk_copy_printable(info->qcow2_backing_file, sizeof(info->qcow2_backing_file),
				    name, h->backing_file_size);
		/* A name of NULs is still a backing file; keep it visible. */
		if (info->qcow2_backing_file[0] == '\0')
			snprintf(info->qcow2_backing_file, sizeof(info->qcow2_backing_file), "?");
	}
	return 0;
}

/* What opening refuses although the header is intact. */
static int qcow2_check_features(const struct disk_source *src, const struct qcow2_header *h,
				struct sealvm_err *err)
{
	uint64_t f = h->incompatible_features;
	const char *path = src->path;

	if (f & QCOW2_INCOMPAT_CORRUPT)
		return sealvm_err_set(err, -EBADMSG, "QCOW2_CORRUPT",
				      "%s is marked corrupt by QEMU; repair it with qemu-img check "
				      "-r all %s and convert it (qemu-img convert -O qcow2 %s "
				      "fixed.qcow2) before using it",
				      path, path, path);
	if (f & QCOW2_INCOMPAT_DATA_FILE)
		return sealvm_err_set(err, -ENOTSUP, "QCOW2_UNSUPPORTED_FEATURE",
				      "%s keeps its data in an external data file, which is not "
				      "supported; convert it: qemu-img convert -O qcow2 %s "
				      "flat.qcow2",
				      path, path);
	if (f & QCOW2_INCOMPAT_EXTL2)
		return sealvm_err_set(err, -ENOTSUP, "QCOW2_UNSUPPORTED_FEATURE",
				      "%s uses extended L2 entries (subclusters), which are not "
				      "supported; convert it: qemu-img convert -O qcow2 %s "
				      "flat.qcow2",
				      path, path);
	if (f & ~QCOW2_INCOMPAT_KNOWN)
		return sealvm_err_set(err, -ENOTSUP, "QCOW2_UNSUPPORTED_FEATURE",
				      "%s uses unknown qcow2 incompatible features (bits 0x%" PRIx64
				      "); convert it with a QEMU that knows them: qemu-img convert "
				      "-O raw %s flat.raw",
				      path, f & ~QCOW2_INCOMPAT_KNOWN, path);
	if (h->compression_type == QCOW2_COMPRESSION_ZSTD)
		return sealvm_err_set(err, -ENOTSUP, "QCOW2_ZSTD",
				      "%s uses zstd compression, which is not supported; convert "
				      "it: qemu-img convert -O qcow2 %s plain.qcow2 (or -O raw)",
				      path, path);
	if (h->compression_type != QCOW2_COMPRESSION_ZLIB)
		return sealvm_err_set(err, -ENOTSUP, "QCOW2_UNSUPPORTED_FEATURE",
				      "%s uses unknown qcow2 compression type %u; convert it: "
				      "qemu-img convert -O raw %s flat.raw",
				      path, h->compression_type, path);
	if (f & QCOW2_INCOMPAT_COMPRESSION)
		return sealvm_err_set(err, -EBADMSG, "QCOW2_BAD_HEADER",
				      "%s: the qcow2 compression-type feature bit is set for zlib; "
				      "the image is damaged",
				      path);
	if (h->crypt_method != 0)
		return sealvm_err_set(err, -ENOTSUP, "QCOW2_ENCRYPTED",
				      "%s is encrypted by QEMU (method %" PRIu32
				      "); decrypt it first: qemu-img convert with its secret, -O "
				      "raw",
				      path, h->crypt_method);
	if (src->info.qcow2_backing_file[0] != '\0')
		return sealvm_err_set(err, -ENOTSUP, "QCOW2_BACKING_FILE",
				      "%s has a backing file (%s) that holds part of its data; "
				      "flatten it first: qemu-img convert -O qcow2 %s flat.qcow2",
				      path, src->info.qcow2_backing_file, path);
	return 0;
}

static void qcow2_free(struct qcow2 *q)
{
	if (!q)
		return;
	for (size_t i = 0; i < ELEMENTSOF(q->l2_cache); i++)
		free(q->l2_cache[i].table);
	if (q->zs_ready)
		inflateEnd(&q->zs);
	free(q->cwin);
	free(q->cluster);
	free(q->l1);
	free(q);
}

static void qcow2_freep(struct qcow2 **q)
{
	qcow2_free(*q);
}

/* Builds the reader state and loads the part of the L1 table that maps the disk. */
static int qcow2_new(const struct disk_source *src, const struct qcow2_header *h,
		     struct qcow2 **ret, struct sealvm_err *err)
{
	_cleanup_(qcow2_freep) struct qcow2 *q = NULL;
	_cleanup_free_ unsigned char *raw = NULL;
	uint64_t per_l1;
	int r;

	q = calloc(1, sizeof(*q));
	if (!q)
		return sealvm_err_set(err, -ENOMEM, "NO_MEMORY", "out of memory opening %s",
				      src->path);
	q->h = *h;
	q->cluster_bits = h->cluster_bits;
	q->cluster_size = UINT64_C(1) << h->cluster_bits;
	q->l2_bits = h->cluster_bits - 3;
	q->total_clusters = disk_div_round_up(h->size, q->cluster_size);
	per_l1 = UINT64_C(1) << q->l2_bits;
	q->l1_used = disk_div_round_up(q->total_clusters, per_l1);
	q->csize_shift = 62 - (h->cluster_bits - 8);
	q->csize_mask = (UINT64_C(1) << (h->cluster_bits - 8)) - 1;
	q->coffset_mask = (UINT64_C(1) << q->csize_shift) - 1;
	q->cluster_vc = UINT64_MAX;

	q->l1 = calloc(MAX(q->l1_used, (uint64_t)1), sizeof(*q->l1));
	raw = malloc(MAX(q->l1_used * 8, (uint64_t)1));
	if (!q->l1 || !raw)
		return sealvm_err_set(err, -ENOMEM, "NO_MEMORY", "out of memory opening %s",
				      src->path);
	if (q->l1_used > 0) {
		r = disk_pread_exact(src, raw, q->l1_used * 8, h->l1_table_offset,
				     "the qcow2 L1 table", err);
		if (r < 0)
			return r;
	}
	for (uint64_t i = 0; i < q->l1_used; i++)
		q->l1[i] = disk_be64(raw + 8 * i);

	*ret = TAKE_PTR(q);
	return 0;
}

/* Host offset of the L2 table of L1 entry @i, or 0 when unallocated. */
static int qcow2_l2_offset(const struct disk_source *src, const struct qcow2 *q, uint64_t i,
			   uint64_t *ret, struct sealvm_err *err)
{
	uint64_t off = q->l1[i] & QCOW2_OFFSET_MASK;

	if (off != 0 && ((off & (q->cluster_size - 1)) != 0 ||
			 !disk_range_ok(off, q->cluster_size, src->info.file_size)))
		return sealvm_err_set(
			err, -EBADMSG, "QCOW2_L2_OUT_OF_RANGE",
			"%s: the qcow2 L2 table for virtual offset %" PRIu64
			" (host offset %" PRIu64 ") is unaligned or lies past the end "
			"of the file (file size %" PRIu64 "); the image is truncated or damaged",
			src->path, i << (q->l2_bits + q->cluster_bits), off, src->info.file_size);
	*ret = off;
	return 0;
}

/* Reads one L2 table (cluster_size bytes at @off) into @table, converted to host order. */
static int qcow2_read_l2(const struct disk_source *src, const struct qcow2 *q, uint64_t off,
			 uint64_t *table, struct sealvm_err *err)
{
	int r;

	r = disk_pread_exact(src, table, q->cluster_size, off, "a qcow2 L2 table", err);
	if (r < 0)
		return r;
	for (uint64_t i = 0; i < q->cluster_size / 8; i++)
		table[i] = disk_be64((const unsigned char *)&table[i]);
	return 0;
}

/* Decodes and checks the L2 entry @e of virtual cluster @vc. */
static int qcow2_classify(const struct disk_source *src, const struct qcow2 *q, uint64_t vc,
			  uint64_t e, struct qcow2_map *ret, struct sealvm_err *err)
{
	uint64_t fsize = src->info.file_size, voff = vc << q->cluster_bits;

	if (e & QCOW2_OFLAG_COMPRESSED) {
		uint64_t coff = e & q->coffset_mask;
		uint64_t sectors = ((e >> q->csize_shift) & q->csize_mask) + 1;
		uint64_t csize = sectors * DISK_SECTOR_SIZE - (coff & (DISK_SECTOR_SIZE - 1));

		/*
		 * The descriptor counts whole sectors; the stream may end inside the
		 * last one, and a file may end right after it, so the tail of the
		 * last sector may lie past the end of the file.
		 */
		if (coff >= fsize || coff + csize > ALIGN_UP(fsize, (uint64_t)DISK_SECTOR_SIZE))
			return sealvm_err_set(
				err, -EBADMSG, "QCOW2_CLUSTER_OUT_OF_RANGE",
				"%s: the compressed cluster at virtual offset %" PRIu64
				" points past the end of the file (host offset "
				"%" PRIu64 ", %" PRIu64 " bytes, file size %" PRIu64
				"); the image is truncated or damaged",
				src->path, voff, coff, csize, fsize);
		*ret = (struct qcow2_map){
			.kind = QCOW2_COMPRESSED,
			.host = coff,
			.csize = MIN(csize, fsize - coff),
		};
		return 0;
	}

	if (e & QCOW2_OFLAG_ZERO) {
		if (q->h.version < 3)
			return sealvm_err_set(err, -EBADMSG, "QCOW2_BAD_L2_ENTRY",
					      "%s: zero-cluster flag at virtual offset %" PRIu64
					      " in a version 2 image; the image is damaged",
					      src->path, voff);
		*ret = (struct qcow2_map){.kind = QCOW2_ZERO};
		return 0;
	}

	uint64_t host = e & QCOW2_OFFSET_MASK;
	if (host == 0) {
		*ret = (struct qcow2_map){.kind = QCOW2_UNALLOCATED};
		return 0;
	}
	if ((host & (q->cluster_size - 1)) != 0)
		return sealvm_err_set(err, -EBADMSG, "QCOW2_BAD_L2_ENTRY",
				      "%s: the cluster at virtual offset %" PRIu64
				      " has an unaligned host offset %" PRIu64
				      "; the image is damaged",
				      src->path, voff, host);
	/* Only the part of the last cluster inside the virtual disk must exist. */
	if (!disk_range_ok(host, MIN(q->cluster_size, q->h.size - voff), fsize))
		return sealvm_err_set(err, -EBADMSG, "QCOW2_CLUSTER_OUT_OF_RANGE",
				      "%s: the cluster at virtual offset %" PRIu64
				      " points past the end of the file (host offset %" PRIu64
				      ", file size %" PRIu64 "); the image is truncated or damaged",
				      src->path, voff, host, fsize);
	*ret = (struct qcow2_map){.kind = QCOW2_NORMAL, .host = host};
	return 0;
}

struct qcow2_l2_ref {
	uint64_t offset;
	uint64_t l1_index;
};

static int qcow2_l2_ref_cmp(const void *a, const void *b)
{
	const struct qcow2_l2_ref *x = a, *y = b;

	if (x->offset != y->offset)
		return x->offset < y->offset ? -1 : 1;
	if (x->l1_index != y->l1_index)
		return x->l1_index < y->l1_index ? -1 : 1;
	return 0;
}

/*
 * Reads every L2 table that maps the disk once and looks at every entry:
 * notes compressed clusters, and with @strict checks each entry as a read
 * would. Tables referenced by several L1 entries are read once, so the work
 * is bounded by the file size whatever the L1 table says. Without @strict,
 * damage is skipped (for probing).
 */
static int qcow2_scan(const struct disk_source *src, const struct qcow2 *q, bool strict,
		      bool *ret_compressed, struct sealvm_err *err)
{
	_cleanup_free_ struct qcow2_l2_ref *refs = NULL;
	_cleanup_free_ uint64_t *table = NULL;
	struct sealvm_err scratch = SEALVM_ERR_INIT;
	struct sealvm_err *e = strict ? err : &scratch;
	uint64_t n_refs = 0, per_l2 = UINT64_C(1) << q->l2_bits;
	bool compressed = false;
	int r;

	refs = calloc(MAX(q->l1_used, (uint64_t)1), sizeof(*refs));
	table = malloc(q->cluster_size);
	if (!refs || !table)
		return sealvm_err_set(err, -ENOMEM, "NO_MEMORY", "out of memory opening %s",
				      src->path);

	for (uint64_t i = 0; i < q->l1_used; i++) {
		uint64_t off;

		r = qcow2_l2_offset(src, q, i, &off, e);
		if (r < 0) {
			if (strict)
				return r;
			scratch = (struct sealvm_err)SEALVM_ERR_INIT;
			continue;
		}
		if (off != 0)
			refs[n_refs++] = (struct qcow2_l2_ref){.offset = off, .l1_index = i};
	}
	qsort(refs, n_refs, sizeof(*refs), qcow2_l2_ref_cmp);

	for (uint64_t i = 0; i < n_refs; i++) {
		uint64_t first_vc, limit;

		/* Sorted by (offset, index): the last of a run of equal offsets stands for all. */
		if (i + 1 < n_refs && refs[i + 1].offset == refs[i].offset)
			continue;
		r = qcow2_read_l2(src, q, refs[i].offset, table, err);
		if (r < 0)
			return r; /* an I/O error, not damage: never skipped */

		first_vc = refs[i].l1_index << q->l2_bits;
		limit = MIN(per_l2, q->total_clusters - first_vc);
		for (uint64_t j = 0; j < limit; j++) {
			struct qcow2_map m;

			if (table[j] & QCOW2_OFLAG_COMPRESSED)
				compressed = true;
			if (!strict)
				continue;
			r = qcow2_classify(src, q, first_vc + j, table[j], &m, err);
			if (r < 0)
				return r;
		}
	}

	*ret_compressed = compressed;
	return 0;
}

int qcow2_probe(struct disk_source *src, struct sealvm_err *err)
{
	_cleanup_(qcow2_freep) struct qcow2 *q = NULL;
	struct qcow2_header h;
	bool compressed = false;
	int r;

	r = qcow2_read_header(src, &h, err);
	if (r < 0)
		return r;
	src->info.format = DISK_FORMAT_QCOW2;
	src->info.qcow2_version = h.version;
	if (h.version != 2 && h.version != 3)
		return 0; /* described as far as we understand it; opening refuses */

	r = qcow2_check_structure(src, &h, err);
	if (r < 0)
		return r;
	r = qcow2_fill_info(src, &h, err);
	if (r < 0)
		return r;
	r = qcow2_new(src, &h, &q, err);
	if (r < 0)
		return r;
	r = qcow2_scan(src, q, false, &compressed, err);
	if (r < 0)
		return r;
	src->info.qcow2_has_compressed = compressed;
	return 0;
}

static int qcow2_get_l2(struct disk_source *src, struct qcow2 *q, uint64_t off,
			const uint64_t **ret, struct sealvm_err *err)
{
	struct qcow2_l2_slot *victim = &q->l2_cache[0];
	int r;

	q->tick++;
	for (size_t i = 0; i < ELEMENTSOF(q->l2_cache); i++) {
		struct qcow2_l2_slot *s = &q->l2_cache[i];

		if (s->table && s->offset == off) {
			s->used = q->tick;
			*ret = s->table;
			return 0;
		}
		if (!s->table || s->used < victim->used)
			victim = s;
		if (!s->table)
			break;
	}

	if (!victim->table) {
		victim->table = malloc(q->cluster_size);
		if (!victim->table)
			return sealvm_err_set(err, -ENOMEM, "NO_MEMORY", "out of memory reading %s",
					      src->path);
	}
	victim->offset = 0; /* invalid until the read succeeds */
	r = qcow2_read_l2(src, q, off, victim->table, err);
	if (r < 0)
		return r;
	victim->offset = off;
	victim->used = q->tick;
	*ret = victim->table;
	return 0;
}

static int qcow2_lookup(struct disk_source *src, struct qcow2 *q, uint64_t vc,
			struct qcow2_map *ret, struct sealvm_err *err)
{
	const uint64_t *table = NULL;
	uint64_t l2_off;
	int r;

	/* vc < total_clusters, so vc >> l2_bits < l1_used (checked at open). */
	r = qcow2_l2_offset(src, q, vc >> q->l2_bits, &l2_off, err);
	if (r < 0)
		return r;
	if (l2_off == 0) {
		*ret = (struct qcow2_map){.kind = QCOW2_UNALLOCATED};
		return 0;
	}
	r = qcow2_get_l2(src, q, l2_off, &table, err);
	if (r < 0)
		return r;
	return qcow2_classify(src, q, vc, table[vc & ((UINT64_C(1) << q->l2_bits) - 1)], ret, err);
}

/* Decompresses virtual cluster @vc (descriptor @m) into q->cluster, unless it is there already. */
static int qcow2_decompress(struct disk_source *src, struct qcow2 *q, uint64_t vc,
			    const struct qcow2_map *m, struct sealvm_err *err)
{
	const unsigned char *in;
	int r, zr;

	if (q->cluster_vc == vc)
		return 0;
	q->cluster_vc = UINT64_MAX;

	if (!q->zs_ready) {
		q->cwin_cap = (size_t)MAX((uint64_t)QCOW2_COMPRESSED_WINDOW, 2 * q->cluster_size);
		q->cwin = malloc(q->cwin_cap);
		q->cluster = malloc(q->cluster_size);
		if (!q->cwin || !q->cluster)
			return sealvm_err_set(err, -ENOMEM, "NO_MEMORY", "out of memory reading %s",
					      src->path);
		/* Raw deflate with a 4 KiB window, as QEMU writes it. */
		if (inflateInit2(&q->zs, -12) != Z_OK)
			return sealvm_err_set(err, -ENOMEM, "NO_MEMORY",
					      "cannot set up zlib to read %s", src->path);
		q->zs_ready = true;
	}

	/* m->csize <= 2 clusters <= cwin_cap, and [host, host + csize) is inside the file. */
	if (m->host < q->cwin_off || m->host + m->csize > q->cwin_off + q->cwin_len) {
		size_t n = (size_t)MIN((uint64_t)q->cwin_cap, src->info.file_size - m->host);

		q->cwin_len = 0;
		r = disk_pread_exact(src, q->cwin, n, m->host, "a compressed qcow2 cluster", err);
		if (r < 0)
			return r;
		q->cwin_off = m->host;
		q->cwin_len = n;
	}
	in = q->cwin + (m->host - q->cwin_off);

	if (inflateReset(&q->zs) != Z_OK)
		return sealvm_err_set(err, -EIO, "INTERNAL", "zlib reset failed reading %s",
				      src->path);
	q->zs.next_in = (unsigned char *)in;
	q->zs.avail_in = (uInt)m->csize;
	q->zs.next_out = q->cluster;
	q->zs.avail_out = (uInt)q->cluster_size;
	zr = inflate(&q->zs, Z_FINISH);
	/* The stream's length is only known to the sector, so stopping on a full cluster is fine.
	 */
	if ((zr != Z_STREAM_END && zr != Z_BUF_ERROR && zr != Z_OK) || q->zs.avail_out != 0)
		return sealvm_err_set(err, -EBADMSG, "QCOW2_BAD_COMPRESSED",
				      "%s: the compressed cluster at virtual offset %" PRIu64
				      " (host offset %" PRIu64 ") does not decompress to a whole "
				      "cluster; the image is damaged",
				      src->path, vc << q->cluster_bits, m->host);
	q->cluster_vc = vc;
	return 0;
}

static int qcow2_read(struct disk_source *src, uint64_t off, void *buf, size_t len,
		      struct sealvm_err *err)
{
	struct qcow2 *q = src->priv;
	unsigned char *out = buf, *run_buf = NULL;
	uint64_t run_host = 0;
	size_t run_len = 0;
	int r;

	while (len > 0) {
		uint64_t vc = off >> q->cluster_bits;
		size_t in = (size_t)(off & (q->cluster_size - 1));
		size_t n = (size_t)MIN((uint64_t)len, q->cluster_size - in);
		struct qcow2_map m;

		r = qcow2_lookup(src, q, vc, &m, err);
		if (r < 0)
			return r;

		if (m.kind == QCOW2_NORMAL && run_len > 0 && run_host + run_len == m.host + in) {
			run_len += n; /* host-contiguous: one pread for the whole run */
		} else {
			if (run_len > 0) {
				r = disk_pread_exact(src, run_buf, run_len, run_host,
						     "qcow2 cluster data", err);
				if (r < 0)
					return r;
				run_len = 0;
			}
			switch (m.kind) {
			case QCOW2_NORMAL:
				run_buf = out;
				run_host = m.host + in;
				run_len = n;
				break;
			case QCOW2_COMPRESSED:
				r = qcow2_decompress(src, q, vc, &m, err);
				if (r < 0)
					return r;
				memcpy(out, q->cluster + in, n);
				break;
			case QCOW2_ZERO:
			case QCOW2_UNALLOCATED:
				memset(out, 0, n);
				break;
			}
		}
		out += n;
		off += n;
		len -= n;
	}
	if (run_len > 0)
		return disk_pread_exact(src, run_buf, run_len, run_host, "qcow2 cluster data", err);
	return 0;
}

static void qcow2_done(struct disk_source *src)
{
	qcow2_free(src->priv);
	src->priv = NULL;
}

static const struct disk_source_ops qcow2_ops = {
	.read = qcow2_read,
	.done = qcow2_done,
};

int qcow2_open(struct disk_source *src, struct sealvm_err *err)
{
	struct qcow2_header h;
	struct qcow2 *q = NULL;
	bool compressed = false;
	int r;

	r = qcow2_read_header(src, &h, err);
	if (r < 0)
		return r;
	src->info.format = DISK_FORMAT_QCOW2;
	src->info.qcow2_version = h.version;
	if (h.version != 2 && h.version != 3)
		return sealvm_err_set(err, -ENOTSUP, "QCOW2_UNSUPPORTED_VERSION",
				      "%s is a qcow version %" PRIu32
				      " image; only versions 2 and 3 are supported: qemu-img "
				      "convert -O qcow2 %s new.qcow2",
				      src->path, h.version, src->path);

	r = qcow2_check_structure(src, &h, err);
	if (r < 0)
		return r;
	r = qcow2_fill_info(src, &h, err);
	if (r < 0)
		return r;
	r = qcow2_check_features(src, &h, err);
	if (r < 0)
		return r;

	r = qcow2_new(src, &h, &q, err);
	if (r < 0)
		return r;
	src->priv = q;
	src->ops = &qcow2_ops;

	r = qcow2_scan(src, q, true, &compressed, err);
	if (r < 0)
		return r;
	src->info.qcow2_has_compressed = compressed;
	return 0;
}
