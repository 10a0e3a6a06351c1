"""A fake OpenAI-compatible chat backend for tests: real sockets on 127.0.0.1, no network.

``FakeBackend()`` starts a threaded stdlib HTTP server on a free port. It answers
``POST /v1/chat/completions`` (JSON or SSE when ``"stream": true``, with a usage chunk when
``stream_options.include_usage``; 1 prompt and 1 completion token either way) with a completion whose text
names the backend and the model asked for, counts answered requests per model, and records the
request ids it answered (``x-request-id`` header or the last message text). ``mode`` makes it
misbehave: ``"ok"``, ``"500"``, ``"400"`` (the client's fault), ``"hang"`` (sleeps ``hang_seconds`` before answering), ``"echo"`` (401 echoing the bearer key), ``"trickle"`` (one
byte per 0.2 s), ``"huge"`` (a 3 MB completion), ``"garbage"``
(200 with a non-JSON body), ``"drop"`` (closes the connection without answering).
``usage_json`` (raw JSON text, e.g. a 400-digit count) replaces the reported token usage and
``content`` the answer text of a JSON completion.

``stop()`` is a graceful kill: it stops accepting, cuts idle keep-alive connections at once,
lets requests already being answered finish, and refuses (by closing the connection) requests
that arrive afterwards — so every request is either answered and counted here exactly once, or
never seen here (and the router falls back elsewhere). ``kill()`` is the abrupt variant.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128  # many chats in flight connect at once (the default backlog is 5)

    def __init__(self, backend: "FakeBackend"):
        self.backend = backend
        self.lock = threading.Lock()
        self.draining = False
        self.idle: dict[int, socket.socket] = {}
        super().__init__(("127.0.0.1", 0), _Handler)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, *args):  # keep test output clean
        pass

    def handle(self):
        key = id(self.connection)
        try:
            while True:
                with self.server.lock:
                    if self.server.draining:
                        return
                    self.server.idle[key] = self.connection
                # wait for the next request line without holding the lock
                self.raw_requestline = self.rfile.readline(65537)
                with self.server.lock:
                    self.server.idle.pop(key, None)
                    if self.server.draining or not self.raw_requestline:
                        return  # refused: never answered, never counted
                if not self.parse_request():
                    return
                method = getattr(self, "do_" + self.command, None)
                if method is None:
                    self.send_error(405)
                    return
                method()
                self.wfile.flush()
                if self.close_connection:
                    return
        except (ConnectionError, OSError):
            return
        finally:
            with self.server.lock:
                self.server.idle.pop(key, None)

    def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        self._send(200, json.dumps({"counts": dict(self.server.backend.counts)}).encode())

    def do_POST(self):
        backend = self.server.backend
        length = int(self.headers.get("content-length", 0))
        body = json.loads(self.rfile.read(length) or b"{}")
        model = body.get("model", "?")
        mode = backend.mode_for(model)
        if mode == "drop":
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if mode == "hang":
            time.sleep(backend.hang_seconds)
        if mode == "500":
            self._send(500, b'{"error": {"message": "boom"}}')
            return
        if mode == "400":
            self._send(400, b'{"error": {"message": "max_tokens too large", "type": "invalid_request_error"}}')
            return
        if mode == "garbage":
            self._send(200, b"<html>this is not json", "text/html")
            return
        if mode == "echo":  # a 4xx whose body echoes the request's bearer key (must never reach the client)
            self._send(401, json.dumps({"error": {"message": f"bad key {self.headers.get('authorization')}"}}).encode())
            return
        if mode == "trickle":  # a 200 sending one byte per 0.2 s: a per-read timeout never fires
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", "1000")
            self.end_headers()
            for _ in range(1000):
                self.wfile.write(b" ")
                self.wfile.flush()
                time.sleep(0.2)
            return
        if mode == "huge":  # a valid completion padded to ~3 MB
            pad = "x" * 3_000_000
            self._send(200, json.dumps({"choices": [{"message": {"role": "assistant", "content": pad}}]}).encode())
            return
        messages = body.get("messages") or [{}]
        request_id = self.headers.get("x-request-id") or str(messages[-1].get("content", ""))
        text = f"{backend.name}:{model}" if backend.content is None else backend.content
        if body.get("stream"):
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.send_header("connection", "close")
            self.end_headers()
            for piece in (backend.name + ":", model):
                chunk = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 0, "model": model,
                         "choices": [{"index": 0, "delta": {"role": "assistant", "content": piece},
                                      "finish_reason": None}]}
                self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                self.wfile.flush()
            end = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 0, "model": model,
                   "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
            self.wfile.write(f"data: {json.dumps(end)}\n\n".encode())
            options = body.get("stream_options") or {}
            if options.get("include_usage"):  # as OpenAI: a last chunk with no choices and the usage
                usage = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 0, "model": model,
                         "choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}
                self.wfile.write(f"data: {json.dumps(usage)}\n\n".encode())
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()
            self.close_connection = True
        else:
            reply = {"id": "chatcmpl-fake", "object": "chat.completion", "created": 0, "model": model,
                     "choices": [{"index": 0, "finish_reason": "stop",
                                  "message": {"role": "assistant", "content": text}}],
                     "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}
            raw = json.dumps(reply)
            if backend.usage_json is not None:
                raw = raw.replace(json.dumps(reply["usage"]), backend.usage_json)
            self._send(200, raw.encode())
            self.wfile.flush()
        backend.record(model, request_id)


class FakeBackend:
    def __init__(self, name: str = "fake", *, mode: str = "ok", hang_seconds: float = 5.0):
        self.name = name
        self.mode = mode
        self.modes: dict[str, str] = {}
        self.hang_seconds = hang_seconds
        self.usage_json: str | None = None
        self.content: str | None = None
        self.counts: Counter[str] = Counter()
        self.answered_ids: list[str] = []
        self._record_lock = threading.Lock()
        self._server = _Server(self)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()
        self.stopped = False

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def mode_for(self, model: str) -> str:
        return self.modes.get(model, self.mode)

    def record(self, model: str, request_id: str) -> None:
        with self._record_lock:
            self.counts[model] += 1
            self.answered_ids.append(request_id)

    def stop(self) -> None:
        """Graceful kill (see module docstring)."""
        if self.stopped:
            return
        self.stopped = True
        with self._server.lock:
            self._server.draining = True
            for conn in list(self._server.idle.values()):
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            self._server.idle.clear()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
