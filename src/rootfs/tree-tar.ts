// A reproducible tar of a tree: entries in byte order depth-first, one fixed time, numeric owners
// without names, modes as they are, hard links as tar links, and nothing from the build host
// (no atime, ctime or user names), so the same tree always gives the same bytes.
import { once } from 'node:events';
import { createReadStream, createWriteStream, lstatSync, readdirSync, readlinkSync, type Stats } from 'node:fs';
import { join } from 'node:path';
import tar from 'tar-stream';
import { CairnError } from '../errors.js';

function byteOrder(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}

// Linux dev_t encoding (glibc's gnu_dev_major/minor).
const major = (rdev: number) => Number(((BigInt(rdev) >> 8n) & 0xfffn) | ((BigInt(rdev) >> 32n) & ~0xfffn));
const minor = (rdev: number) => Number((BigInt(rdev) & 0xffn) | ((BigInt(rdev) >> 12n) & ~0xffn));

function typeOf(st: Stats, path: string): tar.Header['type'] {
  if (st.isFile()) return 'file';
  if (st.isDirectory()) return 'directory';
  if (st.isSymbolicLink()) return 'symlink';
  if (st.isCharacterDevice()) return 'character-device';
  if (st.isBlockDevice()) return 'block-device';
  if (st.isFIFO()) return 'fifo';
  throw new CairnError(`${path}: a socket cannot go into the image tar`, 'remove it from the tree');
}

/** Writes the tree at `root` to `tarPath`, with every time set to `sourceDateEpoch`. */
export async function writeTreeTar(root: string, tarPath: string, sourceDateEpoch: number): Promise<void> {
  const pack = tar.pack();
  const out = createWriteStream(tarPath);
  const written = new Promise<void>((resolve, reject) => {
    out.on('close', resolve);
    out.on('error', reject);
    pack.on('error', reject);
  });
  written.catch(() => undefined);
  pack.pipe(out);
  const mtime = new Date(sourceDateEpoch * 1000);
  const firstName = new Map<string, string>();

  // `rel` is "." for the root and "./usr/bin" below it; directories are named with a trailing "/".
  const add = async (path: string, rel: string): Promise<void> => {
    const st = lstatSync(path);
    const name = st.isDirectory() ? `${rel}/` : rel;
    // Full st_mode keeps a zero permission field (/etc/shadow) from being taken as "unset".
    const header: Partial<tar.Header> & { name: string } = {
      name,
      mode: st.mode,
      uid: st.uid,
      gid: st.gid,
      uname: '',
      gname: '',
      mtime,
      type: typeOf(st, path),
    };
    const inode = `${st.dev}:${st.ino}`;
    if (header.type === 'file' && st.nlink > 1) {
      const first = firstName.get(inode);
      if (first !== undefined) {
        header.type = 'link';
        header.linkname = first;
      } else {
        firstName.set(inode, name);
      }
    }
    if (header.type === 'symlink') header.linkname = readlinkSync(path);
    if (header.type === 'character-device' || header.type === 'block-device') {
      header.devmajor = major(st.rdev);
      header.devminor = minor(st.rdev);
    }
    const entryDone = new Promise<void>((resolve, reject) => {
      const sink = pack.entry(header.type === 'file' ? { ...header, size: st.size } : header, (err) => (err ? reject(err) : resolve()));
      if (header.type !== 'file') return;
      void (async () => {
        for await (const chunk of createReadStream(path)) {
          if (!sink.write(chunk as Buffer)) await once(sink, 'drain');
        }
        sink.end(undefined);
      })().catch(reject);
    });
    // A failing output (disk full) stops the pack from draining; it must end the wait too.
    await Promise.race([entryDone, written]);
    if (header.type === 'directory') {
      for (const child of readdirSync(path).sort(byteOrder)) await add(join(path, child), `${rel}/${child}`);
    }
  };

  try {
    await add(root, '.');
    pack.finalize();
    await written;
  } catch (err) {
    pack.destroy(err as Error);
    out.destroy();
    throw err;
  }
}
