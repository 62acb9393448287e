# apiary's Python plugin worker, embedded in the apiary-script crate and run as `python3 -c`.
# It speaks length-prefixed JSON frames (4-byte big-endian length, then UTF-8 JSON) on
# stdin/stdout with the apiary process, and hosts one plugin: scripted service sessions
# (asyncio task per session) or a packet receiver fed in batches.
import asyncio
import base64
import collections
import importlib.util
import inspect
import io
import json
import os
import struct
import sys
import threading
import traceback
import types

MAX_FRAME = 64 << 20
MAX_SLEEP = 60.0

# The protocol gets its own copy of fd 1; fd 1 itself is pointed at stderr so that stray
# writes from C code or subprocesses can never corrupt a frame. Python-level prints are
# forwarded to apiary as "out" frames, which writes them to the user's stdout.
_proto = os.fdopen(os.dup(1), "wb")
os.dup2(2, 1)
_wlock = threading.Lock()


def send(obj):
    data = json.dumps(obj, separators=(",", ":"), default=str).encode()
    with _wlock:
        _proto.write(struct.pack(">I", len(data)))
        _proto.write(data)
        _proto.flush()


class _Out(io.TextIOBase):
    """sys.stdout replacement: buffers text and ships it as "out" frames."""

    def __init__(self):
        self._buf = []
        self._size = 0
        self._lock = threading.Lock()

    def writable(self):
        return True

    def write(self, s):
        if not isinstance(s, str):
            raise TypeError("write() argument must be str, not " + type(s).__name__)
        with self._lock:
            self._buf.append(s)
            self._size += len(s)
            big = self._size > 65536
        if big:
            self.flush()
        return len(s)

    def flush(self):
        with self._lock:
            text = "".join(self._buf)
            self._buf = []
            self._size = 0
        if text:
            send({"t": "out", "s": text})


def _short(exc):
    lines = traceback.format_exception_only(type(exc), exc)
    return "".join(lines).strip()


def _error_line(exc, path):
    if isinstance(exc, SyntaxError) and exc.lineno:
        return exc.lineno
    line = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if os.path.abspath(frame.filename) == os.path.abspath(path):
            line = frame.lineno
    return line


def namespace(v):
    """PokieStream hands the config as nested attribute objects: config.filter.strict."""
    if isinstance(v, dict):
        return types.SimpleNamespace(**{str(k): namespace(x) for k, x in v.items()})
    if isinstance(v, list):
        return [namespace(x) for x in v]
    return v


def load_plugin(path, hook):
    """Imports the plugin file as a module named after its stem, as PokieStream does."""
    name = os.path.splitext(os.path.basename(path))[0]
    directory = os.path.dirname(os.path.abspath(path))
    if directory not in sys.path:
        sys.path.insert(0, directory)
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError("cannot load " + path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    info = {}
    if hook == "packet":
        receiver = getattr(mod, "receiver", None)
        bulk = getattr(mod, "receiver_bulk", None)
        if receiver is None and bulk is None:
            raise _Invalid("the plugin defines no receiver(packet_log) function")
        if receiver is not None and not inspect.iscoroutinefunction(receiver):
            raise _Invalid("receiver must be an async def function")
        if bulk is not None and not callable(bulk):
            raise _Invalid("receiver_bulk must be a function")
        info["bulk"] = bulk is not None
    else:
        handle = getattr(mod, "handle", None)
        datagram = getattr(mod, "datagram", None)
        if handle is None and datagram is None:
            raise _Invalid("defines neither async def handle(conn) (TCP) nor "
                           "async def datagram(conn, data) (UDP)")
        for fname, f in (("handle", handle), ("datagram", datagram)):
            if f is not None and not inspect.iscoroutinefunction(f):
                raise _Invalid(fname + " must be an async def function")
        info["handle"] = handle is not None
        info["datagram"] = datagram is not None
    return mod, info


class _Invalid(Exception):
    pass


def try_load(path, hook):
    try:
        mod, info = load_plugin(path, hook)
        return mod, dict(info, t="loaded", ok=True)
    except _Invalid as e:
        return None, {"t": "loaded", "ok": False, "kind": "invalid", "error": str(e)}
    except BaseException as e:  # noqa: BLE001 - any import failure is reported, never fatal
        kind = "syntax" if isinstance(e, SyntaxError) else "invalid"
        msg = e.msg if isinstance(e, SyntaxError) else "import failed: " + _short(e)
        return None, {"t": "loaded", "ok": False, "kind": kind, "error": msg,
                      "line": _error_line(e, path)}


class ConnectionClosed(Exception):
    """Raised by rx()/tx() once the peer has gone; ends the session quietly if not caught."""


def _to_bytes(data):
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    return str(data).encode("utf-8", "surrogateescape")


def _done_future(loop):
    fut = loop.create_future()
    fut.set_result(None)
    return fut


class Conn:
    """A TCP connection as a plugin sees it."""

    def __init__(self, host, sid, info):
        self.remote_host = info.get("remote_host")
        self.remote_port = info.get("remote_port")
        self.local_port = info.get("local_port")
        self.session_id = info.get("session_id")
        self.service = info.get("service")
        self.session = {}
        self._host = host
        self._sid = sid
        self._waiter = None
        self._eof = False
        self._closed = False
        self._task = None

    async def _request(self, msg):
        if self._closed:
            raise ConnectionClosed()
        sys.stdout.flush()
        fut = asyncio.get_running_loop().create_future()
        self._waiter = fut
        send(msg)
        try:
            return await fut
        finally:
            self._waiter = None

    async def rx(self):
        if self._eof:
            raise ConnectionClosed()
        data = await self._request({"t": "rxreq", "sid": self._sid})
        if data is None:
            self._eof = True
        return data

    async def tx(self, data):
        payload = base64.b64encode(_to_bytes(data)).decode()
        ok = await self._request({"t": "tx", "sid": self._sid, "d": payload})
        if not ok:
            raise ConnectionClosed()

    async def sleep(self, secs):
        sys.stdout.flush()
        await asyncio.sleep(max(0.0, min(float(secs), MAX_SLEEP)))

    def log(self, kind, fields=None):
        send({"t": "log", "sid": self._sid, "k": str(kind), "f": dict(fields or {})})

    def close(self):
        """Ends the session after the current step; may be awaited or not."""
        if not self._closed:
            self._closed = True
            if self._task is not None:
                self._task.cancel()
        return _done_future(asyncio.get_running_loop())


class DatagramConn:
    """One UDP datagram's view: tx() queues replies, session is the per-peer dict."""

    def __init__(self, info, session):
        self.remote_host = info.get("remote_host")
        self.remote_port = info.get("remote_port")
        self.local_port = info.get("local_port")
        self.session_id = info.get("session_id")
        self.service = info.get("service")
        self.session = session
        self.replies = []
        self.logs = []

    def tx(self, data):
        self.replies.append(base64.b64encode(_to_bytes(data)).decode())
        return _done_future(asyncio.get_running_loop())

    def log(self, kind, fields=None):
        self.logs.append([str(kind), dict(fields or {})])

    async def rx(self):
        raise RuntimeError("rx() is not available in datagram(); the datagram is the argument")

    async def sleep(self, secs):
        await asyncio.sleep(max(0.0, min(float(secs), MAX_SLEEP)))

    def close(self):
        return _done_future(asyncio.get_running_loop())


class Host:
    def __init__(self, loop):
        self.loop = loop
        self.mod = None
        self.hook = None
        self.pass_config = False
        self.config = None
        self.sessions = {}
        self.peers = collections.OrderedDict()
        self.max_peers = 4096
        self.batches = asyncio.Queue()
        self.pending = 0
        # PokieStream's record keys, sent by the host with the packet hook's load message.
        self.keys = ()

    def load(self, msg):
        mod, reply = try_load(msg["path"], msg["hook"])
        if mod is not None:
            self.mod = mod
            self.hook = msg["hook"]
            self.pass_config = bool(msg.get("pass_config"))
            self.config = namespace(msg.get("config"))
            self.max_peers = int(msg.get("max_peers") or 4096)
            self.keys = tuple(msg.get("keys") or ())
        sys.stdout.flush()
        send(reply)

    def open(self, msg):
        sid = msg["sid"]
        conn = Conn(self, sid, msg.get("info") or {})
        self.sessions[sid] = conn
        conn._task = self.loop.create_task(self.run_session(conn, self.mod.handle))

    async def run_session(self, conn, handler):
        how, err = "returned", None
        try:
            await handler(conn)
        except ConnectionClosed:
            how = "peer_gone"
        except asyncio.CancelledError:
            how = "cancelled"
        except Exception as e:  # noqa: BLE001 - a plugin error ends only its session
            how, err = "error", _short(e)
        if conn._closed and how in ("returned", "cancelled", "peer_gone"):
            how = "closed"
        self.sessions.pop(conn._sid, None)
        sys.stdout.flush()
        send({"t": "end", "sid": conn._sid, "how": how, "error": err})

    def reply(self, msg, value):
        conn = self.sessions.get(msg["sid"])
        if conn is not None and conn._waiter is not None and not conn._waiter.done():
            conn._waiter.set_result(value)

    def cancel(self, msg):
        conn = self.sessions.get(msg["sid"])
        if conn is not None and conn._task is not None:
            conn._task.cancel()

    def peer_session(self, info):
        key = (info.get("remote_host"), info.get("remote_port"))
        session = self.peers.get(key)
        if session is None:
            while len(self.peers) >= self.max_peers:
                self.peers.popitem(last=False)
            session = self.peers[key] = {}
        else:
            self.peers.move_to_end(key)
        return session

    async def datagram(self, msg):
        info = msg.get("info") or {}
        conn = DatagramConn(info, self.peer_session(info))
        err = None
        try:
            await self.mod.datagram(conn, base64.b64decode(msg["d"]))
        except Exception as e:  # noqa: BLE001
            err = _short(e)
        sys.stdout.flush()
        send({"t": "dgram_done", "id": msg["id"], "r": conn.replies, "l": conn.logs, "e": err})

    async def run_batches(self):
        while True:
            seq, rows = await self.batches.get()
            records = []
            keys = self.keys
            for row in rows:
                records.append(dict(zip(keys, row)))
            extra = (self.config,) if self.pass_config else ()
            failed, errors = 0, []
            bulk = getattr(self.mod, "receiver_bulk", None)
            if bulk is not None:
                try:
                    r = bulk(records, *extra)
                    if inspect.isawaitable(r):
                        await r
                except Exception as e:  # noqa: BLE001
                    failed = len(records)
                    errors.append(_short(e))
            else:
                receiver = self.mod.receiver
                for rec in records:
                    try:
                        await receiver(rec, *extra)
                    except Exception as e:  # noqa: BLE001
                        failed += 1
                        if len(errors) < 3:
                            errors.append(_short(e))
            sys.stdout.flush()
            send({"t": "done", "seq": seq, "n": len(records), "failed": failed, "errors": errors})
            self.pending -= 1


def reader(loop, queue):
    inp = sys.stdin.buffer
    while True:
        head = inp.read(4)
        if len(head) < 4:
            break
        (n,) = struct.unpack(">I", head)
        if n > MAX_FRAME:
            break
        body = inp.read(n)
        if len(body) < n:
            break
        loop.call_soon_threadsafe(queue.put_nowait, json.loads(body))
    loop.call_soon_threadsafe(queue.put_nowait, None)


async def flusher():
    while True:
        await asyncio.sleep(0.2)
        sys.stdout.flush()


async def main():
    loop = asyncio.get_running_loop()
    queue = asyncio.Queue()
    host = Host(loop)
    threading.Thread(target=reader, args=(loop, queue), daemon=True).start()
    background = [loop.create_task(flusher()), loop.create_task(host.run_batches())]
    while True:
        msg = await queue.get()
        if msg is None:
            break
        t = msg.get("t")
        if t == "batch":
            host.pending += 1
            host.batches.put_nowait((msg["seq"], msg["recs"]))
        elif t == "rx":
            d = msg.get("d")
            host.reply(msg, None if d is None else base64.b64decode(d))
        elif t == "txd":
            host.reply(msg, bool(msg.get("ok")))
        elif t == "open":
            host.open(msg)
        elif t == "cancel":
            host.cancel(msg)
        elif t == "dgram":
            loop.create_task(host.datagram(msg))
        elif t == "ping":
            send({"t": "pong", "n": msg.get("n")})
        elif t == "load":
            host.load(msg)
    # stdin closed: let queued batches finish, then leave.
    while host.pending:
        await asyncio.sleep(0.01)
    sys.stdout.flush()
    for task in background:
        task.cancel()


if __name__ == "__main__":
    sys.stdout = _Out()
    if len(sys.argv) >= 4 and sys.argv[1] == "--check":
        sys.stdout = sys.stderr
        _, reply = try_load(sys.argv[3], sys.argv[2])
        send(reply)
    else:
        asyncio.run(main())
