/**
 * forager's layering, written once (issue 15). Folders from the top layer to the bottom one: a
 * module may import its own folder and any folder BELOW it, never one above, and no import cycle
 * is allowed anywhere. `npm run lint` runs this (depcruise). Move a folder here, not in the code,
 * when the layering changes.
 */
const LAYERS = [
  ["bench", "test"],
  ["cli"],
  ["serve"],
  ["view"],
  ["orchestrator"],
  ["traces"],
  ["taskgen"],
  ["infer"],
  ["agent"],
  ["rewards"],
  ["tasks"],
  ["suite"],
  ["tools"],
  ["sandbox"],
  ["images"],
  ["inference-client"],
  ["lib"],
];

const folderRe = (folders) => `^(${folders.join("|")})/`;

const upward = LAYERS.slice(1).map((layer, i) => ({
  name: `no-upward-from-${layer.join("-")}`,
  comment: `${layer.join(", ")} may not import a layer above it (${LAYERS.slice(0, i + 1).flat().join(", ")})`,
  severity: "error",
  from: { path: folderRe(layer) },
  to: { path: folderRe(LAYERS.slice(0, i + 1).flat()) },
}));

module.exports = {
  forbidden: [
    {
      name: "no-circular",
      comment: "no import cycle (type-only imports included)",
      severity: "error",
      from: {},
      to: { circular: true },
    },
    {
      name: "known-layer",
      comment: "every TypeScript folder has a place in LAYERS",
      severity: "error",
      from: { path: "^[^/]+/.*\\.ts$", pathNot: folderRe(LAYERS.flat()) },
      to: {},
    },
    ...upward,
  ],
  options: {
    doNotFollow: { path: "node_modules" },
    exclude: { path: "(^|/)node_modules/" },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: "tsconfig.json" },
    enhancedResolveOptions: { extensions: [".ts", ".js", ".json"] },
  },
};
