"""Authentication as Cloudflare's API gateway does it, for the two schemes the Images API takes.

- API token: ``Authorization: Bearer <token>``;
- global API key: ``X-Auth-Email: <email>`` and ``X-Auth-Key: <key>``.

Malformed headers fail before the credentials are looked at (400, code 6003 with an
``error_chain`` naming the header), so a client that sends an API token as ``X-Auth-Key``
gets the same 6103 the real API gives it. ``Authorization`` wins when both schemes are sent.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import string
from dataclasses import dataclass, field
from typing import Literal, Protocol

from airflow_provider_cfimages.emulator.errors import (
    InvalidAccessToken,
    InvalidRequestHeaders,
    MissingAuthHeaders,
    UnknownAuthKey,
)

AuthScheme = Literal["api_token", "api_key"]

#: Cloudflare API tokens are 40 URL-safe characters.
TOKEN_PATTERN = re.compile(r"^[A-Za-z0-9_-]{40}$")
#: Global API keys are 37 lowercase hex characters.
GLOBAL_KEY_PATTERN = re.compile(r"^[0-9a-f]{37}$")
EMAIL_PATTERN = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
DEFAULT_EMAIL = "emulator@example.com"
_ALPHANUMERIC = string.ascii_letters + string.digits


class Headers(Protocol):
    """Request headers looked up by name: ``http.client.HTTPMessage`` or any mapping."""

    def get(self, name: str, /) -> str | None: ...


@dataclass(frozen=True)
class Credentials:
    """The account and the credentials the emulator accepts for it."""

    account_id: str
    api_token: str = field(repr=False)
    email: str
    global_key: str = field(repr=False)


def default_account_id(seed: int) -> str:
    """A 32-hex account id derived from the seed (same seed, same account, every run)."""
    return hashlib.sha256(f"cfimages-emulator:account:{seed}".encode()).hexdigest()[:32]


def default_credentials(account_id: str) -> Credentials:
    """Credentials derived from the account id, so a restarted emulator accepts the same ones.

    The emulator binds the loopback interface by default; these are test credentials, not
    secrets.
    """
    number = int.from_bytes(
        hashlib.sha512(f"cfimages-emulator:token:{account_id}".encode()).digest(), "big"
    )
    # Alphanumeric only: real tokens may hold "-" and "_", but one starting with "-" reads
    # as an option on a command line.
    token = ""
    for _ in range(40):
        number, digit = divmod(number, len(_ALPHANUMERIC))
        token += _ALPHANUMERIC[digit]
    global_key = hashlib.sha256(f"cfimages-emulator:key:{account_id}".encode()).hexdigest()[:37]
    return Credentials(account_id, token, DEFAULT_EMAIL, global_key)


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


def authenticate(headers: Headers, credentials: Credentials) -> AuthScheme:
    """Check a request's auth headers; return the scheme used.

    :param headers: the request headers; looked up by their canonical names, so pass a
        case-insensitive mapping (``http.client.HTTPMessage`` is one).
    :raises MissingAuthHeaders: (9106) no auth header at all.
    :raises InvalidRequestHeaders: (6003 + 6111/6102/6103) a malformed auth header.
    :raises InvalidAccessToken: (9109) a well-formed token that is not the emulator's.
    :raises UnknownAuthKey: (9103) a well-formed email/key pair that is not the emulator's.
    """
    authorization = headers.get("Authorization")
    if authorization is not None:
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise InvalidRequestHeaders([InvalidRequestHeaders.AUTHORIZATION])
        if _same(token, credentials.api_token):
            return "api_token"
        if not TOKEN_PATTERN.match(token):
            raise InvalidRequestHeaders([InvalidRequestHeaders.AUTHORIZATION])
        raise InvalidAccessToken()

    email = headers.get("X-Auth-Email")
    key = headers.get("X-Auth-Key")
    if email is None and key is None:
        raise MissingAuthHeaders()
    email = (email or "").strip()
    key = (key or "").strip()
    chain = []
    if not EMAIL_PATTERN.match(email):
        chain.append(InvalidRequestHeaders.X_AUTH_EMAIL)
    if not (_same(key, credentials.global_key) or GLOBAL_KEY_PATTERN.match(key)):
        chain.append(InvalidRequestHeaders.X_AUTH_KEY)
    if chain:
        raise InvalidRequestHeaders(chain)
    if _same(key, credentials.global_key) and email.lower() == credentials.email.lower():
        return "api_key"
    raise UnknownAuthKey()
