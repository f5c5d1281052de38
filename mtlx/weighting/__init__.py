"""Loss weightings: ``WEIGHTINGS`` maps a name to a constructor returning a Weighting.

needs="none":           equal, static, uncertainty, dwa, rlw, gls, famo
needs="gram":           gradnorm, mgda, pcgrad, cagrad, imtl, nash_mtl,
                        aligned_mtl, upgrad
needs="jacobian":       graddrop
needs="representation": mgda_ub
"""

from mtlx.weighting.aligned_mtl import aligned_mtl
from mtlx.weighting.base import NEEDS, EmptyState, Weighting, objective_weights, on_jacobian
from mtlx.weighting.cagrad import cagrad
from mtlx.weighting.graddrop import graddrop
from mtlx.weighting.gradnorm import gradnorm
from mtlx.weighting.imtl import imtl
from mtlx.weighting.loss_based import dwa, equal, famo, gls, rlw, static, uncertainty
from mtlx.weighting.mgda import mgda, mgda_ub
from mtlx.weighting.nash_mtl import nash_mtl
from mtlx.weighting.pcgrad import pcgrad
from mtlx.weighting.upgrad import upgrad

WEIGHTINGS = {
    "equal": equal,
    "static": static,
    "uncertainty": uncertainty,
    "dwa": dwa,
    "rlw": rlw,
    "gls": gls,
    "famo": famo,
    "gradnorm": gradnorm,
    "mgda": mgda,
    "mgda_ub": mgda_ub,
    "pcgrad": pcgrad,
    "cagrad": cagrad,
    "imtl": imtl,
    "nash_mtl": nash_mtl,
    "aligned_mtl": aligned_mtl,
    "upgrad": upgrad,
    "graddrop": graddrop,
}


__all__ = ["WEIGHTINGS", "NEEDS", "EmptyState", "Weighting", "get_weighting", "objective_weights", "on_jacobian"]


def get_weighting(name: str, **options) -> Weighting:
    if name not in WEIGHTINGS:
        raise ValueError(f"weighting={name!r} is not valid; choose one of {sorted(WEIGHTINGS)}")
    try:
        return WEIGHTINGS[name](**options)
    except TypeError as e:
        raise ValueError(f"weighting {name!r}: bad options {sorted(options)}: {e}") from None
