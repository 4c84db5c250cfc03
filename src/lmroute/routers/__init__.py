"""Routers: the contract in :mod:`lmroute.routers.base`, one module per router."""

from lmroute.routers.base import Router, RouterConfig

__all__ = ["Router", "RouterConfig"]
