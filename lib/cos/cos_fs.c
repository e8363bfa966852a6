// SPDX-License-Identifier: Apache-2.0
/*
 * cos_fs.c — the object store's files under <data_dir>/cos: temporary
 * bodies, immutable data files, crash recovery and the sweeper thread.
 *
 * Layout: tmp/ holds bodies being written (O_TMPFILE, or a named file where
 * the file system lacks it) and is emptied at start; data/XX/<32 hex> are
 * data files, named once complete and fsynced, never written again (so that
 * readers, copies and sendfile can share them). A data file belongs to a
 * row: it is named before its row commits and unlinked after its row goes.
 * A crash between the two leaves a file no row names: an orphan, removed at
 * the next start, and by the sweeper once it is old enough that no write can
 * still be on its way to commit it. Directories are 0700, files 0600.
 * Nothing here reads or writes the database but through cos_store.c.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "sealvm/log.h"
#include "sealvm/macro.h"

#include "cos_engine.h"

/* The sweeper leaves alone orphans younger than this: a write may still be committing them. */
#define ORPHAN_MIN_AGE_MS (3600 * 1000LL)

int64_t cos_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void cos_random_id(char ret[COS_ID_LEN + 1])
{
	static const char hex[] = "0123456789abcdef";
	unsigned char b[COS_ID_LEN / 2];
	if (RAND_bytes(b, sizeof(b)) != 1) {
		/* The DRBG does not fail once seeded; should it, never reuse a name. */
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		memcpy(b, &ts, MIN(sizeof(ts), sizeof(b)));
		b[sizeof(b) - 1] ^= (unsigned char)getpid();
	}
	for (size_t i = 0; i < sizeof(b); i++) {
		ret[2 * i] = hex[b[i] >> 4];
		ret[2 * i + 1] = hex[b[i] & 15];
	}
	ret[COS_ID_LEN] = '\0';
}

static int mkdir_at(int dfd, const char *name)
{
	if (mkdirat(dfd, name, 0700) < 0 && errno != EEXIST)
		return negative_errno();
	return 0;
}

/* Removes every entry of the directory @fd (files only). */
static int empty_dir(int fd, unsigned *ret_n)
{
	int dup_fd = dup(fd);
	if (dup_fd < 0)
		return negative_errno();
	DIR *d = fdopendir(dup_fd);
	if (!d) {
		close(dup_fd);
		return negative_errno();
	}
	rewinddir(d);
	struct dirent *e;
	unsigned n = 0;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		if (unlinkat(fd, e->d_name, 0) == 0)
			n++;
	}
	closedir(d);
	if (ret_n)
		*ret_n = n;
	return 0;
}

static void pins_free(struct cos_engine *e);

int cos_fs_open(struct cos *c, struct sealvm_err *err)
{
	struct cos_engine *e = calloc(1, sizeof(*e));
	if (!e)
		return sealvm_err_set(err, -ENOMEM, "NO_MEMORY", "out of memory");
	e->start_ms = cos_now_ms();
	e->tmp_fd = e->data_fd = -1;
	pthread_mutex_init(&e->lock, NULL);
	pthread_mutex_init(&e->pin_lock, NULL);
	pthread_cond_init(&e->cond, NULL);
	e->reader_eager_fds = 64;
	c->sweeper = e;

	if (mkdir(c->root, 0700) < 0 && errno != EEXIST)
		return sealvm_err_set_errno(err, negative_errno(), "IO_ERROR", "cannot create %s",
					    c->root);
	c->root_fd = open(c->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (c->root_fd < 0)
		return sealvm_err_set_errno(err, negative_errno(), "IO_ERROR", "cannot open %s",
					    c->root);
	int r = mkdir_at(c->root_fd, "tmp");
	if (r >= 0)
		r = mkdir_at(c->root_fd, "data");
	if (r < 0)
		return sealvm_err_set_errno(err, r, "IO_ERROR", "cannot create %s/tmp and data",
					    c->root);
	e->tmp_fd = openat(c->root_fd, "tmp", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	e->data_fd = openat(c->root_fd, "data", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (e->tmp_fd < 0 || e->data_fd < 0)
		return sealvm_err_set_errno(err, negative_errno(), "IO_ERROR",
					    "cannot open %s/tmp and data", c->root);
	for (unsigned i = 0; i < 256; i++) {
		char sub[3];
		snprintf(sub, sizeof(sub), "%02x", i);
		r = mkdir_at(e->data_fd, sub);
		if (r < 0)
			return sealvm_err_set_errno(err, r, "IO_ERROR", "cannot create %s/data/%s",
						    c->root, sub);
	}
	if (fsync(e->data_fd) < 0 || fsync(c->root_fd) < 0)
		return sealvm_err_set_errno(err, negative_errno(), "IO_ERROR", "cannot fsync %s",
					    c->root);

	/* Bodies a crash interrupted were never acknowledged. */
	unsigned n_tmp = 0, n_orphans = 0;
	r = empty_dir(e->tmp_fd, &n_tmp);
	if (r < 0)
		return sealvm_err_set_errno(err, r, "IO_ERROR", "cannot empty %s/tmp", c->root);

	int fd = openat(e->tmp_fd, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	e->tmpfile = fd >= 0;
	if (fd >= 0)
		close(fd);

	r = cos_orphan_sweep(c, e->start_ms, &n_orphans, err);
	if (r < 0)
		return r;
	if (n_tmp || n_orphans)
		log_notice("cos: removed %u unfinished bodies and %u orphaned data files left by "
			   "an earlier stop",
			   n_tmp, n_orphans);
	return 0;
}

void cos_fs_close(struct cos *c)
{
	struct cos_engine *e = cos_engine(c);
	if (!e)
		return;
	pins_free(e); /* readers are gone: what they kept pinned and doomed goes now */
	if (e->tmp_fd >= 0)
		close(e->tmp_fd);
	if (e->data_fd >= 0)
		close(e->data_fd);
	if (c->root_fd >= 0)
		close(c->root_fd);
	c->root_fd = -1;
	pthread_mutex_destroy(&e->lock);
	pthread_cond_destroy(&e->cond);
	pthread_mutex_destroy(&e->pin_lock);
	free(e);
	c->sweeper = NULL;
}

/* ---- temporary and data files ------------------------------------------------------------------
 */

int cos_tmp_open(struct cos *c, struct cos_tmp *ret, struct sealvm_err *err)
{
	struct cos_engine *e = cos_engine(c);
	struct cos_tmp t = {.fd = -1};
	if (e->tmpfile) {
		t.fd = openat(e->tmp_fd, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
		if (t.fd < 0 && errno != EOPNOTSUPP && errno != EISDIR)
			return sealvm_err_set_errno(err, negative_errno(), "InternalError",
						    "cannot create a temporary file");
	}
	if (t.fd < 0) {
		char id[COS_ID_LEN + 1];
		cos_random_id(id);
		snprintf(t.name, sizeof(t.name), "%s", id);
		t.fd = openat(e->tmp_fd, t.name, O_CREAT | O_EXCL | O_RDWR | O_NOFOLLOW | O_CLOEXEC,
			      0600);
		if (t.fd < 0)
			return sealvm_err_set_errno(err, negative_errno(), "InternalError",
						    "cannot create a temporary file");
	}
	*ret = t;
	return 0;
}

int cos_tmp_name(struct cos *c, struct cos_tmp *t, char ret_file[COS_FILE_MAX],
		 struct sealvm_err *err)
{
	struct cos_engine *e = cos_engine(c);
	char id[COS_ID_LEN + 1], file[COS_FILE_MAX];
	cos_random_id(id);
	snprintf(file, sizeof(file), "%.2s/%s", id, id);
	int r;
	if (t->name[0])
		r = renameat(e->tmp_fd, t->name, e->data_fd, file);
	else {
		char proc[64];
		snprintf(proc, sizeof(proc), "/proc/self/fd/%d", t->fd);
		r = linkat(AT_FDCWD, proc, e->data_fd, file, AT_SYMLINK_FOLLOW);
		/* without /proc: AT_EMPTY_PATH (needs CAP_DAC_READ_SEARCH) */
		if (r < 0 && errno == ENOENT)
			r = linkat(t->fd, "", e->data_fd, file, AT_EMPTY_PATH);
	}
	if (r < 0)
		return sealvm_err_set_errno(err, negative_errno(), "InternalError",
					    "cannot name a data file");
	t->name[0] = '\0';
	char sub[3] = {id[0], id[1], '\0'};
	_cleanup_close_ int dfd = openat(e->data_fd, sub, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0 || fsync(dfd) < 0) {
		r = negative_errno();
		unlinkat(e->data_fd, file, 0);
		return sealvm_err_set_errno(err, r, "InternalError",
					    "cannot fsync a data directory");
	}
	snprintf(ret_file, COS_FILE_MAX, "%s", file);
	return 0;
}

void cos_tmp_drop(struct cos *c, struct cos_tmp *t)
{
	if (t->fd >= 0)
		close(t->fd);
	t->fd = -1;
	if (t->name[0])
		unlinkat(cos_engine(c)->tmp_fd, t->name, 0);
	t->name[0] = '\0';
}

int cos_data_open(struct cos *c, const char *file, int *ret_fd)
{
	int fd = openat(cos_engine(c)->data_fd, file, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return negative_errno();
	*ret_fd = fd;
	return 0;
}

/* ---- pins: files open readers still need ---------------------------------------------------- */

struct cos_pin {
	struct cos_pin *next;
	char file[COS_FILE_MAX];
	unsigned refs;
	bool doomed; /* no row names it any more: the last unpin removes it */
};

static struct cos_pin **pin_slot(struct cos_engine *e, const char *file)
{
	uint64_t h = sealvm_fnv1a(file, strlen(file));
	struct cos_pin **pp = &e->pins[h % COS_PIN_BUCKETS];
	while (*pp && strcmp((*pp)->file, file) != 0)
		pp = &(*pp)->next;
	return pp; /* the pin, or the NULL link where it would go */
}

static void remove_file(struct cos_engine *e, const char *file)
{
	if (unlinkat(e->data_fd, file, 0) < 0 && errno != ENOENT)
		log_warning("cos: cannot remove data file %s: %m (the orphan sweep will)", file);
}

static void unpin_locked(struct cos_engine *e, const char *file)
{
	struct cos_pin **pp = pin_slot(e, file), *p = *pp;
	if (!p || --p->refs)
		return;
	*pp = p->next;
	if (p->doomed)
		remove_file(e, p->file);
	free(p);
}

void cos_data_unpin(struct cos *c, const struct cos_extent *ext, size_t n)
{
	struct cos_engine *e = cos_engine(c);
	pthread_mutex_lock(&e->pin_lock);
	for (size_t i = 0; i < n; i++)
		unpin_locked(e, ext[i].file);
	pthread_mutex_unlock(&e->pin_lock);
}

int cos_data_pin(struct cos *c, const struct cos_extent *ext, size_t n, struct sealvm_err *err)
{
	struct cos_engine *e = cos_engine(c);
	size_t i;
	int r = 0;
	pthread_mutex_lock(&e->pin_lock);
	for (i = 0; i < n; i++) {
		struct cos_pin **pp = pin_slot(e, ext[i].file);
		if (!*pp) {
			struct cos_pin *p = calloc(1, sizeof(*p));
			if (!p) {
				r = sealvm_err_set(err, -ENOMEM, "InternalError", "out of memory");
				break;
			}
			snprintf(p->file, sizeof(p->file), "%s", ext[i].file);
			*pp = p;
		}
		(*pp)->refs++;
		/* pinned before the check: from here on nothing removes it */
		struct stat st;
		if (fstatat(e->data_fd, ext[i].file, &st, 0) < 0) {
			i++;
			r = -EAGAIN;
			break;
		}
	}
	if (r < 0)
		while (i-- > 0)
			unpin_locked(e, ext[i].file);
	pthread_mutex_unlock(&e->pin_lock);
	return r;
}

static void pins_free(struct cos_engine *e)
{
	for (unsigned i = 0; i < COS_PIN_BUCKETS; i++)
		while (e->pins[i]) {
			struct cos_pin *p = e->pins[i];
			e->pins[i] = p->next;
			if (p->doomed && e->data_fd >= 0)
				remove_file(e, p->file);
			free(p);
		}
}

static bool pinned_locked(struct cos_engine *e, const char *file)
{
	return *pin_slot(e, file) != NULL;
}

void cos_data_unlink(struct cos *c, const struct cos_files *f)
{
	struct cos_engine *e = cos_engine(c);
	pthread_mutex_lock(&e->pin_lock);
	for (size_t i = 0; i < f->n; i++) {
		struct cos_pin *p = *pin_slot(e, f->v[i]);
		if (p)
			p->doomed = true; /* a reader still needs it */
		else
			remove_file(e, f->v[i]);
	}
	pthread_mutex_unlock(&e->pin_lock);
}

/* ---- orphans -----------------------------------------------------------------------------------
 */

static bool is_data_name(const char *sub, const char *name)
{
	if (strlen(name) != COS_ID_LEN || strncmp(name, sub, 2) != 0)
		return false;
	for (const char *p = name; *p; p++)
		if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
			return false;
	return true;
}

int cos_orphan_sweep(struct cos *c, int64_t before_ms, unsigned *ret_n, struct sealvm_err *err)
{
	struct cos_engine *e = cos_engine(c);
	unsigned n = 0;
	int r = 0;
	for (unsigned i = 0; i < 256 && r >= 0; i++) {
		char sub[3];
		snprintf(sub, sizeof(sub), "%02x", i);
		int fd = openat(e->data_fd, sub, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (fd < 0)
			continue;
		DIR *d = fdopendir(fd);
		if (!d) {
			close(fd);
			continue;
		}
		struct dirent *de;
		while ((de = readdir(d))) {
			if (de->d_name[0] == '.')
				continue;
			struct stat st;
			if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
				continue;
			int64_t mtime =
				(int64_t)st.st_mtim.tv_sec * 1000 + st.st_mtim.tv_nsec / 1000000;
			if (mtime >= before_ms)
				continue;
			char file[COS_FILE_MAX];
			snprintf(file, sizeof(file), "%s/%.*s", sub, COS_ID_LEN, de->d_name);
			if (is_data_name(sub, de->d_name)) {
				sqlite3 *conn = db_read_begin(c->deps.db);
				r = cos_store_file_referenced(conn, file, err);
				db_read_end(c->deps.db, conn);
				if (r < 0)
					break;
				if (r == 1)
					continue;
			}
			/* Not a data file of ours, or one no row names (and no reader needs). */
			pthread_mutex_lock(&cos_engine(c)->pin_lock);
			if (!pinned_locked(cos_engine(c), file) &&
			    unlinkat(dirfd(d), de->d_name, 0) == 0)
				n++;
			pthread_mutex_unlock(&cos_engine(c)->pin_lock);
			r = 0;
		}
		closedir(d);
	}
	if (r < 0)
		return r;
	if (ret_n)
		*ret_n = n;
	return 0;
}

/* ---- the sweeper thread ------------------------------------------------------------------------
 */

static void *sweeper_main(void *arg)
{
	struct cos *c = arg;
	struct cos_engine *e = cos_engine(c);
	pthread_mutex_lock(&e->lock);
	while (!e->stop) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += c->cfg.upload_sweep_interval_s;
		while (!e->stop && pthread_cond_timedwait(&e->cond, &e->lock, &ts) == 0)
			;
		if (e->stop)
			break;
		pthread_mutex_unlock(&e->lock);
		cos_sweep_once(c);
		pthread_mutex_lock(&e->lock);
	}
	pthread_mutex_unlock(&e->lock);
	return NULL;
}

void cos_sweep_once(struct cos *c)
{
	struct sealvm_err err = SEALVM_ERR_INIT;
	unsigned n = 0;
	int64_t now = cos_now_ms();
	if (cos_sweep_uploads(c, now, &n, &err) < 0)
		log_warning("cos: sweeping expired multipart uploads: %s", err.message);
	else if (n)
		log_info("cos: aborted %u expired multipart uploads", n);
	sealvm_err_clear(&err);
	n = 0;
	if (cos_orphan_sweep(c, now - ORPHAN_MIN_AGE_MS, &n, &err) < 0)
		log_warning("cos: sweeping orphaned data files: %s", err.message);
	else if (n)
		log_info("cos: removed %u orphaned data files", n);
}

int cos_sweeper_start(struct cos *c, struct sealvm_err *err)
{
	struct cos_engine *e = cos_engine(c);
	int r = pthread_create(&e->thread, NULL, sweeper_main, c);
	if (r != 0)
		return sealvm_err_set(err, -r, "IO_ERROR", "cannot start the upload sweeper");
	e->running = true;
	return 0;
}

void cos_sweeper_stop(struct cos *c)
{
	struct cos_engine *e = cos_engine(c);
	if (!e || !e->running)
		return;
	pthread_mutex_lock(&e->lock);
	e->stop = true;
	pthread_cond_broadcast(&e->cond);
	pthread_mutex_unlock(&e->lock);
	pthread_join(e->thread, NULL);
	e->running = false;
}
