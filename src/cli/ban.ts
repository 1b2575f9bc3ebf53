/**
 * `miwidothttp ban list|add|remove`: the running master's ban list. The
 * master owns the list (and its state file): these commands ask it over the
 * control socket, and it audits every change.
 */
import type { ControlRequest } from '../master/control.js';
import { askMaster, masterAddress, masterPid } from './running.js';

const ANSWER_TIMEOUT_MS = 10_000;
const EXIT_NOT_RUNNING = 3;

interface BanView {
  ip: string;
  until: string;
  source: string;
  reason: string;
}

export async function banCommand(option: string | undefined, request: ControlRequest, json: boolean): Promise<number> {
  const address = masterAddress(option);
  if (masterPid(address) === null) {
    process.stderr.write(`miwidothttp: not running (no live master in ${address.pidFile})\n`);
    return EXIT_NOT_RUNNING;
  }
  let answer: { ok?: boolean; reason?: string; bans?: BanView[]; ban?: BanView };
  try {
    answer = (await askMaster(address, request, ANSWER_TIMEOUT_MS)) as typeof answer;
  } catch (error) {
    process.stderr.write(`ban: ${(error as Error).message}\n`);
    return 1;
  }
  if (answer.ok !== true) {
    process.stderr.write(`ban: ${answer.reason ?? 'refused'}\n`);
    return 1;
  }
  if (json) {
    process.stdout.write(`${JSON.stringify(answer.bans ?? answer.ban ?? { ok: true })}\n`);
    return 0;
  }
  if (answer.bans !== undefined) {
    if (answer.bans.length === 0) process.stdout.write('no bans\n');
    for (const ban of answer.bans) process.stdout.write(`${ban.ip}\tuntil ${ban.until}\t${ban.source}\t${ban.reason}\n`);
  } else if (answer.ban !== undefined) {
    process.stdout.write(`banned ${answer.ban.ip} until ${answer.ban.until}\n`);
  } else {
    process.stdout.write('ban lifted\n');
  }
  return 0;
}
