// cairn's own on-host tools in the image, for recipes that name an update repository or
// containers: the compiled cairn (its JavaScript and the runtime dependencies it imports) under
// /usr/lib/cairn/app, run by the image's own nodejs through /usr/bin/cairn; the agent's units
// (the update loop, and the boot assessment that blesses or reboots); the ESP mounted at /efi;
// and /etc/cairn/agent.yaml from the recipe's update section unless the recipe ships its own.
import { createReadStream } from 'node:fs';
import { readdir, readFile, stat } from 'node:fs/promises';
import { basename, join, relative } from 'node:path';
import { CairnError } from '../errors.js';
import { cairnRoot } from '../recipe/cairn-root.js';
import type { Recipe } from '../recipe/types.js';
import type { Tree } from './tree.js';

const ROOT = { uid: 0, gid: 0 };
const APP = 'usr/lib/cairn/app';
const UNIT_DIR = 'usr/lib/systemd/system';

const UNITS: Record<string, string> = {
  'cairn-agent.service': `[Unit]
Description=cairn update agent: follow the channel, install releases into the other slot
Documentation=file:/usr/lib/cairn/app/docs/agent.md
Wants=network-online.target
After=network-online.target efi.mount cairn-agent-check.service
RequiresMountsFor=/efi

[Service]
ExecStart=/usr/bin/cairn agent run
Restart=on-failure
RestartSec=30s

[Install]
WantedBy=multi-user.target
`,
  'cairn-agent-check.service': `[Unit]
Description=cairn boot assessment: health checks, then bless this boot or reboot
After=multi-user.target efi.mount
RequiresMountsFor=/efi

[Service]
Type=oneshot
ExecStart=/usr/bin/cairn agent check
RemainAfterExit=yes

[Install]
WantedBy=multi-user.target
`,
  'efi.mount': `[Unit]
Description=EFI System Partition (boot entries the agent installs and blesses)

[Mount]
What=/dev/disk/by-partlabel/esp
Where=/efi
Type=vfat
Options=umask=0077,noexec,nosuid,nodev
`,
};

const WRAPPER = `#!/bin/sh
exec /usr/bin/node /usr/lib/cairn/app/dist/src/cli/main.js "$@"
`;

/** Files of a package that only matter to developers. */
const SKIP = /(\.map|\.d\.ts|\.d\.mts|\.d\.cts|\.md|\.ts\.map)$/;

function mkdirs(tree: Tree, rel: string): void {
  const parts = rel.split('/');
  for (let i = 1; i <= parts.length; i++) tree.mkdir(parts.slice(0, i).join('/'), 0o755, ROOT);
}

async function copyTree(tree: Tree, from: string, to: string, keep: (path: string) => boolean): Promise<void> {
  mkdirs(tree, to);
  for (const entry of await readdir(from, { withFileTypes: true })) {
    const source = join(from, entry.name);
    const target = `${to}/${entry.name}`;
    if (entry.isDirectory()) await copyTree(tree, source, target, keep);
    else if (entry.isFile() && keep(source)) await tree.writeFile(target, createReadStream(source) as AsyncIterable<Buffer>, (await stat(source)).mode & 0o111 ? 0o755 : 0o644, ROOT);
  }
}

/** The runtime dependencies of cairn's package.json, with theirs (npm installs them flat). */
async function dependencyClosure(root: string): Promise<string[]> {
  const seen = new Set<string>();
  const visit = async (name: string): Promise<void> => {
    if (seen.has(name)) return;
    seen.add(name);
    const manifest = JSON.parse(await readFile(join(root, 'node_modules', name, 'package.json'), 'utf8').catch(() => {
      throw new CairnError(`cairn's dependency ${name} is not installed in ${root}/node_modules`, 'run npm ci in the cairn checkout');
    })) as { dependencies?: Record<string, string> };
    for (const dep of Object.keys(manifest.dependencies ?? {})) await visit(dep);
  };
  const own = JSON.parse(await readFile(join(root, 'package.json'), 'utf8')) as { dependencies?: Record<string, string> };
  for (const dep of Object.keys(own.dependencies ?? {})) await visit(dep);
  return [...seen].sort();
}

function agentYaml(recipe: Recipe): string {
  const update = recipe.update!;
  const keys = update.keys.map((k) => `  - keys/${basename(k)}`).join('\n');
  const containers = recipe.containers.map((c) => c.name);
  return `# Written by cairn from ${basename(recipe.file)}'s update section; docs/agent.md has every setting.
repository: ${update.repository}
channel: ${update.channel}
keys:
${keys}
strategy:
  type: immediate
health:
  timeout: 5m
  units: [multi-user.target]
${containers.length ? `  containers: [${containers.join(', ')}]\n` : ''}`;
}

/** Installs cairn's tools when the recipe needs them; a no-op otherwise. */
export async function installCairnTools(tree: Tree, recipe: Recipe): Promise<boolean> {
  if (!recipe.update && recipe.containers.length === 0) return false;
  const root = cairnRoot();
  const dist = join(root, 'dist', 'src');
  if (!(await stat(dist).then((s) => s.isDirectory(), () => false))) throw new CairnError(`${dist} is missing`, 'compile cairn first (npm run build)');
  mkdirs(tree, APP);
  await tree.writeFile(`${APP}/package.json`, [await readFile(join(root, 'package.json'))], 0o644, ROOT);
  await copyTree(tree, dist, `${APP}/dist/src`, (p) => !SKIP.test(p));
  await copyTree(tree, join(root, 'docs'), `${APP}/docs`, () => true);
  for (const dep of await dependencyClosure(root)) {
    await copyTree(tree, join(root, 'node_modules', dep), `${APP}/node_modules/${dep}`, (p) => !SKIP.test(p) && !relative(root, p).includes('/test/'));
  }
  mkdirs(tree, 'usr/bin');
  await tree.writeFile('usr/bin/cairn', [Buffer.from(WRAPPER)], 0o755, ROOT);
  mkdirs(tree, `${UNIT_DIR}/multi-user.target.wants`);
  for (const [name, text] of Object.entries(UNITS)) await tree.writeFile(`${UNIT_DIR}/${name}`, [Buffer.from(text)], 0o644, ROOT);
  if (recipe.update) {
    for (const unit of ['cairn-agent.service', 'cairn-agent-check.service']) tree.symlink(`${UNIT_DIR}/multi-user.target.wants/${unit}`, `../${unit}`, ROOT);
    mkdirs(tree, 'etc/cairn/keys');
    for (const key of recipe.update.keys) await tree.writeFile(`etc/cairn/keys/${basename(key)}`, [await readFile(key)], 0o644, ROOT);
    if (!tree.lstat('etc/cairn/agent.yaml')) await tree.writeFile('etc/cairn/agent.yaml', [Buffer.from(agentYaml(recipe))], 0o644, ROOT);
  }
  return true;
}
