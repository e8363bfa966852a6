/* SPDX-License-Identifier: Apache-2.0 */
/*
 * diskfmt_internal.h — what the format backends of lib/diskfmt share.
 *
 * A struct disk_source is one open image: the file, what the probe learnt
 * about it (struct disk_info) and a backend (raw, VHD, qcow2) behind an ops
 * struct. diskfmt.c detects the format, checks the arguments of every read
 * against the virtual size and hands the read to the backend; a backend never
 * sees a read that passes the end of the virtual disk.
 */
#ifndef SEALVM_DISKFMT_INTERNAL_H
#define SEALVM_DISKFMT_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sealvm/diskfmt.h"
#include "sealvm/err.h"

#define DISK_SECTOR_SIZE 512u

struct disk_source;

struct disk_source_ops {
	/* [@off, @off + @len) lies inside the virtual disk and @len > 0. */
	int (*read)(struct disk_source *src, uint64_t off, void *buf, size_t len,
		    struct sealvm_err *err);
	/* Frees src->priv; src->priv may be NULL. */
	void (*done)(struct disk_source *src);
};

struct disk_source {
	const struct disk_source_ops *ops;
	struct disk_info info;
	int fd;
	char *path; /* as the user gave it, for messages */
	void *priv; /* the backend's state */
};

/* Big-endian field loads from untrusted header bytes (no alignment assumed). */
static inline uint16_t disk_be16(const unsigned char *p)
{
	return (uint16_t)((unsigned)p[0] << 8 | p[1]);
}

static inline uint32_t disk_be32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static inline uint64_t disk_be64(const unsigned char *p)
{
	return (uint64_t)disk_be32(p) << 32 | disk_be32(p + 4);
}

/* True when [@off, @off + @len) lies inside [0, @limit), without overflow. */
static inline bool disk_range_ok(uint64_t off, uint64_t len, uint64_t limit)
{
	return off <= limit && len <= limit - off;
}

/* Ceiling division that cannot overflow (@d > 0). */
static inline uint64_t disk_div_round_up(uint64_t n, uint64_t d)
{
	return n / d + (n % d != 0);
}

/*
 * Reads exactly @len bytes at @off of the image into @buf. A short read means
 * the file shrank after we measured it: -EIO SHORT_READ. @what names the
 * structure for the message ("the VHD footer", "an L2 table", ...).
 */
int disk_pread_exact(const struct disk_source *src, void *buf, size_t len, uint64_t off,
		     const char *what, struct sealvm_err *err);

/*
 * Copies at most @n bytes of untrusted text at @s into @dst (room for
 * @dstsz bytes), stopping at a NUL, replacing anything but printable ASCII
 * with '?'; always NUL-terminates. For names read from images that end up in
 * messages and on terminals.
 */
void disk_copy_printable(char *dst, size_t dstsz, const void *s, size_t n);

/* Backends. Each fills src->info (format-specific fields) and src->ops/priv. */

/* Number of bytes of the VHD footer at the end of the file: 512, or 511 for Virtual PC < 2004. */
int vhd_probe(struct disk_source *src, unsigned footer_len, struct sealvm_err *err);
int vhd_open(struct disk_source *src, unsigned footer_len, struct sealvm_err *err);

int qcow2_probe(struct disk_source *src, struct sealvm_err *err);
int qcow2_open(struct disk_source *src, struct sealvm_err *err);

/* Reads virtual bytes straight from the file at the same offset: raw images and fixed VHDs. */
extern const struct disk_source_ops raw_ops;
int raw_open(struct disk_source *src, struct sealvm_err *err);

#endif
