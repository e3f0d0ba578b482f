"""Declaring the typed view of a desired-state file: closed, frozen records with described fields.

The classes of `mlsync.input.model` are written as pydantic classes would be (`Annotated` types,
`Field(...)` with a description, `BeforeValidator`, `WithJsonSchema`, ...), but on this small module:
importing pydantic and creating its classes cost ≈ 0.15 s of every `validate`, `plan` and `apply`
(docs/performance.md §4), and mlsync used only this part of it. What reads the declarations:
`mlsync.input.validator` (validation into instances), `mlsync.input.schema` (the JSON Schema) and
`mlsync.input.diagnostics` (which keys a mapping takes).

Every record is closed (unknown keys are errors) and frozen (its fields cannot be assigned; private
attributes, names starting with `_`, can). The names that mirror pydantic's (`model_fields`,
`model_fields_set`, `model_validate`, `model_copy`, `model_dump`) keep their meaning.
"""

from __future__ import annotations

import inspect
import typing
from dataclasses import dataclass
from typing import Any, Callable, Optional

from mlsync.core.secrets import Secret

__all__ = [
    "Record", "Field", "FieldInfo", "PrivateAttr", "BeforeValidator", "PlainValidator",
    "WithJsonSchema", "Tag", "Discriminator", "Strict", "MinLen", "Gt", "Ge", "field_validator",
    "model_validator", "RecordError", "REQUIRED", "annotated",
]


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


#: The default of a field the file must give.
REQUIRED: Any = _Required()


# --- Annotated metadata --------------------------------------------------------------------------

# Frozen, and compared and hashed by identity: typing hashes Annotated metadata (a dict would not hash).
_marker = dataclass(frozen=True, eq=False)


@_marker
class BeforeValidator:
    """Runs on the raw value before the type's check; raises ValueError to refuse it."""
    func: Callable[[Any], Any]


@_marker
class PlainValidator:
    """Replaces the type's check: its result is the value."""
    func: Callable[[Any], Any]


@_marker
class WithJsonSchema:
    """The JSON Schema of the type, written by hand (it must accept exactly what the checks accept)."""
    json_schema: dict


@_marker
class Tag:
    """The tag of one member of a union chosen by a `Discriminator`."""
    tag: str


@_marker
class Discriminator:
    """A function of the raw value that names the union member (its `Tag`) to check it with."""
    discriminator: Callable[[Any], str]


@_marker
class Strict:
    """No conversion: a bool must be a bool."""
    strict: bool = True


@_marker
class MinLen:
    min_length: int


@_marker
class Gt:
    gt: Any


@_marker
class Ge:
    ge: Any


# --- fields ------------------------------------------------------------------------------------

class FieldInfo:
    """One field: its type (`annotation`, set by the record), default, key in the file, constraints."""

    __slots__ = ("annotation", "default", "default_factory", "alias", "description", "metadata")

    def __init__(self, default: Any = REQUIRED, *, default_factory: Optional[Callable[[], Any]] = None,
                 alias: Optional[str] = None, description: Optional[str] = None, metadata: tuple = ()) -> None:
        self.annotation: Any = None
        self.default, self.default_factory = default, default_factory
        self.alias, self.description = alias, description
        self.metadata = list(metadata)

    def is_required(self) -> bool:
        return self.default is REQUIRED and self.default_factory is None

    def __repr__(self) -> str:
        return f"FieldInfo(annotation={self.annotation!r}, required={self.is_required()}, alias={self.alias!r})"


def Field(default: Any = REQUIRED, *, default_factory: Optional[Callable[[], Any]] = None,  # noqa: N802
          alias: Optional[str] = None, description: Optional[str] = None, strict: Optional[bool] = None,
          min_length: Optional[int] = None, gt: Any = None, ge: Any = None) -> Any:
    """A field's default and description (as a class attribute), or constraints (inside `Annotated`)."""
    metadata: list = []
    if strict:
        metadata.append(Strict())
    if min_length is not None:
        metadata.append(MinLen(min_length))
    if gt is not None:
        metadata.append(Gt(gt))
    if ge is not None:
        metadata.append(Ge(ge))
    return FieldInfo(default, default_factory=default_factory, alias=alias, description=description,
                     metadata=tuple(metadata))


def annotated(tp: Any, metadata: list) -> tuple[Any, list]:
    """(the bare type, all its metadata) of `Annotated[...]` (nested ones flattened, outermost last),
    each `Field(...)` among them replaced by the constraints it carries: what the validator and the
    JSON Schema both read."""
    while typing.get_origin(tp) is typing.Annotated:
        args = typing.get_args(tp)
        tp, metadata = args[0], list(args[1:]) + list(metadata)
    flat: list = []
    for item in metadata:
        flat.extend(item.metadata if isinstance(item, FieldInfo) else [item])
    return tp, flat


@_marker
class PrivateAttr:
    """A per-instance attribute that is not a field (not in the file, assignable on a frozen record)."""
    default: Any = None


@_marker
class _Validator:
    func: Callable
    mode: str
    fields: tuple = ()


def field_validator(*fields: str, mode: str = "after") -> Callable:
    """A classmethod that checks the raw value of `fields` (`mode="before"`: before the type's check)."""
    def mark(method: Any) -> Any:
        func = method.__func__ if isinstance(method, classmethod) else method
        return _Validator(func, mode, fields)
    return mark


def model_validator(*, mode: str) -> Callable:
    """A method run on the new instance (`mode="after"`); it returns the instance to keep."""
    def mark(func: Callable) -> Any:
        return _Validator(func, mode)
    return mark


class RecordError(ValueError):
    """`model_validate` refused a tree; `errors()` lists why, in pydantic's shape."""

    def __init__(self, errors: list[dict]) -> None:
        super().__init__("; ".join(f"{'.'.join(map(str, e['loc'])) or '(root)'}: {e['msg']}" for e in errors))
        self._errors = errors

    def errors(self) -> list[dict]:
        return list(self._errors)


# --- records -----------------------------------------------------------------------------------

class Record:
    """A closed, frozen mapping of the desired-state file. Subclasses declare fields as
    `name: Type = Field(...)`; instances come from `mlsync.input.validator` (or `Cls(**values)`)."""

    __slots__ = ("__dict__", "__fields_set__")

    model_fields: dict[str, FieldInfo] = {}
    __private_attributes__: dict[str, PrivateAttr] = {}
    __field_validators__: tuple = ()   # (_Validator bound to the class, ...)
    __model_validators__: tuple = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        fields: dict[str, FieldInfo] = {}
        privates: dict[str, PrivateAttr] = {}
        field_validators: list[_Validator] = []
        model_validators: list[_Validator] = []
        # Base classes' fields first (reversed method resolution order), as pydantic orders them; a
        # field declared again keeps its place and takes the new declaration.
        for base in reversed(cls.__mro__[1:]):
            if isinstance(base, type) and issubclass(base, Record) and base is not Record:
                fields.update(base.model_fields)
                privates.update(base.__private_attributes__)
                field_validators += [v for v in base.__field_validators__ if v not in field_validators]
                model_validators += [v for v in base.__model_validators__ if v not in model_validators]
        for name, annotation in inspect.get_annotations(cls).items():
            value = cls.__dict__.get(name, REQUIRED)
            if name.startswith("_"):
                privates[name] = value if isinstance(value, PrivateAttr) else PrivateAttr(value)
                type.__setattr__(cls, name, privates[name].default)   # read here until an instance sets it
                continue
            if isinstance(annotation, str):
                raise TypeError(f"{cls.__name__}.{name}: declare records without `from __future__ import "
                                "annotations` (the type must be an object, not a string)")
            spec = value if isinstance(value, FieldInfo) else FieldInfo(value)
            info = FieldInfo(spec.default, default_factory=spec.default_factory, alias=spec.alias,
                             description=spec.description, metadata=tuple(spec.metadata))
            info.annotation = annotation
            fields[name] = info
            if name in cls.__dict__:
                type.__delattr__(cls, name)   # the FieldInfo: an instance's value lives in its __dict__
        for value in cls.__dict__.values():
            if isinstance(value, _Validator):
                if value.fields:
                    bound = value.func.__get__(cls) if _takes_class(value.func) else value.func
                    field_validators.append(_Validator(bound, value.mode, value.fields))
                else:
                    model_validators.append(value)
        cls.model_fields = fields
        cls.__private_attributes__ = privates
        cls.__field_validators__ = tuple(field_validators)
        cls.__model_validators__ = tuple(model_validators)

    # --- construction ----------------------------------------------------------------------------

    def __init__(self, **values: Any) -> None:
        """An instance from field values given by attribute name or by key (tests; the files go through
        `mlsync.input.validator`). RecordError when invalid."""
        tree = dict(values)
        for name, info in type(self).model_fields.items():
            if info.alias and name in tree:
                tree[info.alias] = tree.pop(name)
        made = type(self).model_validate(tree)
        object.__setattr__(self, "__dict__", made.__dict__)
        object.__setattr__(self, "__fields_set__", made.__fields_set__)

    @classmethod
    def model_validate(cls, tree: Any) -> Any:
        """An instance from a plain tree (keys as the file writes them); RecordError when invalid."""
        from mlsync.input import validator

        value, errors = validator.validate(cls, tree)
        if errors:
            raise RecordError(errors)
        return value

    # --- reading -----------------------------------------------------------------------------------

    @property
    def model_fields_set(self) -> set[str]:
        """The fields the file gave (a default is not in it)."""
        return self.__fields_set__

    def model_copy(self, *, update: Optional[dict] = None) -> Any:
        """This record with `update` (valid values of its fields), those marked as set; private
        attributes kept."""
        update = update or {}
        cls = type(self)
        new = cls.__new__(cls)
        object.__setattr__(new, "__dict__", {**self.__dict__, **update})
        object.__setattr__(new, "__fields_set__", self.__fields_set__ | update.keys())
        return new

    def model_dump(self, *, by_alias: bool = False) -> dict:
        """The fields as plain data (by attribute name, or by key in the file; a Secret as its mask)."""
        return {(info.alias or name) if by_alias else name: _dump(getattr(self, name), by_alias)
                for name, info in type(self).model_fields.items()}

    def __setattr__(self, name: str, value: Any) -> None:
        if name in type(self).__private_attributes__:
            object.__setattr__(self, name, value)
            return
        raise AttributeError(f"{type(self).__name__} is frozen: cannot set {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is frozen: cannot delete {name!r}")

    def __eq__(self, other: Any) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return all(getattr(self, n) == getattr(other, n) for n in type(self).model_fields)

    __hash__ = None   # type: ignore[assignment]  (fields hold lists and mappings)

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in type(self).model_fields)
        return f"{type(self).__name__}({shown})"


def _takes_class(func: Callable) -> bool:
    params = list(inspect.signature(func).parameters)
    return len(params) == 2 and params[0] == "cls"


def _dump(value: Any, by_alias: bool) -> Any:
    if isinstance(value, Record):
        return value.model_dump(by_alias=by_alias)
    if isinstance(value, list):
        return [_dump(v, by_alias) for v in value]
    if isinstance(value, dict):
        return {k: _dump(v, by_alias) for k, v in value.items()}
    if isinstance(value, Secret):
        return str(value)   # its mask
    return value
