"""The cuda backend: mixed precision on NVIDIA GPUs through PyTorch (autocast, fused optimizers, fp8 GEMMs)."""
