"""JSON Schema (2020-12, as OpenAPI 3.1 and AsyncAPI 3.0 take it) from the type hints the code uses.

The admin API's bodies and the delivery frames are `TypedDict`s that the handlers and senders build
and read; the published documents are generated from them here, so a field added to the code and
not to the documents cannot happen. Constraints the type cannot say ride along as a dict in
`Annotated[...]` (`Annotated[int, {"minimum": 1}]`), and a `TypedDict`'s docstring is its description.
A named `TypedDict` becomes a `$ref` into `defs`, so each model is written once. Keep `Annotated`
outermost (`Annotated[int | None, {...}]`, not `Annotated[int, {...}] | None`): a union hashes its
members, and the dict is not hashable.
"""

from __future__ import annotations

import types
from typing import Annotated, Any, Literal, NotRequired, Required, Union, get_args, get_origin, get_type_hints

JsonSchema = dict[str, Any]

_SCALARS: dict[object, JsonSchema] = {
    str: {"type": "string"},
    int: {"type": "integer"},
    float: {"type": "number"},
    bool: {"type": "boolean"},
    type(None): {"type": "null"},
    Any: {},
    object: {},
}


class UnsupportedType(TypeError):
    """A hint the generator cannot describe: give the field a supported type."""


def is_model(hint: object) -> bool:
    """A `TypedDict` class."""
    return isinstance(hint, type) and issubclass(hint, dict) and hasattr(hint, "__required_keys__")


def model_fields(model: type) -> dict[str, object]:
    """A `TypedDict`'s fields with their hints, `Annotated` metadata kept."""
    return get_type_hints(model, include_extras=True)


def required_keys(model: type) -> list[str]:
    """The keys a model requires, in order. Read from the hints, not `__required_keys__`, which Python
    3.11 gets wrong for `NotRequired` under `from __future__ import annotations`."""
    total = getattr(model, "__total__", True)
    return [
        name for name, hint in model_fields(model).items()
        if get_origin(hint) is Required or (total and get_origin(hint) is not NotRequired)
    ]


def schema_of(hint: object, defs: dict[str, JsonSchema], ref_prefix: str) -> JsonSchema:
    """The schema of `hint`; named models are added to `defs` and referred to as `{ref_prefix}{name}`."""
    if is_model(hint):
        name = hint.__name__  # type: ignore[union-attr]
        if name not in defs:
            defs[name] = {}  # claimed first: a model may refer to itself
            defs[name] = _object(hint, defs, ref_prefix)  # type: ignore[arg-type]
        return {"$ref": ref_prefix + name}
    origin, args = get_origin(hint), get_args(hint)
    if origin is Annotated:
        return {**schema_of(args[0], defs, ref_prefix), **_extra(hint)}
    if origin in (Required, NotRequired):
        return schema_of(args[0], defs, ref_prefix)
    if origin is Literal:
        return {"const": args[0]} if len(args) == 1 else {"enum": list(args)}
    if origin in (Union, types.UnionType):
        options = [schema_of(arg, defs, ref_prefix) for arg in args]
        if all(set(option) == {"type"} and isinstance(option["type"], str) for option in options):
            return {"type": [option["type"] for option in options]}
        return {"anyOf": options}
    if origin in (list, tuple) and (origin is list or (len(args) == 2 and args[1] is Ellipsis)):
        return {"type": "array", "items": schema_of(args[0], defs, ref_prefix)}
    if origin is dict:
        return {"type": "object", "additionalProperties": schema_of(args[1], defs, ref_prefix)}
    if hint in (list, dict):
        return {"type": "array"} if hint is list else {"type": "object"}
    if hint in _SCALARS:
        return dict(_SCALARS[hint])
    raise UnsupportedType(f"no JSON Schema for {hint!r}")


def _object(model: type, defs: dict[str, JsonSchema], ref_prefix: str) -> JsonSchema:
    fields = model_fields(model)
    schema: JsonSchema = {
        "type": "object",
        "properties": {name: schema_of(hint, defs, ref_prefix) for name, hint in fields.items()},
        "additionalProperties": False,
    }
    required = required_keys(model)
    if required:
        schema["required"] = required
    if model.__doc__ and not model.__doc__.startswith(model.__name__ + "("):  # not the generated signature
        schema["description"] = " ".join(model.__doc__.split())
    return schema


def _extra(hint: object) -> JsonSchema:
    """The constraints written beside a type: every dict in its `Annotated` metadata."""
    merged: JsonSchema = {}
    for item in getattr(hint, "__metadata__", ()):
        if isinstance(item, dict):
            merged.update(item)
    return merged


def literal_values(hint: object) -> tuple[Any, ...]:
    """The values of a `Literal` (through `Annotated`/`NotRequired`), for the code's own checks."""
    while get_origin(hint) in (Annotated, Required, NotRequired):
        hint = get_args(hint)[0]
    if get_origin(hint) is not Literal:
        raise UnsupportedType(f"{hint!r} is not a Literal")
    return get_args(hint)
