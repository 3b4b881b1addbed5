/**
 * The `forager` entry point. It installs the early signal handling (cli/early-signals.ts) before
 * the command modules load — with ES modules a static import graph loads whole before any of it
 * runs, and on a busy machine that takes seconds — then loads the program (cli/program.ts).
 */
import "./early-signals";

void import("./program").then((m) => m.run());
