// `cairn run oci:DIR` and `oci-archive:FILE`: an OCI image (layers with a whiteout, a config
// with entrypoint, env and working directory) runs with its own root instead of the shared /usr,
// and its unpacked root goes with the container.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { layoutArchive, makeLayout } from '../fixtures/oci-layout.js';
import { RuntimeSandbox } from '../fixtures/runtime.js';

const skip = process.getuid?.() !== 0 && 'needs root';
let work: string;
let sandbox: RuntimeSandbox;

const SHOW_C = `#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
int main(int argc, char **argv) {
    char cwd[256], line[256];
    FILE *f = fopen("/data/kept", "r");
    if (!f || !fgets(line, sizeof line, f)) return 2;
    printf("kept=%s", line);
    printf("gone=%s\\n", access("/data/gone", F_OK) == 0 ? "present" : "absent");
    printf("greeting=%s\\n", getenv("GREETING") ? getenv("GREETING") : "");
    printf("cwd=%s\\n", getcwd(cwd, sizeof cwd) ? cwd : "?");
    printf("arg=%s\\n", argc > 1 ? argv[1] : "");
    printf("usr=%s\\n", access("/usr/bin/node", F_OK) == 0 ? "host" : "own");
    return 0;
}
`;

before(async () => {
  if (skip) return;
  work = await mkdtemp(join(tmpdir(), 'cairn-oci-run-'));
  sandbox = await RuntimeSandbox.create('cairn-oci-sandbox-');
  await writeFile(join(work, 'show.c'), SHOW_C);
  execFileSync('gcc', ['-static', '-O1', '-o', join(work, 'show'), join(work, 'show.c')]);
  const show = await readFile(join(work, 'show'));
  await makeLayout(join(work, 'layout'), {
    layers: [
      [
        { path: 'bin', type: 'directory', mode: 0o755 },
        { path: 'bin/show', content: show, mode: 0o755 },
        { path: 'data', type: 'directory', mode: 0o755 },
        { path: 'data/kept', content: 'from layer 1\n' },
        { path: 'data/gone', content: 'deleted by layer 2\n' },
        { path: 'srv', type: 'directory', mode: 0o755 },
      ],
      [{ path: 'data/.wh.gone', content: '' }],
    ],
    config: { Entrypoint: ['/bin/show'], Cmd: ['default-arg'], Env: ['GREETING=hello from the image'], WorkingDir: '/srv' },
  });
  await writeFile(join(work, 'image.tar'), await layoutArchive(join(work, 'layout')));
});

after(async () => {
  await sandbox?.destroy();
  if (work) await rm(work, { recursive: true, force: true });
});

test('an OCI layout runs with its own root: layers in order, whiteouts honoured, its entrypoint, env and working directory', { skip }, async () => {
  const r = sandbox.cairn('run', `oci:${join(work, 'layout')}`);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^kept=from layer 1$/m);
  assert.match(r.stdout, /^gone=absent$/m);
  assert.match(r.stdout, /^greeting=hello from the image$/m);
  assert.match(r.stdout, /^cwd=\/srv$/m);
  assert.match(r.stdout, /^arg=default-arg$/m);
  assert.match(r.stdout, /^usr=own$/m, 'not the host /usr');
  // A foreground run removes its container, unpacked root included.
  assert.deepEqual(await readdir(sandbox.dataRoot).catch(() => []), []);
});

test('an oci-archive runs the same; arguments after -- replace the image Cmd and keep its Entrypoint', { skip }, async () => {
  const r = sandbox.cairn('run', `oci-archive:${join(work, 'image.tar')}`, '--', 'given-arg');
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^arg=given-arg$/m);
  assert.match(r.stdout, /^kept=from layer 1$/m);
});

test('a broken image reference is one clear error and leaves no container behind', { skip }, async () => {
  const r = sandbox.cairn('run', `oci:${join(work, 'nowhere')}`);
  assert.notEqual(r.code, 0);
  assert.match(r.stderr.split('\n')[0]!, /^cairn: oci:.*nowhere: .*nowhere does not exist$/);
  assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
  assert.deepEqual(await readdir(sandbox.dataRoot).catch(() => []), []);
});
