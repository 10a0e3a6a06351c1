"""A fake OpenAI-compatible endpoint for the collect/score tests: real sockets on 127.0.0.1 only.

``FakeOpenAI(answer=fn, delay=0.0, flaky=False)`` serves ``POST /v1/chat/completions`` from a
threaded stdlib server. ``answer(text, model)`` makes the reply from the last user message (or the
whole prompt for a judge); ``delay`` seconds of sleep make it slow; ``flaky=True`` answers a third
of the cells (chosen by a hash of text and model) 429 on the first attempt and 500 on the second
before answering; ``garbage=True`` answers 200 with a body that is not a chat completion.
``answered`` counts 200 answers per (text, model); ``attempts`` every request.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def _last_user(messages) -> str:
    users = [m.get("content") for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    return users[-1] if users and isinstance(users[-1], str) else ""


class FakeOpenAI:
    def __init__(self, answer=None, *, delay: float = 0.0, flaky: bool = False, garbage: bool = False):
        self.answer = answer or (lambda text, model: f"{model} says: {text[::-1]}")
        self.delay, self.flaky, self.garbage = delay, flaky, garbage
        self.lock = threading.Lock()
        self.answered: Counter = Counter()
        self.attempts: Counter = Counter()
        self.statuses: Counter = Counter()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
                status, payload = fake.reply(body)
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                if status == 429:
                    self.send_header("retry-after", "0")
                self.end_headers()
                self.wfile.write(data)

        class Server(ThreadingHTTPServer):
            request_queue_size = 256  # 32+ clients connect at once; the default 5 drops SYNs (1 s retransmits)

        self.server = Server(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def reply(self, body: dict):
        model = body.get("model", "")
        text = _last_user(body.get("messages", []))
        key = (text, model)
        with self.lock:
            self.attempts[key] += 1
            attempt = self.attempts[key]
        if self.flaky and int(hashlib.sha1(f"{text}|{model}".encode()).hexdigest(), 16) % 3 == 0 and attempt <= 2:
            status = 429 if attempt == 1 else 500
            with self.lock:
                self.statuses[status] += 1
            return status, {"error": {"message": "try later", "type": "server_error"}}
        if self.delay:
            time.sleep(self.delay)
        if self.garbage:
            return 200, b'{"hello": "not a completion"}'
        content = self.answer(text, model)
        with self.lock:
            self.answered[key] += 1
            self.statuses[200] += 1
        return 200, {"id": "x", "object": "chat.completion", "created": 0, "model": model,
                     "choices": [{"index": 0, "finish_reason": "stop",
                                  "message": {"role": "assistant", "content": content}}],
                     "usage": {"prompt_tokens": len(text) // 4 + 1, "completion_tokens": len(content) // 4 + 1,
                               "total_tokens": len(text) // 4 + len(content) // 4 + 2}}

    def answered_cells(self) -> Counter:
        """``answered`` without the cell ('', ''): a request torn by a killed or cancelled client
        can reach the server as an empty body, which is answered but is no cell of the run."""
        return Counter({k: c for k, c in self.answered.items() if k != ("", "")})

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def main(argv: list[str]) -> None:
    """``python fake_openai.py slow:0.02 flaky ...``: serve in a process of its own (for benchmarks).

    Prints one JSON line ``{name: base_url}``; when stdin closes, prints ``{name: statuses}`` and exits.
    """
    import sys

    backends = {}
    for spec in argv:
        name, _, arg = spec.partition(":")
        backends[name] = FakeOpenAI(delay=float(arg) if name.startswith("slow") and arg else 0.0,
                                    flaky=name.startswith("flaky"))
    print(json.dumps({n: b.base_url for n, b in backends.items()}), flush=True)
    sys.stdin.read()
    print(json.dumps({n: {str(k): v for k, v in b.statuses.items()} for n, b in backends.items()}), flush=True)


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
