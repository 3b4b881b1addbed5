import { execFile } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, describe, expect, it } from "vitest";

const run = promisify(execFile);
const forager = (...args: string[]) => run("bin/forager", args, { encoding: "utf8" }).catch((e: { stdout: string; code: number }) => ({ stdout: e.stdout, stderr: "", code: e.code }));

describe("forager CLI", () => {
  it("doctor checks the engine, API version, disk, base image and Redis, with a fix for each failure", async () => {
    const r = await forager("doctor", "--redis", "redis://127.0.0.1:1");
    expect(r.stdout).toMatch(/ok\s+docker engine\s+Docker /);
    expect(r.stdout).toMatch(/ok\s+docker API\s+API 1\.\d+/);
    expect(r.stdout).toMatch(/free disk \(work dir\)\s+[\d.]+ GiB free/);
    expect(r.stdout).toMatch(/ok\s+base image\s+forager\/base:/);
    // An unreachable Redis is a warning with what to do, not a failure.
    expect(r.stdout).toMatch(/warn\s+redis\s+redis:\/\/127\.0\.0\.1:1: .*\n\s+→ .*redis-server/);
  });

  it("doctor names the fix when the engine does not answer", async () => {
    const r = await run("bin/forager", ["doctor"], { encoding: "utf8", env: { ...process.env, DOCKER_HOST: "unix:///nonexistent.sock" } }).catch(
      (e: { stdout: string; code: number }) => ({ stdout: e.stdout, code: e.code }),
    );
    expect(r.stdout).toMatch(/FAIL\s+docker engine/);
    expect(r.stdout).toMatch(/→ start one: apt-get install -y docker.io/);
    expect((r as { code?: number }).code).toBe(1);
  });

  it("images base reports the existing base image", async () => {
    const r = await forager("images", "base");
    expect(r.stdout).toMatch(/^present: forager\/base:/m);
  });

  it("demo runs the four tools in a sandbox", async () => {
    const r = await forager("demo");
    expect(r.stdout).toMatch(/turn 2: edit/);
    expect(r.stdout).toMatch(/File created successfully at: test_calc.py/);
    expect(r.stdout).toMatch(/test passed/);
    expect(r.stdout).toMatch(/<submission>/);
    expect(r.stdout).toMatch(/sandbox removed/);
  });
});

/** Run the CLI; resolves with stdout, stderr and the exit code (0 on success). */
const cli = (...args: string[]) =>
  run("bin/forager", args, { encoding: "utf8" }).then(
    (r) => ({ ...r, code: 0 }),
    (e: { stdout: string; stderr: string; code: number }) => ({ stdout: e.stdout, stderr: e.stderr, code: e.code }),
  );

describe("forager CLI: bad input exits non-zero and says why", () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "forager-cli-bad-"));
  afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));
  const file = (name: string, text: string | Buffer) => {
    const p = path.join(tmp, name);
    fs.writeFileSync(p, text);
    return p;
  };
  const row = (id: string, over: Record<string, unknown> = {}) =>
    JSON.stringify({
      instance_id: id,
      repo: "sympy/sympy",
      base_commit: "e7fd69d051eaa67cb17f172a39b57253e9cb831a",
      patch: "",
      test_patch: "",
      problem_statement: "p",
      FAIL_TO_PASS: "[]",
      PASS_TO_PASS: "[]",
      version: "1.7",
      ...over,
    });

  it("eval: an empty dataset, a dataset whose every row is rejected", async () => {
    const empty = await cli("eval", "--dataset", file("empty.jsonl", "\n"), "--predictions", "gold", "--out", tmp);
    expect(empty.code).not.toBe(0);
    expect(empty.stderr).toMatch(/empty\.jsonl: empty \(no record\)/);
    const rejected = await cli("eval", "--dataset", file("rejected.jsonl", [row("a__a-1", { base_commit: "no" }), JSON.stringify({ repo: "x/y" })].join("\n")), "--predictions", "gold", "--out", tmp);
    expect(rejected.code).not.toBe(0);
    expect(rejected.stderr).toMatch(/no valid row, every record was rejected; 2 error\(s\)/);
    expect(rejected.stderr).toMatch(/rejected\.jsonl:2: row: instance_id: missing/);
  });

  it("eval: no valid prediction; unknown --instances ids", async () => {
    const ds = file("ds.jsonl", [row("sympy__sympy-1"), row("sympy__sympy-2")].join("\n"));
    const preds = await cli("eval", "--dataset", ds, "--predictions", file("p.jsonl", '{"model_patch": "x"}\n'), "--out", tmp);
    expect(preds.code).not.toBe(0);
    expect(preds.stderr).toMatch(/no valid prediction; 1 error\(s\).*instance_id: missing/);
    const ids = file("ids.txt", "sympy__sympy-1\nsympy__sympy-9\n");
    const unknown = await cli("eval", "--dataset", ds, "--predictions", "gold", "--instances", `@${ids}`, "--out", tmp);
    expect(unknown.code).not.toBe(0);
    expect(unknown.stderr).toMatch(/--instances: not in the dataset .*: sympy__sympy-9$/m);
  });

  it("forage: no task in the files, unknown --instances", async () => {
    const empty = await cli("forage", "--tasks", file("none.jsonl", "garbage\n"), "--samples", "1", "--out", path.join(tmp, "run1"));
    expect(empty.code).not.toBe(0);
    expect(empty.stderr).toMatch(/none\.jsonl:1: invalid JSON/);
    expect(empty.stderr).toMatch(/no task to run from .*every record was rejected/);
    expect(fs.existsSync(path.join(tmp, "run1"))).toBe(false);
    const ds = file("ds2.jsonl", [row("sympy__sympy-1"), row("sympy__sympy-2")].join("\n"));
    const unknown = await cli("forage", "--tasks", ds, "--instances", "sympy__sympy-2,nope__nope-1", "--samples", "1", "--out", path.join(tmp, "run2"));
    expect(unknown.code).not.toBe(0);
    expect(unknown.stderr).toMatch(/unknown instance id\(s\), not among the 2 loaded task\(s\): nope__nope-1/);
    expect(fs.existsSync(path.join(tmp, "run2"))).toBe(false);
  });

  it("tasks mutate --out EXISTING without --resume refuses and leaves the file as it was", async () => {
    const out = file("tasks.jsonl", '{"id": "t1"}\n{"id": "t2"}\n');
    const before = fs.readFileSync(out, "utf8");
    const r = await cli("tasks", "mutate", "--repo", path.join(tmp, "no-such-repo"), "--commit", "abc1234", "--out", out);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/already holds 2 line\(s\): pass --resume/);
    expect(fs.readFileSync(out, "utf8")).toBe(before);
  });
});
