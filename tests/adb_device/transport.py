"""The adb transport on the device side: message framing, streams with OKAY flow control.

A message is a 24-byte header (command, arg0, arg1, data_length, data_crc32, magic = ~command) and
its payload (AOSP system/core/adb/protocol.txt). The host's CNXN is answered with CNXN and the device
banner (no AUTH is asked, so the client skips the key exchange). OPEN(local, 0, "service") is answered
OKAY(ours, local); each WRTE is acknowledged by OKAY, and a writer waits for that OKAY before its next
WRTE; CLSE ends a stream.
"""
import queue
import socket
import struct
import threading

A_SYNC, A_CNXN, A_OPEN, A_OKAY = 0x434E5953, 0x4E584E43, 0x4E45504F, 0x59414B4F
A_CLSE, A_WRTE, A_AUTH = 0x45534C43, 0x45545257, 0x48545541
A_VERSION = 0x01000001
MAX_PAYLOAD = 256 * 1024
CHUNK = 64 * 1024
FEATURES = "shell_v2,cmd,stat_v2,ls_v2,fixed_push_mkdir,fixed_push_symlink_timestamp,apex,remount_shell"


class Stream:
    def __init__(self, conn, local, remote):
        self.conn, self.local, self.remote = conn, local, remote
        self.inbox = queue.Queue()
        self.acked = threading.Semaphore(0)
        self.closed = threading.Event()
        self.proc = None
        self.buffer = b""

    def write(self, data):
        for i in range(0, len(data), CHUNK):
            if self.closed.is_set():
                return False
            self.conn.send(A_WRTE, self.local, self.remote, data[i:i + CHUNK])
            while not self.acked.acquire(timeout=0.2):
                if self.closed.is_set() or self.conn.dead.is_set():
                    return False
        return True

    def read(self, n):
        """Exactly n bytes of what the host wrote, or None when the stream closed first."""
        while len(self.buffer) < n:
            try:
                chunk = self.inbox.get(timeout=0.2)
            except queue.Empty:
                if self.closed.is_set() or self.conn.dead.is_set():
                    return None
                continue
            if chunk is None:
                return None
            self.buffer += chunk
        out, self.buffer = self.buffer[:n], self.buffer[n:]
        return out

    def close(self):
        if not self.closed.is_set():
            self.closed.set()
            self.conn.send(A_CLSE, self.local, self.remote)


class Connection:
    def __init__(self, device, sock):
        self.device, self.sock = device, sock
        self.lock = threading.Lock()
        self.streams = {}
        self.next_id = 1
        self.dead = threading.Event()

    def send(self, cmd, arg0, arg1, data=b""):
        header = struct.pack("<6I", cmd, arg0, arg1, len(data), sum(data) & 0xFFFFFFFF, cmd ^ 0xFFFFFFFF)
        with self.lock:
            try:
                self.sock.sendall(header + data)
            except OSError:
                self.dead.set()

    def _recv(self, n):
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("closed")
            buf += chunk
        return buf

    def serve(self):
        try:
            while not self.dead.is_set():
                cmd, arg0, arg1, length, _, _ = struct.unpack("<6I", self._recv(24))
                data = self._recv(length) if length else b""
                self.dispatch(cmd, arg0, arg1, data)
        except (ConnectionError, OSError):
            pass
        finally:
            self.kill()

    def kill(self):
        self.dead.set()
        for s in list(self.streams.values()):
            s.closed.set()
            s.inbox.put(None)
            self.device._kill(s.proc)
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()

    def dispatch(self, cmd, arg0, arg1, data):
        if cmd == A_CNXN:
            self.send(A_CNXN, A_VERSION, MAX_PAYLOAD, self.device.banner().encode())
        elif cmd == A_OPEN:
            local = self.next_id
            self.next_id += 1
            stream = Stream(self, local, arg0)
            self.streams[local] = stream
            service = data.rstrip(b"\0").decode("utf-8", "replace")
            self.send(A_OKAY, local, arg0)
            threading.Thread(target=self.device.service, args=(stream, service), daemon=True).start()
        elif cmd == A_WRTE:
            stream = self.streams.get(arg1)
            if stream is not None:
                stream.inbox.put(data)
                self.send(A_OKAY, arg1, arg0)
        elif cmd == A_OKAY:
            stream = self.streams.get(arg1)
            if stream is not None:
                stream.acked.release()
        elif cmd == A_CLSE:
            stream = self.streams.pop(arg1, None)
            if stream is not None:
                stream.closed.set()
                stream.inbox.put(None)
                self.device._kill(stream.proc)
