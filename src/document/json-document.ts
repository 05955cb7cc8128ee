// Release metadata arrives as JSON from files and the network; each kind has a JSON Schema in
// this folder, and nothing reaches the code that trusts its numbers before passing it.
import type { ValidateFunction } from 'ajv';
import { brotliCompressSync, brotliDecompressSync, constants as zc } from 'node:zlib';
import { CairnError } from '../errors.js';

/** Parses and validates `text`; `what` names the kind of document in errors ("a cairn manifest"). */
export function parseJsonDocument<T>(text: string, where: string, validate: ValidateFunction<T>, what: string, maxBytes: number, hint?: string): T {
  if (text.length > maxBytes) throw new CairnError(`${where}: ${text.length} bytes is too big for ${what} (at most ${maxBytes})`, hint);
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (err) {
    throw new CairnError(`${where}: not JSON (${(err as Error).message})`, hint);
  }
  return checkJsonDocument(data, where, validate, what, hint);
}

/** Checks parsed data against its schema; the error names the first place that fails. */
export function checkJsonDocument<T>(data: unknown, where: string, validate: ValidateFunction<T>, what: string, hint?: string): T {
  if (!validate(data)) {
    const e = validate.errors?.[0];
    throw new CairnError(`${where}: not ${what}: ${e?.instancePath || '(top level)'} ${e?.message ?? ''}`.trim(), hint);
  }
  return data;
}

export function formatJson(data: unknown): string {
  return JSON.stringify(data, null, 2) + '\n';
}

/** Release files a host downloads per release (chunk indexes, patch sets) are Brotli-compressed JSON: a quarter of the size. */
export const PACKED_JSON = '.json.br';
/** The most a packed document may unpack to. */
const MAX_UNPACKED = 64 * 1024 * 1024;

export function packJson(data: unknown): Buffer {
  const text = Buffer.from(formatJson(data));
  return brotliCompressSync(text, { params: { [zc.BROTLI_PARAM_QUALITY]: 9, [zc.BROTLI_PARAM_SIZE_HINT]: text.length } });
}

/** Unpacks and parses a packed document (not validated: the caller's schema does that). */
export function unpackJson(packed: Buffer, where: string): unknown {
  let text: Buffer;
  try {
    text = brotliDecompressSync(packed, { maxOutputLength: MAX_UNPACKED });
  } catch (err) {
    throw new CairnError(`${where}: not a Brotli-compressed document (${(err as Error).message})`);
  }
  try {
    return JSON.parse(text.toString('utf8'));
  } catch (err) {
    throw new CairnError(`${where}: not JSON (${(err as Error).message})`);
  }
}
