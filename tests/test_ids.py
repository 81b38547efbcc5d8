import json

import pytest
from pydantic import BaseModel

from mlua_swarm.ids import PrefixedId, ResumeKey, RunId, StepId, TaskId, WorkerHandle


@pytest.mark.parametrize(("cls", "prefix"), [(StepId, "ST-"), (RunId, "R-"), (TaskId, "T-"), (WorkerHandle, "wh-")])
def test_new_ids_carry_their_prefix_and_parse_back(cls: type[StepId], prefix: str) -> None:
    value = cls.new()
    assert value.startswith(prefix)
    assert cls.parse(str(value)) == value
    assert json.dumps(value) == f'"{value}"'


@pytest.mark.parametrize("bad", ["", "ST-", "st-abc", "R-abc", "RK-1", 7, None])
def test_step_id_parse_refuses_wrong_prefix_or_empty_suffix(bad: object) -> None:
    with pytest.raises(ValueError, match='expected "ST-" prefix'):
        StepId.parse(bad)


def test_resume_key_is_not_a_run_id() -> None:
    with pytest.raises(ValueError):
        RunId.parse(ResumeKey.for_senior(StepId.new()))


def test_ids_are_unique() -> None:
    assert len({StepId.new() for _ in range(10_000)}) == 10_000


def test_json_decode_checks_the_prefix() -> None:
    class Doc(BaseModel):
        step: StepId

    assert Doc.model_validate_json('{"step": "ST-1"}').step == "ST-1"
    assert isinstance(Doc.model_validate({"step": "ST-1"}).step, StepId)
    with pytest.raises(ValueError, match="invalid step id"):
        Doc.model_validate_json('{"step": "R-1"}')
    assert Doc(step=StepId.parse("ST-9")).model_dump_json() == '{"step":"ST-9"}'


def _id_types(cls: type[PrefixedId]) -> list[type[PrefixedId]]:
    return [cls, *(sub for direct in cls.__subclasses__() for sub in _id_types(direct))]


@pytest.mark.parametrize("cls", _id_types(PrefixedId)[1:], ids=lambda cls: cls.__name__)
def test_ids_carry_no_instance_dict(cls: type[PrefixedId]) -> None:
    """Just the string: an engine keeps one per retained step."""
    value = cls.new() if cls is not ResumeKey else ResumeKey.for_senior(StepId.new())
    assert not hasattr(value, "__dict__")
    with pytest.raises(AttributeError):
        value.note = 1  # type: ignore[attr-defined]
