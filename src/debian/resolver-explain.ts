// Turns a failed resolution into a message a user can act on: which package wants what (and
// through which chain it came in), and what the archive actually has.
import { CairnError } from '../errors.js';
import { formatAlternatives, formatRelation } from './relations.js';
import type { Chosen } from './resolver.js';
import type { PackageRecord, Relation } from './types.js';
import type { Universe } from './universe.js';

/** A candidate that could have met the dependency and why it could not be chosen. */
export interface Rejection {
  record: PackageRecord;
  relation: Relation;
  why: string;
}

/** The first dependency the resolver could not meet. */
export interface DeadEnd {
  from: Chosen;
  group: Relation[];
  field: 'Depends' | 'Pre-Depends';
  rejections: Rejection[];
}

const HINT = 'change the recipe: drop or pin the package that needs it, or use a suite or mirror that has what it needs';
const MAX_LISTED = 5;

/** `name version`, as messages show a package. */
export function label(record: PackageRecord): string {
  return `${record.name} ${record.version}`;
}

function listed(items: string[]): string {
  const shown = items.slice(0, MAX_LISTED).join(', ');
  return items.length > MAX_LISTED ? `${shown} and ${items.length - MAX_LISTED} more` : shown;
}

function rootPhrase(root: Chosen): string {
  switch (root.reason.kind) {
    case 'essential':
      return `the Essential package ${root.record.name}`;
    case 'priority':
      return `${root.record.name} (Priority: ${root.reason.priority})`;
    default:
      return root.record.name;
  }
}

/** What the archive has for one alternative that nothing could be chosen for. */
function whatTheArchiveHas(rel: Relation, universe: Universe): string {
  const versions = universe.byName.get(rel.name) ?? [];
  const providers = universe.providers.get(rel.name) ?? [];
  if (versions.length === 0 && providers.length === 0) return `no package in the archive is called "${rel.name}" or provides it`;
  if (rel.arch === 'any' && versions.some((record) => record.multiArch !== 'allowed')) {
    return `${rel.name} is not Multi-Arch: allowed, which "${formatRelation(rel)}" needs`;
  }
  if (versions.length > 0) {
    const provided = providers.filter((p) => p.version !== null).map((p) => `${p.record.name} (provides ${rel.name} ${p.version})`);
    return `the archive has only ${listed([...versions.map(label), ...provided])}`;
  }
  const providerNames = [...new Set(providers.map((p) => p.record.name))];
  if (rel.op !== null && providers.every((p) => p.version === null)) {
    return `"${rel.name}" is a virtual package provided without a version (by ${listed(providerNames)}), which "(${rel.op} ${rel.version})" needs`;
  }
  return `"${rel.name}" is provided only as ${listed(providers.map((p) => `${rel.name} ${p.version ?? '(no version)'} by ${p.record.name}`))}`;
}

export function explainDeadEnd(deadEnd: DeadEnd, universe: Universe, where: string): CairnError {
  const { from, group, field, rejections } = deadEnd;
  const chain: Chosen[] = [];
  for (let at: Chosen | null = from; at !== null; at = at.parent) chain.unshift(at);
  const wanted = formatAlternatives(group);
  const path = chain.length > 1 ? ` (${[...chain.map((c) => c.record.name), wanted].join(' → ')})` : '';
  const details = group.map((rel) => {
    const rejected = rejections.filter((r) => r.relation === rel);
    if (rejected.length === 0) return whatTheArchiveHas(rel, universe);
    const byWhy = new Map<string, string[]>();
    for (const r of rejected) byWhy.set(r.why, [...(byWhy.get(r.why) ?? []), label(r.record)]);
    return [...byWhy].map(([why, labels]) => `${listed(labels)} cannot be chosen: ${why}`).join('; ');
  });
  const verb = field === 'Pre-Depends' ? 'pre-depends on' : 'depends on';
  return new CairnError(
    `cannot install ${rootPhrase(chain[0]!)}${path}: ${label(from.record)} ${verb} "${wanted}", but ${details.join('; ')} (${where})`,
    HINT,
  );
}

/** Levenshtein distance, giving up (returning limit + 1) once it must exceed `limit`. */
function distance(a: string, b: string, limit: number): number {
  if (Math.abs(a.length - b.length) > limit) return limit + 1;
  let previous = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    let rowMin = i;
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      const value = Math.min(previous[j]! + 1, current[j - 1]! + 1, previous[j - 1]! + cost);
      current.push(value);
      rowMin = Math.min(rowMin, value);
    }
    if (rowMin > limit) return limit + 1;
    previous = current;
  }
  return previous[b.length]!;
}

/** The known name closest to `name`, if one is close enough to be a typo. */
function closestName(name: string, candidates: Iterable<string>): string | null {
  const limit = Math.max(1, Math.floor(name.length / 3));
  let best: string | null = null;
  let bestDistance = limit + 1;
  for (const candidate of candidates) {
    const d = distance(name, candidate, limit);
    if (d < bestDistance || (d === bestDistance && best !== null && candidate < best)) {
      best = candidate;
      bestDistance = d;
    }
  }
  return bestDistance <= limit ? best : null;
}

export function explainUnknown(name: string, universe: Universe, where: string): CairnError {
  const suggestion = closestName(name, [...universe.byName.keys(), ...universe.providers.keys()]);
  const guess = suggestion === null ? '' : `; did you mean "${suggestion}"?`;
  return new CairnError(
    `cannot install "${name}": no package in the archive (${where}) is called that or provides it${guess}`,
    'check the spelling, the suite and the components the recipe names',
  );
}
