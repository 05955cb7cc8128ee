// Runs a disk image in QEMU with OVMF (UEFI) and the serial console on stdio, for `cairn boot`
// and the end-to-end tests. Software emulation unless asked for KVM: a broken /dev/kvm hangs.
import { spawn, type ChildProcess } from 'node:child_process';
import { copyFile, mkdtemp, rm } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CairnError } from '../errors.js';

const OVMF_CODE = ['/usr/share/OVMF/OVMF_CODE_4M.fd', '/usr/share/OVMF/OVMF_CODE.fd'];
const OVMF_VARS = ['/usr/share/OVMF/OVMF_VARS_4M.fd', '/usr/share/OVMF/OVMF_VARS.fd'];

export interface QemuOptions {
  disk: string;
  memoryMiB?: number;
  accel?: 'tcg' | 'kvm';
  /** Discard the guest's writes (boot counters, first-boot /etc) instead of keeping them in the image. */
  snapshot?: boolean;
  /** Guest network through QEMU user networking (the host's loopback is 10.0.2.2 inside). */
  network?: boolean;
  /** With network: the host name QEMU's DHCP server gives the guest. */
  dhcpHostname?: string;
  /** With network: host loopback ports forwarded to guest ports (TCP). */
  forward?: { host: number; guest: number }[];
  /** An Ignition config for the guest's first boot, passed as fw_cfg opt/com.coreos/config. */
  ignition?: string;
  /** stdio for an interactive console, pipe to read the serial output. */
  stdio: 'inherit' | 'pipe';
}

export interface QemuMachine {
  process: ChildProcess;
  /** Resolves with the exit code when QEMU ends; the OVMF variables copy is removed then. */
  exited: Promise<number | null>;
}

function firstExisting(paths: string[], what: string): string {
  const found = paths.find((p) => existsSync(p));
  if (!found) throw new CairnError(`${what} not found (looked for ${paths.join(', ')})`, 'apt-get install ovmf');
  return found;
}

export async function startQemu(options: QemuOptions): Promise<QemuMachine> {
  if (!existsSync(options.disk)) throw new CairnError(`${options.disk} does not exist`, 'build it first: cairn build RECIPE');
  if (options.ignition !== undefined && !existsSync(options.ignition))
    throw new CairnError(`${options.ignition} does not exist`, 'name an Ignition config (JSON)');
  // QEMU splits -fw_cfg options at commas; a path with one would be read as another option.
  if (options.ignition?.includes(','))
    throw new CairnError(`${options.ignition}: QEMU cannot take a path with a comma for fw_cfg`, 'copy the config to a path without commas');
  const code = firstExisting(OVMF_CODE, 'OVMF firmware');
  const varsTemplate = firstExisting(OVMF_VARS, 'OVMF variable store');
  const work = await mkdtemp(join(tmpdir(), 'cairn-qemu-'));
  const vars = join(work, 'OVMF_VARS.fd');
  await copyFile(varsTemplate, vars);
  const args = [
    '-accel',
    options.accel ?? 'tcg',
    '-m',
    String(options.memoryMiB ?? 1024),
    '-smp',
    '2',
    '-nographic',
    '-no-reboot',
    '-drive',
    `if=pflash,format=raw,unit=0,readonly=on,file=${code}`,
    '-drive',
    `if=pflash,format=raw,unit=1,file=${vars}`,
    '-drive',
    `file=${options.disk},if=virtio,format=raw${options.snapshot ? ',snapshot=on' : ''}`,
    '-serial',
    'mon:stdio',
    ...(options.ignition ? ['-fw_cfg', `name=opt/com.coreos/config,file=${options.ignition}`] : []),
    ...(options.network
      ? [
          '-nic',
          [
            'user,model=virtio-net-pci',
            ...(options.dhcpHostname ? [`hostname=${options.dhcpHostname}`] : []),
            ...(options.forward ?? []).map((f) => `hostfwd=tcp:127.0.0.1:${f.host}-:${f.guest}`),
          ].join(','),
        ]
      : ['-nic', 'none']),
  ];
  const child = spawn('qemu-system-x86_64', args, { stdio: options.stdio === 'inherit' ? 'inherit' : ['pipe', 'pipe', 'pipe'] });
  const exited = new Promise<number | null>((resolve, reject) => {
    child.on('error', (err) => reject(new CairnError(`cannot start qemu-system-x86_64: ${err.message}`, 'apt-get install qemu-system-x86')));
    child.on('exit', (code) => resolve(code));
  }).finally(() => rm(work, { recursive: true, force: true }));
  return { process: child, exited };
}
