"""kanpde: physics-informed PDE solving with Kolmogorov–Arnold Networks.

A problem (residual + declared conditions + exact solution), a model (:class:`KAN` or the
:class:`MLP` baseline), a staged trainer (:func:`fit`), error norms (:func:`evaluate`) and HDF5 run
files (:func:`save_run`, :func:`load_run`). The command line is ``python -m kanpde problem=poisson2d``.
"""

from kanpde.derivatives import AutogradField, DerivativePlan, Field, ForwardField, Jet, make_field
from kanpde.evaluate import Evaluation, error_norms, evaluate, trapezoid_weights
from kanpde.models import KAN, MLP, HardDirichlet, KANLinear, unwrap
from kanpde.io import LoadedRun, RunResult, load_run, save_run
from kanpde.pde import (
    Annulus,
    Ball,
    Batch,
    Box,
    Condition,
    ConormalFlux,
    Difference,
    Dirichlet,
    Disk,
    Geometry,
    Initial,
    Intersection,
    LShape,
    Neumann,
    Observation,
    Periodic,
    PointValue,
    Polygon,
    Problem,
    Renamed,
    Robin,
    Sampler,
    Union,
)
from kanpde.pde.hard import soft_problem
from kanpde.training import FitResult, History, LevenbergMarquardt, Stage, TrainingDiverged, fit, loss_terms

__version__ = "0.1.0"

__all__ = [
    "KAN",
    "KANLinear",
    "MLP",
    "Field",
    "AutogradField",
    "ForwardField",
    "DerivativePlan",
    "Jet",
    "make_field",
    "Box",
    "Geometry",
    "Disk",
    "Annulus",
    "Polygon",
    "LShape",
    "Ball",
    "Union",
    "Intersection",
    "Difference",
    "Renamed",
    "Sampler",
    "Problem",
    "Condition",
    "Dirichlet",
    "Neumann",
    "Robin",
    "ConormalFlux",
    "PointValue",
    "Observation",
    "Periodic",
    "Initial",
    "Batch",
    "Stage",
    "History",
    "FitResult",
    "TrainingDiverged",
    "fit",
    "loss_terms",
    "evaluate",
    "Evaluation",
    "error_norms",
    "trapezoid_weights",
    "save_run",
    "load_run",
    "LoadedRun",
    "RunResult",
    "LevenbergMarquardt",
    "HardDirichlet",
    "soft_problem",
    "unwrap",
    "__version__",
]
