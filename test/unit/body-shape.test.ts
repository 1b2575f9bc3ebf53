/** The streaming body inspectors: JSON depth, form fields, multipart parts, across chunk edges. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  formFieldsInspector,
  jsonDepthInspector,
  multipartBoundary,
  multipartPartsInspector,
  type BodyInspector,
} from '../../src/worker/pipeline/body-shape.js';

/** Feed `text` in pieces of `size` bytes; the first rejection's code, or null. */
function run(inspector: BodyInspector, text: string, size: number): string | null {
  const bytes = Buffer.from(text, 'latin1');
  for (let i = 0; i < bytes.length; i += size) {
    const problem = inspector.feed(bytes.subarray(i, i + size));
    if (problem !== null) return problem.code;
  }
  return null;
}

describe('JSON depth', () => {
  const cases: [string, string, string | null][] = [
    ['flat object', '{"a":1,"b":[1,2,3]}', null],
    ['depth exactly the limit', '[[[[1]]]]', null],
    ['one deeper', '[[[[[1]]]]]', 'JSON_TOO_DEEP'],
    ['brackets inside strings do not count', '["[[[[[[[[", "{{{{{{{{"]', null],
    ['escaped quote keeps the string open', '["\\"[[[[[[[[[[[["]', null],
    ['escaped backslash closes it', '["\\\\", [[[[[1]]]]]]', 'JSON_TOO_DEEP'],
    ['deep but closed repeatedly', '[[[[1]]]],[[[[2]]]],[[[[3]]]]', null],
  ];
  for (const [name, text, expected] of cases) {
    for (const size of [1, 3, 1024]) {
      it(`${name} (chunks of ${size})`, () => assert.equal(run(jsonDepthInspector(4), text, size), expected));
    }
  }
});

describe('form fields', () => {
  it('counts urlencoded pairs across chunks', () => {
    assert.equal(run(formFieldsInspector(3), 'a=1&b=2&c=3', 2), null);
    assert.equal(run(formFieldsInspector(3), 'a=1&b=2&c=3&d=4', 2), 'TOO_MANY_FORM_FIELDS');
  });
});

describe('multipart parts', () => {
  const body = (parts: number): string =>
    `${Array.from({ length: parts }, (_, i) => `--XyZ\r\nContent-Disposition: form-data; name="f${i}"\r\n\r\nvalue${i}\r\n`).join('')}--XyZ--\r\n`;
  for (const size of [1, 4, 7, 4096]) {
    it(`counts parts, delimiters split across chunks of ${size}`, () => {
      assert.equal(run(multipartPartsInspector('XyZ', 3), body(3), size), null);
      assert.equal(run(multipartPartsInspector('XyZ', 3), body(4), size), 'TOO_MANY_FORM_FIELDS');
    });
  }
  it('reads the boundary parameter, quoted or not', () => {
    assert.equal(multipartBoundary('multipart/form-data; boundary=abc123'), 'abc123');
    assert.equal(multipartBoundary('multipart/form-data; charset=utf-8; boundary="a b:c"'), 'a b:c');
    assert.equal(multipartBoundary('multipart/form-data'), null);
    assert.equal(multipartBoundary(`multipart/form-data; boundary=${'x'.repeat(71)}`), null);
  });
});
