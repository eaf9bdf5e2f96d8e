import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from diffill.model.train import TrainConfig, init_state, lr_at, train

TINY = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}


def _cfg():
    return TrainConfig(batch_size=4, warmup_steps=2, total_steps=20, model=dict(TINY), eval_minutes=1e9)


def test_schedule_warms_up_then_decays():
    cfg = TrainConfig(lr=1.0, warmup_steps=10, total_steps=110, min_lr_ratio=0.1)
    assert lr_at(0, cfg) == 0.1 and lr_at(9, cfg) == 1.0
    assert lr_at(60, cfg) < 1.0 and abs(lr_at(110, cfg) - 0.1) < 1e-9


def test_a_later_phase_re_warms_from_its_schedule_start():
    cfg = TrainConfig(lr=1.0, warmup_steps=10, total_steps=1110, min_lr_ratio=0.1, schedule_start=1000)
    assert lr_at(1000, cfg) == 0.1 and lr_at(1009, cfg) == 1.0
    assert 0.1 < lr_at(1060, cfg) < 1.0 and abs(lr_at(1110, cfg) - 0.1) < 1e-9


@pytest.mark.parametrize("optimizer", ["adamw", "muon"])
def test_resumed_run_matches_an_uninterrupted_one(tiny_corpus, tmp_path, optimizer):
    def cfg():
        return dataclasses.replace(_cfg(), optimizer=optimizer)

    straight = train(tiny_corpus, tmp_path / "a", cfg(), steps=4, progress=False)
    train(tiny_corpus, tmp_path / "b", cfg(), steps=2, progress=False)
    resumed = train(tiny_corpus, tmp_path / "b", cfg(), steps=2, resume=True, progress=False)
    assert straight["step"] == resumed["step"] == 4
    _assert_same_weights(tmp_path / "a", tmp_path / "b")


def test_a_run_records_its_context_window_in_the_model_config(tiny_corpus, tmp_path):
    from diffill.model.context import Window, window_of
    from diffill.model.runs import latest_checkpoint

    cfg = _cfg()
    cfg.objective.window = Window(40, 20)
    train(tiny_corpus, tmp_path / "w", cfg, steps=1, progress=False)
    saved = json.loads((latest_checkpoint(tmp_path / "w") / "config.json").read_text())
    assert (saved["prefix_tokens"], saved["suffix_tokens"]) == (40, 20)
    assert saved["languages"] == ["python"]  # the corpus's language, which the engine then fills only
    assert window_of(type("Old", (), {})()) == Window()  # a config written before the window was


def test_going_on_with_another_window_than_the_model_was_trained_with_is_logged(tiny_corpus, tmp_path, caplog):
    from diffill.model.context import Window

    train(tiny_corpus, tmp_path / "w", _cfg(), steps=1, progress=False)
    train(tiny_corpus, tmp_path / "w", _cfg(), steps=1, resume=True, progress=False)
    assert "context window" not in caplog.text
    wider = _cfg()
    wider.objective.window = Window(40, 20)
    train(tiny_corpus, tmp_path / "w", wider, steps=1, resume=True, progress=False)
    assert "trained with a context window of 112 + 48 tokens (prefix + suffix); this run trains it with 40 + 20" in caplog.text


def test_switching_optimizer_on_resume_starts_its_state_afresh(tiny_corpus, tmp_path):
    train(tiny_corpus, tmp_path / "r", _cfg(), steps=2, progress=False)
    muon = dataclasses.replace(_cfg(), optimizer="muon")
    state = train(tiny_corpus, tmp_path / "r", muon, steps=2, resume=True, progress=False)
    assert state["step"] == 4
    meta = json.loads((tmp_path / "r" / "checkpoint" / "optimizer.json").read_text())
    assert meta["optimizer"] == "muon"
    keys = load_file(str(tmp_path / "r" / "checkpoint" / "optimizer.safetensors"))
    assert any(k.endswith("::momentum_buffer") for k in keys) and any(k.endswith("::exp_avg") for k in keys)
    with pytest.raises(ValueError, match="unknown optimizer"):
        train(tiny_corpus, tmp_path / "s", dataclasses.replace(_cfg(), optimizer="sgd"), steps=1, progress=False)


def test_killed_run_resumes_at_its_checkpointed_step(tiny_corpus, tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "diffill.cli", "train", "--corpus", str(tiny_corpus), "--out", str(out),
           "--set", "batch_size=2", "--set", "checkpoint_minutes=0.0001", "--set", "eval_minutes=1e9"]
    cmd += [x for k, v in TINY.items() for x in ("--set", f"model.{k}={v}")]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen(cmd + ["--steps", "100000"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = out / "checkpoint" / "trainer_state.json"
    deadline = time.time() + 120
    while time.time() < deadline and not (state.is_file() and json.loads(state.read_text())["step"] >= 3):
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = json.loads(state.read_text())["step"]
    assert killed_at >= 3
    done = subprocess.run(cmd + ["--steps", "2", "--resume"], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads(state.read_text())["step"] == killed_at + 2
    steps = [json.loads(line)["step"] for line in (out / "log.jsonl").read_text().splitlines() if '"loss"' in line]
    assert steps[-2:] == [killed_at + 1, killed_at + 2]


def test_until_step_trains_only_the_missing_steps(tiny_corpus, tmp_path):
    assert train(tiny_corpus, tmp_path / "r", _cfg(), until_step=3, progress=False)["step"] == 3
    assert train(tiny_corpus, tmp_path / "r", _cfg(), until_step=5, resume=True, progress=False)["step"] == 5
    assert train(tiny_corpus, tmp_path / "r", _cfg(), until_step=5, resume=True, progress=False)["step"] == 5


def test_objective_settings_reach_the_nested_config():
    from diffill.commands.train import _apply
    from diffill.errors import DiffillError

    cfg = TrainConfig()
    _apply(cfg, "objective.plain_fraction", 0.1)
    _apply(cfg, "objective", {"mix": {"line": 0.6, "chars": 0.0}, "plain_length": 96})
    assert cfg.objective.plain_fraction == 0.1 and cfg.objective.plain_length == 96
    assert cfg.objective.mix.line == 0.6 and cfg.objective.mix.chars == 0.0
    _apply(cfg, "objective", {"window": {"prefix_tokens": 224, "suffix_tokens": 96}})  # a frozen dataclass
    _apply(cfg, "objective.window.suffix_tokens", 80)
    assert (cfg.objective.window.prefix_tokens, cfg.objective.window.suffix_tokens) == (224, 80)
    for bad in ("objective.nope", "objective.mix.nope", "objective.window.nope", "nope"):
        with pytest.raises(DiffillError, match="unknown training setting"):
            _apply(cfg, bad, 1)


def _wsd(**kw):
    base = dict(lr=1.0, warmup_steps=10, schedule_start=100, decay_start=200, total_steps=300, min_lr_ratio=0.1,
                schedule="wsd")
    return TrainConfig(**{**base, **kw})


def test_wsd_schedule_warms_up_holds_then_decays_linearly():
    cfg = _wsd()
    assert lr_at(100, cfg) == 0.1 and lr_at(109, cfg) == 1.0
    assert lr_at(150, cfg) == lr_at(199, cfg) == lr_at(200, cfg) == 1.0
    assert abs(lr_at(250, cfg) - 0.55) < 1e-9 and abs(lr_at(300, cfg) - 0.1) < 1e-9 and lr_at(400, cfg) == lr_at(300, cfg)
    resumed_trunk = _wsd(schedule_start=200, warmup_steps=0, decay_start=400, total_steps=500)
    assert lr_at(200, resumed_trunk) == lr_at(399, resumed_trunk) == 1.0


@pytest.mark.parametrize("bad", [dict(schedule="step"), dict(decay_start=0), dict(decay_start=6)])
def test_bad_schedules_are_refused(tiny_corpus, tmp_path, bad):
    with pytest.raises(ValueError, match="schedule"):
        train(tiny_corpus, tmp_path / "r", dataclasses.replace(_cfg(), **{**_wsd_tiny(), **bad}), steps=1,
              progress=False)


def _wsd_tiny(start=0, decay=4, total=6, warmup=1):
    return dict(schedule="wsd", schedule_start=start, warmup_steps=warmup, decay_start=decay, total_steps=total)


def _weights(ckpt):
    return load_file(str(ckpt / "model.safetensors"))


def test_wsd_keeps_its_trunk_and_decays_a_branch_that_the_next_phase_leaves_behind(tiny_corpus, tmp_path):
    from diffill.model.runs import latest_checkpoint
    from diffill.model.train import resume_source

    phase = dataclasses.replace(_cfg(), **_wsd_tiny())
    straight = tmp_path / "a"
    train(tiny_corpus, straight, phase, until_step=6, resume=True, progress=False)
    trunk, branch = straight / "checkpoint", straight / "cooldown" / "checkpoint"
    assert json.loads((trunk / "trainer_state.json").read_text())["step"] == 4
    state = json.loads((branch / "trainer_state.json").read_text())
    assert state["step"] == 6 and state["branched_at"] == 4
    assert latest_checkpoint(straight) == branch
    logged = [json.loads(line) for line in (straight / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged if r.get("cooldown")] == [5, 6]

    # stopped inside the branch and resumed: the same weights as the run that went straight through
    split = tmp_path / "b"
    train(tiny_corpus, split, phase, until_step=5, resume=True, progress=False)
    train(tiny_corpus, split, phase, until_step=6, resume=True, progress=False)
    for sub in ("checkpoint", "cooldown/checkpoint"):
        wa, wb = _weights(straight / sub), _weights(split / sub)
        for k in wa:
            torch.testing.assert_close(wa[k], wb[k], atol=1e-5, rtol=1e-4)

    # the next phase resumes the trunk at step 4, at its full lr, and leaves the branch as it was
    nxt = dataclasses.replace(_cfg(), **_wsd_tiny(start=4, decay=8, total=10, warmup=0))
    assert resume_source(straight, nxt) == trunk
    cooled = _weights(branch)
    assert train(tiny_corpus, straight, nxt, until_step=7, resume=True, progress=False)["step"] == 7
    lrs = [json.loads(line)["lr"] for line in (straight / "log.jsonl").read_text().splitlines()][-3:]
    assert lrs == [phase.lr] * 3
    assert json.loads((trunk / "trainer_state.json").read_text())["step"] == 7
    for k, v in _weights(branch).items():
        assert torch.equal(v, cooled[k])
    assert latest_checkpoint(straight) == trunk
    # the finished phase has nothing left to do
    assert train(tiny_corpus, straight, phase, until_step=6, resume=True, progress=False)["step"] == 6


def test_a_wsd_phase_refuses_a_trunk_past_its_decay_start(tiny_corpus, tmp_path):
    train(tiny_corpus, tmp_path / "r", _cfg(), steps=5, progress=False)
    with pytest.raises(ValueError, match="past this schedule's decay_start"):
        train(tiny_corpus, tmp_path / "r", dataclasses.replace(_cfg(), **_wsd_tiny()), until_step=6, resume=True,
              progress=False)


def test_batch_workers_give_the_same_run(tiny_corpus, tmp_path):
    inline = train(tiny_corpus, tmp_path / "a", _cfg(), steps=3, progress=False)
    workers = train(tiny_corpus, tmp_path / "b", dataclasses.replace(_cfg(), workers=2), steps=3, progress=False)
    assert inline["step"] == workers["step"] == 3 and inline["tokens"] == workers["tokens"]
    wa, wb = _weights(tmp_path / "a" / "checkpoint"), _weights(tmp_path / "b" / "checkpoint")
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], atol=1e-5, rtol=1e-4)


def test_a_phase_goes_on_from_the_finished_branch_as_a_run_from_its_export_does(tiny_corpus, tmp_path):
    """The re-warm of the shipped weights: ``make train`` resumes the last phase's branch with the
    optimizer afresh, as a machine that has only the exported model (``--init``) does."""
    from diffill.model.export import export
    from diffill.model.train import resume_source

    run = tmp_path / "run"
    train(tiny_corpus, run, dataclasses.replace(_cfg(), **_wsd_tiny()), until_step=6, resume=True, progress=False)
    branch = run / "cooldown" / "checkpoint"
    shutil.copytree(run, tmp_path / "kept")
    rewarm = dataclasses.replace(_cfg(), **_wsd_tiny(start=6, decay=8, total=10, warmup=1), reset_optimizer=True)
    assert resume_source(run, rewarm) == branch

    # what a new machine has: the exported model, whose card's running log says where it stopped
    shipped = export(run, tmp_path / "shipped")
    state = json.loads((branch / "trainer_state.json").read_text())
    (shipped / "training_log.json").write_text(json.dumps([{
        "step": state["step"], "tokens": state["tokens"], "cpu_hours": state["cpu_seconds"] / 3600,
        "wall_hours": state["wall_seconds"] / 3600, "figures": {}}]))
    for ckpt in (branch, shipped):  # from a checkpoint or from an export, the count goes on
        assert init_state(ckpt)["step"] == 6 and init_state(ckpt)["tokens"] == state["tokens"]
    # a model already at the step asked for has nothing to train
    assert train(tiny_corpus, tmp_path / "none", rewarm, until_step=6, init=shipped, progress=False)["step"] == 6
    assert not (tmp_path / "none" / "checkpoint").exists()

    resumed = train(tiny_corpus, run, rewarm, until_step=8, resume=True, progress=False)
    fresh = dataclasses.replace(rewarm, reset_optimizer=False)
    carried = train(tiny_corpus, tmp_path / "carried", fresh, until_step=8, init=branch, progress=False)
    assert resumed["step"] == carried["step"] == 8 and resumed["tokens"] == carried["tokens"]
    assert json.loads((run / "checkpoint" / "trainer_state.json").read_text())["step"] == 8
    wa, wb = _weights(run / "checkpoint"), _weights(tmp_path / "carried" / "checkpoint")
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], atol=1e-5, rtol=1e-4)
    # the branch's optimizer state, carried on, gives other weights
    assert train(tiny_corpus, tmp_path / "kept", fresh, until_step=8, resume=True, progress=False)["step"] == 8
    wk = _weights(tmp_path / "kept" / "checkpoint")
    assert any(not torch.allclose(wa[k], wk[k], atol=1e-5, rtol=1e-4) for k in wa)
    # once the new trunk is past its start, it is the trunk that resumes
    assert resume_source(run, rewarm) == run / "checkpoint"


def test_a_phase_with_more_layers_grows_the_model_it_goes_on_from(tiny_corpus, tmp_path):
    run = tmp_path / "run"
    train(tiny_corpus, run, _cfg(), until_step=2, progress=False)
    two = shutil.copytree(run / "checkpoint", tmp_path / "two")
    carried = dataclasses.replace(_cfg(), layers=3)
    with pytest.raises(ValueError, match="optimizer state afresh"):  # the old state has no place for new blocks
        train(tiny_corpus, run, carried, until_step=3, resume=True, progress=False)
    deeper = dataclasses.replace(carried, schedule_start=2, reset_optimizer=True)
    assert train(tiny_corpus, run, deeper, until_step=3, resume=True, progress=False)["step"] == 3
    assert json.loads((run / "checkpoint" / "config.json").read_text())["num_hidden_layers"] == 3
    # resumed once grown, it stays as deep and carries its optimizer state on
    assert train(tiny_corpus, run, deeper, until_step=4, resume=True, progress=False)["step"] == 4
    assert json.loads((run / "checkpoint" / "config.json").read_text())["num_hidden_layers"] == 3
    # a run started from a model's weights grows it too (its optimizer state is afresh anyway)
    assert train(tiny_corpus, tmp_path / "init", carried, until_step=3, init=two, progress=False)["step"] == 3
    assert json.loads((tmp_path / "init" / "checkpoint" / "config.json").read_text())["num_hidden_layers"] == 3
    with pytest.raises(ValueError, match="more than this phase's layers"):
        train(tiny_corpus, tmp_path / "shallow", dataclasses.replace(_cfg(), layers=2), until_step=5,
              init=run / "checkpoint", progress=False)


def test_init_state_starts_at_zero_for_a_model_without_a_training_record(tiny_checkpoint):
    assert init_state(tiny_checkpoint) == {"step": 0, "tokens": 0, "cpu_seconds": 0.0, "wall_seconds": 0.0}


def test_going_on_from_a_model_with_a_corpus_of_other_token_ids_is_refused(tiny_corpus, tmp_path):
    """The tiny corpus's tokenizer was trained on a dozen files: its ids are not the shipped model's."""
    from conftest import SHIPPED

    base = [sys.executable, "-m", "diffill.cli", "train", "--corpus", str(tiny_corpus), "--out", str(tmp_path / "r"),
            "--steps", "1", "--set", "batch_size=2", "--eval-cases", "0"]
    other = subprocess.run(base + ["--init", str(SHIPPED)], capture_output=True, text=True, timeout=300)
    assert other.returncode == 2 and "--tokenizer" in other.stderr and "Traceback" not in other.stderr
    missing = subprocess.run(base + ["--init", str(tmp_path / "nowhere")], capture_output=True, text=True, timeout=300)
    assert missing.returncode == 2 and "not a model folder" in missing.stderr
    assert not (tmp_path / "r" / "checkpoint").exists()



RECIPES = Path(__file__).resolve().parents[1] / "model" / "recipes"


@pytest.mark.parametrize("recipe", sorted(str(p.relative_to(RECIPES)) for p in RECIPES.rglob("*.json")))
def test_every_recipe_is_a_valid_training_config(recipe):
    """Each phase and trial in model/recipes reads as ``diffill train --config`` reads it, with a
    schedule the trainer accepts."""
    from diffill.commands.train import apply_settings
    from diffill.model.train import check_schedule

    cfg = TrainConfig()
    apply_settings(cfg, json.loads((RECIPES / recipe).read_text()))
    check_schedule(cfg)
    assert cfg.total_steps > cfg.schedule_start


def test_a_run_with_context_masking_logs_the_context_loss_and_records_its_wide_window(tiny_corpus, tmp_path):
    from diffill.model.context import Window, window_of
    from diffill.model.network import DiffillForMaskedLM
    from diffill.model.runs import latest_checkpoint

    cfg = _cfg()
    cfg.objective.window = Window(300, 100)
    cfg.objective.window_from_file = True
    cfg.objective.context_mask_rate = 0.2
    train(tiny_corpus, tmp_path / "w", cfg, steps=2, progress=False)
    model = DiffillForMaskedLM.from_pretrained(str(latest_checkpoint(tmp_path / "w")))
    assert window_of(model.config) == Window(300, 100)
    steps = [json.loads(line) for line in (tmp_path / "w" / "log.jsonl").read_text().splitlines()]
    assert all(s["context_masked"] > 0 and s["context_ce"] > 0 for s in steps)


@pytest.mark.parametrize("recipe", sorted(str(p.relative_to(RECIPES)) for p in RECIPES.rglob("*.json")))
def test_every_recipe_window_fits_the_positions_the_model_has(recipe):
    from diffill.commands.train import apply_settings
    from diffill.model.configuration import DiffillConfig
    from diffill.model.objective import MAX_CANVAS

    cfg = TrainConfig()
    apply_settings(cfg, json.loads((RECIPES / recipe).read_text()))
    w = cfg.objective.window
    positions = cfg.model.get("max_position_embeddings", DiffillConfig().max_position_embeddings)
    assert w.prefix_tokens + 1 + MAX_CANVAS + w.suffix_tokens <= positions
    assert cfg.objective.plain_length <= positions


def _causal_cfg(**kw):
    cfg = dataclasses.replace(_cfg(), model={**TINY, "causal": True}, lr=3e-3, **kw)
    cfg.objective.kind = "causal"
    return cfg


def test_a_causal_run_lowers_its_next_token_loss(tiny_corpus, tmp_path):
    cfg = _causal_cfg(seed=3, warmup_steps=1)
    cfg.objective.plain_fraction = 1.0  # the same kind of row every step, so the losses compare
    train(tiny_corpus, tmp_path / "c", cfg, steps=12, progress=False)
    log = [json.loads(line) for line in (tmp_path / "c" / "log.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in log if "loss" in r]
    assert len(losses) == 12 and all(np.isfinite(losses))
    assert np.mean(losses[-3:]) < np.mean(losses[:3])
    assert json.loads((tmp_path / "c" / "checkpoint" / "config.json").read_text())["causal"] is True


def test_a_causal_run_starts_from_diffusion_weights_and_resumes_exactly(tiny_corpus, tiny_checkpoint, tmp_path):
    straight = train(tiny_corpus, tmp_path / "a", _causal_cfg(), steps=3, init=tiny_checkpoint, progress=False)
    train(tiny_corpus, tmp_path / "b", _causal_cfg(), steps=2, init=tiny_checkpoint, progress=False)
    resumed = train(tiny_corpus, tmp_path / "b", _causal_cfg(), steps=1, resume=True, progress=False)
    assert straight["step"] == resumed["step"] == 3
    _assert_same_weights(tmp_path / "a", tmp_path / "b")
    assert json.loads((tmp_path / "b" / "checkpoint" / "config.json").read_text())["causal"] is True


def test_the_objective_must_fit_the_attention(tiny_corpus, tiny_checkpoint, tmp_path):
    diffusion_on_causal = dataclasses.replace(_cfg(), model={**TINY, "causal": True})
    with pytest.raises(ValueError, match="causal"):
        train(tiny_corpus, tmp_path / "x", diffusion_on_causal, steps=1, progress=False)
    causal_on_bidirectional = _causal_cfg()
    causal_on_bidirectional.model = dict(TINY)
    with pytest.raises(ValueError, match="causal"):
        train(tiny_corpus, tmp_path / "y", causal_on_bidirectional, steps=1, init=tiny_checkpoint, progress=False)
    unknown = _causal_cfg()
    unknown.objective.kind = "autoregressive"
    with pytest.raises(ValueError, match="objective kind"):
        train(tiny_corpus, tmp_path / "z", unknown, steps=1, progress=False)


def test_a_causal_run_is_set_up_from_the_command_line(tiny_corpus, tmp_path):
    from diffill.cli import main

    out = tmp_path / "peer"
    args = ["train", "--corpus", str(tiny_corpus), "--out", str(out), "--steps", "1",
            "--set", "batch_size=2", "--set", "eval_minutes=1e9", "--set", "model.causal=true",
            "--set", "objective.kind=causal"]
    args += [x for k, v in TINY.items() for x in ("--set", f"model.{k}={v}")]
    assert main(args) == 0
    assert json.loads((out / "checkpoint" / "config.json").read_text())["causal"] is True
    assert json.loads((out / "train_config.json").read_text())["objective"]["kind"] == "causal"


def _assert_same_weights(a, b) -> None:
    """The checkpoints of runs ``a`` and ``b`` hold the same weights."""
    wa = load_file(str(a / "checkpoint" / "model.safetensors"))
    wb = load_file(str(b / "checkpoint" / "model.safetensors"))
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], atol=1e-5, rtol=1e-4)


def test_a_run_logs_humaneval_of_the_model_alone_without_counting_its_time(tiny_corpus, tmp_path):
    from diffill.cli import main

    out = tmp_path / "run"
    data = Path(__file__).parent / "data" / "humaneval_infill_tiny.jsonl"
    args = ["train", "--corpus", str(tiny_corpus), "--out", str(out), "--steps", "2", "--eval-cases", "0",
            "--humaneval", str(data), "--humaneval-cases", "2", "--set", "batch_size=2", "--set", "eval_minutes=1e9"]
    args += [x for k, v in TINY.items() for x in ("--set", f"model.{k}={v}")]
    assert main(args) == 0
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    (he,) = [r for r in records if "humaneval" in r]
    assert he["step"] == 2 and he["humaneval"]["cases"] == 2
    assert 0.0 <= he["humaneval"]["pass_at_1"] <= 1.0 and he["humaneval"]["seconds"] > 0
    # the evaluation's time is not training time: the run's clock stops with its last step
    last_step = [r for r in records if "loss" in r][-1]
    assert he["cpu_hours"] == pytest.approx(last_step["cpu_hours"], abs=2 / 3600)
    assert not list(tmp_path.glob("**/diffill-humaneval-*"))  # the served copy is gone


def test_humaneval_during_training_needs_a_readable_file_before_it_starts(tiny_corpus, tmp_path):
    from diffill.cli import main

    args = ["train", "--corpus", str(tiny_corpus), "--out", str(tmp_path / "run"), "--steps", "1",
            "--humaneval", str(tmp_path / "missing.jsonl")]
    assert main(args) != 0
    assert not (tmp_path / "run" / "checkpoint").exists()


def test_the_humaneval_time_is_not_counted_as_training_time(tiny_corpus, tmp_path):
    def busy(model, tok):  # an evaluation that takes a second of CPU time
        t0 = time.process_time()
        while time.process_time() - t0 < 1.0:
            pass
        return {"pass_at_1": 0.0, "exact_match": 0.0, "cases": 0}

    out = tmp_path / "run"
    train(tiny_corpus, out, _cfg(), steps=3, progress=False, humaneval=busy, humaneval_minutes=0.0)
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    steps = [r for r in records if "loss" in r]
    assert sum("humaneval" in r for r in records) >= 3  # after each step, and at the end
    # each step's clock goes on from the last without the evaluation's second between them
    gaps = [(b["cpu_hours"] - a["cpu_hours"]) * 3600 for a, b in zip(steps, steps[1:])]
    assert max(gaps) < 0.5
