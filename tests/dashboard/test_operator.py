"""The operator console: a person joins, takes a seat, and answers operator steps in Chromium."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from playwright.sync_api import Browser, Page, expect
from tests.dashboard.conftest import (
    WAIT_MS,
    Gate,
    echo_step,
    gated_step,
    launch,
    register,
    seq,
    shoot,
    step,
    wait_status,
)
from tests.serverkit import LiveServer

RUNNER = {"backend": "ws_operator", "variant": "claude", "tools": []}


def operator_step(ref: str, prompt: str, out: str) -> dict[str, Any]:
    return {"kind": "step", "ref": ref, "in": {"op": "lit", "value": prompt}, "out": {"op": "path", "at": out}}


def operator_agent(name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "kind": "operator", "spec": {"operator_ref": "human"}, "runner": RUNNER, **extra}


def release_blueprint(gate: Gate) -> dict[str, Any]:
    return {
        "id": "release",
        "flow": seq(
            {
                "kind": "step",
                "ref": "prepare",
                "in": {"op": "path", "at": "$"},
                "out": {"op": "path", "at": "$.prepared"},
            },
            operator_step("decide", "Ship release v2 to production?", "$.decision"),
            operator_step("notes", "Write the release notes", "$.notes"),
        ),
        "agents": [
            gated_step("prepare", gate, '{"release": "v2"}'),
            operator_agent("decide", verdict={"channel": "body", "values": ["SHIP", "HOLD"]}),
            operator_agent("notes"),
        ],
        "operators": [{"name": "human"}],
    }


def attached(server: LiveServer) -> int:
    count: int = server.client().get("/v1/status").json()["attached_operators"]
    return count


def join(page: Page, server: LiveServer, desc: str) -> str:
    page.goto(server.base_url + "/operator")
    page.locator("#join-desc").fill(desc)
    page.locator("#join-btn").click()
    expect(page.locator("#sid")).to_have_text(re.compile(r"^S-"))
    expect(page.locator("#live-dot")).to_have_class("live on")
    expect(page.locator("#join-form")).to_be_hidden()
    sid: str = page.locator("#sid").inner_text()
    return sid


def test_a_person_takes_a_seat_and_answers_operator_steps_in_the_console(
    server: LiveServer, page: Page, tmp_path: Path
) -> None:
    gate = Gate(tmp_path / "gate")
    client = server.client()
    join(page, server, "alice")
    assert attached(server) == 1

    run_id = launch(client, release_blueprint(gate))["run_id"]
    page.locator("#acquire-run").fill(run_id)
    page.locator("#acquire-btn").click()
    expect(page.locator("#acquire-btn")).to_have_attribute("data-done", run_id)
    gate.release()

    decide = page.locator('article.request[data-kind="spawn"]').filter(has_text="decide")
    expect(decide).to_be_visible()
    expect(decide.locator("pre.prompt")).to_contain_text("Ship release v2 to production?")
    expect(decide.locator(f'a[href="/runs/{run_id}"]')).to_be_visible()
    shoot(page, "operator")

    page.reload()
    decide = page.locator('article.request[data-kind="spawn"]').filter(has_text="decide")
    expect(decide).to_be_visible()
    decide.locator('button[data-verdict="SHIP"]').click()
    expect(decide).to_have_count(0)

    notes = page.locator('article.request[data-kind="spawn"]').filter(has_text="notes")
    expect(notes).to_be_visible()
    notes.locator("textarea").fill('{"highlights": ["faster dashboard"], "breaking": false}')
    expect(notes.locator(".lbl", has_text="sent as JSON")).to_be_visible()
    notes.get_by_role("button", name="Submit value").click()

    record = wait_status(client, run_id, "done", "failed")
    assert record["status"] == "done", record
    result = record["result"]
    assert result["decision"] == "SHIP"
    assert result["notes"] == {"highlights": ["faster dashboard"], "breaking": False}


def test_a_run_pinned_to_the_console_session_from_the_blueprint_page(
    server: LiveServer, browser: Browser, tmp_path: Path
) -> None:
    gate = Gate(tmp_path / "gate")
    client = server.client()
    register(client, release_blueprint(gate))
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.set_default_timeout(WAIT_MS)
    console = context.new_page()
    sid = join(console, server, "bob")

    launcher = context.new_page()
    launcher.goto(server.base_url + "/blueprints/release")
    launcher.locator("#operator_sid").fill(sid)
    launcher.locator("#launch-btn").click()
    launcher.wait_for_url("**/runs/R-*")
    run_id = launcher.url.rsplit("/", 1)[-1]
    gate.release()

    decide = console.locator('article.request[data-kind="spawn"]').filter(has_text="decide")
    decide.locator('button[data-verdict="HOLD"]').click()
    notes = console.locator('article.request[data-kind="spawn"]').filter(has_text="notes")
    notes.locator("textarea").fill("not this week")
    expect(notes.locator(".lbl", has_text="sent as text")).to_be_visible()
    notes.get_by_role("button", name="Halt").click()
    record = wait_status(client, run_id, "done", "failed")
    assert record["result"]["decision"] == "HOLD"
    assert record["result"]["notes"] == {"halted": True, "reason": "halted in the console", "value": "not this week"}
    expect(launcher.locator("#run-status")).to_have_text("done")

    context.close()
    deadline_checks = 200
    while attached(server) and deadline_checks:
        deadline_checks -= 1
        client.get("/v1/healthz")
    assert attached(server) == 0


def guarded_blueprint() -> dict[str, Any]:
    """Every spawn asks the run's operator first (`main_ai`); a failed step asks it for advice (`senior_escalation`)."""
    return {
        "id": "guarded",
        "flow": seq(
            step("build", "$.built"),
            operator_step("review", "Review the build", "$.review"),
            step("deploy", "$.deployed"),
        ),
        "agents": [echo_step("build", '"artifact-7"'), operator_agent("review"), echo_step("deploy", '"deployed"')],
        "operators": [{"name": "human"}],
        "spawner_hints": {"layers": ["main_ai", "senior_escalation"]},
    }


def test_hooks_and_questions_are_answered_in_the_console(server: LiveServer, page: Page) -> None:
    client = server.client()
    sid = join(page, server, "carol")
    run_id = launch(client, guarded_blueprint(), operator_sid=sid, operator_desc="carol")["run_id"]

    def card(kind: str, agent: str) -> Any:
        # By the heading: a card's prompt may name other steps ("Review the build").
        found = page.locator(f'article.request[data-kind="{kind}"]').filter(has=page.locator("h3", has_text=agent))
        expect(found).to_be_visible()
        return found

    page.set_viewport_size({"width": 390, "height": 844})
    page.emulate_media(color_scheme="dark")
    build = card("hook_before", "build")
    expect(build.locator("h3")).to_contain_text("build")
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    shoot(page, "operator-phone-dark")
    build.get_by_role("button", name="Approve").focus()
    page.keyboard.press("Enter")
    expect(build).to_have_count(0)
    page.set_viewport_size({"width": 1280, "height": 800})
    page.emulate_media(color_scheme="light")
    card("hook_before", "review").get_by_role("button", name="Approve").click()
    review = card("spawn", "review")
    expect(review.locator("pre.prompt")).to_contain_text("Review the build")
    review.locator("textarea").fill("flaky test in CI")
    review.get_by_role("button", name="Fail step").click()

    ask = page.locator('article.request[data-kind="ask"]').filter(has_text="flaky test in CI")
    expect(ask.locator("pre")).to_contain_text("worker reported ok=false")
    ask.locator("textarea").fill('{"advice": "retry once"}')
    ask.get_by_role("button", name="Send answer").click()

    deploy = card("hook_before", "deploy")
    deploy.get_by_label("reason").fill("not on a Friday")
    deploy.get_by_role("button", name="Reject").click()
    expect(page.locator("#pending-empty")).to_be_visible()

    record = wait_status(client, run_id, "done", "failed")
    assert record["status"] == "failed", record
    error = record["result"]["error"]
    assert error["failed_step"] == "deploy" and "not on a Friday" in error["message"], error
    assert record["result"]["partial_ctx"] == {
        "built": "artifact-7",
        "review": {"original": "flaky test in CI", "senior_answer": {"advice": "retry once"}},
    }


def test_a_part_channel_verdict_goes_in_as_the_verdict_part(server: LiveServer, page: Page) -> None:
    client = server.client()
    sid = join(page, server, "dana")
    blueprint = {
        "id": "parted",
        "flow": operator_step("review", "Review the change", "$.review"),
        "agents": [operator_agent("review", verdict={"channel": "part", "values": ["PASS", "BLOCKED"]})],
        "operators": [{"name": "human"}],
    }
    run_id = launch(client, blueprint, operator_sid=sid, operator_desc="dana")["run_id"]
    review = page.locator('article.request[data-kind="spawn"]').filter(has_text="review")
    review.locator("textarea").fill("looks fine to me")
    review.locator('button[data-verdict="PASS"]').click()
    record = wait_status(client, run_id, "done", "failed")
    assert record["status"] == "done", record
    assert record["result"]["review"] == {"out": "looks fine to me", "parts": {"verdict": "PASS"}}


def test_a_hook_before_card_shows_the_prompt_and_context_and_approving_completes_the_run(
    server: LiveServer, page: Page
) -> None:
    client = server.client()
    sid = join(page, server, "erin")
    blueprint = {
        "id": "deploys",
        "flow": step("deploy", "$.deployed", "$.request"),
        "agents": [{"name": "deploy", "kind": "subprocess", "spec": {"program": "cat"}}],
        "operators": [{"name": "human"}],
        "spawner_hints": {"layers": ["main_ai"]},
    }
    init = {"request": {"service": "billing", "version": "2.4.1", "to": "production"}}
    run_id = launch(client, blueprint, init, operator_sid=sid, operator_desc="erin")["run_id"]

    gate = page.locator('article.request[data-kind="hook_before"]').filter(has_text="deploy")
    expect(gate).to_be_visible()
    expect(gate.locator("pre.prompt")).to_have_text('{"service":"billing","version":"2.4.1","to":"production"}')
    context = gate.locator("details.context")
    expect(context).to_have_attribute("open", "")
    expect(context.locator("pre")).to_contain_text(run_id)
    expect(gate.locator(f'a[href="/runs/{run_id}"]')).to_be_visible()
    agent = gate.locator("details.agent-def")
    expect(agent.locator("summary")).to_have_text("agent (subprocess)")
    agent.locator("summary").click()
    expect(agent.locator("pre")).to_contain_text('"program": "cat"')
    shoot(page, "operator-hook")

    gate.get_by_role("button", name="Approve").click()
    expect(gate).to_have_count(0)
    record = wait_status(client, run_id, "done", "failed")
    assert record["status"] == "done", record
    assert record["result"]["deployed"] == init["request"]


def test_the_run_page_says_which_step_waits_on_which_operator_until_it_is_answered(
    server: LiveServer, page: Page
) -> None:
    client = server.client()
    away = client.post("/v1/operators", json={"desc": "carol's laptop"}).json()
    blueprint = {
        "id": "sign-off",
        "flow": operator_step("sign", "Sign release v3?", "$.signed"),
        "agents": [operator_agent("sign")],
        "operators": [{"name": "human"}],
    }
    run_id = launch(client, blueprint, operator_sid=away["sid"], operator_desc="carol (away)")["run_id"]
    page.goto(f"{server.base_url}/runs/{run_id}")
    waiting = page.locator("#waiting")
    expect(waiting).to_contain_text(
        f"sign waits for its operator's answer: seat human, held by “carol (away)” ({away['sid']})"
    )
    expect(waiting.locator(".off")).to_have_text("not connected (the request waits until it attaches)")

    console = page.context.new_page()
    join(console, server, "dave")
    console.locator("#acquire-run").fill(run_id)
    console.locator("#acquire-btn").click()
    expect(waiting).to_contain_text("held by “dave”")
    expect(waiting.locator(".off")).to_have_count(0)

    card = console.locator('article.request[data-kind="spawn"]').filter(has_text="sign")
    card.locator("textarea").fill("signed by dave")
    card.get_by_role("button", name="Submit value").click()
    expect(page.locator("#run-status")).to_have_text("done")
    expect(waiting).to_be_hidden()
    assert client.get(f"/v1/runs/{run_id}").json()["result"]["signed"] == "signed by dave"
