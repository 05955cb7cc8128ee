import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CairnError } from '../../src/errors.js';
import { parseProvides, parseRelations } from '../../src/debian/relations.js';
import { resolve, type ResolveRequest, type ResolveResult } from '../../src/debian/resolver.js';
import type { PackageRecord } from '../../src/debian/types.js';

interface Spec {
  arch?: string;
  depends?: string;
  preDepends?: string;
  provides?: string;
  conflicts?: string;
  breaks?: string;
  essential?: boolean;
  priority?: string;
  multiArch?: string;
}

function pkg(name: string, version: string, spec: Spec = {}): PackageRecord {
  const architecture = spec.arch ?? 'amd64';
  return {
    name,
    version,
    architecture,
    multiArch: spec.multiArch ?? null,
    essential: spec.essential ?? false,
    priority: spec.priority ?? 'optional',
    depends: parseRelations(spec.depends ?? ''),
    preDepends: parseRelations(spec.preDepends ?? ''),
    provides: parseProvides(spec.provides ?? ''),
    conflicts: parseRelations(spec.conflicts ?? ''),
    breaks: parseRelations(spec.breaks ?? ''),
    filename: `pool/main/${name[0]}/${name}/${name}_${version}_${architecture}.deb`,
    size: 1000,
    sha256: '0'.repeat(64),
    source: name,
    fields: {},
  };
}

function request(packages: string[], extra: Partial<ResolveRequest> = {}): ResolveRequest {
  return { packages, architecture: 'amd64', essential: false, priority: 'none', suite: 'trixie', ...extra };
}

/** `name version` of each chosen package, in result order. */
function chosen(result: ResolveResult): string[] {
  return result.packages.map(({ record }) => `${record.name} ${record.version}`);
}

function rejects(fn: () => unknown, message: string): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof CairnError, `expected a CairnError, got ${String(err)}`);
    assert.equal(err.message, message);
    return true;
  });
}

test('follows Depends and Pre-Depends, not Recommends, and says why each package is there', () => {
  const universe = [
    pkg('app', '1.0-1', { depends: 'libfoo (>= 1.0)', preDepends: 'libc6' }),
    pkg('libfoo', '1.2-1', { depends: 'libc6 (>= 2.36)' }),
    pkg('libc6', '2.41-1'),
    { ...pkg('recommended', '1.0') },
    pkg('unrelated', '1.0'),
  ];
  universe[0]!.fields.Recommends = 'recommended';
  const result = resolve(request(['app']), universe);
  assert.deepEqual(chosen(result), ['app 1.0-1', 'libc6 2.41-1', 'libfoo 1.2-1']);
  assert.deepEqual(
    result.packages.map((p) => p.reason),
    [{ kind: 'requested' }, { kind: 'dependency', of: 'app', relation: 'libc6' }, { kind: 'dependency', of: 'app', relation: 'libfoo (>= 1.0)' }],
  );
  assert.deepEqual(result.notes, []);
});

test('picks the highest version that meets every constraint, or the pinned one', () => {
  const universe = [
    pkg('app', '1.0', { depends: 'lib (<< 2.0)' }),
    pkg('lib', '1.5'),
    pkg('lib', '2.1'),
    pkg('lib', '1.9~rc1'),
    pkg('tool', '3.0'),
    pkg('tool', '2.0'),
  ];
  assert.deepEqual(chosen(resolve(request(['app', 'tool']), universe)), ['app 1.0', 'lib 1.9~rc1', 'tool 3.0']);
  assert.deepEqual(chosen(resolve(request(['tool=2.0', 'lib=1.5']), universe)), ['lib 1.5', 'tool 2.0']);
  // A pinned version the dependency does not accept cannot be swapped for another.
  rejects(
    () => resolve(request(['lib=2.1', 'app']), universe),
    'cannot install app: app 1.0 depends on "lib (<< 2.0)", but lib 1.9~rc1, lib 1.5 cannot be chosen: lib 2.1 is already chosen (requested) (trixie, amd64)',
  );
  rejects(() => resolve(request(['tool=9']), universe), 'cannot install "tool=9": the archive has tool 3.0, tool 2.0 (trixie, amd64)');
});

test('alternatives: one already chosen wins, otherwise the first that can be installed', () => {
  const universe = [pkg('app', '1.0', { depends: 'aa | bb, cc (>= 2) | dd' }), pkg('aa', '1.0'), pkg('bb', '1.0'), pkg('cc', '1.0'), pkg('dd', '1.0')];
  assert.deepEqual(chosen(resolve(request(['app']), universe)), ['aa 1.0', 'app 1.0', 'dd 1.0']);
  assert.deepEqual(chosen(resolve(request(['app', 'bb']), universe)), ['app 1.0', 'bb 1.0', 'dd 1.0']);
  // Requested packages count even when listed after the one that depends on them.
  assert.deepEqual(chosen(resolve(request(['bb', 'app']), universe)), ['app 1.0', 'bb 1.0', 'dd 1.0']);
});

test('virtual packages: the real package first, then providers by Essential and Priority, ties by name with a note', () => {
  const universe = [
    pkg('app', '1.0', { depends: 'mta, awk, editor, real' }),
    pkg('postfix', '3.0', { provides: 'mta', priority: 'optional' }),
    pkg('exim', '4.0', { provides: 'mta', priority: 'standard' }),
    pkg('mawk', '1.3', { provides: 'awk', priority: 'required' }),
    pkg('gawk', '5.0', { provides: 'awk', priority: 'optional' }),
    pkg('vim', '9.0', { provides: 'editor' }),
    pkg('nano', '8.0', { provides: 'editor' }),
    pkg('real', '1.0'),
    pkg('fake-real', '1.0', { provides: 'real' }),
  ];
  const result = resolve(request(['app']), universe);
  assert.deepEqual(chosen(result), ['app 1.0', 'exim 4.0', 'mawk 1.3', 'nano 8.0', 'real 1.0']);
  assert.deepEqual(result.notes, [
    'several packages provide "editor" equally well (nano, vim); chose nano (cairn breaks such ties by name, apt by its cache order)',
  ]);
  const essential = [
    pkg('app', '1.0', { depends: 'sh' }),
    pkg('zsh', '1', { provides: 'sh', priority: 'required' }),
    pkg('dash', '1', { provides: 'sh', essential: true }),
  ];
  assert.deepEqual(chosen(resolve(request(['app']), essential)), ['app 1.0', 'dash 1']);
});

test('a versioned dependency needs a versioned Provides', () => {
  const universe = [
    pkg('app', '1.0', { depends: 'libabi (>= 2)' }),
    pkg('old-impl', '1.0', { provides: 'libabi' }),
    pkg('new-impl', '1.0', { provides: 'libabi (= 2.5)' }),
  ];
  assert.deepEqual(chosen(resolve(request(['app']), universe)), ['app 1.0', 'new-impl 1.0']);
  rejects(
    () => resolve(request(['app']), universe.slice(0, 2)),
    'cannot install app: app 1.0 depends on "libabi (>= 2)", but "libabi" is a virtual package provided without a version (by old-impl), which "(>= 2)" needs (trixie, amd64)',
  );
  rejects(
    () => resolve(request(['app']), [universe[0]!, pkg('impl', '1', { provides: 'libabi (= 1.0)' })]),
    'cannot install app: app 1.0 depends on "libabi (>= 2)", but "libabi" is provided only as libabi 1.0 by impl (trixie, amd64)',
  );
});

test('a requested virtual package installs its only provider, and several providers are an error', () => {
  const universe = [pkg('mawk', '1.3', { provides: 'awk' }), pkg('exim', '4', { provides: 'mta' }), pkg('postfix', '3', { provides: 'mta' })];
  const result = resolve(request(['awk']), universe);
  assert.deepEqual(chosen(result), ['mawk 1.3']);
  assert.deepEqual(result.notes, ['"awk" is a virtual package; installing mawk, the only package that provides it']);
  rejects(() => resolve(request(['mta']), universe), '"mta" is a virtual package provided by exim, postfix (trixie, amd64)');
});

test('only the native architecture and all; :any needs Multi-Arch: allowed', () => {
  const universe = [
    pkg('app', '1.0', { depends: 'libx, data, python3:any, perl:native' }),
    pkg('libx', '2.0', { arch: 'i386' }),
    pkg('libx', '1.0'),
    pkg('data', '1.0', { arch: 'all' }),
    pkg('python3', '3.13', { multiArch: 'allowed' }),
    pkg('perl', '5.40'),
  ];
  assert.deepEqual(chosen(resolve(request(['app']), universe)), ['app 1.0', 'data 1.0', 'libx 1.0', 'perl 5.40', 'python3 3.13']);
  rejects(
    () => resolve(request(['app']), [...universe.slice(0, 4), pkg('python3', '3.13'), pkg('perl', '5.40')]),
    'cannot install app: app 1.0 depends on "python3:any", but python3 is not Multi-Arch: allowed, which "python3:any" needs (trixie, amd64)',
  );
  rejects(() => resolve(request(['libx=2.0']), universe), 'cannot install "libx=2.0": the archive has libx 1.0 (trixie, amd64)');
});

test('Conflicts and Breaks keep packages apart, backtracking to another alternative', () => {
  const universe = [
    pkg('app', '1.0', { depends: 'xx | yy, ww' }),
    pkg('xx', '1.0'),
    pkg('yy', '1.0'),
    pkg('ww', '1.0', { breaks: 'xx (<< 2)' }),
    // The usual "only one of these" idiom: a package may conflict with what it provides.
    pkg('mta-one', '1.0', { provides: 'mta', conflicts: 'mta' }),
  ];
  assert.deepEqual(chosen(resolve(request(['app']), universe)), ['app 1.0', 'ww 1.0', 'yy 1.0']);
  assert.deepEqual(chosen(resolve(request(['mta-one']), universe)), ['mta-one 1.0']);
  rejects(
    () => resolve(request(['xx', 'ww']), universe),
    'cannot install ww 1.0 (requested): it breaks "xx (<< 2)", which xx 1.0 (requested) is (trixie, amd64)',
  );
  rejects(() => resolve(request(['ww', 'xx']), universe), 'cannot install xx 1.0 (requested): ww 1.0 (requested) breaks "xx (<< 2)" (trixie, amd64)');
  rejects(
    () => resolve(request(['app', 'xx']), universe),
    'cannot install app: app 1.0 depends on "ww", but ww 1.0 cannot be chosen: it breaks "xx (<< 2)", which xx 1.0 (requested) is (trixie, amd64)',
  );
  const viaProvides = [pkg('aa', '1', { depends: 'bb' }), pkg('bb', '1', { conflicts: 'mta' }), pkg('mta-one', '1.0', { provides: 'mta' })];
  rejects(
    () => resolve(request(['mta-one', 'aa']), viaProvides),
    'cannot install aa: aa 1 depends on "bb", but bb 1 cannot be chosen: it conflicts with "mta", which mta-one 1.0 (requested) is (trixie, amd64)',
  );
});

test('explains an unmet dependency with the chain that led to it and what the archive has', () => {
  const universe = [
    pkg('systemd', '257-1', { depends: 'libfoo' }),
    pkg('libfoo', '1.0-1', { depends: 'libbar (>= 2)' }),
    pkg('libbar', '1.9-3'),
    pkg('libbar', '1.8-1'),
    pkg('shim', '1', { provides: 'libbar (= 1.5)' }),
  ];
  rejects(
    () => resolve(request(['systemd']), universe),
    'cannot install systemd (systemd → libfoo → libbar (>= 2)): libfoo 1.0-1 depends on "libbar (>= 2)", ' +
      'but the archive has only libbar 1.9-3, libbar 1.8-1, shim (provides libbar 1.5) (trixie, amd64)',
  );
  rejects(
    () => resolve(request(['app']), [pkg('app', '1.2-1', { preDepends: 'libbaz | libqux (>= 1)' })]),
    'cannot install app: app 1.2-1 pre-depends on "libbaz | libqux (>= 1)", but no package in the archive is called "libbaz" or provides it; ' +
      'no package in the archive is called "libqux" or provides it (trixie, amd64)',
  );
  rejects(
    () => resolve(request(['app'], { suite: undefined }), [pkg('app', '1', { depends: 'gone' })]),
    'cannot install app: app 1 depends on "gone", but no package in the archive is called "gone" or provides it (amd64)',
  );
});

test('unknown and malformed requests', () => {
  const universe = [pkg('systemd', '257-1'), pkg('systemd-boot', '257-1'), pkg('udev', '257-1')];
  rejects(
    () => resolve(request(['sytemd']), universe),
    'cannot install "sytemd": no package in the archive (trixie, amd64) is called that or provides it; did you mean "systemd"?',
  );
  rejects(() => resolve(request(['zzzzzz']), universe), 'cannot install "zzzzzz": no package in the archive (trixie, amd64) is called that or provides it');
  rejects(() => resolve(request(['Systemd']), universe), 'invalid package request "Systemd": expected "name" or "name=version"');
  rejects(() => resolve(request(['udev=']), universe), 'invalid package request "udev=": expected "name" or "name=version"');
  rejects(() => resolve(request(['udev', 'udev=1']), [...universe, pkg('udev', '1')]), '"udev=1" asks for udev 1 but another request asks for udev 257-1');
});

test('adds Essential packages and those of the requested Priority, each with its reason', () => {
  const universe = [
    pkg('base-files', '13', { essential: true, priority: 'required', depends: 'mawk' }),
    pkg('mawk', '1.3', { priority: 'required' }),
    pkg('bash', '5.2', { essential: true, priority: 'required' }),
    pkg('iproute2', '6.0', { priority: 'important' }),
    pkg('vim', '9.0', { priority: 'optional' }),
    pkg('bash', '5.3', { essential: true, priority: 'required', arch: 'arm64' }),
  ];
  const essential = resolve(request([], { essential: true }), universe);
  assert.deepEqual(chosen(essential), ['base-files 13', 'bash 5.2', 'mawk 1.3']);
  assert.deepEqual(
    essential.packages.map((p) => p.reason.kind),
    ['essential', 'essential', 'dependency'],
  );
  const required = resolve(request(['bash'], { priority: 'required' }), universe);
  assert.deepEqual(
    required.packages.map((p) => `${p.record.name}:${p.reason.kind}`),
    ['base-files:priority', 'bash:requested', 'mawk:priority'],
  );
  assert.deepEqual(chosen(resolve(request([], { priority: 'important' }), universe)), ['base-files 13', 'bash 5.2', 'iproute2 6.0', 'mawk 1.3']);
  assert.deepEqual(chosen(resolve(request([]), universe)), []);
});

test('the outcome does not depend on the order of the index', () => {
  const universe = [
    pkg('app', '1.0', { depends: 'mta, lib (>= 1), x | y' }),
    pkg('postfix', '3.0', { provides: 'mta' }),
    pkg('exim', '4.0', { provides: 'mta' }),
    pkg('lib', '1.0'),
    pkg('lib', '1.1'),
    pkg('lib', '1.1'), // listed twice, as when two components carry it
    pkg('x', '1.0', { conflicts: 'exim' }),
    pkg('y', '1.0'),
  ];
  const expected = JSON.stringify(resolve(request(['app']), universe));
  assert.deepEqual(chosen(resolve(request(['app']), universe)), ['app 1.0', 'exim 4.0', 'lib 1.1', 'y 1.0']);
  let seed = 7;
  for (let round = 0; round < 20; round++) {
    const shuffled = [...universe];
    for (let i = shuffled.length - 1; i > 0; i--) {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      const j = seed % (i + 1);
      [shuffled[i], shuffled[j]] = [shuffled[j]!, shuffled[i]!];
    }
    assert.equal(JSON.stringify(resolve(request(['app']), shuffled)), expected);
  }
});

test('gives up within its budget when no combination works', () => {
  // 30 independent two-way choices, then a dependency nothing can meet: exhaustive search would
  // try 2^30 combinations.
  const universe: PackageRecord[] = [];
  const deps: string[] = [];
  for (let i = 0; i < 30; i++) {
    deps.push(`a${i} | b${i}`);
    universe.push(pkg(`a${i}`, '1'), pkg(`b${i}`, '1'));
  }
  deps.push('missing');
  universe.push(pkg('app', '1', { depends: deps.join(', ') }));
  const start = performance.now();
  rejects(
    () => resolve(request(['app']), universe),
    'cannot install app: app 1 depends on "missing", but no package in the archive is called "missing" or provides it (trixie, amd64)',
  );
  assert.ok(performance.now() - start < 2000);
});

test("installed packages (a layer's base) meet dependencies and conflict, but are never chosen again", () => {
  const base = [pkg('libc6', '2.41-1', { provides: 'libc-any' }), pkg('zlib1g', '1.3-1'), pkg('old-tool', '1.0', { conflicts: 'rival' })];
  const universe = [
    pkg('app', '2.0', { depends: 'libc-any, zlib1g (>= 1.2), libnew' }),
    pkg('libnew', '1.0', { depends: 'libc6 (>= 2.36)' }),
    // The archive moved on past the base's versions; the base's own still count.
    pkg('libc6', '2.42-1', { provides: 'libc-any' }),
    // Essential in the archive, yet not added again: the base has it.
    pkg('zlib1g', '1.3-2', { essential: true }),
    pkg('rival', '1.0'),
    pkg('needs-newer-zlib', '1.0', { depends: 'zlib1g (>= 1.3-2)' }),
  ];
  const result = resolve(request(['app', 'zlib1g'], { installed: base, essential: true }), universe);
  assert.deepEqual(chosen(result), ['app 2.0', 'libnew 1.0']);
  assert.deepEqual(result.notes, ['zlib1g 1.3-1 is already in the base image']);
  rejects(
    () => resolve(request(['zlib1g=1.3-2'], { installed: base }), universe),
    'cannot install "zlib1g=1.3-2": the base image has zlib1g 1.3-1, which a layer cannot replace',
  );
  rejects(
    () => resolve(request(['rival'], { installed: base }), universe),
    'cannot install rival 1.0 (requested): old-tool 1.0 (in the base image) conflicts with "rival" (trixie, amd64)',
  );
  rejects(
    () => resolve(request(['needs-newer-zlib'], { installed: base }), universe),
    'cannot install needs-newer-zlib: needs-newer-zlib 1.0 depends on "zlib1g (>= 1.3-2)", but zlib1g 1.3-2 cannot be chosen: zlib1g 1.3-1 is already chosen (in the base image) (trixie, amd64)',
  );
});
