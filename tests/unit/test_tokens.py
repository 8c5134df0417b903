"""Bearer tokens: who calls, for which tenant, with which roles."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.utils import base64url_encode

from application.settings import Settings
from application.tokens import InvalidToken, Principal, TokenVerifier, issue_token

SETTINGS = Settings()


def now() -> int:
    """Read when a token is made: the module is imported long before some tests
    run in a whole-suite run, so an import-time clock would let tokens expire."""
    return int(time.time())


def claims(**changes: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "sub": "user_1",
        "tenant_id": "t_acme",
        "roles": ["admin", "auditor"],
        "exp": now() + 600,
    }
    fields.update(changes)
    return fields


def signed(payload: dict[str, Any], key: str = SETTINGS.jwt_secret) -> str:
    return jwt.encode(payload, key, algorithm="HS256")


def refusal(token: str, verifier: TokenVerifier | None = None) -> str:
    with pytest.raises(InvalidToken) as caught:
        (verifier or TokenVerifier(SETTINGS)).verify(token)
    return str(caught.value)


@pytest.fixture(scope="module")
def rsa_keys() -> tuple[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public = (
        key.public_key()
        .public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        .decode()
    )
    return private, public


def test_an_issued_token_verifies_to_its_principal() -> None:
    token = issue_token(SETTINGS, tenant_id="t_acme", roles=["metering"], subject="svc")

    principal = TokenVerifier(SETTINGS).verify(token)

    assert principal == Principal("svc", "t_acme", frozenset({"metering"}))


def test_an_expired_token_is_refused_as_expired() -> None:
    token = issue_token(
        SETTINGS,
        tenant_id="t_acme",
        roles=["admin"],
        subject="u",
        ttl_seconds=60,
        now=now() - 120,
    )

    assert refusal(token) == "token expired"


def test_a_token_signed_with_another_secret_is_refused() -> None:
    assert refusal(signed(claims(), "another-secret-of-at-least-32-characters!")) == (
        "invalid token"
    )


def test_a_tampered_token_is_refused() -> None:
    token = signed(claims())
    header, payload, signature = token.split(".")
    forged = signed(claims(tenant_id="t_other")).split(".")[1]

    assert refusal(f"{header}.{forged}.{signature}") == "invalid token"
    assert payload != forged


@pytest.mark.parametrize("claim", ["exp", "sub", "tenant_id", "roles"])
def test_a_token_without_a_required_claim_is_refused_naming_it(claim: str) -> None:
    payload = claims()
    del payload[claim]

    assert refusal(signed(payload)) == f"token lacks the {claim!r} claim"


@pytest.mark.parametrize("tenant_id", ["t/acme", "../t", "t acme", "_t", "t\n"])
def test_a_tenant_id_with_unsafe_characters_is_refused(tenant_id: str) -> None:
    assert refusal(signed(claims(tenant_id=tenant_id))).startswith(
        "token 'tenant_id' may contain only letters"
    )


@pytest.mark.parametrize("tenant_id", ["", 5, ["t_acme"]])
def test_a_tenant_id_that_is_not_a_non_empty_string_is_refused(tenant_id: Any) -> None:
    assert refusal(signed(claims(tenant_id=tenant_id))).startswith("token 'tenant_id' ")


@pytest.mark.parametrize("roles", ["admin", {"admin": True}, [1], ["admin", None]])
def test_roles_that_are_not_a_list_of_strings_are_refused(roles: Any) -> None:
    assert (
        refusal(signed(claims(roles=roles)))
        == "token 'roles' must be a list of strings"
    )


def test_an_empty_subject_is_refused() -> None:
    assert refusal(signed(claims(sub=""))) == "token 'sub' must be a non-empty string"


def test_an_unsigned_token_is_refused() -> None:
    token = jwt.encode(claims(), "", algorithm="none")

    assert refusal(token) == "unsupported token algorithm"


@pytest.mark.parametrize("token", ["", "abc", "a.b.c", "Bearer x"])
def test_garbage_is_refused_as_malformed(token: str) -> None:
    assert refusal(token) == "malformed token"


def test_an_rs256_token_is_refused_without_a_configured_public_key(
    rsa_keys: tuple[str, str],
) -> None:
    private, _ = rsa_keys
    token = jwt.encode(claims(), private, algorithm="RS256")

    assert refusal(token) == "unsupported token algorithm"


def test_an_rs256_token_verifies_with_the_configured_public_key(
    rsa_keys: tuple[str, str],
) -> None:
    private, public = rsa_keys
    verifier = TokenVerifier(Settings(jwt_public_key=public))

    principal = verifier.verify(jwt.encode(claims(), private, algorithm="RS256"))

    assert principal == Principal("user_1", "t_acme", frozenset({"admin", "auditor"}))


def test_an_rs256_token_signed_by_another_key_is_refused(
    rsa_keys: tuple[str, str],
) -> None:
    _, public = rsa_keys
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    verifier = TokenVerifier(Settings(jwt_public_key=public))

    assert refusal(jwt.encode(claims(), other, algorithm="RS256"), verifier) == (
        "invalid token"
    )


def test_an_hs256_token_still_verifies_when_a_public_key_is_configured(
    rsa_keys: tuple[str, str],
) -> None:
    _, public = rsa_keys
    verifier = TokenVerifier(Settings(jwt_public_key=public))

    assert verifier.verify(signed(claims())).tenant_id == "t_acme"


def test_an_hs256_token_signed_with_the_public_key_is_refused(
    rsa_keys: tuple[str, str],
) -> None:
    # algorithm confusion: the public key is not a shared secret
    _, public = rsa_keys
    verifier = TokenVerifier(Settings(jwt_public_key=public))
    header = base64url_encode(b'{"alg":"HS256","typ":"JWT"}')
    body = base64url_encode(json.dumps(claims()).encode())
    mac = hmac.new(public.encode(), header + b"." + body, hashlib.sha256).digest()
    token = b".".join([header, body, base64url_encode(mac)]).decode()

    assert refusal(token, verifier) == "invalid token"
