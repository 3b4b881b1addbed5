/**
 * OraclePolicy: solves a task from its reference patch through the real tools, the way a careful
 * agent would: look around (ls, git status), try the failing tests (best effort), apply each hunk
 * with `edit` (search = context + removed lines, replace = context + added lines), create new
 * files with `create`, delete with `rm`; when a change cannot be expressed as unique edits (or an
 * edit fails), write the patch with bash and `git apply` it instead. Then `git diff > fix.patch`,
 * `submit fix.patch`, and a final answer with the CWM markdown summary headings.
 */
import { diffBlocks } from "../lib/diff";
import { shellQuote } from "../lib/shell";
import type { Task } from "../tasks/schema";
import type { AgentConfig } from "./config";
import { PolicyStopped, type Policy, type PolicyContext, type PolicyIdentity, type PolicyStep } from "./policy";
import { THINK_END } from "./prompt";

/** One file of a unified diff, as the oracle needs it. */
export interface OracleFile {
  path: string;
  kind: "modify" | "create" | "delete" | "other";
  hunks: Array<{ search: string; replace: string; expressible: boolean }>;
  /** Content of a new file. */
  content?: string;
}

/** Split a git diff into files and hunks (search/replace texts). Never throws: odd files become "other". */
export function parseReferencePatch(patch: string): OracleFile[] {
  const files: OracleFile[] = [];
  for (const block of diffBlocks(patch)) {
    const lines = block.text.split("\n");
    let path = block.path;
    let kind: OracleFile["kind"] = "modify";
    const hunks: OracleFile["hunks"] = [];
    let i = 1;
    for (; i < lines.length && !lines[i]!.startsWith("@@"); i++) {
      const l = lines[i]!;
      if (l.startsWith("new file mode")) kind = "create";
      else if (l.startsWith("deleted file mode")) kind = "delete";
      else if (l.startsWith("rename ") || l.startsWith("copy ") || l.startsWith("Binary files") || l.startsWith("GIT binary patch") || l.startsWith("old mode")) kind = "other";
      else if (l.startsWith("+++ b/")) path = l.slice(6);
    }
    let search: string[] = [];
    let replace: string[] = [];
    let odd = false;
    let inHunk = false;
    const flush = () => {
      if (!inHunk) return;
      const expressible = !odd && search.length > 0 && replace.length > 0 && search.join("\n") !== replace.join("\n");
      hunks.push({ search: search.join("\n"), replace: replace.join("\n"), expressible });
      search = [];
      replace = [];
      odd = false;
    };
    for (; i < lines.length; i++) {
      const l = lines[i]!;
      if (l.startsWith("@@")) {
        flush();
        inHunk = true;
        continue;
      }
      if (!inHunk) continue;
      if (l.startsWith(" ")) {
        search.push(l.slice(1));
        replace.push(l.slice(1));
      } else if (l.startsWith("-")) search.push(l.slice(1));
      else if (l.startsWith("+")) replace.push(l.slice(1));
      else if (l.startsWith("\\")) odd = true;
      else if (l === "" && i === lines.length - 1) continue;
      else if (l === "") {
        // an empty context line whose leading space was stripped by an editor
        search.push("");
        replace.push("");
      }
    }
    flush();
    const file: OracleFile = { path, kind, hunks };
    if (kind === "create") {
      if (hunks.length === 1 && !odd) file.content = hunks[0]!.replace + "\n";
      else if (hunks.length === 0) file.content = "";
      else file.kind = "other";
    }
    if (kind === "modify") {
      const searches = hunks.map((h) => h.search);
      if (hunks.some((h) => !h.expressible) || new Set(searches).size !== searches.length || hunks.length === 0) file.kind = "other";
    }
    files.push(file);
  }
  return files;
}

interface Move {
  reasoning: string;
  tool?: string;
  argument?: string;
  /** A final answer (no tool call). */
  answer?: string;
  /** Part of the edit phase: a failure switches to the `git apply` fallback. */
  editPhase?: boolean;
}

const PATCH_FILE = "fix.patch";
const HEREDOC = "FORAGER_ORACLE_PATCH_EOF";

/** The oracle. Deterministic given the task; `start` recomputes its plan for each rollout. */
export class OraclePolicy implements Policy {
  readonly kind = "oracle";
  private queue: Move[] = [];
  private fellBack = false;
  private newFiles: string[] = [];
  private task: Task | undefined;
  private think = true;

  async identity(): Promise<PolicyIdentity> {
    return { model: "oracle" };
  }

  start(task: Task, config: AgentConfig): void {
    this.task = task;
    this.think = config.think;
    this.fellBack = false;
    const files = parseReferencePatch(task.referencePatch);
    if (files.length === 0) throw new PolicyStopped(`oracle: task ${task.id} has no usable reference patch`);
    this.newFiles = files.filter((f) => f.kind === "create").map((f) => f.path);
    const moves: Move[] = [{ reasoning: "Let me look at the repository first.", tool: "bash", argument: "ls\ngit status --short | head -n 20" }];
    if (task.failToPass.length > 0) {
      const tests = task.failToPass.slice(0, 20).map(shellQuote).join(" ");
      const limit = Math.max(1, Math.min(60, config.commandTimeoutSeconds - 10));
      moves.push({
        reasoning: "Let me try to reproduce the issue by running the failing tests.",
        tool: "bash",
        argument: `timeout ${limit} ${task.image.testCommand} ${tests} 2>&1 | tail -n 30`,
      });
    }
    if (files.some((f) => f.kind === "other")) {
      moves.push(...this.fallbackMoves(false));
    } else {
      for (const f of files) {
        if (f.kind === "modify") {
          f.hunks.forEach((h, i) => {
            moves.push({
              reasoning: `I will change ${f.path} (change ${i + 1} of ${f.hunks.length}).`,
              tool: "edit",
              argument: `${f.path}\n<<<<<<< SEARCH\n${h.search}\n=======\n${h.replace}\n>>>>>>> REPLACE`,
              editPhase: true,
            });
          });
        } else if (f.kind === "create") {
          const dir = f.path.includes("/") ? f.path.slice(0, f.path.lastIndexOf("/")) : "";
          if (dir) moves.push({ reasoning: `The directory of ${f.path} may not exist yet.`, tool: "bash", argument: `mkdir -p ${shellQuote(dir)}`, editPhase: true });
          moves.push({ reasoning: `I will create ${f.path}.`, tool: "create", argument: `${f.path}\n${f.content ?? ""}`, editPhase: true });
        } else if (f.kind === "delete") {
          moves.push({ reasoning: `${f.path} is no longer needed.`, tool: "bash", argument: `rm -f ${shellQuote(f.path)}`, editPhase: true });
        }
      }
    }
    this.queue = [...moves, ...this.finishMoves()];
  }

  /** Reset what the edits did, then write the whole patch and `git apply` it. */
  private fallbackMoves(reset: boolean): Move[] {
    const patch = this.task!.referencePatch;
    const body = patch.endsWith("\n") ? patch : patch + "\n";
    const resetCmd = reset
      ? `git checkout -q -- . && ${this.newFiles.map((p) => `rm -f ${shellQuote(p)}`).concat(["true"]).join(" && ")}\n`
      : "";
    return [
      {
        reasoning: reset ? "That edit did not apply cleanly; I will apply the whole change as a patch instead." : "These changes are easiest to apply as one patch.",
        tool: "bash",
        argument: `${resetCmd}cat > /tmp/forager-oracle.patch <<'${HEREDOC}'\n${body}${HEREDOC}\ngit apply --whitespace=nowarn /tmp/forager-oracle.patch && echo applied`,
      },
    ];
  }

  private finishMoves(): Move[] {
    const add = this.newFiles.length ? `git add -N -- ${this.newFiles.map(shellQuote).join(" ")} && ` : "";
    return [
      { reasoning: "Now I write the patch file.", tool: "bash", argument: `${add}git diff > ${PATCH_FILE} && git diff --stat` },
      { reasoning: "Submitting the patch.", tool: "submit", argument: PATCH_FILE },
      { reasoning: "The patch is submitted; time for the summary.", answer: this.summary() },
    ];
  }

  private summary(): string {
    const t = this.task!;
    const files = parseReferencePatch(t.referencePatch).map((f) => `\`${f.path}\``).join(", ");
    return [
      "## Issue Summary",
      "",
      t.problemStatement.split("\n")[0]!.slice(0, 300),
      "",
      "## Investigation and Reproduction",
      "",
      t.failToPass.length ? `Explored the repository and ran the failing tests (${t.failToPass.slice(0, 5).join(", ")}).` : "Explored the repository.",
      "",
      "## Solution and Code Changes",
      "",
      `Changed ${files}.`,
      "",
      "## Testing and Verification",
      "",
      "Checked the diff of the change before submitting it.",
    ].join("\n");
  }

  async next(ctx: PolicyContext): Promise<PolicyStep> {
    const last = ctx.turns[ctx.turns.length - 1];
    if (last?.toolName && last.toolSuccess === false && !this.fellBack && (last.toolName === "edit" || last.toolName === "create")) {
      // An edit could not be expressed uniquely: drop the rest of the edit phase, apply the patch instead.
      this.fellBack = true;
      this.queue = [...this.fallbackMoves(true), ...this.queue.filter((m) => !m.editPhase)];
    }
    if (last?.toolName === "submit" && last.toolSuccess === false) throw new PolicyStopped(`oracle: submission failed: ${last.toolOutput ?? ""}`);
    const move = this.queue.shift();
    if (!move) throw new PolicyStopped("oracle: nothing left to do");
    const head = this.think ? `${move.reasoning}\n${THINK_END}\n` : "";
    const text = move.answer !== undefined ? head + move.answer : `${head}<tool: ${move.tool}>\n${move.argument}\n</tool>`;
    return { text, latencyMs: 0 };
  }
}
