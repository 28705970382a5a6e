"""Vehicle models and the DBC -> catalog mapping: configuration errors name the problem."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest

from vehicle_ingest.can.mapping import unit_conversion
from vehicle_ingest.can.models import CanDecoder, default_models_path
from vehicle_ingest.catalog import load_signal_catalog
from vehicle_ingest.errors import CatalogError

SIGNALS = load_signal_catalog()
SCHEMAS = default_models_path().parent


def _models(tmp_path: Path, mapping: str, prefixes: str = '["SMX"]') -> Path:
    shutil.copy(SCHEMAS / "vi_sim_powertrain.dbc", tmp_path)
    (tmp_path / "mapping.toml").write_text(mapping)
    path = tmp_path / "models.toml"
    path.write_text(
        f'[[model]]\nname = "m"\nvin_prefixes = {prefixes}\ndbc = ["vi_sim_powertrain.dbc"]\nmapping = "mapping.toml"\n'
    )
    return path


def test_bundled_models_load_and_the_longest_prefix_wins():
    decoder = CanDecoder.load(default_models_path(), SIGNALS)
    assert [m.name for m in decoder.models] == ["vi-sim-phev"]
    assert decoder.model_of("SMXABCDEFGH123456") == 0 and decoder.model_of("WVWZZZ1JZXW000001") == -1
    longer = dataclasses.replace(decoder.models[0], name="long", vin_prefixes=("SMXA",))
    two = CanDecoder([*decoder.models, longer])
    assert two.model_of("SMXABCDEFGH123456") == 1 and two.model_of("SMXBBCDEFGH123456") == 0


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ('message = "Odometer"\nsignal = "Nope"\ncatalog = "Vehicle.Speed"', "Odometer.Nope is not a signal"),
        ('message = "Odometer"\nsignal = "OdometerTotal"\ncatalog = "Vehicle.Nope"', "Vehicle.Nope"),
        (
            'message = "VehicleDynamics"\nsignal = "VehicleSpeed"\n'
            'catalog = "Vehicle.Powertrain.CombustionEngine.Speed"',
            "no conversion from 'km/h' to 'rpm'",
        ),
        ('message = "Odometer"\nsignal = "OdometerTotal"\ncatalogue = "Vehicle.Speed"', "unknown keys"),
    ],
)
def test_mapping_errors_name_the_rule_and_the_problem(tmp_path, entry, problem):
    with pytest.raises(CatalogError, match=problem):
        CanDecoder.load(_models(tmp_path, f"[[signal]]\n{entry}\n"), SIGNALS)


def test_explicit_factor_and_offset_override_the_unit_conversion(tmp_path):
    rule = 'message = "VehicleDynamics"\nsignal = "VehicleSpeed"\ncatalog = "Vehicle.Powertrain.CombustionEngine.Speed"'
    decoder = CanDecoder.load(_models(tmp_path, f"[[signal]]\n{rule}\nfactor = 40.0\noffset = 0.0\n"), SIGNALS)
    mapped = decoder.models[0].mapping
    assert sorted(mapped.factor[mapped.catalog_id >= 0].tolist()) == [40.0]


def test_empty_prefix_list_is_refused(tmp_path):
    with pytest.raises(CatalogError, match="vin_prefixes"):
        CanDecoder.load(_models(tmp_path, "", prefixes="[]"), SIGNALS)


@pytest.mark.parametrize(
    ("dbc", "catalog", "expected"),
    [
        ("km", "m", (1000.0, 0.0)),
        ("%", "percent", (1.0, 0.0)),
        ("degC", "Celsius", (1.0, 0.0)),
        ("mph", "km/h", (1.609344, 0.0)),
        ("", "km/h", (1.0, 0.0)),
        ("rpm", "km/h", None),
    ],
)
def test_unit_conversions(dbc, catalog, expected):
    assert unit_conversion(dbc, catalog) == expected
