"""Backends: numpy (the reference oracle), ort (ONNX Runtime on the optimised graph) and cuda;
``engine.resolve_backend`` says which one a backend name (auto, cpu, ...) runs."""
