/**
 * Installed by cli/main.ts before the command modules load (they take seconds on a busy machine):
 * a Ctrl-C in that time exits 130 with one line (nothing had started), instead of the runtime's
 * default death by signal. cli/program.ts removes it once its own handling is in place.
 */
export const earlySignal = (): void => {
  process.stderr.write("forager: interrupted before the command started: nothing done\n");
  process.exit(130);
};
process.on("SIGINT", earlySignal);
process.on("SIGTERM", earlySignal);
