"""Shared, torch-free conventions every stage uses: image decoding and maps, dataset folder
layouts, saliency metrics.

``train/``, ``export/`` and ``runtime/`` all import from here; this package imports nothing of
them and never torch (tests/test_packaging.py enforces both).
"""
