// A Packages index (dists/SUITE/COMPONENT/binary-ARCH/Packages) turned into PackageRecords.
// The index is signed only indirectly (its hash is in InRelease), and its contents decide
// which paths cairn downloads, so every field the rest of cairn relies on is checked here.
import { CairnError } from '../errors.js';
import { getField, parseControl, type Paragraph } from './control.js';
import { parseProvides, parseRelations } from './relations.js';
import type { PackageRecord, RelationField } from './types.js';
import { parseVersion } from './version.js';

export interface ParsePackagesOptions {
  /** Names the index in error messages (its URL or path). */
  origin?: string;
}

const PACKAGE_NAME = /^[a-z0-9][a-z0-9+.-]+$/;
const ARCHITECTURE = /^[a-z0-9][a-z0-9-]*$/;
const SHA256 = /^[0-9a-fA-F]{64}$/;
// Pool paths are plain relative paths; anything else could point a download outside the archive.
const FILENAME_CHARS = /^[A-Za-z0-9._+~%:@/-]+$/;

class StanzaError extends Error {}

// Restates a parser's complaint about one field as a complaint about this stanza.
function checked<T>(what: string, parse: () => T): T {
  try {
    return parse();
  } catch (err) {
    if (err instanceof CairnError) throw new StanzaError(`has a bad ${what}: ${err.message}`);
    throw err;
  }
}

function required(par: Paragraph, name: string): string {
  const value = getField(par, name);
  if (value === undefined || value === '') throw new StanzaError(`has no "${name}" field`);
  return value;
}

function checkFilename(path: string): string {
  const bad = !FILENAME_CHARS.test(path) || path.startsWith('/') || path.split('/').some((part) => part === '' || part === '.' || part === '..');
  if (bad) throw new StanzaError(`has an unsafe Filename "${path}" (expected a relative path like pool/main/f/foo/foo_1.0_amd64.deb)`);
  return path;
}

function relations(par: Paragraph, name: string): RelationField {
  const value = getField(par, name);
  return value === undefined ? [] : checked(`${name} field`, () => parseRelations(value));
}

function toRecord(par: Paragraph): PackageRecord {
  const name = required(par, 'Package');
  if (!PACKAGE_NAME.test(name)) throw new StanzaError('has an invalid package name');
  const version = required(par, 'Version');
  checked('Version', () => parseVersion(version));
  const architecture = required(par, 'Architecture');
  if (!ARCHITECTURE.test(architecture)) throw new StanzaError(`has an invalid Architecture "${architecture}"`);
  const filename = checkFilename(required(par, 'Filename'));
  const sizeText = required(par, 'Size');
  const size = Number(sizeText);
  if (!/^[0-9]+$/.test(sizeText) || !Number.isSafeInteger(size)) throw new StanzaError(`has an invalid Size "${sizeText}"`);
  const sha256 = required(par, 'SHA256');
  if (!SHA256.test(sha256)) throw new StanzaError(`has an invalid SHA256 "${sha256}" (expected 64 hex digits)`);
  const provides = checked('Provides field', () => parseProvides(getField(par, 'Provides') ?? ''));
  // "Source: name (version)" when the source version differs; the version stays in `fields`.
  const source = (getField(par, 'Source') ?? name).split(/\s/, 1)[0]!;
  return {
    name,
    version,
    architecture,
    multiArch: getField(par, 'Multi-Arch') ?? null,
    essential: getField(par, 'Essential')?.toLowerCase() === 'yes',
    // Policy's default for a package that states none.
    priority: getField(par, 'Priority')?.toLowerCase() ?? 'optional',
    depends: relations(par, 'Depends'),
    preDepends: relations(par, 'Pre-Depends'),
    provides,
    conflicts: relations(par, 'Conflicts'),
    breaks: relations(par, 'Breaks'),
    filename,
    size,
    sha256: sha256.toLowerCase(),
    source,
    fields: par,
  };
}

/** Parses the decompressed text of a Packages index; a broken stanza is an error naming it. */
export function parsePackagesIndex(text: string, options: ParsePackagesOptions = {}): PackageRecord[] {
  const origin = options.origin ?? 'Packages index';
  return parseControl(text, { origin }).map((par, index) => {
    try {
      return toRecord(par);
    } catch (err) {
      if (!(err instanceof StanzaError)) throw err;
      const name = getField(par, 'Package');
      const version = getField(par, 'Version');
      const which = name === undefined ? `stanza ${index + 1}` : `package "${name}"${version === undefined ? '' : ` ${version}`} (stanza ${index + 1})`;
      throw new CairnError(`${origin}: ${which} ${err.message}`, 'the index is corrupt or not a Debian Packages file; check the mirror');
    }
  });
}
