/**
 * Python parsing for bug injection: web-tree-sitter 0.25 with the tree-sitter-python grammar
 * (the wasm shipped in `node_modules/tree-sitter-python`), entity extraction (functions,
 * methods, classes) and a cyclomatic-complexity measure for the target gate.
 *
 * Offsets: web-tree-sitter indexes a JS string in UTF-16 code units (checked: `'é€😀'` spans 4
 * units), so every `start`/`end` here is a code-unit index into the decoded source; the exact
 * UTF-8 byte range of an edit is {@link byteOffset} of those indices. Edits change the text
 * only at those ranges, so the resulting diff is the minimal line diff of the edit.
 */
import { createRequire } from "node:module";
import { Language, Parser, type Node, type Tree } from "web-tree-sitter";

export type { Node, Tree };

let parserPromise: Promise<Parser> | undefined;

/** The shared parser (initialised once per process; ~20 ms). */
export function pythonParser(): Promise<Parser> {
  parserPromise ??= (async () => {
    await Parser.init();
    const require = createRequire(import.meta.url);
    const wasm = require.resolve("tree-sitter-python/tree-sitter-python.wasm");
    const lang = await Language.load(wasm);
    const parser = new Parser();
    parser.setLanguage(lang);
    return parser;
  })();
  return parserPromise;
}

/** Parse Python source. @throws when tree-sitter returns no tree. */
export async function parsePython(source: string): Promise<Tree> {
  const parser = await pythonParser();
  const tree = parser.parse(source);
  if (!tree) throw new Error("tree-sitter returned no tree");
  return tree;
}

/** True when the source parses without ERROR or MISSING nodes. */
export async function parsesCleanly(source: string): Promise<boolean> {
  const tree = await parsePython(source);
  try {
    return !tree.rootNode.hasError;
  } finally {
    tree.delete();
  }
}

/** UTF-8 byte offset of the code-unit index `index` in `source`. */
export function byteOffset(source: string, index: number): number {
  return Buffer.byteLength(source.slice(0, index), "utf8");
}

/** A function, method or class: the unit targets are chosen by. */
export interface Entity {
  kind: "function" | "class";
  /** Dotted qualified name inside the module, e.g. `Flask.make_response` or `outer.<locals>.inner`. */
  name: string;
  /** The `function_definition` / `class_definition` node (not its decorators). */
  node: Node;
  /** 1-based first and last line of the definition (decorators included). */
  startLine: number;
  endLine: number;
  /** 1 + decision points (if/elif, loops, except, boolean operators, conditional expressions, comprehension ifs, match cases). */
  complexity: number;
}

const DECISION_NODES = new Set([
  "if_statement",
  "elif_clause",
  "for_statement",
  "while_statement",
  "except_clause",
  "boolean_operator",
  "conditional_expression",
  "if_clause",
  "case_clause",
  "assert_statement",
]);

const SCOPE_NODES = new Set(["function_definition", "class_definition", "lambda"]);

/**
 * Cyclomatic complexity of a function body (McCabe: 1 + decision points); nested functions and
 * classes are not counted (they are entities of their own). For a class: 1 + its methods' sum.
 */
export function complexity(def: Node): number {
  if (def.type === "class_definition") {
    let c = 1;
    const body = def.childForFieldName("body");
    for (const child of body?.namedChildren ?? []) {
      const fn = unwrapDecorated(child);
      if (fn?.type === "function_definition") c += complexity(fn) - 1;
    }
    return c;
  }
  let decisions = 0;
  const visit = (n: Node): void => {
    for (const child of n.namedChildren) {
      if (!child) continue;
      if (SCOPE_NODES.has(child.type)) continue;
      if (DECISION_NODES.has(child.type)) decisions++;
      visit(child);
    }
  };
  const body = def.childForFieldName("body");
  if (body) visit(body);
  return 1 + decisions;
}

/** `decorated_definition` → its definition; other nodes unchanged. */
export function unwrapDecorated(n: Node | null): Node | null {
  if (n?.type === "decorated_definition") return n.childForFieldName("definition");
  return n;
}

/** The node spanning a definition with its decorators. */
export function withDecorators(def: Node): Node {
  const p = def.parent;
  return p?.type === "decorated_definition" ? p : def;
}

/** Every function and class definition of a module, outermost first, with qualified names. */
export function entities(tree: Tree): Entity[] {
  const out: Entity[] = [];
  const visit = (n: Node, prefix: string, inFunction: boolean): void => {
    for (const child of n.namedChildren) {
      if (!child) continue;
      if (child.type === "function_definition" || child.type === "class_definition") {
        const name = child.childForFieldName("name")?.text ?? "?";
        const qual = prefix + name;
        const outer = withDecorators(child);
        out.push({
          kind: child.type === "function_definition" ? "function" : "class",
          name: qual,
          node: child,
          startLine: outer.startPosition.row + 1,
          endLine: child.endPosition.row + 1,
          complexity: complexity(child),
        });
        const isFn = child.type === "function_definition";
        visit(child, isFn ? `${qual}.<locals>.` : `${qual}.`, isFn || inFunction);
      } else {
        visit(child, prefix, inFunction);
      }
    }
  };
  visit(tree.rootNode, "", false);
  return out;
}

/**
 * Nodes of `def`'s own body (pre-order), not descending into nested functions, classes or
 * lambdas: what function-level operators may touch.
 */
export function ownNodes(def: Node): Node[] {
  const out: Node[] = [];
  const visit = (n: Node): void => {
    for (const child of n.children) {
      if (!child) continue;
      out.push(child);
      if (SCOPE_NODES.has(child.type) || child.type === "decorated_definition") continue;
      visit(child);
    }
  };
  const body = def.childForFieldName("body");
  if (body) {
    out.push(body);
    visit(body);
  }
  return out;
}
