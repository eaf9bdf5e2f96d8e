"""``diffill refactor``: the run (diff, write, idempotence, safety) with a deterministic fake engine,
and the command end to end with the tiny random model."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from diffill.cli import main
from diffill.engine import InfillResult
from diffill.newlines import LineFeeds
from diffill.refactor import FileFilter, RefactorConfig, run_refactor
from diffill.refactor.report import unified_diff
from diffill.refactor.syntax import parse

REPO = Path(__file__).resolve().parent.parent

CALC_PY = '''def add(a, b):
    """Add two numbers."""
    ...


def sub(a, b): pass


def keep(a):
    return a
'''
UTIL_JS = '''function twice(x) {
  throw new Error("not implemented");
}

const half = (x) => {
  // TODO: fill
};
'''
MAIN_GO = '''package main

func square(x int) int {
\tpanic("not implemented")
}
'''
FILLED = {  # what FakeEngine writes
    "pkg/calc.py": CALC_PY.replace("    ...\n", "    return 0\n").replace("def sub(a, b): pass",
                                                                         "def sub(a, b):\n    return 0"),
    "web/util.js": UTIL_JS.replace('throw new Error("not implemented");', "return 0;")
                          .replace("// TODO: fill", "return 0;"),
    "goapp/main.go": MAIN_GO.replace('panic("not implemented")', "return 0"),
}
REGIONS = 5


def make_tree(root: Path) -> Path:
    for rel, text in {"pkg/calc.py": CALC_PY, "web/util.js": UTIL_JS, "goapp/main.go": MAIN_GO}.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


class FakeEngine:
    """Fills every hole with a deterministic, valid ``return 0``; ``during`` runs inside the call."""

    FILLS = {"python": "return 0", "javascript": "return 0;", "go": "return 0"}

    def __init__(self, during=None, fill=None):
        self.during, self.fill, self.calls = during, fill, []

    def infill_many(self, reqs):
        self.calls.append(len(reqs))
        if self.during:
            self.during()
        # as the engine does, in the document's line endings
        return [InfillResult(LineFeeds(r.text).fill(self.fill if self.fill is not None else self.FILLS[r.language]),
                             r.start, r.end, 1, 1, 1, 1.0, True) for r in reqs]


def run(paths, engine=None, **kw):
    engine = engine or FakeEngine()
    outcomes = []
    summary = run_refactor(RefactorConfig([str(p) for p in paths], holes=kw.pop("holes", True), **kw),
                           lambda: engine, on_file=outcomes.append)
    return summary, outcomes


def contents(root):
    return {rel: (root / rel).read_text() for rel in FILLED}


def test_dry_run_shows_a_diff_and_changes_nothing(tmp_path):
    root = make_tree(tmp_path)
    before = contents(root)
    summary, outcomes = run([root])
    assert contents(root) == before
    assert (summary.files, summary.regions, summary.filled, summary.rejected, summary.written) == (3, REGIONS, REGIONS, 0, 0)
    assert summary.ok
    by_name = {Path(o.path).relative_to(root).as_posix(): o for o in outcomes}
    assert {k: o.new for k, o in by_name.items()} == FILLED
    diff = unified_diff("web/util.js", UTIL_JS, by_name["web/util.js"].new)
    assert diff.startswith("--- a/web/util.js\n+++ b/web/util.js\n")
    assert '-  throw new Error("not implemented");\n+  return 0;\n' in diff
    assert "-  // TODO: fill\n+  return 0;\n" in diff


def test_regions_of_all_files_share_engine_calls(tmp_path):
    engine = FakeEngine()
    run([make_tree(tmp_path)], engine, batch_size=16)
    assert engine.calls == [REGIONS]
    engine = FakeEngine()
    run([tmp_path], engine, batch_size=2)
    assert engine.calls == [2, 2, 1]


def test_write_then_a_second_run_finds_no_holes(tmp_path):
    root = make_tree(tmp_path)
    summary, _ = run([root], write=True)
    assert summary.written == 3 and summary.filled == REGIONS and summary.ok
    assert contents(root) == FILLED
    for rel, text in FILLED.items():
        lang = {"py": "python", "js": "javascript", "go": "go"}[rel.rsplit(".", 1)[1]]
        assert not parse(text, lang).root_node.has_error
    again, outcomes = run([root], write=True)
    assert (again.regions, again.written) == (0, 0)
    assert all(o.new == o.old for o in outcomes)
    assert contents(root) == FILLED


def test_invalid_fills_are_rejected_and_never_written(tmp_path):
    root = make_tree(tmp_path)
    before = contents(root)
    summary, _ = run([root], FakeEngine(fill="return (((("), write=True)
    assert (summary.filled, summary.rejected, summary.written) == (0, REGIONS, 0)
    assert not summary.ok
    assert contents(root) == before


def test_a_fill_that_adds_an_error_anywhere_in_the_file_is_rejected(tmp_path):
    f = tmp_path / "a.py"
    f.write_text(CALC_PY)
    summary, _ = run([tmp_path], FakeEngine(fill=",_,__"), write=True)  # MISSING node on the header line
    assert (summary.filled, summary.rejected, summary.written) == (0, 2, 0)
    assert f.read_text() == CALC_PY


def test_fills_that_are_still_placeholders_are_rejected(tmp_path):
    (tmp_path / "a.py").write_text("def f():\n    ...\n")
    summary, _ = run([tmp_path], FakeEngine(fill="pass"), write=True)
    assert summary.rejected == 1 and summary.written == 0


def test_a_file_modified_during_the_run_is_not_overwritten(tmp_path):
    root = make_tree(tmp_path)
    edited = MAIN_GO + "\n// edited by the user meanwhile\n"
    summary, _ = run([root], FakeEngine(during=lambda: (root / "goapp/main.go").write_text(edited)), write=True)
    assert (root / "goapp/main.go").read_text() == edited
    assert [(Path(p.path).name, p.reason) for p in summary.problems] == [("main.go", "changed since it was read")]
    assert summary.written == 2 and summary.skipped == 1 and not summary.ok
    assert (root / "pkg/calc.py").read_text() == FILLED["pkg/calc.py"]


def test_a_read_only_file_is_reported_not_crashed_on(tmp_path):
    root = make_tree(tmp_path)
    os.chmod(root / "pkg/calc.py", 0o444)
    summary, _ = run([root], write=True)
    assert (root / "pkg/calc.py").read_text() == CALC_PY
    assert [(Path(p.path).name, p.reason) for p in summary.problems] == [("calc.py", "read-only file")]
    assert summary.written == 2 and not summary.ok


def test_a_non_utf8_file_is_skipped_and_reported(tmp_path):
    root = make_tree(tmp_path)
    latin = b"def f():\n    pass\n# caf\xe9\n"
    (root / "pkg/latin.py").write_bytes(latin)
    summary, _ = run([root], write=True)
    assert (root / "pkg/latin.py").read_bytes() == latin
    assert [(Path(p.path).name, p.reason.split(" (")[0]) for p in summary.problems] == [
        ("latin.py", "not valid UTF-8")]
    assert summary.written == 3


def test_nothing_outside_the_given_paths_is_touched(tmp_path):
    root = make_tree(tmp_path / "tree")
    outside = tmp_path / "outside.py"
    outside.write_text("def f():\n    ...\n")
    os.symlink(outside, root / "pkg" / "link.py")
    summary, _ = run([root / "pkg"], write=True)
    assert summary.written == 1
    assert outside.read_text() == "def f():\n    ...\n"
    assert (root / "web/util.js").read_text() == UTIL_JS


def test_files_in_languages_the_model_was_not_trained_on_are_skipped_and_said_so(tmp_path):
    root = make_tree(tmp_path / "tree")
    engine = FakeEngine()
    summary, outcomes = run([root], engine, languages=("python",), write=True)
    assert [Path(o.path).name for o in outcomes] == ["calc.py"]
    reasons = {Path(p.path).name: p.reason for p in summary.problems}
    assert set(reasons) == {"util.js", "main.go"} and "trained on python only" in reasons["util.js"]
    assert (root / "web/util.js").read_text() == UTIL_JS


def test_crlf_files_keep_their_line_endings(tmp_path):
    f = tmp_path / "a.py"
    f.write_bytes(b"def f(): pass\r\n\r\n\r\ndef g():\r\n    # TODO: fill\r\n")
    summary, _ = run([tmp_path], FakeEngine(fill="x = 1\n    return x"), write=True)
    assert summary.filled == 2
    assert f.read_bytes() == (b"def f():\r\n    x = 1\r\n    return x\r\n\r\n\r\n"
                              b"def g():\r\n    x = 1\r\n    return x\r\n")
    f.write_bytes(b"def h():\r\n    # diffill: fill\r\n    y = 2\r\n    # diffill: end\r\n    return y\r\n")
    run([tmp_path], FakeEngine(fill="y = 3"), write=True)
    assert f.read_bytes() == b"def h():\r\n    y = 3\r\n    return y\r\n"


def test_file_filters_limit_the_run(tmp_path):
    root = make_tree(tmp_path)
    summary, outcomes = run([root], filter=FileFilter(langs={"go", "javascript"}, exclude=["web/"]), write=True)
    assert [Path(o.path).name for o in outcomes] == ["main.go"]
    assert (summary.files, summary.regions) == (1, 1)
    assert (root / "pkg/calc.py").read_text() == CALC_PY


def test_query_regenerates_captures(tmp_path):
    (tmp_path / "a.py").write_text("def f():\n    return 1\n\n\ndef g():\n    return 2\n")
    summary, outcomes = run([tmp_path], FakeEngine(fill="return 7"), holes=False,
                            query="(function_definition body: (block) @fill)")
    assert summary.filled == 2
    assert outcomes[0].new == "def f():\n    return 7\n\n\ndef g():\n    return 7\n"


class PicklableFakeEngine(FakeEngine):
    """Built in each worker process (a lambda cannot cross to a spawned process)."""


def test_jobs_fill_in_worker_processes_with_the_same_result(tmp_path):
    one = make_tree(tmp_path / "one")
    two = make_tree(tmp_path / "two")
    run([one], write=True)
    summary = run_refactor(RefactorConfig([str(two)], holes=True, write=True, jobs=2, batch_size=1),
                           PicklableFakeEngine)
    assert summary.written == 3 and summary.filled == REGIONS
    assert contents(two) == contents(one) == FILLED


def test_files_are_reported_in_the_order_found_whichever_fills_come_back_first(tmp_path, monkeypatch):
    import diffill.refactor.runner as runner

    root = make_tree(tmp_path)
    expected, in_order = run([root], batch_size=1)
    real = runner._filled

    def last_first(*args, **kwargs):  # as worker processes or Ray workers may return them
        yield from reversed(list(real(*args, **kwargs)))

    monkeypatch.setattr(runner, "_filled", last_first)
    summary, outcomes = run([root], batch_size=1)
    assert len(in_order) == 3 and all(o.new != o.old for o in in_order)
    assert [(o.path, o.new) for o in outcomes] == [(o.path, o.new) for o in in_order]
    assert summary.as_json() | {"seconds": 0} == expected.as_json() | {"seconds": 0}


SIGINT_SCRIPT = textwrap.dedent('''
    import signal, sys, time
    # Ctrl-C raises KeyboardInterrupt, as in a terminal, even when this test runs in a background
    # job, whose children inherit SIGINT ignored
    signal.signal(signal.SIGINT, signal.default_int_handler)
    from diffill.engine import InfillResult
    import diffill.commands.refactor as command
    from diffill.cli import main

    class SlowEngine:
        def infill_many(self, reqs):
            time.sleep(0.05)
            return [InfillResult("return 0", r.start, r.end, 1, 1, 1, 1.0, True) for r in reqs]

    command.make_engine = lambda config: SlowEngine()
    sys.exit(main(["refactor", sys.argv[1], "--holes", "--write", "--batch-size", "1", "--no-progress"]))
''')


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_ctrl_c_or_sigterm_leaves_every_file_fully_old_or_fully_new(tmp_path, signum, code):
    """SIGTERM (a killed job, a closed terminal's shell) stops a write as Ctrl-C does: each file
    whole, old or new, and no temporary file left beside it."""
    tree = tmp_path / "tree"
    tree.mkdir()
    old = "def f(x):\n    ...\n\n\ndef g(x):\n    return x\n" + "".join(f"v{i} = {i}\n" for i in range(3000))
    new = old.replace("    ...\n", "    return 0\n")
    n = 80
    for i in range(n):
        (tree / f"m{i:03d}.py").write_text(old)
    script = tmp_path / "run.py"
    script.write_text(SIGINT_SCRIPT)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, str(script), str(tree)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if any((tree / f"m{i:03d}.py").read_text() != old for i in range(0, n, 8)):
                break
            time.sleep(0.01)
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == code, err.decode()
    states = [(tree / f"m{i:03d}.py").read_text() for i in range(n)]
    assert all(s in (old, new) for s in states)
    assert old in states and new in states  # interrupted part way
    assert not [p for p in tree.iterdir() if not p.name.endswith(".py")]  # no temporary files left


# --- the command, end to end with the tiny random model -----------------------------------------

def cli(capsys, *args):
    code = main(["refactor", *map(str, args), "--no-progress"])
    out, err = capsys.readouterr()
    return code, out, err


def test_command_dry_run_with_the_tiny_model(tmp_path, tiny_checkpoint, capsys):
    root = make_tree(tmp_path)
    before = contents(root)
    code, out, err = cli(capsys, root, "--holes", "--model", tiny_checkpoint, "--adapter", "none")
    assert contents(root) == before
    assert "regions" in err and "rejected" in err
    code2, out2, _ = cli(capsys, root, "--holes", "--model", tiny_checkpoint, "--adapter", "none", "--json")
    report = json.loads(out2)
    assert {"files", "regions", "filled", "rejected", "skipped", "written", "seconds"} <= set(report)
    assert (report["files"], report["regions"], report["written"]) == (3, REGIONS, 0)
    assert report["filled"] + report["rejected"] == REGIONS
    assert code2 == (0 if report["rejected"] == 0 else 1)
    assert sum(report["rejected_because"].values()) == report["rejected"]
    assert set(report["rejected_because"]) <= {"empty fill", "still a placeholder", "not valid syntax"}
    assert bool(out) == (report["filled"] > 0)  # the sampler is greedy: both runs fill alike
    assert all(line.split()[1].startswith(str(root)) for line in out.splitlines() if line.startswith("+++ "))


def test_command_write_with_the_tiny_model_writes_only_valid_files(tmp_path, tiny_checkpoint, capsys):
    root = make_tree(tmp_path)
    code, out, _ = cli(capsys, root, "--holes", "--model", tiny_checkpoint, "--adapter", "none",
                       "--write", "--json")
    report = json.loads(out)
    assert report["regions"] == REGIONS
    original = {"pkg/calc.py": CALC_PY, "web/util.js": UTIL_JS, "goapp/main.go": MAIN_GO}
    changed = 0
    for rel, text in contents(root).items():
        if text != original[rel]:
            changed += 1
            lang = {"py": "python", "js": "javascript", "go": "go"}[rel.rsplit(".", 1)[1]]
            assert not parse(text, lang).root_node.has_error, text
    assert changed == report["written"]


@pytest.mark.parametrize("args, message", [
    ([], "nothing to select"),
    (["--holes", "--model", "/no/such/model"], "no such model folder"),
    (["--holes", "--lang", "cobol"], "unknown language"),
    (["--holes", "--jobs", "0"], "at least 1"),
    (["--query", "(no_such_node) @fill", "--lang", "python"], "does not compile"),
])
def test_usage_errors_exit_2(tmp_path, capsys, args, message):
    root = make_tree(tmp_path)
    code, _, err = cli(capsys, root, *args)
    assert code == 2 and message in err


def test_missing_path_exits_2(tmp_path, capsys):
    code, _, err = cli(capsys, tmp_path / "nope", "--holes")
    assert code == 2 and "no such file" in err


def test_the_summary_says_why_fills_were_rejected(tmp_path, capsys):
    from diffill.refactor.report import summary_table

    (tmp_path / "a.py").write_text("def f():\n    ...\n\n\ndef g():\n    ...\n")
    summary, _ = run([tmp_path], FakeEngine(fill="..."))  # the placeholder again
    assert summary.rejected == 2 and summary.reasons == {"still a placeholder": 2}
    row = next(line for line in summary_table(summary).splitlines() if line.startswith("rejected"))
    assert row.split(None, 1)[1] == "2 (still a placeholder: 2)"


class UnsureEngine(FakeEngine):
    """As FakeEngine, each fill with confidence 0.4, withheld as the engine does below the minimum."""

    def infill_many(self, reqs):
        out = super().infill_many(reqs)
        for r, req in zip(out, reqs):
            r.confidence = 0.4
            if r.confidence < req.min_confidence:
                r.text, r.withheld = "", True
        return out


def test_min_confidence_leaves_a_hole_untouched_rather_than_fill_it_badly(tmp_path):
    root = make_tree(tmp_path)
    before = contents(root)
    summary, _ = run([root], UnsureEngine(), write=True, min_confidence=0.5)
    assert contents(root) == before and summary.written == 0
    assert summary.rejected == REGIONS and summary.reasons == {"below --min-confidence": REGIONS}
    summary, _ = run([root], UnsureEngine(), write=True, min_confidence=0.4)  # at the minimum: filled
    assert contents(root) == FILLED and summary.filled == REGIONS


def test_the_min_confidence_option_reaches_the_engine(tmp_path, tiny_checkpoint, capsys):
    root = make_tree(tmp_path)
    before = contents(root)
    code, out, _ = cli(capsys, root, "--holes", "--model", tiny_checkpoint, "--adapter", "none", "--write",
                       "--min-confidence", "1", "--json")
    report = json.loads(out)
    assert contents(root) == before and report["written"] == 0 and code == 1
    assert report["rejected_because"].get("below --min-confidence", 0) >= 1
    code, _, err = cli(capsys, root, "--holes", "--min-confidence", "2")
    assert code == 2 and "from 0 to 1" in err
