/**
 * node:http, node:tls and node:crypto as their CommonJS exports. `import
 * ... from 'node:http'` makes Node build an ES module namespace from every
 * export, and so read each lazy getter: http.WebSocket, CloseEvent and
 * MessageEvent load Node's bundled undici and the web streams,
 * crypto.webcrypto and subtle load WebCrypto, tls.rootCertificates parses
 * the root store. That is ~4 MB of every worker's resident memory for
 * things it never uses (bench/idle-memory.ts). process.getBuiltinModule
 * returns the module itself, whose getters run only when read. Types still
 * come from `import type ... from 'node:http'`, which loads nothing.
 */
export const nodeHttp = process.getBuiltinModule('node:http');
export const nodeTls = process.getBuiltinModule('node:tls');
export const nodeCrypto = process.getBuiltinModule('node:crypto');
