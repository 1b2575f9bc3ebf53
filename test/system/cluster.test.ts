/**
 * The cluster on etcd, end to end: a real 3-member etcd cluster (Debian's
 * etcd, mTLS, fresh data dirs, ports of its own), three miwidothttp nodes
 * on 127.0.0.1, .2 and .3 (same ports), pebble as the ACME CA. Failure
 * injection by SIGKILL of etcd members. One etcd cluster and one set of
 * nodes serve every case, in order; the split comes last.
 */
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import tls from 'node:tls';
import { createClusterCa, issueNodeCertificate } from '../../src/cluster/pki.js';
import { ClusterTestNode, type ClusterStatusJson } from '../support/cluster-nodes.js';
import { startEtcdCluster, type EtcdCluster } from '../support/etcd-cluster.js';
import { freePort, request, tempDir, waitFor } from '../support/harness.js';
import { startPebble, type Pebble } from '../support/pebble.js';
import { TestCa } from '../support/test-ca.js';

const ADDRESSES = ['127.0.0.1', '127.0.0.2', '127.0.0.3'];
/** A client address no test node uses for itself: the one the ban tests ban. */
const CLIENT = '127.0.0.9';

/** An HTTP GET from `localAddress`: the status, or "refused" when the node closes the connection unanswered (a ban). */
function getFrom(address: string, port: number, localAddress: string): Promise<number | 'refused'> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: address, port, localAddress });
    let text = '';
    socket.setTimeout(5000, () => socket.destroy());
    socket.on('connect', () => socket.write(`GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`));
    socket.on('data', (chunk: Buffer) => (text += chunk.toString('latin1')));
    socket.on('error', () => undefined);
    socket.on('close', () => {
      const status = /^HTTP\/1\.1 (\d{3})/.exec(text);
      resolve(status ? Number(status[1]) : 'refused');
    });
  });
}

function handshake(
  address: string,
  port: number,
  servername: string,
  session?: Buffer,
): Promise<{ reused: boolean; session: Buffer | undefined; fingerprint: string; issuer: string }> {
  return new Promise((resolve, reject) => {
    let got: Buffer | undefined;
    const socket = tls.connect({ host: address, port, servername, rejectUnauthorized: false, ...(session && { session }) });
    socket.on('session', (data: Buffer) => (got = data));
    socket.once('secureConnect', () => {
      // TLS 1.3 sends its ticket after the handshake: give it a moment.
      setTimeout(() => {
        const certificate = socket.getPeerCertificate();
        resolve({
          reused: socket.isSessionReused(),
          session: got,
          fingerprint: certificate.fingerprint256,
          issuer: String(certificate.issuer?.CN ?? ''),
        });
        socket.destroy();
      }, 150);
    });
    socket.once('error', reject);
  });
}

describe('cluster on etcd (3 etcd members, 3 nodes)', () => {
  let etcd: EtcdCluster;
  let pebble: Pebble;
  let site: string;
  let port: number;
  let httpsPort: number;
  let nodes: ClusterTestNode[] = [];
  const extra: ClusterTestNode[] = [];
  let pki: TestCa;

  /** [ssl] of a node's own file: a manual certificate (node-local files) and its cert_dir. */
  const localTls = (node: ClusterTestNode): string => {
    const certs = path.join(node.dir, 'certs');
    mkdirSync(certs, { recursive: true, mode: 0o700 });
    const leaf = pki.issue(`cluster-site-${node.name}`, ['cluster.test']);
    return `[ssl]\ncert_dir = "${certs}"\n[ssl.domains."cluster.test"]\ncert_file = "${leaf.cert}"\nkey_file = "${leaf.key}"\n`;
  };
  /** The test opens connections faster than the default connection_rate_per_ip (10/s) allows; [security] is shared, so every push carries it. */
  const vhosts = (root: string, extraVhost = ''): string =>
    `[security.timeouts]\nconnection_rate_per_ip = 1000000\n${extraVhost}[[vhosts]]\ndomains = ["*"]\nroot = "${root}"\n`;
  const pushFile = (name: string, body: string): string => {
    const file = path.join(site, `${name}.toml`);
    writeFileSync(file, body);
    return file;
  };
  /** The shared [ssl] of the ACME case (and of the pushes after it, which keep it). */
  const acme = (): string =>
    `[ssl]\nprovider = "acme"\nacme_server = "${pebble.directoryUrl}"\nagree_tos = true\n[ssl.challenges]\npreferred = ["http-01"]\nhttp_01_port = ${port}\n`;
  const raceVhost = (): string => `[[vhosts]]\ndomains = ["race.test"]\nroot = "${site}/inner/v3"\n`;
  const body = (node: ClusterTestNode): string => `${localTls(node)}${vhosts(`${site}/inner/v1`)}`;

  before(async () => {
    site = tempDir('miwidothttp-cluster-site-');
    const { chmodSync } = await import('node:fs');
    chmodSync(site, 0o755);
    for (const dir of ['inner', 'inner/v1', 'inner/v2', 'inner/v3', 'other']) {
      mkdirSync(path.join(site, dir), { mode: 0o755 });
      writeFileSync(path.join(site, dir, 'index.html'), `${dir}\n`, { mode: 0o644 });
    }
    pki = new TestCa(tempDir('miwidothttp-cluster-pki-'));
    port = await freePort();
    httpsPort = await freePort();
    [etcd, pebble] = await Promise.all([startEtcdCluster(), startPebble({ httpPort: port, tlsPort: httpsPort })]);
    nodes = ADDRESSES.map((address, i) => {
      // n3's jail is narrower than the others': a push whose root lies outside it is refused by n3 alone.
      const node = new ClusterTestNode(`n${i + 1}`, address, etcd, i === 2 ? `${site}/inner` : site);
      node.extraEnv = pebble.env;
      return node;
    });
    for (const node of nodes) {
      await node.configure(
        { body: body(node), server: `https_port = ${httpsPort}`, consensus: 'allow_auto_join = true\nmax_nodes = 3\nrejoin_delay = 1' },
        port,
      );
      await node.startNode();
    }
  });

  after(async () => {
    await Promise.all([...nodes, ...extra].map((node) => node.stop().catch(() => undefined)));
    await etcd?.stop();
    await pebble?.stop();
  });

  it('cluster status --json: every node, alive, with its configuration revision and last reload', () => {
    const status = nodes[1]!.clusterStatus();
    assert.equal(status.node, 'n2');
    assert.equal(status.read_only, false);
    assert.equal(status.quorum, true);
    assert.deepEqual(
      status.nodes.map((node) => [node.name, node.alive]),
      [
        ['n1', true],
        ['n2', true],
        ['n3', true],
      ],
    );
    for (const node of status.nodes) {
      assert.ok('config_revision' in node);
      assert.match(node.last_reload ?? '', /^\d{4}-\d\d-\d\dT/);
    }
    const plain = nodes[0]!.run('status', '--json');
    assert.deepEqual((JSON.parse(plain.stdout) as { cluster: unknown }).cluster, {
      node: 'n1',
      read_only: false,
      quorum: true,
      config_revision: null,
    });
  });

  it('a push reaches all three nodes; a push one node refuses names it, and it keeps serving the previous revision', async () => {
    const good = nodes[0]!.run('cluster', 'push', pushFile('good', vhosts(`${site}/inner/v2`)));
    assert.equal(good.status, 0, good.stderr);
    for (const address of ADDRESSES) assert.equal((await request(port, { host: address })).body, 'inner/v2\n');
    const revision = /running revision (\d+)/.exec(good.stdout)?.[1];
    assert.ok(revision);
    const statuses = nodes.map((node) => node.clusterStatus());
    for (const status of statuses) assert.equal(status.config_revision, revision);

    const refused = nodes[0]!.run('cluster', 'push', pushFile('outside', vhosts(`${site}/other`)));
    assert.equal(refused.status, 1);
    assert.match(refused.stderr, /^n3: refused revision \d+: .*vhosts\[0\]\.root: .*lies outside process\.isolation\.chroot/m);
    assert.doesNotMatch(refused.stderr, /^n[12]:/m);
    assert.equal((await request(port, { host: '127.0.0.1' })).body, 'other\n');
    assert.equal((await request(port, { host: '127.0.0.3' })).body, 'inner/v2\n', 'n3 keeps its previous revision');
    const n3 = nodes[0]!.clusterStatus().nodes.find((node) => node.name === 'n3')!;
    assert.equal(n3.config_revision, revision);
    assert.equal(n3.last_reload_ok, false);

    const back = nodes[1]!.run('cluster', 'push', pushFile('back', vhosts(`${site}/inner/v3`)));
    assert.equal(back.status, 0, back.stderr);
    for (const address of ADDRESSES) assert.equal((await request(port, { host: address })).body, 'inner/v3\n');
  });

  it('a ban made on n1 is refused by n2 and n3 within a second, and expires by itself', async (t) => {
    for (const address of ADDRESSES) assert.equal(await getFrom(address, port, CLIENT), 200);
    const added = nodes[0]!.run('ban', 'add', CLIENT, '--seconds', '4', '--reason', 'cluster test');
    assert.equal(added.status, 0, added.stderr);
    const banned = Date.now();
    const refusedAt: number[] = [];
    for (const address of ADDRESSES.slice(1)) {
      await waitFor(`${address} refuses ${CLIENT}`, async () => (await getFrom(address, port, CLIENT)) === 'refused', 5000);
      refusedAt.push(Date.now() - banned);
    }
    t.diagnostic(`n2, n3 refused the banned client ${refusedAt.join(', ')} ms after \`ban add\` on n1 returned`);
    assert.ok(Math.max(...refusedAt) < 1000, `refused after ${refusedAt.join(', ')} ms`);
    assert.equal(await getFrom('127.0.0.1', port, CLIENT), 'refused');
    // Another client is served throughout.
    assert.equal(await getFrom('127.0.0.2', port, '127.0.0.8'), 200);
    const listed = nodes[2]!.run('ban', 'list', '--json');
    assert.match(listed.stdout, /127\.0\.0\.9.*banned on n1/);
    for (const address of ADDRESSES)
      await waitFor(`${address} serves ${CLIENT} again`, async () => (await getFrom(address, port, CLIENT)) === 200, 15_000);
    // etcd's lessor checks expiries every 500 ms: the key goes a moment after the nodes' own timers.
    await waitFor('the lease took the key with it', () => etcd.rawValues('/miwidothttp/bans/').length === 0, 5000);
  });

  it('a session ticket from n1 resumes on n2 and n3', async () => {
    const first = await handshake('127.0.0.1', httpsPort, 'cluster.test');
    assert.ok(first.session, 'n1 gave a ticket');
    for (const address of ['127.0.0.2', '127.0.0.3']) {
      const resumed = await handshake(address, httpsPort, 'cluster.test', first.session);
      assert.equal(resumed.reused, true, `resumed on ${address}`);
    }
  });

  it('three nodes race for one name against pebble: exactly one order, and all serve the same certificate', async () => {
    const pushed = nodes[2]!.run('cluster', 'push', pushFile('acme', `${acme()}${vhosts(`${site}/inner/v3`, raceVhost())}`));
    assert.equal(pushed.status, 0, pushed.stderr);
    const fingerprints: string[] = [];
    for (const address of ADDRESSES) {
      const served = await waitFor(
        `${address} serves race.test from pebble`,
        async () => {
          const got = await handshake(address, httpsPort, 'race.test').catch(() => null);
          return got !== null && /Pebble/i.test(got.issuer) ? got : null;
        },
        90_000,
      );
      fingerprints.push(served.fingerprint);
    }
    assert.equal(new Set(fingerprints).size, 1, 'one certificate for all three');
    const orders = pebble.logs().match(/There are now \d+ orders in the db/g) ?? [];
    const failures = nodes.flatMap((node) =>
      node
        .logLines()
        .filter((line) => /failed/.test(String(line.msg)))
        .map((line) => `${node.name}: ${line.msg}`),
    );
    assert.equal(orders.length, 1, failures.join('\n'));
    const ordered = nodes.filter((node) => node.output.includes('ACME order created'));
    assert.equal(ordered.length, 1, 'one node ordered');
    const waited = nodes.filter((node) => node.output.includes('certificate taken from the cluster'));
    assert.equal(waited.length, 2, 'the other two took it from the cluster');
  });

  it('etcd holds no PEM and no secret in the clear: keys, certificates, tickets, the account and the configuration are sealed', () => {
    const values = etcd.rawValues('/miwidothttp/');
    const keys = values.map((entry) => entry.key);
    for (const wanted of ['/miwidothttp/tickets/key', '/miwidothttp/config/shared', '/miwidothttp/membership'])
      assert.ok(keys.includes(wanted), wanted);
    assert.ok(keys.some((key) => key.startsWith('/miwidothttp/certs/')));
    assert.ok(keys.some((key) => key.startsWith('/miwidothttp/acme/accounts/')));
    for (const { key, value } of values) {
      assert.doesNotMatch(value, /-----BEGIN|PRIVATE KEY/, key);
      assert.ok(!value.includes(pebble.directoryUrl), `${key} shows the configuration in the clear`);
    }
    for (const key of ['/miwidothttp/tickets/key', '/miwidothttp/config/shared'])
      assert.match(values.find((entry) => entry.key === key)!.value, /^gcm1\./);
  });

  it('max_nodes = 3 refuses a fourth node, and a member audits it', async () => {
    const n4 = new ClusterTestNode('n4', '127.0.0.4', etcd, site);
    extra.push(n4);
    await n4.configure({ body: vhosts(`${site}/inner/v1`), consensus: 'allow_auto_join = true\nmax_nodes = 3' }, port);
    const { code, output } = await n4.startRefused();
    assert.equal(code, 1);
    assert.match(output, /miwidothttp: cluster: join refused by n\d: the cluster is full: max_nodes = 3 \(n1, n2, n3\)/);
    await waitFor('a member audited the refusal', () =>
      nodes.some((node) => node.auditEvents('cluster.join_refused').some((event) => event.host === 'n4')),
    );
  });

  it('a node without the cluster token is refused and audited, on a member and on itself', async () => {
    const n5 = new ClusterTestNode('n5', '127.0.0.5', etcd, site);
    extra.push(n5);
    await n5.configure({ body: vhosts(`${site}/inner/v1`), token: 'not-the-cluster-token-at-all' }, port);
    const { code, output } = await n5.startRefused();
    assert.equal(code, 1);
    assert.match(output, /join refused by n\d: the proof of cluster_token does not match/);
    assert.ok(n5.auditEvents('cluster.join_refused').length > 0);
    await waitFor('a member audited the refusal', () =>
      nodes.some((node) =>
        node.auditEvents('cluster.join_refused').some((event) => event.host === 'n5' && /cluster_token/.test(String(event.detail))),
      ),
    );
  });

  it('a node whose certificate is from another CA is refused by etcd, and audits it', async () => {
    const dir = tempDir('miwidothttp-other-ca-');
    const otherCa = await createClusterCa('another');
    const leaf = await issueNodeCertificate(otherCa, 'n6', ['127.0.0.6']);
    const files = { caFile: path.join(dir, 'ca.pem'), certFile: path.join(dir, 'n6.pem'), keyFile: path.join(dir, 'n6.key') };
    writeFileSync(files.caFile, otherCa.certPem);
    writeFileSync(files.certFile, leaf.certPem);
    writeFileSync(files.keyFile, leaf.keyPem, { mode: 0o600 });
    const n6 = new ClusterTestNode('n6', '127.0.0.6', etcd, site);
    extra.push(n6);
    await n6.configure({ body: vhosts(`${site}/inner/v1`), tls: files }, port);
    const { code, output } = await n6.startRefused();
    assert.equal(code, 1);
    assert.match(output, /miwidothttp: cluster: cannot reach etcd/);
    assert.ok(n6.auditEvents('cluster.join_refused').length > 0);
    assert.equal(
      nodes[0]!.clusterStatus().nodes.some((node) => node.name === 'n6'),
      false,
    );
  });

  it('a node paused (SIGSTOP) is seen gone when its lease runs out; a push waits only for the live nodes; resumed, it registers again and catches up', async (t) => {
    const n3 = nodes[2]!;
    const master = n3.masterPid();
    process.kill(master, 'SIGSTOP');
    try {
      await waitFor(
        'n3 no longer alive',
        () => nodes[0]!.clusterStatus().nodes.find((node) => node.name === 'n3')?.alive === false,
        20_000,
      );
      const pushed = nodes[0]!.run('cluster', 'push', pushFile('without-n3', `${acme()}${vhosts(`${site}/inner/v2`, raceVhost())}`));
      assert.equal(pushed.status, 0, pushed.stderr);
      assert.match(pushed.stdout, /^n1: running revision \d+\nn2: running revision \d+\n$/);
    } finally {
      process.kill(master, 'SIGCONT');
    }
    const revision = nodes[0]!.clusterStatus().cluster_config_revision;
    const back = await waitFor(
      'n3 registered again and caught up',
      () => {
        const status = n3.clusterStatus();
        const self = status.nodes.find((node) => node.name === 'n3');
        return self?.alive === true && status.config_revision === revision ? status : null;
      },
      30_000,
    );
    t.diagnostic(`n3 back at revision ${back.config_revision}`);
    assert.equal((await request(port, { host: '127.0.0.3' })).body, 'inner/v2\n');
  });

  it('two etcd members killed: every node read-only within 2 s and still serving; push and ban refused; restored: writable and caught up', async (t) => {
    const before = nodes.map((node) => node.clusterStatus().config_revision);
    const killed = Date.now();
    etcd.kill(1);
    etcd.kill(2);
    const statuses: ClusterStatusJson[] = [];
    for (const node of nodes)
      statuses.push(
        await waitFor(
          `${node.name} read-only`,
          () => {
            const status = node.clusterStatus();
            return status.read_only ? status : null;
          },
          20_000,
        ),
      );
    t.diagnostic(
      `read-only after ${statuses.map((status) => `${status.node} ${Date.parse(status.read_only_since!) - killed} ms`).join(', ')}`,
    );
    for (const status of statuses) {
      const detectedMs = Date.parse(status.read_only_since!) - killed;
      assert.ok(detectedMs < 2000, `${status.node} went read-only after ${detectedMs} ms`);
      assert.equal(status.quorum, false);
    }
    for (const address of ADDRESSES) assert.equal((await request(port, { host: address })).status, 200, `${address} serves`);
    assert.equal((await handshake('127.0.0.2', httpsPort, 'race.test')).issuer.includes('ebble'), true, 'certificates still served');

    const push = nodes[0]!.run('cluster', 'push', pushFile('split', `${acme()}${vhosts(`${site}/inner/v1`, raceVhost())}`));
    assert.equal(push.status, 1);
    assert.match(push.stderr, /^cluster push: the cluster is read-only \(configuration pushes refused\): etcd quorum lost since .*\n$/);
    const ban = nodes[1]!.run('ban', 'add', '127.0.0.7');
    assert.equal(ban.status, 1);
    assert.match(ban.stderr, /^ban: the cluster is read-only \(ban writes refused\): etcd quorum lost since .*\n$/);
    for (const node of nodes) await waitFor(`${node.name} audited the loss`, () => node.auditEvents('cluster.quorum_lost').length > 0);

    await etcd.restart(1);
    await etcd.restart(2);
    for (const node of nodes) await waitFor(`${node.name} writable again`, () => !node.clusterStatus().read_only, 60_000);
    for (const node of nodes)
      await waitFor(`${node.name} audited the return`, () => node.auditEvents('cluster.quorum_regained').length > 0);
    const after = nodes.map((node) => node.clusterStatus());
    assert.deepEqual(
      after.map((status) => status.config_revision),
      before,
    );
    for (const status of after) assert.equal(status.config_revision, status.cluster_config_revision, 'caught up');
    const again = nodes[2]!.run('cluster', 'push', pushFile('after', `${acme()}${vhosts(`${site}/inner/v1`, raceVhost())}`));
    assert.equal(again.status, 0, again.stderr);
    for (const address of ADDRESSES) assert.equal((await request(port, { host: address })).body, 'inner/v1\n');
    const banned = nodes[1]!.run('ban', 'add', CLIENT, '--seconds', '60');
    assert.equal(banned.status, 0, banned.stderr);
    await waitFor('n3 refuses the ban made after the split', async () => (await getFrom('127.0.0.3', port, CLIENT)) === 'refused', 5000);
  });
});
