"""Shared test doubles and small real data for the whole suite, imported as ordinary modules
(``from tests._support.serving import TinyRouter``): no ``sys.path`` edits anywhere.

- :mod:`tests._support.paths`: the repository and the shared data folder (``../shared/data`` beside
  the clone, as in CI), and :func:`~tests._support.paths.shared_dataset`, which skips a test only
  when that folder really is absent.
- :mod:`tests._support.serving`: a tiny registered router (``test-tiny``), a synthetic log whose
  best model depends on the prompt, checkpoints, and a real uvicorn server thread on loopback.
- :mod:`tests._support.fake_backend`: a fake OpenAI-compatible backend on 127.0.0.1.
- :mod:`tests._support.fake_openai`: a fake chat endpoint for collect/score (slow, flaky, garbage modes).
- :mod:`tests._support.fake_chat`: a fake chat backend with test-chosen answers, JSON or SSE, that
  records which models were called and whether each call streamed (the cascade server tests).
- :mod:`tests._support.data_files`: tiny long-format frames written as csv/jsonl/json/parquet.
- :mod:`tests._support.encoders`: an encoder that counts what it is asked to embed.

Subprocesses started by tests import these too: they run with ``cwd`` = the repository, so
``tests`` is importable there as well.
"""
