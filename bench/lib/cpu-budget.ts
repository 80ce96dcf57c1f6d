/**
 * What a throughput target asks of this machine's CPU, from figures measured in the same run.
 *
 * The load generator runs on the same cores as the server. At the target's rate it needs its own CPU per
 * operation times the rate; what is left of the cores is all the server may use. And a server whose work
 * sits on one thread (Node's event loop) cannot do more operations per second than that thread has
 * milliseconds for: at most 1,000 ms ÷ rate per operation on any one thread. A target is within reach only
 * if the server's measured CPU per operation fits both bounds.
 */
export interface CpuBudget {
  /** Operations per second the target asks for. */
  rate: number;
  cores: number;
  /** Cores the load generator would use at that rate. */
  generatorCores: number;
  /** The most server CPU per operation (all its threads) that fits beside the load generator. */
  serverMsPerOp: number;
  /** The most CPU per operation any one server thread may spend: 1,000 ms ÷ rate. */
  oneThreadMsPerOp: number;
}

export function cpuBudget(rate: number, cores: number, generatorMsPerOp: number): CpuBudget {
  if (!(rate > 0) || !(cores > 0) || !(generatorMsPerOp >= 0)) throw new RangeError(`cpuBudget: rate ${rate}, cores ${cores}, generator ${generatorMsPerOp} ms per operation`);
  const generatorCores = (generatorMsPerOp * rate) / 1000;
  return {
    rate,
    cores,
    generatorCores,
    serverMsPerOp: Math.max(0, ((cores - generatorCores) * 1000) / rate),
    oneThreadMsPerOp: 1000 / rate,
  };
}

/** The server's measured CPU per operation: in all, and on its busiest thread (the event loop). */
export interface ServerCpu {
  allThreadsMsPerOp: number;
  mainThreadMsPerOp: number;
}

/** Which bounds the measured CPU breaks, and by what factor it would have to shrink to fit the tighter one. */
export function overBudget(budget: CpuBudget, measured: ServerCpu): { allThreads: boolean; oneThread: boolean; shrinkBy: number } {
  const allThreads = measured.allThreadsMsPerOp > budget.serverMsPerOp;
  const oneThread = measured.mainThreadMsPerOp > budget.oneThreadMsPerOp;
  const factor = Math.max(measured.allThreadsMsPerOp / budget.serverMsPerOp, measured.mainThreadMsPerOp / budget.oneThreadMsPerOp);
  return { allThreads, oneThread, shrinkBy: Number.isFinite(factor) ? factor : Infinity };
}

const ms = (v: number) => (v >= 10 ? v.toFixed(0) : v >= 1 ? v.toFixed(1) : v.toFixed(3));

/**
 * One sentence for the targets table: the budget at the target's rate, what the server spent, and what would have to
 * give. Fitting the budget is necessary, not sufficient: time spent waiting (an fsync, the network) is not in it.
 */
export function describeBudget(budget: CpuBudget, measured: ServerCpu, unit: { op: string; rate: string }): string {
  const over = overBudget(budget, measured);
  const verdict =
    !over.allThreads && !over.oneThread
      ? 'within both bounds: CPU alone does not rule the target out'
      : `over the ${over.allThreads && over.oneThread ? 'two bounds' : over.oneThread ? 'one-thread bound' : 'all-threads bound'}: the server's CPU per ${unit.op} would have to shrink ${over.shrinkBy.toFixed(2)}×`;
  return (
    `at ${unit.rate} the load generator takes ${budget.generatorCores.toFixed(2)} of the ${budget.cores} cores, leaving the server ≤ ${ms(budget.serverMsPerOp)} ms of CPU per ${unit.op} ` +
    `(≤ ${ms(budget.oneThreadMsPerOp)} ms on any one thread); it spent ${ms(measured.allThreadsMsPerOp)} ms, ${ms(measured.mainThreadMsPerOp)} ms of it on its event loop — ${verdict}`
  );
}
