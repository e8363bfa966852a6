/* SPDX-License-Identifier: Apache-2.0 */
/*
 * diskfmt.h — virtual disk readers: raw, VHD (fixed, dynamic), qcow2.
 *
 * A disk source turns a disk image file into the stream of its virtual-disk
 * bytes, holes read as zeros, without ever holding the image in memory. Every
 * field of every header is untrusted: the readers validate offsets, sizes and
 * checksums against the file before they use them, and refuse what they do
 * not understand (differencing VHDs, qcow2 backing files, encryption, unknown
 * incompatible features) with a message that says how to convert the image.
 */
#ifndef SEALVM_DISKFMT_H
#define SEALVM_DISKFMT_H

#include <stdbool.h>
#include <stdint.h>

#include "sealvm/err.h"

enum disk_format {
	DISK_FORMAT_AUTO = 0, /* detect from content (requests only) */
	DISK_FORMAT_RAW,
	DISK_FORMAT_VHD, /* fixed or dynamic (requests); see disk_info.vhd_type */
	DISK_FORMAT_QCOW2,
	DISK_FORMAT_LUKS, /* detected, never opened as a source here (see luks.h) */
};

/* "auto", "raw", "vhd", "qcow2", "luks". */
const char *disk_format_name(enum disk_format f);
/* Parses "auto|raw|vhd|qcow2"; -EINVAL otherwise. */
int disk_format_from_name(const char *name, enum disk_format *ret);

enum vhd_type {
	VHD_TYPE_NONE = 0,
	VHD_TYPE_FIXED = 2,
	VHD_TYPE_DYNAMIC = 3,
	VHD_TYPE_DIFFERENCING = 4,
};

struct disk_info {
	enum disk_format format;
	uint64_t virtual_size; /* bytes the guest sees */
	uint64_t file_size;    /* bytes of the image file */

	/* VHD */
	enum vhd_type vhd_type;
	bool vhd_footer_checksum_ok;
	bool vhd_header_checksum_ok; /* dynamic only */
	char vhd_creator_app[5];
	uint32_t vhd_block_size; /* dynamic only */
	uint32_t vhd_max_table_entries;

	/* qcow2 */
	uint32_t qcow2_version;
	uint32_t qcow2_cluster_size;
	char qcow2_backing_file[1024]; /* "" when none */
	bool qcow2_has_compressed;     /* any compressed cluster seen in the L2 tables */
	char qcow2_compression[8];     /* "zlib" or "zstd" (header compression type) */
	bool qcow2_encrypted;
	uint64_t qcow2_incompatible_features;
};

struct disk_source;

/*
 * Identifies the format of the image at @path from its content (magic numbers,
 * VHD footer) and fills @ret without opening it as a source. Works for every
 * format in enum disk_format, including LUKS (only ->format, ->file_size set
 * for LUKS), and for images that disk_source_open would refuse (a differencing
 * VHD, a qcow2 with a backing file), so that `inspect` can describe them.
 * Errors: -ENOENT etc. from open; -EINVAL (NOT_A_DISK_IMAGE) for an empty file
 * or one whose size is no multiple of 512 and that has no known header;
 * -EBADMSG for a recognised but damaged header.
 */
int disk_probe(const char *path, struct disk_info *ret, struct sealvm_err *err);

/*
 * Opens @path as a source of virtual-disk bytes. @want is DISK_FORMAT_AUTO
 * (detect) or the format the user named (then the content must agree).
 * With AUTO, a file with no known header is taken as raw only when its size
 * is a non-zero multiple of 512 and its first sector carries the 0x55AA boot
 * signature (MBR or protective MBR of GPT); otherwise -EINVAL
 * NOT_A_DISK_IMAGE that tells the user to say --in-format raw if it is one.
 * Refusals (each with a reason code and a message saying how to flatten):
 * VHD_DIFFERENCING, QCOW2_BACKING_FILE, QCOW2_ENCRYPTED, QCOW2_UNSUPPORTED_FEATURE,
 * QCOW2_ZSTD; damage: VHD_TRUNCATED, VHD_FOOTER_CHECKSUM, VHD_HEADER_CHECKSUM,
 * VHD_BAT_OUT_OF_RANGE, QCOW2_CORRUPT, ...; LUKS input: ALREADY_LUKS; a
 * named format the content contradicts: FORMAT_MISMATCH. An opened source's
 * virtual size is always a non-zero multiple of 512 (else -EINVAL
 * VIRTUAL_SIZE_UNSUPPORTED). docs/internals/diskfmt.md lists every reason.
 */
int disk_source_open(const char *path, enum disk_format want, struct disk_source **ret,
		     struct sealvm_err *err);

const struct disk_info *disk_source_info(const struct disk_source *src);

/*
 * Reads virtual bytes [@off, @off + @len) into @buf; unallocated ranges read
 * as zeros. @off + @len must not pass the virtual size (-EINVAL). Damage
 * found while reading (a cluster offset past the end, a bad compressed
 * cluster) is -EBADMSG with the reason. Not thread-safe: one source, one
 * reader thread (the pipeline reads in order, but any offset must work).
 * Returns 0 when all @len bytes were read; a file that shrank under the
 * reader is -EIO SHORT_READ.
 */
int disk_source_read(struct disk_source *src, uint64_t off, void *buf, size_t len,
		     struct sealvm_err *err);

void disk_source_free(struct disk_source *src);

static inline void disk_source_freep(struct disk_source **s)
{
	disk_source_free(*s);
}
#define _cleanup_disk_source_ _cleanup_(disk_source_freep)

#endif
