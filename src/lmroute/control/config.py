"""Settings of online control: target modes, drift detection, conversations, the state file.

They are the ``control:`` section of a serving config (``lmroute serve --config``), the
Controller's and ``lmroute replay``'s::

    control:
      calibration_prompts: my_traffic.jsonl  # seeds controllers and the drift reference (else the
                                             # first requests do)
      state_file: /var/lib/lmroute/control.json   # survives restarts; none: in memory only
      save_every: 100                        # decisions between saves (and one at shutdown)
      window: 200                            # requests in each controller's window
      gain: 0.05                             # feedback per strong call over target
      per_api_key: false                     # one controller per API key and target
      max_controllers: 1000                  # controllers held at most; a new target past it: a 400
      drift: {enabled: true, span: 200, reference_size: 300, false_alarm: 1.0e-6}
      conversations: {enabled: false, margin: 0.02, capacity: 100000, ttl: 3600}
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from lmroute.control import controller, conversations, drift


class DriftConfig(BaseModel):
    """Drift detection (:mod:`lmroute.control.drift`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    #: Requests in the exponentially weighted live window.
    span: int = Field(default=drift.DEFAULT_SPAN, ge=10, le=100_000)
    #: Requests collected as the new reference after an alarm (or at start without calibration prompts).
    reference_size: int = Field(default=drift.DEFAULT_REFERENCE_SIZE, ge=20, le=100_000)
    #: Probability that one check of an unchanged traffic passes the alarm level.
    false_alarm: float = Field(default=drift.DEFAULT_FALSE_ALARM, gt=0, lt=0.5)


class ConversationConfig(BaseModel):
    """Conversations that stay on their model (:mod:`lmroute.control.conversations`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = False
    #: Score units past the threshold a new turn needs to move its conversation to the other model.
    margin: float = Field(default=conversations.DEFAULT_MARGIN, ge=0, le=1)
    #: Conversations remembered at most (the least recently seen are forgotten first).
    capacity: int = Field(default=conversations.DEFAULT_CAPACITY, ge=1)
    #: Seconds after which an idle conversation is forgotten.
    ttl: float = Field(default=conversations.DEFAULT_TTL, gt=0, allow_inf_nan=False)


class ControlConfig(BaseModel):
    """Online control of target modes (``router-mf-share-0.3``, ``router-mf-spend-2.5``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Prompts (JSONL with a 'prompt' field, CSV with a 'prompt' column, or one per line) that seed
    #: every controller's window and the drift reference; without them the first requests do.
    calibration_prompts: str | None = None
    #: JSON file the controllers and drift detectors are saved to and restored from.
    state_file: str | None = None
    #: Decisions between two saves of the state file (it is also saved at shutdown).
    save_every: int = Field(default=100, ge=1)
    window: int = Field(default=controller.DEFAULT_WINDOW, ge=10, le=100_000)
    gain: float = Field(default=controller.DEFAULT_GAIN, ge=0, le=1)
    #: One controller per API key (and target) instead of one per target.
    per_api_key: bool = False
    #: Controllers held at most (restored ones count): a request for a new target past it is refused
    #: (a 400), as every distinct target value would otherwise hold memory, a place in the state file
    #: and in the metrics for good.
    max_controllers: int = Field(default=1000, ge=1)
    drift: DriftConfig = Field(default_factory=DriftConfig)
    conversations: ConversationConfig = Field(default_factory=ConversationConfig)
