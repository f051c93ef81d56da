"""Requests a metadata-filtered listing saves: server-side ``meta_filters`` against listing
everything and filtering in the client, on an emulated account where 1% of the images match.

Run::

    PYTHONPATH=. python benchmarks/meta_filter_requests.py --images 100000

Prints one JSON line: the images matched and the list requests each way took.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
from collections.abc import Iterator
from typing import Any

from airflow_provider_cfimages.emulator import EmulatorServer
from airflow_provider_cfimages.emulator.backend import ImagesBackend
from airflow_provider_cfimages.hooks.images import CloudflareImagesHook

START = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)


def inventory(count: int) -> Iterator[dict[str, Any]]:
    """``count`` images, one in a hundred with ``meta.tenant`` ``acme``."""
    for n in range(count):
        uploaded = (START + dt.timedelta(seconds=n)).isoformat(timespec="milliseconds")
        yield {
            "id": f"img-{n:07d}",
            "filename": f"{n}.jpg",
            "uploaded": uploaded.replace("+00:00", "Z"),
            "meta": {"tenant": "acme" if n % 100 == 0 else f"t{n % 37}", "n": n},
        }


def list_requests(emu: EmulatorServer) -> int:
    return sum(1 for record in emu.requests if record.api_path.endswith("/images/v2"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=100_000)
    args = parser.parse_args()
    backend = ImagesBackend("0" * 32)
    backend.load(inventory(args.images))
    with EmulatorServer(backend=backend) as emu:  # pages of 1000 images, as the API's
        os.environ["AIRFLOW_CONN_CLOUDFLARE_IMAGES_DEFAULT"] = emu.connection_json()
        hook = CloudflareImagesHook()
        filtered = hook.list_images(meta_filters={"tenant": "acme"})
        with_filter = list_requests(emu)
        emu.reset_requests()
        client_side = [
            image
            for image in hook.iter_images()
            if (image.get("meta") or {}).get("tenant") == "acme"
        ]
        without_filter = list_requests(emu)
    assert [i["id"] for i in filtered] == [i["id"] for i in client_side]
    print(
        json.dumps(
            {
                "images": args.images,
                "matched": len(filtered),
                "requests_with_meta_filters": with_filter,
                "requests_listing_all": without_filter,
                "requests_saved": without_filter - with_filter,
            }
        )
    )


if __name__ == "__main__":
    main()
