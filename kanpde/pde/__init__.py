"""What a problem declares: the :class:`Problem` (residual against a :class:`~kanpde.derivatives.Field`,
conditions as data, the solution where known), its domain, and the sampling of collocation points.
The one ``nn.Module`` here is the container of an inverse problem's unknowns (:mod:`kanpde.pde.unknowns`)."""

from kanpde.pde.geometry import Box, Geometry
from kanpde.pde.shapes import Annulus, Ball, Disk, LShape, Polygon
from kanpde.pde.csg import Difference, Intersection, Renamed, Union
from kanpde.pde.problem import (
    Batch,
    BoundaryPoints,
    Condition,
    ConormalFlux,
    Dirichlet,
    Initial,
    Neumann,
    Observation,
    Periodic,
    PointValue,
    Problem,
    Robin,
    observation_from_file,
)
from kanpde.pde.sampling import Sampler
from kanpde.pde.check import check_problem
from kanpde.pde.data import read_columns, read_points
from kanpde.pde.reference import ReferenceData, declared_reference, read_reference, reference_data
from kanpde.pde.unknowns import Unknowns

__all__ = [
    "Problem", "Condition", "Dirichlet", "Neumann", "Robin", "ConormalFlux", "Periodic", "PointValue", "Observation",
    "observation_from_file", "Initial", "Batch", "BoundaryPoints", "read_points", "read_columns", "Unknowns",
    "ReferenceData", "read_reference", "reference_data", "declared_reference",
    "Geometry", "Box", "Disk", "Annulus", "Ball", "Polygon", "LShape", "Union", "Intersection", "Difference", "Renamed",
    "Sampler", "check_problem",
]
