// Options several commands share, defined once so their names and help stay the same.
import type { Options } from 'yargs';

export const cacheOption: Options = {
  type: 'string',
  describe: 'Download cache (content-addressed by SHA-256); default $XDG_CACHE_HOME/cairn or ~/.cache/cairn',
};

export const jsonOption: Options = {
  type: 'boolean',
  default: false,
  describe: 'Print one JSON document on stdout instead of text (progress and logs stay on stderr)',
};

/** Log lines go to stderr so stdout stays clean for --json. */
export function logLine(line: string): void {
  process.stderr.write(`cairn: ${line}\n`);
}
