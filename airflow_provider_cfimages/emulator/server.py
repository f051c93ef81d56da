"""The HTTP side of the emulator: routing, request parsing, responses, and the server itself.

- :data:`ROUTES` is the one place that maps paths and methods to handlers: the Images API
  under ``/client/v4/accounts/{account_id}/`` and the control API under ``/__emulator__/``
  (no Cloudflare auth; faults, request log, reset, direct-upload completion).
- :class:`EmulatorApp` turns a parsed :class:`Request` into a :class:`Response`:
  route -> account id check -> method -> authentication -> account -> rate limit -> handler.
  Every answer past the rate limit carries its ``Ratelimit`` headers. The Images batch host
  is served under ``/batch`` (:data:`BATCH_ROUTES`: the same handlers, a batch token
  instead of the account's credentials, no account quota; see :mod:`~.batch`).
  Handlers only parse parameters and call :class:`~.backend.ImagesBackend`.
- :class:`_Handler` is the stdlib ``http.server`` adapter: HTTP/1.1 keep-alive, bodies with
  Content-Length, and the transport-level faults (drop, delay, 5xx page, truncation).
- :class:`EmulatorServer` runs it all on a background thread, as a context manager.

Page bodies are built from the backend's pre-encoded images without decoding anything,
and written with TCP_NODELAY so small responses are not held back by Nagle's algorithm.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import re
import secrets
import socket
import socketserver
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP as HTTP_POLICY
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qs, unquote, urlsplit

import msgspec

from airflow_provider_cfimages.emulator.accounts import (
    AccountRegistry,
    EmulatorAccount,
    nth_account_id,
)
from airflow_provider_cfimages.emulator.auth import (
    Credentials,
    Headers,
    default_account_id,
    default_credentials,
)
from airflow_provider_cfimages.emulator.backend import PER_PAGE_MAX, ImagesBackend
from airflow_provider_cfimages.emulator.batch import BATCH_ROOT, BatchTokens
from airflow_provider_cfimages.emulator.errors import (
    AuthenticationError,
    BadRequest,
    CloudflareAPIError,
    ForbiddenEndpoint,
    ImagesMustBeUploadedAsForm,
    InternalServerError,
    InvalidObjectIdentifier,
    MethodNotAllowed,
    NoRoute,
)
from airflow_provider_cfimages.emulator.faults import FaultPlan, edge_error_page, json_error_for
from airflow_provider_cfimages.emulator.meta_filters import parse_query_filters
from airflow_provider_cfimages.emulator.seed import read_seed_inventories

API_ROOT = "/client/v4"
CONTROL_ROOT = "/__emulator__"
#: request bodies larger than this are refused (Cloudflare's own upload limit is 10 MB)
MAX_BODY_BYTES = 32 * 1024 * 1024
#: request records kept (the oldest are dropped first)
MAX_RECORDS = 100_000
#: images a List images V2 page holds at most by default: the live docs say up to 1000
DEFAULT_PAGE_CAP = 1000

_encode = msgspec.json.encode
_decode = msgspec.json.decode
_ACCOUNT_PATH = re.compile(r"^/client/v4/accounts/(?P<account_id>[^/]+)(?P<rest>/.*)?$")
_ACCOUNT_ID = re.compile(r"^[0-9a-fA-F]{32}$")
_SUCCESS_TAIL = b',"success":true,"errors":[],"messages":[]}'
# The account the request being handled is for (each request runs in its own thread).
_current_account: contextvars.ContextVar[EmulatorAccount] = contextvars.ContextVar(
    "cfimages_emulator_account"
)


# --- requests and responses --------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    """A parsed HTTP request."""

    method: str
    path: str
    query: dict[str, str]
    headers: Headers
    body: bytes = b""


@dataclass(frozen=True)
class Response:
    """An HTTP response; ``body`` is a sequence of chunks written one after the other."""

    status: int
    body: tuple[bytes, ...]
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()

    @property
    def length(self) -> int:
        return sum(len(chunk) for chunk in self.body)

    def with_headers(self, headers: Mapping[str, str]) -> Response:
        """The same response with more headers."""
        if not headers:
            return self
        return Response(
            self.status, self.body, self.content_type, (*self.headers, *headers.items())
        )


@dataclass(frozen=True)
class RequestRecord:
    """One API request the emulator served (control API requests are not recorded).

    Readable as attributes or as a mapping (``record["status"]``).

    :param status: the HTTP status sent, 0 when the connection was dropped.
    :param fault: which injected faults acted on it (``"fail:502"``, ``"drop"``,
        ``"truncate"``, ``"slow"``), comma-separated, or None.
    """

    index: int
    method: str
    path: str
    api_path: str
    query: dict[str, str]
    status: int
    fault: str | None
    error_codes: tuple[int, ...]
    bytes_sent: int
    started: float
    duration: float

    def __getitem__(self, name: str) -> Any:
        return getattr(self, name)

    def get(self, name: str, default: Any = None) -> Any:
        """Mapping-style access with a default."""
        return getattr(self, name, default)

    def to_dict(self) -> dict[str, Any]:
        """The record as JSON-friendly data."""
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


def success(result: Any) -> Response:
    """The success envelope around ``result``."""
    return Response(200, (b'{"result":', _encode(result), _SUCCESS_TAIL))


def failure(error: CloudflareAPIError) -> Response:
    """The failure envelope of an API error, with its status and headers."""
    headers = tuple(error.headers.items())
    return Response(error.status, (_encode(error.envelope()),), headers=headers)


def _image_list(blobs: list[bytes], token: str | Literal[False] | None = False) -> Response:
    # The page is the pre-encoded images joined: no image is decoded or re-encoded here.
    head = b'{"result":{"images":['
    if token is False:  # v1: no continuation token at all
        tail = b"]}" + _SUCCESS_TAIL
    else:
        tail = b'],"continuation_token":' + _encode(token) + b"}" + _SUCCESS_TAIL
    return Response(200, (head, b",".join(blobs), tail))


@dataclass(frozen=True)
class FormField:
    """One field of a multipart form."""

    value: bytes
    filename: str | None = None

    @property
    def text(self) -> str:
        return self.value.decode("utf-8", "replace")


def parse_form(request: Request) -> dict[str, FormField]:
    """The fields of a ``multipart/form-data`` or urlencoded body ({} for an empty body).

    :raises ImagesMustBeUploadedAsForm: for any other content type.
    """
    content_type = request.headers.get("Content-Type") or ""
    if not request.body and not content_type:
        return {}
    if content_type.lower().startswith("application/x-www-form-urlencoded"):
        pairs = parse_qs(request.body.decode("utf-8", "replace"), keep_blank_values=True)
        return {name: FormField(values[-1].encode()) for name, values in pairs.items()}
    if not content_type.lower().startswith("multipart/form-data"):
        raise ImagesMustBeUploadedAsForm()
    message = BytesParser(policy=HTTP_POLICY).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + request.body
    )
    if not message.is_multipart():
        raise BadRequest("malformed multipart/form-data body")
    fields: dict[str, FormField] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not name:
            continue
        payload = part.get_payload(decode=True)
        fields[str(name)] = FormField(
            payload if isinstance(payload, bytes) else b"", part.get_filename()
        )
    return fields


def _text(fields: dict[str, FormField], name: str) -> str | None:
    found = fields.get(name)
    return None if found is None else found.text


# --- routing -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    """A path pattern and the handler (an :class:`EmulatorApp` method name) per HTTP method.

    API routes' patterns are relative to ``/client/v4/accounts/{account_id}``; a route with
    no methods is a real Cloudflare path the emulator does not emulate (answered 7000).
    """

    pattern: str
    methods: Mapping[str, str]
    control: bool = False
    regex: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "regex", re.compile(f"^{self.pattern}$"))


ROUTES: tuple[Route, ...] = (
    # Cloudflare Images API, under /client/v4/accounts/{account_id}
    Route("/images/v2", {"GET": "list_images_v2"}),
    Route("/images/v2/direct_upload", {"POST": "create_direct_upload"}),
    Route("/images/v1", {"GET": "list_images_v1", "POST": "upload_image"}),
    Route("/images/v1/stats", {"GET": "images_stats"}),
    Route("/images/v1/batch_token", {"GET": "issue_batch_token"}),
    Route("/images/v1/(?:keys|variants)(?:/.*)?", {}),  # signing keys, variants: not emulated
    Route("/images/v1/(?P<image_id>.+)/blob", {}),  # image bytes: not stored, not emulated
    Route(
        "/images/v1/(?P<image_id>.+)",
        {"GET": "get_image", "PATCH": "update_image", "DELETE": "delete_image"},
    ),
    # control API, no Cloudflare auth
    Route("/__emulator__/health", {"GET": "control_health"}, control=True),
    Route(
        "/__emulator__/requests",
        {"GET": "control_requests", "DELETE": "control_clear_requests"},
        control=True,
    ),
    Route(
        "/__emulator__/faults",
        {"GET": "control_faults", "POST": "control_add_fault", "DELETE": "control_clear_faults"},
        control=True,
    ),
    Route("/__emulator__/reset", {"POST": "control_reset"}, control=True),
    Route("/__emulator__/batch", {"GET": "control_batch", "POST": "control_batch"}, control=True),
    Route(
        "/__emulator__/accounts/(?P<account_id>[0-9a-f]{32})/direct_upload/(?P<image_id>.+)",
        {"POST": "control_direct_upload"},
        control=True,
    ),
    Route(
        "/__emulator__/direct_upload/(?P<image_id>.+)",
        {"POST": "control_direct_upload"},
        control=True,
    ),
)
_API_ROUTES = tuple(route for route in ROUTES if not route.control)
_CONTROL_ROUTES = tuple(route for route in ROUTES if route.control)
#: the FaultPlan methods the control API may call
CONTROL_FAULTS = frozenset(
    {
        "fail_next",
        "fail_randomly",
        "drop_next",
        "truncate_next",
        "slow_next",
        "repeat_token",
        "short_pages",
        "trailing_empty_page",
        "rate_limit",
        "block_for",
        "lose_answer_next",
    }
)
#: the batch host's routes, relative to ``/batch`` (the handlers are the API's own)
BATCH_ROUTES: tuple[Route, ...] = (
    Route("/images/v1", {"POST": "upload_image"}),
    Route(
        "/images/v1/(?P<image_id>.+)",
        {"GET": "get_image", "PATCH": "update_image", "DELETE": "delete_image"},
    ),
)


def api_path_of(path: str) -> str:
    """The path after ``/client/v4/accounts/{account_id}`` or the batch host's ``/batch``.

    So a fault armed for ``/images/v1`` acts on both hosts (``/batch`` for the batch
    host's only); any other path is returned as it is.
    """
    if path.startswith(BATCH_ROOT + "/"):
        return path[len(BATCH_ROOT) :]
    match = _ACCOUNT_PATH.match(path)
    if match is None:
        return path
    return match.group("rest") or ""


# --- the application ---------------------------------------------------------------------


class EmulatorApp:
    """Answers parsed requests: the Images API and the control API.

    Several accounts may be served (:meth:`add_account`), each with its own inventory and
    credentials; the faults, the rate limit among them, are the server's, shared by all of
    them as if one Cloudflare user held every account.

    :param backend: the (first) account's state.
    :param faults: the armed faults (rate limit and list behaviour are applied here; the
        transport-level ones by the HTTP handler).
    :param credentials: what authentication accepts for the first account.
    """

    def __init__(self, backend: ImagesBackend, faults: FaultPlan, credentials: Credentials) -> None:
        self.accounts = AccountRegistry(EmulatorAccount(credentials, backend))
        self.faults = faults
        self.credentials = credentials
        self.batch = BatchTokens()
        #: the most images a List images V2 page holds, whatever per_page asks for
        self.page_cap: int | None = DEFAULT_PAGE_CAP
        self.base_url = ""
        self._records: deque[RequestRecord] = deque(maxlen=MAX_RECORDS)
        self._records_lock = threading.Lock()
        self._counter = 0

    @property
    def backend(self) -> ImagesBackend:
        """The inventory of the account the current request is for (outside a request, and
        for the control API, the first account's)."""
        return _current_account.get(self.accounts.primary).backend

    def add_account(self, account: EmulatorAccount) -> EmulatorAccount:
        """Serve one more account (its own inventory and credentials)."""
        return self.accounts.add(account)

    # --- request log -----------------------------------------------------------------

    def record(
        self,
        request: Request,
        status: int,
        *,
        fault: str | None,
        error_codes: tuple[int, ...],
        bytes_sent: int,
        started: float,
    ) -> None:
        """Log one served API request."""
        with self._records_lock:
            self._counter += 1
            self._records.append(
                RequestRecord(
                    index=self._counter,
                    method=request.method,
                    path=request.path,
                    api_path=api_path_of(request.path),
                    query=dict(request.query),
                    status=status,
                    fault=fault,
                    error_codes=error_codes,
                    bytes_sent=bytes_sent,
                    started=started,
                    duration=time.time() - started,
                )
            )

    @property
    def records(self) -> list[RequestRecord]:
        """The served API requests, oldest first."""
        with self._records_lock:
            return list(self._records)

    def clear_records(self) -> None:
        """Forget the request log."""
        with self._records_lock:
            self._records.clear()

    # --- dispatch --------------------------------------------------------------------

    @staticmethod
    def is_control(path: str) -> bool:
        """Whether a path belongs to the control API."""
        return path == CONTROL_ROOT or path.startswith(CONTROL_ROOT + "/")

    def handle(self, request: Request) -> Response:
        """Answer one request (API or control); never raises."""
        try:
            if self.is_control(request.path):
                return self._dispatch_control(request)
            if request.path.startswith(BATCH_ROOT + "/"):
                return self._dispatch_batch(request)
            return self._dispatch_api(request)
        except CloudflareAPIError as error:
            return failure(error)
        except Exception:
            traceback.print_exc(file=sys.stderr)
            return failure(InternalServerError())

    def _dispatch_api(self, request: Request) -> Response:
        match = _ACCOUNT_PATH.match(request.path)
        if match is None:
            raise NoRoute()
        account_id = match.group("account_id")
        rest = match.group("rest") or ""
        for route in _API_ROUTES:
            found = route.regex.match(rest)
            if found is not None:
                break
        else:
            raise NoRoute()
        if not route.methods:
            raise NoRoute()
        if not _ACCOUNT_ID.match(account_id):
            raise InvalidObjectIdentifier(request.path)
        handler_name = route.methods.get(request.method)
        if handler_name is None:
            raise MethodNotAllowed(request.method, sorted(route.methods))
        # Valid credentials, but not for this account: the gateway says 10000.
        account = self.accounts.authenticate(request.headers, account_id.lower())
        quota_headers = self.faults.check_rate_limit()
        response = self._run_handler(account, handler_name, request, found)
        return response.with_headers(quota_headers)

    def _dispatch_batch(self, request: Request) -> Response:
        """The batch host: the API's per-image handlers, outside the account's quota."""
        rest = request.path[len(BATCH_ROOT) :]
        if rest.startswith("/images/v2"):
            raise ForbiddenEndpoint()
        for route in BATCH_ROUTES:
            found = route.regex.match(rest)
            if found is not None:
                break
        else:
            raise NoRoute()
        handler_name = route.methods.get(request.method)
        if handler_name is None:
            raise MethodNotAllowed(request.method, sorted(route.methods))
        # A batch token opens the account it was issued for, and only that one.
        account = self.accounts.get(self.batch.admit(request.headers))
        if account is None:
            raise AuthenticationError()
        return self._run_handler(account, handler_name, request, found)

    def _run_handler(
        self, account: EmulatorAccount, handler_name: str, request: Request, found: re.Match[str]
    ) -> Response:
        """Run an API handler for one account; its API errors become error responses."""
        params = {name: unquote(value) for name, value in found.groupdict().items()}
        handler: Callable[[Request, dict[str, str]], Response] = getattr(self, handler_name)
        token = _current_account.set(account)
        try:
            return handler(request, params)
        except CloudflareAPIError as error:
            return failure(error)
        finally:
            _current_account.reset(token)

    def _dispatch_control(self, request: Request) -> Response:
        for route in _CONTROL_ROUTES:
            found = route.regex.match(request.path)
            if found is not None:
                handler_name = route.methods.get(request.method)
                if handler_name is None:
                    raise MethodNotAllowed(request.method, sorted(route.methods))
                params = {name: unquote(value) for name, value in found.groupdict().items()}
                control: Callable[[Request, dict[str, str]], Response]
                control = getattr(self, handler_name)
                return control(request, params)
        raise NoRoute()

    # --- Images API handlers -----------------------------------------------------------

    def list_images_v2(self, request: Request, params: dict[str, str]) -> Response:
        query = request.query
        fault_cap, trailing = self.faults.list_behaviour()
        caps = [cap for cap in (fault_cap, self.page_cap) if cap is not None]
        asked_token = query.get("continuation_token") or None
        page = self.backend.list_images_v2_page(
            query.get("per_page"),
            query.get("sort_order"),
            asked_token,
            query.get("creator"),
            page_cap=min(caps) if caps else None,
            token_on_last_page=trailing,
            meta_filters=parse_query_filters(query),
        )
        token = self.faults.rewrite_token(asked_token, page.continuation_token)
        return _image_list(page.blobs, token)

    def list_images_v1(self, request: Request, params: dict[str, str]) -> Response:
        query = request.query
        blobs = self.backend.list_images_v1_page(query.get("page"), query.get("per_page"))
        return _image_list(blobs)

    def images_stats(self, request: Request, params: dict[str, str]) -> Response:
        return success(self.backend.stats())

    def issue_batch_token(self, request: Request, params: dict[str, str]) -> Response:
        return success(self.batch.issue(_current_account.get(self.accounts.primary).account_id))

    def get_image(self, request: Request, params: dict[str, str]) -> Response:
        blob = self.backend.get_image_blob(params["image_id"])
        return Response(200, (b'{"result":', blob, _SUCCESS_TAIL))

    def update_image(self, request: Request, params: dict[str, str]) -> Response:
        body: Any = {}
        if request.body.strip():
            try:
                body = _decode(request.body)
            except msgspec.DecodeError as error:
                raise BadRequest(f"the body must be a JSON object: {error}") from None
        if not isinstance(body, dict):
            raise BadRequest("the body must be a JSON object")
        image = self.backend.update_image(
            params["image_id"],
            metadata=body.get("metadata"),
            require_signed_urls=body.get("requireSignedURLs"),
        )
        return success(image)

    def delete_image(self, request: Request, params: dict[str, str]) -> Response:
        return success(self.backend.delete_image(params["image_id"]))

    def upload_image(self, request: Request, params: dict[str, str]) -> Response:
        content_type = (request.headers.get("Content-Type") or "").lower()
        if not content_type.startswith("multipart/form-data"):
            raise ImagesMustBeUploadedAsForm()
        fields = parse_form(request)
        file = fields.get("file")
        image = self.backend.upload_image(
            file=None if file is None else file.value,
            url=_text(fields, "url"),
            filename=None if file is None else (file.filename or "image"),
            metadata=_text(fields, "metadata"),
            require_signed_urls=_text(fields, "requireSignedURLs"),
            id=_text(fields, "id"),
            creator=_text(fields, "creator"),
        )
        return success(image)

    def create_direct_upload(self, request: Request, params: dict[str, str]) -> Response:
        fields = parse_form(request)
        result = self.backend.create_direct_upload(
            id=_text(fields, "id"),
            metadata=_text(fields, "metadata"),
            require_signed_urls=_text(fields, "requireSignedURLs"),
            creator=_text(fields, "creator"),
            expiry=_text(fields, "expiry"),
        )
        return success(result)

    # --- control API handlers ----------------------------------------------------------

    def control_health(self, request: Request, params: dict[str, str]) -> Response:
        return success(
            {
                "ok": True,
                "images": self.backend.count,
                "account_id": self.credentials.account_id,
                "base_url": self.base_url,
            }
        )

    def control_requests(self, request: Request, params: dict[str, str]) -> Response:
        return success({"requests": [record.to_dict() for record in self.records]})

    def control_clear_requests(self, request: Request, params: dict[str, str]) -> Response:
        self.clear_records()
        return success({})

    def control_faults(self, request: Request, params: dict[str, str]) -> Response:
        return success(self.faults.describe())

    def control_add_fault(self, request: Request, params: dict[str, str]) -> Response:
        try:
            spec = _decode(request.body or b"{}")
        except msgspec.DecodeError as error:
            raise BadRequest(f"the body must be a JSON object: {error}") from None
        if not isinstance(spec, dict) or spec.get("fault") not in CONTROL_FAULTS:
            raise BadRequest(f"'fault' must be one of {sorted(CONTROL_FAULTS)}")
        name = spec.pop("fault")
        if isinstance(spec.get("statuses"), list):
            spec["statuses"] = tuple(spec["statuses"])
        try:
            getattr(self.faults, name)(**spec)
        except (TypeError, ValueError) as error:
            raise BadRequest(f"{name}: {error}") from None
        return success(self.faults.describe())

    def control_clear_faults(self, request: Request, params: dict[str, str]) -> Response:
        self.faults.clear()
        return success(self.faults.describe())

    def control_batch(self, request: Request, params: dict[str, str]) -> Response:
        """GET: the batch host's rules and counters; POST: change them (``configure``)."""
        if request.method == "POST":
            try:
                spec = _decode(request.body or b"{}")
                if not isinstance(spec, dict):
                    raise TypeError("the body must be a JSON object")
                self.batch.configure(**spec)
            except (msgspec.DecodeError, TypeError, ValueError) as error:
                raise BadRequest(f"batch: {error}") from None
        return success(self.batch.describe())

    def control_reset(self, request: Request, params: dict[str, str]) -> Response:
        self.batch = BatchTokens()
        for account in self.accounts:
            account.backend.reset()
        self.faults.clear()
        self.clear_records()
        return success({"images": self.backend.count})

    def control_direct_upload(self, request: Request, params: dict[str, str]) -> Response:
        fields = parse_form(request)
        file = fields.get("file")
        if file is None:
            raise BadRequest("the form needs a 'file' field")
        account = self.accounts.get(params.get("account_id") or self.accounts.primary.account_id)
        if account is None:
            raise NoRoute()
        image = account.backend.complete_direct_upload(params["image_id"], file.filename or "image")
        return success(image)

    # --- edge faults -------------------------------------------------------------------

    @staticmethod
    def edge_failure(status: int, html: bool, body: bytes | None, ray_id: str) -> Response:
        """The response of a ``fail_next`` fault."""
        if body is not None:
            content_type = "text/html; charset=UTF-8" if html else "application/json"
            return Response(status, (body,), content_type)
        if html:
            return Response(status, (edge_error_page(status, ray_id),), "text/html; charset=UTF-8")
        return failure(json_error_for(status))


# --- HTTP --------------------------------------------------------------------------------


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128
    app: EmulatorApp
    verbose = False

    def __init__(self, address: tuple[str, int], app: EmulatorApp) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.app = app
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host's FQDN, which can stall on machines
        # without DNS; the name is never used here.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up mid-response (or a dropped/truncated fault) is not an error
        # of the emulator; anything else is printed as socketserver would.
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)

    def track(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self._connections.add(connection)

    def untrack(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self._connections.discard(connection)

    def close_connections(self) -> None:
        """Shut every open keep-alive connection (their threads then end)."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "cloudflare"
    sys_version = ""
    # Idle keep-alive connections are closed after this many seconds.
    timeout = 300
    server: _HTTPServer

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.track(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.untrack(self.connection)

    def version_string(self) -> str:
        return "cloudflare"

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.verbose:
            sys.stderr.write(f"{self.address_string()} - {format % args}\n")

    def do_GET(self) -> None:
        self._dispatch()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = do_GET

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks: list[bytes] = []
            total = 0
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                total += size
                if total > MAX_BODY_BYTES:
                    raise ValueError("body too large")
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        if length < 0 or length > MAX_BODY_BYTES:
            raise ValueError("body too large")
        return self.rfile.read(length) if length else b""

    def _dispatch(self) -> None:
        started = time.time()
        app = self.server.app
        split = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        try:
            body = self._read_body()
        except ValueError:
            self.close_connection = True
            self._send(failure(BadRequest("unreadable or too large request body")), "")
            return
        request = Request(self.command, split.path, query, self.headers, body)
        ray_id = f"{secrets.token_hex(8)}-EMU"
        if app.is_control(split.path):
            self._send(app.handle(request), ray_id)
            return

        edge = app.faults.edge(self.command, api_path_of(split.path), split.path)
        fault = ",".join(edge.names) or None
        if edge.delay:
            time.sleep(edge.delay)
        if edge.drop:
            # No status line, no headers: the client sees the connection closed.
            self.close_connection = True
            app.record(request, 0, fault=fault, error_codes=(), bytes_sent=0, started=started)
            return
        if edge.fail is not None:
            response = app.edge_failure(*edge.fail, ray_id)
        else:
            response = app.handle(request)
        if edge.lose_answer:
            # Carried out in full, then the connection is lost before the answer.
            self.close_connection = True
            app.record(request, 0, fault=fault, error_codes=(), bytes_sent=0, started=started)
            return
        codes: tuple[int, ...] = ()
        if response.status >= 400 and response.content_type == "application/json":
            try:
                codes = tuple(e["code"] for e in _decode(b"".join(response.body))["errors"])
            except (msgspec.DecodeError, KeyError, TypeError):
                codes = ()
        status = 200 if edge.truncate else response.status
        planned = response.length // 2 if edge.truncate else response.length
        # Logged before answering, so a client holding its answer finds its request logged.
        app.record(
            request, status, fault=fault, error_codes=codes, bytes_sent=planned, started=started
        )
        self._send(response, ray_id, truncate=edge.truncate)

    def _send(
        self,
        response: Response,
        ray_id: str,
        *,
        truncate: Literal["honest", "lying"] | None = None,
    ) -> int:
        status = response.status
        chunks = response.body
        length = response.length
        if truncate is not None:
            whole = b"".join(chunks)
            chunks = (whole[: len(whole) // 2],)
            status = 200
            length = len(chunks[0]) if truncate == "honest" else len(whole)
        self.send_response(status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(length))
        if ray_id:
            self.send_header("cf-ray", ray_id)
        for name, value in response.headers:
            self.send_header(name, value)
        if truncate == "lying":
            self.send_header("Connection", "close")
        self.end_headers()
        sent = 0
        if self.command != "HEAD":
            for chunk in chunks:
                self.wfile.write(chunk)
                sent += len(chunk)
        if truncate == "lying":
            # The announced length was never sent: closing now is a connection lost mid-body.
            self.close_connection = True
        return sent


# --- the server --------------------------------------------------------------------------


class EmulatorServer:
    """A local Cloudflare Images API on a background thread; a context manager.

    ::

        with EmulatorServer(images=25_000, seed=7) as emu:
            requests.get(f"{emu.base_url}/accounts/{emu.account_id}/images/v2",
                         headers={"Authorization": f"Bearer {emu.api_token}"})

    The account id and credentials derive from ``seed`` unless given, so the same seed gives
    the same connection on every run.

    Several accounts, each with its own inventory and credentials::

        with EmulatorServer(images=500, accounts=3) as emu:
            for account in emu.accounts:    # EmulatorAccount: account_id, api_token, backend
                emu.connection_json(account_id=account.account_id)

    The first account is the primary one: ``account_id``, ``api_token``, ``backend`` and the
    rest are its. The faults (the rate limit among them) are the server's, shared by every
    account, as when one Cloudflare user holds them all.

    :param images: how many generated images to seed (in every account).
    :param seed: the generator seed (see :mod:`~.seed`); account ``n`` (from 0) uses
        ``seed + n``, so each account holds a different inventory.
    :param seed_file: a JSON / JSON Lines file of images to seed (kept as written), or one
        that names accounts (``{"accounts": {"<32-hex id>": [images]}}``; see
        :func:`~.seed.read_seed_inventories`), which are then the server's accounts.
    :param host: the interface to bind; loopback by default.
    :param port: the port; 0 picks a free one.
    :param account_id: the 32-hex account id.
    :param api_token: the accepted API token.
    :param email: the accepted email for the global API key.
    :param global_key: the accepted global API key.
    :param faults: a :class:`FaultPlan` to use (a new one otherwise).
    :param backend: an existing backend to serve (its inventory is kept; ``images`` and
        ``seed_file`` add to it).
    :param accounts: how many accounts to serve (ids derived from ``seed``), or their ids;
        the first is the primary (``account_id``, if given, must not contradict it).
    :param verbose: log each request to stderr.
    :param page_cap: the most images a List images V2 page holds, whatever ``per_page``
        asks for: 1000 by default, as the live docs say; 10000 (or ``None``) serves pages
        as large as ``per_page`` allows.
    """

    def __init__(
        self,
        images: int = 0,
        seed: int = 0,
        seed_file: str | Path | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        account_id: str | None = None,
        api_token: str | None = None,
        email: str | None = None,
        global_key: str | None = None,
        faults: FaultPlan | None = None,
        *,
        backend: ImagesBackend | None = None,
        accounts: int | Sequence[str] | None = None,
        verbose: bool = False,
        page_cap: int | None = DEFAULT_PAGE_CAP,
    ) -> None:
        if backend is not None and account_id is not None and backend.account_id != account_id:
            raise ValueError("account_id differs from the given backend's account_id")
        started = time.perf_counter()
        inventories = read_seed_inventories(seed_file) if seed_file is not None else {}
        account_ids = _account_ids(accounts, inventories, seed)
        first_given = backend.account_id if backend is not None else account_id
        if account_ids and first_given is not None and first_given.lower() != account_ids[0]:
            raise ValueError("account_id differs from the first of the accounts")
        if account_ids and account_id is None and backend is None:
            account_id = account_ids[0]
        account_id = backend.account_id if backend is not None else account_id
        account_id = (account_id or default_account_id(seed)).lower()
        defaults = default_credentials(account_id)
        self.credentials = Credentials(
            account_id=account_id,
            api_token=api_token or defaults.api_token,
            email=email or defaults.email,
            global_key=global_key or defaults.global_key,
        )
        self.backend = backend if backend is not None else ImagesBackend(account_id)
        first_images = inventories.get(None) or inventories.get(account_id)
        if first_images:
            self.backend.load(first_images)
        if images:
            self.backend.seed(images, seed)
        self.faults = faults if faults is not None else FaultPlan()
        self.app = EmulatorApp(self.backend, self.faults, self.credentials)
        self._httpd: _HTTPServer | None = None
        self._seed = seed
        for index, extra_id in enumerate(account_ids[1:], start=1):
            account = self.add_account(extra_id, images=images, seed=seed + index)
            if inventories.get(extra_id):
                account.backend.load(inventories[extra_id])
        #: seconds spent seeding
        self.seed_seconds = time.perf_counter() - started
        self.page_cap = page_cap
        self._host = host
        self._port = port
        self._thread: threading.Thread | None = None
        self.verbose = verbose

    # --- lifecycle ---------------------------------------------------------------------

    def start(self) -> EmulatorServer:
        """Bind and serve from a background thread; returns self."""
        if self._httpd is not None:
            return self
        httpd = _HTTPServer((self._host, self._port), self.app)
        httpd.verbose = self.verbose
        self._httpd = httpd
        self.app.base_url = self.base_url
        for account in self.app.accounts:
            account.backend.direct_upload_base_url = self._direct_upload_base_url(
                account.account_id
            )
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"cfimages-emulator-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, close open connections and release the port."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        # serve_forever notices a shutdown request only when select() returns: connecting
        # wakes it now instead of after the poll interval.
        stopper = threading.Thread(target=httpd.shutdown, daemon=True)
        stopper.start()
        host, port = httpd.server_address[:2]
        with contextlib.suppress(OSError), socket.create_connection((str(host), int(port)), 1):
            pass
        stopper.join()
        httpd.close_connections()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> EmulatorServer:
        return self.start()

    # --- accounts ----------------------------------------------------------------------

    def add_account(
        self,
        account_id: str | None = None,
        *,
        images: int = 0,
        seed: int | None = None,
        api_token: str | None = None,
        email: str | None = None,
        global_key: str | None = None,
    ) -> EmulatorAccount:
        """Serve one more account, with its own inventory and credentials (also while
        running).

        :param account_id: its 32-hex id; derived from the server's accounts so far when
            not given.
        :param images: how many generated images to seed into it.
        :param seed: the generator seed of its images (its position among the accounts by
            default, so accounts differ).
        :param api_token: the API token it accepts (derived from its id by default).
        :param email: the email it accepts with its global API key.
        :param global_key: the global API key it accepts.
        """
        index = len(self.app.accounts)
        account_id = (account_id or nth_account_id(self._seed, index)).lower()
        defaults = default_credentials(account_id)
        credentials = Credentials(
            account_id=account_id,
            api_token=api_token or defaults.api_token,
            email=email or defaults.email,
            global_key=global_key or defaults.global_key,
        )
        backend = ImagesBackend(account_id)
        if images:
            backend.seed(images, index if seed is None else seed)
        if self._httpd is not None:
            backend.direct_upload_base_url = self._direct_upload_base_url(account_id)
        return self.app.add_account(EmulatorAccount(credentials, backend))

    @property
    def accounts(self) -> list[EmulatorAccount]:
        """Every account served, the primary one first."""
        return list(self.app.accounts)

    def account(self, account_id: str) -> EmulatorAccount:
        """The served account with this id.

        :raises KeyError: no such account.
        """
        found = self.app.accounts.get(account_id)
        if found is None:
            raise KeyError(f"the emulator serves no account {account_id!r}")
        return found

    def _direct_upload_base_url(self, account_id: str) -> str:
        if account_id == self.account_id:
            return f"{self.origin}{CONTROL_ROOT}/direct_upload"
        return f"{self.origin}{CONTROL_ROOT}/accounts/{account_id}/direct_upload"

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def page_cap(self) -> int | None:
        """The most images a List images V2 page holds (settable; ``None`` for no cap)."""
        return self.app.page_cap

    @page_cap.setter
    def page_cap(self, value: int | None) -> None:
        if value is not None and not 1 <= value <= PER_PAGE_MAX:
            raise ValueError(f"page_cap must be 1..{PER_PAGE_MAX} or None; got {value!r}")
        self.app.page_cap = value

    @property
    def running(self) -> bool:
        """Whether the server is serving."""
        return self._httpd is not None

    # --- where and who ---------------------------------------------------------------

    def _bound(self) -> _HTTPServer:
        if self._httpd is None:
            raise RuntimeError("the emulator is not running: call start() or use 'with'")
        return self._httpd

    @property
    def host(self) -> str:
        """The bound interface."""
        return str(self._bound().server_address[0])

    @property
    def port(self) -> int:
        """The bound port."""
        return int(self._bound().server_address[1])

    @property
    def origin(self) -> str:
        """``http://HOST:PORT``."""
        host = self.host
        return f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"

    @property
    def base_url(self) -> str:
        """The API base URL (a connection's ``host``): ``http://HOST:PORT/client/v4``."""
        return f"{self.origin}{API_ROOT}"

    @property
    def batch_url(self) -> str:
        """The batch host's base URL (a connection's ``batch_base_url``): ``http://HOST:PORT/batch``."""
        return f"{self.origin}{BATCH_ROOT}"

    @property
    def batch(self) -> BatchTokens:
        """The batch host's tokens and rules (token lifetime, per-token rate)."""
        return self.app.batch

    @property
    def control_url(self) -> str:
        """The control API root: ``http://HOST:PORT/__emulator__``."""
        return f"{self.origin}{CONTROL_ROOT}"

    @property
    def account_id(self) -> str:
        """The account id (32 lowercase hex characters)."""
        return self.credentials.account_id

    @property
    def api_token(self) -> str:
        """A valid API token (``Authorization: Bearer ...``)."""
        return self.credentials.api_token

    @property
    def email(self) -> str:
        """The email that goes with :attr:`global_key` (``X-Auth-Email``)."""
        return self.credentials.email

    @property
    def global_key(self) -> str:
        """A valid global API key (``X-Auth-Key``)."""
        return self.credentials.global_key

    def auth_headers(
        self, auth_type: Literal["api_token", "api_key"] = "api_token"
    ) -> dict[str, str]:
        """Headers that authenticate a request, for either auth type."""
        if auth_type == "api_key":
            return {"X-Auth-Email": self.email, "X-Auth-Key": self.global_key}
        return {"Authorization": f"Bearer {self.api_token}"}

    def url(self, api_path: str = "") -> str:
        """The URL of an account path, e.g. ``url("/images/v2")``."""
        return f"{self.base_url}/accounts/{self.account_id}{api_path}"

    # --- request log -----------------------------------------------------------------

    @property
    def requests(self) -> list[RequestRecord]:
        """Every API request served so far (control API excluded), oldest first."""
        return self.app.records

    def reset_requests(self) -> None:
        """Forget the request log."""
        self.app.clear_records()

    # --- Airflow connection ----------------------------------------------------------

    def connection_json(
        self,
        auth_type: Literal["api_token", "api_key"] = "api_token",
        *,
        account_id: str | None = None,
    ) -> str:
        """The JSON form of a ``cloudflare_images`` Airflow connection to this emulator.

        :param auth_type: which credentials the connection carries.
        :param account_id: the account (the primary one by default).
        """
        account = self.account(account_id) if account_id else self.app.accounts.primary
        connection = account.connection(self.base_url, auth_type)
        connection["extra"]["batch_base_url"] = self.batch_url
        return json.dumps(connection)

    def account_connections(self, prefix: str = "cloudflare_images_account_") -> dict[str, str]:
        """A connection id (``<prefix>1``, ``<prefix>2``, ...) and its JSON for every account,
        in order.

        :param prefix: what each connection id starts with.
        """
        return {
            f"{prefix}{number}": self.connection_json(account_id=account.account_id)
            for number, account in enumerate(self.app.accounts, start=1)
        }

    def connection_uri_env(
        self, auth_type: Literal["api_token", "api_key"] = "api_token"
    ) -> dict[str, str]:
        """``{"AIRFLOW_CONN_CLOUDFLARE_IMAGES_DEFAULT": connection_json()}``."""
        return {"AIRFLOW_CONN_CLOUDFLARE_IMAGES_DEFAULT": self.connection_json(auth_type)}


def _account_ids(
    accounts: int | Sequence[str] | None,
    inventories: Mapping[str | None, Any],
    seed: int,
) -> list[str]:
    """The ids of the accounts to serve, from ``accounts`` or a seed file naming them."""
    named = [account_id for account_id in inventories if account_id is not None]
    if accounts is None:
        return named
    if named:
        raise ValueError("give accounts or a seed file that names accounts, not both")
    if isinstance(accounts, int) and not isinstance(accounts, bool):
        if accounts < 1:
            raise ValueError(f"accounts must be at least 1; got {accounts}")
        return [nth_account_id(seed, index) for index in range(accounts)]
    ids = [str(account_id).lower() for account_id in accounts]
    if not ids or len(set(ids)) != len(ids):
        raise ValueError(f"accounts must be distinct account ids; got {list(accounts)!r}")
    return ids


def iter_routes() -> Iterator[tuple[str, str, str]]:
    """``(method, path pattern, handler)`` for every route (for documentation)."""
    for route in ROUTES:
        prefix = "" if route.control else f"{API_ROOT}/accounts/{{account_id}}"
        for method, handler in route.methods.items():
            yield method, f"{prefix}{route.pattern}", handler
