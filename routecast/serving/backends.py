"""Where each model is served: the backends file of ``routecast serve --backends FILE``.

YAML or JSON, either a mapping ``model name -> backend`` or the same under a ``backends`` key::

    backends:
      llama-3.1-8b-instruct:
        base_url: http://127.0.0.1:9001/v1   # OpenAI-compatible; /chat/completions is appended
        api_key_env: LLAMA_KEY               # optional: env var holding the bearer token
        timeout: 30                          # optional: seconds for the WHOLE call, default 30
        model: meta/llama-3.1-8b-instruct    # optional: model name the backend expects
      gpt-4o:
        base_url: https://api.openai.com/v1
        api_key_env: OPENAI_API_KEY

The API key itself never sits in the file: only the name of the environment variable holding it.
A URL may still carry secrets (a password in its userinfo, a key in its query string), so the
server never shows one: :attr:`Backend.redacted_url` and :func:`redact` keep scheme, host, port
and path only, and the proxy's messages name the model, not the URL.

``timeout`` is a total deadline for one call (connect, send, every byte of the answer; for a
stream, until its end): a backend trickling one byte per second is cut at the deadline.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass
from typing import Any, Sequence
from urllib.parse import urlsplit

from routecast.errors import ConfigError

_KEYS = {"base_url", "api_key_env", "timeout", "model"}


@dataclass(frozen=True)
class Backend:
    name: str
    base_url: str
    api_key_env: str | None = None
    timeout: float = 30.0
    upstream_model: str | None = None

    @property
    def chat_url(self) -> str:
        return self.base_url.rstrip("/") + "/chat/completions"

    @property
    def redacted_url(self) -> str:
        return redact_url(self.base_url)

    def secrets(self) -> list[str]:
        """Substrings of this backend's configuration that must never be shown (URL, userinfo, query)."""
        parts = urlsplit(self.base_url)
        out = [self.base_url, self.chat_url]
        if parts.username:
            out.append(parts.username)
        if parts.password:
            out.append(parts.password)
        if parts.query:
            out.append(parts.query)
            out += [v for pair in parts.query.split("&") for v in pair.split("=")[1:] if v]
        key = os.environ.get(self.api_key_env) if self.api_key_env else None
        if key:
            out.append(key)
        return [s for s in out if len(s) >= 4]

    def headers(self) -> dict[str, str]:
        if not self.api_key_env:
            return {}
        key = os.environ.get(self.api_key_env)
        return {"authorization": f"Bearer {key}"} if key else {}


def parse_backends(data: Any, *, source: str = "<memory>") -> dict[str, Backend]:
    if isinstance(data, dict) and "backends" in data:
        extra = sorted(set(data) - {"backends"})
        if extra:
            raise ConfigError(f"{source}: unknown top-level key(s) {extra}; expected only 'backends'")
        data = data["backends"]
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of model name -> backend")
    out: dict[str, Backend] = {}
    from routecast.data.endpoints import check_entry

    for name, entry in data.items():
        url = check_entry(entry, _KEYS, f"{source}: backend {name!r}")
        timeout = entry.get("timeout", 30.0)
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
            raise ConfigError(f"{source}: backend {name!r}: timeout must be a positive number of seconds")
        key_env = entry.get("api_key_env")
        if key_env is not None and not isinstance(key_env, str):
            raise ConfigError(f"{source}: backend {name!r}: api_key_env must be an environment variable name")
        upstream = entry.get("model")
        if upstream is not None and not isinstance(upstream, str):
            raise ConfigError(f"{source}: backend {name!r}: model must be a string")
        out[str(name)] = Backend(str(name), url, key_env, float(timeout), upstream)
    return out


def load_backends(config: str | os.PathLike | dict | None) -> dict[str, Backend]:
    """Backends from a YAML/JSON file path, an already-parsed mapping, or None (no backends)."""
    if config is None:
        return {}
    if isinstance(config, dict):
        return parse_backends(config)
    from routecast.data.endpoints import read_config_file

    return parse_backends(read_config_file(config, "backends"), source=str(config))


#: the backends-file entry that serves every model without an entry of its own
DEFAULT_BACKEND = "*"


def check_backend_models(backends: dict[str, Backend], models: Sequence[str], *, source: str | None = None,
                         allow_missing: bool = False) -> list[str]:
    """Start-up notes about ``backends`` against the checkpoint's ``models``.

    Why refuse: a model the backends file misspells or omits was silently never answered - its chats
    went to the next model of the ranking with no fallback header. So a model without a backend is
    a :class:`ConfigError` naming it and the file's nearest spelling, unless ``allow_missing`` (then a
    warning note; each chat routed to it says ``x-routecast-fallback``). No backends at all is
    allowed (``/v1/route`` still works) with a note that chats will answer 503.
    """
    if not backends:
        return ["no backends file (--backends): /v1/route works, every POST /v1/chat/completions answers 503"]
    if DEFAULT_BACKEND in backends:
        return []
    missing = [m for m in models if m not in backends]
    if not missing:
        return []
    spare = [name for name in backends if name not in models]
    named = "; ".join(f"{m!r}{_near_miss(m, spare)}" for m in missing)
    if not allow_missing:
        raise ConfigError(f"{source or 'backends'}: no backend for the checkpoint's model(s) {named}; add them "
                          f"(or a {DEFAULT_BACKEND!r} entry), or pass --allow-missing-backends to serve without them")
    return [f"warning: no backend for the checkpoint's model(s) {named}: chats routed to them are answered by "
            "the next model of the ranking, said in x-routecast-fallback"]


def _near_miss(model: str, names: Sequence[str]) -> str:
    """`` (did you mean 'X'?)`` for the backend name closest to ``model``, or ''."""
    same_case = [n for n in names if n.casefold() == model.casefold()]
    close = same_case or difflib.get_close_matches(model, names, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def redact_url(url: str) -> str:
    """``scheme://host[:port]/path`` of ``url``: no userinfo, query or fragment."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "?"
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<url>"
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}{port}{parts.path}"


def redact(text: str, backends: "dict[str, Backend] | list[Backend]") -> str:
    """``text`` with every secret of ``backends`` (URLs, passwords, query values, keys) replaced."""
    values = backends.values() if isinstance(backends, dict) else backends
    secrets = sorted({s for b in values for s in b.secrets()}, key=len, reverse=True)
    for secret in secrets:
        text = text.replace(secret, "<redacted>")
    return text
