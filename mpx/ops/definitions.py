"""The built-in ops: importing this module registers every one of them."""

from . import (  # noqa: F401 - registration side effects
    attention_ops,
    elementwise_ops,
    embedding_ops,
    gemm_ops,
    loss_ops,
    norm_ops,
    precision_ops,
    reduction_ops,
    softmax_ops,
)
