# SPDX-License-Identifier: Apache-2.0
# softhsm.sh — a throwaway SoftHSM2 token for the tests of the PKCS#11 keystore (bash, sourced).
#
#   . tests/softhsm.sh
#   softhsm_setup DIR || exit $?     # 77 when the machine lacks SoftHSM2
#
# softhsm_setup creates DIR/softhsm2.conf with its own token directory
# (DIR/tokens), initializes one token labeled "sealvm-test" with a random SO
# PIN and a random user PIN, writes the user PIN to DIR/pin and the SO PIN to
# DIR/so-pin (both 0600, no trailing newline) and exports:
#   SOFTHSM2_CONF                 DIR/softhsm2.conf (SoftHSM2 reads its config from it)
#   SEALVM_TEST_PKCS11_MODULE     the path of libsofthsm2.so
#   SEALVM_TEST_PKCS11_TOKEN      sealvm-test
#   SEALVM_TEST_PKCS11_PIN_FILE   DIR/pin
# It also writes the same four lines as KEY=VALUE to DIR/env, for programs
# (the unit tests) that cannot source a shell file.
#
# The PINs never appear on a command line: softhsm2-util only takes them in
# argv or from a terminal, so the token is initialized through the module's
# own PKCS#11 functions (C_InitToken, C_InitPIN) from /usr/bin/python3's
# ctypes, which reads the PINs from the files above.
#
# Returns 77 (with a message on stderr) when softhsm2-util, the module or
# /usr/bin/python3 is missing, 1 when setting up the token fails.

# The SoftHSM2 module: $SOFTHSM2_MODULE if set, else the path the Debian package installs
# (the multiarch one, or the compatibility link), else whatever dpkg says it shipped.
softhsm_module() {
	local m arch
	if [ -n "${SOFTHSM2_MODULE:-}" ]; then
		[ -f "$SOFTHSM2_MODULE" ] && { echo "$SOFTHSM2_MODULE"; return 0; }
		return 1
	fi
	arch=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || gcc -print-multiarch 2>/dev/null || true)
	for m in ${arch:+/usr/lib/$arch/softhsm/libsofthsm2.so} /usr/lib/softhsm/libsofthsm2.so \
		/usr/local/lib/softhsm/libsofthsm2.so; do
		[ -f "$m" ] && { echo "$m"; return 0; }
	done
	m=$(dpkg -L libsofthsm2 2>/dev/null | grep '/libsofthsm2\.so$' | head -n 1 || true)
	[ -n "$m" ] && [ -f "$m" ] && { echo "$m"; return 0; }
	return 1
}

softhsm_setup() {
	local dir=${1:?softhsm_setup needs a directory}
	local module
	command -v softhsm2-util >/dev/null 2>&1 || {
		echo "softhsm_setup: needs softhsm2-util (Debian package softhsm2)" >&2
		return 77
	}
	module=$(softhsm_module) || {
		echo "softhsm_setup: no libsofthsm2.so found (Debian package libsofthsm2; or set SOFTHSM2_MODULE)" >&2
		return 77
	}
	[ -x /usr/bin/python3 ] || {
		echo "softhsm_setup: needs /usr/bin/python3 to initialize the token" >&2
		return 77
	}
	mkdir -p "$dir/tokens" || return 1
	dir=$(cd "$dir" && pwd) || return 1
	printf 'directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n' \
		"$dir" >"$dir/softhsm2.conf" || return 1

	# Random PINs, hex so that no shell or config quoting is involved; made and written
	# without passing through argv (a subshell with umask 077 creates the files 0600).
	(
		umask 077
		od -An -N16 -tx1 /dev/urandom | tr -d ' \n' >"$dir/so-pin"
		od -An -N16 -tx1 /dev/urandom | tr -d ' \n' >"$dir/pin"
	) || return 1
	[ "$(wc -c <"$dir/pin")" -eq 32 ] && [ "$(wc -c <"$dir/so-pin")" -eq 32 ] || {
		echo "softhsm_setup: could not make the PINs" >&2
		return 1
	}

	SOFTHSM2_CONF="$dir/softhsm2.conf" /usr/bin/python3 -c '
import ctypes, sys
module, so_pin_file, pin_file, label = sys.argv[1:5]
so_pin = open(so_pin_file, "rb").read()
pin = open(pin_file, "rb").read()
lib = ctypes.CDLL(module)
UL = ctypes.c_ulong
CKF_RW_SESSION, CKF_SERIAL_SESSION, CKU_SO = 2, 4, 0

def ck(name, rv):
    if rv != 0:
        sys.exit("softhsm_setup: %s failed: CKR 0x%x" % (name, rv))

def slots():
    n = UL(0)
    ck("C_GetSlotList", lib.C_GetSlotList(ctypes.c_ubyte(1), None, ctypes.byref(n)))
    arr = (UL * n.value)()
    ck("C_GetSlotList", lib.C_GetSlotList(ctypes.c_ubyte(1), arr, ctypes.byref(n)))
    return list(arr[: n.value])

ck("C_Initialize", lib.C_Initialize(None))
before = slots()
if not before:
    sys.exit("softhsm_setup: the module shows no slot")
lab = label.encode().ljust(32, b" ")
# A fresh token directory has exactly one slot, with an uninitialized token.
ck("C_InitToken", lib.C_InitToken(UL(before[0]), so_pin, UL(len(so_pin)), lab))
# SoftHSM2 moves an initialized token to a slot numbered after its serial, and shows
# it only to a new C_Initialize: start again and find it by label (the first 32 bytes
# of CK_TOKEN_INFO).
ck("C_Finalize", lib.C_Finalize(None))
ck("C_Initialize", lib.C_Initialize(None))
found = None
for s in slots():
    info = ctypes.create_string_buffer(512)
    if lib.C_GetTokenInfo(UL(s), info) == 0 and info.raw[:32] == lab:
        found = s
if found is None:
    sys.exit("softhsm_setup: the new token is in no slot")
h = UL(0)
ck("C_OpenSession", lib.C_OpenSession(UL(found), UL(CKF_RW_SESSION | CKF_SERIAL_SESSION),
                                      None, None, ctypes.byref(h)))
ck("C_Login(SO)", lib.C_Login(h, UL(CKU_SO), so_pin, UL(len(so_pin))))
ck("C_InitPIN", lib.C_InitPIN(h, pin, UL(len(pin))))
ck("C_Logout", lib.C_Logout(h))
ck("C_CloseSession", lib.C_CloseSession(h))
ck("C_Finalize", lib.C_Finalize(None))
' "$module" "$dir/so-pin" "$dir/pin" sealvm-test || return 1

	SOFTHSM2_CONF="$dir/softhsm2.conf" softhsm2-util --show-slots 2>/dev/null |
		grep -q 'Label: *sealvm-test *$' || {
		echo "softhsm_setup: the token sealvm-test did not appear" >&2
		return 1
	}

	export SOFTHSM2_CONF="$dir/softhsm2.conf"
	export SEALVM_TEST_PKCS11_MODULE="$module"
	export SEALVM_TEST_PKCS11_TOKEN=sealvm-test
	export SEALVM_TEST_PKCS11_PIN_FILE="$dir/pin"
	printf 'SOFTHSM2_CONF=%s\nSEALVM_TEST_PKCS11_MODULE=%s\nSEALVM_TEST_PKCS11_TOKEN=%s\nSEALVM_TEST_PKCS11_PIN_FILE=%s\n' \
		"$SOFTHSM2_CONF" "$SEALVM_TEST_PKCS11_MODULE" "$SEALVM_TEST_PKCS11_TOKEN" \
		"$SEALVM_TEST_PKCS11_PIN_FILE" >"$dir/env"
	return 0
}
