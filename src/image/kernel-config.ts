// Checks a kernel's build configuration (/boot/config-*) against a kernel-configs/ fragment,
// so a recipe with an unsuitable kernel fails before anything is built.
import { CairnError } from '../errors.js';

/** Option name → value: "y", "m", a literal, or null for "is not set". */
export type KernelConfig = Map<string, string | null>;

const SET = /^(CONFIG_[A-Za-z0-9_]+)=(.*)$/;
const UNSET = /^# (CONFIG_[A-Za-z0-9_]+) is not set$/;

export function parseKernelConfig(text: string, file: string): KernelConfig {
  const config: KernelConfig = new Map();
  text.split('\n').forEach((raw, index) => {
    const line = raw.trim();
    const set = SET.exec(line);
    if (set) {
      config.set(set[1]!, set[2]!);
      return;
    }
    const unset = UNSET.exec(line);
    if (unset) {
      config.set(unset[1]!, null);
      return;
    }
    if (line !== '' && !line.startsWith('#')) {
      throw new CairnError(`${file}:${index + 1}: not a kernel config line: ${JSON.stringify(line)}`, 'use CONFIG_NAME=value or "# CONFIG_NAME is not set"');
    }
  });
  return config;
}

export interface KernelConfigProblem {
  option: string;
  wanted: string | null;
  actual: string | null | undefined;
}

function describe(value: string | null | undefined): string {
  if (value === undefined || value === null) return 'not set';
  return value;
}

/** Lists every option of `fragment` that `kernel` does not satisfy. */
export function unmetKernelOptions(fragment: KernelConfig, kernel: KernelConfig): KernelConfigProblem[] {
  const problems: KernelConfigProblem[] = [];
  for (const [option, wanted] of fragment) {
    const actual = kernel.get(option);
    const ok = wanted === null ? actual === undefined || actual === null : wanted === 'm' ? actual === 'm' || actual === 'y' : actual === wanted;
    if (!ok) problems.push({ option, wanted, actual });
  }
  return problems;
}

export function assertKernelConfig(fragment: KernelConfig, fragmentFile: string, kernel: KernelConfig, kernelFile: string): void {
  const problems = unmetKernelOptions(fragment, kernel);
  if (problems.length === 0) return;
  const lines = problems.map((p) => `  ${p.option}: needs ${p.wanted === 'm' ? 'y or m' : describe(p.wanted)}, kernel has ${describe(p.actual)}`);
  throw new CairnError(
    `the kernel does not satisfy ${fragmentFile} (${problems.length} option${problems.length === 1 ? '' : 's'}):\n${lines.join('\n')}\n(kernel configuration: ${kernelFile})`,
    'choose a kernel package built with these options, or relax the fragment the recipe names under kernel.config',
  );
}
