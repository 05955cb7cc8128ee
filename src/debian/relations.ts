// Relationship fields of binary packages (Depends, Pre-Depends, Conflicts, Breaks, Provides),
// parsed as dpkg does. Architecture lists and build profiles only mean something in source
// packages, so they are accepted and dropped.
import { CairnError } from '../errors.js';
import type { Relation, RelationField, VersionOp } from './types.js';
import { parseVersion } from './version.js';

const TERM = /^([a-z0-9][a-z0-9+.-]*)(?::([a-z0-9-]+))?\s*(?:\(\s*(<<|<=|>=|>>|=|<|>)\s*([^\s()<>=][^\s()]*)\s*\))?\s*(?:\[[^\]]*\]\s*)?(?:<[^>]*>\s*)*$/;

function bad(text: string, why: string): CairnError {
  return new CairnError(
    `invalid relation "${text.trim()}": ${why}`,
    'a relation is "name[:arch] [(op version)]" with op one of << <= = >= >>, alternatives separated by "|"',
  );
}

// A Packages index repeats the same terms ("libc6 (>= 2.38)") tens of thousands of times; sharing
// one frozen Relation per distinct text keeps parsing fast and the universe small.
const termCache = new Map<string, Relation>();

function parseTerm(text: string): Relation {
  const term = text.trim();
  let rel = termCache.get(term);
  if (rel === undefined) {
    rel = Object.freeze(parseNewTerm(term));
    if (termCache.size >= 500_000) termCache.clear();
    termCache.set(term, rel);
  }
  return rel;
}

function parseNewTerm(term: string): Relation {
  const text = term;
  if (term === '') throw bad(text, 'it is empty');
  const m = TERM.exec(term);
  if (m === null) throw bad(text, 'expected a package name, an optional :arch and an optional (op version)');
  let op: VersionOp | null = null;
  let version: string | null = null;
  if (m[3] !== undefined && m[4] !== undefined) {
    // dpkg still reads the obsolete "<" and ">" as "<=" and ">=".
    op = m[3] === '<' ? '<=' : m[3] === '>' ? '>=' : (m[3] as VersionOp);
    version = m[4];
    try {
      parseVersion(version);
    } catch (err) {
      if (err instanceof CairnError) throw bad(text, err.message);
      throw err;
    }
  }
  return { name: m[1]!, arch: m[2] ?? null, op, version };
}

/** Parses `a | b (>= 1), c:any` into [[a, b], [c]]; an empty field gives []. */
export function parseRelations(text: string): RelationField {
  if (text.trim() === '') return [];
  return text.split(',').map((group) => group.split('|').map(parseTerm));
}

/** Parses a Provides field: names, each with at most an exact `(= version)`. */
export function parseProvides(text: string): Relation[] {
  if (text.trim() === '') return [];
  return text.split(',').map((item) => {
    if (item.includes('|')) throw bad(item, 'Provides cannot list alternatives');
    const rel = parseTerm(item);
    if (rel.op !== null && rel.op !== '=') throw bad(item, `Provides allows only "=" versions, not "${rel.op}"`);
    if (rel.arch !== null) throw bad(item, 'Provides cannot carry an architecture qualifier');
    return rel;
  });
}

/** `name:arch (op version)`, as written in control files. */
export function formatRelation(rel: Relation): string {
  const name = rel.arch === null ? rel.name : `${rel.name}:${rel.arch}`;
  return rel.op === null ? name : `${name} (${rel.op} ${rel.version})`;
}

/** `a | b (>= 1)`. */
export function formatAlternatives(alternatives: Relation[]): string {
  return alternatives.map(formatRelation).join(' | ');
}
