/**
 * Bash lines for forager's own git commits, shared by the instance image build (images/build.ts:
 * the installed state committed on top of the repository) and the task start state
 * (tasks/start.ts: the squashed commit of the buggy tree), so both commit the same way: a fixed
 * identity, the date given, no hooks, no signing; and forget the reflog afterwards.
 */
import { shellQuote } from "./shell";

/** Author and committer of a forager commit. */
export interface CommitIdentity {
  name: string;
  email: string;
}

/**
 * `git commit` of what is staged, as `identity`, dated `date` (a shell word, e.g. `"$d"`), with
 * `message`; `git` is the command to run (plain `git`, or a pinned one with its config).
 */
export function commitCommand(git: string, identity: CommitIdentity, message: string, date: string): string {
  return (
    `GIT_AUTHOR_NAME=${shellQuote(identity.name)} GIT_AUTHOR_EMAIL=${shellQuote(identity.email)} ` +
    `GIT_COMMITTER_NAME=${shellQuote(identity.name)} GIT_COMMITTER_EMAIL=${shellQuote(identity.email)} ` +
    `GIT_AUTHOR_DATE=${date} GIT_COMMITTER_DATE=${date} ${git} commit -q --no-verify --no-gpg-sign -m ${shellQuote(message)}`
  );
}

/** Lines that drop every reflog entry (nothing reachable through them any more). */
export function forgetReflogLines(git: string): string[] {
  return [`${git} reflog expire --expire=now --all`, "rm -rf .git/logs"];
}
