"""Every kind's settings are a typed, frozen object built from its schema (issue 13, item 4)."""

from __future__ import annotations

import dataclasses

import pytest

from eventdesk.core.errors import ConfigError
from eventdesk.core.registry import broker_class, broker_kinds, connector_class, connector_kinds
from eventdesk.core.settings_schema import KindSettings, settings_mismatch


def settings_types() -> list[tuple[str, type[KindSettings]]]:
    found: list[tuple[str, type[KindSettings]]] = []
    for kind in connector_kinds():
        cls = connector_class(kind)
        found += [(f"{kind} datasource", cls.datasource_settings), (f"{kind} model", cls.model_settings)]
    for kind in broker_kinds():
        found.append((f"{kind} broker", broker_class(kind).settings_type))
    from eventdesk.core.route_settings import RouteSettings

    found.append(("route", RouteSettings))
    return found


@pytest.mark.parametrize(("what", "settings_type"), settings_types(), ids=lambda v: str(v))
def test_the_settings_type_has_exactly_the_schemas_fields(
    what: str, settings_type: type[KindSettings]
) -> None:
    assert dataclasses.is_dataclass(settings_type), what
    assert settings_type.__dataclass_params__.frozen, f"{what}: settings must be frozen"  # type: ignore[attr-defined]
    assert settings_mismatch(settings_type) is None


@pytest.mark.parametrize(("what", "settings_type"), settings_types(), ids=lambda v: str(v))
def test_defaults_load_and_cannot_be_changed(what: str, settings_type: type[KindSettings]) -> None:
    schema = settings_type.schema
    required = {f.name: _sample(f.type, f.url_schemes) for f in schema.fields if f.required and not f.secret}
    settings = settings_type.load(required, obj=what)
    name = next(iter(settings.as_dict()))
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(settings, name, None)
    with pytest.raises(ConfigError) as caught:
        settings_type.load({**required, "no_such_setting": 1}, obj=what)
    assert caught.value.field == "no_such_setting"


def _sample(field_type: str, url_schemes: tuple[str, ...] = ()) -> object:
    url = f"{(url_schemes or ('http',))[0]}://localhost:5984"  # a scheme the kind takes
    return {"url": url, "int": 1, "float": 1.0, "bool": True}.get(field_type, "x")
