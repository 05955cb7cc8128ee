// manifest.json: what a build produced, each artifact's size and SHA-256 and the verity root
// hash, signed with a detached OpenPGP signature (manifest.json.asc). Releases ship it as is.
import { readFile, stat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import type * as openpgp from 'openpgp';
import { CairnError } from '../errors.js';
import { writeFileAtomic } from '../fs-atomic.js';
import { sha256File } from '../hash-file.js';
import { signDetached, verifyDetached } from '../trust/verify.js';
import { formatJson, parseJsonDocument } from '../document/json-document.js';
import { compileSchema } from '../document/schema.js';
import schema from './manifest.schema.json' with { type: 'json' };
import { FORMATS } from '../document/formats.js';

export interface ArtifactEntry {
  size: number;
  sha256: string;
}

export interface Manifest {
  format: typeof FORMATS.manifest;
  name: string;
  version: string;
  architecture: string;
  lockfileSha256: string;
  sourceDateEpoch: number;
  usr: { rootHash: string; salt: string; dataBlocks: number };
  kernel: { version: string; cmdline: string };
  /** File name within the build folder → size and hash. */
  artifacts: Record<string, ArtifactEntry>;
}

export const MANIFEST = 'manifest.json';
export const SIGNATURE = 'manifest.json.asc';
/** Manifests are small; anything bigger is not one (and is not read whole). */
const MAX_MANIFEST = 1 << 20;

const validate = compileSchema<Manifest>(schema);

export async function hashFile(path: string): Promise<ArtifactEntry> {
  return { size: (await stat(path)).size, sha256: (await sha256File(path)).toString('hex') };
}

export async function artifactEntries(paths: string[]): Promise<Record<string, ArtifactEntry>> {
  const entries: Record<string, ArtifactEntry> = {};
  for (const path of [...paths].sort()) entries[basename(path)] = await hashFile(path);
  return entries;
}

export function formatManifest(manifest: Manifest): string {
  return formatJson(manifest);
}

/** Writes manifest.json and, when a key is given, its detached signature. */
export async function writeManifest(dir: string, manifest: Manifest, key: openpgp.PrivateKey | null, date?: Date): Promise<void> {
  const text = formatManifest(manifest);
  if (key) await writeFileAtomic(join(dir, SIGNATURE), await signDetached(Buffer.from(text), [key], date));
  await writeFileAtomic(join(dir, MANIFEST), text);
}

export function parseManifest(text: string, where: string): Manifest {
  return parseJsonDocument(text, where, validate, 'a cairn manifest', MAX_MANIFEST);
}

export interface VerifiedBuild {
  manifest: Manifest;
  signers: string[];
  /** Artifacts whose file differs from the manifest (missing, other size or hash). */
  mismatched: string[];
}

/** Checks the signature over manifest.json and every artifact it lists. */
export async function verifyBuild(dir: string, keys: openpgp.PublicKey[]): Promise<VerifiedBuild> {
  const manifestPath = join(dir, MANIFEST);
  const text = await readFile(manifestPath).catch(() => {
    throw new CairnError(`${manifestPath} is missing`, 'point at a build folder, e.g. images/<name>/<version>');
  });
  const signature = await readFile(join(dir, SIGNATURE), 'utf8').catch(() => {
    throw new CairnError(`${join(dir, SIGNATURE)} is missing: the build is unsigned`, 'build with --sign-key KEY');
  });
  const { signers } = await verifyDetached(text, signature, keys, manifestPath);
  const manifest = parseManifest(text.toString('utf8'), manifestPath);
  return { manifest, signers, mismatched: await mismatchedArtifacts(dir, manifest) };
}

/** Artifacts (all, or those named in `only`) whose file in `dir` is missing or differs from the manifest. */
export async function mismatchedArtifacts(dir: string, manifest: Manifest, only?: string[]): Promise<string[]> {
  const mismatched: string[] = [];
  for (const [name, expected] of Object.entries(manifest.artifacts)) {
    if (only && !only.includes(name)) continue;
    const actual = await hashFile(join(dir, name)).catch(() => null);
    if (!actual || actual.size !== expected.size || actual.sha256 !== expected.sha256) mismatched.push(name);
  }
  return mismatched;
}

/** Reads and parses `dir`/manifest.json (unverified). */
export async function readManifest(dir: string): Promise<{ manifest: Manifest; text: Buffer }> {
  const manifestPath = join(dir, MANIFEST);
  const text = await readFile(manifestPath).catch(() => {
    throw new CairnError(`${manifestPath} is missing`, 'point at a build folder, e.g. images/<name>/<version>');
  });
  return { manifest: parseManifest(text.toString('utf8'), manifestPath), text };
}
