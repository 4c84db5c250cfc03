"""The server's saves of the control state: in a worker thread, and never fatal."""

import asyncio

from lmroute.control.config import ControlConfig
from lmroute.control.hub import ControlHub
from lmroute.routing_names import parse_model_name
from lmroute.serving.control import StateSaver

SHARE = parse_model_name("router-length-share-0.3")


def test_a_state_json_cannot_hold_is_a_failed_save_not_a_crash_at_shutdown(tmp_path):
    # json.dumps's ValueError escaped the saver, which caught OSError only: lost in the worker
    # thread, then raised by the save at shutdown, which left the upstream clients unclosed.
    path = tmp_path / "control.json"
    hub = ControlHub(ControlConfig(state_file=str(path), save_every=1))
    hub.decide(SHARE, 0.4)
    hub.save()
    good = path.read_bytes()
    hub.decide(SHARE, float("nan"))  # a number JSON cannot hold, in the controller's window

    async def serve_and_stop() -> None:
        saver = StateSaver(hub)
        saver.save_if_due()  # in the worker thread
        await saver.final_save()

    asyncio.run(serve_and_stop())
    problem = hub.status()["state"]["problem"]
    assert problem.startswith(f"the last save failed: cannot write {path}: the state is not valid JSON")
    assert path.read_bytes() == good
