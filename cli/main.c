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
#include "client.h"

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

#define JSON_OPT "  --json    print the server's JSON\n"

static const struct cli_command serviceid_commands[] = {
	{"create", cmd_iam_serviceid_create, NULL, "create a service ID",
	 "iam service-id create NAME [--description TEXT] [--json]\n"
	 "\n"
	 "Creates a service ID in the caller's account and prints it.\n"
	 "\n"
	 "  --description TEXT   what it is for\n" JSON_OPT},
	{"list", cmd_iam_serviceid_list, NULL, "list the account's service IDs",
	 "iam service-id list [--json]\n\nLists every service ID of the account (all pages).\n\n" JSON_OPT},
	{"show", cmd_iam_serviceid_show, NULL, "show one service ID",
	 "iam service-id show ID [--json]\n\n" JSON_OPT},
	{"update", cmd_iam_serviceid_update, NULL, "rename or redescribe a service ID",
	 "iam service-id update ID [--name NAME] [--description TEXT] [--json]\n"
	 "\n"
	 "  --name NAME          the new name\n"
	 "  --description TEXT   the new description\n" JSON_OPT},
	{"delete", cmd_iam_serviceid_delete, NULL, "delete a service ID, its API keys and policies",
	 "iam service-id delete ID\n\nDeletes the service ID, its API keys and its policies.\n"},
	{"lock", cmd_iam_serviceid_lock, NULL, "lock a service ID (no new tokens)",
	 "iam service-id lock ID\n\nA locked service ID gets no new tokens and cannot be changed;\n"
	 "tokens already issued stay valid until they expire.\n"},
	{"unlock", cmd_iam_serviceid_unlock, NULL, "unlock a service ID",
	 "iam service-id unlock ID\n"},
	{0},
};

static const struct cli_command apikey_commands[] = {
	{"create", cmd_iam_apikey_create, NULL, "create an API key (its value is shown once)",
	 "iam api-key create NAME --iam-id IAM_ID [--description TEXT] [--out FILE] [--json]\n"
	 "\n"
	 "Creates an API key for a user or service ID. The value is shown only once:\n"
	 "alone on stdout (details on stderr), or written to FILE, created with mode\n"
	 "0600 and never overwritten (then the details go to stdout).\n"
	 "\n"
	 "  --iam-id IAM_ID      whose key it is (iam-ServiceId-... or IBMid-...)\n"
	 "  --description TEXT   what it is for\n"
	 "  --out FILE           write the value to FILE (0600, must not exist)\n"
	 "  --json               print the server's JSON (with the value, unless --out)\n"},
	{"list", cmd_iam_apikey_list, NULL, "list API keys (never their values)",
	 "iam api-key list [--iam-id IAM_ID] [--json]\n"
	 "\n"
	 "  --iam-id IAM_ID   only the keys of this user or service ID\n" JSON_OPT},
	{"show", cmd_iam_apikey_show, NULL, "show one API key (without its value)",
	 "iam api-key show ID [--json]\n\n" JSON_OPT},
	{"delete", cmd_iam_apikey_delete, NULL, "delete an API key", "iam api-key delete ID\n"},
	{"lock", cmd_iam_apikey_lock, NULL, "lock an API key (no new tokens)",
	 "iam api-key lock ID\n"},
	{"unlock", cmd_iam_apikey_unlock, NULL, "unlock an API key", "iam api-key unlock ID\n"},
	{0},
};

#define ROLE_HELP                                                                                  \
	"ROLE is a short name — platform roles Viewer, Operator, Editor, Administrator;\n"       \
	"service roles such as Reader, ReaderPlus, Writer, Manager, KeyPurge — or a full\n"      \
	"role CRN, which is passed through.\n"

static const struct cli_command policy_commands[] = {
	{"create", cmd_iam_policy_create, NULL, "give a user or service ID a role",
	 "iam policy create --subject IAM_ID --role ROLE --service NAME [options]\n"
	 "\n"
	 "Creates an access policy in the caller's account.\n" ROLE_HELP "\n"
	 "  --subject IAM_ID      the user or service ID\n"
	 "  --role ROLE           the role (see above)\n"
	 "  --service NAME        the service (kms, cloud-object-storage, iam-identity, ...)\n"
	 "  --instance GUID       only this service instance\n"
	 "  --resource-type T     only resources of this type\n"
	 "  --resource R          only this resource\n" JSON_OPT},
	{"list", cmd_iam_policy_list, NULL, "list the account's policies",
	 "iam policy list [--iam-id IAM_ID] [--type access|authorization] [--json]\n"
	 "\n"
	 "  --iam-id IAM_ID   only the policies of this subject\n"
	 "  --type TYPE       access or authorization\n" JSON_OPT},
	{"show", cmd_iam_policy_show, NULL, "show one policy",
	 "iam policy show ID [--json]\n\n" JSON_OPT},
	{"delete", cmd_iam_policy_delete, NULL, "delete a policy", "iam policy delete ID\n"},
	{0},
};

static const struct cli_command authz_commands[] = {
	{"create", cmd_iam_authz_create, NULL, "let one service act on another in this account",
	 "iam authorization create --source SERVICE --target SERVICE --role ROLE [options]\n"
	 "\n"
	 "Creates an authorization policy in the caller's account (read from the\n"
	 "token): SERVICE --source (e.g. block-storage, images) may act with ROLE on\n"
	 "the --target service (e.g. kms).\n" ROLE_HELP "\n"
	 "  --source SERVICE          the service that acts\n"
	 "  --target SERVICE          the service acted on\n"
	 "  --role ROLE               the role (see above)\n"
	 "  --source-instance GUID    only this instance of the source\n"
	 "  --target-instance GUID    only this instance of the target\n" JSON_OPT},
	{"list", cmd_iam_authz_list, NULL, "list the account's authorizations",
	 "iam authorization list [--json]\n\n" JSON_OPT},
	{"delete", cmd_iam_authz_delete, NULL, "delete an authorization",
	 "iam authorization delete ID\n"},
	{0},
};

static const struct cli_command iam_commands[] = {
	{"service-id", NULL, serviceid_commands, "service IDs", NULL},
	{"api-key", NULL, apikey_commands, "API keys of users and service IDs", NULL},
	{"policy", NULL, policy_commands, "access policies", NULL},
	{"authorization", NULL, authz_commands, "service-to-service authorizations", NULL},
	{0},
};

static const struct cli_command events_commands[] = {
	{"list", cmd_events_list, NULL, "list the account's audit events",
	 "events list [options]\n"
	 "\n"
	 "Lists the caller's account's audit events, oldest first: time, action,\n"
	 "outcome, initiator, target. One page unless --all.\n"
	 "\n"
	 "  --from T             from this time: epoch milliseconds or YYYY-MM-DDTHH:MM:SSZ\n"
	 "  --to T               up to this time (same forms)\n"
	 "  --action PREFIX      actions that start with PREFIX\n"
	 "  --target CRN         events on this target\n"
	 "  --initiator ID       events by this initiator\n"
	 "  --outcome OUTCOME    success or failure\n"
	 "  --limit N            events per page, 1-1000 (default 100)\n"
	 "  --all                follow the pages to the end\n" JSON_OPT},
	{"verify", cmd_events_verify, NULL, "check the audit chain through the API",
	 "events verify [--checkpoint FILE | --data-dir DIR] [--json]\n"
	 "\n"
	 "Asks the server to recompute the whole audit chain. Exits 0 when it verifies,\n"
	 "1 naming the first bad record otherwise. With --checkpoint, also proves that the\n"
	 "chain still passes through that signed head, so a truncated or rewritten trail is\n"
	 "caught even if whoever did it holds the data dir. With --data-dir, verifies on\n"
	 "this machine from the data dir itself (the daemon running or stopped).\n"
	 "\n"
	 "  --checkpoint FILE  a checkpoint made earlier by 'sealvm events checkpoint'\n"
	 "  --data-dir DIR     verify offline (needs read access to DIR's master key)\n" JSON_OPT},
	{"checkpoint", cmd_events_checkpoint, NULL, "the chain head, signed by the server",
	 "events checkpoint [--out FILE] [--json]\n"
	 "\n"
	 "Prints the audit chain's head (sequence number and chain value) signed by the\n"
	 "server's token signing key: one line to keep off this machine and give to\n"
	 "'sealvm events verify --checkpoint' later.\n"
	 "\n"
	 "  --out FILE   write it to FILE (never overwritten) instead of stdout\n" JSON_OPT},
	{0},
};

static const struct cli_command instance_commands[] = {
	{"create", cmd_resource_instance_create, NULL, "create a service instance",
	 "resource instance create NAME --service kms|cloud-object-storage [--region REGION]\n"
	 "                          [--json]\n"
	 "\n"
	 "Creates an instance of a service in the caller's account; later services attach\n"
	 "to it (a key service instance is what the bluemix-instance header names). Prints\n"
	 "its GUID and CRN.\n"
	 "\n"
	 "  --service NAME   kms or cloud-object-storage\n"
	 "  --region REGION  a region the deployment serves (default us-south)\n" JSON_OPT},
	{"list", cmd_resource_instance_list, NULL, "list the account's instances",
	 "resource instance list [--service NAME] [--json]\n" JSON_OPT},
	{"show", cmd_resource_instance_show, NULL, "show one instance",
	 "resource instance show GUID [--json]\n" JSON_OPT},
	{"delete", cmd_resource_instance_delete, NULL, "delete an instance",
	 "resource instance delete GUID\n"},
	{0},
};

static const struct cli_command resource_commands[] = {
	{"instance", NULL, instance_commands, "service instances (kms, cloud-object-storage)",
	 NULL},
	{0},
};

static const struct cli_command root_commands[] = {
	{"dek", NULL, dek_commands, "data encryption keys", NULL},
	{"image", NULL, image_commands, "encrypt, decrypt, verify and inspect disk images", NULL},
	{"login", cmd_login, NULL, "log in to sealvmd with an API key file",
	 "login --endpoint URL --apikey-file FILE\n"
	 "\n"
	 "Exchanges the API key in FILE for a token and keeps the endpoint, the key\n"
	 "file's path (never its value) and the token in $XDG_CONFIG_HOME/sealvm/login.json\n"
	 "(default ~/.config/sealvm; directory 0700, file 0600). Later commands reuse\n"
	 "the token and renew it from FILE when less than 10% of its lifetime is left.\n"
	 "\n"
	 "  --endpoint URL       the sealvmd address, e.g. http://127.0.0.1:8720\n"
	 "  --apikey-file FILE   a file holding the API key (one line)\n"},
	{"logout", cmd_logout, NULL, "forget the login state",
	 "logout\n\nRemoves the login state.\n"},
	{"iam", NULL, iam_commands, "service IDs, API keys, policies, authorizations", NULL},
	{"events", NULL, events_commands, "the audit trail: list, verify, checkpoint", NULL},
	{"resource", NULL, resource_commands, "resource instances of the account", NULL},
	{0},
};

static void print_group(FILE *f, const char *path, const struct cli_command *children)
{
	fprintf(f, "Usage: sealvm %s%sCOMMAND [--help]\n\nCommands:\n", path, *path ? " " : "");
	for (const struct cli_command *c = children; c->name; c++)
		fprintf(f, "  %-14s %s\n", c->name, c->summary);
	if (!*path)
		fprintf(f,
			"\nOptions:\n  --help       this help\n  --version    print the version\n"
			"  --verbose    more diagnostics on stderr\n"
			"  --endpoint URL      the sealvmd address (or SEALVM_ENDPOINT)\n"
			"  --token-file FILE   a file holding a bearer token (or SEALVM_TOKEN)\n"
			"  --apikey-file FILE  a file holding an API key (or SEALVM_APIKEY_FILE)\n"
			"These override the login state; secrets are only read from files or\n"
			"the environment, never from arguments.\n"
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

static const char missing[] = "";

/*
 * "--NAME VALUE" or "--NAME=VALUE" at argv[*i]: stores VALUE in cli_globals and advances *i
 * past it. NULL when argv[*i] is another option; `missing` when the value is.
 */
static const char *global_value(int argc, char **argv, int *i, const char *name)
{
	size_t n = strlen(name);
	const char *v;

	if (strncmp(argv[*i], name, n) != 0 || (argv[*i][n] != 0 && argv[*i][n] != '='))
		return NULL;
	if (argv[*i][n] == '=') {
		v = argv[*i] + n + 1;
	} else {
		if (*i + 1 >= argc)
			return missing;
		v = argv[++*i];
	}
	if (!*v)
		return missing;
	if (!strcmp(name, "--endpoint"))
		cli_globals.endpoint = v;
	else if (!strcmp(name, "--token-file"))
		cli_globals.token_file = v;
	else
		cli_globals.apikey_file = v;
	return v;
}

int main(int argc, char **argv)
{
	const char *v;
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
		} else if ((v = global_value(argc, argv, &i, "--endpoint")) ||
			   (v = global_value(argc, argv, &i, "--token-file")) ||
			   (v = global_value(argc, argv, &i, "--apikey-file"))) {
			if (v == missing) {
				fprintf(stderr,
					"sealvm: option '%s' needs a value; see 'sealvm --help'\n",
					argv[i]);
				return EXIT_USAGE;
			}
		} else {
			fprintf(stderr, "sealvm: unknown option '%s'; see 'sealvm --help'\n",
				argv[i]);
			return EXIT_USAGE;
		}
	}
	return dispatch(root_commands, argc - i, argv + i);
}
