import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";

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
