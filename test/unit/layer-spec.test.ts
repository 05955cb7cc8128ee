// LAYER.yaml validation (the recipe machinery: every problem at file:line:column) and the checks
// on layer.json, which hosts read before they mount anything.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { CairnError } from '../../src/errors.js';
import { formatLayerMetadata, parseLayerMetadata, readLayer, type LayerMetadata } from '../../src/layer/metadata.js';
import { LayerSpecError, loadLayerSpec, validateLayerText } from '../../src/layer/spec.js';
import { formatIssue } from '../../src/document/issues.js';

const work = mkdtempSync(join(tmpdir(), 'cairn-layer-spec-'));
after(() => rmSync(work, { recursive: true, force: true }));
mkdirSync(join(work, 'images/base'), { recursive: true });
writeFileSync(join(work, 'keyring.gpg'), 'not read here');

test('a layer file gets its defaults and paths resolved from its folder', () => {
  const file = join(work, 'web.yaml');
  const { spec, errors } = validateLayerText('name: web\nversion: "1.2"\nbase: images/base\nkeyring: keyring.gpg\npackages: [nginx-light, curl]\n', file);
  assert.deepEqual(errors, []);
  assert.deepEqual(spec, {
    file,
    name: 'web',
    version: '1.2',
    description: '',
    base: join(work, 'images/base'),
    keyring: join(work, 'keyring.gpg'),
    packages: ['nginx-light', 'curl'],
    compression: 'lz4hc',
  });
  const plain = validateLayerText('name: web\nversion: "1"\npackages: [curl]\ncompression: none\n', file).spec;
  assert.equal(plain?.base, null);
  assert.equal(plain?.compression, null);
});

test('every problem in a layer file is reported at its line and column', () => {
  const file = join(work, 'bad.yaml');
  const text = ['name: Web', 'version: 1.0', 'base: missing/base', 'packages: [curl, Bad_Name, curl]', 'compression: brotli', 'extra: true', ''].join('\n');
  assert.deepEqual(validateLayerText(text, file).errors.map(formatIssue), [
    `${file}:1:7: name: expected a name of lowercase letters, digits and dashes (like web-tools), got "Web"`,
    `${file}:2:10: version: expected a version string starting with a letter or digit, of letters, digits and . _ ~ - (like 1.0.0; quote it in YAML), got 1.0`,
    `${file}:3:7: base: ${join(work, 'missing/base')} does not exist`,
    `${file}:4:18: packages[1]: expected a Debian package name, got "Bad_Name"`,
    `${file}:4:28: packages[2]: "curl" is listed twice (also at packages[0])`,
    `${file}:5:14: compression: expected one of lz4, lz4hc, lzma, deflate, zstd, none, got "brotli"`,
    `${file}:6:1: unknown key "extra"; expected one of name, version, description, base, keyring, packages, compression`,
  ]);
  assert.deepEqual(validateLayerText('', file).errors.map(formatIssue), [
    `${file}:1:1: the layer file is empty; expected a mapping with at least name, version and packages`,
  ]);
  assert.deepEqual(validateLayerText('name: a\nversion: "1"\npackages: []\n', file).errors.map(formatIssue), [
    `${file}:3:11: packages: expected a non-empty list of Debian package names, got an empty list`,
  ]);
});

test('loading a missing or invalid layer file is a CairnError that lists the problems', async () => {
  await assert.rejects(
    loadLayerSpec(join(work, 'nope.yaml')),
    (err: unknown) => err instanceof CairnError && /cannot read layer file .*nope\.yaml: no such file/.test(err.message),
  );
  writeFileSync(join(work, 'two.yaml'), 'name: x\nversion: "1"\n');
  await assert.rejects(loadLayerSpec(join(work, 'two.yaml')), (err: unknown) => {
    assert.ok(err instanceof LayerSpecError);
    assert.match(err.message, /two\.yaml has 1 problem:\n.*two\.yaml:1:1: missing required key "packages"/);
    assert.match(err.hint ?? '', /src\/layer\/layer\.schema\.json/);
    return true;
  });
});

const GOOD: LayerMetadata = {
  format: 'cairn-layer/1',
  name: 'web',
  version: '1',
  description: '',
  architecture: 'amd64',
  base: { name: 'container-host', lockSha256: 'a'.repeat(64) },
  origin: { mirror: 'http://deb.debian.org/debian', suite: 'trixie', inReleaseSha256: 'b'.repeat(64), date: '2025-01-01T00:00:00.000Z' },
  sourceDateEpoch: 1_700_000_000,
  packages: [{ name: 'curl', version: '8.0-1', architecture: 'amd64', sha256: 'c'.repeat(64) }],
  image: { file: 'web_1.layer', size: 8192, sha256: 'd'.repeat(64) },
  verity: { file: 'web_1.verity', size: 4096, rootHash: 'e'.repeat(64), salt: 'd'.repeat(64), dataBlocks: 2, dataBlockSize: 4096, hashBlockSize: 4096 },
};

test('layer.json is read only when well-formed, with its files as plain names beside it', async () => {
  assert.deepEqual(parseLayerMetadata(formatLayerMetadata(GOOD), 'layer.json'), GOOD);
  const bad: [string, unknown, RegExp][] = [
    ['traversal', { ...GOOD, image: { ...GOOD.image, file: '../../etc/shadow' } }, /\/image\/file must match pattern/],
    ['absolute', { ...GOOD, verity: { ...GOOD.verity, file: '/dev/sda' } }, /\/verity\/file must match pattern/],
    ['same file', { ...GOOD, verity: { ...GOOD.verity, file: 'web_1.layer' } }, /the image and its hash tree must be two files other than layer\.json/],
    ['root hash', { ...GOOD, verity: { ...GOOD.verity, rootHash: 'E'.repeat(64) } }, /\/verity\/rootHash must match pattern/],
    ['base', { ...GOOD, base: { name: 'x', lockSha256: 42 } }, /\/base\/lockSha256 must be string/],
    ['format', { ...GOOD, format: 'cairn-layer/2' }, /\/format must be equal to constant/],
    ['extra', { ...GOOD, run: 'rm -rf /' }, /must NOT have additional properties/],
  ];
  for (const [what, data, pattern] of bad) {
    assert.throws(
      () => parseLayerMetadata(JSON.stringify(data), 'layer.json'),
      (err: unknown) => err instanceof CairnError && pattern.test(err.message),
      what,
    );
  }
  assert.throws(() => parseLayerMetadata('{', 'layer.json'), /layer\.json: not JSON/);
  assert.throws(() => parseLayerMetadata(' '.repeat(5 << 20), 'layer.json'), /too big for layer metadata/);

  const dir = join(work, 'layer');
  mkdirSync(dir);
  writeFileSync(join(dir, 'layer.json'), formatLayerMetadata(GOOD));
  const fromDir = await readLayer(dir);
  assert.deepEqual(fromDir, { metadata: GOOD, metadataPath: join(dir, 'layer.json'), image: join(dir, 'web_1.layer'), verity: join(dir, 'web_1.verity') });
  assert.deepEqual(await readLayer(join(dir, 'layer.json')), fromDir);
  await assert.rejects(readLayer(work), /is not a cairn layer: .*layer\.json is missing/);
  await assert.rejects(readLayer(join(work, 'absent')), /layer .*absent does not exist/);
});
