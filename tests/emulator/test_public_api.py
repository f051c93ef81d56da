"""The contract other modules code against, and the emulator's dependency boundary."""

from __future__ import annotations

import inspect
import subprocess
import sys
import textwrap

from airflow_provider_cfimages.emulator import EmulatorServer, FaultPlan, ImagesBackend


def test_emulator_server_takes_the_documented_arguments_in_order() -> None:
    parameters = list(inspect.signature(EmulatorServer).parameters.values())
    documented = [
        ("images", 0),
        ("seed", 0),
        ("seed_file", None),
        ("host", "127.0.0.1"),
        ("port", 0),
        ("account_id", None),
        ("api_token", None),
        ("email", None),
        ("global_key", None),
        ("faults", None),
    ]
    assert [(p.name, p.default) for p in parameters[: len(documented)]] == documented
    assert all(p.kind is p.KEYWORD_ONLY for p in parameters[len(documented) :])


def test_the_backend_and_fault_plan_have_the_documented_operations() -> None:
    for name in (
        "list_images_v2",
        "list_images_v1",
        "get_image",
        "update_image",
        "delete_image",
        "upload_image",
        "upload",
        "stats",
        "images_sorted",
        "reset",
    ):
        assert callable(getattr(ImagesBackend, name)), name
    assert isinstance(ImagesBackend.count, property)
    for name in (
        "rate_limit",
        "block_for",
        "fail_next",
        "drop_next",
        "truncate_next",
        "slow_next",
        "repeat_token",
        "clear",
    ):
        assert callable(getattr(FaultPlan, name)), name
    assert "path" in inspect.signature(FaultPlan.fail_next).parameters
    assert "on_request" in inspect.signature(FaultPlan.fail_next).parameters


def test_the_emulator_imports_only_the_standard_library_and_msgspec() -> None:
    script = textwrap.dedent(
        """
        import sys
        import msgspec  # with whatever msgspec itself needs
        before = set(sys.modules)
        import airflow_provider_cfimages.emulator
        import airflow_provider_cfimages.emulator.cli
        import airflow_provider_cfimages.emulator.__main__
        new = {name.split(".")[0] for name in set(sys.modules) - before}
        allowed = set(sys.stdlib_module_names) | {"airflow_provider_cfimages"}
        print(sorted(new - allowed))
        """
    )
    output = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout
    assert output.strip() == "[]"
