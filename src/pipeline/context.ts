// What every stage of a build knows: the recipe, its lock, where the build goes, the one
// timestamp its bytes carry, the download cache and where progress is reported.
import type { FetchCache } from '../debian/fetch-cache.js';
import type { Lockfile } from '../debian/lockfile.js';
import type { Progress } from '../debian/progress.js';
import type { Recipe } from '../recipe/types.js';

export interface BuildContext {
  recipe: Recipe;
  lock: Lockfile;
  /** images/<name>/<version> */
  outDir: string;
  /** SOURCE_DATE_EPOCH: every time stamp in the image. */
  sourceDateEpoch: number;
  cache: FetchCache;
  progress?: Progress;
  log: (line: string) => void;
}
