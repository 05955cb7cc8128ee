export type VersionOp = '<<' | '<=' | '=' | '>=' | '>>';

/** One term of a relationship field: `name:arch (op version)`. */
export interface Relation {
  name: string;
  /** Architecture qualifier (`any`, `native`, an arch), or null. */
  arch: string | null;
  op: VersionOp | null;
  version: string | null;
}

/** A relationship field is a conjunction of alternatives: `a | b, c` → [[a, b], [c]]. */
export type RelationField = Relation[][];

/** One stanza of a Packages index. */
export interface PackageRecord {
  name: string;
  version: string;
  architecture: string;
  /** Multi-Arch field value or null. */
  multiArch: string | null;
  essential: boolean;
  priority: string;
  depends: RelationField;
  preDepends: RelationField;
  provides: Relation[];
  conflicts: RelationField;
  breaks: RelationField;
  /** Path relative to the archive root (pool/main/...). */
  filename: string;
  size: number;
  sha256: string;
  source: string;
  /** All fields as they appeared, for anything not modelled above. */
  fields: Record<string, string>;
}

/** Where a set of packages came from: one verified InRelease. */
export interface ArchiveOrigin {
  mirror: string;
  suite: string;
  /** SHA-256 of the InRelease file as fetched (it covers every index hash). */
  inReleaseSha256: string;
  /** The InRelease Date field, as an ISO 8601 string. */
  date: string;
}

/** One locked package: everything needed to fetch and check it without the index. */
export interface LockedPackage {
  name: string;
  version: string;
  architecture: string;
  size: number;
  sha256: string;
  filename: string;
}
