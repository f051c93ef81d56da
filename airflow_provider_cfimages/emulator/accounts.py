"""Several Cloudflare accounts behind one emulator, each with its own inventory and credentials.

:class:`AccountRegistry` knows every account the server answers for and decides, as the API
gateway does, which one a request's credentials open: credentials of the account in the path
pass; valid credentials of another account get 10000 (authentication error); credentials of
no account get the usual 9109 / 9103.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

from airflow_provider_cfimages.emulator.auth import (
    Credentials,
    Headers,
    authenticate,
    default_account_id,
)
from airflow_provider_cfimages.emulator.backend import ImagesBackend
from airflow_provider_cfimages.emulator.errors import (
    AuthenticationError,
    InvalidAccessToken,
    UnknownAuthKey,
)

AuthType = Literal["api_token", "api_key"]


def nth_account_id(seed: int, index: int) -> str:
    """The id of a server's ``index``-th account (0 is :func:`default_account_id`): stable for
    a given seed, so a restarted emulator serves the same accounts."""
    if index == 0:
        return default_account_id(seed)
    text = f"cfimages-emulator:account:{seed}:{index}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class EmulatorAccount:
    """One account: its credentials and its inventory.

    :param credentials: what authentication accepts for it.
    :param backend: its images.
    """

    credentials: Credentials
    backend: ImagesBackend

    @property
    def account_id(self) -> str:
        """The 32-hex account id."""
        return self.credentials.account_id

    @property
    def api_token(self) -> str:
        """A valid API token for this account."""
        return self.credentials.api_token

    @property
    def email(self) -> str:
        """The email that goes with :attr:`global_key`."""
        return self.credentials.email

    @property
    def global_key(self) -> str:
        """A valid global API key for this account."""
        return self.credentials.global_key

    def auth_headers(self, auth_type: AuthType = "api_token") -> dict[str, str]:
        """Headers that authenticate a request to this account."""
        if auth_type == "api_key":
            return {"X-Auth-Email": self.email, "X-Auth-Key": self.global_key}
        return {"Authorization": f"Bearer {self.api_token}"}

    def connection(self, base_url: str, auth_type: AuthType = "api_token") -> dict[str, Any]:
        """A ``cloudflare_images`` Airflow connection to this account, as a dict.

        :param base_url: the emulator's API base URL (the connection's host).
        :param auth_type: which credentials the connection carries.
        """
        connection: dict[str, Any] = {"conn_type": "cloudflare_images", "host": base_url}
        if auth_type == "api_key":
            connection["login"] = self.email
            connection["password"] = self.global_key
            connection["extra"] = {"account_id": self.account_id, "auth_type": "api_key"}
        else:
            connection["password"] = self.api_token
            connection["extra"] = {"account_id": self.account_id}
        return connection


class AccountRegistry:
    """The accounts a server answers for, in the order they were added (the first is the
    primary one, served when a caller names no account).

    :param primary: the first account.
    """

    def __init__(self, primary: EmulatorAccount) -> None:
        self._accounts: dict[str, EmulatorAccount] = {primary.account_id: primary}

    @property
    def primary(self) -> EmulatorAccount:
        """The first account."""
        return next(iter(self._accounts.values()))

    def add(self, account: EmulatorAccount) -> EmulatorAccount:
        """Serve one more account.

        :raises ValueError: an account with that id is already served.
        """
        if account.account_id in self._accounts:
            raise ValueError(f"the emulator already serves account {account.account_id}")
        self._accounts[account.account_id] = account
        return account

    def get(self, account_id: str) -> EmulatorAccount | None:
        """The account with this id, or ``None``."""
        return self._accounts.get(account_id.lower())

    def __iter__(self) -> Iterator[EmulatorAccount]:
        return iter(list(self._accounts.values()))

    def __len__(self) -> int:
        return len(self._accounts)

    def authenticate(self, headers: Headers, account_id: str) -> EmulatorAccount:
        """The account a request may use: the one in its path, if its credentials are that
        account's.

        :param headers: the request's headers.
        :param account_id: the account id of the request's path.
        :raises AuthenticationError: (10000) valid credentials of another account.
        :raises CloudflareAPIError: whatever :func:`~.auth.authenticate` raises for
            credentials of no account (checked against the path's account, else the primary).
        """
        target = self.get(account_id)
        others = [account for account in self if account is not target]
        refused: Exception | None = None
        for account in [target, *others] if target is not None else others:
            try:
                authenticate(headers, account.credentials)
            except (InvalidAccessToken, UnknownAuthKey) as error:
                refused = refused or error
                continue
            if account is target:
                return account
            raise AuthenticationError()
        if refused is None:  # pragma: no cover - there is always at least one account
            raise AuthenticationError()
        raise refused
