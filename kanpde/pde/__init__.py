"""What a problem declares: the :class:`Problem` (residual against a :class:`~kanpde.derivatives.Field`,
conditions as data, the solution where known), its domain, and the sampling of collocation points.
No ``nn.Module`` lives here."""

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
    Periodic,
    PointValue,
    Problem,
    Robin,
)
from kanpde.pde.sampling import Sampler

__all__ = [
    "Problem", "Condition", "Dirichlet", "Neumann", "Robin", "ConormalFlux", "Periodic", "PointValue", "Initial", "Batch", "BoundaryPoints",
    "Geometry", "Box", "Disk", "Annulus", "Ball", "Polygon", "LShape", "Union", "Intersection", "Difference", "Renamed",
    "Sampler",
]
