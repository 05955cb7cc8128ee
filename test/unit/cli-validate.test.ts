import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { test } from 'node:test';
import { pathToFileURL } from 'node:url';
import { cairnRoot } from '../../src/install.js';

const root = cairnRoot();
const bad = join(root, 'test/fixtures/recipes/bad/14-package-name-number.yaml');
const commandModule = pathToFileURL(join(import.meta.dirname, '../../src/cli/validate.js')).href;

// Same error printing as src/cli/main.ts, with only the validate command registered; in a
// child process because the test runner itself talks to its parent over stdout.
const driver = `
import yargs from 'yargs';
import validate from ${JSON.stringify(commandModule)};
try {
  await yargs(process.argv.slice(1)).command(validate).strict().fail(false).parseAsync();
} catch (err) {
  process.stderr.write('cairn: ' + err.message + '\\n');
  process.exitCode = 1;
}`;

function cairnValidate(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const result = spawnSync(process.execPath, ['--input-type=module', '-e', driver, 'validate', ...args], {
    cwd: root,
    encoding: 'utf8',
  });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

test('validate reports a good recipe with its name, version and package count', () => {
  const file = join(root, 'recipes/tiny.yaml');
  assert.deepEqual(cairnValidate(file), { status: 0, stdout: `${file}: ok (tiny 0.1.0, 3 packages)\n`, stderr: '' });
});

test('validate prints every problem and exits non-zero', () => {
  const result = cairnValidate(bad);
  assert.equal(result.status, 1);
  assert.equal(result.stdout, '');
  assert.equal(
    result.stderr,
    `cairn: ${bad} has 1 problem:\n${bad}:7:5: packages[2]: expected a Debian package name, or NAME/SUITE for one from base.extra-suites, got 42\n`,
  );
});

test('validate --json lists the problems and exits non-zero', () => {
  const result = cairnValidate(bad, '--json');
  assert.equal(result.status, 1);
  assert.deepEqual(JSON.parse(result.stdout), {
    ok: false,
    errors: [
      { file: bad, line: 7, column: 5, path: 'packages[2]', message: 'expected a Debian package name, or NAME/SUITE for one from base.extra-suites, got 42' },
    ],
  });
});

test('validate --json on a good recipe says ok', () => {
  const result = cairnValidate(join(root, 'recipes/container-host.yaml'), '--json');
  assert.equal(result.status, 0);
  assert.deepEqual(JSON.parse(result.stdout), { ok: true, errors: [] });
});
