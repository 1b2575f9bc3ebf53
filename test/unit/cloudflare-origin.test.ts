/**
 * The Cloudflare Origin CA issuer against the API stub (test/stubs/cloudflare-api.ts),
 * which checks the request as Cloudflare documents it and signs the CSR
 * with a test CA: the documented body, the key made here, each error
 * envelope turned into one line, and the token in no log line and no error.
 */
import assert from 'node:assert/strict';
import { createPrivateKey, X509Certificate } from 'node:crypto';
import http from 'node:http';
import type net from 'node:net';
import { rmSync } from 'node:fs';
import { inspect } from 'node:util';
import { after, before, beforeEach, describe, it } from 'node:test';
import { createCloudflareOriginIssuer, type CloudflareOriginIssuerOptions } from '../../src/tls/issuance/cloudflare-origin.js';
import type { IssuanceError } from '../../src/tls/issuance/types.js';
import { captureLog } from '../support/log-capture.js';
import { issuanceRejection, issuanceRejectionSync } from '../support/issuance-errors.js';
import { inspectCsr, TestCa } from '../support/test-ca.js';
import { freePort, readText, tempDir } from '../support/harness.js';
import { CloudflareApiStub } from '../support/cloudflare-api.js';

const TOKEN = 'origin-ca-token-c2VjcmV0LXNlY3JldA';
const DAY_MS = 86_400_000;

let work: string;
let originCa: TestCa;
let stub: CloudflareApiStub;
const captured = captureLog();
const errorsSeen: string[] = [];

function issuer(overrides: Partial<CloudflareOriginIssuerOptions> = {}) {
  return createCloudflareOriginIssuer({ apiToken: TOKEN, apiBaseUrl: stub.baseUrl, log: captured.log, ...overrides });
}

/** Every error seen is checked for the token at the end. */
async function rejection(promise: Promise<unknown>): Promise<IssuanceError> {
  const error = await issuanceRejection(promise);
  errorsSeen.push(error.message);
  return error;
}

function rejectionSync(work: () => unknown): IssuanceError {
  const error = issuanceRejectionSync(work);
  errorsSeen.push(error.message);
  return error;
}

describe('Cloudflare Origin CA issuer', () => {
  before(async () => {
    work = tempDir('miwidothttp-origin-ca-');
    originCa = new TestCa(work, 'CloudFlare Origin SSL ECC Certificate Authority', 'origin-ca');
    stub = await CloudflareApiStub.start({
      token: TOKEN,
      zones: [
        { id: '023e105f4ecef8ad9ca31a8372d0c353', name: 'example.com' },
        { id: '9a7806061c88ada191ed06f989cc3dac', name: 'example.net' },
      ],
      originCa,
    });
  });

  after(async () => {
    await stub?.close();
    rmSync(work, { recursive: true, force: true });
  });

  beforeEach(() => {
    stub.requests.length = 0;
  });

  it('ECDSA: POST /certificates with the documented body (origin-ecc); the leaf carries the key made here', async () => {
    const names = ['example.com', '*.example.com'];
    const issued = await issuer({ validityDays: 30 }).issue(names);
    assert.equal(stub.requests.length, 1);
    const [request] = stub.requests;
    assert.equal(request?.method, 'POST');
    assert.equal(request?.path, '/certificates');
    assert.equal(request?.authorization, `Bearer ${TOKEN}`);
    const body = request?.body as Record<string, unknown>;
    assert.deepEqual(Object.keys(body).sort(), ['csr', 'hostnames', 'request_type', 'requested_validity']);
    assert.deepEqual(body.hostnames, names);
    assert.equal(body.request_type, 'origin-ecc');
    assert.equal(body.requested_validity, 30);
    assert.equal(inspectCsr(body.csr as string).publicKeyAlgorithm, 'id-ecPublicKey');

    const leaf = new X509Certificate(issued.certPem);
    assert.ok(leaf.checkPrivateKey(createPrivateKey(issued.keyPem)));
    assert.equal(createPrivateKey(issued.keyPem).asymmetricKeyDetails?.namedCurve, 'prime256v1');
    assert.ok(leaf.verify(new X509Certificate(originCa.certPem).publicKey), 'signed by the (stub) Origin CA');
    assert.equal(issued.chainPem, null, 'the Origin CA sends the leaf alone');
    assert.equal(leaf.subjectAltName, 'DNS:example.com, DNS:*.example.com');
    assert.equal(issued.notAfter.getTime(), leaf.validToDate.getTime());
    assert.ok(Math.abs(issued.notAfter.getTime() - issued.notBefore.getTime() - 30 * DAY_MS) < 60_000);
    const result = (request!.response as { result: { expires_on: string; request_type: string } }).result;
    assert.match(result.expires_on, /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \+0000 UTC$/);
  });

  it('RSA 2048: origin-rsa, and a year unless asked otherwise', async () => {
    const issued = await issuer({ keyType: 'rsa-2048' }).issue(['www.example.net']);
    const body = stub.requests[0]?.body as Record<string, unknown>;
    assert.equal(body.request_type, 'origin-rsa');
    assert.equal(body.requested_validity, 365);
    assert.equal(inspectCsr(body.csr as string).publicKeyAlgorithm, 'rsaEncryption');
    assert.equal(createPrivateKey(issued.keyPem).asymmetricKeyDetails?.modulusLength, 2048);
    assert.ok(Math.abs(issued.notAfter.getTime() - issued.notBefore.getTime() - 365 * DAY_MS) < 60_000);
  });

  // Each way the API says no, and the one line it must become.
  const envelopes: {
    what: string;
    arrange: () => void;
    overrides?: Partial<CloudflareOriginIssuerOptions>;
    names?: string[];
    expect: RegExp;
  }[] = [
    {
      what: 'a wrong token: 403, 10000 Authentication error',
      arrange: () => undefined,
      overrides: { apiToken: 'not-the-token-but-also-secret' },
      expect: /^example\.com: cloudflare origin ca: requesting a certificate: HTTP 403: error 10000: Authentication error$/,
    },
    {
      what: 'a hostname outside the account: 400, 1010',
      arrange: () => undefined,
      names: ['example.org'],
      expect:
        /^example\.org: cloudflare origin ca: requesting a certificate: HTTP 400: error 1010: Failed to validate requested hostname example\.org: /,
    },
    {
      what: 'a token without the permission: 403, 1016',
      arrange: () => stub.failNext('POST /certificates', 403, [{ code: 1016, message: 'User is not authorized to perform this action' }]),
      expect: /: HTTP 403: error 1016: User is not authorized to perform this action$/,
    },
    {
      what: "the Origin CA's database: 500, 1100",
      arrange: () => stub.failNext('POST /certificates', 500, [{ code: 1100, message: 'Failed to write certificate to Database' }]),
      expect: /: HTTP 500: error 1100: Failed to write certificate to Database$/,
    },
    {
      what: 'HTTP 200 with success: false',
      arrange: () => stub.failNext('POST /certificates', 200, [{ code: 1001, message: 'Invalid request' }]),
      expect: /: HTTP 200: error 1001: Invalid request$/,
    },
    {
      what: 'several errors: the first, and how many more',
      arrange: () =>
        stub.failNext('POST /certificates', 400, [
          { code: 1001, message: 'first' },
          { code: 1002, message: 'second' },
        ]),
      expect: /: HTTP 400: error 1001: first \(and 1 more\)$/,
    },
    {
      what: 'success: false and no error',
      arrange: () => stub.failNext('POST /certificates', 400, []),
      expect: /: HTTP 400: the API reported failure without an error$/,
    },
    {
      what: "a proxy's HTML error page",
      arrange: () => stub.answerNextRaw('POST /certificates', 502, '<html><body>502 Bad Gateway</body></html>', 'text/html'),
      expect: /: HTTP 502, not a Cloudflare API envelope \(text\/html\)$/,
    },
    {
      what: 'success without a certificate',
      arrange: () =>
        stub.answerNextRaw(
          'POST /certificates',
          200,
          JSON.stringify({ success: true, errors: [], messages: [], result: { id: '1' } }),
          'application/json',
        ),
      expect: /^example\.com: cloudflare origin ca: the answer has no certificate$/,
    },
    {
      what: 'a certificate for another key',
      arrange: () => {
        const other = originCa.issue('other-key', ['example.com']);
        const certificate = readText(other.cert);
        stub.answerNextRaw(
          'POST /certificates',
          200,
          JSON.stringify({ success: true, errors: [], messages: [], result: { id: '2', certificate } }),
          'application/json',
        );
      },
      expect: /^example\.com: the Cloudflare Origin CA sent a certificate for another key$/,
    },
    {
      what: 'the token echoed back is scrubbed',
      arrange: () =>
        stub.failNext('POST /certificates', 400, [{ code: 6111, message: `Invalid format for Authorization header: Bearer ${TOKEN}` }]),
      expect: /: HTTP 400: error 6111: Invalid format for Authorization header: Bearer \[token\]$/,
    },
  ];

  for (const envelope of envelopes) {
    it(`error envelope: ${envelope.what}`, async () => {
      envelope.arrange();
      const error = await rejection(issuer(envelope.overrides).issue(envelope.names ?? ['example.com']));
      assert.match(error.message, envelope.expect);
      assert.equal(stub.requests.length, 1, 'one request, no retry');
    });
  }

  it('an API that does not answer: a timeout, in one line', async () => {
    const silent = http.createServer(() => undefined);
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const { port } = silent.address() as net.AddressInfo;
    try {
      const error = await rejection(
        issuer({ apiBaseUrl: `http://127.0.0.1:${port}/client/v4`, requestTimeoutMs: 300 }).issue(['example.com']),
      );
      assert.equal(
        error.message,
        `example.com: cloudflare origin ca: requesting a certificate: no answer from http://127.0.0.1:${port} within 0.3s`,
      );
    } finally {
      silent.closeAllConnections();
      await new Promise((resolve) => silent.close(resolve));
    }
  });

  it('an API that is not there: the connection error, in one line', async () => {
    const port = await freePort();
    const error = await rejection(issuer({ apiBaseUrl: `http://127.0.0.1:${port}/client/v4` }).issue(['example.com']));
    assert.equal(
      error.message,
      `example.com: cloudflare origin ca: requesting a certificate: cannot reach http://127.0.0.1:${port}: ECONNREFUSED`,
    );
  });

  it('options the API cannot take are refused when the issuer is made', () => {
    assert.match(
      rejectionSync(() => issuer({ validityDays: 14 as never })).message,
      /validity 14 days is not one of 7, 30, 90, 365, 730, 1095, 5475/,
    );
    assert.match(rejectionSync(() => issuer({ apiBaseUrl: 'http://api.cloudflare.com/client/v4' })).message, /is not https/);
    assert.match(
      rejectionSync(() => issuer({ apiBaseUrl: 'https://user:pw@api.cloudflare.com/client/v4' })).message,
      /must not hold credentials/,
    );
    const badToken = `${TOKEN}\r\nX-Injected: 1`;
    const error = rejectionSync(() => issuer({ apiToken: badToken }));
    assert.match(error.message, /token is empty or has characters a token cannot have/);
    assert.ok(!error.message.includes('X-Injected'));
    assert.equal(stub.requests.length, 0);
  });

  it('the token is in no log line, no error and no inspection of the issuer', () => {
    assert.ok(errorsSeen.length >= envelopes.length);
    for (const message of errorsSeen) {
      assert.ok(!message.includes(TOKEN), message);
      assert.ok(!message.includes('not-the-token-but-also-secret'), message);
    }
    const text = captured.text();
    assert.ok(captured.entries('certificate issued').length >= 2, 'issuances were logged');
    assert.ok(!text.includes(TOKEN));
    assert.doesNotMatch(text, /PRIVATE KEY/);
    assert.ok(!inspect(issuer(), { depth: 10, showHidden: true }).includes(TOKEN));
    assert.ok(!JSON.stringify(issuer()).includes(TOKEN));
  });
});
