// A Debian archive as cairn sees it: one signed InRelease, and the Packages indexes whose
// hashes it declares. The chain of trust is keyring → InRelease signature → index SHA-256 →
// .deb SHA-256, and nothing is used before its link in the chain has been checked.
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { CairnError } from '../errors.js';
import { loadKeyring } from '../trust/keyring.js';
import { verifyCleartext } from '../trust/verify.js';
import { compressionOf, decompressBuffer } from './decompress.js';
import { fetchArchiveBytes, type FetchCache } from './fetch-cache.js';
import { parsePackagesIndex } from './packages-index.js';
import type { Progress } from './progress.js';
import { parseRelease, type IndexEntry, type ReleaseFile } from './release-file.js';
import type { ArchiveOrigin, PackageRecord } from './types.js';

export interface ArchiveOptions {
  /** Archive root, e.g. http://deb.debian.org/debian */
  mirror: string;
  suite: string;
  components: string[];
  architecture: string;
  /** Path of the keyring the InRelease must be signed by. */
  keyring: string;
  cache: FetchCache;
  progress?: Progress;
  /** Time to judge the InRelease's freshness and the keys' validity at (tests). */
  now?: Date;
}

export interface Archive {
  origin: ArchiveOrigin;
  release: ReleaseFile;
  /** The InRelease exactly as fetched (its SHA-256 is origin.inReleaseSha256). */
  inRelease: Buffer;
  /** Every package of the requested components for the architecture, in index order. */
  packages: PackageRecord[];
}

// Debian's InRelease is about 150 KiB; anything near this is not an InRelease.
const MAX_INRELEASE_BYTES = 16 * 1024 * 1024;
// Preferred first: the smallest download. Whichever InRelease lists is used.
const INDEX_SUFFIXES = ['.xz', '.gz', ''];
const NAME = /^[A-Za-z0-9][A-Za-z0-9._+~-]*$/;

function checkOptions(opts: ArchiveOptions): string {
  let url: URL;
  try {
    url = new URL(opts.mirror);
  } catch {
    throw new CairnError(`mirror "${opts.mirror}" is not a URL`, 'use e.g. http://deb.debian.org/debian');
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new CairnError(`mirror "${opts.mirror}" must be an http or https URL`);
  }
  // Suite, components and architecture become URL path segments.
  for (const [what, value] of [['suite', opts.suite], ['architecture', opts.architecture], ...opts.components.map((c) => ['component', c])]) {
    if (!NAME.test(value)) throw new CairnError(`${what} "${value}" is not a valid Debian ${what} name`);
  }
  if (opts.components.length === 0) throw new CairnError('no components given', 'list at least one, e.g. main');
  return opts.mirror.replace(/\/+$/, '');
}

function checkCoverage(release: ReleaseFile, opts: ArchiveOptions, where: string): void {
  // A mirror answering for another suite (an older stable, say) would be a downgrade.
  if (release.suite !== opts.suite && release.codename !== opts.suite) {
    throw new CairnError(
      `${where}: describes suite "${release.suite}" (codename "${release.codename}"), not "${opts.suite}"`,
      "the mirror is misconfigured or replaying another suite's metadata",
    );
  }
  if (release.architectures.length > 0 && !release.architectures.includes(opts.architecture)) {
    throw new CairnError(`${where}: has no architecture "${opts.architecture}" (it has ${release.architectures.join(', ')})`);
  }
  for (const component of opts.components) {
    if (release.components.length > 0 && !release.components.includes(component)) {
      throw new CairnError(`${where}: has no component "${component}" (it has ${release.components.join(', ')})`);
    }
  }
}

/** Which file to download for one Packages index, and the hashes that vouch for it. */
interface IndexPlan {
  /** component/binary-ARCH/Packages */
  base: string;
  /** The uncompressed index's entry, when InRelease lists it. */
  plain: IndexEntry | undefined;
  /** The file to download and its entry. */
  path: string;
  entry: IndexEntry;
  url: string;
}

function planIndex(base: string, release: ReleaseFile, distsUrl: string): IndexPlan {
  const path = INDEX_SUFFIXES.map((s) => base + s).find((p) => release.files.has(p));
  if (path === undefined) {
    throw new CairnError(
      `InRelease from ${distsUrl} lists no ${base} index (tried ${INDEX_SUFFIXES.map((s) => base + s).join(', ')})`,
      'check the component and architecture',
    );
  }
  const entry = release.files.get(path)!;
  const dir = path.slice(0, path.lastIndexOf('/'));
  // by-hash names never change content, so a mirror mid-sync cannot hand out a newer index.
  const url = release.acquireByHash ? `${distsUrl}/${dir}/by-hash/SHA256/${entry.sha256}` : `${distsUrl}/${path}`;
  return { base, plain: release.files.get(base), path, entry, url };
}

/** Decompresses a downloaded index and checks it against the uncompressed hash when declared. */
async function decodeIndex(plan: IndexPlan, file: string, distsUrl: string, cache: FetchCache): Promise<Buffer> {
  let data: Buffer;
  try {
    data = await decompressBuffer(await readFile(file), compressionOf(plan.path));
  } catch (err) {
    throw new CairnError(`${distsUrl}/${plan.path}: cannot decompress: ${(err as Error).message}`);
  }
  const { plain } = plan;
  if (plain && plan.path !== plan.base) {
    const got = createHash('sha256').update(data).digest('hex');
    if (data.length !== plain.size || got !== plain.sha256) {
      throw new CairnError(
        `${distsUrl}/${plan.path}: decompresses to ${data.length} bytes with SHA-256 ${got}, but InRelease declares ${plan.base} as ${plain.size} bytes with SHA-256 ${plain.sha256}`,
        'the mirror is corrupt or hostile',
      );
    }
    // Kept decompressed so a warm run skips decompression as well as the download.
    await cache.put(data, plain.sha256);
  }
  return data;
}

/** Fetches and verifies the archive's InRelease, then its Packages indexes. */
export async function openArchive(opts: ArchiveOptions): Promise<Archive> {
  const mirror = checkOptions(opts);
  const keys = await loadKeyring(opts.keyring);
  const distsUrl = `${mirror}/dists/${opts.suite}`;
  const where = `InRelease from ${distsUrl}`;
  const inRelease = await fetchArchiveBytes(`${distsUrl}/InRelease`, MAX_INRELEASE_BYTES);
  const verified = await verifyCleartext(inRelease.toString('utf8'), keys, where, { keyring: opts.keyring, date: opts.now });
  const release = parseRelease(verified.data, where, { now: opts.now });
  checkCoverage(release, opts, where);
  const { cache } = opts;
  const inReleaseSha256 = await cache.put(inRelease);

  const plans = opts.components.map((c) => planIndex(`${c}/binary-${opts.architecture}/Packages`, release, distsUrl));
  const warm = await Promise.all(plans.map((p) => (p.plain ? cache.get(p.plain.sha256) : null)));
  const cold = plans.filter((_, i) => warm[i] === null);
  const fetched = await cache.fetchAll(
    cold.map((p) => ({ url: p.url, sha256: p.entry.sha256, size: p.entry.size, name: p.path })),
    { progress: opts.progress },
  );
  const texts = await Promise.all(plans.map((p, i) => warm[i] ?? decodeIndex(p, fetched.paths.get(p.entry.sha256)!, distsUrl, cache)));
  const packages = plans.flatMap((p, i) => parsePackagesIndex(texts[i].toString('utf8'), { origin: `${distsUrl}/${p.base}` }));
  return {
    origin: { mirror, suite: opts.suite, inReleaseSha256, date: release.date.toISOString() },
    release,
    inRelease,
    packages,
  };
}
