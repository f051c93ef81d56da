"""A local, faithful Cloudflare Images API for tests, demos and benchmarks (what moto is to AWS).

::

    from airflow_provider_cfimages.emulator import EmulatorServer

    with EmulatorServer(images=25_000, seed=7) as emu:
        emu.base_url        # http://127.0.0.1:PORT/client/v4
        emu.account_id      # 32 hex characters
        emu.api_token       # Authorization: Bearer ...
        emu.backend         # ImagesBackend: the inventory, usable without HTTP
        emu.faults          # FaultPlan: 429s, 5xx pages, dropped connections, ...

    with EmulatorServer(images=500, accounts=3) as emu:    # several accounts
        emu.accounts        # [EmulatorAccount]: account_id, api_token, backend, ...

From a shell: ``python -m airflow_provider_cfimages.emulator --images 25000 --seed 7``
(or ``cfimages-emulator``). Depends only on the standard library and msgspec.
"""

from __future__ import annotations

from airflow_provider_cfimages.emulator.accounts import EmulatorAccount
from airflow_provider_cfimages.emulator.backend import ImagesBackend
from airflow_provider_cfimages.emulator.faults import FaultPlan, FaultRule
from airflow_provider_cfimages.emulator.server import EmulatorServer, RequestRecord

__all__ = [
    "EmulatorAccount",
    "EmulatorServer",
    "FaultPlan",
    "FaultRule",
    "ImagesBackend",
    "RequestRecord",
]
