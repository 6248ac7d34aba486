"""Model ops and losses as ONNX graphs, forward and backward (backward built from forward ONNX ops).

The op's own kernel runs in the case's format (MatMul, Conv, Add, Softmax, ...), so the EP's real
support for that format shows; multi-node formulas (activations, norms, losses, gradients) compute in
fp32 between their inputs and one final rounding, as torch's kernels do (opmath).
"""

from __future__ import annotations

import math

from .builder import FLOAT
from .graph_math import INV_SQRT_2PI, SQRT_HALF, down, f32, reduce_all, swap_last, unbroadcast, up
from .graphs import GRAPHS, GraphContext, OpGraph

# -- element-wise ------------------------------------------------------------------------------------


def _add(ctx: GraphContext) -> list[str]:
    return [ctx.node("Add", ctx["a"], ctx["b"])]


def _add_backward(ctx: GraphContext) -> list[str]:
    (g,), shape = ctx.grad_outputs, ctx.grad_shapes[0]
    return [unbroadcast(ctx, g, shape, ctx.shapes["a"]), unbroadcast(ctx, g, shape, ctx.shapes["b"])]


def _mul(ctx: GraphContext) -> list[str]:
    return [ctx.node("Mul", ctx["a"], ctx["b"])]


def _mul_backward(ctx: GraphContext) -> list[str]:
    (g,), shape = ctx.grad_outputs, ctx.grad_shapes[0]
    grad_a = ctx.node("Mul", g, ctx["b"])
    grad_b = ctx.node("Mul", g, ctx["a"])
    return [unbroadcast(ctx, grad_a, shape, ctx.shapes["a"]), unbroadcast(ctx, grad_b, shape, ctx.shapes["b"])]


def _relu(ctx: GraphContext) -> list[str]:
    return [ctx.node("Relu", ctx["x"])]


def _relu_backward(ctx: GraphContext) -> list[str]:
    blocked = ctx.node("LessOrEqual", ctx["x"], ctx.const(0.0))  # as torch: NaN inputs pass the gradient
    return [ctx.node("Where", blocked, ctx.const(0.0), ctx.grad_outputs[0])]


def _gelu(ctx: GraphContext) -> list[str]:
    ctx.decomposable = True
    if not ctx.decompose and ctx.b.opset >= 20:
        return [ctx.node("Gelu", ctx["x"])]
    ctx.decompositions.append("Gelu as 0.5 * x * (1 + Erf(x / sqrt 2)) in fp32")
    x = up(ctx, ctx["x"])
    return [down(ctx, ctx.node("Mul", x, _normal_cdf(ctx, x)))]


def _normal_cdf(ctx: GraphContext, x: str) -> str:
    erf = ctx.node("Erf", ctx.node("Mul", x, f32(ctx, SQRT_HALF)))
    return ctx.node("Mul", f32(ctx, 0.5), ctx.node("Add", f32(ctx, 1.0), erf))


def _gelu_backward(ctx: GraphContext) -> list[str]:
    x, g = up(ctx, ctx["x"]), up(ctx, ctx.grad_outputs[0])
    cdf = _normal_cdf(ctx, x)
    density = ctx.node("Exp", ctx.node("Mul", f32(ctx, -0.5), ctx.node("Mul", x, x)))
    pdf = ctx.node("Mul", f32(ctx, INV_SQRT_2PI), density)
    return [down(ctx, ctx.node("Mul", g, ctx.node("Add", cdf, ctx.node("Mul", x, pdf))))]


def _silu(ctx: GraphContext) -> list[str]:
    x = up(ctx, ctx["x"])
    return [down(ctx, ctx.node("Mul", x, ctx.node("Sigmoid", x)))]


def _silu_backward(ctx: GraphContext) -> list[str]:
    x, g = up(ctx, ctx["x"]), up(ctx, ctx.grad_outputs[0])
    s = ctx.node("Sigmoid", x)
    inner = ctx.node("Add", f32(ctx, 1.0), ctx.node("Mul", x, ctx.node("Sub", f32(ctx, 1.0), s)))
    return [down(ctx, ctx.node("Mul", g, ctx.node("Mul", s, inner)))]


def _exp(ctx: GraphContext) -> list[str]:
    return [ctx.node("Exp", ctx["x"])]


def _exp_backward(ctx: GraphContext) -> list[str]:
    x, g = up(ctx, ctx["x"]), up(ctx, ctx.grad_outputs[0])
    return [down(ctx, ctx.node("Mul", g, ctx.node("Exp", x)))]


def _sqrt(ctx: GraphContext) -> list[str]:
    return [ctx.node("Sqrt", ctx["x"])]


def _sqrt_backward(ctx: GraphContext) -> list[str]:
    x, g = up(ctx, ctx["x"]), up(ctx, ctx.grad_outputs[0])
    return [down(ctx, ctx.node("Div", ctx.node("Mul", g, f32(ctx, 0.5)), ctx.node("Sqrt", x)))]


def _where(ctx: GraphContext) -> list[str]:
    return [ctx.node("Where", ctx["mask"], ctx["a"], ctx["b"])]


def _where_backward(ctx: GraphContext) -> list[str]:
    g, zero = ctx.grad_outputs[0], ctx.const(0.0)
    return [ctx.node("Where", ctx["mask"], g, zero), ctx.node("Where", ctx["mask"], zero, g)]


# -- GEMMs ---------------------------------------------------------------------------------------------


def _matmul(ctx: GraphContext) -> list[str]:
    return [ctx.node("MatMul", ctx["a"], ctx["b"])]


def _matmul_backward(ctx: GraphContext) -> list[str]:
    g = ctx.grad_outputs[0]
    rank_a, rank_b = len(ctx.shapes["a"]), len(ctx.shapes["b"])
    grad_a = ctx.node("MatMul", g, swap_last(ctx, ctx["b"], rank_b))
    grad_b = ctx.node("MatMul", swap_last(ctx, ctx["a"], rank_a), g)
    return [grad_a, grad_b]


def _linear(ctx: GraphContext) -> list[str]:
    w_t = ctx.node("Transpose", ctx["weight"], perm=[1, 0])
    y = ctx.node("MatMul", ctx["x"], w_t)
    return [ctx.node("Add", y, ctx["bias"]) if "bias" in ctx.values else y]


def _linear_backward(ctx: GraphContext) -> list[str]:
    g, x_shape = ctx.grad_outputs[0], ctx.shapes["x"]
    out_features, in_features = ctx.shapes["weight"]
    grad_x = ctx.node("MatMul", g, ctx["weight"])
    g2 = ctx.node("Reshape", g, ctx.ints([-1, out_features]))
    x2 = ctx.node("Reshape", ctx["x"], ctx.ints([-1, in_features]))
    grad_w = ctx.node("MatMul", ctx.node("Transpose", g2, perm=[1, 0]), x2)
    results = {"x": grad_x, "weight": grad_w}
    if "bias" in ctx.values:
        results["bias"] = down(ctx, reduce_all(ctx, "ReduceSum", up(ctx, g2), [0]))
    del x_shape
    return _by_arg(ctx, results)


def _by_arg(ctx: GraphContext, results: dict[str, str]) -> list[str]:
    """The gradients of the op's differentiable args, in order."""
    return [results[ctx.op.args[i].name] for i in ctx.op.differentiable_args]


def _conv_attrs(ctx: GraphContext) -> dict:
    stride, padding = ctx.attr("stride", 1), ctx.attr("padding", 1)  # the op's reference: padding=1
    stride = [stride, stride] if isinstance(stride, int) else list(stride)
    padding = [padding, padding] if isinstance(padding, int) else list(padding)
    return {"strides": stride, "pads": padding + padding}


def _conv2d(ctx: GraphContext) -> list[str]:
    inputs = [ctx["x"], ctx["weight"]] + ([ctx["bias"]] if "bias" in ctx.values else [])
    return [ctx.node("Conv", *inputs, **_conv_attrs(ctx))]


def _conv2d_backward(ctx: GraphContext) -> list[str]:
    g = ctx.grad_outputs[0]
    attrs = _conv_attrs(ctx)
    n, c, h, w = ctx.shapes["x"]
    o, _, kh, kw = ctx.shapes["weight"]
    _, _, oh, ow = ctx.grad_shapes[0]
    (sh, sw), (ph, pw) = attrs["strides"], attrs["pads"][:2]
    extra = [h + 2 * ph - kh - (oh - 1) * sh, w + 2 * pw - kw - (ow - 1) * sw]
    grad_x = ctx.node("ConvTranspose", g, ctx["weight"], strides=[sh, sw], pads=attrs["pads"], output_padding=extra)
    # grad_w[o, c, i, j] = sum_{n, y, x} g[n, o, y, x] * x_padded[n, c, y*s + i, x*s + j]: a Conv of the
    # channel-major x with the channel-major g as kernel, dilated by the stride.
    x_t = ctx.node("Transpose", ctx["x"], perm=[1, 0, 2, 3])
    g_t = ctx.node("Transpose", g, perm=[1, 0, 2, 3])
    full = ctx.node("Conv", x_t, g_t, pads=attrs["pads"], dilations=[sh, sw])
    cropped = ctx.node("Slice", full, ctx.ints([0, 0]), ctx.ints([kh, kw]), ctx.ints([2, 3]))
    grad_w = ctx.node("Transpose", cropped, perm=[1, 0, 2, 3])
    results = {"x": grad_x, "weight": grad_w}
    if "bias" in ctx.values:
        results["bias"] = down(ctx, reduce_all(ctx, "ReduceSum", up(ctx, g), [0, 2, 3]))
    del n, c, o
    return _by_arg(ctx, results)


# -- softmax, norms ---------------------------------------------------------------------------------


def _axis(ctx: GraphContext) -> int:
    return int(ctx.attr("dim", ctx.attr("axis", -1)))


def _softmax(ctx: GraphContext) -> list[str]:
    return [ctx.node("Softmax", ctx["x"], axis=_axis(ctx))]


def _softmax_backward(ctx: GraphContext) -> list[str]:
    y = ctx.node("Softmax", up(ctx, ctx["x"]), axis=_axis(ctx))
    g = up(ctx, ctx.grad_outputs[0])
    dot = reduce_all(ctx, "ReduceSum", ctx.node("Mul", g, y), [_axis(ctx)], keepdims=1)
    return [down(ctx, ctx.node("Mul", y, ctx.node("Sub", g, dot)))]


def _log_softmax(ctx: GraphContext) -> list[str]:
    return [ctx.node("LogSoftmax", ctx["x"], axis=_axis(ctx))]


def _log_softmax_backward(ctx: GraphContext) -> list[str]:
    y = ctx.node("Softmax", up(ctx, ctx["x"]), axis=_axis(ctx))
    g = up(ctx, ctx.grad_outputs[0])
    total = reduce_all(ctx, "ReduceSum", g, [_axis(ctx)], keepdims=1)
    return [down(ctx, ctx.node("Sub", g, ctx.node("Mul", y, total)))]


def _eps(ctx: GraphContext) -> float:
    return float(ctx.attr("eps", 1e-5))


def _norm_axes(ctx: GraphContext) -> list[int]:
    rank, normalized = len(ctx.shapes["x"]), len(ctx.shapes["weight"]) if "weight" in ctx.shapes else 1
    return list(range(rank - normalized, rank))


def _layer_norm(ctx: GraphContext) -> list[str]:
    inputs = [ctx["x"], ctx["weight"]] + ([ctx["bias"]] if "bias" in ctx.values else [])
    return [ctx.node("LayerNormalization", *inputs, axis=_norm_axes(ctx)[0], epsilon=_eps(ctx), stash_type=1)]


def _normalized(ctx: GraphContext, center: bool) -> tuple[str, str, str]:
    """(x_hat, 1/std, x - mean) in fp32 over the normalized axes (center=False: the rms form)."""
    axes = _norm_axes(ctx)
    x = up(ctx, ctx["x"])
    centered = ctx.node("Sub", x, reduce_all(ctx, "ReduceMean", x, axes, keepdims=1)) if center else x
    variance = reduce_all(ctx, "ReduceMean", ctx.node("Mul", centered, centered), axes, keepdims=1)
    inv_std = ctx.node("Reciprocal", ctx.node("Sqrt", ctx.node("Add", variance, f32(ctx, _eps(ctx)))))
    return ctx.node("Mul", centered, inv_std), inv_std, centered


def _norm_backward(ctx: GraphContext, center: bool) -> list[str]:
    axes = _norm_axes(ctx)
    x_hat, inv_std, _ = _normalized(ctx, center)
    g = up(ctx, ctx.grad_outputs[0])
    w = up(ctx, ctx["weight"])
    g_hat = ctx.node("Mul", g, w)
    mean_g_xhat = reduce_all(ctx, "ReduceMean", ctx.node("Mul", g_hat, x_hat), axes, keepdims=1)
    inner = ctx.node("Sub", g_hat, ctx.node("Mul", x_hat, mean_g_xhat))
    if center:
        inner = ctx.node("Sub", inner, reduce_all(ctx, "ReduceMean", g_hat, axes, keepdims=1))
    grad_x = down(ctx, ctx.node("Mul", inner, inv_std))
    batch_axes = list(range(len(ctx.shapes["x"]) - len(axes)))
    grad_w = down(ctx, reduce_all(ctx, "ReduceSum", ctx.node("Mul", g, x_hat), batch_axes), _type(ctx, "weight"))
    results = {"x": grad_x, "weight": grad_w}
    if "bias" in ctx.values:
        results["bias"] = down(ctx, reduce_all(ctx, "ReduceSum", g, batch_axes), _type(ctx, "bias"))
    return _by_arg(ctx, results)


def _type(ctx: GraphContext, arg: str) -> int:
    from .graphs import ONNX_OF_TORCH

    return ONNX_OF_TORCH[next(a for a in ctx.op.args if a.name == arg).storage_dtype(ctx.fmt)]


def _rms_norm(ctx: GraphContext) -> list[str]:
    x_hat, _, _ = _normalized(ctx, center=False)
    return [down(ctx, ctx.node("Mul", x_hat, up(ctx, ctx["weight"])))]


def _batch_statistics(ctx: GraphContext) -> tuple[str, str, str]:
    """(scale, shift, inv_std) per channel in fp32, shaped to broadcast over x: y = x * scale + shift."""
    shape = [1, -1] + [1] * (len(ctx.shapes["x"]) - 2)

    def channel(name: str) -> str:
        return ctx.node("Reshape", up(ctx, ctx[name], _type(ctx, name)), ctx.ints(shape))

    mean, var, weight, bias = (channel(n) for n in ("running_mean", "running_var", "weight", "bias"))
    inv_std = ctx.node("Reciprocal", ctx.node("Sqrt", ctx.node("Add", var, f32(ctx, _eps(ctx)))))
    scale = ctx.node("Mul", weight, inv_std)
    return scale, ctx.node("Sub", bias, ctx.node("Mul", mean, scale)), inv_std


def _batch_norm(ctx: GraphContext) -> list[str]:
    """Inference batch norm with running statistics, computed in fp32 as torch's kernels do."""
    scale, shift, _ = _batch_statistics(ctx)
    return [down(ctx, ctx.node("Add", ctx.node("Mul", up(ctx, ctx["x"]), scale), shift))]


def _batch_norm_backward(ctx: GraphContext) -> list[str]:
    rank = len(ctx.shapes["x"])
    shape, axes = [1, -1] + [1] * (rank - 2), [0] + list(range(2, rank))
    g, x = up(ctx, ctx.grad_outputs[0]), up(ctx, ctx["x"])
    _, _, inv_std = _batch_statistics(ctx)
    mean, w = (ctx.node("Reshape", up(ctx, ctx[n], _type(ctx, n)), ctx.ints(shape)) for n in ("running_mean", "weight"))
    x_hat = ctx.node("Mul", ctx.node("Sub", x, mean), inv_std)
    results = {
        "x": down(ctx, ctx.node("Mul", g, ctx.node("Mul", w, inv_std))),
        "weight": down(ctx, reduce_all(ctx, "ReduceSum", ctx.node("Mul", g, x_hat), axes), _type(ctx, "weight")),
        "bias": down(ctx, reduce_all(ctx, "ReduceSum", g, axes), _type(ctx, "bias")),
    }
    return _by_arg(ctx, results)


# -- embedding, attention, reductions ---------------------------------------------------------------


def _embedding(ctx: GraphContext) -> list[str]:
    return [ctx.node("Gather", ctx["weight"], ctx["index"], axis=0)]


def _embedding_backward(ctx: GraphContext) -> list[str]:
    vocabulary, dim = ctx.shapes["weight"]
    flat = ctx.node("Reshape", ctx["index"], ctx.ints([-1]))
    one_hot = ctx.node("OneHot", flat, ctx.ints([vocabulary]), ctx.const([0.0, 1.0], FLOAT), axis=-1)
    g = ctx.node("Reshape", up(ctx, ctx.grad_outputs[0]), ctx.ints([-1, dim]))
    return [down(ctx, ctx.node("MatMul", ctx.node("Transpose", one_hot, perm=[1, 0]), g))]


def _attention_scale(ctx: GraphContext) -> float:
    scale = ctx.attr("scale")
    return float(scale) if scale is not None else 1.0 / math.sqrt(ctx.shapes["q"][-1])


def _attention_probs(ctx: GraphContext) -> str:
    """softmax(q k^T * scale [+ causal mask]) in fp32, from the low-format score GEMM."""
    rank = len(ctx.shapes["q"])
    scores = up(ctx, ctx.node("MatMul", ctx["q"], swap_last(ctx, ctx["k"], rank)))
    scores = ctx.node("Mul", scores, f32(ctx, _attention_scale(ctx)))
    if ctx.attr("is_causal", False):
        length_q, length_k = ctx.shapes["q"][-2], ctx.shapes["k"][-2]
        import numpy as np

        mask = np.triu(np.full((length_q, length_k), -np.inf, dtype=np.float32), k=1 + length_k - length_q)
        scores = ctx.node("Add", scores, ctx.const(mask, FLOAT))
    return ctx.node("Softmax", scores, axis=-1)


def _attention(ctx: GraphContext) -> list[str]:
    probs = down(ctx, _attention_probs(ctx))
    return [ctx.node("MatMul", probs, ctx["v"])]


def _attention_backward(ctx: GraphContext) -> list[str]:
    """The score GEMM runs in the format as in the forward pass; the gradient GEMMs take their fp32
    intermediates (probabilities, score gradients) as they are, accumulating in fp32."""
    rank = len(ctx.shapes["q"])
    probs = _attention_probs(ctx)
    q, k, v, g = (up(ctx, value) for value in (ctx["q"], ctx["k"], ctx["v"], ctx.grad_outputs[0]))
    grad_v = ctx.node("MatMul", swap_last(ctx, probs, rank), g)
    grad_p = ctx.node("MatMul", g, swap_last(ctx, v, rank))
    dot = reduce_all(ctx, "ReduceSum", ctx.node("Mul", grad_p, probs), [-1], keepdims=1)
    grad_s = ctx.node("Mul", ctx.node("Mul", probs, ctx.node("Sub", grad_p, dot)), f32(ctx, _attention_scale(ctx)))
    grad_q = ctx.node("MatMul", grad_s, k)
    grad_k = ctx.node("MatMul", swap_last(ctx, grad_s, rank), q)
    return _by_arg(ctx, {"q": down(ctx, grad_q), "k": down(ctx, grad_k), "v": down(ctx, grad_v)})


def _reduce_axes(ctx: GraphContext) -> list[int]:
    dim = ctx.attr("dim", ctx.attr("axis", -1))  # the ops reduce the last axis unless told otherwise
    if dim is None:
        return list(range(len(ctx.shapes["x"])))
    return [int(d) for d in dim] if isinstance(dim, (list, tuple)) else [int(dim)]


def _keepdims(ctx: GraphContext) -> int:
    return int(bool(ctx.attr("keepdim", False)))


def _reduce(op_type: str):
    def forward(ctx: GraphContext) -> list[str]:
        return [reduce_all(ctx, op_type, ctx["x"], _reduce_axes(ctx), _keepdims(ctx))]

    return forward


def _expand_grad(ctx: GraphContext, g: str) -> str:
    """The gradient of a reduction's output broadcast back over the reduced axes."""
    keep_shape = [1 if i in _normalized_axes(ctx) else n for i, n in enumerate(ctx.shapes["x"])]
    return ctx.node("Expand", ctx.node("Reshape", g, ctx.ints(keep_shape)), ctx.ints(ctx.shapes["x"]))


def _normalized_axes(ctx: GraphContext) -> set[int]:
    rank = len(ctx.shapes["x"])
    return {a % rank for a in _reduce_axes(ctx)} if rank else set()


def _reduce_sum_backward(ctx: GraphContext) -> list[str]:
    return [_expand_grad(ctx, ctx.grad_outputs[0])]


def _reduce_mean_backward(ctx: GraphContext) -> list[str]:
    count = math.prod(ctx.shapes["x"][a] for a in _normalized_axes(ctx))
    g = ctx.node("Div", up(ctx, ctx.grad_outputs[0]), f32(ctx, float(count)))
    return [down(ctx, _expand_grad(ctx, g))]


def _reduce_max_backward(ctx: GraphContext) -> list[str]:
    """torch.amax's gradient: split evenly between the elements equal to the maximum."""
    axes = _reduce_axes(ctx)
    x = up(ctx, ctx["x"])
    peak = reduce_all(ctx, "ReduceMax", x, axes, keepdims=1)
    hits = ctx.node("Cast", ctx.node("Equal", x, peak), to=FLOAT)
    count = reduce_all(ctx, "ReduceSum", hits, axes, keepdims=1)
    g = _expand_grad(ctx, up(ctx, ctx.grad_outputs[0]))
    return [down(ctx, ctx.node("Div", ctx.node("Mul", g, hits), count))]


# -- losses (fp32 outputs) ----------------------------------------------------------------------------


def _mse_loss(ctx: GraphContext) -> list[str]:
    difference = ctx.node("Sub", up(ctx, ctx["pred"]), up(ctx, ctx["target"]))
    return [reduce_all(ctx, "ReduceMean", ctx.node("Mul", difference, difference), range(len(ctx.shapes["pred"])))]


def _mse_loss_backward(ctx: GraphContext) -> list[str]:
    count = float(math.prod(ctx.shapes["pred"]))
    difference = ctx.node("Sub", up(ctx, ctx["pred"]), up(ctx, ctx["target"]))
    grad = ctx.node("Mul", difference, ctx.node("Mul", up(ctx, ctx.grad_outputs[0], FLOAT), f32(ctx, 2.0 / count)))
    results = {"pred": down(ctx, grad), "target": down(ctx, ctx.node("Neg", grad))}
    return _by_arg(ctx, results)


def _cross_entropy(ctx: GraphContext) -> list[str]:
    log_probs = ctx.node("LogSoftmax", up(ctx, ctx["logits"]), axis=-1)
    picked = ctx.node("GatherElements", log_probs, ctx.node("Unsqueeze", ctx["target"], ctx.ints([-1])), axis=-1)
    return [ctx.node("Neg", reduce_all(ctx, "ReduceMean", picked, [0, 1]))]


def _cross_entropy_backward(ctx: GraphContext) -> list[str]:
    batch, classes = ctx.shapes["logits"]
    probs = ctx.node("Softmax", up(ctx, ctx["logits"]), axis=-1)
    one_hot = ctx.node("OneHot", ctx["target"], ctx.ints([classes]), ctx.const([0.0, 1.0], FLOAT), axis=-1)
    scale = ctx.node("Div", up(ctx, ctx.grad_outputs[0], FLOAT), f32(ctx, float(batch)))
    return [down(ctx, ctx.node("Mul", ctx.node("Sub", probs, one_hot), scale))]


for _name, _forward, _backward in (
    ("add", _add, _add_backward), ("mul", _mul, _mul_backward), ("relu", _relu, _relu_backward),
    ("gelu", _gelu, _gelu_backward), ("silu", _silu, _silu_backward), ("exp", _exp, _exp_backward),
    ("sqrt", _sqrt, _sqrt_backward), ("where", _where, _where_backward),
    ("matmul", _matmul, _matmul_backward), ("linear", _linear, _linear_backward),
    ("conv2d", _conv2d, _conv2d_backward),
    ("softmax", _softmax, _softmax_backward), ("log_softmax", _log_softmax, _log_softmax_backward),
    ("layer_norm", _layer_norm, lambda ctx: _norm_backward(ctx, center=True)),
    ("rms_norm", _rms_norm, lambda ctx: _norm_backward(ctx, center=False)),
    ("batch_norm", _batch_norm, _batch_norm_backward),
    ("embedding", _embedding, _embedding_backward),
    ("scaled_dot_product_attention", _attention, _attention_backward),
    ("reduce_sum", _reduce("ReduceSum"), _reduce_sum_backward),
    ("reduce_mean", _reduce("ReduceMean"), _reduce_mean_backward),
    ("reduce_max", _reduce("ReduceMax"), _reduce_max_backward),
    ("mse_loss", _mse_loss, _mse_loss_backward), ("cross_entropy", _cross_entropy, _cross_entropy_backward),
):
    GRAPHS[_name] = OpGraph(_forward, _backward)
