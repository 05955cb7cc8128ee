// A binary patch: new bytes described against old bytes the host already has, in the manner of
// bsdiff. Between two releases an EROFS image keeps most of its bytes but renumbers inodes and
// moves block addresses, so a changed stretch is mostly old bytes with small edits in place: an
// "add" run (new = old + difference, the difference mostly zeros) describes it in a few bytes
// after compression, where copy/insert deltas would break at every edit.
//
// Format (all integers unsigned LEB128, the seek zigzag-signed):
//   "CPT1" targetLength, then Brotli of:
//     opCount, diffLength, extraLength,
//     opCount × (extraLen, addLen, seek),   // copy extraLen new bytes, then addLen bytes of old
//                                           // (at the old position moved by seek) plus diff
//     diff bytes, extra bytes
// Node has Brotli built in, and so does every host (the agent runs on the image's nodejs).
import { promisify } from 'node:util';
import { brotliCompress, brotliDecompress, constants as zc } from 'node:zlib';
import { CairnError } from '../errors.js';

const compress = promisify(brotliCompress);
const decompress = promisify(brotliDecompress);

const MAGIC = Buffer.from('CPT1');
/** Seeds are exact matches of this many bytes; the old data is indexed at every STEP-th byte. */
const SEED = 32;
const STEP = 8;
/** A forward extension stops once this many bytes brought no improvement in its score. */
const GIVE_UP = 256;
/** Patches are decoded in memory on the host: neither side may be larger than this. */
export const MAX_PATCH_SIDE = 64 * 1024 * 1024;

interface Op {
  extra: number;
  add: number;
  /** Where in the old bytes the add run starts. */
  from: number;
}

/** A 32-bit polynomial hash of SEED bytes, updated as the window slides. */
const MULT = 0x01000193;
const MULT_POW = (() => {
  let p = 1;
  for (let i = 0; i < SEED - 1; i++) p = Math.imul(p, MULT);
  return p;
})();

function seedHash(b: Uint8Array, at: number): number {
  let h = 0;
  for (let i = 0; i < SEED; i++) h = (Math.imul(h, MULT) + b[at + i]!) | 0;
  return h;
}

/** Open addressing table from seed hash to an old position (the last one wins). */
function indexOld(old: Uint8Array): { table: Int32Array; mask: number } {
  const slots = Math.max(1 << 10, 1 << Math.ceil(Math.log2(Math.max(1, old.length / STEP) * 2)));
  const table = new Int32Array(slots).fill(-1);
  const mask = slots - 1;
  for (let p = 0; p + SEED <= old.length; p += STEP) table[(seedHash(old, p) >>> 0) & mask] = p;
  return { table, mask };
}

function matches(a: Uint8Array, ai: number, b: Uint8Array, bi: number, n: number): boolean {
  for (let k = 0; k < n; k++) if (a[ai + k] !== b[bi + k]) return false;
  return true;
}

/**
 * Extends a match forward from (newAt, oldAt) as long as the run keeps more matching than
 * differing bytes (score = 2·matches − length, as bsdiff does); returns the best length.
 */
function extendForward(neu: Uint8Array, newAt: number, old: Uint8Array, oldAt: number): number {
  const limit = Math.min(neu.length - newAt, old.length - oldAt);
  let score = 0;
  let best = 0;
  let bestLen = 0;
  for (let k = 0; k < limit; k++) {
    score += neu[newAt + k] === old[oldAt + k] ? 1 : -1;
    if (score > best) {
      best = score;
      bestLen = k + 1;
    } else if (k + 1 - bestLen > GIVE_UP) break;
  }
  return bestLen;
}

/** The same backwards from (newAt, oldAt), not past `newFloor` in the new bytes. */
function extendBackward(neu: Uint8Array, newAt: number, newFloor: number, old: Uint8Array, oldAt: number): number {
  const limit = Math.min(newAt - newFloor, oldAt);
  let score = 0;
  let best = 0;
  let bestLen = 0;
  for (let k = 1; k <= limit; k++) {
    score += neu[newAt - k] === old[oldAt - k] ? 1 : -1;
    if (score > best) {
      best = score;
      bestLen = k;
    } else if (k - bestLen > GIVE_UP) break;
  }
  return bestLen;
}

function findOps(old: Uint8Array, neu: Uint8Array): Op[] {
  const ops: Op[] = [];
  if (old.length < SEED || neu.length < SEED) return [{ extra: neu.length, add: 0, from: 0 }];
  const { table, mask } = indexOld(old);
  let literalStart = 0;
  let i = 0;
  let h = seedHash(neu, 0);
  // Where the last add run ended in the old bytes: tried first, since edits in place keep it.
  let oldCursor = 0;
  while (i + SEED <= neu.length) {
    let oldAt = -1;
    if (oldCursor + SEED <= old.length && matches(neu, i, old, oldCursor, SEED)) oldAt = oldCursor;
    else {
      const cand = table[(h >>> 0) & mask]!;
      if (cand >= 0 && matches(neu, i, old, cand, SEED)) oldAt = cand;
    }
    if (oldAt >= 0) {
      const back = extendBackward(neu, i, literalStart, old, oldAt);
      const start = i - back;
      const from = oldAt - back;
      const len = back + extendForward(neu, i, old, oldAt);
      ops.push({ extra: start - literalStart, add: len, from });
      i = start + len;
      literalStart = i;
      oldCursor = from + len;
      if (i + SEED <= neu.length) h = seedHash(neu, i);
      continue;
    }
    if (i + SEED < neu.length) h = (Math.imul(h - Math.imul(neu[i]!, MULT_POW), MULT) + neu[i + SEED]!) | 0;
    i++;
    // Off the old cursor: the next add run probably starts as far along in the old bytes.
    if (i - literalStart > 0) oldCursor++;
  }
  if (literalStart < neu.length) ops.push({ extra: neu.length - literalStart, add: 0, from: oldCursor });
  return ops;
}

class Writer {
  private parts: Buffer[] = [];
  private cur = Buffer.allocUnsafe(1 << 16);
  private at = 0;

  uint(n: number): void {
    if (this.at + 10 > this.cur.length) this.flush();
    while (n >= 0x80) {
      this.cur[this.at++] = (n % 0x80) | 0x80;
      n = Math.floor(n / 0x80);
    }
    this.cur[this.at++] = n;
  }

  int(n: number): void {
    this.uint(n < 0 ? -2 * n - 1 : 2 * n);
  }

  private flush(): void {
    this.parts.push(Buffer.from(this.cur.subarray(0, this.at)));
    this.at = 0;
  }

  done(): Buffer {
    this.flush();
    return Buffer.concat(this.parts);
  }
}

class Reader {
  at = 0;
  constructor(
    private readonly b: Buffer,
    private readonly where: string,
  ) {}

  uint(): number {
    let n = 0;
    let scale = 1;
    for (;;) {
      if (this.at >= this.b.length) throw new CairnError(`${this.where}: the patch ends inside a number`);
      const byte = this.b[this.at++]!;
      n += (byte & 0x7f) * scale;
      if (byte < 0x80) break;
      scale *= 0x80;
      if (scale > 2 ** 49) throw new CairnError(`${this.where}: a number in the patch is too long`);
    }
    return n;
  }

  int(): number {
    const z = this.uint();
    return z % 2 === 1 ? -(z + 1) / 2 : z / 2;
  }

  bytes(n: number): Buffer {
    if (this.at + n > this.b.length) throw new CairnError(`${this.where}: the patch ends ${this.at + n - this.b.length} bytes early`);
    const out = this.b.subarray(this.at, this.at + n);
    this.at += n;
    return out;
  }
}

/** Describes `neu` against `old`. Brotli quality 9: patches are made once, at publish. */
export async function makePatch(old: Uint8Array, neu: Uint8Array, quality = 9): Promise<Buffer> {
  for (const [what, b] of [
    ['old', old],
    ['new', neu],
  ] as const) {
    if (b.length > MAX_PATCH_SIDE) throw new CairnError(`patch: the ${what} bytes are ${b.length} bytes, at most ${MAX_PATCH_SIDE} are allowed`);
  }
  const ops = findOps(old, neu);
  const diffLength = ops.reduce((s, o) => s + o.add, 0);
  const extraLength = ops.reduce((s, o) => s + o.extra, 0);
  const diff = Buffer.allocUnsafe(diffLength);
  const extra = Buffer.allocUnsafe(extraLength);
  const head = new Writer();
  head.uint(ops.length);
  head.uint(diffLength);
  head.uint(extraLength);
  let n = 0;
  let d = 0;
  let e = 0;
  let oldPos = 0;
  for (const op of ops) {
    head.uint(op.extra);
    head.uint(op.add);
    // An op that adds nothing does not move in the old bytes.
    head.int(op.add === 0 ? 0 : op.from - oldPos);
    extra.set(neu.subarray(n, n + op.extra), e);
    e += op.extra;
    n += op.extra;
    for (let k = 0; k < op.add; k++) diff[d + k] = (neu[n + k]! - old[op.from + k]!) & 0xff;
    d += op.add;
    n += op.add;
    if (op.add > 0) oldPos = op.from + op.add;
  }
  const body = Buffer.concat([head.done(), diff, extra]);
  const packed = await compress(body, {
    params: { [zc.BROTLI_PARAM_QUALITY]: quality, [zc.BROTLI_PARAM_LGWIN]: 24, [zc.BROTLI_PARAM_SIZE_HINT]: body.length },
  });
  const top = new Writer();
  top.uint(neu.length);
  return Buffer.concat([MAGIC, top.done(), packed]);
}

/**
 * Rebuilds the new bytes from `old` and a patch. Every length is checked before it is used, so
 * a hostile patch can make wrong bytes (the caller checks their hash) but no large allocation,
 * no read outside `old` and no endless loop.
 */
export async function applyPatch(old: Uint8Array, patch: Buffer, where: string): Promise<Buffer> {
  if (patch.length < MAGIC.length || !patch.subarray(0, MAGIC.length).equals(MAGIC)) throw new CairnError(`${where}: not a cairn patch`);
  const top = new Reader(patch, where);
  top.at = MAGIC.length;
  const targetLength = top.uint();
  if (targetLength > MAX_PATCH_SIDE) throw new CairnError(`${where}: the patch makes ${targetLength} bytes, at most ${MAX_PATCH_SIDE} are allowed`);
  let body: Buffer;
  try {
    // The body is at most the target twice over plus its ops; anything longer is refused.
    body = await decompress(patch.subarray(top.at), { maxOutputLength: 2 * targetLength + 16 * 1024 * 1024 });
  } catch (err) {
    throw new CairnError(`${where}: the patch does not decompress (${(err as Error).message})`);
  }
  const r = new Reader(body, where);
  const opCount = r.uint();
  const diffLength = r.uint();
  const extraLength = r.uint();
  if (diffLength + extraLength !== targetLength)
    throw new CairnError(`${where}: the patch's parts add up to ${diffLength + extraLength} bytes, it says it makes ${targetLength}`);
  const ops: Op[] = [];
  let oldPos = 0;
  for (let k = 0; k < opCount; k++) {
    const extra = r.uint();
    const add = r.uint();
    const from = oldPos + r.int();
    if (from < 0 || from + add > old.length) throw new CairnError(`${where}: the patch reads old bytes ${from}..${from + add}, there are ${old.length}`);
    ops.push({ extra, add, from });
    oldPos = from + add;
  }
  const diff = r.bytes(diffLength);
  const extra = r.bytes(extraLength);
  if (r.at !== body.length) throw new CairnError(`${where}: ${body.length - r.at} bytes follow the patch`);
  const out = Buffer.allocUnsafe(targetLength);
  let n = 0;
  let d = 0;
  let e = 0;
  for (const op of ops) {
    if (n + op.extra + op.add > targetLength) throw new CairnError(`${where}: the patch writes past its ${targetLength} bytes`);
    extra.copy(out, n, e, e + op.extra);
    n += op.extra;
    e += op.extra;
    for (let k = 0; k < op.add; k++) out[n + k] = (old[op.from + k]! + diff[d + k]!) & 0xff;
    n += op.add;
    d += op.add;
  }
  if (n !== targetLength) throw new CairnError(`${where}: the patch makes ${n} bytes, it says ${targetLength}`);
  return out;
}
