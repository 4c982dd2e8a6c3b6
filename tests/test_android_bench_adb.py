"""AdbRunner and `tfcompress bench --device adb:...` through the real adb client and server, against the
emulated device in tests/adb_device (its shell runs commands in a sandbox; benchmark_model there is the
edge runner behind a launcher)."""
import json
import os
import subprocess
import time

import pytest

from adb_device import FakeDevice
from adb_device.fixtures import ADB, adb_server, device, models  # noqa: F401  (fixtures)
from android_bench.adb import Adb
from android_bench.adb_runner import AdbRunner
from android_bench.errors import BinaryError
from android_bench.runners import BenchConfig, run_device
from tfcompress.cli import main as cli

FAST = ["--runs", "3", "--min_secs", "0", "--warmup_min_secs", "0"]


def _bench(capsys, *args):
    rc = cli(["bench", *args, *FAST])
    out, err = capsys.readouterr()
    return rc, out, err


def _runs(d):
    return [c for c in d.commands if "--graph=" in c]


def test_adb_basics_exit_codes_and_quoting(device, adb_server):
    adb = Adb(serial=device.serial)
    assert (device.serial, "device") in adb.devices()
    props = adb.properties()
    assert props["ro.product.model"] == "Pixel 7" and props["ro.product.cpu.abi"] == "arm64-v8a"
    assert adb.shell(["sh", "-c", "exit 7"]).returncode == 7
    nasty = "a b;touch pwned'$(touch pwned2)`touch pwned3`"
    r = adb.shell(["echo", nasty])
    assert (r.returncode, r.stdout) == (0, nasty + "\n")
    assert not any(n.startswith("pwned") for n in os.listdir(device.root))
    # sync RECV: pull a device file back
    with open(os.path.join(device.tmp, "blob.bin"), "wb") as f:
        f.write(bytes(range(256)) * 700)
    pulled = os.path.join(device.root, "pulled.bin")
    assert adb.run(["pull", "/data/local/tmp/blob.bin", pulled]).returncode == 0
    assert open(pulled, "rb").read() == bytes(range(256)) * 700
    runner = AdbRunner(adb, __file__)  # not an ELF file
    with pytest.raises(BinaryError, match="not an ELF"):
        runner.prepare([])


def test_end_to_end_injection_name_affinity_cleanup(device, models, tmp_path, capsys):
    out = tmp_path / "r.json"
    rc, table, err = _bench(capsys, models["dense"], models["evil"], "--device", f"adb:{device.serial}",
                            "--binary", models["binary"], "--delegate", "cpu,xnnpack", "--cpu_mask", "f0",
                            "--json", str(out))
    assert rc == 0, err
    results = json.loads(out.read_text())
    assert [(r["model"], r["delegate"]) for r in results] == [
        (models["dense"], "cpu"), (models["dense"], "xnnpack"), (models["evil"], "cpu"), (models["evil"], "xnnpack")]
    for r in results:
        assert r["ok"] and r["runner"] == "adb" and r["device"] == f"adb:{device.serial}"
        assert r["runs"] >= 3 and 0 < r["min_ms"] <= r["avg_ms"] <= r["max_ms"]
        assert r["p90_ms"] is not None and r["init_ms"] > 0 and r["mem_peak_mb"] > 0
    assert results[1]["delegated_nodes"] == results[1]["total_nodes"] == 2  # XNNPACK took both FCs
    assert results[0]["delegated_nodes"] in (0, None)
    assert device.taskset_masks() == ["f0"] * 4
    # the injection-named model was pushed under its own name and only ever an argument
    assert "/data/local/tmp/tfcompress/a b;rm -rf x'.tflite" in device.sends
    assert not os.path.exists(os.path.join(device.root, "x")) and os.path.isdir(device.tmp)
    assert device.files() == []  # everything pushed was removed
    assert "[4/4]" in err and "a b;rm -rf x'.tflite" in table
    assert table.splitlines()[0] == f"adb:{device.serial}: Pixel 7 (Tensor G2, arm64-v8a, SDK 34)"


def test_push_skipped_when_size_matches_with_keep(device, models):
    adb = Adb(serial=device.serial)
    cfg = BenchConfig(runs=2, min_secs=0, warmup_min_secs=0)
    first = AdbRunner(adb, models["binary"], keep=True)
    assert run_device(first, [models["dense"]], [cfg])[0].ok
    assert device.sends == ["/data/local/tmp/tfcompress/benchmark_model", "/data/local/tmp/tfcompress/dense.tflite"]
    second = AdbRunner(adb, models["binary"], keep=False)
    assert run_device(second, [models["dense"]], [cfg])[0].ok
    assert len(device.sends) == 2  # nothing pushed again: remote sizes matched
    assert device.files() == sorted(["/data/local/tmp/tfcompress/benchmark_model",
                                     "/data/local/tmp/tfcompress/dense.tflite"])  # second never pushed them


def test_push_compares_content_when_sizes_match(device, tmp_path):
    adb = Adb(serial=device.serial)
    a, b = tmp_path / "a.tflite", tmp_path / "b.tflite"
    a.write_bytes(b"\x01" * 1000)
    b.write_bytes(b"\x02" * 1000)  # a retrained model: same size, other weights
    remote = "/data/local/tmp/t/m.tflite"
    assert adb.push(str(a), remote) is True
    assert adb.push(str(a), remote) is False
    assert adb.push(str(b), remote) is True
    assert open(device.map_path(remote), "rb").read() == b"\x02" * 1000


def test_wrong_abi_is_refused_before_running(device, models, tmp_path, capsys):
    device.props.update({"ro.product.cpu.abi": "x86_64", "ro.product.cpu.abilist": "x86_64,x86"})
    out = tmp_path / "r.json"
    rc, table, err = _bench(capsys, models["dense"], "--device", f"adb:{device.serial}",
                            "--binary", models["binary"], "--json", str(out))
    assert rc == 1 and not out.exists() and _runs(device) == []
    line = err.strip().splitlines()[-1]
    assert line.startswith("tfcompress: error:") and "built for arm64-v8a" in line and "x86_64" in line
    assert "Traceback" not in err


def test_storage_full_fails_model_pushes_and_reports(device, models, tmp_path, capsys):
    device.fail_push = ".tflite"
    out = tmp_path / "r.json"
    rc, table, err = _bench(capsys, models["dense"], "--device", f"adb:{device.serial}", "--binary",
                            models["binary"], "--json", str(out))
    assert rc == 1
    [r] = json.loads(out.read_text())
    assert r["ok"] is False and "No space left on device" in r["error"] and "push" in r["error"]


def test_binary_not_executable_stops_the_device(device, models, tmp_path, capsys):
    device.noexec = True
    out = tmp_path / "r.json"
    rc, table, err = _bench(capsys, models["dense"], models["conv"], "--device", f"adb:{device.serial}",
                            "--binary", models["binary"], "--json", str(out))
    assert rc == 1
    results = json.loads(out.read_text())
    assert len(results) == 2 and not any(r["ok"] for r in results)
    assert all("cannot run" in r["error"] and "Permission denied" in r["error"] for r in results)
    assert len(_runs(device)) == 1  # no point trying the second model


def test_model_load_and_delegate_failures_are_per_configuration(device, models, tmp_path, capsys):
    out = tmp_path / "r.json"
    rc, table, err = _bench(capsys, models["broken"], models["dense"], "--device", f"adb:{device.serial}",
                            "--binary", models["binary"], "--delegate", "gpu,xnnpack", "--json", str(out),
                            "--cooldown", "0.05")
    assert rc == 1
    # cool-down: a baseline reading, then one after each rest between the 4 runs
    assert sum("/sys/class/thermal/thermal_zone*/temp" in c for c in device.commands) == 4
    got = {(os.path.basename(r["model"]), r["delegate"]): r for r in json.loads(out.read_text())}
    assert "Failed to load model" in got["broken.tflite", "xnnpack"]["error"]
    assert got["dense.tflite", "gpu"]["error"].startswith("Failed to apply GPU delegate")
    assert got["dense.tflite", "xnnpack"]["ok"] and got["dense.tflite", "xnnpack"]["avg_ms"] > 0


def test_hung_run_is_killed_at_timeout(device, models, tmp_path, capsys):
    device.hang = True
    out = tmp_path / "r.json"
    start = time.monotonic()
    rc, table, err = _bench(capsys, models["dense"], "--device", f"adb:{device.serial}", "--binary",
                            models["binary"], "--timeout", "2", "--json", str(out))
    assert rc == 1 and time.monotonic() - start < 20
    [r] = json.loads(out.read_text())
    assert r["error"] == "timed out after 2 s; benchmark_model was killed"
    time.sleep(0.3)
    assert all(p.poll() is not None for p in device._procs)  # the sleeping "benchmark_model" is gone
    assert any("kill -9 $(cat " in c for c in device.commands)
    assert device.files() == []


def test_device_gone_mid_run_keeps_finished_results(device, models, tmp_path, capsys):
    device.vanish_on = "conv.tflite"
    out, csv = tmp_path / "r.json", tmp_path / "r.csv"
    rc, table, err = _bench(capsys, models["dense"], models["conv"], "--device", f"adb:{device.serial}",
                            "--binary", models["binary"], "--json", str(out), "--csv", str(csv))
    assert rc == 1
    dense, conv = json.loads(out.read_text())
    assert dense["ok"] and dense["avg_ms"] > 0
    assert conv["ok"] is False and "disconnected" in conv["error"]
    assert len(csv.read_text().splitlines()) == 3


def test_thermal_readings_over_adb(device, models):
    runner = AdbRunner(Adb(serial=device.serial), models["binary"])
    assert sorted(runner.temperatures()) == [39000, 41000]


def test_all_devices_in_parallel(device, adb_server, models, tmp_path, capsys):
    other = FakeDevice(props={"ro.product.model": "Galaxy S23", "ro.soc.model": "SM8550"})
    try:
        subprocess.run([ADB, "-P", str(adb_server), "connect", other.serial], capture_output=True, timeout=30)
        out = tmp_path / "r.json"
        rc, table, err = _bench(capsys, models["dense"], "--device", "adb:all", "--binary", models["binary"],
                                "--threads", "1,2", "--json", str(out))
        assert rc == 0, err
        results = json.loads(out.read_text())
        assert sorted((r["device"], r["threads"]) for r in results) == sorted(
            (f"adb:{d.serial}", t) for d in (device, other) for t in (1, 2))
        assert all(r["ok"] for r in results)
        assert len(_runs(device)) == len(_runs(other)) == 2
    finally:
        subprocess.run([ADB, "-P", str(adb_server), "disconnect", other.serial], capture_output=True, timeout=30)
        other.close()
