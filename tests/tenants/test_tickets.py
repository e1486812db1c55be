"""Access tickets (docs/protocol.md, tenants): HS256 JWTs with the key id in ``kid``; each way a
ticket is refused says why. And key secrets sealed at rest under SECRET_KEY."""

from __future__ import annotations

import time

import jwt
import pytest

from tenants import sealing
from tenants.tickets import TicketRefused, ticket_key_id, ticket_mint, ticket_verify

SECRET = "s3cret-s3cret-s3cret-s3cret-s3cret-0123"


def signed(claims: dict, *, secret: str = SECRET, kid: str | None = "tk_1", alg: str = "HS256") -> str:
    headers = {"kid": kid} if kid is not None else {}
    return jwt.encode(claims, secret, algorithm=alg, headers=headers)


def refusal(ticket: str) -> str:
    with pytest.raises(TicketRefused) as refused:
        ticket_verify(ticket, secret=SECRET)
    return refused.value.message


def test_a_minted_ticket_verifies_with_its_claims():
    ticket, expires_at = ticket_mint(key_id="tk_1", secret=SECRET, ttl_s=120, sub="user-7", pairs=["zh-en"])
    assert jwt.get_unverified_header(ticket) == {"alg": "HS256", "typ": "JWT", "kid": "tk_1"}
    claims = ticket_verify(ticket, secret=SECRET)
    assert (claims.key_id, claims.sub, claims.pairs, claims.expires_at) == ("tk_1", "user-7", frozenset({"zh-en"}), expires_at)
    assert abs(expires_at - time.time() - 120) < 5
    assert ticket_key_id(ticket) == "tk_1"


def test_minting_refuses_a_ttl_over_a_day():
    with pytest.raises(ValueError):
        ticket_mint(key_id="tk_1", secret=SECRET, ttl_s=86_401)


def test_expiry_has_30_seconds_of_leeway():
    now = int(time.time())
    assert ticket_verify(signed({"iat": now - 100, "exp": now - 20}), secret=SECRET).expires_at == now - 20
    assert "expired" in refusal(signed({"iat": now - 100, "exp": now - 40}))


@pytest.mark.parametrize(
    ("claims", "why"),
    [
        (lambda now: {"iat": now}, "no expiry"),
        (lambda now: {"exp": "soon"}, "not valid"),
        (lambda now: {"nbf": now + 600, "exp": now + 900}, "not valid yet"),
        (lambda now: {"iat": now + 600, "exp": now + 900}, "not valid yet"),
        (lambda now: {"iat": now, "exp": now + 2 * 86_400}, "lives too long"),
        (lambda now: {"exp": now + 2 * 86_400}, "lives too long"),
        (lambda now: {"exp": now + 60, "sub": 7}, "not valid"),
        (lambda now: {"exp": now + 60, "pairs": "zh-en"}, "pairs"),
    ],
)
def test_malformed_claims_are_refused(claims, why):
    assert why in refusal(signed(claims(int(time.time()))))


def test_another_keys_signature_is_refused():
    now = int(time.time())
    assert "signature" in refusal(signed({"exp": now + 60}, secret="another-secret-another-secret-000"))


def test_a_ticket_that_is_no_jwt_or_names_no_key_is_refused():
    assert "well-formed" in refusal("not-a-ticket")
    assert "no key" in refusal(signed({"exp": int(time.time()) + 60}, kid=None))


def test_only_hs256_is_accepted():
    now = int(time.time())
    assert "not valid" in refusal(signed({"exp": now + 60}, alg="HS512"))
    unsigned = jwt.encode({"exp": now + 60}, None, algorithm="none", headers={"kid": "tk_1"})
    assert "not valid" in refusal(unsigned)


def test_secrets_are_sealed_under_a_key_derived_from_secret_key(settings):
    sealed = sealing.seal("the-secret")
    assert "the-secret" not in sealed
    assert sealing.unseal(sealed) == "the-secret"
    assert sealing.seal("the-secret") != sealed  # Fernet: a fresh IV each time
    settings.SECRET_KEY = "another deployment's key"
    with pytest.raises(sealing.UnreadableSecret):
        sealing.unseal(sealed)
