"""The contract's queries and mutations, through the real app on a real SQLite file."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.conftest import PUBLIC_URL, GraphQL
from tests.jobs_data import (
    CREATE,
    DELETE,
    GET,
    INPUT,
    PROFILE,
    REPORT,
    VIDEO,
    new_uuid,
    request_object,
)

TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


def create(gql: GraphQL, **overrides: Any) -> dict[str, Any]:
    body = gql(CREATE, input=request_object(**overrides))
    assert "errors" not in body, body
    job: dict[str, Any] = body["data"]["createJob"]
    return job


def error_of(body: dict[str, Any]) -> tuple[str, str]:
    assert body.get("errors"), body
    error = body["errors"][0]
    return error["extensions"]["code"], error["message"]


def test_create_job_starts_in_progress_at_zero(gql: GraphQL) -> None:
    inputs = [new_uuid() for _ in range(5)]
    job = create(gql, inputs=inputs)
    assert job["status"] == "IN_PROGRESS"
    assert job["statusCode"] == 0
    assert job["progress"] == 0
    assert job["inputs"] == inputs  # order kept
    assert (job["profile"], job["video"]) == (PROFILE, VIDEO)
    assert job["url"] == f"{PUBLIC_URL}/encoding/jobs/{job['id']}"
    assert TIMESTAMP.match(job["createdAt"]) and TIMESTAMP.match(job["updatedAt"])
    assert job["deletedAt"] is None


def test_job_reads_back_what_was_created(gql: GraphQL) -> None:
    job = create(gql)
    assert gql(GET, id=job["id"])["data"]["job"] == job


def test_job_is_null_for_an_unknown_id(gql: GraphQL) -> None:
    assert gql(GET, id=new_uuid()) == {"data": {"job": None}}


@pytest.mark.parametrize(
    ("inputs", "field"),
    [
        ([], "inputs"),
        ([new_uuid() for _ in range(101)], "inputs"),
        ([INPUT, new_uuid(), INPUT], "inputs[2]"),
        ([INPUT, "not-a-uuid"], "inputs[1]"),
    ],
    ids=["empty", "over-long", "duplicate", "malformed"],
)
def test_create_job_refuses_bad_inputs_naming_the_field(
    gql: GraphQL, inputs: list[str], field: str
) -> None:
    code, message = error_of(gql(CREATE, input=request_object(inputs=inputs)))
    assert code == "BAD_USER_INPUT"
    assert field in message
    assert gql("{ jobs { totalCount } }")["data"]["jobs"]["totalCount"] == 0


def test_create_job_accepts_exactly_one_hundred_inputs(gql: GraphQL) -> None:
    inputs = [new_uuid() for _ in range(100)]
    assert create(gql, inputs=inputs)["inputs"] == inputs


def test_malformed_uuid_literal_names_the_argument(gql: GraphQL) -> None:
    code, message = error_of(gql('{ job(id: "nope") { id } }'))
    assert code == "BAD_USER_INPUT"
    assert message.startswith("id:")
    code, message = error_of(
        gql(
            f'mutation {{ createJob(input: {{inputs: ["{INPUT}"], profile: "x", video: "{VIDEO}"}})'
            " { id } }"
        )
    )
    assert code == "BAD_USER_INPUT"
    assert message.startswith("input.profile:")


def test_malformed_uuid_variable_names_the_variable(gql: GraphQL) -> None:
    code, message = error_of(gql(GET, id="b9fe1066"))
    assert code == "BAD_USER_INPUT"
    assert "$id" in message


def test_progress_goes_up_and_completed_sets_one_hundred(gql: GraphQL) -> None:
    job = create(gql)
    first = gql(REPORT, id=job["id"], progress=30)["data"]["updateJobProgress"]
    assert (first["progress"], first["status"]) == (30, "IN_PROGRESS")
    assert first["updatedAt"] >= job["updatedAt"]
    same = gql(REPORT, id=job["id"], progress=30)["data"]["updateJobProgress"]
    assert same["progress"] == 30
    done = gql(REPORT, id=job["id"], progress=60, status="COMPLETED")["data"]["updateJobProgress"]
    assert (done["progress"], done["status"], done["statusCode"]) == (100, "COMPLETED", 1)


def test_failed_keeps_the_progress_sent(gql: GraphQL) -> None:
    job = create(gql)
    gql(REPORT, id=job["id"], progress=20)
    failed = gql(REPORT, id=job["id"], progress=45, status="FAILED")["data"]["updateJobProgress"]
    assert (failed["progress"], failed["status"], failed["statusCode"]) == (45, "FAILED", 10)


@pytest.mark.parametrize("progress", [-1, 101, 1000])
def test_progress_out_of_range_is_bad_user_input(gql: GraphQL, progress: int) -> None:
    job = create(gql)
    code, message = error_of(gql(REPORT, id=job["id"], progress=progress))
    assert code == "BAD_USER_INPUT"
    assert "progress" in message
    assert gql(GET, id=job["id"])["data"]["job"] == job


def test_progress_never_goes_down(gql: GraphQL) -> None:
    job = create(gql)
    reported = gql(REPORT, id=job["id"], progress=50)["data"]["updateJobProgress"]
    code, message = error_of(gql(REPORT, id=job["id"], progress=49))
    assert code == "CONFLICT"
    assert "progress" in message
    # Sent with a final status, a lower progress is refused whole: the job stays running.
    assert error_of(gql(REPORT, id=job["id"], progress=10, status="FAILED"))[0] == "CONFLICT"
    assert gql(GET, id=job["id"])["data"]["job"] == reported


@pytest.mark.parametrize("final", ["COMPLETED", "FAILED"])
def test_a_finished_job_never_changes_again(gql: GraphQL, final: str) -> None:
    job = create(gql)
    ended = gql(REPORT, id=job["id"], progress=70, status=final)["data"]["updateJobProgress"]
    for progress, status in [(80, None), (100, "COMPLETED"), (100, "FAILED"), (70, "IN_PROGRESS")]:
        code, _ = error_of(gql(REPORT, id=job["id"], progress=progress, status=status))
        assert code == "CONFLICT"
    assert gql(GET, id=job["id"])["data"]["job"] == ended


def test_update_of_unknown_job_is_not_found(gql: GraphQL) -> None:
    assert error_of(gql(REPORT, id=new_uuid(), progress=1))[0] == "NOT_FOUND"


def test_delete_is_soft_and_idempotent(gql: GraphQL) -> None:
    job = create(gql)
    deleted = gql(DELETE, id=job["id"])["data"]["deleteJob"]
    assert TIMESTAMP.match(deleted["deletedAt"])
    assert gql(DELETE, id=job["id"])["data"]["deleteJob"] == deleted
    # Still readable by id, deletedAt set; hidden from the default listing.
    assert gql(GET, id=job["id"])["data"]["job"] == deleted
    assert gql("{ jobs { totalCount } }")["data"]["jobs"]["totalCount"] == 0
    listed = gql("{ jobs(filter: {includeDeleted: true}) { edges { node { id } } } }")
    assert [e["node"]["id"] for e in listed["data"]["jobs"]["edges"]] == [job["id"]]


def test_a_deleted_job_cannot_report_progress(gql: GraphQL) -> None:
    job = create(gql)
    deleted = gql(DELETE, id=job["id"])["data"]["deleteJob"]
    assert error_of(gql(REPORT, id=job["id"], progress=10))[0] == "CONFLICT"
    assert gql(GET, id=job["id"])["data"]["job"] == deleted


def test_delete_of_unknown_job_is_not_found(gql: GraphQL) -> None:
    assert error_of(gql(DELETE, id=new_uuid()))[0] == "NOT_FOUND"


PAGE = """query($first: Int, $after: String, $filter: JobFilter) {
  jobs(first: $first, after: $after, filter: $filter) {
    totalCount
    edges { cursor node { id status } }
    pageInfo { hasNextPage endCursor }
  }
}"""


def test_jobs_pages_newest_first_with_cursors(gql: GraphQL) -> None:
    ids = [create(gql)["id"] for _ in range(7)]
    seen: list[str] = []
    after = None
    pages = 0
    while True:
        page = gql(PAGE, first=3, after=after)["data"]["jobs"]
        pages += 1
        assert page["totalCount"] == 7
        seen += [edge["node"]["id"] for edge in page["edges"]]
        assert page["pageInfo"]["endCursor"] == page["edges"][-1]["cursor"]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert pages == 3
    assert seen == list(reversed(ids))


def test_jobs_defaults_to_twenty(gql: GraphQL) -> None:
    for _ in range(21):
        create(gql)
    page = gql("{ jobs { edges { cursor } pageInfo { hasNextPage } } }")["data"]["jobs"]
    assert len(page["edges"]) == 20
    assert page["pageInfo"]["hasNextPage"] is True


def test_empty_listing(gql: GraphQL) -> None:
    page = gql(PAGE)["data"]["jobs"]
    assert page == {
        "totalCount": 0,
        "edges": [],
        "pageInfo": {"hasNextPage": False, "endCursor": None},
    }


def test_jobs_filters(gql: GraphQL) -> None:
    other_video, other_profile = new_uuid(), new_uuid()
    plain = create(gql)
    by_video = create(gql, video=other_video)
    by_profile = create(gql, profile=other_profile)
    done = create(gql)
    gql(REPORT, id=done["id"], progress=10, status="COMPLETED")
    gone = create(gql)
    gql(DELETE, id=gone["id"])

    def ids(**job_filter: Any) -> list[str]:
        page = gql(PAGE, first=100, filter=job_filter)["data"]["jobs"]
        found = [edge["node"]["id"] for edge in page["edges"]]
        assert page["totalCount"] == len(found)
        return found

    assert ids(video=other_video) == [by_video["id"]]
    assert ids(profile=other_profile) == [by_profile["id"]]
    assert ids(status="COMPLETED") == [done["id"]]
    assert ids(status="IN_PROGRESS") == [by_profile["id"], by_video["id"], plain["id"]]
    assert gone["id"] not in ids()
    assert ids(includeDeleted=True)[0] == gone["id"]
    assert ids(status="IN_PROGRESS", video=VIDEO, profile=PROFILE) == [plain["id"]]


@pytest.mark.parametrize("first", [0, 101, -5])
def test_first_outside_one_to_one_hundred(gql: GraphQL, first: int) -> None:
    code, message = error_of(gql(PAGE, first=first))
    assert code == "BAD_USER_INPUT"
    assert message.startswith("first:")


@pytest.mark.parametrize("cursor", ["garbage", "", "am9iOg==", "!!!", "a" * 5000])
def test_garbage_cursor(gql: GraphQL, cursor: str) -> None:
    code, message = error_of(gql(PAGE, after=cursor))
    assert code == "BAD_USER_INPUT"
    assert message.startswith("after:")


def test_unknown_status_value_in_filter(gql: GraphQL) -> None:
    code, message = error_of(gql("{ jobs(filter: {status: DONE}) { totalCount } }"))
    assert code == "BAD_USER_INPUT"
    assert "filter.status" in message


def test_syntax_and_validation_errors_have_codes(gql: GraphQL) -> None:
    assert error_of(gql("{ jobs { "))[0] == "GRAPHQL_PARSE_FAILED"
    assert error_of(gql("{ jobs { nope } }"))[0] == "GRAPHQL_VALIDATION_FAILED"
