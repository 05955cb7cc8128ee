// Fault injection for the crash-safety tests: every write the agent makes to the slot, the ESP,
// the GPT and its state first passes a numbered cut point. With CAIRN_AGENT_CUT_AT=N in its
// environment the agent kills itself with SIGKILL at the N-th, which is how a test cuts it at
// every write in turn and then checks what a reboot would find. Without the variable this
// only counts.
let passed = 0;
const cutAt = Number(process.env.CAIRN_AGENT_CUT_AT ?? 0);

/** Marks a point just before a state-changing write; `what` names it in the trace. */
export function cutPoint(what: string): void {
  passed++;
  if (process.env.CAIRN_AGENT_CUT_TRACE) process.stderr.write(`cut-point ${passed} ${what}\n`);
  if (cutAt > 0 && passed === cutAt) process.kill(process.pid, 'SIGKILL');
}

export function cutPointsPassed(): number {
  return passed;
}
