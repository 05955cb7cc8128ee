// The FleetLock client against a lock server whose semaphore lives in a real etcd: agents
// competing for fewer slots than there are agents, restarts, releases, refusals.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { after, before, test } from 'node:test';
import { appSpecificId, CAIRN_APP_ID, FleetLockClient, type FleetLockOptions } from '../../src/agent/fleetlock.js';
import { CairnError } from '../../src/errors.js';
import { ETCD, startEtcd, type Etcd } from '../fixtures/etcd.js';
import { startFleetLockServer, type FleetLockServer } from '../fixtures/fleetlock-server.js';

const needsEtcd = { skip: existsSync(ETCD) ? false : `${ETCD} is missing (apt-get install etcd-server)` };

let etcd: Etcd;
let server: FleetLockServer;

before(async () => {
  if (needsEtcd.skip) return;
  etcd = await startEtcd();
  server = await startFleetLockServer(etcd, { workers: 2, solo: 1, fleet: 2 });
});
after(async () => {
  await server?.close();
  await etcd?.stop();
});

const fast: Partial<FleetLockOptions> = { initialDelayMs: 10, maxDelayMs: 80 };
const client = (group: string, id: string, extra: Partial<FleetLockOptions> = {}): FleetLockClient =>
  new FleetLockClient({ url: server.url, group, id, ...fast, ...extra });

test('of five agents asking at once for two slots, exactly two get one', needsEtcd, async () => {
  const ids = ['node-1', 'node-2', 'node-3', 'node-4', 'node-5'];
  const results = await Promise.all(ids.map((id) => client('workers', id).tryPreReboot()));
  const granted = ids.filter((_, i) => results[i]!.ok);
  assert.equal(granted.length, 2);
  assert.deepEqual(await server.holders('workers'), [...granted].sort());
  for (const r of results.filter((r) => !r.ok)) {
    assert.deepEqual(r, { ok: false, status: 409, kind: 'failed_lock', value: 'all 2 semaphore slots currently locked' });
  }
  // A restarted agent asks again with the same id: it still holds its slot and takes no second one.
  assert.deepEqual(await client('workers', granted[0]!).tryPreReboot(), { ok: true });
  assert.deepEqual(await server.holders('workers'), [...granted].sort());
  // Releasing twice is fine, and a non-holder's release changes nothing.
  const loser = ids.find((id) => !granted.includes(id))!;
  assert.deepEqual(await client('workers', loser).trySteadyState(), { ok: true });
  assert.deepEqual(await server.holders('workers'), [...granted].sort());
  for (const id of granted) {
    assert.deepEqual(await client('workers', id).trySteadyState(), { ok: true });
    assert.deepEqual(await client('workers', id).trySteadyState(), { ok: true });
  }
  assert.deepEqual(await server.holders('workers'), []);
});

test('five agents with retries all reboot in turn, never more than two at once', needsEtcd, async () => {
  const ids = ['a', 'b', 'c', 'd', 'e'].map((s) => appSpecificId(s.repeat(32)));
  let holding = 0;
  let most = 0;
  const rebooted: string[] = [];
  const refused = new Set<string>();
  let allRefused!: () => void;
  // The first holders keep their slots until the other three have been turned away once.
  const othersWaited = new Promise<void>((resolve) => {
    allRefused = resolve;
  });
  await Promise.all(
    ids.map(async (id) => {
      const agent = client('fleet', id, {
        onRetry: () => {
          refused.add(id);
          if (refused.size === 3) allRefused();
        },
      });
      await agent.preReboot();
      holding++;
      most = Math.max(most, holding);
      const holders = await server.holders('fleet');
      assert.ok(holders.includes(id) && holders.length <= 2, `holders ${holders.join(',')} while ${id} reboots`);
      await othersWaited;
      rebooted.push(id);
      // Counted down before the release, so `holding` never exceeds what the server holds.
      holding--;
      await agent.steadyState();
    }),
  );
  assert.deepEqual([...rebooted].sort(), [...ids].sort());
  assert.ok(most >= 1 && most <= 2, `at most two at once, saw ${most}`);
  assert.equal(refused.size, 3);
  assert.deepEqual(await server.holders('fleet'), []);
});

test('a waiting agent gets the slot once the holder releases it, and can be called off', needsEtcd, async () => {
  const holder = client('solo', 'holder');
  assert.deepEqual(await holder.tryPreReboot(), { ok: true });
  const waiting = client('solo', 'waiter');
  const aborted = new AbortController();
  let refusals = 0;
  const giveUp = client('solo', 'impatient', {
    onRetry: () => {
      if (++refusals === 2) aborted.abort();
    },
  });
  await assert.rejects(giveUp.preReboot(aborted.signal), { name: 'AbortError' });
  const granted = waiting.preReboot();
  assert.deepEqual(await server.holders('solo'), ['holder']);
  await holder.steadyState();
  await granted;
  assert.deepEqual(await server.holders('solo'), ['waiter']);
  await waiting.steadyState();
});

test('the server refuses requests without the protocol header, bad groups and unknown groups', needsEtcd, async () => {
  const { request } = await import('undici');
  const noHeader = await request(`${server.url}/v1/pre-reboot`, { method: 'POST', body: JSON.stringify({ client_params: { id: 'x', group: 'workers' } }) });
  assert.equal(noHeader.statusCode, 400);
  assert.deepEqual(await noHeader.body.json(), { kind: 'missing_header', value: 'fleet-lock-protocol: true is required' });
  const unknown = await client('nobody', 'x').tryPreReboot();
  assert.deepEqual(unknown, { ok: false, status: 400, kind: 'unknown_group', value: 'unknown group "nobody"' });
  assert.throws(() => client('bad group', 'x'), CairnError);
  assert.deepEqual(await server.holders('workers'), []);
});

test('an unreachable server is a CairnError naming it', async () => {
  const closed = new FleetLockClient({ url: 'http://127.0.0.1:9', group: 'default', id: 'x', requestTimeoutMs: 2000 });
  await assert.rejects(closed.tryPreReboot(), (err: unknown) => err instanceof CairnError && err.message.includes('http://127.0.0.1:9/v1/pre-reboot'));
});

const id128 = '/usr/bin/systemd-id128';
test(
  'the FleetLock id is what systemd-id128 derives for the same application id',
  { skip: existsSync(id128) && existsSync('/etc/machine-id') ? false : 'needs systemd-id128 and /etc/machine-id' },
  () => {
    const machineId = readFileSync('/etc/machine-id', 'utf8');
    for (const app of [CAIRN_APP_ID, 'de35106b6ec24688b63afddaa156679b']) {
      const expected = execFileSync(id128, ['machine-id', `--app-specific=${app}`], { encoding: 'utf8' }).trim();
      assert.equal(appSpecificId(machineId, app), expected);
    }
    assert.notEqual(appSpecificId(machineId), machineId.trim(), 'the lock server never sees the raw machine id');
  },
);
