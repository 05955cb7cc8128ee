import assert from 'node:assert/strict';
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { runHealthChecks, type HealthCheck } from '../../src/agent/health.js';

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'cairn-agent-health-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

const quick = { retryDelayMs: 10 };
const command = (argv: string[], timeout = 10): HealthCheck => ({ kind: 'command', command: argv, timeout });

test('commands pass on exit 0 and fail otherwise, keeping the end of their output', async () => {
  const report = await runHealthChecks(
    {
      timeout: 5,
      checks: [
        command(['/bin/true']),
        command(['/bin/sh', '-c', 'echo starting; echo "database unreachable" >&2; exit 3'], 0.3),
        command(['/bin/sh', '-c', `head -c 10000 /dev/zero | tr '\\0' x; echo; echo last line`]),
      ],
    },
    quick,
  );
  assert.equal(report.ok, false);
  const [ok, bad, long] = report.checks;
  assert.deepEqual([ok!.status, ok!.name, ok!.kind], ['passed', 'command /bin/true', 'command']);
  assert.equal(bad!.status, 'failed');
  assert.equal(bad!.output, 'starting\ndatabase unreachable');
  assert.ok(bad!.attempts > 1, 'a failing check is retried until its timeout');
  assert.equal(long!.status, 'passed');
  assert.equal(Buffer.byteLength(long!.output), 4096 - 1, 'the last 4 KiB, trimmed');
  assert.match(long!.output, /x\nlast line$/);
});

test('a check that passes on its third attempt passes, with the attempts counted', async () => {
  const counter = join(dir, 'tries');
  await writeFile(counter, '0');
  const script = `n=$(cat ${counter}); n=$((n+1)); echo $n > ${counter}; echo "try $n"; [ $n -ge 3 ]`;
  const report = await runHealthChecks({ timeout: 30, checks: [command(['/bin/sh', '-c', script])] }, quick);
  assert.equal(report.ok, true);
  assert.deepEqual([report.checks[0]!.attempts, report.checks[0]!.output], [3, 'try 3']);
  assert.equal(await readFile(counter, 'utf8'), '3\n');
});

test('a command still running at its deadline is timed out, and everything it started is killed', async () => {
  const report = await runHealthChecks({ timeout: 30, checks: [command(['/bin/sh', '-c', 'sleep 60 & echo $!; wait'], 0.5)] }, quick);
  const [check] = report.checks;
  assert.equal(check!.status, 'timed-out');
  assert.equal(check!.attempts, 1);
  const child = Number(check!.output);
  assert.ok(child > 0, `the script printed its child's pid: ${check!.output}`);
  assert.ok(await isDead(child), 'the sleep started by the check is gone');
});

/** Gone, or a zombie waiting for whoever reaps orphans here: either way no longer running. */
async function isDead(pid: number): Promise<boolean> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => undefined);
  return stat === undefined || stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z');
}

test('the overall timeout cuts every check short', async () => {
  const report = await runHealthChecks({ timeout: 0.3, checks: [command(['/bin/sleep', '60'], 600), command(['/bin/false'], 600)] }, quick);
  assert.deepEqual(
    report.checks.map((c) => c.status),
    ['timed-out', 'failed'],
  );
  assert.ok(report.checks.every((c) => c.seconds < 600));
});

test('a program that does not exist fails at once instead of being retried', async () => {
  const report = await runHealthChecks({ timeout: 30, checks: [command(['/nonexistent/cairn-health-probe'], 30)] }, quick);
  assert.deepEqual([report.checks[0]!.status, report.checks[0]!.attempts], ['failed', 1]);
  assert.match(report.checks[0]!.output, /^cannot run \/nonexistent\/cairn-health-probe: spawn .* ENOENT/);
});

test('units are asked about with systemctl is-active until they are active', async () => {
  // A systemctl that reports what a unit's state file says, and moves "activating" on to "active".
  const states = join(dir, 'units');
  const systemctl = join(dir, 'systemctl');
  await writeFile(
    systemctl,
    `#!/bin/sh
[ "$1" = is-active ] || exit 64
state=$(cat "${states}.$2" 2>/dev/null || echo inactive)
echo "$state"
[ "$state" = activating ] && echo active > "${states}.$2"
[ "$state" = active ]
`,
  );
  await chmod(systemctl, 0o755);
  await writeFile(`${states}.web.service`, 'activating\n');
  await writeFile(`${states}.db.service`, 'failed\n');
  const unit = (name: string): HealthCheck => ({ kind: 'unit', name, timeout: 0.5 });
  const report = await runHealthChecks({ timeout: 30, checks: [unit('web.service'), unit('db.service')] }, { ...quick, systemctl });
  assert.deepEqual(
    report.checks.map((c) => [c.name, c.status, c.output]),
    [
      ['unit web.service', 'passed', 'active'],
      ['unit db.service', 'failed', 'failed'],
    ],
  );
  assert.equal(report.checks[0]!.attempts, 2);
});

test('containers are asked about through the runtime; without one they fail', async () => {
  const states: Record<string, string> = { web: 'running', worker: 'exited' };
  const asked: string[] = [];
  const containerState = async (name: string): Promise<string | undefined> => {
    asked.push(name);
    return states[name];
  };
  const container = (name: string): HealthCheck => ({ kind: 'container', name, timeout: 0.2 });
  const checks = [container('web'), container('worker'), container('ghost')];
  const report = await runHealthChecks({ timeout: 30, checks }, { ...quick, containerState });
  assert.deepEqual(
    report.checks.map((c) => [c.status, c.output]),
    [
      ['passed', 'state: running'],
      ['failed', 'state: exited'],
      ['failed', 'no such container'],
    ],
  );
  assert.ok(asked.filter((n) => n === 'worker').length > 1, 'a stopped container is asked about again');
  const noRuntime = await runHealthChecks({ timeout: 30, checks: [container('web')] }, quick);
  assert.deepEqual(
    noRuntime.checks.map((c) => [c.status, c.output, c.attempts]),
    [['failed', 'no container runtime to ask', 1]],
  );
});

test('no checks is a healthy boot', async () => {
  assert.deepEqual(await runHealthChecks({ timeout: 1, checks: [] }), { ok: true, checks: [] });
});

test('a timeout beyond what one Node timer takes (30 days) waits, rather than timing out at once', async () => {
  const days30 = 30 * 86400;
  const report = await runHealthChecks({ timeout: days30, checks: [command(['/bin/sh', '-c', 'sleep 0.3'], days30)] }, quick);
  assert.deepEqual(
    report.checks.map((c) => c.status),
    ['passed'],
  );
});
