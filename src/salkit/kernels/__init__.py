"""Numerical primitives shared by training (torch) and the runtime (numpy, no torch).

Each primitive is written once against the small set of array operations that numpy
arrays and torch tensors share, so one function serves both sides; where the two need
different code, both forms live in the same module with a test that they agree.
This package must never import torch at module level.
"""
