#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""ES256 tokens made and checked by code that is not sealvm's, for test_core_jwt.

  jwt_es256.py sign KEY.pem KID COUNT   print COUNT tokens, one per line
  jwt_es256.py verify KEY.pem TOKENFILE  print the claims of a token (JSON)

KEY.pem is a PKCS#8 P-256 private key. Tokens are built two ways: by hand
(JSON, base64url and raw r||s written here, ECDSA from python3-cryptography)
and, when python3-jwt (PyJWT) is installed, by PyJWT. Signatures are left as
the library made them: about half have a high s, which the C test handles.
Exits 77 when python3-cryptography is missing.
"""
import base64
import json
import sys

try:
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import (
        decode_dss_signature, encode_dss_signature)
except ImportError:
    print("python3-cryptography is not installed", file=sys.stderr)
    sys.exit(77)

try:
    import jwt as pyjwt
except ImportError:
    pyjwt = None


def b64u(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64u_decode(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def load_key(path):
    with open(path, "rb") as f:
        key = serialization.load_pem_private_key(f.read(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise SystemExit("not a P-256 key")
    return key


def sign_by_hand(key, kid, claims):
    header = {"alg": "ES256", "kid": kid, "typ": "JWT"}
    signing_input = (b64u(json.dumps(header, separators=(",", ":")).encode()) + "." +
                     b64u(json.dumps(claims, separators=(",", ":")).encode()))
    r, s = decode_dss_signature(key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
    return signing_input + "." + b64u(r.to_bytes(32, "big") + s.to_bytes(32, "big"))


def main():
    mode, key = sys.argv[1], load_key(sys.argv[2])
    if mode == "sign":
        kid, count = sys.argv[3], int(sys.argv[4])
        for i in range(count):
            claims = {"iss": "python", "sub": "iam-ServiceId-1234", "n": i, "scope": "ibm openid"}
            if pyjwt is not None and i % 2 == 1:
                claims["iss"] = "pyjwt"
                print(pyjwt.encode(claims, key, algorithm="ES256", headers={"kid": kid}))
            else:
                print(sign_by_hand(key, kid, claims))
    elif mode == "verify":
        with open(sys.argv[3]) as f:
            token = f.read().strip()
        h, p, s = token.split(".")
        header = json.loads(b64u_decode(h))
        assert header["alg"] == "ES256", header
        raw = b64u_decode(s)
        assert len(raw) == 64
        der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
        key.public_key().verify(der, (h + "." + p).encode(), ec.ECDSA(hashes.SHA256()))
        claims = json.loads(b64u_decode(p))
        if pyjwt is not None:
            # Signature only: the test's claims carry a fixed, past exp.
            claims2 = pyjwt.decode(token, key.public_key(), algorithms=["ES256"],
                                   options={"verify_exp": False, "verify_iat": False,
                                            "verify_nbf": False, "verify_aud": False})
            assert claims2 == claims
        print(json.dumps(claims))
    else:
        raise SystemExit("usage: jwt_es256.py sign|verify ...")


if __name__ == "__main__":
    main()
