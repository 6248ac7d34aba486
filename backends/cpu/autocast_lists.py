"""Which aten ops torch.autocast runs in low precision, and which it keeps in fp32 or promotes (torch 2.x).

Written out from aten/src/ATen/autocast_mode.cpp (CPU and CUDA tables). The emulated autocast rounds every
LOWP op; tests/test_emulated_autocast_coverage.py reads the dispatcher's own Autocast kernels and fails
when torch adds an op that is in none of these sets, so a new low-precision op cannot go unnoticed.
"""

from __future__ import annotations

import torch


def _names(text: str) -> frozenset[str]:
    return frozenset(f"aten::{name}" for name in text.split())


# lower_precision_fp on AutocastCPU
CPU_LOWP = _names(
    """conv1d conv1d.padding conv2d conv2d.padding conv3d conv3d.padding bmm mm linalg_vecdot baddbmm addmm
    _addmm_activation addbmm linear mkldnn_reorder_linear_weight _convolution.deprecated matmul conv_tbc
    mkldnn_rnn_layer conv_transpose1d conv_transpose2d.input conv_transpose3d.input prelu
    scaled_dot_product_attention _native_multi_head_attention"""
)

# lower_precision_fp on AutocastCUDA (reached on the CPU too when a CUDA model is emulated)
CUDA_LOWP = _names(
    """_convolution.deprecated _convolution conv1d conv2d conv3d conv_tbc conv_transpose1d conv_transpose2d.input
    conv_transpose3d.input convolution prelu addmm addmv addr matmul einsum mm mv linalg_vecdot linear addbmm
    baddbmm bmm chain_matmul linalg_multi_dot _thnn_fused_lstm_cell _thnn_fused_gru_cell lstm_cell gru_cell
    rnn_tanh_cell rnn_relu_cell _scaled_dot_product_flash_attention scaled_dot_product_attention
    cudnn_convolution cudnn_convolution_transpose"""
)

LOWP = CPU_LOWP | CUDA_LOWP

# fp32 (and fp32_set_opt_dtype / fp32_append_dtype) on either device: inputs cast up to fp32
FP32 = _names(
    """avg_pool3d binary_cross_entropy grid_sampler polar prod prod.dim_int prod.dim_Dimname quantile
    quantile.scalar nanquantile nanquantile.scalar stft stft.center cdist grid_sampler_2d
    _grid_sampler_2d_cpu_fallback grid_sampler_3d trace view_as_complex cholesky cholesky_inverse cholesky_solve
    inverse lu_solve orgqr ormqr pinverse max_pool3d max_unpool2d max_unpool3d adaptive_avg_pool3d
    reflection_pad1d reflection_pad2d replication_pad1d replication_pad2d replication_pad3d mse_loss
    cosine_embedding_loss nll_loss nll_loss2d hinge_embedding_loss poisson_nll_loss smooth_l1_loss
    cross_entropy_loss l1_loss huber_loss margin_ranking_loss soft_margin_loss triplet_margin_loss
    multi_margin_loss ctc_loss.IntList ctc_loss.Tensor kl_div multilabel_margin_loss
    binary_cross_entropy_with_logits fft_fft fft_ifft fft_fft2 fft_ifft2 fft_fftn fft_ifftn fft_rfft fft_irfft
    fft_rfft2 fft_irfft2 fft_rfftn fft_irfftn fft_hfft fft_ihfft linalg_cond linalg_cond.p_str
    linalg_matrix_rank linalg_matrix_rank.tol_tensor linalg_matrix_rank.atol_rtol_tensor
    linalg_matrix_rank.atol_rtol_float linalg_solve linalg_cholesky linalg_svdvals linalg_eigvals
    linalg_eigvalsh linalg_inv linalg_householder_product linalg_tensorinv linalg_tensorsolve
    fake_quantize_per_tensor_affine geqrf _lu_with_info qr svd triangular_solve fractional_max_pool2d
    fractional_max_pool3d adaptive_max_pool3d multilabel_margin_loss_forward linalg_qr linalg_cholesky_ex
    linalg_svd linalg_eig linalg_eigh linalg_lstsq linalg_inv_ex
    acos asin cosh erfinv exp expm1 log log10 log2 log1p reciprocal rsqrt sinh tan pow.Tensor_Scalar
    pow.Tensor_Tensor pow.Scalar softplus layer_norm native_layer_norm group_norm rms_norm frobenius_norm.dim
    nuclear_norm nuclear_norm.dim cosine_similarity dist pdist renorm logsumexp softmax.int softmax.Dimname
    log_softmax.int log_softmax.Dimname cumprod cumprod.dimname cumsum cumsum.dimname linalg_vector_norm
    linalg_matrix_norm linalg_matrix_norm.str_ord sum sum.dim_IntList sum.dim_DimnameList norm.Scalar
    norm.ScalarOpt_dim norm.names_ScalarOpt_dim upsample_nearest1d upsample_nearest2d upsample_nearest3d
    _upsample_nearest_exact1d _upsample_nearest_exact2d _upsample_nearest_exact3d upsample_linear1d
    upsample_bilinear2d _upsample_bilinear2d_aa upsample_trilinear3d upsample_bicubic2d _upsample_bicubic2d_aa"""
)

# promote: inputs cast to the widest float type among them
PROMOTE = _names(
    """stack cat index_copy index_copy.dimname addcdiv addcmul atan2 bilinear cross dot vdot grid_sampler
    index_put tensordot scatter_add"""
)


def torch_autocast_ops(dispatch_key: str) -> frozenset[str]:
    """The ops that have a kernel of their own (not the fallthrough) for `dispatch_key` in this torch build."""
    has_kernel = torch._C._dispatch_has_kernel_for_dispatch_key
    return frozenset(name for name in torch._C._dispatch_get_all_op_names() if has_kernel(name, dispatch_key))


def present(names: frozenset[str]) -> list[tuple[str, str]]:
    """(op name, overload) of the names this torch build has, e.g. ('aten::conv1d', 'padding')."""
    found = []
    for name in sorted(names):
        base, _, overload = name.partition(".")
        try:
            torch._C._dispatch_find_schema_or_throw(base, overload)
        except RuntimeError:
            continue
        found.append((base, overload))
    return found


# Inputs added to a GEMM's result rather than multiplied in it, by op: (positions, keyword names)
_ADDITIVE: dict[str, tuple[tuple[int, ...], tuple[str, ...]]] = {
    **dict.fromkeys(("addmm", "addbmm", "baddbmm", "addmv", "addr", "_addmm_activation"), ((0,), ("self",))),
    **dict.fromkeys(
        ("linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d",
         "_convolution", "convolution", "conv_tbc", "cudnn_convolution"),
        ((2,), ("bias",)),
    ),
    **dict.fromkeys(("lstm_cell", "gru_cell", "rnn_tanh_cell", "rnn_relu_cell"), ((4, 5), ("b_ih", "b_hh"))),
    "mkldnn_rnn_layer": ((3, 4), ("weight2", "weight3")),
    "scaled_dot_product_attention": ((3,), ("attn_mask",)),
    "_native_multi_head_attention": ((6, 8, 9), ("qkv_bias", "proj_bias", "mask")),
}  # fmt: skip


def additive_arguments(op: torch._ops.OpOverload) -> tuple[tuple[int, ...], tuple[str, ...]]:
    """Where `op` takes a bias, mask or accumulator: the emulation keeps those in the GEMM's output format."""
    return _ADDITIVE.get(op._schema.name.removeprefix("aten::"), ((), ()))
