"""The provider registers with Airflow: entry point, provider info schema, connection form."""

from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path

import jsonschema

import airflow_provider_cfimages
from airflow_provider_cfimages.get_provider_info import get_provider_info
from airflow_provider_cfimages.hooks.connection import _KNOWN_EXTRAS
from airflow_provider_cfimages.hooks.images import CloudflareImagesHook


def test_entry_point_resolves_to_get_provider_info() -> None:
    (entry,) = [
        ep
        for ep in metadata.entry_points(group="apache_airflow_provider")
        if ep.value.startswith("airflow_provider_cfimages")
    ]
    assert entry.load() is get_provider_info


def test_provider_info_matches_airflows_schema() -> None:
    import airflow

    schema_path = Path(airflow.__file__).parent / "provider_info.schema.json"
    schema = json.loads(schema_path.read_text())
    jsonschema.validate(get_provider_info(), schema)


def test_provider_info_declares_the_connection_form() -> None:
    info = get_provider_info()
    (conn,) = info["connection-types"]
    assert conn["connection-type"] == "cloudflare_images"
    assert conn["hook-name"] == "Cloudflare Images"
    assert conn["hook-class-name"].endswith("hooks.images.CloudflareImagesHook")
    assert set(conn["conn-fields"]) == _KNOWN_EXTRAS
    assert conn["conn-fields"]["auth_type"]["schema"]["enum"] == ["api_token", "api_key"]
    behaviour = conn["ui-field-behaviour"]
    assert set(behaviour["hidden-fields"]) == {"schema", "port"}
    assert behaviour["relabeling"] == {
        "host": "API base URL",
        "login": "Account email (API key auth only)",
        "password": "API token or global API key",
    }
    assert behaviour["placeholders"]["host"] == "https://api.cloudflare.com/client/v4"
    assert info["versions"] == [airflow_provider_cfimages.__version__]


def test_every_declared_module_imports() -> None:
    import importlib

    info = get_provider_info()
    for section in ("hooks", "operators", "sensors", "triggers"):
        for entry in info[section]:
            for module in entry["python-modules"]:
                importlib.import_module(module)


def test_providers_manager_registers_hook_and_form() -> None:
    from airflow.providers_manager import ProvidersManager

    manager = ProvidersManager()
    assert "airflow-provider-cfimages" in manager.providers
    hook_info = manager.hooks["cloudflare_images"]
    assert hook_info is not None
    assert hook_info.hook_class_name == f"{CloudflareImagesHook.__module__}.CloudflareImagesHook"
    assert hook_info.connection_id_attribute_name == "cloudflare_images_conn_id"
    if not _airflow_reads_conn_fields():
        return  # 3.1 builds forms only with the FAB provider installed (see the README).
    widgets = manager.connection_form_widgets
    for field in ("account_id", "auth_type", "timeout", "max_retries"):
        assert f"extra__cloudflare_images__{field}" in widgets
    behaviour = manager.field_behaviours["cloudflare_images"]
    assert behaviour["relabeling"]["host"] == "API base URL"
    assert behaviour["placeholders"]["extra__cloudflare_images__account_id"]


def test_hook_form_behaviour_mirrors_provider_info() -> None:
    # Airflow 3.1 asks the hook; 3.2+ reads get_provider_info. Both must agree.
    behaviour = CloudflareImagesHook.get_ui_field_behaviour()
    (conn,) = get_provider_info()["connection-types"]
    assert behaviour["hidden_fields"] == conn["ui-field-behaviour"]["hidden-fields"]
    assert behaviour["relabeling"] == conn["ui-field-behaviour"]["relabeling"]


def _airflow_reads_conn_fields() -> bool:
    """Airflow 3.2+ builds forms from ``conn-fields``; 3.1 needs the FAB provider for widgets."""
    from airflow import __version__ as airflow_version
    from packaging.version import Version

    return Version(airflow_version) >= Version("3.2")
