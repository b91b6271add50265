"""Token verification, the settings it needs, and `python -m app token`."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from app.auth import OPEN_CALLER, Caller, TokenVerifier
from app.errors import Unauthenticated
from app.settings import Settings, SettingsError
from support.servers import ROOT
from tests.tokens import OTHER_SECRET, SECRET, token


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    # An hour: parametrized cases are made when the tests are collected, and a long run
    # (the whole suite on a busy machine) reaches them minutes later.
    base = {"sub": "worker-7", "tenant": "acme", "scope": "jobs:read", "exp": now + 3600}
    return {**base, **overrides}


def public_pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def verifier(**settings: Any) -> TokenVerifier:
    return TokenVerifier(Settings(**settings))


def refused(check: TokenVerifier, value: str) -> str:
    with pytest.raises(Unauthenticated) as refusal:
        check.verify(value)
    return refusal.value.message


def test_hs256_token_names_the_caller() -> None:
    check = verifier(auth_jwt_secret=SECRET)
    given = claims(scope="jobs:read jobs:report openid")
    value = jwt.encode(given, SECRET, algorithm="HS256")
    assert check.verify(f"Bearer {value}") == Caller(
        tenant="acme",
        scopes=frozenset({"jobs:read", "jobs:report"}),
        subject="worker-7",
        expires=given["exp"],
    )
    # The scheme is case-insensitive (RFC 6750 follows RFC 7235).
    assert check.verify(f"bearer {value}").tenant == "acme"


def test_open_mode_is_tenant_default_with_every_scope() -> None:
    assert verifier().verify(None) == OPEN_CALLER
    assert OPEN_CALLER.tenant == "default"
    assert OPEN_CALLER.scopes == {
        "jobs:read",
        "jobs:write",
        "jobs:report",
        "webhooks:manage",
        "metrics:read",
        "graphql:adhoc",
    }


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (claims(exp=int(time.time()) - 1), "expired"),
        ({k: v for k, v in claims().items() if k != "tenant"}, "'tenant'"),
        ({k: v for k, v in claims().items() if k != "exp"}, "'exp'"),
        ({k: v for k, v in claims().items() if k != "sub"}, "'sub'"),
        (claims(tenant=""), "tenant"),
        (claims(tenant="x" * 201), "tenant"),
        (claims(tenant=["acme"]), "tenant"),
        (claims(scope=["jobs:read"]), "scope"),
        (claims(aud="another-service"), "audience"),
        (claims(nbf=int(time.time()) + 600), "not yet valid"),
        # Text a database cannot store, or a person cannot see (PostgreSQL answered 500).
        (claims(tenant="ac\x00me"), "'tenant' must be printable"),
        (claims(tenant="acme\ud800"), "'tenant' must be printable"),
        (claims(tenant="ac\u200bme"), "'tenant' must be printable"),
        (claims(sub="worker\x00"), "'sub' must be printable"),
        # pyjwt takes numeric strings; a WebSocket's expiry timer could not.
        (claims(exp=str(int(time.time()) + 60)), "'exp' must be a number"),
        (claims(nbf=True), "'nbf' must be a number"),
        (claims(nbf=str(int(time.time()) - 60)), "'nbf' must be a number"),
        (claims(iat=str(int(time.time()))), "'iat' must be a number"),
    ],
)
def test_bad_claims_are_refused_with_a_reason(payload: dict[str, Any], reason: str) -> None:
    check = verifier(auth_jwt_secret=SECRET)
    value = jwt.encode(payload, SECRET, algorithm="HS256")
    assert reason in refused(check, f"Bearer {value}")


def test_numeric_dates_may_be_fractional_and_printable_text_any_script() -> None:
    check = verifier(auth_jwt_secret=SECRET)
    expires = time.time() + 60.5
    value = jwt.encode(claims(exp=expires, tenant="Bücher & Co 東京"), SECRET, algorithm="HS256")
    caller = check.verify(f"Bearer {value}")
    assert (caller.tenant, caller.expires) == ("Bücher & Co 東京", expires)


def test_the_token_command_refuses_an_unprintable_tenant() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "app", "token", "--tenant", "ac\x1bme", "--scope", "jobs:read"],
        cwd=ROOT,
        env={**os.environ, "AUTH_JWT_SECRET": SECRET},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert "printable" in result.stderr


def test_unsigned_and_foreign_algorithms_are_refused() -> None:
    check = verifier(auth_jwt_secret=SECRET)
    # pyjwt signs alg "none" with no key; its annotations want one anyway.
    unsigned = jwt.encode(claims(), None, algorithm="none")  # type: ignore[arg-type]
    assert "algorithm" in refused(check, f"Bearer {unsigned}")
    hs512 = jwt.encode(claims(), SECRET + SECRET, algorithm="HS512")
    assert "algorithm" in refused(check, f"Bearer {hs512}")


@pytest.mark.parametrize(
    ("key", "algorithm"),
    [
        (rsa.generate_private_key(public_exponent=65537, key_size=2048), "RS256"),
        (ec.generate_private_key(ec.SECP256R1()), "ES256"),
    ],
)
def test_identity_provider_public_key(
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, algorithm: str, tmp_path: Path
) -> None:
    pem = public_pem(key)
    path = tmp_path / "idp.pem"
    path.write_text(pem)
    # The setting takes the PEM itself or a path to it.
    for setting in (pem, str(path)):
        settings = Settings.from_env(
            {
                "AUTH_JWT_PUBLIC_KEY": setting,
                "AUTH_JWT_AUDIENCE": "jobs",
                "AUTH_JWT_ISSUER": "idp",
                # No secret of ours to derive the cursor key from (tests/test_cursors.py).
                "CURSOR_SECRET": OTHER_SECRET,
            }
        )
        assert not settings.open_mode
        check = TokenVerifier(settings)
        good = jwt.encode(claims(aud="jobs", iss="idp"), key, algorithm=algorithm)
        assert check.verify(f"Bearer {good}").tenant == "acme"
        for wrong in (claims(aud="other", iss="idp"), claims(aud="jobs", iss="evil")):
            assert "token is invalid" in refused(
                check, f"Bearer {jwt.encode(wrong, key, algorithm=algorithm)}"
            )
    other_key = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        if algorithm == "RS256"
        else ec.generate_private_key(ec.SECP256R1())
    )
    forged = jwt.encode(claims(aud="jobs", iss="idp"), other_key, algorithm=algorithm)
    assert "signature" in refused(check, f"Bearer {forged}")


def hs256_by_hand(payload: dict[str, Any], key: bytes) -> str:
    """An HS256 token signed with any key (pyjwt itself refuses a PEM as a secret)."""

    def b64(data: bytes) -> bytes:
        return base64.urlsafe_b64encode(data).rstrip(b"=")

    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    signing_input = header + b"." + b64(json.dumps(payload).encode())
    signature = b64(hmac.new(key, signing_input, hashlib.sha256).digest())
    return (signing_input + b"." + signature).decode()


def test_public_key_is_never_used_as_an_hmac_secret() -> None:
    # The classic algorithm confusion: sign HS256 with the (public) PEM as the secret.
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = public_pem(key)
    check = verifier(auth_jwt_secret=SECRET, auth_jwt_public_key=pem)
    # The hand-made token is well formed: signed with the real secret, it passes.
    assert check.verify(f"Bearer {hs256_by_hand(claims(), SECRET.encode())}").tenant == "acme"
    forged = hs256_by_hand(claims(), pem.encode())
    assert "signature" in refused(check, f"Bearer {forged}")
    only_key = verifier(auth_jwt_public_key=pem)
    assert "algorithm" in refused(only_key, f"Bearer {forged}")


@pytest.mark.parametrize(
    "secret",
    [
        "short",
        "changeme-changeme-changeme-changeme-changeme",
        "my-super-secret-key-for-the-jwt-tokens-1234",
        "a" * 64,
        "abababababababababababababababababababab",
    ],
)
def test_weak_secrets_are_refused_in_one_line(secret: str) -> None:
    with pytest.raises(SettingsError) as refusal:
        Settings.from_env({"AUTH_JWT_SECRET": secret})
    assert "AUTH_JWT_SECRET" in str(refusal.value)
    assert "\n" not in str(refusal.value)
    assert secret not in str(refusal.value)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("AUTH_JWT_PUBLIC_KEY", "-----BEGIN PUBLIC KEY-----\nnonsense\n-----END PUBLIC KEY-----"),
        ("AUTH_JWT_PUBLIC_KEY", "/no/such/key.pem"),
        ("MAX_QUERY_DEPTH", "0"),
        ("MAX_QUERY_ALIASES", "many"),
        ("MAX_QUERY_SELECTIONS", "0"),
        ("MAX_QUERY_TOKENS", "-5"),
        ("MAX_BODY_BYTES", "1MB"),
        ("MAX_HEADER_BYTES", "32k"),
        ("REQUEST_HEADER_TIMEOUT", "0"),
        ("REQUEST_BODY_TIMEOUT", "2.5"),
        ("MAX_SUBSCRIPTIONS_PER_CONNECTION", "0"),
        ("GRAPHQL_INTROSPECTION", "sometimes"),
        ("GRAPHIQL", "2"),
        ("CORS_ORIGINS", "https://app.example.test/path"),
        ("CORS_ORIGINS", "app.example.test"),
    ],
)
def test_bad_access_settings_name_themselves(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({name: value})


def test_access_settings_from_the_environment() -> None:
    settings = Settings.from_env(
        {
            "AUTH_JWT_SECRET": SECRET,
            "MAX_QUERY_DEPTH": "7",
            "MAX_QUERY_SELECTIONS": "300",
            "MAX_BODY_BYTES": "2048",
            "GRAPHQL_INTROSPECTION": "false",
            "GRAPHIQL": "off",
            "CORS_ORIGINS": "https://app.example.test, http://localhost:5173/",
        }
    )
    assert not settings.open_mode
    assert (settings.max_query_depth, settings.max_body_bytes) == (7, 2048)
    assert settings.max_query_selections == 300
    assert not settings.graphql_introspection and not settings.graphiql
    assert settings.cors_origins == ("https://app.example.test", "http://localhost:5173")


def cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("AUTH_JWT_")}
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        cwd=ROOT,
        env={**environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_token_command_prints_a_token_the_gateway_accepts() -> None:
    result = cli(
        "token", "--tenant", "acme", "--scope", "jobs:read jobs:write", "--ttl", "120",
        AUTH_JWT_SECRET=SECRET,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    caller = verifier(auth_jwt_secret=SECRET).verify(f"Bearer {result.stdout.strip()}")
    assert caller.tenant == "acme"
    assert caller.scopes == {"jobs:read", "jobs:write"}
    expires = jwt.decode(result.stdout.strip(), SECRET, algorithms=["HS256"])["exp"]
    assert 100 < expires - time.time() <= 120


def test_token_command_without_the_secret_says_it_is_needed() -> None:
    result = cli("token", "--tenant", "acme", "--scope", "jobs:read")
    assert result.returncode != 0
    assert result.stdout == ""
    assert "AUTH_JWT_SECRET" in result.stderr
    assert "Traceback" not in result.stderr


def test_token_command_refuses_unknown_scopes() -> None:
    result = cli("token", "--tenant", "acme", "--scope", "jobs:admin", AUTH_JWT_SECRET=SECRET)
    assert result.returncode != 0
    assert "jobs:admin" in result.stderr
    assert result.stdout == ""


def test_serve_in_open_mode_refuses_a_non_loopback_host(tmp_path: Path) -> None:
    result = cli("serve", "--host", "0.0.0.0", DATABASE_URL=f"sqlite:///{tmp_path}/jobs.db")
    assert result.returncode == 2
    assert "loopback" in result.stderr
    assert result.stderr.strip().count("\n") == 0


def test_token_helper_round_trip() -> None:
    caller = verifier(auth_jwt_secret=SECRET).verify(f"Bearer {token('t1', 'jobs:report')}")
    assert (caller.tenant, caller.scopes) == ("t1", frozenset({"jobs:report"}))
