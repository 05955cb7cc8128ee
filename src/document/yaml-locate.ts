import { isAlias, isMap, isScalar, isSeq, type Document, type LineCounter, type Node } from 'yaml';

/** A place in the recipe data: map keys and list indexes from the top. */
export type DataPath = readonly (string | number)[];

/** Which part of a place an issue is about. */
export type Anchor =
  | { kind: 'value' }
  /** The map itself, e.g. for a missing key: points at the key that holds the map. */
  | { kind: 'map' }
  /** One key of the map, e.g. an unknown one. */
  | { kind: 'key'; key: string };

export interface Position {
  line: number;
  column: number;
}

interface Step {
  node: Node | null;
  /** The key node that introduced `node`, when its parent is a map. */
  key: Node | null;
}

/** Finds where data paths are in the YAML text, for errors that point at the right spot. */
export class YamlLocator {
  constructor(
    private readonly doc: Document,
    private readonly lines: LineCounter,
  ) {}

  /** The YAML node at `path`, following aliases, or undefined when the text has none there. */
  node(path: DataPath): Node | undefined {
    const steps = this.walk(path);
    return steps.length === path.length + 1 ? (steps[steps.length - 1]!.node ?? undefined) : undefined;
  }

  /** The text of the scalar at `path` as written, or undefined for anything else. */
  written(path: DataPath): string | undefined {
    const node = this.node(path);
    return isScalar(node) ? node.source : undefined;
  }

  position(path: DataPath, anchor: Anchor): Position {
    const steps = this.walk(path);
    const complete = steps.length === path.length + 1;
    const last = steps[steps.length - 1]!;
    if (complete && anchor.kind === 'key') {
      const pair = isMap(last.node) ? last.node.items.find((p) => keyText(p.key) === anchor.key) : undefined;
      const at = offset(pair?.key as Node | undefined);
      if (at !== undefined) return this.at(at);
    }
    if (complete && anchor.kind === 'value') {
      const at = offset(last.node);
      if (at !== undefined) return this.at(at);
    }
    // A map (or a value the text lacks, such as a default): point at the key that names it.
    for (let i = steps.length - 1; i >= 0; i--) {
      const at = offset(steps[i]!.key) ?? offset(steps[i]!.node);
      if (at !== undefined) return this.at(at);
    }
    return { line: 1, column: 1 };
  }

  private at(offsetInText: number): Position {
    const { line, col } = this.lines.linePos(offsetInText);
    return { line, column: col };
  }

  /** The nodes along `path` from the document root, as far as the text has them. */
  private walk(path: DataPath): Step[] {
    const steps: Step[] = [{ node: this.resolve(this.doc.contents as Node | null), key: null }];
    for (const segment of path) {
      const parent = steps[steps.length - 1]!.node;
      if (isMap(parent)) {
        const pair = parent.items.find((p) => keyText(p.key) === String(segment));
        if (!pair) break;
        steps.push({ node: this.resolve(pair.value as Node | null), key: pair.key as Node });
      } else if (isSeq(parent) && typeof segment === 'number') {
        const item = parent.items[segment] as Node | undefined;
        if (!item) break;
        steps.push({ node: this.resolve(item), key: null });
      } else {
        break;
      }
    }
    return steps;
  }

  private resolve(node: Node | null): Node | null {
    return isAlias(node) ? ((node.resolve(this.doc) as Node | undefined) ?? node) : node;
  }
}

function keyText(key: unknown): string | undefined {
  return isScalar(key) ? String(key.value) : undefined;
}

function offset(node: Node | null | undefined): number | undefined {
  return node?.range ? node.range[0] : undefined;
}
