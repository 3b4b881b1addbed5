/**
 * The set-up agent of `forager images infer --model-url` (infer/setup-agent.ts,
 * infer/setup.ts): the proposal's schema and application without Docker; in Docker, a
 * created repository whose suite the heuristics cannot make run (its conftest needs an
 * environment variable), an episode driven by a scripted OpenAI-compatible server on loopback,
 * and inference checking the proposal like any other spec; and a build that fails (a pip sdist
 * from a loopback index needs a switch), where the agent works in a workbench image.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { DebianMapper } from "../infer/debian";
import { buildError, inferImage } from "../infer/run";
import { repairPipBuild } from "../infer/spec";
import { applySetupProposal, parseSetupProposal, SETUP_FILE, workbenchSpec } from "../infer/setup";
import { ImageSpecSchema } from "../images/spec";
import { addedFileContent, modelSetupAgent, setupTask } from "../infer/setup-agent";
import { dockerUp } from "./helpers/docker-probe";
import { makeRepo } from "./helpers/git-fixtures";
import { startTestIndex } from "./helpers/pip-index";
import { startScriptedServer } from "./helpers/scripted-server";

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "forager-setup-agent-"));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const spec = ImageSpecSchema.parse({ repo: "x/pkg", commit: "abc1234", source: { type: "path", path: "/x" }, testCommand: "pytest -rA", logParser: "pytest", systemPackages: ["python3-pytest"] });

describe("set-up proposals", () => {
  it("parses a proposal, naming the field and the file of a bad one; refuses one that changes nothing", () => {
    expect(parseSetupProposal('{"env": {"MODE": "test"}, "note": "conftest"}')).toMatchObject({ env: { MODE: "test" }, systemPackages: [], install: [] });
    expect(() => parseSetupProposal('{"systemPackages": ["Bad Name"]}')).toThrow(/\.forager-setup\.json: systemPackages\.0/);
    expect(() => parseSetupProposal('{"testCommand": "pytest", "extra": 1}')).toThrow(/\.forager-setup\.json/);
    expect(() => parseSetupProposal("not json")).toThrow(/not JSON/);
    expect(() => parseSetupProposal('{"note": "nothing"}')).toThrow(/proposes no change/);
  });

  it("applies a proposal with one provenance line per change", () => {
    const p = parseSetupProposal('{"testCommand": "pytest -rA tests", "systemPackages": ["python3-pytest", "python3-yaml"], "env": {"MODE": "test"}, "install": ["make gen"]}');
    const a = applySetupProposal(spec, p);
    expect(a.spec).toMatchObject({ testCommand: "pytest -rA tests", systemPackages: ["python3-pytest", "python3-yaml"], env: { MODE: "test" }, install: ["make gen"] });
    expect(a.changes).toEqual(["test command → pytest -rA tests", "add python3-yaml", "env MODE=test", "install + make gen"]);
    expect(applySetupProposal(a.spec, p).changes).toEqual(["install + make gen"]);
  });

  it("reads the proposal file out of a submitted diff, and only that file", () => {
    const patch = `diff --git a/src.py b/src.py\n--- a/src.py\n+++ b/src.py\n@@ -1 +1 @@\n-a\n+b\ndiff --git a/${SETUP_FILE} b/${SETUP_FILE}\nnew file mode 100644\n--- /dev/null\n+++ b/${SETUP_FILE}\n@@ -0,0 +1,3 @@\n+{\n+  "env": {"MODE": "test"}\n+}\n`;
    expect(JSON.parse(addedFileContent(patch, SETUP_FILE)!)).toEqual({ env: { MODE: "test" } });
    expect(addedFileContent(patch.split(`diff --git a/${SETUP_FILE}`)[0]!, SETUP_FILE)).toBeUndefined();
  });

  it("the agent's task names the failure and the file to write, never a hidden test", () => {
    const t = setupTask({ repo: "x/pkg", commit: "abc1234", spec, log: "E   RuntimeError: set MODE\nno tests ran" });
    expect(t.problemStatement).toContain("RuntimeError: set MODE");
    expect(t.problemStatement).toContain(SETUP_FILE);
    expect(t.failToPass).toEqual([]);
    const b = setupTask({ repo: "x/pkg", commit: "abc1234", spec: { ...spec, pythonPackages: ["fastlib"] }, log: "fatal error: x.h: No such file", buildFailedAt: "pythonPackages (1)" });
    expect(b.problemStatement).toMatch(/did not build[\s\S]*pythonPackages \(1\) \(pip installs: fastlib\)[\s\S]*x\.h/);
  });

  it("the workbench of a failed build drops what can fail: pip, preInstall, install; the env's extra packages only when the env failed", () => {
    const s = { ...spec, systemPackages: ["python3-pytest", "libfoo-dev"], pythonPackages: ["fastlib"], preInstall: ["make deps"], install: ["pip install -e ."] };
    expect(workbenchSpec(s, "env", ["python3-pytest"])).toMatchObject({ systemPackages: ["python3-pytest"], pythonPackages: [], preInstall: [], install: [] });
    expect(workbenchSpec(s, "instance", ["python3-pytest"])).toMatchObject({ systemPackages: ["python3-pytest", "libfoo-dev"], pythonPackages: ["fastlib"], install: [] });
  });
});

describe("build repairs in pip mode", () => {
  it("a C extension gets the compiler and Python's headers; a known header its package; an unknown one nothing", () => {
    const mapper = new DebianMapper({ packageNames: [] });
    const s = { ...spec, pythonPackages: ["fastlib"] };
    const gcc = repairPipBuild(s, "      error: command '/usr/bin/x86_64-linux-gnu-gcc' failed: No such file or directory", mapper)!;
    expect(gcc.spec.systemPackages).toEqual(expect.arrayContaining(["build-essential", "python3-dev"]));
    const z = repairPipBuild(s, "      fastlib/_z.c:1:10: fatal error: zlib.h: No such file or directory", mapper)!;
    expect(z.changes[0]!.change).toMatch(/^add zlib1g-dev build-essential python3-dev \(zlib\.h comes from zlib1g-dev\)/);
    expect(repairPipBuild(s, "fatal error: forager_private.h: No such file or directory", mapper)).toBeUndefined();
    expect(buildError("  error: subprocess-exited-with-error\n      x.c:1:10: fatal error: forager_private.h: No such file or directory\n  error: metadata-generation-failed")).toBe("x.c:1:10: fatal error: forager_private.h: No such file or directory");
  });
});

const docker = dockerUp();

describe.skipIf(!docker)("the set-up agent in Docker", () => {
  it(
    "heuristics give up on a conftest that needs a variable; the scripted agent's proposal is built, run and accepted",
    async () => {
      const r = makeRepo(path.join(tmp, "needsenv"), {
        "pyproject.toml": '[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n\n[project]\nname = "envpkg"\nversion = "0.1"\n',
        "envpkg/__init__.py": "def triple(x):\n    return 3 * x\n",
        "tests/conftest.py": 'import os\n\nif os.environ.get("ENVPKG_MODE") != "test":\n    raise RuntimeError("set ENVPKG_MODE=test to run the suite")\n',
        "tests/test_triple.py": "from envpkg import triple\n\ndef test_triple():\n    assert triple(2) == 6\n",
      });
      const proposal = JSON.stringify({ env: { ENVPKG_MODE: "test" }, note: "tests/conftest.py needs ENVPKG_MODE=test" });
      const prompts: string[] = [];
      const server = await startScriptedServer({
        handler: (req) => {
          prompts.push(JSON.stringify(req.body));
          const n = prompts.length;
          if (n === 1) return { text: `Read the conftest.\n</think>\n<tool: bash>\ncd /testbed && cat tests/conftest.py\n</tool>` };
          if (n === 2)
            return {
              text: `It needs a variable.\n</think>\n<tool: bash>\ncd /testbed && printf '%s' '${proposal}' > ${SETUP_FILE} && git add -N ${SETUP_FILE} && git diff -- ${SETUP_FILE} > /tmp/setup.patch && ENVPKG_MODE=test pytest -q\n</tool>`,
            };
          if (n === 3) return { text: "Submit it.\n</think>\n<tool: submit>\n/tmp/setup.patch\n</tool>" };
          return { text: "Done.\n</think>\nThe suite runs with ENVPKG_MODE=test." };
        },
      });
      try {
        const stateDir = path.join(tmp, "state");
        const agent = modelSetupAgent({ modelUrl: [server.url], trajectoryDir: path.join(tmp, "traj") });
        const o = await inferImage({ repo: r.dir, name: "example/envpkg", out: path.join(tmp, "envpkg.json"), stateDir, flakyRuns: 0, maxAttempts: 2, setupAgent: agent });
        expect(o.result.accepted).toBe(true);
        expect(o.result.reason).toMatch(/1\/1 pass/);
        expect(o.inferred!.spec.env.ENVPKG_MODE).toBe("test");
        const byAgent = o.inferred!.provenance.changes.filter((c) => c.trigger.startsWith("set-up agent"));
        expect(byAgent.map((c) => c.change)).toEqual(["env ENVPKG_MODE=test"]);
        expect(byAgent[0]!.trigger).toMatch(/trajectory [0-9a-f-]{36}\): tests\/conftest\.py needs ENVPKG_MODE=test/);
        // The agent saw the failure; its episode is recorded like any other.
        const traj = fs.readFileSync(path.join(tmp, "traj", "setup.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l) as { endReason: string; turns: unknown[]; prompt: { user: string } });
        expect(traj[0]!.prompt.user).toContain("set ENVPKG_MODE=test to run the suite");
        expect(traj).toHaveLength(1);
        expect(traj[0]).toMatchObject({ endReason: "final_answer" });
        expect(traj[0]!.turns).toHaveLength(4);
      } finally {
        await server.close();
      }
    },
    900_000,
  );

  it(
    "a build the heuristics cannot repair (an sdist's private header): the agent works in a workbench image and its proposal makes the build pass",
    async () => {
      const r = makeRepo(path.join(tmp, "needsbuild"), {
        "setup.py": 'from setuptools import setup\nsetup(name="fastpkg", version="0.1", packages=["fastpkg"], install_requires=["forager-speedups"])\n',
        "fastpkg/__init__.py": "from speedups import fast\n",
        "tests/test_fast.py": "from fastpkg import fast\n\ndef test_fast():\n    assert fast(1) == 2\n",
      });
      // An sdist with an optional C extension and a pure-Python switch, as msgpack or yarl have.
      const index = await startTestIndex([
        {
          name: "forager-speedups",
          version: "1.0",
          uploaded: "2020-01-01T00:00:00Z",
          files: { "speedups/__init__.py": "def fast(x):\n    return x + 1\n" },
          setupPy:
            'import os, sys\nfrom setuptools import setup\nif os.environ.get("SPEEDUPS_PURE_PYTHON") != "1":\n    sys.exit("speedups/_ext.c:1:10: fatal error: forager_private.h: No such file or directory")\nsetup(name="forager-speedups", version="1.0", packages=["speedups"])\n',
        },
      ]);
      const proposal = JSON.stringify({ env: { SPEEDUPS_PURE_PYTHON: "1" }, note: "forager-speedups builds without its C extension" });
      let calls = 0;
      const server = await startScriptedServer({
        handler: () => {
          calls++;
          if (calls === 1)
            return { text: `Write the proposal.\n</think>\n<tool: bash>\ncd /testbed && printf '%s' '${proposal}' > ${SETUP_FILE} && git add -N ${SETUP_FILE} && git diff -- ${SETUP_FILE} > /tmp/setup.patch && python -c 'import fastpkg' ; ls\n</tool>` };
          if (calls === 2) return { text: "Submit it.\n</think>\n<tool: submit>\n/tmp/setup.patch\n</tool>" };
          return { text: "Done.\n</think>\nSPEEDUPS_PURE_PYTHON=1." };
        },
      });
      try {
        const o = await inferImage({
          repo: r.dir,
          name: "example/fastpkg",
          out: path.join(tmp, "fastpkg.json"),
          stateDir: path.join(tmp, "state"),
          flakyRuns: 0,
          maxAttempts: 1,
          pipIndex: index.url,
          extraEnv: { FORAGER_TEST_NONCE: String(Date.now()) },
          setupAgent: modelSetupAgent({ modelUrl: [server.url], trajectoryDir: path.join(tmp, "traj-build") }),
        });
        expect(o.result.reason).toMatch(/1\/1 pass/);
        expect(o.result.accepted).toBe(true);
        expect(o.result.attempts).toBe(2);
        const byAgent = o.inferred!.provenance.changes.filter((c) => c.trigger.startsWith("set-up agent"));
        expect(byAgent.map((c) => c.change)).toEqual(["env SPEEDUPS_PURE_PYTHON=1"]);
        const traj = JSON.parse(fs.readFileSync(path.join(tmp, "traj-build", "setup.jsonl"), "utf8").trim().split("\n")[0]!) as { prompt: { user: string } };
        expect(traj.prompt.user).toMatch(/did not build[\s\S]*pythonPackages/);
        expect(traj.prompt.user).toContain("forager_private.h");
      } finally {
        await server.close();
        await index.close();
      }
    },
    900_000,
  );

  it(
    "an agent whose episode submits nothing leaves the rejection as it was, with the reason in the provenance",
    async () => {
      const r = makeRepo(path.join(tmp, "needsenv2"), {
        "pyproject.toml": '[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n\n[project]\nname = "envpkg2"\nversion = "0.1"\n',
        "envpkg2/__init__.py": "",
        "tests/conftest.py": 'raise RuntimeError("never runs")\n',
        "tests/test_x.py": "def test_x():\n    pass\n",
      });
      const server = await startScriptedServer({ handler: () => ({ text: "I give up.\n</think>\nNo idea." }) });
      try {
        const o = await inferImage({ repo: r.dir, name: "example/envpkg2", out: path.join(tmp, "envpkg2.json"), stateDir: path.join(tmp, "state"), flakyRuns: 0, maxAttempts: 1, setupAgent: modelSetupAgent({ modelUrl: [server.url] }) });
        expect(o.result.accepted).toBe(false);
        expect(o.result.reason).toMatch(/no tests collected/);
        const c = o.inferred!.provenance.changes.find((x) => x.trigger.startsWith("set-up agent"));
        expect(c?.change).toMatch(/^no proposal: no patch submitted/);
      } finally {
        await server.close();
      }
    },
    900_000,
  );
});
