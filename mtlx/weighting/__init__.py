"""Loss weightings: ``WEIGHTINGS`` maps a name to a constructor returning a Weighting.

needs="none":           equal, static, uncertainty, dwa, rlw, gls, famo
needs="gram":           gradnorm, mgda, pcgrad, cagrad, imtl, nash_mtl,
                        aligned_mtl, upgrad
needs="jacobian":       graddrop
needs="representation": mgda_ub
"""

from mtlx import schema
from mtlx.plugins import resolve
from mtlx.weighting.aligned_mtl import aligned_mtl
from mtlx.weighting.base import NEEDS, OPTION_RANGES, EmptyState, Weighting, objective_weights, on_jacobian
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
    """The weighting ``name`` (a ``WEIGHTINGS`` key or 'package.module:constructor') with ``options``; an unknown
    option lists the valid ones, a bad value (type, nan/inf, range) names ``weighting.options.<option>``."""
    ctor = resolve(WEIGHTINGS, name, "weighting")
    owner = f"weighting {name!r}"
    if not schema.takes_any_option(ctor):
        try:
            schema.check_options(schema.signature_params(ctor), options, OPTION_RANGES)
        except ValueError as e:
            if not isinstance(e, schema.OptionError):
                raise ValueError(f"{owner}: bad options: {e}") from None
            raise schema.in_section(e, "weighting.options", owner) from None
    try:
        w = ctor(**options)
    except TypeError as e:
        raise ValueError(f"{owner}: bad options {sorted(options)}: {e}") from None
    except schema.OptionError as e:
        raise schema.in_section(e, "weighting.options", owner) from None
    if not isinstance(w, Weighting):
        raise ValueError(f"weighting={name!r} returned a {type(w).__name__}, not an mtlx.weighting.Weighting")
    return w
