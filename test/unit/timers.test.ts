// Timers for delays past Node's 24.8-day limit wait them out in steps; here with 10 ms steps, so
// the stepping shows in milliseconds.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, MAX_TIMER_MS, sleepFor, timeoutSignal } from '../../src/timers.js';

test('a delay longer than one step fires once, when it is due, not at the first step', async () => {
  let fired = 0;
  const started = Date.now();
  let at = 0;
  after(
    60,
    () => {
      fired++;
      at = Date.now() - started;
    },
    10,
  );
  await sleep(30);
  assert.equal(fired, 0);
  await sleep(80);
  assert.equal(fired, 1);
  assert.ok(at >= 59, `fired after ${at} ms`);
});

test('a cleared timer never fires; sleepFor resolves after its delay', async () => {
  let fired = false;
  after(20, () => (fired = true), 5).clear();
  const started = Date.now();
  await sleepFor(40, 10);
  assert.ok(Date.now() - started >= 39);
  assert.equal(fired, false);
});

test('a long timeout signal is not aborted at once (AbortSignal.timeout overflows past 24.8 days)', async () => {
  const signal = timeoutSignal(MAX_TIMER_MS + 86_400_000);
  await sleep(20);
  assert.equal(signal.aborted, false);
  const short = timeoutSignal(10);
  await sleep(40);
  assert.equal(short.aborted, true);
});
