/**
 * Token-exact prompts for completions mode (the misalignment RL trainers report when a rollout
 * engine re-tokenizes the model's text: the ids a trainer computes its loss on then differ from the
 * ids the policy sampled, and PPO/GRPO ratios go wrong).
 *
 * The rule: the prompt ids of turn n are the prompt ids of turn n−1, plus the completion ids of
 * turn n−1 exactly as the server returned them, plus the tokenization of the text the environment
 * appended after the completion (the closing `<|eot_id|>` when the completion did not end with it,
 * the observation message, the next assistant header and prefix). The first prompt is tokenized
 * whole. The model's output is never re-tokenized.
 *
 * Tokenization of environment text uses the local Llama-3 tokenizer (inference-client/tokenizer.ts,
 * the tokenizer family of CWM; special tokens written literally are one token each).
 */
import { encode } from "../inference-client/tokenizer";
import { EOT } from "./prompt";

/** `<|eot_id|>` under the Llama-3 tokenizer. */
export const EOT_TOKEN_ID = 128009;

/** The ids to add for one turn: the environment's tokens and where they came from. */
export interface PromptDelta {
  /** Token ids appended to the previous prompt + completion (turn 0: the whole prompt). */
  ids: number[];
  /** The environment text those ids tokenize. */
  text: string;
}

/**
 * The running token stream of one episode. Call {@link TokenLedger.next} with the rendered text
 * prompt before each generation and {@link TokenLedger.completed} with what the server returned.
 */
export class TokenLedger {
  private ids: number[] = [];
  private text = "";
  private lastCompletion: { text: string; ids: readonly number[] } | undefined;
  /** Set when the token stream could not be kept exact (then callers must say so, not guess). */
  broken: string | undefined;

  /** Start again (a fresh rollout). */
  reset(): void {
    this.ids = [];
    this.text = "";
    this.lastCompletion = undefined;
    this.broken = undefined;
  }

  /** The prompt ids of the next generation (a copy). */
  promptIds(): number[] {
    return [...this.ids];
  }

  /**
   * The ids of the next prompt, given its rendered text, and what this turn adds. The rendered text
   * must extend the previous prompt + completion text (agent/episode.ts `advance`); when it does
   * not (or the previous completion came back without ids), the ledger is `broken` and the prompt
   * is tokenized whole, so the caller records that the ids are not exact.
   */
  next(prompt: string): PromptDelta {
    if (this.lastCompletion === undefined) {
      if (this.text !== "") this.broken ??= "a completion came back without token ids";
      const ids = encode(prompt);
      this.ids = ids;
      this.text = prompt;
      return { ids: [...ids], text: prompt };
    }
    const before = this.text + this.lastCompletion.text;
    if (!prompt.startsWith(before)) {
      this.broken ??= "the rendered prompt does not extend the previous prompt and completion";
      this.lastCompletion = undefined;
      this.text = "";
      return this.next(prompt);
    }
    let delta = prompt.slice(before.length);
    const ids = this.lastCompletion.ids;
    // The closing <|eot_id|> the environment adds after a completion whose text does not show it:
    // when the server's ids already end with it, it is not added again.
    if (ids[ids.length - 1] === EOT_TOKEN_ID && delta.startsWith(EOT)) delta = delta.slice(EOT.length);
    const deltaIds = encode(delta);
    this.ids = [...this.ids, ...ids, ...deltaIds];
    this.text = prompt;
    this.lastCompletion = undefined;
    return { ids: deltaIds, text: delta };
  }

  /** Record the completion of the current prompt: its text and the ids as the server returned them. */
  completed(text: string, ids: readonly number[] | undefined): void {
    if (ids === undefined) {
      this.broken ??= "the server returned no token ids";
      this.lastCompletion = undefined;
      this.text = "";
      return;
    }
    this.lastCompletion = { text, ids: [...ids] };
  }
}
