"""Marching-cubes surface of a binary mask: area, enclosed volume and diameters between vertices.

The surface is the 0.5 iso-surface of the mask sampled at voxel centres. The mask is binary, so
every vertex sits at the midpoint of a cube edge, and each of the 256 corner configurations of a
cube has a fixed set of triangles. The surface area is therefore a sum over configurations of
(number of cubes) x (area of its triangles), and the enclosed volume follows from the divergence
theorem without building the mesh:

    V = 1/6 sum_triangles a . (b x c)
      = 1/6 sum_cubes [ K(code) + o . N(code) ],   K = sum a.(b x c),   N = sum (b x c + c x a + a x b)

with a, b, c a triangle's vertices relative to its cube's origin o (all in mm).

Which triangles a configuration gets is a convention, and on strongly anisotropic voxels
(0.8 x 0.8 x 6.5 mm) it moves the area by several percent, because the polygons that cut a
cube are far from planar in mm. We use the classic Lorensen-Cline case table as VTK's
``vtkMarchingCubes`` implements it; pyradiomics' table differs only in some ambiguous
configurations (its baseline mesh features agree within 0.5 %, see
docs/benchmarks/measurement.md). The table below was read off VTK 9 (BSD-3-Clause, Kitware) by running
``vtkMarchingCubes`` on each of the 256 2x2x2 configurations; ``Testing/test_radiomics.py``
regenerates it the same way whenever VTK is installed and checks that it is unchanged.

Corner k of a cube sits at offset (dz, dy, dx) with k = 4 dz + 2 dy + dx; edges are numbered
as in :data:`EDGES`; each table entry is a string of hexadecimal edge numbers, three per
triangle.
"""

from __future__ import annotations

import itertools
from functools import lru_cache
from typing import Dict, Sequence, Tuple

import numpy as np

CORNERS = np.array(list(itertools.product((0, 1), repeat=3)), dtype=float)
#: The 12 cube edges as (corner, corner) pairs.
EDGES = tuple((a, b) for a in range(8) for b in range(a + 1, 8) if np.abs(CORNERS[a] - CORNERS[b]).sum() == 1)

# fmt: off
CASE_TABLE = (
    "", "012", "043", "312432", "156", "056206", "304561", "356364462",
    "375", "012375", "475045", "512527724", "137617", "037072276", "104146647", "472762",
    "829", "801981", "043298", "843839931", "298156", "698685580", "430298561", "869468456435",
    "375298", "198180375", "475450298", "547594519984", "137176982", "376368380986", "829460476610", "869846476",
    "48a", "48a012", "08a30a", "28a2a11a3", "48a561", "0560628a4", "08a0a3561", "5a352a5628a2",
    "37548a", "1203758a4", "a75a58850", "5a71a518a128", "76171348a", "8a4032237276", "a08a60a76610", "a28a72762",
    "429a49", "40141aa19", "02909339a", "31a19a", "9a4942156", "49a459405569", "56102332939a", "6356939a3",
    "42949a753", "75340aa01a19", "2502a529a75a", "5a751a19a", "42a29a713761", "a09a40906370607", "60761070a290a09", "6a79a6",
    "96b", "1206b9", "0436b9", "2432316b9", "915b95", "92090bb05", "5b9591043", "35b3b23242b9",
    "753b96", "375120b96", "504547b96", "b96517712724", "7b9793391", "7b9379392320", "091079047b97", "97b927247",
    "b826b2", "16b1b00b8", "26b2b8430", "4b841b4316b1", "21525885b", "05885b", "3045815b8821", "3843585b8",
    "b82b26537", "37516006b0b8", "82686b045547", "7147514186b181b", "21323b2b8b37", "7037b0b80", "81b821b17041714", "784b87",
    "8a496b", "0128a46b9", "a30a0896b", "6b928118a1a3", "91595ba48", "48a0b205bb92", "15b1b930aa08", "b25b925238a232a",
    "48a75396b", "b963750128a4", "96ba78875850", "12818a1a575a6b9", "48a7b33b9391", "37b3b939020948a", "8708a7071b97179", "97b927a78872",
    "ba4b46642", "16b01b0ba0a4", "02606a0a3a6b", "b16ba1a31", "a42a25a5b152", "4ba40b05b", "32a302a2b152b25", "3ba5b3",
    "37546a4266ba", "01606b0b4a4b375", "6a26ba2a075a0a5", "b16ba151771a", "3b137b1b2a4b2b4", "7037b040aa0b", "021a7b", "7ba",
    "7ab", "012ab7", "430ab7", "312324ab7", "5617ab", "6206057ab", "043561ab7", "ab7354456462",
    "3ab53b", "3ab3b5120", "4ab4b00b5", "a24a52ab5125", "b61b1aa13", "0620a603aab6", "1b60b10ab04a", "b4ab64624",
    "ab7829", "801819b7a", "304ab7298", "7ab394319984", "1569827ab", "ab7859805569", "043829561ab7", "435456468986ab7",
    "b53b3a829", "3a5ab5180198", "2984a00ab0b5", "941984145ab454b", "2981a613aab6", "a63ab6360986068", "04a0ab0b161b298", "b4ab64849946",
    "748b78", "8b7874012", "73070bb08", "2312b328bb73", "74878b615", "0525628748b7", "1560b308bb73", "b38b73832563236",
    "34838558b", "12034554858b", "0858b5", "2512858b5", "48b4b141361b", "23620363b483b38", "1b610b08b", "b2862b",
    "9b7972274", "019097074b79", "79b397329302", "79b739319", "56172b74229b", "590569094b79497", "302329397b79561", "63569373bb39",
    "3b532b34229b", "54b534b49014941", "9029b0b50", "951b59", "2b429b4b361b3b1", "03469b", "9029b010660b", "9b6",
    "67a96a", "67a6a9201", "a96a67304", "7a9796432231", "57a5a11a9", "20525a2a97a5", "430a17a91157", "4524352597a595a",
    "65363993a", "0123953a9965", "4a9495450596", "95a965a54125452", "3a11a9", "0920393a9", "4104a1a91", "492a94",
    "a82a27726", "a80a06a67601", "0432782677a8", "7867a8681438183", "57a15a1a8182", "a57a85805", "15717a1a282a043", "a57a85354458",
    "53a5a252682a", "06801686a536a63", "0a504a5a682a6a2", "4a8516", "2a821a13a", "0a83a0", "2a821a4a00a1", "4a8",
    "896864467", "012894496467", "367386308968", "183128387968786", "574549591948", "497489795209590", "179157978307870", "357289",
    "896486465453", "489496463536012", "689658508", "689658281185", "834893913", "834893032239", "810918", "892",
    "427726", "140164674", "073027267", "173671", "521572742", "457054", "521572023327", "357",
    "365346426", "140164345546", "065260", "165", "321423", "034", "021", "",
)
# fmt: on


@lru_cache(maxsize=1)
def triangle_table() -> Tuple[np.ndarray, ...]:
    """For each code 0..255, an array (T, 3, 3) of triangles (vertex, zyx) in unit-cube coordinates,
    oriented with normals pointing out of the mask."""
    mids = np.array([(CORNERS[a] + CORNERS[b]) / 2 for a, b in EDGES])
    table = [mids[[int(ch, 16) for ch in entry]].reshape(-1, 3, 3) for entry in CASE_TABLE]
    t = table[1]  # one inside corner must enclose a positive volume
    if np.einsum("ti,ti->t", t[:, 0], np.cross(t[:, 1], t[:, 2])).sum() < 0:
        table = [x[:, ::-1, :].copy() for x in table]
    return tuple(table)


def cube_codes(mask: np.ndarray) -> np.ndarray:
    """Configuration code (0..255) of every cube of 2x2x2 neighbouring voxels, shape (Z-1, Y-1, X-1)."""
    m = np.asarray(mask, dtype=np.uint8)
    z, y, x = m.shape
    code = np.zeros((z - 1, y - 1, x - 1), dtype=np.uint8)
    for k, (dz, dy, dx) in enumerate(CORNERS.astype(int)):
        code |= m[dz : dz + z - 1, dy : dy + y - 1, dx : dx + x - 1] << k
    return code


def mesh_area_volume(mask: np.ndarray, spacing_zyx: Sequence[float]) -> Tuple[float, float]:
    """Surface area (mm²) and enclosed volume (mm³) of the marching-cubes surface of ``mask``.

    ``mask`` is a boolean array (z, y, x); it is padded with one background voxel on every side
    so that the surface is closed.
    """
    sp = np.asarray(spacing_zyx, dtype=float)
    m = np.pad(np.asarray(mask, dtype=bool), 1)
    codes = cube_codes(m)
    flat = codes.ravel()
    sel = np.flatnonzero((flat != 0) & (flat != 255))
    if sel.size == 0:
        return 0.0, 0.0
    c = flat[sel]
    origins = np.stack(np.unravel_index(sel, codes.shape), axis=1).astype(float) * sp
    counts = np.bincount(c, minlength=256)
    origin_sums = np.zeros((256, 3))
    np.add.at(origin_sums, c, origins)
    table = triangle_table()
    area = 0.0
    vol6 = 0.0
    for code in np.flatnonzero(counts):
        t = table[code] * sp  # (T, 3, 3) in mm
        a, b, cc = t[:, 0], t[:, 1], t[:, 2]
        area += counts[code] * 0.5 * np.linalg.norm(np.cross(b - a, cc - a), axis=1).sum()
        k = np.einsum("ti,ti->", a, np.cross(b, cc))
        n = (np.cross(b, cc) + np.cross(cc, a) + np.cross(a, b)).sum(axis=0)
        vol6 += counts[code] * k + origin_sums[code] @ n
    return float(area), float(vol6 / 6.0)


def mesh_vertices(mask: np.ndarray) -> np.ndarray:
    """Vertices of the marching-cubes surface, in doubled voxel-index units (z, y, x) of ``mask``.

    A vertex is the midpoint of an edge between an inside and an outside voxel centre (every
    such edge carries one, whatever the case table). Coordinates are returned doubled so that
    they are integers: divide by 2 and multiply by the spacing for mm.
    """
    m = np.pad(np.asarray(mask, dtype=bool), 1)
    out = []
    for axis in range(3):
        a = np.swapaxes(m, 0, axis)
        cut = a[:-1] != a[1:]
        idx = np.argwhere(cut)
        idx = 2 * idx
        idx[:, 0] += 1  # midpoint along the edge's axis
        if axis:
            idx[:, [0, axis]] = idx[:, [axis, 0]]
        out.append(idx)
    v = np.concatenate(out) - 2  # undo the padding (doubled units)
    return v


def maximum_diameters(mask: np.ndarray, spacing_zyx: Sequence[float]) -> Dict[str, float]:
    """Largest distances (mm) between surface-mesh vertices: in 3D, and between vertices that
    share a slice (z), a column (y) or a row (x) coordinate, as pyradiomics defines
    Maximum3DDiameter and Maximum2DDiameterSlice/Column/Row."""
    from scipy.spatial.distance import pdist

    pts_mm = mesh_vertices(mask) * (np.asarray(spacing_zyx, dtype=float) / 2.0)
    v2 = mesh_vertices(mask)

    def farthest(pts):
        if len(pts) < 2:
            return 0.0
        if len(pts) > 1000:
            try:
                from scipy.spatial import ConvexHull

                pts = pts[ConvexHull(pts).vertices]
            except Exception:  # coplanar or degenerate: keep all points
                pass
        if len(pts) > 8000:  # bound pdist's memory
            best = 0.0
            for i in range(0, len(pts), 2000):
                best = max(best, float(((pts[i : i + 2000, None, :] - pts[None]) ** 2).sum(-1).max()))
            return best**0.5
        return float(pdist(pts).max())

    out = {"Maximum3DDiameter": farthest(pts_mm)}
    for axis, name in ((0, "Maximum2DDiameterSlice"), (1, "Maximum2DDiameterColumn"), (2, "Maximum2DDiameterRow")):
        keys = v2[:, axis]
        order = np.argsort(keys, kind="stable")
        keys, plane_pts = keys[order], np.delete(pts_mm[order], axis, axis=1)
        starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
        ends = np.r_[starts[1:], len(keys)]
        out[name] = max([farthest(plane_pts[a:b]) for a, b in zip(starts, ends)] + [0.0])
    return out
