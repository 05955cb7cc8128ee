/** Edit distance (insertions, deletions, substitutions) between two short strings. */
export function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      current[j] = Math.min(previous[j]! + 1, current[j - 1]! + 1, previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    previous = current;
  }
  return previous[b.length]!;
}

/**
 * The candidate a mistyped word most likely meant, or undefined when none is close.
 * Case and _/- are folded first so `usr_verity` and `usrVerity` still find `usr-verity`.
 */
export function closest(word: string, candidates: readonly string[]): string | undefined {
  const fold = (s: string): string => s.toLowerCase().replace(/[-_]/g, '');
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const candidate of candidates) {
    const d = fold(word) === fold(candidate) ? 0 : editDistance(word.toLowerCase(), candidate);
    // Short keys tolerate one typo: two edits turn most 3-letter words into any other.
    const limit = candidate.length <= 4 ? 1 : 2;
    if (d <= limit && d < bestDistance) {
      best = candidate;
      bestDistance = d;
    }
  }
  return best;
}
