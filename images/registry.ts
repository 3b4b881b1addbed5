/**
 * A cluster registry for forager's images (`--registry HOST:PORT[/NAMESPACE]`, FORAGER_REGISTRY):
 * an instance image is built once in the cluster, pushed (its base, env and instance layers, so a
 * pull fetches only the layers a host lacks), and every other host pulls it by its content-hashed
 * name instead of building it. Any Docker distribution registry serves (Debian's
 * `docker-registry`, `registry:2`, a cloud registry); nothing here is specific to one.
 *
 * Names: a local tag `forager/instance:<slug>-<commit12>-<hash8>` is
 * `HOST:PORT/NAMESPACE/forager/instance:<same tag>` in the registry ({@link registryRef}); the same
 * for `forager/env:…` and `forager/base:…`. After a pull the image is tagged with its local name
 * again and its `forager.spec-hash` label checked against the hash the name stands for (a stale
 * or foreign tag is rebuilt, never used).
 *
 * {@link obtainInstanceImage} is the whole decision: local image → done; in the registry → pull;
 * else take the build lock of the tag (a {@link BuildLock}: Redis in the orchestrator, so two hosts
 * asking at once cause one build), build (pulling the env layer if the registry has it), push, and
 * release. A host that waits for another's build polls the registry and the lock; a lock whose
 * holder died expires and the next waiter builds. A registry that does not answer is said so
 * (`retry` events) and retried with backoff for `waitSeconds`, then the call fails with
 * {@link RegistryUnreachableError} (an EnvironmentError: the queue retries the job).
 *
 * Sources: a task whose repository is a path on the submitting host cannot be built elsewhere.
 * {@link publishSource} puts a git bundle of the commits a run needs into the registry as a
 * one-layer image (`forager/source:<repo-slug>-<hash12>`, the layer a gzip tar of `source.bundle`);
 * the task then carries `{type: "registry", digest}` and {@link fetchSource} gets the layer back
 * (digest checked) on the host that builds. Blobs and manifests go over the registry's HTTP API
 * (undici); pulls and pushes of images through the Docker engine (which must trust the registry:
 * TLS, or `insecure-registries` for plain HTTP).
 */
import { spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { pipeline } from "node:stream/promises";
import { Transform, type Readable } from "node:stream";
import zlib from "node:zlib";
import tar from "tar-stream";
import { request } from "undici";
import { z } from "zod";
import { EnvironmentError } from "../lib/errors";
import { silentLogger, type Logger } from "../lib/log";
import { ensureBaseImage, splitTag } from "./base";
import { buildInstanceImage, planInstanceImage, repoSlug, type BuildOptions, type BuildProgress, type InstancePlan } from "./build";
import { consumeJsonStream, docker, inspectImage } from "./docker";
import { ImageSpecSchema, type ImageSpec, type ImageSpecInput, type RepoSource } from "./spec";
import { defaultStateDir, updateImageIndex, withFileLock } from "./state";

/** Where the cluster registry is: host[:port], an optional namespace, the scheme of its HTTP API. */
export const RegistryLocationSchema = z.object({
  /** `HOST[:PORT]`, e.g. `10.0.0.5:5000` or `registry.example.org`. */
  host: z.string().regex(/^(localhost|[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*|\[[0-9a-fA-F:]+\])(:\d{1,5})?$/, "HOST[:PORT]"),
  /** Path under the registry, e.g. `forager` or `team/forager` (lowercase). */
  namespace: z
    .string()
    .regex(/^[a-z0-9]+(?:[._-][a-z0-9]+)*(?:\/[a-z0-9]+(?:[._-][a-z0-9]+)*)*$/, "lowercase path components")
    .optional(),
  /** HTTP API scheme; absent: https, falling back to http when the registry does not speak TLS (as Docker does for an insecure registry). */
  scheme: z.enum(["https", "http"]).optional(),
});
export type RegistryLocation = z.infer<typeof RegistryLocationSchema>;

/** A registry location with this host's tuning (attempts, timeouts, waits; seconds). */
export const RegistrySettingsSchema = RegistryLocationSchema.extend({
  /** Pull / push attempts within one wait (transfer errors other than "unreachable"). */
  attempts: z.number().int().positive().default(3),
  /** Seconds one pull or push may take before it is aborted (and retried). */
  transferTimeoutSeconds: z.number().positive().default(1800),
  /** Seconds to keep retrying a registry that does not answer before the call fails (FORAGER_REGISTRY_WAIT_SECONDS). */
  waitSeconds: z.number().nonnegative().default(900),
  /** Seconds to wait for another host's build of the same image (its lock) before failing. */
  buildWaitSeconds: z.number().positive().default(7200),
  /** Seconds between two looks at the registry and the lock while another host builds. */
  pollSeconds: z.number().positive().default(2),
});
export type RegistrySettings = z.infer<typeof RegistrySettingsSchema>;
export type RegistrySettingsInput = z.input<typeof RegistrySettingsSchema>;

/**
 * Parse `--registry` (else FORAGER_REGISTRY): `[http://|https://]HOST[:PORT][/NAMESPACE]`. The host
 * must look like a registry host to Docker (a dot, a port, or `localhost`). "" or "none": no
 * registry. FORAGER_REGISTRY_WAIT_SECONDS sets `waitSeconds`.
 * @throws Error naming the value and what was expected.
 */
export function parseRegistryOption(value: string | undefined, env: NodeJS.ProcessEnv = process.env): RegistrySettings | undefined {
  const v = (value ?? env.FORAGER_REGISTRY ?? "").trim();
  if (v === "" || v === "none") return undefined;
  const m = /^(?:(https?):\/\/)?([^/]+)(?:\/(.*?))?\/*$/.exec(v);
  const host = m?.[2] ?? "";
  if (!m || !(host.includes(".") || host.includes(":") || host === "localhost")) {
    throw new Error(`--registry: expected HOST:PORT[/NAMESPACE] (a host with a dot or a port, or localhost), got ${JSON.stringify(v)}`);
  }
  const wait = env.FORAGER_REGISTRY_WAIT_SECONDS;
  const r = RegistrySettingsSchema.safeParse({
    host,
    ...(m[3] ? { namespace: m[3] } : {}),
    ...(m[1] ? { scheme: m[1] } : {}),
    ...(wait !== undefined && wait !== "" ? { waitSeconds: Number(wait) } : {}),
  });
  if (!r.success) throw new Error(`--registry ${JSON.stringify(v)}: ${r.error.issues.map((i) => `${i.path.join(".") || "value"}: ${i.message}`).join("; ")}`);
  return r.data;
}

/** `HOST:PORT[/NAMESPACE]` of a location (what `--registry` takes). */
export function formatRegistry(r: RegistryLocation): string {
  return `${r.scheme ? `${r.scheme}://` : ""}${r.host}${r.namespace ? `/${r.namespace}` : ""}`;
}

/** The registry name of a local image name: `forager/instance:x` → `HOST:PORT/NS/forager/instance:x`. */
export function registryRef(r: RegistryLocation, localRef: string): string {
  return `${r.host}/${r.namespace ? `${r.namespace}/` : ""}${localRef}`;
}

/** A repository path in the registry (HTTP API): `NS/forager/instance`. */
function repoPath(r: RegistryLocation, name: string): string {
  return `${r.namespace ? `${r.namespace}/` : ""}${name}`;
}

/** The registry does not answer (connection refused or reset, timeouts, 5xx): retried until `waitSeconds`. */
export class RegistryUnreachableError extends EnvironmentError {
  constructor(
    message: string,
    readonly registry: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = "RegistryUnreachableError";
  }
}

/** The registry answered that it has no such image (or lacks one of its blobs). */
export class NotInRegistryError extends EnvironmentError {
  constructor(
    message: string,
    readonly ref: string,
  ) {
    super(message);
    this.name = "NotInRegistryError";
  }
}

const UNREACHABLE =
  /ECONNREFUSED|ECONNRESET|EHOSTUNREACH|ENETUNREACH|ETIMEDOUT|EPIPE|EAI_AGAIN|UND_ERR_(CONNECT_TIMEOUT|SOCKET|HEADERS_TIMEOUT|BODY_TIMEOUT|CLOSED)|connection refused|connection reset|no route to host|i\/o timeout|TLS handshake timeout|context deadline exceeded|dial tcp|unexpected EOF|\bEOF\b|50[0234] |Service Unavailable|Bad Gateway|timed out|socket hang up|other side closed/i;
const NOT_THERE = /manifest unknown|not found|blob unknown|does not exist|name unknown|404/i;

/** Map a pull/push/HTTP failure to the error kinds above (or a plain EnvironmentError). */
function classify(err: unknown, r: RegistryLocation, what: string): EnvironmentError {
  if (err instanceof EnvironmentError) return err;
  const e = err as { message?: string; code?: string; cause?: { code?: string; message?: string } };
  const text = `${e?.code ?? ""} ${e?.message ?? String(err)} ${e?.cause?.code ?? ""} ${e?.cause?.message ?? ""}`.trim();
  if (/server gave HTTP response to HTTPS client/i.test(text)) {
    return new EnvironmentError(`${what}: the Docker engine talks TLS to ${r.host}, which answers plain HTTP: add "${r.host}" to the engine's insecure-registries (daemon.json or dockerd --insecure-registry) or serve the registry over TLS`, { cause: err });
  }
  if (UNREACHABLE.test(text)) return new RegistryUnreachableError(`${what}: registry ${r.host} unreachable (${text.replace(/\s+/g, " ").slice(0, 200)})`, r.host, { cause: err });
  if (NOT_THERE.test(text)) return new NotInRegistryError(`${what}: not in registry ${r.host} (${text.slice(0, 200)})`, what);
  return new EnvironmentError(`${what}: ${text.slice(0, 500)}`, { cause: err });
}

const sleep = (ms: number) => new Promise<void>((res) => setTimeout(res, ms));

/**
 * Run `fn`, retrying while the registry is unreachable: 1, 2, 4 … 15 s apart, for at most
 * `waitSeconds` (then the last RegistryUnreachableError is thrown). Each retry is announced.
 */
export async function whileUnreachable<T>(
  r: Pick<RegistrySettings, "waitSeconds">,
  fn: () => Promise<T>,
  onRetry: (err: RegistryUnreachableError, delaySeconds: number, waitedSeconds: number) => void = () => undefined,
  sleepFn: (ms: number) => Promise<void> = sleep,
): Promise<T> {
  const started = Date.now();
  for (let n = 0; ; n++) {
    try {
      return await fn();
    } catch (err) {
      if (!(err instanceof RegistryUnreachableError)) throw err;
      const waited = (Date.now() - started) / 1000;
      if (waited >= r.waitSeconds) throw err;
      const delay = Math.min(15, 2 ** n, Math.max(0.5, r.waitSeconds - waited));
      onRetry(err, delay, waited);
      await sleepFn(delay * 1000);
    }
  }
}

// ---- the registry's HTTP API ---------------------------------------------------------------------

const MANIFEST_TYPES = [
  "application/vnd.docker.distribution.manifest.v2+json",
  "application/vnd.oci.image.manifest.v1+json",
  "application/vnd.docker.distribution.manifest.list.v2+json",
  "application/vnd.oci.image.index.v1+json",
].join(", ");

const schemes = new Map<string, "https" | "http">();

/** The HTTP API base URL of a registry (scheme from the settings, else probed once: https, then http). */
async function apiBase(r: RegistryLocation): Promise<string> {
  const known = r.scheme ?? schemes.get(r.host);
  if (known) return `${known}://${r.host}`;
  for (const scheme of ["https", "http"] as const) {
    try {
      const res = await request(`${scheme}://${r.host}/v2/`, { method: "GET", headersTimeout: 10_000, bodyTimeout: 10_000 });
      await res.body.dump();
      schemes.set(r.host, scheme);
      return `${scheme}://${r.host}`;
    } catch (err) {
      const text = `${(err as { code?: string }).code ?? ""} ${(err as Error).message}`;
      if (scheme === "https" && /EPROTO|SSL|wrong version|ECONNRESET|packet length|certificate|self.signed/i.test(text)) continue;
      throw classify(err, r, `GET ${scheme}://${r.host}/v2/`);
    }
  }
  throw new RegistryUnreachableError(`registry ${r.host} answers neither https nor http`, r.host);
}

async function http(r: RegistryLocation, method: "GET" | "HEAD" | "PUT" | "POST", pathOrUrl: string, opts: { headers?: Record<string, string>; body?: Buffer | Readable; timeoutMs?: number } = {}) {
  const base = await apiBase(r);
  const url = /^https?:\/\//.test(pathOrUrl) ? pathOrUrl : `${base}${pathOrUrl}`;
  try {
    const res = await request(url, { method, headers: opts.headers, body: opts.body, headersTimeout: opts.timeoutMs ?? 60_000, bodyTimeout: opts.timeoutMs ?? 600_000 });
    if (res.statusCode >= 500) {
      const text = await res.body.text().catch(() => "");
      throw new RegistryUnreachableError(`${method} ${url}: HTTP ${res.statusCode} ${text.slice(0, 200)}`, r.host);
    }
    return res;
  } catch (err) {
    throw classify(err, r, `${method} ${url}`);
  }
}

/** Whether the registry answers its API root (`/v2/`). Never throws. */
export async function registryAnswers(r: RegistryLocation): Promise<boolean> {
  try {
    const res = await http(r, "GET", "/v2/", { timeoutMs: 5000 });
    await res.body.dump();
    return res.statusCode < 500;
  } catch {
    return false;
  }
}

/**
 * The manifest digest of `name:reference` in the registry, or undefined when it has none.
 * @throws RegistryUnreachableError, EnvironmentError (other HTTP failures).
 */
export async function manifestDigest(r: RegistryLocation, name: string, reference: string): Promise<string | undefined> {
  const res = await http(r, "HEAD", `/v2/${repoPath(r, name)}/manifests/${reference}`, { headers: { accept: MANIFEST_TYPES } });
  await res.body.dump();
  if (res.statusCode === 404) return undefined;
  if (res.statusCode !== 200) throw new EnvironmentError(`HEAD manifest ${name}:${reference} on ${r.host}: HTTP ${res.statusCode}`);
  const d = res.headers["docker-content-digest"];
  return typeof d === "string" ? d : "present";
}

/**
 * The image id (config digest) of `localRef` in the registry, or undefined when absent: equal to
 * the engine's image id for the same image (what {@link checkBaseImage} compares).
 */
export async function registryImageId(r: RegistryLocation, localRef: string): Promise<string | undefined> {
  const [name, tag] = splitTag(localRef);
  const res = await http(r, "GET", `/v2/${repoPath(r, name)}/manifests/${tag}`, { headers: { accept: MANIFEST_TYPES } });
  if (res.statusCode === 404) {
    await res.body.dump();
    return undefined;
  }
  const body = (await res.body.json()) as { config?: { digest?: string } };
  return body.config?.digest;
}

/** Upload a blob (monolithic: POST, then PUT with the digest), unless the registry has it. */
async function uploadBlob(r: RegistryLocation, name: string, file: string, digest: string, size: number): Promise<void> {
  const head = await http(r, "HEAD", `/v2/${repoPath(r, name)}/blobs/${digest}`);
  await head.body.dump();
  if (head.statusCode === 200) return;
  const start = await http(r, "POST", `/v2/${repoPath(r, name)}/blobs/uploads/`, { headers: { "content-length": "0" } });
  await start.body.dump();
  const loc = start.headers.location;
  if (start.statusCode !== 202 || typeof loc !== "string") throw new EnvironmentError(`starting a blob upload to ${r.host}/${repoPath(r, name)}: HTTP ${start.statusCode}`);
  const base = await apiBase(r);
  const url = new URL(loc, base);
  url.searchParams.set("digest", digest);
  const put = await http(r, "PUT", url.toString(), {
    headers: { "content-type": "application/octet-stream", "content-length": String(size) },
    body: fs.createReadStream(file),
    timeoutMs: 3_600_000,
  });
  const text = await put.body.text();
  if (put.statusCode !== 201) throw new EnvironmentError(`uploading blob ${digest} to ${r.host}/${repoPath(r, name)}: HTTP ${put.statusCode} ${text.slice(0, 200)}`);
}

// ---- images through the engine ------------------------------------------------------------------

/** What one pull moved. */
export interface PullStats {
  /** Bytes downloaded (compressed layer sizes of the layers this host lacked). */
  bytes: number;
  /** Layers downloaded / already present on this host. */
  layers: number;
  cachedLayers: number;
  seconds: number;
}

/**
 * Pull `ref` through the engine with progress lines (every ≥ 2 s: `pulling REF: 2/5 layers,
 * 12/80 MB`) and a timeout per attempt; `attempts` tries for transfer errors, none for an image
 * the registry does not have.
 * @throws NotInRegistryError, RegistryUnreachableError, EnvironmentError.
 */
export async function pullWithProgress(r: RegistrySettings, ref: string, onProgress: (line: string) => void = () => undefined): Promise<PullStats> {
  const started = performance.now();
  const me = Symbol(ref);
  let last: EnvironmentError | undefined;
  for (let attempt = 1; attempt <= r.attempts; attempt++) {
    const ac = new AbortController();
    const timer = setTimeout(() => ac.abort(), r.transferTimeoutSeconds * 1000);
    const layers = new Map<string, { current: number; total: number; done: boolean; cached: boolean }>();
    try {
      const stream = (await docker().pull(ref, { abortSignal: ac.signal, authconfig: { serveraddress: r.host } })) as NodeJS.ReadableStream;
      // A layer two pulls of this process fetch at once is downloaded once by the engine: counted once (by the first).
      const shared = (id: string) => {
        if (!layerOwners.has(id)) layerOwners.set(id, me);
        return layerOwners.get(id) !== me;
      };
      let lastReport = 0;
      const events = await consumeJsonStream(stream, (e) => {
        const ev = e as { id?: string; status?: string; progressDetail?: { current?: number; total?: number } };
        if (!ev.id || !ev.status || ev.id.includes(":")) return;
        const l = layers.get(ev.id) ?? { current: 0, total: 0, done: false, cached: false };
        if (ev.progressDetail?.total) l.total = ev.progressDetail.total;
        if (ev.status === "Downloading" && ev.progressDetail?.current) l.current = ev.progressDetail.current;
        if (ev.status === "Already exists") l.cached = l.done = true;
        if (shared(ev.id)) l.cached = true; // its bytes are another pull's
        if (ev.status === "Download complete" || ev.status === "Pull complete") {
          l.done = ev.status === "Pull complete" || l.done;
          if (l.total) l.current = l.total;
        }
        if (ev.status === "Pulling fs layer" || ev.status === "Waiting" || ev.status === "Downloading" || l.cached || l.done) layers.set(ev.id, l);
        if (Date.now() - lastReport > 2000) {
          lastReport = Date.now();
          const all = [...layers.values()];
          const mb = (n: number) => (n / 1e6).toFixed(1);
          onProgress(`pulling ${ref}: ${all.filter((x) => x.done).length}/${all.length} layers, ${mb(all.reduce((a, x) => a + (x.cached ? 0 : x.current), 0))}/${mb(all.reduce((a, x) => a + (x.cached ? 0 : x.total), 0))} MB`);
        }
      });
      const bad = events.find((e) => e.error);
      if (bad) throw new Error(bad.errorDetail?.message ?? bad.error);
      const all = [...layers.values()];
      return {
        bytes: all.reduce((a, x) => a + (x.cached ? 0 : x.total || x.current), 0),
        layers: all.filter((x) => !x.cached).length,
        cachedLayers: all.filter((x) => x.cached).length,
        seconds: (performance.now() - started) / 1000,
      };
    } catch (err) {
      last = ac.signal.aborted ? new RegistryUnreachableError(`pull of ${ref} timed out after ${r.transferTimeoutSeconds} s`, r.host) : classify(err, r, `pull of ${ref}`);
      if (last instanceof NotInRegistryError) throw last;
      if (attempt < r.attempts && !(last instanceof RegistryUnreachableError)) {
        onProgress(`pull of ${ref} failed (${last.message}); retry ${attempt + 1}/${r.attempts}`);
        await sleep(1000 * 2 ** (attempt - 1));
      } else throw last;
    } finally {
      clearTimeout(timer);
      for (const [id, owner] of layerOwners) if (owner === me) layerOwners.delete(id);
    }
  }
  throw last ?? new EnvironmentError(`pull of ${ref} failed`);
}

/** Layers being pulled by this process now, by layer id → the pull counting their bytes. */
const layerOwners = new Map<string, symbol>();

/** What one push moved. */
export interface PushStats {
  /** Bytes uploaded (layers the registry lacked). */
  bytes: number;
  /** Layers uploaded / already in the registry. */
  layers: number;
  existingLayers: number;
  seconds: number;
}

/**
 * Push the local image `localRef` as {@link registryRef} (tagging it so first), `attempts` tries
 * for transfer errors.
 * @throws RegistryUnreachableError, EnvironmentError.
 */
export async function pushToRegistry(r: RegistrySettings, localRef: string, onProgress: (line: string) => void = () => undefined): Promise<PushStats> {
  const started = performance.now();
  const ref = registryRef(r, localRef);
  const [repo, tag] = splitTag(ref);
  let last: EnvironmentError | undefined;
  for (let attempt = 1; attempt <= r.attempts; attempt++) {
    // The registry name is a tag only for the push (removed after: the host keeps its local names).
    await docker().getImage(localRef).tag({ repo, tag });
    const ac = new AbortController();
    const timer = setTimeout(() => ac.abort(), r.transferTimeoutSeconds * 1000);
    const layers = new Map<string, { total: number; existed: boolean }>();
    try {
      const stream = (await docker().getImage(ref).push({ authconfig: { serveraddress: r.host }, abortSignal: ac.signal } as never)) as unknown as NodeJS.ReadableStream;
      let lastReport = 0;
      const events = await consumeJsonStream(stream, (e) => {
        const ev = e as { id?: string; status?: string; progressDetail?: { total?: number } };
        if (!ev.id || !ev.status) return;
        const l = layers.get(ev.id) ?? { total: 0, existed: false };
        if (ev.progressDetail?.total) l.total = ev.progressDetail.total;
        if (/already exists|Mounted from/i.test(ev.status)) l.existed = true;
        if (/Preparing|Waiting|Pushing|Pushed|already exists|Mounted from/i.test(ev.status)) layers.set(ev.id, l);
        if (Date.now() - lastReport > 2000) {
          lastReport = Date.now();
          onProgress(`pushing ${ref}: ${layers.size} layers`);
        }
      });
      const bad = events.find((e) => e.error);
      if (bad) throw new Error(bad.errorDetail?.message ?? bad.error);
      const all = [...layers.values()];
      await untag(ref);
      return { bytes: all.reduce((a, x) => a + (x.existed ? 0 : x.total), 0), layers: all.filter((x) => !x.existed).length, existingLayers: all.filter((x) => x.existed).length, seconds: (performance.now() - started) / 1000 };
    } catch (err) {
      last = ac.signal.aborted ? new RegistryUnreachableError(`push of ${ref} timed out after ${r.transferTimeoutSeconds} s`, r.host) : classify(err, r, `push of ${ref}`);
      if (attempt < r.attempts && !(last instanceof RegistryUnreachableError)) {
        onProgress(`push of ${ref} failed (${last.message}); retry ${attempt + 1}/${r.attempts}`);
        await sleep(1000 * 2 ** (attempt - 1));
      } else throw last;
    } finally {
      clearTimeout(timer);
    }
  }
  throw last ?? new EnvironmentError(`push of ${ref} failed`);
}

/** Remove the tag `ref` (never the image: it keeps its other names). Errors ignored (another process may have done it). */
async function untag(ref: string): Promise<void> {
  await docker()
    .getImage(ref)
    .remove({ noprune: true })
    .catch(() => undefined);
}

/** The local image `tag` when its `forager.spec-hash` label is `hash` (any image of that tag without a hash), else undefined. */
async function localImage(tag: string, hash?: string): Promise<string | undefined> {
  const info = await inspectImage(tag);
  if (!info) return undefined;
  if (hash !== undefined && info.Config?.Labels?.["forager.spec-hash"] !== hash) return undefined;
  return info.Id;
}

/**
 * Pull `localRef` from the registry and tag it with its local name; with `hash`, the pulled
 * image's `forager.spec-hash` label must equal it.
 * @returns the image id and what the pull moved.
 * @throws NotInRegistryError (absent, or a stale tag whose label differs), RegistryUnreachableError, EnvironmentError.
 */
export async function pullAsLocal(r: RegistrySettings, localRef: string, opts: { hash?: string; onProgress?: (line: string) => void } = {}): Promise<{ id: string; stats: PullStats }> {
  const ref = registryRef(r, localRef);
  const stats = await pullWithProgress(r, ref, opts.onProgress);
  // Another process of this host pulling the same image may have renamed it already.
  const info = (await inspectImage(ref)) ?? (await inspectImage(localRef));
  if (!info) throw new EnvironmentError(`pulled ${ref} but the engine does not show it`);
  const label = info.Config?.Labels?.["forager.spec-hash"];
  if (opts.hash !== undefined && label !== opts.hash) {
    await untag(ref);
    throw new NotInRegistryError(`${ref} in the registry has spec-hash ${label ?? "(none)"}, not ${opts.hash}: a stale or foreign tag (rebuilt and pushed over)`, ref);
  }
  const [repo, tag] = splitTag(localRef);
  await docker().getImage(info.Id).tag({ repo, tag });
  await untag(ref);
  return { id: info.Id, stats };
}

// ---- obtaining an instance image in a cluster -----------------------------------------------------

/** A cluster-wide lock per image (Redis in the orchestrator). */
export interface BuildLock {
  /**
   * Try to take the lock named `key`, kept alive (renewed) until released; a holder that dies
   * loses it when it expires. Resolves `{ release }` when taken, `{ heldBy }` (who has it) when not.
   */
  tryAcquire(key: string): Promise<{ release: () => Promise<void> } | { heldBy: string }>;
}

/** What happened while an image was obtained (progress for people, counters for status). */
export interface ObtainEvent {
  kind: "local" | "pull" | "pulled" | "wait" | "build" | "built" | "push" | "pushed" | "retry";
  /** The local tag concerned. */
  tag: string;
  message: string;
  /** pulled / pushed: bytes moved; built / pulled: seconds. */
  bytes?: number;
  seconds?: number;
  /** A progress line of a pull, push or build under way (logged at debug level). */
  progress?: boolean;
}

/** How an instance image was had. */
export interface ObtainResult {
  /** The local tag (`forager/instance:…`). */
  tag: string;
  id: string;
  how: "local" | "pulled" | "built";
  /** Wall time of the call, seconds. */
  seconds: number;
  /** Bytes downloaded when pulled. */
  bytesPulled?: number;
}

export interface ObtainOptions {
  /** Cluster-wide build lock (without one, concurrent hosts may build the same image). */
  lock?: BuildLock;
  /** Options of the build, when one is needed. */
  build?: BuildOptions;
  onEvent?: (e: ObtainEvent) => void;
  logger?: Logger;
  /** Do not share an obtain of the same image already running in this process (tests playing two hosts in one process). */
  alone?: boolean;
}

/**
 * Make sure the base image `tag` is here: local, else pulled from the registry, else made
 * ({@link ensureBaseImage}) and pushed. Returns its id.
 */
async function baseFromCluster(r: RegistrySettings, tag: string, say: (e: ObtainEvent) => void, build: BuildOptions): Promise<string> {
  const here = await localImage(tag);
  if (here) return here;
  try {
    say({ kind: "pull", tag, message: `pulling base ${tag} from ${r.host}` });
    const { id, stats } = await pullAsLocal(r, tag, { onProgress: (line) => say({ kind: "pull", tag, message: line, progress: true }) });
    say({ kind: "pulled", tag, message: `pulled base ${tag}`, bytes: stats.bytes, seconds: stats.seconds });
    return id;
  } catch (err) {
    if (!(err instanceof NotInRegistryError)) throw err;
  }
  if (!tag.startsWith("forager/base:")) throw new EnvironmentError(`base image ${tag} is neither on this host nor in registry ${r.host}`);
  const made = await ensureBaseImage({ tag, ...(build.stateDir ? { stateDir: build.stateDir } : {}) });
  await pushToRegistry(r, tag);
  return made.id;
}

/**
 * The instance image of `spec` on this host, built at most once in the cluster (see the module
 * comment): local → pulled → built under `lock` and pushed (env and base tags too).
 * @throws RegistryUnreachableError after `waitSeconds` of an unreachable registry; ImageBuildError
 *   or EnvironmentError from a build; EnvironmentError when another host's build takes longer than
 *   `buildWaitSeconds`.
 */
export async function obtainInstanceImage(specInput: ImageSpecInput, r: RegistrySettings, opts: ObtainOptions = {}): Promise<ObtainResult> {
  const started = performance.now();
  const spec = ImageSpecSchema.parse(specInput);
  const log = opts.logger ?? silentLogger;
  const build: BuildOptions = { ...opts.build };
  const say = (e: ObtainEvent) => {
    const level = e.kind === "retry" || e.kind === "wait" ? "warn" : e.progress ? "debug" : "info";
    log[level]({ event: `image-${e.kind}`, tag: e.tag, ...(e.bytes !== undefined ? { bytes: e.bytes } : {}), ...(e.seconds !== undefined ? { seconds: e.seconds } : {}) }, e.message);
    opts.onEvent?.(e);
  };
  const retrying = (what: string) => (err: RegistryUnreachableError, delay: number, waited: number) =>
    say({ kind: "retry", tag: what, message: `${err.message}; retrying in ${delay.toFixed(0)} s (waited ${waited.toFixed(0)} of ${r.waitSeconds} s)` });
  const done = (tag: string, id: string, how: ObtainResult["how"], bytesPulled?: number): ObtainResult => ({
    tag,
    id,
    how,
    seconds: (performance.now() - started) / 1000,
    ...(bytesPulled !== undefined ? { bytesPulled } : {}),
  });

  await whileUnreachable(r, () => baseFromCluster(r, spec.baseImage, say, build), retrying(spec.baseImage));
  // A source in the registry is fetched (once per host) only when a build needs it.
  const withSource = async (): Promise<BuildOptions> => {
    const src = build.source ?? spec.source;
    if (src?.type !== "registry") return build;
    const file = await whileUnreachable(r, () => fetchSource(r, src, { stateDir: build.stateDir }), retrying(src.digest));
    return { ...build, source: { type: "bundle", path: file } };
  };
  const plan = await planInstanceImage(spec, build);
  if (!plan) throw new EnvironmentError(`base image ${spec.baseImage} vanished`);
  const target = plan.instance;
  if (!target) {
    // The commit is known only after a clone (an abbreviated sha of a URL source): build here, then push.
    const b = await buildInstanceImage(spec, { ...(await withSource()), onProgress: progressOf(say, spec.repo) });
    if (!b.cached) say({ kind: "built", tag: b.tag, message: `built ${b.tag} in ${b.seconds.toFixed(1)} s`, seconds: b.seconds });
    await whileUnreachable(r, () => pushAll(r, [spec.baseImage, b.env.tag, b.tag], say), retrying(b.tag));
    return done(b.tag, b.id, b.cached ? "local" : "built");
  }
  // One obtain per image at a time in this process: a second caller waits for the first (and finds the image here).
  const running = opts.alone ? undefined : inflight.get(target.tag);
  if (running) {
    const prior = await running.catch(() => undefined);
    const id = prior && (await localImage(target.tag, target.hash));
    if (id) return done(target.tag, id, "local");
  }
  const p = obtainPlanned(target, plan, spec, r, opts, say, retrying, withSource, done);
  if (!opts.alone) inflight.set(target.tag, p);
  try {
    return await p;
  } finally {
    if (inflight.get(target.tag) === p) inflight.delete(target.tag);
  }
}

/** Obtains in flight in this process, by instance tag. */
const inflight = new Map<string, Promise<ObtainResult>>();

async function obtainPlanned(
  target: NonNullable<InstancePlan["instance"]>,
  plan: InstancePlan,
  spec: ImageSpec,
  r: RegistrySettings,
  opts: ObtainOptions,
  say: (e: ObtainEvent) => void,
  retrying: (what: string) => (err: RegistryUnreachableError, delay: number, waited: number) => void,
  withSource: () => Promise<BuildOptions>,
  done: (tag: string, id: string, how: ObtainResult["how"], bytesPulled?: number) => ObtainResult,
): Promise<ObtainResult> {
  const { tag, hash } = target;
  const here = await localImage(tag, hash);
  if (here) {
    say({ kind: "local", tag, message: `${tag} is on this host` });
    return done(tag, here, "local");
  }
  const tryPull = async (): Promise<ObtainResult | undefined> => {
    const [name, t] = splitTag(tag);
    if (!(await manifestDigest(r, name, t))) return undefined;
    say({ kind: "pull", tag, message: `pulling ${registryRef(r, tag)}` });
    try {
      const { id, stats } = await pullAsLocal(r, tag, { hash, onProgress: (line) => say({ kind: "pull", tag, message: line, progress: true }) });
      say({ kind: "pulled", tag, message: `pulled ${tag} (${(stats.bytes / 1e6).toFixed(1)} MB in ${stats.layers} layer(s), ${stats.cachedLayers} already here) in ${stats.seconds.toFixed(1)} s`, bytes: stats.bytes, seconds: stats.seconds });
      return done(tag, id, "pulled", stats.bytes);
    } catch (err) {
      if (err instanceof NotInRegistryError) {
        say({ kind: "wait", tag, message: `${err.message}; building instead` });
        return undefined;
      }
      throw err;
    }
  };

  const deadline = Date.now() + r.buildWaitSeconds * 1000;
  let announced = "";
  for (;;) {
    const pulled = await whileUnreachable(r, tryPull, retrying(tag));
    if (pulled) return pulled;
    const got = opts.lock ? await opts.lock.tryAcquire(`image:${tag}`) : { release: async () => undefined };
    if ("release" in got) {
      try {
        // Someone may have pushed between the look and the lock.
        const late = await whileUnreachable(r, tryPull, retrying(tag));
        if (late) return late;
        const again = await localImage(tag, hash);
        if (again) return done(tag, again, "local");
        // The env layer of another instance may be in the registry already.
        if (!(await localImage(plan.env.tag, plan.env.hash))) {
          await whileUnreachable(
            r,
            async () => {
              const [en, et] = splitTag(plan.env.tag);
              if (!(await manifestDigest(r, en, et))) return;
              try {
                const { stats } = await pullAsLocal(r, plan.env.tag, { hash: plan.env.hash });
                say({ kind: "pulled", tag: plan.env.tag, message: `pulled ${plan.env.tag}`, bytes: stats.bytes, seconds: stats.seconds });
              } catch (err) {
                if (!(err instanceof NotInRegistryError)) throw err;
              }
            },
            retrying(plan.env.tag),
          );
        }
        say({ kind: "build", tag, message: `building ${tag} (not in registry ${r.host})` });
        const b = await buildInstanceImage(spec, { ...(await withSource()), onProgress: progressOf(say, spec.repo) });
        if (b.tag !== tag) throw new EnvironmentError(`build of ${spec.repo}@${spec.commit} made ${b.tag}, expected ${tag} (recipe changed while running?)`);
        say({ kind: "built", tag, message: `built ${tag} in ${b.seconds.toFixed(1)} s`, seconds: b.seconds });
        await whileUnreachable(r, () => pushAll(r, [spec.baseImage, b.env.tag, tag], say), retrying(tag));
        return done(tag, b.id, "built");
      } finally {
        await got.release().catch(() => undefined);
      }
    }
    if (Date.now() > deadline) throw new EnvironmentError(`waited ${r.buildWaitSeconds} s for ${got.heldBy} to build ${tag}`);
    if (announced !== got.heldBy) {
      announced = got.heldBy;
      say({ kind: "wait", tag, message: `${got.heldBy} is building ${tag}; waiting for it in the registry` });
    }
    await sleep(r.pollSeconds * 1000);
  }
}

function progressOf(say: (e: ObtainEvent) => void, repo: string) {
  return (p: BuildProgress) => {
    if (p.phase !== "build" || p.step === undefined) say({ kind: "build", tag: repo, message: `[${p.layer} ${p.phase}] ${p.message}`, progress: true });
  };
}

/** Push each local tag (base, env, instance: the registry keeps a layer once, so later pushes only add manifests). */
async function pushAll(r: RegistrySettings, tags: string[], say: (e: ObtainEvent) => void): Promise<void> {
  for (const t of tags) {
    say({ kind: "push", tag: t, message: `pushing ${registryRef(r, t)}` });
    const s = await pushToRegistry(r, t, (line) => say({ kind: "push", tag: t, message: line, progress: true }));
    say({ kind: "pushed", tag: t, message: `pushed ${t} (${(s.bytes / 1e6).toFixed(1)} MB in ${s.layers} layer(s), ${s.existingLayers} already there) in ${s.seconds.toFixed(1)} s`, bytes: s.bytes, seconds: s.seconds });
  }
}

/**
 * Any image `localRef` on this host: present, else pulled from the registry under its
 * {@link registryRef} (run images given by tag, the image a trajectory ran in before its
 * evaluation on another host).
 * @returns how it was had and the bytes pulled.
 * @throws NotInRegistryError when neither here nor there; RegistryUnreachableError after `waitSeconds`.
 */
export async function ensureLocalImage(r: RegistrySettings, localRef: string, opts: { onEvent?: (e: ObtainEvent) => void } = {}): Promise<ObtainResult> {
  const started = performance.now();
  const id = await localImage(localRef);
  if (id) return { tag: localRef, id, how: "local", seconds: 0 };
  const say = opts.onEvent ?? (() => undefined);
  const { id: pulled, stats } = await whileUnreachable(
    r,
    () => pullAsLocal(r, localRef, { onProgress: (line) => say({ kind: "pull", tag: localRef, message: line, progress: true }) }),
    (err, delay, waited) => say({ kind: "retry", tag: localRef, message: `${err.message}; retrying in ${delay.toFixed(0)} s (waited ${waited.toFixed(0)} of ${r.waitSeconds} s)` }),
  );
  say({ kind: "pulled", tag: localRef, message: `pulled ${localRef}`, bytes: stats.bytes, seconds: stats.seconds });
  return { tag: localRef, id: pulled, how: "pulled", seconds: (performance.now() - started) / 1000, bytesPulled: stats.bytes };
}

/**
 * Compare this host's base image `tag` with the registry's (changes nothing): `same`, `differs`
 * (both exist with different ids: this host's env and instance images hash differently from the
 * cluster's and are not shared; remove the local base image and the next build pulls the
 * registry's), `local-only` (the first build here pushes it), `registry-only` (pulled when first
 * needed) or `absent`.
 */
export async function checkBaseImage(r: RegistrySettings, tag: string): Promise<{ state: "same" | "differs" | "local-only" | "registry-only" | "absent"; localId?: string; registryId?: string }> {
  const [local, remote] = [await localImage(tag), await registryImageId(r, tag)];
  const ids = { ...(local ? { localId: local } : {}), ...(remote ? { registryId: remote } : {}) };
  if (local && remote) return { state: local === remote ? "same" : "differs", ...ids };
  return { state: local ? "local-only" : remote ? "registry-only" : "absent", ...ids };
}

// ---- repository sources through the registry -------------------------------------------------------

function git(cwd: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn("git", args, { cwd, stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, GIT_TERMINAL_PROMPT: "0" } });
    let out = "";
    let err = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    child.stderr.on("data", (d: Buffer) => (err += d.toString()));
    child.on("error", reject);
    child.on("close", (code) => (code === 0 ? resolve(out) : reject(new EnvironmentError(`git ${args.join(" ")} in ${cwd} failed (${code}): ${err.trim().slice(0, 300)}`))));
  });
}

/** A published source: what a task's `image.source` becomes, and the commits it holds (full shas). */
export interface PublishedSource {
  source: Extract<RepoSource, { type: "registry" }>;
  /** Requested commit (as given) → full sha. */
  commits: Record<string, string>;
  /** Size of the layer, bytes. */
  bytes: number;
  /** False when the registry had this layer already (nothing uploaded). */
  uploaded: boolean;
}

/**
 * Put a git bundle of `commits` of the local repository `repoDir` (a clone, bare or not, or a
 * bundle file) into the registry as the one-layer image `forager/source:<repo-slug>-<hash12>`:
 * every commit's history, and the tags that point at one of them or an ancestor (builds that keep
 * ancestor tags need them). The repository itself is not changed (the refs are made in a shared
 * temporary clone).
 * @throws EnvironmentError when a commit is not in the repository; RegistryUnreachableError.
 */
export async function publishSource(r: RegistrySettings, repo: string, repoDir: string, commits: readonly string[]): Promise<PublishedSource> {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), "forager-source-"));
  try {
    const clone = path.join(work, "clone.git");
    const isBundle = fs.statSync(repoDir).isFile();
    await git(work, ["clone", "--bare", "--quiet", ...(isBundle ? [] : ["--shared"]), path.resolve(repoDir), clone]);
    const full: Record<string, string> = {};
    for (const c of commits) {
      try {
        full[c] = (await git(clone, ["rev-parse", "--verify", "--quiet", `${c}^{commit}`])).trim();
      } catch {
        throw new EnvironmentError(`commit ${c} is not in ${repoDir}`);
      }
    }
    const shas = [...new Set(Object.values(full))].sort();
    for (const s of shas) await git(clone, ["update-ref", `refs/heads/forager-${s}`, s]);
    const tags = new Set<string>();
    for (const s of shas) for (const t of (await git(clone, ["tag", "--merged", s])).split("\n").filter(Boolean)) tags.add(`refs/tags/${t}`);
    const bundle = path.join(work, "source.bundle");
    await git(clone, ["bundle", "create", bundle, ...shas.map((s) => `refs/heads/forager-${s}`), ...[...tags].sort()]);
    // The layer: a gzip tar holding source.bundle; its digest (compressed) and diff id (tar).
    const layer = path.join(work, "layer.tar.gz");
    const diff = createHash("sha256");
    const dig = createHash("sha256");
    let size = 0;
    const pack = tar.pack();
    const st = fs.statSync(bundle);
    const entry = pack.entry({ name: "source.bundle", size: st.size, mode: 0o644, mtime: new Date(0) });
    const feeding = pipeline(fs.createReadStream(bundle), entry).then(() => pack.finalize());
    await Promise.all([
      feeding,
      pipeline(
        pack,
        tee((c) => diff.update(c)),
        zlib.createGzip({ level: 1 }),
        tee((c) => {
          dig.update(c);
          size += c.length;
        }),
        fs.createWriteStream(layer),
      ),
    ]);
    const digest = `sha256:${dig.digest("hex")}`;
    const name = "forager/source";
    const tag = `${repoSlug(repo)}-${createHash("sha256").update(shas.join("\n")).digest("hex").slice(0, 12)}`.slice(0, 128);
    const config = Buffer.from(
      JSON.stringify({
        architecture: "amd64",
        os: "linux",
        config: { Labels: { "forager.kind": "source", "forager.repo": repo, "forager.commits": shas.join(" ") } },
        rootfs: { type: "layers", diff_ids: [`sha256:${diff.digest("hex")}`] },
        history: [{ created_by: "forager publishSource: git bundle" }],
      }),
    );
    const configFile = path.join(work, "config.json");
    fs.writeFileSync(configFile, config);
    const configDigest = `sha256:${createHash("sha256").update(config).digest("hex")}`;
    const head = await http(r, "HEAD", `/v2/${repoPath(r, name)}/blobs/${digest}`);
    await head.body.dump();
    const uploaded = head.statusCode !== 200;
    await uploadBlob(r, name, layer, digest, size);
    await uploadBlob(r, name, configFile, configDigest, config.length);
    const manifest = JSON.stringify({
      schemaVersion: 2,
      mediaType: "application/vnd.docker.distribution.manifest.v2+json",
      config: { mediaType: "application/vnd.docker.container.image.v1+json", size: config.length, digest: configDigest },
      layers: [{ mediaType: "application/vnd.docker.image.rootfs.diff.tar.gzip", size, digest }],
    });
    const put = await http(r, "PUT", `/v2/${repoPath(r, name)}/manifests/${tag}`, { headers: { "content-type": "application/vnd.docker.distribution.manifest.v2+json" }, body: Buffer.from(manifest) });
    const text = await put.body.text();
    if (put.statusCode !== 201) throw new EnvironmentError(`putting the manifest of ${name}:${tag} on ${r.host}: HTTP ${put.statusCode} ${text.slice(0, 200)}`);
    return { source: { type: "registry", name, digest, tag }, commits: full, bytes: size, uploaded };
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}

/** A pass-through stream that shows each chunk to `see`. */
function tee(see: (c: Buffer) => void): Transform {
  return new Transform({
    transform(chunk: Buffer, _enc, cb) {
      see(chunk);
      cb(null, chunk);
    },
  });
}

/**
 * The bundle file of a registry source on this host: `<stateDir>/sources/<hex>.bundle`, downloaded
 * once (digest checked, written atomically, one download per host at a time).
 * @throws EnvironmentError when the download does not match its digest; RegistryUnreachableError.
 */
export async function fetchSource(r: RegistrySettings, source: Extract<RepoSource, { type: "registry" }>, opts: { stateDir?: string } = {}): Promise<string> {
  const dir = path.join(opts.stateDir ?? defaultStateDir(), "sources");
  const hex = source.digest.slice("sha256:".length);
  const file = path.join(dir, `${hex}.bundle`);
  if (fs.existsSync(file)) return file;
  fs.mkdirSync(dir, { recursive: true });
  return withFileLock(path.join(dir, `${hex}.lock`), async () => {
    if (fs.existsSync(file)) return file;
    const res = await http(r, "GET", `/v2/${repoPath(r, source.name)}/blobs/${source.digest}`, { timeoutMs: 3_600_000 });
    if (res.statusCode !== 200) {
      await res.body.dump();
      throw new EnvironmentError(`source ${source.name}@${source.digest} on ${r.host}: HTTP ${res.statusCode}${res.statusCode === 404 ? " (not in this registry: was it published to another one?)" : ""}`);
    }
    const tmp = `${file}.${randomBytes(4).toString("hex")}.tmp`;
    const dig = createHash("sha256");
    const extract = tar.extract();
    let found = false;
    const extracted = new Promise<void>((resolve, reject) => {
      extract.on("entry", (h, stream, next) => {
        if (h.name !== "source.bundle") {
          stream.resume();
          stream.on("end", next);
          return;
        }
        found = true;
        pipeline(stream, fs.createWriteStream(tmp)).then(() => next(), reject);
      });
      extract.on("finish", resolve);
      extract.on("error", reject);
    });
    try {
      await Promise.all([pipeline(res.body, tee((c) => dig.update(c)), zlib.createGunzip(), extract), extracted]);
      if (`sha256:${dig.digest("hex")}` !== source.digest) throw new EnvironmentError(`source ${source.digest} from ${r.host}: the download does not match its digest`);
      if (!found) throw new EnvironmentError(`source ${source.digest} from ${r.host}: no source.bundle in the layer`);
      fs.renameSync(tmp, file);
      return file;
    } catch (err) {
      fs.rmSync(tmp, { force: true });
      throw classify(err, r, `fetching source ${source.digest}`);
    }
  });
}

/** Record an image obtained from the registry in the host's image index (pruning by disuse sees it). */
export async function recordObtained(stateDir: string, res: ObtainResult, kind: "instance" | "env" | "base" = "instance"): Promise<void> {
  if (res.how === "local") return;
  const now = new Date().toISOString();
  await updateImageIndex(stateDir, (idx) => {
    idx.images[res.tag] = { ...idx.images[res.tag], tag: res.tag, id: res.id, kind, lastUsed: now, ...(res.how === "pulled" ? { builtAt: idx.images[res.tag]?.builtAt ?? now } : {}) };
  });
}
