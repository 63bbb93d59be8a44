"""Fuzz what the xDS server does with a request's bytes before any stream logic: the
gRPC deserializer (malformed bytes become a Malformed marker, never an exception), the
node taken from the request, and selector matching on its metadata.

Run: .venv/bin/python fuzz/fuzz_discovery_request.py [libFuzzer flags]
"""

import sys

import atheris
import grpc  # noqa: F401  (dependencies first: only our code is instrumented)
import structlog  # noqa: F401

with atheris.instrument_imports():
    from envoy.service.discovery.v3 import discovery_pb2

    from xds_server.nodes import NodeInfo, NodeSelector
    from xds_server.xds._server import _parser
    from xds_server.xds._stream import Malformed

SOTW = _parser(discovery_pb2.DiscoveryRequest)
DELTA = _parser(discovery_pb2.DeltaDiscoveryRequest)
SELECTORS = [
    NodeSelector(node_id="edge-*", cluster="prod-*"),
    NodeSelector(metadata={"role": "edge", "a.b.c": "x"}),
]


def test_one_input(data: bytes) -> None:
    for parse, names_field in ((SOTW, "resource_names"), (DELTA, "resource_names_subscribe")):
        request = parse(data)
        if isinstance(request, Malformed):
            continue
        info = NodeInfo.from_proto(request.node)
        for selector in SELECTORS:
            selector.matches(info)
        list(getattr(request, names_field))


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
