"""Templated arguments that use values a run does not have (Airflow 3 manual runs).

The operators are rendered with their DAG's real Jinja environment and a context shaped
like a manual run's: ``dag_run``, ``params``, ``macros``..., and no ``ds``, ``ts``,
``logical_date`` or ``data_interval_*``.
"""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace
from typing import Any

import jinja2
import pendulum
import pytest
from airflow.sdk import DAG

try:
    from airflow.sdk import CronTriggerTimetable
except ImportError:  # Airflow 3.1
    from airflow.timetables.trigger import CronTriggerTimetable  # type: ignore[no-redef]

from airflow_provider_cfimages.exceptions import (
    CloudflareImagesConfigError,
    CloudflareImagesUndefinedValueError,
)
from airflow_provider_cfimages.operators.images import CloudflareImagesListOperator
from airflow_provider_cfimages.sensors.images import CloudflareImagesSensor
from airflow_provider_cfimages.version_compat import AirflowFailException

RUN_AFTER = dt.datetime(2026, 12, 1, 21, 54, 33, tzinfo=dt.timezone.utc)


def manual_run_context(**extra: Any) -> dict[str, Any]:
    """What a manual run's template context holds that these templates could use."""
    context: dict[str, Any] = {
        "dag_run": SimpleNamespace(run_after=RUN_AFTER, logical_date=None),
        "params": {},
        "run_id": "manual__2026-12-01T21:54:33",
    }
    context.update(extra)
    return context


def make_dag(**kwargs: Any) -> DAG:
    return DAG(
        "templates_test",
        schedule=kwargs.pop("schedule", None),
        start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
        **kwargs,
    )


def list_operator(dag: DAG, **kwargs: Any) -> CloudflareImagesListOperator:
    return CloudflareImagesListOperator(task_id="export", dag=dag, **kwargs)


def render(task: Any, context: dict[str, Any]) -> None:
    task.render_template_fields(context, task.dag.get_template_env())


def test_strict_undefined_window_bound_is_named_and_explained() -> None:
    task = list_operator(
        make_dag(),
        uploaded_after="{{ data_interval_start }}",
        uploaded_before="{{ data_interval_end }}",
    )
    with pytest.raises(CloudflareImagesUndefinedValueError) as caught:
        render(task, manual_run_context())
    message = str(caught.value)
    assert message.startswith(
        "uploaded_after could not be rendered from '{{ data_interval_start }}'"
    )
    assert "'data_interval_start' is undefined in this run" in message
    assert "triggered by hand" in message
    assert "{{ dag_run.run_after }}" in message
    # The original Jinja error stays attached, for the traceback.
    assert isinstance(caught.value.__cause__, jinja2.UndefinedError)


def test_undefined_values_fail_the_task_without_retries() -> None:
    # AirflowFailException: the task runner does not retry (a retry renders the same).
    assert issubclass(CloudflareImagesUndefinedValueError, AirflowFailException)
    assert issubclass(CloudflareImagesUndefinedValueError, CloudflareImagesConfigError)


def test_any_templated_argument_using_ds_is_named() -> None:
    task = list_operator(make_dag(), output_path="/exports/daily/{{ ds }}.jsonl.gz")
    with pytest.raises(CloudflareImagesUndefinedValueError, match=r"^output_path .*'ds' is"):
        render(task, manual_run_context())


def test_unknown_names_are_reported_without_the_logical_date_advice() -> None:
    task = list_operator(make_dag(), uploaded_after="{{ since }}")
    with pytest.raises(CloudflareImagesUndefinedValueError) as caught:
        render(task, manual_run_context())
    assert "'since' is undefined in this run" in str(caught.value)
    assert "triggered by hand" not in str(caught.value)


def test_a_template_that_handles_the_missing_value_renders() -> None:
    task = list_operator(
        make_dag(),
        uploaded_after="{{ data_interval_start | default(dag_run.run_after) }}",
        output_path="/exports/{{ dag_run.run_after | ds }}.jsonl",
    )
    render(task, manual_run_context())
    assert task.uploaded_after == str(RUN_AFTER)
    assert task.output_path == "/exports/2026-12-01.jsonl"


def test_lenient_undefined_does_not_silently_drop_a_bound() -> None:
    # With template_undefined=jinja2.Undefined the bound renders to "" ("no bound").
    task = list_operator(
        make_dag(template_undefined=jinja2.Undefined),
        uploaded_after="2026-12-01T00:00:00Z",
        uploaded_before="{{ data_interval_end }}",
    )
    with pytest.raises(CloudflareImagesUndefinedValueError, match=r"^uploaded_before .*'data_"):
        render(task, manual_run_context())


def test_lenient_undefined_elsewhere_is_left_alone() -> None:
    # An empty rendering from defined values is the user's choice ("no bound").
    task = list_operator(
        make_dag(template_undefined=jinja2.Undefined),
        uploaded_after="{{ params.get('since') or '' }}",
    )
    render(task, manual_run_context())
    assert task.uploaded_after == ""


def test_native_rendering_of_an_undefined_bound_is_named() -> None:
    task = list_operator(
        make_dag(render_template_as_native_obj=True), uploaded_after="{{ data_interval_start }}"
    )
    with pytest.raises(CloudflareImagesUndefinedValueError, match=r"^uploaded_after .*triggered"):
        render(task, manual_run_context())


def test_sensor_names_its_undefined_uploaded_after() -> None:
    sensor = CloudflareImagesSensor(
        task_id="wait", dag=make_dag(), uploaded_after="{{ data_interval_start }}"
    )
    with pytest.raises(CloudflareImagesUndefinedValueError, match=r"^uploaded_after .*run_after"):
        render(sensor, manual_run_context())


def test_sensor_renders_run_after_in_every_run() -> None:
    sensor = CloudflareImagesSensor(
        task_id="wait", dag=make_dag(), uploaded_after="{{ dag_run.run_after }}"
    )
    render(sensor, manual_run_context())
    assert sensor.conditions.uploaded_after == RUN_AFTER


def test_equal_bounds_from_a_cron_trigger_schedule_name_the_timetable() -> None:
    # What schedule="@hourly" means in Airflow 3 (unless [scheduler]
    # create_cron_data_intervals is set): data_interval_start == data_interval_end.
    interval = "2026-12-01T20:00:00+00:00"
    task = list_operator(
        make_dag(schedule=CronTriggerTimetable("@hourly", timezone="UTC")),
        uploaded_after="{{ data_interval_start }}",
        uploaded_before="{{ data_interval_end }}",
    )
    render(task, manual_run_context(data_interval_start=interval, data_interval_end=interval))
    with pytest.raises(CloudflareImagesConfigError) as caught:
        task.execute({})
    message = str(caught.value)
    assert "uploaded_after (2026-12-01T20:00:00+00:00) must be earlier than" in message
    assert "this DAG's timetable, CronTriggerTimetable('0 * * * *')" in message
    assert "zero length" in message
    assert "CronDataIntervalTimetable" in message
