// The fleet operator's side of channels: each operation reads the channel from the repository
// on disk, changes it, raises its serial and re-signs it with a fresh expiry. A host sees the new
// file whole or not at all (one signed file per channel, replaced by rename).
import { createHash } from 'node:crypto';
import { mkdir, readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type * as openpgp from 'openpgp';
import { compareVersions } from '../debian/version.js';
import { CairnError } from '../errors.js';
import { writeFileAtomic } from '../fs-atomic.js';
import { CHANNEL_KIND, rolloutPercent, validateChannel, type ChannelDoc, type ReleaseRef, type Rollout } from './channel.js';
import { channelPath, channelsDir, checkChannelName, checkVersion, releaseRecordPath } from './repository-layout.js';
import { readSignedJsonUnverified, signJson } from './signed-json.js';
import { FORMATS } from '../document/formats.js';

export const DEFAULT_EXPIRY_SECONDS = 7 * 24 * 3600;

export interface ChannelWrite {
  repoDir: string;
  name: string;
  key: openpgp.PrivateKey;
  /** How long the signed channel stays valid (default 7 days): sign again before then. */
  expiresSeconds?: number;
  now?: Date;
}

/** The image names in a repository (folders with a releases/ folder). */
export async function repositoryNames(repoDir: string): Promise<string[]> {
  const entries = await readdir(repoDir, { withFileTypes: true }).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') throw new CairnError(`${repoDir}: no such repository`, 'publish a release into it first (cairn publish BUILD --repo DIR)');
    throw err;
  });
  const names: string[] = [];
  for (const e of entries) {
    if (
      e.isDirectory() &&
      (await stat(join(repoDir, e.name, 'releases')).then(
        (s) => s.isDirectory(),
        () => false,
      ))
    )
      names.push(e.name);
  }
  return names.sort();
}

/** The name the operator means: the given one, or the only one in the repository. */
export async function resolveName(repoDir: string, name: string | undefined): Promise<string> {
  const names = await repositoryNames(repoDir);
  if (name) {
    if (!names.includes(name))
      throw new CairnError(`${repoDir} has no releases of ${name}`, names.length ? `it has: ${names.join(', ')}` : 'publish one first');
    return name;
  }
  if (names.length === 1) return names[0]!;
  if (names.length === 0) throw new CairnError(`${repoDir} has no releases`, 'publish one first (cairn publish BUILD --repo DIR)');
  throw new CairnError(`${repoDir} holds several images (${names.join(', ')})`, 'say which with --name');
}

export async function readChannel(repoDir: string, name: string, channel: string): Promise<ChannelDoc | null> {
  const path = join(repoDir, channelPath(name, channel));
  const text = await readFile(path, 'utf8').catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return null;
    throw err;
  });
  return text === null ? null : readSignedJsonUnverified(text, path, validateChannel, CHANNEL_KIND);
}

export async function listChannels(repoDir: string, name: string): Promise<ChannelDoc[]> {
  const files = await readdir(join(repoDir, channelsDir(name))).catch(() => [] as string[]);
  const docs: ChannelDoc[] = [];
  for (const f of files.filter((f) => f.endsWith('.json.asc')).sort()) {
    const doc = await readChannel(repoDir, name, f.slice(0, -'.json.asc'.length));
    if (doc) docs.push(doc);
  }
  return docs;
}

/** The reference a channel holds to a published release: its record's size and SHA-256. */
export async function releaseRef(repoDir: string, name: string, version: string): Promise<ReleaseRef> {
  const path = join(repoDir, releaseRecordPath(name, checkVersion(version)));
  const data = await readFile(path).catch(() => {
    throw new CairnError(`${name} ${version} is not published in ${repoDir}`, 'publish it first (cairn publish BUILD --repo DIR)');
  });
  return { version, size: data.length, sha256: createHash('sha256').update(data).digest('hex') };
}

function emptyChannel(name: string, channel: string): ChannelDoc {
  return {
    format: FORMATS.channel,
    name,
    channel,
    serial: 0,
    issued: '',
    expires: '',
    release: null,
    pinned: false,
    rollout: null,
    barriers: [],
    revoked: [],
    history: [],
  };
}

async function update(w: ChannelWrite, channel: string, change: (doc: ChannelDoc) => void | Promise<void>): Promise<ChannelDoc> {
  const doc = (await readChannel(w.repoDir, w.name, checkChannelName(channel))) ?? emptyChannel(w.name, channel);
  await change(doc);
  const now = w.now ?? new Date();
  doc.serial += 1;
  doc.issued = now.toISOString();
  doc.expires = new Date(now.getTime() + (w.expiresSeconds ?? DEFAULT_EXPIRY_SECONDS) * 1000).toISOString();
  await mkdir(join(w.repoDir, channelsDir(w.name)), { recursive: true });
  await writeFileAtomic(join(w.repoDir, channelPath(w.name, channel)), await signJson(doc, [w.key], now));
  return doc;
}

function offer(doc: ChannelDoc, ref: ReleaseRef): void {
  doc.release = ref;
  if (doc.history.at(-1) !== ref.version) doc.history.push(ref.version);
}

export interface PromoteOptions extends ChannelWrite {
  version: string;
  channel: string;
  /** Phased rollout; absent: every host at once. */
  rollout?: Rollout;
  /** Every older host must install this release before any later one. */
  barrier?: boolean;
}

export async function promote(o: PromoteOptions): Promise<ChannelDoc> {
  const ref = await releaseRef(o.repoDir, o.name, o.version);
  return update(o, o.channel, (doc) => {
    if (doc.revoked.includes(o.version)) throw new CairnError(`${o.version} is revoked and cannot be offered again`, 'publish a new version');
    if (doc.pinned)
      throw new CairnError(`channel ${o.channel} is pinned to ${doc.release?.version}`, `unpin it first (cairn channel pin ${o.channel} --unpin)`);
    if (doc.release && compareVersions(o.version, doc.release.version) < 0) {
      throw new CairnError(
        `${o.version} is older than ${doc.release.version}, which ${o.channel} offers`,
        `to send hosts back, pin the channel: cairn channel pin ${o.channel} ${o.version}`,
      );
    }
    offer(doc, ref);
    doc.rollout = o.rollout ?? null;
    if (o.barrier && !doc.barriers.some((b) => b.version === ref.version)) doc.barriers.push(ref);
  });
}

export interface PinOptions extends ChannelWrite {
  channel: string;
  /** The version to hold the channel at; absent with `unpin`. */
  version?: string;
  unpin?: boolean;
}

export async function pin(o: PinOptions): Promise<ChannelDoc> {
  const ref = o.unpin ? null : await releaseRef(o.repoDir, o.name, o.version ?? '');
  return update(o, o.channel, (doc) => {
    if (!ref) {
      if (!doc.pinned) throw new CairnError(`channel ${o.channel} is not pinned`);
      doc.pinned = false;
      return;
    }
    if (doc.revoked.includes(ref.version)) throw new CairnError(`${ref.version} is revoked`);
    offer(doc, ref);
    doc.pinned = true;
    doc.rollout = null;
  });
}

export interface RevokeOptions extends ChannelWrite {
  version: string;
}

/** Revokes a version in every channel of the image; a channel offering it falls back to the last good version it offered. */
export async function revoke(o: RevokeOptions): Promise<ChannelDoc[]> {
  const channels = await listChannels(o.repoDir, o.name);
  const changed: ChannelDoc[] = [];
  for (const current of channels) {
    changed.push(
      await update(o, current.channel, async (doc) => {
        if (!doc.revoked.includes(o.version)) doc.revoked.push(o.version);
        doc.barriers = doc.barriers.filter((b) => b.version !== o.version);
        if (doc.release?.version !== o.version) return;
        const fallback = [...doc.history].reverse().find((v) => !doc.revoked.includes(v));
        doc.release = fallback ? await releaseRef(o.repoDir, o.name, fallback) : null;
        doc.rollout = null;
      }),
    );
  }
  if (channels.length === 0) throw new CairnError(`${o.name} has no channels to revoke ${o.version} in`);
  return changed;
}

export interface ChannelStatus {
  channel: string;
  serial: number;
  release: string | null;
  pinned: boolean;
  rolloutPercent: number;
  rollout: Rollout | null;
  barriers: string[];
  revoked: string[];
  issued: string;
  expires: string;
  expired: boolean;
}

export function channelStatus(doc: ChannelDoc, now: Date): ChannelStatus {
  return {
    channel: doc.channel,
    serial: doc.serial,
    release: doc.release?.version ?? null,
    pinned: doc.pinned,
    rolloutPercent: rolloutPercent(doc.rollout, now),
    rollout: doc.rollout,
    barriers: doc.barriers.map((b) => b.version),
    revoked: doc.revoked,
    issued: doc.issued,
    expires: doc.expires,
    expired: Date.parse(doc.expires) <= now.getTime(),
  };
}

/** Signs the channel again unchanged but for serial and expiry (run before it expires). */
export function renew(w: ChannelWrite, channel: string): Promise<ChannelDoc> {
  return update(w, channel, async () => {
    if (!(await readChannel(w.repoDir, w.name, channel))) throw new CairnError(`channel ${channel} does not exist`);
  });
}

/**
 * The rollout of a promotion as an operator asks for it: a share of hosts at a start time rising
 * to all of them over a duration; none (every host at once) when nothing phased is asked for.
 */
export function phasedRollout(percent: number, start: Date | undefined, durationSeconds: number | undefined): Rollout | undefined {
  if (!(percent >= 0 && percent <= 100)) throw new CairnError(`--rollout ${percent}: a percentage must be 0..100`);
  if (percent === 100 && durationSeconds === undefined && start === undefined) return undefined;
  const rollout = { start: (start ?? new Date()).toISOString(), startPercent: percent, durationSeconds: durationSeconds ?? 0 };
  if (rollout.startPercent < 100 && rollout.durationSeconds === 0) {
    throw new CairnError(`--rollout ${percent} without --duration would never reach every host`, 'add --duration, e.g. --duration 2d');
  }
  return rollout;
}

export function formatChannelStatus(s: ChannelStatus): string {
  const rollout = s.rolloutPercent < 100 ? ` rolling out: ${s.rolloutPercent.toFixed(1)}% of hosts` : '';
  return (
    `${s.channel}: ${s.release ?? '(nothing)'}${s.pinned ? ' (pinned)' : ''}${rollout}; serial ${s.serial}, ${s.expired ? 'EXPIRED' : 'expires'} ${s.expires}` +
    `${s.barriers.length ? `; barriers ${s.barriers.join(', ')}` : ''}${s.revoked.length ? `; revoked ${s.revoked.join(', ')}` : ''}\n`
  );
}
