"""Managing webhooks over GraphQL: the scope, tenants, the rules on URLs and events,
and the address check made when connecting (not only at creation)."""

from __future__ import annotations

import ipaddress
import socket
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from app.webhooks.guard import forbidden
from tests.tokens import ALL, auth_settings, bearer, create_job, gateway, token

MANAGE = f"{ALL} webhooks:manage"
CREATE = (
    "mutation($url: String!, $events: [WebhookEventType!]!, $description: String) {"
    " createWebhookEndpoint(url: $url, events: $events, description: $description) {"
    " secret endpoint { id url events enabled description } } }"
)
LIST = "{ webhookEndpoints { id url events enabled disabledReason description } }"
UPDATE = (
    "mutation($id: UUID!, $enabled: Boolean, $events: [WebhookEventType!]) {"
    " updateWebhookEndpoint(id: $id, enabled: $enabled, events: $events) { id enabled events } }"
)
ROTATE = "mutation($id: UUID!) { rotateWebhookSecret(id: $id) { secret endpoint { id } } }"
DELETE = "mutation($id: UUID!) { deleteWebhookEndpoint(id: $id) { id } }"
DELIVERIES = (
    "query($id: UUID!) { webhookDeliveries(endpoint: $id) { edges { cursor node {"
    " id event status attempts { statusCode error } } } pageInfo { hasNextPage endCursor } } }"
)
REDELIVER = "mutation($id: String!) { redeliverWebhook(id: $id) { id status } }"


@pytest.fixture
def client(database_url: str) -> Iterator[TestClient]:
    with gateway(auth_settings(database_url, webhook_poll_interval=0.05)) as test_client:
        yield test_client


def gql(
    client: TestClient, query: str, tenant: str = "acme", scope: str = MANAGE, **variables: Any
) -> dict[str, Any]:
    response = client.post(
        "/graphql",
        json={"query": query, "variables": variables},
        headers=bearer(token(tenant, scope)),
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def data(body: dict[str, Any]) -> Any:
    assert "errors" not in body, body
    return next(iter(body["data"].values()))


def error(body: dict[str, Any]) -> tuple[str, str]:
    [found] = body["errors"]
    return found["extensions"]["code"], found["message"]


def create(client: TestClient, url: str = "https://hooks.example.test/jobs", **kw: Any) -> Any:
    return data(gql(client, CREATE, url=url, events=["JOB_COMPLETED"], **kw))


def test_managing_webhooks_needs_the_webhooks_manage_scope(client: TestClient) -> None:
    for query, variables in (
        (CREATE, {"url": "https://hooks.example.test/", "events": ["JOB_CREATED"]}),
        (LIST, {}),
        (DELETE, {"id": str(uuid.uuid4())}),
    ):
        body = gql(client, query, scope=ALL, **variables)
        assert error(body) == ("FORBIDDEN", "this token lacks the webhooks:manage scope")


def test_the_secret_is_given_once_and_never_read_back(client: TestClient) -> None:
    created = create(client, description="CMS")
    secret, endpoint = created["secret"], created["endpoint"]
    assert secret.startswith("whsec_") and len(secret) > 40
    assert endpoint["events"] == ["JOB_COMPLETED"] and endpoint["enabled"] is True
    listed = gql(client, LIST)
    assert data(listed) == [{**endpoint, "disabledReason": None}]
    assert secret not in str(listed)
    rotated = data(gql(client, ROTATE, id=endpoint["id"]))
    assert rotated["secret"].startswith("whsec_") and rotated["secret"] != secret


def test_another_tenants_endpoint_is_not_found_and_not_listed(client: TestClient) -> None:
    endpoint = create(client)["endpoint"]
    for query in (UPDATE, ROTATE, DELETE, DELIVERIES):
        body = gql(client, query, tenant="globex", id=endpoint["id"])
        assert error(body) == ("NOT_FOUND", f"webhook endpoint {endpoint['id']} not found")
    assert data(gql(client, LIST, tenant="globex")) == []
    assert len(data(gql(client, LIST))) == 1


@pytest.mark.parametrize(
    ("url", "events", "message"),
    [
        ("http://hooks.example.test/", ["JOB_CREATED"], "url: must be an absolute https:// URL"),
        ("hooks.example.test", ["JOB_CREATED"], "url: must be an absolute https:// URL"),
        ("https://127.0.0.1/", ["JOB_CREATED"], "url: must not point at a loopback address"),
        ("https://localhost:8443/", ["JOB_CREATED"], "url: must not point at this machine"),
        ("https://10.1.2.3/", ["JOB_CREATED"], "url: must not point at a private address"),
        ("https://169.254.169.254/", ["JOB_CREATED"], "url: must not point at a cloud metadata"),
        ("https://[::ffff:192.168.0.1]/", ["JOB_CREATED"], "url: must not point at a private"),
        ("https://u:p@hooks.example.test/", ["JOB_CREATED"], "url: must not carry credentials"),
        ("https://hooks.example.test/", [], "events: must name at least one event type"),
    ],
)
def test_bad_endpoints_are_refused_naming_the_field(
    client: TestClient, url: str, events: list[str], message: str
) -> None:
    body = gql(client, CREATE, url=url, events=events)
    code, text = error(body)
    assert code == "BAD_USER_INPUT" and text.startswith(message), text
    assert data(gql(client, LIST)) == []


def test_updating_enables_disables_and_changes_events(client: TestClient) -> None:
    endpoint = create(client)["endpoint"]
    off = data(gql(client, UPDATE, id=endpoint["id"], enabled=False))
    assert off["enabled"] is False
    [listed] = data(gql(client, LIST))
    assert listed["disabledReason"] == "disabled by the tenant"
    on = data(
        gql(client, UPDATE, id=endpoint["id"], enabled=True, events=["JOB_FAILED", "JOB_PROGRESS"])
    )
    assert on == {"id": endpoint["id"], "enabled": True, "events": ["JOB_FAILED", "JOB_PROGRESS"]}
    assert data(gql(client, LIST))[0]["disabledReason"] is None
    assert error(gql(client, UPDATE, id=endpoint["id"], events=[]))[0] == "BAD_USER_INPUT"
    assert data(gql(client, DELETE, id=endpoint["id"])) == {"id": endpoint["id"]}
    assert data(gql(client, LIST)) == []


def test_a_name_that_resolves_to_this_machine_is_refused_when_connecting(
    client: TestClient,
) -> None:
    # Accepted at creation (a name, not an address); refused at every connection.
    name = socket.gethostname()
    address = ipaddress.ip_address(socket.getaddrinfo(name, 443)[0][4][0])
    if forbidden(address) is None or name == "localhost":
        pytest.skip(f"this machine's name {name} resolves to a public address")
    endpoint = create(client, url=f"https://{name}:9/hook")["endpoint"]
    response = client.patch(
        f"/encoding/jobs/{create_job(client)['id']}",
        json={"status": 1},
        headers=bearer(token("acme")),
    )
    assert response.status_code == 200
    for _ in range(200):
        [edge] = data(gql(client, DELIVERIES, id=endpoint["id"]))["edges"]
        if edge["node"]["attempts"]:
            break
        time.sleep(0.05)
    [attempt, *_] = edge["node"]["attempts"]
    assert attempt["statusCode"] is None
    assert attempt["error"] == f"{name} resolves to {address}, {forbidden(address)}: refused"
    # A redelivery is the same delivery, tried again.
    again = data(gql(client, REDELIVER, id=edge["node"]["id"]))
    assert again == {"id": edge["node"]["id"], "status": "PENDING"}
    assert error(gql(client, REDELIVER, tenant="globex", id=edge["node"]["id"]))[0] == "NOT_FOUND"


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        ("93.184.215.14", True),
        ("2606:4700::1111", True),
        ("127.0.0.1", False),
        ("10.0.0.1", False),
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),
        ("100.64.0.1", False),
        ("0.0.0.0", False),
        ("224.0.0.1", False),
        ("::1", False),
        ("fd00::1", False),
        ("fe80::1", False),
        ("::ffff:127.0.0.1", False),
        ("2002:7f00:1::", False),
    ],
)
def test_the_address_rule(address: str, allowed: bool) -> None:
    assert (forbidden(ipaddress.ip_address(address)) is None) is allowed
