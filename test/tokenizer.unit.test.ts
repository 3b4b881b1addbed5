/**
 * The local Llama-3 token estimate: special tokens are one token each, counts of known texts are pinned.
 */
import { describe, expect, it } from "vitest";
import { countTokens, decode, encode } from "../inference-client/tokenizer";

describe("tokenizer", () => {
  it("encodes each chat special token as exactly one token", () => {
    const specials: Array<[string, number]> = [
      ["<|begin_of_text|>", 128000],
      ["<|end_of_text|>", 128001],
      ["<|start_header_id|>", 128006],
      ["<|end_header_id|>", 128007],
      ["<|eom_id|>", 128008],
      ["<|eot_id|>", 128009],
    ];
    for (const [text, id] of specials) {
      expect(encode(text)).toEqual([id]);
      expect(countTokens(text)).toBe(1);
    }
  });

  it("counts a rendered CWM chat prompt with special tokens inline", () => {
    const prompt =
      "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are a helpful assistant.<|eot_id|>" +
      "<|start_header_id|>user<|end_header_id|>\n\nFix the bug in parse_diff.<|eot_id|>" +
      "<|start_header_id|>assistant<|end_header_id|>\n\n<think>\n";
    const ids = encode(prompt);
    expect(ids.slice(0, 5)).toEqual([128000, 128006, 9125, 128007, 271]);
    expect(ids.filter((id) => id >= 128000)).toHaveLength(9);
    expect(countTokens(prompt)).toBe(31);
    expect(decode(ids)).toBe(prompt);
  });

  it("gives stable counts for known sentences (no BOS/EOS added)", () => {
    expect(encode("This is a test sentence.")).toEqual([2028, 374, 264, 1296, 11914, 13]);
    expect(countTokens("The quick brown fox jumps over the lazy dog.")).toBe(10);
    expect(countTokens("Hello world!")).toBe(3);
    expect(countTokens("")).toBe(0);
  });

  it("treats unknown <|...|> markers as plain text", () => {
    expect(countTokens("<|not_a_special_token|>")).toBeGreaterThan(1);
  });
});
