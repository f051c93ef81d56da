"""End-to-end checks of the ``cloudflare_images`` connection form in Airflow's own UI.

A real ``airflow api-server`` (see ``conftest.py``) serves the metadata the React UI builds
the form from, and a headless Debian chromium renders that form.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow_provider_cfimages.get_provider_info import CONN_TYPE, HOOK_NAME
from tests.ui.conftest import UI_TIMEOUT_MS, ApiServer

if TYPE_CHECKING:
    from playwright.sync_api import Locator, Page

RELABELLED_STANDARD_FIELDS = {
    "host": "API base URL",
    "login": "Account email (API key auth only)",
    "password": "API token or global API key",
}
HIDDEN_STANDARD_FIELDS = ("url_schema", "port")  # "schema" is called url_schema in hook_meta
EXTRA_FIELD_LABELS = {
    "account_id": "Account ID",
    "auth_type": "Auth type",
    "timeout": "Read timeout (seconds)",
    "max_retries": "Max retries",
    "max_requests_per_minute": "Max requests per minute",
    "rate_limit_reserve": "Rate-limit reserve",
    "batch_base_url": "Batch API base URL",
}
AIRFLOW_DEFAULT_LABELS = ("Host", "Login", "Password", "Port", "Schema")


def _cloudflare_hook_meta(api_server: ApiServer) -> dict[str, Any]:
    response = api_server.get("/ui/connections/hook_meta")
    assert response.status_code == 200, response.text[:500]
    by_type = {entry["connection_type"]: entry for entry in response.json()}
    assert CONN_TYPE in by_type, f"{CONN_TYPE} missing; types served: {sorted(by_type)}"
    return by_type[CONN_TYPE]


def test_hook_meta_lists_cloudflare_images_fields(api_server: ApiServer) -> None:
    """The UI's connection metadata carries our relabelled, hidden and extra fields."""
    meta = _cloudflare_hook_meta(api_server)

    assert meta["hook_name"] == HOOK_NAME == "Cloudflare Images"
    assert meta["hook_class_name"] == "airflow_provider_cfimages.hooks.images.CloudflareImagesHook"
    standard = meta["standard_fields"]
    for field, title in RELABELLED_STANDARD_FIELDS.items():
        assert standard[field]["hidden"] is False, field
        assert standard[field]["title"] == title, field
    assert standard["host"]["placeholder"] == "https://api.cloudflare.com/client/v4"
    for field in HIDDEN_STANDARD_FIELDS:
        assert standard[field]["hidden"] is True, field

    extra = meta["extra_fields"]
    assert set(extra) == set(EXTRA_FIELD_LABELS)
    for field, label in EXTRA_FIELD_LABELS.items():
        assert extra[field]["schema"]["title"] == label, field
        assert extra[field]["description"], field
    assert extra["auth_type"]["schema"]["enum"] == ["api_token", "api_key"]
    assert extra["auth_type"]["value"] == "api_token"
    assert extra["account_id"]["schema"]["pattern"] == "^[0-9a-fA-F]{32}$"
    assert (extra["timeout"]["value"], extra["max_retries"]["value"]) == (60, 5)
    assert "integer" in extra["max_retries"]["schema"]["type"]
    assert "number" in extra["max_requests_per_minute"]["schema"]["type"]
    assert "number" in extra["rate_limit_reserve"]["schema"]["type"]
    assert extra["rate_limit_reserve"]["value"] == 0.1
    assert "batch.imagedelivery.net" in extra["batch_base_url"]["description"]


def _open_add_connection_form(page: Page, api_server: ApiServer) -> Locator:
    page.goto(f"{api_server.base_url}/connections")
    page.get_by_role("button", name="Add Connection").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_role("heading", name="Add Connection").wait_for()
    return dialog


def _choose_connection_type(page: Page, dialog: Locator, hook_name: str) -> None:
    """Type the name into the react-select and click the option once it is listed.

    The option list arrives from hook_meta asynchronously; pressing Enter before it has
    arrived selects nothing, so wait for the exact option instead.

    :param page: The browser page.
    :param dialog: The add-connection dialog.
    :param hook_name: The connection type's display name.
    """
    dialog.get_by_role("combobox", name="Connection Type").fill(hook_name)
    page.get_by_role("option", name=hook_name, exact=True).click()


def _expand_section(dialog: Locator, title: str) -> Locator:
    """Open one accordion section (opening one closes the others) and return its body.

    :param dialog: The add-connection dialog.
    :param title: The section's title, e.g. "Extra Fields".
    """
    trigger = dialog.get_by_role("button", name=title, exact=True)
    if trigger.get_attribute("aria-expanded") != "true":
        trigger.click()
    # The trigger's id holds the title, spaces included, which breaks aria-labelledby naming
    # of the region; aria-controls names the body unambiguously.
    section = dialog.locator(f"[id='{trigger.get_attribute('aria-controls')}']")
    section.wait_for(state="visible")
    return section


def _assert_labels_visible(section: Locator, labels: Iterable[str]) -> None:
    from playwright.sync_api import expect

    for label in labels:
        expect(section.get_by_text(label, exact=True)).to_be_visible(timeout=UI_TIMEOUT_MS)


def test_add_connection_form_renders_custom_fields(
    chromium_path: str, api_server: ApiServer, browser_page: Page, tmp_path: Path
) -> None:
    """Choosing Cloudflare Images in the add-connection form shows our fields and labels.

    ``chromium_path`` comes first so a missing browser skips (or fails, in CI) before the
    API server is started for nothing.
    """
    from playwright.sync_api import expect

    dialog = _open_add_connection_form(browser_page, api_server)
    _choose_connection_type(browser_page, dialog, HOOK_NAME)

    standard = _expand_section(dialog, "Standard Fields")
    _assert_labels_visible(standard, RELABELLED_STANDARD_FIELDS.values())
    for default_label in AIRFLOW_DEFAULT_LABELS:
        expect(standard.get_by_text(default_label, exact=True)).to_have_count(0)
    browser_page.screenshot(path=tmp_path / "cloudflare_images_form_standard.png", full_page=True)

    extra = _expand_section(dialog, "Extra Fields")
    _assert_labels_visible(extra, EXTRA_FIELD_LABELS.values())
    expect(extra.get_by_label("Read timeout (seconds)")).to_have_value("60")
    expect(extra.get_by_label("Max retries")).to_have_value("5")
    screenshot = tmp_path / "cloudflare_images_form.png"
    browser_page.screenshot(path=screenshot, full_page=True)
    assert screenshot.stat().st_size > 10_000  # a real rendering, not an empty page

    extra.get_by_role("combobox", name="Auth type").click()
    for auth_type in ("api_token", "api_key"):
        expect(browser_page.get_by_role("option", name=auth_type, exact=True)).to_be_visible()
