// The PAM stacks against pam-auth-update's own output: this Debian machine's /etc/pam.d/common-*
// were written by pam-auth-update from its /usr/share/pam-configs and /usr/share/pam templates,
// and cairn, given the same profiles and templates, must write the same bytes.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { test } from 'node:test';
import { enabledProfiles, PAM_STACKS, parsePamProfile, renderPamStack, type PamProfile } from '../../src/rootfs/pam.js';

function hostProfiles(): Map<string, PamProfile> {
  const profiles = new Map<string, PamProfile>();
  for (const name of readdirSync('/usr/share/pam-configs')) {
    const p = parsePamProfile(readFileSync(`/usr/share/pam-configs/${name}`, 'utf8'));
    if (p) profiles.set(name, p);
  }
  return profiles;
}

for (const stack of PAM_STACKS) {
  test(`common-${stack} is what pam-auth-update wrote from the same profiles`, () => {
    const template = readFileSync(`/usr/share/pam/common-${stack}`, 'utf8');
    const mine = renderPamStack(stack, template, enabledProfiles(hostProfiles()), stack);
    assert.equal(mine, readFileSync(`/etc/pam.d/common-${stack}`, 'utf8'));
  });
}

const UNIX = `Name: Unix authentication
Default: yes
Priority: 256
Auth-Type: Primary
Auth:
\t[success=end default=ignore]\tpam_unix.so nullok try_first_pass
Auth-Initial:
\t[success=end default=ignore]\tpam_unix.so nullok
Session-Type: Additional
Session:
\trequired\tpam_unix.so
`;
const SECOND = `Name: A second primary
Default: yes
Priority: 512
Auth-Type: Primary
Auth:
\t[success=end default=ignore]\tpam_other.so
\t[success=end default=ignore]\tpam_third.so  try_first_pass
Session-Interactive-Only: yes
Session-Type: Additional
Session:
\toptional\tpam_other.so
`;
const TEMPLATE = (type: string) =>
  `# here are the per-package modules (the "Primary" block)\n$x\n# here's the fallback if no module succeeds\n${type}\trequisite\tpam_deny.so\n` +
  `# and here are more per-package modules (the "Additional" block)\n$y\n# end of pam-auth-update config\n`;

test('jumps count the Primary lines left; the first module of a block takes its -Initial lines; interactive-only sessions stay out of noninteractive', () => {
  const profiles = new Map([
    ['unix', parsePamProfile(UNIX)!],
    ['second', parsePamProfile(SECOND)!],
    ['off', parsePamProfile(UNIX.replace('Default: yes', 'Default: no').replace(/pam_unix/g, 'pam_off'))!],
  ]);
  const enabled = enabledProfiles(profiles);
  assert.deepEqual(
    enabled.map(([n]) => n),
    ['second', 'unix'],
  );
  assert.equal(
    renderPamStack('auth', TEMPLATE('auth'), enabled, 't'),
    '# here are the per-package modules (the "Primary" block)\n' +
      'auth\t[success=3 default=ignore]\tpam_other.so \n' +
      'auth\t[success=2 default=ignore]\tpam_third.so try_first_pass\n' +
      'auth\t[success=1 default=ignore]\tpam_unix.so nullok try_first_pass\n' +
      "# here's the fallback if no module succeeds\nauth\trequisite\tpam_deny.so\n" +
      '# and here are more per-package modules (the "Additional" block)\n# end of pam-auth-update config\n',
  );
  const noninteractive = renderPamStack('session-noninteractive', TEMPLATE('session'), enabled, 't');
  assert.match(noninteractive, /^session\t\[default=1\]\t\t\tpam_permit\.so$/m);
  assert.match(noninteractive, /^session\trequired\tpam_unix\.so $/m);
  assert.doesNotMatch(noninteractive, /pam_other/);
  assert.match(renderPamStack('session', TEMPLATE('session'), enabled, 't'), /^session\toptional\tpam_other\.so $/m);
});

test('a template without its block markers, and a profile line without a module, are errors', () => {
  assert.throws(() => renderPamStack('auth', 'auth required pam_permit.so\n', [], '/usr/share/pam/common-auth'), /not a pam-auth-update template/);
  const broken = new Map([['x', parsePamProfile(UNIX.replace('\tpam_unix.so nullok\n', '\n'))!]]);
  assert.throws(() => renderPamStack('auth', TEMPLATE('auth'), enabledProfiles(broken), 't'), /not "CONTROL MODULE/);
});

test('profiles naming modules PAM dropped are left out, as pam-auth-update does', () => {
  assert.equal(parsePamProfile(UNIX.replace(/pam_unix/g, 'pam_tally')), null);
});
