"""`robo-reward bench learn`: every variant x seed trains under the budget and the report has its fields."""

import json

import pytest

from robo_reward.cli import main
from sim.physics import usable_cores


@pytest.mark.parametrize("jobs", [1, 2])
def test_bench_learn_reports_each_variant_and_seed(tmp_path, capsys, jobs):
    out = tmp_path / "bench"
    code = main(["bench", "learn", "--task", "reach", "--budget-min", "0.02", "--seeds", "2", "--num-envs", "8",
                 "--variants", "sparse,pbrs_privileged", "--out", str(out), "--json", "--jobs", str(jobs)])  # fmt: skip
    assert code == 0
    report = json.loads(capsys.readouterr().out)  # --json: one object on stdout
    assert (report["task"], report["budget_min"]) == ("reach", 0.02)
    rows = report["results"]
    assert [(r["variant"], r["seed"]) for r in rows] == [("sparse", 0), ("sparse", 1), ("pbrs_privileged", 0),
                                                         ("pbrs_privileged", 1)]  # fmt: skip
    for row in rows:
        assert {"success_rate", "env_steps_to_90", "wall_s_to_90"} <= set(row)
        assert row["env_steps"] >= 10 * 24 * 8 and row["wall_s"] > 0  # at least one chunk of 10 iterations
    assert (out / "bench_learn.png").stat().st_size > 10_000
    assert json.loads((out / "bench_learn.json").read_text()) == report
    summary = json.loads((out / "pbrs_privileged" / "seed1" / "train_summary.json").read_text())
    assert summary["shaping"] == "pbrs" and summary["seed"] == 1
    # two runs at a time share the cores: each steps its envs on its share of them
    cores = usable_cores()
    assert summary["config"]["physics_threads"] == (None if jobs == 1 else max(1, cores // 2))


def test_bench_learn_refuses_unknown_variants(tmp_path, capsys):
    code = main(["bench", "learn", "--variants", "sparse,magic", "--out", str(tmp_path / "b")])
    assert code == 2
    assert "unknown variants ['magic']" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()


def test_bench_learn_warm_starts_every_run_from_the_same_demos(tmp_path, capsys):
    from robo_reward.data.record import RecordConfig, record

    demos = tmp_path / "reach.h5"
    record(RecordConfig(task="reach", num_demos=24, out=demos, cameras=("front",), res=16, noise=0.3, seed=3,
                        progress_bar=False))  # fmt: skip
    out = tmp_path / "bench"
    code = main(["bench", "learn", "--task", "reach", "--budget-min", "0.02", "--seeds", "1", "--num-envs", "8",
                 "--variants", "sparse,pbrs_privileged", "--out", str(out), "--json",
                 "--warm-start", str(demos)])  # fmt: skip
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["warm_start"] == str(demos.resolve())
    clones = []
    for variant in ("sparse", "pbrs_privileged"):
        summary = json.loads((out / variant / "seed0" / "train_summary.json").read_text())
        assert summary["config"]["warm_start"]["demos"] == [str(demos.resolve())]
        clones.append(summary["warm_start"])
    assert clones[0]["pairs"] == clones[1]["pairs"] > 0  # the same demos cloned before each run


def test_bench_learn_refuses_a_missing_warm_start_file_or_one_of_another_task(tmp_path, capsys):
    from robo_reward.data.record import RecordConfig, record

    code = main(["bench", "learn", "--warm-start", str(tmp_path / "none.h5"), "--out", str(tmp_path / "b")])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "none.h5: no such demo file (--warm-start)" in err[0]
    reach = tmp_path / "reach.h5"
    record(RecordConfig(task="reach", num_demos=2, out=reach, cameras=("front",), res=16, progress_bar=False))
    capsys.readouterr()
    code = main(["bench", "learn", "--task", "push_cube", "--warm-start", str(reach), "--out", str(tmp_path / "b")])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "reach.h5: demos of task 'reach', not 'push_cube' (--warm-start)" in err[0]
    assert not (tmp_path / "b").exists()
