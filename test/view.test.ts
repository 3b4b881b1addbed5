/**
 * `forager view` in a real browser: Debian's chromium, headless, driven by playwright-core, over a
 * run directory written the way the orchestrator writes one (test/helpers/view-fixtures.ts).
 * Pages load, a trajectory renders its turns and its diffs, a live run's progress advances when a
 * trajectory is committed while the page is open, a server bound off loopback asks for its
 * token, Bull Board answers under /queues with --redis, and a screenshot is not blank.
 */
import { spawn } from "node:child_process";
import fs from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { chromium, type BrowserContext, type Page } from "playwright-core";
import { openSources } from "../view/data";
import { isLoopback, startViewServer, type ViewServer } from "../view/server";
import { writeTrajectory } from "../agent/trajectory";
import { startRedisServer, type RedisServerHandle } from "../orchestrator/redis-server";
import { makeViewRun, viewTask, viewTrajectory, type ViewRun } from "./helpers/view-fixtures";

// Globals of the page for the functions run inside it (page.evaluate); the project's lib has no DOM.
declare const document: any;
declare const Image: any;

const CHROMIUM = "/usr/bin/chromium";
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "forager-view-"));
let run: ViewRun;
let server: ViewServer;
let ctx: BrowserContext;
let page: Page;
const pageErrors: string[] = [];

/** Open a route and wait until the app has rendered it. */
async function open(hash: string, base = server.url): Promise<void> {
  await page.goto(`${base}/${hash}`);
  await page.waitForSelector("body[data-ready]");
}

beforeAll(async () => {
  run = await makeViewRun(path.join(tmp, "run"));
  const file = path.join(tmp, "episodes.jsonl");
  writeTrajectory(file, viewTrajectory("local", viewTask("example__tiny-calc-1"), 0, true));
  fs.appendFileSync(file, JSON.stringify({ schemaVersion: 1, id: "broken" }) + "\n"); // a bad record: reported with its line
  server = await startViewServer({ sources: openSources([run.dir, file]), port: 0, pollMs: 200 });
  ctx = await chromium.launchPersistentContext(path.join(tmp, "chromium-profile"), {
    executablePath: CHROMIUM,
    headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    viewport: { width: 1280, height: 900 },
  });
  page = ctx.pages()[0] ?? (await ctx.newPage());
  page.on("pageerror", (e) => pageErrors.push(e.message));
});

afterAll(async () => {
  await ctx?.close();
  await server?.close();
  fs.rmSync(tmp, { recursive: true, force: true });
});

describe("forager view in chromium", () => {
  it("lists the sources: the run with its figures, the trajectory file", async () => {
    await open("#/");
    const rows = await page.locator("tbody tr").allInnerTexts();
    expect(rows).toHaveLength(2);
    // pass@k over the tasks done (orchestrator/accounting.ts): tiny-calc-1 (1 of 2 resolved) and tiny-calc-2 (1 of 1, its other sample failed); the third has nothing yet
    expect(rows[0]).toMatch(/^run\s+run\s+3\s+3\/6\s+2\s+1\s+pass@1 75\.0% · pass@2 100\.0% over 2\/3 done\s+in progress/);
    expect(rows[1]).toMatch(/^episodes\s+file\s+1\s+1\s+1/);
  });

  it("the run page: figures, failures with reasons, five plots (no mutate-fix episode yet), episodes with filters and j/k", async () => {
    await open("#/s/run");
    await expect(page.locator("#n-trajectories").innerText()).resolves.toBe("3/6");
    expect(await page.locator("text=HTTP 500 from the model server").count()).toBe(1);
    expect(await page.locator(".chart canvas").count()).toBe(5);
    // chart.js drew something on every canvas (not all pixels transparent)
    const drawn = await page.$$eval(".chart canvas", (cs) =>
      cs.map((c) => {
        const d = c.getContext("2d")!.getImageData(0, 0, c.width, c.height).data;
        let n = 0;
        for (let i = 3; i < d.length; i += 4) if (d[i]! > 0) n++;
        return n;
      }),
    );
    for (const n of drawn) expect(n).toBeGreaterThan(500);
    expect(await page.locator("#episodes tbody tr").count()).toBe(3);
    await page.selectOption("#f-outcome", "unresolved");
    expect(await page.locator("#episodes tbody tr").count()).toBe(1);
    await page.selectOption("#f-outcome", "");
    await page.fill("#f-task", "calc-2");
    expect(await page.locator("#episodes tbody tr").count()).toBe(1);
    await page.fill("#f-task", "");
    // keyboard: j j selects the second row, Enter opens its trajectory
    await page.locator("h1").click();
    await page.keyboard.press("j");
    await page.keyboard.press("j");
    expect(await page.locator("#episodes tr.sel").innerText()).toMatch(/example__tiny-calc-1\s+1\s+unresolved/);
    await page.keyboard.press("Enter");
    await page.waitForFunction(() => document.body.dataset.ready?.includes("/t/"));
    expect(decodeURIComponent(new URL(page.url()).hash)).toBe("#/s/run/t/view-run/example__tiny-calc-1/1");
  });

  it("a trajectory: its turns, its submitted patch beside the reference patch, the report and the reward parts", async () => {
    await open(`#/s/run/t/${encodeURIComponent("view-run/example__tiny-calc-1/1")}`);
    expect(await page.locator(".turn").count()).toBe(4);
    const first = await page.locator("#turn-0").innerText();
    expect(first).toMatch(/turn 0\s+bash\s+ok/);
    expect(first).toContain("cat calc.py");
    expect(first).toContain("Turn 0: I should use bash next.");
    expect(first).toMatch(/remaining turns 19/);
    // diff2html rendered both patches, each with its added line
    expect(await page.locator("#submitted .d2h-file-wrapper").count()).toBe(1);
    expect(await page.locator("#reference .d2h-file-wrapper").count()).toBe(1);
    expect(await page.locator("#submitted td.d2h-ins:not(.d2h-code-linenumber)").first().innerText()).toMatch(/return b - a/);
    expect(await page.locator("#reference td.d2h-ins:not(.d2h-code-linenumber)").first().innerText()).toMatch(/return a \+ b/);
    expect(await page.locator("#tests-status").innerText()).toMatch(/FAIL_TO_PASS\s+test_hidden\.py::test_add\s+failure/);
    expect(await page.locator("dl.kv").innerText()).toMatch(/similarity = 0\.800/);
    // j moves between turns
    await page.keyboard.press("j");
    await page.keyboard.press("j");
    expect(await page.locator(".turn.sel").getAttribute("id")).toBe("turn-1");
    // n: the next episode of the run (task 2, sample 0), p: back
    expect(await page.locator("#position").innerText()).toMatch(/episode 2 of 3/);
    await page.keyboard.press("n");
    await page.waitForFunction(() => document.body.dataset.ready?.endsWith(encodeURIComponent("view-run/example__tiny-calc-2/0")));
    expect(await page.locator("h1").innerText()).toBe("view-run/example__tiny-calc-2/0");
    await page.keyboard.press("p");
    await page.waitForFunction(() => document.body.dataset.ready?.endsWith(encodeURIComponent("view-run/example__tiny-calc-1/1")));
  });

  it("a task: problem statement, hidden tests and reference patch", async () => {
    await open(`#/s/run/task/${encodeURIComponent("example__tiny-calc-1")}`);
    expect(await page.locator("#problem").innerText()).toMatch(/returns -1; it should return 5/);
    expect(await page.locator(".d2h-file-wrapper").count()).toBe(2);
    expect(await page.locator("text=test_hidden.py").count()).toBeGreaterThan(0);
  });

  it("a trajectory file: its episode without a task, and its bad line named", async () => {
    await open("#/s/episodes");
    expect(await page.locator("dl.kv").innerText()).toMatch(/bad lines\s+line 2: taskId: /);
    await page.locator("#episodes tbody tr a").first().click();
    await page.waitForFunction(() => document.body.dataset.ready?.includes("/t/"));
    expect(await page.locator(".turn").count()).toBe(4);
    expect(await page.locator("#reference").innerText()).toMatch(/reference patch: none/);
    expect(await page.locator("#submitted .d2h-file-wrapper").count()).toBe(1);
  });

  it("a live run: a trajectory committed while the page is open advances the progress", async () => {
    await open("#/s/run");
    await page.waitForSelector("#live", { state: "visible" }); // the first event: the run is in progress
    await run.append(2, 0, true);
    await page.waitForFunction(() => document.getElementById("n-trajectories")?.textContent === "4/6");
    expect(await page.locator("#n-resolved").innerText()).toBe("3");
    expect(await page.locator("#episodes tbody tr").count()).toBe(4);
    // the first mutate-fix episode brings the per-operator plot
    expect(await page.locator(".chart canvas").count()).toBe(6);
    await run.append(2, 1, false);
    await page.waitForFunction(() => document.getElementById("n-trajectories")?.textContent === "5/6");
    // 5 trajectories + 1 failed sample = 6 expected: complete, the live mark goes
    await page.waitForFunction(() => document.getElementById("live")?.hidden === true);
  });

  it("a screenshot of the run page is not blank", async () => {
    await open("#/s/run");
    const png = await page.screenshot();
    const stats = await page.evaluate(async (b64) => {
      const img = new Image();
      img.src = `data:image/png;base64,${b64}`;
      await img.decode();
      const c = document.createElement("canvas");
      c.width = img.width;
      c.height = img.height;
      const g = c.getContext("2d")!;
      g.drawImage(img, 0, 0);
      const d = g.getImageData(0, 0, c.width, c.height).data;
      let sum = 0;
      let sq = 0;
      const n = d.length / 4;
      for (let i = 0; i < d.length; i += 4) {
        const y = 0.299 * d[i]! + 0.587 * d[i + 1]! + 0.114 * d[i + 2]!;
        sum += y;
        sq += y * y;
      }
      const mean = sum / n;
      return { width: c.width, height: c.height, variance: sq / n - mean * mean };
    }, png.toString("base64"));
    expect(stats).toMatchObject({ width: 1280, height: 900 });
    expect(stats.variance).toBeGreaterThan(100);
    if (process.env.FORAGER_VIEW_SCREENSHOT) fs.writeFileSync(process.env.FORAGER_VIEW_SCREENSHOT, png);
    expect(pageErrors).toEqual([]);
  });

  it("bound off loopback, every request needs the token (query, then cookie; or bearer)", async () => {
    expect(isLoopback("127.0.0.1") && isLoopback("::1") && isLoopback("localhost")).toBe(true);
    expect(isLoopback("0.0.0.0") || isLoopback("192.168.1.2")).toBe(false);
    const off = await startViewServer({ sources: openSources([run.dir]), host: "0.0.0.0", port: 0 });
    try {
      expect(off.token).toMatch(/^[0-9a-f]{32}$/);
      expect((await fetch(`${off.url}/api/sources`)).status).toBe(401);
      expect((await fetch(`${off.url}/api/sources?token=wrong`)).status).toBe(401);
      expect((await fetch(`${off.url}/api/sources`, { headers: { authorization: `Bearer ${off.token}` } })).status).toBe(200);
      const res = await page.goto(`${off.url}/`);
      expect(res!.status()).toBe(401);
      await page.goto(off.openUrl);
      await page.waitForSelector("body[data-ready]");
      expect(await page.locator("tbody tr").count()).toBe(1);
      await open("#/s/run", off.url); // the cookie set by ?token= carries on
      expect(await page.locator(".chart canvas").count()).toBe(6);
    } finally {
      await off.close();
    }
    // on loopback, a Host header that is not loopback is refused (DNS rebinding)
    const status = await new Promise<number | undefined>((resolve, reject) => {
      http.get(`${server.url}/api/sources`, { headers: { host: "attacker.example" } }, (res) => (res.resume(), resolve(res.statusCode))).on("error", reject);
    });
    expect(status).toBe(403);
  });

  it("the CLI: `forager view RUN_DIR --port 0` prints the URL and serves the run; SIGTERM stops it", async () => {
    const child = spawn(path.resolve("bin/forager"), ["view", run.dir, "--port", "0"], { env: { ...process.env, FORAGER_LOG_LEVEL: "warn" } });
    try {
      let out = "";
      const url = await new Promise<string>((resolve, reject) => {
        child.stdout.on("data", (b: Buffer) => {
          out += b.toString();
          const m = /open (http:\/\/127\.0\.0\.1:\d+)\//.exec(out);
          if (m) resolve(m[1]!);
        });
        child.on("exit", (code) => reject(new Error(`forager view exited ${code}: ${out}`)));
      });
      expect(out).toMatch(/1 source\(s\): run/);
      const list = (await (await fetch(`${url}/api/sources`)).json()) as Array<{ runId: string; trajectories: number }>;
      expect(list).toMatchObject([{ runId: "view-run" }]);
    } finally {
      const exited = new Promise((r) => child.once("exit", r));
      child.kill("SIGTERM");
      await exited;
    }
  });

  it("with --redis: Bull Board under /queues", async () => {
    let redis: RedisServerHandle | undefined;
    let withRedis: ViewServer | undefined;
    try {
      redis = await startRedisServer({ dir: path.join(tmp, "redis"), appendfsync: "no" });
      withRedis = await startViewServer({ sources: openSources([run.dir]), port: 0, redisUrl: redis.url });
      await page.goto(`${withRedis.url}/queues`);
      await page.waitForSelector("text=forager-rollouts");
      expect(await page.title()).toMatch(/Bull/i);
      expect(await page.locator("text=forager-evals").count()).toBeGreaterThan(0);
      // the run's live Redis figures come with the overview
      const o = (await (await fetch(`${withRedis.url}/api/sources/run`)).json()) as { redis: boolean; redisError?: string };
      expect(o).toMatchObject({ redis: true });
      // Redis gone: the pages still answer, and say why the Redis figures are missing
      await redis.stop();
      redis = undefined;
      const gone = (await (await fetch(`${withRedis.url}/api/sources/run`)).json()) as { trajectories: number; redisError?: string };
      expect(gone.trajectories).toBe(5);
      expect(gone.redisError).toBeTruthy();
    } finally {
      await withRedis?.close();
      await redis?.stop();
    }
  });
});
