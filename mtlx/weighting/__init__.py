"""Loss weightings: ``WEIGHTINGS`` maps a name to a constructor returning a Weighting.

needs="none":           equal, static, uncertainty, dwa, rlw, gls, famo, stch, imtl_l
needs="gram":           gradnorm, mgda, pcgrad, cagrad, imtl, nash_mtl,
                        aligned_mtl, upgrad, gradvac, fairgrad, modo, sdmgrad,
                        config, dualproj, krum
needs="jacobian":       graddrop, trimmed_mean
needs="representation": mgda_ub
needs="lookahead":      auto_lambda

``PER_PARAMETER_WEIGHTINGS`` (needs="jacobian"; moco, db_mtl, excess_mtl) keep a state
with one entry per shared parameter: their ``init`` takes ``num_params`` too
(:mod:`mtlx.weighting.param_state`). ``get_weighting`` resolves them; they join
``WEIGHTINGS`` once the train step builds states with ``param_state.init_state``.
"""

from mtlx import schema
from mtlx.plugins import resolve
from mtlx.weighting.aligned_mtl import aligned_mtl
from mtlx.weighting.auto_lambda import auto_lambda
from mtlx.weighting.base import (NEEDS, OPTION_RANGES, EmptyState, Lookahead, Weighting, objective_weights,
                                 on_jacobian)
from mtlx.weighting.cagrad import cagrad
from mtlx.weighting.config_grad import config_grad
from mtlx.weighting.db_mtl import db_mtl
from mtlx.weighting.dualproj import dualproj
from mtlx.weighting.excess_mtl import excess_mtl
from mtlx.weighting.fairgrad import fairgrad
from mtlx.weighting.graddrop import graddrop
from mtlx.weighting.gradnorm import gradnorm
from mtlx.weighting.gradvac import gradvac
from mtlx.weighting.imtl import imtl, imtl_l
from mtlx.weighting.loss_based import dwa, equal, famo, gls, rlw, static, uncertainty
from mtlx.weighting.mgda import mgda, mgda_ub
from mtlx.weighting.moco import moco
from mtlx.weighting.modo import modo
from mtlx.weighting.nash_mtl import nash_mtl
from mtlx.weighting.param_state import init_state, takes_num_params
from mtlx.weighting.pcgrad import pcgrad
from mtlx.weighting.robust import krum, trimmed_mean
from mtlx.weighting.sdmgrad import sdmgrad
from mtlx.weighting.stch import stch
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
    "stch": stch,
    "imtl_l": imtl_l,
    "gradvac": gradvac,
    "fairgrad": fairgrad,
    "modo": modo,
    "sdmgrad": sdmgrad,
    "config": config_grad,
    "dualproj": dualproj,
    "krum": krum,
    "trimmed_mean": trimmed_mean,
    "moco": moco,
    "db_mtl": db_mtl,
    "excess_mtl": excess_mtl,
    "auto_lambda": auto_lambda,
}

# init(num_tasks, num_params): a state per shared parameter (mtlx.weighting.param_state)
PER_PARAMETER_WEIGHTINGS = {n: WEIGHTINGS[n] for n in ("moco", "db_mtl", "excess_mtl")}


__all__ = ["WEIGHTINGS", "PER_PARAMETER_WEIGHTINGS", "NEEDS", "EmptyState", "Lookahead", "Weighting", "get_weighting",
           "init_state", "objective_weights", "on_jacobian", "takes_num_params"]


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
