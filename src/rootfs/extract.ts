// Unpacks the data of each .deb into the staging tree without running maintainer scripts, with
// the /usr merge applied, owners and modes kept, and every entry that could escape the tree or
// exceed what its package declares rejected before anything of it is written.
import type tar from 'tar-stream';
import { type DebControl, type MemberReadAhead, entryPath, forEachDataEntry, readDataAhead, readDebControl } from '../debian/deb-reader.js';
import { getField } from '../debian/control.js';
import type { LockedPackage } from '../debian/types.js';
import { CairnError } from '../errors.js';
import { MERGED_DIRS, Tree, TreePathError, imagePath } from './tree.js';

export interface DebInput {
  pkg: LockedPackage;
  /** The .deb on disk, already checked against pkg.sha256. */
  path: string;
}

export interface PackageContents {
  name: string;
  version: string;
  /** Image paths this package placed ("/usr/bin/sh"), in archive order, like dpkg's info/*.list. */
  paths: string[];
  bytes: number;
}

export interface ExtractionReport {
  packages: PackageContents[];
  /** Files a later package replaced (dpkg would have needed Replaces:). */
  overwrites: { path: string; previous: string; by: string }[];
  /** Entries not placed (device nodes, fifos: the image's /dev is devtmpfs). */
  skipped: { package: string; path: string; reason: string }[];
}

// Installed-Size is a sum of rounded-up file sizes in KiB, so real contents stay below it; the
// slack allows for a package that states it by hand. Without the field, a fixed cap applies.
const SIZE_SLACK = 2;
const SIZE_MARGIN = 1 << 20;
const UNDECLARED_CAP = 4 * 1024 ** 3;

// Packages are placed one after another, in lock order, but decompressing them is most of the
// work and runs in child processes: the next few are decompressed meanwhile, on the other cores,
// each holding at most its share of READ_AHEAD_BYTES in memory until its turn.
const READ_AHEAD_PACKAGES = 3;
const READ_AHEAD_BYTES = 512 * 1024 ** 2;
const READ_AHEAD_CAP = Math.floor(READ_AHEAD_BYTES / (READ_AHEAD_PACKAGES + 1));

interface Prepared {
  control: Promise<DebControl>;
  data: Promise<MemberReadAhead>;
}

function prepare(deb: DebInput): Prepared {
  const control = readDebControl(deb.path);
  const data = readDataAhead(deb.path, READ_AHEAD_CAP);
  // Failures surface when the package's turn comes, in lock order; until then they wait here.
  control.catch(() => undefined);
  data.catch(() => undefined);
  return { control, data };
}

function discard(prepared: Prepared): void {
  prepared.data.then(
    (ahead) => ahead.destroy(),
    () => undefined,
  );
}

const HOSTILE_HINT = 'the package is malformed or hostile; nothing was written outside the staging tree';

function packageBudget(fields: Record<string, string>, label: string): { limit: number; declared: string } {
  const installed = getField(fields, 'Installed-Size');
  if (installed === undefined) return { limit: UNDECLARED_CAP, declared: `no Installed-Size, so the cap of ${UNDECLARED_CAP} bytes` };
  if (!/^[0-9]+$/.test(installed)) throw new CairnError(`${label}: Installed-Size "${installed}" is not a number`, HOSTILE_HINT);
  return { limit: Number(installed) * 1024 * SIZE_SLACK + SIZE_MARGIN, declared: `Installed-Size: ${installed} KiB` };
}

function checkIdentity(fields: Record<string, string>, deb: DebInput): void {
  const { pkg } = deb;
  const pairs: [string, string][] = [
    ['Package', pkg.name],
    ['Version', pkg.version],
    ['Architecture', pkg.architecture],
  ];
  for (const [field, expected] of pairs) {
    const actual = getField(fields, field);
    if (actual !== expected) {
      throw new CairnError(
        `${deb.path}: expected ${field} ${expected} for ${pkg.name}, the package says ${actual ?? 'nothing'}`,
        'the file does not belong to this lock entry: clear the fetch cache and build again',
      );
    }
  }
}

/** A tar entry's owner, checked to be a plain id (shared with the OCI layer unpacker). */
export function ownerOf(header: tar.Header): { uid: number; gid: number } {
  const uid = header.uid ?? 0;
  const gid = header.gid ?? 0;
  for (const id of [uid, gid]) {
    if (!Number.isInteger(id) || id < 0 || id >= 0xffffffff) throw new TreePathError(`invalid owner id ${id}`);
  }
  return { uid, gid };
}

/** Extracts `debs` in order into the tree; the tree's root must exist and be empty. */
export async function extractPackages(tree: Tree, debs: DebInput[], log?: (line: string) => void): Promise<ExtractionReport> {
  if (process.getuid?.() !== 0) {
    throw new CairnError(
      'assembling the root tree needs root: package files keep their owners (chown) and setuid bits',
      'run the build as root (sudo, or a root container)',
    );
  }
  const report: ExtractionReport = { packages: [], overwrites: [], skipped: [] };
  // Links first, so that relative symlinks followed during extraction already land under /usr.
  tree.mkdir('usr', 0o755, { uid: 0, gid: 0 });
  for (const dir of MERGED_DIRS) tree.symlink(dir, `usr/${dir}`, { uid: 0, gid: 0 });
  const placedBy = new Map<string, string>();

  const prepared = new Map<number, Prepared>();
  const preparedFor = (index: number): Prepared => {
    for (let i = index; i < Math.min(debs.length, index + 1 + READ_AHEAD_PACKAGES); i++) {
      if (!prepared.has(i)) prepared.set(i, prepare(debs[i]!));
    }
    const own = prepared.get(index)!;
    prepared.delete(index);
    return own;
  };
  try {
    for (const [index, deb] of debs.entries()) {
      const own = preparedFor(index);
      try {
        await extractOne(deb, own);
      } catch (err) {
        discard(own);
        throw err;
      }
    }
  } finally {
    for (const rest of prepared.values()) discard(rest);
  }

  // Merge links nobody filled (lib32 on amd64) would dangle; drop them.
  for (const dir of MERGED_DIRS) {
    if (tree.lstat(`usr/${dir}`) === undefined) tree.remove(dir);
  }
  return report;

  async function extractOne(deb: DebInput, own: Prepared): Promise<void> {
    const { pkg } = deb;
    const label = `${pkg.name} ${pkg.version}`;
    const { fields } = await own.control;
    checkIdentity(fields, deb);
    checkIdentity(fields, deb);
    const budget = packageBudget(fields, label);
    const contents: PackageContents = { name: pkg.name, version: pkg.version, paths: [], bytes: 0 };
    const placed = new Set<string>();

    const place = async (header: tar.Header, body: AsyncIterable<Buffer>): Promise<void> => {
      if (header.name.startsWith('/')) throw new TreePathError('the path is absolute');
      const raw = entryPath(header.name);
      if (raw === '') return;
      const rel = imagePath(raw);
      const owner = ownerOf(header);
      const mode = (header.mode ?? 0o644) & 0o7777;
      const replacing = () => {
        const previous = placedBy.get(rel);
        if (previous !== undefined && previous !== pkg.name) {
          report.overwrites.push({ path: `/${rel}`, previous, by: pkg.name });
          log?.(`${pkg.name} replaces /${rel} of ${previous}`);
        }
        placedBy.set(rel, pkg.name);
        placed.add(rel);
      };
      if ((MERGED_DIRS as readonly string[]).includes(raw) && header.type !== 'directory') {
        // Packages that ship the merge links themselves (base-files in trixie) agree with ours.
        const target = header.type === 'symlink' ? (header.linkname ?? '').replace(/^\/+/, '').replace(/\/+$/, '') : null;
        if (target === `usr/${raw}`) return;
        throw new TreePathError(`/${raw} must be the link ${raw} -> usr/${raw} in a merged-/usr tree`);
      }
      if (header.type === 'character-device' || header.type === 'block-device' || header.type === 'fifo') {
        report.skipped.push({ package: pkg.name, path: `/${rel}`, reason: `${header.type} (not created in images)` });
        log?.(`${pkg.name}: skipped ${header.type} /${rel}`);
        return;
      }
      contents.paths.push(`/${rel}`);
      switch (header.type) {
        case 'directory':
          tree.mkdir(rel, mode, owner);
          return;
        case 'file':
        case 'contiguous-file': {
          const size = header.size ?? 0;
          if (contents.bytes + size > budget.limit) {
            throw new TreePathError(`the file is ${size} bytes, which takes the package past what it declares (${budget.declared})`);
          }
          contents.bytes += size;
          replacing();
          await tree.writeFile(rel, body, mode, owner);
          return;
        }
        case 'symlink': {
          const target = header.linkname ?? '';
          if (target === '' || target.includes('\0')) throw new TreePathError('the symlink has an empty or invalid target');
          replacing();
          tree.symlink(rel, target, owner);
          return;
        }
        case 'link': {
          const linkname = header.linkname ?? '';
          if (linkname.startsWith('/')) throw new TreePathError(`the hard link target ${linkname} is absolute`);
          const target = imagePath(entryPath(linkname));
          if (!placed.has(target)) throw new TreePathError(`the hard link target ${linkname} is not a file this package placed before`);
          replacing();
          tree.hardlink(rel, target);
          return;
        }
        default:
          throw new TreePathError(`unsupported tar entry type ${header.type ?? 'unknown'}`);
      }
    };

    await forEachDataEntry(
      deb.path,
      async (header, body) => {
        try {
          await place(header, body);
        } catch (err) {
          if (err instanceof CairnError) throw err;
          // A TreePathError says why the entry is refused; anything else (EEXIST, ENOSPC) is a
          // system error, reported with the same context.
          throw new CairnError(
            `${label} (${deb.path}): entry "${header.name}": ${(err as Error).message}`,
            err instanceof TreePathError || !('code' in (err as object)) ? HOSTILE_HINT : undefined,
          );
        }
      },
      await own.data,
    );
    report.packages.push(contents);
  }
}
