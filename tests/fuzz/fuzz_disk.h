/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fuzz_disk.h — the harness the disk-format fuzz targets share: the input
 * becomes a file (memfd), is probed, opened auto-detected and as a named
 * format, and read in chunks of several sizes, aligned and not; reading the
 * same bytes in other chunkings must give the same bytes, and reading past the
 * end must be refused. Included by exactly one target per binary.
 */
#ifndef SEALVM_FUZZ_DISK_H
#define SEALVM_FUZZ_DISK_H

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "sealvm/diskfmt.h"
#include "sealvm/file.h"

#define FUZZ_WINDOW (4u << 20)
#define FUZZ_COMPARE (256u << 10)

/* Reads [off, off + len) in chunks of @chunk bytes; stops at the first error. */
static int read_range(struct disk_source *src, unsigned char *buf, uint64_t off, size_t len,
		      size_t chunk)
{
	for (size_t done = 0; done < len;) {
		size_t n = len - done < chunk ? len - done : chunk;
		struct sealvm_err err = SEALVM_ERR_INIT;

		if (disk_source_read(src, off + done, buf + done, n, &err) < 0)
			return -1;
		done += n;
	}
	return 0;
}

static void exercise(const char *path, enum disk_format want, size_t chunk)
{
	struct sealvm_err err = SEALVM_ERR_INIT;
	struct disk_source *src = NULL;
	unsigned char *a, *b;
	uint64_t vsize, tail;

	if (disk_source_open(path, want, &src, &err) < 0)
		return;
	vsize = disk_source_info(src)->virtual_size;
	a = malloc(FUZZ_WINDOW);
	b = malloc(FUZZ_COMPARE);
	if (!a || !b)
		abort();

	size_t head = vsize < FUZZ_WINDOW ? (size_t)vsize : FUZZ_WINDOW;
	if (read_range(src, a, 0, head, chunk) == 0) {
		size_t cmp = head < FUZZ_COMPARE ? head : FUZZ_COMPARE;
		if (read_range(src, b, 0, cmp, 512) == 0 && memcmp(a, b, cmp) != 0)
			abort(); /* chunking changed the bytes read */
	}
	if (vsize > head) {
		tail = vsize - FUZZ_WINDOW > head ? vsize - FUZZ_WINDOW : head;
		(void)read_range(src, a, tail, (size_t)(vsize - tail), chunk);
	}
	/* Unaligned, odd-sized reads near both ends. */
	if (vsize > 3)
		(void)read_range(src, a, 1, (size_t)(vsize - 2 < 70001 ? vsize - 2 : 70001), 4097);
	/* Past the end must be refused, never read. */
	if (disk_source_read(src, vsize, a, 1, &err) != -EINVAL)
		abort();

	free(a);
	free(b);
	disk_source_free(src);
}

/* One input: write it to a memfd, probe it, read it auto-detected and as @want. */
static int fuzz_disk_input(const uint8_t *data, size_t size, enum disk_format want,
			   const char *name)
{
	struct sealvm_err err = SEALVM_ERR_INIT;
	struct disk_info info;
	char path[64];
	int fd;

	if (size > (1u << 20))
		return 0;
	fd = memfd_create(name, MFD_CLOEXEC);
	if (fd < 0)
		abort();
	if (sealvm_write_all(fd, data, size) < 0)
		abort();
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);

	(void)disk_probe(path, &info, &err);
	exercise(path, DISK_FORMAT_AUTO, size % 2 ? 1u << 20 : 65536 + 512);
	exercise(path, want, 8u << 20);

	close(fd);
	return 0;
}

#endif
