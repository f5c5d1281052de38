"""VALID 2-D convolutions (+ bias, activation, max-pool): interchangeable implementations and
the per-backend choice among them.

Every implementation computes the same function as ``lax.conv_general_dilated`` with NHWC
inputs, HWIO kernels, stride 1 and VALID padding; they differ only in speed:

  ``xla``      XLA's own convolution. The choice on GPU/TPU, and on CPU for a shared
               (unstacked) layer with several input channels.
  ``eigen``    XLA's convolution forward; its gradient written as two more convolutions in the
               NHWC x HWIO -> NHWC layout (``_eigen_bwd``), which XLA:CPU runs with Eigen in
               every context. Autodiff's transposed convolutions come out in other dimension
               orders: at the top level of a program XLA:CPU fixes them with transposes, but
               inside a ``lax.scan`` / ``lax.map`` body it runs them through its generic loop
               emitter. Measured (LeNet hard step, batch 256, busy 2-core machine, one process,
               interleaved): first layer 'patches', second 'xla': 91 ms alone, 643 ms per step
               in a 5-step scan; second layer 'eigen': 34 and 33 ms. Under ``jax.vmap`` over
               task cotangents (gradient weightings' Jacobian) 'eigen' is slower than 'xla'
               (PCGrad, T = 10: 2.5 s against 0.39 s per step), so 'auto' picks it only outside
               ``per_task_backward``.
  ``im2col``   the k*k shifted slices of the NHWC input concatenated on the channel axis,
               then one matmul (autodiff for the gradient).
  ``patches``  the block computed batch-minor: the input is transposed to (C, H, W, N), its
               k*k shifted slices concatenated on the leading axis form the patch matrix
               P (k*k*C, H'*W'*N), and the layer is one matmul K^T P with a hand-written
               VJP: dK = P g^T (P kept from the forward), dx = the k*k shifted sums of K g
               (col2im). Bias, activation and max-pool run in the same layout, where the
               batch of 256 is the contiguous axis; only the pooled output is transposed
               back. On XLA:CPU this is faster than ``xla`` for layers with few input
               channels, and for task columns / experts (``jax.vmap`` over stacked kernels),
               where ``xla`` becomes a grouped convolution that XLA:CPU runs several times
               slower; the per-column matmuls batch instead.

``select_impl`` resolves ``"auto"``: ``xla`` off CPU; on CPU ``patches`` for layers with fewer
than ``PATCHES_MAX_IN_CHANNELS`` input channels (and for stacked copies run under vmap), otherwise
``eigen``, or ``xla`` where the layer's VJP is vmapped over tasks (``per_task_backward``). ``stacked_mode``: with 'auto' on CPU, n stacked copies (task columns, experts) are
unrolled into n unstacked layers (``layers.apply_stacked``), so a column costs what the shared
trunk's layer costs; elsewhere they run as one vmap. Measured on a 2-core x86 CPU (AMD EPYC,
XLA:CPU of jax 0.10.2, LeNet at batch 256, single-thread profiles): the first layer (1 input
channel) costs about half as much with ``patches`` as with ``xla``, the second (10 channels) is
faster with ``xla``; a vmapped ``xla`` layer is a grouped convolution, several times slower.
The max-pool gradient is one select (``max_pool``), for every implementation.

Inside ``lax.scan`` XLA:CPU's own convolution with autodiff's gradient is 5-8x slower than
outside it (the LeNet's hard-sharing step at batch 256 on the idle 2-core machine: 24 ms per step
alone, 142 ms per step in a 5-step scan; with 'eigen' for the second layer 18 and 19 ms): the
transposed convolutions of the gradient. With 'eigen' chosen by 'auto', a CPU run scans K steps
per dispatch and a program maps its members (``mtlx.parallel.dispatch.scan_is_slow``,
``mtlx.parallel.program.member_axis``); where a per-task backward keeps XLA's gradient, it runs
one step per dispatch and its members unrolled.
"""

from __future__ import annotations

import contextlib
import contextvars

import jax
import jax.numpy as jnp
from jax import lax

IMPLS = ("auto", "xla", "eigen", "im2col", "patches")
PATCHES_MAX_IN_CHANNELS = 4  # on CPU, unstacked layers with fewer input channels use 'patches'
_DIMS = ("NHWC", "HWIO", "NHWC")


_PER_TASK_BACKWARD = contextvars.ContextVar("mtlx_conv_per_task_backward", default=False)


@contextlib.contextmanager
def per_task_backward():
    """Trace a forward whose VJP will run under ``jax.vmap`` over task cotangents (the Jacobian /
    Gram passes of ``mtlx.grads``): 'auto' then keeps XLA's own gradient, which batches well, where
    it would pick 'eigen' (trace-time only; the traced program is what it is afterwards)."""
    token = _PER_TASK_BACKWARD.set(True)
    try:
        yield
    finally:
        _PER_TASK_BACKWARD.reset(token)


def select_impl(impl: str, in_channels: int, stacked: bool = False, backend: str | None = None,
                per_task: bool | None = None) -> str:
    """The implementation a conv layer runs: ``impl`` itself unless it is 'auto' (see the module doc).
    ``per_task``: the layer's VJP runs vmapped over tasks (default: inside :func:`per_task_backward`)."""
    if impl not in IMPLS:
        raise ValueError(f"conv impl={impl!r} is not valid; choose one of {list(IMPLS)}")
    if impl != "auto":
        return impl
    if (backend or jax.default_backend()) != "cpu":
        return "xla"
    if stacked or in_channels < PATCHES_MAX_IN_CHANNELS:
        return "patches"
    return "xla" if (_PER_TASK_BACKWARD.get() if per_task is None else per_task) else "eigen"


def stacked_mode(impl: str, backend: str | None = None) -> str:
    """How n stacked copies of a conv layer run: 'unroll' (n unstacked layers, each with its
    own 'auto' choice; 'auto' on CPU) or 'vmap' (one batched program; everywhere else)."""
    return "unroll" if impl == "auto" and (backend or jax.default_backend()) == "cpu" else "vmap"


def xla_conv(x, kernel):
    """XLA's VALID convolution, NHWC x HWIO -> NHWC (the reference every other one equals)."""
    return lax.conv_general_dilated(x, kernel, (1, 1), "VALID", dimension_numbers=_DIMS)


def im2col_conv(x, kernel):
    """VALID convolution as one matmul over the k*k shifted NHWC slices, channel-concatenated."""
    k = kernel.shape[0]
    h, w = x.shape[1] - k + 1, x.shape[2] - k + 1
    patches = jnp.concatenate([x[:, i:i + h, j:j + w, :] for i in range(k) for j in range(k)], axis=-1)
    return patches @ kernel.reshape(-1, kernel.shape[-1])


def _pool_windows(x, p):
    a, h, w, c = x.shape
    return x[:, : h // p * p, : w // p * p, :].reshape(a, h // p, p, w // p, p, c)


@jax.custom_vjp
def _max_pool2(x):
    return _pool_windows(x, 2).max(axis=(2, 4))


def max_pool(x, p):
    """Non-overlapping p x p max-pool over axes 1 and 2 (H, W in both NHWC and CHWN) as
    reshape + max; rows/columns beyond a multiple of p are dropped, as in VALID pooling.

    The gradient is one select: every input equal to its window's max receives the window's
    cotangent. JAX's own gradient of a max splits it evenly among ties, which costs a count
    over every window (several passes on XLA:CPU); the two agree wherever the max is unique,
    and after a ReLU tied zeros get 0 either way (ReLU's gradient at 0 is 0)."""
    return _max_pool2(x) if p == 2 else _pool_windows(x, p).max(axis=(2, 4))


def _max_pool2_fwd(x):
    y = _max_pool2(x)
    return y, (x, y)


def _max_pool2_bwd(res, g):
    x, y = res
    a, h, w, c = x.shape
    hp, wp = y.shape[1], y.shape[2]
    dx = jnp.where(_pool_windows(x, 2) == y[:, :, None, :, None, :], g[:, :, None, :, None, :], 0.0)
    dx = dx.reshape(a, 2 * hp, 2 * wp, c)
    return (jnp.pad(dx, ((0, 0), (0, h - 2 * hp), (0, w - 2 * wp), (0, 0))),)


_max_pool2.defvjp(_max_pool2_fwd, _max_pool2_bwd)


def _patch_matrix(xt, k):
    """(C, H, W, N) -> (C*k*k, H', W', N): row (c*k + i)*k + j is channel c shifted by (i, j).

    Built as two stacks of k shifted slices (XLA:CPU copies k*k separate slices several times
    slower) on axes after C, so that under ``jax.vmap`` (stacked copies) the copy axis stays
    leading and the batched matmuls need no transpose of P."""
    h, w = xt.shape[1] - k + 1, xt.shape[2] - k + 1
    cols = jnp.stack([xt[:, :, j:j + w, :] for j in range(k)], axis=1)     # (C, k_j, H, W', N)
    p = jnp.stack([cols[:, :, i:i + h] for i in range(k)], axis=1)          # (C, k_i, k_j, H', W', N)
    return p.reshape((xt.shape[0] * k * k, h, w, xt.shape[3]))


def _kernel_matrix(kernel):
    """HWIO (k, k, C, O) -> (C*k*k, O), rows in the patch matrix's order."""
    k, _, cin, cout = kernel.shape
    return jnp.transpose(kernel, (2, 0, 1, 3)).reshape(cin * k * k, cout)


def _cm_forward(xt, kernel):
    p = _patch_matrix(xt, kernel.shape[0])
    return lax.dot_general(_kernel_matrix(kernel), p, (((0,), (0,)), ((), ()))), p


@jax.custom_vjp
def channel_major_conv(xt, kernel):
    """VALID convolution of a batch-minor input (C, H, W, N) with an HWIO kernel -> (O, H', W', N)."""
    return _cm_forward(xt, kernel)[0]


def _cm_fwd(xt, kernel):
    y, p = _cm_forward(xt, kernel)
    return y, (p, kernel, xt.shape)


def _cm_bwd(res, g):
    """dK = P g^T (contracting H'W'N; P as the left operand, so XLA:CPU copies the smaller g);
    dx = col2im(K g): the k*k blocks of rows of K g, each shifted back to its offset and summed."""
    p, kernel, (_, hh, ww, _) = res
    k, _, cin, cout = kernel.shape
    dk = lax.dot_general(p, g, (((1, 2, 3), (1, 2, 3)), ((), ())))
    dk = jnp.transpose(dk.reshape(cin, k, k, cout), (1, 2, 0, 3))
    d = lax.dot_general(_kernel_matrix(kernel), g, (((1,), (0,)), ((), ()))).reshape((cin, k, k) + g.shape[1:])
    h, w = g.shape[1], g.shape[2]
    dx = sum(jnp.pad(d[:, i, j], ((0, 0), (i, hh - h - i), (j, ww - w - j), (0, 0))) for i in range(k) for j in range(k))
    return dx, dk


channel_major_conv.defvjp(_cm_fwd, _cm_bwd)


def patches_conv(x, kernel):
    """``channel_major_conv`` on NHWC in and out (the two transposes included)."""
    return jnp.transpose(channel_major_conv(jnp.transpose(x, (3, 1, 2, 0)), kernel), (3, 1, 2, 0))


@jax.custom_vjp
def eigen_conv(x, kernel):
    """``xla_conv`` whose gradient is two more NHWC x HWIO -> NHWC convolutions (see ``_eigen_bwd``)."""
    return xla_conv(x, kernel)


def _eigen_fwd(x, kernel):
    return xla_conv(x, kernel), (x, kernel)


def _eigen_bwd(res, g):
    """dx = the full correlation of g with the flipped, in/out-swapped kernel; dK[a, b, c, o] =
    sum_{n,h,w} x[n, h+a, w+b, c] g[n, h, w, o], a VALID convolution of x with channels as its
    batch and the batch as its features, (C, H, W, N) x (H', W', N, O) -> (C, k, k, O). Written
    in the one layout XLA:CPU hands to Eigen's convolution, so the gradient runs there in every
    context: autodiff's own transposed convolutions get other dimension orders, which XLA:CPU
    fixes with transposes at the top level of a program but, inside a ``lax.scan`` / ``lax.map``
    body, runs through its generic loop emitter several times slower."""
    x, kernel = res
    k = kernel.shape[0]
    flipped = jnp.transpose(jnp.flip(kernel, (0, 1)), (0, 1, 3, 2))
    dx = xla_conv(jnp.pad(g, ((0, 0), (k - 1, k - 1), (k - 1, k - 1), (0, 0))), flipped)
    dk = xla_conv(jnp.transpose(x, (3, 1, 2, 0)), jnp.transpose(g, (1, 2, 0, 3)))
    return dx, jnp.transpose(dk, (1, 2, 0, 3))


eigen_conv.defvjp(_eigen_fwd, _eigen_bwd)

CONVS = {"xla": xla_conv, "eigen": eigen_conv, "im2col": im2col_conv, "patches": patches_conv}


def conv_act_pool(x, kernel, bias, act, pool: int, impl: str):
    """act(conv(x, kernel) + bias), then a pool x pool max-pool (pool=1: none); NHWC in and out.
    ``impl`` is a resolved name (``select_impl``). 'patches' keeps the batch-minor layout through
    bias, activation and pool and transposes only the pooled output back."""
    if impl == "patches":
        y = act(channel_major_conv(jnp.transpose(x, (3, 1, 2, 0)), kernel) + bias[:, None, None, None])
        y = max_pool(y, pool) if pool > 1 else y
        return jnp.transpose(y, (3, 1, 2, 0))
    y = act(CONVS[impl](x, kernel) + bias)
    return max_pool(y, pool) if pool > 1 else y
