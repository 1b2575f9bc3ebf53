/**
 * A screenshot made small enough to commit: Chromium's 24-bit PNG turned
 * into an 8-bit palette PNG (PNG spec §11.2.3 PLTE, colour type 3) of its
 * 256 most used colours, every other colour drawn as the nearest of them.
 * A flat page with anti-aliased text loses next to nothing and shrinks to
 * a third or less. Reads only what Chromium writes: 8-bit RGB or RGBA,
 * not interlaced.
 */
import zlib from 'node:zlib';

const SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

interface Image {
  readonly width: number;
  readonly height: number;
  /** RGB triplets, row by row. */
  readonly rgb: Buffer;
}

/** Undoes the per-row filters of PNG spec §9.2 (None, Sub, Up, Average, Paeth). */
function decode(png: Buffer): Image {
  if (!png.subarray(0, 8).equals(SIGNATURE)) throw new Error('not a PNG');
  let offset = 8;
  let width = 0;
  let height = 0;
  let channels = 0;
  const data: Buffer[] = [];
  while (offset < png.length) {
    const length = png.readUInt32BE(offset);
    const type = png.toString('latin1', offset + 4, offset + 8);
    const body = png.subarray(offset + 8, offset + 8 + length);
    if (type === 'IHDR') {
      width = body.readUInt32BE(0);
      height = body.readUInt32BE(4);
      if (body[8] !== 8 || (body[9] !== 2 && body[9] !== 6) || body[12] !== 0) throw new Error('only 8-bit RGB(A), not interlaced');
      channels = body[9] === 6 ? 4 : 3;
    } else if (type === 'IDAT') data.push(body);
    offset += 12 + length;
  }
  const raw = zlib.inflateSync(Buffer.concat(data));
  const stride = width * channels;
  const pixels = Buffer.alloc(height * stride);
  for (let y = 0; y < height; y++) {
    const filter = raw[y * (stride + 1)]!;
    const line = raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1));
    const row = pixels.subarray(y * stride, (y + 1) * stride);
    const above = y === 0 ? Buffer.alloc(stride) : pixels.subarray((y - 1) * stride, y * stride);
    for (let x = 0; x < stride; x++) {
      const left = x >= channels ? row[x - channels]! : 0;
      const up = above[x]!;
      const corner = x >= channels ? above[x - channels]! : 0;
      let predictor = 0;
      if (filter === 1) predictor = left;
      else if (filter === 2) predictor = up;
      else if (filter === 3) predictor = (left + up) >> 1;
      else if (filter === 4) {
        const estimate = left + up - corner;
        const [a, b, c] = [Math.abs(estimate - left), Math.abs(estimate - up), Math.abs(estimate - corner)];
        predictor = a <= b && a <= c ? left : b <= c ? up : corner;
      }
      row[x] = (line[x]! + predictor) & 0xff;
    }
  }
  const rgb = Buffer.alloc(width * height * 3);
  for (let i = 0, j = 0; i < pixels.length; i += channels, j += 3) pixels.copy(rgb, j, i, i + 3);
  return { width, height, rgb };
}

function chunk(type: string, body: Buffer): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(body.length, 0);
  head.write(type, 4, 'latin1');
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(zlib.crc32(Buffer.concat([head.subarray(4), body])) >>> 0, 0);
  return Buffer.concat([head, body, crc]);
}

/** The 4-bit-per-channel box a colour falls in. */
const boxOf = (colour: number): number => ((colour >> 20) << 8) | (((colour >> 12) & 0xf) << 4) | ((colour >> 4) & 0xf);

/**
 * The same picture as an 8-bit palette PNG. The palette holds, for each of
 * the 256 most used boxes of similar colours, its most used colour: a colour
 * used by a few pixels only (a legend's swatch) keeps a box of its own
 * rather than losing its place to shades of grey.
 */
export function toPalettePng(png: Buffer): Buffer {
  const { width, height, rgb } = decode(png);
  const boxes = new Map<number, { pixels: number; colours: Map<number, number> }>();
  for (let i = 0; i < rgb.length; i += 3) {
    const colour = rgb.readUIntBE(i, 3);
    let box = boxes.get(boxOf(colour));
    if (box === undefined) boxes.set(boxOf(colour), (box = { pixels: 0, colours: new Map() }));
    box.pixels += 1;
    box.colours.set(colour, (box.colours.get(colour) ?? 0) + 1);
  }
  const palette = [...boxes.values()]
    .sort((a, b) => b.pixels - a.pixels)
    .slice(0, 256)
    .map((box) => [...box.colours].sort((a, b) => b[1] - a[1])[0]![0]);
  const index = new Map<number, number>(palette.map((colour, i) => [colour, i]));
  const nearest = (colour: number): number => {
    let best = 0;
    let bestDistance = Infinity;
    palette.forEach((candidate, i) => {
      const dr = (candidate >> 16) - (colour >> 16);
      const dg = ((candidate >> 8) & 0xff) - ((colour >> 8) & 0xff);
      const db = (candidate & 0xff) - (colour & 0xff);
      const distance = 3 * dr * dr + 4 * dg * dg + 2 * db * db;
      if (distance < bestDistance) [best, bestDistance] = [i, distance];
    });
    index.set(colour, best);
    return best;
  };
  const rows = Buffer.alloc(height * (width + 1));
  for (let y = 0; y < height; y++)
    for (let x = 0; x < width; x++) {
      const colour = rgb.readUIntBE((y * width + x) * 3, 3);
      rows[y * (width + 1) + 1 + x] = index.get(colour) ?? nearest(colour);
    }
  const header = Buffer.alloc(13);
  header.writeUInt32BE(width, 0);
  header.writeUInt32BE(height, 4);
  header.set([8, 3, 0, 0, 0], 8);
  const plte = Buffer.alloc(palette.length * 3);
  for (const [i, colour] of palette.entries()) plte.writeUIntBE(colour, i * 3, 3);
  return Buffer.concat([
    SIGNATURE,
    chunk('IHDR', header),
    chunk('PLTE', plte),
    chunk('IDAT', zlib.deflateSync(rows, { level: 9 })),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}
