"""Which Android ABI an ELF binary is built for, from its header alone."""
import struct

from android_bench.errors import BinaryError

# e_machine -> (ABI for 64-bit class, ABI for 32-bit class)
_MACHINES = {183: ("arm64-v8a", None), 40: (None, "armeabi-v7a"), 62: ("x86_64", None), 3: (None, "x86"),
             243: ("riscv64", None), 8: ("mips64", "mips")}


def elf_abi(path):
    """The Android ABI name of the ELF file at `path` (e.g. "arm64-v8a").

    Raises:
      BinaryError: the file is missing, not an ELF file, or for a machine Android does not run.
    """
    try:
        with open(path, "rb") as f:
            head = f.read(20)
    except OSError as e:
        raise BinaryError(f"cannot read the benchmark binary {path}: {e.strerror}") from None
    if len(head) < 20 or head[:4] != b"\x7fELF":
        raise BinaryError(f"{path} is not an ELF executable; pass the benchmark_model binary built for the "
                          "device (e.g. android_aarch64_benchmark_model)")
    bits64 = head[4] == 2
    machine = struct.unpack("<H" if head[5] == 1 else ">H", head[18:20])[0]
    abi = _MACHINES.get(machine, (None, None))[0 if bits64 else 1]
    if abi is None:
        raise BinaryError(f"{path} is an ELF file for machine {machine} ({'64' if bits64 else '32'}-bit), "
                          "which no Android ABI matches")
    return abi


def check_abi(path, device_abis, device="the device"):
    """Raises BinaryError unless the binary's ABI is one the device runs (its ro.product.cpu.abilist)."""
    abi = elf_abi(path)
    if abi not in device_abis:
        raise BinaryError(f"{path} is built for {abi} but {device} runs {', '.join(device_abis)}; "
                          f"use the benchmark_model built for {device_abis[0]}")
    return abi
