"""The real providers' schemas, offline, and a check of infra/ against them.

The google provider's binary cannot be downloaded here, but PyPI's prebuilt CDK provider
packages (`cdktf-cdktf-provider-google`, `cdktn-provider-google`, `cdktn-provider-time`) are
generated from one exact provider version's schema: every resource is a Python module whose
`<Resource>Config` struct names each argument and nested block (`name_mapping`, with the
struct of each block in its type hints) and whose resource class has a property per
attribute.  This module reads those sources with `ast` (nothing is imported or executed)
and checks every resource and data type, argument, nested block and attribute reference in
`infra/*.tf` against them.
"""

from __future__ import annotations

import ast
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PINS = ROOT / "infra" / "provider-schemas.txt"
WHEELS = ROOT / "build" / "provider-schemas"

# Meta-arguments Terraform itself handles (the CDK structs list them too).
META = frozenset({"count", "for_each", "depends_on", "lifecycle", "provider", "provisioner",
                  "connection", "provisioners"})
_REPRESENTS = re.compile(
    r"Represents a \{@link https://registry\.terraform\.io/providers/hashicorp/(?P<provider>[\w-]+)/"
    r"(?P<version>[\w.]+)/docs/(?P<kind>resources|data-sources)/\w+ (?P<type>\w+)\}")


@dataclass
class Block:
    """Arguments (None) and nested blocks (their own `Block`) by name."""

    fields: dict[str, Block | None] = field(default_factory=dict)


@dataclass
class Type:
    arguments: Block
    attributes: set[str]


@dataclass
class Schema:
    provider: str
    version: str
    resources: dict[str, Type] = field(default_factory=dict)
    data: dict[str, Type] = field(default_factory=dict)


@dataclass(frozen=True)
class Pin:
    package: str
    version: str
    provider: str
    provider_version: str

    @property
    def wheel(self) -> Path:
        stem = self.package.replace("-", "_")
        return WHEELS / f"{stem}-{self.version}-py3-none-any.whl"


def pins() -> list[Pin]:
    """`infra/provider-schemas.txt`: package==version provider provider-version."""
    found = []
    for line in PINS.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            spec, provider, provider_version = line.split()
            package, version = spec.split("==")
            found.append(Pin(package, version, provider, provider_version))
    return found


def _decorator_mapping(node: ast.ClassDef) -> list[str] | None:
    for decorator in node.decorator_list:
        if isinstance(decorator, ast.Call) and ast.unparse(decorator.func) == "jsii.data_type":
            for keyword in decorator.keywords:
                if keyword.arg == "name_mapping" and isinstance(keyword.value, ast.Dict):
                    return [k.value for k in keyword.value.keys
                            if isinstance(k, ast.Constant) and isinstance(k.value, str)]
    return None


def _annotations(node: ast.ClassDef) -> dict[str, str]:
    for item in node.body:
        if isinstance(item, ast.FunctionDef) and item.name == "__init__":
            return {a.arg: ast.unparse(a.annotation) for a in item.args.kwonlyargs
                    if a.annotation is not None}
    return {}


def _module_types(source: str) -> Iterator[tuple[str, str, str, str, Type]]:
    """(provider, version, kind, terraform type, schema) of the resource a module holds."""
    tree = ast.parse(source)
    classes = {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}
    structs = {name: mapping for name, node in classes.items()
               if (mapping := _decorator_mapping(node)) is not None}
    built: dict[str, Block] = {}

    def block(name: str) -> Block:
        if name in built:
            return built[name]
        result = built[name] = Block()
        hints = _annotations(classes[name])
        for arg in structs[name]:
            nested = None
            for other in re.findall(r"\b([A-Z]\w+)\b", hints.get(arg, "")):
                if other in structs and other != name:
                    nested = block(other)
                    break
            result.fields[arg] = nested
        return result

    for name, node in classes.items():
        match = _REPRESENTS.search(ast.get_docstring(node) or "")
        if match is None or f"{name}Config" not in structs:
            continue
        config = block(f"{name}Config")
        arguments = Block({k: v for k, v in config.fields.items() if k not in META})
        attributes = {item.name for item in node.body if isinstance(item, ast.FunctionDef)
                      and any(ast.unparse(d) == "builtins.property" for d in item.decorator_list)}
        yield (match["provider"], match["version"], match["kind"], match["type"],
               Type(arguments, attributes | set(arguments.fields)))


def _module_for(terraform_type: str, provider: str, data: bool) -> str:
    short = terraform_type.removeprefix(f"{provider}_")
    return f"data_{provider}_{short}" if data else short


def load_schema(pin: Pin, resource_types: set[str], data_types: set[str]) -> Schema:
    """The schema of the types infra/ uses (reading all 1,000+ modules would take minutes)."""
    if not pin.wheel.exists():
        raise FileNotFoundError(f"{pin.wheel} is missing: run `make provider-schemas`")
    schema = Schema(pin.provider, pin.provider_version)
    with zipfile.ZipFile(pin.wheel) as wheel:
        names = set(wheel.namelist())
        package = pin.package.replace("-", "_")
        wanted = {(t, False) for t in resource_types} | {(t, True) for t in data_types}
        for terraform_type, data in sorted(wanted):
            if not terraform_type.startswith(f"{pin.provider}_"):
                continue
            path = f"{package}/{_module_for(terraform_type, pin.provider, data)}/__init__.py"
            if path not in names:
                continue  # reported by `check` as an unknown type
            source = wheel.read(path).decode("utf-8")
            for provider, version, kind, found_type, found in _module_types(source):
                assert provider == pin.provider, (path, provider)
                assert version == pin.provider_version, (path, version, pin)
                (schema.data if kind == "data-sources" else schema.resources)[found_type] = found
    return schema


def used_types(modules: list[dict[str, Any]]) -> tuple[set[str], set[str]]:
    resources: set[str] = set()
    data: set[str] = set()
    for module in modules:
        for kind, target in (("resource", resources), ("data", data)):
            for entry in module.get(kind, []):
                target |= set(entry)
    return resources, data


def _check_body(body: dict[str, Any], block: Block, where: str, top: bool) -> Iterator[str]:
    for key, value in body.items():
        if top and key in META:
            continue
        if key == "dynamic":  # dynamic "name" { for_each = ...; content { ... } }
            for entry in value if isinstance(value, list) else [value]:
                for label, spec in entry.items():
                    nested = block.fields.get(label)
                    if nested is None:
                        yield f"{where}: no block named {label!r} (dynamic)"
                        continue
                    for content in spec.get("content", []):
                        yield from _check_body(content, nested, f"{where}.{label}", False)
            continue
        if key not in block.fields:
            yield f"{where}: no argument or block named {key!r}"
            continue
        nested = block.fields[key]
        if nested is not None:
            for i, item in enumerate(value if isinstance(value, list) else [value]):
                if isinstance(item, dict):
                    yield from _check_body(item, nested, f"{where}.{key}[{i}]", False)


_REFERENCE = re.compile(r"(?<![\w.])(data\.)?([a-z][a-z0-9]*_[a-z0-9_]+)\.([a-z0-9_-]+)\.([a-z0-9_]+)")


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def check(modules: list[dict[str, Any]], schema: Schema) -> list[str]:
    """Every problem of the modules against one provider's schema (other providers' types
    are left to their own schema)."""
    problems: list[str] = []
    prefix = f"{schema.provider}_"
    for module in modules:
        for kind, types in (("resource", schema.resources), ("data", schema.data)):
            for entry in module.get(kind, []):
                for type_name, named in entry.items():
                    if not type_name.startswith(prefix):
                        continue
                    for name, body in named.items():
                        where = f"{kind} {type_name}.{name}"
                        if type_name not in types:
                            problems.append(f"{where}: no such {kind} in {schema.provider} "
                                            f"{schema.version}")
                            continue
                        problems += _check_body(body, types[type_name].arguments, where, True)
        for text in _strings(module):
            for data, type_name, _name, attribute in _REFERENCE.findall(text):
                if not type_name.startswith(prefix) or type_name in {"google_project_number"}:
                    continue
                types = schema.data if data else schema.resources
                if type_name in types and attribute not in types[type_name].attributes:
                    problems.append(f"{'data.' if data else ''}{type_name}.{_name}.{attribute}: "
                                    f"no attribute {attribute!r} in {schema.provider} "
                                    f"{schema.version}")
    return sorted(set(problems))


# --- Typed schemas, for the stub provider that `terraform validate` talks to ---------------
#
# The same sources carry each argument's type and whether it is optional (the struct's
# `__init__` type hints), and the computed attributes (properties of the resource class and
# of each block's `OutputReference` that are not arguments).  What the CDK cannot say is
# written down here as the lenient choice: blocks are lists (a block of at most one item is
# `max_items = 1`), and a type the hints do not spell out is `dynamic`.

_SCALARS = {"builtins.str": "string", "jsii.Number": "number", "builtins.bool": "bool"}
_OPTIONAL = re.compile(r"^typing\.Optional\[(.*)\]$")


def _cty_type(hint: str) -> Any:
    """The cty type (its JSON form) of a CDK type hint; `dynamic` when it is not plain."""
    hint = re.sub(r"['\"]?_cdkt[fn]_\w+\.IResolvable['\"]?", "IResolvable", hint)
    if match := re.fullmatch(r"typing\.Union\[(.*), IResolvable\]", hint):
        hint = match[1]
    if hint in _SCALARS:
        return _SCALARS[hint]
    if match := re.fullmatch(r"typing\.(?:Sequence|List)\[(builtins\.str|jsii\.Number)\]", hint):
        return ["list", _SCALARS[match[1]]]
    if match := re.fullmatch(r"typing\.Mapping\[builtins\.str, (builtins\.str|jsii\.Number|"
                             r"builtins\.bool)\]", hint):
        return ["map", _SCALARS[match[1]]]
    if re.fullmatch(r"['\"]?_cdkt[fn]_\w+\.StringMap['\"]?", hint):
        return ["map", "string"]
    return "dynamic"


def _properties(node: ast.ClassDef | None) -> dict[str, str]:
    """Property name -> return hint of a class (the getters the CDK writes per attribute)."""
    if node is None:
        return {}
    found = {}
    for item in node.body:
        if (isinstance(item, ast.FunctionDef) and item.returns is not None
                and any(ast.unparse(d) == "builtins.property" for d in item.decorator_list)):
            # The CDK renames an attribute that collides with its own members (`build` is
            # `build_attribute`); Terraform knows it by the first name.
            found[item.name.removesuffix("_attribute")] = ast.unparse(item.returns).strip("'\"")
    return {k: v for k, v in found.items() if not k.endswith("_input") and k != "internal_value"}


def _wire_blocks(source: str) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(kind, terraform type, block) of the resource, data source or provider a module holds;
    kind is `resource`, `data` or `provider`; the block is the JSON the stub serves."""
    tree = ast.parse(source)
    classes = {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}
    structs = {name: mapping for name, node in classes.items()
               if (mapping := _decorator_mapping(node)) is not None}

    def block(name: str, computed: dict[str, str], skip: frozenset[str]) -> dict[str, Any]:
        hints = _annotations(classes[name])
        attributes, blocks = [], []
        for arg in structs[name]:
            if arg in skip:
                continue
            hint = hints.get(arg, "")
            optional = bool(_OPTIONAL.match(hint))
            inner = _OPTIONAL.sub(r"\1", hint)
            nested = next((other for other in re.findall(r"\b([A-Z]\w+)\b", inner)
                           if other in structs and other != name), None)
            if nested is not None:
                many = "Sequence[" in inner
                blocks.append({
                    "name": arg, "min_items": 0 if optional else 1,
                    "max_items": 0 if many else 1,
                    "block": block(nested, _properties(classes.get(f"{nested}OutputReference")),
                                   frozenset())})
            else:
                attributes.append({"name": arg, "type": _cty_type(inner),
                                   "required": not optional, "optional": optional,
                                   "computed": optional})
        taken = {a["name"] for a in attributes} | {b["name"] for b in blocks}
        for prop, hint in computed.items():
            if prop not in taken and not re.search(r"OutputReference$", hint):
                attributes.append({"name": prop, "type": _cty_type(hint), "required": False,
                                   "optional": False, "computed": True})
        return {"attributes": attributes, "blocks": blocks}

    for name, node in classes.items():
        match = _REPRESENTS.search(ast.get_docstring(node) or "")
        if match is not None and f"{name}Config" in structs:
            kind = "data" if match["kind"] == "data-sources" else "resource"
            yield kind, match["type"], block(f"{name}Config", _properties(node), META)
        elif name.endswith("ProviderConfig") and name in structs:
            yield "provider", name.removesuffix("ProviderConfig").lower(), block(
                name, {}, frozenset({"alias"}))


def wire_schema(pin: Pin, resource_types: set[str], data_types: set[str]) -> dict[str, Any]:
    """The provider's configuration block and the blocks of the types asked for, as JSON the
    stub provider (`tests/infra/stub_provider.py`) serves over the plugin protocol."""
    if not pin.wheel.exists():
        raise FileNotFoundError(f"{pin.wheel} is missing: run `make provider-schemas`")
    schema: dict[str, Any] = {"provider": None, "resources": {}, "data": {}}
    package = pin.package.replace("-", "_")
    with zipfile.ZipFile(pin.wheel) as wheel:
        names = set(wheel.namelist())
        paths = [f"{package}/provider/__init__.py"]
        for terraform_type, data in sorted({(t, False) for t in resource_types}
                                           | {(t, True) for t in data_types}):
            if terraform_type.startswith(f"{pin.provider}_"):
                paths.append(
                    f"{package}/{_module_for(terraform_type, pin.provider, data)}/__init__.py")
        for path in paths:
            if path not in names:
                continue  # an unknown type: the stub does not serve it, validate reports it
            for kind, terraform_type, found in _wire_blocks(wheel.read(path).decode("utf-8")):
                if kind == "provider":
                    schema["provider"] = found
                else:
                    schema["resources" if kind == "resource" else "data"][terraform_type] = found
    if schema["provider"] is None:
        raise ValueError(f"{pin.wheel.name}: no provider configuration struct")
    return schema
