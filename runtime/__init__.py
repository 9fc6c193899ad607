"""Torch-free runtime: bundles, backends, Langevin/Broyden loops, Python API, server.

Nothing here imports torch (tests/runtime/test_no_torch.py enforces it).
"""
