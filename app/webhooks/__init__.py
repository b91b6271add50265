"""Signed webhooks: job events pushed to a tenant's HTTP endpoints, never lost.

- `model`: event types, endpoints, deliveries, the payload, the URL rules.
- `outbox`: deliveries recorded in the transaction of the job change they report.
- `store`: every other SQL statement on endpoints, deliveries and attempts.
- `secrets`: signing secrets (`whsec_…`), sealed at rest.
- `guard`: which addresses an endpoint may reach, checked when connecting.
- `schedule`: when a failed delivery is tried again.
- `sender`: one attempt: signed (Standard Webhooks), sent with httpx.
- `deliverer`: the worker each process runs: claims due deliveries, sends them.
- `service`: `Webhooks`, one caller's view (tenant, scope `webhooks:manage`).

docs/webhooks.md says what a receiver can rely on.
"""
