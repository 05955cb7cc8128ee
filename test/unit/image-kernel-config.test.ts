import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { assertKernelConfig, parseKernelConfig, unmetKernelOptions } from '../../src/image/kernel-config.js';

const fragment = parseKernelConfig('CONFIG_A=y\nCONFIG_B=m\n# CONFIG_C is not set\nCONFIG_HZ=250\n', 'frag');

test('an option wanted as m accepts y or m; y needs y; unset needs absent', () => {
  const kernel = parseKernelConfig('CONFIG_A=y\nCONFIG_B=y\nCONFIG_HZ=250\n', 'k');
  assert.deepEqual(unmetKernelOptions(fragment, kernel), []);
});

test('every unmet option is listed, with what the kernel has', () => {
  const kernel = parseKernelConfig('CONFIG_A=m\n# CONFIG_B is not set\nCONFIG_C=y\nCONFIG_HZ=1000\n', 'k');
  assert.deepEqual(
    unmetKernelOptions(fragment, kernel).map((p) => p.option),
    ['CONFIG_A', 'CONFIG_B', 'CONFIG_C', 'CONFIG_HZ'],
  );
  assert.throws(
    () => assertKernelConfig(fragment, 'frag', kernel, '/boot/config-x'),
    (err: Error) => {
      assert.match(err.message, /the kernel does not satisfy frag \(4 options\)/);
      assert.match(err.message, /CONFIG_A: needs y, kernel has m/);
      assert.match(err.message, /CONFIG_B: needs y or m, kernel has not set/);
      assert.match(err.message, /CONFIG_C: needs not set, kernel has y/);
      assert.match(err.message, /CONFIG_HZ: needs 250, kernel has 1000/);
      return true;
    },
  );
});

test('a malformed fragment line is an error with its line number', () => {
  assert.throws(() => parseKernelConfig('CONFIG_A=y\nEROFS please\n', 'frag.config'), /frag\.config:2: not a kernel config line/);
});

test('the shipped fragment parses and names the container essentials', () => {
  const text = readFileSync(new URL('../../../kernel-configs/container-host.config', import.meta.url), 'utf8');
  const shipped = parseKernelConfig(text, 'container-host.config');
  for (const option of ['CONFIG_DM_VERITY', 'CONFIG_EROFS_FS', 'CONFIG_OVERLAY_FS', 'CONFIG_EFI_STUB', 'CONFIG_USER_NS', 'CONFIG_MEMCG']) {
    assert.ok(shipped.has(option), option);
  }
});
