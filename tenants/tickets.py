"""Access tickets: JWTs (RFC 7519) signed HS256 with a tenant key's secret, ``kid`` = the key id
(docs/protocol.md, tenants). Minting and verifying go through PyJWT; nothing here touches the
database or Redis, so the session socket can verify with a secret it read from live state."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import jwt

ALGORITHM = "HS256"
LEEWAY_S = 30
DEFAULT_TTL_S = 300
MAX_TTL_S = 86_400


class TicketRefused(Exception):
    """The ticket does not open a session; ``message`` is a sentence for the browser."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class Claims:
    key_id: str
    expires_at: int
    sub: str | None = None
    pairs: frozenset[str] | None = None  # "src-tgt" the session may use; None = any


def ticket_mint(
    *, key_id: str, secret: str, ttl_s: int = DEFAULT_TTL_S, sub: str | None = None,
    pairs: list[str] | None = None, now: int | None = None,
) -> tuple[str, int]:
    """A signed ticket and when it expires (epoch s)."""
    if not 1 <= ttl_s <= MAX_TTL_S:
        raise ValueError(f"ttl_s must be between 1 and {MAX_TTL_S}")
    issued = int(time.time()) if now is None else now
    claims: dict[str, Any] = {"iat": issued, "exp": issued + ttl_s}
    if sub is not None:
        claims["sub"] = sub
    if pairs is not None:
        claims["pairs"] = list(pairs)
    return jwt.encode(claims, secret, algorithm=ALGORITHM, headers={"kid": key_id}), issued + ttl_s


def ticket_key_id(ticket: str) -> str:
    """The ``kid`` of a ticket's header, read before its signature can be checked."""
    try:
        header = jwt.get_unverified_header(ticket)
    except jwt.InvalidTokenError:
        raise TicketRefused("The access ticket is not a well-formed JWT.") from None
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise TicketRefused("The access ticket names no key (its header has no kid).")
    return kid


def ticket_verify(ticket: str, *, secret: str, now: float | None = None) -> Claims:
    """Check the signature and the claims (30 s leeway); TicketRefused says what is wrong."""
    kid = ticket_key_id(ticket)
    # given a clock (tests), the time claims are checked against it below rather than by PyJWT
    checks = now is None
    try:
        claims = jwt.decode(
            ticket, secret, algorithms=[ALGORITHM], leeway=LEEWAY_S,
            options={"require": ["exp"], "verify_exp": checks, "verify_nbf": checks, "verify_iat": checks},
        )
    except jwt.ExpiredSignatureError:
        raise TicketRefused("The access ticket has expired; ask your app for a new one.") from None
    except jwt.ImmatureSignatureError:
        raise TicketRefused("The access ticket is not valid yet (nbf or iat lies in the future).") from None
    except jwt.MissingRequiredClaimError:
        raise TicketRefused("The access ticket has no expiry (exp); tickets must expire.") from None
    except jwt.InvalidSignatureError:
        raise TicketRefused("The access ticket's signature does not match its key.") from None
    except jwt.InvalidTokenError as error:
        raise TicketRefused(f"The access ticket is not valid ({error}).") from None
    return _checked(claims, kid, time.time() if now is None else now)


def _checked(claims: dict[str, Any], kid: str, now: float) -> Claims:
    exp, iat, nbf = claims.get("exp"), claims.get("iat"), claims.get("nbf")
    for name, value in (("exp", exp), ("iat", iat), ("nbf", nbf)):
        if value is not None and (not isinstance(value, int | float) or isinstance(value, bool)):
            raise TicketRefused(f"The access ticket's {name} is not a number.")
    assert isinstance(exp, int | float)
    if exp < now - LEEWAY_S:
        raise TicketRefused("The access ticket has expired; ask your app for a new one.")
    if (nbf is not None and nbf > now + LEEWAY_S) or (iat is not None and iat > now + LEEWAY_S):
        raise TicketRefused("The access ticket is not valid yet (nbf or iat lies in the future).")
    start = iat if iat is not None else now
    if exp - start > MAX_TTL_S + LEEWAY_S or exp - now > MAX_TTL_S + LEEWAY_S:
        raise TicketRefused("The access ticket lives too long: exp may be at most 24 h after iat.")
    sub = claims.get("sub")
    if sub is not None and not isinstance(sub, str):
        raise TicketRefused("The access ticket's sub is not a string.")
    pairs = claims.get("pairs")
    if pairs is not None and not (isinstance(pairs, list) and all(isinstance(p, str) for p in pairs)):
        raise TicketRefused('The access ticket\'s pairs must be a list of "src-tgt" strings.')
    return Claims(
        key_id=kid, expires_at=int(exp), sub=sub, pairs=frozenset(pairs) if pairs is not None else None
    )
