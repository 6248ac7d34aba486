"""Registers `acme-npu`: an ONNX Runtime execution provider plus its options, nothing else.

A real vendor names its own EP (e.g. "AcmeNpuExecutionProvider") and options; this template maps to
the CPU EP so that it runs anywhere.
"""

from mpx import hookimpl
from mpx.backends.onnxrt import execution_provider_backend


@hookimpl
def mpx_backends():
    yield execution_provider_backend(
        "acme-npu",
        provider="CPUExecutionProvider",
        provider_options={"device_id": "0"},
        session_config={"session.intra_op.allow_spinning": "0"},
        description="Acme NPU through ONNX Runtime (template: the CPU EP stands in for the NPU's EP)",
    )
