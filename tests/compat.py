"""Airflow's task exceptions, from where the running Airflow keeps them.

Airflow 3.2 moved them to ``airflow.sdk.exceptions`` and deprecated the old module; 3.1
has them only in ``airflow.exceptions``. The tests run against both.
"""

from __future__ import annotations

try:
    from airflow.sdk.exceptions import (
        AirflowRescheduleException,
        AirflowSensorTimeout,
        AirflowSkipException,
        TaskDeferred,
    )
except ImportError:  # Airflow 3.1
    from airflow.exceptions import (  # type: ignore[no-redef]
        AirflowRescheduleException,
        AirflowSensorTimeout,
        AirflowSkipException,
        TaskDeferred,
    )

__all__ = [
    "AirflowRescheduleException",
    "AirflowSensorTimeout",
    "AirflowSkipException",
    "TaskDeferred",
]
