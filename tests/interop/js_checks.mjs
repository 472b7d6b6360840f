// Interop checks: Microsoft's JS SDK (@azure/event-hubs 6.0.4 on rhea) against
// the `hubcat emulator`.
//
// Run by run.sh, which starts the emulator and passes:
//   EH_CS                connection string printed by the emulator (no EntityPath)
//   EH_RUN_ID            unique id for this run (used in event bodies)
//   EH_MAX_MESSAGE_SIZE  the --max-message-size the emulator was started with
//                        (optional; the batch-size check is skipped without it)
//
// Hubs this script expects (run.sh creates them): eh1:4 (read-only checks and
// refused sends only), jssend:4, jsbuf:4, jsidem:4.
//
// Each check prints exactly one line, `PASS name` or `FAIL name: reason`, on
// stdout; diagnostics go to stderr. Exit code 0 means "ran to the end"
// (failures are counted from the lines); anything else is a crash.

import {
  EventHubBufferedProducerClient,
  EventHubConsumerClient,
  EventHubProducerClient,
  earliestEventPosition,
} from "@azure/event-hubs";
import { randomBytes } from "node:crypto";

const CS = process.env.EH_CS;
// The emulator's TLS listener (on 5671), when run.sh could bind it.
const TLS_CS = process.env.EH_TLS_CS;
if (!CS) {
  console.error("EH_CS is not set");
  process.exit(3);
}
const RUN_ID = process.env.EH_RUN_ID || randomBytes(4).toString("hex");
const MAX_MESSAGE_SIZE = process.env.EH_MAX_MESSAGE_SIZE ? Number(process.env.EH_MAX_MESSAGE_SIZE) : undefined;

// Short retries everywhere: the JS default is 3 retries 30 s apart, which
// would turn one emulator bug into minutes of waiting.
const RETRY = { maxRetries: 1, retryDelayInMs: 300, maxRetryDelayInMs: 1000, timeoutInMs: 20000 };
const CLIENT_OPTS = { retryOptions: RETRY };

// An SDK promise we gave up on (a timed-out check) may reject later; log it
// instead of letting node kill the process.
process.on("unhandledRejection", (err) => {
  console.error(`[js] unhandled rejection (ignored): ${err?.name}: ${err?.message}`);
});

function withKey(cs, replace) {
  return cs
    .trim()
    .replace(/;+$/, "")
    .split(";")
    .map((part) => {
      const i = part.indexOf("=");
      const k = part.slice(0, i);
      return k in replace ? `${k}=${replace[k]}` : part;
    })
    .join(";");
}

// ---------------------------------------------------------------------------
// Partition-key hashing as the service does it: Jenkins lookup3 hashlittle2
// (seeds 0/0), hash16 = (short)(h1 ^ h2), partition = |hash16 % n|.
// Written from the .NET SDK's PartitionResolver and its test vectors.
// ---------------------------------------------------------------------------

const rot = (x, k) => ((x << k) | (x >>> (32 - k))) >>> 0;

function lookup3(data) {
  const n = data.length;
  let a = (0xdeadbeef + n) >>> 0;
  let b = a;
  let c = a;
  let o = 0;
  while (n - o > 12) {
    a = (a + data.readUInt32LE(o)) >>> 0;
    b = (b + data.readUInt32LE(o + 4)) >>> 0;
    c = (c + data.readUInt32LE(o + 8)) >>> 0;
    a = (a - c) >>> 0; a = (a ^ rot(c, 4)) >>> 0; c = (c + b) >>> 0;
    b = (b - a) >>> 0; b = (b ^ rot(a, 6)) >>> 0; a = (a + c) >>> 0;
    c = (c - b) >>> 0; c = (c ^ rot(b, 8)) >>> 0; b = (b + a) >>> 0;
    a = (a - c) >>> 0; a = (a ^ rot(c, 16)) >>> 0; c = (c + b) >>> 0;
    b = (b - a) >>> 0; b = (b ^ rot(a, 19)) >>> 0; a = (a + c) >>> 0;
    c = (c - b) >>> 0; c = (c ^ rot(b, 4)) >>> 0; b = (b + a) >>> 0;
    o += 12;
  }
  if (n - o === 0) return [c, b]; // zero-length tail: no final mixing
  const t = Buffer.alloc(12);
  data.copy(t, 0, o);
  a = (a + t.readUInt32LE(0)) >>> 0;
  b = (b + t.readUInt32LE(4)) >>> 0;
  c = (c + t.readUInt32LE(8)) >>> 0;
  c = (c ^ b) >>> 0; c = (c - rot(b, 14)) >>> 0;
  a = (a ^ c) >>> 0; a = (a - rot(c, 11)) >>> 0;
  b = (b ^ a) >>> 0; b = (b - rot(a, 25)) >>> 0;
  c = (c ^ b) >>> 0; c = (c - rot(b, 16)) >>> 0;
  a = (a ^ c) >>> 0; a = (a - rot(c, 4)) >>> 0;
  b = (b ^ a) >>> 0; b = (b - rot(a, 14)) >>> 0;
  c = (c ^ b) >>> 0; c = (c - rot(b, 24)) >>> 0;
  return [c, b];
}

function hash16(key) {
  const [h1, h2] = lookup3(Buffer.from(key, "utf8"));
  const v = ((h1 ^ h2) >>> 0) & 0xffff;
  return v >= 0x8000 ? v - 0x10000 : v;
}

const partitionForKey = (key, n) => String(Math.abs(hash16(key) % n));

const HASH_VECTORS = {
  "7": -15263,
  "131": 30562,
  "7149583486996073602": 12977,
  FWfAT: -22341,
  sOdeEAsyQoEuEFPGerWO: -6503,
  FAyAIctPeCgmiwLKbJcyswoHglHVjQdvtBowLACDNORsYvOcLddNJYDmhAVkbyLOrHTKLneMNcbgWVlasVywOByANjs: 5226,
  "!c*_!I@1^c": 15372,
  "p4*!jioeO/z-!-;w:dh": -3104,
  $0cb: 26269,
  "-4189260826195535198": 453,
};
const PARTITION_VECTORS = [
  ["alphabet", 3, "0"],
  ["alphabet", 11, "4"],
  ["TheBestParitionEver", 4, "2"],
  ["TheWorstParitionEver", 15, "1"],
];
const KEYS_4 = [
  "TheBestParitionEver",
  "TheWorstParitionEver",
  "alphabet",
  "131",
  "!c*_!I@1^c",
  "-4189260826195535198",
  "thirteen-byte",
  "FAyAIctPeCgmiwLKbJcyswoHglHVjQdvtBowLACDNORsYvOcLddNJYDmhAVkbyLOrHTKLneMNcbgWVlasVywOByANjs",
];

// ---------------------------------------------------------------------------
// Check runner
// ---------------------------------------------------------------------------

class CheckFailed extends Error {}

function expect(cond, msg) {
  if (!cond) throw new CheckFailed(msg);
}

const oneLine = (s) => String(s).split(/\s+/).join(" ").slice(0, 600);
// "Name(code): message", including the inner errors of an AggregateError
// (node reports ECONNREFUSED for ::1 and 127.0.0.1 that way).
function fmtErr(e) {
  if (!e) return String(e);
  let s = `${e.name ?? "Error"}${e.code ? `(${e.code})` : ""}: ${e.message ?? ""}`;
  if (Array.isArray(e.errors) && e.errors.length) s += ` [${e.errors.map(fmtErr).join("; ")}]`;
  return oneLine(s);
}
const delay = (ms) => new Promise((r) => setTimeout(r, ms));
const results = [];
// Comma-separated check names to skip (prints `SKIP name`), e.g. for a known defect.
const SKIP = new Set((process.env.INTEROP_SKIP ?? "").split(",").map((n) => n.trim()).filter(Boolean));

async function check(name, fn, timeoutMs) {
  if (SKIP.has(name)) {
    console.log(`SKIP ${name}`);
    return;
  }
  const started = Date.now();
  let timer;
  let line;
  try {
    await Promise.race([
      fn(),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new CheckFailed(`timed out after ${timeoutMs / 1000}s`)), timeoutMs);
      }),
    ]);
    line = `PASS ${name}`;
  } catch (err) {
    if (err instanceof CheckFailed) {
      line = `FAIL ${name}: ${oneLine(err.message)}`;
    } else {
      line = `FAIL ${name}: ${fmtErr(err)}`;
      console.error(`--- ${name} ---\n${err?.stack}`);
    }
  } finally {
    clearTimeout(timer);
  }
  console.log(line);
  console.error(`[js] ${name}: ${line.startsWith("PASS") ? "ok" : "failed"} in ${((Date.now() - started) / 1000).toFixed(1)}s`);
  results.push([name, line.startsWith("PASS")]);
}

// hub -> Map(body -> {partition, key})
const SENT = new Map();
function record(hub, bodies, partition = undefined, key = undefined) {
  if (!SENT.has(hub)) SENT.set(hub, new Map());
  for (const b of bodies) SENT.get(hub).set(b, { partition, key });
}
const makeBodies = (tag, n) => Array.from({ length: n }, (_, i) => `js-${RUN_ID}-${tag}-${i}`);

async function using(client, fn) {
  try {
    return await fn(client);
  } finally {
    await client.close().catch((e) => console.error(`[js] close: ${e?.message}`));
  }
}

// ---------------------------------------------------------------------------
// Reading a hub back with EventHubConsumerClient.subscribe (all partitions,
// no checkpoint store, start at the earliest event).
// ---------------------------------------------------------------------------

async function readHub(hub, timeoutMs) {
  const client = new EventHubConsumerClient("$Default", CS, hub, CLIENT_OPTS);
  const errors = [];
  const received = {};
  const expected = {};
  const props = {};
  try {
    const ids = await client.getPartitionIds();
    for (const p of ids) {
      const pp = await client.getPartitionProperties(p);
      props[p] = pp;
      expected[p] = pp.isEmpty ? 0 : pp.lastEnqueuedSequenceNumber - pp.beginningSequenceNumber + 1;
      received[p] = [];
    }
    const idle = new Set();
    let resolveDone;
    const done = new Promise((r) => (resolveDone = r));
    const sub = client.subscribe(
      {
        processEvents: async (events, ctx) => {
          const p = ctx.partitionId;
          for (const e of events) {
            received[p].push({ body: e.body, partitionKey: e.partitionKey, seq: e.sequenceNumber, offset: e.offset });
          }
          // An empty call means maxWaitTimeInSeconds passed without events.
          if (events.length === 0 && received[p].length >= expected[p]) {
            idle.add(p);
            if (idle.size === ids.length) resolveDone();
          }
        },
        processError: async (err, ctx) => {
          errors.push(`partition ${ctx.partitionId || "-"}: ${fmtErr(err)}`);
        },
      },
      { startPosition: earliestEventPosition, maxWaitTimeInSeconds: 1, maxBatchSize: 200 },
    );
    let timedOut = false;
    await Promise.race([done, delay(timeoutMs).then(() => (timedOut = true))]);
    await sub.close();
    if (timedOut) {
      const behind = ids.filter((p) => !idle.has(p)).map((p) => `${p} (got ${received[p].length} of ${expected[p]})`);
      errors.push(`read timed out on partitions ${behind.join(", ")}`);
    }
    return { ids, props, expected, received, errors };
  } finally {
    await client.close().catch(() => {});
  }
}

async function verifyReadback(hub, prefix, timeoutMs = 40000) {
  const sent = new Map([...(SENT.get(hub) ?? new Map())].filter(([b]) => b.startsWith(prefix)));
  expect(sent.size > 0, "nothing was sent successfully, so there is nothing to read back");
  const { props, expected, received, errors } = await readHub(hub, timeoutMs);
  const problems = [...errors];
  const counts = new Map();
  const where = new Map();
  for (const [p, evs] of Object.entries(received)) {
    if (evs.length !== expected[p]) problems.push(`partition ${p}: properties say ${expected[p]} events, read ${evs.length}`);
    const seqs = evs.map((e) => e.seq);
    if (seqs.some((s, i) => s !== seqs[0] + i)) problems.push(`partition ${p}: sequence numbers not contiguous: ${seqs.slice(0, 10)}`);
    if (seqs.length && seqs[0] !== props[p].beginningSequenceNumber) {
      problems.push(`partition ${p}: first sequence number ${seqs[0]} != beginningSequenceNumber ${props[p].beginningSequenceNumber}`);
    }
    if (evs.length && String(evs[evs.length - 1].offset) !== String(props[p].lastEnqueuedOffset)) {
      problems.push(`partition ${p}: last offset read ${evs[evs.length - 1].offset} != lastEnqueuedOffset ${props[p].lastEnqueuedOffset}`);
    }
    for (const e of evs) {
      if (typeof e.body !== "string" || !e.body.startsWith(prefix)) continue;
      counts.set(e.body, (counts.get(e.body) ?? 0) + 1);
      if (!where.has(e.body)) where.set(e.body, []);
      where.get(e.body).push([p, e.partitionKey]);
    }
  }
  const missing = [...sent.keys()].filter((b) => !counts.has(b));
  const dups = [...counts].filter(([, n]) => n > 1).map(([b]) => b);
  const unknown = [...counts.keys()].filter((b) => !sent.has(b));
  if (missing.length) problems.push(`${missing.length} of ${sent.size} sent events missing, e.g. ${missing.slice(0, 3)}`);
  if (dups.length) problems.push(`${dups.length} events delivered more than once, e.g. ${dups.slice(0, 3)}`);
  if (unknown.length) problems.push(`${unknown.length} unexpected events, e.g. ${unknown.slice(0, 3)}`);
  const wrongPartition = [];
  const wrongKey = [];
  for (const [b, { partition, key }] of sent) {
    for (const [gotP, gotKey] of where.get(b) ?? []) {
      if (partition !== undefined && gotP !== partition) wrongPartition.push(`${b} (key ${key}) on ${gotP}, expected ${partition}`);
      if (key !== undefined && gotKey !== key) wrongKey.push(`${b}: partitionKey ${gotKey}, expected ${key}`);
    }
  }
  if (wrongPartition.length) problems.push(`${wrongPartition.length} events on the wrong partition, e.g. ${wrongPartition.slice(0, 3)}`);
  if (wrongKey.length) problems.push(`${wrongKey.length} events with a wrong partition key, e.g. ${wrongKey.slice(0, 3)}`);
  expect(problems.length === 0, problems.join("; "));
}

// ---------------------------------------------------------------------------
// Checks
// ---------------------------------------------------------------------------

async function lookup3SelfTest() {
  const bad = [];
  for (const [k, v] of Object.entries(HASH_VECTORS)) if (hash16(k) !== v) bad.push([k, hash16(k), v]);
  for (const [k, n, want] of PARTITION_VECTORS) if (partitionForKey(k, n) !== want) bad.push([k, n, partitionForKey(k, n), want]);
  expect(bad.length === 0, `reference hash disagrees with the SDK vectors: ${JSON.stringify(bad)}`);
}

async function eventHubProperties() {
  await using(new EventHubProducerClient(CS, "eh1", CLIENT_OPTS), async (p) => {
    const props = await p.getEventHubProperties();
    expect(props.name === "eh1", `name ${props.name}`);
    expect(JSON.stringify(props.partitionIds) === '["0","1","2","3"]', `partitionIds ${JSON.stringify(props.partitionIds)}`);
    expect(props.createdOn instanceof Date && props.createdOn.getUTCFullYear() > 2000, `createdOn ${props.createdOn}`);
    const ids = await p.getPartitionIds();
    expect(JSON.stringify(ids) === '["0","1","2","3"]', `getPartitionIds ${JSON.stringify(ids)}`);
  });
}

async function partitionProperties() {
  await using(new EventHubProducerClient(CS, "eh1", CLIENT_OPTS), async (p) => {
    const pp = await p.getPartitionProperties("1");
    expect(pp.eventHubName === "eh1", `eventHubName ${pp.eventHubName}`);
    expect(pp.partitionId === "1", `partitionId ${pp.partitionId}`);
    expect(Number.isInteger(pp.beginningSequenceNumber), `beginningSequenceNumber ${pp.beginningSequenceNumber}`);
    expect(Number.isInteger(pp.lastEnqueuedSequenceNumber), `lastEnqueuedSequenceNumber ${pp.lastEnqueuedSequenceNumber}`);
    expect(typeof pp.lastEnqueuedOffset === "string", `lastEnqueuedOffset ${JSON.stringify(pp.lastEnqueuedOffset)}`);
    expect(pp.lastEnqueuedOnUtc instanceof Date, `lastEnqueuedOnUtc ${pp.lastEnqueuedOnUtc}`);
    expect(pp.isEmpty === true, `isEmpty ${pp.isEmpty} on a hub nobody sent to`);
  });
}

async function maxMessageSize() {
  await using(new EventHubProducerClient(CS, "jssend", CLIENT_OPTS), async (p) => {
    const batch = await p.createBatch();
    expect(batch.maxSizeInBytes === MAX_MESSAGE_SIZE, `batch.maxSizeInBytes ${batch.maxSizeInBytes}, emulator started with ${MAX_MESSAGE_SIZE}`);
    const small = await p.createBatch({ maxSizeInBytes: 5000 });
    expect(small.maxSizeInBytes === 5000, `createBatch({maxSizeInBytes: 5000}).maxSizeInBytes ${small.maxSizeInBytes}`);
  });
}

async function sendGateway() {
  await using(new EventHubProducerClient(CS, "jssend", CLIENT_OPTS), async (p) => {
    const bodies = makeBodies("gw", 40);
    const batch = await p.createBatch();
    for (const body of bodies) expect(batch.tryAdd({ body }), `tryAdd failed at ${body} (maxSizeInBytes ${batch.maxSizeInBytes})`);
    await p.sendBatch(batch);
    record("jssend", bodies);
    const more = makeBodies("gw-array", 10); // EventData[] form
    await p.sendBatch(more.map((body) => ({ body })));
    record("jssend", more);
  });
}

// TLS as the SDK does it for the service (no UseDevelopmentEmulator: amqps on 5671, SNI,
// the certificate checked), trusting the emulator's CA the way Node.js takes a custom
// CA, NODE_EXTRA_CA_CERTS (run.sh sets it for this process).
async function sendOverTls() {
  await using(new EventHubProducerClient(TLS_CS, "jssend", CLIENT_OPTS), async (p) => {
    const bodies = makeBodies("tls", 10);
    await p.sendBatch(bodies.map((body) => ({ body })), { partitionId: "2" });
    record("jssend", bodies, "2");
  });
}

async function sendPartitionKey() {
  await using(new EventHubProducerClient(CS, "jssend", CLIENT_OPTS), async (p) => {
    for (const [i, key] of KEYS_4.entries()) {
      const bodies = makeBodies(`key${i}`, 5);
      const batch = await p.createBatch({ partitionKey: key });
      for (const body of bodies) expect(batch.tryAdd({ body }), `tryAdd failed at ${body}`);
      await p.sendBatch(batch);
      record("jssend", bodies, partitionForKey(key, 4), key);
    }
    const key = "array-form-key";
    const bodies = makeBodies("key-array", 5);
    await p.sendBatch(bodies.map((body) => ({ body })), { partitionKey: key });
    record("jssend", bodies, partitionForKey(key, 4), key);
  });
}

async function sendPartitionId() {
  await using(new EventHubProducerClient(CS, "jssend", CLIENT_OPTS), async (p) => {
    const bodies = makeBodies("pid2", 15);
    const batch = await p.createBatch({ partitionId: "2" });
    for (const body of bodies) expect(batch.tryAdd({ body }), `tryAdd failed at ${body}`);
    await p.sendBatch(batch);
    record("jssend", bodies, "2");
    const more = makeBodies("pid0", 15);
    await p.sendBatch(more.map((body) => ({ body })), { partitionId: "0" });
    record("jssend", more, "0");
  });
}

async function buffered() {
  let ok = 0;
  const errs = [];
  const client = new EventHubBufferedProducerClient(CS, "jsbuf", {
    ...CLIENT_OPTS,
    maxWaitTimeInMs: 500,
    onSendEventsSuccessHandler: (ctx) => {
      ok += ctx.events.length;
    },
    onSendEventsErrorHandler: (ctx) => {
      errs.push(`partition ${ctx.partitionId}: ${ctx.events.length} events: ${fmtErr(ctx.error)}`);
    },
  });
  const bodies = makeBodies("buf", 1000);
  try {
    await client.enqueueEvents(bodies.map((body) => ({ body })));
  } finally {
    await client.close({ flush: true });
  }
  record("jsbuf", bodies);
  expect(errs.length === 0, `onSendEventsErrorHandler called: ${errs.slice(0, 3).join(" | ")}`);
  expect(ok === 1000, `onSendEventsSuccessHandler counted ${ok} events, expected 1000`);
}

// NOTE: in @azure/event-hubs 6.0.4 the EventHubProducerClient constructor does
// NOT read `enableIdempotentRetries` from its options (only
// EventHubBufferedProducerClient forwards it, by setting the private field
// `_enableIdempotentRetries`, as the SDK's own tests do). We pass the option
// for readability and set the field, then assert the feature is really on.
function idempotentProducer(hub, partitionOptions) {
  const client = new EventHubProducerClient(CS, hub, { ...CLIENT_OPTS, enableIdempotentRetries: true });
  client._enableIdempotentRetries = true;
  if (partitionOptions) client._partitionOptions = partitionOptions;
  return client;
}

function expectPublishingProps(pp, what) {
  expect(pp.isIdempotentPublishingEnabled === true, `${what}: isIdempotentPublishingEnabled ${pp.isIdempotentPublishingEnabled}`);
  for (const k of ["producerGroupId", "ownerLevel", "lastPublishedSequenceNumber"]) {
    expect(Number.isInteger(pp[k]), `${what}: ${k} is ${pp[k]} (the attach response must echo com.microsoft:producer-id / producer-epoch / producer-sequence-number)`);
  }
}

const IDEM = {}; // state shared by the idempotent checks

async function idempotentAttach() {
  const client = idempotentProducer("jsidem");
  IDEM.client = client;
  const pp = await client.getPartitionPublishingProperties("1");
  expectPublishingProps(pp, "partition 1 before sending");
  expect(pp.lastPublishedSequenceNumber >= -1, `lastPublishedSequenceNumber ${pp.lastPublishedSequenceNumber}`);
  IDEM.before1 = pp;
}

async function idempotentSend() {
  const client = IDEM.client;
  expect(client && IDEM.before1, "attach check failed, no producer");
  let last = IDEM.before1.lastPublishedSequenceNumber;
  for (let b = 0; b < 4; b++) {
    const bodies = makeBodies(`idem-p1-b${b}`, 10);
    const batch = await client.createBatch({ partitionId: "1" });
    for (const body of bodies) expect(batch.tryAdd({ body }), `tryAdd failed at ${body}`);
    await client.sendBatch(batch);
    record("jsidem", bodies, "1");
    expect(batch.startingPublishedSequenceNumber === last + 1,
      `batch ${b}: startingPublishedSequenceNumber ${batch.startingPublishedSequenceNumber}, expected ${last + 1}`);
    last += 10;
  }
  // EventData[] form, to another partition, three times.
  for (let b = 0; b < 3; b++) {
    const bodies = makeBodies(`idem-p2-b${b}`, 7);
    await client.sendBatch(bodies.map((body) => ({ body })), { partitionId: "2" });
    record("jsidem", bodies, "2");
  }
}

async function idempotentAdvances() {
  const client = IDEM.client;
  expect(client && IDEM.before1, "attach check failed, no producer");
  const after1 = await client.getPartitionPublishingProperties("1");
  expectPublishingProps(after1, "partition 1 after sending");
  expect(after1.lastPublishedSequenceNumber === IDEM.before1.lastPublishedSequenceNumber + 40,
    `partition 1 lastPublishedSequenceNumber ${after1.lastPublishedSequenceNumber}, expected ${IDEM.before1.lastPublishedSequenceNumber} + 40`);
  expect(after1.producerGroupId === IDEM.before1.producerGroupId, `producerGroupId changed ${IDEM.before1.producerGroupId} -> ${after1.producerGroupId}`);
  const after2 = await client.getPartitionPublishingProperties("2");
  expectPublishingProps(after2, "partition 2 after sending");
  // The link to partition 2 was attached by the first send; 3 x 7 events since.
  // (Its starting value is whatever the emulator returned on attach.)
  await client.close();
  // A fresh producer that resumes the state of the first one (same producer
  // group, higher owner level, starting where it ended) must see the service
  // accept its next event as lastPublishedSequenceNumber + 1 — the SDK's live
  // test "can use state from previous producerClient".
  const resumed = idempotentProducer("jsidem", {
    1: {
      producerGroupId: after1.producerGroupId,
      ownerLevel: after1.ownerLevel + 1,
      startingSequenceNumber: after1.lastPublishedSequenceNumber,
    },
  });
  await using(resumed, async (r) => {
    const bodies = makeBodies("idem-p1-resumed", 1);
    await r.sendBatch(bodies.map((body) => ({ body })), { partitionId: "1" });
    record("jsidem", bodies, "1");
    const pp = await r.getPartitionPublishingProperties("1");
    expect(pp.producerGroupId === after1.producerGroupId, `resumed producerGroupId ${pp.producerGroupId}, expected ${after1.producerGroupId}`);
    expect(pp.lastPublishedSequenceNumber === after1.lastPublishedSequenceNumber + 1,
      `resumed lastPublishedSequenceNumber ${pp.lastPublishedSequenceNumber}, expected ${after1.lastPublishedSequenceNumber + 1}`);
  });
}

// SDK live test "fails with invalid sequence number": a second producer of the
// same group starting 4 behind the service's state is refused with
// com.microsoft:out-of-order-sequence (SequenceOutOfOrderError).
async function idempotentOldSequenceRefused() {
  const first = idempotentProducer("jsidem");
  await using(first, async (f) => {
    const bodies = makeBodies("idem-p3", 5);
    await f.sendBatch(bodies.map((body) => ({ body })), { partitionId: "3" });
    record("jsidem", bodies, "3");
    const pp = await f.getPartitionPublishingProperties("3");
    expectPublishingProps(pp, "partition 3");
    const second = idempotentProducer("jsidem", {
      3: { producerGroupId: pp.producerGroupId, startingSequenceNumber: pp.lastPublishedSequenceNumber - 4 },
    });
    await using(second, async (s) => {
      let err;
      try {
        await s.sendBatch([{ body: `js-${RUN_ID}-idem-p3-stale` }], { partitionId: "3" });
      } catch (e) {
        err = e;
      }
      expect(err, "a send with an old producer sequence number was accepted");
      expect(err.code === "SequenceOutOfOrderError",
        `refused, but with ${fmtErr(err)} (expected code SequenceOutOfOrderError, i.e. condition com.microsoft:out-of-order-sequence)`);
    });
  });
}

// SDK live test "can use partial state": only an owner level is given; the
// service fills in the producer group and the sequence number (the client
// sends them as null), and the producer can then publish.
async function idempotentPartialState() {
  const client = idempotentProducer("jsidem", { 2: { ownerLevel: 1 } });
  await using(client, async (c) => {
    const pp = await c.getPartitionPublishingProperties("2");
    expect(pp.ownerLevel === 1, `ownerLevel ${pp.ownerLevel}, expected 1 (what the client asked for)`);
    expectPublishingProps(pp, "partition 2 with only ownerLevel given");
    const bodies = makeBodies("idem-p2-partial", 3);
    await c.sendBatch(bodies.map((body) => ({ body })), { partitionId: "2" });
    record("jsidem", bodies, "2");
    const after = await c.getPartitionPublishingProperties("2");
    expect(after.lastPublishedSequenceNumber === pp.lastPublishedSequenceNumber + 3,
      `lastPublishedSequenceNumber ${after.lastPublishedSequenceNumber}, expected ${pp.lastPublishedSequenceNumber} + 3`);
  });
}

// SDK live test "can use ownerLevel to kick off other producers".
async function idempotentEpochStolen() {
  const first = idempotentProducer("jsidem");
  await using(first, async (f) => {
    const b1 = makeBodies("idem-p0-first", 1);
    await f.sendBatch(b1.map((body) => ({ body })), { partitionId: "0" });
    record("jsidem", b1, "0");
    const pp = await f.getPartitionPublishingProperties("0");
    expectPublishingProps(pp, "partition 0");
    const second = idempotentProducer("jsidem", {
      0: { producerGroupId: pp.producerGroupId, ownerLevel: pp.ownerLevel + 1, startingSequenceNumber: pp.lastPublishedSequenceNumber },
    });
    await using(second, async (s) => {
      const b2 = makeBodies("idem-p0-second", 1);
      await s.sendBatch(b2.map((body) => ({ body })), { partitionId: "0" });
      record("jsidem", b2, "0");
      let err;
      try {
        await f.sendBatch([{ body: `js-${RUN_ID}-idem-p0-stolen` }], { partitionId: "0" });
      } catch (e) {
        err = e;
      }
      expect(err, "the lower-epoch producer could still send after a higher-epoch producer attached");
      expect(err.code === "ProducerDisconnectedError",
        `refused, but with ${fmtErr(err)} (expected code ProducerDisconnectedError, i.e. condition com.microsoft:producer-epoch-stolen)`);
    });
  });
}

async function expectRefused(cs, what) {
  const opts = { retryOptions: { maxRetries: 0, retryDelayInMs: 100, timeoutInMs: 10000 } };
  const outcomes = [];
  await using(new EventHubProducerClient(cs, "eh1", opts), async (p) => {
    try {
      await p.getEventHubProperties();
      outcomes.push("getEventHubProperties succeeded");
    } catch (e) {
      console.error(`[js] ${what}: getEventHubProperties rejected: ${fmtErr(e)}`);
    }
    try {
      await p.sendBatch([{ body: `js-${RUN_ID}-refused` }], { partitionId: "0" });
      outcomes.push("sendBatch succeeded");
    } catch (e) {
      console.error(`[js] ${what}: sendBatch rejected: ${fmtErr(e)}`);
    }
  });
  expect(outcomes.length === 0, `${what}: ${outcomes.join(", ")}`);
  await using(new EventHubProducerClient(CS, "eh1", CLIENT_OPTS), async (p) => {
    const pp = await p.getPartitionProperties("0");
    expect(pp.isEmpty, `${what}: eh1 partition 0 is no longer empty after the refused send`);
  });
}

// The real service refuses the CBS put-token for an audience naming a hub
// that does not exist ("Put token failed. status-code: 404, status-description:
// The messaging entity 'sb://<ns>/<hub>' could not be found."), which the JS
// SDK maps to MessagingEntityNotFoundError at once.
async function unknownHub() {
  // Control: the same call against a hub that exists works.
  await using(new EventHubProducerClient(CS, "eh1", CLIENT_OPTS), async (p) => {
    await p.getPartitionIds();
  });
  await using(new EventHubProducerClient(CS, "nosuchhub", { retryOptions: { maxRetries: 0, timeoutInMs: 10000 } }), async (p) => {
    const t0 = Date.now();
    let err;
    try {
      await p.sendBatch([{ body: `js-${RUN_ID}-nohub` }]);
    } catch (e) {
      err = e;
    }
    const ms = Date.now() - t0;
    expect(err, "sendBatch to hub 'nosuchhub' succeeded");
    console.error(`[js] unknown hub: after ${ms} ms: ${fmtErr(err)}`);
    expect(err.code === "MessagingEntityNotFoundError",
      `refused after ${ms} ms, but with ${fmtErr(err)} (expected MessagingEntityNotFoundError)`);
  });
}

async function main() {
  console.error(`[js] run id ${RUN_ID}`);
  await check("js.lookup3.selftest", lookup3SelfTest, 5000);
  await check("js.getEventHubProperties", eventHubProperties, 30000);
  await check("js.getPartitionProperties", partitionProperties, 30000);
  if (MAX_MESSAGE_SIZE !== undefined) await check("js.createBatch.maxSizeInBytes", maxMessageSize, 30000);
  await check("js.sendBatch.gateway", sendGateway, 30000);
  await check("js.sendBatch.partitionKey", sendPartitionKey, 45000);
  await check("js.sendBatch.partitionId", sendPartitionId, 30000);
  if (TLS_CS && process.env.NODE_EXTRA_CA_CERTS) await check("js.tls.sendBatch_trusting_the_emulators_ca", sendOverTls, 30000);
  else console.log("SKIP js.tls: no TLS listener on 5671");
  await check("js.buffered.1000_successes", buffered, 60000);
  await check("js.idempotent.attach_properties", idempotentAttach, 30000);
  await check("js.idempotent.sendBatch", idempotentSend, 45000);
  await check("js.idempotent.publishing_properties_advance", idempotentAdvances, 45000);
  await check("js.idempotent.partial_state", idempotentPartialState, 45000);
  await check("js.idempotent.old_sequence_refused", idempotentOldSequenceRefused, 45000);
  await check("js.idempotent.lower_epoch_disconnected", idempotentEpochStolen, 45000);
  await check("js.subscribe.sendBatch_events_exactly_once", () => verifyReadback("jssend", `js-${RUN_ID}-`), 60000);
  await check("js.subscribe.buffered_events_exactly_once", () => verifyReadback("jsbuf", `js-${RUN_ID}-buf-`, 60000), 75000);
  await check("js.subscribe.idempotent_events_exactly_once", () => verifyReadback("jsidem", `js-${RUN_ID}-idem-`), 60000);
  await check("js.auth.wrong_key_refused", () => expectRefused(withKey(CS, { SharedAccessKey: "d3Jvbmcta2V5LXZhbHVl" }), "wrong SharedAccessKey"), 40000);
  await check("js.auth.wrong_key_name_refused", () => expectRefused(withKey(CS, { SharedAccessKeyName: "NoSuchPolicy" }), "wrong SharedAccessKeyName"), 40000);
  await check("js.send.unknown_hub_refused", unknownHub, 40000);
  const failed = results.filter(([, ok]) => !ok).length;
  console.error(`[js] ${results.length - failed} passed, ${failed} failed`);
  process.exit(0); // do not wait for SDK timers of abandoned (timed-out) checks
}

main().catch((err) => {
  console.error(`[js] crashed: ${err?.stack ?? err}`);
  process.exit(3);
});
