"""Checkpoint → bundle: ONNX graphs, TensorRT engines, manifest, Triton repository."""
