"""workflow/summarize.py on numbers made here: what --best chooses and when it says the search was too narrow."""

from workflow.table import at_the_edge, keep_best


def entry(gap, **options):
    return {"avg_gap": gap, "options": options, "n": 1, "sparsity": 0.0}


def test_a_best_setting_at_the_end_of_the_range_is_called_out_and_one_inside_is_not():
    assert at_the_edge({"alpha": 1e-5}, [{"alpha": a} for a in (1e-9, 1e-7, 1e-5)]) == ["alpha (1e-05 is the largest of 1e-09..1e-05)"]
    assert at_the_edge({"alpha": 1e-9}, [{"alpha": a} for a in (1e-9, 1e-7, 1e-5)]) == ["alpha (1e-09 is the smallest of 1e-09..1e-05)"]
    assert at_the_edge({"alpha": 1e-7}, [{"alpha": a} for a in (1e-9, 1e-7, 1e-5)]) == []
    # two options varied: only the one at its edge is named
    tried = [{"unlearn_lr": lr, "alpha": a} for lr in (0.01, 0.1) for a in (1e-4, 1e-3, 1e-2)]
    assert at_the_edge({"unlearn_lr": 0.1, "alpha": 1e-3}, tried) == ["unlearn_lr (0.1 is the largest of 0.01..0.1)"]


def test_best_keeps_the_smallest_gap_and_its_note_says_when_it_sits_at_the_edge():
    table = {
        ("class-wise", "dense", "retrain", ""): entry(0.0),
        ("class-wise", "dense", "wfisher", "alpha=0.1"): entry(5.0, alpha=0.1),
        ("class-wise", "dense", "wfisher", "alpha=0.3"): entry(2.0, alpha=0.3),
        ("class-wise", "dense", "wfisher", "alpha=1"): entry(3.0, alpha=1),
        ("class-wise", "dense", "GA", "unlearn_lr=0.001"): entry(4.0, unlearn_lr=0.001),
        ("class-wise", "dense", "GA", "unlearn_lr=0.01"): entry(1.0, unlearn_lr=0.01),
    }
    kept, notes, overrides = keep_best(table)
    assert set(kept) == {
        ("class-wise", "dense", "retrain", ""),
        ("class-wise", "dense", "wfisher", "alpha=0.3"),
        ("class-wise", "dense", "GA", "unlearn_lr=0.01"),
    }
    iu = next(n for n in notes if n.startswith("IU"))
    ga = next(n for n in notes if n.startswith("GA"))
    assert "selected alpha=0.3 (Avg. Gap 2.00) over alpha=1 (3.00), alpha=0.1 (5.00)" in iu and "EDGE" not in iu
    assert "AT THE EDGE of the range searched for unlearn_lr (0.01 is the largest of 0.001..0.01): widen the search" in ga
    assert {"model": "dense", "scenario": "class-wise", "method": "wfisher", "options": {"alpha": 0.3}} in overrides


def test_ulira_rows_that_share_targets_are_compared_with_a_paired_interval(tmp_path):
    import numpy as np

    from evaluation.ulira import paired_difference
    from workflow.ulira import ulira_paired

    rng = np.random.default_rng(0)
    member = rng.uniform(size=(8, 50)).argsort(axis=0) < 4  # every target in half the models
    centre = rng.normal(0, 2, size=50)
    rows = {
        ("dense", "retrain"): centre + rng.normal(size=member.shape),
        ("dense", "raw"): centre + 2.0 * member + rng.normal(size=member.shape),
        ("95% sparse", "retrain"): centre + rng.normal(size=member.shape),
        ("95% sparse", "raw"): centre + 2.0 * member + rng.normal(size=member.shape),
    }
    for (model, method), stats in rows.items():
        (tmp_path / model.replace("% ", "_")).mkdir(exist_ok=True)
        np.savez(tmp_path / model.replace("% ", "_") / f"{method}.npz", stats=stats, forgotten=member, targets=np.arange(50))
    text = ulira_paired(str(tmp_path), {key: {} for key in rows}, resamples=100)
    line = next(row for row in text.splitlines() if row.startswith("| Original − Retrain, dense |"))
    expected = paired_difference(rows["dense", "retrain"], rows["dense", "raw"], member, ~member, bootstrap=100)
    assert f"| {100 * expected['difference']:+.1f} |" in line and line.endswith("| higher |")
    assert any(row.startswith("| Original: 95% sparse − dense |") for row in text.splitlines())


def test_with_several_original_models_best_judges_each_model_so_a_collapse_on_one_is_not_hidden():
    from workflow.table import aggregate, best_scores

    def row(model_seed, method, setting, ua, ra, seed=1):
        return {"scenario": "class-wise", "model": "dense", "method": method, "setting": setting, "train_seed": model_seed,
                "seed": seed, "UA": ua, "MIA-Efficacy": ua, "RA": ra, "TA": ra, "RTE": 1.0, "sparsity": 0.0,
                "options": {"unlearn_lr": float(setting.split("=")[1])} if setting else {}}  # fmt: skip

    rows = [row(m, "retrain", "", 100, 90) for m in (1, 2)]
    # lr=0.1 overshoots on model 1 and undershoots on model 2: pooled means land on Retrain, each model is far off.
    rows += [row(1, "FT", "unlearn_lr=0.1", 100, 100), row(2, "FT", "unlearn_lr=0.1", 100, 80)]
    rows += [row(1, "FT", "unlearn_lr=0.01", 100, 88), row(2, "FT", "unlearn_lr=0.01", 100, 88)]
    rows += [row(1, "FT", "unlearn_lr=0.05", 100, 91)]  # on one model only: no candidate
    table = aggregate(rows)
    assert table["class-wise", "dense", "FT", "unlearn_lr=0.1"]["avg_gap"] == 0.0  # what pooling would pick
    scores = best_scores(rows)
    assert scores["class-wise", "dense", "FT", "unlearn_lr=0.1"] == 5.0  # (|100-90| + |100-90|) / 4 per model, then (5 + 5) / 2
    assert scores["class-wise", "dense", "FT", "unlearn_lr=0.01"] == 1.0
    assert ("class-wise", "dense", "FT", "unlearn_lr=0.05") not in scores
    kept, notes, overrides = keep_best(table, scores)
    assert ("class-wise", "dense", "FT", "unlearn_lr=0.01") in kept and ("class-wise", "dense", "FT", "unlearn_lr=0.1") not in kept
    assert "selected unlearn_lr=0.01 (Avg. Gap 1.00) over unlearn_lr=0.1 (5.00)" in notes[0] and "0.05" not in notes[0]


def test_best_by_worst_keeps_the_setting_whose_worst_original_model_is_best():
    from workflow.table import aggregate, best_scores

    def row(model_seed, setting, ra):
        options = {"alpha": float(setting.split("=")[1])} if setting else {}
        return {"scenario": "class-wise", "model": "dense", "method": "wfisher" if setting else "retrain", "setting": setting,
                "train_seed": model_seed, "seed": 1, "UA": 100, "MIA-Efficacy": 100, "RA": ra, "TA": 80, "RTE": 1.0,
                "sparsity": 0.0, "options": options}  # fmt: skip

    rows = [row(m, "", 90) for m in (1, 2, 3)]
    rows += [row(1, "alpha=1", 90), row(2, "alpha=1", 90), row(3, "alpha=1", 30)]  # right on two models, collapses on one
    rows += [row(m, "alpha=0.3", 66) for m in (1, 2, 3)]  # off by the same on every model
    rows += [row(m, "alpha=0.1", 10) for m in (1, 2, 3)]
    by_mean, by_worst = best_scores(rows, "mean"), best_scores(rows, "worst")
    assert by_mean["class-wise", "dense", "wfisher", "alpha=1"] == 5.0 and by_worst["class-wise", "dense", "wfisher", "alpha=1"] == 15.0
    assert by_mean["class-wise", "dense", "wfisher", "alpha=0.3"] == by_worst["class-wise", "dense", "wfisher", "alpha=0.3"] == 6.0
    table = aggregate(rows)
    assert ("class-wise", "dense", "wfisher", "alpha=1") in keep_best(table, by_mean)[0]
    kept, notes, _ = keep_best(table, by_worst)
    assert ("class-wise", "dense", "wfisher", "alpha=0.3") in kept and "EDGE" not in notes[0]
