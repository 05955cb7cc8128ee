// deb822 paragraphs: Packages indexes, the body of InRelease, a .deb's control file.
//
// Field names keep the spelling they first appeared with (the archive writes them canonically,
// and PackageRecord.fields promises them "as they appeared"); matching is case-insensitive, as
// Debian policy requires, through getField. A value is the text after "Name:" trimmed, and for a
// multi-line field each continuation line follows on its own line exactly as written (leading
// space included), so folded fields (Depends) and line lists (SHA256, Description) both survive.
import { CairnError } from '../errors.js';

export type Paragraph = Record<string, string>;

export interface ParseControlOptions {
  /** Names the input in error messages ("…/Packages", "control of foo_1.0_amd64.deb"). */
  origin?: string;
}

// Policy 5.1: any printable US-ASCII except ":", not starting with "#" or "-".
const FIELD_NAME = /^[!-9;-~]+$/;

function fail(origin: string, line: number, why: string): CairnError {
  return new CairnError(`${origin}:${line}: ${why}`,
    'deb822 data is "Field: value" lines, continuation lines starting with a space, paragraphs separated by blank lines');
}

// For each paragraph parseControl made: lower-cased field name → name as written. It doubles as
// the duplicate check while parsing and lets getField find an absent field without a scan.
const spellings = new WeakMap<Paragraph, Map<string, string>>();

// Names repeat in every paragraph, so each distinct one is checked and lower-cased only once.
const checkedNames = new Map<string, string>();

function lowerName(name: string): string | null {
  let lower = checkedNames.get(name);
  if (lower === undefined) {
    if (!FIELD_NAME.test(name) || name.startsWith('#') || name.startsWith('-')) return null;
    lower = name.toLowerCase();
    if (checkedNames.size < 10_000) checkedNames.set(name, lower);
  }
  return lower;
}

/** Parses deb822 text into its paragraphs, rejecting anything malformed with the line number. */
export function parseControl(text: string, options: ParseControlOptions = {}): Paragraph[] {
  const origin = options.origin ?? 'control data';
  const paragraphs: Paragraph[] = [];
  let current: Paragraph | null = null;
  let names = new Map<string, string>();
  let lastField = '';
  let lineNo = 0;
  let start = 0;
  const length = text.length;
  while (start <= length) {
    let end = text.indexOf('\n', start);
    if (end < 0) end = length;
    lineNo++;
    let line = text.slice(start, end);
    start = end + 1;
    if (line.endsWith('\r')) line = line.slice(0, -1);
    const first = line.charCodeAt(0);
    if (first === 32 || first === 9) {
      if (line.trim() === '') {
        // A whitespace-only line separates paragraphs (policy allows parsers to accept it).
        current = null;
        continue;
      }
      if (current === null) throw fail(origin, lineNo, 'continuation line outside any field');
      current[lastField] += '\n' + line.trimEnd();
      continue;
    }
    if (line === '') {
      current = null;
      continue;
    }
    const colon = line.indexOf(':');
    if (colon <= 0) throw fail(origin, lineNo, `expected "Field: value", got "${excerpt(line)}"`);
    const name = line.slice(0, colon);
    const lower = lowerName(name);
    if (lower === null) throw fail(origin, lineNo, `invalid field name "${excerpt(name)}"`);
    // "__proto__" would not become a field of a plain object; nothing in Debian uses it.
    if (lower === '__proto__') throw fail(origin, lineNo, 'invalid field name "__proto__"');
    if (current === null) {
      current = {};
      paragraphs.push(current);
      names = new Map();
      spellings.set(current, names);
    }
    if (names.has(lower)) throw fail(origin, lineNo, `field "${name}" appears twice in one paragraph`);
    names.set(lower, name);
    current[name] = line.slice(colon + 1).trim();
    lastField = name;
  }
  return paragraphs;
}

function excerpt(text: string): string {
  return text.length > 60 ? `${text.slice(0, 60)}…` : text;
}

/** The value of `name` in `par`, whatever capitalisation either uses; undefined when absent. */
export function getField(par: Paragraph, name: string): string | undefined {
  if (Object.hasOwn(par, name)) return par[name];
  const lower = name.toLowerCase();
  const known = spellings.get(par);
  if (known !== undefined) {
    const spelled = known.get(lower);
    return spelled === undefined ? undefined : par[spelled];
  }
  for (const key of Object.keys(par)) {
    if (key.toLowerCase() === lower) return par[key];
  }
  return undefined;
}
