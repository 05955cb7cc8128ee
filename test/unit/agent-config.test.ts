import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { AgentConfigError, loadAgentConfig, validateAgentConfigText } from '../../src/agent/config.js';
import { parseDuration } from '../../src/document/units.js';
import { CairnError } from '../../src/errors.js';
import { cairnRoot } from '../../src/install.js';
import { formatIssue } from '../../src/document/issues.js';

const work = mkdtempSync(join(tmpdir(), 'cairn-agent-config-'));
after(() => rmSync(work, { recursive: true, force: true }));
mkdirSync(join(work, 'keys'));
writeFileSync(join(work, 'keys', 'release.pub.asc'), '-----BEGIN PGP PUBLIC KEY BLOCK-----\n');
const FILE = join(work, 'agent.yaml');
const MINIMAL = 'repository: https://updates.example.com/cairn/\nkeys: [keys/release.pub.asc]\n';

function valid(text: string) {
  const { config, errors } = validateAgentConfigText(text, FILE);
  assert.deepEqual(errors.map(formatIssue), []);
  assert.ok(config);
  return config;
}

/** The issues as `line:col: path: message`, without the file name. */
function problems(text: string): string[] {
  const { config, errors } = validateAgentConfigText(text, FILE);
  assert.equal(config, undefined);
  return errors.map((e) => formatIssue(e).slice(FILE.length + 1));
}

test('a minimal configuration gets every default', () => {
  assert.deepEqual(valid(MINIMAL), {
    file: FILE,
    repository: 'https://updates.example.com/cairn',
    source: { kind: 'channel', channel: 'stable' },
    keys: [join(work, 'keys', 'release.pub.asc')],
    wariness: null,
    strategy: { type: 'immediate' },
    health: { timeout: 300, checks: [] },
    bandwidthLimit: null,
    pollInterval: 3600,
    stateDir: '/var/lib/cairn/agent',
    esp: null,
  });
});

test('the example in docs/agent.md validates and says what it shows', () => {
  const doc = readFileSync(join(cairnRoot(), 'docs/agent.md'), 'utf8');
  const example = /```yaml\n([\s\S]*?)```/.exec(doc)?.[1];
  assert.ok(example, 'docs/agent.md has a yaml example');
  const config = valid(example);
  assert.equal(config.repository, 'https://updates.example.com/cairn');
  assert.deepEqual(config.source, { kind: 'channel', channel: 'stable' });
  assert.deepEqual(config.strategy, { type: 'maintenance-window', days: ['sat', 'sun'], start: '02:00', end: '04:30', timeZone: 'Europe/Berlin' });
  assert.equal(config.wariness, 0.5);
  assert.equal(config.bandwidthLimit, 10 * 1024 * 1024);
  assert.equal(config.health.timeout, 600);
  assert.deepEqual(config.health.checks, [
    { kind: 'unit', name: 'systemd-networkd.service', timeout: 60 },
    { kind: 'unit', name: 'chronyd.service', timeout: 120 },
    { kind: 'container', name: 'web', timeout: 60 },
    { kind: 'command', command: ['/usr/bin/curl', '-fsS', 'http://localhost:8080/healthz'], timeout: 30 },
  ]);
});

test('strategies, pinned versions and health checks normalize', () => {
  const config = valid(`${MINIMAL}version: "2.1.0"
wariness: 0
strategy: {type: fleetlock, url: "http://airlock.example:3333/"}
bandwidth-limit: 500K
poll-interval: 90
state-dir: /var/lib/agent-test
esp: /boot/efi
health:
  timeout: 1h
  check-timeout: 20s
  units: [{name: a.service, timeout: 2m}]
  containers: [db]
  commands:
    - command: [/bin/true]
`);
  assert.deepEqual(config.source, { kind: 'version', version: '2.1.0' });
  assert.deepEqual(config.strategy, { type: 'fleetlock', url: 'http://airlock.example:3333', group: 'default' });
  assert.equal(config.wariness, 0);
  assert.equal(config.bandwidthLimit, 500 * 1024);
  assert.equal(config.pollInterval, 90);
  assert.equal(config.stateDir, '/var/lib/agent-test');
  assert.equal(config.esp, '/boot/efi');
  assert.deepEqual(config.health, {
    timeout: 3600,
    checks: [
      { kind: 'unit', name: 'a.service', timeout: 120 },
      { kind: 'container', name: 'db', timeout: 20 },
      { kind: 'command', command: ['/bin/true'], timeout: 20 },
    ],
  });
  assert.deepEqual(valid(`${MINIMAL}strategy: {type: download-only}\n`).strategy, { type: 'download-only' });
});

test('every mistake is reported with its line, column and key path', () => {
  assert.deepEqual(
    problems(`repository: ftp://x
keys: [keys/release.pub.asc, keys/missing.asc]
wariness: 1.5
chanel: beta
health:
  units: [nginx]
  commands:
    - command: [curl, -f, http://localhost/]
      timeout: 5 minutes
`),
    [
      '1:13: repository: expected an http:// or https:// URL, got "ftp://x"',
      `2:30: keys[1]: ${join(work, 'keys/missing.asc')} does not exist`,
      `3:11: wariness: expected a number from 0 (update early) to 1 (update late), or null, got 1.5`,
      '4:1: unknown key "chanel"; did you mean "channel"?',
      '6:11: health.units[0]: expected a systemd unit name (like nginx.service) or a mapping with name and timeout, got "nginx"',
      '8:17: health.commands[0].command[0]: expected an absolute program path (the agent runs no shell and has no PATH to search), got "curl"',
      '9:16: health.commands[0].timeout: expected a duration in seconds or like 90s, 15m, 2h, 1d, got "5 minutes"',
    ],
  );
});

test('strategy mistakes: missing window keys, keys of another type, unknown zones, empty windows', () => {
  assert.deepEqual(
    problems(`${MINIMAL}strategy:
  type: maintenance-window
  start: "02:00"
`),
    ['3:1: strategy: missing required key "days"', '3:1: strategy: missing required key "end"', '3:1: strategy: missing required key "time-zone"'],
  );
  assert.deepEqual(
    problems(`${MINIMAL}strategy:
  type: immediate
  group: workers
`),
    ['5:3: strategy: "group" belongs to type fleetlock, not immediate'],
  );
  assert.deepEqual(
    problems(`${MINIMAL}strategy: {type: maintenance-window, days: [sun, funday], start: "03:00", end: "03:00", time-zone: Mars/Olympus_Mons}
`),
    [
      '3:50: strategy.days[1]: expected one of mon, tue, wed, thu, fri, sat, sun, got "funday"',
      '3:80: strategy.end: the window opens and closes at 03:00; set an end different from start',
      '3:100: strategy.time-zone: expected an IANA time zone (like Europe/Berlin or UTC), got "Mars/Olympus_Mons", which this system does not know',
    ],
  );
  assert.deepEqual(problems(`${MINIMAL}strategy: {type: fleetlock}\nchannel: beta\nversion: "1.0"\n`), [
    '3:1: strategy: missing required key "url"',
    '5:1: give channel or version, not both: a pinned version follows no channel',
  ]);
});

test('loadAgentConfig reads a file or says what is wrong with it', async () => {
  const good = join(work, 'good.yaml');
  writeFileSync(good, MINIMAL);
  assert.equal((await loadAgentConfig(good)).keys[0], join(work, 'keys', 'release.pub.asc'));
  const bad = join(work, 'bad.yaml');
  writeFileSync(bad, 'keys: []\n');
  const error = await loadAgentConfig(bad).then(
    () => undefined,
    (e: unknown) => e,
  );
  assert.ok(error instanceof AgentConfigError);
  assert.equal(
    error.message,
    `${bad} has 2 problems:\n${bad}:1:1: missing required key "repository"\n${bad}:1:7: keys: expected a non-empty list of public key files, got an empty list`,
  );
  await assert.rejects(loadAgentConfig(join(work, 'none.yaml')), (e: unknown) => e instanceof CairnError && e.message.endsWith('none.yaml: no such file'));
  const empty = join(work, 'empty.yaml');
  writeFileSync(empty, '# nothing yet\n');
  await assert.rejects(loadAgentConfig(empty), /the agent configuration is empty/);
});

test('durations are seconds or a number with a unit', () => {
  assert.equal(parseDuration(45), 45);
  assert.equal(parseDuration('90s'), 90);
  assert.equal(parseDuration('15m'), 900);
  assert.equal(parseDuration('2h'), 7200);
  assert.equal(parseDuration('1d'), 86400);
  assert.throws(() => parseDuration('1.5h'), CairnError);
});
