// The diffill VS Code extension: starts `diffill serve` and talks LSP to it.
// Inline ghost-text completion comes from vscode-languageclient 10, which registers an
// InlineCompletionItemProvider when the server advertises textDocument/inlineCompletion.
// The logic worth testing lives in settings.ts, status.ts and adapt.ts.

import { spawn } from "node:child_process";
import * as vscode from "vscode";
import {
  DidChangeConfigurationNotification,
  ExecuteCommandRequest,
  LanguageClient,
  type LanguageClientOptions,
  type ServerOptions,
  State,
} from "vscode-languageclient/node";

import { adaptPhase, LineBuffer, parseAdaptLine, parseProgressBar, ProgressTracker } from "./adapt";
import {
  adaptCommand,
  changeAction,
  documentSelector,
  readSettings,
  resolvedServerConfiguration,
  serverCommand,
  type Settings,
} from "./settings";
import { type ClientState, parseStatus, type ServerStatus, statusView } from "./status";

const STATUS_REFRESH_DELAY_MS = 300;
const LOADING_POLL_MS = 2000;

function settings(): Settings {
  const config = vscode.workspace.getConfiguration("diffill");
  return readSettings((key) => config.get(key));
}

function firstWorkspaceFolder(): string | undefined {
  return vscode.workspace.workspaceFolders?.[0]?.uri.fsPath;
}

class Diffill implements vscode.Disposable {
  private client: LanguageClient | undefined;
  private state: ClientState = "stopped";
  private status: ServerStatus | undefined;
  private statusTimer: NodeJS.Timeout | undefined;
  private readonly statusItem: vscode.StatusBarItem;
  private readonly output: vscode.LogOutputChannel;

  constructor() {
    this.output = vscode.window.createOutputChannel("diffill", { log: true });
    this.statusItem = vscode.window.createStatusBarItem("diffill.status", vscode.StatusBarAlignment.Right, 100);
    this.statusItem.name = "diffill";
    this.statusItem.command = "diffill.showStatus";
    this.render();
    this.statusItem.show();
  }

  async start(): Promise<void> {
    const s = settings();
    const folder = firstWorkspaceFolder();
    const cmd = serverCommand(s, folder);
    const serverOptions: ServerOptions = { command: cmd.command, args: cmd.args, options: { cwd: folder } };
    const initialConfiguration = resolvedServerConfiguration(s, folder);
    const clientOptions: LanguageClientOptions = {
      documentSelector: documentSelector(s.server.languages),
      initializationOptions: initialConfiguration,
      outputChannel: this.output,
      middleware: {
        workspace: {
          // The server may pull its section instead of waiting for a push.
          configuration: (params, token, next) => {
            const current = resolvedServerConfiguration(settings(), firstWorkspaceFolder());
            if (params.items.every((item) => item.section === "diffill")) {
              return params.items.map(() => current);
            }
            return next(params, token);
          },
        },
        provideInlineCompletionItems: async (document, position, context, token, next) => {
          const items = await next(document, position, context, token);
          this.refreshStatusSoon();
          return items;
        },
      },
    };
    const client = new LanguageClient("diffill", "diffill", serverOptions, clientOptions);
    client.onDidChangeState((e) => {
      this.state = e.newState === State.Running ? "running" : e.newState === State.Starting ? "starting" : "stopped";
      this.render();
    });
    this.client = client;
    this.state = "starting";
    this.render();
    try {
      await client.start();
      this.state = "running";
      await this.refreshStatus();
    } catch (err) {
      this.state = "failed";
      this.render();
      this.output.error(`could not start ${cmd.command} ${cmd.args.join(" ")}: ${String(err)}`);
      void vscode.window.showErrorMessage(
        `diffill: could not start the language server (${cmd.command}). Set "diffill.server.path" to your diffill executable.`,
        "Open Settings",
      ).then((choice) => {
        if (choice === "Open Settings") void vscode.commands.executeCommand("workbench.action.openSettings", "diffill.server");
      });
    }
  }

  async stop(): Promise<void> {
    const client = this.client;
    this.client = undefined;
    if (client === undefined) return;
    try {
      if (client.isRunning()) await client.stop();
    } finally {
      await client.dispose();
      this.state = "stopped";
      this.status = undefined;
      this.render();
    }
  }

  async restart(): Promise<void> {
    await this.stop();
    await this.start();
  }

  async onConfigurationChanged(e: vscode.ConfigurationChangeEvent): Promise<void> {
    const action = changeAction((key) => e.affectsConfiguration(key));
    if (action === "restart") {
      await this.restart();
    } else if (action === "push" && this.client?.isRunning()) {
      const diffill = resolvedServerConfiguration(settings(), firstWorkspaceFolder());
      await this.client.sendNotification(DidChangeConfigurationNotification.type, { settings: { diffill } });
      await this.refreshStatus();
    }
  }

  private running(): LanguageClient | undefined {
    if (this.client?.isRunning()) return this.client;
    void vscode.window.showWarningMessage("diffill: the language server is not running.", "Restart Server")
      .then((choice) => {
        if (choice === "Restart Server") void this.restart();
      });
    return undefined;
  }

  async infillSelection(): Promise<void> {
    const editor = vscode.window.activeTextEditor;
    if (editor === undefined) return;
    const client = this.running();
    if (client === undefined) return;
    const selector = documentSelector(settings().server.languages);
    if (vscode.languages.match(selector, editor.document) === 0) {
      void vscode.window.showWarningMessage(`diffill: ${editor.document.languageId} is not in "diffill.languages".`);
      return;
    }
    const argument = {
      uri: client.code2ProtocolConverter.asUri(editor.document.uri),
      range: client.code2ProtocolConverter.asRange(editor.selection),
    };
    await vscode.window.withProgress(
      { location: vscode.ProgressLocation.Window, title: "diffill: infilling" },
      async () => {
        try {
          // The server applies the edit itself (workspace/applyEdit).
          await client.sendRequest(ExecuteCommandRequest.type, { command: "diffill.infill", arguments: [argument] });
        } catch (err) {
          void vscode.window.showErrorMessage(`diffill: ${err instanceof Error ? err.message : String(err)}`);
        }
      },
    );
    await this.refreshStatus();
  }

  async trainWorkspaceAdapter(): Promise<void> {
    const folders = vscode.workspace.workspaceFolders ?? [];
    const folder = folders.length > 1
      ? await vscode.window.showWorkspaceFolderPick({ placeHolder: "Train a diffill adapter on which folder?" })
      : folders[0];
    if (folder === undefined) {
      if (folders.length === 0) void vscode.window.showWarningMessage("diffill: open a folder to train a workspace adapter on.");
      return;
    }
    const cmd = adaptCommand(settings(), folder.uri.fsPath);
    this.output.info(`running ${cmd.command} ${cmd.args.join(" ")}`);
    const result = await vscode.window.withProgress(
      { location: vscode.ProgressLocation.Notification, title: `diffill: training an adapter on ${folder.name}`, cancellable: true },
      (progress, token) => this.runAdapt(cmd.command, cmd.args, folder.uri.fsPath, progress, token),
    );
    if (result.ok) {
      const choice = await vscode.window.showInformationMessage(
        `diffill: workspace adapter trained${result.message ? `: ${result.message}` : ""}.`, "Restart Server");
      if (choice === "Restart Server") await this.restart();
    } else if (!result.cancelled) {
      const choice = await vscode.window.showErrorMessage(`diffill adapt failed: ${result.message}`, "Show Output");
      if (choice === "Show Output") this.output.show();
    }
  }

  private runAdapt(
    command: string, args: string[], cwd: string,
    progress: vscode.Progress<{ message?: string; increment?: number }>, token: vscode.CancellationToken,
  ): Promise<{ ok: boolean; cancelled: boolean; message: string }> {
    return new Promise((resolve) => {
      const child = spawn(command, args, { cwd, stdio: ["ignore", "pipe", "pipe"] });
      const tracker = new ProgressTracker();
      const stdout = new LineBuffer();
      let resultMessage = "";
      let lastError = "";
      const onLine = (line: string) => {
        const event = parseAdaptLine(line);
        if (event === undefined) {
          if (line.trim() !== "") this.output.info(line);
        } else if (event.kind === "result") {
          resultMessage = event.message;
        } else {
          const increment = event.fraction === null ? undefined : tracker.advance(event.fraction);
          progress.report({ message: event.message, increment });
        }
      };
      child.stdout.setEncoding("utf8").on("data", (chunk: string) => stdout.push(chunk).forEach(onLine));
      progress.report({ message: adaptPhase(null) });
      child.stderr.setEncoding("utf8").on("data", (chunk: string) => {
        const fraction = parseProgressBar(chunk);
        if (fraction !== null) progress.report({ message: adaptPhase(fraction), increment: tracker.advance(fraction) });
        for (const line of chunk.split(/\r|\n/)) {
          if (line.trim() !== "" && !/\d%\|/.test(line)) {
            lastError = line.trim();
            this.output.warn(lastError);
          }
        }
      });
      const cancel = token.onCancellationRequested(() => child.kill("SIGINT"));
      child.on("error", (err) => {
        cancel.dispose();
        resolve({ ok: false, cancelled: false, message: `could not run ${command}: ${err.message}` });
      });
      child.on("close", (code) => {
        cancel.dispose();
        stdout.flush().forEach(onLine);
        if (token.isCancellationRequested) resolve({ ok: false, cancelled: true, message: "cancelled" });
        else if (code === 0) resolve({ ok: true, cancelled: false, message: resultMessage });
        else resolve({ ok: false, cancelled: false, message: lastError || `exit code ${code}` });
      });
    });
  }

  async showStatus(): Promise<void> {
    await this.refreshStatus();
    const view = statusView(this.state, this.status);
    const choice = await vscode.window.showInformationMessage(view.tooltip, "Restart Server", "Show Output");
    if (choice === "Restart Server") await this.restart();
    if (choice === "Show Output") this.output.show();
  }

  private refreshStatusSoon(delayMs = STATUS_REFRESH_DELAY_MS): void {
    if (this.statusTimer !== undefined) clearTimeout(this.statusTimer);
    this.statusTimer = setTimeout(() => void this.refreshStatus(), delayMs);
  }

  private async refreshStatus(): Promise<void> {
    const client = this.client;
    if (client?.isRunning()) {
      try {
        const answer: unknown = await client.sendRequest(ExecuteCommandRequest.type, { command: "diffill.status", arguments: [] });
        this.status = parseStatus(answer) ?? this.status;
        if (this.status?.loaded === false && this.status.error === null) {
          this.refreshStatusSoon(LOADING_POLL_MS); // show "loaded" as soon as it is
        }
      } catch (err) {
        this.output.warn(`diffill.status failed: ${String(err)}`);
      }
    }
    this.render();
  }

  private render(): void {
    const view = statusView(this.state, this.status);
    this.statusItem.text = view.text;
    this.statusItem.tooltip = view.tooltip;
  }

  dispose(): void {
    if (this.statusTimer !== undefined) clearTimeout(this.statusTimer);
    this.statusItem.dispose();
    this.output.dispose();
  }
}

let diffill: Diffill | undefined;

export async function activate(context: vscode.ExtensionContext): Promise<void> {
  const d = new Diffill();
  diffill = d;
  context.subscriptions.push(
    d,
    vscode.commands.registerCommand("diffill.infillSelection", () => d.infillSelection()),
    vscode.commands.registerCommand("diffill.restartServer", () => d.restart()),
    vscode.commands.registerCommand("diffill.trainWorkspaceAdapter", () => d.trainWorkspaceAdapter()),
    vscode.commands.registerCommand("diffill.showStatus", () => d.showStatus()),
    vscode.workspace.onDidChangeConfiguration((e) => d.onConfigurationChanged(e)),
  );
  await d.start();
}

export async function deactivate(): Promise<void> {
  await diffill?.stop();
  diffill = undefined;
}
