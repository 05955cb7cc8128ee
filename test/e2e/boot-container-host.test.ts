// The default recipe, with a container declared in it, built and booted in QEMU with OVMF:
// cairn's init sets up dm-verity with the manifest's root hash and hands over to systemd, which
// reaches its default target and starts the container from the shared, read-only /usr; the
// container answers an HTTP request from the test (a forwarded port).
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { parse, stringify } from 'yaml';
import { freePort } from './free-port.js';
import { SerialConsole } from './serial-console.js';

const run = promisify(execFile);
const cli = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
const recipe = fileURLToPath(new URL('../../../recipes/container-host.yaml', import.meta.url));
const skip = process.getuid?.() !== 0 && 'needs root';
const work = await mkdtemp(join(tmpdir(), 'cairn-e2e-host-'));
after(() => rm(work, { recursive: true, force: true }));

// What the container reports about itself: its host name, its PID view, and whether /usr is the
// host's read-only EROFS.
const SERVER = `
const fs = require('fs');
require('http').createServer((req, res) => {
  let usrWritable = true;
  try { fs.writeFileSync('/usr/cairn-probe', 'x'); } catch (e) { usrWritable = e.code; }
  const usr = fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\\n').find((l) => l.split(' ')[4] === '/usr') || '';
  res.end(JSON.stringify({ hostname: require('os').hostname(), pid: process.pid, processes: fs.readdirSync('/proc').filter((p) => /^\\d+$/.test(p)).length, usrWritable, usr }));
}).listen(8080, () => console.log('cairn-e2e: container listening'));
`;

test(
  "the container host boots to its default target on a verified /usr and starts its recipe's container from the shared /usr",
  { skip, timeout: 900_000 },
  async () => {
    const data = parse(await readFile(recipe, 'utf8')) as Record<string, unknown> & { kernel: { config: string } };
    data.kernel.config = fileURLToPath(new URL('../../../kernel-configs/container-host.config', import.meta.url));
    data.containers = [{ name: 'hello', command: ['/usr/bin/node', '-e', SERVER], net: 'host', memory: '128MiB', restart: 'always' }];
    // The container's unit logs to the serial console too, where a failure can be read.
    (data.files as unknown[]).push({
      path: '/usr/lib/systemd/system/cairn-container-hello.service.d/console.conf',
      mode: '0644',
      content: '[Service]\nStandardOutput=journal+console\nStandardError=journal+console\n',
    });
    const file = join(work, 'container-host.yaml');
    await writeFile(file, stringify(data));
    await run(process.execPath, [cli, 'build', file, '--out', work, '--json'], { maxBuffer: 1 << 24 });
    const build = join(work, 'container-host/0.1.0');
    const manifest = JSON.parse(await readFile(join(build, 'manifest.json'), 'utf8'));
    const port = await freePort();
    const guest = await SerialConsole.boot({ disk: join(build, 'disk.raw'), snapshot: true, network: true, forward: [{ host: port, guest: 8080 }] });
    try {
      const [, hash] = await guest.waitFor(/cairn-init: verity usr ([0-9a-f]{64}) on \/dev\/vda\d+ \(hash/, 240_000);
      assert.equal(hash, manifest.usr.rootHash);
      await guest.waitFor(/cairn-init: starting \/usr\/lib\/systemd\/systemd/, 60_000);
      await guest.waitFor(/Reached target[^\n]*multi-user\.target/, 400_000);
      await guest.waitFor(/login: /, 120_000);
      // The container's unit starts with the system; ask until it answers.
      let answer: { hostname: string; pid: number; processes: number; usrWritable: boolean | string; usr: string } | undefined;
      for (let i = 0; i < 120 && !answer; i++) {
        answer = await fetch(`http://127.0.0.1:${port}/`).then(
          (r) => r.json() as Promise<typeof answer>,
          () => undefined,
        );
        if (!answer) await sleep(2000);
      }
      assert.ok(
        answer,
        `the container answered; console lines about it:\n${guest.output
          .split('\n')
          .filter((l) => /hello|cairn/i.test(l))
          .join('\n')
          .slice(-4000)}`,
      );
      assert.equal(answer.hostname, 'hello');
      assert.ok(answer.processes <= 3, `its own PID namespace (${answer.processes} processes)`);
      assert.equal(answer.usrWritable, 'EROFS', '/usr is read-only');
      assert.match(answer.usr, / \/usr .* - erofs \/dev\/(dm-0|mapper\/usr) ro/, `the host's verified /usr: ${answer.usr}`);
    } finally {
      await guest.kill();
    }
    assert.doesNotMatch(guest.output, /cairn-init: FATAL/);
  },
);
