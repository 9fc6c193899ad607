"""Experiments on top of salkit, run from the repository root and not installed with the package.

``python -m experiments.repro`` (``make repro``) is the reproduction harness: it trains and
evaluates on the synthetic set and reports whether each of the papers' claims reproduces
(docs/repro.md). Code here may import any part of salkit; salkit never imports it.
"""
