import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { Crc32 } from '@smithy/core/checksum';
import { readableStreamHasher } from '@smithy/core/checksum';
import { getAwsChunkedEncodingStream, toBase64 } from '@smithy/core/serde';
import { StatelockError } from '../../src/server/errors.js';
import { AwsChunkedDecoder, decodeAwsChunked, encodeAwsChunked, isAwsChunked, storedContentEncoding, type ChunkObserver } from '../../src/protocols/aws/aws-chunked.js';
import { computeChecksum, verifyChecksums } from '../../src/protocols/aws/checksums.js';

/**
 * aws-chunked decoding: botocore's captured body, multi-chunk round trips, the signed variant's
 * chunk-signature extension, the AWS JavaScript SDK's own encoder, and every malformation.
 */

/** botocore 1.43 / CLI, captured on the wire (reference §3.3 point 4). */
const BOTOCORE_CAPTURE = '19\r\n{"version":4,"serial":1}\n\r\n0\r\nx-amz-checksum-crc32:YDY9zQ==\r\n\r\n';

/** An observer that records what the decoder reports. */
function recorder(): { observer: ChunkObserver; chunks: Array<{ size: number; signature: string | undefined; sha256: string | undefined }>; ends: Array<Record<string, string>> } {
  const chunks: Array<{ size: number; signature: string | undefined; sha256: string | undefined }> = [];
  const ends: Array<Record<string, string>> = [];
  return { observer: { wantsDigest: true, chunk: (size, signature, sha256) => void chunks.push({ size, signature, sha256 }), end: (t) => void ends.push(t) }, chunks, ends };
}

function expectMalformed(raw: string | Buffer, reason: RegExp, decodedContentLength: number | null = null): void {
  let caught: unknown;
  try {
    decodeAwsChunked(typeof raw === 'string' ? Buffer.from(raw, 'latin1') : raw, decodedContentLength);
  } catch (err) {
    caught = err;
  }
  assert.ok(caught instanceof StatelockError, `expected AWS_CHUNKED_MALFORMED for ${JSON.stringify(String(raw).slice(0, 60))}, got ${String(caught)}`);
  assert.equal(caught.code, 'AWS_CHUNKED_MALFORMED');
  assert.equal(caught.status, 400);
  assert.doesNotMatch(caught.message, /\{\w+\}/);
  assert.match(String(caught.params['reason']), reason);
}

/** A signed chunk header, with a made-up (well-formed) signature. */
function signedLine(size: number, n: number): string {
  return `${size.toString(16)};chunk-signature=${n.toString(16).padStart(64, '0')}\r\n`;
}

async function collect(stream: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const part of stream) parts.push(typeof part === 'string' ? Buffer.from(part, 'latin1') : Buffer.from(part as Uint8Array));
  return Buffer.concat(parts);
}

describe('isAwsChunked / storedContentEncoding', () => {
  test('triggers on a STREAMING- payload hash or an aws-chunked content coding', () => {
    assert.equal(isAwsChunked({ 'x-amz-content-sha256': 'STREAMING-UNSIGNED-PAYLOAD-TRAILER' }), true);
    assert.equal(isAwsChunked({ 'x-amz-content-sha256': 'STREAMING-AWS4-HMAC-SHA256-PAYLOAD' }), true);
    assert.equal(isAwsChunked({ 'content-encoding': 'aws-chunked' }), true);
    assert.equal(isAwsChunked({ 'content-encoding': 'gzip,aws-chunked' }), true);
    assert.equal(isAwsChunked({ 'content-encoding': 'gzip, AWS-Chunked' }), true);
  });

  test('does not trigger on plain uploads', () => {
    assert.equal(isAwsChunked({}), false);
    assert.equal(isAwsChunked({ 'x-amz-content-sha256': 'UNSIGNED-PAYLOAD' }), false);
    assert.equal(isAwsChunked({ 'x-amz-content-sha256': 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855' }), false);
    assert.equal(isAwsChunked({ 'content-encoding': 'gzip', 'transfer-encoding': 'chunked' }), false);
  });

  test('the stored Content-Encoding drops aws-chunked', () => {
    assert.equal(storedContentEncoding('aws-chunked'), null);
    assert.equal(storedContentEncoding(undefined), null);
    assert.equal(storedContentEncoding('gzip,aws-chunked'), 'gzip');
    assert.equal(storedContentEncoding('aws-chunked, gzip'), 'gzip');
  });
});

describe('decodeAwsChunked: well-formed bodies', () => {
  test("botocore's captured body, and its crc32 trailer verifies", () => {
    const decoded = decodeAwsChunked(Buffer.from(BOTOCORE_CAPTURE, 'latin1'), 25);
    assert.equal(decoded.body.toString('utf8'), '{"version":4,"serial":1}\n');
    assert.deepEqual(decoded.trailers, { 'x-amz-checksum-crc32': 'YDY9zQ==' });
    assert.deepEqual(decoded.chunkLengths, [25, 0]);
    assert.equal(computeChecksum('crc32', decoded.body), 'YDY9zQ==');
    assert.deepEqual(verifyChecksums({}, decoded.trailers, decoded.body), { crc32: 'YDY9zQ==' });
  });

  test('a trailer checksum that does not match the body is caught by verifyChecksums', () => {
    const tampered = BOTOCORE_CAPTURE.replace('"serial":1', '"serial":2');
    const decoded = decodeAwsChunked(Buffer.from(tampered, 'latin1'), null);
    assert.throws(() => verifyChecksums({}, decoded.trailers, decoded.body), (err: unknown) => err instanceof StatelockError && err.code === 'AWS_BAD_DIGEST');
  });

  test('multi-chunk bodies round-trip byte for byte (64 KiB chunks)', () => {
    for (const length of [0, 1, 65_535, 65_536, 65_537, 3 * 65_536, 300_001]) {
      const body = randomBytes(length);
      const trailers = { 'x-amz-checksum-crc32': computeChecksum('crc32', body) };
      const decoded = decodeAwsChunked(encodeAwsChunked(body, { trailers }), length);
      assert.ok(decoded.body.equals(body), `length ${length}`);
      assert.deepEqual(decoded.trailers, trailers);
      const expectedChunks = Math.ceil(length / 65_536);
      assert.equal(decoded.chunkLengths.length, expectedChunks + 1);
      assert.equal(decoded.chunkLengths.at(-1), 0);
      assert.deepEqual(verifyChecksums({}, decoded.trailers, decoded.body), { crc32: trailers['x-amz-checksum-crc32'] });
    }
  });

  test('a hand-written multi-chunk body with upper-case hex sizes and uneven chunks', () => {
    const raw = 'A\r\n0123456789\r\n1\r\n\n\r\n3\r\nabc\r\n0\r\n\r\n';
    const decoded = decodeAwsChunked(Buffer.from(raw, 'latin1'), 14);
    assert.equal(decoded.body.toString('latin1'), '0123456789\nabc');
    assert.deepEqual(decoded.chunkLengths, [10, 1, 3, 0]);
  });

  test('data bytes that look like framing (CRLF, "0\\r\\n") are taken as data', () => {
    const data = Buffer.from('0\r\n\r\nx:y\r\n\r\n', 'latin1');
    const decoded = decodeAwsChunked(encodeAwsChunked(data, { chunkSize: 4 }), data.length);
    assert.ok(decoded.body.equals(data));
    assert.deepEqual(decoded.trailers, {});
  });

  test('empty trailer section', () => {
    const decoded = decodeAwsChunked(Buffer.from('5\r\nhello\r\n0\r\n\r\n', 'latin1'), 5);
    assert.equal(decoded.body.toString(), 'hello');
    assert.deepEqual(decoded.trailers, {});
  });

  test('an empty body', () => {
    assert.equal(decodeAwsChunked(Buffer.from('0\r\n\r\n'), 0).body.length, 0);
    assert.equal(decodeAwsChunked(Buffer.from('0\r\nx-amz-checksum-crc32:AAAAAA==\r\n\r\n'), 0).body.length, 0);
  });

  test('"0\\r\\n" then end of body (the JS SDK encoder without a checksum) is accepted', () => {
    const decoded = decodeAwsChunked(Buffer.from('5\r\nhello\r\n0\r\n'), 5);
    assert.equal(decoded.body.toString(), 'hello');
    assert.deepEqual(decoded.trailers, {});
  });

  test('the signed variant: each chunk-signature reaches the observer with its chunk\'s SHA-256, final chunk included', () => {
    const raw = `${signedLine(5, 1)}hello\r\n${signedLine(6, 2)} world\r\n${signedLine(0, 3)}\r\n`;
    const seen = recorder();
    const decoded = decodeAwsChunked(Buffer.from(raw, 'latin1'), 11, seen.observer);
    assert.equal(decoded.body.toString(), 'hello world');
    assert.deepEqual(seen.chunks.map((c) => c.signature), [1, 2, 3].map((n) => n.toString(16).padStart(64, '0')));
    assert.deepEqual(seen.chunks.map((c) => c.sha256), ['hello', ' world', ''].map((t) => createHash('sha256').update(t).digest('hex')));
    assert.deepEqual(decoded.chunkLengths, [5, 6, 0]);
    assert.deepEqual(seen.ends, [{}]);
  });

  test('the signed-trailer variant, in the SDK layout and in the AWS documentation layout', () => {
    const trailerLines = 'x-amz-checksum-crc32c:sOO8/Q==\r\nx-amz-trailer-signature:' + 'ab'.repeat(32) + '\r\n';
    for (const afterFinal of ['', '\r\n']) {
      const raw = `${signedLine(5, 1)}hello\r\n${signedLine(0, 2)}${afterFinal}${trailerLines}\r\n`;
      const decoded = decodeAwsChunked(Buffer.from(raw, 'latin1'), 5);
      assert.equal(decoded.body.toString(), 'hello');
      assert.deepEqual(Object.keys(decoded.trailers), ['x-amz-checksum-crc32c', 'x-amz-trailer-signature']);
      assert.deepEqual(decoded.chunkLengths, [5, 0]);
    }
  });

  test('a trailer named like an Object.prototype member is an ordinary entry', () => {
    const decoded = decodeAwsChunked(Buffer.from('0\r\n__proto__:x\r\nconstructor:y\r\n\r\n'), 0);
    assert.deepEqual(Object.entries(decoded.trailers), [['__proto__', 'x'], ['constructor', 'y']]);
    assert.equal(Object.getPrototypeOf(decoded.trailers), Object.prototype);
  });

  test('trailer names are lowercased and values trimmed; unknown chunk extensions are ignored', () => {
    const decoded = decodeAwsChunked(Buffer.from('5;foo=bar\r\nhello\r\n0\r\nX-Amz-Checksum-CRC32:  NhCmhg== \r\n\r\n'), 5);
    assert.deepEqual(decoded.trailers, { 'x-amz-checksum-crc32': 'NhCmhg==' });
    assert.deepEqual(verifyChecksums({}, decoded.trailers, decoded.body), { crc32: computeChecksum('crc32', Buffer.from('hello')) });
  });
});

describe('decodeAwsChunked: what the AWS SDK for JavaScript emits', () => {
  async function sdkEncode(pieces: Buffer[], withChecksum: boolean): Promise<Buffer> {
    const source = Readable.from(pieces);
    const bodyLengthChecker = (body: unknown): number | undefined => (body instanceof Uint8Array ? body.length : undefined);
    const stream = withChecksum
      ? getAwsChunkedEncodingStream(source, {
          base64Encoder: toBase64,
          bodyLengthChecker,
          checksumAlgorithmFn: Crc32,
          checksumLocationName: 'x-amz-checksum-crc32',
          streamHasher: readableStreamHasher,
        })
      : getAwsChunkedEncodingStream(source, { bodyLengthChecker });
    return collect(stream);
  }

  test('getAwsChunkedEncodingStream with a crc32 trailer: one chunk per source piece, decodes and verifies', async () => {
    const pieces = [randomBytes(65_536), randomBytes(65_536), randomBytes(1234)];
    const raw = await sdkEncode(pieces, true);
    const body = Buffer.concat(pieces);
    const decoded = decodeAwsChunked(raw, body.length);
    assert.ok(decoded.body.equals(body));
    assert.deepEqual(decoded.chunkLengths, [65_536, 65_536, 1234, 0]);
    assert.deepEqual(Object.keys(decoded.trailers), ['x-amz-checksum-crc32']);
    assert.deepEqual(verifyChecksums({}, decoded.trailers, decoded.body), { crc32: computeChecksum('crc32', body) });
    assert.ok(raw.subarray(-4).equals(Buffer.from('\r\n\r\n')), 'with a checksum the SDK ends with the empty line');
  });

  test('getAwsChunkedEncodingStream without a checksum ends at "0\\r\\n", and that decodes', async () => {
    const pieces = [Buffer.from('{"version":4,'), Buffer.from('"serial":3}\n')];
    const raw = await sdkEncode(pieces, false);
    assert.ok(raw.toString('latin1').endsWith('\r\n0\r\n'), JSON.stringify(raw.toString('latin1')));
    assert.equal(decodeAwsChunked(raw, null).body.toString(), '{"version":4,"serial":3}\n');
  });
});

describe('decodeAwsChunked: malformations', () => {
  test('bad size lines', () => {
    expectMalformed('zz\r\nhello\r\n0\r\n\r\n', /chunk 1: size line "zz" does not start with a hexadecimal chunk size/);
    expectMalformed('-5\r\nhello\r\n0\r\n\r\n', /chunk 1: .*hexadecimal/);
    expectMalformed(' 5\r\nhello\r\n0\r\n\r\n', /chunk 1: .*hexadecimal/);
    expectMalformed('0x5\r\nhello\r\n0\r\n\r\n', /chunk 1: .*hexadecimal/);
    expectMalformed('\r\nhello\r\n0\r\n\r\n', /chunk 1: .*hexadecimal/);
    expectMalformed('5\r\nhello\r\nq\r\n', /chunk 2: size line "q"/);
    expectMalformed('fffffffffffffff\r\nhello\r\n0\r\n\r\n', /too large/);
    expectMalformed('{"version":4,"serial":1}\n', /chunk 1: size line .* is not terminated by CRLF/);
    expectMalformed('{"version":4,"serial":1}\r\n', /does not start with a hexadecimal chunk size/);
    expectMalformed('5\nhello\n0\n\n', /not terminated by CRLF/);
    expectMalformed(`5;chunk-signature=${'0'.repeat(63)}\r\nhello\r\n`, /chunk-signature .* is not 64 lowercase hexadecimal digits/);
    expectMalformed(`5;chunk-signature=${'A'.repeat(64)}\r\nhello\r\n`, /is not 64 lowercase hexadecimal digits/);
    expectMalformed('5;=x\r\nhello\r\n0\r\n\r\n', /malformed chunk extension/);
    expectMalformed(`5${';chunk-signature=' + 'a'.repeat(64)}${';chunk-signature=' + 'b'.repeat(64)}\r\nhello\r\n`, /given twice/);
  });

  test('short chunks', () => {
    expectMalformed('5\r\nhel', /chunk 1 declares 5 bytes but only 3 remain/);
    expectMalformed('ff\r\nhello\r\n0\r\n\r\n', /chunk 1 declares 255 bytes but only 12 remain/);
  });

  test('missing CRLF after chunk data', () => {
    expectMalformed('5\r\nhelloX\r\n0\r\n\r\n', /chunk 1: its 5 data bytes are not followed by CRLF/);
    expectMalformed('3\r\nhello\r\n0\r\n\r\n', /chunk 1: its 3 data bytes are not followed by CRLF/);
    expectMalformed('5\r\nhello', /chunk 1: its 5 data bytes are not followed by CRLF/);
  });

  test('no final 0-length chunk', () => {
    expectMalformed('', /ends after 0 chunk\(s\) without the final 0-length chunk/);
    expectMalformed('5\r\nhello\r\n', /ends after 1 chunk\(s\) without the final 0-length chunk/);
  });

  test('a trailer section that does not end with an empty line', () => {
    expectMalformed('5\r\nhello\r\n0\r\nx-amz-checksum-crc32:NhCmhg==\r\n', /trailer section is not terminated by an empty line/);
    expectMalformed('5\r\nhello\r\n0\r\nx-amz-checksum-crc32:NhCmhg==', /trailer section is not terminated by an empty line/);
    expectMalformed('5\r\nhello\r\n0\r\n\r', /trailer section is not terminated/);
  });

  test('bad or duplicate trailer lines', () => {
    expectMalformed('5\r\nhello\r\n0\r\nno colon here\r\n\r\n', /trailer line "no colon here" is not "name:value"/);
    expectMalformed('5\r\nhello\r\n0\r\n:value\r\n\r\n', /is not "name:value"/);
    expectMalformed('5\r\nhello\r\n0\r\nbad name:v\r\n\r\n', /is not "name:value"/);
    expectMalformed('0\r\nx-amz-checksum-crc32:a\r\nX-Amz-Checksum-Crc32:b\r\n\r\n', /trailer x-amz-checksum-crc32 is given twice/);
  });

  test('trailing garbage after the end', () => {
    expectMalformed('5\r\nhello\r\n0\r\n\r\ngarbage', /bytes after the end of the body: "garbage"/);
    expectMalformed('5\r\nhello\r\n0\r\n\r\ngarbage\r\n', /bytes after the end of the body: "garbage"/);
    expectMalformed('5\r\nhello\r\n0\r\n\r\n\r\n', /bytes after the end of the body/);
    expectMalformed(`${BOTOCORE_CAPTURE}\r\n`, /bytes after the end of the body: "\\r\\n"/);
    expectMalformed(`${BOTOCORE_CAPTURE}5\r\nhello\r\n0\r\n\r\n`, /bytes after the end of the body: "5\\r\\nhello/);
  });

  test('signed and unsigned chunks mixed', () => {
    expectMalformed(`${signedLine(5, 1)}hello\r\n0\r\n\r\n`, /chunk 2 has no chunk-signature although the chunks before it are signed/);
    expectMalformed(`5\r\nhello\r\n${signedLine(0, 1)}\r\n`, /chunk 2 has a chunk-signature although the chunks before it are not signed/);
  });

  test('decoded length differs from x-amz-decoded-content-length', () => {
    expectMalformed(BOTOCORE_CAPTURE, /chunk 1 declares 25 bytes, past the 24 of x-amz-decoded-content-length/, 24);
    expectMalformed(BOTOCORE_CAPTURE, /says 26/, 26);
  });
});

describe('AwsChunkedDecoder: the body in pieces, split anywhere', () => {
  /** Feeds `raw` to a fresh decoder in the pieces `cuts` make; returns what it decoded, or the refusal's reason. */
  function decodeSplit(raw: Buffer, cuts: number[], decodedLength: number | null): { body: Buffer; trailers: Record<string, string>; chunks: ReturnType<typeof recorder>['chunks'] } | { reason: string } {
    const seen = recorder();
    const decoder = new AwsChunkedDecoder(decodedLength, seen.observer);
    const out: Buffer[] = [];
    try {
      let from = 0;
      for (const cut of [...cuts, raw.length]) {
        const piece = Buffer.from(raw.subarray(from, cut)); // a buffer of its own, as a socket read is
        for (const data of decoder.push(piece)) {
          assert.equal(data.buffer, piece.buffer, 'data is a view of the piece it came in, never a copy');
          out.push(data);
        }
        from = cut;
      }
      const { trailers } = decoder.end();
      return { body: Buffer.concat(out), trailers, chunks: seen.chunks };
    } catch (err) {
      assert.ok(err instanceof StatelockError && err.code === 'AWS_CHUNKED_MALFORMED', String(err));
      // Where garbage after the end is seen first depends on the split; the rest of the reason does not.
      return { reason: String(err.params['reason']).replace(/^(bytes after the end of the body).*/s, '$1') };
    }
  }

  /** Every split into two pieces, every split into three pieces, and one byte at a time. */
  function* splits(length: number): Generator<number[]> {
    for (let i = 0; i <= length; i++) yield [i];
    for (let i = 1; i < length; i++) for (let j = i; j < length; j++) yield [i, j];
    yield Array.from({ length: Math.max(0, length - 1) }, (_, i) => i + 1);
  }

  const SIG = (n: number) => n.toString(16).padStart(64, '0');
  const WELL_FORMED: Array<[string, string, number | null]> = [
    ['botocore capture', BOTOCORE_CAPTURE, 25],
    ['several chunks, empty trailer section', 'A\r\n0123456789\r\n1\r\n\n\r\n3\r\nabc\r\n0\r\n\r\n', 14],
    ['JS SDK without a checksum', '5\r\nhello\r\n0\r\n', 5],
    ['empty body', '0\r\n\r\n', 0],
    ['signed, signed trailer', `5;chunk-signature=${SIG(1)}\r\nhello\r\n0;chunk-signature=${SIG(2)}\r\nx-amz-checksum-crc32:NhCmhg==\r\nx-amz-trailer-signature:${'ab'.repeat(32)}\r\n\r\n`, 5],
    ['documentation layout', `5;chunk-signature=${SIG(1)}\r\nhello\r\n0;chunk-signature=${SIG(2)}\r\n\r\nx-amz-checksum-crc32:NhCmhg==\r\n\r\n`, 5],
    ['data that looks like framing, CR before LF across pieces', '6\r\n0\r\n\r\r\n\r\n0\r\nx:y\r\n\r\n', 6],
    ['a bare CR inside a trailer line', '5\r\nhello\r\n0\r\nx-amz-meta-a:b\rc\r\n\r\n', 5],
  ];

  for (const [name, text, length] of WELL_FORMED) {
    test(`well-formed: ${name}`, () => {
      const raw = Buffer.from(text, 'latin1');
      const whole = decodeSplit(raw, [], length);
      assert.ok('body' in whole, JSON.stringify(whole));
      for (const cuts of splits(raw.length)) assert.deepEqual(decodeSplit(raw, cuts, length), whole, `cut at ${cuts.join(',')}`);
    });
  }

  const MALFORMED: Array<[string, number | null, RegExp]> = [
    ['zz\r\nhello\r\n0\r\n\r\n', null, /chunk 1: size line "zz" does not start with a hexadecimal chunk size/],
    ['5\r\nhello\r\nq\r\n', null, /chunk 2: size line "q"/],
    ['5\nhello\n0\n\n', null, /chunk 1: size line "5" is not terminated by CRLF/],
    ['5\r\nhel', null, /chunk 1 declares 5 bytes but only 3 remain/],
    ['5\r\nhelloX\r\n0\r\n\r\n', null, /chunk 1: its 5 data bytes are not followed by CRLF/],
    ['5\r\nhello\r', null, /chunk 1: its 5 data bytes are not followed by CRLF/],
    ['5\r\nhello\r\n', null, /ends after 1 chunk\(s\) without the final 0-length chunk/],
    ['5\r\nhello\r\n0', null, /chunk 2: size line "0" is not terminated by CRLF/],
    ['5\r\nhello\r\n0\r\nx-amz-checksum-crc32:NhCmhg==\r\n', null, /trailer section is not terminated by an empty line/],
    ['5\r\nhello\r\n0\r\nx-amz-checksum-crc32:NhCmhg==\r\n\r\ngarbage', null, /^bytes after the end of the body$/],
    ['5\r\nhello\r\n0\r\n\r\n\r\n', null, /^bytes after the end of the body$/],
    ['5\r\nhello\r\n3\r\nabc\r\n0\r\n\r\n', 6, /chunk 2 declares 3 bytes, past the 6 of x-amz-decoded-content-length \(5 decoded before it\)/],
    ['5\r\nhello\r\n0\r\n\r\n', 6, /decoded body is 5 bytes but x-amz-decoded-content-length says 6/],
    [`5;chunk-signature=${SIG(1)}\r\nhello\r\n0\r\n\r\n`, null, /chunk 2 has no chunk-signature/],
  ];

  test('malformed bodies are refused with the same reason however they are split', () => {
    for (const [text, length, reason] of MALFORMED) {
      const raw = Buffer.from(text, 'latin1');
      const whole = decodeSplit(raw, [], length);
      assert.ok('reason' in whole && reason.test(whole.reason), `${JSON.stringify(text)}: ${JSON.stringify(whole)}`);
      for (const cuts of splits(raw.length)) assert.deepEqual(decodeSplit(raw, cuts, length), whole, `${JSON.stringify(text)} cut at ${cuts.join(',')}`);
    }
  });

  test('refusals come as soon as the bytes show them, not at the end: nothing unbounded is held', () => {
    const early = (decoder: AwsChunkedDecoder, piece: string, reason: RegExp) => {
      assert.throws(() => decoder.push(Buffer.from(piece, 'latin1')), (err: unknown) => err instanceof StatelockError && err.code === 'AWS_CHUNKED_MALFORMED' && reason.test(String(err.params['reason'])));
    };
    // A chunk past the declared decoded length: refused on its size line, before any of its data.
    const past = new AwsChunkedDecoder(100);
    assert.equal(past.push(Buffer.from('10\r\n0123456789abcdef\r\n')).length, 1);
    early(past, '100000\r\n', /chunk 2 declares 1048576 bytes, past the 100/);
    // A size line that never ends: refused once it passes 4096 bytes.
    const longLine = new AwsChunkedDecoder(null);
    longLine.push(Buffer.from('5;x=' + 'y'.repeat(4000)));
    early(longLine, 'y'.repeat(100), /chunk 1: size line .* is longer than 4096 bytes without a CRLF/);
    // A trailer section that never ends.
    const trailers = new AwsChunkedDecoder(null);
    trailers.push(Buffer.from('0\r\n'));
    for (let i = 0; i < 200; i++) trailers.push(Buffer.from(`x-amz-meta-${i}:${'v'.repeat(60)}\r\n`).subarray(0, i < 199 ? undefined : 10));
    early(trailers, 'v'.repeat(20_000), /trailer section is longer than 16384 bytes/);
    // Bytes after the end: refused as they arrive.
    const after = new AwsChunkedDecoder(null);
    after.push(Buffer.from('0\r\nx-amz-checksum-crc32:AAAAAA==\r\n\r\n'));
    early(after, 'more', /bytes after the end of the body: "more"/);
  });

  test('a 5 MiB body in uneven pieces: each data byte passes once, as views', () => {
    const body = randomBytes(5 * 1024 * 1024 + 17);
    const raw = encodeAwsChunked(body, { chunkSize: 65_536, trailers: { 'x-amz-checksum-crc32': computeChecksum('crc32', body) } });
    const cuts: number[] = [];
    for (let at = 1, step = 1; at < raw.length; at += step, step = (step * 7 + 3) % 40_000 || 1) cuts.push(at);
    const decoded = decodeSplit(raw, cuts, body.length);
    assert.ok('body' in decoded && decoded.body.equals(body));
    assert.equal(decoded.chunks.length, Math.ceil(body.length / 65_536) + 1);
  });
});
