import { beforeAll, describe, expect, it } from "vitest";
import type { Sandbox } from "../sandbox/sandbox";
import { bashTool } from "../tools/bash";
import { createTool } from "../tools/create";
import { EDIT_PARSE_ERROR, editTool } from "../tools/edit";
import { submitTool } from "../tools/submit";
import { sandboxFactory } from "./helpers/sandbox";

const newSandbox = sandboxFactory();
let sb: Sandbox;

const FILE = ["def f(x):", "    if x:", "        return 1", "    return 2", "", "def g():", "    return 1", ""].join("\n");

beforeAll(async () => {
  // An image without Python is not needed to prove the point: the tools never call python.
  sb = await newSandbox({ commandTimeoutSeconds: 3, outputLimitBytes: 4096 });
  await sb.run("mkdir -p /repo && cd /repo && git init -q && git config user.email t@t && git config user.name t");
});

const edit = (arg: string) => editTool.run(sb, arg);

describe("bash tool", () => {
  it("returns the output only, not the exit code", async () => {
    expect(await bashTool.run(sb, "echo hi; false")).toMatchObject({ output: "hi", success: true });
  });
  it("says why the session was restarted", async () => {
    const t = await bashTool.run(sb, "sleep 20");
    expect(t).toMatchObject({ success: false });
    expect(t.output).toBe("The current session has terminated due to timeout. A fresh session has started with the current working directory reset to default.");
    const o = await bashTool.run(sb, "yes");
    expect(o.output).toBe("The current session has terminated because your previous command produced too much output. A fresh session has started with the current working directory reset to default.");
    const e = await bashTool.run(sb, "exit");
    expect(e.output).toBe("The current session has terminated unexpectedly. A fresh session has started with the current working directory reset to default.");
    await sb.run("cd /repo");
  });
});

describe("edit tool", () => {
  it("replaces a unique block and shows numbered context", async () => {
    await sb.writeFile("/repo/m.py", FILE);
    const r = await edit("m.py\n<<<<<<< SEARCH\n    if x:\n        return 1\n=======\n    if x > 0:\n        return 10\n>>>>>>> REPLACE");
    expect(r.success).toBe(true);
    expect(r.output).toBe(
      "File m.py has been successfully updated at line 2 and now contains 8 lines. The surrounding lines after the edit are shown below:\n" +
        "     1\tdef f(x):\n     2\t    if x > 0:\n     3\t        return 10\n     4\t    return 2\n     5\t\n     6\tdef g():\n     7\t    return 1\n     8\t\n" +
        "Review the changes and make sure they are as expected.",
    );
    expect((await sb.readFile("/repo/m.py")).toString()).toBe(FILE.replace("if x:\n        return 1", "if x > 0:\n        return 10"));
  });

  it("hints at indentation, and lists the lines of several occurrences", async () => {
    await sb.writeFile("/repo/m.py", FILE);
    const r = await edit("m.py\n<<<<<<< SEARCH\n  if x:\n=======\n  if y:\n>>>>>>> REPLACE");
    expect(r.output).toBe("No replacement was performed, the search lines did not appear verbatim in m.py. The search lines must exactly match one or more consecutive lines from the file, with indentations preserved.");
    const m = await edit("m.py\n<<<<<<< SEARCH\n    return\n=======\n    pass\n>>>>>>> REPLACE");
    expect(m).toMatchObject({ success: false });
    expect(m.output).toBe("No replacement was performed. Multiple occurrences of the search text in lines [4, 7] of m.py. Please ensure it is unique.");
  });

  it("reports a missing match without the hint when the first line is absent", async () => {
    const r = await edit("m.py\n<<<<<<< SEARCH\nnot here\n=======\nx\n>>>>>>> REPLACE");
    expect(r.output).toBe("No replacement was performed, the search lines did not appear verbatim in m.py.");
  });

  it("rejects a bad block, two blocks and a missing path", async () => {
    expect((await edit("m.py\nSEARCH x REPLACE y")).output).toBe(EDIT_PARSE_ERROR);
    const two = "m.py\n<<<<<<< SEARCH\na\n=======\nb\n>>>>>>> REPLACE\nm.py\n<<<<<<< SEARCH\nc\n=======\nd\n>>>>>>> REPLACE";
    expect((await edit(two)).output).toBe("Only one search/replace block is allowed. Got: 2.");
    expect((await edit("nope.py\n<<<<<<< SEARCH\na\n=======\nb\n>>>>>>> REPLACE")).output).toBe(
      "The path nope.py does not exist. Please provide a valid path.",
    );
  });

  it("deletes lines with an empty replacement and keeps the file mode", async () => {
    await sb.writeFile("/repo/run.sh", "#!/bin/sh\necho a\necho b\n");
    await sb.run("chmod 755 /repo/run.sh");
    const r = await edit("run.sh\n<<<<<<< SEARCH\necho a\n=======\n\n>>>>>>> REPLACE");
    expect(r.success).toBe(true);
    expect((await sb.readFile("/repo/run.sh")).toString()).toBe("#!/bin/sh\n\necho b\n");
    expect((await sb.run("stat -c %a /repo/run.sh")).output).toBe("755");
  });

  it("works in a directory given by an absolute path and with CRLF files", async () => {
    await sb.writeFile("/tmp/crlf.txt", "a\r\nb\r\n");
    const r = await edit("/tmp/crlf.txt\n<<<<<<< SEARCH\nb\n=======\nc\n>>>>>>> REPLACE");
    expect(r.success).toBe(true);
    expect((await sb.readFile("/tmp/crlf.txt")).toString()).toBe("a\nc\n");
  });
});

describe("create tool", () => {
  it("creates a file relative to the session's cwd", async () => {
    const r = await createTool.run(sb, "pkg_new.py\nline1\nline2");
    expect(r).toMatchObject({ success: true, output: "File created successfully at: pkg_new.py (2 lines)." });
    expect((await sb.readFile("/repo/pkg_new.py")).toString()).toBe("line1\nline2");
  });
  it("refuses an existing path, an empty path and a missing parent", async () => {
    expect((await createTool.run(sb, "pkg_new.py\nx")).output).toBe("pkg_new.py already exists. Cannot create a new file at an existing path.");
    expect((await createTool.run(sb, "\nx")).output).toBe("Path is empty. Please provide a valid path.");
    expect((await createTool.run(sb, "no/such/dir/f.py\nx")).output).toBe(
      "File creation failed. The parent directory /repo/no/such/dir does not exist.",
    );
  });
  it("creates an empty file from a path alone", async () => {
    expect((await createTool.run(sb, "/tmp/empty.txt")).output).toBe("File created successfully at: /tmp/empty.txt (1 lines).");
    expect((await sb.readFile("/tmp/empty.txt")).length).toBe(0);
  });
});

describe("submit tool", () => {
  it("echoes a git diff back inside <submission> and keeps the exact patch", async () => {
    await sb.run("cd /repo && git add -A && git commit -qm base && echo 'x = 1' >> m.py && git diff > fix.patch");
    const r = await submitTool.run(sb, "fix.patch\n");
    expect(r.success).toBe(true);
    const patch = (await sb.readFile("/repo/fix.patch")).toString();
    expect(r.metadata?.patch).toBe(patch);
    expect(r.output).toBe(
      `The following patch content is marked as your final submission:\n\n<submission>\n${patch.slice(0, -1)}\n</submission>\n\n` +
        "Review the patch content and ensure it correctly resolves the issue. If necessary, you can continue refining the patch and submit an updated version.",
    );
  });
  it("refuses a missing, an empty and a non-diff file", async () => {
    expect((await submitTool.run(sb, "missing.patch")).output).toBe("Failed to submit missing.patch. Make sure it exists and is readable.");
    await sb.run("cd /repo && : > empty.patch && echo hello > notdiff.patch");
    expect((await submitTool.run(sb, "empty.patch")).output).toBe("Failed to submit empty.patch. It is an empty file.");
    expect((await submitTool.run(sb, "notdiff.patch")).output).toBe("Failed to submit notdiff.patch. It is not a valid diff file.");
  });

  it("refuses a patch file over the size cap with a tool error, without reading it", async () => {
    const made = await sb.run("{ echo 'diff --git a/x b/x'; head -c 600000000 /dev/zero | tr '\\0' 'a'; } > /repo/huge.patch", { timeoutSeconds: 300 });
    expect(made.status).toBe("ok");
    await sb.run("cd /repo");
    const before = process.memoryUsage().rss;
    const r = await submitTool.run(sb, "huge.patch");
    expect(r.success).toBe(false);
    expect(r.output).toMatch(/^Failed to submit huge\.patch\. It is 6000000\d\d bytes; a submission may be at most 4194304 bytes\.$/);
    expect(process.memoryUsage().rss - before).toBeLessThan(100 * 1024 * 1024);
    await sb.run("rm -f /repo/huge.patch");
  });
});

describe("tools without python", () => {
  it("edit, create and submit work when the image has no python", async () => {
    const bare = await newSandbox();
    // Hide python for this sandbox: the tools must not need it.
    await bare.run("rm -f /usr/bin/python3* /usr/local/bin/python3* ; ! command -v python3");
    expect((await bare.run("command -v python3 || echo none")).output).toBe("none");
    await bare.run("mkdir /w && cd /w && git init -q && git config user.email t@t && git config user.name t && printf 'a\\nb\\n' > f && git add f && git commit -qm b");
    expect((await editTool.run(bare, "f\n<<<<<<< SEARCH\nb\n=======\nc\n>>>>>>> REPLACE")).success).toBe(true);
    expect((await createTool.run(bare, "g\nnew")).success).toBe(true);
    await bare.run("git add -N g && git diff > p.diff");
    expect((await submitTool.run(bare, "p.diff")).success).toBe(true);
  });
});
