// SPDX-License-Identifier: Apache-2.0
/* Unit tests of lib/core/file.c: atomic output, exclusive files, full I/O. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "sealvm/file.h"

static char dir[64];

static int setup(void **state)
{
	strcpy(dir, "/tmp/sealvm-test-XXXXXX");
	return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

static char *p(const char *name)
{
	static char buf[4][128];
	static int i;
	i = (i + 1) % 4;
	snprintf(buf[i], sizeof(buf[i]), "%s/%s", dir, name);
	return buf[i];
}

static void read_text(const char *path, char *out, size_t n)
{
	int fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	ssize_t r = sealvm_pread_all(fd, out, n - 1, 0);
	assert_true(r >= 0);
	out[r] = 0;
	close(fd);
}

static void test_atomic_commit(void **state)
{
	struct sealvm_atomic_file *f = NULL;
	struct sealvm_err err = SEALVM_ERR_INIT;
	char buf[32];
	struct stat st;

	assert_int_equal(sealvm_atomic_open(p("out"), 0, 0644, &f, &err), 0);
	assert_int_equal(stat(p("out"), &st), -1);
	assert_int_equal(stat(p("out.partial"), &st), 0);
	assert_int_equal(sealvm_write_all(f->fd, "hello", 5), 0);
	assert_int_equal(sealvm_atomic_commit(f, &err), 0);
	assert_int_equal(stat(p("out.partial"), &st), -1);
	read_text(p("out"), buf, sizeof(buf));
	assert_string_equal(buf, "hello");

	/* exists, no replace */
	assert_int_equal(sealvm_atomic_open(p("out"), 0, 0644, &f, &err), -EEXIST);
	assert_string_equal(err.reason, "OUTPUT_EXISTS");
	sealvm_err_clear(&err);

	/* replace, then abort: the old file stays */
	assert_int_equal(sealvm_atomic_open(p("out"), SEALVM_ATOMIC_REPLACE, 0644, &f, &err), 0);
	assert_int_equal(sealvm_write_all(f->fd, "other", 5), 0);
	sealvm_atomic_abort(f);
	read_text(p("out"), buf, sizeof(buf));
	assert_string_equal(buf, "hello");
	assert_int_equal(stat(p("out.partial"), &st), -1);

	/* replace and commit */
	assert_int_equal(sealvm_atomic_open(p("out"), SEALVM_ATOMIC_REPLACE, 0644, &f, &err), 0);
	assert_int_equal(sealvm_write_all(f->fd, "world", 5), 0);
	assert_int_equal(sealvm_atomic_commit(f, &err), 0);
	read_text(p("out"), buf, sizeof(buf));
	assert_string_equal(buf, "world");
}

static void test_atomic_races(void **state)
{
	struct sealvm_atomic_file *f = NULL, *g = NULL;
	struct sealvm_err err = SEALVM_ERR_INIT;
	char buf[32];

	/* a stale or concurrent partial file is never clobbered */
	assert_int_equal(sealvm_atomic_open(p("race"), 0, 0644, &f, &err), 0);
	assert_int_equal(sealvm_atomic_open(p("race"), 0, 0644, &g, &err), -EEXIST);
	assert_string_equal(err.reason, "PARTIAL_EXISTS");
	sealvm_err_clear(&err);

	/* the output appears while being written: commit refuses without replace */
	int fd = open(p("race"), O_CREAT | O_WRONLY, 0644);
	assert_true(fd >= 0);
	assert_int_equal(sealvm_write_all(fd, "theirs", 6), 0);
	close(fd);
	assert_int_equal(sealvm_write_all(f->fd, "mine", 4), 0);
	assert_int_equal(sealvm_atomic_commit(f, &err), -EEXIST);
	assert_string_equal(err.reason, "OUTPUT_EXISTS");
	read_text(p("race"), buf, sizeof(buf));
	assert_string_equal(buf, "theirs");
	assert_int_equal(access(p("race.partial"), F_OK), -1);
}

static void test_missing_dir(void **state)
{
	struct sealvm_atomic_file *f = NULL;
	struct sealvm_err err = SEALVM_ERR_INIT;
	assert_int_equal(sealvm_atomic_open(p("nodir/out"), 0, 0644, &f, &err), -ENOENT);
	assert_string_equal(err.reason, "OUTPUT_DIR_MISSING");
}

static void test_file_size_limit(void **state)
{
	/* In a child: a file-size limit must end in -EFBIG with FILE_TOO_LARGE, no partial left. */
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct rlimit rl = {4096, 4096};
		struct sealvm_atomic_file *f = NULL;
		struct sealvm_err err = SEALVM_ERR_INIT;
		char block[8192] = {0};
		signal(SIGXFSZ, SIG_IGN);
		setrlimit(RLIMIT_FSIZE, &rl);
		if (sealvm_atomic_open(p("big"), 0, 0644, &f, &err) < 0)
			_exit(10);
		int r = sealvm_write_all(f->fd, block, sizeof(block));
		if (r != -EFBIG)
			_exit(11);
		sealvm_atomic_abort(f);
		_exit(access(p("big.partial"), F_OK) == 0 ? 12 : 0);
	}
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

static void test_exclusive(void **state)
{
	struct sealvm_err err = SEALVM_ERR_INIT;
	struct stat st;
	char buf[16];

	mode_t old = umask(0);
	assert_int_equal(sealvm_write_file_exclusive(p("secret"), "k3y", 3, 0600, &err), 0);
	umask(old);
	assert_int_equal(stat(p("secret"), &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	read_text(p("secret"), buf, sizeof(buf));
	assert_string_equal(buf, "k3y");
	assert_int_equal(sealvm_write_file_exclusive(p("secret"), "new", 3, 0600, &err), -EEXIST);
	assert_string_equal(err.reason, "OUTPUT_EXISTS");
	read_text(p("secret"), buf, sizeof(buf));
	assert_string_equal(buf, "k3y");
	/* never through a symlink */
	assert_int_equal(symlink(p("target"), p("link")), 0);
	sealvm_err_clear(&err);
	assert_true(sealvm_write_file_exclusive(p("link"), "x", 1, 0600, &err) < 0);
	assert_int_equal(access(p("target"), F_OK), -1);
}

static void test_same_file(void **state)
{
	struct sealvm_err err = SEALVM_ERR_INIT;
	assert_int_equal(sealvm_write_file_exclusive(p("a"), "x", 1, 0644, &err), 0);
	assert_int_equal(link(p("a"), p("b")), 0);
	assert_true(sealvm_same_file(p("a"), p("b")));
	assert_false(sealvm_same_file(p("a"), p("nonexistent")));
	assert_false(sealvm_same_file(p("a"), p("secret")));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_atomic_commit), cmocka_unit_test(test_atomic_races),
		cmocka_unit_test(test_missing_dir),   cmocka_unit_test(test_file_size_limit),
		cmocka_unit_test(test_exclusive),     cmocka_unit_test(test_same_file),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
