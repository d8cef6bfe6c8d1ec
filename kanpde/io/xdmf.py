"""XDMF 3 sidecar of a run file, so ParaView and VisIt open ``solution.h5``'s fields directly.

``write_xdmf("run/solution.h5")`` writes ``run/solution.xdmf``: one rectilinear grid per trained model
(``main``, ``baseline``) whose geometry and attributes are references into the HDF5 file, no data
copied::

    <Grid Name="main">  2DRectMesh / 3DRectMesh, Geometry VXVY / VXVYVZ  -> solution.h5:/main/axes/<coord>
      <Attribute Name="u_predicted">  (and u_exact, u_error)           -> solution.h5:/main/fields/u/predicted
      <Attribute Name="pde_residual">                                   -> solution.h5:/main/residuals/pde

The fields are stored in "ij" order (the last coordinate varies fastest) while XDMF's first geometry
axis is the fastest one, so the geometry lists the coordinates last-to-first: in ParaView the X axis
holds the run's last coordinate (``y`` in 2-D, ``z`` in 3-D). The data sit at their true coordinates;
only the axis names are swapped (ParaView's *Transform* filter or the axis labels put them back).
Only 2-D and 3-D grids have an XDMF rectilinear topology: other dimensions get no sidecar.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path

import h5py

from kanpde.io.files import atomic_path

__all__ = ["write_xdmf"]

_TOPOLOGY = {2: ("2DRectMesh", "VXVY"), 3: ("3DRectMesh", "VXVYVZ")}


def _data_item(parent: ET.Element, h5name: str, dataset: h5py.Dataset) -> ET.Element:
    kind = dataset.dtype.kind
    item = ET.SubElement(
        parent,
        "DataItem",
        Dimensions=" ".join(str(n) for n in dataset.shape),
        NumberType="Float" if kind == "f" else "Int",
        Precision=str(dataset.dtype.itemsize),
        Format="HDF",
    )
    item.text = f"{h5name}:{dataset.name}"
    return item


def write_xdmf(h5_path: str | os.PathLike, xdmf_path: str | os.PathLike | None = None) -> Path | None:
    """Write the XDMF 3 sidecar of the run file ``h5_path`` (default ``<stem>.xdmf`` beside it), atomically.

    Returns its path, or None when the run's grid is not 2-D or 3-D. The HDF5 file is referenced by
    its name relative to the sidecar, so the two can be moved together.
    """
    h5_path = Path(h5_path)
    xdmf_path = Path(xdmf_path) if xdmf_path is not None else h5_path.with_suffix(".xdmf")
    with h5py.File(h5_path, "r") as f:
        coords = [str(c) for c in f.attrs["coords"]]
        if len(coords) not in _TOPOLOGY:
            return None
        topology, geometry = _TOPOLOGY[len(coords)]
        h5name = os.path.relpath(h5_path.resolve(), xdmf_path.resolve().parent)
        root = ET.Element("Xdmf", Version="3.0")
        domain = ET.SubElement(root, "Domain")
        for group_name in ("main", "baseline"):
            if group_name not in f:
                continue
            group = f[group_name]
            grid = ET.SubElement(domain, "Grid", Name=f"{group_name} ({group.attrs['name']})", GridType="Uniform")
            shape = [len(group["axes"][c]) for c in coords]
            ET.SubElement(grid, "Topology", TopologyType=topology, Dimensions=" ".join(map(str, shape)))
            geo = ET.SubElement(grid, "Geometry", GeometryType=geometry)
            for c in reversed(coords):  # XDMF's first geometry axis is the fastest-varying one
                _data_item(geo, h5name, group["axes"][c])
            for out, fields in group["fields"].items():
                for key in ("predicted", "exact", "error"):
                    if key in fields:
                        attr = ET.SubElement(grid, "Attribute", Name=f"{out}_{key}", AttributeType="Scalar", Center="Node")
                        _data_item(attr, h5name, fields[key])
            for name, values in (group["residuals"].items() if "residuals" in group else ()):  # the PDE residual maps
                attr = ET.SubElement(grid, "Attribute", Name=f"{name}_residual", AttributeType="Scalar", Center="Node")
                _data_item(attr, h5name, values)
    ET.indent(root)
    with atomic_path(xdmf_path) as tmp:
        tmp.write_text('<?xml version="1.0" ?>\n<!DOCTYPE Xdmf SYSTEM "Xdmf.dtd" []>\n' + ET.tostring(root, encoding="unicode") + "\n")
    return xdmf_path
