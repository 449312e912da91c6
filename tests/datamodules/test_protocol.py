"""The benchmark protocol table: packaged with datamodules.benchmarks, old run folders still resolve to it."""

from __future__ import annotations

import configparser
import logging
import math
from pathlib import Path

import pytest

from datamodules.benchmarks import protocol
from datamodules.benchmarks.protocol import (
    PACKAGED_PROTOCOL_FILE,
    DepthProtocol,
    is_legacy_protocol_file,
    load_protocols,
    resolve_protocol_file,
)

REPO = Path(__file__).resolve().parents[2]
OLD_DEFAULT = "/work/main/experiments/configs/eval/benchmarks.yaml"
"""What run folders written before the move hold as evaluation.protocol_file."""

# SPEC section 7, copied by hand: (num_images, min_depth m, max_depth m, FE2E bucket as (H, W)).
SPEC_DEPTH = {
    "nyuv2": (654, 1e-3, 10.0, (768, 1024)),
    "kitti": (652, 1e-5, 80.0, (352, 1216)),
    "eth3d": (454, 1e-5, math.inf, (576, 864)),
    "scannet": (800, 1e-3, 10.0, (768, 1024)),
    "diode": (771, 0.6, 350.0, (768, 1024)),
}
SPEC_NORMAL = {"nyuv2_normal": 654, "scannet_normal": 300, "ibims_normal": 100, "sintel_normal": 1064}


def test_packaged_table_is_spec_section_7():
    p = load_protocols()
    assert p.source == str(PACKAGED_PROTOCOL_FILE)
    assert p.names() == sorted(SPEC_DEPTH) + sorted(SPEC_NORMAL)
    for name, (n, lo, hi, size) in SPEC_DEPTH.items():
        d = p.depth[name]
        assert (d.num_images, d.min_depth, d.max_depth, d.input_size) == (n, lo, hi, size), name
        assert d.range_masks_gt == (name != "diode")  # DIODE: the range clips predictions only
    assert {n: q.num_images for n, q in p.normal.items()} == SPEC_NORMAL


def test_table_ships_as_package_data_beside_its_loader():
    assert PACKAGED_PROTOCOL_FILE.is_file()
    assert PACKAGED_PROTOCOL_FILE.parent == Path(protocol.__file__).resolve().parent
    assert "experiments" not in PACKAGED_PROTOCOL_FILE.relative_to(REPO).parts
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    shipped = cfg["options.package_data"]["datamodules.benchmarks"].split()
    assert PACKAGED_PROTOCOL_FILE.name in shipped
    assert not (REPO / "experiments/configs/eval/benchmarks.yaml").exists()  # one copy of the table


@pytest.mark.parametrize("old", [OLD_DEFAULT, "/home/someone/fe2e/experiments/configs/eval/benchmarks.yaml",
                                 Path("relative/experiments/configs/eval/benchmarks.yaml")])
def test_old_location_reads_the_packaged_table_and_says_so(old, caplog):
    assert is_legacy_protocol_file(old)
    with caplog.at_level(logging.INFO, logger=protocol.__name__):
        p = load_protocols(old)
    assert p.source == str(PACKAGED_PROTOCOL_FILE) and p == load_protocols(None)
    assert str(old) in caplog.text and "packaged" in caplog.text


@pytest.mark.parametrize("path", [None, "my/benchmarks.yaml", "/x/configs/eval/benchmarks.yaml",
                                  "/x/experiments/configs/eval/other.yaml"])
def test_other_paths_are_not_the_old_location(path):
    assert not is_legacy_protocol_file(path)


def test_own_table_is_read_from_its_file(tmp_path):
    own = tmp_path / "mine.yaml"
    own.write_text("depth:\n  nyuv2: {num_images: 3, min_depth: 0.5, max_depth: 4.0, input_size: [64, 96]}\n")
    p = load_protocols(own)
    assert resolve_protocol_file(own) == own and p.source == str(own)
    assert p.depth["nyuv2"] == DepthProtocol("nyuv2", 3, 0.5, 4.0, input_size=(64, 96))
    assert p.normal == {}


def test_retired_alignment_key_warns_naming_file_and_key(tmp_path, caplog):
    own = tmp_path / "old_copy.yaml"
    own.write_text("depth:\n  kitti: {num_images: 652, min_depth: 1.0e-5, max_depth: 80.0, alignment: log}\n")
    with caplog.at_level(logging.WARNING, logger=protocol.__name__):
        p = load_protocols(own)
    assert str(own) in caplog.text and "depth.kitti.alignment" in caplog.text
    assert "evaluation.alignment" in caplog.text  # where the setting lives
    assert p.depth["kitti"] == DepthProtocol("kitti", 652, 1e-5, 80.0)
    assert not hasattr(p.depth["kitti"], "alignment")


def test_bad_tables_name_the_file_and_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("depth:\n  nyuv2: {num_images: 3, min_depth: 0.1, max_depth: 4.0, max_dept: 5}\n")
    with pytest.raises(ValueError, match=r"bad\.yaml.*depth\.nyuv2.*max_dept"):
        load_protocols(bad)
    bad.write_text("depths:\n  nyuv2: {num_images: 3}\n")
    with pytest.raises(ValueError, match=r"bad\.yaml.*'depths'"):
        load_protocols(bad)
    with pytest.raises(FileNotFoundError, match=r"missing\.yaml"):
        load_protocols(tmp_path / "missing.yaml")
