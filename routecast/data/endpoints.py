"""OpenAI-compatible endpoints that ``collect`` and the LLM judge call: the endpoints file.

The same YAML/JSON shape as ``routecast serve --backends`` (so one file can serve both), under an
``endpoints`` or ``backends`` key, plus the knobs a bulk collection needs::

    endpoints:
      llama-3.1-8b:                          # the model name written to the log
        base_url: http://127.0.0.1:9001/v1   # OpenAI-compatible; the official client appends /chat/completions
        api_key_env: LLAMA_KEY               # optional: env var holding the key (never the key itself)
        model: meta/llama-3.1-8b-instruct    # optional: the name the endpoint expects
        timeout: 60                          # optional: seconds per request, default 60
        concurrency: 8                       # optional: requests in flight to this endpoint, default 8
        requests_per_second: 5               # optional: rate limit, default none
        max_tokens: 512                      # optional: sent with every request
        temperature: 0                       # optional: sent with every request

Any problem is one :class:`~routecast.errors.ConfigError` naming the file, the endpoint and the key.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from routecast.data.names import model_name
from routecast.errors import ConfigError

_KEYS = {"base_url", "api_key_env", "model", "timeout", "concurrency", "requests_per_second", "max_tokens",
         "temperature"}


@dataclass(frozen=True)
class Endpoint:
    name: str
    base_url: str
    api_key_env: str | None = None
    upstream_model: str | None = None
    timeout: float = 60.0
    concurrency: int = 8
    requests_per_second: float | None = None
    max_tokens: int | None = None
    temperature: float | None = None

    @property
    def request_model(self) -> str:
        return self.upstream_model or self.name

    def api_key(self) -> str:
        """The key from ``api_key_env``; endpoints without one get a placeholder the client accepts."""
        key = os.environ.get(self.api_key_env) if self.api_key_env else None
        return key or "unused"

    def client(self):
        """An official ``openai.AsyncOpenAI`` client for this endpoint (retries are routecast's own)."""
        import openai

        return openai.AsyncOpenAI(base_url=self.base_url, api_key=self.api_key(), timeout=self.timeout,
                                  max_retries=0)


def parse_endpoints(data: Any, *, source: str = "<memory>") -> dict[str, Endpoint]:
    if isinstance(data, Mapping):
        keys = set(data) & {"endpoints", "backends"}
        if keys:
            extra = sorted(set(data) - keys)
            if len(keys) > 1 or extra:
                raise ConfigError(f"{source}: expected one top-level key, 'endpoints' (or 'backends'); got {sorted(data)}")
            data = data[keys.pop()]
    if not isinstance(data, Mapping) or not data:
        raise ConfigError(f"{source}: expected a non-empty mapping of model name -> endpoint")
    out: dict[str, Endpoint] = {}
    for raw_name, entry in data.items():
        name = model_name(raw_name)
        where = f"{source}: endpoint {name!r}"
        url = check_entry(entry, _KEYS, where)
        if name in out:
            raise ConfigError(f"{where} appears twice")
        out[name] = Endpoint(
            name=name, base_url=url,
            api_key_env=_opt(entry, "api_key_env", str, where),
            upstream_model=_opt(entry, "model", str, where),
            timeout=_number(entry, "timeout", 60.0, where, positive=True),
            concurrency=int(_number(entry, "concurrency", 8, where, positive=True, integer=True)),
            requests_per_second=_number(entry, "requests_per_second", None, where, positive=True),
            max_tokens=_number(entry, "max_tokens", None, where, positive=True, integer=True),
            temperature=_number(entry, "temperature", None, where),
        )
    return out


def check_entry(entry: Any, allowed: set[str], where: str) -> str:
    """The checks every OpenAI-compatible endpoint entry passes (here and in the backends file of
    ``routecast serve``): a mapping, only ``allowed`` keys, an http(s) ``base_url`` (returned).
    The URL is never echoed: it may carry a password or a key."""
    if not isinstance(entry, Mapping):
        raise ConfigError(f"{where} must be a mapping with at least base_url")
    unknown = sorted(set(entry) - set(allowed))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(allowed)}")
    url = entry.get("base_url")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise ConfigError(f"{where}: base_url must be an http(s) URL")
    return url


def load_endpoints(config) -> dict[str, Endpoint]:
    """Endpoints from a YAML/JSON file path or an already-parsed mapping."""
    if isinstance(config, Mapping):
        return parse_endpoints(config)
    return parse_endpoints(read_config_file(config, "endpoints"), source=str(config))


def read_config_file(path: str | os.PathLike, what: str) -> Any:
    """A small YAML (or, by its ``.json`` suffix, JSON) config file, parsed; the one reader of the
    endpoints and backends files. Missing or unparsable -> one ConfigError naming ``what`` file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{what} file not found: {os.path.abspath(path)}")
    try:
        text = path.read_text(encoding="utf-8")
        if path.suffix.lower() == ".json":
            return json.loads(text)
        import yaml

        return yaml.safe_load(text)
    except Exception as exc:  # yaml.YAMLError / JSONDecodeError / UnicodeDecodeError
        raise ConfigError(f"{what} file {path}: cannot parse ({str(exc).splitlines()[0]})") from None


def _opt(entry, key, kind, where):
    value = entry.get(key)
    if value is not None and not isinstance(value, kind):
        raise ConfigError(f"{where}: {key} must be a {kind.__name__}")
    return value


def _number(entry, key, default, where, *, positive=False, integer=False):
    value = entry.get(key, default)
    if value is None:
        return None
    ok = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
    ok = ok and (not positive or value > 0) and (not integer or float(value).is_integer())
    if not ok:
        raise ConfigError(f"{where}: {key} must be a {'positive ' if positive else ''}"
                          f"{'integer' if integer else 'number'}, got {value!r}")
    return value
