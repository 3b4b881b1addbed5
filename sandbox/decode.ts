/**
 * Safe decoding of command output for a model: bytes → text that is valid UTF-16, with line
 * endings normalised the way a terminal would show them.
 */

const decoder = new TextDecoder("utf-8", { fatal: false });

/**
 * Decode `bytes` as UTF-8 (invalid sequences become U+FFFD), turn CR LF into LF, resolve lone
 * CRs (progress bars) by keeping what a terminal would show last on that line, and drop NULs and
 * other C0 controls except tab, newline and ESC.
 */
export function decodeOutput(bytes: Buffer): string {
  let text = decoder.decode(bytes);
  if (text.includes("\r")) {
    text = text.replace(/\r+\n/g, "\n");
    if (text.includes("\r")) {
      text = text
        .split("\n")
        .map((line) => {
          if (!line.includes("\r")) return line;
          // A terminal overwrites from column 0 after each CR; keep the last non-empty segment
          // padded by the longer earlier text it did not overwrite.
          let shown = "";
          for (const seg of line.split("\r")) {
            shown = seg.length >= shown.length ? seg : seg + shown.slice(seg.length);
          }
          return shown;
        })
        .join("\n");
    }
  }
  return text.replace(/[\x00-\x08\x0b\x0c\x0e-\x1a\x1c-\x1f\x7f]/g, "");
}
