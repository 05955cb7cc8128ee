// deb822 paragraphs: Packages indexes, the body of InRelease, a .deb's control file.
//
// Field names are matched case-insensitively, as Debian policy requires. Within one parsed text
// a field keeps the spelling it first appeared with (the archive writes them canonically, and
// PackageRecord.fields promises them "as they appeared"); getField finds a field whatever
// spelling either side uses. A value is the text after "Name:" trimmed, and for a multi-line
// field each continuation line follows on its own line exactly as written (leading space
// included), so folded fields (Depends) and line lists (SHA256, Description) both survive.
import { CairnError } from '../errors.js';

export type Paragraph = Record<string, string>;

export interface ParseControlOptions {
  /** Names the input in error messages ("…/Packages", "control of foo_1.0_amd64.deb"). */
  origin?: string;
}

// Policy 5.1: any printable US-ASCII except ":", not starting with "#" or "-".
const FIELD_NAME = /^[!-9;-~]+$/;

function fail(origin: string, line: number, why: string): CairnError {
  return new CairnError(
    `${origin}:${line}: ${why}`,
    'deb822 data is "Field: value" lines, continuation lines starting with a space, paragraphs separated by blank lines',
  );
}

/** How one parsed text spells its field names: lower-cased name → the spelling kept. */
type Spellings = Map<string, string>;

// Every paragraph parseControl made → the spellings of its text, so getField can tell an absent
// field from a differently spelled one without scanning (a Packages index has ~70k paragraphs).
const spellingsOf = new WeakMap<Paragraph, Spellings>();

/** Parses deb822 text into its paragraphs, rejecting anything malformed with the line number. */
export function parseControl(text: string, options: ParseControlOptions = {}): Paragraph[] {
  const origin = options.origin ?? 'control data';
  const paragraphs: Paragraph[] = [];
  const spellings: Spellings = new Map();
  // Name as written → spelling kept; names repeat in every paragraph, so each distinct one is
  // checked only once.
  const kept = new Map<string, string>();
  let current: Paragraph | null = null;
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
    if (first === 35) throw fail(origin, lineNo, 'comment lines are not allowed here');
    const colon = line.indexOf(':');
    if (colon <= 0) throw fail(origin, lineNo, `expected "Field: value", got "${excerpt(line)}"`);
    const written = line.slice(0, colon);
    let name = kept.get(written);
    if (name === undefined) {
      if (!FIELD_NAME.test(written) || written.startsWith('-')) {
        throw fail(origin, lineNo, `invalid field name "${excerpt(written)}"`);
      }
      const lower = written.toLowerCase();
      // "__proto__" cannot be a field of a plain object; nothing in Debian uses it.
      if (lower === '__proto__') throw fail(origin, lineNo, 'invalid field name "__proto__"');
      name = spellings.get(lower) ?? written;
      spellings.set(lower, name);
      kept.set(written, name);
    }
    if (current === null) {
      current = {};
      paragraphs.push(current);
      spellingsOf.set(current, spellings);
    }
    if (Object.hasOwn(current, name)) throw fail(origin, lineNo, `field "${written}" appears twice in one paragraph`);
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
  const spellings = spellingsOf.get(par);
  if (spellings !== undefined) {
    const spelled = spellings.get(lower);
    return spelled !== undefined && Object.hasOwn(par, spelled) ? par[spelled] : undefined;
  }
  // A paragraph built by hand rather than parsed.
  for (const key of Object.keys(par)) {
    if (key.toLowerCase() === lower) return par[key];
  }
  return undefined;
}
