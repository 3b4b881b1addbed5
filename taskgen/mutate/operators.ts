/**
 * Procedural bug operators on Python source (the "mutate-fix" task kind of CWM's ForagerAgent
 * data, CWM paper §2.3 "mutate-fix"; operator set after SWE-smith's procedural modifications,
 * Yang et al. 2025, `swesmith/bug_gen/procedural`). Each operator looks at the tree-sitter nodes
 * of one entity (a function's own body, or a class) and proposes {@link Site}s: text edits at
 * exact source ranges, so a bug's diff is only the lines the edit touches.
 *
 * Every operator is named ({@link OPERATOR_NAMES}); a task records the names that made it.
 * Operators never look outside their entity, and function operators never descend into nested
 * functions, classes or lambdas (those are entities of their own).
 */
import type { Entity, Node } from "./python";
import { ownNodes, unwrapDecorated, withDecorators } from "./python";

/** One replacement: `source.slice(start, end)` becomes `text` (UTF-16 code-unit indices). */
export interface Edit {
  start: number;
  end: number;
  text: string;
}

/** One proposed bug. */
export interface Site {
  operator: OperatorName;
  edits: Edit[];
  /** What changes, for people: "`<` → `>=`", "removed `for` loop". */
  description: string;
  /** 0-based row of the first edit. */
  row: number;
}

export const OPERATOR_NAMES = [
  "flip_comparison",
  "flip_boolean",
  "change_arithmetic",
  "swap_operands",
  "off_by_one",
  "invert_if",
  "remove_condition",
  "remove_loop",
  "remove_assignment",
  "remove_wrapper",
  "remove_return_value",
  "shuffle_statements",
  "remove_method",
  "remove_base_class",
  "break_chain",
] as const;
export type OperatorName = (typeof OPERATOR_NAMES)[number];

/** What each operator does (for `--help`, docs and metadata). */
export const OPERATOR_DESCRIPTIONS: Record<OperatorName, string> = {
  flip_comparison: "negate a comparison operator: == ↔ !=, < ↔ >=, > ↔ <=, in ↔ not in, is ↔ is not",
  flip_boolean: "and ↔ or; drop a `not`",
  change_arithmetic: "change an arithmetic or bitwise operator within its family (+ → -, * → /, // → /, % → //, ** → *, & ↔ |, ^ → &, << ↔ >>), also in augmented assignments",
  swap_operands: "swap the operands of a non-commutative binary operator or an ordering/membership comparison",
  off_by_one: "integer constant n → n - 1 (0 → 1)",
  invert_if: "swap the bodies of an if/else",
  remove_condition: "remove an `if` statement that has no else/elif",
  remove_loop: "remove a for/while loop",
  remove_assignment: "remove an assignment statement",
  remove_wrapper: "replace a with/try statement by its body",
  remove_return_value: "`return expr` → `return`",
  shuffle_statements: "swap two adjacent simple statements",
  remove_method: "remove a method from a class",
  remove_base_class: "remove a base class from a class definition",
  break_chain: "drop the last link of an operator chain: a + b + c → a + b, x and y and z → x and y, a < b < c → a < b",
};

/** Operators that work on a class entity; the others work on a function's body. */
export const CLASS_OPERATORS: ReadonlySet<OperatorName> = new Set(["remove_method", "remove_base_class"]);

const COMPARISON_FLIP: Record<string, string> = {
  "==": "!=",
  "!=": "==",
  "<": ">=",
  ">=": "<",
  ">": "<=",
  "<=": ">",
  in: "not in",
  "not in": "in",
  is: "is not",
  "is not": "is",
};

const ARITHMETIC_CHANGE: Record<string, string> = {
  "+": "-",
  "-": "+",
  "*": "/",
  "/": "*",
  "//": "/",
  "%": "//",
  "**": "*",
  "&": "|",
  "|": "&",
  "^": "&",
  "<<": ">>",
  ">>": "<<",
};

const NON_COMMUTATIVE = new Set(["-", "/", "//", "%", "**", "<<", ">>"]);
const ORDERING = new Set(["<", "<=", ">", ">=", "in", "not in"]);

// ---------------------------------------------------------------------------------------------
// Source helpers

function lineStart(src: string, i: number): number {
  return src.lastIndexOf("\n", i - 1) + 1;
}

/** Index just past the newline ending the line that contains `i` (or the end of the source). */
function lineEndIncl(src: string, i: number): number {
  const nl = src.indexOf("\n", i);
  return nl < 0 ? src.length : nl + 1;
}

/** Text from the line's start to `i` when it is only whitespace, else undefined. */
function indentBefore(src: string, i: number): string | undefined {
  const s = src.slice(lineStart(src, i), i);
  return /^[ \t]*$/.test(s) ? s : undefined;
}

/** True when only whitespace or a comment follows `i` on its line. */
function restOfLineEmpty(src: string, i: number): boolean {
  const end = src.indexOf("\n", i);
  return /^[ \t]*(#.*)?\r?$/.test(src.slice(i, end < 0 ? src.length : end));
}

function isStatementAlone(src: string, n: Node): boolean {
  return indentBefore(src, n.startIndex) !== undefined && restOfLineEmpty(src, n.endIndex);
}

function hasMultilineString(n: Node): boolean {
  if ((n.type === "string" || n.type === "concatenated_string") && n.startPosition.row !== n.endPosition.row) return true;
  return n.namedChildren.some((c) => c !== null && hasMultilineString(c));
}

function realChildren(block: Node): Node[] {
  return block.namedChildren.filter((c): c is Node => c !== null && c.type !== "comment");
}

/**
 * Remove a statement (whole lines). When it is the only statement of its block the block would
 * be empty, so the statement becomes `pass`. undefined when the statement shares a line.
 */
export function removeStatement(src: string, stmt: Node): Edit[] | undefined {
  if (!isStatementAlone(src, stmt)) return undefined;
  const block = stmt.parent;
  if (block && (block.type === "block" || block.type === "module") && realChildren(block).length === 1) {
    return [{ start: stmt.startIndex, end: stmt.endIndex, text: "pass" }];
  }
  return [{ start: lineStart(src, stmt.startIndex), end: lineEndIncl(src, stmt.endIndex), text: "" }];
}

/** Replace a compound statement by its body, dedented to the statement's indentation. */
function replaceByBody(src: string, stmt: Node, body: Node): Edit[] | undefined {
  const indent = indentBefore(src, stmt.startIndex);
  const bodyIndent = indentBefore(src, body.startIndex);
  if (indent === undefined || bodyIndent === undefined || !restOfLineEmpty(src, stmt.endIndex)) return undefined;
  if (!bodyIndent.startsWith(indent) || hasMultilineString(body)) return undefined;
  const extra = bodyIndent.length - indent.length;
  const bodyText = src.slice(lineStart(src, body.startIndex), lineEndIncl(src, body.endIndex));
  const lines = bodyText.split("\n");
  const dedented = lines.map((l) => (l.slice(0, extra).trim() === "" ? l.slice(Math.min(extra, l.length - l.trimStart().length)) : l));
  let text = dedented.join("\n");
  if (!text.endsWith("\n") && lineEndIncl(src, stmt.endIndex) < src.length) text += "\n";
  return [{ start: lineStart(src, stmt.startIndex), end: lineEndIncl(src, stmt.endIndex), text }];
}

function site(operator: OperatorName, edits: Edit[] | undefined, description: string, node: Node): Site | undefined {
  if (!edits || edits.length === 0) return undefined;
  return { operator, edits, description, row: node.startPosition.row };
}

function isStringLike(n: Node | null): boolean {
  return n !== null && (n.type === "string" || n.type === "concatenated_string");
}

function isDocstring(n: Node): boolean {
  return n.type === "expression_statement" && n.namedChildCount === 1 && isStringLike(n.namedChild(0));
}

/** The operator token children of a comparison_operator (e.g. `<`, `not in`). */
function comparisonOperators(n: Node): Node[] {
  return n.children.filter((c): c is Node => c !== null && !c.isNamed && c.type in COMPARISON_FLIP);
}

// ---------------------------------------------------------------------------------------------
// Operators

type FunctionOperator = (src: string, nodes: Node[]) => Site[];
type ClassOperator = (src: string, cls: Node) => Site[];

const compact = (xs: Array<Site | undefined>): Site[] => xs.filter((s): s is Site => s !== undefined);

const functionOperators: Record<Exclude<OperatorName, "remove_method" | "remove_base_class">, FunctionOperator> = {
  flip_comparison: (_src, nodes) =>
    compact(
      nodes
        .filter((n) => n.type === "comparison_operator")
        .flatMap((n) =>
          comparisonOperators(n).map((op) =>
            site("flip_comparison", [{ start: op.startIndex, end: op.endIndex, text: COMPARISON_FLIP[op.type]! }], `\`${op.type}\` → \`${COMPARISON_FLIP[op.type]}\``, op),
          ),
        ),
    ),

  flip_boolean: (_src, nodes) =>
    compact(
      nodes.flatMap((n) => {
        if (n.type === "boolean_operator") {
          const op = n.childForFieldName("operator");
          if (!op) return [];
          const to = op.type === "and" ? "or" : "and";
          return [site("flip_boolean", [{ start: op.startIndex, end: op.endIndex, text: to }], `\`${op.type}\` → \`${to}\``, op)];
        }
        if (n.type === "not_operator") {
          const arg = n.childForFieldName("argument");
          if (!arg) return [];
          return [site("flip_boolean", [{ start: n.startIndex, end: arg.startIndex, text: "" }], "dropped `not`", n)];
        }
        return [];
      }),
    ),

  change_arithmetic: (_src, nodes) =>
    compact(
      nodes.flatMap((n) => {
        if (n.type === "binary_operator") {
          const op = n.childForFieldName("operator");
          const left = n.childForFieldName("left");
          const right = n.childForFieldName("right");
          if (!op || !(op.type in ARITHMETIC_CHANGE)) return [];
          // String concatenation and %-formatting are not arithmetic.
          if ((op.type === "+" || op.type === "%") && (isStringLike(left) || isStringLike(right))) return [];
          const to = ARITHMETIC_CHANGE[op.type]!;
          return [site("change_arithmetic", [{ start: op.startIndex, end: op.endIndex, text: to }], `\`${op.type}\` → \`${to}\``, op)];
        }
        if (n.type === "augmented_assignment") {
          const op = n.childForFieldName("operator");
          const base = op?.type.slice(0, -1) ?? "";
          if (!op || !(base in ARITHMETIC_CHANGE)) return [];
          if (base === "+" && isStringLike(n.childForFieldName("right"))) return [];
          const to = `${ARITHMETIC_CHANGE[base]}=`;
          return [site("change_arithmetic", [{ start: op.startIndex, end: op.endIndex, text: to }], `\`${op.type}\` → \`${to}\``, op)];
        }
        return [];
      }),
    ),

  swap_operands: (src, nodes) =>
    compact(
      nodes.flatMap((n) => {
        let left: Node | null = null;
        let right: Node | null = null;
        if (n.type === "binary_operator") {
          const op = n.childForFieldName("operator");
          if (!op || !NON_COMMUTATIVE.has(op.type)) return [];
          left = n.childForFieldName("left");
          right = n.childForFieldName("right");
          if (op.type === "%" && isStringLike(left)) return [];
        } else if (n.type === "comparison_operator") {
          const ops = comparisonOperators(n);
          const operands = n.namedChildren.filter((c): c is Node => c !== null && c.type !== "comment");
          if (ops.length !== 1 || operands.length !== 2 || !ORDERING.has(ops[0]!.type)) return [];
          [left, right] = operands as [Node, Node];
        } else {
          return [];
        }
        if (!left || !right) return [];
        const lt = src.slice(left.startIndex, left.endIndex);
        const rt = src.slice(right.startIndex, right.endIndex);
        if (lt === rt) return [];
        return [
          site(
            "swap_operands",
            [
              { start: left.startIndex, end: left.endIndex, text: rt },
              { start: right.startIndex, end: right.endIndex, text: lt },
            ],
            `swapped \`${lt.slice(0, 30)}\` and \`${rt.slice(0, 30)}\``,
            n,
          ),
        ];
      }),
    ),

  off_by_one: (_src, nodes) =>
    compact(
      nodes
        .filter((n) => n.type === "integer" && /^\d+$/.test(n.text) && n.text.length < 15)
        .map((n) => {
          const v = Number(n.text);
          const to = String(v > 0 ? v - 1 : v + 1);
          return site("off_by_one", [{ start: n.startIndex, end: n.endIndex, text: to }], `\`${n.text}\` → \`${to}\``, n);
        }),
    ),

  invert_if: (src, nodes) =>
    compact(
      nodes
        .filter((n) => n.type === "if_statement")
        .map((n) => {
          const alts = n.childrenForFieldName("alternative").filter((c): c is Node => c !== null);
          if (alts.length !== 1 || alts[0]!.type !== "else_clause") return undefined;
          const a = n.childForFieldName("consequence");
          const b = alts[0]!.childForFieldName("body");
          if (!a || !b || a.type !== "block" || b.type !== "block") return undefined;
          // Both blocks on their own lines at the same indentation, so their texts can trade places.
          const ia = indentBefore(src, a.startIndex);
          const ib = indentBefore(src, b.startIndex);
          if (ia === undefined || ia !== ib) return undefined;
          const at = src.slice(a.startIndex, a.endIndex);
          const bt = src.slice(b.startIndex, b.endIndex);
          if (at === bt) return undefined;
          return site(
            "invert_if",
            [
              { start: a.startIndex, end: a.endIndex, text: bt },
              { start: b.startIndex, end: b.endIndex, text: at },
            ],
            "swapped the if and else bodies",
            n,
          );
        }),
    ),

  remove_condition: (src, nodes) =>
    compact(
      nodes
        .filter((n) => n.type === "if_statement" && n.childrenForFieldName("alternative").length === 0)
        .map((n) => site("remove_condition", removeStatement(src, n), "removed an `if` statement", n)),
    ),

  remove_loop: (src, nodes) =>
    compact(
      nodes
        .filter((n) => n.type === "for_statement" || n.type === "while_statement")
        .map((n) => site("remove_loop", removeStatement(src, n), `removed a \`${n.type === "for_statement" ? "for" : "while"}\` loop`, n)),
    ),

  remove_assignment: (src, nodes) =>
    compact(
      nodes
        .filter((n) => {
          if (n.type !== "expression_statement" || n.namedChildCount !== 1) return false;
          const c = n.namedChild(0);
          return (c?.type === "assignment" && c.childForFieldName("right") !== null) || c?.type === "augmented_assignment";
        })
        .map((n) => site("remove_assignment", removeStatement(src, n), "removed an assignment", n)),
    ),

  remove_wrapper: (src, nodes) =>
    compact(
      nodes
        .filter((n) => n.type === "with_statement" || n.type === "try_statement")
        .map((n) => {
          const body = n.childForFieldName("body");
          if (!body) return undefined;
          return site("remove_wrapper", replaceByBody(src, n, body), `removed the \`${n.type === "with_statement" ? "with" : "try"}\` wrapper`, n);
        }),
    ),

  remove_return_value: (_src, nodes) =>
    compact(
      nodes
        .filter((n) => n.type === "return_statement" && n.namedChildCount > 0)
        .map((n) => {
          const value = n.namedChildren.find((c) => c !== null && c.type !== "comment");
          if (!value || value.text === "None") return undefined;
          const kw = n.child(0)!;
          return site("remove_return_value", [{ start: kw.endIndex, end: value.endIndex, text: "" }], "dropped the returned value", n);
        }),
    ),

  shuffle_statements: (src, nodes) =>
    compact(
      nodes
        .filter((n) => n.type === "block")
        .flatMap((block) => {
          const stmts = realChildren(block);
          const out: Array<Site | undefined> = [];
          for (let i = 0; i + 1 < stmts.length; i++) {
            const a = stmts[i]!;
            const b = stmts[i + 1]!;
            if (a.type !== "expression_statement" || b.type !== "expression_statement") continue;
            if (isDocstring(a) || isDocstring(b)) continue;
            if (!isStatementAlone(src, a) || !isStatementAlone(src, b)) continue;
            const at = src.slice(a.startIndex, a.endIndex);
            const bt = src.slice(b.startIndex, b.endIndex);
            if (at === bt || at.includes("\n") || bt.includes("\n")) continue;
            out.push(
              site(
                "shuffle_statements",
                [
                  { start: a.startIndex, end: a.endIndex, text: bt },
                  { start: b.startIndex, end: b.endIndex, text: at },
                ],
                "swapped two adjacent statements",
                a,
              ),
            );
          }
          return out;
        }),
    ),

  break_chain: (src, nodes) =>
    compact(
      nodes.flatMap((n) => {
        if (n.type === "binary_operator" || n.type === "boolean_operator") {
          const left = n.childForFieldName("left");
          if (!left || left.type !== n.type) return [];
          return [site("break_chain", [{ start: left.endIndex, end: n.endIndex, text: "" }], "dropped the last link of an operator chain", n)];
        }
        if (n.type === "comparison_operator") {
          const ops = comparisonOperators(n);
          if (ops.length < 2) return [];
          const operands = n.namedChildren.filter((c): c is Node => c !== null && c.type !== "comment");
          const keepEnd = operands[operands.length - 2]!.endIndex;
          return [site("break_chain", [{ start: keepEnd, end: n.endIndex, text: "" }], "dropped the last comparison of a chain", n)];
        }
        void src;
        return [];
      }),
    ),
};

const classOperators: Record<"remove_method" | "remove_base_class", ClassOperator> = {
  remove_method: (src, cls) => {
    const body = cls.childForFieldName("body");
    return compact(
      realChildren(body ?? cls)
        .filter((c) => unwrapDecorated(c)?.type === "function_definition")
        .map((c) => {
          const fn = unwrapDecorated(c)!;
          const name = fn.childForFieldName("name")?.text ?? "?";
          return site("remove_method", removeStatement(src, withDecorators(fn)), `removed method \`${name}\``, c);
        }),
    );
  },
  remove_base_class: (src, cls) => {
    const args = cls.childForFieldName("superclasses");
    if (!args) return [];
    const all = args.namedChildren.filter((c): c is Node => c !== null && c.type !== "comment");
    const positional = all.filter((c) => c.type !== "keyword_argument" && c.type !== "dictionary_splat" && c.type !== "list_splat");
    return compact(
      positional
        .filter((b) => b.text !== "object")
        .map((b) => {
          const i = all.indexOf(b);
          let edit: Edit;
          if (all.length === 1) edit = { start: args.startIndex, end: args.endIndex, text: "" };
          else if (i + 1 < all.length) edit = { start: b.startIndex, end: all[i + 1]!.startIndex, text: "" };
          else edit = { start: all[i - 1]!.endIndex, end: b.endIndex, text: "" };
          void src;
          return site("remove_base_class", [edit], `removed base class \`${b.text}\``, b);
        }),
    );
  },
};

/**
 * Every site the named operators propose in one entity. Function operators see the function's
 * own body; class operators see the class. Sites whose edits overlap are dropped.
 */
export function sitesFor(src: string, entity: Entity, operators: readonly OperatorName[] = OPERATOR_NAMES): Site[] {
  const out: Site[] = [];
  if (entity.kind === "class") {
    for (const name of operators) {
      if (name === "remove_method" || name === "remove_base_class") out.push(...classOperators[name](src, entity.node));
    }
  } else {
    const nodes = ownNodes(entity.node);
    for (const name of operators) {
      if (name === "remove_method" || name === "remove_base_class") continue;
      out.push(...functionOperators[name](src, nodes));
    }
  }
  return out.filter((s) => !overlapping(s.edits));
}

function overlapping(edits: readonly Edit[]): boolean {
  const sorted = [...edits].sort((a, b) => a.start - b.start);
  return sorted.some((e, i) => i > 0 && e.start < sorted[i - 1]!.end);
}

/** Apply non-overlapping edits to `src`. @throws when edits overlap. */
export function applyEdits(src: string, edits: readonly Edit[]): string {
  if (overlapping(edits)) throw new Error("overlapping edits");
  let out = src;
  for (const e of [...edits].sort((a, b) => b.start - a.start)) out = out.slice(0, e.start) + e.text + out.slice(e.end);
  return out;
}

/** Parse a comma-separated operator list, validating names. */
export function parseOperatorList(text: string): OperatorName[] {
  const names = text
    .split(/[\s,]+/)
    .map((s) => s.trim())
    .filter(Boolean);
  const bad = names.filter((n) => !(OPERATOR_NAMES as readonly string[]).includes(n));
  if (bad.length) throw new Error(`unknown operator(s): ${bad.join(", ")} (known: ${OPERATOR_NAMES.join(", ")})`);
  return names as OperatorName[];
}
