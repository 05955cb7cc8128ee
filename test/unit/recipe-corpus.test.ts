import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { cairnRoot } from '../../src/install.js';
import { formatIssue, loadRecipe, RecipeError } from '../../src/recipe/load.js';

// Messages name files relative to the working directory, so the corpus runs from the repo root.
process.chdir(cairnRoot());
const dir = 'test/fixtures/recipes/bad';
const expected = JSON.parse(readFileSync(join(dir, 'expected.json'), 'utf8')) as Record<string, string[]>;
const recipes = readdirSync(dir)
  .filter((f) => f.endsWith('.yaml'))
  .sort();

test('every broken recipe has its expected errors written down, and there are enough of them', () => {
  assert.deepEqual(recipes, Object.keys(expected).sort());
  assert.ok(recipes.length >= 35, `only ${recipes.length} broken recipes`);
});

for (const name of recipes) {
  test(`broken recipe ${name} is rejected with exactly the expected errors`, async () => {
    const file = `${dir}/${name}`;
    const error = await loadRecipe(file).then(
      () => assert.fail(`${file} was accepted`),
      (err: unknown) => err,
    );
    assert.ok(error instanceof RecipeError, `${file}: ${String(error)}`);
    assert.deepEqual(error.issues.map(formatIssue), expected[name]);
    assert.equal(error.message.split('\n').slice(1).join('\n'), expected[name]!.join('\n'));
  });
}
