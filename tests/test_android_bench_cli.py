"""`tfcompress bench` on the local device, its outputs and its input checks; LocalRunner; cool-down."""
import json
import os
import stat
import subprocess
import sys
import time

import pytest

from adb_device.fixtures import models  # noqa: F401  (fixture)
from android_bench import report
from android_bench.results import FIELDS, BenchResult
from android_bench.runners import BenchConfig, LocalRunner, Runner, cool_down, run_device
from tfcompress.cli import main as cli

FAST = ["--runs", "3", "--min_secs", "0", "--warmup_min_secs", "0"]
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_import_does_not_load_tensorflow():
    code = ("import sys, android_bench, android_bench.runners, android_bench.adb_runner, android_bench.ssh_runner, "
            "android_bench.report, android_bench.edge_runner, tfcompress.commands.bench\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'tf_keras', 'keras')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_local_matrix_outputs_and_compare(models, tmp_path, capsys):
    j, c, p = tmp_path / "r.json", tmp_path / "r.csv", tmp_path / "r.png"
    rc = cli(["bench", models["conv"], models["dense"], "--threads", "1,2", "--delegate", "cpu,xnnpack",
              "--json", str(j), "--csv", str(c), "--plot", str(p), "--compare", *FAST])
    out, err = capsys.readouterr()
    assert rc == 0, err
    results = report.from_json(j.read_text())
    assert [(os.path.basename(r.model), r.threads, r.delegate) for r in results] == [
        (m, t, d) for m in ("conv.tflite", "dense.tflite") for t in (1, 2) for d in ("cpu", "xnnpack")]
    for r in results:
        assert r.ok and r.runner == "local" and r.device == "local" and r.runs >= 3
        assert r.min_ms <= r.p50_ms <= r.p90_ms <= r.p95_ms <= r.p99_ms <= r.max_ms
        assert r.min_ms <= r.avg_ms <= r.max_ms and r.std_ms >= 0 and r.first_ms > 0 and r.init_ms > 0
        assert r.total_nodes == (3 if "conv" in r.model else 2)
        assert r.delegated_nodes == (r.total_nodes if r.delegate == "xnnpack" else 0)
    rows = c.read_text().splitlines()
    assert rows[0].split(",") == list(FIELDS) and len(rows) == 9
    assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    lines = out.splitlines()
    assert lines[0].startswith("local: ") and "int8" in lines[0]   # the CPU, its features, what they mean
    assert lines[1].split()[:4] == ["model", "device", "thr", "delegate"] and "vs conv.tflite" in lines[1]
    assert all(line.split()[-2] == "reference" for line in lines[3:7])  # the first model is the reference
    ratios = report.compare_ratios(results)
    for dense, conv, row, d in zip(results[4:], results[:4], lines[7:11], json.loads(j.read_text())[4:]):
        assert ratios[id(dense)] == pytest.approx(dense.p50_ms / conv.p50_ms)   # medians, not means
        assert d["vs_first"]["ratio"] == pytest.approx(ratios[id(dense)]) and d["vs_first"]["of"] == "p50_ms"
        assert d["vs_first"]["text"] == report.ratio_text(ratios[id(dense)]) in row
        assert row.split()[-2] in ("slower", "faster", "same")
    assert lines[11].startswith("vs conv.tflite: median (p50) latency")
    assert err.count("\n") >= 8 and "[8/8]" in err  # not a tty: one line per run


@pytest.mark.parametrize("argv,message", [
    (["missing.tflite"], "model not found: missing.tflite"),
    (["{dense}", "--threads", "0"], "threads and runs must be >= 1"),
    (["{dense}", "--threads", "one"], "--threads must be a comma-separated list"),
    (["{dense}", "--delegate", "tpu"], "--delegate must be among cpu, xnnpack, gpu, nnapi. Got: tpu"),
    (["{dense}", "--json", "{dense}"], "would overwrite"),
    (["{dense}", "--csv", "/no/such/dir/r.csv"], "output folder does not exist"),
    (["{dense}", "--device", "bluetooth:x"], "--device must be local, adb"),
    (["{dense}", "--device", "adb:1.2.3.4:5", "--adb", "/no/adb"], "adb at /no/adb is not an executable"),
    (["{notflite}"], "is not a .tflite file"),
    (["{dense}", "--cpu_mask", "zz"], "--cpu_mask must be hexadecimal"),
    (["{dense}", "--target_ci", "-1"], "target_ci must be >= 0"),
    (["{dense}", "--max_secs", "0"], "max_secs must be > 0"),
    (["{dense}", "--device", "adb:1.2.3.4:5", "--target_ci", "1"], "--target_ci works on local and ssh"),
])
def test_bad_input_is_one_line_no_output(models, tmp_path, capsys, argv, message):
    notflite = tmp_path / "x.tflite"
    notflite.write_bytes(b"hello world, not flatbuffers")
    argv = [a.format(dense=models["dense"], notflite=notflite) for a in argv]
    before = open(models["dense"], "rb").read()
    rc = cli(["bench", *argv, "--json", str(tmp_path / "o.json")] if "--json" not in argv else ["bench", *argv])
    out, err = capsys.readouterr()
    assert rc == 1 and out == ""
    assert err.count("\n") == 1 and err.startswith("tfcompress: error: ") and message in err
    assert not (tmp_path / "o.json").exists()
    assert open(models["dense"], "rb").read() == before


def test_output_written_atomically_and_replaced(models, tmp_path, capsys):
    j = tmp_path / "r.json"
    j.write_text("old")
    assert cli(["bench", models["dense"], "--json", str(j), *FAST]) == 0
    assert json.loads(j.read_text())[0]["ok"] is True
    assert sorted(os.listdir(tmp_path)) == ["r.json"]  # no temporary left behind


def test_local_delegate_failure_is_per_configuration(models, tmp_path, capsys):
    j = tmp_path / "r.json"
    rc = cli(["bench", models["dense"], "--delegate", "gpu,nnapi,cpu", "--json", str(j), *FAST])
    capsys.readouterr()
    gpu, nnapi, cpu = json.loads(j.read_text())
    assert rc == 1
    assert gpu["error"].startswith("Failed to apply GPU delegate") and nnapi["error"].startswith(
        "Failed to apply NNAPI delegate")
    assert cpu["ok"] and cpu["avg_ms"] > 0


def test_local_hung_run_is_killed_at_timeout(models, tmp_path, capsys):
    j = tmp_path / "r.json"
    start = time.monotonic()
    rc = cli(["bench", models["dense"], models["conv"], "--min_secs", "60", "--timeout", "2", "--json", str(j)])
    capsys.readouterr()
    assert rc == 1 and time.monotonic() - start < 15  # both killed at 2 s, not run for 60 s
    dense, conv = json.loads(j.read_text())
    assert dense["error"] == conv["error"] == "timed out after 2 s; the run was killed"


def test_local_runs_until_the_confidence_interval_is_reached(models):
    base = dict(runs=5, min_secs=0.2, warmup_min_secs=0)
    plain = LocalRunner().run(models["conv"], BenchConfig(**base))
    assert plain.ok and 0 < plain.ci95_ms < plain.max_ms  # printed whenever there are >= 20 runs
    # an impossible target: runs go on to --max_secs, and the interval is still reported
    start = time.monotonic()
    capped = LocalRunner().run(models["conv"], BenchConfig(**base, target_ci=1e-6, max_secs=1.5))
    assert capped.ok and time.monotonic() - start >= 1.5 and capped.runs > plain.runs
    assert capped.ci95_ms > 1e-8 * capped.avg_ms
    # an easy one stops as soon as --num_runs and --min_secs are met
    easy = LocalRunner().run(models["conv"], BenchConfig(**base, target_ci=50, max_secs=30))
    assert easy.ok and easy.ci95_ms <= 0.5 * easy.avg_ms and easy.runs < 3 * plain.runs


def test_local_runner_broken_model_and_cpu_mask(models):
    cfg = BenchConfig(runs=1, min_secs=0, warmup_min_secs=0)
    r = LocalRunner().run(models["broken"], cfg)
    assert not r.ok and r.error.startswith("Failed to load model")
    before = os.sched_getaffinity(0)
    pinned = LocalRunner(cpu_mask="0x1")
    assert pinned.cpus == {0} and pinned.run(models["dense"], cfg).ok
    assert os.sched_getaffinity(0) == before  # restored after the run
    with pytest.raises(Exception, match="selects none"):
        LocalRunner(cpu_mask="10000000000000000")  # CPU 64


class _Hot(Runner):
    """A device that cools by 2 °C per reading."""
    device = "hot"

    def __init__(self):
        self.temp = 50000

    def temperatures(self):
        self.temp -= 2000
        return [self.temp, 30000]


def test_cool_down_waits_for_temperature():
    now = [0.0]
    hot = _Hot()
    waited = cool_down(hot, 1.0, baseline=[41000], sleep=lambda s: now.__setitem__(0, now[0] + s),
                       clock=lambda: now[0])
    assert hot.temp == 42000  # within 1 °C of the start, then stop
    assert waited == pytest.approx(4.0)
    now[0] = 0.0
    assert cool_down(hot, 2.0, baseline=[], sleep=lambda s: now.__setitem__(0, now[0] + s),
                     clock=lambda: now[0]) == pytest.approx(2.0)  # unreadable: only the rest
    assert cool_down(hot, 0, baseline=[1]) == 0.0


def test_progress_bar_on_tty_and_lines_otherwise():
    import io

    class Tty(io.StringIO):
        def isatty(self):
            return True
    def result():
        return BenchResult(model="/m/a.tflite", device="local", threads=1, delegate="cpu", avg_ms=1.5)
    tty, plain = Tty(), io.StringIO()
    for stream in (tty, plain):
        prog = report.Progress(2, stream=stream)
        prog(result())
        prog(result().failed("boom"))
    assert "\r[###############...............] 1/2 a.tflite local thr=1 cpu: 1.500 ms" in tty.getvalue()
    assert tty.getvalue().endswith("\n")
    assert plain.getvalue().splitlines() == ["[1/2] a.tflite local thr=1 cpu: 1.500 ms",
                                             "[2/2] a.tflite local thr=1 cpu: failed"]


def _fake_ssh(tmp_path):
    """ssh/scp stand-ins: the 'board' is a local folder, commands run with /bin/sh like sshd would."""
    ssh, scp = tmp_path / "ssh", tmp_path / "scp"
    ssh.write_text('#!/bin/sh\nwhile [ "$1" = "-o" ]; do shift 2; done\nshift\nexec /bin/sh -c "$1"\n')
    scp.write_text('#!/bin/sh\nwhile [ "${1#-}" != "$1" ]; do [ "$1" = "-o" ] && shift; shift; done\n'
                   'exec cp "$1" "${2#*:}"\n')
    for f in (ssh, scp):
        f.chmod(f.stat().st_mode | stat.S_IEXEC)
    return str(ssh), str(scp)


def test_ssh_runner_with_stand_in_clients(models, tmp_path):
    from android_bench.ssh_runner import SshRunner
    ssh, scp = _fake_ssh(tmp_path)
    board = tmp_path / "board"
    runner = SshRunner("pi@board", python=sys.executable, ssh=ssh, scp=scp, remote_dir=str(board))
    results = run_device(runner, [models["evil"], models["broken"]],
                         [BenchConfig(runs=2, min_secs=0, warmup_min_secs=0, delegate="xnnpack")])
    evil, broken = results
    assert evil.ok and evil.runner == "ssh" and evil.device == "ssh:pi@board" and evil.avg_ms > 0
    assert evil.p99_ms is not None and evil.delegated_nodes == 2
    assert not broken.ok and "Failed to load model" in broken.error
    assert not board.exists()  # cleaned up
