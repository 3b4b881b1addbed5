/**
 * SWE-bench's prebuilt instance images (`--images swebench[=REGISTRY/NAMESPACE]`): pulled by the
 * harness's naming scheme instead of built, with an image spec for the harness's layout.
 *
 * Facts from the harness (SWE-bench v4.1 / v5, swebench/harness/test_spec; see
 * docs/swe-bench.md): an instance image is named
 * `{namespace}/sweb.eval.{arch}.{instance_id with "__" written "_1776_"}:{tag}` (namespace
 * `swebench` on Docker Hub by default, tag `latest`); the repository is at /testbed, its
 * dependencies in the conda environment `testbed` under /opt/miniconda3, which the harness's
 * eval script activates (`source /opt/miniconda3/bin/activate`, `conda activate testbed`) before
 * the test command, because a non-interactive `bash -c` does not read root's .bashrc.
 *
 * forager adds one thin local layer on top of a pulled image (no network, seconds): a file that
 * activates the environment, read by every non-interactive bash through BASH_ENV, so the agent's
 * tools see the repository's Python as the harness's eval script does. The evaluation driver runs
 * `python3` directly (not through bash) and so keeps the image's system Python.
 */
import { createHash } from "node:crypto";
import path from "node:path";
import { z } from "zod";
import { EnvironmentError } from "../lib/errors";
import { silentLogger, type Logger } from "../lib/log";
import { consumeJsonStream, docker, inspectImage } from "./docker";
import { engineBuild, runStep } from "./engine-build";
import { ImageSpecSchema, type ImageSpec, type LogParserName } from "./spec";
import { defaultStateDir } from "./state";

/** Where prebuilt instance images come from; all fields have the harness's defaults. */
export const PrebuiltSettingsSchema = z.object({
  /** Registry host[:port]; absent: the engine's default (Docker Hub). */
  registry: z.string().min(1).optional(),
  /** Namespace (user or organisation, may contain `/`). */
  namespace: z.string().min(1).default("swebench"),
  /** Image tag. */
  tag: z.string().min(1).default("latest"),
  /** `x86_64` or `arm64` (the harness's arch names). */
  arch: z.enum(["x86_64", "arm64"]).default("x86_64"),
  /** Pull attempts before giving up (falls back to building). */
  attempts: z.number().int().positive().default(3),
  /** Seconds one pull attempt may take before it is aborted. */
  pullTimeoutSeconds: z.number().positive().default(1800),
});
export type PrebuiltSettings = z.infer<typeof PrebuiltSettingsSchema>;

/**
 * Parse `--images` (or FORAGER_IMAGES): `swebench` (Docker Hub's `swebench` namespace) or
 * `swebench=REGISTRY/NAMESPACE` (e.g. `swebench=127.0.0.1:5000/swebench`); a value with no `/`
 * after `=` is a namespace on the default registry. FORAGER_SWEBENCH_TAG and
 * FORAGER_SWEBENCH_ARCH set tag and arch. `build` (or "") means no prebuilt images.
 * @throws Error for any other value.
 */
export function parseImagesOption(value: string | undefined, env: NodeJS.ProcessEnv = process.env): PrebuiltSettings | undefined {
  const v = (value ?? env.FORAGER_IMAGES ?? "").trim();
  if (v === "" || v === "build") return undefined;
  const m = /^swebench(?:=(.+))?$/.exec(v);
  if (!m) throw new Error(`--images: expected "swebench" or "swebench=REGISTRY/NAMESPACE", got ${JSON.stringify(v)}`);
  const where = m[1]?.replace(/\/+$/, "");
  let registry: string | undefined;
  let namespace: string | undefined;
  if (where) {
    const slash = where.indexOf("/");
    if (slash < 0) namespace = where;
    else {
      registry = where.slice(0, slash);
      namespace = where.slice(slash + 1);
    }
  }
  return PrebuiltSettingsSchema.parse({
    ...(registry ? { registry } : {}),
    ...(namespace ? { namespace } : {}),
    ...(env.FORAGER_SWEBENCH_TAG ? { tag: env.FORAGER_SWEBENCH_TAG } : {}),
    ...(env.FORAGER_SWEBENCH_ARCH ? { arch: env.FORAGER_SWEBENCH_ARCH } : {}),
  });
}

/**
 * The harness's name of an instance image in a namespace, e.g. `django__django-11099` →
 * `swebench/sweb.eval.x86_64.django_1776_django-11099:latest` (lowercased: image names must be).
 */
export function harnessImageName(instanceId: string, settings: Partial<PrebuiltSettings> = {}): string {
  const s = PrebuiltSettingsSchema.parse(settings);
  const name = `sweb.eval.${s.arch}.${instanceId.replaceAll("__", "_1776_").toLowerCase()}`;
  return `${s.registry ? `${s.registry}/` : ""}${s.namespace}/${name}:${s.tag}`;
}

/** The harness's log parser name (`parse_log_django`, …) → forager's parser for that output. */
export function foragerParserFor(harnessParser: string | undefined, repo: string): LogParserName {
  const p = harnessParser ?? "";
  if (p === "parse_log_django" || repo === "django/django") return "django";
  if (p === "parse_log_sympy" || repo === "sympy/sympy") return "sympy";
  return "pytest"; // astropy, matplotlib, seaborn, sphinx, requests, … are pytest -rA variants
}

/**
 * Test commands per repository as the harness runs them (constants of SWE-bench v4.1), used when a
 * row carries no `eval_script`. Test directives are appended by forager.
 */
export const HARNESS_TEST_COMMANDS: Record<string, string> = {
  "django/django": "./tests/runtests.py --verbosity 2 --settings=test_sqlite --parallel 1",
  "sympy/sympy": "PYTHONWARNINGS='ignore::UserWarning,ignore::SyntaxWarning' bin/test -C --verbose",
  "sphinx-doc/sphinx": "tox --current-env -epy39 -v --",
  "mwaskom/seaborn": "pytest --no-header -rA",
};
const DEFAULT_TEST_COMMAND = "pytest -rA";
const ACTIVATE = ["source /opt/miniconda3/bin/activate", "conda activate testbed"];

/** What the harness's eval script says about the test run: its command and the lines before it. */
export interface HarnessEvalScript {
  /** The test command without the directives (the part forager appends). */
  testCommand: string;
  /** Activation and environment lines before the script's first git command (`cd` lines dropped). */
  preamble: string[];
}

/**
 * Read the test command and preamble out of a row's `eval_script` (SWE-bench 5.0 exports).
 * `directives` are the test files the script appends (tasks/directives.ts testDirectives).
 * Undefined when the script has no `: '>>>>> Start Test Output'` marker.
 */
export function parseHarnessEvalScript(script: string, directives: readonly string[]): HarnessEvalScript | undefined {
  const lines = script.split("\n");
  const start = lines.findIndex((l) => l.trim() === ": '>>>>> Start Test Output'");
  const testLine = start >= 0 ? lines[start + 1]?.trim() : undefined;
  if (!testLine) return undefined;
  const tail = directives.join(" ");
  const testCommand = tail && testLine.endsWith(tail) ? testLine.slice(0, testLine.length - tail.length).trim() : testLine;
  const preamble: string[] = [];
  for (const raw of lines) {
    const l = raw.trim();
    if (l === "" || l.startsWith("#") || l.startsWith("set ") || l.startsWith("cd ")) continue;
    if (l.startsWith("git ")) break;
    preamble.push(l);
  }
  return { testCommand, preamble: preamble.length ? preamble : ACTIVATE };
}

/**
 * The image spec of a task evaluated in a prebuilt harness image: /testbed, the harness's test
 * command and activation (from `harness` when known, else the per-repository defaults), the
 * parser for the harness's output. Build fields stay empty: the image is pulled, not built.
 */
export function harnessImageSpec(
  task: { repo: string; commit: string },
  harness: { testCommand?: string; preamble?: string[]; logParser?: string } = {},
): ImageSpec {
  return ImageSpecSchema.parse({
    repo: task.repo,
    commit: task.commit,
    workdir: "/testbed",
    testCommand: harness.testCommand ?? HARNESS_TEST_COMMANDS[task.repo] ?? DEFAULT_TEST_COMMAND,
    evalPreamble: harness.preamble ?? ACTIVATE,
    logParser: foragerParserFor(harness.logParser, task.repo),
    testTimeoutSeconds: 1800, // the harness's default timeout
  });
}

/** Progress of getting a prebuilt image. */
export interface PrebuiltProgress {
  instanceId: string;
  phase: "present" | "pull" | "retry" | "layer" | "ready" | "fallback";
  message: string;
}

/** Why a prebuilt image could not be had (the caller falls back to building). */
export class PrebuiltUnavailableError extends EnvironmentError {
  constructor(
    message: string,
    readonly ref: string,
  ) {
    super(message);
    this.name = "PrebuiltUnavailableError";
  }
}

/**
 * Pull `ref` through the engine, `attempts` times with 2, 4, 8 … s between tries; progress lines
 * summarise the layers (`pulling 3/7 layers, 120/800 MB`).
 * @throws PrebuiltUnavailableError with the engine's last message.
 */
export async function pullImage(
  ref: string,
  opts: { attempts?: number; timeoutSeconds?: number; onProgress?: (line: string, attempt: number) => void; sleep?: (ms: number) => Promise<void> } = {},
): Promise<void> {
  const attempts = opts.attempts ?? 3;
  const sleep = opts.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
  let last = "";
  for (let attempt = 1; attempt <= attempts; attempt++) {
    const ac = new AbortController();
    const timer = setTimeout(() => ac.abort(), (opts.timeoutSeconds ?? 1800) * 1000);
    try {
      const stream = (await docker().pull(ref, { abortSignal: ac.signal })) as NodeJS.ReadableStream;
      const layers = new Map<string, { current: number; total: number; done: boolean }>();
      let lastReport = 0;
      const events = await consumeJsonStream(stream, (e) => {
        const ev = e as { id?: string; status?: string; progressDetail?: { current?: number; total?: number } };
        if (!ev.id || !ev.status) return;
        const l = layers.get(ev.id) ?? { current: 0, total: 0, done: false };
        if (ev.progressDetail?.total) l.total = ev.progressDetail.total;
        if (ev.status === "Downloading" && ev.progressDetail?.current) l.current = ev.progressDetail.current;
        if (/^(Pull complete|Already exists|Download complete)$/.test(ev.status)) {
          l.done = ev.status !== "Download complete" || l.done;
          if (l.total) l.current = l.total;
        }
        layers.set(ev.id, l);
        if (Date.now() - lastReport > 2000) {
          lastReport = Date.now();
          const mb = (n: number) => (n / 1e6).toFixed(0);
          const all = [...layers.values()];
          opts.onProgress?.(
            `pulling ${ref}: ${all.filter((x) => x.done).length}/${all.length} layers, ${mb(all.reduce((a, x) => a + x.current, 0))}/${mb(all.reduce((a, x) => a + x.total, 0))} MB`,
            attempt,
          );
        }
      });
      const bad = events.find((e) => e.error);
      if (bad) throw new Error(bad.error);
      return;
    } catch (err) {
      last = ac.signal.aborted ? `timed out after ${opts.timeoutSeconds ?? 1800} s` : (err as Error).message;
      if (/manifest unknown|not found|does not exist|unauthorized|denied/i.test(last)) break; // no retry helps
      if (attempt < attempts) {
        opts.onProgress?.(`pull of ${ref} failed (${last}); retry ${attempt + 1}/${attempts}`, attempt);
        await sleep(2000 * 2 ** (attempt - 1));
      }
    } finally {
      clearTimeout(timer);
    }
  }
  throw new PrebuiltUnavailableError(`pull of ${ref} failed: ${last}`, ref);
}

/** The activation file the thin layer writes (read by non-interactive bash through BASH_ENV). */
const ACTIVATE_FILE = "/etc/forager-testbed-activate.sh";

/**
 * The instance image for a task from prebuilt images: pulled when missing (with retries), then a
 * thin local layer (BASH_ENV activation of the testbed env) tagged
 * `forager/sweb-prebuilt:<12 hex of the pulled image id>`. Returns that tag.
 * @throws PrebuiltUnavailableError when the registry does not answer or has no such image.
 */
export async function prebuiltInstanceImage(
  instanceId: string,
  settings: PrebuiltSettings,
  opts: { logger?: Logger; onProgress?: (p: PrebuiltProgress) => void; stateDir?: string; ref?: string } = {},
): Promise<{ tag: string; ref: string; pulled: boolean }> {
  const log = opts.logger ?? silentLogger;
  const ref = opts.ref ?? harnessImageName(instanceId, settings);
  const say = (phase: PrebuiltProgress["phase"], message: string) => {
    log.info({ instanceId, ref, phase }, message);
    opts.onProgress?.({ instanceId, phase, message });
  };
  let info = await inspectImage(ref);
  let pulled = false;
  if (info) say("present", `${ref} present`);
  else {
    say("pull", `pulling ${ref}`);
    await pullImage(ref, {
      attempts: settings.attempts,
      timeoutSeconds: settings.pullTimeoutSeconds,
      onProgress: (line, attempt) => say(attempt > 1 || line.includes("retry") ? "retry" : "pull", line),
    });
    info = await inspectImage(ref);
    if (!info) throw new PrebuiltUnavailableError(`pulled ${ref} but the engine does not show it`, ref);
    pulled = true;
  }
  const hash = createHash("sha256").update(`${info.Id}\n${ACTIVATE_FILE}\nv1`).digest("hex").slice(0, 12);
  const tag = `forager/sweb-prebuilt:${hash}`;
  if (!(await inspectImage(tag))) {
    say("layer", `adding forager's activation layer to ${ref}`);
    const script = `printf '%s\\n' ${ACTIVATE.map((l) => `'${l} >/dev/null 2>&1 || true'`).join(" ")} > ${ACTIVATE_FILE}`;
    await engineBuild({
      layer: "instance",
      tag,
      network: "none",
      steps: [
        { name: `prebuilt ${ref}`, instruction: `FROM ${info.Id}` },
        runStep("activation file", script),
        { name: "BASH_ENV", instruction: `ENV BASH_ENV=${ACTIVATE_FILE}` },
        { name: "labels", instruction: `LABEL forager.prebuilt=${JSON.stringify(ref)} forager.instance=${JSON.stringify(instanceId)}` },
      ],
      logFile: path.join(opts.stateDir ?? defaultStateDir(), "logs", `prebuilt-${hash}.log`),
    });
  }
  say("ready", `${ref} ready as ${tag}`);
  return { tag, ref, pulled };
}

/** The harness fields forager keeps in a SWE-bench task's `metadata.harness` (tasks/swebench.ts). */
export function harnessOfTask(task: { metadata?: Record<string, unknown> }): { image?: string; testCommand?: string; preamble?: string[]; logParser?: string } {
  const h = (task.metadata?.harness ?? {}) as Record<string, unknown>;
  const str = (k: string) => (typeof h[k] === "string" ? (h[k] as string) : undefined);
  let preamble: string[] | undefined;
  try {
    const p: unknown = str("preamble") ? JSON.parse(str("preamble")!) : undefined;
    if (Array.isArray(p) && p.every((x) => typeof x === "string")) preamble = p;
  } catch {
    preamble = undefined;
  }
  return {
    ...(str("image") ? { image: str("image") } : {}),
    ...(str("test_command") ? { testCommand: str("test_command") } : {}),
    ...(preamble ? { preamble } : {}),
    ...(str("log_parser") ? { logParser: str("log_parser") } : {}),
  };
}

/**
 * The image ref for a task in `settings`: the harness's name for its id, in the settings'
 * registry and namespace (a row's own `image` column names the same image on Docker Hub).
 */
export function prebuiltRefForTask(task: { id: string }, settings: PrebuiltSettings): string {
  return harnessImageName(task.id, settings);
}

/**
 * A SWE-bench task (metadata.source "swe-bench") made to run in its prebuilt harness image: the
 * image is pulled (or found) and layered, and the task's image spec replaced by the harness
 * layout's. Any other task, or a registry that does not answer, gives the task back unchanged
 * (`fallback` says why; the caller then builds as usual).
 */
export async function usePrebuiltImage<T extends { id: string; repo: string; commit: string; image: ImageSpec; metadata?: Record<string, unknown> }>(
  task: T,
  settings: PrebuiltSettings,
  opts: { logger?: Logger; onProgress?: (p: PrebuiltProgress) => void; stateDir?: string } = {},
): Promise<{ task: T; image?: string; fallback?: string }> {
  if (task.metadata?.source !== "swe-bench") return { task };
  try {
    const { tag } = await prebuiltInstanceImage(task.id, settings, opts);
    return { task: { ...task, image: harnessImageSpec(task, harnessOfTask(task)) }, image: tag };
  } catch (err) {
    if (!(err instanceof PrebuiltUnavailableError)) throw err;
    const fallback = `${err.message}; building the instance image instead`;
    (opts.logger ?? silentLogger).warn({ instanceId: task.id, ref: err.ref }, fallback);
    opts.onProgress?.({ instanceId: task.id, phase: "fallback", message: fallback });
    return { task, fallback };
  }
}
