// Where things live in an update repository (docs/repository.md). Paths are relative to the
// repository root and use '/', so the same functions name files on disk and URLs.
import { CairnError } from '../errors.js';
import { isSha256Hex } from './chunk-store.js';

const NAME = /^[a-z0-9][a-z0-9-]*$/;
const VERSION = /^[A-Za-z0-9.~+-]+$/;
const CHANNEL = /^[a-z0-9][a-z0-9._-]*$/;

function check(kind: string, value: string, pattern: RegExp): string {
  if (!pattern.test(value) || value.length > 64 || value === '.' || value === '..') {
    throw new CairnError(`${JSON.stringify(value)} is not a valid ${kind}`, `a ${kind} matches ${pattern.source}`);
  }
  return value;
}

export const checkName = (name: string): string => check('image name', name, NAME);
export const checkVersion = (version: string): string => check('version', version, VERSION);
export const checkChannelName = (channel: string): string => check('channel name', channel, CHANNEL);

export const CHUNKS_DIR = 'chunks';
export const RELEASE_RECORD = 'release.json.asc';

export function releaseDir(name: string, version: string): string {
  return `${checkName(name)}/releases/${checkVersion(version)}`;
}

export function releaseRecordPath(name: string, version: string): string {
  return `${releaseDir(name, version)}/${RELEASE_RECORD}`;
}

export function channelsDir(name: string): string {
  return `${checkName(name)}/channels`;
}

export function channelPath(name: string, channel: string): string {
  return `${channelsDir(name)}/${checkChannelName(channel)}.json.asc`;
}

export function rootPath(serial: number): string {
  if (!Number.isSafeInteger(serial) || serial < 1) throw new CairnError(`root serial must be a positive integer, got ${serial}`);
  return `keys/root-${serial}.json.asc`;
}

export function chunkPath(sha256: string): string {
  if (!isSha256Hex(sha256)) throw new CairnError(`not a SHA-256 chunk name: ${JSON.stringify(sha256)}`);
  return `${CHUNKS_DIR}/${sha256.slice(0, 2)}/${sha256}.br`;
}

export const PATCHES_DIR = 'patches';

export function patchPath(sha256: string): string {
  if (!isSha256Hex(sha256)) throw new CairnError(`not a SHA-256 patch name: ${JSON.stringify(sha256)}`);
  return `${PATCHES_DIR}/${sha256.slice(0, 2)}/${sha256}.patch`;
}
