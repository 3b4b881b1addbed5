/**
 * taskgen/mutate in real Docker, on a created package (`shapes`, test/helpers/mutate-fixtures):
 * reference run with coverage, a caught bug kept with the right FAIL_TO_PASS / PASS_TO_PASS, an
 * uncaught and an uncovered bug rejected, a flaky test rejected, full-suite agreement, the
 * gold/empty check, the agent's starting state with no reachable original, evaluation from the
 * buggy state, and the whole generator end to end. One image, built once for the file.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildInstanceImage } from "../images/build";
import { docker } from "../images/docker";
import type { ImageSpecInput } from "../images/spec";
import { Sandbox } from "../sandbox/sandbox";
import { TaskSchema, type Task } from "../tasks/schema";
import { candidatesForFile, type Candidate } from "../taskgen/mutate/candidates";
import { unifiedDiff } from "../taskgen/mutate/diff";
import { checkTask, generateMutateTasks, toTask } from "../taskgen/mutate/generate";
import { prepareTaskSandbox, SQUASH_MESSAGE } from "../tasks/start";
import { evaluatePatch } from "../rewards/evaluate";
import { runEvaluation } from "../rewards/eval-run";
import { MutateRunner, withCoverage, type Validation } from "../taskgen/mutate/validate";
import { git } from "./helpers/git-fixtures";
import { FLAKY, GEOMETRY, makeShapesRepo } from "./helpers/mutate-fixtures";

const PIP_E = "pip install --no-index --no-deps --no-build-isolation --break-system-packages -e .";

let tmp: string;
let image: string;
let spec: ImageSpecInput;
let runner: MutateRunner;
let baseSha: string;
const sandboxes: Sandbox[] = [];

const T = (name: string) => `tests/test_geometry.py::${name}`;

async function candidate(file: "geometry" | "flaky", entity: string, description: string): Promise<Candidate> {
  const text = file === "geometry" ? GEOMETRY : FLAKY;
  const all = await candidatesForFile({ path: `shapes/${file}.py`, text }, { minComplexity: 1 });
  const c = all.find((x) => x.changes[0]!.entity.name === entity && x.changes[0]!.description === description);
  if (!c) throw new Error(`no candidate ${entity} ${description}: ${all.map((x) => x.changes[0]!.description).join("; ")}`);
  return c;
}

beforeAll(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), "forager-mutate-test-"));
  process.env.FORAGER_CACHE_DIR = path.join(tmp, "cache");
  const repo = makeShapesRepo(path.join(tmp, "shapes"));
  baseSha = repo.shas[0]!;
  spec = withCoverage({
    repo: "example/shapes",
    commit: baseSha,
    source: { type: "path", path: repo.dir },
    systemPackages: ["python3-pytest", "python3-pip", "python3-setuptools"],
    install: [PIP_E],
    testCommand: "pytest -rA",
    logParser: "pytest",
    testTimeoutSeconds: 120,
  });
  image = (await buildInstanceImage(spec, { stateDir: path.join(tmp, "state") })).tag;
  runner = await MutateRunner.start(image, spec, { sampleOthers: 0, reruns: 1, timeoutSeconds: 60, seed: 1 });
  await runner.runReference({ cache: false });
  if (!runner.reference?.durations?.size) throw new Error("the reference run reported no test durations");
}, 600_000);

afterAll(async () => {
  await runner?.destroy();
  await Promise.allSettled(sandboxes.map((s) => s.destroy()));
  // The instance image is this file's own (its commit is unique to the run's fixture repo dates).
  if (image) await docker().getImage(image).remove({ force: true }).catch(() => undefined);
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

describe("reference run", () => {
  it("records the passing tests and which tests execute each line", () => {
    const ref = runner.reference!;
    expect([...ref.passed].sort()).toEqual(
      [
        T("test_area"),
        T("test_area_negative"),
        T("test_clamp_high"),
        T("test_clamp_inside"),
        T("test_clamp_low"),
        T("test_describe_is_str"),
        "tests/test_flaky.py::test_ping_flaky",
      ].sort(),
    );
    const lines = ref.coverage.get("shapes/geometry.py")!;
    // `return lo` (line 7) runs only in test_clamp_low; never_called's body in no test.
    expect([...lines.get(7)!]).toEqual([T("test_clamp_low")]);
    expect(lines.get(23)).toBeUndefined();
    expect(ref.measuredFiles).toContain("shapes/geometry.py");
  });
});

describe("validation", () => {
  let flaky: Validation;
  it("rejects a bug whose only catching test fails on alternate runs (flaky)", async () => {
    // The flaky test passed in the reference (run 1); set the counter so the bug run is an even run.
    await runner.sandbox.writeFile("/tmp/forager-flaky-counter", "1");
    flaky = await runner.validate(await candidate("flaky", "ping", "`>` → `<=`"));
    expect(flaky.kept).toBe(false);
    expect(flaky.reason).toBe("flaky");
    expect(flaky.runs).toBe(2);
  });

  let caught: Validation;
  it("keeps a caught bug: FAIL_TO_PASS and PASS_TO_PASS from the covering tests", async () => {
    caught = await runner.validate(await candidate("geometry", "clamp", "`>` → `<=`"));
    expect(caught.kept).toBe(true);
    expect(caught.failToPass).toEqual([T("test_clamp_high"), T("test_clamp_inside")]);
    expect(caught.passToPass).toEqual([T("test_clamp_low")]);
    expect(caught.selected).toEqual([T("test_clamp_high"), T("test_clamp_inside"), T("test_clamp_low")]);
    expect(caught.runs).toBe(2);
    expect(caught.log).toContain("FAILED tests/test_geometry.py::test_clamp_high");
    // The tree was reset.
    expect((await runner.sandbox.readFile("/testbed/shapes/geometry.py")).toString()).toBe(GEOMETRY);
  });

  it("rejects an uncaught bug and an uncovered one", async () => {
    const notCaught = await runner.validate(await candidate("geometry", "describe", "`>` → `<=`"));
    expect(notCaught.kept).toBe(false);
    expect(notCaught.reason).toBe("not_caught");
    expect(notCaught.selected).toEqual([T("test_describe_is_str")]);
    const uncovered = await runner.validate(await candidate("geometry", "never_called", "removed an `if` statement"));
    expect(uncovered.reason).toBe("uncovered");
    expect(uncovered.runs).toBe(0);
  });

  it("the full suite gives the same FAIL_TO_PASS set as the selection (the flaky test is known and left out)", async () => {
    expect([...runner.flakyTests]).toEqual(["tests/test_flaky.py::test_ping_flaky"]);
    const full = await runner.fullSuiteFailToPass(caught.candidate, caught.failToPass);
    expect(full.f2p).toEqual(caught.failToPass);
  });

  let task: Task;
  it("makes a task record; gold resolves it and the empty patch does not", async () => {
    task = await toTask(caught, { spec: { ...spec, commit: baseSha }, commit: baseSha, seed: 1 });
    expect(TaskSchema.parse(task)).toEqual(task);
    expect(task.kind).toBe("mutate-fix");
    expect(task.testPatch).toBe("");
    expect(task.id).toMatch(/^mutate\/example__shapes\/[0-9a-f]{8}-[0-9a-f]{12}$/);
    expect(task.metadata.operators).toEqual(["flip_comparison"]);
    expect(task.problemStatement).toContain("test_clamp_high");
    expect(task.problemStatement).not.toContain("if x <= hi");
    expect(task.problemStatement).not.toContain("if x > hi");
    expect(await checkTask(task, image)).toMatchObject({ gold: true, empty: true });
  });

  it("the agent's sandbox: buggy tree, one orphan commit, nothing of the original reachable", async () => {
    const s = await Sandbox.create({ image, network: "none", workdir: "/testbed", lifetimeSeconds: 600, labels: { "forager.run": "test" } });
    sandboxes.push(s);
    const blob = git(tmp + "/shapes", ["rev-parse", `${baseSha}:shapes/geometry.py`]);
    // Compile the original so stale bytecode would be there to find.
    await s.exec(["python3", "-c", "import shapes.geometry"], { workdir: "/testbed" });
    const prep = await prepareTaskSandbox(s, task);
    expect(prep.branch).toBe("main");
    const script = [
      "echo '== log'; git log --all --format='%H %P|%s'",
      "echo '== refs'; git for-each-ref --format='%(refname)'",
      "echo '== reflog'; git reflog --all | wc -l",
      "echo '== unreachable'; git fsck --unreachable --no-reflogs 2>/dev/null | wc -l",
      "echo '== lost'; git fsck --lost-found 2>/dev/null | wc -l",
      `echo '== blob'; git cat-file -e ${blob} 2>/dev/null && echo present || echo absent`,
      `echo '== commit'; git cat-file -e ${baseSha} 2>/dev/null && echo present || echo absent`,
      "echo '== status'; git status --porcelain",
      "echo '== pycache'; find . -path ./.git -prune -o -name '*.pyc' -print | wc -l",
      "echo '== objects'; git count-objects -v | grep -E '^(count|in-pack|garbage):'",
      "echo '== mtimes'; { git ls-files -z | xargs -0 stat -c %Y; find . -path ./.git -prune -o -type d -print0 | xargs -0 stat -c %Y; } | sort -u | wc -l",
      `echo '== diff left'; grep -rlsF -e ${JSON.stringify(task.startPatch.split("\n").find((l) => l.startsWith("+") && !l.startsWith("+++"))!.slice(1).trim())} /tmp /var/tmp /root 2>/dev/null | wc -l`,
      "echo '== end'",
    ].join("\n");
    const r = await s.exec(["bash", "-c", script], { workdir: "/testbed" });
    const out = r.stdout.toString();
    const sec = Object.fromEntries(
      out
        .split(/^== /m)
        .filter(Boolean)
        .map((x) => {
          const [h, ...rest] = x.split("\n");
          return [h!.trim(), rest.join("\n").trim()];
        }),
    ) as Record<string, string>;
    const commits = sec.log!.split("\n");
    expect(commits).toHaveLength(1);
    expect(commits[0]).toBe(`${prep.commit} |${SQUASH_MESSAGE}`); // no parent
    expect(sec.refs).toBe("refs/heads/main");
    expect(sec.reflog).toBe("0");
    expect(sec.unreachable).toBe("0");
    expect(sec.lost).toBe("0");
    expect(sec.blob).toBe("absent");
    expect(sec.commit).toBe("absent");
    expect(sec.status).toBe("");
    expect(sec.pycache).toBe("0");
    // No fresh mtime points at the mutated file; no copy of the diff is left anywhere.
    expect(sec.mtimes).toBe("1");
    expect(sec["diff left"]).toBe("0");
    expect((await s.readFile("/testbed/shapes/geometry.py")).toString()).toBe(caught.candidate.mutated["shapes/geometry.py"]);
  });

  it("a start patch that does not apply fails the sandbox start loudly", async () => {
    const s = await Sandbox.create({ image, network: "none", workdir: "/testbed", lifetimeSeconds: 600, labels: { "forager.run": "test" } });
    sandboxes.push(s);
    const broken = { ...task, startPatch: task.startPatch.replace(/^-(.*)$/m, "-$1 # not in the file") };
    await expect(prepareTaskSandbox(s, broken)).rejects.toThrow(/failed/);
    const head = await s.exec(["git", "log", "--format=%s", "-1"], { workdir: "/testbed" });
    expect(head.stdout.toString().trim()).not.toBe(SQUASH_MESSAGE);
  });

  it("evaluation from the buggy state: gold resolves, empty and a wrong patch do not", async () => {
    const gold = await evaluatePatch(task, task.referencePatch, { image });
    expect(gold.outcome).toBe("pass");
    expect(gold.resolved).toBe(true);
    expect(gold.applyMethod).toBe("git_apply");
    const empty = await evaluatePatch(task, "", { image });
    expect(empty.resolved).toBe(false);
    const buggy = caught.candidate.mutated["shapes/geometry.py"]!;
    const wrongPatch = unifiedDiff("shapes/geometry.py", buggy, buggy + "\n# looked at it\n");
    const wrong = await evaluatePatch(task, wrongPatch, { image });
    expect(wrong.outcome).toBe("fail");
    expect(wrong.resolved).toBe(false);
  });

  it("forager eval reads Task JSONL: the gold patch resolves, the empty one is reported empty", async () => {
    const file = path.join(tmp, "tasks.jsonl");
    fs.writeFileSync(file, JSON.stringify(task) + "\n");
    const gold = await runEvaluation({ dataset: file, predictions: "gold", runId: "mut-gold", out: path.join(tmp, "eval") });
    expect(gold.loadErrors).toEqual([]);
    expect(gold.results.map((r) => [r.instanceId, r.resolved])).toEqual([[task.id, true]]);
    expect(gold.report.resolved_ids).toEqual([task.id]);
    const empty = await runEvaluation({ dataset: file, predictions: "empty", runId: "mut-empty", out: path.join(tmp, "eval") });
    expect(empty.report.resolved_ids).toEqual([]);
    expect(empty.report.empty_patch_ids).toEqual([task.id]);
  });
});

describe("generateMutateTasks", () => {
  it("end to end: tasks that pass the gold/empty check, stats per operator", async () => {
    const events: string[] = [];
    const triedIds: string[] = [];
    const opts = {
      spec,
      image,
      max: 5,
      seed: 5,
      minComplexity: 2,
      combine: 1,
      agreementSample: 1,
      maxCandidates: 12,
      settings: { sampleOthers: 1, reruns: 1, timeoutSeconds: 60 },
      fileFilter: (p: string) => p === "shapes/geometry.py",
      onProgress: (p: { phase: string }) => events.push(p.phase),
      onCandidate: (id: string) => triedIds.push(id),
    };
    const { tasks, stats } = await generateMutateTasks(opts);
    expect(stats.referencePassed).toBe(7);
    expect(stats.combined.validated).toBe(1);
    const combo = tasks.find((t) => (t.metadata.operators as string[]).length > 1)!;
    expect(new Set((combo.metadata.changes as Array<{ entity: { name: string } }>).map((c) => c.entity.name)).size).toBeGreaterThan(1);
    expect(stats.tasks).toBe(tasks.length);
    expect(tasks.length).toBeGreaterThanOrEqual(2);
    expect(stats.goldEmpty.goldResolved).toBe(stats.goldEmpty.checked);
    expect(stats.goldEmpty.emptyUnresolved).toBe(stats.goldEmpty.checked);
    expect(stats.agreement.checked).toBe(1);
    expect(stats.agreement.agreed).toBe(1);
    expect(stats.tried).toBe(Object.values(stats.perOperator).reduce((s, o) => s + o.tried, 0));
    expect(stats.tried).toBe(stats.validated + Object.entries(stats.rejected).filter(([k]) => k !== "gold_check").reduce((s, [, n]) => s + n, 0));
    for (const t of tasks) {
      expect(t.failToPass.length).toBeGreaterThan(0);
      expect(t.startPatch).not.toBe("");
      expect(String(t.metadata.operator)).toMatch(/^[a-z_]+(\+[a-z_]+)*$/);
    }
    expect(events).toContain("validate");
    expect(events.at(-1)).toBe("done");
    for (const t of tasks) expect(t.metadata.goldEmptyCheck).toMatchObject({ gold: true, empty: true });

    // A resumed run skips what is already written and validates nothing again.
    const singles = tasks.filter((t) => (t.metadata.operators as string[]).length === 1);
    const again = await generateMutateTasks({ ...opts, max: singles.length, combine: 0, skipTaskIds: singles.map((t) => t.id), skipCandidateIds: triedIds });
    expect(again.stats.resumed).toBe(singles.length);
    expect(stats.referenceCached).toBe(false);
    expect(again.stats.referenceCached).toBe(true);
    expect(again.stats.referencePassed).toBe(stats.referencePassed);
    expect(again.stats.skippedTried).toBeLessThanOrEqual(stats.tried - singles.length);
    expect(again.stats.tried).toBe(0);
    expect(again.tasks).toEqual([]);
    console.log(
      `mutate e2e: ${stats.tried} tried, ${stats.validated} validated, rejected ${JSON.stringify(stats.rejected)}, ` +
        `combined ${stats.combined.validated}/${stats.combined.tried}, ${stats.seconds.total.toFixed(1)} s`,
    );
  }, 300_000);
});
