const UNITS: Record<string, number> = {
  '': 1,
  K: 2 ** 10, KiB: 2 ** 10,
  M: 2 ** 20, MiB: 2 ** 20,
  G: 2 ** 30, GiB: 2 ** 30,
  T: 2 ** 40, TiB: 2 ** 40,
};

/** The written form of a size; recipe.schema.json repeats it (a unit test keeps them equal). */
export const SIZE_FORM = /^([1-9][0-9]*)(K|M|G|T|KiB|MiB|GiB|TiB)?$/;

/**
 * Bytes for a recipe size (integer bytes or "<n><unit>", binary units), or null when it is
 * not one or does not fit a safe integer — a silently rounded size would be a wrong disk layout.
 */
export function parseSize(value: unknown): number | null {
  let bytes: number;
  if (typeof value === 'number') {
    bytes = value;
  } else if (typeof value === 'string') {
    const m = SIZE_FORM.exec(value);
    if (!m) return null;
    bytes = Number(m[1]) * UNITS[m[2] ?? '']!;
  } else {
    return null;
  }
  return Number.isSafeInteger(bytes) && bytes > 0 ? bytes : null;
}
