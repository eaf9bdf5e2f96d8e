// Reading the output of `diffill adapt DIR --json` for the progress notification.
// No `vscode` import here: this module is unit-tested under plain node.

/** One thing `diffill adapt` said: how far it is, or what it produced. */
export type AdaptEvent =
  | { kind: "progress"; fraction: number | null; message: string }
  | { kind: "result"; message: string; adapter: string | null };

function num(v: unknown): number | null {
  return typeof v === "number" && Number.isFinite(v) ? v : null;
}

function firstNumber(o: Record<string, unknown>, keys: string[]): number | null {
  for (const k of keys) {
    const v = num(o[k]);
    if (v !== null) return v;
  }
  return null;
}

function firstString(o: Record<string, unknown>, keys: string[]): string | null {
  for (const k of keys) {
    const v = o[k];
    if (typeof v === "string" && v !== "") return v;
  }
  return null;
}

/** An accuracy as a number in [0, 1], from a bare number or an object of metrics. */
function accuracy(v: unknown): number | null {
  const direct = num(v);
  if (direct !== null) return direct;
  if (typeof v !== "object" || v === null) return null;
  return firstNumber(v as Record<string, unknown>, ["line_infill_exact_match", "exact_match", "accuracy"]);
}

function percent(x: number): string {
  return `${(x * 100).toFixed(1)}%`;
}

function clamp01(x: number): number {
  return Math.min(1, Math.max(0, x));
}

/** Interprets one line of stdout. Lines that are not JSON objects give `undefined`. */
export function parseAdaptLine(line: string): AdaptEvent | undefined {
  const trimmed = line.trim();
  if (!trimmed.startsWith("{")) return undefined;
  let o: Record<string, unknown>;
  try {
    const parsed: unknown = JSON.parse(trimmed);
    if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) return undefined;
    o = parsed as Record<string, unknown>;
  } catch {
    return undefined;
  }
  const before = accuracy(o.before);
  const after = accuracy(o.after);
  if (before !== null || after !== null) {
    const adapter = firstString(o, ["adapter", "output", "path"]);
    const parts = [before !== null && after !== null
      ? `held-out accuracy ${percent(before)} -> ${percent(after)}`
      : `held-out accuracy ${percent((after ?? before) as number)}`];
    if (adapter !== null) parts.push(`saved to ${adapter}`);
    return { kind: "result", message: parts.join(", "), adapter };
  }
  let fraction = num(o.progress) ?? num(o.fraction);
  if (fraction === null) {
    const done = firstNumber(o, ["step", "steps_done", "done"]);
    const total = firstNumber(o, ["total", "total_steps", "max_steps", "steps"]);
    if (done !== null && total !== null && total > 0) fraction = done / total;
    else {
      const elapsed = firstNumber(o, ["elapsed_s", "elapsed"]);
      const budget = firstNumber(o, ["budget_s", "time_budget_s"]);
      if (elapsed !== null && budget !== null && budget > 0) fraction = elapsed / budget;
    }
  }
  const phase = firstString(o, ["message", "phase", "stage", "event"]) ?? "training";
  const loss = num(o.loss);
  const message = loss === null ? phase : `${phase} (loss ${loss.toFixed(3)})`;
  return { kind: "progress", fraction: fraction === null ? null : clamp01(fraction), message };
}

/** The fraction done of the tqdm bar named `label` on stderr ("adapting:  42%|####  | 42/100"),
 * from its last update in `text`; other bars (such as loading weights) are ignored. */
export function parseProgressBar(text: string, label = "adapting"): number | null {
  const escaped = label.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  const matches = [...text.matchAll(new RegExp(`${escaped}:\\s*(\\d{1,3})%\\|`, "g"))];
  if (matches.length === 0) return null;
  return clamp01(Number(matches[matches.length - 1][1]) / 100);
}

/** Splits a stream into complete lines, keeping the unfinished tail for the next chunk. */
export class LineBuffer {
  private tail = "";

  push(chunk: string): string[] {
    const text = this.tail + chunk;
    const lines = text.split(/\r?\n/);
    this.tail = lines.pop() ?? "";
    return lines;
  }

  flush(): string[] {
    const rest = this.tail;
    this.tail = "";
    return rest === "" ? [] : [rest];
  }
}

/** What `diffill adapt` is doing, for the notification's message. */
export function adaptPhase(fraction: number | null): string {
  if (fraction === null) return "loading the model, measuring held-out accuracy";
  if (fraction < 1) return "training the adapter";
  return "measuring held-out accuracy after training";
}

/** Tracks overall progress as the increments a VS Code progress notification expects. */
export class ProgressTracker {
  private reported = 0;

  /** The increment (in percent) that brings the bar to `fraction`; never negative. */
  advance(fraction: number): number {
    const target = Math.round(clamp01(fraction) * 100);
    const increment = Math.max(0, target - this.reported);
    this.reported += increment;
    return increment;
  }
}
