"""uvicorn's httptools protocol with a header deadline and a header size cap.

uvicorn arms its keep-alive timer only after a response, so a client that connects and sends
nothing, or half a request head, held its connection forever (800 such connections were all
still open after 35 s). This protocol gives every connection ``header_timeout_s`` from
connecting (or from the end of the previous response) to deliver a complete request head, and
at most ``max_header_bytes`` of it; it then closes the connection (408 / 431). The body deadline
is the ASGI gate's (routecast.serving.guard.gate).

uvicorn takes a protocol class, not arguments, so :func:`protocol_class` returns a subclass
bound to the limits.
"""

from __future__ import annotations

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    header_timeout_s: float = 10.0
    max_header_bytes: int = 16_384

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._head_bytes = 0
        self._in_head = True
        self._head_timer = self.loop.call_later(self.header_timeout_s, self._head_timed_out)

    def connection_lost(self, exc) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def _cancel_head_timer(self) -> None:
        timer = getattr(self, "_head_timer", None)
        if timer is not None:
            timer.cancel()
            self._head_timer = None

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            # only the head counts: a packet may carry the end of the head and the start of the body
            end = data.find(b"\r\n\r\n")
            head_part = len(data) if end < 0 else end
            if self._head_bytes + head_part > self.max_header_bytes + 1024:
                self._refuse(431, b"request head too large")
                return
            self._head_bytes += len(data)
        super().data_received(data)

    def on_header(self, name: bytes, value: bytes) -> None:
        super().on_header(name, value)
        if len(self.url) + sum(len(n) + len(v) + 4 for n, v in self.headers) > self.max_header_bytes:
            self._refuse(431, b"request head too large")

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._cancel_head_timer()
        if self.transport.is_closing():  # refused while parsing this very packet
            return
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and not self.pipeline:
            self._in_head = True
            self._head_bytes = 0
            self._cancel_head_timer()
            self._head_timer = self.loop.call_later(self.header_timeout_s, self._head_timed_out)

    def _head_timed_out(self) -> None:
        self._head_timer = None
        busy = self.cycle is not None and not self.cycle.response_complete
        if not busy and not self.transport.is_closing():
            if self._head_bytes:
                self._refuse(408, b"request head not received in time")
            else:
                self.transport.close()

    def _refuse(self, status: int, message: bytes) -> None:
        if self.transport.is_closing():
            return
        reason = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}[status]
        self.transport.write(b"HTTP/1.1 %d %s\r\ncontent-type: text/plain\r\ncontent-length: %d\r\n"
                             b"connection: close\r\n\r\n%s" % (status, reason, len(message), message))
        self.transport.close()
        self._in_head = False
        self._cancel_head_timer()


def protocol_class(header_timeout_s: float, max_header_bytes: int) -> type[GuardedHttpToolsProtocol]:
    return type("RoutecastHttpProtocol", (GuardedHttpToolsProtocol,),
                {"header_timeout_s": header_timeout_s, "max_header_bytes": max_header_bytes})
