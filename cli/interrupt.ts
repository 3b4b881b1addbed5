/**
 * What a command does on Ctrl-C (SIGINT) or SIGTERM before the process exits 130: a command
 * registers a handler (stop its work, say what was saved and how to continue); cli/main.ts runs
 * the handlers, destroys every sandbox of the process (creations under way included), prints the
 * handlers' lines on stderr and exits 130 (cli/exit-codes.ts).
 */

/** Returns lines for people (what was saved, the command that continues), or nothing. */
export type InterruptHandler = () => Promise<string[] | void> | string[] | void;

const handlers = new Set<InterruptHandler>();

/** Handlers registered now. */
export function interruptHandlerCount(): number {
  return handlers.size;
}

/** Register a handler; returns its removal. */
export function onInterrupt(h: InterruptHandler): () => void {
  handlers.add(h);
  return () => handlers.delete(h);
}

/**
 * Run every handler (in parallel), each given at most `maxWaitMs` (milliseconds, default 60000);
 * a handler that throws or takes longer adds no line.
 */
export async function runInterruptHandlers(maxWaitMs = 60_000): Promise<string[]> {
  const out: string[] = [];
  await Promise.all(
    [...handlers].map(async (h) => {
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<void>((r) => (timer = setTimeout(r, maxWaitMs)));
      try {
        const lines = await Promise.race([Promise.resolve().then(h), timeout]);
        if (Array.isArray(lines)) out.push(...lines);
      } catch {
        // nothing to say
      } finally {
        clearTimeout(timer);
      }
    }),
  );
  return out;
}
