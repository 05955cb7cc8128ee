// The PAM stacks /etc/pam.d/common-{auth,account,password,session,session-noninteractive}, made
// at build time as pam-auth-update makes them from the profiles packages ship in
// /usr/share/pam-configs and libpam-runtime's templates in /usr/share/pam: the profiles a fresh
// install enables (Default: yes), highest Priority first; in each stack the Primary modules, whose
// `success=end` jumps past the rest of the Primary block, then pam_deny and pam_permit, then the
// Additional modules. login, su, sudo and sshd include these stacks; without them PAM refuses
// every login ("Critical error - immediate abort").
import { readdirSync, readFileSync } from 'node:fs';
import { CairnError } from '../errors.js';
import type { Tree } from './tree.js';

const PROFILES = 'usr/share/pam-configs';
const TEMPLATES = 'usr/share/pam';
const ROOT = { uid: 0, gid: 0 };
export const PAM_STACKS = ['auth', 'account', 'password', 'session', 'session-noninteractive'] as const;
// pam-auth-update drops profiles that use modules PAM no longer ships.
const INVALID_MODULES = ['pam_tally'];

export type PamProfile = Map<string, string>;

/** A profile in pam-auth-update's RFC 822-like form; `-Final` is the old name of a plain field. */
export function parsePamProfile(text: string): PamProfile | null {
  const fields: PamProfile = new Map();
  let current: string | undefined;
  let disabled = false;
  for (const raw of text.split('\n')) {
    const m = /^(\S+):\s*(.*?)\s*$/.exec(raw);
    if (m && !/^\s/.test(raw)) {
      current = m[1]!.replace(/-Final$/, '');
      fields.set(current, m[2]!);
    } else if (current !== undefined) {
      const line = raw.trim();
      if (line) fields.set(current, (fields.get(current)! + '\n' + line).replace(/^[\n\s]+/, ''));
      if (INVALID_MODULES.some((mod) => fields.get(current!)!.includes(mod))) disabled = true;
    }
  }
  if (disabled) return null;
  if (!fields.has('Session-Interactive-Only')) {
    for (const suffix of ['-Type', '', '-Initial']) {
      const value = fields.get(`Session${suffix}`);
      if (value !== undefined) fields.set(`Session-noninteractive${suffix}`, value);
    }
  }
  return fields;
}

/** The profiles a fresh install enables, in pam-auth-update's order (Priority, then name, both descending). */
export function enabledProfiles(profiles: Map<string, PamProfile>): [string, PamProfile][] {
  const priority = (p: PamProfile): number => Number(p.get('Priority') ?? 0);
  return [...profiles].filter(([, p]) => p.get('Default') === 'yes').sort(([a, pa], [b, pb]) => priority(pb) - priority(pa) || (b < a ? -1 : b > a ? 1 : 0));
}

/** One module line as pam-auth-update writes it: `end` in the control becomes the jump count, options follow after one space. */
function moduleLine(type: string, line: string, count: number): string {
  const m = /^((\[[^\]]+\]|\w+)\s+\S+)\s*(.*)$/.exec(line);
  if (!m) throw new CairnError(`PAM profile line "${line}" is not "CONTROL MODULE [OPTIONS]"`);
  const options = m[3]!.split(/\s+/).filter((o) => o !== '');
  return `${type}\t${m[1]!.replace(/end/g, String(count))} ${options.join(' ')}\n`;
}

/** The module lines of one block (Primary or Additional) of a stack. */
function block(stack: (typeof PAM_STACKS)[number], kind: 'Primary' | 'Additional', enabled: [string, PamProfile][]): string {
  const field = stack.charAt(0).toUpperCase() + stack.slice(1);
  const type = stack.replace(/-noninteractive$/, '');
  const chosen = enabled.filter(([, p]) => p.get(`${field}-Type`) === kind);
  // The first module of a block uses its -Initial lines where it has them.
  const lines = chosen.flatMap(([, p], position) =>
    (((position === 0 && p.get(`${field}-Initial`)) || p.get(field)) ?? '').split('\n').filter((l) => l !== ''),
  );
  // A jump in the Additional block must not run off the end of the stack.
  let count = kind === 'Additional' ? lines.length - 1 : lines.length;
  let out = kind === 'Primary' && lines.length === 0 ? `${type}\t[default=1]\t\t\tpam_permit.so\n` : '';
  for (const line of lines) out += moduleLine(type, line, count--);
  return out;
}

const PRIMARY = /^# here are the per-package modules \(the "Primary" block\)/;
const FALLBACK = /^# here's the fallback if no module succeeds/;
const ADDITIONAL = /^# and here are more per-package modules \(the "Additional" block\)/;
const END = /^# end of pam-auth-update config/;

/** A stack from its template: the template's lines, with the two blocks in place of their placeholders. */
export function renderPamStack(stack: (typeof PAM_STACKS)[number], template: string, enabled: [string, PamProfile][], where: string): string {
  let out = '';
  let state = 0;
  for (const line of template.split(/(?<=\n)/)) {
    if (state === 1 || state === 3) {
      if ((state === 1 ? FALLBACK : END).test(line)) {
        out += line;
        state++;
      }
      continue;
    }
    out += line;
    if (state === 0 && PRIMARY.test(line)) {
      out += block(stack, 'Primary', enabled);
      state = 1;
    } else if (state === 2 && ADDITIONAL.test(line)) {
      out += block(stack, 'Additional', enabled);
      state = 3;
    }
  }
  if (state < 4)
    throw new CairnError(`${where} is not a pam-auth-update template (its block markers are missing)`, "the image's libpam-runtime is broken or too old");
  return out;
}

/** Writes the common stacks when the image has PAM (libpam-runtime); returns the files written. */
export async function configurePam(tree: Tree): Promise<string[]> {
  const profileDir = tree.resolve(PROFILES);
  if (profileDir === null || tree.resolve(TEMPLATES) === null) return [];
  const profiles = new Map<string, PamProfile>();
  for (const name of readdirSync(profileDir).sort()) {
    if (name.endsWith('~') || /^#.+#$/.test(name)) continue;
    const path = tree.resolve(`${PROFILES}/${name}`);
    if (path === null) continue;
    const profile = parsePamProfile(readFileSync(path, 'utf8'));
    if (profile) profiles.set(name, profile);
  }
  const enabled = enabledProfiles(profiles);
  const written: string[] = [];
  for (const stack of PAM_STACKS) {
    const template = tree.resolve(`${TEMPLATES}/common-${stack}`);
    if (template === null) throw new CairnError(`/${TEMPLATES}/common-${stack} is missing`, "the image's libpam-runtime is incomplete");
    const target = `etc/pam.d/common-${stack}`;
    // A recipe file in its place is the operator's own stack.
    if (tree.lstat(target) !== undefined) continue;
    await tree.writeFile(target, [Buffer.from(renderPamStack(stack, readFileSync(template, 'utf8'), enabled, `/${TEMPLATES}/common-${stack}`))], 0o644, ROOT);
    written.push(`/${target}`);
  }
  return written;
}
