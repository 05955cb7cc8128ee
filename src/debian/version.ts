// Debian version numbers, ordered exactly as dpkg orders them (lib/dpkg/version.c): the
// resolver's choices and the lockfile must agree with what apt and dpkg would accept.
import { CairnError } from '../errors.js';
import type { VersionOp } from './types.js';

export interface DebianVersion {
  epoch: number;
  upstream: string;
  /** Empty when the version has no Debian revision; dpkg treats "" and "0" alike. */
  revision: string;
}

const UPSTREAM_CHARS = /^[A-Za-z0-9.+~:-]*$/;
const REVISION_CHARS = /^[A-Za-z0-9.+~]*$/;
// dpkg stores the epoch in a C int.
const MAX_EPOCH = 2 ** 31 - 1;

function invalid(text: string, why: string): CairnError {
  return new CairnError(
    `invalid Debian version "${text}": ${why}`,
    'a version is [epoch:]upstream[-revision], the upstream part starting with a digit (for example 1:2.36-9)',
  );
}

/**
 * Splits and checks a version like dpkg's parseversion, but treats what dpkg only warns about
 * (an upstream part not starting with a digit, stray characters) as errors: every version in the
 * Debian archive passes, so anything else is hostile or broken metadata.
 */
export function parseVersion(text: string): DebianVersion {
  const trimmed = text.trim();
  if (trimmed === '') throw invalid(text, 'it is empty');
  if (/\s/.test(trimmed)) throw invalid(text, 'it contains spaces');
  let rest = trimmed;
  let epoch = 0;
  const colon = rest.indexOf(':');
  if (colon >= 0) {
    const epochText = rest.slice(0, colon);
    if (epochText === '') throw invalid(text, 'the epoch before ":" is empty');
    if (!/^[0-9]+$/.test(epochText)) throw invalid(text, `the epoch "${epochText}" is not a number`);
    epoch = Number(epochText);
    if (epoch > MAX_EPOCH) throw invalid(text, `the epoch ${epochText} is too big`);
    rest = rest.slice(colon + 1);
    if (rest === '') throw invalid(text, 'nothing follows the epoch');
  }
  let revision = '';
  const hyphen = rest.lastIndexOf('-');
  if (hyphen >= 0) {
    revision = rest.slice(hyphen + 1);
    rest = rest.slice(0, hyphen);
    if (revision === '') throw invalid(text, 'the revision after the last "-" is empty');
  }
  if (rest === '') throw invalid(text, 'the upstream version is empty');
  if (!/^[0-9]/.test(rest)) throw invalid(text, `the upstream version "${rest}" does not start with a digit`);
  if (!UPSTREAM_CHARS.test(rest)) throw invalid(text, `the upstream version "${rest}" contains a character other than letters, digits and . + ~ - :`);
  if (!REVISION_CHARS.test(revision)) throw invalid(text, `the revision "${revision}" contains a character other than letters, digits and . + ~`);
  return { epoch, upstream: rest, revision };
}

function isDigit(code: number): boolean {
  return code >= 48 && code <= 57;
}

function isLetter(code: number): boolean {
  return (code >= 65 && code <= 90) || (code >= 97 && code <= 122);
}

// The weight of one character in a non-digit run: "~" sorts before the end of the string, the
// end before letters, letters before everything else.
function order(code: number): number {
  if (Number.isNaN(code) || isDigit(code)) return 0;
  if (isLetter(code)) return code;
  if (code === 126) return -1;
  return code + 256;
}

/** dpkg's verrevcmp: alternating non-digit runs (by `order`) and digit runs (numerically). */
function compareFragment(a: string, b: string): number {
  let i = 0;
  let j = 0;
  while (i < a.length || j < b.length) {
    while ((i < a.length && !isDigit(a.charCodeAt(i))) || (j < b.length && !isDigit(b.charCodeAt(j)))) {
      const ac = order(a.charCodeAt(i));
      const bc = order(b.charCodeAt(j));
      if (ac !== bc) return ac - bc;
      i++;
      j++;
    }
    while (a.charCodeAt(i) === 48) i++;
    while (b.charCodeAt(j) === 48) j++;
    // Digit runs of any length compare as numbers: the longer run (without leading zeros) wins,
    // otherwise the first differing digit.
    let firstDiff = 0;
    while (isDigit(a.charCodeAt(i)) && isDigit(b.charCodeAt(j))) {
      if (firstDiff === 0) firstDiff = a.charCodeAt(i) - b.charCodeAt(j);
      i++;
      j++;
    }
    if (isDigit(a.charCodeAt(i))) return 1;
    if (isDigit(b.charCodeAt(j))) return -1;
    if (firstDiff !== 0) return firstDiff;
  }
  return 0;
}

const parsedCache = new Map<string, DebianVersion>();

// The resolver compares the same few thousand versions over and over.
function parseCached(text: string): DebianVersion {
  let parsed = parsedCache.get(text);
  if (parsed === undefined) {
    parsed = parseVersion(text);
    if (parsedCache.size > 200_000) parsedCache.clear();
    parsedCache.set(text, parsed);
  }
  return parsed;
}

/** Negative, zero or positive as `a` sorts before, equal to or after `b` in dpkg's order. */
export function compareVersions(a: string, b: string): number {
  if (a === b) return 0;
  const va = parseCached(a);
  const vb = parseCached(b);
  if (va.epoch !== vb.epoch) return va.epoch < vb.epoch ? -1 : 1;
  const upstream = compareFragment(va.upstream, vb.upstream);
  if (upstream !== 0) return Math.sign(upstream);
  return Math.sign(compareFragment(va.revision, vb.revision));
}

/** Whether `version` meets the constraint `(op bound)` of a relationship field. */
export function satisfies(version: string, op: VersionOp, bound: string): boolean {
  const c = compareVersions(version, bound);
  switch (op) {
    case '<<':
      return c < 0;
    case '<=':
      return c <= 0;
    case '=':
      return c === 0;
    case '>=':
      return c >= 0;
    case '>>':
      return c > 0;
  }
}
