/**
 * A local stand-in for the parts of the Cloudflare API v4 that miwidothttp
 * uses, answering as Cloudflare documents them (developers.cloudflare.com/api):
 *
 *   GET    /client/v4/zones?name=<name>                     List Zones
 *   GET    /client/v4/zones/{zone_id}/dns_records?type&name List DNS Records
 *   POST   /client/v4/zones/{zone_id}/dns_records           Create DNS Record {type, name, content, ttl}
 *   DELETE /client/v4/zones/{zone_id}/dns_records/{id}      Delete DNS Record -> result {id}
 *   POST   /client/v4/certificates                          Create Origin CA certificate
 *          {hostnames, requested_validity, request_type, csr}
 *          -> result {id, certificate, hostnames, expires_on, request_type, requested_validity, csr}
 *
 * Every answer is the v4 envelope {success, errors: [{code, message}],
 * messages, result}. It checks what a client can get wrong: the Bearer
 * token, the method, the path, the JSON shapes, the CSR (its signature, and
 * that its key matches request_type), the validity from Cloudflare's list,
 * hostnames inside the token's zones, TTL 1 or 60..86400. Error codes are
 * the ones Cloudflare's answers are known to carry (10000 Authentication
 * error, 6003 Invalid request headers, 7000/7001/7003 routing, 81044 and
 * 81058 DNS records, 1010 hostname outside the account, 1016 not
 * authorized, 1100 the Origin CA's database); the client under test must
 * only rely on the envelope, never on a code.
 *
 * TXT records it creates can be forwarded to pebble-challtestsrv
 * (`txtSink`), so that pebble really resolves what went through the
 * Cloudflare provider.
 */
import { randomBytes, X509Certificate } from 'node:crypto';
import http from 'node:http';
import type net from 'node:net';
import { inspectCsr, type TestCa } from './test-ca.js';

const API_PREFIX = '/client/v4';
const ORIGIN_CA_VALIDITY_DAYS = [7, 30, 90, 365, 730, 1095, 5475];
const ORIGIN_CA_SUBJECT = '/O=CloudFlare, Inc./OU=CloudFlare Origin CA/CN=CloudFlare Origin Certificate';

export interface StubZone {
  readonly id: string;
  readonly name: string;
}

export interface TxtSink {
  setTxt(fqdn: string, value: string): Promise<void>;
  clearTxt(fqdn: string): Promise<void>;
}

export interface CloudflareStubOptions {
  /** The one API token that is valid. */
  readonly token: string;
  readonly zones: readonly StubZone[];
  /** Signs Origin CA requests; without it POST /certificates answers 1016. */
  readonly originCa?: TestCa;
  readonly txtSink?: TxtSink;
}

export interface StubRequest {
  readonly method: string;
  readonly path: string;
  readonly query: Record<string, string>;
  readonly authorization: string | undefined;
  readonly body: unknown;
  readonly status: number;
  /** The JSON answered (null when it was not JSON). */
  readonly response: unknown;
}

export interface StubRecord {
  readonly id: string;
  readonly zoneId: string;
  readonly type: 'TXT';
  readonly name: string;
  readonly content: string;
  readonly ttl: number;
  readonly createdOn: string;
}

interface CloudflareError {
  readonly code: number;
  readonly message: string;
}

/** An answer the test forces on the next matching request (after authentication). */
interface Injected {
  readonly route: string;
  readonly status: number;
  readonly body: string;
  readonly contentType: string;
}

class Reject extends Error {
  constructor(
    readonly status: number,
    readonly errors: CloudflareError[],
  ) {
    super(errors[0]?.message ?? 'error');
  }
}

export class CloudflareApiStub {
  readonly requests: StubRequest[] = [];
  readonly records = new Map<string, StubRecord>();
  readonly #options: CloudflareStubOptions;
  readonly #server: http.Server;
  readonly #injected: Injected[] = [];
  #port = 0;

  private constructor(options: CloudflareStubOptions) {
    this.#options = options;
    this.#server = http.createServer((request, response) => void this.#handle(request, response));
  }

  static async start(options: CloudflareStubOptions): Promise<CloudflareApiStub> {
    const stub = new CloudflareApiStub(options);
    await new Promise<void>((resolve) => stub.#server.listen(0, '127.0.0.1', resolve));
    stub.#port = (stub.#server.address() as net.AddressInfo).port;
    return stub;
  }

  /** The API base to give the client ("http://127.0.0.1:PORT/client/v4"). */
  get baseUrl(): string {
    return `http://127.0.0.1:${this.#port}${API_PREFIX}`;
  }

  /**
   * The next request to `route` ("POST /certificates", "DELETE /zones/:zone/dns_records/:id", ...)
   * gets this error envelope instead of its answer.
   */
  failNext(route: string, status: number, errors: CloudflareError[], options: { success?: boolean } = {}): void {
    this.#injected.push({
      route,
      status,
      body: JSON.stringify(envelope(options.success ?? false, null, errors)),
      contentType: 'application/json',
    });
  }

  /** The next request to `route` gets `body` as is (a proxy's HTML page, a truncated answer). */
  answerNextRaw(route: string, status: number, body: string, contentType: string): void {
    this.#injected.push({ route, status, body, contentType });
  }

  async close(): Promise<void> {
    this.#server.closeAllConnections();
    await new Promise((resolve) => this.#server.close(resolve));
  }

  async #handle(request: http.IncomingMessage, response: http.ServerResponse): Promise<void> {
    const url = new URL(request.url ?? '/', 'http://stub.invalid');
    const method = request.method ?? 'GET';
    const path = url.pathname.startsWith(API_PREFIX) ? url.pathname.slice(API_PREFIX.length) : url.pathname;
    const query = Object.fromEntries(url.searchParams);
    const raw = await readBody(request);
    let body: unknown;
    let status = 200;
    let payload: string;
    let contentType = 'application/json';
    try {
      if (raw.length > 0) {
        if (!/^application\/json\b/.test(request.headers['content-type'] ?? ''))
          throw new Reject(400, [{ code: 6003, message: 'Invalid request headers' }]);
        try {
          body = JSON.parse(raw);
        } catch {
          throw new Reject(400, [{ code: 6007, message: 'Malformed JSON in request body' }]);
        }
      }
      if (!url.pathname.startsWith(`${API_PREFIX}/`)) throw new Reject(400, [{ code: 7000, message: 'No route for that URI' }]);
      this.#authenticate(request.headers.authorization);
      const route = routeOf(method, path);
      const injected = this.#injected.findIndex((entry) => entry.route === route);
      if (injected >= 0) {
        const [forced] = this.#injected.splice(injected, 1) as [Injected];
        status = forced.status;
        payload = forced.body;
        contentType = forced.contentType;
      } else {
        payload = JSON.stringify(await this.#route(method, path, query, body));
      }
    } catch (error) {
      if (!(error instanceof Reject)) throw error;
      status = error.status;
      payload = JSON.stringify(envelope(false, null, error.errors));
    }
    let answered: unknown = null;
    try {
      answered = JSON.parse(payload);
    } catch {
      // A raw answer forced by answerNextRaw().
    }
    this.requests.push({ method, path, query, authorization: request.headers.authorization, body, status, response: answered });
    response.writeHead(status, { 'content-type': contentType }).end(payload);
  }

  #authenticate(header: string | undefined): void {
    const match = /^Bearer ([\x21-\x7e]+)$/.exec(header ?? '');
    if (match === null) throw new Reject(400, [{ code: 6003, message: 'Invalid request headers' }]);
    if (match[1] !== this.#options.token) throw new Reject(403, [{ code: 10000, message: 'Authentication error' }]);
  }

  async #route(method: string, path: string, query: Record<string, string>, body: unknown): Promise<object> {
    const parts = path.split('/').filter(Boolean);
    const allow = (...methods: string[]) => {
      if (!methods.includes(method)) throw new Reject(405, [{ code: 7001, message: `Method ${method} not available for that URI.` }]);
    };
    if (parts.length === 1 && parts[0] === 'zones') {
      allow('GET');
      const zones = this.#options.zones.filter((zone) => query.name === undefined || zone.name === query.name);
      return {
        ...envelope(true, zones.map(zoneObject), []),
        result_info: { page: 1, per_page: 20, count: zones.length, total_count: zones.length, total_pages: 1 },
      };
    }
    if (parts[0] === 'zones' && parts[2] === 'dns_records' && (parts.length === 3 || parts.length === 4)) {
      const zone = this.#options.zones.find((candidate) => candidate.id === parts[1]);
      if (zone === undefined)
        throw new Reject(400, [{ code: 7003, message: `Could not route to ${path}, perhaps your object identifier is invalid?` }]);
      if (parts.length === 3) {
        allow('GET', 'POST');
        return method === 'GET' ? this.#listRecords(zone, query) : await this.#createRecord(zone, body);
      }
      allow('DELETE');
      return await this.#deleteRecord(zone, parts[3] as string);
    }
    if (parts.length === 1 && parts[0] === 'certificates') {
      allow('POST');
      return this.#createOriginCertificate(body);
    }
    throw new Reject(400, [{ code: 7000, message: 'No route for that URI' }]);
  }

  #listRecords(zone: StubZone, query: Record<string, string>): object {
    const records = [...this.records.values()].filter(
      (record) =>
        record.zoneId === zone.id &&
        (query.type === undefined || record.type === query.type) &&
        (query.name === undefined || record.name === query.name),
    );
    return {
      ...envelope(
        true,
        records.map((record) => recordObject(zone, record)),
        [],
      ),
      result_info: { page: 1, per_page: 100, count: records.length, total_count: records.length, total_pages: 1 },
    };
  }

  async #createRecord(zone: StubZone, body: unknown): Promise<object> {
    const fields = objectBody(body);
    const { type, name, content, ttl } = fields;
    if (type !== 'TXT') throw new Reject(400, [{ code: 9004, message: 'This stub only creates TXT records' }]);
    if (typeof name !== 'string' || !(name === zone.name || name.endsWith(`.${zone.name}`)))
      throw new Reject(400, [{ code: 9005, message: `Record name ${String(name)} is not in zone ${zone.name}` }]);
    if (typeof content !== 'string' || content.length === 0 || content.length > 2048)
      throw new Reject(400, [{ code: 9007, message: 'Content for TXT record is invalid.' }]);
    if (!(ttl === 1 || (typeof ttl === 'number' && Number.isInteger(ttl) && ttl >= 60 && ttl <= 86_400))) {
      throw new Reject(400, [{ code: 9021, message: 'Invalid TTL. Must be between 60 and 86400 seconds, or 1 for Automatic.' }]);
    }
    const unknown = Object.keys(fields).filter((key) => !['type', 'name', 'content', 'ttl', 'proxied', 'comment', 'tags'].includes(key));
    if (unknown.length > 0) throw new Reject(400, [{ code: 9000, message: `Unknown field ${unknown[0]}` }]);
    if ([...this.records.values()].some((record) => record.zoneId === zone.id && record.name === name && record.content === content)) {
      throw new Reject(400, [{ code: 81058, message: 'An identical record already exists.' }]);
    }
    const record: StubRecord = {
      id: randomBytes(16).toString('hex'),
      zoneId: zone.id,
      type: 'TXT',
      name,
      content,
      ttl,
      createdOn: new Date().toISOString(),
    };
    this.records.set(record.id, record);
    await this.#options.txtSink?.setTxt(name, content);
    return envelope(true, recordObject(zone, record), []);
  }

  async #deleteRecord(zone: StubZone, id: string): Promise<object> {
    const record = this.records.get(id);
    if (record === undefined || record.zoneId !== zone.id) throw new Reject(404, [{ code: 81044, message: 'Record does not exist.' }]);
    this.records.delete(id);
    const sink = this.#options.txtSink;
    if (sink !== undefined) {
      // challtestsrv clears a name whole; put back the values that remain.
      await sink.clearTxt(record.name);
      for (const other of this.records.values()) if (other.name === record.name) await sink.setTxt(other.name, other.content);
    }
    return envelope(true, { id }, []);
  }

  #createOriginCertificate(body: unknown): object {
    const fields = objectBody(body);
    const { hostnames, request_type: requestType, csr } = fields;
    const validity = fields.requested_validity ?? 5475;
    if (!Array.isArray(hostnames) || hostnames.length === 0 || !hostnames.every((name) => typeof name === 'string' && name.length > 0)) {
      throw new Reject(400, [{ code: 1001, message: 'hostnames must be a non-empty list of names' }]);
    }
    if (requestType !== 'origin-rsa' && requestType !== 'origin-ecc' && requestType !== 'keyless-certificate') {
      throw new Reject(400, [{ code: 1001, message: 'request_type must be origin-rsa, origin-ecc or keyless-certificate' }]);
    }
    if (typeof validity !== 'number' || !ORIGIN_CA_VALIDITY_DAYS.includes(validity)) {
      throw new Reject(400, [{ code: 1001, message: `requested_validity must be one of ${ORIGIN_CA_VALIDITY_DAYS.join(', ')}` }]);
    }
    if (typeof csr !== 'string' || !csr.includes('-----BEGIN CERTIFICATE REQUEST-----'))
      throw new Reject(400, [{ code: 1001, message: 'csr must be a PEM certificate request' }]);
    const inspected = inspectCsr(csr);
    if (!inspected.signatureOk) throw new Reject(400, [{ code: 1001, message: 'Failed to read certificate request' }]);
    const expected = requestType === 'origin-ecc' ? 'id-ecPublicKey' : 'rsaEncryption';
    if (inspected.publicKeyAlgorithm !== expected)
      throw new Reject(400, [{ code: 1001, message: `The CSR's key is ${inspected.publicKeyAlgorithm}, request_type is ${requestType}` }]);
    for (const hostname of hostnames as string[]) {
      const bare = hostname.startsWith('*.') ? hostname.slice(2) : hostname;
      if (!this.#options.zones.some((zone) => bare === zone.name || bare.endsWith(`.${zone.name}`))) {
        throw new Reject(400, [
          {
            code: 1010,
            message: `Failed to validate requested hostname ${hostname}: This zone is either not part of your account, or you do not have access to it. Please contact support if using a multi-user organization.`,
          },
        ]);
      }
    }
    const ca = this.#options.originCa;
    if (ca === undefined) throw new Reject(403, [{ code: 1016, message: 'User is not authorized to perform this action' }]);
    const certificate = ca.sign(csr, { dnsNames: hostnames as string[], days: validity, subject: ORIGIN_CA_SUBJECT });
    const leaf = new X509Certificate(certificate);
    return envelope(
      true,
      {
        id: BigInt(`0x${leaf.serialNumber}`).toString(),
        certificate,
        hostnames,
        // Cloudflare writes Go's time format: "2014-01-01 05:20:00.12345 +0000 UTC".
        expires_on: goTime(leaf.validToDate),
        request_type: requestType,
        requested_validity: validity,
        csr,
      },
      [],
    );
  }
}

function envelope(
  success: boolean,
  result: unknown,
  errors: CloudflareError[],
): { success: boolean; errors: CloudflareError[]; messages: never[]; result: unknown } {
  return { success, errors, messages: [], result };
}

function zoneObject(zone: StubZone): object {
  return {
    id: zone.id,
    name: zone.name,
    status: 'active',
    paused: false,
    type: 'full',
    development_mode: 0,
    name_servers: ['ns1.stub.invalid', 'ns2.stub.invalid'],
  };
}

function recordObject(zone: StubZone, record: StubRecord): object {
  return {
    id: record.id,
    zone_id: zone.id,
    zone_name: zone.name,
    name: record.name,
    type: record.type,
    content: record.content,
    proxiable: false,
    proxied: false,
    ttl: record.ttl,
    settings: {},
    meta: {},
    comment: null,
    tags: [],
    created_on: record.createdOn,
    modified_on: record.createdOn,
  };
}

function objectBody(body: unknown): Record<string, unknown> {
  if (body === null || typeof body !== 'object' || Array.isArray(body))
    throw new Reject(400, [{ code: 6007, message: 'Malformed JSON in request body' }]);
  return body as Record<string, unknown>;
}

/** "POST /certificates", "DELETE /zones/:zone/dns_records/:id": what failNext() matches. */
function routeOf(method: string, path: string): string {
  const parts = path.split('/').filter(Boolean);
  if (parts[0] === 'zones' && parts.length >= 2) parts[1] = ':zone';
  if (parts[2] === 'dns_records' && parts.length === 4) parts[3] = ':id';
  return `${method} /${parts.join('/')}`;
}

function goTime(date: Date): string {
  return `${date
    .toISOString()
    .replace('T', ' ')
    .replace(/\.\d+Z$/, '')} +0000 UTC`;
}

function readBody(request: http.IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = '';
    request.setEncoding('utf8');
    request.on('data', (chunk: string) => (text += chunk));
    request.on('end', () => resolve(text));
    request.on('error', reject);
  });
}
