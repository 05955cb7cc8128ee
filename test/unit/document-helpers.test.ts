import assert from 'node:assert/strict';
import { test } from 'node:test';
import { describeValue, formatPath } from '../../src/document/issues.js';
import schema from '../../src/recipe/recipe.schema.json' with { type: 'json' };
import { parseSize, SIZE_FORM } from '../../src/document/units.js';
import { closest, editDistance } from '../../src/document/suggest.js';

test('sizes are integer bytes or binary units', () => {
  assert.equal(parseSize(512), 512);
  assert.equal(parseSize('512'), 512);
  assert.equal(parseSize('4K'), 4096);
  assert.equal(parseSize('4KiB'), 4096);
  assert.equal(parseSize('3MiB'), 3 * 1024 * 1024);
  assert.equal(parseSize('2G'), 2 * 1024 ** 3);
  assert.equal(parseSize('1TiB'), 1024 ** 4);
  for (const bad of ['', '0', '-1', '1.5G', '2 GiB', '2GB', '2gib', '012M', 0, -5, 1.5, null, '99999999999T', 2 ** 60]) {
    assert.equal(parseSize(bad), null, `${String(bad)}`);
  }
});

test('the schema accepts sizes in the same form parseSize reads', () => {
  assert.equal(schema.definitions.size.pattern, SIZE_FORM.source);
  assert.equal(schema.definitions.sizeOrNull.pattern, SIZE_FORM.source);
});

test('edit distance counts insertions, deletions and substitutions', () => {
  assert.equal(editDistance('', ''), 0);
  assert.equal(editDistance('packages', 'packages'), 0);
  assert.equal(editDistance('pakages', 'packages'), 1);
  assert.equal(editDistance('kitten', 'sitting'), 3);
  assert.equal(editDistance('abc', ''), 3);
});

test('closest suggests near keys only', () => {
  const keys = ['name', 'version', 'packages', 'usr-verity', 'uid', 'init'];
  assert.equal(closest('pakages', keys), 'packages');
  assert.equal(closest('verison', keys), 'version');
  assert.equal(closest('usr_verity', keys), 'usr-verity');
  assert.equal(closest('usrVerity', keys), 'usr-verity');
  assert.equal(closest('Name', keys), 'name');
  assert.equal(closest('uidd', keys), 'uid');
  assert.equal(closest('gid', keys), 'uid', 'one edit off a short key is a likely typo');
  assert.equal(closest('ado', keys), undefined, 'two edits off a short key are not');
  assert.equal(closest('vresoin', keys), undefined);
  assert.equal(closest('colour', keys), undefined);
});

test('paths and values are shown the way the recipe spells them', () => {
  assert.equal(formatPath([]), '');
  assert.equal(formatPath(['users', 0, 'uid']), 'users[0].uid');
  assert.equal(formatPath(['disk', 'usr-verity']), 'disk.usr-verity');
  assert.equal(formatPath(['containers', 1, 'env', '1X']), 'containers[1].env["1X"]');
  assert.equal(describeValue(42), '42');
  assert.equal(describeValue(644, '0644'), '0644');
  assert.equal(describeValue('x', 'ignored for strings'), '"x"');
  assert.equal(describeValue(null), 'an empty value');
  assert.equal(describeValue([]), 'an empty list');
  assert.equal(describeValue([1]), 'a list');
  assert.equal(describeValue({}), 'a mapping');
  assert.equal(describeValue('y'.repeat(100)), JSON.stringify(`${'y'.repeat(57)}...`));
});
