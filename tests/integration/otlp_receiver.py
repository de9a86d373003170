"""A small OTLP/HTTP trace receiver for the tests, and a validator of the OTLP/JSON encoding.

The validator checks a request body against the OTLP JSON mapping of
opentelemetry-proto (trace/v1/trace.proto, common/v1/common.proto, resource/v1/resource.proto,
as the OTLP specification's "JSON Protobuf Encoding" section describes it): lowerCamelCase field
names, no unknown fields (a protobuf JSON parser refuses them), trace and span ids as lower-case
hex of 16 / 8 bytes (not all zero), enums as integers, 64-bit integers (times in nanoseconds,
intValue) as decimal strings, AnyValue with exactly one of its members.
"""

from __future__ import annotations

import http.server
import json
import re
import struct
import threading
import time
from typing import Any

HEX32 = re.compile(r"^[0-9a-f]{32}$")
HEX16 = re.compile(r"^[0-9a-f]{16}$")
UINT64 = re.compile(r"^[0-9]{1,20}$")
INT64 = re.compile(r"^-?[0-9]{1,19}$")

SPAN_FIELDS = {"traceId", "spanId", "traceState", "parentSpanId", "flags", "name", "kind",
               "startTimeUnixNano", "endTimeUnixNano", "attributes", "droppedAttributesCount",
               "events", "droppedEventsCount", "links", "droppedLinksCount", "status"}
EVENT_FIELDS = {"timeUnixNano", "name", "attributes", "droppedAttributesCount"}
ANY_VALUE = {"stringValue", "boolValue", "intValue", "doubleValue", "arrayValue", "kvlistValue",
             "bytesValue"}


class Invalid(AssertionError):
    pass


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise Invalid(msg)


def _fields(obj: Any, allowed: set[str], where: str) -> None:
    _check(isinstance(obj, dict), f"{where}: expected an object, got {type(obj).__name__}")
    unknown = set(obj) - allowed
    _check(not unknown, f"{where}: unknown field(s) {sorted(unknown)}")


def _any_value(v: Any, where: str) -> None:
    _fields(v, ANY_VALUE, where)
    _check(len(v) == 1, f"{where}: AnyValue must hold exactly one member, got {sorted(v)}")
    k, x = next(iter(v.items()))
    if k == "stringValue":
        _check(isinstance(x, str), f"{where}: stringValue must be a string")
    elif k == "boolValue":
        _check(isinstance(x, bool), f"{where}: boolValue must be a bool")
    elif k == "intValue":
        _check(isinstance(x, str) and INT64.match(x) is not None or isinstance(x, int),
               f"{where}: intValue must be a decimal int64 (a string in JSON): {x!r}")
    elif k == "doubleValue":
        _check(isinstance(x, (int, float)) and not isinstance(x, bool), f"{where}: doubleValue")
    elif k == "arrayValue":
        _fields(x, {"values"}, where + ".arrayValue")
        for i, e in enumerate(x.get("values", [])):
            _any_value(e, f"{where}.arrayValue.values[{i}]")
    elif k == "kvlistValue":
        _fields(x, {"values"}, where + ".kvlistValue")
        _attributes(x.get("values", []), where + ".kvlistValue.values")


def _attributes(attrs: Any, where: str) -> None:
    _check(isinstance(attrs, list), f"{where}: attributes must be a list")
    seen = set()
    for i, kv in enumerate(attrs):
        _fields(kv, {"key", "value"}, f"{where}[{i}]")
        _check(isinstance(kv.get("key"), str) and kv["key"], f"{where}[{i}]: key")
        _check(kv["key"] not in seen, f"{where}: duplicate attribute key {kv['key']}")
        seen.add(kv["key"])
        _any_value(kv.get("value"), f"{where}[{i}].value")


def _time(v: Any, where: str) -> int:
    _check(isinstance(v, str) and UINT64.match(v) is not None,
           f"{where}: fixed64 nanoseconds must be a decimal string, got {v!r}")
    n = int(v)
    _check(n < 2 ** 64, f"{where}: out of range")
    # A sane wall clock (2020 .. 2100) in nanoseconds.
    _check(1_577_836_800 * 10 ** 9 < n < 4_102_444_800 * 10 ** 9, f"{where}: not Unix nanoseconds: {n}")
    return n


def validate_span(s: Any, where: str) -> None:
    _fields(s, SPAN_FIELDS, where)
    _check(isinstance(s.get("traceId"), str) and HEX32.match(s["traceId"]) is not None
           and s["traceId"] != "0" * 32, f"{where}: traceId must be 32 lower-case hex digits")
    _check(isinstance(s.get("spanId"), str) and HEX16.match(s["spanId"]) is not None
           and s["spanId"] != "0" * 16, f"{where}: spanId must be 16 lower-case hex digits")
    if "parentSpanId" in s:
        _check(isinstance(s["parentSpanId"], str) and HEX16.match(s["parentSpanId"]) is not None,
               f"{where}: parentSpanId must be 16 lower-case hex digits")
    if "traceState" in s:
        _check(isinstance(s["traceState"], str), f"{where}: traceState")
    _check(isinstance(s.get("name"), str) and s["name"], f"{where}: name must be a non-empty string")
    _check(isinstance(s.get("kind"), int) and 0 <= s["kind"] <= 5,
           f"{where}: kind must be the SpanKind enum as an integer, got {s.get('kind')!r}")
    start = _time(s.get("startTimeUnixNano"), where + ".startTimeUnixNano")
    end = _time(s.get("endTimeUnixNano"), where + ".endTimeUnixNano")
    _check(end >= start, f"{where}: ends before it starts")
    _attributes(s.get("attributes", []), where + ".attributes")
    for i, e in enumerate(s.get("events", [])):
        _fields(e, EVENT_FIELDS, f"{where}.events[{i}]")
        _time(e.get("timeUnixNano"), f"{where}.events[{i}].timeUnixNano")
        _check(isinstance(e.get("name"), str) and e["name"], f"{where}.events[{i}].name")
        _attributes(e.get("attributes", []), f"{where}.events[{i}].attributes")
    if "status" in s:
        _fields(s["status"], {"code", "message"}, where + ".status")
        code = s["status"].get("code", 0)
        _check(isinstance(code, int) and code in (0, 1, 2),
               f"{where}.status.code must be the StatusCode enum as an integer")
        if "message" in s["status"]:
            _check(isinstance(s["status"]["message"], str), f"{where}.status.message")


def validate_request(body: Any) -> list[dict]:
    """Validate an ExportTraceServiceRequest; return its spans, each with a "_resource" dict."""
    _fields(body, {"resourceSpans"}, "request")
    _check(isinstance(body.get("resourceSpans"), list) and body["resourceSpans"],
           "request: resourceSpans must be a non-empty list")
    out = []
    for i, rs in enumerate(body["resourceSpans"]):
        w = f"resourceSpans[{i}]"
        _fields(rs, {"resource", "scopeSpans", "schemaUrl"}, w)
        _fields(rs.get("resource", {}), {"attributes", "droppedAttributesCount"}, w + ".resource")
        _attributes(rs.get("resource", {}).get("attributes", []), w + ".resource.attributes")
        res = {kv["key"]: next(iter(kv["value"].values()))
               for kv in rs.get("resource", {}).get("attributes", [])}
        for j, ss in enumerate(rs.get("scopeSpans", [])):
            ws = f"{w}.scopeSpans[{j}]"
            _fields(ss, {"scope", "spans", "schemaUrl"}, ws)
            _fields(ss.get("scope", {}), {"name", "version", "attributes",
                                          "droppedAttributesCount"}, ws + ".scope")
            for k, sp in enumerate(ss.get("spans", [])):
                validate_span(sp, f"{ws}.spans[{k}]")
                out.append(dict(sp, _resource=res))
    return out


def attrs(span_or_event: dict) -> dict[str, Any]:
    """Attributes as a plain dict (intValue strings become ints)."""
    out = {}
    for kv in span_or_event.get("attributes", []):
        (k, v), = kv["value"].items()
        out[kv["key"]] = int(v) if k == "intValue" else v
    return out


# ---- protobuf (canonical binary encoding of the same messages) ----------------------------------

# message -> field number -> (JSON name, type, repeated); from opentelemetry-proto's
# collector/trace/v1/trace_service.proto, trace/v1/trace.proto, common/v1/common.proto and
# resource/v1/resource.proto.
PB = {
    "ExportTraceServiceRequest": {1: ("resourceSpans", "ResourceSpans", True)},
    "ResourceSpans": {1: ("resource", "Resource", False), 2: ("scopeSpans", "ScopeSpans", True),
                      3: ("schemaUrl", "string", False)},
    "Resource": {1: ("attributes", "KeyValue", True), 2: ("droppedAttributesCount", "uint32", False)},
    "ScopeSpans": {1: ("scope", "InstrumentationScope", False), 2: ("spans", "Span", True),
                   3: ("schemaUrl", "string", False)},
    "InstrumentationScope": {1: ("name", "string", False), 2: ("version", "string", False),
                             3: ("attributes", "KeyValue", True),
                             4: ("droppedAttributesCount", "uint32", False)},
    "Span": {1: ("traceId", "bytes", False), 2: ("spanId", "bytes", False),
             3: ("traceState", "string", False), 4: ("parentSpanId", "bytes", False),
             5: ("name", "string", False), 6: ("kind", "enum", False),
             7: ("startTimeUnixNano", "fixed64", False), 8: ("endTimeUnixNano", "fixed64", False),
             9: ("attributes", "KeyValue", True), 10: ("droppedAttributesCount", "uint32", False),
             11: ("events", "Event", True), 12: ("droppedEventsCount", "uint32", False),
             13: ("links", "Link", True), 14: ("droppedLinksCount", "uint32", False),
             15: ("status", "Status", False), 16: ("flags", "fixed32", False)},
    "Event": {1: ("timeUnixNano", "fixed64", False), 2: ("name", "string", False),
              3: ("attributes", "KeyValue", True), 4: ("droppedAttributesCount", "uint32", False)},
    "Link": {1: ("traceId", "bytes", False), 2: ("spanId", "bytes", False),
             3: ("traceState", "string", False), 4: ("attributes", "KeyValue", True),
             5: ("droppedAttributesCount", "uint32", False), 6: ("flags", "fixed32", False)},
    "Status": {2: ("message", "string", False), 3: ("code", "enum", False)},
    "KeyValue": {1: ("key", "string", False), 2: ("value", "AnyValue", False)},
    "AnyValue": {1: ("stringValue", "string", False), 2: ("boolValue", "bool", False),
                 3: ("intValue", "int64", False), 4: ("doubleValue", "double", False),
                 5: ("arrayValue", "ArrayValue", False), 6: ("kvlistValue", "KeyValueList", False),
                 7: ("bytesValue", "bytes", False)},
    "ArrayValue": {1: ("values", "AnyValue", True)},
    "KeyValueList": {1: ("values", "KeyValue", True)},
}
WIRE = {"enum": 0, "uint32": 0, "int64": 0, "bool": 0, "fixed64": 1, "double": 1, "string": 2,
        "bytes": 2, "fixed32": 5}


def _varint(b: bytes, i: int, where: str) -> tuple[int, int]:
    v = shift = 0
    start = i
    while True:
        _check(i < len(b), f"{where}: truncated varint")
        c = b[i]
        i += 1
        v |= (c & 0x7F) << shift
        shift += 7
        if not c & 0x80:
            break
        _check(shift < 70, f"{where}: varint too long")
    _check(i - start == 1 or b[i - 1] != 0, f"{where}: non-canonical varint (trailing zero byte)")
    return v, i


def pb_decode(b: bytes, msg: str = "ExportTraceServiceRequest", where: str = "request") -> dict:
    """Decode canonical protobuf into the OTLP/JSON mapping's dict (ids as hex, 64-bit integers
    as decimal strings); unknown fields, wrong wire types, a singular field twice, fields out of
    number order and non-minimal varints are errors."""
    fields, out, i, last = PB[msg], {}, 0, 0
    while i < len(b):
        key, i = _varint(b, i, where)
        num, wt = key >> 3, key & 7
        _check(num in fields, f"{where}: unknown field {num} in {msg}")
        name, typ, rep = fields[num]
        w = f"{where}.{name}"
        _check(num >= last, f"{w}: field {num} after field {last} (not in number order)")
        _check(rep or name not in out, f"{w}: singular field repeated")
        last = num
        want = WIRE.get(typ, 2)
        _check(wt == want, f"{w}: wire type {wt}, expected {want} for {typ}")
        if wt == 0:
            v, i = _varint(b, i, w)
            if typ == "int64":
                v = str(v - (1 << 64) if v >= 1 << 63 else v)
            elif typ == "bool":
                v = bool(v)
        elif wt == 1:
            _check(i + 8 <= len(b), f"{w}: truncated fixed64")
            raw = b[i:i + 8]
            i += 8
            v = str(int.from_bytes(raw, "little")) if typ == "fixed64" else struct.unpack("<d", raw)[0]
        elif wt == 5:
            _check(i + 4 <= len(b), f"{w}: truncated fixed32")
            v = int.from_bytes(b[i:i + 4], "little")
            i += 4
        else:
            n, i = _varint(b, i, w)
            _check(i + n <= len(b), f"{w}: length {n} past the end")
            raw = b[i:i + n]
            i += n
            if typ == "string":
                v = raw.decode("utf-8")
            elif typ == "bytes":
                v = raw.hex()
            else:
                v = pb_decode(raw, typ, w)
        if rep:
            out.setdefault(name, []).append(v)
        else:
            out[name] = v
    return out


class Receiver:
    """An OTLP/HTTP receiver on 127.0.0.1: every POST /v1/traces is validated and kept.

    ``statuses``: answers to give first (e.g. [503, 429]) before answering 200."""

    def __init__(self, statuses: list[int] | None = None, delay_s: float = 0.0):
        self.lock = threading.Lock()
        self.posts: list[dict] = []     # {"headers": {...}, "body": {...}, "status": n}
        self.errors: list[str] = []     # validation failures
        self.statuses = list(statuses or [])
        self.delay_s = delay_s
        recv = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):  # quiet
                pass

            def do_POST(self):
                n = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(n)
                with recv.lock:
                    status = recv.statuses.pop(0) if recv.statuses else 200
                if recv.delay_s:
                    time.sleep(recv.delay_s)
                entry = {"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()},
                         "status": status, "raw": raw}
                try:
                    ctype = self.headers.get("content-type", "")
                    if ctype.startswith("application/x-protobuf"):
                        entry["body"] = pb_decode(raw)
                        entry["protobuf"] = True
                    elif ctype.startswith("application/json"):
                        entry["body"] = json.loads(raw)
                    else:
                        raise Invalid(f"content-type {ctype!r}")
                    if self.path != "/v1/traces":
                        raise Invalid(f"posted to {self.path}, expected /v1/traces")
                    entry["spans"] = validate_request(entry["body"])
                except (ValueError, Invalid) as e:
                    with recv.lock:
                        recv.errors.append(str(e))
                    entry["spans"] = []
                with recv.lock:
                    recv.posts.append(entry)
                out = b"{}" if status == 200 else b'{"code":14,"message":"unavailable"}'
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                if status in (429, 503):
                    self.send_header("Retry-After", "0")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                try:
                    self.wfile.write(out)
                except OSError:
                    pass  # the exporter gave up (its timeout) or the proxy stopped

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> "Receiver":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def spans(self) -> list[dict]:
        with self.lock:
            return [s for p in self.posts if p["status"] == 200 for s in p["spans"]]

    def wait_spans(self, pred, timeout: float = 10.0) -> list[dict]:
        end = time.time() + timeout
        while time.time() < end:
            got = [s for s in self.spans() if pred(s)]
            if got:
                return got
            time.sleep(0.05)
        raise AssertionError(f"no matching span within {timeout}s; posts: {len(self.posts)}, "
                             f"errors: {self.errors}")
