"""Errors of the benchmark harness. `tfcompress bench` turns them into one line on stderr."""


class BenchError(Exception):
    """Something the user can fix: a missing tool, a wrong binary, a bad device name."""


class DeviceError(BenchError):
    """The device refused a step (push, shell); the device itself is still there."""


class FatalDeviceError(BenchError):
    """No further run can succeed on this device: every remaining configuration fails with this."""


class DeviceGoneError(FatalDeviceError):
    """The device disconnected (unplugged, rebooted, adb lost it)."""


class BinaryError(FatalDeviceError):
    """The benchmark_model binary cannot run on the device (wrong ABI, not executable)."""
