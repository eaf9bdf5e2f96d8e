"""``--ray``: refactoring and HumanEval on a Ray cluster give what the local run gives; a worker
that dies has its tasks retried; Ctrl-C on the driver leaves every file whole; without Ray
installed the option says which extra to install. One small cluster on 127.0.0.1 (two CPUs,
so two workers) serves the whole module."""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from diffill.bench.refactor import generate_tree
from diffill.cli import main
from diffill.distributed import EngineSpec, RayOptions
from diffill.refactor import RefactorConfig, run_refactor

REPO = Path(__file__).resolve().parent.parent
HUMANEVAL = Path(__file__).parent / "data" / "humaneval_infill_tiny.jsonl"
# Ray otherwise swaps 127.0.0.1 for this machine's outward address when a driver connects
LOOPBACK = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}


@pytest.fixture(scope="module")
def cluster():
    """The address of a Ray cluster of one node on 127.0.0.1 with two CPUs, stopped at the end."""
    saved = {k: os.environ.get(k) for k in [*LOOPBACK, "RAY_TMPDIR", "RAY_AUTH_MODE"]}  # Ray sets the last
    temp = tempfile.mkdtemp(prefix="rt")  # short: Ray's socket paths must fit 107 bytes
    (Path(temp) / "ray").mkdir()
    # for the cluster's processes and the drivers started below; RAY_TMPDIR keeps the cluster's
    # files, and its address that ``ray.init()`` would find, out of the machine's /tmp/ray
    os.environ.update(LOOPBACK, RAY_TMPDIR=temp)
    import ray._private.ray_constants as constants  # read from the environment at import
    from ray.cluster_utils import Cluster

    was, constants.ENABLE_RAY_CLUSTER = constants.ENABLE_RAY_CLUSTER, False
    head = None
    try:
        head = Cluster(initialize_head=True, head_node_args=dict(
            num_cpus=2, node_ip_address="127.0.0.1", include_dashboard=False, object_store_memory=100 * 2**20))
        yield head.address
    finally:
        if head is not None:
            head.shutdown()
        constants.ENABLE_RAY_CLUSTER = was
        for k, v in saved.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
        shutil.rmtree(temp, ignore_errors=True)


def tree(root: Path) -> Path:
    generate_tree(root, files=4, seed=0)
    return root


def refactor(capsys, *args) -> tuple[int, str]:
    """``diffill refactor ARGS``: its exit code and what it printed."""
    code = main(["refactor", *map(str, args), "--no-progress"])
    return code, capsys.readouterr().out


def snapshot(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_the_workers_engine_spec_carries_the_commands_model_options():
    from diffill.cli import build_parser
    from diffill.distributed import EngineSpec

    args = build_parser().parse_args(["refactor", "src", "--holes", "--device", "cpu", "--adapter", "none",
                                      "--no-copy", "--ray"])
    config = EngineSpec.from_args(args, threads=1).config()
    assert (config.device, config.adapter, config.copy, config.threads) == ("cpu", "none", False, 1)


def test_the_command_line_starts_without_importing_ray():
    code = "import sys; from diffill.cli import build_parser; build_parser(); print('ray' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


@pytest.mark.parametrize("command", [["refactor", "{tree}", "--holes", "--write"],
                                     ["eval", "humaneval-infill", str(HUMANEVAL)]])
def test_without_ray_installed_the_option_names_the_extra(tmp_path, capsys, monkeypatch, command):
    monkeypatch.setitem(sys.modules, "ray", None)  # ``import ray`` fails as if not installed
    root = tree(tmp_path)
    before = snapshot(root)
    code = main([a.replace("{tree}", str(root)) for a in command] + ["--ray"])
    assert code == 2
    assert "pip install 'diffill[ray]'" in capsys.readouterr().err
    assert snapshot(root) == before


@pytest.mark.parametrize("address, message", [("127.0.0.1:1", "cannot reach a Ray cluster at 127.0.0.1:1"),
                                              ("nowhere", "expected host:port")])
def test_an_address_where_no_cluster_listens_is_a_clear_error(tmp_path, capsys, address, message):
    root = tree(tmp_path)
    before = snapshot(root)
    assert main(["refactor", str(root), "--holes", "--write", "--ray", address]) == 2
    assert message in capsys.readouterr().err
    assert snapshot(root) == before


def test_ray_gives_the_local_runs_diff_and_writes(cluster, tiny_checkpoint, tmp_path, capsys):
    model = ["--model", tiny_checkpoint, "--adapter", "none", "--batch-size", "2"]
    root = tree(tmp_path / "a")
    code, local = refactor(capsys, root, "--holes", *model)
    ray_code, on_ray = refactor(capsys, root, "--holes", *model, "--ray", cluster)
    assert local.startswith("--- ") and "+++ " in local  # the tiny model fills some holes
    assert on_ray == local and ray_code == code
    copy = tmp_path / "b"
    shutil.copytree(root, copy)
    refactor(capsys, root, "--holes", *model, "--write")
    _, out = refactor(capsys, copy, "--holes", *model, "--write", "--json", "--ray", cluster)
    report = json.loads(out)
    assert snapshot(copy) == snapshot(root) != snapshot(tree(tmp_path / "c"))
    assert (report["workers"], report["tasks_retried"]) == (2, 0)
    assert report["written"] > 0


@dataclass(frozen=True)
class FirstFileLastSpec(EngineSpec):
    """An engine that fills a batch holding only the first file's regions once a batch holding the
    last file's has been filled (a minute at most), so the other files' batches come back first."""

    first: str = ""
    last: str = ""
    marker: str = ""

    def __call__(self):
        return _FirstFileLast(super().__call__(), self)


class _FirstFileLast:
    def __init__(self, engine, spec: FirstFileLastSpec):
        self.engine, self.spec = engine, spec

    def info(self) -> dict:
        return self.engine.info()

    def infill_many(self, reqs):
        if all(r.path == self.spec.first for r in reqs):
            for _ in range(1200):
                if os.path.exists(self.spec.marker):
                    break
                time.sleep(0.05)
        results = self.engine.infill_many(reqs)
        if any(r.path == self.spec.last for r in reqs):
            Path(self.spec.marker).touch()
        return results


def test_ray_reports_files_in_the_order_found_when_later_files_are_filled_first(cluster, tiny_checkpoint, tmp_path):
    import ray

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the spec above, on the workers
    root = tree(tmp_path / "t")
    local: list = []
    expected = run_refactor(RefactorConfig([str(root)], holes=True, batch_size=2),
                            EngineSpec(model=str(tiny_checkpoint), adapter="none", threads=1), on_file=local.append)
    marker = tmp_path / "last-filled"
    spec = FirstFileLastSpec(model=str(tiny_checkpoint), adapter="none", threads=1, first=local[0].path,
                             last=local[-1].path, marker=str(marker))
    remote: list = []
    summary = run_refactor(RefactorConfig([str(root)], holes=True, batch_size=2,
                                          ray=RayOptions(address=cluster, workers=2)), spec, on_file=remote.append)
    assert marker.exists() and len(local) == 4
    assert [(o.path, o.new) for o in remote] == [(o.path, o.new) for o in local]
    assert (summary.filled, summary.rejected) == (expected.filled, expected.rejected)


@dataclass(frozen=True)
class KillOnceSpec(EngineSpec):
    """An engine whose process kills itself (SIGKILL, as the OOM killer would) on its second batch,
    in the first worker to get there."""

    marker: str = ""

    def __call__(self):
        Path(f"{self.marker}.built-by-{os.getpid()}").touch()  # one file per engine built
        return _KilledOnce(super().__call__(), self.marker)


class _KilledOnce:
    def __init__(self, engine, marker: str):
        self.engine, self.marker, self.calls = engine, marker, 0

    def info(self) -> dict:
        return self.engine.info()

    def infill_many(self, reqs):
        self.calls += 1
        if self.calls == 2:
            try:
                os.close(os.open(self.marker, os.O_CREAT | os.O_EXCL))
            except FileExistsError:
                pass
            else:
                os.kill(os.getpid(), signal.SIGKILL)
        return self.engine.infill_many(reqs)


def test_a_killed_workers_tasks_are_retried_and_nothing_is_lost_or_written_twice(
        cluster, tiny_checkpoint, tmp_path, monkeypatch):
    import ray

    import diffill.refactor.runner as runner

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the spec above, on the workers
    local, remote = tree(tmp_path / "local"), tree(tmp_path / "remote")
    spec = EngineSpec(model=str(tiny_checkpoint), adapter="none", threads=1)
    expected = run_refactor(RefactorConfig([str(local)], holes=True, write=True, batch_size=2), spec)
    writes = []
    real_write = runner.write_atomic
    monkeypatch.setattr(runner, "write_atomic", lambda snap, text: (writes.append(snap.path), real_write(snap, text)))
    marker = tmp_path / "killed"
    summary = run_refactor(RefactorConfig([str(remote)], holes=True, write=True, batch_size=2,
                                          ray=RayOptions(address=cluster, workers=2)),
                           KillOnceSpec(model=str(tiny_checkpoint), adapter="none", threads=1, marker=str(marker)))
    assert marker.exists() and summary.tasks_retried >= 1 and summary.workers == 2
    # the model is loaded once a worker: the two, and the one that took the killed one's place
    assert len(list(tmp_path.glob("killed.built-by-*"))) == 3 < -(-summary.regions // 2)
    assert (summary.regions, summary.filled, summary.rejected) == (expected.regions, expected.filled,
                                                                   expected.rejected)
    assert summary.written == expected.written == len(writes) == len(set(writes))
    assert snapshot(remote) == snapshot(local)


def test_a_worker_that_cannot_build_its_engine_is_a_clear_error(cluster, tmp_path, capsys):
    root = tree(tmp_path / "t")
    empty = tmp_path / "no-model"
    empty.mkdir()
    code = main(["refactor", str(root), "--holes", "--model", str(empty), "--ray", cluster, "--no-progress"])
    assert code == 2
    assert "a Ray worker could not build its engine" in capsys.readouterr().err


SIGINT_SCRIPT = textwrap.dedent('''
    import signal, sys, time
    # Ctrl-C raises KeyboardInterrupt, as in a terminal, even when this test runs in a background
    # job, whose children inherit SIGINT ignored
    signal.signal(signal.SIGINT, signal.default_int_handler)
    from diffill.engine import InfillResult
    import diffill.commands.cluster as cluster
    from diffill.cli import main

    class SlowEngine:
        def infill_many(self, reqs):
            time.sleep(0.1)
            return [InfillResult("return 0", r.start, r.end, 1, 1, 1, 1.0, True) for r in reqs]

    class SlowSpec:  # defined here, so Ray sends it to the workers by value
        def __call__(self):
            return SlowEngine()

    cluster.engine_spec = lambda args, threads: SlowSpec()
    sys.exit(main(["refactor", sys.argv[1], "--holes", "--write", "--batch-size", "1", "--no-progress",
                   "--ray", sys.argv[2]]))
''')


def test_ctrl_c_on_the_driver_leaves_every_file_whole(cluster, tmp_path):
    root = tmp_path / "tree"
    root.mkdir()
    old = "def f(x):\n    ...\n\n\ndef g(x):\n    return x\n" + "".join(f"v{i} = {i}\n" for i in range(3000))
    new = old.replace("    ...\n", "    return 0\n")
    n = 60
    for i in range(n):
        (root / f"m{i:03d}.py").write_text(old)
    script = tmp_path / "run.py"
    script.write_text(SIGINT_SCRIPT)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, str(script), str(root), cluster], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if any((root / f"m{i:03d}.py").read_text() != old for i in range(0, n, 6)):
                break
            time.sleep(0.01)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err.decode()
    states = [(root / f"m{i:03d}.py").read_text() for i in range(n)]
    assert all(s in (old, new) for s in states)
    assert old in states and new in states  # interrupted part way
    assert not [p for p in root.iterdir() if not p.name.endswith(".py")]  # no temporary files left


def test_humaneval_on_ray_fills_and_runs_as_the_local_run(cluster, tiny_checkpoint, tmp_path, capsys):
    args = ["eval", "humaneval-infill", str(HUMANEVAL), "--model", str(tiny_checkpoint), "--adapter", "none",
            "--json"]
    assert main([*args, "--samples", str(tmp_path / "local.jsonl")]) == 0
    local = json.loads(capsys.readouterr().out)
    assert main([*args, "--samples", str(tmp_path / "ray.jsonl"), "--ray", cluster]) == 0
    remote = json.loads(capsys.readouterr().out)
    assert (tmp_path / "ray.jsonl").read_bytes() == (tmp_path / "local.jsonl").read_bytes()
    same = ("pass_at_1", "exact_match", "cases", "by_variant", "timed_out", "model", "adapter")
    assert {k: remote[k] for k in same} == {k: local[k] for k in same}
    assert remote["workers"] >= 1 and local["cases"] > 1


def test_bench_refactor_measures_local_processes_and_ray_workers_side_by_side(cluster, tiny_checkpoint, capsys):
    code = main(["bench", "refactor", "--files", "3", "--batch-size", "2", "--json", "--model", str(tiny_checkpoint),
                 "--adapter", "none", "--ray", cluster])
    report = json.loads(capsys.readouterr().out)
    assert code == 0
    assert report["jobs"] == 2 and report["ray"]["workers"] == 2
    for run in (report, report["ray"]):
        assert run["regions"] >= 6 and run["filled"] + run["rejected"] == run["regions"]
        assert run["regions_per_minute"] > 0
    assert (report["ray"]["filled"], report["ray"]["rejected"]) == (report["filled"], report["rejected"])
