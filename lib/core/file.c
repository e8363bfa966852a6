// SPDX-License-Identifier: Apache-2.0
/*
 * file.c — full reads/writes and durable, atomic output files (see file.h).
 *
 * The atomic output protocol is: create PATH.partial O_EXCL, write, fsync,
 * rename onto PATH (renameat2 RENAME_NOREPLACE unless replacing is allowed,
 * so a file that appeared meanwhile is never clobbered), fsync the directory.
 * Any failure removes the partial file and leaves PATH as it was.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sealvm/file.h"

int sealvm_write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return negative_errno();
		if (n == 0)
			return -EIO;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int sealvm_pwrite_all(int fd, const void *buf, size_t len, uint64_t off)
{
	const char *p = buf;
	while (len > 0) {
		ssize_t n = pwrite(fd, p, len, (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return negative_errno();
		if (n == 0)
			return -EIO;
		p += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

ssize_t sealvm_pread_all(int fd, void *buf, size_t len, uint64_t off)
{
	char *p = buf;
	size_t done = 0;
	while (done < len) {
		ssize_t n = pread(fd, p + done, len - done, (off_t)(off + done));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return negative_errno();
		if (n == 0)
			break;
		done += (size_t)n;
	}
	return (ssize_t)done;
}

static char *dir_of(const char *path)
{
	char *copy = strdup(path);
	if (!copy)
		return NULL;
	char *d = strdup(dirname(copy));
	free(copy);
	return d;
}

int sealvm_fsync_parent_dir(const char *path)
{
	_cleanup_free_ char *dir = dir_of(path);
	_cleanup_close_ int fd = -1;

	if (!dir)
		return -ENOMEM;
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return negative_errno();
	if (fsync(fd) < 0)
		return negative_errno();
	return 0;
}

bool sealvm_same_file(const char *a, const char *b)
{
	struct stat sa, sb;
	if (stat(a, &sa) < 0 || stat(b, &sb) < 0)
		return false;
	return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

static int write_error(struct sealvm_err *err, int r, const char *path)
{
	if (r == -ENOSPC || r == -EDQUOT)
		return sealvm_err_set(err, -ENOSPC, "NO_SPACE",
				      "no space left for %s: free some space or write elsewhere",
				      path);
	if (r == -EFBIG)
		return sealvm_err_set(
			err, -EFBIG, "FILE_TOO_LARGE",
			"%s would exceed the file size limit (ulimit -f or the file system's maximum)",
			path);
	return sealvm_err_set_errno(err, r, "IO_ERROR", "cannot write %s", path);
}

static int open_error(struct sealvm_err *err, int r, const char *path)
{
	if (r == -EACCES || r == -EPERM || r == -EROFS)
		return sealvm_err_set_errno(err, r, "OUTPUT_NOT_WRITABLE",
					    "cannot create %s: its directory is not writable",
					    path);
	if (r == -ENOENT)
		return sealvm_err_set(err, r, "OUTPUT_DIR_MISSING",
				      "cannot create %s: its directory does not exist", path);
	if (r == -ENOSPC || r == -EDQUOT)
		return write_error(err, r, path);
	return sealvm_err_set_errno(err, r, "IO_ERROR", "cannot create %s", path);
}

int sealvm_write_file_exclusive(const char *path, const void *data, size_t len, mode_t mode,
				struct sealvm_err *err)
{
	_cleanup_close_ int fd = -1;
	int r;

	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
	if (fd < 0) {
		r = negative_errno();
		if (r == -EEXIST)
			return sealvm_err_set(
				err, r, "OUTPUT_EXISTS",
				"%s already exists: it is never overwritten; choose another name or remove it",
				path);
		return open_error(err, r, path);
	}
	/* The umask must not widen or narrow what the caller asked for. */
	if (fchmod(fd, mode) < 0) {
		r = negative_errno();
		goto fail;
	}
	r = sealvm_write_all(fd, data, len);
	if (r < 0)
		goto fail;
	if (fsync(fd) < 0) {
		r = negative_errno();
		goto fail;
	}
	r = sealvm_fsync_parent_dir(path);
	if (r < 0)
		goto fail;
	return 0;
fail:
	unlink(path);
	return write_error(err, r, path);
}

int sealvm_atomic_open(const char *path, unsigned flags, mode_t mode,
		       struct sealvm_atomic_file **ret, struct sealvm_err *err)
{
	struct sealvm_atomic_file *f;
	struct stat st;
	int r;

	if (!(flags & SEALVM_ATOMIC_REPLACE) && lstat(path, &st) == 0)
		return sealvm_err_set(err, -EEXIST, "OUTPUT_EXISTS",
				      "%s already exists: use --force to replace it", path);
	if ((flags & SEALVM_ATOMIC_REPLACE) && lstat(path, &st) == 0 && S_ISDIR(st.st_mode))
		return sealvm_err_set(err, -EISDIR, "OUTPUT_IS_DIRECTORY", "%s is a directory",
				      path);

	f = calloc(1, sizeof(*f));
	if (!f)
		return -ENOMEM;
	f->fd = -1;
	f->flags = flags;
	f->path = strdup(path);
	if (!f->path || asprintf(&f->tmp_path, "%s.partial", path) < 0) {
		f->tmp_path = NULL;
		r = -ENOMEM;
		goto fail;
	}
	f->fd = open(f->tmp_path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
	if (f->fd < 0) {
		r = negative_errno();
		if (r == -EEXIST)
			r = sealvm_err_set(
				err, r, "PARTIAL_EXISTS",
				"%s exists: another run may be writing it, or an earlier run was interrupted; remove it and retry",
				f->tmp_path);
		else
			r = open_error(err, r, path);
		goto fail;
	}
	*ret = f;
	return 0;
fail:
	free(f->path);
	free(f->tmp_path);
	free(f);
	return r;
}

int sealvm_atomic_commit(struct sealvm_atomic_file *f, struct sealvm_err *err)
{
	int r;

	if (fsync(f->fd) < 0) {
		r = write_error(err, negative_errno(), f->path);
		goto fail;
	}
	if (close(f->fd) < 0) {
		f->fd = -1;
		r = write_error(err, negative_errno(), f->path);
		goto fail;
	}
	f->fd = -1;
	if (f->flags & SEALVM_ATOMIC_REPLACE)
		r = rename(f->tmp_path, f->path);
	else
		r = renameat2(AT_FDCWD, f->tmp_path, AT_FDCWD, f->path, RENAME_NOREPLACE);
	if (r < 0) {
		r = negative_errno();
		if (r == -EEXIST)
			r = sealvm_err_set(
				err, r, "OUTPUT_EXISTS",
				"%s appeared while it was being written: use --force to replace it",
				f->path);
		else
			r = sealvm_err_set_errno(err, r, "IO_ERROR", "cannot rename %s to %s",
						 f->tmp_path, f->path);
		goto fail;
	}
	r = sealvm_fsync_parent_dir(f->path);
	if (r < 0) {
		/* The file is in place; only its durability is in doubt. Report, keep it. */
		sealvm_err_set_errno(err, r, "IO_ERROR", "cannot fsync the directory of %s",
				     f->path);
		free(f->path);
		free(f->tmp_path);
		free(f);
		return r;
	}
	free(f->path);
	free(f->tmp_path);
	free(f);
	return 0;
fail:
	sealvm_atomic_abort(f);
	return r;
}

void sealvm_atomic_abort(struct sealvm_atomic_file *f)
{
	if (!f)
		return;
	if (f->fd >= 0)
		close(f->fd);
	if (f->tmp_path)
		unlink(f->tmp_path);
	free(f->path);
	free(f->tmp_path);
	free(f);
}
