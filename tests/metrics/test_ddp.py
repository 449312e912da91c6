"""DDP on CPU: 2 gloo processes on an odd number of images give the single-process values.

The 2 ranks run in the suite's one DDP launch (tests/conftest.py `ddp_results`, kind `metrics`); each
scores its shard (4 and 3 images) with metrics synced over the group. The reference is scored here."""

from pathlib import Path


def test_ddp_two_ranks_odd_images_equal_single_process(ddp_results, monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    import ddp_worker

    single = ddp_worker.score(ddp_worker.make_items())
    shard0 = ddp_worker.score(ddp_worker.make_items()[:4])
    assert abs(shard0["depth/abs_rel"] - single["depth/abs_rel"]) > 1e-6  # shards differ: test can fail
    assert single["depth/num_images"] == 7
    for rank, reduced in enumerate(ddp_results.get("metric_shards")):
        assert set(reduced) == set(single)
        for key, ref in single.items():
            assert abs(reduced[key] - ref) <= 1e-12 * max(1.0, abs(ref)), f"rank {rank} {key}: {reduced[key]} vs {ref}"
