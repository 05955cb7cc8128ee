// cairn's own on-host tools in the image, for images with Node.js (first-boot provisioning), and
// recipes that name an update repository or containers: the compiled cairn (its JavaScript and the runtime dependencies it imports) under
// /usr/lib/cairn/app, run by the image's own nodejs through /usr/bin/cairn; the agent's units
// (the update loop, and the boot assessment that blesses or reboots); the ESP mounted at /efi;
// /etc/cairn/agent.yaml from the recipe's update section unless the recipe ships its own; and a
// unit per recipe container, with the container's layers copied into the image.
import { createReadStream } from 'node:fs';
import { readdir, readFile, stat } from 'node:fs/promises';
import { basename, dirname, join, relative } from 'node:path';
import { CairnError } from '../errors.js';
import { cairnRoot, IMAGE_PATHS, NATIVE } from '../install.js';
import type { ContainerSpec, Recipe } from '../recipe/types.js';
import type { Tree } from './tree.js';

const ROOT = { uid: 0, gid: 0 };
const APP = IMAGE_PATHS.app;
const UNIT_DIR = 'usr/lib/systemd/system';

const UNITS: Record<string, string> = {
  // Both agent units leave out the default dependencies: a target orders itself after every
  // unit it wants, so multi-user.target would wait for the check, and the check (whose health
  // checks may wait for multi-user.target) for it: an ordering cycle systemd breaks by dropping
  // a job. The shutdown and early-boot ordering the defaults give is spelled out instead.
  'cairn-agent.service': `[Unit]
Description=cairn update agent: follow the channel, install releases into the other slot
Documentation=file:/usr/lib/cairn/app/docs/agent.md
DefaultDependencies=no
Wants=network-online.target
After=basic.target network-online.target efi.mount cairn-agent-check.service
Conflicts=shutdown.target
Before=shutdown.target
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
DefaultDependencies=no
Wants=network-online.target
After=basic.target network-online.target efi.mount
Conflicts=shutdown.target
Before=shutdown.target
RequiresMountsFor=/efi

[Service]
Type=oneshot
ExecStart=/usr/bin/cairn agent check
RemainAfterExit=yes
# The update loop waits for this; a check that hangs must not hold it forever.
TimeoutStartSec=30min

[Install]
WantedBy=multi-user.target
`,
  // Before anything it configures: logins (user sessions, sshd) wait for it. Its failure isolates
  // the emergency target, which stops every service: a host never runs half-provisioned.
  'cairn-provision.service': `[Unit]
Description=cairn first-boot provisioning (Ignition config from fw_cfg, a config drive or a metadata service)
Documentation=file:/usr/lib/cairn/app/docs/provisioning.md
DefaultDependencies=no
Wants=network-online.target
After=local-fs.target network-online.target systemd-remount-fs.service
Before=systemd-user-sessions.service ssh.service ssh.socket cairn-ssh-host-keys.service cairn-agent.service cairn-agent-check.service multi-user.target
Conflicts=shutdown.target
ConditionPathExists=!/var/lib/cairn/provision/provisioned.json
OnFailure=emergency.target
OnFailureJobMode=replace-irreversibly

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/bin/cairn provision apply
StandardOutput=journal+console
StandardError=journal+console
TimeoutStartSec=15min

[Install]
WantedBy=multi-user.target
`,
  // A cloud disk is larger than disk.raw: the root takes the rest, before anything fills it.
  'cairn-grow-root.service': `[Unit]
Description=cairn: grow the writable root to fill its disk (first boot)
Documentation=file:/usr/lib/cairn/app/docs/provisioning.md
DefaultDependencies=no
# The first boot (and the first after a factory reset): until the host is provisioned. systemd's
# own first-boot test does not hold here, the image ships an empty machine-id.
ConditionPathExists=!/var/lib/cairn/provision/provisioned.json
After=local-fs.target systemd-remount-fs.service
Before=cairn-provision.service sysinit.target
Conflicts=shutdown.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/bin/cairn provision grow-root
StandardOutput=journal+console

[Install]
WantedBy=sysinit.target
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
    else if (entry.isFile() && keep(source))
      await tree.writeFile(target, createReadStream(source) as AsyncIterable<Buffer>, (await stat(source)).mode & 0o111 ? 0o755 : 0o644, ROOT);
  }
}

/**
 * The top-level node_modules packages cairn needs at run time: its dependencies and theirs,
 * resolved as Node does (a package's own node_modules first, then upwards), so a nested copy
 * travels with its parent and the hoisted packages it uses are found too.
 */
async function dependencyClosure(root: string): Promise<string[]> {
  const top = join(root, 'node_modules');
  const needed = new Set<string>();
  const visited = new Set<string>();
  const find = async (from: string, name: string): Promise<string> => {
    for (let dir = from; dir.startsWith(top) || dir === root; dir = dirname(dir)) {
      const candidate = join(dir, 'node_modules', name);
      if (
        await stat(join(candidate, 'package.json')).then(
          () => true,
          () => false,
        )
      )
        return candidate;
      if (dir === root) break;
    }
    throw new CairnError(`cairn's dependency ${name} (needed by ${from}) is not installed`, 'run npm ci in the cairn checkout');
  };
  const visit = async (pkgDir: string): Promise<void> => {
    if (visited.has(pkgDir)) return;
    visited.add(pkgDir);
    const rel = relative(top, pkgDir).split('/');
    if (!rel[0]!.startsWith('..') && pkgDir !== root) needed.add(rel[0]!.startsWith('@') ? `${rel[0]}/${rel[1]}` : rel[0]!);
    const manifest = JSON.parse(await readFile(join(pkgDir, 'package.json'), 'utf8')) as { dependencies?: Record<string, string> };
    for (const dep of Object.keys(manifest.dependencies ?? {})) await visit(await find(pkgDir, dep));
  };
  await visit(root);
  return [...needed].sort();
}

/**
 * One ExecStart word, quoted for systemd: C escapes for backslash, quote and control characters
 * (a unit line cannot hold a newline), %% and $$ for its specifiers and variables.
 */
function unitWord(word: string): string {
  const escaped = word
    .replace(/\\/g, '\\\\')
    .replace(/"/g, '\\"')
    .replace(/\n/g, '\\n')
    .replace(/\t/g, '\\t')
    // eslint-disable-next-line no-control-regex
    .replace(/[\x00-\x1f\x7f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`)
    .replace(/%/g, '%%')
    .replace(/\$/g, '$$$$');
  return `"${escaped}"`;
}

const LAYERS = IMAGE_PATHS.layers;

/** The unit that runs a recipe container at boot, restarted as the recipe says. */
function containerUnit(c: ContainerSpec, layerDirs: string[]): string {
  const args = ['/usr/bin/cairn', 'run', '--name', c.name, '--net', c.net];
  if (c.memory !== null) args.push('--memory', String(c.memory));
  if (c.cpus !== null) args.push('--cpus', String(c.cpus));
  if (c.pids !== null) args.push('--pids', String(c.pids));
  for (const [name, value] of Object.entries(c.env)) args.push('--env', `${name}=${value}`);
  for (const dir of layerDirs) args.push('--layer', `/${dir}`);
  args.push('--', ...c.command);
  return `[Unit]
Description=cairn container ${c.name}
Wants=network-online.target
After=network-online.target

[Service]
ExecStart=${args.map(unitWord).join(' ')}
Restart=${c.restart}
RestartSec=2s
# cairn makes the container's cgroup beneath the unit's own.
Delegate=yes

[Install]
WantedBy=multi-user.target
`;
}

/**
 * Copies a recipe container's layer into the image: the name is a folder beside the recipe,
 * `layers/NAME`, as `cairn layer build LAYER.yaml --out layers/NAME` writes it.
 */
async function installLayer(tree: Tree, recipe: Recipe, container: string, name: string): Promise<string> {
  const source = join(dirname(recipe.file), 'layers', name);
  const found = await stat(join(source, 'layer.json')).then(
    (s) => s.isFile(),
    () => false,
  );
  if (!found) {
    throw new CairnError(
      `${recipe.file}: container ${container} names layer ${name}, but ${join(source, 'layer.json')} does not exist`,
      `build it first: cairn layer build LAYER.yaml --base ${recipe.file} --out ${source}`,
    );
  }
  const target = `${LAYERS}/${name}`;
  if (!tree.lstat(target)) await copyTree(tree, source, target, () => true);
  return target;
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
  const hasNode = tree.resolve('usr/bin/node') !== null;
  if (!hasNode && !recipe.update && recipe.containers.length === 0) return false;
  const root = cairnRoot();
  const dist = join(root, 'dist', 'src');
  if (
    !(await stat(dist).then(
      (s) => s.isDirectory(),
      () => false,
    ))
  )
    throw new CairnError(`${dist} is missing`, 'compile cairn first (npm run build)');
  mkdirs(tree, APP);
  await tree.writeFile(`${APP}/package.json`, [await readFile(join(root, 'package.json'))], 0o644, ROOT);
  await copyTree(tree, dist, `${APP}/dist/src`, (p) => !SKIP.test(p));
  await copyTree(tree, join(root, 'docs'), `${APP}/docs`, () => true);
  for (const dep of await dependencyClosure(root)) {
    await copyTree(tree, join(root, 'node_modules', dep), `${APP}/node_modules/${dep}`, (p) => !SKIP.test(p) && !relative(root, p).includes('/test/'));
  }
  mkdirs(tree, 'usr/bin');
  await tree.writeFile('usr/bin/cairn', [Buffer.from(WRAPPER)], 0o755, ROOT);
  // The container helper (static C), where the runtime looks for it in an image.
  const spawn = NATIVE.spawn();
  if (
    !(await stat(spawn).then(
      (s) => s.isFile(),
      () => false,
    ))
  )
    throw new CairnError(`${spawn} is missing`, "build cairn's native programs first (npm run build)");
  await tree.writeFile(IMAGE_PATHS.spawn, createReadStream(spawn) as AsyncIterable<Buffer>, 0o755, ROOT);
  mkdirs(tree, `${UNIT_DIR}/multi-user.target.wants`);
  for (const [name, text] of Object.entries(UNITS)) await tree.writeFile(`${UNIT_DIR}/${name}`, [Buffer.from(text)], 0o644, ROOT);
  if (hasNode) {
    tree.symlink(`${UNIT_DIR}/multi-user.target.wants/cairn-provision.service`, '../cairn-provision.service', ROOT);
    mkdirs(tree, `${UNIT_DIR}/sysinit.target.wants`);
    tree.symlink(`${UNIT_DIR}/sysinit.target.wants/cairn-grow-root.service`, '../cairn-grow-root.service', ROOT);
  }
  if (recipe.update) {
    for (const unit of ['cairn-agent.service', 'cairn-agent-check.service']) tree.symlink(`${UNIT_DIR}/multi-user.target.wants/${unit}`, `../${unit}`, ROOT);
    mkdirs(tree, 'etc/cairn/keys');
    for (const key of recipe.update.keys) await tree.writeFile(`etc/cairn/keys/${basename(key)}`, [await readFile(key)], 0o644, ROOT);
    if (!tree.lstat('etc/cairn/agent.yaml')) await tree.writeFile('etc/cairn/agent.yaml', [Buffer.from(agentYaml(recipe))], 0o644, ROOT);
  }
  for (const c of recipe.containers) {
    const layerDirs: string[] = [];
    for (const layer of c.layers) layerDirs.push(await installLayer(tree, recipe, c.name, layer));
    const unit = `cairn-container-${c.name}.service`;
    await tree.writeFile(`${UNIT_DIR}/${unit}`, [Buffer.from(containerUnit(c, layerDirs))], 0o644, ROOT);
    tree.symlink(`${UNIT_DIR}/multi-user.target.wants/${unit}`, `../${unit}`, ROOT);
  }
  return true;
}
