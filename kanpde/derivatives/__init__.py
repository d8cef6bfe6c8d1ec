"""The derivative engine: jets carried forward through layers and the :class:`Field` accessor that problems
write their residuals against. Imports nothing else from kanpde."""

from kanpde.derivatives.field import AutogradField, Field, ForwardField, make_field, probe_plan, resolve_engine
from kanpde.derivatives.jet import DerivativePlan, Jet

__all__ = ["Field", "AutogradField", "ForwardField", "make_field", "probe_plan", "resolve_engine", "DerivativePlan", "Jet"]
