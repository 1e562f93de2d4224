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


def test_resolved_endpoints_live_in_the_session_and_never_travel_in_a_pickle(monkeypatch):
    """The memo of resolved endpoints holds keys: it is the session catalog's, not a module's, and a catalog
    shipped to a Ray worker leaves it behind."""
    import pickle

    from engine import Session
    from engine.requests.requester import prepare

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-PICKLE-0123456789abcdef")
    with Session() as session:
        prepare({"model": "gpt-4o-mini", "prompt": "hi"}, None, session.catalog, 41)
        assert any(e.api_key == "sk-test-PICKLE-0123456789abcdef" for e in session.catalog.endpoints.values())
        assert b"sk-test-PICKLE" not in pickle.dumps(session.catalog)
    with Session() as other:
        assert not other.catalog.endpoints  # nothing shared between sessions
