"""``python -m airflow_provider_cfimages.emulator``: run the emulator from a shell."""

from __future__ import annotations

import sys

from airflow_provider_cfimages.emulator.cli import main

if __name__ == "__main__":
    sys.exit(main())
