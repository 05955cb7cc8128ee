// The first boot of a host (`cairn provision apply`, run once by cairn-provision.service before
// the services a config configures): find the config, check it whole, apply it, then have
// systemd read the units it wrote and start the ones it enabled. A host given no config boots as
// the image is. Anything wrong stops here with the reason on the console; the unit's failure
// then keeps the configured services from starting (docs/provisioning.md).
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { writeFileAtomic } from '../fs-atomic.js';
import { applyConfig, PROVISIONED, type ProvisionReport } from './apply.js';
import { parseConfig } from './config.js';
import { findConfig, type FoundConfig } from './sources.js';

const run = promisify(execFile);

export type FirstBootOutcome = { status: 'already-provisioned' } | { status: 'no-config' } | { status: 'provisioned'; source: string; report: ProvisionReport };

export interface FirstBootOptions {
  root?: string;
  /** The config to apply instead of looking for one (tests, `--config`). */
  config?: FoundConfig;
  /** Tell the running systemd (not when provisioning a root that is not the running system). */
  live?: boolean;
  log?: (line: string) => void;
}

export async function provisionFirstBoot(o: FirstBootOptions = {}): Promise<FirstBootOutcome> {
  const root = o.root ?? '/';
  const log = o.log ?? (() => undefined);
  if (existsSync(join(root, PROVISIONED))) return { status: 'already-provisioned' };
  const found = o.config ?? (await findConfig());
  if (found === null) {
    log('no provisioning config (fw_cfg, config drive or metadata service): the host runs as the image is');
    await writeFileAtomic(join(root, PROVISIONED), JSON.stringify({ source: null, at: new Date().toISOString() }) + '\n', 0o600);
    return { status: 'no-config' };
  }
  log(`provisioning from ${found.source}`);
  const config = parseConfig(found.text, found.source);
  const report = await applyConfig(config, { root, source: found.source, configText: found.text, log });
  if (o.live ?? root === '/') {
    await run('systemctl', ['daemon-reload']);
    if (report.hostname) await run('hostnamectl', ['set-hostname', report.hostname]).catch((err: Error) => log(`hostname: ${err.message}`));
    for (const unit of report.toStart) await run('systemctl', ['start', '--no-block', unit]);
  }
  log(
    `provisioned: ${report.users.length} users, ${report.files.length} files, ${report.directories.length} directories, ${report.links.length} links, ${report.units.length} units`,
  );
  return { status: 'provisioned', source: found.source, report };
}
