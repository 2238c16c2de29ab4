"""Graph-shaped errors raised by every layer of the simulator."""

from __future__ import annotations


class GraphError(Exception):
    """An error that becomes Graph's `{"error": {"code", "message", "innerError"}}` body."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


def bad_request(message: str) -> GraphError:
    return GraphError(400, "Request_BadRequest", message)


def unsupported_query(message: str) -> GraphError:
    return GraphError(400, "Request_UnsupportedQuery", message)


def not_found(object_id: str) -> GraphError:
    return GraphError(
        404,
        "Request_ResourceNotFound",
        f"Resource '{object_id}' does not exist or one of its queried reference-property "
        "objects are not present.",
    )


# Graph's documented message for an advanced-query-only construct sent without AQ
# (docs/graph-facts.md, queries 3; documented for endsWith, reused for the other AQ-only operators).
def needs_advanced_query(operator: str) -> GraphError:
    return unsupported_query(
        f"Operator '{operator}' is not supported because the required parameters might be "
        "missing. Try adding $count=true query parameter and ConsistencyLevel:eventual header. "
        "Refer to https://aka.ms/graph-docs/advanced-queries for more information"
    )
