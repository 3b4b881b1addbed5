/**
 * The tools against sandbox/runtime.ts's Runtime contract, on the in-memory runtime (no Docker):
 * what edit, create, submit and bash do to files and what they tell the model. The same tools on a
 * real container are covered by tools.test.ts.
 */
import { describe, expect, it } from "vitest";
import { MemoryRuntime } from "../sandbox/memory";
import { bashTool } from "../tools/bash";
import { createTool } from "../tools/create";
import { editTool } from "../tools/edit";
import { MAX_SUBMISSION_BYTES, submitTool } from "../tools/submit";

describe("tools on an in-memory Runtime", () => {
  it("edit replaces a unique block relative to the cwd and writes LF", async () => {
    const rt = new MemoryRuntime({ files: { "pkg/m.py": "def f(x):\r\n    if x:\r\n        return 1\r\n    return 0\r\n" } });
    const r = await editTool.run(rt, "pkg/m.py\n<<<<<<< SEARCH\n    if x:\n        return 1\n=======\n    if x > 0:\n        return 10\n>>>>>>> REPLACE");
    expect(r.success).toBe(true);
    expect(rt.text("/testbed/pkg/m.py")).toBe("def f(x):\n    if x > 0:\n        return 10\n    return 0\n");
  });

  it("edit refuses an ambiguous block and leaves the file as it was", async () => {
    const before = "a\nx\nb\nx\n";
    const rt = new MemoryRuntime({ files: { "m.txt": before } });
    const r = await editTool.run(rt, "m.txt\n<<<<<<< SEARCH\nx\n=======\ny\n>>>>>>> REPLACE");
    expect(r.success).toBe(false);
    expect(r.output).toMatch(/\b2\b|lines? 2.*4/);
    expect(rt.text("m.txt")).toBe(before);
  });

  it("edit refuses binary content and a directory", async () => {
    const rt = new MemoryRuntime({ files: { "b.bin": Buffer.from([0xff, 0xfe, 0x00]), "d/f": "" } });
    expect((await editTool.run(rt, "b.bin\n<<<<<<< SEARCH\na\n=======\nb\n>>>>>>> REPLACE")).success).toBe(false);
    const dir = await editTool.run(rt, "d\n<<<<<<< SEARCH\na\n=======\nb\n>>>>>>> REPLACE");
    expect(dir.success).toBe(false);
    expect(dir.output).toContain("directory");
  });

  it("create follows the session's cwd and refuses an existing path or a missing parent", async () => {
    const rt = new MemoryRuntime({ files: { "src/a.py": "" } });
    rt.chdir("src");
    expect((await createTool.run(rt, "b.py\nprint(1)\n")).success).toBe(true);
    expect(rt.text("/testbed/src/b.py")).toBe("print(1)\n");
    expect((await createTool.run(rt, "a.py\nx")).success).toBe(false);
    expect((await createTool.run(rt, "nowhere/c.py\nx")).output).toContain("does not exist");
    expect(rt.files.has("/testbed/src/nowhere/c.py")).toBe(false);
  });

  it("submit keeps the exact patch and refuses empty, non-diff and oversized files", async () => {
    const patch = "diff --git a/m.py b/m.py\n--- a/m.py\n+++ b/m.py\n@@ -1 +1 @@\n-a\n+b\n";
    const rt = new MemoryRuntime({ files: { "p.diff": patch, "e.diff": "  \n", "n.txt": "hello", "big.diff": Buffer.alloc(MAX_SUBMISSION_BYTES + 1, 0x61) } });
    const ok = await submitTool.run(rt, "p.diff");
    expect(ok.success).toBe(true);
    expect(ok.metadata?.patch).toBe(patch);
    expect((await submitTool.run(rt, "e.diff")).success).toBe(false);
    expect((await submitTool.run(rt, "n.txt")).success).toBe(false);
    expect((await submitTool.run(rt, "missing.diff")).success).toBe(false);
    const big = await submitTool.run(rt, "big.diff");
    expect(big.success).toBe(false);
    expect(big.output).toContain(String(MAX_SUBMISSION_BYTES));
  });

  it("bash passes the command to the session and reports a timeout", async () => {
    const rt = new MemoryRuntime({ shell: (c) => (c === "sleep 99" ? { status: "timeout", exitCode: null, output: "" } : { output: `ran ${c}` }) });
    expect((await bashTool.run(rt, "ls")).output).toContain("ran ls");
    const t = await bashTool.run(rt, "sleep 99");
    expect(t.output.toLowerCase()).toContain("time");
    expect(rt.commands).toEqual(["ls", "sleep 99"]);
  });
});
