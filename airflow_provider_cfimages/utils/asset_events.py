"""Putting a task's result on the asset events it emits (``outlets``), as ``extra``.

A downstream DAG scheduled on the asset then reads what was produced (an export's
manifest: path, count, sha256, window; a reconcile summary) from
``triggering_asset_events``, without an extra task or an XCom pull across DAGs. The extra
is set during ``execute`` through the ``outlet_events`` accessor of the task context, so
each try describes its own result: a retry's event carries the retry's manifest.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


def attach_to_outlets(context: Mapping[str, Any], outlets: Iterable[Any], extra: Any) -> int:
    """Add ``extra`` to the event of every ``Asset`` among ``outlets``; return how many.

    Asset aliases are left alone: their events name their assets at run time, which only
    the DAG author knows. Keys the DAG already set on an event are kept unless ``extra``
    has them too.

    :param context: the task context (``outlet_events`` is absent outside a task run).
    :param outlets: the task's outlets.
    :param extra: a JSON-serialisable mapping (the task's XCom value).
    """
    events = context.get("outlet_events")
    if events is None or not isinstance(extra, Mapping):
        return 0
    from airflow.sdk import Asset

    attached = 0
    for outlet in outlets:
        if isinstance(outlet, Asset):
            events[outlet].extra.update(extra)
            attached += 1
    return attached
