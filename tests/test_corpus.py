"""The training corpus: held-out split, and a corpus for going on training a model elsewhere."""

import json

import pytest

from diffill.cli import main
from diffill.model.corpus import build_corpus, is_heldout, load_texts
from diffill.model.tokenizer import load_tokenizer


def test_content_hash_split_holds_out_the_same_files_everywhere(tiny_corpus):
    held = load_texts(tiny_corpus, "heldout")
    assert all(is_heldout(f.text) for f in held)
    assert not any(is_heldout(f.text) for f in load_texts(tiny_corpus, "train"))


def test_a_corpus_for_going_on_training_keeps_the_models_tokenizer_and_its_held_out_paths(
        tiny_corpus, tiny_sources, tmp_path):
    train_paths = [f.path for f in load_texts(tiny_corpus, "train")]
    moved = train_paths[0]
    (tmp_path / "held.txt").write_text(f"{moved}\nno/such/module.py\n")
    out = tmp_path / "corpus"
    rc = main(["corpus", "build", str(out), "--source", str(tiny_sources), "--tokenizer",
               str(tiny_corpus / "tokenizer"), "--hold-out-paths", str(tmp_path / "held.txt")])
    assert rc == 0
    mine, theirs = load_tokenizer(out / "tokenizer"), load_tokenizer(tiny_corpus / "tokenizer")
    assert mine.get_vocab() == theirs.get_vocab()
    assert moved in {f.path for f in load_texts(out, "heldout")}
    assert [f.path for f in load_texts(out, "train")] == train_paths[1:]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["vocab_size"] == len(theirs.get_vocab())


def test_a_missing_tokenizer_is_a_clear_error(tiny_sources, tmp_path, capsys):
    rc = main(["corpus", "build", str(tmp_path / "c"), "--source", str(tiny_sources), "--tokenizer",
               str(tmp_path)])
    assert rc == 2 and "no tokenizer.json" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()


def test_build_without_a_tokenizer_trains_one(tiny_sources, tmp_path):
    manifest = build_corpus(tmp_path / "c", [tiny_sources], vocab_size=300)
    assert manifest["vocab_size"] == 300 and (tmp_path / "c" / "tokenizer" / "tokenizer.json").is_file()


def test_reading_in_processes_collects_the_same_files_in_the_same_order(tiny_sources):
    from diffill.model.corpus import collect

    one = [(f.path, f.text) for f in collect([tiny_sources], progress=False)]
    two = [(f.path, f.text) for f in collect([tiny_sources], progress=False, processes=2)]
    assert one == two and len(one) > 3


PROMPT = ('from typing import List\n\n\ndef has_close_elements(numbers: List[float], threshold: float) -> bool:\n'
          '    """ Check if in given list of numbers, are any two numbers closer to each other than\n'
          '    given threshold.\n    >>> has_close_elements([1.0, 2.0, 3.0], 0.5)\n    False\n    """\n')


def _module(tag: str, n: int = 30) -> str:
    return "".join(f"def {tag}_{i}(x):\n    return x * {i} + len('{tag}')\n\n" for i in range(n))


def _sources(root):
    """Two near-twin modules (one lightly edited), an unrelated one, a HumanEval solution, and a file
    that only shares a HumanEval function's name."""
    base = _module("alpha")
    files = {"pkg/alpha.py": base, "vendor/pkg/alpha.py": base.replace("return x * 3 ", "return x * 33 "),
             "pkg/beta.py": _module("beta"),
             "solutions/close.py": PROMPT + "    return any(abs(a - b) < threshold for a in numbers for b in numbers)\n",
             "other/close.py": "def has_close_elements(points):\n    return sorted(points) == points\n\n\nX = 1\n"}
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return files


def test_a_new_build_drops_near_twins_in_training_and_humaneval_problems_and_says_so(tiny_corpus, tmp_path):
    import gzip

    _sources(tmp_path / "src")
    problems = tmp_path / "HumanEval.jsonl.gz"
    with gzip.open(problems, "wt") as fh:
        fh.write(json.dumps({"task_id": "HumanEval/0", "prompt": PROMPT, "entry_point": "has_close_elements"}) + "\n")
    out = tmp_path / "c"
    assert main(["corpus", "build", str(out), "--source", str(tmp_path / "src"), "--tokenizer",
                 str(tiny_corpus / "tokenizer"), "--humaneval", str(problems)]) == 0
    paths = {f.path for split in ("train", "heldout") for f in load_texts(out, split)}
    assert "solutions/close.py" not in paths and "other/close.py" in paths
    assert "pkg/beta.py" in paths and len(paths & {"pkg/alpha.py", "vendor/pkg/alpha.py"}) == 1
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["rules"]["near_twins_in_train"]["jaccard"] == 0.5
    assert manifest["rules"]["humaneval"]["problems"] == 1
    assert manifest["removed"]["near_twins_in_train"]["files"] == 1
    removed = [r for split in manifest["removed"]["humaneval"].values() for r in split]
    assert removed == [{"path": "solutions/close.py", "problem": "HumanEval/0"}]


def test_keep_near_twins_builds_the_corpus_as_before(tiny_corpus, tmp_path):
    files = _sources(tmp_path / "src")
    out = tmp_path / "c"
    assert main(["corpus", "build", str(out), "--source", str(tmp_path / "src"), "--tokenizer",
                 str(tiny_corpus / "tokenizer"), "--keep-near-twins"]) == 0
    paths = {f.path for split in ("train", "heldout") for f in load_texts(out, split)}
    assert paths == set(files)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["rules"] == {"near_twins_in_train": None, "humaneval": None} and manifest["removed"] == {}


def test_a_humaneval_file_that_is_not_one_is_a_clear_error(tiny_corpus, tmp_path, capsys):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "m.py").write_text(_module("m"))
    bad = tmp_path / "he.jsonl"
    bad.write_text('{"task_id": "x"}\n')
    rc = main(["corpus", "build", str(tmp_path / "c"), "--source", str(tmp_path / "src"), "--tokenizer",
               str(tiny_corpus / "tokenizer"), "--humaneval", str(bad)])
    assert rc == 2 and "not a HumanEval record" in capsys.readouterr().err


def test_held_out_near_twins_are_found_once_and_cached_in_the_corpus(tiny_corpus, tmp_path, monkeypatch):
    import diffill.model.corpus as corpus_module
    from diffill.model.corpus import HELDOUT_TWINS, heldout_near_twins

    _sources(tmp_path / "src")
    corpus = tmp_path / "c"
    build_corpus(corpus, [tmp_path / "src"], tokenizer=tiny_corpus / "tokenizer",
                 held_paths={"vendor/pkg/alpha.py", "pkg/beta.py"})
    held = [f.path for f in load_texts(corpus, "heldout")]
    assert {"vendor/pkg/alpha.py", "pkg/beta.py"} <= set(held)
    twins = heldout_near_twins(corpus)
    assert twins == {held.index("vendor/pkg/alpha.py"): "pkg/alpha.py"}
    assert json.loads((corpus / HELDOUT_TWINS).read_text())["twins"][0]["path"] == "vendor/pkg/alpha.py"
    monkeypatch.setattr(corpus_module, "twins_against", lambda *a, **k: pytest.fail("not read from the cache"))
    assert heldout_near_twins(corpus) == twins
