"""The CPU a measurement ran on, and what it means for int8 against float32.

Whether a full-int8 file runs faster than its float32 twin is a property of the CPU as much as of the
model: XNNPACK's int8 kernels win where the CPU multiplies int8 pairs and accumulates in one instruction
(ARM's dotprod, x86's AVX512-VNNI or AVX-VNNI) and gain little where it cannot (AVX2 alone widens int8
to int16 first). `describe()` gathers the facts once (for summary.json and the reports), `line(facts)`
says them in one line. Reads /proc/cpuinfo, else `lscpu`; imports nothing heavy.

>>> line({"cpu": "Cortex-A76", "arch": "aarch64", "cores": 8, "features": ["NEON", "dotprod"],
...       "int8": "int8 should be faster than float32 here."})
'Cortex-A76 (aarch64, 8 cores; NEON, dotprod). int8 should be faster than float32 here.'
"""
import os
import platform
import subprocess

# (flag as /proc/cpuinfo or lscpu spells it, the name people know), in the order they are printed
FEATURES = (("avx2", "AVX2"), ("avx512_vnni", "AVX512-VNNI"), ("avx_vnni", "AVX-VNNI"),
            ("neon", "NEON"), ("asimd", "NEON"), ("asimddp", "dotprod"))
_NAME_KEYS = ("model name", "Model name", "Hardware", "Model", "Processor", "cpu model")


def _cpuinfo():
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def _lscpu():
    try:
        return subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


def _fields(text):
    """{key: value} of `key : value` lines; the first occurrence of a key wins (one CPU is enough)."""
    out = {}
    for row in text.splitlines():
        key, sep, value = row.partition(":")
        if sep and key.strip() and key.strip() not in out:
            out[key.strip()] = value.strip()
    return out


def _name(fields):
    return next((fields[k] for k in _NAME_KEYS if fields.get(k)), None)


def cpu_name():
    """The CPU model as /proc/cpuinfo (or `lscpu`) names it; the platform's processor or machine elsewhere."""
    return _name(_fields(_cpuinfo())) or _name(_fields(_lscpu())) or platform.processor() or platform.machine()


def cpu_features(flags=None):
    """The CPU features that decide int8 speed, by the names people know (`AVX2`, `AVX512-VNNI`,
    `AVX-VNNI`, `NEON`, `dotprod`), in that order.

    Args:
      flags: the CPU's flags (`/proc/cpuinfo`'s `flags` or `Features` words). Defaults to `None`: this CPU's.

    >>> cpu_features("fp asimd evtstrm aes crc32 atomics asimddp")
    ['NEON', 'dotprod']
    >>> cpu_features("fpu sse2 avx avx2 fma")
    ['AVX2']
    """
    if flags is None:
        fields = _fields(_cpuinfo())
        flags = fields.get("flags") or fields.get("Features")
        if flags is None:
            fields = _fields(_lscpu())
            flags = fields.get("Flags", "")
        if platform.machine().lower() in ("aarch64", "arm64"):
            flags += " asimd"  # Advanced SIMD is mandatory on 64-bit ARM
    words = set(str(flags).lower().split())
    return list(dict.fromkeys(name for flag, name in FEATURES if flag in words))


def int8_note(features):
    """One sentence on what the features mean for int8 against float32.

    >>> int8_note(["AVX2"])[:47]
    'int8 may be no faster than float32 on this CPU:'
    """
    vnni = [f for f in features if f.endswith("VNNI")]
    if vnni:
        return (f"int8 should be faster than float32 on this CPU: {' and '.join(vnni)} multiply int8 pairs and "
                "accumulate in one instruction, as NEON dotprod does on phones.")
    if "dotprod" in features:
        return ("int8 should be faster than float32 on this CPU: NEON dotprod multiplies int8 pairs and "
                "accumulates in one instruction, as on most phones since 2018.")
    if "NEON" in features:
        return ("int8 is usually faster than float32 on NEON without dotprod, by less than on phones that have "
                "it.")
    if "AVX2" in features:
        return ("int8 may be no faster than float32 on this CPU: AVX2 has no int8 dot-product instruction; "
                "int8 wins on phones (NEON dotprod) and on AVX512-VNNI / AVX-VNNI hosts.")
    return ("this CPU has none of the int8 instructions XNNPACK uses (NEON dotprod, VNNI): int8 may be slower "
            "than float32 here; measure on the target device.")


def describe():
    """This machine's facts: `{"cpu", "arch", "cores", "features", "int8"}` (JSON-ready)."""
    features = cpu_features()
    return {"cpu": cpu_name(), "arch": platform.machine(), "cores": os.cpu_count(), "features": features,
            "int8": int8_note(features)}


def line(facts):
    """`describe()`'s facts as one line: the CPU, its relevant features, and the int8 sentence."""
    features = ", ".join(facts.get("features") or []) or "no int8 dot-product feature"
    cores = facts.get("cores")
    where = ", ".join(str(x) for x in (facts.get("arch"), f"{cores} cores" if cores else None) if x)
    head = f"{facts.get('cpu') or 'unknown CPU'} ({where}; {features})"
    return f"{head}. {facts['int8']}" if facts.get("int8") else head
