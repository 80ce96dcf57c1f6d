/**
 * One figure for work on the aws-chunked upload path: a state PutObject over HTTPS by the real AWS SDK for
 * JavaScript, whose stream body it sends as aws-chunked with a trailing CRC32 (STREAMING-UNSIGNED-PAYLOAD-TRAILER,
 * as Terraform's and OpenTofu's Go SDK do over HTTPS). Each run: a fresh `statelock serve --tls-cert …` on a
 * fresh data directory, one PutObject of the state, then the server's VmHWM (peak RSS), its idle RSS and the CPU
 * time it spent on the upload (less sensitive than MiB/s to other jobs on a shared machine).
 *
 *   node dist/bench/aws-chunked-put.js [MiB] [runs] [piece KiB]
 *
 * Defaults: 100 MiB, 3 runs, 64 KiB pieces (what fs.createReadStream gives; one aws-chunk per piece); a piece
 * size of 0 sends the whole body as one chunk, the Go SDK's form for a body of known length. Prints MiB/s and
 * peak RSS ÷ size per run and their medians; writes nothing under bench/results.
 */
import { Readable } from 'node:stream';
import { CreateBucketCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { s3Client, startAwsServer } from '../test/support/aws.js';
import { cpuMs, currentRss, peakRss } from './lib/processes.js';
import { StateTemplate } from './lib/state-gen.js';
import { median } from './lib/stats.js';

const MiB = 1024 * 1024;
const mib = Number(process.argv[2] ?? 100);
const runs = Number(process.argv[3] ?? 3);
const pieceKiB = Number(process.argv[4] ?? 64);
const body = StateTemplate.ofSize(mib * MiB).body(1);

function pieces(): Readable {
  if (pieceKiB <= 0) return Readable.from([body]);
  const size = pieceKiB * 1024;
  return Readable.from((function* () {
    for (let i = 0; i < body.length; i += size) yield body.subarray(i, i + size);
  })());
}

const rates: number[] = [];
const peaks: number[] = [];
const cpus: number[] = [];
for (let run = 1; run <= runs; run++) {
  const server = await startAwsServer({ tls: true });
  const s3 = s3Client(server);
  try {
    await s3.send(new CreateBucketCommand({ Bucket: 'bench' }));
    await new Promise((resolve) => setTimeout(resolve, 500));
    const idle = currentRss(server.proc.pid!);
    const cpuBefore = cpuMs(server.proc.pid!);
    const started = process.hrtime.bigint();
    await s3.send(new PutObjectCommand({ Bucket: 'bench', Key: `run-${run}.tfstate`, Body: pieces(), ContentLength: body.length, ChecksumAlgorithm: 'CRC32' }));
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    const peak = peakRss(server.proc.pid!);
    const cpu = (cpuMs(server.proc.pid!) - cpuBefore) / 1000;
    cpus.push(cpu);
    rates.push(body.length / MiB / seconds);
    peaks.push(peak / body.length);
    console.log(`run ${run}: ${(body.length / MiB / seconds).toFixed(1)} MiB/s, peak RSS ${(peak / MiB).toFixed(1)} MiB = ${(peak / body.length).toFixed(2)}× the state (idle ${(idle / MiB).toFixed(1)} MiB; (peak − idle) ÷ size ${((peak - idle) / body.length).toFixed(2)}); server CPU ${cpu.toFixed(2)} s`);
  } finally {
    s3.destroy();
    await server.stop();
  }
}
console.log(`aws-chunked PutObject over HTTPS, ${(body.length / MiB).toFixed(1)} MiB state, ${pieceKiB > 0 ? `${pieceKiB} KiB chunks` : 'one chunk'}: median ${median(rates).toFixed(1)} MiB/s, peak RSS ${median(peaks).toFixed(2)}× the state, server CPU ${median(cpus).toFixed(2)} s (${runs} runs)`);
