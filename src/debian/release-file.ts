// The body of an InRelease (after its signature has been checked): which suite it describes,
// how fresh it is, and the size and SHA-256 of every index file, which is the only thing that
// links the signature to the Packages files and, through them, to every .deb.
import { CairnError } from '../errors.js';
import { getField, parseControl } from './control.js';

export interface IndexEntry {
  size: number;
  sha256: string;
}

export interface ReleaseFile {
  suite: string;
  codename: string;
  date: Date;
  validUntil: Date | null;
  architectures: string[];
  components: string[];
  /** Whether indexes can be fetched by their hash (by-hash/SHA256/…), immune to mid-sync mirrors. */
  acquireByHash: boolean;
  /** Path relative to dists/SUITE (e.g. main/binary-amd64/Packages.xz) → declared size and hash. */
  files: Map<string, IndexEntry>;
}

export interface ReleaseCheckOptions {
  /** The time to judge freshness at (tests inject it). */
  now?: Date;
  /** How far Date may lie in the future, for clock skew between mirror and build host. */
  maxFutureSkewMs?: number;
}

const DEFAULT_SKEW_MS = 15 * 60 * 1000;
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
// RFC 2822 as the archive writes it: "Sat, 09 Aug 2025 09:13:08 UTC" (the weekday is optional).
const DATE = /^(?:[A-Z][a-z]{2}, )?(\d{1,2}) ([A-Z][a-z]{2}) (\d{4}) (\d{2}):(\d{2}):(\d{2}) (UTC|GMT|Z|[+-]\d{4})$/;
const SHA256_LINE = /^([0-9a-f]{64})\s+(\d+)\s+(\S+)$/;

export function parseReleaseDate(value: string, where: string, field: string): Date {
  const m = DATE.exec(value.trim());
  const month = m ? MONTHS.indexOf(m[2]) : -1;
  if (!m || month < 0) {
    throw new CairnError(`${where}: ${field} "${value}" is not a date like "Sat, 09 Aug 2025 09:13:08 UTC"`);
  }
  const zone = m[7];
  const offsetMin = /^[+-]/.test(zone) ? (zone[0] === '-' ? -1 : 1) * (Number(zone.slice(1, 3)) * 60 + Number(zone.slice(3, 5))) : 0;
  const [day, hour, minute, second] = [Number(m[1]), Number(m[4]), Number(m[5]), Number(m[6])];
  const wall = new Date(Date.UTC(Number(m[3]), month, day, hour, minute, second));
  // Date.UTC rolls "31 Feb" over into March; a rolled-over day means the input was nonsense.
  if (wall.getUTCDate() !== day || hour > 23 || minute > 59 || second > 60) {
    throw new CairnError(`${where}: ${field} "${value}" is not a valid date`);
  }
  return new Date(wall.getTime() - offsetMin * 60_000);
}

function parseFileList(value: string, where: string): Map<string, IndexEntry> {
  const files = new Map<string, IndexEntry>();
  for (const raw of value.split('\n')) {
    const line = raw.trim();
    if (line === '') continue;
    const m = SHA256_LINE.exec(line);
    if (!m) throw new CairnError(`${where}: malformed SHA256 line "${line.slice(0, 120)}"`, 'expected "<sha256> <size> <path>"');
    const path = m[3];
    // These paths become URLs under dists/SUITE: nothing may climb out of it.
    if (path.startsWith('/') || path.split('/').some((part) => part === '..' || part === '.' || part === '')) {
      throw new CairnError(`${where}: SHA256 entry "${path}" is not a plain relative path`);
    }
    if (files.has(path)) throw new CairnError(`${where}: SHA256 lists "${path}" twice`);
    const size = Number(m[2]);
    if (!Number.isSafeInteger(size)) throw new CairnError(`${where}: SHA256 entry "${path}" has an impossible size ${m[2]}`);
    files.set(path, { size, sha256: m[1] });
  }
  return files;
}

function words(value: string | undefined): string[] {
  return value ? value.split(/\s+/).filter(Boolean) : [];
}

/**
 * Parses and checks the signed text of an InRelease. `where` names it in errors
 * ("InRelease from http://deb.debian.org/debian/dists/trixie").
 */
export function parseRelease(text: string, where: string, opts: ReleaseCheckOptions = {}): ReleaseFile {
  const paragraphs = parseControl(text, { origin: where });
  if (paragraphs.length !== 1) {
    throw new CairnError(`${where}: expected one paragraph of fields, found ${paragraphs.length}`);
  }
  const par = paragraphs[0];
  const sha256 = getField(par, 'SHA256');
  if (sha256 === undefined) {
    throw new CairnError(`${where}: has no SHA256 file list`, 'cairn checks indexes by SHA-256 only; the mirror must publish SHA256 sums');
  }
  const dateText = getField(par, 'Date');
  if (dateText === undefined) throw new CairnError(`${where}: has no Date field`);
  const date = parseReleaseDate(dateText, where, 'Date');
  const validUntilText = getField(par, 'Valid-Until');
  const validUntil = validUntilText === undefined ? null : parseReleaseDate(validUntilText, where, 'Valid-Until');

  const now = opts.now ?? new Date();
  const skew = opts.maxFutureSkewMs ?? DEFAULT_SKEW_MS;
  if (date.getTime() > now.getTime() + skew) {
    throw new CairnError(
      `${where}: Date ${date.toISOString()} is in the future (now is ${now.toISOString()})`,
      'check the build host clock; a mirror cannot publish from the future',
    );
  }
  if (validUntil !== null && validUntil.getTime() < now.getTime()) {
    throw new CairnError(
      `${where}: stale metadata: Valid-Until ${validUntil.toISOString()} has passed (now is ${now.toISOString()})`,
      'the mirror is out of date or is replaying old metadata; use an up-to-date mirror',
    );
  }
  const suite = getField(par, 'Suite') ?? '';
  const codename = getField(par, 'Codename') ?? '';
  if (suite === '' && codename === '') throw new CairnError(`${where}: has neither Suite nor Codename`);
  return {
    suite,
    codename,
    date,
    validUntil,
    architectures: words(getField(par, 'Architectures')),
    components: words(getField(par, 'Components')),
    acquireByHash: getField(par, 'Acquire-By-Hash')?.toLowerCase() === 'yes',
    files: parseFileList(sha256, where),
  };
}
