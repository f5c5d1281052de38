"""Weightings whose state has one entry per shared parameter (MoCo's tracked gradients,
DB-MTL's gradient EMA, ExcessMTL's AdaGrad accumulators).

Their ``init`` takes the number ``P`` of shared parameters (the width of the flattened
(T, P) Jacobian the step hands them) as well: ``init(num_tasks, num_params)``, so the
state has fixed shapes from the first step (jit carries it unchanged). The step builds
every weighting's state with :func:`init_state`, which passes ``num_params`` only to
weightings that take it.
"""

from __future__ import annotations

import inspect

from mtlx.weighting.base import Weighting


def takes_num_params(weighting: Weighting) -> bool:
    """Whether ``weighting.init`` takes ``num_params`` (a per-parameter state)."""
    try:
        return "num_params" in inspect.signature(weighting.init).parameters
    except (TypeError, ValueError):
        return False


def init_state(weighting: Weighting, num_tasks: int, num_params: int):
    """``weighting.init(num_tasks[, num_params])``: the weighting's initial state."""
    if takes_num_params(weighting):
        return weighting.init(num_tasks, num_params)
    return weighting.init(num_tasks)


def require_num_params(name: str, num_params) -> int:
    """``num_params`` as an int, or one ValueError naming the weighting when it is missing."""
    if num_params is None:
        raise ValueError(f"weighting {name!r} keeps a per-shared-parameter state: build it with "
                         f"mtlx.weighting.param_state.init_state(weighting, num_tasks, num_params), "
                         f"num_params = the number of shared parameters")
    return int(num_params)
