/**
 * Where a worker's CPU time goes, by owner: `perf script` output of a
 * worker run with --perf-basic-prof, each sample put in one bucket (the
 * kernel, V8's garbage collector, nghttp2, OpenSSL, llhttp, or the
 * JavaScript it ran for: this project's pipeline, response headers, static
 * handler and other code, or Node's own http2 core, compatibility layer,
 * HTTP/1, streams and timers). A native sample that is none of those goes
 * to the first JavaScript frame below it on the stack. docs/benchmark.md,
 * "Where the time goes", shows the results and how they were taken:
 *
 *   perf record -g -F 999 -p WORKER_PID -o out.data -- sleep 5
 *   perf script -i out.data -F ip,sym,dso > out.txt
 *   node dist/bench/perf-buckets.js out.txt
 */
import { readFileSync } from 'node:fs';

const GC =
  /v8::internal::(Scaveng|MarkCompact|Marking|ConcurrentMarking|Sweeper|Heap::|MinorMark|IncrementalMarking|BodyDescriptorBase::IteratePointers|ExternalStringTableCleaner|GlobalHandles::|PagedSpace|MemoryAllocator|LocalHeap|FreeList|HeapObject::SizeFromMap|MemoryChunk|Evacuat|RememberedSet|SlotSet|MainMarking|EphemeronTable)/;
/** OpenSSL is linked into the node binary: its symbols, and Node's TLS glue. */
const OPENSSL =
  /^(SSL|EVP|ossl|aes|AES|gcm|CRYPTO|tls1|tls_|ssl3|ssl_|BN_|ec_|ECDSA|sha|SHA|ChaCha|chacha|poly1305|Poly|x25519|OPENSSL|ERR_|BIO|RAND|ctr|OSSL|WPACKET|PACKET|ASN1|EC_|bn_|X509|OBJ_|HMAC|ecp_|KECCAK)|node::crypto::/;

/** The bucket of a native symbol, or null when the JavaScript that called it decides. */
function nativeBucket(symbol: string): string | null {
  if (GC.test(symbol)) return 'V8 garbage collector';
  if (symbol.startsWith('nghttp2_') || symbol.includes('node::http2::')) return 'nghttp2 and node:http2 C++';
  if (OPENSSL.test(symbol)) return 'OpenSSL';
  if (symbol.startsWith('llhttp') || symbol.includes('node::http_parser') || symbol.includes('Parser::')) return 'llhttp and its C++';
  if (symbol.startsWith('uv_') || symbol.startsWith('uv__')) return 'libuv';
  return null;
}

/** The proxy's own modules (src/worker/handlers/). */
const PROXY_CODE = /\/handlers\/(proxy|forwarding|hop-by-hop|upstream)/;

/** The bucket of a JavaScript frame (--perf-basic-prof names it "JS:*'name url:line:column"). */
function scriptBucket(symbol: string): string {
  // undici parses HTTP/1.1 responses with llhttp compiled to WebAssembly ("JS:wasm-function[N]", "JS:wasm-to-js-...").
  if (symbol.startsWith('JS:wasm-')) return 'undici: llhttp (WebAssembly)';
  if (/\/dist[^/]*\/src\//.test(symbol)) {
    if (symbol.includes('/worker/pipeline/')) return 'ours: pipeline stages';
    if (symbol.includes('response-headers') || symbol.includes('prepared-head')) return 'ours: response headers';
    if (symbol.includes('/handlers/static/') || symbol.includes('/compression/static')) return 'ours: static handler';
    if (PROXY_CODE.test(symbol)) return 'ours: proxy handler (proxy.ts, forwarding, hop-by-hop, upstreams)';
    if (symbol.includes('/compression/')) return 'ours: compression on the fly (deciding, Vary)';
    return 'ours: other (server, http2.ts, http2-request.ts, connection, metrics)';
  }
  if (symbol.includes('node_modules/undici/')) return 'undici (JS)';
  if (symbol.includes('node_modules')) return 'npm dependencies';
  if (symbol.includes('http2/compat')) return 'node: http2 compatibility layer (JS)';
  if (symbol.includes('http2/')) return 'node: http2 core (JS)';
  if (symbol.includes('_http_')) return 'node: HTTP/1 (JS)';
  if (symbol.includes('tls')) return 'node: TLS (JS)';
  return 'node: streams, events, timers, ticks (JS)';
}

function frameOf(line: string): { symbol: string; dso: string } {
  const match = /^\s*[0-9a-f]+\s+(.*)\s+\((.*)\)$/.exec(line);
  return match === null ? { symbol: line.trim(), dso: '' } : { symbol: match[1]!, dso: match[2]! };
}

function bucketOf(frames: readonly string[]): string {
  const leaf = frameOf(frames[0]!);
  if (leaf.dso.includes('kernel')) return 'kernel (syscalls: TCP over loopback, epoll, io_uring)';
  for (const line of frames) {
    const { symbol } = frameOf(line);
    if (symbol.startsWith('JS:')) return scriptBucket(symbol);
    const native = nativeBucket(symbol);
    if (native !== null) return native;
  }
  return 'native, other (V8 runtime, libc, node C++)';
}

const file = process.argv[2];
if (file === undefined) {
  process.stderr.write('usage: perf-buckets.js PERF_SCRIPT_OUTPUT\n');
  process.exit(2);
}
const counts = new Map<string, number>();
let total = 0;
for (const block of readFileSync(file, 'utf8').split('\n\n')) {
  const frames = block.split('\n').filter((line) => line.trim() !== '');
  if (frames.length === 0) continue;
  const bucket = bucketOf(frames);
  counts.set(bucket, (counts.get(bucket) ?? 0) + 1);
  total += 1;
}
process.stdout.write(`${total} samples\n`);
for (const [bucket, count] of [...counts].sort((a, b) => b[1] - a[1])) {
  process.stdout.write(`${((100 * count) / total).toFixed(1).padStart(5)} %  ${bucket}\n`);
}
