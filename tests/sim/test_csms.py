"""The two test CSMSs seen from a charge point: the `ocpp` library's v16 ChargePoint over real websockets.

Most tests run against both peers (our simulator and ocpp-rpc in strict mode); outages, planned silences,
the typed call API and the command line are the simulator's own.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import signal
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from charger.sim.csms import (
    CALLERROR,
    CALLRESULT,
    CP_INITIATED_ACTIONS,
    CsmsBehaviour,
    CsmsSecurity,
    CsmsSimulator,
    Direction,
    EventKind,
    Fault,
    FaultKind,
    FrameLog,
    NotConnected,
    OutageMode,
    frame_matcher,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from ocpp.exceptions import InternalError
from ocpp.routing import on
from ocpp.v16 import ChargePoint, call, call_result
from ocpp.v16.enums import Action
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.typing import Subprotocol

from charger.testing import free_port
from tests.support.certs import TlsFiles, client_context, make_tls_files
from tests.support.csms import PEER_KINDS, CsmsPeer, PeerOptions, csms_peer, sim_csms
from tests.support.resources import no_leaks

KEY = "0123456789abcdef0123"  # an AuthorizationKey of 20 bytes
NOW = "2024-05-01T12:00:00Z"


@pytest.fixture(autouse=True)
def _no_leaks() -> Iterator[None]:
    yield from no_leaks()


@pytest.fixture(params=PEER_KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls_files(tmp_path_factory.mktemp("pki"), cp_id="CP1")


# -- the charge point ------------------------------------------------------------------------------------


class ClientChargePoint(ChargePoint):  # type: ignore[misc]
    """Answers a few CSMS-initiated calls; UnlockConnector answers with a status outside the schema."""

    @on(Action.reset)
    def on_reset(self, **_: Any) -> call_result.Reset:
        return call_result.Reset(status="Accepted")

    @on(Action.get_configuration)
    def on_get_configuration(self, key: list[str] | None = None, **_: Any) -> call_result.GetConfiguration:
        known = [{"key": name, "readonly": False, "value": "60"} for name in key or ["HeartbeatInterval"]]
        return call_result.GetConfiguration(configuration_key=known)

    @on(Action.unlock_connector, skip_schema_validation=True)
    def on_unlock_connector(self, **_: Any) -> call_result.UnlockConnector:
        return call_result.UnlockConnector(status="Jammed")


def basic_auth(cp_id: str, key: str) -> str:
    return "Basic " + base64.b64encode(f"{cp_id}:{key}".encode()).decode()


@contextlib.asynccontextmanager
async def charge_point(
    url: str,
    cp_id: str = "CP1",
    *,
    key: str | None = None,
    tls_context: ssl.SSLContext | None = None,
    subprotocols: tuple[str, ...] = ("ocpp1.6",),
    response_timeout: float = 10.0,
) -> AsyncIterator[ClientChargePoint]:
    headers = {"Authorization": basic_auth(cp_id, key)} if key is not None else {}
    async with connect(
        f"{url}/{cp_id}",
        subprotocols=[Subprotocol(p) for p in subprotocols],
        additional_headers=headers,
        ssl=tls_context,
        open_timeout=10,
    ) as ws:
        cp = ClientChargePoint(cp_id, ws, response_timeout=response_timeout)
        task = asyncio.create_task(cp.start())
        try:
            yield cp
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


async def boot(cp: ClientChargePoint) -> call_result.BootNotification:
    return await cp.call(call.BootNotification(charge_point_model="M1", charge_point_vendor="charger"), suppress=False)


def cp_call(action: str, **fields: Any) -> Any:
    return getattr(call, action)(**fields)


# -- both peers ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", ["Accepted", "Pending", "Rejected"])
def test_boot_is_answered_with_the_configured_status_and_interval(kind: str, status: str, tmp_path: Path) -> None:
    async def scenario(peer: CsmsPeer) -> None:
        async with charge_point(peer.url) as cp:
            result = await boot(cp)
        assert (result.status, result.interval) == (status, 42)
        request = await asyncio.to_thread(peer.wait_for, frame_matcher("BootNotification"))
        answer = await asyncio.to_thread(
            peer.wait_for, frame_matcher("BootNotification", direction=Direction.SENT, message_type=CALLRESULT)
        )
        assert request.seq < answer.seq and answer.unique_id == request.unique_id
        assert answer.payload["status"] == status

    with csms_peer(kind, tmp_path, PeerOptions(boot_status=status, boot_interval=42)) as peer:
        asyncio.run(scenario(peer))


def test_behaviour_changes_apply_from_the_next_request(kind: str, tmp_path: Path) -> None:
    async def scenario(peer: CsmsPeer) -> list[tuple[str, int, str]]:
        seen = []
        async with charge_point(peer.url) as cp:
            for _ in range(2):
                result = await boot(cp)
                authorized = await cp.call(call.Authorize(id_tag="T"), suppress=False)
                seen.append((result.status, result.interval, authorized.id_tag_info["status"]))
                await asyncio.to_thread(
                    peer.set_behaviour, boot_status="Accepted", boot_interval=60, id_tags={"T": "Blocked"}
                )
        return seen

    with csms_peer(kind, tmp_path, PeerOptions(boot_status="Pending", boot_interval=5)) as peer:
        assert asyncio.run(scenario(peer)) == [("Pending", 5, "Accepted"), ("Accepted", 60, "Blocked")]


def test_authorize_answers_per_id_tag_and_accepts_unknown_tags(kind: str, tmp_path: Path) -> None:
    tags = {"BLOCKED": "Blocked", "EXPIRED": "Expired", "INVALID": "Invalid"}

    async def scenario(peer: CsmsPeer) -> dict[str, str]:
        async with charge_point(peer.url) as cp:
            await boot(cp)
            answers = {}
            for tag in [*tags, "STRANGER"]:
                result = await cp.call(call.Authorize(id_tag=tag), suppress=False)
                answers[tag] = result.id_tag_info["status"]
            return answers

    with csms_peer(kind, tmp_path, PeerOptions(id_tags=tags)) as peer:
        assert asyncio.run(scenario(peer)) == {**tags, "STRANGER": "Accepted"}
        assert peer.invalid_inbound() == []


def test_transactions_get_increasing_ids_and_every_cp_action_is_answered(kind: str, tmp_path: Path) -> None:
    meter = [{"timestamp": NOW, "sampledValue": [{"value": "1500", "measurand": "Energy.Active.Import.Register"}]}]
    other_actions = {
        "Heartbeat": {},
        "Authorize": {"id_tag": "TAG"},
        "StatusNotification": {"connector_id": 1, "error_code": "NoError", "status": "Charging"},
        "DataTransfer": {"vendor_id": "org.charger", "message_id": "hello", "data": "{}"},
        "DiagnosticsStatusNotification": {"status": "Uploaded"},
        "FirmwareStatusNotification": {"status": "Installed"},
        "SecurityEventNotification": {"type": "StartupOfTheDevice", "timestamp": NOW, "tech_info": "boot"},
        "LogStatusNotification": {"status": "Uploaded", "request_id": 7},
        "SignedFirmwareStatusNotification": {"status": "SignatureVerified", "request_id": 8},
        "SignCertificate": {"csr": "-----BEGIN CERTIFICATE REQUEST-----"},
        "MeterValues": {"connector_id": 1, "transaction_id": 1, "meter_value": meter},
    }
    assert set(other_actions) | {"BootNotification", "StartTransaction", "StopTransaction"} == set(CP_INITIATED_ACTIONS)

    async def scenario(peer: CsmsPeer) -> list[int]:
        ids = []
        async with charge_point(peer.url) as cp:
            await boot(cp)
            for connector in (1, 2, 1):
                start = call.StartTransaction(connector_id=connector, id_tag="TAG", meter_start=100, timestamp=NOW)
                ids.append((await cp.call(start, suppress=False)).transaction_id)
                stop = call.StopTransaction(meter_stop=200, timestamp=NOW, transaction_id=ids[-1], id_tag="TAG")
                stopped = await cp.call(stop, suppress=False)
                assert stopped.id_tag_info["status"] == "Accepted"
            for action, fields in other_actions.items():
                assert await cp.call(cp_call(action, **fields), suppress=False) is not None, action
        return ids

    with csms_peer(kind, tmp_path) as peer:
        ids = asyncio.run(scenario(peer))
        assert ids == sorted(set(ids)), f"transaction ids must increase: {ids}"
        assert peer.invalid_inbound() == []
        answered = {f.action for f in peer.frames() if f.direction is Direction.SENT and f.message_type == CALLRESULT}
        assert answered == set(CP_INITIATED_ACTIONS)


def test_basic_auth_admits_the_right_key_and_refuses_the_rest_with_401(kind: str, tmp_path: Path) -> None:
    async def refused(peer: CsmsPeer, cp_id: str, key: str | None) -> int:
        with pytest.raises(InvalidStatus) as caught:
            async with charge_point(peer.url, cp_id, key=key):
                pass
        return caught.value.response.status_code

    async def scenario(peer: CsmsPeer) -> None:
        async with charge_point(peer.url, "CP1", key=KEY) as cp:
            assert (await boot(cp)).status == "Accepted"
        assert await refused(peer, "CP1", "wrong-key-wrong-key") == 401
        assert await refused(peer, "CP1", None) == 401
        assert await refused(peer, "CP2", KEY) == 401  # CP1's key does not open CP2

    with csms_peer(kind, tmp_path, PeerOptions(basic_auth={"CP1": KEY})) as peer:
        asyncio.run(scenario(peer))
        refusals = peer.events(EventKind.REFUSED)
        assert [(e.cp_id, e.fields["status"]) for e in refusals] == [("CP1", 401), ("CP1", 401), ("CP2", 401)]
        log_text = "".join(p.read_text() for p in tmp_path.glob("csms-*.jsonl"))
        assert "CP1" in log_text and KEY not in log_text


def test_tls_profile_2_serves_wss_with_basic_auth_and_a_verifiable_certificate(
    kind: str, tls: TlsFiles, tmp_path: Path
) -> None:
    options = PeerOptions(basic_auth={"CP1": KEY}, tls_cert=tls.server_cert, tls_key=tls.server_key)

    async def scenario(peer: CsmsPeer) -> None:
        assert peer.url.startswith("wss://")
        async with charge_point(peer.url, key=KEY, tls_context=client_context(tls.ca_cert)) as cp:
            assert (await boot(cp)).status == "Accepted"
        with pytest.raises(ssl.SSLCertVerificationError):  # a charge point that trusts another CA stops here
            async with charge_point(peer.url, key=KEY, tls_context=client_context(tls.rogue_ca_cert)):
                pass
        with pytest.raises(InvalidStatus):  # TLS alone is not enough in profile 2
            async with charge_point(peer.url, tls_context=client_context(tls.ca_cert)):
                pass

    with csms_peer(kind, tmp_path, options) as peer:
        asyncio.run(scenario(peer))


def test_mtls_profile_3_requires_a_client_certificate_of_the_cpo(kind: str, tls: TlsFiles, tmp_path: Path) -> None:
    options = PeerOptions(
        tls_cert=tls.server_cert,
        tls_key=tls.server_key,
        client_ca=tls.ca_cert,
        client_organization=tls.organization,
    )

    async def scenario(peer: CsmsPeer) -> None:
        good = client_context(tls.ca_cert, tls.client_cert, tls.client_key)
        async with charge_point(peer.url, tls_context=good) as cp:
            assert (await boot(cp)).status == "Accepted"
        for context in (
            client_context(tls.ca_cert),  # no client certificate
            client_context(tls.ca_cert, tls.rogue_client_cert, tls.rogue_client_key),  # issued by an unknown CA
        ):
            with pytest.raises((OSError, InvalidHandshake, EOFError)):
                async with charge_point(peer.url, tls_context=context):
                    pass
        other_org = client_context(tls.ca_cert, tls.other_org_client_cert, tls.other_org_client_key)
        with pytest.raises(InvalidStatus) as caught:
            async with charge_point(peer.url, tls_context=other_org):
                pass
        assert caught.value.response.status_code == 401

    with csms_peer(kind, tmp_path, options) as peer:
        asyncio.run(scenario(peer))
        assert len(peer.events(EventKind.OPEN)) == 1


def test_csms_initiated_calls_return_the_charge_points_answer(kind: str, tmp_path: Path) -> None:
    async def scenario(peer: CsmsPeer) -> None:
        async with charge_point(peer.url) as cp:
            await boot(cp)
            reset = await asyncio.to_thread(peer.call_action, "CP1", "Reset", {"type": "Soft"})
            config = await asyncio.to_thread(
                peer.call_action, "CP1", "GetConfiguration", {"key": ["MeterValueSampleInterval"]}
            )
            unhandled = await asyncio.to_thread(peer.call_action, "CP1", "ClearCache", {})
        assert (reset.ok, reset.payload) == (True, {"status": "Accepted"})
        assert config.payload["configurationKey"][0]["key"] == "MeterValueSampleInterval"
        assert (unhandled.ok, unhandled.error_code) == (False, "NotImplemented")  # the library's (inverted) code
        sent = peer.wait_for(frame_matcher("Reset", direction=Direction.SENT))
        answer = peer.wait_for(frame_matcher("Reset", direction=Direction.RECEIVED, message_type=CALLRESULT))
        assert sent.seq < answer.seq and sent.unique_id == answer.unique_id

    with csms_peer(kind, tmp_path) as peer:
        asyncio.run(scenario(peer))
        with pytest.raises(LookupError):
            peer.call_action("CP9", "Reset", {"type": "Hard"}, timeout=2.0)


def test_an_answer_outside_the_schema_is_reported_as_invalid(kind: str, tmp_path: Path) -> None:
    async def scenario(peer: CsmsPeer) -> None:
        async with charge_point(peer.url) as cp:
            await boot(cp)
            await asyncio.to_thread(peer.call_action, "CP1", "UnlockConnector", {"connectorId": 1})

    with csms_peer(kind, tmp_path) as peer:
        asyncio.run(scenario(peer))
        assert [e.fields["method"] for e in peer.invalid_inbound()] == ["UnlockConnector"]


def test_invalid_and_unparseable_frames_get_an_error_and_are_reported(kind: str, tmp_path: Path) -> None:
    bad_status = '[2,"bad-1","StatusNotification",{"connectorId":"one","errorCode":"NoError","status":"Available"}]'

    async def scenario(peer: CsmsPeer) -> None:
        async with charge_point(peer.url) as cp:
            await boot(cp)
            await cp._connection.send(bad_status)
            await cp._connection.send("this is not json")
            await asyncio.to_thread(
                peer.wait_for, frame_matcher(None, direction=Direction.SENT, message_type=CALLERROR)
            )
            await asyncio.to_thread(peer.wait_for_event, EventKind.INVALID, where=lambda e: not e.fields.get("method"))

    with csms_peer(kind, tmp_path) as peer:
        asyncio.run(scenario(peer))
        error = peer.wait_for(frame_matcher("StatusNotification", direction=Direction.SENT, message_type=CALLERROR))
        assert (error.unique_id, error.error_code) == ("bad-1", "TypeConstraintViolation")
        assert [e.fields.get("method") for e in peer.invalid_inbound()] == ["StatusNotification", None]


def test_a_charge_point_without_the_ocpp16_subprotocol_is_closed(kind: str, tmp_path: Path) -> None:
    async def scenario(peer: CsmsPeer) -> None:
        async with connect(f"{peer.url}/CP1", subprotocols=[Subprotocol("ocpp2.0.1")], open_timeout=10) as ws:
            assert ws.subprotocol is None  # the handshake completes without one (OCPP-J 1.6 §3.2) ...
            with pytest.raises(ConnectionClosed) as caught:
                await ws.recv()  # ... and the CSMS closes at once
        assert caught.value.rcvd is not None and caught.value.rcvd.code == 1002

    with csms_peer(kind, tmp_path) as peer:
        asyncio.run(scenario(peer))
        assert [e.fields["status"] for e in peer.events(EventKind.REFUSED)] == [101]
        assert peer.events(EventKind.OPEN) == []


def test_raw_frames_reach_the_charge_point_and_its_answer_is_matched(kind: str, tmp_path: Path) -> None:
    async def scenario(peer: CsmsPeer) -> None:
        async with charge_point(peer.url) as cp:
            await boot(cp)
            await asyncio.to_thread(peer.send_raw, "CP1", '[2,"raw-1","Reset",{"type":"Bogus"}]')
            answer = await asyncio.to_thread(
                peer.wait_for, frame_matcher("Reset", direction=Direction.RECEIVED, message_type=CALLERROR)
            )
        assert (answer.unique_id, answer.error_code) == ("raw-1", "FormatViolation")

    with csms_peer(kind, tmp_path) as peer:
        asyncio.run(scenario(peer))


def test_planned_call_errors_precede_normal_answers(kind: str, tmp_path: Path) -> None:
    async def scenario(peer: CsmsPeer) -> list[str]:
        outcomes = []
        async with charge_point(peer.url) as cp:
            await boot(cp)
            for _ in range(3):
                try:
                    await cp.call(call.StopTransaction(meter_stop=1, timestamp=NOW, transaction_id=5), suppress=False)
                    outcomes.append("answered")
                except InternalError:
                    outcomes.append("InternalError")
        return outcomes

    with csms_peer(kind, tmp_path) as peer:
        peer.fail_next("StopTransaction", times=2)
        assert asyncio.run(scenario(peer)) == ["InternalError", "InternalError", "answered"]


def test_the_log_is_in_wire_order_and_the_jsonl_file_replays_it(kind: str, tmp_path: Path) -> None:
    async def scenario(peer: CsmsPeer) -> None:
        async with charge_point(peer.url) as cp:
            await boot(cp)
            await cp.call(call.Heartbeat(), suppress=False)
            await asyncio.to_thread(peer.call_action, "CP1", "Reset", {"type": "Hard"})
            await cp.call(call.Authorize(id_tag="X"), suppress=False)

    with csms_peer(kind, tmp_path) as peer:
        asyncio.run(scenario(peer))
        peer.wait_for_event(EventKind.CLOSE)
        frames = peer.frames("CP1")
        kinds = [(f.action, f.direction.value, f.message_type) for f in frames]
        assert kinds == [
            ("BootNotification", "rx", 2),
            ("BootNotification", "tx", 3),
            ("Heartbeat", "rx", 2),
            ("Heartbeat", "tx", 3),
            ("Reset", "tx", 2),
            ("Reset", "rx", 3),
            ("Authorize", "rx", 2),
            ("Authorize", "tx", 3),
        ]
        assert [f.seq for f in frames] == sorted({f.seq for f in frames})
        assert all(a.at <= b.at for a, b in itertools.pairwise(frames))
        replayed = FrameLog()
        (log_file,) = tmp_path.glob("csms-*.jsonl")
        for line in log_file.read_text().splitlines():
            replayed.add_jsonl_line(line)
        assert [(f.text, f.direction, f.action) for f in replayed.frames("CP1")] == [
            (f.text, f.direction, f.action) for f in frames
        ]


# -- the simulator's own features ------------------------------------------------------------------------


def test_the_simulator_uses_the_ocpp_j_16_error_codes() -> None:
    frames = {
        "extra": '[2,"e1","Heartbeat",{"surprise":1}]',  # FormationViolation: the 1.6 errata spelling
        "unknown": '[2,"e2","Teleport",{}]',  # NotImplemented: the action is not known
        "wrong-role": '[2,"e3","Reset",{"type":"Soft"}]',  # NotSupported: known, but not for a CSMS
    }

    async def scenario() -> dict[str, str | None]:
        async with CsmsSimulator(port=free_port()) as sim, charge_point(sim.url) as cp:
            codes = {}
            for name, text in frames.items():
                after = sim.log.next_seq
                await cp._connection.send(text)
                error = await sim.log.wait_for(
                    frame_matcher(None, direction=Direction.SENT, message_type=CALLERROR), after=after
                )
                codes[name] = error.error_code
            return codes

    assert asyncio.run(scenario()) == {
        "extra": "FormationViolation",
        "unknown": "NotImplemented",
        "wrong-role": "NotSupported",
    }


@pytest.mark.parametrize("mode", list(OutageMode))
def test_an_outage_closes_connections_refuses_new_ones_and_ends(mode: OutageMode) -> None:
    async def scenario() -> None:
        async with CsmsSimulator(port=free_port()) as sim:
            async with charge_point(sim.url) as cp:
                await boot(cp)
                await sim.go_offline(mode=mode)
                await asyncio.wait_for(cp._connection.wait_closed(), 10)
                assert cp._connection.close_code == 1001
            if mode is OutageMode.CONNECTION_REFUSED:
                with pytest.raises(ConnectionRefusedError):
                    async with charge_point(sim.url):
                        pass
            else:
                with pytest.raises(InvalidStatus) as caught:
                    async with charge_point(sim.url):
                        pass
                assert caught.value.response.status_code == 503
            assert sim.connected() == [] and not sim.online
            await sim.go_online()
            async with charge_point(sim.url) as cp:
                assert (await boot(cp)).status == "Accepted"
                assert sim.connected() == ["CP1"]
            kinds = [e.kind for e in sim.log.events() if e.kind in (EventKind.OFFLINE, EventKind.ONLINE)]
            assert kinds == [EventKind.OFFLINE, EventKind.ONLINE]

    asyncio.run(scenario())


def test_an_outage_with_a_duration_comes_back_by_itself() -> None:
    async def scenario() -> None:
        async with CsmsSimulator(port=free_port()) as sim:
            await sim.go_offline(duration=0.2)
            await sim.log.wait_for_event(EventKind.ONLINE, timeout=10)
            async with charge_point(sim.url) as cp:
                assert (await boot(cp)).status == "Accepted"

    asyncio.run(scenario())


def test_a_planned_silence_makes_the_charge_point_time_out_once() -> None:
    async def scenario() -> None:
        async with CsmsSimulator(port=free_port()) as sim:
            sim.faults.add("Heartbeat", Fault(kind=FaultKind.NO_ANSWER))
            async with charge_point(sim.url, response_timeout=0.5) as cp:
                with pytest.raises(asyncio.TimeoutError):
                    await cp.call(call.Heartbeat(), suppress=False)
                assert (await cp.call(call.Heartbeat(), suppress=False)).current_time.endswith("Z")
            heartbeats = [f for f in sim.log.frames() if f.action == "Heartbeat"]
            assert [(f.direction, f.message_type) for f in heartbeats] == [
                (Direction.RECEIVED, 2),
                (Direction.RECEIVED, 2),
                (Direction.SENT, 3),
            ]

    asyncio.run(scenario())


def test_typed_calls_and_a_connection_dropped_while_waiting() -> None:
    async def never_answer(**_: Any) -> None:
        await asyncio.Event().wait()

    async def scenario() -> None:
        async with CsmsSimulator(port=free_port()) as sim:
            async with charge_point(sim.url) as cp:
                result = await sim.call("CP1", call.Reset(type="Soft"))
                assert isinstance(result, call_result.Reset) and result.status == "Accepted"
                cp.route_map["ChangeAvailability"] = {"_on_action": never_answer}
                change = {"connectorId": 0, "type": "Inoperative"}
                pending = asyncio.create_task(sim.call_action("CP1", "ChangeAvailability", change))
                await sim.log.wait_for(frame_matcher("ChangeAvailability", direction=Direction.SENT))
                await cp._connection.close()  # the charge point goes away with the CALL unanswered
                with pytest.raises(ConnectionError):
                    await pending
            with pytest.raises(NotConnected):
                await sim.call("CP1", call.Reset(type="Soft"))

    asyncio.run(scenario())


def test_the_command_line_serves_records_and_stops_on_sigterm(tmp_path: Path) -> None:
    record = tmp_path / "frames.jsonl"
    port = free_port()
    argv = [sys.executable, "-m", "charger.sim.csms", "--port", str(port), "--record", str(record)]
    argv += ["--basic-auth", f"CP1:{KEY}", "--boot-status", "Pending", "--boot-interval", "7"]
    with (tmp_path / "stderr").open("w") as stderr:
        process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=stderr, text=True)
    try:
        assert process.stdout is not None
        listening = json.loads(process.stdout.readline())
        assert listening == {"event": "listening", "url": f"ws://127.0.0.1:{port}"}

        async def scenario() -> None:
            async with charge_point(listening["url"], key=KEY) as cp:
                result = await boot(cp)
                assert (result.status, result.interval) == ("Pending", 7)

        asyncio.run(scenario())
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
        stdout = process.stdout.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()
    replayed = FrameLog()
    for line in record.read_text().splitlines():
        replayed.add_jsonl_line(line)
    assert [f.action for f in replayed.frames("CP1")] == ["BootNotification", "BootNotification"]
    assert KEY not in record.read_text() + stdout + (tmp_path / "stderr").read_text()


def test_bad_configuration_is_refused_up_front(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="boot_status"):
        CsmsBehaviour(boot_status="Maybe")
    with pytest.raises(ValueError, match="id_tags"):
        CsmsBehaviour(id_tags={"T": "Fine"})
    with pytest.raises(ValueError, match="tls_key"):
        CsmsSecurity(tls_cert=tmp_path / "cert.pem")
    with pytest.raises(ValueError, match="TLS"):
        CsmsSecurity(client_ca=tmp_path / "ca.pem")
    assert KEY not in repr(CsmsSecurity(basic_auth={"CP1": KEY}))


def test_unlisted_csms_peer_kind_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown CSMS peer"), csms_peer("everest", tmp_path):
        pass
    with sim_csms() as sim:
        assert sim.url.startswith("ws://127.0.0.1:")


_frame_text = st.one_of(
    st.text(max_size=60),
    st.builds(
        lambda t, uid, action, payload: json.dumps([t, uid, action, payload]),
        st.integers(0, 5),
        st.text(max_size=5),
        st.sampled_from(["Reset", "Heartbeat", ""]),
        st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
    ),
    st.builds(lambda t, uid: json.dumps([t, uid, {}]), st.sampled_from([3, 4]), st.sampled_from(["a", "b"])),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(list(Direction)), _frame_text), max_size=12))
def test_any_frame_text_is_logged_and_replays_identically(frames: list[tuple[Direction, str]]) -> None:
    log, replayed = FrameLog(), FrameLog()
    for direction, text in frames:
        log.add_frame("CP1", direction, text)
    for record in log.frames():
        replayed.add_jsonl_line(json.dumps(record.to_json()))
    assert replayed.frames() == log.frames()  # JSON keeps every field, the float time included
    for frame in log.frames():  # a result names the action of the CALL it answers, sent the other way
        if frame.action is not None and frame.message_type in (CALLRESULT, CALLERROR):
            calls = [c for c in log.frames()[: frame.seq] if c.unique_id == frame.unique_id and c.message_type == 2]
            assert calls and calls[-1].direction is not frame.direction and calls[-1].action == frame.action
