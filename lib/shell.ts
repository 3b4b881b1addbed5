/**
 * POSIX shell quoting: `s` as one word for sh/bash. Strings made only of safe characters are
 * left as they are (readable logs); anything else is single-quoted with `'\''` for quotes.
 */
export function shellQuote(s: string): string {
  return /^[A-Za-z0-9_./:=@%+,-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}
