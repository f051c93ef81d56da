"""Several accounts in one emulator: own inventories, own credentials, over real HTTP."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests

from airflow_provider_cfimages.emulator import EmulatorServer
from airflow_provider_cfimages.hooks.images import CloudflareImagesHook
from tests.emulator.test_cli import cli, page_through


def list_all(emu: EmulatorServer, account_id: str, headers: dict[str, str]) -> list[str]:
    url = f"{emu.base_url}/accounts/{account_id}/images/v2"
    response = requests.get(url, params={"per_page": 10_000}, headers=headers, timeout=10)
    response.raise_for_status()
    return [image["id"] for image in response.json()["result"]["images"]]


def test_each_account_has_its_own_inventory_and_credentials() -> None:
    with EmulatorServer(images=300, seed=5, accounts=3) as emu:
        accounts = emu.accounts
        assert len({account.account_id for account in accounts}) == 3
        assert accounts[0].account_id == emu.account_id
        assert accounts[0].backend is emu.backend
        assert len({account.api_token for account in accounts}) == 3
        inventories = [
            set(list_all(emu, a.account_id, a.auth_headers("api_key"))) for a in accounts
        ]
        assert [len(ids) for ids in inventories] == [300, 300, 300]
        assert not inventories[0] & inventories[1]
        assert not inventories[1] & inventories[2]
        assert inventories[2] == set(accounts[2].backend.ids_sorted())

        # Valid credentials of another account: 10000, as the API gateway answers.
        other = requests.get(
            emu.url("/images/v2"), headers=accounts[1].auth_headers(), timeout=10
        ).json()
        assert other["errors"] == [{"code": 10000, "message": "Authentication error"}]
        unknown = requests.get(
            emu.url("/images/v2"), headers={"Authorization": "Bearer " + "x" * 40}, timeout=10
        ).json()
        assert [error["code"] for error in unknown["errors"]] == [9109]


def test_the_same_seed_gives_the_same_accounts_and_connections_reach_each(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with EmulatorServer(images=120, seed=9, accounts=2) as emu:
        again = EmulatorServer(images=120, seed=9, accounts=2)
        assert [a.account_id for a in again.accounts] == [a.account_id for a in emu.accounts]
        assert [a.backend.ids_sorted() for a in again.accounts] == [
            a.backend.ids_sorted() for a in emu.accounts
        ]
        connections = emu.account_connections()
        assert list(connections) == ["cloudflare_images_account_1", "cloudflare_images_account_2"]
        for (conn_id, connection), account in zip(connections.items(), emu.accounts, strict=True):
            assert json.loads(connection)["extra"]["account_id"] == account.account_id
            monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", connection)
            hook = CloudflareImagesHook(conn_id)
            try:
                listed = [image["id"] for image in hook.iter_images()]
            finally:
                hook.close()
            assert sorted(listed) == sorted(account.backend.ids_sorted())


def test_accounts_added_while_running_change_independently() -> None:
    with EmulatorServer(images=50, seed=1) as emu:
        added = emu.add_account("b" * 32, images=20, api_token="B" * 40)
        assert emu.account("B" * 32) is added
        victim = added.backend.ids_sorted()[0]
        url = f"{emu.base_url}/accounts/{'b' * 32}/images/v1/{victim}"
        deleted = requests.delete(url, headers=added.auth_headers(), timeout=10)
        assert deleted.status_code == 200
        assert (emu.backend.count, added.backend.count) == (50, 19)

        # A direct upload to the second account completes into that account.
        made = requests.post(
            f"{emu.base_url}/accounts/{'b' * 32}/images/v2/direct_upload",
            headers=added.auth_headers(),
            timeout=10,
        ).json()["result"]
        done = requests.post(made["uploadURL"], files={"file": ("cat.png", b"\x89PNG")}, timeout=10)
        assert done.status_code == 200
        assert made["id"] in added.backend
        assert made["id"] not in emu.backend

        requests.post(f"{emu.control_url}/reset", timeout=10).raise_for_status()
        assert (emu.backend.count, added.backend.count) == (50, 20)
        with pytest.raises(ValueError, match="already serves account"):
            emu.add_account("b" * 32)


def test_a_seed_file_names_the_accounts_and_their_images(tmp_path: Path) -> None:
    seed_file = tmp_path / "accounts.json"
    first, second = "1" * 32, "2" * 32
    seed_file.write_text(
        json.dumps(
            {
                "accounts": {
                    first: [{"id": "a", "uploaded": "2024-01-01T00:00:00.000Z"}],
                    second: [
                        {"id": "b", "uploaded": "2024-01-02T00:00:00.000Z"},
                        {"id": "c", "uploaded": "2024-01-03T00:00:00.000Z", "meta": {"k": 1}},
                    ],
                }
            }
        )
    )
    emu = EmulatorServer(seed_file=seed_file)
    assert [a.account_id for a in emu.accounts] == [first, second]
    assert [a.backend.ids_sorted() for a in emu.accounts] == [["a"], ["b", "c"]]

    with cli("--seed-file", str(seed_file)) as (_process, printed):
        assert (printed["account_1_id"], printed["account_2_id"]) == (first, second)
        assert (printed["account_1_images"], printed["account_2_images"]) == ("1", "2")
        connection = json.loads(printed["AIRFLOW_CONN_CLOUDFLARE_IMAGES_ACCOUNT_2"])
        assert connection["extra"] == {
            "account_id": second,
            "batch_base_url": printed["batch_base_url"],
        }
        images = page_through(
            {"base_url": printed["base_url"], "account_id": second},
            {"Authorization": f"Bearer {connection['password']}"},
            10,
        )
        assert [image["id"] for image in images] == ["c", "b"]


def test_the_cli_serves_n_accounts_with_a_connection_line_each() -> None:
    with cli("--accounts", "3", "--images", "40", "--seed", "2") as (_process, printed):
        for number in (1, 2, 3):
            connection = json.loads(printed[f"AIRFLOW_CONN_CLOUDFLARE_IMAGES_ACCOUNT_{number}"])
            assert connection["host"] == printed["base_url"]
            assert connection["password"] == printed[f"account_{number}_api_token"]
            account_id = printed[f"account_{number}_id"]
            assert connection["extra"] == {
                "account_id": account_id,
                "batch_base_url": printed["batch_base_url"],
            }
            printed_for = {"base_url": printed["base_url"], "account_id": account_id}
            headers = {"Authorization": f"Bearer {connection['password']}"}
            assert len(page_through(printed_for, headers, 25)) == 40
        # The first account is also the default connection.
        default = json.loads(printed["AIRFLOW_CONN_CLOUDFLARE_IMAGES_DEFAULT"])
        assert default["extra"]["account_id"] == printed["account_1_id"] == printed["account_id"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"accounts": 0}, "accounts must be at least 1"),
        ({"accounts": ["a" * 32, "A" * 32]}, "accounts must be distinct account ids"),
        ({"accounts": ["a" * 32], "account_id": "c" * 32}, "account_id differs from the first"),
    ],
)
def test_bad_account_arguments_are_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        EmulatorServer(**kwargs)  # type: ignore[arg-type]


def test_a_seed_file_naming_accounts_and_an_account_count_conflict(tmp_path: Path) -> None:
    seed_file = tmp_path / "accounts.json"
    seed_file.write_text(json.dumps({"accounts": {"1" * 32: []}}))
    with pytest.raises(ValueError, match="not both"):
        EmulatorServer(seed_file=seed_file, accounts=2)
    seed_file.write_text(json.dumps({"accounts": {"not-hex": []}}))
    with pytest.raises(ValueError, match="'not-hex' is not 32 lowercase hex"):
        EmulatorServer(seed_file=seed_file)


def test_a_batch_token_opens_only_the_account_it_was_issued_for() -> None:
    with EmulatorServer(images=20, seed=3, accounts=2) as emu:
        first, second = emu.accounts
        issued = requests.get(
            f"{emu.base_url}/accounts/{second.account_id}/images/v1/batch_token",
            headers=second.auth_headers(),
            timeout=10,
        )
        token = issued.json()["result"]["token"]
        batch = {"Authorization": f"Bearer {token}"}
        victim = second.backend.ids_sorted()[0]
        deleted = requests.delete(f"{emu.batch_url}/images/v1/{victim}", headers=batch, timeout=10)
        assert deleted.ok
        assert victim not in second.backend.ids_sorted()
        assert len(first.backend.ids_sorted()) == 20
        # The first account's images are out of the token's reach: 5404, as for any other id.
        other = first.backend.ids_sorted()[0]
        refused = requests.get(f"{emu.batch_url}/images/v1/{other}", headers=batch, timeout=10)
        assert refused.status_code == 404
        assert other in first.backend.ids_sorted()
