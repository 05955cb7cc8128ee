// Where a host's first boot finds its config, in this order:
// - QEMU's fw_cfg entry opt/com.coreos/config (the name Ignition reads on QEMU, so one
//   `-fw_cfg name=opt/com.coreos/config,file=…` serves both);
// - a config drive: a file system labelled cidata (NoCloud: user-data) or config-2
//   (OpenStack: openstack/latest/user_data);
// - an EC2-style metadata service (IMDSv2: a session token, then /latest/user-data), asked only
//   on a machine whose firmware names a cloud that serves one: anywhere else that address is
//   not ours to talk to.
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { request } from 'undici';
import { CairnError } from '../errors.js';
import { MAX_CONFIG_BYTES } from './config.js';

const run = promisify(execFile);

export const FW_CFG_NAME = 'opt/com.coreos/config';
export const METADATA_URL = 'http://169.254.169.254';
const CONFIG_DRIVES: [string, string][] = [
  ['cidata', 'user-data'],
  ['config-2', 'openstack/latest/user_data'],
];
/** Firmware vendors (DMI sys_vendor, product_name) of clouds with an EC2-style metadata service. */
const METADATA_CLOUDS = [/^Amazon EC2$/, /^OpenStack/, /^Alibaba Cloud/];

export interface FoundConfig {
  source: string;
  text: string;
}

async function readBounded(path: string, what: string): Promise<string> {
  const data = await readFile(path);
  if (data.length > MAX_CONFIG_BYTES) throw new CairnError(`${what}: ${data.length} bytes, more than the ${MAX_CONFIG_BYTES} a first boot reads`);
  return data.toString('utf8');
}

export async function fromFwCfg(sysfs = '/sys/firmware/qemu_fw_cfg'): Promise<FoundConfig | null> {
  // The driver is a module of the cloud kernels; udev loads it for QEMU's ACPI device, but not always before us.
  await run('modprobe', ['qemu_fw_cfg']).catch(() => undefined);
  const raw = join(sysfs, 'by_name', FW_CFG_NAME, 'raw');
  const text = await readBounded(raw, `fw_cfg ${FW_CFG_NAME}`).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return null;
    throw err;
  });
  return text === null ? null : { source: `fw_cfg ${FW_CFG_NAME}`, text };
}

export async function fromConfigDrive(): Promise<FoundConfig | null> {
  for (const [label, file] of CONFIG_DRIVES) {
    const { stdout } = await run('blkid', ['-c', '/dev/null', '-t', `LABEL=${label}`, '-o', 'device']).catch(() => ({ stdout: '' }));
    const device = stdout.split('\n')[0]?.trim();
    if (!device) continue;
    const mnt = await mkdtemp(join(tmpdir(), 'cairn-config-drive-'));
    try {
      await run('mount', ['-o', 'ro,nosuid,nodev,noexec', device, mnt]);
      try {
        const text = await readBounded(join(mnt, file), `${device} (${label}) ${file}`).catch((err: NodeJS.ErrnoException) => {
          if (err.code === 'ENOENT') throw new CairnError(`config drive ${device} (${label}) has no ${file}`, `put the Ignition config in ${file}`);
          throw err;
        });
        return { source: `config drive ${device} (${label}) ${file}`, text };
      } finally {
        await run('umount', [mnt]);
      }
    } finally {
      await rm(mnt, { recursive: true, force: true });
    }
  }
  return null;
}

/** IMDSv2: a token first, then the user data with it. A 404 means the machine was given none. */
export async function fromMetadata(base = METADATA_URL, timeoutMs = 10_000): Promise<FoundConfig | null> {
  const signal = AbortSignal.timeout(timeoutMs);
  const token = await request(`${base}/latest/api/token`, { method: 'PUT', headers: { 'x-aws-ec2-metadata-token-ttl-seconds': '300' }, signal });
  if (token.statusCode !== 200) {
    await token.body.dump();
    throw new CairnError(`${base}/latest/api/token: HTTP ${token.statusCode}`, 'the metadata service does not speak IMDSv2');
  }
  const session = (await token.body.text()).trim();
  const res = await request(`${base}/latest/user-data`, { headers: { 'x-aws-ec2-metadata-token': session }, signal });
  if (res.statusCode === 404) {
    await res.body.dump();
    return null;
  }
  if (res.statusCode !== 200) {
    await res.body.dump();
    throw new CairnError(`${base}/latest/user-data: HTTP ${res.statusCode}`);
  }
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of res.body) {
    total += (chunk as Buffer).length;
    if (total > MAX_CONFIG_BYTES) {
      res.body.destroy();
      throw new CairnError(`${base}/latest/user-data: more than the ${MAX_CONFIG_BYTES} bytes a first boot reads`);
    }
    chunks.push(chunk as Buffer);
  }
  return { source: `metadata service ${base}`, text: Buffer.concat(chunks).toString('utf8') };
}

async function onMetadataCloud(dmi = '/sys/class/dmi/id'): Promise<boolean> {
  const names = await Promise.all(
    ['sys_vendor', 'product_name'].map((f) =>
      readFile(join(dmi, f), 'utf8').then(
        (t) => t.trim(),
        () => '',
      ),
    ),
  );
  return names.some((n) => METADATA_CLOUDS.some((re) => re.test(n)));
}

/** The first config any source offers, or null when this host was given none. */
export async function findConfig(): Promise<FoundConfig | null> {
  return (await fromFwCfg()) ?? (await fromConfigDrive()) ?? ((await onMetadataCloud()) ? await fromMetadata() : null);
}
