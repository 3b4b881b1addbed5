/**
 * SWE-bench's prebuilt instance images (images/swebench-prebuilt.ts): names, option, the harness's
 * eval script read for its test command and activation, and the pull path end to end against a
 * real registry on loopback (Debian's docker-registry): an image in the harness's layout (the
 * repository at /testbed, a fake /opt/miniconda3 whose `conda activate testbed` puts the env's bin/
 * on PATH) is built here, pushed under the harness's name, pulled by forager and evaluated with the
 * gold and the empty patch. A registry that does not answer falls back to building.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildInstanceImage } from "../images/build";
import { consumeJsonStream, docker, inspectImage } from "../images/docker";
import { engineBuild, runStep } from "../images/engine-build";
import { specForSweBench } from "../images/swebench-specs";
import {
  harnessImageName,
  harnessImageSpec,
  parseHarnessEvalScript,
  parseImagesOption,
  prebuiltInstanceImage,
  PrebuiltUnavailableError,
  pullImage,
  type PrebuiltProgress,
} from "../images/swebench-prebuilt";
import { testDirectives } from "../tasks/directives";
import { evaluatePatch } from "../rewards/evaluate";
import { runEvaluation } from "../rewards/eval-run";
import { Sandbox } from "../sandbox/sandbox";
import { SweBenchRowSchema, sweBenchRowToTask } from "../tasks/swebench";
import { EVAL_INSTANCE, evalDatasetRow, evalSpecTable, makeEvalFixture, type EvalFixture } from "./helpers/eval-fixtures";
import { registryBinary, startRegistry, type RegistryHandle } from "./helpers/registry";
import { writeParquetRows } from "./helpers/parquet";
import { forage } from "../orchestrator/forage";

describe("prebuilt image names and settings", () => {
  it("the harness's naming scheme", () => {
    expect(harnessImageName("django__django-11099")).toBe("swebench/sweb.eval.x86_64.django_1776_django-11099:latest");
    expect(harnessImageName("sympy__sympy-20590", { registry: "127.0.0.1:5000", namespace: "mirror/swe", tag: "v2", arch: "arm64" })).toBe(
      "127.0.0.1:5000/mirror/swe/sweb.eval.arm64.sympy_1776_sympy-20590:v2",
    );
  });

  it("--images swebench[=REGISTRY/NAMESPACE], FORAGER_IMAGES and the tag setting", () => {
    expect(parseImagesOption("swebench", {})).toMatchObject({ namespace: "swebench", tag: "latest", arch: "x86_64" });
    expect(parseImagesOption("swebench", {})?.registry).toBeUndefined();
    expect(parseImagesOption("swebench=127.0.0.1:5000/swebench", {})).toMatchObject({ registry: "127.0.0.1:5000", namespace: "swebench" });
    expect(parseImagesOption("swebench=epochai", {})).toMatchObject({ namespace: "epochai" });
    expect(parseImagesOption(undefined, { FORAGER_IMAGES: "swebench=r.example:443/a/b", FORAGER_SWEBENCH_TAG: "t1" })).toMatchObject({ registry: "r.example:443", namespace: "a/b", tag: "t1" });
    expect(parseImagesOption(undefined, {})).toBeUndefined();
    expect(parseImagesOption("build", {})).toBeUndefined();
    expect(() => parseImagesOption("dockerhub", {})).toThrow(/expected "swebench"/);
  });

  it("the harness's eval script gives the test command and activation; a Task keeps them", () => {
    const script = [
      "#!/bin/bash",
      "set -uxo pipefail",
      "source /opt/miniconda3/bin/activate",
      "conda activate testbed",
      "cd /testbed",
      "export LANG=en_US.UTF-8",
      "git config --global --add safe.directory /testbed",
      "git status",
      "git checkout abc tests/test_x.py",
      ": '>>>>> Start Test Output'",
      "./tests/runtests.py --verbosity 2 --settings=test_sqlite --parallel 1 x.tests",
      ": '>>>>> End Test Output'",
    ].join("\n");
    expect(parseHarnessEvalScript(script, ["x.tests"])).toEqual({
      testCommand: "./tests/runtests.py --verbosity 2 --settings=test_sqlite --parallel 1",
      preamble: ["source /opt/miniconda3/bin/activate", "conda activate testbed", "export LANG=en_US.UTF-8"],
    });
    expect(parseHarnessEvalScript("echo no marker", [])).toBeUndefined();
    const spec = harnessImageSpec({ repo: "django/django", commit: "abcdef1" }, { logParser: "parse_log_django" });
    expect(spec).toMatchObject({ workdir: "/testbed", logParser: "django", evalPreamble: ["source /opt/miniconda3/bin/activate", "conda activate testbed"] });
    expect(spec.testCommand).toMatch(/runtests\.py/);
  });

  it("eval --images: an empty prediction for a repository forager has no build spec for is reported empty, not skipped", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "forager-prebuilt-empty-"));
    try {
      const dataset = path.join(dir, "d.jsonl");
      const row = { instance_id: "acme__widgets-1", repo: "acme/widgets", base_commit: "abcdef1", patch: "", test_patch: "", problem_statement: "p", FAIL_TO_PASS: '["t"]', PASS_TO_PASS: "[]", version: "9.9" };
      fs.writeFileSync(dataset, JSON.stringify(row) + "\n");
      const run = await runEvaluation({ dataset, predictions: "empty", runId: "e", out: path.join(dir, "out"), prebuilt: parseImagesOption("swebench=127.0.0.1:9/x", {}) });
      expect(run.skipped).toEqual([]);
      expect(run.results).toMatchObject([{ instanceId: "acme__widgets-1", patchExists: false, resolved: false }]);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  const verified = path.resolve(process.cwd(), "../shared/datasets/swe-bench-verified.test.jsonl");
  it.skipIf(!fs.existsSync(verified))("every Verified row: the harness's test command is recovered and the image name matches its image column", () => {
    const rows = fs.readFileSync(verified, "utf8").split("\n").filter(Boolean).map((l) => SweBenchRowSchema.parse(JSON.parse(l)));
    let withScript = 0;
    for (const r of rows) {
      if (r.image) expect(harnessImageName(r.instance_id)).toBe(r.image);
      if (!r.eval_script) continue;
      withScript++;
      const h = parseHarnessEvalScript(r.eval_script, testDirectives(r.test_patch, r.repo));
      expect(h, r.instance_id).toBeDefined();
      expect(h!.preamble.slice(0, 2)).toEqual(["source /opt/miniconda3/bin/activate", "conda activate testbed"]);
      expect(h!.testCommand.length).toBeGreaterThan(4);
    }
    expect(withScript).toBeGreaterThan(0);
  });
});

const haveRegistry = registryBinary() !== undefined;

describe.skipIf(!haveRegistry)("prebuilt images through a registry on loopback", () => {
  let tmp: string;
  let registry: RegistryHandle;
  let fixture: EvalFixture;
  let repoDir: string;
  let pushedRef: string;
  const ownTags: string[] = [];

  beforeAll(async () => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), "forager-prebuilt-"));
    registry = await startRegistry(path.join(tmp, "registry"));
    repoDir = path.join(tmp, "repos", "example__evalpkg");
    fixture = makeEvalFixture(repoDir);
    const row = SweBenchRowSchema.parse(evalDatasetRow(fixture));
    const table = evalSpecTable();
    const task = sweBenchRowToTask(row, (r) => specForSweBench({ ...r, version: r.version ?? "" }, { table, source: { type: "path", path: repoDir } }));
    const built = await buildInstanceImage(task.image, { stateDir: path.join(tmp, "state") });
    // The harness's layout on top: /testbed is the repository; the test runner is reachable only
    // through the activated conda env `testbed` (so a run without activation cannot pass).
    const activate = [
      "mkdir -p /opt/miniconda3/bin /opt/miniconda3/envs/testbed/bin",
      "printf '#!/bin/sh\\nexec python3 -m pytest \"$@\"\\n' > /opt/miniconda3/envs/testbed/bin/testbed-pytest",
      "chmod +x /opt/miniconda3/envs/testbed/bin/testbed-pytest",
      "printf 'conda() { if [ \"$1\" = activate ]; then export CONDA_DEFAULT_ENV=$2 PATH=/opt/miniconda3/envs/$2/bin:$PATH; fi; }\\n' > /opt/miniconda3/bin/activate",
    ].join(" && ");
    pushedRef = harnessImageName(EVAL_INSTANCE, { registry: registry.host, namespace: "swebench" });
    ownTags.push(pushedRef);
    await engineBuild({
      layer: "instance",
      tag: pushedRef,
      network: "none",
      steps: [{ name: "instance", instruction: `FROM ${built.tag}` }, runStep("fake miniconda", activate), { name: "workdir", instruction: "WORKDIR /testbed" }],
      logFile: path.join(tmp, "harness-image.log"),
    });
    const push = (await docker().getImage(pushedRef).push({ authconfig: { serveraddress: registry.host } })) as NodeJS.ReadableStream;
    const events = await consumeJsonStream(push);
    const bad = events.find((e) => e.error);
    if (bad) throw new Error(`push: ${bad.error}`);
    await docker().getImage(pushedRef).remove(); // only the tag: forager must pull it back
  }, 900_000);

  afterAll(async () => {
    for (const t of ownTags) await docker().getImage(t).remove().catch(() => undefined);
    await registry?.stop();
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  });

  const harnessRow = () => ({
    ...evalDatasetRow(fixture),
    log_parser: "parse_log_pytest",
    eval_script: [
      "#!/bin/bash",
      "set -uxo pipefail",
      "source /opt/miniconda3/bin/activate",
      "conda activate testbed",
      "cd /testbed",
      "git status",
      ": '>>>>> Start Test Output'",
      `testbed-pytest -rA ${testDirectives(fixture.testPatch, "example/evalpkg").join(" ")}`,
      ": '>>>>> End Test Output'",
    ].join("\n"),
  });

  it("eval pulls the harness's image from the registry, shows progress, and the gold patch resolves in it", async () => {
    expect(await inspectImage(pushedRef)).toBeUndefined();
    const dataset = path.join(tmp, "dataset.jsonl");
    fs.writeFileSync(dataset, JSON.stringify(harnessRow()) + "\n");
    const progress: PrebuiltProgress[] = [];
    const run = await runEvaluation({
      dataset,
      predictions: "gold",
      runId: "prebuilt-gold",
      out: path.join(tmp, "eval"),
      prebuilt: parseImagesOption(`swebench=${registry.host}/swebench`, {}),
      onPrebuilt: (p) => progress.push(p),
      build: { stateDir: path.join(tmp, "state") },
    });
    expect(run.skipped).toEqual([]);
    expect(run.results).toHaveLength(1);
    expect(run.results[0]).toMatchObject({ outcome: "pass", resolved: true });
    expect(run.results[0]!.image).toMatch(/^forager\/sweb-prebuilt:/);
    ownTags.push(run.results[0]!.image!);
    expect(progress.map((p) => p.phase)).toContain("pull");
    expect(progress.at(-1)?.phase).toBe("ready");
    expect(await inspectImage(pushedRef)).toBeDefined();
  }, 600_000);

  it("in the pulled image the empty patch does not resolve, and the agent's bash sees the activated env", async () => {
    const { tag } = await prebuiltInstanceImage(EVAL_INSTANCE, parseImagesOption(`swebench=${registry.host}/swebench`, {})!, { stateDir: path.join(tmp, "state") });
    const row = SweBenchRowSchema.parse(harnessRow());
    const h = parseHarnessEvalScript(row.eval_script!, testDirectives(row.test_patch, row.repo));
    const task = sweBenchRowToTask(row, (r) => harnessImageSpec({ repo: r.repo, commit: r.base_commit }, { ...h, logParser: "parse_log_pytest" }));
    const empty = await evaluatePatch(task, "", { image: tag, runTestsOnEmptyPatch: true });
    expect(empty.resolved).toBe(false);
    expect(empty.statuses["tests/test_calc.py::test_mul"]).toBe("PASSED"); // the tests ran (activation worked)
    const sb = await Sandbox.create({ image: tag, network: "none", workdir: "/testbed" });
    try {
      const r = await sb.exec(["bash", "-c", "command -v testbed-pytest && echo $CONDA_DEFAULT_ENV && pwd"]);
      expect(r.stdout.toString()).toBe("/opt/miniconda3/envs/testbed/bin/testbed-pytest\ntestbed\n/testbed\n");
    } finally {
      await sb.destroy();
    }
  }, 600_000);

  it("forage --images: a dataset directory (data/test-*.parquet) foraged with the oracle in the pulled image", async () => {
    const repo = path.join(tmp, "hf-dataset");
    writeParquetRows(path.join(repo, "data", "test-00000-of-00001.parquet"), [harnessRow()]);
    const progress: PrebuiltProgress[] = [];
    const res = await forage({
      taskFiles: [repo],
      instances: [EVAL_INSTANCE],
      samples: 1,
      out: path.join(tmp, "forage-run"),
      policy: { kind: "oracle" },
      prebuilt: parseImagesOption(`swebench=${registry.host}/swebench`, {}),
      onPrebuilt: (p) => progress.push(p),
      worker: { concurrency: 1 },
      progressMs: 500,
    });
    expect(res.taskErrors).toEqual([]);
    expect(res.spec.images[EVAL_INSTANCE]).toMatch(/^forager\/sweb-prebuilt:/);
    expect(progress.at(-1)?.phase).toBe("ready");
    expect(res.summary).toMatchObject({ tasks: 1, trajectories: 1, resolved: 1, failed: 0 });
  }, 600_000);

  it("a registry that does not answer: retried, then forager says so and builds instead", async () => {
    const deadHost = "127.0.0.1:9"; // discard port: nothing listens
    const sleeps: number[] = [];
    await expect(pullImage(`${deadHost}/swebench/x:latest`, { attempts: 2, sleep: async (ms) => void sleeps.push(ms) })).rejects.toBeInstanceOf(PrebuiltUnavailableError);
    expect(sleeps).toEqual([2000]);
    const dataset = path.join(tmp, "dataset-fallback.jsonl");
    fs.writeFileSync(dataset, JSON.stringify(harnessRow()) + "\n");
    const table = path.join(tmp, "specs.json");
    fs.writeFileSync(table, JSON.stringify(evalSpecTable()));
    const progress: PrebuiltProgress[] = [];
    const run = await runEvaluation({
      dataset,
      predictions: "gold",
      runId: "prebuilt-fallback",
      out: path.join(tmp, "eval"),
      repos: path.join(tmp, "repos"),
      specTable: table,
      prebuilt: { ...parseImagesOption(`swebench=${deadHost}/swebench`, {})!, attempts: 1 },
      onPrebuilt: (p) => progress.push(p),
      build: { stateDir: path.join(tmp, "state") },
    });
    expect(progress.find((p) => p.phase === "fallback")?.message).toMatch(/pull of 127\.0\.0\.1:9\/swebench\/sweb\.eval\.x86_64\.example_1776_evalpkg-1:latest failed: .*; building the instance image instead/);
    expect(run.results[0]).toMatchObject({ outcome: "pass", resolved: true });
    expect(run.results[0]!.image).not.toMatch(/sweb-prebuilt/);
  }, 600_000);
});
