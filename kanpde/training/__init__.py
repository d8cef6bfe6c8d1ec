"""Training: the one PINN loss assembly, the staged trainer :func:`fit`, Levenberg–Marquardt, pruning and
symbolic snapping."""

from kanpde.training.fit import FitResult, History, ProgressEvent, Stage, SymbolicFailed, TrainingDiverged, fit
from kanpde.training.loss import loss_terms
from kanpde.training.lm import LevenbergMarquardt

__all__ = ["Stage", "fit", "History", "FitResult", "ProgressEvent", "TrainingDiverged", "SymbolicFailed", "loss_terms",
           "LevenbergMarquardt"]
