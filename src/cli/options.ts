// The options several commands share, defined once so their names and help stay the same, and
// the one way a command prints its result: one JSON document, or text for people.
import type { Options, PositionalOptions } from 'yargs';
import type { SourceIssue } from '../document/issues.js';

export const OPTIONS = {
  recipe: { type: 'string', demandOption: true, describe: 'Recipe file, e.g. recipes/container-host.yaml' },
  build: { type: 'string', demandOption: true, describe: 'Build folder, e.g. images/<name>/<version>' },
  repo: {
    type: 'string',
    demandOption: true,
    describe: 'Update repository folder (made if missing by the commands that write it); serve it with any static HTTP server',
  },
  signKey: {
    type: 'string',
    demandOption: true,
    describe: 'OpenPGP private key (from "cairn keys generate", one the hosts trust) that signs what this command writes',
  },
  key: { type: 'string', demandOption: true, describe: 'Public key or keyring to trust (e.g. release.pub.asc from "cairn keys generate")' },
  out: { type: 'string', demandOption: true, describe: 'Output folder (made if missing)' },
  cache: { type: 'string', describe: 'Download cache (content-addressed by SHA-256); default $XDG_CACHE_HOME/cairn or ~/.cache/cairn' },
  json: { type: 'boolean', default: false, describe: 'Print one JSON document on stdout instead of text (progress and logs stay on stderr)' },
} as const satisfies Record<string, Options & PositionalOptions>;

/** The same option, not required (a command where it is optional). */
export function optional<T extends { demandOption: true }>(option: T): Omit<T, 'demandOption'> {
  const { demandOption: _, ...rest } = option;
  return rest;
}

/** Prints `data` as JSON with --json, else the text `describe` makes of it. */
export function output<T>(json: boolean, data: T, describe: (data: T) => string): void {
  process.stdout.write(json ? JSON.stringify(data, null, 2) + '\n' : describe(data));
}

/** The --json option of a command that checks a document, and what it prints. */
export const CHECK_JSON = { ...OPTIONS.json, describe: 'Print {ok, errors: [{file, line, column, path, message}]}' };

/**
 * The result of checking a document: `{ok, errors}` with --json (exit 1 when there are errors),
 * else the error that lists every issue, or `okText` for a document without any.
 */
export function reportCheck<T>(
  json: boolean,
  checked: { value?: T; errors: SourceIssue[] },
  failure: (errors: SourceIssue[]) => Error,
  okText: (value: T) => string,
): void {
  if (json) {
    output(true, { ok: checked.errors.length === 0, errors: checked.errors }, () => '');
    if (checked.errors.length > 0) process.exitCode = 1;
    return;
  }
  if (checked.value === undefined) throw failure(checked.errors);
  process.stdout.write(okText(checked.value));
}

/** Log lines go to stderr so stdout stays clean for --json. */
export function logLine(line: string): void {
  process.stderr.write(`cairn: ${line}\n`);
}
