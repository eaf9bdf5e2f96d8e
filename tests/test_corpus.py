"""The training corpus: held-out split, and a corpus for going on training a model elsewhere."""

import json

from diffill.cli import main
from model.corpus import build_corpus, is_heldout, load_texts
from model.tokenizer import load_tokenizer


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
    from model.corpus import collect

    one = [(f.path, f.text) for f in collect([tiny_sources], progress=False)]
    two = [(f.path, f.text) for f in collect([tiny_sources], progress=False, processes=2)]
    assert one == two and len(one) > 3
