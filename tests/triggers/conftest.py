"""The trigger tests use the sensor tests' emulator fixtures."""

from tests.sensors.conftest import _server_25k, emulator, emulator_25k, later

__all__ = ["_server_25k", "emulator", "emulator_25k", "later"]
