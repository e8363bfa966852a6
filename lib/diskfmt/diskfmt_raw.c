/* SPDX-License-Identifier: Apache-2.0 */
/*
 * diskfmt_raw.c — raw images: virtual byte N is file byte N.
 *
 * Also serves the data area of fixed VHDs, which is a raw image followed by
 * a 512-byte footer. Detection and the size rules (a non-zero multiple of 512;
 * with auto-detection also the 0x55AA boot signature) live in diskfmt.c.
 */
#include <errno.h>

#include "diskfmt_internal.h"

static int raw_read(struct disk_source *src, uint64_t off, void *buf, size_t len,
		    struct sealvm_err *err)
{
	return disk_pread_exact(src, buf, len, off, "disk data", err);
}

const struct disk_source_ops raw_ops = {
	.read = raw_read,
};

int raw_open(struct disk_source *src, struct sealvm_err *err)
{
	src->info.virtual_size = src->info.file_size;
	src->ops = &raw_ops;
	return 0;
}
