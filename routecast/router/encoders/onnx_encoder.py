"""MiniLM (or any local sentence-transformers BERT-like model) run with onnxruntime.

Why: onnxruntime on CPU is faster than torch eager for small batches and loads in a fraction of
the time, and the serving runtime should not need torch at all. The graph is exported once with
``torch.onnx.export`` (TorchScript exporter: the dynamo one needs onnxscript, and
sentence-transformers[onnx] would downgrade pinned packages) into the routecast cache dir; mean
pooling and L2 normalisation are part of the graph, so the runtime only tokenises (HF
``tokenizers``) and calls the session. ``quantize="int8"`` additionally applies onnxruntime's
dynamic per-channel int8 weight quantisation (4x smaller, cosine ~0.99 to the float model).

Exported folder. :meth:`OnnxEncoder.export_folder` writes what the encoder runs (the one graph,
float or int8, ``tokenizer.json`` and ``routecast_onnx.json``: format, graph file and its sha256,
quantisation, dim, max_seq_length and the fingerprint of the source model); a checkpoint ships
that folder (``encoder_model/``), so loading it needs neither torch, nor the source model, nor the
export cache. ``onnx:/that/folder`` builds an encoder with the same ``name`` as the one that
wrote it (the embedding cache and the checkpoint's name check agree), which reads the graph
once, checks its sha256 and hands those bytes to onnxruntime.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np

from routecast.atomic import atomic_path, write_text
from routecast.errors import ConfigError
from routecast.router.encoders.base import Encoder, l2_normalise
from routecast.router.encoders.sentence_transformer import (
    DEFAULT_MAX_CHARS, bundled_minilm_path, check_model_folder, folder_fingerprint, max_seq_length_of)

QUANTIZE_CHOICES = (None, "int8")
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
#: onnxruntime threads: the target machines have 2 cores, more threads only add contention
INTRA_OP_THREADS = 2
#: the description of an exported folder (see the module docstring)
EXPORT_META = "routecast_onnx.json"
EXPORT_FORMAT = "routecast-onnx-encoder/1"
TOKENIZER_FILE = "tokenizer.json"
_HEX64 = re.compile(r"[0-9a-f]{64}")
_PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def model_file_name(quantize: str | None) -> str:
    return "model.int8pc.onnx" if quantize else "model.onnx"


def is_exported_folder(folder: str | os.PathLike | None) -> bool:
    """Whether ``folder`` was written by :meth:`OnnxEncoder.export_folder` (it runs without torch)."""
    return folder is not None and (Path(folder).expanduser() / EXPORT_META).is_file()


def read_export_meta(folder: Path) -> dict:
    """``routecast_onnx.json`` of an exported folder, every field checked (one ConfigError naming it)."""
    path = folder / EXPORT_META
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(f"file {path}: not readable JSON ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != EXPORT_FORMAT:
        raise ConfigError(f"file {path}: field 'format' must be {EXPORT_FORMAT!r}, got "
                          f"{meta.get('format') if isinstance(meta, dict) else meta!r}")
    checks = {
        "model_file": lambda v: isinstance(v, str) and bool(_PLAIN_NAME.fullmatch(v)) and v.endswith(".onnx"),
        "model_sha256": lambda v: isinstance(v, str) and bool(_HEX64.fullmatch(v)),
        "source_fingerprint": lambda v: isinstance(v, str) and bool(_HEX64.fullmatch(v)),
        "tokenizer_file": lambda v: v == TOKENIZER_FILE,
        "quantize": lambda v: v in QUANTIZE_CHOICES,
        "dim": lambda v: type(v) is int and 1 <= v <= 1 << 16,  # noqa: E721 - a bool is no dim
        "max_seq_length": lambda v: type(v) is int and 1 <= v <= 1 << 20,  # noqa: E721
    }
    for key, ok in checks.items():
        if not ok(meta.get(key)):
            raise ConfigError(f"file {path}: field {key!r} is missing or invalid ({meta.get(key)!r})")
    for key in ("model_file", "tokenizer_file"):
        if not (folder / meta[key]).is_file():
            raise ConfigError(f"file {path}: field {key!r} names {meta[key]!r}, which is not in {folder}")
    return meta


def onnx_dir(folder: Path, fingerprint: str) -> Path:
    from routecast.router.embedding_cache import default_cache_dir

    return default_cache_dir() / "encoders" / f"onnx-{folder.name[:40]}-{fingerprint[:12]}"


def export_onnx(source_folder: str | os.PathLike, out_path: str | os.PathLike, *, opset: int = 17) -> Path:
    """Export transformer + mean pooling + L2 normalisation of a local ST folder to one ONNX file."""
    import torch

    from routecast.router.encoders.sentence_transformer import load_sentence_transformer

    model = load_sentence_transformer(check_model_folder(source_folder))
    transformer = model[0].auto_model.eval()

    class _Pooled(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask, token_type_ids):
            hidden = self.inner(input_ids=input_ids, attention_mask=attention_mask,
                                token_type_ids=token_type_ids).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, p=2.0, dim=1)

    dummy = torch.ones((2, 8), dtype=torch.long)
    axes = {name: {0: "batch", 1: "sequence"} for name in INPUT_NAMES}
    axes["embedding"] = {0: "batch"}
    out_path = Path(out_path)
    with atomic_path(out_path) as tmp, warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(_Pooled(transformer), (dummy, torch.ones_like(dummy), torch.zeros_like(dummy)), str(tmp),
                          dynamo=False, input_names=list(INPUT_NAMES), output_names=["embedding"],
                          dynamic_axes=axes, opset_version=opset, do_constant_folding=True)
    return out_path


def quantize_int8(float_path: str | os.PathLike, out_path: str | os.PathLike) -> Path:
    """Dynamic int8 weights, per output channel: on 100 real prompts per-tensor int8 kept only cosine
    0.96 (min 0.87) to the float model, per-channel 0.993 (min 0.988) at the same size and speed."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    out_path = Path(out_path)
    root = logging.getLogger()
    level = root.level
    with atomic_path(out_path) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        root.setLevel(logging.ERROR)  # onnxruntime logs a pre-processing hint at WARNING on the root logger
        try:
            quantize_dynamic(str(float_path), str(tmp), weight_type=QuantType.QInt8, per_channel=True)
        finally:
            root.setLevel(level)
    return out_path


class OnnxEncoder(Encoder):
    """Sentence embeddings from an ONNX graph: a sentence-transformers folder (bundled MiniLM by
    default) exported (and quantised) on first use into the cache dir, or an exported folder."""

    def __init__(self, folder: str | os.PathLike | None = None, *, quantize: str | None = None,
                 max_chars: int | None = DEFAULT_MAX_CHARS, cache_dir: str | os.PathLike | None = None):
        if quantize not in QUANTIZE_CHOICES:
            raise ConfigError(f"onnx encoder: quantize must be one of {QUANTIZE_CHOICES}, got {quantize!r}")
        self.quantize = quantize
        self.max_chars = max_chars
        self._session = None
        self._tokenizer = None
        self.exported = is_exported_folder(folder)
        if self.exported:
            self._init_exported(Path(folder).expanduser().resolve())
            return
        bundled = folder is None
        self.folder = check_model_folder(bundled_minilm_path() if bundled else folder)
        self.max_seq_length = max_seq_length_of(self.folder) or 512
        self.fingerprint = folder_fingerprint(self.folder)
        self.cache_dir = Path(cache_dir) if cache_dir is not None else onnx_dir(self.folder, self.fingerprint)
        opts = ([] if bundled else [str(self.folder)]) + ([f"quantize={quantize}"] if quantize else []) + (
            [] if max_chars == DEFAULT_MAX_CHARS else [f"max_chars={max_chars}"])
        self.spec = "onnx" + (":" + ",".join(opts) if opts else "")
        self.name = self._name()
        self.dim = self._read_dim()

    def _init_exported(self, folder: Path) -> None:
        meta = read_export_meta(folder)
        if meta["quantize"] != self.quantize:
            raise ConfigError(f"onnx encoder {str(folder)!r}: the folder holds the "
                              f"{meta['quantize'] or 'float'} graph ({meta['model_file']}), the spec asks for "
                              f"quantize={self.quantize}")
        self.folder = self.cache_dir = folder
        self.max_seq_length = meta["max_seq_length"]
        self.fingerprint = meta["source_fingerprint"]
        self.dim = meta["dim"]
        self._meta = meta
        opts = [str(folder)] + ([f"quantize={self.quantize}"] if self.quantize else []) + (
            [] if self.max_chars == DEFAULT_MAX_CHARS else [f"max_chars={self.max_chars}"])
        self.spec = "onnx:" + ",".join(opts)
        self.name = self._name()

    def _name(self) -> str:
        return (f"onnx{'-int8pc' if self.quantize else ''}-{self.fingerprint[:16]}-seq{self.max_seq_length}"
                f"-max{self.max_chars}")

    def _read_dim(self) -> int:
        config = json.loads((self.folder / "config.json").read_text(encoding="utf-8"))
        return int(config["hidden_size"])

    @property
    def model_path(self) -> Path:
        return self.cache_dir / (self._meta["model_file"] if self.exported else model_file_name(self.quantize))

    @property
    def tokenizer_path(self) -> Path:
        return self.folder / TOKENIZER_FILE

    def ensure_exported(self) -> Path:
        from routecast.router.encoders.build_lock import build_lock

        if self.exported:
            return self.model_path

        float_path = self.cache_dir / "model.onnx"
        if self.model_path.is_file() and float_path.is_file():
            return self.model_path
        with build_lock(self.cache_dir):
            if not float_path.is_file():
                export_onnx(self.folder, float_path)
            if self.quantize and not self.model_path.is_file():
                quantize_int8(float_path, self.model_path)
        return self.model_path

    def export_folder(self, dest: str | os.PathLike) -> Path:
        """Write the graph this encoder runs, ``tokenizer.json`` and ``routecast_onnx.json`` into ``dest``.

        What a checkpoint ships (``encoder_model/``): an encoder built on ``dest`` has this one's
        ``name`` and embeddings, and needs no torch. Exporting the graph first needs torch (the
        train extra) unless it is already in the cache or this encoder is itself an exported folder.
        """
        model = self.ensure_exported()
        dest = Path(dest)
        dest.mkdir(parents=True, exist_ok=True)
        if not self.tokenizer_path.is_file():
            raise ConfigError(f"onnx encoder {self.spec!r}: {self.tokenizer_path} not found (the runtime tokenises with it)")
        digest = hashlib.sha256()
        with open(model, "rb") as source, open(dest / model.name, "wb") as target:
            for block in iter(lambda: source.read(1 << 20), b""):
                digest.update(block)
                target.write(block)
        shutil.copyfile(self.tokenizer_path, dest / TOKENIZER_FILE)
        meta = {"format": EXPORT_FORMAT, "model_file": model.name, "model_sha256": digest.hexdigest(),
                "tokenizer_file": TOKENIZER_FILE, "quantize": self.quantize, "dim": int(self.dim),
                "max_seq_length": int(self.max_seq_length), "source_fingerprint": self.fingerprint}
        write_text(dest / EXPORT_META, json.dumps(meta, indent=2, sort_keys=True) + "\n")
        return dest

    def _model_source(self):
        """What onnxruntime opens: the cached export's path, or an exported folder's graph bytes
        after their sha256 matched ``routecast_onnx.json`` (read once: checked bytes are used bytes)."""
        path = self.ensure_exported()
        if not self.exported:
            return path
        data = path.read_bytes()
        if hashlib.sha256(data).hexdigest() != self._meta["model_sha256"]:
            raise ConfigError(f"file {path}: sha256 differs from field 'model_sha256' of "
                              f"{self.folder / EXPORT_META}; the graph is modified or truncated")
        return data

    def _load(self):
        import onnxruntime as ort
        from tokenizers import Tokenizer

        source = self._model_source()
        path = self.model_path
        options = ort.SessionOptions()
        options.intra_op_num_threads = INTRA_OP_THREADS
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        try:
            self._session = ort.InferenceSession(source if isinstance(source, bytes) else str(source),
                                                 sess_options=options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - a corrupt cached export: say where it is
            hint = "re-export it" if self.exported else "delete it to re-export"
            raise ConfigError(f"cannot load ONNX model {path} ({exc}); {hint}") from exc
        self._inputs = {i.name for i in self._session.get_inputs()}
        tokenizer = Tokenizer.from_file(str(self.tokenizer_path))
        tokenizer.enable_truncation(max_length=self.max_seq_length)
        padding = tokenizer.padding or {}
        tokenizer.enable_padding(pad_id=int(padding.get("pad_id", 0)), pad_token=str(padding.get("pad_token", "[PAD]")),
                                 pad_type_id=int(padding.get("pad_type_id", 0)))  # to the longest in the batch
        self._tokenizer = tokenizer

    def encode(self, texts: Sequence[str], *, batch_size: int = 32, show_progress: bool = False) -> np.ndarray:
        texts = self.truncate(list(texts))
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        if self._session is None:
            self._load()
        # sort by length so each batch pads to similar lengths (what sentence-transformers does too)
        order = np.argsort([-len(t) for t in texts], kind="stable")
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for start in range(0, len(texts), max(1, batch_size)):
            idx = order[start:start + batch_size]
            encodings = self._tokenizer.encode_batch([texts[i] for i in idx])
            feed = {
                "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
                "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
                "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64),
            }
            out[idx] = self._session.run(["embedding"], {k: v for k, v in feed.items() if k in self._inputs})[0]
        return l2_normalise(out)
