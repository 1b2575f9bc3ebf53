import type { ControlAnswers } from '../ipc/control.js';
import { askMaster, controlSocketProblem, EXIT_NOT_RUNNING, masterAddress, masterPid } from './running.js';

/** `status [--json]`: 0 running, 3 not running. */
export async function statusCommand(option: string | undefined, json: boolean): Promise<number> {
  const address = masterAddress(option);
  if (masterPid(address) === null) {
    // Which pid file was looked at: without -c it is ./miwidothttp.toml's or the default, maybe not the master's.
    if (json) process.stdout.write(`${JSON.stringify({ running: false, pidFile: address.pidFile })}\n`);
    else process.stdout.write(`miwidothttp is not running (no live master in ${address.pidFile})\n`);
    return EXIT_NOT_RUNNING;
  }
  let answer: ControlAnswers['status'];
  try {
    // A master answers status whenever it answers at all (the refusal form is for malformed requests).
    answer = (await askMaster(address, { command: 'status' }, 10_000)) as ControlAnswers['status'];
  } catch (error) {
    process.stderr.write(`miwidothttp: master does not answer: ${controlSocketProblem(address, error)}\n`);
    return EXIT_NOT_RUNNING;
  }
  if (json) {
    const { master, workers, listeners, cluster } = answer;
    process.stdout.write(`${JSON.stringify({ running: true, master, workers, listeners, ...(cluster && { cluster }) })}\n`);
    return 0;
  }
  const { master } = answer;
  const lines = [
    `master   pid ${master.pid}  generation ${master.generation}  up ${master.uptimeSeconds}s  config ${master.config}`,
    `listen   ${answer.listeners.map((listener) => listener.id).join(', ')}`,
    'workers  slot  pid      uid    gen  state     uptime  restarts  rss       cpu',
  ];
  const { cluster } = answer;
  if (cluster)
    lines.splice(
      2,
      0,
      `cluster  node ${cluster.node}  quorum ${cluster.quorum ? 'yes' : 'NO'}  ${cluster.read_only ? 'READ-ONLY' : 'writable'}  revision ${cluster.config_revision ?? '-'}`,
    );
  for (const w of answer.workers) {
    const rss = w.rssBytes === null ? '-' : `${(w.rssBytes / 1048576).toFixed(1)}M`;
    const cpu = w.cpuPercent === null ? '-' : `${w.cpuPercent}%`;
    lines.push(
      `         ${String(w.slot).padEnd(5)} ${String(w.pid ?? '-').padEnd(8)} ${String(w.uid ?? '-').padEnd(6)} ${String(w.generation).padEnd(4)} ${w.state.padEnd(9)} ${`${w.uptimeSeconds}s`.padEnd(7)} ${String(w.restarts).padEnd(9)} ${rss.padEnd(9)} ${cpu}`,
    );
  }
  process.stdout.write(`${lines.join('\n')}\n`);
  return 0;
}
