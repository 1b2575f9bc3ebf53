/**
 * The thread that checks passwords against bcrypt hashes, so that a
 * verification (milliseconds of CPU by design) never stalls the worker's
 * event loop. bcryptjs compares in constant time. Messages: {id, password,
 * hash} in, {id, ok} out; anything else is ignored.
 */
import { parentPort } from 'node:worker_threads';
import bcrypt from 'bcryptjs';

parentPort?.on('message', (message: { id: number; password: string; hash: string }) => {
  let ok = false;
  try {
    ok = bcrypt.compareSync(message.password, message.hash);
  } catch {
    ok = false;
  }
  parentPort?.postMessage({ id: message.id, ok });
});
