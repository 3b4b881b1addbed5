/**
 * tool-latency: what a tool call costs, next to what users compare it with, in one run.
 *
 * 1. Round trip of `true`, N times (`--n`, default 500), interleaved in rounds whose order
 *    rotates so machine noise hits every method alike, all in the same container:
 *    - session: `sandbox.run("true")` on the persistent bash session (one attached stream);
 *    - docker exec: the real docker CLI, `docker exec <id> true`, spawned from Node;
 *    - dockerode exec: `sandbox.exec(["true"])` (exec create + start + inspect over the API).
 * 2. `edit` on a 5,000-line Python-like file in the sandbox: a unique two-line block near the
 *    middle is replaced, alternating between two variants so every edit succeeds, K times
 *    (`--k`, default 100).
 * 3. Sandbox start to first command result, M times (`--m`, default 20), alternating with a
 *    bare `docker run --rm --network none IMAGE true` (docker CLI). The sandbox is destroyed
 *    outside the timed part (its destroy time is reported apart); `docker run --rm` returns only
 *    once the container is removed, so its figure includes the teardown.
 *
 * Goals: session ≥ 100× faster than docker exec at p50; start within 1.3× docker run at p50.
 * `--image TAG` picks the image (default: the base image, made when missing).
 */
import { cpus, loadavg, release } from "node:os";
import { ensureBaseImage } from "../images/base";
import { Sandbox } from "../sandbox/sandbox";
import { dockerClient } from "../sandbox/docker";
import type { SandboxConfigInput } from "../sandbox/config";
import { editTool } from "../tools/edit";
import { describe, intFlag, round, runProgram, stringFlag, summarize, timed, unknownFlags, warmUp, type Summary } from "./lib";

/** Goal: docker exec p50 / session p50 at least this. */
const SESSION_GOAL_RATIO = 100;
/** Goal: sandbox start p50 / docker run p50 at most this. */
const START_GOAL_RATIO = 1.3;
/** Lines of the file the edit benchmark works on. */
const EDIT_FILE_LINES = 5000;
const EDIT_PATH = "/tmp/forager-bench-edit/module.py";

const log = (line: string): void => console.log(line);

function sandboxConfig(image: string): SandboxConfigInput {
  // Defaults otherwise (network none, limits, init): the sandbox an episode gets.
  return { image, lifetimeSeconds: 1800, labels: { "forager.run": "bench" }, namePrefix: "forager-bench" };
}

/** Load average and running containers: a busy machine makes every figure noisier. */
async function logLoad(): Promise<void> {
  const running = await dockerClient()
    .info()
    .then((i: { ContainersRunning?: number }) => i.ContainersRunning ?? "?", () => "?");
  const [l1 = 0, l5 = 0] = loadavg();
  const busy = l1 > cpus().length ? "  (busy machine: expect noisy figures)" : "";
  log(`load average ${l1.toFixed(2)} (1 min), ${l5.toFixed(2)} (5 min); ${running} containers running on the engine${busy}`);
}

function goal(label: string, ok: boolean, detail: string): void {
  log(`${ok ? "PASS" : "MISS"}  ${label}: ${detail}`);
}

/**
 * Await `work`; if it fails because the sandbox's container went away (exit 137, closed session),
 * say so: something outside this process removed it (`forager sandbox reap` removes expired
 * containers and those of dead owners; a person may `docker rm -f`).
 */
async function explainGone<T>(sandbox: Sandbox, work: Promise<T>): Promise<T> {
  try {
    return await work;
  } catch (err) {
    const state = await sandbox.container.inspect().then(
      (i) => (i.State.Running ? "running" : `stopped (${i.State.Status})`),
      (e: unknown) => ((e as { statusCode?: number }).statusCode === 404 ? "gone" : "unknown"),
    );
    if (state === "running") throw err;
    throw new Error(
      `sandbox container ${sandbox.name} is ${state}: it was stopped or removed from outside the benchmark ` +
        `(another process on this engine, e.g. \`forager sandbox reap\` or \`docker rm -f\`); run again`,
      { cause: err },
    );
  }
}

// ---------------------------------------------------------------------------------------------
// 1. Tool-call round trip

interface RoundTrips {
  session: Summary;
  dockerExec: Summary;
  dockerodeExec: Summary;
  /** Session calls back to back (no other work between them): the hot path, for reference. */
  sessionBackToBack: Summary;
}

async function roundTrips(sandbox: Sandbox, n: number): Promise<RoundTrips> {
  const session = async (): Promise<void> => {
    const r = await sandbox.run("true");
    if (r.status !== "ok" || r.exitCode !== 0) throw new Error(`session run("true"): ${r.status}, exit ${r.exitCode}: ${r.output}`);
  };
  const dockerExec = (): Promise<void> => runProgram("docker", ["exec", sandbox.id, "true"]);
  const dockerodeExec = async (): Promise<void> => {
    const r = await sandbox.exec(["true"]);
    if (r.exitCode !== 0) throw new Error(`sandbox.exec(["true"]) exited ${r.exitCode}: ${r.stderr.toString("utf8")}`);
  };

  log("warming up (50 session, 5 docker exec, 5 dockerode exec)");
  await warmUp(50, session);
  await warmUp(5, dockerExec);
  await warmUp(5, dockerodeExec);

  const methods = [
    { fn: session, samples: [] as number[] },
    { fn: dockerExec, samples: [] as number[] },
    { fn: dockerodeExec, samples: [] as number[] },
  ];
  const every = Math.max(1, Math.ceil(n / 5));
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    // Rotate the order each round: no method always follows the same one.
    for (let j = 0; j < methods.length; j++) {
      const m = methods[(i + j) % methods.length]!;
      m.samples.push((await timed(m.fn)).ms);
    }
    if ((i + 1) % every === 0 || i + 1 === n) log(`  round trips: ${i + 1}/${n} rounds (${((performance.now() - t0) / 1000).toFixed(1)} s)`);
  }
  // Reference only (no goal): with nothing in between, every process on the path stays hot.
  const hot: number[] = [];
  for (let i = 0; i < n; i++) hot.push((await timed(session)).ms);
  return {
    session: summarize(methods[0]!.samples),
    dockerExec: summarize(methods[1]!.samples),
    dockerodeExec: summarize(methods[2]!.samples),
    sessionBackToBack: summarize(hot),
  };
}

// ---------------------------------------------------------------------------------------------
// 2. edit on a 5,000-line file

/** A Python-like module of exactly `lines` lines; every `total = x + y * N` line is unique. */
export function pythonLikeFile(lines: number): string {
  const out = ['"""Generated by bench/tool-latency.ts for the edit benchmark."""', "import os", "import sys", ""];
  for (let i = 1; out.length < lines; i++) {
    if (i % 25 === 1) out.push("", `class Group${i}:`, `    """Functions ${i} and on."""`, "");
    out.push(
      `def func_${i}(x, y=${i % 7}):`,
      `    """Return a value derived from x and y (case ${i})."""`,
      `    total = x + y * ${i}`,
      `    if total > ${i * 3}:`,
      `        total -= os.getpid() % ${(i % 5) + 2}`,
      `    return total`,
      "",
    );
  }
  return out.slice(0, lines).join("\n") + "\n";
}

interface Edits {
  edit: Summary;
  fileBytes: number;
  targetLine: number;
}

async function edits(sandbox: Sandbox, k: number): Promise<Edits> {
  const text = pythonLikeFile(EDIT_FILE_LINES);
  const lines = text.split("\n");
  // The `total = …` line nearest the middle (and the line after it, making a two-line block).
  let at = Math.floor(EDIT_FILE_LINES / 2);
  while (!lines[at]!.startsWith("    total = x + y * ")) at++;
  const variants = [`${lines[at]}\n${lines[at + 1]}`, `${lines[at]!.replace("x + y *", "(x + y) *")}  # edited\n${lines[at + 1]}`];
  for (const v of variants) {
    const count = text.split(`\n${v}\n`).length - 1;
    if (count !== (v === variants[0] ? 1 : 0)) throw new Error(`edit target is not unique: ${JSON.stringify(v)} ×${count}`);
  }

  await sandbox.exec(["mkdir", "-p", EDIT_PATH.slice(0, EDIT_PATH.lastIndexOf("/"))]);
  await sandbox.writeFile(EDIT_PATH, text);
  log(`edit target: ${EDIT_PATH}, ${EDIT_FILE_LINES} lines, ${Buffer.byteLength(text)} bytes, block at line ${at + 1}`);

  let current = 0;
  const edit = async (): Promise<void> => {
    const next = 1 - current;
    const argument = `${EDIT_PATH}\n<<<<<<< SEARCH\n${variants[current]}\n=======\n${variants[next]}\n>>>>>>> REPLACE`;
    const r = await editTool.run(sandbox, argument);
    if (!r.success) throw new Error(`edit failed: ${r.output.slice(0, 500)}`);
    current = next;
  };

  await warmUp(5, edit);
  const samples: number[] = [];
  for (let i = 0; i < k; i++) samples.push((await timed(edit)).ms);

  // The file must still be the original with the block in its current variant.
  const final = (await sandbox.readFile(EDIT_PATH)).toString("utf8");
  const expected = current === 0 ? text : text.replace(`\n${variants[0]}\n`, `\n${variants[1]}\n`);
  if (final !== expected) throw new Error("file content after the edits is not what was expected");
  return { edit: summarize(samples), fileBytes: Buffer.byteLength(text), targetLine: at + 1 };
}

// ---------------------------------------------------------------------------------------------
// 3. Sandbox start to first command result

interface Starts {
  start: Summary;
  dockerRun: Summary;
  destroy: Summary;
}

async function starts(image: string, m: number): Promise<Starts> {
  const destroyMs: number[] = [];
  const sandboxStart = async (): Promise<number> => {
    let sandbox: Sandbox | undefined;
    try {
      const { ms } = await timed(async () => {
        sandbox = await Sandbox.create(sandboxConfig(image));
        const r = await sandbox.run("true");
        if (r.status !== "ok" || r.exitCode !== 0) throw new Error(`first run("true"): ${r.status}, exit ${r.exitCode}`);
      });
      return ms;
    } finally {
      // Untimed; awaited so the next measurement does not overlap the removal.
      if (sandbox) destroyMs.push((await timed(() => sandbox!.destroy())).ms);
    }
  };
  const dockerRun = async (): Promise<number> =>
    (await timed(() => runProgram("docker", ["run", "--rm", "--network", "none", image, "true"]))).ms;

  log("warming up (1 sandbox start, 1 docker run)");
  await sandboxStart();
  await dockerRun();
  destroyMs.length = 0;

  const startMs: number[] = [];
  const runMs: number[] = [];
  for (let i = 0; i < m; i++) {
    // Alternate which goes first.
    if (i % 2 === 0) {
      startMs.push(await sandboxStart());
      runMs.push(await dockerRun());
    } else {
      runMs.push(await dockerRun());
      startMs.push(await sandboxStart());
    }
    log(`  start ${i + 1}/${m}: sandbox ${startMs.at(-1)!.toFixed(0)} ms, docker run ${runMs.at(-1)!.toFixed(0)} ms`);
  }
  return { start: summarize(startMs), dockerRun: summarize(runMs), destroy: summarize(destroyMs) };
}

// ---------------------------------------------------------------------------------------------

export async function main(args: string[]): Promise<Record<string, number>> {
  const bad = unknownFlags(args, ["n", "m", "k", "image"]);
  if (bad.length) throw new Error(`unknown arguments: ${bad.join(" ")} (known: --n N, --m M, --k K, --image TAG)`);
  const n = intFlag(args, "n", 500);
  const m = intFlag(args, "m", 20);
  const k = intFlag(args, "k", 100);
  let image = stringFlag(args, "image");
  if (!image) {
    const base = await ensureBaseImage({ onProgress: (p) => log(`base image: ${p.message}`) });
    image = base.tag;
  }

  const version = await dockerClient().version();
  log(
    `machine: ${cpus().length} cores (${cpus()[0]?.model.trim() ?? "?"}), Linux ${release()}, ` +
      `dockerd ${version.Version} (API ${version.ApiVersion}), node ${process.version}`,
  );
  log(`image: ${image}; round trips n=${n}, starts m=${m}, edits k=${k}`);
  await logLoad();

  log("\n[1/3] tool-call round trip (`true`), same container, interleaved");
  const sandbox = await Sandbox.create(sandboxConfig(image));
  let rt: RoundTrips;
  let ed: Edits;
  try {
    rt = await explainGone(sandbox, roundTrips(sandbox, n));
    log(describe("session  sandbox.run", rt.session));
    log(describe("docker exec (CLI)", rt.dockerExec));
    log(describe("dockerode exec  sandbox.exec", rt.dockerodeExec));
    log(describe("session back to back (reference)", rt.sessionBackToBack));

    log(`\n[2/3] edit (same sandbox) on a ${EDIT_FILE_LINES}-line file`);
    ed = await explainGone(sandbox, edits(sandbox, k));
    log(describe("edit (5,000 lines)", ed.edit));
  } finally {
    await sandbox.destroy();
  }

  log("\n[3/3] sandbox start to first command result vs docker run, alternating");
  const st = await starts(image, m);
  log(describe("Sandbox.create + run(true)", st.start));
  log(describe("docker run --rm (CLI)", st.dockerRun));
  log(describe("sandbox destroy (untimed above)", st.destroy));

  const execOverSession = rt.dockerExec.p50 / rt.session.p50;
  const startOverRun = st.start.p50 / st.dockerRun.p50;
  await logLoad();
  log("\ngoals");
  goal(
    `session ≥ ${SESSION_GOAL_RATIO}× faster than docker exec at p50`,
    execOverSession >= SESSION_GOAL_RATIO,
    `${execOverSession.toFixed(1)}× (docker exec ${rt.dockerExec.p50.toFixed(2)} ms / session ${rt.session.p50.toFixed(3)} ms)`,
  );
  goal(
    `start within ${START_GOAL_RATIO}× docker run at p50`,
    startOverRun <= START_GOAL_RATIO,
    `${startOverRun.toFixed(2)}× (start ${st.start.p50.toFixed(0)} ms / docker run ${st.dockerRun.p50.toFixed(0)} ms)`,
  );
  log(`info  edit on ${EDIT_FILE_LINES} lines: p50 ${ed.edit.p50.toFixed(2)} ms, p99 ${ed.edit.p99.toFixed(2)} ms (no goal)`);

  return {
    session_p50_ms: round(rt.session.p50),
    session_p99_ms: round(rt.session.p99),
    docker_exec_p50_ms: round(rt.dockerExec.p50),
    docker_exec_p99_ms: round(rt.dockerExec.p99),
    dockerode_exec_p50_ms: round(rt.dockerodeExec.p50),
    dockerode_exec_p99_ms: round(rt.dockerodeExec.p99),
    session_back_to_back_p50_ms: round(rt.sessionBackToBack.p50),
    exec_over_session_p50_ratio: round(execOverSession, 1),
    start_p50_ms: round(st.start.p50, 1),
    start_p99_ms: round(st.start.p99, 1),
    docker_run_p50_ms: round(st.dockerRun.p50, 1),
    docker_run_p99_ms: round(st.dockerRun.p99, 1),
    start_over_docker_run_ratio: round(startOverRun, 3),
    destroy_p50_ms: round(st.destroy.p50, 1),
    edit_5000_lines_p50_ms: round(ed.edit.p50),
    edit_5000_lines_p99_ms: round(ed.edit.p99),
    edit_file_bytes: ed.fileBytes,
    round_trip_rounds_count: n,
    start_rounds_count: m,
    edit_count: k,
  };
}
