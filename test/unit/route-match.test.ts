/**
 * Which route answers a path (src/worker/route-match.ts): a table of paths
 * and the route, redirect or refusal each must get.
 */
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { routePathProblem } from '../../src/config/compile-sites.js';
import type { RouteSpec } from '../../src/config/types.js';
import { RouteTable } from '../../src/worker/route-match.js';

const route = (path: string, stripPrefix = false): { spec: RouteSpec; value: string } => ({
  spec: { path, stripPrefix } as RouteSpec,
  value: `${path}${stripPrefix ? ' (strip)' : ''}`,
});

// Longest first, as compile sorts them.
const table = new RouteTable(
  [route('/api/v2/'), route('/static', true), route('/admin/'), route('/api/'), route('/docs/', true)].sort(
    (a, b) => b.spec.path.length - a.spec.path.length,
  ),
);

const cases: [string, string][] = [
  ['/api/users', 'route /api/ -> /api/users'],
  ['/api/v2/x?y=1', 'route /api/v2/ -> /api/v2/x?y=1'],
  ['/api/v2', 'redirect /api/v2/'],
  ['/api', 'redirect /api/'],
  ['/api?q=1', 'redirect /api/?q=1'],
  ['/apix', 'fallback'],
  ['/api/', 'route /api/ -> /api/'],
  ['/%61pi/users', 'route /api/ -> /%61pi/users'],
  ['//admin//', 'route /admin/ -> //admin//'],
  ['/ADMIN/', 'fallback'],
  ['/static', 'route /static (strip) -> /'],
  ['/static/', 'route /static (strip) -> /'],
  ['/static/a/b.css?v=2', 'route /static (strip) -> /a/b.css?v=2'],
  ['/static%2fa', 'bad'],
  ['/staticx', 'fallback'],
  ['/docs/%7Euser/x', 'route /docs/ (strip) -> /%7Euser/x'],
  ['/docs//a', 'route /docs/ (strip) -> /a'],
  ['/x/../admin/', 'bad'],
  ['/%2e%2e/admin/', 'bad'],
  ['/admin/%00', 'bad'],
  ['/admin/%zz', 'bad'],
  ['/admin\\x', 'bad'],
  ['http://evil.example/admin/', 'route /admin/ -> /admin/'],
  ['*', 'bad'],
  ['/', 'fallback'],
];

for (const [target, expected] of cases) {
  it(`${target} -> ${expected}`, () => {
    const match = table.match(target);
    const got =
      match.kind === 'route'
        ? `route ${match.value} -> ${match.url}`
        : match.kind === 'redirect'
          ? `redirect ${match.location}`
          : match.kind;
    assert.equal(got, expected);
  });
}

it('a "/" route matches everything', () => {
  const root = new RouteTable([route('/')]);
  assert.equal(root.match('/anything').kind, 'route');
  assert.equal(root.match('/').kind, 'route');
});

it('refuses route paths that could never match or would climb', () => {
  for (const bad of ['api/', '/a/../b', '/a//b', '/./a', '/a%2f', '/a?b', '/a#b', '/é']) assert.notEqual(routePathProblem(bad), null, bad);
  for (const good of ['/', '/api', '/api/', '/a-b_c.d~e/', "/a:b@c!$&'()*+,;="]) assert.equal(routePathProblem(good), null, good);
});
