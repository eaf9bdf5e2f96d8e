import json
import subprocess
import sys

import pytest

SRC = "def add(a, b):\n    return a + b\n\n\ndef mul(a, b):\n    \n"


def run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "diffill.cli", *args], capture_output=True, text=True,
                          timeout=300, cwd=cwd, env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})


@pytest.fixture
def src(tmp_path):
    p = tmp_path / "m.py"
    p.write_text(SRC)
    return p


def test_infill_json_reports_the_hole_and_counts(src, tiny_checkpoint):
    before = src.read_text()
    r = run("infill", str(src), "--at", "6:5", "--model", str(tiny_checkpoint), "--json", "--max-tokens", "8")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert set(out) == {"text", "start", "end", "steps", "forward_passes", "tokens", "latency_ms", "alternatives",
                        "confidence", "confidence_calibrated", "alternative_confidences", "withheld"}
    assert 0.0 <= out["confidence"] <= 1.0 and out["confidence_calibrated"] is False  # no calibration: raw
    assert out["alternatives"] == []  # a blank line's hole is multi-line: no beam search, no runners-up
    assert out["start"] == out["end"] == SRC.index("    \n") + 4
    assert out["forward_passes"] >= 1
    assert src.read_text() == before, "infill never modifies the file"
    assert "Loading weights" not in r.stderr  # no progress bar of transformers' among a command's messages


def test_range_infill_replaces_the_region(src, tiny_checkpoint):
    r = run("infill", str(src), "--range", "2:12-2:17", "--model", str(tiny_checkpoint), "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert (out["start"], out["end"]) == (SRC.index("a + b"), SRC.index("a + b") + 5)


def test_dtype_is_a_choice_of_every_model_command(src, tiny_checkpoint):
    r = run("infill", str(src), "--at", "6:5", "--model", str(tiny_checkpoint), "--json", "--max-tokens", "4",
            "--dtype", "bfloat16")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["forward_passes"] >= 1
    r = run("infill", str(src), "--at", "6:5", "--dtype", "float16")
    assert r.returncode == 2 and "--dtype" in r.stderr


def _err(r, *needles):
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    line = r.stderr.strip().splitlines()[-1]
    assert line.startswith("diffill: error:")
    for n in needles:
        assert n in line, line
    assert "Traceback" not in r.stderr


def test_missing_file(tmp_path, tiny_checkpoint):
    _err(run("infill", str(tmp_path / "nope.py"), "--at", "1:1", "--model", str(tiny_checkpoint)), "no such file")


@pytest.mark.parametrize("at,needle", [("99:1", "line 99"), ("1:80", "column 80"), ("0:1", "line 0"), ("x", "bad position")])
def test_position_outside_the_file(src, tiny_checkpoint, at, needle):
    _err(run("infill", str(src), "--at", at, "--model", str(tiny_checkpoint)), needle)


def test_reversed_range(src, tiny_checkpoint):
    _err(run("infill", str(src), "--range", "2:5-1:1", "--model", str(tiny_checkpoint)), "ends before it starts")


def test_binary_file(tmp_path, tiny_checkpoint):
    p = tmp_path / "b.py"
    p.write_bytes(b"\x7fELF\x00\x01\x02")
    _err(run("infill", str(p), "--at", "1:1", "--model", str(tiny_checkpoint)), "binary")


def test_undecodable_file(tmp_path, tiny_checkpoint):
    p = tmp_path / "l1.py"
    p.write_bytes("x = 'caf\xe9'\n".encode("latin-1"))
    _err(run("infill", str(p), "--at", "1:1", "--model", str(tiny_checkpoint)), "UTF-8")


def test_missing_weights(src, tmp_path):
    _err(run("infill", str(src), "--at", "1:1", "--model", str(tmp_path / "no-model")), "not found")


def test_a_file_given_as_a_folder(src, tiny_checkpoint):
    _err(run("infill", str(src), "--at", "1:1", "--model", str(src)), "is a file, not a model folder")
    _err(run("infill", str(src), "--at", "1:1", "--model", str(tiny_checkpoint), "--adapter", str(src)),
         "is a file, not an adapter folder")


def test_corrupt_weights(src, tiny_checkpoint, tmp_path):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(tiny_checkpoint, bad)
    (bad / "model.safetensors").write_bytes(b"this is not a safetensors file")
    _err(run("infill", str(src), "--at", "1:1", "--model", str(bad)), "cannot load weights")


def test_weights_damaged_inside_a_tensor_are_refused(src, tiny_checkpoint, tmp_path):
    """Bytes overwritten inside a tensor still parse; they read as NaN, and the model would fill
    nothing (or garbage) without a word."""
    import shutil

    from safetensors import safe_open

    bad = tmp_path / "bad"
    shutil.copytree(tiny_checkpoint, bad)
    weights = bad / "model.safetensors"
    with safe_open(str(weights), "pt") as f:
        name = next(n for n in f.keys() if "k_proj" in n)
    data = bytearray(weights.read_bytes())
    header = 8 + int.from_bytes(data[:8], "little")
    offsets = json.loads(data[8:header])[name]["data_offsets"]
    start = header + offsets[0]
    data[start : start + 64] = b"\xff" * 64  # NaNs in any float format
    weights.write_bytes(bytes(data))
    _err(run("infill", str(src), "--at", "1:1", "--model", str(bad)), "corrupt weights")


def test_usage_error_exits_2(src):
    r = run("infill", str(src))
    assert r.returncode == 2 and "error" in r.stderr


def test_eval_compare_reports_each_model_and_the_pair(tmp_path, tiny_sources, tiny_checkpoint):
    r = run("eval", "compare", str(tiny_checkpoint), str(tiny_checkpoint), "--corpus", str(tiny_sources),
            "--cases", "3", "--seeds", "0,2", "--adapter", "none", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["cases"] == 6 and out["seeds"] == [0, 2] and len(out["models"]) == 2
    assert out["pairs"] == [{"first": str(tiny_checkpoint), "second": str(tiny_checkpoint), "only_first": 0,
                             "only_second": 0, "p_value": 1.0}]
    text = run("eval", "compare", str(tiny_checkpoint), str(tiny_checkpoint), "--corpus", str(tiny_sources),
               "--cases", "3", "--seeds", "0,2", "--adapter", "none")
    assert text.returncode == 0, text.stderr
    assert text.stdout.startswith("6 held-out lines (seeds 0,2)") and "sign test p = 1.000" in text.stdout
    bad = run("eval", "compare", str(tiny_checkpoint), "--seeds", "0,x")
    assert bad.returncode == 2 and "--seeds" in bad.stderr


def test_eval_fills_line_holes_as_the_engine_does_unless_told(tiny_sources, tiny_checkpoint):
    from diffill.model.beam import LINE_BEAM

    args = ["eval", "heldout", "--model", str(tiny_checkpoint), "--corpus", str(tiny_sources), "--cases", "3",
            "--adapter", "none", "--json"]
    served, plain = run(*args), run(*args, "--beam", "0")
    assert served.returncode == plain.returncode == 0, served.stderr + plain.stderr
    assert json.loads(served.stdout)["beam"] == LINE_BEAM and json.loads(plain.stdout)["beam"] == 0
    bad = run(*args, "--beam", "-1")
    assert bad.returncode == 2 and "beam" in bad.stderr


def test_eval_can_fill_line_holes_through_the_engine(tiny_sources, tiny_checkpoint, spy_requests):
    """``--through-engine``: each hole goes through ``Engine.infill_many`` as a one-line Python
    completion of the canvas budget ``eval heldout`` gives the sampler."""
    from diffill.cli import main
    from diffill.engine import Engine
    from diffill.evaluation import LINE_BUDGET

    seen = spy_requests(Engine, "infill_many")

    assert main(["eval", "heldout", "--model", str(tiny_checkpoint), "--corpus", str(tiny_sources), "--cases", "3",
                 "--adapter", "none", "--through-engine", "--json"]) == 0
    assert len(seen) == 3 and all(r.multiline is False and r.max_tokens == LINE_BUDGET and r.language == "python"
                                  for r in seen)
