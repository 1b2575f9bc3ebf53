/**
 * The access log's path from a worker to the master, beside the message
 * channel: a pipe the master creates for each worker (one more stdio entry
 * of the spawn) and the sandbox helper keeps open (--keep-fd). The worker
 * writes whole lines, at most MAX_ACCESS_LINE_BYTES each; the master copies
 * complete lines into the access log file without parsing them
 * (src/master/access-log-file.ts).
 */

/** The worker's file descriptor of the pipe. */
export const ACCESS_LOG_FD = 4;

/** Longest line the master copies; a longer one is dropped whole. */
export const MAX_ACCESS_LINE_BYTES = 32768;
