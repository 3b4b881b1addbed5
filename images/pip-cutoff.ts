/**
 * A date-filtering view of a Python package index: "only releases uploaded before the commit".
 *
 * pip gained `--uploaded-prior-to` only recently (pypa/pip#13625); the pip of Debian bookworm
 * (23.0) and trixie (25.1) has no such option. So forager serves, on loopback, a PEP 503 / PEP 691
 * simple index in front of the configured one: each project page is fetched from upstream as
 * PEP 691 JSON, files whose PEP 700 `upload-time` is at or after the cutoff are dropped, and the
 * rest is answered as JSON (or PEP 503 HTML to a client that asks only for HTML). File URLs are
 * made absolute against upstream, so downloads go to upstream directly. The same approach as
 * pip-timemachine (PEP 691 + PEP 700).
 *
 * An upstream that answers HTML only (no upload times) is passed through unfiltered and counted
 * in {@link CutoffIndexStats.unfiltered}: the cutoff then cannot be honoured, and the caller says so.
 */
import http from "node:http";
import type { AddressInfo } from "node:net";
import { request } from "undici";
import { z } from "zod";
import { childLogger } from "../lib/log";

/** PEP 691 JSON content type (version 1). */
export const SIMPLE_JSON = "application/vnd.pypi.simple.v1+json";

/** One file of a PEP 691 project page (fields forager reads; others are kept as they are). */
const SimpleFileSchema = z
  .object({
    filename: z.string(),
    url: z.string(),
    hashes: z.record(z.string(), z.string()).default({}),
    "requires-python": z.string().nullish(),
    yanked: z.union([z.boolean(), z.string()]).optional(),
    /** PEP 700: ISO 8601 upload time, optional. */
    "upload-time": z.string().nullish(),
  })
  .passthrough();

/** A PEP 691 project page. */
export const SimpleProjectSchema = z
  .object({
    meta: z.object({ "api-version": z.string() }).passthrough(),
    name: z.string(),
    files: z.array(SimpleFileSchema),
  })
  .passthrough();
export type SimpleProject = z.infer<typeof SimpleProjectSchema>;

/** Whether a file counts as uploaded before `before`: its PEP 700 upload time is earlier, or it has none (optional in PEP 700). */
export function uploadedBefore(uploadTime: string | null | undefined, before: Date): boolean {
  return !uploadTime || Date.parse(uploadTime) < before.getTime();
}

/**
 * Files of a project page uploaded strictly before `before`; file URLs resolved against `pageUrl`.
 * Files without an upload time are kept (PEP 700 makes it optional). The PEP 700 `versions` list
 * is dropped and the page is labelled api-version 1.0, since the kept files no longer match it.
 */
export function filterProject(page: SimpleProject, before: Date, pageUrl: string): { page: SimpleProject; dropped: number; undated: number } {
  let dropped = 0;
  let undated = 0;
  const files = page.files
    .filter((f) => {
      if (!f["upload-time"]) undated++;
      const keep = uploadedBefore(f["upload-time"], before);
      if (!keep) dropped++;
      return keep;
    })
    .map((f) => ({ ...f, url: new URL(f.url, pageUrl).toString() }));
  const { versions: _versions, ...rest } = page as SimpleProject & { versions?: unknown };
  return { page: { ...rest, meta: { ...page.meta, "api-version": "1.0" }, files }, dropped, undated };
}

const escapeHtml = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");

/** A project page as PEP 503 HTML (hash fragment, data-requires-python, data-yanked). */
export function projectHtml(page: SimpleProject): string {
  const links = page.files.map((f) => {
    const [algo, digest] = Object.entries(f.hashes)[0] ?? [];
    const href = algo ? `${f.url}#${algo}=${digest}` : f.url;
    const rp = f["requires-python"] ? ` data-requires-python="${escapeHtml(f["requires-python"])}"` : "";
    const y = f.yanked ? ` data-yanked="${escapeHtml(typeof f.yanked === "string" ? f.yanked : "")}"` : "";
    return `<a href="${escapeHtml(href)}"${rp}${y}>${escapeHtml(f.filename)}</a><br/>`;
  });
  return `<!DOCTYPE html>\n<html><head><meta name="pypi:repository-version" content="1.0"><title>Links for ${escapeHtml(page.name)}</title></head>\n<body><h1>Links for ${escapeHtml(page.name)}</h1>\n${links.join("\n")}\n</body></html>\n`;
}

/** Counts of one cutoff index's life. */
export interface CutoffIndexStats {
  /** Project pages served. */
  pages: number;
  /** Files dropped for being uploaded at or after the cutoff. */
  dropped: number;
  /** Pages upstream answered without PEP 691 JSON (served unfiltered). */
  unfiltered: number;
}

/** A running cutoff index: its URL (`http://127.0.0.1:PORT/simple/`), counts, and close(). */
export interface CutoffIndex {
  url: string;
  stats: CutoffIndexStats;
  close(): Promise<void>;
}

/**
 * Start a cutoff index on 127.0.0.1 (a free port) in front of `upstream` (a simple index URL,
 * e.g. `https://pypi.org/simple/`): `GET /simple/<project>/` → upstream `<upstream>/<project>/`,
 * filtered to files uploaded before `before`. Any other path is passed through.
 * @throws Error when the server cannot listen.
 */
export async function startCutoffIndex(upstream: string, before: Date): Promise<CutoffIndex> {
  const log = childLogger("images.pip-cutoff", { upstream, before: before.toISOString() });
  const base = upstream.endsWith("/") ? upstream : `${upstream}/`;
  const stats: CutoffIndexStats = { pages: 0, dropped: 0, unfiltered: 0 };
  const server = http.createServer((req, res) => {
    void (async () => {
      const rel = (req.url ?? "/").replace(/^\/simple\/?/, "").replace(/^\//, "");
      const target = new URL(rel, base).toString();
      try {
        let url = target;
        let up = await request(url, { headers: { accept: `${SIMPLE_JSON}, text/html;q=0.01` } });
        // A project name that is not normalized is redirected by PyPI (PEP 503); follow up to 3.
        for (let hops = 0; hops < 3 && [301, 302, 307, 308].includes(up.statusCode) && up.headers.location; hops++) {
          await up.body.dump();
          url = new URL(String(up.headers.location), url).toString();
          up = await request(url, { headers: { accept: `${SIMPLE_JSON}, text/html;q=0.01` } });
        }
        const type = String(up.headers["content-type"] ?? "");
        const body = await up.body.text();
        if (up.statusCode !== 200 || !type.includes(SIMPLE_JSON) || !rel) {
          if (up.statusCode === 200 && rel) {
            stats.unfiltered++;
            log.warn({ target, type }, "upstream page is not PEP 691 JSON: served unfiltered");
          }
          res.writeHead(up.statusCode, { "content-type": type || "text/plain" });
          res.end(body);
          return;
        }
        const page = SimpleProjectSchema.parse(JSON.parse(body));
        const f = filterProject(page, before, url);
        stats.pages++;
        stats.dropped += f.dropped;
        const wantsJson = String(req.headers.accept ?? "").includes(SIMPLE_JSON);
        res.writeHead(200, { "content-type": wantsJson ? SIMPLE_JSON : "text/html; charset=utf-8" });
        res.end(wantsJson ? JSON.stringify(f.page) : projectHtml(f.page));
      } catch (err) {
        log.warn({ target, err: String(err) }, "upstream request failed");
        res.writeHead(502, { "content-type": "text/plain" });
        res.end(`forager cutoff index: ${String(err)}\n`);
      }
    })();
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}/simple/`,
    stats,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
