"""kanpde: physics-informed PDE solving with Kolmogorov–Arnold Networks.

A problem (residual + declared conditions + exact solution), a model (:class:`KAN` or the
:class:`MLP` baseline), a staged trainer (:func:`fit`), error norms (:func:`evaluate`) and HDF5 run
files (:func:`save_run`, :func:`load_run`). The command line is ``python -m kanpde problem=poisson2d``.
"""

from kanpde.evaluate import Evaluation, error_norms, evaluate, trapezoid_weights
from kanpde.derivatives.field import AutogradField, Field, ForwardField, make_field
from kanpde.pde.geometry import Annulus, Box, Disk, Geometry, LShape, Polygon
from kanpde.models.hard import HardDirichlet
from kanpde.derivatives.jet import DerivativePlan, Jet
from kanpde.outputs.run_file import LoadedRun, RunResult, load_run, save_run
from kanpde.training.lm import LevenbergMarquardt
from kanpde.models import KAN, MLP, KANLinear
from kanpde.pde.problem import Batch, Condition, Dirichlet, Initial, Neumann, Periodic, Problem, Robin
from kanpde.pde.sampling import Sampler
from kanpde.training.fit import FitResult, History, Stage, TrainingDiverged, fit, loss_terms

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
    "__version__",
]
