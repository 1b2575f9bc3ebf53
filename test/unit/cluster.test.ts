/**
 * The cluster's pieces that need no etcd: [cluster] as `check` sees it, the
 * sealed values, join proofs, and what a push shares.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { before, describe, it } from 'node:test';
import { checkJoinRequest, makeJoinRequest } from '../../src/cluster/membership.js';
import { createClusterCa, issueNodeCertificate, type PemPair } from '../../src/cluster/pki.js';
import { deriveClusterKeys, open, seal } from '../../src/cluster/secrets.js';
import { mergeShared, sharedPart } from '../../src/cluster/shared-config.js';
import { loadConfig } from '../../src/config/load.js';
import { forWorkers } from '../../src/config/types.js';
import { X509Certificate } from 'node:crypto';
import { tempDir } from '../support/harness.js';

const TOKEN = 'unit-test-cluster-token-0123456789';

describe('[cluster] as check sees it', () => {
  const dir = tempDir('miwidothttp-cluster-config-');
  let ca: PemPair;
  let files: { ca: string; cert: string; key: string; otherCert: string; otherKey: string; wrongNameCert: string; wrongNameKey: string };
  let counter = 0;
  const write = (name: string, text: string): string => {
    const file = path.join(dir, name);
    writeFileSync(file, text, { mode: 0o600 });
    return file;
  };
  const config = (cluster: string, consensus = '', etcd = '', tls = { cert: '', key: '' }): string =>
    write(
      `c${counter++}.toml`,
      `[cluster]\nnode_name = "n1"\nca_file = "${files.ca}"\ncert_file = "${tls.cert || files.cert}"\nkey_file = "${tls.key || files.key}"\n${cluster}\n` +
        `[cluster.consensus]\ncluster_token = "\${CLUSTER_TOKEN}"\n${consensus}\n[cluster.etcd]\n${etcd}\n[[vhosts]]\ndomains = ["*"]\nroot = "/srv"\n`,
    );
  const endpoints = 'etcd_endpoints = ["https://10.0.0.1:2379", "https://10.0.0.2:2379", "https://10.0.0.3:2379"]';
  const env = { CLUSTER_TOKEN: TOKEN };
  const problems = (file: string): string[] => {
    const result = loadConfig(file, env);
    return result.ok ? [] : result.errors.map((line) => line.slice(file.length + 2));
  };

  before(async () => {
    ca = await createClusterCa('unit');
    const node = await issueNodeCertificate(ca, 'n1', ['10.0.0.1']);
    const other = await issueNodeCertificate(await createClusterCa('other'), 'n1', []);
    const wrongName = await issueNodeCertificate(ca, 'n9', []);
    files = {
      ca: write('ca.pem', ca.certPem),
      cert: write('n1.pem', node.certPem),
      key: write('n1.key', node.keyPem),
      otherCert: write('other.pem', other.certPem),
      otherKey: write('other.key', other.keyPem),
      wrongNameCert: write('n9.pem', wrongName.certPem),
      wrongNameKey: write('n9.key', wrongName.keyPem),
    };
  });

  it('absent, or enabled = false: a single node, and nothing of the cluster is compiled', () => {
    const plain = loadConfig(write('plain.toml', '[[vhosts]]\ndomains = ["*"]\nroot = "/srv"\n'));
    assert.ok(plain.ok);
    assert.equal(plain.config.cluster, null);
    const off = loadConfig(config(`enabled = false\n${endpoints}`), env);
    assert.ok(off.ok, off.ok ? '' : off.errors.join('\n'));
    assert.equal(off.config.cluster, null);
  });

  it('a valid external-etcd node compiles, and its workers never see the cluster (the token)', () => {
    const result = loadConfig(config(endpoints), env);
    assert.ok(result.ok, result.ok ? '' : result.errors.join('\n'));
    assert.equal(result.config.cluster?.nodeName, 'n1');
    assert.equal(result.config.cluster?.token, TOKEN);
    assert.equal(result.config.cluster?.healthTimeoutMs, 1000);
    assert.equal(result.config.cluster?.managed, null);
    assert.equal(forWorkers(result.config).cluster, null);
    assert.doesNotMatch(JSON.stringify(forWorkers(result.config)), new RegExp(TOKEN));
  });

  const refused: [string, () => string, RegExp][] = [
    [
      'Raft timings with an external etcd',
      () => config(endpoints, 'election_timeout_min = 150\nelection_timeout_max = 300\nheartbeat_interval = 50\nmax_append_entries = 64'),
      /^cluster\.consensus\.election_timeout_min: election_timeout_min, election_timeout_max, heartbeat_interval, max_append_entries belong to the etcd cluster/,
    ],
    [
      'plain http with require_tls',
      () => config('etcd_endpoints = ["http://127.0.0.1:2379"]', 'min_cluster_size = 1\nquorum_size = 1'),
      /^cluster\.etcd_endpoints\[0\]: plain http: etcd must be reached over TLS/,
    ],
    [
      'plain http off loopback',
      () => config('etcd_endpoints = ["http://10.0.0.1:2379"]', 'require_tls = false\nmin_cluster_size = 1\nquorum_size = 1'),
      /^cluster\.etcd_endpoints\[0\]: plain http off loopback/,
    ],
    [
      'a quorum that is not a majority',
      () => config(endpoints, 'quorum_size = 1'),
      /^cluster\.consensus\.quorum_size: must be a majority of min_cluster_size/,
    ],
    [
      'readonly_on_split = false',
      () => config(endpoints, 'readonly_on_split = false'),
      /^cluster\.consensus\.readonly_on_split: false is not implemented/,
    ],
    [
      'a certificate from another CA',
      () => config(endpoints, '', '', { cert: files.otherCert, key: files.otherKey }),
      /^cluster\.cert_file: .*not signed by the cluster CA/,
    ],
    [
      'a certificate for another node',
      () => config(endpoints, '', '', { cert: files.wrongNameCert, key: files.wrongNameKey }),
      /^cluster\.cert_file: .*is for "n9", not for node "n1"/,
    ],
    [
      'a key that is not the certificate’s',
      () => config(endpoints, '', '', { cert: files.cert, key: files.otherKey }),
      /^cluster\.key_file: .*is not the key of/,
    ],
    [
      'a managed member whose election_timeout_max is not 2 x min',
      () =>
        config(
          '',
          'min_cluster_size = 1\nquorum_size = 1\nelection_timeout_min = 150\nelection_timeout_max = 200\nheartbeat_interval = 30',
          'managed = true',
        ),
      /^cluster\.consensus\.election_timeout_max: etcd draws each election timeout from \[election_timeout_min, 2 x election_timeout_min\): set 300/,
    ],
    [
      'max_append_entries with a managed member',
      () => config('', 'min_cluster_size = 1\nquorum_size = 1\nmax_append_entries = 64', 'managed = true'),
      /^cluster\.consensus\.max_append_entries: etcd does not let the entries per append be set/,
    ],
  ];
  for (const [what, make, expected] of refused) {
    it(`refuses ${what} with one line naming the key`, () => {
      const lines = problems(make());
      assert.equal(lines.length, 1, lines.join('\n'));
      assert.match(lines[0]!, expected);
    });
  }

  it('refuses a missing token, naming the key', () => {
    const file = config(endpoints);
    const result = loadConfig(file, {});
    assert.equal(result.ok, false);
    assert.match(
      result.ok ? '' : result.errors.join('\n'),
      /cluster\.consensus\.cluster_token: environment variable CLUSTER_TOKEN is not set/,
    );
  });

  it('a managed member takes the Raft timings and defaults its health deadline to 2 x election_timeout_max', () => {
    const result = loadConfig(
      config(
        '',
        'min_cluster_size = 1\nquorum_size = 1\nelection_timeout_min = 150\nelection_timeout_max = 300\nheartbeat_interval = 30',
        'managed = true',
      ),
      env,
    );
    assert.ok(result.ok, result.ok ? '' : result.errors.join('\n'));
    assert.equal(result.config.cluster?.managed?.electionTimeoutMs, 150);
    assert.equal(result.config.cluster?.healthTimeoutMs, 600);
    assert.deepEqual(result.config.cluster?.endpoints, ['https://127.0.0.1:2379']);
  });
});

describe('sealed values and join proofs', () => {
  const keys = deriveClusterKeys(TOKEN);

  it('opens what it sealed, for the same key name only, and never with another token', () => {
    const sealed = seal(keys, '/miwidothttp/tickets/key', 'secret bytes');
    assert.match(sealed, /^gcm1\./);
    assert.ok(!sealed.includes('secret'));
    assert.equal(open(keys, '/miwidothttp/tickets/key', sealed).toString(), 'secret bytes');
    assert.throws(() => open(keys, '/miwidothttp/certs/x', sealed), /does not open/);
    assert.throws(() => open(deriveClusterKeys('another-token-0123456789abcdef'), '/miwidothttp/tickets/key', sealed), /does not open/);
    const tampered = sealed.slice(0, -4) + (sealed.endsWith('AAAA') ? 'BBBB' : 'AAAA');
    assert.throws(() => open(keys, '/miwidothttp/tickets/key', tampered), /does not open/);
    assert.notEqual(seal(keys, 'k', 'same'), seal(keys, 'k', 'same'), 'a fresh nonce each time');
  });

  it('the verifier is the same for the same token, and says nothing of it', () => {
    assert.equal(deriveClusterKeys(TOKEN).verifier, keys.verifier);
    assert.notEqual(deriveClusterKeys(`${TOKEN}x`).verifier, keys.verifier);
    assert.ok(!keys.verifier.includes(TOKEN));
  });

  it('a join request proves the token and the key; a copied certificate or another token fails', async () => {
    const ca = await createClusterCa('proofs');
    const caCert = new X509Certificate(ca.certPem);
    const n2 = await issueNodeCertificate(ca, 'n2', []);
    const request = makeJoinRequest('n2', n2.certPem, n2.keyPem, keys);
    assert.ok(!JSON.stringify(request).includes(TOKEN));
    assert.ok(!JSON.stringify(request).includes('BEGIN'));
    assert.deepEqual(checkJoinRequest(request, 'n2', caCert, keys).ok, true);
    const wrongToken = makeJoinRequest('n2', n2.certPem, n2.keyPem, deriveClusterKeys('another-token-0123456789abcdef'));
    assert.match((checkJoinRequest(wrongToken, 'n2', caCert, keys) as { reason: string }).reason, /proof of cluster_token does not match/);
    const thief = await issueNodeCertificate(ca, 'n3', []);
    const stolen = makeJoinRequest('n2', n2.certPem, thief.keyPem, keys);
    assert.match((checkJoinRequest(stolen, 'n2', caCert, keys) as { reason: string }).reason, /not signed with the certificate's key/);
    assert.match((checkJoinRequest(request, 'n3', caCert, keys) as { reason: string }).reason, /is for "n2"/);
  });
});

describe('what a push shares', () => {
  const local = {
    server: { http_port: 8080 },
    process: { isolation: { chroot: '/srv' } },
    cluster: { node_name: 'n1' },
    ssl: { cert_dir: '/var/lib/n1/certs', domains: { 'a.test': { cert_file: '/etc/a.pem', key_file: '/etc/a.key' } } },
    security: { audit: { log_file: '/var/log/n1-audit.log' }, enforce_https: false },
    vhosts: [{ domains: ['*'], root: '/srv/old' }],
  };

  it('keeps [[vhosts]], [security] and [ssl] without the node-local paths', () => {
    const shared = sharedPart({
      ...local,
      ssl: { provider: 'acme', cert_dir: '/x', challenges: { dns_01_command: '/bin/dns', preferred: ['dns-01'] } },
    });
    assert.deepEqual(Object.keys(shared).sort(), ['security', 'ssl', 'vhosts']);
    assert.deepEqual(shared.ssl, { provider: 'acme', challenges: { preferred: ['dns-01'] } });
    assert.deepEqual(shared.security, { enforce_https: false, audit: {} });
    assert.equal(
      sharedPart(local).ssl && 'domains' in (sharedPart(local).ssl as object),
      false,
      'manual certificates are files of each node',
    );
  });

  it('merges the shared part over a node file, keeping its own sections and paths', () => {
    const merged = mergeShared(local, {
      vhosts: [{ domains: ['*'], root: '/srv/new' }],
      security: { enforce_https: true },
      ssl: { provider: 'acme', acme_server: 'https://ca.test/dir' },
    });
    assert.deepEqual(merged.server, local.server);
    assert.deepEqual(merged.cluster, local.cluster);
    assert.deepEqual(merged.vhosts, [{ domains: ['*'], root: '/srv/new' }]);
    assert.deepEqual(merged.security, { enforce_https: true, audit: { log_file: '/var/log/n1-audit.log' } });
    assert.deepEqual(merged.ssl, {
      provider: 'acme',
      acme_server: 'https://ca.test/dir',
      cert_dir: '/var/lib/n1/certs',
      domains: local.ssl.domains,
    });
  });
});
