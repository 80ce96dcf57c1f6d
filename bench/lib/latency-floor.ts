/**
 * The least a durable single-client lock cycle can take on this machine, from figures of the same run: each of its
 * two requests (LOCK, UNLOCK) is answered only after its commit's fdatasync, and each is an HTTP round trip no
 * faster than the bare Node server's. A latency target below this floor cannot be met here by a Node server that
 * answers after the fsync; above it, the difference is the server's own work.
 */
export function durableCycleFloorMs(fsyncP50Ms: number, bareCycleP50Ms: number, syncsPerCycle = 2): number {
  if (!(fsyncP50Ms >= 0) || !(bareCycleP50Ms >= 0) || !(syncsPerCycle >= 0)) throw new RangeError(`durableCycleFloorMs: fsync ${fsyncP50Ms} ms, bare cycle ${bareCycleP50Ms} ms, ${syncsPerCycle} syncs`);
  return syncsPerCycle * fsyncP50Ms + bareCycleP50Ms;
}

/** One sentence for the targets table: the floor, how it is made up, and where the target stands against it. */
export function describeFloor(targetMs: number, fsyncP50Ms: number, bareCycleP50Ms: number, measuredMs: number): string {
  const floor = durableCycleFloorMs(fsyncP50Ms, bareCycleP50Ms);
  const where = floor > targetMs ? `above the ${targetMs} ms target: no durable Node server can meet it on this machine as it was` : `${(targetMs - floor).toFixed(3)} ms under the ${targetMs} ms target`;
  return `Floor here: 2 fdatasyncs (p50 ${fsyncP50Ms.toFixed(3)} ms each, probed beside the 1-client runs) + the bare Node cycle (${bareCycleP50Ms.toFixed(3)} ms) = ${floor.toFixed(3)} ms, ${where}; statelock's own work added ${(measuredMs - floor).toFixed(3)} ms`;
}
