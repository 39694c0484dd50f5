"""A small pet-shop HTTP service with its own OpenAPI document, for the custom-action tests.

It runs in a daemon thread on 127.0.0.1 and speaks plain HTTP/1.1. It checks whichever
credential a test configured (an API key in a header or the query, a bearer token, basic
auth, or a token its own OAuth2 client-credentials endpoint issued), honours
`Idempotency-Key` on POST the way payment APIs do (a repeated key gets the first answer and
makes no second pet), and can hold a POST after its effect, to be killed around.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

API_KEY = "k-" + "1" * 20
BEARER = "t-" + "2" * 20
USER, PASSWORD = "steward", "p-" + "3" * 20
CLIENT_ID, CLIENT_SECRET = "client-1", "s-" + "4" * 20

SPEC_YAML = """
openapi: 3.1.0
info: {title: Pet shop, version: "1.0"}
servers: [{url: "http://127.0.0.1:{port}"}]
paths:
  /pets:
    get:
      operationId: listPets
      summary: List the pets in the shop.
      parameters:
        - {name: limit, in: query, schema: {type: integer, minimum: 1}}
        - $ref: "#/components/parameters/Species"
      responses: {"200": {description: the pets}}
    post:
      operationId: createPet
      summary: Add a pet to the shop.
      requestBody:
        required: true
        content:
          application/json:
            schema: {$ref: "#/components/schemas/NewPet"}
      responses: {"201": {description: the pet}}
  /pets/{petId}:
    parameters:
      - {name: petId, in: path, required: true, schema: {type: string}}
    get:
      operationId: getPet
      responses: {"200": {description: the pet}}
    delete:
      operationId: deletePet
      responses: {"204": {description: gone}}
  /big:
    get:
      operationId: bigPage
      responses: {"200": {description: a long page}}
  /elsewhere:
    get:
      operationId: elsewhere
      parameters:
        - {name: to, in: query, required: true, schema: {type: string}}
      responses: {"302": {description: a redirect}}
components:
  parameters:
    Species:
      name: species
      in: query
      schema: {$ref: "#/components/schemas/Species"}
  schemas:
    Species: {type: string, enum: [cat, dog]}
    NewPet:
      type: object
      required: [name]
      properties:
        name: {type: string, minLength: 1}
        species: {$ref: "#/components/schemas/Species"}
"""


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    query: dict[str, list[str]]
    body: Any
    credential: str | None
    """Which configured credential it carried (`api_key_header`, `api_key_query`, `bearer`,
    `basic`, `oauth2`), or None."""


@dataclass
class _State:
    accept: set[str] = field(default_factory=set)
    pets: list[dict[str, Any]] = field(default_factory=list)
    answers: dict[str, tuple[int, dict[str, Any]]] = field(default_factory=dict)
    keys: Counter[str] = field(default_factory=Counter)
    seen: list[Seen] = field(default_factory=list)
    issued: dict[str, int] = field(default_factory=dict)
    token_requests: int = 0
    token_lifetime: int = 3600
    hold_posts: threading.Event | None = None
    posts_arrived: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)


class ActionService:
    """The pet shop. `accept` names the credentials it takes (none: every request is let in)."""

    def __init__(self) -> None:
        self.state = _State()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._server.state = self.state  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def spec_yaml(self) -> str:
        return SPEC_YAML.replace("{port}", str(self._server.server_address[1]))

    def __enter__(self) -> ActionService:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.state.hold_posts is not None:
            self.state.hold_posts.set()
        self._server.shutdown()
        self._server.server_close()

    def effects(self) -> int:
        return len(self.state.pets)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        return

    @property
    def state(self) -> _State:
        return self.server.state  # type: ignore[attr-defined,no-any-return]

    def _credential(self, query: dict[str, list[str]]) -> str | None:
        auth = self.headers.get("Authorization", "")
        if self.headers.get("X-API-Key") == API_KEY:
            return "api_key_header"
        if query.get("api_key") == [API_KEY]:
            return "api_key_query"
        if auth == f"Bearer {BEARER}":
            return "bearer"
        if auth == "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode():
            return "basic"
        if auth.startswith("Bearer ") and auth[7:] in self.state.issued:
            return "oauth2"
        return None

    def _send(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = b"" if payload is None else json.dumps(payload).encode()
        self.send_response(status)
        if payload is not None:
            self.send_header("Content-Type", "application/json")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _handle(self, method: str) -> None:
        parts = urlsplit(self.path)
        query = parse_qs(parts.query)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if parts.path == "/openapi.yaml":
            text = SPEC_YAML.replace("{port}", str(self.server.server_port)).encode()  # type: ignore[attr-defined]
            self.send_response(200)
            self.send_header("Content-Type", "application/yaml")
            self.send_header("Content-Length", str(len(text)))
            self.end_headers()
            self.wfile.write(text)
            return
        if parts.path == "/token" and method == "POST":
            self._token(raw)
            return
        body: Any = json.loads(raw) if raw and "json" in (self.headers.get("Content-Type") or "") else None
        credential = self._credential(query)
        with self.state.lock:
            self.state.seen.append(
                Seen(
                    method,
                    parts.path,
                    {k.lower(): v for k, v in self.headers.items()},
                    query,
                    body,
                    credential,
                )
            )
        if self.state.accept and credential not in self.state.accept:
            self._send(401, {"error": "unauthorized"})
            return
        if parts.path == "/pets" and method == "GET":
            pets = [
                p for p in self.state.pets if p.get("species") in query.get("species", [p.get("species")])
            ]
            self._send(200, {"pets": pets[: int(query.get("limit", ["100"])[0])]})
        elif parts.path == "/pets" and method == "POST":
            self._create(body)
        elif parts.path.startswith("/pets/") and method == "GET":
            pet = next((p for p in self.state.pets if p["id"] == parts.path[6:]), None)
            self._send(200 if pet else 404, pet or {"error": "no such pet"})
        elif parts.path == "/big":
            self._send(200, {"rows": ["x" * 100] * 1000})
        elif parts.path == "/elsewhere":
            self._send(302, None, {"Location": query["to"][0]})
        else:
            self._send(404, {"error": "not found"})

    def _create(self, body: Any) -> None:
        key = self.headers.get("Idempotency-Key")
        with self.state.lock:
            if key is not None:
                self.state.keys[key] += 1
                if key in self.state.answers:
                    status, answer = self.state.answers[key]
                    self._send(status, answer)
                    return
            pet = {"id": f"pet-{len(self.state.pets) + 1}", **(body or {})}
            self.state.pets.append(pet)
            if key is not None:
                self.state.answers[key] = (201, pet)
        self.state.posts_arrived.set()
        if self.state.hold_posts is not None:
            self.state.hold_posts.wait(60)  # the effect is made; the answer is lost with the caller
        self._send(201, pet)

    def _token(self, raw: bytes) -> None:
        form = parse_qs(raw.decode())
        expected = "Basic " + base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
        if form.get("grant_type") != ["client_credentials"] or self.headers.get("Authorization") != expected:
            self._send(401, {"error": "invalid_client"})
            return
        with self.state.lock:
            self.state.token_requests += 1
            token = secrets.token_hex(8)
            self.state.issued[token] = self.state.token_requests
        self._send(
            200, {"access_token": token, "token_type": "bearer", "expires_in": self.state.token_lifetime}
        )

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def do_HEAD(self) -> None:
        self._handle("HEAD")
