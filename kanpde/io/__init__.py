"""What a run leaves behind: the HDF5 run file (:func:`save_run`, :func:`load_run`), its XDMF companion,
figures (:mod:`kanpde.io.plots`, matplotlib imported only there) and sweep reports
(:mod:`kanpde.io.sweep`)."""

from kanpde.io.run_file import LoadedModel, LoadedReference, LoadedRun, RunResult, load_run, save_run

__all__ = ["save_run", "load_run", "RunResult", "LoadedRun", "LoadedModel", "LoadedReference"]
