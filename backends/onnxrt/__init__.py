"""The onnxrt backend: mpx ops as ONNX graphs run by an ONNX Runtime execution provider (EP).

Nothing here imports onnxruntime at import time; `execution_provider_backend` is the one helper a
vendor plugin needs to register its EP under a name of its own.
"""

from .vendor import execution_provider_backend

__all__ = ["execution_provider_backend"]
