"""Key secrets at rest: Fernet (AES-128-CBC with HMAC-SHA256, from the ``cryptography``
package) under a key derived from ``SECRET_KEY`` with HKDF-SHA256. Every process of a deployment
shares ``SECRET_KEY``, so any of them can verify a ticket; changing it makes stored keys unreadable
(create new ones)."""

from __future__ import annotations

import base64
from functools import cache, lru_cache

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings

HKDF_INFO = b"speech-scheduler: tenant key secrets"


class UnreadableSecret(Exception):
    """The sealed secret was not sealed under this SECRET_KEY (or was altered)."""


@cache
def _fernet(secret_key: str) -> Fernet:
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=HKDF_INFO).derive(secret_key.encode())
    return Fernet(base64.urlsafe_b64encode(derived))


def seal(secret: str) -> str:
    return _fernet(settings.SECRET_KEY).encrypt(secret.encode()).decode()


@lru_cache(maxsize=4096)
def _unseal(sealed: str, secret_key: str) -> str:
    try:
        return _fernet(secret_key).decrypt(sealed.encode()).decode()
    except InvalidToken:
        raise UnreadableSecret("the key's secret cannot be read with this SECRET_KEY") from None


def unseal(sealed: str) -> str:
    """The secret (remembered per sealed text: the same text always opens to the same secret)."""
    return _unseal(sealed, settings.SECRET_KEY)
