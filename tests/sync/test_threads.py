"""Threads: one blocking provider serves every thread of a process, as in a WSGI server."""

from __future__ import annotations

import http.client
import json
import socketserver
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import parse_qs
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest

from memweave import ChatMessage, sync


def _turn(worker: int, step: int) -> list[ChatMessage]:
    return [
        ChatMessage.user(f"{worker}:{step}:q"),
        ChatMessage.assistant(f"{worker}:{step}:a"),
    ]


def test_threads_hammering_one_provider_lose_and_duplicate_nothing(
    sync_history: sync.ChatHistoryProvider, new_session_id: Callable[[str], str]
) -> None:
    """8 threads adding turns and reading windows through one provider store every message
    exactly once, in each writer's order, with no error."""
    shared = new_session_id("shared")
    own = [new_session_id(f"own{worker}") for worker in range(8)]
    steps = 40

    def work(worker: int) -> None:
        for step in range(steps):
            turn = _turn(worker, step)
            sync_history.add_messages(own[worker], turn)
            sync_history.add_messages(shared, turn)
            sync_history.add_messages(shared, turn[:1])  # a retry stores nothing
            window = sync_history.list_messages(own[worker], limit=4)
            assert [m.text for m in window[-2:]] == [m.text for m in turn]
            assert sync_history.count_messages(own[worker]) == 2 * (step + 1)

    with ThreadPoolExecutor(8) as pool:
        for future in [pool.submit(work, worker) for worker in range(8)]:
            future.result()

    stored = [m.text for m in sync_history.list_messages(shared)]
    assert len(stored) == len(set(stored)) == 8 * steps * 2
    for worker in range(8):
        expected = [m.text for step in range(steps) for m in _turn(worker, step)]
        assert [text for text in stored if text.startswith(f"{worker}:")] == expected
        assert [m.text for m in sync_history.list_messages(own[worker])] == expected


class _ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def _chat_app(history: sync.ChatHistoryProvider) -> Callable[..., Iterable[bytes]]:
    """A WSGI app as a sync web app would write it: append a turn, return the window."""

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        query = parse_qs(environ["QUERY_STRING"])
        session, text = query["session"][0], query["text"][0]
        history.add_messages(
            session, [ChatMessage.user(text), ChatMessage.assistant(f"re: {text}")]
        )
        window = history.list_messages(session, limit=10)
        body = json.dumps([m.text for m in window]).encode()
        start_response("200 OK", [("Content-Type", "application/json")])
        return [body]

    return app


@pytest.fixture
def chat_server(sync_history: sync.ChatHistoryProvider) -> Iterator[int]:
    """A threaded WSGI server on loopback serving `_chat_app` over one blocking provider;
    yields its port."""
    server = make_server(
        "127.0.0.1",
        0,
        _chat_app(sync_history),
        server_class=_ThreadingWSGIServer,
        handler_class=_QuietHandler,
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.mark.slow
def test_wsgi_server_threads_share_one_provider(
    chat_server: int,
    sync_history: sync.ChatHistoryProvider,
    new_session_id: Callable[[str], str],
) -> None:
    """16 client threads x 200 requests against a threaded WSGI server, each request
    appending a turn and reading the window through one shared provider: every request
    succeeds and sees its turn, and every message is stored exactly once, in order."""
    clients, requests = 16, 200
    sessions = [new_session_id(f"wsgi{worker}") for worker in range(clients)]

    def client(worker: int) -> None:
        for step in range(requests):
            text = f"{worker}-{step}"
            connection = http.client.HTTPConnection("127.0.0.1", chat_server, timeout=60)
            try:
                connection.request("GET", f"/?session={sessions[worker]}&text={text}")
                response = connection.getresponse()
                window = json.loads(response.read())
            finally:
                connection.close()
            assert response.status == 200
            assert window[-2:] == [text, f"re: {text}"]
            assert len(window) == min(10, 2 * (step + 1))

    with ThreadPoolExecutor(clients) as pool:
        for future in [pool.submit(client, worker) for worker in range(clients)]:
            future.result()

    for worker, session in enumerate(sessions):
        expected = [
            text
            for step in range(requests)
            for text in (f"{worker}-{step}", f"re: {worker}-{step}")
        ]
        assert [m.text for m in sync_history.list_messages(session)] == expected
