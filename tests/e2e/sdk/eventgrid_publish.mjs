// Publishes to a Sluice topic with the official @azure/eventgrid SDK, unchanged.
//
// Usage: node eventgrid_publish.mjs <endpoint> <key> <eventgrid|cloudevents>
//
// The JS SDK refuses plain http (unless the caller opts out), so this runs
// against the host's https endpoint; trust its certificate with
// NODE_EXTRA_CA_CERTS. Sends events sdk-js-1 and sdk-js-2; exits non-zero
// with the SDK's error when the host refuses.
import { AzureKeyCredential, EventGridPublisherClient } from "@azure/eventgrid";

const [endpoint, key, schema] = process.argv.slice(2);
const inputSchema = schema === "eventgrid" ? "EventGrid" : "CloudEvent";
const client = new EventGridPublisherClient(endpoint, inputSchema, new AzureKeyCredential(key));
const events = [1, 2].map((i) =>
  schema === "eventgrid"
    ? { id: `sdk-js-${i}`, subject: `/orders/${i}`, eventType: "orders.created", dataVersion: "1.0", data: { n: i, via: "js" } }
    : { id: `sdk-js-${i}`, source: "/js/sdk", type: "orders.created", subject: `/orders/${i}`, data: { n: i, via: "js" } },
);
try {
  await client.send(events);
  console.log(`published ${events.length} ${schema} events`);
} catch (e) {
  console.error(`${e.name}: ${e.message}`);
  process.exit(1);
}
