// cairn's on-host tools in an image: the bundle runs with only node and the files copied (its
// own modules and runtime dependencies), the agent and container units are written and enabled
// as systemctl would, the agent configuration comes from the recipe, and a missing layer is
// refused with the command that builds it.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readFile, readlink, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { parse, stringify } from 'yaml';
import { CairnError } from '../../src/errors.js';
import { loadRecipe } from '../../src/recipe/load.js';
import { installCairnTools } from '../../src/rootfs/cairn-tools.js';
import { Tree } from '../../src/rootfs/tree.js';

const run = promisify(execFile);
const tiny = fileURLToPath(new URL('../../../recipes/tiny.yaml', import.meta.url));
let work: string;

before(async () => {
  work = await mkdtemp(join(tmpdir(), 'cairn-tools-'));
});
after(async () => {
  if (work) await rm(work, { recursive: true, force: true });
});

async function recipeWith(extra: Record<string, unknown>, name: string) {
  const data = { ...(parse(await readFile(tiny, 'utf8')) as Record<string, unknown>), ...extra };
  const file = join(work, `${name}.yaml`);
  await writeFile(file, stringify(data));
  return loadRecipe(file);
}

test('an image with an update repository and a container gets the bundle, the units and the agent configuration', async () => {
  await writeFile(join(work, 'ops.pub.asc'), 'not parsed at build time\n');
  const recipe = await recipeWith(
    {
      update: { repository: 'https://updates.example.com/cairn', channel: 'beta', keys: ['ops.pub.asc'] },
      containers: [
        {
          name: 'web',
          command: ['/usr/bin/busybox', 'httpd', '-f', '-p', '8080', '-h', '/srv/100%', 'say "hi"\nthen\\go'],
          memory: '64MiB',
          env: { GREETING: 'costs $5' },
        },
      ],
    },
    'with-tools',
  );
  const root = join(work, 'root');
  await mkdir(root);
  assert.equal(await installCairnTools(new Tree(root), recipe), true);

  // The bundle works with nothing but node: no checkout, no dev dependencies.
  const { stdout } = await run(process.execPath, [join(root, 'usr/lib/cairn/app/dist/src/cli/main.js'), 'channel', '--help']);
  assert.match(stdout, /promote/);
  assert.match(await readFile(join(root, 'usr/bin/cairn'), 'utf8'), /exec \/usr\/bin\/node \/usr\/lib\/cairn\/app\/dist\/src\/cli\/main\.js "\$@"/);
  const helper = await run(join(root, 'usr/lib/cairn/spawn'), ['--help']).catch((e: { stdout: string; stderr: string }) => e);
  assert.match(helper.stdout + helper.stderr, /usage: .*spawn .*--spec-fd/, 'the container helper is in the image and runs');
  const wants = join(root, 'usr/lib/systemd/system/multi-user.target.wants');
  for (const unit of ['cairn-agent.service', 'cairn-agent-check.service', 'cairn-container-web.service']) {
    assert.equal(await readlink(join(wants, unit)), `../${unit}`);
  }
  const unit = await readFile(join(root, 'usr/lib/systemd/system/cairn-container-web.service'), 'utf8');
  assert.match(
    unit,
    /^ExecStart="\/usr\/bin\/cairn" "run" "--name" "web" "--net" "private" "--memory" "67108864" "--env" "GREETING=costs \$\$5" "--" "\/usr\/bin\/busybox" "httpd" "-f" "-p" "8080" "-h" "\/srv\/100%%" "say \\"hi\\"\\nthen\\\\go"$/m,
  );
  assert.match(unit, /^Restart=on-failure$/m);
  // systemd itself, where the build host has it, reads every unit without complaint.
  const analyze = await run('systemd-analyze', ['--version']).then(
    () => true,
    () => false,
  );
  if (analyze) {
    for (const name of ['cairn-agent.service', 'cairn-agent-check.service', 'cairn-container-web.service']) {
      const checked = await run('systemd-analyze', ['verify', '--man=no', join(root, 'usr/lib/systemd/system', name)]).catch((e: { stderr: string }) => e);
      assert.doesNotMatch(checked.stderr ?? '', /bad unit file|Unbalanced quoting|fatal error|Unknown (key|section)/, `${name}: ${checked.stderr}`);
    }
  }
  const agent = parse(await readFile(join(root, 'etc/cairn/agent.yaml'), 'utf8'));
  assert.deepEqual(agent, {
    repository: 'https://updates.example.com/cairn',
    channel: 'beta',
    keys: ['keys/ops.pub.asc'],
    strategy: { type: 'immediate' },
    health: { timeout: '5m', units: ['multi-user.target'], containers: ['web'] },
  });
  assert.equal(await readFile(join(root, 'etc/cairn/keys/ops.pub.asc'), 'utf8'), 'not parsed at build time\n');
});

test('a recipe without update or containers gets nothing; a container naming a missing layer is refused', async () => {
  const plain = await recipeWith({}, 'plain');
  const root = join(work, 'plain-root');
  await mkdir(root);
  assert.equal(await installCairnTools(new Tree(root), plain), false);
  const layered = await recipeWith({ containers: [{ name: 'db', command: ['/bin/true'], layers: ['postgres'] }] }, 'layered');
  const root2 = join(work, 'layered-root');
  await mkdir(root2);
  await assert.rejects(
    installCairnTools(new Tree(root2), layered),
    (e: unknown) =>
      e instanceof CairnError &&
      /container db names layer postgres, but .*layers\/postgres\/layer\.json does not exist/.test(e.message) &&
      /cairn layer build/.test(e.hint ?? ''),
  );
});
