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
#include "cmd_cos.h"

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

static const struct cli_command hmac_commands[] = {
	{"create", cmd_iam_hmac_create, NULL, "create HMAC credentials for object storage",
	 "iam hmac create --instance GUID [--service-id ID] [--name NAME] [--json]\n"
	 "\n"
	 "Creates an HMAC resource key of a cloud-object-storage instance of the caller's\n"
	 "account: an access key id and a secret access key for S3 clients (SigV4). The\n"
	 "key acts as the caller, or as the service ID given. Prints access_key_id and\n"
	 "secret_access_key to stdout, the key's GUID to stderr; the secret is shown only\n"
	 "this once.\n"
	 "\n"
	 "  --instance GUID    the cloud-object-storage instance\n"
	 "  --service-id ID    the service ID the key acts as (its ID or CRN)\n"
	 "  --name NAME        the key's name (default hmac-credentials)\n" JSON_OPT},
	{"list", cmd_iam_hmac_list, NULL, "list HMAC credentials (no secrets)",
	 "iam hmac list [--instance GUID] [--json]\n"
	 "\n"
	 "  --instance GUID   only the keys of this instance\n" JSON_OPT},
	{"show", cmd_iam_hmac_show, NULL, "show one HMAC key (no secret)",
	 "iam hmac show GUID [--json]\n\n" JSON_OPT},
	{"delete", cmd_iam_hmac_delete, NULL, "delete an HMAC key (it stops working at once)",
	 "iam hmac delete GUID\n"},
	{0},
};

static const struct cli_command iam_commands[] = {
	{"service-id", NULL, serviceid_commands, "service IDs", NULL},
	{"api-key", NULL, apikey_commands, "API keys of users and service IDs", NULL},
	{"policy", NULL, policy_commands, "access policies", NULL},
	{"authorization", NULL, authz_commands, "service-to-service authorizations", NULL},
	{"hmac", NULL, hmac_commands, "HMAC credentials of object storage instances", NULL},
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
	{"export", cmd_events_export, NULL, "every event of a data dir, as JSON lines",
	 "events export --data-dir DIR\n"
	 "\n"
	 "Prints every audit event kept in the data dir (the daemon running or stopped),\n"
	 "oldest first, the operator's trail included: one line {\"seq\", \"chain\", \"event\"}\n"
	 "each, as retention exports them. Needs read access to DIR's database.\n"
	 "\n"
	 "  --data-dir DIR     the data dir to read\n"},
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

#define KMS_OPTS                                                                                   \
	"  --instance GUID  the KMS instance (or SEALVM_KMS_INSTANCE)\n"                           \
	"  --json           print the server's JSON\n"
#define KMS_KEY_OPTS                                                                                 \
	"  --standard             a standard key (extractable; cannot wrap) instead of a root key\n" \
	"  --description TEXT     what it is for\n"                                                  \
	"  --alias ALIAS          a name to use instead of the ID (up to 5)\n"                       \
	"  --expiration-date T    RFC 3339 time after which the key is Deactivated\n"

static const struct cli_command kms_key_commands[] = {
	{"create", cmd_kms_key_create, NULL, "create a root key (or a standard key)",
	 "kms key create NAME [--standard] [options]\n"
	 "\n"
	 "Creates a 256-bit key generated inside the keystore: a root key (wraps and\n"
	 "unwraps DEKs; its material never leaves the service) unless --standard.\n"
	 "Prints the key: ID, state, CRN, version.\n"
	 "\n" KMS_KEY_OPTS KMS_OPTS},
	{"import", cmd_kms_key_import, NULL,
	 "import key material (optionally under an import token)",
	 "kms key import NAME --key-file FILE [--raw] [--secure [--new-token]] [options]\n"
	 "\n"
	 "Creates a key from your own material: 16, 24 or 32 bytes for a root key, up to\n"
	 "7500 for a standard key. FILE holds it as base64 text (one line), or as raw\n"
	 "bytes with --raw ('sealvm dek generate --out FILE' makes a 32-byte one).\n"
	 "With --secure the material never travels in clear, even inside TLS: the\n"
	 "command fetches the instance's import token (GET /import_token, which uses one\n"
	 "of its retrievals), encrypts the material under the token's RSA public key\n"
	 "(RSAES-OAEP-SHA-256) and the token's nonce under the material (AES-GCM), and\n"
	 "sends both; create the token first with 'sealvm kms import-token create', or\n"
	 "give --new-token.\n"
	 "\n"
	 "  --key-file FILE        the key material (never an argument)\n"
	 "  --raw                  FILE holds raw bytes, not base64\n"
	 "  --secure               import under the instance's import token (root keys)\n"
	 "  --new-token            with --secure: create a new import token first (600 s,\n"
	 "                         one retrieval)\n" KMS_KEY_OPTS KMS_OPTS},
	{"list", cmd_kms_key_list, NULL, "list the instance's keys",
	 "kms key list [--state STATES] [--limit N] [--offset N] [options]\n"
	 "\n"
	 "Lists the keys (all pages, unless --limit or --offset asks for one page).\n"
	 "\n"
	 "  --state STATES   comma-separated: pre-activation, active, suspended,\n"
	 "                   deactivated, destroyed (or 0, 1, 2, 3, 5); default: all but\n"
	 "                   destroyed\n"
	 "  --limit N        one page of N keys (1-5000)\n"
	 "  --offset N       skip N keys\n" KMS_OPTS},
	{"show", cmd_kms_key_show, NULL, "show a key's metadata",
	 "kms key show KEY [--payload-out FILE] [options]\n"
	 "\n"
	 "KEY is a key ID or alias. Shows its metadata. With --payload-out, fetches the\n"
	 "key itself and writes a standard key's payload (base64) to FILE, created 0600,\n"
	 "never overwritten; it needs the ReaderPlus role. Root keys have no payload.\n"
	 "\n"
	 "  --payload-out FILE   write a standard key's payload to FILE ('-': standard\n"
	 "                       output, alone)\n" KMS_OPTS},
	{"delete", cmd_kms_key_delete, NULL, "delete a key (restorable for 30 days)",
	 "kms key delete KEY [--force] [options]\n"
	 "\n"
	 "Deletes the key (state 5, Destroyed): nothing wrapped under it unwraps any more.\n"
	 "It can be restored within the restore window (30 days by default). A key with\n"
	 "registrations (resources protected by it) needs --force, which is refused when a\n"
	 "registration prevents deletion.\n"
	 "\n"
	 "  --force   delete even though resources are registered to the key\n" KMS_OPTS},
	{"restore", cmd_kms_key_restore, NULL, "restore a deleted key",
	 "kms key restore KEY [options]\n\nBrings a deleted key back (state 1, Active).\n\n" KMS_OPTS},
	{"disable", cmd_kms_key_disable, NULL, "suspend a key (no wrap or unwrap)",
	 "kms key disable KEY [options]\n\nSuspends the key (state 2): it neither wraps nor unwraps\n"
	 "until enabled again.\n\n" KMS_OPTS},
	{"enable", cmd_kms_key_enable, NULL, "enable a suspended key",
	 "kms key enable KEY [options]\n\nMakes a suspended key Active again (at least 30 s after\n"
	 "the last action on it, by default).\n\n" KMS_OPTS},
	{"rotate", cmd_kms_key_rotate, NULL, "give a root key a new version",
	 "kms key rotate KEY [--key-file FILE [--raw] [--secure [--new-token]]] [options]\n"
	 "\n"
	 "Creates a new version of the root key; DEKs wrapped under older versions keep\n"
	 "unwrapping (and unwrap then offers them rewrapped under the new one). An imported\n"
	 "key needs its new material from --key-file (as for 'key import'; --secure sends\n"
	 "it under the instance's import token). Prints the new version.\n"
	 "\n"
	 "  --key-file FILE   new key material for an imported key\n"
	 "  --raw             FILE holds raw bytes, not base64\n"
	 "  --secure          send it under the import token\n"
	 "  --new-token       with --secure: create a new import token first\n" KMS_OPTS},
	{"versions", cmd_kms_key_versions, NULL, "list a key's versions",
	 "kms key versions KEY [options]\n\n" KMS_OPTS},
	{0},
};

static const struct cli_command kms_token_commands[] = {
	{"create", cmd_kms_import_token_create, NULL, "create the instance's import token",
	 "kms import-token create [--expiration SECONDS] [--max-retrievals N] [options]\n"
	 "\n"
	 "Creates the instance's import token (replacing any earlier one): an RSA-4096 key\n"
	 "pair and a nonce, for importing key material with 'kms key import --secure'.\n"
	 "\n"
	 "  --expiration SECONDS   lifetime (default 600; Key Protect allows 300-86400)\n"
	 "  --max-retrievals N     how many times it may be fetched (default 1)\n" KMS_OPTS},
	{"show", cmd_kms_import_token_show, NULL, "fetch the import token (uses a retrieval)",
	 "kms import-token show [options]\n"
	 "\n"
	 "Fetches the import token: its dates, the retrievals left, the public key and the\n"
	 "nonce. Each fetch uses one of its retrievals.\n\n" KMS_OPTS},
	{0},
};

#define KMS_AAD_OPT                                                                                \
	"  --aad TEXT       additional authenticated data (repeatable, up to 255 characters\n"     \
	"                   each); unwrap and rewrap need the same list, in order\n"

static const struct cli_command kms_commands[] = {
	{"key", NULL, kms_key_commands, "root and standard keys", NULL},
	{"wrap", cmd_kms_wrap, NULL, "wrap a DEK under a root key (or have one generated)",
	 "kms wrap KEY (--dek-file FILE | --dek-out FILE) [--out FILE] [--aad TEXT]... [options]\n"
	 "\n"
	 "Wraps a DEK under the root key KEY (an ID or alias) and prints the wrapped DEK\n"
	 "(WDEK, the 'ciphertext') alone on stdout, or writes it to --out. With --dek-file\n"
	 "the DEK is read from FILE (base64 text, 32-512 characters, no newline: the rules\n"
	 "of 'sealvm dek'); with --dek-out the service generates a 32-byte DEK and it is\n"
	 "written to FILE, created 0600, never overwritten ('-': standard output, then\n"
	 "--out is needed and --json is refused).\n"
	 "\n"
	 "  --dek-file FILE  the DEK to wrap\n"
	 "  --dek-out FILE   where the generated DEK goes\n"
	 "  --out FILE       write the WDEK to FILE (0600, must not exist)\n" KMS_AAD_OPT KMS_OPTS},
	{"unwrap", cmd_kms_unwrap, NULL, "unwrap a WDEK into a DEK file",
	 "kms unwrap KEY --wdek-file FILE --dek-out FILE [--rewrapped-out FILE] [--aad TEXT]...\n"
	 "                [options]\n"
	 "\n"
	 "Unwraps the WDEK in --wdek-file ('-': standard input) with the root key KEY and\n"
	 "writes the DEK to --dek-out, created 0600, never overwritten ('-': standard\n"
	 "output, alone; the report goes to stderr). When the key has been rotated since\n"
	 "the WDEK was made, the answer also carries it rewrapped under the newest\n"
	 "version: --rewrapped-out keeps that.\n"
	 "\n"
	 "  --wdek-file FILE       the wrapped DEK\n"
	 "  --dek-out FILE         where the DEK goes\n"
	 "  --rewrapped-out FILE   where a rewrapped WDEK goes, if the answer has one\n" KMS_AAD_OPT
		 KMS_OPTS},
	{"rewrap", cmd_kms_rewrap, NULL, "rewrap a WDEK under the key's newest version",
	 "kms rewrap KEY --wdek-file FILE [--out FILE] [--aad TEXT]... [options]\n"
	 "\n"
	 "Rewraps the WDEK under the newest version of KEY without the DEK leaving the\n"
	 "service; prints the new WDEK (or writes it to --out).\n"
	 "\n"
	 "  --wdek-file FILE   the wrapped DEK ('-': standard input)\n"
	 "  --out FILE         write the new WDEK to FILE (0600, must not exist)\n" KMS_AAD_OPT
		 KMS_OPTS},
	{"import-token", NULL, kms_token_commands, "import tokens for secure key import", NULL},
	{0},
};

#define COS_OPTS                                                                                   \
	"  --instance GUID   the cloud-object-storage instance, for a bearer token\n"              \
	"                    (or SEALVM_COS_INSTANCE)\n"                                           \
	"  --hmac-file FILE  HMAC keys: the JSON 'sealvm iam hmac create --json' prints\n"         \
	"                    (or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)\n"                   \
	"  --s3-endpoint URL the S3 endpoint (or SEALVM_COS_ENDPOINT; default: the region's\n"     \
	"                    entry in the deployment's GET /v2/endpoints)\n"                       \
	"  --json            print JSON\n"
static const struct cli_command cos_bucket_commands[] = {
	{"create", cmd_cos_bucket_create, NULL, "create a bucket (optionally SSE with a root key)",
	 "cos bucket create NAME [--location LOC] [--kms-key-crn CRN] [--region R] [options]\n"
	 "\n"
	 "Creates a regional bucket in the instance (--instance, or the HMAC key's). With\n"
	 "--kms-key-crn, every object is encrypted at rest under a per-object key wrapped\n"
	 "by that root key (the account must have authorized cloud-object-storage -> kms).\n"
	 "\n"
	 "  --location LOC      the LocationConstraint (default REGION-standard)\n"
	 "  --kms-key-crn CRN   the root key for server-side encryption (SSE-KP)\n"
	 "  --region R          the region (default: the location's, or the only one)\n" COS_OPTS},
	{"list", cmd_cos_bucket_list, NULL, "list the instance's buckets",
	 "cos bucket list [--region R] [options]\n\n" COS_OPTS},
	{"show", cmd_cos_bucket_show, NULL, "show a bucket (location, encryption)",
	 "cos bucket show NAME [--region R] [options]\n\n" COS_OPTS},
	{"delete", cmd_cos_bucket_delete, NULL, "delete an empty bucket",
	 "cos bucket delete NAME [--region R] [options]\n\n" COS_OPTS},
	{0},
};

static const struct cli_command cos_commands[] = {
	{"bucket", NULL, cos_bucket_commands, "buckets: create, list, show, delete", NULL},
	{"put", cmd_cos_put, NULL, "upload a file (multipart, parallel, resumable)",
	 "cos put FILE cos://REGION/BUCKET/KEY [options]\n"
	 "\n"
	 "Uploads FILE (a KEY ending in '/' gets FILE's name appended). Files above the\n"
	 "threshold go up as a multipart upload, --parallel parts at a time; its state is\n"
	 "kept in FILE.sealvm-upload (mode 0600, no secret), and running the same command\n"
	 "again after an interruption sends only the parts the server does not have.\n"
	 "Every body carries a CRC32C the server checks before the object appears, or\n"
	 "with --sha256 its SHA-256 (read twice: slower).\n"
	 "\n"
	 "  --part-size SIZE            part size, 5M-5G (default 64M; grown to fit 10000 parts)\n"
	 "  --parallel N                parts in flight, 1-64 (default 4)\n"
	 "  --multipart-threshold SIZE  larger files go multipart (default 64M)\n"
	 "  --sha256                    send each body's SHA-256 for the server to check\n"
	 "  --content-type T            the object's Content-Type\n"
	 "  --meta NAME=VALUE           user metadata (x-amz-meta-NAME; repeatable)\n"
	 "  --max-rate SIZE             at most SIZE bytes/s per connection (e.g. 10M)\n"
	 "  --progress, --no-progress   show a progress bar (default: on a terminal)\n" COS_OPTS},
	{"get", cmd_cos_get, NULL, "download an object (or a byte range)",
	 "cos get cos://REGION/BUCKET/KEY FILE [options]\n"
	 "\n"
	 "Downloads to FILE ('-': standard output), written as FILE.partial and renamed\n"
	 "when complete: on failure FILE does not appear.\n"
	 "\n"
	 "  --range FIRST-LAST          only these bytes (inclusive; FIRST- to the end)\n"
	 "  --sha256 HEX                the data must hash to HEX, else FILE is not written\n"
	 "  --force                     replace FILE if it exists\n"
	 "  --progress, --no-progress   show a progress bar (default: on a terminal)\n" COS_OPTS},
	{"head", cmd_cos_head, NULL, "show an object's size, ETag, type and metadata",
	 "cos head cos://REGION/BUCKET/KEY [options]\n\n" COS_OPTS},
	{"ls", cmd_cos_ls, NULL, "list objects (by prefix, with a delimiter)",
	 "cos ls cos://REGION/BUCKET[/PREFIX] [--delimiter D] [options]\n"
	 "\n"
	 "Lists the objects whose keys start with PREFIX (all pages); with --delimiter,\n"
	 "keys that go on past the delimiter are rolled up into common prefixes (PRE).\n"
	 "\n"
	 "  --delimiter D   roll up keys at D (usually '/')\n" COS_OPTS},
	{"rm", cmd_cos_rm, NULL, "delete an object",
	 "cos rm cos://REGION/BUCKET/KEY [options]\n\n" COS_OPTS},
	{"presign", cmd_cos_presign, NULL, "a URL that grants GET or PUT for a while",
	 "cos presign cos://REGION/BUCKET/KEY [--expires SECONDS] [--method GET|PUT] [options]\n"
	 "\n"
	 "Prints a presigned URL (SigV4 in the query) that anyone holding it can use\n"
	 "until it expires. Needs HMAC keys (--hmac-file or AWS_* variables).\n"
	 "\n"
	 "  --expires SECONDS   lifetime, 1-604800 (default 3600)\n"
	 "  --method M          GET (default) or PUT\n" COS_OPTS},
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
	{"kms", NULL, kms_commands, "keys: create, import, wrap, unwrap, rotate, ...", NULL},
	{"cos", NULL, cos_commands, "object storage: buckets, put, get, ls, presign", NULL},
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
