// The default recipe, built and booted in QEMU with OVMF: cairn's init sets up dm-verity with
// the manifest's root hash and hands over to systemd, which reaches its default target.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { SerialConsole } from './serial-console.js';

const run = promisify(execFile);
const cli = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
const recipe = fileURLToPath(new URL('../../../recipes/container-host.yaml', import.meta.url));
const skip = process.getuid?.() !== 0 && 'needs root';
const work = await mkdtemp(join(tmpdir(), 'cairn-e2e-host-'));
after(() => rm(work, { recursive: true, force: true }));

test('the container host boots to systemd\'s default target on a verified /usr', { skip, timeout: 900_000 }, async () => {
  await run(process.execPath, [cli, 'build', recipe, '--out', work, '--json'], { maxBuffer: 1 << 24 });
  const build = join(work, 'container-host/0.1.0');
  const manifest = JSON.parse(await readFile(join(build, 'manifest.json'), 'utf8'));
  const guest = await SerialConsole.boot({ disk: join(build, 'disk.raw'), snapshot: true });
  try {
    const [, hash] = await guest.waitFor(/cairn-init: verity usr ([0-9a-f]{64}) on \/dev\/vda\d+/, 240_000);
    assert.equal(hash, manifest.usr.rootHash);
    await guest.waitFor(/cairn-init: starting \/usr\/lib\/systemd\/systemd/, 60_000);
    await guest.waitFor(/Reached target[^\n]*multi-user\.target/, 400_000);
    await guest.waitFor(/login: /, 120_000);
  } finally {
    await guest.kill();
  }
  assert.doesNotMatch(guest.output, /cairn-init: FATAL/);
});
