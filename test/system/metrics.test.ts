/**
 * The Prometheus endpoint ([server.metrics], issue 5 item 6) of a real
 * server with two workers: totals over both workers, rejections by reason,
 * rate-limited requests, bans, worker restarts, reloads and their result.
 */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { cli, freePort, rawRequest, request, TestServer, waitFor } from '../support/harness.js';

/** Value of one sample (`name{labels}` exactly as exposed), or 0 when absent. */
function sample(text: string, series: string): number {
  const line = text.split('\n').find((row) => row.startsWith(`${series} `));
  return line === undefined ? 0 : Number(line.slice(series.length + 1));
}

describe('metrics', () => {
  const server = new TestServer();
  let metricsPort = 0;
  const scrape = async (): Promise<string> => {
    const response = await request(metricsPort, { path: '/metrics' });
    assert.equal(response.status, 200);
    assert.match(String(response.headers['content-type']), /^text\/plain; version=0\.0\.4/);
    return response.body;
  };

  before(async () => {
    writeFileSync(path.join(server.dir, 'index.html'), 'ok\n');
    metricsPort = await freePort();
    const config = `[security.limits]
max_headers = 10

[security.rate_limiting]
enabled = true
requests_per_second = 1
burst_size = 1

[security.ddos]
whitelist = ["127.0.0.1"]

[[vhosts]]
domains = ["m.test"]
root = "${server.dir}"`;
    await server.start(config, `[server.metrics]\nenabled = true\nport = ${metricsPort}\n`);
  });
  after(() => server.stop());

  it('counts every response of both workers by vhost and status', async () => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 8 });
    const responses = await Promise.all(
      Array.from({ length: 40 }, () => request(server.port, { path: '/', headers: { Host: 'm.test' }, agent })),
    );
    await Promise.all(Array.from({ length: 5 }, () => request(server.port, { path: '/missing', headers: { Host: 'm.test' }, agent })));
    agent.destroy();
    assert.ok(responses.every((response) => response.status === 200));
    const text = await waitFor('the counts', async () => {
      const body = await scrape();
      return sample(body, 'miwidothttp_requests_total{vhost="m.test",status="200"}') >= 40 ? body : null;
    });
    assert.equal(sample(text, 'miwidothttp_requests_total{vhost="m.test",status="200"}'), 40);
    assert.equal(sample(text, 'miwidothttp_requests_total{vhost="m.test",status="404"}'), 5);
  });

  it('counts rejections by reason and rate-limited requests', async () => {
    const answer = await rawRequest(server.port, `GET / HTTP/1.1\r\nHost: m.test\r\n${'X-H: v\r\n'.repeat(15)}\r\n`);
    assert.match(answer, /^HTTP\/1\.1 431 /);
    const statuses: number[] = [];
    for (let i = 0; i < 4; i++)
      statuses.push((await request(server.port, { path: '/', headers: { Host: 'm.test' }, localAddress: '127.0.0.50' })).status);
    assert.ok(statuses.includes(429), `statuses ${statuses}`);
    const limited = statuses.filter((status) => status === 429).length;
    const text = await waitFor('the rejections', async () => {
      const body = await scrape();
      return sample(body, 'miwidothttp_rate_limited_requests_total') >= limited ? body : null;
    });
    assert.equal(sample(text, 'miwidothttp_rejections_total{reason="request.too_many_headers"}'), 1);
    assert.equal(sample(text, 'miwidothttp_rejections_total{reason="request.rate_limited"}'), limited);
    assert.equal(sample(text, 'miwidothttp_rate_limited_requests_total'), limited);
  });

  it('shows bans, worker restarts, reloads and the last reload result', async () => {
    assert.equal(cli(['ban', 'add', '127.0.0.51', '-c', server.configFile]).status, 0);
    const worker = server.status().workers[0]!;
    process.kill(worker.pid, 'SIGKILL');
    await waitFor('a replacement', () => server.status().workers.every((w) => w.pid !== worker.pid && w.state === 'ready') || undefined);
    assert.equal(cli(['reload', '-c', server.configFile]).status, 0);
    writeFileSync(server.configFile, `${readFileSync(server.configFile, 'utf8')}\n[server.http3]\nbogus = 1\n`);
    assert.equal(cli(['reload', '-c', server.configFile]).status, 1);
    const text = await scrape();
    assert.equal(sample(text, 'miwidothttp_active_bans'), 1);
    assert.equal(sample(text, 'miwidothttp_bans_total{source="admin"}'), 1);
    assert.equal(sample(text, 'miwidothttp_worker_restarts_total'), 1);
    assert.equal(sample(text, 'miwidothttp_reloads_total{result="ok"}'), 1);
    assert.equal(sample(text, 'miwidothttp_reloads_total{result="refused"}'), 1);
    assert.equal(sample(text, 'miwidothttp_last_reload_success'), 0);
  });

  it('answers only GET /metrics, on 127.0.0.1', async () => {
    assert.equal((await request(metricsPort, { path: '/' })).status, 404);
    assert.equal((await request(metricsPort, { path: '/metrics', method: 'POST' })).status, 405);
    await assert.rejects(request(metricsPort, { path: '/metrics', host: '127.0.0.2' }), /ECONNREFUSED/);
  });
});
