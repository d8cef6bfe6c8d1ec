"""The derivative engine: jets carried forward through layers and the :class:`Field` accessor that problems
write their residuals against, and the same derivatives as plain functions of a model and points
(:mod:`kanpde.derivatives.functional`) for code that has its own training loop. Imports nothing else from kanpde."""

from kanpde.derivatives.field import AutogradField, Field, ForwardField, make_field, probe_plan, resolve_engine
from kanpde.derivatives.functional import grad, laplacian, partials, value
from kanpde.derivatives.jet import DerivativePlan, Jet

__all__ = ["Field", "AutogradField", "ForwardField", "make_field", "probe_plan", "resolve_engine", "DerivativePlan", "Jet",
           "value", "grad", "laplacian", "partials"]
