"""Auth wired to the backend link: the CSMS's answer, not the allow list, decides a presented token."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.actors.test_backend_link_harness import FAST_KEYS, TOKEN_1, TOKEN_2, Station, eventually, station
from tests.support.csms import PeerOptions

STRANGER = "0499999999"  # not on Auth's allow list


@pytest.fixture(scope="module")
def st(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Station]:
    options = PeerOptions(id_tags={TOKEN_2: "Blocked"})
    with station(
        tmp_path_factory.mktemp("auth"), "sim", options=options, auth_asks_backend=True, configuration=FAST_KEYS
    ) as running:
        eventually(lambda: (link := running.link()).online and link.registration == "Accepted", "the link booted")
        yield running


def test_the_csms_blocks_a_token_on_the_allow_list(st: Station) -> None:
    verdict = st.api("rfid.present", token=TOKEN_2, connector=2)
    assert verdict["status"] == "Blocked" and "csms" in verdict["detail"], verdict
    assert st.calls("Authorize"), "the CSMS was never asked"


def test_the_csms_accepts_a_token_the_allow_list_does_not_know(st: Station) -> None:
    verdict = st.api("rfid.present", token=STRANGER, connector=1)
    assert verdict["status"] == "Accepted", verdict
    st.api("connector.plug", connector=1, script="iec_wait_pwr_ready;draw_power_regulated 16,3")
    charging = st.wait(1, lambda s: s["state"] == "Charging")
    assert charging["token_id"] == STRANGER


def test_a_token_on_the_allow_list_still_needs_the_csms(st: Station) -> None:
    assert st.api("rfid.present", token=TOKEN_1, connector=2)["status"] == "Accepted"
    assert any(TOKEN_1 in frame.text for frame in st.calls("Authorize"))
