"""The command line: start it as a process, read what it prints, use it, stop it."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import requests

from airflow_provider_cfimages.emulator.cli import build_parser

REPO = Path(__file__).resolve().parents[2]
STARTUP_SECONDS = 60


@contextmanager
def cli(*args: str) -> Iterator[tuple[subprocess.Popen[str], dict[str, str]]]:
    """Run the emulator CLI on a free port; yield the process and its ``name: value`` lines."""
    process = subprocess.Popen(
        [sys.executable, "-m", "airflow_provider_cfimages.emulator", "--port", "0", *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    printed: dict[str, str] = {}
    try:
        assert process.stdout is not None
        for line in process.stdout:
            line = line.rstrip("\n")
            if line.startswith("export "):
                name, _, value = line[len("export ") :].partition("=")
                printed[name] = shlex.split(value)[0]
            elif match := re.match(r"^(\w+): (.+)$", line):
                printed[match.group(1)] = match.group(2)
            if line.startswith("Press Ctrl-C"):
                break
        else:
            raise AssertionError(f"the CLI exited early: {process.stderr.read()}")  # type: ignore[union-attr]
        yield process, printed
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def page_through(printed: dict[str, str], headers: dict[str, str], per_page: int) -> list[Any]:
    url = f"{printed['base_url']}/accounts/{printed['account_id']}/images/v2"
    images: list[Any] = []
    params: dict[str, Any] = {"per_page": per_page}
    with requests.Session() as session:
        session.headers.update(headers)
        while True:
            result = session.get(url, params=params, timeout=10).json()["result"]
            images.extend(result["images"])
            if result["continuation_token"] is None:
                return images
            params["continuation_token"] = result["continuation_token"]


def test_the_cli_prints_its_credentials_serves_both_auth_modes_and_stops_on_sigterm() -> None:
    with cli("--images", "120", "--seed", "3") as (process, printed):
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/client/v4", printed["base_url"])
        assert re.fullmatch(r"[0-9a-f]{32}", printed["account_id"])
        connection = json.loads(printed["AIRFLOW_CONN_CLOUDFLARE_IMAGES_DEFAULT"])
        assert connection == {
            "conn_type": "cloudflare_images",
            "host": printed["base_url"],
            "password": printed["api_token"],
            "extra": {
                "account_id": printed["account_id"],
                "batch_base_url": printed["batch_base_url"],
            },
        }
        assert printed["batch_base_url"] == printed["base_url"].replace("/client/v4", "/batch")
        by_token = page_through(printed, {"Authorization": f"Bearer {printed['api_token']}"}, 50)
        by_key = page_through(
            printed, {"X-Auth-Email": printed["email"], "X-Auth-Key": printed["global_key"]}, 10
        )
        assert len(by_token) == 120
        assert by_key == by_token
        unauthenticated = requests.get(
            f"{printed['base_url']}/accounts/{printed['account_id']}/images/v2"
        )
        assert unauthenticated.status_code == 400
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
        assert process.stdout is not None
        assert "stopped" in process.stdout.read()


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_can_page_through_the_cli_emulator() -> None:
    with cli("--images", "25", "--seed", "1") as (_process, printed):
        url = f"{printed['base_url']}/accounts/{printed['account_id']}/images/v2?per_page=10"
        auth = f"Authorization: Bearer {printed['api_token']}"
        first = json.loads(subprocess.check_output(["curl", "-sS", "-H", auth, url], timeout=10))
        token = first["result"]["continuation_token"]
        second = json.loads(
            subprocess.check_output(
                ["curl", "-sS", "-H", auth, f"{url}&continuation_token={token}"], timeout=10
            )
        )
        assert len(first["result"]["images"]) == len(second["result"]["images"]) == 10


def test_the_cli_applies_rate_limit_fail_rate_and_page_cap_flags() -> None:
    with cli(
        "--images", "30", "--rate-limit", "2/60", "--retry-after", "9", "--page-cap", "12"
    ) as (_process, printed):
        headers = {"Authorization": f"Bearer {printed['api_token']}"}
        url = f"{printed['base_url']}/accounts/{printed['account_id']}/images/v2"
        first = requests.get(url, params={"per_page": 20}, headers=headers, timeout=10)
        assert len(first.json()["result"]["images"]) == 12
        requests.get(url, headers=headers, timeout=10)
        limited = requests.get(url, headers=headers, timeout=10)
        assert (limited.status_code, limited.headers["Retry-After"]) == (429, "9")
    with cli("--fail-rate", "1", "--fail-statuses", "503") as (_process, printed):
        headers = {"Authorization": f"Bearer {printed['api_token']}"}
        url = f"{printed['base_url']}/accounts/{printed['account_id']}/images/v1/stats"
        assert requests.get(url, headers=headers, timeout=10).status_code == 503


def test_the_cli_seeds_from_a_file_with_the_given_credentials(tmp_path: Path) -> None:
    seed_file = tmp_path / "images.jsonl"
    seed_file.write_text(
        '{"id": "one", "uploaded": "2024-01-01T00:00:00.000Z", "custom": true}\n'
        '{"id": "two", "uploaded": "2024-01-02T00:00:00.000Z"}\n'
    )
    token = "T" * 40
    with cli("--seed-file", str(seed_file), "--account-id", "a" * 32, "--token", token) as (
        _process,
        printed,
    ):
        assert (printed["account_id"], printed["api_token"]) == ("a" * 32, token)
        images = page_through(printed, {"Authorization": f"Bearer {token}"}, 10)
        assert images == [
            {"id": "two", "uploaded": "2024-01-02T00:00:00.000Z"},
            {"id": "one", "uploaded": "2024-01-01T00:00:00.000Z", "custom": True},
        ]


def test_the_cli_exits_2_when_the_port_is_taken() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "airflow_provider_cfimages.emulator", "--port", str(port)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=STARTUP_SECONDS,
        )
    assert result.returncode == 2
    assert "cfimages-emulator:" in result.stderr


@pytest.mark.parametrize(
    "argv",
    [
        ["--account-id", "NOT-HEX"],
        ["--rate-limit", "lots"],
        ["--fail-rate", "2"],
        ["--fail-statuses", "200"],
    ],
)
def test_the_cli_rejects_bad_arguments(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        build_parser().parse_args(argv)
    assert caught.value.code == 2


def test_the_cli_binds_loopback_by_default() -> None:
    assert build_parser().parse_args([]).host == "127.0.0.1"
    assert build_parser().parse_args([]).port == 8787
