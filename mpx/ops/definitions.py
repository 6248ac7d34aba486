"""The built-in ops: importing this module registers every one of them."""

from . import elementwise_ops, gemm_ops, precision_ops  # noqa: F401 - registration side effects
