// SPDX-License-Identifier: Apache-2.0
/*
 * main.c — the sealvm command tree and its dispatcher.
 *
 * Every command is a row in one of the tables below; `--help` works at every
 * level, and an unknown or missing subcommand is a usage error (exit 2) that
 * lists what exists. Nothing here touches key material.
 */
#include <locale.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "sealvm_config.h"
#include "sealvm/log.h"
#include "sealvm/secret.h"

#include "cli.h"

static const struct cli_command dek_commands[] = {
	{"generate", cmd_dek_generate, NULL, "make a new random DEK (base64 text)",
	 "dek generate [--bytes N] [--out FILE]\n"
	 "\n"
	 "Writes N random bytes (default 32) as canonical base64 text, one line, no\n"
	 "newline: the form every sealvm command and the key service take as a DEK\n"
	 "and as the LUKS passphrase of an image. N must give 32 to 512 characters\n"
	 "(22 to 384 bytes).\n"
	 "\n"
	 "  --bytes N    random bytes to encode (default 32)\n"
	 "  --out FILE   write to FILE, created with mode 0600; never overwrites\n"
	 "               (default: standard output)\n"},
	{0},
};

static const struct cli_command image_commands[] = {
	{"encrypt", cmd_image_encrypt, NULL, "encrypt a disk image into a LUKS1 image",
	 "image encrypt --dek-file FILE [options] IN OUT\n"
	 "\n"
	 "Reads the disk image IN (raw, VHD fixed or dynamic, qcow2 v2/v3) and writes\n"
	 "OUT, a LUKS1 image (aes-xts-plain64, 512-bit volume key, sha256, payload at\n"
	 "sector 4096) whose passphrase is the DEK file's text, byte for byte. One\n"
	 "streaming pass; no root, no dm-crypt, no loop device. OUT is written as\n"
	 "OUT.partial and renamed when complete and synced: on any failure OUT does not\n"
	 "exist. Prints the virtual size, output size, the output's SHA-256, elapsed time\n"
	 "and throughput.\n"
	 "\n"
	 "  --dek-file FILE          the DEK (base64 text, 32-512 characters, no newline)\n"
	 "  --in-format FMT          auto (default), raw, vhd or qcow2\n"
	 "  --threads N              encryption threads (default: CPUs - 1, at least 1;\n"
	 "                           reading, writing and hashing run on threads of their own)\n"
	 "  --pbkdf-iterations N     PBKDF2-SHA256 iterations of the keyslot, 1000-20000000\n"
	 "                           (default 1000: the DEK is a random key, not a password)\n"
	 "  --progress, --no-progress  show a progress bar (default: on a terminal)\n"
	 "  --force                  replace OUT if it exists\n"
	 "  --json                   print the report as JSON\n"},
	{"decrypt", cmd_image_decrypt, NULL, "decrypt a LUKS image back to a raw image",
	 "image decrypt --dek-file FILE [options] IMAGE OUT\n"
	 "\n"
	 "Writes the plain payload of the LUKS1 or LUKS2 image IMAGE to OUT as a raw\n"
	 "disk image. Same streaming and atomic rules as encrypt.\n"
	 "\n"
	 "  --dek-file FILE          the DEK that opens a keyslot of IMAGE\n"
	 "  --threads N              decryption threads (default: CPUs - 1, at least 1)\n"
	 "  --max-pbkdf-memory SIZE  refuse keyslots whose argon2 memory is larger (default 1G)\n"
	 "  --max-pbkdf-iterations N refuse PBKDF2 keyslots with more iterations (default 20000000)\n"
	 "  --max-pbkdf-time N       refuse argon2 keyslots with a larger time cost (default 32)\n"
	 "  --progress, --no-progress  show a progress bar (default: on a terminal)\n"
	 "  --force                  replace OUT if it exists\n"
	 "  --json                   print the report as JSON\n"},
	{"verify", cmd_image_verify, NULL, "check that a DEK opens a LUKS image",
	 "image verify --dek-file FILE [options] IMAGE\n"
	 "\n"
	 "Exits 0 if and only if the DEK opens a keyslot of IMAGE. Reads only the header.\n"
	 "Otherwise says why: not LUKS, unsupported cipher, wrong key, truncated, or a\n"
	 "keyslot whose key derivation costs more than the limits below.\n"
	 "\n"
	 "  --dek-file FILE          the DEK to check\n"
	 "  --max-pbkdf-memory SIZE  as for decrypt\n"
	 "  --max-pbkdf-iterations N as for decrypt\n"
	 "  --max-pbkdf-time N       as for decrypt\n"
	 "  --json                   print the result as JSON\n"},
	{"inspect", cmd_image_inspect, NULL, "describe a disk image (raw, VHD, qcow2, LUKS)",
	 "image inspect [--json] IMAGE\n"
	 "\n"
	 "Prints the format and virtual size; for LUKS the version, cipher, mode, hash,\n"
	 "payload offset, key size, UUID and active keyslots; for VHD the type, size and\n"
	 "footer checksum status; for qcow2 the version, cluster size, backing file and\n"
	 "compression. Needs no key.\n"
	 "\n"
	 "  --json    print as JSON\n"},
	{0},
};

static const struct cli_command root_commands[] = {
	{"dek", NULL, dek_commands, "data encryption keys", NULL},
	{"image", NULL, image_commands, "encrypt, decrypt, verify and inspect disk images", NULL},
	{0},
};

static void print_group(FILE *f, const char *path, const struct cli_command *children)
{
	fprintf(f, "Usage: sealvm %s%sCOMMAND [--help]\n\nCommands:\n", path, *path ? " " : "");
	for (const struct cli_command *c = children; c->name; c++)
		fprintf(f, "  %-10s %s\n", c->name, c->summary);
	if (!*path)
		fprintf(f, "\nOptions:\n  --help       this help\n  --version    print the version\n"
			   "  --verbose    more diagnostics on stderr\n"
			   "\nRun 'sealvm COMMAND --help' for each command. Docs: docs/cli.md\n");
}

static char path_buf[128];
const char *cli_path = "";

static int dispatch(const struct cli_command *table, int argc, char **argv)
{
	char group[sizeof(path_buf)];

	snprintf(group, sizeof(group), "%s", cli_path);

	if (argc < 1) {
		print_group(stderr, group, table);
		return EXIT_USAGE;
	}
	if (!strcmp(argv[0], "--help") || !strcmp(argv[0], "-h") || !strcmp(argv[0], "help")) {
		print_group(stdout, group, table);
		return EXIT_OK;
	}
	for (const struct cli_command *c = table; c->name; c++) {
		if (strcmp(c->name, argv[0]) != 0)
			continue;
		if (snprintf(path_buf, sizeof(path_buf), "%s%s%s", group, *group ? " " : "",
			     c->name) >= (int)sizeof(path_buf))
			return EXIT_USAGE; /* command tables never nest this deep */
		cli_path = path_buf;
		if (c->children)
			return dispatch(c->children, argc - 1, argv + 1);
		/* A leaf: its own --help is handled in cli_parse, with its usage text. */
		for (int i = 1; i < argc; i++) {
			if (!strcmp(argv[i], "--"))
				break;
			if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
				printf("Usage: sealvm %s", c->usage);
				return EXIT_OK;
			}
		}
		return c->run(argc, argv);
	}
	fprintf(stderr, "sealvm%s%s: unknown command '%s'\n\n", *group ? " " : "", group, argv[0]);
	print_group(stderr, group, table);
	return EXIT_USAGE;
}

int main(int argc, char **argv)
{
	int i = 1;

	setlocale(LC_ALL, "C");
	sealvm_log_set_ident("sealvm");
	sealvm_secret_harden_process();
	/* A file-size limit must end in a clear error (EFBIG), not a silent kill. */
	signal(SIGXFSZ, SIG_IGN);
	signal(SIGPIPE, SIG_IGN);

	for (; i < argc && argv[i][0] == '-'; i++) {
		if (!strcmp(argv[i], "--version")) {
			printf("sealvm %s\n", SEALVM_VERSION);
			return EXIT_OK;
		} else if (!strcmp(argv[i], "--verbose") || !strcmp(argv[i], "-v")) {
			sealvm_log_set_level(SEALVM_LOG_DEBUG);
		} else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			break;
		} else {
			fprintf(stderr, "sealvm: unknown option '%s'; see 'sealvm --help'\n", argv[i]);
			return EXIT_USAGE;
		}
	}
	return dispatch(root_commands, argc - i, argv + i);
}
