"""natlab.cloud.http_requests: the relay counts API requests however the bytes are split."""

from __future__ import annotations

import pytest

from natlab.cloud.http_requests import RequestFramer


def _post(body: str, extra: str = "") -> bytes:
    return (f"POST / HTTP/1.1\r\nHost: 127.0.0.1:4566\r\n{extra}Content-Length: {len(body)}\r\n\r\n{body}").encode()


STREAM = (
    _post("Action=DescribeNetworkInterfaces&Version=2016-11-15&Filter.1.Name=attachment.instance-id")
    + _post("Action=ReplaceRoute&Version=2016-11-15&RouteTableId=rtb-1")
    + b"GET /latest/meta-data/ HTTP/1.1\r\nHost: x\r\n\r\n"
    + _post("{}", "X-Amz-Target: AnyScale_20110101.CompleteLifecycleAction\r\n")
)
EXPECTED = ["DescribeNetworkInterfaces", "ReplaceRoute", "GET /latest/meta-data/", "CompleteLifecycleAction"]


@pytest.mark.parametrize("chunk", [1, 7, 64, len(STREAM)])
def test_each_request_is_counted_once_whatever_the_chunking(chunk: int) -> None:
    framer = RequestFramer()
    for start in range(0, len(STREAM), chunk):
        framer.feed(STREAM[start : start + chunk])
    assert [r.action for r in framer.requests] == EXPECTED


def test_a_request_whose_body_has_not_arrived_is_not_counted_yet() -> None:
    framer = RequestFramer()
    whole = _post("Action=ReplaceRoute")
    framer.feed(whole[:-3])
    assert framer.requests == []
    framer.feed(whole[-3:])
    assert [r.action for r in framer.requests] == ["ReplaceRoute"]


def test_a_stream_that_is_not_http_stops_the_count_instead_of_raising() -> None:
    framer = RequestFramer()
    framer.feed(b"POST / HTTP/1.1\r\nContent-Length: many\r\n\r\n")
    framer.feed(_post("Action=ReplaceRoute"))
    assert framer.broken and framer.requests == []
