import json

from diffill.bench.refactor import generate_tree
from diffill.cli import main
from diffill.refactor.files import FileFilter, collect_files
from diffill.refactor.selection import find_holes


def test_generated_tree_has_the_holes_it_claims(tmp_path):
    holes = generate_tree(tmp_path, files=9, seed=3)
    found, skipped = collect_files([str(tmp_path)], FileFilter())
    assert len(found) == 9 and skipped == []
    assert {lang for _, lang in found} == {"python", "javascript", "go"}
    assert sum(len(find_holes(open(p).read(), lang)) for p, lang in found) == holes
    again = tmp_path / "again"
    assert generate_tree(again, files=9, seed=3) == holes


def test_bench_reports_regions_per_minute(tiny_checkpoint, capsys):
    code = main(["bench", "refactor", "--files", "3", "--json", "--model", str(tiny_checkpoint),
                 "--adapter", "none"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0
    assert report["files"] == 3 and report["regions"] >= 6
    assert report["filled"] + report["rejected"] == report["regions"]
    assert report["regions_per_minute"] > 0
