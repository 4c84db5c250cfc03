"""lmroute on a Ray cluster: the server on Ray Serve, bulk scoring and labelling on Ray Data.

Ray comes with an extra: ``pip install 'lmroute[ray]'``.

``config`` (:class:`RayConfig`: the cluster's address, the replicas and autoscaling of each
deployment, Ray Serve's batching), ``serve`` (the ingress and scoring deployments, :func:`run_serve`),
``bulk`` (:func:`score_on_ray`), ``label`` (:func:`label_on_ray`) and ``connect`` (:func:`init_ray`,
which all three join the cluster with). Ray is imported only by ``serve``, ``bulk``, ``label`` and
``connect``, which are imported only when a command asks for Ray.
"""
