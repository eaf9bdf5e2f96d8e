"""``diffill bench report OUT.html``: the speed, validity and quality figures on one page.

The page is self-contained (inline SVG drawn here, inline CSS, no scripts, nothing fetched). It
reads the JSON that the other commands print with ``--json``, given as options; a result that is
not given is measured here at a small size (``--cases``), unless ``--no-run``; whatever is still
missing is shown as "not measured" with the reason. The main plot (accuracy against tokens per
forward pass) is also written as a PNG for the README, rendered by headless Chromium.

Input shapes (the JSON each command prints with ``--json``):

- ``bench speed --json``: ``{"results": [{"kind", "setting", "p50_ms", "p95_ms",
  "tokens_per_forward", "exact_match", "edit_similarity", "cases"}...], "model", "threads"}``;
  a result may carry ``"latencies_ms": [...]``, which feeds the latency histogram.
- ``bench validity --json``: ``{"constrained": {"validity", "exact_match", "p50_ms"},
  "unconstrained": {...}, "overhead", "grammars": {"python": true, ...}}``.
- ``eval heldout --json``: ``{"line_infill_exact_match", "masked_token_accuracy", ...}``, once
  as served (with the default adapter) and once with ``--adapter none``.
- ``adapt --json``: ``{"before": {"line_infill_exact_match"}, "after": {...}, ...}``.
- ``eval humaneval-infill --json``: ``{"pass_at_1", "exact_match", "cases", ...}``.
- ``bench abstain --json``: ``{"threshold", "precision", "coverage", "ece", "cases", "curve": [{"threshold",
  "coverage", "precision"}...], "kinds": {"line": {...the same...}, "mid_line": {...}}}``.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from html import escape
from pathlib import Path

from diffill.bench import svg
from diffill.bench.chromium import ChromiumError, screenshot
from diffill.errors import DiffillError

log = logging.getLogger(__name__)

MAIN_PLOT = "plot-accuracy-speed"
RUN_TIMEOUT_S = 3600  # one bench run for a missing input


@dataclass(frozen=True)
class Input:
    name: str  # key in the report and the option --NAME (underscores as dashes)
    help: str
    required: tuple[str, ...]  # keys the JSON must have
    command: tuple[str, ...] = ()  # the diffill command that measures it; () never run here


INPUTS = [
    Input("speed", "JSON of `diffill bench speed --json`", ("results",),
          ("bench", "speed", "--json", "--cases", "{cases}")),
    Input("validity", "JSON of `diffill bench validity --json`", ("constrained", "unconstrained"),
          ("bench", "validity", "--json", "--cases", "{cases}")),
    Input("heldout", "JSON of `diffill eval heldout --json` (as served, default adapter)",
          ("line_infill_exact_match",), ("eval", "heldout", "--json", "--cases", "{cases}")),
    Input("heldout_base", "JSON of `diffill eval heldout --json --adapter none`",
          ("line_infill_exact_match",),
          ("eval", "heldout", "--json", "--cases", "{cases}", "--adapter", "none")),
    Input("adapt", "JSON of `diffill adapt DIR --json` (a 10-minute training run: never run here)",
          ("before", "after")),
    Input("humaneval", "JSON of `diffill eval humaneval-infill --json` (data not shipped: never "
          "run here)", ("pass_at_1", "exact_match")),
    Input("abstain", "JSON of `diffill bench abstain --json`", ("curve",),
          ("bench", "abstain", "--json", "--cases", "{cases}")),
]


@dataclass
class Figures:
    """Each input's JSON (None: not measured) and where it came from (or why it is missing)."""
    data: dict[str, dict | None] = field(default_factory=dict)
    source: dict[str, str] = field(default_factory=dict)
    latencies: dict[str, list[float]] = field(default_factory=dict)
    latency_source: str = ""


def run(args) -> int:
    if args.cases < 1:
        raise DiffillError("--cases must be at least 1")
    out = Path(args.out)
    png = None if args.png == "none" else Path(args.png) if args.png else out.with_suffix(".png")
    for path, what in ((out, "the report"), (png, "the PNG")):  # before anything is measured
        if path is None:
            continue
        if path.is_dir():
            raise DiffillError(f"{path} is a folder: give a file name for {what}")
        if not path.resolve().parent.is_dir():
            raise DiffillError(f"no folder for {what}: {path.parent}")
    if args.corpus and not (Path(args.corpus) / "manifest.json").is_file():
        raise DiffillError(f"{args.corpus} is not a corpus folder (no manifest.json)")
    files = {inp.name: getattr(args, inp.name) for inp in INPUTS}
    figures = gather(files, run_missing=not args.no_run, cases=args.cases, model=args.model,
                     corpus=args.corpus)
    page = render(figures, model=args.model)
    try:
        out.write_text(page, encoding="utf-8")
    except OSError as e:
        raise DiffillError(f"cannot write the report {out}: {e.strerror or e}") from None
    print(f"wrote {out}")
    if png is not None:
        written = export_main_plot(page, png)
        if written:
            print(f"wrote {png} (plot {written})")
        else:
            print(f"diffill: no PNG written to {png} (see the warning above)", file=sys.stderr)
    return 0


# -- inputs -------------------------------------------------------------------------------------


def load_input(inp: Input, path: str) -> dict:
    p = Path(path)
    if not p.is_file():
        raise DiffillError(f"--{inp.name.replace('_', '-')}: no such file: {p}")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DiffillError(f"{p}: not a JSON file ({e})") from e
    if not isinstance(data, dict):
        raise DiffillError(f"{p}: expected a JSON object")
    missing = [k for k in inp.required if k not in data]
    if missing:
        raise DiffillError(f"{p}: not the output of {inp.help.split('`')[1]}: "
                           f"missing {', '.join(missing)}")
    return data


def measure(inp: Input, cases: int, model: str | None, corpus: str | None = None
            ) -> tuple[dict | None, str]:
    """Run the input's diffill command at a small size; (JSON, source) or (None, reason)."""
    args = [a.format(cases=cases) for a in inp.command]
    if model:
        args += ["--model", model]
    if corpus:
        args += ["--corpus", corpus]
    shown = "diffill " + " ".join(args)
    log.info("measuring %s: %s", inp.name, shown)
    try:
        proc = subprocess.run([sys.executable, "-m", "diffill.cli", *args], capture_output=True,
                              text=True, stdin=subprocess.DEVNULL, timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return None, f"`{shown}` did not finish in {RUN_TIMEOUT_S} s"
    if proc.returncode != 0:
        reason = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
        return None, f"`{shown}` failed: {reason}"
    try:
        data = json.loads(proc.stdout.strip().splitlines()[-1])
    except (json.JSONDecodeError, IndexError):
        return None, f"`{shown}` printed no JSON"
    if not isinstance(data, dict) or any(k not in data for k in inp.required):
        return None, f"`{shown}` printed JSON of another shape"
    return data, f"measured for this report: `{shown}`"


def measure_latencies(cases: int, model: str | None, corpus: str | None = None) -> list[float]:
    """Latency of ``cases`` single-line holes from held-out files (the corpus's held-out split,
    else the standard library's), default settings, one request at a time, after a warm-up."""
    import sysconfig

    from diffill.engine import Engine, EngineConfig, InfillRequest
    from diffill.evaluation import heldout_texts, line_cases

    engine = Engine(EngineConfig(model=model))
    texts = heldout_texts(corpus, roots=None if corpus else [Path(sysconfig.get_paths()["stdlib"])])
    holes = line_cases(texts, cases + 1, seed=0)
    out = []
    for c in holes:
        text = c.prefix + c.suffix
        r = engine.infill(InfillRequest(text, len(c.prefix), len(c.prefix), multiline=False))
        out.append(r.latency_ms)
    return out[1:]


def default_setting(speed: dict, kind: str) -> str:
    """The speed bench's setting that is what the engine does for ``kind`` of hole: its
    ``defaults``, or in older results, the one matching the default sampler (``default``)."""
    if kind in (speed.get("defaults") or {}):
        return speed["defaults"][kind]
    d = speed.get("default") or {}
    if d.get("max_per_step") == 1:
        return "one_per_step"
    return "threshold_cache" if d.get("cache") else "threshold"


def speed_latencies(speed: dict) -> dict[str, list[float]]:
    """Per-case latencies of the default setting, one series per kind of hole (every result
    that has them when no result is of the default setting)."""
    results = [r for r in speed.get("results", []) if r.get("latencies_ms")]
    chosen = [r for r in results if r.get("setting") == default_setting(speed, r.get("kind", ""))] or results
    return {f"{r['kind']} ({r['setting']})": [float(v) for v in r["latencies_ms"]] for r in chosen}


def gather(files: dict[str, str | None], run_missing: bool, cases: int = 40,
           model: str | None = None, corpus: str | None = None) -> Figures:
    figures = Figures()
    for inp in INPUTS:
        path = files.get(inp.name)
        if path:
            figures.data[inp.name] = load_input(inp, path)
            figures.source[inp.name] = f"from {path}"
        elif not inp.command:
            figures.data[inp.name] = None
            figures.source[inp.name] = f"not given ({inp.help})"
        elif not run_missing:
            figures.data[inp.name] = None
            figures.source[inp.name] = "not given, and --no-run"
        else:
            figures.data[inp.name], figures.source[inp.name] = measure(inp, cases, model, corpus)
    speed = figures.data.get("speed")
    per_case = speed_latencies(speed) if speed else {}
    if per_case:
        figures.latencies, figures.latency_source = per_case, figures.source["speed"]
    elif run_missing:
        try:
            figures.latencies = {"single line, default settings":
                                 measure_latencies(cases, model, corpus)}
            figures.latency_source = (f"measured for this report: {cases} single-line held-out "
                                      "holes, one request at a time")
        except DiffillError as e:
            figures.latency_source = f"measuring failed: {e}"
    else:
        figures.latency_source = ("the speed results carry no per-case latencies" if speed
                                  else "no speed results, and --no-run")
    return figures


# -- the page -----------------------------------------------------------------------------------


CSS = """
body { font-family: sans-serif; margin: 2em auto; max-width: 1000px; color: #222; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 2em; }
figure { margin: 1em 0; } figcaption { color: #555; font-size: .9em; margin-top: .3em; }
table { border-collapse: collapse; margin: .8em 0; } td, th { border: 1px solid #ccc; padding: .25em .6em; }
th { background: #f3f3f3; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.not-measured { border: 2px dashed #c66; color: #933; padding: 1.2em; margin: 1em 0;
  background: #fff6f6; max-width: 600px; }
code { background: #f3f3f3; padding: 0 .2em; }
"""


def _num(v) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.4g}"
    return escape(str(v))


def _table(header: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(
        f'<td class="num">{_num(c)}</td>' if isinstance(c, (int, float)) and not isinstance(c, bool)
        else f"<td>{_num(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _missing(plot_id: str, what: str, reason: str) -> str:
    return (f'<div class="not-measured" id="{plot_id}"><strong>{escape(what)}: not measured.</strong>'
            f"<br>{escape(reason)}</div>")


def _figure(plot: str, caption: str) -> str:
    return f"<figure>{plot}<figcaption>{escape(caption)}</figcaption></figure>"


def latency_section(f: Figures) -> str:
    if not f.latencies or not any(f.latencies.values()):
        return _missing("plot-latency", "Latency histogram", f.latency_source)
    plot = svg.histogram("plot-latency", "Latency per request", f.latencies, "milliseconds")
    rows = []
    for name, vs in f.latencies.items():
        s = sorted(vs)
        rows.append([name, len(s), s[len(s) // 2], s[min(len(s) - 1, int(0.95 * len(s)))]])
    return _figure(plot, f"Source: {f.latency_source}.") + _table(["requests", "cases", "p50 ms", "p95 ms"], rows)


def speed_section(f: Figures) -> str:
    speed = f.data.get("speed")
    if not speed or not speed.get("results"):
        return _missing(MAIN_PLOT, "Accuracy against tokens per step", f.source.get("speed", ""))
    series: dict[str, list[tuple[float, float, str]]] = {}
    for r in speed["results"]:
        series.setdefault(str(r["kind"]), []).append(
            (float(r["tokens_per_forward"]), float(r["exact_match"]), str(r["setting"])))
    plot = svg.scatter(MAIN_PLOT, "Exact match against tokens committed per forward pass", series,
                       "tokens per forward pass", "exact match")
    cols = ["kind", "setting", "p50_ms", "p95_ms", "tokens_per_forward", "exact_match",
            "edit_similarity", "cases"]
    rows = [[r.get(c, "") for c in cols] for r in speed["results"]]
    extra = f" Model {speed.get('model', '?')}, {speed.get('threads', '?')} threads."
    return (_figure(plot, f"Source: {f.source['speed']}.{extra} Each point is one sampler "
                    "setting; further right is faster, higher is more accurate.")
            + _table(cols, rows))


def validity_section(f: Figures) -> str:
    v = f.data.get("validity")
    if not v:
        return _missing("plot-validity", "Validity with and without the constraint",
                        f.source.get("validity", ""))
    on, off = v["constrained"], v["unconstrained"]
    plot = svg.bars("plot-validity", "Validity and exact match, with and without the constraint",
                    ["validity", "exact match"],
                    {"constrained": [on.get("validity"), on.get("exact_match")],
                     "unconstrained": [off.get("validity"), off.get("exact_match")]},
                    "rate", y_hi=1.0)
    rows = [["constrained", on.get("validity", ""), on.get("exact_match", ""), on.get("p50_ms", "")],
            ["unconstrained", off.get("validity", ""), off.get("exact_match", ""),
             off.get("p50_ms", "")]]
    html = _figure(plot, f"Source: {f.source['validity']}.")
    html += _table(["", "validity", "exact match", "p50 ms"], rows)
    if v.get("overhead") is not None:
        html += ("<p>Latency overhead of the constraint (p50 constrained / unconstrained - 1): "
                 f"<strong>{_num(v['overhead'])}</strong>.</p>")
    if v.get("by_kind"):
        html += _table(["span kind", "cases", "validity on", "validity off", "exact on", "exact off"],
                       [[k, d.get("cases", ""), d["constrained"]["validity"],
                         d["unconstrained"]["validity"], d["constrained"]["exact_match"],
                         d["unconstrained"]["exact_match"]] for k, d in v["by_kind"].items()])
    if v.get("grammars"):
        html += _table(["grammar", "self-check passed"], [[k, bool(ok)] for k, ok in v["grammars"].items()])
    return html


def adapter_section(f: Figures) -> str:
    served, base, adapt = f.data.get("heldout"), f.data.get("heldout_base"), f.data.get("adapt")
    groups, without, with_ = [], [], []
    notes = []
    if served and base:
        groups.append("held-out lines, shipped adapter")
        without.append(float(base["line_infill_exact_match"]))
        with_.append(float(served["line_infill_exact_match"]))
        notes.append(f"shipped adapter: {f.source['heldout_base']} against {f.source['heldout']}")
    if adapt:
        groups.append("workspace repo, diffill adapt")
        without.append(float(adapt["before"]["line_infill_exact_match"]))
        with_.append(float(adapt["after"]["line_infill_exact_match"]))
        notes.append(f"workspace adapter: {f.source['adapt']}")
    if not groups:
        reason = "; ".join(f"{k}: {f.source.get(k, '')}" for k in ("heldout", "heldout_base", "adapt"))
        return _missing("plot-adapter", "Adapter gains", reason)
    plot = svg.bars("plot-adapter", "Line-infill exact match without and with an adapter", groups,
                    {"without adapter": without, "with adapter": with_}, "exact match")
    rows = [[g, a, b, b - a] for g, a, b in zip(groups, without, with_)]
    return _figure(plot, "Sources: " + "; ".join(notes) + ".") + _table(
        ["", "without", "with", "gain"], rows)


def quality_section(f: Figures) -> str:
    html = ""
    rows = [[name, k, v] for name in ("heldout", "heldout_base") if f.data.get(name)
            for k, v in f.data[name].items() if isinstance(v, (int, float, str)) and k != "model"]
    if rows:
        html += _table(["run", "figure", "value"], rows)
    else:
        html += _missing("table-heldout", "Held-out infill", f.source.get("heldout", ""))
    he = f.data.get("humaneval")
    if he:
        rows = [["all", he.get("cases", ""), he["pass_at_1"], he["exact_match"]]]
        rows += [[k, v.get("cases", ""), v.get("pass_at_1", ""), v.get("exact_match", "")]
                 for k, v in (he.get("by_variant") or {}).items()]
        html += "<h3>HumanEval-infilling</h3>" + _table(["variant", "cases", "pass@1", "exact match"], rows)
        html += f"<p>Source: {escape(f.source['humaneval'])}.</p>"
    else:
        html += _missing("table-humaneval", "HumanEval-infilling", f.source.get("humaneval", ""))
    return html


def abstain_section(f: Figures) -> str:
    """Precision against coverage as the confidence threshold rises, one line per kind of hole."""
    data = f.data.get("abstain")
    if not data:
        return _missing("plot-abstain", "Precision against coverage", f.source.get("abstain", ""))
    kinds = data.get("kinds") or {"holes": data}
    series = {kind: [(row["coverage"], row["precision"], f"{row['threshold']:g}") for row in k["curve"]
                     if row["precision"] is not None and row["threshold"] in (0.0, 0.2, 0.4, 0.5, 0.6, 0.8)]
              for kind, k in kinds.items()}
    series = {kind: points for kind, points in series.items() if points}
    if not series:
        return _missing("plot-abstain", "Precision against coverage", "no fill was shown at any threshold")
    plot = svg.scatter("plot-abstain", "Exact among shown against shown among asked, by confidence threshold",
                       series, "coverage", "precision")
    rows = [[kind, k.get("cases", ""), k.get("threshold", ""), k.get("precision", ""), k.get("coverage", ""),
             k.get("ece", "")] for kind, k in kinds.items()]
    return _figure(plot, f"Source: {escape(f.source.get('abstain', ''))}. Points are labelled by threshold.") + \
        _table(["holes", "cases", "threshold", "precision", "coverage", "ECE"], rows)


def render(f: Figures, model: str | None = None) -> str:
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    sources = "".join(f"<li><code>{escape(k)}</code>: {escape(v)}</li>" for k, v in f.source.items())
    sources += f"<li><code>latency</code>: {escape(f.latency_source)}</li>"
    return "\n".join([
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        "<title>diffill benchmark report</title>", f"<style>{CSS}</style></head><body>",
        "<h1>diffill benchmark report</h1>",
        f"<p>Generated {stamp}. Model for runs made here: {escape(model or 'the shipped default')}.</p>",
        "<h2>Speed</h2>", speed_section(f), latency_section(f),
        "<h2>Syntax validity</h2>", validity_section(f),
        "<h2>Adapters</h2>", adapter_section(f),
        "<h2>Quality</h2>", quality_section(f),
        "<h2>Confidence and abstention</h2>", abstain_section(f),
        f"<h2>Sources</h2><ul>{sources}</ul>",
        "</body></html>", ""])


# -- PNG export ---------------------------------------------------------------------------------


def main_plot_svg(page: str) -> str | None:
    """The main plot's ``<svg>`` element, or the first plot on the page when it is missing."""
    start = page.find(f'<svg id="{MAIN_PLOT}"')
    if start < 0:
        start = page.find("<svg ")
    if start < 0:
        return None
    return page[start : page.index("</svg>", start) + len("</svg>")]


def export_main_plot(page: str, png: Path) -> str | None:
    """Render the main plot to ``png`` with headless Chromium; returns what was drawn, or None."""
    plot = main_plot_svg(page)
    if plot is None:
        log.warning("no plot on the page: nothing to export")
        return None
    with tempfile.TemporaryDirectory(prefix="diffill-report-") as tmp:
        page_path = Path(tmp, "plot.html")
        page_path.write_text(f'<!DOCTYPE html><html><body style="margin:0">{plot}</body></html>',
                             encoding="utf-8")
        try:
            screenshot(page_path, png, svg.WIDTH, svg.HEIGHT)
        except ChromiumError as e:
            log.warning("PNG of the main plot not written: %s", e)
            return None
    return plot.split('"', 2)[1]
