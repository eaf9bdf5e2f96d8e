import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { describe, it } from "node:test";

import {
  adaptCommand,
  changeAction,
  DEFAULT_SETTINGS,
  documentSelector,
  expandPath,
  readSettings,
  resolvedServerConfiguration,
  serverCommand,
  SUPPORTED_LANGUAGES,
} from "../src/settings";

const from = (values: Record<string, unknown>) => (key: string) => values[key];

describe("readSettings", () => {
  it("gives the defaults when nothing is set", () => {
    assert.deepEqual(readSettings(from({})), DEFAULT_SETTINGS);
  });

  it("maps every server setting to the server's field", () => {
    const s = readSettings(from({
      model: "/m", adapter: "none", useWorkspaceAdapter: false, maxTokens: 32,
      threshold: 0.5, beam: 2, constraint: false, languages: ["python", "rust"], minConfidence: 0,
    }));
    assert.deepEqual(s.server, {
      model: "/m", adapter: "none", useWorkspaceAdapter: false, maxTokens: 32,
      threshold: 0.5, beam: 2, constraint: false, languages: ["python", "rust"], minConfidence: 0,
    });
  });

  it("falls back to defaults for ill-typed or out-of-range values", () => {
    const s = readSettings(from({
      "server.path": "  ", "server.args": "serve", model: "", maxTokens: 0,
      threshold: 1.5, constraint: "yes", languages: [], minConfidence: 2,
    }));
    assert.equal(s.serverPath, "diffill");
    assert.deepEqual(s.serverArgs, ["serve"]);
    assert.equal(s.server.model, null);
    assert.equal(s.server.maxTokens, null);
    assert.equal(s.server.threshold, 0.9);
    assert.equal(s.server.constraint, true);
    assert.equal(s.server.languages, null);
    assert.equal(s.server.minConfidence, 0.4);
  });

  it("rejects a fractional token budget", () => {
    assert.equal(readSettings(from({ maxTokens: 2.5 })).server.maxTokens, null);
  });

  it("takes a beam from 0 (threshold decoding) to 16, else leaves it to the server", () => {
    assert.equal(readSettings(from({ beam: 0 })).server.beam, 0);
    for (const bad of [-1, 17, 2.5, "4"]) assert.equal(readSettings(from({ beam: bad })).server.beam, null);
  });
});

describe("paths and command lines", () => {
  it("expands ~ and ${workspaceFolder}", () => {
    assert.equal(expandPath("~/m", undefined), path.join(os.homedir(), "m"));
    assert.equal(expandPath("${workspaceFolder}/.venv/bin/diffill", "/ws"), "/ws/.venv/bin/diffill");
    assert.equal(expandPath("${workspaceFolder}/x", undefined), "${workspaceFolder}/x");
  });

  it("starts the configured executable with its arguments", () => {
    const s = readSettings(from({ "server.path": "${workspaceFolder}/.venv/bin/diffill", "server.args": ["serve", "--log", "debug"] }));
    assert.deepEqual(serverCommand(s, "/ws"), { command: "/ws/.venv/bin/diffill", args: ["serve", "--log", "debug"] });
  });

  it("resolves model and adapter paths but keeps 'none', 'shipped' and null", () => {
    const s = readSettings(from({ model: "${workspaceFolder}/ckpt", adapter: "none" }));
    const c = resolvedServerConfiguration(s, "/ws");
    assert.equal(c.model, "/ws/ckpt");
    assert.equal(c.adapter, "none");
    assert.equal(resolvedServerConfiguration(DEFAULT_SETTINGS, "/ws").model, null);
    assert.equal(resolvedServerConfiguration(readSettings(from({ adapter: "shipped" })), "/ws").adapter, "shipped");
  });

  it("trains the adapter on the folder with JSON progress and the extra arguments", () => {
    const s = readSettings(from({ "adapt.args": ["--minutes", "5"] }));
    assert.deepEqual(adaptCommand(s, "/ws"), { command: "diffill", args: ["adapt", "/ws", "--json", "--minutes", "5"] });
  });

  it("trains the adapter for the configured model", () => {
    const s = readSettings(from({ model: "/models/big" }));
    assert.deepEqual(adaptCommand(s, "/ws").args, ["adapt", "/ws", "--json", "--model", "/models/big"]);
  });
});

describe("documentSelector", () => {
  it("covers files and unsaved buffers of every supported language when none are configured", () => {
    const selector = documentSelector(null);
    assert.equal(selector.length, 2 * SUPPORTED_LANGUAGES.length);
    assert.deepEqual(selector.slice(0, 2), [{ scheme: "file", language: "python" }, { scheme: "untitled", language: "python" }]);
  });

  it("activates the extension for exactly the supported languages", () => {
    const manifest = JSON.parse(readFileSync(path.join(__dirname, "..", "..", "package.json"), "utf8"));
    assert.deepEqual(manifest.activationEvents, SUPPORTED_LANGUAGES.map((l) => `onLanguage:${l}`));
  });

  it("limits to the configured languages", () => {
    assert.deepEqual(documentSelector(["python"]), [
      { scheme: "file", language: "python" }, { scheme: "untitled", language: "python" },
    ]);
  });
});

describe("changeAction", () => {
  const affecting = (...keys: string[]) => (key: string) =>
    keys.some((k) => k === key || k.startsWith(`${key}.`));

  it("restarts when the server command or the languages change", () => {
    assert.equal(changeAction(affecting("diffill.server.path")), "restart");
    assert.equal(changeAction(affecting("diffill.server.args")), "restart");
    assert.equal(changeAction(affecting("diffill.languages")), "restart");
  });

  it("pushes other diffill settings to the running server", () => {
    assert.equal(changeAction(affecting("diffill.threshold")), "push");
    assert.equal(changeAction(affecting("diffill.model")), "push");
  });

  it("ignores other extensions' settings", () => {
    assert.equal(changeAction(affecting("editor.fontSize")), "none");
  });
});
