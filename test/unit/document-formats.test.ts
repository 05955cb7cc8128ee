import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { FORMATS } from '../../src/document/formats.js';
import { cairnRoot } from '../../src/install.js';

test('every schema that pins a format tag pins one of the named formats, and each is pinned once', () => {
  const pinned: (string | number)[] = [];
  const folders = readdirSync(join(cairnRoot(), 'src'), { withFileTypes: true }).filter((e) => e.isDirectory());
  for (const folder of folders) {
    const dir = join(cairnRoot(), 'src', folder.name);
    const files = readdirSync(dir, { withFileTypes: true }).filter((e) => e.isFile() && e.name.endsWith('.schema.json'));
    for (const file of files) {
      const schema = JSON.parse(readFileSync(join(dir, file.name), 'utf8')) as { properties?: { format?: { const?: string | number } } };
      const tag = schema.properties?.format?.const;
      if (tag !== undefined) pinned.push(tag);
    }
  }
  const named = new Set<string | number>(Object.values(FORMATS));
  for (const tag of pinned) assert.ok(named.has(tag), `${tag} is not in FORMATS`);
  assert.equal(new Set(pinned).size, pinned.length);
  assert.ok(pinned.length >= 5, `found ${pinned.length} schemas with a format`);
});
