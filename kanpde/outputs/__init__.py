"""Outputs: the run file (``solution.h5``), the XDMF sidecar, figures and sweep reports."""
