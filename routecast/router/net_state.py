"""Routers with a small torch head, loadable and routable without torch (the lean runtime).

:class:`TorchNetState` is the mixin a router holding one network of
:mod:`routecast.router.quality_net` in ``net_`` uses, so that ``Router.get_state()/set_state()``
store the weights as plain numpy arrays (safetensors, no pickle) and rebuild the exact
architecture from a small JSON config (``net_config_``) on load, with strict key/shape checking.

Why this module imports no torch: ``pip install routecast`` (no torch) must route mlp, mf and irt
checkpoints. The torch module stays the one source of truth of the forward pass; a checkpoint of
such a router always carries ``head.onnx``, the same network traced by ``torch.onnx.export`` and
checked against torch when it was written (:func:`routecast.router.onnx_head.export_onnx_head`).
With torch importable the network is rebuilt from the safetensors arrays (training, re-saving and
re-exporting use it); without it the arrays are kept verbatim (a re-save writes the same bytes).

A loaded checkpoint routes through its ``head.onnx`` (onnxruntime, one thread) whether torch is
installed or not: a single-prompt torch forward of the mlp head costs ~0.1 ms on one thread and
~20 ms when torch's OpenMP threads contend on a busy 2-core machine, ``head.onnx`` ~15 us
(profiled on an exported mlp checkpoint of llmrouter_9models). The graph stands for the network it
was loaded with: a router refitted after loading (a new ``net_``) routes with torch again, as does
one fitted in memory or loaded from a checkpoint without ``head.onnx``. The router's
``_predict_quality`` maps logits to quality the same way on both paths, so only float32 rounding
of the network differs (~1e-7; at most 1e-5 checked by tests/router/test_mlp_onnx_head.py).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from routecast.errors import TRAIN_EXTRA_INSTALL, CheckpointError, MissingExtraError, missing_extra

#: onnxruntime threads for the head: a few small matrix products, more threads only add contention
HEAD_THREADS = 1


def torch_available() -> bool:
    """Whether ``import torch`` works here (False on the lean runtime install)."""
    try:
        import torch  # noqa: F401
    except ModuleNotFoundError as exc:
        if (exc.name or "").partition(".")[0] != "torch":
            raise
        return False
    return True


def require_torch(what: str):
    """``import torch`` for training code; on the lean install one line naming the extra instead."""
    try:
        import torch
    except ModuleNotFoundError as exc:
        error = missing_extra(exc, what)
        if error is None:
            raise
        raise error from None
    return torch


def has_torch_net(router: Any) -> bool:
    """A router whose quality comes from a torch network on embeddings (mlp, mf, irt): one that
    ``export_onnx_head`` can trace and that needs ``head.onnx`` to route without torch."""
    config = getattr(router, "net_config_", None)
    return isinstance(router, TorchNetState) and isinstance(config, dict) and isinstance(config.get("in_dim"), int)


class TorchNetState:
    """Router mixin: keep a torch network in ``net_`` and serialise it as named arrays.

    The router sets ``net_config_`` (JSON: the keyword arguments that rebuild the network) next
    to ``net_``; weights travel as ``net.<state_dict key>`` arrays. On load the network is
    rebuilt from ``net_config_`` and filled with ``load_state_dict(strict=True)``, so a
    checkpoint whose arrays do not match the architecture is refused, never half-loaded.
    Without torch, see the module docstring: the arrays are kept and ``head.onnx`` runs.
    """

    _net_prefix = "net."

    def _build_net(self, config: dict[str, Any]):  # pragma: no cover - abstract
        raise NotImplementedError

    def _state_skip(self) -> set[str]:
        return {"net_"}

    def _extra_arrays(self) -> dict[str, np.ndarray]:
        net = getattr(self, "net_", None)
        if net is None:  # loaded without torch: the arrays exactly as they were read
            return {key: value.copy() for key, value in (getattr(self, "_lean_net_arrays", None) or {}).items()}
        return {self._net_prefix + key: value.detach().cpu().numpy().copy()
                for key, value in net.state_dict().items()}

    def _extra_array_names(self) -> set[str]:
        config = getattr(self, "net_config_", None)
        if config is None:
            return set()
        if not torch_available():
            # the architecture cannot be built here: the names are those of the checkpoint, and
            # head.onnx (whose input and output shapes are checked at load) stands for the net
            return set(getattr(self, "_loading_net_names", ()))
        import torch

        with torch.device("meta"):  # names only: no memory, no initialisation cost
            skeleton = self._build_net(config)
        return {self._net_prefix + key for key in skeleton.state_dict()}

    def set_state(self, meta: dict[str, Any], arrays: dict[str, np.ndarray]):
        self._loading_net_names = frozenset(k for k in arrays if k.startswith(self._net_prefix))
        try:
            return super().set_state(meta, arrays)  # type: ignore[misc] - the Router after this mixin
        finally:
            del self._loading_net_names

    def _load_extra_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        config = getattr(self, "net_config_", None)
        if config is None:
            raise CheckpointError(f"{type(self).__name__}: checkpoint has no net_config_")
        self.__dict__.pop("net_", None)
        self._lean_net_arrays = None
        self._head_session = None
        self._head_net = None
        if not torch_available():
            self._lean_net_arrays = {key: np.array(value, copy=True) for key, value in arrays.items()}
            return
        import torch

        net = self._build_net(config)
        state = {key[len(self._net_prefix):]: torch.from_numpy(np.array(value, copy=True))
                 for key, value in arrays.items()}
        try:
            net.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise CheckpointError(f"{type(self).__name__}: stored weights do not match the "
                                  f"architecture in net_config_: {exc}") from None
        net.eval()
        self.net_ = net

    # ---------------------------------------------------------------- lean path
    @property
    def needs_onnx_head(self) -> bool:
        """Loaded without torch and not yet given its ``head.onnx``: it cannot route yet."""
        return getattr(self, "net_", None) is None and getattr(self, "_lean_net_arrays", None) is not None \
            and getattr(self, "_head_session", None) is None

    def attach_onnx_head(self, model_bytes: bytes, entry: dict[str, Any], *, source: str) -> None:
        """Route through ``head.onnx`` (its bytes, as verified by the checkpoint loader) with onnxruntime,
        with or without torch (see the module docstring), for as long as ``net_`` is the network
        loaded with it.

        ``entry`` is the checkpoint's ``onnx_head`` field. The graph must take (batch, in_dim)
        float32 ``embeddings`` and give (batch, n_models) ``scores`` for this router's config.
        """
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = HEAD_THREADS
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        try:
            session = ort.InferenceSession(model_bytes, sess_options=options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own error types
            raise CheckpointError(f"{source}: not a loadable ONNX graph ({exc})") from None
        input_name, output_name = entry.get("input", "embeddings"), entry.get("output", "scores")
        inputs = {i.name: i for i in session.get_inputs()}
        outputs = {o.name: o for o in session.get_outputs()}
        if set(inputs) != {input_name} or output_name not in outputs:
            raise CheckpointError(f"{source}: the ONNX head has inputs {sorted(inputs)} and outputs {sorted(outputs)}; "
                                  f"expected input {input_name!r} and output {output_name!r} (field 'onnx_head')")
        in_dim = int(self.net_config_["in_dim"])
        n_models = len(getattr(self, "models_", ()))
        shape_in, shape_out = inputs[input_name].shape, outputs[output_name].shape
        if len(shape_in) != 2 or shape_in[1] != in_dim or len(shape_out) != 2 or shape_out[1] != n_models:
            raise CheckpointError(f"{source}: the ONNX head maps {shape_in} -> {shape_out}; this router needs "
                                  f"[batch, {in_dim}] -> [batch, {n_models}] (fields 'state.net_config_', 'models')")
        self._head_session = session
        self._head_net = getattr(self, "net_", None)  # the torch network this graph was exported from, if built
        self._head_io = (input_name, output_name)
        self._head_bytes, self._head_entry = bytes(model_bytes), dict(entry)  # a re-save writes the same graph

    def onnx_head_bytes(self) -> tuple[bytes, dict[str, Any]] | None:
        """(``head.onnx`` bytes, ``onnx_head`` entry) this router was loaded with when torch was absent."""
        if getattr(self, "net_", None) is not None or getattr(self, "_head_session", None) is None:
            return None
        return self._head_bytes, dict(self._head_entry)

    def _net_logits(self, X: np.ndarray) -> np.ndarray:
        """Raw network scores (n, n_models), float64: ``head.onnx`` when it was loaded for the current
        network (always, on the lean install), else torch."""
        net = getattr(self, "net_", None)
        session = getattr(self, "_head_session", None)
        if session is None or net is not getattr(self, "_head_net", None):
            session = None
        if net is not None and session is None:
            from routecast.router.quality_net import predict_logits

            return predict_logits(net, X)
        if session is None:
            raise MissingExtraError(f"router {getattr(self, 'name', None) or type(self).__name__!r} has a torch "
                                    "network but torch is not installed and no head.onnx was loaded: load it from a "
                                    f"checkpoint that ships head.onnx, or {TRAIN_EXTRA_INSTALL}")
        input_name, output_name = self._head_io
        X = np.ascontiguousarray(X, dtype=np.float32)
        if len(X) == 0:
            return np.zeros((0, len(self.models_)), dtype=np.float64)
        return np.asarray(session.run([output_name], {input_name: X})[0], dtype=np.float64)


__all__ = ["TorchNetState", "torch_available", "require_torch", "has_torch_net"]
