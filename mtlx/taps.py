"""Every name that layers, architectures and the gradient engine agree on.

Flax ``perturb``/``sow`` names are plain strings; a typo in one of them makes
the train step silently skip a tap. They live here, once, and every module
imports them.

Perturbations (the ``"perturbations"`` collection, zeros added to an
activation so that a VJP yields the cotangent there):

  HEAD_REP         the heads' input as T per-task copies (``MTLModel.head_input``):
                   one backward through the heads gives every ``dL_t/dh_t``.
  SHARED_REP       the shared representation as T per-task copies
                   (``MTLModel.task_copies``, MGDA-UB without a Dense next layer).
  SHARED_REP_PRE   the pre-activation of a Dense first task layer
                   (``MTLModel.shared_representation``, MGDA-UB's tap).
  GHOST_PRE        a shared Dense block's pre-activation (``layers.Block``): the
                   ghost Gram path reads the cotangents there.

Intermediates (the ``"intermediates"`` collection, values sown in the forward):

  HEAD_INPUT       the heads' input ``h`` (sown with HEAD_REP).
  GHOST_IN         a tapped shared Dense block's input ``x`` (sown with GHOST_PRE).

Random streams (``rngs`` names a caller passes to ``model.apply``):

  GUMBEL_RNG       Gumbel noise for learned branching (``architectures.ltb``):
                   with this stream (the train step passes it to a model whose
                   class lists it in ``rngs_in_train``) the branching is a
                   Gumbel-softmax sample, without it (evaluation) its
                   deterministic softmax relaxation.

Training progress (a collection the train step passes with those streams):

  TRAIN_PROGRESS   holds STEP_COUNT, the number of updates done before this one
                   (LTB's temperature annealing reads it).

Mixing units (cross-stitch alphas, sluice alphas and betas) are top-level
parameters whose name starts with MIX_PREFIX; ``is_mixing`` is the one test,
used by the optimizer's parameter groups and by the run summary.
"""

from __future__ import annotations

PERTURBATIONS = "perturbations"
INTERMEDIATES = "intermediates"

HEAD_REP = "head_rep"
SHARED_REP = "shared_rep"
SHARED_REP_PRE = "shared_rep_pre"
GHOST_PRE = "ghost_pre"

HEAD_INPUT = "head_input"
GHOST_IN = "ghost_in"

GUMBEL_RNG = "gumbel"

TRAIN_PROGRESS = "train_progress"
STEP_COUNT = "step_count"

MIX_PREFIX = "mix_"


def mixing_name(kind: str, index: int | None = None) -> str:
    """The parameter name of a mixing unit, e.g. ``mixing_name("stitch", 0) == "mix_stitch_0"``."""
    return f"{MIX_PREFIX}{kind}" if index is None else f"{MIX_PREFIX}{kind}_{index}"


def is_mixing(name) -> bool:
    """Whether a top-level parameter name belongs to a mixing unit (cross-stitch / sluice)."""
    return str(name).startswith(MIX_PREFIX)
