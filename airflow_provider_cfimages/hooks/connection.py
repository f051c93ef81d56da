"""Reading a ``cloudflare_images`` Airflow connection into typed settings.

One pure function knows every field and extra, so the hook works with checked values and
every misconfiguration is reported before a request is sent.
"""

from __future__ import annotations

import ipaddress
import math
import re
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

from airflow_provider_cfimages.exceptions import CloudflareImagesConfigError
from airflow_provider_cfimages.get_provider_info import DEFAULT_BASE_URL, DEFAULT_BATCH_BASE_URL
from airflow_provider_cfimages.hooks.pacing import DEFAULT_RESERVE, MAX_RESERVE

AuthType = Literal["api_token", "api_key"]
AUTH_TYPES: tuple[AuthType, ...] = ("api_token", "api_key")
ACCOUNT_ID_PATTERN = re.compile(r"^[0-9a-fA-F]{32}$")
DEFAULT_TIMEOUT = 60.0
DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_MAX_RETRIES = 5
_KNOWN_EXTRAS = {
    "account_id",
    "auth_type",
    "timeout",
    "max_retries",
    "max_requests_per_minute",
    "rate_limit_reserve",
    "batch_base_url",
}


@dataclass(frozen=True)
class ConnectionSettings:
    """Everything the hook needs from a connection, checked.

    ``secret`` is the token or global key; it is excluded from ``repr`` so it cannot
    reach a log line through a debug print of the settings.
    """

    base_url: str
    auth_type: AuthType
    secret: str = field(repr=False)
    email: str | None
    account_id: str | None
    timeout: float
    max_retries: int
    max_requests_per_minute: float | None
    rate_limit_reserve: float = DEFAULT_RESERVE
    batch_base_url: str = DEFAULT_BATCH_BASE_URL

    def auth_headers(self) -> dict[str, str]:
        """The headers that authenticate a request for this auth type."""
        if self.auth_type == "api_key":
            return {"X-Auth-Email": self.email or "", "X-Auth-Key": self.secret}
        return {"Authorization": f"Bearer {self.secret}"}


def settings_from_connection(
    *,
    conn_id: str,
    host: str | None,
    login: str | None,
    password: str | None,
    extra: dict[str, Any],
) -> ConnectionSettings:
    """Check a connection's fields and extras and return typed settings.

    :param conn_id: the connection id, named in every error.
    :param host: the API base URL (empty for Cloudflare's).
    :param login: the account email, for ``api_key`` auth.
    :param password: the API token or the global API key.
    :param extra: the connection's extras (``extra__cloudflare_images__`` prefixes accepted).
    """
    extra = _strip_prefixes(extra)
    unknown = sorted(set(extra) - _KNOWN_EXTRAS)
    if unknown:
        raise CloudflareImagesConfigError(
            f"Connection {conn_id!r} has unknown extra field(s) {unknown}; "
            f"expected some of {sorted(_KNOWN_EXTRAS)}."
        )
    email = (login or "").strip() or None
    auth_type = _auth_type(conn_id, extra.get("auth_type"), email)
    secret = (password or "").strip()
    if not secret:
        what = "global API key" if auth_type == "api_key" else "API token"
        raise CloudflareImagesConfigError(
            f"Connection {conn_id!r} has no {what}: put it in the connection's password field."
        )
    _check_header_text(conn_id, "password", secret)
    if auth_type == "api_key" and email is not None:  # only then is it sent
        _check_header_text(conn_id, "login", email)
    if auth_type == "api_key" and not email:
        raise CloudflareImagesConfigError(
            f"Connection {conn_id!r} uses auth_type 'api_key' but has no account email: "
            "put the email of the Cloudflare account in the connection's login field."
        )
    return ConnectionSettings(
        base_url=normalize_base_url(host, conn_id=conn_id),
        auth_type=auth_type,
        secret=secret,
        email=email,
        account_id=validate_account_id(
            extra.get("account_id"), source=f"connection {conn_id!r} extra 'account_id'"
        ),
        timeout=_positive_number(conn_id, "timeout", extra.get("timeout"), DEFAULT_TIMEOUT),
        max_retries=_retries(conn_id, extra.get("max_retries")),
        max_requests_per_minute=_optional_rate(conn_id, extra.get("max_requests_per_minute")),
        rate_limit_reserve=_reserve(conn_id, extra.get("rate_limit_reserve")),
        batch_base_url=normalize_base_url(
            extra.get("batch_base_url"),
            conn_id=conn_id,
            field="extra 'batch_base_url'",
            default=DEFAULT_BATCH_BASE_URL,
        ),
    )


def _check_header_text(conn_id: str, field: str, value: str) -> None:
    """Refuse a credential that cannot go in an HTTP header, without quoting it.

    http.client would refuse it too, but in an error that quotes the header's value.
    """
    if not (value.isascii() and value.isprintable()):
        raise CloudflareImagesConfigError(
            f"Connection {conn_id!r} has a {field} with a line break, a control character "
            "or a non-ASCII character; Cloudflare tokens, keys and account emails have none "
            "(was it pasted with extra text?). The value is not shown: it is a credential."
        )


def validate_account_id(value: Any, *, source: str) -> str | None:
    """Return a lower-cased 32-hex account id, ``None`` when absent, or raise naming ``source``."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if not isinstance(value, str) or not ACCOUNT_ID_PATTERN.match(value.strip()):
        raise CloudflareImagesConfigError(
            f"{source} must be the 32-character hexadecimal Cloudflare account id "
            f"(Dashboard > Images > Overview); got {value!r}."
        )
    return value.strip().lower()


def normalize_base_url(
    host: Any,
    *,
    conn_id: str,
    field: str = "host",
    default: str = DEFAULT_BASE_URL,
) -> str:
    """Return a base URL without a trailing slash (``default`` when empty).

    Plain ``http`` is accepted only for loopback hosts (the local emulator), so a token is
    never sent unencrypted over a network.

    :param host: the URL as configured.
    :param conn_id: the connection id, for errors.
    :param field: the connection field holding it, for errors.
    :param default: the URL used when the field is empty.
    """
    if host is not None and not isinstance(host, str):
        raise CloudflareImagesConfigError(
            f"Connection {conn_id!r} {field} must be an http(s) URL such as {default!r}; "
            f"got {host!r}."
        )
    url = (host or "").strip().rstrip("/")
    if not url:
        return default
    if "://" not in url:
        url = f"https://{url}"
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise CloudflareImagesConfigError(
            f"Connection {conn_id!r} {field} must be an http(s) URL such as "
            f"{default!r}; got {host!r}."
        )
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise CloudflareImagesConfigError(
            f"Connection {conn_id!r} {field} {host!r} uses plain http to a non-loopback host; "
            "use https (plain http is only accepted for 127.0.0.1/localhost, e.g. the emulator)."
        )
    return url


def _is_loopback(hostname: str) -> bool:
    if hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(hostname).is_loopback
    except ValueError:
        return False


def _strip_prefixes(extra: dict[str, Any]) -> dict[str, Any]:
    prefix = "extra__cloudflare_images__"
    cleaned: dict[str, Any] = {}
    for key, value in extra.items():
        name = key[len(prefix) :] if key.startswith(prefix) else key
        # The UI stores untouched optional fields as empty strings or nulls.
        if value is None or value == "":
            continue
        cleaned[name] = value
    return cleaned


def _auth_type(conn_id: str, value: Any, email: str | None) -> AuthType:
    if value is None:
        # An email in login only makes sense with the global API key.
        return "api_key" if email and "@" in email else "api_token"
    if value not in AUTH_TYPES:
        raise CloudflareImagesConfigError(
            f"Connection {conn_id!r} extra 'auth_type' must be one of {list(AUTH_TYPES)}; "
            f"got {value!r}."
        )
    return value


def _positive_number(conn_id: str, name: str, value: Any, default: float) -> float:
    if value is None:
        return default
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = -1.0
    if isinstance(value, bool) or not number > 0:
        raise CloudflareImagesConfigError(
            f"Connection {conn_id!r} extra {name!r} must be a positive number of seconds; "
            f"got {value!r}."
        )
    return number


def _retries(conn_id: str, value: Any) -> int:
    if value is None:
        return DEFAULT_MAX_RETRIES
    try:
        number = int(str(value))
    except ValueError:
        number = -1
    if isinstance(value, bool) or number < 0:
        raise CloudflareImagesConfigError(
            f"Connection {conn_id!r} extra 'max_retries' must be a whole number >= 0; "
            f"got {value!r}."
        )
    return number


def _optional_rate(conn_id: str, value: Any) -> float | None:
    if value is None:
        return None
    return _positive_number(conn_id, "max_requests_per_minute", value, 0.0)


def _reserve(conn_id: str, value: Any) -> float:
    if value is None:
        return DEFAULT_RESERVE
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if isinstance(value, bool) or not 0 <= number <= MAX_RESERVE:
        raise CloudflareImagesConfigError(
            f"Connection {conn_id!r} extra 'rate_limit_reserve' must be a fraction of the "
            f"rate-limit quota between 0 and {MAX_RESERVE} (default {DEFAULT_RESERVE}: keep a "
            f"tenth of it for the account's other clients); got {value!r}."
        )
    return number
