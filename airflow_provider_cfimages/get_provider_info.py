"""Provider metadata that Airflow reads through the ``apache_airflow_provider`` entry point.

Airflow 3.2 and newer build the connection form from ``conn-fields`` and
``ui-field-behaviour`` here, without importing the hook; 3.1 asks the hook's
``get_connection_form_widgets()`` / ``get_ui_field_behaviour()``, which return the same
definitions (see :mod:`airflow_provider_cfimages.hooks.images`).
"""

from __future__ import annotations

from typing import Any

from airflow_provider_cfimages import __version__

DEFAULT_BASE_URL = "https://api.cloudflare.com/client/v4"
DEFAULT_BATCH_BASE_URL = "https://batch.imagedelivery.net"
CONN_TYPE = "cloudflare_images"
DEFAULT_CONN_ID = "cloudflare_images_default"
HOOK_NAME = "Cloudflare Images"

CONN_FIELDS: dict[str, dict[str, Any]] = {
    "account_id": {
        "label": "Account ID",
        "schema": {"type": ["string", "null"], "pattern": "^[0-9a-fA-F]{32}$"},
        "description": "The 32-character Cloudflare account id (Dashboard > Images > Overview).",
    },
    "auth_type": {
        "label": "Auth type",
        "schema": {
            "type": ["string", "null"],
            "default": "api_token",
            "enum": ["api_token", "api_key"],
        },
        "description": "api_token: an API token with Images Read (and Edit to delete or update). "
        "api_key: the global API key with the account email in Login.",
    },
    "timeout": {
        "label": "Read timeout (seconds)",
        "schema": {"type": ["number", "null"], "default": 60},
        "description": "How long to wait for one response; large list pages need tens of seconds.",
    },
    "max_retries": {
        "label": "Max retries",
        "schema": {"type": ["integer", "null"], "default": 5},
        "description": "Retries of one request on 429, 5xx, timeouts and broken responses.",
    },
    "max_requests_per_minute": {
        "label": "Max requests per minute",
        "schema": {"type": ["number", "null"]},
        "description": "Optional client-side budget; Cloudflare allows 1200 requests per 5 "
        "minutes per user, shared by every client of that user.",
    },
    "rate_limit_reserve": {
        "label": "Rate-limit reserve",
        "schema": {"type": ["number", "null"], "default": 0.1, "minimum": 0, "maximum": 0.9},
        "description": "Fraction of Cloudflare's rate-limit quota (read from the Ratelimit "
        "headers) left for the account's other clients: once only that much is left, requests "
        "wait for the window to reset. 0 to 0.9; default 0.1.",
    },
    "batch_base_url": {
        "label": "Batch API base URL",
        "schema": {"type": ["string", "null"]},
        "description": "Host of the Images batch API, used for bulk deletes outside the "
        f"account's rate limit; default {DEFAULT_BATCH_BASE_URL} (set it for a proxy or "
        "the emulator).",
    },
}

UI_FIELD_BEHAVIOUR: dict[str, Any] = {
    "hidden-fields": ["schema", "port"],
    "relabeling": {
        "host": "API base URL",
        "login": "Account email (API key auth only)",
        "password": "API token or global API key",
    },
    "placeholders": {
        "host": DEFAULT_BASE_URL,
        "login": "you@example.com (leave empty for an API token)",
        "password": "API token (or the global API key)",
        "account_id": "023e105f4ecef8ad9ca31a8372d0c353",
        "auth_type": "api_token",
        "timeout": "60",
        "max_retries": "5",
        "rate_limit_reserve": "0.1",
        "batch_base_url": DEFAULT_BATCH_BASE_URL,
    },
}


def get_provider_info() -> dict[str, Any]:
    """Describe the provider, its hook and its connection type to Airflow."""
    return {
        "package-name": "airflow-provider-cfimages",
        "name": "Cloudflare Images",
        "description": "Export, reconcile, clean up and wait for images in Cloudflare Images.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": "Cloudflare Images",
                "external-doc-url": "https://developers.cloudflare.com/images/",
                "tags": ["service"],
            }
        ],
        "hooks": [
            {
                "integration-name": "Cloudflare Images",
                "python-modules": ["airflow_provider_cfimages.hooks.images"],
            }
        ],
        "operators": [
            {
                "integration-name": "Cloudflare Images",
                "python-modules": ["airflow_provider_cfimages.operators.images"],
            }
        ],
        "sensors": [
            {
                "integration-name": "Cloudflare Images",
                "python-modules": ["airflow_provider_cfimages.sensors.images"],
            }
        ],
        "triggers": [
            {
                "integration-name": "Cloudflare Images",
                "python-modules": ["airflow_provider_cfimages.triggers.images"],
            }
        ],
        "connection-types": [
            {
                "hook-class-name": "airflow_provider_cfimages.hooks.images.CloudflareImagesHook",
                "hook-name": HOOK_NAME,
                "connection-type": CONN_TYPE,
                "conn-fields": CONN_FIELDS,
                "ui-field-behaviour": UI_FIELD_BEHAVIOUR,
            }
        ],
    }
