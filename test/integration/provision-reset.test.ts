// Factory reset as the next boot's init does it (native/reset.c, through the init's self-test
// entry on a root made here): everything on the writable root goes but what the request keeps,
// /usr (the verified image's mount point) and lost+found stay, the request goes last, and a cut
// after any step ends the same once the next boot runs it again.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { promisify } from 'node:util';
import { NATIVE } from '../../src/install.js';
import { requestFactoryReset, RESET_REQUEST } from '../../src/provision/reset.js';

const run = promisify(execFile);
const work = await mkdtemp(join(tmpdir(), 'cairn-reset-'));
after(() => rm(work, { recursive: true, force: true }));

async function usedRoot(name: string): Promise<string> {
  const root = join(work, name);
  const files: Record<string, string> = {
    'etc/ssh/ssh_host_ed25519_key': 'private',
    'etc/ssh/ssh_host_ed25519_key.pub': 'public',
    'etc/passwd': 'root:x:0:0::/root:/bin/sh\nops:x:1001:1001::/home/ops:/bin/bash\n',
    'etc/machine-id': '0123456789abcdef0123456789abcdef\n',
    'var/lib/cairn/provision/provisioned.json': '{}',
    'var/lib/app/data': 'kept by path',
    'home/ops/.ssh/authorized_keys': 'ssh-ed25519 AAAA',
    'usr/lib/os-release': 'the image',
    'lost+found/x': '',
  };
  for (const [path, text] of Object.entries(files)) {
    await mkdir(join(root, path, '..'), { recursive: true });
    await writeFile(join(root, path), text);
  }
  return root;
}

function tree(root: string, dir = ''): string[] {
  return readdirSync(join(root, dir), { withFileTypes: true }).flatMap((e) => {
    const path = dir ? `${dir}/${e.name}` : e.name;
    return e.isDirectory() ? [`${path}/`, ...tree(root, path)] : [path];
  });
}

const AFTER = [
  'etc/',
  'etc/ssh/',
  'etc/ssh/ssh_host_ed25519_key',
  'etc/ssh/ssh_host_ed25519_key.pub',
  'lost+found/',
  'lost+found/x',
  'usr/',
  'usr/lib/',
  'usr/lib/os-release',
  'var/',
  'var/lib/',
  'var/lib/app/',
  'var/lib/app/data',
];

test('the root is wiped but the SSH host keys and a kept path; /usr and lost+found stay; the request is gone', async () => {
  const root = await usedRoot('whole');
  const kept = await requestFactoryReset(root, ['ssh-host-keys'], ['/var/lib/app']);
  assert.ok(kept.includes('etc/ssh/ssh_host_ed25519_key') && kept.includes('var/lib/app'));
  const { stdout } = await run(NATIVE.init(), ['--selftest-factory-reset', root]);
  assert.equal(stdout.trim(), 'ok, kept 3');
  assert.deepEqual(tree(root).sort(), AFTER);
  assert.equal(readFileSync(join(root, 'etc/ssh/ssh_host_ed25519_key'), 'utf8'), 'private');
  assert.ok(!existsSync(join(root, RESET_REQUEST)));
  // No request: nothing happens.
  assert.equal((await run(NATIVE.init(), ['--selftest-factory-reset', root])).stdout.trim(), 'ok, kept 0');
  assert.deepEqual(tree(root).sort(), AFTER);
});

for (const step of [1, 2, 3]) {
  test(`cut after step ${step}, the next boot finishes the same reset`, async () => {
    const root = await usedRoot(`cut-${step}`);
    await requestFactoryReset(root, ['ssh-host-keys'], ['/var/lib/app']);
    await run(NATIVE.init(), ['--selftest-factory-reset', root, String(step)]);
    assert.ok(existsSync(join(root, RESET_REQUEST)), 'the request outlives the cut');
    await run(NATIVE.init(), ['--selftest-factory-reset', root]);
    assert.deepEqual(tree(root).sort(), AFTER);
    assert.equal(readFileSync(join(root, 'var/lib/app/data'), 'utf8'), 'kept by path');
  });
}

test('a request that would keep /usr or climb out is refused, and the root stays as it was', async () => {
  await assert.rejects(requestFactoryReset(join(work, 'x'), [], ['/usr/lib']), /read-only and verified/);
  await assert.rejects(requestFactoryReset(join(work, 'x'), [], ['/etc/../usr']), /\. or \.\. component/);
  for (const line of ['../outside', 'usr/lib', '/etc']) {
    const root = await usedRoot(`hostile-${line.replace(/\W/g, '')}`);
    const before = tree(root).sort();
    await writeFile(join(root, RESET_REQUEST), `${line}\n`);
    await assert.rejects(run(NATIVE.init(), ['--selftest-factory-reset', root]), (err: { stdout: string }) =>
      /is not a path that can be kept/.test(err.stdout),
    );
    assert.deepEqual(tree(root).sort(), [...before, RESET_REQUEST].sort());
  }
});
