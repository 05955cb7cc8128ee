// The default recipe, with a container declared in it, built once and booted in QEMU with OVMF
// as a fleet would boot it: cairn's init sets up dm-verity with the manifest's root hash and
// hands over to systemd; the first boot provisions the host from an Ignition config given
// through fw_cfg (a user with an SSH key and a password, a file, an enabled unit); the test logs
// in with the OpenSSH client and on the serial console, checks the host from inside, and the
// recipe's container answers over a forwarded port. A second boot does not provision again, a
// second machine from the same disk.raw gets its own host keys and machine-id, and broken
// configs stop the first boot before any service they would configure starts.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { parse, stringify } from 'yaml';
import { readGpt } from '../../src/image/gpt.js';
import { copySparse } from './disk-copy.js';
import { freePort } from './free-port.js';
import { SerialConsole } from './serial-console.js';

const run = promisify(execFile);
const cli = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
const recipe = fileURLToPath(new URL('../../../recipes/container-host.yaml', import.meta.url));
const skip = process.getuid?.() !== 0 && 'needs root';
const work = await mkdtemp(join(tmpdir(), 'cairn-e2e-host-'));
after(() => rm(work, { recursive: true, force: true }));

const PASSWORD = 'cairn-e2e-secret';
const APP_FILE = 'provisioned by the test\n';

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

let disk: string;
let rootHash: string;
let mirrorHost: string;
let key: string;
let publicKey: string;

function ignition(extra: { files?: unknown[]; storage?: Record<string, unknown>; hostname?: boolean } = {}): unknown {
  return {
    ignition: { version: '3.4.0' },
    passwd: { users: [{ name: 'ops', passwordHash: passwordHash, sshAuthorizedKeys: [publicKey], groups: ['sudo'] }] },
    storage: {
      files: [
        ...(extra.hostname === false ? [] : [{ path: '/etc/hostname', mode: 420, contents: { source: 'data:,e2e-host%0A' } }]),
        { path: '/etc/e2e/app.conf', mode: 420, contents: { source: `data:;base64,${Buffer.from(APP_FILE).toString('base64')}` } },
        ...(extra.files ?? []),
      ],
      ...extra.storage,
    },
    systemd: {
      units: [
        {
          name: 'e2e-app.service',
          enabled: true,
          contents: '[Unit]\nDescription=e2e app\n\n[Service]\nExecStart=/usr/bin/sleep infinity\n\n[Install]\nWantedBy=multi-user.target\n',
        },
      ],
    },
  };
}
let passwordHash: string;

async function writeConfig(name: string, config: unknown): Promise<string> {
  const path = join(work, `${name}.ign`);
  await writeFile(path, JSON.stringify(config));
  // The operator's check before anything boots.
  await run(process.execPath, [cli, 'provision', 'check', path]);
  return path;
}

/** A fresh machine from the built image: its own copy of disk.raw, on a disk `extraBytes` larger. */
async function freshDisk(name: string, extraBytes = 0): Promise<string> {
  const copy = join(work, `${name}.raw`);
  await copySparse(disk, copy, extraBytes);
  return copy;
}

function ssh(port: number, command: string): Promise<string> {
  return run(
    'ssh',
    [
      '-i',
      key,
      '-p',
      String(port),
      '-o',
      'BatchMode=yes',
      '-o',
      'StrictHostKeyChecking=no',
      '-o',
      'UserKnownHostsFile=/dev/null',
      '-o',
      'ConnectTimeout=20',
      '-o',
      'LogLevel=ERROR',
      'ops@127.0.0.1',
      command,
    ],
    { timeout: 120_000 },
  ).then((r) => r.stdout);
}

/** What named the host, from its journal (for a failed hostname check). */
function naming(port: number): Promise<string> {
  return ssh(port, `echo ${PASSWORD} | sudo -S -p '' journalctl -b -u systemd-networkd -u systemd-hostnamed -u polkit --no-pager | tail -25`).catch(
    (e: Error) => e.message,
  );
}

/** Asks until sshd answers (it starts once provisioning is done). */
async function sshWhenUp(port: number, guest: SerialConsole): Promise<void> {
  for (let i = 0; i < 90; i++) {
    if (
      await ssh(port, 'true').then(
        () => true,
        () => false,
      )
    )
      return;
    await sleep(3000);
  }
  throw new Error(`ssh never answered; console ends with:\n${guest.output.slice(-4000)}`);
}

before(async () => {
  if (skip) return;
  const data = parse(await readFile(recipe, 'utf8')) as Record<string, unknown> & { kernel: { config: string }; base: { mirror: string } };
  mirrorHost = new URL(data.base.mirror).hostname;
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
  disk = join(build, 'disk.raw');
  rootHash = JSON.parse(await readFile(join(build, 'manifest.json'), 'utf8')).usr.rootHash;
  key = join(work, 'id_ed25519');
  await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'cairn-e2e', '-f', key]);
  publicKey = (await readFile(`${key}.pub`, 'utf8')).trim();
  passwordHash = (await run('openssl', ['passwd', '-6', PASSWORD])).stdout.trim();
});

let firstHost: { hostKey: string; machineId: string; provisionedAt: string; disk: string };

test(
  'a provisioned container host: SSH and console logins, the config applied, a verified /usr, names resolve, the recipe container answers',
  { skip, timeout: 1_200_000 },
  async (t) => {
    // A cloud disk larger than the image: the root grows into the rest on the first boot.
    const machineDisk = await freshDisk('first', 1 << 30);
    const config = await writeConfig('host', ignition());
    const sshPort = await freePort();
    const appPort = await freePort();
    const guest = await SerialConsole.boot({
      disk: machineDisk,
      network: true,
      ignition: config,
      forward: [
        { host: sshPort, guest: 22 },
        { host: appPort, guest: 8080 },
      ],
    });
    try {
      const [, hash] = await guest.waitFor(/cairn-init: verity usr ([0-9a-f]{64}) on \/dev\/vda\d+ \(hash/, 240_000);
      assert.equal(hash, rootHash);
      await guest.waitFor(/cairn: provisioning from fw_cfg opt\/com\.coreos\/config/, 400_000);
      await guest.waitFor(/Reached target[^\n]*multi-user\.target/, 400_000);
      await sshWhenUp(sshPort, guest);
      const facts = await ssh(
        sshPort,
        [
          'id',
          'cat /etc/e2e/app.conf',
          'systemctl is-active e2e-app.service',
          'findmnt -n -o SOURCE,FSTYPE,OPTIONS /usr',
          'hostname',
          `getent hosts ${mirrorHost} | head -1`,
          'cat /etc/machine-id',
          'cat /etc/ssh/ssh_host_ed25519_key.pub',
          // The record is root's alone (0600): read through sudo, with the config's password.
          `echo ${PASSWORD} | sudo -S -p '' grep -o '"at": "[^"]*"' /var/lib/cairn/provision/provisioned.json`,
          'df -B1 --output=size / | tail -1',
          'systemctl is-system-running --wait; systemctl --failed --no-legend --plain',
        ].join('; echo ---; '),
      );
      const [id, appConf, appActive, usr, hostname, resolved, machineId, hostKey, provisionedAt, rootSize, state] = facts.split('---\n').map((s) => s.trim());
      assert.match(id!, /^uid=1001\(ops\) gid=1001\(ops\) groups=1001\(ops\),27\(sudo\)$/);
      assert.equal(appConf, APP_FILE.trim());
      assert.equal(appActive, 'active');
      assert.match(usr!, /^\/dev\/mapper\/usr erofs ro,/);
      assert.equal(hostname, 'e2e-host');
      assert.match(resolved!, new RegExp(`^[0-9a-f.:]+\\s+.*${mirrorHost.replace(/\./g, '\\.')}`), `${mirrorHost} resolves through the network's DNS`);
      const imageRoot = (await readGpt(disk)).partitions.find((p) => p.label === 'root')!.size;
      assert.ok(Number(rootSize) > imageRoot, `the root grew to the larger disk: ${rootSize} bytes, the image's root partition ${imageRoot}`);
      assert.equal(state, 'running', `every unit came up; systemctl says:\n${state}`);
      assert.match(provisionedAt!, /^"at": "20\d\d-/, 'the provisioning record');
      firstHost = { hostKey: hostKey!, machineId: machineId!, provisionedAt: provisionedAt!, disk: machineDisk };

      // The recipe's container, from the shared /usr.
      let answer: { hostname: string; processes: number; usrWritable: boolean | string; usr: string } | undefined;
      for (let i = 0; i < 60 && !answer; i++) {
        answer = await fetch(`http://127.0.0.1:${appPort}/`).then(
          (r) => r.json() as Promise<typeof answer>,
          () => undefined,
        );
        if (!answer) await sleep(2000);
      }
      assert.ok(answer, 'the container answered');
      assert.equal(answer.hostname, 'hello');
      assert.ok(answer.processes <= 3, `its own PID namespace (${answer.processes} processes)`);
      assert.equal(answer.usrWritable, 'EROFS', '/usr is read-only');
      assert.match(answer.usr, / \/usr .* - erofs \/dev\/(dm-0|mapper\/usr) ro/, `the host's verified /usr: ${answer.usr}`);

      // The serial console: the password from the config logs in.
      await guest.waitFor(/e2e-host login: /, 120_000);
      guest.type('ops');
      await guest.waitFor(/Password: /, 60_000);
      guest.type(PASSWORD);
      await guest.waitFor(/ops@e2e-host:~\$ /, 120_000);
      guest.type('echo console-$((6*7))');
      await guest.waitFor(/console-42/, 60_000);
      await ssh(sshPort, 'sync');
    } catch (err) {
      t.diagnostic(`console, cairn lines:\n${guest.lines(/cairn|Failed|FAILED/, 6000)}`);
      throw err;
    } finally {
      await guest.kill();
    }
    assert.doesNotMatch(guest.output, /cairn-init: FATAL/);
  },
);

test(
  'the second boot does not provision again; a factory reset keeps the host keys and provisions anew; another machine gets its own identity and its name from DHCP',
  { skip, timeout: 1_200_000 },
  async (t) => {
    assert.ok(firstHost, 'the first host was provisioned');
    // No /etc/hostname in this one: a host it provisions takes its name from DHCP.
    const other = await writeConfig('other', ignition({ hostname: false, files: [{ path: '/etc/e2e/second.conf', contents: { source: 'data:,no' } }] }));
    const facts = `hostname; echo ---; cat /etc/machine-id; echo ---; cat /etc/ssh/ssh_host_ed25519_key.pub; echo ---; echo ${PASSWORD} | sudo -S -p '' grep -o '"at": "[^"]*"' /var/lib/cairn/provision/provisioned.json; echo ---; cat /etc/e2e/second.conf 2>&1 || true; echo ---; cat /etc/hostname 2>&1 || true`;
    for (const [name, machineDisk] of [
      ['again', firstHost.disk],
      ['reset', firstHost.disk],
      ['fresh', await freshDisk('second')],
    ] as const) {
      const sshPort = await freePort();
      const guest = await SerialConsole.boot({
        disk: machineDisk,
        network: true,
        ignition: other,
        dhcpHostname: 'dhcp-host',
        forward: [{ host: sshPort, guest: 22 }],
      });
      try {
        await guest.waitFor(/Reached target[^\n]*multi-user\.target/, 600_000);
        await sshWhenUp(sshPort, guest);
        const [hostname, machineId, hostKey, provisionedAt, second, hostnameFile] = (await ssh(sshPort, facts)).split('---\n').map((s) => s.trim());
        if (name === 'again') {
          assert.deepEqual([machineId, hostKey, provisionedAt], [firstHost.machineId, firstHost.hostKey, firstHost.provisionedAt], 'the same host as before');
          assert.equal(hostname, 'e2e-host', "the provisioned name wins over DHCP's");
          assert.match(second!, /No such file/, 'the new config was not applied');
          assert.doesNotMatch(guest.output, /cairn: provisioning from/);
          // The operator resets the host, keeping its SSH host keys; it reboots (QEMU ends).
          await ssh(sshPort, `echo ${PASSWORD} | sudo -S cairn provision reset --keep ssh-host-keys --reboot`).catch(() => undefined);
          await guest.exit(300_000);
        } else if (name === 'reset') {
          await guest.waitFor(/cairn-init: factory reset: the writable root was wiped, 6 kept paths restored/, 1000);
          assert.equal(hostKey, firstHost.hostKey, 'the kept SSH host key');
          assert.notEqual(machineId, firstHost.machineId, 'a new machine-id, as on a first boot');
          assert.notEqual(provisionedAt, firstHost.provisionedAt, 'provisioned again');
          assert.equal(second, 'no', 'from the config it was given now');
          assert.match(hostnameFile!, /No such file/, "the first config's /etc/hostname went with the reset");
          assert.equal(hostname, 'dhcp-host', `its name from DHCP; networkd and hostnamed say:\n${await naming(sshPort)}`);
        } else {
          assert.notEqual(machineId, firstHost.machineId, 'its own machine-id');
          assert.notEqual(hostKey, firstHost.hostKey, 'its own SSH host key');
          assert.equal(second, 'no', 'its own first boot applied its config');
          assert.equal(hostname, 'dhcp-host', `its name from DHCP; networkd and hostnamed say:\n${await naming(sshPort)}`);
        }
      } catch (err) {
        t.diagnostic(`${name}: console, cairn lines:\n${guest.lines(/cairn|Failed|FAILED/, 6000)}`);
        throw err;
      } finally {
        await guest.kill();
      }
    }
  },
);

test('a broken config stops the first boot with a clear console message, and nothing it configures starts', { skip, timeout: 900_000 }, async () => {
  const hash = `sha512-${'0'.repeat(128)}`;
  const cases: [string, unknown, RegExp][] = [
    ['unsupported', { ...(ignition() as object), kernelArguments: { shouldExist: ['quiet'] } }, /kernelArguments: cairn does not implement kernel arguments/],
    [
      'bad-hash',
      ignition({ files: [{ path: '/etc/e2e/tampered', contents: { source: 'data:,x', verification: { hash } } }] }),
      /the data: URL has sha512 [0-9a-f]+, but the config's verification\.hash says 0{128}/,
    ],
  ];
  for (const [name, config, message] of cases) {
    const path = join(work, `${name}.ign`);
    await writeFile(path, JSON.stringify(config));
    const sshPort = await freePort();
    const guest = await SerialConsole.boot({ disk, snapshot: true, network: true, ignition: path, forward: [{ host: sshPort, guest: 22 }] });
    try {
      await guest.waitFor(message, 600_000);
      await guest.waitFor(/emergency|Emergency/, 120_000);
      await sleep(15_000);
      assert.equal(
        await ssh(sshPort, 'true').then(
          () => 'answered',
          () => 'refused',
        ),
        'refused',
        'sshd did not start',
      );
      assert.doesNotMatch(guest.output, /Started[^\n]*e2e-app\.service/);
      assert.doesNotMatch(guest.output, /e2e-host login: /);
    } finally {
      await guest.kill();
    }
  }
});
