/**
 * Llama-3 tokenizer (the tokenizer family of CWM), for ESTIMATING token counts locally.
 *
 * The server's own counts (`usage` in every response, or token ids returned with the completion) are
 * the truth and should be preferred; use these functions only where the server's counts are
 * unavailable, e.g. to budget a prompt before sending it or to cut a tool output to a token limit.
 * The estimate can differ from the server when the served model's tokenizer differs from stock
 * Llama 3 (added special tokens, a different pre-tokenizer).
 *
 * Special tokens written literally in the text (`<|begin_of_text|>`, `<|start_header_id|>`,
 * `<|end_header_id|>`, `<|eot_id|>`, `<|eom_id|>`, `<|end_of_text|>`, `<|python_tag|>`,
 * `<|finetune_right_pad_id|>`, `<|reserved_special_token_N|>`) are encoded as ONE token each, as the
 * chat template renders them (`llama3-tokenizer-js` splits on them itself; the tests pin this). No
 * begin/end-of-text token is added implicitly.
 *
 * The vocabulary (~3 MB of JavaScript) is loaded synchronously on first use, or ahead of time with
 * {@link preloadTokenizer}.
 */
import { createRequire } from "node:module";

/** The subset of `llama3-tokenizer-js`'s tokenizer that we use. */
interface Llama3TokenizerLike {
  encode(prompt: string, options?: { bos?: boolean; eos?: boolean }): number[];
  decode(tokenIds: number[]): string;
}

let tokenizer: Llama3TokenizerLike | undefined;

function load(): Llama3TokenizerLike {
  if (!tokenizer) {
    // The package's CommonJS bundle can be required synchronously (its ESM entry would need `await`).
    const require = createRequire(import.meta.url);
    const mod = require("llama3-tokenizer-js/bundle/commonjs-llama3-tokenizer-with-baked-data.cjs") as {
      llama3Tokenizer: Llama3TokenizerLike;
    };
    tokenizer = mod.llama3Tokenizer;
  }
  return tokenizer;
}

/** Loads the vocabulary now (about 0.3 s) instead of on the first {@link encode} / {@link countTokens}. */
export function preloadTokenizer(): void {
  load();
}

/**
 * Token ids of `text` under the Llama-3 tokenizer (an estimate of the server's tokenization; see the
 * module documentation). Literal special tokens map to their single id; no BOS/EOS is added.
 */
export function encode(text: string): number[] {
  if (text.length === 0) return [];
  return load().encode(text, { bos: false, eos: false });
}

/** Text of Llama-3 token ids (special tokens rendered literally, e.g. `<|eot_id|>`). */
export function decode(tokenIds: readonly number[]): string {
  if (tokenIds.length === 0) return "";
  return load().decode([...tokenIds]);
}

/**
 * Estimated number of tokens of `text` (tokens) under the Llama-3 tokenizer: `encode(text).length`.
 * Prefer the server's `usage` counts when they are available.
 */
export function countTokens(text: string): number {
  return encode(text).length;
}
