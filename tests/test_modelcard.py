"""The model card: written from a training run's log, with the recipe's phases and a running log."""

import json
import re
import shutil

import yaml

from diffill.modelcard import RECIPES, describe_phases, front_matter, phase_files, write_card
from diffill.model.train import TrainConfig, train

TINY = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}


def test_phases_are_described_in_order_with_their_step_ranges(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps({"total_steps": 100}))
    (tmp_path / "b.json").write_text(json.dumps({"optimizer": "muon", "schedule_start": 100, "total_steps": 250,
                                                 "objective": {"hide_eoi": True, "mix": {"line": 0.6}}}))
    (tmp_path / "c.json").write_text(json.dumps({"schedule": "wsd", "schedule_start": 250, "decay_start": 400,
                                                 "total_steps": 500}))
    (tmp_path / "d.json").write_text(json.dumps({"schedule": "wsd", "schedule_start": 400, "decay_start": 600,
                                                 "total_steps": 700}))
    (tmp_path / "e.json").write_text(json.dumps({"schedule": "wsd", "schedule_start": 700, "decay_start": 800,
                                                 "total_steps": 900, "reset_optimizer": True,
                                                 "layers": 8}))
    first, second, third, fourth, fifth = describe_phases(tmp_path)
    assert "steps 0-100" in first and "AdamW" in first and "Objective" not in first
    assert "steps 100-250" in second and "Muon" in second and "from step 100" in second
    assert '"hide_eoi": true' in second and '"line": 0.6' in second
    assert "steps 250-500" in third and "constant to step 400" in third and "linearly to 0.1x at step 500" in third
    assert "steps 400-700" in fourth  # the next phase goes on from the trunk, not from the branch's end
    assert "decayed branch" not in fourth and "afresh" not in fourth
    assert "steps 700-900" in fifth and "decayed branch" in fifth and "optimizer state starts afresh" in fifth
    assert "grown to 8 blocks" in fifth and "grown" not in fourth


def test_phases_run_in_the_order_of_their_numbers(tmp_path):
    for n in (1, 2, 9, 10, 11):
        (tmp_path / f"phase{n}.json").write_text(json.dumps({"schedule_start": 10 * n, "total_steps": 10 * n + 10}))
    assert [p.stem for p in phase_files(tmp_path)] == ["phase1", "phase2", "phase9", "phase10", "phase11"]
    assert [line.split(";")[0] for line in describe_phases(tmp_path)][3] == "`phase10.json`: steps 100-110"


def test_card_has_the_learning_curve_and_appends_to_the_running_log(tiny_corpus, tmp_path):
    run = tmp_path / "run"
    cfg = TrainConfig(batch_size=2, warmup_steps=1, total_steps=4, model=dict(TINY), eval_minutes=1e9)
    figures = iter([0.25, 0.5])

    def evaluate(model, tok):
        return {"line_infill_exact_match": next(figures), "line_overrun_rate": 0.1, "masked_token_accuracy": 0.3}

    train(tiny_corpus, run, cfg, steps=2, progress=False, evaluate=evaluate)
    dest = tmp_path / "model"
    shutil.copytree(run / "checkpoint", dest)
    card = write_card(run, dest).read_text()
    assert "| 2 |" in card and "0.250" in card and (dest / "learning_curve.svg").is_file()
    train(tiny_corpus, run, cfg, steps=2, resume=True, progress=False, evaluate=evaluate)
    card = write_card(run, dest, final={"line_infill_exact_match": 0.5}).read_text()
    history = json.loads((dest / "training_log.json").read_text())
    assert [h["step"] for h in history] == [2, 4]
    assert "phase1.json" in card and "| 0.5000 |" in card


def _front_matter(card: str) -> dict:
    assert card.startswith("---\n"), "a Hugging Face card opens with YAML front matter"
    return yaml.safe_load(card.split("---\n")[1])


def test_card_opens_with_front_matter_whose_model_index_holds_the_figures_given(tiny_corpus, tmp_path):
    run = tmp_path / "run"
    cfg = TrainConfig(batch_size=2, warmup_steps=1, total_steps=2, model=dict(TINY), eval_minutes=1e9)
    train(tiny_corpus, run, cfg, steps=2, progress=False)
    dest = tmp_path / "tiny-model"
    shutil.copytree(run / "checkpoint", dest)
    bare = _front_matter(write_card(run, dest).read_text())
    assert {"license", "language", "library_name", "pipeline_tag", "tags"} <= set(bare)
    assert "model-index" not in bare, "no figures given, none claimed"
    card = write_card(run, dest, final={"line_infill_exact_match": 0.25, "masked_token_accuracy": 0.4},
                      humaneval={"pass_at_1": 0.045, "exact_match": 0.035, "cases": 200}).read_text()
    (index,) = _front_matter(card)["model-index"]
    assert index["name"] == "tiny-model"
    figures = {(r["dataset"]["type"], m["type"]): m["value"] for r in index["results"] for m in r["metrics"]}
    assert figures == {("heldout-python-lines", "exact_match"): 0.25, ("heldout-python-lines", "accuracy"): 0.4,
                       ("openai_humaneval", "pass@1"): 0.045, ("openai_humaneval", "exact_match"): 0.035}
    body = card.split("---\n", 2)[2]
    sections = [line for line in body.splitlines() if line.startswith("## ")]
    assert sections == ["## Intended use", "## Architecture", "## Recipe (`make model`)", "## Training",
                        "## Evaluation", "## Limitations"]


def test_front_matter_leaves_out_what_a_figures_file_lacks():
    meta = yaml.safe_load(front_matter("m", final={"cases": 3}, humaneval={"exact_match": 0.1}).split("---\n")[1])
    assert "model-index" not in meta


def test_the_shipped_cards_open_with_front_matter():
    repo = RECIPES.parents[1]
    for card in (repo / "model" / "checkpoints" / "diffill-base" / "README.md",
                 repo / "adapters" / "checkpoints" / "infill" / "README.md"):
        meta = _front_matter(card.read_text())
        assert meta["license"] == "mit" and meta["model-index"][0]["results"], card


def test_the_recipe_index_lists_every_recipe_in_the_order_make_train_runs_them():
    """model/recipes/README.md: the shipped phases in order with their steps and learning rate, and
    a line for every other recipe."""
    rows = [line for line in (RECIPES / "README.md").read_text().splitlines() if line.startswith("| ")]
    named = [(row, re.search(r"`([^`]+\.json)`", row).group(1)) for row in rows if re.search(r"`[^`]+\.json`", row)]
    shipped = [(row, name) for row, name in named if re.match(r"\| \d+ \|", row)]
    assert [name for _, name in shipped] == [p.name for p in phase_files()]
    for row, name in shipped:
        settings = json.loads((RECIPES / name).read_text())
        assert str(settings["total_steps"]) in row and f"{settings.get('lr', TrainConfig().lr):g}" in row, row
        if settings.get("schedule") == "wsd":
            assert f"trunk {settings.get('schedule_start')}" in row or f"-{settings['decay_start']}," in row, row
    others = {name for row, name in named if not re.match(r"\| \d+ \|", row)}
    assert others == {str(p.relative_to(RECIPES)) for p in RECIPES.glob("*/*.json")}


def test_the_curve_keeps_its_points_when_the_run_folder_is_new(tiny_corpus, tmp_path):
    """Run folders do not outlive a machine: a run that goes on from the shipped weights in a new
    folder adds its evaluations to the card's curve instead of replacing it."""
    cfg = TrainConfig(batch_size=2, warmup_steps=1, total_steps=4, model=dict(TINY), eval_minutes=1e9)
    figures = iter([0.25, 0.5])

    def evaluate(model, tok):
        return {"line_infill_exact_match": next(figures), "line_overrun_rate": 0.1, "masked_token_accuracy": 0.3}

    first, later, dest = tmp_path / "first", tmp_path / "later", tmp_path / "model"
    train(tiny_corpus, first, cfg, steps=2, progress=False, evaluate=evaluate)
    shutil.copytree(first / "checkpoint", dest)
    write_card(first, dest)
    (dest / "training_log.json").write_text(json.dumps([{"date": "2026-11-28", "step": 2, "tokens": 10, "cpu_hours": 0.5, "figures": {}}]))
    train(tiny_corpus, later, cfg, steps=2, init=dest, progress=False, evaluate=evaluate)
    card = write_card(later, dest).read_text()
    points = json.loads((dest / "learning_curve.json").read_text())
    assert [(p["step"], p["eval"]["line_infill_exact_match"]) for p in points] == [(2, 0.25), (4, 0.5)]
    assert "| 2 | " in card and "| 4 | " in card
    assert [h["step"] for h in json.loads((dest / "training_log.json").read_text())] == [2, 4]


def test_the_card_plots_humaneval_where_the_run_logged_it(tiny_corpus, tmp_path):
    cfg = TrainConfig(batch_size=2, warmup_steps=1, total_steps=4, model=dict(TINY), eval_minutes=1e9)

    def evaluate(model, tok):
        return {"line_infill_exact_match": 0.25, "line_overrun_rate": 0.1, "masked_token_accuracy": 0.3}

    def humaneval(model, tok):
        return {"pass_at_1": 0.125, "exact_match": 0.0625, "cases": 16, "seconds": 1.0}

    run, dest = tmp_path / "run", tmp_path / "model"
    train(tiny_corpus, run, cfg, steps=2, progress=False, evaluate=evaluate, humaneval=humaneval)
    shutil.copytree(run / "checkpoint", dest)
    card = write_card(run, dest).read_text()
    assert "| 2 | " in card and "| 16 | 0.125 | 0.062 |" in card
    assert "HumanEval single-line pass@1" in (dest / "learning_curve.svg").read_text()
    points = json.loads((dest / "learning_curve.json").read_text())
    assert sorted("humaneval" in p for p in points) == [False, True]  # one point of each, at step 2
    assert json.loads((dest / "training_log.json").read_text())[-1]["figures"]["line_infill_exact_match"] == 0.25
