// A Sluice message handler in JavaScript: takes an order, ships it.
//
// Reads a JSON order (`{"id": ..., ...}`) from the message body, logs it, sends
// `{"order": <id>, "handled_by": "javascript"}` to the queue `shipments` and
// completes the message. A body that is not such an order is dead-lettered with
// reason `InvalidOrder`. Built by `sluice build` with jco (componentize-js):
// the exports are the world's functions in camelCase, the imports come from
// `sluice:handler/<interface>@0.1.0`. WIT records are plain objects, variants
// `{ tag, val }`, `list<u8>` a Uint8Array; a WIT `result` error is thrown.

import { write } from "sluice:handler/log@0.1.0";
import { send } from "sluice:handler/sender@0.1.0";

const SHIPMENTS = "shipments";

class InvalidOrder extends Error {}

function parseOrder(body) {
  let order;
  try {
    order = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(body));
  } catch (e) {
    throw new InvalidOrder(`the body is not JSON: ${e.message}`);
  }
  if (order === null || typeof order !== "object" || Array.isArray(order)) {
    throw new InvalidOrder("the body is not a JSON object");
  }
  const id = order.id;
  if (!(typeof id === "string" && id !== "") && !Number.isInteger(id)) {
    throw new InvalidOrder("the order has no id (a non-empty string or an integer)");
  }
  return order;
}

export function handleEvent(event) {
  // This handler is meant for a queue; an event has nothing to ship.
  write("warn", "ignoring an event", [["id", event.id]]);
  return { tag: "complete" };
}

export function handleMessage(message) {
  let order;
  try {
    order = parseOrder(message.body);
  } catch (e) {
    if (e instanceof InvalidOrder) {
      return { tag: "dead-letter", val: { reason: "InvalidOrder", description: e.message } };
    }
    throw e;
  }

  write("info", "shipping order", [
    ["order", String(order.id)],
    ["message_id", message.messageId],
  ]);
  const body = new TextEncoder().encode(
    JSON.stringify({ order: order.id, handled_by: "javascript" }),
  );
  try {
    // correlationId is left out: it is inherited from the message being handled.
    send(SHIPMENTS, {
      body,
      contentType: "application/json",
      subject: "shipment",
      userProperties: [],
    });
  } catch (e) {
    // jco throws a WIT error as an Error whose `payload` is the capability-error.
    const error = e.payload ?? { tag: "unavailable", val: String(e) };
    if (error.tag === "not-found") {
      // Retrying cannot help until someone creates the queue: say so.
      return { tag: "dead-letter", val: { reason: "NoShipmentsQueue", description: error.val } };
    }
    return { tag: "abandon", val: `cannot send to ${SHIPMENTS}: ${error.tag}: ${error.val}` };
  }
  return { tag: "complete" };
}
