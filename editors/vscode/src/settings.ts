// The extension's settings and what they mean for the language server.
// No `vscode` import here: this module is unit-tested under plain node.

import * as os from "node:os";
import * as path from "node:path";

/** The `diffill` configuration section the server reads (initializationOptions and
 * workspace/didChangeConfiguration). Field names are the server's. */
export interface ServerConfiguration {
  model: string | null;
  adapter: string | null;
  useWorkspaceAdapter: boolean;
  maxTokens: number | null;
  threshold: number;
  beam: number | null;
  constraint: boolean;
  languages: string[] | null;
  minConfidence: number;
}

/** Everything the extension reads from the `diffill.*` settings. */
export interface Settings {
  serverPath: string;
  serverArgs: string[];
  adaptArgs: string[];
  server: ServerConfiguration;
}

export const DEFAULT_SETTINGS: Settings = {
  serverPath: "diffill",
  serverArgs: ["serve"],
  adaptArgs: [],
  server: {
    model: null,
    adapter: null,
    useWorkspaceAdapter: true,
    maxTokens: null,
    threshold: 0.9,
    beam: null,
    constraint: true,
    languages: null,
    minConfidence: 0.4,
  },
};

/** Settings whose change needs a new server process rather than a configuration push. */
export const PROCESS_SETTINGS = ["diffill.server.path", "diffill.server.args"];

/** Reads a value of a `diffill.*` setting by its key below `diffill.` (e.g. "server.path"). */
export type SettingGetter = (key: string) => unknown;

function text(value: unknown): string | null {
  if (typeof value !== "string") return null;
  const trimmed = value.trim();
  return trimmed === "" ? null : trimmed;
}

function strings(value: unknown): string[] | null {
  if (!Array.isArray(value)) return null;
  return value.filter((v): v is string => typeof v === "string");
}

function positiveInt(value: unknown): number | null {
  return typeof value === "number" && Number.isInteger(value) && value > 0 ? value : null;
}

/** The server takes a beam of 0 (threshold decoding) to 16 candidates; null: its default. */
export const MAX_BEAM = 16;

function beamWidth(value: unknown): number | null {
  return typeof value === "number" && Number.isInteger(value) && value >= 0 && value <= MAX_BEAM ? value : null;
}

/** Reads and validates the settings; a missing or ill-typed value falls back to its default. */
export function readSettings(get: SettingGetter): Settings {
  const d = DEFAULT_SETTINGS;
  const threshold = get("threshold");
  const minConfidence = get("minConfidence");
  const languages = strings(get("languages"));
  return {
    serverPath: text(get("server.path")) ?? d.serverPath,
    serverArgs: strings(get("server.args")) ?? d.serverArgs,
    adaptArgs: strings(get("adapt.args")) ?? d.adaptArgs,
    server: {
      model: text(get("model")),
      adapter: text(get("adapter")),
      useWorkspaceAdapter: typeof get("useWorkspaceAdapter") === "boolean"
        ? (get("useWorkspaceAdapter") as boolean) : d.server.useWorkspaceAdapter,
      maxTokens: positiveInt(get("maxTokens")),
      threshold: typeof threshold === "number" && threshold >= 0 && threshold <= 1
        ? threshold : d.server.threshold,
      beam: beamWidth(get("beam")),
      constraint: typeof get("constraint") === "boolean"
        ? (get("constraint") as boolean) : d.server.constraint,
      languages: languages && languages.length > 0 ? languages : null,
      minConfidence: typeof minConfidence === "number" && minConfidence >= 0 && minConfidence <= 1
        ? minConfidence : d.server.minConfidence,
    },
  };
}

/** Expands `~` and `${workspaceFolder}` in a path-like setting. */
export function expandPath(value: string, workspaceFolder: string | undefined): string {
  let out = value;
  if (workspaceFolder !== undefined) out = out.split("${workspaceFolder}").join(workspaceFolder);
  if (out === "~") return os.homedir();
  if (out.startsWith("~/")) return path.join(os.homedir(), out.slice(2));
  return out;
}

/** The server configuration with its paths expanded, as sent to the server. */
export function resolvedServerConfiguration(
  settings: Settings, workspaceFolder: string | undefined,
): ServerConfiguration {
  const s = settings.server;
  const resolve = (p: string | null) =>
    p === null || p === "none" || p === "shipped" ? p : expandPath(p, workspaceFolder);
  return { ...s, model: resolve(s.model), adapter: resolve(s.adapter) };
}

export interface ProcessCommand {
  command: string;
  args: string[];
}

/** The command line that starts the language server over stdio. */
export function serverCommand(settings: Settings, workspaceFolder: string | undefined): ProcessCommand {
  return {
    command: expandPath(settings.serverPath, workspaceFolder),
    args: settings.serverArgs.map((a) => expandPath(a, workspaceFolder)),
  };
}

/** The command line that trains a workspace adapter on `folder`, reporting JSON lines. */
export function adaptCommand(settings: Settings, folder: string): ProcessCommand {
  const args = ["adapt", folder, "--json"];
  const model = resolvedServerConfiguration(settings, folder).model;
  if (model !== null && !settings.adaptArgs.includes("--model")) args.push("--model", model);
  return {
    command: expandPath(settings.serverPath, folder),
    args: [...args, ...settings.adaptArgs.map((a) => expandPath(a, folder))],
  };
}

export interface DocumentFilter {
  scheme: string;
  language?: string;
}

/** The VS Code language ids the server has a grammar for (grammar/registry.py). */
export const SUPPORTED_LANGUAGES = [
  "python", "javascript", "javascriptreact", "typescript", "typescriptreact",
  "go", "rust", "java", "c", "cpp",
];

/** Which documents the client sends to the server: files (and unsaved buffers) in the
 * configured languages, or in every supported language when none are configured. */
export function documentSelector(languages: string[] | null): DocumentFilter[] {
  const schemes = ["file", "untitled"];
  return (languages ?? SUPPORTED_LANGUAGES).flatMap((language) => schemes.map((scheme) => ({ scheme, language })));
}

/** What a configuration change calls for: nothing, a push of the new configuration to the
 * running server, or a restart (the process command or the document selector changed). */
export function changeAction(affects: (key: string) => boolean): "none" | "push" | "restart" {
  if (PROCESS_SETTINGS.some(affects) || affects("diffill.languages")) return "restart";
  return affects("diffill") ? "push" : "none";
}
