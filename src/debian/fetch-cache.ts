// Everything cairn downloads is named by its SHA-256 before it is fetched (indexes by InRelease,
// .debs by the index or the lock), so the cache is content-addressed: a file is stored under its
// hash only after the hash was checked, a file present is a file that needs no request, and a
// hostile mirror can at worst make a download fail, never put wrong bytes in place.
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, open, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { basename, dirname, isAbsolute, join } from 'node:path';
import { request } from 'undici';
import { CairnError } from '../errors.js';
import { dispatcherFor, fetchBytes, HttpOptions, statusError, TransientError, withRetries } from '../http.js';
import type { Progress } from './progress.js';

export interface FetchItem {
  url: string;
  /** Lower-case hex SHA-256 the file must have. */
  sha256: string;
  /** Exact size in bytes: more is never read, less is an incomplete download. */
  size: number;
  /** Short name for progress and errors (e.g. "systemd_257.7-1_amd64.deb"). */
  name: string;
}

export interface FetchOptions {
  /** Downloads running at once (default 6). */
  concurrency?: number;
  progress?: Progress;
}

export interface FetchResult {
  /** SHA-256 → path of the verified file in the cache. */
  paths: Map<string, string>;
  downloadedBytes: number;
  downloadedFiles: number;
  cachedFiles: number;
}

const SHA256_HEX = /^[0-9a-f]{64}$/;
const NOT_FOUND_HINT = 'check the mirror URL and suite, or refresh the lock (cairn lock) if the archive moved on';

/** Bytes of one item: sent over the network, and shown so far (taken back on a restart). */
interface Tally {
  transferred: number;
  shown: number;
  progress?: Progress;
}

function show(tally: Tally, total: number): void {
  tally.progress?.add(total - tally.shown);
  tally.shown = total;
}

/** GETs a small archive document (InRelease) whole, with a ceiling. */
export function fetchArchiveBytes(url: string, maxBytes: number): Promise<Buffer> {
  return fetchBytes(url, maxBytes, { notFoundHint: NOT_FOUND_HINT });
}

function checkItem(item: FetchItem): void {
  if (!SHA256_HEX.test(item.sha256)) throw new CairnError(`${item.name}: "${item.sha256}" is not a SHA-256 in lower-case hex`);
  if (!Number.isSafeInteger(item.size) || item.size < 0) throw new CairnError(`${item.name}: impossible size ${item.size}`);
  if (!/^https?:\/\//.test(item.url)) throw new CairnError(`${item.name}: only http and https URLs can be fetched, got ${item.url}`);
}

async function sizeOf(path: string): Promise<number | null> {
  try {
    return (await stat(path)).size;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
}

async function hashFile(path: string, hash: ReturnType<typeof createHash>): Promise<void> {
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
}

export function defaultCacheDir(): string {
  // The XDG spec says a relative XDG_CACHE_HOME is invalid and must be ignored.
  const xdg = process.env.XDG_CACHE_HOME;
  return join(xdg && isAbsolute(xdg) ? xdg : join(homedir(), '.cache'), 'cairn');
}

export class FetchCache {
  readonly dir: string;

  private readonly http: HttpOptions;

  constructor(dir?: string, http: HttpOptions = {}) {
    this.dir = dir ?? defaultCacheDir();
    this.http = { notFoundHint: NOT_FOUND_HINT, ...http };
  }

  pathFor(sha256: string): string {
    if (!SHA256_HEX.test(sha256)) throw new CairnError(`"${sha256}" is not a SHA-256 in lower-case hex`);
    return join(this.dir, 'sha256', sha256.slice(0, 2), sha256);
  }

  /**
   * Whether the file is present with the expected size. Files enter the cache only after their
   * hash was checked, so re-hashing every warm file on every build would buy nothing.
   */
  async has(sha256: string, size?: number): Promise<boolean> {
    const found = await sizeOf(this.pathFor(sha256));
    return found !== null && (size === undefined || found === size);
  }

  /** The cached bytes, re-checked against the hash (whole-file reads are for small indexes). */
  async get(sha256: string): Promise<Buffer | null> {
    const path = this.pathFor(sha256);
    let data: Buffer;
    try {
      data = await readFile(path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw err;
    }
    if (createHash('sha256').update(data).digest('hex') !== sha256) {
      await rm(path, { force: true });
      return null;
    }
    return data;
  }

  /** Stores bytes under their hash; with `expected`, refuses bytes that do not have it. */
  async put(data: Uint8Array, expected?: string): Promise<string> {
    const sha256 = createHash('sha256').update(data).digest('hex');
    if (expected !== undefined && expected !== sha256) {
      throw new CairnError(`refusing to cache data as ${expected}: its SHA-256 is ${sha256}`);
    }
    const path = this.pathFor(sha256);
    await mkdir(dirname(path), { recursive: true });
    const tmp = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
    await writeFile(tmp, data, { flush: true });
    await rename(tmp, path);
    return sha256;
  }

  /** Makes every item present in the cache, downloading only what is missing. */
  async fetchAll(items: FetchItem[], opts: FetchOptions = {}): Promise<FetchResult> {
    const unique = new Map<string, FetchItem>();
    for (const item of items) {
      checkItem(item);
      const seen = unique.get(item.sha256);
      if (seen && seen.size !== item.size) {
        throw new CairnError(`${item.name} and ${seen.name} have the same SHA-256 but different sizes`);
      }
      unique.set(item.sha256, item);
    }
    const result: FetchResult = { paths: new Map(), downloadedBytes: 0, downloadedFiles: 0, cachedFiles: 0 };
    const missing: FetchItem[] = [];
    for (const item of unique.values()) {
      if (await this.has(item.sha256, item.size)) {
        result.paths.set(item.sha256, this.pathFor(item.sha256));
        result.cachedFiles++;
      } else {
        missing.push(item);
      }
    }
    const progress = opts.progress;
    progress?.start(
      missing.length,
      missing.reduce((sum, i) => sum + i.size, 0),
    );
    let next = 0;
    let failing = false;
    const worker = async (): Promise<void> => {
      while (next < missing.length && !failing) {
        const item = missing[next++];
        let bytes: number;
        try {
          bytes = await this.download(item, progress);
        } catch (err) {
          failing = true;
          throw err;
        }
        // Added after the await: `total += await …` would add to a stale total under concurrency.
        result.downloadedBytes += bytes;
        result.paths.set(item.sha256, this.pathFor(item.sha256));
        result.downloadedFiles++;
        progress?.fileDone();
      }
    };
    const workers = Array.from({ length: Math.min(Math.max(1, opts.concurrency ?? 6), missing.length) }, worker);
    // Let every worker settle before reporting, so no download keeps writing after we return.
    const settled = await Promise.allSettled(workers);
    progress?.finish();
    const failed = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected');
    if (failed) throw failed.reason;
    return result;
  }

  /** Downloads one item into place; returns the bytes transferred. */
  private async download(item: FetchItem, progress?: Progress): Promise<number> {
    const final = this.pathFor(item.sha256);
    await mkdir(dirname(final), { recursive: true });
    const part = await claimPart(final);
    const tally: Tally = { transferred: 0, shown: 0, progress };
    try {
      await withRetries(item.url, () => this.attempt(item, part, tally), this.http);
    } catch (err) {
      show(tally, 0);
      throw err;
    }
    await rename(part, final);
    return tally.transferred;
  }

  /**
   * One request: resumes from `part` when it holds a prefix, appends, and checks size and hash
   * once the declared size is reached. Leaves a verified `part` behind on success; a transient
   * failure leaves the prefix received so far for the next attempt to resume from.
   */
  private async attempt(item: FetchItem, part: string, tally: Tally): Promise<void> {
    let have = (await sizeOf(part)) ?? 0;
    if (have >= item.size && item.size > 0) {
      // A complete part would already have been renamed into place: this one is stale.
      await rm(part, { force: true });
      have = 0;
    }
    const res = await request(item.url, { dispatcher: dispatcherFor(this.http), headers: have > 0 ? { range: `bytes=${have}-` } : {} });
    const discard = async (): Promise<void> => {
      await res.body.dump().catch(() => undefined);
    };
    if (res.statusCode === 206 && have > 0) {
      const range = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(String(res.headers['content-range'] ?? ''));
      if (!range || Number(range[1]) !== have) {
        await discard();
        await rm(part, { force: true });
        throw new TransientError(`${item.url}: the server answered the resume request with a different range (${res.headers['content-range']})`);
      }
    } else if (res.statusCode === 200) {
      // No resume (the server ignored the Range header, or there was nothing to resume).
      have = 0;
    } else if (res.statusCode === 416) {
      await discard();
      await rm(part, { force: true });
      throw new TransientError(`${item.url}: the server cannot resume at byte ${have}`);
    } else {
      await discard();
      throw statusError(item.url, res.statusCode, this.http);
    }
    const expectedLength = item.size - have;
    const declared = Number(res.headers['content-length'] ?? NaN);
    if (declared > expectedLength) {
      await discard();
      if (have === 0) await rm(part, { force: true });
      throw this.tooLarge(item);
    }

    const hash = createHash('sha256');
    if (have > 0) await hashFile(part, hash);
    show(tally, have);
    let received = have;
    const file = await open(part, have > 0 ? 'a' : 'w');
    try {
      for await (const chunk of res.body) {
        const buf = chunk as Buffer;
        received += buf.length;
        if (received > item.size) {
          res.body.destroy();
          await rm(part, { force: true });
          throw this.tooLarge(item);
        }
        hash.update(buf);
        await file.write(buf);
        tally.transferred += buf.length;
        show(tally, received);
      }
      await file.sync();
    } finally {
      await file.close();
    }
    // An interrupted connection throws above and is retried; a response that ended cleanly
    // short of the declared size is a different file.
    if (received < item.size) {
      await rm(part, { force: true });
      throw new CairnError(
        `${item.url}: the mirror served ${received} bytes but the index declares ${item.size}`,
        'the mirror is corrupt, mid-sync or hostile; try again later or use another mirror',
      );
    }
    const got = hash.digest('hex');
    if (got !== item.sha256) {
      await rm(part, { force: true });
      throw new CairnError(
        `${item.url}: SHA-256 mismatch (expected ${item.sha256}, got ${got}): the mirror served a different file than the index declares`,
        'the mirror is corrupt, mid-sync or hostile; try again later or use another mirror',
      );
    }
  }

  private tooLarge(item: FetchItem): CairnError {
    return new CairnError(
      `${item.url}: the server sent more than the ${item.size} bytes the index declares`,
      'the mirror is broken or hostile; cairn stopped reading',
    );
  }
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * The partial file this process downloads `final` into. Each process has its own, so two builds
 * sharing a cache never write into one file (or into a file the other already renamed into
 * place); a part left by a process that died is adopted, so the download resumes.
 */
async function claimPart(final: string): Promise<string> {
  const mine = `${final}.part-${process.pid}`;
  const prefix = `${basename(final)}.part-`;
  for (const name of await readdir(dirname(final))) {
    if (!name.startsWith(prefix)) continue;
    const pid = Number(name.slice(prefix.length));
    if (pid === process.pid || !Number.isInteger(pid) || processAlive(pid)) continue;
    // Another process may adopt the same part at the same moment: whoever renames first has it.
    await rename(join(dirname(final), name), mine).catch(() => undefined);
    break;
  }
  return mine;
}
