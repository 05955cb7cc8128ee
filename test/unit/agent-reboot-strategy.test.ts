import assert from 'node:assert/strict';
import { test } from 'node:test';
import { decideReboot, wallClock, windowAt, zonedInstant, type MaintenanceWindow, type RebootStrategy } from '../../src/agent/reboot-strategy.js';

const at = (iso: string): Date => new Date(iso);
const iso = (d: Date): string => d.toISOString();
const window = (w: Partial<MaintenanceWindow>): MaintenanceWindow => ({ days: ['sun'], start: '02:00', end: '04:00', timeZone: 'UTC', ...w });

function times(w: MaintenanceWindow, now: string): [boolean, string, string] {
  const t = windowAt(w, at(now));
  return [t.open, iso(t.start), iso(t.end)];
}

test('a UTC window is open inside, and otherwise the next one is given', () => {
  const w = window({ days: ['mon', 'thu'], start: '09:15', end: '10:00' });
  // 2024-06-03 is a Monday.
  assert.deepEqual(times(w, '2024-06-03T09:30:00Z'), [true, '2024-06-03T09:15:00.000Z', '2024-06-03T10:00:00.000Z']);
  assert.deepEqual(times(w, '2024-06-03T09:15:00Z'), [true, '2024-06-03T09:15:00.000Z', '2024-06-03T10:00:00.000Z'], 'the start is inside');
  assert.deepEqual(times(w, '2024-06-03T10:00:00Z'), [false, '2024-06-06T09:15:00.000Z', '2024-06-06T10:00:00.000Z'], 'the end is not');
  assert.deepEqual(times(w, '2024-06-07T12:00:00Z'), [false, '2024-06-10T09:15:00.000Z', '2024-06-10T10:00:00.000Z'], 'across the weekend');
});

test('a window past midnight belongs to the day it opens and ends the next day', () => {
  const w = window({ days: ['fri'], start: '22:00', end: '02:00' });
  // 2024-06-07 is a Friday.
  assert.deepEqual(times(w, '2024-06-08T01:00:00Z'), [true, '2024-06-07T22:00:00.000Z', '2024-06-08T02:00:00.000Z'], "Saturday 01:00 is in Friday's window");
  assert.deepEqual(times(w, '2024-06-08T03:00:00Z'), [false, '2024-06-14T22:00:00.000Z', '2024-06-15T02:00:00.000Z']);
  assert.deepEqual(times(w, '2024-06-07T21:59:59Z'), [false, '2024-06-07T22:00:00.000Z', '2024-06-08T02:00:00.000Z']);
});

test('local times follow the zone: Berlin is UTC+1 in winter and UTC+2 in summer', () => {
  const w = window({ days: ['wed'], start: '03:00', end: '05:00', timeZone: 'Europe/Berlin' });
  assert.deepEqual(times(w, '2024-01-01T00:00:00Z'), [false, '2024-01-03T02:00:00.000Z', '2024-01-03T04:00:00.000Z']);
  assert.deepEqual(times(w, '2024-07-01T00:00:00Z'), [false, '2024-07-03T01:00:00.000Z', '2024-07-03T03:00:00.000Z']);
  // Tuesday 23:30 UTC is already Wednesday 01:30 in Berlin: the day is the local one.
  const late = window({ days: ['wed'], start: '01:00', end: '02:00', timeZone: 'Europe/Berlin' });
  assert.deepEqual(times(late, '2024-07-02T23:30:00Z'), [true, '2024-07-02T23:00:00.000Z', '2024-07-03T00:00:00.000Z']);
});

test('spring forward: a start inside the skipped hour means the moment after the jump', () => {
  // Berlin, Sunday 2024-03-31: 02:00 CET becomes 03:00 CEST (01:00 UTC).
  const w = window({ start: '02:30', end: '04:00', timeZone: 'Europe/Berlin' });
  assert.deepEqual(times(w, '2024-03-30T12:00:00Z'), [false, '2024-03-31T01:30:00.000Z', '2024-03-31T02:00:00.000Z']);
  // The same window a week before and after, at its normal offsets.
  assert.deepEqual(times(w, '2024-03-23T12:00:00Z'), [false, '2024-03-24T01:30:00.000Z', '2024-03-24T03:00:00.000Z']);
  assert.deepEqual(times(w, '2024-03-31T03:00:00Z'), [false, '2024-04-07T00:30:00.000Z', '2024-04-07T02:00:00.000Z']);
});

test('spring forward: a window the jump leaves empty does not open that day', () => {
  // 02:30 to 03:00 CET does not exist on 2024-03-31: the start maps to 03:30 CEST, after the end.
  const w = window({ start: '02:30', end: '03:00', timeZone: 'Europe/Berlin' });
  assert.deepEqual(times(w, '2024-03-30T12:00:00Z'), [false, '2024-04-07T00:30:00.000Z', '2024-04-07T01:00:00.000Z']);
});

test('fall back: a time that occurs twice means the first time, so the window grows by the repeated hour', () => {
  // Berlin, Sunday 2024-10-27: 03:00 CEST becomes 02:00 CET (01:00 UTC); 02:30 happens at 00:30 and 01:30 UTC.
  const w = window({ start: '02:30', end: '03:30', timeZone: 'Europe/Berlin' });
  assert.deepEqual(times(w, '2024-10-26T12:00:00Z'), [false, '2024-10-27T00:30:00.000Z', '2024-10-27T02:30:00.000Z']);
  assert.equal(windowAt(w, at('2024-10-27T01:45:00Z')).open, true, 'the second 02:45 is still inside');
  // New York, Sunday 2024-11-03: 01:30 happens at 05:30 (EDT) and 06:30 (EST) UTC.
  const ny = window({ start: '01:30', end: '01:45', timeZone: 'America/New_York' });
  assert.deepEqual(times(ny, '2024-11-02T12:00:00Z'), [false, '2024-11-03T05:30:00.000Z', '2024-11-03T05:45:00.000Z']);
});

test('half-hour daylight saving (Lord Howe Island) and a zone without it', () => {
  // 2024-10-06: 02:00 (UTC+10:30) becomes 02:30 (UTC+11); 02:10 does not exist and means 02:40.
  const w = window({ start: '02:10', end: '03:00', timeZone: 'Australia/Lord_Howe' });
  assert.deepEqual(times(w, '2024-10-05T00:00:00Z'), [false, '2024-10-05T15:40:00.000Z', '2024-10-05T16:00:00.000Z']);
  const kolkata = window({ days: ['mon'], start: '23:30', end: '00:30', timeZone: 'Asia/Kolkata' });
  assert.deepEqual(times(kolkata, '2024-06-03T00:00:00Z'), [false, '2024-06-03T18:00:00.000Z', '2024-06-03T19:00:00.000Z']);
});

test('every wall-clock time of a year maps back to itself (or, in a gap, to just after it)', () => {
  for (const zone of ['Europe/Berlin', 'America/New_York', 'Australia/Lord_Howe', 'America/Santiago', 'UTC']) {
    for (let t = Date.UTC(2024, 0, 1); t < Date.UTC(2025, 0, 1); t += 37 * 60_000) {
      const wall = wallClock(t, zone);
      const back = zonedInstant(wall, zone);
      assert.equal(wallClock(back, zone), wall, `${zone} ${new Date(t).toISOString()}`);
      assert.ok(back <= t, `${zone}: the first of two occurrences`);
    }
  }
});

test('decisions per strategy, and the operator overrides every one', () => {
  const now = at('2024-06-05T12:00:00Z');
  const strategies: RebootStrategy[] = [
    { type: 'immediate' },
    { type: 'download-only' },
    { type: 'maintenance-window', ...window({ days: ['wed'], start: '11:00', end: '13:00' }) },
    { type: 'maintenance-window', ...window({ days: ['thu'], start: '11:00', end: '13:00' }) },
    { type: 'fleetlock', url: 'http://lock.example', group: 'workers' },
  ];
  assert.deepEqual(
    strategies.map((s) => decideReboot(s, now).action),
    ['reboot', 'wait-for-operator', 'reboot', 'wait-until', 'take-lock'],
  );
  const waiting = decideReboot(strategies[3]!, now);
  assert.equal(waiting.action === 'wait-until' && iso(waiting.at), '2024-06-06T11:00:00.000Z');
  const lock = decideReboot(strategies[4]!, now);
  assert.deepEqual(lock.action === 'take-lock' && [lock.url, lock.group], ['http://lock.example', 'workers']);
  assert.deepEqual(
    strategies.map((s) => decideReboot(s, now, true).action),
    Array(5).fill('reboot'),
  );
});
