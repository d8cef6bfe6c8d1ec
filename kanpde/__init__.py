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
    Batch,
    Box,
    Condition,
    Dirichlet,
    Disk,
    Geometry,
    Initial,
    LShape,
    Neumann,
    Periodic,
    Polygon,
    Problem,
    Robin,
    Sampler,
)
from kanpde.pde.hard import soft_problem
from kanpde.training import (FitResult, History, LevenbergMarquardt, Stage, SymbolicFailed, TrainingDiverged, fit,
                             loss_terms)

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
    "Sampler",
    "Problem",
    "Condition",
    "Dirichlet",
    "Neumann",
    "Robin",
    "Periodic",
    "Initial",
    "Batch",
    "Stage",
    "History",
    "FitResult",
    "TrainingDiverged",
    "SymbolicFailed",
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
