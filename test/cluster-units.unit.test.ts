/**
 * The cluster's pure parts (no engine, no Redis): `--registry` parsing and registry names, a host's
 * slots from its cores, memory and the sandbox limits, the retry of an unreachable registry, and
 * heartbeat records with a bad field. The rest: test/cluster-registry.test.ts, test/cluster-multihost.test.ts.
 */
import { describe, expect, it } from "vitest";
import { parseRegistryOption, registryRef, RegistryUnreachableError, whileUnreachable } from "../images/registry";
import { hostCapacity } from "../orchestrator/cluster";
import { WorkerHeartbeatSchema } from "../orchestrator/records";
import { RunSpecSchema } from "../orchestrator/spec";

describe("--registry, capacity, retries, records (no engine)", () => {
  it("parses HOST:PORT[/NAMESPACE], a scheme, FORAGER_REGISTRY, and refuses a bare name", () => {
    expect(parseRegistryOption("10.0.0.5:5000", {})).toMatchObject({ host: "10.0.0.5:5000", waitSeconds: 900 });
    expect(parseRegistryOption("10.0.0.5:5000/team/forager", {})).toMatchObject({ host: "10.0.0.5:5000", namespace: "team/forager" });
    expect(parseRegistryOption("http://registry.lan/x/", {})).toMatchObject({ host: "registry.lan", namespace: "x", scheme: "http" });
    expect(parseRegistryOption(undefined, { FORAGER_REGISTRY: "localhost:5000", FORAGER_REGISTRY_WAIT_SECONDS: "30" })).toMatchObject({ host: "localhost:5000", waitSeconds: 30 });
    expect(parseRegistryOption(undefined, {})).toBeUndefined();
    expect(parseRegistryOption("none", {})).toBeUndefined();
    expect(() => parseRegistryOption("myregistry", {})).toThrow(/HOST:PORT\[\/NAMESPACE\]/);
    expect(() => parseRegistryOption("r.lan:5000/Upper", {})).toThrow(/namespace: lowercase/);
    const r = parseRegistryOption("r.lan:5000/ns", {})!;
    expect(registryRef(r, "forager/instance:a-b-c")).toBe("r.lan:5000/ns/forager/instance:a-b-c");
  });

  it("slots from cores, memory and the sandbox limits", () => {
    const GiB = 1024 ** 3;
    expect(hostCapacity({ cores: 64, memoryBytes: 256 * GiB })).toMatchObject({ slots: 254, byCpu: 512, byMemory: 254, evalSlots: 63 });
    expect(hostCapacity({ cores: 2, memoryBytes: 24 * GiB })).toMatchObject({ slots: 16, byCpu: 16, byMemory: 22, evalSlots: 2 });
    // bigger sandboxes, fewer slots; a tiny machine still gets one
    expect(hostCapacity({ cores: 64, memoryBytes: 256 * GiB, sandboxCpus: 2, sandboxMemoryBytes: 16 * GiB })).toMatchObject({ slots: 63, byCpu: 256, byMemory: 63 });
    expect(hostCapacity({ cores: 1, memoryBytes: 1 * GiB }).slots).toBe(1);
  });

  it("whileUnreachable retries only an unreachable registry, with growing delays, then gives up", async () => {
    const delays: number[] = [];
    let n = 0;
    const v = await whileUnreachable(
      { waitSeconds: 100 },
      async () => {
        if (++n < 4) throw new RegistryUnreachableError("down", "r:1");
        return "ok";
      },
      (_e, d) => delays.push(d),
      async () => undefined,
    );
    expect(v).toBe("ok");
    expect(delays).toEqual([1, 2, 4]);
    await expect(whileUnreachable({ waitSeconds: 100 }, async () => Promise.reject(new Error("manifest invalid")), undefined, async () => undefined)).rejects.toThrow("manifest invalid");
    await expect(whileUnreachable({ waitSeconds: 0 }, async () => Promise.reject(new RegistryUnreachableError("still down", "r:1")), undefined, async () => undefined)).rejects.toThrow("still down");
  });

  it("a heartbeat with a bad field fails naming it; a run spec keeps the registry location and refuses a bad one", () => {
    const hb = { id: "h1-1", host: "h1", pid: 1, startedAt: 1, heartbeatAt: 2, intervalMs: 5000, state: "running", slots: { rollouts: 2, evaluations: 1, images: 1 }, inFlight: { rollouts: 0, evaluations: 0, images: 0 }, finished: { rollouts: 0, evaluations: 0, images: 0 }, images: { local: 0, pulled: 0, built: 0, pushed: 0, bytesPulled: 0, bytesPushed: 0, pullSeconds: 0, buildSeconds: 0 }, engine: "unix:///x" };
    expect(WorkerHeartbeatSchema.parse(hb).slots.rollouts).toBe(2);
    const bad = WorkerHeartbeatSchema.safeParse({ ...hb, inFlight: { rollouts: -1, evaluations: 0, images: 0 } });
    expect(bad.success).toBe(false);
    expect(bad.error?.issues[0]?.path).toEqual(["inFlight", "rollouts"]);
    const base = { runId: "r", runDir: "/x", createdAt: "now", samples: 1, policy: { kind: "oracle" } };
    expect(RunSpecSchema.parse({ ...base, registry: { host: "10.0.0.5:5000", namespace: "f" } }).registry).toEqual({ host: "10.0.0.5:5000", namespace: "f" });
    expect(RunSpecSchema.parse(base).registry).toBeUndefined();
    const r = RunSpecSchema.safeParse({ ...base, registry: { host: "a b" } });
    expect(r.error?.issues[0]?.path).toEqual(["registry", "host"]);
  });
});
