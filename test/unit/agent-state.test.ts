import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, test } from 'node:test';
import { freshState, isBad, loadState, markBad, saveState, STATE_FILE, type AgentState } from '../../src/agent/state.js';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'cairn-agent-state-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const busy = (): AgentState => ({
  ...freshState(),
  transaction: {
    step: 'write-slot',
    version: '2.0.0',
    startedAt: '2024-06-01T10:00:00.000Z',
    updatedAt: '2024-06-01T10:05:00Z',
    data: { slot: 'B', chunksDone: 1234, plan: { reuse: [1, 2, 3] } },
  },
  seen: { stable: { version: '2.0.0', at: '2024-06-01T09:59:00.000Z' } },
  lastError: { message: 'connection reset', step: 'download', at: '2024-06-01T10:01:00.000Z' },
});

test('no state file is a fresh start; a saved state loads back as it was', async () => {
  assert.deepEqual(await loadState(dir), { state: freshState() });
  await saveState(join(dir, 'sub'), busy());
  assert.deepEqual(await loadState(join(dir, 'sub')), { state: busy() });
  assert.equal((await stat(join(dir, 'sub', STATE_FILE))).mode & 0o777, 0o600);
  assert.equal((await stat(join(dir, 'sub'))).mode & 0o777, 0o700);
});

test('a half-written state file is kept aside and the agent starts clean', async () => {
  await saveState(dir, busy());
  const whole = await readFile(join(dir, STATE_FILE));
  const half = whole.subarray(0, Math.floor(whole.length / 2));
  await writeFile(join(dir, STATE_FILE), half);
  const loaded = await loadState(dir);
  assert.deepEqual(loaded.state, freshState());
  assert.ok(loaded.recovered);
  assert.match(loaded.recovered.reason, /^it is not JSON/);
  assert.deepEqual(await readFile(loaded.recovered.keptAs), half, 'the bad file is kept byte for byte');
  assert.deepEqual((await readdir(dir)).sort(), [loaded.recovered.keptAs.slice(dir.length + 1)]);
  // The next save and load work as if nothing happened.
  await saveState(dir, markBad(loaded.state, '2.0.0', 'ran out of boot tries', new Date('2024-06-02T00:00:00Z')));
  assert.deepEqual((await loadState(dir)).state.bad, [{ version: '2.0.0', reason: 'ran out of boot tries', at: '2024-06-02T00:00:00.000Z' }]);
});

test('JSON of the wrong shape, or far too large, is refused the same way', async () => {
  const wrongShape = { ...busy(), transaction: { step: 42 } };
  await writeFile(join(dir, STATE_FILE), JSON.stringify(wrongShape));
  const shape = await loadState(dir);
  assert.deepEqual(shape.state, freshState());
  assert.match(shape.recovered!.reason, /does not match the state format: \/transaction/);
  await writeFile(join(dir, STATE_FILE), `{"format":1,"pad":"${'x'.repeat(2 * 1024 * 1024)}"}`);
  const big = await loadState(dir);
  assert.match(big.recovered!.reason, /^it is 2097[0-9]+ bytes/);
  await writeFile(join(dir, STATE_FILE), JSON.stringify({ ...freshState(), bad: [{ version: '../../etc', reason: 'x', at: 'yesterday' }] }));
  assert.ok((await loadState(dir)).recovered, 'versions and times are checked, not just types');
});

test('temp files of a write cut before its rename are removed, the last complete state stays', async () => {
  await saveState(dir, busy());
  await writeFile(join(dir, `.${STATE_FILE}.0a1b2c3d4e5f.tmp`), '{"format":1,"transac');
  assert.deepEqual(await loadState(dir), { state: busy() });
  assert.deepEqual(await readdir(dir), [STATE_FILE]);
});

test('an invalid state is never written', async () => {
  await saveState(dir, busy());
  const before = await readFile(join(dir, STATE_FILE));
  const broken = { ...busy(), transaction: { ...busy().transaction!, step: 'Not A Step!' } };
  await assert.rejects(saveState(dir, broken), /refusing to save an invalid agent state: \/transaction\/step/);
  assert.deepEqual(await readFile(join(dir, STATE_FILE)), before);
});

test('a release marked bad stays bad, with its first reason', () => {
  const once = markBad(freshState(), '3.0.0', 'health check web failed', new Date('2024-06-03T00:00:00Z'));
  const twice = markBad(once, '3.0.0', 'another reason');
  assert.equal(twice, once);
  assert.equal(isBad(twice, '3.0.0'), true);
  assert.equal(isBad(twice, '3.0.1'), false);
});
