"""The CrawlerService gRPC servicer: translates messages to the crawler's domain and back."""

from __future__ import annotations

import logging

from quaero.v1 import crawler_service_pb2, crawler_service_pb2_grpc
from services.crawler.actions import ACTIONS

log = logging.getLogger(__name__)


class CrawlerServicer(crawler_service_pb2_grpc.CrawlerServiceServicer):
    async def ListActions(self, request, context):  # type: ignore[no-untyped-def]
        return crawler_service_pb2.ListActionsResponse(
            actions=[crawler_service_pb2.Action(name=a.name, description=a.description) for a in ACTIONS]
        )
