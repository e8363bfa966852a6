/* SPDX-License-Identifier: Apache-2.0 */
/*
 * diskfmt_vhd.c — VHD images (Virtual PC / Hyper-V "vpc"): fixed and dynamic.
 *
 * A fixed VHD is a raw disk followed by a 512-byte footer. A dynamic VHD
 * starts with a copy of the footer, then a dynamic header ("cxsparse"), a
 * block allocation table (BAT) of big-endian sector numbers, and blocks, each
 * a sector bitmap followed by block_size bytes of data; the footer ends the
 * file. The virtual size is the footer's current_size: the CHS geometry is
 * ignored (images written with qemu-img -o force_size=on carry the exact
 * size there; Hyper-V and disk2vhd use it too).
 *
 * Every field is untrusted. Both checksums must match, the block size must be
 * sane, the BAT must cover the disk, and every allocated block must lie
 * inside the file before the footer — all checked at open, before the first
 * read. This file must never follow a parent locator: differencing disks are
 * refused.
 */
#include <errno.h>
#include <inttypes.h>
#include <string.h>

#include "sealvm/macro.h"

#include "diskfmt_internal.h"

#define VHD_FOOTER_SIZE 512u
#define VHD_DYN_HEADER_SIZE 1024u
#define VHD_BAT_UNUSED 0xffffffffu
#define VHD_BLOCK_SIZE_MAX (256u << 20)
/* 64 MiB of BAT in memory; with the usual 2 MiB blocks that is 32 TiB of disk. */
#define VHD_BAT_MAX_ENTRIES (1u << 24)

/* Footer field offsets. */
#define VHD_F_COOKIE 0
#define VHD_F_DATA_OFFSET 16
#define VHD_F_CREATOR_APP 28
#define VHD_F_CURRENT_SIZE 48
#define VHD_F_DISK_TYPE 60
#define VHD_F_CHECKSUM 64

/* Dynamic header field offsets. */
#define VHD_H_COOKIE 0
#define VHD_H_TABLE_OFFSET 16
#define VHD_H_MAX_TABLE_ENTRIES 28
#define VHD_H_BLOCK_SIZE 32
#define VHD_H_CHECKSUM 36

struct vhd_footer {
	uint64_t data_offset;
	uint64_t current_size;
	uint32_t disk_type;
	uint32_t checksum_stored;
	uint32_t checksum_computed;
	char creator_app[5];
};

struct vhd_dyn_header {
	uint64_t table_offset;
	uint32_t max_table_entries;
	uint32_t block_size;
	uint32_t checksum_stored;
	uint32_t checksum_computed;
};

struct vhd {
	uint32_t *bat;	   /* host order; n_blocks entries */
	uint32_t n_blocks; /* blocks that cover the virtual size */
	uint32_t block_size;
	uint32_t bitmap_size;  /* bytes before each block's data, whole sectors */
	uint64_t data_end;     /* file size less the footer */
	unsigned char *bitmap; /* bitmap of cached_block */
	uint64_t cached_block; /* UINT64_MAX: none */
	bool bitmap_full;      /* every sector of cached_block is present */
	bool bitmap_empty;     /* no sector of cached_block is present */
};

/* One's complement of the byte sum, the checksum field counted as zero. */
static uint32_t vhd_checksum(const unsigned char *p, size_t len, size_t checksum_off)
{
	uint32_t sum = 0;

	for (size_t i = 0; i < len; i++)
		if (i < checksum_off || i >= checksum_off + 4)
			sum += p[i];
	return ~sum;
}

static enum vhd_type vhd_type_from_disk_type(uint32_t t)
{
	switch (t) {
	case VHD_TYPE_FIXED:
	case VHD_TYPE_DYNAMIC:
	case VHD_TYPE_DIFFERENCING:
		return (enum vhd_type)t;
	default:
		return VHD_TYPE_NONE;
	}
}

/* The detector found the cookie; this reads and decodes the footer (511 bytes: last byte is 0). */
static int vhd_read_footer(const struct disk_source *src, unsigned footer_len,
			   struct vhd_footer *ret, struct sealvm_err *err)
{
	unsigned char buf[VHD_FOOTER_SIZE] = {0};
	int r;

	if (footer_len > sizeof(buf) || src->info.file_size < footer_len)
		return sealvm_err_set(err, -EBADMSG, "VHD_TRUNCATED",
				      "%s is too small to hold a VHD footer", src->path);
	r = disk_pread_exact(src, buf, footer_len, src->info.file_size - footer_len,
			     "the VHD footer", err);
	if (r < 0)
		return r;
	if (memcmp(buf + VHD_F_COOKIE, "conectix", 8) != 0)
		return sealvm_err_set(err, -EBADMSG, "VHD_TRUNCATED",
				      "%s has no VHD footer at its end", src->path);

	*ret = (struct vhd_footer){
		.data_offset = disk_be64(buf + VHD_F_DATA_OFFSET),
		.current_size = disk_be64(buf + VHD_F_CURRENT_SIZE),
		.disk_type = disk_be32(buf + VHD_F_DISK_TYPE),
		.checksum_stored = disk_be32(buf + VHD_F_CHECKSUM),
		.checksum_computed = vhd_checksum(buf, sizeof(buf), VHD_F_CHECKSUM),
	};
	disk_copy_printable(ret->creator_app, sizeof(ret->creator_app), buf + VHD_F_CREATOR_APP, 4);
	return 0;
}

static int vhd_read_dyn_header(const struct disk_source *src, const struct vhd_footer *f,
			       uint64_t data_end, struct vhd_dyn_header *ret,
			       struct sealvm_err *err)
{
	unsigned char buf[VHD_DYN_HEADER_SIZE];
	int r;

	if (!disk_range_ok(f->data_offset, sizeof(buf), data_end))
		return sealvm_err_set(err, -EBADMSG, "VHD_BAD_HEADER",
				      "%s: the VHD dynamic header offset %" PRIu64
				      " lies past the end of the file (file size %" PRIu64
				      "); the image is damaged",
				      src->path, f->data_offset, src->info.file_size);
	r = disk_pread_exact(src, buf, sizeof(buf), f->data_offset, "the VHD dynamic header", err);
	if (r < 0)
		return r;
	if (memcmp(buf + VHD_H_COOKIE, "cxsparse", 8) != 0)
		return sealvm_err_set(err, -EBADMSG, "VHD_BAD_HEADER",
				      "%s: no VHD dynamic header (\"cxsparse\") at offset %" PRIu64
				      "; the image is damaged",
				      src->path, f->data_offset);

	*ret = (struct vhd_dyn_header){
		.table_offset = disk_be64(buf + VHD_H_TABLE_OFFSET),
		.max_table_entries = disk_be32(buf + VHD_H_MAX_TABLE_ENTRIES),
		.block_size = disk_be32(buf + VHD_H_BLOCK_SIZE),
		.checksum_stored = disk_be32(buf + VHD_H_CHECKSUM),
		.checksum_computed = vhd_checksum(buf, sizeof(buf), VHD_H_CHECKSUM),
	};
	return 0;
}

static void vhd_fill_info(struct disk_info *info, const struct vhd_footer *f)
{
	info->format = DISK_FORMAT_VHD;
	info->virtual_size = f->current_size;
	info->vhd_type = vhd_type_from_disk_type(f->disk_type);
	info->vhd_footer_checksum_ok = f->checksum_stored == f->checksum_computed;
	memcpy(info->vhd_creator_app, f->creator_app, sizeof(info->vhd_creator_app));
}

static void vhd_fill_header_info(struct disk_info *info, const struct vhd_dyn_header *h)
{
	info->vhd_header_checksum_ok = h->checksum_stored == h->checksum_computed;
	info->vhd_block_size = h->block_size;
	info->vhd_max_table_entries = h->max_table_entries;
}

/*
 * Describes without judging: checksum mismatches are reported in the info
 * (and refused by vhd_open), so that an inspection can show them. Only a
 * dynamic header that cannot be found behind a valid footer is an error.
 */
int vhd_probe(struct disk_source *src, unsigned footer_len, struct sealvm_err *err)
{
	struct sealvm_err local = SEALVM_ERR_INIT;
	struct vhd_footer f;
	struct vhd_dyn_header h;
	int r;

	r = vhd_read_footer(src, footer_len, &f, err);
	if (r < 0)
		return r;
	vhd_fill_info(&src->info, &f);

	if (f.disk_type != VHD_TYPE_DYNAMIC && f.disk_type != VHD_TYPE_DIFFERENCING)
		return 0;

	r = vhd_read_dyn_header(src, &f, src->info.file_size - footer_len, &h, &local);
	if (r < 0) {
		/* With a bad footer checksum, data_offset itself is suspect: describe what we have.
		 */
		if (!src->info.vhd_footer_checksum_ok && r == -EBADMSG)
			return 0;
		return sealvm_err_set(err, local.code, local.reason, "%s", local.message);
	}
	vhd_fill_header_info(&src->info, &h);
	return 0;
}

static bool vhd_bit_set(const unsigned char *bitmap, uint64_t sector)
{
	return bitmap[sector / 8] & (0x80u >> (sector % 8));
}

static int vhd_load_bitmap(struct disk_source *src, struct vhd *v, uint64_t block,
			   struct sealvm_err *err)
{
	uint32_t sectors = v->block_size / DISK_SECTOR_SIZE;
	bool full = true, empty = true;
	int r;

	if (v->cached_block == block)
		return 0;

	v->cached_block = UINT64_MAX;
	r = disk_pread_exact(src, v->bitmap, v->bitmap_size,
			     (uint64_t)v->bat[block] * DISK_SECTOR_SIZE, "a VHD block bitmap", err);
	if (r < 0)
		return r;

	if (sectors % 8 == 0) {
		for (uint32_t i = 0; i < sectors / 8; i++) {
			full = full && v->bitmap[i] == 0xff;
			empty = empty && v->bitmap[i] == 0;
		}
	} else {
		for (uint32_t s = 0; s < sectors; s++) {
			bool set = vhd_bit_set(v->bitmap, s);
			full = full && set;
			empty = empty && !set;
		}
	}
	v->bitmap_full = full;
	v->bitmap_empty = empty;
	v->cached_block = block;
	return 0;
}

/* Zeroes, in @out (block bytes [@in, @in + @n)), the sectors the cached bitmap marks absent. */
static void vhd_zero_absent(const struct vhd *v, uint32_t in, unsigned char *out, size_t n)
{
	uint64_t first = in / DISK_SECTOR_SIZE, last = (in + n - 1) / DISK_SECTOR_SIZE;

	for (uint64_t s = first; s <= last; s++) {
		uint64_t lo, hi;

		if (vhd_bit_set(v->bitmap, s))
			continue;
		lo = MAX(s * DISK_SECTOR_SIZE, (uint64_t)in);
		hi = MIN((s + 1) * DISK_SECTOR_SIZE, (uint64_t)in + n);
		memset(out + (lo - in), 0, hi - lo);
	}
}

static int vhd_dynamic_read(struct disk_source *src, uint64_t off, void *buf, size_t len,
			    struct sealvm_err *err)
{
	struct vhd *v = src->priv;
	unsigned char *out = buf;
	int r;

	while (len > 0) {
		uint64_t block = off / v->block_size;
		uint32_t in = (uint32_t)(off % v->block_size);
		size_t n = (size_t)MIN((uint64_t)len, (uint64_t)(v->block_size - in));

		/* off < virtual size <= n_blocks * block_size (checked at open). */
		if (block >= v->n_blocks)
			return sealvm_err_set(err, -EINVAL, "INTERNAL",
					      "VHD read past the BAT of %s", src->path);

		if (v->bat[block] == VHD_BAT_UNUSED) {
			memset(out, 0, n);
		} else {
			r = vhd_load_bitmap(src, v, block, err);
			if (r < 0)
				return r;
			if (v->bitmap_empty) {
				memset(out, 0, n);
			} else {
				uint64_t host = (uint64_t)v->bat[block] * DISK_SECTOR_SIZE +
						v->bitmap_size + in;

				r = disk_pread_exact(src, out, n, host, "VHD block data", err);
				if (r < 0)
					return r;
				if (!v->bitmap_full)
					vhd_zero_absent(v, in, out, n);
			}
		}
		out += n;
		off += n;
		len -= n;
	}
	return 0;
}

static void vhd_done(struct disk_source *src)
{
	struct vhd *v = src->priv;

	if (!v)
		return;
	free(v->bat);
	free(v->bitmap);
	free(v);
	src->priv = NULL;
}

static const struct disk_source_ops vhd_dynamic_ops = {
	.read = vhd_dynamic_read,
	.done = vhd_done,
};

static int vhd_open_dynamic(struct disk_source *src, const struct vhd_footer *f, uint64_t data_end,
			    struct sealvm_err *err)
{
	_cleanup_free_ unsigned char *raw_bat = NULL;
	struct vhd_dyn_header h;
	struct vhd *v;
	uint64_t n_blocks, bat_bytes;
	int r;

	r = vhd_read_dyn_header(src, f, data_end, &h, err);
	if (r < 0)
		return r;
	vhd_fill_header_info(&src->info, &h);

	if (h.checksum_stored != h.checksum_computed)
		return sealvm_err_set(err, -EBADMSG, "VHD_HEADER_CHECKSUM",
				      "%s: the VHD dynamic header checksum does not match (stored "
				      "0x%08" PRIx32 ", computed 0x%08" PRIx32
				      "); the image is damaged, copy or download it again",
				      src->path, h.checksum_stored, h.checksum_computed);
	if (h.block_size < DISK_SECTOR_SIZE || h.block_size > VHD_BLOCK_SIZE_MAX ||
	    (h.block_size & (h.block_size - 1)) != 0)
		return sealvm_err_set(err, -EBADMSG, "VHD_BAD_HEADER",
				      "%s: VHD block size %" PRIu32
				      " is not a power of two between 512 bytes and 256 MiB",
				      src->path, h.block_size);
	if ((uint64_t)h.max_table_entries * h.block_size < f->current_size)
		return sealvm_err_set(
			err, -EBADMSG, "VHD_BAD_HEADER",
			"%s: the VHD block table (%" PRIu32 " blocks of %" PRIu32
			" bytes) does not cover the disk size %" PRIu64 "; the image is damaged",
			src->path, h.max_table_entries, h.block_size, f->current_size);

	n_blocks = disk_div_round_up(f->current_size, h.block_size);
	if (n_blocks > VHD_BAT_MAX_ENTRIES)
		return sealvm_err_set(err, -E2BIG, "VHD_BAT_TOO_LARGE",
				      "%s: the VHD block table has %" PRIu64
				      " entries, more than the %u this reader accepts; convert "
				      "the image first: qemu-img convert -O qcow2 %s out.qcow2",
				      src->path, n_blocks, VHD_BAT_MAX_ENTRIES, src->path);

	/* Only the entries that map the virtual disk are read; the rest of the table is unused. */
	bat_bytes = n_blocks * 4;
	if (!disk_range_ok(h.table_offset, bat_bytes, data_end))
		return sealvm_err_set(err, -EBADMSG, "VHD_BAD_HEADER",
				      "%s: the VHD block table (offset %" PRIu64 ", %" PRIu64
				      " bytes) lies past the end of the file (file size %" PRIu64
				      "); the image is truncated or damaged",
				      src->path, h.table_offset, bat_bytes, src->info.file_size);

	v = calloc(1, sizeof(*v));
	if (!v)
		return sealvm_err_set(err, -ENOMEM, "NO_MEMORY", "out of memory opening %s",
				      src->path);
	src->priv = v;
	src->ops = &vhd_dynamic_ops;
	v->n_blocks = (uint32_t)n_blocks;
	v->block_size = h.block_size;
	v->bitmap_size = ALIGN_UP(MAX(h.block_size / DISK_SECTOR_SIZE / 8, 1u), DISK_SECTOR_SIZE);
	v->data_end = data_end;
	v->cached_block = UINT64_MAX;

	raw_bat = malloc(MAX(bat_bytes, 1));
	v->bat = calloc(MAX(n_blocks, 1), sizeof(*v->bat));
	v->bitmap = malloc(v->bitmap_size);
	if (!raw_bat || !v->bat || !v->bitmap)
		return sealvm_err_set(err, -ENOMEM, "NO_MEMORY", "out of memory opening %s",
				      src->path);
	r = disk_pread_exact(src, raw_bat, bat_bytes, h.table_offset, "the VHD block table", err);
	if (r < 0)
		return r;

	for (uint64_t i = 0; i < n_blocks; i++) {
		uint32_t e = disk_be32(raw_bat + 4 * i);

		v->bat[i] = e;
		if (e == VHD_BAT_UNUSED)
			continue;
		if (!disk_range_ok((uint64_t)e * DISK_SECTOR_SIZE,
				   (uint64_t)v->bitmap_size + v->block_size, data_end))
			return sealvm_err_set(err, -EBADMSG, "VHD_BAT_OUT_OF_RANGE",
					      "block %" PRIu64 " of %s points past the end of the "
					      "file (offset %" PRIu64 ", file size %" PRIu64
					      "); the image is truncated or damaged",
					      i, src->path, (uint64_t)e * DISK_SECTOR_SIZE,
					      src->info.file_size);
	}
	return 0;
}

int vhd_open(struct disk_source *src, unsigned footer_len, struct sealvm_err *err)
{
	struct vhd_footer f;
	uint64_t data_end;
	int r;

	r = vhd_read_footer(src, footer_len, &f, err);
	if (r < 0)
		return r;
	vhd_fill_info(&src->info, &f);
	data_end = src->info.file_size - footer_len;

	if (f.checksum_stored != f.checksum_computed)
		return sealvm_err_set(
			err, -EBADMSG, "VHD_FOOTER_CHECKSUM",
			"%s: the VHD footer checksum does not match (stored 0x%08" PRIx32
			", computed 0x%08" PRIx32
			"); the image is damaged, copy or download it again",
			src->path, f.checksum_stored, f.checksum_computed);

	switch (f.disk_type) {
	case VHD_TYPE_FIXED:
		if (f.current_size > data_end)
			return sealvm_err_set(err, -EBADMSG, "VHD_TRUNCATED",
					      "%s: the VHD footer says the disk has %" PRIu64
					      " bytes but the file holds only %" PRIu64
					      " bytes of data; the file is truncated, copy or "
					      "download it again",
					      src->path, f.current_size, data_end);
		src->ops = &raw_ops;
		return 0;
	case VHD_TYPE_DYNAMIC:
		return vhd_open_dynamic(src, &f, data_end, err);
	case VHD_TYPE_DIFFERENCING:
		return sealvm_err_set(err, -ENOTSUP, "VHD_DIFFERENCING",
				      "%s is a differencing VHD, which needs its parent image; "
				      "flatten it first: qemu-img convert -O raw %s flat.raw (or "
				      "-O vpc -o subformat=fixed)",
				      src->path, src->path);
	default:
		return sealvm_err_set(err, -EBADMSG, "VHD_BAD_HEADER",
				      "%s: unknown VHD disk type %" PRIu32
				      " (expected 2 fixed or 3 dynamic); the image is damaged",
				      src->path, f.disk_type);
	}
}
