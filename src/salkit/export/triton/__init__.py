"""The code that runs inside Triton Inference Server's Python backend, copied into the model
repository by :mod:`salkit.export.triton_repo` (``export-trt --triton-repo``); salkit never imports
these modules itself.

* ``loop_model.py`` → ``<entry>/1/model.py``: the loop model, BLS calls to the graph models;
* ``loop_coop.py`` / ``loop_qefpn.py`` → ``<entry>/1/salkit_loop.py``: the kind's loop
  (``ExportKind.triton_loop``);
* ``graph_model.py`` → ``<graph>/1/model.py`` with ``--triton-graph-backend python``: one graph
  run by ONNX Runtime;
* ``prelude.py`` → ``_salkit_prelude.py`` beside every model.py: standard library only, it puts
  the config's ``EXTRA_SYS_PATH`` on ``sys.path`` before numpy is imported.

Inside Triton a model can import only what its folder holds and what the stub's Python has: the
standard library, numpy (ONNX Runtime for graph_model.py), ``triton_python_backend_utils``,
``_salkit_prelude`` and, for the loops, the copy of ``salkit.kernels`` and ``salkit.base.errors``
written beside them (tests/export/test_triton.py checks every module here against that list).
"""
