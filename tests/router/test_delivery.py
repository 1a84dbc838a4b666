"""Delivery to real runtime servers (`python -m kubesoar runtime` on 127.x addresses):
alerts spread over pods by key affinity, failover when an endpoint dies, 503 when none
accepts, no double runs on retry (through any router replica), and tenant isolation
between two namespaces with the same names."""

from __future__ import annotations

import asyncio
import json
import os
import signal

import httpx
import pytest
from kubesoar_router.delivery import DeliveryPolicy, affinity, idempotency_key
from kubesoar_router.ingest import alert_id_for
from kubesoar_router.snapshot import NamespaceState, build_namespace
from router_objects import TINY_ENTRY_POINTS, alertsource, endpointslice, new_router, playbook

HIGH = {"title": "Brute force", "severity": "high", "source_id": "e-1"}


def preferred_endpoint(alert, endpoints, namespace="tenant-a", playbook="triage"):
    """The endpoint every router replica tries first for `alert` (as `send` encodes it)."""
    alert_id = alert_id_for(namespace, "siem", json.dumps(alert).encode())
    key = idempotency_key(alert_id, namespace, playbook)
    return min(endpoints, key=lambda endpoint: affinity(key, endpoint))


def alert_preferring(endpoint, endpoints, base=HIGH, **kwargs):
    """A variant of `base` whose key sends it to `endpoint` first."""
    for index in range(1000):
        alert = {**base, "source_id": f"{base.get('source_id', 'a')}-{index}"}
        if preferred_endpoint(alert, endpoints, **kwargs) == endpoint:
            return alert
    raise AssertionError("no alert prefers that endpoint")


def tenant(namespace, token, runtimes, *, ready=True):
    return build_namespace(
        namespace,
        alertsources=[alertsource("siem", dedup={"windowSeconds": 0})],
        secrets={"ingest": {"token": token.encode()}},
        playbooks=[playbook("triage", TINY_ENTRY_POINTS)],
        endpointslices=[endpointslice("triage", r.host, r.port, ready=ready) for r in runtimes],
    )


async def send(base_url, namespace, token, alert, **headers):
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        return await client.post(
            f"/v1/namespaces/{namespace}/sources/siem/alerts",
            content=json.dumps(alert),
            headers={"Authorization": f"Bearer {token}", **headers},
        )


async def test_alerts_spread_over_pods_each_to_the_pod_its_key_prefers(
    runtime_factory, router_server
):
    runtimes = [runtime_factory(), runtime_factory()]
    router = new_router()
    router.snapshot.put(tenant("tenant-a", "tok-a", runtimes))
    base_url = await router_server(router)
    endpoints = router.snapshot.get("tenant-a").endpoints["triage"]
    # Two alerts that prefer each pod, and more: every alert lands where its key says.
    alerts = [alert_preferring(e, endpoints, base={**HIGH, "source_id": "e"}) for e in endpoints]
    alerts += [{**HIGH, "source_id": f"more-{index}"} for index in range(6)]
    for alert in alerts:
        response = await send(base_url, "tenant-a", "tok-a", alert)
        assert response.status_code == 202, response.text
        answer = response.json()
        assert [d["playbook"] for d in answer["deliveries"]] == ["triage"]
        run_id = answer["deliveries"][0]["runId"]
        owner = next(r for r in runtimes if r.run(run_id) is not None)
        assert owner.endpoint == preferred_endpoint(alert, endpoints)
    assert min(r.runs_total() for r in runtimes) >= 1
    assert sum(r.runs_total() for r in runtimes) == len(alerts)
    # Not matching any entry point: accepted, nothing delivered.
    response = await send(base_url, "tenant-a", "tok-a", {"title": "noise", "severity": "low"})
    assert response.status_code == 202 and response.json()["deliveries"] == []


async def test_failover_when_an_endpoint_dies(runtime_factory, router_server):
    alive, dying = runtime_factory(), runtime_factory()
    router = new_router()
    router.snapshot.put(tenant("tenant-a", "tok-a", [alive, dying]))
    base_url = await router_server(router)
    dying.stop()
    for index in range(4):
        response = await send(base_url, "tenant-a", "tok-a", {**HIGH, "source_id": f"f-{index}"})
        assert response.status_code == 202, response.text
        assert alive.run(response.json()["deliveries"][0]["runId"])["status"] == "succeeded"
    assert alive.runs_total() == 4


async def test_503_when_no_endpoint_accepts_and_the_retry_runs_once(runtime_factory, router_server):
    runtime = runtime_factory()
    router = new_router()
    router.snapshot.put(tenant("tenant-a", "tok-a", [runtime], ready=False))
    base_url = await router_server(router)
    response = await send(base_url, "tenant-a", "tok-a", HIGH)
    assert response.status_code == 503
    assert response.json()["error"] == "delivery_failed"
    assert "no ready runtime endpoint" in response.json()["message"]
    assert int(response.headers["Retry-After"]) > 0
    assert runtime.runs_total() == 0

    # The endpoint turns ready: the sender's retry goes through (dedup did not keep it)...
    router.snapshot.put(tenant("tenant-a", "tok-a", [runtime]))
    first = await send(base_url, "tenant-a", "tok-a", HIGH)
    assert first.status_code == 202, first.text
    # ...and the same request again reaches the runtime with the same idempotency key,
    # which answers with the first run instead of running it again.
    again = await send(base_url, "tenant-a", "tok-a", HIGH)
    assert again.status_code == 202
    assert again.json()["deliveries"] == first.json()["deliveries"]
    assert runtime.run(first.json()["deliveries"][0]["runId"])["status"] == "succeeded"
    assert runtime.runs_total() == 1


async def test_503_when_every_endpoint_is_down(runtime_factory, router_server):
    runtimes = [runtime_factory(), runtime_factory()]
    router = new_router()
    router.snapshot.put(tenant("tenant-a", "tok-a", runtimes))
    base_url = await router_server(router)
    for runtime in runtimes:
        runtime.stop()
    response = await send(base_url, "tenant-a", "tok-a", HIGH)
    assert response.status_code == 503
    assert "triage" in response.json()["message"]


async def test_tenant_isolation(runtime_factory, router_server):
    runtime_a, runtime_b = runtime_factory(), runtime_factory()
    router = new_router()
    router.snapshot.put(tenant("tenant-a", "tok-a", [runtime_a]))
    router.snapshot.put(tenant("tenant-b", "tok-b", [runtime_b]))
    base_url = await router_server(router)

    # One tenant's token does not open the other's source of the same name.
    response = await send(base_url, "tenant-b", "tok-a", HIGH)
    assert response.status_code == 401

    a_runs = []
    for index in range(3):
        response = await send(base_url, "tenant-a", "tok-a", {**HIGH, "source_id": f"a{index}"})
        assert response.status_code == 202
        a_runs.append(response.json()["deliveries"][0]["runId"])
    response = await send(base_url, "tenant-b", "tok-b", {**HIGH, "source_id": "b0"})
    assert response.status_code == 202
    b_run = runtime_b.run(response.json()["deliveries"][0]["runId"])

    # Each run happened on its own tenant's runtime only, with its own tenant on the alert.
    assert b_run is not None and b_run["results"][0]["result"]["tenant"] == "tenant-b"
    for run_id in a_runs:
        run = runtime_a.run(run_id)
        assert run is not None and run["results"][0]["result"]["tenant"] == "tenant-a"
        assert runtime_b.run(run_id) is None
    assert runtime_a.run(b_run["runId"]) is None
    assert (runtime_a.runs_total(), runtime_b.runs_total()) == (3, 1)


# --- delivery safety: refused vs ambiguous failures ----------------------------------


class StandIn:
    """A fake runtime endpoint on loopback that reads each `POST /v1/runs` whole, then:
    `drop` resets the connection (the request was sent; did the runtime take it?),
    `drop-then-gone` does that and stops listening (the pod died after reading),
    `answer-NNN` answers status NNN with a JSON error."""

    def __init__(self, behaviour: str) -> None:
        self.behaviour = behaviour
        self.bodies: list[dict] = []
        self.server: asyncio.Server | None = None
        self.host, self.port = "127.0.0.5", 0

    async def start(self) -> StandIn:
        self.server = await asyncio.start_server(self._serve, self.host, 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                self.bodies.append(json.loads(await reader.readexactly(length)))
                if self.behaviour.startswith("drop"):
                    if self.behaviour == "drop-then-gone" and self.server is not None:
                        self.server.close()
                    writer.transport.abort()
                    return
                status = int(self.behaviour.removeprefix("answer-"))
                payload = b'{"error":"x","message":"stand-in"}'
                writer.write(
                    b"HTTP/1.1 %d X\r\nContent-Type: application/json\r\n"
                    b"Content-Length: %d\r\n\r\n%s" % (status, len(payload), payload)
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


FAST = DeliveryPolicy(attempt_timeout=1.0, same_endpoint_retries=1, retry_pause=0.01)


def with_stand_in(stand_in: StandIn, runtime) -> NamespaceState:
    return build_namespace(
        "tenant-a",
        alertsources=[alertsource("siem", dedup={"windowSeconds": 0})],
        secrets={"ingest": {"token": b"tok-a"}},
        playbooks=[playbook("triage", TINY_ENTRY_POINTS)],
        endpointslices=[
            endpointslice("triage", stand_in.host, stand_in.port),
            endpointslice("triage", runtime.host, runtime.port),
        ],
    )


@pytest.mark.parametrize("answer", ["answer-503", "answer-429", "answer-400", "drop-then-gone"])
async def test_refused_fails_over_at_once(runtime_factory, router_server, answer):
    """429, 503, other 4xx and a connection that cannot be made were not accepted: the
    next endpoint takes the alert at once. So does an ambiguous failure whose endpoint is
    then gone (the retry to it cannot connect)."""
    runtime = runtime_factory()
    stand_in = await StandIn(answer).start()
    try:
        router = new_router(delivery_policy=FAST)
        router.snapshot.put(with_stand_in(stand_in, runtime))
        endpoints = router.snapshot.get("tenant-a").endpoints["triage"]
        first = next(e for e in endpoints if e.port == stand_in.port)
        base_url = await router_server(router)
        response = await send(base_url, "tenant-a", "tok-a", alert_preferring(first, endpoints))
        assert response.status_code == 202, response.text
        run = runtime.run(response.json()["deliveries"][0]["runId"])
        assert run is not None and run["status"] == "succeeded"
        assert len(stand_in.bodies) == 1
        assert run["idempotencyKey"] == stand_in.bodies[0]["idempotencyKey"]
        assert runtime.runs_total() == 1
    finally:
        await stand_in.stop()


@pytest.mark.parametrize("answer", ["drop", "answer-500"])
async def test_ambiguous_is_retried_on_the_same_endpoint_never_elsewhere(
    runtime_factory, router_server, answer
):
    """The stand-in may have accepted the run (it read the request, then reset the
    connection or answered 500): the router retries it there with the same key, does
    not send it to the other runtime, answers 503, and sends the sender's retry of the
    alert to the same endpoint first."""
    runtime = runtime_factory()
    stand_in = await StandIn(answer).start()
    try:
        router = new_router(delivery_policy=FAST)
        router.snapshot.put(with_stand_in(stand_in, runtime))
        endpoints = router.snapshot.get("tenant-a").endpoints["triage"]
        alert = alert_preferring(next(e for e in endpoints if e.port == stand_in.port), endpoints)
        base_url = await router_server(router)
        response = await send(base_url, "tenant-a", "tok-a", alert)
        assert response.status_code == 503
        assert response.json()["error"] == "delivery_failed"
        assert "may have accepted it" in response.json()["message"]
        assert int(response.headers["Retry-After"]) > 0
        assert len(stand_in.bodies) == 2
        assert stand_in.bodies[0] == stand_in.bodies[1]
        # The sender retries through the same replica: the key is pinned to the endpoint
        # that may hold it.
        again = await send(base_url, "tenant-a", "tok-a", alert)
        assert again.status_code == 503
        assert len(stand_in.bodies) == 4
        # ...and through another replica, which never saw it: the key's affinity sends it
        # to the same pod first, never to the runtime that would run it a second time.
        replica = new_router(delivery_policy=FAST)
        replica.snapshot.put(with_stand_in(stand_in, runtime))
        through_replica = await send(await router_server(replica), "tenant-a", "tok-a", alert)
        assert through_replica.status_code == 503
        assert len(stand_in.bodies) == 6
        assert {b["idempotencyKey"] for b in stand_in.bodies} == {
            stand_in.bodies[0]["idempotencyKey"]
        }
        assert runtime.runs_total() == 0
        # Other alerts still reach the pods.
        other = await send(base_url, "tenant-a", "tok-a", {**HIGH, "source_id": "other"})
        assert other.status_code in {202, 503}
    finally:
        await stand_in.stop()


async def test_a_stopped_runtime_is_not_bypassed_and_the_retry_replays(
    runtime_factory, router_server
):
    """`kill -STOP` on the runtime the alert goes to: the request is sent (the kernel
    accepts the connection) and no answer comes. Failing over would run the alert twice
    once the process resumes; the router answers 503 instead, and the sender's retry,
    after the process resumes, gets that runtime's one run."""
    runtimes = [runtime_factory(), runtime_factory()]
    router = new_router(delivery_policy=DeliveryPolicy(attempt_timeout=0.5, retry_pause=0.01))
    router.snapshot.put(tenant("tenant-a", "tok-a", runtimes))
    base_url = await router_server(router)
    endpoints = router.snapshot.get("tenant-a").endpoints["triage"]
    stopped, other = runtimes
    alert = alert_preferring(stopped.endpoint, endpoints)
    os.kill(stopped.process.pid, signal.SIGSTOP)
    try:
        response = await send(base_url, "tenant-a", "tok-a", alert)
    finally:
        os.kill(stopped.process.pid, signal.SIGCONT)
    assert response.status_code == 503, response.text
    assert "may have accepted it" in response.json()["message"]
    assert other.runs_total() == 0
    retry = await send(base_url, "tenant-a", "tok-a", alert)
    assert retry.status_code == 202, retry.text
    run_id = retry.json()["deliveries"][0]["runId"]
    assert stopped.run(run_id)["status"] == "succeeded"
    assert other.run(run_id) is None
    assert (stopped.runs_total(), other.runs_total()) == (1, 0)


def test_pinned_keys_are_bounded_and_expire():
    """The endpoint an unsure key went to is remembered for the sender's retry, within
    bounds: the oldest keys go first, and each is forgotten after `pinned_seconds`."""
    from kubesoar_router.delivery import Deliverer
    from kubesoar_router.snapshot import Endpoint

    now = [0.0]
    policy = DeliveryPolicy(pinned_keys=2, pinned_seconds=60)
    deliverer = Deliverer(session=None, policy=policy, clock=lambda: now[0])  # type: ignore[arg-type]
    a, b, c = Endpoint("127.0.0.1", 1), Endpoint("127.0.0.1", 2), Endpoint("127.0.0.1", 3)

    def by_affinity(key, endpoints):
        return sorted(endpoints, key=lambda endpoint: affinity(key, endpoint))

    deliverer.pin("k1", b)
    deliverer.pin("k2", c)
    # A pinned key starts at its endpoint, then follows its affinity order.
    assert deliverer._order("ns", "pb", (a, b, c), "k1") == [
        b, *(e for e in by_affinity("k1", (a, b, c)) if e != b)
    ]  # fmt: skip
    assert deliverer._order("ns", "pb", (a, b, c), "other") == by_affinity("other", (a, b, c))
    # Every replica orders a key alike: a fresh Deliverer gives the same order.
    fresh = Deliverer(session=None, policy=policy)  # type: ignore[arg-type]
    assert fresh._order("ns", "pb", (c, a, b), "other") == by_affinity("other", (a, b, c))
    # With no key (no idempotency), plain round-robin.
    assert fresh._order("ns", "pb", (a, b, c), None) == [a, b, c]
    assert fresh._order("ns", "pb", (a, b, c), None) == [b, c, a]
    deliverer.pin("k3", a)
    assert deliverer.pinned("k1") is None and deliverer.pinned("k3") == a
    # A pinned endpoint that left the ready set is not tried: the affinity order.
    deliverer.pin("k4", b)
    assert deliverer._order("ns", "pb", (a, c), "k4") == by_affinity("k4", (a, c))
    now[0] = 61.0
    assert deliverer.pinned("k2") is None and deliverer.pinned("k3") is None


async def test_an_unsure_endpoint_that_dies_is_failed_over(runtime_factory, router_server):
    """`kill -STOP`, the attempt times out (maybe accepted), then the process is killed
    before the retry: the retry cannot connect, so the endpoint is gone and the other
    runtime takes the alert (what the gone pod had queued died with it)."""
    from kubesoar_router.delivery import Deliverer, Outcome

    runtimes = [runtime_factory(), runtime_factory()]
    router = new_router(delivery_policy=DeliveryPolicy(attempt_timeout=0.5, retry_pause=0.01))
    router.snapshot.put(tenant("tenant-a", "tok-a", runtimes))
    base_url = await router_server(router)
    endpoints = router.snapshot.get("tenant-a").endpoints["triage"]
    stopped, other = runtimes
    alert = alert_preferring(stopped.endpoint, endpoints)
    outcomes = []

    class KillAfterFirstAttempt(Deliverer):
        async def _post(self, endpoint, body, token=""):
            attempt = await super()._post(endpoint, body, token)
            outcomes.append((endpoint, attempt.outcome))
            if attempt.outcome is Outcome.AMBIGUOUS:
                stopped.stop()  # SIGKILL, also for a stopped process
            return attempt

    router.deliverer = KillAfterFirstAttempt(
        router.deliverer._session, policy=router.delivery_policy
    )
    os.kill(stopped.process.pid, signal.SIGSTOP)
    response = await send(base_url, "tenant-a", "tok-a", alert)
    assert response.status_code == 202, response.text
    assert outcomes == [
        (stopped.endpoint, Outcome.AMBIGUOUS),
        (stopped.endpoint, Outcome.REFUSED),
        (other.endpoint, Outcome.ACCEPTED),
    ]
    assert other.run(response.json()["deliveries"][0]["runId"])["status"] == "succeeded"
    assert other.runs_total() == 1


async def test_a_partly_failed_alert_is_retried_where_it_was_accepted(
    runtime_factory, router_server
):
    """Two Playbooks match; one accepts, the other refuses everywhere, so the router
    answers 503 and the sender sends the whole alert again. The accepting Playbook's
    delivery must not go to its other pod, which would run it a second time: the key
    goes to the pod that holds it (pinned, and first by affinity), whose replay answers."""
    runtimes = [runtime_factory(), runtime_factory()]
    refusing = await StandIn("answer-503").start()
    try:
        router = new_router(delivery_policy=FAST)
        router.snapshot.put(
            build_namespace(
                "tenant-a",
                alertsources=[alertsource("siem", dedup={"windowSeconds": 0})],
                secrets={"ingest": {"token": b"tok-a"}},
                playbooks=[
                    playbook("triage", TINY_ENTRY_POINTS),
                    playbook("audit", TINY_ENTRY_POINTS),
                ],
                endpointslices=[
                    *(endpointslice("triage", r.host, r.port) for r in runtimes),
                    endpointslice("audit", refusing.host, refusing.port),
                ],
            )
        )
        base_url = await router_server(router)
        for _ in range(3):
            response = await send(base_url, "tenant-a", "tok-a", HIGH)
            assert response.status_code == 503
            assert "audit" in response.json()["message"]
            assert "triage" not in response.json()["message"]
        assert len(refusing.bodies) == 3
        for _ in range(100):  # runs are counted when they finish
            totals = [r.runs_total() for r in runtimes]
            if sum(totals) >= 1:
                break
            await asyncio.sleep(0.05)
        assert sorted(totals) == [0, 1]
    finally:
        await refusing.stop()


async def test_a_900_kb_alert_sent_in_chunks_runs_end_to_end(runtime_factory, router_server):
    """Sender → router → runtime with a body near the 1 MiB limit, arriving in pieces: each
    server reads the whole body (one body reader for both), and the run succeeds."""
    runtime = runtime_factory()
    router = new_router()
    router.snapshot.put(tenant("tenant-a", "tok-a", [runtime]))
    base_url = await router_server(router)
    data = json.dumps({**HIGH, "source_id": "large", "raw": {"blob": "x" * 900_000}}).encode()

    async def chunks():
        for start in range(0, len(data), 64 * 1024):
            yield data[start : start + 64 * 1024]
            await asyncio.sleep(0.005)

    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        response = await client.post(
            "/v1/namespaces/tenant-a/sources/siem/alerts",
            content=chunks(),
            headers={"Authorization": "Bearer tok-a"},
        )
    assert response.status_code == 202, response.text
    run_id = response.json()["deliveries"][0]["runId"]
    assert runtime.run(run_id)["status"] == "succeeded"
