// Reads .deb archives without dpkg: the ar container, the control member's fields and files, and
// the data member as a stream of tar entries. A .deb is untrusted input until its payload has
// been placed safely, so the container is validated strictly and every failure names the file.
import { createReadStream } from 'node:fs';
import { open } from 'node:fs/promises';
import { Readable } from 'node:stream';
import tar from 'tar-stream';
import { CairnError } from '../errors.js';
import { type Paragraph, parseControl } from './control.js';
import { type CompressionKind, compressionOf, decompressor } from './decompress.js';

const AR_MAGIC = '!<arch>\n';
const AR_HEADER = 60;
// Control members are small (control, md5sums, scripts); these bound what a hostile one can cost.
const MAX_CONTROL_FILE = 16 << 20;
const MAX_CONTROL_MEMBER = 64 << 20;
const HINT = 'the file is not a valid Debian package: fetch it again, or check where it came from';

export interface ArMember {
  name: string;
  /** Offset of the member's data in the file. */
  offset: number;
  size: number;
}

/** The two members that matter, located in the file. */
export interface DebLayout {
  control: ArMember & { compression: CompressionKind };
  data: ArMember & { compression: CompressionKind };
}

export interface DebControl {
  /** The fields of control/control. */
  fields: Paragraph;
  /** Regular files of the control member by name (control, conffiles, md5sums, postinst, …). */
  files: Map<string, Buffer>;
}

function debError(debPath: string, what: string): CairnError {
  return new CairnError(`${debPath}: ${what}`, HINT);
}

function parseArHeader(debPath: string, header: Buffer, at: number): { name: string; size: number } {
  const field = (start: number, length: number) => header.toString('latin1', start, start + length);
  if (field(58, 2) !== '`\n') throw debError(debPath, `bad ar member header at byte ${at}`);
  // GNU ar ends names with "/"; dpkg accepts both spellings.
  const name = field(0, 16).trimEnd().replace(/\/$/, '');
  const sizeText = field(48, 10);
  if (!/^[0-9]+ *$/.test(sizeText)) throw debError(debPath, `ar member "${name}" at byte ${at} has an invalid size "${sizeText.trimEnd()}"`);
  return { name, size: Number(sizeText.trimEnd()) };
}

/** Every member of the ar container, after checking that each lies wholly within the file. */
export async function listArMembers(debPath: string): Promise<ArMember[]> {
  const file = await open(debPath, 'r').catch((err: NodeJS.ErrnoException) => {
    throw new CairnError(`cannot open ${debPath}: ${err.message}`);
  });
  try {
    const fileSize = (await file.stat()).size;
    const magic = Buffer.alloc(AR_MAGIC.length);
    const { bytesRead } = await file.read(magic, 0, magic.length, 0);
    if (bytesRead < magic.length || magic.toString('latin1') !== AR_MAGIC) {
      throw debError(debPath, 'not an ar archive (a .deb starts with "!<arch>")');
    }
    const members: ArMember[] = [];
    let at = AR_MAGIC.length;
    const header = Buffer.alloc(AR_HEADER);
    while (at < fileSize) {
      if (at + AR_HEADER > fileSize) throw debError(debPath, `truncated ar member header at byte ${at}`);
      await file.read(header, 0, AR_HEADER, at);
      const { name, size } = parseArHeader(debPath, header, at);
      const offset = at + AR_HEADER;
      if (offset + size > fileSize) {
        throw debError(debPath, `ar member "${name}" declares ${size} bytes but only ${fileSize - offset} remain in the file (truncated?)`);
      }
      members.push({ name, offset, size });
      // Members are padded to an even offset; the final padding byte may be missing at the end.
      at = offset + size + (size % 2);
    }
    return members;
  } finally {
    await file.close();
  }
}

const MEMBER_NAME = /^(control|data)\.tar(\.gz|\.xz|\.zst)?$/;

/** Checks the member order dpkg requires and finds the control and data members. */
export async function readDebLayout(debPath: string): Promise<DebLayout> {
  const members = await listArMembers(debPath);
  if (members[0]?.name !== 'debian-binary') throw debError(debPath, 'the first ar member must be "debian-binary"');
  const versionMember = members[0];
  if (versionMember.size > 64) throw debError(debPath, 'debian-binary is too large');
  const file = await open(debPath, 'r');
  const version = Buffer.alloc(versionMember.size);
  try {
    await file.read(version, 0, version.length, versionMember.offset);
  } finally {
    await file.close();
  }
  if (!/^2\.[0-9]+\n/.test(version.toString('latin1'))) {
    throw debError(debPath, `unsupported package format "${version.toString('latin1').trim()}" (expected 2.x)`);
  }
  let control: DebLayout['control'] | undefined;
  let data: DebLayout['data'] | undefined;
  for (const member of members.slice(1)) {
    // dpkg reserves names starting with "_" for additions it ignores.
    if (member.name.startsWith('_')) continue;
    const kind = MEMBER_NAME.exec(member.name);
    if (kind === null) {
      const known = /^(control|data)\.tar\./.test(member.name) ? ' (only gzip, xz and zstd compression are supported)' : '';
      throw debError(debPath, `unexpected ar member "${member.name}"${known}`);
    }
    const located = { ...member, compression: compressionOf(member.name) };
    if (kind[1] === 'control') {
      if (control !== undefined || data !== undefined) throw debError(debPath, `ar member "${member.name}" is out of order`);
      control = located;
    } else {
      if (control === undefined) throw debError(debPath, `"${member.name}" comes before the control member`);
      if (data !== undefined) throw debError(debPath, `a second data member "${member.name}"`);
      data = located;
    }
  }
  if (control === undefined) throw debError(debPath, 'no control.tar member');
  if (data === undefined) throw debError(debPath, 'no data.tar member');
  return { control, data };
}

type EntryHandler = (header: tar.Header, body: AsyncIterable<Buffer>) => Promise<boolean | void>;

/**
 * A member being decompressed ahead of its reader: the decompressor runs as soon as this is
 * made, and its output waits in memory up to `cap` bytes, beyond which the decompressor is
 * paused until the reader catches up. Errors of the file or the decompressor are kept for the
 * reader; `destroy` stops everything (the reader gave up, or never came).
 */
export class MemberReadAhead {
  private readonly source: Readable;
  private readonly unpack: ReturnType<typeof decompressor>;
  private chunks: Buffer[] = [];
  private head = 0;
  private buffered = 0;
  private ended = false;
  private error: Error | null = null;
  private wake: (() => void) | null = null;
  private taken = false;

  constructor(
    debPath: string,
    readonly member: ArMember & { compression: CompressionKind },
    private readonly cap: number,
  ) {
    if (member.size === 0) throw debError(debPath, `${member.name} is empty`);
    this.source = createReadStream(debPath, { start: member.offset, end: member.offset + member.size - 1 });
    this.unpack = decompressor(member.compression);
    const fail = (err: Error) => {
      this.error ??= err;
      this.notify();
    };
    this.source.on('error', fail);
    this.unpack.on('error', fail);
    this.unpack.on('data', (chunk: Buffer) => {
      this.chunks.push(chunk);
      this.buffered += chunk.length;
      if (this.buffered >= this.cap) this.unpack.pause();
      this.notify();
    });
    this.unpack.on('end', () => {
      this.ended = true;
      this.notify();
    });
    this.source.pipe(this.unpack);
  }

  private notify(): void {
    const wake = this.wake;
    this.wake = null;
    wake?.();
  }

  /** The decompressed bytes, once; a failure of the file or decompressor is thrown as soon as it is known. */
  async *read(): AsyncGenerator<Buffer> {
    if (this.taken) throw new Error('a member read ahead can be read only once');
    this.taken = true;
    for (;;) {
      if (this.error !== null) throw this.error;
      if (this.head < this.chunks.length) {
        const chunk = this.chunks[this.head]!;
        this.chunks[this.head++] = undefined as unknown as Buffer;
        if (this.head > 1024 && this.head * 2 > this.chunks.length) {
          this.chunks = this.chunks.slice(this.head);
          this.head = 0;
        }
        this.buffered -= chunk.length;
        if (this.buffered < this.cap && this.unpack.isPaused() && !this.ended) this.unpack.resume();
        yield chunk;
        continue;
      }
      if (this.ended) return;
      await new Promise<void>((resolve) => {
        this.wake = resolve;
      });
    }
  }

  destroy(): void {
    this.source.destroy();
    this.unpack.destroy();
    this.chunks = [];
    this.head = 0;
    this.buffered = 0;
  }
}

/**
 * Streams the tar entries of one member through `onEntry`. The body is drained after the handler
 * returns, so handlers read only what they need; a handler returning false stops early.
 */
async function forEachTarEntry(debPath: string, member: DebLayout['data'], onEntry: EntryHandler, ahead?: MemberReadAhead): Promise<void> {
  const label = `${debPath}: ${member.name}`;
  if (member.size === 0) throw debError(debPath, `${member.name} is empty`);
  const extract = tar.extract();
  let failure: Error | null = null;
  const fail = (err: Error) => {
    failure ??= err;
    extract.destroy(err);
  };
  let stop: () => void;
  if (ahead === undefined) {
    const source = createReadStream(debPath, { start: member.offset, end: member.offset + member.size - 1 });
    const unpack = decompressor(member.compression);
    source.on('error', fail);
    unpack.on('error', fail);
    source.pipe(unpack).pipe(extract);
    stop = () => {
      source.destroy();
      unpack.destroy();
    };
  } else {
    const feed = Readable.from(ahead.read(), { objectMode: false });
    feed.on('error', fail);
    feed.pipe(extract);
    stop = () => {
      feed.destroy();
      ahead.destroy();
    };
  }
  // The handler's own errors (a rejected entry) pass through as they are; stream errors get the
  // name of the .deb and member.
  let handlerError: unknown;
  try {
    for await (const entry of extract) {
      let goOn: boolean | void;
      try {
        // streamx streams are async-iterable at run time; its typings do not say so.
        goOn = await onEntry(entry.header, entry as unknown as AsyncIterable<Buffer>);
      } catch (err) {
        handlerError = err;
        throw err;
      }
      if (goOn === false) return;
      for await (const chunk of entry as unknown as AsyncIterable<Buffer>) void chunk;
    }
  } catch (err) {
    if (failure === null && err === handlerError) throw err;
    const cause = failure ?? err;
    if (cause instanceof CairnError && cause.message.startsWith(debPath)) throw cause;
    if (cause instanceof CairnError) throw new CairnError(`${label}: ${cause.message}`, cause.hint ?? HINT);
    // tar-stream reports a broken archive with a bare message ("Invalid tar header", …).
    throw debError(label, `not a valid tar archive: ${(cause as Error).message}`);
  } finally {
    stop();
    extract.destroy();
  }
  if (failure !== null) throw debError(label, (failure as Error).message);
}

async function readBody(body: AsyncIterable<Buffer>, limit: number, what: () => string): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of body) {
    total += (chunk as Buffer).length;
    if (total > limit) throw new CairnError(`${what()} is larger than ${limit} bytes`, HINT);
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}

/**
 * The path of a tar entry relative to the archive root, without the leading "./", or "" for the
 * root itself. Throws a plain Error saying why when the path could land outside the root.
 */
export function entryPath(name: string): string {
  if (name.includes('\0')) throw new Error('the path contains a NUL byte');
  if (name.startsWith('/')) throw new Error('the path is absolute');
  const parts: string[] = [];
  for (const part of name.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') throw new Error('the path contains a ".." component');
    parts.push(part);
  }
  return parts.join('/');
}

/** The control fields and control files of a .deb. */
export async function readDebControl(debPath: string): Promise<DebControl> {
  const layout = await readDebLayout(debPath);
  if (layout.control.size > MAX_CONTROL_MEMBER) throw debError(debPath, `${layout.control.name} is larger than ${MAX_CONTROL_MEMBER} bytes`);
  const files = new Map<string, Buffer>();
  await forEachTarEntry(debPath, layout.control, async (header, body) => {
    if (header.type !== 'file') return;
    let name: string;
    try {
      name = entryPath(header.name);
    } catch (err) {
      throw debError(debPath, `${layout.control.name}: entry "${header.name}": ${(err as Error).message}`);
    }
    files.set(name, await readBody(body, MAX_CONTROL_FILE, () => `${debPath}: ${layout.control.name}: ${name}`));
  });
  const control = files.get('control');
  if (control === undefined) throw debError(debPath, `${layout.control.name} has no "control" file`);
  const paragraphs = parseControl(control.toString('utf8'), { origin: `${debPath}: control` });
  if (paragraphs.length !== 1) throw debError(debPath, `the control file must hold exactly one paragraph, found ${paragraphs.length}`);
  return { fields: paragraphs[0], files };
}

/**
 * Calls `onEntry` for every entry of the data member, in archive order, streaming: the payload
 * is never held in memory. The handler must consume `body` or leave it; it is drained after.
 */
export async function forEachDataEntry(
  debPath: string,
  onEntry: (header: tar.Header, body: AsyncIterable<Buffer>) => Promise<void>,
  ahead?: MemberReadAhead,
): Promise<void> {
  if (ahead !== undefined) {
    await forEachTarEntry(debPath, ahead.member, onEntry, ahead);
    return;
  }
  const layout = await readDebLayout(debPath);
  await forEachTarEntry(debPath, layout.data, onEntry);
}

/**
 * Starts decompressing the data member of `debPath` for a later `forEachDataEntry`, holding at
 * most `cap` decompressed bytes until it is read. The caller must read or destroy it.
 */
export async function readDataAhead(debPath: string, cap: number): Promise<MemberReadAhead> {
  const layout = await readDebLayout(debPath);
  return new MemberReadAhead(debPath, layout.data, cap);
}

/**
 * The first regular file of the data member whose path (as `entryPath` gives it) satisfies
 * `match`, read whole (up to `limit` bytes), or null when there is none.
 */
export async function readDebFile(debPath: string, match: (path: string) => boolean, limit = 64 << 20): Promise<{ path: string; data: Buffer } | null> {
  const layout = await readDebLayout(debPath);
  let found: { path: string; data: Buffer } | null = null;
  await forEachTarEntry(debPath, layout.data, async (header, body) => {
    if (header.type !== 'file' && header.type !== 'contiguous-file') return true;
    let path: string;
    try {
      path = entryPath(header.name);
    } catch {
      // A hostile path is rejected where it would be written; here it simply does not match.
      return true;
    }
    if (!match(path)) return true;
    found = { path, data: await readBody(body, limit, () => `${debPath}: /${path}`) };
    return false;
  });
  return found;
}
