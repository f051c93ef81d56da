"""OpenLineage datasets for the operators' ``get_openlineage_facets_on_complete``.

Names follow the OpenLineage naming spec as Airflow's own providers apply it: an object in
a bucket is namespace ``s3://bucket`` (``gs://bucket``, ...) and name the key, never with
the Airflow connection id that ``s3://conn_id@bucket/key`` carries; a local file is
namespace ``file`` and name its absolute path. A Cloudflare Images account is namespace
``cloudflare-images://<account id>``, name ``images``.

The OpenLineage provider is optional: everything it provides is imported inside the
functions, which only its listener calls.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from airflow.providers.common.compat.openlineage.facet import Dataset
    from airflow.providers.openlineage.extractors import OperatorLineage

ACCOUNT_NAMESPACE_SCHEME = "cloudflare-images"
ACCOUNT_DATASET_NAME = "images"


def storage_dataset_name(uri: str) -> tuple[str, str]:
    """The OpenLineage ``(namespace, name)`` of a file or object.

    :param uri: an absolute local path, or a URI ``ObjectStoragePath`` accepts (a
        ``conn_id@`` in it is dropped).
    """
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    bucket = parts.netloc.rpartition("@")[2]
    if scheme in ("", "file", "local"):
        return (f"file://{bucket}" if bucket else "file"), parts.path
    return f"{scheme}://{bucket}", parts.path.lstrip("/") or "/"


def storage_dataset(uri: str) -> Dataset:
    """An OpenLineage dataset for a file or object (see :func:`storage_dataset_name`).

    :param uri: an absolute local path or a URI.
    """
    from airflow.providers.common.compat.openlineage.facet import Dataset

    namespace, name = storage_dataset_name(uri)
    return Dataset(namespace=namespace, name=name)


def account_dataset(account_id: str) -> Dataset:
    """The OpenLineage dataset of a Cloudflare Images account's image inventory.

    :param account_id: the 32-hex account id.
    """
    from airflow.providers.common.compat.openlineage.facet import Dataset

    return Dataset(
        namespace=f"{ACCOUNT_NAMESPACE_SCHEME}://{account_id}", name=ACCOUNT_DATASET_NAME
    )


def operator_lineage(inputs: Iterable[Dataset], outputs: Iterable[Dataset]) -> OperatorLineage:
    """An ``OperatorLineage`` with these datasets (each once, in order).

    :param inputs: the datasets read.
    :param outputs: the datasets written.
    """
    from airflow.providers.openlineage.extractors import OperatorLineage

    return OperatorLineage(inputs=_unique(inputs), outputs=_unique(outputs))


def _unique(datasets: Iterable[Any]) -> list[Any]:
    seen: dict[tuple[str, str], Any] = {}
    for dataset in datasets:
        seen.setdefault((dataset.namespace, dataset.name), dataset)
    return list(seen.values())
