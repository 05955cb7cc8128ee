// The tag of every document format cairn writes, in its `format` field (the container helper's
// spec: its first token; the agent's own state file: a number). A reader refuses any other tag;
// a change of layout is a new number.
export const FORMATS = {
  manifest: 'cairn-manifest/1',
  release: 'cairn-release/1',
  channel: 'cairn-channel/1',
  root: 'cairn-root/1',
  chunks: 'cairn-chunks/1',
  patches: 'cairn-patches/1',
  layer: 'cairn-layer/1',
  spawnSpec: 'cairn-spawn-spec/1',
  agentState: 1,
} as const;
