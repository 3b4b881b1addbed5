import { execFileSync, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync, mkdirSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { dockerClient } from "../sandbox/docker";
import { LABELS } from "../sandbox/config";
import { reapSandboxes } from "../sandbox/reaper";
import { runInImage } from "../sandbox/oneshot";
import { Sandbox } from "../sandbox/sandbox";
import { BASE_IMAGE, sandboxFactory } from "./helpers/sandbox";

const newSandbox = sandboxFactory();

describe("session", () => {
  it("keeps state, cwd and environment between commands and reports exit codes", async () => {
    const sb = await newSandbox();
    expect(await sb.run("cd /tmp && export FOO=bar && x=1")).toMatchObject({ status: "ok", exitCode: 0, output: "" });
    const r = await sb.run("pwd; echo $FOO $x; ls /nonexistent");
    expect(r.status).toBe("ok");
    expect(r.exitCode).toBe(2);
    expect(r.output).toMatch(/^\/tmp\nbar 1\nls: cannot access '\/nonexistent'/);
  });

  it("merges stderr, handles multi-line commands, quotes and heredocs", async () => {
    const sb = await newSandbox();
    const r = await sb.run("echo out\necho err >&2\ncat <<'EOF'\nline with 'quotes' and \"dq\" and $HOME\nEOF\nfor i in 1 2; do echo $i; done");
    expect(r.output).toBe("out\nerr\nline with 'quotes' and \"dq\" and $HOME\n1\n2");
    const syntax = await sb.run("if then fi");
    expect(syntax.status).toBe("ok");
    expect(syntax.exitCode).not.toBe(0);
    expect((await sb.run("echo still")).output).toBe("still");
  });

  it("does not hand the session's stdin to commands", async () => {
    const sb = await newSandbox();
    const r = await sb.run("cat; read x; echo done:$x");
    expect(r).toMatchObject({ status: "ok", output: "done:" });
  });

  it("completes a command that leaves a background job holding stdout", async () => {
    const sb = await newSandbox();
    const r = await sb.run("sleep 1000 & echo started");
    expect(r).toMatchObject({ status: "ok", output: "started" });
    expect(r.durationMs).toBeLessThan(30_000);
    expect((await sb.run("echo next")).output).toBe("next");
  });

  it("times out, restarts in the default directory, and the next command works", async () => {
    const sb = await newSandbox({ commandTimeoutSeconds: 2 });
    await sb.run("cd /tmp; export KEEP=1");
    const r = await sb.run("echo before; sleep 30");
    expect(r.status).toBe("timeout");
    expect(r.exitCode).toBeNull();
    const next = await sb.run("pwd; echo [$KEEP]; ps -eo pid,args 2>/dev/null | grep -c 'sleep 30' || true");
    expect(next.status).toBe("ok");
    expect(next.output.split("\n").slice(0, 2)).toEqual([sb.workdir, "[]"]);
    // The old session's processes are gone: no `sleep 30` besides the grep itself.
    const procs = await sb.run("for p in /proc/[0-9]*; do tr '\\0' ' ' 2>/dev/null < $p/cmdline; echo; done 2>/dev/null | grep -c '^sleep 30' || true");
    expect(procs.output.trim()).toBe("0");
    expect(sb.restarts).toBe(1);
  });

  it("keeps its framing secret out of /proc/*/cmdline and /proc/*/environ", async () => {
    const sb = await newSandbox();
    const r = await sb.run("for p in /proc/[0-9]*; do tr '\\0' ' ' 2>/dev/null < $p/cmdline; echo; tr '\\0' '\\n' 2>/dev/null < $p/environ; done 2>/dev/null");
    expect(r.status).toBe("ok");
    expect(r.output).not.toMatch(/__FRG_[0-9a-f]{8}/);
    expect(r.output).toMatch(/bash/);
    // Nor in the shell's functions or variables.
    const f = await sb.run("declare -f; declare -p 2>/dev/null");
    expect(f.status).toBe("ok");
    expect(f.output).not.toMatch(/__FRG_[0-9a-f]{8}/);
    expect((await sb.run("echo still here")).output).toBe("still here");
  });

  it("survives kill -9 -1 and signals to PID 1: the container stays, a fresh session starts", async () => {
    const sb = await newSandbox();
    const r = await sb.run("kill -TERM 1; kill -KILL 1; kill -INT 1; kill -9 -1; sleep 1; echo not reached");
    // The shell that sent the signal survives kill -1 (the caller is spared); the rest is gone.
    expect(["ok", "exited"]).toContain(r.status);
    const next = await sb.run("echo alive; cat /proc/1/cmdline | tr '\\0' ' '");
    expect(next.status).toBe("ok");
    expect(next.output).toMatch(/^alive\n.*bash/);
    expect((await sb.readFile("/etc/hostname")).length).toBeGreaterThan(0);
  });

  it("a restart ends every process the session started, setsid daemons included", async () => {
    const sb = await newSandbox({ commandTimeoutSeconds: 2 });
    await sb.run("setsid sleep 1001 > /dev/null 2>&1 < /dev/null & (setsid sleep 1002 &) ; nohup sleep 1003 > /dev/null 2>&1 &");
    // The three are started in the background: wait (up to 5 s) until each has exec'd sleep.
    const count = "for p in /proc/[0-9]*; do tr '\\0' ' ' 2>/dev/null < $p/cmdline; echo; done 2>/dev/null | grep -c '^sleep 100[123]'";
    const before = await sb.run(`for i in $(seq 50); do n=$(${count}); [ "$n" = 3 ] && break; sleep 0.1; done; echo $n`);
    expect(before.output.trim()).toBe("3");
    expect((await sb.run("sleep 30")).status).toBe("timeout");
    const after = await sb.run("for p in /proc/[0-9]*; do tr '\\0' ' ' 2>/dev/null < $p/cmdline; echo; done 2>/dev/null | grep -c '^sleep 100[123]' || true");
    expect(after.output.trim()).toBe("0");
  });

  it("a filler over the disk bound is stopped, the session restarted and the model told", async () => {
    const sb = await newSandbox({ diskLimitBytes: 200 * 1024 * 1024, diskCheckSeconds: 0.5 });
    // One file: RLIMIT_FSIZE stops it at the bound.
    const one = await sb.run("head -c 400000000 /dev/zero > /tmp/big; echo rc=$?; ls -l /tmp/big | awk '{print $5}'");
    expect(one.status).toBe("ok");
    expect(one.output).toMatch(/File size limit exceeded|rc=1|rc=153/);
    expect(Number(one.output.trim().split("\n").pop())).toBeLessThanOrEqual(200 * 1024 * 1024);
    await sb.run("rm -f /tmp/big");
    // Many files: the watchdog kills the session.
    const many = await sb.run("i=0; while true; do head -c 20000000 /dev/zero > /tmp/f$i; i=$((i+1)); sleep 0.05; done", { timeoutSeconds: 60 });
    expect(many.status).toBe("disk_limit");
    const total = Number((await sb.run("du -sb /tmp | cut -f1")).output.trim());
    expect(total).toBeLessThan(600 * 1024 * 1024);
    expect((await sb.run("rm -f /tmp/f*; echo cleaned")).output).toBe("cleaned");
  });

  it("a per-command timeout overrides the default", async () => {
    const sb = await newSandbox();
    expect((await sb.run("sleep 5", { timeoutSeconds: 1 })).status).toBe("timeout");
  });

  it("caps an output flood without buffering it, then restarts", async () => {
    const sb = await newSandbox({ outputLimitBytes: 64 * 1024 });
    const before = process.memoryUsage().rss;
    // 2 GiB of output: far more than the process could hold if it buffered it.
    const r = await sb.run("head -c 2147483648 /dev/zero | tr '\\0' 'a'");
    expect(r.status).toBe("output_limit");
    expect(r.outputBytes).toBeLessThanOrEqual(64 * 1024);
    expect(r.output.length).toBeLessThanOrEqual(64 * 1024);
    expect(process.memoryUsage().rss - before).toBeLessThan(512 * 1024 ** 2);
    expect((await sb.run("echo ok")).output).toBe("ok");
  });

  it("reports the shell exiting and starts a fresh one, even with a background job alive", async () => {
    const sb = await newSandbox();
    expect((await sb.run("cd /tmp; exit 3")).status).toBe("exited");
    expect(await sb.run("pwd")).toMatchObject({ status: "ok", output: sb.workdir });
    expect((await sb.run("sleep 1000 & exit")).status).toBe("exited");
    expect((await sb.run("echo fresh")).output).toBe("fresh");
  });

  it("decodes binary output, invalid UTF-8 and CR/LF safely", async () => {
    const sb = await newSandbox();
    const r = await sb.run("printf 'a\\r\\nb\\xff\\xfe\\x00c\\n'; printf 'progress 10%%\\rprogress 100%%\\n'; head -c 256 /dev/urandom > /tmp/rnd; cat /tmp/rnd > /dev/null");
    expect(r.status).toBe("ok");
    expect(r.output).toBe("a\nb\uFFFD\uFFFDc\nprogress 100%");
    const bin = await sb.run("cat /tmp/rnd");
    expect(bin.status).toBe("ok");
    expect(bin.output).not.toMatch(/[\x00-\x08]/);
  });

  it("stops a fork bomb with the pids limit, host unharmed", async () => {
    const sb = await newSandbox({ pidsLimit: 64, commandTimeoutSeconds: 5 });
    const hostPidsBefore = Number(readFileSync("/proc/loadavg", "utf8").split(" ")[3]!.split("/")[1]);
    const r = await sb.run("bomb() { bomb | bomb & }; bomb");
    expect(["ok", "timeout", "output_limit"]).toContain(r.status);
    // The sandbox recovers: a fresh command runs.
    let ok = false;
    for (let i = 0; i < 10 && !ok; i++) {
      const again = await sb.run("echo alive", { timeoutSeconds: 5 });
      ok = again.status === "ok" && again.output === "alive";
      if (!ok) await new Promise((res) => setTimeout(res, 1000));
    }
    expect(ok).toBe(true);
    const hostPidsAfter = Number(readFileSync("/proc/loadavg", "utf8").split(" ")[3]!.split("/")[1]);
    expect(hostPidsAfter - hostPidsBefore).toBeLessThan(200);
    const pids = await sb.exec(["cat", "/sys/fs/cgroup/pids.max"]);
    if (pids.exitCode === 0) expect(pids.stdout.toString().trim()).toBe("64");
  });

  it("kills a memory hog at the memory limit; the sandbox survives", async () => {
    const sb = await newSandbox({ memoryBytes: 128 * 1024 ** 2 });
    const r = await sb.run("python3 -c 'x = bytearray(1024*1024*1024); print(len(x))'");
    expect(r.status === "ok" ? r.exitCode : 137).not.toBe(0);
    expect(r.output).not.toContain("1073741824");
    expect((await sb.run("echo alive")).output).toBe("alive");
  });

  it("has no network", async () => {
    const sb = await newSandbox();
    const r = await sb.run("python3 -c \"import socket; socket.create_connection(('127.0.0.1', 9), 2)\" 2>&1; echo rc=$?; cat /proc/net/route | wc -l; ls /sys/class/net");
    expect(r.output).toMatch(/rc=1/);
    expect(r.output).toMatch(/(Network is unreachable|Connection refused|Errno)/);
    expect(r.output.split("\n").at(-1)).toBe("lo");
    const dns = await sb.run("python3 -c \"import socket; socket.getaddrinfo('deb.debian.org', 80)\" 2>&1; echo rc=$?");
    expect(dns.output).toMatch(/rc=1/);
  });

  it("a sandbox and a one-shot container (a reference run) see the same loopback: localhost and ::1 in both, nothing beyond it", async () => {
    const bind = "python3 -c \"import socket; s=socket.socket(socket.AF_INET6); s.bind(('::1', 0)); s.listen(); c=socket.create_connection(s.getsockname()[:2], 2); print('v6 ok')\" 2>&1; echo rc=$?";
    const beyond = "ls /sys/class/net; python3 -c \"import socket; socket.create_connection(('2001:db8::1', 9), 2)\" 2>&1; echo rc=$?";
    const sb = await newSandbox();
    expect((await sb.run(bind)).output).toMatch(/v6 ok\s+rc=0/);
    // localhost resolves to both loopback addresses (a test's server on "localhost").
    const names = "python3 -c \"import socket; print(sorted({a[4][0] for a in socket.getaddrinfo('localhost', 80)}))\"";
    expect((await sb.run(names)).output.trim()).toBe("['127.0.0.1', '::1']");
    expect((await runInImage(BASE_IMAGE, names)).stdout.trim()).toBe("['127.0.0.1', '::1']");
    const r = await sb.run(beyond);
    expect(r.output.split("\n")[0]).toBe("lo");
    expect(r.output).toMatch(/rc=1/);
    const one = await runInImage(BASE_IMAGE, `${bind}; ${beyond}`);
    expect(one.stdout).toMatch(/v6 ok\s+rc=0\s+lo\s[\s\S]*rc=1/);
    expect(one.stdout).not.toMatch(/^eth/m);
  });

  it("runs with dropped capabilities and no-new-privileges", async () => {
    const sb = await newSandbox();
    const r = await sb.run("grep -E '^(CapEff|NoNewPrivs)' /proc/self/status");
    const capEff = BigInt("0x" + /CapEff:\s*([0-9a-f]+)/.exec(r.output)![1]!);
    expect(capEff & (1n << 21n)).toBe(0n); // CAP_SYS_ADMIN
    expect(capEff & (1n << 13n)).toBe(0n); // CAP_NET_RAW
    expect(r.output).toMatch(/NoNewPrivs:\s*1/);
  });
});

describe("sandbox", () => {
  it("labels containers with owner, host, created-at and run id", async () => {
    const sb = await newSandbox({ labels: { [LABELS.run]: "run-x", [LABELS.episode]: "ep-1" } });
    const info = await sb.container.inspect();
    const l = info.Config.Labels;
    expect(l[LABELS.forager]).toBe("1");
    expect(l[LABELS.ownerPid]).toBe(String(process.pid));
    expect(l[LABELS.run]).toBe("run-x");
    expect(l[LABELS.episode]).toBe("ep-1");
    expect(Date.parse(l[LABELS.createdAt]!)).toBeGreaterThan(0);
    expect(info.HostConfig.NetworkMode).toBe("none");
    expect(info.HostConfig.Memory).toBe(4 * 1024 ** 3);
    expect(info.HostConfig.PidsLimit).toBe(1024);
    expect(info.HostConfig.CapDrop).toEqual(["ALL"]);
    expect(info.HostConfig.SecurityOpt).toContain("no-new-privileges");
  });

  it("runs one-off execs with their own timeout, apart from the session", async () => {
    const sb = await newSandbox();
    await sb.run("cd /tmp");
    const r = await sb.exec(["sh", "-c", "pwd; echo err >&2; exit 5"], { workdir: "/etc" });
    expect(r).toMatchObject({ exitCode: 5, timedOut: false });
    expect(r.stdout.toString()).toBe("/etc\n");
    expect(r.stderr.toString()).toBe("err\n");
    const t = await sb.exec(["sleep", "30"], { timeoutSeconds: 1 });
    expect(t.timedOut).toBe(true);
    const s = await sb.exec(["cat"], { stdin: "piped" });
    expect(s.stdout.toString()).toBe("piped");
    expect((await sb.run("pwd")).output).toBe("/tmp");
  });

  it("reads and writes files, binary-safe, relative to the session's cwd", async () => {
    const sb = await newSandbox();
    const bytes = Buffer.from([0, 1, 2, 255, 10, 13, 10, 0x80]);
    await sb.writeFile("/tmp/bin.dat", bytes);
    expect(Buffer.compare(await sb.readFile("/tmp/bin.dat"), bytes)).toBe(0);
    await sb.run("mkdir -p /work && cd /work");
    await sb.writeFile("rel.txt", "relative\n");
    expect((await sb.run("cat /work/rel.txt")).output).toBe("relative");
    expect((await sb.readFile("rel.txt")).toString()).toBe("relative\n");
    await expect(sb.readFile("/nope")).rejects.toThrow(/no such file/);
    const big = Buffer.alloc(3 * 1024 * 1024, 7);
    await sb.writeFile("/tmp/big", big);
    expect((await sb.readFile("/tmp/big")).equals(big)).toBe(true);
    expect(await sb.stat("/work")).toMatchObject({ exists: true, isDir: true });
  });

  it("copies a directory in and a path out", async () => {
    const sb = await newSandbox();
    const src = mkdtempSync(join(tmpdir(), "forager-in-"));
    mkdirSync(join(src, "pkg"));
    writeFileSync(join(src, "pkg", "a.txt"), "A");
    writeFileSync(join(src, "b.txt"), "B");
    await sb.copyIn(src, "/data/in");
    expect((await sb.run("cat /data/in/pkg/a.txt /data/in/b.txt")).output).toBe("AB");
    const out = mkdtempSync(join(tmpdir(), "forager-out-"));
    await sb.copyOut("/data/in/pkg", out);
    expect(readFileSync(join(out, "pkg", "a.txt"), "utf8")).toBe("A");
  });

  it("destroy() always removes the container and can be called twice", async () => {
    const sb = await Sandbox.create({ image: BASE_IMAGE });
    await sb.destroy();
    await sb.destroy();
    await expect(dockerClient().getContainer(sb.id).inspect()).rejects.toMatchObject({ statusCode: 404 });
    await expect(sb.run("true")).rejects.toThrow(/destroyed/);
  });

  it("fails with a clear error for a missing image", async () => {
    await expect(Sandbox.create({ image: "forager/does-not-exist:nope" })).rejects.toThrow(/cannot start a sandbox from forager\/does-not-exist:nope/);
  });

  it("runs 16 sandboxes at once", async () => {
    const many = await Promise.all(Array.from({ length: 16 }, () => newSandbox({ memoryBytes: 256 * 1024 ** 2 })));
    const outs = await Promise.all(many.map((s, i) => s.run(`echo ${i}; hostname`)));
    outs.forEach((o, i) => expect(o.output.split("\n")[0]).toBe(String(i)));
    expect(new Set(many.map((s) => s.id)).size).toBe(16);
    await Promise.all(many.map((s) => s.destroy()));
  });

  it("removes itself when its lifetime is over, even without forager", async () => {
    const sb = await Sandbox.create({ image: BASE_IMAGE, lifetimeSeconds: 2 });
    await new Promise((r) => setTimeout(r, 5000));
    await expect(dockerClient().getContainer(sb.id).inspect()).rejects.toMatchObject({ statusCode: 404 });
    await sb.destroy();
  });
});

describe("reaper", () => {
  it("removes the containers of a SIGKILLed owner and leaves live owners alone", async () => {
    const mine = await newSandbox();
    const script = join(mkdtempSync(join(tmpdir(), "forager-kill-")), "owner.mts");
    writeFileSync(
      script,
      `import { Sandbox } from ${JSON.stringify(join(process.cwd(), "sandbox/sandbox"))};\n` +
        `const a = await Sandbox.create({ image: ${JSON.stringify(BASE_IMAGE)} });\n` +
        `const b = await Sandbox.create({ image: ${JSON.stringify(BASE_IMAGE)} });\n` +
        // A one-shot container (image inference's reference runs) left running by the killed owner.
        `import { runInImage } from ${JSON.stringify(join(process.cwd(), "sandbox/oneshot"))};\n` +
        `void runInImage(${JSON.stringify(BASE_IMAGE)}, "sleep 600", { timeoutMs: 600_000 }).catch(() => {});\n` +
        `await new Promise((r) => setTimeout(r, 3000));\n` +
        `console.log(JSON.stringify([a.id, b.id]));\nsetInterval(() => {}, 1000);\n`,
    );
    const child = spawn(process.execPath, ["--import", "tsx/esm", script], { cwd: process.cwd(), stdio: ["ignore", "pipe", "inherit"] });
    const ids: string[] = await new Promise((resolve, reject) => {
      let buf = "";
      child.stdout.on("data", (d: Buffer) => {
        buf += d.toString();
        const line = buf.split("\n").find((l) => l.startsWith("["));
        if (line) resolve(JSON.parse(line) as string[]);
      });
      child.on("exit", () => reject(new Error("owner exited early")));
    });
    child.kill("SIGKILL");
    await new Promise((r) => child.on("exit", r));
    const probesOf = async () => (await dockerClient().listContainers({ all: true, filters: { label: [`forager.owner.pid=${child.pid}`, "forager.kind=probe"] } })).map((c) => c.Id);
    const probes = await probesOf();
    expect(probes).toHaveLength(1);
    const reaped = await reapSandboxes();
    expect(reaped.map((r) => r.id)).toContain(probes[0]);
    expect(await probesOf()).toEqual([]);
    expect(reaped.map((r) => r.id).sort()).toEqual(expect.arrayContaining([...ids].sort()));
    expect(reaped.every((r) => r.reason === "owner_gone" || r.reason === "expired")).toBe(true);
    for (const id of ids) await expect(dockerClient().getContainer(id).inspect()).rejects.toMatchObject({ statusCode: 404 });
    expect((await mine.run("echo mine")).output).toBe("mine");
    expect(reaped.map((r) => r.id)).not.toContain(mine.id);
  });

  it("`forager sandbox reap --dry-run` lists without removing", async () => {
    const out = execFileSync("bin/forager", ["sandbox", "reap", "--dry-run"], { encoding: "utf8" });
    expect(out).toMatch(/reap|nothing/i);
    expect(existsSync("bin/forager")).toBe(true);
  });
});
