"""The public surface is exactly what __all__ says, and errors cross processes."""

from __future__ import annotations

import pickle

import ccm
from ccm import errors


def test_all_is_the_public_surface() -> None:
    """ccm.__all__ is sorted and lists every public name the package exposes."""
    public = {
        name for name in vars(ccm)
        if not name.startswith("_") and name not in {"annotations"}
        and not (hasattr(getattr(ccm, name), "__file__") and name != "errors")
    }
    assert sorted(ccm.__all__, key=str.lower) == sorted(set(ccm.__all__), key=str.lower)
    assert public - {"__version__"} <= set(ccm.__all__) | {
        "engine", "message", "pack", "template", "util", "environment", "i18n", "channels",
        "security", "record", "policy", "cli", "testing", "tracking",
    }
    for name in ccm.__all__:
        assert hasattr(ccm, name), name


def test_errors_all_matches_module() -> None:
    """Every exception class in ccm.errors is exported and derives from CCMError."""
    classes = {
        name for name, obj in vars(errors).items()
        if isinstance(obj, type) and issubclass(obj, BaseException)
    }
    assert classes == set(errors.__all__)
    for name in classes:
        assert issubclass(getattr(errors, name), errors.CCMError)


def test_config_and_message_errors_are_apart() -> None:
    """A batch catching MessageError can never swallow a ConfigError."""
    for name in errors.__all__:
        cls = getattr(errors, name)
        assert not (issubclass(cls, errors.ConfigError) and issubclass(cls, errors.MessageError))


def test_errors_pickle_with_context() -> None:
    """Errors keep their message and context through pickle (batch workers send them home)."""
    exc = errors.DataError("bad", path="$.data.x", rule="type", customer_id="C1")
    back = pickle.loads(pickle.dumps(exc))
    assert type(back) is errors.DataError
    assert str(back) == "bad" and back.path == "$.data.x" and back.customer_id == "C1"  # type: ignore[attr-defined]
