// The status bar text, from the server's `diffill.status` answer.
// No `vscode` import here: this module is unit-tested under plain node.

/** What `workspace/executeCommand diffill.status` returns. */
export interface ServerStatus {
  model: string | null;
  adapter: string | null;
  latencies_ms: number[];
  p50_ms: number | null;
  loaded: boolean | null; // null: the server did not say
  error: string | null; // why the model could not be loaded
}

export type ClientState = "starting" | "running" | "stopped" | "failed";

export interface StatusView {
  text: string;
  tooltip: string;
}

/** Accepts only a well-formed status object; anything else is `undefined`. */
export function parseStatus(value: unknown): ServerStatus | undefined {
  if (typeof value !== "object" || value === null) return undefined;
  const v = value as Record<string, unknown>;
  const name = (x: unknown) => (typeof x === "string" && x !== "" ? x : null);
  const latencies = Array.isArray(v.latencies_ms)
    ? v.latencies_ms.filter((x): x is number => typeof x === "number" && Number.isFinite(x))
    : [];
  const p50 = typeof v.p50_ms === "number" && Number.isFinite(v.p50_ms) ? v.p50_ms : null;
  return {
    model: name(v.model), adapter: name(v.adapter), latencies_ms: latencies, p50_ms: p50,
    loaded: typeof v.loaded === "boolean" ? v.loaded : null, error: name(v.error),
  };
}

/** The last path component of a model or adapter folder ("/a/b/diffill-base/" -> "diffill-base"). */
export function shortName(location: string): string {
  const parts = location.split(/[\\/]+/).filter((p) => p !== "");
  return parts.length > 0 ? parts[parts.length - 1] : location;
}

export function formatLatency(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  return `${(ms / 1000).toFixed(1)} s`;
}

/** The status bar item: model, adapter and the last request's latency. */
export function statusView(state: ClientState, status: ServerStatus | undefined): StatusView {
  if (state === "starting") return { text: "$(sync~spin) diffill", tooltip: "diffill: starting the language server" };
  if (state === "failed") return { text: "$(error) diffill", tooltip: "diffill: the language server failed; see the output channel, then run diffill: Restart Server" };
  if (state === "stopped") return { text: "$(circle-slash) diffill", tooltip: "diffill: the language server is stopped" };
  if (status === undefined) return { text: "$(sparkle) diffill", tooltip: "diffill: running" };
  if (status.error !== null) {
    return { text: "$(warning) diffill", tooltip: `diffill: the model could not be loaded: ${status.error}` };
  }
  if (status.loaded === false) {
    return { text: "$(sync~spin) diffill", tooltip: `diffill: loading ${status.model ?? "the shipped model"}` };
  }
  const model = status.model === null ? "default model" : shortName(status.model);
  const adapter = status.adapter === null ? null : shortName(status.adapter);
  const last = status.latencies_ms.length > 0 ? status.latencies_ms[status.latencies_ms.length - 1] : null;
  let text = `$(sparkle) ${model}`;
  if (adapter !== null) text += ` + ${adapter}`;
  if (last !== null) text += ` · ${formatLatency(last)}`;
  const lines = [
    `diffill model: ${status.model ?? "(shipped default)"}`,
    `adapter: ${status.adapter ?? "none"}`,
  ];
  if (last !== null) lines.push(`last request: ${formatLatency(last)}`);
  if (status.p50_ms !== null) {
    lines.push(`median of ${status.latencies_ms.length} recent: ${formatLatency(status.p50_ms)}`);
  }
  return { text, tooltip: lines.join("\n") };
}
