/**
 * The import rules of src/ (npm run lint): the layout is the architecture,
 * so it is checked, not hoped for.
 */
module.exports = {
  forbidden: [
    {
      name: 'no-circular',
      severity: 'error',
      comment: 'An import circle means two files are one concern split wrongly: give the shared part a file of its own.',
      from: {},
      to: { circular: true },
    },
    {
      name: 'worker-not-master',
      severity: 'error',
      comment: 'The worker runs sandboxed and untrusted: it never loads the privileged side. They meet only in src/ipc.',
      from: { path: '^src/worker/' },
      to: { path: '^src/master/' },
    },
    {
      name: 'master-not-worker',
      severity: 'error',
      comment: 'The master never runs request-handling code: a bug there would run with privileges.',
      from: { path: '^src/master/' },
      to: { path: '^src/worker/' },
    },
    {
      name: 'worker-not-cluster',
      severity: 'error',
      comment: 'The cluster side holds cluster_token, the etcd client key and sealed secrets: no worker ever loads it.',
      from: { path: '^src/worker/' },
      to: { path: '^src/cluster/' },
    },
    {
      name: 'compile-is-pure',
      severity: 'error',
      comment: 'Compile is a pure transform; the host (files, /proc, cgroups, the CPU count) is the preflight\'s: src/config/preflight/.',
      from: { path: '^src/config/compile' },
      to: { path: '^(node:)?(fs|fs/promises|os|child_process)$|^src/(isolation|fs)/|^src/tls/certificates' },
    },
    {
      name: 'no-test-code-in-src',
      severity: 'error',
      from: { path: '^src/' },
      to: { path: '^(test|bench)/' },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    tsConfig: { fileName: 'tsconfig.json' },
    tsPreCompilationDeps: true,
    enhancedResolveOptions: { extensions: ['.ts', '.js'] },
  },
};
