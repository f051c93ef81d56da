"""Where an inventory file lives: a local path, or any URI ``ObjectStoragePath`` serves."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

#: Schemes Airflow's own local filesystem serves.
LOCAL_PROTOCOLS = ("", "file", "local")


def protocol_of(uri: str) -> str:
    """The URI scheme, ``file`` for a plain local path.

    :param uri: an absolute local path or a URI.
    """
    return urlsplit(uri).scheme.lower() or "file"


def storage_path(uri: str) -> Any:
    """The object to open ``uri`` with: a ``pathlib.Path`` for a plain local path, else an
    ``airflow.sdk.ObjectStoragePath``.

    The first time ObjectStoragePath opens anything it registers every installed provider's
    filesystem (with the amazon provider installed, that imports boto3), a cost paid on
    each task even for a local file. Plain paths skip that; URIs (``file://``
    included, which may carry a connection id) keep ObjectStoragePath's semantics.

    :param uri: an absolute local path or a URI.
    """
    if not urlsplit(uri).scheme:
        return Path(uri)
    from airflow.sdk import ObjectStoragePath

    return ObjectStoragePath(uri)


def open_unrecorded(path: Any, mode: str) -> Any:
    """Open ``path`` without reporting it to Airflow's hook-lineage collector.

    ``ObjectStoragePath.open`` records every file it opens as a lineage asset; a temporary
    object that is renamed away seconds later is not a dataset anyone should see, so it is
    opened through the path's underlying fsspec filesystem instead. A ``pathlib.Path``
    reports nothing and is opened as usual.

    :param path: a ``pathlib.Path`` or an ``airflow.sdk.ObjectStoragePath``.
    :param mode: the mode, such as ``"wb"``.
    """
    # Not isinstance(path, Path): on Airflow 3.1 ObjectStoragePath is a pathlib.Path too.
    filesystem = getattr(path, "fs", None)
    if filesystem is None:
        return path.open(mode)
    return filesystem.open(path.path, mode)
