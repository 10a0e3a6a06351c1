"""Where each model is served: the backends file of ``routecast serve --backends FILE``.

YAML or JSON, either a mapping ``model name -> backend`` or the same under a ``backends`` key::

    backends:
      llama-3.1-8b-instruct:
        base_url: http://127.0.0.1:9001/v1   # OpenAI-compatible; /chat/completions is appended
        api_key_env: LLAMA_KEY               # optional: env var holding the bearer token
        timeout: 30                          # optional: seconds (connect + each read), default 30
        model: meta/llama-3.1-8b-instruct    # optional: model name the backend expects
      gpt-4o:
        base_url: https://api.openai.com/v1
        api_key_env: OPENAI_API_KEY

The API key itself never sits in the file: only the name of the environment variable holding it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
    for name, entry in data.items():
        if not isinstance(entry, dict):
            raise ConfigError(f"{source}: backend {name!r} must be a mapping with at least base_url")
        unknown = sorted(set(entry) - _KEYS)
        if unknown:
            raise ConfigError(f"{source}: backend {name!r}: unknown key(s) {unknown}; allowed: {sorted(_KEYS)}")
        url = entry.get("base_url")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ConfigError(f"{source}: backend {name!r}: base_url must be an http(s) URL, got {url!r}")
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
    path = Path(config)
    if not path.is_file():
        raise ConfigError(f"backends file {path} not found")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as exc:  # yaml.YAMLError / json.JSONDecodeError
        raise ConfigError(f"backends file {path}: cannot parse ({exc})") from None
    return parse_backends(data, source=str(path))
