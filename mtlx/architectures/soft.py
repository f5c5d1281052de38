"""soft_l2 and soft_trace: task columns tied by a penalty on their weights.

soft_l2 (Duong et al. 2015): lambda * sum_l sum_t ||W_{l,t} - mean_s W_{l,s}||^2.
soft_trace (Yang & Hospedales 2017, the trace-norm baseline): lambda * sum_l
||[vec W_{l,1}, ..., vec W_{l,T}]||_* (nuclear norm of the T-column matrix).
Only the factorisable weights (kernels, embeddings) of the backbone are tied.
"""

from __future__ import annotations

from typing import ClassVar

import flax.linen as nn
import jax.numpy as jnp

from mtlx.architectures.base import MTLModel


def l2_penalty(stacked):
    """sum_t ||W_t - mean W||^2 for a (T, ...) stack."""
    return jnp.sum((stacked - jnp.mean(stacked, axis=0, keepdims=True)) ** 2)


def trace_penalty(stacked):
    """Nuclear norm of the (D, T) matrix of flattened kernels."""
    m = stacked.reshape(stacked.shape[0], -1)
    # sqrt of the eigenvalues of the small T x T Gram matrix: cheap and exact.
    eig = jnp.linalg.eigvalsh(m @ m.T)
    return jnp.sum(jnp.sqrt(jnp.maximum(eig, 1e-12)))


PENALTIES = {"l2": l2_penalty, "trace": trace_penalty}


class Soft(MTLModel):
    """T columns with a ``penalty`` between them; the subclasses fix ``penalty``."""

    strength: float = 1e-3  # lambda

    penalty: ClassVar[str]  # a PENALTIES key

    @nn.compact
    def __call__(self, x):
        mask = self.input_mask(x)
        h = self.run_columns(x, mask)
        params = self.variables["params"]
        fn = PENALTIES[self.penalty]
        total = 0.0
        for i, spec in enumerate(self.blocks):
            for name in spec.weight_shapes((1,) * 3):
                total = total + fn(params[f"task_column_{i}"][name])
        return self.heads(h, mask), {f"soft_{self.penalty}": self.strength * total}


class SoftL2(Soft):
    """soft_l2: the L2 penalty between the columns and their mean (Duong et al. 2015)."""

    penalty: ClassVar[str] = "l2"


class SoftTrace(Soft):
    """soft_trace: the trace-norm penalty of the stacked columns (Yang & Hospedales 2017)."""

    penalty: ClassVar[str] = "trace"
