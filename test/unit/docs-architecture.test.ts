// docs/architecture.md is the map of the code: every folder of src/ has its row there, and no row
// names a folder that is gone.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { cairnRoot } from '../../src/install.js';

test('docs/architecture.md has a row for every folder of src/, and only for those', () => {
  const doc = readFileSync(join(cairnRoot(), 'docs/architecture.md'), 'utf8');
  const rows = [...doc.matchAll(/^\| `src\/([a-z-]+)\/` \|/gm)].map((m) => m[1]!);
  const folders = readdirSync(join(cairnRoot(), 'src'), { withFileTypes: true })
    .filter((e) => e.isDirectory())
    .map((e) => e.name);
  assert.deepEqual([...rows].sort(), [...folders].sort());
  assert.equal(new Set(rows).size, rows.length, 'each folder once');
  assert.equal(rows.at(-1), 'cli', 'the CLI, which knows every folder, comes last');
});
