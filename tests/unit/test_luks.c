// SPDX-License-Identifier: Apache-2.0
/*
 * Unit tests of lib/luks: LUKS images written and read without root.
 *
 * Every fixture is made at run time in a private temporary directory. What we
 * write is checked with peers we did not write (cryptsetup, qemu-img); what we
 * read includes images those peers made (LUKS1, LUKS2 with 4096-byte sectors,
 * argon2id keyslots). Peers run through posix_spawn with the DEK in a 0600
 * file, never in argv. A test that needs a missing peer is skipped with a
 * message, never passed.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <setjmp.h>
#include <signal.h>
#include <spawn.h>
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
#include <libcryptsetup.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "sealvm/b64.h"
#include "sealvm/diskfmt.h"
#include "sealvm/file.h"
#include "sealvm/luks.h"
#include "sealvm/secret.h"

extern char **environ;

#define MiB ((size_t)1 << 20)
#define KiB ((size_t)1 << 10)
/* Not a multiple of the 4 MiB chunk, nor of 1 MiB. */
#define RAW_SIZE (10 * MiB + 8192 + 512)

static char tmpdir[512];
static char dek_path[PATH_MAX];
static char raw_path[PATH_MAX];
static char cryptsetup_bin[PATH_MAX];
static char qemu_img_bin[PATH_MAX];
static char qemu_io_bin[PATH_MAX];
static struct sealvm_secret *dek;

/* ---- helpers ---- */

static void pathf(char *buf, const char *name)
{
	snprintf(buf, PATH_MAX, "%s/%s", tmpdir, name);
}

static bool find_tool(const char *name, char *out)
{
	const char *path = getenv("PATH");
	char dirs[4096];

	snprintf(dirs, sizeof(dirs), "%s:/usr/sbin:/sbin:/usr/bin:/bin", path ? path : "");
	for (char *save = NULL, *d = strtok_r(dirs, ":", &save); d;
	     d = strtok_r(NULL, ":", &save)) {
		snprintf(out, PATH_MAX, "%s/%s", d, name);
		if (access(out, X_OK) == 0)
			return true;
	}
	out[0] = 0;
	return false;
}

#define REQUIRE_TOOL(bin, name)                                                                    \
	do {                                                                                       \
		if (!(bin)[0]) {                                                                   \
			print_message("SKIP: %s is not installed\n", name);                        \
			skip();                                                                    \
			return; /* skip() jumps out; this tells analyzers */                       \
		}                                                                                  \
	} while (0)

/*
 * Runs @argv; stdin from /dev/null, stderr discarded, stdout captured into
 * *@out (NUL-terminated; may be NULL to discard). Returns the exit status, or
 * -1 if it did not exit normally.
 */
static int run(char *const argv[], char **out)
{
	posix_spawn_file_actions_t fa;
	int pfd[2];
	pid_t pid;
	int st;
	size_t len = 0, cap = 4096;
	char *buf = NULL;

	assert_int_equal(pipe2(pfd, O_CLOEXEC), 0);
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_adddup2(&fa, pfd[1], 1);
	posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
	assert_int_equal(posix_spawn(&pid, argv[0], &fa, NULL, argv, environ), 0);
	posix_spawn_file_actions_destroy(&fa);
	close(pfd[1]);
	buf = malloc(cap);
	assert_non_null(buf);
	for (;;) {
		if (len + 1 >= cap) {
			char *bigger = realloc(buf, cap * 2);
			assert_non_null(bigger);
			buf = bigger;
			cap *= 2;
		}
		ssize_t n = read(pfd[0], buf + len, cap - len - 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	buf[len] = 0;
	close(pfd[0]);
	while (waitpid(pid, &st, 0) < 0)
		assert_int_equal(errno, EINTR);
	if (out)
		*out = buf;
	else
		free(buf);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static unsigned char *read_file(const char *path, size_t *ret_len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	unsigned char *buf;

	assert_true(fd >= 0);
	assert_int_equal(fstat(fd, &st), 0);
	buf = malloc((size_t)st.st_size + 1);
	assert_non_null(buf);
	assert_int_equal(sealvm_pread_all(fd, buf, (size_t)st.st_size, 0), st.st_size);
	close(fd);
	*ret_len = (size_t)st.st_size;
	return buf;
}

static void write_file(const char *path, const void *data, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(sealvm_write_all(fd, data, len), 0);
	close(fd);
}

static uint64_t file_size(const char *path)
{
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	return (uint64_t)st.st_size;
}

static bool exists(const char *path)
{
	struct stat st;
	return lstat(path, &st) == 0;
}

/* Copies the first @len bytes of @from to @to (a way to truncate a copy). */
static void copy_prefix(const char *from, const char *to, size_t len)
{
	size_t n;
	unsigned char *b = read_file(from, &n);
	assert_true(len <= n);
	write_file(to, b, len);
	free(b);
}

static void sha256_of(const void *data, size_t len, unsigned char out[32])
{
	unsigned int n = 32;
	assert_int_equal(EVP_Digest(data, len, out, &n, EVP_sha256(), NULL), 1);
}

/* Random data with runs of zeros (holes in spirit), boot signature in sector 0. */
static void make_raw(const char *path, size_t size)
{
	unsigned char *b = calloc(1, size);
	assert_non_null(b);
	for (size_t off = 0; off < size; off += 256 * KiB) {
		size_t n = MIN(256 * KiB, size - off);
		if ((off / (256 * KiB)) % 3 != 1)
			assert_int_equal(RAND_bytes(b + off, (int)n), 1);
	}
	b[510] = 0x55;
	b[511] = 0xaa;
	write_file(path, b, size);
	free(b);
}

static void rm_rf_cb_check(const char *p, int r)
{
	if (r != 0)
		fprintf(stderr, "cannot remove %s: %s\n", p, strerror(errno));
}

static int rm_cb(const char *p, const struct stat *sb, int type, struct FTW *ftw)
{
	rm_rf_cb_check(p, remove(p));
	return 0;
}

static int encrypt_raw(const char *raw, const char *out, const struct sealvm_secret *pass,
		       const struct luks_encrypt_opts *o, struct luks_result *res,
		       struct sealvm_err *err)
{
	struct disk_source *src = NULL;
	struct sealvm_err e = SEALVM_ERR_INIT;
	int r = disk_source_open(raw, DISK_FORMAT_RAW, &src, &e);
	if (r < 0)
		fail_msg("disk_source_open %s: %s", raw, e.message);
	r = luks_encrypt_image(src, out, pass, o, res, err);
	disk_source_free(src);
	return r;
}

static void decrypt_to(const char *img, const char *out, const struct sealvm_secret *pass,
		       unsigned threads, struct luks_result *res)
{
	struct luks_volume *v = NULL;
	struct sealvm_err err = SEALVM_ERR_INIT;
	struct luks_decrypt_opts o = {.threads = threads};
	int r = luks_unlock(img, pass, NULL, &v, &err);
	if (r < 0)
		fail_msg("unlock %s: %s (%s)", img, err.message, err.reason);
	r = luks_decrypt_image(v, img, out, &o, res, &err);
	if (r < 0)
		fail_msg("decrypt %s: %s (%s)", img, err.message, err.reason);
	luks_volume_free(v);
}

/* cryptsetup luksFormat @extra... --key-file DEK on a fresh sparse file of @size. */
static int cs_format(const char *img, uint64_t size, const char *const extra[])
{
	char *argv[32];
	int n = 0;
	int fd = open(img, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, (off_t)size), 0);
	close(fd);
	argv[n++] = cryptsetup_bin;
	argv[n++] = (char *)"luksFormat";
	for (int i = 0; extra[i]; i++)
		argv[n++] = (char *)extra[i];
	argv[n++] = (char *)"--batch-mode";
	argv[n++] = (char *)"--key-file";
	argv[n++] = dek_path;
	argv[n++] = (char *)img;
	argv[n] = NULL;
	return run(argv, NULL);
}

static bool progress_final_seen;
static unsigned progress_calls;
static void progress_cb(uint64_t done, uint64_t total, void *ud)
{
	assert_true(done <= total);
	progress_calls++;
	if (done == total)
		progress_final_seen = true;
}

/* ---- setup ---- */

static int group_setup(void **state)
{
	unsigned char raw[48];
	char text[80];

	setenv("LC_ALL", "C", 1);
	snprintf(tmpdir, sizeof(tmpdir), "%s/sealvm-test-luks-XXXXXX",
		 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	if (!mkdtemp(tmpdir))
		return -1;
	find_tool("cryptsetup", cryptsetup_bin);
	find_tool("qemu-img", qemu_img_bin);
	find_tool("qemu-io", qemu_io_bin);

	/* A DEK as the CLI makes one: base64 text of random bytes, no newline. */
	if (RAND_bytes(raw, sizeof(raw)) != 1)
		return -1;
	size_t n = sealvm_b64_encode(raw, sizeof(raw), text, false);
	if (sealvm_secret_from(text, n, &dek) < 0)
		return -1;
	pathf(dek_path, "dek.txt");
	if (sealvm_write_file_exclusive(dek_path, text, n, 0600, NULL) < 0)
		return -1;
	memset(text, 0, sizeof(text));
	memset(raw, 0, sizeof(raw));
	pathf(raw_path, "disk.raw");
	make_raw(raw_path, RAW_SIZE);
	return 0;
}

static int group_teardown(void **state)
{
	sealvm_secret_free(dek);
	if (tmpdir[0])
		nftw(tmpdir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
	return 0;
}

/* ---- tests ---- */

static void test_limits_default(void **state)
{
	struct luks_limits l;
	luks_limits_default(&l);
	assert_int_equal(l.max_memory_kib, 1048576);
	assert_int_equal(l.max_pbkdf2_iterations, 20000000);
	assert_int_equal(l.max_argon2_iterations, 32);
	assert_int_equal(l.max_parallel, 8);
}

static void test_encrypt_roundtrip(void **state)
{
	char img[PATH_MAX], out[PATH_MAX], qout[PATH_MAX];
	struct luks_result res = {0}, dres = {0};
	struct sealvm_err err = SEALVM_ERR_INIT;
	struct luks_encrypt_opts o = {.threads = 2, .progress = progress_cb};
	struct luks_info li;
	unsigned char h[32];
	size_t n, rn;
	unsigned char *file, *raw;
	char *dump = NULL;

	pathf(img, "rt.luks");
	pathf(out, "rt.out.raw");
	pathf(qout, "rt.qemu.raw");
	progress_final_seen = false;
	int r = encrypt_raw(raw_path, img, dek, &o, &res, &err);
	if (r < 0)
		fail_msg("encrypt: %s (%s)", err.message, err.reason);
	assert_true(progress_final_seen);
	assert_int_equal(res.virtual_size, RAW_SIZE);
	assert_int_equal(res.output_size, 2 * MiB + RAW_SIZE);
	assert_int_equal(file_size(img), res.output_size);
	assert_false(exists("rt.luks.partial"));
	file = read_file(img, &n);
	sha256_of(file, n, h);
	assert_memory_equal(h, res.sha256, 32);
	/* Encrypted: the plaintext's random first MiB is nowhere in the payload. */
	raw = read_file(raw_path, &rn);
	assert_memory_not_equal(file + 2 * MiB, raw, 4096);
	free(file);

	assert_int_equal(luks_inspect(img, &li, &err), 0);
	assert_int_equal(li.version, 1);
	assert_string_equal(li.cipher, "aes");
	assert_string_equal(li.cipher_mode, "xts-plain64");
	assert_string_equal(li.hash, "sha256");
	assert_int_equal(li.key_bits, 512);
	assert_int_equal(li.sector_size, 512);
	assert_int_equal(li.payload_offset, 2 * MiB);
	assert_int_equal(li.payload_size, RAW_SIZE);
	assert_int_equal(li.file_size, 2 * MiB + RAW_SIZE);
	assert_int_equal(li.n_keyslots, 1);
	assert_int_equal(li.keyslots[0].slot, 0);
	assert_string_equal(li.keyslots[0].pbkdf, "pbkdf2");
	assert_string_equal(li.keyslots[0].hash, "sha256");
	assert_int_equal(li.keyslots[0].iterations, 1000);
	assert_int_equal(li.digest_iterations, 1000);
	assert_int_equal(li.iv_offset, 0);
	assert_int_equal(strlen(li.uuid), 36);

	/* Our decrypt gives the same bytes back, and the same checksum. */
	decrypt_to(img, out, dek, 3, &dres);
	file = read_file(out, &n);
	assert_int_equal(n, rn);
	assert_memory_equal(file, raw, rn);
	sha256_of(raw, rn, h);
	assert_memory_equal(h, dres.sha256, 32);
	assert_int_equal(dres.output_size, RAW_SIZE);
	free(file);

	if (!cryptsetup_bin[0]) {
		free(raw);
		print_message("SKIP: cryptsetup is not installed: header not checked by a peer\n");
		skip();
		return;
	}
	char *dump_argv[] = {cryptsetup_bin, "luksDump", img, NULL};
	assert_int_equal(run(dump_argv, &dump), 0);
	assert_non_null(strstr(dump, "Version:       \t1\n"));
	assert_non_null(strstr(dump, "Cipher name:   \taes\n"));
	assert_non_null(strstr(dump, "Cipher mode:   \txts-plain64\n"));
	assert_non_null(strstr(dump, "Hash spec:     \tsha256\n"));
	assert_non_null(strstr(dump, "Payload offset:\t4096\n"));
	assert_non_null(strstr(dump, "MK bits:       \t512\n"));
	assert_non_null(strstr(dump, "Key Slot 0: ENABLED"));
	assert_non_null(strstr(dump, "Key Slot 1: DISABLED"));
	free(dump);
	char *open_argv[] = {
		cryptsetup_bin, "open", "--test-passphrase", "--key-file", dek_path, img, NULL};
	assert_int_equal(run(open_argv, NULL), 0);

	if (!qemu_img_bin[0]) {
		free(raw);
		print_message("SKIP: qemu-img is not installed: QEMU's luks driver not checked\n");
		skip();
		return;
	}
	char obj[PATH_MAX + 32], opts[PATH_MAX + 64];
	snprintf(obj, sizeof(obj), "secret,id=s0,file=%s", dek_path);
	snprintf(opts, sizeof(opts), "driver=luks,key-secret=s0,file.filename=%s", img);
	char *q_argv[] = {qemu_img_bin, "convert", "--object", obj,  "--image-opts",
			  opts,		"-O",	   "raw",      qout, NULL};
	assert_int_equal(run(q_argv, NULL), 0);
	file = read_file(qout, &n);
	assert_int_equal(n, rn);
	assert_memory_equal(file, raw, rn);
	free(file);
	free(raw);
}

/* Thread counts change the schedule, never the bytes. */
static void test_thread_counts(void **state)
{
	static const unsigned counts[] = {1, 5, 64};
	size_t rn, n;
	unsigned char *raw = read_file(raw_path, &rn);

	for (size_t i = 0; i < ELEMENTSOF(counts); i++) {
		char img[PATH_MAX], out[PATH_MAX];
		struct luks_encrypt_opts o = {.threads = counts[i]};
		struct sealvm_err err = SEALVM_ERR_INIT;
		struct luks_result res;
		char name[64];

		snprintf(name, sizeof(name), "t%u.luks", counts[i]);
		pathf(img, name);
		snprintf(name, sizeof(name), "t%u.raw", counts[i]);
		pathf(out, name);
		assert_int_equal(encrypt_raw(raw_path, img, dek, &o, &res, &err), 0);
		decrypt_to(img, out, dek, counts[i], &res);
		unsigned char *b = read_file(out, &n);
		assert_int_equal(n, rn);
		assert_memory_equal(b, raw, rn);
		free(b);
		unlink(img);
		unlink(out);
	}
	free(raw);
}

static void test_wrong_key(void **state)
{
	char img[PATH_MAX];
	struct sealvm_err err = SEALVM_ERR_INIT;
	struct sealvm_secret *wrong = NULL;
	struct luks_volume *v = NULL;

	pathf(img, "wk.luks");
	assert_int_equal(encrypt_raw(raw_path, img, dek, NULL, NULL, &err), 0);
	assert_int_equal(sealvm_secret_from(dek->data, dek->len, &wrong), 0);
	wrong->data[3] ^= 1;
	assert_int_equal(luks_unlock(img, wrong, NULL, &v, &err), -EKEYREJECTED);
	assert_null(v);
	assert_string_equal(err.reason, "WRONG_KEY");
	assert_non_null(strstr(err.message, img));
	assert_null(strstr(err.message, (const char *)wrong->data));
	assert_null(strstr(err.message, (const char *)dek->data));
	sealvm_secret_free(wrong);

	/* A prefix of the DEK is a different passphrase: bytes are used exactly. */
	assert_int_equal(sealvm_secret_from(dek->data, dek->len - 1, &wrong), 0);
	sealvm_err_clear(&err);
	assert_int_equal(luks_unlock(img, wrong, NULL, &v, &err), -EKEYREJECTED);
	sealvm_secret_free(wrong);
	unlink(img);
}

static void test_not_luks(void **state)
{
	char p[PATH_MAX];
	struct sealvm_err err = SEALVM_ERR_INIT;
	struct luks_volume *v = NULL;
	struct luks_info li;

	assert_int_equal(luks_inspect(raw_path, &li, &err), -EINVAL);
	assert_string_equal(err.reason, "NOT_LUKS");
	sealvm_err_clear(&err);
	assert_int_equal(luks_unlock(raw_path, dek, NULL, &v, &err), -EINVAL);
	assert_string_equal(err.reason, "NOT_LUKS");

	pathf(p, "empty");
	write_file(p, "", 0);
	sealvm_err_clear(&err);
	assert_int_equal(luks_inspect(p, &li, &err), -EINVAL);
	assert_string_equal(err.reason, "NOT_LUKS");

	sealvm_err_clear(&err);
	assert_int_equal(luks_inspect(tmpdir, &li, &err), -EINVAL);
	assert_string_equal(err.reason, "NOT_A_FILE");

	pathf(p, "missing");
	sealvm_err_clear(&err);
	assert_int_equal(luks_inspect(p, &li, &err), -ENOENT);
}

static void test_truncated(void **state)
{
	char img[PATH_MAX], cut[PATH_MAX];
	struct sealvm_err err = SEALVM_ERR_INIT;
	struct luks_volume *v = NULL;
	struct luks_info li;
	/* Inside the phdr, inside the keyslots, after the keyslots but before the payload. */
	static const size_t header_cuts[] = {8, 300, 1 * MiB, 2 * MiB - 4096};

	pathf(img, "tr.luks");
	pathf(cut, "tr.cut");
	assert_int_equal(encrypt_raw(raw_path, img, dek, NULL, NULL, &err), 0);
	for (size_t i = 0; i < ELEMENTSOF(header_cuts); i++) {
		copy_prefix(img, cut, header_cuts[i]);
		sealvm_err_clear(&err);
		assert_int_equal(luks_inspect(cut, &li, &err), -EBADMSG);
		assert_string_equal(err.reason, "TRUNCATED");
		sealvm_err_clear(&err);
		assert_int_equal(luks_unlock(cut, dek, NULL, &v, &err), -EBADMSG);
		assert_string_equal(err.reason, "TRUNCATED");
		if (header_cuts[i] >= 1 * MiB)
			assert_non_null(
				strstr(err.message, "header says payload starts at byte 2097152"));
	}
	/* Inside the payload, mid-sector. */
	copy_prefix(img, cut, 2 * MiB + 5 * (size_t)512 + 100);
	sealvm_err_clear(&err);
	assert_int_equal(luks_unlock(cut, dek, NULL, &v, &err), -EBADMSG);
	assert_string_equal(err.reason, "TRUNCATED");
	assert_non_null(strstr(err.message, "not a whole number"));
	/* Cut at a sector boundary it is a smaller image, and says so. */
	copy_prefix(img, cut, 2 * MiB + 5 * (size_t)512);
	sealvm_err_clear(&err);
	assert_int_equal(luks_inspect(cut, &li, &err), 0);
	assert_int_equal(li.payload_size, 5 * 512);

	/* Damaged, not truncated: a LUKS1 header with a key size of 0. */
	copy_prefix(img, cut, 2 * MiB + 512);
	int fd = open(cut, O_WRONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(sealvm_pwrite_all(fd, "\0\0\0\0", 4, 108), 0);
	close(fd);
	sealvm_err_clear(&err);
	assert_int_equal(luks_inspect(cut, &li, &err), -EBADMSG);
	assert_string_equal(err.reason, "LUKS_HEADER_DAMAGED");
	unlink(cut);
	unlink(img);

	if (!cryptsetup_bin[0]) {
		print_message("SKIP: cryptsetup is not installed: LUKS2 truncation not checked\n");
		skip();
		return;
	}
	/* LUKS2: in the second header copy, in the keyslots area, mid-sector in the payload. */
	static const char *const fmt[] = {"--type",
					  "luks2",
					  "--sector-size",
					  "4096",
					  "--pbkdf",
					  "pbkdf2",
					  "--pbkdf-force-iterations",
					  "1000",
					  NULL};
	static const size_t cuts2[] = {20000, 1 * MiB, 16 * MiB - 4096};
	assert_int_equal(cs_format(img, 17 * MiB, fmt), 0);
	for (size_t i = 0; i < ELEMENTSOF(cuts2); i++) {
		copy_prefix(img, cut, cuts2[i]);
		sealvm_err_clear(&err);
		assert_int_equal(luks_inspect(cut, &li, &err), -EBADMSG);
		assert_string_equal(err.reason, "TRUNCATED");
		assert_non_null(strstr(err.message, "header says payload starts at byte 16777216"));
	}
	copy_prefix(img, cut, 16 * MiB + 4096 + 512);
	sealvm_err_clear(&err);
	assert_int_equal(luks_unlock(cut, dek, NULL, &v, &err), -EBADMSG);
	assert_string_equal(err.reason, "TRUNCATED");
	assert_non_null(strstr(err.message, "4096-byte sectors"));
	unlink(cut);
	unlink(img);
}

static void test_luks2_4096(void **state)
{
	char img[PATH_MAX], plain[PATH_MAX], out[PATH_MAX];
	struct sealvm_err err = SEALVM_ERR_INIT;
	struct luks_volume *v = NULL;
	struct luks_info li;
	size_t n, pn;

	REQUIRE_TOOL(cryptsetup_bin, "cryptsetup");
	pathf(img, "l2.luks");
	static const char *const fmt[] = {"--type",
					  "luks2",
					  "--sector-size",
					  "4096",
					  "--pbkdf",
					  "pbkdf2",
					  "--pbkdf-force-iterations",
					  "1000",
					  NULL};
	assert_int_equal(cs_format(img, 20 * MiB, fmt), 0);
	assert_int_equal(luks_inspect(img, &li, &err), 0);
	assert_int_equal(li.version, 2);
	assert_string_equal(li.cipher, "aes");
	assert_string_equal(li.cipher_mode, "xts-plain64");
	assert_string_equal(li.hash, "sha256");
	assert_int_equal(li.key_bits, 512);
	assert_int_equal(li.sector_size, 4096);
	assert_int_equal(li.payload_offset, 16 * MiB);
	assert_int_equal(li.payload_size, 4 * MiB);
	assert_int_equal(li.n_keyslots, 1);
	assert_string_equal(li.keyslots[0].pbkdf, "pbkdf2");
	assert_int_equal(li.keyslots[0].iterations, 1000);
	assert_true(li.digest_iterations >= 1000);
	assert_int_equal(luks_unlock(img, dek, NULL, &v, &err), 0);
	assert_int_equal(luks_volume_info(v)->sector_size, 4096);
	luks_volume_free(v);
	v = NULL;
	unlink(img);

	/*
	 * Data written by cryptsetup itself: offline encryption of a file in
	 * place (no dm-crypt) gives a LUKS2 image of known plaintext, which
	 * checks our 4096-byte sectors and IVs counted in 512-byte units.
	 */
	pathf(plain, "l2.plain");
	pathf(out, "l2.out");
	/*
	 * --reduce-device-size R: cryptsetup takes the last R bytes as free,
	 * puts the header at the start (data offset R/2) and shifts the data
	 * behind it; the first (size - R) bytes are the plaintext.
	 */
	copy_prefix(raw_path, plain, 10 * MiB);
	copy_prefix(raw_path, img, 10 * MiB);
	char *argv[] = {cryptsetup_bin,
			"reencrypt",
			"--encrypt",
			"--type",
			"luks2",
			"--sector-size",
			"4096",
			"--reduce-device-size",
			"4M",
			"--pbkdf",
			"pbkdf2",
			"--pbkdf-force-iterations",
			"1000",
			"--batch-mode",
			"--key-file",
			dek_path,
			img,
			NULL};
	int rc = run(argv, NULL);
	if (rc != 0 && geteuid() == 0)
		print_error("cryptsetup reencrypt --encrypt exited with status %d\n", rc);
	if (rc != 0 && geteuid() != 0) {
		/* It takes a lock in /run/cryptsetup, which only root may create. */
		print_message(
			"SKIP: cryptsetup reencrypt fails without root: LUKS2 payload made by "
			"cryptsetup not checked\n");
		skip();
		return;
	}
	int r = luks_inspect(img, &li, &err);
	if (r != 0)
		print_error("luks_inspect of cryptsetup's LUKS2 image: %s (%s)\n", err.message,
			    err.reason);
	assert_int_equal(r, 0);
	assert_int_equal(li.sector_size, 4096);
	assert_int_equal(li.payload_offset, 2 * MiB);
	decrypt_to(img, out, dek, 2, &(struct luks_result){0});
	unsigned char *p = read_file(plain, &pn);
	unsigned char *o = read_file(out, &n);
	assert_int_equal(n, li.payload_size);
	assert_memory_equal(o, p, 6 * MiB);
	free(p);
	free(o);

	/* Same with aes-xts-plain (32-bit IVs), a 256-bit key and 512-byte sectors. */
	copy_prefix(raw_path, img, 10 * MiB);
	char *argv2[] = {cryptsetup_bin,
			 "reencrypt",
			 "--encrypt",
			 "--type",
			 "luks2",
			 "--cipher",
			 "aes-xts-plain",
			 "--key-size",
			 "256",
			 "--sector-size",
			 "512",
			 "--reduce-device-size",
			 "8M",
			 "--pbkdf",
			 "pbkdf2",
			 "--pbkdf-force-iterations",
			 "1000",
			 "--batch-mode",
			 "--key-file",
			 dek_path,
			 img,
			 NULL};
	assert_int_equal(run(argv2, NULL), 0);
	assert_int_equal(luks_inspect(img, &li, &err), 0);
	assert_string_equal(li.cipher_mode, "xts-plain");
	assert_int_equal(li.key_bits, 256);
	assert_int_equal(li.sector_size, 512);
	unlink(out);
	decrypt_to(img, out, dek, 2, &(struct luks_result){0});
	p = read_file(plain, &pn);
	o = read_file(out, &n);
	assert_int_equal(n, li.payload_size);
	assert_memory_equal(o, p, 2 * MiB);
	free(p);
	free(o);
	unlink(img);
	unlink(out);
	unlink(plain);
}

static void test_unsupported_cipher(void **state)
{
	char img[PATH_MAX];
	struct sealvm_err err = SEALVM_ERR_INIT;
	struct luks_volume *v = NULL;

	REQUIRE_TOOL(cryptsetup_bin, "cryptsetup");
	pathf(img, "cbc.luks");
	static const char *const fmt[] = {"--type",
					  "luks1",
					  "--cipher",
					  "aes-cbc-essiv:sha256",
					  "--key-size",
					  "256",
					  "--pbkdf-force-iterations",
					  "1000",
					  NULL};
	assert_int_equal(cs_format(img, 4 * MiB, fmt), 0);
	assert_int_equal(luks_unlock(img, dek, NULL, &v, &err), -EINVAL);
	assert_string_equal(err.reason, "UNSUPPORTED_CIPHER");
	assert_non_null(strstr(err.message, "aes-cbc-essiv:sha256"));

	/* Not AES (camellia has no XTS in the userspace crypto cryptsetup uses here). */
	static const char *const fmt2[] = {"--type",
					   "luks1",
					   "--cipher",
					   "camellia-cbc-plain64",
					   "--key-size",
					   "256",
					   "--pbkdf-force-iterations",
					   "1000",
					   NULL};
	assert_int_equal(cs_format(img, 4 * MiB, fmt2), 0);
	sealvm_err_clear(&err);
	assert_int_equal(luks_unlock(img, dek, NULL, &v, &err), -EINVAL);
	assert_string_equal(err.reason, "UNSUPPORTED_CIPHER");
	assert_non_null(strstr(err.message, "camellia"));

	/* AES-XTS, but with ESSIV tweaks. */
	static const char *const fmt3[] = {"--type",
					   "luks1",
					   "--cipher",
					   "aes-xts-essiv:sha256",
					   "--key-size",
					   "256",
					   "--pbkdf-force-iterations",
					   "1000",
					   NULL};
	assert_int_equal(cs_format(img, 4 * MiB, fmt3), 0);
	sealvm_err_clear(&err);
	assert_int_equal(luks_unlock(img, dek, NULL, &v, &err), -EINVAL);
	assert_string_equal(err.reason, "UNSUPPORTED_CIPHER");
	assert_non_null(strstr(err.message, "xts-essiv:sha256"));
	unlink(img);
}

static void test_pbkdf_cap_argon2(void **state)
{
	char img[PATH_MAX];
	struct sealvm_err err = SEALVM_ERR_INIT;
	struct luks_volume *v = NULL;
	struct luks_limits lim;
	struct luks_info li;

	REQUIRE_TOOL(cryptsetup_bin, "cryptsetup");
	pathf(img, "argon.luks");
	static const char *const fmt[] = {"--type",
					  "luks2",
					  "--pbkdf",
					  "argon2id",
					  "--pbkdf-memory",
					  "65536",
					  "--pbkdf-force-iterations",
					  "4",
					  "--pbkdf-parallel",
					  "1",
					  NULL};
	assert_int_equal(cs_format(img, 20 * MiB, fmt), 0);
	assert_int_equal(luks_inspect(img, &li, &err), 0);
	assert_string_equal(li.keyslots[0].pbkdf, "argon2id");
	assert_int_equal(li.keyslots[0].memory_kib, 65536);
	assert_int_equal(li.keyslots[0].iterations, 4);

	luks_limits_default(&lim);
	lim.max_memory_kib = 32768;
	assert_int_equal(luks_unlock(img, dek, &lim, &v, &err), -E2BIG);
	assert_null(v);
	assert_string_equal(err.reason, "PBKDF_COST_TOO_HIGH");
	assert_non_null(strstr(err.message, "65536 KiB"));
	assert_non_null(strstr(err.message, "32768 KiB"));
	assert_non_null(strstr(err.message, "--max-pbkdf-memory"));

	luks_limits_default(&lim);
	lim.max_argon2_iterations = 3;
	sealvm_err_clear(&err);
	assert_int_equal(luks_unlock(img, dek, &lim, &v, &err), -E2BIG);
	assert_string_equal(err.reason, "PBKDF_COST_TOO_HIGH");

	/* Within the default limits it opens. */
	sealvm_err_clear(&err);
	assert_int_equal(luks_unlock(img, dek, NULL, &v, &err), 0);
	luks_volume_free(v);
	unlink(img);
}

static void test_pbkdf_cap_pbkdf2(void **state)
{
	char img[PATH_MAX];
	struct sealvm_err err = SEALVM_ERR_INIT;
	struct luks_volume *v = NULL;
	struct luks_limits lim;

	REQUIRE_TOOL(cryptsetup_bin, "cryptsetup");
	pathf(img, "pb.luks");
	static const char *const fmt[] = {
		"--type", "luks1", "--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "50000", NULL};
	assert_int_equal(cs_format(img, 4 * MiB, fmt), 0);
	luks_limits_default(&lim);
	lim.max_pbkdf2_iterations = 10000;
	assert_int_equal(luks_unlock(img, dek, &lim, &v, &err), -E2BIG);
	assert_string_equal(err.reason, "PBKDF_COST_TOO_HIGH");
	assert_non_null(strstr(err.message, "50000"));
	assert_non_null(strstr(err.message, "10000"));
	sealvm_err_clear(&err);
	assert_int_equal(luks_unlock(img, dek, NULL, &v, &err), 0);
	luks_volume_free(v);
	unlink(img);
}

/*
 * The volume key digest costs one PBKDF2 run per correct passphrase: a header
 * with cheap keyslots but a costly digest is refused too.
 */
static void test_pbkdf_cap_digest(void **state)
{
	char img[PATH_MAX];
	struct sealvm_err err = SEALVM_ERR_INIT;
	struct luks_volume *v = NULL;
	struct crypt_device *cd = NULL;
	struct luks_limits lim;
	struct luks_info li;
	unsigned char vk[64];
	/* LUKS1 digest iterations = iterations * 125 ms / time_ms: here 125000. */
	struct crypt_pbkdf_type pbkdf = {.type = CRYPT_KDF_PBKDF2,
					 .hash = "sha256",
					 .iterations = 1000,
					 .time_ms = 1,
					 .flags = CRYPT_PBKDF_NO_BENCHMARK};
	struct crypt_params_luks1 params = {.hash = "sha256", .data_alignment = 4096};

	pathf(img, "dg.luks");
	int fd = open(img, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, 3 * MiB), 0);
	close(fd);
	assert_int_equal(RAND_bytes(vk, sizeof(vk)), 1);
	assert_int_equal(crypt_init(&cd, img), 0);
	assert_int_equal(crypt_set_pbkdf_type(cd, &pbkdf), 0);
	assert_int_equal(
		crypt_format(cd, CRYPT_LUKS1, "aes", "xts-plain64", NULL, (char *)vk, 64, &params),
		0);
	assert_int_equal(crypt_keyslot_add_by_volume_key(cd, 0, (char *)vk, 64,
							 (const char *)dek->data, dek->len),
			 0);
	crypt_free(cd);
	memset(vk, 0, sizeof(vk));

	assert_int_equal(luks_inspect(img, &li, &err), 0);
	assert_int_equal(li.keyslots[0].iterations, 1000);
	assert_true(li.digest_iterations > 20000);
	luks_limits_default(&lim);
	lim.max_pbkdf2_iterations = 20000;
	assert_int_equal(luks_unlock(img, dek, &lim, &v, &err), -E2BIG);
	assert_string_equal(err.reason, "PBKDF_COST_TOO_HIGH");
	assert_non_null(strstr(err.message, "digest"));
	unlink(img);
}

static void test_output_exists(void **state)
{
	char img[PATH_MAX], partial[PATH_MAX + 16];
	struct sealvm_err err = SEALVM_ERR_INIT;
	struct luks_encrypt_opts o = {0};
	struct luks_info li;
	static const char old[] = "precious old content\n";
	size_t n;

	pathf(img, "exists.luks");
	snprintf(partial, sizeof(partial), "%s.partial", img);
	write_file(img, old, sizeof(old) - 1);
	assert_int_equal(encrypt_raw(raw_path, img, dek, &o, NULL, &err), -EEXIST);
	assert_string_equal(err.reason, "OUTPUT_EXISTS");
	unsigned char *b = read_file(img, &n);
	assert_int_equal(n, sizeof(old) - 1);
	assert_memory_equal(b, old, n);
	free(b);
	assert_false(exists(partial));

	/* A stale partial file is never clobbered. */
	write_file(partial, old, sizeof(old) - 1);
	o.replace = true;
	sealvm_err_clear(&err);
	assert_int_equal(encrypt_raw(raw_path, img, dek, &o, NULL, &err), -EEXIST);
	assert_string_equal(err.reason, "PARTIAL_EXISTS");
	unlink(partial);

	sealvm_err_clear(&err);
	assert_int_equal(encrypt_raw(raw_path, img, dek, &o, NULL, &err), 0);
	assert_int_equal(luks_inspect(img, &li, &err), 0);
	assert_false(exists(partial));
	unlink(img);
}

static void test_file_too_large(void **state)
{
	char img[PATH_MAX], partial[PATH_MAX + 16];
	pid_t pid;
	int st;

	pathf(img, "fsize.luks");
	snprintf(partial, sizeof(partial), "%s.partial", img);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct rlimit rl = {4 * MiB, 4 * MiB};
		struct sealvm_err err = SEALVM_ERR_INIT;
		struct disk_source *src = NULL;
		signal(SIGXFSZ, SIG_IGN);
		if (setrlimit(RLIMIT_FSIZE, &rl) < 0)
			_exit(10);
		struct sealvm_secret *pass = NULL;
		/* Secrets are wiped in a forked child (MADV_WIPEONFORK): read the DEK again. */
		if (sealvm_secret_read_file(dek_path, 4096, &pass, &err) < 0)
			_exit(11);
		if (disk_source_open(raw_path, DISK_FORMAT_RAW, &src, &err) < 0)
			_exit(11);
		int r = luks_encrypt_image(src, img, pass, NULL, NULL, &err);
		if (r != -EFBIG) {
			fprintf(stderr, "encrypt under RLIMIT_FSIZE: %d %s %s\n", r, err.reason,
				err.message);
			_exit(12);
		}
		if (strcmp(err.reason, "FILE_TOO_LARGE") != 0 || !strstr(err.message, img))
			_exit(13);
		_exit(0);
	}
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
	assert_false(exists(img));
	assert_false(exists(partial));
}

/* A read error in the middle of the stream stops everything and leaves nothing behind. */
static void test_source_error_midway(void **state)
{
	char raw[PATH_MAX], q[PATH_MAX], img[PATH_MAX], partial[PATH_MAX + 16];
	struct sealvm_err err = SEALVM_ERR_INIT;
	struct disk_source *src = NULL;
	const size_t size = 16 * MiB;
	unsigned char junk[65536];

	REQUIRE_TOOL(qemu_img_bin, "qemu-img");
	pathf(raw, "text.raw");
	pathf(q, "broken.qcow2");
	pathf(img, "broken.luks");
	snprintf(partial, sizeof(partial), "%s.partial", img);
	/* Compressible data, so that every cluster is stored compressed. */
	unsigned char *b = malloc(size);
	assert_non_null(b);
	assert_int_equal(RAND_bytes(b, (int)size), 1);
	for (size_t i = 0; i < size; i++)
		b[i] = (unsigned char)('a' + b[i] % 16);
	write_file(raw, b, size);
	free(b);
	char *c_argv[] = {qemu_img_bin, "convert", "-c", "-f", "raw", "-O", "qcow2", raw, q, NULL};
	assert_int_equal(run(c_argv, NULL), 0);
	/* Garble compressed data three quarters in: found only when that cluster is read. */
	memset(junk, 0xff, sizeof(junk));
	int fd = open(q, O_WRONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(sealvm_pwrite_all(fd, junk, sizeof(junk), file_size(q) * 3 / 4), 0);
	close(fd);
	if (disk_source_open(q, DISK_FORMAT_QCOW2, &src, &err) < 0) {
		print_message("SKIP: the qcow2 reader refuses the damaged image at open: %s\n",
			      err.message);
		skip();
		return;
	}
	struct luks_encrypt_opts o = {.threads = 2};
	int r = luks_encrypt_image(src, img, dek, &o, NULL, &err);
	disk_source_free(src);
	assert_int_equal(r, -EBADMSG);
	assert_int_equal(err.code, -EBADMSG);
	assert_false(exists(img));
	assert_false(exists(partial));
	unlink(raw);
	unlink(q);
}

static bool mem_contains(const unsigned char *hay, size_t n, const unsigned char *needle, size_t m)
{
	return m <= n && memmem(hay, n, needle, m) != NULL;
}

static const unsigned char *scan_needle;
static size_t scan_needle_len;
static const char *scan_allowed;
static char scan_found[PATH_MAX];

static int scan_cb(const char *p, const struct stat *sb, int type, struct FTW *ftw)
{
	size_t n;
	if (type != FTW_F || strcmp(p, scan_allowed ? scan_allowed : "") == 0)
		return 0;
	unsigned char *b = read_file(p, &n);
	if (mem_contains(b, n, scan_needle, scan_needle_len))
		snprintf(scan_found, sizeof(scan_found), "%s", p);
	free(b);
	return 0;
}

static bool secret_in_tmpdir(const unsigned char *s, size_t n, const char *allowed, char *where)
{
	scan_needle = s;
	scan_needle_len = n;
	scan_allowed = allowed;
	scan_found[0] = 0;
	nftw(tmpdir, scan_cb, 16, FTW_PHYS);
	snprintf(where, PATH_MAX, "%s", scan_found);
	return scan_found[0] != 0;
}

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

static void test_secrets_not_on_disk(void **state)
{
	char img[PATH_MAX], out[PATH_MAX], where[PATH_MAX];
	struct sealvm_err err = SEALVM_ERR_INIT;
	unsigned char vk[64];
	size_t vk_len = 0;
	char *dump = NULL;

	REQUIRE_TOOL(cryptsetup_bin, "cryptsetup");
	pathf(img, "sec.luks");
	pathf(out, "sec.raw");
	assert_int_equal(encrypt_raw(raw_path, img, dek, NULL, NULL, &err), 0);
	decrypt_to(img, out, dek, 0, &(struct luks_result){0});

	if (secret_in_tmpdir(dek->data, dek->len, dek_path, where))
		fail_msg("the DEK text is in %s", where);

	/* The volume key as a peer sees it, read through a pipe, never a file. */
	char *argv[] = {cryptsetup_bin,
			"luksDump",
			"--dump-volume-key",
			"--batch-mode",
			"--key-file",
			dek_path,
			img,
			NULL};
	assert_int_equal(run(argv, &dump), 0);
	char *p = strstr(dump, "MK dump:");
	assert_non_null(p);
	p += strlen("MK dump:");
	while (*p && vk_len < sizeof(vk)) {
		int hi = hexval(p[0]), lo = hi >= 0 ? hexval(p[1]) : -1;
		if (hi >= 0 && lo >= 0) {
			vk[vk_len++] = (unsigned char)(hi << 4 | lo);
			p += 2;
		} else {
			p++;
		}
	}
	OPENSSL_cleanse(dump, strlen(dump));
	free(dump);
	assert_int_equal(vk_len, 64);

	/* It is in no file (the DEK file included). */
	struct sealvm_secret *k = NULL;
	assert_int_equal(sealvm_secret_from(vk, 64, &k), 0);
	OPENSSL_cleanse(vk, sizeof(vk));
	if (secret_in_tmpdir(k->data, 32, NULL, where) ||
	    secret_in_tmpdir(k->data + 32, 32, NULL, where))
		fail_msg("the volume key is in %s", where);
	sealvm_secret_free(k);
	unlink(img);
	unlink(out);
}

/* libcryptsetup must not print anything on its own, in success or failure. */
static void test_quiet(void **state)
{
	char img[PATH_MAX], errf[PATH_MAX], l2[PATH_MAX];
	struct sealvm_err err = SEALVM_ERR_INIT;
	struct sealvm_secret *wrong = NULL;
	struct luks_volume *v = NULL;
	struct luks_info li;
	int saved, fd;

	pathf(img, "quiet.luks");
	pathf(errf, "quiet.stderr");
	pathf(l2, "quiet2.luks");
	fflush(stderr);
	fflush(stdout);
	saved = dup(2);
	fd = open(errf, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	assert_true(fd >= 0 && saved >= 0);
	dup2(fd, 2);
	dup2(fd, 1);

	int r1 = encrypt_raw(raw_path, img, dek, NULL, NULL, &err);
	assert_int_equal(sealvm_secret_from("not the key, not at all", 23, &wrong), 0);
	int r2 = luks_unlock(img, wrong, NULL, &v, &err);
	int r3 = luks_inspect(raw_path, &li, &err);
	copy_prefix(img, l2, 1000);
	int r4 = luks_unlock(l2, dek, NULL, &v, &err);
	sealvm_secret_free(wrong);

	fflush(stderr);
	fflush(stdout);
	dup2(saved, 2);
	dup2(saved, 1);
	close(saved);
	close(fd);
	assert_int_equal(r1, 0);
	assert_int_equal(r2, -EKEYREJECTED);
	assert_int_equal(r3, -EINVAL);
	assert_int_equal(r4, -EBADMSG);
	assert_int_equal(file_size(errf), 0);
	unlink(img);
	unlink(l2);
	unlink(errf);
}

/*
 * A hostile header may carry a volume key whose XTS halves are equal. OpenSSL
 * refuses such keys for encryption and accepts them for decryption: either
 * way the result is a return code, never a crash.
 */
static void test_equal_halves_key(void **state)
{
	char img[PATH_MAX], out[PATH_MAX];
	struct sealvm_err err = SEALVM_ERR_INIT;
	struct luks_volume *v = NULL;
	struct crypt_device *cd = NULL;
	unsigned char vk[64];
	struct crypt_pbkdf_type pbkdf = {.type = CRYPT_KDF_PBKDF2,
					 .hash = "sha256",
					 .iterations = 1000,
					 .flags = CRYPT_PBKDF_NO_BENCHMARK};
	struct crypt_params_luks1 params = {.hash = "sha256", .data_alignment = 4096};

	pathf(img, "eq.luks");
	pathf(out, "eq.raw");
	int fd = open(img, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, 2 * MiB + 64 * KiB), 0);
	close(fd);
	memset(vk, 0x42, sizeof(vk));
	assert_int_equal(crypt_init(&cd, img), 0);
	assert_int_equal(crypt_set_pbkdf_type(cd, &pbkdf), 0);
	assert_int_equal(
		crypt_format(cd, CRYPT_LUKS1, "aes", "xts-plain64", NULL, (char *)vk, 64, &params),
		0);
	assert_int_equal(crypt_keyslot_add_by_volume_key(cd, 0, (char *)vk, 64,
							 (const char *)dek->data, dek->len),
			 0);
	crypt_free(cd);

	assert_int_equal(luks_unlock(img, dek, NULL, &v, &err), 0);
	int r = luks_decrypt_image(v, img, out, NULL, NULL, &err);
	assert_true(r == 0 || (r < 0 && sealvm_err_isset(&err)));
	if (r < 0)
		assert_false(exists(out));
	luks_volume_free(v);
	unlink(img);
	unlink(out);
}

/* libcryptsetup would "repair" a damaged LUKS2 header copy in place: reading must not write. */
static void test_luks2_read_is_read_only(void **state)
{
	char img[PATH_MAX];
	struct sealvm_err err = SEALVM_ERR_INIT;
	struct luks_volume *v = NULL;
	struct luks_info li;
	unsigned char before[32], after[32], zero[512] = {0};
	size_t n;

	REQUIRE_TOOL(cryptsetup_bin, "cryptsetup");
	pathf(img, "ro.luks");
	static const char *const fmt[] = {
		"--type", "luks2", "--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000", NULL};
	assert_int_equal(cs_format(img, 17 * MiB, fmt), 0);
	/* Wipe the secondary binary header (at 16 KiB for the default metadata size). */
	int fd = open(img, O_WRONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(sealvm_pwrite_all(fd, zero, sizeof(zero), 16384), 0);
	close(fd);
	unsigned char *b = read_file(img, &n);
	sha256_of(b, n, before);
	free(b);

	assert_int_equal(luks_inspect(img, &li, &err), 0);
	assert_int_equal(li.version, 2);
	assert_int_equal(luks_unlock(img, dek, NULL, &v, &err), 0);
	luks_volume_free(v);

	b = read_file(img, &n);
	sha256_of(b, n, after);
	free(b);
	assert_memory_equal(before, after, 32);
	unlink(img);
}

static void test_decrypt_other_file(void **state)
{
	char a[PATH_MAX], b[PATH_MAX], out[PATH_MAX];
	struct sealvm_err err = SEALVM_ERR_INIT;
	struct luks_volume *v = NULL;

	pathf(a, "a.luks");
	pathf(b, "b.luks");
	pathf(out, "ab.raw");
	assert_int_equal(encrypt_raw(raw_path, a, dek, NULL, NULL, &err), 0);
	assert_int_equal(encrypt_raw(raw_path, b, dek, NULL, NULL, &err), 0);
	assert_int_equal(luks_unlock(a, dek, NULL, &v, &err), 0);
	assert_int_equal(luks_decrypt_image(v, b, out, NULL, NULL, &err), -EINVAL);
	assert_string_equal(err.reason, "NOT_SAME_IMAGE");
	assert_false(exists(out));

	/* And the decrypt output follows the atomic rules too. */
	write_file(out, "x", 1);
	sealvm_err_clear(&err);
	assert_int_equal(luks_decrypt_image(v, a, out, NULL, NULL, &err), -EEXIST);
	assert_string_equal(err.reason, "OUTPUT_EXISTS");
	assert_int_equal(file_size(out), 1);
	sealvm_err_clear(&err);
	assert_int_equal(luks_decrypt_image(v, a, out, &(struct luks_decrypt_opts){.replace = true},
					    NULL, &err),
			 0);
	assert_int_equal(file_size(out), RAW_SIZE);
	struct stat st;
	assert_int_equal(stat(out, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	luks_volume_free(v);
	unlink(a);
	unlink(b);
	unlink(out);
}

/* Bounded memory: the ring, not the image, sets the footprint. */
static void test_memory_bounded(void **state)
{
	char big[PATH_MAX], img[PATH_MAX];
	struct sealvm_err err = SEALVM_ERR_INIT;
	struct rusage ru;
	pid_t pid;
	int st;

	pathf(big, "big.raw");
	pathf(img, "big.luks");
	int fd = open(big, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, 160 * MiB), 0);
	close(fd);
	/* In a child, so that the peak is this job's alone. */
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct luks_encrypt_opts o = {.threads = 64};
		struct sealvm_secret *pass = NULL;
		if (sealvm_secret_read_file(dek_path, 4096, &pass, &err) < 0)
			_exit(4);
		if (encrypt_raw(big, img, pass, &o, NULL, &err) < 0) {
			fprintf(stderr, "encrypt: %s %s\n", err.reason, err.message);
			_exit(1);
		}
		if (getrusage(RUSAGE_SELF, &ru) < 0)
			_exit(2);
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
		/* Shadow memory and quarantine make RSS meaningless here. */
		_exit(0);
#else
		/* ru_maxrss is in KiB; the ring is at most 64 MiB. */
		if (ru.ru_maxrss >= 100L * 1024)
			fprintf(stderr, "peak RSS %ld KiB\n", ru.ru_maxrss);
		_exit(ru.ru_maxrss < 100L * 1024 ? 0 : 3);
#endif
	}
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
	unlink(big);
	unlink(img);
}

static void test_bad_arguments(void **state)
{
	char img[PATH_MAX];
	struct sealvm_err err = SEALVM_ERR_INIT;
	struct sealvm_secret *empty = NULL;
	struct luks_encrypt_opts o = {.pbkdf2_iterations = 999};

	pathf(img, "args.luks");
	assert_int_equal(sealvm_secret_new(1, &empty), 0);
	assert_int_equal(encrypt_raw(raw_path, img, empty, NULL, NULL, &err), -EINVAL);
	sealvm_err_clear(&err);
	assert_int_equal(encrypt_raw(raw_path, img, dek, &o, NULL, &err), -EINVAL);
	assert_false(exists(img));
	sealvm_secret_free(empty);

	o.pbkdf2_iterations = 3000;
	sealvm_err_clear(&err);
	assert_int_equal(encrypt_raw(raw_path, img, dek, &o, NULL, &err), 0);
	struct luks_info li;
	assert_int_equal(luks_inspect(img, &li, &err), 0);
	assert_int_equal(li.keyslots[0].iterations, 3000);
	unlink(img);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_limits_default),
		cmocka_unit_test(test_encrypt_roundtrip),
		cmocka_unit_test(test_thread_counts),
		cmocka_unit_test(test_wrong_key),
		cmocka_unit_test(test_not_luks),
		cmocka_unit_test(test_truncated),
		cmocka_unit_test(test_luks2_4096),
		cmocka_unit_test(test_unsupported_cipher),
		cmocka_unit_test(test_pbkdf_cap_argon2),
		cmocka_unit_test(test_pbkdf_cap_pbkdf2),
		cmocka_unit_test(test_pbkdf_cap_digest),
		cmocka_unit_test(test_output_exists),
		cmocka_unit_test(test_file_too_large),
		cmocka_unit_test(test_source_error_midway),
		cmocka_unit_test(test_secrets_not_on_disk),
		cmocka_unit_test(test_quiet),
		cmocka_unit_test(test_equal_halves_key),
		cmocka_unit_test(test_luks2_read_is_read_only),
		cmocka_unit_test(test_decrypt_other_file),
		cmocka_unit_test(test_memory_bounded),
		cmocka_unit_test(test_bad_arguments),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
