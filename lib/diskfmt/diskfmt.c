/* SPDX-License-Identifier: Apache-2.0 */
/*
 * diskfmt.c — format detection and the disk source front end.
 *
 * Decides what an image file is from its content alone (the LUKS and qcow2
 * magics at offset 0, the VHD footer at the end, the 0x55AA boot signature
 * for raw disks), checks that an explicitly requested format agrees, and
 * dispatches opens and reads to the raw, VHD and qcow2 backends. Every read
 * is bounds-checked here against the virtual size before a backend sees it.
 * This file must never trust the file name or extension, and never map or
 * load a whole image: backends stream.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/fs.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sealvm/diskfmt.h"
#include "sealvm/file.h"
#include "sealvm/macro.h"

#include "diskfmt_internal.h"

static const char luks_magic[6] = {'L', 'U', 'K', 'S', (char)0xba, (char)0xbe};
static const char qcow2_magic[4] = {'Q', 'F', 'I', (char)0xfb};
static const char vhd_cookie[8] = {'c', 'o', 'n', 'e', 'c', 't', 'i', 'x'};

const char *disk_format_name(enum disk_format f)
{
	switch (f) {
	case DISK_FORMAT_AUTO:
		return "auto";
	case DISK_FORMAT_RAW:
		return "raw";
	case DISK_FORMAT_VHD:
		return "vhd";
	case DISK_FORMAT_QCOW2:
		return "qcow2";
	case DISK_FORMAT_LUKS:
		return "luks";
	}
	return "unknown";
}

int disk_format_from_name(const char *name, enum disk_format *ret)
{
	static const enum disk_format accepted[] = {
		DISK_FORMAT_AUTO,
		DISK_FORMAT_RAW,
		DISK_FORMAT_VHD,
		DISK_FORMAT_QCOW2,
	};

	if (!name || !ret)
		return -EINVAL;
	for (size_t i = 0; i < ELEMENTSOF(accepted); i++)
		if (strcmp(name, disk_format_name(accepted[i])) == 0) {
			*ret = accepted[i];
			return 0;
		}
	return -EINVAL;
}

int disk_pread_exact(const struct disk_source *src, void *buf, size_t len, uint64_t off,
		     const char *what, struct sealvm_err *err)
{
	ssize_t n;

	n = sealvm_pread_all(src->fd, buf, len, off);
	if (n < 0)
		return sealvm_err_set_errno(err, (int)n, "IO_ERROR",
					    "cannot read %s of %s (%zu bytes at offset %" PRIu64
					    ")",
					    what, src->path, len, off);
	if ((size_t)n != len)
		return sealvm_err_set(err, -EIO, "SHORT_READ",
				      "%s ended while reading %s (%zu bytes at offset %" PRIu64
				      "): the file shrank while it was being read",
				      src->path, what, len, off);
	return 0;
}

void disk_copy_printable(char *dst, size_t dstsz, const void *s, size_t n)
{
	const unsigned char *p = s;
	size_t i;

	if (dstsz == 0)
		return;
	for (i = 0; i < n && i + 1 < dstsz && p[i] != '\0'; i++)
		dst[i] = (char)(p[i] >= 0x20 && p[i] < 0x7f ? p[i] : '?');
	dst[i] = '\0';
}

void disk_source_free(struct disk_source *src)
{
	if (!src)
		return;
	if (src->ops && src->ops->done)
		src->ops->done(src);
	if (src->fd >= 0)
		close(src->fd);
	free(src->path);
	free(src);
}

const struct disk_info *disk_source_info(const struct disk_source *src)
{
	return src ? &src->info : NULL;
}

/*
 * Opens @path read-only and measures it. Regular files and block devices only:
 * a FIFO or a character device has no size to check headers against.
 * O_NONBLOCK keeps open(2) from hanging on a FIFO; it is dropped afterwards.
 */
static int disk_file_open(const char *path, struct disk_source **ret, struct sealvm_err *err)
{
	_cleanup_(disk_source_freep) struct disk_source *src = NULL;
	struct stat st;
	int flags;

	if (!path)
		return sealvm_err_set(err, -EINVAL, "INVALID_ARGUMENT", "no image path given");

	src = calloc(1, sizeof(*src));
	if (!src)
		return sealvm_err_set(err, -ENOMEM, "NO_MEMORY", "out of memory opening %s", path);
	src->fd = -1;
	src->path = strdup(path);
	if (!src->path)
		return sealvm_err_set(err, -ENOMEM, "NO_MEMORY", "out of memory opening %s", path);

	src->fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (src->fd < 0) {
		int r = negative_errno();
		return sealvm_err_set_errno(err, r, sealvm_err_reason_for(r), "cannot open %s",
					    path);
	}
	if (fstat(src->fd, &st) < 0) {
		int r = negative_errno();
		return sealvm_err_set_errno(err, r, "IO_ERROR", "cannot stat %s", path);
	}
	if (S_ISREG(st.st_mode)) {
		src->info.file_size = (uint64_t)st.st_size;
	} else if (S_ISBLK(st.st_mode)) {
		uint64_t size;

		if (ioctl(src->fd, BLKGETSIZE64, &size) < 0) {
			int r = negative_errno();
			return sealvm_err_set_errno(err, r, "IO_ERROR",
						    "cannot get the size of block device %s", path);
		}
		src->info.file_size = size;
	} else {
		return sealvm_err_set(err, -EINVAL, "NOT_A_DISK_IMAGE",
				      "%s is not a disk image: it is neither a regular file nor a "
				      "block device",
				      path);
	}
	flags = fcntl(src->fd, F_GETFL);
	if (flags >= 0)
		(void)fcntl(src->fd, F_SETFL, flags & ~O_NONBLOCK);

	*ret = TAKE_PTR(src);
	return 0;
}

struct disk_detect {
	enum disk_format format;
	unsigned vhd_footer_len; /* VHD: 512, or 511 (Virtual PC before 2004) */
	bool boot_signature;	 /* raw: 0x55AA at bytes 510-511 */
};

/*
 * Identifies the image from its content. Magic numbers at offset 0 win over
 * a VHD footer at the end: a fixed VHD's first sector is guest data, and a
 * LUKS volume wrapped into a fixed VHD is still an already-encrypted disk.
 */
static int disk_detect(const struct disk_source *src, struct disk_detect *ret,
		       struct sealvm_err *err)
{
	unsigned char head[DISK_SECTOR_SIZE] = {0}, tail[DISK_SECTOR_SIZE];
	uint64_t size = src->info.file_size;
	size_t head_len;
	int r;

	*ret = (struct disk_detect){.format = DISK_FORMAT_RAW};

	if (size == 0)
		return sealvm_err_set(err, -EINVAL, "NOT_A_DISK_IMAGE",
				      "%s is not a disk image: the file is empty", src->path);

	head_len = (size_t)MIN(size, (uint64_t)sizeof(head));
	r = disk_pread_exact(src, head, head_len, 0, "the first sector", err);
	if (r < 0)
		return r;

	if (head_len >= sizeof(luks_magic) && memcmp(head, luks_magic, sizeof(luks_magic)) == 0) {
		ret->format = DISK_FORMAT_LUKS;
		return 0;
	}
	if (head_len >= sizeof(qcow2_magic) &&
	    memcmp(head, qcow2_magic, sizeof(qcow2_magic)) == 0) {
		ret->format = DISK_FORMAT_QCOW2;
		return 0;
	}

	if (size >= sizeof(tail)) {
		r = disk_pread_exact(src, tail, sizeof(tail), size - sizeof(tail),
				     "the last sector", err);
		if (r < 0)
			return r;
		if (memcmp(tail, vhd_cookie, sizeof(vhd_cookie)) == 0) {
			ret->format = DISK_FORMAT_VHD;
			ret->vhd_footer_len = 512;
			return 0;
		}
		/* Virtual PC before 2004 wrote 511-byte footers; all else is sector aligned. */
		if (size % DISK_SECTOR_SIZE == 511 &&
		    memcmp(tail + 1, vhd_cookie, sizeof(vhd_cookie)) == 0) {
			ret->format = DISK_FORMAT_VHD;
			ret->vhd_footer_len = 511;
			return 0;
		}
	}

	/* Dynamic VHDs start with a copy of the footer; without the real one the end is gone. */
	if (head_len >= sizeof(vhd_cookie) && memcmp(head, vhd_cookie, sizeof(vhd_cookie)) == 0)
		return sealvm_err_set(err, -EBADMSG, "VHD_TRUNCATED",
				      "%s starts like a VHD image but has no VHD footer at its end "
				      "(file size %" PRIu64 "): the file is truncated or damaged; "
				      "copy or download it again",
				      src->path, size);

	if (size % DISK_SECTOR_SIZE != 0)
		return sealvm_err_set(err, -EINVAL, "NOT_A_DISK_IMAGE",
				      "%s is not a disk image: size %" PRIu64
				      " is not a multiple of 512 bytes",
				      src->path, size);

	ret->boot_signature = head_len == sizeof(head) && head[510] == 0x55 && head[511] == 0xaa;
	return 0;
}

int disk_probe(const char *path, struct disk_info *ret, struct sealvm_err *err)
{
	_cleanup_(disk_source_freep) struct disk_source *src = NULL;
	struct disk_detect d;
	int r;

	if (!ret)
		return sealvm_err_set(err, -EINVAL, "INVALID_ARGUMENT", "no result for disk_probe");

	r = disk_file_open(path, &src, err);
	if (r < 0)
		return r;
	r = disk_detect(src, &d, err);
	if (r < 0)
		return r;

	src->info.format = d.format;
	switch (d.format) {
	case DISK_FORMAT_RAW:
		src->info.virtual_size = src->info.file_size;
		break;
	case DISK_FORMAT_VHD:
		r = vhd_probe(src, d.vhd_footer_len, err);
		break;
	case DISK_FORMAT_QCOW2:
		r = qcow2_probe(src, err);
		break;
	case DISK_FORMAT_LUKS:
	case DISK_FORMAT_AUTO:
		break;
	}
	if (r < 0)
		return r;

	*ret = src->info;
	return 0;
}

static const char *disk_format_title(enum disk_format f)
{
	switch (f) {
	case DISK_FORMAT_RAW:
		return "a raw image (no VHD, qcow2 or LUKS header)";
	case DISK_FORMAT_VHD:
		return "a VHD image";
	case DISK_FORMAT_QCOW2:
		return "a qcow2 image";
	case DISK_FORMAT_LUKS:
		return "a LUKS image";
	case DISK_FORMAT_AUTO:
		break;
	}
	return "an image";
}

int disk_source_open(const char *path, enum disk_format want, struct disk_source **ret,
		     struct sealvm_err *err)
{
	_cleanup_(disk_source_freep) struct disk_source *src = NULL;
	uint64_t vsize;
	struct disk_detect d;
	int r;

	if (!ret)
		return sealvm_err_set(err, -EINVAL, "INVALID_ARGUMENT",
				      "no result for disk_source_open");
	if (want != DISK_FORMAT_AUTO && want != DISK_FORMAT_RAW && want != DISK_FORMAT_VHD &&
	    want != DISK_FORMAT_QCOW2)
		return sealvm_err_set(err, -EINVAL, "INVALID_ARGUMENT",
				      "input format %s cannot be read as a disk source (auto, raw, "
				      "vhd or qcow2)",
				      disk_format_name(want));

	r = disk_file_open(path, &src, err);
	if (r < 0)
		return r;
	r = disk_detect(src, &d, err);
	if (r < 0)
		return r;

	if (d.format == DISK_FORMAT_LUKS)
		return sealvm_err_set(err, -EINVAL, "ALREADY_LUKS",
				      "%s is already a LUKS image; encrypt the plain disk image "
				      "instead, or decrypt this one first",
				      src->path);
	if (want != DISK_FORMAT_AUTO && want != d.format)
		return sealvm_err_set(err, -EINVAL, "FORMAT_MISMATCH",
				      "%s is %s, but --in-format %s was given; use --in-format %s "
				      "or auto",
				      src->path, disk_format_title(d.format),
				      disk_format_name(want), disk_format_name(d.format));
	if (d.format == DISK_FORMAT_RAW && want == DISK_FORMAT_AUTO && !d.boot_signature)
		return sealvm_err_set(err, -EINVAL, "NOT_A_DISK_IMAGE",
				      "%s has no known image header and no boot signature (0x55AA "
				      "at byte 510), so it does not look like a disk image; if it "
				      "really is a raw disk, pass --in-format raw",
				      src->path);

	src->info.format = d.format;
	switch (d.format) {
	case DISK_FORMAT_RAW:
		r = raw_open(src, err);
		break;
	case DISK_FORMAT_VHD:
		r = vhd_open(src, d.vhd_footer_len, err);
		break;
	case DISK_FORMAT_QCOW2:
		r = qcow2_open(src, err);
		break;
	case DISK_FORMAT_LUKS:
	case DISK_FORMAT_AUTO:
		r = sealvm_err_set(err, -EINVAL, "INTERNAL", "unexpected format for %s", src->path);
		break;
	}
	if (r < 0)
		return r;

	/* Consumers (LUKS payloads, block devices) work in whole sectors. */
	vsize = src->info.virtual_size;
	if (vsize == 0 || vsize % DISK_SECTOR_SIZE != 0)
		return sealvm_err_set(err, -EINVAL, "VIRTUAL_SIZE_UNSUPPORTED",
				      "%s: virtual disk size %" PRIu64
				      " is not a non-zero multiple of 512 bytes; resize the image "
				      "(qemu-img resize) before using it",
				      src->path, vsize);

	(void)posix_fadvise(src->fd, 0, 0, POSIX_FADV_SEQUENTIAL);
	*ret = TAKE_PTR(src);
	return 0;
}

int disk_source_read(struct disk_source *src, uint64_t off, void *buf, size_t len,
		     struct sealvm_err *err)
{
	if (!src || (!buf && len > 0))
		return sealvm_err_set(err, -EINVAL, "INVALID_ARGUMENT",
				      "disk_source_read without a source or buffer");
	if (len == 0)
		return 0;
	if (!disk_range_ok(off, len, src->info.virtual_size))
		return sealvm_err_set(err, -EINVAL, "READ_OUT_OF_RANGE",
				      "read of %zu bytes at offset %" PRIu64
				      " passes the end of the virtual disk of %s (%" PRIu64
				      " bytes)",
				      len, off, src->path, src->info.virtual_size);
	return src->ops->read(src, off, buf, len, err);
}
