// The container list as `cairn ps` shows it: a JSON record per container, or a table.
import type { ContainerStatus } from './state.js';

function describeStatus(s: ContainerStatus): string {
  if (s.status !== 'exited' || !s.exit) return s.status;
  return `exited (${s.exit.code}${s.exit.oomKilled ? ', out of memory' : ''})`;
}

export function containerRecords(all: ContainerStatus[]): object[] {
  return all.map((s) => ({
    name: s.state.name,
    status: s.status,
    exit: s.exit,
    createdAt: s.state.createdAt,
    command: s.state.command,
    usr: s.state.usr,
    net: s.state.net,
    detached: s.state.detached,
    supervisorPid: s.status === 'running' ? (s.state.supervisor?.pid ?? null) : null,
    pid: s.status === 'running' ? (s.state.init?.pid ?? null) : null,
  }));
}

export function formatContainerTable(all: ContainerStatus[]): string {
  const rows = [['NAME', 'STATUS', 'PID', 'CREATED', 'COMMAND']];
  for (const s of all) {
    rows.push([
      s.state.name,
      describeStatus(s),
      s.status === 'running' ? String(s.state.init?.pid ?? '') : '',
      s.state.createdAt.replace(/\.\d+Z$/, 'Z'),
      s.state.command.join(' '),
    ]);
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ') + '\n').join('');
}
