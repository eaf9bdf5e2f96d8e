"""The engine: request -> context window -> sampler (+ syntax constraint) -> postprocess -> edit.

One Engine owns the model. The LSP server and the CLI both call it; no front end tokenizes,
samples or parses on its own.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path

import torch

from diffill.adapters.lora import REPOSITORY_TOKENS, SHIPPED, AdapterError
from diffill.adapters.serving import AdaptedModel
from diffill.confidence import Calibration, Signals, fingerprint, load_calibration, raw_score
from diffill.errors import DiffillError
from diffill.languages import UnknownLanguageError, language_name, parse_setting, refusal, served, serves
from diffill.newlines import LineFeeds
from diffill.postprocess import HoleContext, postprocess
from diffill.precision import DTYPES, resolve_dtype
from diffill.syntax import HoleGuard, Resample, ensure_valid, guard_for
from diffill.words import typed_part
from diffill.workspace import WorkspaceCopy
from diffill.grammar.constraint import RowConstraints
from diffill.model.backend import BACKENDS, DiffillBackend
from diffill.model.foreign import load_backend
from diffill.model.families import ADAPTABLE, detect_family
from diffill.model.families.serving import DeviceError, FamilyBackend, resolve_device
from diffill.model.beam import LINE_BEAM
from diffill.model.context import Window, encode_window
from diffill.model.context_reuse import ContextReuse
from diffill.model.copying import Copying
from diffill.model.decoders import Decoder
from diffill.model.decoding import Bans, Request, SampleResult, SamplerConfig, StepTrace
from diffill.model.lead import Lead, Spellings, typed_word
from diffill.model.library_index import LibraryIndex, default_folder
from diffill.model.loading import DEFAULT_CHECKPOINT, ModelLoadError, load_network
from diffill.model.ngram import TokenCache

log = logging.getLogger(__name__)

NEIGHBORS = 16  # other documents' token caches kept between requests
REPAIR_PARALLEL = 4  # slots committed per step, at least, when a hole is resampled to repair it
# a selection's canvas: its old text's tokens and this many more, at most this many multi-line budgets
SELECTION_SLACK = 16
SELECTION_BUDGETS = 4


@dataclass
class EngineConfig:
    model: str | None = None  # checkpoint folder; None: the shipped default
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    window: Window | None = None  # None: the model's own (the window it was trained with)
    single_line_tokens: int = 16
    # a one-line hole's latency bound: after this many forward passes it is finished in one step
    # (model.decoding.Request.finish_after); 0: no bound. Measured: docs/decoding.md
    single_line_passes: int = 8
    # one-line holes are searched with this many candidates (model.beam; 0 or 1: threshold
    # decoding), unless the sampler settings name a beam themselves (SamplerConfig.beam not None)
    single_line_beam: int = LINE_BEAM
    multi_line_tokens: int = 64
    constrained: bool = True  # keep infills syntactically valid (tree-sitter), where a grammar is known
    repairs: int = 1  # resamples of a hole whose constrained fill is still invalid
    threads: int = 0  # 0: torch's default
    # LoRA adapter merged at start: an adapter folder, "shipped" (the shipped infill adapter, when it
    # was made for this base), or None / "none": the bare base, the default (docs/adapters.md)
    adapter: str | None = None
    # auto (the model folder's config.json says: model.families.detect_family) or one of
    # model.backend.BACKENDS: diffill | masked_lm | diffusion_gemma | dream | dreamon | llada | open_dcoder
    backend: str = "auto"
    trust_remote_code: bool = False  # run a checkpoint's own code (masked_lm only); only when asked
    # cpu | cuda | auto (auto: a GPU when there is one for the open families; the shipped model,
    # a few MB, stays on the CPU unless cuda is named). bfloat16 on a GPU
    device: str = "auto"
    # inference weights: float32 | bfloat16 | auto (bfloat16 where the CPU has native bf16 kernels;
    # faster at the same held-out figures: docs/benchmarks.md)
    dtype: str = "auto"
    # holes mix in continuations of their left context found in the rest of the document, the request's
    # neighbors and a workspace adapter's repository (model/ngram.py; docs/decoding.md)
    copy: bool = True
    # a library index to copy from as well (model/library_index.py, built by ``diffill index``):
    # "default" (the one ``diffill index`` builds by default, when it exists), a folder, or None / "none"
    library: str | None = "default"
    # a one-line hole at a cursor inside a word is filled from the word's start, the fill starting
    # with the typed part (model/lead.py; token healing)
    heal_words: bool = True
    # the languages filled (diffill.languages): None, those the model was trained on (its config.json's
    # "languages", else every language with a grammar); "all"; or names, comma-separated or listed
    languages: str | tuple[str, ...] | None = None
    # a one-line hole's context is built on the last requests' encoded context where the window
    # changed only near the cursor (model/context_reuse.py; approximate, measured in docs/latency.md
    # on one-line holes, so multi-line holes are always encoded whole); False: every context whole
    context_reuse: bool = True


@dataclass(frozen=True)
class InfillOptions:
    """How one call fills its holes, where it differs from the engine's config (None: as configured).
    Front ends pass their per-request settings here instead of changing ``Engine.config``."""

    beam: int | None = None  # one-line holes' beam width (EngineConfig.single_line_beam); 0: threshold decoding
    threshold: float | None = None  # confidence to commit a token in a denoising step (SamplerConfig.threshold)
    constrained: bool | None = None  # keep fills syntactically valid (EngineConfig.constrained)
    # the languages filled, as EngineConfig.languages (the language server's languages setting)
    languages: tuple[str, ...] | None = None
    context_reuse: bool | None = None  # build on earlier requests' context (EngineConfig.context_reuse)


@dataclass(frozen=True)
class Progress:
    """One denoising step of a call's first hole, for a progress report."""

    step: int
    filled: int  # canvas slots decided so far
    slots: int  # canvas slots in all


@dataclass
class InfillRequest:
    text: str  # the whole document
    start: int  # character offsets of the hole; start == end: a cursor
    end: int
    language: str | None = None  # LSP languageId, or None to guess from ``path``
    path: str | None = None
    max_tokens: int | None = None  # canvas budget; None: by context (single or multi-line)
    neighbors: tuple[str, ...] = ()  # other documents (the editor's other open files) to copy from
    multiline: bool | None = None  # None: decided by the cursor context
    # a fill whose confidence (InfillResult.confidence) is below this is withheld (no text), and so
    # is each runner-up below it; 0: every fill as it is
    min_confidence: float = 0.0


@dataclass
class InfillResult:
    text: str
    start: int
    end: int
    steps: int
    forward_passes: int
    tokens: int
    latency_ms: float
    multiline: bool
    cancelled: bool = False
    raw: str = ""  # the sampler's text before post-processing
    syntax: str = "unconstrained"  # the syntax guard's verdict: valid | runner-up | repaired | truncated | empty
    # other fills a beam search found (one-line holes), likeliest first; valid where a grammar is known
    alternatives: list[str] = field(default_factory=list)
    # the estimated probability that the fill is exactly what the user would have written
    # (diffill.confidence); uncalibrated (the raw score) when the model has no calibration for it
    confidence: float = 0.0
    confidence_calibrated: bool = False
    alternative_confidences: list[float] = field(default_factory=list)
    withheld: bool = False  # the fill was below the request's min_confidence (text is "")
    # at a cursor right after a word's characters: that typed part of the word (``typed_part``). The
    # fill continues it; a completion item replaces it (from ``word_start``) with ``typed + text``
    typed: str = ""
    signals: Signals | None = field(default=None, repr=False)  # what the confidence was estimated from
    alternative_signals: list[Signals] = field(default_factory=list, repr=False)

    @property
    def word_start(self) -> int:
        """Where the range a completion item replaces starts: the typed part's start (else ``start``)."""
        return self.start - len(self.typed)

    def as_json(self) -> dict:
        return {"text": self.text, "start": self.start, "end": self.end, "steps": self.steps,
                "forward_passes": self.forward_passes, "tokens": self.tokens,
                "latency_ms": round(self.latency_ms, 2), "alternatives": self.alternatives,
                "confidence": round(self.confidence, 4), "confidence_calibrated": self.confidence_calibrated,
                "alternative_confidences": [round(c, 4) for c in self.alternative_confidences],
                "withheld": self.withheld}


def load_library(setting: str | None, tok) -> LibraryIndex | None:
    """The library index ``setting`` names (see ``EngineConfig.library``) for ``tok``. The default
    one is used when it has been built; a damaged or mismatched default is skipped with a warning
    (the model still serves), a damaged or mismatched named one is a clear error."""
    if setting in (None, "none"):
        return None
    folder = default_folder(tok) if setting == "default" else Path(setting)
    if folder is None or (setting == "default" and not (folder / "index.json").is_file()):
        return None
    try:
        return LibraryIndex(folder, tok)
    except ValueError as e:
        if setting != "default":
            raise DiffillError(f"library index: {e}") from e
        log.warning("not copying from the library index: %s", e)
        return None


def _after(fill: str, typed: str) -> str:
    """A fill that starts with ``typed``, without it; "" for any other."""
    return fill[len(typed):] if fill.startswith(typed) else ""


def _blank_cursor(text: str, at: int) -> bool:
    """Whether ``at`` is on a line of blanks only, past its indentation, or at the start of such a
    line where the line before is not indented (where a bridged line, found blind to indentation,
    goes as it is)."""
    line_start, line_end = _line_bounds(text, at)
    line = text[line_start:line_end]
    if line.strip() or at < line_end or line_start == 0:
        return False
    if line:
        return True
    before = text[text.rfind("\n", 0, line_start - 1) + 1 : line_start - 1]
    return bool(before.strip()) and not before[0].isspace()


def wants_multiline(text: str, start: int, end: int) -> bool:
    """A selected region, or a cursor on an otherwise blank line, gets several lines;
    a cursor with code before or after it on its line gets the rest of one line."""
    if end > start:
        return "\n" in text[start:end]
    line_start, line_end = _line_bounds(text, start)
    return not text[line_start:line_end].strip()


def _line_bounds(text: str, at: int) -> tuple[int, int]:
    """Where the line holding offset ``at`` starts and ends (before its ``\n``)."""
    line_end = text.find("\n", at)
    return text.rfind("\n", 0, at) + 1, len(text) if line_end < 0 else line_end


def resolve_backend(backend: str, model: str | None) -> str:
    """``backend`` itself, or for ``auto`` the backend the model folder's config.json names (the
    shipped model: diffill)."""
    if backend != "auto":
        return backend
    if not model or not (Path(model) / "config.json").is_file():
        return "diffill"  # the shipped model, or a folder whose loading will say what is missing
    try:
        return detect_family(model)
    except ValueError:
        return "diffill"  # an unreadable config.json: the checkpoint loader says what is wrong with it


class Engine:
    def __init__(self, config: EngineConfig | None = None):
        self.config = config or EngineConfig()
        if self.config.threads:
            torch.set_num_threads(self.config.threads)
        self.config.backend = resolve_backend(self.config.backend, self.config.model)
        if self.config.backend != "diffill":
            self._foreign_backend()
            return
        try:
            if self.config.dtype not in DTYPES:
                raise ModelLoadError(f"dtype must be one of {', '.join(DTYPES)}, not {self.config.dtype!r}")
            self.dtype = resolve_dtype(self.config.dtype)
            device = resolve_device("cpu" if self.config.device == "auto" else self.config.device)
            if device.type == "cuda":
                self.dtype = "bfloat16"
            self.model, self.tok = load_network(self.config.model, dtype=getattr(torch, self.dtype))
            if getattr(self.model.config, "causal", False):  # the denoising sampler needs the whole row
                raise ModelLoadError(f"{self.config.model} is a causal (autoregressive) checkpoint, not a diffusion "
                                     "model; compare it with `diffill bench peer --peer` instead")
        except (ModelLoadError, DeviceError) as e:
            raise DiffillError(str(e)) from e
        self.model.to(device)
        self.backend = DiffillBackend(self.model, self.tok)
        # the same network, keeping the contexts it encodes for later requests (context_reuse)
        self.reusing: DiffillBackend | None = DiffillBackend(self.model, self.tok, reuse=ContextReuse())
        # the shipped adapter's merge into these weights is kept in the user's cache (adapters.merged)
        weights = Path(self.config.model or DEFAULT_CHECKPOINT) / "model.safetensors"
        self.adapters = AdaptedModel(self.model, weights=weights, dtype=self.dtype)
        self.adapter: str | None = None  # folder of the merged adapter
        self.calibration: Calibration | None = None  # for the model and adapter served (use_adapter)
        self.repository: TokenCache | None = None  # the adapter's repository tokens, when it has them
        self._neighbors: dict[str, TokenCache] = {}  # other documents' token caches, oldest first
        self.workspace: WorkspaceCopy | None = None  # the workspace folders' files (index_workspace)
        self.library = self._library(self.config.library)
        self.languages = self._languages()
        self.use_adapter(self.config.adapter)

    def _foreign_backend(self) -> None:
        """Another diffusion LM through ``model.foreign.load_backend`` (no adapters)."""
        if self.config.backend not in BACKENDS:
            raise DiffillError(f"unknown backend {self.config.backend!r} (choose from {', '.join(BACKENDS)})")
        if not self.config.model:
            raise DiffillError(f"--backend {self.config.backend} needs --model FOLDER")
        try:
            if self.config.dtype not in DTYPES:
                raise ModelLoadError(f"dtype must be one of {', '.join(DTYPES)}, not {self.config.dtype!r}")
            self.backend, self.tok = load_backend(self.config.backend, self.config.model,
                                                  self.config.trust_remote_code, self.config.device,
                                                  getattr(torch, resolve_dtype(self.config.dtype)))
        except ModelLoadError as e:
            raise DiffillError(str(e)) from e
        self.model = self.backend.model
        self.reusing = None  # other models' backends do not reuse context across requests
        self.dtype = str(next(self.model.parameters()).dtype).removeprefix("torch.")
        self.adapters = None
        self.adapter = None
        self.calibration = None
        self.repository = None
        self.workspace = None
        self._neighbors = {}
        # copying works with any tokenizer; a library index is built for one tokenizer, and a named one
        # that does not fit this model's is refused (load_library)
        self.library = self._library(self.config.library)
        self.languages = self._languages()
        self.use_adapter(self.config.adapter)

    def _languages(self) -> tuple[str, ...]:
        """The languages this engine fills (``EngineConfig.languages``)."""
        return served(self.model_folder, self.config.languages)

    def _library(self, setting: str | None) -> LibraryIndex | None:
        return load_library(setting, self.tok) if self.config.copy else None

    def use_adapter(self, adapter: str | None) -> str | None:
        """Serve base + ``adapter`` merged (see ``EngineConfig.adapter``); returns its folder.
        Not thread-safe: switch only while no request is running."""
        if self.adapters is None:
            if adapter in (None, "none", SHIPPED):  # an open family has no shipped adapter
                return None
            if not isinstance(self.backend, FamilyBackend):
                raise DiffillError(f"adapters apply to the diffill model and the {', '.join(ADAPTABLE)} "
                                   f"families only, not {self.config.backend}")
            self.adapters = AdaptedModel(self.model)  # the family's network, LoRA layers injected on load
        folder = None if adapter in (None, "none", SHIPPED) else Path(adapter)
        repository = self._repository(folder) if folder else None  # a damaged one fails before the switch
        try:
            info = self.adapters.use(adapter)
        except AdapterError as e:
            raise DiffillError(str(e)) from e
        self.adapter = str(info.path) if info else None
        if self.reusing is not None:
            self.reusing.reuse.clear()  # the kept keys and values are the old weights'
        self.repository = repository if info else None
        # calibrations are fitted for the diffill model (diffill.confidence)
        self.calibration = load_calibration(self.model_folder, self.fingerprint) \
            if self.config.backend == "diffill" else None
        log.info("adapter: %s; confidence %s", self.adapter or "none",
                 "calibrated" if self.calibration else "not calibrated (raw scores)")
        return self.adapter

    @property
    def model_folder(self) -> Path:
        """The checkpoint folder (where its confidence calibration lives)."""
        return Path(self.config.model) if self.config.model else DEFAULT_CHECKPOINT

    def fingerprint(self) -> dict:
        """What a confidence calibration fitted now is valid for: this base and adapter."""
        return fingerprint(self.adapters.base_sha256, self.adapter)

    def _repository(self, folder: Path) -> TokenCache | None:
        """The token cache a workspace adapter keeps of its repository's files, if any."""
        path = Path(folder) / REPOSITORY_TOKENS
        if not path.is_file():
            return None
        try:
            return TokenCache.load(path, self.tok)
        except ValueError as e:
            raise DiffillError(f"adapter {folder}: {e}") from e

    @property
    def window(self) -> Window:
        return self.config.window or self.backend.window

    def info(self) -> dict:
        return {"model": self.config.model or "diffill-base (default)",
                "parameters": sum(p.numel() for p in self.model.parameters()),
                "adapter": self.adapter or "none", "languages": list(self.languages),
                "library": str(self.library.folder) if self.library is not None else "none"}

    def _check(self, req: InfillRequest, languages: tuple[str, ...] | None = None) -> None:
        known = languages or self.languages
        name = language_name(req.language, req.path)
        if not serves(known, name):
            raise UnknownLanguageError(refusal(known, name))
        if not 0 <= req.start <= req.end <= len(req.text):
            raise DiffillError(f"hole {req.start}-{req.end} is outside the document (length {len(req.text)})")
        if "\x00" in req.text:
            raise DiffillError("the document looks binary (it contains NUL characters)")

    def _budget(self, req: InfillRequest, multiline: bool) -> int:
        if req.max_tokens:
            return req.max_tokens
        if req.end > req.start:
            old = len(self.tok.encode(req.text[req.start : req.end]))
            return max(self.config.single_line_tokens,
                       min(SELECTION_BUDGETS * self.config.multi_line_tokens, old + SELECTION_SLACK))
        return self.config.multi_line_tokens if multiline else self.config.single_line_tokens

    def infill(self, req: InfillRequest, cancelled: Callable[[], bool] | None = None,
               on_step: Callable[[StepTrace], None] | None = None,
               sampler: SamplerConfig | None = None, options: InfillOptions | None = None,
               on_progress: Callable[[Progress], None] | None = None) -> InfillResult:
        """Fill one hole (``infill_many``). ``on_progress`` hears of every denoising step."""
        if on_progress is not None:
            on_step = self._progress_reporter(on_progress, on_step)
        return self.infill_many([req], cancelled, on_step, sampler, options)[0]

    def _progress_reporter(self, on_progress: Callable[[Progress], None],
                           on_step: Callable[[StepTrace], None] | None) -> Callable[[StepTrace], None]:
        mask = self.tok.mask_id

        def report(trace: StepTrace) -> None:
            canvas = trace.canvas[0]
            on_progress(Progress(trace.step, sum(1 for t in canvas if t != mask), len(canvas)))
            if on_step is not None:
                on_step(trace)

        return report

    def infill_many(self, reqs: list[InfillRequest], cancelled: Callable[[], bool] | None = None,
                    on_step: Callable[[StepTrace], None] | None = None,
                    sampler: SamplerConfig | None = None,
                    options: InfillOptions | None = None) -> list[InfillResult]:
        """Fill every hole; holes of the same kind (one line or several) and budget share forward
        passes. A document with ``\r\n`` (or ``\r``) line ends is filled as ``\n`` text and gets its
        fills in its own line ends (``diffill.newlines``). ``options`` (beam, threshold, constraint)
        apply to this call only; ``sampler``, when given, replaces the configured sampler settings."""
        options = options or InfillOptions()
        if options.threshold is not None:
            sampler = replace(sampler or self.config.sampler, threshold=options.threshold)
        languages = parse_setting(options.languages, strict=False)
        for r in reqs:
            self._check(r, languages)
        originals, ends = reqs, [LineFeeds(r.text) for r in reqs]
        reqs = [replace(r, text=e.text, start=e.offset(r.start), end=e.offset(r.end),
                        neighbors=tuple(LineFeeds(t).text for t in r.neighbors)) if e.changed else r
                for r, e in zip(reqs, ends)]
        cancelled = cancelled or (lambda: False)
        plans = []
        for r in reqs:
            multiline = r.multiline if r.multiline is not None else wants_multiline(r.text, r.start, r.end)
            plans.append((multiline, self._budget(r, multiline)))
        results: list[InfillResult | None] = [None] * len(reqs)
        for plan in sorted(set(plans)):
            budget = plan[1]
            idx = [i for i, p in enumerate(plans) if p == plan]
            t0 = time.perf_counter()
            cfg = self._sampler_for(sampler or self.config.sampler, multiline=plan[0], beam=options.beam)
            backend = self._backend_for(options, multiline=plan[0])
            typed = {i: self._typed(reqs[i], plan[0], cfg) for i in idx}
            # the holes as the model fills them: a word being typed is part of the fill (model.lead)
            held = {i: replace(reqs[i], start=reqs[i].start - len(typed[i])) for i in idx}
            # a one-line hole ends at its line's end: a guessed newline is the end of the fill
            rows = [Request(*encode_window(self.tok, held[i].text[: held[i].start], held[i].text[held[i].end :],
                                           self.window),
                            stops=frozenset() if plans[i][0] else self.tok.line_break_ids(),
                            finish_after=0 if plans[i][0] else self.config.single_line_passes,
                            copying=self._copying(held[i]),
                            lead=Lead(typed[i], Spellings.of(self.tok)) if typed[i] else None) for i in idx]
            guards = self._guards([held[i] for i in idx], options.constrained)
            for k, guard in guards.items():  # whole fills are judged as the user gets them
                h = held[idx[k]]
                guard.constraint.finish = partial(postprocess, ctx=HoleContext(h.text[: h.start], h.text[h.end :],
                                                                               plans[idx[k]][0]))
            # a cursor on a blank line between lines that the caches bridge gets that line, unsampled
            bridged = self._blank_line_bridges([held[i] for i in idx], rows, guards) if plan[0] else {}
            todo = [k for k in range(len(rows)) if k not in bridged]
            constraint = RowConstraints({n: guards[k].constraint for n, k in enumerate(todo) if k in guards}) \
                if guards else None
            sampled = Decoder(backend, cfg).sample([rows[k] for k in todo], budget, constraint=constraint,
                                                        cancelled=cancelled, on_step=on_step)
            rest = iter(sampled)
            outs = [bridged[k] if k in bridged else next(rest) for k in range(len(rows))]
            ms = (time.perf_counter() - t0) * 1000.0
            was_cancelled = cancelled()
            for k, (i, out) in enumerate(zip(idx, outs)):
                r, h = reqs[i], held[i]
                raw = self.tok.decode(out.tokens)
                ctx = HoleContext(h.text[: h.start], h.text[h.end :], plans[i][0])
                text = postprocess(raw, ctx) if (out.complete or raw) else ""
                row_ms, syntax = ms, "unconstrained"
                t1 = time.perf_counter()
                runners_up = self._runners_up(out.alternatives, ctx, guards.get(k))
                evidence = self._evidence(out, ctx, plans[i][0], len(typed[i]))
                if k in guards:
                    # a cancelled request is not resampled
                    resample = None if was_cancelled else self._resampler(guards[k], rows[k], budget, cfg, ctx,
                                                                          cancelled, backend)
                    text = ensure_valid(guards[k], out.tokens, text, resample, self.config.repairs, runners_up)
                    syntax = guards[k].outcome
                row_ms += (time.perf_counter() - t1) * 1000.0
                signals = replace(evidence.get(text, evidence[None]), syntax=syntax, rank=0,
                                  tokens=len(self.tok.encode(text)) if text.strip() else 0)
                pairs = [(a, replace(evidence.get(a, evidence[None]), tokens=len(self.tok.encode(a))))
                         for a in runners_up]
                if typed[i]:  # the typed part is in the document already (a fill without it: none)
                    text, raw = _after(text, typed[i]), _after(raw, typed[i])
                    pairs = [(rest, o) for a, o in pairs if (rest := _after(a, typed[i])).strip()]
                    if not text:
                        signals = replace(signals, tokens=0)
                confidence, calibrated = self.confidence(signals)
                pairs = [(a, replace(o, rank=n + 1)) for n, (a, o) in enumerate(p for p in pairs if p[0] != text)]
                withheld = bool(text) and confidence < r.min_confidence
                # a withheld fill is no answer at all: its runners-up go with it
                shown = [(a, c, o) for a, o in pairs if (c := self.confidence(o)[0]) >= r.min_confidence
                         and not withheld]
                results[i] = InfillResult(text="" if withheld else text, start=r.start, end=r.end, steps=out.steps,
                                          forward_passes=out.forward_passes, tokens=len(out.tokens),
                                          latency_ms=row_ms, multiline=plans[i][0],
                                          cancelled=was_cancelled, raw=raw, syntax=syntax,
                                          alternatives=[a for a, _, _ in shown], confidence=confidence,
                                          confidence_calibrated=calibrated,
                                          alternative_confidences=[c for _, c, _ in shown], withheld=withheld,
                                          signals=signals, alternative_signals=[o for _, _, o in shown])
        for i, (r, e) in enumerate(zip(originals, ends)):
            if e.changed:
                done = results[i]
                results[i] = replace(done, text=e.fill(done.text), start=r.start, end=r.end,
                                     alternatives=[e.fill(a) for a in done.alternatives])
            if r.start == r.end:
                results[i] = replace(results[i], typed=typed_part(r.text, r.start))
        return results  # type: ignore[return-value]

    def _backend_for(self, options: InfillOptions, multiline: bool):
        """The backend a call's holes decode with: for one-line holes, the one that reuses context
        across requests where that is asked for (the call's option, else the engine's setting)."""
        wanted = self.config.context_reuse if options.context_reuse is None else options.context_reuse
        return self.reusing if wanted and not multiline and self.reusing is not None else self.backend

    def _typed(self, req: InfillRequest, multiline: bool, cfg: SamplerConfig) -> str:
        """The typed part of the word at a one-line hole's cursor, which its fill is to start with
        (``model.lead``: beam search only); "" for other holes."""
        if multiline or req.end > req.start or not cfg.beam or cfg.beam < 2 or not self.config.heal_words:
            return ""
        return typed_word(req.text, req.start)

    def _blank_line_bridges(self, reqs: list[InfillRequest], rows: list[Request],
                            guards: dict[int, HoleGuard]) -> dict[int, SampleResult]:
        """Row -> the line its copying bridges (``Copying.line``) for a cursor on a blank
        line, after its indentation (or at the start of a line whose line before is not indented),
        with code on the lines around it; rows without one are left out. Only the lines on both
        sides place it (the line before the next lines alone is, where a block is missing, its last
        line), and it must pass the hole's syntax guard. A blank line between two lines is often
        one missing line; threshold decoding, which fills such holes, has no bridges of its own."""
        out: dict[int, SampleResult] = {}
        for k, (r, row) in enumerate(zip(reqs, rows)):
            if not row.copying or r.end > r.start or not _blank_cursor(r.text, r.start):
                continue
            found = row.copying.line(row.prefix, row.suffix, self.config.single_line_tokens, alone=False)
            if not found or not found.line:
                continue
            fill = found.line
            text = self.tok.decode(fill)
            if k in guards and not guards[k].checker.is_valid(text):
                continue
            out[k] = SampleResult(fill, True, 0, 0, len(fill), bridge=found.agreement)
        return out

    def _copying(self, req: InfillRequest) -> Copying | None:
        """What a hole copies from (model.copying): the document around it, its neighbors, the
        repository (an adapter's, else the workspace's), the library index."""
        if not self.config.copy:
            return None
        repository = self.repository
        if repository is None and self.workspace is not None:
            repository = self.workspace.without(req.path)
        return Copying.for_hole(self.tok, req.text[: req.start], req.text[req.end :],
                                [*(self._neighbor(text) for text in req.neighbors), repository, self.library],
                                self.tok.bos_id)

    def index_workspace(self, folders: list[str]) -> dict:
        """Copy from these folders' source files (diffill/workspace.py) where no workspace adapter
        brings its repository's tokens; an empty list forgets them. Returns {"files", "tokens"};
        unreadable folders are skipped."""
        self.workspace = WorkspaceCopy(self.tok, folders) if folders else None
        return self.workspace.summary() if self.workspace is not None else {"files": 0, "tokens": 0}

    def refresh_workspace(self, paths: list[str]) -> dict | None:
        """Bring these files' copies in the workspace index in line with the disk (``WorkspaceCopy.refresh``);
        None when no workspace is indexed. The answer has the index's new "files" and "tokens" too."""
        if self.workspace is None:
            return None
        return {**self.workspace.refresh(paths), **self.workspace.summary()}

    def _neighbor(self, text: str) -> TokenCache:
        """A token cache of another document, kept while it is unchanged (the last ``NEIGHBORS``)."""
        cache = self._neighbors.pop(text, None)
        if cache is None:
            cache = TokenCache.for_tokenizer(self.tok).extend([self.tok.encode(text)])
        self._neighbors[text] = cache
        while len(self._neighbors) > NEIGHBORS:
            self._neighbors.pop(next(iter(self._neighbors)))
        return cache

    def _sampler_for(self, cfg: SamplerConfig, multiline: bool, beam: int | None = None) -> SamplerConfig:
        """``cfg`` with its beam decided, where it leaves that to the engine: one-line holes
        beam-searched (``beam``, else ``single_line_beam``), others by threshold."""
        if cfg.beam is not None:
            return cfg
        width = self.config.single_line_beam if beam is None else beam
        one_line = not multiline and width > 1
        return replace(cfg, beam=width if one_line else 0)

    def _runners_up(self, candidates: list[list[int]], ctx: HoleContext, guard: HoleGuard | None) -> list[str]:
        """A beam search's other fills as the user would get them: post-processed, non-empty, valid
        where there is a guard, distinct; likeliest first."""
        out: list[str] = []
        for tokens in candidates:
            alt = postprocess(self.tok.decode(tokens), ctx)
            if alt.strip() and alt not in out and (guard is None or guard.checker.is_valid(alt)):
                out.append(alt)
        return out

    def _evidence(self, out: SampleResult, ctx: HoleContext, multiline: bool, typed: int) -> dict:
        """Post-processed text -> ``Signals`` for the sampler's fill and each runner-up (the likelier
        one where two read the same); under None, the fill's (for a fill the syntax guard changed)."""
        kind = "block" if multiline else "line"
        scores = [out.score, *out.alternative_scores] if out.score is not None else []
        found: dict = {}
        fills = [(out.tokens, (out.token_logps, out.copied)), *zip(out.alternatives, out.alternative_evidence)]
        for n, (tokens, (logps, copied)) in enumerate(fills):
            margin = None
            if len(scores) > 1 and n < len(scores):
                margin = scores[n] - max(s for m, s in enumerate(scores) if m != n)
            signals = Signals(kind, scores[n] if n < len(scores) else None, margin, n, logps, copied,
                              out.bridge if n == 0 else None, len(tokens), out.forward_passes, typed=typed)
            raw = self.tok.decode(tokens)
            text = postprocess(raw, ctx) if (n or out.complete or raw) else ""
            found.setdefault(text, signals)
            if n == 0:
                found[None] = signals
        return found

    def confidence(self, signals: Signals) -> tuple[float, bool]:
        """A fill's confidence and whether it is calibrated (``diffill.confidence``)."""
        if self.calibration is not None:
            calibrated = self.calibration.confidence(signals)
            if calibrated is not None:
                return calibrated, True
        return raw_score(signals), False

    def _guards(self, reqs: list[InfillRequest], constrained: bool | None = None) -> dict[int, HoleGuard]:
        """Row -> syntax guard, for the rows whose language has a grammar (constrained only; None: as
        configured)."""
        if not (self.config.constrained if constrained is None else constrained):
            return {}
        guards = {k: guard_for(r.text, r.start, r.end, self.tok, r.language, r.path) for k, r in enumerate(reqs)}
        return {k: g for k, g in guards.items() if g is not None}

    def _resampler(self, guard: HoleGuard, row: Request, budget: int, cfg: SamplerConfig, ctx: HoleContext,
                   cancelled: Callable[[], bool], backend=None) -> Resample:
        """How ``ensure_valid`` repairs an invalid fill: ``row`` resampled with the error slots'
        tokens banned, post-processed as the hole's fill."""
        # the resample decodes by threshold (no beam) and commits at least REPAIR_PARALLEL slots a
        # step: a repair costs about a quarter of the first sampling, not as much again
        least = max(cfg.min_per_step, REPAIR_PARALLEL)
        quick = replace(cfg, beam=0, min_per_step=least,
                        max_per_step=cfg.max_per_step and max(cfg.max_per_step, least))

        def resample(bans: Bans) -> tuple[list[int], str]:
            out = Decoder(backend or self.backend, quick).sample([row], budget,
                                                                 constraint=RowConstraints({0: guard.constraint}),
                                                                 bans=bans, cancelled=cancelled)[0]
            raw = self.tok.decode(out.tokens)
            return out.tokens, postprocess(raw, ctx) if (out.complete or raw) else ""

        return resample

    def with_sampler(self, **changes) -> SamplerConfig:
        return replace(self.config.sampler, **changes)
