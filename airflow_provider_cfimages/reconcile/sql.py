"""The expected side of a reconcile read from a database, through any ``common.sql`` hook.

A :class:`ExpectedQuery` runs one query on an Airflow connection whose hook is a
``DbApiHook`` (PostgreSQL, MySQL, Snowflake, BigQuery, SQLite, ...) and streams the rows:
``fetchmany`` a batch at a time, through a server-side cursor where the driver would
otherwise load the whole result into client memory (psycopg2's and psycopg's named cursors,
the ``SSCursor`` of MySQLdb and PyMySQL). Other drivers (sqlite3, Snowflake's, BigQuery's)
already stream from a plain cursor. So memory holds one batch, whatever the row count.

The first column is the key unless ``key_column`` names one; ``meta_column`` may name the
column holding the expected meta (JSON text, or a JSON column the driver decodes).
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow_provider_cfimages.exceptions import CloudflareImagesConfigError, CloudflareImagesError
from airflow_provider_cfimages.reconcile.engine import ExpectedRecord, expected_records
from airflow_provider_cfimages.version_compat import CONNECTION_NOT_FOUND_ERRORS

if TYPE_CHECKING:
    from airflow.providers.common.sql.hooks.sql import DbApiHook

log = logging.getLogger(__name__)

#: rows fetched per round trip
DEFAULT_FETCH_SIZE = 10_000
#: how to install what ``expected_sql`` needs
SQL_EXTRA = "pip install 'airflow-provider-cfimages[sql]'"
# The field names of the records handed to the engine when a meta column is read.
_KEY = "key"
_META = "meta"
# Drivers whose default cursor buffers the whole result on the client, and what streams:
# "named" is a server-side cursor opened by giving it a name; otherwise a cursor class
# of the driver's ``cursors`` module.
_STREAMING_CURSORS: dict[str, str] = {
    "psycopg2": "named",
    "psycopg": "named",
    "MySQLdb": "SSCursor",
    "pymysql": "SSCursor",
}
_CURSOR_NAME = "cfimages_expected"


def check_expected_sql(sql: Any, conn_id: Any) -> None:
    """Check ``expected_sql`` and ``expected_conn_id`` together (either may be ``None``).

    :param sql: the ``expected_sql`` argument.
    :param conn_id: the ``expected_conn_id`` argument.
    """
    if sql is None or sql == "":
        if conn_id is not None and conn_id != "":
            raise CloudflareImagesConfigError(
                f"expected_conn_id={conn_id!r} is only used with expected_sql: give the query "
                "to run on it, or drop expected_conn_id."
            )
        return
    if not isinstance(sql, str) or not sql.strip():
        raise CloudflareImagesConfigError(
            f"expected_sql must be the text of a query (or the path of a .sql file); got "
            f"{type(sql).__name__}."
        )
    if not isinstance(conn_id, str) or not conn_id.strip():
        raise CloudflareImagesConfigError(
            "expected_sql needs expected_conn_id: the Airflow connection of the database to "
            f"run it on; got {conn_id!r}."
        )


def check_parameters(parameters: Any) -> None:
    """Check ``parameters``: ``None``, a mapping (named parameters) or a list/tuple.

    :param parameters: the ``parameters`` argument.
    """
    if parameters is None or isinstance(parameters, (Mapping, list, tuple)):
        return
    raise CloudflareImagesConfigError(
        "parameters must be the bind parameters of expected_sql: a dict (named, e.g. "
        "%(account)s or :account) or a list (positional); got "
        f"{type(parameters).__name__}."
    )


def db_api_hook(conn_id: str) -> DbApiHook:
    """The ``common.sql`` hook of an Airflow connection.

    :param conn_id: the connection (the ``expected_conn_id`` task argument).
    :raises CloudflareImagesConfigError: ``common.sql`` is not installed, the connection does
        not exist, its type has no hook installed, or its hook is not a ``DbApiHook``.
    """
    try:
        from airflow.providers.common.sql.hooks.sql import DbApiHook
    except ImportError as err:
        raise CloudflareImagesConfigError(
            "expected_sql needs the common.sql provider (apache-airflow-providers-common-sql) "
            f"and the provider of your database: {SQL_EXTRA}."
        ) from err
    from airflow.sdk import BaseHook

    try:
        connection = BaseHook.get_connection(conn_id)
    except CONNECTION_NOT_FOUND_ERRORS:
        raise CloudflareImagesConfigError(
            f"expected_conn_id={conn_id!r}: no Airflow connection has this id; create it (or "
            "an AIRFLOW_CONN_ environment variable) pointing at the database to query."
        ) from None
    try:
        hook = connection.get_hook()
    except Exception as err:  # an unknown conn_type, or its provider is not installed
        raise CloudflareImagesConfigError(
            f"expected_conn_id={conn_id!r}: no hook for its conn_type "
            f"{connection.conn_type!r} ({err}); install the Airflow provider of that database."
        ) from None
    if not isinstance(hook, DbApiHook):
        raise CloudflareImagesConfigError(
            f"expected_conn_id={conn_id!r} is a {connection.conn_type!r} connection, whose "
            f"hook {type(hook).__name__} is not a SQL (common.sql DbApiHook) hook: use a "
            "database connection (postgres, mysql, snowflake, sqlite, ...)."
        )
    return hook


@dataclass(frozen=True)
class ExpectedQuery:
    """A query whose rows are the keys (and optionally metas) a system of record expects.

    :param conn_id: the Airflow connection to run it on.
    :param sql: the query (rendered).
    :param parameters: the query's bind parameters, in the driver's paramstyle.
    :param key_column: the column holding the key; the first column when ``None``.
    :param meta_column: the column holding the expected meta, if metas are compared.
    :param fetch_size: rows fetched per round trip.
    """

    conn_id: str
    sql: str
    parameters: Mapping[str, Any] | Sequence[Any] | None = None
    key_column: str | None = None
    meta_column: str | None = None
    fetch_size: int = DEFAULT_FETCH_SIZE

    @cached_property
    def hook(self) -> DbApiHook:
        """The connection's ``DbApiHook`` (checked on first use)."""
        return db_api_hook(self.conn_id)

    def check_connection(self) -> None:
        """Resolve the connection's hook now: a bad ``expected_conn_id`` fails before any
        query runs or any image is listed."""
        _ = self.hook

    def records(self, metas: Mapping[str, Any] | None = None) -> Iterator[ExpectedRecord]:
        """The rows as the reconcile engine's expected records, streamed.

        :param metas: expected metas by key, when they do not come from ``meta_column``.
        """
        return expected_records(
            self.values(),
            key_field=_KEY,
            meta_field=_META if self.meta_column else None,
            metas=metas,
            parameter="expected_sql",
        )

    def values(self) -> Iterator[str | dict[str, Any]]:
        """Each row's key (or ``{"key", "meta"}`` with a meta column), streamed.

        The connection is closed once the rows are read (or the iterator is closed).
        """
        hook = self.hook
        try:
            connection = hook.get_conn()
        except Exception as err:
            raise self._failed("could not connect", err) from err
        try:
            if self.meta_column is not None:
                json_as_text(connection)
            cursor = streaming_cursor(connection)
            try:
                yield from self._read(cursor)
            finally:
                with contextlib.suppress(Exception):
                    cursor.close()
        finally:
            with contextlib.suppress(Exception):
                connection.rollback()  # read only: end the transaction the query opened
            with contextlib.suppress(Exception):
                connection.close()

    def lineage_inputs(self) -> list[Any]:
        """OpenLineage datasets of the tables the query reads; empty when that is unknown.

        Needs the OpenLineage provider, and a hook that describes its database to OpenLineage
        (PostgreSQL's, Snowflake's, ... do; SQLite's does not). Never queries the database.
        """
        try:
            from airflow.providers.openlineage.sqlparser import get_openlineage_facets_with_sql
        except ImportError:
            return []
        try:
            lineage = get_openlineage_facets_with_sql(
                hook=self.hook,
                sql=self.sql,
                conn_id=self.conn_id,
                database=None,
                use_connection=False,
            )
        except Exception:  # lineage is best effort: it must never fail the task
            log.debug("No OpenLineage datasets for expected_sql", exc_info=True)
            return []
        return list(lineage.inputs) if lineage is not None else []

    # -- reading -------------------------------------------------------------------------

    def _read(self, cursor: Any) -> Iterator[str | dict[str, Any]]:
        try:
            if self.parameters is None:
                cursor.execute(self.sql)
            else:
                cursor.execute(self.sql, self.parameters)
            # A named cursor describes its columns only after the first fetch.
            rows = cursor.fetchmany(self.fetch_size)
        except Exception as err:
            raise self._failed("failed", err) from err
        if cursor.description is None:
            if rows:
                raise CloudflareImagesConfigError("expected_sql: the query returned no columns.")
            return
        key_index, meta_index = self._columns(cursor.description)
        while rows:
            if meta_index is None:
                for row in rows:
                    key = row[key_index]
                    yield key if type(key) is str else _text_key(key)
            else:
                for row in rows:
                    key = row[key_index]
                    yield {
                        _KEY: key if type(key) is str else _text_key(key),
                        _META: row[meta_index],
                    }
            try:
                rows = cursor.fetchmany(self.fetch_size)
            except Exception as err:
                raise self._failed("failed while reading its rows", err) from err

    def _columns(self, description: Sequence[Sequence[Any]]) -> tuple[int, int | None]:
        names = [str(column[0]) for column in description]
        key_index = 0
        if self.key_column is not None:
            key_index = _column_index(names, self.key_column, "expected_field")
        meta_index = None
        if self.meta_column is not None:
            meta_index = _column_index(names, self.meta_column, "expected_meta")
        return key_index, meta_index

    def _failed(self, what: str, err: Exception) -> CloudflareImagesError:
        # The driver's message names the problem (syntax, missing table, refused login);
        # drivers do not put passwords in it.
        return CloudflareImagesError(
            f"expected_sql on connection expected_conn_id={self.conn_id!r} {what}: "
            f"{type(err).__name__}: {str(err).strip()}"
        )


def streaming_cursor(connection: Any) -> Any:
    """A cursor that streams the result from the server, for drivers that need one.

    :param connection: a DB-API connection.
    """
    driver = type(connection).__module__.partition(".")[0]
    kind = _STREAMING_CURSORS.get(driver)
    if kind is None:
        return connection.cursor()
    if kind == "named":
        return connection.cursor(name=_CURSOR_NAME)
    cursor_class = getattr(importlib.import_module(f"{driver}.cursors"), kind)
    return connection.cursor(cursor_class)


def json_as_text(connection: Any) -> None:
    """Have psycopg / psycopg2 return JSON columns as their text on this connection only.

    They would decode each value with the standard ``json`` module, the larger part of the
    time per row; the reconcile engine decodes the text itself (with msgspec) to compare it.

    :param connection: a DB-API connection (left alone unless it is psycopg's or psycopg2's).
    """
    driver = type(connection).__module__.partition(".")[0]
    if driver == "psycopg":
        from psycopg.types.string import TextLoader

        for name in ("json", "jsonb"):
            connection.adapters.register_loader(name, TextLoader)
    elif driver == "psycopg2":
        import psycopg2.extras

        psycopg2.extras.register_default_json(connection, loads=str)
        psycopg2.extras.register_default_jsonb(connection, loads=str)


def _column_index(names: list[str], wanted: str, parameter: str) -> int:
    """Where a column is: by its exact name, else by a unique case-insensitive match
    (databases fold unquoted names to lower or upper case)."""
    if wanted in names:
        return names.index(wanted)
    folded = [index for index, name in enumerate(names) if name.casefold() == wanted.casefold()]
    if len(folded) == 1:
        return folded[0]
    raise CloudflareImagesConfigError(
        f"{parameter}={wanted!r} names no column of the expected_sql result; its columns "
        f"are {names}."
    )


def _text_key(key: Any) -> Any:
    """A UUID column's value as the text Cloudflare ids are; anything else as it is (the
    engine refuses keys that are not text, naming the row)."""
    return str(key) if isinstance(key, uuid.UUID) else key
