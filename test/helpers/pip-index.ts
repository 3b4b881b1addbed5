/**
 * A loopback Python package index for tests: PEP 691 JSON project pages with PEP 700 upload
 * times (or PEP 503 HTML only, with `htmlOnly`), serving pure-Python wheels made here (zip,
 * METADATA, WHEEL, RECORD per the wheel spec, PEP 427). Every request path is recorded.
 */
import { createHash } from "node:crypto";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { gzipSync } from "node:zlib";
import { zipSync, strToU8 } from "fflate";
import tar from "tar-stream";

/** One release of a test distribution: its import package's files and when it was "uploaded". */
export interface TestRelease {
  name: string;
  version: string;
  /** ISO 8601 upload time. */
  uploaded: string;
  /** Files of the wheel relative to site-packages, e.g. `{ "fancylib/__init__.py": "…" }`. */
  files: Record<string, string>;
  /** Requires-Dist lines. */
  requires?: string[];
  /** Serve an sdist (`name-version.tar.gz`) with this setup.py instead of a wheel. */
  setupPy?: string;
}

const b64url = (b: Buffer) => b.toString("base64").replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");

/** The wheel file name and bytes of a release (py3-none-any). */
export function makeWheel(r: TestRelease): { filename: string; bytes: Buffer } {
  const dist = r.name.replace(/[-.]+/g, "_");
  const info = `${dist}-${r.version}.dist-info`;
  const entries: Record<string, string> = {
    ...r.files,
    [`${info}/METADATA`]: `Metadata-Version: 2.1\nName: ${r.name}\nVersion: ${r.version}\n${(r.requires ?? []).map((x) => `Requires-Dist: ${x}\n`).join("")}`,
    [`${info}/WHEEL`]: "Wheel-Version: 1.0\nGenerator: forager-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
  };
  const record = Object.entries(entries).map(([p, c]) => `${p},sha256=${b64url(createHash("sha256").update(c).digest())},${Buffer.byteLength(c)}`);
  record.push(`${info}/RECORD,,`);
  entries[`${info}/RECORD`] = record.join("\n") + "\n";
  const zip = zipSync(Object.fromEntries(Object.entries(entries).map(([p, c]) => [p, strToU8(c)])));
  return { filename: `${dist}-${r.version}-py3-none-any.whl`, bytes: Buffer.from(zip) };
}

/** The sdist file name and bytes of a release: `name-version/` with setup.py, PKG-INFO and the files. */
export async function makeSdist(r: TestRelease): Promise<{ filename: string; bytes: Buffer }> {
  const dir = `${r.name.replace(/[-.]+/g, "_")}-${r.version}`;
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  pack.on("data", (c: unknown) => void chunks.push(c as Buffer));
  const done = new Promise<void>((resolve) => pack.on("end", () => resolve()));
  const entries = { ...r.files, "setup.py": r.setupPy!, "PKG-INFO": `Metadata-Version: 2.1\nName: ${r.name}\nVersion: ${r.version}\n` };
  for (const [p, c] of Object.entries(entries)) pack.entry({ name: `${dir}/${p}` }, c);
  pack.finalize();
  await done;
  return { filename: `${dir}.tar.gz`, bytes: gzipSync(Buffer.concat(chunks)) };
}

export interface TestIndex {
  /** `http://127.0.0.1:PORT/simple/` */
  url: string;
  /** Paths requested, in order. */
  requests: string[];
  close(): Promise<void>;
}

/** Serve `releases` on 127.0.0.1 (a free port). Unknown projects answer 404, as PyPI does. */
export async function startTestIndex(releases: TestRelease[], opts: { htmlOnly?: boolean; port?: number } = {}): Promise<TestIndex> {
  const norm = (n: string) => n.toLowerCase().replace(/[-_.]+/g, "-");
  const wheels = await Promise.all(releases.map(async (r) => ({ r, ...(r.setupPy ? await makeSdist(r) : makeWheel(r)) })));
  const requests: string[] = [];
  const server = http.createServer((req, res) => {
    const p = req.url ?? "/";
    requests.push(p);
    const file = /^\/files\/([^/]+)$/.exec(p);
    if (file) {
      const w = wheels.find((x) => x.filename === file[1]);
      if (!w) return void res.writeHead(404).end();
      res.writeHead(200, { "content-type": "application/octet-stream" });
      return void res.end(w.bytes);
    }
    const page = /^\/simple\/([^/]+)\/?$/.exec(p);
    const mine = page ? wheels.filter((w) => norm(w.r.name) === norm(page[1]!)) : [];
    if (!page || !mine.length) return void res.writeHead(404, { "content-type": "text/plain" }).end("not found");
    const files = mine.map((w) => ({
      filename: w.filename,
      url: `/files/${w.filename}`,
      hashes: { sha256: createHash("sha256").update(w.bytes).digest("hex") },
      "upload-time": w.r.uploaded,
    }));
    if (!opts.htmlOnly && String(req.headers.accept ?? "").includes("application/vnd.pypi.simple.v1+json")) {
      res.writeHead(200, { "content-type": "application/vnd.pypi.simple.v1+json" });
      return void res.end(JSON.stringify({ meta: { "api-version": "1.1" }, name: norm(page[1]!), files, versions: mine.map((w) => w.r.version) }));
    }
    res.writeHead(200, { "content-type": "text/html" });
    res.end(`<html><body>${files.map((f) => `<a href="${f.url}#sha256=${f.hashes.sha256}">${f.filename}</a>`).join("\n")}</body></html>`);
  });
  await new Promise<void>((resolve) => server.listen(opts.port ?? 0, "127.0.0.1", () => resolve()));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}/simple/`,
    requests,
    close: () => new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}
