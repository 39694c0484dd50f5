"""What every Temporal client, worker and replayer of Steward must agree on: one plugin.

`StewardPlugin` bundles the data converter (and its payload codec, `codec.py`), the
workflow sandbox's pass-through modules and the exception types that fail a workflow, so
the API's client, every worker and the test `Replayer` cannot drift apart. A worker built
from a client that carries the plugin gets it from the client (temporalio applies a
client's worker plugins to its workers).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter, DefaultFailureConverterWithEncodedAttributes
from temporalio.plugin import SimplePlugin
from temporalio.worker import UnsandboxedWorkflowRunner, WorkflowRunner
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from activities.infra import tracing
from activities.infra.codec import AesGcmCodec, PayloadKey, payload_codec
from activities.infra.temporal_tracing import StewardTracingInterceptor
from schemas.settings import Settings

PLUGIN_NAME = "steward"

PASSTHROUGH_MODULES = (
    # Payload models are pydantic: one class identity inside and outside the sandbox, and
    # no re-import of pydantic-core for every workflow run.
    "pydantic",
    # Table classes are imported (never queried) by the activity modules workflows reference.
    "sqlalchemy",
    # Imported at module level by activity modules workflows reference; never called there.
    "httpx",
    # The tracing interceptor's workflow side keeps its context in OpenTelemetry's contextvars,
    # which must be the same module inside the sandbox as outside.
    "opentelemetry",
)

WORKFLOW_FAILURE_TYPES: Sequence[type[BaseException]] = ()
"""None beyond Temporal's own: a workflow fails only by `ApplicationError`. Any other
exception is a bug and fails the workflow *task*, which Temporal retries, so the
workflow resumes once a fixed build is deployed instead of ending on the bug."""


def data_converter(codec: AesGcmCodec | None = None) -> DataConverter:
    """Pydantic models as JSON, for every payload, passed through the codec.

    A codec without keys seals nothing but still names the missing key of an encrypted
    payload. With keys, failures carry their message and stack trace as an (encrypted)
    payload too: an error can quote what a user typed.
    """
    if codec is None:
        return pydantic_data_converter
    if not codec.encrypts:
        return dataclasses.replace(pydantic_data_converter, payload_codec=codec)
    return dataclasses.replace(
        pydantic_data_converter,
        payload_codec=codec,
        failure_converter_class=DefaultFailureConverterWithEncodedAttributes,
    )


def sandboxed_runner() -> SandboxedWorkflowRunner:
    return SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules(*PASSTHROUGH_MODULES)
    )


class StewardPlugin(SimplePlugin):
    """Converter, sandbox and failure types for clients, workers and replayers alike.

    With `tracing`, also the OpenTelemetry interceptor (one instance for the client and the
    workers built from it); without, none at all: tracing off costs nothing.
    """

    def __init__(
        self, payload_keys: Sequence[PayloadKey] = (), tracing: bool = False, sandboxed: bool = True
    ) -> None:
        """`payload_keys`: what `plugin(settings)` reads from `STEWARD_PAYLOAD_KEYS`
        (the first encrypts, all decrypt); none sends payloads in plain JSON. `sandboxed`: run
        workflows in Temporal's sandbox (`STEWARD_WORKFLOW_SANDBOX`; docs/decisions.md)."""
        self.codec = AesGcmCodec(payload_keys)
        runner: WorkflowRunner = sandboxed_runner() if sandboxed else UnsandboxedWorkflowRunner()
        super().__init__(
            PLUGIN_NAME,
            data_converter=data_converter(self.codec),
            workflow_runner=runner,
            workflow_failure_exception_types=list(WORKFLOW_FAILURE_TYPES),
            interceptors=[StewardTracingInterceptor()] if tracing else None,
        )


def plugin(settings: Settings) -> StewardPlugin:
    """The plugin with this process's payload keys (warning when there are none) and, when the
    settings turn tracing on, its interceptor (tracing is set up here)."""
    return StewardPlugin(
        payload_codec(settings).keys,
        tracing=tracing.setup(settings) is not None,
        sandboxed=settings.workflow_sandbox,
    )


def has_plugin(client: Client) -> bool:
    """Whether the client already carries Steward's plugin (and so passes it to its workers)."""
    return any(isinstance(plugin, StewardPlugin) for plugin in client.config()["plugins"])


async def connect(settings: Settings) -> Client:
    """A Temporal client with Steward's plugin (tracing as the settings say: set up here if on)."""
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        plugins=[plugin(settings)],
    )
