"""Publishes to a Sluice topic with the official azure-eventgrid SDK, unchanged.

Usage: eventgrid_publish.py <endpoint> <key> <eventgrid|cloudevents> <key|sas>

Sends two events (ids sdk-1 and sdk-2) in the given schema, authenticated
with the topic key (`AzureKeyCredential`, header aeg-sas-key) or a token
from `generate_sas` (`AzureSasCredential`, header aeg-sas-token). Exits
non-zero, with the SDK's error, when the host refuses.
"""

import datetime
import sys

from azure.core.credentials import AzureKeyCredential, AzureSasCredential
from azure.core.messaging import CloudEvent
from azure.eventgrid import EventGridEvent, EventGridPublisherClient, generate_sas


def main() -> None:
    endpoint, key, schema, auth = sys.argv[1:5]
    if auth == "key":
        credential = AzureKeyCredential(key)
    else:
        expiry = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1)
        credential = AzureSasCredential(generate_sas(endpoint, key, expiry))
    client = EventGridPublisherClient(endpoint, credential)
    if schema == "eventgrid":
        events = [
            EventGridEvent(
                id=f"sdk-{i}",
                subject=f"/orders/{i}",
                event_type="orders.created",
                data={"n": i, "via": "python"},
                data_version="1.0",
            )
            for i in (1, 2)
        ]
    else:
        events = [
            CloudEvent(
                id=f"sdk-{i}",
                source="/python/sdk",
                type="orders.created",
                subject=f"/orders/{i}",
                data={"n": i, "via": "python"},
            )
            for i in (1, 2)
        ]
    client.send(events)
    print(f"published {len(events)} {schema} events with {auth}")


if __name__ == "__main__":
    main()
