/**
 * The least a durable lock server can be on this stack: Node's `http`, better-sqlite3 in WAL mode, group
 * commits, every answer after the fsync that holds it. No rules beyond "free or held by this ID", no
 * sessions, no metrics, no auth; one audit row per change, as statelock writes. It answers the http
 * backend's LOCK and UNLOCK (200, 423, 409) and nothing else. Not a product: `bench/lock-ceiling.ts`
 * measures it to learn what ceiling the machine and the stack put on lock cycles, with one thread and with
 * the database on a thread of its own.
 *
 *   node dist/bench/ceiling-server.js <mode> <dataDir>     mode: one-thread | db-thread
 *
 * Prints `listening on http://127.0.0.1:<port>` once it listens.
 */
import Database from 'better-sqlite3';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { join } from 'node:path';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';

/** One LOCK or UNLOCK, as data (what crosses to the database thread). */
interface Op {
  unlock: boolean;
  key: string;
  id: string;
  body: string;
}

/** An op's answer: the HTTP status. */
type Outcome = number;

function openDb(dataDir: string): { run: (ops: Op[]) => Outcome[] } {
  const db = new Database(join(dataDir, 'ceiling.db'));
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = FULL');
  db.exec(`CREATE TABLE IF NOT EXISTS locks (key TEXT PRIMARY KEY, lock_id TEXT NOT NULL, info TEXT NOT NULL, at TEXT NOT NULL) WITHOUT ROWID;
           CREATE TABLE IF NOT EXISTS audit (id INTEGER PRIMARY KEY, at TEXT NOT NULL, action TEXT NOT NULL, key TEXT NOT NULL, lock_id TEXT, outcome TEXT NOT NULL);`);
  const held = db.prepare('SELECT lock_id FROM locks WHERE key = ?').pluck();
  const set = db.prepare('INSERT INTO locks (key, lock_id, info, at) VALUES (?, ?, ?, ?)');
  const clear = db.prepare('DELETE FROM locks WHERE key = ?');
  const audit = db.prepare('INSERT INTO audit (at, action, key, lock_id, outcome) VALUES (?, ?, ?, ?, ?)');
  const begin = db.prepare('BEGIN IMMEDIATE');
  const commit = db.prepare('COMMIT');
  return {
    /** One transaction, one fsync (synchronous = FULL: SQLite syncs the WAL in the COMMIT). */
    run(ops) {
      const now = new Date().toISOString();
      const out: Outcome[] = [];
      begin.run();
      for (const op of ops) {
        const h = held.get(op.key) as string | undefined;
        let status: number;
        if (!op.unlock) {
          status = h === undefined ? 200 : 423;
          if (status === 200) set.run(op.key, op.id, op.body, now);
        } else {
          status = h === op.id ? 200 : h === undefined ? 200 : 409;
          if (h === op.id) clear.run(op.key);
        }
        audit.run(now, op.unlock ? 'unlock' : 'lock', op.key, op.id, String(status));
        out.push(status);
      }
      commit.run();
      return out;
    },
  };
}

if (!isMainThread) {
  // The database thread: a batch in, its outcomes out, in order.
  const store = openDb(workerData as string);
  parentPort!.on('message', (ops: Op[]) => parentPort!.postMessage(store.run(ops)));
} else {
  const [mode, dataDir] = process.argv.slice(2);
  if ((mode !== 'one-thread' && mode !== 'db-thread') || !dataDir) throw new Error('usage: ceiling-server.js one-thread|db-thread <dataDir>');
  let queue: { op: Op; res: ServerResponse }[] = [];
  let scheduled = false;
  let inFlight = false;

  const answer = (batch: { res: ServerResponse }[], outcomes: Outcome[]) => {
    for (let i = 0; i < batch.length; i++) {
      const res = batch[i]!.res;
      res.writeHead(outcomes[i]!, { 'Content-Length': '0' });
      res.end();
    }
  };

  let flush: () => void;
  if (mode === 'one-thread') {
    const store = openDb(dataDir);
    // The COMMIT's fsync blocks the event loop; requests that arrive meanwhile make the next batch.
    flush = () => {
      scheduled = false;
      const batch = queue;
      queue = [];
      answer(batch, store.run(batch.map((b) => b.op)));
    };
  } else {
    const worker = new Worker(new URL(import.meta.url), { workerData: dataDir });
    let sent: { op: Op; res: ServerResponse }[] = [];
    // One batch on the database thread at a time; what arrives meanwhile is the next batch.
    worker.on('message', (outcomes: Outcome[]) => {
      inFlight = false;
      answer(sent, outcomes);
      if (queue.length > 0) flush();
    });
    flush = () => {
      scheduled = false;
      if (inFlight || queue.length === 0) return;
      inFlight = true;
      sent = queue;
      queue = [];
      worker.postMessage(sent.map((b) => b.op));
    };
  }

  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (req.method !== 'LOCK' && req.method !== 'UNLOCK') {
        res.writeHead(405, { 'Content-Length': '0' });
        res.end();
        return;
      }
      const body = Buffer.concat(chunks).toString('utf8');
      let id: string;
      try {
        id = String((JSON.parse(body) as { ID?: unknown }).ID ?? '');
      } catch {
        res.writeHead(400, { 'Content-Length': '0' });
        res.end();
        return;
      }
      queue.push({ op: { unlock: req.method === 'UNLOCK', key: req.url ?? '/', id, body }, res });
      if (!scheduled) {
        scheduled = true;
        setImmediate(flush);
      }
    });
  });
  server.keepAliveTimeout = 60_000;
  server.listen(0, '127.0.0.1', () => {
    const addr = server.address();
    if (addr && typeof addr === 'object') console.log(`listening on http://127.0.0.1:${addr.port}`);
  });
}
