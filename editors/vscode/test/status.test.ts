import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { formatLatency, parseStatus, shortName, statusView } from "../src/status";

describe("parseStatus", () => {
  it("reads the server's answer", () => {
    assert.deepEqual(
      parseStatus({ model: "/m/diffill-base", adapter: null, latencies_ms: [10, 20.5], p50_ms: 15, loaded: true, error: null, counters: {} }),
      { model: "/m/diffill-base", adapter: null, latencies_ms: [10, 20.5], p50_ms: 15, loaded: true, error: null },
    );
  });

  it("drops malformed fields and rejects non-objects", () => {
    assert.equal(parseStatus(null), undefined);
    assert.equal(parseStatus("ok"), undefined);
    assert.deepEqual(parseStatus({ model: 3, latencies_ms: [1, "x", Number.NaN] }),
      { model: null, adapter: null, latencies_ms: [1], p50_ms: null, loaded: null, error: null });
  });
});

describe("statusView", () => {
  it("shows model, adapter and the last latency", () => {
    const view = statusView("running", {
      model: "/home/u/models/diffill-base/", adapter: "/ws/.diffill/adapter", latencies_ms: [120, 48.6], p50_ms: 84,
      loaded: true, error: null,
    });
    assert.equal(view.text, "$(sparkle) diffill-base + adapter · 49 ms");
    assert.match(view.tooltip, /last request: 49 ms/);
    assert.match(view.tooltip, /median of 2 recent: 84 ms/);
  });

  it("says so when no request has been made and no adapter is loaded", () => {
    const view = statusView("running", { model: null, adapter: null, latencies_ms: [], p50_ms: null, loaded: null, error: null });
    assert.equal(view.text, "$(sparkle) default model");
    assert.match(view.tooltip, /adapter: none/);
  });

  it("warns when the model could not be loaded, and says when it is loading", () => {
    const failed = statusView("running", { model: "/m", adapter: null, latencies_ms: [], p50_ms: null, loaded: false, error: "no such folder" });
    assert.equal(failed.text, "$(warning) diffill");
    assert.match(failed.tooltip, /no such folder/);
    const loading = statusView("running", { model: "/m", adapter: null, latencies_ms: [], p50_ms: null, loaded: false, error: null });
    assert.match(loading.text, /sync~spin/);
    assert.match(loading.tooltip, /loading \/m/);
  });

  it("reflects the client state before any status arrives", () => {
    assert.match(statusView("starting", undefined).text, /sync~spin/);
    assert.match(statusView("failed", undefined).text, /error/);
    assert.match(statusView("failed", undefined).tooltip, /Restart Server/);
  });
});

describe("formatting", () => {
  it("shortens locations to their last component", () => {
    assert.equal(shortName("C:\\models\\diffill-base"), "diffill-base");
    assert.equal(shortName("diffill-base"), "diffill-base");
  });

  it("switches to seconds above one second", () => {
    assert.equal(formatLatency(999.4), "999 ms");
    assert.equal(formatLatency(1530), "1.5 s");
  });
});
