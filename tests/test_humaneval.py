"""HumanEval-infilling runner: input format, variants, sandboxed execution, determinism."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import pytest

from diffill.cli import main
from diffill.errors import DiffillError
from diffill.humaneval import (HumanEvalConfig, evaluate, fit_completion, is_exact, load_problems,
                               run_humaneval, write_samples)
from diffill.sandbox import SandboxError, SandboxLimits

DATA = Path(__file__).parent / "data" / "humaneval_infill_tiny.jsonl"
ESCAPE = Path("/tmp/diffill-humaneval-escape.txt")


def test_loads_jsonl_and_gzip_in_file_order(tmp_path):
    plain = load_problems(DATA)
    gz = tmp_path / "p.jsonl.gz"
    with gzip.open(gz, "wb") as f:
        f.write(DATA.read_bytes())
    assert [p.task_id for p in load_problems(gz)] == [p.task_id for p in plain]
    assert [p.task_id for p in load_problems(DATA, limit=2)] == [p.task_id for p in plain[:2]]


ORIGINAL = {  # a problem in the original HumanEval format (no suffix)
    "task_id": "HumanEval/7", "entry_point": "double",
    "prompt": "def double(xs):\n    \"\"\"Double every item.\"\"\"\n",
    "canonical_solution": "    out = []\n\n    for x in xs:\n        out.append(2 * x)\n    return out\n",
    "test": "def check(f):\n    assert f([1, 2]) == [2, 4]\n",
}


def test_original_problems_expand_into_single_line_tasks(tmp_path):
    path = tmp_path / "HumanEval.jsonl"
    path.write_text(json.dumps(ORIGINAL) + "\n")
    tasks = load_problems(path)
    lines = ORIGINAL["canonical_solution"].splitlines(keepends=True)
    assert [t.task_id for t in tasks] == [f"SingleLineInfilling/HumanEval/7/L{j}" for j in (0, 2, 3, 4)]
    for t in tasks:
        assert t.variant == "single-line" and t.whole_lines
        assert t.prompt + t.canonical_solution + t.suffix == ORIGINAL["prompt"] + ORIGINAL["canonical_solution"]
        assert t.canonical_solution in lines
    # the canonical line passes the tests and a wrong one fails them
    assert [c.status for c in evaluate(tasks[:1], ["    out = []\n"])] == ["passed"]
    assert [c.status for c in evaluate(tasks[3:], ["    return None\n"])] == ["failed"]
    assert len(load_problems(path, limit=2)) == 2


def test_variant_from_task_id_or_canonical_solution():
    by_id = {p.task_id: p for p in load_problems(DATA)}
    assert by_id["SingleLineInfilling/Tiny/0/L0"].variant == "single-line"
    assert by_id["MultiLineInfilling/Tiny/1/L1_L2"].variant == "multi-line"
    assert by_id["RandomSpanInfilling/Tiny/2/0"].variant == "random-span"
    assert by_id["Tiny/5"].variant == "single-line"  # no variant in the id: one line
    cfg = HumanEvalConfig()
    assert cfg.budget("single-line") < cfg.budget("multi-line")
    assert HumanEvalConfig(max_tokens=7).budget("random-span") == 7


def test_whole_line_holes_get_their_newline():
    by_id = {p.task_id: p for p in load_problems(DATA)}
    line = by_id["SingleLineInfilling/Tiny/0/L0"]
    assert fit_completion(line, "    return a + b") == "    return a + b\n"
    assert fit_completion(line, "") == ""
    assert fit_completion(line, "  \t") == ""
    block = by_id["MultiLineInfilling/Tiny/1/L1_L2"]  # the suffix's line brings its own indent
    assert fit_completion(block, "    for n in numbers:\n        total += n * n\n    ") == (
        "    for n in numbers:\n        total += n * n\n")
    span = by_id["RandomSpanInfilling/Tiny/2/0"]
    assert fit_completion(span, "len(best):") == "len(best):"
    partial = by_id["Tiny/5"]  # canonical "    return " continues on the suffix's line
    assert fit_completion(partial, "    return ") == "    return "


def test_exact_match_ignores_trailing_space_but_not_indentation():
    p = load_problems(DATA)[0]
    assert is_exact(p, "    return a + b  \n")
    assert is_exact(p, "    return a + b")
    assert not is_exact(p, "return a + b\n")
    assert not is_exact(p, "    return b + a\n")


def test_canonical_solutions_pass_except_the_loop_and_the_escape():
    ESCAPE.unlink(missing_ok=True)
    problems = load_problems(DATA)
    cases = evaluate(problems, [p.canonical_solution for p in problems])
    status = {c.task_id: c.status for c in cases}
    assert status == {
        "SingleLineInfilling/Tiny/0/L0": "passed",
        "MultiLineInfilling/Tiny/1/L1_L2": "passed",
        "RandomSpanInfilling/Tiny/2/0": "passed",
        "SingleLineInfilling/Tiny/3/L1": "timed out",  # loops forever
        "SingleLineInfilling/Tiny/4/L1": "failed",  # writes outside its folder
        "Tiny/5": "passed",
    }
    assert all(c.exact for c in cases)
    assert not ESCAPE.exists()
    escape = next(c for c in cases if c.task_id.endswith("4/L1"))
    assert "outside the working folder" in escape.detail


def test_wrong_completion_fails():
    p = load_problems(DATA)[0]
    [case] = evaluate([p], ["    return a - b\n"])
    assert case.status == "failed" and not case.exact


@pytest.mark.parametrize("content, message", [
    ('{"task_id": "x"}\n', "missing"),
    ("not json\n", ":1: not a JSON object"),
    ("", "holds no problems"),
    ("[1, 2]\n", "expected a JSON object"),
])
def test_bad_input_is_a_clear_error(tmp_path, content, message):
    f = tmp_path / "bad.jsonl"
    f.write_text(content)
    with pytest.raises(DiffillError, match=message):
        load_problems(f)


def test_duplicate_task_ids_are_refused(tmp_path):
    f = tmp_path / "dup.jsonl"
    line = DATA.read_text().splitlines()[0]
    f.write_text(line + "\n" + line + "\n")
    with pytest.raises(DiffillError, match="duplicate task_id"):
        load_problems(f)


def test_missing_file_exits_2(capsys):
    assert main(["eval", "humaneval-infill", "/no/such/file.jsonl", "--json"]) == 2
    assert "no such file" in capsys.readouterr().err


def test_samples_file_is_upstream_format(tmp_path):
    problems = load_problems(DATA)
    cases = evaluate(problems[:1], [problems[0].canonical_solution])
    out = tmp_path / "samples.jsonl"
    write_samples(out, cases)
    assert [json.loads(x) for x in out.read_text().splitlines()] == [
        {"task_id": problems[0].task_id, "completion": problems[0].canonical_solution}]


def test_cli_runs_end_to_end_and_is_deterministic(tiny_checkpoint, tmp_path, capsys):
    data = tmp_path / "tiny.jsonl"  # the runnable records only: the loop would cost 3 s a run
    data.write_text("".join(line + "\n" for line in DATA.read_text().splitlines()
                            if "Tiny/3/" not in line))
    runs = []
    for i in range(2):
        samples = tmp_path / f"samples{i}.jsonl"
        code = main(["eval", "humaneval-infill", str(data), "--model", str(tiny_checkpoint),
                     "--json", "--samples", str(samples)])
        assert code == 0
        figures = json.loads(capsys.readouterr().out)
        runs.append((figures, samples.read_text()))
    (a, sa), (b, sb) = runs
    assert set(a) >= {"pass_at_1", "exact_match", "cases", "seconds", "model", "adapter"}
    assert a["cases"] == 5
    assert 0.0 <= a["pass_at_1"] <= 1.0
    assert {k: v for k, v in a.items() if k != "seconds"} == {k: v for k, v in b.items() if k != "seconds"}
    assert sa == sb
    assert [json.loads(x)["task_id"] for x in sa.splitlines()] == [
        json.loads(x)["task_id"] for x in data.read_text().splitlines()]


class UnusedEngine:
    def infill_many(self, requests):
        raise AssertionError("the model ran")


@pytest.mark.skipif(os.geteuid() != 0, reason="leaving root for another user needs root")
def test_a_sandbox_that_cannot_run_safely_stops_the_run_before_the_model():
    config = HumanEvalConfig(limits=SandboxLimits(user=0))  # "dropping" to root again
    with pytest.raises(SandboxError, match="cannot run programs safely"):
        run_humaneval(UnusedEngine(), load_problems(DATA), config)


def test_limit_and_max_tokens_are_checked(capsys):
    assert main(["eval", "humaneval-infill", str(DATA), "--limit", "0"]) == 2
    assert main(["eval", "humaneval-infill", str(DATA), "--max-tokens", "0"]) == 2
    assert "--max-tokens" in capsys.readouterr().err



def test_every_canonical_solution_of_the_small_set_passes():
    """tests/data/humaneval_infill_small.jsonl is the set diffill's pass@1 is measured on here."""
    problems = load_problems(Path(__file__).parent / "data" / "humaneval_infill_small.jsonl")
    assert {p.variant for p in problems} == {"single-line", "multi-line", "random-span"}
    cases = evaluate(problems, [p.canonical_solution for p in problems])
    assert [c.task_id for c in cases if not c.passed] == []
    wrong = evaluate(problems[:3], ["    return None\n"] * 3)
    assert not any(c.passed for c in wrong)
