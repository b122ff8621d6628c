"""A Sluice message handler in Python: takes an order, ships it.

Reads a JSON order (`{"id": ..., ...}`) from the message body, logs it, sends
`{"order": <id>, "handled_by": "python"}` to the queue `shipments` and
completes the message. A body that is not such an order is dead-lettered with
reason `InvalidOrder`. Built by `sluice build` with componentize-py, which
generates the `wit_world` bindings from the `sluice:handler` world.
"""

import json

import wit_world
from componentize_py_types import Err
from wit_world.imports import log, sender
from wit_world.imports.types import (
    CapabilityError_NotFound,
    DeadLetterInfo,
    Event,
    Message,
    Outcome,
    Outcome_Abandon,
    Outcome_Complete,
    Outcome_DeadLetter,
    OutgoingMessage,
)

SHIPMENTS = "shipments"


class InvalidOrder(Exception):
    """The message body is not an order this handler can ship."""


def parse_order(body: bytes) -> dict:
    try:
        order = json.loads(body)
    except (UnicodeDecodeError, ValueError) as e:
        raise InvalidOrder(f"the body is not JSON: {e}") from e
    if not isinstance(order, dict):
        raise InvalidOrder("the body is not a JSON object")
    order_id = order.get("id")
    if not isinstance(order_id, (str, int)) or isinstance(order_id, bool) or order_id == "":
        raise InvalidOrder("the order has no id (a non-empty string or an integer)")
    return order


class WitWorld(wit_world.WitWorld):
    """The world's exports: componentize-py calls these for each delivery."""

    def handle_event(self, event: Event) -> Outcome:
        # This handler is meant for a queue; an event has nothing to ship.
        log.write(log.Level.WARN, "ignoring an event", [("id", event.id)])
        return Outcome_Complete()

    def handle_message(self, message: Message) -> Outcome:
        try:
            order = parse_order(message.body)
        except InvalidOrder as e:
            return Outcome_DeadLetter(DeadLetterInfo(reason="InvalidOrder", description=str(e)))

        order_id = order["id"]
        log.write(
            log.Level.INFO,
            "shipping order",
            [("order", str(order_id)), ("message_id", message.message_id)],
        )
        body = json.dumps({"order": order_id, "handled_by": "python"}).encode()
        shipment = OutgoingMessage(
            body=body,
            message_id=None,
            correlation_id=None,  # inherited from the message being handled
            content_type="application/json",
            subject="shipment",
            user_properties=[],
            session_id=None,
            delay_ms=None,
        )
        try:
            sender.send(SHIPMENTS, shipment)
        except Err as e:
            error = e.value
            if isinstance(error, CapabilityError_NotFound):
                # Retrying cannot help until someone creates the queue: say so.
                return Outcome_DeadLetter(
                    DeadLetterInfo(reason="NoShipmentsQueue", description=error.value)
                )
            # Unavailable or invalid: let the host deliver the order again.
            return Outcome_Abandon(f"cannot send to {SHIPMENTS}: {error}")
        return Outcome_Complete()
