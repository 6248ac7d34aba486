"""Training torch models on onnxruntime: mpx's torch.compile backend and the placement of its graphs."""

from .compile_backend import OrtCompiler, compile_model

__all__ = ["OrtCompiler", "compile_model"]
