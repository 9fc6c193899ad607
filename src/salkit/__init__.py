"""salkit: cooperative (LVM + EBM) and quasi-equilibrium saliency — training, export and a torch-free runtime.

The tree is the import path. ``kernels`` and ``base`` are torch-free foundations; ``train`` (torch)
and ``runtime`` (no torch) stand side by side on them; ``export`` sits above both.
"""
