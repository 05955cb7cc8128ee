// Applies one OCI image layer (a tar changeset) to a root being unpacked: entries land through
// the staging Tree, so no path, symlink or hard link can reach outside the root; whiteouts
// (.wh.NAME) and opaque directories (.wh..wh..opq) remove what lower layers put there, never
// what this layer itself adds; device nodes are refused; sizes and entry counts are bounded.
import { lstatSync, readdirSync, rmSync, unlinkSync } from 'node:fs';
import { join, posix } from 'node:path';
import { Readable } from 'node:stream';
import tar from 'tar-stream';
import { CairnError } from '../errors.js';
import { type Tree, TreePathError } from '../rootfs/tree.js';
import { ownerOf } from '../rootfs/extract.js';

export interface UnpackBudget {
  /** Entries left for the whole image. */
  entries: number;
  /** Uncompressed layer bytes left for the whole image (spent by the reader of the stream). */
  bytes: number;
}

const WHITEOUT = '.wh.';
const OPAQUE = '.wh..wh..opq';
const PATH_MAX = 4096;
const NAME_MAX = 255;
const HINT = 'the image is malformed or hostile; nothing was written outside the unpack folder';

/** The entry's path relative to the root ("" for the root), refusing anything that could leave it. */
export function layerEntryPath(name: string): string {
  if (name.includes('\0')) throw new TreePathError('the path contains a NUL byte');
  // tar(1) strips a leading "/" too: inside an image every path is relative to its root.
  const parts: string[] = [];
  for (const part of name.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') throw new TreePathError('the path contains a ".." component');
    if (Buffer.byteLength(part) > NAME_MAX) throw new TreePathError(`a path component is longer than ${NAME_MAX} bytes`);
    parts.push(part);
  }
  const rel = parts.join('/');
  if (Buffer.byteLength(rel) + 1 >= PATH_MAX) throw new TreePathError(`the path is longer than ${PATH_MAX} bytes`);
  return rel;
}

class LayerApplier {
  /** Paths this layer placed, with their parents: whiteouts apply only to what lies below. */
  private readonly written = new Set<string>(['']);

  constructor(
    private readonly tree: Tree,
    private readonly budget: UnpackBudget,
    private readonly rootless: boolean,
  ) {}

  private mark(rel: string): void {
    for (let at = rel; at !== '' && !this.written.has(at); at = posix.dirname(at) === '.' ? '' : posix.dirname(at)) this.written.add(at);
  }

  /** Removes what lower layers have below the directory `rel` and this layer did not write. */
  private hideBelow(physical: string, rel: string): void {
    for (const name of readdirSync(physical)) {
      const childRel = rel === '' ? name : `${rel}/${name}`;
      const child = join(physical, name);
      if (!this.written.has(childRel)) rmSync(child, { recursive: true, force: true });
      else if (lstatSync(child).isDirectory()) this.hideBelow(child, childRel);
    }
  }

  private whiteout(dir: string, name: string): void {
    if (name === OPAQUE) {
      const physical = this.tree.find(dir);
      if (physical !== null && lstatSync(physical, { throwIfNoEntry: false })?.isDirectory()) this.hideBelow(physical, dir);
    } else if (name.startsWith(`${WHITEOUT}${WHITEOUT}`)) {
      // Other .wh..wh. names are aufs bookkeeping (hard link directories); they mean nothing here.
      return;
    } else {
      const target = name.slice(WHITEOUT.length);
      if (target === '' || target === '.' || target === '..') throw new TreePathError(`"${name}" is not a valid whiteout`);
      const rel = dir === '' ? target : `${dir}/${target}`;
      if (this.written.has(rel)) return;
      const physical = this.tree.find(rel);
      if (physical !== null) rmSync(physical, { recursive: true, force: true });
    }
    this.tree.invalidate();
  }

  /** Makes room for an entry of another kind: a directory replaces a non-directory and the reverse. */
  private replace(rel: string, isDirectory: boolean): void {
    const { path, existing } = this.tree.locate(rel);
    if (existing === undefined || existing.isDirectory() === isDirectory) return;
    if (existing.isDirectory()) rmSync(path, { recursive: true, force: true });
    else unlinkSync(path);
    this.tree.invalidate();
  }

  async place(header: tar.Header, body: AsyncIterable<Buffer>): Promise<void> {
    if (--this.budget.entries < 0) throw new CairnError('the image has more entries than cairn unpacks', HINT);
    const rel = layerEntryPath(header.name);
    const slash = rel.lastIndexOf('/');
    const dir = slash < 0 ? '' : rel.slice(0, slash);
    const name = rel.slice(slash + 1);
    if (name.startsWith(WHITEOUT)) {
      this.whiteout(dir, name);
      return;
    }
    const owner = ownerOf(header);
    const mode = (header.mode ?? 0o644) & 0o7777;
    switch (header.type) {
      case 'directory':
        if (rel === '') return;
        this.replace(rel, true);
        // Unprivileged, a directory without owner write could not take the next layer's files.
        this.tree.mkdir(rel, this.rootless ? mode | 0o700 : mode, owner);
        break;
      case 'file':
      case 'contiguous-file': {
        // A size past what is left of the stream budget is refused before a byte is written.
        if ((header.size ?? 0) > this.budget.bytes) throw new CairnError(`the file is ${header.size} bytes, more than the image may still unpack`, HINT);
        this.replace(rel, false);
        await this.tree.writeFile(rel, body, mode, owner);
        break;
      }
      case 'symlink': {
        const target = header.linkname ?? '';
        if (target === '' || target.includes('\0')) throw new TreePathError('the symlink has an empty or invalid target');
        this.replace(rel, false);
        this.tree.symlink(rel, target, owner);
        break;
      }
      case 'link': {
        const target = layerEntryPath(header.linkname ?? '');
        if (target === '') throw new TreePathError('the hard link has no target');
        this.replace(rel, false);
        this.tree.hardlink(rel, target);
        break;
      }
      case 'character-device':
      case 'block-device':
      case 'fifo':
        throw new TreePathError(`${header.type} entries are refused (a container's /dev is made by the runtime)`);
      default:
        throw new TreePathError(`unsupported tar entry type ${header.type ?? 'unknown'}`);
    }
    this.mark(rel);
  }
}

/**
 * Applies the uncompressed layer tar read from `input` to `tree`. `where` names the layer in
 * errors; `rootless` (not root) gives directories owner write so later layers can fill them.
 */
export async function applyLayer(tree: Tree, input: Readable, budget: UnpackBudget, where: string, rootless: boolean): Promise<void> {
  const applier = new LayerApplier(tree, budget, rootless);
  const extract = tar.extract();
  let inputError: Error | null = null;
  input.on('error', (err) => {
    inputError ??= err;
    extract.destroy(err);
  });
  input.pipe(extract);
  let labelled: CairnError | null = null;
  try {
    for await (const entry of extract) {
      const body = entry as unknown as AsyncIterable<Buffer>;
      try {
        await applier.place(entry.header, body);
      } catch (err) {
        // A refused entry says why; a system error (ENOSPC) keeps its own words, with the same context.
        const hint = err instanceof CairnError ? err.hint : err instanceof TreePathError || !('code' in (err as object)) ? HINT : undefined;
        labelled = new CairnError(`${where}: entry "${entry.header.name}": ${(err as Error).message}`, hint);
        throw labelled;
      }
      for await (const chunk of body) void chunk;
    }
  } catch (err) {
    if (err === labelled) throw err;
    const cause = (inputError ?? err) as Error;
    if (cause instanceof CairnError) throw new CairnError(`${where}: ${cause.message}`, cause.hint);
    throw new CairnError(`${where}: not a valid layer tar: ${cause.message}`, HINT);
  } finally {
    input.destroy();
    extract.destroy();
  }
}
