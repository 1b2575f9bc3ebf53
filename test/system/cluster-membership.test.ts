/**
 * The cluster's membership paths against real etcd: the ACME lock's
 * fencing, admission by `cluster admit`, `cluster init`, and a managed etcd
 * member (run as the etcd user, a new one added as a learner and promoted,
 * adding refused while a member is unhealthy).
 */
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { chmodSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Etcd3 } from 'etcd3';
import { putFenced, tryLock, unlock } from '../../src/cluster/acme.js';
import { ClusterTestNode, sharedSite } from '../support/cluster-nodes.js';
import { startEtcdCluster, ETCDCTL_BIN, type EtcdCluster } from '../support/etcd-cluster.js';
import { cli, freePort, tempDir, waitFor } from '../support/harness.js';
import { spawnSync } from 'node:child_process';

/** The uid of a running process, from /proc. */
const uidOf = (pid: number): number => Number(/^Uid:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]);

describe('cluster membership, fencing and managed etcd', () => {
  let etcd: EtcdCluster;
  let site: string;
  const nodes: ClusterTestNode[] = [];
  const vhost = (): string => `[security.timeouts]\nconnection_rate_per_ip = 1000000\n[[vhosts]]\ndomains = ["*"]\nroot = "${site}/v1"\n`;

  before(async () => {
    etcd = await startEtcdCluster();
    site = sharedSite('v1');
  });

  after(async () => {
    for (const node of nodes) await node.stop().catch(() => undefined);
    await etcd?.stop();
  });

  it("an ACME order lock is fenced by its revision: a holder paused past its lease cannot overwrite the next holder's certificate", async () => {
    const files = await etcd.issue('fence-test');
    const client = new Etcd3({
      hosts: [...etcd.endpoints],
      credentials: {
        rootCertificate: Buffer.from(etcd.ca.certPem),
        certChain: readFileSync(files.certFile),
        privateKey: readFileSync(files.keyFile),
      },
    });
    const keys = client.namespace('/fence-test/');
    const paused = keys.lease(1, { autoKeepAlive: false });
    const live = keys.lease(10);
    try {
      const first = await tryLock(keys, 'acme/locks/x', 'a', paused);
      assert.ok(first);
      assert.equal(await tryLock(keys, 'acme/locks/x', 'b', live), null, 'held');
      // The holder stops renewing (paused): its lease runs out and the lock goes with it.
      await waitFor('the paused lock expired', async () => (await keys.get('acme/locks/x').string()) === null, 10_000);
      const next = await tryLock(keys, 'acme/locks/x', 'b', live);
      assert.ok(next);
      assert.notEqual(next.revision, first.revision);
      assert.equal(await putFenced(keys, next, 'certs/x', 'from b'), true);
      assert.equal(await putFenced(keys, first, 'certs/x', 'from a, late'), false, 'the ex-holder is fenced off');
      assert.equal(await keys.get('certs/x').string(), 'from b');
      await unlock(keys, first);
      assert.equal(await keys.get('acme/locks/x').string(), 'b', "the ex-holder cannot release the new holder's lock");
    } finally {
      await live.revoke().catch(() => undefined);
      paused.release();
      client.close();
    }
  });

  it('with allow_auto_join = false a new node waits for `cluster admit NAME` on a member; the wait is audited', async () => {
    const port = await freePort();
    const consensus = 'allow_auto_join = false\nrejoin_delay = 1';
    const a1 = new ClusterTestNode('a1', '127.0.0.1', etcd, site);
    const a2 = new ClusterTestNode('a2', '127.0.0.2', etcd, site);
    nodes.push(a1, a2);
    await a1.configure({ body: vhost(), consensus, cluster: 'key_prefix = "/admission/"' }, port);
    await a2.configure({ body: vhost(), consensus, cluster: 'key_prefix = "/admission/"' }, port);
    await a1.startNode();
    const started = a2.startNode();
    started.catch(() => undefined);
    await waitFor('a2 waits for admission', () => a2.output.includes('waiting for admission'), 30_000);
    await waitFor('a1 audited the pending join', () => a1.auditEvents('cluster.join_pending').some((event) => event.host === 'a2'));
    assert.equal(
      a1.clusterStatus().nodes.some((node) => node.name === 'a2'),
      false,
      'not in yet',
    );
    const admitted = a1.run('cluster', 'admit', 'a2');
    assert.equal(admitted.status, 0, admitted.stderr);
    await started;
    const status = a2.clusterStatus();
    assert.deepEqual(
      status.nodes.map((node) => [node.name, node.alive]),
      [
        ['a1', true],
        ['a2', true],
      ],
    );
    assert.ok(a1.auditEvents('cluster.admit').length > 0);
    // A live node cannot be removed; a stopped one can.
    assert.equal(a1.run('cluster', 'remove', 'a2').status, 1);
    await a2.stop();
    await waitFor('a2 gone', () => !a1.clusterStatus().nodes.some((node) => node.name === 'a2' && node.alive));
    const removed = a1.run('cluster', 'remove', 'a2');
    assert.equal(removed.status, 0, removed.stderr);
    assert.equal(
      a1.clusterStatus().nodes.some((node) => node.name === 'a2'),
      false,
    );
    await a1.stop();
  });

  it('cluster init makes the CA, node certificates and a token as root-only files, and never overwrites', () => {
    const dir = path.join(tempDir('miwidothttp-init-'), 'cluster');
    const made = cli(['cluster', 'init', '--dir', dir, '--node', 'n1', '--node', 'n2', '--address', 'n1=10.0.0.1']);
    assert.equal(made.status, 0, made.stderr);
    const ca = new X509Certificate(readFileSync(path.join(dir, 'ca.pem')));
    const n1 = new X509Certificate(readFileSync(path.join(dir, 'n1.pem')));
    assert.ok(n1.checkIssued(ca) && n1.verify(ca.publicKey));
    assert.match(n1.subject, /CN=n1/);
    assert.match(n1.subjectAltName ?? '', /IP Address:10\.0\.0\.1/);
    for (const secret of ['ca.key', 'n1.key', 'n2.key', 'token'])
      assert.equal(statSync(path.join(dir, secret)).mode & 0o777, 0o600, secret);
    assert.match(readFileSync(path.join(dir, 'token'), 'utf8'), /^[A-Za-z0-9_-]{43}\n$/);
    const again = cli(['cluster', 'init', '--dir', dir]);
    assert.equal(again.status, 1);
    assert.match(again.stderr, /a cluster CA is already there/);
    const more = cli(['cluster', 'cert', 'n3', '--dir', dir]);
    assert.equal(more.status, 0, more.stderr);
    assert.ok(new X509Certificate(readFileSync(path.join(dir, 'n3.pem'))).checkIssued(ca));
  });

  it('a managed etcd member runs as the etcd user; a new node joins as a learner and is promoted; adding is refused while a member is unhealthy', async () => {
    const port = await freePort();
    const data = tempDir('miwidothttp-managed-');
    chmodSync(data, 0o755);
    const [c1, p1, c2, p2, c3, p3] = await Promise.all([freePort(), freePort(), freePort(), freePort(), freePort(), freePort()]);
    const consensus =
      'allow_auto_join = true\nmin_cluster_size = 1\nquorum_size = 1\nelection_timeout_min = 100\nelection_timeout_max = 200\nheartbeat_interval = 20';
    const managed = (name: string, client: number, peer: number): string =>
      `managed = true\nclient_url = "https://127.0.0.1:${client}"\npeer_url = "https://127.0.0.1:${peer}"\ninitial_cluster = ["m1=https://127.0.0.1:${p1}"]\ndata_dir = "${data}/${name}"`;
    const m1 = new ClusterTestNode('m1', '127.0.0.11', etcd, site);
    const m2 = new ClusterTestNode('m2', '127.0.0.12', etcd, site);
    const m3 = new ClusterTestNode('m3', '127.0.0.13', etcd, site);
    nodes.push(m1, m2, m3);
    await m1.configure({ body: vhost(), consensus, endpoints: [`https://127.0.0.1:${c1}`], etcd: managed('m1', c1, p1) }, port);
    await m1.startNode();
    const memberPid = (node: ClusterTestNode): number =>
      node.logLines().find((line) => line.msg === 'managed etcd member started')?.memberPid as number;
    const etcdUid = Number(spawnSync('id', ['-u', 'etcd'], { encoding: 'utf8' }).stdout.trim());
    assert.equal(uidOf(memberPid(m1)), etcdUid, "m1's member runs as etcd");
    assert.notEqual(etcdUid, 0);

    await m2.configure(
      { body: vhost(), consensus, endpoints: [`https://127.0.0.1:${c1}`, `https://127.0.0.1:${c2}`], etcd: managed('m2', c2, p2) },
      port,
    );
    await m2.startNode();
    assert.match(m2.output, /etcd member added as a learner/);
    assert.match(m2.output, /etcd learner caught up and promoted to a voting member/);
    const members = JSON.parse(
      spawnSync(
        ETCDCTL_BIN,
        [
          `--endpoints=https://127.0.0.1:${c1}`,
          `--cacert=${etcd.caFile}`,
          `--cert=${path.join(etcd.dir, 'm1.pem')}`,
          `--key=${path.join(etcd.dir, 'm1.key')}`,
          'member',
          'list',
          '-w',
          'json',
        ],
        { encoding: 'utf8', env: { PATH: '/usr/bin:/bin', ETCDCTL_API: '3' } },
      ).stdout,
    ) as { members: { name: string; isLearner?: boolean }[] };
    assert.deepEqual(members.members.map((member) => [member.name, member.isLearner === true]).sort(), [
      ['m1', false],
      ['m2', false],
    ]);

    // m2's member stops answering: adding m3 now is refused, with one line.
    process.kill(memberPid(m2), 'SIGSTOP');
    try {
      await m3.configure(
        { body: vhost(), consensus, endpoints: [`https://127.0.0.1:${c1}`, `https://127.0.0.1:${c3}`], etcd: managed('m3', c3, p3) },
        port,
      );
      const { code, output } = await m3.startRefused(90_000);
      assert.equal(code, 1);
      assert.match(
        output,
        /miwidothttp: cluster: cannot add this node's etcd member: etcd member m2 .* is unhealthy: adding a member now is refused/,
      );
    } finally {
      process.kill(memberPid(m2), 'SIGCONT');
    }
    await m2.stop();
    await m1.stop();
  });
});
