"""Which path object opens an inventory, and what opening a local one costs."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from airflow.sdk import ObjectStoragePath

from airflow_provider_cfimages.inventory.location import protocol_of, storage_path


def test_plain_paths_open_with_pathlib_and_uris_with_object_storage() -> None:
    assert storage_path("/data/cf/images.jsonl") == Path("/data/cf/images.jsonl")
    for uri in ("file:///data/cf/images.jsonl", "s3://aws_default@bucket/cf/images.jsonl"):
        path = storage_path(uri)
        assert isinstance(path, ObjectStoragePath), uri
        assert str(path) == uri


def test_protocol_of_a_plain_path_is_file() -> None:
    assert protocol_of("/data/x.jsonl") == "file"
    assert protocol_of("S3://bucket/x.jsonl") == "s3"


def test_a_local_export_and_read_back_load_no_provider_filesystem(tmp_path: Path) -> None:
    # ObjectStoragePath would import every provider's filesystem first (boto3 for amazon).
    script = textwrap.dedent(
        f"""
        import sys
        from airflow_provider_cfimages.inventory.reader import InventoryReader, InventorySource
        from airflow_provider_cfimages.inventory.writer import InventoryTarget, InventoryWriter

        target = InventoryTarget.parse({str(tmp_path / "out.jsonl.gz")!r})
        with InventoryWriter(target) as writer:
            writer.write_page([{{"id": "a"}}, {{"id": "b"}}])
            written = writer.commit()
        source = InventorySource.parse(written.path, parameter="path")
        ids = [record["id"] for record in InventoryReader(source).records()]
        print(written.path, ids, "boto3" in sys.modules, "s3fs" in sys.modules)
        """
    )
    run = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    # The last line: Airflow may log its own lines to stdout first.
    assert run.stdout.splitlines()[-1].split() == [
        str(tmp_path / "out.jsonl.gz"),
        "['a',",
        "'b']",
        "False",
        "False",
    ]
