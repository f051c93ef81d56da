"""Templated arguments that use a value the run does not have: say which, and why.

In Airflow 3 a run triggered by hand (the UI's Trigger button, ``airflow dags trigger``) or
by an asset has no logical date unless one is given, so ``ds``, ``ts``, ``logical_date`` and
``data_interval_start``/``_end`` are not in its template context. With Airflow's default
``StrictUndefined`` rendering such a template fails with only "'ds' is undefined"; with a
lenient ``template_undefined`` it renders to an empty string, which for an upload-time
bound would silently mean "no bound". :class:`ExplainsUndefinedTemplates` turns both into
an error that names the argument, the missing value and what to use instead, and fails
the task without retries (every retry renders the same context).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import jinja2
import jinja2.meta

from airflow_provider_cfimages.exceptions import CloudflareImagesUndefinedValueError
from airflow_provider_cfimages.utils.validation import is_unrendered

# What Airflow 3 leaves out of the context of a run without a logical date.
LOGICAL_DATE_VALUES = frozenset(
    {
        "ds",
        "ds_nodash",
        "ts",
        "ts_nodash",
        "ts_nodash_with_tz",
        "logical_date",
        "data_interval_start",
        "data_interval_end",
        "prev_data_interval_start_success",
        "prev_data_interval_end_success",
    }
)
WHY_UNDEFINED = (
    "In Airflow 3 a run triggered by hand (the UI's Trigger button, `airflow dags trigger`) "
    "or by an asset event has no logical date, so ds, ts, logical_date and "
    "data_interval_start/data_interval_end are undefined in its templates. Use "
    "'{{ dag_run.run_after }}', which every run has, or give the value explicitly (a param), "
    "or trigger the run with a logical date."
)


def undefined_message(argument: str, template: str, names: Iterable[str]) -> str:
    """The error for an argument whose template uses values the run does not have.

    :param argument: the operator argument, e.g. ``uploaded_after``.
    :param template: the argument's template text.
    :param names: the undefined names it uses.
    """
    listed = ", ".join(repr(name) for name in sorted(names))
    message = (
        f"{argument} could not be rendered from {template!r}: {listed} is undefined in this run."
    )
    if set(names) & LOGICAL_DATE_VALUES:
        message += f" {WHY_UNDEFINED}"
    return message


def undefined_value_message(argument: str, value: jinja2.Undefined) -> str:
    """The error for an argument rendered (natively) to a Jinja ``Undefined``.

    :param argument: the operator argument, e.g. ``uploaded_after``.
    :param value: what the template rendered to.
    """
    message = (
        f"{argument} was rendered from an undefined template value ({value._undefined_message})."
    )
    if value._undefined_name in LOGICAL_DATE_VALUES:
        message += f" {WHY_UNDEFINED}"
    return message


def undefined_names(template: str, context: Mapping[str, Any], env: jinja2.Environment) -> set[str]:
    """The variables a template uses that neither the context nor the environment defines."""
    try:
        used = jinja2.meta.find_undeclared_variables(env.parse(template))
    except jinja2.TemplateSyntaxError:
        return set()
    return {name for name in used if name not in context and name not in env.globals}


class ExplainsUndefinedTemplates:
    """Mixin for operators: explain templated arguments that use undefined values.

    Put it before ``BaseOperator`` (or ``BaseSensorOperator``) in the bases. Any template
    field whose rendering fails on an undefined value is named in the error; the
    ``bound_fields`` (upload-time bounds, where an empty string would mean "no bound") are
    also checked when a lenient ``template_undefined`` rendered them empty or left them
    undefined.
    """

    bound_fields: tuple[str, ...] = ()

    def render_template_fields(
        self, context: Any, jinja_env: jinja2.Environment | None = None
    ) -> None:
        """Render the template fields; explain the ones that use undefined values.

        :param context: the task's template context.
        :param jinja_env: the DAG's Jinja environment.
        """
        env = jinja_env or self.get_template_env()  # type: ignore[attr-defined]
        fields: tuple[str, ...] = tuple(self.template_fields)  # type: ignore[attr-defined]
        templates = {
            name: value
            for name in fields
            if isinstance(value := getattr(self, name, None), str) and is_unrendered(value)
        }
        try:
            super().render_template_fields(context, env)  # type: ignore[misc]
        except jinja2.UndefinedError as err:
            raise self._explain(templates, context, env, fields) or err from err
        for name in self.bound_fields:
            rendered = getattr(self, name, None)
            if name in templates and _looks_undefined(rendered):
                error = self._explain({name: templates[name]}, context, env, (name,))
                if error is not None:
                    raise error

    @staticmethod
    def _explain(
        templates: Mapping[str, str],
        context: Mapping[str, Any],
        env: jinja2.Environment,
        order: Iterable[str],
    ) -> CloudflareImagesUndefinedValueError | None:
        for name in order:
            if name in templates and (missing := undefined_names(templates[name], context, env)):
                return CloudflareImagesUndefinedValueError(
                    undefined_message(name, templates[name], missing)
                )
        return None


def _looks_undefined(value: Any) -> bool:
    """What a lenient ``Undefined`` renders to: ``""``, the object itself (native
    rendering), or the template text again (``DebugUndefined``)."""
    if isinstance(value, jinja2.Undefined):
        return True
    return isinstance(value, str) and (not value.strip() or is_unrendered(value))
