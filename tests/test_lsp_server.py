"""End-to-end: `diffill serve` over stdio, driven by pytest-lsp as a real LSP client.

The model is the tiny random checkpoint, so these tests check protocol behaviour (answers, ranges,
cancellation, caching, errors), never the quality of what is filled in.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import json
import os
import random
import shutil
import sys
import uuid
from pathlib import Path

import pytest
import pytest_asyncio
from lsprotocol import types
from pygls.exceptions import JsonRpcException
from pytest_lsp import ClientServerConfig, LanguageClient, client_capabilities
from pytest_lsp.client import make_test_lsp_client

pytestmark = pytest.mark.asyncio(loop_scope="module")

INVALID_PARAMS = -32602
REQUEST_CANCELLED = -32800
REQUEST_FAILED = -32803

SOURCE = '''import os


def greet(name):
    message = "hello " + name
    return message


def total(values):
    result = 0
    for v in values:
        result += v
    return result


class Point:
    def __init__(self, x, y):
        self.x = x
        self.y = y

    def norm(self):
        
'''

UNICODE = 's = "\U0001F600 \u4f60\u597d"  # emoji and CJK\nx = len(s)\n'


def make_client() -> LanguageClient:
    client = make_test_lsp_client()
    client.applied_edits = []
    client.registrations = []

    @client.feature(types.CLIENT_REGISTER_CAPABILITY)
    def register_capability(ls: LanguageClient, params: types.RegistrationParams):
        ls.registrations.extend(params.registrations)

    @client.feature(types.WORKSPACE_APPLY_EDIT)
    def apply_edit(ls: LanguageClient, params: types.ApplyWorkspaceEditParams):
        ls.applied_edits.append(params)
        return types.ApplyWorkspaceEditResult(applied=True)

    return client


async def start(model: str, tmp: Path, options: dict | None = None) -> LanguageClient:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "diffill.cli", "serve", "--model", model, "--threads", "1"]
    client = await ClientServerConfig(server_command=cmd, client_factory=make_client, server_env=env).start()
    caps = client_capabilities("visual-studio-code")
    folder = types.WorkspaceFolder(uri=tmp.as_uri(), name="ws")
    client.workspace_path = tmp
    client.init_result = await client.initialize_session(types.InitializeParams(
        capabilities=caps, initialization_options=options, workspace_folders=[folder]))
    return client


async def stop(client: LanguageClient) -> None:
    await client.shutdown_session()
    await client.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def client(tiny_checkpoint, tmp_path_factory):
    # minConfidence 0: the tiny random model's fills are all unlikely, and these tests need answers
    c = await start(str(tiny_checkpoint), tmp_path_factory.mktemp("ws"),
                    {"threshold": 0.5, "unknownKey": 1, "minConfidence": 0})
    yield c
    await stop(c)


_uris = iter(range(10**6))


def open_doc(client: LanguageClient, text: str = SOURCE, language: str = "python") -> str:
    uri = f"file:///tmp/diffill-test-{next(_uris)}.py"
    client.text_document_did_open(types.DidOpenTextDocumentParams(
        types.TextDocumentItem(uri=uri, language_id=language, version=1, text=text)))
    return uri


def change(client: LanguageClient, uri: str, version: int, rng: types.Range | None, text: str) -> None:
    event = (types.TextDocumentContentChangePartial(range=rng, text=text) if rng is not None
             else types.TextDocumentContentChangeWholeDocument(text=text))
    client.text_document_did_change(types.DidChangeTextDocumentParams(
        types.VersionedTextDocumentIdentifier(uri=uri, version=version), [event]))


def pos(line: int, character: int) -> types.Position:
    return types.Position(line=line, character=character)


def rng(a: tuple[int, int], b: tuple[int, int]) -> types.Range:
    return types.Range(pos(*a), pos(*b))


async def inline(client, uri, line, character) -> types.InlineCompletionList:
    return await client.text_document_inline_completion_async(types.InlineCompletionParams(
        text_document=types.TextDocumentIdentifier(uri), position=pos(line, character),
        context=types.InlineCompletionContext(trigger_kind=types.InlineCompletionTriggerKind.Automatic)))


async def status(client) -> dict:
    return await client.workspace_execute_command_async(types.ExecuteCommandParams(command="diffill.status"))


async def configure(client, **settings) -> None:
    client.workspace_did_change_configuration(types.DidChangeConfigurationParams(settings={"diffill": settings}))
    await status(client)  # notifications are handled in order: once status answers, the change is in


def send_raw(client, method: str, params, msg_id=None, plain_result=False):
    """A request with a chosen id (so it can be cancelled), as an asyncio future. With
    ``plain_result`` the answer stays JSON (lsprotocol's client hook reads any code action that
    has a ``command`` field as a bare Command)."""
    msg_id = msg_id or str(uuid.uuid4())
    future = client.protocol.send_request(method, params, msg_id=msg_id)
    if plain_result:
        client.protocol._result_types[msg_id] = None
    return msg_id, asyncio.wrap_future(future)


def send_json(client, method: str, params) -> asyncio.Future:
    """A request written as raw JSON, for parameters no typed client would produce."""
    msg_id = str(uuid.uuid4())
    body = json.dumps({"jsonrpc": "2.0", "id": msg_id, "method": method, "params": params}).encode()
    future = concurrent.futures.Future()
    client.protocol._request_futures[msg_id] = future
    written = client.protocol.writer.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
    if inspect.isawaitable(written):
        asyncio.ensure_future(written)
    return asyncio.wrap_future(future)


async def code_actions(client, uri, selection, only=None) -> list[dict]:
    params = types.CodeActionParams(types.TextDocumentIdentifier(uri), selection,
                                    types.CodeActionContext(diagnostics=[], only=only))
    _, fut = send_raw(client, types.TEXT_DOCUMENT_CODE_ACTION, params, plain_result=True)
    return await fut


def cancel(client, msg_id) -> None:
    client.protocol.notify(types.CANCEL_REQUEST, types.CancelParams(id=msg_id))


async def slow(client) -> None:
    """Settings under which the tiny model denoises one token per step over a long canvas."""
    await configure(client, threshold=1.0, maxTokens=600)


async def wait_idle(client) -> dict:
    for _ in range(500):
        s = await status(client)
        if s["inflight"] == 0:
            return s
        await asyncio.sleep(0.02)
    raise AssertionError("the server never became idle")


async def some_suggestion(client, uri: str, text: str) -> tuple[int, int, str]:
    """A mid-line cursor where the tiny model suggests something (it is random: try several)."""
    lines = text.split("\n")
    for i, line in enumerate(lines):
        for j in range(2, len(line), 3):
            result = await inline(client, uri, i, j)
            if result.items and len(result.items[0].insert_text) >= 2:
                return i, j, result.items[0].insert_text
    pytest.fail("the tiny model suggested nothing anywhere")


# -- capabilities --------------------------------------------------------------------------


async def test_capabilities_advertise_every_feature(client):
    caps = client.init_result.capabilities
    sync = caps.text_document_sync
    assert (sync.change if hasattr(sync, "change") else sync) == types.TextDocumentSyncKind.Incremental
    assert caps.inline_completion_provider is not None
    assert caps.completion_provider is not None
    assert types.CodeActionKind.RefactorRewrite in caps.code_action_provider.code_action_kinds
    assert set(caps.execute_command_provider.commands) >= {"diffill.infill", "diffill.status"}
    assert caps.position_encoding in (None, types.PositionEncodingKind.Utf16)
    assert client.init_result.server_info.name == "diffill"


async def test_status_reports_model_adapter_and_latencies(client, tiny_checkpoint):
    uri = open_doc(client)
    await inline(client, uri, 4, 20)
    s = await status(client)
    assert s["loaded"] and s["error"] is None
    assert s["model"] == str(tiny_checkpoint)
    assert "adapter" in s
    assert s["latencies_ms"] and all(x >= 0 for x in s["latencies_ms"])
    assert s["p50_ms"] >= 0
    assert s["settings"]["threshold"] == 0.5  # from initializationOptions; the unknown key was ignored


# -- inline completion and completion --------------------------------------------------------


async def test_inline_completion_inserts_at_the_cursor(client):
    uri = open_doc(client)
    line, character, text = await some_suggestion(client, uri, SOURCE)
    result = await inline(client, uri, line, character)
    item = result.items[0]
    assert item.insert_text == text
    assert item.range == rng((line, character), (line, character))
    assert "\n" not in item.insert_text  # mid-line cursor: one line


async def test_blank_line_in_a_block_may_get_several_lines_mid_line_gets_one(client):
    uri = open_doc(client)
    blank = SOURCE.split("\n").index("        ")
    multi = await inline(client, uri, blank, 8)
    single = await inline(client, uri, 4, 12)
    for result in (multi, single):
        assert isinstance(result, types.InlineCompletionList)
    assert all("\n" not in i.insert_text for i in single.items)


async def test_completion_item_carries_the_infill_as_a_text_edit(client):
    uri = open_doc(client)
    line, character, text = await some_suggestion(client, uri, SOURCE)
    result = await client.text_document_completion_async(types.CompletionParams(
        text_document=types.TextDocumentIdentifier(uri), position=pos(line, character)))
    assert result.is_incomplete
    item = result.items[0]  # the infill; any further items are the runners-up
    assert item.text_edit.new_text == text and item.preselect
    assert all(i.text_edit.range == rng((line, character), (line, character)) for i in result.items)
    assert item.label and item.detail == "diffill"


async def test_a_completion_inside_a_word_replaces_the_typed_part(client):
    """At ``tot|``, an item is ``total...`` over the typed part, so the editor's filter keeps it."""
    import re

    uri = open_doc(client)
    for m in re.finditer(r"[A-Za-z_]{4,}", SOURCE):
        line = SOURCE.count("\n", 0, m.start())
        column = m.start() - (SOURCE.rfind("\n", 0, m.start()) + 1)
        typed = m.group()[:3]
        doc = SOURCE[: m.start() + 3] + SOURCE[m.end():]  # the word cut short at the cursor
        change(client, uri, 2 + m.start(), None, doc)
        result = await client.text_document_completion_async(types.CompletionParams(
            text_document=types.TextDocumentIdentifier(uri), position=pos(line, column + 3)))
        if result.items:
            for item in result.items:
                assert item.text_edit.range == rng((line, column), (line, column + 3))
                assert item.text_edit.new_text.startswith(typed) and item.label.startswith(typed)
                assert item.filter_text.startswith(typed)
            return
    pytest.fail("the tiny model completed no word anywhere")


async def test_a_completion_item_at_a_word_boundary_inserts_at_the_cursor():
    from diffill.lsp_server.server import completion_item

    at = pos(3, 8)
    item = completion_item("x + 1", at, "python", 0)
    assert item.text_edit.range == types.Range(at, at) and item.label == "x + 1"
    item = completion_item("ess(x)", at, "python", 0, "proc", pos(3, 4))
    assert item.text_edit.range == rng((3, 4), (3, 8)) and item.text_edit.new_text == "process(x)"


async def test_the_beam_setting_reaches_the_engine_and_keys_the_cache(client):
    uri = open_doc(client)
    await inline(client, uri, 4, 20)
    calls = (await status(client))["counters"]["model_calls"]
    await configure(client, beam=0)  # threshold decoding: no runners-up
    try:
        plain = await inline(client, uri, 4, 20)
        s = await status(client)
        assert s["settings"]["beam"] == 0 and s["counters"]["model_calls"] == calls + 1  # not the cached answer
        assert len(plain.items) <= 1
    finally:
        await configure(client, beam=None)


async def test_answers_offer_the_runners_up_after_the_infill():
    from diffill.engine import InfillResult
    from diffill.lsp_server.server import choices, completion_answer, inline_answer, scored

    result = InfillResult("a + b", 3, 3, 2, 2, 3, 1.0, False, alternatives=["a - b", "a"], confidence=0.7,
                          confidence_calibrated=True, alternative_confidences=[0.2, 0.1])
    texts = choices(result)
    assert texts == ["a + b", "a - b", "a"]
    at = pos(1, 11)
    inline_items = inline_answer(scored(result), at).items
    assert [(i.insert_text, i.range) for i in inline_items] == [(t, rng((1, 11), (1, 11))) for t in texts]
    assert [i.command.arguments[0]["confidence"] for i in inline_items] == [0.7, 0.2, 0.1]
    items = completion_answer(scored(result), at, "python").items
    assert [i.text_edit.new_text for i in items] == texts
    assert [i.data for i in items] == [{"confidence": c, "calibrated": True} for c in (0.7, 0.2, 0.1)]
    assert sorted(items, key=lambda i: i.sort_text) == items and [i.preselect for i in items] == [True, False, False]
    # no infill, no runners-up
    assert choices(InfillResult("", 3, 3, 1, 1, 0, 1.0, False, alternatives=["x"])) == []
    assert inline_answer([], at).items == [] and completion_answer([], at, "python").items == []


async def test_items_carry_their_confidence_and_none_is_shown_below_min_confidence(client):
    uri = open_doc(client)
    line, character, text = await some_suggestion(client, uri, SOURCE)
    ghost = (await inline(client, uri, line, character)).items[0]
    assert ghost.insert_text == text and ghost.command.command == "diffill.accepted"
    note = ghost.command.arguments[0]
    note = note if isinstance(note, dict) else note._asdict()  # pygls reads JSON objects as named tuples
    confidence = note["confidence"]
    assert 0.0 <= confidence <= 1.0 and note["calibrated"] is False
    listed = await client.text_document_completion_async(types.CompletionParams(
        text_document=types.TextDocumentIdentifier(uri), position=pos(line, character)))
    assert listed.items[0].data["confidence"] == confidence
    assert all(0.0 <= item.data["confidence"] <= 1.0 for item in listed.items)
    try:
        await configure(client, minConfidence=min(1.0, confidence + 1e-4))  # the suggestion is below it now
        assert not (await inline(client, uri, line, character)).items
        assert not (await client.text_document_completion_async(types.CompletionParams(
            text_document=types.TextDocumentIdentifier(uri), position=pos(line, character)))).items
        await configure(client, minConfidence=max(0.0, confidence - 1e-4))  # and at or above it again
        shown = await inline(client, uri, line, character)
        assert shown.items and shown.items[0].insert_text == text
    finally:
        await configure(client, minConfidence=0)
    await client.workspace_execute_command_async(types.ExecuteCommandParams(
        command="diffill.accepted", arguments=[note]))
    assert (await status(client))["counters"]["accepted"] >= 1


async def test_typing_into_a_suggestion_is_answered_from_the_cache(client):
    uri = open_doc(client)
    line, character, text = await some_suggestion(client, uri, SOURCE)
    before = (await status(client))["counters"]
    change(client, uri, 2, rng((line, character), (line, character)), text[0])
    result = await inline(client, uri, line, character + 1)
    after = (await status(client))["counters"]
    assert result.items[0].insert_text == text[1:]
    assert after["model_calls"] == before["model_calls"]
    assert after["cache_hits"] == before["cache_hits"] + 1


async def test_disabled_language_gets_nothing_without_a_model_call(client):
    uri = open_doc(client)
    await configure(client, languages=["rust"])
    try:
        before = (await status(client))["counters"]["model_calls"]
        result = await inline(client, uri, 4, 10)
        actions = await code_actions(client, uri, rng((4, 0), (5, 0)))
        assert not result.items and not actions
        assert (await status(client))["counters"]["model_calls"] == before
    finally:
        await configure(client, languages=None)


async def test_a_language_the_model_was_not_trained_on_gets_nothing_and_a_log_line_once(tiny_checkpoint, tmp_path):
    python_only = tmp_path / "python-only"
    shutil.copytree(tiny_checkpoint, python_only)
    config = json.loads((python_only / "config.json").read_text())
    (python_only / "config.json").write_text(json.dumps({**config, "languages": ["python"]}))
    c = await start(str(python_only), tmp_path, {"minConfidence": 0})
    try:
        for _ in range(500):
            if (await status(c))["loaded"]:
                break
            await asyncio.sleep(0.02)
        assert (await status(c))["languages"] == ["python"]
        uri = "file:///tmp/diffill-test-app.ts"
        c.text_document_did_open(types.DidOpenTextDocumentParams(types.TextDocumentItem(
            uri=uri, language_id="typescript", version=1, text="function f(a: number) {\n  return \n}\n")))
        before = (await status(c))["counters"]["model_calls"]
        for _ in range(2):
            assert not (await inline(c, uri, 1, 9)).items
        assert (await status(c))["counters"]["model_calls"] == before
        said = [m.message for m in c.log_messages if "no fills for typescript" in m.message]
        assert len(said) == 1 and "trained on python only" in said[0]
        await configure(c, languages=["python", "typescript"])  # the setting overrides the model's list
        await inline(c, uri, 1, 9)
        assert (await status(c))["counters"]["model_calls"] == before + 1
    finally:
        await stop(c)


# -- code action and the infill command ------------------------------------------------------


async def test_code_action_offers_infill_for_a_selection_only(client):
    uri = open_doc(client)
    selection = rng((4, 4), (5, 18))
    (action,) = await code_actions(client, uri, selection)
    assert action["title"] == "Infill selection (diffill)"
    assert action["kind"] == "refactor.rewrite"
    assert action["command"]["command"] == "diffill.infill"
    assert action["command"]["arguments"] == [{"uri": uri, "range": {"start": {"line": 4, "character": 4},
                                                                     "end": {"line": 5, "character": 18}}}]
    assert await code_actions(client, uri, rng((4, 4), (4, 4))) == []
    assert await code_actions(client, uri, selection, only=["quickfix"]) == []
    assert len(await code_actions(client, uri, selection, only=["refactor"])) == 1


async def _run_infill(client, uri, selection, token=None) -> dict:
    args = [{"uri": uri, "range": {"start": {"line": selection.start.line, "character": selection.start.character},
                                   "end": {"line": selection.end.line, "character": selection.end.character}}}]
    return await client.workspace_execute_command_async(types.ExecuteCommandParams(
        command="diffill.infill", arguments=args, work_done_token=token))


async def test_infill_command_applies_the_edit_and_reports_progress_per_step(client):
    uri = open_doc(client)
    selection = rng((10, 4), (12, 0))
    client.applied_edits.clear()
    token = "client-token-1"
    client.progress_reports[token] = []
    result = await _run_infill(client, uri, selection, token)
    reports = client.progress_reports[token]
    assert isinstance(reports[0], types.WorkDoneProgressBegin) and reports[0].cancellable
    assert isinstance(reports[-1], types.WorkDoneProgressEnd)
    steps = [r for r in reports if isinstance(r, types.WorkDoneProgressReport)]
    assert len(steps) >= 1 and all(r.message.startswith("step ") for r in steps)
    if result["applied"]:
        assert len(steps) == result["steps"]
        (params,) = client.applied_edits
        (doc_edit,) = params.edit.document_changes
        assert doc_edit.text_document.uri == uri and doc_edit.text_document.version == 1
        assert doc_edit.edits[0].range == selection
        assert doc_edit.edits[0].new_text == result["text"]
    else:  # the random model found nothing valid: the text must be left alone
        assert result["reason"] and client.applied_edits == []


async def test_infill_command_creates_its_own_progress_token_when_the_client_gives_none(client):
    uri = open_doc(client)
    known = set(client.progress_reports)
    await _run_infill(client, uri, rng((4, 4), (5, 0)))
    (token,) = set(client.progress_reports) - known
    kinds = [type(r) for r in client.progress_reports[token]]
    assert kinds[0] is types.WorkDoneProgressBegin and kinds[-1] is types.WorkDoneProgressEnd


async def test_infill_is_cancellable_from_the_progress_ui(client):
    uri = open_doc(client)
    await slow(client)
    try:
        known = set(client.progress_reports)
        task = asyncio.ensure_future(_run_infill(client, uri, rng((0, 0), (20, 0))))
        token = None
        for _ in range(500):
            new = set(client.progress_reports) - known
            if new and len(client.progress_reports[next(iter(new))]) >= 2:
                token = next(iter(new))
                break
            await asyncio.sleep(0.01)
        assert token is not None, "no progress was reported"
        client.window_work_done_progress_cancel(types.WorkDoneProgressCancelParams(token=token))
        result = await task
        assert result == {"applied": False, "reason": "cancelled"}
        steps = [r for r in client.progress_reports[token] if isinstance(r, types.WorkDoneProgressReport)]
        assert len(steps) < 200  # the canvas has 256 slots, one committed per step
    finally:
        await configure(client, threshold=0.5, maxTokens=None)


# -- cancellation and staleness --------------------------------------------------------------


def _inline_params(uri, line, character):
    return types.InlineCompletionParams(
        text_document=types.TextDocumentIdentifier(uri), position=pos(line, character),
        context=types.InlineCompletionContext(trigger_kind=types.InlineCompletionTriggerKind.Invoked))


async def test_cancel_request_stops_denoising(client):
    uri = open_doc(client)
    await slow(client)
    try:
        steps_before = (await wait_idle(client))["counters"]["steps"]
        msg_id, fut = send_raw(client, types.TEXT_DOCUMENT_INLINE_COMPLETION, _inline_params(uri, 21, 8))
        await asyncio.sleep(0.2)
        cancel(client, msg_id)
        with pytest.raises(JsonRpcException) as err:
            await fut
        assert err.value.code == REQUEST_CANCELLED
        s = await wait_idle(client)
        assert s["counters"]["steps"] - steps_before < 500  # a full run is 600 steps
    finally:
        await configure(client, threshold=0.5, maxTokens=None)


async def test_a_new_request_for_a_document_supersedes_the_previous_one(client):
    uri = open_doc(client)
    await slow(client)
    try:
        before = (await wait_idle(client))["counters"]
        first = asyncio.ensure_future(inline(client, uri, 21, 8))
        await asyncio.sleep(0.1)
        await configure(client, threshold=0.5, maxTokens=8)
        second = await inline(client, uri, 4, 12)
        assert not (await first).items
        assert isinstance(second, types.InlineCompletionList)
        after = await wait_idle(client)
        assert after["counters"]["superseded"] == before["superseded"] + 1
    finally:
        await configure(client, threshold=0.5, maxTokens=None)


async def test_a_result_for_an_older_version_is_dropped(client):
    uri = open_doc(client)
    await slow(client)
    try:
        before = (await wait_idle(client))["counters"]
        request = asyncio.ensure_future(inline(client, uri, 21, 8))
        await asyncio.sleep(0.1)
        change(client, uri, 2, rng((0, 0), (0, 0)), "# edited\n")
        assert not (await request).items
        after = await wait_idle(client)
        assert after["counters"]["stale_dropped"] == before["stale_dropped"] + 1
    finally:
        await configure(client, threshold=0.5, maxTokens=None)


# -- positions ---------------------------------------------------------------------------------


async def test_utf16_positions_on_lines_with_emoji_and_cjk(client):
    uri = open_doc(client, UNICODE)
    line0 = UNICODE.split("\n")[0]
    end16 = len(line0.encode("utf-16-le")) // 2
    assert end16 == len(line0) + 1  # the emoji is two UTF-16 units
    after_cjk = line0.index("\u597d") + 2  # one past the CJK pair, in UTF-16 units (+1 for the emoji)
    result = await inline(client, uri, 0, after_cjk)
    assert all(i.range == rng((0, after_cjk), (0, after_cjk)) for i in result.items)
    # a character past the end of the line means the end of the line
    clamped = await inline(client, uri, 0, end16 + 40)
    assert all(i.range == rng((0, end16), (0, end16)) for i in clamped.items)
    # an incremental edit after the emoji lands after it: replace "你好" by "ok"
    start16 = line0.index("\u4f60") + 1
    change(client, uri, 2, rng((0, start16), (0, start16 + 2)), "ok")
    client.applied_edits.clear()
    selection = rng((0, start16), (0, start16 + 2))
    result = await _run_infill(client, uri, selection)
    if result["applied"]:
        assert client.applied_edits[0].edit.document_changes[0].edits[0].range == selection
    (action,) = await code_actions(client, uri, selection)
    assert action["command"]["arguments"][0]["range"]["end"]["character"] == start16 + 2


# -- errors ------------------------------------------------------------------------------------


async def test_unknown_document_is_an_invalid_params_error(client):
    with pytest.raises(JsonRpcException) as err:
        await inline(client, "file:///nowhere/never-opened.py", 0, 0)
    assert err.value.code == INVALID_PARAMS and "not open" in err.value.message


async def test_position_past_the_end_is_an_invalid_params_error(client):
    uri = open_doc(client)
    with pytest.raises(JsonRpcException) as err:
        await inline(client, uri, 999, 0)
    assert err.value.code == INVALID_PARAMS and "outside the document" in err.value.message


async def test_reversed_range_is_an_invalid_params_error(client):
    uri = open_doc(client)
    backwards = rng((5, 0), (4, 0))
    with pytest.raises(JsonRpcException) as err:
        await code_actions(client, uri, backwards)
    assert err.value.code == INVALID_PARAMS and "ends before it starts" in err.value.message
    with pytest.raises(JsonRpcException) as err:
        await _run_infill(client, uri, backwards)
    assert err.value.code == INVALID_PARAMS and "ends before it starts" in err.value.message


async def test_malformed_parameters_are_answered_not_ignored(client):
    uri = open_doc(client)
    bad = {"textDocument": {"uri": uri}, "position": {"line": "three", "character": 0}}
    fut = send_json(client, types.TEXT_DOCUMENT_INLINE_COMPLETION, bad)
    with pytest.raises(JsonRpcException) as err:
        await asyncio.wait_for(fut, 30)
    assert err.value.code == INVALID_PARAMS and "line" in err.value.message
    for args in ([], [{"uri": uri}], ["x", "y"]):
        with pytest.raises(JsonRpcException) as err:
            await client.workspace_execute_command_async(types.ExecuteCommandParams(
                command="diffill.infill", arguments=args))
        assert err.value.code == INVALID_PARAMS and "diffill.infill takes one argument" in err.value.message
    assert (await status(client))["loaded"]


async def test_bad_setting_values_are_logged_and_the_old_values_kept(client):
    client.log_messages.clear()
    await configure(client, threshold="high", maxTokens=-3, constraint=True, somethingNew=[1])
    s = await status(client)
    assert s["settings"]["threshold"] == 0.5 and s["settings"]["max_tokens"] is None
    texts = [m.message for m in client.log_messages if m.type == types.MessageType.Warning]
    assert any("threshold" in t for t in texts) and any("maxTokens" in t for t in texts)
    assert not any("somethingNew" in t for t in texts)


async def test_initialize_is_answered_before_the_model_loads_and_an_early_request_waits_for_it(tiny_checkpoint,
                                                                                                tmp_path):
    c = await start(str(tiny_checkpoint), tmp_path)
    try:
        first = await status(c)  # the engine's imports alone outlast this answer
        assert first["state"] == "loading" and not first["loaded"] and first["ready_ms"] is None
        answer = await inline(c, open_doc(c), 4, 10)  # waits for the model, then is answered
        assert isinstance(answer, types.InlineCompletionList)
        s = await status(c)
        assert s["state"] == "ready" and s["loaded"] and s["ready_ms"] > 0
        # the waiting request ran before any warm-up fill (or stopped it between steps)
        assert s["warm_up"] in ("skipped", "stopped") and s["load_ms"] >= s["warm_up_ms"]
        assert s["counters"]["model_calls"] == 1 and s["counters"]["errors"] == 0
    finally:
        await stop(c)


async def test_the_adapter_setting_loads_an_adapter_on_an_open_family_s_checkpoint(tiny_sources, tmp_path):
    from diffill.adaptation import adapt_repository
    from diffill.model.families.init import init_model

    base = init_model(tmp_path / "dream", "dream-coder-7b", tiny=True)
    repo = tmp_path / "repo"
    repo.mkdir()
    for p in sorted(tiny_sources.glob("*.py"))[:3]:
        shutil.copy(p, repo / p.name)
    adapter = tmp_path / "adapter"
    adapt_repository(repo, out=adapter, steps=1, model_path=str(base), cases=1, progress=False,
                     library="none", device="cpu")
    c = await start(str(base), tmp_path, {"adapter": str(adapter), "minConfidence": 0})
    try:
        assert isinstance(await inline(c, open_doc(c), 4, 10), types.InlineCompletionList)
        s = await status(c)
        assert s["loaded"] and s["adapter"] == str(adapter.resolve()) and s["error"] is None
    finally:
        await stop(c)


async def test_missing_model_says_so_and_how_to_fix_it(client, tiny_checkpoint, tmp_path):
    uri = open_doc(client)
    client.messages.clear()
    await configure(client, model=str(tmp_path / "no-model-here"))
    try:
        with pytest.raises(JsonRpcException) as err:
            await inline(client, uri, 4, 10)
        assert err.value.code == REQUEST_FAILED
        assert "model folder not found" in err.value.message and "diffill.model" in err.value.message
        s = await status(client)
        assert not s["loaded"] and "diffill.model" in s["error"] and s["state"] == "failed"
        assert any("diffill.model" in m.message for m in client.messages)
    finally:
        await configure(client, model=str(tiny_checkpoint))
    assert isinstance(await inline(client, uri, 4, 10), types.InlineCompletionList)
    assert (await status(client))["loaded"]


async def test_workspace_adapter_is_used_when_allowed_and_explicit_settings_win(client):
    adapter = client.workspace_path / ".diffill" / "adapter"
    adapter.mkdir(parents=True)
    (adapter / "adapter_config.json").write_text("{}")
    folders = types.WorkspaceFoldersChangeEvent(added=[], removed=[])
    try:
        client.workspace_did_change_workspace_folders(types.DidChangeWorkspaceFoldersParams(folders))
        assert (await status(client))["adapter_requested"] == str(adapter)
        await configure(client, adapter="none")
        assert (await status(client))["adapter_requested"] == "none"
        await configure(client, adapter=None, useWorkspaceAdapter=False)
        assert (await status(client))["adapter_requested"] is None
    finally:
        (adapter / "adapter_config.json").unlink()
        await configure(client, adapter=None, useWorkspaceAdapter=True)
    s = await wait_idle(client)
    assert s["adapter_requested"] is None and s["loaded"]


async def test_a_fill_copies_from_another_open_document(tmp_path):
    """With the shipped model: a line of another open file is copied where the lines before the
    cursor match the lines before it there (model/ngram.py)."""
    shipped = Path(__file__).resolve().parents[1] / "model" / "checkpoints" / "diffill-base"
    c = await start(str(shipped), tmp_path, {"minConfidence": 0})  # copying, not abstention, is tested
    try:
        open_doc(c, "def first(parcels, cargo):\n    total = weigh_all(parcels, cargo.rate)\n    return total\n")
        uri = open_doc(c, "def second(parcels, cargo):\n    total = \n    return total\n")
        result = await inline(c, uri, 1, 12)
        assert result.items and result.items[0].insert_text == "weigh_all(parcels, cargo.rate)"
    finally:
        await stop(c)


async def wait_index(client, ready) -> dict:
    """The server's workspace index once ``ready(index)`` (or after 10 s)."""
    for _ in range(100):
        index = (await status(client))["workspace_index"]
        if index and ready(index):
            break
        await asyncio.sleep(0.1)
    return index


async def test_fills_copy_from_the_workspace_folders_files(tmp_path):
    """With the shipped model: the workspace's source files are indexed once the model loads, and a
    fill copies a line from them; ``indexWorkspace: false`` forgets them."""
    shipped = Path(__file__).resolve().parents[1] / "model" / "checkpoints" / "diffill-base"
    (tmp_path / "lib.py").write_text("def first(parcels, cargo):\n    total = weigh_all(parcels, cargo.rate)\n"
                                     "    return total\n")
    c = await start(str(shipped), tmp_path, {"minConfidence": 0})  # copying, not abstention, is tested
    try:
        assert (await wait_index(c, lambda index: True))["files"] == 1
        uri = open_doc(c, "def second(parcels, cargo):\n    total = \n    return total\n")
        result = await inline(c, uri, 1, 12)
        assert result.items and result.items[0].insert_text == "weigh_all(parcels, cargo.rate)"
        await configure(c, indexWorkspace=False)
        assert await wait_index(c, lambda index: index["files"] == 0) == {"files": 0, "tokens": 0}
    finally:
        await stop(c)


async def test_saved_and_changed_files_reach_the_workspace_index(tmp_path):
    """A saved document (didSave) and a file created on disk (didChangeWatchedFiles) are read
    again into the workspace index: the fill copies the line as it is now."""
    shipped = Path(__file__).resolve().parents[1] / "model" / "checkpoints" / "diffill-base"
    lib = tmp_path / "lib.py"
    lib.write_text("def first(parcels, cargo):\n    total = weigh_all(parcels, cargo.rate)\n")
    c = await start(str(shipped), tmp_path, {"minConfidence": 0})  # copying, not abstention, is tested
    try:
        await wait_index(c, lambda index: True)
        from diffill.workspace import WATCHED

        (watcher,) = [r for r in c.registrations if r.method == types.WORKSPACE_DID_CHANGE_WATCHED_FILES]
        assert watcher.register_options["watchers"] == [{"globPattern": WATCHED}]
        uri = open_doc(c, "def second(parcels, cargo):\n    total = \n    return total\n")
        assert (await inline(c, uri, 1, 12)).items[0].insert_text == "weigh_all(parcels, cargo.rate)"
        lib.write_text("def first(parcels, cargo):\n    total = measure_each(parcels, cargo.rate)\n")
        c.text_document_did_save(types.DidSaveTextDocumentParams(types.TextDocumentIdentifier(lib.as_uri())))
        await status(c)  # handled in order: the refresh job is queued before the next fill
        change(c, uri, 2, None, "def second(parcels, cargo):\n    total = \n    return total\n")
        assert (await inline(c, uri, 1, 12)).items[0].insert_text == "measure_each(parcels, cargo.rate)"
        new = tmp_path / "new.py"
        new.write_text("def third(parcels):\n    return parcels\n")
        c.workspace_did_change_watched_files(types.DidChangeWatchedFilesParams(
            [types.FileEvent(uri=new.as_uri(), type=types.FileChangeType.Created)]))
        assert (await wait_index(c, lambda index: index["files"] == 2))["files"] == 2
    finally:
        await stop(c)


# -- stress ------------------------------------------------------------------------------------


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


async def test_stress_500_mixed_requests(client):
    rnd = random.Random(7)
    uris = [open_doc(client) for _ in range(3)]
    versions = dict.fromkeys(uris, 1)
    texts = dict.fromkeys(uris, SOURCE)
    await configure(client, threshold=0.5, maxTokens=12)
    pid = client._server.pid
    futures, cancelled_ids = [], set()

    def random_position(uri):
        lines = texts[uri].split("\n")
        line = rnd.randrange(len(lines))
        return line, rnd.randint(0, len(lines[line]))

    async def round_of(n):
        for _ in range(n):
            uri = rnd.choice(uris)
            kind = rnd.random()
            line, character = random_position(uri)
            if kind < 0.15:  # a random edit: insert or delete a little text
                versions[uri] += 1
                lines = texts[uri].split("\n")
                text = rnd.choice(["x", "(", "\n", "  ", "\u00e9", ""])
                end = (line, min(len(lines[line]), character + rnd.randint(0, 3)))
                offset = sum(len(ln) + 1 for ln in lines[:line])
                texts[uri] = texts[uri][: offset + character] + text + texts[uri][offset + end[1]:]
                change(client, uri, versions[uri], rng((line, character), end), text)
                continue
            if kind < 0.2:
                client.workspace_did_change_configuration(types.DidChangeConfigurationParams(settings={"diffill": {
                    "threshold": rnd.choice([0.3, 0.5, 0.9]), "constraint": rnd.random() < 0.5,
                    "maxTokens": rnd.choice([4, 8, 12])}}))
                continue
            if kind < 0.55:
                method, params = types.TEXT_DOCUMENT_INLINE_COMPLETION, _inline_params(uri, line, character)
            elif kind < 0.75:
                method, params = types.TEXT_DOCUMENT_COMPLETION, types.CompletionParams(
                    types.TextDocumentIdentifier(uri), pos(line, character))
            elif kind < 0.9:
                method, params = types.TEXT_DOCUMENT_CODE_ACTION, types.CodeActionParams(
                    types.TextDocumentIdentifier(uri), rng((max(0, line - 1), 0), (line, character)),
                    types.CodeActionContext(diagnostics=[]))
            else:
                method, params = types.WORKSPACE_EXECUTE_COMMAND, types.ExecuteCommandParams(command="diffill.status")
            msg_id, fut = send_raw(client, method, params)
            futures.append((msg_id, fut))
            if rnd.random() < 0.2:
                await asyncio.sleep(rnd.random() * 0.005)
                cancel(client, msg_id)
                cancelled_ids.add(msg_id)
            if rnd.random() < 0.3:
                await asyncio.sleep(0.002)

    await round_of(60)  # warm up: the first answers allocate what later ones reuse
    await asyncio.gather(*(f for _, f in futures), return_exceptions=True)
    rss_before = _rss_kb(pid)
    await round_of(500)
    outcomes = await asyncio.wait_for(asyncio.gather(*(f for _, f in futures), return_exceptions=True), 120)
    answered = cancelled = 0
    for (msg_id, _), outcome in zip(futures, outcomes):
        if isinstance(outcome, JsonRpcException):
            assert outcome.code == REQUEST_CANCELLED and msg_id in cancelled_ids, outcome
            cancelled += 1
        else:
            assert not isinstance(outcome, BaseException), outcome
            answered += 1
    assert answered + cancelled == len(futures) and len(futures) > 400
    s = await wait_idle(client)
    assert s["loaded"]
    growth_mb = (_rss_kb(pid) - rss_before) / 1024
    print(f"stress: {answered} answered, {cancelled} cancelled, resident memory growth {growth_mb:.1f} MB")
    assert growth_mb < 50, f"resident memory grew by {growth_mb:.1f} MB"
    await configure(client, threshold=0.5, maxTokens=None, constraint=True)


async def test_error_answers_are_logged_as_one_line_not_a_traceback(caplog):
    import logging

    from diffill.lsp_server.protocol import AnsweredErrors  # noqa: F401  (installs the filter)

    pygls_log = logging.getLogger("pygls.protocol.json_rpc")
    with caplog.at_level(logging.INFO, logger="pygls.protocol.json_rpc"):
        try:
            raise JsonRpcException("position 999:0 is outside the document", code=INVALID_PARAMS)
        except JsonRpcException:
            pygls_log.exception("Failed to handle request %s", 7)
        try:
            raise ValueError("a real bug")
        except ValueError:
            pygls_log.exception("Failed to handle request %s", 8)
    answered, bug = caplog.records
    assert answered.levelno == logging.INFO and answered.exc_info is None
    assert answered.getMessage() == "answered with an error: position 999:0 is outside the document"
    assert bug.levelno == logging.ERROR and bug.exc_info is not None
