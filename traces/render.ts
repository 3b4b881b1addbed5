/**
 * CWM's textual trace format from a trace record (format facts: CWM paper, 2025, and
 * facebookresearch/cwm demos, as summarised in /work/shared/reference/cwm-traces.md):
 *
 *   <|trace_context_start|>SOURCE (entry marked `# << START_OF_TRACE`)<|frame_sep|>
 *   <|call_sep|>{LOCALS}<|action_sep|>SOURCE LINE<|frame_sep|>          (call frame)
 *   <|line_sep|>{LOCALS}<|action_sep|>SOURCE LINE<|frame_sep|>          (one per executed line)
 *   <|return_sep|><|action_sep|>SOURCE LINE<|arg_sep|>VALUE<|frame_sep|>   (return)
 *   <|exception_sep|><|action_sep|>SOURCE LINE<|arg_sep|>VALUE<|frame_sep|> (exception)
 *   <|end_of_text|>                                                     (left the entry scope)
 *
 * LOCALS is a JSON object of repr strings with `".."` for a variable unchanged since the previous
 * frame (the records already hold them diffed). What is ours, not published: the separator
 * names and their order in the reserved ids 128100-128107 ({@link CWM_TRACE_TOKENS}), VALUE as a
 * JSON string, a generator's `yield` shown as a return frame and its resume as a call frame, and
 * source lines shown without their trailing newline (indentation kept).
 */
import type { TraceRecord } from "./schema";

/** The 8 separators, in the reserved Llama-3 special-token ids 128100-128107 (names and order: ours). */
export const CWM_TRACE_TOKENS = {
  traceContextStart: "<|trace_context_start|>",
  frameSep: "<|frame_sep|>",
  callSep: "<|call_sep|>",
  lineSep: "<|line_sep|>",
  returnSep: "<|return_sep|>",
  exceptionSep: "<|exception_sep|>",
  actionSep: "<|action_sep|>",
  argSep: "<|arg_sep|>",
} as const;

/** Token id of each separator (128100 + its position in {@link CWM_TRACE_TOKENS}). */
export const CWM_TRACE_TOKEN_IDS: Record<keyof typeof CWM_TRACE_TOKENS, number> = Object.fromEntries(
  Object.keys(CWM_TRACE_TOKENS).map((k, i) => [k, 128100 + i]),
) as Record<keyof typeof CWM_TRACE_TOKENS, number>;

/** Llama-3's end-of-text token. */
export const END_OF_TEXT = "<|end_of_text|>";
/** The entry-point mark appended to the function's `def` line in the source context. */
export const START_MARK = "# << START_OF_TRACE";

export interface RenderOptions {
  /** Separator strings (default {@link CWM_TRACE_TOKENS}). */
  tokens?: Partial<typeof CWM_TRACE_TOKENS>;
  /** Append {@link END_OF_TEXT} (default true). */
  endOfText?: boolean;
  /** Put a newline after each frame separator, for reading (default false: the training form). */
  pretty?: boolean;
}

/** The source with the START_OF_TRACE mark on the first `def` / `async def` line (else the first line). */
export function markedSource(rec: Pick<TraceRecord, "source">): string {
  const lines = rec.source.replace(/\n$/, "").split("\n");
  let i = lines.findIndex((l) => /^\s*(async\s+)?def\s/.test(l));
  if (i < 0) i = 0;
  lines[i] = `${lines[i]}  ${START_MARK}`;
  return lines.join("\n");
}

/**
 * Render one record in CWM's trace format. The trace ends at the activation's return, or at an
 * exception that propagates out of it (`propagated`).
 */
export function renderCwmTrace(rec: TraceRecord, opts: RenderOptions = {}): string {
  const t = { ...CWM_TRACE_TOKENS, ...opts.tokens };
  const nl = opts.pretty ? "\n" : "";
  const src = rec.source.split("\n");
  const lineText = (line: number) => (src[line - rec.firstLine] ?? "").replace(/\s+$/, "");
  const out: string[] = [`${t.traceContextStart}${markedSource(rec)}${t.frameSep}${nl}`];
  for (const ev of rec.events) {
    switch (ev.kind) {
      case "call":
      case "line":
        out.push(`${ev.kind === "call" ? t.callSep : t.lineSep}${JSON.stringify(ev.locals)}${t.actionSep}${lineText(ev.line)}${t.frameSep}${nl}`);
        break;
      case "return":
      case "yield":
      case "exception":
        out.push(`${ev.kind === "exception" ? t.exceptionSep : t.returnSep}${t.actionSep}${lineText(ev.line)}${t.argSep}${JSON.stringify(ev.value)}${t.frameSep}${nl}`);
        break;
    }
  }
  if (opts.endOfText ?? true) out.push(END_OF_TEXT);
  return out.join("");
}
