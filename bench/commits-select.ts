/**
 * Candidate selection over a real repository's history (taskgen/commits/select.ts): commits scanned,
 * candidates, rejections by reason, wall time in ms. Usage: npx tsx bench/commits-select.ts GIT_DIR
 * (a bare mirror or a .git directory). Prints ONE JSON line.
 */
import { execFileSync } from "node:child_process";
import { parseGitLog, selectCommit } from "../taskgen/commits/select";
const dir = process.argv[2]!;
const t0 = Date.now();
const log = execFileSync("git", ["--git-dir", dir, "log", "--first-parent", "-m", "--no-renames", "-U0", "--format=%x00%H %P%x00%s", "-p", "HEAD"], { encoding: "utf8", maxBuffer: 1 << 30 });
const recs = parseGitLog(log);
const reasons: Record<string, number> = {};
let kept = 0;
for (const r of recs) { const s = selectCommit(r); if (s.ok) kept++; else reasons[s.reason] = (reasons[s.reason] ?? 0) + 1; }
console.log(JSON.stringify({ repo: dir, head: execFileSync("git", ["--git-dir", dir, "rev-parse", "HEAD"], { encoding: "utf8" }).trim().slice(0, 12), commits_scanned: recs.length, candidates: kept, rejected: reasons, wall_ms: Date.now() - t0 }));
