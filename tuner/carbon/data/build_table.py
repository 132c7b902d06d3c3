"""Build ``grid_intensity.csv`` (the static provider's table) from the codecarbon wheel.

Run from the repository root, with the wheel downloaded from PyPI and ``pycountry``
installed (both only for this script; greentune reads the CSV it writes)::

    pip download codecarbon==3.3.2 --no-deps -d /tmp/cc
    pip install pycountry
    python tuner/carbon/data/build_table.py /tmp/cc/codecarbon-3.3.2-py3-none-any.whl

Nothing here is invented or edited by hand: every figure is read from a file in the
wheel (codecarbon is MIT-licensed) and converted only in unit or code. What each file
is and where its figures come from:

- ``data/private_infra/global_energy_mix.json``: one record per country (ISO 3166
  alpha-3), with ``carbon_intensity`` in gCO2eq/kWh and the ``year`` it describes. Its
  fields are those of Our World in Data's energy dataset, whose ``carbon_intensity_elec``
  comes from Ember's yearly electricity data and the Energy Institute's Statistical
  Review (Ember data: CC-BY-4.0). The file itself does not name its source; codecarbon's
  methodology credits Our World in Data. Codes are mapped to alpha-2 with ``pycountry``.
- ``data/private_infra/2023/usa_emissions.json``: US states, EPA eGRID2023 field
  ``STC2ERTA`` (annual CO2-equivalent total output emission rate, lb/MWh; public domain),
  as the file's ``_source`` says; converted to g/kWh (x 0.45359237) and keyed ``US-XX``.
- ``data/private_infra/2023/china_provincial_emissions.json``: Chinese provinces, the
  MEE/NBS 2023 provincial factors (CO2 only, location-based), as its ``metadata`` says;
  keys are already ISO 3166-2 (``CN-BJ``).
- ``data/private_infra/nordic_emissions.json``: Swedish and Norwegian bidding zones
  (ENTSO-E 2025 generation x codecarbon's per-source factors, as its ``metadata``
  says), keyed as Electricity Maps zones (``SE-SE3``, ``NO-NO1``). Finland's entry is
  left out: the country row already covers it.
- ``data/private_infra/2023/canada_energy_mix.json``: Canadian provinces' generation mix
  (percent by source; the file names no source or year beyond its folder, 2023); the
  intensity is codecarbon's own rule for it (``_region_energy_mix_to_emissions_rate``:
  coal, petroleum and natural-gas shares x 995.7, 816.7 and 743.8 g/kWh, everything
  else counted as zero), keyed ``CA-XX`` by ISO 3166-2.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "grid_intensity.csv"
LB_PER_MWH_TO_G_PER_KWH = 0.45359237
PREFIX = "codecarbon/data/private_infra/"
CANADA_FOSSIL_G = {"coal": 995.725971, "petroleum": 816.6885263, "naturalGas": 743.8415916}


def _load(wheel: zipfile.ZipFile, name: str) -> dict:
    return json.loads(wheel.read(PREFIX + name))


def build(wheel_path: Path) -> list[dict[str, str]]:
    """The table's rows, sorted by zone."""
    import pycountry

    version = wheel_path.name.split("-")[1]
    cc = f"codecarbon {version}"
    rows: list[dict[str, str]] = []
    with zipfile.ZipFile(wheel_path) as wheel:
        world = _load(wheel, "global_energy_mix.json")
        for alpha3, rec in world.items():
            country = pycountry.countries.get(alpha_3=alpha3)
            if country is None:
                print(f"skipped {alpha3}: no ISO 3166 alpha-2 code", file=sys.stderr)
                continue
            rows.append({"zone": country.alpha_2, "name": rec["country_name"],
                         "g_per_kwh": f"{rec['carbon_intensity']:.1f}", "year": str(rec["year"]),
                         "source": f"Ember & Energy Institute via Our World in Data ({cc} "
                                   "global_energy_mix.json)"})
        usa = _load(wheel, "2023/usa_emissions.json")
        src = usa["_source"]
        for key, rec in usa.items():
            if key.startswith("_") or key == "usa":
                continue
            rows.append({"zone": f"US-{rec['regionCode']}", "name": key.title(),
                         "g_per_kwh": f"{rec['emissions'] * LB_PER_MWH_TO_G_PER_KWH:.1f}",
                         "year": str(src["year"]),
                         "source": f"EPA eGRID{src['year']} {src['field']} ({cc} usa_emissions.json)"})
        china = _load(wheel, "2023/china_provincial_emissions.json")
        for key, rec in china["data"].items():
            rows.append({"zone": key, "name": rec["description"],
                         "g_per_kwh": f"{rec['emission_factor']:.1f}", "year": str(rec["year"]),
                         "source": f"China MEE/NBS provincial factors, CO2 only ({cc} "
                                   "china_provincial_emissions.json)"})
        nordic = _load(wheel, "nordic_emissions.json")
        for key, rec in nordic["data"].items():
            if key == "FI":
                continue
            rows.append({"zone": f"{key[:2]}-{key}", "name": rec["description"],
                         "g_per_kwh": f"{rec['emission_factor']:.1f}", "year": str(rec["year"]),
                         "source": f"ENTSO-E generation x codecarbon factors ({cc} "
                                   "nordic_emissions.json)"})
        canada = _load(wheel, "2023/canada_energy_mix.json")
        provinces = {s.name.lower(): s.code for s in pycountry.subdivisions.get(country_code="CA")}
        for key, mix in canada.items():
            code = provinces.get(key)
            if code is None:
                print(f"skipped Canada '{key}': no ISO 3166-2 code", file=sys.stderr)
                continue
            g = sum(mix.get(k, 0.0) / mix["total"] * f for k, f in CANADA_FOSSIL_G.items())
            rows.append({"zone": code, "name": key.title(), "g_per_kwh": f"{g:.1f}", "year": "2023",
                         "source": f"generation mix x codecarbon's fossil factors ({cc} "
                                   "canada_energy_mix.json)"})
    zones = [r["zone"] for r in rows]
    dupes = {z for z in zones if zones.count(z) > 1}
    if dupes:
        raise SystemExit(f"duplicate zones: {sorted(dupes)}")
    return sorted(rows, key=lambda r: r["zone"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("wheel", type=Path, help="codecarbon-*.whl downloaded from PyPI")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    rows = build(args.wheel)
    with args.out.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["zone", "name", "g_per_kwh", "year", "source"],
                                lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {len(rows)} zones to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
