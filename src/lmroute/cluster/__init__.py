"""lmroute on a Ray cluster: the server on Ray Serve, bulk scoring on Ray Data.

Ray comes with an extra: ``pip install 'lmroute[ray]'``.

``config`` (:class:`RayConfig`: the cluster's address, the replicas and autoscaling of each
deployment, Ray Serve's batching), ``serve`` (the ingress and scoring deployments, :func:`run_serve`)
and ``bulk`` (:func:`score_on_ray`). Ray is imported only by ``serve`` and ``bulk``, which are
imported only when a command asks for Ray.
"""
