import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { LineBuffer, parseAdaptLine, parseProgressBar, ProgressTracker } from "../src/adapt";

describe("parseAdaptLine", () => {
  it("reads step progress with its loss", () => {
    assert.deepEqual(parseAdaptLine('{"event": "train", "step": 25, "total": 100, "loss": 2.5}'),
      { kind: "progress", fraction: 0.25, message: "train (loss 2.500)" });
  });

  it("reads time-budget progress", () => {
    assert.deepEqual(parseAdaptLine('{"phase": "training", "elapsed_s": 30, "budget_s": 120}'),
      { kind: "progress", fraction: 0.25, message: "training" });
  });

  it("keeps progress without a known total indeterminate", () => {
    assert.deepEqual(parseAdaptLine('{"message": "collecting files"}'),
      { kind: "progress", fraction: null, message: "collecting files" });
  });

  it("summarises the result with accuracy before and after", () => {
    const e = parseAdaptLine('{"adapter": "/ws/.diffill/adapter", "before": {"exact_match": 0.1}, "after": {"exact_match": 0.25}}');
    assert.deepEqual(e, {
      kind: "result", adapter: "/ws/.diffill/adapter",
      message: "held-out accuracy 10.0% -> 25.0%, saved to /ws/.diffill/adapter",
    });
  });

  it("reads the report of diffill adapt --json", () => {
    const report = {
      before: { line_infill_exact_match: 0.125, cases: 200 }, after: { line_infill_exact_match: 0.2, cases: 200 },
      files: 40, tokens: 90000, adapter: "/ws/.diffill/adapter", minutes: 10, heldout_files: 4, cases: 200, steps: 300, skipped: 0,
    };
    assert.deepEqual(parseAdaptLine(JSON.stringify(report)), {
      kind: "result", adapter: "/ws/.diffill/adapter",
      message: "held-out accuracy 12.5% -> 20.0%, saved to /ws/.diffill/adapter",
    });
  });

  it("ignores lines that are not JSON objects", () => {
    assert.equal(parseAdaptLine("loading model"), undefined);
    assert.equal(parseAdaptLine("{not json"), undefined);
    assert.equal(parseAdaptLine("[1, 2]"), undefined);
  });

  it("clamps fractions into [0, 1]", () => {
    const e = parseAdaptLine('{"step": 120, "total": 100}');
    assert.equal(e?.kind === "progress" ? e.fraction : undefined, 1);
  });
});

describe("parseProgressBar", () => {
  it("takes the last percentage of a tqdm bar", () => {
    assert.equal(parseProgressBar("adapt:  10%|#   | 1/10\radapt:  42%|####  | 42/100"), 0.42);
    assert.equal(parseProgressBar("no bar here 50%"), null);
  });
});

describe("LineBuffer", () => {
  it("joins lines split across chunks", () => {
    const b = new LineBuffer();
    assert.deepEqual(b.push('{"a"'), []);
    assert.deepEqual(b.push(': 1}\n{"b": 2}\r\n{"c"'), ['{"a": 1}', '{"b": 2}']);
    assert.deepEqual(b.flush(), ['{"c"']);
    assert.deepEqual(b.flush(), []);
  });
});

describe("ProgressTracker", () => {
  it("turns absolute fractions into non-negative increments", () => {
    const t = new ProgressTracker();
    assert.equal(t.advance(0.3), 30);
    assert.equal(t.advance(0.2), 0);
    assert.equal(t.advance(0.5), 20);
    assert.equal(t.advance(2), 50);
  });
});
