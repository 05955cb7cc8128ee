import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { CairnError } from '../../src/errors.js';
import { compareVersions, parseVersion, satisfies } from '../../src/debian/version.js';

const run = promisify(execFile);

// Pairs whose order dpkg's documentation and test suite spell out; each is also put to dpkg below.
const KNOWN: [string, '<' | '=' | '>', string][] = [
  ['1.0~rc1', '<', '1.0'],
  ['1.0~rc1', '>', '1.0~beta2'],
  ['1.0~', '>', '1.0~~'],
  ['1.0~~a', '>', '1.0~~'],
  ['1:0', '>', '0:1'],
  ['0:1', '=', '1'],
  ['1.0-1', '<', '1.0-1.1'],
  ['1.0a', '<', '1.0+'],
  ['1.0', '=', '1.0-0'],
  ['1.0', '<', '1.0.0'],
  ['00', '=', '0'],
  ['1.002', '=', '1.2'],
  ['2.0', '<', '10.0'],
  ['1a', '<', '1.'],
  ['1.0+dfsg', '>', '1.0'],
  ['2:1.0', '>', '1:9.9'],
  ['1.2.3-4', '<', '1.2.3-10'],
  ['1.0-a', '>', '1.0-9'],
  ['1:2.3:4-5', '>', '1:2.3-5'],
  ['1.0-1~bpo1', '<', '1.0-1'],
  ['99999999999999999999999', '<', '100000000000000000000000'],
];

test('known orderings', () => {
  for (const [a, op, b] of KNOWN) {
    const c = compareVersions(a, b);
    const got = c < 0 ? '<' : c > 0 ? '>' : '=';
    assert.equal(got, op, `${a} ${op} ${b}`);
    assert.equal(Math.sign(compareVersions(b, a)), 0 - Math.sign(c) || 0, `antisymmetric on ${a} / ${b}`);
  }
});

test('satisfies applies each operator', () => {
  assert.equal(satisfies('1.0-1', '<<', '1.0-2'), true);
  assert.equal(satisfies('1.0-2', '<<', '1.0-2'), false);
  assert.equal(satisfies('1.0-2', '<=', '1.0-2'), true);
  assert.equal(satisfies('1.0-3', '<=', '1.0-2'), false);
  assert.equal(satisfies('0:1.0', '=', '1.0'), true);
  assert.equal(satisfies('1.0', '=', '1.0-1'), false);
  assert.equal(satisfies('2.0~rc1', '>=', '2.0~'), true);
  assert.equal(satisfies('2.0~rc1', '>=', '2.0'), false);
  assert.equal(satisfies('2.0', '>>', '2.0~rc1'), true);
  assert.equal(satisfies('2.0', '>>', '2.0'), false);
});

test('parseVersion splits epoch, upstream and revision', () => {
  assert.deepEqual(parseVersion('1:2.36-9+deb12u4'), { epoch: 1, upstream: '2.36', revision: '9+deb12u4' });
  assert.deepEqual(parseVersion('1.2-3-4'), { epoch: 0, upstream: '1.2-3', revision: '4' });
  assert.deepEqual(parseVersion('2:1:0'), { epoch: 2, upstream: '1:0', revision: '' });
  assert.deepEqual(parseVersion(' 7 '), { epoch: 0, upstream: '7', revision: '' });
});

test('parseVersion rejects what dpkg rejects or warns about, saying why', () => {
  const cases: [string, string][] = [
    ['', 'invalid Debian version "": it is empty'],
    ['1.0 1', 'invalid Debian version "1.0 1": it contains spaces'],
    [':1.0', 'invalid Debian version ":1.0": the epoch before ":" is empty'],
    ['a:1.0', 'invalid Debian version "a:1.0": the epoch "a" is not a number'],
    ['-1:1.0', 'invalid Debian version "-1:1.0": the epoch "-1" is not a number'],
    ['99999999999:1', 'invalid Debian version "99999999999:1": the epoch 99999999999 is too big'],
    ['1:', 'invalid Debian version "1:": nothing follows the epoch'],
    ['1.0-', 'invalid Debian version "1.0-": the revision after the last "-" is empty'],
    ['-1', 'invalid Debian version "-1": the upstream version is empty'],
    ['abc', 'invalid Debian version "abc": the upstream version "abc" does not start with a digit'],
    ['1.0_1', 'invalid Debian version "1.0_1": the upstream version "1.0_1" contains a character other than letters, digits and . + ~ - :'],
    ['1:1.0-1:2', 'invalid Debian version "1:1.0-1:2": the revision "1:2" contains a character other than letters, digits and . + ~'],
    ['1.0-a_b', 'invalid Debian version "1.0-a_b": the revision "a_b" contains a character other than letters, digits and . + ~'],
  ];
  for (const [input, message] of cases) {
    assert.throws(
      () => parseVersion(input),
      (err: unknown) => err instanceof CairnError && err.message === message,
      input,
    );
  }
  assert.throws(() => compareVersions('1.0', 'x'), CairnError);
});

// A small deterministic generator (mulberry32), so a failure names a reproducible seed.
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const UPSTREAM = '0123456789012345678901234567890123456789abcxyzABZ..++~~';
const REVISION = '0123456789012345abzAZ..++~~';

function pick(rand: () => number, alphabet: string, length: number): string {
  let out = '';
  for (let i = 0; i < length; i++) out += alphabet[Math.floor(rand() * alphabet.length)];
  return out;
}

// A valid version: ":" in the upstream part only with an epoch, "-" only with a revision.
function randomVersion(rand: () => number): string {
  const epoch = rand() < 0.2 ? `${pick(rand, '0012', 1 + Math.floor(rand() * 2))}:` : '';
  const hasRevision = rand() < 0.6;
  let upstreamAlphabet = UPSTREAM;
  if (epoch !== '') upstreamAlphabet += ':';
  if (hasRevision) upstreamAlphabet += '-';
  const upstream = pick(rand, '0123456789', 1) + pick(rand, upstreamAlphabet, Math.floor(rand() * 7));
  const revision = hasRevision ? `-${pick(rand, REVISION, 1 + Math.floor(rand() * 4))}` : '';
  return epoch + upstream + revision;
}

// Nearby versions make the interesting comparisons: most random pairs differ in the first digit.
function mutate(rand: () => number, version: string): string {
  for (let attempt = 0; attempt < 20; attempt++) {
    const at = Math.floor(rand() * (version.length + 1));
    const roll = rand();
    let next: string;
    if (roll < 0.4) next = version.slice(0, at) + pick(rand, '0~a.+9Z', 1) + version.slice(at);
    else if (roll < 0.7) next = version.slice(0, at) + version.slice(at + 1);
    else next = version.slice(0, at) + pick(rand, '0123456789~a+.', 1) + version.slice(at + 1);
    try {
      parseVersion(next);
      return next;
    } catch {
      // Mutations may break the structure; try another.
    }
  }
  return randomVersion(rand);
}

function* generatedPairs(seed: number, count: number): Generator<[string, string]> {
  const rand = random(seed);
  for (const [a, , b] of KNOWN) yield [a, b];
  for (let i = 0; i < count; i++) {
    const a = randomVersion(rand);
    yield [a, rand() < 0.75 ? mutate(rand, a) : randomVersion(rand)];
  }
}

/** dpkg's verdict on each pair, as "<", "=" or ">", asked in a few shell batches at once. */
async function dpkgOrder(pairs: [string, string][]): Promise<string[]> {
  const script =
    'while [ $# -gt 0 ]; do if dpkg --compare-versions "$1" lt "$2"; then echo "<"; ' +
    'elif dpkg --compare-versions "$1" eq "$2"; then echo "="; else echo ">"; fi; shift 2; done';
  const batches: Promise<string[]>[] = [];
  for (let i = 0; i < pairs.length; i += 500) {
    const args = pairs.slice(i, i + 500).flat();
    batches.push(run('sh', ['-c', script, 'sh', ...args], { maxBuffer: 1 << 20 }).then(({ stdout }) => stdout.trim().split('\n')));
  }
  return (await Promise.all(batches)).flat();
}

test('compareVersions agrees with dpkg --compare-versions on generated pairs', async (t) => {
  try {
    await run('dpkg', ['--version']);
  } catch {
    t.skip('dpkg is not installed: the oracle is missing');
    return;
  }
  const seed = 20240611;
  const pairs = [...generatedPairs(seed, 2500)];
  const verdicts = await dpkgOrder(pairs);
  assert.equal(verdicts.length, pairs.length, 'dpkg answered for every pair');
  const disagreements: string[] = [];
  pairs.forEach(([a, b], i) => {
    const c = compareVersions(a, b);
    const ours = c < 0 ? '<' : c > 0 ? '>' : '=';
    if (ours !== verdicts[i]) disagreements.push(`${a} ${ours} ${b} but dpkg says ${verdicts[i]}`);
  });
  const equal = verdicts.filter((v) => v === '=').length;
  assert.ok(equal > 20 && equal < pairs.length / 2, `the generated pairs exercise equality too (${equal} equal)`);
  assert.deepEqual(disagreements, [], `seed ${seed}`);
});
