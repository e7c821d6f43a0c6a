"""The runner's side of the adapter protocol (SPEC §adapter-protocol): start the adapter,
read its hello, send one request at a time, wait for the reply with a
timeout, and restart the process after a crash, a timeout or a broken reply.
"""
from __future__ import annotations

import collections
import json
import os
import queue
import shlex
import subprocess
import threading

from . import PROTOCOL

HELLO_TIMEOUT = 300.0  # seconds for the adapter to start (an interpreter importing Numba and torch)
STDERR_LINES = 20  # how many of the adapter's last stderr lines a failure shows


class AdapterFailed(Exception):
    """The adapter crashed, timed out or broke the protocol (the message says which)."""


class Adapter:
    """One adapter command; `request()` starts (or restarts) its process as needed."""

    def __init__(self, command: str, cwd: str | None = None, env: dict | None = None):
        self.command = command
        self.argv = shlex.split(command)
        self.cwd = cwd
        self.env = env
        self.proc: subprocess.Popen | None = None
        self.hello: dict | None = None
        self.starts = 0
        self._next_id = 0
        self._lines: queue.Queue = queue.Queue()
        self._stderr: collections.deque = collections.deque(maxlen=STDERR_LINES)
        self._stderr_thread: threading.Thread | None = None

    # --- process --------------------------------------------------------------------
    def start(self) -> dict:
        self.stop()
        self._lines = queue.Queue()
        self._stderr = collections.deque(maxlen=STDERR_LINES)
        try:
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE, cwd=self.cwd, env=self.env, bufsize=0)
        except OSError as exc:
            raise AdapterFailed(f"cannot start adapter {self.command!r}: {exc}") from None
        self.starts += 1
        threading.Thread(target=self._pump, args=(self.proc.stdout, self._lines), daemon=True).start()
        self._stderr_thread = threading.Thread(target=self._pump_stderr, args=(self.proc.stderr, self._stderr),
                                               daemon=True)
        self._stderr_thread.start()
        hello = self._read(HELLO_TIMEOUT, "the hello")
        problems = check_hello(hello)
        if problems:
            self.stop()
            raise AdapterFailed(f"adapter {self.command!r}: bad hello ({problems}): {hello!r}")
        if self.hello is None:
            self.hello = hello
        return hello

    @staticmethod
    def _pump(stream, lines: queue.Queue) -> None:
        for raw in iter(stream.readline, b""):
            lines.put(raw)
        lines.put(None)  # end of file

    @staticmethod
    def _pump_stderr(stream, tail: collections.deque) -> None:
        for raw in iter(stream.readline, b""):
            tail.append(raw.decode("utf-8", "replace").rstrip("\n"))

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, graceful: bool = False) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if graceful and proc.poll() is None:
            try:
                proc.stdin.write(b'{"type":"bye"}\n')
                proc.stdin.flush()
                proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                pass
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if self._stderr_thread is not None:  # the last words of a crashed adapter belong in the report
            self._stderr_thread.join(timeout=5)
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            try:
                stream.close()
            except OSError:
                pass

    def stderr_tail(self) -> str:
        return "\n".join(self._stderr)

    # --- messages -------------------------------------------------------------------
    def _read(self, timeout: float, what: str) -> dict:
        try:
            raw = self._lines.get(timeout=timeout)
        except queue.Empty:
            self.stop()
            raise AdapterFailed(f"timed out after {timeout:g} s waiting for {what}") from None
        if raw is None:
            code = self.proc.wait() if self.proc is not None else None
            self.stop()
            raise AdapterFailed(f"the adapter exited (status {code}) before {what}")
        try:
            msg = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError):
            self.stop()
            raise AdapterFailed(f"the adapter wrote a line that is not JSON instead of {what}: {raw[:200]!r}") from None
        if not isinstance(msg, dict):
            self.stop()
            raise AdapterFailed(f"the adapter wrote {msg!r} instead of {what} (a JSON object)")
        return msg

    def request(self, msg: dict, timeout: float) -> dict:
        """Send one request (an `id` is added) and return the reply with that id.
        AdapterFailed (the process is then stopped; the next request restarts it)."""
        if not self.alive():
            self.start()
        rid = self._next_id
        self._next_id += 1
        msg = dict(msg, id=rid)
        try:
            self.proc.stdin.write((json.dumps(msg) + "\n").encode())
            self.proc.stdin.flush()
        except OSError as exc:
            self.stop()
            raise AdapterFailed(f"cannot write to the adapter: {exc}") from None
        reply = self._read(timeout, f"the reply to request {rid}")
        if reply.get("id") != rid:
            self.stop()
            raise AdapterFailed(f"reply {reply!r} does not carry the request's id {rid}")
        return reply


def check_hello(msg: dict) -> str:
    """What is wrong with a hello message ("" when nothing)."""
    if msg.get("type") != "hello":
        return "first message must be of type hello"
    if msg.get("protocol") != PROTOCOL:
        return f"protocol {msg.get('protocol')!r}, this runner speaks {PROTOCOL}"
    impl = msg.get("implementation")
    if not isinstance(impl, dict) or not isinstance(impl.get("name"), str):
        return "implementation must be an object with a name"
    ops = msg.get("operations")
    if not isinstance(ops, list) or not all(isinstance(o, str) for o in ops):
        return "operations must be a list of strings"
    return ""


def default_env() -> dict:
    """The environment an adapter starts with: the runner's own."""
    return dict(os.environ)
