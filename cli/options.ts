/** Option parsers shared by the commands. */
import { InvalidArgumentError } from "commander";

/** An integer option value; anything else is refused with commander's usage error. */
export function int(v: string): number {
  const n = Number(v);
  if (v.trim() === "" || !Number.isInteger(n)) throw new InvalidArgumentError(`not an integer: ${v}`);
  return n;
}
