"""The encoder every router, command and pipeline uses when none is given.

One constant, here, so the default is a single decision (recorded in the README with the
benchmark behind it: benchmarks/results/latency.md) rather than a string repeated in a dozen
signatures. Checkpoints always record the encoder they were trained with, so changing the
default never changes how an exported router routes.

Why ``static``: in benchmarks/latency.py (one run, 2 cores) the static encoder distilled from the
bundled MiniLM routes a prompt end to end in 0.4 ms (linear) to 0.8 ms (mlp) against 20-50 ms for
MiniLM, and the linear and mlp routers keep their AIQ within 2 % of the best encoder on both
benchmark datasets. knn loses 2.5-3.4 % with it: pass ``encoder="minilm"`` (or
``onnx:quantize=int8``) where those points matter more than latency.
"""

DEFAULT_ENCODER = "static"
