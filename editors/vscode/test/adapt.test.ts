import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import * as path from "node:path";
import { describe, it } from "node:test";

import { adaptPhase, LineBuffer, parseAdaptLine, parseProgressBar, ProgressTracker } from "../src/adapt";

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
  it("takes the last update of the adapting bar", () => {
    assert.equal(parseProgressBar("adapting:  10%|#   | 1/10\radapting:  42%|####  | 42/100"), 0.42);
    assert.equal(parseProgressBar("no bar here 50%"), null);
  });

  it("ignores other bars", () => {
    assert.equal(parseProgressBar("\rLoading weights: 100%|##########| 56/56"), null);
    assert.equal(parseProgressBar("Loading weights: 100%|###| 56/56\radapting:   3%|  | 18/600"), 0.03);
  });
});

describe("adaptPhase", () => {
  it("names what happens before, during and after training", () => {
    assert.match(adaptPhase(null), /measuring/);
    assert.match(adaptPhase(0.5), /training/);
    assert.match(adaptPhase(1), /after training/);
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

describe("a recorded run of diffill adapt --json --steps 3", () => {
  const fixture = (name: string) => readFileSync(path.join(__dirname, "..", "..", "test", "fixtures", name), "utf8");

  it("moves the bar only with the adapting bar, up to 100%", () => {
    const tracker = new ProgressTracker();
    let total = 0;
    const seen: number[] = [];
    for (const update of fixture("adapt-steps3.stderr").split("\r")) {
      const fraction = parseProgressBar(update);
      if (fraction !== null) {
        seen.push(fraction);
        total += tracker.advance(fraction);
      }
    }
    assert.deepEqual([...new Set(seen)], [0, 0.33, 0.67, 1]);
    assert.equal(total, 100);
  });

  it("reports the held-out accuracy and where the adapter went", () => {
    const events = fixture("adapt-steps3.stdout").split("\n").map(parseAdaptLine).filter((e) => e !== undefined);
    assert.deepEqual(events, [{
      kind: "result", adapter: "/tmp/adapt_out", message: "held-out accuracy 0.0% -> 0.0%, saved to /tmp/adapt_out",
    }]);
  });
});
