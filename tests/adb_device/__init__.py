"""An Android device emulated in Python for the adb tests: it speaks the adb wire protocol on TCP
(`adb connect 127.0.0.1:PORT`), so the real adb client and server drive it."""
from .emulator import FakeDevice, make_elf

__all__ = ["FakeDevice", "make_elf"]
