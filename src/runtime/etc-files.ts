// The container's own /etc, generated from the spec: who exists (passwd, group), its names
// (hostname, hosts) and how it resolves (resolv.conf, nsswitch.conf). Nothing of the host's
// /etc goes in except, with --net host, the host's resolver configuration.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ContainerSpec, NetMode } from './spec.js';

const RESOLV_MAX = 64 * 1024;

export interface EtcInput {
  hostname: string;
  user: { uid: number; gid: number };
  net: NetMode;
  /** The tree mounted as the container's /usr, to link the OS's identity files that live in it. */
  usr?: string;
  hostResolvConf?: string;
}

/** The account the container runs as, named "user" unless it is one of the two everyone knows. */
export function homeOf(uid: number): string {
  return uid === 0 ? '/root' : uid === 65534 ? '/nonexistent' : '/home/user';
}

function accounts(uid: number, gid: number): { passwd: string; group: string } {
  const passwd = ['root:x:0:0:root:/root:/bin/sh', 'nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin'];
  const group = ['root:x:0:', 'tty:x:5:', 'users:x:100:', 'nogroup:x:65534:'];
  if (uid !== 0 && uid !== 65534) passwd.push(`user:x:${uid}:${gid}:user:${homeOf(uid)}:/bin/sh`);
  if (![0, 5, 100, 65534].includes(gid)) group.push(`user:x:${gid}:`);
  return { passwd: passwd.join('\n') + '\n', group: group.join('\n') + '\n' };
}

function resolvConf(net: NetMode, hostResolvConf: string | undefined): string {
  if (net !== 'host') return `# --net ${net}: no name servers\n`;
  const text = hostResolvConf ?? (existsSync('/etc/resolv.conf') ? readFileSync('/etc/resolv.conf', 'utf8') : '');
  // only what a resolver reads, and not a huge or binary file
  return text.length > RESOLV_MAX || text.includes('\0') ? '' : text;
}

export function etcFiles(input: EtcInput): Pick<ContainerSpec, 'files' | 'symlinks'> {
  const { passwd, group } = accounts(input.user.uid, input.user.gid);
  const files = [
    { path: '/etc/passwd', mode: 0o644, content: passwd },
    { path: '/etc/group', mode: 0o644, content: group },
    { path: '/etc/hostname', mode: 0o644, content: `${input.hostname}\n` },
    { path: '/etc/hosts', mode: 0o644, content: `127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t${input.hostname}\n` },
    { path: '/etc/resolv.conf', mode: 0o644, content: resolvConf(input.net, input.hostResolvConf) },
    { path: '/etc/nsswitch.conf', mode: 0o644, content: 'passwd: files\ngroup: files\nshadow: files\nhosts: files dns\n' },
  ];
  const symlinks = [{ path: '/etc/mtab', target: '../proc/self/mounts' }];
  if (input.usr && existsSync(join(input.usr, 'lib/os-release'))) symlinks.push({ path: '/etc/os-release', target: '../usr/lib/os-release' });
  return { files, symlinks };
}
