import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import zlib from 'node:zlib';
import { Crc32cJs, Crc64NvmeJs } from '@aws-sdk/checksums/crc';
import { Sha1 } from '@aws-sdk/checksums/sha';
import { Crc32, Sha256 } from '@smithy/core/checksum';
import { StatelockError } from '../../src/server/errors.js';
import {
  CRC64_NVME_REFLECTED_POLY,
  computeChecksum,
  computeContentMd5,
  crc32,
  crc32c,
  crc32Js,
  crc64nvme,
  verifyChecksums,
  type ChecksumAlgorithm,
} from '../../src/protocols/aws/checksums.js';

/**
 * The S3 request checksums: the published CRC check values, a cross-check of every algorithm against the
 * AWS SDK for JavaScript's own implementations (an independent code base), and verifyChecksums' verdicts.
 */

const CHECK_INPUT = Buffer.from('123456789', 'ascii');

interface SdkChecksum {
  update(data: Uint8Array): void;
  digest(): Promise<Uint8Array>;
}

/** The AWS SDK's implementation of each algorithm (what the JS S3 client puts in x-amz-checksum-*). */
const SDK: Record<ChecksumAlgorithm, () => SdkChecksum> = {
  crc32: () => new Crc32(),
  crc32c: () => new Crc32cJs(),
  crc64nvme: () => new Crc64NvmeJs(),
  sha1: () => new Sha1(),
  sha256: () => new Sha256(),
};

async function sdkBase64(alg: ChecksumAlgorithm, data: Buffer): Promise<string> {
  const checksum = SDK[alg]();
  checksum.update(data);
  return Buffer.from(await checksum.digest()).toString('base64');
}

/** Asserts that `fn` throws a StatelockError with `code`, returns it, and that its message has no unfilled placeholder. */
function expectCode(fn: () => unknown, code: string): StatelockError {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  assert.ok(caught instanceof StatelockError, `expected ${code}, got ${String(caught)}`);
  assert.equal(caught.code, code, caught.message);
  assert.doesNotMatch(caught.message, /\{\w+\}/, 'every placeholder is filled');
  return caught;
}

function reverseBits64(value: bigint): bigint {
  let out = 0n;
  for (let i = 0; i < 64; i++) out = (out << 1n) | ((value >> BigInt(i)) & 1n);
  return out;
}

describe('CRC check values ("123456789")', () => {
  test('CRC-32 is 0xCBF43926 (native and table implementations)', () => {
    assert.equal(crc32(CHECK_INPUT), 0xcbf43926);
    assert.equal(crc32Js(CHECK_INPUT), 0xcbf43926);
  });

  test('CRC-32C is 0xE3069283', () => {
    assert.equal(crc32c(CHECK_INPUT), 0xe3069283);
  });

  test('CRC-64/NVME is 0xAE8B14860A799888', () => {
    assert.equal(crc64nvme(CHECK_INPUT).toString('hex'), 'ae8b14860a799888');
  });

  test('the reflected CRC-64/NVME polynomial is the bit reversal of the normal form 0xad93d23594c93659', () => {
    assert.equal(reverseBits64(0xad93d23594c93659n), CRC64_NVME_REFLECTED_POLY);
  });

  test('checksums of the empty body', () => {
    assert.equal(crc32(Buffer.alloc(0)), 0);
    assert.equal(crc32c(Buffer.alloc(0)), 0);
    assert.equal(crc64nvme(Buffer.alloc(0)).toString('hex'), '0000000000000000');
  });

  test('node 20 has zlib.crc32, and the table implementation agrees with it on random data', () => {
    assert.equal(typeof zlib.crc32, 'function');
    for (const length of [1, 3, 255, 4096, 100_003]) {
      const data = randomBytes(length);
      assert.equal(crc32Js(data), crc32(data), `length ${length}`);
    }
  });
});

describe('computeChecksum agrees with the AWS SDK for JavaScript', () => {
  const samples: Array<[string, Buffer]> = [
    ['empty', Buffer.alloc(0)],
    ['check input', CHECK_INPUT],
    ['a state file', Buffer.from('{"version":4,"serial":1}\n')],
    ['65 KiB of "a"', Buffer.alloc(66_560, 'a')],
    ...[1, 7, 8, 9, 15, 16, 17, 1000, 65_537, 300_001].map((n): [string, Buffer] => [`${n} random bytes`, randomBytes(n)]),
  ];
  for (const alg of ['crc32', 'crc32c', 'crc64nvme', 'sha1', 'sha256'] as const) {
    test(alg, async () => {
      for (const [name, data] of samples) {
        assert.equal(computeChecksum(alg, data), await sdkBase64(alg, data), `${alg} of ${name}`);
      }
    });
  }

  test('known values: botocore\'s captured crc32 and the AWS documentation\'s crc32c', () => {
    assert.equal(computeChecksum('crc32', Buffer.from('{"version":4,"serial":1}\n')), 'YDY9zQ==');
    assert.equal(computeChecksum('crc32c', Buffer.alloc(66_560, 'a')), 'sOO8/Q==');
    assert.equal(computeChecksum('sha256', Buffer.alloc(0)), createHash('sha256').digest('base64'));
    assert.equal(computeContentMd5(Buffer.alloc(0)), '1B2M2Y8AsgTpgAmY7PhCfg==');
  });
});

describe('verifyChecksums', () => {
  const body = Buffer.from('{"version":4,"serial":7,"lineage":"x"}\n');
  const all = {
    'x-amz-checksum-crc32': computeChecksum('crc32', body),
    'x-amz-checksum-crc32c': computeChecksum('crc32c', body),
    'x-amz-checksum-crc64nvme': computeChecksum('crc64nvme', body),
    'x-amz-checksum-sha1': computeChecksum('sha1', body),
    'x-amz-checksum-sha256': computeChecksum('sha256', body),
    'content-md5': createHash('md5').update(body).digest('base64'),
  };

  test('no checksum at all verifies nothing', () => {
    assert.deepEqual(verifyChecksums({}, null, body), {});
    assert.deepEqual(verifyChecksums({}, {}, body), {});
  });

  test('every algorithm and Content-MD5, as headers', () => {
    assert.deepEqual(verifyChecksums(all, null, body), {
      crc32: all['x-amz-checksum-crc32'],
      crc32c: all['x-amz-checksum-crc32c'],
      crc64nvme: all['x-amz-checksum-crc64nvme'],
      sha1: all['x-amz-checksum-sha1'],
      sha256: all['x-amz-checksum-sha256'],
      md5: all['content-md5'],
    });
  });

  test('a trailer checksum (aws-chunked) is verified too', () => {
    const trailers = { 'x-amz-checksum-crc32': computeChecksum('crc32', body) };
    assert.deepEqual(verifyChecksums({ 'content-encoding': 'aws-chunked', 'x-amz-trailer': 'x-amz-checksum-crc32' }, trailers, body), {
      crc32: trailers['x-amz-checksum-crc32'],
    });
  });

  test('headers that are not checksums of the body are ignored', () => {
    const headers = {
      'x-amz-checksum-mode': 'ENABLED',
      'x-amz-checksum-algorithm': 'CRC32',
      'x-amz-checksum-type': 'FULL_OBJECT',
      'x-amz-sdk-checksum-algorithm': 'CRC32',
      'x-amz-trailer': 'x-amz-checksum-crc32',
    };
    assert.deepEqual(verifyChecksums(headers, null, body), {});
  });

  test('a mismatching header gives AWS_BAD_DIGEST naming the header, the given and the actual value', () => {
    const other = Buffer.from('{"version":4,"serial":8,"lineage":"x"}\n');
    for (const alg of ['crc32', 'crc32c', 'crc64nvme', 'sha1', 'sha256'] as const) {
      const header = `x-amz-checksum-${alg}`;
      const given = computeChecksum(alg, other);
      const err = expectCode(() => verifyChecksums({ [header]: given }, null, body), 'AWS_BAD_DIGEST');
      assert.deepEqual(err.params, { header, given, actual: computeChecksum(alg, body) });
      assert.equal(err.status, 400);
    }
  });

  test('a mismatching Content-MD5 gives AWS_BAD_DIGEST', () => {
    const err = expectCode(() => verifyChecksums({ 'content-md5': computeContentMd5(Buffer.from('x')) }, null, body), 'AWS_BAD_DIGEST');
    assert.equal(err.params['header'], 'Content-MD5');
  });

  test('a mismatching trailer gives AWS_BAD_DIGEST naming the trailer', () => {
    const err = expectCode(() => verifyChecksums({}, { 'x-amz-checksum-crc32': 'AAAAAA==' }, body), 'AWS_BAD_DIGEST');
    assert.equal(err.params['header'], 'x-amz-checksum-crc32 trailer');
  });

  test('one bad value among good ones still fails', () => {
    expectCode(() => verifyChecksums({ ...all, 'x-amz-checksum-sha1': computeChecksum('sha1', Buffer.from('y')) }, null, body), 'AWS_BAD_DIGEST');
  });

  test('malformed values give AWS_INVALID_DIGEST', () => {
    const cases: Array<[string, string]> = [
      ['x-amz-checksum-crc32', 'abc'], // too short
      ['x-amz-checksum-crc32', 'not base64!'], // not base64
      ['x-amz-checksum-crc32', computeChecksum('sha256', body)], // right alphabet, wrong length
      ['x-amz-checksum-crc32', 'YDY9zR=='], // 4 bytes, but stray bits in the padding: not canonical
      ['x-amz-checksum-crc32', 'YDY9zQ'], // padding missing
      ['x-amz-checksum-crc64nvme', computeChecksum('crc32', body)],
      ['x-amz-checksum-sha256', ''],
      ['x-amz-checksum-sha1', '===================================='],
      ['content-md5', 'd41d8cd98f00b204e9800998ecf8427e'], // hex, not base64
    ];
    for (const [header, value] of cases) {
      const err = expectCode(() => verifyChecksums({ [header]: value }, null, body), 'AWS_INVALID_DIGEST');
      assert.equal(err.params['header'], header === 'content-md5' ? 'Content-MD5' : header, `${header}: ${value}`);
      assert.equal(err.status, 400);
    }
    expectCode(() => verifyChecksums({}, { 'x-amz-checksum-crc32c': '???' }, body), 'AWS_INVALID_DIGEST');
  });

  test('surrounding whitespace in a header value is tolerated', () => {
    assert.deepEqual(verifyChecksums({ 'x-amz-checksum-crc32': ` ${all['x-amz-checksum-crc32']} ` }, null, body), {
      crc32: all['x-amz-checksum-crc32'],
    });
  });
});

test('running checksums over pieces equal the one-shot values (streamed PutObject bodies)', async () => {
  const { runningChecksum, computeChecksum, computeContentMd5 } = await import('../../src/protocols/aws/checksums.js');
  const body = Buffer.from(Array.from({ length: 100_003 }, (_, i) => (i * 31 + (i >> 7)) & 0xff));
  for (const alg of ['crc32', 'crc32c', 'crc64nvme', 'sha1', 'sha256', 'md5'] as const) {
    const running = runningChecksum(alg);
    for (let at = 0; at < body.length; at += 7919) running.update(body.subarray(at, at + 7919));
    assert.equal(running.digest(), alg === 'md5' ? computeContentMd5(body) : computeChecksum(alg, body), alg);
  }
  assert.equal(runningChecksum('crc64nvme').digest(), computeChecksum('crc64nvme', Buffer.alloc(0)), 'no bytes at all');
});
