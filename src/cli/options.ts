// Options several commands share, defined once so their names and help stay the same.
export const cacheOption = {
  type: 'string',
  describe: 'Download cache (content-addressed by SHA-256); default $XDG_CACHE_HOME/cairn or ~/.cache/cairn',
} as const;

export const jsonOption = {
  type: 'boolean',
  default: false,
  describe: 'Print one JSON document on stdout instead of text (progress and logs stay on stderr)',
} as const;

/** Log lines go to stderr so stdout stays clean for --json. */
export function logLine(line: string): void {
  process.stderr.write(`cairn: ${line}\n`);
}
