"""A Terraform provider that serves one real provider version's schema and nothing else.

`terraform validate` needs each provider's schema, which Terraform asks the provider binary
for over the plugin protocol (go-plugin, gRPC, `tfplugin6`).  The google provider's binary
cannot be downloaded here, so `tests/infra/terraform.py` installs this program in a
filesystem mirror as `terraform-provider-<name>_v<version>`, with the schema that
`provider_schema.wire_schema` read from the prebuilt CDK package of that exact version.
Terraform then does the real work: argument names, required arguments, block structure,
types of literals and attribute references, all checked by Terraform's own code.

Only what validation calls is served; every other call (plan, apply, read) fails loudly.

    python stub_provider.py SCHEMA.json
"""

from __future__ import annotations

import json
import os
import sys
import threading
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
from tfplugin_proto import tfplugin6_5_pb2 as tf
from tfplugin_proto import tfplugin6_5_pb2_grpc as tf_grpc

# go-plugin's handshake (hashicorp/terraform internal/plugin6/serve.go): Terraform sets this
# cookie; a provider started by anything else says so and exits.
COOKIE_KEY = "TF_PLUGIN_MAGIC_COOKIE"
COOKIE_VALUE = "d602bf8f470bc67ca7faa0386276bbdd4330efaf76d1a219cb4d6991ca9872b2"
CORE_PROTOCOL = 1
PROVIDER_PROTOCOL = 6
LIST = tf.Schema.NestedBlock.NestingMode.Value("LIST")


def block_message(block: dict[str, Any]) -> tf.Schema.Block:
    return tf.Schema.Block(
        attributes=[tf.Schema.Attribute(
            name=a["name"], type=json.dumps(a["type"]).encode(), required=a["required"],
            optional=a["optional"], computed=a["computed"]) for a in block["attributes"]],
        block_types=[tf.Schema.NestedBlock(
            type_name=b["name"], block=block_message(b["block"]), nesting=LIST,
            min_items=b["min_items"], max_items=b["max_items"]) for b in block["blocks"]])


def schema_response(schema: dict[str, Any]) -> tf.GetProviderSchema.Response:
    return tf.GetProviderSchema.Response(
        provider=tf.Schema(block=block_message(schema["provider"])),
        resource_schemas={name: tf.Schema(block=block_message(b))
                          for name, b in schema["resources"].items()},
        data_source_schemas={name: tf.Schema(block=block_message(b))
                             for name, b in schema["data"].items()})


class SchemaOnlyProvider(tf_grpc.ProviderServicer):
    """Answers the schema and validation calls; the config itself is Terraform's to check."""

    def __init__(self, schema: dict[str, Any]) -> None:
        self.schema = schema
        self.response = schema_response(schema)

    def GetMetadata(self, request: Any, context: Any) -> tf.GetMetadata.Response:
        return tf.GetMetadata.Response(
            resources=[tf.GetMetadata.ResourceMetadata(type_name=n)
                       for n in self.schema["resources"]],
            data_sources=[tf.GetMetadata.DataSourceMetadata(type_name=n)
                          for n in self.schema["data"]])

    def GetProviderSchema(self, request: Any, context: Any) -> tf.GetProviderSchema.Response:
        return self.response

    def ValidateProviderConfig(self, request: Any, context: Any) -> Any:
        return tf.ValidateProviderConfig.Response()

    def ValidateResourceConfig(self, request: Any, context: Any) -> Any:
        return tf.ValidateResourceConfig.Response()

    def ValidateDataResourceConfig(self, request: Any, context: Any) -> Any:
        return tf.ValidateDataResourceConfig.Response()

    def StopProvider(self, request: Any, context: Any) -> Any:
        return tf.StopProvider.Response()


def _raw(behaviour: Any) -> grpc.RpcMethodHandler:
    """A unary handler on raw bytes: go-plugin's own services need no generated code."""
    return grpc.unary_unary_rpc_method_handler(behaviour)


def serve(schema_path: Path) -> None:
    if os.environ.get(COOKIE_KEY) != COOKIE_VALUE:
        sys.stderr.write("This binary is a plugin. It is not meant to be executed directly.\n")
        raise SystemExit(1)
    schema = json.loads(schema_path.read_text())
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4),
                         options=[("grpc.max_send_message_length", 256 << 20)])
    # The generated gRPC module carries no type hints.
    tf_grpc.add_ProviderServicer_to_server(  # type: ignore[no-untyped-call]
        SchemaOnlyProvider(schema), server)
    stopped = threading.Event()

    def shutdown(request: bytes, context: Any) -> bytes:
        stopped.set()
        return b""  # google.protobuf.Empty

    server.add_generic_rpc_handlers([
        # grpc.health.v1: status SERVING (field 1 = 1) for go-plugin's service "plugin".
        grpc.method_handlers_generic_handler(
            "grpc.health.v1.Health", {"Check": _raw(lambda request, context: b"\x08\x01")}),
        grpc.method_handlers_generic_handler("plugin.GRPCController",
                                             {"Shutdown": _raw(shutdown)}),
    ])
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    # No TLS: the caller sets TF_DISABLE_PLUGIN_TLS (loopback only, a test process).
    sys.stdout.write(f"{CORE_PROTOCOL}|{PROVIDER_PROTOCOL}|tcp|127.0.0.1:{port}|grpc\n")
    sys.stdout.flush()
    stopped.wait()
    server.stop(grace=1)


if __name__ == "__main__":
    serve(Path(sys.argv[1]))
