// Assembles the root tree from the locked .debs and the recipe: extraction, then declaratively
// what maintainer scripts would have done that the image needs, then the final layout. All or
// nothing: on any failure the output directory is removed.
import { chmod, chown, mkdir, readdir, rm } from 'node:fs/promises';
import { CairnError } from '../errors.js';
import type { Recipe } from '../recipe/types.js';
import { applyAlternatives } from './alternatives.js';
import { type DebInput, type ExtractionReport, extractPackages } from './extract.js';
import { writeIdentity } from './identity.js';
import { updateLdCache } from './ldconfig.js';
import { makeMountPoints, moveEtcToFactory, setTimes } from './layout.js';
import { installPackageDefaults } from './package-defaults.js';
import { applyLinks } from './links.js';
import { configurePam } from './pam.js';
import { configureSsh } from './ssh.js';
import { ownRecipeFiles, placeRecipeFiles } from './recipe-files.js';
import { installCairnTools } from './cairn-tools.js';
import { updateModuleIndexes } from './depmod.js';
import { Tree } from './tree.js';
import { applyUnits } from './units.js';
import { configureAccounts } from './users.js';

export interface AssembleOptions {
  recipe: Recipe;
  /** In installation order; later packages may replace files of earlier ones. */
  debs: DebInput[];
  /** Must not exist or be empty. */
  outDir: string;
  sourceDateEpoch: number;
  /** The canonical lock text (formatLockfile) the image ships as /usr/lib/cairn/cairn.lock: its base identity. */
  lockfile?: string;
  log?: (line: string) => void;
}

export interface AssemblyReport extends ExtractionReport {
  users: string[];
  groups: string[];
  /** /etc files copied from package defaults (/etc/profile, /etc/nsswitch.conf, …). */
  defaults: string[];
  /** The PAM stacks written (/etc/pam.d/common-*). */
  pam: string[];
  /** Whether sshd was set up (host keys made on the host, recipe users' keys). */
  ssh: boolean;
  /** Links made for units.enable and units.mask, as "/link -> target". */
  unitLinks: string[];
  /** Whether /etc/ld.so.cache was generated (false: the image has no libc). */
  ldCache: boolean;
}

async function claimOutDir(outDir: string): Promise<void> {
  const entries = await readdir(outDir).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return [];
    throw new CairnError(`cannot use ${outDir} for the root tree: ${err.message}`);
  });
  if (entries.length > 0) throw new CairnError(`${outDir} is not empty`, 'the root tree is assembled into a new or empty directory: remove it first');
  await mkdir(outDir, { recursive: true });
  // The root's own mode and owner go into the tar; the umask and caller must not decide them.
  await chown(outDir, 0, 0);
  await chmod(outDir, 0o755);
}

export async function assembleRoot(opts: AssembleOptions): Promise<AssemblyReport> {
  const { recipe, log } = opts;
  await claimOutDir(opts.outDir);
  try {
    const tree = new Tree(opts.outDir);
    const extraction = await extractPackages(tree, opts.debs, log);
    log?.(`extracted ${extraction.packages.length} packages`);
    // Recipe files first: one may be a sysusers.d file the accounts must include, or replace a
    // package default.
    await placeRecipeFiles(tree, recipe);
    const defaults = await installPackageDefaults(tree);
    const pam = await configurePam(tree);
    await installCairnTools(tree, recipe);
    const accounts = await configureAccounts(tree, recipe, opts.sourceDateEpoch);
    ownRecipeFiles(tree, recipe, accounts);
    const ssh = await configureSsh(tree, recipe);
    applyAlternatives(tree, recipe);
    applyLinks(tree, recipe);
    const unitLinks = applyUnits(tree, recipe);
    await writeIdentity(tree, recipe, opts.lockfile);
    const ldCache = updateLdCache(tree);
    await updateModuleIndexes(tree);
    moveEtcToFactory(tree);
    makeMountPoints(tree);
    setTimes(opts.outDir, opts.sourceDateEpoch);
    return {
      ...extraction,
      users: [...accounts.users.keys()].sort(),
      groups: [...accounts.groups.keys()].sort(),
      defaults,
      pam,
      ssh,
      unitLinks,
      ldCache,
    };
  } catch (err) {
    await rm(opts.outDir, { recursive: true, force: true });
    throw err;
  }
}
