"""Validating a desired-state tree into the typed view (the records of `mlsync.input.model`).

The declarations (`model_fields`, `Annotated` metadata, the classes' validators; see
`mlsync.input.declare`) are read into small Python checks on first use, and the frozen instances
are assembled directly. mlsync validated with pydantic until importing it and building its
validators cost ≈ 0.15 s of every `validate`, `plan` and `apply` (docs/performance.md §4).

It knows what the model uses and refuses anything else when it compiles (a new kind of field fails
the tests, never a user): str, int, strict bool, Literal, Any, list, dict[str, X], Optional, unions
tagged by a callable discriminator, nested records; Strict, MinLen, Gt, Ge; BeforeValidator,
PlainValidator; `before` field validators and `after` model validators. Errors have pydantic's
shape (type, loc, input, ctx), so `diagnostics` words them unchanged; `tests/config/test_validator.py`
holds the errors pydantic reported for the same trees.
"""

from __future__ import annotations

import inspect
import math
import types
import typing
from typing import Any, Callable

from mlsync.input.declare import (BeforeValidator, Discriminator, FieldInfo, Ge, Gt, MinLen, PlainValidator, Record,
                                  Strict, Tag, WithJsonSchema, annotated)

__all__ = ["validate"]

#: What a check returns for a value it refused (it appended the reason to `errors`).
BAD = object()

Check = Callable[[Any, tuple, list], Any]
_UNION_TYPES = (typing.Union, types.UnionType)
_IGNORED = (WithJsonSchema, Tag)   # for the JSON Schema and the union only


def validate(cls: type[Record], tree: Any) -> tuple[Any, list[dict]]:
    """(instance, []) for a valid tree, else (None, errors in pydantic's `errors()` shape)."""
    errors: list[dict] = []
    value = _model_check(cls)(tree, (), errors)
    return (None, errors) if value is BAD else (value, [])


# --- errors --------------------------------------------------------------------------------------

def _error(errors: list, kind: str, loc: tuple, value: Any, msg: str, ctx: dict | None = None) -> Any:
    err = {"type": kind, "loc": loc, "msg": msg, "input": value}
    if ctx is not None:
        err["ctx"] = ctx
    errors.append(err)
    return BAD


def _call(func: Callable, value: Any, loc: tuple, errors: list) -> Any:
    """A validator function's result; its ValueError / AssertionError as pydantic reports them."""
    try:
        return func(value)
    except (ValueError, AssertionError) as exc:
        return _raised(exc, value, loc, errors)


def _raised(exc: Exception, value: Any, loc: tuple, errors: list) -> Any:
    if isinstance(exc, AssertionError):
        return _error(errors, "assertion_error", loc, value, f"Assertion failed, {exc}", {"error": exc})
    return _error(errors, "value_error", loc, value, f"Value error, {exc}", {"error": exc})


# --- compiling a type --------------------------------------------------------------------------

def _compile(tp: Any, metadata: list) -> Check:
    """A check for values of `tp` carrying `metadata` (Annotated items, outermost last)."""
    tp, metadata = annotated(tp, metadata)
    befores: list[Callable] = []
    plain = discriminator = None
    constraints: dict[str, Any] = {}
    for item in metadata:
        if isinstance(item, BeforeValidator):
            befores.insert(0, item.func)   # a later one wraps the earlier: it runs first
        elif isinstance(item, PlainValidator):
            plain, befores = item.func, []   # replaces what it wraps, the earlier befores included
        elif isinstance(item, Discriminator):
            discriminator = item.discriminator
        elif isinstance(item, Strict):
            constraints["strict"] = item.strict
        elif isinstance(item, MinLen):
            constraints["min_length"] = item.min_length
        elif isinstance(item, Gt):
            constraints["gt"] = item.gt
        elif isinstance(item, Ge):
            constraints["ge"] = item.ge
        elif not isinstance(item, _IGNORED):
            raise NotImplementedError(f"mlsync.input.validator: metadata {item!r} on {tp!r}")
    if plain is not None:
        inner: Check = lambda value, loc, errors, f=plain: _call(f, value, loc, errors)   # noqa: E731
    elif discriminator is not None:
        inner = _tagged_union(tp, discriminator)
    else:
        inner = _type_check(tp, constraints)
    for func in reversed(befores):
        inner = _before(func, inner)
    return inner


def _before(func: Callable, inner: Check) -> Check:
    def check(value: Any, loc: tuple, errors: list) -> Any:
        try:
            result = func(value)
        except (ValueError, AssertionError) as exc:
            return _raised(exc, value, loc, errors)
        return inner(result, loc, errors)
    return check


def _tagged_union(tp: Any, discriminator: Callable) -> Check:
    if typing.get_origin(tp) not in _UNION_TYPES or not callable(discriminator):
        raise NotImplementedError(f"mlsync.input.validator: discriminator on {tp!r}")
    choices: dict[str, Check] = {}
    for member in typing.get_args(tp):
        args = typing.get_args(member)
        tags = [m.tag for m in args[1:] if isinstance(m, Tag)]
        if typing.get_origin(member) is not typing.Annotated or len(tags) != 1:
            raise NotImplementedError(f"mlsync.input.validator: untagged union member {member!r}")
        choices[tags[0]] = _compile(member, [])

    def check(value: Any, loc: tuple, errors: list) -> Any:
        tag = discriminator(value)
        if tag not in choices:
            return _error(errors, "union_tag_invalid", loc, value, f"Input tag {tag!r} does not match any tag",
                          {"discriminator": repr(discriminator), "tag": str(tag),
                           "expected_tags": ", ".join(map(repr, choices))})
        return choices[tag](value, loc + (tag,), errors)
    return check


def _type_check(tp: Any, constraints: dict) -> Check:
    origin = typing.get_origin(tp)
    if origin in _UNION_TYPES:
        members = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(members) != 1 or constraints.keys() - {"min_length"}:
            raise NotImplementedError(f"mlsync.input.validator: union {tp!r}")
        inner = _compile(members[0], [MinLen(constraints["min_length"])]
                         if "min_length" in constraints else [])
        def optional(value: Any, loc: tuple, errors: list) -> Any:
            return None if value is None else inner(value, loc, errors)
        optional.non_null = inner   # type: ignore[attr-defined]  (a class's check calls it directly)
        return optional
    if origin is list:
        return _list_check(_compile(typing.get_args(tp)[0], []), constraints.get("min_length"))
    if origin is dict:
        key_type, value_type = typing.get_args(tp)
        if key_type is not str:
            raise NotImplementedError(f"mlsync.input.validator: dict keys of {tp!r}")
        return _dict_check(_compile(value_type, []), constraints.get("min_length"))
    if origin is typing.Literal:
        return _literal_check(typing.get_args(tp))
    if tp is Any:
        return lambda value, loc, errors: value
    if tp is str:
        return _str_check(constraints.get("min_length"))
    if tp is int:
        return _int_check(constraints.get("gt"), constraints.get("ge"))
    if tp is bool and constraints.get("strict"):
        return lambda value, loc, errors: value if type(value) is bool else _error(
            errors, "bool_type", loc, value, "Input should be a valid boolean")
    if isinstance(tp, type) and issubclass(tp, Record):
        if tp in _COMPILING:   # a class that contains itself: look its check up when called
            return lambda value, loc, errors: _MODEL_CHECKS[tp](value, loc, errors)
        return _model_check(tp)
    raise NotImplementedError(f"mlsync.input.validator: type {tp!r} with {constraints}")


def _str_check(min_length: int | None) -> Check:
    def check(value: Any, loc: tuple, errors: list) -> Any:
        if not isinstance(value, str):
            return _error(errors, "string_type", loc, value, "Input should be a valid string")
        if min_length is not None and len(value) < min_length:
            return _error(errors, "string_too_short", loc, value,
                          f"String should have at least {min_length} character", {"min_length": min_length})
        return value
    return check


_I64 = float(2 ** 63)


def _int_check(gt: Any, ge: Any) -> Check:
    # Every int field first passes `model._integer` (an int, or a float; never a bool or a string),
    # so only pydantic's lax int-from-float rules are left to follow.
    def check(value: Any, loc: tuple, errors: list) -> Any:
        if isinstance(value, float):
            if not math.isfinite(value):
                return _error(errors, "finite_number", loc, value, "Input should be a finite number")
            if value != int(value):
                return _error(errors, "int_from_float", loc, value,
                              "Input should be a valid integer, got a number with a fractional part")
            if not -_I64 <= value <= _I64:   # pydantic-core takes whole floats within a 64-bit integer only
                return _error(errors, "int_parsing_size", loc, value,
                              "Unable to parse input string as an integer, exceeding maximum size")
            value = int(value)
        elif not isinstance(value, int) or isinstance(value, bool):
            return _error(errors, "int_type", loc, value, "Input should be a valid integer")
        if gt is not None and not value > gt:
            return _error(errors, "greater_than", loc, value, f"Input should be greater than {gt}", {"gt": gt})
        if ge is not None and not value >= ge:
            return _error(errors, "greater_than_equal", loc, value,
                          f"Input should be greater than or equal to {ge}", {"ge": ge})
        return value
    return check


def _literal_check(expected: tuple) -> Check:
    shown = " or ".join(map(repr, expected)) if len(expected) <= 2 else \
        ", ".join(map(repr, expected[:-1])) + f" or {expected[-1]!r}"

    def check(value: Any, loc: tuple, errors: list) -> Any:
        for allowed in expected:
            if value == allowed and isinstance(value, bool) == isinstance(allowed, bool):
                return allowed
        return _error(errors, "literal_error", loc, value, f"Input should be {shown}", {"expected": shown})
    return check


def _too_short(errors: list, loc: tuple, value: Any, field_type: str, min_length: int) -> Any:
    item = "item" if min_length == 1 else "items"
    return _error(errors, "too_short", loc, value,
                  f"{field_type} should have at least {min_length} {item} after validation, not {len(value)}",
                  {"field_type": field_type, "min_length": min_length, "actual_length": len(value)})


def _list_check(item: Check, min_length: int | None) -> Check:
    def check(value: Any, loc: tuple, errors: list) -> Any:
        if not isinstance(value, list):
            return _error(errors, "list_type", loc, value, "Input should be a valid list")
        out = [item(v, loc + (i,), errors) for i, v in enumerate(value)]
        if any(v is BAD for v in out):
            return BAD
        if min_length is not None and len(out) < min_length:
            return _too_short(errors, loc, value, "List", min_length)
        return out
    return check


def _dict_check(item: Check, min_length: int | None) -> Check:
    def check(value: Any, loc: tuple, errors: list) -> Any:
        if not isinstance(value, dict):
            return _error(errors, "dict_type", loc, value, "Input should be a valid dictionary")
        out = {}
        for key, v in value.items():
            if not isinstance(key, str):
                return _error(errors, "string_type", loc + (key, "[key]"), key, "Input should be a valid string")
            out[key] = item(v, loc + (key,), errors)
        if any(v is BAD for v in out.values()):
            return BAD
        if min_length is not None and len(out) < min_length:
            return _too_short(errors, loc, value, "Dictionary", min_length)
        return out
    return check


# --- classes -----------------------------------------------------------------------------------

_MODEL_CHECKS: dict[type, Check] = {}
_COMPILING: set[type] = set()


def _model_check(cls: type[Record]) -> Check:
    check = _MODEL_CHECKS.get(cls)
    if check is None:
        _COMPILING.add(cls)
        try:
            check = _MODEL_CHECKS[cls] = _compile_model(cls)
        finally:
            _COMPILING.discard(cls)
    return check


def _default(info: FieldInfo) -> Callable[[], Any]:
    factory = info.default_factory
    if factory is None:
        default = info.default
        return lambda: default   # frozen classes and immutable values: sharing one is safe
    return factory


def _no_info(func: Callable, what: str) -> Callable:
    """`func` (a validator of the class) called with the value only; refuse the `info` form."""
    if len(inspect.signature(func).parameters) != 1:
        raise NotImplementedError(f"mlsync.input.validator: {what} {func!r} takes a ValidationInfo")
    return func


def _compile_model(cls: type[Record]) -> Check:
    field_befores: dict[str, list[Callable]] = {}
    for dec in cls.__field_validators__:
        if dec.mode != "before":
            raise NotImplementedError(f"mlsync.input.validator: {dec.mode} field validator {dec.func!r}")
        for field in dec.fields:
            field_befores.setdefault(field, []).append(_no_info(dec.func, "field validator"))
    afters = []
    for dec in cls.__model_validators__:
        if dec.mode != "after":
            raise NotImplementedError(f"mlsync.input.validator: {dec.mode} model validator {dec.func!r}")
        afters.append(_no_info(dec.func, "model validator"))

    fields = []   # (attribute name, key in the file, check, default or None when required)
    for name, info in cls.model_fields.items():
        check = _compile(info.annotation, list(info.metadata))
        for func in field_befores.pop(name, []):
            check = _before(func, check)
        fields.append((name, info.alias or name, check, None if info.is_required() else _default(info)))
    if field_befores:
        raise NotImplementedError(f"mlsync.input.validator: validators of unknown fields {sorted(field_befores)}")
    # key -> (attribute, check of a non-null value, whether null is allowed): one call less per value
    by_key = {key: (name, getattr(check, "non_null", check), hasattr(check, "non_null"))
              for name, key, check, _ in fields}
    required = frozenset(key for _, key, _, default in fields if default is None)
    # Every field in declaration order (pydantic's order for __dict__); a made default is filled in
    # when the file does not give its field.
    template = {name: (None if default is None else default()) for name, _, _, default in fields}
    made = [(name, key, default) for name, key, _, default in fields   # a factory's: one per instance
            if default is not None and cls.model_fields[name].default_factory is not None]
    new, set_attr = cls.__new__, object.__setattr__

    def ordered(value: dict, loc: tuple, errors: list) -> None:
        """The errors of an invalid mapping in pydantic's order: fields as declared, then unknown keys."""
        for name, key, field_check, default in fields:
            if key in value:
                field_check(value[key], loc + (key,), errors)
            elif default is None:
                _error(errors, "missing", loc + (key,), value, "Field required")
        for key in value:
            if key not in by_key:
                _error(errors, "extra_forbidden", loc + (key,), value[key], "Extra inputs are not permitted")

    def check(value: Any, loc: tuple, errors: list) -> Any:
        if isinstance(value, cls):
            return value
        if not isinstance(value, dict):
            return _error(errors, "model_type", loc, value,
                          f"Input should be a valid dictionary or instance of {cls.__name__}",
                          {"class_name": cls.__name__})
        # Fast path in the file's order, over the keys it gives; any problem and the mapping is
        # checked again in declaration order, for pydantic's error order.
        mark = len(errors)
        data = template.copy()
        given = set()
        ok = required.issubset(value.keys())
        for key, v in value.items():
            spec = by_key.get(key)
            if spec is None:
                ok = False
                break
            name, field_check, nullable = spec
            if v is not None or not nullable:
                v = field_check(v, loc + (key,), errors)
                if v is BAD:
                    ok = False
                    break
            data[name] = v
            given.add(name)
        if not ok:
            del errors[mark:]
            ordered(value, loc, errors)
            return BAD
        for name, key, default in made:
            if key not in value:
                data[name] = default()
        obj = new(cls)
        set_attr(obj, "__dict__", data)
        set_attr(obj, "__fields_set__", given)
        for after in afters:
            obj = after(obj)
        return obj
    return check

