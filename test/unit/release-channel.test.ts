// Channel semantics a host applies: phased rollout shares, wariness, barriers, revocation,
// pins and bad versions; and the duration/time syntax of the channel commands.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseDuration, parseTime } from '../../src/document/units.js';
import { CairnError } from '../../src/errors.js';
import { decideUpdate, rolloutPercent, wariness, type ChannelDoc, type ReleaseRef } from '../../src/release/channel.js';

const ref = (version: string): ReleaseRef => ({ version, size: 100, sha256: version.replace(/\D/g, '').padEnd(64, 'a').slice(0, 64) });

function channel(over: Partial<ChannelDoc> = {}): ChannelDoc {
  return {
    format: 'cairn-channel/1',
    name: 'demo',
    channel: 'stable',
    serial: 3,
    issued: '2026-01-01T00:00:00Z',
    expires: '2027-01-01T00:00:00Z',
    release: ref('1.2.0'),
    pinned: false,
    rollout: null,
    barriers: [],
    revoked: [],
    history: ['1.0.0', '1.2.0'],
    ...over,
  };
}

const host = (version: string, w = 0.5, bad: string[] = []) => ({ version, wariness: w, bad });
const now = new Date('2026-06-01T12:00:00Z');

test('the rollout share rises linearly from the start percentage to 100 over the duration', () => {
  const r = { start: '2026-06-01T00:00:00Z', startPercent: 10, durationSeconds: 24 * 3600 };
  assert.equal(rolloutPercent(r, new Date('2026-05-31T23:59:59Z')), 0);
  assert.equal(rolloutPercent(r, new Date('2026-06-01T00:00:00Z')), 10);
  assert.equal(rolloutPercent(r, new Date('2026-06-01T12:00:00Z')), 55);
  assert.equal(rolloutPercent(r, new Date('2026-06-03T00:00:00Z')), 100);
  assert.equal(rolloutPercent(null, now), 100);
});

test('wariness is stable per machine id, spread over [0,1), and a growing share only adds hosts', () => {
  assert.equal(wariness('0123456789abcdef0123456789abcdef'), wariness('0123456789abcdef0123456789abcdef\n'));
  const ws = Array.from({ length: 2000 }, (_, i) => wariness(`machine-${i}`));
  assert.ok(ws.every((w) => w >= 0 && w < 1));
  const share = (p: number) => ws.filter((w) => w * 100 < p).length / ws.length;
  assert.ok(Math.abs(share(10) - 0.1) < 0.03, `about 10% below 10: ${share(10)}`);
  assert.ok(Math.abs(share(50) - 0.5) < 0.05, `about half below 50: ${share(50)}`);
  const at20 = new Set(ws.map((w, i) => (w * 100 < 20 ? i : -1)).filter((i) => i >= 0));
  const at40 = new Set(ws.map((w, i) => (w * 100 < 40 ? i : -1)).filter((i) => i >= 0));
  assert.ok(
    [...at20].every((i) => at40.has(i)),
    'every host offered at 20% is still offered at 40%',
  );
});

test('a host updates to a newer release, not to an older or the same one', () => {
  assert.deepEqual(decideUpdate(channel(), host('1.0.0'), now), { update: true, target: ref('1.2.0'), reason: 'newer release 1.2.0' });
  assert.equal(decideUpdate(channel(), host('1.2.0'), now).update, false);
  const older = decideUpdate(channel(), host('1.3.0'), now);
  assert.equal(older.update, false);
  assert.match(older.reason, /older than 1\.3\.0/);
  assert.equal(decideUpdate(channel({ release: null }), host('1.0.0'), now).update, false);
});

test('a pinned channel takes hosts back to an older version', () => {
  const d = decideUpdate(channel({ pinned: true, release: ref('1.0.0') }), host('1.2.0'), now);
  assert.deepEqual(d, { update: true, target: ref('1.0.0'), reason: 'channel pinned to 1.0.0' });
});

test('phased rollout: hosts below the current share go, the others wait', () => {
  const rollout = { start: '2026-06-01T00:00:00Z', startPercent: 10, durationSeconds: 24 * 3600 }; // 55% at `now`
  assert.equal(decideUpdate(channel({ rollout }), host('1.0.0', 0.2), now).update, true);
  const wait = decideUpdate(channel({ rollout }), host('1.0.0', 0.9), now);
  assert.equal(wait.update, false);
  assert.match(wait.reason, /rolling out to 55\.0% of hosts; this host's wariness is 90\.0%/);
});

test('barriers: an older host goes to the barrier first, a host past it goes straight on', () => {
  const c = channel({ release: ref('3.0.0'), barriers: [ref('2.0.0'), ref('1.5.0')] });
  assert.deepEqual(decideUpdate(c, host('1.0.0'), now), { update: true, target: ref('1.5.0'), reason: 'barrier 1.5.0 on the way to 3.0.0' });
  assert.deepEqual(decideUpdate(c, host('1.5.0'), now), { update: true, target: ref('2.0.0'), reason: 'barrier 2.0.0 on the way to 3.0.0' });
  assert.deepEqual(decideUpdate(c, host('2.0.0'), now), { update: true, target: ref('3.0.0'), reason: 'newer release 3.0.0' });
});

test('revoked versions and versions that failed on this host are never installed', () => {
  const revoked = decideUpdate(channel({ revoked: ['1.2.0'] }), host('1.0.0'), now);
  assert.deepEqual(revoked, { update: false, reason: '1.2.0 is revoked' });
  const bad = decideUpdate(channel(), host('1.0.0', 0, ['1.2.0']), now);
  assert.deepEqual(bad, { update: false, reason: '1.2.0 failed on this host before' });
});

test('durations and times for the channel commands', () => {
  assert.equal(parseDuration('90', 'x'), 90);
  assert.equal(parseDuration('30m', 'x'), 1800);
  assert.equal(parseDuration('2d', 'x'), 172800);
  assert.throws(
    () => parseDuration('2 days', '--duration'),
    (e: unknown) => e instanceof CairnError && /--duration: "2 days" is not a duration/.test(e.message),
  );
  assert.equal(parseTime('2026-12-01T09:00:00Z', 'x').toISOString(), '2026-12-01T09:00:00.000Z');
  assert.throws(() => parseTime('tomorrow', '--start'), /--start: "tomorrow" is not a time/);
});
