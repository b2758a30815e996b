"""Verify an auth-service access token the way a third-party service would.

PyJWT's PyJWKClient fetches the live JWKS, picks the key by the token's `kid`, and jwt.decode
checks the signature, `iss`, `aud`, `exp` (and the presence of the other registered claims).
A tampered token must be rejected. Exit status 0 only if both hold.
"""

import argparse
import sys

import jwt
from jwt import PyJWKClient


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--jwks-url", required=True)
    p.add_argument("--issuer", required=True)
    p.add_argument("--audience", required=True)
    p.add_argument("--algorithm", required=True)
    p.add_argument("--token", required=True)
    p.add_argument("--tampered", required=True)
    a = p.parse_args()

    client = PyJWKClient(a.jwks_url, cache_keys=False)
    options = {"require": ["exp", "iat", "nbf", "iss", "aud", "sub", "jti"]}

    key = client.get_signing_key_from_jwt(a.token)
    claims = jwt.decode(
        a.token,
        key.key,
        algorithms=[a.algorithm],
        audience=a.audience,
        issuer=a.issuer,
        options=options,
    )
    header = jwt.get_unverified_header(a.token)
    assert header.get("typ") == "at+jwt", header
    assert claims["token_type"] == "access", claims
    assert isinstance(claims["roles"], list), claims
    print("OK valid token accepted: sub=%s kid=%s" % (claims["sub"], header["kid"]))

    try:
        tampered_key = client.get_signing_key_from_jwt(a.tampered)
        jwt.decode(
            a.tampered,
            tampered_key.key,
            algorithms=[a.algorithm],
            audience=a.audience,
            issuer=a.issuer,
            options=options,
        )
    except jwt.InvalidSignatureError:
        print("OK tampered token rejected")
    else:
        print("FAIL tampered token accepted")
        return 1

    try:
        jwt.decode(a.token, key.key, algorithms=[a.algorithm], audience="someone-else", issuer=a.issuer)
    except jwt.InvalidAudienceError:
        print("OK wrong audience rejected")
    else:
        print("FAIL wrong audience accepted")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
