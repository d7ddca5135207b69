"""`/clustersim/admin/...`: fault rules and watch-history compaction (same port and token)."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from clustersim.apiserver.errors import ApiError, bad_request, path_not_found
from clustersim.apiserver.faults import FaultInjector, parse_rule
from clustersim.apiserver.http_api import error_response, json_response
from clustersim.apiserver.storage import Storage

PREFIX = "/clustersim/admin"


class AdminApi:
    def __init__(
        self, faults: FaultInjector, storage: Storage, requests_by_agent: Mapping[str, int]
    ) -> None:
        self.faults = faults
        self.storage = storage
        self.requests_by_agent = requests_by_agent

    async def handle(self, request: web.Request) -> web.Response:
        try:
            return await self._route(request)
        except ApiError as error:
            return error_response(error)

    async def _route(self, request: web.Request) -> web.Response:
        rest = request.path[len(PREFIX):].strip("/").split("/")
        method = request.method
        if rest == ["faults"]:
            if method == "GET":
                return json_response({"faults": self.faults.describe()})
            if method == "POST":
                rule = self.faults.add(parse_rule(await self._json(request), time.monotonic()))
                return json_response(rule.describe(time.monotonic()), 201)
            if method == "DELETE":
                return json_response({"removed": self.faults.clear()})
        elif len(rest) == 2 and rest[0] == "faults" and method == "DELETE":
            if not self.faults.remove(rest[1]):
                raise ApiError(404, "NotFound", f'fault "{rest[1]}" not found')
            return json_response({"removed": 1})
        elif rest == ["compact"] and method == "POST":
            return json_response({"compactedThrough": str(self.storage.compact())})
        elif rest == ["state"] and method == "GET":
            return json_response({
                "resourceVersion": str(self.storage.resource_version),
                "objects": {f"{g}/{r}" if g else r: self.storage.count((g, r))
                            for g, r in self.storage.storage_keys()},
                "watches": sum(1 for _ in self.storage.watchers()),
                "requestsByAgent": dict(self.requests_by_agent),
            })
        raise path_not_found(request.path)

    @staticmethod
    async def _json(request: web.Request) -> Any:
        try:
            return json.loads(await request.read() or b"{}")
        except ValueError as error:
            raise bad_request(f"the body is not JSON: {error}") from error
