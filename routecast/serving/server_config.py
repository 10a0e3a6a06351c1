"""Every limit and default of one server, and the server config file that sets them.

``routecast serve CKPT --config server.yaml`` reads a YAML (or JSON) mapping whose keys are the
fields of :class:`ServerSettings` plus those of :class:`ServeOptions` (where to bind, which files);
a flag given on the command line wins over the file. Each option is defined once, as a field: its
name, type and default here, its flag and help in the field's :func:`option` (the ``serve``
command is built from them in routecast.serving.commands). Dashes and underscores are the same (``max-body-bytes``
or ``max_body_bytes``)::

    host: 0.0.0.0
    api_keys: /etc/routecast/keys.txt      # one key or sha256:<hex> per line
    backends: /etc/routecast/backends.yaml
    rate_limit_rps: 20                      # per key
    prompt_rate_limit: 200                  # prompts/s per key
    spend_budget_usd: 5.0                   # per key, from the router's cost model
    max_concurrent_per_key: 4

Values are type-checked strictly (``rate_limit_rps: "20"`` or ``true`` is refused, naming the
key), so a typo fails before the port is bound.
"""

from __future__ import annotations

import json
import math
import os
import typing
from dataclasses import Field, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from routecast.errors import ConfigError


def option(default: Any, flag: str, help: str, *, path: bool = False, minimum: int | None = None,
           metavar: str | None = None) -> Any:
    """A setting that ``routecast serve`` also takes as the command-line ``flag``.

    Why in the field: the name, type and default of every ``serve`` option are written once, here;
    the command's flags (routecast.serving.commands) and the config file's keys are read from these
    fields. ``help`` may say ``{default}``; ``path``: the flag takes a file; ``minimum``: the smallest
    value the flag accepts; ``metavar``: how the help names the value."""
    return field(default=default, metadata={"flag": flag, "help": help, "path": path, "minimum": minimum,
                                            "metavar": metavar})


@dataclass(frozen=True)
class ServerSettings:
    """Limits and defaults of one server. ``None`` switches a limit off."""

    # ---- requests
    #: requests with a larger body are refused with 413
    max_body_bytes: int = option(1_000_000, "--max-body-bytes", "Largest request body (413 above) [{default}].")
    #: most prompts one /v1/route call may carry (413 above)
    max_prompts: int = option(256, "--max-prompts", "Most prompts per /v1/route request [{default}].")
    #: deepest JSON nesting accepted in a body (400 deeper)
    max_json_depth: int = 64
    #: longest number literal accepted in a body, in characters (400 longer)
    max_number_chars: int = 100
    #: characters of conversation the router reads for a chat request (routecast.data.chat_text)
    route_context_chars: int = 4000
    #: whether the routing text of a chat includes its system prompt (after the last user turn)
    route_system_prompt: bool = True
    #: user/assistant turns before the last user turn added to the routing text, newest first
    route_earlier_turns: int = 0
    #: willingness to pay used when a request gives no lam/budget/strong_share/target_quality
    default_lam: float | None = option(None, "--lam", "Default willingness to pay for requests that give none.")
    #: the checkpoint's operating point used when a request names none (None: the checkpoint's default)
    default_operating_point: str | None = option(None, "--operating-point",
                                                 "Default operating point [the checkpoint's default].")
    #: pace the mean cost per routed request to this many USD: an online controller moves lam from the
    #: spend it observes (routecast.core.pacing.BudgetPacer) for requests that give no knob (None: off)
    pace_budget_usd: float | None = option(None, "--pace-budget", "Keep the mean cost per request at this many USD "
                                           "under drift: lam follows the observed spend (requests without knobs).",
                                           metavar="USD")
    #: the pacing controller's gain (log lam moves by step x relative spend error per request)
    pace_step: float = 0.05
    # ---- conversations, exploration
    #: a conversation (``user`` field or ``x-routecast-conversation``) stays on the model of its first
    #: turn unless the new turn's predicted quality gain of switching exceeds this (None: no stickiness)
    sticky_margin: float | None = option(0.05, "--sticky-margin", "A conversation switches models only for a "
                                         "larger predicted gain [{default}].")
    #: conversations remembered for stickiness (least recently used forgotten first)
    sticky_conversations: int = 100_000
    #: epsilon-greedy exploration of chat routing: share of requests sent to a uniformly drawn model
    explore: float = option(0.0, "--explore", "Epsilon-greedy exploration of chat routing: share of chats sent to "
                            "a uniformly drawn model.")
    #: softmax exploration over utility / T instead of epsilon-greedy (None: off)
    explore_temperature: float | None = option(None, "--explore-temperature", "Softmax exploration over "
                                               "utility / T instead.")
    #: share of first turns a ``--canary`` checkpoint serves (routecast.serving.canary)
    canary_share: float = option(0.05, "--canary-share", "Share of first turns the --canary checkpoint serves "
                                 "[{default}].")
    # ---- micro-batching and fair share
    #: merge concurrent routing requests into one router call (routecast.serving.microbatch)
    micro_batch: bool = option(True, "--micro-batch/--no-micro-batch", "Merge concurrent routing requests into one "
                               "router call [on].")
    #: most prompts in one merged router call
    max_batch: int = option(64, "--max-batch", "Most prompts in one merged router call [{default}].")
    #: how long the batcher waits for more requests once one is queued (0: only what is already queued)
    batch_wait_ms: float = option(0.0, "--batch-wait-ms", "Wait this long for more requests before routing a batch "
                                  "(0: no added latency) [{default}].")
    #: characters of prompt each API key may put into one router call while other keys wait (fair share)
    fair_quantum_chars: int = 4_000
    #: requests one API key may have in progress; more wait for a slot (fair share of the server)
    max_concurrent_per_key: int | None = option(8, "--max-concurrent-per-key", "Requests in progress per key "
                                                "[{default}].")
    #: how long a request waits for its key's slot before a 429
    slot_wait_s: float = 30.0
    #: Python's thread switch interval in a ``routecast serve`` process, ms (the default 5 ms adds up to
    #: 5 ms per event-loop wake-up while the router thread works; None: leave it)
    gil_switch_ms: float | None = 1.0
    # ---- per-key limits (429)
    #: requests per second per key (token bucket), and its burst
    rate_limit_rps: float | None = option(None, "--rate-limit-rps", "Requests/s per key (429 above).")
    rate_limit_burst: float | None = None
    #: prompts per second per key (a chat counts one prompt), and its burst
    prompt_rate_limit: float | None = option(None, "--prompt-rate-limit", "Prompts/s per key (429 above).")
    prompt_rate_burst: float | None = None
    #: USD each key may spend on proxied chats (realised cost: token usage x price table, else expected cost)
    spend_budget_usd: float | None = option(None, "--spend-budget-usd", "USD per key on proxied chats, from the "
                                            "router's cost model (429 when used up).")
    #: seconds after which every key's spend starts again from 0 (None: for the server's lifetime)
    budget_period_s: float | None = None
    #: ``settle``: a chat is admitted while the key's spend is under budget and charged when it ends
    #: (chats in flight overshoot by their own cost); ``reserve``: a chat also holds its expected cost
    #: against the budget while it runs, so the budget is exceeded by at most one chat's cost
    budget_mode: str = option("settle", "--budget-mode", "settle: charge each chat when it ends; reserve: also "
                              "hold its expected cost while it runs, so a budget is exceeded by at most one "
                              "chat [{default}].")
    # ---- connections (uvicorn) and the body
    #: seconds a client has to send a request's headers (from connecting or the previous response)
    header_timeout_s: float = option(10.0, "--header-timeout", "Seconds to send a request head [{default}].")
    #: seconds a client has to send a request's whole body once its headers arrived (408 after)
    body_timeout_s: float = option(30.0, "--body-timeout", "Seconds to send a body (408 after) [{default}].")
    #: seconds an idle keep-alive connection stays open
    keep_alive_s: float = 5.0
    #: largest request head (request line + headers), 431 above
    max_header_bytes: int = 16_384
    # ---- backends
    #: largest backend answer relayed, in bytes (502 above)
    max_response_bytes: int = option(10_000_000, "--max-response-bytes", "Largest backend answer relayed "
                                     "[{default}].")
    #: consecutive failures after which a backend is skipped for ``breaker_cooldown_s``
    breaker_failures: int = 3
    breaker_cooldown_s: float = 30.0
    # ---- observability
    #: OpenTelemetry spans per request (routecast.serving.tracing; the otel extra), exported by OTLP/HTTP
    traces: bool = option(False, "--traces/--no-traces", "OpenTelemetry spans per request (decision, backend calls), "
                          "exported by OTLP/HTTP to $OTEL_EXPORTER_OTLP_ENDPOINT; needs routecast[otel] [off].")
    # ---- exposure
    #: serve /docs and /openapi.json (off: the API schema is not published)
    docs: bool = option(False, "--docs/--no-docs", "Publish /docs and /openapi.json.")
    #: /metrics without an API key (for a scraper on a private network)
    public_metrics: bool = option(False, "--public-metrics", "/metrics without a key.")

    def __post_init__(self):
        if self.pace_budget_usd is not None and (self.default_lam is not None or self.default_operating_point):
            raise ConfigError("pace_budget_usd sets the lam of requests without knobs: give it without default_lam "
                              "and default_operating_point")

    @classmethod
    def from_any(cls, value: "ServerSettings | dict | None") -> "ServerSettings":
        """Settings from a mapping (checked strictly: unknown keys and wrong types are refused)."""
        if value is None:
            return cls()
        if isinstance(value, cls):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"server settings must be a mapping, got {type(value).__name__}")
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(value) - set(known))
        if unknown:
            raise ConfigError(f"unknown server setting(s) {unknown}; known: {sorted(known)}")
        checked = {name: _check_setting(name, v) for name, v in value.items()}
        return replace(cls(), **checked)


@dataclass(frozen=True)
class ServeOptions:
    """What ``routecast serve`` takes besides the app's :class:`ServerSettings`: where to bind, the
    files to read and the checkpoint's trust. Every field is a flag and a config-file key."""

    host: str = option("127.0.0.1", "--host", "Interface to bind [default: {default}]; a non-loopback address "
                       "needs --api-keys (or --insecure-no-auth).")
    port: int = option(8000, "--port", "TCP port [default: {default}].")
    backends: str | None = option(None, "--backends", "YAML/JSON file: model -> base_url, api_key_env, timeout "
                                  "(needed for /v1/chat/completions).", path=True)
    allow_missing_backends: bool = option(False, "--allow-missing-backends", "Serve although the backends file "
                                          "has no entry for some of the checkpoint's models (refused by default): "
                                          "their chats fall back to the next model, said in x-routecast-fallback.")
    api_keys: str | None = option(None, "--api-keys", "Client keys file: one key or sha256:<hex> per line (also "
                                  "$ROUTECAST_API_KEYS).", path=True)
    admin_keys: str | None = option(None, "--admin-keys", "Admin keys file (as --api-keys): also accepted as "
                                    "client keys, and may give feedback on any key's requests.", path=True)
    insecure_no_auth: bool = option(False, "--insecure-no-auth", "Serve a non-loopback address without client keys.")
    access_log: bool = option(False, "--access-log/--no-access-log", "Log every request (costs ~10% throughput; "
                              "/metrics counts them anyway).")
    decision_log: str | None = option(None, "--decision-log", "SQLite file: one record per routed request "
                                      "(enables POST /v1/feedback).", path=True)
    log_text: bool = option(False, "--log-text", "Keep the routing text in the decision log (default: only its "
                            "SHA-256; needed to train on it).")
    price_table: str | None = option(None, "--price-table", "JSON {model: [usd_per_mtok_in, usd_per_mtok_out]}: "
                                     "realised cost from token usage.", path=True)
    workers: int = option(1, "--workers", "Worker processes on one port; they share limits, budgets, the decision "
                          "log and /metrics [{default}].", minimum=1)
    store: str | None = option(None, "--store", "Where per-key limits and budgets live: memory, sqlite:///PATH or "
                               "redis://HOST:PORT/DB [memory; with --workers > 1 a SQLite file of this server].", metavar="URL")
    trusted_key: str | None = option(None, "--trusted-key", "Ed25519 public key (PEM, from `routecast keygen`): the "
                                     "checkpoint's manifest.sig must verify against it. Without it or "
                                     "--expect-sha256 a checkpoint is integrity-checked, not authenticated.",
                                     path=True)
    expect_sha256: str | None = option(None, "--expect-sha256", "Pinned sha256 of the checkpoint's manifest.json "
                                       "(printed by `routecast export`); any other checkpoint is refused.", metavar="HEX")
    shadow: str | None = option(None, "--shadow", "Candidate checkpoint that decides every routed request too (never "
                                "executed), logged beside the live decision (needs --decision-log).", path=True)
    canary: str | None = option(None, "--canary", "Candidate checkpoint that serves --canary-share of first turns "
                                "(conversations stay on their arm); promote or roll back with POST /admin/promote "
                                "or /admin/rollback.", path=True)
    #: the app's limits and defaults (each of its flagged fields is a flag too)
    settings: ServerSettings = field(default_factory=ServerSettings)

    @classmethod
    def from_mapping(cls, merged: dict[str, Any]) -> "ServeOptions":
        """Options and settings from one flat mapping (config file and flags merged), checked."""
        setting_names = {f.name for f in fields(ServerSettings)}
        unknown = sorted(set(merged) - setting_names - set(SERVE_KEYS))
        if unknown:
            raise ConfigError(f"unknown serve option(s) {unknown}")
        settings = ServerSettings.from_any({k: v for k, v in merged.items() if k in setting_names})
        workers = merged.get("workers", 1)
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ConfigError(f"workers must be an integer >= 1, got {workers!r}")
        return cls(settings=settings, **{k: v for k, v in merged.items() if k in SERVE_KEYS})


def flagged_fields() -> list[tuple[Field, type]]:
    """(field, its value type) of every ``serve`` flag: the options, then the settings that have one."""
    out = []
    for cls in (ServeOptions, ServerSettings):
        hints = typing.get_type_hints(cls)
        out += [(f, _value_type(hints[f.name])) for f in fields(cls) if "flag" in f.metadata]
    return out


def _value_type(hint: Any) -> type:
    """``str | None`` -> str: the type a value has when it is given."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if args else hint


#: options of ``routecast serve`` that are not app settings -> their value type (config-file keys too)
SERVE_KEYS: dict[str, type] = {f.name: t for f, t in flagged_fields() if f.name in ServeOptions.__dataclass_fields__}


#: setting -> (its value type, whether it may be null), read from the annotations of ServerSettings
_SETTING_TYPES = {name: (_value_type(hint), type(None) in typing.get_args(hint))
                  for name, hint in typing.get_type_hints(ServerSettings).items()}
#: settings that may be 0 (everything else numeric must be > 0)
_ZERO_OK = {"batch_wait_ms", "default_lam", "spend_budget_usd", "route_earlier_turns", "sticky_margin", "explore",
            "canary_share"}
#: settings that are shares (in [0, 1])
_SHARES = ("explore", "canary_share")
#: settings that take one of a few values
_CHOICES = {"budget_mode": ("settle", "reserve")}


def _check_setting(name: str, value: Any) -> Any:
    kind, optional = _SETTING_TYPES[name]
    if value is None:
        if optional:
            return None
        raise ConfigError(f"server setting {name} cannot be null")
    if kind is str:
        if not isinstance(value, str) or not value:
            raise ConfigError(f"server setting {name} must be a non-empty string, got {value!r}")
        if name in _CHOICES and value not in _CHOICES[name]:
            raise ConfigError(f"server setting {name} must be one of {', '.join(_CHOICES[name])}, got {value!r}")
        return value
    if name in _SHARES and not (isinstance(value, (int, float)) and not isinstance(value, bool)
                                and 0 <= value <= 1):
        raise ConfigError(f"server setting {name} must be a number in [0, 1], got {value!r}")
    if kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"server setting {name} must be true or false, got {value!r}")
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and not isinstance(value, int)):
        raise ConfigError(f"server setting {name} must be {'an integer' if kind is int else 'a number'}, "
                          f"got {value!r}")
    if not math.isfinite(value) or value < 0 or (value == 0 and name not in _ZERO_OK):
        raise ConfigError(f"server setting {name} must be a finite number "
                          f"{'>= 0' if name in _ZERO_OK else '> 0'}, got {value!r}")
    return kind(value)


def read_server_config(path: str | os.PathLike) -> dict[str, Any]:
    """The mapping of a server config file, keys normalised (``-`` -> ``_``) and checked.

    Settings keys are type-checked by :meth:`ServerSettings.from_any` when the app is built;
    the ``serve`` keys are checked here.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"server config file {path} not found")
    try:
        text = path.read_text(encoding="utf-8-sig")
        data = json.loads(text) if path.suffix.lower() == ".json" else _yaml_load(text)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(f"server config file {path}: cannot parse ({exc})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"server config file {path}: expected a mapping of setting -> value")
    out: dict[str, Any] = {}
    known = {f.name for f in fields(ServerSettings)} | set(SERVE_KEYS)
    for raw_key, value in data.items():
        key = str(raw_key).replace("-", "_")
        if key not in known:
            raise ConfigError(f"server config file {path}: unknown key {raw_key!r}; known: {sorted(known)}")
        want = SERVE_KEYS.get(key)
        if want is not None and value is not None and (type(value) is not want):
            raise ConfigError(f"server config file {path}: {raw_key} must be {want.__name__}, got {value!r}")
        out[key] = value
    return out


def _yaml_load(text: str) -> Any:
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(str(exc)) from None
