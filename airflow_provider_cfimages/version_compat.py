"""Names this provider takes from Airflow, from where the running version keeps them.

Airflow 3.2 moved task exceptions and ``conf`` into ``airflow.sdk``; 3.1 has them only in
the older modules. Every such shim of the provider is here, so the rest imports from one
place.
"""

from __future__ import annotations

import contextlib

try:
    from airflow.sdk import conf
    from airflow.sdk.exceptions import (
        AirflowException,
        AirflowFailException,
        AirflowSkipException,
    )
except ImportError:  # pragma: no cover - Airflow < 3.2
    from airflow.configuration import conf  # type: ignore[no-redef]
    from airflow.exceptions import (  # type: ignore[no-redef]
        AirflowException,
        AirflowFailException,
        AirflowSkipException,
    )

try:
    from airflow.sdk.log import mask_secret
except ImportError:  # pragma: no cover - Airflow < 3.2
    from airflow.utils.log.secrets_masker import mask_secret  # type: ignore[no-redef]

# What BaseHook.get_connection raises for an unknown connection id: the Task SDK's class on
# 3.2+, the core one before (some code paths of 3.2+ still raise the core one).
_not_found: list[type[Exception]] = []
with contextlib.suppress(ImportError):
    from airflow.sdk.exceptions import AirflowNotFoundException as _SdkNotFound

    _not_found.append(_SdkNotFound)
with contextlib.suppress(ImportError):
    from airflow.exceptions import AirflowNotFoundException as _CoreNotFound

    _not_found.append(_CoreNotFound)
CONNECTION_NOT_FOUND_ERRORS: tuple[type[Exception], ...] = tuple(dict.fromkeys(_not_found))

__all__ = [
    "CONNECTION_NOT_FOUND_ERRORS",
    "AirflowException",
    "AirflowFailException",
    "AirflowSkipException",
    "conf",
    "mask_secret",
]
