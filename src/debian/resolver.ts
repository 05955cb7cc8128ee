// Chooses the packages of an image: what the recipe asks for and, transitively, what those
// Depend and Pre-Depend on (never Recommends or Suggests: images stay minimal).
//
// The walk follows apt-get install so that both pick the same set: the requested packages are
// marked first, then each one's dependencies are satisfied depth-first in field order
// (Pre-Depends, then Depends). A dependency already met by a chosen package is left alone;
// otherwise the alternatives are tried in the order written, each name's real package (highest
// version that fits) before the packages that provide it (see compareProviders). Where apt
// would stop at a conflict, cairn backtracks to the latest choice with untried alternatives,
// within a budget, and otherwise reports the first dead end it met.
import { CairnError } from '../errors.js';
import { formatAlternatives, formatRelation } from './relations.js';
import { explainDeadEnd, explainUnknown, label, type DeadEnd, type Rejection } from './resolver-explain.js';
import type { PackageRecord, Relation } from './types.js';
import { matchesProvider, matchesReal, priorityRank, Universe, type Provider } from './universe.js';

export interface ResolveRequest {
  /** `name` or `name=version`. */
  packages: string[];
  architecture: string;
  /** Also install every package marked Essential: yes. */
  essential: boolean;
  /** Also install every package of this Priority or a more important one. */
  priority: 'required' | 'important' | 'none';
  /** Names the archive in error messages, for example "suite trixie". */
  suite?: string;
  /**
   * Packages already installed (the base image under a layer): they meet dependencies and
   * conflict as chosen packages do, but are never chosen again nor part of the result.
   */
  installed?: PackageRecord[];
}

export type SelectionReason =
  | { kind: 'requested' }
  | { kind: 'installed' }
  | { kind: 'essential' }
  | { kind: 'priority'; priority: string }
  | { kind: 'dependency'; of: string; relation: string };

export interface ResolvedPackage {
  record: PackageRecord;
  reason: SelectionReason;
}

export interface ResolveResult {
  /** The chosen packages, sorted by name. */
  packages: ResolvedPackage[];
  /** Choices a reader may want to know about (ties apt would break differently). */
  notes: string[];
}

/** A chosen package and the one whose dependency brought it in (null for a root). */
export interface Chosen {
  record: PackageRecord;
  reason: SelectionReason;
  parent: Chosen | null;
}

/** One dependency still to satisfy. */
interface Obligation {
  from: Chosen;
  group: Relation[];
  field: 'Depends' | 'Pre-Depends';
}

/** Pending obligations, next first; shared tails make saving it for backtracking free. */
type Agenda = { obligation: Obligation; next: Agenda } | null;

interface ChoicePoint {
  agenda: NonNullable<Agenda>;
  candidates: Candidate[];
  next: number;
  undoMark: number;
  noteMark: number;
}

interface Candidate {
  record: PackageRecord;
  /** The relation of the group it satisfies. */
  relation: Relation;
  /** Set when it satisfies the relation through Provides. */
  via: Provider | null;
}

/** A Conflicts or Breaks of a chosen package, indexed by the name it targets. */
interface Negative {
  from: Chosen;
  relation: Relation;
  field: 'conflicts with' | 'breaks';
}

// Enough to get past any real conflict; bounds the search when nothing can work.
const BACKTRACK_BUDGET = 2000;

/** The chosen set as it grows, with an undo log for backtracking. */
class Selection {
  readonly byName = new Map<string, Chosen>();
  readonly provided = new Map<string, Provider[]>();
  readonly negatives = new Map<string, Negative[]>();
  private readonly undoLog: (() => void)[] = [];

  constructor(private readonly native: string) {}

  get mark(): number {
    return this.undoLog.length;
  }

  rollback(mark: number): void {
    while (this.undoLog.length > mark) this.undoLog.pop()!();
  }

  add(chosen: Chosen): void {
    const { record } = chosen;
    this.byName.set(record.name, chosen);
    this.undoLog.push(() => this.byName.delete(record.name));
    for (const provide of record.provides) {
      this.append(this.provided, provide.name, { record, version: provide.version });
    }
    for (const [fieldRelations, field] of [
      [record.conflicts, 'conflicts with'],
      [record.breaks, 'breaks'],
    ] as const) {
      for (const group of fieldRelations) {
        for (const relation of group) this.append(this.negatives, relation.name, { from: chosen, relation, field });
      }
    }
  }

  private append<T>(map: Map<string, T[]>, key: string, value: T): void {
    let list = map.get(key);
    if (list === undefined) {
      list = [];
      map.set(key, list);
    }
    list.push(value);
    const owner = list;
    this.undoLog.push(() => {
      owner.pop();
      if (owner.length === 0) map.delete(key);
    });
  }

  /** The chosen package that meets `rel`, if any. */
  satisfying(rel: Relation): Chosen | null {
    const real = this.byName.get(rel.name);
    if (real !== undefined && matchesReal(real.record, rel, this.native)) return real;
    for (const provider of this.provided.get(rel.name) ?? []) {
      if (matchesProvider(provider, rel, this.native)) return this.byName.get(provider.record.name)!;
    }
    return null;
  }

  /**
   * Why `record` cannot join the chosen set, or null if it can. A package's conflict with
   * itself (Provides and Conflicts on one virtual name, the usual "only one of these" idiom)
   * does not count, as in dpkg.
   */
  clash(record: PackageRecord): string | null {
    const holder = this.byName.get(record.name);
    if (holder !== undefined) return `${label(holder.record)} is already chosen (${describeReason(holder.reason)})`;
    const targets: { name: string; matches: (rel: Relation) => boolean }[] = [
      { name: record.name, matches: (rel) => matchesReal(record, rel, this.native) },
      ...record.provides.map((provide) => ({
        name: provide.name,
        matches: (rel: Relation) => matchesProvider({ record, version: provide.version }, rel, this.native),
      })),
    ];
    for (const target of targets) {
      for (const negative of this.negatives.get(target.name) ?? []) {
        if (negative.from.record.name !== record.name && target.matches(negative.relation)) {
          return `${label(negative.from.record)} (${describeReason(negative.from.reason)}) ${negative.field} "${formatRelation(negative.relation)}"`;
        }
      }
    }
    for (const [fieldRelations, field] of [
      [record.conflicts, 'conflicts with'],
      [record.breaks, 'breaks'],
    ] as const) {
      for (const group of fieldRelations) {
        for (const relation of group) {
          const hit = this.satisfying(relation);
          if (hit !== null && hit.record.name !== record.name) {
            return `it ${field} "${formatRelation(relation)}", which ${label(hit.record)} (${describeReason(hit.reason)}) is`;
          }
        }
      }
    }
    return null;
  }
}

export function describeReason(reason: SelectionReason): string {
  switch (reason.kind) {
    case 'requested':
      return 'requested';
    case 'installed':
      return 'in the base image';
    case 'essential':
      return 'Essential';
    case 'priority':
      return `Priority: ${reason.priority}`;
    case 'dependency':
      return `dependency of ${reason.of}`;
  }
}

function parseRequest(entry: string): { name: string; version: string | null } {
  const m = /^([a-z0-9][a-z0-9+.-]+)(?:=([^\s=]+))?$/.exec(entry);
  if (m === null) {
    throw new CairnError(
      `invalid package request "${entry}": expected "name" or "name=version"`,
      'package names are lower-case letters, digits and + . - (for example systemd or systemd=257.9-1)',
    );
  }
  return { name: m[1]!, version: m[2] ?? null };
}

/** Resolves `request` against the packages of an archive. */
export function resolve(request: ResolveRequest, records: PackageRecord[]): ResolveResult {
  const universe = new Universe(records, request.architecture);
  const where = request.suite === undefined ? request.architecture : `${request.suite}, ${request.architecture}`;
  const selection = new Selection(request.architecture);
  const installed = new Map<string, PackageRecord>();
  for (const record of request.installed ?? []) {
    installed.set(record.name, record);
    selection.add({ record, reason: { kind: 'installed' }, parent: null });
  }
  const notes: string[] = [];
  const roots = chooseRoots(request, universe, installed, where, notes);

  for (const root of roots) {
    const clash = selection.clash(root.record);
    if (clash !== null) {
      throw new CairnError(`cannot install ${label(root.record)} (${describeReason(root.reason)}): ${clash} (${where})`, 'drop one of the two from the recipe');
    }
    selection.add(root);
  }

  let agenda: Agenda = null;
  for (let i = roots.length - 1; i >= 0; i--) agenda = pushDependencies(roots[i]!, agenda);
  satisfyAll(agenda, selection, universe, notes, where);

  const packages = [...selection.byName.values()]
    .filter(({ reason }) => reason.kind !== 'installed')
    .map(({ record, reason }) => ({ record, reason }))
    .sort((a, b) => (a.record.name < b.record.name ? -1 : a.record.name > b.record.name ? 1 : 0));
  return { packages, notes };
}

/** Meets every obligation on `agenda` and those of whatever it chooses, backtracking as needed. */
function satisfyAll(start: Agenda, selection: Selection, universe: Universe, notes: string[], where: string): void {
  let agenda = start;
  const choices: ChoicePoint[] = [];
  let firstDeadEnd: DeadEnd | null = null;
  let backtracks = 0;
  while (agenda !== null) {
    const { obligation } = agenda;
    if (obligation.group.some((rel) => selection.satisfying(rel) !== null)) {
      agenda = agenda.next;
      continue;
    }
    const candidates = candidatesFor(obligation.group, universe);
    const point: ChoicePoint = { agenda, candidates, next: 0, undoMark: selection.mark, noteMark: notes.length };
    let resumed: ChoicePoint | null = point;
    let picked: Candidate | null = null;
    while (resumed !== null) {
      picked = tryNext(resumed, selection);
      if (picked !== null) break;
      if (firstDeadEnd === null) {
        firstDeadEnd = { ...resumed.agenda.obligation, rejections: rejectionsOf(resumed, selection) };
      }
      resumed = choices.pop() ?? null;
      if (resumed !== null) {
        if (++backtracks > BACKTRACK_BUDGET) break;
        selection.rollback(resumed.undoMark);
        notes.length = resumed.noteMark;
      }
    }
    if (picked === null || resumed === null) {
      throw explainDeadEnd(firstDeadEnd!, universe, where);
    }
    // Past a dead end that backtracking got around, the next one is the one to report.
    if (resumed !== point) firstDeadEnd = null;
    if (resumed.next < resumed.candidates.length) choices.push(resumed);
    const from = resumed.agenda.obligation;
    const chosen: Chosen = {
      record: picked.record,
      reason: { kind: 'dependency', of: from.from.record.name, relation: formatAlternatives(from.group) },
      parent: from.from,
    };
    noteTie(picked, resumed.candidates, notes);
    selection.add(chosen);
    agenda = pushDependencies(chosen, resumed.agenda.next);
  }
}

/** The next candidate of `point` that can join the selection; advances `point.next`. */
function tryNext(point: ChoicePoint, selection: Selection): Candidate | null {
  while (point.next < point.candidates.length) {
    const candidate = point.candidates[point.next++]!;
    if (selection.clash(candidate.record) === null) return candidate;
  }
  return null;
}

function rejectionsOf(point: ChoicePoint, selection: Selection): Rejection[] {
  return point.candidates.map((candidate) => ({
    record: candidate.record,
    relation: candidate.relation,
    why: selection.clash(candidate.record) ?? 'its own dependencies cannot be met',
  }));
}

function pushDependencies(chosen: Chosen, rest: Agenda): Agenda {
  const obligations: Obligation[] = [
    ...chosen.record.preDepends.map((group) => ({ from: chosen, group, field: 'Pre-Depends' as const })),
    ...chosen.record.depends.map((group) => ({ from: chosen, group, field: 'Depends' as const })),
  ];
  let agenda = rest;
  for (let i = obligations.length - 1; i >= 0; i--) agenda = { obligation: obligations[i]!, next: agenda };
  return agenda;
}

function candidatesFor(group: Relation[], universe: Universe): Candidate[] {
  const candidates: Candidate[] = [];
  const seen = new Set<PackageRecord>();
  for (const relation of group) {
    for (const record of universe.versionsFor(relation)) {
      if (!seen.has(record)) candidates.push({ record, relation, via: null });
      seen.add(record);
    }
    for (const provider of universe.providersFor(relation)) {
      if (!seen.has(provider.record)) candidates.push({ record: provider.record, relation, via: provider });
      seen.add(provider.record);
    }
  }
  return candidates;
}

// apt breaks a tie between equally ranked providers by its cache order, cairn by name: say so.
function noteTie(picked: Candidate, candidates: Candidate[], notes: string[]): void {
  if (picked.via === null) return;
  const rank = (record: PackageRecord) => `${record.essential} ${priorityRank(record.priority)}`;
  const rivals = candidates
    .filter((c) => c.via !== null && c.relation === picked.relation && c.record.name !== picked.record.name && rank(c.record) === rank(picked.record))
    .map((c) => c.record.name);
  if (rivals.length === 0) return;
  notes.push(
    `several packages provide "${picked.relation.name}" equally well (${[picked.record.name, ...new Set(rivals)].join(', ')}); chose ${picked.record.name} (cairn breaks such ties by name, apt by its cache order)`,
  );
}

function chooseRoots(request: ResolveRequest, universe: Universe, installed: Map<string, PackageRecord>, where: string, notes: string[]): Chosen[] {
  const roots = new Map<string, Chosen>();
  for (const entry of request.packages) {
    const { name, version } = parseRequest(entry);
    const present = installed.get(name);
    if (present !== undefined) {
      if (version !== null && version !== present.version) {
        throw new CairnError(
          `cannot install "${entry}": the base image has ${label(present)}, which a layer cannot replace`,
          `request "${name}" without a version, or rebuild the base with ${name}=${version}`,
        );
      }
      notes.push(`${label(present)} is already in the base image`);
      continue;
    }
    const record = requestedRecord(name, version, universe, where, notes);
    const earlier = roots.get(record.name);
    if (earlier !== undefined && earlier.record !== record) {
      throw new CairnError(
        `"${entry}" asks for ${label(record)} but another request asks for ${label(earlier.record)}`,
        'list each package once in the recipe',
      );
    }
    roots.set(record.name, { record, reason: { kind: 'requested' }, parent: null });
  }
  const all = [...universe.byName.keys()].sort();
  if (request.essential) {
    for (const name of all) {
      const newest = universe.byName.get(name)![0]!;
      if (newest.essential && !roots.has(name) && !installed.has(name)) roots.set(name, { record: newest, reason: { kind: 'essential' }, parent: null });
    }
  }
  if (request.priority !== 'none') {
    const limit = priorityRank(request.priority);
    for (const name of all) {
      const newest = universe.byName.get(name)![0]!;
      if (priorityRank(newest.priority) <= limit && !roots.has(name) && !installed.has(name)) {
        roots.set(name, { record: newest, reason: { kind: 'priority', priority: newest.priority }, parent: null });
      }
    }
  }
  return [...roots.values()];
}

function requestedRecord(name: string, version: string | null, universe: Universe, where: string, notes: string[]): PackageRecord {
  const versions = universe.byName.get(name);
  if (versions === undefined) {
    const providers = [...new Set((universe.providers.get(name) ?? []).map((p) => p.record.name))];
    if (providers.length === 0) throw explainUnknown(name, universe, where);
    if (providers.length > 1 || version !== null) {
      throw new CairnError(`"${name}" is a virtual package provided by ${providers.join(', ')} (${where})`, 'request one of the providing packages by name');
    }
    notes.push(`"${name}" is a virtual package; installing ${providers[0]}, the only package that provides it`);
    return universe.byName.get(providers[0]!)![0]!;
  }
  if (version === null) return versions[0]!;
  const pinned = versions.find((record) => record.version === version);
  if (pinned === undefined) {
    throw new CairnError(
      `cannot install "${name}=${version}": the archive has ${versions.map(label).join(', ')} (${where})`,
      `request one of those versions, or just "${name}" for the newest`,
    );
  }
  return pinned;
}
