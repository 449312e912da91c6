"""The table writers (pandas' own, fed formatted cells) against expected text."""

import re

import numpy as np
import pandas as pd

from analysis.writers import to_csv, to_latex, to_markdown


def _table():
    df = pd.DataFrame({
        "method": ["FE2E", "ours_run"],
        "KITTI AbsRel": [6.6, 12.345],
        "KITTI <11.25": [96.0, np.nan],
        "rank": [1.25, 2.0],
        "published": [True, False],
        "source": ["FE2E arXiv 2509.04338 Table 1", "ours: backbone=tiny, data=synthetic, steps=5"],
    })
    df.attrs["caption"] = "Ours ran on tiny, synthetic, 5 steps."
    return df


def test_markdown():
    """Cells, alignment and caption; column padding (tabulate's) is free, so runs of spaces are collapsed
    and the separator row's dashes counted as one."""
    expected = (
        "| method | KITTI AbsRel | KITTI <11.25 | rank |\n"
        "|:-|-:|-:|-:|\n"
        "| FE2E \u2020 | 6.6 | 96.0 | 1.2 |\n"
        "| ours_run | 12.3 | - | 2.0 |\n"
        "\n"
        "Ours ran on tiny, synthetic, 5 steps.\n"
    )
    text = to_markdown(_table())
    assert re.sub("-+", "-", re.sub(" +", " ", text)) == expected


def test_csv(tmp_path):
    expected = (
        "method,KITTI AbsRel,KITTI <11.25,rank,published,source\n"
        "FE2E,6.6,96.0,1.2,True,FE2E arXiv 2509.04338 Table 1\n"
        'ours_run,12.3,,2.0,False,"ours: backbone=tiny, data=synthetic, steps=5"\n'
    )
    path = tmp_path / "t.csv"
    assert to_csv(_table(), path) == expected
    assert path.read_text() == expected


def test_latex():
    expected = (
        "\\begin{table}[t]\n"
        "\\centering\n"
        "\\caption{Ours ran on tiny, synthetic, 5 steps.}\n"
        "\\begin{tabular}{lrrr}\n"
        "\\toprule\n"
        "method & KITTI AbsRel & KITTI $<$11.25 & rank \\\\\n"
        "\\midrule\n"
        "FE2E $^\\dagger$ & 6.6 & 96.0 & 1.2 \\\\\n"
        "ours\\_run & 12.3 & - & 2.0 \\\\\n"
        "\\bottomrule\n"
        "\\end{tabular}\n"
        "\\end{table}\n"
    )
    assert to_latex(_table()) == expected
