/* SPDX-License-Identifier: Apache-2.0 */
/*
 * file.h — file helpers: full reads and writes, durable and atomic output.
 *
 * An atomic output file is written as "PATH.partial" (created O_EXCL, so a
 * concurrent run or a stale leftover is noticed, never clobbered), fsynced,
 * renamed onto PATH and the directory fsynced. Until the commit PATH does not
 * change; on abort the partial file is removed. Either the whole result is
 * there, durable, or nothing is.
 */
#ifndef SEALVM_FILE_H
#define SEALVM_FILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "sealvm/err.h"

/* write(2)/pwrite(2) until done; EINTR retried. 0 or negative errno (-ENOSPC, -EFBIG, ...). */
int sealvm_write_all(int fd, const void *buf, size_t len);
int sealvm_pwrite_all(int fd, const void *buf, size_t len, uint64_t off);
/* pread(2) until @len or end of file. Returns bytes read (short only at EOF) or negative errno. */
ssize_t sealvm_pread_all(int fd, void *buf, size_t len, uint64_t off);

/* fsync(2) the directory that holds @path. */
int sealvm_fsync_parent_dir(const char *path);

/* True when @a and @b name the same inode (both must exist). */
bool sealvm_same_file(const char *a, const char *b);

/*
 * Creates @path with O_CREAT|O_EXCL|O_NOFOLLOW and @mode, writes @len bytes,
 * fsyncs it and its directory. Refuses (-EEXIST) to replace anything. On
 * failure the file is removed. For secret files use mode 0600.
 */
int sealvm_write_file_exclusive(const char *path, const void *data, size_t len, mode_t mode,
				struct sealvm_err *err);

enum {
	SEALVM_ATOMIC_REPLACE = 1 << 0, /* may replace an existing PATH (--force) */
};

struct sealvm_atomic_file {
	char *path;	/* final name */
	char *tmp_path; /* PATH.partial */
	int fd;		/* open on tmp_path, O_RDWR */
	unsigned flags;
};

/*
 * Starts an atomic output. Fails with -EEXIST (reason OUTPUT_EXISTS) if PATH
 * exists and SEALVM_ATOMIC_REPLACE is not set, -EEXIST (PARTIAL_EXISTS) if
 * PATH.partial exists, -EACCES/-EROFS (OUTPUT_NOT_WRITABLE) if the directory
 * cannot be written.
 */
int sealvm_atomic_open(const char *path, unsigned flags, mode_t mode,
		       struct sealvm_atomic_file **ret, struct sealvm_err *err);

/* fsync, rename onto PATH (without replacing unless allowed), fsync the directory; frees @f. */
int sealvm_atomic_commit(struct sealvm_atomic_file *f, struct sealvm_err *err);

/* Removes the partial file and frees @f; NULL is fine. */
void sealvm_atomic_abort(struct sealvm_atomic_file *f);

static inline void sealvm_atomic_abortp(struct sealvm_atomic_file **f)
{
	sealvm_atomic_abort(*f);
}
#define _cleanup_atomic_ _cleanup_(sealvm_atomic_abortp)

#endif
