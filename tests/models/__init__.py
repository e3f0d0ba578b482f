"""Real model artifacts the tests build themselves (no downloads): see tiny_onnx.py."""
