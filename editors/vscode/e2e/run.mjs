// End-to-end run of the packaged extension in a real VS Code (code-server) driven by headless
// Chromium: ghost text at a cursor, Tab accepts it, "diffill: Infill Selection" rewrites a
// selection, and the status bar item names the model. Prints what it saw as one JSON object on
// stdout; a step that cannot finish throws with the relevant log tail.
//
//   node run.mjs --vsix diffill.vsix --server .venv/bin/diffill [--server-arg ARG ...]
//                [--screenshot ghost.png] [--keep]

import { spawn, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

import { chromium } from "playwright-core";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const CODE_SERVER = path.join(HERE, "node_modules", "code-server", "out", "node", "entry.js");
const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
// Generous: two shared cores run code-server, Chromium and the model at once.
const SERVER_START_MS = 120_000;
const WORKBENCH_MS = 120_000;
const ACTIVATION_MS = 90_000;
const MODEL_LOAD_MS = 240_000;
const GHOST_MS = 120_000;
const INFILL_MS = 180_000;
const UI_MS = 30_000;

// The workspace: the cursor goes to the empty last line; the infill rewrites TODO.
const SAMPLE = `import math


def mean(values):
    return sum(values) / len(values)


def variance(values):
    m = mean(values)
    return TODO


def stdev(values):
`;
const TYPED = "    return math.sqrt(";
const PLACEHOLDER = "TODO";

const log = (msg) => process.stderr.write(`[e2e ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);

class StepError extends Error {}

function tail(text, lines = 40) {
  return text.split("\n").slice(-lines).join("\n");
}

function readTail(file, lines = 40) {
  try {
    return tail(fs.readFileSync(file, "utf8"), lines);
  } catch {
    return "(no log)";
  }
}

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}

/** Polls `probe` until it returns a value other than undefined; throws `why()` after `ms`. */
async function until(probe, ms, why) {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new StepError(await why());
    await sleep(250);
  }
}

function userSettings(serverPath, serverArgs) {
  return {
    "diffill.server.path": serverPath,
    "diffill.server.args": serverArgs,
    // every fill shown: the test checks the editor's side, and the small model's fill here is less
    // likely to be right than the default threshold asks
    "diffill.minConfidence": 0,
    "security.workspace.trust.enabled": false,
    "workbench.startupEditor": "none",
    "workbench.tips.enabled": false,
    "workbench.welcomePage.walkthroughs.openOnInstall": false,
    "telemetry.telemetryLevel": "off",
    "update.mode": "none",
    "extensions.autoCheckUpdates": false,
    "extensions.autoUpdate": false,
    "extensions.ignoreRecommendations": true,
    // Only diffill's inline suggestions: no brackets closed behind the cursor, no suggest widget.
    "editor.autoClosingBrackets": "never",
    "editor.autoClosingQuotes": "never",
    "editor.quickSuggestions": { other: false, comments: false, strings: false },
    "editor.suggestOnTriggerCharacters": false,
    "editor.wordBasedSuggestions": "off",
    "editor.parameterHints.enabled": false,
    "editor.inlineSuggest.enabled": true,
    "editor.minimap.enabled": false,
    "editor.fontSize": 16,
    "files.autoSave": "afterDelay",
    "files.autoSaveDelay": 200,
  };
}

/** code-server's extension host log and diffill's output channel, for failure messages. */
function extensionLogs(userData) {
  const found = [];
  const walk = (dir) => {
    for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, entry.name);
      if (entry.isDirectory()) walk(p);
      else if (/diffill|exthost\.log$|remoteexthost\.log$/i.test(entry.name)) found.push(p);
    }
  };
  try {
    walk(path.join(userData, "logs"));
  } catch {
    return "(no extension logs)";
  }
  return found.map((f) => `--- ${path.basename(f)}\n${readTail(f, 25)}`).join("\n") || "(no extension logs)";
}

async function main() {
  const { values: opts } = parseArgs({
    options: {
      vsix: { type: "string" },
      server: { type: "string" },
      "server-arg": { type: "string", multiple: true },
      screenshot: { type: "string" },
      keep: { type: "boolean", default: false },
    },
  });
  if (!opts.vsix || !opts.server) throw new StepError("usage: run.mjs --vsix FILE --server DIFFILL [--server-arg A ...] [--screenshot PNG]");
  if (!fs.existsSync(CODE_SERVER)) throw new StepError(`code-server is not installed (${CODE_SERVER}): run install.sh`);
  if (!fs.existsSync(CHROMIUM)) throw new StepError(`no Chromium at ${CHROMIUM} (Debian: apt-get install -y chromium)`);

  const root = fs.mkdtempSync(path.join(os.tmpdir(), "diffill-vscode-e2e-"));
  const dirs = {
    userData: path.join(root, "user-data"),
    extensions: path.join(root, "extensions"),
    profile: path.join(root, "chromium"),
    workspace: path.join(root, "workspace"),
  };
  for (const d of Object.values(dirs)) fs.mkdirSync(d, { recursive: true });
  const config = path.join(root, "config.yaml");
  fs.writeFileSync(config, "auth: none\ncert: false\n");
  const sample = path.join(dirs.workspace, "stats.py");
  fs.writeFileSync(sample, SAMPLE);
  fs.mkdirSync(path.join(dirs.userData, "User"), { recursive: true });
  const serverArgs = opts["server-arg"] ?? ["serve"];
  fs.writeFileSync(path.join(dirs.userData, "User", "settings.json"),
    JSON.stringify(userSettings(path.resolve(opts.server), serverArgs), null, 2));
  const base = ["--config", config, "--user-data-dir", dirs.userData, "--extensions-dir", dirs.extensions];

  let codeServer;
  let context;
  const csLog = path.join(root, "code-server.log");
  try {
    log(`installing ${opts.vsix}`);
    const inst = spawnSync(process.execPath, [CODE_SERVER, ...base, "--install-extension", path.resolve(opts.vsix)],
      { encoding: "utf8", timeout: SERVER_START_MS });
    const installed = fs.readdirSync(dirs.extensions).some((n) => n.startsWith("diffill.diffill-"));
    if (inst.status !== 0 || !installed) {
      throw new StepError(`code-server --install-extension failed (exit ${inst.status}):\n${tail(`${inst.stdout}\n${inst.stderr}`)}`);
    }

    const port = await freePort();
    log(`starting code-server on 127.0.0.1:${port}`);
    const out = fs.openSync(csLog, "w");
    codeServer = spawn(process.execPath, [CODE_SERVER, ...base, "--bind-addr", `127.0.0.1:${port}`, "--auth", "none",
      "--disable-telemetry", "--disable-update-check", "--disable-workspace-trust", "--disable-getting-started-override"],
    { stdio: ["ignore", out, out], detached: true }); // its own process group: stopped with its children
    let exited = null;
    codeServer.on("exit", (code, signal) => { exited = signal ?? `exit code ${code}`; });
    await until(
      () => (exited !== null || /HTTP server listening on/.test(readTail(csLog, 200)) ? true : undefined),
      SERVER_START_MS, () => `code-server did not start in ${SERVER_START_MS / 1000} s:\n${readTail(csLog)}`);
    if (exited !== null) throw new StepError(`code-server stopped (${exited}):\n${readTail(csLog)}`);

    log("starting Chromium");
    try {
      context = await chromium.launchPersistentContext(dirs.profile, {
        executablePath: CHROMIUM,
        headless: true,
        viewport: { width: 1280, height: 800 },
        timeout: 90_000,
        args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
          "--disable-component-update", "--disable-sync"],
      });
    } catch (err) {
      throw new StepError(`Chromium (${CHROMIUM}) did not start: ${err.message}`);
    }
    const page = context.pages()[0] ?? await context.newPage();
    const pageErrors = [];
    page.on("pageerror", (e) => pageErrors.push(String(e)));
    const diag = () => `code-server log:\n${readTail(csLog, 15)}\nextension logs:\n${extensionLogs(dirs.userData)}` +
      (pageErrors.length ? `\npage errors:\n${pageErrors.slice(-5).join("\n")}` : "");
    const fail = (what) => async () => `${what}\n${diag()}`;

    log("opening the workspace");
    await page.goto(`http://127.0.0.1:${port}/?folder=${encodeURIComponent(dirs.workspace)}`, { timeout: WORKBENCH_MS });
    await page.locator(".monaco-workbench .part.editor").waitFor({ timeout: WORKBENCH_MS })
      .catch(async () => { throw new StepError(await fail("the workbench did not load")()); });

    log("opening stats.py from the explorer");
    const row = page.locator(".explorer-folders-view .monaco-list-row", { hasText: "stats.py" }).first();
    await row.waitFor({ timeout: WORKBENCH_MS })
      .catch(async () => { throw new StepError(await fail("the explorer did not list stats.py")()); });
    await row.dblclick();
    await page.locator(".tabs-container .tab.active", { hasText: "stats.py" }).waitFor({ timeout: UI_MS })
      .catch(async () => { throw new StepError(await fail("stats.py did not open in an editor")()); });

    // The item exists once the extension is active; "starting" / "loading" spin until the model is in.
    log("waiting for the diffill status bar item to show the loaded model");
    const item = page.locator('.statusbar-item[id$="diffill.status"]'); // id: extension id + item id
    const itemText = async () => ((await item.innerText({ timeout: 1_000 }).catch(() => "")) || "").replace(/\s+/g, " ").trim();
    const itemIcon = async () => (await item.locator(".codicon").first().getAttribute("class", { timeout: 1_000 }).catch(() => "")) ?? "";
    await item.waitFor({ timeout: ACTIVATION_MS }).catch(async () => {
      throw new StepError(`no diffill status bar item: the extension is not installed or did not activate\n${diag()}`);
    });
    await until(async () => {
      const icon = await itemIcon();
      if (/codicon-(error|warning|circle-slash)\b/.test(icon)) {
        throw new StepError(`the diffill status bar item reports a failed server (${icon}, "${await itemText()}")\n${diag()}`);
      }
      const text = await itemText();
      return /codicon-sparkle\b/.test(icon) && text !== "" && text !== "diffill" ? text : undefined;
    }, MODEL_LOAD_MS, async () =>
      `the diffill server did not report a loaded model (status bar: "${await itemText()}", ${await itemIcon()})\n${diag()}`);
    const statusLoaded = await itemText();

    log("typing at the end of the file");
    const editor = page.locator(".monaco-editor[data-uri$='stats.py'] textarea, .editor-instance .monaco-editor textarea").first();
    await editor.focus();
    await page.keyboard.press("Control+End");
    await page.keyboard.type(TYPED, { delay: 20 });
    const ghost = page.locator(".monaco-editor .ghost-text-decoration, .monaco-editor .ghost-text-decoration-preview");
    let triggered = false;
    const typedAt = Date.now();
    const ghostText = await until(async () => {
      const parts = await ghost.allTextContents();
      const text = parts.join("").replace(/\u00a0/g, " ");
      if (text.trim() !== "") return text;
      if (!triggered && Date.now() - typedAt > 20_000) {
        triggered = true; // ask explicitly once, as Alt+\ would
        await page.keyboard.press("Alt+Backslash");
      }
      return undefined;
    }, GHOST_MS, fail(`no ghost text appeared after typing "${TYPED}" (status bar: "${await itemText()}")`));
    log(`ghost text: ${JSON.stringify(ghostText)}`);
    await sleep(300); // let the frame settle before the picture
    if (opts.screenshot) {
      fs.mkdirSync(path.dirname(path.resolve(opts.screenshot)), { recursive: true });
      await page.screenshot({ path: opts.screenshot });
    }

    const typedFile = await until(() => {
      const text = fs.readFileSync(sample, "utf8");
      return text.includes(TYPED) ? text : undefined;
    }, UI_MS, fail("the typed text never reached the file (auto save)"));
    await page.keyboard.press("Tab");
    const accepted = await until(() => {
      const text = fs.readFileSync(sample, "utf8");
      return text !== typedFile ? text : undefined;
    }, UI_MS, fail("Tab did not change the document"));
    await until(async () => ((await ghost.count()) === 0 ? true : undefined), UI_MS, fail("the ghost text stayed after Tab"));

    log(`selecting ${PLACEHOLDER} and running "diffill: Infill Selection"`);
    await page.keyboard.press("Escape");
    await page.keyboard.press("Control+F");
    const find = page.locator(".find-widget textarea, .find-widget input").first();
    await find.waitFor({ timeout: UI_MS });
    await find.fill(PLACEHOLDER);
    await page.keyboard.press("Enter");
    await page.keyboard.press("Escape");
    const selected = page.locator(".monaco-editor .selected-text");
    await selected.first().waitFor({ timeout: UI_MS })
      .catch(async () => { throw new StepError(await fail(`${PLACEHOLDER} could not be selected`)()); });
    await page.keyboard.press("F1");
    const palette = page.locator(".quick-input-widget input");
    await palette.waitFor({ timeout: UI_MS });
    await palette.fill(">diffill: Infill Selection");
    await page.locator(".quick-input-widget .monaco-list-row", { hasText: "Infill Selection" }).first()
      .waitFor({ timeout: UI_MS })
      .catch(async () => { throw new StepError(await fail('the command palette has no "diffill: Infill Selection"')()); });
    await page.keyboard.press("Enter");
    const infilled = await until(() => {
      const text = fs.readFileSync(sample, "utf8");
      return text !== accepted ? text : undefined;
    }, INFILL_MS, async () => {
      const toasts = (await page.locator(".notifications-toasts .notification-list-item-message").allInnerTexts()).join(" | ");
      return `the selection was not rewritten (notifications: ${toasts || "none"})\n${diag()}`;
    });

    // The status bar shows the last request's latency once the status is refreshed.
    const statusAfter = await until(async () => {
      const text = await itemText();
      return /·/.test(text) ? text : undefined;
    }, UI_MS, fail("the status bar item never showed a latency"));

    const result = {
      original: SAMPLE, typed: TYPED, placeholder: PLACEHOLDER, ghost: ghostText,
      after_typing: typedFile, after_accept: accepted, after_infill: infilled,
      status_loaded: statusLoaded, status_after: statusAfter,
    };
    process.stdout.write(`${JSON.stringify(result)}\n`);
  } finally {
    await context?.close().catch(() => {});
    if (codeServer?.exitCode === null) {
      const gone = new Promise((r) => codeServer.once("exit", r));
      process.kill(-codeServer.pid, "SIGTERM");
      await Promise.race([gone, sleep(5_000)]);
      if (codeServer.exitCode === null) process.kill(-codeServer.pid, "SIGKILL");
    }
    if (opts.keep) log(`kept ${root}`);
    else fs.rmSync(root, { recursive: true, force: true, maxRetries: 3 });
  }
}

main().then(
  () => process.exit(0),
  (err) => {
    process.stderr.write(`\nFAILED: ${err instanceof StepError ? err.message : err.stack}\n`);
    process.exit(1);
  },
);
