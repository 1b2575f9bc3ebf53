/**
 * `miwidothttp ban list|add|remove`: the running master's ban list. The
 * master owns the list (and its state file): these commands ask it over the
 * control socket, and it audits every change.
 */
import type { ControlRequest } from '../master/control.js';
import { askRunningMaster } from './running.js';

interface BanView {
  ip: string;
  until: string;
  source: string;
  reason: string;
}

export async function banCommand(option: string | undefined, request: ControlRequest, json: boolean): Promise<number> {
  const asked = await askRunningMaster<{ ok?: boolean; reason?: string; bans?: BanView[]; ban?: BanView }>(option, 'ban', request);
  if ('exitCode' in asked) return asked.exitCode;
  const { answer } = asked;
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
