"""Training side (PyTorch): models, losses, trainers, data, checkpoints."""
