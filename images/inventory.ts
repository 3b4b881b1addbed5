/**
 * What forager images are on this engine, how much disk they take, and pruning them.
 *
 * An image is forager's when it has a `forager.kind` label or a tag under `forager/`. Sizes:
 * `sizeBytes` is Docker's (the image with all its parent layers); `ownBytes` is what the image
 * adds over its parent (`forager.parent` label: instance → env → base), so the sum of `ownBytes`
 * is the disk the forager images take together (shared layers counted once).
 * "Last used" comes from the index `<stateDir>/images.json` (builds, cache hits and
 * {@link markImageUsed} calls update it); when absent, the creation time stands in.
 */
import type Docker from "dockerode";
import { childLogger } from "../lib/log";
import { docker, dockerStatus } from "./docker";
import { defaultStateDir, readImageIndex, updateImageIndex } from "./state";

export type ImageKind = "base" | "env" | "instance";

/** One forager image. Times are ISO-8601; sizes in bytes. */
export interface ForagerImage {
  id: string;
  /** All its tags (`repo:tag`). */
  tags: string[];
  kind: ImageKind;
  repo?: string;
  commit?: string;
  specHash?: string;
  /** `forager.created` label, else the engine's creation time. */
  created: string;
  /** From the index; undefined when never recorded. */
  lastUsed?: string;
  /** Docker's size: this image including its parents. */
  sizeBytes: number;
  /** Bytes this image adds over its parent. */
  ownBytes: number;
  parentId?: string;
  /** Containers (any state) created from it. */
  containers: number;
}

/** Result of {@link listImages}. */
export interface ImageListing {
  images: ForagerImage[];
  /** Disk taken by all listed images together (sum of ownBytes), bytes. */
  totalBytes: number;
  /** Per kind: count and sum of ownBytes. */
  byKind: Record<ImageKind, { count: number; bytes: number }>;
}

function kindOf(img: Docker.ImageInfo): ImageKind | undefined {
  const k = img.Labels?.["forager.kind"];
  if (k === "base" || k === "env" || k === "instance") return k;
  for (const t of img.RepoTags ?? []) {
    if (t.startsWith("forager/base:")) return "base";
    if (t.startsWith("forager/env:")) return "env";
    if (t.startsWith("forager/instance:")) return "instance";
  }
  return undefined;
}

/**
 * List forager images with sizes, kind, repo, created and last used.
 * @param opts.kind only this kind (default all three).
 */
export async function listImages(opts: { kind?: ImageKind; stateDir?: string } = {}): Promise<ImageListing> {
  const d = docker();
  const [all, containers] = await Promise.all([d.listImages({ all: false }), d.listContainers({ all: true })]);
  const index = readImageIndex(opts.stateDir ?? defaultStateDir());
  const byId = new Map(all.map((i) => [i.Id, i]));
  const used = new Map<string, number>();
  for (const c of containers) used.set(c.ImageID, (used.get(c.ImageID) ?? 0) + 1);

  const images: ForagerImage[] = [];
  for (const img of all) {
    const kind = kindOf(img);
    if (!kind || (opts.kind && opts.kind !== kind)) continue;
    const labels = img.Labels ?? {};
    const tags = (img.RepoTags ?? []).filter((t) => t !== "<none>:<none>");
    const parentId = labels["forager.parent"];
    const parent = parentId ? byId.get(parentId) : undefined;
    const lastUsed = tags
      .map((t) => index.images[t]?.lastUsed)
      .filter((x): x is string => !!x)
      .sort()
      .pop();
    images.push({
      id: img.Id,
      tags,
      kind,
      repo: labels["forager.repo"] ?? tags.map((t) => index.images[t]?.repo).find(Boolean),
      commit: labels["forager.commit"],
      specHash: labels["forager.spec-hash"],
      created: labels["forager.created"] ?? new Date(img.Created * 1000).toISOString(),
      lastUsed,
      sizeBytes: img.Size,
      ownBytes: parent ? Math.max(0, img.Size - parent.Size) : img.Size,
      parentId,
      containers: used.get(img.Id) ?? 0,
    });
  }
  const order: Record<ImageKind, number> = { base: 0, env: 1, instance: 2 };
  images.sort((a, b) => order[a.kind] - order[b.kind] || a.created.localeCompare(b.created));
  const byKind: ImageListing["byKind"] = { base: { count: 0, bytes: 0 }, env: { count: 0, bytes: 0 }, instance: { count: 0, bytes: 0 } };
  for (const i of images) {
    byKind[i.kind].count += 1;
    byKind[i.kind].bytes += i.ownBytes;
  }
  return { images, totalBytes: images.reduce((s, i) => s + i.ownBytes, 0), byKind };
}

export interface PruneOptions {
  /** Select images created more than this many days ago. */
  olderThanDays?: number;
  /** Select images not used (built, reused, started) for this many days. */
  unusedDays?: number;
  /** Only this kind. Default: env and instance (base only when asked for explicitly). */
  kind?: ImageKind;
  /** Report what would be removed, remove nothing. */
  dryRun: boolean;
  stateDir?: string;
}

export interface PruneResult {
  dryRun: boolean;
  /** Removed (or, in a dry run, would be removed). */
  removed: ForagerImage[];
  /** Selected but kept, with the reason (in use by a container, has dependent images, engine refused). */
  skipped: { image: ForagerImage; reason: string }[];
  /** Sum of ownBytes of `removed`. */
  freedBytes: number;
}

/**
 * Remove forager images selected by age and/or disuse (both given: both must hold; neither:
 * every image of the kinds). Images with containers are never removed; an env or base image
 * is kept while an image built on it stays. Instances go first, then envs, then base.
 * Index entries of removed tags are dropped.
 */
export async function pruneImages(opts: PruneOptions): Promise<PruneResult> {
  const log = childLogger("images.prune");
  const stateDir = opts.stateDir ?? defaultStateDir();
  const listing = await listImages({ stateDir });
  const now = Date.now();
  const day = 86_400_000;
  const kinds: ImageKind[] = opts.kind ? [opts.kind] : ["instance", "env"];
  const selected = listing.images.filter((img) => {
    if (!kinds.includes(img.kind)) return false;
    if (opts.olderThanDays !== undefined && now - Date.parse(img.created) < opts.olderThanDays * day) return false;
    if (opts.unusedDays !== undefined && now - Date.parse(img.lastUsed ?? img.created) < opts.unusedDays * day) return false;
    return true;
  });
  const order: Record<ImageKind, number> = { instance: 0, env: 1, base: 2 };
  selected.sort((a, b) => order[a.kind] - order[b.kind]);

  const removing = new Set<string>();
  const removed: ForagerImage[] = [];
  const skipped: PruneResult["skipped"] = [];
  for (const img of selected) {
    if (img.containers > 0) {
      skipped.push({ image: img, reason: `in use by ${img.containers} container(s)` });
      continue;
    }
    const children = listing.images.filter((c) => c.parentId === img.id && !removing.has(c.id));
    if (children.length) {
      skipped.push({ image: img, reason: `${children.length} image(s) built on it remain (${children[0]!.tags[0] ?? children[0]!.id})` });
      continue;
    }
    if (!opts.dryRun) {
      try {
        const refs = img.tags.length ? img.tags : [img.id];
        for (const ref of refs) await docker().getImage(ref).remove({ noprune: false });
      } catch (err) {
        const status = dockerStatus(err);
        if (status !== 404) {
          skipped.push({ image: img, reason: `engine refused (${status ?? "?"}): ${(err as Error).message}` });
          continue;
        }
      }
    }
    removing.add(img.id);
    removed.push(img);
  }
  if (!opts.dryRun && removed.length) {
    await updateImageIndex(stateDir, (idx) => {
      for (const img of removed) for (const t of img.tags) delete idx.images[t];
    });
    log.info({ removed: removed.length, freedBytes: removed.reduce((s, i) => s + i.ownBytes, 0) }, "pruned images");
  }
  return { dryRun: opts.dryRun, removed, skipped, freedBytes: removed.reduce((s, i) => s + i.ownBytes, 0) };
}
