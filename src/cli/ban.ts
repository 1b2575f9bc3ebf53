/**
 * `miwidothttp ban list|add|remove`: the running master's ban list. The
 * master owns the list (and its state file): these commands ask it over the
 * control socket, and it audits every change.
 */
import type { ControlRequest } from '../ipc/control.js';
import { askRunningMaster } from './running.js';

export async function banCommand(
  option: string | undefined,
  request: Extract<ControlRequest, { command: 'ban_list' | 'ban_add' | 'ban_remove' }>,
  json: boolean,
): Promise<number> {
  const asked = await askRunningMaster(option, 'ban', request);
  if ('exitCode' in asked) return asked.exitCode;
  const { answer } = asked;
  const bans = 'bans' in answer ? answer.bans : undefined;
  const ban = 'ban' in answer ? answer.ban : undefined;
  if (json) {
    process.stdout.write(`${JSON.stringify(bans ?? ban ?? { ok: true })}\n`);
    return 0;
  }
  if (bans !== undefined) {
    if (bans.length === 0) process.stdout.write('no bans\n');
    for (const entry of bans) process.stdout.write(`${entry.ip}\tuntil ${entry.until}\t${entry.source}\t${entry.reason}\n`);
  } else if (ban !== undefined) {
    process.stdout.write(`banned ${ban.ip} until ${ban.until}\n`);
  } else {
    process.stdout.write('ban lifted\n');
  }
  return 0;
}
