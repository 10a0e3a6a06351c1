"""A fake OpenAI-compatible chat backend whose answers a test chooses, JSON or SSE: real sockets on
127.0.0.1 only.

``FakeChat(answer)`` serves ``POST /v1/chat/completions``; ``answer(text, model)`` makes the reply
from the last user message. With ``"stream": true`` the reply comes as chat.completion.chunk
events (the content split in two chunks, then the finish reason, a usage chunk when
``stream_options.include_usage``, then ``[DONE]``). ``fail[model] =
status`` answers that status instead. ``calls`` lists every request as (model, stream, text), in
arrival order, so a test can assert which models were called and which streamed.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


#: the token usage of every answer, JSON or streamed
USAGE = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}


class FakeChat:
    def __init__(self, answer):
        self.answer = answer
        self.fail: dict[str, int] = {}
        self.calls: list[tuple[str, bool, str]] = []
        self.delay = 0.0
        self.spans: list[tuple[str, float, float]] = []
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
                model, stream = body.get("model", ""), bool(body.get("stream"))
                users = [m.get("content") for m in body.get("messages", []) if m.get("role") == "user"]
                text = users[-1] if users else ""
                start = time.monotonic()
                with fake.lock:
                    fake.calls.append((model, stream, text))
                if fake.delay:
                    time.sleep(fake.delay)
                if model in fake.fail:
                    data = b'{"error": {"message": "boom"}}'
                    self.send_response(fake.fail[model])
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
                content = fake.answer(text, model)
                if stream:
                    self.send_response(200)
                    self.send_header("content-type", "text/event-stream")
                    self.send_header("connection", "close")
                    self.end_headers()
                    half = len(content) // 2
                    for piece in (content[:half], content[half:]):
                        self.wfile.write(_event(model, {"role": "assistant", "content": piece}, None))
                        self.wfile.flush()
                    self.wfile.write(_event(model, {}, "stop"))
                    if (body.get("stream_options") or {}).get("include_usage"):  # as OpenAI: usage, no choices
                        usage = {"id": f"chatcmpl-{model}", "object": "chat.completion.chunk", "created": 0,
                                 "model": model, "choices": [], "usage": USAGE}
                        self.wfile.write(f"data: {json.dumps(usage)}\n\n".encode())
                    self.wfile.write(b"data: [DONE]\n\n")
                    self.wfile.flush()
                    self.close_connection = True
                    return
                reply = {"id": f"chatcmpl-{model}", "object": "chat.completion", "created": 0, "model": model,
                         "choices": [{"index": 0, "finish_reason": "stop",
                                      "message": {"role": "assistant", "content": content}}],
                         "usage": USAGE}
                data = json.dumps(reply).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                with fake.lock:
                    fake.spans.append((model, start, time.monotonic()))

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def models_called(self, text: str | None = None) -> list[str]:
        return [m for m, _, t in self.calls if text is None or t == text]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _event(model: str, delta: dict, finish: str | None) -> bytes:
    chunk = {"id": f"chatcmpl-{model}", "object": "chat.completion.chunk", "created": 0, "model": model,
             "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return f"data: {json.dumps(chunk)}\n\n".encode()
