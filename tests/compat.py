"""Airflow names the tests use, from where the running Airflow keeps them.

Airflow 3.2 moved task exceptions to ``airflow.sdk.exceptions`` (deprecating the old
module), serde to ``airflow.sdk.serde`` and DagBag to ``airflow.dag_processing``; 3.1 has
them only in the old places. The tests run against both.
"""

from __future__ import annotations

try:
    from airflow.sdk.exceptions import (
        AirflowNotFoundException,
        AirflowRescheduleException,
        AirflowSensorTimeout,
        AirflowSkipException,
        TaskDeferred,
    )
except ImportError:  # Airflow 3.1
    from airflow.exceptions import (  # type: ignore[no-redef]
        AirflowNotFoundException,
        AirflowRescheduleException,
        AirflowSensorTimeout,
        AirflowSkipException,
        TaskDeferred,
    )

try:
    from airflow.sdk.serde import deserialize, serialize
except ImportError:  # Airflow 3.1
    from airflow.serialization.serde import deserialize, serialize  # type: ignore[no-redef]

try:
    from airflow.dag_processing.dagbag import DagBag
except ImportError:  # Airflow 3.1
    from airflow.models.dagbag import DagBag  # type: ignore[no-redef]

__all__ = [
    "AirflowNotFoundException",
    "AirflowRescheduleException",
    "AirflowSensorTimeout",
    "AirflowSkipException",
    "DagBag",
    "TaskDeferred",
    "deserialize",
    "serialize",
]
