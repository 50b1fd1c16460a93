"""The wire format, the backend registry and the backend contract."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pets.api import Backend, Capabilities, Claim, PetClass
from pets.backends.plaintext import LocalOnly, Plaintext
from pets.registry import Registry, UnknownBackend
from pets.wire import pack, unpack


def test_wire_round_trips_tables_arrays_and_json():
    frame = pd.DataFrame({"a": [1, 2], "b": pd.Categorical(["x", "y"]), "c": [0.5, 1.5]})
    back = unpack(pack(frame))
    pd.testing.assert_frame_equal(back, frame)
    array = np.arange(6, dtype=np.float64).reshape(2, 3)
    np.testing.assert_array_equal(unpack(pack(array)), array)
    assert unpack(pack({"q": [1, None, "x"]})) == {"q": [1, None, "x"]}
    with pytest.raises(TypeError, match="cannot pack object"):
        pack(object())
    with pytest.raises(ValueError, match="unknown wire tag"):
        unpack(b"Zxx")


def test_object_arrays_are_refused_not_pickled():
    with pytest.raises(ValueError):
        pack(np.array([object()], dtype=object))


def test_registry_lists_without_importing_and_suggests():
    reg = Registry(
        {"plaintext": "pets.backends.plaintext:Plaintext", "ghost": "no_such_module_anywhere:Ghost"}
    )
    assert reg.names() == ["ghost", "plaintext"]  # listing imported nothing
    assert reg.load("plaintext") is Plaintext
    with pytest.raises(UnknownBackend, match="did you mean 'plaintext'"):
        reg.load("plaintex")
    with pytest.raises(ImportError, match="could not be imported"):
        reg.load("ghost")
    with pytest.raises(ValueError, match="already registered"):
        reg.add("plaintext", Plaintext)


def test_builtins_come_from_the_entry_point_group():
    reg = Registry.from_entry_points()
    assert {"plaintext", "local_only"} <= set(reg.names())
    assert reg.target("local_only") == "pets.backends.plaintext:LocalOnly"


def test_registries_are_independent():
    a, b = Registry(), Registry()
    a.add("x", Plaintext)
    assert "x" not in b


def test_constructor_stores_parameters_only():
    assert LocalOnly(party="trust_e").get_params() == {"party": "trust_e"}
    assert LocalOnly.param_defaults() == {"party": None}
    with pytest.raises(TypeError):
        LocalOnly("trust_e")  # keyword-only


def test_claims_are_typed_and_checked():
    with pytest.raises(ValueError, match="epsilon"):
        Claim(epsilon=0)
    with pytest.raises(TypeError, match="tuple of strings"):
        Claim(declared_leakage="output")

    class Tiny(Backend):
        def __init__(self, *, epsilon: float = 1.0) -> None:
            self.epsilon = epsilon

        @property
        def capabilities(self) -> Capabilities:
            return Capabilities(
                frozenset({"aggregate"}),
                PetClass.DP,
                Claim(epsilon=self.epsilon, delta=0.0, neighbouring="add-remove"),
            )

    caps = Tiny(epsilon=0.5).capabilities.to_dict()
    assert caps["claim"]["epsilon"] == 0.5 and caps["pet_class"] == "dp"
