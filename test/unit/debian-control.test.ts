import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CairnError } from '../../src/errors.js';
import { getField, parseControl } from '../../src/debian/control.js';
import { formatAlternatives, parseProvides, parseRelations } from '../../src/debian/relations.js';
import { parsePackagesIndex } from '../../src/debian/packages-index.js';

function rejects(fn: () => unknown, message: string): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof CairnError, `expected a CairnError, got ${String(err)}`);
    assert.equal(err.message, message);
    return true;
  });
}

test('parseControl reads paragraphs, continuation lines and CRLF', () => {
  const text =
    'Package: foo\r\nDescription: short\r\n long line one\r\n .\r\n\r\n\r\nPackage: bar\nSHA256:\n abc 12 main/Packages\n def 34 main/Packages.xz\n \t \nPackage: baz\n';
  const pars = parseControl(text);
  assert.equal(pars.length, 3);
  assert.deepEqual({ ...pars[0] }, { Package: 'foo', Description: 'short\n long line one\n .' });
  assert.deepEqual({ ...pars[1] }, { Package: 'bar', SHA256: '\n abc 12 main/Packages\n def 34 main/Packages.xz' });
  assert.deepEqual({ ...pars[2] }, { Package: 'baz' });
  assert.deepEqual(parseControl(''), []);
  assert.deepEqual(parseControl('\n\n'), []);
});

test('field names match case-insensitively and keep their first spelling', () => {
  const [a, b] = parseControl('package: foo\nPRE-depends: libc6\n\nPackage: bar\nVersion:1.0\n');
  assert.equal(getField(a!, 'Package'), 'foo');
  assert.equal(getField(a!, 'pre-depends'), 'libc6');
  assert.equal(getField(a!, 'Pre-Depends'), 'libc6');
  assert.equal(getField(a!, 'Depends'), undefined);
  // Within one text a name keeps the spelling it first had.
  assert.deepEqual(Object.keys(b!), ['package', 'Version']);
  assert.equal(getField(b!, 'version'), '1.0');
  assert.equal(getField({ Foo: 'x' }, 'foo'), 'x', 'works on paragraphs built by hand too');
  assert.equal(getField(a!, 'constructor'), undefined, 'no inherited properties');
});

test('parseControl rejects malformed lines with their line number', () => {
  rejects(() => parseControl(' continued\nPackage: x\n', { origin: 'Packages' }), 'Packages:1: continuation line outside any field');
  rejects(() => parseControl('Package: x\n\n continued\n'), 'control data:3: continuation line outside any field');
  rejects(() => parseControl('Package: x\nno colon here\n'), 'control data:2: expected "Field: value", got "no colon here"');
  rejects(() => parseControl('Package: x\n: value\n'), 'control data:2: expected "Field: value", got ": value"');
  rejects(() => parseControl('# comment\nPackage: x\n'), 'control data:1: comment lines are not allowed here');
  rejects(() => parseControl('Package: x\n-Foo: y\n'), 'control data:2: invalid field name "-Foo"');
  rejects(() => parseControl('Package: x\nBad Name: y\n'), 'control data:2: invalid field name "Bad Name"');
  rejects(() => parseControl('Package: x\nVersion: 1\nversion: 2\n'), 'control data:3: field "version" appears twice in one paragraph');
  rejects(() => parseControl('Package: x\n__proto__: y\n'), 'control data:2: invalid field name "__proto__"');
});

test('parseRelations reads alternatives, versions and qualifiers', () => {
  const field = parseRelations(
    'libc6 (>= 2.36), default-mta | mail-transport-agent,\n python3:any (<< 3.14~), foo:amd64 [amd64 !i386] <!nocheck>, bar (<1), baz(>2)',
  );
  assert.deepEqual(field, [
    [{ name: 'libc6', arch: null, op: '>=', version: '2.36' }],
    [
      { name: 'default-mta', arch: null, op: null, version: null },
      { name: 'mail-transport-agent', arch: null, op: null, version: null },
    ],
    [{ name: 'python3', arch: 'any', op: '<<', version: '3.14~' }],
    [{ name: 'foo', arch: 'amd64', op: null, version: null }],
    // dpkg reads the obsolete < and > as <= and >=.
    [{ name: 'bar', arch: null, op: '<=', version: '1' }],
    [{ name: 'baz', arch: null, op: '>=', version: '2' }],
  ]);
  assert.deepEqual(parseRelations('  '), []);
  assert.equal(formatAlternatives(field[1]!), 'default-mta | mail-transport-agent');
  assert.equal(formatAlternatives(field[2]!), 'python3:any (<< 3.14~)');
});

test('parseRelations and parseProvides reject malformed relations', () => {
  rejects(() => parseRelations('foo, , bar'), 'invalid relation "": it is empty');
  rejects(() => parseRelations('foo |'), 'invalid relation "": it is empty');
  rejects(() => parseRelations('Foo'), 'invalid relation "Foo": expected a package name, an optional :arch and an optional (op version)');
  rejects(() => parseRelations('foo (=> 1)'), 'invalid relation "foo (=> 1)": expected a package name, an optional :arch and an optional (op version)');
  rejects(() => parseRelations('foo (>= 1'), 'invalid relation "foo (>= 1": expected a package name, an optional :arch and an optional (op version)');
  rejects(
    () => parseRelations('foo (>= x1)'),
    'invalid relation "foo (>= x1)": invalid Debian version "x1": the upstream version "x1" does not start with a digit',
  );
  assert.deepEqual(parseProvides('mail-transport-agent, libfoo-abi-1 (= 1.2-3)'), [
    { name: 'mail-transport-agent', arch: null, op: null, version: null },
    { name: 'libfoo-abi-1', arch: null, op: '=', version: '1.2-3' },
  ]);
  rejects(() => parseProvides('a | b'), 'invalid relation "a | b": Provides cannot list alternatives');
  rejects(() => parseProvides('a (>= 1)'), 'invalid relation "a (>= 1)": Provides allows only "=" versions, not ">="');
  rejects(() => parseProvides('a:any'), 'invalid relation "a:any": Provides cannot carry an architecture qualifier');
});

const SHA = 'ab'.repeat(32);

function stanza(fields: Record<string, string | undefined>): string {
  const base: Record<string, string | undefined> = {
    Package: 'foo',
    Version: '1.0-1',
    Architecture: 'amd64',
    Filename: 'pool/main/f/foo/foo_1.0-1_amd64.deb',
    Size: '1234',
    SHA256: SHA,
    ...fields,
  };
  return (
    Object.entries(base)
      .filter(([, v]) => v !== undefined)
      .map(([k, v]) => `${k}: ${v}`)
      .join('\n') + '\n'
  );
}

test('parsePackagesIndex builds records from stanzas', () => {
  const text =
    stanza({
      Source: 'foo-src (1.0-0.1)',
      Priority: 'Important',
      Essential: 'yes',
      'Multi-Arch': 'foreign',
      'Pre-Depends': 'libc6 (>= 2.36)',
      Depends: 'a | b, c',
      Provides: 'foo-virtual (= 1.0)',
      Conflicts: 'old-foo',
      Breaks: 'bar (<< 2)',
      SHA256: SHA.toUpperCase(),
    }) +
    '\n' +
    stanza({ Package: 'bar', Architecture: 'all', Filename: 'pool/main/b/bar/bar_1.0-1_all.deb' });
  const [foo, bar] = parsePackagesIndex(text);
  assert.equal(foo!.name, 'foo');
  assert.equal(foo!.version, '1.0-1');
  assert.equal(foo!.architecture, 'amd64');
  assert.equal(foo!.multiArch, 'foreign');
  assert.equal(foo!.essential, true);
  assert.equal(foo!.priority, 'important');
  assert.deepEqual(foo!.preDepends, [[{ name: 'libc6', arch: null, op: '>=', version: '2.36' }]]);
  assert.deepEqual(foo!.depends.map(formatAlternatives), ['a | b', 'c']);
  assert.deepEqual(foo!.provides, [{ name: 'foo-virtual', arch: null, op: '=', version: '1.0' }]);
  assert.deepEqual(foo!.conflicts.map(formatAlternatives), ['old-foo']);
  assert.deepEqual(foo!.breaks.map(formatAlternatives), ['bar (<< 2)']);
  assert.equal(foo!.size, 1234);
  assert.equal(foo!.sha256, SHA);
  assert.equal(foo!.source, 'foo-src');
  assert.equal(foo!.fields.Source, 'foo-src (1.0-0.1)');
  assert.equal(bar!.source, 'bar');
  assert.equal(bar!.essential, false);
  assert.equal(bar!.multiArch, null);
  assert.equal(bar!.priority, 'optional');
  assert.deepEqual([bar!.depends, bar!.preDepends, bar!.provides, bar!.conflicts, bar!.breaks], [[], [], [], [], []]);
});

test('parsePackagesIndex rejects a stanza missing a required field or carrying a hostile one', () => {
  const origin = { origin: 'http://mirror/dists/trixie/main/binary-amd64/Packages' };
  const where = 'http://mirror/dists/trixie/main/binary-amd64/Packages:';
  for (const field of ['Version', 'Architecture', 'Filename', 'Size', 'SHA256']) {
    rejects(
      () => parsePackagesIndex(stanza({}) + '\n' + stanza({ Package: 'bar', [field]: undefined }), origin),
      field === 'Version'
        ? `${where.slice(0, -1)}: package "bar" (stanza 2) has no "Version" field`
        : `${where.slice(0, -1)}: package "bar" 1.0-1 (stanza 2) has no "${field}" field`,
    );
  }
  rejects(() => parsePackagesIndex(stanza({ Package: undefined })), 'Packages index: stanza 1 has no "Package" field');
  const cases: [Record<string, string>, string][] = [
    [{ Package: 'Foo' }, 'package "Foo" 1.0-1 (stanza 1) has an invalid package name'],
    [{ Version: '1.0 2' }, 'package "foo" 1.0 2 (stanza 1) has a bad Version: invalid Debian version "1.0 2": it contains spaces'],
    [{ Architecture: 'amd64/../x' }, 'package "foo" 1.0-1 (stanza 1) has an invalid Architecture "amd64/../x"'],
    [
      { Filename: '../../etc/passwd' },
      'package "foo" 1.0-1 (stanza 1) has an unsafe Filename "../../etc/passwd" (expected a relative path like pool/main/f/foo/foo_1.0_amd64.deb)',
    ],
    [
      { Filename: '/etc/passwd' },
      'package "foo" 1.0-1 (stanza 1) has an unsafe Filename "/etc/passwd" (expected a relative path like pool/main/f/foo/foo_1.0_amd64.deb)',
    ],
    [
      { Filename: 'pool//foo.deb' },
      'package "foo" 1.0-1 (stanza 1) has an unsafe Filename "pool//foo.deb" (expected a relative path like pool/main/f/foo/foo_1.0_amd64.deb)',
    ],
    [
      { Filename: 'pool/foo bar.deb' },
      'package "foo" 1.0-1 (stanza 1) has an unsafe Filename "pool/foo bar.deb" (expected a relative path like pool/main/f/foo/foo_1.0_amd64.deb)',
    ],
    [{ Size: '-1' }, 'package "foo" 1.0-1 (stanza 1) has an invalid Size "-1"'],
    [{ Size: '99999999999999999999' }, 'package "foo" 1.0-1 (stanza 1) has an invalid Size "99999999999999999999"'],
    [{ SHA256: 'abc' }, 'package "foo" 1.0-1 (stanza 1) has an invalid SHA256 "abc" (expected 64 hex digits)'],
    [
      { Depends: 'libc6 (>= )' },
      'package "foo" 1.0-1 (stanza 1) has a bad Depends field: invalid relation "libc6 (>= )": expected a package name, an optional :arch and an optional (op version)',
    ],
    [
      { Provides: 'x (>= 1)' },
      'package "foo" 1.0-1 (stanza 1) has a bad Provides field: invalid relation "x (>= 1)": Provides allows only "=" versions, not ">="',
    ],
  ];
  for (const [fields, message] of cases) rejects(() => parsePackagesIndex(stanza(fields)), `Packages index: ${message}`);
  rejects(() => parsePackagesIndex(stanza({}) + 'garbage\n'), 'Packages index:7: expected "Field: value", got "garbage"');
});

test('parsePackagesIndex reads an archive-sized index quickly', () => {
  const parts: string[] = [];
  for (let i = 0; i < 70_000; i++) {
    parts.push(
      stanza({
        Package: `pkg${i}`,
        Version: `1.${i}-1`,
        Filename: `pool/main/p/pkg${i}/pkg${i}_1.${i}-1_amd64.deb`,
        'Installed-Size': '100',
        Maintainer: 'Someone <someone@example.org>',
        Depends: `libc6 (>= 2.36), pkg${i + 1} (>= 1.0) | other, libfoo${i % 50}`,
        Description: 'a package',
        'Description-md5': '0123456789abcdef0123456789abcdef',
        Section: 'misc',
        Priority: 'optional',
        MD5sum: '0123456789abcdef0123456789abcdef',
      }),
    );
  }
  const text = parts.join('\n');
  const start = performance.now();
  const records = parsePackagesIndex(text);
  const elapsed = performance.now() - start;
  assert.equal(records.length, 70_000);
  assert.equal(records[69_999]!.depends[1]![0]!.name, 'pkg70000');
  // Generous for slow CI machines; a regression to quadratic behaviour would blow far past it.
  assert.ok(elapsed < 10_000, `parsing took ${Math.round(elapsed)} ms`);
});
