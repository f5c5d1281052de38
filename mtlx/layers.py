"""The blocks every architecture stacks, as pure functions over explicit weights.

A block spec (``Dense``, ``Conv``, ``Embed``, ``BiLSTM``) is a frozen
dataclass with
  ``weight_shapes(in_shape)``  the factorisable weights {name: shape}
                               (what tensor_factorised stacks over tasks),
  ``bias_shapes(in_shape)``    the other weights {name: shape},
  ``out_shape(in_shape)``      one example's output shape,
  ``apply(w, x, mask)``        the pure forward on a batch.
Shapes exclude the batch axis. ``Block`` and ``StackedBlock`` turn a spec into
flax parameters: one copy (shared) or ``n`` independent copies applied with one
``jax.vmap`` (task columns, experts).
"""

from __future__ import annotations

import dataclasses
import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from mtlx import conv as conv_lib, taps
from mtlx.conv import im2col_conv, max_pool, xla_conv  # noqa: F401  (re-exported: the blocks' public helpers)

ACTIVATIONS = {"relu": jax.nn.relu, "tanh": jnp.tanh, "none": lambda x: x, "sigmoid": jax.nn.sigmoid}


def _act(name):
    if name not in ACTIVATIONS:
        raise ValueError(f"activation={name!r} is not valid; choose one of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]


def _variance_scaling(fan_in, fan_out, mode="fan_avg"):
    """Glorot-uniform (fan_avg) or LeCun-normal (fan_in) initialiser."""

    def init(key, shape):
        if mode == "fan_avg":
            lim = math.sqrt(6.0 / (fan_in + fan_out))
            return jax.random.uniform(key, shape, jnp.float32, -lim, lim)
        return jax.random.normal(key, shape, jnp.float32) / math.sqrt(fan_in)

    return init


@dataclasses.dataclass(frozen=True)
class Dense:
    """y = act(x W + b). Image inputs (H, W, C) are flattened first."""

    features: int
    activation: str = "relu"

    def _din(self, in_shape):
        return math.prod(in_shape) if len(in_shape) == 3 else in_shape[-1]

    def weight_shapes(self, in_shape):
        return {"kernel": (self._din(in_shape), self.features)}

    def bias_shapes(self, in_shape):
        return {"bias": (self.features,)}

    def out_shape(self, in_shape):
        return (self.features,) if len(in_shape) == 3 else tuple(in_shape[:-1]) + (self.features,)

    def init(self, key, in_shape):
        din = self._din(in_shape)
        return {"kernel": _variance_scaling(din, self.features)(key, (din, self.features)),
                "bias": jnp.zeros((self.features,))}

    def apply(self, w, x, mask=None):
        if x.ndim == 4:
            x = x.reshape(x.shape[0], -1)
        return _act(self.activation)(x @ w["kernel"] + w["bias"])


@dataclasses.dataclass(frozen=True)
class Conv:
    """VALID k x k convolution, activation, then p x p max-pool (pool=1: none).

    ``impl`` (config field, optional): 'auto' (default) lets ``mtlx.conv.select_impl`` pick per
    backend, input channels and whether the block is one of stacked copies (task columns,
    experts); 'xla', 'im2col' or 'patches' force one. All give the same values (mtlx/conv.py).
    """

    features: int
    kernel: int = 5
    pool: int = 2
    activation: str = "relu"
    impl: str = "auto"

    def weight_shapes(self, in_shape):
        return {"kernel": (self.kernel, self.kernel, in_shape[-1], self.features)}

    def bias_shapes(self, in_shape):
        return {"bias": (self.features,)}

    def out_shape(self, in_shape):
        h, w = in_shape[0] - self.kernel + 1, in_shape[1] - self.kernel + 1
        return (h // self.pool, w // self.pool, self.features)

    def init(self, key, in_shape):
        fan_in = self.kernel * self.kernel * in_shape[-1]
        shape = self.weight_shapes(in_shape)["kernel"]
        return {"kernel": _variance_scaling(fan_in, self.kernel * self.kernel * self.features)(key, shape),
                "bias": jnp.zeros((self.features,))}

    def apply(self, w, x, mask=None, stacked=False):
        """``stacked``: this is one of n copies applied under ``jax.vmap`` (``apply_stacked``)."""
        impl = conv_lib.select_impl(self.impl, x.shape[-1], stacked)
        return conv_lib.conv_act_pool(x, w["kernel"], w["bias"], _act(self.activation), self.pool, impl)


@dataclasses.dataclass(frozen=True)
class Embed:
    """Token ids (L,) -> vectors (L, features); id 0 is padding."""

    vocab_size: int
    features: int

    def weight_shapes(self, in_shape):
        return {"embedding": (self.vocab_size, self.features)}

    def bias_shapes(self, in_shape):
        return {}

    def out_shape(self, in_shape):
        return tuple(in_shape) + (self.features,)

    def init(self, key, in_shape):
        return {"embedding": 0.1 * jax.random.normal(key, (self.vocab_size, self.features))}

    def apply(self, w, x, mask=None):
        return jnp.take(w["embedding"], x.astype(jnp.int32), axis=0)


def lstm_scan(kernel, bias, x, mask, reverse=False):
    """One LSTM direction over (B, L, D) with gates (i, f, g, o).

    ``kernel`` is (D + H, 4H): input rows then recurrent rows. At padded steps
    (mask 0) the state is carried unchanged, so the reverse pass starts at the
    last real token.
    """
    d = x.shape[-1]
    hdim = kernel.shape[-1] // 4
    xw = x @ kernel[:d] + bias  # all input projections in one matmul
    w_h = kernel[d:]

    def step(carry, inp):
        h, c = carry
        xw_t, m_t = inp
        z = xw_t + h @ w_h
        i, f, g, o = jnp.split(z, 4, axis=-1)
        c_new = jax.nn.sigmoid(f + 1.0) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
        h_new = jax.nn.sigmoid(o) * jnp.tanh(c_new)
        m = m_t[:, None]
        h, c = jnp.where(m, h_new, h), jnp.where(m, c_new, c)
        return (h, c), h

    b = x.shape[0]
    init = (jnp.zeros((b, hdim), x.dtype), jnp.zeros((b, hdim), x.dtype))
    _, hs = jax.lax.scan(step, init, (jnp.swapaxes(xw, 0, 1), jnp.swapaxes(mask, 0, 1)), reverse=reverse)
    return jnp.swapaxes(hs, 0, 1)


@dataclasses.dataclass(frozen=True)
class BiLSTM:
    """Bidirectional LSTM over padded sequences: (L, D) -> (L, 2 * features)."""

    features: int

    def weight_shapes(self, in_shape):
        shape = (in_shape[-1] + self.features, 4 * self.features)
        return {"fw": shape, "bw": shape}

    def bias_shapes(self, in_shape):
        return {"fw_bias": (4 * self.features,), "bw_bias": (4 * self.features,)}

    def out_shape(self, in_shape):
        return tuple(in_shape[:-1]) + (2 * self.features,)

    def init(self, key, in_shape):
        k1, k2 = jax.random.split(key)
        shape = self.weight_shapes(in_shape)["fw"]
        init = _variance_scaling(in_shape[-1] + self.features, 4 * self.features)
        zeros = jnp.zeros((4 * self.features,))
        return {"fw": init(k1, shape), "bw": init(k2, shape), "fw_bias": zeros, "bw_bias": zeros}

    def apply(self, w, x, mask=None):
        if mask is None:
            mask = jnp.ones(x.shape[:2], bool)
        fw = lstm_scan(w["fw"], w["fw_bias"], x, mask)
        bw = lstm_scan(w["bw"], w["bw_bias"], x, mask, reverse=True)
        return jnp.concatenate([fw, bw], axis=-1)


BLOCKS = {"dense": Dense, "conv": Conv, "embed": Embed, "bilstm": BiLSTM}


CHOICES = {"activation": tuple(sorted(ACTIVATIONS)), "impl": conv_lib.IMPLS}


def check_block(cfg, where: str = "backbone block") -> None:
    """A block's config dict: its kind, unknown and missing fields, int fields >= 1 and named choices; one
    ValueError naming the field (``where``, e.g. 'backbone.blocks[1]', then '.features')."""
    if not isinstance(cfg, dict):
        raise ValueError(f"{where}={cfg!r} must be a dict like {{'kind': 'dense', 'features': 64}}")
    kind = cfg.get("kind")
    if kind not in BLOCKS:
        raise ValueError(f"{where}.kind={kind!r} is not valid; choose one of {sorted(BLOCKS)}")
    fields = {f.name: f for f in dataclasses.fields(BLOCKS[kind])}
    unknown = sorted(set(cfg) - set(fields) - {"kind"})
    if unknown:
        raise ValueError(f"{where} ({kind!r}): unknown fields {unknown}; valid fields {sorted(fields)}")
    required = [n for n, f in fields.items() if f.default is dataclasses.MISSING]
    for name in required:
        if name not in cfg:
            raise ValueError(f"{where}.{name} is missing: a {kind!r} block needs {required}")
    for name, value in cfg.items():
        if name in CHOICES and value not in CHOICES[name]:
            raise ValueError(f"{where}.{name}={value!r} is not valid; choose one of {list(CHOICES[name])}")
        if fields.get(name) is not None and fields[name].type in ("int", int) and (
                not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise ValueError(f"{where}.{name}={value!r} must be an int >= 1")


def block_from_config(cfg, where: str = "backbone block") -> object:
    """A block spec from a dict like {'kind': 'conv', 'features': 10, 'kernel': 5} (checked by ``check_block``)."""
    cfg = dict(cfg)
    check_block(cfg, where)
    kind = cfg.pop("kind")
    return BLOCKS[kind](**cfg)


def shapes_through(blocks, in_shape):
    """The input shape of every block and the final output shape."""
    shapes = [tuple(in_shape)]
    for b in blocks:
        shapes.append(tuple(b.out_shape(shapes[-1])))
    return shapes


# --------------------------------------------------------------------------- flax wrappers


class Block(nn.Module):
    """One block with its own (shared) parameters.

    A Dense block is tapped for the train step's Gram matrix of per-task
    gradients: when perturbation ``taps.GHOST_PRE`` is passed, its input ``x``
    (2-D, or 3-D for tokens) is sown as ``taps.GHOST_IN`` and its pre-activation
    ``a = x W + b`` perturbed, so that the cotangents there give every task's
    kernel gradient ``x^T delta_t`` without forming it (``mtlx.train``).
    """

    spec: object

    @nn.compact
    def __call__(self, x, mask=None):
        in_shape = x.shape[1:]
        ref = jax.eval_shape(lambda: self.spec.init(jax.random.PRNGKey(0), in_shape))
        w = {name: self.param(name, lambda key, name=name: self.spec.init(key, in_shape)[name]) for name in ref}
        tapped = self.is_initializing() or self.has_variable(taps.PERTURBATIONS, taps.GHOST_PRE)
        if not (isinstance(self.spec, Dense) and tapped):
            return self.spec.apply(w, x, mask)
        x = x.reshape(x.shape[0], -1) if x.ndim == 4 else x
        self.sow(taps.INTERMEDIATES, taps.GHOST_IN, jax.lax.stop_gradient(x))
        return _act(self.spec.activation)(self.perturb(taps.GHOST_PRE, x @ w["kernel"] + w["bias"]))


def init_stacked(spec, key, n, in_shape):
    """n independent initialisations of a block, stacked on a leading axis."""
    return jax.vmap(lambda k: spec.init(k, in_shape))(jax.random.split(key, n))


def apply_stacked(spec, w, x, mask=None, stacked_input=True):
    """Apply n copies of a block: w leaves (n, ...), x (n, B, ...) or (B, ...) shared. Conv copies
    run as ``mtlx.conv.stacked_mode`` says: one ``jax.vmap`` (told it is stacked, see
    ``mtlx.conv``), or unrolled, each copy an unstacked layer."""
    if isinstance(spec, Conv) and conv_lib.stacked_mode(spec.impl) == "unroll":
        # taken apart by jnp.split (VJP: one concatenate), not n slices (VJP: n zero-padded sums)
        n = jax.tree_util.tree_leaves(w)[0].shape[0]
        unstack = lambda a: [p[0] for p in jnp.split(a, n)]
        ws = [dict(zip(w, vals)) for vals in zip(*(unstack(v) for v in w.values()))]
        xs = unstack(x) if stacked_input else [x] * n
        return jnp.stack([spec.apply(wi, xi, mask) for wi, xi in zip(ws, xs)])
    apply = (lambda wi, xi: spec.apply(wi, xi, mask, stacked=True)) if isinstance(spec, Conv) else (
        lambda wi, xi: spec.apply(wi, xi, mask))
    return jax.vmap(apply, in_axes=(0, 0 if stacked_input else None))(w, x)


class StackedBlock(nn.Module):
    """``n`` independent copies of a block (task columns, experts), one vmap.

    Input (n, B, ...) or, with ``stacked_input=False``, (B, ...) fed to all.
    """

    spec: object
    n: int
    tap: str = ""  # Dense only: perturbation name for the pre-activation (see __call__)

    @nn.compact
    def __call__(self, x, mask=None, stacked_input=True):
        """With ``tap`` set (a Dense spec) and that perturbation passed, copy
        t's pre-activation ``a_t = x W_t + b_t`` is perturbed as ``tap``: the
        cotangent there is ``delta_t = dL/da_t``, and ``dL/dx_t = delta_t W_t^T``."""
        in_shape = x.shape[2:] if stacked_input else x.shape[1:]
        ref = jax.eval_shape(lambda: self.spec.init(jax.random.PRNGKey(0), in_shape))
        w = {name: self.param(name, lambda key, name=name: init_stacked(self.spec, key, self.n, in_shape)[name])
             for name in ref}
        if not (self.tap and (self.is_initializing() or self.has_variable(taps.PERTURBATIONS, self.tap))):
            return apply_stacked(self.spec, w, x, mask, stacked_input)
        if not isinstance(self.spec, Dense):
            raise ValueError(f"StackedBlock.tap is for Dense blocks, got {type(self.spec).__name__}")
        pre = apply_stacked(dataclasses.replace(self.spec, activation="none"), w, x, mask, stacked_input)
        return _act(self.spec.activation)(self.perturb(self.tap, pre))
