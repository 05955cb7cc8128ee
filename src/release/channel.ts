// Channel metadata (`<name>/channels/<channel>.json.asc`): which release a channel offers, to
// which share of hosts, and what no host may take. Signed, with a serial that only goes up and
// an expiry time, so a host can tell a replayed old channel (rollback) and a server that stopped
// publishing (freeze) from a current one.
import { createHash } from 'node:crypto';
import type { ValidateFunction } from 'ajv';
import { compareVersions } from '../debian/version.js';
import { compileSchema } from '../document/schema.js';
import schema from './channel.schema.json' with { type: 'json' };
import { FORMATS } from '../document/formats.js';

/** Names a release record by the hash of its signed file. */
export interface ReleaseRef {
  version: string;
  size: number;
  sha256: string;
}

export interface Rollout {
  start: string;
  /** Share of hosts offered the release at `start`; it rises linearly to 100 over the duration. */
  startPercent: number;
  durationSeconds: number;
}

export interface ChannelDoc {
  format: typeof FORMATS.channel;
  name: string;
  channel: string;
  serial: number;
  issued: string;
  expires: string;
  release: ReleaseRef | null;
  /** Hosts follow a pinned channel even to an older version (an operator's rollback). */
  pinned: boolean;
  rollout: Rollout | null;
  /** Releases every older host must install before going past them (key rotation, format changes). */
  barriers: ReleaseRef[];
  revoked: string[];
  /** Versions the channel offered, oldest first (a revoke falls back along it). */
  history: string[];
}

export const CHANNEL_KIND = 'cairn channel metadata';
export const validateChannel: ValidateFunction<ChannelDoc> = compileSchema<ChannelDoc>(schema);

/** The share of hosts (0..100) offered the channel's release at `now`. */
export function rolloutPercent(rollout: Rollout | null, now: Date): number {
  if (!rollout) return 100;
  const start = Date.parse(rollout.start);
  const t = now.getTime();
  if (t < start) return 0;
  if (rollout.durationSeconds === 0) return 100;
  const done = Math.min(1, (t - start) / (rollout.durationSeconds * 1000));
  return rollout.startPercent + (100 - rollout.startPercent) * done;
}

/**
 * A host's place in every phased rollout, in [0, 1): a hash of its machine id, so the same hosts
 * go first every time and a rising percentage only ever adds hosts.
 */
export function wariness(machineId: string): number {
  const h = createHash('sha256').update(`cairn-rollout/1:${machineId.trim()}`).digest();
  return h.readUInt32BE(0) / 2 ** 32;
}

export interface HostView {
  version: string;
  /** In [0, 1]: 0 goes first, 1 last. */
  wariness: number;
  /** Versions this host tried and fell back from: never again. */
  bad: string[];
}

export type Decision = { update: true; target: ReleaseRef; reason: string } | { update: false; reason: string };

/** What a host on `host.version` should install from `channel` at `now`. */
export function decideUpdate(channel: ChannelDoc, host: HostView, now: Date): Decision {
  const offered = channel.release;
  if (!offered) return { update: false, reason: `channel ${channel.channel} offers no release` };
  if (offered.version === host.version) return { update: false, reason: `${host.version} is the channel's release` };
  const newer = compareVersions(offered.version, host.version) > 0;
  if (!newer && !channel.pinned) return { update: false, reason: `the channel offers ${offered.version}, older than ${host.version}` };
  // A barrier sits between the host and the offered release: go there first.
  const barrier = channel.barriers
    .filter((b) => compareVersions(b.version, host.version) > 0 && compareVersions(b.version, offered.version) < 0)
    .sort((a, b) => compareVersions(a.version, b.version))[0];
  const target = barrier ?? offered;
  if (channel.revoked.includes(target.version)) return { update: false, reason: `${target.version} is revoked` };
  if (host.bad.includes(target.version)) return { update: false, reason: `${target.version} failed on this host before` };
  const percent = rolloutPercent(channel.rollout, now);
  if (host.wariness * 100 >= percent) {
    return {
      update: false,
      reason: `${target.version} is rolling out to ${percent.toFixed(1)}% of hosts; this host's wariness is ${(host.wariness * 100).toFixed(1)}%`,
    };
  }
  const why = barrier
    ? `barrier ${barrier.version} on the way to ${offered.version}`
    : newer
      ? `newer release ${offered.version}`
      : `channel pinned to ${offered.version}`;
  return { update: true, target, reason: why };
}
