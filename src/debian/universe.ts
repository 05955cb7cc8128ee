// The packages a resolver may choose from, indexed once: by name and by what they provide, with
// every list in a fixed order so that the outcome never depends on the order of the index.
import type { PackageRecord, Relation } from './types.js';
import { compareVersions, satisfies } from './version.js';

/** A package that satisfies a relation on `name` through its Provides. */
export interface Provider {
  record: PackageRecord;
  /** The provided version, or null for an unversioned Provides. */
  version: string | null;
}

// apt's CompareProviders ranks providers by Priority; an unknown one ranks with "optional".
const PRIORITY_RANK: Record<string, number> = { required: 0, important: 1, standard: 2, optional: 3, extra: 4 };

export function priorityRank(priority: string): number {
  return PRIORITY_RANK[priority] ?? PRIORITY_RANK.optional!;
}

function byVersionDescending(a: PackageRecord, b: PackageRecord): number {
  return (
    compareVersions(b.version, a.version) ||
    (a.architecture < b.architecture ? -1 : a.architecture > b.architecture ? 1 : 0) ||
    (a.filename < b.filename ? -1 : a.filename > b.filename ? 1 : 0)
  );
}

/**
 * The order apt's CompareProviders would pick a provider in: Essential first, then the more
 * important Priority. Past that apt falls back to its cache's internal order, which is an accident
 * of index order; cairn takes the name instead so that the choice is stable (and says so).
 */
export function compareProviders(a: Provider, b: Provider): number {
  if (a.record.essential !== b.record.essential) return a.record.essential ? -1 : 1;
  return (
    priorityRank(a.record.priority) - priorityRank(b.record.priority) ||
    (a.record.name < b.record.name ? -1 : a.record.name > b.record.name ? 1 : 0) ||
    byVersionDescending(a.record, b.record)
  );
}

export class Universe {
  /** Every version of each package, highest first. */
  readonly byName = new Map<string, PackageRecord[]>();
  /** Providers of each virtual name, in compareProviders order. */
  readonly providers = new Map<string, Provider[]>();

  /** Keeps only what installs on `architecture`: its own packages and `all`. */
  constructor(
    records: Iterable<PackageRecord>,
    readonly architecture: string,
  ) {
    const seen = new Set<string>();
    for (const record of records) {
      if (record.architecture !== architecture && record.architecture !== 'all') continue;
      // The same package from two components (or listed twice) is one candidate.
      const key = `${record.name}\0${record.version}\0${record.architecture}`;
      if (seen.has(key)) continue;
      seen.add(key);
      push(this.byName, record.name, record);
      for (const provide of record.provides) {
        push(this.providers, provide.name, { record, version: provide.version });
      }
    }
    for (const list of this.byName.values()) list.sort(byVersionDescending);
    for (const list of this.providers.values()) list.sort(compareProviders);
  }

  /** Versions of the real package `name` that meet the relation's version, highest first. */
  versionsFor(rel: Relation): PackageRecord[] {
    const versions = this.byName.get(rel.name) ?? [];
    return versions.filter((record) => matchesReal(record, rel, this.architecture));
  }

  /** Providers of `rel.name` that meet the relation's version, in compareProviders order. */
  providersFor(rel: Relation): Provider[] {
    const providers = this.providers.get(rel.name) ?? [];
    return providers.filter((provider) => matchesProvider(provider, rel, this.architecture));
  }
}

function push<T>(map: Map<string, T[]>, key: string, value: T): void {
  const list = map.get(key);
  if (list === undefined) map.set(key, [value]);
  else list.push(value);
}

// On a single-architecture system "name:any" is met only by a package declared Multi-Arch:
// allowed (as in apt); ":native" and no qualifier mean the native package.
function archQualifierAllows(record: PackageRecord, rel: Relation, native: string): boolean {
  if (rel.arch === null || rel.arch === 'native' || rel.arch === native) return true;
  if (rel.arch === 'any') return record.multiArch === 'allowed';
  return false;
}

/** Whether `record` itself (not its Provides) meets `rel`. */
export function matchesReal(record: PackageRecord, rel: Relation, native: string): boolean {
  if (record.name !== rel.name) return false;
  if (!archQualifierAllows(record, rel, native)) return false;
  return rel.op === null || satisfies(record.version, rel.op, rel.version!);
}

/** Whether a Provides meets `rel`: a versioned relation needs a versioned Provides. */
export function matchesProvider(provider: Provider, rel: Relation, native: string): boolean {
  if (!archQualifierAllows(provider.record, rel, native)) return false;
  if (rel.op === null) return true;
  return provider.version !== null && satisfies(provider.version, rel.op, rel.version!);
}
