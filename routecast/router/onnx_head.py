"""``head.onnx``: the torch network of a router (mlp, mf, irt) traced to ONNX for its checkpoint.

Embeddings (batch, dim) float32 -> raw scores (batch, n_models), checked against torch with
onnxruntime before it is written. A loaded checkpoint routes with it, torch installed or not
(:mod:`routecast.router.net_state`); it also serves outside Python.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from routecast.errors import CheckpointError

ONNX_HEAD_FILE = "head.onnx"


def write_onnx_head(router: Any, path: Path, *, required: bool) -> dict[str, Any] | None:
    """``head.onnx`` for a torch-head router and its ``onnx_head`` entry, else None (or, when
    ``required``, the refusal of :func:`export_onnx_head`)."""
    from routecast.atomic import write_bytes
    from routecast.router.net_state import has_torch_net

    shipped = router.onnx_head_bytes() if has_torch_net(router) else None
    if shipped is not None:  # loaded without torch: write back the graph it routes with
        write_bytes(path, shipped[0])
        return shipped[1]
    if required or (has_torch_net(router) and getattr(router, "net_", None) is not None):
        return export_onnx_head(router, path)
    return None


def export_onnx_head(router: Any, path: Path, *, opset: int = 17) -> dict[str, Any]:
    """Export ``router.net_`` (a torch nn.Module on embeddings) to ONNX and verify it with onnxruntime."""
    import warnings

    net = getattr(router, "net_", None)
    in_dim = (getattr(router, "net_config_", None) or {}).get("in_dim")
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        torch = None
    if torch is None or not isinstance(net, torch.nn.Module) or not isinstance(in_dim, int):
        raise CheckpointError(f"router {type(router).name!r} has no torch head on embeddings (net_ + "
                              "net_config_['in_dim']); only such routers (mlp, mf) export to ONNX")
    import onnxruntime as ort

    from routecast.atomic import atomic_path
    from routecast.router.quality_net import predict_logits

    net.eval()
    dummy = torch.zeros((2, in_dim), dtype=torch.float32)
    with atomic_path(path) as tmp, warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (dummy,), str(tmp), dynamo=False, input_names=["embeddings"], output_names=["scores"],
                          dynamic_axes={"embeddings": {0: "batch"}, "scores": {0: "batch"}}, opset_version=opset)
    probe = np.random.default_rng(0).normal(size=(16, in_dim)).astype(np.float32)
    probe /= np.linalg.norm(probe, axis=1, keepdims=True)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(["scores"], {"embeddings": probe})[0]
    expected = predict_logits(net, probe)
    if not np.allclose(got, expected, atol=1e-4, rtol=1e-4):
        raise CheckpointError(f"{path}: ONNX head differs from torch (max abs diff "
                              f"{float(np.abs(got - expected).max()):.2e}); not exported")
    return {"file": ONNX_HEAD_FILE, "input": "embeddings", "output": "scores", "in_dim": in_dim,
            "opset": opset, "note": "raw network scores; the router's _predict_quality maps them to quality"}
