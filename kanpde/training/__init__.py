"""Training: the one PINN loss assembly, the staged trainer :func:`fit`, Levenberg–Marquardt, dense
quasi-Newton optimizers (BFGS, SSBFGS, SSBroyden), the rule of ``optimizer: auto``, pruning and symbolic snapping."""

from kanpde.training.auto import AutoOptimizer
from kanpde.training.fit import FitResult, History, ProgressEvent, Stage, SymbolicFailed, TrainingDiverged, fit
from kanpde.training.loss import loss_terms
from kanpde.training.lm import LevenbergMarquardt
from kanpde.training.quasi_newton import BFGS, SSBFGS, QuasiNewton, SSBroyden

__all__ = ["Stage", "fit", "History", "FitResult", "ProgressEvent", "TrainingDiverged", "SymbolicFailed", "loss_terms",
           "LevenbergMarquardt", "QuasiNewton", "BFGS", "SSBFGS", "SSBroyden",
           "AutoOptimizer"]
