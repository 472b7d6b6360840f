// Drop-in check: Microsoft's JS SDK (@azure/event-hubs on rhea) with the connection
// string Microsoft documents for its own emulator, unchanged, against `hubcat emulator`
// started with its defaults (AMQP on localhost:5672, hub eh1).
//
// Run by run.sh; env: EH_DOC_CS (the documented connection string), EH_RUN_ID.
// Prints one `PASS name` or `FAIL name: reason` line; exit code 0 means it ran to the end.

import {
  EventHubConsumerClient,
  EventHubProducerClient,
  earliestEventPosition,
} from "@azure/event-hubs";

const CS = process.env.EH_DOC_CS;
const RUN_ID = process.env.EH_RUN_ID || "local";
const RETRY = { maxRetries: 1, retryDelayInMs: 300, maxRetryDelayInMs: 1000, timeoutInMs: 20000 };
const NAME = "dropin.js.documented_connection_string_send_and_read_back";

async function sendAndReadBack() {
  const bodies = [0, 1, 2].map((i) => `js-${RUN_ID}-dropin-${i}`);
  const producer = new EventHubProducerClient(CS, "eh1", { retryOptions: RETRY });
  try {
    const batch = await producer.createBatch({ partitionId: "1" });
    for (const b of bodies) {
      if (!batch.tryAdd({ body: b })) throw new Error("three small events do not fit a batch");
    }
    await producer.sendBatch(batch);
  } finally {
    await producer.close();
  }
  const consumer = new EventHubConsumerClient("$Default", CS, "eh1", { retryOptions: RETRY });
  const seen = [];
  try {
    await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`read ${seen.length} of 3 in 30 s`)), 30000);
      consumer.subscribe(
        "1",
        {
          processEvents: async (events) => {
            for (const e of events) if (bodies.includes(e.body)) seen.push(e.body);
            if (seen.length >= bodies.length) {
              clearTimeout(timer);
              resolve();
            }
          },
          processError: async (err) => {
            clearTimeout(timer);
            reject(err);
          },
        },
        { startPosition: earliestEventPosition, maxWaitTimeInSeconds: 1 },
      );
    });
  } finally {
    await consumer.close();
  }
  if (JSON.stringify(seen) !== JSON.stringify(bodies)) {
    throw new Error(`read ${JSON.stringify(seen)}, sent ${JSON.stringify(bodies)}`);
  }
}

try {
  await sendAndReadBack();
  console.log(`PASS ${NAME}`);
} catch (e) {
  console.log(`FAIL ${NAME}: ${`${e?.name}: ${e?.message}`.replace(/\s+/g, " ").slice(0, 600)}`);
}
process.exit(0);
