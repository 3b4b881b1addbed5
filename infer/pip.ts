/**
 * Ask the pip index, before building, whether it can satisfy each requirement: pip stops at the
 * first requirement it cannot find, so without this a repository whose index lacks several
 * dependencies would spend one failed build on each. Reads PEP 691 JSON project pages (PEP 503
 * HTML when that is all the index answers), drops yanked files, files uploaded at or after the
 * cutoff (PEP 700 `upload-time`) and files whose `requires-python` excludes the interpreter, then
 * checks the specifier against the versions in the file names (wheel names per the binary
 * distribution format; sdists `name-version.tar.gz|zip`), compared as PEP 440.
 * The index stays the judge: anything this cannot decide is left to pip.
 */
import { request } from "undici";
import { SIMPLE_JSON, SimpleProjectSchema, uploadedBefore } from "../images/pip-cutoff";
import { parseRequirement, pythonSatisfies } from "./pep508";

/** One requirement the index cannot give, and why. */
export interface PipMissing {
  requirement: string;
  /** PEP 503 normalized name. */
  dist: string;
  reason: string;
}

/** The version in a distribution file name, or undefined when the name is not one pip installs. */
export function fileVersion(filename: string): string | undefined {
  if (filename.endsWith(".whl")) return filename.split("-")[1];
  const base = /^(.*)\.(tar\.gz|zip|tar\.bz2|tgz)$/.exec(filename)?.[1];
  return base && base.includes("-") ? base.slice(base.lastIndexOf("-") + 1) : undefined;
}

/** Files of a project page: PEP 691 JSON, or PEP 503 HTML anchors (name, href, data-requires-python, data-yanked). */
function pageFiles(type: string, body: string): { filename: string; uploaded?: string; requiresPython?: string; yanked: boolean }[] {
  if (type.includes(SIMPLE_JSON)) {
    return SimpleProjectSchema.parse(JSON.parse(body)).files.map((f) => ({
      filename: f.filename,
      ...(f["upload-time"] ? { uploaded: f["upload-time"] } : {}),
      ...(f["requires-python"] ? { requiresPython: f["requires-python"] } : {}),
      yanked: Boolean(f.yanked),
    }));
  }
  const unescape = (s: string) => s.replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&quot;/g, '"').replace(/&amp;/g, "&");
  return [...body.matchAll(/<a\s([^>]*)>([^<]+)<\/a>/gi)].map((m) => {
    const rp = /data-requires-python="([^"]*)"/.exec(m[1]!)?.[1];
    return { filename: m[2]!.trim(), ...(rp ? { requiresPython: unescape(rp) } : {}), yanked: /data-yanked/.test(m[1]!) };
  });
}

/**
 * The requirements of `requirements` the index at `index` cannot satisfy for `python` with files
 * uploaded before `before`. A project page that cannot be fetched (not a 404) is not judged.
 */
export async function pipPreflight(requirements: string[], index: string, opts: { before?: Date; python: string }): Promise<PipMissing[]> {
  const base = index.endsWith("/") ? index : `${index}/`;
  const missing: PipMissing[] = [];
  await Promise.all(
    requirements.map(async (requirement) => {
      const req = parseRequirement(requirement);
      if (!req || req.url) return;
      let statusCode: number;
      let type = "";
      let body = "";
      try {
        const r = await request(new URL(`${req.normalized}/`, base), { headers: { accept: `${SIMPLE_JSON}, text/html;q=0.1` }, headersTimeout: 30_000, bodyTimeout: 30_000 });
        statusCode = r.statusCode;
        type = String(r.headers["content-type"] ?? "");
        body = await r.body.text();
      } catch {
        return;
      }
      if (statusCode === 404) return void missing.push({ requirement, dist: req.normalized, reason: "not on the pip index" });
      if (statusCode !== 200) return;
      let files: ReturnType<typeof pageFiles>;
      try {
        files = pageFiles(type, body);
      } catch {
        return;
      }
      const usable = files.filter((f) => !f.yanked && pythonSatisfies(opts.python, f.requiresPython) && fileVersion(f.filename));
      const dated = opts.before ? usable.filter((f) => uploadedBefore(f.uploaded, opts.before!)) : usable;
      const versions = [...new Set(dated.map((f) => fileVersion(f.filename)!))];
      const fits = versions.filter((v) => pythonSatisfies(v, req.specifier));
      if (fits.length) return;
      const reason = !usable.length
        ? `no file on the pip index for Python ${opts.python}`
        : !dated.length
          ? `no release on the pip index uploaded before ${opts.before!.toISOString()}`
          : `no release on the pip index satisfies ${req.specifier} (has ${versions.slice(-5).join(", ")})`;
      missing.push({ requirement, dist: req.normalized, reason });
    }),
  );
  return missing.sort((a, b) => requirements.indexOf(a.requirement) - requirements.indexOf(b.requirement));
}
