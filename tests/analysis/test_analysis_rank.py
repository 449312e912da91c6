"""average_rank and the table builders, against hand-worked ranks."""

import math

import numpy as np
import pandas as pd
import pytest

from analysis.tables import ablation_table, average_rank, depth_table, normal_table


def test_average_rank_hand_worked_ties_and_missing():
    # x (lower better): 1.0, 2.0, 2.0, NaN -> A 1, B 2.5, C 2.5, D excluded
    # y (higher better): 90, 95, 80, 95 -> B and D share ranks 1 and 2 -> 1.5; A 3; C 4
    df = pd.DataFrame({"x": [1.0, 2.0, 2.0, np.nan], "y": [90, 95, 80, 95]}, index=list("ABCD"))
    got = average_rank(df, {"x": "lower", "y": "higher"})
    expected = {"A": (1 + 3) / 2, "B": (2.5 + 1.5) / 2, "C": (2.5 + 4) / 2, "D": 1.5}
    for k, v in expected.items():
        assert got[k] == pytest.approx(v)


def test_average_rank_row_without_values_is_nan_and_bad_keys_raise():
    df = pd.DataFrame({"x": [1.0, np.nan], "y": [3.0, np.nan]})
    got = average_rank(df, {"x": "lower", "y": "lower"})
    assert got[0] == 1.0 and math.isnan(got[1])
    with pytest.raises(KeyError, match="zzz"):
        average_rank(df, {"zzz": "lower"})
    with pytest.raises(ValueError, match="direction"):
        average_rank(df, {"x": "smaller"})


def _row(abs_rel, delta1, **meta):
    base = {"method": "FE2E", "backbone": "tiny-step1x", "data": "synthetic", "steps": 20, "run": "editor"}
    base.update(meta)
    return {"meta": base, "depth": {"kitti": {"abs_rel": abs_rel, "delta1": delta1}},
            "normal": {"nyuv2_normal": {"mean": 15.0, "a11_25": 0.7}}}


def test_depth_table_ranks_ours_with_published():
    df = depth_table([_row(0.030, 0.999)])
    ours = df[~df["published"]].iloc[0]
    assert ours["KITTI AbsRel"] == pytest.approx(3.0) and ours["KITTI delta1"] == pytest.approx(99.9)
    assert math.isnan(ours["NYUv2 AbsRel"])
    # ours is best in both of its 2 cells -> rank 1.0
    assert ours["rank"] == pytest.approx(1.0)
    # FE2E published: hand count over 10 columns with our row added (7 rows):
    # NYUv2 AbsRel 4.1 best ->1; NYUv2 d1 97.7 second (DA 97.9) ->2; KITTI AbsRel 6.6 ->2 (ours 3.0);
    # KITTI d1 96.0 ->2; ETH3D 3.8 ->1; ETH3D d1 ->1; ScanNet ->1, ->1; DIODE AbsRel 22.8 ties Lotus -> 1.5;
    # DIODE d1 81.2 -> 1.  mean = (1+2+2+2+1+1+1+1+1.5+1)/10 = 1.35
    fe2e = df[df["published"] & (df["method"] == "FE2E")].iloc[0]
    assert fe2e["rank"] == pytest.approx(1.35)
    assert fe2e["rank (paper)"] == pytest.approx(1.4)
    assert "data=synthetic" in df.attrs["caption"] and "steps=20" in df.attrs["caption"]
    assert "SMOKE SCALE" in df.attrs["caption"]


def test_normal_table_units_and_ablation_order():
    nt = normal_table([_row(0.1, 0.9)], published_csv=None)
    assert list(nt["NYUv2 <11.25"]) == [pytest.approx(70.0)]
    assert nt["rank"].iloc[0] == 1.0
    ab = ablation_table([_row(0.1, 0.9, ablation_id=8, cv=True, fs=True, dl=True, q="log")])
    ids = list(ab["id"])
    assert ids == ["1", "2", "3", "4", "5", "6", "7", "8", "8", "9"]
    ours = ab[~ab["published"]].iloc[0]
    assert ours.name == 8 and ab.loc[7, "published"]  # published row 8 precedes ours
    assert (ours["CV"], ours["FS"], ours["DL"], ours["JE"], ours["Q"]) == ("x", "x", "x", "", "log")
    assert ours["KITTI AbsRel"] == pytest.approx(10.0)


def test_ablation_config_from_run_meta():
    from analysis.tables import ablation_config

    meta = {"method": "fe2e", "backbone": "tiny-generator", "quantization": "log",
            "objective": {"kind": "consistent_velocity", "fixed_start": True, "dispersive_weight": 0.5,
                          "joint_estimation": False}}
    assert ablation_config(meta) == {"id": "8", "foundation": "tiny-generator", "cv": "x", "fs": "x", "dl": "x",
                                     "je": "", "q": "log"}
    meta["objective"] = {"kind": "direct_adapt", "fixed_start": True, "dispersive_weight": 0.0}
    meta.update(backbone="step1x-edit", quantization="direct")
    got = ablation_config(meta)
    assert (got["id"], got["cv"], got["fs"], got["dl"]) == ("2", "", "", "")
    meta["quantization"] = "inverse"  # no published row: id left empty
    assert ablation_config(meta)["id"] == ""
