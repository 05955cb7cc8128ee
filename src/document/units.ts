// Sizes, durations and times as people write them, in recipes, configuration files and options:
// one table of units, one grammar for each.
import { CairnError } from '../errors.js';

const BINARY_UNITS: Record<string, number> = { '': 1, B: 1, K: 2 ** 10, M: 2 ** 20, G: 2 ** 30, T: 2 ** 40 };

/** The written form of a size in a file; recipe.schema.json repeats it (a unit test keeps them equal). */
export const SIZE_FORM = /^([1-9][0-9]*)(K|M|G|T|KiB|MiB|GiB|TiB)?$/;

/**
 * Bytes for a size in a file (integer bytes or "<n><unit>", binary units), or null when it is
 * not one or does not fit a safe integer — a silently rounded size would be a wrong disk layout.
 */
export function parseSize(value: unknown): number | null {
  let bytes: number;
  if (typeof value === 'number') {
    bytes = value;
  } else if (typeof value === 'string') {
    const m = SIZE_FORM.exec(value);
    if (!m) return null;
    bytes = Number(m[1]) * BINARY_UNITS[(m[2] ?? '').charAt(0)]!;
  } else {
    return null;
  }
  return Number.isSafeInteger(bytes) && bytes > 0 ? bytes : null;
}

/**
 * Bytes for a size given as an option ("512m", "1.5g", "64MiB", "1048576"): the same binary units,
 * in any case and with fractions, as docker and podman read --memory. Null when it is not one.
 */
export function parseOptionSize(text: string): number | null {
  const m = /^(\d+(?:\.\d+)?)\s*([bkmgt]?)(?:i?b)?$/i.exec(text.trim());
  const bytes = m ? Math.floor(Number(m[1]) * BINARY_UNITS[m[2]!.toUpperCase()]!) : NaN;
  return Number.isSafeInteger(bytes) ? bytes : null;
}

const DURATION_UNITS: Record<string, number> = { '': 1, s: 1, m: 60, h: 3600, d: 86400, w: 604800 };

/** The written form of a duration: whole seconds, or a whole number with s, m, h, d or w. */
export const DURATION_FORM = /^([0-9]+)([smhdw]?)$/;

/** Seconds for a duration ("90", "90s", "30m", "12h", "7d", "2w", or a number of seconds); `what` names it in the error. */
export function parseDuration(value: number | string, what = 'duration'): number {
  if (typeof value === 'number' && Number.isSafeInteger(value) && value >= 0) return value;
  const m = typeof value === 'string' ? DURATION_FORM.exec(value.trim()) : null;
  if (!m) throw new CairnError(`${what}: ${JSON.stringify(String(value))} is not a duration`, 'write whole seconds, or e.g. 90s, 30m, 12h, 7d or 2w');
  return Number(m[1]) * DURATION_UNITS[m[2]!]!;
}

/** An ISO 8601 time, or "now". */
export function parseTime(text: string, what: string): Date {
  if (text === 'now') return new Date();
  const t = Date.parse(text);
  if (!/^\d{4}-\d{2}-\d{2}/.test(text) || Number.isNaN(t))
    throw new CairnError(`${what}: "${text}" is not a time`, 'write an ISO 8601 time such as 2026-12-01T09:00:00Z, or "now"');
  return new Date(t);
}
