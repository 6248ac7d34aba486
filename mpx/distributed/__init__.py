"""Training beyond one process: FSDP2 models under MixedPrecision, sharded checkpoints, multi-process launch.

Nothing is imported here: `mpx.training` imports `mpx.distributed.fsdp`, and the checkpoint modules import
`mpx.training`'s; public names are on `mpx.` (e.g. `mpx.Policy.fsdp_mixed_precision`, `mpx.save_checkpoint`).
"""
