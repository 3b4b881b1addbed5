/**
 * Run on a cluster host (test/helpers/cluster.ts onHost): obtain the instance images of the image
 * specs in the JSON file argv[2] (an array) through the registry FORAGER_REGISTRY, one after the
 * other (images/registry.ts obtainInstanceImage), and print one JSON line per image: the result
 * and the events (built / pulled / pushed with seconds and bytes). For bench/cluster.ts.
 */
import fs from "node:fs";
import { obtainInstanceImage, parseRegistryOption, type ObtainEvent } from "../../images/registry";

const reg = parseRegistryOption(undefined);
if (!reg) throw new Error("FORAGER_REGISTRY is not set");
const specs = JSON.parse(fs.readFileSync(process.argv[2]!, "utf8")) as unknown[];
for (const spec of specs) {
  const events: ObtainEvent[] = [];
  const r = await obtainInstanceImage(spec as never, reg, { onEvent: (e) => (e.progress ? undefined : events.push(e)) });
  process.stdout.write(JSON.stringify({ ...r, events: events.map(({ kind, tag, bytes, seconds }) => ({ kind, tag, bytes, seconds })) }) + "\n");
}
process.exit(0);
