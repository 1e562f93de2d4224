from engine import get_key, Completion
from engine.core.digests import request_digest


def test_get_key_ignores_dict_order_at_any_depth():
    a = {"model": "m", "stop": ["\n", "###"], "messages": [{"role": "user", "content": "x"}], "n": {"a": 1, "b": [1, {"c": 2, "d": 3}]}}
    b = {"n": {"b": [1, {"d": 3, "c": 2}], "a": 1}, "messages": [{"content": "x", "role": "user"}], "stop": ["\n", "###"], "model": "m"}
    assert get_key(a) == get_key(b)
    assert hash(get_key(a)) == hash(get_key(b))
    assert Completion.get_key(a) == get_key(a)


def test_get_key_distinguishes_list_order_values_and_shapes():
    assert get_key({"stop": ["a", "b"]}) != get_key({"stop": ["b", "a"]})
    assert get_key({"t": 1}) != get_key({"t": 2})
    assert get_key({"a": 1}) != get_key([["a", 1]])
    assert get_key([1, [2, 3]]) != get_key([[1, 2], 3])


def test_get_key_is_usable_as_dict_key():
    seen = {get_key({"a": [1, 2], "b": {"c": None}}): "x"}
    assert seen[get_key({"b": {"c": None}, "a": [1, 2]})] == "x"


def test_request_digest_is_order_free_and_fixed_size():
    assert request_digest({"a": 1, "b": [1, 2]}) == request_digest({"b": [1, 2], "a": 1})
    assert request_digest({"a": 1}) != request_digest({"a": 2})
    assert len(request_digest({"a": 1})) == 16
