"""The gradient-reversal layer (Ganin & Lempitsky 2015, "Unsupervised Domain Adaptation by Backpropagation", Sec. 3.2).

R_lambda(x) = x in the forward pass; dR/dx = -lambda I in the backward pass. A
discriminator head d(R(f(x))) then descends its own loss L_d while the layers
below it (the feature extractor f) receive -lambda dL_d/df: they ascend it, so
the shared features are pushed to make the discriminated quantity (a domain, a
task, a nuisance attribute) unpredictable.

``scale_gradient`` is the general op (any per-element or broadcast scale on the
backward pass); ``reverse_gradient`` is the paper's layer. The architectures
apply it per task at the heads' input (``MTLModel.head_input``) for the tasks
whose ``Task.gradient_reversal`` lambda is > 0.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


@jax.custom_vjp
def scale_gradient(x, scale):
    """Identity on ``x``; the cotangent flowing back is multiplied by ``scale`` (broadcast against ``x``).
    ``scale`` gets a zero cotangent: it is a constant of the layer, not a parameter."""
    return x


def _scale_fwd(x, scale):
    return x, scale


def _scale_bwd(scale, ct):
    return (ct * jnp.asarray(scale, ct.dtype), jnp.zeros_like(scale))


scale_gradient.defvjp(_scale_fwd, _scale_bwd)


def reverse_gradient(x, lam=1.0):
    """The gradient-reversal layer R_lambda: identity forward, ``-lam`` times the gradient backward."""
    return scale_gradient(x, -jnp.asarray(lam, jnp.result_type(x)))


def task_scales(lambdas) -> jnp.ndarray:
    """(T,) backward scales for T per-task copies: -lambda_t where lambda_t > 0 (reversed), else 1."""
    lam = jnp.asarray(lambdas, jnp.float32)
    return jnp.where(lam > 0, -lam, 1.0)


def reverse_per_task(h, lambdas):
    """``h`` (T, B, ...) with copy t's gradient reversed by ``lambdas[t]`` (0: copy t left alone)."""
    scale = task_scales(lambdas).astype(h.dtype)
    return scale_gradient(h, scale.reshape((-1,) + (1,) * (h.ndim - 1)))
