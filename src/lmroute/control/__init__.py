"""Online control: hold a target on live traffic, watch it for drift, keep conversations put.

Library code without HTTP, used alike by the server, the Controller and ``lmroute replay``:

* :mod:`~lmroute.control.knobs` and :mod:`~lmroute.control.controller`: a knob (a threshold, a λ)
  moved by an online controller to hold a strong-call share or a spend rate;
* :mod:`~lmroute.control.drift`: live scores and embedding summaries against a reference;
* :mod:`~lmroute.control.taps`: the embedding summaries, taken from the router's own embedder;
* :mod:`~lmroute.control.conversations`: conversations that stay on their model;
* :mod:`~lmroute.control.state`: the state file, written atomically, quarantined when bad;
* :mod:`~lmroute.control.hub`: :class:`~lmroute.control.hub.ControlHub`, the one decision path;
* :mod:`~lmroute.control.config`: the ``control:`` settings.
"""
