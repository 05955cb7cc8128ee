// The host's view of an update repository, after The Update Framework's threat model. Every
// document is checked before anything uses it:
// - signatures: metadata must be signed by the repository's current keys (the configured keys,
//   moved on only by a root rotation the old keys signed: root-keys.ts);
// - rollback: a channel whose serial is lower than one already seen is refused, and so is a
//   different channel document with the same serial;
// - freeze: an expired channel is refused;
// - endless data: every download has a ceiling (metadata 1 MiB; files, chunks and patches their
//   declared size), and a server that stalls is cut off;
// - mix-and-match: a channel or release for another image or architecture is refused, and each
//   file must have the size and SHA-256 its signed parent gave.
// What passed is recorded in TrustState, which the caller persists (atomically) between runs.
import { createHash } from 'node:crypto';
import type * as openpgp from 'openpgp';
import { CairnError } from '../errors.js';
import { fetchBytes, type HttpOptions } from '../http.js';
import { CHANNEL_KIND, validateChannel, type ChannelDoc, type ReleaseRef } from './channel.js';
import { validateChunkIndex, type ChunkIndex, type ChunkIndexEntry } from './chunk-index.js';
import { decodeChunk, maxStoredSize, type ChunkSource } from './chunk-store.js';
import { unpackJson } from '../document/json-document.js';
import { parseManifest, type Manifest } from '../pipeline/manifest.js';
import { checkPatchSet, type PatchEntry, type PatchSet } from './patch-set.js';
import { RELEASE_RECORD_KIND, validateReleaseRecord, type FileRef, type ReleaseImage, type ReleaseRecord } from './release-record.js';
import { channelPath, chunkPath, patchPath, releaseDir, releaseRecordPath, rootPath } from './repository-layout.js';
import { rootKeys, verifyRoot } from './root-keys.js';
import { MAX_METADATA_BYTES, verifyJson } from './signed-json.js';
import { FORMATS } from '../document/formats.js';

export interface TrustState {
  /** The root the keys below come from (0: the configured keys). */
  rootSerial: number;
  /** ASCII-armored keys of that root (empty at 0). */
  rootKeys: string[];
  /** Per channel: the highest serial seen and the SHA-256 of that document. */
  channels: Record<string, { serial: number; sha256: string }>;
}

export function initialTrustState(): TrustState {
  return { rootSerial: 0, rootKeys: [], channels: {} };
}

export interface UpdateRepositoryOptions {
  /** Base URL of the repository (http or https). */
  url: string;
  /** The image this host runs: anything for another name or architecture is refused. */
  name: string;
  architecture: string;
  /** The keys the host was configured to trust. */
  keys: openpgp.PublicKey[];
  state: TrustState;
  /** Called with the new state whenever it changes; persist it before going on. */
  saveState?: (state: TrustState) => Promise<void>;
  http?: HttpOptions;
  now?: () => Date;
}

const REPO_HINT = 'the repository is broken, stale or under attack; nothing was changed on this host';
/** Root rotations followed per check: more is a hostile repository, not a busy operator. */
const MAX_ROTATIONS = 64;

const sha256 = (data: Uint8Array): string => createHash('sha256').update(data).digest('hex');

export class UpdateRepository {
  private readonly base: string;
  private keys: openpgp.PublicKey[] | null = null;

  constructor(private readonly o: UpdateRepositoryOptions) {
    if (!/^https?:\/\//.test(o.url)) throw new CairnError(`update repository URL must be http or https, got ${o.url}`);
    this.base = o.url.replace(/\/+$/, '');
  }

  get state(): TrustState {
    return this.o.state;
  }

  url(path: string): string {
    return `${this.base}/${path}`;
  }

  private now(): Date {
    return this.o.now?.() ?? new Date();
  }

  private async save(): Promise<void> {
    await this.o.saveState?.(this.o.state);
  }

  /** Follows key rotations from the last root seen; returns the keys metadata must be signed with. */
  async currentKeys(): Promise<openpgp.PublicKey[]> {
    if (this.keys) return this.keys;
    const st = this.o.state;
    let keys =
      st.rootSerial === 0 ? this.o.keys : await rootKeys({ format: FORMATS.root, serial: st.rootSerial, issued: '', keys: st.rootKeys }, 'the saved root');
    for (let n = 0; n < MAX_ROTATIONS; n++) {
      const serial = st.rootSerial + 1;
      let text: Buffer;
      try {
        text = await fetchBytes(this.url(rootPath(serial)), MAX_METADATA_BYTES, { ...this.o.http, notFoundHint: '' });
      } catch (err) {
        if (err instanceof CairnError && / HTTP 404$/.test(err.message)) break;
        throw err;
      }
      const { root, keys: next } = await verifyRoot(text.toString('utf8'), serial, keys, this.url(rootPath(serial)), this.now());
      st.rootSerial = root.serial;
      st.rootKeys = root.keys;
      keys = next;
      await this.save();
    }
    this.keys = keys;
    return keys;
  }

  private checkImage(where: string, name: string, architecture?: string): void {
    if (name !== this.o.name) throw new CairnError(`${where}: is for the image ${name}, this host runs ${this.o.name}`, REPO_HINT);
    if (architecture !== undefined && architecture !== this.o.architecture) {
      throw new CairnError(`${where}: is for ${architecture}, this host is ${this.o.architecture}`, REPO_HINT);
    }
  }

  /** The channel's current signed metadata, checked for rollback, expiry and image. */
  async channel(channel: string): Promise<ChannelDoc> {
    const url = this.url(channelPath(this.o.name, channel));
    const text = await fetchBytes(url, MAX_METADATA_BYTES, {
      ...this.o.http,
      notFoundHint: `is the channel name right? the operator creates it with cairn channel promote VERSION --to ${channel}`,
    });
    const { data: doc } = await verifyJson(text.toString('utf8'), await this.currentKeys(), url, validateChannel, CHANNEL_KIND, {
      date: this.now(),
      keyring: 'the repository keys',
    });
    this.checkImage(url, doc.name);
    if (doc.channel !== channel) throw new CairnError(`${url}: is the channel ${doc.channel}, not ${channel}`, REPO_HINT);
    const expires = Date.parse(doc.expires);
    if (!(expires > this.now().getTime())) {
      throw new CairnError(
        `${url}: expired at ${doc.expires} (serial ${doc.serial})`,
        'the repository stopped publishing fresh metadata (or is replaying old files); the operator renews it with cairn channel renew',
      );
    }
    // An unreadable start would offer the release to every host at once: refused, as an unreadable expiry is.
    if (doc.rollout && !Number.isFinite(Date.parse(doc.rollout.start))) {
      throw new CairnError(`${url}: rollout.start ${JSON.stringify(doc.rollout.start)} is not a time (serial ${doc.serial})`, REPO_HINT);
    }
    const key = `${doc.name}/${doc.channel}`;
    const seen = this.o.state.channels[key];
    const hash = sha256(text);
    if (seen && doc.serial < seen.serial) {
      throw new CairnError(`${url}: serial ${doc.serial} is older than serial ${seen.serial}, already seen`, `a rollback: ${REPO_HINT}`);
    }
    if (seen && doc.serial === seen.serial && hash !== seen.sha256) {
      throw new CairnError(`${url}: a different document with serial ${doc.serial}, already seen`, REPO_HINT);
    }
    if (!seen || doc.serial > seen.serial) {
      this.o.state.channels[key] = { serial: doc.serial, sha256: hash };
      await this.save();
    }
    return doc;
  }

  /** A release record named by a channel: its bytes must hash to the reference. */
  async release(ref: ReleaseRef): Promise<ReleaseRecord> {
    const url = this.url(releaseRecordPath(this.o.name, ref.version));
    const text = await fetchBytes(url, Math.min(ref.size, MAX_METADATA_BYTES), this.o.http);
    if (text.length !== ref.size || sha256(text) !== ref.sha256) {
      throw new CairnError(`${url}: ${text.length} bytes with SHA-256 ${sha256(text)}, but the channel names ${ref.size} bytes with ${ref.sha256}`, REPO_HINT);
    }
    return this.checkRecord(text, url, ref.version);
  }

  /** A release by version alone (hosts pinned to a version): its signature is all that vouches for it. */
  async releaseByVersion(version: string): Promise<ReleaseRecord> {
    const url = this.url(releaseRecordPath(this.o.name, version));
    return this.checkRecord(await fetchBytes(url, MAX_METADATA_BYTES, { ...this.o.http, notFoundHint: `${version} is not published` }), url, version);
  }

  private async checkRecord(text: Buffer, url: string, version: string): Promise<ReleaseRecord> {
    const { data: record } = await verifyJson(text.toString('utf8'), await this.currentKeys(), url, validateReleaseRecord, RELEASE_RECORD_KIND, {
      date: this.now(),
      keyring: 'the repository keys',
    });
    this.checkImage(url, record.name, record.architecture);
    if (record.version !== version) throw new CairnError(`${url}: is version ${record.version}, expected ${version}`, REPO_HINT);
    return record;
  }

  fileUrl(record: ReleaseRecord, file: FileRef): string {
    return this.url(`${releaseDir(record.name, record.version)}/${file.path}`);
  }

  /** A small file of a release, whole, checked against its reference. */
  async file(record: ReleaseRecord, file: FileRef): Promise<Buffer> {
    const url = this.fileUrl(record, file);
    const data = await fetchBytes(url, file.size, this.o.http);
    if (data.length !== file.size) throw new CairnError(`${url}: got ${data.length} bytes, the release record says ${file.size}`, REPO_HINT);
    if (sha256(data) !== file.sha256) throw new CairnError(`${url}: SHA-256 ${sha256(data)}, the release record says ${file.sha256}`, REPO_HINT);
    return data;
  }

  async manifest(record: ReleaseRecord): Promise<Manifest> {
    const data = await this.file(record, record.manifest);
    const manifest = parseManifest(data.toString('utf8'), this.fileUrl(record, record.manifest));
    this.checkImage(this.fileUrl(record, record.manifest), manifest.name, manifest.architecture);
    if (manifest.version !== record.version || manifest.usr.rootHash !== record.rootHash) {
      throw new CairnError(`${this.fileUrl(record, record.manifest)}: version or root hash differs from the release record`, REPO_HINT);
    }
    return manifest;
  }

  /** The chunk index of one slot image, checked against the record and for internal consistency. */
  async chunkIndex(record: ReleaseRecord, image: ReleaseImage): Promise<ChunkIndex> {
    const ref = record.images[image];
    const url = this.fileUrl(record, ref.index);
    const index = validateChunkIndex(unpackJson(await this.file(record, ref.index), url));
    if (index.size !== ref.size || index.sha256 !== ref.sha256) {
      throw new CairnError(
        `${url}: describes ${index.size} bytes with SHA-256 ${index.sha256}, the release record says ${ref.size} bytes with ${ref.sha256}`,
        REPO_HINT,
      );
    }
    return index;
  }

  /** The patches of one image from the release before it, or null when the release has none. */
  async patchSet(record: ReleaseRecord, image: ReleaseImage, index: ChunkIndex): Promise<PatchSet | null> {
    const ref = record.images[image].patches;
    if (!ref) return null;
    const url = this.fileUrl(record, ref);
    return checkPatchSet(unpackJson(await this.file(record, ref), url), index, url);
  }

  /** One patch file, downloaded with a ceiling of its listed size and checked against its hash. */
  async patch(entry: PatchEntry): Promise<Buffer> {
    const url = this.url(patchPath(entry.sha256));
    const data = await fetchBytes(url, entry.size, this.o.http);
    if (data.length !== entry.size) throw new CairnError(`${url}: got ${data.length} bytes, the patch list says ${entry.size}`, REPO_HINT);
    if (sha256(data) !== entry.sha256) throw new CairnError(`${url}: SHA-256 ${sha256(data)}, the patch list says ${entry.sha256}`, REPO_HINT);
    return data;
  }

  chunkUrl(sha: string): string {
    return this.url(chunkPath(sha));
  }

  /** One chunk, downloaded with a ceiling of its stored size, decompressed and checked. */
  async chunk(entry: ChunkIndexEntry): Promise<Buffer> {
    const url = this.chunkUrl(entry.sha256);
    const packed = await fetchBytes(url, Math.min(entry.storedSize, maxStoredSize(entry.size)), this.o.http);
    if (packed.length !== entry.storedSize) throw new CairnError(`${url}: got ${packed.length} bytes, the index says ${entry.storedSize}`, REPO_HINT);
    return decodeChunk(packed, entry.sha256, entry.size, url, REPO_HINT);
  }
}

/** The repository as a ChunkSource for one index (reassemble pulls from it). */
export function remoteChunks(repo: UpdateRepository, index: ChunkIndex): ChunkSource {
  const entries = new Map(index.chunks.map((c) => [c.sha256, c]));
  return {
    get: async (sha: string, size: number) => {
      const entry = entries.get(sha);
      if (!entry || entry.size !== size) throw new CairnError(`chunk ${sha} is not in the index of ${index.image}`);
      return repo.chunk(entry);
    },
  };
}
