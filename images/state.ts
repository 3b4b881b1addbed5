/**
 * forager's on-host state for images: where it lives, a cross-process file lock, and the small
 * JSON index `<stateDir>/images.json` that remembers when each image was built and last used
 * (Docker itself records neither "last used" nor build time).
 *
 * Layout under the state dir ({@link defaultStateDir}: `FORAGER_STATE_DIR`, else
 * `$XDG_STATE_HOME/forager`, else `~/.local/state/forager` — one fixed place whatever directory a
 * command runs in; the evaluation secret `eval-secret` lives there too):
 *   images.json           the index (see {@link ImageIndex})
 *   locks/<name>.lock     lock files (pid + time), see {@link withFileLock}
 *   logs/build/<tag>.log  build logs (see build.ts)
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { EnvironmentError } from "../lib/errors";

/**
 * The state directory: `FORAGER_STATE_DIR`, else `$XDG_STATE_HOME/forager` (XDG Base Directory
 * specification), else `~/.local/state/forager`. Absolute; not created here.
 */
export function defaultStateDir(): string {
  if (process.env.FORAGER_STATE_DIR) return path.resolve(process.env.FORAGER_STATE_DIR);
  const xdg = process.env.XDG_STATE_HOME;
  return path.join(xdg && path.isAbsolute(xdg) ? xdg : path.join(os.homedir(), ".local", "state"), "forager");
}

/** A file-name-safe form of an image tag: `forager/env:abc` → `forager_env_abc`. */
export function tagFileName(tag: string): string {
  return tag.replace(/[^A-Za-z0-9._-]+/g, "_");
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/**
 * Run `fn` while holding an exclusive lock file (created with O_EXCL, holding `pid time`).
 * Another process waiting on the same file polls every `pollMs`. A lock whose owner process is
 * dead (same host) or that is older than `staleMs` is taken over. Re-entrant within a process
 * is NOT supported (a second acquire from the same process waits until the first releases).
 *
 * @param lockPath file to create (its directory is created).
 * @param opts.timeoutMs give up waiting after this long (default 30 min).
 * @param opts.staleMs consider a lock stale after this long (default 60 min).
 * @throws EnvironmentError when the lock cannot be had within `timeoutMs`.
 */
export async function withFileLock<T>(
  lockPath: string,
  fn: () => Promise<T>,
  opts: { timeoutMs?: number; staleMs?: number; pollMs?: number; onWait?: (owner: string) => void } = {},
): Promise<T> {
  const timeoutMs = opts.timeoutMs ?? 30 * 60_000;
  const staleMs = opts.staleMs ?? 60 * 60_000;
  const pollMs = opts.pollMs ?? 500;
  fs.mkdirSync(path.dirname(lockPath), { recursive: true });
  const deadline = Date.now() + timeoutMs;
  let announced = false;
  for (;;) {
    try {
      const fd = fs.openSync(lockPath, "wx");
      fs.writeSync(fd, `${process.pid} ${Date.now()}\n`);
      fs.closeSync(fd);
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
      let owner = "";
      try {
        owner = fs.readFileSync(lockPath, "utf8").trim();
      } catch {
        continue; // released between open and read
      }
      const [pidS, timeS] = owner.split(/\s+/);
      const pid = Number(pidS);
      const time = Number(timeS);
      const dead = Number.isFinite(pid) && pid > 0 && pid !== process.pid && !pidAlive(pid);
      const stale = Number.isFinite(time) && Date.now() - time > staleMs;
      if (dead || stale || owner === "") {
        // Take over: remove only if it is still the same owner.
        try {
          if (fs.readFileSync(lockPath, "utf8").trim() === owner) fs.unlinkSync(lockPath);
        } catch {
          /* someone else took it over */
        }
        continue;
      }
      if (!announced) {
        opts.onWait?.(owner);
        announced = true;
      }
      if (Date.now() > deadline) {
        throw new EnvironmentError(`timed out after ${timeoutMs} ms waiting for lock ${lockPath} (held by pid ${pid})`);
      }
      await sleep(pollMs);
    }
  }
  try {
    return await fn();
  } finally {
    try {
      fs.unlinkSync(lockPath);
    } catch {
      /* already gone */
    }
  }
}

/** One image's record in the index. Times are ISO-8601 strings. */
export interface ImageIndexEntry {
  tag: string;
  /** Image id (sha256:…) when built/seen. */
  id?: string;
  kind?: "base" | "env" | "instance";
  repo?: string;
  commit?: string;
  builtAt?: string;
  /** Wall time of the build that made it, seconds. */
  buildSeconds?: number;
  /** Last time forager built, reused or started it. */
  lastUsed?: string;
}

/** The whole index file: `{version: 1, images: {tag: entry}}`. */
export interface ImageIndex {
  version: 1;
  images: Record<string, ImageIndexEntry>;
}

function indexPath(stateDir: string): string {
  return path.join(stateDir, "images.json");
}

/** Read the index (an empty one when missing or unreadable). */
export function readImageIndex(stateDir = defaultStateDir()): ImageIndex {
  try {
    const raw = JSON.parse(fs.readFileSync(indexPath(stateDir), "utf8")) as ImageIndex;
    if (raw && typeof raw === "object" && raw.images && typeof raw.images === "object") return { version: 1, images: raw.images };
  } catch {
    /* missing or corrupt: start over */
  }
  return { version: 1, images: {} };
}

/**
 * Update the index under a lock (read-modify-write, atomic rename).
 * @param mutate changes the index in place.
 */
export async function updateImageIndex(stateDir: string, mutate: (index: ImageIndex) => void): Promise<void> {
  fs.mkdirSync(stateDir, { recursive: true });
  await withFileLock(
    path.join(stateDir, "locks", "images-index.lock"),
    async () => {
      const idx = readImageIndex(stateDir);
      mutate(idx);
      const tmp = `${indexPath(stateDir)}.${process.pid}.tmp`;
      fs.writeFileSync(tmp, JSON.stringify(idx, null, 2) + "\n");
      fs.renameSync(tmp, indexPath(stateDir));
    },
    { timeoutMs: 60_000, staleMs: 60_000, pollMs: 50 },
  );
}

/**
 * Record that `tag` was used now (merging `extra` into its entry). Callers that start containers
 * from forager images (sandboxes, evaluation) should call this so that pruning by "unused" works.
 */
export async function markImageUsed(
  tag: string,
  extra: Partial<ImageIndexEntry> = {},
  stateDir = defaultStateDir(),
): Promise<void> {
  await updateImageIndex(stateDir, (idx) => {
    idx.images[tag] = { ...idx.images[tag], ...extra, tag, lastUsed: new Date().toISOString() };
  });
}
