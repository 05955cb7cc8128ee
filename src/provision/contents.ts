// The contents of provisioned files: data: URLs (RFC 2397, base64 or percent-encoded) and
// http(s) URLs, optionally gzip-compressed, checked against the config's hash before anything is
// written. Every file's contents are read before the first write, so a failed fetch or a wrong
// hash leaves the host untouched.
import { createHash } from 'node:crypto';
import { gunzipSync } from 'node:zlib';
import { CairnError } from '../errors.js';
import { fetchBytes } from '../http.js';
import type { Resource } from './config.js';

/** The most one provisioned file may hold. */
export const MAX_FILE_BYTES = 64 << 20;

export function decodeDataUrl(url: string, where: string): Buffer {
  const comma = url.indexOf(',');
  if (!url.startsWith('data:') || comma < 0) throw new CairnError(`${where}: ${JSON.stringify(url.slice(0, 40))} is not a data: URL`);
  const meta = url.slice(5, comma);
  const payload = url.slice(comma + 1);
  if (meta.split(';').includes('base64')) {
    const clean = decodeURIComponent(payload);
    if (!/^[A-Za-z0-9+/]*={0,2}$/.test(clean)) throw new CairnError(`${where}: the data: URL's base64 is malformed`);
    return Buffer.from(clean, 'base64');
  }
  try {
    return Buffer.from(decodeURIComponent(payload), 'utf8');
  } catch {
    throw new CairnError(`${where}: the data: URL has a malformed %-escape`);
  }
}

/** The bytes a resource stands for, verified; `where` names it in errors. */
export async function readResource(resource: Resource | undefined, where: string): Promise<Buffer> {
  const source = resource?.source ?? '';
  if (source === '') return Buffer.alloc(0);
  let raw = source.startsWith('data:') ? decodeDataUrl(source, where) : await fetchBytes(source, MAX_FILE_BYTES, { attempts: 5 });
  const hash = resource?.verification?.hash;
  if (hash) {
    const [algorithm, expected] = hash.split('-') as ['sha256' | 'sha512', string];
    const actual = createHash(algorithm).update(raw).digest('hex');
    if (actual !== expected) {
      throw new CairnError(
        `${where}: ${source.startsWith('data:') ? 'the data: URL' : source} has ${algorithm} ${actual}, but the config's verification.hash says ${expected}`,
        'fix the hash in the config, or the file on the server',
      );
    }
  }
  if (resource?.compression === 'gzip') {
    try {
      raw = gunzipSync(raw, { maxOutputLength: MAX_FILE_BYTES });
    } catch (err) {
      throw new CairnError(`${where}: not gzip data, or more than ${MAX_FILE_BYTES} bytes unpacked (${(err as Error).message})`);
    }
  }
  return raw;
}
