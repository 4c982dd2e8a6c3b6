"""A fake Android device on 127.0.0.1 that speaks the adb transport protocol.

Protocol (AOSP system/core/adb: protocol.txt, SYNC.TXT, shell_protocol.h):
- messages are a 24-byte header (command, arg0, arg1, data_length, data_crc32, magic = ~command), then
  the payload; CNXN answers the host's CNXN (no AUTH asked, so the client skips key exchange);
- OPEN(local, 0, "service") -> OKAY(ours, local); each WRTE is acknowledged by an OKAY, and a writer
  waits for that OKAY before its next WRTE; CLSE ends a stream;
- `shell,v2,...:CMD`: packets [id u8][len u32][data], id 0 stdin, 1 stdout, 2 stderr, 3 exit, 4 close stdin;
- `sync:`: requests [id 4 bytes][len u32][data]: STAT / LST2 / STA2, SEND "path,mode" + DATA* + DONE(mtime)
  answered OKAY or FAIL, RECV -> DATA* DONE, LIST -> DENT* DONE, QUIT.

The shell runs commands with /bin/sh in a sandbox: /data/local/tmp is a temporary folder, `getprop`
answers from a dict, `taskset` is recorded and skipped. A pushed ELF binary for the device's ABI
becomes a launcher (padded to the same size) that runs android_bench/edge_runner.py, so
"benchmark_model" works. Faults: `fail_push` (storage full), `vanish_on` (disconnect mid-run),
`hang` (benchmark never ends), `noexec` (pushed files never executable), `props` (another ABI).
"""
import hashlib
import os
import shlex
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import threading

from .transport import CHUNK, FEATURES, Connection

EDGE_RUNNER = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                           "android_bench", "edge_runner.py")
ELF_MACHINES = {"arm64-v8a": (2, 183), "armeabi-v7a": (1, 40), "x86_64": (2, 62), "x86": (1, 3)}


def make_elf(path, abi="arm64-v8a", size=4096):
    """Writes an ELF header for `abi` padded to `size` bytes (what the host-side ABI check reads)."""
    cls, machine = ELF_MACHINES[abi]
    head = b"\x7fELF" + bytes([cls, 1, 1, 0]) + b"\0" * 8 + struct.pack("<HHI", 3, machine, 1)
    with open(path, "wb") as f:
        f.write(head + b"\0" * (size - len(head)))
    os.chmod(path, 0o755)
    return path


def _elf_abi(data):
    if data[:4] != b"\x7fELF" or len(data) < 20:
        return None
    machine = struct.unpack("<H", data[18:20])[0]
    return next((abi for abi, (c, m) in ELF_MACHINES.items() if m == machine and c == data[4]), None)


class FakeDevice:
    """The emulated device; `with FakeDevice() as d: ... d.port`.

    Args:
      props: system properties (getprop). Defaults to a Pixel-like arm64 phone.
      thermal: m°C readings served as /sys/class/thermal/thermal_zone*/temp, or None (unreadable).
      python: interpreter that runs the edge runner behind `benchmark_model`. Defaults to sys.executable.
    """

    def __init__(self, props=None, thermal=None, python=None):
        self.props = {"ro.product.model": "Pixel 7", "ro.product.name": "panther", "ro.product.device": "panther",
                      "ro.product.cpu.abi": "arm64-v8a", "ro.product.cpu.abilist": "arm64-v8a,armeabi-v7a,armeabi",
                      "ro.build.version.sdk": "34", "ro.soc.model": "Tensor G2", "ro.board.platform": "gs201"}
        self.props.update(props or {})
        self.python = python or sys.executable
        self.fail_push = None      # substring of a remote path whose push fails with ENOSPC
        self.vanish_on = None      # substring of a shell command: the device disconnects while it runs
        self.vanish_after = 0.3
        self.hang = False          # benchmark_model never returns
        self.noexec = False        # pushed files are never executable (chmod is ignored)
        self.commands = []         # every shell command, as received
        self.sends = []            # device path of every file pushed (SEND), in order
        self.root = tempfile.mkdtemp(prefix="adb-device-")
        self.tmp = os.path.join(self.root, "data", "local", "tmp")
        self.bin = os.path.join(self.root, "system", "bin")
        self.thermal_dir = os.path.join(self.root, "sys", "class", "thermal")
        os.makedirs(self.tmp)
        os.makedirs(self.bin)
        self.set_thermal(thermal)
        self._write_tools()
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(8)
        self.port = self._sock.getsockname()[1]
        self.serial = f"127.0.0.1:{self.port}"
        self._conns, self._procs = [], set()
        self._gone = False
        threading.Thread(target=self._accept, daemon=True).start()

    # setup ----------------------------------------------------------------------------------
    def banner(self):
        p = self.props
        return (f"device::ro.product.name={p['ro.product.name']};ro.product.model={p['ro.product.model']};"
                f"ro.product.device={p['ro.product.device']};features={FEATURES}")

    def set_thermal(self, temps):
        if temps is None:
            return
        for i, t in enumerate(temps):
            zone = os.path.join(self.thermal_dir, f"thermal_zone{i}")
            os.makedirs(zone, exist_ok=True)
            with open(os.path.join(zone, "temp"), "w") as f:
                f.write(f"{int(t)}\n")

    def _write_tools(self):
        tools = {
            "getprop": '#!/bin/sh\nif [ $# -eq 0 ]; then cat "$EMU_ROOT/props"; else\n'
                       'while IFS= read -r line; do case "$line" in "[$1]: ["*) v=${line#*]: [}; '
                       'echo "${v%]}";; esac; done < "$EMU_ROOT/props"; fi\n',
            "taskset": '#!/bin/sh\necho "$1" >> "$EMU_ROOT/taskset.log"\nshift\nexec "$@"\n',
            "chmod": '#!/bin/sh\n[ -f "$EMU_ROOT/noexec" ] && exit 0\nexec /bin/chmod "$@"\n',
            # a binary replaced by its launcher keeps the digest of what was pushed
            "md5sum": '#!/bin/sh\nfor f in "$@"; do\n'
                      '  m=$(awk -F "\t" -v p="$f" \'$2 == p {print $1}\' "$EMU_ROOT/md5map" 2>/dev/null)\n'
                      '  if [ -n "$m" ]; then echo "$m  $f"; else /usr/bin/md5sum -- "$f" || exit 1; fi\n'
                      'done\n',
        }
        for name, text in tools.items():
            with open(os.path.join(self.bin, name), "w") as f:
                f.write(text)
            os.chmod(os.path.join(self.bin, name), 0o755)

    def _sync_state(self):
        with open(os.path.join(self.root, "props"), "w") as f:
            f.write("".join(f"[{k}]: [{v}]\n" for k, v in sorted(self.props.items())))
        for flag, on in (("noexec", self.noexec), ("hang", self.hang)):
            path = os.path.join(self.root, flag)
            if on:
                open(path, "w").close()
            elif os.path.exists(path):
                os.unlink(path)

    def map_path(self, path):
        for device_path, local in (("/data/local/tmp", self.tmp), ("/sys/class/thermal", self.thermal_dir)):
            if path == device_path or path.startswith(device_path + "/"):
                return local + path[len(device_path):]
        return path

    def map_command(self, command):
        return command.replace("/data/local/tmp", self.tmp).replace("/sys/class/thermal", self.thermal_dir)

    def taskset_masks(self):
        path = os.path.join(self.root, "taskset.log")
        return open(path).read().split() if os.path.exists(path) else []

    def files(self):
        """Device paths of every file under /data/local/tmp."""
        out = []
        for folder, _, names in os.walk(self.tmp):
            for name in names:
                out.append("/data/local/tmp" + os.path.join(folder, name)[len(self.tmp):])
        return sorted(out)

    # connections ----------------------------------------------------------------------------
    def _accept(self):
        while True:
            try:
                sock, _ = self._sock.accept()
            except OSError:
                return
            if self._gone:
                sock.close()
                continue
            conn = Connection(self, sock)
            self._conns.append(conn)
            threading.Thread(target=conn.serve, daemon=True).start()

    def vanish(self):
        """The device disappears: every connection drops and no new one is answered."""
        self._gone = True
        try:
            self._sock.close()
        except OSError:
            pass
        for conn in self._conns:
            conn.kill()
        for proc in list(self._procs):
            self._kill(proc)

    def close(self):
        self.vanish()
        import shutil
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _kill(self, proc):
        if proc is not None and proc.poll() is None:
            try:
                os.killpg(proc.pid, 9)
            except OSError:
                pass

    # services -------------------------------------------------------------------------------
    def service(self, stream, service):
        try:
            if service.startswith("shell"):
                head, _, command = service.partition(":")
                self._shell(stream, command, v2="v2" in head.split(",")[1:])
            elif service.startswith("exec:"):
                self._shell(stream, service[5:], v2=False)
            elif service.startswith("sync:"):
                self._sync(stream)
        finally:
            stream.close()

    def _shell(self, stream, command, v2):
        self._sync_state()
        self.commands.append(command)
        env = {"PATH": f"{self.bin}:/usr/bin:/bin", "EMU_ROOT": self.root, "HOME": self.tmp,
               "TMPDIR": self.tmp, "LANG": "C"}
        script = self.map_command(command)
        if self.vanish_on and self.vanish_on in command:
            # still running when the device goes, however fast this machine runs the command itself
            script = f"sleep {2 * self.vanish_after}; {script}"
        proc = subprocess.Popen(["/bin/sh", "-c", script], cwd=self.root, env=env,
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                start_new_session=True)
        stream.proc = proc
        self._procs.add(proc)
        if self.vanish_on and self.vanish_on in command:
            threading.Timer(self.vanish_after, self.vanish).start()
        lock = threading.Lock()

        def pump(pipe, packet_id):
            for chunk in iter(lambda: pipe.read1(CHUNK - 5) if hasattr(pipe, "read1") else pipe.read(4096), b""):
                with lock:
                    stream.write(struct.pack("<BI", packet_id, len(chunk)) + chunk if v2 else chunk)

        pumps = [threading.Thread(target=pump, args=(proc.stdout, 1)),
                 threading.Thread(target=pump, args=(proc.stderr, 2))]
        for t in pumps:
            t.start()
        for t in pumps:
            t.join()
        code = proc.wait()
        self._procs.discard(proc)
        if v2 and not stream.closed.is_set():
            stream.write(struct.pack("<BI", 3, 1) + bytes([code & 0xFF if code >= 0 else 128 + (-code)]))

    def _stat(self, path):
        try:
            return os.stat(self.map_path(path))
        except OSError:
            return None

    def _sync(self, stream):
        while True:
            head = stream.read(8)
            if head is None:
                return
            rid, length = head[:4], struct.unpack("<I", head[4:])[0]
            arg = stream.read(length) if length else b""
            if arg is None:
                return
            path = arg.decode("utf-8", "surrogateescape")
            if rid == b"STAT":
                st = self._stat(path)
                stream.write(b"STAT" + (struct.pack("<3I", st.st_mode, st.st_size & 0xFFFFFFFF, int(st.st_mtime))
                                        if st else b"\0" * 12))
            elif rid in (b"LST2", b"STA2"):
                st = self._stat(path)
                if st is None:
                    stream.write(rid + struct.pack("<I", 2) + b"\0" * 64)
                else:
                    stream.write(rid + struct.pack("<IQQIIIIQqqq", 0, st.st_dev, st.st_ino, st.st_mode, st.st_nlink,
                                                   st.st_uid, st.st_gid, st.st_size, int(st.st_atime),
                                                   int(st.st_mtime), int(st.st_ctime)))
            elif rid == b"LIST":
                local = self.map_path(path)
                for name in (sorted(os.listdir(local)) if os.path.isdir(local) else []):
                    st = os.lstat(os.path.join(local, name))
                    raw = name.encode()
                    stream.write(b"DENT" + struct.pack("<4I", st.st_mode, st.st_size, int(st.st_mtime), len(raw))
                                 + raw)
                stream.write(b"DONE" + b"\0" * 16)
            elif rid == b"SEND":
                if not self._receive_file(stream, path):
                    return
            elif rid == b"RECV":
                local = self.map_path(path)
                if not os.path.isfile(local):
                    msg = b"No such file or directory"
                    stream.write(b"FAIL" + struct.pack("<I", len(msg)) + msg)
                    continue
                with open(local, "rb") as f:
                    for chunk in iter(lambda: f.read(CHUNK - 8), b""):
                        stream.write(b"DATA" + struct.pack("<I", len(chunk)) + chunk)
                stream.write(b"DONE" + b"\0" * 4)
            elif rid == b"QUIT":
                return
            else:
                msg = f"unknown sync request {rid!r}".encode()
                stream.write(b"FAIL" + struct.pack("<I", len(msg)) + msg)
                return

    def _receive_file(self, stream, spec):
        path, _, mode = spec.rpartition(",")
        chunks = []
        while True:
            head = stream.read(8)
            if head is None:
                return False
            rid, length = head[:4], struct.unpack("<I", head[4:])[0]
            if rid == b"DONE":
                break
            if rid != b"DATA":
                return False
            data = stream.read(length)
            if data is None:
                return False
            chunks.append(data)
        data = b"".join(chunks)
        self.sends.append(path)
        if self.fail_push and self.fail_push in path:
            msg = b"No space left on device"
            stream.write(b"FAIL" + struct.pack("<I", len(msg)) + msg)
            return True
        local = self.map_path(path)
        os.makedirs(os.path.dirname(local), exist_ok=True)
        abi = _elf_abi(data)
        digests = self._md5map()
        digests.pop(local, None)
        if abi and abi in self.props.get("ro.product.cpu.abilist", self.props["ro.product.cpu.abi"]).split(","):
            digests[local] = hashlib.md5(data).hexdigest()
            data = self._launcher(len(data))
        with open(os.path.join(self.root, "md5map"), "w") as f:
            f.write("".join(f"{d}\t{p}\n" for p, d in digests.items()))
        with open(local, "wb") as f:
            f.write(data)
        perm = stat.S_IMODE(int(mode)) if mode.isdigit() else 0o644  # adb sends st_mode in decimal
        os.chmod(local, perm & ~0o111 if self.noexec else perm)
        stream.write(b"OKAY" + b"\0" * 4)
        return True

    def _md5map(self):
        path = os.path.join(self.root, "md5map")
        if not os.path.exists(path):
            return {}
        with open(path) as f:
            return {p: d for d, _, p in (line.rstrip("\n").partition("\t") for line in f) if p}

    def _launcher(self, size):
        text = ("#!/bin/sh\n# benchmark_model on the emulated device: the edge runner\n"
                '[ -f "$EMU_ROOT/hang" ] && exec sleep 3600\n'
                f"exec {shlex.quote(self.python)} {shlex.quote(EDGE_RUNNER)} \"$@\"\n").encode()
        if len(text) > size:
            raise ValueError(f"test binary must be at least {len(text)} bytes")
        return text + b"#" * (size - len(text) - 1) + b"\n"
