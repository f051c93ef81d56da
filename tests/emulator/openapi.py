"""Validate emulator responses against Cloudflare's Images OpenAPI schema (tests/data).

The reference is an OpenAPI 3.0 document; :class:`OpenAPIResponses` turns it into JSON
Schema and validates a response body against the schema the document gives for an
operation and status. Where the document contradicts itself or the live API, the fix is
made here, explicitly, and listed in :data:`SCHEMA_CORRECTIONS`:

- ``nullable: true`` (OpenAPI 3.0) becomes a ``"null"`` type (JSON Schema);
- image ids: ``maxLength: 32``, yet the document's own example id (a UUID) has 36
  characters and custom ids may have 1024 (``images_image_direct_upload_request_v2``): the
  limit is raised to 1024;
- ``errors`` of the failure envelope has ``minLength: 1``, which JSON Schema ignores on
  arrays: it becomes ``minItems: 1``;
- error codes have ``minimum: 1000``, but the API gateway's rate-limit code is 971
  (DESIGN.md; public reports of 429 responses): 971 is allowed as well;
- every "4XX" response is ``allOf: [<the success envelope>, <the failure envelope>]``,
  which no body can satisfy (``success`` would have to be both true and false, ``result``
  both an object and null): error bodies are validated against the failure member,
  ``images_api-response-common-failure``, after checking that it is one of the allOf.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from jsonschema import Draft202012Validator, FormatChecker
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

SPEC_PATH = Path(__file__).resolve().parents[1] / "data" / "cloudflare-images-openapi.json"
_BASE = "urn:cloudflare-images-openapi"
FAILURE_REF = "#/components/schemas/images_api-response-common-failure"
SCHEMA_CORRECTIONS = (
    "nullable -> null type",
    "image id maxLength 32 -> 1024",
    "errors minLength -> minItems",
    "error code 971 allowed below the minimum of 1000",
    "4XX allOf -> its failure member",
)

_FORMATS = FormatChecker()


@_FORMATS.checks("uri", raises=ValueError)
def _is_uri(value: object) -> bool:
    # jsonschema checks "uri" only with an optional package; the variant URLs need checking.
    if not isinstance(value, str):
        return True
    parts = urlsplit(value)
    if not (parts.scheme in ("http", "https") and parts.netloc) or any(c.isspace() for c in value):
        raise ValueError(f"not an absolute http(s) URI: {value!r}")
    return True


def _to_json_schema(node: Any) -> Any:
    """OpenAPI 3.0 schema objects -> JSON Schema, recursively (refs made absolute)."""
    if isinstance(node, list):
        return [_to_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    converted = {key: _to_json_schema(value) for key, value in node.items()}
    ref = converted.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        converted["$ref"] = f"{_BASE}{ref}"
    if converted.pop("nullable", False):
        kind = converted.get("type")
        if isinstance(kind, str):
            converted["type"] = [kind, "null"]
        if "enum" in converted and None not in converted["enum"]:
            converted["enum"] = [*converted["enum"], None]
    if "minLength" in converted and converted.get("type") != "string" and "allOf" in converted:
        converted["minItems"] = converted.pop("minLength")
    return converted


def _correct(spec: dict[str, Any]) -> None:
    schemas = spec["components"]["schemas"]
    code = schemas["images_messages"]["items"]["properties"]["code"]
    assert code == {"minimum": 1000, "type": "integer"}, code
    schemas["images_messages"]["items"]["properties"]["code"] = {
        "type": "integer",
        "anyOf": [{"minimum": 1000}, {"const": 971}],
    }
    schemas["images_image_identifier"]["maxLength"] = 1024
    direct = schemas["images_image_direct_upload_response_v2"]["allOf"][1]
    direct["properties"]["result"]["properties"]["id"]["maxLength"] = 1024


@dataclass
class OpenAPIResponses:
    """The response schemas of the reference document."""

    spec: dict[str, Any]
    registry: Registry

    @classmethod
    def load(cls, path: Path = SPEC_PATH) -> OpenAPIResponses:
        raw = json.loads(path.read_text(encoding="utf-8"))
        spec = copy.deepcopy(raw)
        _correct(spec)
        spec = _to_json_schema(spec)
        resource = Resource.from_contents(spec, default_specification=DRAFT202012)
        return cls(spec, Registry().with_resource(_BASE, resource))

    def schema(self, path: str, method: str, status: int) -> dict[str, Any]:
        """The JSON Schema of one response (``status`` >= 400 means the failure schema)."""
        responses = self.spec["paths"][path][method.lower()]["responses"]
        if status < 400:
            schema: dict[str, Any] = responses[str(status)]["content"]["application/json"]["schema"]
            return schema
        members = responses["4XX"]["content"]["application/json"]["schema"]["allOf"]
        refs = [member.get("$ref") for member in members]
        assert f"{_BASE}{FAILURE_REF}" in refs, f"{method} {path}: 4XX has no failure member"
        return {"$ref": f"{_BASE}{FAILURE_REF}"}

    def validate(self, body: Any, path: str, method: str, status: int) -> None:
        """Raise ``jsonschema.ValidationError`` unless ``body`` fits the documented schema."""
        validator = Draft202012Validator(
            self.schema(path, method, status), registry=self.registry, format_checker=_FORMATS
        )
        validator.validate(body)

    def literal_4xx_schema(self, path: str, method: str) -> dict[str, Any]:
        """The document's 4XX schema as written (no correction), to show it is unsatisfiable."""
        responses = self.spec["paths"][path][method.lower()]["responses"]
        schema: dict[str, Any] = responses["4XX"]["content"]["application/json"]["schema"]
        return schema
